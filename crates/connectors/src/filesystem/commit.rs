//! Partition commit: once every worker's watermark passed a partition's end (plus the
//! delay) and the files it wrote there are published, the partition is committed: a
//! `_SUCCESS` file and the user's policies.

use ferroflow_core::{Result, Timestamp};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A partition being committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedPartition {
    /// Its path under the sink's root (`dt=2026-12-05/hm=1405`).
    pub path: String,
    /// Its full URL (`s3://lake/clicks/dt=2026-12-05/hm=1405`).
    pub url: String,
    /// The end of its time range, for a time partition.
    pub end: Option<Timestamp>,
}

impl CommittedPartition {
    /// The `name=value` pairs of a Hive-style path, in order
    /// (`[("dt", "2026-12-05"), ("hm", "1405")]`).
    pub fn values(&self) -> Vec<(&str, &str)> {
        self.path
            .split('/')
            .filter_map(|part| part.split_once('='))
            .collect()
    }
}

/// Runs when a partition is committed, after its files are published (and `_SUCCESS`
/// written, when on): registering it in a metastore, telling a scheduler. A partition
/// written by several workers is committed by the one with the smallest index; late
/// data commits a partition again, as can workers finishing at the same moment when the
/// input ends, so a policy must be idempotent (`ADD PARTITION IF NOT EXISTS`). Closures `Fn(&CommittedPartition) -> Result<()>` are policies.
pub trait PartitionCommitPolicy: Send + Sync + 'static {
    /// Commits `partition`.
    ///
    /// # Errors
    /// The commit failed; the job fails with this error (and, restored, commits again).
    fn commit(&self, partition: &CommittedPartition) -> Result<()>;
}

impl<F> PartitionCommitPolicy for F
where
    F: Fn(&CommittedPartition) -> Result<()> + Send + Sync + 'static,
{
    fn commit(&self, partition: &CommittedPartition) -> Result<()> {
        self(partition)
    }
}

/// What one worker's last commit reached, stored at `_ferroflow/commit/<p>-<worker>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Marker {
    /// The run that wrote it (markers of other runs do not count).
    pub(crate) run: u64,
    /// The worker's watermark when it prepared its last committed checkpoint: every
    /// partition ending (plus the delay) before it had its files published.
    pub(crate) watermark: Timestamp,
    /// Partitions the worker wrote to and has not seen committed.
    pub(crate) partitions: Vec<(String, Option<Timestamp>)>,
}

pub(crate) fn marker_path(parallelism: usize, worker: usize) -> String {
    format!("_ferroflow/commit/{parallelism}-{worker}.json")
}

/// Whether a partition ending at `end` is complete once every worker's watermark is at
/// least `watermark`.
pub(crate) fn due(end: Option<Timestamp>, delay_ms: i64, watermark: Timestamp) -> bool {
    match end {
        Some(end) => end.saturating_add(delay_ms) <= watermark,
        None => watermark == ferroflow_core::MAX_WATERMARK,
    }
}

/// What the sink has done, shared by every worker's instance (for progress lines and
/// tests; the same figures go to the `metrics` facade).
#[derive(Debug, Default)]
pub struct FileSinkCounters {
    rows: AtomicU64,
    open_files: AtomicU64,
    files_committed: AtomicU64,
    bytes_committed: AtomicU64,
    partitions_committed: AtomicU64,
    commit_micros_last: AtomicU64,
    commit_micros_max: AtomicU64,
    commit_micros_total: AtomicU64,
    commits: AtomicU64,
    segments_missing: AtomicU64,
}

impl FileSinkCounters {
    /// Rows written.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }
    /// Files open now.
    pub fn open_files(&self) -> u64 {
        self.open_files.load(Ordering::Relaxed)
    }
    /// Files published.
    pub fn files_committed(&self) -> u64 {
        self.files_committed.load(Ordering::Relaxed)
    }
    /// Bytes of the files published.
    pub fn bytes_committed(&self) -> u64 {
        self.bytes_committed.load(Ordering::Relaxed)
    }
    /// Partition commits (a partition committed again after late data counts again).
    pub fn partitions_committed(&self) -> u64 {
        self.partitions_committed.load(Ordering::Relaxed)
    }
    /// How long the last commit took after its checkpoint completed (publishing its
    /// files and committing partitions).
    pub fn last_commit(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.commit_micros_last.load(Ordering::Relaxed))
    }
    /// The longest commit so far.
    pub fn max_commit(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.commit_micros_max.load(Ordering::Relaxed))
    }
    /// The mean time of commits so far.
    pub fn mean_commit(&self) -> std::time::Duration {
        let n = self.commits.load(Ordering::Relaxed).max(1);
        std::time::Duration::from_micros(self.commit_micros_total.load(Ordering::Relaxed) / n)
    }
    /// Commits so far (one per completed checkpoint and worker).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
    /// Recovery segments a restore did not find (their file had been published by a
    /// later checkpoint than the one restored).
    pub fn segments_missing(&self) -> u64 {
        self.segments_missing.load(Ordering::Relaxed)
    }

    pub(crate) fn add_rows(&self, n: u64) {
        self.rows.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("ferroflow_filesink_rows_total").increment(n);
    }
    pub(crate) fn opened(&self, delta: i64) {
        if delta >= 0 {
            self.open_files.fetch_add(delta as u64, Ordering::Relaxed);
        } else {
            self.open_files
                .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
        metrics::gauge!("ferroflow_filesink_open_files").increment(delta as f64);
    }
    pub(crate) fn published(&self, bytes: u64) {
        self.files_committed.fetch_add(1, Ordering::Relaxed);
        self.bytes_committed.fetch_add(bytes, Ordering::Relaxed);
        metrics::counter!("ferroflow_filesink_files_committed_total").increment(1);
        metrics::counter!("ferroflow_filesink_bytes_committed_total").increment(bytes);
    }
    pub(crate) fn partition_committed(&self) {
        self.partitions_committed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("ferroflow_filesink_partitions_committed_total").increment(1);
    }
    pub(crate) fn commit_took(&self, took: std::time::Duration) {
        let us = took.as_micros().min(u128::from(u64::MAX)) as u64;
        self.commit_micros_last.store(us, Ordering::Relaxed);
        self.commit_micros_max.fetch_max(us, Ordering::Relaxed);
        self.commit_micros_total.fetch_add(us, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
        metrics::histogram!("ferroflow_filesink_commit_seconds").record(took.as_secs_f64());
    }
    pub(crate) fn segment_missing(&self) {
        self.segments_missing.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("ferroflow_filesink_segments_missing_total").increment(1);
    }
}

pub(crate) type Counters = Arc<FileSinkCounters>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hive_values_and_due() {
        let p = CommittedPartition {
            path: "dt=2026-12-05/hm=1405".into(),
            url: "file:///t/dt=2026-12-05/hm=1405".into(),
            end: Some(10),
        };
        assert_eq!(p.values(), vec![("dt", "2026-12-05"), ("hm", "1405")]);
        assert!(due(Some(10), 5, 15));
        assert!(!due(Some(10), 5, 14));
        assert!(!due(None, 0, 1 << 60));
        assert!(due(None, 0, ferroflow_core::MAX_WATERMARK));
        assert!(due(
            Some(i64::MAX - 1),
            60_000,
            ferroflow_core::MAX_WATERMARK
        ));
    }
}
