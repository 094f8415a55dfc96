//! `keepsake-demo`: the keepsake demo web app. See the library docs.

use std::process::ExitCode;

use clap::Parser as _;

#[tokio::main]
async fn main() -> ExitCode {
    keepsake_demo::run(keepsake_demo::Args::parse()).await
}
