//! actix-web + actix-session (0.11): the encrypted cookie store, or Redis
//! (redis-rs `ConnectionManager`).
//!
//! Usage: `actix-session-server PORT WORKERS cookie|redis [REDIS_URL]`

use actix_session::{
    Session, SessionMiddleware,
    storage::{CookieSessionStore, RedisSessionStore, SessionStore},
};
use actix_web::{App, HttpServer, cookie::Key, web};

async fn incr(session: Session) -> actix_web::Result<String> {
    let n = session.get::<i64>("count")?.unwrap_or(0) + 1;
    session.insert("count", n)?;
    Ok(n.to_string())
}

async fn read(session: Session) -> actix_web::Result<String> {
    Ok(session.get::<i64>("count")?.unwrap_or(0).to_string())
}

/// Serves the routes; `store` makes each worker's session store.
async fn serve<S: SessionStore + 'static>(
    store: impl Fn() -> S + Clone + Send + 'static,
    port: u16,
    workers: usize,
) -> std::io::Result<()> {
    // A fixed master key: benchmark only.
    let key = Key::from(&[7u8; 64]);
    HttpServer::new(move || {
        App::new()
            .wrap(
                SessionMiddleware::builder(store(), key.clone())
                    .cookie_secure(false)
                    .build(),
            )
            .route("/incr", web::get().to(incr))
            .route("/read", web::get().to(read))
    })
    .workers(workers)
    .bind(("127.0.0.1", port))?
    .run()
    .await
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|s| s.parse().ok()).unwrap_or(18183);
    let workers: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2);
    let store = args.next().unwrap_or_else(|| "cookie".to_owned());
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    eprintln!("actix-session[{store}] on 127.0.0.1:{port}, {workers} workers");
    match store.as_str() {
        "cookie" => serve(CookieSessionStore::default, port, workers).await,
        "redis" => {
            let redis = RedisSessionStore::new(url)
                .await
                .map_err(std::io::Error::other)?;
            serve(move || redis.clone(), port, workers).await
        }
        other => panic!("unknown store {other:?}"),
    }
}
