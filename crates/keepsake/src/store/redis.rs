//! The Redis store: [`RedisStore`] (feature `redis`).
//!
//! Sessions live in Redis, so every app server behind a load balancer sees
//! the same sessions, and they survive app restarts and deploys.
//!
//! See [`RedisStore`] for the layout in Redis, the scripts, and why Redis
//! Cluster is not supported yet.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use keepsake::store::{Created, Id, Record, RedisStore, SessionStore};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = RedisStore::connect("redis://127.0.0.1:6379")
//!     .await?
//!     .with_prefix("myapp:sessions:")
//!     .with_command_timeout(Duration::from_millis(500));
//! let now = std::time::SystemTime::now()
//!     .duration_since(std::time::UNIX_EPOCH)
//!     .unwrap()
//!     .as_secs();
//! let record = Record::new(Id::random(), now, Some(1_800), 14 * 86_400);
//! assert_eq!(store.create(&record).await?, Created::Created);
//! assert!(store.load(&record.id, now + 1).await?.is_some());
//! # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
//! ```

mod batch;
mod cache;
mod link;

use std::{fmt, future::Future, sync::Arc, sync::LazyLock, time::Duration};

use redis::{Client, IntoConnectionInfo as _, ProtocolVersion, RedisError, Script};
use serde::{Deserialize, Serialize};

use self::{
    batch::{Job, Saves},
    cache::Cache,
    link::{Connection, Link},
};

use super::{
    Created, Data, Deleted, ID_TEXT_LEN, Id, Record, Saved, SessionStore, StoreError,
    StoreErrorKind, Touched,
};

/// The default key prefix.
const DEFAULT_PREFIX: &str = "keepsake:";

/// The default timeout of one Redis command.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// The format of the stored JSON; the scripts match it exactly.
const FORMAT: u32 = 1;

/// Keys `purge_expired` asks `SCAN` for per batch.
const SCAN_COUNT: usize = 256;

/// How long the local cache is trusted after Redis was last heard from on
/// the connection; past it, the next load asks Redis again.
const CACHE_TRUST: Duration = Duration::from_secs(1);

/// The latest time Redis accepts for `EXAT` that we use (9999-12-31); a
/// deadline past it gets no native expiry at all.
const MAX_EXPIRE_AT: u64 = 253_402_300_799;

/// A [`SessionStore`] in Redis: one JSON string per session with a native
/// expiry, a set per user, and one Lua script per write.
///
/// Cloning is cheap and shares the connection.
///
/// # The connection
///
/// The store talks to Redis through [redis-rs](https://docs.rs/redis), the
/// official Rust client, over one multiplexed RESP3 connection shared by
/// all clones: many requests share one TCP connection (pipelined, no pool
/// to size). When the connection breaks (Redis restarted, a proxy dropped
/// an idle connection, `CLIENT KILL`), the next command opens a new one, so
/// the app recovers without a restart. The requests in flight at the
/// moment of the break fail with [`StoreErrorKind::Unavailable`] (the
/// middleware answers 503); the next ones use the new connection. A load
/// (a read, safe to repeat) that finds the connection already closed, e.g.
/// by Redis's `timeout` while the app was idle, is sent once more on the
/// new connection, within the same command timeout, so an idle app does not
/// answer 503 to its first request.
///
/// Saves made while another save is on its way to Redis are sent together,
/// in one call of the `SAVE` script, each still its own compare-and-set
/// with its own answer (group commit: no timer, no waiting for a batch to
/// fill; a save sent alone goes at once).
///
/// By default the store keeps a local copy of the sessions it read or
/// wrote, which Redis invalidates when another connection changes them
/// (client tracking); see [`with_local_cache`](Self::with_local_cache) for
/// what that guarantees and what it costs.
///
/// The store runs on Tokio (with timers enabled, as `#[tokio::main]` does).
/// It may be made on one runtime and used on another after the first has
/// shut down (a store kept in a `static` for many `#[tokio::test]`s): its
/// connection and the task that sends its saves start again on the runtime
/// that uses them. It needs Redis 7.0 or later (it uses `SET ... EXAT` and
/// `EXPIREAT ... GT`), or a compatible server such as Valkey.
///
/// # Layout in Redis
///
/// With the default prefix `keepsake:`:
///
/// * `keepsake:session:<id>` — a string: the record as JSON, with a format
///   version, and a native Redis expiry (`EXAT`) at the record's deadline.
/// * `keepsake:user:<user>` — a set of the ids of the user's sessions, for
///   [`delete_user`](SessionStore::delete_user) and
///   [`list_user`](SessionStore::list_user). It expires once the last of its
///   sessions would have.
///
/// The JSON starts with a fixed header, written by this store in exactly
/// this order: `{"format":1,"version":V,"absolute_deadline":A,
/// "idle_deadline":I|null,"user_hex":"<hex>"|null,` followed by the rest of
/// the record (`id`, `created_at`, `idle_timeout`, `persistent`, `data`).
/// The Lua scripts read and rewrite the header with string patterns (and
/// compare numbers as decimal strings, exactly, with no float rounding) and
/// never decode or re-encode the session data. The user is hex-encoded so
/// a script can rebuild the user's set key from it without a JSON decoder.
/// A save of a session this process has a copy of sends the header it
/// expects Redis to hold; when Redis holds exactly that, the script has
/// nothing to parse or check before it writes.
///
/// # Expiry: Redis's clock *and* the app's
///
/// Every session key carries a native expiry (`EXAT`, `EXPIREAT`) at the
/// session's deadline, so Redis reclaims expired sessions by itself, going
/// by *Redis's* clock. The store *also* compares the deadline stored in the
/// value with the `now` it is given (the app's clock), inside the same
/// script that reads and writes. So a session ends at whichever comes
/// first: its deadline by the app's clock, or its deadline by Redis's
/// clock. With the clocks in step the two agree; when they are not:
///
/// * **Redis's clock behind the app's**: sessions end on time, by the
///   app's clock, and their keys stay in Redis, taking memory, for as long
///   as Redis's clock lags behind, unless
///   [`purge_expired`](SessionStore::purge_expired), which goes by the
///   `now` it is given, removes them first.
/// * **Redis's clock ahead of the app's** by some time *d*: every session
///   ends *d* early, however the app's clock and settings say it should
///   last. A session whose deadline is less than *d* away when it is
///   written (a 30-minute idle timeout with Redis an hour ahead) is gone
///   from Redis the moment it is written: other app servers never see it,
///   and a save of it finds it gone
///   ([`Saved::Gone`]: the request's changes are dropped and the visitor
///   starts a new session). The process that wrote it may meanwhile go on
///   reading its own copy from the [local cache](Self::with_local_cache),
///   since Redis sends no invalidation for a key that the same connection's
///   write expired, until the cache drops it (when Redis has not been heard
///   from on the connection for a second, when the connection closes, or
///   when the copy is pushed out), so the session can look live there and
///   ended everywhere else.
///
/// **Keep the clocks of the Redis host and of every app server in step
/// with NTP** (chrony, ntpd, systemd-timesyncd): a skew of seconds only
/// shifts when sessions end by that much, but a clock that is minutes or
/// hours off ends sessions early, or at once. The same holds for an app
/// clock far from the real time (a [`ManualClock`](crate::session::ManualClock)
/// in a test against a real Redis).
/// [`purge_expired`](SessionStore::purge_expired) is a cleanup: it removes
/// the sessions expired by `now` that Redis has not yet expired (all of
/// them while Redis's clock lags), and stale members of user sets.
///
/// # Commands per operation
///
/// Every operation but `purge_expired` is one Redis round trip: `load` is
/// one `GET`, or nothing when the local cache has the session; `create`,
/// `save`, `touch`, `delete`, `delete_user` and `list_user` are one
/// `EVALSHA` each of a small Lua script, which makes them atomic (the
/// compare-and-set of `save` cannot race), and concurrent saves share one.
/// With the cache, a `GET`, a `create` and a call of `SAVE` go right after
/// `CLIENT CACHING YES`, in the same write (so two commands, one round
/// trip), which tells Redis to track the keys they read: the `GET`'s, and
/// the key a script reads back after writing it. (A script that may write
/// a key reads it first with `GETEX`, a write command, which Redis does not
/// track: the write would end the tracking anyway.) Scripts are sent
/// with `EVALSHA`; after a Redis restart the first call finds the script
/// missing and loads it again (`SCRIPT LOAD`, then `EVALSHA`) by itself.
/// Each new connection also sends `CLIENT TRACKING ON OPTIN NOLOOP` once,
/// before its first read, when the cache is on.
///
/// # Redis Cluster
///
/// Redis Cluster is not supported by this store yet. The scripts touch keys
/// they compute themselves (a user's set, the sessions listed in it), which
/// a cluster only allows when all of them hash to the same slot. Supporting
/// it would need hash tags so that the keys one script touches share a
/// slot: `{<id>}` in a session's keys, the user index kept per slot or made
/// eventually consistent (updated by separate commands outside the
/// session's script), and `purge_expired` scanning every primary node.
///
/// # Errors
///
/// A command that gets no answer within the command timeout (1 s by
/// default) fails with [`StoreErrorKind::Timeout`]; a broken or refused
/// connection, or an error reply, with [`StoreErrorKind::Unavailable`]; a
/// stored value this store cannot read (or a session key holding another
/// type than a string), with [`StoreErrorKind::Corrupt`], for that session
/// only: saves sent to Redis in the same call as its save are not affected.
/// So does a create, save or touch of a session whose user's index key
/// (`keepsake:user:<user>`) holds another type than a set; nothing of that
/// session is written then. (Removing a session from such an index is
/// skipped instead: the index is checked against the sessions whenever it
/// is read, so a member left behind is harmless.)
///
/// A Redis over its `maxmemory` under the `noeviction` policy refuses a
/// create, save or touch as a whole, before anything is written: it fails
/// with [`StoreErrorKind::Unavailable`] (the middleware answers 503), and so
/// do the other saves sent in the same call. Deletes (a logout, "log out
/// everywhere", a purge) still run, since they free memory. Under an
/// evicting policy (`allkeys-lru` and the like) Redis makes room first, by
/// dropping keys of its choosing, which may be sessions. With the local
/// cache on (the default), a load the cache answers never reaches Redis, so
/// Redis does not see it: under an LRU or LFU policy (`allkeys-lru`,
/// `volatile-lru`, `allkeys-lfu`, `volatile-lfu`), a session that is only
/// read (not saved or touched) looks idle to Redis however often it is used,
/// and is among the first evicted. Where sessions may be evicted, give
/// Redis the room not to, or turn the cache off
/// ([`with_local_cache(0)`](Self::with_local_cache)) so that every use
/// counts.
///
/// # Example
///
/// ```no_run
/// use keepsake::store::{Id, Record, RedisStore, Saved, SessionStore};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
/// let now = std::time::SystemTime::now()
///     .duration_since(std::time::UNIX_EPOCH)
///     .unwrap()
///     .as_secs();
/// let mut record = Record::new(Id::random(), now, Some(60), 3_600);
/// store.create(&record).await?;
/// record.user = Some("ada".into());
/// assert_eq!(store.save(&record, now).await?, Saved::Saved { version: 1 });
/// assert_eq!(store.list_user("ada", now).await?.len(), 1);
/// assert_eq!(store.delete_user("ada").await?, 1);
/// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct RedisStore {
    conn: Arc<Connection>,
    /// The queue of saves, sent together (see `batch.rs`).
    saves: Saves,
    /// Whether this handle uses the local cache.
    cached: bool,
    /// This handle's key prefix in the cache.
    tag: u64,
    prefix: Arc<str>,
    timeout: Duration,
}

impl fmt::Debug for RedisStore {
    /// The prefix and timeout only: never the URL, which may hold a
    /// password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://[[user]:password@]host[:port][/db]`),
    /// with the key prefix `keepsake:` and a command timeout of 1 s.
    ///
    /// TLS (`rediss://`) is not available in this build: keepsake builds
    /// redis-rs without TLS support and has no feature to turn it on, so a
    /// `rediss://` URL fails here. Reach a Redis that needs TLS through a
    /// local TLS tunnel (stunnel, a sidecar) with a `redis://` URL.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Unavailable`] for a malformed URL or a refused
    /// connection, [`StoreErrorKind::Timeout`] if Redis does not answer
    /// within the timeout.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = keepsake::store::RedisStore::connect("redis://127.0.0.1:6379/0").await?;
    /// assert_eq!(store.prefix(), "keepsake:");
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let invalid =
            |err| StoreError::with_source(StoreErrorKind::Unavailable, "invalid Redis URL", err);
        // RESP3: Redis's invalidations for the local cache arrive on the
        // same connection as the replies, in order with them.
        let info = url.into_connection_info().map_err(invalid)?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        // Commands go out as soon as they are written: no Nagle delay behind
        // the previous write's acknowledgement.
        let tcp = info.tcp_settings().clone().set_nodelay(true);
        let info = info.set_redis_settings(settings).set_tcp_settings(tcp);
        let client = Client::open(info).map_err(invalid)?;
        let cache = Arc::new(Cache::new(cache::DEFAULT_CAPACITY));
        let conn = tokio::time::timeout(
            DEFAULT_TIMEOUT * 3,
            Connection::open(client, DEFAULT_TIMEOUT, cache.clone(), CACHE_TRUST),
        )
        .await
        .map_err(|_| StoreError::new(StoreErrorKind::Timeout, "connecting to Redis timed out"))?
        .map_err(|err| map_error(err, "connecting to Redis"))?;
        let conn = Arc::new(conn);
        Ok(Self {
            saves: Saves::start(conn.clone()),
            tag: cache.prefix(DEFAULT_PREFIX),
            conn,
            cached: true,
            prefix: Arc::from(DEFAULT_PREFIX),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The same store with keys under `prefix` instead of `keepsake:`, so
    /// several apps (or test runs) can share one Redis database.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = keepsake::store::RedisStore::connect("redis://127.0.0.1:6379")
    ///     .await?
    ///     .with_prefix("shop:");
    /// assert_eq!(store.prefix(), "shop:");
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self.tag = self.conn.cache.prefix(&self.prefix);
        self
    }

    /// The same store with a local cache of up to `capacity` sessions (10
    /// 000 by default). The cache is shared by the clones of a store, and
    /// its capacity with it; 0 turns the cache off for this handle only.
    ///
    /// # The local cache
    ///
    /// A load served from the cache costs no Redis command at all; a save
    /// keeps what it stored, so the next load of the session needs none
    /// either. The copies stay right because Redis tells the store when
    /// another connection changes a session it holds: its connection asks
    /// for that with `CLIENT TRACKING ON OPTIN NOLOOP`, each read or save
    /// whose copy the cache keeps goes right after `CLIENT CACHING YES`, and
    /// Redis then sends an invalidation the first time another client
    /// changes such a key (another app server, `keepsake sessions revoke`,
    /// a key expiring or evicted, a flush), on the same connection, in order
    /// with the replies; the scripts that write a session read it again
    /// (`EXISTS`), so Redis goes on tracking it. The store's other reads (a
    /// purge, a listing) are not tracked. A copy read while its key was being
    /// changed is never kept (each command takes a ticket before it is sent,
    /// and every invalidation turns away the tickets of its key's shard), and
    /// a save is still a compare-and-set in Redis, so the cache cannot lose
    /// an update: a save based on a copy that turned out old meets the
    /// conflict, drops the copy and is replayed, as without a cache.
    ///
    /// What the cache changes is *when* another server's change is seen
    /// here: once its invalidation has arrived, normally well under a
    /// millisecond after Redis made the change (the tests measure 0.1 ms on
    /// one machine), rather than at once. When the connection closes, the
    /// cache is emptied; when Redis has not been heard from on it for a
    /// second (a connection that stopped answering without closing also
    /// stops carrying invalidations), loads go to Redis again until it
    /// answers. Turn the cache off where every read must see every other
    /// server's last write at once.
    ///
    /// Redis remembers which connections to tell about which keys (its
    /// tracking table): every session this store created, saved or read
    /// since another client last changed it, about 135 bytes of Redis memory
    /// per session (557 bytes per small session in all, against 422 without
    /// the cache, in BENCHMARKS.md's million-session measurement). The
    /// table is bounded by Redis's `tracking-table-max-keys` (a million by
    /// default): past it, Redis invalidates keys early, which costs a read,
    /// never a stale copy. A server that refuses `CLIENT TRACKING` or `CLIENT
    /// CACHING` (a proxy, an old server, an ACL user without `client|tracking`
    /// or `client|caching`) simply gets no cache: the store logs a warning
    /// once per connection and reads sessions from Redis every time.
    ///
    /// Do not use `SWAPDB` on a Redis whose sessions an app reads with the
    /// cache on (or turn the cache off there): Redis (7.0 at least) sends no
    /// invalidation when it swaps databases, so the cache goes on serving the
    /// sessions that were swapped out, for as long as the connection stays
    /// up and answers. (`FLUSHDB` and `FLUSHALL` are fine: Redis invalidates
    /// everything then, and the cache is emptied.) Reads from the cache also
    /// hide a session's use from Redis's eviction: see "Errors" under
    /// [`RedisStore`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = keepsake::store::RedisStore::connect("redis://127.0.0.1:6379")
    ///     .await?
    ///     .with_local_cache(0); // every load asks Redis
    /// assert_eq!(store.local_cache(), 0);
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn with_local_cache(mut self, capacity: usize) -> Self {
        self.cached = capacity > 0;
        if self.cached {
            self.conn.cache.set_capacity(capacity);
        }
        self
    }

    /// The capacity of the local cache this handle uses (0: none).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = keepsake::store::RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// assert_eq!(store.local_cache(), 10_000);
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    pub fn local_cache(&self) -> usize {
        if self.cached {
            self.conn.cache.capacity()
        } else {
            0
        }
    }

    /// The same store with another timeout for each Redis command (default
    /// 1 s). A command that takes longer fails with
    /// [`StoreErrorKind::Timeout`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = keepsake::store::RedisStore::connect("redis://127.0.0.1:6379")
    ///     .await?
    ///     .with_command_timeout(Duration::from_millis(250));
    /// assert_eq!(store.command_timeout(), Duration::from_millis(250));
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The key prefix.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = keepsake::store::RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// assert_eq!(store.prefix(), "keepsake:");
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The timeout of each Redis command.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = keepsake::store::RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// assert_eq!(store.command_timeout(), std::time::Duration::from_secs(1));
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    pub fn command_timeout(&self) -> Duration {
        self.timeout
    }

    fn session_key(&self, id: &Id) -> String {
        use std::fmt::Write as _;
        // Sized once: this runs for every load and save.
        let mut key = String::with_capacity(self.prefix.len() + "session:".len() + ID_TEXT_LEN);
        key.push_str(&self.prefix);
        key.push_str("session:");
        // Writing to a String cannot fail.
        let _ = write!(key, "{id}");
        key
    }

    fn user_key(&self, user: &str) -> String {
        format!("{}user:{user}", self.prefix)
    }

    /// The cache, if this handle uses it.
    fn cache(&self) -> Option<&Cache> {
        self.cached.then_some(&*self.conn.cache)
    }

    /// The link to send a command on (connecting again if it broke),
    /// within the command timeout.
    async fn link(&self, what: &str) -> Result<Arc<Link>, StoreError> {
        match tokio::time::timeout(self.timeout, self.conn.link()).await {
            Ok(result) => result.map_err(|err| map_error(err, what)),
            Err(_) => Err(self.timed_out(what)),
        }
    }

    fn timed_out(&self, what: &str) -> StoreError {
        timed_out(what, self.timeout)
    }

    /// Runs one Redis round trip on `link` under the command timeout.
    async fn run<T>(
        &self,
        what: &str,
        link: &Link,
        command: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, command).await {
            Ok(Ok(value)) => {
                self.conn.heard(link);
                Ok(value)
            }
            Ok(Err(err)) => {
                link.failed(&err);
                Err(map_error(err, what))
            }
            Err(_) => {
                self.conn.timed_out(link, self.timeout);
                Err(self.timed_out(what))
            }
        }
    }

    /// Runs one command on the current link.
    async fn query<T: redis::FromRedisValue>(
        &self,
        what: &str,
        command: &redis::Cmd,
    ) -> Result<T, StoreError> {
        let link = self.link(what).await?;
        let mut conn = link.conn();
        self.run(what, &link, command.query_async(&mut conn)).await
    }

    /// Runs a script that answers with an integer status.
    async fn status(
        &self,
        what: &str,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<i64, StoreError> {
        let link = self.link(what).await?;
        let mut conn = link.conn();
        let code: i64 = self
            .run(what, &link, invocation.invoke_async(&mut conn))
            .await?;
        corrupt_status(what, code)
    }

    /// Drops every copy in the cache (after a change to many sessions).
    fn flush_cache(&self) {
        self.conn.cache.flush();
    }

    /// Whether copies read or written on `link` may be kept: Redis sends
    /// this connection the invalidations of this store's session keys.
    async fn tracked(&self, link: &Link) -> bool {
        self.cached && self.conn.track(link, self.timeout).await
    }

    /// Queues the save of `record` if Redis holds version `expected` (the
    /// record's own version field is not read: `save_shared` has moved it
    /// on already); the local cache then keeps `keep`, `record` with its new
    /// version, if the save succeeds.
    async fn queue_save(
        &self,
        record: &Record,
        expected: u64,
        keep: Option<Arc<Record>>,
        now: u64,
    ) -> Result<Saved, StoreError> {
        let version = expected + 1;
        let cached = (self.tag, record.id);
        let (reply, status) = tokio::sync::oneshot::channel();
        self.saves.push(Job {
            key: self.session_key(&record.id),
            expected: self.expected(&cached, record, expected, now),
            cached,
            value: encode(record, version),
            now,
            expire_at: expire_at(record.deadline()),
            user: user_arg(record.user.as_deref()),
            keep,
            timeout: self.timeout,
            reply,
        })?;
        let status = match tokio::time::timeout(self.timeout, status).await {
            Ok(Ok(status)) => status?,
            Ok(Err(_)) => return Err(batch::stopped()),
            Err(_) => return Err(self.timed_out("save")),
        };
        match status {
            1 => Ok(Saved::Saved { version }),
            0 => Ok(Saved::Conflict),
            _ => Ok(Saved::Gone),
        }
    }

    /// What the `SAVE` script is to find in Redis for the save of `record`
    /// over version `expected` at `now`. If the cache (of any handle) holds
    /// that version of the session, unexpired at `now` and with the same
    /// user as `record`: the exact header of its stored JSON, so that the
    /// script compares bytes and checks nothing else when Redis holds just
    /// that. Otherwise, or when Redis holds something else (another server
    /// touched the session since, say), the script makes the full check of
    /// the version alone, which goes in decimal.
    fn expected(&self, cached: &(u64, Id), record: &Record, expected: u64, now: u64) -> Vec<u8> {
        match self.conn.cache.get(cached) {
            Some(old)
                if old.version == expected
                    && old.user == record.user
                    && !old.is_expired_at(now) =>
            {
                header(&old, expected)
            }
            _ => expected.to_string().into_bytes(),
        }
    }

    /// Runs `cmd`, an `EVALSHA` of `script` that writes session `id` and
    /// answers with a status; the cache then keeps `kept(status)` (what
    /// Redis now holds, if this process knows it) or drops its copy.
    async fn write(
        &self,
        what: &str,
        id: &Id,
        script: &Script,
        mut cmd: redis::Cmd,
        kept: Option<&(dyn Fn(i64) -> Option<Arc<Record>> + Sync)>,
    ) -> Result<i64, StoreError> {
        let link = self.link(what).await?;
        let tracked = kept.is_some() && self.tracked(&link).await;
        cmd.arg(if tracked { READ_BACK } else { "0" });
        let request = Request::new(cmd, tracked);
        // The cache is shared with this handle's clones, which may keep
        // copies even if this handle does not: every write settles the copy.
        let cached = (self.tag, *id);
        let ticket = self.conn.cache.ticket(&cached);
        let mut conn = link.conn();
        let result = self
            .run(what, &link, eval::<i64>(&mut conn, script, &request))
            .await
            .and_then(|code| corrupt_status(what, code));
        let record = match (&result, kept) {
            (Ok(status), Some(kept)) if tracked => kept(*status),
            _ => None,
        };
        self.conn.cache.wrote(ticket, &cached, record);
        result
    }

    /// Reads session `id` from Redis, for a load the cache could not
    /// serve, and keeps the copy if Redis tracks the read for this
    /// connection.
    async fn load_from_redis(&self, id: &Id, now: u64) -> Result<Option<Arc<Record>>, StoreError> {
        let cached = (self.tag, *id);
        let key = self.session_key(id);
        let mut link = self.link("load").await?;
        let cache = match self.cache() {
            Some(cache) if self.tracked(&link).await => Some(cache),
            _ => None,
        };
        let filling = cache.map(|cache| (cache, cache.ticket(&cached)));
        let asked_on = link.generation();
        let get = || redis::cmd("GET").arg(&key).clone();
        let mut conn = link.conn();
        // With the cache, the read is tracked.
        let request = Request::new(get(), filling.is_some());
        let first = request.send(&mut conn);
        let value: Option<Vec<u8>> = match tokio::time::timeout(self.timeout, first).await {
            Err(_) => {
                self.conn.timed_out(&link, self.timeout);
                return Err(self.timed_out("load"));
            }
            // A connection Redis closed while idle (`timeout`, a proxy)
            // fails the first command sent on it. A read is safe to send
            // again, on a new connection; what it reads there is not kept
            // (the ticket was for the old one), nor tracked.
            Ok(Err(err)) if err.is_connection_dropped() => {
                link.failed(&err);
                link = self.link("load").await?;
                let mut conn = link.conn();
                self.run("load", &link, get().query_async(&mut conn))
                    .await?
            }
            Ok(result) => self.run("load", &link, std::future::ready(result)).await?,
        };
        let Some(bytes) = value else {
            return Ok(None);
        };
        let record = Arc::new(decode(&bytes, Some(id))?);
        if record.is_expired_at(now) {
            return Ok(None);
        }
        if let Some((cache, ticket)) = filling
            && link.generation() == asked_on
            && !link.is_broken()
        {
            cache.fill(ticket, &cached, record.clone());
        }
        Ok(Some(record))
    }
}

/// The error of a command that got no answer within `timeout`.
fn timed_out(what: &str, timeout: Duration) -> StoreError {
    StoreError::new(
        StoreErrorKind::Timeout,
        format!("{what}: no answer from Redis within {timeout:?}"),
    )
}

/// A script's status, or the error of [`CORRUPT`] or [`BROKEN_INDEX`].
fn corrupt_status(what: &str, code: i64) -> Result<i64, StoreError> {
    let problem = match code {
        CORRUPT => "the stored session is not in a format this store reads",
        BROKEN_INDEX => {
            "the session's user index in Redis holds another type than a set \
             (nothing was written)"
        }
        _ => return Ok(code),
    };
    Err(StoreError::new(
        StoreErrorKind::Corrupt,
        format!("{what}: {problem}"),
    ))
}

/// An `EVALSHA` of `script` with `keys` keys; the keys, then the arguments,
/// are added to it.
fn evalsha(script: &Script, keys: usize) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys);
    cmd
}

/// Runs `request`, an `EVALSHA` of `script`, loading the script first if
/// Redis has forgotten it (a restart, `SCRIPT FLUSH`).
async fn eval<T: redis::FromRedisValue>(
    conn: &mut redis::aio::MultiplexedConnection,
    script: &Script,
    request: &Request,
) -> Result<T, RedisError> {
    match request.send(conn).await {
        Err(err) if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            script.load_async(conn).await?;
            request.send(conn).await
        }
        result => result,
    }
}

/// A command as it goes to Redis: alone, or, tracked, right after `CLIENT
/// CACHING YES` in the same write, so that Redis tracks for this connection
/// the keys it reads (the local cache's invalidations; tracking is `OPTIN`,
/// so no other read is tracked). Made once, so that a command sent again
/// (a script Redis had forgotten) is not copied.
enum Request {
    Plain(redis::Cmd),
    Tracked(redis::Pipeline),
}

impl Request {
    fn new(cmd: redis::Cmd, track: bool) -> Self {
        if !track {
            return Self::Plain(cmd);
        }
        let mut pipe = redis::pipe();
        pipe.cmd("CLIENT")
            .arg("CACHING")
            .arg("YES")
            .ignore()
            .add_command(cmd);
        Self::Tracked(pipe)
    }

    async fn send<T: redis::FromRedisValue>(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
    ) -> Result<T, RedisError> {
        match self {
            Self::Plain(cmd) => cmd.query_async(conn).await,
            Self::Tracked(pipe) => {
                let (value,): (T,) = pipe.query_async(conn).await?;
                Ok(value)
            }
        }
    }
}

/// Maps a redis-rs error to a store error.
fn map_error(err: RedisError, what: &str) -> StoreError {
    let kind = if err.is_timeout() {
        StoreErrorKind::Timeout
    } else if wrong_type(&err) {
        // A session key holding a list, a hash...: not a session this
        // store can read, like an unparsable value (Redis is fine).
        StoreErrorKind::Corrupt
    } else {
        StoreErrorKind::Unavailable
    };
    StoreError::with_source(kind, format!("{what} failed"), err)
}

/// Whether Redis refused a command for the type of the value at its key
/// (also as one command of a pipeline).
fn wrong_type(err: &RedisError) -> bool {
    err.code() == Some("WRONGTYPE")
        || err
            .clone()
            .into_server_errors()
            .is_some_and(|errors| errors.iter().any(|(_, err)| err.code() == "WRONGTYPE"))
}

/// The status scripts return for a value they cannot parse.
const CORRUPT: i64 = -2;

/// The status of a write the scripts refuse because the user index key it
/// would add the session to holds another type than a set.
const BROKEN_INDEX: i64 = -3;

/// The stored JSON after its header (see [`encode`]), as written.
#[derive(Serialize)]
struct Rest<'a> {
    id: Id,
    created_at: u64,
    idle_timeout: Option<u64>,
    persistent: bool,
    data: &'a Data,
}

/// The stored JSON, as read.
#[derive(Deserialize)]
struct Stored {
    format: u32,
    version: u64,
    absolute_deadline: u64,
    idle_deadline: Option<u64>,
    user_hex: Option<String>,
    id: Id,
    created_at: u64,
    idle_timeout: Option<u64>,
    persistent: bool,
    data: Data,
}

fn hex(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    String::from_utf8(out).unwrap_or_else(|_| unreachable!("hex digits are ASCII"))
}

/// Appends `bytes` in lowercase hex, as the scripts and [`unhex`] read it.
fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.extend_from_slice(&[
            DIGITS[usize::from(byte >> 4)],
            DIGITS[usize::from(byte & 15)],
        ]);
    }
}

fn unhex(text: &str) -> Option<String> {
    String::from_utf8(unhex_bytes(text)?).ok()
}

/// The bytes of lowercase or uppercase hex `text`.
fn unhex_bytes(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Appends the header of the JSON stored for `record` at `version`:
/// `{"format":1,"version":V,"absolute_deadline":A,"idle_deadline":I|null,"user_hex":"<hex>"|null,`,
/// the fields the scripts read, in the order and spelling they match and
/// `TOUCH` writes.
fn write_header(out: &mut Vec<u8>, record: &Record, version: u64) {
    use std::io::Write as _;
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "{{\"format\":{FORMAT},\"version\":{version},\"absolute_deadline\":{},\"idle_deadline\":",
        record.absolute_deadline
    );
    match record.idle_deadline {
        Some(idle) => {
            let _ = write!(out, "{idle}");
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"user_hex\":");
    match &record.user {
        Some(user) => {
            out.push(b'"');
            push_hex(out, user.as_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.push(b',');
}

/// The header of the JSON stored for `record` at `version` (see
/// [`write_header`]).
fn header(record: &Record, version: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_header(&mut out, record, version);
    out
}

/// The JSON stored for `record`, with `version`: the header, then the rest
/// of the record.
fn encode(record: &Record, version: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_header(&mut out, record, version);
    let rest = out.len();
    let tail = Rest {
        id: record.id,
        created_at: record.created_at,
        idle_timeout: record.idle_timeout,
        persistent: record.persistent,
        data: &record.data,
    };
    serde_json::to_writer(&mut out, &tail)
        .unwrap_or_else(|_| unreachable!("a record always serializes"));
    // The header has opened the object already.
    out.remove(rest);
    out
}

fn corrupt(message: impl Into<String>) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, message)
}

/// The record in stored JSON, checked to be the one with `id` if given.
fn decode(bytes: &[u8], id: Option<&Id>) -> Result<Record, StoreError> {
    // Described, not quoted: serde_json's message quotes session data.
    let stored: Stored = serde_json::from_slice(bytes).map_err(|err| {
        corrupt(format!(
            "undecodable session in Redis: {}",
            super::payload::json_error_summary(&err)
        ))
    })?;
    if stored.format != FORMAT {
        return Err(corrupt(format!(
            "session in Redis has format {}, this store reads {FORMAT}",
            stored.format
        )));
    }
    if id.is_some_and(|id| *id != stored.id) {
        return Err(corrupt("session in Redis is stored under another id"));
    }
    let user = match stored.user_hex {
        Some(text) => Some(unhex(&text).ok_or_else(|| corrupt("bad user in Redis session"))?),
        None => None,
    };
    Ok(Record {
        id: stored.id,
        data: stored.data,
        created_at: stored.created_at,
        idle_timeout: stored.idle_timeout,
        idle_deadline: stored.idle_deadline,
        absolute_deadline: stored.absolute_deadline,
        persistent: stored.persistent,
        version: stored.version,
        user,
    })
}

/// The `EXAT` argument for `deadline`: empty for no native expiry.
fn expire_at(deadline: u64) -> String {
    if deadline > MAX_EXPIRE_AT {
        String::new()
    } else {
        deadline.max(1).to_string()
    }
}

/// The user argument of the `CREATE` and `SAVE` scripts: empty without a
/// user, else `=` and the name in hex (so that an empty name is a user).
fn user_arg(user: Option<&str>) -> Vec<u8> {
    let Some(user) = user else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(1 + 2 * user.len());
    out.push(b'=');
    push_hex(&mut out, user.as_bytes());
    out
}

/// `*`, `?`, `[`, `]` and `\` escaped for a `SCAN MATCH` pattern.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

// The scripts' Lua helpers, in three pieces so that each script defines
// only the helpers it calls: Lua makes a closure for every `local function`
// each time a script runs, which for the `save` script on every `/incr` was
// about a fifth of its time inside Redis (BENCHMARKS.md, "Redis's
// compare-and-set script").

/// Lua: `lt` (decimal strings compared as numbers, exactly) and `parse`
/// (the stored header: its version, deadline, user hex, absolute deadline
/// and where the rest starts; nil if it is not in the stored format).
macro_rules! lua_parse {
    () => {
        r#"
local function lt(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local function parse(val)
  local version, abs, idle, user, rest = string.match(val,
    '^{"format":1,"version":(%d+),"absolute_deadline":(%d+),"idle_deadline":(%w+),"user_hex":([^,]*),()')
  if not version then return nil end
  local deadline = abs
  if idle ~= 'null' then
    if not string.match(idle, '^%d+$') then return nil end
    if lt(idle, abs) then deadline = idle end
  end
  local u = nil
  if user ~= 'null' then
    u = string.match(user, '^"(%x*)"$')
    if not u then return nil end
  end
  return version, deadline, u, abs, rest
end
-- The value of session key `key`: false if there is none, and '' (which
-- never parses) if the key holds another type, so that such a key is an
-- unparsable session of its own instead of an error of the whole script
-- (which would also fail the other sessions of a batched SAVE). `read` is
-- 'GET', or 'GETEX' (the same without options, but a write command, so
-- that Redis does not track the key for a caching connection) in scripts
-- that may write the key next: a write ends the tracking anyway, and
-- tracking costs Redis a radix-tree insert per read.
local function value(key, read)
  local v = redis.pcall(read, key)
  if type(v) == 'table' and v.err then
    if string.find(v.err, 'WRONGTYPE', 1, true) then return '' end
    return redis.call(read, key)
  end
  return v
end
"#
    };
}

/// The first line of a script that may grow what Redis holds (`CREATE`,
/// `SAVE`, `TOUCH`). A script with this line declares its flags (here none),
/// and Redis then refuses the whole call while it is over its `maxmemory`
/// (with the `noeviction` policy), before the script runs: the store
/// answers `Unavailable` and nothing is written. Without it, Redis checks
/// only a script's first write, and lets everything through once the
/// script has called any write command, as our scripts' first `GETEX` is.
/// Scripts that only remove (`DELETE`, the purge) have no such line: they
/// free memory and run even then.
macro_rules! lua_refused_when_full {
    () => {
        "#!lua\n"
    };
}

/// Lua: a session key's parts (`owner`) and the user sets (`ukey`,
/// `link`, `unlink`, `unlink_key`).
macro_rules! lua_users {
    () => {
        r#"
-- The prefix and id of session key `key`, `<prefix>session:<id>`, as
-- `RedisStore::session_key` makes it (an id is always 22 characters).
local function owner(key)
  return string.sub(key, 1, -31), string.sub(key, -22)
end
local function ukey(prefix, uhex)
  return prefix .. 'user:' .. (string.gsub(uhex, '%x%x', function(c) return string.char(tonumber(c, 16)) end))
end
-- Adds session key `key` to the index of user `uhex` (nothing for no
-- user) and makes the index live as long as its longest session: `exp` is
-- that session's expire-at, '' for none. False, with nothing written, if the
-- index key holds another type than a set (written by hand, or by another
-- app): the script then answers -3 rather than fail halfway (with the
-- sessions of a batched SAVE before it written and those after it not),
-- so this runs before the session is written. No read of the key comes
-- first (a read would be tracked for a caching connection): SADD itself
-- finds a wrong type, and only a set it made needs telling apart from a
-- persistent one, which `EXPIREAT ... GT` would leave without expiry.
local function link(key, uhex, exp)
  if not uhex then return true end
  local prefix, id = owner(key)
  local index = ukey(prefix, uhex)
  local added = redis.pcall('SADD', index, id)
  if type(added) == 'table' and added.err then
    if string.find(added.err, 'WRONGTYPE', 1, true) then return false end
    redis.call('SADD', index, id)
  end
  if exp == '' then redis.call('PERSIST', index)
  elseif added == 1 and redis.call('SCARD', index) == 1 then redis.call('EXPIREAT', index, exp)
  else redis.call('EXPIREAT', index, exp, 'GT') end
  return true
end
-- Removes session `id` from its user's index. An index of another type is
-- left alone: a member left behind is harmless (the index is checked
-- against the sessions whenever it is read).
local function unlink(prefix, uhex, id)
  if uhex then redis.pcall('SREM', ukey(prefix, uhex), id) end
end
-- The same for session key `key`.
local function unlink_key(key, uhex)
  if uhex then
    local prefix, id = owner(key)
    unlink(prefix, uhex, id)
  end
end
"#
    };
}

/// Lua: `put` (a value with its native expiry) and `stored` (a session's
/// value and parsed header). Needs `lua_parse!` and `lua_users!` before it.
macro_rules! lua_write {
    () => {
        r#"
local function put(key, val, exp)
  if exp == '' then redis.call('SET', key, val) else redis.call('SET', key, val, 'EXAT', exp) end
end
-- `old`, the stored value of session `key` (from `value(key, 'GETEX')`),
-- its version, user hex, absolute deadline and where the rest starts; or
-- nil and the status -1 (no session; one that has expired by `now` is
-- deleted on the way) or -2 (unparsable). Without `now`, expiry is not
-- looked at.
local function stored(key, now, old)
  if not old then return nil, -1 end
  local version, deadline, user, abs, rest = parse(old)
  if not version then return nil, -2 end
  if now and not lt(now, deadline) then
    redis.call('DEL', key)
    unlink_key(key, user)
    return nil, -1
  end
  return old, version, user, abs, rest
end
"#
    };
}

/// An argument of `CREATE` (its last) and `SAVE` (its first, for every
/// session of the call): `1` when the store keeps a copy of what it wrote.
/// `CREATE` and `SAVE` then read the key again after writing it
/// (`EXISTS`, a read that copies no value), because a write ends Redis's
/// tracking of the key for every connection (this one's included), and a
/// read starts it again for this one: without it, another server's next
/// change would send no invalidation here.
const READ_BACK: &str = "1";

/// KEYS: session. ARGV: value, now, expire-at, user (see [`user_arg`]),
/// re-read (see `READ_BACK`). 1 created, 0 collision, -2 unparsable, -3
/// the user's index holds another type.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        lua_refused_when_full!(),
        lua_parse!(),
        lua_users!(),
        lua_write!(),
        r#"
local old, olduser = value(KEYS[1], 'GETEX'), nil
if old then
  local version, deadline, user = parse(old)
  if not version then return -2 end
  if lt(ARGV[2], deadline) then return 0 end
  olduser = user
end
local new = nil
if ARGV[4] ~= '' then new = string.sub(ARGV[4], 2) end
if not link(KEYS[1], new, ARGV[3]) then return -3 end
if olduser ~= new then unlink_key(KEYS[1], olduser) end
put(KEYS[1], ARGV[1], ARGV[3])
if ARGV[5] == '1' then redis.call('EXISTS', KEYS[1]) end
return 1
"#
    ))
});

/// KEYS: sessions. ARGV: re-read (see `READ_BACK`), then five per
/// session: expected, value, now, expire-at, user. `expected` is either
/// the exact header of the stored JSON this process last saw at the
/// version the save expects (from [`write_header`]), or that version alone,
/// in decimal; `user` as [`user_arg`] makes it. For each session in turn:
/// 1 saved, 0 conflict, -1 gone, -2 unparsable, -3 the user's index holds
/// another type. Many saves go in one call (see `batch.rs`).
///
/// A stored value that starts with the expected header has the expected
/// version, deadlines and user, which the store has checked against `now`
/// and the new user before sending it (see `RedisStore::expected`): the
/// script then only writes. Any other value (another server saved or
/// touched the session, this process has no copy of it) gets the full
/// check. The session's prefix and id are read off its key, and only when
/// needed.
static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        lua_refused_when_full!(),
        lua_parse!(),
        lua_users!(),
        lua_write!(),
        r#"
local out = {}
for i, key in ipairs(KEYS) do
  local a = 1 + (i - 1) * 5
  local expected, exp, new = ARGV[a + 1], ARGV[a + 4], nil
  if ARGV[a + 5] ~= '' then new = string.sub(ARGV[a + 5], 2) end
  local old = value(key, 'GETEX')
  local header = string.byte(expected) == 123
  local fast = header and old and string.find(old, expected, 1, true) == 1
  local user, status = new, 1
  if not fast then
    if header then expected = parse(expected) end
    local version
    old, version, user = stored(key, ARGV[a + 3], old)
    if not old then status = version elseif version ~= expected then status = 0 end
  end
  if status == 1 then
    if not link(key, new, exp) then
      status = -3
    else
      put(key, ARGV[a + 2], exp)
      if user ~= new then unlink_key(key, user) end
      if ARGV[1] == '1' then redis.call('EXISTS', key) end
    end
  end
  out[i] = status
end
return out
"#
    ))
});

/// KEYS: session. ARGV: idle deadline, now, expected version. 1 touched,
/// 2 saved since (nothing written), -1 gone, -2 unparsable, -3 the user's
/// index holds another type.
static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        lua_refused_when_full!(),
        lua_parse!(),
        lua_users!(),
        lua_write!(),
        r#"
local old, version, user, abs, rest = stored(KEYS[1], ARGV[2], value(KEYS[1], 'GETEX'))
if not old then return version end
if version ~= ARGV[3] then return 2 end
local idle = ARGV[1]
if lt(abs, idle) then idle = abs end
local exp = idle
if lt('253402300799', idle) then exp = '' elseif idle == '0' then exp = '1' end
if not link(KEYS[1], user, exp) then return -3 end
local uj = 'null'
if user then uj = '"' .. user .. '"' end
local val = '{"format":1,"version":' .. version .. ',"absolute_deadline":' .. abs ..
  ',"idle_deadline":' .. idle .. ',"user_hex":' .. uj .. ',' .. string.sub(old, rest)
put(KEYS[1], val, exp)
return 1
"#
    ))
});

/// KEYS: session. 1 deleted, 0 absent.
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        lua_parse!(),
        lua_users!(),
        r#"
local old = value(KEYS[1], 'GETEX')
if not old then return 0 end
local version, _, user = parse(old)
redis.call('DEL', KEYS[1])
if version then unlink_key(KEYS[1], user) end
return 1
"#
    ))
});

/// KEYS: session. ARGV: version. 1 deleted, 0 another version,
/// -1 no such session.
static DELETE_IF_VERSION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        lua_parse!(),
        lua_users!(),
        lua_write!(),
        r#"
local old, version, user = stored(KEYS[1], nil, value(KEYS[1], 'GETEX'))
if not old then return version end
if version ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
unlink_key(KEYS[1], user)
return 1
"#
    ))
});

/// KEYS: user set. ARGV: prefix, user hex. How many sessions were deleted.
static DELETE_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        lua_parse!(),
        r#"
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. 'session:' .. id
  local val = value(key, 'GET')
  if val then
    local version, _, user = parse(val)
    if version and user == ARGV[2] then
      redis.call('DEL', key)
      n = n + 1
    end
  end
end
redis.call('DEL', KEYS[1])
return n
"#
    ))
});

/// KEYS: user set. ARGV: prefix, user hex, now. The ids and values, in
/// turn, of the user's sessions unexpired at `now` (and of any unparsable
/// one, to be reported); removes members whose session is gone or belongs
/// to someone else.
static LIST_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        lua_parse!(),
        r#"
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local val = value(ARGV[1] .. 'session:' .. id, 'GET')
  if not val then
    redis.call('SREM', KEYS[1], id)
  else
    local version, deadline, user = parse(val)
    if user ~= ARGV[2] and version then
      redis.call('SREM', KEYS[1], id)
    elseif not version or lt(ARGV[3], deadline) then
      table.insert(out, id)
      table.insert(out, val)
    end
  end
end
return out
"#
    ))
});

/// KEYS: session keys. ARGV: prefix, now. Deletes those expired at `now`;
/// how many.
static PURGE_SESSIONS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        lua_parse!(),
        lua_users!(),
        r#"
local n = 0
local base = #ARGV[1] + #'session:' + 1
for _, key in ipairs(KEYS) do
  local val = redis.pcall('GET', key)
  if type(val) == 'string' then
    local version, deadline, user = parse(val)
    if version and not lt(ARGV[2], deadline) then
      redis.call('DEL', key)
      unlink(ARGV[1], user, string.sub(key, base))
      n = n + 1
    end
  end
end
return n
"#
    ))
});

/// KEYS: user sets. ARGV: prefix. Removes members whose session is gone.
static PURGE_USERS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n = 0
for _, key in ipairs(KEYS) do
  local ids = redis.pcall('SMEMBERS', key)
  if type(ids) == 'table' and not ids.err then
    for _, id in ipairs(ids) do
      if redis.call('EXISTS', ARGV[1] .. 'session:' .. id) == 0 then
        redis.call('SREM', key, id)
        n = n + 1
      end
    end
  end
end
return n
"#,
    )
});

impl SessionStore for RedisStore {
    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        let mut cmd = evalsha(&CREATE, 1);
        cmd.arg(self.session_key(&record.id))
            .arg(encode(record, record.version))
            .arg(record.created_at)
            .arg(expire_at(record.deadline()))
            .arg(user_arg(record.user.as_deref()));
        let kept = |status| (status == 1).then(|| Arc::new(record.clone()));
        match self
            .write("create", &record.id, &CREATE, cmd, Some(&kept))
            .await?
        {
            1 => Ok(Created::Created),
            _ => Ok(Created::Collision),
        }
    }

    async fn load(&self, id: &Id, now: u64) -> Result<Option<Record>, StoreError> {
        Ok(self.load_shared(id, now).await?.map(Arc::unwrap_or_clone))
    }

    async fn load_shared(&self, id: &Id, now: u64) -> Result<Option<Arc<Record>>, StoreError> {
        let cached = (self.tag, *id);
        // The common case first: a copy Redis would have invalidated, on a
        // link that is whole; no allocation, no await.
        if let Some(cache) = self.cache()
            && self.conn.trusted(&self.conn.current())
            && let Some(record) = cache.get(&cached)
        {
            return Ok((!record.is_expired_at(now)).then_some(record));
        }
        // Boxed: the way to Redis makes a future of a few kilobytes, which
        // a load served from the cache would otherwise allocate too (the
        // middleware boxes this one).
        Box::pin(self.load_from_redis(id, now)).await
    }

    async fn save(&self, record: &Record, now: u64) -> Result<Saved, StoreError> {
        let keep = self.cached.then(|| {
            let mut kept = record.clone();
            kept.version += 1;
            Arc::new(kept)
        });
        self.queue_save(record, record.version, keep, now).await
    }

    /// Keeps `record` itself in the local cache when the save succeeds: it
    /// gets its new version before it is queued (which copies it only if
    /// the caller shares it), and the old one back if the save fails.
    async fn save_shared(&self, record: &mut Arc<Record>, now: u64) -> Result<Saved, StoreError> {
        let expected = record.version;
        Arc::make_mut(record).version = expected + 1;
        let keep = self.cached.then(|| Arc::clone(record));
        let saved = self.queue_save(record, expected, keep, now).await;
        if !matches!(saved, Ok(Saved::Saved { .. })) {
            Arc::make_mut(record).version = expected;
        }
        saved
    }

    async fn touch(
        &self,
        id: &Id,
        version: u64,
        idle_deadline: u64,
        now: u64,
    ) -> Result<Touched, StoreError> {
        let mut cmd = evalsha(&TOUCH, 1);
        cmd.arg(self.session_key(id))
            .arg(idle_deadline)
            .arg(now)
            .arg(version.to_string());
        // The copy goes: touches are rare, and the script caps the deadline.
        match self.write("touch", id, &TOUCH, cmd, None).await? {
            1 => Ok(Touched::Touched),
            2 => Ok(Touched::Outdated),
            _ => Ok(Touched::Gone),
        }
    }

    async fn delete(&self, id: &Id) -> Result<bool, StoreError> {
        let mut cmd = evalsha(&DELETE, 1);
        cmd.arg(self.session_key(id));
        Ok(self.write("delete", id, &DELETE, cmd, None).await? == 1)
    }

    async fn delete_if_version(&self, id: &Id, version: u64) -> Result<Deleted, StoreError> {
        let mut cmd = evalsha(&DELETE_IF_VERSION, 1);
        cmd.arg(self.session_key(id)).arg(version.to_string());
        match self
            .write("delete_if_version", id, &DELETE_IF_VERSION, cmd, None)
            .await?
        {
            1 => Ok(Deleted::Deleted),
            0 => Ok(Deleted::Conflict),
            -1 => Ok(Deleted::Gone),
            _ => Err(StoreError::new(
                StoreErrorKind::Corrupt,
                "a stored session record could not be parsed",
            )),
        }
    }

    async fn delete_user(&self, user: &str) -> Result<usize, StoreError> {
        let mut invocation = DELETE_USER.key(self.user_key(user));
        invocation.arg(&*self.prefix).arg(hex(user.as_bytes()));
        let count = self.status("delete_user", &invocation).await;
        // Many sessions at once, by a script: drop every copy.
        self.flush_cache();
        Ok(usize::try_from(count?).unwrap_or(0))
    }

    async fn list_user(&self, user: &str, now: u64) -> Result<Vec<Record>, StoreError> {
        Ok(StoreError::log_unreadable(
            self.list_user_skipping_unreadable(user, now).await?,
        ))
    }

    async fn purge_expired(&self, now: u64) -> Result<usize, StoreError> {
        let mut cursor = 0;
        let mut purged = 0;
        loop {
            let (next, batch) = self.purge_scan(cursor, now, SCAN_COUNT).await?;
            purged += batch;
            cursor = next;
            if cursor == 0 {
                return Ok(purged);
            }
        }
    }
}

// Administration (the `StoreAdmin` trait is in `admin.rs`).

use super::{Counts, Cursor, Page, PurgeStep, StoreAdmin};

/// KEYS: session keys. ARGV: now. `{held, expired}`: how many of the keys
/// exist, and how many of those have expired at `now`.
static COUNT_SESSIONS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        lua_parse!(),
        r#"
local held, expired = 0, 0
for _, key in ipairs(KEYS) do
  local val = redis.pcall('GET', key)
  if type(val) == 'string' then
    held = held + 1
    local version, deadline = parse(val)
    if version and not lt(ARGV[1], deadline) then expired = expired + 1 end
  end
end
return {held, expired}
"#
    ))
});

impl RedisStore {
    /// One `SCAN` step (asking for `count` keys) over the keys under the
    /// prefix, starting at `cursor`: the next cursor (0 at the end) and the
    /// session keys and user-set keys found.
    async fn scan_step(
        &self,
        cursor: u64,
        pattern_tail: &str,
        count: usize,
    ) -> Result<(u64, Vec<Vec<u8>>), StoreError> {
        let pattern = format!("{}{pattern_tail}", glob_escape(&self.prefix));
        self.query(
            "SCAN",
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(count.max(1)),
        )
        .await
    }

    /// One step of a purge: a `SCAN` step over the prefix, then the
    /// expired sessions among the keys found are deleted and the user sets
    /// found are cleared of members whose session is gone. The next cursor
    /// (0 at the end) and how many sessions were purged.
    async fn purge_scan(
        &self,
        cursor: u64,
        now: u64,
        count: usize,
    ) -> Result<(u64, usize), StoreError> {
        let session_prefix = format!("{}session:", self.prefix);
        let user_prefix = format!("{}user:", self.prefix);
        let (next, keys) = self.scan_step(cursor, "*", count).await?;
        let (sessions, users): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) = keys
            .iter()
            .filter(|key| {
                key.starts_with(session_prefix.as_bytes())
                    || key.starts_with(user_prefix.as_bytes())
            })
            .partition(|key| key.starts_with(session_prefix.as_bytes()));
        let mut purged = 0;
        if !sessions.is_empty() {
            let mut invocation = PURGE_SESSIONS.prepare_invoke();
            for key in &sessions {
                invocation.key(key.as_slice());
            }
            invocation.arg(&*self.prefix).arg(now);
            let count = self.status("purge_expired", &invocation).await?;
            purged += usize::try_from(count).unwrap_or(0);
            if count > 0 {
                self.flush_cache();
            }
        }
        if !users.is_empty() {
            let mut invocation = PURGE_USERS.prepare_invoke();
            for key in &users {
                invocation.key(key.as_slice());
            }
            invocation.arg(&*self.prefix);
            self.status("purge_expired", &invocation).await?;
        }
        Ok((next, purged))
    }
}

/// A cursor this store did not make.
fn bad_cursor(cursor: &Cursor) -> StoreError {
    corrupt(format!("`{}` is not a Redis SCAN cursor", cursor.as_str()))
}

fn scan_cursor(cursor: Option<&Cursor>) -> Result<u64, StoreError> {
    cursor.map_or(Ok(0), |cursor| {
        cursor.as_str().parse().map_err(|_| bad_cursor(cursor))
    })
}

// Administration of keys this store cannot read (a value another app or an
// old version wrote, say): `keepsake sessions` lists around them and
// revokes them by their stored id.
impl RedisStore {
    /// One page, as [`StoreAdmin::page`] walks the sessions, except that a
    /// session key whose value this store cannot read (not a session's JSON,
    /// or of another format) does not fail the page: it is left out, and
    /// its error ([`StoreErrorKind::Corrupt`]) is returned beside the page,
    /// with the key's id as stored (the key after `<prefix>session:`) in
    /// [`StoreError::session_id`] (for [`delete_stored`](Self::delete_stored)).
    /// [`StoreAdmin::page`] fails with the first such error instead. A key
    /// of another type than a string is not a session and is not seen.
    ///
    /// # Errors
    ///
    /// As [`StoreAdmin::page`], except for unreadable values.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = keepsake::store::RedisStore::connect("redis://127.0.0.1:6379")
    ///     .await?
    ///     .with_prefix("app:");
    /// // After `SET app:session:garbage hello`:
    /// let (page, unreadable) = store.page_skipping_unreadable(None, 100).await?;
    /// assert!(page.records.is_empty());
    /// assert_eq!(unreadable[0].session_id(), Some("garbage"));
    /// assert!(store.delete_stored("garbage").await?);
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    pub async fn page_skipping_unreadable(
        &self,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<(Page, Vec<StoreError>), StoreError> {
        let limit = limit.max(1);
        // `SCAN` may answer with more keys than asked for. Those not taken
        // travel in the cursor, in hex after the `SCAN` cursor to go on
        // from: `SCAN` again from the same cursor need not find the same
        // keys in the same order (a session that ended meanwhile would
        // shift the rest), so a page never skips keys by position.
        let (after, mut keys) = match cursor {
            None => self.scan_step(0, "session:*", limit).await?,
            Some(cursor) => match cursor.as_str().split_once('/') {
                None => {
                    let scan = cursor.as_str().parse().map_err(|_| bad_cursor(cursor))?;
                    self.scan_step(scan, "session:*", limit).await?
                }
                Some((after, left)) => {
                    let after = after.parse().map_err(|_| bad_cursor(cursor))?;
                    let left = left
                        .split(',')
                        .map(|hex| Some([self.prefix.as_bytes(), &unhex_bytes(hex)?].concat()))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| bad_cursor(cursor))?;
                    (after, left)
                }
            },
        };
        let left = keys.split_off(keys.len().min(limit));
        let next = if left.is_empty() {
            (after != 0).then(|| after.to_string())
        } else {
            let prefix = self.prefix.as_bytes();
            let left: Vec<String> = left
                .iter()
                .map(|key| hex(key.strip_prefix(prefix).unwrap_or(key)))
                .collect();
            Some(format!("{after}/{}", left.join(",")))
        };
        let mut records = Vec::with_capacity(keys.len());
        let mut unreadable = Vec::new();
        if !keys.is_empty() {
            let values: Vec<Option<Vec<u8>>> = self
                .query("page (MGET)", redis::cmd("MGET").arg(&keys))
                .await?;
            let session_prefix = format!("{}session:", self.prefix);
            for (key, bytes) in keys.iter().zip(values) {
                // A key that is gone, or holds another type than a string.
                let Some(bytes) = bytes else { continue };
                match decode(&bytes, None) {
                    Ok(record) => records.push(record),
                    Err(err) => {
                        // The key ends with the id, as stored.
                        let id = key.strip_prefix(session_prefix.as_bytes()).unwrap_or(key);
                        unreadable.push(err.about(String::from_utf8_lossy(id)));
                    }
                }
            }
        }
        let page = Page {
            records,
            next: next.map(Cursor::new),
        };
        Ok((page, unreadable))
    }

    /// [`SessionStore::list_user`], with the errors of the user's sessions
    /// this store cannot read beside the records (as
    /// [`page_skipping_unreadable`](Self::page_skipping_unreadable) gives
    /// them), where `list_user` logs them.
    ///
    /// # Errors
    ///
    /// As [`SessionStore::list_user`], except for unreadable values.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use keepsake::store::{Id, Record, RedisStore, SessionStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?.with_prefix("app:");
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
        let mut invocation = LIST_USER.key(self.user_key(user));
        invocation
            .arg(&*self.prefix)
            .arg(hex(user.as_bytes()))
            .arg(now);
        let link = self.link("list_user").await?;
        let mut conn = link.conn();
        let found: Vec<(Vec<u8>, Vec<u8>)> = self
            .run("list_user", &link, invocation.invoke_async(&mut conn))
            .await?;
        let decoded = found.iter().map(|(id, bytes)| {
            decode(bytes, None).map_err(|err| err.about(String::from_utf8_lossy(id)))
        });
        let (mut records, unreadable) = super::split_readable(decoded);
        records.retain(|record| !record.is_expired_at(now));
        Ok((records, unreadable))
    }

    /// Deletes the session stored under `stored_id`, the id exactly as it
    /// is in the key (`<prefix>session:<stored_id>`), whether or not it is a
    /// keepsake session id: how an operator removes a key
    /// [`page_skipping_unreadable`](Self::page_skipping_unreadable) reported
    /// (`keepsake sessions revoke --raw`). For a valid id it is
    /// [`SessionStore::delete`]; any other key is deleted with `DEL`, as it
    /// is (whatever its type). Whether there was such a key.
    ///
    /// # Errors
    ///
    /// As [`SessionStore::delete`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = keepsake::store::RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// // `keepsake:session:garbage`, written by hand or by another app.
    /// assert!(!store.delete_stored("garbage").await?);
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    pub async fn delete_stored(&self, stored_id: &str) -> Result<bool, StoreError> {
        if let Ok(id) = stored_id.parse::<Id>()
            && id.to_string() == stored_id
        {
            return self.delete(&id).await;
        }
        let key = format!("{}session:{stored_id}", self.prefix);
        let deleted: i64 = self.query("delete", redis::cmd("DEL").arg(&key)).await?;
        Ok(deleted > 0)
    }
}

/// Walks use `SCAN` on the prefix (never `KEYS`), asking for `limit` keys
/// per step; the cursor is Redis's `SCAN` cursor (and, for a page, the keys
/// of that step that earlier pages did not take). A page is one `SCAN` (or
/// none, while keys are left over) and one `MGET`; it may hold fewer than
/// `limit` records, or none, before the walk ends, and `SCAN` may return a
/// key twice if Redis resizes its keyspace during the walk. Sessions whose TTL has fired are gone and are
/// not seen; "expired" records are those whose deadline `now` has reached
/// while their TTL has not fired yet.
impl StoreAdmin for RedisStore {
    async fn page(&self, cursor: Option<&Cursor>, limit: usize) -> Result<Page, StoreError> {
        let (page, unreadable) = self.page_skipping_unreadable(cursor, limit).await?;
        match unreadable.into_iter().next() {
            Some(err) => Err(err),
            None => Ok(page),
        }
    }

    async fn count(&self, now: u64) -> Result<Counts, StoreError> {
        let mut counts = Counts::default();
        let mut cursor = 0;
        loop {
            let (next, keys) = self.scan_step(cursor, "session:*", SCAN_COUNT).await?;
            if !keys.is_empty() {
                let mut invocation = COUNT_SESSIONS.prepare_invoke();
                for key in &keys {
                    invocation.key(key.as_slice());
                }
                invocation.arg(now);
                let link = self.link("count").await?;
                let mut conn = link.conn();
                let (held, expired): (u64, u64) = self
                    .run("count", &link, invocation.invoke_async(&mut conn))
                    .await?;
                counts.total += held;
                counts.expired += expired;
            }
            cursor = next;
            if cursor == 0 {
                return Ok(counts);
            }
        }
    }

    async fn purge_step(
        &self,
        now: u64,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<PurgeStep, StoreError> {
        let (next, purged) = self.purge_scan(scan_cursor(cursor)?, now, limit).await?;
        Ok(PurgeStep {
            purged,
            next: (next != 0).then(|| Cursor::new(next.to_string())),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::store::conformance;

    /// The tests run one at a time: one counts the server's commands, one
    /// kills a connection, and every one adds commands to the counts.
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    fn url() -> Option<String> {
        let url = std::env::var("KEEPSAKE_TEST_REDIS_URL")
            .ok()
            .filter(|url| !url.is_empty());
        if url.is_none() {
            eprintln!("skipping: KEEPSAKE_TEST_REDIS_URL is not set");
        }
        url
    }

    /// A store under a fresh random prefix, so runs never collide.
    async fn store(url: &str) -> RedisStore {
        RedisStore::connect(url)
            .await
            .unwrap()
            .with_prefix(format!("keepsake-test-{}:", Id::random()))
    }

    /// Another connection to the same Redis (the store's own ignores its
    /// own changes for the cache: `NOLOOP`).
    async fn other_connection(url: &str) -> redis::aio::MultiplexedConnection {
        Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Another app server on the same Redis, under `store`'s prefix, with
    /// no cache (each of its loads reads Redis).
    async fn other_server(store: &RedisStore, url: &str) -> RedisStore {
        RedisStore::connect(url)
            .await
            .unwrap()
            .with_prefix(store.prefix())
            .with_local_cache(0)
    }

    impl RedisStore {
        /// The store's own connection, for commands of the tests.
        async fn admin(&self) -> redis::aio::MultiplexedConnection {
            self.link("admin").await.unwrap().conn()
        }
    }

    /// `save_shared` keeps the caller's record itself in the local cache
    /// (one allocation for the session, its last-saved copy and the cache),
    /// and a save that fails leaves the caller's record as it was.
    #[tokio::test]
    async fn the_cache_keeps_the_record_save_shared_was_given() {
        let Some(url) = url() else { return };
        let _serial = SERIAL.lock().await;
        let store = store(&url).await;
        let now = now();
        let mut record = Arc::new(Record::new(Id::random(), now, Some(600), 3_600));
        store.create(&record).await.unwrap();
        let saved = store.save_shared(&mut record, now).await.unwrap();
        assert_eq!((saved, record.version), (Saved::Saved { version: 1 }, 1));
        let loaded = store.load_shared(&record.id, now).await.unwrap().unwrap();
        assert!(
            Arc::ptr_eq(&loaded, &record),
            "the cache holds the saved record"
        );
        let mut stale = Arc::new(Record::clone(&record));
        Arc::make_mut(&mut stale).version = 0;
        let saved = store.save_shared(&mut stale, now).await.unwrap();
        assert_eq!((saved, stale.version), (Saved::Conflict, 0));
        let loaded = store.load_shared(&record.id, now).await.unwrap().unwrap();
        assert_eq!(loaded.version, 1, "the conflict changed nothing");
        cleanup(&store).await;
    }

    /// A store made on one runtime keeps working on another once the first
    /// has shut down, as a store kept in a `static` for many
    /// `#[tokio::test]`s (each its own runtime) is used: the task that sends
    /// its saves, and its connection, start again where it is used.
    #[test]
    fn a_store_outlives_the_runtime_it_was_made_on() {
        let Some(url) = url() else { return };
        let _serial = SERIAL.blocking_lock();
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        let now = now();
        let mut record = Record::new(Id::random(), now, Some(600), 3_600);
        let first = runtime();
        let store = first.block_on(async {
            let store = store(&url).await;
            store.create(&record).await.unwrap();
            let saved = store.save(&record, now).await.unwrap();
            assert_eq!(saved, Saved::Saved { version: 1 });
            store
        });
        drop(first);
        record.version = 1;
        runtime().block_on(async {
            let loaded = store.load(&record.id, now).await.unwrap();
            assert_eq!(loaded.as_ref(), Some(&record));
            let saved = store.save(&record, now).await.unwrap();
            assert_eq!(saved, Saved::Saved { version: 2 });
            let loaded = store.load(&record.id, now).await.unwrap().unwrap();
            assert_eq!(loaded.version, 2);
            assert!(store.delete(&record.id).await.unwrap());
            cleanup(&store).await;
        });
    }

    /// Deletes every key under the store's prefix; how many there were.
    async fn cleanup(store: &RedisStore) -> usize {
        let mut conn = store.admin().await;
        let pattern = format!("{}*", glob_escape(&store.prefix));
        let mut cursor = 0u64;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut conn)
                .await
                .unwrap();
            if !keys.is_empty() {
                let _: i64 = redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                deleted += keys.len();
            }
            cursor = next;
            if cursor == 0 {
                return deleted;
            }
        }
    }

    fn now() -> u64 {
        crate::codec::unix_now()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn conformance_against_real_redis() {
        let Some(url) = url() else { return };
        let _serial = SERIAL.lock().await;
        let store = store(&url).await;
        conformance::run_all(&store).await;
        // And a store without the local cache, which keeps no record.
        conformance::save_shared_is_save(&other_server(&store, &url).await).await;
        // Nothing the suite expired by hand may be left half-indexed.
        store.purge_expired(now() + 10 * 86_400).await.unwrap();
        cleanup(&store).await;
    }

    /// Per-command call counts from `INFO commandstats`.
    async fn command_stats(conn: &mut redis::aio::MultiplexedConnection) -> BTreeMap<String, u64> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(conn)
            .await
            .unwrap();
        info.lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("cmdstat_")?;
                let (name, stats) = rest.split_once(':')?;
                let calls = stats.split(',').find_map(|s| s.strip_prefix("calls="))?;
                Some((name.to_owned(), calls.trim().parse().ok()?))
            })
            .collect()
    }

    /// The commands Redis ran during `op` (not counting the `INFO` calls).
    async fn commands_of<F: Future<Output = ()>>(
        conn: &mut redis::aio::MultiplexedConnection,
        op: impl FnOnce() -> F,
    ) -> BTreeMap<String, u64> {
        let before = command_stats(conn).await;
        op().await;
        let after = command_stats(conn).await;
        after
            .into_iter()
            .filter(|(name, _)| name != "info")
            .filter_map(|(name, calls)| {
                let delta = calls - before.get(&name).copied().unwrap_or(0);
                (delta > 0).then_some((name, delta))
            })
            .collect()
    }

    /// Commands a script may run inside Redis (counted by Redis too).
    const INSIDE_SCRIPTS: &[&str] = &[
        "get", "getex", "set", "del", "exists", "type", "sadd", "srem", "expireat", "persist",
        "smembers",
    ];

    /// Whether `commands` is one `EVALSHA` plus what scripts run inside.
    fn one_evalsha(commands: &BTreeMap<String, u64>) -> bool {
        commands.get("evalsha") == Some(&1)
            && commands
                .keys()
                .all(|name| name == "evalsha" || INSIDE_SCRIPTS.contains(&name.as_str()))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_command_per_operation() {
        let Some(url) = url() else { return };
        let _serial = SERIAL.lock().await;
        // Without the local cache, every load is a GET (with it, see
        // `the_local_cache_serves_loads_and_follows_other_connections`).
        let store = store(&url).await.with_local_cache(0);
        let mut admin = other_connection(&url).await;
        let now = now();
        let mut record = Record::new(Id::random(), now, Some(60), 3_600);
        record.user = Some("ada".into());
        // Warm up: the first call of each script may load it.
        store.create(&record).await.unwrap();
        store.touch(&record.id, 0, now + 60, now).await.unwrap();
        let saved = store.save(&record, now).await.unwrap();
        assert_eq!(saved, Saved::Saved { version: 1 });
        record.version = 1;

        // Other clients of a shared server can only add to the counts, so
        // the first clean measurement of a few attempts is the store's own.
        let mut clean = [false; 3];
        for attempt in 0..30 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let load = commands_of(&mut admin, || async {
                assert!(store.load(&record.id, now).await.unwrap().is_some());
            })
            .await;
            let touch = commands_of(&mut admin, || async {
                let touched = store
                    .touch(&record.id, record.version, now + 60, now)
                    .await
                    .unwrap();
                assert_eq!(touched, Touched::Touched);
            })
            .await;
            let version = record.version;
            let save = commands_of(&mut admin, || async {
                let mut mine = record.clone();
                mine.version = version;
                mine.data.insert("attempt".into(), json!(attempt));
                assert_eq!(
                    store.save(&mine, now).await.unwrap(),
                    Saved::Saved {
                        version: version + 1
                    }
                );
            })
            .await;
            record.version += 1;
            eprintln!("attempt {attempt}: load {load:?}; touch {touch:?}; save {save:?}");
            clean[0] |= load == BTreeMap::from([("get".to_owned(), 1)]);
            clean[1] |= one_evalsha(&touch);
            clean[2] |= one_evalsha(&save);
            if clean == [true; 3] {
                break;
            }
        }
        cleanup(&store).await;
        assert_eq!(
            clean, [true; 3],
            "load = 1 GET, touch = 1 EVALSHA, save = 1 EVALSHA"
        );
    }

    /// Polls `load` of `id` until `done` says yes; how long it took.
    async fn until(
        store: &RedisStore,
        id: &Id,
        now: u64,
        done: impl Fn(&Option<Record>) -> bool,
    ) -> Duration {
        let start = std::time::Instant::now();
        loop {
            if let Ok(loaded) = store.load(id, now).await
                && done(&loaded)
            {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "the change was not seen within 3 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// A load the cache can answer sends nothing to Redis; a change or a
    /// deletion made by another connection is seen once its invalidation
    /// arrives; a save based on a copy that another server has since
    /// changed still meets the conflict.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_local_cache_serves_loads_and_follows_other_connections() {
        let Some(url) = url() else { return };
        let _serial = SERIAL.lock().await;
        let store = store(&url).await;
        let other = RedisStore::connect(&url)
            .await
            .unwrap()
            .with_prefix(store.prefix());
        let mut admin = other_connection(&url).await;
        let now = now();
        let mut record = Record::new(Id::random(), now, Some(60), 3_600);
        store.create(&record).await.unwrap();
        assert_eq!(
            store.load(&record.id, now).await.unwrap(),
            Some(record.clone())
        );

        // Other clients of a shared server can only add to the counts, so
        // the first clean measurement of a few is the store's own.
        let mut from_cache = false;
        for _ in 0..30 {
            let load = commands_of(&mut admin, || async {
                assert!(store.load(&record.id, now).await.unwrap().is_some());
            })
            .await;
            from_cache |= load.is_empty();
            if from_cache {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(from_cache, "a cached load sends no command");

        // Another app server saves: the cached copy goes.
        record.data.insert("by".into(), json!("other"));
        assert_eq!(
            other.save(&record, now).await.unwrap(),
            Saved::Saved { version: 1 }
        );
        let took = until(&store, &record.id, now, |r| {
            r.as_ref()
                .is_some_and(|r| r.version == 1 && r.data["by"] == "other")
        })
        .await;
        eprintln!("another server's save seen after {took:?}");

        // A save based on a copy that has since changed elsewhere: still
        // the store's compare-and-set decides.
        record.version = 1;
        assert_eq!(
            other.save(&record, now).await.unwrap(),
            Saved::Saved { version: 2 }
        );
        assert_eq!(store.save(&record, now).await.unwrap(), Saved::Conflict);
        until(&store, &record.id, now, |r| {
            r.as_ref().is_some_and(|r| r.version == 2)
        })
        .await;

        // Deleted by another client (`keepsake sessions revoke`): gone here.
        let _: i64 = redis::cmd("DEL")
            .arg(store.session_key(&record.id))
            .query_async(&mut admin)
            .await
            .unwrap();
        let took = until(&store, &record.id, now, Option::is_none).await;
        eprintln!("another client's delete seen after {took:?}");
        cleanup(&store).await;
    }

    /// After this store's own create or save (whose copy the cache keeps),
    /// another server's change is still seen at once, long before the
    /// second of silence after which the cache is not trusted anyway: the
    /// scripts' read-back keeps Redis tracking the key for this connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_change_after_our_own_write_is_seen_at_once() {
        let Some(url) = url() else { return };
        let _serial = SERIAL.lock().await;
        let store = store(&url).await;
        let other = other_server(&store, &url).await;
        let mut admin = other_connection(&url).await;
        let now = now();
        for save_first in [false, true] {
            let mut record = Record::new(Id::random(), now, Some(60), 3_600);
            store.create(&record).await.unwrap();
            if save_first {
                record.data.insert("by".into(), json!("us"));
                assert_eq!(
                    store.save(&record, now).await.unwrap(),
                    Saved::Saved { version: 1 }
                );
                record.version = 1;
            }
            let cached = commands_of(&mut admin, || async {
                assert_eq!(
                    store.load(&record.id, now).await.unwrap(),
                    Some(record.clone())
                );
            })
            .await;
            assert!(cached.is_empty(), "the written copy is cached: {cached:?}");

            record.data.insert("by".into(), json!("other"));
            let version = record.version + 1;
            assert_eq!(
                other.save(&record, now).await.unwrap(),
                Saved::Saved { version }
            );
            let took = until(&store, &record.id, now, |r| {
                r.as_ref().is_some_and(|r| r.version == version)
            })
            .await;
            eprintln!(
                "after our own {}: another server's save seen after {took:?}",
                if save_first { "save" } else { "create" }
            );
            assert!(
                took < Duration::from_millis(300),
                "seen only after {took:?}"
            );

            let _: i64 = redis::cmd("DEL")
                .arg(store.session_key(&record.id))
                .query_async(&mut admin)
                .await
                .unwrap();
            until(&store, &record.id, now, Option::is_none).await;
        }
        cleanup(&store).await;
    }

    /// A clone without the cache shares its connection, and the cache of
    /// its siblings: its writes settle their copies at once (Redis sends no
    /// invalidation for a connection's own writes).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_clone_without_the_cache_still_settles_its_siblings_copies() {
        let Some(url) = url() else { return };
        let _serial = SERIAL.lock().await;
        let store = store(&url).await;
        let uncached = store.clone().with_local_cache(0);
        assert_eq!(store.local_cache(), 10_000);
        assert_eq!(uncached.local_cache(), 0);
        let now = now();
        let mut record = Record::new(Id::random(), now, Some(60), 3_600);
        store.create(&record).await.unwrap();
        assert!(store.load(&record.id, now).await.unwrap().is_some());
        record.data.insert("by".into(), json!("uncached"));
        assert_eq!(
            uncached.save(&record, now).await.unwrap(),
            Saved::Saved { version: 1 }
        );
        let loaded = store.load(&record.id, now).await.unwrap().unwrap();
        assert_eq!(
            (loaded.version, &loaded.data["by"]),
            (1, &json!("uncached"))
        );
        assert!(uncached.delete(&record.id).await.unwrap());
        assert!(store.load(&record.id, now).await.unwrap().is_none());
        cleanup(&store).await;
    }

    /// When its connection is closed, the store empties its cache: a
    /// change made while it was disconnected is seen once it reconnects.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_local_cache_is_emptied_when_the_connection_closes() {
        let Some(url) = url() else { return };
        let _serial = SERIAL.lock().await;
        let store = store(&url).await;
        let other = other_server(&store, &url).await;
        let mut admin = other_connection(&url).await;
        let now = now();
        let record = Record::new(Id::random(), now, Some(60), 3_600);
        store.create(&record).await.unwrap();
        assert!(store.load(&record.id, now).await.unwrap().is_some());
        let mut conn = store.admin().await;
        let id: i64 = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut conn)
            .await
            .unwrap();
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(&mut admin)
            .await
            .unwrap();
        assert_eq!(killed, 1);
        assert_eq!(
            other.save(&record, now).await.unwrap(),
            Saved::Saved { version: 1 }
        );
        until(&store, &record.id, now, |r| {
            r.as_ref().is_some_and(|r| r.version == 1)
        })
        .await;
        cleanup(&store).await;
    }

    /// `url` with the credentials of Redis user `user` instead of its own.
    fn as_user(url: &str, user: &str, password: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        format!("{scheme}://{user}:{password}@{host}")
    }

    /// A Redis user that may not run `CLIENT TRACKING`, or only `CLIENT
    /// CACHING` (which every tracked command is sent after), gets a store
    /// that works without the local cache: its connection does not track
    /// (tracking is turned off again after `CLIENT CACHING` is refused),
    /// every load reads Redis, and another server's change is seen at once.
    /// Each case makes its own ACL user on the test server, deleted at the
    /// end even if the case fails.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_user_refused_client_tracking_or_caching_gets_no_cache() {
        let Some(url) = url() else { return };
        let _serial = SERIAL.lock().await;
        let mut admin = other_connection(&url).await;
        for refused in ["-client|tracking", "-client|caching"] {
            let user = format!("keepsake-test-{}", hex(&Id::random().as_bytes()[..8]));
            let password = hex(Id::random().as_bytes());
            let _: () = redis::cmd("ACL")
                .arg("SETUSER")
                .arg(&user)
                .arg("on")
                .arg(format!(">{password}"))
                .arg("~*")
                .arg("&*")
                .arg("+@all")
                .arg(refused)
                .query_async(&mut admin)
                .await
                .unwrap();
            let user_url = as_user(&url, &user, &password);
            let main_url = url.clone();
            let case = tokio::spawn(async move {
                let store = store(&user_url).await;
                let other = other_server(&store, &main_url).await;
                let mut admin = other_connection(&main_url).await;
                let now = now();
                let mut record = Record::new(Id::random(), now, Some(60), 3_600);
                assert_eq!(store.create(&record).await.unwrap(), Created::Created);
                assert_eq!(
                    store.load(&record.id, now).await.unwrap(),
                    Some(record.clone())
                );
                assert_eq!(
                    store.save(&record, now).await.unwrap(),
                    Saved::Saved { version: 1 }
                );
                record.version = 1;
                let link = store.link("test").await.unwrap();
                assert!(!store.tracked(&link).await && !store.conn.trusted(&link));
                let mut conn = link.conn();
                let info: redis::Value = redis::cmd("CLIENT")
                    .arg("TRACKINGINFO")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                let flags = match info {
                    redis::Value::Map(fields) => fields
                        .into_iter()
                        .find(|(name, _)| {
                            matches!(name, redis::Value::BulkString(n) if n == b"flags")
                                || matches!(name, redis::Value::SimpleString(n) if n == "flags")
                        })
                        .map(|(_, flags)| flags),
                    _ => None,
                };
                let flags: Vec<String> = redis::from_redis_value(flags.unwrap()).unwrap();
                assert_eq!(flags, ["off"], "{refused}");
                for _ in 0..3 {
                    let load = commands_of(&mut admin, || async {
                        assert!(store.load(&record.id, now).await.unwrap().is_some());
                    })
                    .await;
                    assert!(load.get("get").is_some_and(|&n| n >= 1), "{load:?}");
                }
                record.data.insert("by".into(), json!("other"));
                assert_eq!(
                    other.save(&record, now).await.unwrap(),
                    Saved::Saved { version: 2 }
                );
                let loaded = store.load(&record.id, now).await.unwrap().unwrap();
                assert_eq!((loaded.version, &loaded.data["by"]), (2, &json!("other")));
                assert!(store.delete(&record.id).await.unwrap());
                cleanup(&store).await;
            })
            .await;
            let deleted: i64 = redis::cmd("ACL")
                .arg("DELUSER")
                .arg(&user)
                .query_async(&mut admin)
                .await
                .unwrap();
            assert_eq!(deleted, 1);
            if let Err(err) = case {
                std::panic::resume_unwind(err.into_panic());
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reconnects_after_the_connection_is_killed() {
        let Some(url) = url() else { return };
        let _serial = SERIAL.lock().await;
        let store = store(&url).await;
        let now = now();
        let record = Record::new(Id::random(), now, Some(60), 3_600);
        store.create(&record).await.unwrap();
        let client_id = |store: RedisStore| async move {
            // The store notices the closed connection when it reads from
            // it: a few tries.
            for _ in 0..20 {
                let mut conn = store.admin().await;
                match redis::cmd("CLIENT")
                    .arg("ID")
                    .query_async::<i64>(&mut conn)
                    .await
                {
                    Ok(id) => return id,
                    Err(err) => {
                        store.link("admin").await.unwrap().failed(&err);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            panic!("no CLIENT ID");
        };
        let old_id = client_id(store.clone()).await;
        let mut admin = other_connection(&url).await;
        // Only the store's connection, not other tests' connections.
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(old_id)
            .query_async(&mut admin)
            .await
            .unwrap();
        assert_eq!(killed, 1);
        // The first call may fail (Unavailable, not a panic or a hang);
        // the store reconnects, and a retry succeeds.
        let mut failures = 0;
        let loaded = loop {
            match store.load(&record.id, now).await {
                Ok(loaded) => break loaded,
                Err(err) => {
                    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
                    failures += 1;
                    assert!(failures < 20, "no reconnect after {failures} tries: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        assert_eq!(loaded.as_ref(), Some(&record));
        let new_id = client_id(store.clone()).await;
        assert_ne!(old_id, new_id, "a new connection");
        eprintln!("reconnected after {failures} failed call(s)");
        cleanup(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scripts_are_reloaded_after_a_script_flush() {
        let Some(url) = url() else { return };
        let _serial = SERIAL.lock().await;
        let store = store(&url).await;
        let now = now();
        let record = Record::new(Id::random(), now, Some(60), 3_600);
        store.create(&record).await.unwrap();
        // As after a Redis restart: the server has forgotten every script.
        let mut conn = store.admin().await;
        let () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            store.touch(&record.id, 0, now + 60, now).await.unwrap(),
            Touched::Touched
        );
        assert_eq!(
            store.save(&record, now).await.unwrap(),
            Saved::Saved { version: 1 }
        );
        cleanup(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn native_expiry_follows_the_deadline() {
        let Some(url) = url() else { return };
        let _serial = SERIAL.lock().await;
        let store = store(&url).await;
        let mut conn = store.admin().await;
        let now = now();
        let mut record = Record::new(Id::random(), now, Some(60), 3_600);
        record.user = Some("exp ✓".into());
        store.create(&record).await.unwrap();
        let admin = conn.clone();
        let expire_time = |key: String| {
            let mut conn = admin.clone();
            async move {
                redis::cmd("EXPIRETIME")
                    .arg(key)
                    .query_async::<i64>(&mut conn)
                    .await
                    .unwrap()
            }
        };
        let key = store.session_key(&record.id);
        let user_key = store.user_key("exp ✓");
        assert_eq!(
            expire_time(key.clone()).await,
            i64::try_from(now + 60).unwrap()
        );
        assert_eq!(
            expire_time(user_key.clone()).await,
            i64::try_from(now + 60).unwrap()
        );
        store
            .touch(&record.id, 0, now + 600, now + 1)
            .await
            .unwrap();
        assert_eq!(
            expire_time(key.clone()).await,
            i64::try_from(now + 600).unwrap()
        );
        assert_eq!(
            expire_time(user_key.clone()).await,
            i64::try_from(now + 600).unwrap()
        );
        // The value is JSON with a format version, the data untouched.
        let raw: String = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(raw.starts_with(r#"{"format":1,"version":0,"#), "{raw}");
        // The user's index lives as long as the longest of their sessions,
        // and for ever once one of them has no expiry.
        let create_for_user = async |idle: Option<u64>, absolute: u64| {
            let mut record = Record::new(Id::random(), now, idle, absolute);
            record.user = Some("exp ✓".into());
            store.create(&record).await.unwrap();
            expire_time(user_key.clone()).await
        };
        let at = |secs: u64| i64::try_from(now + secs).unwrap();
        assert_eq!(create_for_user(Some(900), 3_600).await, at(900));
        assert_eq!(create_for_user(Some(60), 3_600).await, at(900));
        assert_eq!(create_for_user(None, u64::MAX).await, -1);
        assert_eq!(create_for_user(Some(60), 3_600).await, -1);
        // A deadline Redis cannot express gets no native expiry.
        // `Record::new` caps its deadlines; a record made by hand need not.
        let mut forever = Record::new(Id::random(), now, None, 1);
        forever.absolute_deadline = u64::MAX;
        store.create(&forever).await.unwrap();
        assert_eq!(expire_time(store.session_key(&forever.id)).await, -1);
        assert!(store.load(&forever.id, now).await.unwrap().is_some());
        assert_eq!(
            store
                .touch(&forever.id, 0, u64::MAX - 1, now)
                .await
                .unwrap(),
            Touched::Touched
        );
        let loaded = store.load(&forever.id, now).await.unwrap().unwrap();
        assert_eq!(
            loaded.idle_deadline,
            Some(u64::MAX - 1),
            "exact, no float rounding"
        );
        cleanup(&store).await;
    }

    /// Paging one record at a time while sessions end (each page's session
    /// is deleted before the next page is asked for, as visitors log out
    /// during an operator's `list`): every session is listed. A `SCAN` step
    /// may find several keys; run again from the same cursor it finds
    /// fewer once one is gone, so a page must not skip by position.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn paging_sees_every_session_while_sessions_end() {
        use crate::store::admin::{Cursor, StoreAdmin as _};
        let Some(url) = url() else { return };
        let _serial = SERIAL.lock().await;
        let store = store(&url).await;
        let now = now();
        let mut ids = Vec::new();
        for _ in 0..200 {
            let record = Record::new(Id::random(), now, None, 3_600);
            store.create(&record).await.unwrap();
            ids.push(record.id);
        }
        ids.sort();
        let mut seen = Vec::new();
        let mut cursor: Option<Cursor> = None;
        loop {
            let page = store.page(cursor.as_ref(), 1).await.unwrap();
            for record in &page.records {
                seen.push(record.id);
                store.delete(&record.id).await.unwrap();
            }
            let Some(next) = page.next else { break };
            cursor = Some(next);
        }
        cleanup(&store).await;
        seen.sort();
        seen.dedup();
        assert_eq!(
            seen.len(),
            ids.len(),
            "listed {} of {}",
            seen.len(),
            ids.len()
        );
        assert_eq!(seen, ids);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn purge_cleans_stale_user_members() {
        let Some(url) = url() else { return };
        let _serial = SERIAL.lock().await;
        let store = store(&url).await;
        let mut conn = store.admin().await;
        let now = now();
        let mut record = Record::new(Id::random(), now, None, 3_600);
        record.user = Some("stale".into());
        store.create(&record).await.unwrap();
        // Expire the session behind the index's back, as Redis's TTL would.
        let _: i64 = redis::cmd("DEL")
            .arg(store.session_key(&record.id))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(store.purge_expired(now).await.unwrap(), 0);
        let members: i64 = redis::cmd("SCARD")
            .arg(store.user_key("stale"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(members, 0);
        assert_eq!(cleanup(&store).await, 0, "nothing left behind");
    }

    /// Every script that writes a session keeps its user's index: the
    /// scripts find the prefix and id of the index entry from the session
    /// key alone, so this looks at the index itself.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_script_keeps_the_user_index() {
        let Some(url) = url() else { return };
        let _serial = SERIAL.lock().await;
        let store = store(&url).await;
        let conn = store.admin().await;
        let now = now();
        let user = |name: &str, mut record: Record| {
            record.user = Some(name.into());
            record
        };
        let (ada, bob) = (store.user_key("ada"), store.user_key("bob"));
        let listed = async |key: &str, id: &Id| -> bool {
            redis::cmd("SISMEMBER")
                .arg(key)
                .arg(id.to_string())
                .query_async(&mut conn.clone())
                .await
                .unwrap()
        };

        // CREATE links, TOUCH moves the index's expiry with the session's,
        // DELETE_IF_VERSION unlinks.
        let a = user("ada", Record::new(Id::random(), now, Some(600), 3_600));
        store.create(&a).await.unwrap();
        assert!(listed(&ada, &a.id).await);
        let touched = store.touch(&a.id, 0, now + 1_200, now).await.unwrap();
        assert_eq!(touched, Touched::Touched);
        assert!(listed(&ada, &a.id).await);
        let expires: u64 = redis::cmd("EXPIRETIME")
            .arg(&ada)
            .query_async(&mut conn.clone())
            .await
            .unwrap();
        assert_eq!(
            expires,
            now + 1_200,
            "the index lives as long as its session"
        );
        let deleted = store.delete_if_version(&a.id, a.version).await.unwrap();
        assert_eq!(deleted, Deleted::Deleted);
        assert!(!listed(&ada, &a.id).await);

        // DELETE unlinks.
        let b = user("ada", Record::new(Id::random(), now, Some(600), 3_600));
        store.create(&b).await.unwrap();
        assert!(store.delete(&b.id).await.unwrap());
        assert!(!listed(&ada, &b.id).await);

        // CREATE over an expired session of another user moves the entry,
        // and so does SAVE.
        let c = user("ada", Record::new(Id::random(), now, Some(600), 3_600));
        store.create(&c).await.unwrap();
        let later = now + 7_200;
        let mut c = user("bob", Record::new(c.id, later, Some(600), 3_600));
        assert_eq!(store.create(&c).await.unwrap(), Created::Created);
        assert!(!listed(&ada, &c.id).await);
        assert!(listed(&bob, &c.id).await);
        c.user = Some("ada".into());
        let saved = store.save(&c, later).await.unwrap();
        assert!(matches!(saved, Saved::Saved { .. }));
        assert!(listed(&ada, &c.id).await);
        assert!(!listed(&bob, &c.id).await);

        // A script that finds its session expired deletes and unlinks it.
        let d = user("ada", Record::new(Id::random(), now, Some(600), 3_600));
        store.create(&d).await.unwrap();
        let touched = store.touch(&d.id, 0, later + 600, later).await.unwrap();
        assert_eq!(touched, Touched::Gone);
        assert!(!listed(&ada, &d.id).await);

        cleanup(&store).await;
    }

    /// Puts a value no session has at `record`'s key: a string that is not
    /// a stored session, or a hash.
    async fn corrupt(store: &RedisStore, record: &Record, hash: bool) {
        let mut conn = store.admin().await;
        let key = store.session_key(&record.id);
        let mut command = redis::cmd(if hash { "HSET" } else { "SET" });
        command.arg(&key);
        if hash {
            command.arg("field");
        }
        let _: redis::Value = command
            .arg("not json")
            .query_async(&mut conn)
            .await
            .unwrap();
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(kind, if hash { "hash" } else { "string" });
    }

    fn kind<T>(result: Result<T, StoreError>) -> StoreErrorKind {
        result.map(|_| ()).unwrap_err().kind()
    }

    /// A key under the prefix whose value is no session (or whose id is not
    /// a keepsake id) fails `page`, naming it, and is left out by
    /// `page_skipping_unreadable`, named by its id as stored, which
    /// `delete_stored` takes; `delete_stored` of a valid id is a `delete`
    /// (the cached copy goes too).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreadable_keys_are_left_out_of_pages_and_deleted_raw() {
        let Some(url) = url() else { return };
        let _serial = SERIAL.lock().await;
        let store = store(&url).await;
        let now = now();
        let record = Record::new(Id::random(), now, None, 3_600);
        store.create(&record).await.unwrap();
        let mut conn = store.admin().await;
        let _: () = redis::cmd("SET")
            .arg(format!("{}session:garbage", store.prefix))
            .arg("hello")
            .query_async(&mut conn)
            .await
            .unwrap();
        let err = store.page(None, 10).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err}");
        assert_eq!(err.session_id(), Some("garbage"));
        let (page, unreadable) = store.page_skipping_unreadable(None, 10).await.unwrap();
        assert_eq!((page.records, page.next), (vec![record.clone()], None));
        assert_eq!(unreadable.len(), 1);
        assert_eq!(unreadable[0].session_id(), Some("garbage"));
        assert!(store.delete_stored("garbage").await.unwrap());
        assert!(!store.delete_stored("garbage").await.unwrap());
        assert_eq!(store.page(None, 10).await.unwrap().records.len(), 1);
        assert!(store.load(&record.id, now).await.unwrap().is_some());
        assert!(store.delete_stored(&record.id.to_string()).await.unwrap());
        assert!(store.load(&record.id, now).await.unwrap().is_none());
        assert_eq!(cleanup(&store).await, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn corrupt_values_are_reported() {
        let Some(url) = url() else { return };
        let _serial = SERIAL.lock().await;
        let store = store(&url).await;
        let now = now();
        for hash in [false, true] {
            let record = Record::new(Id::random(), now, None, 3_600);
            corrupt(&store, &record, hash).await;
            let corrupt = StoreErrorKind::Corrupt;
            assert_eq!(
                kind(store.load(&record.id, now).await),
                corrupt,
                "hash: {hash}"
            );
            assert_eq!(
                kind(store.save(&record, now).await),
                corrupt,
                "hash: {hash}"
            );
            assert_eq!(
                kind(store.touch(&record.id, 0, now, now).await),
                corrupt,
                "hash: {hash}"
            );
            assert_eq!(kind(store.create(&record).await), corrupt, "hash: {hash}");
            assert!(store.delete(&record.id).await.unwrap(), "hash: {hash}");
            assert_eq!(store.load(&record.id, now).await.unwrap(), None);
        }
        cleanup(&store).await;
    }

    /// The header the store expects for a save is byte for byte what Redis
    /// holds after a create, a save and a touch (which the `TOUCH` script
    /// writes itself), with and without a user and an idle deadline.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_expected_header_is_what_redis_holds() {
        let Some(url) = url() else { return };
        let _serial = SERIAL.lock().await;
        let store = store(&url).await;
        let mut conn = store.admin().await;
        let now = now();
        for (user, idle) in [(None, Some(60)), (Some("usér \"ü\""), None)] {
            let mut record = Record::new(Id::random(), now, idle, 3_600);
            record.user = user.map(Into::into);
            record.data.insert("k".into(), json!("v"));
            store.create(&record).await.unwrap();
            store.save(&record, now).await.unwrap();
            for step in ["save", "touch"] {
                let raw: Vec<u8> = redis::cmd("GET")
                    .arg(store.session_key(&record.id))
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                let held = decode(&raw, Some(&record.id)).unwrap();
                assert!(
                    raw.starts_with(&header(&held, held.version)),
                    "{step}: {}",
                    String::from_utf8_lossy(&raw)
                );
                let touched = store.touch(&record.id, held.version, now + 30, now);
                assert_eq!(touched.await.unwrap(), Touched::Touched, "{step}");
            }
        }
        cleanup(&store).await;
    }

    /// Two app servers with their own caches (so both send the headers
    /// they expect) increment one counter concurrently, replaying on every
    /// conflict, while a third touches the session (which changes the
    /// stored header but not its version): every increment lands once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_servers_with_caches_lose_no_increment() {
        const EACH: u64 = 150;
        let Some(url) = url() else { return };
        let _serial = SERIAL.lock().await;
        let store = store(&url).await;
        let other = RedisStore::connect(&url)
            .await
            .unwrap()
            .with_prefix(store.prefix());
        let now = now();
        let mut record = Record::new(Id::random(), now, Some(600), 3_600);
        record.data.insert("n".into(), json!(0));
        store.create(&record).await.unwrap();
        let id = record.id;
        let increments = |server: RedisStore| async move {
            let mut conflicts = 0_u64;
            for _ in 0..EACH {
                loop {
                    let mut record = server.load_shared(&id, now).await.unwrap().unwrap();
                    let n = record.data["n"].as_u64().unwrap();
                    Arc::make_mut(&mut record)
                        .data
                        .insert("n".into(), json!(n + 1));
                    match server.save_shared(&mut record, now).await.unwrap() {
                        Saved::Saved { .. } => break,
                        Saved::Conflict => conflicts += 1,
                        Saved::Gone => panic!("the session went"),
                    }
                }
            }
            conflicts
        };
        let toucher = other_server(&store, &url).await;
        let touches = async {
            for i in 0..EACH {
                // At the version it last saw, as the middleware touches:
                // a save in between makes the touch outdated.
                let seen = toucher.load(&id, now).await.unwrap().unwrap().version;
                toucher.touch(&id, seen, now + 600 + i, now).await.unwrap();
                tokio::task::yield_now().await;
            }
        };
        let (a, b, ()) = tokio::join!(
            tokio::spawn(increments(store.clone())),
            tokio::spawn(increments(other)),
            touches
        );
        let conflicts = a.unwrap() + b.unwrap();
        let held = store
            .clone()
            .with_local_cache(0)
            .load(&id, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            held.data["n"],
            json!(2 * EACH),
            "{conflicts} conflicts replayed"
        );
        assert_eq!(held.version, 2 * EACH);
        eprintln!("{} increments, {conflicts} conflicts replayed", 2 * EACH);
        cleanup(&store).await;
    }

    /// The `SAVE` script writes with no further check only when Redis holds
    /// exactly the header it was given, and makes the full check otherwise:
    /// shown with a stored session that expired at `now` (for which the
    /// store never sends a header). With its exact header it is written;
    /// with its version alone, or a header that differs in the idle
    /// deadline (as after another server's touch), it is found gone and
    /// deleted. A header of an older version is a conflict, and a missing
    /// session is gone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_save_script_trusts_only_the_exact_header() {
        /// Runs `SAVE` alone: `record` over `expected`, at `now`.
        async fn save(store: &RedisStore, record: &Record, expected: Vec<u8>, now: u64) -> i64 {
            let mut cmd = evalsha(&SAVE, 1);
            cmd.arg(store.session_key(&record.id))
                .arg("0")
                .arg(expected)
                .arg(encode(record, 4))
                .arg(now)
                .arg(expire_at(now + 60))
                .arg("");
            let request = Request::new(cmd, false);
            let codes: Vec<i64> = eval(&mut store.admin().await, &SAVE, &request)
                .await
                .unwrap();
            codes[0]
        }
        /// Stores `record` at version 3, by hand.
        async fn put(store: &RedisStore, record: &Record) {
            let _: () = redis::cmd("SET")
                .arg(store.session_key(&record.id))
                .arg(encode(record, 3))
                .query_async(&mut store.admin().await)
                .await
                .unwrap();
        }
        let Some(url) = url() else { return };
        let _serial = SERIAL.lock().await;
        let store = store(&url).await;
        let now = now();
        let record = Record::new(Id::random(), now - 10, Some(10), 3_600);
        assert!(record.is_expired_at(now));
        put(&store, &record).await;
        assert_eq!(
            save(&store, &record, header(&record, 3), now).await,
            1,
            "exact header: written"
        );
        let mut touched = record.clone();
        touched.idle_deadline = Some(now + 5);
        for expected in [b"3".to_vec(), header(&touched, 3)] {
            put(&store, &record).await;
            assert_eq!(
                save(&store, &record, expected, now).await,
                -1,
                "full check: gone"
            );
            assert_eq!(
                store.load(&record.id, 0).await.unwrap(),
                None,
                "and deleted"
            );
        }
        put(&store, &touched).await;
        assert_eq!(
            save(&store, &touched, header(&touched, 2), now).await,
            0,
            "an older version"
        );
        assert_eq!(save(&store, &touched, header(&touched, 3), now).await, 1);
        store.delete(&touched.id).await.unwrap();
        assert_eq!(
            save(&store, &touched, header(&touched, 4), now).await,
            -1,
            "no session"
        );
        cleanup(&store).await;
    }

    /// Saves sent together in one `SAVE` call each get their own status: a
    /// session key holding a hash fails its own save only.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_corrupt_session_fails_only_its_own_save_in_a_batch() {
        let Some(url) = url() else { return };
        let _serial = SERIAL.lock().await;
        let store = store(&url).await;
        let now = now();
        let mut records = Vec::new();
        for _ in 0..40 {
            let record = Record::new(Id::random(), now, None, 3_600);
            store.create(&record).await.unwrap();
            records.push(record);
        }
        let bad = Record::new(Id::random(), now, None, 3_600);
        corrupt(&store, &bad, true).await;
        // The first save goes alone; the rest queue behind it and go in
        // one or two calls, the corrupt one among them.
        records.insert(20, bad.clone());
        let saves = records.iter().map(|record| store.save(record, now));
        let results = futures_util::future::join_all(saves).await;
        for (record, result) in records.iter().zip(results) {
            if record.id == bad.id {
                assert_eq!(kind(result), StoreErrorKind::Corrupt);
            } else {
                assert_eq!(result.unwrap(), Saved::Saved { version: 1 });
            }
        }
        cleanup(&store).await;
    }

    /// A user's index key holding another type (written by hand, or by
    /// another app) fails the saves, creates and touches of that user's
    /// sessions as corrupt, and writes nothing for them: the rest of a
    /// batched save goes through.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_broken_user_index_fails_only_its_users_sessions() {
        let Some(url) = url() else { return };
        let _serial = SERIAL.lock().await;
        let store = store(&url).await;
        let mut admin = other_connection(&url).await;
        let now = now();
        let user = format!("mallory-{}", Id::random());
        let mut records = Vec::new();
        for _ in 0..40 {
            let record = Record::new(Id::random(), now, None, 3_600);
            store.create(&record).await.unwrap();
            records.push(record);
        }
        let mut bad = Record::new(Id::random(), now, Some(60), 3_600);
        bad.user = Some(user.clone());
        store.create(&bad).await.unwrap();
        let _: () = redis::cmd("SET")
            .arg(store.user_key(&user))
            .arg("not a set")
            .query_async(&mut admin)
            .await
            .unwrap();
        let stored = || async {
            let value: Option<String> = redis::cmd("GET")
                .arg(store.session_key(&bad.id))
                .query_async(&mut other_connection(&url).await)
                .await
                .unwrap();
            value
        };
        let before = stored().await;

        records.insert(20, bad.clone());
        let saves = records.iter().map(|record| store.save(record, now));
        let results = futures_util::future::join_all(saves).await;
        for (record, result) in records.iter().zip(results) {
            if record.id == bad.id {
                let err = result.unwrap_err();
                assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err}");
                assert!(err.to_string().contains("user"), "{err}");
            } else {
                assert_eq!(result.unwrap(), Saved::Saved { version: 1 });
            }
        }
        assert_eq!(stored().await, before, "nothing written for the session");

        // A user's first session, and a touch, meet the same check.
        let mut fresh = Record::new(Id::random(), now, Some(60), 3_600);
        fresh.user = Some(user.clone());
        assert_eq!(kind(store.create(&fresh).await), StoreErrorKind::Corrupt);
        assert_eq!(store.load(&fresh.id, now).await.unwrap(), None);
        assert_eq!(
            kind(store.touch(&bad.id, 0, now + 90, now).await),
            StoreErrorKind::Corrupt
        );
        assert_eq!(stored().await, before, "the touch wrote nothing");
        cleanup(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn errors_map_to_kinds() {
        // Connection refused: Unavailable, quickly.
        let err = RedisStore::connect("redis://127.0.0.1:1")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
        let err = RedisStore::connect("not a url").await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
        // No TLS in this build (as `connect` says): refused as a URL, before
        // any connection is tried.
        let err = RedisStore::connect("rediss://127.0.0.1:1")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
        assert!(err.to_string().contains("invalid Redis URL"), "{err}");
        let Some(url) = url() else { return };
        let _serial = SERIAL.lock().await;
        let store = store(&url)
            .await
            .with_command_timeout(Duration::from_millis(20));
        let link = store.link("stuck").await.unwrap();
        let err = store
            .run(
                "stuck",
                &link,
                std::future::pending::<Result<(), RedisError>>(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Timeout, "{err}");
        assert!(!format!("{store:?}").contains("redis://"));
    }

    #[test]
    fn encoding_round_trips() {
        let mut record = Record::new(Id::random(), 5, Some(60), 3_600);
        record.user = Some("usér ✓".into());
        record.data.insert("k".into(), json!({"a": [1, 2.5, null]}));
        let bytes = encode(&record, 3);
        let decoded = decode(&bytes, Some(&record.id)).unwrap();
        assert_eq!(decoded.version, 3);
        record.version = 3;
        assert_eq!(decoded, record);
        assert_eq!(
            decode(&bytes, Some(&Id::random())).unwrap_err().kind(),
            StoreErrorKind::Corrupt
        );
        // An undecodable record is described, never quoted.
        let secret = br#"{"data":"card=4111111111111111 pw=hunter2"}"#;
        let err = decode(secret, None).unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Corrupt);
        for shown in [
            err.to_string(),
            format!("{err:?}"),
            err.with_causes().to_string(),
        ] {
            assert!(
                !shown.contains("4111") && !shown.contains("hunter2"),
                "{shown}"
            );
            assert!(shown.contains("at line 1 column"), "{shown}");
        }
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(unhex(&hex("ключ".as_bytes())).as_deref(), Some("ключ"));
        assert_eq!(expire_at(0), "1");
        assert_eq!(expire_at(u64::MAX), "");
    }
}
