//! The SQLite store: [`SqliteStore`] (feature `sqlite`).
//!
//! Sessions live in one SQLite database file, so they survive restarts
//! without running a database server. SQLite is compiled into the binary
//! (`rusqlite` with `bundled`), so no system library is needed. This is the
//! store to use for a single app server; several processes on one machine
//! may share the file, but app servers on several machines need a networked
//! store (Redis, Postgres).
//!
//! # Example
//!
//! ```
//! use keepsake::store::{Created, Id, Record, SessionStore, SqliteStore};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let path = std::env::temp_dir().join(format!("keepsake-doc-{}.db", Id::random()));
//! let store = SqliteStore::open(&path).await?;
//! let record = Record::new(Id::random(), 1_000, Some(60), 3_600);
//! assert_eq!(store.create(&record).await?, Created::Created);
//! drop(store);
//!
//! // A restart: the session is still there.
//! let store = SqliteStore::open(&path).await?;
//! assert_eq!(store.load(&record.id, 1_059).await?, Some(record.clone()));
//! assert!(store.load(&record.id, 1_060).await?.is_none()); // idle deadline
//! # drop(store);
//! # for suffix in ["", "-wal", "-shm"] {
//! #     let mut file = path.clone().into_os_string();
//! #     file.push(suffix);
//! #     let _ = std::fs::remove_file(file);
//! # }
//! # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
//! ```
//!
//! See [`SqliteStore`] for WAL mode, the busy timeout, the connection
//! threads and the schema.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use rusqlite::{
    Connection, ErrorCode, OpenFlags, OptionalExtension as _, TransactionBehavior, params,
};

mod worker;

use worker::{Queue, Role};

use super::{
    Created, Data, Deleted, Id, Record, Saved, SessionStore, StoreError, StoreErrorKind, Touched,
};

/// The default number of connections: one writer, and one reader per two
/// CPUs (at least one, at most eight). Every connection has a thread, and
/// the threads share the CPUs with the runtime's workers: on two CPUs, one
/// reader served `/incr` 12% and `/read` 26% faster than three did
/// (BENCHMARKS.md, "SQLite: connections").
fn default_connections() -> usize {
    let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    1 + (cpus / 2).clamp(1, 8)
}

/// Default time a connection waits for SQLite's write lock.
const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Expired rows `purge_expired` deletes per statement.
const PURGE_BATCH: i64 = 1_000;

/// The schema migrations: entry `n` takes the database from version `n` to
/// `n + 1`.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY NOT NULL,
        data TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        idle_timeout INTEGER,
        idle_deadline INTEGER,
        absolute_deadline INTEGER NOT NULL,
        deadline INTEGER NOT NULL,
        persistent INTEGER NOT NULL,
        version INTEGER NOT NULL,
        user_id TEXT
    );
    CREATE INDEX sessions_deadline ON sessions (deadline);
    CREATE INDEX sessions_user_id ON sessions (user_id);
"];

/// The columns a record is read from, in [`read_row`]'s order.
const COLUMNS: &str = "id, data, created_at, idle_timeout, idle_deadline, absolute_deadline, \
                       persistent, version, user_id";

/// A [`SessionStore`] in an SQLite database file.
///
/// Cloning is cheap and gives another handle to the same connections.
///
/// # Example
///
/// ```
/// use keepsake::store::{Id, Record, Saved, SessionStore, SqliteStore};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = SqliteStore::open_in_memory()?;
/// let mut record = Record::new(Id::random(), 0, Some(1_800), 86_400);
/// store.create(&record).await?;
/// record.data.insert("user".into(), "ada".into());
/// assert_eq!(store.save(&record, 10).await?, Saved::Saved { version: 1 });
/// assert_eq!(store.save(&record, 11).await?, Saved::Conflict); // stale version
/// assert!(store.delete(&record.id).await?);
/// assert_eq!(store.save(&record, 12).await?, Saved::Gone); // never brought back
/// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
/// ```
///
/// # The file
///
/// The path is always a file path: SQLite is never asked to read it as a
/// URI, and a relative path names a file in the current directory even if
/// it is `:memory:` or begins with `file:` (for an in-memory store, use
/// [`SqliteStore::open_in_memory`]). Query parameters (`?mode=ro`) are
/// therefore part of the file name, not options.
///
/// Session data is private, so on Unix a database file the store creates
/// is readable and writable by its owner only (mode 0600, whatever the
/// umask), and SQLite gives the `-wal` and `-shm` files it makes next to
/// it the same permissions. The permissions of a file that already exists
/// are left as they are: tighten them yourself (`chmod 600`) if it was
/// created by something else.
///
/// # WAL mode and the busy timeout
///
/// The store switches the database to [write-ahead logging]
/// (`PRAGMA journal_mode=WAL`, a setting kept in the file), so readers never
/// wait for the writer and the writer never waits for readers; with
/// `PRAGMA synchronous=NORMAL`, a commit costs no `fsync` (the WAL is synced
/// at checkpoints), and a power loss can lose at most the last few commits,
/// never corrupt the database. Next to `sessions.db` you will see
/// `sessions.db-wal` and `sessions.db-shm` while the store is open: the
/// latest sessions are in the `-wal` file until a checkpoint copies them
/// into the database (see "Backups" for copying them safely).
///
/// SQLite still allows only one writer at a time. Every connection has a
/// busy timeout (5 s by default, see `busy_timeout` on [`SqliteStore::builder`]):
/// a write that finds another process's write in progress waits for it
/// instead of failing with "database is locked". Writes run in
/// `BEGIN IMMEDIATE` transactions, which take the write lock up front, so
/// the wait is always the busy handler's and never an immediate
/// `SQLITE_BUSY` on lock upgrade. A write that still cannot get the lock
/// within the timeout fails with [`StoreErrorKind::Timeout`].
///
/// # Connections and threads
///
/// A SQLite connection can be used by one thread at a time and its calls
/// block, so each connection of the store (by default one writer and one
/// reader per two CPUs, at most eight readers; see `connections` on
/// [`SqliteStore::builder`]) belongs to a thread of its own, started when
/// the store opens and ended when its last clone is dropped. One connection
/// is the writer; the others serve reads (`load`, `list_by_user`,
/// `status`), in parallel. An operation is queued for its thread and
/// awaited on a channel, so the async side never blocks and no runtime's
/// blocking pool is used. (Opening the store runs on Tokio's blocking
/// pool, so [`SqliteStore::open`] needs a Tokio runtime; the operations do
/// not.)
///
/// The writer takes every write queued while it was busy (up to 64) and
/// runs them as one transaction, each write in its own savepoint, so one
/// that fails is rolled back alone; every write of the batch is answered
/// only once the batch has committed, and if the commit fails each gets the
/// error. Under load a store therefore pays one write lock and one commit
/// per batch rather than per write (group commit), and writes of one store
/// never wait for each other in SQLite's busy handler, which sleeps and
/// backs off by milliseconds. An operation whose caller stopped waiting
/// before its turn (a timed-out request) is dropped unrun. A store of one
/// connection serves its reads on the writer.
///
/// # Schema and schema version
///
/// The store creates its schema itself and records its version in the
/// database header (`PRAGMA user_version`). This build knows version
/// [`SqliteStore::SCHEMA_VERSION`] (1):
///
/// ```sql
/// CREATE TABLE sessions (
///     id TEXT PRIMARY KEY NOT NULL,   -- the 22-character id
///     data TEXT NOT NULL,             -- the session data, as a JSON object
///     created_at INTEGER NOT NULL,
///     idle_timeout INTEGER,           -- NULL: no idle limit
///     idle_deadline INTEGER,
///     absolute_deadline INTEGER NOT NULL,
///     deadline INTEGER NOT NULL,      -- min(idle_deadline, absolute_deadline)
///     persistent INTEGER NOT NULL,    -- 0 or 1
///     version INTEGER NOT NULL,
///     user_id TEXT                    -- NULL: no user
/// );
/// CREATE INDEX sessions_deadline ON sessions (deadline);
/// CREATE INDEX sessions_user_id ON sessions (user_id);
/// ```
///
/// Opening the database first reads its version and schema, in a read
/// transaction, and writes nothing (not even the switch to WAL mode) unless
/// it is keepsake's:
///
/// - an empty database (version 0, nothing in it) gets the schema above;
/// - version 0 (SQLite's default, which most apps never change) with
///   anything else in it is refused, unless it holds exactly the schema
///   above (made by hand, say), which is then taken over;
/// - an older version is migrated, in one transaction;
/// - this version must have a `sessions` table with the columns above;
/// - a *newer* version (written by a later keepsake) is refused rather
///   than misread.
///
/// A refused database (another app's, most likely) is left exactly as it
/// was, and the [`StoreError`] names the file and what is in it. The write
/// lock is taken only to create or migrate the schema, so a database that
/// needs neither opens even while another process holds the write lock.
/// Times are Unix seconds; SQLite integers are signed 64-bit, so times (and
/// versions) beyond `i64::MAX`, about 292 billion years from now, are
/// stored as `i64::MAX`.
///
/// # Expiry and purging
///
/// Every query compares the stored `deadline` with the `now` it is given, so
/// a session is gone at its deadline whether or not its row has been deleted
/// yet. Rows of expired sessions are removed when `create`, `save` or
/// `touch` meets them, and in bulk by
/// [`purge_expired`](SessionStore::purge_expired), which deletes them in
/// batches of 1 000 (so it never holds the write lock for long) using the
/// index on `deadline`; run it from a background task every few minutes.
///
/// SQLite does not give back the space of deleted rows: after a large purge
/// (say, 100 000 expired sessions at once) the database file keeps its size,
/// its pages free for new sessions. The `-wal` file is cut back to 64 MiB
/// (`PRAGMA journal_size_limit`, set on every connection) after each
/// checkpoint, and is removed when the last connection closes. To shrink
/// the files at once, run at a quiet time, with the app running or not:
///
/// ```text
/// sqlite3 sessions.db "VACUUM; PRAGMA wal_checkpoint(TRUNCATE);"
/// ```
///
/// `VACUUM` rewrites the database (it needs free disk space of about its
/// size, and holds the write lock while it runs: the app's writes wait up to
/// the busy timeout); the checkpoint then copies the rewritten pages from
/// the `-wal` file and empties it.
///
/// # Backups
///
/// Never copy the database with `cp` while the app runs: a copy of the
/// `.db` file alone misses the sessions still in the `-wal` file, and
/// copying the three files one after another can catch them mid-write. Use
/// SQLite's backup instead, which reads one consistent snapshot, under a
/// umask that keeps the copy private (`sqlite3` otherwise creates it
/// readable by every user, like any file under the usual umask 022):
///
/// ```text
/// (umask 077 && sqlite3 sessions.db ".backup sessions-backup.db")
/// (umask 077 && sqlite3 sessions.db "VACUUM INTO 'sessions-backup.db'")  # compacted
/// ```
///
/// To restore, stop the app first, remove any `sessions.db-wal` and
/// `sessions.db-shm` left beside the database (they belong to the old
/// file), copy the backup over `sessions.db`, and give it mode 0600 and the
/// app's user as owner (`chmod 600`, `chown`); then start the app.
///
/// # Errors
///
/// A database that cannot be opened, read or written, is not an SQLite
/// database, or is not a keepsake session database, fails with
/// [`StoreErrorKind::Unavailable`] (an error of opening names the file and
/// says why: "is a directory", "permission denied", "no such directory");
/// the busy timeout running out with [`StoreErrorKind::Timeout`]; a full
/// disk with [`StoreErrorKind::Full`]; and a row that cannot be decoded
/// (bad JSON, a bad id, a value of the wrong type) with
/// [`StoreErrorKind::Corrupt`]. No error quotes a row's contents: one about
/// bad JSON says only what kind of error it is and where (line and column).
///
/// [write-ahead logging]: https://sqlite.org/wal.html
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

/// Builds a [`SqliteStore`] with a chosen number of connections and busy
/// timeout.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use keepsake::store::{Id, SqliteStore};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let path = std::env::temp_dir().join(format!("keepsake-doc-{}.db", Id::random()));
/// let store = SqliteStore::builder(&path)
///     .connections(8)
///     .busy_timeout(Duration::from_secs(2))
///     .open()
///     .await?;
/// assert!(format!("{store:?}").contains("connections: 8"));
/// # drop(store);
/// # for suffix in ["", "-wal", "-shm"] {
/// #     let mut file = path.clone().into_os_string();
/// #     file.push(suffix);
/// #     let _ = std::fs::remove_file(file);
/// # }
/// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStoreBuilder {
    path: PathBuf,
    connections: usize,
    busy_timeout: Duration,
    migrate: bool,
}

impl SqliteStoreBuilder {
    /// Whether [`open`](Self::open) creates the file and the schema, or
    /// upgrades an older schema (default `true`). Turned off, it opens only
    /// an existing keepsake session database of this build's
    /// [`SCHEMA_VERSION`](SqliteStore::SCHEMA_VERSION), and changes nothing
    /// in the file, not even its journal mode: for an operator's tool, so
    /// that a mistyped path or another app's database is refused, not
    /// turned into a session store.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{SqliteStore, StoreErrorKind};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let path = std::env::temp_dir().join(format!("keepsake-doc-{}.db", std::process::id()));
    /// let err = SqliteStore::builder(&path).migrate(false).open().await.unwrap_err();
    /// assert_eq!(err.kind(), StoreErrorKind::Unavailable);
    /// assert!(!path.exists(), "nothing created");
    /// # });
    /// ```
    #[must_use]
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// The number of connections, each on its own thread (default: 1 plus
    /// one per two CPUs, at most 9; 0 is taken as 1): one writer and the
    /// rest readers, so how many reads run at once is one less than this
    /// (with one connection, the writer also reads). Writes go through the
    /// single writer whatever the number.
    ///
    /// # Example
    ///
    /// ```
    /// let builder = keepsake::store::SqliteStore::builder("sessions.db").connections(0);
    /// assert!(format!("{builder:?}").contains("connections: 1"));
    /// ```
    #[must_use]
    pub fn connections(mut self, connections: usize) -> Self {
        self.connections = connections.max(1);
        self
    }

    /// How long an operation waits for another connection's write to finish
    /// (default 5 s) before failing with [`StoreErrorKind::Timeout`]. SQLite
    /// counts it in milliseconds in an `i32`: anything longer than
    /// `i32::MAX` ms (about 24.8 days) is taken as that.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let builder = keepsake::store::SqliteStore::builder("sessions.db")
    ///     .busy_timeout(Duration::from_millis(500));
    /// assert!(format!("{builder:?}").contains("500ms"));
    /// let longest = keepsake::store::SqliteStore::builder("sessions.db")
    ///     .busy_timeout(Duration::MAX);
    /// assert!(format!("{longest:?}").contains("2147483.647s"));
    /// ```
    #[must_use]
    pub fn busy_timeout(mut self, busy_timeout: Duration) -> Self {
        // rusqlite panics on a longer one.
        const LONGEST: Duration = Duration::from_millis(i32::MAX as u64);
        self.busy_timeout = busy_timeout.min(LONGEST);
        self
    }

    /// Opens (or creates, with mode 0600 on Unix) the database, checks its
    /// schema, switches it to WAL mode, creates or migrates the schema if
    /// needed, and opens the connections, each on its thread. A database
    /// that is refused is left as it was. The path is a plain file path,
    /// never an SQLite URI (see [`SqliteStore`], "The file").
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Unavailable`] if the file cannot be opened or
    /// created, is not an SQLite database, or is not a keepsake session
    /// database (its schema version is newer than this build knows, or
    /// its schema is not keepsake's: see [`SqliteStore`], "Schema and
    /// schema version"), each error naming the file;
    /// [`StoreErrorKind::Timeout`] if the schema must be created or
    /// migrated and another process holds the write lock past the busy
    /// timeout.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{SqliteStore, StoreErrorKind};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let missing = std::env::temp_dir().join("keepsake-no-such-dir/sessions.db");
    /// let err = SqliteStore::builder(missing).open().await.unwrap_err();
    /// assert_eq!(err.kind(), StoreErrorKind::Unavailable);
    /// # });
    /// ```
    pub async fn open(self) -> Result<SqliteStore, StoreError> {
        let Self {
            path,
            connections,
            busy_timeout,
            migrate,
        } = self;
        let opened_path = path.clone();
        let pool = tokio::task::spawn_blocking(move || {
            open_pool(&opened_path, connections, busy_timeout, migrate)
        })
        .await
        .map_err(|err| {
            StoreError::with_source(
                StoreErrorKind::Unavailable,
                "opening the SQLite session database panicked",
                err,
            )
        })??;
        SqliteStore::from_pool(pool, Some(path), busy_timeout)
    }
}

impl SqliteStore {
    /// The schema version this build creates and understands, kept in the
    /// database's `PRAGMA user_version`.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(keepsake::store::SqliteStore::SCHEMA_VERSION, 1);
    /// ```
    pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

    /// Opens (or creates) the database at `path` with the default settings:
    /// one writer and one reader per two CPUs, a 5 s busy timeout: opens (or
    /// creates) the file, checks its schema, switches it to WAL mode,
    /// creates or migrates the schema if needed, and opens the connections,
    /// each on its thread.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Unavailable`] if the file cannot be opened or
    /// created, is not an SQLite database, or is not a keepsake session
    /// database (its schema version is newer than this build knows, or
    /// its schema is not keepsake's: see [`SqliteStore`], "Schema and
    /// schema version"), each error naming the file;
    /// [`StoreErrorKind::Timeout`] if the schema must be created or
    /// migrated and another process holds the write lock past the busy
    /// timeout.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{Id, Record, SessionStore, SqliteStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let path = std::env::temp_dir().join(format!("keepsake-doc-{}.db", Id::random()));
    /// let store = SqliteStore::open(&path).await?;
    /// let record = Record::new(Id::random(), 0, None, 60);
    /// store.create(&record).await?;
    /// assert!(store.load(&record.id, 1).await?.is_some());
    /// #[cfg(unix)] // only its owner can read the new file
    /// {
    ///     use std::os::unix::fs::PermissionsExt as _;
    ///     let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    ///     assert_eq!(mode & 0o777, 0o600);
    /// }
    /// # drop(store);
    /// # for suffix in ["", "-wal", "-shm"] {
    /// #     let mut file = path.clone().into_os_string();
    /// #     file.push(suffix);
    /// #     let _ = std::fs::remove_file(file);
    /// # }
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::builder(path).open().await
    }

    /// A builder for the database at `path`, to choose the number of
    /// connections and the busy timeout.
    ///
    /// # Example
    ///
    /// ```
    /// let builder = keepsake::store::SqliteStore::builder("sessions.db");
    /// // One writer, and one reader per two CPUs (1 to 8 readers).
    /// let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    /// let connections = 1 + (cpus / 2).clamp(1, 8);
    /// assert!(format!("{builder:?}").contains(&format!("connections: {connections},")));
    /// ```
    pub fn builder(path: impl AsRef<Path>) -> SqliteStoreBuilder {
        SqliteStoreBuilder {
            path: path.as_ref().to_path_buf(),
            connections: default_connections(),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            migrate: true,
        }
    }

    /// A store in a private in-memory database, for tests: nothing survives
    /// the store being dropped. It has a single connection (each in-memory
    /// connection is its own database), so operations run one at a time.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Unavailable`] if SQLite cannot allocate the
    /// database.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{Created, Id, Record, SessionStore, SqliteStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = SqliteStore::open_in_memory()?;
    /// let record = Record::new(Id::random(), 0, None, 60);
    /// assert_eq!(store.create(&record).await?, Created::Created);
    /// assert_eq!(store.create(&record).await?, Created::Collision);
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let opening = Opening {
            path: Path::new(":memory:"),
            created: None,
        };
        let mut conn = Connection::open_in_memory().map_err(|err| opening.error("open", err))?;
        configure(&conn, DEFAULT_BUSY_TIMEOUT).map_err(|err| opening.error("configure", err))?;
        prepare_schema(&mut conn, &opening, true, false)?;
        Self::from_pool(vec![conn], None, DEFAULT_BUSY_TIMEOUT)
    }

    fn from_pool(
        pool: Vec<Connection>,
        path: Option<PathBuf>,
        busy_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let size = pool.len();
        let writes = Queue::new();
        // A store of one connection serves its reads on the writer.
        let reads = if size > 1 {
            Queue::new()
        } else {
            Arc::clone(&writes)
        };
        let mut inner = Inner {
            writes,
            reads,
            size,
            path,
            busy_timeout,
            threads: Vec::new(),
        };
        for (n, conn) in pool.into_iter().enumerate() {
            let (queue, role, name) = if n == 0 {
                (
                    &inner.writes,
                    Role::Writer,
                    "keepsake-sqlite-writer".to_owned(),
                )
            } else {
                (
                    &inner.reads,
                    Role::Reader,
                    format!("keepsake-sqlite-reader-{n}"),
                )
            };
            // On failure, dropping `inner` stops the threads already started.
            let thread = worker::spawn(conn, Arc::clone(queue), role, name)?;
            inner.threads.push(thread);
        }
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Runs `op` on the writer's thread (a write, inside the writer's
    /// transaction) or on a reader's.
    async fn run<T, F>(&self, access: Access, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let queue = match access {
            Access::Read => &self.inner.reads,
            Access::Write => &self.inner.writes,
        };
        let (task, result) = worker::task(op);
        if queue.push(task).is_err() {
            return Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "the SQLite session store is closed",
            ));
        }
        result.await.unwrap_or_else(|_| {
            Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "the SQLite session store's thread stopped",
            ))
        })
    }

    /// Deletes up to `limit` expired rows, in one write.
    async fn purge_batch(&self, now: i64, limit: i64) -> Result<usize, StoreError> {
        self.run(Access::Write, move |conn| {
            conn.prepare_cached(
                "DELETE FROM sessions WHERE rowid IN \
                 (SELECT rowid FROM sessions WHERE deadline <= ?1 LIMIT ?2)",
            )
            .and_then(|mut s| s.execute(params![now, limit]))
            .map_err(|err| sql_error("purge_expired", err))
        })
        .await
    }
}

impl fmt::Debug for SqliteStore {
    /// The path and settings only: never an id or any session data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("connections", &self.inner.size)
            .field("busy_timeout", &self.inner.busy_timeout)
            .finish()
    }
}

/// Whether an operation writes.
#[derive(Debug, Clone, Copy)]
enum Access {
    Read,
    Write,
}

/// The state behind every clone of one store.
struct Inner {
    /// Served by the writer thread.
    writes: Arc<Queue>,
    /// Served by the reader threads; the writer's queue if there are none.
    reads: Arc<Queue>,
    size: usize,
    /// `None` for an in-memory database.
    path: Option<PathBuf>,
    busy_timeout: Duration,
    /// The connections' threads, joined when the store is dropped.
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Inner {
    /// The last handle is gone: the threads finish what is queued, close
    /// their connections and end, and the drop waits for them, so that the
    /// last connection's close (which checkpoints the write-ahead log into
    /// the database file and removes it) is done before a process that
    /// drops its store on the way out exits. The database file alone is
    /// then a complete copy.
    fn drop(&mut self) {
        self.writes.close();
        self.reads.close();
        let current = std::thread::current().id();
        for thread in self.threads.drain(..) {
            // A connection's own thread cannot wait for itself.
            if thread.thread().id() != current {
                let _ = thread.join();
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Maps an SQLite error to a store error.
fn sql_error(action: &str, err: rusqlite::Error) -> StoreError {
    let kind = sql_kind(&err);
    sql_error_as(kind, &format!("SQLite {action} failed"), err)
}

/// A store error of `kind`: `message`, then SQLite's.
fn sql_error_as(kind: StoreErrorKind, message: &str, err: rusqlite::Error) -> StoreError {
    match err {
        // Its text is the whole statement, over many lines: the message
        // alone says what is wrong.
        rusqlite::Error::SqlInputError { msg, .. } => {
            StoreError::new(kind, format!("{message}: {msg}"))
        }
        err => StoreError::with_source(kind, format!("{message}: {err}"), err),
    }
}

/// The kind of store error an SQLite error is, once the store is open.
fn sql_kind(err: &rusqlite::Error) -> StoreErrorKind {
    use rusqlite::Error as E;
    match err {
        E::InvalidColumnType(..)
        | E::FromSqlConversionFailure(..)
        | E::IntegralValueOutOfRange(..)
        | E::Utf8Error(..) => StoreErrorKind::Corrupt,
        _ => match err.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreErrorKind::Timeout,
            Some(ErrorCode::DiskFull) => StoreErrorKind::Full,
            // Damaged pages: what they hold cannot be read. (A file that is
            // not a database at all is the store's fault, not a record's:
            // Unavailable.)
            Some(ErrorCode::DatabaseCorrupt) => StoreErrorKind::Corrupt,
            _ => StoreErrorKind::Unavailable,
        },
    }
}

/// The most the write-ahead log file keeps on disk after a checkpoint:
/// 64 MiB. Without a limit, a `-wal` file that a large purge grew to
/// hundreds of megabytes keeps that size until the last connection closes.
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Per-connection settings.
fn configure(conn: &Connection, busy_timeout: Duration) -> rusqlite::Result<()> {
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
    // Every statement the store runs, and the worker's transaction control,
    // stay prepared.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// The database being opened, for the errors of opening it: they name its
/// path, and say why SQLite could not open it.
struct Opening<'a> {
    path: &'a Path,
    /// Why creating the file failed, if the store tried and it did (not
    /// because the file exists).
    created: Option<std::io::Error>,
}

impl Opening<'_> {
    /// The error of `action` failing with `err` while opening the database.
    fn error(&self, action: &str, err: rusqlite::Error) -> StoreError {
        let path = self.path.display();
        match err.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => StoreError::new(
                StoreErrorKind::Unavailable,
                format!(
                    "{path} is not an SQLite database, so keepsake leaves it alone; give the \
                     path of a keepsake session database, or of a file to create"
                ),
            ),
            Some(ErrorCode::CannotOpen) => match self.cannot_open_reason() {
                Some(reason) => StoreError::new(
                    StoreErrorKind::Unavailable,
                    format!("cannot open the SQLite session database {path}: {reason}"),
                ),
                None => StoreError::with_source(
                    StoreErrorKind::Unavailable,
                    format!("cannot open the SQLite session database {path}"),
                    err,
                ),
            },
            Some(ErrorCode::ReadOnly) => {
                let directory = matches!(
                    &err,
                    rusqlite::Error::SqliteFailure(failure, _)
                        if failure.extended_code == rusqlite::ffi::SQLITE_READONLY_DIRECTORY
                );
                let reason = if directory {
                    "its directory is read-only, and SQLite makes its -wal and -shm files there"
                } else {
                    "the file (or its file system) is read-only"
                };
                StoreError::with_source(
                    StoreErrorKind::Unavailable,
                    format!(
                        "cannot write to the SQLite session database {path}: {reason}; the \
                         app's user must be able to write the file and its directory"
                    ),
                    err,
                )
            }
            Some(ErrorCode::DatabaseCorrupt) => StoreError::with_source(
                StoreErrorKind::Unavailable,
                format!("the SQLite session database {path} is damaged ({action} failed)"),
                err,
            ),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::with_source(
                StoreErrorKind::Timeout,
                format!(
                    "the SQLite session database {path} stayed locked by another connection \
                     for the whole busy timeout ({action})"
                ),
                err,
            ),
            _ => sql_error_as(
                sql_kind(&err),
                &format!("opening the SQLite session database {path} failed ({action})"),
                err,
            ),
        }
    }

    /// Why SQLite could not open the file ("unable to open database file"
    /// says nothing more): the error of creating it, or what the file
    /// system says of the path.
    fn cannot_open_reason(&self) -> Option<String> {
        let file = sqlite_path(self.path);
        if let Some(err) = &self.created {
            return Some(io_reason(&file, err));
        }
        match std::fs::metadata(&file) {
            Err(err) => Some(io_reason(&file, &err)),
            Ok(meta) if meta.is_dir() => Some("it is a directory".to_owned()),
            Ok(_) => std::fs::File::open(&file)
                .err()
                .map(|err| io_reason(&file, &err)),
        }
    }
}

/// `err`, from creating or reading `path`, in words.
fn io_reason(path: &Path, err: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match err.kind() {
        K::NotFound => match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => {
                format!("no such directory {}", dir.display())
            }
            _ => "no such file".to_owned(),
        },
        K::PermissionDenied => "permission denied (the app's user must be able to read and \
                                write the file, and create files in its directory)"
            .to_owned(),
        K::IsADirectory => "it is a directory".to_owned(),
        K::NotADirectory => "a part of its path is not a directory".to_owned(),
        K::ReadOnlyFilesystem => "the file system is read-only".to_owned(),
        _ => err.to_string(),
    }
}

/// Opens the first connection, checks the schema, and only then (if it is
/// this build's, or there is none yet) sets WAL mode and creates or
/// migrates it (or, without `migrating`, refuses anything but an existing
/// database of this build's schema, changing nothing); then opens the rest
/// of the pool.
fn open_pool(
    path: &Path,
    connections: usize,
    busy_timeout: Duration,
    migrating: bool,
) -> Result<Vec<Connection>, StoreError> {
    let file = sqlite_path(path);
    // Not `OpenFlags::default()`: that has `SQLITE_OPEN_URI`, and the path
    // is a file path, never an SQLite URI.
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut opening = Opening {
        path,
        created: None,
    };
    if migrating {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
        opening.created = create_private(&file)
            .err()
            .filter(|err| err.kind() != std::io::ErrorKind::AlreadyExists);
    }
    let open = || -> Result<Connection, StoreError> {
        let conn =
            Connection::open_with_flags(&file, flags).map_err(|err| opening.error("open", err))?;
        configure(&conn, busy_timeout).map_err(|err| opening.error("configure", err))?;
        Ok(conn)
    };
    let mut first = open()?;
    prepare_schema(&mut first, &opening, migrating, true)?;
    let mut pool = Vec::with_capacity(connections.max(1));
    pool.push(first);
    for _ in 1..connections {
        pool.push(open()?);
    }
    Ok(pool)
}

/// `path` as SQLite is given it, so that SQLite reads it as a plain file
/// path: a relative path gets a leading `./`, so that neither `:memory:`
/// (a private in-memory database per connection) nor a `file:` URI (which
/// the bundled SQLite, built with `SQLITE_USE_URI`, reads whatever the open
/// flags say) is taken specially. An absolute path is left as it is.
fn sqlite_path(path: &Path) -> PathBuf {
    if path.is_relative() {
        Path::new(".").join(path)
    } else {
        path.to_path_buf()
    }
}

/// Creates the database file with mode 0600 (readable and writable by its
/// owner only) if it does not exist yet; SQLite gives the `-wal`, `-shm`
/// and `-journal` files it creates next to it the same permissions. An
/// existing file is never touched (`create_new`), so its permissions stay
/// the operator's. The error (the file exists, the directory does not) is
/// only kept, to say why if SQLite's open, which comes next, fails.
#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
}

/// Off Unix, the file is created by SQLite with the platform's defaults.
#[cfg(not(unix))]
fn create_private(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// The columns of this build's `sessions` table.
const SCHEMA_COLUMNS: &[&str] = &[
    "id",
    "data",
    "created_at",
    "idle_timeout",
    "idle_deadline",
    "absolute_deadline",
    "deadline",
    "persistent",
    "version",
    "user_id",
];

/// The objects of this build's schema: (type, name), all on `sessions`.
const SCHEMA_OBJECTS: &[(&str, &str)] = &[
    ("table", "sessions"),
    ("index", "sessions_deadline"),
    ("index", "sessions_user_id"),
];

/// What a database holds, as far as telling a keepsake session database
/// from another goes.
struct FoundSchema {
    /// `PRAGMA user_version`.
    version: i64,
    /// Its tables, indexes, views and triggers, but SQLite's own
    /// (`sqlite_%`): (type, name, table).
    objects: Vec<(String, String, String)>,
    /// The columns of its `sessions` table, if it has one.
    columns: Option<Vec<String>>,
}

impl FoundSchema {
    /// Reads it, in the caller's transaction.
    fn read(conn: &Connection) -> rusqlite::Result<Self> {
        let version = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let objects: Vec<(String, String, String)> = conn
            .prepare(
                "SELECT type, name, tbl_name FROM sqlite_schema \
                 WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                 ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'view' THEN 1 \
                 WHEN 'index' THEN 2 ELSE 3 END, name",
            )?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let table = objects
            .iter()
            .any(|(kind, name, _)| kind == "table" && name.eq_ignore_ascii_case("sessions"));
        let columns = if table {
            Some(
                conn.prepare("SELECT name FROM pragma_table_info('sessions')")?
                    .query_map([], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?,
            )
        } else {
            None
        };
        Ok(Self {
            version,
            objects,
            columns,
        })
    }

    /// What keeps it from holding this build's sessions table, if anything:
    /// no `sessions` table, or one without keepsake's columns (columns
    /// added to it are the operator's business).
    fn table_problem(&self) -> Option<String> {
        let Some(columns) = &self.columns else {
            return Some("no sessions table".to_owned());
        };
        let missing: Vec<&str> = SCHEMA_COLUMNS
            .iter()
            .copied()
            .filter(|name| !columns.iter().any(|c| c.eq_ignore_ascii_case(name)))
            .collect();
        (!missing.is_empty()).then(|| {
            format!(
                "a sessions table that lacks the columns {}",
                missing.join(", ")
            )
        })
    }

    /// How it differs from exactly this build's schema, if it does: every
    /// object that is not keepsake's, every one of keepsake's that is
    /// missing, and the `sessions` table's missing and extra columns.
    fn layout_problem(&self) -> Option<String> {
        let ours = |kind: &str, name: &str, table: &str| {
            table.eq_ignore_ascii_case("sessions")
                && SCHEMA_OBJECTS
                    .iter()
                    .any(|&(k, n)| k == kind && n.eq_ignore_ascii_case(name))
        };
        let mut problems = Vec::new();
        let foreign: Vec<String> = self
            .objects
            .iter()
            .filter(|(kind, name, table)| !ours(kind, name, table))
            .map(|(kind, name, _)| format!("{kind} {}", shown(name)))
            .collect();
        if !foreign.is_empty() {
            problems.push(format!(
                "holds {}, which keepsake does not make",
                listed(&foreign)
            ));
        }
        if let Some(columns) = &self.columns {
            let extra: Vec<String> = columns
                .iter()
                .filter(|c| {
                    !SCHEMA_COLUMNS
                        .iter()
                        .any(|name| c.eq_ignore_ascii_case(name))
                })
                .map(|c| shown(c))
                .collect();
            let extra = (!extra.is_empty())
                .then(|| format!("columns keepsake does not make: {}", listed(&extra)));
            match (self.table_problem(), extra) {
                (Some(missing), Some(extra)) => {
                    problems.push(format!("{missing}, and has {extra}"))
                }
                (Some(missing), None) => problems.push(missing),
                (None, Some(extra)) => problems.push(format!("a sessions table with {extra}")),
                (None, None) => {}
            }
        }
        let missing: Vec<&str> = SCHEMA_OBJECTS
            .iter()
            .filter(|(kind, name)| {
                !self
                    .objects
                    .iter()
                    .any(|(k, n, t)| k == kind && n.eq_ignore_ascii_case(name) && ours(k, n, t))
            })
            .map(|(_, name)| *name)
            .collect();
        // Only worth saying of a schema that is otherwise keepsake's.
        if problems.is_empty() && !missing.is_empty() {
            problems.push(format!("lacks keepsake's {}", missing.join(", ")));
        }
        (!problems.is_empty()).then(|| problems.join("; "))
    }
}

/// `name` from the database, on one line.
fn shown(name: &str) -> String {
    name.escape_debug().to_string()
}

/// Up to six of `items`, then how many more.
fn listed(items: &[String]) -> String {
    const SHOWN: usize = 6;
    let mut text = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        text.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    text
}

/// What opening a database needs to do to its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Nothing: it is this build's.
    Ready,
    /// Create it: the database is empty.
    Create,
    /// Set the schema version only: the database holds exactly this
    /// build's schema, but version 0 (made by hand, say).
    Adopt,
    /// Migrate from this older version.
    Upgrade(usize),
}

impl Plan {
    /// What to do with `found` at `path`, or why it must be left alone.
    fn of(found: &FoundSchema, path: &Path) -> Result<Self, StoreError> {
        let known = i64::from(SqliteStore::SCHEMA_VERSION);
        match found.version {
            version if version > known => Err(newer_schema(path, version)),
            version if version < 0 => {
                Err(foreign_schema(path, version, "so was not made by keepsake"))
            }
            0 if found.objects.is_empty() => Ok(Self::Create),
            // Version 0 is SQLite's default, which most apps never change:
            // only exactly keepsake's schema is taken.
            0 => match found.layout_problem() {
                None => Ok(Self::Adopt),
                Some(problem) => Err(foreign_schema(path, 0, &problem)),
            },
            // The version alone does not make it ours: another app's
            // database may have the same `user_version`.
            version if version == known => match found.table_problem() {
                None => Ok(Self::Ready),
                Some(problem) => Err(foreign_schema(path, version, &problem)),
            },
            // In 1..known here.
            version => Ok(Self::Upgrade(usize::try_from(version).unwrap_or(0))),
        }
    }
}

/// The error for a database that is not a keepsake session database and
/// may be another app's: it is left alone.
fn foreign_schema(path: &Path, version: i64, problem: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Unavailable,
        format!(
            "{} is not a keepsake session database: it has schema version {version} and \
             {problem}; it may belong to another app, so keepsake leaves it alone: use a \
             separate file for sessions",
            path.display(),
        ),
    )
}

/// The error for a database of a newer schema version than this build's.
fn newer_schema(path: &Path, found: i64) -> StoreError {
    StoreError::new(
        StoreErrorKind::Unavailable,
        format!(
            "the SQLite session database {} has schema version {found}, newer than version {} \
             that this build of keepsake knows: it was made by a newer keepsake; upgrade \
             keepsake or use another file",
            path.display(),
            SqliteStore::SCHEMA_VERSION,
        ),
    )
}

/// Checks the schema, then, `migrating`, creates or migrates it to
/// [`SqliteStore::SCHEMA_VERSION`] (switching a file database, `wal`, to
/// WAL mode first), or, not, refuses anything but this build's schema.
///
/// Nothing is written before the checks pass, and they only read, in a
/// deferred transaction: a database that is refused is left exactly as it
/// was, and a database that needs nothing opens while another process
/// holds the write lock. The write lock is taken only to create or migrate,
/// and the checks are made again under it (another process may have done
/// it meanwhile).
fn prepare_schema(
    conn: &mut Connection,
    opening: &Opening<'_>,
    migrating: bool,
    wal: bool,
) -> Result<(), StoreError> {
    let path = opening.path;
    let read = |conn: &mut Connection, behavior| -> Result<FoundSchema, rusqlite::Error> {
        let tx = conn.transaction_with_behavior(behavior)?;
        FoundSchema::read(&tx)
    };
    let found = read(conn, TransactionBehavior::Deferred)
        .map_err(|err| opening.error("reading the schema", err))?;
    let plan = Plan::of(&found, path)?;
    if !migrating {
        return match plan {
            Plan::Ready => Ok(()),
            plan => Err(not_ready(path, &found, plan)),
        };
    }
    if wal {
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|err| opening.error("switching to WAL mode", err))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(
                path = %path.display(),
                journal_mode = %mode,
                "SQLite session database could not switch to WAL mode; writes will block reads"
            );
        }
    }
    if plan == Plan::Ready {
        return Ok(());
    }
    let fail = |err| opening.error("creating or upgrading the schema", err);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(fail)?;
    let found = FoundSchema::read(&tx).map_err(fail)?;
    let from = match Plan::of(&found, path)? {
        // Another process got there first.
        Plan::Ready => return Ok(()),
        Plan::Create => 0,
        Plan::Adopt => MIGRATIONS.len(),
        Plan::Upgrade(from) => from,
    };
    for migration in MIGRATIONS.get(from..).unwrap_or_default() {
        tx.execute_batch(migration).map_err(fail)?;
    }
    tx.pragma_update(None, "user_version", SqliteStore::SCHEMA_VERSION)
        .map_err(fail)?;
    tx.commit().map_err(fail)
}

/// The error for a database an open that does not migrate cannot use, but
/// the app's open would create or migrate.
fn not_ready(path: &Path, found: &FoundSchema, plan: Plan) -> StoreError {
    let path = path.display();
    let known = SqliteStore::SCHEMA_VERSION;
    let message = match plan {
        Plan::Create => format!(
            "{path} is not a keepsake session database yet: it is an empty database; the app \
             creates the schema when it opens it"
        ),
        Plan::Adopt => format!(
            "{path} is not a keepsake session database of schema version {known}: it has \
             keepsake's tables but schema version 0; the app takes it over when it opens it"
        ),
        Plan::Upgrade(_) | Plan::Ready => format!(
            "{path} is not a keepsake session database of schema version {known} (it has \
             version {}); the app upgrades it when it opens it",
            found.version
        ),
    };
    StoreError::new(StoreErrorKind::Unavailable, message)
}

/// A time or version as SQLite stores it: capped at `i64::MAX`.
fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A record's column values, owned so they can move to a blocking thread.
struct Columns {
    id: String,
    data: String,
    created_at: i64,
    idle_timeout: Option<i64>,
    idle_deadline: Option<i64>,
    absolute_deadline: i64,
    deadline: i64,
    persistent: bool,
    version: i64,
    user: Option<String>,
}

impl Columns {
    fn of(record: &Record) -> Result<Self, StoreError> {
        let data = serde_json::to_string(&record.data).map_err(|err| {
            StoreError::with_source(
                StoreErrorKind::Corrupt,
                "session data could not be encoded as JSON",
                err,
            )
        })?;
        Ok(Self {
            id: record.id.to_string(),
            data,
            created_at: sql_int(record.created_at),
            idle_timeout: record.idle_timeout.map(sql_int),
            idle_deadline: record.idle_deadline.map(sql_int),
            absolute_deadline: sql_int(record.absolute_deadline),
            deadline: sql_int(record.deadline()),
            persistent: record.persistent,
            version: sql_int(record.version),
            user: record.user.clone(),
        })
    }
}

/// A row's raw values, in [`COLUMNS`] order.
type RawRow = (
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    i64,
    bool,
    i64,
    Option<String>,
);

fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
    ))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Corrupt,
        format!("a stored session has a negative {what}"),
    )
}

fn unsigned(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(what))
}

/// [`decode_row`], its error naming the row's id.
fn decode(raw: RawRow) -> Result<Record, StoreError> {
    let id = raw.0.clone();
    decode_row(raw).map_err(|err| err.about(id))
}

fn decode_row(raw: RawRow) -> Result<Record, StoreError> {
    let (
        id,
        data,
        created_at,
        idle_timeout,
        idle_deadline,
        absolute_deadline,
        persistent,
        version,
        user,
    ) = raw;
    let id: Id = id.parse().map_err(|err| {
        StoreError::with_source(
            StoreErrorKind::Corrupt,
            "a stored session id is invalid",
            err,
        )
    })?;
    // Described, not quoted: serde_json's message quotes session data.
    let data: Data = serde_json::from_str(&data).map_err(|err| {
        StoreError::new(
            StoreErrorKind::Corrupt,
            format!(
                "a stored session's data is not a JSON object: {}",
                super::payload::json_error_summary(&err)
            ),
        )
    })?;
    Ok(Record {
        id,
        data,
        created_at: unsigned(created_at, "creation time")?,
        idle_timeout: idle_timeout
            .map(|value| unsigned(value, "idle timeout"))
            .transpose()?,
        idle_deadline: idle_deadline
            .map(|value| unsigned(value, "idle deadline"))
            .transpose()?,
        absolute_deadline: unsigned(absolute_deadline, "absolute deadline")?,
        persistent,
        version: unsigned(version, "version")?,
        user,
    })
}

impl SessionStore for SqliteStore {
    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        let row = Columns::of(record)?;
        // `create` has no clock: the new record's creation time is "now".
        let now = row.created_at;
        self.run(Access::Write, move |conn| {
            let fail = |err| sql_error("create", err);
            conn.prepare_cached("DELETE FROM sessions WHERE id = ?1 AND deadline <= ?2")
                .and_then(|mut s| s.execute(params![row.id, now]))
                .map_err(fail)?;
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO sessions (id, data, created_at, idle_timeout, idle_deadline, \
                     absolute_deadline, deadline, persistent, version, user_id) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        row.id,
                        row.data,
                        row.created_at,
                        row.idle_timeout,
                        row.idle_deadline,
                        row.absolute_deadline,
                        row.deadline,
                        row.persistent,
                        row.version,
                        row.user,
                    ])
                })
                .map_err(fail)?;
            Ok(if inserted == 1 {
                Created::Created
            } else {
                Created::Collision
            })
        })
        .await
    }

    async fn load(&self, id: &Id, now: u64) -> Result<Option<Record>, StoreError> {
        let (id, now) = (id.to_string(), sql_int(now));
        self.run(Access::Read, move |conn| {
            let raw = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM sessions WHERE id = ?1 AND deadline > ?2"
                ))
                .and_then(|mut s| s.query_row(params![id, now], read_row).optional())
                .map_err(|err| sql_error("load", err))?;
            raw.map(decode).transpose()
        })
        .await
    }

    async fn save(&self, record: &Record, now: u64) -> Result<Saved, StoreError> {
        let row = Columns::of(record)?;
        // A version beyond what SQLite can hold matches no stored version.
        let expected = i64::try_from(record.version).ok();
        let now = sql_int(now);
        self.run(Access::Write, move |conn| {
            let fail = |err| sql_error("save", err);
            let updated = conn
                .prepare_cached(
                    "UPDATE sessions SET data = ?2, created_at = ?3, idle_timeout = ?4, \
                     idle_deadline = ?5, absolute_deadline = ?6, deadline = ?7, \
                     persistent = ?8, version = version + 1, user_id = ?9 \
                     WHERE id = ?1 AND version = ?10 AND deadline > ?11",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        row.id,
                        row.data,
                        row.created_at,
                        row.idle_timeout,
                        row.idle_deadline,
                        row.absolute_deadline,
                        row.deadline,
                        row.persistent,
                        row.user,
                        expected,
                        now,
                    ])
                })
                .map_err(fail)?;
            let outcome = match (updated, expected) {
                (1, Some(version)) => Saved::Saved {
                    version: unsigned(version, "version")? + 1,
                },
                _ => {
                    // Nothing written: tell a stale version from a missing
                    // or expired record, within the same transaction.
                    let deadline: Option<i64> = conn
                        .prepare_cached("SELECT deadline FROM sessions WHERE id = ?1")
                        .and_then(|mut s| s.query_row(params![row.id], |r| r.get(0)).optional())
                        .map_err(fail)?;
                    match deadline {
                        None => Saved::Gone,
                        Some(deadline) if deadline <= now => {
                            conn.prepare_cached("DELETE FROM sessions WHERE id = ?1")
                                .and_then(|mut s| s.execute(params![row.id]))
                                .map_err(fail)?;
                            Saved::Gone
                        }
                        Some(_) => Saved::Conflict,
                    }
                }
            };
            Ok(outcome)
        })
        .await
    }

    async fn touch(
        &self,
        id: &Id,
        version: u64,
        idle_deadline: u64,
        now: u64,
    ) -> Result<Touched, StoreError> {
        let (id, idle_deadline, now) = (id.to_string(), sql_int(idle_deadline), sql_int(now));
        // A version beyond INTEGER matches no stored version.
        let version = i64::try_from(version).ok();
        self.run(Access::Write, move |conn| {
            let fail = |err| sql_error("touch", err);
            let updated = conn
                .prepare_cached(
                    "UPDATE sessions SET idle_deadline = MIN(?2, absolute_deadline), \
                     deadline = MIN(?2, absolute_deadline) \
                     WHERE id = ?1 AND deadline > ?3 AND version = ?4",
                )
                .and_then(|mut s| s.execute(params![id, idle_deadline, now, version]))
                .map_err(fail)?;
            if updated == 1 {
                return Ok(Touched::Touched);
            }
            // Saved since, missing or expired; drop the row if it is expired.
            conn.prepare_cached("DELETE FROM sessions WHERE id = ?1 AND deadline <= ?2")
                .and_then(|mut s| s.execute(params![id, now]))
                .map_err(fail)?;
            let live = conn
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM sessions WHERE id = ?1)")
                .and_then(|mut s| s.query_row(params![id], |row| row.get::<_, bool>(0)))
                .map_err(fail)?;
            Ok(if live {
                Touched::Outdated
            } else {
                Touched::Gone
            })
        })
        .await
    }

    async fn delete(&self, id: &Id) -> Result<bool, StoreError> {
        self.delete_stored(&id.to_string()).await
    }

    async fn delete_if_version(&self, id: &Id, version: u64) -> Result<Deleted, StoreError> {
        let id = id.to_string();
        // A version beyond what SQLite can hold matches no stored version.
        let expected = i64::try_from(version).ok();
        self.run(Access::Write, move |conn| {
            let fail = |err| sql_error("delete_if_version", err);
            let deleted = conn
                .prepare_cached("DELETE FROM sessions WHERE id = ?1 AND version = ?2")
                .and_then(|mut s| s.execute(params![id, expected]))
                .map_err(fail)?;
            let outcome = if deleted > 0 {
                Deleted::Deleted
            } else {
                let exists = conn
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM sessions WHERE id = ?1)")
                    .and_then(|mut s| s.query_row(params![id], |row| row.get::<_, bool>(0)))
                    .map_err(fail)?;
                if exists {
                    Deleted::Conflict
                } else {
                    Deleted::Gone
                }
            };
            Ok(outcome)
        })
        .await
    }

    async fn delete_user(&self, user: &str) -> Result<usize, StoreError> {
        let user = user.to_owned();
        self.run(Access::Write, move |conn| {
            conn.prepare_cached("DELETE FROM sessions WHERE user_id = ?1")
                .and_then(|mut s| s.execute(params![user]))
                .map_err(|err| sql_error("delete_user", err))
        })
        .await
    }

    async fn list_user(&self, user: &str, now: u64) -> Result<Vec<Record>, StoreError> {
        Ok(StoreError::log_unreadable(
            self.list_user_skipping_unreadable(user, now).await?,
        ))
    }

    async fn purge_expired(&self, now: u64) -> Result<usize, StoreError> {
        // In batches, each its own write (other writes go in between), so a
        // large purge never holds the write lock for long.
        let mut purged = 0;
        loop {
            let batch = self.purge_batch(sql_int(now), PURGE_BATCH).await?;
            purged += batch;
            if i64::try_from(batch).unwrap_or(i64::MAX) < PURGE_BATCH {
                return Ok(purged);
            }
        }
    }
}

// Administration (the `StoreAdmin` trait is in `admin.rs`).

use super::{Counts, Cursor, Page, PurgeStep, StoreAdmin};

// Administration of rows this store cannot read (a row another app or an
// old version wrote, say): `keepsake sessions` lists around them and
// revokes them by their stored id.
impl SqliteStore {
    /// One page, as [`StoreAdmin::page`] walks the table, except that a row
    /// this store cannot read (its id is not a keepsake session id, its data
    /// is not a JSON object...) does not fail the page: it is left out, and
    /// its error ([`StoreErrorKind::Corrupt`]) is returned beside the page,
    /// with the row's id as stored in [`StoreError::session_id`] (for
    /// [`delete_stored`](Self::delete_stored)). [`StoreAdmin::page`] fails
    /// with the first such error instead. The cursor goes on after the
    /// rows left out, so a walk reaches every readable row.
    ///
    /// # Errors
    ///
    /// As [`StoreAdmin::page`], except for unreadable rows (a row whose id
    /// is not text still fails the page).
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{Id, Record, SessionStore, SqliteStore, StoreErrorKind};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let dir = std::env::temp_dir().join(format!("keepsake-doc-unreadable-{}", Id::random()));
    /// std::fs::create_dir(&dir)?;
    /// let path = dir.join("sessions.db");
    /// let store = SqliteStore::open(&path).await?;
    /// let record = Record::new(Id::random(), 0, None, 60);
    /// store.create(&record).await?;
    /// // A row an older app wrote, under an id keepsake would never make.
    /// rusqlite::Connection::open(&path)?.execute(
    ///     "INSERT INTO sessions SELECT 'legacy-session-1', data, created_at, idle_timeout, \
    ///      idle_deadline, absolute_deadline, deadline, persistent, version, user_id \
    ///      FROM sessions",
    ///     [],
    /// )?;
    ///
    /// let (page, unreadable) = store.page_skipping_unreadable(None, 100).await?;
    /// assert_eq!(page.records, [record]);
    /// assert_eq!(unreadable.len(), 1);
    /// assert_eq!(unreadable[0].kind(), StoreErrorKind::Corrupt);
    /// assert_eq!(unreadable[0].session_id(), Some("legacy-session-1"));
    ///
    /// assert!(store.delete_stored("legacy-session-1").await?);
    /// assert!(store.page_skipping_unreadable(None, 100).await?.1.is_empty());
    /// # drop(store);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
    /// ```
    pub async fn page_skipping_unreadable(
        &self,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<(Page, Vec<StoreError>), StoreError> {
        let limit = limit.max(1);
        // Every id sorts after the empty string.
        let after = cursor
            .map(|cursor| cursor.as_str().to_owned())
            .unwrap_or_default();
        let sql_limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (records, unreadable, last, rows) = self
            .run(Access::Read, move |conn| {
                let fail = |err| sql_error("query", err);
                let mut statement = conn
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM sessions WHERE id > ?1 ORDER BY id LIMIT ?2"
                    ))
                    .map_err(fail)?;
                let mut found = statement.query(params![after, sql_limit]).map_err(fail)?;
                let (mut records, mut unreadable) = (Vec::new(), Vec::new());
                let (mut last, mut rows) = (None, 0usize);
                while let Some(row) = found.next().map_err(fail)? {
                    // The id first: the next page starts after it, whatever
                    // the rest of the row holds.
                    let id: String = row.get(0).map_err(fail)?;
                    let record = read_row(row)
                        .map_err(|err| fail(err).about(id.clone()))
                        .and_then(decode);
                    match record {
                        Ok(record) => records.push(record),
                        Err(err) => unreadable.push(err),
                    }
                    last = Some(id);
                    rows += 1;
                }
                Ok((records, unreadable, last, rows))
            })
            .await?;
        let next = last.filter(|_| rows == limit).map(Cursor::new);
        Ok((Page { records, next }, unreadable))
    }

    /// [`SessionStore::list_user`], with the errors of the user's rows this
    /// store cannot read beside the records (as
    /// [`page_skipping_unreadable`](Self::page_skipping_unreadable) gives
    /// them), where `list_user` logs them.
    ///
    /// # Errors
    ///
    /// As [`SessionStore::list_user`], except for unreadable rows.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{Id, Record, SessionStore, SqliteStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let dir = std::env::temp_dir().join(format!("keepsake-doc-user-{}", Id::random()));
    /// std::fs::create_dir(&dir)?;
    /// let path = dir.join("sessions.db");
    /// let store = SqliteStore::open(&path).await?;
    /// let mut record = Record::new(Id::random(), 0, None, 60);
    /// record.user = Some("alice".to_owned());
    /// store.create(&record).await?;
    /// // A row of alice's that an older app wrote, under an id keepsake
    /// // would never make.
    /// rusqlite::Connection::open(&path)?.execute(
    ///     "INSERT INTO sessions SELECT 'legacy-session-1', data, created_at, idle_timeout, \
    ///      idle_deadline, absolute_deadline, deadline, persistent, version, user_id \
    ///      FROM sessions",
    ///     [],
    /// )?;
    ///
    /// let (records, unreadable) = store.list_user_skipping_unreadable("alice", 1).await?;
    /// assert_eq!(records, [record.clone()]);
    /// assert_eq!(unreadable[0].session_id(), Some("legacy-session-1"));
    /// // `list_user` logs it and leaves it out.
    /// assert_eq!(store.list_user("alice", 1).await?, [record]);
    /// # drop(store);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
    /// ```
    pub async fn list_user_skipping_unreadable(
        &self,
        user: &str,
        now: u64,
    ) -> Result<(Vec<Record>, Vec<StoreError>), StoreError> {
        let (user, now) = (user.to_owned(), sql_int(now));
        self.run(Access::Read, move |conn| {
            let fail = |err| sql_error("list_user", err);
            let mut statement = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM sessions WHERE user_id = ?1 AND deadline > ?2 \
                     ORDER BY created_at, id"
                ))
                .map_err(fail)?;
            let mut found = statement.query(params![user, now]).map_err(fail)?;
            let mut decoded = Vec::new();
            while let Some(row) = found.next().map_err(fail)? {
                let id: String = row.get(0).map_err(fail)?;
                decoded.push(
                    read_row(row)
                        .map_err(|err| fail(err).about(id))
                        .and_then(decode),
                );
            }
            Ok(super::split_readable(decoded))
        })
        .await
    }

    /// Deletes the row stored under `stored_id`, the id exactly as the
    /// table holds it, whether or not it is a keepsake session id: how an
    /// operator removes a row [`page_skipping_unreadable`](Self::page_skipping_unreadable)
    /// reported (`keepsake sessions revoke --raw`). For a valid id it is
    /// [`SessionStore::delete`]. Whether there was such a row.
    ///
    /// # Errors
    ///
    /// As [`SessionStore::delete`].
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{Id, Record, SessionStore, SqliteStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = SqliteStore::open_in_memory()?;
    /// let record = Record::new(Id::random(), 0, None, 60);
    /// store.create(&record).await?;
    /// assert!(!store.delete_stored("legacy-session-1").await?);
    /// assert!(store.delete_stored(&record.id.to_string()).await?);
    /// assert!(store.load(&record.id, 1).await?.is_none());
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    pub async fn delete_stored(&self, stored_id: &str) -> Result<bool, StoreError> {
        let id = stored_id.to_owned();
        self.run(Access::Write, move |conn| {
            conn.prepare_cached("DELETE FROM sessions WHERE id = ?1")
                .and_then(|mut s| s.execute(params![id]))
                .map(|deleted| deleted > 0)
                .map_err(|err| sql_error("delete", err))
        })
        .await
    }
}

/// Pages are in id order (the primary key's); the cursor is the last id of
/// the page. A purge step is one `DELETE` of up to `limit` expired rows in
/// its own transaction; it needs no cursor.
impl StoreAdmin for SqliteStore {
    async fn page(&self, cursor: Option<&Cursor>, limit: usize) -> Result<Page, StoreError> {
        let (page, unreadable) = self.page_skipping_unreadable(cursor, limit).await?;
        match unreadable.into_iter().next() {
            Some(err) => Err(err),
            None => Ok(page),
        }
    }

    async fn count(&self, now: u64) -> Result<Counts, StoreError> {
        let now = sql_int(now);
        self.run(Access::Read, move |conn| {
            let (total, expired) = conn
                .prepare_cached("SELECT count(*), coalesce(sum(deadline <= ?1), 0) FROM sessions")
                .and_then(|mut s| {
                    s.query_row(params![now], |row| {
                        Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
                    })
                })
                .map_err(|err| sql_error("count", err))?;
            Ok(Counts {
                total: unsigned(total, "count")?,
                expired: unsigned(expired, "count")?,
            })
        })
        .await
    }

    async fn purge_step(
        &self,
        now: u64,
        _cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<PurgeStep, StoreError> {
        let (now, limit) = (sql_int(now), limit.max(1));
        let sql_limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let purged = self.purge_batch(now, sql_limit).await?;
        Ok(PurgeStep {
            purged,
            next: (purged >= limit).then(|| Cursor::new("")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;
    use serde_json::json;

    /// A database file in the temp dir, removed (with its WAL files) on drop.
    struct TempDb(PathBuf);

    impl TempDb {
        fn new(tag: &str) -> Self {
            Self(std::env::temp_dir().join(format!("keepsake-sqlite-{tag}-{}.db", Id::random())))
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut file = self.0.clone().into_os_string();
                file.push(suffix);
                let _ = std::fs::remove_file(file);
            }
        }
    }

    fn raw(db: &TempDb) -> Connection {
        Connection::open(&db.0).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn conformance_on_a_file() {
        let db = TempDb::new("conformance");
        let store = SqliteStore::open(&db.0).await.unwrap();
        conformance::run_all(&store).await;
    }

    /// A busy timeout past SQLite's `i32` of milliseconds is taken as the
    /// longest it has (rusqlite panicked on it, and the open failed).
    #[tokio::test]
    async fn the_longest_busy_timeout_opens() {
        let db = TempDb::new("busy-max");
        let store = SqliteStore::builder(&db.0)
            .busy_timeout(Duration::MAX)
            .open()
            .await
            .unwrap();
        let record = Record::new(Id::random(), 1_000, Some(600), 3_600);
        store.create(&record).await.unwrap();
        assert!(store.load(&record.id, 1_000).await.unwrap().is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_its_caller_gave_up_on_is_not_made_once_the_lock_comes() {
        let db = TempDb::new("abandoned");
        let store = SqliteStore::open(&db.0).await.unwrap();
        let mut record = Record::new(Id::random(), 1_000, Some(600), 3_600);
        store.create(&record).await.unwrap();
        // Another process holds the write lock for longer than the caller
        // waits (but less than the store's 5 s busy timeout).
        let holder = raw(&db);
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
        record.data.insert("n".into(), json!(1));
        let gave_up = tokio::time::timeout(Duration::from_millis(300), store.save(&record, 1_000));
        assert!(gave_up.await.is_err(), "the save waited for the lock");
        tokio::time::sleep(Duration::from_millis(300)).await;
        holder.execute_batch("COMMIT").unwrap();
        // The writer thread got the lock: the next write goes after the
        // abandoned one, which was not made.
        let other = Record::new(Id::random(), 1_000, Some(600), 3_600);
        store.create(&other).await.unwrap();
        let loaded = store.load(&record.id, 1_000).await.unwrap().unwrap();
        assert_eq!((loaded.version, loaded.data.get("n")), (0, None));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance_in_memory() {
        let store = SqliteStore::open_in_memory().unwrap();
        conformance::run_all(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sessions_survive_a_restart() {
        let db = TempDb::new("restart");
        let mut record = Record::new(Id::random(), 1_000, Some(600), 3_600);
        record.data.insert("cart".into(), json!(["🍪", 2]));
        record.user = Some("ada".into());
        record.persistent = true;
        {
            let store = SqliteStore::open(&db.0).await.unwrap();
            assert_eq!(store.create(&record).await.unwrap(), Created::Created);
            assert_eq!(
                store.save(&record, 1_001).await.unwrap(),
                Saved::Saved { version: 1 }
            );
        }
        let store = SqliteStore::open(&db.0).await.unwrap();
        record.version = 1;
        assert_eq!(store.load(&record.id, 1_002).await.unwrap(), Some(record));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
    async fn concurrent_writes_never_report_locked() {
        let db = TempDb::new("concurrent");
        // Two stores on one file, as two processes would be.
        let stores = [
            SqliteStore::open(&db.0).await.unwrap(),
            SqliteStore::open(&db.0).await.unwrap(),
        ];
        let shared = Record::new(Id::random(), 0, None, u64::MAX);
        stores[0].create(&shared).await.unwrap();
        const TASKS: usize = 8;
        const ROUNDS: usize = 25;
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let store = stores[task % 2].clone();
                let shared = shared.id;
                tokio::spawn(async move {
                    for round in 0..ROUNDS {
                        let mut own = Record::new(Id::random(), 10, Some(60), 3_600);
                        own.user = Some(format!("user-{task}"));
                        assert_eq!(store.create(&own).await.unwrap(), Created::Created);
                        own.data.insert("round".into(), json!(round));
                        assert!(matches!(
                            store.save(&own, 11).await.unwrap(),
                            Saved::Saved { .. }
                        ));
                        let touched = store.touch(&own.id, 1, 100, 12).await.unwrap();
                        assert_eq!(touched, Touched::Touched);
                        // Compare-and-set increments of one shared record.
                        loop {
                            let mut current = store.load(&shared, 20).await.unwrap().unwrap();
                            let n = current.data.get("n").and_then(|v| v.as_u64()).unwrap_or(0);
                            current.data.insert("n".into(), json!(n + 1));
                            match store.save(&current, 20).await.unwrap() {
                                Saved::Saved { .. } => break,
                                Saved::Conflict => continue,
                                Saved::Gone => panic!("shared record gone"),
                            }
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let total = (TASKS * ROUNDS) as u64;
        let shared = stores[1].load(&shared.id, 30).await.unwrap().unwrap();
        assert_eq!(shared.version, total);
        assert_eq!(shared.data["n"], json!(total));
        for task in 0..TASKS {
            let user = format!("user-{task}");
            assert_eq!(stores[0].list_user(&user, 30).await.unwrap().len(), ROUNDS);
        }
        assert_eq!(stores[0].purge_expired(100).await.unwrap(), TASKS * ROUNDS);
    }

    #[tokio::test]
    async fn schema_version_and_pragmas() {
        let db = TempDb::new("schema");
        let store = SqliteStore::open(&db.0).await.unwrap();
        let conn = raw(&db);
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, i64::from(SqliteStore::SCHEMA_VERSION));
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        assert_eq!(mode.to_lowercase(), "wal");
        let indexes: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sessions' AND sql IS NOT NULL ORDER BY name")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(indexes, ["sessions_deadline", "sessions_user_id"]);
        // Reopening an up-to-date database changes nothing.
        drop(store);
        SqliteStore::open(&db.0).await.unwrap();
    }

    #[tokio::test]
    async fn newer_schema_is_refused() {
        let db = TempDb::new("newer");
        raw(&db)
            .pragma_update(
                None,
                "user_version",
                i64::from(SqliteStore::SCHEMA_VERSION) + 1,
            )
            .unwrap();
        let err = SqliteStore::open(&db.0).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Unavailable);
        let text = err.to_string();
        assert!(text.contains("schema version 2"), "{text}");
        assert!(text.contains("newer"), "{text}");
        // Nothing was touched.
        let tables: i64 = raw(&db)
            .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
            .unwrap();
        assert_eq!(tables, 0);
    }

    #[tokio::test]
    async fn bad_rows_are_corrupt() {
        let db = TempDb::new("corrupt");
        let store = SqliteStore::open(&db.0).await.unwrap();
        let record = Record::new(Id::random(), 0, None, 100);
        store.create(&record).await.unwrap();
        raw(&db)
            .execute(
                "UPDATE sessions SET data = 'not json' WHERE id = ?1",
                params![record.id.to_string()],
            )
            .unwrap();
        let err = store.load(&record.id, 1).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Corrupt);
        // The error goes into logs: it names the session by its log tag
        // only; the id itself is there for an operator, apart.
        let id = record.id.to_string();
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains(&id), "{shown}");
            assert!(shown.contains(&record.id.log_tag()), "{shown}");
        }
        assert_eq!(err.session_id(), Some(id.as_str()));
        raw(&db)
            .execute(
                "UPDATE sessions SET data = '{}', version = 'seven' WHERE id = ?1",
                params![record.id.to_string()],
            )
            .unwrap();
        let err = store.load(&record.id, 1).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Corrupt);
    }

    #[tokio::test]
    async fn unopenable_and_foreign_files() {
        let missing = std::env::temp_dir()
            .join(format!("keepsake-missing-{}", Id::random()))
            .join("sessions.db");
        let err = SqliteStore::open(&missing).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Unavailable);

        let db = TempDb::new("foreign");
        std::fs::write(&db.0, vec![b'x'; 4096]).unwrap();
        let err = SqliteStore::open(&db.0).await.unwrap_err();
        // The file's fault, not a session record's.
        assert_eq!(err.kind(), StoreErrorKind::Unavailable);
        assert!(
            err.to_string().contains("is not an SQLite database"),
            "{err}"
        );
    }

    /// Finding 4: why SQLite could not open or write the file, with the
    /// path, for the causes a test run as root cannot make happen.
    #[test]
    fn open_errors_say_why() {
        use std::io::{Error, ErrorKind};
        let dir = std::env::temp_dir();
        let missing_dir = dir.join(format!("keepsake-missing-{}", Id::random()));
        for (path, kind, reason) in [
            (
                dir.join("s.db"),
                ErrorKind::PermissionDenied,
                "permission denied",
            ),
            (
                missing_dir.join("s.db"),
                ErrorKind::NotFound,
                "no such directory",
            ),
            (dir.join("s.db"), ErrorKind::NotFound, "no such file"),
            (
                dir.join("s.db"),
                ErrorKind::IsADirectory,
                "it is a directory",
            ),
            (dir.join("s.db"), ErrorKind::ReadOnlyFilesystem, "read-only"),
        ] {
            let opening = Opening {
                path: &path,
                created: Some(Error::from(kind)),
            };
            let cannot_open = rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some("unable to open database file".into()),
            );
            let err = opening.error("open", cannot_open);
            assert_eq!(err.kind(), StoreErrorKind::Unavailable);
            let text = err.with_causes().to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains(reason), "{reason}: {text}");
        }
        let path = dir.join("s.db");
        let opening = Opening {
            path: &path,
            created: None,
        };
        for (code, reason) in [
            (
                rusqlite::ffi::SQLITE_READONLY_DIRECTORY,
                "its directory is read-only",
            ),
            (
                rusqlite::ffi::SQLITE_READONLY,
                "the file (or its file system) is read-only",
            ),
        ] {
            let read_only = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
            let err = opening.error("switching to WAL mode", read_only);
            let text = err.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains(reason), "{text}");
        }
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        let err = opening.error("reading the schema", busy);
        assert_eq!(err.kind(), StoreErrorKind::Timeout);
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        // SQL is never quoted.
        let input = rusqlite::Error::SqlInputError {
            error: rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            msg: "table sessions already exists".into(),
            sql: "CREATE TABLE sessions (\n id TEXT\n)".into(),
            offset: 13,
        };
        let err = opening.error("creating or upgrading the schema", input);
        let text = format!("{err:?} {}", err.with_causes());
        assert!(!text.contains("CREATE"), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
    }

    /// Finding 1: which version-0 databases are keepsake's to take.
    #[test]
    fn only_an_empty_database_or_exactly_keepsakes_layout_is_taken() {
        let path = Path::new("app.db");
        let object = |kind: &str, name: &str, table: &str| {
            (kind.to_owned(), name.to_owned(), table.to_owned())
        };
        let ours = || {
            vec![
                object("table", "sessions", "sessions"),
                object("index", "sessions_deadline", "sessions"),
                object("index", "sessions_user_id", "sessions"),
            ]
        };
        let columns = || Some(SCHEMA_COLUMNS.iter().map(|c| (*c).to_owned()).collect());
        let found = |version, objects, columns| FoundSchema {
            version,
            objects,
            columns,
        };
        let plan = |found: FoundSchema| Plan::of(&found, path).map_err(|err| err.to_string());
        assert_eq!(plan(found(0, Vec::new(), None)), Ok(Plan::Create));
        assert_eq!(plan(found(0, ours(), columns())), Ok(Plan::Adopt));
        assert_eq!(plan(found(1, ours(), columns())), Ok(Plan::Ready));
        // An extra table, a missing index, an extra column: refused.
        let mut extra = ours();
        extra.push(object("table", "users", "users"));
        let err = plan(found(0, extra, columns())).unwrap_err();
        assert!(
            err.contains("holds table users, which keepsake does not make"),
            "{err}"
        );
        let mut no_index = ours();
        no_index.pop();
        let err = plan(found(0, no_index, columns())).unwrap_err();
        assert!(err.contains("lacks keepsake's sessions_user_id"), "{err}");
        let mut more = columns();
        if let Some(columns) = &mut more {
            columns.push("note\n".to_owned());
        }
        let err = plan(found(0, ours(), more)).unwrap_err();
        assert!(
            err.contains("columns keepsake does not make: note\\n"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        // Versions keepsake never sets.
        let err = plan(found(-1, Vec::new(), None)).unwrap_err();
        assert!(err.contains("not a keepsake session database"), "{err}");
        let err = plan(found(2, ours(), columns())).unwrap_err();
        assert!(err.contains("newer"), "{err}");
        // Many foreign objects: the first few, then how many more.
        let many = (0..10)
            .map(|n| object("table", &format!("t{n}"), &format!("t{n}")))
            .collect();
        let err = plan(found(0, many, None)).unwrap_err();
        assert!(err.contains("t5 and 4 more"), "{err}");
    }

    #[tokio::test]
    async fn expired_rows_are_replaced_and_dropped() {
        let store = SqliteStore::open_in_memory().unwrap();
        let old = Record::new(Id::random(), 0, None, 10);
        store.create(&old).await.unwrap();
        // Same id, created after the old one expired: replaced.
        let mut new = Record::new(old.id, 10, None, 10);
        new.data.insert("fresh".into(), json!(true));
        assert_eq!(store.create(&new).await.unwrap(), Created::Created);
        assert_eq!(store.load(&new.id, 11).await.unwrap(), Some(new.clone()));
        // A save at the deadline is Gone and removes the row.
        assert_eq!(store.save(&new, 20).await.unwrap(), Saved::Gone);
        assert_eq!(store.purge_expired(20).await.unwrap(), 0);
        assert!(!store.delete(&new.id).await.unwrap());
    }

    #[tokio::test]
    async fn huge_times_are_capped() {
        let store = SqliteStore::open_in_memory().unwrap();
        // `Record::new` caps its deadlines; a record made by hand need not.
        let mut record = Record::new(Id::random(), 0, Some(u64::MAX), 1);
        (record.absolute_deadline, record.idle_deadline) = (u64::MAX, Some(u64::MAX));
        store.create(&record).await.unwrap();
        let loaded = store.load(&record.id, 1_000).await.unwrap().unwrap();
        assert_eq!(loaded.absolute_deadline, i64::MAX as u64);
        let mut stale = record.clone();
        stale.version = u64::MAX;
        assert_eq!(store.save(&stale, 1).await.unwrap(), Saved::Conflict);
        assert_eq!(
            store.touch(&record.id, 0, u64::MAX, 1).await.unwrap(),
            Touched::Touched
        );
    }

    /// The permission bits of `path`, if it exists.
    #[cfg(unix)]
    fn mode_of(path: &Path) -> Option<u32> {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path)
            .ok()
            .map(|meta| meta.permissions().mode() & 0o777)
    }

    /// Dropping the store waits for its connections to close, so the
    /// write-ahead log is checkpointed into the file and removed: a process
    /// that drops its store and exits leaves a complete database file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_store_leaves_the_database_file_complete() {
        let db = TempDb::new("closed");
        let store = SqliteStore::builder(&db.0)
            .connections(3)
            .open()
            .await
            .unwrap();
        let record = Record::new(Id::random(), 0, None, 60);
        store.create(&record).await.unwrap();
        store.load(&record.id, 1).await.unwrap();
        drop(store);
        let mut wal = db.0.clone().into_os_string();
        wal.push("-wal");
        assert!(!PathBuf::from(wal).exists(), "the WAL is left behind");
        // The file alone holds the session.
        let copy = TempDb::new("closed-copy");
        std::fs::copy(&db.0, &copy.0).unwrap();
        let count: i64 = raw(&copy)
            .query_row("SELECT count(*) FROM sessions", [], |row| row.get(0))
            .unwrap();
        assert_eq!(count, 1);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_new_database_is_private_and_an_existing_one_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let db = TempDb::new("private");
        let store = SqliteStore::open(&db.0).await.unwrap();
        store
            .create(&Record::new(Id::random(), 0, None, 60))
            .await
            .unwrap();
        assert_eq!(mode_of(&db.0), Some(0o600), "{}", db.0.display());
        for suffix in ["-wal", "-shm"] {
            let mut file = db.0.clone().into_os_string();
            file.push(suffix);
            let file = PathBuf::from(file);
            if let Some(mode) = mode_of(&file) {
                assert_eq!(mode, 0o600, "{}", file.display());
            }
        }
        drop(store);

        // An existing file's permissions are the operator's: left alone.
        let db = TempDb::new("existing-mode");
        drop(raw(&db));
        std::fs::set_permissions(&db.0, std::fs::Permissions::from_mode(0o640)).unwrap();
        let store = SqliteStore::open(&db.0).await.unwrap();
        store
            .create(&Record::new(Id::random(), 0, None, 60))
            .await
            .unwrap();
        assert_eq!(mode_of(&db.0), Some(0o640));
    }

    #[tokio::test]
    async fn current_version_without_the_sessions_table_is_refused() {
        // Another app's database that happens to have user_version 1: with
        // no `sessions` table, or a `sessions` table that is not keepsake's.
        for (tag, schema, problem, tables) in [
            (
                "foreign-version",
                "CREATE TABLE users (id INTEGER PRIMARY KEY)",
                "no sessions table",
                ["users"],
            ),
            (
                "foreign-sessions",
                "CREATE TABLE sessions (id TEXT PRIMARY KEY, blob BLOB)",
                "lacks the columns data,",
                ["sessions"],
            ),
        ] {
            let db = TempDb::new(tag);
            let conn = raw(&db);
            conn.execute_batch(schema).unwrap();
            conn.pragma_update(None, "user_version", i64::from(SqliteStore::SCHEMA_VERSION))
                .unwrap();
            drop(conn);
            for migrating in [true, false] {
                let err = SqliteStore::builder(&db.0)
                    .migrate(migrating)
                    .open()
                    .await
                    .unwrap_err();
                assert_eq!(err.kind(), StoreErrorKind::Unavailable);
                let text = err.to_string();
                assert!(text.contains("not a keepsake session database"), "{text}");
                assert!(text.contains(problem), "{text}");
            }
            // Nothing was created.
            let found: Vec<String> = raw(&db)
                .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
                .unwrap()
                .query_map([], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(found, tables, "{tag}");
        }
    }

    #[tokio::test]
    async fn a_path_is_never_read_as_an_sqlite_uri() {
        // Read as a URI, this is a private in-memory database per
        // connection: writes would succeed and reads fail. As a file path,
        // it is `./file:/.../m.db?mode=memory`, in a directory `file:` that
        // does not exist.
        assert!(
            !Path::new("file:").exists(),
            "a directory `file:` in the way"
        );
        let uri = format!(
            "file:{}?mode=memory",
            std::env::temp_dir()
                .join(format!("keepsake-uri-{}.db", Id::random()))
                .display()
        );
        let err = SqliteStore::builder(&uri)
            .connections(2)
            .open()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
        // Relative paths SQLite would read specially get a `./`.
        assert_eq!(
            sqlite_path(Path::new("file::memory:")),
            Path::new("./file::memory:")
        );
        assert_eq!(sqlite_path(Path::new(":memory:")), Path::new("./:memory:"));
        assert_eq!(sqlite_path(Path::new("a/s.db")), Path::new("./a/s.db"));
        assert_eq!(sqlite_path(Path::new("/a/s.db")), Path::new("/a/s.db"));
    }

    /// Finding 7: after a large purge the write-ahead log is cut back to
    /// 64 MiB at the next checkpoint, on every connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_write_ahead_log_is_kept_small() {
        let db = TempDb::new("journal-limit");
        let store = SqliteStore::builder(&db.0)
            .connections(2)
            .open()
            .await
            .unwrap();
        let memory = SqliteStore::open_in_memory().unwrap();
        for (store, access) in [
            (&store, Access::Read),
            (&store, Access::Write),
            (&memory, Access::Read),
        ] {
            let limit: i64 = store
                .run(access, |conn| {
                    conn.pragma_query_value(None, "journal_size_limit", |row| row.get(0))
                        .map_err(|err| sql_error("pragma", err))
                })
                .await
                .unwrap();
            assert_eq!(limit, 64 * 1024 * 1024, "{access:?}");
        }
    }

    #[tokio::test]
    async fn debug_shows_no_data() {
        let store = SqliteStore::open_in_memory().unwrap();
        let text = format!("{store:?}");
        assert!(text.contains("connections: 1"), "{text}");
        assert!(text.contains("path: None"), "{text}");
    }
}
