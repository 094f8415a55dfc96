//! A keepsake axum app that shares its login with a Flask app.
//!
//! Both read and write Flask's own session cookie (`session`) with the same
//! `SECRET_KEY`, so a visitor who logs in on one is logged in on the other:
//! the first step of moving a Flask app to Rust one route at a time. See
//! `examples/flask-shared-login/README.md` at the repository root for the
//! commands that run both.
//!
//! ```sh
//! export SHARED_SECRET_KEY='change me: the Flask app'"'"'s SECRET_KEY'
//! export SHARED_SECRET_KEY_FALLBACKS='old-key-1,old-key-2'   # optional: SECRET_KEY_FALLBACKS
//! cargo run -p keepsake --features interop --example flask_shared_login   # on 127.0.0.1:3001
//! ```
//!
//! Routes: `GET /whoami`, `POST /login?user=NAME`, `POST /logout`.
//!
//! (`tests/interop_live.rs` includes this file as a module to test
//! [`codec`] and [`app`], hence their `pub(crate)`.)

use std::{collections::HashMap, net::SocketAddr};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use keepsake::{
    codec::{
        interop::{Framework, InteropCodec, PyDict, PyValue},
        unix_now,
    },
    cookies::Cookie,
};
use serde_json::json;

/// Reads the Flask session from the request's cookies: an empty session if
/// there is none or it does not verify (as Flask does), and, if it should
/// be written again (made with a fallback key), its issue time.
fn read_session(codec: &InteropCodec, headers: &HeaderMap) -> (PyDict, Option<u64>) {
    let cookies = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='));
    for (name, value) in cookies {
        if name == codec.cookie_name()
            && let Ok(opened) = codec.decode(value, unix_now())
        {
            let stale = opened
                .key_used()
                .is_fallback()
                .then_some(opened.issued_at());
            return (opened.into_session(), stale);
        }
    }
    (PyDict::new(), None)
}

/// The `Set-Cookie` that stores `session`, issued at `issued_at`, with
/// Flask's default attributes (`HttpOnly`, `Path=/`; not `Secure`, so it
/// works on plain HTTP here). An empty session deletes the cookie, as Flask
/// does.
fn set_session(
    codec: &InteropCodec,
    session: &PyDict,
    issued_at: u64,
) -> Result<HeaderValue, String> {
    let value = if session.is_empty() {
        String::new()
    } else {
        codec
            .encode(session, issued_at)
            .map_err(|e| e.to_string())?
    };
    let mut cookie = Cookie::build(codec.cookie_name(), value)
        .secure(false)
        .same_site(None)
        .build()
        .map_err(|e| e.to_string())?;
    if session.is_empty() {
        cookie = cookie.into_removal();
    }
    Ok(cookie.to_header_value())
}

async fn whoami(State(codec): State<InteropCodec>, headers: HeaderMap) -> Response {
    let (session, stale) = read_session(&codec, &headers);
    let user = session
        .get("user")
        .and_then(PyValue::as_str)
        .map(str::to_owned);
    let body = Json(json!({"user": user, "served_by": "keepsake"}));
    if let Some(issued_at) = stale {
        // Verified only by an old key: issue it again under the current one,
        // with its issue time (a new key extends no session).
        return with_cookie(set_session(&codec, &session, issued_at), body);
    }
    body.into_response()
}

async fn login(
    State(codec): State<InteropCodec>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(user) = query.get("user").filter(|user| !user.is_empty()) else {
        return (StatusCode::BAD_REQUEST, "give ?user=NAME").into_response();
    };
    let (mut session, _) = read_session(&codec, &headers);
    session.insert("user", user.as_str());
    with_cookie(
        set_session(&codec, &session, unix_now()),
        Json(json!({"user": user})),
    )
}

async fn logout(State(codec): State<InteropCodec>, headers: HeaderMap) -> Response {
    let (mut session, _) = read_session(&codec, &headers);
    session.remove("user");
    with_cookie(
        set_session(&codec, &session, unix_now()),
        Json(json!({"user": null})),
    )
}

/// `body` with `cookie` set, or a 500 saying why the cookie could not be
/// made (a session too big for a cookie, say).
fn with_cookie(cookie: Result<HeaderValue, String>, body: Json<serde_json::Value>) -> Response {
    match cookie {
        Ok(cookie) => ([(header::SET_COOKIE, cookie)], body).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err).into_response(),
    }
}

/// The codec of a Flask app whose `SECRET_KEY` is `secret_key` and whose
/// `SECRET_KEY_FALLBACKS` are `fallbacks`, separated by commas. Empty
/// entries (an empty list, a trailing comma) are no keys: an empty key would
/// let anyone sign a session. An empty `secret_key` is refused.
pub(crate) fn codec(secret_key: &str, fallbacks: Option<&str>) -> Result<InteropCodec, String> {
    if secret_key.is_empty() {
        return Err("SHARED_SECRET_KEY is empty: anyone could sign a session with it".to_owned());
    }
    let fallbacks = fallbacks
        .unwrap_or_default()
        .split(',')
        .filter(|key| !key.is_empty());
    let codec = InteropCodec::new(Framework::Flask, secret_key).with_fallbacks(fallbacks);
    // Never the case once the empty entries are gone; checked all the same.
    if codec.has_empty_key() {
        return Err("a secret key is empty".to_owned());
    }
    Ok(codec)
}

/// The app, with the codec of the Flask app's keys.
pub(crate) fn app(codec: InteropCodec) -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .with_state(codec)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("SHARED_SECRET_KEY")
        .map_err(|_| "set SHARED_SECRET_KEY to the Flask app's SECRET_KEY")?;
    let fallbacks = std::env::var("SHARED_SECRET_KEY_FALLBACKS").ok();
    let codec = codec(&secret, fallbacks.as_deref())?;
    let addr: SocketAddr = std::env::var("KEEPSAKE_EXAMPLE_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3001".to_owned())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("keepsake app on http://{addr} (GET /whoami, POST /login?user=NAME, POST /logout)");
    axum::serve(listener, app(codec)).await?;
    Ok(())
}
