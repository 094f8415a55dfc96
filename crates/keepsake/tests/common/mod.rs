//! Helpers for the black-box session tests: a store wrapper that counts and
//! fails on demand, a real axum server on 127.0.0.1, and HTTP helpers.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::Path,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use keepsake::{
    codec::Format,
    key::{Key, KeyRing},
    middleware::{SessionLayer, SessionLayerBuilder},
    session::{Expiry, ManualClock, Session, SessionError},
    store::{
        Created, Deleted, Id, MemoryStore, Record, Saved, SessionStore, StoreError, StoreErrorKind,
        Touched,
    },
};

/// The time every test starts at (Unix seconds).
pub(crate) const T0: u64 = 1_700_000_000;

/// Where the sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// Server-side, in a [`CountingStore`] around a `MemoryStore`.
    Memory,
    /// Client-side, signed cookies.
    Signed,
    /// Client-side, sealed cookies.
    Sealed,
}

impl Backend {
    pub(crate) fn is_store(self) -> bool {
        self == Self::Memory
    }
}

// ---------------------------------------------------------------------------
// CountingStore
// ---------------------------------------------------------------------------

/// How the [`CountingStore`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Mode {
    /// Delegate to the memory store.
    Ok = 0,
    /// Every call fails with `Unavailable`.
    FailAll = 1,
    /// Loads work; create, save, touch and delete fail.
    FailWrites = 2,
    /// Every call sleeps far past any store timeout.
    Hang = 3,
    /// Only `create` fails.
    FailCreate = 4,
    /// Every call works, 60 ms late.
    Slow = 5,
}

/// How many times each store operation was called (failed calls included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) create: usize,
    pub(crate) load: usize,
    pub(crate) save: usize,
    pub(crate) touch: usize,
    pub(crate) delete: usize,
    pub(crate) other: usize,
}

impl Counts {
    pub(crate) fn reads(&self) -> usize {
        self.load
    }

    pub(crate) fn writes(&self) -> usize {
        self.create + self.save + self.touch + self.delete
    }

    pub(crate) fn total(&self) -> usize {
        self.reads() + self.writes() + self.other
    }
}

#[derive(Debug, Default)]
struct Counters {
    create: AtomicUsize,
    load: AtomicUsize,
    save: AtomicUsize,
    touch: AtomicUsize,
    delete: AtomicUsize,
    other: AtomicUsize,
}

/// A `SessionStore` that delegates to a `MemoryStore`, counts every call, and
/// can be told to fail or hang.
#[derive(Debug, Clone, Default)]
pub(crate) struct CountingStore {
    inner: MemoryStore,
    counters: Arc<Counters>,
    mode: Arc<AtomicU8>,
}

impl CountingStore {
    pub(crate) fn counts(&self) -> Counts {
        let c = &self.counters;
        Counts {
            create: c.create.load(Ordering::SeqCst),
            load: c.load.load(Ordering::SeqCst),
            save: c.save.load(Ordering::SeqCst),
            touch: c.touch.load(Ordering::SeqCst),
            delete: c.delete.load(Ordering::SeqCst),
            other: c.other.load(Ordering::SeqCst),
        }
    }

    pub(crate) fn reset_counts(&self) {
        let c = &self.counters;
        for counter in [&c.create, &c.load, &c.save, &c.touch, &c.delete, &c.other] {
            counter.store(0, Ordering::SeqCst);
        }
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Records held by the underlying memory store.
    pub(crate) fn len(&self) -> usize {
        self.inner.len()
    }

    /// Counts the call, then fails or hangs as the mode says.
    async fn gate(&self, counter: &AtomicUsize, write: bool) -> Result<(), StoreError> {
        counter.fetch_add(1, Ordering::SeqCst);
        let create = std::ptr::eq(counter, &self.counters.create);
        match self.mode.load(Ordering::SeqCst) {
            4 if create => Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "injected create failure",
            )),
            1 => Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "injected failure",
            )),
            2 if write => Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "injected write failure",
            )),
            3 => {
                // Far past any store timeout the tests set; the middleware's
                // timeout drops this future long before.
                tokio::time::sleep(Duration::from_secs(30)).await;
                Err(StoreError::new(StoreErrorKind::Unavailable, "hung"))
            }
            5 => {
                tokio::time::sleep(Duration::from_millis(60)).await;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl SessionStore for CountingStore {
    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        self.gate(&self.counters.create, true).await?;
        self.inner.create(record).await
    }

    async fn load(&self, id: &Id, now: u64) -> Result<Option<Record>, StoreError> {
        self.gate(&self.counters.load, false).await?;
        self.inner.load(id, now).await
    }

    async fn save(&self, record: &Record, now: u64) -> Result<Saved, StoreError> {
        self.gate(&self.counters.save, true).await?;
        self.inner.save(record, now).await
    }

    async fn touch(
        &self,
        id: &Id,
        version: u64,
        idle_deadline: u64,
        now: u64,
    ) -> Result<Touched, StoreError> {
        self.gate(&self.counters.touch, true).await?;
        self.inner.touch(id, version, idle_deadline, now).await
    }

    async fn delete(&self, id: &Id) -> Result<bool, StoreError> {
        self.gate(&self.counters.delete, true).await?;
        self.inner.delete(id).await
    }

    async fn delete_if_version(&self, id: &Id, version: u64) -> Result<Deleted, StoreError> {
        self.gate(&self.counters.delete, true).await?;
        self.inner.delete_if_version(id, version).await
    }

    async fn delete_user(&self, user: &str) -> Result<usize, StoreError> {
        self.gate(&self.counters.other, true).await?;
        self.inner.delete_user(user).await
    }

    async fn list_user(&self, user: &str, now: u64) -> Result<Vec<Record>, StoreError> {
        self.gate(&self.counters.other, false).await?;
        self.inner.list_user(user, now).await
    }

    async fn purge_expired(&self, now: u64) -> Result<usize, StoreError> {
        self.gate(&self.counters.other, true).await?;
        self.inner.purge_expired(now).await
    }
}

// ---------------------------------------------------------------------------
// The app under test
// ---------------------------------------------------------------------------

fn show<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| value.to_string())
}

/// Increments `n` and answers it.
async fn count(session: Session) -> Result<String, SessionError> {
    let n: u64 = session.get("n").await?.unwrap_or(0) + 1;
    session.insert("n", n).await?;
    Ok(n.to_string())
}

/// Reads `n` only.
async fn read(session: Session) -> Result<String, SessionError> {
    Ok(show(session.get::<u64>("n").await?))
}

/// Reads only: `new=.. expired=.. n=.. user=..`.
async fn status(session: Session) -> Result<String, SessionError> {
    let is_new = session.is_new().await?;
    let expired = session.expired().await?;
    let n = session.get::<u64>("n").await?;
    let user = session.get::<String>("user").await?;
    Ok(format!(
        "new={is_new} expired={expired} n={} user={}",
        show(n),
        show(user)
    ))
}

/// The session id (reads only).
async fn id(session: Session) -> Result<String, SessionError> {
    Ok(session.id().await?.to_string())
}

/// Logs in: a new id, and the user in the data.
async fn login(session: Session) -> Result<&'static str, SessionError> {
    session.cycle_id().await?;
    session.insert("user", "ada").await?;
    Ok("welcome")
}

/// Logs out.
async fn logout(session: Session) -> Result<&'static str, SessionError> {
    session.flush().await?;
    Ok("bye")
}

/// Logs out and leaves a message in the next session.
async fn logout_flash(session: Session) -> Result<&'static str, SessionError> {
    session.flush().await?;
    session.insert("flash", "logged out").await?;
    Ok("bye")
}

/// Reads and removes the flash message.
async fn flash(session: Session) -> Result<String, SessionError> {
    Ok(show(session.pop::<String>("flash").await?))
}

/// Changes the session, then fails.
async fn fail(session: Session) -> Result<(StatusCode, &'static str), SessionError> {
    session.insert("n", 999).await?;
    session.insert("poison", true).await?;
    Ok((StatusCode::INTERNAL_SERVER_ERROR, "boom"))
}

/// Changes the session, then answers `status` (400 if it is not one).
async fn fail_with(
    session: Session,
    Path(status): Path<u16>,
) -> Result<(StatusCode, &'static str), SessionError> {
    session.insert("n", 999).await?;
    session.insert("poison", true).await?;
    Ok((
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        "failed",
    ))
}

/// Stores a value too large for a cookie: 413 when refused.
async fn big(session: Session) -> Response {
    match session.insert("big", "x".repeat(5_000)).await {
        Ok(()) => "stored".into_response(),
        Err(SessionError::TooLarge { .. }) => {
            (StatusCode::PAYLOAD_TOO_LARGE, "too large").into_response()
        }
        Err(err) => err.into_response(),
    }
}

/// Fills a client-side session to within a few bytes of the cookie limit:
/// the largest `pad` that is accepted.
async fn fill(session: Session) -> Result<String, SessionError> {
    let (mut fits, mut too_big) = (0_usize, 4_096_usize);
    while too_big - fits > 1 {
        let size = (fits + too_big) / 2;
        match session.insert("pad", "p".repeat(size)).await {
            Ok(()) => fits = size,
            Err(SessionError::TooLarge { .. }) => too_big = size,
            Err(err) => return Err(err),
        }
    }
    session.insert("pad", "p".repeat(fits)).await?;
    Ok(fits.to_string())
}

/// Sets the session's user to a long name; 413 if refused as too large.
async fn set_user(session: Session) -> Response {
    match session.set_user(Some(&"u".repeat(64))).await {
        Ok(()) => "ok".into_response(),
        Err(SessionError::TooLarge { .. }) => {
            (StatusCode::PAYLOAD_TOO_LARGE, "too large").into_response()
        }
        Err(err) => err.into_response(),
    }
}

/// The session's user.
async fn user(session: Session) -> Result<String, SessionError> {
    Ok(show(session.user().await?))
}

/// "Remember me": a persistent cookie with the longest lifetime (400 days,
/// idle 400 days); 413 if refused.
async fn remember(session: Session) -> Response {
    let expiry = Expiry::persistent(Expiry::MAX_LIFETIME).with_idle(Some(Expiry::MAX_LIFETIME));
    match session.set_expiry(expiry).await {
        Ok(()) => "ok".into_response(),
        Err(SessionError::TooLarge { .. }) => {
            (StatusCode::PAYLOAD_TOO_LARGE, "too large").into_response()
        }
        Err(err) => err.into_response(),
    }
}

/// Never touches the session.
async fn plain() -> &'static str {
    "plain"
}

/// Changes the session and sets its own `Cache-Control` and `Vary`.
async fn no_store(session: Session) -> Result<Response, SessionError> {
    session.insert("seen", true).await?;
    Ok((
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::VARY, "Accept-Encoding"),
        ],
        "fresh",
    )
        .into_response())
}

/// Many operations in one request; answers the new `n`.
async fn multi(session: Session) -> Result<String, SessionError> {
    let n: u64 = session.get("n").await?.unwrap_or(0) + 1;
    session.insert("a", 1).await?;
    session.insert("b", "two").await?;
    assert!(session.contains_key("a").await?);
    assert!(session.remove("a").await?);
    assert_eq!(session.pop::<String>("b").await?.as_deref(), Some("two"));
    let _ = session.keys().await?;
    let _ = session.len().await?;
    session.insert("n", n).await?;
    Ok(n.to_string())
}

/// Sets `key` to `true`.
async fn set_key(session: Session, Path(key): Path<String>) -> Result<&'static str, SessionError> {
    session.insert(&key, true).await?;
    Ok("set")
}

/// The keys, comma-separated (reads only).
async fn keys(session: Session) -> Result<String, SessionError> {
    Ok(session.keys().await?.join(","))
}

/// Uses the session but swallows its errors and answers 200.
async fn swallow(session: Session) -> &'static str {
    let _ = session.get::<u64>("n").await;
    "fine"
}

pub(crate) fn app() -> Router {
    Router::new()
        .route("/count", get(count))
        .route("/get", get(read))
        .route("/status", get(status))
        .route("/id", get(id))
        .route("/login", get(login))
        .route("/logout", get(logout))
        .route("/logout-flash", get(logout_flash))
        .route("/flash", get(flash))
        .route("/fail", get(fail))
        .route("/fail/{status}", get(fail_with))
        .route("/fill", get(fill))
        .route("/set-user", get(set_user))
        .route("/user", get(user))
        .route("/remember", get(remember))
        .route("/big", get(big))
        .route("/plain", get(plain))
        .route("/no-store", get(no_store))
        .route("/multi", get(multi))
        .route("/swallow", get(swallow))
        .route("/set/{key}", get(set_key))
        .route("/keys", get(keys))
}

// ---------------------------------------------------------------------------
// Server and client
// ---------------------------------------------------------------------------

/// One response, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: String,
}

impl Reply {
    /// Every `Set-Cookie` header.
    pub(crate) fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .map(|value| value.to_str().expect("ASCII Set-Cookie").to_owned())
            .collect()
    }

    /// The `Set-Cookie` header for the cookie `name`, if any (asserting
    /// there is at most one).
    pub(crate) fn set_cookie_named(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        let mut matching: Vec<String> = self
            .set_cookies()
            .into_iter()
            .filter(|c| c.starts_with(&prefix))
            .collect();
        assert!(
            matching.len() <= 1,
            "several Set-Cookie for {name}: {matching:?}"
        );
        matching.pop()
    }

    /// The `Set-Cookie` header for the session cookie, if any.
    pub(crate) fn session_set_cookie(&self) -> Option<String> {
        self.set_cookie_named("session")
    }

    /// The value the response gives the session cookie, if it sets one.
    pub(crate) fn session_cookie(&self) -> Option<String> {
        self.session_set_cookie()
            .map(|header| cookie_value(&header).to_owned())
    }

    /// Every value of `name`, comma-split and trimmed.
    pub(crate) fn header_list(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .flat_map(|value| value.to_str().unwrap_or("").split(','))
            .map(|part| part.trim().to_owned())
            .filter(|part| !part.is_empty())
            .collect()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// The value part of a `Set-Cookie` header.
pub(crate) fn cookie_value(set_cookie: &str) -> &str {
    let pair = set_cookie.split(';').next().unwrap_or("");
    pair.split_once('=').map_or("", |(_, value)| value)
}

/// Changes one character of a protected cookie value, away from the format
/// prefix and the separators, so the value no longer verifies.
pub(crate) fn tamper(value: &str) -> String {
    let mut bytes = value.as_bytes().to_vec();
    let start = bytes.len() / 2;
    let at = (start..bytes.len())
        .chain(3..start)
        .find(|&i| bytes[i].is_ascii_alphanumeric())
        .expect("a character to flip");
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).expect("ASCII");
    assert_ne!(tampered, value);
    tampered
}

/// A client; with `cookie_store`, a browser loading pages: it keeps
/// cookies and says each request is a page load (`Sec-Fetch-Mode:
/// navigate`), whose answer may remove an ended session's cookie.
fn http_client(cookie_store: bool) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if cookie_store {
        headers.insert(
            "sec-fetch-mode",
            reqwest::header::HeaderValue::from_static("navigate"),
        );
    }
    reqwest::Client::builder()
        .cookie_store(cookie_store)
        .default_headers(headers)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client")
}

/// A real axum server on 127.0.0.1 with a `SessionLayer`, and clients.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) base: String,
    /// A browser loading pages: keeps cookies, sends `Sec-Fetch-Mode: navigate`.
    pub(crate) client: reqwest::Client,
    /// No cookie store: for replaying cookies by hand.
    pub(crate) raw: reqwest::Client,
    pub(crate) clock: ManualClock,
    /// The store (for cookie backends, unused: its counts stay zero).
    pub(crate) store: CountingStore,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The layer builder for `backend`, over HTTP (`secure(false)`), on `clock`.
pub(crate) fn builder(
    backend: Backend,
    store: &CountingStore,
    clock: &ManualClock,
) -> SessionLayerBuilder {
    let ring = KeyRing::new(Key::generate());
    let builder = match backend {
        Backend::Memory => SessionLayer::with_store(store.clone(), ring),
        Backend::Signed => SessionLayer::with_cookies(Format::Signed, ring),
        Backend::Sealed => SessionLayer::with_cookies(Format::Sealed, ring),
    };
    builder.secure(false).clock(clock.clone())
}

impl Server {
    /// Starts the app with the default settings (plus `secure(false)`).
    pub(crate) async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |builder| builder).await
    }

    /// Starts the app with settings changed by `configure`.
    pub(crate) async fn start_with(
        backend: Backend,
        configure: impl FnOnce(SessionLayerBuilder) -> SessionLayerBuilder,
    ) -> Self {
        Self::start_with_routes(backend, configure, Router::new()).await
    }

    /// Starts the app plus `extra` routes, with settings changed by
    /// `configure`.
    pub(crate) async fn start_with_routes(
        backend: Backend,
        configure: impl FnOnce(SessionLayerBuilder) -> SessionLayerBuilder,
        extra: Router,
    ) -> Self {
        let clock = ManualClock::new(T0);
        let store = CountingStore::default();
        let layer = configure(builder(backend, &store, &clock))
            .build()
            .expect("layer");
        let router = app().merge(extra).layer(layer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("serve");
        });
        Self {
            base: format!("http://{addr}"),
            client: http_client(true),
            raw: http_client(false),
            clock,
            store,
            task,
        }
    }

    /// A second browser, with its own cookies.
    pub(crate) fn browser(&self) -> reqwest::Client {
        http_client(true)
    }

    /// Sets the clock to `T0 + secs`.
    pub(crate) fn at(&self, secs: u64) {
        self.clock.set(T0 + secs);
    }

    /// GET `path` with the server's browser.
    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.get_via(&self.client, path).await
    }

    /// GET `path` with `client`.
    pub(crate) async fn get_via(&self, client: &reqwest::Client, path: &str) -> Reply {
        let response = client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap_or_else(|err| panic!("GET {path}: {err}"));
        read_reply(response).await
    }

    /// GET `path` without a cookie store, sending `Cookie: session=<value>`
    /// (or no cookie).
    pub(crate) async fn get_raw(&self, path: &str, session: Option<&str>) -> Reply {
        self.get_raw_named(path, "session", session).await
    }

    /// GET `path` without a cookie store, sending `Cookie: <name>=<value>`.
    pub(crate) async fn get_raw_named(&self, path: &str, name: &str, value: Option<&str>) -> Reply {
        self.get_raw_with(path, name, value, &[]).await
    }

    /// GET `path` without a cookie store, sending `Cookie: <name>=<value>`
    /// and `headers`.
    pub(crate) async fn get_raw_with(
        &self,
        path: &str,
        name: &str,
        value: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.raw.get(format!("{}{path}", self.base));
        if let Some(value) = value {
            request = request.header(reqwest::header::COOKIE, format!("{name}={value}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|err| panic!("GET {path}: {err}"));
        read_reply(response).await
    }
}

async fn read_reply(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.expect("body");
    Reply {
        status,
        headers,
        body,
    }
}
