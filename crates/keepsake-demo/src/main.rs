//! `keepsake-demo`: the keepsake demo web app. See the library docs.

use std::process::ExitCode;

use clap::Parser as _;
use tracing_subscriber::{
    filter::{LevelFilter, Targets},
    prelude::*,
};

#[tokio::main]
async fn main() -> ExitCode {
    // keepsake reports store failures and refused cookies (with their
    // cause) as `tracing` events, printed on stderr: warnings and errors,
    // or what `RUST_LOG` asks for (`target=level` pairs and a default
    // level, e.g. `RUST_LOG=keepsake=debug,warn`).
    let (filter, bad) = match std::env::var("RUST_LOG") {
        Ok(text) if !text.trim().is_empty() => match text.parse::<Targets>() {
            Ok(filter) => (filter, None),
            Err(err) => (
                Targets::new(),
                Some(format!("RUST_LOG={text:?} ignored: {err}")),
            ),
        },
        _ => (Targets::new(), None),
    };
    let mut filter = match filter.default_level() {
        Some(_) => filter,
        None => filter.with_default(LevelFilter::WARN),
    };
    // tokio-postgres logs every statement's parameters at DEBUG: session
    // ids and data. Only when asked for by name.
    if !filter
        .iter()
        .any(|(target, _)| target.starts_with("tokio_postgres"))
    {
        filter = filter.with_target("tokio_postgres", LevelFilter::INFO);
    }
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();
    if let Some(bad) = bad {
        tracing::warn!("{bad}");
    }
    keepsake_demo::run(keepsake_demo::Args::parse()).await
}
