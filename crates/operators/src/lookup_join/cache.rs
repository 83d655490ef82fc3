//! The partial cache: rows looked up, and keys found missing, per worker.
//!
//! Built on `quick_cache` (a sharded hash table with a CLOCK-Pro/S3-FIFO eviction
//! policy). Each entry carries the times it was written and last read, and is treated
//! as absent once `cache_ttl` (rows) or `miss_ttl` (misses) has passed since it was
//! written, or `cache_idle` since it was last read. An expired entry is dropped when it
//! is next read, or evicted like any other when room is needed.

use super::{LookupJoinConfig, LookupKey};
use ferroflow_core::{Error, Result};
use hashbrown::DefaultHashBuilder;
use quick_cache::sync::{Cache, EntryAction};
use quick_cache::{Lifecycle, OptionsBuilder, Weighter};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes counted for an entry besides its serialized key and row (the cache's own slot).
const ENTRY_OVERHEAD: u64 = 64;

/// Shards of one worker's cache (read by the worker, written by lookups that answer on
/// the I/O runtime): few writers, so few shards.
const SHARDS: u64 = 4;

/// A row, or the fact that there is none.
pub(super) type Cached<V> = Option<V>;

/// Milliseconds since the cache was made.
pub(super) type Millis = u64;

/// What the cache holds for a key.
#[derive(Clone)]
struct Entry<V> {
    row: Cached<V>,
    /// When it was written.
    written: Millis,
    /// When it was last read or written (read back only with `cache_idle`).
    read: Millis,
    /// Its weight: 1, or its serialized size plus [`ENTRY_OVERHEAD`] when bounded by bytes.
    weight: u64,
}

/// Weighs an entry by the weight it was given when written.
#[derive(Clone)]
struct ByWeight;

impl<K, V> Weighter<K, Entry<V>> for ByWeight {
    #[inline]
    fn weight(&self, _: &K, entry: &Entry<V>) -> u64 {
        entry.weight
    }
}

/// Counts evictions.
#[derive(Clone)]
struct Evictions(metrics::Counter);

impl<K, V> Lifecycle<K, Entry<V>> for Evictions {
    type RequestState = ();

    fn begin_request(&self) -> Self::RequestState {}

    fn on_evict(&self, _: &mut (), _: K, _: Entry<V>) {
        self.0.increment(1);
    }
}

/// One worker's cache of one join.
pub(super) struct LookupCache<K, V> {
    cache: Cache<K, Entry<V>, ByWeight, DefaultHashBuilder, Evictions>,
    /// Entries are weighed by their serialized size (else each weighs 1).
    by_bytes: bool,
    /// `cache_ttl`, `miss_ttl` and `cache_idle` in the cache's milliseconds.
    ttl: Option<Millis>,
    miss_ttl: Millis,
    idle: Option<Millis>,
    /// An idle-bounded entry's read time is written back when it is this old, so that
    /// reads of a hot key do not each take the shard's write lock: the entry then
    /// leaves between seven eighths of `cache_idle` and `cache_idle` after its last read.
    refresh_after: Millis,
    epoch: Instant,
}

/// `d` in milliseconds (the longest as never).
fn millis(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// Whether `after` milliseconds have passed from `since` to `now`.
#[inline]
fn passed(since: Millis, after: Millis, now: Millis) -> bool {
    now.saturating_sub(since) >= after
}

impl<K: LookupKey, V: Clone + Serialize + Send + Sync + 'static> LookupCache<K, V> {
    pub(super) fn new(config: &LookupJoinConfig, operator: &str) -> Result<Arc<Self>> {
        let evictions = metrics::counter!("ferroflow_lookup_cache_evictions_total", "operator" => operator.to_string());
        let (capacity, estimated) = match config.cache_bytes {
            Some(bytes) => (bytes, bytes / (2 * ENTRY_OVERHEAD)),
            None => (config.cache_rows, config.cache_rows),
        };
        // Each shard holds its share of the capacity, rounded up: a capacity that the
        // shards divide evenly keeps the whole cache within its bound.
        let shards = if capacity >= SHARDS { SHARDS } else { 1 };
        let capacity = capacity / shards * shards;
        let mut options = OptionsBuilder::new();
        options
            .shards(usize::try_from(shards).unwrap_or(1))
            .weight_capacity(capacity.max(1))
            .estimated_items_capacity(usize::try_from(estimated.clamp(1, 1 << 20)).unwrap_or(1));
        let options = options
            .build()
            .map_err(|e| Error::Internal(format!("lookup cache options: {e}")))?;
        let cache = Cache::with_options(
            options,
            ByWeight,
            // Hashed as the job's other maps are (hashbrown's randomly seeded foldhash),
            // not with the standard library's slower SipHash.
            DefaultHashBuilder::default(),
            Evictions(evictions),
        );
        let idle = config.cache_idle.map(millis);
        Ok(Arc::new(Self {
            cache,
            by_bytes: config.cache_bytes.is_some(),
            ttl: config.cache_ttl.map(millis),
            miss_ttl: millis(config.miss_ttl),
            idle,
            refresh_after: idle.map_or(Millis::MAX, |ms| ms / 8),
            epoch: Instant::now(),
        }))
    }

    /// Now, as the cache counts time (one reading serves a whole batch).
    #[inline]
    pub(super) fn now(&self) -> Millis {
        millis(self.epoch.elapsed())
    }

    /// The cached answer for `key` at `now`: `Some(Some(row))`, `Some(None)` (known
    /// missing) or `None` (not cached, or expired).
    #[inline]
    pub(super) fn get(&self, key: &K, now: Millis) -> Option<Cached<V>> {
        let entry = self.cache.get(key)?;
        let lifetime = match entry.row {
            Some(_) => self.ttl,
            None => Some(self.miss_ttl),
        };
        let written_out = lifetime.is_some_and(|ttl| passed(entry.written, ttl, now));
        let idle_out = self.idle.is_some_and(|idle| passed(entry.read, idle, now));
        if written_out || idle_out {
            // Only this entry: one written since the read above is fresh.
            self.cache.remove_if(key, |e| e.written == entry.written);
            return None;
        }
        if now.saturating_sub(entry.read) >= self.refresh_after {
            self.cache.entry(key, None, |_, e| {
                e.read = e.read.max(now);
                EntryAction::Retain(())
            });
        }
        Some(entry.row)
    }

    /// Remembers the answer for `key` (a miss only when misses are remembered).
    pub(super) fn put(&self, key: K, row: Cached<V>, remember_misses: bool) {
        if row.is_none() && !remember_misses {
            return;
        }
        let weight = if self.by_bytes {
            let size = postcard::to_allocvec(&(&key, &row)).map_or(0, |b| b.len());
            u64::try_from(size)
                .unwrap_or(u64::MAX)
                .saturating_add(ENTRY_OVERHEAD)
        } else {
            1
        };
        let now = self.now();
        self.cache.insert(
            key,
            Entry {
                row,
                written: now,
                read: now,
                weight,
            },
        );
    }

    /// Entries, and their weight: bytes when bounded by bytes, else entries again.
    pub(super) fn size(&self) -> (u64, u64) {
        (self.cache.len() as u64, self.cache.weight())
    }

    /// The keys held (tests).
    #[cfg(test)]
    pub(super) fn keys(&self) -> Vec<K> {
        self.cache.iter().map(|(k, _)| k).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ttl: u64, miss_ttl: u64, idle: Option<u64>) -> LookupJoinConfig {
        LookupJoinConfig {
            cache_rows: 100,
            cache_ttl: Some(Duration::from_millis(ttl)),
            miss_ttl: Duration::from_millis(miss_ttl),
            cache_idle: idle.map(Duration::from_millis),
            ..LookupJoinConfig::default()
        }
    }

    #[test]
    fn rows_and_misses_expire_after_their_own_lifetimes() {
        let cache = LookupCache::<u64, String>::new(&config(1_000, 100, None), "t").unwrap();
        cache.put(1, Some("a".into()), true);
        cache.put(2, None, true);
        cache.put(3, None, false);
        let t = cache.now();
        assert_eq!(cache.get(&1, t), Some(Some("a".into())));
        assert_eq!(cache.get(&2, t), Some(None));
        assert_eq!(cache.get(&3, t), None, "a miss not remembered");
        assert_eq!(cache.get(&1, t + 500), Some(Some("a".into())));
        assert_eq!(cache.get(&2, t + 500), None, "the miss expired");
        assert_eq!(cache.get(&1, t + 1_000), None, "the row expired");
        assert_eq!(cache.size().0, 0, "expired entries are dropped when read");
    }

    #[test]
    fn an_entry_read_often_enough_stays_and_an_idle_one_leaves() {
        let cache =
            LookupCache::<u64, String>::new(&config(100_000, 100_000, Some(800)), "t").unwrap();
        cache.put(1, Some("a".into()), true);
        cache.put(2, Some("b".into()), true);
        let t = cache.now();
        // Key 1 is read every 300 ms: each read is within the idle time of the last.
        for step in 1..=10 {
            assert_eq!(
                cache.get(&1, t + step * 300),
                Some(Some("a".into())),
                "{step}"
            );
        }
        assert_eq!(cache.get(&2, t + 3_000), None, "key 2 was not read for 3 s");
        assert_eq!(
            cache.get(&1, t + 3_000 + 800),
            None,
            "key 1 idle for 800 ms"
        );
    }

    #[test]
    fn a_cache_bounded_in_bytes_never_holds_more() {
        for bound in [10_003, 4_096, 999, 3] {
            let config = LookupJoinConfig {
                cache_bytes: Some(bound),
                ..config(100_000, 100_000, None)
            };
            let cache = LookupCache::<u64, String>::new(&config, "t").unwrap();
            for k in 0..2_000 {
                cache.put(k, Some(format!("row {k}")), true);
                let (_, bytes) = cache.size();
                assert!(
                    bytes <= bound,
                    "{bytes} bytes held under a bound of {bound}"
                );
            }
        }
    }

    #[test]
    fn a_cache_bounded_by_rows_evicts_and_counts_its_entries() {
        let cache = LookupCache::<u64, u64>::new(&config(100_000, 100_000, None), "t").unwrap();
        for k in 0..1_000 {
            cache.put(k, Some(k), true);
        }
        let (entries, weight) = cache.size();
        assert!(entries <= 100, "{entries}");
        assert_eq!(entries, weight);
        let t = cache.now();
        let held = (0..1_000).filter(|k| cache.get(k, t).is_some()).count();
        assert_eq!(held as u64, entries);
    }
}
