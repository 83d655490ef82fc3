//! Sinks: where a stream ends.

use crate::{Result, Timestamp};

/// Where a sink instance runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkContext {
    /// Index of the worker running this instance.
    pub worker: usize,
    /// Number of instances.
    pub parallelism: usize,
}

/// The end of a stream. One instance runs per worker (each a clone of the sink passed to
/// `DataStream::sink`), chained on the worker thread: a slow sink slows its inputs down
/// instead of letting records pile up (backpressure).
///
/// Lifecycle: `open`, then any number of `write` and `on_watermark`, then `finish` when the
/// input ends (flush everything). `finish` is not called when the job fails.
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

    /// The input ended: make everything written durable.
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}
