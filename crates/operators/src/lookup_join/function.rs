//! The join as an async function: answers from the cache on the worker, looks the rest
//! up in batches on the I/O runtime, one request per key at a time.

use super::cache::LookupCache;
use super::full::{FullTable, Owns, Share};
use super::{
    CacheMode, JoinOutput, Joined, LookupCounters, LookupJoinConfig, LookupKey, LookupSource,
    OnLookupTimeout, TableSource,
};
use ferroflow_core::{AsyncCall, AsyncFunction, AsyncOpenContext, Collector, Error, Reply, Result};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use hashbrown::HashMap;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// A [`LookupSource`] behind a pointer, its futures boxed.
pub(super) trait DynLookup<K, V>: Send + Sync {
    fn lookup_boxed(self: Arc<Self>, keys: Vec<K>) -> BoxFuture<'static, Result<Vec<Option<V>>>>;
    fn source_name(&self) -> String;
}

impl<S: LookupSource> DynLookup<S::Key, S::Value> for S {
    fn lookup_boxed(
        self: Arc<Self>,
        keys: Vec<S::Key>,
    ) -> BoxFuture<'static, Result<Vec<Option<S::Value>>>> {
        async move { self.lookup(&keys).await }.boxed()
    }

    fn source_name(&self) -> String {
        self.name()
    }
}

/// A [`TableSource`] behind a pointer, its futures boxed.
pub(super) trait DynTable<K, V>: Send + Sync {
    fn load_boxed(self: Arc<Self>, keep: Owns<K>) -> BoxFuture<'static, Result<Vec<(K, V)>>>;
    fn version_boxed(self: Arc<Self>) -> BoxFuture<'static, Result<Option<String>>>;
    fn table_name(&self) -> String;
}

impl<T: TableSource> DynTable<T::Key, T::Value> for T {
    fn load_boxed(
        self: Arc<Self>,
        keep: Owns<T::Key>,
    ) -> BoxFuture<'static, Result<Vec<(T::Key, T::Value)>>> {
        async move { self.load_where(&*keep).await }.boxed()
    }

    fn version_boxed(self: Arc<Self>) -> BoxFuture<'static, Result<Option<String>>> {
        async move { self.version().await }.boxed()
    }

    fn table_name(&self) -> String {
        self.name()
    }
}

/// Where rows come from.
pub(super) enum Backend<K, V> {
    Store(Arc<dyn DynLookup<K, V>>),
    Table(Arc<dyn DynTable<K, V>>),
}

impl<K, V> Clone for Backend<K, V> {
    fn clone(&self) -> Self {
        match self {
            Self::Store(s) => Self::Store(Arc::clone(s)),
            Self::Table(t) => Self::Table(Arc::clone(t)),
        }
    }
}

impl<K: LookupKey, V: Clone + Serialize + Send + Sync + 'static> Backend<K, V> {
    pub(super) fn store<S: LookupSource<Key = K, Value = V>>(source: S) -> Self {
        Self::Store(Arc::new(source))
    }

    pub(super) fn table<T: TableSource<Key = K, Value = V>>(table: T) -> Self {
        Self::Table(Arc::new(table))
    }
}

/// Why a request failed, shared by every call waiting on it.
#[derive(Debug, Clone)]
struct Failure {
    message: String,
    retryable: bool,
    timed_out: bool,
}

type Answers<K, V> = Arc<HashMap<K, Option<V>>>;
type Request<K, V> = Shared<BoxFuture<'static, Result<Answers<K, V>, Failure>>>;

/// Metrics of one worker, labelled with the operator.
struct Metrics {
    hits: metrics::Counter,
    misses: metrics::Counter,
    requests: metrics::Counter,
    failures: metrics::Counter,
    keys_per_request: metrics::Histogram,
    latency: metrics::Histogram,
    entries: metrics::Gauge,
    bytes: metrics::Gauge,
    unmatched: metrics::Counter,
}

impl Metrics {
    fn new(operator: &str) -> Self {
        let op = operator.to_string();
        Self {
            hits: metrics::counter!("ferroflow_lookup_cache_hits_total", "operator" => op.clone()),
            misses: metrics::counter!("ferroflow_lookup_cache_misses_total", "operator" => op.clone()),
            requests: metrics::counter!("ferroflow_lookup_requests_total", "operator" => op.clone()),
            failures: metrics::counter!("ferroflow_lookup_request_failures_total", "operator" => op.clone()),
            keys_per_request: metrics::histogram!("ferroflow_lookup_request_keys", "operator" => op.clone()),
            latency: metrics::histogram!("ferroflow_lookup_request_seconds", "operator" => op.clone()),
            entries: metrics::gauge!("ferroflow_lookup_cache_entries", "operator" => op.clone()),
            bytes: metrics::gauge!("ferroflow_lookup_cache_bytes", "operator" => op.clone()),
            unmatched: metrics::counter!("ferroflow_lookup_unmatched_total", "operator" => op),
        }
    }
}

/// The caches opened by joins in this process, with the address of their join's
/// counters and their worker (for tests that look inside them).
#[cfg(test)]
pub(super) type Opened = Vec<(usize, usize, Arc<dyn std::any::Any + Send + Sync>)>;
#[cfg(test)]
pub(super) static OPENED: Mutex<Opened> = Mutex::new(Vec::new());

/// What one worker holds once open.
struct Worker<K, V> {
    cache: Option<Arc<LookupCache<K, V>>>,
    table: Option<FullTable<K, V>>,
    inflight: Arc<Mutex<HashMap<K, Request<K, V>>>>,
    metrics: Arc<Metrics>,
}

/// The worker's state, once `open` has made it.
fn opened<K, V>(worker: &Option<Worker<K, V>>) -> Result<&Worker<K, V>> {
    worker
        .as_ref()
        .ok_or_else(|| Error::Internal("lookup join called before open".into()))
}

/// The lookup join's async function (one clone per worker).
pub(super) struct LookupFunction<K, E, V, O> {
    backend: Backend<K, V>,
    config: Arc<LookupJoinConfig>,
    counters: Arc<LookupCounters>,
    /// Shared by the workers: one loads its share of a full table at a time.
    loading: Arc<tokio::sync::Mutex<()>>,
    worker: Option<Worker<K, V>>,
    _types: PhantomData<fn() -> (E, O)>,
}

impl<K, E, V, O> Clone for LookupFunction<K, E, V, O> {
    /// A worker's copy, before it opens: it shares the store, the settings and the
    /// counters, and gets a cache of its own in `open`.
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            config: Arc::clone(&self.config),
            counters: Arc::clone(&self.counters),
            loading: Arc::clone(&self.loading),
            worker: None,
            _types: PhantomData,
        }
    }
}

impl<K, E, V, O> LookupFunction<K, E, V, O>
where
    K: LookupKey,
    E: Clone + Send + 'static,
    V: Clone + Serialize + Send + Sync + 'static,
{
    pub(super) fn new(
        backend: Backend<K, V>,
        config: Arc<LookupJoinConfig>,
        counters: Arc<LookupCounters>,
    ) -> Self {
        Self {
            backend,
            config,
            counters,
            loading: Arc::default(),
            worker: None,
            _types: PhantomData,
        }
    }

    /// Counts a first-attempt answer from the cache or table: a row (`Some(true)`), a
    /// known miss (`Some(false)`) or nothing known (`None`).
    fn count_first(&self, w: &Worker<K, V>, known: Option<bool>) {
        let c = &self.counters;
        match known {
            Some(true) => {
                c.hits.fetch_add(1, Ordering::Relaxed);
                w.metrics.hits.increment(1);
            }
            Some(false) => {
                c.negative_hits.fetch_add(1, Ordering::Relaxed);
                w.metrics.hits.increment(1);
            }
            None => {
                c.misses.fetch_add(1, Ordering::Relaxed);
                w.metrics.misses.increment(1);
            }
        }
    }

    /// Starts one request for `keys`, which the caller registered as in flight.
    fn request(&self, w: &Worker<K, V>, keys: Vec<K>) -> Result<Request<K, V>> {
        let Backend::Store(store) = &self.backend else {
            return Err(Error::Internal("lookup request without a store".into()));
        };
        let store = Arc::clone(store);
        let cache = w.cache.clone();
        let inflight = Arc::clone(&w.inflight);
        let metrics = Arc::clone(&w.metrics);
        let counters = Arc::clone(&self.counters);
        let timeout = self.config.lookup_timeout;
        let remember_misses = !self.config.miss_ttl.is_zero();
        let fut = async move {
            counters.requests.fetch_add(1, Ordering::Relaxed);
            counters
                .keys_requested
                .fetch_add(keys.len() as u64, Ordering::Relaxed);
            metrics.requests.increment(1);
            metrics.keys_per_request.record(keys.len() as f64);
            let started = Instant::now();
            let name = store.source_name();
            let answer =
                tokio::time::timeout(timeout, Arc::clone(&store).lookup_boxed(keys.clone())).await;
            metrics.latency.record(started.elapsed().as_secs_f64());
            let result = match answer {
                Err(_) => Err(Failure {
                    message: format!(
                        "lookup of {} keys in `{name}` took longer than {timeout:?}",
                        keys.len()
                    ),
                    retryable: true,
                    timed_out: true,
                }),
                Ok(Err(e)) => Err(Failure {
                    message: match keys.first() {
                        Some(key) => format!("lookup in `{name}` (first key {key:?}): {e}"),
                        None => format!("lookup in `{name}`: {e}"),
                    },
                    retryable: e.is_retryable(),
                    timed_out: false,
                }),
                Ok(Ok(rows)) if rows.len() != keys.len() => Err(Failure {
                    message: format!(
                        "lookup in `{name}` answered {} rows for {} keys",
                        rows.len(),
                        keys.len()
                    ),
                    retryable: false,
                    timed_out: false,
                }),
                Ok(Ok(rows)) => {
                    let mut answers = HashMap::with_capacity(keys.len());
                    for (key, row) in keys.iter().zip(rows) {
                        if let Some(cache) = &cache {
                            cache.put(key.clone(), row.clone(), remember_misses);
                        }
                        answers.insert(key.clone(), row);
                    }
                    if let Some(cache) = &cache {
                        let (entries, bytes) = cache.size();
                        metrics.entries.set(entries as f64);
                        metrics.bytes.set(bytes as f64);
                    }
                    Ok(Arc::new(answers))
                }
            };
            if result.is_err() {
                counters.failures.fetch_add(1, Ordering::Relaxed);
                metrics.failures.increment(1);
            }
            let mut inflight = inflight.lock();
            for key in &keys {
                inflight.remove(key);
            }
            result
        };
        Ok(fut.boxed().shared())
    }
}

/// What a join emits: a left join its [`Joined`] records (with no row for a record given
/// up on), an inner join [`JoinOutput`]s (joined, or given up on), split after it.
pub(super) trait JoinEmit<E, V>: Send + 'static {
    /// A record and its row.
    fn joined(event: E, row: V) -> Self;
    /// A record given up on.
    fn given_up(event: E) -> Self;
}

impl<E: Send + 'static, V: Send + 'static> JoinEmit<E, V> for Joined<E, V> {
    fn joined(event: E, row: V) -> Self {
        Joined {
            event,
            dim: Some(row),
        }
    }

    fn given_up(event: E) -> Self {
        Joined { event, dim: None }
    }
}

impl<E: Send + 'static, V: Send + 'static> JoinEmit<E, V> for JoinOutput<E, V> {
    fn joined(event: E, row: V) -> Self {
        JoinOutput::Joined(<Joined<E, V> as JoinEmit<E, V>>::joined(event, row))
    }

    fn given_up(event: E) -> Self {
        JoinOutput::Unmatched(event)
    }
}

fn give_up<E, V, O: JoinEmit<E, V>>(
    counters: &LookupCounters,
    metrics: &Metrics,
    event: E,
) -> Reply<O> {
    counters.unmatched.fetch_add(1, Ordering::Relaxed);
    metrics.unmatched.increment(1);
    Reply::Emit(O::given_up(event))
}

fn matched<E, V, O: JoinEmit<E, V>>(counters: &LookupCounters, event: E, row: V) -> Reply<O> {
    counters.matched.fetch_add(1, Ordering::Relaxed);
    Reply::Emit(O::joined(event, row))
}

impl<K, E, V, O> AsyncFunction for LookupFunction<K, E, V, O>
where
    O: JoinEmit<E, V>,
    K: LookupKey,
    E: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    V: Clone + Serialize + Send + Sync + 'static,
{
    type In = (K, E);
    type Out = O;

    fn open(&mut self, ctx: &AsyncOpenContext) -> Result<()> {
        let metrics = Arc::new(Metrics::new(ctx.operator()));
        let (cache, table) = match (&self.backend, self.config.cache) {
            (Backend::Table(table), _) => {
                let partitioned = self.config.partitioned;
                let ctx_owned = ctx.clone();
                let owns = move |k: &K| !partitioned || ctx_owned.owns(k);
                let share = Share {
                    owns: Arc::new(owns),
                    one_at_a_time: Arc::clone(&self.loading),
                };
                let full = FullTable::open(
                    Arc::clone(table),
                    &self.config.reload,
                    ctx,
                    share,
                    Arc::clone(&self.counters),
                )?;
                (None, Some(full))
            }
            (Backend::Store(_), CacheMode::Partial) => {
                (Some(LookupCache::new(&self.config, ctx.operator())?), None)
            }
            (Backend::Store(_), _) => (None, None),
        };
        #[cfg(test)]
        if let Some(cache) = &cache {
            let any: Arc<dyn std::any::Any + Send + Sync> = Arc::clone(cache) as _;
            OPENED
                .lock()
                .push((Arc::as_ptr(&self.counters) as usize, ctx.worker(), any));
        }
        self.worker = Some(Worker {
            cache,
            table,
            inflight: Arc::default(),
            metrics,
        });
        Ok(())
    }

    fn prepare(&mut self, batch: Vec<(K, E)>, out: &mut Collector<'_, O>) -> Result<Vec<(K, E)>> {
        let w = opened(&self.worker)?;
        let give_up_now = self.config.retry.attempts == 0;
        let mut rest = Vec::new();
        let (mut hits, mut known_missing) = (0u64, 0u64);
        if let Some(table) = &w.table {
            // One look at the current table for the whole batch.
            table.snapshot().each_row(
                batch,
                |(key, _)| key,
                |(key, event), row| match row {
                    Some(row) => {
                        hits += 1;
                        out.collect(O::joined(event, row.clone()));
                    }
                    None if give_up_now => {
                        known_missing += 1;
                        out.collect(O::given_up(event));
                    }
                    // Counted by `call`, which sees it next.
                    None => rest.push((key, event)),
                },
            );
        } else if let Some(cache) = &w.cache {
            // One reading of the clock for the whole batch.
            let now = cache.now();
            for (key, event) in batch {
                match cache.get(&key, now) {
                    Some(Some(row)) => {
                        hits += 1;
                        out.collect(O::joined(event, row));
                    }
                    Some(None) if give_up_now => {
                        known_missing += 1;
                        out.collect(O::given_up(event));
                    }
                    _ => rest.push((key, event)),
                }
            }
        } else {
            // No cache: every record goes to the store (`call` counts it).
            rest = batch;
        }
        let c = &self.counters;
        c.hits.fetch_add(hits, Ordering::Relaxed);
        c.matched.fetch_add(hits, Ordering::Relaxed);
        c.negative_hits.fetch_add(known_missing, Ordering::Relaxed);
        c.unmatched.fetch_add(known_missing, Ordering::Relaxed);
        w.metrics.hits.increment(hits + known_missing);
        w.metrics.unmatched.increment(known_missing);
        Ok(rest)
    }

    fn call(&mut self, inputs: &[(K, E)], attempt: u32) -> AsyncCall<O> {
        let w = match opened(&self.worker) {
            Ok(w) => w,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        // What is known now, and which keys need the store.
        let mut known: HashMap<K, Option<V>> = HashMap::new();
        let mut need: Vec<K> = Vec::new();
        for (key, _) in inputs {
            if known.contains_key(key) || need.contains(key) {
                continue;
            }
            match &w.table {
                Some(table) => {
                    known.insert(key.clone(), table.get(key));
                }
                None => need.push(key.clone()),
            }
        }
        // One request for the keys nobody is looking up yet; the others wait for theirs.
        let mut waits: Vec<Request<K, V>> = Vec::new();
        if !need.is_empty() {
            // The cache, at a first attempt only (a retry bypasses it), and one reading
            // of its clock for all the keys.
            let cache = w
                .cache
                .as_ref()
                .filter(|_| attempt == 1)
                .map(|c| (c, c.now()));
            let mut inflight = w.inflight.lock();
            let mut fresh = Vec::new();
            for key in need {
                if let Some(r) = inflight.get(&key) {
                    if !waits.iter().any(|w| w.ptr_eq(r)) {
                        waits.push(r.clone());
                    }
                    continue;
                }
                // The cache, looked at while no request for the key can leave the map
                // of requests: one that answered since the batch was prepared has put
                // its answer there first.
                let cached = cache.and_then(|(c, now)| c.get(&key, now));
                match cached {
                    Some(answer) => {
                        known.insert(key, answer);
                    }
                    None => fresh.push(key),
                }
            }
            if !fresh.is_empty() {
                let request = match self.request(w, fresh.clone()) {
                    Ok(r) => r,
                    Err(e) => return Box::pin(std::future::ready(Err(e))),
                };
                for key in fresh {
                    inflight.insert(key, request.clone());
                }
                waits.push(request);
            }
        }
        if attempt == 1 {
            // Every record counts: one answered now, or one that waits for the store.
            for (key, _) in inputs {
                self.count_first(w, known.get(key).map(Option::is_some));
            }
        }
        let inputs: Vec<(K, E)> = inputs.to_vec();
        let counters = Arc::clone(&self.counters);
        let metrics = Arc::clone(&w.metrics);
        let config = Arc::clone(&self.config);
        Box::pin(async move {
            let mut timed_out = false;
            for request in waits {
                match request.await {
                    Ok(answers) => {
                        known.extend(answers.iter().map(|(k, v)| (k.clone(), v.clone())))
                    }
                    Err(f) if f.timed_out && config.on_timeout == OnLookupTimeout::Unmatched => {
                        timed_out = true;
                    }
                    Err(f) => {
                        let retryable = if f.timed_out {
                            config.on_timeout == OnLookupTimeout::Retry
                        } else {
                            f.retryable
                        };
                        return Err(Error::External {
                            system: "lookup join".into(),
                            context: format!("at attempt {attempt}"),
                            source: f.message.into(),
                            retryable,
                        });
                    }
                }
            }
            let retry = &config.retry;
            if attempt > 1 {
                // These inputs were held for this retry: they are answered now, or held
                // again below.
                let n = i64::try_from(inputs.len()).unwrap_or(i64::MAX);
                counters.held_now.fetch_sub(n, Ordering::Relaxed);
            }
            Ok(inputs
                .into_iter()
                .map(|(key, event)| match known.get(&key) {
                    Some(Some(row)) => matched(&counters, event, row.clone()),
                    None if timed_out => give_up(&counters, &metrics, event),
                    _ if attempt <= retry.attempts => {
                        counters.retries.fetch_add(1, Ordering::Relaxed);
                        counters.held_now.fetch_add(1, Ordering::Relaxed);
                        Reply::RetryAfter(retry.delay_after(attempt))
                    }
                    _ => give_up(&counters, &metrics, event),
                })
                .collect())
        })
    }
}
