//! Tower middleware that gives every request a
//! [`Session`](crate::session::Session).
//!
//! [`SessionLayer`] works with any tower stack (axum, hyper, tonic). For each
//! request it:
//!
//! 1. parses the `Cookie` header and verifies the session cookie (a signed
//!    id, or a signed or sealed session) with no store call; a cookie that
//!    does not verify is ignored with a `tracing` event, or answered with 400
//!    under [`BadCookie::Reject`](crate::session::BadCookie::Reject);
//! 2. puts a `Session` in the request's extensions and calls the handler;
//!    the session is loaded from the store only if the handler uses it;
//! 3. after the handler: unless it answered 5xx or `408 Request Timeout` (a
//!    request the server did not finish), saves what changed (at most
//!    one write: create, compare-and-set save, or a throttled touch), and
//!    adds `Set-Cookie` only when the cookie must change, with
//!    `Cache-Control: private` (added to the handler's own directives); a
//!    response made with the session gets `Vary: Cookie`, whether or not
//!    the cookie changed;
//! 4. if the store failed or timed out at any point: 503 with
//!    `Retry-After`, and the visitor's cookie is left as it was.
//!
//! # Example
//!
//! ```
//! use axum::{body::Body, http::Request, routing::get, Router};
//! use keepsake::{key::{Key, KeyRing}, middleware::SessionLayer, session::Session, store::MemoryStore};
//! use tower_service::Service as _;
//!
//! async fn count(session: Session) -> Result<String, keepsake::session::SessionError> {
//!     // `update`, not `get` then `insert`: concurrent requests each count.
//!     let n: u64 = session.update("n", |n: Option<u64>| n.unwrap_or(0) + 1).await?;
//!     Ok(n.to_string())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = SessionLayer::with_store(MemoryStore::new(), KeyRing::new(Key::generate())).build()?;
//! let mut app: Router = Router::new().route("/", get(count)).layer(layer);
//!
//! let response = app.call(Request::get("/").body(Body::empty())?).await?;
//! let body = axum::body::to_bytes(response.into_body(), 64).await?;
//! assert_eq!(body, "1");
//! # Ok(())
//! # }
//! ```
//!
//! # Timeouts go outside `SessionLayer`
//!
//! A timeout layer (such as tower-http's `TimeoutLayer`) drops the
//! handler's future when time runs out, possibly between two of its session
//! changes. Put it outside `SessionLayer`: the session's save is then
//! dropped along with the handler, so a timed-out request is never half
//! saved, whatever status the timeout answers. Inside `SessionLayer`, the
//! layer sees only the timeout's response: it saves nothing on a 408 (what
//! tower-http's `TimeoutLayer` answers by default) or a 5xx, but with any
//! other status it would save the changes the handler made before it was
//! dropped.
//!
//! axum's `Router::layer` wraps everything added before it, so the last
//! `.layer` call is the outermost:
//!
//! ```
//! use std::time::Duration;
//!
//! use axum::{body::Body, http::{header, Request, StatusCode}, routing::get, Router};
//! use keepsake::{key::{Key, KeyRing}, middleware::SessionLayer, session::{Session, SessionError}, store::MemoryStore};
//! use tower_http::timeout::TimeoutLayer;
//! use tower_service::Service as _;
//!
//! async fn slow(session: Session) -> Result<&'static str, SessionError> {
//!     session.insert("step", 1).await?;
//!     tokio::time::sleep(Duration::from_secs(60)).await; // a slow call
//!     session.insert("step", 2).await?;
//!     Ok("done")
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemoryStore::new();
//! let layer = SessionLayer::with_store(store.clone(), KeyRing::new(Key::generate())).build()?;
//! let timeout = TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_millis(50));
//! let mut app = Router::new()
//!     .route("/", get(slow))
//!     .layer(layer) // inside: around the handler
//!     .layer(timeout); // added last: the outermost
//!
//! let response = app.call(Request::get("/").body(Body::empty())?).await?;
//! assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
//! assert!(response.headers().get(header::SET_COOKIE).is_none());
//! assert_eq!(store.len(), 0); // not even the first change was saved
//! # Ok(())
//! # }
//! ```
//!
//! # Response body types
//!
//! `SessionLayer` writes some responses itself (the 400 for a rejected bad
//! cookie, the 503 when the store fails), so its service needs a response
//! body it can make from a `String` (`ResBody: From<String>`, as
//! `axum::body::Body` and `String` are). With axum's `Router::layer`, each
//! layer's response is turned back into an `axum::body::Body`, so layers
//! can be added in any order. In one `tower::ServiceBuilder` the layers are
//! composed directly, so `SessionLayer` cannot wrap a layer that changes
//! the body type (tower-http's `CompressionLayer` or `CatchPanicLayer`, for
//! example): that does not compile. Put such layers before `SessionLayer`
//! in the builder (a `ServiceBuilder`'s first `.layer` is the outermost, the
//! reverse of `Router::layer`), or add them with a `Router::layer` call of
//! their own:
//!
//! ```
//! use std::time::Duration;
//!
//! use axum::{body::Body, http::{header, Request, StatusCode}, routing::get, Router};
//! use keepsake::{key::{Key, KeyRing}, middleware::SessionLayer, session::{Session, SessionError}, store::MemoryStore};
//! use tower::ServiceBuilder;
//! use tower_http::{catch_panic::CatchPanicLayer, timeout::TimeoutLayer};
//! use tower_service::Service as _;
//!
//! async fn hello(session: Session) -> Result<&'static str, SessionError> {
//!     session.insert("seen", true).await?;
//!     Ok("hello")
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = SessionLayer::with_store(MemoryStore::new(), KeyRing::new(Key::generate())).build()?;
//! let mut app = Router::new().route("/", get(hello)).layer(
//!     ServiceBuilder::new()
//!         .layer(CatchPanicLayer::new()) // changes the body type: outside the session
//!         .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(10)))
//!         .layer(layer), // the innermost: around the handler
//! );
//!
//! let response = app.call(Request::get("/").body(Body::empty())?).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert!(response.headers().get(header::SET_COOKIE).is_some());
//! # Ok(())
//! # }
//! ```

mod layer;
mod service;

pub(crate) use self::layer::UnavailableHook;
pub use self::{
    layer::{SessionLayer, SessionLayerBuilder},
    service::{ResponseFuture, SessionService},
};

/// Why a [`SessionLayer`] could not be built.
///
/// # Example
///
/// ```
/// use keepsake::{codec::Format, key::{Key, KeyRing}, middleware::{ConfigError, SessionLayer}};
///
/// let err = SessionLayer::with_cookies(Format::Signed, KeyRing::new(Key::generate()))
///     .cookie_name("")
///     .build()
///     .unwrap_err();
/// assert!(matches!(err, ConfigError::Cookie(_)));
///
/// // `Debug` (what `main` prints for an error it returns) names the
/// // variant, then says what `Display` and the causes say.
/// assert!(format!("{err:?}").starts_with(
///     "Cookie: the session cookie settings are not valid: the cookie name \"\" is not a valid token"
/// ));
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The secret is missing or invalid: the [`KeyError`](crate::key::KeyError)
    /// itself, whose message names the variable and says how to make a
    /// secret.
    #[error(transparent)]
    Key(#[from] crate::key::KeyError),
    /// The cookie settings are not valid or would be rejected by browsers;
    /// the error's [`source`](std::error::Error::source) says which and why.
    ///
    /// ```
    /// use std::error::Error as _;
    /// use keepsake::{codec::Format, key::{Key, KeyRing}, middleware::{ConfigError, SessionLayer}};
    ///
    /// let err = SessionLayer::with_cookies(Format::Signed, KeyRing::new(Key::generate()))
    ///     .domain("example.com")
    ///     .host_prefix(true)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.to_string(), "the session cookie settings are not valid");
    /// assert_eq!(
    ///     err.source().unwrap().to_string(),
    ///     "cookie `__Host-session`: the `__Host-` prefix forbids a `Domain` attribute"
    /// );
    /// ```
    #[error("the session cookie settings are not valid")]
    Cookie(#[from] crate::cookies::CookieError),
    /// The lifetimes or the timeout do not make sense together, or a
    /// lifetime exceeds [`Expiry::MAX_LIFETIME`](crate::session::Expiry::MAX_LIFETIME)
    /// (400 days).
    #[error("session lifetimes: {0}")]
    Lifetime(&'static str),
    /// A [`Cookie`](Self::Cookie) or [`Lifetime`](Self::Lifetime) error
    /// (the [`source`](std::error::Error::source)) from settings that
    /// [`SessionLayerBuilder::from_env`] read from the environment, alone
    /// or together with settings made in code.
    ///
    /// ```
    /// use std::{env::VarError, error::Error as _};
    /// use keepsake::{key::{Key, KeyRing}, middleware::{ConfigError, SessionLayer}, store::MemoryStore};
    ///
    /// let err = SessionLayer::with_store(MemoryStore::new(), KeyRing::new(Key::generate()))
    ///     .from_env_with(|name| match name {
    ///         "KEEPSAKE_IDLE_TIMEOUT" => Ok("7200".to_owned()),
    ///         _ => Err(VarError::NotPresent),
    ///     })?
    ///     .absolute_lifetime(std::time::Duration::from_secs(3600))
    ///     .build()
    ///     .unwrap_err();
    /// assert!(matches!(&err, ConfigError::FromEnv { vars, .. } if vars == &["KEEPSAKE_IDLE_TIMEOUT"]));
    /// assert!(err.source().unwrap().to_string().starts_with("session lifetimes: the idle timeout"));
    /// # Ok::<(), ConfigError>(())
    /// ```
    #[error("the session settings from the environment ({}) were refused", vars.join(", "))]
    FromEnv {
        /// The variables that set any of the settings involved.
        vars: Vec<&'static str>,
        /// The `Cookie` or `Lifetime` error (also the error's
        /// [`source`](std::error::Error::source), as a `Box<ConfigError>`).
        source: Box<ConfigError>,
    },
    /// The Flask, Starlette or Django secret key, or one of its fallbacks,
    /// is empty: anyone could sign session cookies with it (Flask would
    /// still verify with an empty fallback key, and Starlette with an empty
    /// `secret_key`; keepsake refuses both).
    ///
    /// ```
    /// # #[cfg(feature = "interop")] {
    /// use keepsake::{codec::interop::{Framework, InteropCodec}, middleware::{ConfigError, SessionLayer}};
    ///
    /// let err = SessionLayer::with_interop(InteropCodec::new(Framework::Flask, "")).build().unwrap_err();
    /// assert!(matches!(err, ConfigError::EmptySecret(Framework::Flask)));
    /// # }
    /// ```
    #[cfg(feature = "interop")]
    #[cfg_attr(docsrs, doc(cfg(feature = "interop")))]
    #[error("the {0} secret key is empty: anyone could sign session cookies with it")]
    EmptySecret(crate::codec::interop::Framework),
    /// An environment variable has a value that cannot be used (a value
    /// that is not UTF-8 is shown with replacement characters).
    #[error("the environment variable {var} has an invalid value {value:?}; expected {expected}")]
    Env {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What the variable takes, such as "`true` or `false`".
        expected: &'static str,
    },
}

/// `Variant: message: cause: ...`, as for [`KeyError`](crate::key::KeyError):
/// the message and its hint rather than the fields. No variant holds a
/// secret (a [`Key`](Self::Key) error never shows the secret, and
/// [`Env`](Self::Env) is never about a secret's variable).
impl std::fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let variant = match self {
            Self::Key(_) => "Key",
            Self::Cookie(_) => "Cookie",
            Self::Lifetime(_) => "Lifetime",
            Self::FromEnv { .. } => "FromEnv",
            #[cfg(feature = "interop")]
            Self::EmptySecret(_) => "EmptySecret",
            Self::Env { .. } => "Env",
        };
        crate::key::debug_error(f, variant, self)
    }
}
