//! axum extractors: [`Session`] and [`CookieJar`] as handler arguments, and
//! [`SessionError`] as a response.
//!
//! # Example
//!
//! ```
//! use axum::{routing::get, Router};
//! use keepsake::{cookies::CookieJar, session::{Session, SessionError}};
//!
//! async fn handler(session: Session, jar: CookieJar) -> Result<String, SessionError> {
//!     let lang = jar.get("lang").unwrap_or("en").to_owned();
//!     session.insert("lang", &lang).await?;
//!     Ok(lang)
//! }
//! let app: Router = Router::new().route("/", get(handler));
//! # let _ = app;
//! ```

use axum_core::{
    extract::FromRequestParts,
    response::{IntoResponse, Response},
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

impl IntoResponse for SessionError {
    /// A store failure is 503 with `Retry-After` (the middleware answers the
    /// same way); anything else is a bug in the app: 500 with an empty body,
    /// so nothing internal leaks to the client.
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
