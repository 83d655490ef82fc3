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
//! <dir>/chk-<n>/<operator>-<worker>.native/ the small private files of a native (RocksDB) snapshot
//!                                         (non-keyed operators' state is in _metadata)
//! <dir>/shared/<store>-<file>.sst           data files that several checkpoints use
//! <dir>/savepoint-<n>/                    a savepoint: canonical state, kept until deleted
//! ```
//!
//! With [`CheckpointConfig::storage`] set, an object store (S3, `file://`, HDFS) holds
//! the same layout under the URL's path and is the source of truth: `<dir>` is the local
//! working copy. Each task writes its snapshot locally (the synchronous part of its
//! barrier: for RocksDB a flush and hard links), then its new files are uploaded in the
//! background while the task goes on processing; its acknowledgement reaches the
//! coordinator once they are stored. The coordinator stores `_metadata` last. A restore
//! fetches the checkpoint into `<dir>`, skipping files already there.
//!
//! Only `restore` knows this layout: it names each task's files and hands each task what
//! the restored checkpoint holds for it.

mod config;
pub(crate) mod coordinator;
mod metadata;
#[cfg(not(feature = "object-store"))]
mod no_remote;
#[cfg(feature = "object-store")]
mod remote;
pub(crate) mod restore;
pub(crate) mod stats;

#[cfg(not(feature = "object-store"))]
pub(crate) use no_remote::Remote;
#[cfg(feature = "object-store")]
pub(crate) use remote::Remote;

pub use config::{CheckpointConfig, RestoreFrom};
pub(crate) use metadata::{dir_name, load_checkpoint, restorable_checkpoints, METADATA};
pub use metadata::{
    CheckpointMetadata, OperatorState, SinkCommit, SplitPositionEntry, StateFile, StoredFile,
};
pub use stats::{CheckpointRecord, CheckpointsView};

/// A position in a split, as recorded in a checkpoint (JSON, source-specific).
pub type SplitPosition = serde_json::Value;
