//! Checkpoints: consistent snapshots of a running job, taken with aligned barriers.
//!
//! With checkpointing enabled ([`crate::StreamEnvironment::enable_checkpointing`]) a
//! coordinator thread triggers checkpoint `n` every interval. Source tasks record the
//! position of each split and send a barrier downstream after their current batch.
//! Operators with several inputs wait until the barrier has arrived on every input (an
//! input that delivered it is not read meanwhile), snapshot their state and pass the
//! barrier on. Sinks prepare what they will commit. When every task has acknowledged, the
//! coordinator writes `chk-n/_metadata` atomically, and only then are sinks told to
//! commit. A job restored from checkpoint `n` resumes every split after its recorded
//! position, with the keyed state and pending sink commits of `n`: together this gives
//! exactly-once results.
//!
//! Layout of the checkpoint directory:
//!
//! ```text
//! <dir>/chk-<n>/_metadata                 JSON, written last: a checkpoint without it is incomplete
//! <dir>/chk-<n>/<operator>-<worker>.state keyed state of one operator instance (see ferroflow_state)
//! ```

mod config;
pub(crate) mod coordinator;
mod metadata;

pub use config::{CheckpointConfig, RestoreFrom};
pub(crate) use metadata::{latest_checkpoints, load_checkpoint};
pub use metadata::{CheckpointMetadata, SinkCommit, SplitPositionEntry, StateFile};

/// A position in a split, as recorded in a checkpoint (JSON, source-specific).
pub type SplitPosition = serde_json::Value;
