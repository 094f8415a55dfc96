//! `keepsake-demo`: the keepsake demo web app. See the library docs.

use std::process::ExitCode;

use clap::Parser as _;

#[tokio::main]
async fn main() -> ExitCode {
    // keepsake reports store failures and refused cookies (with their
    // cause) as `tracing` events: print warnings and errors on stderr.
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .with_writer(std::io::stderr)
        .init();
    keepsake_demo::run(keepsake_demo::Args::parse()).await
}
