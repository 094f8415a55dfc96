//! The fault load shared by `faults.rs` and `faults_long.rs`: browsers
//! (reqwest clients with their own cookies) that each send one request
//! every `PACE` to a real axum app with a `SessionLayer` over a store, while
//! a [`Fault`] is started and ended on a [`Schedule`]; then every answer is
//! checked. See [`run`] for what is asserted.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use keepsake::store::{PostgresStore, RedisStore, SessionStore};

use super::{
    load::{
        Outcome, PANICS, STORE_TIMEOUT, Sample, browser, count, count_panics, layer, paced_load,
        request, serve,
    },
    servers::{self, SparePostgres, SpareRedis},
};

/// The scenarios run one at a time: each is a load, and each counts panics
/// and reads the process's memory.
pub(crate) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Each browser's pace: 10 requests per second.
const PACE: Duration = Duration::from_millis(100);
/// A request slower than this during the outage is a hang: two store calls
/// (load, save) of one timeout each, plus a generous margin for a loaded
/// 2-core machine. The expected figure (timeout + 50 ms) is reported.
const HANG_BOUND: Duration = Duration::from_millis(2 * 400 + 1_500);
/// The test process's resident memory may grow by at most this much over a
/// scenario (a leak of per-request state would exceed it at 300 req/s,
/// the longer tests' rate).
const RSS_GROWTH_BOUND_KB: u64 = 256 * 1024;

/// How many browsers, and when things happen, since the load's start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    /// Browsers, each with its own session.
    pub(crate) clients: usize,
    /// The load's length; it stops by itself.
    pub(crate) load: Duration,
    /// The fault begins (crash, lock, proxy slow).
    pub(crate) fault: Duration,
    /// The proxy stalls (slow-store scenarios only).
    pub(crate) stall: Option<Duration>,
    /// The store is given back (restart, unlock, proxy passes).
    pub(crate) back: Duration,
    /// Every browser must be served again within this of the store's
    /// return.
    pub(crate) recover_within: Duration,
}

/// How the browsers send.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pattern {
    /// One request per `PACE` each, all the time.
    Steady,
    /// Requests for `on`, then silence for `off`, repeated.
    Bursts { on: Duration, off: Duration },
}

/// The test process's resident set size in KiB (`VmRSS`).
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmRSS:")?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

/// The app: `/count` adds one to the session's counter.
pub(crate) fn router(store: impl SessionStore) -> Router {
    Router::new()
        .route("/count", get(count))
        .layer(layer(store))
}

// ---------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------

/// A fault the test can start and end; the methods may block.
pub(crate) trait Fault: Send + 'static {
    /// What the outage is, for the printed figures.
    fn describe(&self) -> &'static str;
    /// The fault begins.
    fn begin(&mut self) -> Result<(), String>;
    /// The second stage (the proxy stalls); nothing by default.
    fn stall(&mut self) -> Result<(), String> {
        Ok(())
    }
    /// The store is given back; returns once it serves again.
    fn end(&mut self) -> Result<(), String>;
}

/// Redis killed (`SIGKILL`) and started again on the same port and AOF.
#[derive(Debug)]
pub(crate) struct RedisCrash(pub(crate) SpareRedis);

impl Fault for RedisCrash {
    fn describe(&self) -> &'static str {
        "redis-server SIGKILL, then started again"
    }
    fn begin(&mut self) -> Result<(), String> {
        self.0.kill();
        Ok(())
    }
    fn end(&mut self) -> Result<(), String> {
        self.0.restart()
    }
}

/// PostgreSQL stopped as a crash (`pg_ctl stop -m immediate`) and started
/// again (crash recovery).
#[derive(Debug)]
pub(crate) struct PostgresCrash(pub(crate) SparePostgres);

impl Fault for PostgresCrash {
    fn describe(&self) -> &'static str {
        "pg_ctl stop -m immediate, then pg_ctl start"
    }
    fn begin(&mut self) -> Result<(), String> {
        self.0.crash()
    }
    fn end(&mut self) -> Result<(), String> {
        self.0.restart()
    }
}

// ---------------------------------------------------------------------------
// The load and its figures
// ---------------------------------------------------------------------------

/// The worst delay a [`StallWatch`] saw, and when it began (since the
/// load's start).
#[derive(Debug, Clone, Copy, Default)]
struct Worst {
    late: Duration,
    at: Duration,
}

impl Worst {
    fn see(&mut self, late: Duration, at: Duration) {
        if late > self.late {
            *self = Self { late, at };
        }
    }
}

/// A thread that sleeps 20 ms at a time and records how late it wakes: a
/// stall of the whole test process (the machine starved it of CPU), which
/// no store or library can cause in a plain thread. Every 100 ms it also
/// writes a byte to a file of its own under Cargo's test temp dir, where the
/// spare servers keep their data, and times the `fsync`: a disk that stalls
/// stalls a store that syncs its writes (no spare does since 2026-12-07,
/// but the machine's own servers may).
/// Both are printed with the figures, so a failure on a starved or stalled
/// machine says so.
#[derive(Debug)]
struct StallWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(Worst, Worst)>,
}

impl StallWatch {
    fn start(start: Instant) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("fsync-watch-{}", std::process::id()));
            let mut file = std::fs::File::create(&path).ok();
            let tick = Duration::from_millis(20);
            let (mut cpu, mut disk) = (Worst::default(), Worst::default());
            let mut ticks = 0_u32;
            while !flag.load(Ordering::SeqCst) {
                let before = Instant::now();
                std::thread::sleep(tick);
                cpu.see(
                    before.elapsed().saturating_sub(tick),
                    before.duration_since(start),
                );
                ticks += 1;
                if let Some(file) = file.as_mut().filter(|_| ticks.is_multiple_of(5)) {
                    let before = Instant::now();
                    if std::io::Write::write_all(file, b"x").is_ok() && file.sync_data().is_ok() {
                        disk.see(before.elapsed(), before.duration_since(start));
                    }
                }
            }
            drop(file);
            let _ = std::fs::remove_file(path);
            (cpu, disk)
        });
        Self { stop, thread }
    }

    /// Stops the watch and says what it saw.
    fn finish(self) -> String {
        self.stop.store(true, Ordering::SeqCst);
        let (cpu, disk) = self.thread.join().unwrap_or_default();
        format!(
            "test process stalled at most {}ms (at {:.2}s), an fsync under target/tmp took at most {}ms (at {:.2}s)",
            cpu.late.as_millis(),
            cpu.at.as_secs_f64(),
            disk.late.as_millis(),
            disk.at.as_secs_f64(),
        )
    }
}

/// When the fault actually happened (the commands' real instants).
#[derive(Debug, Clone, Copy, Default)]
struct Timeline {
    /// The fault was started.
    fault: Duration,
    /// The fault's command returned (a crash can take a while).
    begun: Duration,
    /// The second stage was started (proxy stall), if any.
    stall: Option<Duration>,
    /// The store-back command was started.
    restart: Duration,
    /// The store served again (command returned): its return.
    back: Duration,
}

/// The figures of one run.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    pub(crate) requests: usize,
    pub(crate) ok: usize,
    pub(crate) unavailable: usize,
    /// 503s answered during the proxy's slow phase / its stall (slow-store
    /// scenarios).
    pub(crate) unavailable_slow: usize,
    pub(crate) unavailable_stall: usize,
    pub(crate) without_retry_after: usize,
    pub(crate) set_cookie_on_503: usize,
    pub(crate) other_status: usize,
    pub(crate) first_other: Option<u16>,
    pub(crate) transport: usize,
    pub(crate) first_transport: Option<String>,
    /// 200s that set a cookie after the session existed: a new session.
    pub(crate) fresh_sessions: usize,
    /// 200s whose counter went back or stayed: an update lost.
    pub(crate) lost_updates: usize,
    /// Counter jumps with no 503 in between (should never happen).
    pub(crate) unexplained_jumps: usize,
    /// Increments the store applied while the request got a 503 (the
    /// outage cut the reply): the next 200 is previous + 2.
    pub(crate) applied_but_503: u64,
    /// 503s answered before the fault began, and when the first was sent.
    pub(crate) early_503: usize,
    pub(crate) first_early_503: Option<Duration>,
    /// 503s sent more than one store timeout after the store was back.
    pub(crate) late_503: usize,
    /// 503s after a browser's first 200 since the return (but not late).
    pub(crate) relapse_503: usize,
    /// Requests sent during the outage, and their p50 / p99 / worst latency.
    pub(crate) outage_requests: usize,
    pub(crate) outage_p50: Duration,
    pub(crate) outage_p99: Duration,
    pub(crate) outage_worst: Duration,
    /// p99 / worst time to a 503 (all 503s): how soon a failing store is
    /// reported.
    pub(crate) unavailable_p99: Duration,
    pub(crate) unavailable_worst: Duration,
    /// The same for the slow phase only (slow-store scenarios).
    pub(crate) slow_p99: Option<Duration>,
    /// p99 of requests sent outside the outage.
    pub(crate) normal_p99: Duration,
    /// From the store's return to the first 200 (any browser), and until
    /// every browser had one.
    pub(crate) recovery_first: Option<Duration>,
    pub(crate) recovery_all: Option<Duration>,
    pub(crate) unrecovered: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn analyse(per_client: &[Vec<Sample>], t: Timeline, expect_outage: bool) -> Figures {
    let mut f = Figures::default();
    let mut outage = Vec::new();
    let mut slow = Vec::new();
    let mut normal = Vec::new();
    let mut failing = Vec::new();
    let mut recoveries = Vec::new();
    for samples in per_client {
        let mut last = 1_u64;
        let mut failed_since_last = false;
        let mut recovered: Option<Duration> = None;
        for sample in samples {
            f.requests += 1;
            let latency = sample.done.saturating_sub(sample.sent);
            let in_outage = expect_outage && sample.sent >= t.fault && sample.sent <= t.back;
            if in_outage {
                outage.push(latency);
                if t.stall.is_some_and(|stall| sample.sent < stall) {
                    slow.push(latency);
                }
            } else {
                normal.push(latency);
            }
            match &sample.outcome {
                Outcome::Ok { value, set_cookie } => {
                    f.ok += 1;
                    f.fresh_sessions += usize::from(*set_cookie);
                    let value = *value;
                    if value <= last {
                        f.lost_updates += 1;
                    } else if value > last + 1 {
                        if failed_since_last {
                            f.applied_but_503 += value - last - 1;
                        } else {
                            f.unexplained_jumps += 1;
                        }
                    }
                    last = value;
                    failed_since_last = false;
                    if expect_outage && recovered.is_none() && sample.done >= t.back {
                        recovered = Some(sample.done - t.back);
                    }
                }
                Outcome::Unavailable {
                    retry_after,
                    set_cookie,
                } => {
                    f.unavailable += 1;
                    failing.push(latency);
                    failed_since_last = true;
                    f.without_retry_after += usize::from(!retry_after);
                    f.set_cookie_on_503 += usize::from(*set_cookie);
                    if !expect_outage || sample.done < t.fault {
                        f.early_503 += 1;
                        let first = f.first_early_503.get_or_insert(sample.sent);
                        *first = (*first).min(sample.sent);
                    }
                    f.relapse_503 += usize::from(recovered.is_some());
                    f.late_503 +=
                        usize::from(expect_outage && sample.sent > t.back + STORE_TIMEOUT);
                    if let Some(stall) = t.stall {
                        if sample.done >= t.fault && sample.done < stall {
                            f.unavailable_slow += 1;
                        } else if sample.done >= stall {
                            f.unavailable_stall += 1;
                        }
                    }
                }
                Outcome::Other(status) => {
                    f.other_status += 1;
                    f.first_other.get_or_insert(*status);
                }
                Outcome::Transport(err) => {
                    f.transport += 1;
                    f.first_transport.get_or_insert_with(|| err.clone());
                }
            }
        }
        if expect_outage {
            match recovered {
                Some(after) => recoveries.push(after),
                None => f.unrecovered += 1,
            }
        }
    }
    outage.sort();
    slow.sort();
    normal.sort();
    failing.sort();
    f.unavailable_p99 = percentile(&failing, 0.99);
    f.unavailable_worst = failing.last().copied().unwrap_or_default();
    f.outage_requests = outage.len();
    f.outage_p50 = percentile(&outage, 0.50);
    f.outage_p99 = percentile(&outage, 0.99);
    f.outage_worst = outage.last().copied().unwrap_or_default();
    f.slow_p99 = t.stall.map(|_| percentile(&slow, 0.99));
    f.normal_p99 = percentile(&normal, 0.99);
    f.recovery_first = recoveries.iter().min().copied();
    f.recovery_all = recoveries.iter().max().copied();
    f
}

/// Runs the load against `router` with `fault` on `schedule`; asserts the
/// figures and returns them with the fault (to be dropped by the caller, off
/// the runtime: dropping a server blocks).
pub(crate) async fn run<F: Fault>(
    name: &str,
    router: Router,
    fault: F,
    schedule: Schedule,
    pattern: Pattern,
) -> (Figures, F) {
    count_panics();
    let expect_outage = schedule.fault < schedule.load;
    let panics_before = PANICS.load(Ordering::SeqCst);
    let app = serve(router).await;
    let url = format!("{}/count", app.base);

    let mut browsers = Vec::new();
    for _ in 0..schedule.clients {
        let client = browser();
        match request(&client, &url).await {
            Outcome::Ok {
                value: 1,
                set_cookie: true,
            } => {}
            other => panic!("{name}: warm-up request: {other:?}"),
        }
        browsers.push(client);
    }
    let rss_before = rss_kb();

    let start = Instant::now();
    let end = start + schedule.load;
    let stalls = StallWatch::start(start);
    let faults = std::thread::spawn(move || {
        let mut fault = fault;
        let mut timeline = Timeline::default();
        if !expect_outage {
            return (fault, Ok(()), timeline);
        }
        std::thread::sleep(schedule.fault.saturating_sub(start.elapsed()));
        timeline.fault = start.elapsed();
        let mut result = fault.begin();
        timeline.begun = start.elapsed();
        if let Some(stall) = schedule.stall {
            std::thread::sleep(stall.saturating_sub(start.elapsed()));
            timeline.stall = Some(start.elapsed());
            result = result.and_then(|()| fault.stall());
        }
        std::thread::sleep(schedule.back.saturating_sub(start.elapsed()));
        timeline.restart = start.elapsed();
        let result = result.and_then(|()| fault.end());
        timeline.back = start.elapsed();
        (fault, result, timeline)
    });

    let quiet = move |sent: Duration| match pattern {
        Pattern::Steady => false,
        Pattern::Bursts { on, off } => sent.as_millis() % (on + off).as_millis() >= on.as_millis(),
    };
    let per_client = paced_load(browsers, &url, (start, end), PACE, quiet).await;
    let rss_after = rss_kb();
    let stall = stalls.finish();
    let (fault, result, timeline) = tokio::task::spawn_blocking(move || faults.join())
        .await
        .expect("join")
        .expect("the fault thread");
    let server_alive = !app.task.is_finished();
    drop(app);
    let panics = PANICS.load(Ordering::SeqCst) - panics_before;
    if let Err(err) = result {
        panic!("{name}: starting or ending the fault failed: {err}");
    }

    let f = analyse(&per_client, timeline, expect_outage);
    let secs = |d: Option<Duration>| {
        d.map_or_else(
            || "never".to_owned(),
            |d| format!("{:.2}s", d.as_secs_f64()),
        )
    };
    let ms = |d: Duration| d.as_millis();
    let t = timeline;
    let rate = f.requests as f64 / schedule.load.as_secs_f64();
    println!(
        "faults[{name}]: fault: {}; load {:?}, {} clients, {pattern:?}, \
         store timeout {STORE_TIMEOUT:?} | fault {:.2}-{:.2}s, stall {}, restart {:.2}s, back {:.2}s | \
         requests={} ({rate:.0}/s) 200={} 503={} (slow phase {}, stall {}; without Retry-After {}, \
         with Set-Cookie {}) other_status={} transport_errors={} panics={panics} \
         server_alive={server_alive} | fresh_sessions={} lost_updates={} unexplained_jumps={} \
         applied_but_503={} | 503 outside the outage: before={} after_back+timeout={} \
         after_recovery={} | outage latency over {} requests: p50={}ms p99={}ms worst={}ms \
         (slow phase p99 {}) normal p99={}ms | time to a 503: p99={}ms worst={}ms | recovery after back: first={} all={} | \
         rss before={} KiB after={} KiB growth={} KiB | {stall}",
        fault.describe(),
        schedule.load,
        schedule.clients,
        t.fault.as_secs_f64(),
        t.begun.as_secs_f64(),
        t.stall
            .map_or_else(|| "-".to_owned(), |s| format!("{:.2}s", s.as_secs_f64())),
        t.restart.as_secs_f64(),
        t.back.as_secs_f64(),
        f.requests,
        f.ok,
        f.unavailable,
        f.unavailable_slow,
        f.unavailable_stall,
        f.without_retry_after,
        f.set_cookie_on_503,
        f.other_status,
        f.transport,
        f.fresh_sessions,
        f.lost_updates,
        f.unexplained_jumps,
        f.applied_but_503,
        f.early_503,
        f.late_503,
        f.relapse_503,
        f.outage_requests,
        ms(f.outage_p50),
        ms(f.outage_p99),
        ms(f.outage_worst),
        f.slow_p99
            .map_or_else(|| "-".to_owned(), |d| format!("{}ms", d.as_millis())),
        ms(f.normal_p99),
        ms(f.unavailable_p99),
        ms(f.unavailable_worst),
        secs(f.recovery_first),
        secs(f.recovery_all),
        rss_before,
        rss_after,
        rss_after.saturating_sub(rss_before),
    );

    assert_eq!(panics, 0, "{name}: panics");
    assert!(server_alive, "{name}: the server task ended");
    assert_eq!(
        f.transport, 0,
        "{name}: requests without an HTTP answer, e.g. {:?} ({stall})",
        f.first_transport
    );
    assert_eq!(
        f.other_status, 0,
        "{name}: statuses other than 200 and 503, e.g. {:?}",
        f.first_other
    );
    if expect_outage {
        assert!(f.unavailable > 0, "{name}: the outage was never seen");
    }
    assert_eq!(f.without_retry_after, 0, "{name}: 503 without Retry-After");
    assert_eq!(f.set_cookie_on_503, 0, "{name}: a 503 changed the cookie");
    assert_eq!(f.fresh_sessions, 0, "{name}: fresh sessions minted");
    assert_eq!(f.lost_updates, 0, "{name}: counters went back");
    assert_eq!(f.unexplained_jumps, 0, "{name}: counters jumped");
    assert_eq!(
        f.early_503, 0,
        "{name}: 503s outside any outage, the first sent at {:?} ({stall})",
        f.first_early_503
    );
    assert_eq!(
        f.late_503, 0,
        "{name}: 503s sent more than the store timeout after the store was back"
    );
    // A 503 after a browser's first success but within the timeout of the
    // store's return (a request queued behind work the outage left on a
    // connection) is reported, not failed: the window allows the timeout.
    assert!(
        f.outage_worst <= HANG_BOUND,
        "{name}: a request hung {:?} during the outage",
        f.outage_worst
    );
    assert_eq!(f.unrecovered, 0, "{name}: browsers that never recovered");
    if expect_outage {
        assert!(
            f.recovery_all.is_some_and(|d| d <= schedule.recover_within),
            "{name}: recovery took {:?}",
            f.recovery_all
        );
    }
    assert!(
        rss_after <= rss_before + RSS_GROWTH_BOUND_KB,
        "{name}: resident memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    (f, fault)
}

/// Drops a fault (and the server it holds) off the runtime.
pub(crate) async fn drop_off_runtime<T: Send + 'static>(value: T) {
    tokio::task::spawn_blocking(move || drop(value))
        .await
        .expect("join");
}

// ---------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------

/// A spare server of the test's own, started by `start` off the runtime, or
/// `None` when `var` is unset (skipped; a failure under CI).
async fn spare<S: Send + 'static>(
    var: &str,
    what: &str,
    start: fn() -> Result<S, String>,
) -> Option<S> {
    if !servers::gate(var) {
        return None;
    }
    match tokio::task::spawn_blocking(start).await.expect("join") {
        Ok(spare) => Some(spare),
        Err(reason) => {
            servers::skip_or_fail(&format!("no spare {what}: {reason}"));
            None
        }
    }
}

/// A spare Redis of the test's own, or `None` when skipped.
pub(crate) async fn spare_redis() -> Option<SpareRedis> {
    spare("KEEPSAKE_TEST_REDIS_URL", "Redis", SpareRedis::start).await
}

/// A spare PostgreSQL of the test's own, or `None` when skipped.
pub(crate) async fn spare_postgres() -> Option<SparePostgres> {
    spare(
        "KEEPSAKE_TEST_POSTGRES_URL",
        "PostgreSQL",
        SparePostgres::start,
    )
    .await
}

/// A store on the Redis at `url`, with the test timeout.
pub(crate) async fn redis_store(url: &str) -> RedisStore {
    RedisStore::connect(url)
        .await
        .expect("connect to the spare Redis")
        .with_prefix("faults:")
        .with_command_timeout(STORE_TIMEOUT)
}

/// A store on the PostgreSQL at `url`, with the test timeout.
pub(crate) async fn postgres_store(url: &str) -> PostgresStore {
    PostgresStore::builder()
        .timeout(STORE_TIMEOUT)
        .connect(url)
        .await
        .expect("connect to the spare PostgreSQL")
}
