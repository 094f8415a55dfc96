//! keepsake behind axum, the way an app would use it.
//!
//! Usage: `keepsake-server PORT WORKERS STORE [ARG]` with STORE one of
//! `memory`, `sqlite PATH`, `redis URL`, `postgres URL` (ARG may carry
//! `schema=S` among its query parameters, `?schema=S` or `...&schema=S`;
//! the schema is created; default `public`), `signed`, `sealed`.
//!
//! `KEEPSAKE_BENCH_SQLITE_CONNECTIONS=N` sets the SQLite store's number of
//! connections (default: the store's own default);
//! `KEEPSAKE_BENCH_REDIS_CACHE=N` the Redis store's local cache capacity (0:
//! no cache; default: the store's own default).
//!
//! - GET /incr: `Session::update` of `count` (+1), returns the new value.
//! - GET /read: `Session::get` of `count`, returns it (session unchanged).

use axum::{Router, routing::get};
use keepsake::{
    codec::Format,
    key::{Key, KeyRing},
    middleware::{SessionLayer, SessionLayerBuilder},
    session::{Session, SessionError},
    store::{MemoryStore, PostgresStore, RedisStore, SqliteStore},
};

async fn incr(session: Session) -> Result<String, SessionError> {
    let n: i64 = session
        .update("count", |n: Option<i64>| n.unwrap_or(0) + 1)
        .await?;
    Ok(n.to_string())
}

async fn read(session: Session) -> Result<String, SessionError> {
    let n: i64 = session.get("count").await?.unwrap_or(0);
    Ok(n.to_string())
}

/// `url` without its `schema=` query parameter, and that schema (`public`
/// without one). The other parameters stay, so `?sslmode=...&schema=S`
/// works as well as `?schema=S`.
fn split_schema(url: &str) -> (String, String) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), "public".to_owned());
    };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|param| match param.strip_prefix("schema=") {
            Some(name) => {
                schema = Some(name.to_owned());
                false
            }
            None => true,
        })
        .collect();
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, schema.unwrap_or_else(|| "public".to_owned()))
}

async fn layer(store: &str, arg: Option<String>) -> SessionLayerBuilder {
    let ring = KeyRing::new(Key::generate());
    let arg = || arg.clone().expect("this store needs an argument");
    match store {
        "memory" => SessionLayer::with_store(MemoryStore::new(), ring),
        "sqlite" => {
            let mut builder = SqliteStore::builder(arg());
            if let Some(n) = keepsake_compare::env_number("KEEPSAKE_BENCH_SQLITE_CONNECTIONS") {
                builder = builder.connections(n);
            }
            let store = builder.open().await.expect("open SQLite");
            SessionLayer::with_store(store, ring)
        }
        "redis" => {
            let store = RedisStore::connect(&arg())
                .await
                .expect("connect to Redis")
                .with_prefix("keepsake-bench:");
            let store = keepsake_compare::with_bench_cache(store);
            SessionLayer::with_store(store, ring)
        }
        "postgres" => {
            let (url, schema) = split_schema(&arg());
            let store = PostgresStore::builder()
                .schema(schema)
                .connect(&url)
                .await
                .expect("connect to PostgreSQL");
            SessionLayer::with_store(store, ring)
        }
        "signed" => SessionLayer::with_cookies(Format::Signed, ring),
        "sealed" => SessionLayer::with_cookies(Format::Sealed, ring),
        other => panic!("unknown store {other:?}"),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|s| s.parse().ok()).unwrap_or(18181);
    let workers: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2);
    let store = args.next().unwrap_or_else(|| "memory".to_owned());
    let arg = args.next();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(async move {
            // Plain HTTP on 127.0.0.1: the cookie must not be `Secure`.
            let layer = layer(&store, arg)
                .await
                .secure(false)
                .build()
                .expect("session layer");
            let app = Router::new()
                .route("/incr", get(incr))
                .route("/read", get(read))
                .layer(layer);
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("bind");
            eprintln!("keepsake[{store}] on 127.0.0.1:{port}, {workers} workers");
            axum::serve(listener, app).await.expect("serve");
        });
}

#[cfg(test)]
mod tests {
    use super::split_schema;

    #[test]
    fn the_schema_parameter_is_found_after_other_parameters() {
        let pg = "postgres://u@127.0.0.1:5432/test";
        let split = |url: String| split_schema(&url);
        assert_eq!(split(pg.to_owned()), (pg.to_owned(), "public".to_owned()));
        assert_eq!(
            split(format!("{pg}?schema=s1")),
            (pg.to_owned(), "s1".to_owned())
        );
        assert_eq!(
            split(format!("{pg}?connect_timeout=5&schema=s1")),
            (format!("{pg}?connect_timeout=5"), "s1".to_owned())
        );
        assert_eq!(
            split(format!("{pg}?schema=s1&sslmode=disable")),
            (format!("{pg}?sslmode=disable"), "s1".to_owned())
        );
        assert_eq!(
            split(format!("{pg}?sslmode=disable")),
            (format!("{pg}?sslmode=disable"), "public".to_owned())
        );
    }
}
