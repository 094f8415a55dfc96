//! Session expiry under clock trouble and at the edges of the lifetimes:
//!
//! 1. a forward clock glitch in one load never makes a full in-memory store
//!    delete live sessions;
//! 2. the in-memory store's purge lets other tasks run between its batches;
//! 3. the Redis store's expiry follows whichever clock, Redis's or the
//!    app's, ends the session first (as its docs say);
//! 4. a request that outlives the idle deadline has its write refused by
//!    the store, not silently lost (the write phase reads the clock again);
//! 5. lifetimes and idle timeouts over 400 days are refused, on the layer
//!    and with `set_expiry`, as is an idle timeout longer than the lifetime;
//! 6. a session the in-memory store has found expired does not come back
//!    when the clock goes back.
//!
//! The Redis test runs when `KEEPSAKE_TEST_REDIS_URL` is set (under a key
//! prefix of its own); without it, it is skipped with a message, unless
//! `CI` is set, where that is a failure.

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Body, extract::State, routing::get};
use http::{Request, Response, header};
use keepsake::{
    key::{Key, KeyRing},
    middleware::{ConfigError, SessionLayer, SessionLayerBuilder},
    session::{Expiry, ManualClock, Session, SessionError},
    store::{Created, Id, MemoryStore, Record, Saved, SessionStore as _, StoreErrorKind},
};
use tower::ServiceExt as _;

/// The time the tests start at.
const T0: u64 = 1_700_000_000;

/// 400 days in seconds: the longest lifetime browsers keep a cookie for.
const DAYS_400: u64 = 400 * 86_400;

// ---------------------------------------------------------------------------
// Harness: a layer over a few routes, called without a network.
// ---------------------------------------------------------------------------

/// What a handler needs besides the session.
#[derive(Clone)]
struct App {
    clock: ManualClock,
}

/// Inserts `n = 1`.
async fn set(session: Session) -> Result<&'static str, SessionError> {
    session.insert("n", 1).await?;
    Ok("set")
}

/// The session's `n`, or `-`, and whether it is new and expired.
async fn get_n(session: Session) -> Result<String, SessionError> {
    let n: Option<u64> = session.get("n").await?;
    Ok(format!(
        "n={} new={} expired={}",
        n.map_or_else(|| "-".to_owned(), |n| n.to_string()),
        session.is_new().await?,
        session.expired().await?,
    ))
}

/// Reads the session, lets `secs` seconds pass (the clock moves during the
/// request), then writes: a slow request.
async fn slow_write(
    State(app): State<App>,
    axum::extract::Path(secs): axum::extract::Path<u64>,
    session: Session,
) -> Result<&'static str, SessionError> {
    let n: Option<u64> = session.get("n").await?;
    app.clock.advance(secs);
    session.insert("n", n.unwrap_or(0) + 1).await?;
    Ok("written")
}

/// Reads the session, then lets `secs` seconds pass: a slow read.
async fn slow_read(
    State(app): State<App>,
    axum::extract::Path(secs): axum::extract::Path<u64>,
    session: Session,
) -> Result<String, SessionError> {
    let n: Option<u64> = session.get("n").await?;
    app.clock.advance(secs);
    Ok(format!("{n:?}"))
}

/// The routes under `layer`.
fn app(layer: SessionLayer, clock: ManualClock) -> Router {
    Router::new()
        .route("/set", get(set))
        .route("/get", get(get_n))
        .route("/slow-write/{secs}", get(slow_write))
        .route("/slow-read/{secs}", get(slow_read))
        .layer(layer)
        .with_state(App { clock })
}

/// A store-backed layer builder on `store` and `clock`.
fn store_layer(store: &MemoryStore, clock: &ManualClock) -> SessionLayerBuilder {
    SessionLayer::with_store(store.clone(), KeyRing::new(Key::generate())).clock(clock.clone())
}

/// One answer: status, body, and the session's `Set-Cookie` headers.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: String,
    set_cookie: Vec<String>,
}

impl Reply {
    /// The new cookie's `name=value`, if the answer set one (not a removal).
    fn cookie(&self) -> Option<String> {
        self.set_cookie
            .iter()
            .find(|header| !header.contains("Max-Age=0"))
            .and_then(|header| header.split(';').next())
            .map(str::to_owned)
    }

    /// Whether the answer removes the session cookie.
    fn removes_cookie(&self) -> bool {
        self.set_cookie
            .iter()
            .any(|header| header.contains("Max-Age=0"))
    }
}

/// `GET path` as a page load, with `cookie` (`name=value`) if given.
async fn call(router: &Router, path: &str, cookie: Option<&str>) -> Reply {
    let mut request = Request::get(path).header("sec-fetch-mode", "navigate");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response: Response<Body> = router
        .clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status().as_u16();
    let set_cookie = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|value| value.to_str().expect("ASCII").to_owned())
        .collect();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    Reply {
        status,
        body: String::from_utf8(body.to_vec()).expect("UTF-8"),
        set_cookie,
    }
}

/// Where a test's log lines go.
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
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

// ---------------------------------------------------------------------------
// 1. A forward clock glitch and a full MemoryStore
// ---------------------------------------------------------------------------

/// One load given a time a year ahead (a clock glitch, or a caller's bug)
/// must not make a later `create` of a full store purge by that time: every
/// one of the 1000 live sessions stays, and the new one is refused.
#[tokio::test]
async fn a_full_memory_store_keeps_live_sessions_after_a_forward_clock_glitch() {
    let store = MemoryStore::builder().shards(1).max_records(1_000).build();
    let live: Vec<Record> = (0..1_000)
        .map(|_| Record::new(Id::random(), T0, Some(1_800), 14 * 86_400))
        .collect();
    for record in &live {
        assert_eq!(store.create(record).await.unwrap(), Created::Created);
    }
    // The glitch: one load a year ahead.
    assert!(
        store
            .load(&Id::random(), T0 + 365 * 86_400)
            .await
            .unwrap()
            .is_none()
    );
    let new = Record::new(Id::random(), T0 + 1, Some(1_800), 14 * 86_400);
    let outcome = store.create(&new).await;
    let mut kept = 0;
    for record in &live {
        if store.load(&record.id, T0 + 1).await.unwrap().is_some() {
            kept += 1;
        }
    }
    assert_eq!(
        kept, 1_000,
        "live sessions were deleted; create: {outcome:?}"
    );
    assert_eq!(
        outcome.map_err(|err| err.kind()),
        Err(StoreErrorKind::Full),
        "a full store refuses the new session"
    );
}

/// The store still makes room from records expired by the create's own
/// time, and for a session that moves to a new id (a login keeps the
/// session's `created_at`, long past) by the time its idle deadline was
/// refreshed at.
#[tokio::test]
async fn a_full_memory_store_makes_room_by_the_creates_own_time() {
    let store = MemoryStore::builder().shards(1).max_records(4).build();
    for _ in 0..4 {
        store
            .create(&Record::new(Id::random(), T0, Some(60), 3_600))
            .await
            .unwrap();
    }
    // A new session at T0 + 60: the four have expired.
    let new = Record::new(Id::random(), T0 + 60, Some(60), 3_600);
    assert_eq!(store.create(&new).await.unwrap(), Created::Created);
    for _ in 0..3 {
        store
            .create(&Record::new(Id::random(), T0 + 60, Some(60), 3_600))
            .await
            .unwrap();
    }
    assert_eq!(store.len(), 4);
    // A session created at T0 - 1000 cycled at T0 + 120: its created_at is
    // long past, its idle deadline was refreshed at T0 + 120, by which time
    // the four have expired.
    let mut cycled = Record::new(Id::random(), T0 - 1_000, Some(60), 3_600);
    cycled.idle_deadline = cycled.refreshed_idle_deadline(T0 + 120);
    assert_eq!(store.create(&cycled).await.unwrap(), Created::Created);
    assert_eq!(store.len(), 1);
}

// ---------------------------------------------------------------------------
// 2. The purge lets other tasks run
// ---------------------------------------------------------------------------

/// On a single-threaded runtime, a task spawned before a large purge runs
/// before the purge has finished: the purge yields between its batches.
#[tokio::test(flavor = "current_thread")]
async fn a_large_memory_purge_lets_other_tasks_run_in_between() {
    for shards in [1, 16] {
        let store = MemoryStore::builder().shards(shards).build();
        let expired = 5_000;
        for _ in 0..expired {
            store
                .create(&Record::new(Id::random(), T0, None, 10))
                .await
                .unwrap();
        }
        let live = Record::new(Id::random(), T0, None, 1_000);
        store.create(&live).await.unwrap();
        // Runs when the test's task first yields: it sees how many
        // records are left at that moment.
        let seen = tokio::spawn({
            let store = store.clone();
            async move { store.len() }
        });
        assert_eq!(store.purge_expired(T0 + 10).await.unwrap(), expired);
        assert_eq!(store.len(), 1);
        let seen = seen.await.unwrap();
        assert!(
            seen > 1 && seen < expired + 1,
            "{shards} shards: the other task ran with {seen} records left, not during the purge"
        );
    }
}

// ---------------------------------------------------------------------------
// 4. A request that outlives the idle deadline
// ---------------------------------------------------------------------------

/// A handler that reads the session, takes longer than the idle timeout,
/// then writes: the store refuses the write (the session ended while the
/// request ran), the answer removes the cookie, and the INFO line says the
/// changes were dropped.
#[tokio::test(flavor = "current_thread")]
async fn a_write_after_the_idle_deadline_is_refused_not_lost() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let captured = captured.clone();
            move || captured.clone()
        })
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let clock = ManualClock::new(T0);
    let store = MemoryStore::new();
    let layer = store_layer(&store, &clock)
        .idle_timeout(Some(Duration::from_secs(2)))
        .build()
        .unwrap();
    let router = app(layer, clock.clone());
    let cookie = call(&router, "/set", None)
        .await
        .cookie()
        .expect("a cookie");

    let reply = call(&router, "/slow-write/3", Some(&cookie)).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "written"));
    assert!(
        reply.removes_cookie(),
        "the ended session's cookie is removed: {reply:?}"
    );
    assert!(reply.cookie().is_none(), "{reply:?}");
    assert!(
        captured
            .text()
            .contains("session ended before this request saved; changes dropped"),
        "{}",
        captured.text()
    );
    assert!(store.is_empty(), "nothing was written");
    let after = call(&router, "/get", Some(&cookie)).await;
    assert_eq!(after.body, "n=- new=true expired=true");
}

/// A slow write whose session is still live counts its idle deadline from
/// when it writes, not from when it started.
#[tokio::test]
async fn a_slow_write_counts_the_idle_deadline_from_the_write() {
    let clock = ManualClock::new(T0);
    let store = MemoryStore::new();
    let layer = store_layer(&store, &clock)
        .idle_timeout(Some(Duration::from_secs(60)))
        .build()
        .unwrap();
    let router = app(layer, clock.clone());
    let cookie = call(&router, "/set", None)
        .await
        .cookie()
        .expect("a cookie");
    // Starts at T0 + 10, writes at T0 + 40: the idle deadline is T0 + 100.
    clock.set(T0 + 10);
    let reply = call(&router, "/slow-write/30", Some(&cookie)).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "written"));
    clock.set(T0 + 99);
    let reply = call(&router, "/get", Some(&cookie)).await;
    assert_eq!(reply.body, "n=2 new=false expired=false");
}

/// A request that only reads, and outlives the idle deadline, refreshes
/// nothing: its touch finds the session ended and removes the cookie.
#[tokio::test]
async fn a_read_after_the_idle_deadline_does_not_refresh_it() {
    let clock = ManualClock::new(T0);
    let store = MemoryStore::new();
    let layer = store_layer(&store, &clock)
        .idle_timeout(Some(Duration::from_secs(60)))
        .build()
        .unwrap();
    let router = app(layer, clock.clone());
    let cookie = call(&router, "/set", None)
        .await
        .cookie()
        .expect("a cookie");
    // Loaded at T0 + 50 (live), answered at T0 + 70 (ended at T0 + 60).
    clock.set(T0 + 50);
    let reply = call(&router, "/slow-read/20", Some(&cookie)).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "Some(1)"));
    assert!(reply.removes_cookie(), "{reply:?}");
    let reply = call(&router, "/get", Some(&cookie)).await;
    assert_eq!(reply.body, "n=- new=true expired=true");
}

// ---------------------------------------------------------------------------
// 5. Lifetimes longer than a cookie can live
// ---------------------------------------------------------------------------

/// The builder refuses an absolute lifetime or idle timeout over 400 days,
/// `Duration::MAX` included, and says why; 400 days is accepted.
#[test]
fn the_layer_refuses_lifetimes_over_400_days() {
    let builder = || SessionLayer::with_store(MemoryStore::new(), KeyRing::new(Key::generate()));
    for lifetime in [Duration::MAX, Duration::from_secs(DAYS_400 + 1)] {
        let err = builder()
            .absolute_lifetime(lifetime)
            .persistent(true)
            .build()
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, ConfigError::Lifetime(_)), "{err}");
        assert!(err.to_string().contains("400 days"), "{err}");
        assert!(err.to_string().contains("browsers"), "{err}");
    }
    let err = builder()
        .absolute_lifetime(Duration::MAX)
        .idle_timeout(Some(Duration::MAX))
        .build()
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("400 days"), "{err}");
    let longest = builder()
        .absolute_lifetime(Duration::from_secs(DAYS_400))
        .idle_timeout(Some(Duration::from_secs(DAYS_400)))
        .build();
    assert!(longest.is_ok(), "400 days is accepted");
    // From the environment too, naming the variable.
    let err = builder()
        .from_env_with(|name| match name {
            "KEEPSAKE_ABSOLUTE_LIFETIME" => Ok((DAYS_400 + 1).to_string()),
            _ => Err(std::env::VarError::NotPresent),
        })
        .unwrap()
        .build()
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&err, ConfigError::FromEnv { vars, .. } if vars.contains(&"KEEPSAKE_ABSOLUTE_LIFETIME")),
        "{err:?}"
    );
}

/// A persistent session of the longest lifetime gets a cookie whose
/// `Max-Age` is that lifetime: the cookie and the server agree.
#[tokio::test]
async fn a_400_day_persistent_session_has_a_400_day_cookie() {
    let clock = ManualClock::new(T0);
    let store = MemoryStore::new();
    let layer = store_layer(&store, &clock)
        .absolute_lifetime(Duration::from_secs(DAYS_400))
        .idle_timeout(None)
        .persistent(true)
        .build()
        .unwrap();
    let reply = call(&app(layer, clock), "/set", None).await;
    let header = &reply.set_cookie[0];
    assert!(
        header.ends_with(&format!("; Max-Age={DAYS_400}")),
        "{header}"
    );
}

/// Sub-second parts are dropped (documented): 1999 ms is one second.
#[tokio::test]
async fn lifetimes_count_whole_seconds() {
    let clock = ManualClock::new(T0);
    let store = MemoryStore::new();
    let layer = store_layer(&store, &clock)
        .absolute_lifetime(Duration::from_millis(1_999))
        .idle_timeout(Some(Duration::from_millis(1_500)))
        .persistent(true)
        .build()
        .unwrap();
    let reply = call(&app(layer, clock), "/set", None).await;
    assert!(reply.set_cookie[0].ends_with("; Max-Age=1"), "{reply:?}");
}

/// `set_expiry` refuses what the builder refuses: over 400 days, and an
/// idle timeout longer than the lifetime; the session is left unchanged.
#[tokio::test]
async fn set_expiry_refuses_lifetimes_over_400_days_and_idle_over_lifetime() {
    let session = Session::detached();
    session.insert("n", 1).await.unwrap();
    let refused = [
        Expiry::persistent(Duration::MAX),
        Expiry::persistent(Duration::from_secs(DAYS_400 + 1)).with_idle(None),
        Expiry::browser_session(Duration::from_secs(DAYS_400))
            .with_idle(Some(Duration::from_secs(DAYS_400 + 1))),
        Expiry::persistent(Duration::from_secs(60)).with_idle(Some(Duration::from_secs(61))),
    ];
    for expiry in refused {
        let outcome = session.set_expiry(expiry).await;
        let err = outcome.expect_err("refused");
        assert!(matches!(err, SessionError::InvalidExpiry(_)), "{err:?}");
        assert!(
            err.to_string().contains("at most 400 days")
                || err
                    .to_string()
                    .contains("cannot be longer than the lifetime"),
            "{err}"
        );
    }
    session
        .set_expiry(Expiry::persistent(Duration::from_secs(DAYS_400)).with_idle(None))
        .await
        .expect("400 days is accepted");
    session
        .set_expiry(
            Expiry::persistent(Duration::from_secs(60)).with_idle(Some(Duration::from_secs(60))),
        )
        .await
        .expect("an idle timeout as long as the lifetime is accepted");
}

// ---------------------------------------------------------------------------
// 6. A session found expired does not come back
// ---------------------------------------------------------------------------

/// Idle 60 s; written at T0; at T0 + 601 it has expired; when the clock
/// then goes back to T0, it is still gone.
#[tokio::test]
async fn an_expired_memory_session_does_not_come_back_when_the_clock_goes_back() {
    let clock = ManualClock::new(T0);
    let store = MemoryStore::new();
    let layer = store_layer(&store, &clock)
        .idle_timeout(Some(Duration::from_secs(60)))
        .build()
        .unwrap();
    let router = app(layer, clock.clone());
    let cookie = call(&router, "/set", None)
        .await
        .cookie()
        .expect("a cookie");
    clock.set(T0 + 601);
    let reply = call(&router, "/get", Some(&cookie)).await;
    assert_eq!(reply.body, "n=- new=true expired=true");
    clock.set(T0);
    let reply = call(&router, "/get", Some(&cookie)).await;
    assert_eq!(
        reply.body, "n=- new=true expired=true",
        "the session came back"
    );
    assert!(store.is_empty());
}

// ---------------------------------------------------------------------------
// 3. Redis: its clock and the app's
// ---------------------------------------------------------------------------

mod redis_clocks {
    use keepsake::store::RedisStore;

    use super::*;

    fn url() -> Option<String> {
        match std::env::var("KEEPSAKE_TEST_REDIS_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ if std::env::var_os("CI").is_some() => {
                panic!("KEEPSAKE_TEST_REDIS_URL must be set under CI")
            }
            _ => {
                eprintln!("skipping: KEEPSAKE_TEST_REDIS_URL is not set");
                None
            }
        }
    }

    /// Redis's own clock, in Unix seconds.
    async fn redis_now(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
        let (secs, _micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await.unwrap();
        secs
    }

    /// The session's key exists in Redis.
    async fn exists(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> bool {
        redis::cmd("EXISTS")
            .arg(key)
            .query_async::<u64>(conn)
            .await
            .unwrap()
            == 1
    }

    /// What the store's docs say: a session ends at the earlier of the
    /// deadline by the app's clock and the key's native expiry by Redis's
    /// clock. With Redis's clock an hour ahead of the app's, a session
    /// with a 30-minute idle timeout is gone from Redis as it is created
    /// (other servers never see it); with Redis's clock behind, the app's
    /// check ends it on time and its key stays until Redis's clock
    /// reaches the deadline, or a purge removes it.
    #[tokio::test]
    async fn redis_expiry_follows_whichever_clock_ends_the_session_first() {
        let Some(url) = url() else { return };
        let prefix = format!("keepsake-expiry-{}:", Id::random());
        let store = RedisStore::connect(url.as_str())
            .await
            .unwrap()
            .with_prefix(prefix.clone());
        let other = RedisStore::connect(url.as_str())
            .await
            .unwrap()
            .with_prefix(prefix.clone())
            .with_local_cache(0);
        let mut conn = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let redis_now = redis_now(&mut conn).await;

        // Redis's clock an hour ahead of the app's.
        let app_now = redis_now - 3_600;
        let early = Record::new(Id::random(), app_now, Some(1_800), 14 * 86_400);
        assert_eq!(store.create(&early).await.unwrap(), Created::Created);
        let key = format!("{prefix}session:{}", early.id);
        assert!(!exists(&mut conn, &key).await, "Redis expired it at once");
        assert!(other.load(&early.id, app_now).await.unwrap().is_none());
        assert_eq!(store.save(&early, app_now).await.unwrap(), Saved::Gone);

        // Redis's clock an hour behind the app's.
        let app_now = redis_now + 3_600;
        let late = Record::new(Id::random(), app_now, Some(1_800), 14 * 86_400);
        assert_eq!(store.create(&late).await.unwrap(), Created::Created);
        let key = format!("{prefix}session:{}", late.id);
        assert!(
            other
                .load(&late.id, app_now + 1_799)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            other
                .load(&late.id, app_now + 1_800)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            exists(&mut conn, &key).await,
            "the key outlives the deadline"
        );
        assert_eq!(other.purge_expired(app_now + 1_800).await.unwrap(), 1);
        assert!(!exists(&mut conn, &key).await, "the purge removed it");
    }
}
