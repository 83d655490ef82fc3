//! Per-operator metrics: records in and out, time busy, time blocked on a full channel.
//!
//! Every operator of every worker has one [`OperatorMetrics`]. Its counters are kept in
//! atomics readable at any time through [`JobMetrics::snapshot`] (for progress displays)
//! and are also published through the [`metrics`] facade, so any installed recorder
//! (Prometheus, StatsD, …) sees them. Facade names, all counters labelled with `operator`
//! and `worker`:
//!
//! | name | meaning |
//! |---|---|
//! | `ferroflow_records_in_total` | records received |
//! | `ferroflow_records_out_total` | records emitted |
//! | `ferroflow_busy_nanoseconds_total` | time spent in the operator's own code |
//! | `ferroflow_backpressure_nanoseconds_total` | time blocked sending into a full channel |

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
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

/// The counters of one operator on one worker.
#[derive(Debug)]
pub struct OperatorMetrics {
    operator: String,
    worker: usize,
    records_in: AtomicU64,
    records_out: AtomicU64,
    busy_ns: AtomicU64,
    backpressure_ns: AtomicU64,
    facade: [metrics::Counter; 4],
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
            facade: [
                metrics::counter!(RECORDS_IN, &labels),
                metrics::counter!(RECORDS_OUT, &labels),
                metrics::counter!(BUSY_NS, &labels),
                metrics::counter!(BACKPRESSURE_NS, &labels),
            ],
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
    }

    fn snapshot(&self) -> OperatorSnapshot {
        OperatorSnapshot {
            operator: self.operator.clone(),
            worker: self.worker,
            records_in: self.records_in.load(Relaxed),
            records_out: self.records_out.load(Relaxed),
            busy: Duration::from_nanos(self.busy_ns.load(Relaxed)),
            backpressure: Duration::from_nanos(self.backpressure_ns.load(Relaxed)),
        }
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A point-in-time copy of one operator's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

/// All operator metrics of one job.
#[derive(Debug, Clone, Default)]
pub struct JobMetrics {
    operators: Arc<Mutex<Vec<Arc<OperatorMetrics>>>>,
}

impl JobMetrics {
    /// Registers the counters of `operator` on `worker`.
    pub fn register(&self, operator: &str, worker: usize) -> Arc<OperatorMetrics> {
        let m = Arc::new(OperatorMetrics::new(operator, worker));
        self.operators.lock().push(Arc::clone(&m));
        m
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
            a
        })
}
