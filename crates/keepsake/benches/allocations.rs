//! Heap allocations per request on the benchmark server's routes: one whole
//! request through an axum router (no network, current-thread runtime), as
//! in `request_path.rs`'s `middleware/*` rows, counted by `dhat`'s global
//! allocator. Counts do not depend on the machine's load, so unlike timings
//! they compare exactly between runs and commits.
//!
//! Run: `cargo bench -p keepsake --bench allocations`; figures in
//! BENCHMARKS.md. `cargo bench -p keepsake --bench allocations -- memory/incr`
//! also writes `target/tmp/dhat-memory-incr.json` for that one row, with the
//! call stack of every allocation (open it in DHAT's viewer,
//! `dh_view.html` from valgrind).

mod app;

use app::{call, routes, session_app};
use axum::Router;
use keepsake::{
    codec::Format,
    key::{Key, KeyRing},
    middleware::SessionLayer,
    store::MemoryStore,
};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Requests measured per row, after as many unmeasured ones.
const REQUESTS: u64 = 1000;

struct Row {
    name: String,
    app: Router,
    path: &'static str,
    cookie: String,
}

fn main() {
    let filter = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ring = KeyRing::new(Key::generate());

    let mut rows = vec![Row {
        name: "noop/bare".into(),
        app: routes(),
        path: "/noop",
        cookie: String::new(),
    }];
    let (memory, cookie) = session_app(
        &rt,
        SessionLayer::with_store(MemoryStore::new(), ring.clone()),
    );
    for (name, path) in [
        ("noop/session_layer_with_cookie", "/noop"),
        ("memory/incr", "/incr"),
        ("memory/read", "/read"),
    ] {
        rows.push(Row {
            name: name.into(),
            app: memory.clone(),
            path,
            cookie: cookie.clone(),
        });
    }
    for (name, format) in [("signed", Format::Signed), ("sealed", Format::Sealed)] {
        let (app, cookie) = session_app(&rt, SessionLayer::with_cookies(format, ring.clone()));
        for path in ["/incr", "/read"] {
            rows.push(Row {
                name: format!("{name}{path}"),
                app: app.clone(),
                path,
                cookie: cookie.clone(),
            });
        }
    }

    println!("| request | allocations per request | bytes allocated per request |");
    println!("|---|---|---|");
    for mut row in rows {
        if filter.as_deref().is_some_and(|f| !row.name.contains(f)) {
            continue;
        }
        for _ in 0..REQUESTS {
            call(&rt, &mut row.app, row.path, &mut row.cookie);
        }
        let profiler = if filter.is_some() {
            let file = format!(
                "{}/dhat-{}.json",
                env!("CARGO_TARGET_TMPDIR"),
                row.name.replace('/', "-")
            );
            dhat::Profiler::builder().file_name(file).build()
        } else {
            dhat::Profiler::builder().testing().build()
        };
        for _ in 0..REQUESTS {
            call(&rt, &mut row.app, row.path, &mut row.cookie);
        }
        let stats = dhat::HeapStats::get();
        drop(profiler);
        println!(
            "| `{}` | {:.1} | {:.0} |",
            row.name,
            stats.total_blocks as f64 / REQUESTS as f64,
            stats.total_bytes as f64 / REQUESTS as f64
        );
    }
}
