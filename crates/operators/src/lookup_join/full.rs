//! The full cache: each worker's share of a whole table, loaded before records flow and
//! reloaded in the background.

use super::function::DynTable;
use super::rows::Rows;
use super::{LookupCounters, LookupKey, ReloadConfig};
use ferroflow_core::{AsyncOpenContext, Error, Result, Zone};
use parking_lot::RwLock;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which keys this worker keeps.
pub(super) type Owns<K> = Arc<dyn Fn(&K) -> bool + Send + Sync>;

/// How a worker loads its share of a table.
pub(super) struct Share<K> {
    /// Which keys it keeps.
    pub(super) owns: Owns<K>,
    /// Held while a worker of the join loads, so that the workers load one at a time
    /// and the whole table is in memory once, not once per worker.
    pub(super) one_at_a_time: Arc<tokio::sync::Mutex<()>>,
}

/// One worker's table. Dropping it stops its reloads.
pub(super) struct FullTable<K, V> {
    current: Arc<RwLock<Arc<Rows<K, V>>>>,
    reloads: Option<tokio::task::JoinHandle<()>>,
}

impl<K, V> Drop for FullTable<K, V> {
    fn drop(&mut self) {
        if let Some(task) = self.reloads.take() {
            task.abort();
        }
    }
}

/// Loads `table` and keeps the worker's share.
async fn load<K: LookupKey, V>(
    table: &Arc<dyn DynTable<K, V>>,
    share: &Share<K>,
) -> Result<Rows<K, V>> {
    let _alone = share.one_at_a_time.lock().await;
    let mut kept = Arc::clone(table)
        .load_boxed(Arc::clone(&share.owns))
        .await?;
    if kept.capacity() > kept.len() + kept.len() / 8 {
        kept.shrink_to_fit();
    }
    let n = kept.len();
    Rows::new(kept).ok_or_else(|| {
        Error::Config(format!(
            "lookup join: table `{}` gave one worker {n} rows, more than a full cache holds \
             (4,294,967,294); raise the parallelism",
            table.table_name()
        ))
    })
}

impl<K: LookupKey, V: Clone + Send + Sync + 'static> FullTable<K, V> {
    /// Loads the worker's share (waiting at most `config.first_load_timeout`) and starts
    /// the reloads `config` asks for.
    pub(super) fn open(
        table: Arc<dyn DynTable<K, V>>,
        config: &ReloadConfig,
        ctx: &AsyncOpenContext,
        share: Share<K>,
        counters: Arc<LookupCounters>,
    ) -> Result<Self> {
        let handle = ctx.runtime().clone();
        let name = table.table_name();
        let timeout = config.first_load_timeout;
        let (version, rows) = handle.block_on(async {
            tokio::time::timeout(timeout, async {
                let version = Arc::clone(&table).version_boxed().await?;
                Ok::<_, Error>((version, load(&table, &share).await?))
            })
            .await
            .map_err(|_| {
                Error::Config(format!(
                    "lookup join: the first load of table `{name}` did not finish within \
                     {timeout:?} (reload.first_load_timeout)"
                ))
            })?
        })?;
        counters.reloads.fetch_add(1, Ordering::Relaxed);
        tracing::info!(table = %name, worker = ctx.worker(), rows = rows.len(), "Dimension table loaded.");
        let current = Arc::new(RwLock::new(Arc::new(rows)));
        let at = config.at_time()?;
        let reloads = (config.interval.is_some()
            || at.is_some()
            || config.watch_interval.is_some())
        .then(|| {
            let schedule = Schedule {
                interval: config.interval,
                at,
                zone: config.timezone.clone(),
                watch: config.watch_interval,
            };
            handle.spawn(reload_loop(
                table,
                share,
                Arc::clone(&current),
                schedule,
                version,
                counters,
            ))
        });
        Ok(Self { current, reloads })
    }

    /// The row of `key`, if the table has one.
    #[inline]
    pub(super) fn get(&self, key: &K) -> Option<V> {
        self.current.read().get(key).cloned()
    }

    /// The table as it is now (one lock for many lookups).
    pub(super) fn snapshot(&self) -> Arc<Rows<K, V>> {
        Arc::clone(&self.current.read())
    }
}

/// When reloads happen.
struct Schedule {
    interval: Option<Duration>,
    at: Option<(i8, i8)>,
    zone: Zone,
    watch: Option<Duration>,
}

/// The next instant of local time `at` in `zone` after now.
fn next_at(at: (i8, i8), zone: &Zone) -> Instant {
    let now_ms = ferroflow_core::now_millis();
    let when = zone.next_local_time(now_ms, at.0, at.1);
    Instant::now() + Duration::from_millis(u64::try_from(when - now_ms).unwrap_or(0))
}

async fn reload_loop<K: LookupKey, V: Send + Sync + 'static>(
    table: Arc<dyn DynTable<K, V>>,
    share: Share<K>,
    current: Arc<RwLock<Arc<Rows<K, V>>>>,
    schedule: Schedule,
    mut version: Option<String>,
    counters: Arc<LookupCounters>,
) {
    let name = table.table_name();
    let start = Instant::now();
    let mut next_interval = schedule.interval.map(|d| start + d);
    let mut next_time = schedule.at.map(|at| next_at(at, &schedule.zone));
    let mut next_watch = schedule.watch.map(|d| start + d);
    loop {
        let Some(wake) = [next_interval, next_time, next_watch]
            .into_iter()
            .flatten()
            .min()
        else {
            return;
        };
        tokio::time::sleep_until(wake.into()).await;
        let now = Instant::now();
        let mut due = false;
        if let (Some(t), Some(d)) = (next_interval, schedule.interval) {
            if t <= now {
                due = true;
                next_interval = Some(now + d);
            }
        }
        if let (Some(t), Some(at)) = (next_time, schedule.at) {
            if t <= now {
                due = true;
                next_time = Some(next_at(at, &schedule.zone));
            }
        }
        let mut seen = None;
        if let (Some(t), Some(d)) = (next_watch, schedule.watch) {
            if t <= now {
                next_watch = Some(now + d);
                match Arc::clone(&table).version_boxed().await {
                    Ok(v) if v.is_some() && v != version => {
                        due = true;
                        seen = v;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(table = %name, error = %e, "Could not read the table's version.");
                    }
                }
            }
        }
        if !due {
            continue;
        }
        match load(&table, &share).await {
            Ok(rows) => {
                let n = rows.len();
                *current.write() = Arc::new(rows);
                if seen.is_some() {
                    version = seen;
                }
                counters.reloads.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("ferroflow_lookup_reloads_total", "table" => name.clone())
                    .increment(1);
                tracing::info!(table = %name, rows = n, "Dimension table reloaded.");
            }
            Err(e) => {
                counters.reload_failures.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("ferroflow_lookup_reload_failures_total", "table" => name.clone()).increment(1);
                tracing::warn!(table = %name, error = %e, "Reloading the table failed; keeping the one loaded before.");
            }
        }
    }
}
