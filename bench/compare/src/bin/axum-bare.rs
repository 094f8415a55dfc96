//! Baseline: axum with no session layer; /incr and /read return a constant.
//!
//! Usage: `axum-bare PORT WORKERS`
//!
//! `KEEPSAKE_BENCH_SPIN_NS=N` makes each request spin on the CPU for N
//! nanoseconds first: the baseline with a known cost added in-process, to
//! see what a given in-process cost does to throughput on the wire
//! (BENCHMARKS.md).

use std::time::{Duration, Instant};

use axum::{Router, routing::get};

/// The answer, after busy-waiting for `cost` if it is not zero (no sleep:
/// the cost is CPU time, as a layer's is).
fn answer(cost: Duration) -> &'static str {
    if !cost.is_zero() {
        let start = Instant::now();
        while start.elapsed() < cost {
            std::hint::spin_loop();
        }
    }
    "1"
}

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|s| s.parse().ok()).unwrap_or(18180);
    let workers: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(async move {
            let ns = keepsake_compare::env_number("KEEPSAKE_BENCH_SPIN_NS").unwrap_or(0);
            let cost = Duration::from_nanos(ns);
            let handler = move || async move { answer(cost) };
            let app = Router::new()
                .route("/incr", get(handler))
                .route("/read", get(handler));
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("bind");
            eprintln!("axum-bare on 127.0.0.1:{port}, {workers} workers");
            axum::serve(listener, app).await.expect("serve");
        });
}
