//! Cookies beside the session: read the request's cookies, set and remove
//! response cookies with every attribute, and signed or private values with
//! their own expiry.
//!
//! A [`CookieJar`] is made from a request's `Cookie` headers and collects the
//! cookies to send back. Plain values are read with [`CookieJar::get`] and set
//! with [`CookieJar::add`]; protected values go through a view:
//! [`CookieJar::signed`] / [`CookieJar::signed_mut`] (readable, tamper-proof)
//! and [`CookieJar::private`] / [`CookieJar::private_mut`] (encrypted). Views
//! store any serde value (nested at most 127 levels), bind it to its cookie name and
//! [`Namespace`](crate::key::Namespace), and give it an expiry inside the
//! protected payload (30 days unless said otherwise).
//!
//! # Example
//!
//! ```
//! use http::{header, HeaderMap, HeaderValue};
//! use keepsake::{cookies::{Cookie, CookieJar}, key::{Key, KeyRing}};
//!
//! let ring = KeyRing::new(Key::generate());
//!
//! // First response: set a plain cookie and a signed one.
//! let mut jar = CookieJar::new();
//! jar.add(Cookie::build("lang", "en").build()?);
//! jar.signed_mut(&ring).insert("theme", &"dark")?;
//! let mut response = HeaderMap::new();
//! jar.write_set_cookies(&mut response);
//! assert_eq!(response.get_all(header::SET_COOKIE).iter().count(), 2);
//!
//! // Next request: the browser sends the values back.
//! let sent: Vec<String> = jar.delta().map(|c| format!("{}={}", c.name(), c.value())).collect();
//! let mut request = HeaderMap::new();
//! request.insert(header::COOKIE, HeaderValue::from_str(&sent.join("; "))?);
//! let jar = CookieJar::from_headers(&request);
//! assert_eq!(jar.get("lang"), Some("en"));
//! assert_eq!(jar.signed(&ring).get::<String>("theme"), Some("dark".to_owned()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod builder;
mod protected;

use std::fmt;

use http::{HeaderMap, header};

use self::builder::Redacted;
pub(crate) use self::builder::SetCookieTemplate;

pub use self::{
    builder::{Cookie, CookieBuilder, Prefix, SameSite},
    protected::{DEFAULT_TTL, ProtectedJar, Verified},
};
use crate::{codec::Format, key::KeyRing};

/// Why a cookie could not be set or read.
///
/// # Example
///
/// ```
/// use keepsake::cookies::{Cookie, CookieError};
///
/// let err = Cookie::build("bad name", "v").build().unwrap_err();
/// assert!(matches!(err, CookieError::InvalidName { .. }));
/// assert_eq!(err.to_string(), "the cookie name \"bad name\" is not a valid token (letters, digits and !#$%&'*+-.^_`|~ only)");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CookieError {
    /// The name is empty or has characters a cookie name cannot have.
    #[error(
        "the cookie name {name:?} is not a valid token (letters, digits and \
         !#$%&'*+-.^_`|~ only)"
    )]
    InvalidName {
        /// The name, prefix included.
        name: String,
    },
    /// The value has characters a cookie value cannot have.
    #[error(
        "the value of cookie `{name}` has characters a cookie cannot carry \
         (space, `\"`, `,`, `;`, `\\` or non-ASCII); encode it first, for \
         example as base64"
    )]
    InvalidValue {
        /// The cookie name.
        name: String,
    },
    /// The path does not start with `/`, has `;` or control characters, or
    /// is over 1024 bytes (browsers ignore longer attribute values).
    #[error(
        "the cookie path {path:?} must start with `/`, hold only printable ASCII without `;`, \
         and be at most 1024 bytes"
    )]
    InvalidPath {
        /// The path given.
        path: String,
    },
    /// The domain is not a plain ASCII host name: labels of 1 to 63
    /// letters, digits and inner hyphens, separated by single dots (one
    /// leading dot is allowed and dropped), at most 253 bytes.
    #[error("the cookie domain {domain:?} is not a host name (use punycode for non-ASCII names)")]
    InvalidDomain {
        /// The domain given.
        domain: String,
    },
    /// An attribute or prefix that browsers only accept on `Secure` cookies.
    #[error("cookie `{name}`: {requirement} requires `Secure`, which is turned off")]
    RequiresSecure {
        /// The cookie name.
        name: String,
        /// What needed `Secure`.
        requirement: &'static str,
    },
    /// A `__Http-` or `__Host-Http-` cookie without `HttpOnly` (the
    /// prefixes of RFC 6265bis that promise the cookie was set by the
    /// server, not by a script).
    #[error("cookie `{name}`: its name's `Http-` prefix requires `HttpOnly`, which is turned off")]
    HttpPrefixNeedsHttpOnly {
        /// The cookie name.
        name: String,
    },
    /// A `__Host-` cookie with a `Domain`.
    #[error("cookie `{name}`: the `__Host-` prefix forbids a `Domain` attribute")]
    HostPrefixDomain {
        /// The cookie name.
        name: String,
    },
    /// A `__Host-` cookie with a path other than `/`.
    #[error("cookie `{name}`: the `__Host-` prefix requires `Path=/`")]
    HostPrefixPath {
        /// The cookie name.
        name: String,
    },
    /// Name plus value over [`MAX_COOKIE_SIZE`](crate::codec::MAX_COOKIE_SIZE)
    /// bytes: browsers would drop the cookie without a word.
    #[error(
        "the cookie `{name}` would be {size} bytes (name plus value), over the \
         {limit}-byte limit browsers keep; store less in it"
    )]
    TooLarge {
        /// The cookie name.
        name: String,
        /// Name plus value, in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The value could not be protected.
    #[error("could not protect the value of cookie `{name}`: {source}")]
    Encode {
        /// The cookie name.
        name: String,
        /// What went wrong.
        #[source]
        source: crate::codec::EncodeError,
    },
    /// The value could not be turned into JSON or nests deeper than a read
    /// accepts (127 levels of arrays and objects), or the JSON in a verified
    /// cookie is not of the type asked for.
    #[error("cookie `{name}`: {source}")]
    Json {
        /// The cookie name.
        name: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// A protected value did not verify.
    #[error("cookie `{name}`: {source}")]
    Decode {
        /// The cookie name.
        name: String,
        /// Why it did not verify.
        #[source]
        source: crate::codec::DecodeError,
    },
    /// Several cookies of this name verified, with different values: a sign
    /// of cookie tossing (a subdomain or an attacker planting a second
    /// cookie), so none of them is trusted. Also when the request carries
    /// more different values of this name than a browser sends (over 16):
    /// they are not checked one by one.
    #[error("the request carries several candidate cookies called `{name}`; none is used")]
    Ambiguous {
        /// The cookie name.
        name: String,
    },
}

/// The request's cookies and the cookies to send back.
///
/// Request cookies keep their order and duplicates (a browser may send two
/// cookies with one name, for different paths or domains). Outgoing cookies
/// are kept one per name, path and domain; adding another replaces it.
///
/// # Example
///
/// ```
/// use keepsake::cookies::{Cookie, CookieJar};
///
/// let mut jar = CookieJar::parse("a=1; b=2; a=3");
/// assert_eq!(jar.get("a"), Some("1"));
/// assert_eq!(jar.get_all("a").collect::<Vec<_>>(), ["1", "3"]);
///
/// jar.add(Cookie::build("b", "two").build()?);
/// assert_eq!(jar.get("b"), Some("two"));
/// jar.remove(Cookie::build("a", "").build()?);
/// assert_eq!(jar.get("a"), None);
/// assert_eq!(jar.delta().count(), 2);
/// # Ok::<(), keepsake::cookies::CookieError>(())
/// ```
///
/// Its `Debug` output shows names and attributes but never values, which
/// may be bearer tokens (the session cookie among them), so a jar can be
/// logged:
///
/// ```
/// let jar = keepsake::cookies::CookieJar::parse("session=s1.secret-token");
/// let debug = format!("{jar:?}");
/// assert!(debug.contains("session") && !debug.contains("secret-token"));
/// ```
#[derive(Clone, Default)]
#[must_use = "a `CookieJar` sends nothing unless its cookies are written to a response \
              (`write_set_cookies`, or returned from an axum handler)"]
pub struct CookieJar {
    request: Vec<(String, String)>,
    delta: Vec<Cookie>,
}

impl fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let request: Vec<_> = self
            .request
            .iter()
            .map(|(name, value)| (name, Redacted(value)))
            .collect();
        f.debug_struct("CookieJar")
            .field("request", &request)
            .field("delta", &self.delta)
            .finish()
    }
}

impl CookieJar {
    /// An empty jar.
    ///
    /// # Example
    ///
    /// ```
    /// let jar = keepsake::cookies::CookieJar::new();
    /// assert_eq!(jar.iter().count(), 0);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A jar holding the cookies of one `Cookie` header value. Pairs that do
    /// not parse (no `=`, an empty name) are skipped; nothing in the input can
    /// make this fail or panic.
    ///
    /// # Example
    ///
    /// ```
    /// let jar = keepsake::cookies::CookieJar::parse("a=1; junk; =x; b=\"q\"");
    /// assert_eq!(jar.iter().collect::<Vec<_>>(), [("a", "1"), ("b", "\"q\"")]);
    /// ```
    pub fn parse(header: &str) -> Self {
        let mut jar = Self::new();
        jar.add_header(header);
        jar
    }

    /// A jar holding the cookies of every `Cookie` header in `headers`
    /// (HTTP/2 may split them over several). Browsers send cookie bytes as
    /// they were set, UTF-8 or not: UTF-8 is kept as it is, and any byte
    /// that is not UTF-8 becomes U+FFFD, so one such cookie costs no other.
    ///
    /// # Example
    ///
    /// ```
    /// use http::{header::COOKIE, HeaderMap, HeaderValue};
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.append(COOKIE, HeaderValue::from_static("a=1"));
    /// headers.append(COOKIE, HeaderValue::from_bytes(b"name=Jos\xc3\xa9; b=2")?);
    /// headers.append(COOKIE, HeaderValue::from_bytes(b"latin1=Jos\xe9; c=3")?);
    /// let jar = keepsake::cookies::CookieJar::from_headers(&headers);
    /// assert_eq!(jar.get("name"), Some("José"));
    /// assert_eq!((jar.get("b"), jar.get("c")), (Some("2"), Some("3")));
    /// assert_eq!(jar.get("latin1"), Some("Jos\u{fffd}"));
    /// # Ok::<(), http::header::InvalidHeaderValue>(())
    /// ```
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut jar = Self::new();
        for value in headers.get_all(header::COOKIE) {
            jar.add_header(&String::from_utf8_lossy(value.as_bytes()));
        }
        jar
    }

    fn add_header(&mut self, header: &str) {
        for parsed in cookie::Cookie::split_parse(header).flatten() {
            self.request
                .push((parsed.name().to_owned(), parsed.value().to_owned()));
        }
    }

    /// The value of the cookie called `name`: the one set or removed in this
    /// jar if any, else the first one the request carried.
    ///
    /// # Example
    ///
    /// ```
    /// let jar = keepsake::cookies::CookieJar::parse("a=1");
    /// assert_eq!(jar.get("a"), Some("1"));
    /// assert_eq!(jar.get("A"), None);
    /// ```
    pub fn get(&self, name: &str) -> Option<&str> {
        match self.outgoing(name) {
            Some(cookie) if cookie.is_removal() => None,
            Some(cookie) => Some(cookie.value()),
            None => self
                .request
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, value)| value.as_str()),
        }
    }

    /// Every value the request carried for `name`, in order.
    ///
    /// # Example
    ///
    /// ```
    /// let jar = keepsake::cookies::CookieJar::parse("a=1; a=2");
    /// assert_eq!(jar.get_all("a").collect::<Vec<_>>(), ["1", "2"]);
    /// ```
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.request
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }

    /// The request's cookies as `(name, value)` pairs, in order.
    ///
    /// # Example
    ///
    /// ```
    /// let jar = keepsake::cookies::CookieJar::parse("a=1; b=2");
    /// assert_eq!(jar.iter().map(|(name, _)| name).collect::<Vec<_>>(), ["a", "b"]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.request
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// Sends `cookie` with the response, replacing any outgoing cookie with
    /// the same name, path and domain.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::cookies::{Cookie, CookieJar};
    ///
    /// let mut jar = CookieJar::new();
    /// jar.add(Cookie::build("a", "1").build()?);
    /// jar.add(Cookie::build("a", "2").build()?);
    /// assert_eq!(jar.delta().map(|c| c.value()).collect::<Vec<_>>(), ["2"]);
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn add(&mut self, cookie: Cookie) {
        self.delta.retain(|existing| !existing.same_slot(&cookie));
        self.delta.push(cookie);
    }

    /// Tells the browser to delete `cookie`: sends its
    /// [removal](Cookie::into_removal), which repeats its path and domain (a
    /// browser deletes only a cookie whose path and domain match).
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::cookies::{Cookie, CookieJar};
    ///
    /// let mut jar = CookieJar::parse("a=1");
    /// jar.remove(Cookie::build("a", "").path("/app").build()?);
    /// let sent = jar.delta().next().unwrap().to_string();
    /// assert!(sent.starts_with("a=;") && sent.contains("Path=/app") && sent.contains("Max-Age=0"));
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn remove(&mut self, cookie: Cookie) {
        self.add(cookie.into_removal());
    }

    /// The cookies to send with the response, in the order they were added.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::cookies::{Cookie, CookieJar};
    ///
    /// let mut jar = CookieJar::parse("a=1");
    /// assert_eq!(jar.delta().count(), 0);
    /// jar.add(Cookie::build("b", "2").build()?);
    /// assert_eq!(jar.delta().count(), 1);
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn delta(&self) -> impl Iterator<Item = &Cookie> + '_ {
        self.delta.iter()
    }

    /// Appends one `Set-Cookie` header per outgoing cookie to `headers`.
    ///
    /// # Example
    ///
    /// ```
    /// use http::{header::SET_COOKIE, HeaderMap};
    /// use keepsake::cookies::{Cookie, CookieJar};
    ///
    /// let mut jar = CookieJar::new();
    /// jar.add(Cookie::build("a", "1").build()?);
    /// let mut headers = HeaderMap::new();
    /// jar.write_set_cookies(&mut headers);
    /// assert_eq!(headers[SET_COOKIE], "a=1; HttpOnly; SameSite=Lax; Secure; Path=/");
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn write_set_cookies(&self, headers: &mut HeaderMap) {
        for cookie in &self.delta {
            headers.append(header::SET_COOKIE, cookie.to_header_value());
        }
    }

    /// The last outgoing cookie called `name`, if any.
    fn outgoing(&self, name: &str) -> Option<&Cookie> {
        self.delta.iter().rev().find(|cookie| cookie.name() == name)
    }

    /// A read-only view of signed values, in the local namespace.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::{cookies::CookieJar, key::{Key, KeyRing}};
    ///
    /// let ring = KeyRing::new(Key::generate());
    /// let jar = CookieJar::parse("theme=forged");
    /// assert_eq!(jar.signed(&ring).get::<String>("theme"), None);
    /// ```
    pub fn signed(&self, ring: &KeyRing) -> ProtectedJar<&Self> {
        ProtectedJar::new(self, Format::Signed, ring)
    }

    /// A view that reads and writes signed values, in the local namespace.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::{cookies::CookieJar, key::{Key, KeyRing}};
    ///
    /// let ring = KeyRing::new(Key::generate());
    /// let mut jar = CookieJar::new();
    /// jar.signed_mut(&ring).insert("visits", &3)?;
    /// assert_eq!(jar.signed(&ring).get::<u32>("visits"), Some(3));
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    pub fn signed_mut(&mut self, ring: &KeyRing) -> ProtectedJar<&mut Self> {
        ProtectedJar::new(self, Format::Signed, ring)
    }

    /// A read-only view of private (sealed: encrypted and authenticated)
    /// values, in the local namespace.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::{cookies::CookieJar, key::{Key, KeyRing}};
    ///
    /// let ring = KeyRing::new(Key::generate());
    /// assert_eq!(CookieJar::parse("cart=x").private(&ring).get::<u32>("cart"), None);
    /// ```
    #[doc(alias = "sealed")]
    pub fn private(&self, ring: &KeyRing) -> ProtectedJar<&Self> {
        ProtectedJar::new(self, Format::Sealed, ring)
    }

    /// A view that reads and writes private (sealed) values, in the local
    /// namespace.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::{cookies::CookieJar, key::{Key, KeyRing}};
    ///
    /// let ring = KeyRing::new(Key::generate());
    /// let mut jar = CookieJar::new();
    /// jar.private_mut(&ring).insert("cart", &vec!["apple", "pear"])?;
    /// assert!(!jar.delta().next().unwrap().value().contains("apple"));
    /// assert_eq!(jar.private(&ring).get::<Vec<String>>("cart").unwrap().len(), 2);
    /// # Ok::<(), keepsake::cookies::CookieError>(())
    /// ```
    #[doc(alias = "sealed_mut")]
    pub fn private_mut(&mut self, ring: &KeyRing) -> ProtectedJar<&mut Self> {
        ProtectedJar::new(self, Format::Sealed, ring)
    }
}

#[cfg(test)]
mod tests;
