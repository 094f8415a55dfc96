//! The local copies of sessions a [`RedisStore`](super::RedisStore) keeps,
//! invalidated by Redis (client tracking) when another connection changes
//! them.
//!
//! A copy is only ever added with a [`Ticket`] taken *before* the command
//! that read or wrote it was sent: every invalidation of a key bumps its
//! shard's epoch, so a copy whose key was invalidated while its command was
//! on the way is dropped instead of added. That closes the one race of
//! client-side caching: a reply (an old value) handled after the
//! invalidation that made it old.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
};

use crate::store::{ID_TEXT_LEN, Id, IdHash, Record};

/// Shards of the cache; each has its own lock and epoch. Many, so that a
/// write or an invalidation seldom turns away a read or write of another
/// session that shares its shard (the epochs are per shard).
const SHARDS: usize = 1024;

/// Sessions kept in all, by default.
pub(super) const DEFAULT_CAPACITY: usize = 10_000;

/// A session in the cache: its store's key prefix (as a number, see
/// [`Cache::prefix`]) and its id.
type Key = (u64, Id);

/// One shard.
#[derive(Default)]
struct Shard {
    /// Bumped by every invalidation and every write of this process to a
    /// key of the shard.
    epoch: u64,
    /// Shared with the requests that read them.
    copies: HashMap<Key, Arc<Record>, IdHash>,
}

/// Local copies of sessions, by key prefix and id.
pub(super) struct Cache {
    shards: Box<[Mutex<Shard>]>,
    /// The capacity, as set.
    capacity: AtomicUsize,
    /// Copies kept per shard at most: the capacity spread over the shards,
    /// rounded up.
    per_shard: AtomicUsize,
    /// The key prefixes of the stores that use the cache, numbered.
    prefixes: Mutex<HashMap<String, u64>>,
}

/// Where a key's shard stood when its command was sent.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ticket {
    shard: usize,
    epoch: u64,
}

fn per_shard(capacity: usize) -> usize {
    capacity.div_ceil(SHARDS).max(1)
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // Every critical section leaves the shard consistent.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Cache {
    /// A cache of up to about `capacity` sessions.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            capacity: AtomicUsize::new(capacity),
            per_shard: AtomicUsize::new(per_shard(capacity)),
            prefixes: Mutex::new(HashMap::new()),
        }
    }

    /// Sets the capacity (copies already kept beyond it go as others come).
    pub(super) fn set_capacity(&self, capacity: usize) {
        self.capacity.store(capacity, Ordering::Relaxed);
        self.per_shard.store(per_shard(capacity), Ordering::Relaxed);
    }

    /// The capacity, as set (the shards may hold a little more: it is
    /// spread over them rounded up).
    pub(super) fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    /// The number of the store key prefix `prefix`.
    pub(super) fn prefix(&self, prefix: &str) -> u64 {
        let mut prefixes = self.prefixes.lock().unwrap_or_else(PoisonError::into_inner);
        let next = prefixes.len() as u64;
        *prefixes.entry(prefix.to_owned()).or_insert(next)
    }

    /// The cache key of the Redis key `key` (`<prefix>session:<id>`), if it
    /// is a session of a prefix the cache holds.
    fn key_of(&self, key: &[u8]) -> Option<Key> {
        let key = std::str::from_utf8(key).ok()?;
        let (head, id) = key.split_at_checked(key.len().checked_sub(ID_TEXT_LEN)?)?;
        let prefix = head.strip_suffix("session:")?;
        let id = id.parse().ok()?;
        let prefixes = self.prefixes.lock().unwrap_or_else(PoisonError::into_inner);
        Some((*prefixes.get(prefix)?, id))
    }

    fn shard_of(key: &Key) -> usize {
        let [a, b, ..] = *key.1.as_bytes();
        usize::from(u16::from_le_bytes([a, b])) % SHARDS
    }

    /// The copy of `key`, if one is kept.
    pub(super) fn get(&self, key: &Key) -> Option<Arc<Record>> {
        lock(&self.shards[Self::shard_of(key)])
            .copies
            .get(key)
            .cloned()
    }

    /// A ticket for a command about to be sent for `key`.
    pub(super) fn ticket(&self, key: &Key) -> Ticket {
        let shard = Self::shard_of(key);
        Ticket {
            shard,
            epoch: lock(&self.shards[shard]).epoch,
        }
    }

    /// Keeps `record`, read from Redis under `ticket`, unless the key was
    /// invalidated or written since, or a newer copy is already kept.
    pub(super) fn fill(&self, ticket: Ticket, key: &Key, record: Arc<Record>) {
        let mut shard = lock(&self.shards[ticket.shard]);
        if shard.epoch != ticket.epoch {
            return;
        }
        if shard
            .copies
            .get(key)
            .is_some_and(|kept| kept.version > record.version)
        {
            return;
        }
        self.keep(&mut shard, key, record);
    }

    /// This process wrote `key` with a command sent under `ticket`: keeps
    /// `record`, what Redis now holds, if nothing was invalidated meanwhile,
    /// and drops the copy otherwise (or with `None`, when what Redis holds
    /// is unknown or gone). Either way, reads of the key still on the way
    /// will not be kept.
    pub(super) fn wrote(&self, ticket: Ticket, key: &Key, record: Option<Arc<Record>>) {
        let mut shard = lock(&self.shards[ticket.shard]);
        let unchanged = shard.epoch == ticket.epoch;
        shard.epoch += 1;
        match record {
            Some(record) if unchanged => self.keep(&mut shard, key, record),
            _ => {
                shard.copies.remove(key);
            }
        }
    }

    fn keep(&self, shard: &mut Shard, key: &Key, record: Arc<Record>) {
        let limit = self.per_shard.load(Ordering::Relaxed);
        while shard.copies.len() >= limit && !shard.copies.contains_key(key) {
            // Full: make room by dropping any one copy (the map's order is
            // arbitrary); a dropped copy costs one read from Redis.
            let Some(victim) = shard.copies.keys().next().cloned() else {
                break;
            };
            shard.copies.remove(&victim);
        }
        match shard.copies.get_mut(key) {
            Some(slot) => *slot = record,
            None => {
                shard.copies.insert(*key, record);
            }
        }
    }

    /// Redis says the key `key` changed: drops its copy, if it is a session
    /// the cache may hold.
    pub(super) fn invalidate_key(&self, key: &[u8]) {
        if let Some(key) = self.key_of(key) {
            self.invalidate(&key);
        }
    }

    /// This process changed `key` in a way it cannot follow: drops the
    /// copy.
    pub(super) fn invalidate(&self, key: &Key) {
        let mut shard = lock(&self.shards[Self::shard_of(key)]);
        shard.epoch += 1;
        shard.copies.remove(key);
    }

    /// Drops every copy (the connection broke, Redis was flushed, or this
    /// process changed many keys at once).
    pub(super) fn flush(&self) {
        for shard in &self.shards {
            let mut shard = lock(shard);
            shard.epoch += 1;
            shard.copies.clear();
        }
    }

    /// How many copies are kept.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| lock(shard).copies.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::Cache;
    use crate::store::{Id, Record};

    fn record(id: Id, version: u64) -> Record {
        let mut record = Record::new(id, 0, None, 60);
        record.version = version;
        record
    }

    fn shared(id: Id, version: u64) -> Arc<Record> {
        Arc::new(record(id, version))
    }

    /// A read whose key was invalidated while it was on the way is not
    /// kept; one that was not, is.
    #[test]
    fn a_fill_after_an_invalidation_is_dropped() {
        let cache = Cache::new(100);
        let id = Id::random();
        let k = (cache.prefix("p:"), id);
        let ticket = cache.ticket(&k);
        cache.invalidate(&k);
        cache.fill(ticket, &k, shared(id, 1));
        assert!(cache.get(&k).is_none());
        let ticket = cache.ticket(&k);
        cache.fill(ticket, &k, shared(id, 1));
        assert_eq!(cache.get(&k).map(|r| r.version), Some(1));
    }

    /// This process's own write replaces the copy, and turns away reads
    /// that were on the way before it; an older read never replaces a
    /// newer copy.
    #[test]
    fn own_writes_win_over_reads_on_the_way() {
        let cache = Cache::new(100);
        let id = Id::random();
        let k = (cache.prefix("p:"), id);
        let read = cache.ticket(&k);
        let write = cache.ticket(&k);
        cache.wrote(write, &k, Some(shared(id, 2)));
        cache.fill(read, &k, shared(id, 1));
        assert_eq!(cache.get(&k).map(|r| r.version), Some(2));
        let late = cache.ticket(&k);
        cache.fill(late, &k, shared(id, 1));
        assert_eq!(cache.get(&k).map(|r| r.version), Some(2));
        // A write whose outcome is unknown drops the copy.
        let write = cache.ticket(&k);
        cache.wrote(write, &k, None);
        assert!(cache.get(&k).is_none());
    }

    /// A write that raced with an invalidation keeps nothing.
    #[test]
    fn a_write_raced_by_an_invalidation_keeps_nothing() {
        let cache = Cache::new(100);
        let k = (cache.prefix("p:"), Id::random());
        let write = cache.ticket(&k);
        cache.invalidate(&k);
        cache.wrote(write, &k, Some(shared(Id::random(), 3)));
        assert!(cache.get(&k).is_none());
    }

    #[test]
    fn flush_drops_everything_and_turns_away_reads_on_the_way() {
        let cache = Cache::new(100);
        let (a, b) = ((0, Id::random()), (0, Id::random()));
        let ticket = cache.ticket(&a);
        cache.fill(cache.ticket(&b), &b, shared(b.1, 0));
        cache.flush();
        cache.fill(ticket, &a, shared(a.1, 0));
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let cache = Cache::new(4096);
        assert_eq!(cache.capacity(), 4096);
        for _ in 0..20_000 {
            let key = (0, Id::random());
            cache.fill(cache.ticket(&key), &key, shared(key.1, 0));
        }
        assert!(cache.len() <= 4096 + super::SHARDS, "{}", cache.len());
        assert!(cache.len() > 3000, "{}", cache.len());
    }

    /// Redis's invalidations name keys; only sessions of known prefixes
    /// are dropped, and anything else is ignored.
    #[test]
    fn invalidations_find_the_session_by_its_redis_key() {
        let cache = Cache::new(100);
        let id = Id::random();
        let k = (cache.prefix("app:"), id);
        cache.fill(cache.ticket(&k), &k, shared(id, 0));
        for other in [
            format!("app:user:{id}"),
            format!("other:session:{id}"),
            "app:session:short".to_owned(),
            String::new(),
        ] {
            cache.invalidate_key(other.as_bytes());
            assert!(cache.get(&k).is_some(), "{other:?}");
        }
        cache.invalidate_key(format!("app:session:{id}").as_bytes());
        assert!(cache.get(&k).is_none());
    }
}
