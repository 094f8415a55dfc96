//! How keepsake's stores behave with many sessions: memory per session,
//! load latency, and the time to purge expired records.
//!
//! Usage: `scale memory|sqlite|redis [SESSIONS] [EXPIRED] [LOADS]`
//! (defaults 1 000 000, 100 000 and 100 000; plain digits, `_` allowed:
//! `1_000_000`). Anything else is refused with the usage and exit code 2.
//!
//! 1. Fills the store with SESSIONS records through `SessionStore::create`
//!    (16 tasks at once), each holding `{"count": <n>}` and, for one in ten,
//!    a user (50 000 users). EXPIRED of them get a one-hour lifetime, the
//!    others 14 days; no idle timeout.
//! 2. Memory per session: memory store, growth of this process's resident
//!    set size; SQLite, the database file (plus WAL) size and the RSS
//!    growth; Redis, the growth of `used_memory` in `INFO memory`. Divided
//!    by SESSIONS.
//! 3. Load latency: LOADS `load`s of random existing ids, one at a time,
//!    each timed; p50, p99, p99.9 and max.
//! 4. Purge: `purge_expired` at a time two hours ahead, when exactly the
//!    EXPIRED records have expired (and Redis has not expired them itself),
//!    timed and checked to remove EXPIRED.
//!
//! SQLite lives in `target/bench/scale/` (removed at the end). For Redis the
//! binary starts its own `redis-server` on a free 127.0.0.1 port (no
//! persistence) and stops it by PID at the end, so nothing lands in a
//! shared Redis (it checks that the server answering on that port is its
//! child). On SIGINT, SIGTERM or SIGHUP it stops that redis-server and
//! removes the SQLite files before it exits (130, 143, 129); only SIGKILL
//! leaves them. `KEEPSAKE_BENCH_REDIS_CACHE=N` sets the Redis store's local
//! cache capacity (0: none). Prints one `SCALE {...}` JSON line.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use keepsake::{
    codec::unix_now,
    store::{Id, MemoryStore, Record, RedisStore, SessionStore, SqliteStore},
};

const USAGE: &str = "usage: scale memory|sqlite|redis [SESSIONS] [EXPIRED] [LOADS]
  SESSIONS  sessions stored (default 1000000), more than 0
  EXPIRED   of them short-lived, purged at the end (default 100000), at most SESSIONS
  LOADS     timed loads of random sessions (default 100000), more than 0
  numbers are plain digits (1000000 or 1_000_000)";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
struct Args {
    store: String,
    sessions: usize,
    expired: usize,
    loads: usize,
}

/// Reads the arguments (after the program name); `Err` says what is wrong.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    fn number(name: &str, arg: Option<String>, default: usize) -> Result<usize, String> {
        let Some(arg) = arg else { return Ok(default) };
        let digits = arg.replace('_', "");
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{name} must be a whole number, not {arg:?}"));
        }
        digits
            .parse()
            .map_err(|_| format!("{name} {arg:?} is too large"))
    }
    let mut args = args.into_iter();
    let store = args.next().unwrap_or_else(|| "memory".to_owned());
    if !["memory", "sqlite", "redis"].contains(&store.as_str()) {
        return Err(format!("unknown store {store:?} (memory, sqlite or redis)"));
    }
    let sessions = number("SESSIONS", args.next(), 1_000_000)?;
    let expired = number("EXPIRED", args.next(), 100_000)?;
    let loads = number("LOADS", args.next(), 100_000)?;
    if let Some(extra) = args.next() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    if sessions == 0 || loads == 0 {
        return Err("SESSIONS and LOADS must be more than 0".to_owned());
    }
    if expired > sessions {
        return Err(format!(
            "EXPIRED ({expired}) must be at most SESSIONS ({sessions})"
        ));
    }
    Ok(Args {
        store,
        sessions,
        expired,
        loads,
    })
}

/// What this process must not leave behind when a signal ends it early:
/// the redis-server it started, the SQLite files. The normal end (and a
/// panic's unwinding, through `Drop`) cleans up the same way.
static LEFTOVERS: Mutex<Leftovers> = Mutex::new(Leftovers {
    redis: None,
    sqlite: None,
});

struct Leftovers {
    redis: Option<Child>,
    sqlite: Option<PathBuf>,
}

/// Stops (by PID) and reaps the redis-server this process started, if any.
fn stop_redis() {
    let child = LEFTOVERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .redis
        .take();
    if let Some(mut child) = child {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Removes the SQLite database (and its WAL files), if one was made.
fn remove_sqlite() {
    let path = LEFTOVERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .sqlite
        .take();
    if let Some(path) = path {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }
}

/// On SIGINT, SIGTERM or SIGHUP: clean up, then exit with 128 + the
/// signal's number. A thread of its own with its own runtime, so that it
/// answers even while the measurement keeps both workers busy; returns once
/// the handlers are installed.
fn clean_up_on_signal() {
    let (ready, installed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use tokio::signal::unix::{SignalKind, signal};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("signal runtime");
        rt.block_on(async {
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
            let _ = ready.send(());
            let code = tokio::select! {
                _ = int.recv() => 130,
                _ = term.recv() => 143,
                _ = hup.recv() => 129,
            };
            stop_redis();
            remove_sqlite();
            eprintln!("scale: stopped by a signal (redis-server stopped, SQLite files removed)");
            std::process::exit(code);
        });
    });
    installed.recv().expect("signal handlers installed");
}

/// A redis-server this process started; stopped (by PID) when dropped.
struct RedisServer {
    pid: u32,
    port: u16,
}

impl RedisServer {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let server = Self {
            pid: child.id(),
            port,
        };
        LEFTOVERS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .redis = Some(child);
        for _ in 0..100 {
            // The answer must come from the child: if another server took
            // the port first, the child could not bind (and has exited), and
            // the measurement must not fill and purge that other server.
            if server.cli(&["PING"]).trim() == "PONG" {
                let answering = server.cli(&["INFO", "server"]);
                let answering = answering
                    .lines()
                    .find_map(|l| l.strip_prefix("process_id:"))
                    .map(str::trim);
                assert_eq!(
                    answering,
                    Some(server.pid.to_string().as_str()),
                    "another server answers on 127.0.0.1:{port}, not the redis-server started here"
                );
                eprintln!("redis-server pid {} on 127.0.0.1:{port}", server.pid);
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not answer");
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn used_memory(&self) -> u64 {
        self.cli(&["INFO", "memory"])
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("used_memory")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        stop_redis();
    }
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn file_size(path: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            std::fs::metadata(file).map_or(0, |m| m.len())
        })
        .sum()
}

/// Creates the records `ids` (the first `expired` short-lived) with 16
/// tasks.
async fn fill<S: SessionStore + Clone>(store: &S, ids: &Arc<Vec<Id>>, expired: usize, now: u64) {
    const TASKS: usize = 16;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let store = store.clone();
        let ids = Arc::clone(ids);
        tasks.spawn(async move {
            for i in (t..ids.len()).step_by(TASKS) {
                let lifetime = if i < expired { 3_600 } else { 14 * 86_400 };
                // No idle timeout: only the lifetime decides what the purge
                // two hours later finds expired.
                let mut record = Record::new(ids[i], now, None, lifetime);
                record.data.insert("count".to_owned(), (i as u64).into());
                if i % 10 == 0 {
                    record.user = Some(format!("user{}", i / 10 % 50_000));
                }
                store.create(&record).await.expect("create");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("fill task");
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e6
}

async fn measure<S: SessionStore + Clone>(
    name: &str,
    store: S,
    n: usize,
    expired: usize,
    loads: usize,
    memory: impl Fn() -> u64,
) -> String {
    let now = unix_now();
    let ids: Arc<Vec<Id>> = Arc::new((0..n).map(|_| Id::random()).collect());
    let memory_before = memory();
    let start = Instant::now();
    fill(&store, &ids, expired, now).await;
    let fill_s = start.elapsed().as_secs_f64();
    let memory = memory().saturating_sub(memory_before);
    eprintln!("{name}: filled {n} in {fill_s:.1} s");

    let mut times = Vec::with_capacity(loads);
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..loads {
        // xorshift: a uniform pick without another dependency
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let id = ids[(seed % n as u64) as usize];
        let t = Instant::now();
        let found = store.load(&id, now).await.expect("load");
        times.push(t.elapsed());
        assert!(found.is_some(), "a stored session was not found");
    }
    times.sort();

    let start = Instant::now();
    let purged = store
        .purge_expired(now + 7_200)
        .await
        .expect("purge_expired");
    let purge_s = start.elapsed().as_secs_f64();
    eprintln!("{name}: purged {purged} in {purge_s:.2} s");
    assert_eq!(purged, expired, "purge removed a different number");

    format!(
        "{{\"store\":\"{name}\",\"sessions\":{n},\"fill_s\":{fill_s:.1},\"bytes_per_session\":{:.0},\
         \"loads\":{loads},\"load_p50_us\":{:.1},\"load_p99_us\":{:.1},\"load_p999_us\":{:.1},\
         \"load_max_us\":{:.1},\"expired\":{expired},\"purged\":{purged},\"purge_s\":{purge_s:.3}}}",
        memory as f64 / n as f64,
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        percentile(&times, 0.999),
        percentile(&times, 1.0),
    )
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let Args {
        store,
        sessions: n,
        expired,
        loads,
    } = match parse_args(args) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("scale: {error}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    clean_up_on_signal();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let line = rt.block_on(async {
        match store.as_str() {
            "memory" => {
                let store = MemoryStore::builder().max_records(n).build();
                measure("memory", store, n, expired, loads, rss_bytes).await
            }
            "sqlite" => {
                let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../target/bench/scale");
                std::fs::create_dir_all(&dir).expect("scale dir");
                let path = dir.join(format!("scale-{}.db", std::process::id()));
                LEFTOVERS
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .sqlite = Some(path.clone());
                let store = SqliteStore::open(&path).await.expect("open SQLite");
                let before = rss_bytes();
                let line = measure("sqlite", store, n, expired, loads, || file_size(&path)).await;
                let rss = rss_bytes().saturating_sub(before);
                remove_sqlite();
                format!(
                    "{},\"rss_bytes_per_session\":{:.0}}}",
                    line.trim_end_matches('}'),
                    rss as f64 / n as f64
                )
            }
            "redis" => {
                let server = RedisServer::start();
                let url = format!("redis://127.0.0.1:{}", server.port);
                let store = RedisStore::connect(&url).await.expect("connect");
                let store = keepsake_compare::with_bench_cache(store);
                measure("redis", store, n, expired, loads, || server.used_memory()).await
            }
            other => unreachable!("parse_args accepts no store {other:?}"),
        }
    });
    println!("SCALE {line}");
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::{Args, parse_args};

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args(args.iter().map(|a| (*a).to_owned()))
    }

    #[test]
    fn defaults_and_numbers() {
        let all = parse(&[]).expect("defaults");
        assert_eq!(
            (all.store.as_str(), all.sessions, all.expired, all.loads),
            ("memory", 1_000_000, 100_000, 100_000)
        );
        let some = parse(&["redis", "20_000", "2000", "500"]).expect("numbers");
        assert_eq!(
            (some.store.as_str(), some.sessions, some.expired, some.loads),
            ("redis", 20_000, 2000, 500)
        );
    }

    #[test]
    fn a_bad_argument_is_refused_not_replaced_by_the_default() {
        for bad in [
            &["memory", "20k"][..],
            &["memory", "1000", "-5"],
            &["memory", "1000", "10", "many"],
            &["memory", ""],
            &["memory", "_"],
            &["memory", "99999999999999999999999"],
            &["mem"],
            &["memory", "10", "20"],
            &["memory", "0"],
            &["memory", "10", "0", "0"],
            &["memory", "10", "1", "1", "extra"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse(&["memory", "20k"]).unwrap_err().contains("\"20k\""));
    }
}
