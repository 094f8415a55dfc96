//! What the browser tests need around them: the demo binary on a free port,
//! a chromedriver per test, headless Chromium sessions with their own
//! profiles, and bounded waits for the page to reach a state.
//!
//! Every process started here is ended by a guard's `Drop`, by its PID, so a
//! failing test leaves no demo, chromedriver or Chromium behind.

use std::{
    fs::File,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator, wd::Capabilities};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The Debian package `chromium`.
pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";
/// The Debian package `chromium-driver`.
pub(crate) const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a page gets to reach an expected state after a click or a
/// reload. The page's buttons call the API and then reload, which takes a
/// few hundred milliseconds; the margin is for a loaded CI machine.
pub(crate) const WAIT: Duration = Duration::from_secs(10);
/// How long a process gets to start answering on its port.
const STARTUP: Duration = Duration::from_secs(20);
/// Between two looks at the page or a port.
const POLL: Duration = Duration::from_millis(100);

/// The flags every Chromium here runs with; the profile and window size are
/// added per session.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    // Containers often have a small /dev/shm.
    "--disable-dev-shm-usage",
    // Only for a tidy screenshot.
    "--hide-scrollbars",
];

/// Whether the browser tests can run. Without Chromium they are skipped
/// with a note, unless `KEEPSAKE_TEST_BROWSER=1` (CI) asks for them, in
/// which case a missing browser fails the test.
pub(crate) fn browser_available() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    assert!(
        std::env::var("KEEPSAKE_TEST_BROWSER").as_deref() != Ok("1"),
        "KEEPSAKE_TEST_BROWSER=1 but {CHROMIUM} or {CHROMEDRIVER} is missing \
         (apt-get install chromium chromium-driver)"
    );
    eprintln!(
        "skipping browser tests: chromium/chromedriver not installed \
         (apt-get install chromium chromium-driver)"
    );
    false
}

/// Returns early from a test when there is no browser to run it in.
macro_rules! require_browser {
    () => {
        if !harness::browser_available() {
            return;
        }
    };
}
pub(crate) use require_browser;

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// The status code of `GET path` on 127.0.0.1:`port`, or `None` when
/// nothing answers within a second.
async fn http_status(port: u16, path: &str) -> Option<u16> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0_u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        // "HTTP/1.1 200"
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(1), exchange)
        .await
        .ok()
        .flatten()
}

/// Polls `GET path` on `port` until it answers 200, for at most
/// [`STARTUP`]; `child` exiting first fails at once.
async fn wait_until_serving(what: &str, child: &mut Child, port: u16, path: &str, log: &Path) {
    let deadline = Instant::now() + STARTUP;
    loop {
        if http_status(port, path).await == Some(200) {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited with {status} before serving; its output:\n{}",
                read_log(log)
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not answer GET {path} on 127.0.0.1:{port} within {STARTUP:?}; \
             its output:\n{}",
            read_log(log)
        );
        tokio::time::sleep(POLL).await;
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| format!("(no log: {err})"))
}

/// Kills `child` by its PID and reaps it.
fn kill(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// The real `keepsake-demo` binary, serving on a free port from a temporary
/// working directory (where its secret file goes). Killed on drop.
pub(crate) struct Demo {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Demo {
    /// Starts `keepsake-demo --addr 127.0.0.1:PORT --store memory` plus
    /// `extra` flags and waits for `/healthz`.
    pub(crate) async fn start(extra: &[&str]) -> Self {
        Self::spawn(&["--store", "memory"], extra).await
    }

    /// Starts `keepsake-demo --addr 127.0.0.1:PORT` with its default store
    /// (`sqlite://keepsake-demo.db`, in the temporary working directory)
    /// plus `extra` flags, and waits for `/healthz`.
    pub(crate) async fn start_with_default_store(extra: &[&str]) -> Self {
        Self::spawn(&[], extra).await
    }

    async fn spawn(store: &[&str], extra: &[&str]) -> Self {
        let dir = TempDir::new().expect("temp dir for the demo");
        let log = dir.path().join("demo.log");
        let output = File::create(&log).expect("demo log file");
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_keepsake-demo"))
            .arg("--addr")
            .arg(format!("127.0.0.1:{port}"))
            .args(store)
            .args(extra)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("demo log file"))
            .stderr(output)
            .spawn()
            .expect("start the keepsake-demo binary");
        wait_until_serving("keepsake-demo", &mut child, port, "/healthz", &log).await;
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// Another site's page, on 127.0.0.1 (another port: the same site as the
/// demo), that frames `target`. Stops serving on drop.
pub(crate) struct Framer {
    port: u16,
    server: tokio::task::JoinHandle<()>,
}

impl Framer {
    pub(crate) async fn start(target: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        let page = format!(
            r#"<!doctype html><title>framer</title><iframe src="{target}" width="800" height="600"></iframe>"#
        );
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{page}",
            page.len()
        );
        let server = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let response = response.clone();
                tokio::spawn(async move {
                    // The request head, read (in part) and ignored.
                    let mut head = [0_u8; 4096];
                    let _ = stream.read(&mut head).await;
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { port, server }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Framer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A chromedriver on a free port. On drop it is asked to shut down, which
/// also quits every Chromium it started, and killed if it does not exit.
pub(crate) struct Driver {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Driver {
    pub(crate) async fn start() -> Self {
        let dir = TempDir::new().expect("temp dir for chromedriver");
        let log = dir.path().join("chromedriver.log");
        let port = free_port();
        let mut child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        wait_until_serving("chromedriver", &mut child, port, "/status", &log).await;
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    /// A new headless Chromium session whose profile is `profile`. Two
    /// sessions one after the other on the same profile are a browser
    /// restart; sessions on different profiles share nothing.
    pub(crate) async fn browser(&self, profile: &Path) -> Browser {
        self.browser_with(profile, true).await
    }

    /// [`Driver::browser`], with JavaScript switched off for pages (as a
    /// visitor may have it) when `javascript` is false.
    pub(crate) async fn browser_with(&self, profile: &Path, javascript: bool) -> Browser {
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|arg| (*arg).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.push("--window-size=1280,900".to_owned());
        // 2: blocked, as the browser's own setting would have it.
        let prefs = if javascript {
            json!({})
        } else {
            json!({ "profile.managed_default_content_settings.javascript": 2 })
        };
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args, "prefs": prefs },
            // Keeps the console for `Browser::console`.
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        let capabilities: Capabilities = capabilities;
        let client = tokio::time::timeout(
            STARTUP,
            ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities)
                .connect(&format!("http://127.0.0.1:{}", self.port)),
        )
        .await
        .unwrap_or_else(|_| panic!("Chromium did not start within {STARTUP:?}"))
        .expect("start a Chromium session");
        Browser {
            client,
            driver: format!("http://127.0.0.1:{}", self.port),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // `/shutdown` quits the Chromium sessions too; killing chromedriver
        // alone would leave them running.
        let asked = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(1),
        )
        .and_then(|mut stream| {
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(
                b"GET /shutdown HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            )?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).map(|_| ())
        });
        if asked.is_ok() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        kill(&mut self.child);
    }
}

/// A temporary Chromium profile (`--user-data-dir`).
pub(crate) fn profile() -> TempDir {
    TempDir::new().expect("temp dir for a Chromium profile")
}

/// One Chromium session, with the page helpers the tests use. Element
/// lookups that fail while the page reloads count as "not there yet".
pub(crate) struct Browser {
    pub(crate) client: Client,
    /// The chromedriver's base URL, for what fantoccini does not ask.
    driver: String,
}

impl Browser {
    pub(crate) async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|err| panic!("open {url}: {err}"));
    }

    pub(crate) async fn reload(&self) {
        self.client.refresh().await.expect("reload the page");
    }

    /// The visible text of `#id`, or `None` when there is no such element.
    pub(crate) async fn text(&self, id: &str) -> Option<String> {
        let element = self.client.find(Locator::Id(id)).await.ok()?;
        element.text().await.ok().map(|text| text.trim().to_owned())
    }

    /// Whether `#id` is on the page.
    pub(crate) async fn has(&self, id: &str) -> bool {
        self.client.find(Locator::Id(id)).await.is_ok()
    }

    /// `#visits` as a number.
    pub(crate) async fn visits(&self) -> Option<u64> {
        self.text("visits").await?.parse().ok()
    }

    /// `<body data-theme>`.
    pub(crate) async fn theme(&self) -> Option<String> {
        let body = self.client.find(Locator::Css("body")).await.ok()?;
        body.attr("data-theme").await.ok().flatten()
    }

    pub(crate) async fn click(&self, id: &str) {
        let element = self
            .client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|err| panic!("no #{id} to click: {err}"));
        element
            .click()
            .await
            .unwrap_or_else(|err| panic!("click #{id}: {err}"));
    }

    pub(crate) async fn type_into(&self, id: &str, text: &str) {
        let element = self
            .client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|err| panic!("no #{id} to type into: {err}"));
        element
            .clear()
            .await
            .unwrap_or_else(|err| panic!("clear #{id}: {err}"));
        element
            .send_keys(text)
            .await
            .unwrap_or_else(|err| panic!("type into #{id}: {err}"));
    }

    /// Waits (at most [`WAIT`]) until `#id`'s text is `expected`.
    pub(crate) async fn wait_text(&self, id: &str, expected: &str) {
        wait_for(
            &format!("#{id} to read {expected:?}"),
            async || match self.text(id).await {
                Some(text) if text == expected => Ok(()),
                Some(text) => Err(format!("{text:?}")),
                None => Err(format!("no #{id}")),
            },
        )
        .await;
    }

    /// Types `name` into the login form, submits it and waits for the page
    /// to show the user logged in.
    pub(crate) async fn log_in(&self, name: &str) {
        self.type_into("login-name", name).await;
        self.click("login-button").await;
        self.wait_text("user", name).await;
        self.wait_present("logout-button").await;
    }

    /// Waits (at most [`WAIT`]) until `#id` is on the page.
    pub(crate) async fn wait_present(&self, id: &str) {
        wait_for(&format!("#{id} to appear"), async || {
            if self.has(id).await {
                Ok(())
            } else {
                Err("absent".to_owned())
            }
        })
        .await;
    }

    /// Resizes the window so that the page's viewport is `width` x `height`
    /// (the window also counts the browser's own frame, even headless).
    pub(crate) async fn set_viewport(&self, width: u32, height: u32) {
        let frame = self
            .client
            .execute(
                "return [window.outerWidth - window.innerWidth, \
                 window.outerHeight - window.innerHeight]",
                Vec::new(),
            )
            .await
            .expect("measure the window frame");
        let extra = |index: usize| {
            frame[index]
                .as_u64()
                .and_then(|extra| u32::try_from(extra).ok())
                .unwrap_or(0)
        };
        self.client
            .set_window_size(width + extra(0), height + extra(1))
            .await
            .expect("resize the window");
    }

    /// The console messages (and failed loads, and CSP refusals) logged
    /// since the last call, as `LEVEL message`; chromedriver hands each out
    /// once.
    pub(crate) async fn console(&self) -> Vec<String> {
        let session = self
            .client
            .session_id()
            .await
            .expect("the WebDriver session id")
            .expect("a WebDriver session");
        // chromedriver's log endpoint, which WebDriver itself lacks.
        let url = format!("{}/session/{session}/se/log", self.driver);
        let answer: Value = reqwest::Client::builder()
            .no_proxy()
            .timeout(WAIT)
            .build()
            .expect("an HTTP client")
            .post(&url)
            .json(&json!({ "type": "browser" }))
            .send()
            .await
            .unwrap_or_else(|err| panic!("POST {url}: {err}"))
            .json()
            .await
            .unwrap_or_else(|err| panic!("POST {url}: not JSON: {err}"));
        let entries = answer["value"]
            .as_array()
            .unwrap_or_else(|| panic!("POST {url}: no log in {answer}"));
        entries
            .iter()
            .map(|entry| {
                format!(
                    "{} {}",
                    entry["level"].as_str().unwrap_or("?"),
                    entry["message"].as_str().unwrap_or("?")
                )
            })
            .collect()
    }

    /// The console's warnings and errors since the last look (see
    /// [`Browser::console`]).
    pub(crate) async fn console_problems(&self) -> Vec<String> {
        self.console()
            .await
            .into_iter()
            .filter(|line| line.starts_with("SEVERE") || line.starts_with("WARNING"))
            .collect()
    }

    /// The height of the whole page at the current width, in CSS pixels.
    pub(crate) async fn page_height(&self) -> u32 {
        let height = self
            .client
            .execute("return document.documentElement.scrollHeight", Vec::new())
            .await
            .expect("measure the page");
        height
            .as_u64()
            .and_then(|height| u32::try_from(height).ok())
            .unwrap_or_else(|| panic!("a page height, not {height}"))
    }

    /// Ends the Chromium session, which writes the profile to disk.
    pub(crate) async fn close(self) {
        self.client.close().await.expect("close the browser");
    }
}

/// Polls `probe` every [`POLL`] until it returns `Ok`, for at most
/// [`WAIT`]; then fails with `what` and the last `Err` it returned (what the
/// page showed instead).
pub(crate) async fn wait_for<T>(
    what: &str,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= deadline => {
                panic!("timed out after {WAIT:?} waiting for {what}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// `docs/screenshot.png` in the workspace.
pub(crate) fn screenshot_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshot.png")
}

/// The width and height in a PNG's header.
pub(crate) fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    if png.get(..8)? != b"\x89PNG\r\n\x1a\n" || png.get(12..16)? != b"IHDR" {
        return None;
    }
    let width = u32::from_be_bytes(png.get(16..20)?.try_into().ok()?);
    let height = u32::from_be_bytes(png.get(20..24)?.try_into().ok()?);
    Some((width, height))
}
