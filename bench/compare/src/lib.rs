//! What the benchmark binaries share: the settings they read from the
//! environment.

use keepsake::store::RedisStore;

/// The number environment variable `name` holds, if it is set to one.
///
/// ```
/// assert_eq!(keepsake_compare::env_number::<u64>("KEEPSAKE_BENCH_NOT_SET"), None);
/// ```
pub fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|n| n.parse().ok())
}

/// `store` with the local cache capacity `KEEPSAKE_BENCH_REDIS_CACHE` sets
/// (0: no cache), or as it is when that is unset.
pub fn with_bench_cache(store: RedisStore) -> RedisStore {
    match env_number("KEEPSAKE_BENCH_REDIS_CACHE") {
        Some(capacity) => store.with_local_cache(capacity),
        None => store,
    }
}
