//! Key rotation: a session cookie that only a fallback key verifies keeps
//! its session and is issued again under the current key.

use axum::{Router, body::Body, routing::get};
use http::{Request, header};
use keepsake::{
    codec::Format,
    key::{Key, KeyRing},
    middleware::SessionLayer,
    session::{Session, SessionError},
    store::MemoryStore,
};
use tower_service::Service as _;

async fn count(session: Session) -> Result<String, SessionError> {
    let n: u64 = session.get("n").await?.unwrap_or(0) + 1;
    session.insert("n", n).await?;
    Ok(n.to_string())
}

async fn read(session: Session) -> Result<String, SessionError> {
    Ok(session.get::<u64>("n").await?.unwrap_or(0).to_string())
}

fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route("/count", get(count))
        .route("/read", get(read))
        .route("/untouched", get(|| async { "ok" }))
        .layer(layer)
}

/// Sends GET `path` with `cookie`; the body and the new cookie, if any.
async fn get_with(app: &mut Router, path: &str, cookie: Option<&str>) -> (String, Option<String>) {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = app
        .call(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let set = response
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    (String::from_utf8(body.to_vec()).unwrap(), set)
}

#[tokio::test]
async fn fallback_verified_cookies_are_reissued_under_the_current_key() {
    let old = Key::generate();
    let new = Key::generate();
    let store = MemoryStore::new();
    for (backend, reissued_untouched) in [("store", false), ("signed", true), ("sealed", true)] {
        let layer = |ring: KeyRing| match backend {
            "store" => SessionLayer::with_store(store.clone(), ring)
                .build()
                .unwrap(),
            "signed" => SessionLayer::with_cookies(Format::Signed, ring)
                .build()
                .unwrap(),
            _ => SessionLayer::with_cookies(Format::Sealed, ring)
                .build()
                .unwrap(),
        };
        let mut before = app(layer(KeyRing::new(old.clone())));
        let (_, cookie) = get_with(&mut before, "/count", None).await;
        let cookie = cookie.expect("a new session sets a cookie");

        let mut after = app(layer(KeyRing::new(new.clone()).with_fallback(old.clone())));
        // Read-only use: the session survives and its cookie is re-issued.
        let (body, reissued) = get_with(&mut after, "/read", Some(&cookie)).await;
        assert_eq!(body, "1", "{backend}");
        let reissued = reissued.unwrap_or_else(|| panic!("{backend}: no re-issued cookie"));
        assert_ne!(reissued, cookie, "{backend}");

        // The new cookie works without the old key at all.
        let mut only_new = app(layer(KeyRing::new(new.clone())));
        let (body, _) = get_with(&mut only_new, "/count", Some(&reissued)).await;
        assert_eq!(body, "2", "{backend}");
        // ... and the old one does not.
        let (body, _) = get_with(&mut only_new, "/read", Some(&cookie)).await;
        assert_eq!(body, "0", "{backend}");

        // A handler that never touches the session: client-side sessions are
        // re-issued from the cookie; stored ones wait until the next use.
        let (_, untouched) = get_with(&mut after, "/untouched", Some(&cookie)).await;
        assert_eq!(untouched.is_some(), reissued_untouched, "{backend}");
    }
}
