//! The pieces of one request's path through keepsake, one by one:
//!
//! - `cookie/*`: reading the session cookie from a `Cookie` header (a
//!   browser's header with a few other cookies), and verifying the signed
//!   session id it holds;
//! - `store/<store>/load` and `store/<store>/save`: one `load` and one
//!   compare-and-set `save` of a small session (a counter), on the memory
//!   store, SQLite (a file, WAL), and Redis and PostgreSQL when
//!   `KEEPSAKE_TEST_REDIS_URL` / `KEEPSAKE_TEST_POSTGRES_URL` are set (each
//!   run under its own key prefix or schema, removed at the end);
//! - `middleware/*`: a whole request through an axum router (no network):
//!   a handler that does not touch the session, with and without the
//!   session layer (with a session cookie in the request), and the
//!   benchmark server's `/incr` (`Session::update`) and `/read` on the
//!   memory store and on signed and sealed cookie sessions.
//!
//! Run: `cargo bench -p keepsake --bench request_path`; figures and what
//! they mean are in BENCHMARKS.md.

mod app;

use std::hint::black_box;

use app::{call, routes, session_app};
use criterion::{BatchSize, Criterion, criterion_group};
use http::{HeaderMap, HeaderValue, header};
use keepsake::{
    codec::{Codec, Format, unix_now},
    cookies::CookieJar,
    key::{Key, KeyRing},
    middleware::SessionLayer,
    store::{Id, MemoryStore, PostgresStore, Record, RedisStore, Saved, SessionStore, SqliteStore},
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A unique tag for this run's Redis prefix, PostgreSQL schema and file.
fn run_tag() -> String {
    format!("rp{}_{}", std::process::id(), unix_now())
}

// ------------------------------------------------------------------ cookies

fn cookies(c: &mut Criterion) {
    let rt = runtime();
    let ring = KeyRing::new(Key::generate());
    let (_, cookie) = session_app(
        &rt,
        SessionLayer::with_store(MemoryStore::new(), ring.clone()),
    );
    let header = format!("_ga=GA1.1.1234567890.1700000000; lang=en; {cookie}; theme=dark");
    let mut headers = HeaderMap::new();
    headers.insert(header::COOKIE, HeaderValue::from_str(&header).unwrap());
    let value = cookie.split_once('=').unwrap().1.to_owned();
    let codec = Codec::signed(ring);
    let now = unix_now();

    let mut group = c.benchmark_group("cookie");
    group.bench_function("parse_header", |b| {
        b.iter(|| {
            black_box(
                CookieJar::parse(black_box(&header))
                    .get("session")
                    .map(str::len),
            )
        });
    });
    group.bench_function("from_headers", |b| {
        b.iter(|| {
            black_box(
                CookieJar::from_headers(black_box(&headers))
                    .get("session")
                    .map(str::len),
            )
        });
    });
    group.bench_function("verify_session_id", |b| {
        b.iter(|| black_box(codec.decode("session", black_box(&value), now).is_ok()));
    });
    group.finish();
}

// ------------------------------------------------------------------ stores

fn bench_store<S: SessionStore>(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    store: &S,
) {
    let now = unix_now();
    let mut record = Record::new(Id::random(), now, Some(1_800), 14 * 86_400);
    record.data.insert("count".to_owned(), 1.into());
    rt.block_on(store.create(&record)).expect("create");
    let id = record.id;

    let mut group = c.benchmark_group(format!("store/{name}"));
    group.bench_function("load", |b| {
        b.iter(|| black_box(rt.block_on(store.load(&id, now)).expect("load").is_some()));
    });
    group.bench_function("save", |b| {
        b.iter(|| {
            match rt.block_on(store.save(&record, now)).expect("save") {
                Saved::Saved { version } => record.version = version,
                other => panic!("save: {other:?}"),
            }
            record
                .data
                .insert("count".to_owned(), record.version.into());
        });
    });
    group.finish();
    rt.block_on(store.delete(&id)).expect("delete");
}

fn stores(c: &mut Criterion) {
    let rt = runtime();
    bench_store(c, &rt, "memory", &MemoryStore::new());

    let path = std::env::temp_dir().join(format!("keepsake-{}.db", run_tag()));
    let sqlite = rt.block_on(SqliteStore::open(&path)).expect("open SQLite");
    bench_store(c, &rt, "sqlite", &sqlite);
    drop(sqlite);
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.clone().into_os_string();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }

    match std::env::var("KEEPSAKE_TEST_REDIS_URL") {
        Ok(url) => {
            let store = rt
                .block_on(RedisStore::connect(&url))
                .expect("connect to Redis")
                .with_prefix(format!("keepsake-bench-{}:", run_tag()));
            // Loads from the local cache, then every load a GET.
            bench_store(c, &rt, "redis", &store);
            bench_store(c, &rt, "redis_uncached", &store.with_local_cache(0));
        }
        Err(_) => println!("store/redis skipped: KEEPSAKE_TEST_REDIS_URL is not set"),
    }

    match std::env::var("KEEPSAKE_TEST_POSTGRES_URL") {
        Ok(url) => {
            let schema = run_tag();
            let store = rt
                .block_on(
                    PostgresStore::builder()
                        .schema(schema.clone())
                        .connect(&url),
                )
                .expect("connect to PostgreSQL");
            bench_store(c, &rt, "postgres", &store);
            drop(store);
            rt.block_on(async {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .expect("connect to drop the schema");
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .await
                    .expect("drop the schema");
            });
        }
        Err(_) => println!("store/postgres skipped: KEEPSAKE_TEST_POSTGRES_URL is not set"),
    }
}

// ------------------------------------------------------------------ middleware

fn middleware(c: &mut Criterion) {
    let rt = runtime();
    let ring = KeyRing::new(Key::generate());
    let mut group = c.benchmark_group("middleware");

    let mut bare = routes();
    let mut none = String::new();
    group.bench_function("noop/bare", |b| {
        b.iter(|| call(&rt, &mut bare, "/noop", &mut none))
    });

    let (mut app, mut cookie) = session_app(
        &rt,
        SessionLayer::with_store(MemoryStore::new(), ring.clone()),
    );
    group.bench_function("noop/session_layer_with_cookie", |b| {
        b.iter(|| call(&rt, &mut app, "/noop", &mut cookie));
    });
    let mut nothing = String::new();
    group.bench_function("noop/session_layer_no_cookie", |b| {
        b.iter(|| call(&rt, &mut app, "/noop", &mut nothing));
    });
    for route in ["/incr", "/read"] {
        group.bench_function(format!("memory{route}"), |b| {
            b.iter(|| call(&rt, &mut app, route, &mut cookie));
        });
    }

    for (name, format) in [("signed", Format::Signed), ("sealed", Format::Sealed)] {
        let (mut app, cookie) = session_app(&rt, SessionLayer::with_cookies(format, ring.clone()));
        for route in ["/incr", "/read"] {
            // Every iteration starts from the same cookie (count = 1), so the
            // payload size does not grow with the iteration count.
            group.bench_function(format!("{name}{route}"), |b| {
                b.iter_batched_ref(
                    || cookie.clone(),
                    |cookie| call(&rt, &mut app, route, cookie),
                    BatchSize::SmallInput,
                );
            });
        }
    }
    group.finish();
}

criterion_group!(benches, cookies, stores, middleware);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
