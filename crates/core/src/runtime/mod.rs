//! The engine: chains of operators on worker threads, exchanges between them, and the
//! task loops that drive both. Nothing here is public API; `stream` and `env` build on it.

pub(crate) mod async_node;
pub(crate) mod chain;
pub(crate) mod channel;
pub(crate) mod control;
pub(crate) mod exchange;
pub(crate) mod gate;
pub(crate) mod io;
pub(crate) mod task;

use crate::checkpoint::coordinator::TaskSnapshot;
use crate::{Result, Timestamp};
use std::time::Instant;

/// A consumer of a typed stream inside one task: an operator followed by the rest of its
/// chain. Calls arrive in order on the task's thread.
pub(crate) trait Push<T>: Send {
    /// Called once on the worker thread before any other call.
    fn open(&mut self) -> Result<()>;
    /// A batch of records.
    fn push(&mut self, batch: Vec<T>) -> Result<()>;
    /// Event time advanced: no record older than `watermark` follows.
    fn watermark(&mut self, watermark: Timestamp) -> Result<()>;
    /// Every input is idle: downstream should not wait for this task's watermark.
    fn idle(&mut self) -> Result<()>;
    /// Called regularly, with or without input: flush lingering batches, fire
    /// processing-time timers.
    fn tick(&mut self, now: Instant) -> Result<()>;
    /// The input ended: flush, close, and pass the end on.
    fn finish(&mut self) -> Result<()>;
    /// A checkpoint barrier, aligned on every input: add this operator's state to
    /// `snapshot`, then pass the barrier on.
    fn barrier(&mut self, snapshot: &mut TaskSnapshot) -> Result<()>;
    /// Checkpoint `id` (and every earlier one) completed: publish side effects.
    fn checkpoint_complete(&mut self, id: u64) -> Result<()>;
}

/// Boxed chain continuation.
pub(crate) type Next<T> = Box<dyn Push<T>>;
