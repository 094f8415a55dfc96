//! Live interop tests against the real Flask, Starlette and Django.
//!
//! A Python virtual environment is made once under `target/interop-venv`
//! with the versions in `tests/vectors/versions.json`, and one long-running
//! `tests/interop/helper.py` process makes and reads cookies through each
//! framework's real session machinery. Random keys and sessions come from
//! Rust; for each, keepsake's cookie must equal the framework's byte for
//! byte, each side must read the other's, and the framework must not fail
//! (no 500) on a keepsake cookie.
//!
//! Runs when `KEEPSAKE_TEST_INTEROP=1` or `CI` is set (and then a failure to
//! make the environment fails the tests); otherwise each test is skipped
//! with a message. `KEEPSAKE_TEST_PYTHON` names the Python to use (default
//! `python3`), `KEEPSAKE_INTEROP_SEED` fixes the random seed.
#![cfg(feature = "interop")]

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::{Mutex, MutexGuard, OnceLock},
};

use keepsake::codec::interop::{Framework, InteropCodec, InteropDecodeError, PyDict, PyValue};
use rand::{RngExt as _, SeedableRng as _, rngs::StdRng};
use serde_json::{Value, json};

/// The example app of `examples/flask-shared-login`, tested here.
#[path = "../examples/flask_shared_login.rs"]
#[allow(dead_code)] // its `main`
mod flask_shared_login;

/// Random round trips per framework per run.
const ROUND_TRIPS: usize = 200;
/// The time the fixed-case tests sign at.
const T0: u64 = 1_700_000_000;

/// Whether the live tests run; prints why not when they do not.
fn enabled(test: &str) -> bool {
    let on = std::env::var_os("KEEPSAKE_TEST_INTEROP").is_some_and(|v| !v.is_empty() && v != "0")
        || std::env::var_os("CI").is_some();
    if !on {
        eprintln!(
            "skipping {test}: set KEEPSAKE_TEST_INTEROP=1 to run the live Flask/Starlette/Django \
             tests (they install the frameworks from PyPI into target/interop-venv)"
        );
    }
    on
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cargo target directory: the test binary lives in `target/<profile>/deps`.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir().join("../../target"))
}

/// `pip install` arguments pinned to the vector versions.
fn requirements() -> Vec<String> {
    let text = std::fs::read_to_string(manifest_dir().join("tests/vectors/versions.json"))
        .expect("versions.json");
    let versions: Value = serde_json::from_str(&text).expect("versions.json is JSON");
    [
        "Flask",
        "itsdangerous",
        "Werkzeug",
        "MarkupSafe",
        "starlette",
        "Django",
        "httpx",
    ]
    .iter()
    .map(|name| {
        format!(
            "{name}=={}",
            versions["versions"][name].as_str().expect("a version")
        )
    })
    .collect()
}

fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The venv's Python, made once per test process (see [`make_venv`]).
fn venv_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(make_venv).clone()
}

/// Makes the venv if needed. Several test processes may race here: each
/// builds in its own temporary directory and renames it into place; the
/// first rename wins and the others use it.
fn make_venv() -> PathBuf {
    let venv = target_dir().join("interop-venv");
    let marker = venv.join("keepsake-requirements.txt");
    let wanted = requirements().join("\n");
    let python = venv.join("bin/python");
    if std::fs::read_to_string(&marker).is_ok_and(|have| have == wanted) && python.exists() {
        return python;
    }
    if venv.exists() {
        // Other versions: move the old one aside (atomically) and rebuild.
        let old = target_dir().join(format!("interop-venv.old.{}", std::process::id()));
        if std::fs::rename(&venv, &old).is_ok() {
            let _ = std::fs::remove_dir_all(&old);
        }
    }
    std::fs::create_dir_all(target_dir()).expect("target dir");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = target_dir().join(format!("interop-venv.tmp.{}.{nanos}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let base = std::env::var("KEEPSAKE_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    run(
        Command::new(&base).args(["-m", "venv"]).arg(&tmp),
        "python -m venv",
    );
    run(
        Command::new(tmp.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(requirements()),
        "pip install (needs PyPI)",
    );
    std::fs::write(tmp.join("keepsake-requirements.txt"), &wanted).expect("marker");
    if std::fs::rename(&tmp, &venv).is_err() {
        // Another process won the race; use its venv.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    assert!(python.exists(), "no Python in {}", venv.display());
    python
}

/// The running helper process.
struct Helper {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Helper {
    fn start() -> Self {
        let python = venv_python();
        let mut child = Command::new(python)
            .arg(manifest_dir().join("tests/interop/helper.py"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the helper starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut helper = Self {
            child,
            stdin,
            stdout,
        };
        let ready = helper.read_line();
        assert_eq!(ready["ready"], true, "helper: {ready}");
        helper
    }

    fn read_line(&mut self) -> Value {
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .expect("read from the helper");
        assert!(n > 0, "the helper exited");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("helper said {line:?}: {e}"))
    }

    fn call(&mut self, request: &Value) -> Value {
        writeln!(self.stdin, "{request}").expect("write to the helper");
        self.stdin.flush().expect("flush");
        let answer = self.read_line();
        assert!(
            answer.get("error").is_none(),
            "helper error for {request}:\n{}",
            answer["error"].as_str().unwrap_or("")
        );
        answer
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The one helper shared by the tests of this process.
fn helper() -> MutexGuard<'static, Helper> {
    static HELPER: OnceLock<Mutex<Helper>> = OnceLock::new();
    HELPER
        .get_or_init(|| Mutex::new(Helper::start()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A secret as the app configures it.
#[derive(Debug, Clone)]
enum Secret {
    Text(String),
    /// Flask also takes a `bytes` key.
    Bytes(Vec<u8>),
}

impl Secret {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Text(text) => text.as_bytes().to_vec(),
            Self::Bytes(bytes) => bytes.clone(),
        }
    }

    fn fields(&self) -> (Value, Value) {
        match self {
            Self::Text(text) => (json!(text), Value::Null),
            Self::Bytes(bytes) => (
                Value::Null,
                json!(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()),
            ),
        }
    }
}

fn encode_request(
    framework: Framework,
    secret: &Secret,
    fallbacks: &[String],
    session: &str,
    now: u64,
) -> Value {
    let (key, key_hex) = secret.fields();
    json!({"fw": framework.as_str(), "op": "encode", "key": key, "key_hex": key_hex,
           "fallbacks": fallbacks, "session": session, "now": now})
}

fn decode_request(
    framework: Framework,
    secret: &Secret,
    fallbacks: &[String],
    cookie: &str,
    now: u64,
) -> Value {
    let (key, key_hex) = secret.fields();
    json!({"fw": framework.as_str(), "op": "decode", "key": key, "key_hex": key_hex,
           "fallbacks": fallbacks, "cookie": cookie, "now": now})
}

/// What the framework made of a cookie: its session, or `None` if it
/// started an empty one instead. Panics on a 500.
fn framework_reads(
    framework: Framework,
    secret: &Secret,
    fallbacks: &[String],
    cookie: &str,
    now: u64,
) -> Option<PyDict> {
    let answer = helper().call(&decode_request(framework, secret, fallbacks, cookie, now));
    assert_eq!(
        answer["status"], 200,
        "{framework} answered {answer} for {cookie}"
    );
    if answer["reset"] == true {
        return None;
    }
    let text = answer["session"].as_str().expect("a session");
    let reader = InteropCodec::new(framework, b"");
    Some(
        reader
            .deserialize(text)
            .unwrap_or_else(|e| panic!("{framework} wrote {text}: {e}")),
    )
}

fn framework_makes(framework: Framework, secret: &Secret, session: &PyDict, now: u64) -> String {
    let text = InteropCodec::new(framework, b"")
        .serialize(session)
        .expect("serializable");
    let answer = helper().call(&encode_request(framework, secret, &[], &text, now));
    answer["cookie"]
        .as_str()
        .unwrap_or_else(|| panic!("{framework} set no cookie: {answer}"))
        .to_owned()
}

// ----- random inputs ---------------------------------------------------------------

fn random_text(rng: &mut StdRng, max: usize) -> String {
    let len = rng.random_range(0..=max);
    (0..len)
        .map(|_| match rng.random_range(0..10) {
            0 => char::from_u32(rng.random_range(0..0x20)).unwrap_or('a'),
            1 => char::from_u32(rng.random_range(0x80..0xd800)).unwrap_or('b'),
            2 => char::from_u32(rng.random_range(0x1_0000..0x11_0000)).unwrap_or('c'),
            3 => *['"', '\\', '/', '<', '&', '\u{7f}', ' ', '\'', '=', ';']
                .get(rng.random_range(0..10))
                .unwrap_or(&'d'),
            _ => char::from(rng.random_range(0x20u8..0x7f)),
        })
        .collect()
}

fn random_secret(rng: &mut StdRng, framework: Framework) -> Secret {
    if framework == Framework::Flask && rng.random_bool(0.25) {
        let len = rng.random_range(1..48);
        return Secret::Bytes((0..len).map(|_| rng.random()).collect());
    }
    loop {
        let text = random_text(rng, 40);
        // keepsake never signs or verifies with an empty key (see
        // `empty_key_cookies_are_refused`), so keep it non-empty.
        if !text.is_empty() {
            return Secret::Text(text);
        }
    }
}

fn random_float(rng: &mut StdRng) -> f64 {
    match rng.random_range(0..6) {
        0 => f64::from_bits(rng.random::<u64>()),
        1 => rng.random_range(-1e6..1e6),
        2 => [
            0.0,
            -0.0,
            1.0,
            0.1,
            1e-7,
            1e22,
            1e16,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            5e-324,
        ][rng.random_range(0..11)],
        _ => f64::from(rng.random_range(-1000..1000)) / 8.0,
    }
}

fn random_value(rng: &mut StdRng, framework: Framework, depth: usize) -> PyValue {
    let flask = framework == Framework::Flask;
    let top = if depth >= 3 { 7 } else { 10 };
    match rng.random_range(0..top + if flask { 5 } else { 0 }) {
        0 => PyValue::None,
        1 => PyValue::Bool(rng.random()),
        2 => PyValue::Int(rng.random_range(-1000..1000)),
        3 => PyValue::Int(if rng.random_bool(0.5) {
            rng.random::<i64>().into()
        } else {
            rng.random::<i128>()
        }),
        4 => {
            let x = random_float(rng);
            if x.is_nan() {
                PyValue::Float(0.5)
            } else {
                PyValue::Float(x)
            }
        }
        5 | 6 => PyValue::Str(random_text(rng, 12)),
        7 => PyValue::List(
            (0..rng.random_range(0..4))
                .map(|_| random_value(rng, framework, depth + 1))
                .collect(),
        ),
        8 | 9 => PyValue::Dict(random_dict(rng, framework, depth + 1, 4)),
        // Flask's tagged types.
        10 => PyValue::Tuple(
            (0..rng.random_range(0..4))
                .map(|_| random_value(rng, framework, depth + 1))
                .collect(),
        ),
        11 => PyValue::Bytes((0..rng.random_range(0..12)).map(|_| rng.random()).collect()),
        12 => PyValue::Markup(random_text(rng, 12)),
        13 => PyValue::Uuid(rng.random()),
        _ => PyValue::DateTime(rng.random_range(-59_011_459_200..=253_402_300_799)),
    }
}

fn random_dict(rng: &mut StdRng, framework: Framework, depth: usize, max: usize) -> PyDict {
    let mut dict = PyDict::new();
    for _ in 0..rng.random_range(0..=max) {
        let key = match rng.random_range(0..8) {
            0 => " t".to_owned(),
            1 => String::new(),
            2 => "_permanent".to_owned(),
            _ => random_text(rng, 10),
        };
        // Flask reads `_permanent` as a flag; keep it a bool.
        let value = if key == "_permanent" {
            PyValue::Bool(true)
        } else {
            random_value(rng, framework, depth)
        };
        dict.insert(key, value);
    }
    dict
}

fn random_session(rng: &mut StdRng, framework: Framework) -> PyDict {
    loop {
        let session = random_dict(rng, framework, 0, 6);
        // A non-empty session (empty ones set no cookie in Flask and
        // Starlette), small enough for a cookie.
        let fits = InteropCodec::new(framework, "k")
            .encode(&session, T0)
            .is_ok();
        if !session.is_empty() && fits {
            return session;
        }
    }
}

fn seed() -> u64 {
    let seed = std::env::var("KEEPSAKE_INTEROP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("KEEPSAKE_INTEROP_SEED={seed}");
    seed
}

// ----- tests -------------------------------------------------------------------------

/// Random keys and sessions: keepsake's cookie equals the framework's byte for
/// byte, keepsake reads the framework's cookie, and the framework reads
/// keepsake's (without a 500).
fn round_trips(framework: Framework) {
    let mut rng = StdRng::seed_from_u64(seed());
    for i in 0..ROUND_TRIPS {
        let secret = random_secret(&mut rng, framework);
        let session = random_session(&mut rng, framework);
        let now = rng.random_range(1_000_000_000..4_000_000_000u64);
        let codec = InteropCodec::new(framework, secret.bytes());
        let context = || {
            format!("{framework} round trip {i}: secret {secret:?}, now {now}, session {session:?}")
        };

        // Framework -> keepsake.
        let theirs = framework_makes(framework, &secret, &session, now);
        let opened = codec
            .decode(&theirs, now + 1)
            .unwrap_or_else(|e| panic!("{}: {e}", context()));
        assert_eq!(opened.session(), &session, "{}", context());
        assert_eq!(opened.issued_at(), now);

        // keepsake -> framework, byte for byte the same cookie.
        let ours = codec
            .encode(&session, now)
            .unwrap_or_else(|e| panic!("{}: {e}", context()));
        assert_eq!(ours, theirs, "{}", context());
        let read = framework_reads(framework, &secret, &[], &ours, now + 1);
        assert_eq!(read.as_ref(), Some(&session), "{}", context());
    }
}

#[test]
fn flask_round_trips() {
    if enabled("flask_round_trips") {
        round_trips(Framework::Flask);
    }
}

#[test]
fn starlette_round_trips() {
    if enabled("starlette_round_trips") {
        round_trips(Framework::Starlette);
    }
}

#[test]
fn django_round_trips() {
    if enabled("django_round_trips") {
        round_trips(Framework::Django);
    }
}

fn fixed_session() -> PyDict {
    [
        ("user_id", PyValue::Int(42)),
        ("name", PyValue::from("h\u{e9}llo")),
    ]
    .into_iter()
    .collect()
}

fn key_a() -> Secret {
    Secret::Text("dev-secret-key-0123456789".to_owned())
}

/// Changes one character of the cookie's payload, timestamp or signature.
fn tamper(cookie: &str, at: usize) -> String {
    let mut chars: Vec<char> = cookie.chars().collect();
    let i = at.min(chars.len() - 1);
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[test]
fn tampered_cookies_are_refused_by_both() {
    if !enabled("tampered_cookies_are_refused_by_both") {
        return;
    }
    for framework in Framework::ALL {
        let codec = InteropCodec::new(framework, key_a().bytes());
        let cookie = codec.encode(&fixed_session(), T0).unwrap();
        assert_eq!(
            framework_makes(framework, &key_a(), &fixed_session(), T0),
            cookie
        );
        let sep = if framework == Framework::Django {
            ':'
        } else {
            '.'
        };
        let ts_at = cookie.rfind(sep).unwrap() - 2;
        for at in [3, ts_at, cookie.len() - 5] {
            let bad = tamper(&cookie, at);
            assert!(
                matches!(
                    codec.decode(&bad, T0),
                    Err(InteropDecodeError::BadSignature)
                ),
                "{framework} {bad}"
            );
            assert_eq!(
                framework_reads(framework, &key_a(), &[], &bad, T0),
                None,
                "{framework} {bad}"
            );
        }
    }
}

#[test]
fn wrong_key_cookies_are_refused_by_both() {
    if !enabled("wrong_key_cookies_are_refused_by_both") {
        return;
    }
    let other = Secret::Text("some-other-key".to_owned());
    for framework in Framework::ALL {
        // Made by the framework with another key: keepsake refuses it.
        let theirs = framework_makes(framework, &other, &fixed_session(), T0);
        let codec = InteropCodec::new(framework, key_a().bytes());
        assert_eq!(
            codec.decode(&theirs, T0),
            Err(InteropDecodeError::BadSignature),
            "{framework}"
        );
        // Made by keepsake with another key: the framework starts afresh.
        let ours = InteropCodec::new(framework, other.bytes())
            .encode(&fixed_session(), T0)
            .unwrap();
        assert_eq!(
            framework_reads(framework, &key_a(), &[], &ours, T0),
            None,
            "{framework}"
        );
        // With the old key among the fallbacks (Flask and Django rotation),
        // both accept it.
        if framework != Framework::Starlette {
            let fallbacks = ["some-other-key".to_owned()];
            let rotated = codec.clone().with_fallbacks(&fallbacks);
            assert!(rotated.decode(&theirs, T0).is_ok(), "{framework}");
            assert_eq!(
                framework_reads(framework, &key_a(), &fallbacks, &ours, T0),
                Some(fixed_session()),
                "{framework}"
            );
        }
    }
}

#[test]
fn expired_cookies_are_refused_by_both() {
    if !enabled("expired_cookies_are_refused_by_both") {
        return;
    }
    for framework in Framework::ALL {
        let codec = InteropCodec::new(framework, key_a().bytes());
        let max_age = framework.default_max_age().unwrap();
        let cookie = framework_makes(framework, &key_a(), &fixed_session(), T0);
        // At exactly the maximum age both still read it; one second later neither does.
        let at_limit = T0 + max_age;
        assert!(codec.decode(&cookie, at_limit).is_ok(), "{framework}");
        assert_eq!(
            framework_reads(framework, &key_a(), &[], &cookie, at_limit),
            Some(fixed_session())
        );
        let late = at_limit + 1;
        assert_eq!(
            codec.decode(&cookie, late),
            Err(InteropDecodeError::Expired {
                issued_at: T0,
                max_age
            }),
            "{framework}"
        );
        assert_eq!(
            framework_reads(framework, &key_a(), &[], &cookie, late),
            None,
            "{framework}"
        );
    }
}

#[test]
fn future_dated_cookies_are_treated_as_each_framework_does() {
    if !enabled("future_dated_cookies_are_treated_as_each_framework_does") {
        return;
    }
    for framework in Framework::ALL {
        let codec = InteropCodec::new(framework, key_a().bytes());
        let cookie = codec.encode(&fixed_session(), T0 + 10).unwrap();
        let keepsake = codec.decode(&cookie, T0);
        let python = framework_reads(framework, &key_a(), &[], &cookie, T0);
        match framework {
            // itsdangerous refuses a negative age.
            Framework::Flask | Framework::Starlette => {
                assert_eq!(
                    keepsake,
                    Err(InteropDecodeError::IssuedInFuture { issued_at: T0 + 10 })
                );
                assert_eq!(python, None, "{framework}");
            }
            // Django checks only that the age is not over the maximum.
            Framework::Django => {
                assert_eq!(keepsake.map(|d| d.into_session()), Ok(fixed_session()));
                assert_eq!(python, Some(fixed_session()));
            }
        }
    }
}

#[test]
fn flask_does_not_fail_on_keepsake_tagged_values() {
    if !enabled("flask_does_not_fail_on_keepsake_tagged_values") {
        return;
    }
    let mut session = PyDict::new();
    session.insert("t", PyValue::Tuple(vec![1.into(), PyValue::Tuple(vec![])]));
    session.insert("b", PyValue::Bytes(vec![0, 255]));
    session.insert("m", PyValue::Markup("<b>x</b>".to_owned()));
    session.insert("u", PyValue::Uuid([7; 16]));
    session.insert("d", PyValue::DateTime(-59_011_459_200));
    session.insert("x", PyValue::Dict([(" di", 1)].into_iter().collect()));
    let codec = InteropCodec::new(Framework::Flask, key_a().bytes());
    let cookie = codec.encode(&session, T0).unwrap();
    assert_eq!(
        framework_reads(Framework::Flask, &key_a(), &[], &cookie, T0),
        Some(session.clone())
    );
    // Flask reads a year below 100 as 19xx or 20xx: keepsake refuses to write one.
    session.insert("d", PyValue::DateTime(-62_135_596_800));
    assert_eq!(
        codec.encode(&session, T0),
        Err(keepsake::codec::interop::InteropEncodeError::DateOutOfRange)
    );
}

/// The Flask app of `examples/flask-shared-login`, running on a free port.
struct FlaskServer {
    child: Child,
    base: String,
}

impl FlaskServer {
    fn start(secret_key: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let app = manifest_dir().join("../../examples/flask-shared-login/flask_app.py");
        let child = Command::new(venv_python())
            .arg(app)
            .env("SHARED_SECRET_KEY", secret_key)
            .env("PORT", port.to_string())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the Flask app starts");
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        // Wait (at most 20 s) for it to listen.
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the Flask app did not listen on port {port}");
    }
}

impl Drop for FlaskServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `session` cookie value in a response's `Set-Cookie`.
fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split(';').next()?.strip_prefix("session="))
        .map(str::to_owned)
        .next()
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_login_with_the_example_flask_app() {
    if !enabled("shared_login_with_the_example_flask_app") {
        return;
    }
    let secret = "example-secret-key-0123";
    let server = tokio::task::spawn_blocking(move || FlaskServer::start(secret))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let codec = InteropCodec::new(Framework::Flask, secret);
    let now = keepsake::codec::unix_now();

    // Logged in on Flask: keepsake reads the login.
    let response = client
        .post(format!("{}/login?user=ada", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = session_cookie(&response).expect("Flask set the session cookie");
    let session = codec.decode(&cookie, now).unwrap().into_session();
    assert_eq!(session.get("user"), Some(&PyValue::from("ada")));

    // Logged in by keepsake: Flask reads the login.
    let mut session = PyDict::new();
    session.insert("user", "grace");
    let ours = codec.encode(&session, now).unwrap();
    let whoami = client
        .get(format!("{}/whoami", server.base))
        .header("Cookie", format!("session={ours}"))
        .send()
        .await
        .unwrap();
    assert_eq!(whoami.status(), 200);
    let body: Value = serde_json::from_str(&whoami.text().await.unwrap()).unwrap();
    assert_eq!(body, json!({"served_by": "flask", "user": "grace"}));

    // A keepsake cookie under another key is no login for Flask.
    let forged = InteropCodec::new(Framework::Flask, "not the key")
        .encode(&session, now)
        .unwrap();
    let whoami = client
        .get(format!("{}/whoami", server.base))
        .header("Cookie", format!("session={forged}"))
        .send()
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&whoami.text().await.unwrap()).unwrap();
    assert_eq!(body["user"], Value::Null);
}

/// `SessionLayer::with_interop`: an axum app whose sessions are Flask's,
/// Starlette's or Django's own cookies, read and written by the real
/// frameworks.
#[tokio::test(flavor = "multi_thread")]
async fn session_layer_shares_sessions_with_each_framework() {
    use axum::{Router, body::Body, routing::get};
    use keepsake::{
        middleware::SessionLayer,
        session::{Session, SessionError},
    };
    use tower_service::Service as _;

    if !enabled("session_layer_shares_sessions_with_each_framework") {
        return;
    }
    async fn set(session: Session) -> Result<&'static str, SessionError> {
        session.insert("user", "ada").await?;
        session.insert("visits", 3).await?;
        Ok("set")
    }
    async fn user(session: Session) -> Result<String, SessionError> {
        Ok(session.get::<String>("user").await?.unwrap_or_default())
    }

    for framework in Framework::ALL {
        let codec = InteropCodec::new(framework, key_a().bytes());
        let layer = SessionLayer::with_interop(codec)
            .secure(false)
            .build()
            .unwrap();
        let mut app = Router::new()
            .route("/set", get(set))
            .route("/user", get(user))
            .layer(layer);

        // Written by keepsake's layer: the framework reads the session.
        let request = http::Request::get("/set").body(Body::empty()).unwrap();
        let response = app.call(request).await.unwrap();
        let set_cookie = response.headers()[http::header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_owned();
        let prefix = format!("{}=", framework.cookie_name());
        let value = set_cookie
            .split(';')
            .next()
            .unwrap()
            .strip_prefix(&prefix)
            .unwrap()
            .to_owned();
        let expected: PyDict = [("user", PyValue::from("ada")), ("visits", 3.into())]
            .into_iter()
            .collect();
        let now = keepsake::codec::unix_now();
        let read = tokio::task::spawn_blocking(move || {
            framework_reads(framework, &key_a(), &[], &value, now)
        })
        .await
        .unwrap();
        assert_eq!(read, Some(expected), "{framework}");

        // Written by the framework: keepsake's layer reads the session.
        let session: PyDict = [("user", PyValue::from("grace"))].into_iter().collect();
        let theirs = tokio::task::spawn_blocking(move || {
            framework_makes(framework, &key_a(), &session, now)
        })
        .await
        .unwrap();
        let request = http::Request::get("/user")
            .header(http::header::COOKIE, format!("{prefix}{theirs}"))
            .body(Body::empty())
            .unwrap();
        let response = app.call(request).await.unwrap();
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        assert_eq!(&body[..], b"grace", "{framework}");
    }
}

// ----- SessionLayer::with_interop: what the layer writes ----------------------------

/// What an app behind the layer answered: status, the session cookie's
/// whole `Set-Cookie` header (if any) and the body.
struct Answer {
    status: http::StatusCode,
    set_cookie: Option<String>,
    body: String,
}

impl Answer {
    /// The value of the cookie called `name` that was set.
    fn value(&self, name: &str) -> String {
        let header = self.set_cookie.as_deref().expect("a Set-Cookie");
        header
            .split(';')
            .next()
            .and_then(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {name} in {header}"))
            .to_owned()
    }

    /// The `Max-Age` attribute of the cookie set.
    fn max_age(&self) -> Option<String> {
        let header = self.set_cookie.as_deref().expect("a Set-Cookie");
        header
            .split(';')
            .filter_map(|attr| attr.trim().strip_prefix("Max-Age="))
            .map(str::to_owned)
            .next()
    }
}

async fn ask(app: &mut axum::Router, uri: &str, cookie: Option<String>) -> Answer {
    use tower_service::Service as _;
    let mut request = http::Request::get(uri);
    if let Some(cookie) = cookie {
        request = request.header(http::header::COOKIE, cookie);
    }
    let response = app
        .call(request.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let set_cookie = response
        .headers()
        .get(http::header::SET_COOKIE)
        .map(|value| value.to_str().unwrap().to_owned());
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    Answer {
        status,
        set_cookie,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

/// A cookie of `framework` holding `session` (given as that framework's
/// serialization): made by the real framework when the live tests run,
/// otherwise by keepsake (which the vectors show makes the same bytes).
async fn framework_cookie(framework: Framework, session_text: &str, now: u64) -> String {
    let text = session_text.to_owned();
    if std::env::var_os("KEEPSAKE_TEST_INTEROP").is_some_and(|v| !v.is_empty() && v != "0")
        || std::env::var_os("CI").is_some()
    {
        return tokio::task::spawn_blocking(move || {
            let answer = helper().call(&encode_request(framework, &key_a(), &[], &text, now));
            answer["cookie"].as_str().expect("a cookie").to_owned()
        })
        .await
        .unwrap();
    }
    let codec = InteropCodec::new(framework, key_a().bytes());
    let session = codec.deserialize(&text).unwrap();
    codec.encode(&session, now).unwrap()
}

/// Runs `python` (source) in the venv with `args`; its standard output.
fn python(source: &str, args: &[&str]) -> String {
    let output = Command::new(venv_python())
        .arg("-c")
        .arg(source)
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A handler's JSON object that looks like Flask's tagged JSON reaches the
/// real Flask as the same plain dict and renders escaped (it once became a
/// `Markup`, rendered as HTML); Flask's own typed values read by the layer
/// are written back as the same types.
#[tokio::test(flavor = "multi_thread")]
async fn flask_reads_a_handlers_objects_as_plain_dicts() {
    use axum::routing::get;
    use keepsake::{
        middleware::SessionLayer,
        session::{Session, SessionError},
    };
    if !enabled("flask_reads_a_handlers_objects_as_plain_dicts") {
        return;
    }
    async fn store(session: Session) -> Result<&'static str, SessionError> {
        session
            .insert("prefs", json!({" m": "<script>alert(1)</script>"}))
            .await?;
        session.insert("pair", json!({" t": [1, 2]})).await?;
        Ok("ok")
    }
    async fn touch(session: Session) -> Result<&'static str, SessionError> {
        session.insert("touched", 1).await?;
        Ok("ok")
    }
    let codec = InteropCodec::new(Framework::Flask, key_a().bytes());
    let layer = SessionLayer::with_interop(codec)
        .secure(false)
        .build()
        .unwrap();
    let mut app = axum::Router::new()
        .route("/store", get(store))
        .route("/touch", get(touch))
        .layer(layer);
    let answer = ask(&mut app, "/store", None).await;
    let cookie = answer.value("session");

    let render = r#"
import sys, flask
app = flask.Flask("x"); app.secret_key = bytes.fromhex(sys.argv[2])
@app.get("/")
def page():
    s = flask.session
    return flask.render_template_string(
        "{{ prefs }}|{{ kinds }}",
        prefs=s["prefs"],
        kinds=",".join(type(s[k]).__name__ for k in sorted(s)),
    )
print(app.test_client(use_cookies=False).get("/", headers={"Cookie": "session=" + sys.argv[1]}).get_data(as_text=True))
"#;
    let secret: String = key_a().bytes().iter().map(|b| format!("{b:02x}")).collect();
    let cookie_for_python = cookie.clone();
    let secret_for_python = secret.clone();
    let page = tokio::task::spawn_blocking(move || {
        python(render, &[&cookie_for_python, &secret_for_python])
    })
    .await
    .unwrap();
    assert_eq!(
        page.trim(),
        "{&#39; m&#39;: &#39;&lt;script&gt;alert(1)&lt;/script&gt;&#39;}|dict,dict",
        "Flask must read plain dicts and render them escaped"
    );

    // Flask's own Markup and tuple, read and written back by the layer.
    let theirs = framework_cookie(
        Framework::Flask,
        r#"{"m":{" m":"<b>hi</b>"},"pair":{" t":[1,2]},"prefs":{" di":{" m__":"x"}}}"#,
        keepsake::codec::unix_now(),
    )
    .await;
    let answer = ask(&mut app, "/touch", Some(format!("session={theirs}"))).await;
    let rewritten = answer.value("session");
    let now = keepsake::codec::unix_now();
    let read = tokio::task::spawn_blocking(move || {
        framework_reads(Framework::Flask, &key_a(), &[], &rewritten, now)
    })
    .await
    .unwrap()
    .expect("Flask reads the session");
    assert_eq!(read.get("m"), Some(&PyValue::Markup("<b>hi</b>".into())));
    assert_eq!(
        read.get("pair"),
        Some(&PyValue::Tuple(vec![1.into(), 2.into()]))
    );
    assert_eq!(
        read.get("prefs"),
        Some(&PyValue::Dict([(" m", "x")].into_iter().collect()))
    );
    assert_eq!(read.get("touched"), Some(&PyValue::Int(1)));
}

/// A validly signed framework session keepsake cannot hold exactly (an
/// integer beyond 64 bits, NaN, infinity) is never changed or replaced:
/// the handler gets a `Corrupt` store error when it uses the session, and
/// no `Set-Cookie` touches the cookie.
#[tokio::test(flavor = "multi_thread")]
async fn unrepresentable_framework_sessions_are_left_alone() {
    use std::sync::{Arc, Mutex};

    use axum::routing::get;
    use keepsake::{
        middleware::SessionLayer,
        session::{Session, SessionError},
        store::StoreErrorKind,
    };

    let cases: [(Framework, &str); 6] = [
        (
            Framework::Flask,
            r#"{"n":18446744073709551616,"user":"ada"}"#,
        ),
        (Framework::Flask, r#"{"user":"ada","x":NaN}"#),
        (
            Framework::Starlette,
            r#"{"user": "ada", "n": 18446744073709551616}"#,
        ),
        (Framework::Starlette, r#"{"user": "ada", "x": Infinity}"#),
        (
            Framework::Django,
            r#"{"user":"ada","n":-9223372036854775809}"#,
        ),
        (Framework::Django, r#"{"user":"ada","x":-Infinity}"#),
    ];
    for (framework, text) in cases {
        // What the handler got from the session.
        type Seen = Option<Result<Option<String>, StoreErrorKind>>;
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let seen_by_handler = seen.clone();
        let handler = move |session: Session| {
            let seen = seen_by_handler.clone();
            async move {
                let got = match session.get::<String>("user").await {
                    Ok(user) => Ok(user),
                    Err(SessionError::Unavailable(err)) => Err(err.kind()),
                    Err(other) => panic!("{other}"),
                };
                // A write is refused too.
                assert!(session.insert("user", "mallory").await.is_err());
                *seen.lock().unwrap() = Some(got);
                "handled"
            }
        };
        let codec = InteropCodec::new(framework, key_a().bytes());
        let layer = SessionLayer::with_interop(codec)
            .secure(false)
            .build()
            .unwrap();
        let mut app = axum::Router::new()
            .route("/use", get(handler))
            .route("/skip", get(|| async { "skipped" }))
            .layer(layer);
        let cookie = framework_cookie(framework, text, keepsake::codec::unix_now()).await;
        let header = format!("{}={cookie}", framework.cookie_name());

        let answer = ask(&mut app, "/use", Some(header.clone())).await;
        assert_eq!(
            *seen.lock().unwrap(),
            Some(Err(StoreErrorKind::Corrupt)),
            "{framework} {text}"
        );
        assert_eq!(
            answer.status,
            http::StatusCode::SERVICE_UNAVAILABLE,
            "{framework} {text}"
        );
        assert_eq!(answer.set_cookie, None, "{framework} {text}");

        // Not using the session: answered as usual, cookie untouched.
        let answer = ask(&mut app, "/skip", Some(header)).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (http::StatusCode::OK, "skipped")
        );
        assert_eq!(answer.set_cookie, None, "{framework} {text}");
    }
}

/// Near the size limit, the write is refused at the call
/// (`SessionError::TooLarge`) when the cookie name actually sent is longer
/// than the framework's (`__Host-` prefix, or `cookie_name` after
/// `with_interop`), instead of a response without the cookie.
#[tokio::test(flavor = "multi_thread")]
async fn size_is_checked_with_the_cookie_name_sent() {
    use axum::routing::get;
    use keepsake::{
        middleware::SessionLayer,
        session::{Session, SessionError},
    };

    // Text zlib cannot shrink much, just long enough that only the short
    // name fits.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let noise: String = (0..4000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'!' + u8::try_from(state % 90).unwrap())
        })
        .filter(|c| !matches!(c, '"' | '\\'))
        .collect();
    let short = InteropCodec::new(Framework::Flask, key_a().bytes());
    let long = short.clone().with_cookie_name("__Host-session");
    let fits = |codec: &InteropCodec, len: usize| {
        let session: PyDict = [("blob", &noise[..len])].into_iter().collect();
        codec.encode(&session, T0).is_ok()
    };
    let len = (1..noise.len())
        .find(|&len| fits(&short, len) && !fits(&long, len))
        .expect("a length only the short name fits");
    let blob = noise[..len].to_owned();

    for (layer, name) in [
        (
            SessionLayer::with_interop(short.clone()).host_prefix(true),
            "__Host-session",
        ),
        (
            SessionLayer::with_interop(short.clone())
                .cookie_name("session_with_a_longer_name")
                .secure(false),
            "session_with_a_longer_name",
        ),
    ] {
        let blob = blob.clone();
        let handler = move |session: Session| {
            let blob = blob.clone();
            async move {
                match session.insert("blob", blob).await {
                    Err(SessionError::TooLarge { size, limit }) => {
                        assert!(size > limit);
                        "too large"
                    }
                    Err(other) => panic!("{other}"),
                    Ok(()) => "stored",
                }
            }
        };
        let mut app = axum::Router::new()
            .route("/", get(handler))
            .layer(layer.build().unwrap());
        let answer = ask(&mut app, "/", None).await;
        assert_eq!(answer.body, "too large", "{name}");
        assert_eq!(answer.set_cookie, None, "{name}");
    }
}

/// The cookie's `Max-Age` as each framework sets it: Starlette and Django
/// always send `max_age` (new sessions too), Starlette's `max_age=None` is
/// a browser-session cookie, Flask's only with `_permanent`, and Django's
/// `set_expiry(0)` / `set_expiry(300)` hold on every later write (with
/// `_session_expiry` kept for Django).
#[tokio::test(flavor = "multi_thread")]
async fn cookie_max_age_is_the_frameworks() {
    use axum::routing::get;
    use keepsake::{
        middleware::SessionLayer,
        session::{Session, SessionError},
    };
    async fn touch(session: Session) -> Result<&'static str, SessionError> {
        session.insert("touched", 1).await?;
        Ok("ok")
    }
    let app = |codec: InteropCodec| {
        axum::Router::new().route("/touch", get(touch)).layer(
            SessionLayer::with_interop(codec)
                .secure(false)
                .build()
                .unwrap(),
        )
    };
    let day14 = Some("1209600".to_owned());
    let now = keepsake::codec::unix_now();

    // New sessions.
    for (framework, expected) in [
        (Framework::Flask, None),
        (Framework::Starlette, day14.clone()),
        (Framework::Django, day14.clone()),
    ] {
        let mut app = app(InteropCodec::new(framework, key_a().bytes()));
        let answer = ask(&mut app, "/touch", None).await;
        assert_eq!(answer.max_age(), expected, "new {framework} session");
    }

    // Browser-session cookies (Django's SESSION_EXPIRE_AT_BROWSER_CLOSE).
    for framework in [Framework::Starlette, Framework::Django] {
        let codec = InteropCodec::new(framework, key_a().bytes()).with_browser_session(true);
        let answer = ask(&mut app(codec), "/touch", None).await;
        assert_eq!(answer.max_age(), None, "new {framework} browser session");
    }

    // Starlette with max_age=None: a browser-session cookie.
    let codec = InteropCodec::new(Framework::Starlette, key_a().bytes()).with_max_age(None);
    let mut starlette = app(codec);
    let answer = ask(&mut starlette, "/touch", None).await;
    assert_eq!(
        answer.max_age(),
        None,
        "new Starlette session, max_age=None"
    );
    let theirs = framework_cookie(Framework::Starlette, r#"{"user": "ada"}"#, now).await;
    let answer = ask(&mut starlette, "/touch", Some(format!("session={theirs}"))).await;
    assert_eq!(answer.max_age(), None, "Starlette session, max_age=None");

    // Django's set_expiry.
    let mut django = app(InteropCodec::new(Framework::Django, key_a().bytes()));
    for (text, expected) in [
        (r#"{"user":"ada"}"#, day14.clone()),
        (r#"{"user":"ada","_session_expiry":0}"#, None),
        (
            r#"{"user":"ada","_session_expiry":300}"#,
            Some("300".to_owned()),
        ),
    ] {
        let theirs = framework_cookie(Framework::Django, text, now).await;
        let answer = ask(&mut django, "/touch", Some(format!("sessionid={theirs}"))).await;
        assert_eq!(answer.max_age(), expected, "Django {text}");
        let rewritten = answer.value("sessionid");
        let codec = InteropCodec::new(Framework::Django, key_a().bytes());
        let session = codec.decode(&rewritten, now).unwrap().into_session();
        let expiry = serde_json::from_str::<Value>(text).unwrap()["_session_expiry"].clone();
        let kept = session.get("_session_expiry").and_then(PyValue::as_i64);
        assert_eq!(kept, expiry.as_i64(), "Django {text}");
    }
}

// ----- what a request does to an interop session's lifetime ---------------------------

/// The rotated-out key of the lifetime tests.
const OLD_KEY: &str = "old-secret-key-before-rotation";

/// An app behind `SessionLayer::with_interop(codec)` on `clock`: `/user`
/// reads the session, `/skip` does not touch it, `/write` changes it,
/// `/permanent` (which also sets `user`) and `/impermanent` set and
/// remove Flask's `_permanent`,
/// `/expiry` and `/set_user` try what a framework's cookie cannot carry.
fn lifetime_app(codec: InteropCodec, clock: &keepsake::session::ManualClock) -> axum::Router {
    use axum::routing::get;
    use keepsake::{
        middleware::SessionLayer,
        session::{Expiry, Session, SessionError},
    };
    async fn user(session: Session) -> Result<String, SessionError> {
        Ok(session.get::<String>("user").await?.unwrap_or_default())
    }
    async fn write(session: Session) -> Result<&'static str, SessionError> {
        session.insert("user", "grace").await?;
        Ok("written")
    }
    async fn permanent(session: Session) -> Result<&'static str, SessionError> {
        session.insert("user", "ada").await?;
        session.insert("_permanent", true).await?;
        Ok("permanent")
    }
    async fn impermanent(session: Session) -> Result<&'static str, SessionError> {
        session.remove("_permanent").await?;
        Ok("impermanent")
    }
    fn outcome(result: Result<(), SessionError>) -> String {
        match result {
            Ok(()) => "accepted".to_owned(),
            Err(SessionError::Unwritable(reason)) => format!("refused: {reason}"),
            Err(other) => format!("other error: {other}"),
        }
    }
    async fn expiry(session: Session) -> String {
        let remember = Expiry::persistent(std::time::Duration::from_secs(30 * 86_400));
        outcome(session.set_expiry(remember).await)
    }
    async fn set_user(session: Session) -> String {
        outcome(session.set_user(Some("ada")).await)
    }
    axum::Router::new()
        .route("/user", get(user))
        .route("/skip", get(|| async { "skipped" }))
        .route("/write", get(write))
        .route("/permanent", get(permanent))
        .route("/impermanent", get(impermanent))
        .route("/expiry", get(expiry))
        .route("/set_user", get(set_user))
        .layer(
            SessionLayer::with_interop(codec)
                .secure(false)
                .clock(clock.clone())
                .build()
                .unwrap(),
        )
}

/// The issue time of a cookie `codec` verifies.
fn issued_at(codec: &InteropCodec, cookie: &str) -> u64 {
    let at = keepsake::codec::interop::inspect(cookie)
        .unwrap_or_else(|e| panic!("{cookie}: {e}"))
        .issued_at();
    codec
        .decode(cookie, at)
        .unwrap_or_else(|e| panic!("{cookie}: {e}"))
        .issued_at()
}

/// Behind `with_interop` a request that only reads the session, or does
/// not touch it, sends no cookie: none of the frameworks re-signs a session
/// it did not change (Flask's permanent sessions aside, below), so a read
/// must not move the end of the session (it ends `max_age` after its last
/// write). It once sent the cookie again, issued now, once a tenth of
/// `max_age` had passed (keepsake's idle refresh).
#[tokio::test(flavor = "multi_thread")]
async fn reads_do_not_extend_an_interop_session() {
    for framework in Framework::ALL {
        let clock = keepsake::session::ManualClock::new(T0);
        let codec = InteropCodec::new(framework, key_a().bytes());
        let max_age = codec.max_age().unwrap();
        let mut app = lifetime_app(codec.clone(), &clock);
        let cookie = framework_cookie(framework, r#"{"user": "ada"}"#, T0).await;
        let header = format!("{}={cookie}", framework.cookie_name());
        for elapsed in [1, max_age / 10 + 1, max_age / 2, max_age] {
            clock.set(T0 + elapsed);
            let answer = ask(&mut app, "/user", Some(header.clone())).await;
            assert_eq!(answer.body, "ada", "{framework} +{elapsed}");
            assert_eq!(answer.set_cookie, None, "{framework} read at +{elapsed}");
            let answer = ask(&mut app, "/skip", Some(header.clone())).await;
            assert_eq!(answer.set_cookie, None, "{framework} skip at +{elapsed}");
        }
        // Still max_age after the write, not after the last read.
        clock.set(T0 + max_age + 1);
        let answer = ask(&mut app, "/user", Some(header.clone())).await;
        assert_eq!(answer.body, "", "{framework}: expired");
        // A write issues the cookie now.
        clock.set(T0 + 100);
        let answer = ask(&mut app, "/write", Some(header.clone())).await;
        let written = answer.value(framework.cookie_name());
        assert_eq!(issued_at(&codec, &written), T0 + 100, "{framework}");
    }
}

/// Flask re-issues a *permanent* session on every request
/// (`SESSION_REFRESH_EACH_REQUEST`, on by default), read or not, with a
/// cookie lasting `PERMANENT_SESSION_LIFETIME`; keepsake does the same.
#[tokio::test(flavor = "multi_thread")]
async fn flask_permanent_sessions_are_refreshed_on_every_request() {
    let clock = keepsake::session::ManualClock::new(T0);
    let codec = InteropCodec::new(Framework::Flask, key_a().bytes());
    let mut app = lifetime_app(codec.clone(), &clock);
    let cookie = framework_cookie(
        Framework::Flask,
        r#"{"_permanent": true, "user": "ada"}"#,
        T0,
    )
    .await;
    for (elapsed, route) in [(5, "/user"), (86_400, "/skip"), (20 * 86_400, "/user")] {
        clock.set(T0 + elapsed);
        let answer = ask(&mut app, route, Some(format!("session={cookie}"))).await;
        let refreshed = answer.value("session");
        assert_eq!(issued_at(&codec, &refreshed), T0 + elapsed, "{route}");
        assert_eq!(answer.max_age().as_deref(), Some("2678400"), "{route}");
        let session = codec
            .decode(&refreshed, T0 + elapsed)
            .unwrap()
            .into_session();
        assert_eq!(session.get("_permanent"), Some(&PyValue::Bool(true)));
    }
}

/// A cookie that only a fallback key verifies is issued again under the
/// current key with its *original* issue time (and the `Max-Age` it has
/// left): rotating the key must not extend a session. It was issued again
/// at the time of the request.
#[tokio::test(flavor = "multi_thread")]
async fn a_stale_key_reissue_keeps_the_issue_time() {
    for framework in Framework::ALL {
        let clock = keepsake::session::ManualClock::new(T0 + 1_000);
        let current = InteropCodec::new(framework, key_a().bytes());
        let max_age = current.max_age().unwrap();
        let mut app = lifetime_app(current.clone().with_fallbacks([OLD_KEY]), &clock);
        let session: PyDict = [("user", "ada")].into_iter().collect();
        let old = InteropCodec::new(framework, OLD_KEY)
            .encode(&session, T0)
            .unwrap();
        let header = format!("{}={old}", framework.cookie_name());
        for route in ["/skip", "/user"] {
            let answer = ask(&mut app, route, Some(header.clone())).await;
            let reissued = answer.value(framework.cookie_name());
            let opened = current.decode(&reissued, T0 + 1_000).unwrap();
            assert_eq!(opened.key_used(), keepsake::codec::KeyUsed::Current);
            assert_eq!(opened.issued_at(), T0, "{framework} {route}");
            assert_eq!(opened.session(), &session);
            let expected = (framework != Framework::Flask).then(|| (max_age - 1_000).to_string());
            assert_eq!(answer.max_age(), expected, "{framework} {route}");
        }
    }
}

/// `set_expiry` and `set_user` cannot be carried by a framework's cookie:
/// behind `with_interop` they fail with `SessionError::Unwritable` and
/// change nothing, where they once succeeded and were lost (for Flask,
/// `set_expiry` even sent `Max-Age=1800`, keepsake's default idle timeout,
/// for a session Flask keeps 31 days).
#[tokio::test(flavor = "multi_thread")]
async fn set_expiry_and_set_user_are_refused_behind_interop() {
    for framework in Framework::ALL {
        let clock = keepsake::session::ManualClock::new(T0);
        let codec = InteropCodec::new(framework, key_a().bytes());
        let mut app = lifetime_app(codec, &clock);
        let cookie = framework_cookie(framework, r#"{"user": "ada"}"#, T0).await;
        let header = format!("{}={cookie}", framework.cookie_name());
        for route in ["/expiry", "/set_user"] {
            for cookie in [None, Some(header.clone())] {
                let answer = ask(&mut app, route, cookie.clone()).await;
                assert!(
                    answer.body.starts_with("refused: "),
                    "{framework} {route} {cookie:?}: {}",
                    answer.body
                );
                assert_eq!(answer.set_cookie, None, "{framework} {route}");
            }
        }
    }
}

/// Flask's `session.permanent = True` is `session["_permanent"] = True`:
/// inserting `_permanent` makes the session permanent (a cookie lasting the
/// codec's `max_age`, Flask's `PERMANENT_SESSION_LIFETIME`), removing it
/// makes it a browser-session cookie again, and the handler sees the key
/// as a Flask view sees it. It was accepted and dropped.
#[tokio::test(flavor = "multi_thread")]
async fn inserting_permanent_makes_a_flask_session_permanent() {
    let clock = keepsake::session::ManualClock::new(T0);
    for (lifetime, codec) in [
        (
            31 * 86_400,
            InteropCodec::new(Framework::Flask, key_a().bytes()),
        ),
        (
            3_600,
            InteropCodec::new(Framework::Flask, key_a().bytes()).with_max_age(Some(3_600)),
        ),
    ] {
        let mut app = lifetime_app(codec.clone(), &clock);
        let answer = ask(&mut app, "/permanent", None).await;
        assert_eq!(answer.max_age(), Some(lifetime.to_string()));
        let cookie = answer.value("session");
        let session = codec.decode(&cookie, T0).unwrap().into_session();
        assert_eq!(session.get("_permanent"), Some(&PyValue::Bool(true)));
        // Not permanent again: no Max-Age, no `_permanent`.
        let answer = ask(&mut app, "/impermanent", Some(format!("session={cookie}"))).await;
        assert_eq!(answer.max_age(), None);
        let session = codec
            .decode(&answer.value("session"), T0)
            .unwrap()
            .into_session();
        assert_eq!(session.get("_permanent"), None);
    }
}

// ----- empty keys ------------------------------------------------------------------

/// A cookie signed with an EMPTY key by the real itsdangerous (Flask's
/// serializer) or the real Starlette, holding `{"user": "admin"}`, is
/// refused everywhere in keepsake: by a codec whose current or fallback
/// key is empty, by the layer, which refuses to build with one, and by the
/// example app, which drops the empty entries of
/// `SHARED_SECRET_KEY_FALLBACKS` (`old1,` once added the empty key, and
/// the cookie logged in as admin). Flask itself accepts it with an empty
/// fallback key, and Starlette with an empty `secret_key`.
#[tokio::test(flavor = "multi_thread")]
async fn empty_key_cookies_are_refused() {
    use keepsake::middleware::{ConfigError, SessionLayer};
    if !enabled("empty_key_cookies_are_refused") {
        return;
    }
    let make = r#"
import hashlib
from itsdangerous import URLSafeTimedSerializer
from flask.sessions import session_json_serializer
signer = URLSafeTimedSerializer(b"", salt="cookie-session", serializer=session_json_serializer,
                                signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha1})
print(signer.dumps({"user": "admin"}))
"#;
    let flask_cookie = tokio::task::spawn_blocking(move || python(make, &[]).trim().to_owned())
        .await
        .unwrap();
    let now = keepsake::codec::unix_now();
    let admin: PyDict = [("user", "admin")].into_iter().collect();
    let empty = Secret::Text(String::new());
    let (cookie, admin_) = (flask_cookie.clone(), admin.clone());
    let (starlette_cookie, flask_read) = tokio::task::spawn_blocking(move || {
        let flask_read =
            framework_reads(Framework::Flask, &key_a(), &[String::new()], &cookie, now);
        let starlette_cookie = framework_makes(Framework::Starlette, &empty, &admin_, now);
        (starlette_cookie, flask_read)
    })
    .await
    .unwrap();
    assert_eq!(
        flask_read,
        Some(admin.clone()),
        "Flask takes an empty fallback key"
    );

    for (framework, cookie) in [
        (Framework::Flask, &flask_cookie),
        (Framework::Starlette, &starlette_cookie),
    ] {
        // The cookie really is signed with the empty key...
        let unchecked = keepsake::codec::interop::inspect(cookie).unwrap();
        assert_eq!(unchecked.session(), &admin);
        // ...and no codec with an empty key verifies it (or signs anything).
        for codec in [
            InteropCodec::new(framework, ""),
            InteropCodec::new(framework, key_a().bytes()).with_fallbacks([""]),
            InteropCodec::new(framework, key_a().bytes()).with_fallbacks(["old1", ""]),
        ] {
            assert_eq!(
                codec.decode(cookie, now),
                Err(InteropDecodeError::EmptySecret),
                "{framework}"
            );
            assert!(codec.encode(&admin, now).is_err(), "{framework}");
            let err = SessionLayer::with_interop(codec).build().unwrap_err();
            assert!(matches!(err, ConfigError::EmptySecret(f) if f == framework));
        }
    }

    // The example app: empty entries of SHARED_SECRET_KEY_FALLBACKS are no keys.
    let key = "example-secret-key-0123";
    for fallbacks in [
        None,
        Some(""),
        Some("old1,"),
        Some(",old1"),
        Some("old1,,old2"),
    ] {
        let codec = flask_shared_login::codec(key, fallbacks).unwrap();
        assert!(!codec.has_empty_key(), "{fallbacks:?}");
        let mut app = flask_shared_login::app(codec);
        let answer = ask(&mut app, "/whoami", Some(format!("session={flask_cookie}"))).await;
        let body: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(body["user"], Value::Null, "{fallbacks:?}: {body}");
    }
    assert!(flask_shared_login::codec("", None).is_err());
    // Its old keys still work, and a cookie of one is issued again under the
    // current key with its issue time.
    let codec = flask_shared_login::codec(key, Some("old1,old2,")).unwrap();
    let mut app = flask_shared_login::app(codec);
    let session: PyDict = [("user", "ada")].into_iter().collect();
    let old = InteropCodec::new(Framework::Flask, "old1")
        .encode(&session, now - 100)
        .unwrap();
    let answer = ask(&mut app, "/whoami", Some(format!("session={old}"))).await;
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["user"], "ada");
    let current = InteropCodec::new(Framework::Flask, key);
    let reissued = current.decode(&answer.value("session"), now).unwrap();
    assert_eq!(reissued.issued_at(), now - 100);
}

// ----- the frameworks' own rules for when and how long a cookie is set ------------

/// One request through the framework's own session middleware (see
/// `helper.py`'s `visit`): the session cookie it set, if any, and that
/// cookie's lifetime.
async fn framework_visit(
    framework: Framework,
    cookie: Option<String>,
    now: u64,
    set: Value,
    settings: Value,
    max_age: Option<u64>,
) -> (Option<String>, Option<u64>) {
    let (key, key_hex) = key_a().fields();
    let mut request = json!({"fw": framework.as_str(), "op": "visit", "key": key,
        "key_hex": key_hex, "fallbacks": [], "cookie": cookie, "now": now, "set": set,
        "settings": settings});
    if let Some(max_age) = max_age {
        request["max_age"] = max_age.into();
    }
    let answer = tokio::task::spawn_blocking(move || helper().call(&request))
        .await
        .unwrap();
    assert_eq!(answer["status"], 200, "{framework}: {answer}");
    (
        answer["cookie"].as_str().map(str::to_owned),
        answer["max_age"].as_u64(),
    )
}

/// A case of [`requests_set_cookies_as_the_framework_does`]: a session (as
/// the framework serializes it), the framework's settings, and the codec
/// that mirrors them.
struct Case {
    framework: Framework,
    session: &'static str,
    settings: Value,
    max_age: Option<u64>,
    codec: fn(InteropCodec) -> InteropCodec,
}

/// For a session the real framework made, a request that only reads it
/// and one that changes it, three days later, answered by the real
/// framework and by keepsake's layer at the same time: either both set no
/// cookie, or both set a cookie with the same session, issue time and
/// lifetime. Covers reads that must not extend a session, Flask's refresh
/// of permanent sessions (`SESSION_REFRESH_EACH_REQUEST`), Flask's
/// `PERMANENT_SESSION_LIFETIME`, Django's `SESSION_SAVE_EVERY_REQUEST`,
/// `SESSION_EXPIRE_AT_BROWSER_CLOSE` and `_session_expiry`.
#[tokio::test(flavor = "multi_thread")]
async fn requests_set_cookies_as_the_framework_does() {
    if !enabled("requests_set_cookies_as_the_framework_does") {
        return;
    }
    let same = |codec| codec;
    let cases = [
        Case {
            framework: Framework::Flask,
            session: r#"{"user": "ada"}"#,
            settings: json!({}),
            max_age: None,
            codec: same,
        },
        Case {
            framework: Framework::Flask,
            session: r#"{"_permanent": true, "user": "ada"}"#,
            settings: json!({}),
            max_age: None,
            codec: same,
        },
        Case {
            framework: Framework::Flask,
            session: r#"{"_permanent": true, "user": "ada"}"#,
            settings: json!({}),
            max_age: Some(5 * 86_400),
            codec: |c| c.with_max_age(Some(5 * 86_400)),
        },
        Case {
            framework: Framework::Flask,
            session: r#"{"_permanent": true, "user": "ada"}"#,
            settings: json!({"SESSION_REFRESH_EACH_REQUEST": false}),
            max_age: None,
            codec: |c| c.with_refresh_each_request(false),
        },
        Case {
            framework: Framework::Starlette,
            session: r#"{"user": "ada"}"#,
            settings: json!({}),
            max_age: None,
            codec: same,
        },
        Case {
            framework: Framework::Django,
            session: r#"{"user": "ada"}"#,
            settings: json!({}),
            max_age: None,
            codec: same,
        },
        Case {
            framework: Framework::Django,
            session: r#"{"user": "ada", "_session_expiry": 300}"#,
            settings: json!({}),
            max_age: None,
            codec: same,
        },
        Case {
            framework: Framework::Django,
            session: r#"{"user": "ada"}"#,
            settings: json!({"SESSION_SAVE_EVERY_REQUEST": true}),
            max_age: None,
            codec: |c| c.with_refresh_each_request(true),
        },
        Case {
            framework: Framework::Django,
            session: r#"{"user": "ada"}"#,
            settings: json!({"SESSION_EXPIRE_AT_BROWSER_CLOSE": true}),
            max_age: None,
            codec: |c| c.with_browser_session(true),
        },
        Case {
            framework: Framework::Django,
            session: r#"{"user": "ada", "_session_expiry": 300}"#,
            settings: json!({"SESSION_EXPIRE_AT_BROWSER_CLOSE": true}),
            max_age: None,
            codec: |c| c.with_browser_session(true),
        },
        Case {
            framework: Framework::Django,
            session: r#"{"user": "ada", "_session_expiry": 0}"#,
            settings: json!({}),
            max_age: None,
            codec: same,
        },
    ];
    let mut refreshed_on_read = 0;
    for case in cases {
        let framework = case.framework;
        let what = format!("{framework} {} {}", case.session, case.settings);
        let theirs = framework_cookie(framework, case.session, T0).await;
        let now = T0 + 3 * 86_400;
        let clock = keepsake::session::ManualClock::new(now);
        let mut codec = InteropCodec::new(framework, key_a().bytes());
        if case.max_age.is_some() {
            codec = codec.with_max_age(case.max_age);
        }
        let codec_for_case = (case.codec)(codec);
        let mut app = lifetime_app(codec_for_case.clone(), &clock);
        let header = format!("{}={theirs}", framework.cookie_name());
        for (route, set) in [("/user", Value::Null), ("/write", json!({"user": "grace"}))] {
            let (cookie, max_age) = framework_visit(
                framework,
                Some(theirs.clone()),
                now,
                set,
                case.settings.clone(),
                case.max_age,
            )
            .await;
            let answer = ask(&mut app, route, Some(header.clone())).await;
            let ours = answer
                .set_cookie
                .as_ref()
                .map(|_| answer.value(framework.cookie_name()));
            // The same session issued at the same time (keepsake's records
            // keep keys sorted, so Starlette's and Django's key order may
            // differ: compare what they hold).
            let opened = |cookie: &Option<String>| {
                cookie.as_ref().map(|cookie| {
                    let opened = codec_for_case.decode(cookie, now).unwrap();
                    (opened.issued_at(), opened.into_session())
                })
            };
            assert_eq!(opened(&ours), opened(&cookie), "{what} {route}");
            let ours_max_age = answer
                .set_cookie
                .as_ref()
                .and_then(|_| answer.max_age())
                .map(|max_age| max_age.parse::<u64>().unwrap());
            // Flask sends Expires, which the helper turns into seconds
            // with the real clock: a second either way.
            match (ours_max_age, max_age) {
                (Some(ours), Some(theirs)) => {
                    assert!(
                        ours.abs_diff(theirs) <= 2,
                        "{what} {route}: {ours} {theirs}"
                    );
                }
                (ours, theirs) => assert_eq!(ours, theirs, "{what} {route}"),
            }
            match route {
                "/write" => assert!(cookie.is_some(), "{what}: a write sets the cookie"),
                _ => refreshed_on_read += usize::from(cookie.is_some()),
            }
        }
    }
    // Flask's two permanent sessions and Django's SESSION_SAVE_EVERY_REQUEST.
    assert_eq!(refreshed_on_read, 3);
}

/// A new session made permanent (`session.permanent = True` in Flask,
/// `insert("_permanent", true)` in keepsake) gets a cookie lasting
/// `PERMANENT_SESSION_LIFETIME`, from the real Flask and from keepsake;
/// Flask reads keepsake's as permanent.
#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_flask_session_lasts_as_flask_sets_it() {
    if !enabled("a_permanent_flask_session_lasts_as_flask_sets_it") {
        return;
    }
    for lifetime in [31 * 86_400, 3_600] {
        let (cookie, max_age) = framework_visit(
            Framework::Flask,
            None,
            T0,
            json!({"user": "ada", "_permanent": true}),
            json!({}),
            Some(lifetime),
        )
        .await;
        let clock = keepsake::session::ManualClock::new(T0);
        let codec =
            InteropCodec::new(Framework::Flask, key_a().bytes()).with_max_age(Some(lifetime));
        let mut app = lifetime_app(codec, &clock);
        let answer = ask(&mut app, "/permanent", None).await;
        let ours = answer.value("session");
        assert_eq!(Some(ours.clone()), cookie, "{lifetime}");
        let theirs = max_age.unwrap();
        assert!(theirs.abs_diff(lifetime) <= 2, "{theirs}");
        assert_eq!(answer.max_age(), Some(lifetime.to_string()));
        // Flask reads it as permanent: it refreshes it on a read.
        let (refreshed, _) = framework_visit(
            Framework::Flask,
            Some(ours),
            T0 + 60,
            Value::Null,
            json!({}),
            Some(lifetime),
        )
        .await;
        assert!(refreshed.is_some(), "{lifetime}");
    }
}
