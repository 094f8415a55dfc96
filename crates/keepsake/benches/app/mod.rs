//! The benchmark server's routes (`bench/compare`'s `/incr` and `/read`, and
//! a `/noop` that does not touch the session) as an axum router called
//! in-process, shared by `request_path.rs` and `allocations.rs`.

use std::hint::black_box;

use axum::{Router, body::Body, routing::get};
use http::{Request, header};
use keepsake::{
    middleware::SessionLayerBuilder,
    session::{Session, SessionError},
};
use tower_service::Service as _;

async fn noop() -> &'static str {
    "1"
}

async fn incr(session: Session) -> Result<String, SessionError> {
    let n: i64 = session
        .update("count", |n: Option<i64>| n.unwrap_or(0) + 1)
        .await?;
    Ok(n.to_string())
}

async fn read(session: Session) -> Result<String, SessionError> {
    let n: i64 = session.get("count").await?.unwrap_or(0);
    Ok(n.to_string())
}

/// The routes, with their state given as `axum::serve` gives it: the
/// handlers become services once, here, not on every call.
pub(crate) fn routes() -> Router {
    Router::new()
        .route("/noop", get(noop))
        .route("/incr", get(incr))
        .route("/read", get(read))
        .with_state(())
}

/// The routes behind `layer`, and the cookie of a session made by `/incr`.
pub(crate) fn session_app(
    rt: &tokio::runtime::Runtime,
    layer: SessionLayerBuilder,
) -> (Router, String) {
    let mut app = routes().layer(layer.secure(false).build().expect("layer"));
    let mut cookie = String::new();
    call(rt, &mut app, "/incr", &mut cookie);
    assert!(!cookie.is_empty(), "no session cookie");
    (app, cookie)
}

/// One request; with a cookie jar of one: a re-issued cookie replaces
/// `cookie`.
pub(crate) fn call(
    rt: &tokio::runtime::Runtime,
    app: &mut Router,
    path: &str,
    cookie: &mut String,
) {
    let mut request = Request::get(path);
    if !cookie.is_empty() {
        request = request.header(header::COOKIE, cookie.as_str());
    }
    let response = rt
        .block_on(app.call(request.body(Body::empty()).expect("request")))
        .expect("infallible");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    if let Some(set) = response.headers().get(header::SET_COOKIE) {
        let set = set.to_str().expect("ascii");
        *cookie = set.split(';').next().unwrap_or_default().to_owned();
    }
    black_box(response);
}
