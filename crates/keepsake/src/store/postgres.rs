//! The PostgreSQL store: [`PostgresStore`], built with
//! [`PostgresStoreBuilder`] (feature `postgres`).
//!
//! See [`PostgresStore`] for the schema, the SQL and how expiry works.
//!
//! # Example
//!
//! ```no_run
//! use keepsake::store::{Created, Id, PostgresStore, Record, SessionStore};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = PostgresStore::builder()
//!     .schema("app")
//!     .table("sessions")
//!     .pool_size(16)
//!     .connect("postgres://app@db.internal/app")
//!     .await?;
//! let purge = store.spawn_purge_task(std::time::Duration::from_secs(300));
//!
//! let record = Record::new(Id::random(), 1_000, Some(60), 3_600);
//! assert_eq!(store.create(&record).await?, Created::Created);
//! assert!(store.load(&record.id, 1_059).await?.is_some());
//! assert!(store.load(&record.id, 1_060).await?.is_none());
//! purge.abort();
//! # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
//! ```

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use deadpool_postgres::{
    Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime, TimeoutType,
};
use serde_json::Value;
use tokio_postgres::{NoTls, Row, Statement, types::ToSql};

use super::{
    Created, Data, Deleted, Id, Record, Saved, SessionStore, StoreError, StoreErrorKind, Touched,
};

/// The layout version this code writes and understands.
const SCHEMA_VERSION: i32 = 1;

/// Default schema.
const DEFAULT_SCHEMA: &str = "public";

/// Default table.
const DEFAULT_TABLE: &str = "keepsake_sessions";

/// Default maximum number of pooled connections.
const DEFAULT_POOL_SIZE: usize = 16;

/// Default wait for a pooled connection, and for a new connection.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Rows one purge statement deletes, so a large purge never holds many row
/// locks for long.
const PURGE_BATCH: i64 = 1_000;

/// The longest table name: index names add up to 13 characters
/// (`_deadline_idx`) and PostgreSQL truncates identifiers past 63.
pub(crate) const MAX_TABLE_LEN: usize = 63 - "_deadline_idx".len();

/// The table that records each session table's layout version, in the
/// same schema: no session table may take its name.
pub(crate) const VERSIONS_TABLE: &str = "keepsake_schema";

/// The longest schema name.
pub(crate) const MAX_SCHEMA_LEN: usize = 63;

/// The columns of a record, in the order [`decode`] reads them.
const COLUMNS: &str = "id, data::text, created_at, idle_timeout, idle_deadline, \
                       absolute_deadline, persistent, version, user_id";

/// A [`SessionStore`] in PostgreSQL, shared by every app server using the
/// same database. Cloning is cheap and shares the connection pool.
///
/// Sessions live in one table, shared by every app server that connects to
/// the database. Connections come from a [`deadpool_postgres`] pool (no TLS;
/// put the database on a private network or behind a TLS-terminating
/// proxy), and every operation is a single prepared statement (cached per
/// connection), so a request costs one round trip (two for a failed save).
/// After a connection attempt failed, the store opens one connection at a
/// time until one succeeds, so a server that hangs is not met with an
/// attempt per waiting request.
///
/// # Schema
///
/// [`connect`](PostgresStore::connect) (and the builder's `connect`) runs
/// [`migrate`](PostgresStore::migrate), which creates (if absent), in the
/// configured schema (default `public`), the table (default
/// `keepsake_sessions`):
///
/// ```sql
/// CREATE TABLE IF NOT EXISTS "public"."keepsake_sessions" (
///     id                TEXT PRIMARY KEY,   -- Id, 22 characters of base64url
///     data              JSONB NOT NULL,     -- the session data (see below)
///     created_at        BIGINT NOT NULL,    -- Unix seconds
///     idle_timeout      BIGINT NULL,        -- seconds, NULL: no idle limit
///     idle_deadline     BIGINT NULL,
///     absolute_deadline BIGINT NOT NULL,
///     deadline          BIGINT NOT NULL,    -- LEAST(idle_deadline, absolute_deadline)
///     persistent        BOOLEAN NOT NULL,
///     version           BIGINT NOT NULL,    -- bumped by every save
///     user_id           TEXT NULL           -- for "log out everywhere"
/// );
/// CREATE INDEX IF NOT EXISTS "keepsake_sessions_deadline_idx"
///     ON "public"."keepsake_sessions" (deadline);
/// CREATE INDEX IF NOT EXISTS "keepsake_sessions_user_id_idx"
///     ON "public"."keepsake_sessions" (user_id) WHERE user_id IS NOT NULL;
/// ```
///
/// The `deadline` index serves expiry ([`purge_expired`](SessionStore::purge_expired));
/// the partial `user_id` index serves [`list_user`](SessionStore::list_user)
/// and [`delete_user`](SessionStore::delete_user). A small
/// `keepsake_schema (table_name, version)` table in the same schema records
/// the layout version of each sessions table (currently 1). Migration runs in
/// one transaction under an advisory lock, so app servers starting together
/// do not race, and running it again changes nothing: a table recorded at
/// the current version is only read, never altered (see
/// [Database roles](#database-roles)). A table recorded with
/// a *newer* version (written by a later keepsake) is refused with a clear
/// error instead of being used with the wrong layout, whether migrating or
/// not. A table that is there but has no version recorded (made by hand, or
/// by something else) is adopted only if it has exactly the columns above
/// (names, types, nullability) with `id` as its primary key; any other is
/// refused with an error naming the differences, and no version is recorded
/// for it. Schema and table names
/// must match `[a-z_][a-z0-9_]*` (and are quoted besides), so they can never
/// inject SQL.
///
/// # Database roles
///
/// Creating the table needs `CREATE` on the schema (and on the database if
/// the schema does not exist yet); adopting a table made by hand (adding its
/// indexes) needs its ownership. Once the table is recorded at the current
/// version, migrating changes nothing and needs neither, so the app can run,
/// with migration on (the default, and what
/// [`StoreUrl::open`](crate::store::StoreUrl::open) does), as a role that
/// may only read and write rows. Have the table's owner (or a role that may
/// create it) open the store once with migration on, such as by starting
/// the app once with that role's URL or calling
/// [`migrate`](PostgresStore::migrate) as it; then give the app's role
/// (here `app`, for schema `public` and table `keepsake_sessions`):
///
/// ```sql
/// GRANT USAGE ON SCHEMA "public" TO app;
/// GRANT SELECT ON "public"."keepsake_schema" TO app;
/// GRANT SELECT, INSERT, UPDATE, DELETE ON "public"."keepsake_sessions" TO app;
/// ```
///
/// Opening without migration ([`migrate(false)`](PostgresStoreBuilder::migrate))
/// needs the same grants: it too reads the table's recorded version. A
/// role missing a privilege gets an error that names the statements to run.
///
/// Session data is stored as a JSONB object, so it can be inspected with
/// SQL. The exceptions are data JSONB cannot hold as it is: the character
/// U+0000, the float `-0.0` (JSONB keeps it as `0`) and whole floats from
/// `1e16` up (JSONB gives `1e16` back as the integer `10000000000000000`).
/// Data that contains any of these anywhere is stored as a JSONB *string*
/// holding the data's JSON text instead, so that it loads back exactly.
/// Reading accepts both forms.
///
/// # Why compare-and-set on `version`
///
/// Two requests of the same visitor can run at once (two tabs, a burst of
/// API calls). Each loads the record, changes it, and saves. A plain
/// `UPDATE` would let the slower one silently overwrite the other's write,
/// and an upsert could bring back a session that was deleted (logged out)
/// in between. So [`save`](SessionStore::save) is
///
/// ```sql
/// UPDATE ... SET ..., version = version + 1
/// WHERE id = $1 AND version = $2 AND deadline > $now
/// ```
///
/// PostgreSQL re-checks the `WHERE` clause on the newest row version after
/// waiting for a concurrent writer's lock, so of any number of saves of one
/// version exactly one matches; the others update nothing. When nothing was
/// updated, a second query tells [`Saved::Conflict`] (the row is there and
/// live) from [`Saved::Gone`] (deleted or expired). A save never inserts.
///
/// [`create`](SessionStore::create) is
/// `INSERT ... ON CONFLICT (id) DO UPDATE ... WHERE deadline <= $created_at`:
/// it replaces a row with the same id only if that row has expired at the
/// new record's creation time, and reports [`Created::Collision`] otherwise.
///
/// # Expiry
///
/// Every read and write compares `deadline` with the `now` it is given, so
/// an expired row behaves as absent at once, whether or not it has been
/// deleted yet. Nothing deletes expired rows by itself: call
/// [`purge_expired`](SessionStore::purge_expired) periodically (it deletes
/// in batches, oldest deadline first, skipping rows other transactions hold
/// locked), or let [`PostgresStore::spawn_purge_task`] do it. With several
/// app servers, running the purge on one or on all of them is equally safe.
///
/// Times are Unix seconds stored as `BIGINT`; values past `i64::MAX` (about
/// 292 billion years) are stored as `i64::MAX`.
///
/// # Logs
///
/// keepsake logs no session id or data, but `tokio-postgres` logs every
/// statement with its parameters (session ids and data among them) through
/// the `log` crate at DEBUG: keep the `tokio_postgres` target at `info` or
/// above where logs must not hold sessions.
///
/// # Example
///
/// ```no_run
/// use keepsake::store::{Id, PostgresStore, Record, Saved, SessionStore};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = PostgresStore::connect("postgres://postgres@127.0.0.1:5432/app").await?;
/// let mut record = Record::new(Id::random(), 1_000, Some(1_800), 86_400);
/// store.create(&record).await?;
/// record.data.insert("user".into(), "ada".into());
/// assert_eq!(store.save(&record, 1_001).await?, Saved::Saved { version: 1 });
/// assert_eq!(store.save(&record, 1_002).await?, Saved::Conflict);
/// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    sql: Arc<Sql>,
    /// How long a statement may take (the builder's `timeout`).
    timeout: Duration,
    /// How new connections are opened (see [`client`](Self::client)).
    opening: Arc<Opening>,
}

/// Whether the last connection attempt failed, and the turn attempts take
/// while it did.
#[derive(Debug)]
struct Opening {
    failing: AtomicBool,
    turn: Arc<tokio::sync::Semaphore>,
}

/// Options for a [`PostgresStore`]: schema, table, pool size, timeouts.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use keepsake::store::PostgresStore;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = PostgresStore::builder()
///     .schema("sessions")
///     .table("web")
///     .pool_size(32)
///     .timeout(Duration::from_secs(3))
///     .connect("postgres://app@db.internal/app")
///     .await?;
/// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct PostgresStoreBuilder {
    schema: String,
    table: String,
    pool_size: usize,
    timeout: Duration,
    migrate: bool,
}

impl Default for PostgresStoreBuilder {
    fn default() -> Self {
        Self {
            schema: DEFAULT_SCHEMA.to_owned(),
            table: DEFAULT_TABLE.to_owned(),
            pool_size: DEFAULT_POOL_SIZE,
            timeout: DEFAULT_TIMEOUT,
            migrate: true,
        }
    }
}

impl PostgresStoreBuilder {
    /// The schema holding the table (default `public`). It is created if it
    /// does not exist. Must match `[a-z_][a-z0-9_]*`, at most 63 characters.
    ///
    /// # Example
    ///
    /// ```
    /// let builder = keepsake::store::PostgresStore::builder().schema("sessions");
    /// # let _ = builder;
    /// ```
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The table name (default `keepsake_sessions`). Must match
    /// `[a-z_][a-z0-9_]*`, at most 51 characters (so index names fit).
    ///
    /// # Example
    ///
    /// ```
    /// let builder = keepsake::store::PostgresStore::builder().table("web_sessions");
    /// # let _ = builder;
    /// ```
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// The most connections the pool opens (default 16, at least 1).
    ///
    /// # Example
    ///
    /// ```
    /// let builder = keepsake::store::PostgresStore::builder().pool_size(4);
    /// # let _ = builder;
    /// ```
    pub fn pool_size(mut self, pool_size: usize) -> Self {
        self.pool_size = pool_size.max(1);
        self
    }

    /// How long an operation waits for a free pooled connection, for a new
    /// connection to be set up, and for a statement's answer or a whole
    /// [`migrate`](PostgresStore::migrate) (default 10 s). Past it the operation fails with [`StoreErrorKind::Timeout`]
    /// (a statement is then cancelled and its connection closed). The
    /// session layer's own store timeout (1 s by default) is usually the
    /// shorter; this one bounds calls made outside a request, such as
    /// [`purge_expired`](SessionStore::purge_expired) or the CLI's.
    ///
    /// # Example
    ///
    /// ```
    /// let builder = keepsake::store::PostgresStore::builder()
    ///     .timeout(std::time::Duration::from_secs(2));
    /// # let _ = builder;
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether [`connect`](Self::connect) and [`with_pool`](Self::with_pool)
    /// run [`PostgresStore::migrate`] (default `true`). A role that may not
    /// create tables can leave it on once the table has been migrated (see
    /// [Database roles](PostgresStore#database-roles)). Turned off, opening
    /// creates and changes nothing, but still checks the table if it is
    /// there: one recorded with a newer layout version is refused, and one
    /// with no version recorded (made by hand) must have keepsake's layout.
    /// A table that is not there yet is no error then; it must exist by the
    /// time the store is used.
    ///
    /// # Example
    ///
    /// ```
    /// let builder = keepsake::store::PostgresStore::builder().migrate(false);
    /// # let _ = builder;
    /// ```
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Builds a pool for `url` (a `postgres://` URL or a `key=value`
    /// connection string; no TLS: `sslmode=require` is refused, and the
    /// default `sslmode=prefer` connects without it), then migrates (unless turned off) or
    /// else checks the table as [`migrate`](Self::migrate) describes.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Unavailable`] for an invalid name, URL, an
    /// unreachable database, a failed migration or check (including a table
    /// written by a newer keepsake, a table of another layout, and a role
    /// missing a privilege: the message names the grants);
    /// [`StoreErrorKind::Timeout`] if no connection could be made, or the
    /// migration or check did not finish, in time.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = keepsake::store::PostgresStore::builder()
    ///     .connect("postgres://postgres@127.0.0.1:5432/app")
    ///     .await?;
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    pub async fn connect(self, url: &str) -> Result<PostgresStore, StoreError> {
        let pool = self.pool(url)?;
        self.with_pool(pool).await
    }

    /// A pool for `url` with this builder's size and timeouts.
    fn pool(&self, url: &str) -> Result<Pool, StoreError> {
        let config: tokio_postgres::Config = url.parse().map_err(|err| {
            StoreError::with_source(
                StoreErrorKind::Unavailable,
                "invalid PostgreSQL connection URL",
                err,
            )
        })?;
        // Refused here rather than on every connection attempt, where
        // tokio-postgres's "no TLS implementation configured" would be all
        // an operator sees.
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "sslmode=require: keepsake's PostgreSQL store connects without TLS; reach the \
                 server over a unix socket, a private network or a TLS-terminating proxy, \
                 with sslmode=disable",
            ));
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(self.pool_size)
            .wait_timeout(Some(self.timeout))
            .create_timeout(Some(self.timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|err| {
                StoreError::with_source(
                    StoreErrorKind::Unavailable,
                    "cannot build the PostgreSQL pool",
                    err,
                )
            })
    }

    /// A store over `pool`, its names checked but not the server.
    fn unchecked(&self, pool: Pool) -> Result<PostgresStore, StoreError> {
        check_name("schema", &self.schema, MAX_SCHEMA_LEN)?;
        check_name("table", &self.table, MAX_TABLE_LEN)?;
        if self.table == VERSIONS_TABLE {
            return Err(StoreError::new(
                StoreErrorKind::Unavailable,
                format!(
                    "invalid PostgreSQL table name {VERSIONS_TABLE:?}: keepsake keeps its \
                     layout versions in that table"
                ),
            ));
        }
        Ok(PostgresStore {
            pool,
            sql: Arc::new(Sql::new(&self.schema, &self.table)),
            timeout: self.timeout,
            opening: Arc::new(Opening {
                failing: AtomicBool::new(false),
                turn: Arc::new(tokio::sync::Semaphore::new(1)),
            }),
        })
    }

    /// Uses an existing pool (its own size and timeouts apply), then
    /// migrates (unless turned off) or else checks the table as
    /// [`migrate`](Self::migrate) describes.
    ///
    /// # Errors
    ///
    /// As for [`connect`](Self::connect).
    ///
    /// # Example
    ///
    /// ```no_run
    /// use deadpool_postgres::{Manager, Pool};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let config = "postgres://postgres@127.0.0.1:5432/app".parse().unwrap();
    /// let pool = Pool::builder(Manager::new(config, tokio_postgres::NoTls))
    ///     .max_size(8)
    ///     .build()
    ///     .unwrap();
    /// let store = keepsake::store::PostgresStore::builder().with_pool(pool).await?;
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    pub async fn with_pool(self, pool: Pool) -> Result<PostgresStore, StoreError> {
        let store = self.unchecked(pool)?;
        if self.migrate {
            store.migrate().await?;
        } else {
            store.check(false).await?;
        }
        Ok(store)
    }
}

/// Rejects a schema or table name that is not `[a-z_][a-z0-9_]*`.
pub(crate) fn check_name(what: &str, name: &str, max_len: usize) -> Result<(), StoreError> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= max_len;
    if valid {
        Ok(())
    } else {
        Err(StoreError::new(
            StoreErrorKind::Unavailable,
            format!(
                "invalid PostgreSQL {what} name {name:?}: use lowercase ASCII letters, digits \
                 and underscores, not starting with a digit, at most {max_len} characters"
            ),
        ))
    }
}

/// The SQL text of every statement, for one schema and table.
#[derive(Debug)]
struct Sql {
    schema: String,
    table: String,
    /// `"schema"."keepsake_schema"`.
    versions: String,
    /// The migration, after the version check.
    create_table: String,
    create: String,
    load: String,
    save: String,
    save_check: String,
    touch: String,
    delete: String,
    delete_if_version: String,
    delete_user: String,
    list_user: String,
    purge: String,
}

impl Sql {
    /// Statements for `schema` and `table`, both already checked.
    fn new(schema: &str, table: &str) -> Self {
        let t = format!("\"{schema}\".\"{table}\"");
        Self {
            schema: schema.to_owned(),
            table: table.to_owned(),
            versions: format!("\"{schema}\".\"{VERSIONS_TABLE}\""),
            create_table: format!(
                "CREATE TABLE IF NOT EXISTS {t} (
                    id TEXT PRIMARY KEY,
                    data JSONB NOT NULL,
                    created_at BIGINT NOT NULL,
                    idle_timeout BIGINT NULL,
                    idle_deadline BIGINT NULL,
                    absolute_deadline BIGINT NOT NULL,
                    deadline BIGINT NOT NULL,
                    persistent BOOLEAN NOT NULL,
                    version BIGINT NOT NULL,
                    user_id TEXT NULL
                );
                CREATE INDEX IF NOT EXISTS \"{table}_deadline_idx\" ON {t} (deadline);
                CREATE INDEX IF NOT EXISTS \"{table}_user_id_idx\" ON {t} (user_id)
                    WHERE user_id IS NOT NULL;"
            ),
            // $3 (created_at) is the clock: a row with the same id is replaced
            // only if it has expired by the time the new one is created.
            create: format!(
                "INSERT INTO {t} AS s (id, data, created_at, idle_timeout, idle_deadline, \
                 absolute_deadline, deadline, persistent, version, user_id) \
                 VALUES ($1, $2::text::jsonb, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data, \
                 created_at = EXCLUDED.created_at, idle_timeout = EXCLUDED.idle_timeout, \
                 idle_deadline = EXCLUDED.idle_deadline, \
                 absolute_deadline = EXCLUDED.absolute_deadline, deadline = EXCLUDED.deadline, \
                 persistent = EXCLUDED.persistent, version = EXCLUDED.version, \
                 user_id = EXCLUDED.user_id \
                 WHERE s.deadline <= $3"
            ),
            load: format!("SELECT {COLUMNS} FROM {t} WHERE id = $1 AND deadline > $2"),
            save: format!(
                "UPDATE {t} SET data = $3::text::jsonb, created_at = $4, idle_timeout = $5, \
                 idle_deadline = $6, absolute_deadline = $7, deadline = $8, persistent = $9, \
                 user_id = $10, version = version + 1 \
                 WHERE id = $1 AND version = $2 AND deadline > $11 \
                 RETURNING version"
            ),
            save_check: format!(
                "SELECT EXISTS (SELECT 1 FROM {t} WHERE id = $1 AND deadline > $2)"
            ),
            touch: format!(
                "UPDATE {t} SET idle_deadline = LEAST($2, absolute_deadline), \
                 deadline = LEAST($2, absolute_deadline) \
                 WHERE id = $1 AND deadline > $3 AND version = $4"
            ),
            delete: format!("DELETE FROM {t} WHERE id = $1"),
            // The outer SELECT sees the table as it was before the DELETE:
            // a row that exists but was not deleted has another version.
            delete_if_version: format!(
                "WITH d AS (DELETE FROM {t} WHERE id = $1 AND version = $2 RETURNING 1) \
                 SELECT EXISTS (SELECT 1 FROM d), EXISTS (SELECT 1 FROM {t} WHERE id = $1)"
            ),
            delete_user: format!("DELETE FROM {t} WHERE user_id = $1"),
            list_user: format!(
                "SELECT {COLUMNS} FROM {t} WHERE user_id = $1 AND deadline > $2 \
                 ORDER BY created_at, id"
            ),
            purge: format!(
                "WITH doomed AS (SELECT id FROM {t} WHERE deadline <= $1 \
                 ORDER BY deadline LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 DELETE FROM {t} AS s USING doomed WHERE s.id = doomed.id"
            ),
        }
    }
}

/// Maps a driver error to [`StoreErrorKind::Unavailable`], saying what
/// kind of failure it was: the server's refusal by its SQLSTATE (its own
/// words stay in the source, as they may quote a row), or a lost
/// connection.
fn unavailable(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |err| {
        let message = match err.code() {
            Some(code) => format!(
                "{context}: {} (SQLSTATE {})",
                sqlstate_text(code.code()),
                code.code()
            ),
            None if err.is_closed() => {
                format!("{context}: the connection to the PostgreSQL server was lost")
            }
            None => context.to_owned(),
        };
        StoreError::with_source(StoreErrorKind::Unavailable, message, err)
    }
}

/// A few words on an SQLSTATE: the condition's name for the usual ones,
/// else its class's.
fn sqlstate_text(code: &str) -> &'static str {
    match code {
        "42501" => "insufficient privilege",
        "42P01" => "undefined table",
        "42703" => "undefined column",
        "42804" => "datatype mismatch",
        "3F000" => "invalid schema name",
        "25006" => "read-only SQL transaction",
        "40001" => "serialization failure",
        "40P01" => "deadlock detected",
        "53300" => "too many connections",
        "57014" => "statement canceled",
        "57P01" => "the server is shutting down",
        _ => match code.get(..2) {
            Some("08") => "connection exception",
            Some("22") => "data exception",
            Some("23") => "integrity constraint violation",
            Some("25") => "invalid transaction state",
            Some("28") => "invalid authorization",
            Some("3D") => "invalid database name",
            Some("40") => "transaction rollback",
            Some("42") => "syntax error or access rule violation",
            Some("53") => "insufficient resources",
            Some("54") => "program limit exceeded",
            Some("55") => "object not in prerequisite state",
            Some("57") => "operator intervention",
            Some("58") => "system error",
            Some("XX") => "internal error",
            _ => "the statement failed",
        },
    }
}

/// Whether `err` is the server's "insufficient privilege".
fn is_privilege_error(err: &tokio_postgres::Error) -> bool {
    err.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
}

/// `name` as a quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The columns keepsake creates, in order: name, type (as PostgreSQL's
/// `format_type` names it) and whether it may be NULL. Kept in step with
/// [`Sql::new`]'s `CREATE TABLE`.
const LAYOUT: [(&str, &str, bool); 10] = [
    ("id", "text", false),
    ("data", "jsonb", false),
    ("created_at", "bigint", false),
    ("idle_timeout", "bigint", true),
    ("idle_deadline", "bigint", true),
    ("absolute_deadline", "bigint", false),
    ("deadline", "bigint", false),
    ("persistent", "boolean", false),
    ("version", "bigint", false),
    ("user_id", "text", true),
];

/// A column of an existing table, as the catalogs describe it.
#[derive(Debug)]
struct Column {
    name: String,
    /// `format_type` of its type and modifier: `bigint`, `integer`,
    /// `character varying(40)`.
    ty: String,
    not_null: bool,
    has_default: bool,
    /// Whether the primary key is this column alone.
    primary_key: bool,
}

/// How `columns` differ from [`LAYOUT`]: one phrase per difference, none
/// if keepsake can use the table. A further column is fine if keepsake's
/// inserts (which leave it out) can fill it: it allows NULL or has a
/// default.
fn layout_problems(columns: &[Column]) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, ty, nullable) in LAYOUT {
        let Some(column) = columns.iter().find(|c| c.name == name) else {
            problems.push(format!("column {name} is missing"));
            continue;
        };
        if column.ty != ty {
            problems.push(format!("column {name} is {}, expected {ty}", column.ty));
        }
        if column.not_null == nullable {
            problems.push(if nullable {
                format!("column {name} is NOT NULL, expected it to allow NULL")
            } else {
                format!("column {name} allows NULL, expected NOT NULL")
            });
        }
        if name == "id" && !column.primary_key {
            problems.push("column id is not the primary key (alone)".to_owned());
        }
    }
    for column in columns {
        let ours = LAYOUT.iter().any(|(name, ..)| *name == column.name);
        if !ours && column.not_null && !column.has_default {
            problems.push(format!(
                "column {:?} is NOT NULL without a default, and keepsake does not write it",
                column.name
            ));
        }
    }
    problems
}

/// What the catalogs say about a session table and its schema (readable
/// by any role, whatever its privileges).
#[derive(Debug)]
struct Found {
    /// The role connected (`current_user`), for error messages.
    role: String,
    /// Whether the schema exists.
    schema: bool,
    /// `pg_class.relkind` of the relation with the table's name, if any.
    kind: Option<String>,
    /// Whether the `keepsake_schema` table exists.
    versions: bool,
    /// The version `keepsake_schema` records for the table, if it does.
    recorded: Option<i32>,
}

impl Found {
    /// Whether the session table exists.
    fn table(&self) -> bool {
        self.kind.is_some()
    }

    /// Whether the table exists and is recorded at this keepsake's version.
    fn current(&self) -> bool {
        self.table() && self.recorded == Some(SCHEMA_VERSION)
    }
}

/// What a relation of `pg_class.relkind` `kind` is, for messages.
fn relation_kind(kind: &str) -> &'static str {
    match kind {
        "v" => "a view",
        "m" => "a materialized view",
        "i" | "I" => "an index",
        "S" => "a sequence",
        "f" => "a foreign table",
        "c" => "a composite type",
        _ => "a relation of another kind",
    }
}

/// A [`StoreErrorKind::Unavailable`] error for an answer of the catalogs
/// that does not have the expected types.
fn bad_catalog(err: tokio_postgres::Error) -> StoreError {
    StoreError::with_source(
        StoreErrorKind::Unavailable,
        "unexpected answer from the PostgreSQL catalogs",
        err,
    )
}

impl Sql {
    /// `"schema"."table"`.
    fn name(&self) -> String {
        format!("\"{}\".\"{}\"", self.schema, self.table)
    }

    /// The grants a role needs to use the table once it is migrated.
    fn grants(&self, role: &str) -> String {
        let role = ident(role);
        format!(
            "GRANT USAGE ON SCHEMA \"{schema}\" TO {role}; \
             GRANT SELECT ON {versions} TO {role}; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {role}",
            schema = self.schema,
            versions = self.versions,
            table = self.name(),
        )
    }

    /// Reads what the catalogs say about the table and its recorded
    /// version, refusing a relation that is not a table and a version newer
    /// than this keepsake's. Changes nothing, and needs no privilege but
    /// reading `keepsake_schema` (when it exists).
    async fn find(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        migrating: bool,
        context: &'static str,
    ) -> Result<Found, StoreError> {
        let row = tx
            .query_one(
                "SELECT current_user::text, \
                 EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1), \
                 (SELECT c.relkind::text FROM pg_class c \
                  JOIN pg_namespace n ON n.oid = c.relnamespace \
                  WHERE n.nspname = $1 AND c.relname = $2), \
                 EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                  WHERE n.nspname = $1 AND c.relname = $3 AND c.relkind IN ('r', 'p'))",
                &[&self.schema, &self.table, &VERSIONS_TABLE],
            )
            .await
            .map_err(unavailable(context))?;
        let mut found = Found {
            role: row.try_get(0).map_err(bad_catalog)?,
            schema: row.try_get(1).map_err(bad_catalog)?,
            kind: row.try_get(2).map_err(bad_catalog)?,
            versions: row.try_get(3).map_err(bad_catalog)?,
            recorded: None,
        };
        if let Some(kind) = found.kind.as_deref()
            && !matches!(kind, "r" | "p")
        {
            return Err(StoreError::new(
                StoreErrorKind::Unavailable,
                format!(
                    "{} is {}, not a table: keepsake keeps sessions in a table of its own; \
                     give keepsake another table name",
                    self.name(),
                    relation_kind(kind)
                ),
            ));
        }
        if found.versions {
            let row = tx
                .query_opt(
                    &format!(
                        "SELECT version FROM {} WHERE table_name = $1",
                        self.versions
                    ),
                    &[&self.table],
                )
                .await
                .map_err(self.denied(&found, migrating, context))?;
            found.recorded = row
                .map(|row| row.try_get::<_, i32>(0))
                .transpose()
                .map_err(|err| {
                    StoreError::with_source(
                        StoreErrorKind::Unavailable,
                        format!(
                            "{} is not keepsake's: its version is not an integer",
                            self.versions
                        ),
                        err,
                    )
                })?;
        }
        if let Some(version) = found.recorded.filter(|&v| v > SCHEMA_VERSION) {
            return Err(StoreError::new(
                StoreErrorKind::Unavailable,
                format!(
                    "session table {} has schema version {version}, newer than version \
                     {SCHEMA_VERSION} that this keepsake understands; upgrade keepsake",
                    self.name()
                ),
            ));
        }
        Ok(found)
    }

    /// Fails unless the existing table has keepsake's layout ([`LAYOUT`],
    /// with `id` the primary key), naming every difference.
    async fn check_layout(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        context: &'static str,
    ) -> Result<(), StoreError> {
        let rows = tx
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                 a.atthasdef, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid \
                  AND i.indisprimary AND i.indnatts = 1 AND i.indkey[0] = a.attnum) \
                 FROM pg_attribute a \
                 JOIN pg_class c ON c.oid = a.attrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 \
                 AND NOT a.attisdropped ORDER BY a.attnum",
                &[&self.schema, &self.table],
            )
            .await
            .map_err(unavailable(context))?;
        let columns = rows
            .iter()
            .map(|row| {
                Ok(Column {
                    name: row.try_get(0)?,
                    ty: row.try_get(1)?,
                    not_null: row.try_get(2)?,
                    has_default: row.try_get(3)?,
                    primary_key: row.try_get(4)?,
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()
            .map_err(bad_catalog)?;
        let problems = layout_problems(&columns);
        if problems.is_empty() {
            return Ok(());
        }
        Err(StoreError::new(
            StoreErrorKind::Unavailable,
            format!(
                "table {} exists but is not a keepsake sessions table: {}; keepsake neither \
                 uses nor changes it: rename or drop it, or give keepsake another table name",
                self.name(),
                problems.join("; ")
            ),
        ))
    }

    /// Maps a driver error, explaining a missing privilege: what to grant,
    /// and (when `migrating`) how else the table can be migrated.
    fn denied<'a>(
        &'a self,
        found: &'a Found,
        migrating: bool,
        context: &'static str,
    ) -> impl FnOnce(tokio_postgres::Error) -> StoreError + 'a {
        move |err| {
            if !is_privilege_error(&err) {
                return unavailable(context)(err);
            }
            let role = ident(&found.role);
            let grants = self.grants(&found.role);
            let message = if migrating {
                let let_it = if !found.schema {
                    format!(
                        "or let it create the schema: CREATE SCHEMA \"{}\" AUTHORIZATION {role}",
                        self.schema
                    )
                } else if found.table() {
                    format!(
                        "or make it the table's owner and let it create in the schema: \
                         ALTER TABLE {} OWNER TO {role}; GRANT USAGE, CREATE ON SCHEMA \"{}\" \
                         TO {role}",
                        self.name(),
                        self.schema
                    )
                } else {
                    format!(
                        "or let it create the table: GRANT USAGE, CREATE ON SCHEMA \"{}\" TO \
                         {role}",
                        self.schema
                    )
                };
                format!(
                    "{context}: role {role} lacks a privilege for the session table {table} \
                     (insufficient privilege, SQLSTATE 42501). Have the table's owner (or a \
                     role that may create it) migrate it once, by opening the store as that \
                     role with migration on (such as starting the app once with its URL), \
                     then give this role: {grants}; {let_it}",
                    table = self.name(),
                )
            } else {
                format!(
                    "{context}: role {role} may not read the session table {table} or its \
                     recorded version (insufficient privilege, SQLSTATE 42501); give it: \
                     {grants}",
                    table = self.name(),
                )
            };
            StoreError::with_source(StoreErrorKind::Unavailable, message, err)
        }
    }
}

/// A [`StoreErrorKind::Corrupt`] error.
fn corrupt(message: impl Into<String>) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, message)
}

/// A time or count as a `BIGINT` (clamped at `i64::MAX`).
fn to_db(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A `BIGINT` column back as a time or count.
fn from_db(value: i64, column: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(format!("negative {column} in a session row")))
}

/// The JSON text to store for `data`: the object itself, or, if it holds a
/// U+0000 (which JSONB refuses) or a float JSONB would change (see
/// [`jsonb_alters`]), a JSON string of its text.
fn encode_data(data: &Data) -> Result<String, StoreError> {
    let text = serde_json::to_string(data).map_err(|err| {
        StoreError::with_source(StoreErrorKind::Corrupt, "cannot encode session data", err)
    })?;
    let as_string = text.contains("\\u0000")
        || (may_hold_altered_float(&text) && data.values().any(jsonb_alters));
    if !as_string {
        return Ok(text);
    }
    serde_json::to_string(&Value::String(text)).map_err(|err| {
        StoreError::with_source(StoreErrorKind::Corrupt, "cannot encode session data", err)
    })
}

/// A cheap first look at the JSON text for a float [`jsonb_alters`]: a
/// `-0.0` or an exponent with no minus sign (`1e+16`). Only then is the data
/// walked (the text may hold these inside strings or keys).
fn may_hold_altered_float(text: &str) -> bool {
    text.contains("-0.0")
        || text
            .as_bytes()
            .windows(2)
            .any(|pair| pair[0] == b'e' && (pair[1] == b'+' || pair[1].is_ascii_digit()))
}

/// Whether `value` holds a float that JSONB gives back changed: it keeps
/// numbers as decimals, so `-0.0` loses its sign and a whole float written
/// with an exponent (serde_json does so from `1e16` up) comes back as an
/// integer.
fn jsonb_alters(value: &Value) -> bool {
    match value {
        Value::Number(n) if n.is_f64() => n
            .as_f64()
            .is_some_and(|f| (f == 0.0 && f.is_sign_negative()) || f.abs() >= 1e16),
        Value::Array(items) => items.iter().any(jsonb_alters),
        Value::Object(fields) => fields.values().any(jsonb_alters),
        _ => false,
    }
}

/// The session data from the `data` column's text: an object, or a string
/// holding an object's JSON text.
fn decode_data(text: &str) -> Result<Data, StoreError> {
    // Described, not quoted: serde_json's message quotes session data.
    let bad = |err: serde_json::Error| {
        let summary = super::payload::json_error_summary(&err);
        StoreError::new(
            StoreErrorKind::Corrupt,
            format!("bad session data: {summary}"),
        )
    };
    match serde_json::from_str::<Value>(text).map_err(bad)? {
        Value::Object(data) => Ok(data),
        Value::String(inner) => serde_json::from_str::<Data>(&inner).map_err(bad),
        _ => Err(corrupt("session data is not a JSON object")),
    }
}

/// A record from a row of [`COLUMNS`], its error naming the row's id.
fn decode(row: &Row) -> Result<Record, StoreError> {
    decode_row(row).map_err(|err| err.about(row.try_get::<_, &str>(0).unwrap_or_default()))
}

fn decode_row(row: &Row) -> Result<Record, StoreError> {
    fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
        row: &'a Row,
        index: usize,
    ) -> Result<T, StoreError> {
        row.try_get(index).map_err(|err| {
            StoreError::with_source(
                StoreErrorKind::Corrupt,
                "unexpected column in a session row",
                err,
            )
        })
    }
    let id: &str = get(row, 0)?;
    let id = id
        .parse::<Id>()
        .map_err(|err| StoreError::with_source(StoreErrorKind::Corrupt, "bad session id", err))?;
    let optional = |value: Option<i64>, column| value.map(|v| from_db(v, column)).transpose();
    Ok(Record {
        id,
        data: decode_data(get(row, 1)?)?,
        created_at: from_db(get(row, 2)?, "created_at")?,
        idle_timeout: optional(get(row, 3)?, "idle_timeout")?,
        idle_deadline: optional(get(row, 4)?, "idle_deadline")?,
        absolute_deadline: from_db(get(row, 5)?, "absolute_deadline")?,
        persistent: get(row, 6)?,
        version: from_db(get(row, 7)?, "version")?,
        user: get(row, 8)?,
    })
}

/// The values `create` and `save` write, as parameters.
struct Columns {
    data: String,
    created_at: i64,
    idle_timeout: Option<i64>,
    idle_deadline: Option<i64>,
    absolute_deadline: i64,
    deadline: i64,
    version: i64,
}

impl Columns {
    fn of(record: &Record) -> Result<Self, StoreError> {
        if record
            .user
            .as_deref()
            .is_some_and(|user| user.contains('\0'))
        {
            return Err(corrupt(
                "a session's user cannot contain U+0000 in PostgreSQL",
            ));
        }
        Ok(Self {
            data: encode_data(&record.data)?,
            created_at: to_db(record.created_at),
            idle_timeout: record.idle_timeout.map(to_db),
            idle_deadline: record.idle_deadline.map(to_db),
            absolute_deadline: to_db(record.absolute_deadline),
            deadline: to_db(record.deadline()),
            version: to_db(record.version),
        })
    }
}

impl PostgresStore {
    /// Connects with the default options (schema `public`, table
    /// `keepsake_sessions`, 16 connections, 10 s timeout) and migrates. Use
    /// [`builder`](Self::builder) for other options.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Unavailable`] for an invalid URL, an unreachable
    /// database or a failed migration (including a table written by a newer
    /// keepsake); [`StoreErrorKind::Timeout`] if no connection could be made
    /// in time.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = keepsake::store::PostgresStore::connect("postgres://postgres@127.0.0.1/app").await?;
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder().connect(url).await
    }

    /// Options for a store: schema, table, pool size.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = keepsake::store::PostgresStore::builder()
    ///     .table("sessions")
    ///     .connect("postgres://postgres@127.0.0.1/app")
    ///     .await?;
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    pub fn builder() -> PostgresStoreBuilder {
        PostgresStoreBuilder::default()
    }

    /// Fails unless the session table exists and may be used (for opening
    /// an existing store without migrating: [`StoreUrl::open_existing`]);
    /// see [`check`](Self::check).
    ///
    /// [`StoreUrl::open_existing`]: crate::store::StoreUrl::open_existing
    pub(crate) async fn check_table(&self) -> Result<(), StoreError> {
        self.check(true).await
    }

    /// Checks the table without changing anything, as opening without
    /// migration does: one recorded with a newer layout version is refused,
    /// and one with no version recorded must have keepsake's layout. A
    /// table that is not there is an error only if `required`.
    async fn check(&self, required: bool) -> Result<(), StoreError> {
        const CONTEXT: &str = "checking the session table failed";
        let sql = &self.sql;
        self.on_connection(async |client| {
            let tx = client.transaction().await.map_err(unavailable(CONTEXT))?;
            let found = sql.find(&tx, false, CONTEXT).await?;
            if !found.table() {
                if required {
                    return Err(StoreError::new(
                        StoreErrorKind::Unavailable,
                        format!("there is no session table {} in this database", sql.name()),
                    ));
                }
            } else if !found.current() {
                sql.check_layout(&tx, CONTEXT).await?;
            }
            tx.commit().await.map_err(unavailable(CONTEXT))
        })
        .await
    }

    /// Creates the table, its indexes and the `keepsake_schema` version
    /// table if they are absent (see [`PostgresStore`]). Idempotent,
    /// and safe to run from several processes at once. Run by
    /// [`connect`](Self::connect) unless turned off.
    ///
    /// A table recorded at the current version is only read: nothing is
    /// created, altered or locked, so a role that may only read and write
    /// rows can run it (see [Database roles](PostgresStore#database-roles)).
    /// A table that exists with no version recorded is adopted (its indexes
    /// added, its version recorded) only if its columns are keepsake's.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Unavailable`] if the database fails, the table
    /// is recorded with a newer layout version than this keepsake knows,
    /// an unrecorded table has another layout (the message names each
    /// difference), or the role lacks a privilege it needs (the message
    /// names the grants, and how else to migrate);
    /// [`StoreErrorKind::Timeout`] if the migration does not finish within
    /// the builder's [`timeout`](PostgresStoreBuilder::timeout) (a lock on
    /// the table held by another session, say), when it is rolled back.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = keepsake::store::PostgresStore::builder()
    ///     .migrate(false)
    ///     .connect("postgres://postgres@127.0.0.1/app")
    ///     .await?;
    /// store.migrate().await?;
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    pub async fn migrate(&self) -> Result<(), StoreError> {
        const CONTEXT: &str = "migrating the session table failed";
        let sql = &self.sql;
        self.on_connection(async |client| {
            let tx = client.transaction().await.map_err(unavailable(CONTEXT))?;
            // Usually the table is there at this version: then nothing is
            // changed or locked, and a role that may only read and write
            // rows migrates as well.
            if sql.find(&tx, true, CONTEXT).await?.current() {
                return tx.commit().await.map_err(unavailable(CONTEXT));
            }
            // One migration per schema at a time (concurrent CREATE ... IF NOT
            // EXISTS can fail on catalog unique indexes); then look again, as
            // another may just have migrated.
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))",
                &[&format!("keepsake:{}", sql.schema)],
            )
            .await
            .map_err(unavailable(CONTEXT))?;
            let found = sql.find(&tx, true, CONTEXT).await?;
            if found.current() {
                return tx.commit().await.map_err(unavailable(CONTEXT));
            }
            // A table keepsake has not recorded is adopted only if it has
            // keepsake's layout; otherwise nothing is changed.
            if found.table() {
                sql.check_layout(&tx, CONTEXT).await?;
            }
            if !found.schema {
                tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", sql.schema))
                    .await
                    .map_err(sql.denied(&found, true, CONTEXT))?;
            }
            if !found.versions {
                tx.batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {} (table_name TEXT PRIMARY KEY, version INTEGER NOT NULL)",
                    sql.versions
                ))
                .await
                .map_err(sql.denied(&found, true, CONTEXT))?;
            }
            tx.batch_execute(&sql.create_table)
                .await
                .map_err(sql.denied(&found, true, CONTEXT))?;
            tx.execute(
                &format!(
                    "INSERT INTO {0} (table_name, version) VALUES ($1, $2) \
                     ON CONFLICT (table_name) DO UPDATE SET version = EXCLUDED.version \
                     WHERE {0}.version < EXCLUDED.version",
                    sql.versions
                ),
                &[&sql.table, &SCHEMA_VERSION],
            )
            .await
            .map_err(sql.denied(&found, true, CONTEXT))?;
            tx.commit().await.map_err(unavailable(CONTEXT))
        })
        .await
    }

    /// Spawns a Tokio task that calls
    /// [`purge_expired`](SessionStore::purge_expired) with the current time
    /// now and then every `interval` (at least one second), logging
    /// failures with `tracing`. Abort the returned handle to stop it
    /// (dropping a `JoinHandle` leaves the task running; [`PurgeTask`],
    /// which works with every store, stops when dropped).
    ///
    /// [`PurgeTask`]: super::PurgeTask
    ///
    /// # Panics
    ///
    /// If called outside a Tokio runtime.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = keepsake::store::PostgresStore::connect("postgres://postgres@127.0.0.1/app").await?;
    /// let purge = store.spawn_purge_task(Duration::from_secs(600));
    /// // ... serve ...
    /// purge.abort();
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    pub fn spawn_purge_task(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        // The same loop as `PurgeTask`, whose handle also stops the task
        // when dropped; this one's `JoinHandle` must be aborted.
        super::admin::spawn_purge_loop(self.clone(), interval)
    }

    /// A pooled connection.
    ///
    /// A get that may open a connection (none idle, the pool not full) runs
    /// in a task of its own, to the pool's connect timeout, even if the
    /// request gives up first (a connection that arrives late joins the
    /// pool); so every attempt's outcome is seen. After an attempt failed,
    /// attempts are made one at a time until one succeeds. A server that
    /// hangs (frozen, or its machine gone) would otherwise receive an
    /// abandoned attempt per waiting request and timeout, over a hundred in
    /// a few seconds, all of which it must accept and start a backend for
    /// when it comes back, just when the waiting requests need it.
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        let status = self.pool.status();
        let got = if status.available > 0 || status.size >= status.max_size {
            // An idle connection, or a wait for one to come back.
            self.pool.get().await
        } else {
            let turn = if self.opening.failing.load(Ordering::Relaxed) {
                let turn = self.opening.turn.clone().acquire_owned();
                let turn = match self.pool.timeouts().wait {
                    Some(wait) => tokio::time::timeout(wait, turn).await.map_err(|_| {
                        StoreError::new(
                            StoreErrorKind::Timeout,
                            "no PostgreSQL connection: waited for another connection attempt",
                        )
                    })?,
                    None => turn.await,
                };
                Some(turn)
            } else {
                None
            };
            let (pool, opening) = (self.pool.clone(), self.opening.clone());
            tokio::spawn(async move {
                let got = pool.get().await;
                match &got {
                    // A new connection: the server takes connections again.
                    Ok(client) if deadpool_postgres::Object::metrics(client).recycle_count == 0 => {
                        opening.failing.store(false, Ordering::Relaxed);
                    }
                    Err(PoolError::Timeout(TimeoutType::Create) | PoolError::Backend(_)) => {
                        opening.failing.store(true, Ordering::Relaxed);
                    }
                    _ => {}
                }
                drop(turn);
                got
            })
            .await
            .map_err(|err| {
                StoreError::with_source(
                    StoreErrorKind::Unavailable,
                    "opening a PostgreSQL connection failed",
                    err,
                )
            })?
        };
        got.map_err(|err| {
            let kind = match err {
                PoolError::Timeout(_) => StoreErrorKind::Timeout,
                _ => StoreErrorKind::Unavailable,
            };
            StoreError::with_source(kind, "no PostgreSQL connection", err)
        })
    }

    /// Runs a cached prepared statement; the rows.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let run = async |client: &deadpool_postgres::Object, statement: &Statement| {
            client.query(statement, params).await
        };
        self.statement(sql, "a session query failed", run).await
    }

    /// Runs a cached prepared statement; how many rows it changed.
    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let run = async |client: &deadpool_postgres::Object, statement: &Statement| {
            client.execute(statement, params).await
        };
        self.statement(sql, "a session statement failed", run).await
    }

    /// Prepares `sql` (once per connection) and `run`s it on a pooled
    /// connection within the store's timeout.
    async fn statement<T>(
        &self,
        sql: &str,
        failed: &'static str,
        run: impl AsyncFnOnce(
            &deadpool_postgres::Object,
            &Statement,
        ) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, StoreError> {
        self.on_connection(async |client| {
            let statement = client
                .prepare_cached(sql)
                .await
                .map_err(unavailable("preparing a session statement failed"))?;
            run(client, &statement).await.map_err(unavailable(failed))
        })
        .await
    }

    /// Runs `work` on a pooled connection within the store's timeout. The
    /// connection goes back to the pool only if `work` finished.
    async fn on_connection<T>(
        &self,
        work: impl AsyncFnOnce(&mut deadpool_postgres::Object) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut busy = Busy(Some(self.client().await?));
        match tokio::time::timeout(self.timeout, work(busy.client())).await {
            Ok(answer) => {
                busy.done();
                answer
            }
            // `busy` is dropped: the connection is closed, the statement
            // cancelled.
            Err(_) => Err(StoreError::new(
                StoreErrorKind::Timeout,
                format!("no answer from PostgreSQL within {:?}", self.timeout),
            )),
        }
    }
}

/// A pooled connection while a statement runs on it. If the caller stops
/// waiting (its timeout) before the statement is done, the connection
/// must not go back to the pool: the statement still runs on it, and the
/// next request to get it would wait behind it (with a locked row or a
/// server that stopped answering, without end). So it is taken out of the
/// pool and closed, and the server is asked to cancel the statement (a
/// best effort, without TLS), which then takes no effect if it had not yet.
struct Busy(Option<deadpool_postgres::Object>);

impl Busy {
    fn client(&mut self) -> &mut deadpool_postgres::Object {
        self.0
            .as_mut()
            .unwrap_or_else(|| unreachable!("set until done or dropped"))
    }

    /// The statement finished: the connection goes back to the pool.
    fn done(mut self) {
        drop(self.0.take());
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let Some(client) = self.0.take() else {
            return;
        };
        let cancel = client.cancel_token();
        drop(deadpool_postgres::Object::take(client));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = cancel.cancel_query(NoTls).await;
            });
        }
        tracing::debug!("a PostgreSQL statement was abandoned; its connection is closed");
    }
}

/// A row count as `usize`.
fn count(rows: u64) -> usize {
    usize::try_from(rows).unwrap_or(usize::MAX)
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PostgresStore")
            .field("schema", &self.sql.schema)
            .field("table", &self.sql.table)
            .field("max_connections", &status.max_size)
            .field("connections", &status.size)
            .finish()
    }
}

impl SessionStore for PostgresStore {
    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        let c = Columns::of(record)?;
        let id = record.id.to_string();
        let changed = self
            .execute(
                &self.sql.create,
                &[
                    &id,
                    &c.data,
                    &c.created_at,
                    &c.idle_timeout,
                    &c.idle_deadline,
                    &c.absolute_deadline,
                    &c.deadline,
                    &record.persistent,
                    &c.version,
                    &record.user,
                ],
            )
            .await?;
        Ok(if changed == 0 {
            Created::Collision
        } else {
            Created::Created
        })
    }

    async fn load(&self, id: &Id, now: u64) -> Result<Option<Record>, StoreError> {
        let rows = self
            .query(&self.sql.load, &[&id.to_string(), &to_db(now)])
            .await?;
        rows.first().map(decode).transpose()
    }

    async fn save(&self, record: &Record, now: u64) -> Result<Saved, StoreError> {
        let c = Columns::of(record)?;
        let id = record.id.to_string();
        let now = to_db(now);
        let rows = self
            .query(
                &self.sql.save,
                &[
                    &id,
                    &c.version,
                    &c.data,
                    &c.created_at,
                    &c.idle_timeout,
                    &c.idle_deadline,
                    &c.absolute_deadline,
                    &c.deadline,
                    &record.persistent,
                    &record.user,
                    &now,
                ],
            )
            .await?;
        if let Some(row) = rows.first() {
            let version: i64 = row.try_get(0).map_err(|err| {
                StoreError::with_source(StoreErrorKind::Corrupt, "bad version column", err)
            })?;
            return Ok(Saved::Saved {
                version: from_db(version, "version")?,
            });
        }
        // Nothing written: the version differs (the row is live) or the row
        // is gone. Versions only grow, so this cannot turn into a match.
        let rows = self.query(&self.sql.save_check, &[&id, &now]).await?;
        let live = rows.first().is_some_and(|row| row.get::<_, bool>(0));
        Ok(if live { Saved::Conflict } else { Saved::Gone })
    }

    async fn touch(
        &self,
        id: &Id,
        version: u64,
        idle_deadline: u64,
        now: u64,
    ) -> Result<Touched, StoreError> {
        let id = id.to_string();
        let now = to_db(now);
        // A version beyond BIGINT matches no stored version.
        let expected = i64::try_from(version).ok();
        let changed = self
            .execute(
                &self.sql.touch,
                &[&id, &to_db(idle_deadline), &now, &expected],
            )
            .await?;
        if changed > 0 {
            return Ok(Touched::Touched);
        }
        // Nothing written: saved since (the row is live) or gone.
        let rows = self.query(&self.sql.save_check, &[&id, &now]).await?;
        let live = rows.first().is_some_and(|row| row.get::<_, bool>(0));
        Ok(if live {
            Touched::Outdated
        } else {
            Touched::Gone
        })
    }

    async fn delete(&self, id: &Id) -> Result<bool, StoreError> {
        Ok(self.execute(&self.sql.delete, &[&id.to_string()]).await? > 0)
    }

    async fn delete_if_version(&self, id: &Id, version: u64) -> Result<Deleted, StoreError> {
        // A version beyond BIGINT matches no stored version.
        let expected = i64::try_from(version).ok();
        let rows = self
            .query(&self.sql.delete_if_version, &[&id.to_string(), &expected])
            .await?;
        let flags = rows.first().map(|row| (row.try_get(0), row.try_get(1)));
        match flags {
            Some((Ok(true), _)) => Ok(Deleted::Deleted),
            Some((Ok(false), Ok(true))) => Ok(Deleted::Conflict),
            Some((Ok(false), Ok(false))) => Ok(Deleted::Gone),
            _ => Err(corrupt("unexpected answer to a compare-and-delete")),
        }
    }

    async fn delete_user(&self, user: &str) -> Result<usize, StoreError> {
        // PostgreSQL text cannot hold U+0000, so no stored user does.
        if user.contains('\0') {
            return Ok(0);
        }
        Ok(count(self.execute(&self.sql.delete_user, &[&user]).await?))
    }

    async fn list_user(&self, user: &str, now: u64) -> Result<Vec<Record>, StoreError> {
        Ok(StoreError::log_unreadable(
            self.list_user_skipping_unreadable(user, now).await?,
        ))
    }

    async fn purge_expired(&self, now: u64) -> Result<usize, StoreError> {
        let now = to_db(now);
        let mut purged = 0;
        loop {
            let batch = self.execute(&self.sql.purge, &[&now, &PURGE_BATCH]).await?;
            purged += count(batch);
            if batch < PURGE_BATCH.unsigned_abs() {
                return Ok(purged);
            }
        }
    }
}

// Administration (the `StoreAdmin` trait is in `admin.rs`).

use super::{Counts, Cursor, Page, PurgeStep, StoreAdmin};

/// Pages are in id order (the primary key's); the cursor is the last id of
/// the page. A purge step is one `DELETE` of up to `limit` expired rows,
/// oldest deadline first, skipping rows other transactions hold; it needs
/// no cursor.
// Administration of rows this store cannot read (a row another app or an
// old version wrote, say): `keepsake sessions` lists around them and
// revokes them by their stored id.
impl PostgresStore {
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
    /// As [`StoreAdmin::page`], except for unreadable rows.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use keepsake::store::{Id, PostgresStore, Record, SessionStore};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = PostgresStore::connect("postgres://postgres@127.0.0.1:5432/app").await?;
    /// store.create(&Record::new(Id::random(), 0, None, 60)).await?;
    /// let (page, unreadable) = store.page_skipping_unreadable(None, 100).await?;
    /// assert_eq!(page.records.len() + unreadable.len(), 1);
    /// for err in &unreadable {
    ///     assert!(store.delete_stored(err.session_id().unwrap_or_default()).await?);
    /// }
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    pub async fn page_skipping_unreadable(
        &self,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<(Page, Vec<StoreError>), StoreError> {
        let limit = limit.max(1);
        // Every id sorts after the empty string.
        let after = cursor.map_or("", Cursor::as_str);
        let sql = format!(
            "SELECT {COLUMNS} FROM \"{}\".\"{}\" WHERE id > $1 ORDER BY id LIMIT $2",
            self.sql.schema, self.sql.table
        );
        let sql_limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query(&sql, &[&after, &sql_limit]).await?;
        // The next page starts after the last row, readable or not.
        let next = match rows.last() {
            Some(row) if rows.len() == limit => {
                let id: &str = row.try_get(0).map_err(|err| {
                    StoreError::with_source(StoreErrorKind::Corrupt, "unreadable session id", err)
                })?;
                Some(Cursor::new(id))
            }
            _ => None,
        };
        let (records, unreadable) = super::split_readable(rows.iter().map(decode));
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
    /// ```no_run
    /// use keepsake::store::{Id, PostgresStore, Record, SessionStore};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = PostgresStore::connect("postgres://postgres@127.0.0.1:5432/app").await?;
    /// let mut record = Record::new(Id::random(), 0, None, 60);
    /// record.user = Some("alice".to_owned());
    /// store.create(&record).await?;
    /// let (records, unreadable) = store.list_user_skipping_unreadable("alice", 1).await?;
    /// assert_eq!(records.len() + unreadable.len(), 1);
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    pub async fn list_user_skipping_unreadable(
        &self,
        user: &str,
        now: u64,
    ) -> Result<(Vec<Record>, Vec<StoreError>), StoreError> {
        // PostgreSQL text cannot hold U+0000, so no stored user does.
        if user.contains('\0') {
            return Ok((Vec::new(), Vec::new()));
        }
        let rows = self
            .query(&self.sql.list_user, &[&user, &to_db(now)])
            .await?;
        Ok(super::split_readable(rows.iter().map(decode)))
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
    /// ```no_run
    /// use keepsake::store::PostgresStore;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = PostgresStore::connect("postgres://postgres@127.0.0.1:5432/app").await?;
    /// // A row an older app wrote, under an id keepsake would never make.
    /// assert!(!store.delete_stored("legacy-session-1").await?);
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    pub async fn delete_stored(&self, stored_id: &str) -> Result<bool, StoreError> {
        Ok(self.execute(&self.sql.delete, &[&stored_id]).await? > 0)
    }
}

impl StoreAdmin for PostgresStore {
    async fn page(&self, cursor: Option<&Cursor>, limit: usize) -> Result<Page, StoreError> {
        let (page, unreadable) = self.page_skipping_unreadable(cursor, limit).await?;
        match unreadable.into_iter().next() {
            Some(err) => Err(err),
            None => Ok(page),
        }
    }

    async fn count(&self, now: u64) -> Result<Counts, StoreError> {
        let sql = format!(
            "SELECT count(*), count(*) FILTER (WHERE deadline <= $1) FROM \"{}\".\"{}\"",
            self.sql.schema, self.sql.table
        );
        let rows = self.query(&sql, &[&to_db(now)]).await?;
        let row = rows
            .first()
            .ok_or_else(|| corrupt("count(*) returned no row"))?;
        let column = |index| {
            row.try_get::<_, i64>(index).map_err(|err| {
                StoreError::with_source(StoreErrorKind::Corrupt, "bad count column", err)
            })
        };
        Ok(Counts {
            total: from_db(column(0)?, "count")?,
            expired: from_db(column(1)?, "count")?,
        })
    }

    async fn purge_step(
        &self,
        now: u64,
        _cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<PurgeStep, StoreError> {
        let limit = limit.max(1);
        let sql_limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let purged = count(
            self.execute(&self.sql.purge, &[&to_db(now), &sql_limit])
                .await?,
        );
        Ok(PurgeStep {
            purged,
            next: (purged >= limit).then(|| Cursor::new("")),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use serde_json::json;

    use super::*;
    use crate::store::conformance;

    /// The test server's URL, or `None` (and a note) to skip.
    fn test_url() -> Option<String> {
        let url = std::env::var("KEEPSAKE_TEST_POSTGRES_URL").ok();
        if url.is_none() {
            eprintln!("skipping: KEEPSAKE_TEST_POSTGRES_URL is not set");
        }
        url
    }

    /// A schema name no other run uses.
    fn fresh_schema() -> String {
        let hex: String = Id::random()
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("keepsake_test_{hex}")
    }

    /// Runs `test` with the URL and a fresh schema, which is dropped
    /// afterwards even if the test panics.
    async fn with_schema<F, Fut>(test: F)
    where
        F: FnOnce(String, String) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(url) = test_url() else { return };
        let schema = fresh_schema();
        let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        let connection = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
            .await
            .unwrap();
        let outcome = tokio::spawn(test(url, schema.clone())).await;
        client
            .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .await
            .unwrap();
        drop(client);
        connection.await.unwrap().unwrap();
        if let Err(err) = outcome {
            std::panic::resume_unwind(err.into_panic());
        }
    }

    async fn store(url: &str, schema: &str) -> PostgresStore {
        PostgresStore::builder()
            .schema(schema)
            .pool_size(20)
            .connect(url)
            .await
            .unwrap()
    }

    /// A raw connection for poking at the table.
    async fn raw(url: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }

    fn record(now: u64, lifetime: u64) -> Record {
        let mut record = Record::new(Id::random(), now, Some(60), lifetime);
        record.data.insert("n".into(), json!(1));
        record
    }

    /// A store made on one runtime keeps working on another once the first
    /// has shut down (a store kept in a `static` for many `#[tokio::test]`s):
    /// the pooled connections of the first runtime are closed with it, and
    /// the pool opens new ones.
    #[test]
    fn a_store_outlives_the_runtime_it_was_made_on() {
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        let first = runtime();
        let made = first.block_on(async {
            let url = test_url()?;
            let schema = fresh_schema();
            raw(&url)
                .await
                .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
                .await
                .unwrap();
            let store = store(&url, &schema).await;
            let record = record(1_000, 3_600);
            store.create(&record).await.unwrap();
            assert_eq!(
                store.save(&record, 1_000).await.unwrap(),
                Saved::Saved { version: 1 }
            );
            Some((url, schema, store, record))
        });
        drop(first);
        let Some((url, schema, store, mut record)) = made else {
            return;
        };
        runtime().block_on(async move {
            record.version = 1;
            let outcome = async {
                let loaded = store.load(&record.id, 1_001).await?;
                assert_eq!(loaded.as_ref(), Some(&record));
                store.save(&record, 1_001).await
            }
            .await;
            raw(&url)
                .await
                .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                .await
                .unwrap();
            assert_eq!(outcome.unwrap(), Saved::Saved { version: 2 });
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn passes_the_conformance_suite() {
        with_schema(|url, schema| async move {
            let store = store(&url, &schema).await;
            conformance::run_all(&store).await;
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sixteen_tasks_saving_one_version_have_one_winner() {
        with_schema(|url, schema| async move {
            let store = store(&url, &schema).await;
            for round in 0..5_u64 {
                let mut record = record(1_000, 3_600);
                store.create(&record).await.unwrap();
                record.version = 0;
                let tasks: Vec<_> = (0..16)
                    .map(|i| {
                        let store = store.clone();
                        let mut mine = record.clone();
                        mine.data.insert("writer".into(), json!(i));
                        tokio::spawn(async move { store.save(&mine, 1_000).await.unwrap() })
                    })
                    .collect();
                let mut outcomes = Vec::new();
                for task in tasks {
                    outcomes.push(task.await.unwrap());
                }
                let winners = outcomes
                    .iter()
                    .filter(|o| **o == Saved::Saved { version: 1 })
                    .count();
                let conflicts = outcomes.iter().filter(|o| **o == Saved::Conflict).count();
                assert_eq!((winners, conflicts), (1, 15), "round {round}: {outcomes:?}");
                let loaded = store.load(&record.id, 1_000).await.unwrap().unwrap();
                assert_eq!(loaded.version, 1);
            }
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn migration_is_idempotent_and_refuses_newer_versions() {
        with_schema(|url, schema| async move {
            let first = store(&url, &schema).await;
            let record = record(1_000, 3_600);
            first.create(&record).await.unwrap();
            // Again, concurrently, and explicitly: nothing changes.
            let (a, b) = tokio::join!(store(&url, &schema), store(&url, &schema));
            a.migrate().await.unwrap();
            assert_eq!(b.load(&record.id, 1_000).await.unwrap(), Some(record));

            let client = raw(&url).await;
            let versions = client
                .query(
                    &format!("SELECT table_name, version FROM \"{schema}\".keepsake_schema"),
                    &[],
                )
                .await
                .unwrap();
            assert_eq!(versions.len(), 1);
            assert_eq!(versions[0].get::<_, &str>(0), "keepsake_sessions");
            assert_eq!(versions[0].get::<_, i32>(1), 1);

            // A second table in the same schema gets its own version row.
            let other = PostgresStore::builder()
                .schema(&schema)
                .table("other_sessions")
                .connect(&url)
                .await
                .unwrap();
            assert!(other.load(&Id::random(), 0).await.unwrap().is_none());

            client
                .execute(
                    &format!(
                        "UPDATE \"{schema}\".keepsake_schema SET version = 2 \
                         WHERE table_name = 'keepsake_sessions'"
                    ),
                    &[],
                )
                .await
                .unwrap();
            let err = PostgresStore::builder()
                .schema(&schema)
                .connect(&url)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Unavailable);
            assert!(err.to_string().contains("schema version 2"), "{err}");
            // Opening without migration, and as the CLI does, refuses it too.
            let err = PostgresStore::builder()
                .schema(&schema)
                .migrate(false)
                .connect(&url)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Unavailable);
            assert!(err.to_string().contains("schema version 2"), "{err}");
            let existing = crate::store::StoreUrl::parse(&format!("{url}?schema={schema}"))
                .unwrap()
                .open_existing()
                .await;
            let Err(crate::store::OpenError::Store { source, .. }) = existing else {
                panic!("opened a table of version 2: {existing:?}");
            };
            assert!(source.to_string().contains("schema version 2"), "{source}");
            // So does a store opened before the table was upgraded, when
            // it checks again.
            let err = first.check_table().await.unwrap_err();
            assert!(err.to_string().contains("schema version 2"), "{err}");
            // The other table, still at version 1, opens either way.
            other.check_table().await.unwrap();
            other.migrate().await.unwrap();
        })
        .await;
    }

    /// `url` with its user and password replaced.
    fn url_as(url: &str, user: &str, password: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        format!("{scheme}://{user}:{password}@{host}/{path}")
    }

    /// `url` with `?schema=` (or `&schema=`) added.
    fn with_schema_param(url: &str, schema: &str) -> String {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}schema={schema}")
    }

    /// Runs `test` with `count` login roles of its own, as (name, URL to
    /// connect as it), which are dropped afterwards even if the test
    /// panics. Each has a password too, for servers that ask for one.
    async fn with_roles<F, Fut>(url: &str, count: usize, test: F)
    where
        F: FnOnce(Vec<(String, String)>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let admin = raw(url).await;
        let password = fresh_schema();
        let base = fresh_schema();
        let roles: Vec<(String, String)> = (0..count)
            .map(|i| {
                let name = format!("{base}_r{i}");
                let role_url = url_as(url, &name, &password);
                (name, role_url)
            })
            .collect();
        for (name, _) in &roles {
            admin
                .batch_execute(&format!(
                    "CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'"
                ))
                .await
                .unwrap();
        }
        let outcome = tokio::spawn(test(roles.clone())).await;
        for (name, _) in &roles {
            admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                    &[name],
                )
                .await
                .unwrap();
            admin
                .batch_execute(&format!("DROP OWNED BY \"{name}\"; DROP ROLE \"{name}\""))
                .await
                .unwrap();
        }
        if let Err(err) = outcome {
            std::panic::resume_unwind(err.into_panic());
        }
    }

    /// The error of opening `url` (with `schema`) as the demo does.
    async fn open_error(url: &str, schema: &str) -> StoreError {
        let opened = crate::store::StoreUrl::parse(&with_schema_param(url, schema))
            .unwrap()
            .open()
            .await;
        match opened {
            Err(crate::store::OpenError::Store { source, .. }) => source,
            other => panic!("expected a store error, got {other:?}"),
        }
    }

    /// An app whose role may only read and write rows runs, with migration
    /// on (as `StoreUrl::open` does), on a table its owner migrated; a role
    /// missing a privilege is told what to grant, not that the server does
    /// not answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_role_that_may_only_read_and_write_rows_runs_on_a_migrated_table() {
        with_schema(|url, schema| async move {
            // The owner (here the test's superuser) migrates once.
            store(&url, &schema).await;
            let admin_url = url.clone();
            with_roles(&url, 2, |roles| async move {
                let (app, app_url) = roles[0].clone();
                let (bare, bare_url) = roles[1].clone();
                let grants = format!(
                    "GRANT USAGE ON SCHEMA \"{schema}\" TO \"{app}\"; \
                     GRANT SELECT ON \"{schema}\".\"keepsake_schema\" TO \"{app}\"; \
                     GRANT SELECT, INSERT, UPDATE, DELETE ON \
                     \"{schema}\".\"keepsake_sessions\" TO \"{app}\""
                );
                raw(&admin_url).await.batch_execute(&grants).await.unwrap();

                let store = crate::store::StoreUrl::parse(&with_schema_param(&app_url, &schema))
                    .unwrap()
                    .open()
                    .await
                    .unwrap();
                let mut record = record(1_000, 3_600);
                assert_eq!(store.create(&record).await.unwrap(), Created::Created);
                record.data.insert("n".into(), json!(2));
                assert_eq!(
                    store.save(&record, 1_001).await.unwrap(),
                    Saved::Saved { version: 1 }
                );
                assert_eq!(store.purge_expired(1_001).await.unwrap(), 0);
                assert!(store.delete(&record.id).await.unwrap());
                let migrating = PostgresStore::builder()
                    .schema(&schema)
                    .connect(&app_url)
                    .await
                    .unwrap();
                migrating.migrate().await.unwrap();
                PostgresStore::builder()
                    .schema(&schema)
                    .migrate(false)
                    .connect(&app_url)
                    .await
                    .unwrap()
                    .check_table()
                    .await
                    .unwrap();

                // A table it would have to create: it may not, and is told
                // the ways out.
                let err = PostgresStore::builder()
                    .schema(&schema)
                    .table("other_sessions")
                    .connect(&app_url)
                    .await
                    .unwrap_err();
                let text = err.to_string();
                assert_eq!(err.kind(), StoreErrorKind::Unavailable);
                assert!(text.contains("SQLSTATE 42501"), "{text}");
                assert!(
                    text.contains(&format!("GRANT USAGE, CREATE ON SCHEMA \"{schema}\"")),
                    "{text}"
                );
                assert!(text.contains("migrate it once"), "{text}");
                assert!(!text.contains("does not answer"), "{text}");

                // A role with no grants: the message names them all.
                let bare_grants = grants.replace(&app, &bare);
                let err = open_error(&bare_url, &schema).await;
                let text = err.to_string();
                assert_eq!(err.kind(), StoreErrorKind::Unavailable);
                assert!(text.contains(&bare_grants), "{text}");
                assert!(text.contains("SQLSTATE 42501"), "{text}");
                assert!(!text.contains("does not answer"), "{text}");
                let err = PostgresStore::builder()
                    .schema(&schema)
                    .migrate(false)
                    .connect(&bare_url)
                    .await
                    .unwrap_err();
                let text = err.to_string();
                assert!(
                    text.starts_with("session store unavailable: checking"),
                    "{text}"
                );
                assert!(text.contains(&bare_grants), "{text}");
                assert!(!text.contains("does not answer"), "{text}");
            })
            .await;
        })
        .await;
    }

    /// The documented table, without its indexes, as an admin may make it.
    fn documented_table(schema: &str, table: &str) -> String {
        format!(
            "CREATE TABLE \"{schema}\".\"{table}\" (
                id                TEXT PRIMARY KEY,
                data              JSONB NOT NULL,
                created_at        BIGINT NOT NULL,
                idle_timeout      BIGINT NULL,
                idle_deadline     BIGINT NULL,
                absolute_deadline BIGINT NOT NULL,
                deadline          BIGINT NOT NULL,
                persistent        BOOLEAN NOT NULL,
                version           BIGINT NOT NULL,
                user_id           TEXT NULL
            )"
        )
    }

    /// A table keepsake did not make is refused unless it has keepsake's
    /// layout, whether migrating or not, and is left as it was, with no
    /// version recorded for it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_table_of_another_layout_is_refused_and_left_alone() {
        with_schema(|url, schema| async move {
            let client = raw(&url).await;
            let documented = documented_table(&schema, "wrong_type");
            let wrong_type = documented.replace("created_at        BIGINT", "created_at INTEGER");
            assert_ne!(wrong_type, documented);
            client.batch_execute(&wrong_type).await.unwrap();
            client
                .batch_execute(&format!(
                    "CREATE TABLE \"{schema}\".missing (id TEXT PRIMARY KEY, data JSONB NOT NULL);
                     {};
                     {};
                     CREATE VIEW \"{schema}\".a_view AS SELECT 1 AS id",
                    documented_table(&schema, "no_key")
                        .replace("TEXT PRIMARY KEY", "TEXT NOT NULL"),
                    documented_table(&schema, "extra").replace(
                        "user_id           TEXT NULL",
                        "user_id TEXT NULL, tenant TEXT NOT NULL"
                    ),
                ))
                .await
                .unwrap();
            let cases = [
                (
                    "wrong_type",
                    "column created_at is integer, expected bigint",
                ),
                ("missing", "column created_at is missing"),
                ("no_key", "column id is not the primary key"),
                ("extra", "column \"tenant\" is NOT NULL without a default"),
                ("a_view", "is a view, not a table"),
            ];
            for (table, expected) in cases {
                for migrate in [true, false] {
                    let err = PostgresStore::builder()
                        .schema(&schema)
                        .table(table)
                        .migrate(migrate)
                        .connect(&url)
                        .await
                        .unwrap_err();
                    let text = err.to_string();
                    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{text}");
                    assert!(
                        text.contains(expected),
                        "{table}, migrate {migrate}: {text}"
                    );
                    assert!(
                        text.contains(&format!("\"{schema}\".\"{table}\"")),
                        "{table}: {text}"
                    );
                }
            }
            let err = open_error(&format!("{url}?table=missing"), &schema).await;
            assert!(
                err.to_string().contains("is not a keepsake sessions table"),
                "{err}"
            );
            // Nothing was created, recorded or changed.
            let untouched: (bool, i64, String) = client
                .query_one(
                    "SELECT to_regclass($1) IS NULL, \
                     (SELECT count(*) FROM pg_indexes WHERE schemaname = $2), \
                     format_type(atttypid, atttypmod) FROM pg_attribute \
                     WHERE attrelid = to_regclass($3) AND attname = 'created_at'",
                    &[
                        &format!("\"{schema}\".keepsake_schema"),
                        &schema,
                        &format!("\"{schema}\".wrong_type"),
                    ],
                )
                .await
                .map(|row| (row.get(0), row.get(1), row.get(2)))
                .unwrap();
            // Only the primary keys' indexes of wrong_type, missing and extra.
            assert_eq!(untouched, (true, 3, "integer".to_owned()));
        })
        .await;
    }

    /// A table made by hand with the documented layout is used without
    /// migration (no version recorded), and adopted by a migration: its
    /// indexes added and its version recorded.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_table_made_by_hand_with_the_documented_layout_is_adopted() {
        with_schema(|url, schema| async move {
            let client = raw(&url).await;
            client
                .batch_execute(&documented_table(&schema, DEFAULT_TABLE))
                .await
                .unwrap();
            let unmigrated = PostgresStore::builder()
                .schema(&schema)
                .migrate(false)
                .connect(&url)
                .await
                .unwrap();
            unmigrated.check_table().await.unwrap();
            let record = record(1_000, 3_600);
            assert_eq!(unmigrated.create(&record).await.unwrap(), Created::Created);
            let versions = format!("\"{schema}\".keepsake_schema");
            let recorded = client
                .query_one("SELECT to_regclass($1) IS NULL", &[&versions])
                .await
                .unwrap();
            assert!(
                recorded.get::<_, bool>(0),
                "nothing is recorded without migration"
            );

            let migrated = store(&url, &schema).await;
            assert_eq!(
                migrated.load(&record.id, 1_000).await.unwrap(),
                Some(record)
            );
            let version: i32 = client
                .query_one(&format!("SELECT version FROM {versions}"), &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(version, SCHEMA_VERSION);
            let indexes: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_indexes WHERE schemaname = $1",
                    &[&schema],
                )
                .await
                .unwrap()
                .get(0);
            // The primary key, deadline and user_id indexes; keepsake_schema's key.
            assert_eq!(indexes, 4);
        })
        .await;
    }

    /// A keepsake_schema of another shape is reported, not a panic.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_foreign_keepsake_schema_table_is_an_error() {
        with_schema(|url, schema| async move {
            raw(&url)
                .await
                .batch_execute(&format!(
                    "CREATE TABLE \"{schema}\".keepsake_schema (table_name TEXT, version TEXT);
                     INSERT INTO \"{schema}\".keepsake_schema VALUES ('keepsake_sessions', 'one')"
                ))
                .await
                .unwrap();
            let err = PostgresStore::builder()
                .schema(&schema)
                .connect(&url)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Unavailable);
            assert!(err.to_string().contains("keepsake_schema"), "{err}");
        })
        .await;
    }

    #[test]
    fn layout_differences_are_named() {
        let column = |name: &str, ty: &str, not_null: bool| Column {
            name: name.to_owned(),
            ty: ty.to_owned(),
            not_null,
            has_default: false,
            primary_key: name == "id",
        };
        let keepsake: Vec<Column> = LAYOUT
            .iter()
            .map(|(name, ty, nullable)| column(name, ty, !nullable))
            .collect();
        assert_eq!(layout_problems(&keepsake), Vec::<String>::new());
        let mut other = keepsake;
        other[2].ty = "integer".to_owned();
        other[3].not_null = true;
        other[5].not_null = false;
        other[0].primary_key = false;
        other.remove(9);
        other.push(column("note", "text", false));
        other.push(column("tag", "text", true));
        other.push(Column {
            has_default: true,
            ..column("tenant", "text", true)
        });
        assert_eq!(
            layout_problems(&other),
            [
                "column id is not the primary key (alone)",
                "column created_at is integer, expected bigint",
                "column idle_timeout is NOT NULL, expected it to allow NULL",
                "column absolute_deadline allows NULL, expected NOT NULL",
                "column user_id is missing",
                "column \"tag\" is NOT NULL without a default, and keepsake does not write it",
            ]
        );
    }

    /// Refused before any connection is tried, in either form of
    /// connection text; `disable` and the default are taken.
    #[tokio::test]
    async fn sslmode_require_is_refused_at_once() {
        for url in [
            "postgres://app@127.0.0.1:1/app?sslmode=require",
            "host=127.0.0.1 port=1 user=app sslmode=require",
        ] {
            let err = PostgresStore::builder().connect(url).await.unwrap_err();
            assert!(err.to_string().contains("without TLS"), "{err}");
        }
        for url in [
            "postgres://app@127.0.0.1:1/app?sslmode=disable",
            "postgres://app@127.0.0.1:1/app",
        ] {
            let err = PostgresStore::builder()
                .timeout(std::time::Duration::from_millis(200))
                .connect(url)
                .await
                .unwrap_err();
            assert!(!err.to_string().contains("TLS"), "{err}");
        }
    }

    #[test]
    fn sqlstates_are_named() {
        assert_eq!(sqlstate_text("42501"), "insufficient privilege");
        assert_eq!(
            sqlstate_text("42P99"),
            "syntax error or access rule violation"
        );
        assert_eq!(sqlstate_text("ZZ000"), "the statement failed");
        assert_eq!(sqlstate_text(""), "the statement failed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_table_has_the_documented_layout() {
        with_schema(|url, schema| async move {
            store(&url, &schema).await;
            let client = raw(&url).await;
            let columns: Vec<(String, String, String)> = client
                .query(
                    "SELECT column_name::text, data_type::text, is_nullable::text \
                     FROM information_schema.columns \
                     WHERE table_schema = $1 AND table_name = 'keepsake_sessions' \
                     ORDER BY ordinal_position",
                    &[&schema],
                )
                .await
                .unwrap()
                .iter()
                .map(|row| (row.get(0), row.get(1), row.get(2)))
                .collect();
            let expected = [
                ("id", "text", "NO"),
                ("data", "jsonb", "NO"),
                ("created_at", "bigint", "NO"),
                ("idle_timeout", "bigint", "YES"),
                ("idle_deadline", "bigint", "YES"),
                ("absolute_deadline", "bigint", "NO"),
                ("deadline", "bigint", "NO"),
                ("persistent", "boolean", "NO"),
                ("version", "bigint", "NO"),
                ("user_id", "text", "YES"),
            ];
            let expected: Vec<(String, String, String)> = expected
                .iter()
                .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
                .collect();
            assert_eq!(columns, expected);
            let indexes: Vec<String> = client
                .query(
                    "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 \
                     AND tablename = 'keepsake_sessions' ORDER BY indexname",
                    &[&schema],
                )
                .await
                .unwrap()
                .iter()
                .map(|row| row.get(0))
                .collect();
            assert_eq!(
                indexes,
                [
                    "keepsake_sessions_deadline_idx",
                    "keepsake_sessions_pkey",
                    "keepsake_sessions_user_id_idx"
                ]
            );
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn create_replaces_only_an_expired_row() {
        with_schema(|url, schema| async move {
            let store = store(&url, &schema).await;
            let old = record(0, 100); // idle deadline 60
            store.create(&old).await.unwrap();
            let early = Record::new(old.id, 59, None, 100);
            assert_eq!(store.create(&early).await.unwrap(), Created::Collision);
            let new = Record::new(old.id, 60, None, 100);
            assert_eq!(store.create(&new).await.unwrap(), Created::Created);
            assert_eq!(store.load(&old.id, 60).await.unwrap(), Some(new));
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn data_is_a_jsonb_object_except_with_nul() {
        with_schema(|url, schema| async move {
            let store = store(&url, &schema).await;
            let plain = record(1_000, 3_600);
            let mut nul = record(1_000, 3_600);
            nul.data.insert("k".into(), json!("a\u{0}b \\u0000"));
            store.create(&plain).await.unwrap();
            store.create(&nul).await.unwrap();
            let client = raw(&url).await;
            let kind = |id: Id| {
                let client = &client;
                let schema = &schema;
                async move {
                    client
                        .query_one(
                            &format!(
                                "SELECT jsonb_typeof(data) FROM \"{schema}\".keepsake_sessions \
                                 WHERE id = $1"
                            ),
                            &[&id.to_string()],
                        )
                        .await
                        .unwrap()
                        .get::<_, String>(0)
                }
            };
            assert_eq!(kind(plain.id).await, "object");
            assert_eq!(kind(nul.id).await, "string");
            assert_eq!(store.load(&nul.id, 1_000).await.unwrap(), Some(nul));
        })
        .await;
    }

    /// Another connection that holds the lock of row `id` until it runs
    /// `COMMIT`.
    async fn lock_row(url: &str, schema: &str, id: &Id) -> tokio_postgres::Client {
        let holder = raw(url).await;
        holder
            .batch_execute(&format!(
                "BEGIN; SELECT 1 FROM \"{schema}\".keepsake_sessions WHERE id = '{id}' FOR UPDATE"
            ))
            .await
            .unwrap();
        holder
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_statement_its_caller_gave_up_on_does_not_hold_up_the_next() {
        with_schema(|url, schema| async move {
            let store = PostgresStore::builder()
                .schema(&schema)
                .pool_size(1)
                .connect(&url)
                .await
                .unwrap();
            let mut locked = record(1_000, 3_600);
            let free = record(1_000, 3_600);
            store.create(&locked).await.unwrap();
            store.create(&free).await.unwrap();
            // Another client holds the row's lock.
            let holder = lock_row(&url, &schema, &locked.id).await;
            locked.data.insert("n".into(), json!(2));
            let save = tokio::time::timeout(Duration::from_millis(300), store.save(&locked, 1_000));
            assert!(save.await.is_err(), "the save waited for the lock");
            // The pool's one connection was not handed out again with the
            // abandoned statement on it.
            let load = tokio::time::timeout(Duration::from_secs(2), store.load(&free.id, 1_000));
            assert_eq!(load.await.expect("the load waited").unwrap(), Some(free));
            // The statement was cancelled: once the lock goes, it does not
            // take effect after all.
            tokio::time::sleep(Duration::from_millis(300)).await;
            holder.batch_execute("COMMIT").await.unwrap();
            let loaded = store.load(&locked.id, 1_000).await.unwrap().unwrap();
            assert_eq!((loaded.version, &loaded.data["n"]), (0, &json!(1)));
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_statement_times_out_by_itself() {
        with_schema(|url, schema| async move {
            let store = PostgresStore::builder()
                .schema(&schema)
                .timeout(Duration::from_millis(400))
                .connect(&url)
                .await
                .unwrap();
            let mut locked = record(1_000, 3_600);
            store.create(&locked).await.unwrap();
            let holder = lock_row(&url, &schema, &locked.id).await;
            locked.data.insert("n".into(), json!(2));
            // No timeout around the call: the store's own ends it.
            let err = store.save(&locked, 1_000).await.unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Timeout, "{err}");
            tokio::time::sleep(Duration::from_millis(300)).await;
            holder.batch_execute("COMMIT").await.unwrap();
            let loaded = store.load(&locked.id, 1_000).await.unwrap().unwrap();
            assert_eq!((loaded.version, &loaded.data["n"]), (0, &json!(1)));
        })
        .await;
    }

    /// A migration waiting on another's (its advisory lock) gives up at
    /// the builder's timeout, and so do a migration and a check of an
    /// existing table that wait to read its version (a lock on
    /// `keepsake_schema`); the connection is closed, so nothing waits on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn migrating_times_out_by_itself() {
        with_schema(|url, schema| async move {
            let builder = || {
                PostgresStore::builder()
                    .schema(&schema)
                    .timeout(Duration::from_millis(400))
            };
            let store = builder().connect(&url).await.unwrap();
            let holder = raw(&url).await;
            holder
                .execute(
                    "SELECT pg_advisory_lock(hashtext($1))",
                    &[&format!("keepsake:{schema}")],
                )
                .await
                .unwrap();
            // A table not migrated yet waits for the advisory lock.
            let err = builder().table("other").connect(&url).await.unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Timeout, "{err}");
            // A migrated one takes no lock, but waits to read its version.
            holder
                .batch_execute(&format!(
                    "BEGIN; LOCK TABLE \"{schema}\".keepsake_schema IN ACCESS EXCLUSIVE MODE"
                ))
                .await
                .unwrap();
            let err = builder().connect(&url).await.unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Timeout, "{err}");
            let err = store.migrate().await.unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Timeout, "{err}");
            let err = builder().migrate(false).connect(&url).await.unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Timeout, "{err}");
            let err = store.check_table().await.unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Timeout, "{err}");
            // The abandoned migrations and checks were cancelled: none waits
            // for a lock.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let waiting: i64 = holder
                .query_one(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND \
                     ((locktype = 'advisory' \
                       AND objid::bigint = hashtext($1)::bigint & 4294967295) \
                      OR relation = to_regclass($2))",
                    &[
                        &format!("keepsake:{schema}"),
                        &format!("\"{schema}\".keepsake_schema"),
                    ],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(waiting, 0);
            holder
                .batch_execute("COMMIT; SELECT pg_advisory_unlock_all()")
                .await
                .unwrap();
            store.migrate().await.unwrap();
            builder().table("other").connect(&url).await.unwrap();
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_user_with_nul_is_refused_clearly_and_found_nowhere() {
        with_schema(|url, schema| async move {
            let store = store(&url, &schema).await;
            let mut record = record(1_000, 3_600);
            record.user = Some("a\u{0}b".to_owned());
            let err = store.create(&record).await.unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err}");
            assert!(err.to_string().contains("U+0000"), "{err}");
            assert_eq!(store.list_user("a\u{0}b", 1_000).await.unwrap(), []);
            assert_eq!(store.delete_user("a\u{0}b").await.unwrap(), 0);
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_rows_are_corrupt() {
        with_schema(|url, schema| async move {
            let store = store(&url, &schema).await;
            let client = raw(&url).await;
            for (column, value) in [("data", "'[1, 2]'::jsonb"), ("version", "-1")] {
                let record = record(1_000, 3_600);
                store.create(&record).await.unwrap();
                client
                    .execute(
                        &format!(
                            "UPDATE \"{schema}\".keepsake_sessions SET {column} = {value} \
                             WHERE id = $1"
                        ),
                        &[&record.id.to_string()],
                    )
                    .await
                    .unwrap();
                let err = store.load(&record.id, 1_000).await.unwrap_err();
                assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{column}: {err}");
            }
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn purge_deletes_in_batches() {
        with_schema(|url, schema| async move {
            let store = store(&url, &schema).await;
            let client = raw(&url).await;
            let expired = PURGE_BATCH * 2 + 7;
            client
                .execute(
                    &format!(
                        "INSERT INTO \"{schema}\".keepsake_sessions \
                         SELECT 'id' || i, '{{}}', 0, NULL, NULL, 10, 10, false, 0, NULL \
                         FROM generate_series(1, $1::bigint) AS i"
                    ),
                    &[&expired],
                )
                .await
                .unwrap();
            let live = record(0, 3_600);
            store.create(&live).await.unwrap();
            assert_eq!(
                store.purge_expired(10).await.unwrap(),
                count(expired.unsigned_abs())
            );
            assert_eq!(store.purge_expired(10).await.unwrap(), 0);
            assert!(store.load(&live.id, 10).await.unwrap().is_some());
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spawned_purge_task_purges() {
        with_schema(|url, schema| async move {
            let store = store(&url, &schema).await;
            let expired = Record::new(Id::random(), 0, None, 10);
            store.create(&expired).await.unwrap();
            let purge = store.spawn_purge_task(Duration::from_secs(3_600));
            let client = raw(&url).await;
            let sql = format!("SELECT count(*) FROM \"{schema}\".keepsake_sessions");
            for _ in 0..100 {
                if client.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0) == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            purge.abort();
            assert_eq!(
                client.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0),
                0
            );
        })
        .await;
    }

    #[tokio::test]
    async fn invalid_names_are_refused() {
        for (schema, table) in [
            ("public", "Sessions"),
            ("public", "1sessions"),
            ("public", "a\"; DROP TABLE x; --"),
            ("", "sessions"),
            ("pub lic", "sessions"),
            ("public", &"t".repeat(MAX_TABLE_LEN + 1)),
            ("public", VERSIONS_TABLE),
        ] {
            // The names are checked before any connection is made.
            let err = PostgresStore::builder()
                .schema(schema)
                .table(table)
                .connect("postgres://nobody@127.0.0.1:1/none")
                .await
                .unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Unavailable);
            assert!(err.to_string().contains("invalid PostgreSQL"), "{err}");
        }
        assert!(check_name("table", "_ok_2", MAX_TABLE_LEN).is_ok());
        assert!(check_name("table", &"t".repeat(MAX_TABLE_LEN), MAX_TABLE_LEN).is_ok());
    }

    /// A listener that never accepts stands for a frozen server: the
    /// kernel completes each connection into its backlog, where the test
    /// counts them. After one attempt timed out, twenty requests at once
    /// make one attempt, not one each.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hanging_server_gets_one_connection_attempt_at_a_time() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let builder = PostgresStore::builder().timeout(Duration::from_millis(200));
        let pool = builder
            .pool(&format!("postgres://postgres@127.0.0.1:{port}/test"))
            .expect("pool");
        let store = builder.unchecked(pool).expect("store");
        let err = store.load(&Id::random(), 0).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Timeout, "{err}");
        let loads: Vec<_> = (0..20)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.load(&Id::random(), 0).await })
            })
            .collect();
        for load in loads {
            let err = load.await.expect("join").unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Timeout, "{err}");
        }
        listener.set_nonblocking(true).expect("non-blocking");
        let attempts = std::iter::from_fn(|| listener.accept().ok()).count();
        // The first load's, then one, and maybe a second when a waiter's
        // turn came just before its own deadline; without the turns it is
        // one per load, 21.
        assert!(
            (2..=3).contains(&attempts),
            "{attempts} connection attempts"
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable() {
        let err = PostgresStore::builder()
            .timeout(Duration::from_secs(5))
            .connect("postgres://nobody@127.0.0.1:1/none")
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.kind(),
                StoreErrorKind::Unavailable | StoreErrorKind::Timeout
            ),
            "{err}"
        );
        let err = PostgresStore::connect("not a url").await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Unavailable);
    }

    #[test]
    fn data_encoding_round_trips() {
        let mut data = Data::new();
        data.insert("k".into(), json!("a\u{0}b"));
        let text = encode_data(&data).unwrap();
        assert!(text.starts_with('"'), "{text}");
        assert_eq!(decode_data(&text).unwrap(), data);
        let plain: Data = serde_json::from_str(r#"{"a": [1, 2.5, null]}"#).unwrap();
        let text = encode_data(&plain).unwrap();
        assert!(text.starts_with('{'));
        assert_eq!(decode_data(&text).unwrap(), plain);
        for (float, string_form) in [(1e16, true), (-0.0, true), (1e-7, false), (1.5, false)] {
            let data: Data = [("f".to_owned(), json!(float))].into_iter().collect();
            let text = encode_data(&data).unwrap();
            assert_eq!(text.starts_with('"'), string_form, "{text}");
            assert_eq!(decode_data(&text).unwrap()["f"].as_f64(), Some(float));
        }
        assert!(decode_data("[1]").is_err());
        assert!(decode_data("\"[1]\"").is_err());
        assert_eq!(to_db(u64::MAX), i64::MAX);
        assert!(from_db(-1, "version").is_err());
    }
}
