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

/// Everything that is not data, in one vocabulary from the sources to the sinks: it
/// travels in channels beside batches ([`Message`]), comes out of input gates, and is what
/// every node of a chain receives in [`Push::control`]. `Open`, `Tick` and
/// `CheckpointComplete` happen inside a task and never cross a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    /// The chain starts: called once on the worker thread before anything else.
    Open,
    /// Event time advanced: no record older than this follows.
    Watermark(Timestamp),
    /// Every input is idle: downstream should not wait for this task's watermark.
    Idle,
    /// Checkpoint barrier `n`, aligned on every input. In a chain the barrier comes with
    /// the task's snapshot, to which each node adds its state before passing it on.
    Barrier(u64),
    /// Checkpoint `n` (and every earlier one) completed: publish side effects.
    CheckpointComplete(u64),
    /// Called regularly, with or without input: flush lingering batches, fire
    /// processing-time timers.
    Tick(Instant),
    /// The input ended: flush, close, and pass the end on.
    End,
}

/// What a channel carries and an input gate hands its task.
#[derive(Debug)]
pub(crate) enum Message<T> {
    Data(Vec<T>),
    Control(Control),
}

/// The snapshot a barrier comes with (`None` for every other control message).
pub(crate) type Snapshot<'a> = Option<&'a mut TaskSnapshot>;

/// A consumer of a typed stream inside one task: an operator followed by the rest of its
/// chain. Calls arrive in order on the task's thread.
pub(crate) trait Push<T>: Send {
    /// A batch of records.
    fn push(&mut self, batch: Vec<T>) -> Result<()>;
    /// A control message: handle it, then pass it on down the chain (a node that only
    /// transforms data just passes it on).
    fn control(&mut self, control: Control, snapshot: Snapshot<'_>) -> Result<()>;
}

/// The control messages as calls, for the tasks and nodes that send them.
pub(crate) trait ControlCalls<T> {
    fn open(&mut self) -> Result<()>;
    fn watermark(&mut self, watermark: Timestamp) -> Result<()>;
    fn idle(&mut self) -> Result<()>;
    fn tick(&mut self, now: Instant) -> Result<()>;
    fn finish(&mut self) -> Result<()>;
    fn barrier(&mut self, snapshot: &mut TaskSnapshot) -> Result<()>;
    fn checkpoint_complete(&mut self, id: u64) -> Result<()>;
}

impl<T, P: Push<T> + ?Sized> ControlCalls<T> for P {
    fn open(&mut self) -> Result<()> {
        self.control(Control::Open, None)
    }
    fn watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.control(Control::Watermark(watermark), None)
    }
    fn idle(&mut self) -> Result<()> {
        self.control(Control::Idle, None)
    }
    fn tick(&mut self, now: Instant) -> Result<()> {
        self.control(Control::Tick(now), None)
    }
    fn finish(&mut self) -> Result<()> {
        self.control(Control::End, None)
    }
    fn barrier(&mut self, snapshot: &mut TaskSnapshot) -> Result<()> {
        let id = snapshot.checkpoint;
        self.control(Control::Barrier(id), Some(snapshot))
    }
    fn checkpoint_complete(&mut self, id: u64) -> Result<()> {
        self.control(Control::CheckpointComplete(id), None)
    }
}

/// Boxed chain continuation.
pub(crate) type Next<T> = Box<dyn Push<T>>;

/// The snapshot of a barrier, or an internal error if a barrier came without one.
pub(crate) fn barrier_snapshot(snapshot: Snapshot<'_>) -> Result<&mut TaskSnapshot> {
    snapshot.ok_or_else(|| {
        crate::Error::Internal("a barrier reached a node without its snapshot".into())
    })
}
