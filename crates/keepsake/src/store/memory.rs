//! The in-memory store: [`MemoryStore`], built with [`MemoryStoreBuilder`].
//!
//! Sessions live in the process's memory, so they are lost on restart and
//! not shared between processes. That suits development, tests, and a
//! single-process app that accepts logging everyone out on deploy. The store
//! is sharded for concurrency, bounded in size (it refuses new sessions when
//! full rather than evicting live ones), and purges expired records a few at
//! a time as it is used. A record found expired is removed, so it cannot
//! come back if the clock goes back.
//!
//! # Example
//!
//! ```
//! use keepsake::store::{Created, Id, MemoryStore, Record, SessionStore};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = MemoryStore::builder().shards(4).max_records(1_000).build();
//! let record = Record::new(Id::random(), 1_000, Some(60), 3_600);
//! assert_eq!(store.create(&record).await?, Created::Created);
//! assert_eq!(store.len(), 1);
//! // The idle deadline (1_060) ends the session.
//! assert!(store.load(&record.id, 1_059).await?.is_some());
//! assert!(store.load(&record.id, 1_060).await?.is_none());
//! // Found expired, so removed: an earlier time does not bring it back.
//! assert!(store.is_empty());
//! assert!(store.load(&record.id, 1_059).await?.is_none());
//!
//! // Records nobody loads again are removed by a purge.
//! let other = Record::new(Id::random(), 1_000, Some(60), 3_600);
//! store.create(&other).await?;
//! assert_eq!(store.purge_expired(1_060).await?, 1);
//! assert!(store.is_empty());
//! # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
//! ```

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    fmt,
    hash::{BuildHasher as _, RandomState},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
};

use super::{
    Created, Deleted, Id, IdHash, Record, Saved, SessionStore, StoreError, StoreErrorKind, Touched,
};

/// Default number of shards.
const DEFAULT_SHARDS: usize = 16;

/// Default bound on the number of records held.
const DEFAULT_MAX_RECORDS: usize = 100_000;

/// Expired records a mutating call removes from the front of its shard's
/// expiry index, on top of its own work.
const PURGE_ON_WRITE: usize = 8;

/// Expired records `create` removes when the store is full, before giving
/// up.
const PURGE_WHEN_FULL: usize = 256;

/// Expired records [`SessionStore::purge_expired`] removes per lock hold;
/// it yields to the runtime after each batch, so a large purge never holds
/// a shard's lock, nor its worker thread, for long.
const PURGE_BATCH: usize = 256;

/// An in-memory [`SessionStore`]: sharded, bounded, self-purging.
///
/// Cloning is cheap and gives another handle to the *same* sessions (an
/// [`Arc`] inside), so one store can be shared by every worker.
///
/// # Sharding
///
/// Records are spread over a number of shards (16 by default, see
/// [`MemoryStoreBuilder::shards`]) by their id, which is random, so load
/// spreads evenly. Each shard has its own mutex, held only for the few
/// map operations of one call and never across an `.await`, so requests for
/// different sessions rarely wait for each other. A separate, equally
/// sharded index maps each user to their session ids, for
/// [`delete_user`](SessionStore::delete_user) and
/// [`list_user`](SessionStore::list_user).
///
/// # The bound, and why new sessions are refused
///
/// The store holds at most [`max_records`](MemoryStoreBuilder::max_records)
/// records (100 000 by default), so a flood of cookie-less requests cannot
/// exhaust the server's memory. When a [`create`](SessionStore::create)
/// would exceed the bound, the store first purges records that have
/// expired by the time of that `create` (see below; a bounded number: up to
/// 256, from the shard the new id falls in, or if none have expired there,
/// from the first other shard that has some, locking one shard at a time);
/// if it is still full, `create` fails with [`StoreErrorKind::Full`] and the
/// middleware answers 503. Nothing that is live at that time is removed.
///
/// **The store refuses new sessions; it never evicts existing ones.**
/// Evicting (say, the least recently used session) would silently log out
/// real users, and under a flood of new sessions it would log out *all* of
/// them, handing an attacker a way to end everyone's session without any
/// credentials. Refusing keeps every logged-in user logged in; only
/// visitors without a session are turned away until sessions expire or
/// the bound is raised.
///
/// # Expiry and purging
///
/// A record is treated as absent from the moment `now` reaches its
/// [`Record::deadline`]: [`load`](SessionStore::load) returns `None`,
/// [`save`](SessionStore::save) and [`touch`](SessionStore::touch) return
/// `Gone`, and [`create`](SessionStore::create) replaces it. Each of them
/// also removes the record it found expired, so once the store has said a
/// session ended, it stays ended even if a later call is given an earlier
/// time (a clock set back).
///
/// `create` has no `now` argument. It takes as the current time the latest
/// time the new record itself vouches for: its
/// [`created_at`](Record::created_at), or, if later, the time its idle
/// deadline was last set at (`idle_deadline - idle_timeout`), which is the
/// time of the request for a session that moves to a new id (a login keeps
/// the session's `created_at`, and the middleware refreshes its idle
/// deadline before storing it). Every call goes by its own time only, never
/// by a time another call was given: a call given a wrong time (a clock
/// glitch a year ahead) acts on that time alone, and never makes later
/// calls treat live sessions as expired.
///
/// Memory is reclaimed without ever scanning all records on the request
/// path: each shard keeps its records ordered by deadline, and every
/// `create`, `save` and `touch` removes up to 8 expired records from the
/// front of its shard's order. [`purge_expired`](SessionStore::purge_expired)
/// walks each shard's order only as far as the records that have expired,
/// 256 at a time, holding the shard's lock for one batch only and yielding
/// to the runtime after each batch: a purge of hundreds of thousands of
/// records never holds up the requests of the worker thread it runs on for
/// longer than one batch takes, and it is cheap enough to run every minute
/// from a background task ([`PurgeTask`](super::PurgeTask)).
/// [`delete`](SessionStore::delete) and
/// [`delete_user`](SessionStore::delete_user) have no clock, so they remove
/// what they are asked to whether or not it has expired (and count it).
///
/// # Example
///
/// ```
/// use keepsake::store::{Id, MemoryStore, Record, Saved, SessionStore, StoreErrorKind};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryStore::builder().max_records(1).build();
/// let mut record = Record::new(Id::random(), 0, None, 100);
/// store.create(&record).await?;
///
/// // Full: the second session is refused, the first one is kept.
/// let other = Record::new(Id::random(), 0, None, 100);
/// let err = store.create(&other).await.unwrap_err();
/// assert_eq!(err.kind(), StoreErrorKind::Full);
/// record.user = Some("ada".into());
/// assert_eq!(store.save(&record, 50).await?, Saved::Saved { version: 1 });
///
/// // Once the first session has expired, there is room again.
/// let later = Record::new(Id::random(), 100, None, 100);
/// store.create(&later).await?;
/// assert_eq!(store.len(), 1);
/// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

/// Builds a [`MemoryStore`] with a chosen number of shards and bound.
///
/// # Example
///
/// ```
/// use keepsake::store::{MemoryStore, MemoryStoreBuilder};
///
/// let store = MemoryStoreBuilder::default().shards(8).max_records(10_000).build();
/// assert!(store.is_empty());
/// let text = format!("{:?}", MemoryStore::builder().shards(8));
/// assert!(text.contains("shards: 8"));
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStoreBuilder {
    shards: usize,
    max_records: usize,
}

impl Default for MemoryStoreBuilder {
    fn default() -> Self {
        Self {
            shards: DEFAULT_SHARDS,
            max_records: DEFAULT_MAX_RECORDS,
        }
    }
}

impl MemoryStoreBuilder {
    /// The number of shards (default 16; 0 is taken as 1). More shards let
    /// more requests for different sessions proceed at once; it need not be
    /// a power of two.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::MemoryStore;
    ///
    /// let store = MemoryStore::builder().shards(0).build();
    /// assert!(format!("{store:?}").contains("shards: 1"));
    /// ```
    #[must_use]
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards.max(1);
        self
    }

    /// The most records the store holds (default 100 000), counting expired
    /// records not yet purged. Beyond it, new sessions are refused with
    /// [`StoreErrorKind::Full`]; existing sessions are never evicted (see
    /// [`MemoryStore`] for why).
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{Id, MemoryStore, Record, SessionStore, StoreErrorKind};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryStore::builder().max_records(0).build();
    /// let err = store.create(&Record::new(Id::random(), 0, None, 60)).await.unwrap_err();
    /// assert_eq!(err.kind(), StoreErrorKind::Full);
    /// # });
    /// ```
    #[must_use]
    pub fn max_records(mut self, max_records: usize) -> Self {
        self.max_records = max_records;
        self
    }

    /// The store, empty.
    ///
    /// # Example
    ///
    /// ```
    /// let store = keepsake::store::MemoryStore::builder().shards(2).build();
    /// assert_eq!(store.len(), 0);
    /// ```
    #[must_use]
    pub fn build(self) -> MemoryStore {
        let shards = self.shards.max(1);
        MemoryStore {
            inner: Arc::new(Inner {
                shards: (0..shards).map(|_| Mutex::default()).collect(),
                users: (0..shards).map(|_| Mutex::default()).collect(),
                user_hasher: RandomState::new(),
                len: AtomicUsize::new(0),
                max_records: self.max_records,
            }),
        }
    }
}

impl MemoryStore {
    /// An empty store with the default settings: 16 shards, at most 100 000
    /// records.
    ///
    /// # Example
    ///
    /// ```
    /// let store = keepsake::store::MemoryStore::new();
    /// assert!(format!("{store:?}").contains("max_records: 100000"));
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder, to choose the number of shards and the bound.
    ///
    /// # Example
    ///
    /// ```
    /// let store = keepsake::store::MemoryStore::builder().max_records(50).build();
    /// assert!(format!("{store:?}").contains("max_records: 50"));
    /// ```
    #[must_use]
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder::default()
    }

    /// How many records the store holds, including expired ones not yet
    /// purged.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{Id, MemoryStore, Record, SessionStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryStore::new();
    /// store.create(&Record::new(Id::random(), 0, None, 10)).await?;
    /// store.create(&Record::new(Id::random(), 0, None, 20)).await?;
    /// assert_eq!(store.len(), 2);
    /// store.purge_expired(10).await?;
    /// assert_eq!(store.len(), 1);
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Acquire)
    }

    /// Whether the store holds no records (expired or not).
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{Id, MemoryStore, Record, SessionStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryStore::new();
    /// assert!(store.is_empty());
    /// let record = Record::new(Id::random(), 0, None, 10);
    /// store.create(&record).await?;
    /// assert!(!store.is_empty());
    /// store.delete(&record.id).await?;
    /// assert!(store.is_empty());
    /// # Ok::<(), keepsake::store::StoreError>(()) }).unwrap();
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    /// Counts and limits only: never an id or any session data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("len", &self.len())
            .field("max_records", &self.inner.max_records)
            .field("shards", &self.inner.shards.len())
            .finish()
    }
}

/// The state behind every clone of one store.
struct Inner {
    /// The records, by id.
    shards: Box<[Mutex<Shard>]>,
    /// Each user's session ids, by a keyed hash of the user.
    ///
    /// Lock order: a record shard may be locked first and a user shard
    /// second, never the other way round; code that starts from a user
    /// copies the ids out and releases the user shard before touching
    /// records.
    users: Box<[Mutex<UserIndex>]>,
    /// Keys the user hash, so user names cannot be chosen to pile onto one
    /// shard.
    user_hasher: RandomState,
    /// Records held across all shards, expired or not.
    len: AtomicUsize,
    max_records: usize,
}

type UserIndex = HashMap<String, HashSet<Id>>;

/// One shard's records and their expiry order. Aligned to 128 bytes, so
/// that each shard's lock and maps sit on cache lines of their own: two
/// worker threads working on two shards do not slow each other down.
#[derive(Default)]
#[repr(align(128))]
struct Shard {
    /// Shared with the requests that read them (see
    /// [`SessionStore::load_shared`]): a read copies nothing. A save
    /// ([`SessionStore::save_shared`]) keeps the saver's record itself.
    records: HashMap<Id, Arc<Record>, IdHash>,
    /// `(record.deadline(), id)` for every record, in sync with `records`.
    expiry: BTreeSet<(u64, Id)>,
}

/// Takes a lock, ignoring poisoning: every critical section leaves the
/// shard consistent before anything that could panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    /// The shard of `id`: its first 8 bytes (random) modulo the shards.
    fn shard_index(&self, id: &Id) -> usize {
        let [a, b, c, d, e, f, g, h, ..] = *id.as_bytes();
        let hash = u64::from_le_bytes([a, b, c, d, e, f, g, h]);
        // The modulo is below `shards.len()`, so it fits in `usize`.
        (hash % self.shards.len() as u64) as usize
    }

    fn shard(&self, id: &Id) -> MutexGuard<'_, Shard> {
        lock(&self.shards[self.shard_index(id)])
    }

    fn users(&self, user: &str) -> MutexGuard<'_, UserIndex> {
        let hash = self.user_hasher.hash_one(user);
        lock(&self.users[(hash % self.users.len() as u64) as usize])
    }

    fn link_user(&self, user: &str, id: Id) {
        let mut users = self.users(user);
        match users.get_mut(user) {
            Some(ids) => {
                ids.insert(id);
            }
            None => {
                users.insert(user.to_owned(), HashSet::from([id]));
            }
        }
    }

    fn unlink_user(&self, user: &str, id: &Id) {
        let mut users = self.users(user);
        if let Some(ids) = users.get_mut(user) {
            ids.remove(id);
            if ids.is_empty() {
                users.remove(user);
            }
        }
    }

    /// The session ids of `user`, copied out so no user lock is held after.
    fn user_ids(&self, user: &str) -> Vec<Id> {
        self.users(user)
            .get(user)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Adds `record` to a locked shard (the slot is already counted).
    fn insert(&self, shard: &mut Shard, record: Record) {
        shard.expiry.insert((record.deadline(), record.id));
        if let Some(user) = &record.user {
            self.link_user(user, record.id);
        }
        shard.records.insert(record.id, Arc::new(record));
    }

    /// Removes the record with `id` from a locked shard and every index.
    fn remove(&self, shard: &mut Shard, id: &Id) -> Option<Arc<Record>> {
        let record = shard.records.remove(id)?;
        shard.expiry.remove(&(record.deadline(), record.id));
        if let Some(user) = &record.user {
            self.unlink_user(user, id);
        }
        self.len.fetch_sub(1, Ordering::AcqRel);
        Some(record)
    }

    /// Removes up to `limit` records that have expired at `now` from the
    /// front of a locked shard's expiry order; how many.
    fn purge_front(&self, shard: &mut Shard, now: u64, limit: usize) -> usize {
        let mut purged = 0;
        while purged < limit {
            match shard.expiry.first() {
                Some(&(deadline, id)) if deadline <= now => {
                    if self.remove(shard, &id).is_none() {
                        // Unreachable while the indexes agree; never loop on it.
                        shard.expiry.remove(&(deadline, id));
                    }
                    purged += 1;
                }
                _ => break,
            }
        }
        purged
    }

    /// Counts one more record if the bound allows it.
    fn reserve(&self) -> bool {
        self.len
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |len| {
                (len < self.max_records).then_some(len + 1)
            })
            .is_ok()
    }

    fn create(&self, record: &Record) -> Result<Created, StoreError> {
        let now = create_time(record);
        for attempt in 0..2 {
            {
                let mut shard = self.shard(&record.id);
                self.purge_front(&mut shard, now, PURGE_ON_WRITE);
                if let Some(existing) = shard.records.get(&record.id) {
                    if !existing.is_expired_at(now) {
                        return Ok(Created::Collision);
                    }
                    self.remove(&mut shard, &record.id);
                }
                if self.reserve() {
                    self.insert(&mut shard, record.clone());
                    return Ok(Created::Created);
                }
            }
            // Full. With no shard lock held (so shards are only ever locked
            // one at a time), make room from records expired by this
            // create's own time, then retry.
            if attempt == 0 {
                self.purge_when_full(&record.id, now);
            }
        }
        Err(StoreError::new(
            StoreErrorKind::Full,
            format!(
                "the in-memory store holds its limit of {} sessions; new sessions are \
                 refused (existing ones are never evicted) until some expire",
                self.max_records
            ),
        ))
    }

    /// Removes up to [`PURGE_WHEN_FULL`] expired records, from the shard of
    /// `id` first, then from the others in turn until one had any. Takes
    /// one shard lock at a time.
    fn purge_when_full(&self, id: &Id, now: u64) {
        let first = self.shard_index(id);
        let mut purged = 0;
        for i in 0..self.shards.len() {
            let shard = &self.shards[(first + i) % self.shards.len()];
            purged += self.purge_front(&mut lock(shard), now, PURGE_WHEN_FULL - purged);
            if purged > 0 {
                break;
            }
        }
    }

    fn load(&self, id: &Id, now: u64) -> Option<Arc<Record>> {
        let mut shard = self.shard(id);
        let record = shard.records.get(id)?;
        if !record.is_expired_at(now) {
            return Some(Arc::clone(record));
        }
        // Found expired: removed (the lock is held already), so that a
        // later load given an earlier time (a clock set back) cannot bring
        // back a session this one reported ended. Freed after the lock.
        let expired = self.remove(&mut shard, id);
        drop(shard);
        drop(expired);
        None
    }

    /// Stores `record` itself, with its new version, if the stored version
    /// is the one it carries (see [`SessionStore::save_shared`]).
    fn save(&self, record: &mut Arc<Record>, now: u64) -> Saved {
        let id = record.id;
        let mut shard = self.shard(&id);
        self.purge_front(&mut shard, now, PURGE_ON_WRITE);
        match shard.records.get(&id) {
            None => return Saved::Gone,
            Some(stored) if stored.is_expired_at(now) => {
                self.remove(&mut shard, &id);
                return Saved::Gone;
            }
            Some(stored) if stored.version != record.version => return Saved::Conflict,
            Some(_) => {}
        }
        let version = record.version + 1;
        // Free unless the caller shares its record.
        Arc::make_mut(record).version = version;
        let Shard { records, expiry } = &mut *shard;
        let Some(stored) = records.get_mut(&id) else {
            return Saved::Gone;
        };
        let old = std::mem::replace(stored, Arc::clone(record));
        if record.deadline() != old.deadline() {
            expiry.remove(&(old.deadline(), id));
            expiry.insert((record.deadline(), id));
        }
        if record.user != old.user {
            if let Some(user) = &old.user {
                self.unlink_user(user, &id);
            }
            if let Some(user) = &record.user {
                self.link_user(user, id);
            }
        }
        // The old record, if no request holds it any more, is freed after
        // the lock.
        drop(shard);
        Saved::Saved { version }
    }

    fn touch(&self, id: &Id, version: u64, idle_deadline: u64, now: u64) -> Touched {
        let mut shard = self.shard(id);
        self.purge_front(&mut shard, now, PURGE_ON_WRITE);
        match shard.records.get(id) {
            None => return Touched::Gone,
            Some(stored) if stored.is_expired_at(now) => {
                self.remove(&mut shard, id);
                return Touched::Gone;
            }
            Some(stored) if stored.version != version => return Touched::Outdated,
            Some(_) => {}
        }
        let Shard { records, expiry } = &mut *shard;
        let Some(stored) = records.get_mut(id) else {
            return Touched::Gone;
        };
        // A request still reading the old record keeps it.
        let stored = Arc::make_mut(stored);
        let old_deadline = stored.deadline();
        stored.idle_deadline = Some(idle_deadline.min(stored.absolute_deadline));
        let new_deadline = stored.deadline();
        if new_deadline != old_deadline {
            expiry.remove(&(old_deadline, *id));
            expiry.insert((new_deadline, *id));
        }
        Touched::Touched
    }

    fn delete(&self, id: &Id) -> bool {
        let mut shard = self.shard(id);
        self.remove(&mut shard, id).is_some()
    }

    fn delete_if_version(&self, id: &Id, version: u64) -> Deleted {
        let mut shard = self.shard(id);
        match shard.records.get(id) {
            None => Deleted::Gone,
            Some(stored) if stored.version != version => Deleted::Conflict,
            Some(_) => {
                self.remove(&mut shard, id);
                Deleted::Deleted
            }
        }
    }

    fn delete_user(&self, user: &str) -> usize {
        // The ids are copied, then deleted shard by shard, so a session
        // whose id is cycled meanwhile can leave a copy the pass did not
        // see: `cycle_id` links the new id to the user before it deletes the
        // old one. So passes repeat until the user has no id left, as the
        // other stores' single statement leaves none (a bounded number of
        // times: a login made during the call may also be deleted or not).
        let mut deleted = 0;
        for _ in 0..16 {
            let ids = self.user_ids(user);
            if ids.is_empty() {
                break;
            }
            for id in ids {
                let mut shard = self.shard(&id);
                // The user may have changed since the ids were copied.
                let owned = shard
                    .records
                    .get(&id)
                    .is_some_and(|record| record.user.as_deref() == Some(user));
                if owned && self.remove(&mut shard, &id).is_some() {
                    deleted += 1;
                }
            }
        }
        deleted
    }

    fn list_user(&self, user: &str, now: u64) -> Vec<Record> {
        self.user_ids(user)
            .into_iter()
            .filter_map(|id| {
                self.shard(&id)
                    .records
                    .get(&id)
                    .filter(|record| {
                        record.user.as_deref() == Some(user) && !record.is_expired_at(now)
                    })
                    .map(|record| Record::clone(record))
            })
            .collect()
    }
}

/// The current time of a [`create`](SessionStore::create), which has no
/// `now`: the latest time `record` itself vouches for. That is its
/// `created_at`, or, when later, the time its idle deadline was last set
/// at: the middleware refreshes the idle deadline at the request's time
/// before it stores a session under a new id, which keeps the session's
/// old `created_at`. (`idle_deadline - idle_timeout` is never after that
/// time: the idle deadline is `now + idle_timeout`, or less when capped by
/// the absolute deadline.) Never a time given to another call, so that one
/// call's wrong clock cannot make this one purge live sessions.
fn create_time(record: &Record) -> u64 {
    let refreshed = record
        .idle_deadline
        .zip(record.idle_timeout)
        .map_or(0, |(deadline, idle)| deadline.saturating_sub(idle));
    record.created_at.max(refreshed)
}

impl SessionStore for MemoryStore {
    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        self.inner.create(record)
    }

    async fn load(&self, id: &Id, now: u64) -> Result<Option<Record>, StoreError> {
        Ok(self.inner.load(id, now).map(Arc::unwrap_or_clone))
    }

    async fn load_shared(&self, id: &Id, now: u64) -> Result<Option<Arc<Record>>, StoreError> {
        Ok(self.inner.load(id, now))
    }

    async fn save(&self, record: &Record, now: u64) -> Result<Saved, StoreError> {
        Ok(self.inner.save(&mut Arc::new(record.clone()), now))
    }

    async fn save_shared(&self, record: &mut Arc<Record>, now: u64) -> Result<Saved, StoreError> {
        Ok(self.inner.save(record, now))
    }

    async fn touch(
        &self,
        id: &Id,
        version: u64,
        idle_deadline: u64,
        now: u64,
    ) -> Result<Touched, StoreError> {
        Ok(self.inner.touch(id, version, idle_deadline, now))
    }

    async fn delete(&self, id: &Id) -> Result<bool, StoreError> {
        Ok(self.inner.delete(id))
    }

    async fn delete_if_version(&self, id: &Id, version: u64) -> Result<Deleted, StoreError> {
        Ok(self.inner.delete_if_version(id, version))
    }

    async fn delete_user(&self, user: &str) -> Result<usize, StoreError> {
        Ok(self.inner.delete_user(user))
    }

    async fn list_user(&self, user: &str, now: u64) -> Result<Vec<Record>, StoreError> {
        Ok(self.inner.list_user(user, now))
    }

    // Shard by shard, `PURGE_BATCH` records per lock hold, yielding to the
    // runtime after each batch that removed any, so that the other tasks of
    // its worker thread (requests) run in between.
    async fn purge_expired(&self, now: u64) -> Result<usize, StoreError> {
        let mut purged = 0;
        for shard in &self.inner.shards {
            loop {
                // The guard is dropped at the end of this statement: no
                // lock is held across the yield.
                let batch = self.inner.purge_front(&mut lock(shard), now, PURGE_BATCH);
                purged += batch;
                if batch == 0 {
                    break;
                }
                tokio::task::yield_now().await;
                if batch < PURGE_BATCH {
                    break;
                }
            }
        }
        Ok(purged)
    }
}

// Administration (the `StoreAdmin` trait is in `admin.rs`).

use super::{Counts, Cursor, Page, PurgeStep, StoreAdmin};

impl Inner {
    /// Up to `limit` ids above `after`, in order. Locks one shard at a time
    /// and keeps only `limit` ids, however many records there are.
    fn page_ids(&self, after: Option<&Id>, limit: usize) -> Vec<Id> {
        let mut ids = BTreeSet::new();
        for shard in &self.shards {
            let shard = lock(shard);
            for id in shard.records.keys() {
                if after.is_some_and(|after| id <= after) {
                    continue;
                }
                if ids.len() < limit {
                    ids.insert(*id);
                } else if ids.last().is_some_and(|last| id < last) {
                    ids.pop_last();
                    ids.insert(*id);
                }
            }
        }
        ids.into_iter().collect()
    }

    fn counts(&self, now: u64) -> Counts {
        let mut counts = Counts::default();
        for shard in &self.shards {
            let shard = lock(shard);
            counts.total += shard.records.len() as u64;
            counts.expired += shard
                .expiry
                .iter()
                .take_while(|(deadline, _)| *deadline <= now)
                .count() as u64;
        }
        counts
    }

    /// Purges up to `limit` expired records, from shard `first` on; the
    /// cursor is the shard to continue with.
    fn purge_from(&self, first: usize, now: u64, limit: usize) -> PurgeStep {
        let mut purged = 0;
        for index in first..self.shards.len() {
            purged += self.purge_front(&mut lock(&self.shards[index]), now, limit - purged);
            if purged == limit {
                return PurgeStep {
                    purged,
                    next: Some(Cursor::new(index.to_string())),
                };
            }
        }
        PurgeStep { purged, next: None }
    }
}

/// A cursor this store did not make.
fn bad_cursor(cursor: &Cursor) -> StoreError {
    StoreError::new(
        StoreErrorKind::Corrupt,
        format!("`{}` is not a memory store cursor", cursor.as_str()),
    )
}

/// Pages are in id order; the cursor is the last id of the page. Purge
/// steps go shard by shard; the cursor is the shard to continue with.
impl StoreAdmin for MemoryStore {
    async fn page(&self, cursor: Option<&Cursor>, limit: usize) -> Result<Page, StoreError> {
        let limit = limit.max(1);
        let after = cursor
            .map(|cursor| {
                cursor
                    .as_str()
                    .parse::<Id>()
                    .map_err(|_| bad_cursor(cursor))
            })
            .transpose()?;
        let ids = self.inner.page_ids(after.as_ref(), limit);
        let next = (ids.len() == limit)
            .then(|| ids.last().map(|id| Cursor::new(id.to_string())))
            .flatten();
        let records = ids
            .iter()
            .filter_map(|id| {
                let shard = self.inner.shard(id);
                shard.records.get(id).map(|record| Record::clone(record))
            })
            .collect();
        Ok(Page { records, next })
    }

    async fn count(&self, now: u64) -> Result<Counts, StoreError> {
        Ok(self.inner.counts(now))
    }

    async fn purge_step(
        &self,
        now: u64,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<PurgeStep, StoreError> {
        let first = cursor
            .map(|cursor| {
                cursor
                    .as_str()
                    .parse::<usize>()
                    .map_err(|_| bad_cursor(cursor))
            })
            .transpose()?
            .unwrap_or(0);
        Ok(self.inner.purge_from(first, now, limit.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record created at `now` with an idle limit and absolute lifetime.
    fn record(now: u64, idle: Option<u64>, lifetime: u64) -> Record {
        Record::new(Id::random(), now, idle, lifetime)
    }

    fn user_record(user: &str, now: u64, lifetime: u64) -> Record {
        let mut record = record(now, None, lifetime);
        record.user = Some(user.to_owned());
        record
    }

    /// Checks that every index agrees with the records.
    fn assert_consistent(store: &MemoryStore) {
        let inner = &store.inner;
        let mut total = 0;
        let mut by_user: HashMap<String, HashSet<Id>> = HashMap::new();
        for shard in &inner.shards {
            let shard = lock(shard);
            total += shard.records.len();
            let expected: BTreeSet<(u64, Id)> = shard
                .records
                .values()
                .map(|record| (record.deadline(), record.id))
                .collect();
            assert_eq!(shard.expiry, expected);
            for record in shard.records.values() {
                if let Some(user) = &record.user {
                    by_user.entry(user.clone()).or_default().insert(record.id);
                }
            }
        }
        assert_eq!(store.len(), total);
        let mut indexed: HashMap<String, HashSet<Id>> = HashMap::new();
        for users in &inner.users {
            for (user, ids) in lock(users).iter() {
                assert!(!ids.is_empty(), "empty id set left for a user");
                indexed.insert(user.clone(), ids.clone());
            }
        }
        assert_eq!(indexed, by_user);
    }

    #[tokio::test]
    async fn create_then_collision() {
        let store = MemoryStore::new();
        let record = record(1_000, Some(60), 3_600);
        assert_eq!(store.create(&record).await.unwrap(), Created::Created);
        let mut again = record.clone();
        again.data.insert("other".into(), 1.into());
        assert_eq!(store.create(&again).await.unwrap(), Created::Collision);
        // Nothing changed.
        assert_eq!(store.load(&record.id, 1_000).await.unwrap(), Some(record));
        assert_eq!(store.len(), 1);
        assert_consistent(&store);
    }

    #[tokio::test]
    async fn create_stores_the_record_as_given() {
        let store = MemoryStore::new();
        let mut record = record(1_000, Some(60), 3_600);
        record.version = 7;
        record.persistent = true;
        record.data.insert("k".into(), "v".into());
        store.create(&record).await.unwrap();
        assert_eq!(store.load(&record.id, 1_001).await.unwrap(), Some(record));
    }

    #[tokio::test]
    async fn create_on_an_expired_id_replaces_it() {
        let store = MemoryStore::new();
        let old = record(0, None, 100);
        store.create(&old).await.unwrap();
        let mut new = Record::new(old.id, 100, None, 100);
        new.data.insert("fresh".into(), true.into());
        assert_eq!(store.create(&new).await.unwrap(), Created::Created);
        assert_eq!(store.load(&old.id, 150).await.unwrap(), Some(new));
        assert_eq!(store.len(), 1);
        assert_consistent(&store);
    }

    #[tokio::test]
    async fn create_one_second_before_expiry_collides() {
        let store = MemoryStore::new();
        let old = record(0, None, 100);
        store.create(&old).await.unwrap();
        let new = Record::new(old.id, 99, None, 100);
        assert_eq!(store.create(&new).await.unwrap(), Created::Collision);
    }

    #[tokio::test]
    async fn load_of_an_absent_id_is_none() {
        let store = MemoryStore::new();
        assert_eq!(store.load(&Id::random(), 0).await.unwrap(), None);
    }

    #[tokio::test]
    async fn expiry_at_the_exact_second() {
        let store = MemoryStore::new();
        // Idle deadline 1_060 comes first.
        let idle = record(1_000, Some(60), 3_600);
        // Absolute deadline 1_100 comes first.
        let absolute = record(1_000, Some(600), 100);
        // No idle limit.
        let no_idle = record(1_000, None, 50);
        for (record, deadline) in [(&idle, 1_060), (&absolute, 1_100), (&no_idle, 1_050)] {
            store.create(record).await.unwrap();
            assert!(
                store
                    .load(&record.id, deadline - 1)
                    .await
                    .unwrap()
                    .is_some()
            );
            assert!(store.load(&record.id, deadline).await.unwrap().is_none());
            assert!(
                store
                    .load(&record.id, deadline + 1)
                    .await
                    .unwrap()
                    .is_none()
            );
        }
        // A load that found a record expired removed it.
        assert!(store.is_empty());
        assert_consistent(&store);
    }

    #[tokio::test]
    async fn a_record_found_expired_stays_gone_when_the_clock_goes_back() {
        let store = MemoryStore::new();
        let record = user_record("ada", 0, 100);
        let live = user_record("ada", 0, 1_000);
        store.create(&record).await.unwrap();
        store.create(&live).await.unwrap();
        assert!(store.load(&record.id, 100).await.unwrap().is_none());
        assert_eq!(store.len(), 1);
        assert_consistent(&store);
        // Earlier times find nothing: not a load, a save or a touch.
        assert!(store.load(&record.id, 50).await.unwrap().is_none());
        assert_eq!(store.save(&record, 50).await.unwrap(), Saved::Gone);
        assert_eq!(
            store.touch(&record.id, 0, 60, 50).await.unwrap(),
            Touched::Gone
        );
        assert_eq!(store.list_user("ada", 50).await.unwrap(), vec![live]);
        // A live record is left alone by loads.
        assert!(store.load(&Id::random(), 100).await.unwrap().is_none());
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn save_outcomes() {
        let store = MemoryStore::new();
        let mut record = record(1_000, Some(60), 3_600);
        assert_eq!(store.save(&record, 1_000).await.unwrap(), Saved::Gone);
        assert!(store.is_empty(), "save never inserts");

        store.create(&record).await.unwrap();
        record.data.insert("n".into(), 1.into());
        assert_eq!(
            store.save(&record, 1_001).await.unwrap(),
            Saved::Saved { version: 1 }
        );
        // Stale version.
        assert_eq!(store.save(&record, 1_002).await.unwrap(), Saved::Conflict);
        // A version from the future conflicts too.
        record.version = 5;
        assert_eq!(store.save(&record, 1_002).await.unwrap(), Saved::Conflict);

        record.version = 1;
        record.data.insert("n".into(), 2.into());
        assert_eq!(
            store.save(&record, 1_003).await.unwrap(),
            Saved::Saved { version: 2 }
        );
        let loaded = store.load(&record.id, 1_004).await.unwrap().unwrap();
        assert_eq!(loaded.version, 2);
        assert_eq!(loaded.data["n"], 2);
        assert_consistent(&store);
    }

    #[tokio::test]
    async fn save_stores_the_given_fields() {
        let store = MemoryStore::new();
        let mut record = record(1_000, Some(60), 3_600);
        store.create(&record).await.unwrap();
        record.idle_deadline = record.refreshed_idle_deadline(1_030);
        record.persistent = true;
        assert_eq!(
            store.save(&record, 1_030).await.unwrap(),
            Saved::Saved { version: 1 }
        );
        let loaded = store.load(&record.id, 1_089).await.unwrap().unwrap();
        assert_eq!(loaded.idle_deadline, Some(1_090));
        assert!(loaded.persistent);
        assert_consistent(&store);
        // The expiry index followed the new deadline.
        assert_eq!(store.purge_expired(1_060).await.unwrap(), 0);
        assert_eq!(store.purge_expired(1_090).await.unwrap(), 1);
        assert!(store.load(&record.id, 1_089).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn save_of_an_expired_record_is_gone() {
        let store = MemoryStore::new();
        let record = record(0, Some(60), 3_600);
        store.create(&record).await.unwrap();
        assert_eq!(store.save(&record, 60).await.unwrap(), Saved::Gone);
        assert!(store.is_empty(), "the expired record is dropped");
        assert_eq!(store.save(&record, 30).await.unwrap(), Saved::Gone);
        assert!(store.load(&record.id, 30).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn save_after_delete_is_gone_and_does_not_resurrect() {
        let store = MemoryStore::new();
        let record = user_record("ada", 0, 3_600);
        store.create(&record).await.unwrap();
        assert!(store.delete(&record.id).await.unwrap());
        assert_eq!(store.save(&record, 1).await.unwrap(), Saved::Gone);
        assert!(store.load(&record.id, 1).await.unwrap().is_none());
        assert!(store.list_user("ada", 1).await.unwrap().is_empty());
        assert!(store.is_empty());
        assert_consistent(&store);
    }

    #[tokio::test]
    async fn touch_moves_the_idle_deadline_only() {
        let store = MemoryStore::new();
        let mut record = record(0, Some(60), 1_000);
        record.data.insert("k".into(), "v".into());
        store.create(&record).await.unwrap();
        assert_eq!(
            store.touch(&record.id, 0, 90, 30).await.unwrap(),
            Touched::Touched
        );
        let loaded = store.load(&record.id, 89).await.unwrap().unwrap();
        assert_eq!(loaded.idle_deadline, Some(90));
        assert_eq!((loaded.version, &loaded.data), (0, &record.data));
        // The expiry index followed.
        assert_eq!(store.purge_expired(60).await.unwrap(), 0);
        assert_consistent(&store);
        // The version is unchanged, so a save with it still goes through.
        record.idle_deadline = Some(90);
        assert_eq!(
            store.save(&record, 70).await.unwrap(),
            Saved::Saved { version: 1 }
        );
        assert!(store.load(&record.id, 90).await.unwrap().is_none());
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn touch_clamps_to_the_absolute_deadline() {
        let store = MemoryStore::new();
        let record = record(0, Some(60), 100);
        store.create(&record).await.unwrap();
        assert_eq!(
            store.touch(&record.id, 0, 500, 50).await.unwrap(),
            Touched::Touched
        );
        let loaded = store.load(&record.id, 99).await.unwrap().unwrap();
        assert_eq!(loaded.idle_deadline, Some(100));
        assert!(store.load(&record.id, 100).await.unwrap().is_none());
        assert_consistent(&store);
    }

    #[tokio::test]
    async fn touch_without_an_idle_limit_sets_one() {
        let store = MemoryStore::new();
        let record = record(0, None, 100);
        store.create(&record).await.unwrap();
        assert_eq!(
            store.touch(&record.id, 0, 40, 10).await.unwrap(),
            Touched::Touched
        );
        assert!(store.load(&record.id, 40).await.unwrap().is_none());
        assert_consistent(&store);
    }

    #[tokio::test]
    async fn touch_of_an_absent_or_expired_record_is_gone() {
        let store = MemoryStore::new();
        assert_eq!(
            store.touch(&Id::random(), 0, 10, 0).await.unwrap(),
            Touched::Gone
        );
        let record = record(0, Some(60), 1_000);
        store.create(&record).await.unwrap();
        assert_eq!(
            store.touch(&record.id, 0, 200, 60).await.unwrap(),
            Touched::Gone
        );
        assert!(store.is_empty(), "the expired record is dropped");
        assert_eq!(
            store.touch(&record.id, 0, 200, 10).await.unwrap(),
            Touched::Gone
        );
        assert!(store.is_empty(), "touch never inserts");
    }

    #[tokio::test]
    async fn delete_says_whether_there_was_a_record() {
        let store = MemoryStore::new();
        let record = record(0, None, 100);
        assert!(!store.delete(&record.id).await.unwrap());
        store.create(&record).await.unwrap();
        assert!(store.delete(&record.id).await.unwrap());
        assert!(!store.delete(&record.id).await.unwrap());
        assert!(store.load(&record.id, 0).await.unwrap().is_none());
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn the_bound_refuses_new_sessions_and_keeps_old_ones() {
        let store = MemoryStore::builder().max_records(10).build();
        let records: Vec<Record> = (0..10).map(|_| record(0, None, 100)).collect();
        for record in &records {
            assert_eq!(store.create(record).await.unwrap(), Created::Created);
        }
        let eleventh = record(50, None, 100);
        let err = store.create(&eleventh).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Full);
        assert!(err.to_string().contains("limit of 10 sessions"), "{err}");
        assert_eq!(store.len(), 10);
        // Nothing was evicted.
        for record in &records {
            assert!(store.load(&record.id, 50).await.unwrap().is_some());
        }
        // A collision is still reported as such, not as Full.
        assert_eq!(store.create(&records[0]).await.unwrap(), Created::Collision);

        // Once they have expired and been purged, there is room again.
        assert_eq!(store.purge_expired(100).await.unwrap(), 10);
        let later = record(100, None, 100);
        assert_eq!(store.create(&later).await.unwrap(), Created::Created);
        assert_eq!(store.len(), 1);
        assert_consistent(&store);
    }

    #[tokio::test]
    async fn a_full_store_purges_expired_records_before_refusing() {
        let store = MemoryStore::builder().shards(1).max_records(300).build();
        for _ in 0..300 {
            store.create(&record(0, None, 10)).await.unwrap();
        }
        let later = record(10, None, 10);
        assert_eq!(store.create(&later).await.unwrap(), Created::Created);
        // The 8 expired records purged on write made room.
        assert_eq!(store.len(), 300 - 8 + 1);
        assert_consistent(&store);
    }

    #[tokio::test]
    async fn a_full_store_purges_more_if_others_took_the_room() {
        // As if other shards' creates had taken the slots that the purge on
        // write freed: the count is 16 above the 292 records held, so the
        // store is still full after purging 8.
        let store = MemoryStore::builder().shards(1).max_records(300).build();
        for _ in 0..292 {
            store.create(&record(0, None, 10)).await.unwrap();
        }
        store.inner.len.fetch_add(16, Ordering::AcqRel);
        let later = record(10, None, 10);
        assert_eq!(store.create(&later).await.unwrap(), Created::Created);
        store.inner.len.fetch_sub(16, Ordering::AcqRel);
        // 8 purged on write, 256 more when full, 8 on write again on retry.
        assert_eq!(store.len(), 292 - 8 - 256 - 8 + 1);
        assert_consistent(&store);
    }

    #[tokio::test]
    async fn a_full_store_makes_room_by_the_time_a_cycled_record_was_refreshed() {
        // A session moving to a new id (a login) keeps its `created_at`,
        // long past; its idle deadline was refreshed at the request's time
        // (1_000), by which the four old records have expired.
        let store = MemoryStore::builder().max_records(4).build();
        let old: Vec<Record> = (0..4).map(|_| record(0, None, 10)).collect();
        for record in &old {
            store.create(record).await.unwrap();
        }
        let mut cycled = record(5, Some(60), 10_000);
        cycled.idle_deadline = cycled.refreshed_idle_deadline(1_000);
        assert_eq!(create_time(&cycled), 1_000);
        assert_eq!(store.create(&cycled).await.unwrap(), Created::Created);
        assert_consistent(&store);
        // Without an idle limit only `created_at` vouches for the time.
        assert_eq!(create_time(&record(5, None, 10_000)), 5);
        // An idle deadline capped by the absolute one gives an earlier time.
        let mut capped = record(5, Some(60), 100);
        capped.idle_deadline = capped.refreshed_idle_deadline(80);
        assert_eq!(capped.idle_deadline, Some(105));
        assert_eq!(create_time(&capped), 105 - 60);
    }

    #[tokio::test]
    async fn a_load_given_a_time_far_ahead_does_not_make_creates_purge_live_records() {
        // One load a year ahead (a clock glitch) used to be remembered, and
        // a create into the full store then purged by it: 256 live
        // sessions per create.
        let store = MemoryStore::builder().shards(1).max_records(1_000).build();
        let live: Vec<Record> = (0..1_000).map(|_| record(0, Some(1_800), 86_400)).collect();
        for record in &live {
            store.create(record).await.unwrap();
        }
        assert!(
            store
                .load(&Id::random(), 365 * 86_400)
                .await
                .unwrap()
                .is_none()
        );
        let err = store
            .create(&record(1, Some(1_800), 86_400))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Full);
        assert_eq!(store.len(), 1_000);
        for record in &live {
            assert!(store.load(&record.id, 1).await.unwrap().is_some());
        }
        assert_consistent(&store);
    }

    #[tokio::test]
    async fn a_full_store_purges_other_shards_before_refusing() {
        // With 16 shards and 10 records, most new ids fall in a shard that
        // holds no expired record.
        let store = MemoryStore::builder().max_records(10).build();
        for _ in 0..10 {
            store.create(&record(0, None, 100)).await.unwrap();
        }
        let fresh: Vec<Record> = (0..10).map(|_| record(100, None, 100)).collect();
        for record in &fresh {
            assert_eq!(store.create(record).await.unwrap(), Created::Created);
        }
        assert_eq!(store.len(), 10);
        let err = store.create(&record(100, None, 100)).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Full);
        for record in &fresh {
            assert!(store.load(&record.id, 150).await.unwrap().is_some());
        }
        assert_consistent(&store);
    }

    #[tokio::test]
    async fn an_expired_record_with_the_same_id_frees_its_slot() {
        let store = MemoryStore::builder().max_records(1).build();
        let old = record(0, None, 10);
        store.create(&old).await.unwrap();
        let new = Record::new(old.id, 10, None, 10);
        assert_eq!(store.create(&new).await.unwrap(), Created::Created);
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn writes_purge_a_few_expired_records() {
        let store = MemoryStore::builder().shards(1).build();
        for _ in 0..20 {
            store.create(&record(0, None, 10)).await.unwrap();
        }
        let live = record(0, None, 1_000);
        store.create(&live).await.unwrap();
        assert_eq!(store.len(), 21);

        assert_eq!(
            store.save(&live, 10).await.unwrap(),
            Saved::Saved { version: 1 }
        );
        assert_eq!(store.len(), 21 - 8);
        assert_eq!(
            store.touch(&live.id, 1, 500, 10).await.unwrap(),
            Touched::Touched
        );
        assert_eq!(store.len(), 21 - 16);
        store.create(&record(10, None, 10)).await.unwrap();
        assert_eq!(store.len(), 21 - 20 + 1);
        // Delete has no clock and purges nothing else.
        let expired_soon = record(10, None, 5);
        store.create(&expired_soon).await.unwrap();
        assert!(store.delete(&live.id).await.unwrap());
        assert_eq!(store.len(), 2);
        assert_consistent(&store);
    }

    #[tokio::test]
    async fn user_index() {
        let store = MemoryStore::new();
        let ada: Vec<Record> = (0..3).map(|_| user_record("ada", 0, 1_000)).collect();
        let bob = user_record("bob", 0, 1_000);
        for record in ada.iter().chain([&bob]) {
            store.create(record).await.unwrap();
        }
        let anonymous = record(0, None, 1_000);
        store.create(&anonymous).await.unwrap();

        let mut listed: Vec<Id> = store
            .list_user("ada", 10)
            .await
            .unwrap()
            .into_iter()
            .map(|record| record.id)
            .collect();
        listed.sort();
        let mut expected: Vec<Id> = ada.iter().map(|record| record.id).collect();
        expected.sort();
        assert_eq!(listed, expected);
        assert_eq!(store.list_user("bob", 10).await.unwrap(), vec![bob.clone()]);
        assert!(store.list_user("eve", 10).await.unwrap().is_empty());

        // The user changes on save: None -> Some, Some(a) -> Some(b).
        let mut anonymous = anonymous;
        anonymous.user = Some("bob".into());
        store.save(&anonymous, 10).await.unwrap();
        let mut moved = bob.clone();
        moved.user = Some("ada".into());
        store.save(&moved, 10).await.unwrap();
        assert_consistent(&store);
        assert_eq!(store.list_user("ada", 10).await.unwrap().len(), 4);
        let bobs = store.list_user("bob", 10).await.unwrap();
        assert_eq!(bobs.len(), 1);
        assert_eq!(bobs[0].id, anonymous.id);

        // Some -> None.
        anonymous.version = 1;
        anonymous.user = None;
        store.save(&anonymous, 10).await.unwrap();
        assert!(store.list_user("bob", 10).await.unwrap().is_empty());

        assert_eq!(store.delete_user("ada").await.unwrap(), 4);
        assert!(store.list_user("ada", 10).await.unwrap().is_empty());
        assert_eq!(store.delete_user("ada").await.unwrap(), 0);
        assert_eq!(store.len(), 1, "only the anonymous session is left");
        assert_consistent(&store);
    }

    #[tokio::test]
    async fn delete_user_of_three() {
        let store = MemoryStore::new();
        for _ in 0..3 {
            store.create(&user_record("ada", 0, 1_000)).await.unwrap();
        }
        store.create(&user_record("bob", 0, 1_000)).await.unwrap();
        assert_eq!(store.list_user("ada", 0).await.unwrap().len(), 3);
        assert_eq!(store.delete_user("ada").await.unwrap(), 3);
        assert!(store.list_user("ada", 0).await.unwrap().is_empty());
        assert_eq!(store.list_user("bob", 0).await.unwrap().len(), 1);
        assert_consistent(&store);
    }

    /// "Log out everywhere" racing `cycle_id`s of the user's sessions: a
    /// cycle links its new id to the user before it deletes the old one
    /// (and deletes the new one if the old one was already gone), so every
    /// copy must be gone once `delete_user` returns. A single pass over
    /// the ids copied at its start left some (12 to 63 in 300 rounds).
    #[test]
    fn delete_user_leaves_no_copy_of_a_session_cycled_meanwhile() {
        let inner = &MemoryStore::new().inner;
        for round in 0..300 {
            let user = format!("u{round}");
            let ids: Vec<Id> = (0..32)
                .map(|_| {
                    let record = user_record(&user, 0, 1_000);
                    inner.create(&record).unwrap();
                    record.id
                })
                .collect();
            let start = std::sync::Barrier::new(9);
            std::thread::scope(|scope| {
                for old in &ids[..8] {
                    let (start, user) = (&start, &user);
                    scope.spawn(move || {
                        let copy = user_record(user, 0, 1_000);
                        start.wait();
                        inner.create(&copy).unwrap();
                        if inner.delete_if_version(old, 0) == Deleted::Gone {
                            inner.delete(&copy.id);
                        }
                    });
                }
                start.wait();
                inner.delete_user(&user);
            });
            assert_eq!(inner.user_ids(&user), [], "round {round}");
        }
    }

    #[tokio::test]
    async fn list_user_leaves_out_expired_records() {
        let store = MemoryStore::new();
        let short = user_record("ada", 0, 10);
        let long = user_record("ada", 0, 100);
        store.create(&short).await.unwrap();
        store.create(&long).await.unwrap();
        assert_eq!(store.list_user("ada", 9).await.unwrap().len(), 2);
        assert_eq!(store.list_user("ada", 10).await.unwrap(), vec![long]);
        // Purging an expired record removes it from the user index too.
        assert_eq!(store.purge_expired(10).await.unwrap(), 1);
        assert_consistent(&store);
        assert_eq!(store.delete_user("ada").await.unwrap(), 1);
    }

    #[tokio::test]
    async fn purge_expired_counts() {
        let store = MemoryStore::builder().shards(3).build();
        for lifetime in [10, 10, 20, 30, 30, 30] {
            store
                .create(&user_record("ada", 0, lifetime))
                .await
                .unwrap();
        }
        assert_eq!(store.purge_expired(9).await.unwrap(), 0);
        assert_eq!(store.purge_expired(10).await.unwrap(), 2);
        assert_eq!(store.purge_expired(10).await.unwrap(), 0);
        assert_eq!(store.len(), 4);
        assert_eq!(store.purge_expired(29).await.unwrap(), 1);
        assert_eq!(store.purge_expired(1_000).await.unwrap(), 3);
        assert!(store.is_empty());
        assert_consistent(&store);
    }

    /// The purge yields after each batch: polled by hand, it returns
    /// `Pending` between batches, with the batches before removed and the
    /// shard unlocked (a load goes through meanwhile).
    #[test]
    fn purge_expired_yields_between_batches() {
        let store = MemoryStore::builder().shards(1).build();
        for _ in 0..(PURGE_BATCH * 3 + 5) {
            store.inner.create(&record(0, None, 10)).unwrap();
        }
        let live = record(0, None, 100);
        store.inner.create(&live).unwrap();
        let total = store.len();
        let mut purge = std::pin::pin!(store.purge_expired(10));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut pending = 0;
        let purged = loop {
            match purge.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(purged) => break purged.unwrap(),
                std::task::Poll::Pending => {
                    pending += 1;
                    let left = store.len();
                    assert!(left < total && left >= 1, "{left} of {total} left");
                    assert!(store.inner.load(&live.id, 10).is_some(), "shard unlocked");
                }
            }
        };
        assert_eq!(purged, PURGE_BATCH * 3 + 5);
        // One yield after each of the four batches.
        assert_eq!(pending, 4);
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn purge_expired_walks_past_one_batch() {
        let store = MemoryStore::builder().shards(1).build();
        for _ in 0..(PURGE_BATCH * 2 + 5) {
            store.create(&record(0, None, 10)).await.unwrap();
        }
        store.create(&record(0, None, 11)).await.unwrap();
        assert_eq!(store.purge_expired(10).await.unwrap(), PURGE_BATCH * 2 + 5);
        assert_eq!(store.len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_creates_and_saves_lose_nothing() {
        let store = MemoryStore::new();
        let tasks: Vec<_> = (0..8)
            .map(|task| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut ids = Vec::new();
                    for i in 0..500_u64 {
                        let mut record = record(0, Some(600), 3_600);
                        record.user = Some(format!("user{}", i % 7));
                        assert_eq!(store.create(&record).await.unwrap(), Created::Created);
                        record.data.insert("task".into(), task.into());
                        record.data.insert("i".into(), i.into());
                        assert_eq!(
                            store.save(&record, 1).await.unwrap(),
                            Saved::Saved { version: 1 }
                        );
                        ids.push((record.id, task, i));
                    }
                    ids
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        assert_eq!(all.len(), 4_000);
        assert_eq!(store.len(), 4_000);
        for (id, task, i) in all {
            let loaded = store.load(&id, 2).await.unwrap().unwrap();
            assert_eq!(loaded.version, 1);
            assert_eq!(
                (&loaded.data["task"], &loaded.data["i"]),
                (&task.into(), &i.into())
            );
        }
        let listed: usize = futures_count(&store, 7).await;
        assert_eq!(listed, 4_000);
        assert_consistent(&store);
    }

    /// Sessions listed across `users` users named `user0`, `user1`, ...
    async fn futures_count(store: &MemoryStore, users: u64) -> usize {
        let mut total = 0;
        for user in 0..users {
            total += store
                .list_user(&format!("user{user}"), 2)
                .await
                .unwrap()
                .len();
        }
        total
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_saves_of_one_record_never_lose_a_write() {
        let store = MemoryStore::new();
        let record = record(0, None, 3_600);
        store.create(&record).await.unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                let id = record.id;
                tokio::spawn(async move {
                    let mut done = 0;
                    while done < 100 {
                        let mut current = store.load(&id, 1).await.unwrap().unwrap();
                        let n = current.data.get("n").and_then(|n| n.as_u64()).unwrap_or(0);
                        current.data.insert("n".into(), (n + 1).into());
                        match store.save(&current, 1).await.unwrap() {
                            Saved::Saved { .. } => done += 1,
                            Saved::Conflict => tokio::task::yield_now().await,
                            Saved::Gone => panic!("the record vanished"),
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let loaded = store.load(&record.id, 1).await.unwrap().unwrap();
        assert_eq!(loaded.version, 800);
        assert_eq!(loaded.data["n"], 800);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_delete_user_does_not_deadlock() {
        let store = MemoryStore::builder().shards(2).build();
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..300_u64 {
                        let mut record = user_record("ada", i, 1_000);
                        store.create(&record).await.unwrap();
                        record.user = Some("bob".into());
                        store.save(&record, i).await.unwrap();
                        store.touch(&record.id, 1, i + 10, i).await.unwrap();
                        store.list_user("ada", i).await.unwrap();
                    }
                })
            })
            .collect();
        let deleters: Vec<_> = (0..2)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..300_u64 {
                        store.delete_user("bob").await.unwrap();
                        store.delete_user("ada").await.unwrap();
                        store.purge_expired(i).await.unwrap();
                    }
                })
            })
            .collect();
        let all = async {
            for task in writers.into_iter().chain(deleters) {
                task.await.unwrap();
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), all)
            .await
            .expect("no deadlock");
        assert_consistent(&store);
        store.delete_user("ada").await.unwrap();
        store.delete_user("bob").await.unwrap();
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn debug_shows_no_ids_or_data() {
        let store = MemoryStore::new();
        let mut record = user_record("ada@example.com", 0, 100);
        record.data.insert("secret".into(), "hunter2".into());
        store.create(&record).await.unwrap();
        let text = format!("{store:?}");
        assert!(!text.contains(&record.id.to_string()), "{text}");
        assert!(!text.contains(&record.id.log_tag()), "{text}");
        assert!(!text.contains("Id("), "{text}");
        assert!(!text.contains("ada"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(
            text,
            "MemoryStore { len: 1, max_records: 100000, shards: 16 }"
        );
    }

    #[tokio::test]
    async fn clones_share_the_sessions() {
        let store = MemoryStore::default();
        let other = store.clone();
        let record = record(0, None, 100);
        store.create(&record).await.unwrap();
        assert!(other.load(&record.id, 0).await.unwrap().is_some());
        assert_eq!(other.len(), 1);
    }

    #[test]
    fn builder_defaults_and_limits() {
        let builder = MemoryStoreBuilder::default();
        assert_eq!((builder.shards, builder.max_records), (16, 100_000));
        let store = MemoryStore::builder().shards(0).max_records(3).build();
        assert_eq!(store.inner.shards.len(), 1);
        assert_eq!(store.inner.users.len(), 1);
        assert_eq!(store.inner.max_records, 3);
        let store = MemoryStore::builder().shards(5).build();
        assert_eq!(store.inner.shards.len(), 5);
        assert!(store.is_empty());
    }
}

#[cfg(test)]
mod conformance_tests {
    /// The shared suite every store must pass.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_store_passes_the_conformance_suite() {
        super::super::conformance::run_all(&super::MemoryStore::new()).await;
    }
}
