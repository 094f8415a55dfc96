//! Outgoing cookies: a builder with secure defaults that refuses invalid
//! combinations, and the validated [`Cookie`] it makes.

use std::{
    fmt::{self, Write as _},
    time::{Duration, SystemTime},
};

use http::HeaderValue;

use super::CookieError;
use crate::codec::MAX_COOKIE_SIZE;

/// The `SameSite` attribute.
///
/// # Example
///
/// ```
/// use keepsake::cookies::{Cookie, SameSite};
///
/// let cookie = Cookie::build("a", "b").same_site(Some(SameSite::Strict)).build()?;
/// assert!(cookie.to_string().contains("SameSite=Strict"));
/// # Ok::<(), keepsake::cookies::CookieError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SameSite {
    /// Sent only with same-site requests.
    Strict,
    /// Sent with same-site requests and top-level cross-site navigations
    /// (the default).
    Lax,
    /// Sent with every request; requires `Secure`.
    None,
}

/// A cookie-name prefix that browsers enforce (RFC 6265bis §4.1.3).
///
/// The builder also checks the newer `__Http-` and `__Host-Http-`
/// prefixes, written into the name: both need `HttpOnly` and `Secure`,
/// and `__Host-Http-` also what `__Host-` needs.
///
/// # Example
///
/// ```
/// use keepsake::cookies::{Cookie, Prefix};
///
/// let cookie = Cookie::build("id", "1").prefix(Prefix::Host).build()?;
/// assert_eq!(cookie.name(), "__Host-id");
/// # Ok::<(), keepsake::cookies::CookieError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prefix {
    /// `__Host-`: `Secure`, `Path=/` and no `Domain`, so the cookie belongs
    /// to exactly one host and no subdomain can overwrite it.
    Host,
    /// `__Secure-`: `Secure` is required.
    Secure,
}

impl Prefix {
    /// The text the prefix adds in front of the cookie name.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(keepsake::cookies::Prefix::Secure.as_str(), "__Secure-");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Host => "__Host-",
            Self::Secure => "__Secure-",
        }
    }

    /// The prefix a full cookie name starts with, compared without regard to
    /// ASCII case, as browsers do.
    fn of(name: &str) -> Option<Self> {
        [Self::Host, Self::Secure].into_iter().find(|prefix| {
            name.get(..prefix.as_str().len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix.as_str()))
        })
    }
}

/// Builds a [`Cookie`] for a `Set-Cookie` header.
///
/// The defaults are the secure ones: `Path=/`, `Secure`, `HttpOnly`,
/// `SameSite=Lax`, no `Domain` (host-only), no `Max-Age` or `Expires` (a
/// browser-session cookie). [`build`](CookieBuilder::build) refuses names and
/// values that are not valid in a cookie, combinations browsers would reject,
/// and cookies over [`MAX_COOKIE_SIZE`] bytes.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use keepsake::cookies::{Cookie, SameSite};
///
/// let cookie = Cookie::build("lang", "en")
///     .path("/docs")
///     .max_age(Duration::from_secs(3600))
///     .same_site(Some(SameSite::Strict))
///     .build()?;
/// assert_eq!(
///     cookie.to_string(),
///     "lang=en; HttpOnly; SameSite=Strict; Secure; Path=/docs; Max-Age=3600"
/// );
/// # Ok::<(), keepsake::cookies::CookieError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct CookieBuilder {
    name: String,
    value: String,
    path: Option<String>,
    domain: Option<String>,
    max_age: Option<Duration>,
    expires: Option<SystemTime>,
    secure: bool,
    http_only: bool,
    same_site: Option<SameSite>,
    partitioned: bool,
    prefix: Option<Prefix>,
}

/// Shows the attributes but not the value, which may be a bearer token
/// (see [`Cookie`]'s `Debug`).
impl fmt::Debug for CookieBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.debug_fields(&mut f.debug_struct("CookieBuilder"), &self.name)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl CookieBuilder {
    /// The fields `Debug` shows of a builder or a [`Cookie`] (named `name`),
    /// the value redacted.
    fn debug_fields<'a, 'b, 'c>(
        &self,
        out: &'a mut fmt::DebugStruct<'b, 'c>,
        name: &str,
    ) -> &'a mut fmt::DebugStruct<'b, 'c> {
        out.field("name", &name)
            .field("value", &Redacted(&self.value))
            .field("path", &self.path)
            .field("domain", &self.domain)
            .field("max_age", &self.max_age)
            .field("expires", &self.expires)
            .field("secure", &self.secure)
            .field("http_only", &self.http_only)
            .field("same_site", &self.same_site)
            .field("partitioned", &self.partitioned)
    }
}

/// A cookie value in `Debug` output: its length, not its bytes (an empty
/// value, as a removal sends, is shown as it is). Session ids, signed
/// values and anything else an app keeps in a cookie may be a bearer
/// token, and `Debug` output ends up in logs.
pub(super) struct Redacted<'a>(pub(super) &'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            write!(f, "<redacted, {} bytes>", self.0.len())
        }
    }
}

impl CookieBuilder {
    pub(crate) fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
            path: Some("/".to_owned()),
            domain: None,
            max_age: None,
            expires: None,
            secure: true,
            http_only: true,
            same_site: Some(SameSite::Lax),
            partitioned: false,
            prefix: None,
        }
    }

    /// Sets the name (without any [`Prefix`]).
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::cookies::Cookie;
    /// assert_eq!(Cookie::build("a", "1").name("b").build()?.name(), "b");
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the value. It must consist of RFC 6265 cookie-octets (printable
    /// ASCII except space, `"`, `,`, `;` and `\`); encode anything else first,
    /// for example with base64.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::cookies::Cookie;
    /// assert_eq!(Cookie::build("a", "1").value("2").build()?.value(), "2");
    /// assert!(Cookie::build("a", "two words").build().is_err());
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn value(mut self, value: impl Into<String>) -> Self {
        self.value = value.into();
        self
    }

    /// Sets `Path` (default `/`); `None` leaves it out, so the browser uses
    /// the directory of the request URL.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::cookies::Cookie;
    /// let cookie = Cookie::build("a", "1").path(None).build()?;
    /// assert!(!cookie.to_string().contains("Path"));
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn path(mut self, path: impl Into<Option<&'static str>>) -> Self {
        self.path = path.into().map(str::to_owned);
        self
    }

    /// Sets `Path` from an owned string.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::cookies::Cookie;
    /// let prefix = String::from("/app");
    /// assert_eq!(Cookie::build("a", "1").path_owned(prefix).build()?.path(), Some("/app"));
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn path_owned(mut self, path: String) -> Self {
        self.path = Some(path);
        self
    }

    /// Sets `Domain`, sharing the cookie with subdomains (default: none, a
    /// host-only cookie). It is kept as browsers keep it: without a leading
    /// dot, in lowercase.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::cookies::Cookie;
    /// let cookie = Cookie::build("a", "1").domain(".Example.com").build()?;
    /// assert_eq!(cookie.domain(), Some("example.com"));
    /// assert!(cookie.to_string().contains("Domain=example.com"));
    /// assert!(Cookie::build("a", "1").domain("example..com").build().is_err());
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Sets `Max-Age` (default: none, a browser-session cookie). It is
    /// written in whole seconds, rounded up: a part of a second would
    /// otherwise become `Max-Age=0`, which deletes the cookie.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use keepsake::cookies::Cookie;
    /// let cookie = Cookie::build("a", "1").max_age(Duration::from_secs(60)).build()?;
    /// assert_eq!(cookie.max_age(), Some(Duration::from_secs(60)));
    /// let brief = Cookie::build("a", "1").max_age(Duration::from_millis(300)).build()?;
    /// assert!(brief.to_string().ends_with("Max-Age=1"));
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn max_age(mut self, max_age: impl Into<Option<Duration>>) -> Self {
        self.max_age = max_age.into();
        self
    }

    /// Sets `Expires` (default: none). Browsers prefer `Max-Age` when both
    /// are present.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::{Duration, UNIX_EPOCH};
    /// # use keepsake::cookies::Cookie;
    /// let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    /// let cookie = Cookie::build("a", "1").expires(at).build()?;
    /// assert!(cookie.to_string().contains("Expires=Tue, 14 Nov 2023 22:13:20 GMT"));
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn expires(mut self, at: impl Into<Option<SystemTime>>) -> Self {
        self.expires = at.into();
        self
    }

    /// Sets `Secure` (default `true`).
    ///
    /// # ⚠️ Warning
    ///
    /// Without `Secure` the cookie also travels over plain HTTP, where anyone
    /// on the path can read or replace it. Turn it off only for local
    /// development over `http://`.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::cookies::Cookie;
    /// assert!(!Cookie::build("a", "1").secure(false).build()?.to_string().contains("Secure"));
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Sets `HttpOnly` (default `true`).
    ///
    /// # ⚠️ Warning
    ///
    /// Without `HttpOnly`, page scripts can read the cookie, so one
    /// cross-site-scripting bug is enough to steal it.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::cookies::Cookie;
    /// assert!(!Cookie::build("a", "1").http_only(false).build()?.to_string().contains("HttpOnly"));
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }

    /// Sets `SameSite` (default `Lax`); `None` leaves the attribute out.
    ///
    /// # ⚠️ Warning
    ///
    /// `SameSite=None` sends the cookie with cross-site requests, which
    /// exposes the app to cross-site request forgery unless it has its own
    /// defence.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::cookies::{Cookie, SameSite};
    /// let cookie = Cookie::build("a", "1").same_site(Some(SameSite::None)).build()?;
    /// assert!(cookie.to_string().contains("SameSite=None"));
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn same_site(mut self, same_site: Option<SameSite>) -> Self {
        self.same_site = same_site;
        self
    }

    /// Sets `Partitioned` (CHIPS; default `false`). Requires `Secure`.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::cookies::Cookie;
    /// assert!(Cookie::build("a", "1").partitioned(true).build()?.to_string().contains("Partitioned"));
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn partitioned(mut self, partitioned: bool) -> Self {
        self.partitioned = partitioned;
        self
    }

    /// Puts a [`Prefix`] in front of the name (default: none).
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::cookies::{Cookie, Prefix};
    /// assert_eq!(Cookie::build("a", "1").prefix(Prefix::Secure).build()?.name(), "__Secure-a");
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn prefix(mut self, prefix: impl Into<Option<Prefix>>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The full cookie name, with the prefix.
    pub(crate) fn full_name(&self) -> String {
        match self.prefix {
            Some(prefix) => format!("{}{}", prefix.as_str(), self.name),
            None => self.name.clone(),
        }
    }

    /// Checks everything and makes the cookie.
    ///
    /// # Errors
    ///
    /// A [`CookieError`] naming the first problem: an invalid name, value,
    /// path or domain; `__Host-`/`__Secure-`, `Partitioned` or
    /// `SameSite=None` without `Secure`; `__Host-` with a `Domain` or a path
    /// other than `/`; or a name plus value over [`MAX_COOKIE_SIZE`] bytes.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::cookies::{Cookie, CookieError, Prefix};
    ///
    /// let err = Cookie::build("id", "1").prefix(Prefix::Host).domain("example.com").build();
    /// assert!(matches!(err, Err(CookieError::HostPrefixDomain { .. })));
    /// ```
    pub fn build(mut self) -> Result<Cookie, CookieError> {
        let name = self.full_name();
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(CookieError::InvalidName { name });
        }
        if !is_cookie_value(&self.value) {
            return Err(CookieError::InvalidValue { name });
        }
        if let Some(path) = &self.path
            && (!path.starts_with('/')
                || path.len() > MAX_ATTRIBUTE_LEN
                || !path.bytes().all(is_attribute_byte))
        {
            return Err(CookieError::InvalidPath { path: path.clone() });
        }
        if let Some(domain) = &mut self.domain {
            let host = domain.strip_prefix('.').unwrap_or(domain);
            if !is_host_name(host) {
                return Err(CookieError::InvalidDomain {
                    domain: domain.clone(),
                });
            }
            *domain = host.to_ascii_lowercase();
        }
        let insecure = |requirement| {
            if self.secure {
                Ok(())
            } else {
                Err(CookieError::RequiresSecure {
                    name: name.clone(),
                    requirement,
                })
            }
        };
        match Prefix::of(&name) {
            Some(Prefix::Host) => {
                insecure("the `__Host-` prefix")?;
                if self.domain.is_some() {
                    return Err(CookieError::HostPrefixDomain { name });
                }
                if self.path.as_deref() != Some("/") {
                    return Err(CookieError::HostPrefixPath { name });
                }
            }
            Some(Prefix::Secure) => insecure("the `__Secure-` prefix")?,
            None => {}
        }
        let lower = name.get(..12).unwrap_or(&name).to_ascii_lowercase();
        if lower.starts_with("__http-") || lower.starts_with("__host-http-") {
            insecure("the `__Http-` prefix")?;
            if !self.http_only {
                return Err(CookieError::HttpPrefixNeedsHttpOnly { name });
            }
        }
        if self.partitioned {
            insecure("`Partitioned`")?;
        }
        if self.same_site == Some(SameSite::None) {
            insecure("`SameSite=None`")?;
        }
        let size = name.len() + self.value.len();
        if size > MAX_COOKIE_SIZE {
            return Err(CookieError::TooLarge {
                name,
                size,
                limit: MAX_COOKIE_SIZE,
            });
        }
        Ok(Cookie {
            name,
            builder: self,
        })
    }
}

/// The `Set-Cookie` header of one cookie whose attributes never change and
/// whose value and `Max-Age` do (the session cookie): made once from a
/// checked [`CookieBuilder`], then written with a few string copies instead
/// of cloning, checking and formatting a whole cookie on every response.
/// It writes exactly what [`Cookie::to_header_value`] would.
#[derive(Debug, Clone)]
pub(crate) struct SetCookieTemplate {
    /// The full name and `=`.
    head: String,
    /// The attributes that come before `Max-Age`.
    before_max_age: String,
    /// The attributes that come after it.
    after_max_age: String,
    /// The header that removes the cookie.
    removal: HeaderValue,
}

impl SetCookieTemplate {
    /// The template of `builder`'s cookie; its value is ignored.
    pub(crate) fn new(builder: &CookieBuilder) -> Result<Self, CookieError> {
        // `Max-Age=1` is written where it belongs; the header is split there.
        const MARK: &str = "; Max-Age=1";
        let probe = builder
            .clone()
            .value("")
            .max_age(Some(Duration::from_secs(1)));
        let cookie = probe.clone().build()?;
        let head = format!("{}=", cookie.name());
        let text = cookie.to_string();
        let (before, after) = text
            .strip_prefix(head.as_str())
            .and_then(|rest| rest.split_once(MARK))
            .ok_or_else(|| CookieError::InvalidName {
                name: cookie.name().to_owned(),
            })?;
        Ok(Self {
            before_max_age: before.to_owned(),
            after_max_age: after.to_owned(),
            removal: probe
                .max_age(None)
                .build()?
                .into_removal()
                .to_header_value(),
            head,
        })
    }

    /// The header that sets the cookie to `value`, with `Max-Age` if
    /// `max_age` is given; `None` if `value` is not a valid cookie value or
    /// the cookie would be over [`MAX_COOKIE_SIZE`] bytes.
    pub(crate) fn header(&self, value: &str, max_age: Option<Duration>) -> Option<HeaderValue> {
        let name_len = self.head.len() - 1;
        if name_len + value.len() > MAX_COOKIE_SIZE || !is_cookie_value(value) {
            return None;
        }
        let mut text = String::with_capacity(
            self.head.len()
                + value.len()
                + self.before_max_age.len()
                + self.after_max_age.len()
                + 32,
        );
        text.push_str(&self.head);
        text.push_str(value);
        text.push_str(&self.before_max_age);
        if let Some(max_age) = max_age {
            // Writing to a `String` cannot fail.
            let _ = write!(text, "; Max-Age={}", max_age_secs(max_age));
        }
        text.push_str(&self.after_max_age);
        HeaderValue::try_from(text).ok()
    }

    /// The header that removes the cookie (`Max-Age=0`, an `Expires` in the
    /// past, and the same `Path` and `Domain`).
    pub(crate) fn removal(&self) -> HeaderValue {
        self.removal.clone()
    }
}

/// RFC 7230 `token` characters, which RFC 6265 requires of cookie names.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 6265 `cookie-octet`.
fn is_cookie_octet(b: u8) -> bool {
    COOKIE_OCTETS[usize::from(b)]
}

/// [`is_cookie_octet`] as a table: one load per byte of a value that may be
/// 4 KB long, on every response that sets the session cookie.
static COOKIE_OCTETS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E);
        b += 1;
    }
    table
};

/// A cookie value: cookie-octets, optionally inside double quotes.
fn is_cookie_value(value: &str) -> bool {
    let inner = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    inner.bytes().all(is_cookie_octet)
}

/// Characters allowed in `Path`: printable ASCII except `;`.
fn is_attribute_byte(b: u8) -> bool {
    (0x20..0x7F).contains(&b) && b != b';'
}

/// The longest attribute value browsers take (RFC 6265bis): a longer
/// `Path` is ignored, and the cookie gets the request's.
const MAX_ATTRIBUTE_LEN: usize = 1024;

/// Whether `host` is an ASCII host name a browser takes as `Domain`:
/// labels of 1 to 63 letters, digits and hyphens, not starting or ending
/// with a hyphen, separated by single dots, 253 bytes at most.
fn is_host_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `duration` in whole seconds, rounded up and saturating: how `Max-Age`
/// and the expiry inside a protected value are counted, so that both agree.
pub(super) fn whole_secs_rounded_up(duration: Duration) -> u64 {
    duration
        .as_secs()
        .saturating_add(u64::from(duration.subsec_nanos() > 0))
}

/// `Max-Age` in whole seconds, rounded up: a part of a second must not
/// become `Max-Age=0`, which deletes the cookie. `Duration::MAX` and other
/// lifetimes beyond what the attribute holds become its largest value
/// (browsers cap it at 400 days anyway), never a wrap to 0.
fn max_age_secs(max_age: Duration) -> i64 {
    i64::try_from(whole_secs_rounded_up(max_age)).unwrap_or(i64::MAX)
}

/// `at` as an `Expires` date, clamped to the years 1970 to 9999 that the
/// cookie date format can express.
fn http_date(at: SystemTime) -> time::OffsetDateTime {
    const LAST: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_secs()).unwrap_or(LAST))
        .min(LAST);
    time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// A validated cookie, ready to be sent in a `Set-Cookie` header.
///
/// Made by [`Cookie::build`]; its `Display` is the header value. Its
/// `Debug` shows the name and attributes but not the value, which may be a
/// bearer token (a session id, a signed value): only the value's length.
///
/// # Example
///
/// ```
/// use keepsake::cookies::Cookie;
///
/// let cookie = Cookie::build("theme", "dark").build()?;
/// assert_eq!(cookie.name(), "theme");
/// assert_eq!(cookie.value(), "dark");
/// assert_eq!(cookie.to_string(), "theme=dark; HttpOnly; SameSite=Lax; Secure; Path=/");
/// let debug = format!("{cookie:?}");
/// assert!(debug.contains("\"theme\"") && debug.contains("<redacted, 4 bytes>"));
/// assert!(!debug.contains("dark"));
/// # Ok::<(), keepsake::cookies::CookieError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Cookie {
    /// The full name, prefix included.
    name: String,
    builder: CookieBuilder,
}

impl Cookie {
    /// Starts a cookie called `name` with `value`, with the secure defaults
    /// described on [`CookieBuilder`].
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::cookies::Cookie;
    /// let cookie = Cookie::build("a", "1").build()?;
    /// assert!(cookie.is_secure() && cookie.is_http_only());
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn build(name: impl Into<String>, value: impl Into<String>) -> CookieBuilder {
        CookieBuilder::new(name, value)
    }

    /// The full name, prefix included.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::cookies::Cookie;
    /// assert_eq!(Cookie::build("a", "1").build()?.name(), "a");
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::cookies::Cookie;
    /// assert_eq!(Cookie::build("a", "1").build()?.value(), "1");
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn value(&self) -> &str {
        &self.builder.value
    }

    /// The `Path` attribute, if any.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::cookies::Cookie;
    /// assert_eq!(Cookie::build("a", "1").build()?.path(), Some("/"));
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn path(&self) -> Option<&str> {
        self.builder.path.as_deref()
    }

    /// The `Domain` attribute, if any.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::cookies::Cookie;
    /// assert_eq!(Cookie::build("a", "1").build()?.domain(), None);
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn domain(&self) -> Option<&str> {
        self.builder.domain.as_deref()
    }

    /// The `Max-Age` attribute, if any.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::cookies::Cookie;
    /// assert_eq!(Cookie::build("a", "1").build()?.max_age(), None);
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn max_age(&self) -> Option<Duration> {
        self.builder.max_age
    }

    /// Whether `Secure` is set.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::cookies::Cookie;
    /// assert!(Cookie::build("a", "1").build()?.is_secure());
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn is_secure(&self) -> bool {
        self.builder.secure
    }

    /// Whether `HttpOnly` is set.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::cookies::Cookie;
    /// assert!(Cookie::build("a", "1").build()?.is_http_only());
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn is_http_only(&self) -> bool {
        self.builder.http_only
    }

    /// Whether this cookie tells the browser to delete the cookie (empty
    /// value and `Max-Age=0`).
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::cookies::Cookie;
    /// let cookie = Cookie::build("a", "1").build()?;
    /// assert!(!cookie.is_removal());
    /// assert!(cookie.into_removal().is_removal());
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn is_removal(&self) -> bool {
        // `Max-Age=0` deletes the cookie in a browser, whatever its value.
        self.builder.max_age == Some(Duration::ZERO)
    }

    /// The cookie that deletes this one: same name, `Path`, `Domain`,
    /// `Secure`, `SameSite` and `Partitioned` (a browser only deletes a cookie
    /// whose path and domain match), an empty value, `Max-Age=0` and an
    /// `Expires` in 1970.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::cookies::Cookie;
    /// let cookie = Cookie::build("a", "1").path("/app").domain("example.com").build()?;
    /// assert_eq!(
    ///     cookie.into_removal().to_string(),
    ///     "a=; HttpOnly; SameSite=Lax; Secure; Path=/app; Domain=example.com; Max-Age=0; \
    ///      Expires=Thu, 01 Jan 1970 00:00:00 GMT"
    /// );
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    #[must_use]
    pub fn into_removal(mut self) -> Self {
        self.builder.value.clear();
        self.builder.max_age = Some(Duration::ZERO);
        self.builder.expires = Some(SystemTime::UNIX_EPOCH);
        self
    }

    /// The value for a `Set-Cookie` header.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::cookies::Cookie;
    /// let header = Cookie::build("a", "1").build()?.to_header_value();
    /// assert_eq!(header, "a=1; HttpOnly; SameSite=Lax; Secure; Path=/");
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn to_header_value(&self) -> HeaderValue {
        // Every part was checked to be printable ASCII by `build`.
        HeaderValue::try_from(self.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
    }

    /// The key under which a jar keeps at most one outgoing cookie.
    pub(crate) fn same_slot(&self, other: &Self) -> bool {
        self.name == other.name
            && self.builder.path == other.builder.path
            && self.builder.domain == other.builder.domain
    }
}

impl fmt::Debug for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.builder
            .debug_fields(&mut f.debug_struct("Cookie"), &self.name)
            .finish()
    }
}

impl fmt::Display for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.builder;
        let mut cookie = cookie::Cookie::new(self.name.as_str(), b.value.as_str());
        cookie.set_http_only(b.http_only.then_some(true));
        cookie.set_same_site(b.same_site.map(|same_site| match same_site {
            SameSite::Strict => cookie::SameSite::Strict,
            SameSite::Lax => cookie::SameSite::Lax,
            SameSite::None => cookie::SameSite::None,
        }));
        cookie.set_partitioned(b.partitioned.then_some(true));
        cookie.set_secure(Some(b.secure));
        if let Some(path) = &b.path {
            cookie.set_path(path.as_str());
        }
        if let Some(domain) = &b.domain {
            cookie.set_domain(domain.as_str());
        }
        if let Some(max_age) = b.max_age {
            cookie.set_max_age(time::Duration::seconds(max_age_secs(max_age)));
        }
        if let Some(expires) = b.expires {
            cookie.set_expires(http_date(expires));
        }
        // The cookie crate writes `Secure` only when set to `Some(true)`.
        fmt::Display::fmt(&cookie, f)
    }
}
