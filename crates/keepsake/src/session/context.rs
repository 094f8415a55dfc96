//! What every session of one layer shares: the backend, the cookie settings,
//! the expiry policy and the clock. Built by the middleware's builder.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use http::HeaderValue;

use super::Clock;
use crate::{
    codec::{Claims, Codec, DecodeError},
    cookies::SetCookieTemplate,
    store::{Created, Deleted, Id, Record, Saved, SessionStore, StoreError, Touched},
};

/// What to do with a session cookie that does not verify.
///
/// A cookie does not verify when it is malformed, was tampered with, or was
/// signed (or sealed) with a key that is no longer in the layer's
/// [`KeyRing`](crate::key::KeyRing), not even as a fallback (a retired
/// key). Such a cookie is a bad cookie, not an expired session: under
/// `Ignore` the handler gets a new session whose
/// [`expired`](crate::session::Session::expired) is `false`, exactly as on
/// a first visit, so an app cannot tell a visitor logged out by a key
/// rotation from a first visit that way. A cookie that verifies but whose
/// session ended is not bad: its request gets a new session whose
/// `expired()` is `true`.
///
/// # Example
///
/// ```
/// use keepsake::session::BadCookie;
///
/// assert_eq!(BadCookie::default(), BadCookie::Ignore);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BadCookie {
    /// Treat the request as having no session (the default), and log a
    /// `tracing` event.
    #[default]
    Ignore,
    /// Answer 400 "bad cookie" without calling the handler, as JustPy does,
    /// with a `Set-Cookie` that removes the cookie, so that the browser's
    /// next request starts a new session instead of being refused until
    /// the cookie expires (after a change of secret, say). A bad cookie
    /// beside a good one is not a reason to refuse: the good one is used.
    /// Neither is a session cookie that verifies: when two name live
    /// sessions (cookie tossing: another site of the domain planted one),
    /// the request has no session under either setting, and neither cookie
    /// is removed, since removing ours would leave the planted one in use.
    Reject,
}

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`SessionStore`] made object-safe, so `Session` need not carry the
/// store's type.
pub(crate) trait DynStore: Send + Sync {
    fn create<'a>(&'a self, record: &'a Record) -> BoxFuture<'a, Result<Created, StoreError>>;
    /// [`SessionStore::load_shared`].
    fn load<'a>(
        &'a self,
        id: &'a Id,
        now: u64,
    ) -> BoxFuture<'a, Result<Option<Arc<Record>>, StoreError>>;
    /// [`SessionStore::save_shared`].
    fn save<'a>(
        &'a self,
        record: &'a mut Arc<Record>,
        now: u64,
    ) -> BoxFuture<'a, Result<Saved, StoreError>>;
    fn touch<'a>(
        &'a self,
        id: &'a Id,
        version: u64,
        deadline: u64,
        now: u64,
    ) -> BoxFuture<'a, Result<Touched, StoreError>>;
    fn delete<'a>(&'a self, id: &'a Id) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn delete_if_version<'a>(
        &'a self,
        id: &'a Id,
        version: u64,
    ) -> BoxFuture<'a, Result<Deleted, StoreError>>;
    fn delete_user<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<usize, StoreError>>;
    fn list_user<'a>(
        &'a self,
        user: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<Vec<Record>, StoreError>>;
}

impl<S: SessionStore> DynStore for S {
    fn create<'a>(&'a self, record: &'a Record) -> BoxFuture<'a, Result<Created, StoreError>> {
        Box::pin(SessionStore::create(self, record))
    }
    fn load<'a>(
        &'a self,
        id: &'a Id,
        now: u64,
    ) -> BoxFuture<'a, Result<Option<Arc<Record>>, StoreError>> {
        Box::pin(SessionStore::load_shared(self, id, now))
    }
    fn save<'a>(
        &'a self,
        record: &'a mut Arc<Record>,
        now: u64,
    ) -> BoxFuture<'a, Result<Saved, StoreError>> {
        Box::pin(SessionStore::save_shared(self, record, now))
    }
    fn touch<'a>(
        &'a self,
        id: &'a Id,
        version: u64,
        deadline: u64,
        now: u64,
    ) -> BoxFuture<'a, Result<Touched, StoreError>> {
        Box::pin(SessionStore::touch(self, id, version, deadline, now))
    }
    fn delete<'a>(&'a self, id: &'a Id) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(SessionStore::delete(self, id))
    }
    fn delete_if_version<'a>(
        &'a self,
        id: &'a Id,
        version: u64,
    ) -> BoxFuture<'a, Result<Deleted, StoreError>> {
        Box::pin(SessionStore::delete_if_version(self, id, version))
    }
    fn delete_user<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(SessionStore::delete_user(self, user))
    }
    fn list_user<'a>(
        &'a self,
        user: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<Vec<Record>, StoreError>> {
        Box::pin(SessionStore::list_user(self, user, now))
    }
}

/// Where session data lives.
#[derive(Clone)]
pub(crate) enum Backend {
    /// In a server-side store; the cookie holds the signed id.
    Store(Arc<dyn DynStore>),
    /// In the cookie itself, signed or sealed.
    Cookie,
}

/// What the request's session cookie said, after verification.
#[derive(Debug, Clone)]
pub(crate) enum Incoming {
    /// No session cookie (or an ignored bad one).
    Nothing,
    /// A verified session id (server-side sessions).
    Id(Id),
    /// Several verified session ids, each with whether only a fallback key
    /// verified it: cookies of one name set for different paths or domains
    /// (after a change of the layer's `path` or `domain`, or tossed by a
    /// sibling subdomain). The session is the one of them still in the
    /// store; with more than one, none (see `Session::load_one_of`).
    Candidates(Vec<(Id, bool)>),
    /// A verified record (client-side sessions).
    Record(Arc<Record>),
    /// A verified cookie whose session had expired.
    Expired,
    /// A verified framework session cookie whose session keepsake cannot
    /// hold exactly (a `NaN`, an integer beyond 64 bits): it is the
    /// visitor's, so it is neither used nor replaced nor removed. Using the
    /// session fails as a corrupt stored record does. The reason is for
    /// the error.
    #[cfg(feature = "interop")]
    Unusable(&'static str),
}

/// The result of reading the session cookie.
pub(crate) enum CookieRead {
    /// The verified cookie (or none), and whether only a fallback key
    /// verified it, so it should be issued again under the current key.
    Ok(Incoming, bool),
    /// A cookie was there but did not verify; the reason is for logs only.
    Bad(&'static str),
    /// Several client-side session cookies verified, or more server-side
    /// ids than are worth looking up (cookie tossing: another site of the
    /// domain planted one). The request has no session; removing ours
    /// would leave the planted one to be used, so it is left alone.
    Several,
}

/// At most this many different session ids that verified are looked up in
/// the store for one request (see [`Incoming::Candidates`]); more make the
/// request anonymous.
const MAX_CANDIDATES: usize = 4;

/// Aligned to 128 bytes so that its fields never share a cache line with
/// the `Arc`'s reference counts: every request clones and drops the `Arc`
/// (on whichever worker thread runs it), and every request reads these
/// fields; sharing a line would make each read wait for the other core's
/// count update.
#[repr(align(128))]
pub(crate) struct Context {
    pub(crate) backend: Backend,
    /// Signs ids (server-side) or protects records (client-side).
    pub(crate) codec: Codec,
    /// The session cookie's `Set-Cookie` header, with its checked attributes.
    pub(crate) set_cookie: SetCookieTemplate,
    /// The full cookie name, prefix included.
    pub(crate) cookie_name: String,
    pub(crate) idle_timeout: Option<u64>,
    pub(crate) absolute_lifetime: u64,
    pub(crate) persistent: bool,
    pub(crate) bad_cookie: BadCookie,
    pub(crate) store_timeout: Duration,
    pub(crate) clock: Arc<dyn Clock>,
    /// How many times a save that met a conflict is replayed.
    pub(crate) max_replays: usize,
    /// Saves of one session in this process take turns.
    pub(crate) write_locks: WriteLocks,
    /// Renders the response when the store fails (default: an empty 503).
    pub(crate) unavailable: Option<crate::middleware::UnavailableHook>,
    /// With [`Backend::Cookie`]: a Flask, Starlette or Django session cookie
    /// instead of keepsake's own (`codec` is then unused).
    #[cfg(feature = "interop")]
    pub(crate) interop: Option<crate::codec::interop::InteropCodec>,
}

/// Striped locks, so that the saves of one session made by this process
/// take turns: holding the lock, a save cannot lose to another request of
/// this process, so many concurrent requests of one visitor settle one
/// after the other instead of racing over and over. Requests on other app
/// servers are still ordered by the store's compare-and-set alone. The lock
/// covers only the save, never the handler.
///
/// Each lock also keeps the records its last saves stored ([`LastSaved`]),
/// so that the next request of the same session, whose copy is then older,
/// replays its changes on that record at once instead of first meeting the
/// version conflict in the store and loading the record again: one store
/// call instead of three. A kept record is only a starting point; the
/// store's compare-and-set still decides, so a write made meanwhile
/// elsewhere is met as a conflict, and replayed, as before.
pub(crate) struct WriteLocks(Box<[tokio::sync::Mutex<LastSaved>]>);

impl WriteLocks {
    /// How many locks there are: ids are random, so two sessions share a
    /// lock one time in 1024.
    const STRIPES: usize = 1024;

    pub(crate) fn new() -> Self {
        Self(
            (0..Self::STRIPES)
                .map(|_| tokio::sync::Mutex::new(LastSaved::default()))
                .collect(),
        )
    }

    /// The lock of `id`.
    pub(crate) fn of(&self, id: &Id) -> &tokio::sync::Mutex<LastSaved> {
        let [a, b, ..] = *id.as_bytes();
        &self.0[usize::from(u16::from_le_bytes([a, b])) % Self::STRIPES]
    }
}

/// The records the latest saves under one of the [`WriteLocks`] stored,
/// each with the version the store gave it: the last [`LastSaved::KEPT`]
/// sessions saved, so that sessions sharing the lock do not push each
/// other's record out at once. (Sessions that share a lock wait for each
/// other's saves, which makes their requests overlap, and so conflict, more
/// often than others'.)
#[derive(Default)]
pub(crate) struct LastSaved(Vec<Arc<Record>>);

impl LastSaved {
    const KEPT: usize = 2;

    /// The kept record of `id`, if it is newer than `version`.
    pub(crate) fn newer(&self, id: &Id, version: u64) -> Option<&Arc<Record>> {
        self.0
            .iter()
            .find(|record| record.id == *id && record.version > version)
    }

    /// Keeps `record`, the one just saved (shared with the store, if it
    /// keeps records in memory), in place of an older copy of its session
    /// or of the session saved longest ago.
    pub(crate) fn keep(&mut self, record: Arc<Record>) {
        self.0.retain(|kept| kept.id != record.id);
        if self.0.len() == Self::KEPT {
            self.0.remove(0);
        }
        self.0.push(record);
    }
}

impl Context {
    pub(crate) fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Finds and verifies the session cookie in the request's `Cookie`
    /// headers, borrowing from them: other cookies are skipped, not copied,
    /// whatever bytes they hold (a browser sends another script's UTF-8 or
    /// Latin-1 cookie as it was set). Also the time it was checked at, if
    /// there was a cookie to check.
    ///
    /// Several cookies with the session name (set for different paths or
    /// domains, or tossed by a sibling subdomain): a value that does not
    /// verify, or names an expired session, is passed over when another
    /// names a live one. Several different server-side ids are all looked
    /// up ([`Incoming::Candidates`]); several client-side sessions make the
    /// request anonymous, as neither can be told to be the visitor's own.
    pub(crate) fn read_cookie(&self, headers: &http::HeaderMap) -> (CookieRead, Option<u64>) {
        let mut now = None;
        // The first value that verified as live, what it said, and whether
        // only a fallback key verified it.
        let mut found: Option<(&str, Incoming, bool)> = None;
        // Further server-side ids that verified (rare: allocates only then).
        let mut more: Vec<(Id, bool)> = Vec::new();
        let mut expired = false;
        let mut bad = None;
        let values = headers
            .get_all(http::header::COOKIE)
            .iter()
            .flat_map(|header| cookie_values(header.as_bytes(), &self.cookie_name));
        for value in values {
            let Ok(value) = value else {
                bad = Some("malformed");
                continue;
            };
            // The same cookie sent twice is one cookie.
            if found.as_ref().is_some_and(|(seen, ..)| *seen == value) {
                continue;
            }
            // The clock is read only when there is a cookie to check.
            let now = *now.get_or_insert_with(|| self.now());
            match (self.verify(value, now), &found) {
                (Err(reason), _) => bad = Some(reason),
                (Ok((Incoming::Expired, _)), _) => expired = true,
                (Ok((incoming, stale)), None) => found = Some((value, incoming, stale)),
                (Ok((Incoming::Id(id), stale)), Some((_, Incoming::Id(first), _))) => {
                    if id == *first || more.iter().any(|(other, _)| *other == id) {
                        continue;
                    }
                    if more.len() + 1 == MAX_CANDIDATES {
                        return (CookieRead::Several, Some(now));
                    }
                    more.push((id, stale));
                }
                (Ok(_), Some(_)) => return (CookieRead::Several, Some(now)),
            }
        }
        let read = match (found, expired, bad) {
            (Some((_, Incoming::Id(id), stale)), ..) if !more.is_empty() => {
                more.insert(0, (id, stale));
                CookieRead::Ok(Incoming::Candidates(more), false)
            }
            (Some((_, incoming, stale)), ..) => CookieRead::Ok(incoming, stale),
            (None, true, _) => CookieRead::Ok(Incoming::Expired, false),
            (None, false, Some(reason)) => CookieRead::Bad(reason),
            (None, false, None) => CookieRead::Ok(Incoming::Nothing, false),
        };
        (read, now)
    }

    fn verify(&self, value: &str, now: u64) -> Result<(Incoming, bool), &'static str> {
        #[cfg(feature = "interop")]
        if let Some(interop) = &self.interop {
            use crate::codec::interop::InteropDecodeError as Error;
            return match interop.decode_record(value, now) {
                Ok((record, key_used)) => {
                    Ok((Incoming::Record(Arc::new(record)), key_used.is_fallback()))
                }
                Err(Error::Expired { .. } | Error::IssuedInFuture { .. }) => {
                    Ok((Incoming::Expired, false))
                }
                // A valid session of the visitor's that keepsake cannot hold
                // exactly: never "no session", which the first write would
                // replace.
                Err(Error::Unrepresentable { reason }) => Ok((Incoming::Unusable(reason), false)),
                Err(Error::BadSignature) => Err("bad signature"),
                Err(Error::TooLarge { .. }) => Err("too large"),
                Err(_) => Err("malformed"),
            };
        }
        match self.backend {
            Backend::Store(_) => match self.codec.open(&self.cookie_name, value, now) {
                Ok((bytes, _, key_used)) => {
                    Ok((Incoming::Id(Id::from_bytes(bytes)), key_used.is_fallback()))
                }
                Err(err) => refused(&err),
            },
            Backend::Cookie => {
                let (payload, _, key_used) =
                    match self.codec.open::<Vec<u8>>(&self.cookie_name, value, now) {
                        Ok(opened) => opened,
                        Err(err) => return refused(&err),
                    };
                let record =
                    Record::from_cookie_payload(&payload).map_err(|_| "malformed record")?;
                if record.is_expired_at(now) {
                    return Ok((Incoming::Expired, false));
                }
                Ok((Incoming::Record(Arc::new(record)), key_used.is_fallback()))
            }
        }
    }

    /// The cookie value for `record`: its signed id, or the whole record.
    pub(crate) fn cookie_value(
        &self,
        record: &Record,
        now: u64,
    ) -> Result<String, crate::codec::EncodeError> {
        #[cfg(feature = "interop")]
        if let Some(interop) = &self.interop {
            use crate::codec::{EncodeError, MAX_COOKIE_SIZE, interop::InteropEncodeError};
            return interop.encode_record(record, now).map_err(|err| match err {
                InteropEncodeError::TooLarge { name, size, limit } => {
                    EncodeError::TooLarge { name, size, limit }
                }
                // Data the framework could not read back is never written.
                _ => EncodeError::TooLarge {
                    name: self.cookie_name.clone(),
                    size: 0,
                    limit: MAX_COOKIE_SIZE,
                },
            });
        }
        match self.backend {
            Backend::Store(_) => {
                let claims = Claims::new(now).with_expiry(Some(record.absolute_deadline));
                self.codec
                    .encode(&self.cookie_name, record.id.as_bytes(), claims)
            }
            Backend::Cookie => {
                let payload = record.to_cookie_payload();
                let claims = Claims::new(now).with_expiry(Some(record.deadline()));
                self.codec.encode(&self.cookie_name, &payload, claims)
            }
        }
    }

    /// The Set-Cookie header for `record`.
    pub(crate) fn cookie_for(&self, record: &Record, now: u64) -> Option<HeaderValue> {
        let value = match self.cookie_value(record, now) {
            Ok(value) => value,
            Err(err) => {
                // Sizes are checked as the session changes, and deadlines
                // capped: only a broken clock gets here.
                tracing::error!(error = %err, "session cookie not written");
                return None;
            }
        };
        #[cfg(feature = "interop")]
        if let Some(interop) = &self.interop {
            // As the framework sets it (Starlette's `max_age`, Django's
            // `set_expiry`), not from keepsake's deadlines.
            let max_age = interop.cookie_max_age(record, now).map(Duration::from_secs);
            return self.set_cookie.header(&value, max_age);
        }
        let max_age = record.persistent.then(|| {
            let until = match self.backend {
                Backend::Store(_) => record.absolute_deadline,
                Backend::Cookie => record.deadline(),
            };
            Duration::from_secs(until.saturating_sub(now))
        });
        self.set_cookie.header(&value, max_age)
    }

    /// The Set-Cookie header that removes the session cookie.
    pub(crate) fn removal_cookie(&self) -> HeaderValue {
        self.set_cookie.removal()
    }
}

/// The values of the cookies called `name` in one `Cookie` request header,
/// exactly as `cookie::Cookie::split_parse` finds them in a UTF-8 header
/// (pairs split at `;` and the first `=`, name and value trimmed, nothing
/// decoded), without building a `Cookie` for every pair: this runs on every
/// request. The header is taken as bytes, so that a cookie of another name
/// that is not UTF-8 does not hide this one; a value that is not UTF-8
/// comes out as `Err`.
fn cookie_values<'h>(
    header: &'h [u8],
    name: &'h str,
) -> impl Iterator<Item = Result<&'h str, &'h [u8]>> {
    let mut start = 0;
    memchr::memchr_iter(b';', header)
        .chain([header.len()])
        .filter_map(move |end| {
            let pair = &header[start..end];
            start = end + 1;
            let at = memchr::memchr(b'=', pair)?;
            (trimmed(&pair[..at]) == Ok(name)).then(|| trimmed(&pair[at + 1..]))
        })
}

/// `bytes` as text without the whitespace around it, as `str::trim` trims
/// it; bytes that are not UTF-8 are given back as they are.
fn trimmed(bytes: &[u8]) -> Result<&str, &[u8]> {
    std::str::from_utf8(bytes).map(str::trim).map_err(|_| bytes)
}

/// A session cookie the codec did not open: an expired one is no session
/// (and not an error); anything else is refused, with the reason.
fn refused(err: &DecodeError) -> Result<(Incoming, bool), &'static str> {
    match err {
        DecodeError::Expired { .. } => Ok((Incoming::Expired, false)),
        DecodeError::BadSignature => Err("bad signature"),
        DecodeError::UnknownVersion { .. } => Err("unknown format version"),
        DecodeError::TooLarge { .. } => Err("too large"),
        _ => Err("malformed"),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{LastSaved, cookie_values};

    /// What the cookie crate finds, for comparison.
    fn with_cookie_crate<'h>(header: &'h str, name: &str) -> Vec<&'h str> {
        cookie::Cookie::split_parse(header)
            .flatten()
            .filter(|pair| pair.name_raw() == Some(name))
            .filter_map(|pair| pair.value_raw())
            .collect()
    }

    #[test]
    fn cookie_values_are_found_as_the_cookie_crate_finds_them() {
        for header in [
            "session=abc",
            " session = abc ; other=1",
            "a=1; session=x=y; session=\"q\"; session; =v; session=",
            "sessionx=1;xsession=2;session=3",
            "session=\u{a0}v\u{a0}; \u{2003}session=w",
        ] {
            let ours: Vec<&str> = cookie_values(header.as_bytes(), "session")
                .map(|value| value.expect("UTF-8"))
                .collect();
            assert_eq!(ours, with_cookie_crate(header, "session"), "{header:?}");
        }
    }

    /// Bytes that are not UTF-8 in another cookie do not hide the session
    /// cookie; in the session cookie itself they come out as an error.
    #[test]
    fn cookie_values_take_any_bytes() {
        let header = b"note=Jos\xc3\xa9; latin1=Jos\xe9; session=abc; session=x\xff ";
        let found: Vec<_> = cookie_values(header, "session").collect();
        assert_eq!(found, [Ok("abc"), Err(&b"x\xff "[..])]);
        assert_eq!(
            cookie_values(b"\xe9=1; session=v", "session").collect::<Vec<_>>(),
            [Ok("v")]
        );
    }

    proptest! {
        #[test]
        fn cookie_values_match_the_cookie_crate_on_any_header(
            parts in prop::collection::vec(
                prop::sample::select(&["session", "sess", "=", ";", " ", "\"", "v", "\t", "\u{a0}", "\u{e9}"][..]),
                0..16,
            )
        ) {
            let header = parts.concat();
            let ours: Vec<&str> = cookie_values(header.as_bytes(), "session")
                .map(|value| value.expect("UTF-8"))
                .collect();
            prop_assert_eq!(ours, with_cookie_crate(&header, "session"));
        }
    }
    use crate::store::{Id, Record};

    fn saved(id: Id, version: u64) -> std::sync::Arc<Record> {
        let mut record = Record::new(id, 0, None, 60);
        record.version = version;
        record.into()
    }

    /// Two sessions sharing a lock both keep their record; a third pushes
    /// out the one saved longest ago; only a newer copy is offered.
    #[test]
    fn last_saved_keeps_the_latest_record_of_each_recent_session() {
        let (a, b, c) = (Id::random(), Id::random(), Id::random());
        let mut last = LastSaved::default();
        last.keep(saved(a, 3));
        last.keep(saved(b, 7));
        last.keep(saved(a, 4)); // replaces a's older copy
        assert_eq!(last.newer(&a, 3).map(|r| r.version), Some(4));
        assert!(last.newer(&a, 4).is_none(), "not newer than the caller's");
        assert_eq!(last.newer(&b, 6).map(|r| r.version), Some(7));
        last.keep(saved(c, 1)); // b was saved longest ago
        assert!(last.newer(&b, 0).is_none());
        assert!(last.newer(&a, 0).is_some() && last.newer(&c, 0).is_some());
    }
}
