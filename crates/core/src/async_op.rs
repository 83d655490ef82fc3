//! Operators that wait on I/O: an [`AsyncFunction`] starts futures (lookups, uploads) that
//! run on a tokio runtime owned by the job, while the worker goes on with other records,
//! timers and barriers. Completions come back to the worker, which emits them in order
//! (or as they complete) and never lets a record overtake a watermark it preceded.
//!
//! At a checkpoint barrier the operator does what its [`OnBarrier`] says: `Drain` waits
//! until every call in flight has completed, `Snapshot` does not wait. Either way, every
//! input whose output has not been emitted yet (in flight, waiting for a retry, or
//! completed behind an earlier one) goes into the checkpoint, and a restore issues it
//! again: no input is lost and none is emitted twice.

use crate::{Collector, Result};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// The future of one call: a reply per input, in input order.
pub type AsyncCall<O> = Pin<Box<dyn Future<Output = Result<Vec<Reply<O>>>> + Send + 'static>>;

/// What became of one input of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<O> {
    /// Emit this record for the input.
    Emit(O),
    /// The input produces nothing.
    Skip,
    /// Not answerable yet (a dimension row that has not arrived, say): call again with
    /// this input after the delay, with the attempt number one higher. The input is held
    /// by the runtime meanwhile, in checkpoints too; the function decides when to give up.
    RetryAfter(Duration),
}

/// What [`AsyncFunction::open`] learns about where it runs.
#[derive(Debug, Clone)]
pub struct AsyncOpenContext {
    pub(crate) worker: usize,
    pub(crate) parallelism: usize,
    pub(crate) max_parallelism: u16,
    pub(crate) operator: String,
    pub(crate) handle: tokio::runtime::Handle,
}

impl AsyncOpenContext {
    /// Index of this worker.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Number of workers running the function.
    pub fn parallelism(&self) -> usize {
        self.parallelism
    }

    /// Whether records keyed by `key` come to this worker (after a `key_by`, the
    /// worker owns the key's key group): a worker that loads a share of a table keeps
    /// the rows this says yes to.
    pub fn owns<K: std::hash::Hash + ?Sized>(&self, key: &K) -> bool {
        if self.parallelism == 1 {
            // The only worker owns every key group: no hash to compute.
            return true;
        }
        let group = ferroflow_state::key_group_for_key(key, self.max_parallelism);
        ferroflow_state::worker_for_key_group(group, self.max_parallelism, self.parallelism)
            == self.worker
    }

    /// The operator's name (for metrics and logs).
    pub fn operator(&self) -> &str {
        &self.operator
    }

    /// The job's I/O runtime, for clients that must be created inside one (connection
    /// pools) or background work of the function's own.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

/// A function whose work completes later: Flink's `AsyncFunction`, batched.
///
/// `call` is invoked on the worker thread with up to [`AsyncConfig::max_batch`] inputs
/// and returns a future; the future runs on the job's I/O runtime and resolves to one
/// [`Reply`] per input. An error from the future (or a timeout) is retried with backoff
/// when it is retryable, up to [`AsyncConfig::max_retries`], and otherwise fails the job.
///
/// ```
/// use ferroflow_core::{AsyncCall, AsyncConfig, AsyncFunction, Reply, StreamEnvironment,
///     sinks::CollectSink};
///
/// /// Doubles numbers "remotely".
/// #[derive(Clone)]
/// struct Double;
///
/// impl AsyncFunction for Double {
///     type In = u64;
///     type Out = u64;
///     fn call(&mut self, inputs: &[u64], _attempt: u32) -> AsyncCall<u64> {
///         let inputs = inputs.to_vec();
///         Box::pin(async move { Ok(inputs.into_iter().map(|x| Reply::Emit(x * 2)).collect()) })
///     }
/// }
///
/// # fn main() -> ferroflow_core::Result<()> {
/// let env = StreamEnvironment::local(2);
/// let out = CollectSink::new();
/// env.from_iter(1..=3u64).process_async(Double, AsyncConfig::default()).sink(out.clone());
/// env.execute()?;
/// assert_eq!(out.sorted(), vec![2, 4, 6]);
/// # Ok(()) }
/// ```
pub trait AsyncFunction: Send + 'static {
    /// Input records; they go into checkpoints while their call is unanswered.
    type In: Serialize + DeserializeOwned + Send + 'static;
    /// Output records.
    type Out: Send + 'static;

    /// Starts the work for `inputs` (attempt 1 the first time, higher for retries).
    fn call(&mut self, inputs: &[Self::In], attempt: u32) -> AsyncCall<Self::Out>;

    /// Called once per worker before any input.
    fn open(&mut self, ctx: &AsyncOpenContext) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Answers at once what it can (from a cache, say) by collecting into `out`, and
    /// returns the inputs that need a call. In ordered mode it is called only when no
    /// earlier input is still waiting, so that answers never overtake; otherwise every
    /// input goes to `call`. Default: every input needs a call.
    fn prepare(
        &mut self,
        batch: Vec<Self::In>,
        out: &mut Collector<'_, Self::Out>,
    ) -> Result<Vec<Self::In>> {
        let _ = out;
        Ok(batch)
    }

    /// The input ended and every call has been answered.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// What happens to calls in flight when a checkpoint barrier arrives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBarrier {
    /// Wait until every call in flight has completed, then snapshot what is still
    /// unanswered (inputs waiting for a retry). Checkpoints take as long as the slowest
    /// call; restores issue few calls again.
    Drain,
    /// Snapshot every unanswered input at once, in flight or not, and go on; a restore
    /// issues them again. Barriers never wait on I/O; the calls must be safe to repeat
    /// (lookups are). Default.
    #[default]
    Snapshot,
}

/// What a timed-out call becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// Retry like a retryable error (with backoff, up to `max_retries`), then fail. Default.
    #[default]
    Retry,
    /// Fail the job at once.
    Fail,
}

/// Settings of an async operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AsyncConfig {
    /// Emit outputs in input order (true) or as calls complete (false; records still never
    /// cross a watermark). Default: false.
    pub ordered: bool,
    /// Calls in flight per worker; a worker with this many waits for one to complete
    /// before it takes more input (backpressure). Default: 64.
    pub capacity: usize,
    /// Inputs per call at most. Default: 128.
    pub max_batch: usize,
    /// Inputs per worker not yet answered (in flight, waiting for a retry, or waiting for
    /// earlier ones to be emitted) before the worker stops taking input. Default: 100000.
    pub max_pending: usize,
    /// Longest a call may take, as `30s` in files. Default: 30 s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// What a timed-out call becomes. Default: retry.
    pub on_timeout: OnTimeout,
    /// Retries of a call that failed with a retryable error or timed out. Default: 5.
    pub max_retries: u32,
    /// Delay before the first retry of a failed call, doubled each time up to 30 s.
    /// Default: 100 ms.
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// What a barrier does with calls in flight. Default: snapshot.
    pub on_barrier: OnBarrier,
}

impl Default for AsyncConfig {
    fn default() -> Self {
        Self {
            ordered: false,
            capacity: 64,
            max_batch: 128,
            max_pending: 100_000,
            timeout: Duration::from_secs(30),
            on_timeout: OnTimeout::default(),
            max_retries: 5,
            retry_backoff: Duration::from_millis(100),
            on_barrier: OnBarrier::default(),
        }
    }
}

impl AsyncConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// [`crate::Error::Config`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str| {
            Err(crate::Error::Config(format!(
                "async operator: {field} must be at least 1"
            )))
        };
        if self.capacity == 0 {
            return bad("capacity");
        }
        if self.max_batch == 0 {
            return bad("max_batch");
        }
        if self.max_pending == 0 {
            return bad("max_pending");
        }
        if self.timeout.is_zero() {
            return Err(crate::Error::Config(
                "async operator: timeout must be positive".into(),
            ));
        }
        Ok(())
    }

    /// Sets `ordered`.
    #[must_use]
    pub fn ordered(mut self, ordered: bool) -> Self {
        self.ordered = ordered;
        self
    }

    /// Sets `capacity`.
    #[must_use]
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets `max_batch`.
    #[must_use]
    pub fn with_max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }

    /// Sets `timeout` and `on_timeout`.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration, on_timeout: OnTimeout) -> Self {
        self.timeout = timeout;
        self.on_timeout = on_timeout;
        self
    }

    /// Sets `max_retries` and `retry_backoff`.
    #[must_use]
    pub fn with_retries(mut self, max_retries: u32, backoff: Duration) -> Self {
        self.max_retries = max_retries;
        self.retry_backoff = backoff;
        self
    }

    /// Sets `on_barrier`.
    #[must_use]
    pub fn on_barrier(mut self, on_barrier: OnBarrier) -> Self {
        self.on_barrier = on_barrier;
        self
    }
}
