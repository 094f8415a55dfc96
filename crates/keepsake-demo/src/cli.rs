//! The command line: flags and start-up.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, ValueEnum};
use keepsake::session::BadCookie;

use crate::{AppError, Config, StoreKind, app, load_secret};

/// Parses `--store`. Not clap's parsing through `FromStr`, whose error
/// message repeats the value as given: a URL's password with it.
#[derive(Clone)]
struct StoreParser;

impl clap::builder::TypedValueParser for StoreParser {
    type Value = StoreKind;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<StoreKind, clap::Error> {
        let refused = |reason: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for '--store <URL>': {reason}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| refused("not UTF-8".to_owned()))?;
        text.parse().map_err(refused)
    }
}

/// The flags of `keepsake-demo`.
///
/// # Example
///
/// ```
/// use clap::Parser as _;
/// use keepsake_demo::{Args, StoreKind};
///
/// let args = Args::parse_from(["keepsake-demo", "--store", "sealed", "--max-age", "3600"]);
/// assert_eq!((args.store, args.max_age, args.addr.as_str()), (StoreKind::Sealed, Some(3600), "127.0.0.1:3000"));
/// ```
#[derive(Debug, Clone, Parser)]
#[command(
    name = "keepsake-demo",
    version,
    about = "The keepsake demo app: sessions, logins, devices and a signed theme cookie.",
    long_about = None,
    after_help = "The secret comes from KEEPSAKE_SECRET (base64) when it is set, with the \
                  fallback keys of a key rotation in KEEPSAKE_SECRET_FALLBACKS (comma-separated; \
                  see docs/ROTATION.md); otherwise from --secret-file, made with a new secret \
                  on the first start."
)]
#[non_exhaustive]
pub struct Args {
    /// Address to listen on.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:3000")]
    pub addr: String,
    /// Where sessions live (default `sqlite://keepsake-demo.db`): see
    /// [`StoreKind`] for the choices.
    #[arg(
        long,
        value_name = "URL",
        default_value = "sqlite://keepsake-demo.db",
        help = "Where sessions live: sqlite://PATH (a database file, the default), memory, \
                redis://HOST[:PORT][/DB][?prefix=P] (keys under prefix P, default keepsake:), \
                postgres://USER@HOST[:PORT]/DB[?schema=S&table=T] (table T, default \
                keepsake_sessions, in schema S, default public, created if absent), cookie (signed client-side sessions) or sealed \
                (encrypted client-side sessions). The same URLs work with \
                `keepsake sessions --store`."
    )]
    #[arg(value_parser = StoreParser)]
    pub store: StoreKind,
    /// The session cookie's name.
    #[arg(long, value_name = "NAME", default_value = "session")]
    pub cookie_name: String,
    /// Seconds of inactivity after which a session ends (0: no idle limit;
    /// at most 34560000, 400 days).
    #[arg(long, value_name = "SECS", default_value_t = 1800)]
    pub idle_timeout: u64,
    /// Absolute session lifetime in seconds (default 14 days); when given,
    /// session cookies are persistent (Max-Age) instead of ending with the
    /// browser session. At most 34560000 (400 days: browsers keep no cookie
    /// longer).
    #[arg(long, value_name = "SECS")]
    pub max_age: Option<u64>,
    /// What to do with a session cookie that does not verify.
    #[arg(long, value_enum, default_value_t = BadCookieArg::Ignore)]
    pub bad_cookie: BadCookieArg,
    /// Leave `Secure` off cookies, for plain-HTTP testing through a host
    /// name other than localhost or 127.0.0.1 (a LAN address, a docker
    /// service name), where browsers drop Secure cookies, or with Safari,
    /// which drops them over http:// even from localhost. Never in
    /// production.
    #[arg(long)]
    pub insecure_cookies: bool,
    /// Where to keep the secret when KEEPSAKE_SECRET is not set.
    #[arg(long, value_name = "PATH", default_value = "keepsake-demo.secret")]
    pub secret_file: PathBuf,
}

/// The `--bad-cookie` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BadCookieArg {
    /// Treat the request as having no session.
    Ignore,
    /// Answer 400.
    Reject,
}

impl From<BadCookieArg> for BadCookie {
    fn from(arg: BadCookieArg) -> Self {
        match arg {
            BadCookieArg::Ignore => Self::Ignore,
            BadCookieArg::Reject => Self::Reject,
        }
    }
}

/// Exit code for settings that cannot work (as clap's usage errors).
const USAGE: u8 = 2;

/// Starts the demo with `args` and serves until Ctrl-C or SIGTERM.
///
/// Exits with 2 for settings that cannot work (lifetimes that do not fit, a
/// malformed secret), 1 when the store cannot be opened, the address cannot
/// be bound or serving fails.
pub async fn run(args: Args) -> ExitCode {
    if let Some(max_age) = args.max_age
        && args.idle_timeout > max_age
    {
        eprintln!(
            "error: --idle-timeout ({} s) is longer than --max-age ({max_age} s)",
            args.idle_timeout
        );
        return ExitCode::from(USAGE);
    }
    let (ring, source) = match load_secret(&args.secret_file) {
        Ok(found) => found,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(USAGE);
        }
    };
    eprintln!("{}", source.describe());

    let mut config = Config::new(args.store.clone(), ring);
    config.cookie_name = args.cookie_name;
    config.idle_timeout = args.idle_timeout;
    config.max_age = args.max_age;
    config.bad_cookie = args.bad_cookie.into();
    config.secure = !args.insecure_cookies;
    let router = match app(config).await {
        Ok(router) => router,
        Err(err @ AppError::Store(..)) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(USAGE);
        }
    };

    let listener = match tokio::net::TcpListener::bind(&args.addr).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("error: cannot listen on {}: {err}", args.addr);
            return ExitCode::FAILURE;
        }
    };
    let local = match listener.local_addr() {
        Ok(local) => local,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "keepsake demo on http://{local} (store: {})",
        args.store.name()
    );
    if !args.insecure_cookies && !local.ip().is_loopback() {
        eprintln!(
            "note: cookies are Secure, so browsers send them back over plain http only to \
             localhost; use https or --insecure-cookies"
        );
    }
    match axum::serve(listener, router)
        .with_graceful_shutdown(shutdown())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
