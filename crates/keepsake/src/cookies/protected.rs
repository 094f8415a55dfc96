//! Signed and private views over a [`CookieJar`].

use std::{
    borrow::{Borrow, BorrowMut},
    fmt,
    time::Duration,
};

use serde::{Serialize, de::DeserializeOwned};

use super::{Cookie, CookieBuilder, CookieError, CookieJar, builder::whole_secs_rounded_up};
use crate::{
    codec::{Claims, Codec, EncodeError, Format, KeyUsed, Opened, unix_now},
    key::{KeyRing, Namespace},
};

/// How long a value set through a view stays valid unless said otherwise:
/// 30 days.
///
/// # Example
///
/// ```
/// assert_eq!(keepsake::cookies::DEFAULT_TTL.as_secs(), 30 * 24 * 60 * 60);
/// ```
pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The most different values of one cookie name a view considers. A
/// browser sends one per path and domain that match the request, a handful
/// at most; a request with more was made to have the server check value
/// after value, and is refused as [ambiguous](CookieError::Ambiguous).
pub(super) const MAX_SAME_NAME: usize = 16;

/// A view over a [`CookieJar`] whose values are signed or sealed.
///
/// Made by [`CookieJar::signed`], [`CookieJar::signed_mut`],
/// [`CookieJar::private`] and [`CookieJar::private_mut`]. Views over `&CookieJar`
/// can read; views over `&mut CookieJar` can also write, and what they write
/// goes into the jar's outgoing cookies.
///
/// Each value is JSON inside a [protected value](crate::codec), bound to the
/// full cookie name and the view's [`Namespace`], with an expiry inside the
/// protected part ([`DEFAULT_TTL`] unless [`ttl`](ProtectedJar::ttl) says
/// otherwise) that matches the cookie's `Max-Age`.
///
/// A request does not say which path or domain a cookie was set with, so
/// two cookies of one protected name that both verify (one at `/` and one
/// at `/app`, or a host-only one and one with `Domain=`) are refused as
/// [ambiguous](CookieError::Ambiguous). An app that moves a protected
/// cookie (from host-only to a `Domain`, or to another path) must therefore
/// [remove](ProtectedJar::remove) the old one explicitly, through a view
/// with the old [`attributes`](ProtectedJar::attributes), when it writes the
/// new one; otherwise neither is read until the old one expires.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use keepsake::{cookies::CookieJar, key::{Key, KeyRing}};
///
/// let ring = KeyRing::new(Key::generate());
/// let mut jar = CookieJar::new();
/// // A signed value that every app with the same master secret can read,
/// // valid for 3 days (in Anvil, a Python web framework:
/// // `anvil.server.cookies.shared.set(3, user="ada")`):
/// jar.signed_mut(&ring)
///     .shared()
///     .ttl(Some(Duration::from_secs(3 * 86_400)))
///     .insert("user", "ada")?;
/// assert_eq!(jar.signed(&ring).shared().get::<String>("user").as_deref(), Some("ada"));
/// // The local namespace does not see it.
/// assert_eq!(jar.signed(&ring).get::<String>("user"), None);
/// # Ok::<(), keepsake::cookies::CookieError>(())
/// ```
///
/// Moving a cookie from host-only to `Domain=example.com`:
///
/// ```
/// use keepsake::{cookies::{Cookie, CookieError, CookieJar}, key::{Key, KeyRing}};
///
/// let ring = KeyRing::new(Key::generate());
/// let shared = || Cookie::build("", "").domain("example.com");
/// let mut old = CookieJar::new();
/// old.signed_mut(&ring).insert("theme", "light")?;
/// let mut new = CookieJar::new();
/// new.signed_mut(&ring).attributes(shared()).insert("theme", "dark")?;
/// let value = |jar: &CookieJar| jar.delta().next().unwrap().value().to_owned();
///
/// // A browser that kept both sends both: neither is trusted.
/// let both = CookieJar::parse(&format!("theme={}; theme={}", value(&old), value(&new)));
/// let err = both.signed(&ring).try_get::<String>("theme").unwrap_err();
/// assert!(matches!(err, CookieError::Ambiguous { .. }));
///
/// // So the response that sets the new one also removes the old one.
/// let mut jar = CookieJar::new();
/// jar.signed_mut(&ring).remove("theme")?; // host-only, `Path=/`
/// jar.signed_mut(&ring).attributes(shared()).insert("theme", "dark")?;
/// assert_eq!(jar.delta().filter(|c| c.is_removal()).count(), 1);
/// assert_eq!(jar.delta().filter(|c| c.domain() == Some("example.com")).count(), 1);
/// # Ok::<(), CookieError>(())
/// ```
pub struct ProtectedJar<J> {
    jar: J,
    codec: Codec,
    template: CookieBuilder,
    ttl: Option<Duration>,
    now: Option<u64>,
}

impl<J> fmt::Debug for ProtectedJar<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtectedJar")
            .field("format", &self.codec.format())
            .field("namespace", &self.codec.namespace())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// A value that verified, with its claims and the key that verified it.
///
/// # Example
///
/// ```
/// use keepsake::{cookies::CookieJar, key::{Key, KeyRing}};
///
/// let ring = KeyRing::new(Key::generate());
/// let mut jar = CookieJar::new();
/// jar.signed_mut(&ring).at(1_000).insert("n", &5)?;
/// let verified = jar.signed(&ring).at(1_001).try_get::<i32>("n")?.unwrap();
/// assert_eq!(*verified.value(), 5);
/// assert_eq!(verified.claims().issued_at(), 1_000);
/// assert!(!verified.key_used().is_fallback());
/// assert_eq!(verified.into_value(), 5);
/// # Ok::<(), keepsake::cookies::CookieError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<T> {
    value: T,
    claims: Claims,
    key_used: KeyUsed,
}

impl<T> Verified<T> {
    /// The value.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{cookies::CookieJar, key::{Key, KeyRing}};
    /// # let ring = KeyRing::new(Key::generate());
    /// # let mut jar = CookieJar::new();
    /// jar.signed_mut(&ring).insert("n", "x")?;
    /// assert_eq!(jar.signed(&ring).try_get::<String>("n")?.unwrap().value(), "x");
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The value, by value.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{cookies::CookieJar, key::{Key, KeyRing}};
    /// # let ring = KeyRing::new(Key::generate());
    /// # let mut jar = CookieJar::new();
    /// jar.signed_mut(&ring).insert("n", &[1, 2])?;
    /// assert_eq!(jar.signed(&ring).try_get::<Vec<u8>>("n")?.unwrap().into_value(), [1, 2]);
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn into_value(self) -> T {
        self.value
    }

    /// When the value was issued and when it expires.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{cookies::CookieJar, key::{Key, KeyRing}};
    /// # let ring = KeyRing::new(Key::generate());
    /// # let mut jar = CookieJar::new();
    /// jar.signed_mut(&ring).at(100).insert("n", &1)?;
    /// let claims = jar.signed(&ring).at(100).try_get::<u8>("n")?.unwrap().claims();
    /// assert_eq!(claims.expires_at(), Some(100 + 30 * 86_400));
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn claims(&self) -> Claims {
        self.claims
    }

    /// Which key verified the value; a fallback means it should be
    /// [renewed](ProtectedJar::renew).
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{codec::KeyUsed, cookies::CookieJar, key::{Key, KeyRing}};
    /// # let ring = KeyRing::new(Key::generate());
    /// # let mut jar = CookieJar::new();
    /// jar.signed_mut(&ring).insert("n", &1)?;
    /// assert_eq!(jar.signed(&ring).try_get::<u8>("n")?.unwrap().key_used(), KeyUsed::Current);
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn key_used(&self) -> KeyUsed {
        self.key_used
    }
}

impl<J> ProtectedJar<J> {
    pub(super) fn new(jar: J, format: Format, ring: &KeyRing) -> Self {
        Self {
            jar,
            codec: Codec::new(format, ring.clone()),
            template: Cookie::build("", ""),
            ttl: Some(DEFAULT_TTL),
            now: None,
        }
    }

    /// Uses `namespace` (default [`Namespace::Local`]).
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::{cookies::CookieJar, key::{Key, KeyRing, Namespace}};
    ///
    /// let ring = KeyRing::new(Key::generate());
    /// let mut jar = CookieJar::new();
    /// jar.private_mut(&ring).namespace(Namespace::Shared).insert("a", &1)?;
    /// assert_eq!(jar.private(&ring).shared().get::<u8>("a"), Some(1));
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    #[must_use]
    pub fn namespace(mut self, namespace: Namespace) -> Self {
        self.codec = self.codec.with_namespace(namespace);
        self
    }

    /// Uses the [shared](Namespace::Shared) namespace.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{cookies::CookieJar, key::{Key, KeyRing}};
    /// # let ring = KeyRing::new(Key::generate());
    /// let mut jar = CookieJar::new();
    /// jar.signed_mut(&ring).shared().insert("a", &1)?;
    /// assert_eq!(jar.signed(&ring).get::<u8>("a"), None);
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    #[must_use]
    pub fn shared(self) -> Self {
        self.namespace(Namespace::Shared)
    }

    /// How long values written through this view stay valid (default
    /// [`DEFAULT_TTL`]). The expiry goes inside the protected value and into
    /// `Max-Age`. `None` makes a browser-session cookie whose value has no
    /// expiry of its own.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use keepsake::{cookies::CookieJar, key::{Key, KeyRing}};
    /// # let ring = KeyRing::new(Key::generate());
    /// let mut jar = CookieJar::new();
    /// jar.signed_mut(&ring).ttl(Some(Duration::from_secs(60))).insert("a", &1)?;
    /// assert_eq!(jar.delta().next().unwrap().max_age(), Some(Duration::from_secs(60)));
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    #[must_use]
    pub fn ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    /// The attributes (path, domain, prefix, `SameSite`, ...) of cookies
    /// written through this view; the builder's name and value are ignored.
    /// Default: the secure defaults of [`Cookie::build`].
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{cookies::{Cookie, CookieJar, Prefix}, key::{Key, KeyRing}};
    /// # let ring = KeyRing::new(Key::generate());
    /// let mut jar = CookieJar::new();
    /// jar.signed_mut(&ring).attributes(Cookie::build("", "").prefix(Prefix::Host)).insert("id", &7)?;
    /// assert_eq!(jar.delta().next().unwrap().name(), "__Host-id");
    /// assert_eq!(jar.signed(&ring).attributes(Cookie::build("", "").prefix(Prefix::Host)).get::<u8>("id"), Some(7));
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    #[must_use]
    pub fn attributes(mut self, template: CookieBuilder) -> Self {
        self.template = template;
        self
    }

    /// Uses `now` (Unix seconds) instead of the system clock, for tests and
    /// tools.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{cookies::CookieJar, key::{Key, KeyRing}};
    /// # let ring = KeyRing::new(Key::generate());
    /// let mut jar = CookieJar::new();
    /// jar.signed_mut(&ring).at(0).insert("a", &1)?;
    /// assert_eq!(jar.signed(&ring).at(30 * 86_400).get::<u8>("a"), None); // expired
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    #[must_use]
    pub fn at(mut self, now: u64) -> Self {
        self.now = Some(now);
        self
    }

    fn now(&self) -> u64 {
        self.now.unwrap_or_else(unix_now)
    }

    fn full_name(&self, name: &str) -> String {
        self.template.clone().name(name).full_name()
    }
}

impl<J: Borrow<CookieJar>> ProtectedJar<J> {
    /// The value of cookie `name`, if one verifies and holds a `T`.
    ///
    /// Missing, tampered, expired, wrong-key, wrong-namespace and ambiguous
    /// cookies all give `None`; [`try_get`](ProtectedJar::try_get) says why.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{cookies::CookieJar, key::{Key, KeyRing}};
    /// # let ring = KeyRing::new(Key::generate());
    /// let mut jar = CookieJar::new();
    /// jar.signed_mut(&ring).insert("a", &1)?;
    /// assert_eq!(jar.signed(&ring).get::<u8>("a"), Some(1));
    /// assert_eq!(jar.signed(&ring).get::<String>("a"), None); // not a string
    /// assert_eq!(jar.private(&ring).get::<u8>("a"), None); // not sealed
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        self.try_get(name).ok().flatten().map(Verified::into_value)
    }

    /// The verified value of cookie `name` with its claims, `Ok(None)` when
    /// there is no such cookie, or why it was refused.
    ///
    /// A value set or removed in this jar wins over the request's. When the
    /// request carries several cookies of this name, exactly one must verify:
    /// two that verify with different values are
    /// [ambiguous](CookieError::Ambiguous) (cookie tossing). So is a request
    /// with more than 16 different values of this name, whichever of them
    /// would verify: no browser sends that many, and checking each would let
    /// one request make the server do thousands of checks.
    ///
    /// # Errors
    ///
    /// [`CookieError::Decode`] if no cookie of that name verified (the first
    /// reason), [`CookieError::Ambiguous`], or [`CookieError::Json`] if the
    /// verified JSON is not a `T`.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::{codec::DecodeError, cookies::{CookieError, CookieJar}, key::{Key, KeyRing}};
    ///
    /// let ring = KeyRing::new(Key::generate());
    /// let jar = CookieJar::parse("a=s1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    /// let err = jar.signed(&ring).try_get::<u8>("a").unwrap_err();
    /// assert!(matches!(err, CookieError::Decode { source: DecodeError::BadSignature, .. }));
    /// assert!(jar.signed(&ring).try_get::<u8>("b")?.is_none());
    /// # Ok::<(), CookieError>(())
    /// ```
    pub fn try_get<T: DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<Verified<T>>, CookieError> {
        let full = self.full_name(name);
        let Some(opened) = self.open(&full)? else {
            return Ok(None);
        };
        let value = serde_json::from_slice(opened.payload())
            .map_err(|source| CookieError::Json { name: full, source })?;
        Ok(Some(Verified {
            value,
            claims: opened.claims(),
            key_used: opened.key_used(),
        }))
    }

    /// Opens the one value of the cookie called `full` (prefix included).
    fn open(&self, full: &str) -> Result<Option<Opened>, CookieError> {
        let jar: &CookieJar = self.jar.borrow();
        let now = self.now();
        let decode = |value: &str| self.codec.decode(full, value, now);
        let decode_error = |source| CookieError::Decode {
            name: full.to_owned(),
            source,
        };
        if let Some(cookie) = jar.outgoing(full) {
            if cookie.is_removal() {
                return Ok(None);
            }
            return decode(cookie.value()).map(Some).map_err(decode_error);
        }
        // At most `MAX_SAME_NAME` values, so looking one up is cheap and
        // a header of thousands costs a scan, not a check of each against
        // all the others (or thousands of MACs).
        let mut seen: Vec<&str> = Vec::with_capacity(4);
        let mut verified: Option<Opened> = None;
        let mut first_error = None;
        for value in jar.get_all(full) {
            if seen.contains(&value) {
                continue;
            }
            if seen.len() == MAX_SAME_NAME {
                return Err(CookieError::Ambiguous {
                    name: full.to_owned(),
                });
            }
            seen.push(value);
            match decode(value) {
                Ok(_) if verified.is_some() => {
                    return Err(CookieError::Ambiguous {
                        name: full.to_owned(),
                    });
                }
                Ok(opened) => verified = Some(opened),
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        match (verified, first_error) {
            (Some(opened), _) => Ok(Some(opened)),
            (None, Some(err)) => Err(decode_error(err)),
            (None, None) => Ok(None),
        }
    }
}

impl<J: BorrowMut<CookieJar>> ProtectedJar<J> {
    /// Protects `value` as JSON and sets it as cookie `name`, valid for the
    /// view's [`ttl`](ProtectedJar::ttl).
    ///
    /// # Errors
    ///
    /// [`CookieError::TooLarge`] if the cookie would exceed 4096 bytes (name
    /// plus value), [`CookieError::Json`] if `value` cannot be serialized or
    /// nests arrays and objects deeper than [`get`](ProtectedJar::get) reads
    /// back (serde_json's limit, 127 levels), and the errors of
    /// [`CookieBuilder::build`] for a bad name or attributes. Like
    /// `serde_json`, a float that is not finite (NaN, ±infinity) is written
    /// as `null`.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::{cookies::{CookieError, CookieJar}, key::{Key, KeyRing}};
    ///
    /// let ring = KeyRing::new(Key::generate());
    /// let mut jar = CookieJar::new();
    /// jar.private_mut(&ring).insert("note", "short")?;
    /// let err = jar.private_mut(&ring).insert("note", &"x".repeat(4000)).unwrap_err();
    /// assert!(matches!(err, CookieError::TooLarge { .. }));
    /// // The failed insert changed nothing.
    /// assert_eq!(jar.private(&ring).get::<String>("note").as_deref(), Some("short"));
    /// # Ok::<(), CookieError>(())
    /// ```
    pub fn insert<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<(), CookieError> {
        let full = self.full_name(name);
        let payload = serde_json::to_vec(value)
            .and_then(|payload| readable(&payload).map(|()| payload))
            .map_err(|source| CookieError::Json {
                name: full.clone(),
                source,
            })?;
        let now = self.now();
        // Rounded up as `Max-Age` is: a TTL under a second must not make a
        // value that is expired as soon as it is written.
        let claims = self.ttl.map_or(Claims::new(now), |ttl| {
            Claims::new(now).with_ttl(whole_secs_rounded_up(ttl))
        });
        self.set_protected(name, &full, &payload, claims, self.ttl)
    }

    /// Removes cookie `name`, with the view's path and domain.
    ///
    /// # Errors
    ///
    /// The errors of [`CookieBuilder::build`] for a bad name or attributes.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{cookies::CookieJar, key::{Key, KeyRing}};
    /// # let ring = KeyRing::new(Key::generate());
    /// let mut jar = CookieJar::new();
    /// jar.signed_mut(&ring).insert("a", &1)?;
    /// jar.signed_mut(&ring).remove("a")?;
    /// assert_eq!(jar.signed(&ring).get::<u8>("a"), None);
    /// assert!(jar.delta().next().unwrap().is_removal());
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn remove(&mut self, name: &str) -> Result<(), CookieError> {
        let cookie = self.template.clone().name(name).value("").build()?;
        self.jar.borrow_mut().remove(cookie);
        Ok(())
    }

    /// Re-issues cookie `name` under the current key if only a fallback key
    /// verified it, keeping its payload, issue time and expiry. Returns
    /// whether it did.
    ///
    /// A value that does not verify (forged, expired, or signed with a key
    /// the ring no longer holds) or is ambiguous has nothing to renew: it
    /// is left as it is and `renew` returns `Ok(false)`, as
    /// [`get`](ProtectedJar::get) reads it as absent. So `renew(name)?` in
    /// a handler never refuses a visitor for a stale cookie; use
    /// [`try_get`](ProtectedJar::try_get) to tell why a value is not read.
    ///
    /// # Errors
    ///
    /// Those of [`insert`](ProtectedJar::insert), when the re-issued cookie
    /// cannot be written.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::{cookies::CookieJar, key::{Key, KeyRing}};
    ///
    /// let (old, new) = (Key::generate(), Key::generate());
    /// let mut before = CookieJar::new();
    /// before.signed_mut(&KeyRing::new(old.clone())).insert("a", &1)?;
    /// let value = before.delta().next().unwrap().value().to_owned();
    ///
    /// let ring = KeyRing::new(new).with_fallback(old);
    /// let mut jar = CookieJar::parse(&format!("a={value}"));
    /// assert!(jar.signed_mut(&ring).renew("a")?);
    /// assert!(!jar.signed_mut(&ring).renew("a")?); // already under the current key
    ///
    /// // Once the old key is retired, the old value is a bad cookie: not
    /// // renewed, and not an error.
    /// let mut jar = CookieJar::parse(&format!("a={value}"));
    /// let retired = KeyRing::new(Key::generate());
    /// assert!(!jar.signed_mut(&retired).renew("a")?);
    /// assert_eq!(jar.delta().count(), 0);
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn renew(&mut self, name: &str) -> Result<bool, CookieError> {
        let full = self.full_name(name);
        let Ok(Some(opened)) = self.open(&full) else {
            return Ok(false);
        };
        if !opened.key_used().is_fallback() {
            return Ok(false);
        }
        let now = self.now();
        let claims = opened.claims();
        let max_age = claims
            .expires_at()
            .map(|expires_at| Duration::from_secs(expires_at.saturating_sub(now)));
        self.set_protected(name, &full, opened.payload(), claims, max_age)?;
        Ok(true)
    }

    fn set_protected(
        &mut self,
        name: &str,
        full: &str,
        payload: &[u8],
        claims: Claims,
        max_age: Option<Duration>,
    ) -> Result<(), CookieError> {
        let value = self
            .codec
            .encode(full, payload, claims)
            .map_err(|err| match err {
                EncodeError::TooLarge { name, size, limit } => {
                    CookieError::TooLarge { name, size, limit }
                }
                source => CookieError::Encode {
                    name: full.to_owned(),
                    source,
                },
            })?;
        let cookie = self
            .template
            .clone()
            .name(name)
            .value(value)
            .max_age(max_age)
            .build()?;
        self.jar.borrow_mut().add(cookie);
        Ok(())
    }
}

/// Checks that `payload`, JSON just written, reads back: serde_json reads
/// no more than 127 levels of arrays and objects, and writes any depth.
/// Parsed only when it could be that deep (a level needs a `[` or `{`),
/// which a value of a few fields never is.
fn readable(payload: &[u8]) -> Result<(), serde_json::Error> {
    let opening = payload.iter().filter(|&&b| b == b'[' || b == b'{').count();
    if opening >= 127 {
        // Into a `Value`: serde_json skips `IgnoredAny` without its depth
        // limit. Rare, so the allocation does not matter.
        serde_json::from_slice::<serde_json::Value>(payload).map_err(|_| {
            serde::ser::Error::custom(
                "it nests arrays and objects more than 127 deep, deeper than it can be read back",
            )
        })?;
    }
    Ok(())
}
