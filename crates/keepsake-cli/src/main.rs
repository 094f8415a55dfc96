//! `keepsake`: make keys for, sign, verify and inspect keepsake cookie values.
//!
//! # Commands
//!
//! | command | what it does |
//! |---|---|
//! | `keepsake keygen` | prints a new random 32-byte secret, in standard padded base64; `--out PATH` writes it to a new file of mode 0600 instead (never overwriting one) |
//! | `keepsake sign --name NAME --secret-env VAR --json JSON` | prints a cookie value holding the JSON |
//! | `keepsake verify --name NAME --secret-env VAR VALUE` | checks a value and prints its payload as JSON (see below) |
//! | `keepsake decode VALUE` | shows what a value holds without any key (nothing is verified); also reads Flask, Starlette and Django session cookies |
//! | `keepsake sessions --store URL list\|show\|revoke\|revoke-user\|purge\|stats` | administers a session store (see `sessions.rs`) |
//!
//! `sign` and `verify` also take `--format signed|sealed` (default `signed`),
//! or `--format flask|starlette|django` for those frameworks' session cookies
//! (see `interop.rs`; both then take `--salt SALT`, and `verify` takes
//! `--max-age SECS`),
//! `--namespace local|shared` (default `local`), `--app LABEL` (default empty)
//! and `--now UNIX` (default: the system clock); `sign` takes `--ttl SECS`
//! (at least 1; without it the value never expires).
//!
//! # Payloads
//!
//! `verify` prints a JSON payload as it is, and a client-side session
//! cookie's record as the record's JSON. A payload of exactly 16 bytes that
//! is not JSON is a server-side session cookie's session id, printed as
//! `{"session_id":"ID"}` (look it up with `keepsake sessions show ID`); any
//! other payload that is not JSON is printed as `{"base64":"..."}`
//! (standard padded base64). A value that verified is never refused for its
//! payload. `decode` shows the payload the same way, except that any other
//! payload that is not JSON shows as a JSON string (invalid UTF-8 replaced).
//! Payloads are anyone's text, so in every JSON line printed the control and
//! format characters that JSON allows raw in strings (DEL, the C1 controls,
//! bidi overrides such as U+202E, U+2028) are written as `\uXXXX` escapes:
//! the line reads back as the same JSON value and cannot drive the terminal.
//!
//! # Secrets
//!
//! Secrets never come from the command line, where other users can see them:
//! the current key comes from an environment variable (`--secret-env VAR`) or a
//! file (`--secret-file PATH`), exactly one of the two, holding the secret in
//! base64 (standard or URL-safe, padded or not; whitespace, around it or
//! wrapping it over lines, is ignored), or with `--format
//! flask|starlette|django` the app's secret key as text. A base64 secret
//! that is plainly not random bytes (`AAAA...`, `changemechangeme...`, a
//! passphrase) is refused, as the library refuses it (`Key::from_base64`).
//! A keepsake secret file that other users can read or change gets a
//! warning on stderr (`chmod 600` it); `keepsake keygen --out PATH` makes
//! one that they cannot. `verify` also takes verify-only fallback keys from
//! `--fallback-env VAR` and `--fallback-file PATH`, both repeatable; they are
//! tried after the current key, first every `--fallback-env` in the order
//! given, then every `--fallback-file` in the order given. A `--fallback-env`
//! variable holds base64 secrets separated by commas, read as the library
//! reads `KEEPSAKE_SECRET_FALLBACKS` (`Key::list_from_env`), so
//! `--secret-env KEEPSAKE_SECRET --fallback-env KEEPSAKE_SECRET_FALLBACKS`
//! verifies with the same keys as an app configured from the environment
//! (an empty variable holds no keys). With `--format flask|starlette|django`
//! it holds the app's old secret keys as text, separated by commas (empty
//! entries are no keys). A fallback key that is the same secret as the
//! current key or as another fallback is refused, as `KeyRing::from_env`
//! refuses it: in a rotation it means the old key was lost (the same
//! variable or file given as `--secret-*` and `--fallback-*` is refused in
//! every format).
//!
//! # Exit status
//!
//! | status | meaning |
//! |---|---|
//! | 0 | success (also `--help`, `--version`, and a closed stdout pipe) |
//! | 1 | the value did not verify (`verify`), could not be decoded (`decode`), or no such session (`sessions show`, `revoke`, `revoke-user`) |
//! | 2 | usage or configuration error: bad arguments, a missing or invalid secret, or any other failure |
//!
//! Errors are one line on stderr, starting with `keepsake: `. When `verify`
//! succeeds only thanks to a fallback key it prints the line `stale-key` on
//! stderr and still exits 0: the value should be issued again.
#![forbid(unsafe_code)]

mod interop;
mod sessions;
mod terminal;

use std::{
    fmt,
    fs::File,
    io::{self, Read as _, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use keepsake::{
    codec::{self, Claims, Codec, DecodeError, Format, unix_now},
    key::{Key, KeyError, KeyRing, MAX_SECRET_LEN, Namespace},
    store::{ID_LEN, Id, Record},
};
use serde::Serialize;
use serde_json::Value;
use terminal::write_json_line;

/// Exit status for a value that did not verify or could not be decoded.
const EXIT_REJECTED: u8 = 1;
/// Exit status for usage and configuration errors.
const EXIT_USAGE: u8 = 2;

/// Largest secret file read, in bytes: base64 of [`MAX_SECRET_LEN`] bytes
/// with room for whitespace. Anything bigger is not a keepsake secret.
const MAX_SECRET_FILE_LEN: u64 = (MAX_SECRET_LEN as u64).div_ceil(3) * 4 + 64;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            // Nothing sensible is left to do if stderr is gone too.
            let _ = writeln!(io::stderr(), "keepsake: {}", error_text(&err));
            if err.downcast_ref::<Rejected>().is_some() {
                ExitCode::from(EXIT_REJECTED)
            } else {
                ExitCode::from(EXIT_USAGE)
            }
        }
    }
}

/// Parses the arguments (no I/O), builds the configuration (environment,
/// files, key ring), then runs the command.
fn run() -> Result<ExitCode> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // Help and version go to stdout with status 0, usage errors to
            // stderr with status 2; a closed pipe changes neither.
            let _ = err.print();
            return Ok(ExitCode::from(
                u8::try_from(err.exit_code()).unwrap_or(EXIT_USAGE),
            ));
        }
    };
    let task = Task::configure(cli.command)?;
    task.execute(&mut io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

/// Whether `err` comes from writing to a closed pipe.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io_err| io_err.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// A value that did not verify or could not be decoded: exit status 1.
#[derive(Debug)]
struct Rejected(String);

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Rejected {}

impl From<DecodeError> for Rejected {
    fn from(err: DecodeError) -> Self {
        Self(err.to_string())
    }
}

/// Make keys for, sign, verify and inspect keepsake cookie values.
///
/// Exit status: 0 success, 1 the value did not verify or could not be
/// decoded, 2 usage or configuration error.
#[derive(Debug, Parser)]
#[command(name = "keepsake", version, about, long_about)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Print a new random 32-byte secret in standard base64.
    ///
    /// Store it in an environment variable or a file and pass it to `sign`
    /// and `verify` with --secret-env or --secret-file. With --out, the
    /// secret goes to a new file that only its owner can read, not to
    /// stdout.
    Keygen(KeygenArgs),
    /// Protect a JSON payload and print the cookie value.
    Sign(SignArgs),
    /// Verify a cookie value and print its payload as JSON.
    ///
    /// A JSON payload is printed as it is, a client-side session's record as
    /// its JSON, a server-side session cookie's 16-byte session id as
    /// {"session_id":"ID"} (for `keepsake sessions show ID`), and any other
    /// payload as {"base64":"..."} (standard padded base64).
    ///
    /// Exits 1 with the reason on stderr if the value does not verify. When
    /// only a fallback key verified it, prints `stale-key` on stderr and exits
    /// 0: issue the value again under the current key.
    Verify(VerifyArgs),
    /// Show what a value holds, without a key and without verifying it.
    ///
    /// Prints a JSON object with "verified": false. Signed values show their
    /// times and payload (a session id as {"session_id":"ID"}, as `verify`
    /// shows it); sealed values are encrypted, so only their size (in bytes,
    /// nonce and tag included) is shown.
    Decode(DecodeArgs),
    /// Administer a session store: list, show, revoke, purge, stats.
    ///
    /// The store comes from --store URL or KEEPSAKE_STORE: sqlite://PATH,
    /// redis://HOST[:PORT][/DB][?prefix=P], postgres://...[?schema=S&table=T]
    /// or memory://. Exits 1 when show, revoke or revoke-user finds nothing, 2
    /// when the store cannot be opened or reached.
    Sessions(sessions::SessionsArgs),
}

/// Arguments of `keepsake keygen`.
#[derive(Debug, Args)]
struct KeygenArgs {
    /// Write the secret to this new file (mode 0600: readable by its owner
    /// only) instead of stdout; an existing file is never overwritten.
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
}

/// How values are protected: shared by `sign` and `verify`.
#[derive(Debug, Args)]
struct CodecArgs {
    /// The cookie name the value is bound to (required for signed and
    /// sealed values).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// How the value is protected.
    #[arg(long, value_enum, default_value_t = FormatArg::Signed)]
    format: FormatArg,
    /// Which family of values: this application's own, or shared by every
    /// application with the same secret.
    #[arg(long, value_enum, default_value_t = NamespaceArg::Local)]
    namespace: NamespaceArg,
    /// The application label that local values depend on.
    #[arg(long, value_name = "LABEL", default_value = "")]
    app: String,
    /// The app's signing salt, if not the framework's default (flask,
    /// starlette and django formats only): Flask's
    /// SecureCookieSessionInterface.salt (default cookie-session), Django's
    /// salt (default django.contrib.sessions.backends.signed_cookies).
    #[arg(long, value_name = "SALT")]
    salt: Option<String>,
}

/// Where the current secret comes from: exactly one of the two.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct SecretArgs {
    /// Read the secret from this environment variable: base64 for the
    /// keepsake formats, the app's secret key as text for flask, starlette
    /// and django.
    #[arg(long, value_name = "VAR")]
    secret_env: Option<String>,
    /// Read the secret from this file (base64, or the app's secret key as
    /// text for flask, starlette and django).
    #[arg(long, value_name = "PATH")]
    secret_file: Option<PathBuf>,
}

/// Arguments of `keepsake sign`.
#[derive(Debug, Args)]
struct SignArgs {
    #[command(flatten)]
    codec: CodecArgs,
    #[command(flatten)]
    secret: SecretArgs,
    /// Seconds until the value expires, at least 1 (default: never).
    #[arg(long, value_name = "SECS", value_parser = parse_ttl)]
    ttl: Option<u64>,
    /// Issue time in Unix seconds (default: now, by the system clock).
    #[arg(long, value_name = "UNIX")]
    now: Option<u64>,
    /// The payload, as JSON; its compact form is what gets signed.
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    json: JsonArg,
}

/// Arguments of `keepsake verify`.
#[derive(Debug, Args)]
struct VerifyArgs {
    #[command(flatten)]
    codec: CodecArgs,
    #[command(flatten)]
    secret: SecretArgs,
    /// Also accept values made with the secrets in this environment variable,
    /// separated by commas: base64 secrets as in KEEPSAKE_SECRET_FALLBACKS,
    /// or for flask, starlette and django the app's old secret keys as text,
    /// as in its SECRET_KEY_FALLBACKS; empty entries are no keys
    /// (repeatable; tried in order, before any --fallback-file).
    #[arg(long, value_name = "VAR")]
    fallback_env: Vec<String>,
    /// Also accept values made with the secret in this file (repeatable;
    /// tried in order, after every --fallback-env).
    #[arg(long, value_name = "PATH")]
    fallback_file: Vec<PathBuf>,
    /// Check expiry at this time, in Unix seconds (default: now).
    #[arg(long, value_name = "UNIX")]
    now: Option<u64>,
    /// Refuse values older than this, in seconds (flask, starlette and
    /// django formats only; default: the framework's own default).
    #[arg(long, value_name = "SECS")]
    max_age: Option<u64>,
    /// The cookie value (it may begin with '-').
    #[arg(allow_hyphen_values = true)]
    value: String,
}

/// Arguments of `keepsake decode`.
#[derive(Debug, Args)]
struct DecodeArgs {
    /// The cookie value (it may begin with '-').
    #[arg(allow_hyphen_values = true)]
    value: String,
}

/// `--format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    /// Readable by anyone, changeable by nobody without the key (HMAC-SHA256).
    Signed,
    /// Neither readable nor changeable without the key (AES-256-GCM-SIV).
    Sealed,
    /// Flask's default session cookie; the secret is Flask's SECRET_KEY as text.
    Flask,
    /// Starlette's (FastAPI's) SessionMiddleware cookie; the secret is its
    /// secret_key as text.
    Starlette,
    /// Django's signed_cookies session; the secret is Django's SECRET_KEY as text.
    Django,
}

impl TryFrom<FormatArg> for Format {
    type Error = anyhow::Error;

    fn try_from(arg: FormatArg) -> Result<Self> {
        match arg {
            FormatArg::Signed => Ok(Self::Signed),
            FormatArg::Sealed => Ok(Self::Sealed),
            FormatArg::Flask | FormatArg::Starlette | FormatArg::Django => {
                bail!("--format {arg:?} is not a keepsake format")
            }
        }
    }
}

/// `--namespace` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum NamespaceArg {
    /// This application's values only (depends on --app).
    Local,
    /// Values shared by every application with the same secret.
    Shared,
}

impl From<NamespaceArg> for Namespace {
    fn from(arg: NamespaceArg) -> Self {
        match arg {
            NamespaceArg::Local => Self::Local,
            NamespaceArg::Shared => Self::Shared,
        }
    }
}

/// `--json`: the text as given (the framework formats keep its key order)
/// and its value.
#[derive(Debug, Clone)]
struct JsonArg {
    /// The argument as given.
    text: String,
    /// The parsed value.
    value: Value,
}

/// Parses `--json`, so that invalid JSON is a usage error.
fn parse_json(text: &str) -> Result<JsonArg, String> {
    let value = serde_json::from_str(text).map_err(|err| format!("not valid JSON: {err}"))?;
    Ok(JsonArg {
        text: text.to_owned(),
        value,
    })
}

/// Parses `--ttl`, so that 0 (a value expired as soon as it is issued) is
/// a usage error.
fn parse_ttl(text: &str) -> Result<u64, String> {
    match text.parse() {
        Ok(0) => Err(
            "0 makes a value that has already expired; give at least 1 second, \
             or omit --ttl for a value that never expires"
                .to_owned(),
        ),
        Ok(ttl) => Ok(ttl),
        Err(err) => Err(err.to_string()),
    }
}

/// A command with its configuration loaded, ready to run.
enum Task {
    /// Print a new secret, or write it to a new file.
    Keygen {
        /// The file to create, if any.
        out: Option<PathBuf>,
    },
    /// Protect `payload` for cookie `name`.
    Sign {
        /// Current key, format and namespace.
        codec: Codec,
        /// The cookie name.
        name: String,
        /// The compact JSON to protect.
        payload: Vec<u8>,
        /// Issue time and expiry.
        claims: Claims,
    },
    /// Verify `value` as cookie `name` at time `now`.
    Verify {
        /// Keys, format and namespace.
        codec: Codec,
        /// The cookie name.
        name: String,
        /// The cookie value.
        value: String,
        /// The time to check expiry at, in Unix seconds.
        now: u64,
    },
    /// Show what `value` holds.
    Decode {
        /// The cookie value.
        value: String,
    },
    /// Administer a session store.
    Sessions(sessions::SessionsArgs),
    /// Sign or verify a Flask, Starlette or Django session cookie.
    Interop(interop::InteropTask),
}

impl Task {
    /// Second phase: reads secrets from the environment and files, and the
    /// clock, and builds the key ring.
    fn configure(command: Command) -> Result<Self> {
        Ok(match command {
            Command::Keygen(args) => Self::Keygen { out: args.out },
            Command::Sign(args) => {
                if let Some(framework) = interop::framework(args.codec.format) {
                    return interop::sign(&args, framework).map(Self::Interop);
                }
                no_salt(&args.codec)?;
                let ring = KeyRing::new(load_current(&args.secret)?);
                let issued_at = args.now.unwrap_or_else(unix_now);
                let claims = match args.ttl {
                    Some(ttl) => Claims::new(issued_at).with_ttl(ttl),
                    None => Claims::new(issued_at),
                };
                Self::Sign {
                    codec: make_codec(&args.codec, ring)?,
                    name: cookie_name(&args.codec)?,
                    payload: serde_json::to_vec(&args.json.value)
                        .context("cannot serialize the --json payload")?,
                    claims,
                }
            }
            Command::Verify(args) => {
                same_source_twice(&args)?;
                if let Some(framework) = interop::framework(args.codec.format) {
                    return interop::verify(&args, framework).map(Self::Interop);
                }
                if args.max_age.is_some() {
                    bail!("--max-age applies only to --format flask, starlette and django");
                }
                no_salt(&args.codec)?;
                let current = load_current(&args.secret)?;
                // Each fallback with where it came from, for the error of a
                // repeated key.
                let mut fallbacks = Vec::new();
                for var in &args.fallback_env {
                    let keys =
                        Key::list_from_env(var).map_err(|err| key_error(&err, "--fallback-env"))?;
                    fallbacks.extend(
                        (1..)
                            .zip(keys)
                            .map(|(n, key)| (key, format!("key {n} in --fallback-env {var}"))),
                    );
                }
                for path in &args.fallback_file {
                    let key = key_from_file(path, "--fallback-file")?;
                    fallbacks.push((key, format!("--fallback-file {}", path.display())));
                }
                no_repeated_key(&current, &secret_origin(&args.secret), &fallbacks)?;
                let ring =
                    KeyRing::new(current).with_fallbacks(fallbacks.into_iter().map(|(key, _)| key));
                Self::Verify {
                    codec: make_codec(&args.codec, ring)?,
                    name: cookie_name(&args.codec)?,
                    value: args.value,
                    now: args.now.unwrap_or_else(unix_now),
                }
            }
            Command::Decode(args) => Self::Decode { value: args.value },
            Command::Sessions(args) => Self::Sessions(args),
        })
    }

    /// Runs the command, writing its result to `out`.
    fn execute(self, out: &mut impl Write) -> Result<()> {
        match self {
            Self::Keygen { out: None } => {
                let key = Key::try_generate()?;
                writeln!(out, "{}", key.to_base64())?;
            }
            Self::Keygen { out: Some(path) } => write_new_secret(&path, &Key::try_generate()?)?,
            Self::Sign {
                codec,
                name,
                payload,
                claims,
            } => {
                let value = codec.encode(&name, &payload, claims)?;
                writeln!(out, "{value}")?;
            }
            Self::Verify {
                codec,
                name,
                value,
                now,
            } => {
                let opened = codec
                    .decode(&name, &value, now)
                    .map_err(|err| refusal(err, codec.format(), &value))?;
                // The value verified: whatever its payload, it is shown.
                let payload = payload_json(opened.payload())
                    .unwrap_or_else(|| serde_json::json!({ "base64": base64_simd::STANDARD.encode_to_string(opened.payload()) }));
                write_json_line(out, &serde_json::to_string(&payload)?)?;
                out.flush()?;
                if opened.key_used().is_fallback() {
                    let _ = writeln!(io::stderr(), "stale-key");
                }
            }
            Self::Sessions(args) => sessions::run(args, out)?,
            Self::Interop(task) => task.execute(out)?,
            Self::Decode { value } => match interop::decode(&value) {
                Some(line) => write_json_line(out, &line)?,
                None => write_json_line(out, &serde_json::to_string(&inspect(&value)?)?)?,
            },
        }
        out.flush()?;
        Ok(())
    }
}

/// Writes `key` to a new file at `path` that only its owner can read
/// (mode 0600 on Unix), refusing to replace an existing file: it may hold
/// a secret in use.
fn write_new_secret(path: &Path, key: &Key) -> Result<()> {
    let origin = format!("--out {}", path.display());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => bail!(
            "{origin}: the file already exists; keepsake keygen never overwrites a file (it \
             may hold a secret in use): delete it first, or give another path"
        ),
        Err(err) => {
            return Err(err).with_context(|| format!("{origin}: cannot create the secret file"));
        }
    };
    let written = file
        .write_all(format!("{}\n", key.to_base64()).as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(err) = written {
        // Leave no half-written secret behind.
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(err).with_context(|| format!("{origin}: cannot write the secret file"));
    }
    Ok(())
}

/// Where the current secret of `secret` comes from, as the user wrote it.
fn secret_origin(secret: &SecretArgs) -> String {
    match (&secret.secret_env, &secret.secret_file) {
        (Some(var), _) => format!("--secret-env {var}"),
        (None, Some(path)) => format!("--secret-file {}", path.display()),
        (None, None) => "the current key".to_owned(),
    }
}

/// Refuses a fallback variable or file that is also the current key's,
/// in every format (the keys themselves are compared by
/// [`no_repeated_key`] for keepsake's formats).
fn same_source_twice(args: &VerifyArgs) -> Result<()> {
    if let Some(var) = &args.secret.secret_env
        && args.fallback_env.contains(var)
    {
        bail!(
            "--fallback-env {var} is also --secret-env: a fallback key must be an older key, not \
             the current one (during a rotation, the key that was current before)"
        );
    }
    if let Some(path) = &args.secret.secret_file
        && args.fallback_file.contains(path)
    {
        bail!(
            "--fallback-file {} is also --secret-file: a fallback key must be an older key, not \
             the current one (during a rotation, the key that was current before)",
            path.display()
        );
    }
    Ok(())
}

/// Refuses a fallback key that is the same secret as the current key or
/// as an earlier fallback, as `KeyRing::from_env` does: in a rotation it is
/// the sign that the old key was lost. `fallbacks` pairs each key with
/// where it came from.
fn no_repeated_key(current: &Key, current_origin: &str, fallbacks: &[(Key, String)]) -> Result<()> {
    for (i, (key, origin)) in fallbacks.iter().enumerate() {
        if key == current {
            bail!(
                "{origin} is the same secret as {current_origin}: a fallback key must be an \
                 older key, not the current one (during a rotation, the key that was current \
                 before)"
            );
        }
        if let Some((_, earlier)) = fallbacks[..i].iter().find(|(other, _)| other == key) {
            bail!("{origin} is the same secret as {earlier}: give each older key once");
        }
    }
    Ok(())
}

/// Refuses `--salt` for keepsake's own formats, which have none.
fn no_salt(args: &CodecArgs) -> Result<()> {
    if args.salt.is_some() {
        bail!(
            "--salt applies only to --format flask, starlette and django (keepsake's formats \
             bind values to --name, --namespace and --app instead)"
        );
    }
    Ok(())
}

/// A codec for the format and namespace in `args`, with the ring labelled
/// with `--app`.
fn make_codec(args: &CodecArgs, ring: KeyRing) -> Result<Codec> {
    Ok(
        Codec::new(args.format.try_into()?, ring.with_app(args.app.as_str()))
            .with_namespace(args.namespace.into()),
    )
}

/// The `--name` that signed and sealed values need.
fn cookie_name(args: &CodecArgs) -> Result<String> {
    args.name
        .clone()
        .context("the following required argument was not provided: --name <NAME>")
}

/// The current key, from `--secret-env` or `--secret-file`.
fn load_current(secret: &SecretArgs) -> Result<Key> {
    match (&secret.secret_env, &secret.secret_file) {
        (Some(var), None) => key_from_env(var, "--secret-env"),
        (None, Some(path)) => key_from_file(path, "--secret-file"),
        // clap's argument group makes these unreachable; say so plainly anyway.
        _ => bail!("give exactly one of --secret-env VAR and --secret-file PATH"),
    }
}

/// Reads a base64 secret from the environment variable `var` (every error
/// of the library names the variable).
fn key_from_env(var: &str, flag: &str) -> Result<Key> {
    Key::from_env(var).map_err(|err| key_error(&err, flag))
}

/// Reads a base64 secret from the file at `path`; warns on stderr when
/// other users can read or change the file.
fn key_from_file(path: &Path, flag: &str) -> Result<Key> {
    let origin = format!("{flag} {}", path.display());
    let mut text = String::new();
    let file = File::open(path)
        .and_then(|file| {
            (&file)
                .take(MAX_SECRET_FILE_LEN + 1)
                .read_to_string(&mut text)?;
            Ok(file)
        })
        .with_context(|| format!("{origin}: cannot read the secret file"))?;
    if text.len() as u64 > MAX_SECRET_FILE_LEN {
        bail!(
            "{origin}: the file is over {MAX_SECRET_FILE_LEN} bytes, too big for a secret; \
             make one with `keepsake keygen` and store it alone in the file"
        );
    }
    let key = Key::from_base64(&text).map_err(|err| key_error(&err, &origin))?;
    if let Some(warning) = open_to_others(&file, &origin) {
        let _ = writeln!(io::stderr(), "keepsake: warning: {warning}");
    }
    Ok(key)
}

/// What to warn about a secret file that other users can read or change
/// (its group or other permission bits), or `None`.
#[cfg(unix)]
fn open_to_others(file: &File, origin: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = file.metadata().ok()?.permissions().mode() & 0o777;
    let access = match (mode & 0o044 != 0, mode & 0o022 != 0) {
        (false, false) => return None,
        (true, false) => "readable",
        (false, true) => "writable",
        (true, true) => "readable and writable",
    };
    Some(format!(
        "{origin} is {access} by other users (mode {mode:04o}); `chmod 600` it"
    ))
}

/// Other systems have no Unix permission bits to check.
#[cfg(not(unix))]
fn open_to_others(_file: &File, _origin: &str) -> Option<String> {
    None
}

/// A one-line error for a refused secret that says where it came from and,
/// if the library's message does not already, how to make a good one.
fn key_error(err: &KeyError, origin: &str) -> anyhow::Error {
    // The message and its causes (why the secret in a variable was refused).
    let mut message = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(reason) = cause {
        message = format!("{message}: {reason}");
        cause = reason.source();
    }
    // A repeated key needs no new secret: it says what to do instead.
    if message.contains("keepsake keygen") || matches!(err, KeyError::DuplicateEnv { .. }) {
        anyhow!("{origin}: {message}")
    } else {
        anyhow!("{origin}: {message}; make a new secret with `keepsake keygen`")
    }
}

/// Why `verify` refused `value`, which it read as `format`: the codec's
/// reason, and for a value that is not of that format at all, the
/// `--format` it looks like.
fn refusal(err: DecodeError, format: Format, value: &str) -> Rejected {
    let hint = match (&err, Format::detect(value)) {
        (DecodeError::Malformed, Some(found)) if found != format => Some(format!(
            "it looks like a {found} value (it starts with `{}`): verify it with --format {found}",
            value.split_inclusive('.').next().unwrap_or_default()
        )),
        (DecodeError::Malformed, None) => keepsake::codec::interop::inspect(value)
            .ok()
            .map(|seen| {
                let framework = seen.framework();
                format!(
                    "it looks like a {framework} session cookie: verify it with --format {framework}"
                )
            }),
        _ => None,
    };
    match hint {
        Some(hint) => Rejected(format!("{err}; {hint}")),
        None => err.into(),
    }
}

/// What `keepsake decode` prints.
#[derive(Debug, Serialize)]
#[serde(tag = "format", rename_all = "lowercase")]
enum Inspection {
    /// A signed value: readable, so everything is shown.
    Signed {
        /// Format version.
        version: u32,
        /// Issue time, Unix seconds.
        issued_at: u64,
        /// Expiry, Unix seconds, if any.
        expires_at: Option<u64>,
        /// The payload as [`payload_json`] shows it, or as a string if it is
        /// none of those.
        payload: Value,
        /// Always false: decoding checks no signature.
        verified: bool,
    },
    /// A sealed value: encrypted, so only its size is shown.
    Sealed {
        /// Format version.
        version: u32,
        /// Length of the decoded body (nonce, ciphertext and tag), in bytes.
        bytes: usize,
        /// Always false: decoding checks nothing.
        verified: bool,
    },
}

/// A payload as JSON: JSON itself; a server-side session cookie's session
/// id (its raw [`ID_LEN`] bytes, which are not JSON) as
/// `{"session_id":"ID"}`, in the text `keepsake sessions show` takes; or a
/// client-side session's record (which keepsake writes in a compact binary
/// layout), shown as the record's JSON. `None` if the payload is none of
/// these.
fn payload_json(payload: &[u8]) -> Option<Value> {
    if let Ok(json) = serde_json::from_slice(payload) {
        return Some(json);
    }
    if let Ok(bytes) = <[u8; ID_LEN]>::try_from(payload) {
        let id = Id::from_bytes(bytes);
        return Some(serde_json::json!({ "session_id": id.to_string() }));
    }
    let record = Record::from_cookie_payload(payload).ok()?;
    serde_json::to_value(record).ok()
}

/// `err` and its causes, joined with `: ` as `{:#}` does, but leaving out a
/// cause whose text is already there: keepsake's store errors carry their
/// cause's text in their own message.
fn error_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    let mut session = None;
    for cause in err.chain() {
        let part = cause.to_string();
        if let Some(store) = cause.downcast_ref::<keepsake::store::StoreError>() {
            session = session.or(store.session_id());
        }
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    // The library names a stored session by its log tag only; an operator
    // needs the id to find or revoke it.
    if let Some(id) = session {
        text.push_str(&format!(" (session id {id:?})"));
    }
    text
}

/// Takes a value apart without a key. Only the layout is checked.
fn inspect(value: &str) -> Result<Inspection, Rejected> {
    let seen = codec::inspect(value).map_err(|err| match err {
        DecodeError::Malformed if Format::detect(value).is_none() => Rejected(
            "the value is not a keepsake value (signed values start with `s1.`, \
             sealed ones with `e1.`), nor a Flask, Starlette or Django session cookie"
                .to_owned(),
        ),
        err => err.into(),
    })?;
    Ok(match (seen.claims(), seen.payload()) {
        (Some(claims), Some(payload)) => Inspection::Signed {
            version: seen.version(),
            issued_at: claims.issued_at(),
            expires_at: claims.expires_at(),
            payload: payload_json(payload)
                .unwrap_or_else(|| Value::String(String::from_utf8_lossy(payload).into_owned())),
            verified: false,
        },
        _ => Inspection::Sealed {
            version: seen.version(),
            bytes: seen.sealed_len(),
            verified: false,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::{error_text, payload_json};
    use keepsake::store::Id;
    use serde_json::json;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        use keepsake::store::{StoreError, StoreErrorKind};
        let refused = std::io::Error::other("Connection refused (os error 111)");
        let store = StoreError::with_source(
            StoreErrorKind::Unavailable,
            format!("cannot connect: {refused}"),
            refused,
        );
        let err = anyhow::Error::new(store).context("reading the session failed");
        assert_eq!(
            error_text(&err),
            "reading the session failed: session store unavailable: cannot connect: \
             Connection refused (os error 111)"
        );
        let plain = anyhow::anyhow!("plain").context("outer");
        assert_eq!(error_text(&plain), "outer: plain");
    }

    #[test]
    fn sixteen_bytes_that_are_not_json_are_a_session_id() {
        let id = Id::from_bytes([0xfe; 16]);
        assert_eq!(
            payload_json(id.as_bytes()),
            Some(json!({ "session_id": id.to_string() }))
        );
        // JSON of 16 bytes stays JSON; other lengths are not ids.
        assert_eq!(
            payload_json(b"\"0123456789abcd\""),
            Some(json!("0123456789abcd"))
        );
        assert_eq!(payload_json(&[0xfe; 15]), None);
        assert_eq!(payload_json(&[0xfe; 17]), None);
    }
}
