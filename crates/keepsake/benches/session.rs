//! The cost of a session write through the middleware, no concurrency: a
//! counter kept with `get` + `insert` (a plain save) next to the same
//! counter kept with `Session::update` (recorded as a replayable change), in
//! one run, on the memory and SQLite stores.
//!
//! Each iteration is one whole request through the axum router and the
//! session layer (no network): cookie verify, load, handler, compare-and-set
//! save. Run: `cargo bench -p keepsake --bench session`; see BENCHMARKS.md.
//!
//! On a noisy machine, `KEEPSAKE_SESSION_INTERLEAVED=ROUNDS cargo bench -p
//! keepsake --bench session` instead alternates batches of the two handlers
//! and prints the median of the per-round time ratios, which load from
//! other processes affects far less.

use std::hint::black_box;

use axum::{Router, body::Body, routing::post};
use criterion::{Criterion, criterion_group};
use http::{Request, header};
use keepsake::{
    key::{Key, KeyRing},
    middleware::SessionLayer,
    session::{Session, SessionError},
    store::{MemoryStore, SessionStore, SqliteStore},
};
use tower_service::Service as _;

async fn plain(session: Session) -> Result<String, SessionError> {
    let n: u64 = session.get("n").await?.unwrap_or(0) + 1;
    session.insert("n", n).await?;
    Ok(n.to_string())
}

async fn update(session: Session) -> Result<String, SessionError> {
    let n: u64 = session
        .update("n", |n: Option<u64>| n.unwrap_or(0) + 1)
        .await?;
    Ok(n.to_string())
}

/// The app over `store`, and a session cookie for it.
fn app<S: SessionStore>(rt: &tokio::runtime::Runtime, store: S) -> (Router, String) {
    let layer = SessionLayer::with_store(store, KeyRing::new(Key::generate()))
        .build()
        .expect("layer");
    let mut app = Router::new()
        .route("/plain", post(plain))
        .route("/update", post(update))
        .layer(layer);
    let response = rt
        .block_on(app.call(Request::post("/plain").body(Body::empty()).unwrap()))
        .unwrap();
    let cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    (app, cookie)
}

/// One request to `route` with `cookie`.
fn request(rt: &tokio::runtime::Runtime, app: &mut Router, route: &str, cookie: &str) {
    let request = Request::post(route)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let response = rt.block_on(app.call(request)).unwrap();
    assert!(response.status().is_success());
    black_box(response);
}

/// Alternating batches of `/plain` and `/update`; the median ratio.
fn interleaved<S: SessionStore>(name: &str, store: S, rounds: usize) {
    const BATCH: usize = 2_000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut app, cookie) = app(&rt, store);
    let mut time = |route: &str| {
        let start = std::time::Instant::now();
        for _ in 0..BATCH {
            request(&rt, &mut app, route, &cookie);
        }
        start.elapsed().as_secs_f64() / BATCH as f64
    };
    let mut ratios = Vec::new();
    let (mut plain_total, mut update_total) = (0.0, 0.0);
    for round in 0..rounds {
        let (plain, update) = if round % 2 == 0 {
            let plain = time("/plain");
            (plain, time("/update"))
        } else {
            let update = time("/update");
            (time("/plain"), update)
        };
        plain_total += plain;
        update_total += update;
        ratios.push(update / plain);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "{name}: plain {:.2} µs, update {:.2} µs per request (means); update/plain median ratio {:.3} over {rounds} rounds",
        plain_total / rounds as f64 * 1e6,
        update_total / rounds as f64 * 1e6,
        ratios[rounds / 2],
    );
}

fn bench_store<S: SessionStore>(c: &mut Criterion, name: &str, store: impl Fn() -> S) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut app, cookie) = app(&rt, store());
    let mut group = c.benchmark_group(format!("save/{name}"));
    for route in ["/plain", "/update"] {
        group.bench_function(&route[1..], |b| {
            b.iter(|| request(&rt, &mut app, route, &cookie));
        });
    }
    group.finish();
}

/// A SQLite store in a fresh temporary directory (removed at exit by the
/// caller).
fn sqlite(dir: &std::path::Path) -> SqliteStore {
    std::fs::create_dir_all(dir).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(SqliteStore::open(dir.join("sessions.db")))
        .unwrap()
}

fn temp_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("keepsake-bench-{}", std::process::id()))
}

fn saves(c: &mut Criterion) {
    bench_store(c, "memory", MemoryStore::new);
    let dir = temp_dir();
    let store = sqlite(&dir);
    bench_store(c, "sqlite", move || store.clone());
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, saves);

fn main() {
    if let Ok(rounds) = std::env::var("KEEPSAKE_SESSION_INTERLEAVED") {
        let rounds = rounds.parse().unwrap_or(20).max(1);
        interleaved("memory", MemoryStore::new(), rounds);
        let dir = temp_dir();
        interleaved("sqlite", sqlite(&dir), rounds / 4 + 1);
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
