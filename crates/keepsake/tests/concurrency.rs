//! Concurrent requests of one visitor lose nothing (issue "Concurrent
//! requests"), on every server-side store, driven through real HTTP on
//! 127.0.0.1:
//!
//! - 100 concurrent `Session::update` increments from one cookie end exactly
//!   100 higher (`KEEPSAKE_TEST_UPDATE_TRIALS` trials per store, default 3;
//!   the figure for 100 trials is in the crate docs);
//! - two overlapping requests writing different keys both keep their write;
//! - a slow write overlapping a logout or a `cycle_id` never brings the old
//!   session back (`KEEPSAKE_TEST_RESURRECTION_TRIALS`, default 1,000);
//! - of several concurrent `cycle_id`s exactly one new id survives, and the
//!   old id is anonymous afterwards;
//! - a request that only read the session does not undo, with its refresh
//!   of the idle deadline, the new expiry another request just saved.
//!
//! Redis and Postgres run when `KEEPSAKE_TEST_REDIS_URL` /
//! `KEEPSAKE_TEST_POSTGRES_URL` are set (each run in its own key prefix or
//! schema); without them those stores are skipped with a message, unless
//! `CI` is set, where that is a failure.

use std::sync::{Arc, Mutex};

use axum::{
    Json, Router,
    extract::{Path, State},
    routing::{get, post},
};
use keepsake::{
    codec::unix_now,
    key::{Key, KeyRing},
    middleware::SessionLayer,
    session::{Expiry, ManualClock, Session, SessionError},
    store::{AnyStore, Id, SessionStore as _},
};
use serde_json::{Value, json};
use tokio::sync::{Barrier, oneshot};

/// The slow request's side of an armed gate: say "loaded", wait for "go".
type Armed = (oneshot::Sender<()>, oneshot::Receiver<()>);

/// A pause point for `/slow/{key}`: the handler reports that it has loaded
/// the session, then waits for the test's go-ahead before writing.
#[derive(Default, Clone)]
struct Gate {
    inner: Arc<Mutex<Option<Armed>>>,
    /// When set, `/login/{user}` loads the session and waits here until
    /// every login of the round has loaded it, so that they all race.
    logins: Arc<Mutex<Option<Arc<Barrier>>>>,
}

impl Gate {
    /// Arms the gate for one slow request: a receiver that fires once it
    /// has loaded, and a sender that lets it go on.
    fn arm(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (loaded_tx, loaded_rx) = oneshot::channel();
        let (go_tx, go_rx) = oneshot::channel();
        *self.inner.lock().unwrap() = Some((loaded_tx, go_rx));
        (loaded_rx, go_tx)
    }
}

type Reply = Result<Json<Value>, SessionError>;

async fn incr(session: Session) -> Reply {
    let n: u64 = session
        .update("n", |n: Option<u64>| n.unwrap_or(0) + 1)
        .await?;
    Ok(Json(json!(n)))
}

async fn state(session: Session) -> Reply {
    Ok(Json(json!({
        "new": session.is_new().await?,
        "id": session.id().await?.to_string(),
        "n": session.get::<u64>("n").await?,
        "keys": session.keys().await?,
    })))
}

async fn set(session: Session, Path(key): Path<String>) -> Reply {
    session.insert(&key, true).await?;
    Ok(Json(json!(true)))
}

async fn slow(session: Session, State(gate): State<Gate>, Path(key): Path<String>) -> Reply {
    session.get::<Value>(&key).await?; // load now, write later
    let armed = gate.inner.lock().unwrap().take();
    if let Some((loaded, go)) = armed {
        let _ = loaded.send(());
        let _ = go.await;
    }
    session.insert(&key, true).await?;
    Ok(Json(json!(true)))
}

/// Pops `key` (a string), then waits at the gate before answering it.
async fn slow_pop(session: Session, State(gate): State<Gate>, Path(key): Path<String>) -> Reply {
    let popped = session.pop::<String>(&key).await?;
    let armed = gate.inner.lock().unwrap().take();
    if let Some((loaded, go)) = armed {
        let _ = loaded.send(());
        let _ = go.await;
    }
    Ok(Json(json!(popped)))
}

/// Sets `key` to the string `value`.
async fn put(session: Session, Path((key, value)): Path<(String, String)>) -> Reply {
    session.insert(&key, value).await?;
    Ok(Json(json!(true)))
}

/// The value under `key` (reads only).
async fn value(session: Session, Path(key): Path<String>) -> Reply {
    Ok(Json(
        session.get::<Value>(&key).await?.unwrap_or(Value::Null),
    ))
}

/// Reads the session, then waits at the gate: it writes nothing.
async fn slow_read(session: Session, State(gate): State<Gate>) -> Reply {
    let n = session.get::<u64>("n").await?;
    let armed = gate.inner.lock().unwrap().take();
    if let Some((loaded, go)) = armed {
        let _ = loaded.send(());
        let _ = go.await;
    }
    Ok(Json(json!(n)))
}

/// "Remember me": 30 days, without an idle timeout.
async fn remember(session: Session) -> Reply {
    let month = std::time::Duration::from_secs(30 * 86_400);
    session
        .set_expiry(Expiry::persistent(month).with_idle(None))
        .await?;
    Ok(Json(json!(true)))
}

async fn logout(session: Session) -> Reply {
    session.flush().await?;
    Ok(Json(json!(true)))
}

async fn login(session: Session, State(gate): State<Gate>, Path(user): Path<String>) -> Reply {
    let barrier = gate.logins.lock().unwrap().clone();
    if let Some(barrier) = barrier {
        session.id().await?; // loaded
        barrier.wait().await;
    }
    session.cycle_id().await?;
    session.set_user(Some(&user)).await?;
    Ok(Json(json!(true)))
}

fn run_tag() -> String {
    format!("{}_{}", std::process::id(), Id::random().log_tag())
        .to_lowercase()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
}

/// The required env var, or `None` with a message (a failure under CI).
fn server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!("{var} must be set under CI"),
        _ => {
            eprintln!("skipping: {var} is not set");
            None
        }
    }
}

/// A store under test, and what to drop after it.
struct TestStore {
    name: &'static str,
    store: AnyStore,
    /// The PostgreSQL server URL and the test's schema.
    schema: Option<(String, String)>,
}

impl TestStore {
    /// Removes what the test left: every record (and with them the Redis
    /// keys), and the PostgreSQL schema.
    async fn clean(self) {
        for _ in 0..2 {
            self.store.purge_expired(u64::MAX).await.expect("purge");
        }
        if let Some((url, schema)) = self.schema {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect to drop the test schema");
            tokio::spawn(connection);
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .await
                .expect("drop the test schema");
        }
    }
}

/// Every store this machine offers, each fresh: Redis under a key prefix
/// and PostgreSQL in a schema of their own.
async fn stores() -> Vec<TestStore> {
    let tag = run_tag();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("conc-{tag}.db"));
    let mut urls = vec![
        ("memory", "memory://".to_owned(), None),
        ("sqlite", format!("sqlite://{}", path.display()), None),
    ];
    if let Some(url) = server_url("KEEPSAKE_TEST_REDIS_URL") {
        urls.push(("redis", format!("{url}?prefix=keepsake-conc-{tag}:"), None));
    }
    if let Some(url) = server_url("KEEPSAKE_TEST_POSTGRES_URL") {
        let schema = format!("keepsake_conc_{tag}");
        urls.push((
            "postgres",
            format!("{url}?schema={schema}"),
            Some((url, schema)),
        ));
    }
    let mut stores = Vec::new();
    for (name, url, schema) in urls {
        let store = AnyStore::open(&url)
            .await
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        stores.push(TestStore {
            name,
            store,
            schema,
        });
    }
    stores
}

struct Server {
    base: String,
    http: reqwest::Client,
    gate: Gate,
    store: AnyStore,
}

impl Server {
    async fn start(store: AnyStore) -> Self {
        Self::start_with(store, None).await
    }

    /// A server whose sessions go by `clock`, with a 60 s idle timeout.
    async fn start_with(store: AnyStore, clock: Option<ManualClock>) -> Self {
        // One key for every server of a test, as app servers share theirs.
        static KEY: std::sync::LazyLock<Key> = std::sync::LazyLock::new(Key::generate);
        let ring = KeyRing::new(KEY.clone());
        let mut layer = SessionLayer::with_store(store.clone(), ring)
            .secure(false)
            .on_unavailable(|err| {
                let mut response = http::Response::new(json!(err.to_string()).to_string());
                *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                response
            });
        if let Some(clock) = clock {
            layer = layer
                .clock(clock)
                .idle_timeout(Some(std::time::Duration::from_secs(60)));
        }
        let layer = layer.build().expect("layer");
        let gate = Gate::default();
        let app = Router::new()
            .route("/incr", post(incr))
            .route("/state", get(state))
            .route("/set/{key}", post(set))
            .route("/slow/{key}", post(slow))
            .route("/slow-read", get(slow_read))
            .route("/slow-pop/{key}", post(slow_pop))
            .route("/put/{key}/{value}", post(put))
            .route("/value/{key}", get(value))
            .route("/remember", post(remember))
            .route("/logout", post(logout))
            .route("/login/{user}", post(login))
            .with_state(gate.clone())
            .layer(layer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        Self {
            base: format!("http://{addr}"),
            // No cookie store: every request says which cookie it carries.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(200)
                .build()
                .expect("client"),
            gate,
            store,
        }
    }

    /// Sends `method path` with `cookie` (a `session=...` pair); the status,
    /// the session's Set-Cookie if any, and the JSON body.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        cookie: Option<&str>,
    ) -> (u16, Option<String>, Value) {
        self.send_as(method, path, cookie, false).await
    }

    /// [`send`](Self::send), as a browser's page load if `page_load`
    /// (`Sec-Fetch-Mode: navigate`).
    async fn send_as(
        &self,
        method: reqwest::Method,
        path: &str,
        cookie: Option<&str>,
        page_load: bool,
    ) -> (u16, Option<String>, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(cookie) = cookie {
            request = request.header(reqwest::header::COOKIE, cookie);
        }
        if page_load {
            request = request.header("sec-fetch-mode", "navigate");
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let set_cookie = response
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("session="))
            .map(str::to_owned);
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, set_cookie, body)
    }

    async fn post(&self, path: &str, cookie: Option<&str>) -> (u16, Option<String>, Value) {
        self.send(reqwest::Method::POST, path, cookie).await
    }

    /// The value the session of `cookie` holds under `key` (null: none).
    async fn value(&self, cookie: &str, key: &str) -> Value {
        let (status, _, body) = self
            .send(reqwest::Method::GET, &format!("/value/{key}"), Some(cookie))
            .await;
        assert_eq!(status, 200, "GET /value/{key}");
        body
    }

    async fn state(&self, cookie: &str) -> Value {
        let (status, _, body) = self
            .send(reqwest::Method::GET, "/state", Some(cookie))
            .await;
        assert_eq!(status, 200, "GET /state");
        body
    }

    /// A new session with `n` = 1; its `session=...` cookie pair.
    async fn new_session(&self) -> String {
        let (status, set_cookie, _) = self.post("/incr", None).await;
        assert_eq!(status, 200);
        pair(&set_cookie.expect("a new session sets a cookie"))
    }
}

/// The `name=value` part of a Set-Cookie header.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().to_owned()
}

/// Whether a Set-Cookie removes the cookie.
fn is_removal(set_cookie: &str) -> bool {
    set_cookie.contains("Max-Age=0")
}

fn trials(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_from_one_cookie_lose_no_increment() {
    const REQUESTS: u64 = 100;
    let trials = trials("KEEPSAKE_TEST_UPDATE_TRIALS", 3);
    for test in stores().await {
        let name = test.name;
        let server = Arc::new(Server::start(test.store.clone()).await);
        let mut exact = 0;
        for trial in 0..trials {
            let cookie = server.new_session().await;
            let requests = (0..REQUESTS).map(|_| {
                let (server, cookie) = (server.clone(), cookie.clone());
                tokio::spawn(async move { server.post("/incr", Some(&cookie)).await })
            });
            let mut statuses = Vec::new();
            for request in requests.collect::<Vec<_>>() {
                let (status, set_cookie, body) = request.await.expect("task");
                if status != 200 {
                    eprintln!("{name}: {status} {body}");
                }
                statuses.push(status);
                assert!(
                    set_cookie.is_none(),
                    "{name}: no cookie change on an update"
                );
            }
            assert!(
                statuses.iter().all(|s| *s == 200),
                "{name} trial {trial}: statuses {statuses:?}"
            );
            let n = server.state(&cookie).await["n"].as_u64();
            assert_eq!(n, Some(1 + REQUESTS), "{name} trial {trial}: counter");
            exact += 1;
        }
        println!("{name}: {exact} of {trials} trials ended exactly +{REQUESTS}");
        test.clean().await;
    }
}

/// Two app servers over one store (as behind a load balancer): their
/// requests are ordered by the store's compare-and-set alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_through_two_app_servers_lose_no_increment() {
    const REQUESTS: u64 = 100;
    for test in stores().await {
        let name = test.name;
        let servers = [
            Arc::new(Server::start(test.store.clone()).await),
            Arc::new(Server::start(test.store.clone()).await),
        ];
        // Both servers must share the key to read each other's cookies.
        let cookie = servers[0].new_session().await;
        let requests = (0..REQUESTS).map(|i| {
            let (server, cookie) = (servers[(i % 2) as usize].clone(), cookie.clone());
            tokio::spawn(async move { server.post("/incr", Some(&cookie)).await })
        });
        for request in requests.collect::<Vec<_>>() {
            let (status, _, body) = request.await.expect("task");
            assert_eq!(status, 200, "{name}: {body}");
        }
        let n = servers[1].state(&cookie).await["n"].as_u64();
        assert_eq!(n, Some(1 + REQUESTS), "{name}: counter");
        println!("{name}: two app servers, exactly +{REQUESTS}");
        test.clean().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_writes_of_different_keys_both_survive() {
    for test in stores().await {
        let name = test.name;
        let server = Arc::new(Server::start(test.store.clone()).await);
        let cookie = server.new_session().await;
        // A loads, B writes and finishes, then A writes: A's save conflicts
        // and is replayed on top of B's.
        let (loaded, go) = server.gate.arm();
        let slow = tokio::spawn({
            let (server, cookie) = (server.clone(), cookie.clone());
            async move { server.post("/slow/a", Some(&cookie)).await }
        });
        loaded.await.expect("slow request loaded");
        let (status, _, _) = server.post("/set/b", Some(&cookie)).await;
        assert_eq!(status, 200);
        go.send(()).expect("go");
        let (status, set_cookie, _) = slow.await.expect("task");
        assert_eq!((status, set_cookie), (200, None), "{name}");
        let keys = server.state(&cookie).await["keys"].clone();
        assert_eq!(keys, json!(["a", "b", "n"]), "{name}: both writes kept");

        // And the same without a pause, many times over.
        for i in 0..20 {
            let (x, y) = (format!("/set/x{i}"), format!("/set/y{i}"));
            let (a, b) = tokio::join!(
                server.post(&x, Some(&cookie)),
                server.post(&y, Some(&cookie)),
            );
            assert_eq!((a.0, b.0), (200, 200), "{name}");
        }
        let keys = server.state(&cookie).await["keys"].clone();
        for i in 0..20 {
            for key in [format!("x{i}"), format!("y{i}")] {
                assert!(
                    keys.as_array().unwrap().contains(&json!(key)),
                    "{name}: {key} lost"
                );
            }
        }
        test.clean().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_write_never_brings_back_a_logged_out_or_cycled_session() {
    let trials = trials("KEEPSAKE_TEST_RESURRECTION_TRIALS", 1_000);
    for test in stores().await {
        let name = test.name;
        let server = Arc::new(Server::start(test.store.clone()).await);
        let mut resurrections = 0;
        for trial in 0..trials {
            let cookie = server.new_session().await;
            let old_id: Id = server.state(&cookie).await["id"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let (loaded, go) = server.gate.arm();
            // Every other pair of trials, the slow request is a page load.
            let page_load = trial / 2 % 2 == 1;
            let slow = tokio::spawn({
                let (server, cookie) = (server.clone(), cookie.clone());
                async move {
                    server
                        .send_as(
                            reqwest::Method::POST,
                            "/slow/late",
                            Some(&cookie),
                            page_load,
                        )
                        .await
                }
            });
            loaded.await.expect("slow request loaded");
            // Half the trials log out, half log in again (a new id).
            let (status, set_cookie, _) = if trial % 2 == 0 {
                server.post("/logout", Some(&cookie)).await
            } else {
                server
                    .post(
                        &format!("/login/u{}", Id::random().log_tag()),
                        Some(&cookie),
                    )
                    .await
            };
            assert_eq!(status, 200);
            assert!(
                set_cookie.is_some(),
                "{name}: logout and login set a cookie"
            );
            go.send(()).expect("go");
            let (status, set_cookie, _) = slow.await.expect("task");
            assert_eq!(status, 200, "{name}");
            // Only a page load's answer removes the ended session's cookie;
            // any other leaves it (after a login, the browser's is the new one).
            if page_load {
                assert!(
                    set_cookie.as_deref().is_some_and(is_removal),
                    "{name}: the slow page load's response removes the cookie, got {set_cookie:?}"
                );
            } else {
                assert_eq!(
                    set_cookie, None,
                    "{name}: the slow request's response leaves the cookie"
                );
            }
            if server
                .store
                .load(&old_id, unix_now())
                .await
                .expect("load")
                .is_some()
            {
                resurrections += 1;
            }
            let after = server.state(&cookie).await;
            assert_eq!(after["new"], json!(true), "{name}: the old id is anonymous");
        }
        println!("{name}: {resurrections} resurrections in {trials} trials");
        assert_eq!(resurrections, 0, "{name}");
        test.clean().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_concurrent_cycles_exactly_one_new_id_survives() {
    const LOGINS: usize = 10;
    for test in stores().await {
        let name = test.name;
        let server = Arc::new(Server::start(test.store.clone()).await);
        for _ in 0..10 {
            let cookie = server.new_session().await;
            let user = format!("u{}", Id::random().log_tag());
            *server.gate.logins.lock().unwrap() = Some(Arc::new(Barrier::new(LOGINS)));
            let logins = (0..LOGINS).map(|_| {
                let (server, cookie, user) = (server.clone(), cookie.clone(), user.clone());
                tokio::spawn(
                    async move { server.post(&format!("/login/{user}"), Some(&cookie)).await },
                )
            });
            let mut new_cookies = Vec::new();
            for login in logins.collect::<Vec<_>>() {
                let (status, set_cookie, _) = login.await.expect("task");
                assert_eq!(status, 200, "{name}");
                new_cookies.extend(set_cookie.map(|c| pair(&c)));
            }
            *server.gate.logins.lock().unwrap() = None;
            let sessions = server
                .store
                .list_user(&user, unix_now())
                .await
                .expect("list");
            assert_eq!(sessions.len(), 1, "{name}: one new id survives");
            assert_eq!(
                new_cookies.len(),
                1,
                "{name}: only the winner hands out a new cookie"
            );
            let winner = server.state(&new_cookies[0]).await;
            assert_eq!(winner["new"], json!(false), "{name}");
            assert_eq!(winner["id"], json!(sessions[0].id.to_string()), "{name}");
            assert_eq!(winner["n"], json!(1), "{name}: data carried over");
            let old = server.state(&cookie).await;
            assert_eq!(old["new"], json!(true), "{name}: the old id is anonymous");
        }
        test.clean().await;
    }
}

/// A request that only reads the session, and is due to move its idle
/// deadline, overlaps a "remember me" that saves 30 days without an idle
/// timeout. The read-only request's refresh was computed from the older
/// copy (60 s idle): it must not put that deadline back on the saved
/// session, which would then end a minute later instead of in 30 days.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_only_refresh_never_undoes_a_concurrent_new_expiry() {
    for test in stores().await {
        let name = test.name;
        let clock = ManualClock::new(unix_now());
        let server = Arc::new(Server::start_with(test.store.clone(), Some(clock.clone())).await);
        let cookie = server.new_session().await;
        clock.advance(30); // the idle deadline is now due to move
        let (loaded, go) = server.gate.arm();
        let slow = tokio::spawn({
            let (server, cookie) = (server.clone(), cookie.clone());
            async move {
                server
                    .send(reqwest::Method::GET, "/slow-read", Some(&cookie))
                    .await
            }
        });
        loaded.await.expect("slow request loaded");
        let (status, set_cookie, _) = server.post("/remember", Some(&cookie)).await;
        assert_eq!(status, 200, "{name}");
        let remembered = pair(&set_cookie.expect("a new expiry sends the cookie again"));
        go.send(()).expect("go");
        let (status, set_cookie, body) = slow.await.expect("task");
        assert_eq!((status, &body), (200, &json!(1)), "{name}");
        assert_eq!(
            set_cookie, None,
            "{name}: the read-only request sets nothing"
        );

        clock.advance(3_600); // long past the old idle timeout
        let after = server.state(&remembered).await;
        assert_eq!(
            (&after["new"], &after["n"]),
            (&json!(false), &json!(1)),
            "{name}: the remembered session lives on"
        );
        test.clean().await;
    }
}

/// A `pop` races an `insert` of the same key: A pops the flash message
/// "old" and is held; B sets "new" and saves; A saves (its save conflicts
/// and is replayed on B's). B's "new" was read by nobody: A's replayed pop
/// must leave it (no serial order of the two requests loses it). A pop
/// whose value is still there when its save lands removes it, conflict or
/// not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pop_never_deletes_a_value_stored_after_it_read() {
    for test in stores().await {
        let name = test.name;
        let server = Arc::new(Server::start(test.store.clone()).await);
        let cookie = server.new_session().await;
        let (status, _, _) = server.post("/put/flash/old", Some(&cookie)).await;
        assert_eq!(status, 200, "{name}");

        // A pops "old" and is held; B stores "new" meanwhile.
        let (loaded, go) = server.gate.arm();
        let slow = tokio::spawn({
            let (server, cookie) = (server.clone(), cookie.clone());
            async move { server.post("/slow-pop/flash", Some(&cookie)).await }
        });
        loaded.await.expect("the pop ran");
        let (status, _, _) = server.post("/put/flash/new", Some(&cookie)).await;
        assert_eq!(status, 200, "{name}");
        go.send(()).expect("go");
        let (status, set_cookie, popped) = slow.await.expect("task");
        assert_eq!(
            (status, set_cookie, popped),
            (200, None, json!("old")),
            "{name}"
        );
        assert_eq!(
            server.value(&cookie, "flash").await,
            json!("new"),
            "{name}: the value stored after the pop read is kept"
        );

        // A pops "new" and is held; B changes another key meanwhile: A's
        // replayed pop still removes the value it returned.
        let (loaded, go) = server.gate.arm();
        let slow = tokio::spawn({
            let (server, cookie) = (server.clone(), cookie.clone());
            async move { server.post("/slow-pop/flash", Some(&cookie)).await }
        });
        loaded.await.expect("the pop ran");
        let (status, _, _) = server.post("/set/other", Some(&cookie)).await;
        assert_eq!(status, 200, "{name}");
        go.send(()).expect("go");
        let (status, _, popped) = slow.await.expect("task");
        assert_eq!((status, popped), (200, json!("new")), "{name}");
        assert_eq!(server.value(&cookie, "flash").await, Value::Null, "{name}");
        let keys = server.state(&cookie).await["keys"].clone();
        assert_eq!(keys, json!(["n", "other"]), "{name}: both saves kept");
        test.clean().await;
    }
}
