//! [`SessionLayer`] and its builder.

use std::{sync::Arc, time::Duration};

use http::{Response, StatusCode, header};
use tower_layer::Layer;

use super::{ConfigError, SessionService};
use crate::{
    codec::{Codec, Format},
    cookies::{Cookie, CookieBuilder, Prefix, SameSite, SetCookieTemplate},
    key::KeyRing,
    session::{
        BadCookie, Clock, SystemClock,
        context::{Backend, Context, WriteLocks},
    },
    store::{SessionStore, StoreError},
};

/// Renders the response for a store failure.
pub(crate) type UnavailableHook = Arc<dyn Fn(&StoreError) -> Response<String> + Send + Sync>;

/// The tower [`Layer`] that gives every request a
/// [`Session`](crate::session::Session).
///
/// Made with [`SessionLayer::with_store`] (server-side sessions: the cookie
/// holds only a signed id) or [`SessionLayer::with_cookies`] (client-side
/// sessions: the whole session, signed or sealed, in the cookie), configured
/// with its builder methods, and finished with
/// [`build`](SessionLayerBuilder::build). Cheap to clone.
///
/// The layer writes its own 400 (a rejected bad cookie) and 503 (the store
/// failed) responses, so the service it wraps must answer with a body that
/// can be made from a `String` (`ResBody: From<String>`, as
/// `axum::body::Body` is). With axum's `Router::layer` that always holds,
/// whatever the order of the layers. In one `tower::ServiceBuilder`, put a
/// layer that changes the body type (tower-http's `CompressionLayer`,
/// `CatchPanicLayer`) before this one, that is outside it. Put timeout
/// layers outside it too, so that a timed-out request is never half saved.
/// The module docs show both, on
/// [timeouts](crate::middleware#timeouts-go-outside-sessionlayer) and on
/// [body types](crate::middleware#response-body-types).
///
/// # Example
///
/// ```
/// use keepsake::{key::{Key, KeyRing}, middleware::SessionLayer, store::MemoryStore};
///
/// let ring = KeyRing::new(Key::generate());
/// let layer = SessionLayer::with_store(MemoryStore::new(), ring)
///     .cookie_name("sid")
///     .build()?;
/// assert_eq!(layer.cookie_name(), "sid");
/// # Ok::<(), keepsake::middleware::ConfigError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct SessionLayer {
    ctx: Arc<Context>,
}

impl std::fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayer")
            .field("cookie_name", &self.ctx.cookie_name)
            .finish_non_exhaustive()
    }
}

impl SessionLayer {
    /// Server-side sessions in `store`; the cookie holds the session id,
    /// signed with `ring`.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::{key::{Key, KeyRing}, middleware::SessionLayer, store::MemoryStore};
    ///
    /// let layer = SessionLayer::with_store(MemoryStore::new(), KeyRing::new(Key::generate())).build()?;
    /// assert_eq!(layer.cookie_name(), "session");
    /// # Ok::<(), keepsake::middleware::ConfigError>(())
    /// ```
    pub fn with_store(store: impl SessionStore, ring: KeyRing) -> SessionLayerBuilder {
        SessionLayerBuilder::new(Backend::Store(Arc::new(store)), Codec::signed(ring))
    }

    /// Client-side sessions: the whole session in the cookie, signed
    /// (readable by the visitor) or sealed (encrypted), with its expiry
    /// inside the protected part. Nothing is kept on the server, so a
    /// session cannot be ended from the server before it expires, and the
    /// session must fit in a 4096-byte cookie. The cookie carries the
    /// session's record in a compact layout
    /// ([`Record::to_cookie_payload`](crate::store::Record::to_cookie_payload)):
    /// its fixed fields in 38 to 50 bytes (and the user, if set), then the
    /// data as JSON.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::{codec::Format, key::{Key, KeyRing}, middleware::SessionLayer};
    ///
    /// let layer = SessionLayer::with_cookies(Format::Sealed, KeyRing::new(Key::generate())).build()?;
    /// assert_eq!(layer.cookie_name(), "session");
    /// # Ok::<(), keepsake::middleware::ConfigError>(())
    /// ```
    pub fn with_cookies(format: Format, ring: KeyRing) -> SessionLayerBuilder {
        SessionLayerBuilder::new(Backend::Cookie, Codec::new(format, ring))
    }

    /// Client-side sessions in a Flask, Starlette or Django session cookie
    /// (feature `interop`), so the app shares sessions with a Python app
    /// that has the same secret key. The cookie name is the framework's
    /// (`session`, or `sessionid` for Django).
    ///
    /// How long a session lasts follows the framework's rules, not the
    /// layer's:
    ///
    /// - A session ends
    ///   [`max_age`](crate::codec::interop::InteropCodec::max_age) after its
    ///   cookie was last written, as in the framework. Only a request that
    ///   changes the session writes it: reading a session does not extend
    ///   it. The exception is the framework's own refresh on every request
    ///   ([`with_refresh_each_request`](crate::codec::interop::InteropCodec::with_refresh_each_request)):
    ///   Flask re-issues a permanent session on every request
    ///   (`SESSION_REFRESH_EACH_REQUEST`, on by default), and keepsake does
    ///   too. A cookie that only a fallback key verified is issued again
    ///   under the current key with its original issue time, so rotating the
    ///   key extends nothing.
    /// - The cookie's `Max-Age` is the framework's: Starlette's `max_age`
    ///   and Django's `SESSION_COOKIE_AGE` (or the session's
    ///   `_session_expiry`, Django's `set_expiry`) on every cookie, new
    ///   sessions included, unless
    ///   [`with_browser_session`](crate::codec::interop::InteropCodec::with_browser_session)
    ///   (Django's `SESSION_EXPIRE_AT_BROWSER_CLOSE`); for Flask none unless
    ///   the session is permanent, and then the codec's `max_age`
    ///   (`PERMANENT_SESSION_LIFETIME`). Flask's `session.permanent = True`
    ///   is `session.insert("_permanent", true)`: the framework's own keys
    ///   are session data, seen and changed as in the framework.
    /// - So [`build`](SessionLayerBuilder::build) refuses
    ///   [`idle_timeout`](SessionLayerBuilder::idle_timeout),
    ///   [`absolute_lifetime`](SessionLayerBuilder::absolute_lifetime) and
    ///   [`persistent`](SessionLayerBuilder::persistent) with a framework's
    ///   cookie (they would hold for a new session's first answer only); set
    ///   the codec's `max_age`. For the same reason
    ///   [`Session::set_expiry`](crate::session::Session::set_expiry) fails
    ///   with [`SessionError::Unwritable`](crate::session::SessionError::Unwritable)
    ///   (the cookie carries no lifetime of keepsake's), and so does
    ///   [`Session::set_user`](crate::session::Session::set_user) (the cookie
    ///   has no place for keepsake's session user: store the user in the
    ///   session's data).
    ///
    /// [`build`](SessionLayerBuilder::build) refuses a codec with an empty
    /// secret key or fallback key
    /// ([`ConfigError::EmptySecret`](crate::middleware::ConfigError::EmptySecret)).
    /// The size check counts the cookie name actually sent
    /// (with a `__Host-` prefix, or one set with
    /// [`cookie_name`](SessionLayerBuilder::cookie_name)). A validly signed
    /// cookie whose session keepsake cannot hold exactly (an integer beyond
    /// 64 bits, a `NaN`) is left as it is: using the session fails with
    /// [`SessionError::Unavailable`](crate::session::SessionError::Unavailable)
    /// (a [`Corrupt`](crate::store::StoreErrorKind::Corrupt) store error,
    /// and a 503 answer), and no `Set-Cookie` replaces it. See
    /// [`InteropCodec::decode_record`](crate::codec::interop::InteropCodec::decode_record)
    /// for how the framework's session maps to a keepsake one.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::{codec::interop::{Framework, InteropCodec}, middleware::SessionLayer};
    ///
    /// let django = InteropCodec::new(Framework::Django, "the Django app's SECRET_KEY");
    /// let layer = SessionLayer::with_interop(django.clone()).build()?;
    /// assert_eq!(layer.cookie_name(), "sessionid");
    ///
    /// // How long a session lasts is the framework's `max_age`, not the layer's.
    /// let err = SessionLayer::with_interop(django)
    ///     .idle_timeout(Some(std::time::Duration::from_secs(60)))
    ///     .build()
    ///     .unwrap_err();
    /// assert!(matches!(err, keepsake::middleware::ConfigError::Lifetime(_)));
    ///
    /// // An empty key, current or fallback, is refused (anyone can sign with it).
    /// let rotated = InteropCodec::new(Framework::Django, "key").with_fallbacks(["old", ""]);
    /// let err = SessionLayer::with_interop(rotated).build().unwrap_err();
    /// assert!(matches!(err, keepsake::middleware::ConfigError::EmptySecret(Framework::Django)));
    /// # Ok::<(), keepsake::middleware::ConfigError>(())
    /// ```
    #[cfg(feature = "interop")]
    #[cfg_attr(docsrs, doc(cfg(feature = "interop")))]
    pub fn with_interop(codec: crate::codec::interop::InteropCodec) -> SessionLayerBuilder {
        // keepsake's own codec is unused; it gets a throwaway key.
        let mut builder = SessionLayerBuilder::new(
            Backend::Cookie,
            Codec::signed(KeyRing::new(crate::key::Key::generate())),
        );
        builder.name = codec.cookie_name().to_owned();
        // Starlette and Django give every session cookie a `Max-Age`; Flask
        // only a permanent session. (For information: the codec decides
        // each cookie's `Max-Age` from the session's data.)
        builder.persistent = codec.framework() != crate::codec::interop::Framework::Flask
            && codec.max_age().is_some()
            && !codec.browser_session();
        builder.interop = Some(codec);
        builder
    }

    /// Server-side sessions in `store`, configured from the environment: the
    /// key ring from `KEEPSAKE_SECRET` (base64; required) and
    /// `KEEPSAKE_SECRET_FALLBACKS` (comma-separated fallback keys), read by
    /// [`KeyRing::from_env`], and the settings read by
    /// [`SessionLayerBuilder::from_env`].
    ///
    /// The app's own signed and private cookies need the same ring, or they
    /// stop reading values made with a key that a rotation moved to the
    /// fallbacks: build it once with [`KeyRing::from_env`] and pass it to
    /// [`with_store`](Self::with_store) and to the cookie jar.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Key`] when `KEEPSAKE_SECRET` is missing (the message
    /// says how to make a secret), when either variable is not valid UTF-8,
    /// or when a secret in them is not valid (the message names the
    /// variable and, for a fallback, its position in the list), and the
    /// errors of [`SessionLayerBuilder::from_env`]. Every one of them names
    /// the variable to fix.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::{middleware::SessionLayer, store::MemoryStore};
    ///
    /// // Whatever this process's environment holds:
    /// match SessionLayer::from_env(MemoryStore::new()) {
    ///     Ok(_) => assert!(std::env::var_os("KEEPSAKE_SECRET").is_some()),
    ///     Err(err) => assert!(err.to_string().contains("KEEPSAKE_"), "{err}"),
    /// }
    /// ```
    pub fn from_env(store: impl SessionStore) -> Result<SessionLayerBuilder, ConfigError> {
        Self::from_env_with(store, |name| std::env::var(name))
    }

    /// [`SessionLayer::from_env`] with the variables that `lookup` gives (it
    /// answers as [`std::env::var`] does): for tests, or for settings kept
    /// somewhere else than the process environment.
    ///
    /// # Errors
    ///
    /// Those of [`SessionLayer::from_env`].
    ///
    /// # Example
    ///
    /// ```
    /// use std::env::VarError;
    /// use keepsake::{key::{Key, KeyRing}, middleware::SessionLayer, store::MemoryStore};
    ///
    /// let (old, new) = (Key::generate().to_base64(), Key::generate().to_base64());
    /// let vars = move |name: &str| match name {
    ///     "KEEPSAKE_SECRET" => Ok(new.clone()),
    ///     "KEEPSAKE_SECRET_FALLBACKS" => Ok(old.clone()),
    ///     "KEEPSAKE_COOKIE_NAME" => Ok("sid".to_owned()),
    ///     _ => Err(VarError::NotPresent),
    /// };
    /// let layer = SessionLayer::from_env_with(MemoryStore::new(), &vars)?.build()?;
    /// assert_eq!(layer.cookie_name(), "sid");
    /// // The same ring for the app's own cookies.
    /// assert_eq!(KeyRing::from_env_with(&vars)?.fallbacks().len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_env_with(
        store: impl SessionStore,
        lookup: impl Fn(&str) -> Result<String, std::env::VarError>,
    ) -> Result<SessionLayerBuilder, ConfigError> {
        let ring = KeyRing::from_env_with(&lookup)?;
        Self::with_store(store, ring).from_env_with(lookup)
    }

    /// The session cookie's full name (prefix included).
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::{codec::Format, key::{Key, KeyRing}, middleware::SessionLayer};
    ///
    /// let layer = SessionLayer::with_cookies(Format::Signed, KeyRing::new(Key::generate()))
    ///     .host_prefix(true)
    ///     .build()?;
    /// assert_eq!(layer.cookie_name(), "__Host-session");
    /// # Ok::<(), keepsake::middleware::ConfigError>(())
    /// ```
    pub fn cookie_name(&self) -> &str {
        &self.ctx.cookie_name
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService::new(inner, self.ctx.clone())
    }
}

/// The environment variables of [`SessionLayerBuilder::from_env`], read
/// through a lookup (the process environment, or a test's).
struct Vars<F> {
    lookup: F,
    /// The variables that had a value, in the order read.
    applied: std::cell::RefCell<Vec<&'static str>>,
}

impl<F: Fn(&str) -> Result<String, std::env::VarError>> Vars<F> {
    /// The variable's value, if set and not empty; an error if it is not
    /// UTF-8 (`expected` says what it takes).
    fn text(
        &self,
        name: &'static str,
        expected: &'static str,
    ) -> Result<Option<String>, ConfigError> {
        match (self.lookup)(name) {
            Ok(value) if value.is_empty() => Ok(None),
            Ok(value) => {
                self.applied.borrow_mut().push(name);
                Ok(Some(value))
            }
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(value)) => Err(ConfigError::Env {
                var: name,
                value: value.to_string_lossy().into_owned(),
                expected,
            }),
        }
    }

    /// The variable's value parsed as a `T`, if set and not empty.
    fn parsed<T: std::str::FromStr>(
        &self,
        name: &'static str,
        expected: &'static str,
    ) -> Result<Option<T>, ConfigError> {
        self.text(name, expected)?
            .map(|value| {
                value.trim().parse().map_err(|_| ConfigError::Env {
                    var: name,
                    value,
                    expected,
                })
            })
            .transpose()
    }
}

/// Configures a [`SessionLayer`]. Every setting has a secure default, named
/// on its method.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use keepsake::{
///     key::{Key, KeyRing}, middleware::SessionLayer, session::BadCookie, store::MemoryStore,
/// };
///
/// let layer = SessionLayer::with_store(MemoryStore::new(), KeyRing::new(Key::generate()))
///     .idle_timeout(Some(Duration::from_secs(15 * 60)))
///     .absolute_lifetime(Duration::from_secs(7 * 86_400))
///     .bad_cookie(BadCookie::Reject)
///     .build()?;
/// assert_eq!(layer.cookie_name(), "session");
/// # Ok::<(), keepsake::middleware::ConfigError>(())
/// ```
#[must_use]
pub struct SessionLayerBuilder {
    backend: Backend,
    codec: Codec,
    name: String,
    path: String,
    domain: Option<String>,
    secure: bool,
    http_only: bool,
    same_site: Option<SameSite>,
    host_prefix: bool,
    idle_timeout: Option<Duration>,
    absolute_lifetime: Duration,
    persistent: bool,
    /// `idle_timeout`, `absolute_lifetime` or `persistent` was set, which
    /// `with_interop` refuses (the framework's rules decide them there).
    #[cfg_attr(not(feature = "interop"), allow(dead_code))]
    lifetime_set: bool,
    bad_cookie: BadCookie,
    store_timeout: Duration,
    max_replays: usize,
    clock: Arc<dyn Clock>,
    unavailable: Option<UnavailableHook>,
    #[cfg(feature = "interop")]
    interop: Option<crate::codec::interop::InteropCodec>,
    /// The variables [`from_env`](SessionLayerBuilder::from_env) applied,
    /// for the errors of `build`.
    from_env: Vec<&'static str>,
}

/// The variables of the cookie's attributes, which `build` checks together.
const COOKIE_VARS: &[&str] = &[
    "KEEPSAKE_COOKIE_NAME",
    "KEEPSAKE_COOKIE_PATH",
    "KEEPSAKE_COOKIE_DOMAIN",
    "KEEPSAKE_COOKIE_SECURE",
    "KEEPSAKE_HOST_PREFIX",
];

/// The default of [`SessionLayerBuilder::max_replays`].
const DEFAULT_MAX_REPLAYS: usize = 16;

impl std::fmt::Debug for SessionLayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayerBuilder")
            .field("name", &self.name)
            .field("idle_timeout", &self.idle_timeout)
            .field("absolute_lifetime", &self.absolute_lifetime)
            .finish_non_exhaustive()
    }
}

impl SessionLayerBuilder {
    fn new(backend: Backend, codec: Codec) -> Self {
        Self {
            backend,
            codec,
            name: "session".to_owned(),
            path: "/".to_owned(),
            domain: None,
            secure: true,
            http_only: true,
            same_site: Some(SameSite::Lax),
            host_prefix: false,
            idle_timeout: Some(Duration::from_secs(30 * 60)),
            absolute_lifetime: Duration::from_secs(14 * 86_400),
            persistent: false,
            lifetime_set: false,
            bad_cookie: BadCookie::Ignore,
            store_timeout: Duration::from_secs(1),
            max_replays: DEFAULT_MAX_REPLAYS,
            clock: Arc::new(SystemClock),
            unavailable: None,
            #[cfg(feature = "interop")]
            interop: None,
            from_env: Vec::new(),
        }
    }

    /// The cookie name (default `session`).
    ///
    /// Two session layers in one app (one on the whole app, another on a
    /// nested router, say) need different names: with the same name each
    /// takes the other's cookie for a bad one, and replaces it (or, with
    /// [`BadCookie::Reject`], answers 400). A handler under both sees the
    /// inner layer's [`Session`](crate::session::Session) only.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{codec::Format, key::{Key, KeyRing}, middleware::SessionLayer};
    /// let layer = SessionLayer::with_cookies(Format::Signed, KeyRing::new(Key::generate()))
    ///     .cookie_name("app")
    ///     .build()?;
    /// assert_eq!(layer.cookie_name(), "app");
    /// # Ok::<(), keepsake::middleware::ConfigError>(())
    /// ```
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The cookie's `Path` (default `/`).
    ///
    /// # Example
    ///
    /// ```
    /// # fn respond(layer: &SessionLayer, cookie: &str) -> http::Response<String> {
    /// #     use tower_service::Service as _;
    /// #     let handler = tower::service_fn(|request: http::Request<String>| async move {
    /// #         let session = request.extensions().get::<keepsake::session::Session>().cloned().unwrap();
    /// #         let _ = session.insert("n", 1).await; // a store failure is the layer's to answer
    /// #         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// #     });
    /// #     let request = http::Request::builder().header("cookie", cookie).body(String::new()).unwrap();
    /// #     let answer = tower_layer::Layer::layer(layer, handler).call(request);
    /// #     let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// #     runtime.block_on(answer).unwrap()
    /// # }
    /// # fn set_cookie(layer: &SessionLayer) -> String {
    /// #     respond(layer, "").headers()[http::header::SET_COOKIE].to_str().unwrap().to_owned()
    /// # }
    /// // `set_cookie(&layer)`: the `Set-Cookie` header of the layer's answer to a
    /// // first request whose handler writes to the session.
    /// # use keepsake::{codec::Format, key::{Key, KeyRing}, middleware::SessionLayer};
    /// let layer = SessionLayer::with_cookies(Format::Signed, KeyRing::new(Key::generate())).path("/app").build()?;
    /// assert!(set_cookie(&layer).ends_with("; Path=/app"));
    /// # Ok::<(), keepsake::middleware::ConfigError>(())
    /// ```
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The cookie's `Domain` (default: none, a host-only cookie).
    ///
    /// # Example
    ///
    /// ```
    /// # fn respond(layer: &SessionLayer, cookie: &str) -> http::Response<String> {
    /// #     use tower_service::Service as _;
    /// #     let handler = tower::service_fn(|request: http::Request<String>| async move {
    /// #         let session = request.extensions().get::<keepsake::session::Session>().cloned().unwrap();
    /// #         let _ = session.insert("n", 1).await; // a store failure is the layer's to answer
    /// #         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// #     });
    /// #     let request = http::Request::builder().header("cookie", cookie).body(String::new()).unwrap();
    /// #     let answer = tower_layer::Layer::layer(layer, handler).call(request);
    /// #     let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// #     runtime.block_on(answer).unwrap()
    /// # }
    /// # fn set_cookie(layer: &SessionLayer) -> String {
    /// #     respond(layer, "").headers()[http::header::SET_COOKIE].to_str().unwrap().to_owned()
    /// # }
    /// // `set_cookie(&layer)`: the `Set-Cookie` header of the layer's answer to a
    /// // first request whose handler writes to the session.
    /// # use keepsake::{codec::Format, key::{Key, KeyRing}, middleware::SessionLayer};
    /// let builder = || SessionLayer::with_cookies(Format::Signed, KeyRing::new(Key::generate()));
    /// assert!(set_cookie(&builder().domain("example.com").build()?).contains("; Domain=example.com"));
    /// assert!(!set_cookie(&builder().build()?).contains("Domain="));
    /// # Ok::<(), keepsake::middleware::ConfigError>(())
    /// ```
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// `Secure` (default `true`).
    ///
    /// # ⚠️ Warning
    ///
    /// Without `Secure` the session cookie also travels over plain HTTP,
    /// where anyone on the path can steal the session. Never turn it off in
    /// production.
    ///
    /// Over plain `http://`, browsers keep a `Secure` cookie only from a
    /// loopback host: Chrome, Edge and Firefox (and curl) keep it from
    /// `http://localhost` and `http://127.0.0.1`, so the default works for
    /// local development there. Safari keeps none over `http://`, not even
    /// from `localhost`. Through any other name (a LAN address, a docker
    /// service name, an `/etc/hosts` alias, a phone on the LAN) the cookie
    /// is silently dropped and every request starts a new session. Use
    /// `secure(false)` only for development over plain `http://` through
    /// such a name (or with Safari).
    ///
    /// # Example
    ///
    /// ```
    /// # fn respond(layer: &SessionLayer, cookie: &str) -> http::Response<String> {
    /// #     use tower_service::Service as _;
    /// #     let handler = tower::service_fn(|request: http::Request<String>| async move {
    /// #         let session = request.extensions().get::<keepsake::session::Session>().cloned().unwrap();
    /// #         let _ = session.insert("n", 1).await; // a store failure is the layer's to answer
    /// #         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// #     });
    /// #     let request = http::Request::builder().header("cookie", cookie).body(String::new()).unwrap();
    /// #     let answer = tower_layer::Layer::layer(layer, handler).call(request);
    /// #     let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// #     runtime.block_on(answer).unwrap()
    /// # }
    /// # fn set_cookie(layer: &SessionLayer) -> String {
    /// #     respond(layer, "").headers()[http::header::SET_COOKIE].to_str().unwrap().to_owned()
    /// # }
    /// // `set_cookie(&layer)`: the `Set-Cookie` header of the layer's answer to a
    /// // first request whose handler writes to the session.
    /// # use keepsake::{codec::Format, key::{Key, KeyRing}, middleware::SessionLayer};
    /// let builder = || SessionLayer::with_cookies(Format::Signed, KeyRing::new(Key::generate()));
    /// assert!(set_cookie(&builder().build()?).contains("; Secure"));
    /// assert!(!set_cookie(&builder().secure(false).build()?).contains("Secure"));
    /// # Ok::<(), keepsake::middleware::ConfigError>(())
    /// ```
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// `HttpOnly` (default `true`).
    ///
    /// # ⚠️ Warning
    ///
    /// Without it, any script on the page (one XSS bug) can read the session
    /// cookie.
    ///
    /// # Example
    ///
    /// ```
    /// # fn respond(layer: &SessionLayer, cookie: &str) -> http::Response<String> {
    /// #     use tower_service::Service as _;
    /// #     let handler = tower::service_fn(|request: http::Request<String>| async move {
    /// #         let session = request.extensions().get::<keepsake::session::Session>().cloned().unwrap();
    /// #         let _ = session.insert("n", 1).await; // a store failure is the layer's to answer
    /// #         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// #     });
    /// #     let request = http::Request::builder().header("cookie", cookie).body(String::new()).unwrap();
    /// #     let answer = tower_layer::Layer::layer(layer, handler).call(request);
    /// #     let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// #     runtime.block_on(answer).unwrap()
    /// # }
    /// # fn set_cookie(layer: &SessionLayer) -> String {
    /// #     respond(layer, "").headers()[http::header::SET_COOKIE].to_str().unwrap().to_owned()
    /// # }
    /// // `set_cookie(&layer)`: the `Set-Cookie` header of the layer's answer to a
    /// // first request whose handler writes to the session.
    /// # use keepsake::{codec::Format, key::{Key, KeyRing}, middleware::SessionLayer};
    /// let builder = || SessionLayer::with_cookies(Format::Signed, KeyRing::new(Key::generate()));
    /// assert!(set_cookie(&builder().build()?).contains("; HttpOnly"));
    /// assert!(!set_cookie(&builder().http_only(false).build()?).contains("HttpOnly"));
    /// # Ok::<(), keepsake::middleware::ConfigError>(())
    /// ```
    pub fn http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }

    /// `SameSite` (default `Lax`).
    ///
    /// # Example
    ///
    /// ```
    /// # fn respond(layer: &SessionLayer, cookie: &str) -> http::Response<String> {
    /// #     use tower_service::Service as _;
    /// #     let handler = tower::service_fn(|request: http::Request<String>| async move {
    /// #         let session = request.extensions().get::<keepsake::session::Session>().cloned().unwrap();
    /// #         let _ = session.insert("n", 1).await; // a store failure is the layer's to answer
    /// #         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// #     });
    /// #     let request = http::Request::builder().header("cookie", cookie).body(String::new()).unwrap();
    /// #     let answer = tower_layer::Layer::layer(layer, handler).call(request);
    /// #     let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// #     runtime.block_on(answer).unwrap()
    /// # }
    /// # fn set_cookie(layer: &SessionLayer) -> String {
    /// #     respond(layer, "").headers()[http::header::SET_COOKIE].to_str().unwrap().to_owned()
    /// # }
    /// // `set_cookie(&layer)`: the `Set-Cookie` header of the layer's answer to a
    /// // first request whose handler writes to the session.
    /// # use keepsake::{codec::Format, cookies::SameSite, key::{Key, KeyRing}, middleware::SessionLayer};
    /// let builder = || SessionLayer::with_cookies(Format::Signed, KeyRing::new(Key::generate()));
    /// assert!(set_cookie(&builder().build()?).contains("; SameSite=Lax"));
    /// let strict = builder().same_site(Some(SameSite::Strict)).build()?;
    /// assert!(set_cookie(&strict).contains("; SameSite=Strict"));
    /// assert!(!set_cookie(&builder().same_site(None).build()?).contains("SameSite"));
    /// # Ok::<(), keepsake::middleware::ConfigError>(())
    /// ```
    pub fn same_site(mut self, same_site: Option<SameSite>) -> Self {
        self.same_site = same_site;
        self
    }

    /// Names the cookie with the `__Host-` prefix (default `false`), so no
    /// subdomain can set or overwrite it. Needs `Secure`, `Path=/` and no
    /// `Domain`; [`build`](Self::build) checks. A
    /// [`cookie_name`](Self::cookie_name) that already starts with
    /// `__Host-` keeps it once.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{codec::Format, key::{Key, KeyRing}, middleware::SessionLayer};
    /// let builder = || SessionLayer::with_cookies(Format::Signed, KeyRing::new(Key::generate()));
    /// let err = builder().host_prefix(true).path("/app").build().unwrap_err();
    /// let why = std::error::Error::source(&err).unwrap().to_string();
    /// assert_eq!(why, "cookie `__Host-session`: the `__Host-` prefix requires `Path=/`");
    /// let layer = builder().host_prefix(true).cookie_name("__Host-sid").build()?;
    /// assert_eq!(layer.cookie_name(), "__Host-sid");
    /// # Ok::<(), keepsake::middleware::ConfigError>(())
    /// ```
    pub fn host_prefix(mut self, host_prefix: bool) -> Self {
        self.host_prefix = host_prefix;
        self
    }

    /// Inactivity after which a session ends (default 30 minutes);
    /// `None` for no idle limit.
    ///
    /// Counted in whole seconds: a sub-second part is dropped (1500 ms is
    /// one second). [`build`](Self::build) refuses an idle timeout under one
    /// second, over 400 days
    /// ([`Expiry::MAX_LIFETIME`](crate::session::Expiry::MAX_LIFETIME)), or
    /// longer than the [absolute lifetime](Self::absolute_lifetime).
    ///
    /// # Example
    ///
    /// ```
    /// # fn respond(layer: &SessionLayer, cookie: &str) -> http::Response<String> {
    /// #     use tower_service::Service as _;
    /// #     let handler = tower::service_fn(|request: http::Request<String>| async move {
    /// #         let session = request.extensions().get::<keepsake::session::Session>().cloned().unwrap();
    /// #         let _ = session.insert("n", 1).await; // a store failure is the layer's to answer
    /// #         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// #     });
    /// #     let request = http::Request::builder().header("cookie", cookie).body(String::new()).unwrap();
    /// #     let answer = tower_layer::Layer::layer(layer, handler).call(request);
    /// #     let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// #     runtime.block_on(answer).unwrap()
    /// # }
    /// # fn set_cookie(layer: &SessionLayer) -> String {
    /// #     respond(layer, "").headers()[http::header::SET_COOKIE].to_str().unwrap().to_owned()
    /// # }
    /// // `set_cookie(&layer)`: the `Set-Cookie` header of the layer's answer to a
    /// // first request whose handler writes to the session.
    /// # use std::time::Duration;
    /// # use keepsake::{codec::Format, key::{Key, KeyRing}, middleware::SessionLayer};
    /// // A persistent client-side session's cookie lives until its idle deadline.
    /// let layer = SessionLayer::with_cookies(Format::Signed, KeyRing::new(Key::generate()))
    ///     .idle_timeout(Some(Duration::from_secs(600)))
    ///     .persistent(true)
    ///     .build()?;
    /// assert!(set_cookie(&layer).contains("; Max-Age=600"));
    /// # Ok::<(), keepsake::middleware::ConfigError>(())
    /// ```
    pub fn idle_timeout(mut self, idle: Option<Duration>) -> Self {
        self.idle_timeout = idle;
        self.lifetime_set = true;
        self
    }

    /// Lifetime after which a session ends however active it is (default 14
    /// days).
    ///
    /// Counted in whole seconds: a sub-second part is dropped (1999 ms is
    /// one second). [`build`](Self::build) refuses a lifetime under one
    /// second or over 400 days
    /// ([`Expiry::MAX_LIFETIME`](crate::session::Expiry::MAX_LIFETIME)):
    /// browsers keep no cookie longer than 400 days (RFC 6265bis), so a
    /// longer session would outlive its cookie, and there is no "no limit"
    /// (`Duration::MAX` is refused too).
    ///
    /// # Example
    ///
    /// ```
    /// # fn respond(layer: &SessionLayer, cookie: &str) -> http::Response<String> {
    /// #     use tower_service::Service as _;
    /// #     let handler = tower::service_fn(|request: http::Request<String>| async move {
    /// #         let session = request.extensions().get::<keepsake::session::Session>().cloned().unwrap();
    /// #         let _ = session.insert("n", 1).await; // a store failure is the layer's to answer
    /// #         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// #     });
    /// #     let request = http::Request::builder().header("cookie", cookie).body(String::new()).unwrap();
    /// #     let answer = tower_layer::Layer::layer(layer, handler).call(request);
    /// #     let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// #     runtime.block_on(answer).unwrap()
    /// # }
    /// # fn set_cookie(layer: &SessionLayer) -> String {
    /// #     respond(layer, "").headers()[http::header::SET_COOKIE].to_str().unwrap().to_owned()
    /// # }
    /// // `set_cookie(&layer)`: the `Set-Cookie` header of the layer's answer to a
    /// // first request whose handler writes to the session.
    /// # use std::time::Duration;
    /// # use keepsake::{key::{Key, KeyRing}, middleware::SessionLayer, store::MemoryStore};
    /// // A persistent server-side session's cookie lives until its absolute deadline.
    /// let layer = SessionLayer::with_store(MemoryStore::new(), KeyRing::new(Key::generate()))
    ///     .absolute_lifetime(Duration::from_secs(86_400))
    ///     .persistent(true)
    ///     .build()?;
    /// assert!(set_cookie(&layer).contains("; Max-Age=86400"));
    ///
    /// // Longer than a browser keeps a cookie: refused.
    /// let err = SessionLayer::with_store(MemoryStore::new(), KeyRing::new(Key::generate()))
    ///     .absolute_lifetime(Duration::from_secs(401 * 86_400))
    ///     .build()
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("at most 400 days"), "{err}");
    /// # Ok::<(), keepsake::middleware::ConfigError>(())
    /// ```
    pub fn absolute_lifetime(mut self, lifetime: Duration) -> Self {
        self.absolute_lifetime = lifetime;
        self.lifetime_set = true;
        self
    }

    /// Persistent cookies with `Max-Age` (default `false`: browser-session
    /// cookies, forgotten when the browser closes). One session can change
    /// this with [`Session::set_expiry`](crate::session::Session::set_expiry).
    ///
    /// # Example
    ///
    /// ```
    /// # fn respond(layer: &SessionLayer, cookie: &str) -> http::Response<String> {
    /// #     use tower_service::Service as _;
    /// #     let handler = tower::service_fn(|request: http::Request<String>| async move {
    /// #         let session = request.extensions().get::<keepsake::session::Session>().cloned().unwrap();
    /// #         let _ = session.insert("n", 1).await; // a store failure is the layer's to answer
    /// #         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// #     });
    /// #     let request = http::Request::builder().header("cookie", cookie).body(String::new()).unwrap();
    /// #     let answer = tower_layer::Layer::layer(layer, handler).call(request);
    /// #     let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// #     runtime.block_on(answer).unwrap()
    /// # }
    /// # fn set_cookie(layer: &SessionLayer) -> String {
    /// #     respond(layer, "").headers()[http::header::SET_COOKIE].to_str().unwrap().to_owned()
    /// # }
    /// // `set_cookie(&layer)`: the `Set-Cookie` header of the layer's answer to a
    /// // first request whose handler writes to the session.
    /// # use keepsake::{key::{Key, KeyRing}, middleware::SessionLayer, store::MemoryStore};
    /// let builder = || SessionLayer::with_store(MemoryStore::new(), KeyRing::new(Key::generate()));
    /// assert!(!set_cookie(&builder().build()?).contains("Max-Age"));
    /// // 14 days, the default absolute lifetime.
    /// assert!(set_cookie(&builder().persistent(true).build()?).contains("; Max-Age=1209600"));
    /// # Ok::<(), keepsake::middleware::ConfigError>(())
    /// ```
    pub fn persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self.lifetime_set = true;
        self
    }

    /// What to do with a session cookie that does not verify (default
    /// [`BadCookie::Ignore`]).
    ///
    /// # Example
    ///
    /// ```
    /// # fn respond(layer: &SessionLayer, cookie: &str) -> http::Response<String> {
    /// #     use tower_service::Service as _;
    /// #     let handler = tower::service_fn(|request: http::Request<String>| async move {
    /// #         let session = request.extensions().get::<keepsake::session::Session>().cloned().unwrap();
    /// #         let _ = session.insert("n", 1).await; // a store failure is the layer's to answer
    /// #         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// #     });
    /// #     let request = http::Request::builder().header("cookie", cookie).body(String::new()).unwrap();
    /// #     let answer = tower_layer::Layer::layer(layer, handler).call(request);
    /// #     let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// #     runtime.block_on(answer).unwrap()
    /// # }
    /// # fn set_cookie(layer: &SessionLayer) -> String {
    /// #     respond(layer, "").headers()[http::header::SET_COOKIE].to_str().unwrap().to_owned()
    /// # }
    /// // `respond(&layer, cookie)`: the layer's answer to a request with this
    /// // `Cookie` header, whose handler writes to the session.
    /// # use keepsake::{codec::Format, key::{Key, KeyRing}, middleware::SessionLayer, session::BadCookie};
    /// let builder = || SessionLayer::with_cookies(Format::Signed, KeyRing::new(Key::generate()));
    /// let forged = "session=s1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    /// assert_eq!(respond(&builder().build()?, forged).status(), 200); // a new session
    /// let answer = respond(&builder().bad_cookie(BadCookie::Reject).build()?, forged);
    /// assert_eq!(answer.status(), 400);
    /// assert!(answer.headers()["set-cookie"].to_str()?.contains("Max-Age=0")); // removed
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bad_cookie(mut self, policy: BadCookie) -> Self {
        self.bad_cookie = policy;
        self
    }

    /// How long one request may spend on the store, all its store calls
    /// (load, save, retries after a conflict, the wait for its turn to save)
    /// together, before it gets a 503 with `Retry-After` (default 1 second).
    /// The handler's own time between them does not count.
    ///
    /// # Example
    ///
    /// ```
    /// # fn respond(layer: &SessionLayer, cookie: &str) -> http::Response<String> {
    /// #     use tower_service::Service as _;
    /// #     let handler = tower::service_fn(|request: http::Request<String>| async move {
    /// #         let session = request.extensions().get::<keepsake::session::Session>().cloned().unwrap();
    /// #         let _ = session.insert("n", 1).await; // a store failure is the layer's to answer
    /// #         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// #     });
    /// #     let request = http::Request::builder().header("cookie", cookie).body(String::new()).unwrap();
    /// #     let answer = tower_layer::Layer::layer(layer, handler).call(request);
    /// #     let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// #     runtime.block_on(answer).unwrap()
    /// # }
    /// # fn set_cookie(layer: &SessionLayer) -> String {
    /// #     respond(layer, "").headers()[http::header::SET_COOKIE].to_str().unwrap().to_owned()
    /// # }
    /// // `respond(&layer, cookie)`: the layer's answer to a request with this
    /// // `Cookie` header, whose handler writes to the session.
    /// # use std::time::Duration;
    /// # use keepsake::{key::{Key, KeyRing}, middleware::SessionLayer, store::MemoryStore};
    /// let builder = || SessionLayer::with_store(MemoryStore::new(), KeyRing::new(Key::generate()));
    /// let layer = builder().store_timeout(Duration::from_millis(250)).build()?;
    /// assert_eq!(respond(&layer, "").status(), 200); // well within 250 ms
    /// assert!(builder().store_timeout(Duration::ZERO).build().is_err());
    /// # Ok::<(), keepsake::middleware::ConfigError>(())
    /// ```
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// The clock for every expiry decision (default: the system clock).
    ///
    /// # Example
    ///
    /// ```
    /// # fn respond(layer: &SessionLayer, cookie: &str) -> http::Response<String> {
    /// #     use tower_service::Service as _;
    /// #     let handler = tower::service_fn(|request: http::Request<String>| async move {
    /// #         let session = request.extensions().get::<keepsake::session::Session>().cloned().unwrap();
    /// #         let _ = session.insert("n", 1).await; // a store failure is the layer's to answer
    /// #         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// #     });
    /// #     let request = http::Request::builder().header("cookie", cookie).body(String::new()).unwrap();
    /// #     let answer = tower_layer::Layer::layer(layer, handler).call(request);
    /// #     let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// #     runtime.block_on(answer).unwrap()
    /// # }
    /// # fn set_cookie(layer: &SessionLayer) -> String {
    /// #     respond(layer, "").headers()[http::header::SET_COOKIE].to_str().unwrap().to_owned()
    /// # }
    /// // `set_cookie(&layer)`: the `Set-Cookie` header of the layer's answer to a
    /// // first request whose handler writes to the session.
    /// # use keepsake::{codec::Format, key::{Key, KeyRing}, middleware::SessionLayer, session::ManualClock};
    /// let clock = ManualClock::new(1_700_000_000);
    /// let layer = SessionLayer::with_cookies(Format::Signed, KeyRing::new(Key::generate())).clock(clock.clone()).build()?;
    /// // The cookie's value says when it was issued: by this clock.
    /// let header = set_cookie(&layer);
    /// let value = header.split(';').next().unwrap().trim_start_matches("session=");
    /// let seen = keepsake::codec::inspect(value)?;
    /// assert_eq!(seen.claims().unwrap().issued_at(), 1_700_000_000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How many times a save that lost a race with another request of the
    /// same session is retried on a fresh copy, with this request's changes
    /// replayed on top (default 16), before the request answers 503 and
    /// saves nothing. Retries after the first wait a random, growing time
    /// (up to 50 ms) so that many requests racing on one session take
    /// turns. Only server-side stores race; see the
    /// [crate docs](crate#concurrent-requests).
    ///
    /// # Example
    ///
    /// ```
    /// # fn respond(layer: &SessionLayer, cookie: &str) -> http::Response<String> {
    /// #     use tower_service::Service as _;
    /// #     let handler = tower::service_fn(|request: http::Request<String>| async move {
    /// #         let session = request.extensions().get::<keepsake::session::Session>().cloned().unwrap();
    /// #         let _ = session.insert("n", 1).await; // a store failure is the layer's to answer
    /// #         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// #     });
    /// #     let request = http::Request::builder().header("cookie", cookie).body(String::new()).unwrap();
    /// #     let answer = tower_layer::Layer::layer(layer, handler).call(request);
    /// #     let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// #     runtime.block_on(answer).unwrap()
    /// # }
    /// # fn set_cookie(layer: &SessionLayer) -> String {
    /// #     respond(layer, "").headers()[http::header::SET_COOKIE].to_str().unwrap().to_owned()
    /// # }
    /// // `respond(&layer, cookie)`: the layer's answer to a request with this
    /// // `Cookie` header, whose handler writes to the session.
    /// # use keepsake::{key::{Key, KeyRing}, middleware::SessionLayer, store::MemoryStore};
    /// // No retries at all: a save that loses a race answers 503 at once. A
    /// // request that races with nobody saves as usual.
    /// let layer = SessionLayer::with_store(MemoryStore::new(), KeyRing::new(Key::generate()))
    ///     .max_replays(0)
    ///     .build()?;
    /// let answer = respond(&layer, "");
    /// assert_eq!(answer.status(), 200);
    /// assert!(answer.headers().contains_key("set-cookie"));
    /// # Ok::<(), keepsake::middleware::ConfigError>(())
    /// ```
    pub fn max_replays(mut self, replays: usize) -> Self {
        self.max_replays = replays;
        self
    }

    /// Renders the 503 response when the store fails (default: an empty
    /// body). The middleware adds `Retry-After` if the hook's response has
    /// none; the status the hook sets is kept.
    ///
    /// # Example
    ///
    /// ```
    /// # fn respond(layer: &SessionLayer, cookie: &str) -> http::Response<String> {
    /// #     use tower_service::Service as _;
    /// #     let handler = tower::service_fn(|request: http::Request<String>| async move {
    /// #         let session = request.extensions().get::<keepsake::session::Session>().cloned().unwrap();
    /// #         let _ = session.insert("n", 1).await; // a store failure is the layer's to answer
    /// #         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// #     });
    /// #     let request = http::Request::builder().header("cookie", cookie).body(String::new()).unwrap();
    /// #     let answer = tower_layer::Layer::layer(layer, handler).call(request);
    /// #     let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// #     runtime.block_on(answer).unwrap()
    /// # }
    /// # fn set_cookie(layer: &SessionLayer) -> String {
    /// #     respond(layer, "").headers()[http::header::SET_COOKIE].to_str().unwrap().to_owned()
    /// # }
    /// // `respond(&layer, cookie)`: the layer's answer to a request with this
    /// // `Cookie` header, whose handler writes to the session.
    /// # use keepsake::{key::{Key, KeyRing}, middleware::SessionLayer, store::MemoryStore};
    /// // A store that refuses every new session, to see the hook at work.
    /// let full = MemoryStore::builder().max_records(0).build();
    /// let layer = SessionLayer::with_store(full, KeyRing::new(Key::generate()))
    ///     .on_unavailable(|_err| {
    ///         http::Response::builder()
    ///             .status(503)
    ///             .body("<h1>Back in a moment</h1>".to_owned())
    ///             .unwrap()
    ///     })
    ///     .build()?;
    /// let answer = respond(&layer, "");
    /// assert_eq!(answer.status(), 503);
    /// assert_eq!(answer.body(), "<h1>Back in a moment</h1>");
    /// assert_eq!(answer.headers()["retry-after"], "1"); // added by the layer
    /// # Ok::<(), keepsake::middleware::ConfigError>(())
    /// ```
    pub fn on_unavailable(
        mut self,
        render: impl Fn(&StoreError) -> Response<String> + Send + Sync + 'static,
    ) -> Self {
        self.unavailable = Some(Arc::new(render));
        self
    }

    /// Applies settings from the environment, where set:
    ///
    /// | variable | setting | example |
    /// |---|---|---|
    /// | `KEEPSAKE_COOKIE_NAME` | [`cookie_name`](Self::cookie_name) | `sid` |
    /// | `KEEPSAKE_COOKIE_PATH` | [`path`](Self::path) | `/app` |
    /// | `KEEPSAKE_COOKIE_DOMAIN` | [`domain`](Self::domain) | `example.com` |
    /// | `KEEPSAKE_COOKIE_SECURE` | [`secure`](Self::secure) | `true` / `false` |
    /// | `KEEPSAKE_HOST_PREFIX` | [`host_prefix`](Self::host_prefix) | `true` |
    /// | `KEEPSAKE_IDLE_TIMEOUT` | [`idle_timeout`](Self::idle_timeout), seconds, `0` = none | `1800` |
    /// | `KEEPSAKE_ABSOLUTE_LIFETIME` | [`absolute_lifetime`](Self::absolute_lifetime), seconds | `1209600` |
    /// | `KEEPSAKE_PERSISTENT` | [`persistent`](Self::persistent) | `false` |
    /// | `KEEPSAKE_BAD_COOKIE` | [`bad_cookie`](Self::bad_cookie) | `ignore` / `reject` |
    /// | `KEEPSAKE_STORE_TIMEOUT_MS` | [`store_timeout`](Self::store_timeout) | `1000` |
    ///
    /// An empty variable is the same as an unset one. Settings made in code
    /// after this call win over the environment's.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Env`] naming the variable whose value cannot be
    /// read. A value that reads but is refused by [`build`](Self::build),
    /// alone or with the other settings (a cookie name with a space,
    /// `KEEPSAKE_HOST_PREFIX=true` with a `KEEPSAKE_COOKIE_DOMAIN`, an idle
    /// timeout longer than the lifetime), makes `build` fail with
    /// [`ConfigError::FromEnv`], which names the variables involved.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{codec::Format, key::{Key, KeyRing}, middleware::SessionLayer};
    /// let builder = || SessionLayer::with_cookies(Format::Signed, KeyRing::new(Key::generate()));
    ///
    /// // Whatever this process's environment holds, an error names the variable.
    /// if let Err(err) = builder().from_env() {
    ///     assert!(err.to_string().contains("KEEPSAKE_"), "{err}");
    /// }
    ///
    /// // The same settings from a lookup of one's own (see `from_env_with`):
    /// let vars = |name: &str| match name {
    ///     "KEEPSAKE_COOKIE_NAME" => Ok("sid".to_owned()),
    ///     _ => Err(std::env::VarError::NotPresent),
    /// };
    /// assert_eq!(builder().from_env_with(vars)?.build()?.cookie_name(), "sid");
    /// # Ok::<(), keepsake::middleware::ConfigError>(())
    /// ```
    pub fn from_env(self) -> Result<Self, ConfigError> {
        self.from_env_with(|var| std::env::var(var))
    }

    /// [`from_env`](Self::from_env) with the variables that `lookup` gives
    /// (it answers as [`std::env::var`] does): for tests, or for settings
    /// kept somewhere else than the process environment.
    ///
    /// # Errors
    ///
    /// Those of [`from_env`](Self::from_env).
    ///
    /// # Example
    ///
    /// ```
    /// use std::{env::VarError, error::Error as _};
    /// use keepsake::{codec::Format, key::{Key, KeyRing}, middleware::{ConfigError, SessionLayer}};
    ///
    /// let builder = || SessionLayer::with_cookies(Format::Signed, KeyRing::new(Key::generate()));
    /// let only = |var: &'static str, value: &'static str| {
    ///     move |name: &str| if name == var { Ok(value.to_owned()) } else { Err(VarError::NotPresent) }
    /// };
    ///
    /// // Nothing set: nothing changes.
    /// let layer = builder().from_env_with(|_| Err(VarError::NotPresent))?.build()?;
    /// assert_eq!(layer.cookie_name(), "session");
    /// assert_eq!(builder().from_env_with(only("KEEPSAKE_HOST_PREFIX", "true"))?.build()?.cookie_name(), "__Host-session");
    ///
    /// // A value that cannot be read, and one that `build` refuses, name their variable.
    /// let err = builder().from_env_with(only("KEEPSAKE_COOKIE_SECURE", "no")).unwrap_err();
    /// assert!(matches!(err, ConfigError::Env { var: "KEEPSAKE_COOKIE_SECURE", .. }));
    /// let err = builder().from_env_with(only("KEEPSAKE_COOKIE_NAME", "my session"))?.build().unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "the session settings from the environment (KEEPSAKE_COOKIE_NAME) were refused"
    /// );
    /// assert!(matches!(&err, ConfigError::FromEnv { source, .. } if matches!(**source, ConfigError::Cookie(_))));
    /// assert!(err.source().unwrap().source().unwrap().to_string().contains("my session"));
    /// # Ok::<(), ConfigError>(())
    /// ```
    pub fn from_env_with(
        mut self,
        lookup: impl Fn(&str) -> Result<String, std::env::VarError>,
    ) -> Result<Self, ConfigError> {
        const TEXT: &str = "UTF-8 text";
        const BOOL: &str = "`true` or `false`";
        const SECS: &str = "a whole number of seconds";
        let vars = Vars {
            lookup,
            applied: std::cell::RefCell::default(),
        };
        if let Some(value) = vars.text("KEEPSAKE_COOKIE_NAME", TEXT)? {
            self.name = value;
        }
        if let Some(value) = vars.text("KEEPSAKE_COOKIE_PATH", TEXT)? {
            self.path = value;
        }
        if let Some(value) = vars.text("KEEPSAKE_COOKIE_DOMAIN", TEXT)? {
            self.domain = Some(value);
        }
        if let Some(secure) = vars.parsed("KEEPSAKE_COOKIE_SECURE", BOOL)? {
            self.secure = secure;
        }
        if let Some(prefix) = vars.parsed("KEEPSAKE_HOST_PREFIX", BOOL)? {
            self.host_prefix = prefix;
        }
        if let Some(secs) = vars.parsed::<u64>("KEEPSAKE_IDLE_TIMEOUT", SECS)? {
            self = self.idle_timeout((secs > 0).then(|| Duration::from_secs(secs)));
        }
        if let Some(secs) = vars.parsed("KEEPSAKE_ABSOLUTE_LIFETIME", SECS)? {
            self = self.absolute_lifetime(Duration::from_secs(secs));
        }
        if let Some(persistent) = vars.parsed("KEEPSAKE_PERSISTENT", BOOL)? {
            self = self.persistent(persistent);
        }
        const BAD_COOKIE: &str = "`ignore` or `reject`";
        if let Some(value) = vars.text("KEEPSAKE_BAD_COOKIE", BAD_COOKIE)? {
            self.bad_cookie = match value.trim() {
                "ignore" => BadCookie::Ignore,
                "reject" => BadCookie::Reject,
                _ => {
                    return Err(ConfigError::Env {
                        var: "KEEPSAKE_BAD_COOKIE",
                        value,
                        expected: BAD_COOKIE,
                    });
                }
            };
        }
        if let Some(ms) = vars.parsed(
            "KEEPSAKE_STORE_TIMEOUT_MS",
            "a whole number of milliseconds",
        )? {
            self.store_timeout = Duration::from_millis(ms);
        }
        self.from_env.extend(vars.applied.into_inner());
        Ok(self)
    }

    /// `err`, from a check of the settings that the variables `involved`
    /// set, as [`ConfigError::FromEnv`] if [`from_env`](Self::from_env)
    /// applied any of them.
    fn blame_env(&self, involved: &[&'static str], err: ConfigError) -> ConfigError {
        let vars: Vec<&'static str> = involved
            .iter()
            .copied()
            .filter(|var| self.from_env.contains(var))
            .collect();
        if vars.is_empty() {
            err
        } else {
            ConfigError::FromEnv {
                vars,
                source: Box::new(err),
            }
        }
    }

    /// Checks the settings and makes the layer.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Cookie`] for a cookie name, path or domain that is not
    /// valid, or attributes browsers would reject (such as `__Host-` with a
    /// `Domain`); [`ConfigError::Lifetime`] for a lifetime or idle timeout
    /// of zero (whole) seconds or over 400 days
    /// ([`Expiry::MAX_LIFETIME`](crate::session::Expiry::MAX_LIFETIME)), an
    /// idle timeout longer than the lifetime, or a zero store timeout;
    /// [`ConfigError::EmptySecret`] for a Flask, Starlette or Django codec
    /// with an empty secret key or fallback key. When [`from_env`](Self::from_env) set any
    /// of the settings a refused check involves, the `Cookie` or `Lifetime`
    /// error comes as the source of a [`ConfigError::FromEnv`] that names
    /// those variables.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use keepsake::{codec::Format, key::{Key, KeyRing}, middleware::{ConfigError, SessionLayer}};
    /// let err = SessionLayer::with_cookies(Format::Signed, KeyRing::new(Key::generate()))
    ///     .cookie_name("bad name")
    ///     .build()
    ///     .unwrap_err();
    /// assert!(matches!(err, ConfigError::Cookie(_)));
    /// ```
    pub fn build(self) -> Result<SessionLayer, ConfigError> {
        #[cfg(feature = "interop")]
        if let Some(codec) = &self.interop {
            if codec.has_empty_key() {
                return Err(ConfigError::EmptySecret(codec.framework()));
            }
            if self.lifetime_set {
                return Err(self.blame_env(
                    &[
                        "KEEPSAKE_IDLE_TIMEOUT",
                        "KEEPSAKE_ABSOLUTE_LIFETIME",
                        "KEEPSAKE_PERSISTENT",
                    ],
                    ConfigError::Lifetime(
                        "with_interop: the framework's rules decide how long a session lasts \
                         and whether its cookie has a Max-Age; set the codec's max_age \
                         instead of idle_timeout, absolute_lifetime or persistent",
                    ),
                ));
            }
        }
        let idle = self.idle_timeout.map(|idle| idle.as_secs());
        let absolute = self.absolute_lifetime.as_secs();
        if absolute == 0 || idle == Some(0) {
            return Err(self.blame_env(
                &["KEEPSAKE_ABSOLUTE_LIFETIME"],
                ConfigError::Lifetime(
                    "the idle timeout and the absolute lifetime must be at least one second",
                ),
            ));
        }
        if crate::session::Expiry::over_max_lifetime(absolute, idle) {
            return Err(self.blame_env(
                &["KEEPSAKE_IDLE_TIMEOUT", "KEEPSAKE_ABSOLUTE_LIFETIME"],
                ConfigError::Lifetime(crate::session::Expiry::TOO_LONG),
            ));
        }
        if self.store_timeout.is_zero() {
            return Err(self.blame_env(
                &["KEEPSAKE_STORE_TIMEOUT_MS"],
                ConfigError::Lifetime("the store timeout must be above zero"),
            ));
        }
        if idle.is_some_and(|idle| idle > absolute) {
            return Err(self.blame_env(
                &["KEEPSAKE_IDLE_TIMEOUT", "KEEPSAKE_ABSOLUTE_LIFETIME"],
                ConfigError::Lifetime(
                    "the idle timeout (30 minutes unless set) cannot be longer than the \
                     absolute lifetime (14 days unless set)",
                ),
            ));
        }
        // With a framework's cookie, new sessions last as the ones read from
        // its cookies do (see `InteropCodec::decode_record`).
        #[cfg(feature = "interop")]
        let (idle, absolute) = match &self.interop {
            Some(codec) => (codec.max_age(), u64::MAX),
            None => (idle, absolute),
        };
        let mut cookie: CookieBuilder = Cookie::build(self.name.clone(), "")
            .path_owned(self.path.clone())
            .secure(self.secure)
            .http_only(self.http_only)
            .same_site(self.same_site)
            // A name that already has the prefix does not get it twice.
            .prefix(
                (self.host_prefix && !self.name.starts_with("__Host-")).then_some(Prefix::Host),
            );
        if let Some(domain) = &self.domain {
            cookie = cookie.domain(domain.clone());
        }
        // Check the attributes once, with a value as long as an id cookie.
        let checked = cookie
            .clone()
            .value("x".repeat(100))
            .build()
            .and_then(|probe| Ok((probe.name().to_owned(), SetCookieTemplate::new(&cookie)?)));
        let (cookie_name, set_cookie) =
            checked.map_err(|err| self.blame_env(COOKIE_VARS, err.into()))?;
        Ok(SessionLayer {
            ctx: Arc::new(self.into_context_with(set_cookie, cookie_name, idle, absolute)),
        })
    }

    /// The context without validation: for [`Session::detached`](crate::session::Session::detached).
    pub(crate) fn into_context(self) -> Arc<Context> {
        let set_cookie = SetCookieTemplate::new(&Cookie::build(self.name.clone(), ""))
            .expect("the default session cookie's attributes are valid");
        let name = self.name.clone();
        let idle = self.idle_timeout.map(|idle| idle.as_secs());
        let absolute = self.absolute_lifetime.as_secs();
        Arc::new(self.into_context_with(set_cookie, name, idle, absolute))
    }

    fn into_context_with(
        self,
        set_cookie: SetCookieTemplate,
        cookie_name: String,
        idle_timeout: Option<u64>,
        absolute_lifetime: u64,
    ) -> Context {
        #[cfg(feature = "interop")]
        let interop = self
            .interop
            .map(|codec| codec.with_cookie_name(cookie_name.clone()));
        Context {
            backend: self.backend,
            codec: self.codec,
            set_cookie,
            cookie_name,
            idle_timeout,
            absolute_lifetime,
            persistent: self.persistent,
            bad_cookie: self.bad_cookie,
            store_timeout: self.store_timeout,
            clock: self.clock,
            max_replays: self.max_replays,
            write_locks: WriteLocks::new(),
            unavailable: self.unavailable,
            // The size check on write counts the name actually sent
            // (`__Host-` prefix, or a name set after `with_interop`).
            #[cfg(feature = "interop")]
            interop,
        }
    }
}

/// The response for a store failure: the hook's, or an empty 503; always
/// with `Retry-After`.
pub(crate) fn unavailable_response(
    hook: Option<&UnavailableHook>,
    err: &StoreError,
) -> Response<String> {
    let mut response = match hook {
        Some(render) => render(err),
        None => {
            let mut response = Response::new(String::new());
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            response
        }
    };
    response
        .headers_mut()
        .entry(header::RETRY_AFTER)
        .or_insert(http::HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use std::env::VarError;

    use super::*;
    use crate::key::Key;

    /// `from_env`'s settings from `pairs` (a value of `None`: not UTF-8).
    fn settings(pairs: &[(&str, Option<&str>)]) -> Result<SessionLayerBuilder, ConfigError> {
        let pairs: Vec<(String, Option<String>)> = pairs
            .iter()
            .map(|(var, value)| ((*var).to_owned(), value.map(str::to_owned)))
            .collect();
        SessionLayer::with_cookies(crate::codec::Format::Signed, KeyRing::new(Key::generate()))
            .from_env_with(
                move |var| match pairs.iter().find(|(name, _)| name == var) {
                    Some((_, Some(value))) => Ok(value.clone()),
                    Some((_, None)) => {
                        Err(VarError::NotUnicode(std::ffi::OsString::from("6\u{fffd}")))
                    }
                    None => Err(VarError::NotPresent),
                },
            )
    }

    #[test]
    fn settings_that_are_not_utf8_or_not_valid_are_errors_that_say_what_is_expected() {
        let err = settings(&[("KEEPSAKE_IDLE_TIMEOUT", None)]).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Env {
                    var: "KEEPSAKE_IDLE_TIMEOUT",
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("a whole number of seconds"),
            "{err}"
        );
        let err = settings(&[("KEEPSAKE_HOST_PREFIX", None)]).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Env {
                var: "KEEPSAKE_HOST_PREFIX",
                ..
            }
        ));
        let err = settings(&[("KEEPSAKE_COOKIE_SECURE", Some("1"))]).unwrap_err();
        assert!(err.to_string().contains("`true` or `false`"), "{err}");
        let err = settings(&[("KEEPSAKE_BAD_COOKIE", Some("Reject"))]).unwrap_err();
        assert!(err.to_string().contains("`ignore` or `reject`"), "{err}");
        let built = settings(&[
            ("KEEPSAKE_IDLE_TIMEOUT", Some(" 60 ")),
            ("KEEPSAKE_COOKIE_SECURE", Some("")),
        ])
        .unwrap();
        assert_eq!(built.idle_timeout, Some(Duration::from_secs(60)));
        assert!(built.secure, "an empty variable changes nothing");
    }

    #[test]
    fn settings_from_the_environment_that_build_refuses_are_named() {
        use std::error::Error as _;
        let refused =
            |pairs: &[(&str, Option<&str>)]| settings(pairs).unwrap().build().unwrap_err();
        let vars = |err: &ConfigError| match err {
            ConfigError::FromEnv { vars, .. } => vars.clone(),
            other => panic!("not FromEnv: {other}"),
        };
        /// The variables set, those the error names, the start of its source.
        type Case<'a> = (&'a [(&'a str, Option<&'a str>)], &'a [&'a str], &'a str);
        let cases: [Case<'_>; 5] = [
            (
                &[("KEEPSAKE_COOKIE_NAME", Some("my session"))],
                &["KEEPSAKE_COOKIE_NAME"],
                "the session cookie settings are not valid",
            ),
            (
                &[
                    ("KEEPSAKE_HOST_PREFIX", Some("true")),
                    ("KEEPSAKE_COOKIE_DOMAIN", Some("example.com")),
                    ("KEEPSAKE_IDLE_TIMEOUT", Some("60")),
                ],
                &["KEEPSAKE_COOKIE_DOMAIN", "KEEPSAKE_HOST_PREFIX"],
                "the session cookie settings are not valid",
            ),
            (
                &[("KEEPSAKE_ABSOLUTE_LIFETIME", Some("0"))],
                &["KEEPSAKE_ABSOLUTE_LIFETIME"],
                "session lifetimes: the idle timeout and the absolute lifetime",
            ),
            (
                &[("KEEPSAKE_STORE_TIMEOUT_MS", Some("0"))],
                &["KEEPSAKE_STORE_TIMEOUT_MS"],
                "session lifetimes: the store timeout",
            ),
            (
                &[
                    ("KEEPSAKE_IDLE_TIMEOUT", Some("7200")),
                    ("KEEPSAKE_ABSOLUTE_LIFETIME", Some("3600")),
                    ("KEEPSAKE_COOKIE_NAME", Some("sid")),
                ],
                &["KEEPSAKE_IDLE_TIMEOUT", "KEEPSAKE_ABSOLUTE_LIFETIME"],
                "session lifetimes: the idle timeout (30 minutes unless set)",
            ),
        ];
        for (pairs, named, cause) in cases {
            let err = refused(pairs);
            assert_eq!(vars(&err), named, "{pairs:?}");
            let message = err.to_string();
            assert_eq!(
                message,
                format!(
                    "the session settings from the environment ({}) were refused",
                    named.join(", ")
                )
            );
            let source = err.source().unwrap().to_string();
            assert!(source.starts_with(cause), "{source}");
            // Each part of the chain says its own thing once.
            if let Some(inner) = err.source().unwrap().source() {
                assert!(!source.contains(&inner.to_string()), "{source}");
            }
        }
        // Settings made in code alone: the plain error.
        let err =
            SessionLayer::with_cookies(crate::codec::Format::Signed, KeyRing::new(Key::generate()))
                .cookie_name("my session")
                .build()
                .unwrap_err();
        assert!(matches!(err, ConfigError::Cookie(_)), "{err}");
        let cause = err.source().unwrap().to_string();
        assert!(cause.contains("my session"), "{cause}");
        assert!(!err.to_string().contains(&cause), "{err}");
        // Environment settings that have nothing to do with the refusal are not named.
        let err = settings(&[("KEEPSAKE_COOKIE_NAME", Some("sid"))])
            .unwrap()
            .absolute_lifetime(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::Lifetime(_)), "{err}");
    }

    #[test]
    fn lifetime_errors_say_what_is_wrong() {
        let builder = || {
            SessionLayer::with_cookies(crate::codec::Format::Signed, KeyRing::new(Key::generate()))
        };
        let err = builder().store_timeout(Duration::from_millis(1)).build();
        assert!(err.is_ok(), "a store timeout under a second is fine");
        let err = builder().store_timeout(Duration::ZERO).build().unwrap_err();
        assert!(
            err.to_string().contains("store timeout must be above zero"),
            "{err}"
        );
        let err = builder()
            .absolute_lifetime(Duration::from_secs(600))
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("30 minutes unless set"), "{err}");
    }

    #[cfg(feature = "interop")]
    #[test]
    fn interop_refuses_the_layers_lifetimes() {
        use crate::codec::interop::{Framework, InteropCodec};
        let codec = InteropCodec::new(Framework::Starlette, "k");
        let layer = SessionLayer::with_interop(codec.clone());
        assert!(layer.build().is_ok());
        for builder in [
            SessionLayer::with_interop(codec.clone()).idle_timeout(None),
            SessionLayer::with_interop(codec.clone()).absolute_lifetime(Duration::from_secs(60)),
            SessionLayer::with_interop(codec.clone()).persistent(false),
        ] {
            let err = builder.build().unwrap_err();
            assert!(err.to_string().contains("max_age"), "{err}");
        }
        // New sessions last as the framework's: `max_age` of idle time.
        let layer = SessionLayer::with_interop(codec).build().unwrap();
        assert_eq!(layer.ctx.idle_timeout, Some(14 * 86_400));
    }
}
