//! What the job's checkpoints did: counts, the newest durations and sizes, and a short
//! history for the status page, also published through the `metrics` facade.

use parking_lot::Mutex;
use serde::Serialize;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Checkpoints kept in the history.
const HISTORY: usize = 50;

/// Facade names.
pub(crate) const COMPLETED: &str = "ferroflow_checkpoints_completed_total";
pub(crate) const FAILED: &str = "ferroflow_checkpoints_failed_total";
pub(crate) const IN_PROGRESS: &str = "ferroflow_checkpoints_in_progress";
pub(crate) const LAST_DURATION: &str = "ferroflow_checkpoint_last_duration_seconds";
pub(crate) const LAST_SIZE: &str = "ferroflow_checkpoint_last_size_bytes";
pub(crate) const LAST_COMPLETED_AT: &str = "ferroflow_checkpoint_last_completed_timestamp_seconds";

/// One checkpoint or savepoint, as `/checkpoints` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CheckpointRecord {
    /// Checkpoint number.
    pub id: u64,
    /// Whether it is a savepoint.
    pub savepoint: bool,
    /// `in_progress`, `completed`, `failed` or `aborted` (the job stopped first).
    pub status: &'static str,
    /// When it was triggered, in milliseconds since the epoch.
    pub triggered_at_ms: i64,
    /// From trigger to completion or failure.
    pub duration_ms: Option<u64>,
    /// Bytes of state files it wrote.
    pub bytes: Option<u64>,
    /// Its directory, once completed.
    pub path: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    history: VecDeque<CheckpointRecord>,
    completed: u64,
    failed: u64,
    last_completed: Option<Instant>,
}

/// Shared by every attempt of a job (its coordinator writes, the HTTP listener reads).
#[derive(Debug, Default)]
pub(crate) struct CheckpointStats {
    inner: Mutex<Inner>,
}

impl CheckpointStats {
    pub(crate) fn triggered(&self, id: u64, savepoint: bool) {
        let mut inner = self.inner.lock();
        if inner.history.len() == HISTORY {
            inner.history.pop_front();
        }
        inner.history.push_back(CheckpointRecord {
            id,
            savepoint,
            status: "in_progress",
            triggered_at_ms: crate::now_millis(),
            duration_ms: None,
            bytes: None,
            path: None,
            error: None,
        });
        metrics::gauge!(IN_PROGRESS).set(1.0);
    }

    pub(crate) fn completed(&self, id: u64, took: Duration, bytes: u64, path: &std::path::Path) {
        let mut inner = self.inner.lock();
        inner.completed += 1;
        inner.last_completed = Some(Instant::now());
        if let Some(r) = inner.history.iter_mut().rev().find(|r| r.id == id) {
            r.status = "completed";
            r.duration_ms = Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
            r.bytes = Some(bytes);
            r.path = Some(path.display().to_string());
        }
        metrics::gauge!(IN_PROGRESS).set(0.0);
        metrics::counter!(COMPLETED).increment(1);
        metrics::gauge!(LAST_DURATION).set(took.as_secs_f64());
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!(LAST_SIZE).set(bytes as f64);
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!(LAST_COMPLETED_AT).set(crate::now_millis() as f64 / 1000.0);
    }

    /// Checkpoint `id` did not complete; `counted` is false when the job stopping
    /// abandoned it (not a failure).
    pub(crate) fn failed(&self, id: u64, why: &crate::Error, counted: bool) {
        let mut inner = self.inner.lock();
        if counted {
            inner.failed += 1;
            metrics::counter!(FAILED).increment(1);
        }
        if let Some(r) = inner.history.iter_mut().rev().find(|r| r.id == id) {
            r.status = if counted { "failed" } else { "aborted" };
            let took = crate::now_millis().saturating_sub(r.triggered_at_ms);
            r.duration_ms = u64::try_from(took).ok();
            r.error = Some(why.to_string());
        }
        metrics::gauge!(IN_PROGRESS).set(0.0);
    }

    /// Checkpoints completed by this job (every attempt).
    pub(crate) fn completed_count(&self) -> u64 {
        self.inner.lock().completed
    }

    /// Time since the newest checkpoint completed.
    pub(crate) fn since_last_completed(&self) -> Option<Duration> {
        self.inner.lock().last_completed.map(|t| t.elapsed())
    }

    /// Counts and history, newest first.
    pub(crate) fn view(&self) -> CheckpointsView {
        let inner = self.inner.lock();
        CheckpointsView {
            completed: inner.completed,
            failed: inner.failed,
            in_progress: inner
                .history
                .iter()
                .filter(|r| r.status == "in_progress")
                .count(),
            history: inner.history.iter().rev().cloned().collect(),
        }
    }
}

/// The body of `/checkpoints`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointsView {
    /// Checkpoints and savepoints completed since the job started (all attempts).
    pub completed: u64,
    /// Checkpoints that failed (timed out, or a task could not store its files).
    pub failed: u64,
    /// Checkpoints in flight.
    pub in_progress: usize,
    /// The newest 50, newest first.
    pub history: Vec<CheckpointRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_follows_each_checkpoint() {
        let s = CheckpointStats::default();
        s.triggered(1, false);
        assert_eq!(s.view().in_progress, 1);
        s.completed(
            1,
            Duration::from_millis(12),
            300,
            std::path::Path::new("/c/chk-1"),
        );
        s.triggered(2, true);
        s.failed(2, &crate::Error::Checkpoint("timed out".into()), true);
        s.triggered(3, false);
        s.failed(3, &crate::Error::Cancelled, false);
        let v = s.view();
        assert_eq!((v.completed, v.failed, v.in_progress), (1, 1, 0));
        let status: Vec<_> = v.history.iter().map(|r| (r.id, r.status)).collect();
        assert_eq!(status, [(3, "aborted"), (2, "failed"), (1, "completed")]);
        assert_eq!(v.history[2].bytes, Some(300));
        assert_eq!(v.history[2].duration_ms, Some(12));
        assert!(s.since_last_completed().is_some());
        assert_eq!(s.completed_count(), 1);
    }
}
