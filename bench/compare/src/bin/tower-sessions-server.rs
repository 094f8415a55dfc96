//! axum + tower-sessions (0.14), memory or Redis (tower-sessions-redis-store,
//! a fred pool of WORKERS connections).
//!
//! Usage: `tower-sessions-server PORT WORKERS memory|redis [REDIS_URL]`

use axum::{Router, routing::get};
use tower_sessions::{MemoryStore, Session, SessionManagerLayer, SessionStore};
use tower_sessions_redis_store::{
    RedisStore,
    fred::prelude::{ClientLike, Config, Pool},
};

async fn incr(session: Session) -> Result<String, &'static str> {
    let n: i64 = session.get("count").await.map_err(|_| "load")?.unwrap_or(0) + 1;
    session.insert("count", n).await.map_err(|_| "insert")?;
    Ok(n.to_string())
}

async fn read(session: Session) -> Result<String, &'static str> {
    let n: i64 = session.get("count").await.map_err(|_| "load")?.unwrap_or(0);
    Ok(n.to_string())
}

fn app<S: SessionStore + Clone>(store: S) -> Router {
    Router::new()
        .route("/incr", get(incr))
        .route("/read", get(read))
        .layer(SessionManagerLayer::new(store).with_secure(false))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|s| s.parse().ok()).unwrap_or(18182);
    let workers: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2);
    let store = args.next().unwrap_or_else(|| "memory".to_owned());
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(async move {
            let router = match store.as_str() {
                "memory" => app(MemoryStore::default()),
                "redis" => {
                    let config = Config::from_url(&url).expect("Redis URL");
                    let pool = Pool::new(config, None, None, None, workers).expect("pool");
                    let _connection = pool.connect();
                    pool.wait_for_connect().await.expect("connect to Redis");
                    app(RedisStore::new(pool))
                }
                other => panic!("unknown store {other:?}"),
            };
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("bind");
            eprintln!("tower-sessions[{store}] on 127.0.0.1:{port}, {workers} workers");
            axum::serve(listener, router).await.expect("serve");
        });
}
