//! Secrets, derived subkeys and key rotation.
//!
//! keepsake starts from one *master secret* per key ([`Key`]): at least
//! [`MIN_SECRET_LEN`] random bytes, normally made with `keepsake keygen` or
//! [`Key::generate`] and kept outside the code (an environment variable or a
//! file). The master secret is never used directly. Every purpose gets its own
//! subkey, derived with HKDF-SHA256 (RFC 5869) from the master secret and a
//! fixed info string that names the purpose, the algorithm and the
//! [`Namespace`]:
//!
//! | purpose | algorithm | one subkey per |
//! |---|---|---|
//! | signed values ([`Format::Signed`](crate::codec::Format::Signed)) | HMAC-SHA256 | namespace |
//! | sealed values ([`Format::Sealed`](crate::codec::Format::Sealed)) | AES-256-GCM-SIV | namespace |
//!
//! So a signed value can never be opened as a sealed one, and an app-local
//! value never verifies as a shared one, even under the same master secret.
//!
//! A [`KeyRing`] holds one *current* key, used to sign and seal, and any number
//! of verify-only *fallback* keys. To rotate: make a new key, make it current,
//! and move the old one to the fallbacks until every value it protected has
//! expired. A value that only a fallback opened reports
//! [`KeyUsed::Fallback`](crate::codec::KeyUsed::Fallback), so the caller can
//! issue it again under the current key.
//!
//! [`KeyRing::from_env`] reads the ring from `KEEPSAKE_SECRET` (the current
//! key) and `KEEPSAKE_SECRET_FALLBACKS` (fallback keys, comma-separated),
//! the variables [`SessionLayer::from_env`](crate::middleware::SessionLayer::from_env)
//! reads. Rotating keys on running servers takes two deploys, in an order
//! that logs nobody out: `docs/ROTATION.md` in the repository has the
//! steps, and how long to keep the old key.
//!
//! # Example
//!
//! ```
//! use keepsake::key::{Key, KeyRing};
//!
//! let old = Key::generate();
//! let new = Key::generate();
//! let ring = KeyRing::new(new.clone()).with_fallback(old.clone());
//! assert_eq!(ring.current(), &new);
//! assert_eq!(ring.fallbacks().collect::<Vec<_>>(), vec![&old]);
//! ```

use std::{fmt, str::FromStr, sync::Arc};

use aes_gcm_siv::{Aes256GcmSiv, KeyInit};
use hkdf::Hkdf;
use hmac::Hmac;
use rand::TryRng as _;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The smallest master secret keepsake accepts, in bytes (256 bits).
///
/// # Example
///
/// ```
/// assert_eq!(keepsake::key::MIN_SECRET_LEN, 32);
/// ```
pub const MIN_SECRET_LEN: usize = 32;

/// The largest master secret keepsake accepts, in bytes.
///
/// Longer secrets add nothing to HKDF's security; the bound keeps a wrong file
/// (a log, a database) from being taken for a key.
///
/// # Example
///
/// ```
/// assert_eq!(keepsake::key::MAX_SECRET_LEN, 1024);
/// ```
pub const MAX_SECRET_LEN: usize = 1024;

/// Length in bytes of the secrets [`Key::generate`] makes.
const GENERATED_LEN: usize = 32;

/// HKDF salt: fixed, so the same master secret gives the same subkeys in
/// every process. It only separates keepsake's derivations from other uses of
/// the same secret.
const HKDF_SALT: &[u8] = b"keepsake key derivation v1";

/// Why a master secret was refused.
///
/// # Example
///
/// ```
/// use std::error::Error as _;
/// use keepsake::key::{Key, KeyError, KeyRing};
///
/// assert_eq!(Key::from_bytes(&[0; 8]), Err(KeyError::TooShort { len: 8 }));
/// // A secret read from the environment: the message names the variable,
/// // the source says what is wrong with the secret.
/// let err = KeyRing::from_env_with(|_| Ok("c2hvcnQ=".to_owned())).unwrap_err();
/// assert_eq!(err.to_string(), "the environment variable KEEPSAKE_SECRET does not hold a valid secret");
/// assert!(err.source().unwrap().to_string().starts_with("the secret is 5 bytes"));
///
/// // `Debug` (what `main` prints for an error it returns) names the
/// // variant, then says what `Display` and the causes say.
/// assert_eq!(
///     format!("{err:?}"),
///     "InvalidEnv: the environment variable KEEPSAKE_SECRET does not hold a valid secret: \
///      the secret is 5 bytes; keepsake needs at least 32 (make one with `keepsake keygen`)"
/// );
/// ```
#[derive(thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The secret is shorter than [`MIN_SECRET_LEN`].
    #[error(
        "the secret is {len} bytes; keepsake needs at least {MIN_SECRET_LEN} \
         (make one with `keepsake keygen`)"
    )]
    TooShort {
        /// Length of the secret that was given.
        len: usize,
    },
    /// The secret is longer than [`MAX_SECRET_LEN`].
    #[error(
        "the secret is {len} bytes; keepsake takes at most {MAX_SECRET_LEN} \
         (make one with `keepsake keygen`)"
    )]
    TooLong {
        /// Length of the secret that was given.
        len: usize,
    },
    /// The text is not base64 (standard or URL-safe, padded or not).
    #[error(
        "the secret is not valid base64 (standard or URL-safe alphabet); make \
         one with `keepsake keygen`"
    )]
    NotBase64,
    /// The secret has the right length but does not look like random
    /// bytes: its bytes take fewer than 8 distinct values, or its text uses
    /// letters of one case only, or digits only (`AAAA...=`,
    /// `changemechangeme...`, a passphrase). See [`Key::from_base64`].
    #[error(
        "the secret looks like a placeholder or a passphrase, not random bytes; make \
         one with `keepsake keygen`"
    )]
    NotRandom,
    /// The environment variable that should hold the secret is not set.
    #[error(
        "the environment variable {var} is not set; make a secret with \
         `keepsake keygen` and export it as {var}"
    )]
    MissingEnv {
        /// Name of the variable.
        var: String,
    },
    /// The environment variable is set but is not valid Unicode.
    #[error("the environment variable {var} is not valid UTF-8")]
    EnvNotUnicode {
        /// Name of the variable.
        var: String,
    },
    /// The environment variable holds a secret keepsake refuses. Why is
    /// the error's [`source`](std::error::Error::source) (too short, not
    /// base64, ...); the secret itself is never in the message.
    #[error("{}", invalid_env_text(.var, *.position))]
    InvalidEnv {
        /// Name of the variable.
        var: String,
        /// For a comma-separated list such as `KEEPSAKE_SECRET_FALLBACKS`:
        /// which key of the list, counting from 1 (blank entries are not
        /// counted). `None` for a variable that holds one secret.
        position: Option<usize>,
        /// Why the secret was refused (also the error's
        /// [`source`](std::error::Error::source), as a `Box<KeyError>`).
        source: Box<KeyError>,
    },
    /// A key in a comma-separated list of fallback keys (such as
    /// `KEEPSAKE_SECRET_FALLBACKS`) is the same secret as the current key
    /// or as an earlier key of the list. In a rotation this is the sign of
    /// a mistake, such as the old key lost when the new one was made
    /// current, so it is refused rather than ignored.
    #[error("{}", duplicate_env_text(.var, *.position, *.same_as))]
    DuplicateEnv {
        /// Name of the variable that holds the list.
        var: String,
        /// Which key of the list, counting from 1 (blank entries are not
        /// counted).
        position: usize,
        /// `None`: the same secret as the current key (`KEEPSAKE_SECRET`);
        /// `Some(n)`: the same secret as key `n` of the same list.
        same_as: Option<usize>,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Rng(String),
}

impl KeyError {
    /// The variant's name, first in the `Debug` form.
    fn variant_name(&self) -> &'static str {
        match self {
            Self::TooShort { .. } => "TooShort",
            Self::TooLong { .. } => "TooLong",
            Self::NotBase64 => "NotBase64",
            Self::NotRandom => "NotRandom",
            Self::MissingEnv { .. } => "MissingEnv",
            Self::EnvNotUnicode { .. } => "EnvNotUnicode",
            Self::InvalidEnv { .. } => "InvalidEnv",
            Self::DuplicateEnv { .. } => "DuplicateEnv",
            Self::Rng(_) => "Rng",
        }
    }
}

/// `Variant: message: cause: ...`: the message with its hint rather than
/// the fields, for `main` returning the error (Rust prints its `Debug`)
/// and for `assert_eq!` failures. No variant holds a secret.
impl fmt::Debug for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_error(f, self.variant_name(), self)
    }
}

/// Writes the `Debug` form of keepsake's configuration errors
/// ([`KeyError`], [`ConfigError`](crate::middleware::ConfigError),
/// [`OpenError`](crate::store::OpenError)): `variant: ` then the `Display`
/// text and each cause's, joined with `: `, leaving out a cause whose text
/// is already there (some messages quote their cause).
pub(crate) fn debug_error(
    f: &mut fmt::Formatter<'_>,
    variant: &str,
    err: &dyn std::error::Error,
) -> fmt::Result {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(reason) = cause {
        let part = reason.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = reason.source();
    }
    write!(f, "{variant}: {text}")
}

/// The message of [`KeyError::DuplicateEnv`].
fn duplicate_env_text(var: &str, position: usize, same_as: Option<usize>) -> String {
    match same_as {
        None => format!(
            "key {position} in the environment variable {var} is the same secret as \
             {SECRET_VAR}: list only older keys there (during a rotation, the key that was \
             current before; docs/ROTATION.md in keepsake's repository has the steps)"
        ),
        Some(n) => format!(
            "key {position} in the environment variable {var} is the same secret as key {n} of \
             that list: list each older key once (a repeated key may mean another one was lost \
             in a rotation)"
        ),
    }
}

/// The message of [`KeyError::InvalidEnv`].
fn invalid_env_text(var: &str, position: Option<usize>) -> String {
    match position {
        None => format!("the environment variable {var} does not hold a valid secret"),
        Some(n) => format!("key {n} in the environment variable {var} is not a valid secret"),
    }
}

/// The variable that holds the current key, read by [`KeyRing::from_env`].
const SECRET_VAR: &str = "KEEPSAKE_SECRET";

/// The variable that holds the fallback keys, read by [`KeyRing::from_env`].
const FALLBACKS_VAR: &str = "KEEPSAKE_SECRET_FALLBACKS";

/// The text of variable `var` as `lookup` gives it (`std::env::var`, or a
/// test's), or `None` when it is not set.
fn env_text(
    lookup: impl Fn(&str) -> Result<String, std::env::VarError>,
    var: &str,
) -> Result<Option<String>, KeyError> {
    match lookup(var) {
        Ok(text) => Ok(Some(text)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(KeyError::EnvNotUnicode {
            var: var.to_owned(),
        }),
    }
}

/// The text of variable `var`, which must be set.
fn required_env_text(
    lookup: impl Fn(&str) -> Result<String, std::env::VarError>,
    var: &str,
) -> Result<String, KeyError> {
    env_text(lookup, var)?.ok_or_else(|| KeyError::MissingEnv {
        var: var.to_owned(),
    })
}

/// The secret `text` read from variable `var` (at `position` in a list);
/// an error names the variable, never the secret.
fn key_from_env_text(var: &str, position: Option<usize>, text: &str) -> Result<Key, KeyError> {
    Key::from_base64(text).map_err(|source| KeyError::InvalidEnv {
        var: var.to_owned(),
        position,
        source: Box::new(source),
    })
}

/// The comma-separated secrets `text` read from variable `var`; blank
/// entries are skipped. A secret equal to `current` or to an earlier one of
/// the list is refused ([`KeyError::DuplicateEnv`]).
fn keys_from_env_list(var: &str, text: &str, current: Option<&Key>) -> Result<Vec<Key>, KeyError> {
    let mut keys: Vec<Key> = Vec::new();
    for (entry, position) in text
        .split(',')
        .filter(|entry| !entry.trim().is_empty())
        .zip(1..)
    {
        let key = key_from_env_text(var, Some(position), entry)?;
        let same_as = if current == Some(&key) {
            Some(None)
        } else {
            keys.iter()
                .position(|earlier| *earlier == key)
                .map(|i| Some(i + 1))
        };
        if let Some(same_as) = same_as {
            return Err(KeyError::DuplicateEnv {
                var: var.to_owned(),
                position,
                same_as,
            });
        }
        keys.push(key);
    }
    Ok(keys)
}

/// Which family of values a subkey protects.
///
/// *Local* values belong to one application: their subkeys also depend on the
/// ring's application label ([`KeyRing::with_app`]). *Shared* values are meant
/// for every application configured with the same master secret, whatever its
/// label. A value made in one namespace never verifies in the other.
///
/// # Example
///
/// ```
/// use keepsake::key::Namespace;
///
/// assert_eq!("shared".parse::<Namespace>(), Ok(Namespace::Shared));
/// assert_eq!(Namespace::default(), Namespace::Local);
/// assert_eq!(Namespace::Local.as_str(), "local");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Namespace {
    /// Values for this application only (the default).
    #[default]
    Local,
    /// Values shared by all applications that use the same master secret.
    Shared,
}

impl Namespace {
    /// The namespace's name as used on the command line and in docs.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(keepsake::key::Namespace::Shared.as_str(), "shared");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Shared => "shared",
        }
    }

    /// The one byte that stands for the namespace inside MAC inputs and
    /// associated data.
    pub(crate) const fn tag(self) -> u8 {
        match self {
            Self::Local => b'L',
            Self::Shared => b'S',
        }
    }

    const fn index(self) -> usize {
        match self {
            Self::Local => 0,
            Self::Shared => 1,
        }
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`Namespace`] from text.
///
/// # Example
///
/// ```
/// let err = "global".parse::<keepsake::key::Namespace>().unwrap_err();
/// assert_eq!(err.to_string(), "unknown namespace \"global\" (expected `local` or `shared`)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown namespace {0:?} (expected `local` or `shared`)")]
pub struct ParseNamespaceError(String);

impl FromStr for Namespace {
    type Err = ParseNamespaceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "local" => Ok(Self::Local),
            "shared" => Ok(Self::Shared),
            other => Err(ParseNamespaceError(other.to_owned())),
        }
    }
}

/// A master secret.
///
/// Cheap to clone (the bytes are shared). Equality is constant-time, and
/// `Debug` shows only a [fingerprint](Key::fingerprint), never the bytes.
/// The bytes are overwritten with zeros when the last clone is dropped (and
/// so are the subkeys of a [`KeyRing`] when the ring is).
///
/// # Example
///
/// ```
/// use keepsake::key::Key;
///
/// let key = Key::generate();
/// let again = Key::from_base64(&key.to_base64()).unwrap();
/// assert_eq!(key, again);
/// assert!(!format!("{key:?}").contains(&key.to_base64()));
/// ```
#[derive(Clone)]
pub struct Key {
    /// Zeroed on drop.
    secret: Arc<Zeroizing<Box<[u8]>>>,
}

impl Key {
    /// Makes a new random 256-bit secret with the operating system's CSPRNG.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails; see
    /// [`Key::try_generate`] for the non-panicking twin.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::key::Key;
    ///
    /// assert_ne!(Key::generate(), Key::generate());
    /// ```
    pub fn generate() -> Self {
        match Self::try_generate() {
            Ok(key) => key,
            Err(err) => panic!("{err}"),
        }
    }

    /// Makes a new random 256-bit secret, or says why the operating system's
    /// random number generator failed.
    ///
    /// # Errors
    ///
    /// [`KeyError::Rng`] if no random bytes could be had.
    ///
    /// # Example
    ///
    /// ```
    /// let key = keepsake::key::Key::try_generate()?;
    /// assert_eq!(key.len(), 32);
    /// # Ok::<(), keepsake::key::KeyError>(())
    /// ```
    pub fn try_generate() -> Result<Self, KeyError> {
        let mut bytes = Zeroizing::new([0u8; GENERATED_LEN]);
        rand::rngs::SysRng
            .try_fill_bytes(&mut *bytes)
            .map_err(|err| KeyError::Rng(err.to_string()))?;
        Self::from_bytes(&*bytes)
    }

    /// Takes a master secret from raw bytes.
    ///
    /// # Errors
    ///
    /// [`KeyError::TooShort`] below [`MIN_SECRET_LEN`] bytes,
    /// [`KeyError::TooLong`] above [`MAX_SECRET_LEN`].
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::key::{Key, KeyError};
    ///
    /// assert!(Key::from_bytes(&[7; 32]).is_ok());
    /// assert_eq!(Key::from_bytes(b"hunter2"), Err(KeyError::TooShort { len: 7 }));
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        match bytes.len() {
            len if len < MIN_SECRET_LEN => Err(KeyError::TooShort { len }),
            len if len > MAX_SECRET_LEN => Err(KeyError::TooLong { len }),
            _ => Ok(Self {
                secret: Arc::new(Zeroizing::new(Box::from(bytes))),
            }),
        }
    }

    /// Takes a master secret written in base64: the standard or the URL-safe
    /// alphabet, with or without padding. Whitespace is ignored, around the
    /// text (such as the newline at the end of a file) and inside it (base64
    /// wrapped over several lines, as `openssl rand -base64 64` and Python's
    /// `base64.encodebytes` write it).
    ///
    /// Every secret given as text (`KEEPSAKE_SECRET`, the fallback keys,
    /// the command line tool's `--secret-env` and `--secret-file`) is read
    /// here, so besides the length of the decoded bytes, this refuses text
    /// that is plainly not random bytes ([`KeyError::NotRandom`]): decoded
    /// bytes that take fewer than 8 distinct values (`AAAA...=` is 32 zero
    /// bytes), or text that uses only one kind of character among lowercase
    /// letters, capitals and digits (`+`, `/`, `-`, `_` and `=` aside), as a
    /// placeholder such as `changemechangemechangeme...` or a passphrase
    /// does. A random base64 secret of 43 characters or more fails this with
    /// a probability near 10<sup>-17</sup>, and a hex secret (`openssl rand
    /// -hex 32`: digits and lowercase letters) passes. This is no measure of
    /// randomness: a long password of mixed letters and digits still passes.
    /// Make secrets with `keepsake keygen` or [`Key::generate`].
    /// [`Key::from_bytes`] checks only the length.
    ///
    /// # Errors
    ///
    /// [`KeyError::NotBase64`], the length errors of [`Key::from_bytes`],
    /// and [`KeyError::NotRandom`].
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::key::{Key, KeyError};
    ///
    /// let standard = "tKNt/h7Nt+FQMeBj/YSmoUeI96S3g2QZ/GCrb++SaD8=";
    /// let url_safe = "tKNt_h7Nt-FQMeBj_YSmoUeI96S3g2QZ_GCrb--SaD8";
    /// assert_eq!(Key::from_base64(standard)?, Key::from_base64(url_safe)?);
    /// // Wrapped over lines, as `openssl rand -base64 64` prints it.
    /// let wrapped = "tKNt/h7Nt+FQMeBj/YSmoUeI96S3\r\n  g2QZ/GCrb++SaD8=\n";
    /// assert_eq!(Key::from_base64(wrapped)?, Key::from_base64(standard)?);
    /// assert_eq!(Key::from_base64("not base64!"), Err(KeyError::NotBase64));
    ///
    /// // 32 zero bytes, a placeholder and a passphrase: not random bytes.
    /// for text in [
    ///     "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ///     "changemechangemechangemechangemechangemechangeme",
    ///     "correcthorsebatterystaplecorrecthorsebattery",
    /// ] {
    ///     assert_eq!(Key::from_base64(text), Err(KeyError::NotRandom), "{text}");
    /// }
    /// let err = Key::from_base64("correcthorsebatterystaplecorrecthorsebattery").unwrap_err();
    /// assert!(err.to_string().contains("keepsake keygen"));
    /// # Ok::<(), KeyError>(())
    /// ```
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let compact: Zeroizing<String> = Zeroizing::new(
            text.trim()
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect(),
        );
        let bytes = Zeroizing::new(decode_any_base64(&compact).ok_or(KeyError::NotBase64)?);
        let key = Self::from_bytes(&bytes)?;
        if looks_random(&compact, &bytes) {
            Ok(key)
        } else {
            Err(KeyError::NotRandom)
        }
    }

    /// Reads a base64 master secret from the environment variable `var`.
    ///
    /// For the key ring the session layer uses (`KEEPSAKE_SECRET` and the
    /// fallback keys in `KEEPSAKE_SECRET_FALLBACKS`), use
    /// [`KeyRing::from_env`] instead: a ring made from this key alone
    /// stops reading values made with a retired key.
    ///
    /// # Errors
    ///
    /// [`KeyError::MissingEnv`] when the variable is unset (the message says how
    /// to make a secret), [`KeyError::EnvNotUnicode`], and
    /// [`KeyError::InvalidEnv`], naming the variable, when its text is not a
    /// valid secret (its [`source`](std::error::Error::source) is the error
    /// of [`Key::from_base64`]).
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::key::{Key, KeyError};
    ///
    /// let err = Key::from_env("KEEPSAKE_DOC_EXAMPLE_UNSET").unwrap_err();
    /// assert!(matches!(err, KeyError::MissingEnv { .. }));
    /// assert!(err.to_string().contains("keepsake keygen"));
    /// ```
    pub fn from_env(var: &str) -> Result<Self, KeyError> {
        let text = Zeroizing::new(required_env_text(|name| std::env::var(name), var)?);
        key_from_env_text(var, None, &text)
    }

    /// Reads base64 master secrets separated by commas from the environment
    /// variable `var`, as [`KeyRing::from_env`] reads
    /// `KEEPSAKE_SECRET_FALLBACKS`: whitespace around each secret and blank
    /// entries are ignored, so an empty variable gives no keys.
    ///
    /// # Errors
    ///
    /// [`KeyError::MissingEnv`] when the variable is unset,
    /// [`KeyError::EnvNotUnicode`], [`KeyError::InvalidEnv`] naming the
    /// variable and the position in the list of the first secret that is
    /// not valid, and [`KeyError::DuplicateEnv`] for a secret listed twice.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::key::{Key, KeyError};
    ///
    /// let err = Key::list_from_env("KEEPSAKE_DOC_EXAMPLE_UNSET").unwrap_err();
    /// assert_eq!(err, KeyError::MissingEnv { var: "KEEPSAKE_DOC_EXAMPLE_UNSET".to_owned() });
    /// ```
    pub fn list_from_env(var: &str) -> Result<Vec<Self>, KeyError> {
        let text = Zeroizing::new(required_env_text(|name| std::env::var(name), var)?);
        keys_from_env_list(var, &text, None)
    }

    /// The secret in standard, padded base64, the form `keepsake keygen`
    /// prints and [`Key::from_base64`] reads.
    ///
    /// This reveals the secret: write it only where the secret belongs.
    ///
    /// # Example
    ///
    /// ```
    /// let key = keepsake::key::Key::from_bytes(&[0; 32]).unwrap();
    /// assert_eq!(key.to_base64(), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    /// ```
    pub fn to_base64(&self) -> String {
        base64_simd::STANDARD.encode_to_string(self.bytes())
    }

    /// Length of the secret in bytes.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(keepsake::key::Key::from_bytes(&[1; 48]).unwrap().len(), 48);
    /// ```
    #[allow(clippy::len_without_is_empty)] // a key is never empty
    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    /// The secret bytes.
    fn bytes(&self) -> &[u8] {
        &self.secret
    }

    /// A short, non-secret name for the key: 8 hex digits derived with HKDF
    /// under their own label, so they reveal nothing about the subkeys. Use it
    /// to tell keys apart in logs and on the command line.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::key::Key;
    ///
    /// let key = Key::from_bytes(&[0; 32]).unwrap();
    /// assert_eq!(key.fingerprint().len(), 8);
    /// assert_eq!(key.fingerprint(), Key::from_bytes(&[0; 32]).unwrap().fingerprint());
    /// assert_ne!(key.fingerprint(), Key::from_bytes(&[1; 32]).unwrap().fingerprint());
    /// ```
    pub fn fingerprint(&self) -> String {
        let mut out = [0u8; 4];
        self.expand(b"keepsake v1 key fingerprint", &mut out);
        out.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// HKDF-SHA256 expansion of this secret under `info`.
    fn expand(&self, info: &[u8], out: &mut [u8]) {
        let hkdf = Hkdf::<Sha256>::new(Some(HKDF_SALT), self.bytes());
        // Only fails for outputs over 255 * 32 bytes; ours are 32 or fewer.
        if hkdf.expand(info, out).is_err() {
            unreachable!("HKDF output length is a small constant");
        }
    }
}

impl PartialEq for Key {
    /// Constant-time in the contents of the secrets (their lengths are not
    /// secret).
    fn eq(&self, other: &Self) -> bool {
        self.bytes().ct_eq(other.bytes()).into()
    }
}

impl Eq for Key {}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl TryFrom<&[u8]> for Key {
    type Error = KeyError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        Self::from_bytes(bytes)
    }
}

/// Decodes base64 in any of the four common spellings.
fn decode_any_base64(text: &str) -> Option<Vec<u8>> {
    use base64_simd::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

    let url_safe = text.contains(['-', '_']);
    let padded = text.ends_with('=');
    let engine = match (url_safe, padded) {
        (false, true) => &STANDARD,
        (false, false) => &STANDARD_NO_PAD,
        (true, true) => &URL_SAFE,
        (true, false) => &URL_SAFE_NO_PAD,
    };
    engine.decode_to_vec(text).ok()
}

/// Fewer distinct byte values than this in a secret's decoded bytes: not
/// random bytes (32 random bytes take about 30).
const MIN_DISTINCT_BYTES: u32 = 8;

/// Whether base64 `text` (whitespace removed) and its decoded `bytes`
/// could be random bytes: see [`Key::from_base64`].
fn looks_random(text: &str, bytes: &[u8]) -> bool {
    // Which byte values occur, one bit each; zeroed after use like the
    // bytes themselves.
    let mut seen = Zeroizing::new([0u64; 4]);
    for &byte in bytes {
        seen[usize::from(byte >> 6)] |= 1 << (byte & 63);
    }
    let distinct: u32 = seen.iter().map(|word| word.count_ones()).sum();
    let classes = [
        u8::is_ascii_lowercase as fn(&u8) -> bool,
        u8::is_ascii_uppercase,
        u8::is_ascii_digit,
    ]
    .into_iter()
    .filter(|class| text.bytes().any(|byte| class(&byte)))
    .count();
    distinct >= MIN_DISTINCT_BYTES && classes >= 2
}

/// The subkeys of one master secret, ready for use: the HMAC state already
/// holds its key, the AEAD already has its key schedule.
#[derive(Clone)]
pub(crate) struct Subkeys {
    /// One pre-keyed HMAC-SHA256 per namespace.
    sign: [Hmac<Sha256>; 2],
    /// One AES-256-GCM-SIV cipher per namespace.
    seal: [Aes256GcmSiv; 2],
}

impl Subkeys {
    fn derive(key: &Key, app: &str) -> Self {
        let derive = |purpose: &str, namespace: Namespace| -> Zeroizing<[u8; 32]> {
            // Only local subkeys depend on the application label.
            let app = match namespace {
                Namespace::Local => app,
                Namespace::Shared => "",
            };
            let info = format!(
                "keepsake v1 {purpose} namespace={namespace} app={}:{app}",
                app.len()
            );
            let mut out = Zeroizing::new([0u8; 32]);
            key.expand(info.as_bytes(), &mut *out);
            out
        };
        let hmac = |namespace| {
            <Hmac<Sha256> as KeyInit>::new_from_slice(&*derive("HMAC-SHA256 sign", namespace))
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
        };
        let aead = |namespace| {
            Aes256GcmSiv::new_from_slice(&*derive("AES-256-GCM-SIV seal", namespace))
                .unwrap_or_else(|_| unreachable!("the derived key is 32 bytes"))
        };
        Self {
            sign: [hmac(Namespace::Local), hmac(Namespace::Shared)],
            seal: [aead(Namespace::Local), aead(Namespace::Shared)],
        }
    }

    /// The pre-keyed HMAC for `namespace`; clone it to use it.
    pub(crate) fn signer(&self, namespace: Namespace) -> &Hmac<Sha256> {
        &self.sign[namespace.index()]
    }

    /// The AEAD for `namespace`.
    pub(crate) fn sealer(&self, namespace: Namespace) -> &Aes256GcmSiv {
        &self.seal[namespace.index()]
    }
}

/// One current key and any number of verify-only fallback keys.
///
/// The current key signs and seals; verifying tries the current key first,
/// then each fallback in the order they were added. Cheap to clone.
///
/// # Example
///
/// ```
/// use keepsake::{codec::{Claims, Codec, KeyUsed}, key::{Key, KeyRing}};
///
/// let old = KeyRing::new(Key::generate());
/// let value = Codec::signed(old.clone()).encode("theme", b"dark", Claims::new(1_700_000_000))?;
///
/// // Rotate: a new current key, the old one kept for verifying only.
/// let rotated = KeyRing::new(Key::generate()).with_fallback(old.current().clone());
/// let opened = Codec::signed(rotated).decode("theme", &value, 1_700_000_001)?;
/// assert_eq!(opened.payload(), b"dark");
/// assert_eq!(opened.key_used(), KeyUsed::Fallback { index: 0 });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct KeyRing {
    inner: Arc<RingInner>,
}

struct RingInner {
    app: String,
    /// `keys[0]` is the current key, the rest are fallbacks in order.
    keys: Vec<(Key, Subkeys)>,
}

impl KeyRing {
    /// A ring with `current` as its only key and an empty application label.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::key::{Key, KeyRing};
    ///
    /// let key = Key::generate();
    /// let ring = KeyRing::new(key.clone());
    /// assert_eq!(ring.current(), &key);
    /// assert_eq!(ring.fallbacks().count(), 0);
    /// ```
    pub fn new(current: Key) -> Self {
        let subkeys = Subkeys::derive(&current, "");
        Self {
            inner: Arc::new(RingInner {
                app: String::new(),
                keys: vec![(current, subkeys)],
            }),
        }
    }

    /// The ring configured in the environment: the current key from
    /// `KEEPSAKE_SECRET` (base64, required) and verify-only fallback keys
    /// from `KEEPSAKE_SECRET_FALLBACKS` (base64 secrets separated by commas;
    /// unset or empty for none), read as [`Key::from_env`] and
    /// [`Key::list_from_env`] read them.
    ///
    /// **The ring has an empty [application label](KeyRing::with_app):
    /// two apps given the same `KEEPSAKE_SECRET` accept each other's
    /// cookies** (a session cookie of one is a valid session cookie of the
    /// other). Give each app its own secret, or its own label with
    /// `KeyRing::from_env()?.with_app("billing")`.
    ///
    /// This is the ring [`SessionLayer::from_env`](crate::middleware::SessionLayer::from_env)
    /// uses. Build it once and give it to the session layer and to the
    /// app's own [signed and private cookies](crate::cookies::CookieJar::signed):
    /// then both keep reading values made with a key that a rotation moved
    /// to the fallbacks (`docs/ROTATION.md` in the repository has the
    /// steps).
    ///
    /// # Errors
    ///
    /// [`KeyError::MissingEnv`] when `KEEPSAKE_SECRET` is unset (the message
    /// says how to make a secret), [`KeyError::EnvNotUnicode`] when either
    /// variable is not UTF-8, [`KeyError::InvalidEnv`] naming the
    /// variable (and, for a fallback, its position in the list) when a
    /// secret is not valid, and [`KeyError::DuplicateEnv`] when a fallback
    /// is the same secret as `KEEPSAKE_SECRET` or as an earlier fallback
    /// (in a rotation, the sign that the old key was lost). No message ever
    /// shows a secret.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::key::{KeyError, KeyRing};
    ///
    /// match KeyRing::from_env() {
    ///     Ok(ring) => assert!(std::env::var_os("KEEPSAKE_SECRET").is_some(), "{ring:?}"),
    ///     // Every error names the variable to fix.
    ///     Err(err) => assert!(err.to_string().contains("KEEPSAKE_SECRET"), "{err}"),
    /// }
    /// # let _: Result<KeyRing, KeyError> = KeyRing::from_env();
    /// ```
    pub fn from_env() -> Result<Self, KeyError> {
        Self::from_env_with(|name| std::env::var(name))
    }

    /// [`KeyRing::from_env`] with the variables that `lookup` gives (it
    /// answers as [`std::env::var`] does): for tests, or for settings kept
    /// somewhere else than the process environment.
    ///
    /// # Errors
    ///
    /// Those of [`KeyRing::from_env`].
    ///
    /// # Example
    ///
    /// ```
    /// use std::{env::VarError, error::Error as _};
    /// use keepsake::key::{Key, KeyError, KeyRing};
    ///
    /// let (old, new) = (Key::generate(), Key::generate());
    /// let vars = |secret: String, fallbacks: String| {
    ///     move |name: &str| match name {
    ///         "KEEPSAKE_SECRET" => Ok(secret.clone()),
    ///         "KEEPSAKE_SECRET_FALLBACKS" => Ok(fallbacks.clone()),
    ///         _ => Err(VarError::NotPresent),
    ///     }
    /// };
    ///
    /// // Mid-rotation: the new key signs, the old one still verifies.
    /// let ring = KeyRing::from_env_with(vars(new.to_base64(), format!(" {} ,", old.to_base64())))?;
    /// assert_eq!(ring.current(), &new);
    /// assert_eq!(ring.fallbacks().collect::<Vec<_>>(), vec![&old]);
    ///
    /// // A bad fallback is named by its variable and place in the list.
    /// let err = KeyRing::from_env_with(vars(new.to_base64(), format!("{},hunter2", old.to_base64())))
    ///     .unwrap_err();
    /// assert_eq!(err.to_string(), "key 2 in the environment variable KEEPSAKE_SECRET_FALLBACKS is not a valid secret");
    /// assert!(matches!(err, KeyError::InvalidEnv { position: Some(2), .. }));
    /// assert!(err.source().unwrap().to_string().contains("keepsake keygen"));
    ///
    /// // A fallback that repeats the current key or another fallback is a
    /// // mistake (the old key lost in the rotation?), not a no-op.
    /// let err = KeyRing::from_env_with(vars(new.to_base64(), new.to_base64())).unwrap_err();
    /// assert!(matches!(err, KeyError::DuplicateEnv { position: 1, same_as: None, .. }));
    /// assert!(err.to_string().starts_with(
    ///     "key 1 in the environment variable KEEPSAKE_SECRET_FALLBACKS is the same secret as KEEPSAKE_SECRET"
    /// ));
    /// let twice = format!("{0},{0}", old.to_base64());
    /// let err = KeyRing::from_env_with(vars(new.to_base64(), twice)).unwrap_err();
    /// assert!(matches!(err, KeyError::DuplicateEnv { position: 2, same_as: Some(1), .. }));
    ///
    /// let err = KeyRing::from_env_with(|_| Err(VarError::NotPresent)).unwrap_err();
    /// assert_eq!(err, KeyError::MissingEnv { var: "KEEPSAKE_SECRET".to_owned() });
    /// // What `main` prints when it returns this error: the message and its hint.
    /// assert!(format!("{err:?}").starts_with(
    ///     "MissingEnv: the environment variable KEEPSAKE_SECRET is not set; make a secret with `keepsake keygen`"
    /// ));
    /// # Ok::<(), KeyError>(())
    /// ```
    pub fn from_env_with(
        lookup: impl Fn(&str) -> Result<String, std::env::VarError>,
    ) -> Result<Self, KeyError> {
        let secret = Zeroizing::new(required_env_text(&lookup, SECRET_VAR)?);
        let current = key_from_env_text(SECRET_VAR, None, &secret)?;
        let fallbacks = match env_text(&lookup, FALLBACKS_VAR)?.map(Zeroizing::new) {
            Some(text) => keys_from_env_list(FALLBACKS_VAR, &text, Some(&current))?,
            None => Vec::new(),
        };
        Ok(Self::new(current).with_fallbacks(fallbacks))
    }

    /// Adds a verify-only fallback key, tried after the current key and the
    /// fallbacks added before it.
    ///
    /// A key already in the ring (the current key or a fallback) is not
    /// added again: it would verify nothing more. (Reading the ring from the
    /// environment, [`KeyRing::from_env`] refuses such a repeat instead, as
    /// a likely mistake in a rotation.)
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::key::{Key, KeyRing};
    ///
    /// let (current, old) = (Key::generate(), Key::generate());
    /// let ring = KeyRing::new(current.clone())
    ///     .with_fallback(old.clone())
    ///     .with_fallback(Key::generate());
    /// assert_eq!(ring.fallbacks().count(), 2);
    ///
    /// // The current key and a key already listed are left out.
    /// let ring = ring.with_fallback(current).with_fallback(old);
    /// assert_eq!(ring.fallbacks().count(), 2);
    /// ```
    #[must_use]
    pub fn with_fallback(self, fallback: Key) -> Self {
        if self.inner.keys.iter().any(|(key, _)| *key == fallback) {
            return self;
        }
        let mut inner = self.into_inner();
        let subkeys = Subkeys::derive(&fallback, &inner.app);
        inner.keys.push((fallback, subkeys));
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Adds several fallback keys, in order.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::key::{Key, KeyRing};
    ///
    /// let ring = KeyRing::new(Key::generate()).with_fallbacks([Key::generate(), Key::generate()]);
    /// assert_eq!(ring.fallbacks().count(), 2);
    /// ```
    #[must_use]
    pub fn with_fallbacks(self, fallbacks: impl IntoIterator<Item = Key>) -> Self {
        fallbacks.into_iter().fold(self, Self::with_fallback)
    }

    /// Sets the application label that [local](Namespace::Local) subkeys
    /// depend on (default: empty).
    ///
    /// **Two applications that share a master secret and keep the default
    /// (empty) label accept each other's cookies**, session cookies
    /// included: a cookie of the same name made by one verifies in the
    /// other. Give each application its own secret, or its own label.
    ///
    /// Two applications that share a master secret but have different labels
    /// can read each other's [shared](Namespace::Shared) values, and not each
    /// other's local ones.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::{codec::{Claims, Codec}, key::{Key, KeyRing, Namespace}};
    ///
    /// let key = Key::generate();
    ///
    /// // One secret, no labels: each app accepts the other's values.
    /// let value = Codec::signed(KeyRing::new(key.clone())).encode("session", b"x", Claims::new(0))?;
    /// assert!(Codec::signed(KeyRing::new(key.clone())).decode("session", &value, 1).is_ok());
    ///
    /// // One secret, two labels: a value made under "a" does not verify under "b".
    /// let a = Codec::signed(KeyRing::new(key.clone()).with_app("a"));
    /// let b = Codec::signed(KeyRing::new(key.clone()).with_app("b"));
    /// let value = a.encode("session", b"x", Claims::new(0))?;
    /// assert!(a.decode("session", &value, 1).is_ok());
    /// assert!(b.decode("session", &value, 1).is_err());
    ///
    /// let billing = KeyRing::new(key.clone()).with_app("billing");
    /// let shop = KeyRing::new(key).with_app("shop");
    ///
    /// let local = Codec::signed(billing.clone()).encode("c", b"x", Claims::new(0))?;
    /// assert!(Codec::signed(shop.clone()).decode("c", &local, 1).is_err());
    ///
    /// let shared = Codec::signed(billing).with_namespace(Namespace::Shared);
    /// let value = shared.encode("c", b"x", Claims::new(0))?;
    /// assert!(Codec::signed(shop).with_namespace(Namespace::Shared).decode("c", &value, 1).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_app(self, app: impl Into<String>) -> Self {
        let mut inner = self.into_inner();
        inner.app = app.into();
        for (key, subkeys) in &mut inner.keys {
            *subkeys = Subkeys::derive(key, &inner.app);
        }
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The application label.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::key::{Key, KeyRing};
    ///
    /// assert_eq!(KeyRing::new(Key::generate()).with_app("shop").app(), "shop");
    /// ```
    pub fn app(&self) -> &str {
        &self.inner.app
    }

    /// The key that signs and seals.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::key::{Key, KeyRing};
    ///
    /// let key = Key::generate();
    /// assert_eq!(KeyRing::new(key.clone()).current(), &key);
    /// ```
    pub fn current(&self) -> &Key {
        &self.inner.keys[0].0
    }

    /// The verify-only keys, in the order they are tried.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::key::{Key, KeyRing};
    ///
    /// let old = Key::generate();
    /// let ring = KeyRing::new(Key::generate()).with_fallback(old.clone());
    /// assert_eq!(ring.fallbacks().next(), Some(&old));
    /// ```
    pub fn fallbacks(&self) -> impl ExactSizeIterator<Item = &Key> + '_ {
        self.inner.keys[1..].iter().map(|(key, _)| key)
    }

    /// The current key's subkeys.
    pub(crate) fn current_subkeys(&self) -> &Subkeys {
        &self.inner.keys[0].1
    }

    /// All subkeys in the order to try them: current first.
    pub(crate) fn all_subkeys(&self) -> impl Iterator<Item = &Subkeys> + '_ {
        self.inner.keys.iter().map(|(_, subkeys)| subkeys)
    }

    fn into_inner(self) -> RingInner {
        Arc::try_unwrap(self.inner).unwrap_or_else(|shared| RingInner {
            app: shared.app.clone(),
            keys: shared.keys.clone(),
        })
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("app", &self.inner.app)
            .field("current", self.current())
            .field("fallbacks", &self.fallbacks().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secret_bytes() {
        let key = Key::from_bytes(&[0xAB; 32]).unwrap();
        let old = Key::from_bytes(&[0xCD; 32]).unwrap();
        let ring = KeyRing::new(key.clone()).with_fallback(old.clone());
        assert_eq!(ring.fallbacks().len(), 1);
        for text in [
            format!("{key:?}"),
            format!("{ring:?}"),
            format!("{ring:#?}"),
        ] {
            assert!(!text.contains(&key.to_base64()), "{text}");
            assert!(!text.contains(&old.to_base64()), "{text}");
            assert!(!text.to_lowercase().contains("abab"), "{text}");
            assert!(!text.to_lowercase().contains("cdcd"), "{text}");
            assert!(!text.contains("171"), "{text}"); // 0xAB as decimal
            assert!(!text.contains("205"), "{text}"); // 0xCD as decimal
        }
    }

    /// A lookup with `KEEPSAKE_SECRET` and `KEEPSAKE_SECRET_FALLBACKS` set
    /// to these (unset for `None`; "\u{fffd}" stands for a value that is not
    /// UTF-8).
    fn vars(
        secret: Option<&str>,
        fallbacks: Option<&str>,
    ) -> impl Fn(&str) -> Result<String, std::env::VarError> {
        use std::env::VarError;
        let (secret, fallbacks) = (secret.map(str::to_owned), fallbacks.map(str::to_owned));
        move |var| {
            let value = match var {
                SECRET_VAR => secret.clone(),
                FALLBACKS_VAR => fallbacks.clone(),
                _ => None,
            };
            match value.as_deref() {
                Some("\u{fffd}") => Err(VarError::NotUnicode("\u{fffd}".into())),
                Some(text) => Ok(text.to_owned()),
                None => Err(VarError::NotPresent),
            }
        }
    }

    #[test]
    fn env_key_errors_name_the_variable_never_the_secret() {
        use std::error::Error as _;
        let good = Key::generate().to_base64();
        let (old, older) = (Key::generate().to_base64(), Key::generate().to_base64());
        let ring = KeyRing::from_env_with(vars(Some(&good), Some(&format!(" {old} ,,{older}"))));
        assert_eq!(ring.unwrap().fallbacks().len(), 2);
        for empty in [None, Some(""), Some(" , ")] {
            let ring = KeyRing::from_env_with(vars(Some(&good), empty)).unwrap();
            assert_eq!(ring.fallbacks().len(), 0, "{empty:?}");
        }
        let err = |secret: Option<&str>, fallbacks: Option<&str>| {
            KeyRing::from_env_with(vars(secret, fallbacks)).unwrap_err()
        };
        assert_eq!(
            err(None, None),
            KeyError::MissingEnv {
                var: SECRET_VAR.to_owned()
            }
        );
        assert!(err(None, None).to_string().contains("keepsake keygen"));

        let short = err(Some("aHVudGVyMg=="), None);
        assert_eq!(
            short,
            KeyError::InvalidEnv {
                var: SECRET_VAR.to_owned(),
                position: None,
                source: Box::new(KeyError::TooShort { len: 7 }),
            }
        );
        // The reason is said once: in the source, not again in the message.
        assert_eq!(
            short.to_string(),
            "the environment variable KEEPSAKE_SECRET does not hold a valid secret"
        );
        let reason = short.source().unwrap().to_string();
        assert!(reason.starts_with("the secret is 7 bytes"), "{reason}");
        assert!(reason.contains("keepsake keygen"), "{reason}");
        assert!(short.source().unwrap().source().is_none());

        let second = err(Some(&good), Some(&format!("{old}, ,hunter2")));
        assert_eq!(
            second.to_string(),
            "key 2 in the environment variable KEEPSAKE_SECRET_FALLBACKS is not a valid secret"
        );
        assert_eq!(
            second.source().unwrap().to_string(),
            KeyError::NotBase64.to_string()
        );
        assert!(!format!("{second} {second:?}").contains("hunter2"));
        assert!(!format!("{short} {short:?}").contains("aHVudGVyMg"));

        // A fallback list that is not UTF-8 is an error, not "no fallbacks".
        let garbled = err(Some(&good), Some("\u{fffd}")).to_string();
        assert_eq!(
            garbled,
            "the environment variable KEEPSAKE_SECRET_FALLBACKS is not valid UTF-8"
        );
        // An empty secret is a secret of 0 bytes, not a missing one.
        assert!(matches!(
            err(Some(""), None),
            KeyError::InvalidEnv { source, .. } if *source == KeyError::TooShort { len: 0 }
        ));
    }

    #[test]
    fn repeated_keys_in_the_environment_are_refused_by_position() {
        let (current, old) = (Key::generate().to_base64(), Key::generate().to_base64());
        let err = |fallbacks: &str| KeyRing::from_env_with(vars(Some(&current), Some(fallbacks)));
        // The current key again, anywhere in the list, even spelled otherwise.
        let url_safe = current.replace('+', "-").replace('/', "_");
        for (list, position) in [
            (current.clone(), 1),
            (format!("{old}, {current}"), 2),
            (format!(" ,{old},,{}", url_safe.trim_end_matches('=')), 2),
        ] {
            let err = err(&list).unwrap_err();
            assert_eq!(
                err,
                KeyError::DuplicateEnv {
                    var: FALLBACKS_VAR.to_owned(),
                    position,
                    same_as: None,
                },
                "{list}"
            );
            let text = err.to_string();
            assert!(
                text.starts_with(&format!(
                    "key {position} in the environment variable KEEPSAKE_SECRET_FALLBACKS is the \
                     same secret as KEEPSAKE_SECRET"
                )),
                "{text}"
            );
            assert!(!format!("{err} {err:?}").contains(&current[..20]));
        }
        // A fallback twice.
        let err = err(&format!("{old},{},{old}", Key::generate().to_base64())).unwrap_err();
        assert_eq!(
            err,
            KeyError::DuplicateEnv {
                var: FALLBACKS_VAR.to_owned(),
                position: 3,
                same_as: Some(1),
            }
        );
        assert!(
            err.to_string()
                .contains("key 3 in the environment variable KEEPSAKE_SECRET_FALLBACKS is the same secret as key 1 of that list"),
            "{err}"
        );
        // The list alone (`Key::list_from_env` reads it so) refuses a repeat too.
        assert!(matches!(
            keys_from_env_list("V", &format!("{old},{old}"), None),
            Err(KeyError::DuplicateEnv {
                position: 2,
                same_as: Some(1),
                ..
            })
        ));
        // Distinct keys are fine.
        assert_eq!(fallback_count(&current, &old), 1);
    }

    fn fallback_count(current: &str, fallbacks: &str) -> usize {
        KeyRing::from_env_with(vars(Some(current), Some(fallbacks)))
            .unwrap()
            .fallbacks()
            .len()
    }

    #[test]
    fn with_fallback_leaves_out_keys_already_in_the_ring() {
        let (current, old, older) = (Key::generate(), Key::generate(), Key::generate());
        let ring = KeyRing::new(current.clone())
            .with_fallback(current.clone())
            .with_fallback(old.clone())
            .with_fallbacks([older.clone(), old.clone(), current.clone(), older.clone()]);
        assert_eq!(ring.current(), &current);
        assert_eq!(ring.fallbacks().collect::<Vec<_>>(), vec![&old, &older]);
        assert_eq!(ring.all_subkeys().count(), 3);
        // Also when the ring is shared (cloned before adding).
        let shared = ring.clone();
        assert_eq!(shared.with_fallback(old).fallbacks().len(), 2);
        assert_eq!(ring.fallbacks().len(), 2);
    }

    #[test]
    fn degenerate_secrets_are_refused_random_and_hex_ones_are_not() {
        for text in [
            // 32 zero bytes.
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            // 32 bytes of 0xff.
            "//////////////////////////////////////////8=",
            "changemechangemechangemechangemechangemechangeme",
            "correcthorsebatterystaplecorrecthorsebattery",
            "CORRECTHORSEBATTERYSTAPLECORRECTHORSEBATTERY",
            "12345678901234567890123456789012345678901234",
            // Mixed text, but only 4 distinct bytes (0, 1, 2, 3).
            &base64_simd::STANDARD.encode_to_string([0u8, 1, 2, 3].repeat(10)),
            // 7 distinct bytes.
            &base64_simd::STANDARD.encode_to_string((0u8..7).cycle().take(40).collect::<Vec<_>>()),
        ] {
            assert_eq!(Key::from_base64(text), Err(KeyError::NotRandom), "{text}");
        }
        let message = KeyError::NotRandom.to_string();
        assert!(message.contains("placeholder or a passphrase"), "{message}");
        assert!(message.contains("keepsake keygen"), "{message}");
        // The environment names the variable, the source says why.
        let err = KeyRing::from_env_with(vars(
            Some("changemechangemechangemechangemechangemechangeme"),
            None,
        ))
        .unwrap_err();
        assert!(
            matches!(&err, KeyError::InvalidEnv { source, .. } if **source == KeyError::NotRandom)
        );
        assert!(format!("{err:?}").contains("placeholder"), "{err:?}");

        // 8 distinct bytes in mixed text pass.
        let eight =
            base64_simd::STANDARD.encode_to_string((0u8..8).cycle().take(40).collect::<Vec<_>>());
        assert!(Key::from_base64(&eight).is_ok(), "{eight}");
        // Short and degenerate: the length is what is said.
        assert_eq!(Key::from_base64("AAAA"), Err(KeyError::TooShort { len: 3 }));
        // Raw bytes are not checked (tests use repeated bytes).
        assert!(Key::from_bytes(&[7; 32]).is_ok());
        // Generated secrets, in base64 and in hex (`openssl rand -hex 32`,
        // read as base64 of its 64 characters), pass.
        for _ in 0..200 {
            let key = Key::generate();
            assert!(Key::from_base64(&key.to_base64()).is_ok());
            let hex: String = key.bytes().iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(Key::from_base64(&hex).map(|key| key.len()), Ok(48), "{hex}");
            assert!(Key::from_base64(&hex.to_uppercase()).is_ok(), "{hex}");
        }
    }

    #[test]
    fn line_wrapped_base64_is_read() {
        let bytes: Vec<u8> = (0u8..64).map(|i| i.wrapping_mul(97) ^ 0x5a).collect();
        let key = Key::from_bytes(&bytes).unwrap();
        let text = base64_simd::STANDARD.encode_to_string(&bytes);
        // `openssl rand -base64 64` wraps at 64 columns, Python's
        // `base64.encodebytes` at 76; CRLF, tabs and indentation too.
        let wrap = |width: usize, sep: &str| -> String {
            text.as_bytes()
                .chunks(width)
                .map(|line| format!("{}{sep}", std::str::from_utf8(line).unwrap()))
                .collect()
        };
        for wrapped in [
            wrap(64, "\n"),
            wrap(76, "\n"),
            wrap(20, "\r\n"),
            wrap(10, "\n\t  "),
            format!("  {}\n\n", wrap(64, "\n")),
        ] {
            assert_eq!(Key::from_base64(&wrapped).as_ref(), Ok(&key), "{wrapped:?}");
        }
        // Other characters inside are still not base64.
        assert_eq!(Key::from_base64(&wrap(64, "\n,")), Err(KeyError::NotBase64));
    }

    #[test]
    fn debug_of_errors_is_the_message_with_its_hint() {
        let missing = KeyError::MissingEnv {
            var: SECRET_VAR.to_owned(),
        };
        assert_eq!(
            format!("{missing:?}"),
            "MissingEnv: the environment variable KEEPSAKE_SECRET is not set; make a secret with \
             `keepsake keygen` and export it as KEEPSAKE_SECRET"
        );
        // What `fn main() -> Result<(), Box<dyn Error>>` prints.
        let boxed: Box<dyn std::error::Error> = Box::new(missing.clone());
        assert!(format!("{boxed:?}").contains("keepsake keygen"));
        assert_eq!(format!("{missing:#?}"), format!("{missing:?}"));

        let invalid = KeyRing::from_env_with(vars(Some("aHVudGVyMg=="), None)).unwrap_err();
        let debug = format!("{invalid:?}");
        assert_eq!(
            debug,
            "InvalidEnv: the environment variable KEEPSAKE_SECRET does not hold a valid secret: \
             the secret is 7 bytes; keepsake needs at least 32 (make one with `keepsake keygen`)"
        );
        assert!(!debug.contains("aHVudGVyMg"), "{debug}");
        for (err, name) in [
            (KeyError::TooShort { len: 1 }, "TooShort: "),
            (KeyError::TooLong { len: 2000 }, "TooLong: "),
            (KeyError::NotBase64, "NotBase64: "),
            (KeyError::NotRandom, "NotRandom: "),
            (
                KeyError::EnvNotUnicode {
                    var: "V".to_owned(),
                },
                "EnvNotUnicode: ",
            ),
            (
                KeyError::DuplicateEnv {
                    var: "V".to_owned(),
                    position: 2,
                    same_as: Some(1),
                },
                "DuplicateEnv: ",
            ),
            (KeyError::Rng("no entropy".to_owned()), "Rng: "),
        ] {
            assert_eq!(format!("{err:?}"), format!("{name}{err}"));
        }
    }

    #[tokio::test]
    async fn debug_of_config_and_open_errors_shows_the_causes() {
        use crate::store::{OpenError, StoreUrl};
        let err = StoreUrl::parse("sqlite:///no/such/dir/s.db")
            .unwrap()
            .open()
            .await
            .unwrap_err();
        assert!(matches!(err, OpenError::Store { .. }));
        let debug = format!("{err:?}");
        assert!(
            debug.starts_with(
                "Store: cannot open the sqlite session store at sqlite:///no/such/dir/s.db: "
            ),
            "{debug}"
        );
        // The cause is there, once.
        let cause = std::error::Error::source(&err).unwrap().to_string();
        assert!(debug.ends_with(&cause), "{debug}");
        assert_eq!(debug.matches(&cause).count(), 1, "{debug}");
        // A password in the URL is hidden in `Debug` as in `Display`.
        let err = StoreUrl::parse("mongodb://admin:hunter2@db").unwrap_err();
        assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");

        let err = crate::middleware::ConfigError::from(KeyError::MissingEnv {
            var: SECRET_VAR.to_owned(),
        });
        assert_eq!(
            format!("{err:?}"),
            "Key: the environment variable KEEPSAKE_SECRET is not set; make a secret with \
             `keepsake keygen` and export it as KEEPSAKE_SECRET"
        );
        let err = crate::middleware::ConfigError::from(KeyError::InvalidEnv {
            var: SECRET_VAR.to_owned(),
            position: None,
            source: Box::new(KeyError::NotRandom),
        });
        assert_eq!(
            format!("{err:?}"),
            format!(
                "Key: the environment variable KEEPSAKE_SECRET does not hold a valid secret: {}",
                KeyError::NotRandom
            )
        );
    }

    #[test]
    fn length_limits() {
        assert_eq!(
            Key::from_bytes(&[0; 31]),
            Err(KeyError::TooShort { len: 31 })
        );
        assert!(Key::from_bytes(&[0; 32]).is_ok());
        assert!(Key::from_bytes(&[0; MAX_SECRET_LEN]).is_ok());
        assert_eq!(
            Key::from_bytes(&[0; MAX_SECRET_LEN + 1]),
            Err(KeyError::TooLong {
                len: MAX_SECRET_LEN + 1
            })
        );
    }

    #[test]
    fn base64_spellings() {
        let key = Key::from_bytes(&(0u8..40).collect::<Vec<_>>()).unwrap();
        let bytes: Vec<u8> = (0u8..40).collect();
        use base64_simd::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
        for text in [
            STANDARD.encode_to_string(&bytes),
            STANDARD_NO_PAD.encode_to_string(&bytes),
            URL_SAFE.encode_to_string(&bytes),
            URL_SAFE_NO_PAD.encode_to_string(&bytes),
            format!("  {}\n", STANDARD.encode_to_string(&bytes)),
        ] {
            assert_eq!(Key::from_base64(&text).as_ref(), Ok(&key), "{text}");
        }
        assert_eq!(Key::from_base64(""), Err(KeyError::TooShort { len: 0 }));
        assert_eq!(Key::from_base64("a+b_c"), Err(KeyError::NotBase64));
    }

    #[test]
    fn subkeys_differ_by_purpose_namespace_and_app() {
        let key = Key::from_bytes(&[3; 32]).unwrap();
        let mut seen = std::collections::HashSet::new();
        for app in ["", "a", "b"] {
            for purpose in ["HMAC-SHA256 sign", "AES-256-GCM-SIV seal"] {
                for namespace in [Namespace::Local, Namespace::Shared] {
                    let app = if namespace == Namespace::Shared {
                        ""
                    } else {
                        app
                    };
                    let info = format!(
                        "keepsake v1 {purpose} namespace={namespace} app={}:{app}",
                        app.len()
                    );
                    let mut out = [0u8; 32];
                    key.expand(info.as_bytes(), &mut out);
                    seen.insert(out);
                }
            }
        }
        // 3 apps x 2 purposes local + 2 purposes shared (shared ignores the app).
        assert_eq!(seen.len(), 3 * 2 + 2);
    }
}
