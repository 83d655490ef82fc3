//! The partial cache: rows looked up, and keys found missing, per worker.

use super::{LookupJoinConfig, LookupKey};
use hashbrown::DefaultHashBuilder;
use moka::sync::Cache;
use moka::Expiry;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes counted for an entry besides its serialized key and row (moka's own entry).
const ENTRY_OVERHEAD: u32 = 64;

/// A row, or the fact that there is none.
pub(super) type Cached<V> = Option<V>;

/// Rows stay for `ttl` after they were loaded; misses for `miss_ttl`.
struct Lifetimes {
    ttl: Option<Duration>,
    miss_ttl: Duration,
}

impl<K, V> Expiry<K, Cached<V>> for Lifetimes {
    fn expire_after_create(&self, _: &K, value: &Cached<V>, _: Instant) -> Option<Duration> {
        match value {
            Some(_) => self.ttl,
            None => Some(self.miss_ttl),
        }
    }

    fn expire_after_update(
        &self,
        _: &K,
        value: &Cached<V>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        match value {
            Some(_) => self.ttl,
            None => Some(self.miss_ttl),
        }
    }
}

/// One worker's cache of one join.
pub(super) struct LookupCache<K, V> {
    cache: Cache<K, Cached<V>, DefaultHashBuilder>,
}

impl<K: LookupKey, V: Clone + Serialize + Send + Sync + 'static> LookupCache<K, V> {
    pub(super) fn new(config: &LookupJoinConfig, operator: &str) -> Arc<Self> {
        let evictions = metrics::counter!("ferroflow_lookup_cache_evictions_total", "operator" => operator.to_string());
        let listener = {
            move |_k: Arc<K>, _v: Cached<V>, cause: moka::notification::RemovalCause| {
                if cause.was_evicted() {
                    evictions.increment(1);
                }
            }
        };
        let mut builder = Cache::builder()
            .expire_after(Lifetimes {
                ttl: config.cache_ttl,
                miss_ttl: config.miss_ttl,
            })
            .eviction_listener(listener);
        builder = match config.cache_bytes {
            Some(bytes) => builder.max_capacity(bytes).weigher(|k: &K, v: &Cached<V>| {
                let size = postcard::to_allocvec(&(k, v)).map_or(0, |b| b.len());
                u32::try_from(size)
                    .unwrap_or(u32::MAX)
                    .saturating_add(ENTRY_OVERHEAD)
            }),
            None => builder
                .max_capacity(config.cache_rows)
                .initial_capacity(usize::try_from(config.cache_rows.min(1 << 20)).unwrap_or(0)),
        };
        if let Some(idle) = config.cache_idle {
            builder = builder.time_to_idle(idle);
        }
        Arc::new(Self {
            // Hashed as the job's other maps are (hashbrown's randomly seeded foldhash),
            // not with the standard library's slower SipHash.
            cache: builder.build_with_hasher(DefaultHashBuilder::default()),
        })
    }

    /// The cached answer for `key`: `Some(Some(row))`, `Some(None)` (known missing) or
    /// `None` (not cached).
    #[inline]
    pub(super) fn get(&self, key: &K) -> Option<Cached<V>> {
        self.cache.get(key)
    }

    /// Remembers the answer for `key` (a miss only when misses are remembered).
    pub(super) fn put(&self, key: K, value: Cached<V>, remember_misses: bool) {
        if value.is_some() || remember_misses {
            self.cache.insert(key, value);
        }
    }

    /// Entries, and bytes when bounded by bytes (else entries again), as of the cache's
    /// last housekeeping.
    pub(super) fn size(&self) -> (u64, u64) {
        (self.cache.entry_count(), self.cache.weighted_size())
    }

    /// Does the cache's pending housekeeping (evictions, counts) now.
    #[cfg(test)]
    pub(super) fn settle(&self) {
        self.cache.run_pending_tasks();
    }

    /// The keys held (tests).
    #[cfg(test)]
    pub(super) fn keys(&self) -> Vec<K> {
        self.cache.iter().map(|(k, _)| K::clone(&k)).collect()
    }
}
