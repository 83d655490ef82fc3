//! The job's supervisor: starts the HTTP listener and the first attempt, then watches
//! the running attempt on a thread of its own, restarting it from its newest checkpoint
//! when a task fails (as the restart strategy allows) and turning a stop signal into a
//! savepoint when asked to.

use crate::config::OnSignal;
use crate::env::JobHandle;
use crate::graph::Graph;
use crate::launch::{launch, register_signals, Attempt};
use crate::ops::{self, JobStatus};
use crate::restart::Restarts;
use crate::{Error, RestoreFrom, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the supervisor looks at the running attempt.
const POLL: Duration = Duration::from_millis(20);

pub(crate) struct Supervisor {
    graph: Graph,
    job: Arc<JobStatus>,
    stop: Arc<AtomicBool>,
    cancelled: Arc<AtomicBool>,
    /// Set by a stop signal when it should take a savepoint.
    savepoint_signal: Arc<AtomicBool>,
    restarts: Restarts,
    /// What the first attempt restored: a restart before any checkpoint completed
    /// starts from it again.
    original_restore: RestoreFrom,
}

impl Supervisor {
    /// Starts `graph`: the listener, the signal handlers, the first attempt (on the
    /// caller's thread, so that its errors come back from `start`) and the supervisor.
    pub(crate) fn start(mut graph: Graph) -> Result<JobHandle> {
        let config = graph.config.clone();
        config.validate()?;
        let prometheus = config
            .metrics
            .listen
            .and_then(|_| ops::install_prometheus(&config.name));
        let job = Arc::new(JobStatus::new(
            config.name.clone(),
            graph.checkpoint.as_ref().map(|c| c.interval),
            config.metrics.ready_checkpoint_age,
        ));
        let server = match config.metrics.listen {
            Some(addr) => Some(ops::serve(addr, Arc::clone(&job), prometheus)?),
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let savepoint_signal = Arc::new(AtomicBool::new(false));
        let signals = if !config.handle_signals {
            Vec::new()
        } else if config.on_signal == OnSignal::Savepoint && graph.checkpoint.is_some() {
            register_signals(&savepoint_signal)?
        } else {
            if config.on_signal == OnSignal::Savepoint {
                tracing::warn!(
                    "on_signal = savepoint needs checkpointing; a signal drains the job instead."
                );
            }
            register_signals(&stop)?
        };
        let attempt = match launch(&mut graph, &job, &stop) {
            Ok(a) => a,
            Err(e) => {
                for id in signals {
                    signal_hook::low_level::unregister(id);
                }
                return Err(e);
            }
        };
        let cancelled = Arc::new(AtomicBool::new(false));
        let original_restore = graph.restore.clone();
        let supervisor = Self {
            restarts: Restarts::new(config.restart.resolve(graph.checkpoint.is_some())),
            graph,
            job: Arc::clone(&job),
            stop: Arc::clone(&stop),
            cancelled: Arc::clone(&cancelled),
            savepoint_signal,
            original_restore,
        };
        let control = Arc::clone(&attempt.control);
        let thread = std::thread::Builder::new()
            .name("ff-supervisor".into())
            .spawn(move || supervisor.run(attempt))
            .map_err(|e| {
                control.fail("supervisor", Error::Cancelled);
                Error::io("spawning the job's supervisor thread", e)
            })?;
        Ok(JobHandle {
            job,
            supervisor: Some(thread),
            stop,
            cancelled,
            server,
            signals,
        })
    }

    fn run(mut self, mut attempt: Attempt) -> Result<()> {
        loop {
            let Some(error) = self.watch(&mut attempt) else {
                let state = if self.cancelled.load(Ordering::Relaxed) {
                    "cancelled"
                } else {
                    "finished"
                };
                self.job.set_state(state);
                tracing::info!(state, "Job ended.");
                return Ok(());
            };
            self.job.record_error(&error);
            match self.restart(error, attempt.started.elapsed()) {
                Ok(next) => attempt = next,
                Err(e) => {
                    self.job.set_state("failed");
                    return Err(e);
                }
            }
        }
    }

    /// Waits for the attempt to end; takes the savepoint a stop signal asked for.
    fn watch(&self, attempt: &mut Attempt) -> Option<Error> {
        let mut savepoint_taken = false;
        while !attempt.is_finished() {
            if self.cancelled.load(Ordering::Relaxed) {
                attempt.control.fail("job-handle", Error::Cancelled);
            }
            if !savepoint_taken && self.savepoint_signal.load(Ordering::Relaxed) {
                savepoint_taken = true;
                tracing::info!("Stop signal: stopping with a savepoint.");
                match self.job.savepoint(true) {
                    Ok(path) => {
                        tracing::info!(path = %path.display(), "Savepoint taken; the job ends.")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "Savepoint on stop failed; draining without one.");
                    }
                }
                // Either way the job ends: no restart, no more reading.
                self.stop.store(true, Ordering::Relaxed);
            }
            std::thread::sleep(POLL);
        }
        attempt.wait()
    }

    /// Whether the job was cancelled or asked to stop (a stop signal included): a failed
    /// job then ends instead of restarting.
    fn stopping(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
            || self.stop.load(Ordering::Relaxed)
            || self.savepoint_signal.load(Ordering::Relaxed)
    }

    /// After `error` ended an attempt that ran for `ran`: waits as the strategy says and
    /// starts the next attempt, or returns the error that ends the job.
    fn restart(&mut self, mut error: Error, mut ran: Duration) -> Result<Attempt> {
        loop {
            if self.stopping() {
                return Err(error);
            }
            if error.is_fatal() {
                tracing::error!(error = %error, "No restart can fix this error; the job fails.");
                return Err(error);
            }
            let Some(delay) = self.restarts.on_failure(Instant::now(), ran) else {
                if self.job.restarts() > 0 {
                    tracing::error!(restarts = self.job.restarts(), error = %error, "Restart strategy exhausted; the job fails.");
                }
                return Err(error);
            };
            self.job.set_state("restarting");
            tracing::warn!(error = %error, ?delay, restarts = self.job.restarts(), "Job failed; restarting.");
            let until = Instant::now() + delay;
            while Instant::now() < until {
                if self.stopping() {
                    return Err(error);
                }
                std::thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
            }
            self.graph.restore =
                if self.graph.checkpoint.is_some() && self.job.checkpoints.completed_count() > 0 {
                    RestoreFrom::Latest { fallback: false }
                } else {
                    self.original_restore.clone()
                };
            self.job.restarted();
            match launch(&mut self.graph, &self.job, &self.stop) {
                Ok(attempt) => return Ok(attempt),
                Err(e) => {
                    self.job.record_error(&e);
                    error = e;
                    ran = Duration::ZERO;
                }
            }
        }
    }
}
