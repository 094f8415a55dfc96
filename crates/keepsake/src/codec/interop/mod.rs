//! Flask, Starlette and Django session cookies, read and written exactly as
//! those frameworks do (feature `interop`).
//!
//! With the same secret key, a keepsake service reads the session a Python
//! app set and writes one the Python app accepts, so a visitor logged in on
//! one is logged in on the other. Each [`Framework`]'s default session
//! cookie is supported:
//!
//! | framework | cookie value | key | serializer |
//! |---|---|---|---|
//! | Flask (`SecureCookieSessionInterface`) | `[.]b64url(json)` `.` `b64url(ts)` `.` `b64url(HMAC-SHA1)` | HMAC-SHA1(secret, `cookie-session`) | tagged JSON, sorted keys, `(",", ":")` |
//! | Starlette (`SessionMiddleware`) | `b64(json)` `.` `b64url(ts)` `.` `b64url(HMAC-SHA1)` | SHA1(`itsdangerous.Signer` `signer` secret) | JSON, insertion order, `(", ", ": ")` |
//! | Django (`signed_cookies`) | `[.]b64url(json)` `:` `base62(ts)` `:` `b64url(HMAC-SHA256)` | SHA256(salt `signer` secret) | JSON, insertion order, `(",", ":")` |
//!
//! `b64url` is URL-safe base64 without padding, `b64` standard padded
//! base64, `ts` the issue time in Unix seconds (big-endian bytes without
//! leading zeros for itsdangerous, base 62 for Django). A leading `.` marks a
//! zlib-compressed payload: Flask and Django compress with zlib's default
//! level and keep the result only when it is at least two bytes shorter.
//! This module compresses with the C zlib, so its values are byte for byte
//! the ones Python makes. All three write JSON with `ensure_ascii=True`
//! (non-ASCII as `\uXXXX`), which [`PyValue`] values are written with too.
//!
//! # What is checked when reading
//!
//! | | Flask | Starlette | Django |
//! |---|---|---|---|
//! | keys tried | secret, then `SECRET_KEY_FALLBACKS` last to first | secret (keepsake also tries fallbacks) | secret, then `SECRET_KEY_FALLBACKS` in order |
//! | max age (default) | `PERMANENT_SESSION_LIFETIME` (31 days) | `max_age` (14 days; `None`: no check) | `SESSION_COOKIE_AGE` (14 days) |
//! | issued in the future | refused | refused (unless no max age) | accepted |
//! | signed payload that does not decode | the app answers 500 | the app answers 500 | empty session |
//!
//! An empty secret key, current or fallback, is never used: anyone can sign
//! with one (Flask would verify with an empty fallback key). A codec with
//! one signs and verifies nothing ([`InteropCodec::has_empty_key`]).
//!
//! Every failure is an [`InteropDecodeError`]; nothing panics, whatever the
//! input. A framework answers each failure with an empty session, except
//! [`InteropDecodeError::BadPayload`] as the table says. keepsake never
//! writes a value its framework cannot read back: what it cannot represent
//! is an [`InteropEncodeError`].
//!
//! # Example
//!
//! ```
//! use keepsake::codec::interop::{Framework, InteropCodec, InteropDecodeError, PyDict, PyValue};
//!
//! // A cookie a Flask app with SECRET_KEY = "dev-secret-key-0123456789" set at 1700000000.
//! let cookie = "eyJ1c2VyX2lkIjo0Mn0.ZVPxAA.URDB51yliVaCe0MfFjl9pAk8TrE";
//! let flask = InteropCodec::new(Framework::Flask, "dev-secret-key-0123456789");
//! let opened = flask.decode(cookie, 1_700_000_060)?;
//! assert_eq!(opened.session().get("user_id"), Some(&PyValue::Int(42)));
//! assert_eq!(opened.issued_at(), 1_700_000_000);
//!
//! // Writing the same session at the same time gives the same cookie.
//! let session: PyDict = [("user_id", 42)].into_iter().collect();
//! assert_eq!(flask.encode(&session, 1_700_000_000)?, cookie);
//!
//! // Past PERMANENT_SESSION_LIFETIME, or with another key, it is refused.
//! assert!(matches!(flask.decode(cookie, 1_700_000_000 + 31 * 86_400 + 1), Err(InteropDecodeError::Expired { .. })));
//! let other = InteropCodec::new(Framework::Flask, "another key");
//! assert_eq!(other.decode(cookie, 1_700_000_000), Err(InteropDecodeError::BadSignature));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod b64;
mod flask;
mod json;
mod record;
mod signing;
mod value;

use std::{fmt, str::FromStr};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use self::signing::Derivation;
pub use self::value::{PyDict, PyValue};
use super::{KeyUsed, MAX_COOKIE_SIZE};
use crate::store::{Id, Record};

/// Largest payload decompressed from a cookie, in bytes. A 4 KB cookie can
/// hold at most about 4 MB of zlib data; anything near that is an attack.
pub const MAX_DECOMPRESSED_LEN: usize = 256 * 1024;

/// A Python web framework whose session cookie keepsake reads and writes.
///
/// # Example
///
/// ```
/// use keepsake::codec::interop::Framework;
///
/// assert_eq!("django".parse::<Framework>(), Ok(Framework::Django));
/// assert_eq!(Framework::Flask.cookie_name(), "session");
/// assert_eq!(Framework::Django.cookie_name(), "sessionid");
/// assert_eq!(Framework::Starlette.default_max_age(), Some(14 * 86_400));
/// assert_eq!(Framework::Starlette.to_string(), "starlette");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framework {
    /// Flask's default `SecureCookieSessionInterface` (itsdangerous
    /// `URLSafeTimedSerializer`, salt `cookie-session`, tagged JSON).
    Flask,
    /// Starlette's (and FastAPI's) `SessionMiddleware` (itsdangerous
    /// `TimestampSigner`, standard base64 JSON).
    Starlette,
    /// Django's `django.contrib.sessions.backends.signed_cookies`
    /// (`django.core.signing`, HMAC-SHA256, base62 timestamp).
    Django,
}

impl Framework {
    /// Every framework, in a fixed order.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(keepsake::codec::interop::Framework::ALL.len(), 3);
    /// ```
    pub const ALL: [Self; 3] = [Self::Flask, Self::Starlette, Self::Django];

    /// The lowercase name.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(keepsake::codec::interop::Framework::Flask.as_str(), "flask");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Flask => "flask",
            Self::Starlette => "starlette",
            Self::Django => "django",
        }
    }

    /// The framework's default session cookie name.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(keepsake::codec::interop::Framework::Starlette.cookie_name(), "session");
    /// ```
    pub const fn cookie_name(self) -> &'static str {
        match self {
            Self::Flask | Self::Starlette => "session",
            Self::Django => "sessionid",
        }
    }

    /// The framework's default signing salt.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(keepsake::codec::interop::Framework::Flask.default_salt(), "cookie-session");
    /// ```
    pub const fn default_salt(self) -> &'static str {
        match self {
            Self::Flask => "cookie-session",
            Self::Starlette => "itsdangerous.Signer",
            Self::Django => "django.contrib.sessions.backends.signed_cookies",
        }
    }

    /// The framework's default maximum age on read, in seconds: Flask's
    /// `PERMANENT_SESSION_LIFETIME` (31 days), Starlette's `max_age` and
    /// Django's `SESSION_COOKIE_AGE` (14 days each).
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(keepsake::codec::interop::Framework::Flask.default_max_age(), Some(31 * 86_400));
    /// ```
    pub const fn default_max_age(self) -> Option<u64> {
        match self {
            Self::Flask => Some(31 * 86_400),
            Self::Starlette | Self::Django => Some(14 * 86_400),
        }
    }

    fn derivation(self) -> Derivation {
        match self {
            Self::Flask => Derivation::Hmac,
            Self::Starlette => Derivation::DjangoConcatSha1,
            Self::Django => Derivation::DjangoSha256,
        }
    }
}

impl fmt::Display for Framework {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`Framework`] from text.
///
/// # Example
///
/// ```
/// let err = "rails".parse::<keepsake::codec::interop::Framework>().unwrap_err();
/// assert_eq!(err.to_string(), "unknown framework \"rails\" (expected `flask`, `starlette` or `django`)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown framework {0:?} (expected `flask`, `starlette` or `django`)")]
pub struct ParseFrameworkError(String);

impl FromStr for Framework {
    type Err = ParseFrameworkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|framework| framework.as_str() == s)
            .ok_or_else(|| ParseFrameworkError(s.to_owned()))
    }
}

/// Why a session could not be written as a framework's cookie.
///
/// # Example
///
/// ```
/// use keepsake::codec::interop::{Framework, InteropCodec, InteropEncodeError, PyDict, PyValue};
///
/// let session: PyDict = [("b", PyValue::Bytes(vec![1]))].into_iter().collect();
/// let django = InteropCodec::new(Framework::Django, "k");
/// assert_eq!(
///     django.encode(&session, 0),
///     Err(InteropEncodeError::Unsupported { framework: Framework::Django, type_name: "bytes" }),
/// );
/// // Flask has a tag for bytes.
/// assert!(InteropCodec::new(Framework::Flask, "k").encode(&session, 0).is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InteropEncodeError {
    /// The session holds a type the framework's serializer cannot write.
    #[error("{framework} sessions cannot hold a Python {type_name} (it has no JSON form there)")]
    Unsupported {
        /// The framework.
        framework: Framework,
        /// The Python type.
        type_name: &'static str,
    },
    /// A datetime outside the years 100 to 9999, which Flask's HTTP-date
    /// tag cannot carry (Python reads years below 100 as 19xx or 20xx).
    #[error("a datetime in the session is outside the years 100 to 9999 Flask can carry")]
    DateOutOfRange,
    /// The session is nested deeper than the 128 levels keepsake reads
    /// back (Python reads a few hundred; sessions never come near either).
    #[error("the session is nested deeper than the 128 levels keepsake reads back")]
    TooDeep,
    /// The cookie (name plus value) would exceed [`MAX_COOKIE_SIZE`].
    #[error(
        "the cookie `{name}` would be {size} bytes (name plus value), over the {limit}-byte \
         limit browsers keep; store less in the session"
    )]
    TooLarge {
        /// The cookie name.
        name: String,
        /// Name plus value, in bytes.
        size: usize,
        /// The limit, [`MAX_COOKIE_SIZE`].
        limit: usize,
    },
    /// Data given as Flask tagged JSON is not valid: an object with one
    /// key that is a Flask tag must hold that tag's value. (No longer
    /// returned by [`InteropCodec::encode_record`], which reads every
    /// object of a record as a plain dict.)
    #[error("the session data is not valid Flask tagged JSON: {reason}")]
    InvalidTaggedJson {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// zlib failed (it does not, for inputs of cookie size).
    #[error("zlib could not compress the session")]
    Compression,
    /// The session's JSON is over [`MAX_DECOMPRESSED_LEN`]: it might
    /// compress into a cookie, but keepsake would refuse to read it back.
    #[error(
        "the session is {size} bytes of JSON, over the {limit} bytes keepsake reads back from \
         a compressed cookie; store less in the session"
    )]
    TooLargeToRead {
        /// The JSON's length, in bytes.
        size: usize,
        /// The limit, [`MAX_DECOMPRESSED_LEN`].
        limit: usize,
    },
    /// The codec's secret key, or one of its fallbacks, is empty (see
    /// [`InteropCodec::has_empty_key`]): anyone can sign with an empty key,
    /// so such a codec signs nothing.
    #[error(
        "the secret key or one of its fallbacks is empty: anyone could sign session cookies \
         with it, so keepsake signs and verifies nothing with this codec"
    )]
    EmptySecret,
}

/// Why a framework's cookie was refused.
///
/// The framework answers each with an empty session, except `BadPayload`
/// (see the [module documentation](self)); an HTTP service should treat them
/// all as "no session".
///
/// # Example
///
/// ```
/// use keepsake::codec::interop::{Framework, InteropCodec, InteropDecodeError};
///
/// let flask = InteropCodec::new(Framework::Flask, "k");
/// assert_eq!(flask.decode("garbage", 0), Err(InteropDecodeError::Malformed));
/// assert_eq!(flask.decode("a.b.c", 0), Err(InteropDecodeError::BadSignature));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InteropDecodeError {
    /// Not a value of this layout: a separator or the timestamp is missing
    /// or unreadable.
    #[error("the value is malformed (not a session cookie of this framework)")]
    Malformed,
    /// No key verified the signature: tampered with, made with another key
    /// or salt, or made by another framework.
    #[error("the signature does not verify: tampered with, or made with another key or salt")]
    BadSignature,
    /// It verified, but it is older than the maximum age.
    #[error(
        "the session expired: issued at {issued_at}, older than the maximum age of {max_age} s"
    )]
    Expired {
        /// The issue time, Unix seconds.
        issued_at: u64,
        /// The maximum age, seconds.
        max_age: u64,
    },
    /// It verified, but its issue time is after `now` (Flask and Starlette
    /// refuse this; Django accepts it).
    #[error("the session was issued at {issued_at}, in the future")]
    IssuedInFuture {
        /// The issue time, Unix seconds (`u64::MAX` if beyond).
        issued_at: u64,
    },
    /// It verified, but the payload is not a session the framework reads:
    /// bad base64, bad zlib, not JSON, not a JSON object, a bad Flask tag.
    #[error("the value is signed correctly but its payload cannot be read: {reason}")]
    BadPayload {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// It verified and the framework reads its session, but keepsake cannot
    /// hold that session exactly: an integer beyond 128 bits (beyond 64 bits
    /// in a [`Record`], see [`InteropCodec::decode_record`]), a string with
    /// a lone UTF-16 surrogate, nesting deeper than 128 levels, or (in a
    /// [`Record`]) a `NaN` or infinite float. The session is the visitor's
    /// and valid: it must not be replaced, so a session layer refuses to use
    /// it (the handler gets an error) and leaves the cookie as it is.
    #[error(
        "the session is signed correctly and readable by the framework, but keepsake cannot \
         hold it exactly: {reason}"
    )]
    Unrepresentable {
        /// What keepsake cannot hold.
        reason: &'static str,
    },
    /// The value is longer than any cookie can be ([`MAX_COOKIE_SIZE`]).
    #[error("the value is {size} bytes, longer than any cookie ({limit} bytes)")]
    TooLarge {
        /// Length of the value, in bytes.
        size: usize,
        /// The limit, [`MAX_COOKIE_SIZE`].
        limit: usize,
    },
    /// The codec's secret key, or one of its fallbacks, is empty (see
    /// [`InteropCodec::has_empty_key`]): anyone can sign with an empty key,
    /// so such a codec verifies nothing. A misconfiguration, not a bad
    /// cookie.
    #[error(
        "the secret key or one of its fallbacks is empty: anyone could sign session cookies \
         with it, so keepsake signs and verifies nothing with this codec"
    )]
    EmptySecret,
}

/// A session cookie that verified: the session, its issue time and the key
/// that opened it.
///
/// # Example
///
/// ```
/// use keepsake::codec::{KeyUsed, interop::{Framework, InteropCodec, PyDict}};
///
/// let old = InteropCodec::new(Framework::Django, "old key");
/// let cookie = old.encode(&[("user_id", 7)].into_iter().collect(), 1_000)?;
/// let rotated = InteropCodec::new(Framework::Django, "new key").with_fallbacks(["old key"]);
/// let opened = rotated.decode(&cookie, 1_010)?;
/// assert_eq!(opened.key_used(), KeyUsed::Fallback { index: 0 });
/// assert_eq!(opened.issued_at(), 1_000);
/// assert_eq!(opened.into_session().len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    session: PyDict,
    issued_at: u64,
    key_used: KeyUsed,
}

impl Decoded {
    /// The session.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::codec::interop::{Framework, InteropCodec, PyValue};
    /// let codec = InteropCodec::new(Framework::Starlette, "k");
    /// let cookie = codec.encode(&[("a", 1)].into_iter().collect(), 5)?;
    /// assert_eq!(codec.decode(&cookie, 5)?.session().get("a"), Some(&PyValue::Int(1)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn session(&self) -> &PyDict {
        &self.session
    }

    /// The session, by value.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::codec::interop::{Framework, InteropCodec};
    /// let codec = InteropCodec::new(Framework::Flask, "k");
    /// let cookie = codec.encode(&[("a", 1)].into_iter().collect(), 5)?;
    /// assert_eq!(codec.decode(&cookie, 5)?.into_session().keys().collect::<Vec<_>>(), ["a"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_session(self) -> PyDict {
        self.session
    }

    /// The issue time in the cookie, Unix seconds (saturated to `0` and
    /// `u64::MAX`).
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::codec::interop::{Framework, InteropCodec, PyDict};
    /// let codec = InteropCodec::new(Framework::Django, "k");
    /// let cookie = codec.encode(&PyDict::new(), 1_234)?;
    /// assert_eq!(codec.decode(&cookie, 2_000)?.issued_at(), 1_234);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn issued_at(&self) -> u64 {
        self.issued_at
    }

    /// Which key verified it; for a fallback, write the session again.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::codec::{KeyUsed, interop::{Framework, InteropCodec, PyDict}};
    /// let codec = InteropCodec::new(Framework::Flask, "k");
    /// let cookie = codec.encode(&PyDict::new(), 1)?;
    /// assert_eq!(codec.decode(&cookie, 1)?.key_used(), KeyUsed::Current);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn key_used(&self) -> KeyUsed {
        self.key_used
    }
}

/// Reads and writes one framework's session cookies with its secret key.
///
/// The secret is the framework's `SECRET_KEY` (`secret_key` for Starlette)
/// exactly as the app configures it: the UTF-8 bytes of a `str`, or the raw
/// bytes of a `bytes` key. Cheap to clone; `Send + Sync`. `Debug` does not
/// show the keys.
///
/// An empty key, current or fallback, is never used: anyone can sign with
/// one. A codec made with one ([`has_empty_key`](Self::has_empty_key))
/// answers every [`encode`](Self::encode) and [`decode`](Self::decode) with
/// [`InteropEncodeError::EmptySecret`] or
/// [`InteropDecodeError::EmptySecret`], and
/// [`SessionLayer::with_interop`](crate::middleware::SessionLayer::with_interop)
/// refuses it when built. (Flask would verify with an empty fallback key;
/// Django never verifies with one.) [`serialize`](Self::serialize) and
/// [`deserialize`](Self::deserialize) use no key and work with any codec.
///
/// # Example
///
/// ```
/// use keepsake::codec::interop::{Framework, InteropCodec, PyDict, PyValue};
///
/// let django = InteropCodec::new(Framework::Django, "dev-secret-key-0123456789");
/// let mut session = PyDict::new();
/// session.insert("user_id", 42);
/// let cookie = django.encode(&session, 1_700_000_000)?;
/// assert_eq!(cookie, "eyJ1c2VyX2lkIjo0Mn0:1r31eq:PxFCfe1JCZW3LwEwWGDZkcjYQ_KGE-GF_NE4fJ0kbak");
/// assert_eq!(django.decode(&cookie, 1_700_000_001)?.session(), &session);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct InteropCodec {
    framework: Framework,
    secret: Vec<u8>,
    fallbacks: Vec<Vec<u8>>,
    salt: String,
    max_age: Option<u64>,
    cookie_name: String,
    /// Derived keys in the order they are tried, with what each one is
    /// (never an empty fallback).
    keys: Vec<(Vec<u8>, KeyUsed)>,
    /// Marks Flask's typed values in records (see [`record`]).
    mark_key: record::MarkKey,
    /// Cookies without `Max-Age` unless the session asks for one
    /// ([`with_browser_session`](Self::with_browser_session)).
    browser_session: bool,
    /// Re-issue the cookie on every request
    /// ([`with_refresh_each_request`](Self::with_refresh_each_request)).
    refresh_each_request: bool,
}

impl fmt::Debug for InteropCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InteropCodec")
            .field("framework", &self.framework)
            .field("fallbacks", &self.fallbacks.len())
            .field("salt", &self.salt)
            .field("max_age", &self.max_age)
            .field("cookie_name", &self.cookie_name)
            .field("browser_session", &self.browser_session)
            .field("refresh_each_request", &self.refresh_each_request)
            .finish_non_exhaustive()
    }
}

impl InteropCodec {
    /// A codec for `framework`'s session cookie with its default salt,
    /// maximum age, cookie name and cookie lifetime rules
    /// ([`browser_session`](Self::browser_session),
    /// [`refresh_each_request`](Self::refresh_each_request)), and no
    /// fallback keys. An empty `secret_key` makes a codec that signs and
    /// verifies nothing (see [`has_empty_key`](Self::has_empty_key)).
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::{Framework, InteropCodec};
    ///
    /// let codec = InteropCodec::new(Framework::Flask, b"raw bytes key");
    /// assert_eq!(codec.framework(), Framework::Flask);
    /// assert_eq!(codec.max_age(), Some(31 * 86_400));
    /// assert!(!format!("{codec:?}").contains("raw bytes key"));
    /// ```
    pub fn new(framework: Framework, secret_key: impl AsRef<[u8]>) -> Self {
        let mut codec = Self {
            framework,
            secret: secret_key.as_ref().to_vec(),
            fallbacks: Vec::new(),
            salt: framework.default_salt().to_owned(),
            max_age: framework.default_max_age(),
            cookie_name: framework.cookie_name().to_owned(),
            keys: Vec::new(),
            mark_key: [0; 32],
            browser_session: false,
            // Flask's `SESSION_REFRESH_EACH_REQUEST` is on by default;
            // Django's `SESSION_SAVE_EVERY_REQUEST` is off; Starlette has none.
            refresh_each_request: framework == Framework::Flask,
        };
        codec.derive_keys();
        codec
    }

    /// Whether the secret key or one of the fallback keys is empty. Such a
    /// codec signs and verifies nothing: [`encode`](Self::encode) and
    /// [`decode`](Self::decode) answer [`InteropEncodeError::EmptySecret`]
    /// and [`InteropDecodeError::EmptySecret`], and
    /// [`SessionLayer::with_interop`](crate::middleware::SessionLayer::with_interop)
    /// refuses it when built. Check it where the configuration is read, to
    /// refuse it there. (A list of keys read from text, such as
    /// `SECRET_KEY_FALLBACKS=old1,old2`, should drop its empty entries first:
    /// a trailing comma is not a key.)
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::{Framework, InteropCodec, InteropDecodeError, PyDict};
    ///
    /// assert!(!InteropCodec::new(Framework::Flask, "k").has_empty_key());
    /// let empty = InteropCodec::new(Framework::Flask, "");
    /// assert!(empty.has_empty_key());
    /// let rotated = InteropCodec::new(Framework::Django, "k").with_fallbacks(["old", ""]);
    /// assert!(rotated.has_empty_key());
    /// assert_eq!(rotated.decode("e30:1r31eq:x", 0), Err(InteropDecodeError::EmptySecret));
    /// assert!(empty.encode(&PyDict::new(), 0).is_err());
    /// ```
    pub fn has_empty_key(&self) -> bool {
        self.secret.is_empty() || self.fallbacks.iter().any(Vec::is_empty)
    }

    /// Also accepts cookies signed with these old keys, given in the order
    /// of the framework's `SECRET_KEY_FALLBACKS` setting. They are tried as
    /// the framework tries them (Flask last to first, Django in order;
    /// Starlette has no rotation, keepsake tries them in order). New cookies
    /// are always signed with the current key. An empty key among them
    /// makes a codec that signs and verifies nothing (see
    /// [`has_empty_key`](Self::has_empty_key)); it is never tried.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::{KeyUsed, interop::{Framework, InteropCodec, PyDict}};
    ///
    /// let cookie = InteropCodec::new(Framework::Flask, "old").encode(&PyDict::new(), 9)?;
    /// let codec = InteropCodec::new(Framework::Flask, "new").with_fallbacks(["older", "old"]);
    /// assert_eq!(codec.decode(&cookie, 9)?.key_used(), KeyUsed::Fallback { index: 1 });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_fallbacks<K: AsRef<[u8]>>(
        mut self,
        fallbacks: impl IntoIterator<Item = K>,
    ) -> Self {
        self.fallbacks = fallbacks.into_iter().map(|k| k.as_ref().to_vec()).collect();
        self.derive_keys();
        self
    }

    /// Sets the maximum age on read, in seconds (`None`: no check, as
    /// Starlette's `max_age=None`; Flask and Django always check).
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::{Framework, InteropCodec, PyDict};
    ///
    /// let codec = InteropCodec::new(Framework::Starlette, "k").with_max_age(Some(60));
    /// let cookie = codec.encode(&PyDict::new(), 0)?;
    /// assert!(codec.decode(&cookie, 60).is_ok());
    /// assert!(codec.decode(&cookie, 61).is_err());
    /// assert!(codec.with_max_age(None).decode(&cookie, 1 << 40).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_max_age(mut self, max_age: Option<u64>) -> Self {
        self.max_age = max_age;
        self
    }

    /// Uses another signing salt: Flask's `SecureCookieSessionInterface.salt`,
    /// or Django's `salt` argument of `signing.dumps` (e.g.
    /// `django.contrib.sessions.SessionStore` for the `session_data` column
    /// of the database backend).
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::{Framework, InteropCodec, PyDict};
    ///
    /// let codec = InteropCodec::new(Framework::Django, "dev-secret-key-0123456789")
    ///     .with_salt("django.contrib.sessions.SessionStore");
    /// assert_eq!(codec.salt(), "django.contrib.sessions.SessionStore");
    /// let data = codec.encode(&[("user_id", 42)].into_iter().collect(), 1_700_000_000)?;
    /// assert_eq!(data, "eyJ1c2VyX2lkIjo0Mn0:1r31eq:JStUbMvXVS1l2qOmwphebxDWypna63Qlwd_qO8b-xFI");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_salt(mut self, salt: impl Into<String>) -> Self {
        self.salt = salt.into();
        self.derive_keys();
        self
    }

    /// Uses another cookie name, for the size check on encode.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::{Framework, InteropCodec};
    ///
    /// let codec = InteropCodec::new(Framework::Flask, "k").with_cookie_name("app_session");
    /// assert_eq!(codec.cookie_name(), "app_session");
    /// ```
    #[must_use]
    pub fn with_cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// Whether cookies are browser-session cookies (no `Max-Age`: the
    /// browser forgets them when it closes) unless the session asks for a
    /// lifetime. Off by default. The signature's age is checked against
    /// [`max_age`](Self::max_age) either way.
    ///
    /// - Django: `SESSION_EXPIRE_AT_BROWSER_CLOSE = True`. A session's own
    ///   `_session_expiry` (Django's `set_expiry`) still decides for it:
    ///   `0` is a browser-session cookie, seconds or a date a `Max-Age`.
    /// - Starlette: a cookie without `Max-Age`, as `max_age=None` sends, but
    ///   with the age still checked (Starlette has no such setting; with
    ///   `max_age=None`, use `with_max_age(None)`, which sends none either).
    /// - Flask: changes nothing. Flask's cookie is a browser-session cookie
    ///   unless the session is permanent (its `_permanent` key), and then
    ///   lasts `PERMANENT_SESSION_LIFETIME`.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::{Framework, InteropCodec};
    ///
    /// let django = InteropCodec::new(Framework::Django, "k");
    /// assert!(!django.browser_session());
    /// assert!(django.with_browser_session(true).browser_session());
    /// ```
    #[must_use]
    pub fn with_browser_session(mut self, browser_session: bool) -> Self {
        self.browser_session = browser_session;
        self
    }

    /// Whether the cookie is issued again, at the time of the request, on
    /// every request whose session has data, even one that does not change
    /// it: the session then ends [`max_age`](Self::max_age) after the
    /// visitor's last request instead of after its last change.
    ///
    /// - Flask: `SESSION_REFRESH_EACH_REQUEST`, on by default, and as in
    ///   Flask only for a permanent session (a truthy `_permanent` key).
    /// - Django: `SESSION_SAVE_EVERY_REQUEST`, off by default.
    /// - Starlette: off by default (Starlette writes only a changed session;
    ///   it has no such setting).
    ///
    /// Otherwise only a request that changes the session writes its cookie:
    /// reading a session never extends it. (A cookie that only a fallback key
    /// verified is issued again under the current key with its original
    /// issue time, which extends nothing.)
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::{Framework, InteropCodec};
    ///
    /// assert!(InteropCodec::new(Framework::Flask, "k").refresh_each_request());
    /// assert!(!InteropCodec::new(Framework::Django, "k").refresh_each_request());
    /// let flask = InteropCodec::new(Framework::Flask, "k").with_refresh_each_request(false);
    /// assert!(!flask.refresh_each_request());
    /// ```
    #[must_use]
    pub fn with_refresh_each_request(mut self, refresh: bool) -> Self {
        self.refresh_each_request = refresh;
        self
    }

    /// Whether cookies are browser-session cookies unless the session asks
    /// for a lifetime (see [`with_browser_session`](Self::with_browser_session)).
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::codec::interop::{Framework, InteropCodec};
    /// assert!(!InteropCodec::new(Framework::Starlette, "k").browser_session());
    /// ```
    pub fn browser_session(&self) -> bool {
        self.browser_session
    }

    /// Whether the cookie is issued again on every request (see
    /// [`with_refresh_each_request`](Self::with_refresh_each_request)).
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::codec::interop::{Framework, InteropCodec};
    /// assert!(!InteropCodec::new(Framework::Starlette, "k").refresh_each_request());
    /// ```
    pub fn refresh_each_request(&self) -> bool {
        self.refresh_each_request
    }

    /// The framework.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::codec::interop::{Framework, InteropCodec};
    /// assert_eq!(InteropCodec::new(Framework::Django, "k").framework(), Framework::Django);
    /// ```
    pub fn framework(&self) -> Framework {
        self.framework
    }

    /// The maximum age on read, in seconds.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::codec::interop::{Framework, InteropCodec};
    /// assert_eq!(InteropCodec::new(Framework::Django, "k").max_age(), Some(1_209_600));
    /// ```
    pub fn max_age(&self) -> Option<u64> {
        self.max_age
    }

    /// The signing salt.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::codec::interop::{Framework, InteropCodec};
    /// assert_eq!(InteropCodec::new(Framework::Starlette, "k").salt(), "itsdangerous.Signer");
    /// ```
    pub fn salt(&self) -> &str {
        &self.salt
    }

    /// The cookie name.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::codec::interop::{Framework, InteropCodec};
    /// assert_eq!(InteropCodec::new(Framework::Django, "k").cookie_name(), "sessionid");
    /// ```
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    fn derive_keys(&mut self) {
        let derive =
            |secret: &[u8]| signing::derive(self.framework.derivation(), &self.salt, secret);
        let mut keys = vec![(derive(&self.secret), KeyUsed::Current)];
        // An empty key is never tried (and `has_empty_key` stops its use).
        let fallbacks = self
            .fallbacks
            .iter()
            .enumerate()
            .filter(|(_, secret)| !secret.is_empty());
        let ordered: Vec<_> = match self.framework {
            Framework::Flask => fallbacks.rev().collect(),
            Framework::Starlette | Framework::Django => fallbacks.collect(),
        };
        for (index, secret) in ordered {
            keys.push((derive(secret), KeyUsed::Fallback { index }));
        }
        self.keys = keys;
        self.mark_key = record::mark_key(&self.secret, self.framework.as_str(), &self.salt);
    }

    /// The session as the framework serializes it before compression and
    /// base64: Flask's tagged JSON with sorted keys, Starlette's and
    /// Django's JSON in insertion order, all ASCII.
    ///
    /// # Errors
    ///
    /// [`InteropEncodeError::Unsupported`], [`InteropEncodeError::DateOutOfRange`],
    /// [`InteropEncodeError::TooDeep`].
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::{Framework, InteropCodec, PyDict, PyValue};
    ///
    /// let session: PyDict = [("z", PyValue::from("\u{e9}")), ("a", PyValue::Tuple(vec![1.into()]))]
    ///     .into_iter()
    ///     .collect();
    /// let text = |f| InteropCodec::new(f, "k").serialize(&session);
    /// assert_eq!(text(Framework::Flask)?, r#"{"a":{" t":[1]},"z":"\u00e9"}"#);
    /// assert_eq!(text(Framework::Starlette)?, r#"{"z": "\u00e9", "a": [1]}"#);
    /// assert_eq!(text(Framework::Django)?, r#"{"z":"\u00e9","a":[1]}"#);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn serialize(&self, session: &PyDict) -> Result<String, InteropEncodeError> {
        // Checked before anything recurses into the values (the copy below,
        // the tagging, the writer), so that a value an app nested deeper
        // than the stack would hold is refused, not a stack overflow. The
        // session's values sit one level below the session itself.
        if session
            .values()
            .any(|value| value.nests_deeper_than(json::MAX_DEPTH - 1))
        {
            return Err(InteropEncodeError::TooDeep);
        }
        let value = PyValue::Dict(session.clone());
        let (value, style) = match self.framework {
            Framework::Flask => {
                let tagged = flask::tag(&value).map_err(|err| match err {
                    flask::TagError::DateOutOfRange => InteropEncodeError::DateOutOfRange,
                    flask::TagError::TooDeep => InteropEncodeError::TooDeep,
                })?;
                (tagged, json::Style::FLASK)
            }
            Framework::Starlette => (value, json::Style::STARLETTE),
            Framework::Django => (value, json::Style::DJANGO),
        };
        json::to_string(&value, style).map_err(|err| match err {
            json::WriteError::Unsupported(type_name) => InteropEncodeError::Unsupported {
                framework: self.framework,
                type_name,
            },
            json::WriteError::TooDeep => InteropEncodeError::TooDeep,
        })
    }

    /// Reads serialized session text as the framework's serializer does
    /// (for Flask, tagged JSON, untagged).
    ///
    /// # Errors
    ///
    /// [`InteropDecodeError::BadPayload`] if it is not JSON the framework
    /// reads, or not a JSON object.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::{Framework, InteropCodec, PyValue};
    ///
    /// let flask = InteropCodec::new(Framework::Flask, "k");
    /// let session = flask.deserialize(r#"{"t": {" t": [1, 2]}, "b": {" b": "dg=="}}"#)?;
    /// assert_eq!(session.get("t"), Some(&PyValue::Tuple(vec![1.into(), 2.into()])));
    /// assert_eq!(session.get("b"), Some(&PyValue::Bytes(b"v".to_vec())));
    /// assert!(flask.deserialize("[1, 2]").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn deserialize(&self, text: &str) -> Result<PyDict, InteropDecodeError> {
        let bad = |reason| InteropDecodeError::BadPayload { reason };
        let mut value = json::parse(text).map_err(|reason| {
            if json::is_keepsake_limit(reason) {
                InteropDecodeError::Unrepresentable { reason }
            } else {
                bad(reason)
            }
        })?;
        if self.framework == Framework::Flask {
            value = flask::untag(value).map_err(bad)?;
        }
        match value {
            PyValue::Dict(dict) => Ok(dict),
            _ => Err(bad("the session is not a JSON object")),
        }
    }

    /// The session as a JSON object, for code that keeps sessions as
    /// `serde_json` maps (such as keepsake's own sessions). The object is
    /// the one the framework serializes: for Flask its tagged JSON, so a
    /// tuple is `{" t": [...]}`, bytes `{" b": "<base64>"}` and so on, and
    /// [`session_from_json`](Self::session_from_json) gives the same
    /// session back.
    ///
    /// # Errors
    ///
    /// As [`serialize`](Self::serialize); also
    /// [`InteropEncodeError::Unsupported`] for `NaN` and infinite floats
    /// and for integers beyond 64 bits, which `serde_json` cannot hold
    /// exactly (they are never turned into something else).
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::{Framework, InteropCodec, PyDict, PyValue};
    ///
    /// let flask = InteropCodec::new(Framework::Flask, "k");
    /// let session: PyDict = [("pair", PyValue::Tuple(vec![1.into(), 2.into()]))].into_iter().collect();
    /// let json = flask.session_to_json(&session)?;
    /// assert_eq!(serde_json::Value::Object(json.clone()), serde_json::json!({"pair": {" t": [1, 2]}}));
    /// assert_eq!(flask.session_from_json(&json)?, session);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn session_to_json(
        &self,
        session: &PyDict,
    ) -> Result<serde_json::Map<String, serde_json::Value>, InteropEncodeError> {
        let text = self.serialize(session)?;
        // serde_json reads an integer beyond 64 bits as a float.
        if let Some(type_name) = session.values().find_map(beyond_serde_json) {
            return Err(InteropEncodeError::Unsupported {
                framework: self.framework,
                type_name,
            });
        }
        serde_json::from_str(&text).map_err(|_| InteropEncodeError::Unsupported {
            framework: self.framework,
            type_name: "float (NaN or infinite)",
        })
    }

    /// The session a JSON object stands for (see
    /// [`session_to_json`](Self::session_to_json)).
    ///
    /// # Errors
    ///
    /// [`InteropDecodeError::BadPayload`] for a bad Flask tag.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::{Framework, InteropCodec, PyValue};
    ///
    /// let mut json = serde_json::Map::new();
    /// json.insert("user".to_owned(), "ada".into());
    /// let session = InteropCodec::new(Framework::Django, "k").session_from_json(&json)?;
    /// assert_eq!(session.get("user"), Some(&PyValue::from("ada")));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn session_from_json(
        &self,
        json: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<PyDict, InteropDecodeError> {
        let text = serde_json::to_string(json).map_err(|_| InteropDecodeError::BadPayload {
            reason: "the JSON object cannot be written",
        })?;
        self.deserialize(&text)
    }

    /// Verifies a cookie as [`decode`](Self::decode) does and returns it as a
    /// keepsake session [`Record`] (a client-side session), with the key
    /// that opened it: created at the cookie's issue time, ending
    /// [`max_age`](Self::max_age) after it (an idle limit that a write
    /// moves, as does every request where the framework refreshes the
    /// cookie, see [`with_refresh_each_request`](Self::with_refresh_each_request);
    /// there is no absolute limit, as in the frameworks). The frameworks'
    /// cookies carry no session id, so the record gets a random one.
    ///
    /// The record's data is the session, every key included: Flask's
    /// `_permanent` (`session.permanent`) and Django's `_session_expiry`
    /// (its `set_expiry`) stay in the data, where the framework keeps them,
    /// and decide the cookie's lifetime whenever it is written, as in the
    /// framework. `persistent` says whether that cookie gets a `Max-Age`
    /// (for information; [`encode_record`](Self::encode_record) does not read
    /// it): for Flask, with a truthy `_permanent`; for Starlette, with a
    /// `max_age` and without [`browser_session`](Self::browser_session); for
    /// Django, unless `_session_expiry` is `0`, or there is none and
    /// `browser_session` is on.
    ///
    /// Every JSON object in the data is a plain dict, and
    /// [`encode_record`](Self::encode_record) writes it as one, whatever its
    /// keys (for Flask escaped as Flask's `TagDict` escapes a dict such as
    /// `{" m": ...}`), unless it carries a mark that verifies. Flask's typed
    /// values (tuple, bytes, `Markup`, UUID, datetime) are kept across a
    /// read and a write as their Flask tag plus a mark,
    /// `{" t": [1, 2], " mark": "..."}`: the mark is a MAC of the value under
    /// a key derived from this codec's secret key, framework and salt. So an
    /// object is written as a Flask type only if it is exactly a value that
    /// Flask itself put in a session cookie signed with this secret key: an
    /// object a handler makes up, or one whose content it changed, is a
    /// dict. The mark does not say which session, key or request the value
    /// came from: a marked object copied from elsewhere (another key,
    /// another visitor's session, client input that echoes session JSON
    /// back) is written as that same Flask value. Never store JSON objects
    /// taken from client input unchecked.
    ///
    /// # Errors
    ///
    /// As [`decode`](Self::decode); also
    /// [`InteropDecodeError::Unrepresentable`] for a session a record cannot
    /// hold exactly: `NaN` or infinite floats, integers beyond 64 bits.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::{Framework, InteropCodec, InteropDecodeError, PyDict, PyValue};
    ///
    /// let flask = InteropCodec::new(Framework::Flask, "k");
    /// let session: PyDict = [
    ///     ("_permanent", PyValue::Bool(true)),
    ///     ("user", "ada".into()),
    ///     ("pair", PyValue::Tuple(vec![1.into(), 2.into()])),
    /// ]
    /// .into_iter()
    /// .collect();
    /// let cookie = flask.encode(&session, 1_000)?;
    /// let (record, _) = flask.decode_record(&cookie, 1_010)?;
    /// assert_eq!(record.data["user"], "ada");
    /// assert_eq!(record.data["pair"][" t"], serde_json::json!([1, 2]));
    /// assert!(record.persistent && record.data["_permanent"] == true);
    /// assert_eq!((record.created_at, record.deadline()), (1_000, 1_000 + 31 * 86_400));
    /// // Written back, it is the same cookie: the tuple is still a tuple.
    /// assert_eq!(flask.encode_record(&record, 1_000)?, cookie);
    ///
    /// // An integer a record cannot hold exactly is an error, not a float.
    /// let big: PyDict = [("n", PyValue::Int(1 << 64))].into_iter().collect();
    /// let cookie = flask.encode(&big, 1_000)?;
    /// assert!(matches!(flask.decode_record(&cookie, 1_000), Err(InteropDecodeError::Unrepresentable { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode_record(
        &self,
        value: &str,
        now: u64,
    ) -> Result<(Record, KeyUsed), InteropDecodeError> {
        let opened = self.decode(value, now)?;
        let data = record::to_record(&opened.session, &self.mark_key)
            .map_err(|reason| InteropDecodeError::Unrepresentable { reason })?;
        let mut record = Record::new(Id::random(), opened.issued_at, self.max_age, u64::MAX);
        record.data = data;
        record.persistent = self.cookie_max_age(&record, opened.issued_at).is_some();
        Ok((record, opened.key_used))
    }

    /// Writes a keepsake session [`Record`] as the framework's cookie, issued
    /// at `now` (see [`decode_record`](Self::decode_record)). Every key of
    /// the data is written, Flask's `_permanent` and Django's
    /// `_session_expiry` included; every JSON object as a plain dict, except
    /// Flask's typed values with a mark that verifies. The id, the
    /// deadlines, `persistent`, the version and the user are not written:
    /// the frameworks' cookies have no place for them.
    ///
    /// # Errors
    ///
    /// As [`encode`](Self::encode).
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::{codec::interop::{Framework, InteropCodec, PyValue}, store::{Id, Record}};
    ///
    /// let mut record = Record::new(Id::random(), 1_700_000_000, None, 3_600);
    /// record.data.insert("user_id".to_owned(), 42.into());
    /// let starlette = InteropCodec::new(Framework::Starlette, "dev-secret-key-0123456789");
    /// assert_eq!(
    ///     starlette.encode_record(&record, 1_700_000_000)?,
    ///     "eyJ1c2VyX2lkIjogNDJ9.ZVPxAA.r4ggNpoIhK1U4t1X8zVv2kldEAc",
    /// );
    ///
    /// // A handler's dict that looks like a Flask tag stays a dict.
    /// let flask = InteropCodec::new(Framework::Flask, "k");
    /// record.data.insert("prefs".to_owned(), serde_json::json!({" m": "<script>"}));
    /// let cookie = flask.encode_record(&record, 1_700_000_000)?;
    /// let prefs = flask.decode(&cookie, 1_700_000_000)?.session().get("prefs").cloned();
    /// assert_eq!(prefs, Some(PyValue::Dict([(" m", "<script>")].into_iter().collect())));
    ///
    /// // Flask's `session.permanent = True` is the `_permanent` key.
    /// record.data.insert("_permanent".to_owned(), true.into());
    /// let cookie = flask.encode_record(&record, 1_700_000_000)?;
    /// let session = flask.decode(&cookie, 1_700_000_000)?.into_session();
    /// assert_eq!(session.get("_permanent"), Some(&PyValue::Bool(true)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn encode_record(&self, record: &Record, now: u64) -> Result<String, InteropEncodeError> {
        let flask = self.framework == Framework::Flask;
        let session = record::from_record(&record.data, &self.mark_key, flask);
        self.encode(&session, now)
    }

    /// Whether Flask reads `data` as a permanent session: a truthy
    /// `_permanent` key (`session.permanent`).
    fn flask_permanent(&self, data: &serde_json::Map<String, serde_json::Value>) -> bool {
        data.get("_permanent")
            .is_some_and(|value| py_truthy(&record::from_json(value, &self.mark_key, true)))
    }

    /// The `Max-Age` of the cookie that carries `record`, written at `now`,
    /// as the framework sets it, from the session's data and the codec
    /// (never from the record's deadlines or `persistent`): Flask: the
    /// codec's `max_age` (`PERMANENT_SESSION_LIFETIME`) for a permanent
    /// session, else none; Starlette: `max_age`, unless `browser_session`;
    /// Django: the session's `_session_expiry` (seconds, or an ISO date; `0`
    /// none), else none with `browser_session`, else `SESSION_COOKIE_AGE`
    /// (the codec's maximum age).
    pub(crate) fn cookie_max_age(&self, record: &Record, now: u64) -> Option<u64> {
        match self.framework {
            Framework::Flask => self.max_age.filter(|_| self.flask_permanent(&record.data)),
            Framework::Starlette => self.max_age.filter(|_| !self.browser_session),
            Framework::Django => {
                let expiry = record.data.get("_session_expiry");
                if django_expires_at_browser_close(expiry, self.browser_session) {
                    return None;
                }
                match expiry {
                    // Django writes `int(max_age)`; a negative one ends the
                    // cookie. (`as` truncates toward zero and saturates.)
                    Some(serde_json::Value::Number(n)) if n.as_f64() != Some(0.0) => {
                        Some(n.as_f64().map_or(0, |secs| secs.max(0.0) as u64))
                    }
                    Some(serde_json::Value::String(date)) if !date.is_empty() => {
                        match parse_iso_datetime(date) {
                            Some(at) => Some(u64::try_from(at - i128::from(now)).unwrap_or(0)),
                            None => self.max_age,
                        }
                    }
                    _ => self.max_age,
                }
            }
        }
    }

    /// Whether a request that does not change `record`'s session still
    /// issues its cookie again, at the time of the request: with
    /// [`refresh_each_request`](Self::refresh_each_request), for a session
    /// with data (for Flask, only a permanent one).
    pub(crate) fn refreshes_every_request(&self, record: &Record) -> bool {
        self.refresh_each_request
            && !record.data.is_empty()
            && (self.framework != Framework::Flask || self.flask_permanent(&record.data))
    }

    /// The value and `Max-Age` of `record`'s cookie issued again under the
    /// current key without extending the session: signed at its original
    /// issue time (`created_at`, which [`decode_record`](Self::decode_record)
    /// sets to the cookie's), with what is left at `now` of the `Max-Age`
    /// the framework gave it then (at least a second; none stays none and
    /// `0` stays `0`).
    pub(crate) fn reissue(
        &self,
        record: &Record,
        now: u64,
    ) -> Result<(String, Option<u64>), InteropEncodeError> {
        let issued_at = record.created_at;
        let value = self.encode_record(record, issued_at)?;
        let elapsed = now.saturating_sub(issued_at);
        let max_age = self
            .cookie_max_age(record, issued_at)
            .map(|full| match full {
                0 => 0,
                full => full.saturating_sub(elapsed).max(1),
            });
        Ok((value, max_age))
    }

    /// Writes `session` as the framework's cookie value, issued at `now`
    /// (Unix seconds), signed with the current key: byte for byte what the
    /// framework writes for the same session at the same time.
    ///
    /// # Errors
    ///
    /// See [`serialize`](Self::serialize); also
    /// [`InteropEncodeError::TooLarge`] over [`MAX_COOKIE_SIZE`], and
    /// [`InteropEncodeError::EmptySecret`] for a codec with an empty key.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::{Framework, InteropCodec, PyDict};
    ///
    /// let session: PyDict = [("user_id", 42)].into_iter().collect();
    /// let starlette = InteropCodec::new(Framework::Starlette, "dev-secret-key-0123456789");
    /// assert_eq!(
    ///     starlette.encode(&session, 1_700_000_000)?,
    ///     "eyJ1c2VyX2lkIjogNDJ9.ZVPxAA.r4ggNpoIhK1U4t1X8zVv2kldEAc",
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn encode(&self, session: &PyDict, now: u64) -> Result<String, InteropEncodeError> {
        if self.has_empty_key() {
            return Err(InteropEncodeError::EmptySecret);
        }
        let text = self.serialize(session)?;
        let key = &self.keys[0].0;
        let value = match self.framework {
            Framework::Flask => signing::its_sign(key, &compressed_payload(text.as_bytes())?, now),
            Framework::Starlette => {
                signing::its_sign(key, &b64::encode_standard(text.as_bytes()), now)
            }
            Framework::Django => {
                signing::django_sign(key, &compressed_payload(text.as_bytes())?, now)
            }
        };
        let size = self.cookie_name.len() + value.len();
        if size > MAX_COOKIE_SIZE {
            return Err(InteropEncodeError::TooLarge {
                name: self.cookie_name.clone(),
                size,
                limit: MAX_COOKIE_SIZE,
            });
        }
        Ok(value)
    }

    /// Verifies and reads a framework's cookie value at time `now` (Unix
    /// seconds), as the framework would: the current key, then the
    /// fallbacks, then the maximum age, then the payload.
    ///
    /// # Errors
    ///
    /// An [`InteropDecodeError`] saying why ([`InteropDecodeError::EmptySecret`]
    /// for a codec with an empty key, whatever the value). Never panics,
    /// whatever the input.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::{Framework, InteropCodec, InteropDecodeError, PyDict};
    ///
    /// let django = InteropCodec::new(Framework::Django, "k");
    /// let cookie = django.encode(&PyDict::new(), 1_000)?;
    /// // Django accepts a cookie from the future; Flask and Starlette do not.
    /// assert!(django.decode(&cookie, 990).is_ok());
    /// let flask = InteropCodec::new(Framework::Flask, "k");
    /// let cookie = flask.encode(&PyDict::new(), 1_000)?;
    /// assert_eq!(flask.decode(&cookie, 990), Err(InteropDecodeError::IssuedInFuture { issued_at: 1_000 }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode(&self, value: &str, now: u64) -> Result<Decoded, InteropDecodeError> {
        if self.has_empty_key() {
            return Err(InteropDecodeError::EmptySecret);
        }
        if value.len() > MAX_COOKIE_SIZE {
            return Err(InteropDecodeError::TooLarge {
                size: value.len(),
                limit: MAX_COOKIE_SIZE,
            });
        }
        let keys: Vec<&[u8]> = self.keys.iter().map(|(key, _)| key.as_slice()).collect();
        let (position, payload, issued_at) = match self.framework {
            Framework::Flask | Framework::Starlette => {
                let (position, payload, issued_at) = signing::its_verify(&keys, value)?;
                if let Some(max_age) = self.max_age {
                    if issued_at > now {
                        return Err(InteropDecodeError::IssuedInFuture { issued_at });
                    }
                    if now - issued_at > max_age {
                        return Err(InteropDecodeError::Expired { issued_at, max_age });
                    }
                }
                (position, payload, issued_at)
            }
            Framework::Django => {
                let (position, payload, issued_at) = signing::django_verify(&keys, value)?;
                let saturated = u64::try_from(issued_at.max(0)).unwrap_or(u64::MAX);
                if let Some(max_age) = self.max_age
                    && i128::from(now) - issued_at > i128::from(max_age)
                {
                    return Err(InteropDecodeError::Expired {
                        issued_at: saturated,
                        max_age,
                    });
                }
                (position, payload, saturated)
            }
        };
        let text = payload_text(self.framework, payload)?;
        Ok(Decoded {
            session: self.deserialize(&text)?,
            issued_at,
            key_used: self.keys[position].1,
        })
    }
}

/// The type name of what `serde_json` cannot hold exactly in `value`: an
/// integer beyond 64 bits (it would read one as a float).
fn beyond_serde_json(value: &PyValue) -> Option<&'static str> {
    match value {
        PyValue::Int(n) if i64::try_from(*n).is_err() && u64::try_from(*n).is_err() => {
            Some("int beyond 64 bits")
        }
        PyValue::List(items) | PyValue::Tuple(items) => items.iter().find_map(beyond_serde_json),
        PyValue::Dict(dict) => dict.values().find_map(beyond_serde_json),
        _ => None,
    }
}

/// Django's `get_expire_at_browser_close()` for a session whose
/// `_session_expiry` is `expiry`: the setting
/// `SESSION_EXPIRE_AT_BROWSER_CLOSE` (`setting`) without one (or `null`),
/// else `_session_expiry == 0` (Python's `==`, for which `False == 0`).
fn django_expires_at_browser_close(expiry: Option<&serde_json::Value>, setting: bool) -> bool {
    match expiry {
        None | Some(serde_json::Value::Null) => setting,
        Some(serde_json::Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(serde_json::Value::Bool(b)) => !b,
        Some(_) => false,
    }
}

/// Python's truth value of `value` (`bool(value)`).
fn py_truthy(value: &PyValue) -> bool {
    match value {
        PyValue::None => false,
        PyValue::Bool(b) => *b,
        PyValue::Int(n) => *n != 0,
        PyValue::Float(x) => *x != 0.0,
        PyValue::Str(text) | PyValue::Markup(text) => !text.is_empty(),
        PyValue::Bytes(bytes) => !bytes.is_empty(),
        PyValue::List(items) | PyValue::Tuple(items) => !items.is_empty(),
        PyValue::Dict(dict) => !dict.is_empty(),
        PyValue::Uuid(_) | PyValue::DateTime(_) => true,
    }
}

/// Unix seconds of the `datetime.isoformat()` Django's `set_expiry` stores
/// (`2024-02-29T13:45:30.123456+00:00`; microseconds dropped; a naive one,
/// of `USE_TZ = False`, is taken as UTC).
fn parse_iso_datetime(text: &str) -> Option<i128> {
    use time::{PrimitiveDateTime, UtcOffset, macros::format_description};
    // The offset, if any, starts at the first sign or `Z` after the time.
    let split = text
        .get(19..)?
        .find(['+', '-', 'Z'])
        .map_or(text.len(), |at| at + 19);
    let (local, offset) = text.split_at(split);
    let local = PrimitiveDateTime::parse(
        local,
        format_description!(
            "[year]-[month]-[day][first [T][ ]][hour]:[minute]:[second][optional [.[subsecond]]]"
        ),
    )
    .ok()?;
    let offset = match offset {
        "" | "Z" => UtcOffset::UTC,
        offset => UtcOffset::parse(
            offset,
            format_description!(
                "[offset_hour sign:mandatory]:[offset_minute][optional [:[offset_second]]]"
            ),
        )
        .ok()?,
    };
    Some(i128::from(local.assume_offset(offset).unix_timestamp()))
}

/// zlib at Python's default level, kept only when at least two bytes
/// shorter (itsdangerous' and Django's rule), then URL-safe base64 with a
/// leading `.` when compressed.
fn compressed_payload(raw: &[u8]) -> Result<String, InteropEncodeError> {
    // What `decompress` would refuse is never written.
    if raw.len() > MAX_DECOMPRESSED_LEN {
        return Err(InteropEncodeError::TooLargeToRead {
            size: raw.len(),
            limit: MAX_DECOMPRESSED_LEN,
        });
    }
    let mut compressor = Compress::new(Compression::new(6), true);
    let mut compressed = Vec::with_capacity(raw.len() + raw.len() / 100 + 64);
    match compressor.compress_vec(raw, &mut compressed, FlushCompress::Finish) {
        Ok(Status::StreamEnd) => {}
        _ => return Err(InteropEncodeError::Compression),
    }
    Ok(if compressed.len() + 1 < raw.len() {
        format!(".{}", b64::encode_url(&compressed))
    } else {
        b64::encode_url(raw)
    })
}

/// `zlib.decompress`, bounded by [`MAX_DECOMPRESSED_LEN`]. Data after the
/// end of the zlib stream is ignored, as Python ignores it.
fn decompress(data: &[u8]) -> Result<Vec<u8>, InteropDecodeError> {
    let bad = InteropDecodeError::BadPayload {
        reason: "the payload is not valid zlib data",
    };
    let mut decompressor = Decompress::new(true);
    let mut out = Vec::new();
    loop {
        let consumed = usize::try_from(decompressor.total_in()).unwrap_or(usize::MAX);
        let input = data.get(consumed..).unwrap_or_default();
        let before = (decompressor.total_in(), out.len());
        out.reserve(4096);
        let status = decompressor
            .decompress_vec(input, &mut out, FlushDecompress::None)
            .map_err(|_| bad.clone())?;
        if out.len() > MAX_DECOMPRESSED_LEN {
            return Err(InteropDecodeError::BadPayload {
                reason: "the payload decompresses to more than keepsake reads",
            });
        }
        if status == Status::StreamEnd {
            return Ok(out);
        }
        if before == (decompressor.total_in(), out.len()) {
            // No progress with room to write: the stream is truncated.
            return Err(bad);
        }
    }
}

/// The serialized text inside a verified payload segment.
fn payload_text(framework: Framework, payload: &str) -> Result<String, InteropDecodeError> {
    let bad = |reason| InteropDecodeError::BadPayload { reason };
    let bytes = match framework {
        Framework::Flask | Framework::Django => {
            let (compressed, body) = match payload.strip_prefix('.') {
                Some(body) => (true, body),
                None => (false, payload),
            };
            let raw = b64::decode_lenient(body, b64::Alphabet::UrlSafe)
                .ok_or(bad("the payload is not base64"))?;
            if compressed { decompress(&raw)? } else { raw }
        }
        Framework::Starlette => b64::decode_standard_padded(payload)
            .ok_or(bad("the payload is not padded standard base64"))?,
    };
    match framework {
        // Django reads the JSON as Latin-1 (what it writes is ASCII).
        Framework::Django => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
        Framework::Flask => String::from_utf8(bytes).map_err(|_| bad("the payload is not UTF-8")),
        // Starlette hands bytes to json.loads, which skips a UTF-8 BOM.
        Framework::Starlette => {
            let body = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
            String::from_utf8(body.to_vec()).map_err(|_| bad("the payload is not UTF-8"))
        }
    }
}

/// What a framework's cookie shows without a key: nothing here is verified.
///
/// # Example
///
/// ```
/// use keepsake::codec::interop::{self, Framework, PyValue};
///
/// let seen = interop::inspect("eyJ1c2VyX2lkIjogNDJ9.ZVPxAA.r4ggNpoIhK1U4t1X8zVv2kldEAc")?;
/// assert_eq!(seen.framework(), Framework::Starlette);
/// assert_eq!(seen.issued_at(), 1_700_000_000);
/// assert!(!seen.compressed());
/// assert_eq!(seen.session().get("user_id"), Some(&PyValue::Int(42)));
/// # Ok::<(), interop::InteropDecodeError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Inspected {
    framework: Framework,
    issued_at: u64,
    compressed: bool,
    session: PyDict,
}

impl Inspected {
    /// The framework the value's layout belongs to.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::codec::interop::{self, Framework};
    /// let seen = interop::inspect("eyJhIjoxfQ:1r31eq:-3KdgnS5Tm2deL8MUapvh74RRgtaSPOXSs39zutnd0s")?;
    /// assert_eq!(seen.framework(), Framework::Django);
    /// # Ok::<(), interop::InteropDecodeError>(())
    /// ```
    pub fn framework(&self) -> Framework {
        self.framework
    }

    /// The issue time (unverified), Unix seconds.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::codec::interop;
    /// let seen = interop::inspect("eyJhIjoxfQ:1r31eq:-3KdgnS5Tm2deL8MUapvh74RRgtaSPOXSs39zutnd0s")?;
    /// assert_eq!(seen.issued_at(), 1_700_000_000);
    /// # Ok::<(), interop::InteropDecodeError>(())
    /// ```
    pub fn issued_at(&self) -> u64 {
        self.issued_at
    }

    /// Whether the payload was zlib-compressed.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::codec::interop;
    /// let seen = interop::inspect("eyJhIjoxfQ:1r31eq:-3KdgnS5Tm2deL8MUapvh74RRgtaSPOXSs39zutnd0s")?;
    /// assert!(!seen.compressed());
    /// # Ok::<(), interop::InteropDecodeError>(())
    /// ```
    pub fn compressed(&self) -> bool {
        self.compressed
    }

    /// The session (unverified).
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::codec::interop::{self, PyValue};
    /// let seen = interop::inspect("eyJhIjoxfQ:1r31eq:-3KdgnS5Tm2deL8MUapvh74RRgtaSPOXSs39zutnd0s")?;
    /// assert_eq!(seen.session().get("a"), Some(&PyValue::Int(1)));
    /// # Ok::<(), interop::InteropDecodeError>(())
    /// ```
    pub fn session(&self) -> &PyDict {
        &self.session
    }
}

/// Takes a Flask, Starlette or Django session cookie apart without a key,
/// telling the three apart by their layout (Django's `:` separators,
/// Starlette's padded standard base64 and spaced JSON, Flask's compact
/// sorted JSON). Nothing is verified.
///
/// # Errors
///
/// [`InteropDecodeError::Malformed`] if the value fits none of the layouts,
/// [`InteropDecodeError::BadPayload`] if its payload does not read,
/// [`InteropDecodeError::TooLarge`].
///
/// # Example
///
/// ```
/// use keepsake::codec::interop::{self, Framework, InteropDecodeError};
///
/// let seen = interop::inspect("eyJ1c2VyX2lkIjo0Mn0.ZVPxAA.URDB51yliVaCe0MfFjl9pAk8TrE")?;
/// assert_eq!(seen.framework(), Framework::Flask);
/// assert_eq!(interop::inspect("hello"), Err(InteropDecodeError::Malformed));
/// # Ok::<(), InteropDecodeError>(())
/// ```
pub fn inspect(value: &str) -> Result<Inspected, InteropDecodeError> {
    if value.len() > MAX_COOKIE_SIZE {
        return Err(InteropDecodeError::TooLarge {
            size: value.len(),
            limit: MAX_COOKIE_SIZE,
        });
    }
    let read = |framework: Framework,
                payload: &str,
                issued_at: u64|
     -> Result<Inspected, InteropDecodeError> {
        let text = payload_text(framework, payload)?;
        let codec = InteropCodec::new(framework, b"");
        let session = codec.deserialize(&text)?;
        Ok(Inspected {
            framework,
            issued_at,
            compressed: payload.starts_with('.'),
            session,
        })
    };
    if let Some((signed, _)) = value.rsplit_once(':') {
        let (payload, timestamp) = signed
            .rsplit_once(':')
            .ok_or(InteropDecodeError::Malformed)?;
        let issued_at = signing::b62_decode(timestamp).ok_or(InteropDecodeError::Malformed)?;
        return read(
            Framework::Django,
            payload,
            u64::try_from(issued_at.max(0)).unwrap_or(u64::MAX),
        );
    }
    let (signed, _) = value
        .rsplit_once('.')
        .ok_or(InteropDecodeError::Malformed)?;
    let (payload, timestamp) = signed
        .rsplit_once('.')
        .ok_or(InteropDecodeError::Malformed)?;
    let ts = b64::decode_lenient(timestamp, b64::Alphabet::UrlSafe)
        .ok_or(InteropDecodeError::Malformed)?;
    let significant = &ts[ts.iter().position(|&b| b != 0).unwrap_or(ts.len())..];
    let issued_at = if significant.len() > 8 {
        u64::MAX
    } else {
        significant
            .iter()
            .fold(0u64, |n, &b| (n << 8) | u64::from(b))
    };
    if payload.starts_with('.') {
        return read(Framework::Flask, payload, issued_at);
    }
    match (
        read(Framework::Flask, payload, issued_at),
        read(Framework::Starlette, payload, issued_at),
    ) {
        (Ok(flask), Ok(starlette)) => {
            // Both read: the one whose own writer gives back the same text.
            let starlette_text = payload_text(Framework::Starlette, payload).ok();
            let rewritten = InteropCodec::new(Framework::Starlette, b"")
                .serialize(&starlette.session)
                .ok();
            if starlette_text.is_some() && starlette_text == rewritten {
                Ok(starlette)
            } else {
                Ok(flask)
            }
        }
        (Ok(found), Err(_)) | (Err(_), Ok(found)) => Ok(found),
        (Err(err), Err(_)) => Err(err),
    }
}

#[cfg(test)]
mod tests;
