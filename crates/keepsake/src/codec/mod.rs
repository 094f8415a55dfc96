//! Protected cookie values: signed (readable, tamper-proof) and sealed
//! (encrypted and authenticated).
//!
//! A [`Codec`] turns payload bytes into a cookie value and back, with a
//! [`KeyRing`] and a [`Format`]. Every value is bound to the cookie *name*
//! and the [`Namespace`] it was made for, and carries its issue time and an
//! optional expiry ([`Claims`]) inside the protected part: a value copied into
//! another cookie, moved to another namespace, or kept past its expiry does not
//! verify, whatever the browser's `Max-Age` said.
//!
//! # Wire formats (version 1)
//!
//! All base64 is URL-safe without padding (RFC 4648 §5), decoded strictly, so
//! each value has exactly one spelling. `header` is 12 bytes: the issue time
//! and the expiry as 48-bit big-endian Unix seconds (expiry 0 = none).
//!
//! | format | value |
//! |---|---|
//! | signed | `s1.` base64(header ‖ payload) `.` base64(HMAC-SHA256 tag) |
//! | sealed | `e1.` base64(nonce ‖ AES-256-GCM-SIV(header ‖ payload) ‖ tag) |
//!
//! The signed MAC covers `s1`, the cookie name (length-prefixed), the
//! namespace, the header and the payload. The sealed associated data is `e1`,
//! the name (length-prefixed) and the namespace; the nonce is 96 random bits.
//! The leading letter and digit are the format and its version: a value of a
//! version this build does not know is [`DecodeError::UnknownVersion`], so a
//! later format can be introduced beside this one.
//!
//! ## Why AES-256-GCM-SIV
//!
//! A sealed value needs a fresh nonce each time, drawn at random because many
//! servers share the key with no counter between them. AES-GCM with 96-bit
//! random nonces has a cliff: after about 2³² values under one key a nonce
//! repeat becomes likely, and one repeat leaks the authentication key.
//! AES-GCM-SIV (RFC 8452) is misuse-resistant: a repeated nonce reveals only
//! whether two identical plaintexts were sealed, and random nonces stay safe
//! far past 2³² messages per key. The alternatives without a cliff cost more
//! here: measured in one run on this project's machines
//! (`bench/aead-choice/README.md`, 64-byte payload, seal), RustCrypto
//! AES-256-GCM-SIV took 633 ns, XChaCha20-Poly1305 (192-bit nonces) 1,982 ns,
//! and a per-message HKDF key with AES-GCM 1,099 ns. aws-lc-rs's GCM-SIV was
//! faster still (177 ns), but it compiles a C library (four minutes of build
//! here) into every user's app and its fuzzing; at well under a microsecond
//! per request the pure-Rust implementation is the better trade, and the
//! format does not depend on which implementation seals it.
//!
//! # Example
//!
//! ```
//! use keepsake::{codec::{Claims, Codec, DecodeError}, key::{Key, KeyRing}};
//!
//! let codec = Codec::sealed(KeyRing::new(Key::generate()));
//! let now = 1_700_000_000;
//! let value = codec.encode("cart", br#"{"items":3}"#, Claims::new(now).with_ttl(60))?;
//! assert!(value.starts_with("e1."));
//!
//! assert_eq!(codec.decode("cart", &value, now + 59)?.payload(), br#"{"items":3}"#);
//! assert_eq!(codec.decode("other", &value, now), Err(DecodeError::BadSignature));
//! assert_eq!(codec.decode("cart", &value, now + 60), Err(DecodeError::Expired { expires_at: now + 60 }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "interop")]
#[cfg_attr(docsrs, doc(cfg(feature = "interop")))]
pub mod interop;
mod sealed;
mod signed;

use std::{
    fmt,
    str::FromStr,
    time::{SystemTime, UNIX_EPOCH},
};

use base64_simd::{Out, URL_SAFE_NO_PAD};

pub use crate::key::{KeyRing, Namespace};

/// The largest cookie, name plus value, that keepsake makes or reads, in
/// bytes. Browsers drop bigger ones without a word (RFC 6265 §6.1 asks them
/// to keep at least 4096 bytes per cookie).
///
/// # Example
///
/// ```
/// assert_eq!(keepsake::codec::MAX_COOKIE_SIZE, 4096);
/// ```
pub const MAX_COOKIE_SIZE: usize = 4096;

/// Length of the claims header inside every value.
const HEADER_LEN: usize = 12;

/// Largest time the 48-bit header fields hold (year 8.9 million).
pub(crate) const MAX_TIME: u64 = (1 << 48) - 1;

/// The time `secs` seconds after `now`, capped at [`MAX_TIME`]: a TTL or
/// lifetime too long for a cookie (`u64::MAX` from `Claims::with_ttl` or
/// `Record::new`) becomes the latest time a cookie can carry, instead of a
/// deadline no cookie can be written with.
pub(crate) const fn deadline_after(now: u64, secs: u64) -> u64 {
    let deadline = now.saturating_add(secs);
    if deadline > MAX_TIME {
        MAX_TIME
    } else {
        deadline
    }
}

/// The low 48 bits of `value`, big-endian: how times are written in the
/// claims header and in a cookie's session record.
pub(crate) fn u48_bytes(value: u64) -> [u8; 6] {
    let wide = value.to_be_bytes();
    [wide[2], wide[3], wide[4], wide[5], wide[6], wide[7]]
}

/// The value of six big-endian bytes written by [`u48_bytes`].
pub(crate) fn u48_value(bytes: [u8; 6]) -> u64 {
    let [a, b, c, d, e, f] = bytes;
    u64::from_be_bytes([0, 0, a, b, c, d, e, f])
}

/// How a value is protected.
///
/// # Example
///
/// ```
/// use keepsake::codec::Format;
///
/// assert_eq!("sealed".parse::<Format>(), Ok(Format::Sealed));
/// assert_eq!(Format::detect("s1.AAAA.BBBB"), Some(Format::Signed));
/// assert_eq!(Format::Signed.to_string(), "signed");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// HMAC-SHA256: anyone can read the payload, nobody without the key can
    /// change it.
    #[default]
    Signed,
    /// AES-256-GCM-SIV: nobody without the key can read or change it.
    Sealed,
}

impl Format {
    /// The format's name as used on the command line.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(keepsake::codec::Format::Sealed.as_str(), "sealed");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Signed => "signed",
            Self::Sealed => "sealed",
        }
    }

    /// The letter that starts this format's values.
    const fn letter(self) -> u8 {
        match self {
            Self::Signed => b's',
            Self::Sealed => b'e',
        }
    }

    /// Guesses the format of a value from its prefix, without verifying it.
    /// Any version counts, so an unknown version is still told apart from
    /// something that is not a keepsake value at all.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::Format;
    ///
    /// assert_eq!(Format::detect("e1.qwerty"), Some(Format::Sealed));
    /// assert_eq!(Format::detect("e7.qwerty"), Some(Format::Sealed));
    /// assert_eq!(Format::detect("eyJ1c2VyIjoxfQ.ZVPZwA.sig"), None);
    /// ```
    pub fn detect(value: &str) -> Option<Self> {
        let (letter, _, _) = split_version(value)?;
        [Self::Signed, Self::Sealed]
            .into_iter()
            .find(|format| format.letter() == letter)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`Format`] from text.
///
/// # Example
///
/// ```
/// let err = "plain".parse::<keepsake::codec::Format>().unwrap_err();
/// assert_eq!(err.to_string(), "unknown format \"plain\" (expected `signed` or `sealed`)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format {0:?} (expected `signed` or `sealed`)")]
pub struct ParseFormatError(String);

impl FromStr for Format {
    type Err = ParseFormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "signed" => Ok(Self::Signed),
            "sealed" => Ok(Self::Sealed),
            other => Err(ParseFormatError(other.to_owned())),
        }
    }
}

/// When a value was issued and when it stops being valid, in Unix seconds.
///
/// Both live inside the protected part of the value.
///
/// # Example
///
/// ```
/// use keepsake::codec::Claims;
///
/// let claims = Claims::new(1_000).with_ttl(30);
/// assert_eq!(claims.issued_at(), 1_000);
/// assert_eq!(claims.expires_at(), Some(1_030));
/// assert!(!claims.is_expired_at(1_029));
/// assert!(claims.is_expired_at(1_030));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Claims {
    issued_at: u64,
    expires_at: Option<u64>,
}

impl Claims {
    /// Claims issued at `issued_at` (Unix seconds) that never expire.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(keepsake::codec::Claims::new(5).expires_at(), None);
    /// ```
    pub const fn new(issued_at: u64) -> Self {
        Self {
            issued_at,
            expires_at: None,
        }
    }

    /// Claims issued now, by the system clock, that never expire.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::{unix_now, Claims};
    ///
    /// assert!(Claims::now().issued_at() <= unix_now());
    /// ```
    pub fn now() -> Self {
        Self::new(unix_now())
    }

    /// Sets the expiry `ttl` seconds after the issue time, but no later
    /// than the latest time a value can carry (2^48 - 1, in the year 8.9
    /// million), so that `u64::MAX` means "as long as possible".
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::Claims;
    ///
    /// assert_eq!(Claims::new(10).with_ttl(5).expires_at(), Some(15));
    /// assert_eq!(Claims::new(10).with_ttl(u64::MAX).expires_at(), Some((1 << 48) - 1));
    /// ```
    #[must_use]
    pub const fn with_ttl(self, ttl: u64) -> Self {
        self.with_expiry(Some(deadline_after(self.issued_at, ttl)))
    }

    /// Sets the expiry to an absolute time (`None`: never). Time 0 becomes
    /// 1 (expired all the same): a value writes "never" as 0.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::Claims;
    ///
    /// assert_eq!(Claims::new(10).with_expiry(Some(99)).expires_at(), Some(99));
    /// assert_eq!(Claims::new(10).with_ttl(5).with_expiry(None).expires_at(), None);
    /// assert_eq!(Claims::new(0).with_ttl(0).expires_at(), Some(1));
    /// ```
    #[must_use]
    pub const fn with_expiry(mut self, expires_at: Option<u64>) -> Self {
        self.expires_at = match expires_at {
            Some(0) => Some(1),
            other => other,
        };
        self
    }

    /// The issue time, in Unix seconds.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(keepsake::codec::Claims::new(42).issued_at(), 42);
    /// ```
    pub const fn issued_at(&self) -> u64 {
        self.issued_at
    }

    /// The first second at which the value is no longer valid, if any.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(keepsake::codec::Claims::new(1).with_ttl(1).expires_at(), Some(2));
    /// ```
    pub const fn expires_at(&self) -> Option<u64> {
        self.expires_at
    }

    /// Whether the value is expired at `now` (expiry is exclusive: a value
    /// that expires at 100 is valid at 99 and expired at 100).
    ///
    /// # Example
    ///
    /// ```
    /// let claims = keepsake::codec::Claims::new(0).with_expiry(Some(100));
    /// assert!(!claims.is_expired_at(99) && claims.is_expired_at(100));
    /// ```
    pub const fn is_expired_at(&self, now: u64) -> bool {
        match self.expires_at {
            Some(expires_at) => now >= expires_at,
            None => false,
        }
    }

    /// The 12-byte header that carries the claims.
    fn to_header(self) -> Result<[u8; HEADER_LEN], EncodeError> {
        let expires_at = self.expires_at.unwrap_or(0);
        if self.issued_at > MAX_TIME || expires_at > MAX_TIME {
            return Err(EncodeError::TimeOutOfRange);
        }
        let mut header = [0u8; HEADER_LEN];
        header[..6].copy_from_slice(&u48_bytes(self.issued_at));
        header[6..].copy_from_slice(&u48_bytes(expires_at));
        Ok(header)
    }

    fn from_header(header: &[u8; HEADER_LEN]) -> Self {
        let [a, b, c, d, e, f, g, h, i, j, k, l] = *header;
        let expires_at = u48_value([g, h, i, j, k, l]);
        Self {
            issued_at: u48_value([a, b, c, d, e, f]),
            expires_at: (expires_at != 0).then_some(expires_at),
        }
    }
}

/// The current time by the system clock, in Unix seconds (0 if the clock is
/// before 1970).
///
/// # Example
///
/// ```
/// assert!(keepsake::codec::unix_now() > 1_700_000_000);
/// ```
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Which key of the ring opened a value.
///
/// # Example
///
/// ```
/// use keepsake::codec::KeyUsed;
///
/// assert!(!KeyUsed::Current.is_fallback());
/// assert!(KeyUsed::Fallback { index: 0 }.is_fallback());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyUsed {
    /// The ring's current key.
    Current,
    /// A fallback key: issue the value again under the current key.
    Fallback {
        /// Position among [`KeyRing::fallbacks`], from 0.
        index: usize,
    },
}

impl KeyUsed {
    /// Whether a fallback key was used, so the value should be re-issued.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(keepsake::codec::KeyUsed::Fallback { index: 2 }.is_fallback());
    /// ```
    pub const fn is_fallback(self) -> bool {
        matches!(self, Self::Fallback { .. })
    }

    fn from_position(position: usize) -> Self {
        match position {
            0 => Self::Current,
            n => Self::Fallback { index: n - 1 },
        }
    }
}

/// A value that verified: its payload, its claims and the key that opened it.
///
/// # Example
///
/// ```
/// use keepsake::{codec::{Claims, Codec, KeyUsed}, key::{Key, KeyRing}};
///
/// let codec = Codec::signed(KeyRing::new(Key::generate()));
/// let value = codec.encode("n", b"hi", Claims::new(7))?;
/// let opened = codec.decode("n", &value, 8)?;
/// assert_eq!(opened.claims(), Claims::new(7));
/// assert_eq!(opened.key_used(), KeyUsed::Current);
/// assert_eq!(opened.into_payload(), b"hi".to_vec());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    payload: Vec<u8>,
    claims: Claims,
    key_used: KeyUsed,
}

impl Opened {
    /// The payload bytes.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{codec::{Claims, Codec}, key::{Key, KeyRing}};
    /// # let codec = Codec::signed(KeyRing::new(Key::generate()));
    /// let value = codec.encode("n", b"payload", Claims::new(0))?;
    /// assert_eq!(codec.decode("n", &value, 0)?.payload(), b"payload");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload bytes, by value.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{codec::{Claims, Codec}, key::{Key, KeyRing}};
    /// # let codec = Codec::sealed(KeyRing::new(Key::generate()));
    /// let value = codec.encode("n", b"payload", Claims::new(0))?;
    /// assert_eq!(codec.decode("n", &value, 0)?.into_payload(), b"payload".to_vec());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }

    /// The issue time and expiry that were protected with the payload.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{codec::{Claims, Codec}, key::{Key, KeyRing}};
    /// # let codec = Codec::signed(KeyRing::new(Key::generate()));
    /// let value = codec.encode("n", b"", Claims::new(10).with_ttl(5))?;
    /// assert_eq!(codec.decode("n", &value, 12)?.claims().expires_at(), Some(15));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn claims(&self) -> Claims {
        self.claims
    }

    /// Which key opened the value.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{codec::{Claims, Codec, KeyUsed}, key::{Key, KeyRing}};
    /// # let codec = Codec::signed(KeyRing::new(Key::generate()));
    /// let value = codec.encode("n", b"", Claims::new(0))?;
    /// assert_eq!(codec.decode("n", &value, 0)?.key_used(), KeyUsed::Current);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn key_used(&self) -> KeyUsed {
        self.key_used
    }
}

/// Why a value could not be made.
///
/// # Example
///
/// ```
/// use keepsake::{codec::{Claims, Codec, EncodeError}, key::{Key, KeyRing}};
///
/// let codec = Codec::signed(KeyRing::new(Key::generate()));
/// let err = codec.encode("big", &[b'x'; 4000], Claims::new(0)).unwrap_err();
/// assert!(matches!(err, EncodeError::TooLarge { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The cookie (name plus value) would exceed [`MAX_COOKIE_SIZE`].
    #[error(
        "the cookie `{name}` would be {size} bytes (name plus value), over the \
         {limit}-byte limit browsers keep; store less in it, or keep the data \
         server-side"
    )]
    TooLarge {
        /// The cookie name.
        name: String,
        /// Name plus encoded value, in bytes.
        size: usize,
        /// The limit, [`MAX_COOKIE_SIZE`].
        limit: usize,
    },
    /// A time in the claims is past the year 8,900,000 (48 bits of seconds).
    #[error("a time in the claims is too far in the future to encode")]
    TimeOutOfRange,
    /// The sealing cipher refused the input (it cannot, for inputs that fit
    /// in a cookie).
    #[error("the cipher refused to seal the payload")]
    Cipher,
}

/// Why a value did not verify.
///
/// Which variant comes back depends only on the value and the keys, never on
/// secret data, so callers may log it; but an HTTP response should treat all
/// of them alike ("no valid cookie"), to give an attacker no oracle.
///
/// # Example
///
/// ```
/// use keepsake::{codec::{Codec, DecodeError}, key::{Key, KeyRing}};
///
/// let codec = Codec::signed(KeyRing::new(Key::generate()));
/// assert_eq!(codec.decode("n", "hello", 0), Err(DecodeError::Malformed));
/// assert_eq!(codec.decode("n", "s9.AAAA.AAAA", 0), Err(DecodeError::UnknownVersion { version: 9 }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not a value of this format: wrong prefix, bad base64, wrong lengths.
    #[error("the value is malformed (not a keepsake value of the expected format)")]
    Malformed,
    /// A keepsake value of this format, but of a version this build does not
    /// know.
    #[error(
        "the value uses format version {version}, which this version of keepsake does not know"
    )]
    UnknownVersion {
        /// The version number found in the value.
        version: u32,
    },
    /// No key of the ring verified it: it was changed, made with another
    /// key, or made for another cookie name or namespace.
    #[error(
        "the value does not verify: tampered with, made with another key, or \
         made for another cookie name or namespace"
    )]
    BadSignature,
    /// It verified, but its protected expiry has passed.
    #[error("the value expired at {expires_at} (Unix seconds)")]
    Expired {
        /// When it expired, in Unix seconds.
        expires_at: u64,
    },
    /// The value is longer than any cookie can be ([`MAX_COOKIE_SIZE`]).
    #[error("the value is {size} bytes, longer than any cookie ({limit} bytes)")]
    TooLarge {
        /// Length of the value, in bytes.
        size: usize,
        /// The limit, [`MAX_COOKIE_SIZE`].
        limit: usize,
    },
}

/// Makes and opens protected values with a key ring, a [`Format`] and a
/// [`Namespace`].
///
/// Cheap to clone; `Send + Sync`.
///
/// # Example
///
/// ```
/// use keepsake::{codec::{Claims, Codec, DecodeError}, key::{Key, KeyRing, Namespace}};
///
/// let ring = KeyRing::new(Key::generate());
/// let local = Codec::signed(ring.clone());
/// let shared = Codec::signed(ring).with_namespace(Namespace::Shared);
///
/// let value = local.encode("user", br#""ada""#, Claims::new(1_000))?;
/// assert_eq!(local.decode("user", &value, 1_001)?.payload(), br#""ada""#);
/// assert_eq!(shared.decode("user", &value, 1_001), Err(DecodeError::BadSignature));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Codec {
    ring: KeyRing,
    format: Format,
    namespace: Namespace,
}

impl Codec {
    /// A codec for `format` in the [local](Namespace::Local) namespace.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::{codec::{Codec, Format}, key::{Key, KeyRing}};
    ///
    /// let codec = Codec::new(Format::Sealed, KeyRing::new(Key::generate()));
    /// assert_eq!(codec.format(), Format::Sealed);
    /// ```
    pub fn new(format: Format, ring: KeyRing) -> Self {
        Self {
            ring,
            format,
            namespace: Namespace::Local,
        }
    }

    /// A codec for [signed](Format::Signed) values.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::{codec::{Codec, Format}, key::{Key, KeyRing}};
    ///
    /// assert_eq!(Codec::signed(KeyRing::new(Key::generate())).format(), Format::Signed);
    /// ```
    pub fn signed(ring: KeyRing) -> Self {
        Self::new(Format::Signed, ring)
    }

    /// A codec for [sealed](Format::Sealed) values.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::{codec::{Codec, Format}, key::{Key, KeyRing}};
    ///
    /// assert_eq!(Codec::sealed(KeyRing::new(Key::generate())).format(), Format::Sealed);
    /// ```
    pub fn sealed(ring: KeyRing) -> Self {
        Self::new(Format::Sealed, ring)
    }

    /// Uses `namespace` instead of [`Namespace::Local`].
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::{codec::Codec, key::{Key, KeyRing, Namespace}};
    ///
    /// let codec = Codec::signed(KeyRing::new(Key::generate())).with_namespace(Namespace::Shared);
    /// assert_eq!(codec.namespace(), Namespace::Shared);
    /// ```
    #[must_use]
    pub fn with_namespace(mut self, namespace: Namespace) -> Self {
        self.namespace = namespace;
        self
    }

    /// The format.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{codec::{Codec, Format}, key::{Key, KeyRing}};
    /// assert_eq!(Codec::signed(KeyRing::new(Key::generate())).format(), Format::Signed);
    /// ```
    pub fn format(&self) -> Format {
        self.format
    }

    /// The namespace.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{codec::Codec, key::{Key, KeyRing, Namespace}};
    /// assert_eq!(Codec::signed(KeyRing::new(Key::generate())).namespace(), Namespace::Local);
    /// ```
    pub fn namespace(&self) -> Namespace {
        self.namespace
    }

    /// The key ring.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{codec::Codec, key::{Key, KeyRing}};
    /// let key = Key::generate();
    /// assert_eq!(Codec::signed(KeyRing::new(key.clone())).ring().current(), &key);
    /// ```
    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    /// Protects `payload` for the cookie called `name`, with the current key.
    ///
    /// # Errors
    ///
    /// [`EncodeError::TooLarge`] if `name` plus the value would exceed
    /// [`MAX_COOKIE_SIZE`]; [`EncodeError::TimeOutOfRange`] for absurd times.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{codec::{Claims, Codec}, key::{Key, KeyRing}};
    /// let codec = Codec::signed(KeyRing::new(Key::generate()));
    /// let value = codec.encode("theme", b"dark", Claims::new(0))?;
    /// assert!(value.starts_with("s1."));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn encode(
        &self,
        name: &str,
        payload: &[u8],
        claims: Claims,
    ) -> Result<String, EncodeError> {
        let header = claims.to_header()?;
        let value = match self.format {
            Format::Signed => signed::encode(&self.ring, self.namespace, name, &header, payload),
            Format::Sealed => sealed::encode(&self.ring, self.namespace, name, &header, payload)?,
        };
        check_size(name, value)
    }

    /// The exact length of the value [`encode`](Codec::encode) makes for a
    /// payload of `payload_len` bytes, without making it: for checking a
    /// cookie's size before paying for the MAC or cipher. A length whose
    /// value could not exist in memory gives `usize::MAX` (never an
    /// overflow).
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{codec::{Claims, Codec}, key::{Key, KeyRing}};
    /// let ring = KeyRing::new(Key::generate());
    /// for codec in [Codec::signed(ring.clone()), Codec::sealed(ring)] {
    ///     for len in [0, 1, 2, 3, 100, 1000] {
    ///         let value = codec.encode("n", &vec![7; len], Claims::new(0))?;
    ///         assert_eq!(codec.encoded_len(len), value.len());
    ///     }
    ///     assert_eq!(codec.encoded_len(usize::MAX), usize::MAX);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn encoded_len(&self, payload_len: usize) -> usize {
        match self.format {
            Format::Signed => signed::encoded_len(payload_len),
            Format::Sealed => sealed::encoded_len(payload_len),
        }
    }

    /// Verifies `value` as the cookie called `name` at time `now` (Unix
    /// seconds), trying the current key, then each fallback.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] saying why the value was refused. Never panics,
    /// whatever the input.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{codec::{Claims, Codec, DecodeError}, key::{Key, KeyRing}};
    /// let codec = Codec::sealed(KeyRing::new(Key::generate()));
    /// let value = codec.encode("theme", b"dark", Claims::new(0).with_ttl(10))?;
    /// assert_eq!(codec.decode("theme", &value, 9)?.payload(), b"dark");
    /// assert_eq!(codec.decode("theme", &value, 10), Err(DecodeError::Expired { expires_at: 10 }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode(&self, name: &str, value: &str, now: u64) -> Result<Opened, DecodeError> {
        let (payload, claims, key_used) = self.open(name, value, now)?;
        Ok(Opened {
            payload,
            claims,
            key_used,
        })
    }

    /// [`decode`](Self::decode), with the payload made into a `P`: the
    /// session middleware opens a session id into an array, with no
    /// allocation for a signed one. A payload `P` cannot hold is
    /// [`DecodeError::Malformed`] (checked after the value verified).
    pub(crate) fn open<P: PayloadOut>(
        &self,
        name: &str,
        value: &str,
        now: u64,
    ) -> Result<(P, Claims, KeyUsed), DecodeError> {
        if value.len() > MAX_COOKIE_SIZE {
            return Err(DecodeError::TooLarge {
                size: value.len(),
                limit: MAX_COOKIE_SIZE,
            });
        }
        let (letter, version, body) = split_version(value).ok_or(DecodeError::Malformed)?;
        if letter != self.format.letter() {
            return Err(DecodeError::Malformed);
        }
        if version != 1 {
            return Err(DecodeError::UnknownVersion { version });
        }
        let (payload, claims, position) = match self.format {
            Format::Signed => signed::decode(&self.ring, self.namespace, name, body)?,
            Format::Sealed => sealed::decode(&self.ring, self.namespace, name, body)?,
        };
        if let Some(expires_at) = claims.expires_at.filter(|_| claims.is_expired_at(now)) {
            return Err(DecodeError::Expired { expires_at });
        }
        Ok((payload, claims, KeyUsed::from_position(position)))
    }
}

/// What a verified payload is made into by [`Codec::open`]: from the
/// decoder's stack buffer (a small signed value) or from its `Vec`.
pub(crate) trait PayloadOut: Sized {
    /// From bytes the decoder still owns.
    fn from_slice(bytes: &[u8]) -> Result<Self, DecodeError>;
    /// From bytes the decoder allocated and gives away.
    fn from_vec(bytes: Vec<u8>) -> Result<Self, DecodeError>;
}

impl PayloadOut for Vec<u8> {
    fn from_slice(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(bytes.to_vec())
    }

    fn from_vec(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        Ok(bytes)
    }
}

impl<const N: usize> PayloadOut for [u8; N] {
    fn from_slice(bytes: &[u8]) -> Result<Self, DecodeError> {
        bytes.try_into().map_err(|_| DecodeError::Malformed)
    }

    fn from_vec(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        Self::from_slice(&bytes)
    }
}

/// What a value shows without a key: its format and version, and for a signed
/// value its claims and payload. Nothing here is verified.
///
/// # Example
///
/// ```
/// use keepsake::{codec::{self, Claims, Codec, Format}, key::{Key, KeyRing}};
///
/// let ring = KeyRing::new(Key::generate());
/// let value = Codec::signed(ring.clone()).encode("n", b"{}", Claims::new(5).with_ttl(5))?;
/// let seen = codec::inspect(&value)?;
/// assert_eq!((seen.format(), seen.version()), (Format::Signed, 1));
/// assert_eq!(seen.claims(), Some(Claims::new(5).with_ttl(5)));
/// assert_eq!(seen.payload(), Some(&b"{}"[..]));
///
/// let sealed = codec::inspect(&Codec::sealed(ring).encode("n", b"{}", Claims::new(5))?)?;
/// assert_eq!((sealed.format(), sealed.claims(), sealed.payload()), (Format::Sealed, None, None));
/// assert_eq!(sealed.sealed_len(), 12 + 12 + 2 + 16);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    format: Format,
    version: u32,
    signed: Option<(Claims, Vec<u8>)>,
    sealed_len: usize,
}

impl Inspected {
    /// The format.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::codec::{self, Format};
    /// let seen = codec::inspect("e1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")?;
    /// assert_eq!(seen.format(), Format::Sealed);
    /// # Ok::<(), codec::DecodeError>(())
    /// ```
    pub fn format(&self) -> Format {
        self.format
    }

    /// The format version.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::codec;
    /// let seen = codec::inspect("e1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")?;
    /// assert_eq!(seen.version(), 1);
    /// # Ok::<(), codec::DecodeError>(())
    /// ```
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The claims of a signed value (unverified); `None` for a sealed one.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::codec::{self, Claims};
    /// let seen = codec::inspect("s1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")?;
    /// assert_eq!(seen.claims(), Some(Claims::new(0)));
    /// # Ok::<(), codec::DecodeError>(())
    /// ```
    pub fn claims(&self) -> Option<Claims> {
        self.signed.as_ref().map(|(claims, _)| *claims)
    }

    /// The payload of a signed value (unverified); `None` for a sealed one.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::codec;
    /// let seen = codec::inspect("s1.AAAAAAAAAAAAAAAAaGk.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")?;
    /// assert_eq!(seen.payload(), Some(&b"hi"[..]));
    /// # Ok::<(), codec::DecodeError>(())
    /// ```
    pub fn payload(&self) -> Option<&[u8]> {
        self.signed.as_ref().map(|(_, payload)| payload.as_slice())
    }

    /// For a sealed value, the length of nonce, ciphertext and tag in bytes
    /// (the payload is this minus 40); 0 for a signed one.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::codec;
    /// let seen = codec::inspect("e1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")?;
    /// assert_eq!(seen.sealed_len(), 40);
    /// # Ok::<(), codec::DecodeError>(())
    /// ```
    pub fn sealed_len(&self) -> usize {
        self.sealed_len
    }
}

/// Reads what a value shows without a key (see [`Inspected`]).
///
/// # Errors
///
/// [`DecodeError::Malformed`] for anything that is not a keepsake value of a
/// known layout, [`DecodeError::UnknownVersion`], [`DecodeError::TooLarge`].
///
/// # Example
///
/// ```
/// use keepsake::codec::{self, DecodeError};
///
/// assert_eq!(codec::inspect("hello"), Err(DecodeError::Malformed));
/// assert_eq!(codec::inspect("s2.x.y"), Err(DecodeError::UnknownVersion { version: 2 }));
/// ```
pub fn inspect(value: &str) -> Result<Inspected, DecodeError> {
    if value.len() > MAX_COOKIE_SIZE {
        return Err(DecodeError::TooLarge {
            size: value.len(),
            limit: MAX_COOKIE_SIZE,
        });
    }
    let format = Format::detect(value).ok_or(DecodeError::Malformed)?;
    let (_, version, body) = split_version(value).ok_or(DecodeError::Malformed)?;
    if version != 1 {
        return Err(DecodeError::UnknownVersion { version });
    }
    let mut seen = Inspected {
        format,
        version,
        signed: None,
        sealed_len: 0,
    };
    match format {
        Format::Signed => {
            let (header, payload) = signed::split(body)?;
            seen.signed = Some((Claims::from_header(&header), payload));
        }
        Format::Sealed => {
            let mut bytes = Vec::new();
            b64_decode_into(body, &mut bytes)?;
            if bytes.len() < sealed::MIN_LEN {
                return Err(DecodeError::Malformed);
            }
            seen.sealed_len = bytes.len();
        }
    }
    Ok(seen)
}

/// Splits `s1.rest` into (`b's'`, 1, `rest`). Versions are decimal without
/// leading zeros, at most 9 digits, so each version has one spelling.
fn split_version(value: &str) -> Option<(u8, u32, &str)> {
    // Fast path for the versions in use.
    if let [letter @ (b's' | b'e'), b'1', b'.', ..] = value.as_bytes() {
        return Some((*letter, 1, &value[3..]));
    }
    let (prefix, body) = value.split_once('.')?;
    let (&letter, digits) = prefix.as_bytes().split_first()?;
    if !letter.is_ascii_lowercase()
        || !(1..=9).contains(&digits.len())
        || digits[0] == b'0'
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    let version = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((letter, version, body))
}

fn check_size(name: &str, value: String) -> Result<String, EncodeError> {
    let size = name.len() + value.len();
    if size > MAX_COOKIE_SIZE {
        return Err(EncodeError::TooLarge {
            name: name.to_owned(),
            size,
            limit: MAX_COOKIE_SIZE,
        });
    }
    Ok(value)
}

/// The name, length-prefixed, so that no two (name, rest) pairs give the same
/// bytes. Names longer than a cookie cannot be are clamped; they can never
/// verify anyway because the value would be too large.
fn name_prefix(name_len: usize) -> [u8; 2] {
    u16::try_from(name_len).unwrap_or(u16::MAX).to_be_bytes()
}

// Base64 is URL-safe without padding and strict: padding and non-zero
// trailing bits are refused, so every byte string has exactly one spelling.
// Two SIMD crates, each where it measured faster (BENCHMARKS.md):
// `base64-simd` (AVX2, detected at run time) for short inputs, and
// `base64-turbo` (AVX-512 VBMI or AVX2, detected at run time) from
// `TURBO_MIN` bytes on, where it is 3-4x faster. Both decode strictly, and
// `tests::base64_engines_agree` checks that they accept and reject the same
// inputs.

/// Inputs (bytes to encode, or base64 characters to decode) from this length
/// on go to `base64-turbo`.
const TURBO_MIN: usize = 512;

/// Appends the base64 of `bytes` to `out`.
fn b64_append(bytes: &[u8], out: &mut String) {
    if bytes.len() >= TURBO_MIN {
        // base64-turbo writes only into its own `String` (or raw bytes, which
        // a `String` would have to validate again): copying is still faster.
        out.push_str(&base64_turbo::URL_SAFE_NO_PAD.encode(bytes));
    } else {
        URL_SAFE_NO_PAD.encode_append(bytes, out);
    }
}

/// Decodes base64 `text`, appending to `out`.
fn b64_decode_into(text: impl AsRef<[u8]>, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let text = text.as_ref();
    if text.len() >= TURBO_MIN {
        let turbo = base64_turbo::URL_SAFE_NO_PAD;
        if out.is_empty() {
            *out = turbo.decode(text).map_err(|_| DecodeError::Malformed)?;
            return Ok(());
        }
        return turbo
            .decode_vec(text, out)
            .map_err(|_| DecodeError::Malformed);
    }
    URL_SAFE_NO_PAD
        .decode_append(text, out)
        .map_err(|_| DecodeError::Malformed)
}

/// Decodes base64 `text` into the start of `out` and returns the decoded
/// length; text that would not fit is malformed (checked first: the decoder
/// panics on a short buffer).
fn b64_decode_slice(text: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
    if text.len() / 4 * 3 + (text.len() % 4).saturating_sub(1) > out.len() {
        return Err(DecodeError::Malformed);
    }
    let turbo = base64_turbo::URL_SAFE_NO_PAD;
    // base64-turbo wants room for its estimate, up to 2 bytes more.
    if text.len() >= TURBO_MIN && out.len() >= turbo.decoded_len_estimate(text.len()) {
        return turbo
            .decode_slice(text, out)
            .map_err(|_| DecodeError::Malformed);
    }
    URL_SAFE_NO_PAD
        .decode(text, Out::from_slice(out))
        .map(|decoded| decoded.len())
        .map_err(|_| DecodeError::Malformed)
}

/// Decodes base64 `text` that must hold exactly `N` bytes.
fn b64_decode_exact<const N: usize>(text: &[u8]) -> Result<[u8; N], DecodeError> {
    let mut out = [0u8; N];
    if text.len() != b64_len(N) {
        return Err(DecodeError::Malformed);
    }
    let decoded = URL_SAFE_NO_PAD
        .decode(text, Out::from_slice(&mut out))
        .map_err(|_| DecodeError::Malformed)?;
    if decoded.len() != N {
        return Err(DecodeError::Malformed);
    }
    Ok(out)
}

/// Base64 length of `n` bytes, unpadded; `usize::MAX` for a length whose
/// base64 could not exist in memory (no overflow).
const fn b64_len(n: usize) -> usize {
    let tail = match n % 3 {
        0 => 0,
        1 => 2,
        _ => 3,
    };
    (n / 3).saturating_mul(4).saturating_add(tail)
}

#[cfg(test)]
mod tests;
