//! The stream environment: where a job is configured, built and executed.

use crate::graph::{Graph, PrepareCtx, SplitPool, Wire, WorkerCtx};
use crate::metrics::{JobMetrics, OperatorSnapshot};
use crate::ops::JobStatus;
use crate::runtime::task::{SourceSettings, SourceTask, Task};
use crate::runtime::Next;
use crate::sources::VecSource;
use crate::{CheckpointConfig, RestoreFrom};
use crate::{DataStream, EnvConfig, Error, Result, Source, WatermarkStrategy};
use ferroflow_state::{MemoryBackend, StateBackend};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Builds and runs a job. Cheap to clone; clones share the job being built.
///
/// ```
/// use ferroflow_core::{StreamEnvironment, sinks::CollectSink};
///
/// # fn main() -> ferroflow_core::Result<()> {
/// let env = StreamEnvironment::local(2);
/// let out = CollectSink::new();
/// env.from_iter(1..=100u64)
///     .key_by(|x| x % 10)
///     .process(ferroflow_core::testing::CountPerKey::default())
///     .filter(|(_, n)| *n == 10)
///     .sink(out.clone());
/// let result = env.execute()?;
/// assert_eq!(out.len(), 10);
/// assert!(result.elapsed.as_secs() < 60);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct StreamEnvironment {
    graph: Arc<Mutex<Graph>>,
}

impl std::fmt::Debug for StreamEnvironment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.graph.lock();
        f.debug_struct("StreamEnvironment")
            .field("config", &g.config)
            .field("state_backend", &g.backend.name())
            .field("stages", &g.stages.len())
            .finish()
    }
}

impl Default for StreamEnvironment {
    fn default() -> Self {
        Self::new(EnvConfig::default())
    }
}

impl StreamEnvironment {
    /// An environment with `config` and in-memory keyed state.
    pub fn new(config: EnvConfig) -> Self {
        Self {
            graph: Arc::new(Mutex::new(Graph::new(config, Arc::new(MemoryBackend)))),
        }
    }

    /// An environment with default configuration, `parallelism` workers, no signal
    /// handling and no restarts (a failure ends the job at once, as a test expects):
    /// handy for tests and examples.
    pub fn local(parallelism: usize) -> Self {
        Self::new(
            EnvConfig::default()
                .with_parallelism(parallelism)
                .with_signal_handling(false)
                .with_restart(crate::RestartStrategy::None),
        )
    }

    /// The configuration.
    pub fn config(&self) -> EnvConfig {
        self.graph.lock().config.clone()
    }

    /// Sets the default number of workers per chain.
    pub fn set_parallelism(&self, parallelism: usize) -> &Self {
        self.graph.lock().config.parallelism = parallelism;
        self
    }

    /// Sets where keyed state lives (default: [`MemoryBackend`]).
    pub fn set_state_backend(&self, backend: impl StateBackend) -> &Self {
        self.graph.lock().backend = Arc::new(backend);
        self
    }

    /// Takes a checkpoint every `config.interval` into `config.dir` (see
    /// [`crate::checkpoint`]). Every source must be replayable.
    pub fn enable_checkpointing(&self, config: CheckpointConfig) -> &Self {
        self.graph.lock().checkpoint = Some(config);
        self
    }

    /// Where the job's state comes from when it starts (default: nothing).
    pub fn restore_from(&self, restore: RestoreFrom) -> &Self {
        self.graph.lock().restore = restore;
        self
    }

    /// A stream read from `source`, with event time and watermarks per `watermarks`.
    pub fn from_source<S: Source>(
        &self,
        mut source: S,
        watermarks: WatermarkStrategy<S::Item>,
    ) -> DataStream<S::Item> {
        let mut g = self.graph.lock();
        let name = g.op_name(&format!("source:{}", source.name()));
        let pool = SplitPool::<S::Item>::shared();
        let fill = Arc::clone(&pool);
        let stage = g.add_stage(
            name.clone(),
            Some(Box::new(move |p: &PrepareCtx| {
                let splits = source.create_splits(p.parallelism)?;
                tracing::debug!(
                    splits = splits.len(),
                    parallelism = p.parallelism,
                    "Source splits created."
                );
                fill.lock().fill(splits, p.parallelism);
                Ok(())
            })),
        );
        drop(g);
        let cell = Arc::new(Mutex::new(name));
        let my_name = Arc::clone(&cell);
        let wire: Wire<S::Item> = Arc::new(move |ctx: &WorkerCtx, chain: Next<S::Item>| {
            let stage_name = my_name.lock().clone();
            let mut readers = pool.lock().take(ctx.worker)?;
            ctx.restore().restore_splits(&stage_name, &mut readers)?;
            let metrics = ctx.register_metrics(&stage_name);
            let settings = SourceSettings {
                batch_size: ctx.config.batch_size,
                watermark_interval: ctx.config.watermark_interval,
                idle_sleep: ctx.config.idle_sleep,
            };
            Ok(Box::new(SourceTask::new(
                ctx.task_name(&stage_name),
                stage_name,
                readers,
                watermarks.clone(),
                chain,
                settings,
                metrics,
                ctx.task_checkpoint(),
            )) as Box<dyn Task>)
        });
        DataStream::with_name_cell(Arc::clone(&self.graph), stage, wire, cell)
    }

    /// A bounded stream of the given records, without event time (one split).
    pub fn from_iter<I>(&self, items: I) -> DataStream<I::Item>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
    {
        self.from_source(VecSource::new(items), WatermarkStrategy::none())
    }

    /// Runs the job and blocks until it ends: when every bounded source is exhausted (a
    /// final watermark fires all event-time timers, sinks flush), when a stop is requested
    /// (SIGINT/SIGTERM if enabled, or [`JobHandle::stop`]), or when any task fails (the
    /// whole job stops and returns that error).
    ///
    /// # Errors
    /// The first error of any task, or a configuration error.
    pub fn execute(&self) -> Result<JobResult> {
        self.start()?.join()
    }

    /// Starts the job on its worker threads and returns at once. With `metrics.listen`
    /// set, the HTTP listener starts first (see `docs/operations.md`); with a restart
    /// strategy, a supervisor thread restarts the job when a task fails.
    ///
    /// # Errors
    /// A configuration error, the listener's address taken, or an error while building
    /// tasks.
    pub fn start(&self) -> Result<JobHandle> {
        let graph = {
            let mut g = self.graph.lock();
            let fresh = Graph::new(g.config.clone(), Arc::clone(&g.backend));
            std::mem::replace(&mut *g, fresh)
        };
        crate::supervisor::Supervisor::start(graph)
    }
}

/// A running job.
///
/// Dropping the handle without [`JobHandle::join`] cancels the job and waits for its
/// threads.
pub struct JobHandle {
    pub(crate) job: Arc<JobStatus>,
    pub(crate) supervisor: Option<JoinHandle<Result<()>>>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) cancelled: Arc<AtomicBool>,
    pub(crate) server: Option<crate::ops::Server>,
    pub(crate) signals: Vec<signal_hook::SigId>,
}

/// Requests a graceful stop of a job from anywhere (another thread, a signal handler).
#[derive(Clone, Debug)]
pub struct StopHandle {
    stop: Arc<AtomicBool>,
}

impl StopHandle {
    /// Sources stop reading; everything read so far is processed and flushed.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl JobHandle {
    /// Requests a graceful stop: sources stop reading, what was read is processed and
    /// sinks flush. No final watermark is emitted, so event-time timers still pending
    /// do not fire.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Takes a savepoint: a checkpoint taken now (after any checkpoint in flight), kept
    /// until deleted by hand, as `<checkpoint dir>/savepoint-<n>`. Blocks until it is
    /// complete and returns its directory, which [`RestoreFrom::Path`] restores.
    ///
    /// # Errors
    /// When checkpointing is not enabled, the job is not running, or the savepoint fails
    /// or times out.
    pub fn savepoint(&self) -> Result<std::path::PathBuf> {
        self.job.savepoint(false)
    }

    /// Takes a savepoint and ends the job right after it: sources stop at the savepoint's
    /// barrier (no final watermark, so event-time state stays open for the resumed job),
    /// everything before it is processed and committed, and the job ends. Resuming from
    /// the returned directory continues exactly where this run stopped.
    ///
    /// # Errors
    /// As [`Self::savepoint`], or the job's own error. If the savepoint fails after the
    /// sources stopped, the job has still ended.
    pub fn stop_with_savepoint(self) -> Result<(std::path::PathBuf, JobResult)> {
        let path = self.job.savepoint(true);
        // Whatever the savepoint did, the job ends: no restart, no more reading.
        self.stop();
        let path = path?;
        let result = self.join()?;
        Ok((path, result))
    }

    /// A cloneable handle that can stop the job.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            stop: Arc::clone(&self.stop),
        }
    }

    /// Current counters of every operator.
    pub fn metrics(&self) -> Vec<OperatorSnapshot> {
        self.job.metrics.snapshot()
    }

    /// The job's metrics registry.
    pub fn job_metrics(&self) -> &JobMetrics {
        &self.job.metrics
    }

    /// How often the job was restarted after a failure.
    pub fn restarts(&self) -> u64 {
        self.job.restarts()
    }

    /// The address of the HTTP listener (`metrics.listen`), with the port it got when
    /// `:0` was asked for.
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.as_ref().map(crate::ops::Server::addr)
    }

    /// Checkpoint counts and history.
    pub fn checkpoints(&self) -> crate::checkpoint::CheckpointsView {
        self.job.checkpoints.view()
    }

    /// Time since the job started.
    pub fn elapsed(&self) -> Duration {
        self.job.started.elapsed()
    }

    /// Whether the job has ended (with no restart to come).
    pub fn is_finished(&self) -> bool {
        self.supervisor.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the job to end.
    ///
    /// # Errors
    /// The error that ended the job: the first error of any task, once the restart
    /// strategy gave up.
    pub fn join(mut self) -> Result<JobResult> {
        let outcome = self.wait();
        let elapsed = self.job.started.elapsed();
        outcome.map(|()| JobResult {
            elapsed,
            metrics: self.job.metrics.snapshot(),
        })
    }

    fn wait(&mut self) -> Result<()> {
        let outcome = match self.supervisor.take() {
            Some(t) => t.join().unwrap_or_else(|_| {
                Err(Error::Internal(
                    "the job's supervisor thread panicked".into(),
                ))
            }),
            None => Ok(()),
        };
        for id in self.signals.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        self.server = None;
        outcome
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        if self.supervisor.is_some() {
            self.cancelled.store(true, Ordering::Relaxed);
            self.job.cancel_current();
            let _ = self.wait();
        }
    }
}

/// What a finished job reports.
#[derive(Debug, Clone)]
pub struct JobResult {
    /// Wall time from start to end.
    pub elapsed: Duration,
    /// Final counters of every operator.
    pub metrics: Vec<OperatorSnapshot>,
}

impl JobResult {
    /// Summed counters of one operator over its workers.
    pub fn operator(&self, name: &str) -> Option<OperatorSnapshot> {
        crate::metrics::sum_operator(&self.metrics, name)
    }
}
