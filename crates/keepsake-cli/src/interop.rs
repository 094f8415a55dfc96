//! `--format flask|starlette|django`: sign and verify those frameworks'
//! session cookies, and recognise them in `decode`.
//!
//! ```text
//! keepsake sign   --format flask --secret-env VAR [--salt SALT] [--now UNIX] [--name NAME] --json JSON
//! keepsake verify --format flask --secret-env VAR [--fallback-env VAR]... [--salt SALT] [--max-age SECS] [--now UNIX] VALUE
//! keepsake decode VALUE
//! ```
//!
//! The secret is the framework's secret key *as text*, exactly as the app
//! configures it (`SECRET_KEY`, or Starlette's `secret_key`), not base64:
//! the variable's value is used as it is; a `--secret-file` or
//! `--fallback-file` is used without one trailing newline. Fallbacks are the
//! app's `SECRET_KEY_FALLBACKS`, given in the same order (every
//! `--fallback-env`, then every `--fallback-file`). A `--fallback-env`
//! variable holds keys separated by commas (each used as it is, spaces
//! included); empty entries are no keys, so an empty variable or a trailing
//! comma adds none (keepsake never verifies with an empty key: anyone can
//! sign with one). A key that holds a comma goes in a `--fallback-file`.
//! An empty `--secret-env`, `--secret-file` or `--fallback-file` is refused.
//!
//! `--salt` is the app's signing salt when it is not the framework's
//! default: Flask's `SecureCookieSessionInterface.salt` (default
//! `cookie-session`), Django's `salt` (default
//! `django.contrib.sessions.backends.signed_cookies`; the database
//! backend's `session_data` uses `django.contrib.sessions.SessionStore`).
//! `decode` verifies nothing, so it needs no salt.
//!
//! The JSON is the session as the framework serializes it: for Flask its
//! tagged JSON (`{" t": [...]}` is a tuple, `{" b": "..."}` bytes, and so
//! on), plain JSON for the others; `sign` keeps its key order (Starlette and
//! Django write keys in insertion order, Flask sorts them). `verify` prints
//! the session in the same form, exactly as the framework would write it:
//! the framework's own serialization, so a session holding a `NaN` or an
//! infinite float prints Python's `NaN`, `Infinity` or `-Infinity`, which
//! strict JSON parsers refuse. `decode` promises one JSON line, so it writes
//! those floats as the strings `"NaN"`, `"Infinity"` and `"-Infinity"`
//! (nothing marks them apart from a string of that text; use `verify` to see
//! the framework's form).
//! `--ttl`, `--namespace` and `--app` do not apply (these cookies carry only
//! their issue time; the reader's max age decides); `--name` sets the cookie
//! name for the size check (default: the framework's).
//!
//! Exit statuses are those of the keepsake formats: 1 when the value does
//! not verify (tampered, another key, expired, issued in the future for
//! Flask and Starlette, a payload the framework cannot read), 2 for usage
//! errors; `stale-key` on stderr when only a fallback verified it.

use std::{
    fs,
    io::{self, Write},
    path::Path,
};

use anyhow::{Context as _, Result, anyhow, bail};
use keepsake::codec::{
    Format,
    interop::{self, Framework, InteropCodec, PyDict, PyValue},
    unix_now,
};

use crate::{FormatArg, Rejected, SecretArgs, SignArgs, VerifyArgs, terminal::write_json_line};

/// The framework of an interop `--format`, or `None` for keepsake's own.
pub(crate) fn framework(format: FormatArg) -> Option<Framework> {
    match format {
        FormatArg::Signed | FormatArg::Sealed => None,
        FormatArg::Flask => Some(Framework::Flask),
        FormatArg::Starlette => Some(Framework::Starlette),
        FormatArg::Django => Some(Framework::Django),
    }
}

/// A configured interop `sign` or `verify`.
#[derive(Debug)]
pub(crate) enum InteropTask {
    /// Write `session` as a cookie issued at `now`.
    Sign {
        /// Key and framework.
        codec: InteropCodec,
        /// The session to write.
        session: PyDict,
        /// Issue time.
        now: u64,
    },
    /// Read `value` at `now`.
    Verify {
        /// Keys, framework and max age.
        codec: InteropCodec,
        /// The cookie value.
        value: String,
        /// The time to check the age at.
        now: u64,
    },
}

/// Configures `sign --format <framework>`.
pub(crate) fn sign(args: &SignArgs, framework: Framework) -> Result<InteropTask> {
    if args.ttl.is_some() {
        bail!(
            "--ttl does not apply to --format {framework}: its cookies carry only their issue \
             time, and the reader's max age decides"
        );
    }
    let mut codec = InteropCodec::new(framework, current_secret(&args.secret)?);
    if let Some(name) = &args.codec.name {
        codec = codec.with_cookie_name(name.as_str());
    }
    if let Some(salt) = &args.codec.salt {
        codec = codec.with_salt(salt.as_str());
    }
    let session = codec
        .deserialize(&args.json.text)
        .map_err(|err| match err {
            interop::InteropDecodeError::BadPayload { reason } => {
                anyhow!("--json is not a {framework} session: {reason}")
            }
            other => anyhow!("--json: {other}"),
        })?;
    Ok(InteropTask::Sign {
        codec,
        session,
        now: args.now.unwrap_or_else(unix_now),
    })
}

/// Configures `verify --format <framework>`.
pub(crate) fn verify(args: &VerifyArgs, framework: Framework) -> Result<InteropTask> {
    let mut fallbacks = Vec::new();
    for var in &args.fallback_env {
        fallbacks.extend(secret_list_from_env(var, "--fallback-env")?);
    }
    for path in &args.fallback_file {
        fallbacks.push(secret_from_file(path, "--fallback-file")?);
    }
    let mut codec =
        InteropCodec::new(framework, current_secret(&args.secret)?).with_fallbacks(fallbacks);
    if let Some(max_age) = args.max_age {
        codec = codec.with_max_age(Some(max_age));
    }
    if let Some(salt) = &args.codec.salt {
        codec = codec.with_salt(salt.as_str());
    }
    if codec.has_empty_key() {
        // Every key read above is non-empty; checked all the same.
        bail!(
            "a secret key is empty; keepsake never signs or verifies with one: anyone can sign \
             with an empty key"
        );
    }
    Ok(InteropTask::Verify {
        codec,
        value: args.value.clone(),
        now: args.now.unwrap_or_else(unix_now),
    })
}

impl InteropTask {
    /// Runs it, writing the cookie or the session to `out`.
    pub(crate) fn execute(self, out: &mut impl Write) -> Result<()> {
        match self {
            Self::Sign {
                codec,
                session,
                now,
            } => {
                let value = codec.encode(&session, now)?;
                writeln!(out, "{value}")?;
            }
            Self::Verify { codec, value, now } => {
                let opened = codec
                    .decode(&value, now)
                    .map_err(|err| Rejected(err.to_string()))?;
                write_json_line(out, &codec.serialize(opened.session())?)?;
                out.flush()?;
                if opened.key_used().is_fallback() {
                    let _ = writeln!(io::stderr(), "stale-key");
                }
            }
        }
        Ok(())
    }
}

/// The current secret, from `--secret-env` or `--secret-file`.
fn current_secret(secret: &SecretArgs) -> Result<Vec<u8>> {
    match (&secret.secret_env, &secret.secret_file) {
        (Some(var), None) => secret_from_env(var, "--secret-env"),
        (None, Some(path)) => secret_from_file(path, "--secret-file"),
        _ => bail!("give exactly one of --secret-env VAR and --secret-file PATH"),
    }
}

/// A framework secret from an environment variable, as it is.
fn secret_from_env(var: &str, flag: &str) -> Result<Vec<u8>> {
    let value = std::env::var(var).with_context(|| {
        format!("{flag} {var}: the variable is not set (or not UTF-8); it should hold the app's secret key")
    })?;
    non_empty(value.into_bytes(), &format!("{flag} {var}"))
}

/// Framework secrets separated by commas in an environment variable, each
/// as it is; empty entries are no keys (an empty variable holds none).
fn secret_list_from_env(var: &str, flag: &str) -> Result<Vec<Vec<u8>>> {
    let value = std::env::var(var).with_context(|| {
        format!("{flag} {var}: the variable is not set (or not UTF-8); it should hold the app's old secret keys, separated by commas")
    })?;
    Ok(value
        .split(',')
        .filter(|key| !key.is_empty())
        .map(|key| key.as_bytes().to_vec())
        .collect())
}

/// A framework secret from a file, without one trailing newline.
fn secret_from_file(path: &Path, flag: &str) -> Result<Vec<u8>> {
    let origin = format!("{flag} {}", path.display());
    let mut bytes =
        fs::read(path).with_context(|| format!("{origin}: cannot read the secret file"))?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    non_empty(bytes, &origin)
}

fn non_empty(secret: Vec<u8>, origin: &str) -> Result<Vec<u8>> {
    if secret.is_empty() {
        bail!(
            "{origin}: the secret is empty; keepsake never signs or verifies with one: anyone \
             can sign with an empty key"
        );
    }
    Ok(secret)
}

/// `decode` of a Flask, Starlette or Django cookie: one JSON line, or `None`
/// if the value is a keepsake value or none of the three. `NaN` and the
/// infinities, which JSON lacks, are written as strings.
pub(crate) fn decode(value: &str) -> Option<String> {
    if Format::detect(value).is_some() {
        return None;
    }
    let seen = interop::inspect(value).ok()?;
    let session: PyDict = seen
        .session()
        .iter()
        .map(|(key, value)| (key, finite_json(value)))
        .collect();
    let payload = InteropCodec::new(seen.framework(), b"-")
        .serialize(&session)
        .ok()?;
    Some(format!(
        "{{\"format\":\"{}\",\"issued_at\":{},\"compressed\":{},\"payload\":{payload},\"verified\":false}}",
        seen.framework(),
        seen.issued_at(),
        seen.compressed()
    ))
}

/// `value` with every `NaN` and infinite float as the string Python's
/// `json` writes for it, so that it is valid JSON.
fn finite_json(value: &PyValue) -> PyValue {
    match value {
        PyValue::Float(x) if x.is_nan() => PyValue::from("NaN"),
        PyValue::Float(x) if x.is_infinite() => {
            PyValue::from(if *x > 0.0 { "Infinity" } else { "-Infinity" })
        }
        PyValue::List(items) => PyValue::List(items.iter().map(finite_json).collect()),
        PyValue::Tuple(items) => PyValue::Tuple(items.iter().map(finite_json).collect()),
        PyValue::Dict(dict) => PyValue::Dict(
            dict.iter()
                .map(|(key, value)| (key, finite_json(value)))
                .collect(),
        ),
        other => other.clone(),
    }
}
