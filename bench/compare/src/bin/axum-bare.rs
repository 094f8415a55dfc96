//! Baseline: axum with no session layer; /incr and /read return a constant.
//!
//! Usage: `axum-bare PORT WORKERS`

use axum::{Router, routing::get};

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
            let app = Router::new()
                .route("/incr", get(|| async { "1" }))
                .route("/read", get(|| async { "1" }));
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("bind");
            eprintln!("axum-bare on 127.0.0.1:{port}, {workers} workers");
            axum::serve(listener, app).await.expect("serve");
        });
}
