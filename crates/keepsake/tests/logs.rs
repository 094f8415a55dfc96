//! Log hygiene: every `tracing` event of the main session flows, captured at
//! TRACE level from every crate (keepsake, hyper, axum, reqwest), holds no
//! session id, no key material and no cookie value.
//!
//! The flows run over real HTTP for server-side sessions (in a store that
//! can be told to fail or hang), and signed and sealed client-side sessions:
//! new session, read, write, login (`cycle_id`), bad cookie, tampered
//! cookie, expired session, key rotation (a fallback key's cookie is
//! re-issued), a failing handler, a stored value read as the wrong type, a
//! route without the layer, a store error and a store timeout (503),
//! logout. Every id, secret and cookie value seen is then looked for in the
//! captured text, whole and in pieces.

#[allow(dead_code)] // each test file uses part of the shared harness
mod common;

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, routing::get};
use common::{Backend, CountingStore, Mode, T0, app, tamper};
use keepsake::{
    codec::{self, Format},
    key::{Key, KeyRing},
    middleware::SessionLayer,
    session::{ManualClock, Session, SessionError},
};

/// A session value that must never reach a log line, not even quoted in
/// serde's message when it is read back as the wrong type.
const STORED_SECRET: &str = "a stored value that must stay out of the logs";

/// Stores [`STORED_SECRET`] under `secret`.
async fn put_secret(session: Session) -> Result<&'static str, SessionError> {
    session.insert("secret", STORED_SECRET).await?;
    Ok("stored")
}

/// Reads `secret` as a number: a `SessionError::Json` (a 500) whose serde
/// message quotes the stored string.
async fn secret_as_number(session: Session) -> Result<String, SessionError> {
    Ok(format!("{:?}", session.get::<u64>("secret").await?))
}

/// Says whether the request has a session, without requiring one.
async fn optional(session: Option<Session>) -> &'static str {
    if session.is_some() { "some" } else { "none" }
}

/// Requires a session: on a route without the layer, a logged 500.
async fn required(session: Session) -> Result<String, SessionError> {
    Ok(session.len().await?.to_string())
}

/// Routes under the layer, for these flows.
fn layered_routes() -> Router {
    Router::new()
        .route("/put-secret", get(put_secret))
        .route("/secret-as-number", get(secret_as_number))
        .route("/optional", get(optional))
}

/// Routes added after the layer, so without it.
fn unlayered_routes() -> Router {
    Router::new()
        .route("/no-layer/required", get(required))
        .route("/no-layer/optional", get(optional))
}

/// Where the subscriber writes: one buffer for the whole test binary.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// A subscriber that writes every event up to `level`, with its
    /// target, into this buffer.
    fn subscriber(&self, level: tracing::Level) -> impl tracing::Subscriber + Send + Sync {
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_target(true)
            .with_writer(move || writer.clone())
            .finish()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

/// What must never be logged.
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, what: &str, text: impl Into<String>) {
        let text = text.into();
        if text.len() >= 8 {
            self.0.push((what.to_owned(), text));
        }
    }

    /// Raw bytes in the spellings a careless log line would use.
    fn add_bytes(&mut self, what: &str, bytes: &[u8]) {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.add(what, hex.to_uppercase());
        self.add(what, hex);
        self.add(what, base64_simd::STANDARD.encode_to_string(bytes));
        self.add(what, base64_simd::URL_SAFE_NO_PAD.encode_to_string(bytes));
        self.add(what, format!("{bytes:?}")); // `[1, 2, 3]`
    }

    /// A cookie value, and each of its segments of 16 characters or more
    /// (a signature or payload logged alone is a leak too).
    fn add_cookie(&mut self, value: &str) {
        self.add("cookie value", value);
        for segment in value.split('.').filter(|s| s.len() >= 16) {
            self.add("cookie value segment", segment);
        }
        if let Some(payload) = codec::inspect(value)
            .ok()
            .and_then(|seen| seen.payload().map(<[u8]>::to_vec))
            && payload.len() == 16
        {
            self.add_bytes("session id (from cookie)", &payload);
        }
    }
}

/// A server for `backend` with the given ring, on 127.0.0.1.
struct App {
    base: String,
    http: reqwest::Client,
    clock: ManualClock,
    store: CountingStore,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl App {
    async fn start(backend: Backend, ring: KeyRing, store: CountingStore) -> Self {
        let clock = ManualClock::new(T0);
        let builder = match backend {
            Backend::Memory => SessionLayer::with_store(store.clone(), ring),
            Backend::Signed => SessionLayer::with_cookies(Format::Signed, ring),
            Backend::Sealed => SessionLayer::with_cookies(Format::Sealed, ring),
        };
        let layer = builder
            .secure(false)
            .clock(clock.clone())
            .store_timeout(Duration::from_millis(200))
            .build()
            .expect("layer");
        let router = app()
            .merge(layered_routes())
            .layer(layer)
            .merge(unlayered_routes());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("serve");
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        Self {
            base,
            http,
            clock,
            store,
            task,
        }
    }

    /// GET `path` with `Cookie: session=<cookie>`; status, body and the new
    /// session cookie value, if any. Every value sent or received is added
    /// to `secrets`.
    async fn get(
        &self,
        path: &str,
        cookie: Option<&str>,
        secrets: &mut Secrets,
    ) -> (u16, String, Option<String>) {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(cookie) = cookie {
            secrets.add_cookie(cookie);
            request = request.header("cookie", format!("session={cookie}"));
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let set = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("session="))
            .map(|v| v.split(';').next().unwrap_or("").to_owned())
            .filter(|v| !v.is_empty());
        if let Some(value) = &set {
            secrets.add_cookie(value);
        }
        let body = response.text().await.expect("body");
        if path == "/id" && status == 200 {
            secrets.add("session id", body.clone());
            if let Ok(id) = body.parse::<keepsake::store::Id>() {
                secrets.add_bytes("session id", id.as_bytes());
            }
        }
        (status, body, set)
    }
}

/// Every flow for one backend.
async fn flows(backend: Backend, secrets: &mut Secrets) {
    let old = Key::from_bytes(&[0x5a; 32]).expect("key");
    let current = Key::from_bytes(b"an example master secret, 41 bytes long!!").expect("key");
    for key in [&old, &current] {
        secrets.add("key (base64)", key.to_base64());
    }
    secrets.add_bytes("old key", &[0x5a; 32]);
    secrets.add_bytes("current key", b"an example master secret, 41 bytes long!!");
    secrets.add("current key (text)", "an example master secret");

    // A cookie made under the old key, to be re-issued under the new one.
    let store = CountingStore::default();
    let before = App::start(backend, KeyRing::new(old.clone()), store.clone()).await;
    let (_, _, old_cookie) = before.get("/count", None, secrets).await;
    let old_cookie = old_cookie.expect("cookie");
    drop(before);

    let app = App::start(backend, KeyRing::new(current).with_fallback(old), store).await;
    let (status, body, rotated) = app.get("/count", Some(&old_cookie), secrets).await;
    assert_eq!((status, body.as_str()), (200, "2"), "{backend:?} rotation");
    let mut cookie = rotated.expect("re-issued under the current key");

    // New session, read, write, id.
    let (_, _, fresh) = app.get("/count", None, secrets).await;
    let fresh = fresh.expect("cookie");
    let (_, _, _) = app.get("/get", Some(&fresh), secrets).await;
    let (_, body, next) = app.get("/count", Some(&cookie), secrets).await;
    assert_eq!(body, "3");
    cookie = next.unwrap_or(cookie);
    app.get("/id", Some(&cookie), secrets).await;

    // Login: a new id.
    let (_, _, after_login) = app.get("/login", Some(&cookie), secrets).await;
    cookie = after_login.expect("a new cookie at login");
    app.get("/id", Some(&cookie), secrets).await;

    // Bad and tampered cookies.
    for bad in [
        "garbage",
        "s1.AAAA.BBBB",
        "e1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        app.get("/status", Some(bad), secrets).await;
    }
    let forged = tamper(&cookie);
    app.get("/status", Some(&forged), secrets).await;
    let both = format!("{cookie}; session={fresh}");
    app.get("/status", Some(&both), secrets).await;

    // A failing handler.
    app.get("/fail", Some(&cookie), secrets).await;

    // A stored value read as the wrong type: a 500, logged with the key but
    // not serde's message, which quotes the value.
    secrets.add("stored session value", STORED_SECRET);
    let (status, _, stored) = app.get("/put-secret", Some(&cookie), secrets).await;
    assert_eq!(status, 200, "{backend:?} put-secret");
    cookie = stored.unwrap_or(cookie);
    let (status, body, _) = app.get("/secret-as-number", Some(&cookie), secrets).await;
    assert_eq!((status, body.as_str()), (500, ""), "{backend:?} wrong type");

    // `Option<Session>`: `None` without the layer, the session with it; a
    // plain `Session` without the layer is a 500 that says why.
    let (status, body, _) = app.get("/optional", Some(&cookie), secrets).await;
    assert_eq!((status, body.as_str()), (200, "some"), "{backend:?}");
    let (status, body, _) = app.get("/no-layer/optional", Some(&cookie), secrets).await;
    assert_eq!((status, body.as_str()), (200, "none"), "{backend:?}");
    let (status, body, _) = app.get("/no-layer/required", Some(&cookie), secrets).await;
    assert_eq!(status, 500, "{backend:?} no layer");
    assert!(
        body.contains("SessionLayer"),
        "{backend:?} no layer: {body}"
    );

    // Store errors and timeouts (server-side sessions only).
    if backend == Backend::Memory {
        app.store.set_mode(Mode::FailAll);
        let (status, _, _) = app.get("/count", Some(&cookie), secrets).await;
        assert_eq!(status, 503);
        app.store.set_mode(Mode::Hang);
        let (status, _, _) = app.get("/count", Some(&cookie), secrets).await;
        assert_eq!(status, 503);
        app.store.set_mode(Mode::FailWrites);
        app.get("/count", Some(&cookie), secrets).await;
        app.store.set_mode(Mode::Ok);
    }

    // Expiry, then logout of a live session.
    app.clock.set(T0 + 3 * 3_600);
    app.get("/status", Some(&cookie), secrets).await;
    app.get("/count", Some(&cookie), secrets).await;
    let (_, _, live) = app.get("/login", None, secrets).await;
    let live = live.expect("cookie");
    app.get("/id", Some(&live), secrets).await;
    app.get("/logout", Some(&live), secrets).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_log_line() {
    let captured = Captured::default();
    let subscriber = captured.subscriber(tracing::Level::TRACE);
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let mut secrets = Secrets::default();
    for backend in [Backend::Memory, Backend::Signed, Backend::Sealed] {
        flows(backend, &mut secrets).await;
    }

    // A canary: the check must see a secret that is logged.
    let canary = secrets
        .0
        .iter()
        .find(|(what, _)| what == "cookie value")
        .expect("a cookie")
        .1
        .clone();
    tracing::trace!(target: "logs_canary", "canary {canary}");

    let text = captured.text();
    let keepsake_lines = text.lines().filter(|l| l.contains("keepsake")).count();
    // The flows did log: bad cookies, store failures, creation, cycling.
    for expected in [
        "session cookie did not verify",
        "session store failed; answering 503",
        "session created",
        "session id cycled",
        "re-issued under the current key",
    ] {
        assert!(text.contains(expected), "no {expected:?} event in:\n{text}");
    }
    // Both programming errors are logged at ERROR level: the wrong type
    // with its key, the missing layer once per request that needed it (the
    // `Option<Session>` route logs nothing).
    let lines_with =
        |needle: &str| -> Vec<&str> { text.lines().filter(|line| line.contains(needle)).collect() };
    let wrong_type = lines_with("session value not JSON, or not of the type asked for");
    assert_eq!(wrong_type.len(), 3, "one per backend:\n{text}");
    for line in &wrong_type {
        assert!(
            line.contains("ERROR") && line.contains("key=secret"),
            "{line}"
        );
    }
    let no_layer = lines_with("asked for a session without the layer");
    assert_eq!(no_layer.len(), 3, "one per backend:\n{text}");
    for line in &no_layer {
        assert!(
            line.contains("ERROR") && line.contains("SessionLayer"),
            "{line}"
        );
    }
    assert!(secrets.0.len() > 50, "too few secrets: {}", secrets.0.len());
    let mut leaks = Vec::new();
    let mut canaries = 0;
    for line in text.lines() {
        if line.contains("logs_canary") {
            canaries += usize::from(line.contains(canary.as_str()));
            continue;
        }
        for (what, secret) in &secrets.0 {
            if line.contains(secret.as_str()) {
                leaks.push(format!("{what} {secret:?} in: {line}"));
            }
        }
    }
    assert_eq!(canaries, 1, "the canary line was not seen");
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    eprintln!(
        "{} log lines ({} from keepsake) checked against {} secrets: none found",
        text.lines().count(),
        keepsake_lines,
        secrets.0.len()
    );
}

/// A store failure is logged once per request, at ERROR with its cause (and
/// the session's log tag), when the call fails; the 503 that follows adds
/// only a DEBUG line, not a second ERROR without the cause.
#[tokio::test(flavor = "current_thread")]
async fn a_store_failure_is_one_error_line_with_its_cause() {
    let captured = Captured::default();
    let subscriber = captured.subscriber(tracing::Level::DEBUG);
    let _guard = tracing::subscriber::set_default(subscriber);

    let store = CountingStore::default();
    let app = App::start(Backend::Memory, KeyRing::new(Key::generate()), store).await;
    let secrets = &mut Secrets::default();
    let (_, _, cookie) = app.get("/count", None, secrets).await;
    let cookie = cookie.expect("cookie");
    let before = captured.text().len();
    for (mode, path) in [(Mode::FailAll, "/count"), (Mode::FailWrites, "/count")] {
        app.store.set_mode(mode);
        let start = captured.text().len();
        let (status, _, _) = app.get(path, Some(&cookie), secrets).await;
        assert_eq!(status, 503, "{mode:?}");
        let text = captured.text()[start..].to_owned();
        let errors: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).collect();
        assert_eq!(errors.len(), 1, "{mode:?}: one ERROR line:\n{text}");
        assert!(
            errors[0].contains("injected"),
            "{mode:?}: the cause: {text}"
        );
    }
    assert!(captured.text()[before..].contains("answering 503"));
}
