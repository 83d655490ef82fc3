//! Sinks: where a stream ends.

use crate::{Result, Timestamp};

/// Where a sink instance runs, and what it must recover.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkContext {
    /// Index of the worker running this instance.
    pub worker: usize,
    /// Number of instances.
    pub parallelism: usize,
    /// A number that differs between runs of the job (the start time in epoch ms, or one
    /// more than the last run of this process if that is not lower), for naming temporary
    /// files so that a restarted run can tell its files from older ones.
    pub attempt: u64,
    /// After a restore: what the restored checkpoint held as prepared and not yet known
    /// to be committed (its own committable and those of earlier checkpoints that failed
    /// and were waiting for it), from the sink instances of the previous run whose index
    /// maps to this one (`old_worker % parallelism == worker`), oldest first per
    /// instance. `open` must commit them, idempotently (they may have been committed
    /// already) before anything else.
    pub restored_commits: Vec<serde_json::Value>,
    /// The checkpoint interval, when the job takes checkpoints (a transactional sink
    /// checks that its transactions outlive it).
    pub checkpoint_interval: Option<std::time::Duration>,
}

/// The end of a stream. One instance runs per worker (each a clone of the sink passed to
/// `DataStream::sink`), chained on the worker thread: a slow sink slows its inputs down
/// instead of letting records pile up (backpressure).
///
/// Lifecycle: `open`, then any number of `write` and `on_watermark`, then `finish` when the
/// input ends (flush everything). `finish` is not called when the job fails.
///
/// With checkpoints, a sink is two-phase: on each barrier `prepare_commit` makes what was
/// written so far ready to publish and describes it; once the checkpoint is complete
/// (durable everywhere), `commit` publishes it. A sink that publishes only in `commit`
/// gives exactly-once output; one that publishes in `write` and flushes in
/// `prepare_commit` gives at-least-once.
pub trait Sink<T>: Send + 'static {
    /// Name used in logs and metrics.
    fn name(&self) -> String {
        "sink".into()
    }

    /// Called once on the worker thread before any record.
    fn open(&mut self, ctx: &SinkContext) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Writes a batch.
    ///
    /// # Errors
    /// A failed write stops the job with that error; it is never dropped silently.
    fn write(&mut self, batch: Vec<T>) -> Result<()>;

    /// Event time advanced to `watermark`.
    fn on_watermark(&mut self, watermark: Timestamp) -> Result<()> {
        let _ = watermark;
        Ok(())
    }

    /// The input ended: make everything written durable and published, including what
    /// was prepared for checkpoints that have not completed.
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }

    /// A checkpoint barrier: make everything written so far durable and ready to publish.
    /// Returns what `commit` will need (stored in the checkpoint), or `None` if there is
    /// nothing to commit.
    fn prepare_commit(&mut self, checkpoint: u64) -> Result<Option<serde_json::Value>> {
        let _ = checkpoint;
        Ok(None)
    }

    /// The checkpoints that prepared `committables` completed: publish them, in order.
    /// Must be idempotent.
    fn commit(&mut self, committables: Vec<serde_json::Value>) -> Result<()> {
        let _ = committables;
        Ok(())
    }
}
