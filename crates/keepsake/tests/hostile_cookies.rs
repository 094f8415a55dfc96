//! Duplicate session cookies and cookie tossing, over real HTTP.
//!
//! A browser sends every cookie whose domain and path match, so a request
//! can carry several cookies named `session`: one set by a sibling subdomain
//! or a more specific path (cookie tossing), a stale one, or junk. The rule:
//! only a value that verifies and names a live session is used; if two
//! different values do, the request is anonymous (neither is trusted), so a
//! tossed cookie cannot log the visitor into the attacker's session. Run
//! for server-side sessions and signed and sealed client-side sessions.

#[allow(dead_code)] // each test file uses part of the shared harness
mod common;

use common::{Backend, Server, T0, tamper};
use keepsake::{
    codec::{Claims, Codec, Format},
    key::{Key, KeyRing},
    session::BadCookie,
    store::Id,
};

const ANONYMOUS: &str = "new=true expired=false n=- user=-";

/// GET `path` with the given `Cookie` headers, verbatim; status and body.
async fn send(server: &Server, path: &str, cookie_headers: &[String]) -> (u16, String) {
    let mut request = server.raw.get(format!("{}{path}", server.base));
    for header in cookie_headers {
        request = request.header(reqwest::header::COOKIE, header);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// A new session with `n` counted to `count`; its cookie value.
async fn session_with(server: &Server, count: u64) -> String {
    let mut value = server
        .get_raw("/count", None)
        .await
        .session_cookie()
        .expect("a session cookie");
    for n in 2..=count {
        let reply = server.get_raw("/count", Some(&value)).await;
        assert_eq!(reply.body, n.to_string());
        if let Some(next) = reply.session_cookie() {
            value = next;
        }
    }
    value
}

fn status_of(n: u64) -> String {
    format!("new=false expired=false n={n} user=-")
}

async fn only_the_verified_value_is_used(backend: Backend) {
    let server = Server::start(backend).await;
    let mine = session_with(&server, 3).await;
    let forged = tamper(&mine);
    let junk = [
        "",
        "x",
        "s1.",
        "e1.AAAA",
        "s1.AAAAAAAAAAAAAAAA.AAAA",
        "%00",
        "\"quoted\"",
    ];
    for bad in junk.iter().map(|s| (*s).to_owned()).chain([forged]) {
        for header in [
            format!("session={bad}; session={mine}"),
            format!("session={mine}; session={bad}"),
            format!("a=1; session={bad}; b=2; session={mine}; session={bad}"),
        ] {
            assert_eq!(
                send(&server, "/status", std::slice::from_ref(&header)).await,
                (200, status_of(3)),
                "{backend:?}: {header}"
            );
        }
        // The same split over two Cookie headers.
        let two = [format!("session={bad}"), format!("session={mine}")];
        assert_eq!(send(&server, "/status", &two).await, (200, status_of(3)));
    }
    // The same valid value twice is one value.
    let twice = format!("session={mine}; session={mine}");
    assert_eq!(
        send(&server, "/status", &[twice]).await,
        (200, status_of(3))
    );
}

async fn two_verified_values_are_anonymous(backend: Backend) {
    let server = Server::start(backend).await;
    let victim = session_with(&server, 2).await;
    let attacker = session_with(&server, 7).await;
    for headers in [
        vec![format!("session={attacker}; session={victim}")],
        vec![format!("session={victim}; session={attacker}")],
        vec![format!("session={attacker}"), format!("session={victim}")],
        vec![format!(
            "session={victim}; junk=1; session=bad; session={attacker}"
        )],
    ] {
        assert_eq!(
            send(&server, "/status", &headers).await,
            (200, ANONYMOUS.to_owned()),
            "{backend:?}: {headers:?}"
        );
    }
    // A write in that state starts a new session; neither old one changes.
    let both = format!("session={attacker}; session={victim}");
    assert_eq!(
        send(&server, "/count", &[both]).await,
        (200, "1".to_owned())
    );
    assert_eq!(server.get_raw("/get", Some(&victim)).await.body, "2");
    assert_eq!(server.get_raw("/get", Some(&attacker)).await.body, "7");
}

/// Under `BadCookie::Reject` too: two values that verify are not a bad
/// cookie. A 400 could not remove the planted one (removing ours would
/// leave it in use), so it would refuse the visitor until it expired.
async fn two_verified_values_are_anonymous_under_reject_too(backend: Backend) {
    let server = Server::start_with(backend, |b| b.bad_cookie(BadCookie::Reject)).await;
    let victim = session_with(&server, 2).await;
    let attacker = session_with(&server, 7).await;
    let both = format!("session={attacker}; session={victim}");
    let response = server
        .raw
        .get(format!("{}/status", server.base))
        .header(reqwest::header::COOKIE, both)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    // Neither is removed.
    assert!(
        response
            .headers()
            .get(reqwest::header::SET_COOKIE)
            .is_none()
    );
    assert_eq!(response.text().await.expect("body"), ANONYMOUS);
    // A bad value beside a good one is not a reason to refuse the request.
    let mixed = format!("session=junk; session={victim}");
    assert_eq!(
        send(&server, "/status", &[mixed]).await,
        (200, status_of(2))
    );
}

/// GET `path` with one `Cookie` header of any bytes; status and body.
async fn send_bytes(server: &Server, path: &str, header: &[u8]) -> (u16, String) {
    let value = reqwest::header::HeaderValue::from_bytes(header).expect("a header value");
    let response = server
        .raw
        .get(format!("{}{path}", server.base))
        .header(reqwest::header::COOKIE, value)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// Another cookie of the site in bytes that are not ASCII (UTF-8) or not
/// UTF-8 at all (Latin-1, raw bytes), in the same `Cookie` header as the
/// session cookie: browsers send such cookies as they were set, and the
/// session is still found, before or after them. A session cookie that is
/// not UTF-8 is junk like any other.
async fn other_cookies_in_any_bytes_leave_the_session(backend: Backend) {
    let server = Server::start(backend).await;
    let mine = session_with(&server, 3).await;
    let others: [&[u8]; 3] = [b"name=Jos\xc3\xa9", b"latin1=Jos\xe9", b"raw=\x80\xff"];
    for other in others {
        for header in [
            [other, b"; session=", mine.as_bytes()].concat(),
            [b"session=", mine.as_bytes(), b"; ", other].concat(),
        ] {
            assert_eq!(
                send_bytes(&server, "/status", &header).await,
                (200, status_of(3)),
                "{backend:?}: {}",
                String::from_utf8_lossy(&header)
            );
        }
    }
    assert_eq!(
        send_bytes(&server, "/status", b"session=\xff\xfe").await,
        (200, ANONYMOUS.to_owned())
    );
    let junk_beside_mine = [b"session=\xe9; session=", mine.as_bytes()].concat();
    assert_eq!(
        send_bytes(&server, "/status", &junk_beside_mine).await,
        (200, status_of(3))
    );
}

/// A value made with an unrelated key never counts, even for the session's
/// real id (so read access to a store's ids is not enough to hijack a
/// session), and a cookie of another name is not the session cookie.
/// Tossing such values in neither logs the visitor in nor out.
async fn tossed_foreign_values_do_not_count(backend: Backend) {
    let server = Server::start(backend).await;
    let mine = session_with(&server, 4).await;
    let stranger = Codec::new(
        Format::Signed,
        KeyRing::new(Key::from_bytes(&[4; 32]).expect("key")),
    );
    let claims = Claims::new(T0).with_ttl(3_600);
    // The session's real id (as someone who can read the store would know
    // it), signed with another key.
    let id: Id = server
        .get_raw("/id", Some(&mine))
        .await
        .body
        .parse()
        .expect("an id");
    let foreign = [
        stranger
            .encode("session", id.as_bytes(), claims)
            .expect("encode"),
        Codec::new(Format::Sealed, KeyRing::new(Key::generate()))
            .encode("session", b"{}", claims)
            .expect("encode"),
    ];
    for value in &foreign {
        let header = format!("session={value}; session={mine}");
        assert_eq!(
            send(&server, "/status", &[header]).await,
            (200, status_of(4))
        );
        let alone = format!("session={value}");
        assert_eq!(
            send(&server, "/status", &[alone]).await,
            (200, ANONYMOUS.to_owned())
        );
    }
    // A cookie of another name holding the session's own value is not the
    // session cookie, and names are case-sensitive.
    for header in [format!("sessionx={mine}"), format!("Session={mine}")] {
        assert_eq!(
            send(&server, "/status", &[header]).await,
            (200, ANONYMOUS.to_owned())
        );
    }
}

/// An expired but genuine value beside a live one is passed over, in
/// either order: it can never be used, so it cannot log the visitor into
/// anyone's session, and counting it would make every request anonymous
/// (and, on writing, start a new session) for as long as the browser keeps
/// it, for instance one left at another path after the layer's `path`
/// changed.
async fn an_expired_value_beside_a_live_one_is_passed_over(backend: Backend) {
    let server = Server::start(backend).await;
    let old = session_with(&server, 5).await;
    server.at(15 * 86_400); // past the 14-day absolute lifetime
    let live = session_with(&server, 2).await;
    assert_eq!(
        send(&server, "/status", &[format!("session={old}")]).await,
        (200, "new=true expired=true n=- user=-".to_owned())
    );
    for header in [
        format!("session={old}; session={live}"),
        format!("session={live}; session={old}"),
    ] {
        assert_eq!(
            send(&server, "/status", &[header]).await,
            (200, status_of(2))
        );
    }
    // A write goes on from the live session; no new session is started.
    let both = format!("session={old}; session={live}");
    assert_eq!(
        send(&server, "/count", &[both]).await,
        (200, "3".to_owned())
    );
    if backend.is_store() {
        assert_eq!(server.get_raw("/get", Some(&live)).await.body, "3");
    }
}

/// Server-side: of several ids that verify, the session is the one still
/// in the store. A browser holds such a pair when the layer's `path` or
/// `domain` changed and the visitor then logged in or out: the cookie at
/// the old place still names the ended session. Counting it as a rival
/// would make every request anonymous until it expired, under
/// `BadCookie::Reject` as well. Two live ones are still anonymous (cookie
/// tossing), and so are more ids than are worth looking up.
async fn an_ended_session_beside_a_live_one_is_passed_over(backend: Backend) {
    if !backend.is_store() {
        return;
    }
    for bad_cookie in [BadCookie::Ignore, BadCookie::Reject] {
        let server = Server::start_with(backend, |b| b.bad_cookie(bad_cookie)).await;
        // Ended sessions: logged out, or moved to a new id by a login.
        let logged_out = || async {
            let value = session_with(&server, 4).await;
            assert_eq!(server.get_raw("/logout", Some(&value)).await.body, "bye");
            value
        };
        let cycled = session_with(&server, 5).await;
        let login = server.get_raw("/login", Some(&cycled)).await;
        assert!(login.session_cookie().is_some_and(|new| new != cycled));
        let live = session_with(&server, 2).await;
        let ended = [logged_out().await, cycled, logged_out().await];
        for dead in &ended {
            for header in [
                format!("session={dead}; session={live}"),
                format!("session={live}; session={dead}"),
            ] {
                assert_eq!(
                    send(&server, "/status", &[header]).await,
                    (200, status_of(2)),
                    "{bad_cookie:?}"
                );
            }
        }
        // All of them at once (four ids): still the live one.
        let all = format!("session={}; session={live}", ended.join("; session="));
        assert_eq!(
            send(&server, "/status", std::slice::from_ref(&all)).await,
            (200, status_of(2))
        );
        // A write goes to the live session.
        assert_eq!(send(&server, "/count", &[all]).await, (200, "3".to_owned()));
        assert_eq!(server.get_raw("/get", Some(&live)).await.body, "3");
        // Only ended sessions: an ended session, as one alone.
        let dead_only = format!("session={}", ended.join("; session="));
        assert_eq!(
            send(&server, "/status", &[dead_only]).await,
            (200, "new=true expired=true n=- user=-".to_owned())
        );
        // More ids than are looked up: anonymous, the store never asked.
        let fifth = logged_out().await;
        let five = format!(
            "session={}; session={fifth}; session={live}",
            ended.join("; session=")
        );
        assert_eq!(
            send(&server, "/status", &[five]).await,
            (200, ANONYMOUS.to_owned())
        );
    }
}

/// Replay after logout. Server-side: logout deletes the record, so a copy
/// of the old cookie is worth nothing. Client-side: the cookie *is* the
/// session, so a copy kept by an attacker still works until the session's
/// own deadline (idle or absolute), and then never again. This pins the
/// limit that SECURITY.md states.
async fn replay_after_logout(backend: Backend) {
    let server = Server::start(backend).await;
    let copy = session_with(&server, 2).await;
    let logout = server.get_raw("/logout", Some(&copy)).await;
    assert_eq!(logout.body, "bye");
    let replay = send(&server, "/status", &[format!("session={copy}")]).await;
    if backend.is_store() {
        assert_eq!(replay, (200, "new=true expired=true n=- user=-".to_owned()));
    } else {
        assert_eq!(replay, (200, status_of(2)), "client-side replay");
        server.at(30 * 60); // the 30-minute idle timeout
        let late = send(&server, "/status", &[format!("session={copy}")]).await;
        assert_eq!(late, (200, "new=true expired=true n=- user=-".to_owned()));
    }
}

macro_rules! for_each_backend {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test] async fn $test() { super::$test(super::Backend::Memory).await; })*
        }
        mod signed {
            $(#[tokio::test] async fn $test() { super::$test(super::Backend::Signed).await; })*
        }
        mod sealed {
            $(#[tokio::test] async fn $test() { super::$test(super::Backend::Sealed).await; })*
        }
    };
}

for_each_backend!(
    only_the_verified_value_is_used,
    two_verified_values_are_anonymous,
    two_verified_values_are_anonymous_under_reject_too,
    other_cookies_in_any_bytes_leave_the_session,
    tossed_foreign_values_do_not_count,
    an_expired_value_beside_a_live_one_is_passed_over,
    an_ended_session_beside_a_live_one_is_passed_over,
    replay_after_logout,
);
