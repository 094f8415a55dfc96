//! What both fault-test files share: the app under load (a session
//! counter behind a `SessionLayer`, served on 127.0.0.1), the browsers that
//! load it, what one request got, and a process-wide panic counter.

use std::{
    sync::{
        Once,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::Router;
use keepsake::{
    key::{Key, KeyRing},
    middleware::SessionLayer,
    session::{Session, SessionError},
    store::SessionStore,
};

/// Panics anywhere in the process (server tasks included).
pub(crate) static PANICS: AtomicUsize = AtomicUsize::new(0);

/// The middleware's store timeout in the fault tests.
pub(crate) const STORE_TIMEOUT: Duration = Duration::from_millis(400);

/// Counts every panic in [`PANICS`] (installed once per process).
pub(crate) fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

/// Increments `n` in the session and answers it.
pub(crate) async fn count(session: Session) -> Result<String, SessionError> {
    let n: u64 = session.get("n").await?.unwrap_or(0) + 1;
    session.insert("n", n).await?;
    Ok(n.to_string())
}

/// A real axum server on 127.0.0.1; the task is checked for life at the end.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) base: String,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn serve(router: Router) -> App {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    App {
        base: format!("http://{addr}"),
        task,
    }
}

pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client")
}

/// The session layer of the fault tests: plain HTTP, [`STORE_TIMEOUT`].
pub(crate) fn layer(store: impl SessionStore) -> SessionLayer {
    SessionLayer::with_store(store, KeyRing::new(Key::generate()))
        .secure(false)
        .store_timeout(STORE_TIMEOUT)
        .build()
        .expect("layer")
}

/// What one request got.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// 200 with the counter.
    Ok { value: u64, set_cookie: bool },
    /// 503.
    Unavailable { retry_after: bool, set_cookie: bool },
    /// Any other status.
    Other(u16),
    /// No HTTP answer at all.
    Transport(String),
}

/// One request: when it was sent and answered (since the load's start).
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) sent: Duration,
    pub(crate) done: Duration,
    pub(crate) outcome: Outcome,
}

pub(crate) async fn request(client: &reqwest::Client, url: &str) -> Outcome {
    match client.get(url).send().await {
        Err(err) => Outcome::Transport(err.to_string()),
        Ok(response) => {
            let status = response.status().as_u16();
            let set_cookie = response.headers().contains_key(reqwest::header::SET_COOKIE);
            let retry_after = response
                .headers()
                .contains_key(reqwest::header::RETRY_AFTER);
            match (status, response.text().await) {
                (_, Err(err)) => Outcome::Transport(err.to_string()),
                (200, Ok(body)) => match body.parse() {
                    Ok(value) => Outcome::Ok { value, set_cookie },
                    Err(_) => Outcome::Transport(format!("200 with body {body:?}")),
                },
                (503, Ok(_)) => Outcome::Unavailable {
                    retry_after,
                    set_cookie,
                },
                (status, Ok(_)) => Outcome::Other(status),
            }
        }
    }
}

/// Loads `url` from `start` until `end` with `browsers`, one task each:
/// every browser sends one request per `pace`, the browsers spread evenly
/// over one pace, and a tick whose time since `start` is `quiet` sends
/// nothing. What each browser got, in order.
pub(crate) async fn paced_load(
    browsers: Vec<reqwest::Client>,
    url: &str,
    (start, end): (Instant, Instant),
    pace: Duration,
    quiet: impl Fn(Duration) -> bool + Copy + Send + 'static,
) -> Vec<Vec<Sample>> {
    let clients = u32::try_from(browsers.len()).expect("few clients");
    let mut tasks = Vec::new();
    for (i, client) in (0..).zip(browsers) {
        let url = url.to_owned();
        let offset = pace * i / clients;
        tasks.push(tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at((start + offset).into(), pace);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut samples = Vec::new();
            loop {
                ticks.tick().await;
                if Instant::now() >= end {
                    return samples;
                }
                let sent = start.elapsed();
                if quiet(sent) {
                    continue;
                }
                let outcome = request(&client, &url).await;
                samples.push(Sample {
                    sent,
                    done: start.elapsed(),
                    outcome,
                });
            }
        }));
    }
    let mut per_client = Vec::new();
    for task in tasks {
        per_client.push(task.await.unwrap_or_default());
    }
    per_client
}
