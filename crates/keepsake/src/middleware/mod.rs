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
//! 3. after the handler: unless it answered 5xx, saves what changed (at most
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
//! use axum::{routing::get, Router};
//! use keepsake::{key::{Key, KeyRing}, middleware::SessionLayer, session::Session, store::MemoryStore};
//!
//! async fn count(session: Session) -> Result<String, keepsake::session::SessionError> {
//!     let n: u64 = session.get("n").await?.unwrap_or(0) + 1;
//!     session.insert("n", n).await?;
//!     Ok(n.to_string())
//! }
//!
//! let layer = SessionLayer::with_store(MemoryStore::new(), KeyRing::new(Key::generate())).build()?;
//! let app: Router = Router::new().route("/", get(count)).layer(layer);
//! # let _ = app;
//! # Ok::<(), keepsake::middleware::ConfigError>(())
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
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The secret is missing or invalid; the message says how to make one.
    #[error(transparent)]
    Key(#[from] crate::key::KeyError),
    /// The cookie settings are not valid or would be rejected by browsers.
    #[error("session cookie settings: {0}")]
    Cookie(#[from] crate::cookies::CookieError),
    /// The lifetimes or the timeout do not make sense together.
    #[error("session lifetimes: {0}")]
    Lifetime(&'static str),
    /// The secret in an environment variable (`KEEPSAKE_SECRET`, or one of
    /// the keys in `KEEPSAKE_SECRET_FALLBACKS`) is not a valid secret.
    #[error("the environment variable {var}: {source}")]
    EnvKey {
        /// The variable, and which key of a list.
        var: String,
        /// Why the secret was refused.
        source: crate::key::KeyError,
    },
    /// The Flask, Starlette or Django secret key, or one of its fallbacks,
    /// is empty: anyone could sign session cookies with it (the frameworks
    /// refuse it too).
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
