//! Store failure under load, for real, and Redis commands per request.
//!
//! The fault tests start a spare Redis or PostgreSQL on a free 127.0.0.1
//! port (see `support::servers`), put a real axum app with a `SessionLayer`
//! over it, and drive a bounded load of 20 browsers (each a reqwest client
//! with its own cookies) at about 200 requests per second. The store is
//! crashed 4 s in and started again 8 s in (`SIGKILL` for Redis, `pg_ctl
//! stop -m immediate` for PostgreSQL), or frozen (`SIGSTOP`, a store that
//! hangs) and thawed. Every browser checks its counter, so a fresh session or
//! a lost update shows as a wrong number.
//!
//! The command test counts what the middleware sends to a spare Redis per
//! HTTP request, with `INFO commandstats` and `MONITOR`.
//!
//! The silence test puts a TCP proxy between a `RedisStore` and a spare
//! Redis and freezes it (connection open, nothing passing) while another
//! server changes a session: past one second of silence, the store's local
//! cache must no longer answer the old copy.
//!
//! The memory-limit test sets a spare Redis's `maxmemory` to one byte: the
//! store's writes must be refused whole, and its deletes still go through.
//!
//! They run when `KEEPSAKE_TEST_REDIS_URL` / `KEEPSAKE_TEST_POSTGRES_URL`
//! are set (the machine has the servers), one at a time. Figures and method:
//! docs/FAULTS.md.

#[allow(dead_code)]
mod support;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use keepsake::{
    key::{Key, KeyRing},
    middleware::SessionLayer,
    session::{ManualClock, Session, SessionError},
    store::{Created, Id, Record, RedisStore, Saved, SessionStore, StoreError, StoreErrorKind},
};
use support::{
    faults::{
        Fault, Pattern, PostgresCrash, RedisCrash, SERIAL, Schedule, drop_off_runtime,
        postgres_store, redis_store, router, run, spare_postgres, spare_redis,
    },
    load::{browser, count, serve},
    proxy::{Mode, SlowProxy},
    servers::{self, SparePostgres, SpareRedis, redis_command},
};

/// 20 browsers for 13 s; the store is crashed (or frozen) 4 s in and
/// started again (or thawed) 8 s in.
const SCHEDULE: Schedule = Schedule {
    clients: 20,
    load: Duration::from_secs(13),
    fault: Duration::from_secs(4),
    stall: None,
    back: Duration::from_secs(8),
    recover_within: Duration::from_secs(10),
};

/// Reads `n` only.
async fn read(session: Session) -> Result<String, SessionError> {
    Ok(session.get::<u64>("n").await?.unwrap_or(0).to_string())
}

// ---------------------------------------------------------------------------
// The fault tests
// ---------------------------------------------------------------------------

/// A Redis that hangs instead of dying: `SIGSTOP`, then `SIGCONT`.
#[derive(Debug)]
struct FrozenRedis(SpareRedis);

impl Fault for FrozenRedis {
    fn describe(&self) -> &'static str {
        "redis-server SIGSTOP, then SIGCONT"
    }
    fn begin(&mut self) -> Result<(), String> {
        self.0.signal("STOP")
    }
    fn end(&mut self) -> Result<(), String> {
        self.0.signal("CONT")?;
        // Back once it answers again.
        let deadline = Instant::now() + Duration::from_secs(5);
        while redis_command(self.0.port(), &["PING"]).is_err() {
            if Instant::now() > deadline {
                return Err("no PONG after SIGCONT".to_owned());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

/// A PostgreSQL that hangs: every process of the server `SIGSTOP`ped, then
/// `SIGCONT`inued.
#[derive(Debug)]
struct FrozenPostgres(SparePostgres);

impl Fault for FrozenPostgres {
    fn describe(&self) -> &'static str {
        "every PostgreSQL process SIGSTOP, then SIGCONT"
    }
    fn begin(&mut self) -> Result<(), String> {
        self.0.signal_all("STOP")
    }
    fn end(&mut self) -> Result<(), String> {
        self.0.signal_all("CONT")
    }
}

/// Runs `SCHEDULE` with `fault` against an app over `store`.
async fn fault_run(name: &str, store: impl SessionStore, fault: impl Fault) {
    let (_figures, fault) = run(name, router(store), fault, SCHEDULE, Pattern::Steady).await;
    drop_off_runtime(fault).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_crash_and_restart_under_load() {
    let _serial = SERIAL.lock().await;
    let Some(spare) = spare_redis().await else {
        return;
    };
    let store = redis_store(&spare.url()).await;
    fault_run("redis", store, RedisCrash(spare)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_freeze_and_thaw_under_load() {
    let _serial = SERIAL.lock().await;
    let Some(spare) = spare_redis().await else {
        return;
    };
    let store = redis_store(&spare.url()).await;
    fault_run("redis-frozen", store, FrozenRedis(spare)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crash_and_restart_under_load() {
    let _serial = SERIAL.lock().await;
    let Some(spare) = spare_postgres().await else {
        return;
    };
    let store = postgres_store(&spare.url()).await;
    fault_run("postgres", store, PostgresCrash(spare)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_freeze_and_thaw_under_load() {
    let _serial = SERIAL.lock().await;
    let Some(spare) = spare_postgres().await else {
        return;
    };
    let store = postgres_store(&spare.url()).await;
    fault_run("postgres-frozen", store, FrozenPostgres(spare)).await;
}

// ---------------------------------------------------------------------------
// Redis commands per request
// ---------------------------------------------------------------------------

/// Calls per command since the last `CONFIG RESETSTAT`, from
/// `INFO commandstats`, without the test's own `INFO`, `CONFIG`, `ECHO` and
/// `PING`, the connection handshake (`HELLO`, `CLIENT SETINFO`, `SELECT`,
/// `AUTH`) and `MONITOR`.
fn command_stats(port: u16) -> BTreeMap<String, u64> {
    let info = redis_command(port, &["INFO", "commandstats"]).expect("INFO commandstats");
    info.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("cmdstat_")?;
            let (name, stats) = rest.split_once(':')?;
            let calls = stats.split(',').find_map(|s| s.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.trim().parse().ok()?))
        })
        .filter(|(name, _): &(String, u64)| {
            let base = name.split('|').next().unwrap_or(name);
            !matches!(
                base,
                "info" | "config" | "echo" | "ping" | "hello" | "select" | "auth" | "monitor"
            ) && name != "client|setinfo"
        })
        .collect()
}

/// One phase's measurement.
#[derive(Debug)]
struct Phase {
    requests: u64,
    /// Every command Redis counted (scripts' inner commands included).
    all: BTreeMap<String, u64>,
    /// Commands sent by the app (round trips), from `MONITOR`.
    sent: BTreeMap<String, u64>,
}

impl Phase {
    fn per_request(&self, counts: &BTreeMap<String, u64>, only: Option<&str>) -> f64 {
        let total: u64 = counts
            .iter()
            .filter(|(name, _)| only.is_none_or(|only| *name == only))
            .map(|(_, calls)| calls)
            .sum();
        total as f64 / self.requests as f64
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_commands_per_request() {
    let _serial = SERIAL.lock().await;
    let Some(spare) = spare_redis().await else {
        return;
    };
    let port = spare.port();
    let mut monitor = match spare.monitor() {
        Ok(monitor) => monitor,
        Err(reason) => {
            servers::skip_or_fail(&format!("no redis-cli monitor: {reason}"));
            return;
        }
    };
    // Simulated time from the real now: Redis expires keys by its own clock.
    let now = unix_now();
    let clock = ManualClock::new(now);
    let store = RedisStore::connect(&spare.url())
        .await
        .expect("connect to the spare Redis");
    let layer = SessionLayer::with_store(store, KeyRing::new(Key::generate()))
        .secure(false)
        .idle_timeout(Some(Duration::from_secs(600)))
        .clock(clock.clone())
        .build()
        .expect("layer");
    let app = serve(
        Router::new()
            .route("/count", get(count))
            .route("/get", get(read))
            .layer(layer),
    )
    .await;
    let client = browser();
    let get = |path: &'static str| {
        let client = client.clone();
        let url = format!("{}{path}", app.base);
        async move {
            let response = client.get(url).send().await.expect("request");
            assert_eq!(response.status(), 200, "{path}");
            response.text().await.expect("body")
        }
    };

    // Warm up: create, save, read, touch (each script loaded once).
    assert_eq!(get("/count").await, "1");
    assert_eq!(get("/count").await, "2");
    assert_eq!(get("/get").await, "2");
    clock.advance(61);
    assert_eq!(get("/get").await, "2");

    let mut measure = async |requests: u64, path: &'static str, advance: u64| {
        monitor.mark().expect("monitor");
        redis_command(port, &["CONFIG", "RESETSTAT"]).expect("CONFIG RESETSTAT");
        for _ in 0..requests {
            clock.advance(advance);
            get(path).await;
        }
        let all = command_stats(port);
        let mut sent = BTreeMap::new();
        for seen in monitor.mark().expect("monitor") {
            if !seen.in_script {
                *sent.entry(seen.name).or_insert(0) += 1;
            }
        }
        Phase {
            requests,
            all,
            sent,
        }
    };
    let reads = measure(200, "/get", 0).await;
    let writes = measure(200, "/count", 0).await;
    // One request per simulated second, 600 s idle timeout: a touch is
    // due once a tenth of it (60 s) has passed.
    let steady = measure(600, "/get", 1).await;
    assert_eq!(get("/get").await, "202");
    drop(app);
    drop(monitor);
    tokio::task::spawn_blocking(move || drop(spare))
        .await
        .expect("join");

    for (name, phase) in [
        ("read-only", &reads),
        ("modifying", &writes),
        ("steady read-only, 1 s apart", &steady),
    ] {
        println!(
            "redis commands per request [{name}, {} requests]: sent by the app {:.3} {:?}; \
             all counted by INFO commandstats (script internals included) {:.3} {:?}",
            phase.requests,
            phase.per_request(&phase.sent, None),
            phase.sent,
            phase.per_request(&phase.all, None),
            phase.all,
        );
    }
    let touches = steady.per_request(&steady.sent, Some("evalsha"));
    println!("redis touches per request [steady read-only, 1 s apart, idle 600 s]: {touches:.4}");

    // A read-only request is at most one GET (with the local cache, none
    // once the session is cached; a GET the cache keeps goes after `CLIENT
    // CACHING YES`, in the same write), by both counts.
    assert!(reads.per_request(&reads.all, None) <= 1.0, "{reads:?}");
    assert!(reads.per_request(&reads.sent, None) <= 1.0, "{reads:?}");
    // A modifying request: at most a GET and one EVALSHA (the
    // compare-and-set; with the cache, `CLIENT CACHING YES` and the
    // EVALSHA, and no GET).
    assert!(writes.per_request(&writes.sent, None) <= 2.0, "{writes:?}");
    // What Redis counted is what the app sent plus what scripts ran inside
    // (Redis counts `CLIENT CACHING` as `client|caching`).
    for phase in [&reads, &writes, &steady] {
        for (name, calls) in &phase.sent {
            let all: u64 = phase
                .all
                .iter()
                .filter(|(counted, _)| {
                    *counted == name
                        || counted
                            .strip_prefix(name.as_str())
                            .is_some_and(|rest| rest.starts_with('|'))
                })
                .map(|(_, calls)| calls)
                .sum();
            assert!(all >= *calls, "{phase:?}");
        }
    }
    assert!(touches <= 0.1, "{steady:?}");
    assert!(steady.per_request(&steady.sent, None) <= 1.1, "{steady:?}");
}

// ---------------------------------------------------------------------------
// The local cache after a second of silence
// ---------------------------------------------------------------------------

/// The command timeout of the store behind the frozen proxy.
const SILENT_TIMEOUT: Duration = Duration::from_millis(300);
/// How long after the freeze the stale copy must no longer be served: the
/// store's one second of trust, plus a margin.
const PAST_TRUST: Duration = Duration::from_millis(1_500);
/// A load that has not answered by then, past its own command timeout, hung.
const LOAD_BOUND: Duration = SILENT_TIMEOUT.saturating_add(Duration::from_millis(1_200));
/// How long the store may take to read the new version once the proxy
/// passes again.
const RECOVERY: Duration = Duration::from_secs(5);

/// What a load bounded by [`LOAD_BOUND`] got.
type Bounded = Result<Result<Option<Record>, StoreError>, tokio::time::error::Elapsed>;

async fn bounded_load(store: &RedisStore, id: &Id, now: u64) -> Bounded {
    tokio::time::timeout(LOAD_BOUND, store.load(id, now)).await
}

/// The store's connection to Redis goes silent without closing (a proxy
/// that forwards nothing, either way), and another server changes the
/// session meanwhile, whose invalidation therefore cannot arrive. The
/// cached copy may still be served for the first second; once Redis has not
/// been heard from for more than a second, a load goes to Redis (and times
/// out) instead of answering the old copy; once the connection passes
/// again, the new version is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cache_is_not_trusted_after_a_second_of_silence() {
    let _serial = SERIAL.lock().await;
    let Some(spare) = spare_redis().await else {
        return;
    };
    let port = spare.port();
    let proxy = SlowProxy::start(port, Duration::ZERO).await.expect("proxy");
    let control = proxy.control();
    let prefix = format!("faults-silence-{}:", std::process::id());
    let store = RedisStore::connect(&format!("redis://127.0.0.1:{}", proxy.port()))
        .await
        .expect("connect through the proxy")
        .with_prefix(prefix.clone())
        .with_command_timeout(SILENT_TIMEOUT);
    // Another app server, straight to Redis, without a cache.
    let other = RedisStore::connect(&spare.url())
        .await
        .expect("connect to the spare Redis")
        .with_prefix(prefix)
        .with_local_cache(0);
    let now = unix_now();

    let mut old = Record::new(Id::random(), now, Some(600), 3_600);
    old.data.insert("step".into(), serde_json::json!("old"));
    assert_eq!(store.create(&old).await.expect("create"), Created::Created);
    let loaded = store.load(&old.id, now).await.expect("first load");
    assert_eq!(loaded.as_ref(), Some(&old));
    // The second load is the cache's: Redis runs no GET for it.
    redis_command(port, &["CONFIG", "RESETSTAT"]).expect("CONFIG RESETSTAT");
    let loaded = store.load(&old.id, now).await.expect("second load");
    assert_eq!(loaded.as_ref(), Some(&old));
    let stats = command_stats(port);
    assert!(
        !stats.contains_key("get"),
        "the second load was not served from the cache: {stats:?}"
    );

    // Silence: the connection stays open, nothing passes. Redis was last
    // heard from before this instant.
    control.set(Mode::Stall);
    let frozen = Instant::now();

    let mut new = old.clone();
    new.data.insert("step".into(), serde_json::json!("new"));
    assert_eq!(
        other.save(&new, now).await.expect("save straight to Redis"),
        Saved::Saved { version: 1 }
    );

    // Within the first second the old copy may still be served.
    let early = bounded_load(&store, &old.id, now).await;
    println!(
        "silence: load {:?} after the freeze: {}",
        frozen.elapsed(),
        describe(&early, &old)
    );

    tokio::time::sleep(PAST_TRUST.saturating_sub(frozen.elapsed())).await;
    let asked = frozen.elapsed();
    let started = Instant::now();
    let late = bounded_load(&store, &old.id, now).await;
    let took = started.elapsed();
    println!(
        "silence: load {asked:?} after the freeze: {} (took {took:?})",
        describe(&late, &old)
    );

    // The connection passes again: the new version is read.
    control.set(Mode::Pass);
    let thawed = Instant::now();
    let mut recovered = None;
    let mut last = None;
    while thawed.elapsed() < RECOVERY {
        let got = bounded_load(&store, &old.id, now).await;
        if let Ok(Ok(Some(record))) = &got
            && record.version == 1
            && record.data.get("step") == Some(&serde_json::json!("new"))
        {
            recovered = Some(thawed.elapsed());
            break;
        }
        last = Some(describe(&got, &old));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("silence: new version read {recovered:?} after the thaw (last miss: {last:?})");

    let deleted = other.delete(&old.id).await;
    drop(store);
    drop(other);
    drop(proxy);
    tokio::task::spawn_blocking(move || drop(spare))
        .await
        .expect("join");

    match late {
        Err(_) => panic!(
            "a load {asked:?} after the freeze hung: no answer within {LOAD_BOUND:?} \
             (command timeout {SILENT_TIMEOUT:?})"
        ),
        Ok(Ok(Some(record))) if record == old => panic!(
            "a load {asked:?} after the freeze served the old copy from the cache \
             (Redis silent for over a second)"
        ),
        Ok(Ok(answer)) => {
            panic!("a load {asked:?} after the freeze answered although nothing passes: {answer:?}")
        }
        Ok(Err(err)) => assert!(
            matches!(
                err.kind(),
                StoreErrorKind::Timeout | StoreErrorKind::Unavailable
            ),
            "a load {asked:?} after the freeze: {err}"
        ),
    }
    assert!(
        recovered.is_some(),
        "the new version was not read within {RECOVERY:?} of the thaw; last: {last:?}"
    );
    assert!(deleted.expect("delete the session"), "the session was gone");
}

/// The store's connection is forgotten on the way (a firewall or NAT that
/// dropped it: nothing passes, nothing closes), while new connections pass.
/// A command that times out with Redis silent on the connection makes the
/// store connect again, so loads and saves work again at once instead of
/// timing out until TCP gives up, many minutes later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_connects_again_when_its_connection_goes_silent() {
    let _serial = SERIAL.lock().await;
    let Some(spare) = spare_redis().await else {
        return;
    };
    let proxy = SlowProxy::start(spare.port(), Duration::ZERO)
        .await
        .expect("proxy");
    let control = proxy.control();
    let store = RedisStore::connect(&format!("redis://127.0.0.1:{}", proxy.port()))
        .await
        .expect("connect through the proxy")
        .with_prefix(format!("faults-forgotten-{}:", std::process::id()))
        .with_command_timeout(SILENT_TIMEOUT)
        // Every load goes to Redis.
        .with_local_cache(0);
    let now = unix_now();
    let mut record = Record::new(Id::random(), now, Some(600), 3_600);
    assert_eq!(
        store.create(&record).await.expect("create"),
        Created::Created
    );

    // Loads: the first one after the connection is forgotten may time out;
    // within a few more, one goes through on a new connection.
    control.forget_open();
    let mut loads = Vec::new();
    for _ in 0..4 {
        let got = bounded_load(&store, &record.id, now).await;
        let ok = matches!(&got, Ok(Ok(Some(loaded))) if *loaded == record);
        loads.push(describe(&got, &record));
        if ok {
            break;
        }
    }
    // Saves, which go through the store's batching task.
    control.forget_open();
    let mut saves = Vec::new();
    for _ in 0..4 {
        record
            .data
            .insert("n".into(), serde_json::json!(saves.len()));
        let got = tokio::time::timeout(LOAD_BOUND, store.save(&record, now)).await;
        saves.push(format!("{got:?}"));
        if let Ok(Ok(Saved::Saved { version })) = got {
            record.version = version;
            break;
        }
    }
    let deleted = store.delete(&record.id).await;
    drop(store);
    drop(proxy);
    tokio::task::spawn_blocking(move || drop(spare))
        .await
        .expect("join");
    println!("forgotten connection: loads {loads:?}; saves {saves:?}");
    assert!(
        loads.len() <= 2 && loads.last().is_some_and(|last| last == "the old copy"),
        "loads after the connection was forgotten: {loads:?}"
    );
    assert!(
        saves.len() <= 2 && saves.last().is_some_and(|last| last.contains("Saved")),
        "saves after the connection was forgotten: {saves:?}"
    );
    assert!(deleted.expect("delete the session"), "the session was gone");
}

/// The real time, in seconds since 1970.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// A bounded load's outcome, for messages.
fn describe(got: &Bounded, old: &Record) -> String {
    match got {
        Err(_) => format!("no answer within {LOAD_BOUND:?}"),
        Ok(Ok(Some(record))) if record == old => "the old copy".to_owned(),
        Ok(Ok(Some(record))) => format!("version {} {:?}", record.version, record.data),
        Ok(Ok(None)) => "no session".to_owned(),
        Ok(Err(err)) => format!("error {:?}: {err}", err.kind()),
    }
}

// ---------------------------------------------------------------------------
// Redis over its memory limit
// ---------------------------------------------------------------------------

/// Redis at its `maxmemory` with `noeviction` refuses the writes that would
/// grow it: the store's create, save (also several at once, which the
/// store sends in batches) and touch fail as `Unavailable` (the middleware answers 503) and
/// write nothing, while a delete, which frees memory, still goes through.
/// Once there is room again, saves work as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_maxmemory_refuses_session_writes_and_keeps_deletes() {
    let _serial = SERIAL.lock().await;
    let Some(spare) = spare_redis().await else {
        return;
    };
    let port = spare.port();
    let config = |key: &str, value: &str| {
        redis_command(port, &["CONFIG", "SET", key, value]).expect("CONFIG SET")
    };
    let store = RedisStore::connect(&spare.url())
        .await
        .expect("connect to the spare Redis");
    let now = unix_now();
    let mut records = Vec::new();
    for n in 0..4 {
        let mut record = Record::new(Id::random(), now, Some(600), 3_600);
        record.data.insert("n".into(), serde_json::json!(n));
        assert_eq!(
            store.create(&record).await.expect("create"),
            Created::Created
        );
        records.push(record);
    }

    // One byte: every command that may grow the data set is refused.
    config("maxmemory-policy", "noeviction");
    config("maxmemory", "1");
    let refused = |what: &str, result: Result<(), StoreError>| {
        let err = result.expect_err(what);
        assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{what}: {err}");
    };
    let fresh = Record::new(Id::random(), now, Some(600), 3_600);
    refused("create", store.create(&fresh).await.map(drop));
    let saves = records.iter().map(|record| {
        let mut changed = record.clone();
        changed
            .data
            .insert("n".into(), serde_json::json!("changed"));
        let store = store.clone();
        async move { store.save(&changed, now).await.map(drop) }
    });
    for result in futures_util::future::join_all(saves).await {
        refused("save", result);
    }
    refused(
        "touch",
        store
            .touch(&records[0].id, 0, now + 900, now)
            .await
            .map(drop),
    );
    assert!(
        store
            .delete(&records[3].id)
            .await
            .expect("delete under OOM"),
        "a delete frees memory and goes through"
    );

    config("maxmemory", "0");
    assert_eq!(store.load(&fresh.id, now).await.expect("load"), None);
    for record in &records[..3] {
        let stored = store.load(&record.id, now).await.expect("load");
        assert_eq!(
            stored.as_ref(),
            Some(record),
            "nothing of the refused writes"
        );
    }
    assert_eq!(store.load(&records[3].id, now).await.expect("load"), None);
    assert_eq!(
        store.save(&records[0], now).await.expect("save after"),
        Saved::Saved { version: 1 }
    );
}
