//! axum extractors: [`Session`] and [`CookieJar`] as handler arguments, and
//! [`SessionError`] and [`CookieJar`] as responses.
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
//!     http::{header, Request, StatusCode},
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
//!     session.insert("lang", &lang).await?;
//!     jar.signed_mut(&ring)
//!         .insert("theme", "dark")
//!         .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
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

use axum_core::{
    extract::FromRequestParts,
    response::{IntoResponse, IntoResponseParts, Response, ResponseParts},
};
use http::{StatusCode, header, request::Parts};

use crate::{
    cookies::CookieJar,
    session::{Session, SessionError},
};

/// The rejection when a handler asks for a [`Session`] but no
/// [`SessionLayer`](crate::middleware::SessionLayer) is installed: a
/// programming error, answered with 500 and a message that says what to do.
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
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

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
    /// same way); anything else is a bug in the app: 500 with an empty body,
    /// so nothing internal leaks to the client. That includes
    /// [`SessionError::Finished`], a session used after its request's
    /// response was made: nothing was saved, and retrying would not help.
    fn into_response(self) -> Response {
        match self {
            Self::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
            )
                .into_response(),
            _ => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    }
}
