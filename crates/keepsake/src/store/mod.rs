//! Server-side session stores: the [`SessionStore`] trait, the [`Record`] a
//! store keeps, session [`Id`]s, and the in-memory store.
//!
//! A store keeps one [`Record`] per session. Every operation says what
//! happened in its return type, so the middleware never has to guess:
//!
//! | operation | outcomes |
//! |---|---|
//! | [`create`](SessionStore::create) (if absent) | [`Created::Created`], [`Created::Collision`] |
//! | [`load`](SessionStore::load) | the record, or `None` (absent or expired) |
//! | [`save`](SessionStore::save) (if the version matches) | [`Saved::Saved`], [`Saved::Conflict`], [`Saved::Gone`] |
//! | [`touch`](SessionStore::touch) (idle deadline only, if the version matches) | [`Touched::Touched`], [`Touched::Outdated`], [`Touched::Gone`] |
//! | [`delete`](SessionStore::delete), [`delete_user`](SessionStore::delete_user) | how many were deleted |
//! | [`list_user`](SessionStore::list_user), [`purge_expired`](SessionStore::purge_expired) | records, a count |
//!
//! Any operation can also fail with a [`StoreError`] (unreachable, timed out,
//! full, corrupt): the middleware answers 503 and leaves the visitor's cookie
//! alone, so an outage never silently replaces a session with a fresh one.
//!
//! # Example
//!
//! ```
//! use keepsake::store::{Created, Id, MemoryStore, Record, Saved, SessionStore};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! let mut record = Record::new(Id::random(), 1_000, Some(1_800), 14 * 86_400);
//! assert_eq!(store.create(&record).await?, Created::Created);
//! assert_eq!(store.create(&record).await?, Created::Collision);
//!
//! record.data.insert("user".into(), "ada".into());
//! assert_eq!(store.save(&record, 1_001).await?, Saved::Saved { version: 1 });
//! // The same write again carries a stale version.
//! assert_eq!(store.save(&record, 1_002).await?, Saved::Conflict);
//!
//! let loaded = store.load(&record.id, 1_003).await?.unwrap();
//! assert_eq!((loaded.version, &loaded.data["user"]), (1, &"ada".into()));
//! assert!(store.delete(&record.id).await?);
//! assert_eq!(store.save(&loaded, 1_004).await?, Saved::Gone);
//! # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
//! ```

mod admin;
#[cfg(any(test, feature = "test-suite"))]
#[cfg_attr(docsrs, doc(cfg(feature = "test-suite")))]
pub mod conformance;
mod memory;
mod payload;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
mod postgres;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
mod redis;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
mod sqlite;

use std::{fmt, future::Future, sync::Arc, sync::LazyLock};

use hmac::{Hmac, KeyInit, Mac as _};
use serde_json::{Map, Value};
use sha2::Sha256;

pub use self::admin::{
    AnyStore, Counts, Cursor, OpenError, Page, PurgeStep, PurgeTask, StoreAdmin, StoreUrl,
};
pub use self::memory::{MemoryStore, MemoryStoreBuilder};
pub use self::payload::RecordPayloadError;
#[cfg(feature = "postgres")]
pub use self::postgres::{PostgresStore, PostgresStoreBuilder};
#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
#[cfg(feature = "sqlite")]
pub use self::sqlite::{SqliteStore, SqliteStoreBuilder};

/// A session's data: string keys, JSON values.
pub type Data = Map<String, Value>;

/// Length of a session id in bytes (128 bits).
pub const ID_LEN: usize = 16;

/// Length of a session id's text: unpadded base64 of [`ID_LEN`] bytes.
pub(crate) const ID_TEXT_LEN: usize = 22;

/// A session id: 128 random bits from a CSPRNG.
///
/// `Display` gives its 22-character URL-safe base64 form, which stores use as
/// a key. `Debug` gives only a short keyed hash ([`Id::log_tag`]), so an id
/// printed by accident in a log cannot be used to hijack the session.
///
/// # Example
///
/// ```
/// use keepsake::store::Id;
///
/// let id = Id::random();
/// let text = id.to_string();
/// assert_eq!(text.len(), 22);
/// assert_eq!(text.parse::<Id>().unwrap(), id);
/// assert!(!format!("{id:?}").contains(&text));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id([u8; ID_LEN]);

impl Id {
    /// A new random id.
    ///
    /// # Example
    ///
    /// ```
    /// assert_ne!(keepsake::store::Id::random(), keepsake::store::Id::random());
    /// ```
    pub fn random() -> Self {
        let mut bytes = [0u8; ID_LEN];
        rand::fill(&mut bytes);
        Self(bytes)
    }

    /// The id from its 16 bytes.
    ///
    /// # Example
    ///
    /// ```
    /// let id = keepsake::store::Id::from_bytes([7; 16]);
    /// assert_eq!(id.as_bytes(), &[7; 16]);
    /// ```
    pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The id's 16 bytes.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(keepsake::store::Id::from_bytes([0; 16]).as_bytes().len(), 16);
    /// ```
    pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// A short tag for logs: 8 hex digits of an HMAC of the id under a key
    /// drawn at random when the process starts. The same id gives the same
    /// tag within one process, so log lines can be correlated, but the tag
    /// reveals nothing usable about the id.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::Id;
    ///
    /// let id = Id::random();
    /// assert_eq!(id.log_tag().len(), 8);
    /// assert_eq!(id.log_tag(), id.log_tag());
    /// ```
    pub fn log_tag(&self) -> String {
        static LOG_KEY: LazyLock<Hmac<Sha256>> = LazyLock::new(|| {
            let mut key = [0u8; 32];
            rand::fill(&mut key);
            <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
        });
        let tag = LOG_KEY.clone().chain_update(self.0).finalize().into_bytes();
        tag[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Encoded on the stack: stores format an id for every key they use.
        let mut text = [0u8; ID_TEXT_LEN];
        let out = base64_simd::Out::from_slice(&mut text);
        f.write_str(base64_simd::URL_SAFE_NO_PAD.encode_as_str(&self.0, out))
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.log_tag())
    }
}

impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The error of parsing an [`Id`] from text.
///
/// # Example
///
/// ```
/// let err = "short".parse::<keepsake::store::Id>().unwrap_err();
/// assert_eq!(err.to_string(), "a session id is 22 characters of URL-safe base64");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a session id is 22 characters of URL-safe base64")]
pub struct ParseIdError;

impl std::str::FromStr for Id {
    type Err = ParseIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; ID_LEN];
        if text.len() != ID_TEXT_LEN {
            return Err(ParseIdError);
        }
        let decoded = base64_simd::URL_SAFE_NO_PAD
            .decode(text.as_bytes(), base64_simd::Out::from_slice(&mut bytes))
            .map_err(|_| ParseIdError)?;
        if decoded.len() != ID_LEN {
            return Err(ParseIdError);
        }
        Ok(Self(bytes))
    }
}

/// One session as a store keeps it. Times are Unix seconds.
///
/// The session ends at the earlier of its two deadlines: the *idle* deadline,
/// which moves forward as the visitor comes back ([`SessionStore::touch`]),
/// and the *absolute* deadline, which never moves. The idle deadline never
/// passes the absolute one.
///
/// # Example
///
/// ```
/// use keepsake::store::{Id, Record};
///
/// let record = Record::new(Id::random(), 1_000, Some(60), 3_600);
/// assert_eq!(record.idle_deadline, Some(1_060));
/// assert_eq!(record.absolute_deadline, 4_600);
/// assert_eq!(record.deadline(), 1_060);
/// assert!(!record.is_expired_at(1_059));
/// assert!(record.is_expired_at(1_060));
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Record {
    /// The session id.
    pub id: Id,
    /// The session data.
    pub data: Data,
    /// When the session was created.
    pub created_at: u64,
    /// Seconds of inactivity after which the session ends (`None`: no idle
    /// limit).
    pub idle_timeout: Option<u64>,
    /// When the session ends if the visitor does not come back.
    pub idle_deadline: Option<u64>,
    /// When the session ends regardless of activity.
    pub absolute_deadline: u64,
    /// Whether the cookie outlives the browser session (`Max-Age` set).
    pub persistent: bool,
    /// Incremented by every successful [`SessionStore::save`].
    pub version: u64,
    /// The user the session belongs to, for "log out everywhere".
    pub user: Option<String>,
}

impl Record {
    /// A new, empty record created at `now`, version 0. Its deadline is
    /// capped at the latest time a cookie can carry (2^48 - 1 seconds, in
    /// the year 8.9 million), so that a lifetime of `u64::MAX` means "no
    /// limit" and the session's cookie can still be written.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{Id, Record};
    ///
    /// let record = Record::new(Id::random(), 10, None, 100);
    /// assert_eq!((record.version, record.idle_deadline, record.deadline()), (0, None, 110));
    /// assert_eq!(Record::new(Id::random(), 10, None, u64::MAX).deadline(), (1 << 48) - 1);
    /// ```
    pub fn new(id: Id, now: u64, idle_timeout: Option<u64>, absolute_lifetime: u64) -> Self {
        let absolute_deadline = crate::codec::deadline_after(now, absolute_lifetime);
        Self {
            id,
            data: Data::new(),
            created_at: now,
            idle_timeout,
            idle_deadline: idle_timeout.map(|idle| now.saturating_add(idle).min(absolute_deadline)),
            absolute_deadline,
            persistent: false,
            version: 0,
            user: None,
        }
    }

    /// When the session ends: the earlier deadline.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{Id, Record};
    ///
    /// assert_eq!(Record::new(Id::random(), 0, Some(500), 100).deadline(), 100);
    /// ```
    pub fn deadline(&self) -> u64 {
        self.idle_deadline.map_or(self.absolute_deadline, |idle| {
            idle.min(self.absolute_deadline)
        })
    }

    /// Whether the session has ended at `now`.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{Id, Record};
    ///
    /// assert!(Record::new(Id::random(), 0, None, 100).is_expired_at(100));
    /// ```
    pub fn is_expired_at(&self, now: u64) -> bool {
        now >= self.deadline()
    }

    /// The idle deadline a visit at `now` moves the session to (never past
    /// the absolute deadline), or `None` without an idle limit.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{Id, Record};
    ///
    /// let record = Record::new(Id::random(), 0, Some(60), 100);
    /// assert_eq!(record.refreshed_idle_deadline(30), Some(90));
    /// assert_eq!(record.refreshed_idle_deadline(70), Some(100));
    /// ```
    pub fn refreshed_idle_deadline(&self, now: u64) -> Option<u64> {
        self.idle_timeout
            .map(|idle| now.saturating_add(idle).min(self.absolute_deadline))
    }
}

/// The outcome of [`SessionStore::create`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The record was stored.
    Created,
    /// A record with this id exists; nothing was changed.
    Collision,
}

/// The outcome of [`SessionStore::save`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// The record was written; this is its new version.
    Saved {
        /// The version the store now holds.
        version: u64,
    },
    /// The stored version differs from the record's: someone else saved in
    /// between. Nothing was changed.
    Conflict,
    /// The record no longer exists (deleted or expired). Nothing was
    /// changed, and nothing was brought back.
    Gone,
}

/// The outcome of [`SessionStore::touch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touched {
    /// The idle deadline moved.
    Touched,
    /// The record was saved since the version the caller read: nothing was
    /// changed. That save set the deadline, under the expiry settings it
    /// stored, which a touch computed from the older copy must not undo.
    Outdated,
    /// The record no longer exists (deleted or expired).
    Gone,
}

/// The outcome of [`SessionStore::delete_if_version`].
///
/// # Example
///
/// ```
/// use keepsake::store::{Deleted, Id, MemoryStore, Record, SessionStore};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// let record = Record::new(Id::random(), 0, None, 100);
/// store.create(&record).await?;
/// assert_eq!(store.delete_if_version(&record.id, 7).await?, Deleted::Conflict);
/// assert_eq!(store.delete_if_version(&record.id, 0).await?, Deleted::Deleted);
/// assert_eq!(store.delete_if_version(&record.id, 0).await?, Deleted::Gone);
/// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The record had the expected version and is gone now.
    Deleted,
    /// The stored version differs: someone saved in between. Nothing was
    /// deleted.
    Conflict,
    /// There was no record with this id.
    Gone,
}

/// What kind of failure a [`StoreError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store cannot be reached or refused the operation.
    Unavailable,
    /// The store did not answer within the configured timeout.
    Timeout,
    /// The store is at its configured capacity.
    Full,
    /// A stored record could not be decoded.
    Corrupt,
}

/// A store operation that failed. The middleware turns it into a 503.
///
/// # Example
///
/// ```
/// use keepsake::store::{StoreError, StoreErrorKind};
///
/// let err = StoreError::new(StoreErrorKind::Unavailable, "connection refused");
/// assert_eq!(err.kind(), StoreErrorKind::Unavailable);
/// assert_eq!(err.to_string(), "session store unavailable: connection refused");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", kind_text(*.kind))]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// The stored session the error is about, if one: for
    /// [`session_id`](Self::session_id) only, never in the message.
    session: Option<StoredId>,
}

/// A stored session's id as the store holds it: shown as its log tag in
/// `Debug` (errors end up in logs; a raw id never should).
struct StoredId(String);

impl StoredId {
    /// The id's [log tag](Id::log_tag), or a note that it is not an id.
    fn tag(&self) -> String {
        self.0
            .parse::<Id>()
            .map_or_else(|_| "with an invalid id".to_owned(), |id| id.log_tag())
    }
}

impl fmt::Debug for StoredId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.tag())
    }
}

/// Decoded records, split into those that were read and the errors of
/// those that were not.
#[cfg(any(feature = "sqlite", feature = "redis", feature = "postgres"))]
fn split_readable(
    decoded: impl IntoIterator<Item = Result<Record, StoreError>>,
) -> (Vec<Record>, Vec<StoreError>) {
    let (mut records, mut unreadable) = (Vec::new(), Vec::new());
    for result in decoded {
        match result {
            Ok(record) => records.push(record),
            Err(err) => unreadable.push(err),
        }
    }
    (records, unreadable)
}

fn kind_text(kind: StoreErrorKind) -> &'static str {
    match kind {
        StoreErrorKind::Unavailable => "session store unavailable",
        StoreErrorKind::Timeout => "session store timed out",
        StoreErrorKind::Full => "session store full",
        StoreErrorKind::Corrupt => "corrupt session record",
    }
}

impl StoreError {
    /// An error of `kind` with a message.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{StoreError, StoreErrorKind};
    ///
    /// assert_eq!(StoreError::new(StoreErrorKind::Full, "100 sessions").kind(), StoreErrorKind::Full);
    /// ```
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
            session: None,
        }
    }

    /// An error of `kind` caused by `source`.
    ///
    /// # Example
    ///
    /// ```
    /// use std::error::Error as _;
    /// use keepsake::store::{StoreError, StoreErrorKind};
    ///
    /// let io = std::io::Error::other("reset");
    /// let err = StoreError::with_source(StoreErrorKind::Unavailable, "read failed", io);
    /// assert_eq!(err.source().unwrap().to_string(), "reset");
    /// ```
    pub fn with_source(
        kind: StoreErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind,
            message: message.into(),
            source: Some(Box::new(source)),
            session: None,
        }
    }

    /// What kind of failure this is.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{StoreError, StoreErrorKind};
    ///
    /// assert_eq!(StoreError::new(StoreErrorKind::Timeout, "1 s").kind(), StoreErrorKind::Timeout);
    /// ```
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The same error for another caller (a failed batch answers each of
    /// its operations with it): its kind and message, with its causes'
    /// first lines added as [`with_causes`](Self::with_causes) adds them,
    /// since a source cannot be cloned.
    #[cfg(any(feature = "sqlite", feature = "redis"))]
    pub(crate) fn copied(&self) -> Self {
        let mut message = self.message.clone();
        self.add_causes(&mut message);
        let mut copy = Self::new(self.kind, message);
        copy.session = self.session.as_ref().map(|id| StoredId(id.0.clone()));
        copy
    }

    /// A user's records as [`SessionStore::list_user`] gives them: those
    /// the store could read. Each it could not is logged and left out.
    #[cfg(any(feature = "sqlite", feature = "redis", feature = "postgres"))]
    pub(crate) fn log_unreadable(
        (records, unreadable): (Vec<Record>, Vec<StoreError>),
    ) -> Vec<Record> {
        for err in &unreadable {
            tracing::warn!(
                error = %err.with_causes(),
                "left out of a user's sessions: a record the store cannot read"
            );
        }
        records
    }

    /// The same error, about the stored session with id `session` (the
    /// store's text): the message names it by its log tag, and
    /// [`session_id`](Self::session_id) gives the id itself, so that an
    /// operator can find an unreadable record while logs never show it.
    #[cfg(any(feature = "sqlite", feature = "redis", feature = "postgres"))]
    pub(crate) fn about(mut self, session: impl Into<String>) -> Self {
        let session = StoredId(session.into());
        self.message = format!("stored session {}: {}", session.tag(), self.message);
        self.session = Some(session);
        self
    }

    /// The error with the causes behind it, for logs and operators: its
    /// own text, then the first line of each cause (the server's or
    /// driver's words: "permission denied for schema app", "NOPERM …"),
    /// joined with `: `, leaving out a cause whose text is already there.
    /// Only first lines, because a database error's further lines (its
    /// `DETAIL`) can quote the row it was about: session ids and data,
    /// which logs must never show. The middleware logs store failures this
    /// way.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{StoreError, StoreErrorKind};
    ///
    /// let cause = std::io::Error::other("permission denied\nDETAIL: Failing row contains (s3cr3t)");
    /// let err = StoreError::with_source(StoreErrorKind::Unavailable, "a session query failed", cause);
    /// assert_eq!(err.to_string(), "session store unavailable: a session query failed");
    /// assert_eq!(
    ///     err.with_causes().to_string(),
    ///     "session store unavailable: a session query failed: permission denied"
    /// );
    /// ```
    pub fn with_causes(&self) -> impl fmt::Display + '_ {
        WithCauses(self)
    }

    /// The id of the stored session this error is about, as the store
    /// holds it, if the error is about one (a record a store could not
    /// read, found while listing or paging): for an operator to find or
    /// revoke it. It is a session id: do not log it. The message names the
    /// session only by its [log tag](Id::log_tag).
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{StoreError, StoreErrorKind};
    ///
    /// assert_eq!(StoreError::new(StoreErrorKind::Corrupt, "bad data").session_id(), None);
    /// ```
    pub fn session_id(&self) -> Option<&str> {
        self.session.as_ref().map(|id| id.0.as_str())
    }
}

/// [`StoreError::with_causes`].
struct WithCauses<'a>(&'a StoreError);

impl fmt::Display for WithCauses<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.0.to_string();
        self.0.add_causes(&mut text);
        f.write_str(&text)
    }
}

impl StoreError {
    /// Appends to `text` the first line of each of this error's causes,
    /// after `: `, leaving out one whose line `text` already holds (see
    /// [`with_causes`](Self::with_causes)).
    fn add_causes(&self, text: &mut String) {
        let mut next = std::error::Error::source(self);
        while let Some(cause) = next {
            let cause_text = cause.to_string();
            let line = cause_text.lines().next().unwrap_or_default().trim_end();
            if !line.is_empty() && !text.contains(line) {
                text.push_str(": ");
                text.push_str(line);
            }
            next = cause.source();
        }
    }
}

/// Hashes keys made of session ids (an [`Id`], or a tuple ending in one) by
/// their last 8 bytes, for the maps of the stores that keep sessions in
/// memory. Ids are random, and only app servers make them (an attacker can
/// name an id only with a cookie that verifies), so their bytes are already
/// a uniform hash: no keyed hash is needed to spread them.
#[derive(Clone, Copy, Default)]
pub(crate) struct IdHash;

impl std::hash::BuildHasher for IdHash {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

/// The hasher of [`IdHash`].
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // An id's bytes arrive in one call (after its length, which is
        // folded in too, as is any number beside it in a tuple).
        let mut tail = [0; 8];
        let start = bytes.len().saturating_sub(8);
        tail[..bytes.len() - start].copy_from_slice(&bytes[start..]);
        self.0 = self.0.rotate_left(7) ^ u64::from_le_bytes(tail);
    }
}

/// A server-side session store.
///
/// Implementations must make each operation atomic with respect to the
/// others on the same id: in particular [`save`](SessionStore::save) writes
/// only if the stored version equals `record.version` *and* the record still
/// exists, so a slow request can never overwrite a newer write or bring back
/// a deleted session. Times passed in are Unix seconds from the app's clock;
/// a store must treat a record as absent once `now` reaches
/// [`Record::deadline`].
///
/// Expiry assumes that the clocks of the app servers sharing a store agree
/// and never go backwards. A store need not delete a record when a call
/// finds it expired: the in-memory store does (so, within one process, a
/// session reported ended stays ended), but the SQLite, PostgreSQL and
/// Redis stores' loads only leave it out, and the record is deleted by
/// [`purge_expired`](SessionStore::purge_expired) (and in Redis by its own
/// expiry, on Redis's clock: see `RedisStore`). Until then, a call given an
/// earlier time (a clock set back, or another server whose clock lags) can
/// find live a session that an earlier call found expired, and the session
/// comes back. Keep the clocks in step with NTP, and run the purge
/// regularly ([`PurgeTask`]).
///
/// # Example
///
/// A store is used through the middleware, but can be driven directly:
///
/// ```
/// use keepsake::store::{Id, MemoryStore, Record, SessionStore, Touched};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// let record = Record::new(Id::random(), 0, Some(60), 1_000);
/// store.create(&record).await?;
/// assert_eq!(store.touch(&record.id, 0, 100, 50).await?, Touched::Touched);
/// assert_eq!(store.load(&record.id, 99).await?.unwrap().idle_deadline, Some(100));
/// assert!(store.load(&record.id, 100).await?.is_none()); // idle deadline reached
/// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
/// ```
pub trait SessionStore: Send + Sync + 'static {
    /// Stores `record` if no record with its id exists.
    fn create(&self, record: &Record) -> impl Future<Output = Result<Created, StoreError>> + Send;

    /// The record with `id`, or `None` if there is none or it has expired at
    /// `now`.
    fn load(
        &self,
        id: &Id,
        now: u64,
    ) -> impl Future<Output = Result<Option<Record>, StoreError>> + Send;

    /// [`load`](Self::load), as a shared copy. A store that keeps records in
    /// memory can hand out a reference to the one it holds instead of a
    /// copy, so that a request that only reads its session copies nothing
    /// (the middleware loads through this method, and copies the record
    /// only when the request changes it). The default loads and wraps.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{Id, MemoryStore, Record, SessionStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryStore::new();
    /// let record = Record::new(Id::random(), 0, None, 1_000);
    /// store.create(&record).await?;
    /// let shared = store.load_shared(&record.id, 1).await?.unwrap();
    /// assert_eq!(*shared, record);
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    fn load_shared(
        &self,
        id: &Id,
        now: u64,
    ) -> impl Future<Output = Result<Option<Arc<Record>>, StoreError>> + Send {
        async move { Ok(self.load(id, now).await?.map(Arc::new)) }
    }

    /// Replaces the stored record with `record` if the stored version equals
    /// `record.version` and the record has not expired at `now`; the stored
    /// copy gets version `record.version + 1`.
    fn save(
        &self,
        record: &Record,
        now: u64,
    ) -> impl Future<Output = Result<Saved, StoreError>> + Send;

    /// [`save`](Self::save), for a record held in an [`Arc`]: on
    /// [`Saved::Saved`], `record` carries its new version afterwards
    /// (otherwise it is left as it was). A store that keeps records in
    /// memory can then keep `record` itself instead of a copy, so that the
    /// caller and the store share one allocation (the middleware saves
    /// through this method). The default saves, then sets the version, which
    /// copies the record only if the caller shares it.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use keepsake::store::{Id, MemoryStore, Record, Saved, SessionStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryStore::new();
    /// let mut record = Arc::new(Record::new(Id::random(), 0, None, 1_000));
    /// store.create(&record).await?;
    /// assert_eq!(store.save_shared(&mut record, 1).await?, Saved::Saved { version: 1 });
    /// assert_eq!(record.version, 1);
    /// // The store keeps the very record it was given.
    /// let stored = store.load_shared(&record.id, 2).await?.unwrap();
    /// assert!(Arc::ptr_eq(&stored, &record));
    /// // An outdated version is refused, and the record left as it was.
    /// let mut stale = (*record).clone();
    /// stale.version = 0;
    /// let mut stale = Arc::new(stale);
    /// assert_eq!(store.save_shared(&mut stale, 2).await?, Saved::Conflict);
    /// assert_eq!(stale.version, 0);
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    fn save_shared(
        &self,
        record: &mut Arc<Record>,
        now: u64,
    ) -> impl Future<Output = Result<Saved, StoreError>> + Send {
        async move {
            let saved = self.save(record, now).await?;
            if let Saved::Saved { version } = saved {
                Arc::make_mut(record).version = version;
            }
            Ok(saved)
        }
    }

    /// Moves only the idle deadline of the record with `id` to
    /// `idle_deadline` (never past its absolute deadline), if it exists, has
    /// not expired at `now`, and its stored version still equals `version`,
    /// the one the caller computed the deadline from. The data and version
    /// do not change.
    ///
    /// A record saved since is left alone ([`Touched::Outdated`]): its save
    /// set the deadline under the expiry settings it stored, and a request
    /// that only read the older copy must not put back the older settings'
    /// deadline (say, an idle deadline on a session just made to last 30
    /// days without one).
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{Id, MemoryStore, Record, SessionStore, Touched};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryStore::new();
    /// let mut record = Record::new(Id::random(), 0, Some(60), 1_000);
    /// store.create(&record).await?;
    /// assert_eq!(store.touch(&record.id, 0, 90, 30).await?, Touched::Touched);
    /// // Saved meanwhile, now without an idle limit: a touch from version 0
    /// // changes nothing.
    /// record.idle_timeout = None;
    /// record.idle_deadline = None;
    /// store.save(&record, 40).await?;
    /// assert_eq!(store.touch(&record.id, 0, 100, 40).await?, Touched::Outdated);
    /// assert_eq!(store.load(&record.id, 500).await?.unwrap().idle_deadline, None);
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    fn touch(
        &self,
        id: &Id,
        version: u64,
        idle_deadline: u64,
        now: u64,
    ) -> impl Future<Output = Result<Touched, StoreError>> + Send;

    /// Deletes the record with `id`; `true` if there was one.
    fn delete(&self, id: &Id) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes the record with `id` only if its stored version equals
    /// `version`: a compare-and-delete. [`Session::cycle_id`] uses it so
    /// that a write which lands on the old id while the session moves to a
    /// new one is noticed and carried over instead of lost, and so that of
    /// two requests cycling one session at once exactly one wins.
    ///
    /// [`Session::cycle_id`]: crate::session::Session::cycle_id
    fn delete_if_version(
        &self,
        id: &Id,
        version: u64,
    ) -> impl Future<Output = Result<Deleted, StoreError>> + Send;

    /// Deletes every record of `user` ("log out everywhere"); how many.
    fn delete_user(&self, user: &str) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// The unexpired records of `user`.
    ///
    /// A record the store holds but cannot read (written by another app or
    /// version) should not fail the list, or one bad record would take the
    /// user's "your sessions" page down: the built-in stores leave it out
    /// and log it at `warn` (by its [log tag](Id::log_tag)); their
    /// `list_user_skipping_unreadable` returns such records' errors instead.
    fn list_user(
        &self,
        user: &str,
        now: u64,
    ) -> impl Future<Output = Result<Vec<Record>, StoreError>> + Send;

    /// Deletes every record that has expired at `now`; how many.
    fn purge_expired(&self, now: u64) -> impl Future<Output = Result<usize, StoreError>> + Send;
}
