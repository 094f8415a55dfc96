//! Store administration: what an operator needs beyond the request path.
//!
//! * [`StoreAdmin`]: page through every record (a [`Cursor`] and a limit,
//!   so a million sessions never load at once), count live and expired
//!   records, and purge expired records in bounded steps (so a tool can show
//!   progress). Every store of this crate implements it.
//! * [`StoreUrl`] and [`AnyStore`]: one string picks and opens a store
//!   (`memory://`, `sqlite://PATH`, `redis://HOST:PORT/DB?prefix=P`,
//!   `postgres://...?schema=S&table=T`), for command lines and configuration
//!   files.
//! * [`PurgeTask`]: a background task that purges expired records of any
//!   store at an interval, stopped when its handle is dropped.
//!
//! # Example
//!
//! ```
//! use keepsake::store::{AnyStore, Id, Record, SessionStore, StoreAdmin};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = AnyStore::open("memory://").await?;
//! for lifetime in [10, 10, 1_000] {
//!     store.create(&Record::new(Id::random(), 0, None, lifetime)).await?;
//! }
//! let counts = store.count(100).await?;
//! assert_eq!((counts.total, counts.expired, counts.live()), (3, 2, 1));
//!
//! // Purge in steps of at most one record, as a progress bar would.
//! let (mut cursor, mut purged) = (None, 0);
//! loop {
//!     let step = store.purge_step(100, cursor.as_ref(), 1).await?;
//!     purged += step.purged;
//!     match step.next {
//!         Some(next) => cursor = Some(next),
//!         None => break,
//!     }
//! }
//! assert_eq!(purged, 2);
//! assert_eq!(store.count(100).await?.total, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```

use std::{fmt, future::Future, ops::Range, sync::Arc, time::Duration};

use super::{Created, Deleted, Id, MemoryStore, Record, Saved, SessionStore, StoreError, Touched};

/// Where a walk over a store's records continues: returned by
/// [`StoreAdmin::page`] and [`StoreAdmin::purge_step`], passed back to get
/// the next page or step.
///
/// Its text is the store's own business (the last id seen, a Redis `SCAN`
/// cursor, a shard number); a store implementing [`StoreAdmin`] makes one
/// with [`Cursor::new`] and reads it back with [`Cursor::as_str`].
///
/// # Example
///
/// ```
/// let cursor = keepsake::store::Cursor::new("42");
/// assert_eq!(cursor.as_str(), "42");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor(String);

impl Cursor {
    /// A cursor holding `text`.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::Cursor;
    ///
    /// assert_eq!(Cursor::new(String::from("a")), Cursor::new("a"));
    /// ```
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The cursor's text.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(keepsake::store::Cursor::new("x").as_str(), "x");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One page of records from [`StoreAdmin::page`].
///
/// # Example
///
/// ```
/// use keepsake::store::{Page, Cursor};
///
/// let page = Page { records: Vec::new(), next: Some(Cursor::new("7")) };
/// assert!(page.records.is_empty() && page.next.is_some());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The records, expired ones included (check
    /// [`Record::is_expired_at`]). A page may hold fewer records than the
    /// limit, or none, and still have a next page.
    pub records: Vec<Record>,
    /// Where the next page starts, or `None` after the last page.
    pub next: Option<Cursor>,
}

/// How many records a store holds, from [`StoreAdmin::count`].
///
/// # Example
///
/// ```
/// let counts = keepsake::store::Counts { total: 10, expired: 3 };
/// assert_eq!(counts.live(), 7);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Every record held, expired or not.
    pub total: u64,
    /// The records that have expired at the given time but are still held
    /// (not yet purged).
    pub expired: u64,
}

impl Counts {
    /// The records that have not expired.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(keepsake::store::Counts { total: 2, expired: 5 }.live(), 0);
    /// ```
    pub fn live(&self) -> u64 {
        self.total.saturating_sub(self.expired)
    }
}

/// The outcome of one [`StoreAdmin::purge_step`].
///
/// # Example
///
/// ```
/// let step = keepsake::store::PurgeStep { purged: 3, next: None };
/// assert!(step.is_last());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeStep {
    /// How many expired records this step deleted.
    pub purged: usize,
    /// Where the next step continues, or `None` when the purge is complete.
    pub next: Option<Cursor>,
}

impl PurgeStep {
    /// Whether this was the last step of the purge.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{Cursor, PurgeStep};
    ///
    /// assert!(!PurgeStep { purged: 0, next: Some(Cursor::new("1")) }.is_last());
    /// ```
    pub fn is_last(&self) -> bool {
        self.next.is_none()
    }
}

/// What an operator needs beyond the request path: paging through every
/// record, counting, and purging in bounded steps.
///
/// Every operation does a bounded amount of work: a page holds at most
/// `limit` records and a purge step deletes at most about `limit` records,
/// so walking a store of a million sessions never loads them all at once,
/// and a purge can report progress between steps. Records are seen as they
/// are at the moment each page is read: a record created or deleted during
/// a walk may or may not show up.
///
/// # What "expired" means per store
///
/// A record has expired at `now` once `now` reaches its
/// [`Record::deadline`]. Memory, SQLite and PostgreSQL keep expired records
/// until they are purged. Redis deletes a session by itself when its native
/// expiry (set at the deadline, by Redis's clock) fires, so there the
/// expired records counted and purged are only those whose deadline `now`
/// has reached but whose TTL has not fired yet (usually a handful, when the
/// app's clock runs ahead of Redis's); a Redis walk uses `SCAN` on the
/// store's prefix (never `KEYS`), which may return a record twice if Redis
/// resizes its keyspace during the walk.
///
/// # Example
///
/// ```
/// use keepsake::store::{Id, Record, SessionStore, SqliteStore, StoreAdmin};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = SqliteStore::open_in_memory()?;
/// for _ in 0..5 {
///     store.create(&Record::new(Id::random(), 0, None, 60)).await?;
/// }
/// let mut seen = 0;
/// let mut cursor = None;
/// loop {
///     let page = store.page(cursor.as_ref(), 2).await?;
///     assert!(page.records.len() <= 2);
///     seen += page.records.len();
///     match page.next {
///         Some(next) => cursor = Some(next),
///         None => break,
///     }
/// }
/// assert_eq!(seen, 5);
/// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
/// ```
pub trait StoreAdmin: SessionStore {
    /// Up to `limit` records (at least one is asked for when `limit` is 0),
    /// expired ones included, starting where `cursor` says (`None`: from
    /// the start). Pass [`Page::next`] back to get the next page.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{Id, MemoryStore, Record, SessionStore, StoreAdmin};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = MemoryStore::new();
    /// for lifetime in [10, 20, 30] {
    ///     store.create(&Record::new(Id::random(), 0, None, lifetime)).await?;
    /// }
    /// let first = store.page(None, 2).await?;
    /// assert_eq!(first.records.len(), 2);
    /// let second = store.page(first.next.as_ref(), 2).await?;
    /// assert_eq!((second.records.len(), second.next), (1, None));
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    fn page(
        &self,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> impl Future<Output = Result<Page, StoreError>> + Send;

    /// How many records the store holds, and how many of them have expired
    /// at `now`.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{Counts, Id, Record, SessionStore, SqliteStore, StoreAdmin};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = SqliteStore::open_in_memory()?;
    /// store.create(&Record::new(Id::random(), 0, None, 10)).await?;
    /// store.create(&Record::new(Id::random(), 0, None, 99)).await?;
    /// assert_eq!(store.count(50).await?, Counts { total: 2, expired: 1 });
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    fn count(&self, now: u64) -> impl Future<Output = Result<Counts, StoreError>> + Send;

    /// Deletes up to about `limit` records that have expired at `now`,
    /// continuing where `cursor` says (`None`: from the start). Call it
    /// again with [`PurgeStep::next`] until that is `None`; the total is the
    /// same as one [`SessionStore::purge_expired`].
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{Id, Record, SessionStore, SqliteStore, StoreAdmin};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = SqliteStore::open_in_memory()?;
    /// for _ in 0..3 {
    ///     store.create(&Record::new(Id::random(), 0, None, 10)).await?;
    /// }
    /// let step = store.purge_step(10, None, 2).await?;
    /// assert_eq!(step.purged, 2);
    /// let last = store.purge_step(10, step.next.as_ref(), 2).await?;
    /// assert_eq!((last.purged, last.is_last()), (1, true));
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    fn purge_step(
        &self,
        now: u64,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> impl Future<Output = Result<PurgeStep, StoreError>> + Send;
}

// ---------------------------------------------------------------------------
// Store URLs
// ---------------------------------------------------------------------------

/// Why a store URL could not be parsed or its store opened.
///
/// # Example
///
/// ```
/// use keepsake::store::{OpenError, StoreUrl};
///
/// let err = StoreUrl::parse("mongodb://db").unwrap_err();
/// assert!(matches!(err, OpenError::UnknownScheme { .. }));
/// assert!(err.to_string().starts_with("unknown session store `mongodb://db`"));
/// // `Debug` (what `main` prints for an error it returns) names the
/// // variant, then says what `Display` and the causes say.
/// assert!(format!("{err:?}").starts_with("UnknownScheme: unknown session store `mongodb://db`: expected"));
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The URL names no store this crate knows.
    #[error(
        "unknown session store `{url}`: expected memory://, sqlite://PATH, \
         redis://HOST[:PORT][/DB][?prefix=P] or postgres://USER@HOST[:PORT]/DB[?schema=S&table=T]"
    )]
    UnknownScheme {
        /// The URL, with any password hidden.
        url: String,
    },
    /// The URL names a store whose cargo feature is turned off.
    #[error(
        "`{scheme}://` session stores need keepsake's `{feature}` feature: \
         add features = [\"{feature}\"] to the keepsake dependency"
    )]
    FeatureDisabled {
        /// The URL's scheme.
        scheme: String,
        /// The feature to turn on.
        feature: &'static str,
    },
    /// The URL is malformed.
    #[error("invalid session store URL `{url}`: {reason}")]
    Invalid {
        /// The URL, with any password hidden.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store could not be opened or reached; the cause is the error's
    /// [`source`](std::error::Error::source).
    #[error("cannot open the {store} session store at {url}")]
    Store {
        /// The kind of store: `memory`, `sqlite`, `redis` or `postgres`.
        store: &'static str,
        /// The URL, with any password hidden.
        url: String,
        /// What went wrong.
        #[source]
        source: StoreError,
    },
}

/// `Variant: message: cause: ...`, as for
/// [`KeyError`](crate::key::KeyError): the message and its hint rather than
/// the fields. URLs are shown with any password hidden, as in `Display`.
impl fmt::Debug for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let variant = match self {
            Self::UnknownScheme { .. } => "UnknownScheme",
            Self::FeatureDisabled { .. } => "FeatureDisabled",
            Self::Invalid { .. } => "Invalid",
            Self::Store { .. } => "Store",
        };
        crate::key::debug_error(f, variant, self)
    }
}

/// A parsed store URL: which store, and its settings. Parsing opens nothing.
///
/// | URL | store |
/// |---|---|
/// | `memory://` (or `memory`) | a new, empty [`MemoryStore`] |
/// | `sqlite://PATH` | [`SqliteStore`](super::SqliteStore) on the file `PATH` (`sqlite://sessions.db` is relative, `sqlite:///var/lib/app/sessions.db` absolute; `sqlite://:memory:` a private in-memory database), created with mode 0600 on Unix if absent; feature `sqlite` |
/// | `redis://[:PASSWORD@]HOST[:PORT][/DB][?prefix=P]` | [`RedisStore`](super::RedisStore) on database number `DB` (default 0) with key prefix `P` (default `keepsake:`); feature `redis` |
/// | `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?schema=S&table=T]`, `postgresql://...` | [`PostgresStore`](super::PostgresStore) in schema `S` (default `public`) and table `T` (default `keepsake_sessions`), created if absent; feature `postgres` |
///
/// `prefix`, `schema` and `table` are taken out of the query string
/// (percent-decoded), each at most once; `schema` and `table` must be names
/// the PostgreSQL store takes (`[a-z_][a-z0-9_]*`). [`Display`](fmt::Display)
/// shows the URL with any password replaced by `***`, so it can go into
/// logs and error messages.
///
/// A `redis://` URL takes no other parameter than `prefix` (and
/// `protocol=3`, as keepsake always speaks RESP3): a mistyped `prefix`
/// would otherwise share another app's sessions, and the database number
/// goes in the path (`redis://HOST:6379/11`), not in a `db` parameter. A
/// `/`, `?`, `#` or `@` in its password must be percent-encoded. Other
/// parameters of a `postgres://` URL go to tokio-postgres as they are,
/// except `ssl*` ones: the PostgreSQL store connects without TLS, so only
/// `sslmode=disable` is taken. An `@` in a PostgreSQL password must be
/// percent-encoded (`%40`).
///
/// Neither store connects over TLS here: `rediss://` is refused, and so is
/// `sslmode=require`; reach the server over a private network, a unix
/// socket (PostgreSQL: `?host=/run/postgresql`) or a TLS-terminating proxy.
/// A Redis unix socket (`redis+unix:///PATH`) is not a store URL: open it
/// in code with [`RedisStore::connect`](super::RedisStore::connect).
///
/// A `sqlite://` path is taken as it is, not percent-decoded (`#`, spaces
/// and non-ASCII characters are part of it), and it is a file path, not an
/// SQLite URI: a path with a `?` (SQLite query parameters such as
/// `?mode=ro` are not supported; rename a file whose name has a `?`) or
/// one beginning with `file:` (write `./file:...` for a file really named
/// so) is refused.
///
/// # Example
///
/// ```
/// use keepsake::store::StoreUrl;
///
/// let url = StoreUrl::parse("redis://:hunter2@127.0.0.1:6379/2?prefix=shop%3A")?;
/// assert_eq!(url.name(), "redis");
/// assert_eq!(url.to_string(), "redis://:***@127.0.0.1:6379/2?prefix=shop%3A");
/// assert!(matches!(url, StoreUrl::Redis { ref prefix, .. } if prefix.as_deref() == Some("shop:")));
///
/// let url = StoreUrl::parse("sqlite://data/sessions.db")?;
/// assert_eq!(url, StoreUrl::Sqlite { path: "data/sessions.db".into() });
///
/// // `Display` and `Debug` hide a password, so either can be logged.
/// let url = StoreUrl::parse("redis://:hunter2@127.0.0.1/0")?;
/// assert!(!url.to_string().contains("hunter2") && !format!("{url:?}").contains("hunter2"));
/// # Ok::<(), keepsake::store::OpenError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreUrl {
    /// `memory://`.
    Memory,
    /// `sqlite://PATH`.
    Sqlite {
        /// The database file, or `:memory:`.
        path: String,
    },
    /// `redis://...`.
    Redis {
        /// The URL for the Redis client, without `prefix`.
        url: String,
        /// The key prefix, if given.
        prefix: Option<String>,
        /// The URL as given, for messages (password hidden).
        shown: String,
    },
    /// `postgres://...` or `postgresql://...`.
    Postgres {
        /// The URL for the PostgreSQL client, without `schema` and `table`.
        url: String,
        /// The schema, if given.
        schema: Option<String>,
        /// The table, if given.
        table: Option<String>,
        /// The URL as given, for messages (password hidden).
        shown: String,
    },
}

/// The URL as [`Display`](fmt::Display) shows it: the client URLs inside
/// hold the password.
impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StoreUrl").field(&self.to_string()).finish()
    }
}

impl StoreUrl {
    /// Parses `text` (surrounding whitespace ignored). Fails for an unknown
    /// scheme, a store whose feature is turned off, or a malformed URL,
    /// including a `sqlite://` path with a `?` or beginning with `file:`, a
    /// `redis://` parameter other than `prefix` (and `protocol=3`), a
    /// `prefix`, `schema` or `table` given twice, a schema or table name the
    /// PostgreSQL store refuses, and TLS (`rediss://`, an `sslmode` other
    /// than `disable`), which these stores do not have (see [`StoreUrl`]).
    /// Nothing is connected.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{OpenError, StoreUrl};
    ///
    /// assert_eq!(StoreUrl::parse(" memory:// ")?, StoreUrl::Memory);
    /// assert!(matches!(StoreUrl::parse("sqlite://"), Err(OpenError::Invalid { .. })));
    /// assert!(matches!(StoreUrl::parse("sqlite://s.db?mode=ro"), Err(OpenError::Invalid { .. })));
    /// assert!(matches!(StoreUrl::parse("sqlite://file::memory:"), Err(OpenError::Invalid { .. })));
    /// assert!(matches!(StoreUrl::parse("redis://h?prefix=%zz"), Err(OpenError::Invalid { .. })));
    /// // A mistyped `prefix` would share another app's sessions.
    /// let err = StoreUrl::parse("redis://h/0?prefx=shop").unwrap_err();
    /// assert!(err.to_string().contains("unknown parameter `prefx`"), "{err}");
    /// assert!(matches!(StoreUrl::parse("rediss://h/0"), Err(OpenError::Invalid { .. })));
    /// assert!(matches!(
    ///     StoreUrl::parse("postgres://app@db/app?sslmode=require"),
    ///     Err(OpenError::Invalid { .. })
    /// ));
    /// # Ok::<(), OpenError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self, OpenError> {
        let text = text.trim();
        if text == "memory" || text == "memory://" {
            return Ok(Self::Memory);
        }
        let hidden = hidden_ranges(text);
        let shown = show(text, &hidden);
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(OpenError::UnknownScheme { url: shown });
        };
        let invalid = |reason: &str| OpenError::Invalid {
            url: shown.clone(),
            reason: reason.to_owned(),
        };
        let disabled = |feature: &'static str| OpenError::FeatureDisabled {
            scheme: scheme.to_owned(),
            feature,
        };
        match scheme {
            "memory" => Err(invalid("memory:// takes nothing after the scheme")),
            "sqlite" => {
                if !cfg!(feature = "sqlite") {
                    return Err(disabled("sqlite"));
                }
                if rest.is_empty() {
                    return Err(invalid("no database file after sqlite://"));
                }
                // The path is a file path, used as it is: `?...` would
                // become part of the file name, and `file:...` is what
                // SQLite reads as a URI.
                if rest.contains('?') {
                    return Err(invalid(
                        "sqlite:// takes no query parameters: everything after sqlite:// is \
                         the database file's path; if the file's name really contains `?`, \
                         rename the file",
                    ));
                }
                if rest.starts_with("file:") {
                    return Err(invalid(
                        "sqlite:// takes a file path, not an SQLite URI (`file:...`); for \
                         an in-memory database use sqlite://:memory:, and for a file that \
                         is really named `file:...` write sqlite://./file:...",
                    ));
                }
                Ok(Self::Sqlite {
                    path: rest.to_owned(),
                })
            }
            "rediss" => Err(invalid(
                "rediss:// (Redis over TLS) is not supported: keepsake builds its Redis client \
                 without TLS; reach Redis over a private network, or through a \
                 TLS-terminating proxy (such as stunnel) on a local address, with redis://",
            )),
            "redis+unix" | "unix" => Err(invalid(
                "StoreUrl takes Redis over TCP only (redis://HOST[:PORT][/DB]); for a unix \
                 socket, open the store in code: RedisStore::connect takes \
                 redis+unix:///PATH/redis.sock URLs",
            )),
            "redis" => {
                if !cfg!(feature = "redis") {
                    return Err(disabled("redis"));
                }
                if rest.is_empty() {
                    return Err(invalid("no host after redis://"));
                }
                let (url, prefix) = redis_params(text, rest, &hidden).map_err(|r| invalid(&r))?;
                Ok(Self::Redis { url, prefix, shown })
            }
            "postgres" | "postgresql" => {
                if !cfg!(feature = "postgres") {
                    return Err(disabled("postgres"));
                }
                if rest.is_empty() {
                    return Err(invalid("no host after postgres://"));
                }
                let (url, schema, table) =
                    postgres_params(text, rest, &hidden).map_err(|r| invalid(&r))?;
                Ok(Self::Postgres {
                    url,
                    schema,
                    table,
                    shown,
                })
            }
            _ => Err(OpenError::UnknownScheme { url: shown }),
        }
    }

    /// The kind of store: `memory`, `sqlite`, `redis` or `postgres`.
    ///
    /// # Example
    ///
    /// ```
    /// let url = keepsake::store::StoreUrl::parse("postgresql://app@db/app?schema=s1")?;
    /// assert_eq!(url.name(), "postgres");
    /// # Ok::<(), keepsake::store::OpenError>(())
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Sqlite { .. } => "sqlite",
            Self::Redis { .. } => "redis",
            Self::Postgres { .. } => "postgres",
        }
    }

    /// Opens (or connects to) the store. A SQLite file is created if
    /// absent; a PostgreSQL table (and schema) is created if absent.
    ///
    /// # Errors
    ///
    /// [`OpenError::Store`] when the store cannot be opened or reached;
    /// [`OpenError::FeatureDisabled`] if the URL was built by hand for a
    /// store whose feature is off.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{AnyStore, OpenError, StoreUrl};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = StoreUrl::parse("sqlite://:memory:")?.open().await?;
    /// assert!(matches!(store, AnyStore::Sqlite(_)));
    /// let err = StoreUrl::parse("sqlite:///no/such/dir/s.db")?.open().await.unwrap_err();
    /// assert!(matches!(err, OpenError::Store { store: "sqlite", .. }));
    /// # Ok::<(), OpenError>(()) }).unwrap();
    /// ```
    pub async fn open(&self) -> Result<AnyStore, OpenError> {
        self.open_with(true).await
    }

    /// Opens a store that exists, creating and changing nothing: a SQLite
    /// file must hold this build's session schema, and a PostgreSQL session
    /// table must be there already. For operators' tools (the `keepsake
    /// sessions` commands), so that a mistyped path, schema or table is an
    /// error instead of a new, empty store, and another app's database is
    /// left as it was.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open), and [`OpenError::Store`] when there is no
    /// such store.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{OpenError, StoreUrl};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let path = std::env::temp_dir().join(format!("keepsake-doc-existing-{}.db", std::process::id()));
    /// let url = StoreUrl::parse(&format!("sqlite://{}", path.display()))?;
    /// assert!(matches!(url.open_existing().await, Err(OpenError::Store { .. })));
    /// assert!(!path.exists());
    /// drop(url.open().await?); // the app creates it
    /// assert!(url.open_existing().await.is_ok());
    /// # for suffix in ["", "-wal", "-shm"] {
    /// #     let mut file = path.clone().into_os_string();
    /// #     file.push(suffix);
    /// #     let _ = std::fs::remove_file(file);
    /// # }
    /// # Ok::<(), OpenError>(()) }).unwrap();
    /// ```
    pub async fn open_existing(&self) -> Result<AnyStore, OpenError> {
        self.open_with(false).await
    }

    /// [`open`](Self::open), creating and migrating only if `migrate`.
    #[cfg_attr(
        not(any(feature = "sqlite", feature = "postgres")),
        allow(unused_variables)
    )]
    async fn open_with(&self, migrate: bool) -> Result<AnyStore, OpenError> {
        let failed = |source: StoreError| OpenError::Store {
            store: self.name(),
            url: self.to_string(),
            source,
        };
        match self {
            Self::Memory => Ok(AnyStore::Memory(MemoryStore::new())),
            #[cfg(feature = "sqlite")]
            Self::Sqlite { path } => {
                let store = if path == ":memory:" {
                    super::SqliteStore::open_in_memory()
                } else {
                    let builder = super::SqliteStore::builder(path).migrate(migrate);
                    builder.open().await
                };
                store.map(AnyStore::Sqlite).map_err(failed)
            }
            #[cfg(feature = "redis")]
            Self::Redis { url, prefix, .. } => {
                let store = super::RedisStore::connect(url).await.map_err(failed)?;
                Ok(AnyStore::Redis(match prefix {
                    Some(prefix) => store.with_prefix(prefix.clone()),
                    None => store,
                }))
            }
            #[cfg(feature = "postgres")]
            Self::Postgres {
                url, schema, table, ..
            } => {
                let mut builder = super::PostgresStore::builder().migrate(migrate);
                if let Some(schema) = schema {
                    builder = builder.schema(schema.clone());
                }
                if let Some(table) = table {
                    builder = builder.table(table.clone());
                }
                let store = builder.connect(url).await.map_err(failed)?;
                if !migrate {
                    store.check_table().await.map_err(failed)?;
                }
                Ok(AnyStore::Postgres(store))
            }
            #[allow(unreachable_patterns)]
            _ => {
                let _ = failed;
                Err(OpenError::FeatureDisabled {
                    scheme: self.name().to_owned(),
                    feature: self.name(),
                })
            }
        }
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("memory://"),
            Self::Sqlite { path } => write!(f, "sqlite://{path}"),
            Self::Redis { shown, .. } | Self::Postgres { shown, .. } => f.write_str(shown),
        }
    }
}

impl std::str::FromStr for StoreUrl {
    type Err = OpenError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// Where `text` may hold a password, to be replaced by `***` in messages
/// and logs ([`show`]): sorted, merged ranges. They cover too much rather
/// than too little, however a driver or a person would read the text:
///
/// * the user information's password: from its first `:` to the last `@`
///   of the text (tokio-postgres ends the user information at the first
///   `@`, redis-rs at the last `@` before the path, and a password may hold
///   unencoded `@`, `:`, `/`, `?` and `#`);
/// * the value of a query parameter whose name, percent-decoded and in any
///   case, holds `pass` or `pwd` (tokio-postgres's `password`, redis-rs's
///   `pass` for unix sockets, libpq's `sslpassword`): up to the next `&`,
///   and on over any further `&`-separated pieces without a `=` (the rest
///   of a password with an unencoded `&`);
/// * in `key=value` text (a libpq connection string), the value of such a
///   key, quoted or not.
fn hidden_ranges(text: &str) -> Vec<Range<usize>> {
    let mut hidden = Vec::new();
    let start = scheme_end(text).unwrap_or(0);
    if let Some(at) = text.rfind('@')
        && at >= start
        && let Some(colon) = text[start..at].find(':')
    {
        hidden.push(start + colon + 1..at);
    }
    for (separator, _) in text.match_indices(['?', '&']) {
        let name_start = separator + 1;
        let Some(name_len) = text[name_start..].find(['=', '?', '&']) else {
            continue;
        };
        let equals = name_start + name_len;
        if !text[equals..].starts_with('=') || !is_secret_name(&text[name_start..equals]) {
            continue;
        }
        let piece_end = |from: usize| text[from..].find('&').map_or(text.len(), |at| from + at);
        let mut end = piece_end(equals + 1);
        while end < text.len() {
            let next = piece_end(end + 1);
            if text[end + 1..next].contains('=') {
                break;
            }
            end = next;
        }
        hidden.push(equals + 1..end);
    }
    hidden.extend(keyword_values(text));
    hidden.sort_by_key(|range| range.start);
    let mut merged: Vec<Range<usize>> = Vec::new();
    for range in hidden {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    merged
}

/// `text` with each of the `hidden` ranges (sorted, apart) replaced by
/// `***`.
fn show(text: &str, hidden: &[Range<usize>]) -> String {
    let mut shown = String::with_capacity(text.len());
    let mut done = 0;
    for range in hidden {
        shown.push_str(&text[done..range.start]);
        shown.push_str("***");
        done = range.end;
    }
    shown.push_str(&text[done..]);
    shown
}

/// Whether the part of a text at `range` shows, given its
/// [`hidden_ranges`]: whether it overlaps none of them. What an error quotes
/// from a URL must show: an unknown parameter's name, for one, may be part
/// of a password with an unencoded `?` or `&`.
fn shows(hidden: &[Range<usize>], range: Range<usize>) -> bool {
    !hidden
        .iter()
        .any(|hidden| hidden.start < range.end && range.start < hidden.end)
}

/// Where a URL's `scheme://` ends, if `text` begins with one.
fn scheme_end(text: &str) -> Option<usize> {
    let (scheme, _) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme.len() + 3)
}

/// Whether a parameter or key named `name` may hold a password: its
/// percent-decoded name holds `pass` or `pwd`, in any case.
fn is_secret_name(name: &str) -> bool {
    let name = decode_lossy(name).to_ascii_lowercase();
    name.contains("pass") || name.contains("pwd")
}

/// Where the values of the password keys are in `key=value` text, read as
/// libpq and tokio-postgres read it: `key = value` pairs apart by
/// whitespace, a value in single quotes or up to the next whitespace, a `\`
/// escaping the next character. A key with a `/`, `:`, `@`, `?`, `&` or `#`
/// is part of a URL, not a key.
fn keyword_values(text: &str) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    for (equals, _) in text.match_indices('=') {
        let key_end = text[..equals].trim_end().len();
        let key_start = text[..key_end]
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_whitespace())
            .map_or(0, |(at, c)| at + c.len_utf8());
        let key = &text[key_start..key_end];
        if key.is_empty()
            || key.contains(['/', ':', '@', '?', '&', '#', '='])
            || !is_secret_name(key)
        {
            continue;
        }
        let after = &text[equals + 1..];
        let value_start = equals + 1 + (after.len() - after.trim_start().len());
        let value = &text[value_start..];
        let quoted = value.starts_with('\'');
        let mut end = value.len();
        let mut escaped = false;
        for (at, c) in value.char_indices().skip(usize::from(quoted)) {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if quoted && c == '\'' {
                end = at + 1;
                break;
            } else if !quoted && c.is_whitespace() {
                end = at;
                break;
            }
        }
        ranges.push(value_start..value_start + end);
    }
    ranges
}

/// A query parameter.
struct Param<'a> {
    /// `name=value`, as written.
    pair: &'a str,
    /// Where `pair` is in the URL.
    at: Range<usize>,
    /// The name, percent-decoded.
    name: String,
    /// The value, as written.
    value: &'a str,
}

/// The query parameters of `text` after the `?` at `question`. Empty
/// pairs (`&&`) are skipped.
fn query_pairs(text: &str, question: usize) -> Vec<Param<'_>> {
    let mut params = Vec::new();
    let mut start = question + 1;
    for pair in text[start..].split('&') {
        let at = start..start + pair.len();
        start = at.end + 1;
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        params.push(Param {
            pair,
            at,
            name: decode_lossy(name),
            value,
        });
    }
    params
}

/// Sets `slot` to the value of the parameter `name`: percent-decoded,
/// neither empty nor given before.
fn take_once(slot: &mut Option<String>, name: &str, value: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("the `{name}` parameter is given twice"));
    }
    let value = percent_decode(value)
        .ok_or_else(|| format!("the `{name}` parameter is not valid percent-encoding"))?;
    if value.is_empty() {
        return Err(format!("the `{name}` parameter is empty"));
    }
    *slot = Some(value);
    Ok(())
}

/// Checks a `redis://` URL (`text`; `rest` is what follows the scheme) as
/// redis-rs reads it, and takes keepsake's parameters out: the URL for the
/// client and the key prefix. Only `prefix` and `protocol` (RESP3, which
/// keepsake uses anyway) are taken: redis-rs reads nothing else from a TCP
/// URL's query, so any other parameter is a mistake (a mistyped `prefix`
/// would share another app's sessions; `db` would be ignored).
fn redis_params(
    text: &str,
    rest: &str,
    hidden: &[Range<usize>],
) -> Result<(String, Option<String>), String> {
    // The `url` crate ends the authority at the first `/`, `?` or `#` and
    // the user information at the authority's last `@`: an `@` past the
    // authority means a password (or prefix) that needs percent-encoding.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if rest[authority_end..].contains('@') {
        return Err(
            "an `@` after the host: percent-encode a `/`, `?`, `#` or `@` in a user \
             name or password (%2F, %3F, %23, %40), and an `@` in a prefix (%40)"
                .to_owned(),
        );
    }
    if rest.contains('#') {
        return Err(
            "redis:// URLs take no fragment (`#...`): percent-encode a `#` in a \
             password or prefix as %23"
                .to_owned(),
        );
    }
    let host = rest[..authority_end].rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err("no host after redis://".to_owned());
    }
    let question = text.find('?');
    let base = &text[..question.unwrap_or(text.len())];
    let path = rest[authority_end..].split('?').next().unwrap_or_default();
    let db = path.trim_matches('/');
    let number = db.bytes().all(|b| b.is_ascii_digit()) && db.parse::<u32>().is_ok();
    if !db.is_empty() && !number {
        return Err(
            "the database after the host must be a number, as in redis://HOST:6379/11".to_owned(),
        );
    }
    let mut prefix = None;
    let mut protocol = None;
    let params = question.map(|at| query_pairs(text, at)).unwrap_or_default();
    for Param {
        pair,
        at,
        name,
        value,
    } in params
    {
        match name.as_str() {
            "prefix" => take_once(&mut prefix, "prefix", value)?,
            "protocol" => {
                take_once(&mut protocol, "protocol", value)?;
                if !matches!(protocol.as_deref(), Some("3" | "resp3")) {
                    return Err(
                        "keepsake's Redis store always speaks RESP3: `protocol` can \
                         only be 3 (or resp3), or left out"
                            .to_owned(),
                    );
                }
            }
            _ => {
                let name = pair.split_once('=').map_or(pair, |(name, _)| name);
                let hint = if is_secret_name(name) {
                    "; a password goes in the user information, percent-encoded: \
                     redis://:PASSWORD@HOST:6379/0"
                } else {
                    ""
                };
                let what = if shows(hidden, at.start..at.start + name.len()) {
                    format!("unknown parameter `{}`", name.escape_debug())
                } else {
                    "an unknown parameter (its name is not shown: it may be part of a \
                     password)"
                        .to_owned()
                };
                return Err(format!(
                    "{what}: redis:// URLs take only `prefix` (the key prefix) and \
                     `protocol=3`; the database number goes in the path, as in \
                     redis://HOST:6379/11{hint}"
                ));
            }
        }
    }
    Ok((base.to_owned(), prefix))
}

/// Checks a `postgres://` URL (`text`; `rest` is what follows the scheme)
/// as tokio-postgres reads it, and takes keepsake's parameters out: the URL
/// for the client, the schema and the table. `ssl*` parameters are refused
/// (the store connects without TLS: `sslmode=disable` only); any other
/// parameters stay for tokio-postgres.
fn postgres_params(
    text: &str,
    rest: &str,
    hidden: &[Range<usize>],
) -> Result<(String, Option<String>, Option<String>), String> {
    // tokio-postgres ends the user information at the first `@`: a second
    // `@` means a password (or parameter) that needs percent-encoding, and
    // where the parameters start would be a guess.
    let user_end = match (rest.find('@'), rest.rfind('@')) {
        (Some(first), Some(last)) if first != last => {
            return Err(
                "more than one `@`: tokio-postgres ends the user name and password at \
                 the first `@`, so percent-encode an `@` in a password, user name or \
                 parameter as %40"
                    .to_owned(),
            );
        }
        (Some(at), _) => at + 1,
        _ => 0,
    };
    // With no `:` there is no password, and a user name holds no `/` or
    // `?`: that `@` belongs to the path or a parameter.
    let user = &rest[..user_end.saturating_sub(1)];
    if !user.contains(':') && user.contains(['/', '?']) {
        return Err(
            "an `@` in the database name or a parameter: tokio-postgres takes everything \
             before the first `@` as the user name, so percent-encode it as %40"
                .to_owned(),
        );
    }
    let Some(query_at) = rest[user_end..].find('?') else {
        return Ok((text.to_owned(), None, None));
    };
    let question = text.len() - rest.len() + user_end + query_at;
    let base = &text[..question];
    let (mut schema, mut table, mut kept) = (None, None, Vec::new());
    // Where `schema` and `table` are, to quote them in errors only if they
    // show.
    let mut quotable = true;
    for Param {
        pair,
        at,
        name,
        value,
    } in query_pairs(text, question)
    {
        match name.as_str() {
            "schema" | "table" => {
                let slot = if name == "schema" {
                    &mut schema
                } else {
                    &mut table
                };
                take_once(slot, &name, value)?;
                quotable &= shows(hidden, at);
            }
            "sslmode" if percent_decode(value).as_deref() == Some("disable") => kept.push(pair),
            _ if name.to_ascii_lowercase().starts_with("ssl") => {
                let what = if name == "sslmode" {
                    "sslmode can only be `disable`".to_owned()
                } else if shows(
                    hidden,
                    at.start..at.start + pair.find('=').unwrap_or(pair.len()),
                ) {
                    format!("it takes no `{}` parameter", name.escape_debug())
                } else {
                    "it takes no ssl parameters".to_owned()
                };
                return Err(format!(
                    "keepsake's PostgreSQL store connects without TLS, so {what}: reach \
                     PostgreSQL over a unix socket (?host=/run/postgresql), a private network \
                     or a TLS-terminating proxy, with sslmode=disable or no sslmode"
                ));
            }
            _ => kept.push(pair),
        }
    }
    #[cfg(not(feature = "postgres"))]
    let _ = quotable;
    #[cfg(feature = "postgres")]
    {
        use super::postgres::{MAX_SCHEMA_LEN, MAX_TABLE_LEN, VERSIONS_TABLE, check_name};
        let refused = |err: StoreError| {
            if quotable {
                err.message
            } else {
                "a schema or table name the PostgreSQL store refuses: use lowercase ASCII \
                 letters, digits and underscores, not starting with a digit"
                    .to_owned()
            }
        };
        if let Some(schema) = &schema {
            check_name("schema", schema, MAX_SCHEMA_LEN).map_err(refused)?;
        }
        if let Some(table) = &table {
            check_name("table", table, MAX_TABLE_LEN).map_err(refused)?;
            if table == VERSIONS_TABLE {
                return Err(format!(
                    "the table name `{VERSIONS_TABLE}` is keepsake's own (it records the \
                     session tables' layout versions): pick another"
                ));
            }
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, schema, table))
}

/// Decodes the valid `%XX` escapes and `+` (a space) of `text`, keeping
/// anything else as it is and replacing bytes that are not UTF-8: how a
/// parameter name is compared.
fn decode_lossy(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = (bytes[i] == b'%').then(|| hex_byte(text, i + 1)).flatten();
        match (escape, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, byte) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes `%XX` escapes and `+` (a space); `None` for a bad escape or
/// text that is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                out.push(hex_byte(text, i + 1)?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The byte that the two hex digits at `at` in `text` stand for, if they
/// are two hex digits.
fn hex_byte(text: &str, at: usize) -> Option<u8> {
    let hex = text.get(at..at + 2)?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

// ---------------------------------------------------------------------------
// AnyStore
// ---------------------------------------------------------------------------

/// Any store this crate has (with the features turned on), picked at run
/// time from a URL: implements [`SessionStore`] and [`StoreAdmin`] by
/// handing every call to the store inside.
///
/// Cloning is cheap and shares the store (every store inside is a shared
/// handle).
///
/// # Example
///
/// ```
/// use keepsake::store::{AnyStore, Id, Record, SessionStore};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let dir = std::env::temp_dir().join(format!("keepsake-anystore-{}", Id::random()));
/// std::fs::create_dir(&dir)?;
/// let url = format!("sqlite://{}", dir.join("sessions.db").display());
/// let store = AnyStore::open(&url).await?;
/// assert_eq!(store.name(), "sqlite");
/// let record = Record::new(Id::random(), 0, None, 60);
/// store.create(&record).await?;
/// drop(store);
///
/// // The file keeps the session.
/// let again = AnyStore::open(&url).await?;
/// assert!(again.load(&record.id, 1).await?.is_some());
/// # drop(again);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyStore {
    /// A [`MemoryStore`].
    Memory(MemoryStore),
    /// A [`SqliteStore`](super::SqliteStore).
    #[cfg(feature = "sqlite")]
    Sqlite(super::SqliteStore),
    /// A [`RedisStore`](super::RedisStore).
    #[cfg(feature = "redis")]
    Redis(super::RedisStore),
    /// A [`PostgresStore`](super::PostgresStore).
    #[cfg(feature = "postgres")]
    Postgres(super::PostgresStore),
}

impl AnyStore {
    /// Parses `url` (see [`StoreUrl`]) and opens the store it names.
    ///
    /// # Errors
    ///
    /// As [`StoreUrl::parse`] and [`StoreUrl::open`].
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{AnyStore, OpenError};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// assert_eq!(AnyStore::open("memory://").await?.name(), "memory");
    /// let err = AnyStore::open("mysql://db").await.unwrap_err();
    /// assert!(matches!(err, OpenError::UnknownScheme { .. }));
    /// # Ok::<(), OpenError>(()) }).unwrap();
    /// ```
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        StoreUrl::parse(url)?.open().await
    }

    /// The kind of store inside: `memory`, `sqlite`, `redis` or `postgres`.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{AnyStore, MemoryStore};
    ///
    /// assert_eq!(AnyStore::from(MemoryStore::new()).name(), "memory");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => "sqlite",
            #[cfg(feature = "redis")]
            Self::Redis(_) => "redis",
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => "postgres",
        }
    }
}

impl From<MemoryStore> for AnyStore {
    fn from(store: MemoryStore) -> Self {
        Self::Memory(store)
    }
}

#[cfg(feature = "sqlite")]
impl From<super::SqliteStore> for AnyStore {
    fn from(store: super::SqliteStore) -> Self {
        Self::Sqlite(store)
    }
}

#[cfg(feature = "redis")]
impl From<super::RedisStore> for AnyStore {
    fn from(store: super::RedisStore) -> Self {
        Self::Redis(store)
    }
}

#[cfg(feature = "postgres")]
impl From<super::PostgresStore> for AnyStore {
    fn from(store: super::PostgresStore) -> Self {
        Self::Postgres(store)
    }
}

/// Runs `$call` on the store inside `$self`, bound to `$store`.
macro_rules! delegate {
    ($self:expr, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Memory($store) => $call,
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite($store) => $call,
            #[cfg(feature = "redis")]
            AnyStore::Redis($store) => $call,
            #[cfg(feature = "postgres")]
            AnyStore::Postgres($store) => $call,
        }
    };
}

impl SessionStore for AnyStore {
    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        delegate!(self, store => store.create(record).await)
    }

    async fn load(&self, id: &Id, now: u64) -> Result<Option<Record>, StoreError> {
        delegate!(self, store => store.load(id, now).await)
    }

    async fn load_shared(&self, id: &Id, now: u64) -> Result<Option<Arc<Record>>, StoreError> {
        delegate!(self, store => store.load_shared(id, now).await)
    }

    async fn save(&self, record: &Record, now: u64) -> Result<Saved, StoreError> {
        delegate!(self, store => store.save(record, now).await)
    }

    async fn save_shared(&self, record: &mut Arc<Record>, now: u64) -> Result<Saved, StoreError> {
        delegate!(self, store => store.save_shared(record, now).await)
    }

    async fn touch(
        &self,
        id: &Id,
        version: u64,
        idle_deadline: u64,
        now: u64,
    ) -> Result<Touched, StoreError> {
        delegate!(self, store => store.touch(id, version, idle_deadline, now).await)
    }

    async fn delete(&self, id: &Id) -> Result<bool, StoreError> {
        delegate!(self, store => store.delete(id).await)
    }

    async fn delete_if_version(&self, id: &Id, version: u64) -> Result<Deleted, StoreError> {
        delegate!(self, store => store.delete_if_version(id, version).await)
    }

    async fn delete_user(&self, user: &str) -> Result<usize, StoreError> {
        delegate!(self, store => store.delete_user(user).await)
    }

    async fn list_user(&self, user: &str, now: u64) -> Result<Vec<Record>, StoreError> {
        delegate!(self, store => store.list_user(user, now).await)
    }

    async fn purge_expired(&self, now: u64) -> Result<usize, StoreError> {
        delegate!(self, store => store.purge_expired(now).await)
    }
}

impl StoreAdmin for AnyStore {
    async fn page(&self, cursor: Option<&Cursor>, limit: usize) -> Result<Page, StoreError> {
        delegate!(self, store => store.page(cursor, limit).await)
    }

    async fn count(&self, now: u64) -> Result<Counts, StoreError> {
        delegate!(self, store => store.count(now).await)
    }

    async fn purge_step(
        &self,
        now: u64,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<PurgeStep, StoreError> {
        delegate!(self, store => store.purge_step(now, cursor, limit).await)
    }
}

// ---------------------------------------------------------------------------
// Background purge
// ---------------------------------------------------------------------------

/// A background task that purges a store's expired records at an interval:
/// it calls [`SessionStore::purge_expired`] with the current time (from the
/// system clock) once at the start and then every `interval` (at least one
/// second), and logs failures with `tracing` (a failed purge is retried at
/// the next tick; it never ends the task).
///
/// The task runs on the Tokio runtime it was spawned on and **stops when
/// this handle is dropped** or [`abort`](PurgeTask::abort)ed; keep the
/// handle as long as the app serves (for example in the app's state).
/// Useful with [`MemoryStore`] (which otherwise purges only a few records
/// per write), [`SqliteStore`](super::SqliteStore) and
/// [`PostgresStore`](super::PostgresStore); Redis expires sessions by
/// itself, and only needs it to tidy its per-user index. Running it on
/// several app servers at once is safe.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use keepsake::store::{Id, MemoryStore, PurgeTask, Record, SessionStore};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// store.create(&Record::new(Id::random(), 0, None, 60)).await?; // long expired
/// let task = PurgeTask::spawn(store.clone(), Duration::from_secs(3_600));
/// // The first purge runs at once.
/// for _ in 0..500 {
///     if store.is_empty() { break; }
///     tokio::time::sleep(Duration::from_millis(10)).await;
/// }
/// assert!(store.is_empty());
/// assert!(!task.is_finished());
/// drop(task); // stops the task
/// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
/// ```
#[derive(Debug)]
pub struct PurgeTask {
    handle: tokio::task::JoinHandle<()>,
}

impl PurgeTask {
    /// Spawns the task on the current Tokio runtime (timers enabled).
    ///
    /// # Panics
    ///
    /// If called outside a Tokio runtime, as [`tokio::spawn`] does.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use keepsake::store::{PurgeTask, SqliteStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = SqliteStore::open_in_memory()?;
    /// let task = PurgeTask::spawn(store, Duration::from_secs(60));
    /// assert!(!task.is_finished());
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    pub fn spawn<S: SessionStore>(store: S, interval: Duration) -> Self {
        Self {
            handle: spawn_purge_loop(store, interval),
        }
    }

    /// Stops the task (at its next `.await`; a purge in flight is
    /// abandoned, which is harmless: every batch is its own transaction or
    /// script). Dropping the handle does the same.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use keepsake::store::{MemoryStore, PurgeTask};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let task = PurgeTask::spawn(MemoryStore::new(), Duration::from_secs(60));
    /// task.abort();
    /// for _ in 0..500 {
    ///     if task.is_finished() { break; }
    ///     tokio::time::sleep(Duration::from_millis(10)).await;
    /// }
    /// assert!(task.is_finished());
    /// # });
    /// ```
    pub fn abort(&self) {
        self.handle.abort();
    }

    /// Whether the task has stopped (it only stops when aborted or
    /// dropped, or if its runtime shuts down).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use keepsake::store::{MemoryStore, PurgeTask};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let task = PurgeTask::spawn(MemoryStore::new(), Duration::from_secs(60));
    /// assert!(!task.is_finished());
    /// # });
    /// ```
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

impl Drop for PurgeTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// The purge loop behind [`PurgeTask`] and
/// [`PostgresStore::spawn_purge_task`](super::PostgresStore::spawn_purge_task).
pub(super) fn spawn_purge_loop<S: SessionStore>(
    store: S,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    let interval = interval.max(Duration::from_secs(1));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match store.purge_expired(crate::codec::unix_now()).await {
                Ok(0) => {}
                Ok(purged) => tracing::debug!(purged, "purged expired sessions"),
                Err(err) => {
                    tracing::warn!(error = %err.with_causes(), "purging expired sessions failed");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` as messages show it.
    fn redact(text: &str) -> String {
        show(text, &hidden_ranges(text))
    }

    #[test]
    fn urls_parse_and_hide_passwords() {
        assert_eq!(StoreUrl::parse("memory").unwrap(), StoreUrl::Memory);
        let url = StoreUrl::parse(
            "postgres://app:s3cret@db:5432/app?connect_timeout=3&schema=s_1&table=t",
        )
        .unwrap();
        assert_eq!(
            url,
            StoreUrl::Postgres {
                url: "postgres://app:s3cret@db:5432/app?connect_timeout=3".into(),
                schema: Some("s_1".into()),
                table: Some("t".into()),
                shown: "postgres://app:***@db:5432/app?connect_timeout=3&schema=s_1&table=t".into(),
            }
        );
        assert!(!url.to_string().contains("s3cret"));
        let url = StoreUrl::parse("redis://127.0.0.1/0?prefix=a%20b+c").unwrap();
        assert!(matches!(url, StoreUrl::Redis { ref url, ref prefix, .. }
                if url == "redis://127.0.0.1/0" && prefix.as_deref() == Some("a b c")));
        assert_eq!(redact("redis://user@h/0"), "redis://user@h/0");
        assert_eq!(redact("redis://h/x@y"), "redis://h/x@y");
        // A `/` in the password, and a password given as a parameter.
        assert_eq!(
            redact("postgres://u:se/cret@h:1/db?x=1"),
            "postgres://u:***@h:1/db?x=1"
        );
        assert_eq!(
            redact("postgres://u@h/db?sslmode=off&Password=hunter2&x=1"),
            "postgres://u@h/db?sslmode=off&Password=***&x=1"
        );
        assert_eq!(
            redact("postgres://h/db?password=p"),
            "postgres://h/db?password=***"
        );
        // A `?` or `#` in the password, unencoded (the drivers take the
        // user information to the first `@`).
        for (url, shown) in [
            (
                "postgres://pguser:pg?pw_S3cret@h/db",
                "postgres://pguser:***@h/db",
            ),
            (
                "redis://:re#dis?pw@h:6379/0?prefix=p",
                "redis://:***@h:6379/0?prefix=p",
            ),
        ] {
            assert_eq!(redact(url), shown);
            assert!(
                !StoreUrl::parse(url)
                    .map(|u| u.to_string())
                    .unwrap_or_default()
                    .contains("pw")
            );
        }
        let shown = StoreUrl::parse("postgres://u@h/db?password=hunter2")
            .unwrap()
            .to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        for bad in ["", "sqlite", "mysql://x", "redis:/x", "file:///x"] {
            assert!(
                matches!(StoreUrl::parse(bad), Err(OpenError::UnknownScheme { .. })),
                "{bad}"
            );
        }
        for bad in [
            "sqlite://",
            "redis://",
            "postgres://",
            "memory://x",
            "redis://h?prefix=",
        ] {
            assert!(
                matches!(StoreUrl::parse(bad), Err(OpenError::Invalid { .. })),
                "{bad}"
            );
        }
    }

    /// Passwords however they are written: `redact` shows none of them, nor
    /// does parsing (its result or its error).
    #[test]
    fn passwords_never_show() {
        for (text, shown) in [
            // Unencoded `@` (redis-rs splits at the last `@`, tokio-postgres
            // at the first), `:`, `/`, `?` and `#` in the user information.
            (
                "redis://alice:abc@secretpart@127.0.0.1:6391/99",
                "redis://alice:***@127.0.0.1:6391/99",
            ),
            ("redis://:p@ss:w/rd#1@h/0", "redis://:***@h/0"),
            (
                "postgres://u:a?b#c/d@e@h/db?x=1",
                "postgres://u:***@h/db?x=1",
            ),
            // No `://`: a typo, a libpq key=value connection string.
            (
                "postgres:/app:hunter2@127.0.0.1/test",
                "postgres:***@127.0.0.1/test",
            ),
            (
                "host=127.0.0.1 user=app password=hunter2 dbname=test",
                "host=127.0.0.1 user=app password=*** dbname=test",
            ),
            (
                "host=h password = 'hunter 2\\' x' sslpassword=k\\ ey dbname=d",
                "host=h password = *** sslpassword=*** dbname=d",
            ),
            ("password=", "password=***"),
            (
                "user=u password='unterminated dbname=x",
                "user=u password=***",
            ),
            // Parameter names as the drivers decode them, in any case;
            // redis-rs's `pass`; a password with an unencoded `&`, `?`, `#`.
            (
                "postgres://h/db?user=u&pass%77ord=SECRET&x=1",
                "postgres://h/db?user=u&pass%77ord=***&x=1",
            ),
            (
                "postgres://h/db?PASSWORD=SECRET",
                "postgres://h/db?PASSWORD=***",
            ),
            (
                "redis+unix:///run/redis.sock?db=1&pass=SECRET",
                "redis+unix:///run/redis.sock?db=1&pass=***",
            ),
            (
                "postgres://h/db?password=Sx1&Sx2&Sx3&x=1",
                "postgres://h/db?password=***&x=1",
            ),
            (
                "postgres://h/db?password=Qz1?Qz2#Qz3&x=1",
                "postgres://h/db?password=***&x=1",
            ),
            // Not passwords: left as they are.
            (
                "postgres://passport@db/app?schema=pass",
                "postgres://passport@db/app?schema=pass",
            ),
            ("redis://h:6379/0?prefix=a:b", "redis://h:6379/0?prefix=a:b"),
        ] {
            assert_eq!(redact(text), shown, "{text}");
            let parsed = match StoreUrl::parse(text) {
                Ok(url) => format!("{url} {url:?}"),
                Err(err) => err.to_string(),
            };
            for secret in [
                "hunter", "secret", "SECRET", "Sx", "Qz", "rd#1", "ss:w", "k\\ ey",
            ] {
                assert!(!parsed.contains(secret), "{text}: {parsed}");
            }
        }
        // The unknown-store error shows the text with its password hidden.
        let err =
            StoreUrl::parse("host=127.0.0.1 user=app password=hunter2 dbname=test").unwrap_err();
        assert!(matches!(err, OpenError::UnknownScheme { .. }));
        assert!(
            err.to_string().starts_with(
                "unknown session store `host=127.0.0.1 user=app password=*** dbname=test`"
            ),
            "{err}"
        );
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_urls_take_only_known_parameters() {
        let url = StoreUrl::parse("redis://h:6379/3?pr%65fix=app%3A&protocol=resp3").unwrap();
        assert_eq!(
            url,
            StoreUrl::Redis {
                url: "redis://h:6379/3".into(),
                prefix: Some("app:".into()),
                shown: "redis://h:6379/3?pr%65fix=app%3A&protocol=resp3".into(),
            }
        );
        for (bad, says) in [
            // A typo would share the default prefix with another app.
            ("redis://h/0?prefx=d5:", "unknown parameter `prefx`"),
            // redis-rs reads the database from the path only.
            ("redis://h?db=11", "redis://HOST:6379/11"),
            (
                "redis://h/0?prefix=a&prefix=b",
                "`prefix` parameter is given twice",
            ),
            ("redis://h/0?protocol=2", "RESP3"),
            ("redis://h/0?pass=x", "unknown parameter `pass`"),
            ("redis://h/0?password=x", "user information"),
            // The name is part of a password with an unencoded `&`.
            ("redis://h/0?prefix=p?password=x&y", "not shown"),
            ("redis://h/db1", "must be a number"),
            ("redis://h/0#x?prefix=p", "no fragment"),
            ("redis://h/0?prefix=me@app", "%40"),
            ("redis://:a?b@h/0?prefix=p", "percent-encode"),
            ("redis://:6379/0", "no host"),
            ("rediss://h:6380/0", "without TLS"),
            ("redis+unix:///run/redis.sock", "RedisStore::connect"),
            ("unix:///run/redis.sock", "TCP only"),
        ] {
            let Err(err @ OpenError::Invalid { .. }) = StoreUrl::parse(bad) else {
                panic!("{bad} parsed");
            };
            assert!(err.to_string().contains(says), "{bad}: {err}");
        }
        // An unencoded `@` in the password: redis-rs takes the last `@`.
        assert!(StoreUrl::parse("redis://:p@ss@h:6379/0").is_ok());
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_urls_refuse_tls_duplicates_and_bad_names() {
        let url = StoreUrl::parse("postgres://u@h/db?sslmode=disable&sch%65ma=app").unwrap();
        assert!(matches!(url, StoreUrl::Postgres { ref url, ref schema, .. }
                if url == "postgres://u@h/db?sslmode=disable" && schema.as_deref() == Some("app")));
        // A `?` in the password: the parameters start after the `@`.
        let url = StoreUrl::parse("postgres://u:p?schema=x@h/db?table=t").unwrap();
        assert!(
            matches!(url, StoreUrl::Postgres { ref schema, ref table, .. }
                if schema.is_none() && table.as_deref() == Some("t"))
        );
        for (bad, says) in [
            (
                "postgres://u@h/db?schema=a&schema=b",
                "`schema` parameter is given twice",
            ),
            (
                "postgres://u@h/db?table=a&table=b",
                "`table` parameter is given twice",
            ),
            ("postgres://u@h/db?sslmode=require", "without TLS"),
            (
                "postgres://u@h/db?sslmode=prefer",
                "sslmode can only be `disable`",
            ),
            ("postgres://u@h/db?sslmode=verify-full", "sslmode=disable"),
            (
                "postgres://u@h/db?sslrootcert=/ca.pem",
                "no `sslrootcert` parameter",
            ),
            (
                "postgres://u@h/db?sslmode=disable&sslcert=c",
                "no `sslcert` parameter",
            ),
            ("postgres://u@h/db?ssl%6Dode=require", "without TLS"),
            (
                "postgres://u@h/db?schema=Upper",
                "invalid PostgreSQL schema name",
            ),
            (
                "postgres://u@h/db?table=1t",
                "invalid PostgreSQL table name",
            ),
            ("postgres://u@h/db?table=keepsake_schema", "keepsake's own"),
            ("postgres://u:p@ss@h/db", "%40"),
            // What may be part of a password is not quoted.
            (
                "postgres://u@h/db?password=x&sslfoo",
                "takes no ssl parameters",
            ),
            (
                "postgres://u@h/db?schema=a password=Upper",
                "a schema or table name the PostgreSQL store refuses",
            ),
            ("postgres://h/db?application_name=a@b&schema=s", "%40"),
        ] {
            let Err(err @ OpenError::Invalid { .. }) = StoreUrl::parse(bad) else {
                panic!("{bad} parsed");
            };
            assert!(err.to_string().contains(says), "{bad}: {err}");
        }
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_paths_are_file_paths() {
        // Taken as they are: `#`, spaces, unicode, percent signs.
        for path in [
            "/tmp/a b/#1 sessions.db",
            "données/séssions.db",
            "50%25.db",
            ":memory:",
            "./file:x.db",
        ] {
            let url = StoreUrl::parse(&format!("sqlite://{path}")).unwrap();
            assert_eq!(url, StoreUrl::Sqlite { path: path.into() });
            assert_eq!(url.to_string(), format!("sqlite://{path}"));
        }
        // No query parameters: `?mode=ro` would otherwise become part of
        // the file name.
        for bad in [
            "sqlite:///tmp/s.db?mode=ro",
            "sqlite://s.db?",
            "sqlite:///tmp/what?.db",
        ] {
            let Err(OpenError::Invalid { reason, .. }) = StoreUrl::parse(bad) else {
                panic!("{bad} parsed");
            };
            assert!(reason.contains("query parameters"), "{bad}: {reason}");
            assert!(reason.contains("rename"), "{bad}: {reason}");
        }
        // No SQLite URIs either: refused, not a file named `file::memory:`.
        for bad in ["sqlite://file::memory:", "sqlite://file:sessions.db"] {
            let Err(OpenError::Invalid { reason, .. }) = StoreUrl::parse(bad) else {
                panic!("{bad} parsed");
            };
            assert!(reason.contains("not an SQLite URI"), "{bad}: {reason}");
            assert!(reason.contains("sqlite://:memory:"), "{bad}: {reason}");
            assert!(reason.contains("sqlite://./file:"), "{bad}: {reason}");
        }
    }

    #[cfg(all(feature = "redis", feature = "postgres"))]
    #[tokio::test]
    async fn unreachable_servers_are_store_errors() {
        for url in [
            "redis://127.0.0.1:1/0",
            "postgres://postgres@127.0.0.1:1/test",
        ] {
            let err = AnyStore::open(url).await.unwrap_err();
            assert!(matches!(err, OpenError::Store { .. }), "{url}: {err}");
        }
    }

    /// Walks every page; the ids seen.
    async fn walk(store: &impl StoreAdmin, limit: usize) -> Vec<Id> {
        let mut ids = Vec::new();
        let mut cursor = None;
        loop {
            let page = store.page(cursor.as_ref(), limit).await.unwrap();
            assert!(page.records.len() <= limit.max(1));
            ids.extend(page.records.iter().map(|record| record.id));
            match page.next {
                Some(next) => cursor = Some(next),
                None => return ids,
            }
        }
    }

    /// Purges in steps of `limit`; the total.
    async fn purge(store: &impl StoreAdmin, now: u64, limit: usize) -> usize {
        let mut purged = 0;
        let mut cursor = None;
        loop {
            let step = store.purge_step(now, cursor.as_ref(), limit).await.unwrap();
            purged += step.purged;
            match step.next {
                Some(next) => cursor = Some(next),
                None => return purged,
            }
        }
    }

    /// The admin operations on `store`, which must be empty; `now` is
    /// close to the real time (Redis expires keys by its own clock).
    pub(crate) async fn check_admin(store: &impl StoreAdmin, now: u64) {
        assert_eq!(store.count(now).await.unwrap(), Counts::default());
        assert!(walk(store, 10).await.is_empty());
        let mut ids = Vec::new();
        for i in 0..25u64 {
            // 10 expire at now + 100, 15 live long.
            let lifetime = if i < 10 { 100 } else { 10_000 };
            let mut record = Record::new(Id::random(), now, None, lifetime);
            record.user = Some(format!("user{}", i % 3));
            assert_eq!(store.create(&record).await.unwrap(), Created::Created);
            ids.push(record.id);
        }
        ids.sort();
        for limit in [0, 1, 7, 25, 1_000] {
            let mut seen = walk(store, limit).await;
            seen.sort();
            seen.dedup();
            assert_eq!(seen, ids, "limit {limit}");
        }
        let later = now + 100;
        assert_eq!(
            store.count(later).await.unwrap(),
            Counts {
                total: 25,
                expired: 10
            }
        );
        assert_eq!(store.count(now).await.unwrap().expired, 0);
        assert_eq!(purge(store, later, 3).await, 10);
        assert_eq!(
            store.count(later).await.unwrap(),
            Counts {
                total: 15,
                expired: 0
            }
        );
        assert_eq!(purge(store, later, 3).await, 0);
        assert_eq!(walk(store, 4).await.len(), 15);
        for user in ["user0", "user1", "user2"] {
            store.delete_user(user).await.unwrap();
        }
        assert_eq!(store.count(later).await.unwrap().total, 0);
    }

    #[tokio::test]
    async fn memory_store_admin() {
        check_admin(&MemoryStore::builder().shards(4).build(), 1_000).await;
        check_admin(&AnyStore::from(MemoryStore::new()), 1_000).await;
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn sqlite_store_admin() {
        let store = super::super::SqliteStore::open_in_memory().unwrap();
        check_admin(&store, 1_000).await;
    }

    #[cfg(feature = "redis")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_store_admin() {
        let Some(url) = server_url("KEEPSAKE_TEST_REDIS_URL") else {
            return;
        };
        let prefix = format!("keepsake-admin-test-{}:", Id::random());
        let store = AnyStore::open(&format!("{url}?prefix={prefix}"))
            .await
            .unwrap();
        check_admin(&store, crate::codec::unix_now()).await;
    }

    #[cfg(feature = "postgres")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_store_admin() {
        let Some(url) = server_url("KEEPSAKE_TEST_POSTGRES_URL") else {
            return;
        };
        let tag: String = Id::random().as_bytes()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let schema = format!("keepsake_admin_{tag}");
        let store = AnyStore::open(&format!("{url}?schema={schema}"))
            .await
            .unwrap();
        check_admin(&store, 1_000).await;
        drop(store);
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .await
            .unwrap();
    }

    /// The server URL in `var`; `None` (with a note) to skip, a panic
    /// under CI.
    fn server_url(var: &str) -> Option<String> {
        match std::env::var(var).ok().filter(|url| !url.is_empty()) {
            Some(url) => Some(url),
            None if std::env::var_os("CI").is_some() => panic!("{var} must be set under CI"),
            None => {
                eprintln!("skipping: {var} is not set");
                None
            }
        }
    }
}
