//! Spare Redis and PostgreSQL servers that a test starts itself, by PID, on
//! a free 127.0.0.1 port, in a directory under Cargo's test temp dir, so it
//! can crash and restart them without touching the machine's own servers.
//!
//! Every server is a guard: dropping it (also while a test unwinds) stops
//! the process and removes its directory.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// How long a server may take to start (PostgreSQL crash recovery
/// included).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a test of a store should run on this machine: `true` when `var`
/// is set (the machine has the server binaries). When it is not set, fails
/// under `CI` and otherwise skips with a printed reason.
pub(crate) fn gate(var: &str) -> bool {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => true,
        _ => skip_or_fail(&format!("{var} is not set")),
    }
}

/// Fails (panics) when `CI` is set; otherwise prints why the test is
/// skipped. Returns `false`, for `if !... { return }`.
pub(crate) fn skip_or_fail(reason: &str) -> bool {
    assert!(
        std::env::var_os("CI").is_none_or(|ci| ci.is_empty()),
        "CI is set, so this test must run, but: {reason}"
    );
    eprintln!("skipped: {reason}");
    false
}

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|err| format!("bind: {err}"))?;
    let port = listener
        .local_addr()
        .map_err(|err| format!("local addr: {err}"))?
        .port();
    Ok(port)
}

/// A new, empty directory for one server under Cargo's test temp dir.
fn fresh_dir(kind: &str, port: u16) -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("keepsake-{kind}-{}-{port}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|err| format!("{}: {err}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).map_err(|err| format!("{}: {err}", dir.display()))?;
    Ok(dir)
}

/// `name` on the `PATH`, or else in one of `extra` directories.
fn find_binary(name: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().cloned())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The last lines of a log file, for error messages.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Waits until `ready` says yes, or the time is up.
fn wait_until(what: &str, mut ready: impl FnMut() -> Result<bool, String>) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if ready()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{what} not ready after {START_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

// ---------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------

/// One command to the Redis on `port` over a new connection, in RESP; the
/// reply as text (simple string, integer or bulk string).
pub(crate) fn redis_command(port: u16, args: &[&str]) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr(port), Duration::from_secs(1))
        .map_err(|err| format!("connect to Redis on {port}: {err}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|err| err.to_string())?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream
        .write_all(request.as_bytes())
        .map_err(|err| format!("send to Redis: {err}"))?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|err| format!("read from Redis: {err}"))?;
    let line = line.trim_end();
    match line.split_at_checked(1) {
        Some(("+" | ":", rest)) => Ok(rest.to_owned()),
        Some(("-", rest)) => Err(format!("Redis error: {rest}")),
        Some(("$", len)) => {
            let len: usize = len.parse().map_err(|_| format!("bad reply {line:?}"))?;
            let mut body = vec![0; len + 2];
            reader
                .read_exact(&mut body)
                .map_err(|err| format!("read from Redis: {err}"))?;
            body.truncate(len);
            String::from_utf8(body).map_err(|err| err.to_string())
        }
        _ => Err(format!("unexpected reply {line:?}")),
    }
}

/// A `redis-server` started by the test: append-only file, no RDB
/// snapshots; restarted on the same port with the same directory.
///
/// Redis writes its append-only buffer to the file before it sends the
/// replies of the commands in it, so a `SIGKILL` loses nothing Redis
/// acknowledged. The file is never fsynced (`--appendfsync no`): only a
/// crash of the machine could lose it, which no test makes, and no reply
/// waits on the shared disk, whose fsyncs have taken over 300 ms on CI
/// (see docs/FAULTS.md).
#[derive(Debug)]
pub(crate) struct SpareRedis {
    bin: PathBuf,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl SpareRedis {
    /// Starts one; `Err` says why it could not (no binary, no start).
    pub(crate) fn start() -> Result<Self, String> {
        let bin =
            find_binary("redis-server", &[]).ok_or("redis-server is not on the PATH".to_owned())?;
        let port = free_port()?;
        let mut spare = Self {
            bin,
            port,
            dir: fresh_dir("redis", port)?,
            child: None,
            starts: 0,
        };
        spare.spawn()?;
        Ok(spare)
    }

    /// Runs `redis-server` and waits for `PING` to answer.
    fn spawn(&mut self) -> Result<(), String> {
        self.starts += 1;
        let log = self.dir.join(format!("redis-{}.log", self.starts));
        let out = File::create(&log).map_err(|err| err.to_string())?;
        let err = out.try_clone().map_err(|err| err.to_string())?;
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--appendonly", "yes", "--appendfsync", "no", "--save", ""])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|err| format!("cannot run {}: {err}", self.bin.display()))?;
        self.child = Some(child);
        let port = self.port;
        wait_until("redis-server", || {
            let exited = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                return Err(format!(
                    "redis-server exited with {status}:\n{}",
                    log_tail(&log)
                ));
            }
            Ok(redis_command(port, &["PING"]).is_ok_and(|reply| reply == "PONG"))
        })
    }

    /// The URL of the server.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server with `SIGKILL` (a crash) and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`: the server freezes, accepting connections
    /// but answering nothing, a hung store; `CONT`: it goes on).
    pub(crate) fn signal(&self, signal: &str) -> Result<(), String> {
        let child = self.child.as_ref().ok_or("redis-server is not running")?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .map_err(|err| format!("kill -{signal}: {err}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -{signal} {} failed", child.id()))
        }
    }

    /// Starts the server again, on the same port and directory.
    pub(crate) fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.spawn()
    }

    /// Follows every command the server runs (`redis-cli monitor`) into a
    /// file.
    pub(crate) fn monitor(&self) -> Result<Monitor, String> {
        let cli = find_binary(
            "redis-cli",
            &self
                .bin
                .parent()
                .map(Path::to_path_buf)
                .into_iter()
                .collect::<Vec<_>>(),
        )
        .ok_or("redis-cli is not on the PATH".to_owned())?;
        let path = self.dir.join("monitor.txt");
        let out = File::create(&path).map_err(|err| err.to_string())?;
        let child = Command::new(cli)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "monitor"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| format!("cannot run redis-cli: {err}"))?;
        let mut monitor = Monitor {
            port: self.port,
            path,
            child,
            marks: 0,
            read: 0,
        };
        // Live once it shows a command sent after it started.
        monitor.mark()?;
        Ok(monitor)
    }
}

impl Drop for SpareRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One command seen by `MONITOR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    /// Run by a Lua script (`[0 lua]`) rather than sent by a client.
    pub(crate) in_script: bool,
    /// The command name, lower case.
    pub(crate) name: String,
}

/// A `redis-cli monitor` process writing to a file; killed on drop.
#[derive(Debug)]
pub(crate) struct Monitor {
    port: u16,
    path: PathBuf,
    child: Child,
    marks: u32,
    read: usize,
}

impl Monitor {
    /// Sends a marker (`ECHO`) and waits until the monitor has written it:
    /// every command before it is then in the file. Returns the commands
    /// seen since the previous mark (markers and admin commands left out).
    pub(crate) fn mark(&mut self) -> Result<Vec<Seen>, String> {
        self.marks += 1;
        let marker = format!("keepsake-mark-{}", self.marks);
        let quoted = format!("\"{marker}\"");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            redis_command(self.port, &["ECHO", &marker])?;
            std::thread::sleep(Duration::from_millis(20));
            let text = std::fs::read_to_string(&self.path).map_err(|err| err.to_string())?;
            if let Some(at) = text[self.read..].find(&quoted) {
                let end = self.read + at;
                let seen = text[self.read..end].lines().filter_map(parse_monitor_line);
                let seen = seen.collect();
                self.read = end + quoted.len();
                return Ok(seen);
            }
            if Instant::now() > deadline {
                return Err("redis-cli monitor shows nothing".to_owned());
            }
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `1700000000.123456 [0 127.0.0.1:5555] "GET" "key"` or `[0 lua] ...`;
/// `None` for other lines and for the test's own admin commands.
fn parse_monitor_line(line: &str) -> Option<Seen> {
    let (_, rest) = line.split_once('[')?;
    let (origin, rest) = rest.split_once(']')?;
    let name = rest.trim_start().strip_prefix('"')?.split('"').next()?;
    let name = name.to_ascii_lowercase();
    if matches!(name.as_str(), "echo" | "ping" | "info" | "config") {
        return None;
    }
    Some(Seen {
        in_script: origin.ends_with(" lua"),
        name,
    })
}

// ---------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------

/// The processes whose parent is `parent` (from `/proc/<pid>/stat`).
fn children(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (comm) state ppid ...`; comm may hold spaces.
            let after = &stat[stat.rfind(')')? + 1..];
            let ppid: u32 = after.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}

/// The effective user id of this process.
fn euid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|meta| meta.uid())
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb`, or
/// `initdb` on the `PATH`.
fn postgres_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop()
        .map(|(_, bin)| bin)
        .or_else(|| find_binary("initdb", &[])?.parent().map(Path::to_path_buf))
}

/// A PostgreSQL cluster made by `initdb` and run with `pg_ctl` by the test
/// (as the `postgres` user when the test runs as root, which `initdb`
/// refuses), with trust authentication on 127.0.0.1 only. `crash` is
/// `pg_ctl stop -m immediate`: no shutdown checkpoint, crash recovery on the
/// next start.
#[derive(Debug)]
pub(crate) struct SparePostgres {
    bin: PathBuf,
    port: u16,
    root: PathBuf,
    as_postgres: bool,
    running: bool,
}

impl SparePostgres {
    /// Makes and starts one; `Err` says why it could not.
    pub(crate) fn start() -> Result<Self, String> {
        let bin = postgres_bin_dir().ok_or(
            "no PostgreSQL server binaries (initdb) in /usr/lib/postgresql/*/bin or on the PATH"
                .to_owned(),
        )?;
        let port = free_port()?;
        let root = fresh_dir("postgres", port)?;
        let mut spare = Self {
            bin,
            port,
            root,
            as_postgres: euid() == Some(0),
            running: false,
        };
        for dir in ["data", "sock"] {
            std::fs::create_dir(spare.root.join(dir)).map_err(|err| err.to_string())?;
        }
        if spare.as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&spare.root)
                .status()
                .map_err(|err| format!("chown: {err}"))?;
            if !status.success() {
                return Err(format!("chown of {} failed", spare.root.display()));
            }
        }
        let data = spare.root.join("data");
        spare.tool(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        spare.pg_start()?;
        Ok(spare)
    }

    /// Runs one of the server's tools (as `postgres` when needed) and
    /// waits for it.
    fn tool(&self, name: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
        let program = self.bin.join(name);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let log = self.root.join(format!("{name}.out"));
        let out = File::create(&log).map_err(|err| err.to_string())?;
        let err = out.try_clone().map_err(|err| err.to_string())?;
        let status = command
            .args(args)
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(|err| format!("cannot run {}: {err}", program.display()))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{name} failed ({status}):\n{}", log_tail(&log)))
        }
    }

    fn pg_start(&mut self) -> Result<(), String> {
        let data = self.root.join("data");
        let log = self.root.join("postgres.log");
        // `fsync=off`: a commit is still written to the kernel before it is
        // acknowledged, so a crash of the server process (what the tests
        // do) loses nothing; only a crash of the machine would. A commit no
        // longer waits for the shared disk, whose fsyncs took over 300 ms
        // at times in CI, near the store timeout.
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.root.join("sock").display()
        );
        let started = self.tool(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "30".as_ref(),
                "-o".as_ref(),
                options.as_ref(),
                "start".as_ref(),
            ],
        );
        // pg_ctl may have started the server even when it reports failure.
        self.running = true;
        started.map_err(|err| format!("{err}\n{}", log_tail(&log)))?;
        let port = self.port;
        wait_until("postgres", || {
            Ok(TcpStream::connect_timeout(&addr(port), Duration::from_millis(200)).is_ok())
        })
    }

    /// The URL of the server's `postgres` database.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server at once, as a crash (`pg_ctl stop -m immediate`).
    pub(crate) fn crash(&mut self) -> Result<(), String> {
        let data = self.root.join("data");
        self.tool(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        )?;
        self.running = false;
        Ok(())
    }

    /// Sends `signal` to the postmaster and all its children (`STOP`: the
    /// whole server freezes, a hung store that still accepts TCP
    /// connections; `CONT`: it goes on).
    pub(crate) fn signal_all(&self, signal: &str) -> Result<(), String> {
        let pid_file = self.root.join("data").join("postmaster.pid");
        let text = std::fs::read_to_string(&pid_file)
            .map_err(|err| format!("{}: {err}", pid_file.display()))?;
        let postmaster: u32 = text
            .lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .ok_or("no PID in postmaster.pid")?;
        // The postmaster first, so it starts no new child meanwhile.
        let mut pids = vec![postmaster];
        pids.extend(children(postmaster));
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .args(pids.iter().map(u32::to_string))
            .status()
            .map_err(|err| format!("kill -{signal}: {err}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -{signal} {pids:?} failed"))
        }
    }

    /// Starts the server again on the same port (crash recovery first).
    pub(crate) fn restart(&mut self) -> Result<(), String> {
        self.pg_start()
    }
}

impl Drop for SparePostgres {
    fn drop(&mut self) {
        if self.running {
            // A frozen server cannot stop.
            let _ = self.signal_all("CONT");
            let _ = self.crash();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
