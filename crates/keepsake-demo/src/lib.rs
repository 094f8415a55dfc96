//! The keepsake demo app: a small web app that shows sessions at work.
//!
//! `cargo run -p keepsake-demo` serves it on <http://127.0.0.1:3000>. The
//! binary is a thin wrapper: [`Args`] are its flags and [`run`] starts it.
//! Tests build the same app in-process with [`app`] from a [`Config`].
//!
//! The page at `/` counts visits, logs a user in and out, lists the user's
//! sessions and switches between a light and a dark theme kept in a signed
//! cookie; the JSON API under `/api` does the same for scripts and tests.
//!
//! The API's `POST` routes take only `Content-Type: application/json`
//! (415 otherwise), even those that need no body, and refuse requests whose
//! `Sec-Fetch-Site` is `cross-site` (403). `SameSite=Lax` alone would not
//! stop another site's form from logging a visitor in as someone else: the
//! browser keeps the cookie such a post is answered with. From a shell:
//!
//! ```text
//! curl -H 'Content-Type: application/json' -d '{"user": "alice"}' \
//!      http://127.0.0.1:3000/api/login
//! ```
//!
//! # Example
//!
//! ```
//! use keepsake::key::{Key, KeyRing};
//! use keepsake_demo::{Config, StoreKind};
//!
//! let config = Config::new(StoreKind::Memory, KeyRing::new(Key::generate()));
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let router = keepsake_demo::app(config).await?;
//! # let _ = router;
//! # Ok::<(), keepsake_demo::AppError>(()) }).unwrap();
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod api;
mod cli;
mod page;
mod secret;

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use axum::{
    Router,
    handler::Handler,
    routing::{MethodRouter, get, post},
};
use keepsake::{
    codec::Format,
    key::KeyRing,
    middleware::{ConfigError, SessionLayer, SessionLayerBuilder},
    session::BadCookie,
    store::{AnyStore, MemoryStore, OpenError, PurgeTask, StoreUrl},
};

pub use self::{
    cli::{Args, BadCookieArg, run},
    secret::{SecretSource, load_secret},
};

/// Where sessions live: the `--store` flag.
///
/// Parsed from `memory`, `cookie`, `sealed`, or a store URL as
/// [`keepsake::store::StoreUrl`] reads it: `sqlite://PATH`,
/// `redis://HOST[:PORT][/DB][?prefix=P]` or
/// `postgres://USER@HOST[:PORT]/DB[?schema=S&table=T]`. The URL is checked
/// here (by the library, so the demo and `keepsake sessions` accept the
/// same URLs) and opened by [`app`].
///
/// # Example
///
/// ```
/// use keepsake_demo::StoreKind;
///
/// assert_eq!("sealed".parse::<StoreKind>()?, StoreKind::Sealed);
/// assert!(matches!("sqlite://demo.db".parse::<StoreKind>()?, StoreKind::Sqlite(_)));
/// assert!(matches!("redis://127.0.0.1/0?prefix=demo:".parse::<StoreKind>()?, StoreKind::Redis(_)));
/// assert!("mongodb://x".parse::<StoreKind>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// Server-side sessions in this process's memory (lost on restart).
    Memory,
    /// Client-side sessions in a signed cookie (readable, tamper-proof).
    Cookie,
    /// Client-side sessions in a sealed cookie (encrypted).
    Sealed,
    /// A SQLite database file (the default: `sqlite://keepsake-demo.db`).
    Sqlite(String),
    /// A Redis server.
    Redis(String),
    /// A PostgreSQL server.
    Postgres(String),
}

impl StoreKind {
    /// The short name shown at start-up and on the page.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(keepsake_demo::StoreKind::Memory.name(), "memory");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Cookie => "cookie",
            Self::Sealed => "sealed",
            Self::Sqlite(_) => "sqlite",
            Self::Redis(_) => "redis",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Whether the whole session lives in the cookie.
    fn is_client_side(&self) -> bool {
        matches!(self, Self::Cookie | Self::Sealed)
    }
}

/// Shows a store URL as [`StoreUrl`]'s `Display` does, its password
/// hidden: a `Config` or `Args` printed with `{:?}` must not show it.
///
/// # Example
///
/// ```
/// let store: keepsake_demo::StoreKind = "redis://:hunter2@127.0.0.1/0".parse()?;
/// assert!(!format!("{store:?}").contains("hunter2"));
/// # Ok::<(), String>(())
/// ```
impl fmt::Debug for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (variant, url) = match self {
            Self::Memory => return f.write_str("Memory"),
            Self::Cookie => return f.write_str("Cookie"),
            Self::Sealed => return f.write_str("Sealed"),
            Self::Sqlite(url) => ("Sqlite", url),
            Self::Redis(url) => ("Redis", url),
            Self::Postgres(url) => ("Postgres", url),
        };
        let shown = StoreUrl::parse(url).map_or_else(|_| "…".to_owned(), |url| url.to_string());
        f.debug_tuple(variant).field(&shown).finish()
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StoreKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        match text {
            "memory" => return Ok(Self::Memory),
            "cookie" => return Ok(Self::Cookie),
            "sealed" => return Ok(Self::Sealed),
            _ => {}
        }
        match StoreUrl::parse(text) {
            Ok(StoreUrl::Memory) => Ok(Self::Memory),
            Ok(StoreUrl::Sqlite { .. }) => Ok(Self::Sqlite(text.to_owned())),
            Ok(StoreUrl::Redis { .. }) => Ok(Self::Redis(text.to_owned())),
            Ok(StoreUrl::Postgres { .. }) => Ok(Self::Postgres(text.to_owned())),
            Ok(other) => Err(format!("the demo does not support {other} stores")),
            Err(OpenError::UnknownScheme { url }) => Err(format!(
                "unknown store `{url}`; expected memory, cookie, sealed, sqlite://PATH, \
                 redis://HOST[:PORT][/DB][?prefix=P] or postgres://...[?schema=S][&table=T]"
            )),
            Err(err) => Err(err.to_string()),
        }
    }
}

/// Everything the app needs: where sessions live, the session cookie's
/// settings, and the key ring that signs cookies.
///
/// [`Config::new`] gives the defaults of the command line.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Where sessions live.
    pub store: StoreKind,
    /// The keys that sign (and for `sealed`, encrypt) cookies.
    pub ring: KeyRing,
    /// The session cookie's name (default `session`).
    pub cookie_name: String,
    /// Seconds of inactivity after which a session ends; 0 for no idle
    /// limit (default 1800).
    pub idle_timeout: u64,
    /// Absolute lifetime in seconds (default 14 days), and whether cookies
    /// are persistent: `None` is the default lifetime with browser-session
    /// cookies, `Some` sets the lifetime and makes cookies persistent.
    pub max_age: Option<u64>,
    /// What to do with a session cookie that does not verify.
    pub bad_cookie: BadCookie,
    /// Whether cookies carry `Secure` (default `true`).
    pub secure: bool,
}

/// The absolute session lifetime when `--max-age` is not given.
const DEFAULT_LIFETIME: u64 = 14 * 86_400;

impl Config {
    /// The defaults of the command line, with `store` and `ring`.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::key::{Key, KeyRing};
    /// use keepsake_demo::{Config, StoreKind};
    ///
    /// let config = Config::new(StoreKind::Cookie, KeyRing::new(Key::generate()));
    /// assert_eq!((config.cookie_name.as_str(), config.idle_timeout, config.secure), ("session", 1800, true));
    /// ```
    pub fn new(store: StoreKind, ring: KeyRing) -> Self {
        Self {
            store,
            ring,
            cookie_name: "session".to_owned(),
            idle_timeout: 1800,
            max_age: None,
            bad_cookie: BadCookie::Ignore,
            secure: true,
        }
    }

    fn lifetime(&self) -> u64 {
        self.max_age.unwrap_or(DEFAULT_LIFETIME)
    }
}

/// Why the app could not be made.
#[derive(Debug)]
#[non_exhaustive]
pub enum AppError {
    /// The store could not be opened or reached.
    Store(StoreKind, OpenError),
    /// The session settings are not valid.
    Config(ConfigError),
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(kind, err) => {
                // The store's own error says what went wrong, with the
                // server's or driver's words for it; the URL is the one the
                // user gave.
                match err {
                    OpenError::Store { source, .. } => {
                        write!(f, "cannot open the {kind} store: {}", source.with_causes())
                    }
                    other => write!(f, "cannot open the {kind} store: {other}"),
                }
            }
            Self::Config(err) => {
                // The reason (the cookie error, say) is the error's source.
                write!(f, "{err}")?;
                let mut cause = std::error::Error::source(err);
                while let Some(reason) = cause {
                    write!(f, ": {reason}")?;
                    cause = reason.source();
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for AppError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Store(_, err) => Some(err),
            Self::Config(err) => Some(err),
        }
    }
}

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) ring: KeyRing,
    pub(crate) store: StoreKind,
    pub(crate) cookie_name: String,
    pub(crate) secure: bool,
    pub(crate) idle_timeout: u64,
    pub(crate) lifetime: u64,
    pub(crate) persistent: bool,
    /// The server-side store, which `/healthz` probes; `None` for
    /// client-side sessions.
    pub(crate) server_store: Option<AnyStore>,
    /// Purges expired sessions of a server-side store while the app lives.
    #[allow(dead_code)]
    pub(crate) purge: Option<PurgeTask>,
}

/// The axum state.
pub(crate) type AppState = Arc<Shared>;

/// The demo app: the page, the JSON API and `/healthz`, behind the session
/// layer that `config` describes.
///
/// Server-side stores are opened (or connected to) first, through
/// [`AnyStore::open`], and a [`PurgeTask`] purges their expired sessions
/// every minute for as long as the router lives (on Redis, which expires
/// sessions itself, it only tidies the per-user index).
///
/// # Errors
///
/// [`AppError::Store`] when the store cannot be opened or reached,
/// [`AppError::Config`] for settings the session layer refuses (such as an
/// idle timeout longer than the lifetime).
///
/// # Example
///
/// ```
/// use keepsake::key::{Key, KeyRing};
/// use keepsake_demo::{AppError, Config, StoreKind};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let config = Config::new(StoreKind::Sqlite("sqlite:///nonexistent/dir/x.db".into()), KeyRing::new(Key::generate()));
/// assert!(matches!(keepsake_demo::app(config).await, Err(AppError::Store(..))));
/// # });
/// ```
pub async fn app(config: Config) -> Result<Router, AppError> {
    let ring = config.ring.clone();
    let failed = |err| AppError::Store(config.store.clone(), err);
    let server_store = match &config.store {
        StoreKind::Memory => Some(AnyStore::from(MemoryStore::new())),
        StoreKind::Sqlite(url) | StoreKind::Redis(url) | StoreKind::Postgres(url) => {
            Some(AnyStore::open(url).await.map_err(failed)?)
        }
        StoreKind::Cookie | StoreKind::Sealed => None,
    };
    let (builder, purge) = match (&server_store, &config.store) {
        (Some(store), _) => server_side(store.clone(), ring),
        (None, StoreKind::Sealed) => (SessionLayer::with_cookies(Format::Sealed, ring), None),
        (None, _) => (SessionLayer::with_cookies(Format::Signed, ring), None),
    };
    let layer = configure(builder, &config)
        .build()
        .map_err(AppError::Config)?;
    let lifetime = config.lifetime();
    let state: AppState = Arc::new(Shared {
        ring: config.ring,
        store: config.store,
        cookie_name: layer.cookie_name().to_owned(),
        secure: config.secure,
        idle_timeout: config.idle_timeout,
        lifetime,
        persistent: config.max_age.is_some(),
        server_store,
        purge,
    });
    Ok(Router::new()
        .route("/", get(page::index))
        .route("/api/session", get(api::session))
        .route("/api/visits", api_post(api::visits))
        .route("/api/login", api_post(api::login))
        .route("/api/logout", api_post(api::logout))
        .route("/api/devices", get(api::devices))
        .route("/api/logout-everywhere", api_post(api::logout_everywhere))
        .route("/api/theme", api_post(api::theme))
        .route("/healthz", get(api::healthz))
        .fallback(api::not_found)
        .with_state(state)
        .layer(layer)
        // Outside the session layer, so that its own answers (a rejected
        // cookie, a failed store) get the same headers and error form.
        .layer(axum::middleware::from_fn(api::finish)))
}

/// `POST` to `handler`, for requests that cannot come from another site:
/// `Content-Type: application/json` and no `Sec-Fetch-Site: cross-site`
/// (else a 415 or 403, see [`api::same_site_json`]: JSON, or a page for a
/// browser's navigation, see [`api::finish_response`]). Other methods
/// still get axum's 405.
fn api_post<H, T>(handler: H) -> MethodRouter<AppState>
where
    H: Handler<T, AppState>,
    T: 'static,
{
    post(handler).route_layer(axum::middleware::from_fn(api::same_site_json))
}

fn configure(builder: SessionLayerBuilder, config: &Config) -> SessionLayerBuilder {
    builder
        .cookie_name(config.cookie_name.clone())
        .secure(config.secure)
        .idle_timeout((config.idle_timeout > 0).then(|| Duration::from_secs(config.idle_timeout)))
        .absolute_lifetime(Duration::from_secs(config.lifetime()))
        .persistent(config.max_age.is_some())
        .bad_cookie(config.bad_cookie)
        .on_unavailable(api::unavailable_response)
}

/// The session layer over a server-side store, and the task that purges
/// the store every minute.
fn server_side(store: AnyStore, ring: KeyRing) -> (SessionLayerBuilder, Option<PurgeTask>) {
    let purge = PurgeTask::spawn(store.clone(), Duration::from_secs(60));
    (SessionLayer::with_store(store, ring), Some(purge))
}
