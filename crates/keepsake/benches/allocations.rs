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
//! `dh_view.html` from valgrind). `-- --list` prints the rows (`name:
//! benchmark`, as libtest and Criterion do) and measures nothing.

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

/// The command line's filter (its first argument that is neither an option
/// nor an option's value) and whether it asks for `--list`.
fn parse_args(args: &[String]) -> (Option<&str>, bool) {
    // libtest options whose value may follow as the next argument
    const WITH_VALUE: [&str; 7] = [
        "--format",
        "--color",
        "--logfile",
        "--skip",
        "--test-threads",
        "--report-time",
        "-Z",
    ];
    let mut filter = None;
    let mut list = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--list" {
            list = true;
        } else if WITH_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') && filter.is_none() {
            filter = Some(arg.as_str());
        }
    }
    (filter, list)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (filter, list) = parse_args(&args);
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

    if list {
        // libtest's format: `name: benchmark` lines, then (unless `--format
        // terse`) a blank line and the count; `--ignored` lists none.
        let ignored = args.iter().any(|a| a == "--ignored");
        let terse = args
            .windows(2)
            .any(|w| w[0] == "--format" && w[1] == "terse")
            || args.iter().any(|a| a == "--format=terse");
        let mut count = 0;
        for row in &rows {
            if ignored || filter.is_some_and(|f| !row.name.contains(f)) {
                continue;
            }
            println!("{}: benchmark", row.name);
            count += 1;
        }
        if !terse {
            if count > 0 {
                println!();
            }
            let plural = if count == 1 { "" } else { "s" };
            println!("0 tests, {count} benchmark{plural}");
        }
        return;
    }

    println!("| request | allocations per request | bytes allocated per request |");
    println!("|---|---|---|");
    for mut row in rows {
        if filter.is_some_and(|f| !row.name.contains(f)) {
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
