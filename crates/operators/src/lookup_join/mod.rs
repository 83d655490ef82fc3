//! Lookup joins: enrich each record of a stream with a row of a dimension table that
//! lives outside the job (Redis, PostgreSQL, MySQL, a file) and changes while it runs.
//!
//! ```text
//! clicks ──key_by(item)──▶ lookup join ──▶ Joined { event, dim }
//!                            │  cache (per worker, only its own keys)
//!                            ▼
//!                      dimension store
//! ```
//!
//! - **Hash-partitioned** (by default): the stream is keyed by the join key first, so each
//!   worker looks up and caches only the keys of its own key groups; `partitioned = false`
//!   keeps records where they are (for a tiny table every worker may hold whole).
//! - **Never blocks a worker**: lookups run on the job's I/O runtime as batched calls of an
//!   async operator ([`ferroflow_core::AsyncFunction`]); the worker goes on with other
//!   records, timers and barriers, and waits only when [`AsyncConfig::capacity`] calls
//!   are in flight or [`AsyncConfig::max_pending`] records are unanswered.
//! - **Batched and coalesced**: the keys of a batch that miss the cache go out as one
//!   request ([`LookupSource::lookup`] gets them all), and a key already being looked up
//!   by an earlier request of the same worker waits for that one (single flight).
//! - **Cached** with [`quick_cache`]: bounded by rows or by bytes, expire after write and
//!   after access, misses cached too (for their own, shorter time), so a hot missing key
//!   does not reach the store on every record.
//! - **Delayed retry of misses**: a record whose key is not found (the dimension row comes
//!   later than the event) is held and looked up again after a delay, fixed or growing,
//!   up to a number of attempts; held records are in checkpoints. A retry skips the
//!   cache. When attempts run out, a left join emits the record with no dimension, an
//!   inner join sends it to its unmatched output.
//! - **Full cache** ([`LookupJoin::full`]): each worker loads its share of a whole table
//!   from a [`TableSource`] before records flow, and reloads it at an interval, at a time
//!   of day or when the source says it changed; a reload is built off the worker and
//!   swapped in at once, and a failed one keeps the old table.
//!
//! Exactly-once: a record is either answered before a checkpoint barrier passes or is in
//! the checkpoint and looked up again after a restore (lookups are reads, safe to
//! repeat).

mod cache;
mod config;
mod full;
mod function;
mod memory;
mod rows;
#[cfg(test)]
mod tests;

pub use config::{CacheMode, JoinType, LookupJoinConfig, MissRetry, OnLookupTimeout, ReloadConfig};
pub use memory::MemoryTable;

use ferroflow_core::{AsyncConfig, DataStream, Error, KeyedStream, Result};
use ferroflow_state::StateKey;
use function::{Backend, JoinEmit, LookupFunction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// What a join key must be: hashable for partitioning and the cache, serializable for
/// checkpoints.
pub trait LookupKey:
    StateKey + Eq + Hash + std::fmt::Debug + Serialize + DeserializeOwned + Sync
{
}

impl<K> LookupKey for K where
    K: StateKey + Eq + Hash + std::fmt::Debug + Serialize + DeserializeOwned + Sync
{
}

/// A dimension store that answers lookups of many keys at once.
///
/// Implement `lookup`; it gets the distinct keys of one request and returns one answer
/// per key, in the same order (`None`: no row). An error says whether it is retryable
/// ([`Error::External`] with `retryable: true` for a refused connection or a timeout):
/// retryable errors are retried with backoff, the others fail the job.
///
/// An HTTP service as a dimension, in a few lines:
///
/// ```
/// use ferroflow_core::{Error, Result};
/// use ferroflow_operators::lookup_join::LookupSource;
///
/// /// Prices from a service that takes `?ids=1,2,3` and answers a JSON map.
/// struct PriceService {
///     base: String,
/// }
///
/// impl LookupSource for PriceService {
///     type Key = u64;
///     type Value = String;
///     async fn lookup(&self, keys: &[u64]) -> Result<Vec<Option<String>>> {
///         let ids: Vec<String> = keys.iter().map(u64::to_string).collect();
///         let url = format!("{}/prices?ids={}", self.base, ids.join(","));
///         // let body = client.get(&url).send().await.map_err(|e| Error::External {
///         //     system: "prices".into(), context: url, source: e.into(),
///         //     retryable: e.is_timeout() || e.is_connect() })?.text().await ...;
///         let answers: std::collections::HashMap<u64, String> = Default::default();
///         let _ = url;
///         Ok(keys.iter().map(|k| answers.get(k).cloned()).collect())
///     }
/// }
/// # let _ = Error::Config(String::new());
/// ```
pub trait LookupSource: Send + Sync + 'static {
    /// The join key.
    type Key: LookupKey;
    /// A dimension row.
    type Value: Clone + Serialize + Send + Sync + 'static;

    /// The rows of `keys` (distinct), one answer per key in order.
    fn lookup(
        &self,
        keys: &[Self::Key],
    ) -> impl Future<Output = Result<Vec<Option<Self::Value>>>> + Send;

    /// The store's name in errors, logs and metrics (`redis`, `postgres:dim_item`).
    /// Default: the type's name.
    fn name(&self) -> String {
        ferroflow_core::short_type_name::<Self>()
    }
}

/// A whole dimension table, for the full cache: a file, a query, a hash in Redis.
///
/// Implement `load_all`; each worker calls `load_where` with the test of its own keys,
/// which filters what `load_all` returns unless the source skips rows itself.
pub trait TableSource: Send + Sync + 'static {
    /// The join key.
    type Key: LookupKey;
    /// A dimension row.
    type Value: Clone + Serialize + Send + Sync + 'static;

    /// Every row of the table.
    fn load_all(&self) -> impl Future<Output = Result<Vec<(Self::Key, Self::Value)>>> + Send;

    /// The rows whose keys `keep` accepts: one worker's share of the table in a
    /// partitioned join. Default: [`load_all`](Self::load_all), filtered in place. A
    /// source that can skip rows as it reads them overrides it, so that a worker's load
    /// never holds more than its share.
    fn load_where(
        &self,
        keep: &(dyn Fn(&Self::Key) -> bool + Send + Sync),
    ) -> impl Future<Output = Result<Vec<(Self::Key, Self::Value)>>> + Send {
        async move {
            let mut rows = self.load_all().await?;
            rows.retain(|(k, _)| keep(k));
            Ok(rows)
        }
    }

    /// Something that changes when the table does (a file's size and modification time,
    /// an object's ETag), polled at [`ReloadConfig::watch_interval`]; the table is
    /// reloaded when it differs from the last load's. Default: `None` (not watched).
    fn version(&self) -> impl Future<Output = Result<Option<String>>> + Send {
        async { Ok(None) }
    }

    /// The table's name in errors, logs and metrics. Default: the type's name.
    fn name(&self) -> String {
        ferroflow_core::short_type_name::<Self>()
    }
}

/// A record and the dimension row found for it (`None` in a left join when there was
/// none after every attempt).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Joined<E, V> {
    /// The input record.
    pub event: E,
    /// The dimension row.
    pub dim: Option<V>,
}

impl<E, V> Joined<E, V> {
    /// Whether a dimension row was found.
    pub fn matched(&self) -> bool {
        self.dim.is_some()
    }
}

/// Counts of one lookup join, summed over its workers (also reported through the
/// `metrics` facade, labelled with the operator's name).
#[derive(Debug, Default)]
pub struct LookupCounters {
    /// Records answered from the cache (or the full table).
    pub hits: AtomicU64,
    /// Records whose key was not in the cache.
    pub misses: AtomicU64,
    /// Records whose key was cached as missing.
    pub negative_hits: AtomicU64,
    /// Requests sent to the store.
    pub requests: AtomicU64,
    /// Keys in those requests.
    pub keys_requested: AtomicU64,
    /// Requests that failed (each is retried or fails the job).
    pub failures: AtomicU64,
    /// Records waiting for a delayed retry, summed over retries.
    pub retries: AtomicU64,
    /// Records waiting for a delayed retry now (see [`LookupCounters::held`]).
    pub held_now: AtomicI64,
    /// Records that matched.
    pub matched: AtomicU64,
    /// Records given up on after their last attempt.
    pub unmatched: AtomicU64,
    /// Full-table loads that succeeded and that failed.
    pub reloads: AtomicU64,
    /// Full-table loads that failed (the old table stays).
    pub reload_failures: AtomicU64,
}

impl LookupCounters {
    /// The value of one counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Records waiting for a delayed retry now, in this process (records restored from a
    /// checkpoint while waiting are not counted until they wait again).
    pub fn held(&self) -> u64 {
        u64::try_from(self.held_now.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Share of records answered from the cache, 0 to 1 (0 before any record).
    pub fn hit_rate(&self) -> f64 {
        let hits = Self::get(&self.hits) + Self::get(&self.negative_hits);
        let all = hits + Self::get(&self.misses);
        if all == 0 {
            0.0
        } else {
            hits as f64 / all as f64
        }
    }
}

/// A lookup join, ready to apply to a stream: [`LookupJoin::partial`] (a store and a
/// cache of what was looked up) or [`LookupJoin::full`] (a whole table per worker).
pub struct LookupJoin<K, V> {
    backend: Backend<K, V>,
    config: LookupJoinConfig,
    counters: Arc<LookupCounters>,
}

impl<K: LookupKey, V: Clone + Serialize + Send + Sync + 'static> LookupJoin<K, V> {
    /// Looks keys up in `source`, through a cache as `config.cache` says (`partial` or
    /// `none`; `full` needs [`LookupJoin::full`]).
    pub fn partial<S>(source: S, config: LookupJoinConfig) -> Self
    where
        S: LookupSource<Key = K, Value = V>,
    {
        Self {
            backend: Backend::store(source),
            config,
            counters: Arc::default(),
        }
    }

    /// Holds each worker's share of `table`, loaded before records flow and reloaded as
    /// `config.reload` says.
    pub fn full<T>(table: T, config: LookupJoinConfig) -> Self
    where
        T: TableSource<Key = K, Value = V>,
    {
        Self {
            backend: Backend::table(table),
            config,
            counters: Arc::default(),
        }
    }

    /// The join's counters (shared by its workers; read them while the job runs).
    pub fn counters(&self) -> Arc<LookupCounters> {
        Arc::clone(&self.counters)
    }

    /// A left join of `stream` on `key`: every record comes out once, with its dimension
    /// row or, after the last attempt, without.
    ///
    /// # Errors
    /// When the configuration is invalid.
    pub fn left<E, F>(self, stream: DataStream<E>, key: F) -> Result<DataStream<Joined<E, V>>>
    where
        E: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        F: Fn(&E) -> K + Send + Sync + 'static,
    {
        self.apply(stream, key, JoinType::Left)
    }

    /// An inner join of `stream` on `key`: records with a dimension row come out joined;
    /// records given up on after the last attempt come out of the second stream.
    ///
    /// # Errors
    /// When the configuration is invalid.
    pub fn inner<E, F>(self, stream: DataStream<E>, key: F) -> Result<InnerJoin<E, V>>
    where
        E: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        F: Fn(&E) -> K + Send + Sync + 'static,
    {
        let out: DataStream<JoinOutput<E, V>> = self.apply(stream, key, JoinType::Inner)?;
        Ok(out.split(|out: JoinOutput<E, V>| match out {
            JoinOutput::Joined(j) => Ok(j),
            JoinOutput::Unmatched(e) => Err(e),
        }))
    }

    /// The join's async operator, emitting `O`: [`Joined`] records for a left join,
    /// [`JoinOutput`]s for an inner one.
    fn apply<E, F, O>(self, stream: DataStream<E>, key: F, join: JoinType) -> Result<DataStream<O>>
    where
        E: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        F: Fn(&E) -> K + Send + Sync + 'static,
        O: JoinEmit<E, V>,
    {
        let mut config = self.config;
        config.join = join;
        config.validate()?;
        if matches!(self.backend, Backend::Table(_)) != (config.cache == CacheMode::Full) {
            return Err(Error::Config(format!(
                "lookup join: cache `{}` needs {}",
                config.cache.as_str(),
                if config.cache == CacheMode::Full {
                    "a table source (LookupJoin::full)"
                } else {
                    "a lookup source (LookupJoin::partial)"
                }
            )));
        }
        let async_config: AsyncConfig = config.async_config();
        let partitioned = config.partitioned;
        let function = LookupFunction::new(self.backend, Arc::new(config), self.counters);
        let out = if partitioned {
            let keyed: KeyedStream<K, E> = stream.key_by(key);
            keyed.process_async(function, async_config)
        } else {
            stream
                .map(move |e: E| (key(&e), e))
                .process_async(function, async_config)
        };
        Ok(out.name("lookup_join"))
    }
}

/// An inner join's two outputs: the joined records, and those given up on.
pub type InnerJoin<E, V> = (DataStream<Joined<E, V>>, DataStream<E>);

/// What an inner join's async operator emits, before it is split in two: a joined
/// record, or one given up on. (A left join's emits [`Joined`] records.)
#[derive(Debug, Clone)]
pub enum JoinOutput<E, V> {
    /// Joined.
    Joined(Joined<E, V>),
    /// Given up on in an inner join.
    Unmatched(E),
}
