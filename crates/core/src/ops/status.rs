//! The state of a job across its attempts: what `/jobs` and `/readyz` report.

use crate::checkpoint::coordinator::CheckpointHub;
use crate::checkpoint::stats::CheckpointStats;
use crate::metrics::JobMetrics;
use crate::runtime::control::JobControl;
use crate::{Error, Result};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Errors kept for the status page.
const ERRORS: usize = 20;

/// Facade name: restarts of the job.
pub(crate) const RESTARTS: &str = "ferroflow_restarts_total";
/// Facade name: seconds since the job started.
pub(crate) const UPTIME: &str = "ferroflow_uptime_seconds";

/// The stages of the job and the exchanges between them.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Topology {
    /// Per stage: its name and parallelism.
    pub(crate) stages: Vec<(String, usize)>,
    /// Exchanges: from stage index to stage index.
    pub(crate) edges: Vec<(usize, usize)>,
}

/// An error that ended an attempt (or the job).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ErrorRecord {
    pub(crate) at_ms: i64,
    pub(crate) message: String,
}

/// The running attempt: its control and checkpoint hub, and when it started.
struct Running {
    control: Arc<JobControl>,
    hub: Option<Arc<CheckpointHub>>,
    since: Instant,
}

/// One job's status, shared by its supervisor, its coordinators and its HTTP listener.
pub(crate) struct JobStatus {
    pub(crate) name: String,
    pub(crate) started: Instant,
    pub(crate) started_at_ms: i64,
    pub(crate) metrics: JobMetrics,
    pub(crate) checkpoints: Arc<CheckpointStats>,
    /// The checkpoint interval, when checkpointing is on.
    pub(crate) checkpoint_interval: Option<Duration>,
    /// `/readyz` fails when the newest checkpoint is older than this.
    pub(crate) ready_checkpoint_age: Option<Duration>,
    state: Mutex<&'static str>,
    restarts: AtomicU64,
    errors: Mutex<VecDeque<ErrorRecord>>,
    topology: Mutex<Topology>,
    /// The running attempt.
    current: Mutex<Option<Running>>,
    restarts_counter: metrics::Counter,
}

impl std::fmt::Debug for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobStatus")
            .field("name", &self.name)
            .field("state", &*self.state.lock())
            .finish_non_exhaustive()
    }
}

impl JobStatus {
    pub(crate) fn new(
        name: String,
        checkpoint_interval: Option<Duration>,
        ready_checkpoint_age: Option<Duration>,
    ) -> Self {
        Self {
            name,
            started: Instant::now(),
            started_at_ms: crate::now_millis(),
            metrics: JobMetrics::default(),
            checkpoints: Arc::new(CheckpointStats::default()),
            checkpoint_interval,
            ready_checkpoint_age,
            state: Mutex::new("created"),
            restarts: AtomicU64::new(0),
            errors: Mutex::new(VecDeque::new()),
            topology: Mutex::new(Topology::default()),
            current: Mutex::new(None),
            restarts_counter: metrics::counter!(RESTARTS),
        }
    }

    pub(crate) fn set_topology(&self, topology: Topology) {
        *self.topology.lock() = topology;
    }

    pub(crate) fn topology(&self) -> Topology {
        self.topology.lock().clone()
    }

    /// An attempt started running.
    pub(crate) fn running(&self, control: Arc<JobControl>, hub: Option<Arc<CheckpointHub>>) {
        *self.current.lock() = Some(Running {
            control,
            hub,
            since: Instant::now(),
        });
        *self.state.lock() = "running";
    }

    /// The job ended (`finished`, `failed`, `cancelled`) or waits to restart: no attempt
    /// runs (a savepoint asked for now is refused, not sent to a dead coordinator).
    pub(crate) fn set_state(&self, state: &'static str) {
        *self.state.lock() = state;
        *self.current.lock() = None;
    }

    pub(crate) fn state(&self) -> &'static str {
        *self.state.lock()
    }

    pub(crate) fn restarted(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
        self.restarts_counter.increment(1);
    }

    pub(crate) fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    pub(crate) fn record_error(&self, error: &Error) {
        let mut errors = self.errors.lock();
        if errors.len() == ERRORS {
            errors.pop_front();
        }
        errors.push_back(ErrorRecord {
            at_ms: crate::now_millis(),
            message: error.to_string(),
        });
    }

    /// The last errors, newest first.
    pub(crate) fn errors(&self) -> Vec<ErrorRecord> {
        self.errors.lock().iter().rev().cloned().collect()
    }

    /// Cancels the running attempt, if any.
    pub(crate) fn cancel_current(&self) {
        if let Some(r) = &*self.current.lock() {
            r.control.fail("job-handle", Error::Cancelled);
        }
    }

    /// Takes a savepoint in the running attempt (`stop`: and ends the job after it).
    pub(crate) fn savepoint(&self, stop: bool) -> Result<PathBuf> {
        let hub = match &*self.current.lock() {
            Some(Running { hub: Some(hub), .. }) => Arc::clone(hub),
            Some(Running { hub: None, .. }) => {
                return Err(Error::Config(
                    "savepoints need checkpointing enabled".into(),
                ))
            }
            None => {
                return Err(Error::Checkpoint(
                    "the job is not running (it ended, or waits to restart)".into(),
                ))
            }
        };
        let wait = hub.config.timeout + Duration::from_secs(1);
        hub.request_savepoint(stop)
            .recv_timeout(wait)
            .map_err(|_| {
                Error::Checkpoint(format!("no savepoint within {:?}", hub.config.timeout))
            })?
    }

    /// Whether the job is ready for traffic, and if not, why.
    pub(crate) fn ready(&self) -> std::result::Result<(), String> {
        let state = self.state();
        if state != "running" {
            return Err(format!("job is {state}"));
        }
        let Some(interval) = self.checkpoint_interval else {
            return Ok(());
        };
        let limit = self.ready_checkpoint_age.unwrap_or(interval * 3);
        let attempt_age = self
            .current
            .lock()
            .as_ref()
            .map_or(Duration::ZERO, |r| r.since.elapsed());
        // A new attempt gets `limit` to complete its first checkpoint.
        let since = self
            .checkpoints
            .since_last_completed()
            .unwrap_or(attempt_age);
        if since > limit && attempt_age > limit {
            return Err(format!(
                "no checkpoint completed for {since:?} (limit {limit:?})"
            ));
        }
        Ok(())
    }
}
