//! Per-operator metrics: records in and out, time busy, idle and blocked on a full
//! channel, watermarks.
//!
//! Every operator of every worker has one [`OperatorMetrics`]. Its counters are kept in
//! atomics readable at any time through [`JobMetrics::snapshot`] (for progress displays
//! and the status page) and are also published through the [`metrics`] facade, so any
//! installed recorder (Prometheus, StatsD, …) sees them. Facade names, all labelled with
//! `operator` and `worker`:
//!
//! | name | meaning |
//! |---|---|
//! | `ferroflow_records_in_total` | records received |
//! | `ferroflow_records_out_total` | records emitted |
//! | `ferroflow_busy_nanoseconds_total` | time spent in the operator's own code |
//! | `ferroflow_idle_nanoseconds_total` | time a task waited for input (sources, and the input of a stage after an exchange) |
//! | `ferroflow_backpressure_nanoseconds_total` | time blocked sending into a full channel (exchanges) |
//! | `ferroflow_backpressure_events_total` | sends that found the channel full (exchanges) |
//! | `ferroflow_watermark_milliseconds` | gauge: a source's output watermark, a stage's input watermark |
//! | `ferroflow_watermark_lag_milliseconds` | gauge: wall clock minus a source's output watermark |
//! | `ferroflow_state_entries` | gauge: a keyed operator's state entries (approximate, every 10 s) |
//! | `ferroflow_state_bytes` | gauge: a keyed operator's state bytes (approximate, every 10 s) |
//!
//! A rate of a `_nanoseconds_total` counter divided by 10⁶ is Flink's
//! `busyTimeMsPerSecond` (and idle, backpressured): `rate(x[1m]) / 1e6`.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Facade name: records received.
pub const RECORDS_IN: &str = "ferroflow_records_in_total";
/// Facade name: records emitted.
pub const RECORDS_OUT: &str = "ferroflow_records_out_total";
/// Facade name: nanoseconds busy.
pub const BUSY_NS: &str = "ferroflow_busy_nanoseconds_total";
/// Facade name: nanoseconds blocked on a full channel.
pub const BACKPRESSURE_NS: &str = "ferroflow_backpressure_nanoseconds_total";
/// Facade name: nanoseconds waiting for input.
pub const IDLE_NS: &str = "ferroflow_idle_nanoseconds_total";
/// Facade name: sends that found the channel full.
pub const BACKPRESSURE_EVENTS: &str = "ferroflow_backpressure_events_total";
/// Facade name: the watermark, in milliseconds since the epoch.
pub const WATERMARK_MS: &str = "ferroflow_watermark_milliseconds";
/// Facade name: wall clock minus a source's watermark, in milliseconds.
pub const WATERMARK_LAG_MS: &str = "ferroflow_watermark_lag_milliseconds";

/// Facade name: approximate entries of a keyed operator's state.
pub const STATE_ENTRIES: &str = "ferroflow_state_entries";
/// Facade name: approximate bytes of a keyed operator's state.
pub const STATE_BYTES: &str = "ferroflow_state_bytes";

/// No watermark seen yet.
const NO_WATERMARK: i64 = i64::MIN;

/// The counters of one operator on one worker.
#[derive(Debug)]
pub struct OperatorMetrics {
    operator: String,
    worker: usize,
    records_in: AtomicU64,
    records_out: AtomicU64,
    busy_ns: AtomicU64,
    backpressure_ns: AtomicU64,
    idle_ns: AtomicU64,
    backpressure_events: AtomicU64,
    watermark: AtomicI64,
    facade: [metrics::Counter; 6],
    /// Registered at the first watermark, so that operators that never see one (and
    /// never lag) export no series for it.
    watermark_gauges: std::sync::OnceLock<(metrics::Gauge, metrics::Gauge)>,
}

impl OperatorMetrics {
    fn new(operator: &str, worker: usize) -> Self {
        let labels = [
            ("operator", operator.to_string()),
            ("worker", worker.to_string()),
        ];
        Self {
            operator: operator.to_string(),
            worker,
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            backpressure_ns: AtomicU64::new(0),
            idle_ns: AtomicU64::new(0),
            backpressure_events: AtomicU64::new(0),
            watermark: AtomicI64::new(NO_WATERMARK),
            facade: [
                metrics::counter!(RECORDS_IN, &labels),
                metrics::counter!(RECORDS_OUT, &labels),
                metrics::counter!(BUSY_NS, &labels),
                metrics::counter!(BACKPRESSURE_NS, &labels),
                metrics::counter!(IDLE_NS, &labels),
                metrics::counter!(BACKPRESSURE_EVENTS, &labels),
            ],
            watermark_gauges: std::sync::OnceLock::new(),
        }
    }

    /// Adds time spent waiting for input.
    #[inline]
    pub fn add_idle(&self, d: Duration) {
        let ns = duration_ns(d);
        self.idle_ns.fetch_add(ns, Relaxed);
        self.facade[4].increment(ns);
    }

    /// Records the watermark `w` (milliseconds since the epoch); with `lag`, also how far
    /// it is behind the wall clock (sources).
    pub fn set_watermark(&self, w: crate::Timestamp, lag: bool) {
        self.watermark.store(w, Relaxed);
        let (watermark, behind) = self.watermark_gauges.get_or_init(|| {
            let labels = [
                ("operator", self.operator.clone()),
                ("worker", self.worker.to_string()),
            ];
            (
                metrics::gauge!(WATERMARK_MS, &labels),
                metrics::gauge!(WATERMARK_LAG_MS, &labels),
            )
        });
        // Gauges are f64: milliseconds since the epoch are exact up to 2^53.
        #[allow(clippy::cast_precision_loss)]
        watermark.set(w as f64);
        if lag {
            #[allow(clippy::cast_precision_loss)]
            behind.set(crate::now_millis().saturating_sub(w) as f64);
        }
    }

    /// Counts `n` records received.
    #[inline]
    pub fn record_in(&self, n: usize) {
        self.records_in.fetch_add(n as u64, Relaxed);
        self.facade[0].increment(n as u64);
    }

    /// Counts `n` records emitted.
    #[inline]
    pub fn record_out(&self, n: usize) {
        self.records_out.fetch_add(n as u64, Relaxed);
        self.facade[1].increment(n as u64);
    }

    /// Adds time spent busy.
    #[inline]
    pub fn add_busy(&self, d: Duration) {
        let ns = duration_ns(d);
        self.busy_ns.fetch_add(ns, Relaxed);
        self.facade[2].increment(ns);
    }

    /// Adds time spent blocked on a full channel.
    #[inline]
    pub fn add_backpressure(&self, d: Duration) {
        let ns = duration_ns(d);
        self.backpressure_ns.fetch_add(ns, Relaxed);
        self.facade[3].increment(ns);
        self.backpressure_events.fetch_add(1, Relaxed);
        self.facade[5].increment(1);
    }

    fn snapshot(&self) -> OperatorSnapshot {
        OperatorSnapshot {
            operator: self.operator.clone(),
            worker: self.worker,
            records_in: self.records_in.load(Relaxed),
            records_out: self.records_out.load(Relaxed),
            busy: Duration::from_nanos(self.busy_ns.load(Relaxed)),
            backpressure: Duration::from_nanos(self.backpressure_ns.load(Relaxed)),
            idle: Duration::from_nanos(self.idle_ns.load(Relaxed)),
            backpressure_events: self.backpressure_events.load(Relaxed),
            watermark: Some(self.watermark.load(Relaxed)).filter(|w| *w != NO_WATERMARK),
        }
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A point-in-time copy of one operator's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorSnapshot {
    /// Operator name.
    pub operator: String,
    /// Worker index.
    pub worker: usize,
    /// Records received.
    pub records_in: u64,
    /// Records emitted.
    pub records_out: u64,
    /// Time spent in the operator's own code.
    pub busy: Duration,
    /// Time blocked on a full downstream channel.
    pub backpressure: Duration,
    /// Time spent waiting for input.
    pub idle: Duration,
    /// Sends that found the downstream channel full.
    pub backpressure_events: u64,
    /// The newest watermark (sources: emitted; stage inputs: received), if any.
    pub watermark: Option<crate::Timestamp>,
}

/// All operator metrics of one job. A job that restarts keeps its registry: counters
/// go on from where the failed attempt left them.
#[derive(Debug, Clone, Default)]
pub struct JobMetrics {
    operators: Arc<Mutex<Vec<Arc<OperatorMetrics>>>>,
    /// Per stage, its operators in the order they were registered.
    stages: Arc<Mutex<Vec<(usize, String)>>>,
}

impl JobMetrics {
    /// Registers the counters of `operator` on `worker`, or returns the ones registered
    /// before (by an earlier attempt of a restarted job).
    pub fn register(&self, operator: &str, worker: usize) -> Arc<OperatorMetrics> {
        let mut ops = self.operators.lock();
        if let Some(m) = ops
            .iter()
            .find(|m| m.worker == worker && m.operator == operator)
        {
            return Arc::clone(m);
        }
        let m = Arc::new(OperatorMetrics::new(operator, worker));
        ops.push(Arc::clone(&m));
        m
    }

    /// Registers as [`Self::register`] and notes that `operator` runs in `stage`.
    pub(crate) fn register_in(
        &self,
        stage: usize,
        operator: &str,
        worker: usize,
    ) -> Arc<OperatorMetrics> {
        if worker == 0 {
            let mut stages = self.stages.lock();
            if !stages.iter().any(|(_, o)| o == operator) {
                stages.push((stage, operator.to_string()));
            }
        }
        self.register(operator, worker)
    }

    /// The operators of each stage, from its input to its end.
    pub(crate) fn stage_operators(&self, stage: usize) -> Vec<String> {
        // Chains are built from their end backwards: reverse the registration order.
        let stages = self.stages.lock();
        let mut v: Vec<String> = stages
            .iter()
            .filter(|(s, _)| *s == stage)
            .map(|(_, o)| o.clone())
            .collect();
        v.reverse();
        v
    }

    /// The names of every operator registered.
    pub(crate) fn operator_names(&self) -> std::collections::HashSet<String> {
        self.operators
            .lock()
            .iter()
            .map(|m| m.operator.clone())
            .collect()
    }

    /// Copies every operator's counters, sorted by operator then worker.
    pub fn snapshot(&self) -> Vec<OperatorSnapshot> {
        let mut v: Vec<_> = self.operators.lock().iter().map(|m| m.snapshot()).collect();
        v.sort_by(|a, b| (&a.operator, a.worker).cmp(&(&b.operator, b.worker)));
        v
    }

    /// Sums the counters of `operator` over its workers.
    pub fn total(&self, operator: &str) -> Option<OperatorSnapshot> {
        sum_operator(&self.snapshot(), operator)
    }
}

/// Sums the snapshots of `operator` over its workers.
pub(crate) fn sum_operator(
    snapshots: &[OperatorSnapshot],
    operator: &str,
) -> Option<OperatorSnapshot> {
    snapshots
        .iter()
        .filter(|s| s.operator == operator)
        .cloned()
        .reduce(|mut a, b| {
            a.records_in += b.records_in;
            a.records_out += b.records_out;
            a.busy += b.busy;
            a.backpressure += b.backpressure;
            a.idle += b.idle;
            a.backpressure_events += b.backpressure_events;
            a.watermark = match (a.watermark, b.watermark) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            };
            a
        })
}
