//! The demo's keys: from `KEEPSAKE_SECRET` (and `KEEPSAKE_SECRET_FALLBACKS`
//! during a rotation), or a secret in a file it makes once.

use std::{
    fs::{self, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use keepsake::key::{Key, KeyError, KeyRing};

/// Where [`load_secret`] found the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The `KEEPSAKE_SECRET` environment variable, with this many fallback
    /// keys from `KEEPSAKE_SECRET_FALLBACKS`.
    Env {
        /// How many fallback keys there are.
        fallbacks: usize,
    },
    /// A new secret, just written to this file.
    Generated(PathBuf),
    /// The secret in this file, written by an earlier start.
    File(PathBuf),
}

impl SecretSource {
    /// The start-up line that says where the secret came from.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake_demo::SecretSource;
    ///
    /// let source = SecretSource::Generated("keepsake-demo.secret".into());
    /// assert_eq!(source.describe(), "generated a new secret in ./keepsake-demo.secret");
    /// ```
    pub fn describe(&self) -> String {
        match self {
            Self::Env { fallbacks: 0 } => "using the secret in KEEPSAKE_SECRET".to_owned(),
            Self::Env { fallbacks } => format!(
                "using the secret in KEEPSAKE_SECRET, and {fallbacks} fallback key{} from \
                 KEEPSAKE_SECRET_FALLBACKS",
                if *fallbacks == 1 { "" } else { "s" }
            ),
            Self::Generated(path) => format!("generated a new secret in {}", shown(path)),
            Self::File(path) => format!("using the secret in {}", shown(path)),
        }
    }
}

/// `path` as the user would type it: a bare file name gets `./`.
fn shown(path: &Path) -> String {
    let text = path.display().to_string();
    if path.is_relative() && !text.starts_with('.') && path.parent() == Some(Path::new("")) {
        format!("./{text}")
    } else {
        text
    }
}

/// The key ring from `KEEPSAKE_SECRET` (base64) and the fallback keys in
/// `KEEPSAKE_SECRET_FALLBACKS` (comma-separated, for a key rotation: see
/// `docs/ROTATION.md`) when `KEEPSAKE_SECRET` is set (even if empty: an
/// error then), as
/// [`KeyRing::from_env`] reads them; otherwise the secret in `file`, which
/// is made (mode 0600) with a new secret if it does not exist yet, so
/// sessions survive a restart.
///
/// # Errors
///
/// A message for a malformed `KEEPSAKE_SECRET`, `KEEPSAKE_SECRET_FALLBACKS`
/// or secret file, or a file that cannot be read or written.
///
/// # Example
///
/// ```no_run
/// let (ring, source) = keepsake_demo::load_secret("keepsake-demo.secret".as_ref())?;
/// eprintln!("{}", source.describe());
/// # let _ = ring;
/// # Ok::<(), String>(())
/// ```
pub fn load_secret(file: &Path) -> Result<(KeyRing, SecretSource), String> {
    // Set but empty counts as set: a deployment whose template left it
    // empty must not get a secret of its own (and drop its fallbacks).
    if std::env::var_os("KEEPSAKE_SECRET").is_some() {
        let ring = KeyRing::from_env().map_err(|err| match &err {
            // The reason is the error's source.
            KeyError::InvalidEnv { source, .. } => format!("{err}: {source}"),
            // These name the variable already.
            _ => err.to_string(),
        })?;
        let fallbacks = ring.fallbacks().len();
        return Ok((ring, SecretSource::Env { fallbacks }));
    }
    load_file(file).map(|(key, source)| (KeyRing::new(key), source))
}

/// The secret in `file`, made if it does not exist yet.
fn load_file(file: &Path) -> Result<(Key, SecretSource), String> {
    match read(file) {
        Ok(key) => return Ok((key, SecretSource::File(file.to_owned()))),
        Err(Missing::No) => {}
        Err(Missing::Bad(message)) => return Err(message),
    }
    let key = Key::generate();
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file);
    match created {
        Ok(mut out) => {
            out.write_all(format!("{}\n", key.to_base64()).as_bytes())
                .and_then(|()| out.sync_all())
                .map_err(|err| format!("cannot write the secret to {}: {err}", shown(file)))?;
            Ok((key, SecretSource::Generated(file.to_owned())))
        }
        // Another process made it in the meantime: use theirs.
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => read(file)
            .map(|key| (key, SecretSource::File(file.to_owned())))
            .map_err(|missing| match missing {
                Missing::Bad(message) => message,
                Missing::No => format!("{} vanished while starting", shown(file)),
            }),
        Err(err) => Err(format!(
            "cannot create the secret file {}: {err}",
            shown(file)
        )),
    }
}

enum Missing {
    No,
    Bad(String),
}

fn read(file: &Path) -> Result<Key, Missing> {
    let text = match fs::read_to_string(file) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(Missing::No),
        Err(err) => return Err(Missing::Bad(format!("cannot read {}: {err}", shown(file)))),
    };
    if let Ok(meta) = fs::metadata(file)
        && meta.permissions().mode() & 0o077 != 0
    {
        eprintln!(
            "warning: {} is readable by others; `chmod 600` it",
            shown(file)
        );
    }
    Key::from_base64(text.trim()).map_err(|err| {
        Missing::Bad(format!(
            "{} does not hold a valid secret ({err}); delete it to make a new one",
            shown(file)
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::shown;

    #[test]
    fn shown_paths() {
        assert_eq!(shown(Path::new("a.secret")), "./a.secret");
        assert_eq!(shown(Path::new("dir/a.secret")), "dir/a.secret");
        assert_eq!(shown(Path::new("/tmp/a.secret")), "/tmp/a.secret");
        assert_eq!(shown(Path::new("./a.secret")), "./a.secret");
    }
}
