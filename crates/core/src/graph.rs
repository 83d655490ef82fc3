//! The job graph as it is being built: stages (chains that run `parallelism` tasks each)
//! joined by exchanges. Types are erased here; `stream` keeps them.

use crate::checkpoint::coordinator::CheckpointHub;
pub(crate) use crate::checkpoint::restore::Restored;
use crate::checkpoint::restore::TaskRestore;
use crate::metrics::JobMetrics;
use crate::runtime::control::JobControl;
use crate::runtime::exchange::{channel_matrix, Receivers, Senders};
use crate::runtime::io::IoRuntime;
use crate::runtime::task::Task;
use crate::runtime::task::TaskCheckpoint;
use crate::runtime::Next;
use crate::CheckpointConfig;
use crate::RestoreFrom;
use crate::{EnvConfig, Error, Result, SplitReader};
use ferroflow_state::StateBackend;
use parking_lot::Mutex;
use std::sync::Arc;

/// What a task builder gets to know about its worker.
pub(crate) struct WorkerCtx {
    /// Index of the stage in the graph.
    pub(crate) stage: usize,
    pub(crate) worker: usize,
    pub(crate) parallelism: usize,
    /// Index of the task in the job (for checkpoint acknowledgements).
    pub(crate) task: usize,
    pub(crate) config: EnvConfig,
    pub(crate) control: Arc<JobControl>,
    pub(crate) metrics: JobMetrics,
    pub(crate) backend: Arc<dyn StateBackend>,
    pub(crate) checkpoint: Option<Arc<CheckpointHub>>,
    pub(crate) restored: Option<Arc<Restored>>,
    pub(crate) attempt: u64,
    /// The job's I/O runtime, for operators that wait on I/O.
    pub(crate) io: Arc<IoRuntime>,
}

impl WorkerCtx {
    pub(crate) fn task_name(&self, stage: &str) -> String {
        format!("{stage}[{}/{}]", self.worker, self.parallelism)
    }

    /// Registers the metrics of `operator`, an operator of this task's stage.
    pub(crate) fn register_metrics(&self, operator: &str) -> Arc<crate::metrics::OperatorMetrics> {
        self.metrics.register_in(self.stage, operator, self.worker)
    }

    /// What the restored checkpoint (if any) holds for this task.
    pub(crate) fn restore(&self) -> TaskRestore<'_> {
        TaskRestore {
            restored: self.restored.as_deref(),
            worker: self.worker,
            parallelism: self.parallelism,
        }
    }

    /// This task's part in checkpointing, if enabled.
    pub(crate) fn task_checkpoint(&self) -> Option<TaskCheckpoint> {
        self.checkpoint
            .as_ref()
            .map(|hub| TaskCheckpoint::new(Arc::clone(hub), self.task))
    }
}

/// Builds a worker's task given the consumer at the end of the stream: every operator of
/// a stream wraps the wire of the stream it came from.
pub(crate) type Wire<T> = Arc<dyn Fn(&WorkerCtx, Next<T>) -> Result<Box<dyn Task>> + Send + Sync>;

/// Builds the task of one worker of a finished stage.
pub(crate) type TaskFactory = Box<dyn Fn(&WorkerCtx) -> Result<Box<dyn Task>> + Send>;

/// Prepares a stage or exchange once parallelism is known: again at every restart.
type Prepare = Box<dyn FnMut(&PrepareCtx) -> Result<()> + Send>;

pub(crate) struct PrepareCtx {
    pub(crate) parallelism: usize,
    pub(crate) downstream_parallelism: usize,
    pub(crate) capacity: usize,
}

pub(crate) struct Stage {
    pub(crate) name: String,
    pub(crate) parallelism: Option<usize>,
    pub(crate) prepare: Option<Prepare>,
    pub(crate) factory: Option<TaskFactory>,
}

pub(crate) struct Exchange {
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) prepare: Prepare,
}

/// The graph under construction, shared by the environment and every stream.
pub(crate) struct Graph {
    pub(crate) config: EnvConfig,
    pub(crate) backend: Arc<dyn StateBackend>,
    pub(crate) checkpoint: Option<CheckpointConfig>,
    pub(crate) restore: RestoreFrom,
    pub(crate) stages: Vec<Stage>,
    pub(crate) exchanges: Vec<Exchange>,
    pub(crate) errors: Vec<String>,
    /// Operator ids set with `uid`.
    pub(crate) uids: Vec<String>,
    next_op: usize,
}

impl Graph {
    pub(crate) fn new(config: EnvConfig, backend: Arc<dyn StateBackend>) -> Self {
        Self {
            config,
            backend,
            checkpoint: None,
            restore: RestoreFrom::Nothing,
            stages: Vec::new(),
            exchanges: Vec::new(),
            errors: Vec::new(),
            uids: Vec::new(),
            next_op: 0,
        }
    }

    /// A unique operator name such as `map#3`.
    pub(crate) fn op_name(&mut self, kind: &str) -> String {
        self.next_op += 1;
        format!("{kind}#{}", self.next_op)
    }

    pub(crate) fn add_stage(&mut self, name: String, prepare: Option<Prepare>) -> usize {
        self.stages.push(Stage {
            name,
            parallelism: None,
            prepare,
            factory: None,
        });
        self.stages.len() - 1
    }

    pub(crate) fn finish_stage(&mut self, stage: usize, factory: TaskFactory) {
        if let Some(s) = self.stages.get_mut(stage) {
            s.factory = Some(factory);
        }
    }
}

/// The channels of one exchange, handed out to tasks as they are built.
pub(crate) struct ChannelPool<M> {
    senders: Vec<Option<Senders<M>>>,
    receivers: Vec<Option<Receivers<M>>>,
}

impl<M: Send + 'static> ChannelPool<M> {
    pub(crate) fn shared() -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self {
            senders: Vec::new(),
            receivers: Vec::new(),
        }))
    }

    pub(crate) fn preparer(pool: &Arc<Mutex<Self>>) -> Prepare {
        let pool = Arc::clone(pool);
        Box::new(move |p: &PrepareCtx| {
            let (s, r) = channel_matrix::<M>(p.parallelism, p.downstream_parallelism, p.capacity);
            let mut pool = pool.lock();
            pool.senders = s.into_iter().map(Some).collect();
            pool.receivers = r.into_iter().map(Some).collect();
            Ok(())
        })
    }

    pub(crate) fn take_senders(&mut self, worker: usize) -> Result<Senders<M>> {
        self.senders
            .get_mut(worker)
            .and_then(Option::take)
            .ok_or_else(|| internal(format!("no senders for worker {worker}")))
    }

    pub(crate) fn take_receivers(&mut self, worker: usize) -> Result<Receivers<M>> {
        self.receivers
            .get_mut(worker)
            .and_then(Option::take)
            .ok_or_else(|| internal(format!("no receivers for worker {worker}")))
    }
}

/// The splits of one source, handed out per worker.
pub(crate) struct SplitPool<T> {
    per_worker: Vec<Option<Vec<Box<dyn SplitReader<T>>>>>,
}

impl<T: Send + 'static> SplitPool<T> {
    pub(crate) fn shared() -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self {
            per_worker: Vec::new(),
        }))
    }

    /// Assigns each split to the worker it names as owner, and the others round-robin.
    pub(crate) fn fill(&mut self, splits: Vec<Box<dyn SplitReader<T>>>, parallelism: usize) {
        let mut per_worker: Vec<Vec<_>> = (0..parallelism).map(|_| Vec::new()).collect();
        let mut next = 0;
        for split in splits {
            let worker = match split.owner(parallelism) {
                Some(w) if w < parallelism => w,
                _ => {
                    next += 1;
                    (next - 1) % parallelism
                }
            };
            per_worker[worker].push(split);
        }
        self.per_worker = per_worker.into_iter().map(Some).collect();
    }

    pub(crate) fn take(&mut self, worker: usize) -> Result<Vec<Box<dyn SplitReader<T>>>> {
        self.per_worker
            .get_mut(worker)
            .and_then(Option::take)
            .ok_or_else(|| internal(format!("no splits for worker {worker}")))
    }
}

fn internal(msg: String) -> Error {
    Error::Internal(format!("while building the job: {msg}"))
}
