//! Black-box tests of the session middleware: a real axum server on
//! 127.0.0.1 with a `SessionLayer`, driven over HTTP by reqwest.
//!
//! Every scenario is written once, as an async function of the `Backend`,
//! and run for server-side sessions in a `MemoryStore` (wrapped in a
//! `CountingStore` that counts store calls and can fail on demand), signed
//! cookies and sealed cookies; see `for_each_backend!` at the bottom. Time is
//! a `ManualClock`, so expiry is tested to the second without sleeping.

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::State,
    response::{IntoResponse as _, Response},
    routing::get,
};
use common::{Backend, Counts, Mode, Reply, Server, tamper};
use http::header;
use keepsake::{
    cookies::{Cookie, CookieJar, SameSite},
    session::{BadCookie, Expiry, Session, SessionError},
    store::StoreErrorKind,
};
use tokio::sync::Notify;
use tower_http::timeout::TimeoutLayer;

/// What `/status` answers for a live session.
fn live(n: &str, user: &str) -> String {
    format!("new=false expired=false n={n} user={user}")
}

/// What `/status` answers for a first visit.
const FIRST_VISIT: &str = "new=true expired=false n=- user=-";

/// What `/status` answers when the session that came in had expired.
const EXPIRED: &str = "new=true expired=true n=- user=-";

fn assert_no_set_cookie(reply: &Reply, what: &str) {
    assert!(
        reply.set_cookies().is_empty(),
        "{what}: expected no Set-Cookie, got {:?}",
        reply.set_cookies()
    );
}

fn assert_removal(reply: &Reply, path: &str, what: &str) {
    let header = reply
        .session_set_cookie()
        .unwrap_or_else(|| panic!("{what}: expected a removal Set-Cookie, got none"));
    assert!(
        header.starts_with("session=;"),
        "{what}: removal has a value: {header}"
    );
    assert!(
        header.contains("Max-Age=0"),
        "{what}: no Max-Age=0: {header}"
    );
    assert!(
        header.contains(&format!("Path={path};")) || header.ends_with(&format!("Path={path}")),
        "{what}: wrong Path: {header}"
    );
}

// ---------------------------------------------------------------------------
// 1. Counter
// ---------------------------------------------------------------------------

async fn counter_across_requests(backend: Backend) {
    let server = Server::start(backend).await;
    for expected in 1..=3 {
        let reply = server.get("/count").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, expected.to_string());
    }
    // A second browser has its own session.
    let other = server.browser();
    assert_eq!(server.get_via(&other, "/count").await.body, "1");
    assert_eq!(server.get("/count").await.body, "4");
    if backend.is_store() {
        assert_eq!(server.store.len(), 2);
    }
}

// ---------------------------------------------------------------------------
// 2. Login cycles the id
// ---------------------------------------------------------------------------

async fn login_cycles_id_and_keeps_data(backend: Backend) {
    let server = Server::start(backend).await;
    let first = server.get("/count").await;
    let old_cookie = first.session_cookie().expect("a new session sets a cookie");
    let old_id = server.get("/id").await.body;

    server.store.reset_counts();
    let login = server.get("/login").await;
    assert_eq!((login.status, login.body.as_str()), (200, "welcome"));
    let new_cookie = login
        .session_cookie()
        .expect("login must re-send the cookie");
    assert_ne!(new_cookie, old_cookie, "login must change the cookie");
    if backend.is_store() {
        // One read, the old record deleted, the new one created.
        let counts = server.store.counts();
        assert_eq!(
            counts,
            Counts {
                load: 1,
                delete: 1,
                create: 1,
                ..Counts::default()
            },
            "store calls for a login"
        );
        assert_eq!(server.store.len(), 1, "the old record must be gone");
    }

    let new_id = server.get("/id").await.body;
    assert_ne!(new_id, old_id, "login must change the session id");
    assert_eq!(
        server.get("/status").await.body,
        live("1", "ada"),
        "data kept across login"
    );
    assert_eq!(server.get("/count").await.body, "2");

    if backend.is_store() {
        // The pre-login cookie (fixation) is worth nothing now.
        let replay = server.get_raw("/status", Some(&old_cookie)).await;
        assert_eq!(replay.status, 200);
        assert!(
            replay.body.starts_with("new=true"),
            "old cookie still works: {}",
            replay.body
        );
        assert!(
            replay.body.ends_with("n=- user=-"),
            "old cookie still works: {}",
            replay.body
        );
        // The new one is the session.
        let current = server.get_raw("/status", Some(&new_cookie)).await;
        assert_eq!(current.body, live("2", "ada"));
    }
    // Client-side sessions: the old cookie still verifies (there is no
    // server-side state to revoke); that is inherent and not tested here.
}

// ---------------------------------------------------------------------------
// 3. Logout
// ---------------------------------------------------------------------------

async fn logout_removes_cookie_and_record(backend: Backend) {
    let server = Server::start(backend).await;
    let login = server.get("/login").await;
    let mut cookie = login.session_cookie().expect("login sets a cookie");
    let reply = server.get("/count").await;
    assert_eq!(reply.body, "1");
    // Client-side, the change re-issues the cookie; server-side it does not.
    if let Some(latest) = reply.session_cookie() {
        cookie = latest;
    }
    if backend.is_store() {
        assert_eq!(server.store.len(), 1);
    }

    let logout = server.get("/logout").await;
    assert_eq!((logout.status, logout.body.as_str()), (200, "bye"));
    assert_removal(&logout, "/", "logout");
    if backend.is_store() {
        assert_eq!(server.store.len(), 0, "logout must delete the record");
        let replay = server.get_raw("/status", Some(&cookie)).await;
        assert_eq!(replay.body, EXPIRED, "replaying a logged-out cookie");
    }
    // The browser dropped the cookie: a first visit again.
    assert_eq!(server.get("/status").await.body, FIRST_VISIT);
    assert_eq!(server.get("/count").await.body, "1");
}

async fn logout_then_new_session_in_same_request(backend: Backend) {
    let server = Server::start(backend).await;
    let cookie = server.get("/login").await.session_cookie().expect("cookie");
    let reply = server.get("/logout-flash").await;
    assert_eq!(reply.body, "bye");
    // One Set-Cookie: the new session, not a removal.
    let new_cookie = reply.session_cookie().expect("the new session's cookie");
    assert!(
        !new_cookie.is_empty() && new_cookie != cookie,
        "{:?}",
        reply.set_cookies()
    );
    assert_eq!(
        server.get("/status").await.body,
        "new=false expired=false n=- user=-"
    );
    assert_eq!(server.get("/flash").await.body, "logged out");
    assert_eq!(server.get("/flash").await.body, "-");
    if backend.is_store() {
        assert_eq!(server.store.len(), 1, "the logged-out record must be gone");
        let replay = server.get_raw("/status", Some(&cookie)).await;
        assert_eq!(replay.body, EXPIRED);
    }
}

// ---------------------------------------------------------------------------
// 4. Idle and absolute expiry
// ---------------------------------------------------------------------------

async fn idle_expiry_exact_to_the_second(backend: Backend) {
    let server =
        Server::start_with(backend, |b| b.idle_timeout(Some(Duration::from_secs(60)))).await;
    let a = server.browser();
    let b = server.browser();
    assert_eq!(server.get_via(&a, "/count").await.body, "1");
    assert_eq!(server.get_via(&b, "/count").await.body, "1");

    // One second before the idle deadline: alive (and the visit moves the
    // deadline to +119).
    server.at(59);
    assert_eq!(server.get_via(&a, "/status").await.body, live("1", "-"));

    // At the idle deadline exactly, an untouched session is gone.
    server.at(60);
    let gone = server.get_via(&b, "/status").await;
    assert_eq!(gone.body, EXPIRED, "at the idle deadline");
    assert_removal(&gone, "/", "expired session");

    // The touched one lives until its moved deadline, to the second: each
    // visit one second before the deadline moves it 60 s on.
    server.at(118);
    assert_eq!(server.get_via(&a, "/status").await.body, live("1", "-"));
    server.at(177);
    assert_eq!(server.get_via(&a, "/status").await.body, live("1", "-"));
    server.at(237);
    assert_eq!(
        server.get_via(&a, "/status").await.body,
        EXPIRED,
        "at the refreshed idle deadline"
    );
    // And the browser starts over.
    assert_eq!(server.get_via(&a, "/status").await.body, FIRST_VISIT);
}

async fn absolute_expiry_caps_touches(backend: Backend) {
    let server = Server::start_with(backend, |b| {
        b.idle_timeout(Some(Duration::from_secs(60)))
            .absolute_lifetime(Duration::from_secs(300))
    })
    .await;
    // Visits every 50 s, then every second: never past created + 300.
    for (round, step) in [50_u64, 1].into_iter().enumerate() {
        let start = round as u64 * 1_000;
        let browser = server.browser();
        server.at(start);
        assert_eq!(server.get_via(&browser, "/count").await.body, "1");
        let mut visits: Vec<u64> = (step..300).step_by(step as usize).collect();
        visits.push(299);
        visits.dedup();
        for at in visits {
            server.at(start + at);
            let reply = server.get_via(&browser, "/status").await;
            assert_eq!(reply.body, live("1", "-"), "step {step}: visit at +{at}");
        }
        server.at(start + 300);
        let reply = server.get_via(&browser, "/status").await;
        assert_eq!(reply.body, EXPIRED, "step {step}: at the absolute deadline");
    }
}

/// A visit that writes to the session is activity too: it moves the idle
/// deadline like a read-only visit does, however the session is kept.
async fn writing_visits_move_idle_deadline(backend: Backend) {
    let server =
        Server::start_with(backend, |b| b.idle_timeout(Some(Duration::from_secs(60)))).await;
    for (at, expected) in [(0, "1"), (50, "2"), (100, "3"), (150, "4")] {
        server.at(at);
        assert_eq!(server.get("/count").await.body, expected, "write at +{at}");
    }
    server.at(209);
    assert_eq!(server.get("/status").await.body, live("4", "-"));
}

/// The clock steps back between two writes (an NTP correction, a VM
/// restored): the second write must not move the idle deadline earlier
/// than the first one set it. Idle timeout 60 s: a write at +50 sets the
/// deadline to +110; with the clock set back to -30, a write would compute
/// +30, and the session, alive until +110 after the first write, would end
/// at +51.
async fn a_write_after_the_clock_steps_back_keeps_the_idle_deadline(backend: Backend) {
    let server =
        Server::start_with(backend, |b| b.idle_timeout(Some(Duration::from_secs(60)))).await;
    assert_eq!(server.get("/count").await.body, "1");
    server.at(50);
    assert_eq!(server.get("/count").await.body, "2", "write at +50");
    server.clock.set(common::T0 - 30);
    assert_eq!(server.get("/count").await.body, "3", "write at -30");
    server.at(51);
    assert_eq!(
        server.get("/status").await.body,
        live("3", "-"),
        "the write at -30 moved the idle deadline from +110 to +30"
    );
    // The deadline the write at +50 set holds, to the second.
    server.at(109);
    assert_eq!(server.get("/get").await.body, "3");
}

/// Logging in gives the session a new id; the new record's idle deadline
/// counts from the login, not from the old record's last touch.
async fn login_moves_idle_deadline(backend: Backend) {
    let server =
        Server::start_with(backend, |b| b.idle_timeout(Some(Duration::from_secs(60)))).await;
    assert_eq!(server.get("/count").await.body, "1");
    server.at(55);
    assert_eq!(server.get("/login").await.status, 200);
    server.at(100);
    assert_eq!(server.get("/status").await.body, live("1", "ada"));
}

/// A cookie whose session ended is removed in the answer to a page load
/// only, not in the answer to a browser's `fetch` or subresource request
/// or to a client that sends no `Sec-Fetch-Mode` (an app polling while it
/// logs in): one sent before a login's answer arrived would otherwise
/// delete the new session's cookie.
async fn an_ended_session_cookie_is_removed_only_on_page_loads(backend: Backend) {
    let server =
        Server::start_with(backend, |b| b.idle_timeout(Some(Duration::from_secs(60)))).await;
    let removed = |reply: &Reply| {
        reply
            .session_set_cookie()
            .is_some_and(|c| c.contains("Max-Age=0"))
    };
    let modes = [
        (Some("cors"), false),
        (Some("no-cors"), false),
        (Some("same-origin"), false),
        (Some("navigate"), true),
        (None, false),
    ];
    // Expired.
    let cookie = server
        .get("/count")
        .await
        .session_cookie()
        .expect("a session");
    server.at(61);
    for (mode, removes) in modes {
        let headers: Vec<(&str, &str)> = mode.map(|m| ("sec-fetch-mode", m)).into_iter().collect();
        let reply = server
            .get_raw_with("/status", "session", Some(&cookie), &headers)
            .await;
        assert_eq!(reply.body, EXPIRED, "{mode:?}");
        assert_eq!(
            removed(&reply),
            removes,
            "{mode:?}: {:?}",
            reply.set_cookies()
        );
    }
    if !backend.is_store() {
        return;
    }
    // Moved to a new id by a login, while a request with the old cookie
    // was on its way.
    let old = server
        .get("/count")
        .await
        .session_cookie()
        .expect("a new session");
    assert_eq!(server.get("/login").await.body, "welcome");
    for (mode, removes) in modes {
        let headers: Vec<(&str, &str)> = mode.map(|m| ("sec-fetch-mode", m)).into_iter().collect();
        let reply = server
            .get_raw_with("/status", "session", Some(&old), &headers)
            .await;
        assert_eq!(
            removed(&reply),
            removes,
            "{mode:?}: {:?}",
            reply.set_cookies()
        );
    }
    assert_eq!(
        server.get("/status").await.body,
        live("1", "ada"),
        "still logged in"
    );
}

// ---------------------------------------------------------------------------
// 5. expired()
// ---------------------------------------------------------------------------

async fn expired_flag_only_after_expiry(backend: Backend) {
    let server =
        Server::start_with(backend, |b| b.idle_timeout(Some(Duration::from_secs(60)))).await;
    assert_eq!(server.get("/status").await.body, FIRST_VISIT, "first visit");
    assert_eq!(server.get("/count").await.body, "1");
    assert_eq!(
        server.get("/status").await.body,
        live("1", "-"),
        "live session"
    );
    server.at(61);
    let reply = server.get("/status").await;
    assert_eq!(reply.body, EXPIRED, "after expiry");
    assert_removal(&reply, "/", "expired session");
    // The expired cookie was removed: the next visit is a first visit.
    assert_eq!(
        server.get("/status").await.body,
        FIRST_VISIT,
        "after the expired cookie went"
    );
    assert_eq!(server.get("/count").await.body, "1");
    assert_eq!(server.get("/status").await.body, live("1", "-"));

    // An expired session that the handler writes to gets exactly one
    // Set-Cookie: the new session's, not a removal.
    let other = server.browser();
    server.at(100);
    assert_eq!(server.get_via(&other, "/count").await.body, "1");
    server.at(161);
    let reply = server.get_via(&other, "/count").await;
    assert_eq!(reply.body, "1", "an expired session starts over");
    let value = reply
        .session_cookie()
        .expect("one Set-Cookie with the new session");
    assert!(
        !value.is_empty(),
        "the new session, not a removal: {:?}",
        reply.set_cookies()
    );
    assert_eq!(server.get_via(&other, "/status").await.body, live("1", "-"));
}

// ---------------------------------------------------------------------------
// 6. Throttled touch
// ---------------------------------------------------------------------------

async fn throttled_touch(backend: Backend) {
    let server =
        Server::start_with(backend, |b| b.idle_timeout(Some(Duration::from_secs(600)))).await;
    assert_eq!(server.get("/count").await.body, "1");
    server.store.reset_counts();

    // Read-only visits within the first tenth of the idle window: no write.
    for at in 1..60 {
        server.at(at);
        let reply = server.get("/get").await;
        assert_eq!(reply.body, "1");
        assert_no_set_cookie(&reply, &format!("read-only visit at +{at}"));
    }
    if backend.is_store() {
        assert_eq!(
            server.store.counts(),
            Counts {
                load: 59,
                ..Counts::default()
            }
        );
    }

    // At +60 one touch is due.
    server.at(60);
    let reply = server.get("/get").await;
    assert_eq!(reply.body, "1");
    if backend.is_store() {
        assert_eq!(
            server.store.counts(),
            Counts {
                load: 60,
                touch: 1,
                ..Counts::default()
            }
        );
        assert_no_set_cookie(&reply, "store touch");
    } else {
        // Client-side: the touch is a re-issued cookie.
        assert!(
            reply.session_cookie().is_some(),
            "client-side touch re-issues the cookie"
        );
    }

    // Then quiet again until another 60 s have passed.
    for at in [61, 90, 119] {
        server.at(at);
        let reply = server.get("/get").await;
        assert_no_set_cookie(&reply, &format!("visit at +{at}"));
    }
    if backend.is_store() {
        assert_eq!(
            server.store.counts(),
            Counts {
                load: 63,
                touch: 1,
                ..Counts::default()
            }
        );
    }
    server.at(120);
    let reply = server.get("/get").await;
    if backend.is_store() {
        assert_eq!(server.store.counts().touch, 2);
        assert_no_set_cookie(&reply, "second store touch");
    } else {
        assert!(reply.session_cookie().is_some());
    }
    // The deadline the touch moved holds: alive at 120 + 599.
    server.at(719);
    assert_eq!(server.get("/status").await.body, live("1", "-"));
}

// ---------------------------------------------------------------------------
// 7. Read-only requests
// ---------------------------------------------------------------------------

async fn read_only_requests_send_no_set_cookie(backend: Backend) {
    let server = Server::start(backend).await;
    server.get("/count").await;
    server.get("/count").await;
    server.store.reset_counts();
    for path in ["/get", "/status", "/id", "/get", "/swallow"] {
        let reply = server.get(path).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_no_set_cookie(&reply, path);
    }
    assert_eq!(server.get("/get").await.body, "2");
    assert_eq!(
        server.store.counts().writes(),
        0,
        "read-only requests wrote to the store"
    );
}

// ---------------------------------------------------------------------------
// 8. A failed handler does not persist
// ---------------------------------------------------------------------------

/// A 5xx (a handler that failed) or a 408 (a request the server did not
/// finish) saves nothing of what the handler changed.
async fn failed_handler_does_not_persist(backend: Backend) {
    for (path, status) in [("/fail", 500), ("/fail/503", 503), ("/fail/408", 408)] {
        let server = Server::start(backend).await;
        // A new visitor whose first request fails: no session at all.
        let reply = server.get(path).await;
        assert_eq!(reply.status, status, "{path}");
        assert_no_set_cookie(&reply, &format!("{status} on a new session"));
        assert_eq!(server.store.counts().total(), 0, "{path}");
        assert_eq!(server.get("/status").await.body, FIRST_VISIT, "{path}");

        // An existing session: the changes of the failed request are dropped.
        assert_eq!(server.get("/count").await.body, "1");
        server.store.reset_counts();
        let reply = server.get(path).await;
        assert_eq!(reply.status, status, "{path}");
        assert_no_set_cookie(&reply, &format!("{status} on an existing session"));
        assert_eq!(server.store.counts().writes(), 0, "{path}");
        assert_eq!(
            server.get("/get").await.body,
            "1",
            "{path}: the failed request's change persisted"
        );
        assert_eq!(server.get("/keys").await.body, "n", "{path}");
        assert_eq!(server.get("/count").await.body, "2", "{path}");
    }
}

/// tower-http's `TimeoutLayer` inside the session layer drops the handler
/// between two of its changes and answers 408: neither change is saved
/// (the first one was, when only a 5xx kept the layer from saving).
async fn handler_cut_off_by_a_timeout_does_not_persist(backend: Backend) {
    async fn slow(session: Session) -> Result<&'static str, SessionError> {
        session.insert("n", 999).await?;
        tokio::time::sleep(Duration::from_secs(30)).await;
        session.insert("poison", true).await?;
        Ok("done")
    }
    let timeout = TimeoutLayer::with_status_code(
        http::StatusCode::REQUEST_TIMEOUT,
        Duration::from_millis(100),
    );
    let slow_route = Router::new().route("/slow", get(slow)).layer(timeout);
    let server = Server::start_with_routes(backend, |builder| builder, slow_route).await;

    // A new visitor: no session at all.
    let reply = server.get("/slow").await;
    assert_eq!(reply.status, 408);
    assert_no_set_cookie(&reply, "timeout on a new session");
    assert_eq!(server.store.counts().total(), 0);
    assert_eq!(server.get("/status").await.body, FIRST_VISIT);

    // An existing session: the first change is not saved either.
    assert_eq!(server.get("/count").await.body, "1");
    server.store.reset_counts();
    let reply = server.get("/slow").await;
    assert_eq!(reply.status, 408);
    assert_no_set_cookie(&reply, "timeout on an existing session");
    assert_eq!(server.store.counts().writes(), 0);
    assert_eq!(
        server.get("/get").await.body,
        "1",
        "half of the timed-out request's changes persisted"
    );
    assert_eq!(server.get("/keys").await.body, "n");
    assert_eq!(server.get("/count").await.body, "2");
}

// ---------------------------------------------------------------------------
// 9. Tampered cookies
// ---------------------------------------------------------------------------

async fn tampered_cookie_gives_fresh_session(backend: Backend) {
    let server = Server::start(backend).await;
    let cookie = server.get("/count").await.session_cookie().expect("cookie");
    let bad = tamper(&cookie);
    server.store.reset_counts();
    let reply = server.get_raw("/status", Some(&bad)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        server.store.counts().total(),
        0,
        "a bad cookie needs no store call"
    );
    assert_eq!(
        reply.body, FIRST_VISIT,
        "a tampered cookie must be a new, not expired, session"
    );
    // A tampered cookie is not removed (it may belong to another app) ...
    assert_no_set_cookie(&reply, "ignored bad cookie, read-only");
    // ... but replaced when the new session is saved.
    let reply = server.get_raw("/count", Some(&bad)).await;
    assert_eq!(reply.body, "1");
    assert!(reply.session_cookie().is_some_and(|c| c != bad));
    // The genuine cookie is unaffected.
    assert_eq!(server.get_raw("/get", Some(&cookie)).await.body, "1");
    // Garbage too.
    assert_eq!(
        server.get_raw("/status", Some("garbage")).await.body,
        FIRST_VISIT
    );
}

async fn tampered_cookie_rejected_with_400(backend: Backend) {
    let server = Server::start_with(backend, |b| b.bad_cookie(BadCookie::Reject)).await;
    let cookie = server.get("/count").await.session_cookie().expect("cookie");
    for bad in [tamper(&cookie), "garbage".to_owned()] {
        server.store.reset_counts();
        let reply = server.get_raw("/count", Some(&bad)).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (400, "bad cookie"),
            "cookie {bad}"
        );
        // Removed, so that the browser is not refused until it expires.
        assert_removal(&reply, "/", "rejected cookie");
        assert_eq!(server.store.counts().total(), 0);
    }
    // The genuine cookie still works, and no cookie at all is fine.
    assert_eq!(server.get_raw("/count", Some(&cookie)).await.body, "2");
    assert_eq!(server.get_raw("/status", None).await.body, FIRST_VISIT);
    // An expired (but genuine) cookie is not a bad one: the handler runs and
    // sees an expired session. The default idle timeout is 30 minutes.
    server.at(30 * 60);
    let reply = server.get_raw("/status", Some(&cookie)).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, EXPIRED));
}

// ---------------------------------------------------------------------------
// 10. Store failures (server-side only)
// ---------------------------------------------------------------------------

fn assert_unavailable(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 503, "{what}: {reply:?}");
    assert!(
        reply.header("retry-after").is_some(),
        "{what}: no Retry-After"
    );
    assert_no_set_cookie(reply, what);
}

#[tokio::test]
async fn memory_store_error_gives_503_and_keeps_cookie() {
    let server = Server::start(Backend::Memory).await;
    let cookie = server.get("/count").await.session_cookie().expect("cookie");

    server.store.set_mode(Mode::FailAll);
    assert_unavailable(&server.get("/count").await, "load fails");
    assert_unavailable(&server.get("/get").await, "load fails, read-only");
    assert_unavailable(&server.get("/swallow").await, "handler swallowed the error");
    assert_unavailable(
        &server.get_raw("/count", None).await,
        "create fails for a new visitor",
    );
    assert_eq!(
        server.get("/plain").await.status,
        200,
        "a route without the session is unaffected"
    );

    server.store.set_mode(Mode::FailWrites);
    assert_unavailable(&server.get("/count").await, "save fails");
    assert_unavailable(&server.get("/login").await, "cycle fails");
    assert_unavailable(&server.get("/logout").await, "delete fails");
    assert_eq!(server.get("/get").await.body, "1", "reads still work");

    // A login whose new record cannot be created leaves the old session
    // alone: the old id is deleted only once its replacement is stored.
    server.store.set_mode(Mode::FailCreate);
    server.store.reset_counts();
    assert_unavailable(&server.get("/login").await, "create fails during login");
    assert_eq!(
        server.store.counts().delete,
        0,
        "old id deleted before its replacement was stored"
    );
    assert_eq!(server.store.len(), 1);

    // Recovered: the same cookie, with its data.
    server.store.set_mode(Mode::Ok);
    assert_eq!(server.get_raw("/get", Some(&cookie)).await.body, "1");
    assert_eq!(server.get("/status").await.body, live("1", "-"));
    assert_eq!(server.get("/count").await.body, "2");
    assert_eq!(server.store.len(), 1);
}

#[tokio::test]
async fn memory_store_timeout_gives_503_and_keeps_cookie() {
    let server = Server::start_with(Backend::Memory, |b| {
        b.store_timeout(Duration::from_millis(50))
    })
    .await;
    let cookie = server.get("/count").await.session_cookie().expect("cookie");

    server.store.set_mode(Mode::Hang);
    let started = Instant::now();
    assert_unavailable(&server.get("/count").await, "load hangs");
    assert_unavailable(&server.get_raw("/count", None).await, "create hangs");
    assert_unavailable(
        &server.get("/swallow").await,
        "handler swallowed the timeout",
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "timeouts took {:?}",
        started.elapsed()
    );

    server.store.set_mode(Mode::Ok);
    assert_eq!(server.get_raw("/get", Some(&cookie)).await.body, "1");
    assert_eq!(server.get("/count").await.body, "2");
}

/// The store timeout bounds a request's store calls together: a load and
/// a save of 60 ms each fit a 100 ms timeout one by one, but not both.
#[tokio::test]
async fn memory_store_timeout_bounds_all_calls_of_a_request() {
    let server = Server::start_with(Backend::Memory, |b| {
        b.store_timeout(Duration::from_millis(100))
    })
    .await;
    assert_eq!(server.get("/count").await.body, "1");
    assert_eq!(server.get("/count").await.body, "2");
    server.store.set_mode(Mode::Slow);
    assert_eq!(server.get("/get").await.body, "2", "one slow load fits");
    assert_unavailable(
        &server.get("/count").await,
        "a slow load and a slow save do not",
    );
    server.store.set_mode(Mode::Ok);
    assert_eq!(server.get("/count").await.body, "3", "nothing was saved");
}

#[tokio::test]
async fn memory_on_unavailable_hook_renders_the_503() {
    let server = Server::start_with(Backend::Memory, |b| {
        b.on_unavailable(|err| {
            let mut response = axum::http::Response::new(format!(
                "down: {}",
                err.kind() == StoreErrorKind::Unavailable
            ));
            *response.status_mut() = axum::http::StatusCode::SERVICE_UNAVAILABLE;
            response
        })
    })
    .await;
    server.get("/count").await;
    server.store.set_mode(Mode::FailAll);
    let reply = server.get("/count").await;
    assert_unavailable(&reply, "with a hook");
    assert_eq!(reply.body, "down: true");
    server.store.set_mode(Mode::Ok);
    assert_eq!(server.get("/count").await.body, "2");
}

// ---------------------------------------------------------------------------
// Concurrent writers (server-side only)
// ---------------------------------------------------------------------------

/// Concurrent requests of one session that change different keys: a
/// version conflict reloads and replays, so no change is lost. (With
/// client-side sessions the last cookie wins; that is inherent.) Eight
/// writers can conflict at most seven times each, within the replay bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_concurrent_changes_are_all_kept() {
    let server = Server::start(Backend::Memory).await;
    let cookie = server.get("/count").await.session_cookie().expect("cookie");
    for round in 0..5 {
        let mut writers = tokio::task::JoinSet::new();
        for i in 0..8 {
            let request = server
                .raw
                .get(format!("{}/set/k{round}_{i}", server.base))
                .header(reqwest::header::COOKIE, format!("session={cookie}"));
            writers.spawn(async move {
                let response = request.send().await.expect("request");
                let set_cookie = response.headers().contains_key(reqwest::header::SET_COOKIE);
                (
                    response.status().as_u16(),
                    set_cookie,
                    response.text().await.expect("body"),
                )
            });
        }
        while let Some(done) = writers.join_next().await {
            let (status, set_cookie, body) = done.expect("writer task");
            assert_eq!((status, body.as_str()), (200, "set"));
            assert!(!set_cookie, "a save of an existing session sets no cookie");
        }
    }
    let keys = server.get("/keys").await.body;
    let keys: Vec<&str> = keys.split(',').collect();
    assert_eq!(keys.len(), 41, "{keys:?}");
    assert!(keys.contains(&"n"));
    assert_eq!(server.get("/get").await.body, "1");
}

/// Pauses a request between loading the session and changing it, so that
/// another request can save the same session in between.
#[derive(Debug, Default)]
struct Pause {
    loaded: Notify,
    release: Notify,
}

/// Loads the session, waits to be released, then adds to the cart.
async fn slow_cart(
    State(pause): State<Arc<Pause>>,
    session: Session,
) -> Result<&'static str, SessionError> {
    let _ = session.get::<u64>("n").await?;
    pause.loaded.notify_one();
    pause.release.notified().await;
    session.insert("cart", "apple").await?;
    Ok("added")
}

/// Starts a memory-store server with `/slow-cart`, makes a session, and
/// runs `/slow-cart` until it has loaded the session. Returns the server,
/// the cookie, the pause and the paused request.
async fn paused_cart_request() -> (
    Server,
    String,
    Arc<Pause>,
    tokio::task::JoinHandle<(u16, bool)>,
) {
    let pause = Arc::new(Pause::default());
    let extra = Router::new()
        .route("/slow-cart", get(slow_cart))
        .with_state(pause.clone());
    let server = Server::start_with_routes(Backend::Memory, |b| b, extra).await;
    let cookie = server.get("/count").await.session_cookie().expect("cookie");
    let request = server
        .raw
        .get(format!("{}/slow-cart", server.base))
        .header(reqwest::header::COOKIE, format!("session={cookie}"));
    let slow = tokio::spawn(async move {
        let response = request.send().await.expect("slow request");
        let status = response.status().as_u16();
        let set_cookie = response.headers().contains_key(reqwest::header::SET_COOKIE);
        (status, set_cookie)
    });
    tokio::time::timeout(Duration::from_secs(5), pause.loaded.notified())
        .await
        .expect("/slow-cart never loaded the session");
    (server, cookie, pause, slow)
}

/// A request that changed only the data must not undo the user another
/// request set in the meantime (its replay after the version conflict must
/// replay its own changes only).
#[tokio::test]
async fn memory_concurrent_save_keeps_other_requests_user() {
    let (server, cookie, pause, slow) = paused_cart_request().await;
    let reply = server.get_raw("/set-user", Some(&cookie)).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok"));
    pause.release.notify_one();
    assert_eq!(slow.await.expect("slow request"), (200, false));

    let keys = server.get_raw("/keys", Some(&cookie)).await.body;
    assert_eq!(keys, "cart,n", "the slow request's change was replayed");
    assert_eq!(
        server.get_raw("/user", Some(&cookie)).await.body,
        "u".repeat(64),
        "the concurrent request's set_user was undone by the replay"
    );
}

/// A request whose copy of the session is older than the last save this
/// process made of it starts from that save's record: it replays its
/// changes there and saves once, without first meeting the conflict in the
/// store and loading the session again.
#[tokio::test]
async fn memory_stale_save_starts_from_this_process_last_save() {
    let (server, cookie, pause, slow) = paused_cart_request().await;
    let reply = server.get_raw("/count", Some(&cookie)).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "2"));
    server.store.reset_counts();
    pause.release.notify_one();
    assert_eq!(slow.await.expect("slow request"), (200, false));
    let counts = server.store.counts();
    assert_eq!(
        (counts.load, counts.save),
        (0, 1),
        "one save, no reload: {counts:?}"
    );
    assert_eq!(server.get_raw("/keys", Some(&cookie)).await.body, "cart,n");
    assert_eq!(server.get_raw("/get", Some(&cookie)).await.body, "2");
}

/// Likewise for "remember me": a concurrent data change must not undo
/// another request's `set_expiry`.
#[tokio::test]
async fn memory_concurrent_save_keeps_other_requests_expiry() {
    let (server, cookie, pause, slow) = paused_cart_request().await;
    // 400 days, idle 400 days.
    let reply = server.get_raw("/remember", Some(&cookie)).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok"));
    let remembered = reply
        .session_cookie()
        .expect("set_expiry re-sends the cookie");
    pause.release.notify_one();
    assert_eq!(slow.await.expect("slow request"), (200, false));

    // Well past the layer's 30-minute idle timeout and 14-day lifetime.
    server.at(30 * 86_400);
    let status = server.get_raw("/status", Some(&remembered)).await.body;
    assert_eq!(
        status,
        live("1", "-"),
        "the concurrent request's set_expiry was undone by the replay"
    );
    assert_eq!(
        server.get_raw("/keys", Some(&remembered)).await.body,
        "cart,n"
    );
}

// ---------------------------------------------------------------------------
// A task that outlives its request
// ---------------------------------------------------------------------------

/// What each call of a task spawned by `/late-task/...` returned, run once
/// its request's response was made: the call's name and its error, if any.
type LateOutcome = Vec<(&'static str, Option<SessionError>)>;

/// The hand-over between a test and the task `/late-task/...` spawns.
#[derive(Debug, Default)]
struct LateTask {
    /// The test's go-ahead, sent once it has the response.
    go: std::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    /// Where the task reports.
    done: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<LateOutcome>>>,
}

impl LateTask {
    /// Arms the hand-over for one request: the go-ahead's sender and the
    /// report's receiver.
    fn arm(
        &self,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::sync::oneshot::Receiver<LateOutcome>,
    ) {
        let (go_tx, go_rx) = tokio::sync::oneshot::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        *self.go.lock().unwrap() = Some(go_rx);
        *self.done.lock().unwrap() = Some(done_tx);
        (go_tx, done_rx)
    }
}

/// `/late-task/write` writes `handler`, `/late-task/untouched` leaves the
/// session alone; either spawns a task with a clone of the session that,
/// once the test says the response is in, uses it every way there is.
async fn late_task(
    State(late): State<Arc<LateTask>>,
    axum::extract::Path(mode): axum::extract::Path<String>,
    session: Session,
) -> Result<&'static str, SessionError> {
    if mode == "write" {
        session.insert("handler", true).await?;
    }
    let go = late.go.lock().unwrap().take().expect("armed");
    let done = late.done.lock().unwrap().take().expect("armed");
    let session = session.clone();
    tokio::spawn(async move {
        go.await.expect("go");
        let expiry = Expiry::persistent(Duration::from_secs(86_400));
        let outcome: LateOutcome = vec![
            ("insert", session.insert("task", true).await.err()),
            ("get", session.get::<bool>("handler").await.err()),
            ("keys", session.keys().await.err()),
            ("is_new", session.is_new().await.err()),
            (
                "update",
                session
                    .update("n", |n: Option<u64>| n.unwrap_or(0) + 1)
                    .await
                    .err(),
            ),
            ("pop", session.pop::<bool>("handler").await.err()),
            ("remove", session.remove("handler").await.err()),
            ("clear", session.clear().await.err()),
            ("set_user", session.set_user(Some("eve")).await.err()),
            ("set_expiry", session.set_expiry(expiry).await.err()),
            ("cycle_id", session.cycle_id().await.err()),
            ("flush", session.flush().await.err()),
            ("reset", session.reset().await.err()),
            ("user_sessions", session.user_sessions("eve").await.err()),
            (
                "end_user_sessions",
                session.end_user_sessions("eve").await.err(),
            ),
        ];
        let _ = done.send(outcome);
    });
    Ok("spawned")
}

/// A handler gives a clone of its session to a task that uses it after the
/// response was made. The session was saved with the response; nothing
/// the task does could be saved any more, so every call tells it so
/// (`SessionError::Finished`) instead of accepting a write that is then
/// silently lost, or loading the session from the store again.
async fn a_task_that_outlives_the_response_gets_finished(backend: Backend) {
    let late = Arc::new(LateTask::default());
    let extra = Router::new()
        .route("/late-task/{mode}", get(late_task))
        .with_state(late.clone());
    let server = Server::start_with_routes(backend, |b| b, extra).await;
    for mode in ["write", "untouched"] {
        let (go, done) = late.arm();
        let reply = server.get(&format!("/late-task/{mode}")).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, "spawned"),
            "{mode}"
        );
        server.store.reset_counts();
        go.send(()).expect("the task waits");
        let outcome = tokio::time::timeout(Duration::from_secs(5), done)
            .await
            .expect("the task reports in time")
            .expect("the task reports");
        for (call, err) in outcome {
            match err {
                Some(SessionError::Finished) => {}
                other => panic!("{mode}: `{call}` after the response: {other:?}"),
            }
        }
        assert_eq!(
            server.store.counts(),
            Counts::default(),
            "{mode}: store calls after the response"
        );
        // What the handler wrote was saved; what the task tried was not.
        assert_eq!(server.get("/keys").await.body, "handler", "{mode}");
        assert_eq!(server.get("/user").await.body, "-", "{mode}");
    }
    let message = SessionError::Finished.to_string();
    assert!(
        message.contains("response") && message.contains("not saved"),
        "{message}"
    );
}

// ---------------------------------------------------------------------------
// 11. Caching headers
// ---------------------------------------------------------------------------

async fn cache_headers_on_set_cookie(backend: Backend) {
    let server = Server::start(backend).await;
    let reply = server.get("/count").await;
    assert!(reply.session_cookie().is_some());
    assert!(
        reply
            .header_list("vary")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("cookie")),
        "Vary: {:?}",
        reply.header_list("vary")
    );
    assert_eq!(reply.header("cache-control"), Some("private"));

    let logout = server.get("/logout").await;
    assert_removal(&logout, "/", "logout");
    assert!(
        logout
            .header_list("vary")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("cookie"))
    );
    assert_eq!(logout.header("cache-control"), Some("private"));

    // A response made with the session, but without a cookie change,
    // varies by cookie too (as in Flask and Django); one that did not use
    // the session does not.
    let vary_cookie = |reply: &Reply| {
        reply
            .header_list("vary")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("cookie"))
    };
    assert_eq!(server.get("/count").await.body, "1");
    let read = server.get("/get").await;
    assert_no_set_cookie(&read, "read-only");
    assert!(
        vary_cookie(&read),
        "read-only: {:?}",
        read.header_list("vary")
    );
    assert_eq!(read.header("cache-control"), None);
    let plain = server.get("/plain").await;
    assert!(
        !vary_cookie(&plain),
        "no session: {:?}",
        plain.header_list("vary")
    );

    // The handler's own no-store and Vary are kept.
    let reply = server.get_via(&server.browser(), "/no-store").await;
    assert!(reply.session_cookie().is_some());
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let vary = reply.header_list("vary");
    assert!(
        vary.iter()
            .any(|v| v.eq_ignore_ascii_case("accept-encoding")),
        "Vary: {vary:?}"
    );
    assert!(
        vary.iter().any(|v| v.eq_ignore_ascii_case("cookie")),
        "Vary: {vary:?}"
    );
    // Its other directives too, with `private` added (and `public` gone).
    async fn revalidate(session: Session) -> Result<Response, SessionError> {
        session.insert("seen", true).await?;
        let directives = "public, no-cache, max-age=0, must-revalidate";
        Ok(([(header::CACHE_CONTROL, directives)], "fresh").into_response())
    }
    // A cookie the handler sets itself (through a `CookieJar`), without
    // the session, keeps the response out of shared caches too.
    async fn theme(mut jar: CookieJar) -> (CookieJar, &'static str) {
        jar.add(
            Cookie::build("theme", "dark")
                .build()
                .expect("a valid cookie"),
        );
        (jar, "themed")
    }
    let server = Server::start_with_routes(
        backend,
        |b| b,
        Router::new()
            .route("/revalidate", get(revalidate))
            .route("/theme", get(theme)),
    )
    .await;
    let reply = server.get("/revalidate").await;
    assert!(reply.session_cookie().is_some());
    assert_eq!(
        reply.header("cache-control"),
        Some("no-cache, max-age=0, must-revalidate, private")
    );
    let reply = server.get("/theme").await;
    assert!(reply.session_cookie().is_none());
    assert_eq!(reply.header("cache-control"), Some("private"));
}

// ---------------------------------------------------------------------------
// 12. Lazy loading
// ---------------------------------------------------------------------------

async fn untouched_session_makes_no_store_calls(backend: Backend) {
    let server = Server::start(backend).await;
    assert_eq!(server.get("/count").await.body, "1");
    server.store.reset_counts();
    for at in [0, 500, 1_000] {
        // Even when a touch would be due.
        server.at(at);
        let reply = server.get("/plain").await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "plain"));
        assert_no_set_cookie(&reply, "route without the session");
    }
    assert_eq!(
        server.store.counts().total(),
        0,
        "{:?}",
        server.store.counts()
    );
    assert_eq!(server.get("/get").await.body, "1");
}

// ---------------------------------------------------------------------------
// 13. Store calls per request
// ---------------------------------------------------------------------------

async fn one_read_one_write_per_modifying_request(backend: Backend) {
    let server = Server::start(backend).await;
    // A new session: no read, one create.
    let reply = server.get("/multi").await;
    assert_eq!(reply.body, "1");
    assert_eq!(reply.set_cookies().len(), 1);
    if backend.is_store() {
        assert_eq!(
            server.store.counts(),
            Counts {
                create: 1,
                ..Counts::default()
            }
        );
    }
    // Existing session, several changes in one request: one read, one write.
    for expected in 2..=4 {
        server.store.reset_counts();
        let path = if expected % 2 == 0 {
            "/multi"
        } else {
            "/count"
        };
        let reply = server.get(path).await;
        assert_eq!(reply.body, expected.to_string());
        if backend.is_store() {
            assert_eq!(
                server.store.counts(),
                Counts {
                    load: 1,
                    save: 1,
                    ..Counts::default()
                },
                "{path}"
            );
            // The id did not change: no Set-Cookie.
            assert_no_set_cookie(&reply, "save of an existing session");
        } else {
            assert_eq!(reply.set_cookies().len(), 1, "one Set-Cookie per change");
        }
    }
}

// ---------------------------------------------------------------------------
// 14. Client-side size limit
// ---------------------------------------------------------------------------

async fn oversized_session_is_refused(backend: Backend) {
    let server = Server::start(backend).await;
    assert_eq!(server.get("/count").await.body, "1");
    let reply = server.get("/big").await;
    if backend.is_store() {
        // Server-side sessions have no cookie-size limit.
        assert_eq!((reply.status, reply.body.as_str()), (200, "stored"));
        assert_eq!(server.get("/count").await.body, "2");
    } else {
        assert_eq!((reply.status, reply.body.as_str()), (413, "too large"));
        assert_no_set_cookie(&reply, "refused change");
        assert_eq!(server.get("/get").await.body, "1", "previous data kept");
        assert_eq!(server.get("/count").await.body, "2");
        // Also on a brand-new session.
        let reply = server.get_via(&server.browser(), "/big").await;
        assert_eq!(reply.status, 413);
        assert_no_set_cookie(&reply, "refused change on a new session");
    }
}

/// A change other than `insert` (the session's user, its expiry) that pushes
/// a full client-side session over the limit must not be lost silently:
/// either the handler gets an error, or the response carries the cookie.
async fn full_session_other_changes_not_lost(backend: Backend) {
    assert!(!backend.is_store(), "client-side sessions only");
    let server = Server::start(backend).await;
    assert_eq!(server.get("/count").await.body, "1");
    let filled = server.get("/fill").await;
    assert_eq!(filled.status, 200);
    assert!(filled.session_cookie().is_some());

    let reply = server.get("/set-user").await;
    match reply.status {
        200 => {
            assert!(
                reply.session_cookie().is_some(),
                "set_user answered ok but sent no cookie"
            );
            assert_eq!(
                server.get("/user").await.body,
                "u".repeat(64),
                "set_user answered ok but was lost"
            );
        }
        413 => {
            assert_no_set_cookie(&reply, "refused set_user");
            assert_eq!(server.get("/user").await.body, "-");
        }
        other => panic!("set_user: unexpected status {other}"),
    }
    assert_eq!(server.get("/get").await.body, "1", "the session survived");

    let reply = server.get("/remember").await;
    match reply.status {
        200 => {
            let header = reply
                .session_set_cookie()
                .expect("set_expiry answered ok but sent no cookie");
            assert!(header.contains("Max-Age="), "{header}");
        }
        413 => assert_no_set_cookie(&reply, "refused set_expiry"),
        other => panic!("set_expiry: unexpected status {other}"),
    }
    assert_eq!(server.get("/get").await.body, "1", "the session survived");
}

// ---------------------------------------------------------------------------
// 15. Cookie attributes
// ---------------------------------------------------------------------------

async fn cookie_attributes(backend: Backend) {
    let server = Server::start(backend).await;
    let header = server
        .get("/count")
        .await
        .session_set_cookie()
        .expect("cookie");
    let attributes: Vec<&str> = header.split(';').map(str::trim).skip(1).collect();
    for wanted in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(attributes.contains(&wanted), "{wanted} missing: {header}");
    }
    assert!(
        !attributes.contains(&"Secure"),
        "secure(false) but: {header}"
    );
    assert!(
        !attributes.iter().any(|a| a.starts_with("Max-Age")),
        "not persistent: {header}"
    );
    assert!(
        !attributes.iter().any(|a| a.starts_with("Domain")),
        "{header}"
    );

    // Every attribute configured; the removal repeats Path and Domain (a
    // browser deletes only a cookie whose path and domain match). Domain
    // cookies for example.com are not stored by a client talking to
    // 127.0.0.1: check the header text and replay by hand.
    let server = Server::start_with(backend, |b| {
        b.path("/app")
            .domain("example.com")
            .same_site(Some(SameSite::Strict))
            .http_only(false)
            .persistent(true)
    })
    .await;
    let reply = server.get_raw("/count", None).await;
    let header = reply.session_set_cookie().expect("cookie");
    let attributes: Vec<&str> = header.split(';').map(str::trim).skip(1).collect();
    for wanted in ["Path=/app", "Domain=example.com", "SameSite=Strict"] {
        assert!(attributes.contains(&wanted), "{wanted} missing: {header}");
    }
    assert!(!attributes.contains(&"HttpOnly"), "{header}");
    // A persistent cookie lasts as long as the session can: server-side
    // until the absolute deadline (the store enforces the idle one),
    // client-side until the cookie's own deadline (idle, 30 minutes).
    let max_age = if backend.is_store() {
        "Max-Age=1209600"
    } else {
        "Max-Age=1800"
    };
    assert!(attributes.contains(&max_age), "{max_age} missing: {header}");
    let cookie = reply.session_cookie().expect("cookie");
    let logout = server.get_raw("/logout", Some(&cookie)).await;
    assert_removal(&logout, "/app", "logout with a custom path");
    let removal = logout.session_set_cookie().expect("removal");
    assert!(
        removal.split(';').any(|a| a.trim() == "Domain=example.com"),
        "{removal}"
    );
}

async fn host_prefix_cookie(backend: Backend) {
    // __Host- needs Secure, which reqwest's store will not send over http:
    // check the header text and replay by hand.
    let server = Server::start_with(backend, |b| b.secure(true).host_prefix(true)).await;
    let reply = server.get_raw("/count", None).await;
    assert_eq!(reply.body, "1");
    let header = reply
        .set_cookie_named("__Host-session")
        .expect("a __Host-session cookie");
    let attributes: Vec<&str> = header.split(';').map(str::trim).skip(1).collect();
    for wanted in ["Secure", "Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(attributes.contains(&wanted), "{wanted} missing: {header}");
    }
    assert!(
        !attributes.iter().any(|a| a.starts_with("Domain")),
        "{header}"
    );
    let value = common::cookie_value(&header).to_owned();
    let again = server
        .get_raw_named("/count", "__Host-session", Some(&value))
        .await;
    assert_eq!(again.body, "2");
    // The unprefixed name is not the session cookie.
    assert_eq!(
        server
            .get_raw_named("/get", "session", Some(&value))
            .await
            .body,
        "-"
    );
}

// ---------------------------------------------------------------------------
// 16. The longest lifetimes
// ---------------------------------------------------------------------------

/// The longest lifetime, `Expiry::MAX_LIFETIME` (400 days, as long as
/// browsers keep a cookie; `Duration::MAX` is refused), on the layer or
/// with `set_expiry`: the session works and its cookie is sent (once, a
/// "no limit" of `Duration::MAX` gave a deadline no cookie could carry, so
/// none was sent and every request started a session of its own).
async fn longest_lifetimes_still_send_the_cookie(backend: Backend) {
    async fn forever(session: Session) -> Result<&'static str, SessionError> {
        session
            .set_expiry(Expiry::persistent(Expiry::MAX_LIFETIME).with_idle(None))
            .await?;
        Ok("forever")
    }
    let server = Server::start_with_routes(
        backend,
        |b| b.absolute_lifetime(Expiry::MAX_LIFETIME).idle_timeout(None),
        Router::new().route("/forever", get(forever)),
    )
    .await;
    let first = server.get("/count").await;
    assert!(first.session_set_cookie().is_some(), "no cookie: {first:?}");
    assert_eq!(server.get("/count").await.body, "2");

    let reply = server.get("/forever").await;
    assert_eq!(reply.body, "forever");
    let header = reply.session_set_cookie().expect("the new expiry's cookie");
    assert!(header.contains("; Max-Age=34560000"), "400 days: {header}");
    assert_eq!(server.get("/count").await.body, "3");
    if backend.is_store() {
        assert_eq!(server.store.len(), 1, "one session, not one per request");
    }
}

// ---------------------------------------------------------------------------
// Run everything for every backend.
// ---------------------------------------------------------------------------

macro_rules! for_each_backend {
    (all: [$($test:ident),* $(,)?], client_side: [$($client:ident),* $(,)?] $(,)?) => {
        mod memory {
            $(#[tokio::test] async fn $test() { super::$test(super::Backend::Memory).await; })*
        }
        mod signed {
            $(#[tokio::test] async fn $test() { super::$test(super::Backend::Signed).await; })*
            $(#[tokio::test] async fn $client() { super::$client(super::Backend::Signed).await; })*
        }
        mod sealed {
            $(#[tokio::test] async fn $test() { super::$test(super::Backend::Sealed).await; })*
            $(#[tokio::test] async fn $client() { super::$client(super::Backend::Sealed).await; })*
        }
    };
}

for_each_backend!(
    all: [
        counter_across_requests,
        login_cycles_id_and_keeps_data,
        logout_removes_cookie_and_record,
        an_ended_session_cookie_is_removed_only_on_page_loads,
        logout_then_new_session_in_same_request,
        idle_expiry_exact_to_the_second,
        absolute_expiry_caps_touches,
        writing_visits_move_idle_deadline,
        a_write_after_the_clock_steps_back_keeps_the_idle_deadline,
        login_moves_idle_deadline,
        expired_flag_only_after_expiry,
        throttled_touch,
        read_only_requests_send_no_set_cookie,
        failed_handler_does_not_persist,
        handler_cut_off_by_a_timeout_does_not_persist,
        tampered_cookie_gives_fresh_session,
        tampered_cookie_rejected_with_400,
        cache_headers_on_set_cookie,
        untouched_session_makes_no_store_calls,
        one_read_one_write_per_modifying_request,
        oversized_session_is_refused,
        cookie_attributes,
        host_prefix_cookie,
        longest_lifetimes_still_send_the_cookie,
        a_task_that_outlives_the_response_gets_finished,
    ],
    client_side: [full_session_other_changes_not_lost],
);
