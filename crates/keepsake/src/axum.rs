//! axum extractors: [`Session`] and [`CookieJar`] as handler arguments, and
//! [`CookieJar`], [`SessionError`] and [`CookieError`] as responses.
//!
//! A [`CookieJar`] argument holds the request's cookies. Cookies a handler
//! sets or removes in it are sent only if the handler returns the jar,
//! alone or in a tuple such as `(jar, body)`: it then adds one
//! `Set-Cookie` header per change, beside the session layer's own.
//! A jar that is changed and dropped sends nothing.
//!
//! # Example
//!
//! ```
//! use axum::{
//!     body::Body,
//!     extract::State,
//!     http::{header, Request},
//!     routing::post,
//!     Router,
//! };
//! use keepsake::{
//!     cookies::CookieJar,
//!     key::{Key, KeyRing},
//!     middleware::SessionLayer,
//!     session::Session,
//!     store::MemoryStore,
//! };
//! use tower_service::Service as _;
//!
//! async fn handler(
//!     State(ring): State<KeyRing>,
//!     session: Session,
//!     mut jar: CookieJar,
//! ) -> axum::response::Result<(CookieJar, String)> {
//!     let lang = jar.get("lang").unwrap_or("en").to_owned();
//!     session.insert("lang", &lang).await?; // a `SessionError`: 503 or 500
//!     jar.signed_mut(&ring).insert("theme", "dark")?; // a `CookieError`: 500
//!     Ok((jar, lang)) // returning the jar sends its cookies
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ring = KeyRing::new(Key::generate());
//! let layer = SessionLayer::with_store(MemoryStore::new(), ring.clone()).build()?;
//! let mut app = Router::new()
//!     .route("/", post(handler))
//!     .with_state(ring)
//!     .layer(layer);
//!
//! let request = Request::post("/").header(header::COOKIE, "lang=fr").body(Body::empty())?;
//! let response = app.call(request).await?;
//! let set: Vec<&str> = response
//!     .headers()
//!     .get_all(header::SET_COOKIE)
//!     .iter()
//!     .map(|value| value.to_str())
//!     .collect::<Result<_, _>>()?;
//! // The handler's cookie and the session cookie, once each.
//! assert_eq!(set.len(), 2);
//! assert_eq!(set.iter().filter(|c| c.starts_with("theme=s1.")).count(), 1);
//! assert_eq!(set.iter().filter(|c| c.starts_with("session=")).count(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Errors in handlers
//!
//! [`SessionError`] and [`CookieError`] are both responses, so `?` works on
//! both in a handler that returns `axum::response::Result<T>`, as above
//! (its error type is made from any response). With an error type of the
//! app's own, convert both into it and let each answer for itself:
//!
//! ```
//! use axum::{extract::State, http::StatusCode, response::{IntoResponse, Response}};
//! use keepsake::{
//!     cookies::{CookieError, CookieJar, Verified},
//!     key::{Key, KeyRing},
//!     session::{Session, SessionError},
//! };
//!
//! enum AppError {
//!     Session(SessionError),
//!     Cookie(CookieError),
//!     LoggedOut,
//! }
//! impl From<SessionError> for AppError {
//!     fn from(err: SessionError) -> Self { Self::Session(err) }
//! }
//! impl From<CookieError> for AppError {
//!     fn from(err: CookieError) -> Self { Self::Cookie(err) }
//! }
//! impl IntoResponse for AppError {
//!     fn into_response(self) -> Response {
//!         match self {
//!             Self::Session(err) => err.into_response(),
//!             Self::Cookie(err) => err.into_response(),
//!             Self::LoggedOut => StatusCode::UNAUTHORIZED.into_response(),
//!         }
//!     }
//! }
//!
//! async fn greet(State(ring): State<KeyRing>, session: Session, jar: CookieJar) -> Result<String, AppError> {
//!     let user: String = session.get("user").await?.ok_or(AppError::LoggedOut)?;
//!     // `try_get` and `?`: a `theme` cookie that does not verify refuses the
//!     // request with 400 (`get` would take it for no cookie).
//!     let theme = jar.signed(&ring).try_get::<String>("theme")?.map(Verified::into_value);
//!     Ok(format!("hello {user}, theme {}", theme.as_deref().unwrap_or("light")))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), SessionError> {
//! let ring = KeyRing::new(Key::generate());
//! let status = |result: Result<String, AppError>| result.map_or_else(|e| e.into_response().status(), |_| StatusCode::OK);
//! assert_eq!(status(greet(State(ring.clone()), Session::detached(), CookieJar::new()).await), 401);
//!
//! let session = Session::detached();
//! session.insert("user", "ada").await?;
//! let forged = CookieJar::parse("theme=s1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
//! assert_eq!(status(greet(State(ring), session, forged).await), 400);
//! # Ok(())
//! # }
//! ```

use axum_core::{
    extract::{FromRequestParts, OptionalFromRequestParts},
    response::{IntoResponse, IntoResponseParts, Response, ResponseParts},
};
use http::{StatusCode, header, request::Parts};

use crate::{
    cookies::{CookieError, CookieJar},
    session::{Session, SessionError},
};

/// The rejection when a handler asks for a [`Session`] but no
/// [`SessionLayer`](crate::middleware::SessionLayer) is installed: a
/// programming error, answered with 500 and a message that says what to do,
/// and logged with a `tracing` event at ERROR level so that the operator
/// sees the misconfiguration. A handler that takes an `Option<Session>`
/// gets `None` instead (nothing logged).
///
/// # Example
///
/// ```
/// use axum_core::response::IntoResponse;
///
/// let response = keepsake::axum::MissingSessionLayer.into_response();
/// assert_eq!(response.status(), 500);
/// ```
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("no session in the request: is `SessionLayer` installed on this route?")]
pub struct MissingSessionLayer;

impl IntoResponse for MissingSessionLayer {
    fn into_response(self) -> Response {
        tracing::error!(error = %self, "a handler asked for a session without the layer; answering 500");
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

/// `Session` as a handler argument: the request's session, put there by the
/// [`SessionLayer`](crate::middleware::SessionLayer); without the layer, a
/// [`MissingSessionLayer`] rejection (a 500, logged). For a route that may
/// run without the layer, take an `Option<Session>` instead (see the
/// [`OptionalFromRequestParts`] impl below).
impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = MissingSessionLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(MissingSessionLayer)
    }
}

/// `Option<Session>` as a handler argument: `None` when no
/// [`SessionLayer`](crate::middleware::SessionLayer) is installed on the
/// route (nothing is logged: asking for an optional session is deliberate),
/// the request's session otherwise.
///
/// # Example
///
/// ```
/// use axum_core::extract::OptionalFromRequestParts;
/// use http::Request;
/// use keepsake::session::Session;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// async fn extract(request: Request<()>) -> Option<Session> {
///     let (mut parts, ()) = request.into_parts();
///     let Ok(session) = <Session as OptionalFromRequestParts<()>>::from_request_parts(&mut parts, &()).await;
///     session
/// }
///
/// // No layer: no session, and no error.
/// assert!(extract(Request::new(())).await.is_none());
///
/// // With the layer's session in the request (here a detached one).
/// let session = Session::detached();
/// session.insert("user", "ada").await?;
/// let mut request = Request::new(());
/// request.extensions_mut().insert(session);
/// let found = extract(request).await.expect("the request's session");
/// assert_eq!(found.get::<String>("user").await?.as_deref(), Some("ada"));
/// # Ok(())
/// # }
/// ```
impl<S: Send + Sync> OptionalFromRequestParts<S> for Session {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Session>().cloned())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CookieJar {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_headers(&parts.headers))
    }
}

/// Sends the jar's changes: appends one `Set-Cookie` header per cookie set
/// or removed in it, leaving the response's other `Set-Cookie` headers (the
/// session layer's among them) as they are.
///
/// # Example
///
/// ```
/// use axum_core::response::IntoResponse;
/// use http::header::SET_COOKIE;
/// use keepsake::cookies::{Cookie, CookieJar};
///
/// let mut jar = CookieJar::parse("lang=en");
/// jar.add(Cookie::build("lang", "fr").build()?);
/// let response = ([(SET_COOKIE, "other=1")], jar, "ok").into_response();
/// let sent: Vec<_> = response.headers().get_all(SET_COOKIE).iter().collect();
/// assert_eq!(sent, ["other=1", "lang=fr; HttpOnly; SameSite=Lax; Secure; Path=/"]);
/// # Ok::<(), keepsake::cookies::CookieError>(())
/// ```
impl IntoResponseParts for CookieJar {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        self.write_set_cookies(res.headers_mut());
        Ok(res)
    }
}

/// An empty `200 OK` with the jar's `Set-Cookie` headers.
///
/// # Example
///
/// ```
/// use axum_core::response::IntoResponse;
/// use keepsake::cookies::{Cookie, CookieJar};
///
/// let mut jar = CookieJar::parse("lang=en");
/// jar.remove(Cookie::build("lang", "").build()?);
/// let response = jar.into_response();
/// assert_eq!(response.status(), 200);
/// assert!(response.headers()["set-cookie"].to_str().unwrap().starts_with("lang=;"));
/// # Ok::<(), keepsake::cookies::CookieError>(())
/// ```
impl IntoResponse for CookieJar {
    fn into_response(self) -> Response {
        (self, ()).into_response()
    }
}

impl IntoResponse for SessionError {
    /// A store failure is 503 with `Retry-After` (the middleware answers the
    /// same way, and the store failure was already logged at ERROR level
    /// where it happened); anything else is a bug in the app: 500 with an
    /// empty body, so nothing internal leaks to the client, and a `tracing`
    /// event at ERROR level with the error. That includes
    /// [`SessionError::Finished`], a session used after its request's
    /// response was made: nothing was saved, and retrying would not help.
    /// For [`SessionError::Json`] the event names the key but not serde's
    /// message, which may quote the stored value: session data stays out
    /// of the logs.
    fn into_response(self) -> Response {
        match self {
            Self::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
            )
                .into_response(),
            Self::Json { key, .. } => {
                // Not serde's message: it may quote the stored value.
                tracing::error!(
                    key = %key.escape_debug(),
                    "session value not JSON, or not of the type asked for; answering 500"
                );
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
            other => {
                tracing::error!(error = %other, "session error; answering 500");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

/// A [`CookieError`] as a response, so that a handler can use `?` on the
/// jar's methods. Which status depends on whose mistake it is:
///
/// - **A cookie the client sent that does not verify, or is ambiguous**
///   ([`CookieError::Decode`], [`CookieError::Ambiguous`]), which only
///   [`try_get`](crate::cookies::ProtectedJar::try_get) reports: `400 Bad
///   Request` with the body `bad cookie`, the same for every reason (which
///   one is no business of the client's, and could help an attacker), and
///   a `tracing` event at WARN level with the cookie's name and the
///   reason, as the session layer logs a bad session cookie. The cookie is
///   not removed: the browser sends it again until it expires, and each
///   such request is refused. Where a bad cookie should count as no
///   cookie (nearly everywhere: a forged cookie gets nothing either way),
///   read it with [`get`](crate::cookies::ProtectedJar::get), which gives
///   `None`; keep `try_get` and `?` for the requests that must be refused.
/// - **Anything else is a bug in the app**: a cookie it cannot write (an
///   invalid name, value, path or domain, attributes that contradict each
///   other, a value over 4096 bytes) or a verified value that is not of
///   the type asked for ([`CookieError::Json`], typically after the app
///   changed a cookie's type). `500 Internal Server Error` with an empty
///   body, so that nothing internal leaks to the client, and a `tracing`
///   event at ERROR level with the error. For [`CookieError::Json`] the
///   event names the cookie but not serde's message, which may quote the
///   value: cookie values stay out of the logs.
///
/// # Example
///
/// ```
/// use axum_core::response::IntoResponse;
/// use keepsake::{cookies::{Cookie, CookieJar}, key::{Key, KeyRing}};
///
/// let ring = KeyRing::new(Key::generate());
/// let jar = CookieJar::parse("theme=s1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
///
/// // The client's cookie does not verify: its mistake, a 400.
/// let err = jar.signed(&ring).try_get::<String>("theme").unwrap_err();
/// assert_eq!(err.into_response().status(), 400);
/// assert_eq!(jar.signed(&ring).get::<String>("theme"), None); // `get`: no error
///
/// // A cookie the app cannot write: its mistake, a 500.
/// let err = Cookie::build("bad name", "v").build().unwrap_err();
/// assert_eq!(err.into_response().status(), 500);
///
/// // A verified value of another type than asked for: a 500 too.
/// let mut jar = CookieJar::new();
/// jar.signed_mut(&ring).insert("count", &3)?;
/// let err = jar.signed(&ring).try_get::<String>("count").unwrap_err();
/// assert_eq!(err.into_response().status(), 500);
/// # Ok::<(), keepsake::cookies::CookieError>(())
/// ```
impl IntoResponse for CookieError {
    fn into_response(self) -> Response {
        match &self {
            Self::Decode { name, source } => {
                tracing::warn!(
                    cookie = %name.escape_debug(),
                    reason = %source,
                    "cookie did not verify; answering 400"
                );
                (StatusCode::BAD_REQUEST, "bad cookie").into_response()
            }
            Self::Ambiguous { name } => {
                tracing::warn!(
                    cookie = %name.escape_debug(),
                    reason = "several candidate cookies",
                    "cookie not used; answering 400"
                );
                (StatusCode::BAD_REQUEST, "bad cookie").into_response()
            }
            Self::Json { name, .. } => {
                // Not serde's message: it may quote the cookie's value.
                tracing::error!(
                    cookie = %name.escape_debug(),
                    "cookie value not JSON, or not of the type asked for; answering 500"
                );
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
            Self::InvalidName { .. }
            | Self::InvalidValue { .. }
            | Self::InvalidPath { .. }
            | Self::InvalidDomain { .. }
            | Self::RequiresSecure { .. }
            | Self::HttpPrefixNeedsHttpOnly { .. }
            | Self::HostPrefixDomain { .. }
            | Self::HostPrefixPath { .. }
            | Self::TooLarge { .. }
            | Self::Encode { .. } => {
                tracing::error!(error = %self, "cookie could not be set; answering 500");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum_core::response::IntoResponse as _;

    use crate::{
        cookies::CookieJar,
        key::{Key, KeyRing},
    };

    /// Where the test subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `f` logs, at every level.
    fn logged(f: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8_lossy(&captured.0.lock().expect("log buffer")).into_owned()
    }

    #[test]
    fn cookie_errors_answer_by_whose_mistake_and_never_log_values() {
        let ring = KeyRing::new(Key::generate());

        // A verified value of another type: the app's mistake. serde's
        // message would quote the value; the event names only the cookie.
        let mut jar = CookieJar::new();
        jar.signed_mut(&ring)
            .insert("pin", "SECRETVALUE-0123456789")
            .expect("insert");
        let log = logged(|| {
            let err = jar.signed(&ring).try_get::<u64>("pin").unwrap_err();
            assert_eq!(err.into_response().status(), 500);
        });
        assert!(log.contains("ERROR") && log.contains("pin"), "{log}");
        assert!(!log.contains("SECRETVALUE"), "{log}");

        // A value the client forged: its mistake, a 400 logged as a warning.
        let forged = "s1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let jar = CookieJar::parse(&format!("pin={forged}"));
        let log = logged(|| {
            let err = jar.signed(&ring).try_get::<u64>("pin").unwrap_err();
            assert_eq!(err.into_response().status(), 400);
        });
        assert!(log.contains("WARN") && !log.contains("ERROR"), "{log}");
        assert!(!log.contains("AAAAAAAAAAAAAAAA"), "{log}");

        // Two values that both verify: ambiguous, the client's too.
        let mut one = CookieJar::new();
        one.signed_mut(&ring).insert("pin", &1).expect("insert");
        let mut two = CookieJar::new();
        two.signed_mut(&ring).insert("pin", &2).expect("insert");
        let value = |jar: &CookieJar| jar.delta().next().expect("set").value().to_owned();
        let both = CookieJar::parse(&format!("pin={}; pin={}", value(&one), value(&two)));
        let err = both.signed(&ring).try_get::<u64>("pin").unwrap_err();
        assert_eq!(err.into_response().status(), 400);
    }
}
