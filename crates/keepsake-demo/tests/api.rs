//! The demo's routes over real HTTP: the app is served in-process on
//! 127.0.0.1 (port 0) and driven with reqwest, once per store the demo
//! accepts (memory, cookie, sealed, SQLite, and Redis and PostgreSQL under a
//! fresh key prefix or schema per test when `KEEPSAKE_TEST_REDIS_URL` /
//! `KEEPSAKE_TEST_POSTGRES_URL` are set); and the real binary is started to
//! check the secret file and that sessions survive a restart.
//!
//! Cookies are not `Secure` here (`Config::secure = false`, the binary's
//! `--insecure-cookies`): reqwest's cookie store, unlike a browser, keeps no
//! `Secure` cookie from `http://127.0.0.1`.

use std::{
    fs::File,
    net::TcpListener as StdListener,
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use keepsake::{
    key::{Key, KeyRing},
    session::BadCookie,
};
use keepsake_demo::{AppError, Config, StoreKind};
use reqwest::{Client, Method, StatusCode, header};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// The demo app, served in-process on an ephemeral port.
struct Server {
    base: String,
    store: StoreKind,
}

impl Server {
    async fn start(store: StoreKind) -> Self {
        Self::start_with(store, |_| {}).await
    }

    async fn start_with(store: StoreKind, configure: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::new(store.clone(), KeyRing::new(Key::generate()));
        config.secure = false;
        configure(&mut config);
        let app = keepsake_demo::app(config).await.expect("the app builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self {
            base: format!("http://{addr}"),
            store,
        }
    }

    /// Whether sessions live on the server (memory, SQLite, Redis,
    /// PostgreSQL), so they can be listed and ended there.
    fn is_memory(&self) -> bool {
        !matches!(self.store, StoreKind::Cookie | StoreKind::Sealed)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with an explicit `Cookie` header (or none), through a
    /// client that keeps no cookies: for looking at every `Set-Cookie`.
    /// A `POST` (or a body) comes with `Content-Type: application/json`, as
    /// the page's script sends it.
    async fn raw(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        let json = method == Method::POST || body.is_some();
        let content_type = json.then_some((header::CONTENT_TYPE.as_str(), "application/json"));
        self.raw_with(method, path, cookie, content_type.as_slice(), body)
            .await
    }

    /// As [`Server::raw`], with exactly `headers` besides the cookie (no
    /// `Content-Type` unless it is one of them).
    async fn raw_with(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        headers: Headers<'_>,
        body: Option<&str>,
    ) -> Reply {
        let mut request = plain_client().request(method, self.url(path));
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body.to_owned());
        }
        Reply::from(request.send().await.expect("request")).await
    }

    /// A request through `browser`, which keeps cookies like a browser. A
    /// `POST` is JSON, body or not, as the page's script sends it.
    async fn via(
        &self,
        browser: &Client,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut request = browser.request(method.clone(), self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        } else if method == Method::POST {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        Reply::from(request.send().await.expect("request")).await
    }

    async fn get(&self, browser: &Client, path: &str) -> Reply {
        self.via(browser, Method::GET, path, None).await
    }

    async fn post(&self, browser: &Client, path: &str, body: Option<Value>) -> Reply {
        self.via(browser, Method::POST, path, body).await
    }

    async fn login(&self, browser: &Client, user: &str) -> Reply {
        let reply = self
            .post(browser, "/api/login", Some(json!({ "user": user })))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "login as {user}: {}",
            reply.text
        );
        reply
    }
}

/// Request headers, as `(name, value)` pairs.
type Headers<'a> = &'a [(&'a str, &'a str)];

/// A client that keeps cookies, as a browser does.
fn browser() -> Client {
    Client::builder()
        .cookie_store(true)
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// A client that keeps no cookies.
fn plain_client() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// A response, read whole.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: header::HeaderMap,
    text: String,
}

impl Reply {
    async fn from(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        Self {
            status,
            headers,
            text,
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {:?} {}", self.status, self.text))
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|value| value.to_str().expect("ASCII Set-Cookie").to_owned())
            .collect()
    }

    /// The whole `Set-Cookie` for cookie `name`, if one was sent.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|header| header.starts_with(&format!("{name}=")))
    }

    /// `name=value` from the `Set-Cookie` for `name`, ready for a `Cookie`
    /// header.
    fn cookie_pair(&self, name: &str) -> Option<String> {
        self.set_cookie(name)
            .map(|header| header.split(';').next().unwrap_or_default().to_owned())
    }

    /// Asserts a JSON error with `status`.
    fn assert_error(&self, status: StatusCode, what: &str) {
        assert_eq!(self.status, status, "{what}: {}", self.text);
        assert!(
            self.content_type().starts_with("application/json"),
            "{what}: content type {:?}",
            self.content_type()
        );
        let body = self.json();
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: no error message in {body}"
        );
    }
}

/// The text inside the element with `id` (up to the next `<`), if present.
fn element_text<'a>(html: &'a str, id: &str) -> Option<&'a str> {
    let start = html.find(&format!(r#"id="{id}""#))?;
    let open_end = start + html[start..].find('>')? + 1;
    let len = html[open_end..].find('<')?;
    Some(&html[open_end..open_end + len])
}

/// A free port on 127.0.0.1, found by binding port 0 and letting it go.
fn free_port() -> u16 {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

// ---------------------------------------------------------------------------
// Scenarios, run for every store (see `for_each_store!` at the bottom)
// ---------------------------------------------------------------------------

async fn session_json_shape_and_read_only(store: StoreKind) {
    let server = Server::start(store).await;

    // A first visit: a new, empty session, and no cookie for an untouched one.
    let first = server.raw(Method::GET, "/api/session", None, None).await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(first.content_type().starts_with("application/json"));
    assert_eq!(
        first.json(),
        json!({
            "new": true, "expired": false, "visits": 0, "user": null,
            "theme": "light", "idle_timeout": 1800
        })
    );
    assert!(first.set_cookies().is_empty(), "{:?}", first.set_cookies());

    // A visit makes the session.
    let visit = server.raw(Method::POST, "/api/visits", None, None).await;
    assert_eq!(visit.json(), json!({ "visits": 1 }));
    let cookie = visit
        .cookie_pair("session")
        .expect("a new session sets a cookie");

    // Reading it back changes nothing and sends no Set-Cookie, however often.
    for round in 0..3 {
        let read = server
            .raw(Method::GET, "/api/session", Some(&cookie), None)
            .await;
        assert_eq!(read.status, StatusCode::OK);
        let body = read.json();
        assert_eq!(body["new"], false, "round {round}");
        assert_eq!(body["visits"], 1, "round {round}");
        assert!(
            read.set_cookies().is_empty(),
            "GET /api/session must not write (round {round}): {:?}",
            read.set_cookies()
        );
    }
}

async fn visits_increment_across_requests(store: StoreKind) {
    let server = Server::start(store).await;
    let alice = browser();
    for expected in 1..=3 {
        let reply = server.post(&alice, "/api/visits", None).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.json(), json!({ "visits": expected }));
    }
    // The page counts as a visit and shows the count.
    let page = server.get(&alice, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(element_text(&page.text, "visits"), Some("4"));
    assert_eq!(server.get(&alice, "/api/session").await.json()["visits"], 4);

    // Another browser has its own session.
    let bob = browser();
    assert_eq!(
        server.post(&bob, "/api/visits", None).await.json()["visits"],
        1
    );
    assert_eq!(server.get(&alice, "/api/session").await.json()["visits"], 4);
}

/// Concurrent `POST /api/visits` with one cookie (tabs of one browser)
/// each count: the demo counts with `Session::update`. Client-side
/// sessions cannot promise this (the browser keeps the last cookie).
async fn concurrent_visits_lose_no_increment(store: StoreKind) {
    const POSTS: u64 = 50;
    let server = Server::start(store).await;
    if !server.is_memory() {
        eprintln!("skipping: client-side sessions keep whichever cookie comes last");
        return;
    }
    let first = server.raw(Method::POST, "/api/visits", None, None).await;
    let cookie = first.cookie_pair("session").expect("a session cookie");
    let url = server.url("/api/visits");
    let posts: Vec<_> = (0..POSTS)
        .map(|_| {
            let request = plain_client()
                .post(url.clone())
                .header(header::COOKIE, cookie.clone())
                .header(header::CONTENT_TYPE, "application/json");
            tokio::spawn(async move { request.send().await.expect("request").status() })
        })
        .collect();
    for post in posts {
        assert_eq!(post.await.expect("task"), StatusCode::OK);
    }
    let session = server
        .raw(Method::GET, "/api/session", Some(&cookie), None)
        .await;
    assert_eq!(session.json()["visits"], json!(1 + POSTS));
}

async fn page_has_the_expected_elements(store: StoreKind) {
    let server = Server::start(store).await;
    let alice = browser();

    let page = server.get(&alice, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.content_type().starts_with("text/html"),
        "{}",
        page.content_type()
    );
    let html = &page.text;
    assert!(html.contains(r#"<body data-theme="light" class="theme-light">"#));
    for id in [
        "visits",
        "user",
        "login-form",
        "login-name",
        "login-button",
        "theme-toggle",
        "cookie-panel",
        "expires-in",
    ] {
        assert!(
            html.contains(&format!(r#"id="{id}""#)),
            "logged out: no #{id}"
        );
    }
    for id in [
        "logout-button",
        "sessions",
        "logout-everywhere",
        "expired-notice",
    ] {
        assert!(
            !html.contains(&format!(r#"id="{id}""#)),
            "logged out: #{id} present"
        );
    }
    assert_eq!(element_text(html, "visits"), Some("1"));
    assert_eq!(element_text(html, "user"), Some(""));
    // No favicon request (it would 404), a word for visitors without
    // JavaScript, and a login form that posts (without JavaScript the name
    // stays out of the URL), with the server's length limit and the
    // browser's user-name autofill.
    assert!(html.contains(r#"<link rel="icon" href="data:,">"#));
    assert!(html.contains("<noscript>") && html.contains("needs JavaScript"));
    assert!(
        html.contains(r#"<form id="login-form" method="post" action="/api/login">"#),
        "the login form"
    );
    assert!(!html.contains(r#"autocomplete="off""#));
    assert!(html.contains(r#"autocomplete="username" maxlength="64""#));
    // The countdown: seconds left, with the deadline and the server's now.
    assert_eq!(element_text(html, "expires-in"), Some("1800"));
    assert!(html.contains("data-deadline=\"") && html.contains("data-now=\""));

    // Logged in: the name (escaped), the logout button and the sessions.
    let name = r#"<img src=x onerror="alert(1)">"#;
    server.login(&alice, name).await;
    let html = server.get(&alice, "/").await.text;
    assert!(!html.contains(name), "the user name must be escaped");
    assert_eq!(
        element_text(&html, "user"),
        Some("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;")
    );
    for id in ["logout-button", "sessions", "logout-everywhere"] {
        assert!(
            html.contains(&format!(r#"id="{id}""#)),
            "logged in: no #{id}"
        );
    }
    assert!(
        !html.contains(r#"id="login-form""#),
        "logged in: login form present"
    );
    if server.is_memory() {
        assert!(
            html.contains(r#"<li class="current""#),
            "the current session is marked"
        );
    }
}

/// Every answer, page, API or error, whether it sets the session cookie or
/// not: `Cache-Control: no-store` (never the session layer's bare
/// `private`, which lets a browser's back/forward cache show a logged-in
/// page after a logout), and the headers that keep the demo out of other
/// pages' frames (clickjacking) and its URLs out of other sites' logs.
async fn every_answer_is_no_store_and_unframeable(store: StoreKind) {
    let server = Server::start(store).await;
    let check = |what: &str, reply: &Reply| {
        let header = |name: &str| {
            let values: Vec<&str> = reply
                .headers
                .get_all(name)
                .iter()
                .map(|value| value.to_str().expect("ASCII"))
                .collect();
            values.join(" | ")
        };
        assert_eq!(header("cache-control"), "no-store", "{what}");
        assert_eq!(header("x-frame-options"), "DENY", "{what}");
        assert_eq!(header("referrer-policy"), "same-origin", "{what}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
        let policy = header("content-security-policy");
        for directive in [
            "default-src 'none'",
            "frame-ancestors 'none'",
            "connect-src 'self'",
            "form-action 'self'",
            "base-uri 'none'",
        ] {
            assert!(policy.contains(directive), "{what}: {policy}");
        }
    };

    // A first visit to the page makes the session and sets its cookie.
    let page = server.raw(Method::GET, "/", None, None).await;
    assert_eq!(page.status, StatusCode::OK);
    check("GET / that sets the cookie", &page);
    let mut cookie = page.cookie_pair("session").expect("a session cookie");
    let visit = server
        .raw(Method::POST, "/api/visits", Some(&cookie), None)
        .await;
    check("POST /api/visits", &visit);
    cookie = visit.cookie_pair("session").unwrap_or(cookie);
    let login = server
        .raw(
            Method::POST,
            "/api/login",
            Some(&cookie),
            Some(r#"{"user": "alice"}"#),
        )
        .await;
    assert!(
        login.set_cookie("session").is_some(),
        "login sets the cookie"
    );
    check("POST /api/login", &login);
    cookie = login.cookie_pair("session").expect("the new cookie");
    for path in ["/", "/api/session", "/api/devices", "/healthz"] {
        let reply = server.raw(Method::GET, path, Some(&cookie), None).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
        check(&format!("GET {path} logged in"), &reply);
    }
    let theme = server
        .raw(
            Method::POST,
            "/api/theme",
            None,
            Some(r#"{"theme": "dark"}"#),
        )
        .await;
    check("POST /api/theme", &theme);
    for (method, path, what) in [
        (Method::GET, "/nope", "404"),
        (Method::GET, "/api/login", "405"),
        (Method::GET, "/api/devices", "401"),
    ] {
        let reply = server.raw(method, path, None, None).await;
        assert!(reply.status.is_client_error(), "{what}");
        check(what, &reply);
    }
    let refused = server
        .raw_with(Method::POST, "/api/login", None, &[], Some("user=x"))
        .await;
    check("415", &refused);
    let logout = server
        .raw(Method::POST, "/api/logout", Some(&cookie), None)
        .await;
    assert!(
        logout.set_cookie("session").is_some(),
        "logout removes the cookie"
    );
    check("POST /api/logout", &logout);
}

async fn login_cycles_the_cookie(store: StoreKind) {
    let server = Server::start(store).await;
    let visit = server.raw(Method::POST, "/api/visits", None, None).await;
    let before = visit.cookie_pair("session").expect("session cookie");

    let login = server
        .raw(
            Method::POST,
            "/api/login",
            Some(&before),
            Some(r#"{"user": " alice "}"#),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    assert_eq!(
        login.json(),
        json!({ "user": "alice" }),
        "the name is trimmed"
    );
    let after = login
        .cookie_pair("session")
        .expect("login re-sends the cookie");
    assert_ne!(after, before, "login must change the cookie");

    // The new cookie: the same session (visits kept), now alice's.
    let now = server
        .raw(Method::GET, "/api/session", Some(&after), None)
        .await
        .json();
    assert_eq!(
        (now["user"].clone(), now["visits"].clone()),
        (json!("alice"), json!(1))
    );

    // The old cookie is not logged in. With a store its session is gone.
    let old = server
        .raw(Method::GET, "/api/session", Some(&before), None)
        .await
        .json();
    assert_eq!(old["user"], Value::Null, "replayed pre-login cookie");
    if server.is_memory() {
        assert_eq!(old["new"], true, "the pre-login session was deleted");
        assert_eq!(old["visits"], 0);
    }
}

async fn login_rejects_bad_input(store: StoreKind) {
    let server = Server::start(store).await;
    let long = "x".repeat(65);
    let long_body = json!({ "user": long }).to_string();
    let cases: [(&str, Option<&str>); 8] = [
        ("no body", None),
        ("not JSON", Some("user=alice")),
        ("empty object", Some("{}")),
        ("empty name", Some(r#"{"user": ""}"#)),
        ("blank name", Some(r#"{"user": "   "}"#)),
        ("not a string", Some(r#"{"user": 5}"#)),
        ("over 64 characters", Some(&long_body)),
        ("a JSON array", Some("[]")),
    ];
    for (what, body) in cases {
        let reply = server.raw(Method::POST, "/api/login", None, body).await;
        reply.assert_error(StatusCode::BAD_REQUEST, what);
        assert!(
            reply.set_cookies().is_empty(),
            "{what}: no session for a failed login"
        );
    }
    // 64 characters (not bytes) is fine.
    let name = "é".repeat(64);
    let reply = server
        .raw(
            Method::POST,
            "/api/login",
            None,
            Some(&json!({ "user": name }).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json()["user"], name.as_str());
}

async fn logout_removes_the_cookie(store: StoreKind) {
    let server = Server::start(store).await;
    let login = server
        .raw(
            Method::POST,
            "/api/login",
            None,
            Some(r#"{"user": "alice"}"#),
        )
        .await;
    let cookie = login.cookie_pair("session").expect("session cookie");

    let logout = server
        .raw(Method::POST, "/api/logout", Some(&cookie), None)
        .await;
    assert_eq!(logout.status, StatusCode::OK);
    assert_eq!(logout.json(), json!({ "user": null }));
    let removal = logout.set_cookie("session").expect("a removal Set-Cookie");
    assert!(removal.starts_with("session=;"), "{removal}");
    assert!(removal.contains("Max-Age=0"), "{removal}");

    if server.is_memory() {
        // The record is gone: the old cookie is worth nothing.
        let old = server
            .raw(Method::GET, "/api/session", Some(&cookie), None)
            .await
            .json();
        assert_eq!(
            (old["user"].clone(), old["new"].clone()),
            (Value::Null, json!(true))
        );
    }

    // A browser drops the cookie and is anonymous again.
    let alice = browser();
    server.login(&alice, "alice").await;
    server.post(&alice, "/api/logout", None).await;
    let now = server.get(&alice, "/api/session").await.json();
    assert_eq!(
        (now["user"].clone(), now["new"].clone()),
        (Value::Null, json!(true))
    );
}

async fn devices_need_login(store: StoreKind) {
    let server = Server::start(store).await;
    let alice = browser();
    server.get(&alice, "/").await;
    let reply = server.get(&alice, "/api/devices").await;
    reply.assert_error(StatusCode::UNAUTHORIZED, "devices when logged out");
    assert_eq!(reply.json(), json!({ "error": "not logged in" }));

    server.login(&alice, "alice").await;
    let reply = server.get(&alice, "/api/devices").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let sessions = reply.json()["sessions"]
        .as_array()
        .expect("sessions array")
        .clone();
    if !server.is_memory() {
        assert!(
            sessions.is_empty(),
            "client-side sessions are not listed: {sessions:?}"
        );
        return;
    }
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let device = &sessions[0];
    assert_eq!(device["current"], true);
    let hint = device["id_hint"].as_str().expect("id_hint");
    assert!(
        hint.len() == 8 && hint.bytes().all(|b| b.is_ascii_hexdigit()),
        "{hint}"
    );
    let created = device["created"].as_u64().expect("created");
    let last_seen = device["last_seen"].as_u64().expect("last_seen");
    assert!(last_seen >= created && created > 1_600_000_000, "{device}");
}

async fn logout_everywhere(store: StoreKind) {
    let server = Server::start(store).await;
    let one = browser();
    let reply = server.post(&one, "/api/logout-everywhere", None).await;
    reply.assert_error(
        StatusCode::UNAUTHORIZED,
        "logout-everywhere when logged out",
    );

    let two = browser();
    let bob = browser();
    server.login(&one, "alice").await;
    server.login(&two, "alice").await;
    server.login(&bob, "bob").await;

    if server.is_memory() {
        let sessions = server.get(&one, "/api/devices").await.json()["sessions"].clone();
        let sessions = sessions.as_array().expect("array");
        assert_eq!(sessions.len(), 2, "{sessions:?}");
        assert_eq!(
            sessions.iter().filter(|s| s["current"] == true).count(),
            1,
            "{sessions:?}"
        );
    }

    let reply = server.post(&one, "/api/logout-everywhere", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let body = reply.json();
    if server.is_memory() {
        assert_eq!(body, json!({ "revoked": 2 }));
    } else {
        // Only this session could be ended, and the answer says so.
        assert_eq!(body["revoked"], 1, "{body}");
        let note = body["note"].as_str().expect("a note");
        assert!(
            note.contains("keeps no list") && note.contains("only this session"),
            "{note}"
        );
    }
    // Either way this browser's cookie is removed.
    let removal = reply.set_cookie("session").expect("a removal Set-Cookie");
    assert!(
        removal.starts_with("session=;") && removal.contains("Max-Age=0"),
        "{removal}"
    );

    // This browser is logged out either way.
    assert_eq!(
        server.get(&one, "/api/session").await.json()["user"],
        Value::Null
    );
    if server.is_memory() {
        // The other browser too; bob is not affected.
        let other = server.get(&two, "/api/session").await.json();
        assert_eq!(
            (other["user"].clone(), other["new"].clone()),
            (Value::Null, json!(true))
        );
        assert_eq!(server.get(&bob, "/api/session").await.json()["user"], "bob");
    } else {
        // Client-side sessions cannot be ended from the server.
        assert_eq!(
            server.get(&two, "/api/session").await.json()["user"],
            "alice"
        );
    }
}

/// Every `POST` route refuses what another site's page can send: a form
/// (`text/plain`, urlencoded, multipart) or a request without a type gets a
/// JSON 415, and `Sec-Fetch-Site: cross-site` a JSON 403; either way the
/// handler never runs, so the session, its cookie and the theme are as
/// they were.
async fn cross_site_posts_change_nothing(store: StoreKind) {
    let server = Server::start(store).await;
    let login = server
        .raw(
            Method::POST,
            "/api/login",
            None,
            Some(r#"{"user": "alice"}"#),
        )
        .await;
    let cookie = login.cookie_pair("session").expect("session cookie");
    let json_type = (header::CONTENT_TYPE.as_str(), "application/json");
    let refused: [(&str, Headers<'_>, StatusCode); 8] = [
        ("no Content-Type", &[], StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (
            "a text/plain form",
            &[("content-type", "text/plain")],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "an urlencoded form",
            &[("content-type", "application/x-www-form-urlencoded")],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "a multipart form",
            &[("content-type", "multipart/form-data; boundary=x")],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "JSON only as a parameter",
            &[("content-type", "text/plain; type=application/json")],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "another JSON type",
            &[("content-type", "application/json-patch+json")],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "cross-site JSON",
            &[json_type, ("sec-fetch-site", "cross-site")],
            StatusCode::FORBIDDEN,
        ),
        (
            "a cross-site form",
            &[
                ("content-type", "text/plain"),
                ("sec-fetch-site", "cross-site"),
            ],
            StatusCode::FORBIDDEN,
        ),
    ];
    let routes = [
        ("/api/login", Some(r#"{"user": "mallory"}"#)),
        ("/api/theme", Some(r#"{"theme": "dark"}"#)),
        ("/api/visits", None),
        ("/api/logout", None),
        ("/api/logout-everywhere", None),
    ];
    for (path, body) in routes {
        for (what, headers, status) in refused {
            let what = format!("{what} to {path}");
            for cookie in [None, Some(cookie.as_str())] {
                let reply = server
                    .raw_with(Method::POST, path, cookie, headers, body)
                    .await;
                reply.assert_error(status, &what);
                assert!(
                    reply.set_cookies().is_empty(),
                    "{what}: {:?}",
                    reply.set_cookies()
                );
            }
        }
    }
    // Alice is still alice, with her one visit-free session, in light.
    let now = server
        .raw(Method::GET, "/api/session", Some(&cookie), None)
        .await
        .json();
    assert_eq!(
        (&now["user"], &now["visits"], &now["theme"]),
        (&json!("alice"), &json!(0), &json!("light")),
        "{now}"
    );

    // JSON with parameters, in any case, from the same origin or site or
    // typed in: accepted.
    let mut cookie = cookie;
    for (visits, content_type, fetch_site) in [
        (1, "application/json; charset=utf-8", None),
        (2, "Application/JSON", Some("same-origin")),
        (3, "application/json ; charset=UTF-8", Some("same-site")),
        (4, "application/json", Some("none")),
    ] {
        let mut headers = vec![(header::CONTENT_TYPE.as_str(), content_type)];
        headers.extend(fetch_site.map(|site| ("sec-fetch-site", site)));
        let reply = server
            .raw_with(Method::POST, "/api/visits", Some(&cookie), &headers, None)
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{content_type} {fetch_site:?}: {}",
            reply.text
        );
        assert_eq!(reply.json()["visits"], visits);
        // A client-side session is in the cookie, which each visit replaces.
        cookie = reply.cookie_pair("session").unwrap_or(cookie);
    }
    // Reading stays open to anyone: it changes nothing.
    let read = server
        .raw_with(
            Method::GET,
            "/api/session",
            Some(&cookie),
            &[("sec-fetch-site", "cross-site")],
            None,
        )
        .await;
    assert_eq!(read.json()["visits"], 4, "{}", read.text);
}

/// The login CSRF itself: another site's `<form enctype="text/plain">`
/// posting `{"user":"mallory"}` (a browser sends a top-level form post
/// without the victim's `SameSite=Lax` cookie, but keeps the cookie the
/// answer sets) no longer logs the visitor in as mallory.
async fn a_foreign_form_cannot_log_the_visitor_in(store: StoreKind) {
    let server = Server::start(store).await;
    let victim = browser();
    server.post(&victim, "/api/visits", None).await;
    // What `<input name='{"user":"mallory","x":"' value='"}'>` sends.
    let form = r#"{"user":"mallory","x":"="}"#;
    for headers in [
        &[("content-type", "text/plain")][..],
        &[
            ("content-type", "text/plain"),
            ("sec-fetch-site", "cross-site"),
        ],
    ] {
        let mut request = victim.post(server.url("/api/login")).body(form);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let reply = Reply::from(request.send().await.expect("request")).await;
        assert!(reply.status.is_client_error(), "{headers:?}: {reply:?}");
        assert!(reply.set_cookies().is_empty(), "{headers:?}: {reply:?}");
    }
    let now = server.get(&victim, "/api/session").await.json();
    assert_eq!((&now["user"], &now["visits"]), (&Value::Null, &json!(1)));
}

async fn theme_cookie(store: StoreKind) {
    let server = Server::start(store).await;
    let alice = browser();
    assert_eq!(
        server.get(&alice, "/api/session").await.json()["theme"],
        "light"
    );

    let reply = server
        .post(&alice, "/api/theme", Some(json!({ "theme": "dark" })))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json(), json!({ "theme": "dark" }));
    let header = reply.set_cookie("theme").expect("a theme Set-Cookie");
    assert!(header.starts_with("theme=s1."), "a signed value: {header}");
    assert!(header.contains("Max-Age=2592000"), "30 days: {header}");
    assert!(
        header.contains("HttpOnly") && header.contains("Path=/"),
        "{header}"
    );
    assert!(!header.contains("Secure"), "--insecure-cookies: {header}");

    // The value survives: the API and the page read it back.
    assert_eq!(
        server.get(&alice, "/api/session").await.json()["theme"],
        "dark"
    );
    let html = server.get(&alice, "/").await.text;
    assert!(html.contains(r#"<body data-theme="dark" class="theme-dark">"#));
    server
        .post(&alice, "/api/theme", Some(json!({ "theme": "light" })))
        .await;
    assert_eq!(
        server.get(&alice, "/api/session").await.json()["theme"],
        "light"
    );

    // Only light and dark, as JSON.
    for (what, body) in [
        ("unknown theme", Some(r#"{"theme": "blue"}"#)),
        ("missing theme", Some("{}")),
        ("not JSON", Some("dark")),
        ("no body", None),
    ] {
        let reply = server.raw(Method::POST, "/api/theme", None, body).await;
        reply.assert_error(StatusCode::BAD_REQUEST, what);
        assert!(reply.set_cookie("theme").is_none(), "{what}");
    }

    // A cookie that does not verify reads as the default.
    let forged = server
        .raw(
            Method::GET,
            "/api/session",
            Some("theme=s1.AAAA.forged"),
            None,
        )
        .await;
    assert_eq!(forged.json()["theme"], "light");
    let pair = reply_pair(&server, "dark").await;
    let tampered = pair.replace("theme=s1.", "theme=s1.A");
    let reply = server
        .raw(Method::GET, "/api/session", Some(&tampered), None)
        .await;
    assert_eq!(reply.json()["theme"], "light");
    let reply = server
        .raw(Method::GET, "/api/session", Some(&pair), None)
        .await;
    assert_eq!(reply.json()["theme"], "dark");
}

/// `theme=...` for `theme`, from a fresh `POST /api/theme`.
async fn reply_pair(server: &Server, theme: &str) -> String {
    let body = json!({ "theme": theme }).to_string();
    server
        .raw(Method::POST, "/api/theme", None, Some(&body))
        .await
        .cookie_pair("theme")
        .expect("theme cookie")
}

async fn unknown_routes_are_json_404(store: StoreKind) {
    let server = Server::start(store).await;
    for path in ["/nope", "/api", "/api/nope", "/healthz/x"] {
        let reply = server.raw(Method::GET, path, None, None).await;
        reply.assert_error(StatusCode::NOT_FOUND, path);
    }
    // A known route with the wrong method: JSON too.
    let reply = server.raw(Method::POST, "/api/session", None, None).await;
    reply.assert_error(StatusCode::METHOD_NOT_ALLOWED, "POST /api/session");
    let reply = server.raw(Method::GET, "/api/login", None, None).await;
    reply.assert_error(StatusCode::METHOD_NOT_ALLOWED, "GET /api/login");
}

async fn healthz(store: StoreKind) {
    let server = Server::start(store).await;
    let reply = server.raw(Method::GET, "/healthz", None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), json!({ "status": "ok" }));
    assert!(reply.set_cookies().is_empty());
}

async fn cookies_are_secure_by_default(store: StoreKind) {
    let server = Server::start_with(store, |config| config.secure = true).await;
    let visit = server.raw(Method::POST, "/api/visits", None, None).await;
    let header = visit.set_cookie("session").expect("session cookie");
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(header.contains(attribute), "{attribute}: {header}");
    }
    assert!(
        !header.contains("Max-Age"),
        "a browser-session cookie: {header}"
    );
    let theme = server
        .raw(
            Method::POST,
            "/api/theme",
            None,
            Some(r#"{"theme": "dark"}"#),
        )
        .await;
    let header = theme.set_cookie("theme").expect("theme cookie");
    assert!(header.contains("Secure"), "{header}");
    let html = server.raw(Method::GET, "/", None, None).await.text;
    assert!(
        html.contains("<dt>Secure</dt><dd>yes</dd>"),
        "the cookie panel says Secure"
    );
}

async fn settings_reach_the_cookie(store: StoreKind) {
    let server = Server::start_with(store, |config| {
        config.cookie_name = "sid".to_owned();
        config.idle_timeout = 600;
        config.max_age = Some(3_600);
    })
    .await;
    let visit = server.raw(Method::POST, "/api/visits", None, None).await;
    let header = visit.set_cookie("sid").expect("cookie named sid");
    let max_age: u64 = header
        .split("; ")
        .find_map(|part| part.strip_prefix("Max-Age="))
        .expect("--max-age makes the cookie persistent")
        .parse()
        .expect("a number");
    // Server-side: the absolute lifetime; client-side: the session's own
    // deadline (the idle one).
    assert!((590..=3_600).contains(&max_age), "{header}");
    let cookie = visit.cookie_pair("sid").expect("sid");
    let body = server
        .raw(Method::GET, "/api/session", Some(&cookie), None)
        .await
        .json();
    assert_eq!(
        (body["idle_timeout"].clone(), body["visits"].clone()),
        (json!(600), json!(1))
    );
    let html = server.raw(Method::GET, "/", Some(&cookie), None).await.text;
    assert!(html.contains(r#"<code id="cookie-name">sid</code>"#));
    assert!(html.contains("persistent"), "the panel says persistent");
    assert_eq!(element_text(&html, "expires-in"), Some("600"));
}

async fn bad_cookie_policy(store: StoreKind) {
    // Ignored by default: a fresh session.
    let server = Server::start(store.clone()).await;
    let reply = server
        .raw(
            Method::GET,
            "/api/session",
            Some("session=s1.garbage.value"),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["new"], true);

    // Rejected with --bad-cookie reject, as JSON.
    let server = Server::start_with(store, |config| config.bad_cookie = BadCookie::Reject).await;
    let reply = server
        .raw(
            Method::GET,
            "/api/session",
            Some("session=s1.garbage.value"),
            None,
        )
        .await;
    reply.assert_error(StatusCode::BAD_REQUEST, "a rejected cookie");
    let good = server.raw(Method::POST, "/api/visits", None, None).await;
    let cookie = good.cookie_pair("session").expect("cookie");
    let reply = server
        .raw(Method::GET, "/api/session", Some(&cookie), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

async fn expired_session_is_reported(store: StoreKind) {
    let server = Server::start_with(store, |config| config.idle_timeout = 1).await;
    let visit = server.raw(Method::POST, "/api/visits", None, None).await;
    let cookie = visit.cookie_pair("session").expect("cookie");
    tokio::time::sleep(Duration::from_millis(2_100)).await;

    let body = server
        .raw(Method::GET, "/api/session", Some(&cookie), None)
        .await
        .json();
    assert_eq!(
        (body["expired"].clone(), body["new"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(body["visits"], 0);
    let page = server.raw(Method::GET, "/", Some(&cookie), None).await;
    assert_eq!(
        element_text(&page.text, "expired-notice"),
        Some("your session expired")
    );
    assert_eq!(
        element_text(&page.text, "visits"),
        Some("1"),
        "a new session starts"
    );
}

macro_rules! for_each_store {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test] async fn $test() { super::$test(keepsake_demo::StoreKind::Memory).await; })*
        }
        mod cookie {
            $(#[tokio::test] async fn $test() { super::$test(keepsake_demo::StoreKind::Cookie).await; })*
        }
        mod sealed {
            $(#[tokio::test] async fn $test() { super::$test(keepsake_demo::StoreKind::Sealed).await; })*
        }
        mod sqlite {
            $(#[tokio::test] async fn $test() {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("sessions.db").display());
                super::$test(keepsake_demo::StoreKind::Sqlite(url)).await;
            })*
        }
        mod redis {
            $(#[tokio::test] async fn $test() {
                let Some(server) = super::Scratch::redis() else { return };
                super::$test(keepsake_demo::StoreKind::Redis(server.url.clone())).await;
            })*
        }
        mod postgres {
            $(#[tokio::test] async fn $test() {
                let Some(server) = super::Scratch::postgres() else { return };
                super::$test(keepsake_demo::StoreKind::Postgres(server.url.clone())).await;
            })*
        }
    };
}

/// A Redis key prefix or PostgreSQL schema of its own for one test, from
/// `KEEPSAKE_TEST_REDIS_URL` / `KEEPSAKE_TEST_POSTGRES_URL`, emptied (the
/// prefix) or dropped (the schema) when the test ends, passed or not.
struct Scratch {
    /// The store URL, with `?prefix=` or `?schema=`.
    url: String,
    /// The server's URL, for a PostgreSQL cleanup.
    postgres: Option<(String, String)>,
}

impl Scratch {
    /// The server URL in `var`; `None` (with a note) to skip, a panic under
    /// CI.
    fn server(var: &str) -> Option<String> {
        match std::env::var(var).ok().filter(|url| !url.is_empty()) {
            Some(url) => Some(url),
            None if std::env::var_os("CI").is_some() => panic!("{var} must be set under CI"),
            None => {
                eprintln!("skipping: {var} is not set");
                None
            }
        }
    }

    /// 16 random hex digits.
    fn tag() -> String {
        keepsake::store::Id::random().as_bytes()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn redis() -> Option<Self> {
        let base = Self::server("KEEPSAKE_TEST_REDIS_URL")?;
        Some(Self {
            url: format!("{base}?prefix=keepsake-demo-test-{}:", Self::tag()),
            postgres: None,
        })
    }

    fn postgres() -> Option<Self> {
        let base = Self::server("KEEPSAKE_TEST_POSTGRES_URL")?;
        let schema = format!("keepsake_demo_test_{}", Self::tag());
        Some(Self {
            url: format!("{base}?schema={schema}"),
            postgres: Some((base, schema)),
        })
    }

    /// Deletes what the test left: every key under the prefix, or the
    /// schema.
    async fn clean(url: String, postgres: Option<(String, String)>) {
        use keepsake::store::{AnyStore, SessionStore as _, StoreAdmin as _};

        if let Some((base, schema)) = postgres {
            let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
                .await
                .expect("connect to drop the test schema");
            tokio::spawn(connection);
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .await
                .expect("drop the test schema");
            return;
        }
        let store = AnyStore::open(&url).await.expect("open the test store");
        // Every session has expired by the end of time; the second pass
        // tidies user sets seen before their sessions went.
        for _ in 0..2 {
            store.purge_expired(u64::MAX).await.expect("purge");
        }
        assert_eq!(store.count(0).await.expect("count").total, 0);
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let (url, postgres) = (self.url.clone(), self.postgres.take());
        // On a thread of its own, since the test's runtime may be gone (or
        // unwinding).
        let cleaned = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(Self::clean(url, postgres));
        })
        .join();
        if cleaned.is_err() && !std::thread::panicking() {
            panic!("cleaning up the test's Redis prefix or PostgreSQL schema failed");
        }
    }
}

for_each_store!(
    session_json_shape_and_read_only,
    visits_increment_across_requests,
    concurrent_visits_lose_no_increment,
    page_has_the_expected_elements,
    every_answer_is_no_store_and_unframeable,
    login_cycles_the_cookie,
    login_rejects_bad_input,
    logout_removes_the_cookie,
    devices_need_login,
    logout_everywhere,
    cross_site_posts_change_nothing,
    a_foreign_form_cannot_log_the_visitor_in,
    theme_cookie,
    unknown_routes_are_json_404,
    healthz,
    cookies_are_secure_by_default,
    settings_reach_the_cookie,
    bad_cookie_policy,
    expired_session_is_reported,
);

// ---------------------------------------------------------------------------
// One store is enough
// ---------------------------------------------------------------------------

/// `'sha256-...'` for an inline script or style whose content is `text`.
fn csp_source(text: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64_simd::STANDARD.encode_to_string(digest)
    )
}

/// The content of the one `<tag>` element in `html`.
fn inline<'a>(html: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = html.find(&open).expect("the opening tag") + open.len();
    let len = html[start..]
        .find(&format!("</{tag}>"))
        .expect("the closing tag");
    assert_eq!(html.matches(&open).count(), 1, "one <{tag}>");
    &html[start..start + len]
}

/// The policy allows exactly the inline script and style the pages carry
/// (logged out, logged in, and the error page), by their hashes, and no
/// other script at all.
#[tokio::test]
async fn the_policy_allows_exactly_the_pages_inline_code() {
    let server = Server::start(StoreKind::Memory).await;
    let alice = browser();
    let page = server.get(&alice, "/").await;
    let policy = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .expect("ASCII")
        .to_owned();
    let directive = |name: &str| {
        policy
            .split(';')
            .map(str::trim)
            .find_map(|directive| directive.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {policy}"))
            .to_owned()
    };
    let script_src = directive("script-src");
    let style_src: Vec<String> = directive("style-src")
        .split(' ')
        .map(str::to_owned)
        .collect();
    assert_eq!(script_src, csp_source(inline(&page.text, "script")));
    assert!(style_src.contains(&csp_source(inline(&page.text, "style"))));

    server.login(&alice, "alice").await;
    let logged_in = server.get(&alice, "/").await.text;
    assert_eq!(script_src, csp_source(inline(&logged_in, "script")));
    assert!(style_src.contains(&csp_source(inline(&logged_in, "style"))));

    let error = server
        .raw_with(Method::GET, "/nope", None, &[("accept", "text/html")], None)
        .await;
    assert!(error.content_type().starts_with("text/html"));
    assert!(style_src.contains(&csp_source(inline(&error.text, "style"))));
    assert!(!error.text.contains("<script"), "{}", error.text);
    assert_eq!(style_src.len(), 2, "{policy}");
}

/// What a browser navigating to an error (or posting the login form
/// without JavaScript) sees: a small HTML page with the message; scripts
/// and API clients (JSON, `*/*` or no `Accept`) keep the JSON.
#[tokio::test]
async fn errors_are_pages_for_browsers_and_json_for_scripts() {
    const NAVIGATION: &str =
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
    let server = Server::start_with(StoreKind::Memory, |config| {
        config.bad_cookie = BadCookie::Reject;
    })
    .await;
    let html = [("accept", NAVIGATION)];
    let form = [
        ("accept", NAVIGATION),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let bad_cookie = [
        ("accept", NAVIGATION),
        ("cookie", "session=s1.garbage.value"),
    ];
    // The requests, and the status and message each gets.
    let cases: [(Method, &str, Headers<'_>, Option<&str>); 5] = [
        (Method::GET, "/nope", &html, None),
        (Method::GET, "/api/devices", &html, None),
        (Method::GET, "/api/login", &html, None),
        (Method::GET, "/", &bad_cookie, None),
        // The login form, posted by a browser without JavaScript.
        (Method::POST, "/api/login", &form, Some("user=nojs")),
    ];
    let expected = [
        (StatusCode::NOT_FOUND, "not found"),
        (StatusCode::UNAUTHORIZED, "not logged in"),
        (StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        (StatusCode::BAD_REQUEST, "bad cookie"),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "application/json"),
    ];
    for ((method, path, headers, body), (status, message)) in cases.into_iter().zip(expected) {
        let what = format!("{method} {path}");
        let reply = server
            .raw_with(method.clone(), path, None, headers, body)
            .await;
        assert_eq!(reply.status, status, "{what}: {}", reply.text);
        assert_eq!(reply.content_type(), "text/html; charset=utf-8", "{what}");
        let title = format!(
            "<h1>{} {}</h1>",
            status.as_u16(),
            status.canonical_reason().expect("a reason")
        );
        assert!(reply.text.contains(&title), "{what}: {}", reply.text);
        let shown = element_text(&reply.text, "error-message").expect("the message");
        assert!(shown.contains(message), "{what}: {shown:?}");
        assert!(
            reply.headers.get_all(header::VARY).iter().any(|value| value
                .to_str()
                .is_ok_and(|v| v.eq_ignore_ascii_case("accept"))),
            "{what}: Vary: Accept"
        );
        if method == Method::POST {
            assert!(reply.set_cookies().is_empty(), "{what}: no session");
        }
        // The same request from a script is answered with JSON.
        for accept in [None, Some("*/*"), Some("application/json")] {
            let mut headers: Vec<(&str, &str)> = headers
                .iter()
                .copied()
                .filter(|(name, _)| *name != "accept")
                .collect();
            headers.extend(accept.map(|accept| ("accept", accept)));
            let reply = server
                .raw_with(method.clone(), path, None, &headers, body)
                .await;
            reply.assert_error(status, &format!("{what} with Accept {accept:?}"));
        }
    }
}

/// `/healthz` writes, as every new session does: while another process
/// holds the SQLite file's write lock it answers 503, as the pages do
/// (reading alone would still work), and 200 again once the lock is gone.
#[tokio::test]
async fn healthz_fails_while_the_sqlite_file_is_write_locked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sessions.db");
    let server = Server::start(StoreKind::Sqlite(format!("sqlite://{}", path.display()))).await;
    let health = server.raw(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.text);
    // The probe leaves nothing behind.
    let lock = rusqlite::Connection::open(&path).expect("open the database");
    let left: i64 = lock
        .query_row("SELECT count(*) FROM sessions", [], |row| row.get(0))
        .expect("count the sessions");
    assert_eq!(left, 0, "probe records left in the store");

    let visit = server.raw(Method::POST, "/api/visits", None, None).await;
    let cookie = visit.cookie_pair("session").expect("a session cookie");

    lock.execute_batch("BEGIN EXCLUSIVE")
        .expect("take the write lock");
    // Reading a session still works: a probe that only read would say ok.
    let read = server
        .raw(Method::GET, "/api/session", Some(&cookie), None)
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    assert_eq!(read.json()["visits"], 1, "{}", read.text);
    let health = server.raw(Method::GET, "/healthz", None, None).await;
    health.assert_error(StatusCode::SERVICE_UNAVAILABLE, "healthz while locked");
    assert_eq!(health.headers[header::RETRY_AFTER], "1");
    let message = health.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !message.contains("sqlite")
            && !message.contains("lock")
            && !message.contains("sessions.db"),
        "no internals in {message:?}"
    );
    let page = server.raw(Method::GET, "/", None, None).await;
    page.assert_error(StatusCode::SERVICE_UNAVAILABLE, "the page while locked");

    lock.execute_batch("COMMIT").expect("release the lock");
    drop(lock);
    let health = server.raw(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.text);
}

// ---------------------------------------------------------------------------
// Stores that do not exist yet
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_store_that_cannot_be_opened_is_an_error() {
    let store = StoreKind::Sqlite("sqlite:///nonexistent-dir/for/sure/x.db".into());
    let config = Config::new(store, KeyRing::new(Key::generate()));
    let err = keepsake_demo::app(config)
        .await
        .expect_err("no such directory");
    assert!(matches!(err, AppError::Store(..)), "{err}");
    assert!(
        err.to_string()
            .starts_with("cannot open the sqlite store: "),
        "{err}"
    );
    assert!("mysql://x".parse::<StoreKind>().is_err());
}

// ---------------------------------------------------------------------------
// The real binary
// ---------------------------------------------------------------------------

/// The demo binary as a child process, killed (by its PID) when dropped.
struct Demo {
    child: Child,
    base: String,
}

impl Demo {
    /// Starts the binary in `dir` on a free port and waits (at most 10 s)
    /// until `/healthz` answers.
    async fn start(dir: &Path, run: u32, extra: &[&str]) -> Self {
        Self::start_with_env(dir, run, extra, &[]).await
    }

    /// [`Demo::start`] with these environment variables set (the keys'
    /// are removed otherwise).
    async fn start_with_env(dir: &Path, run: u32, extra: &[&str], env: &[(&str, String)]) -> Self {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let stdout = File::create(dir.join(format!("stdout.{run}"))).expect("stdout file");
        let stderr = File::create(dir.join(format!("stderr.{run}"))).expect("stderr file");
        let child = Command::new(env!("CARGO_BIN_EXE_keepsake-demo"))
            .args(["--addr", &addr, "--insecure-cookies"])
            .args(extra)
            .current_dir(dir)
            .env_remove("KEEPSAKE_SECRET")
            .env_remove("KEEPSAKE_SECRET_FALLBACKS")
            .envs(env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start keepsake-demo");
        let mut demo = Self {
            child,
            base: format!("http://{addr}"),
        };
        let client = plain_client();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = demo.child.try_wait().expect("child status") {
                let err =
                    std::fs::read_to_string(dir.join(format!("stderr.{run}"))).unwrap_or_default();
                panic!("keepsake-demo exited early with {status}: {err}");
            }
            let url = format!("{}/healthz", demo.base);
            if let Ok(response) = client.get(&url).send().await
                && response.status() == StatusCode::OK
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "keepsake-demo did not answer within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        demo
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn binary_keeps_its_secret_across_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("keepsake-demo.secret");
    let alice = browser();

    let mut demo = Demo::start(dir.path(), 1, &["--store", "cookie"]).await;
    let mode = std::fs::metadata(&secret)
        .expect("the secret file exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "secret file mode {mode:o}");
    let written = std::fs::read_to_string(&secret).expect("read the secret");
    assert!(Key::from_base64(written.trim()).is_ok(), "a valid secret");

    let url = |path: &str| format!("{}{path}", demo.base);
    let login = alice
        .post(url("/api/login"))
        .json(&json!({ "user": "alice" }))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::OK);
    for _ in 0..2 {
        alice
            .post(url("/api/visits"))
            .header(header::CONTENT_TYPE, "application/json")
            .send()
            .await
            .expect("visit");
    }
    alice
        .post(url("/api/theme"))
        .json(&json!({ "theme": "dark" }))
        .send()
        .await
        .expect("theme");
    demo.stop();
    drop(demo);

    let out = std::fs::read_to_string(dir.path().join("stdout.1")).expect("stdout");
    let err = std::fs::read_to_string(dir.path().join("stderr.1")).expect("stderr");
    assert!(out.contains("keepsake demo on http://127.0.0.1:"), "{out}");
    assert!(out.contains("(store: cookie)"), "{out}");
    assert!(
        err.contains("generated a new secret in ./keepsake-demo.secret"),
        "{err}"
    );

    // Restarted (on another port: cookies do not care about ports), it uses
    // the same secret, so the cookie from before the restart still verifies.
    let demo = Demo::start(dir.path(), 2, &["--store", "cookie"]).await;
    let body: Value = alice
        .get(format!("{}/api/session", demo.base))
        .send()
        .await
        .expect("session")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["user"], "alice", "{body}");
    assert_eq!(body["visits"], 2, "{body}");
    assert_eq!(body["new"], false, "{body}");
    assert_eq!(body["theme"], "dark", "{body}");
    drop(demo);
    let err = std::fs::read_to_string(dir.path().join("stderr.2")).expect("stderr");
    assert!(
        err.contains("using the secret in ./keepsake-demo.secret"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&secret).expect("secret"),
        written,
        "unchanged"
    );
}

#[tokio::test]
async fn binary_uses_secret_file_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(
        dir.path(),
        1,
        &["--secret-file", "custom.key", "--store", "sealed"],
    )
    .await;
    drop(demo);
    assert!(dir.path().join("custom.key").exists());
    assert!(!dir.path().join("keepsake-demo.secret").exists());
    let err = std::fs::read_to_string(dir.path().join("stderr.1")).expect("stderr");
    assert!(
        err.contains("generated a new secret in ./custom.key"),
        "{err}"
    );
}

#[tokio::test]
async fn binary_default_store_keeps_sessions_across_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let alice = browser();
    let mut demo = Demo::start(dir.path(), 1, &[]).await;
    let login = alice
        .post(format!("{}/api/login", demo.base))
        .json(&json!({ "user": "alice" }))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::OK);
    alice
        .post(format!("{}/api/visits", demo.base))
        .header(header::CONTENT_TYPE, "application/json")
        .send()
        .await
        .expect("visit");
    demo.stop();
    drop(demo);
    let out = std::fs::read_to_string(dir.path().join("stdout.1")).expect("stdout");
    assert!(out.contains("(store: sqlite)"), "{out}");
    assert!(
        dir.path().join("keepsake-demo.db").exists(),
        "the database beside the secret"
    );
    assert!(dir.path().join("keepsake-demo.secret").exists());

    // Restarted, the same database and secret: the visitor is still logged in.
    let demo = Demo::start(dir.path(), 2, &[]).await;
    let body: Value = alice
        .get(format!("{}/api/session", demo.base))
        .send()
        .await
        .expect("session")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["user"], "alice", "{body}");
    assert_eq!(body["visits"], 1, "{body}");
    assert_eq!(body["new"], false, "{body}");
}

/// A key rotation on the running demo, as docs/ROTATION.md describes it:
/// restarted with a new `KEEPSAKE_SECRET` and the old one in
/// `KEEPSAKE_SECRET_FALLBACKS`, the visitor stays logged in, and the
/// session cookie is issued again under the new key.
#[tokio::test]
async fn binary_rotates_keys_without_logging_anyone_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (old, new) = (Key::generate(), Key::generate());
    let alice = browser();
    let secret = |key: &Key| vec![("KEEPSAKE_SECRET", key.to_base64())];
    let mut demo = Demo::start_with_env(dir.path(), 1, &[], &secret(&old)).await;
    let login = alice
        .post(format!("{}/api/login", demo.base))
        .json(&json!({ "user": "alice" }))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::OK);
    demo.stop();
    drop(demo);

    let mut rotated = secret(&new);
    rotated.push(("KEEPSAKE_SECRET_FALLBACKS", old.to_base64()));
    let demo = Demo::start_with_env(dir.path(), 2, &[], &rotated).await;
    let session = alice
        .get(format!("{}/api/session", demo.base))
        .send()
        .await
        .expect("session");
    let reissued = session
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|value| value.to_str().is_ok_and(|v| v.starts_with("session=")));
    let body: Value = session.json().await.expect("JSON");
    assert_eq!(body["user"], "alice", "{body}");
    assert!(reissued, "the cookie is issued again under the new key");
    let err = std::fs::read_to_string(dir.path().join("stderr.2")).expect("stderr");
    assert!(
        err.contains(
            "using the secret in KEEPSAKE_SECRET, and 1 fallback key from KEEPSAKE_SECRET_FALLBACKS"
        ),
        "{err}"
    );
}

#[test]
fn binary_names_the_variable_of_a_malformed_fallback_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fallbacks = format!("{},abc", Key::generate().to_base64());
    let output = Command::new(env!("CARGO_BIN_EXE_keepsake-demo"))
        .args(["--store", "memory", "--addr", "127.0.0.1:0"])
        .env("KEEPSAKE_SECRET", Key::generate().to_base64())
        .env("KEEPSAKE_SECRET_FALLBACKS", fallbacks)
        .current_dir(dir.path())
        .output()
        .expect("run keepsake-demo");
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.starts_with(
            "error: key 2 in the environment variable KEEPSAKE_SECRET_FALLBACKS is not a valid \
             secret: the secret is 2 bytes"
        ),
        "{err}"
    );
}

#[test]
fn binary_names_the_variable_of_a_malformed_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_keepsake-demo"))
        .args(["--store", "memory", "--addr", "127.0.0.1:0"])
        .env("KEEPSAKE_SECRET", "abc")
        .current_dir(dir.path())
        .output()
        .expect("run keepsake-demo");
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.starts_with(
            "error: the environment variable KEEPSAKE_SECRET does not hold a valid secret: \
             the secret is 2 bytes"
        ),
        "{err}"
    );
    assert!(
        !dir.path().join("keepsake-demo.secret").exists(),
        "no secret file when KEEPSAKE_SECRET is set"
    );
}

/// Exit code 2, and the refusal never repeats a password given in the URL
/// (clap's own message for a value it could not parse would).
#[test]
fn binary_refuses_unknown_stores_with_exit_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    for store in [
        "mongodb://x",
        "mongodb://app:hunter2@127.0.0.1/db",
        "redis://:hunter2@127.0.0.1:6379/9?prefix=%zz",
        "postgres://app:hunter2@127.0.0.1/test?schema=",
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_keepsake-demo"))
            .args(["--store", store])
            .current_dir(dir.path())
            .output()
            .expect("run keepsake-demo");
        assert_eq!(output.status.code(), Some(2), "{store}");
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(
            err.starts_with("error: invalid value for '--store <URL>': "),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }
}
