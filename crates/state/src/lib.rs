//! Keyed state for ferroflow.
//!
//! Keyed state is partitioned into *key groups*: a key is hashed with a stable hash
//! ([`stable_hash`]) into one of `max_parallelism` key groups, and every worker owns a
//! contiguous range of them ([`KeyGroupRange`]). Because state is addressed by key group,
//! a job restored with another parallelism only reassigns ranges.
//!
//! Operators declare state once (usually in `open`) and get small `Copy` handles back:
//! [`ValueState`], [`MapState`], [`ListState`] and [`ReducingState`]. A handle is used with anything that
//! implements [`StateAccess`], which pairs a worker's [`KeyedStateStore`] with the key of
//! the record being processed; the runtime's keyed context does that, and so does
//! [`KeyScope`] for direct use.
//!
//! ```
//! use ferroflow_state::{KeyScope, MemoryBackend, StateBackend, StoreScope};
//!
//! # fn main() -> ferroflow_state::Result<()> {
//! let mut store = MemoryBackend.open_keyed_store(&StoreScope::single("counts"))?;
//! let count = store.value_state::<String, u64>("count")?;
//! for user in ["ann", "bob", "ann"] {
//!     let key = user.to_string();
//!     let mut cx = KeyScope::new(&mut store, &key);
//!     *count.get_or_insert_with(&mut cx, || 0)? += 1;
//! }
//! let ann = "ann".to_string();
//! assert_eq!(count.get(&mut KeyScope::new(&mut store, &ann))?, Some(&2));
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod backend;
mod error;
mod handle;
pub mod hint;
mod key_group;
#[cfg(test)]
mod model_tests;
pub mod native;
#[cfg(feature = "rocksdb")]
mod rocks;
mod snapshot;
mod store;
mod table;
mod ttl;
#[cfg(test)]
mod ttl_tests;
mod view;

pub use backend::{MemoryBackend, StateBackend, StoreScope};
pub use error::{Error, Result};
pub use handle::{KeyScope, ListState, MapState, ReducingState, StateAccess, ValueState};
pub use key_group::{
    key_group_for_key, stable_hash, worker_for_key_group, KeyGroup, KeyGroupRange, StableHasher,
    DEFAULT_MAX_PARALLELISM, MAX_MAX_PARALLELISM,
};
pub use native::PendingSnapshot;
#[cfg(feature = "rocksdb")]
pub use rocks::{RocksDbBackend, RocksDbConfig};
pub use snapshot::{decode_section, encode_sections, KeyedSnapshot, Section};
pub use store::{KeyedStateStore, StateDescriptor, StateKind, StateStats, TableStats};
pub use table::ListIter;
pub use ttl::{StateTtl, TtlTime, TtlUpdate};
pub use view::ValueView;

use serde::{de::DeserializeOwned, Serialize};
use std::hash::Hash;

/// A type usable as the key of keyed state (and of `key_by`).
///
/// Blanket-implemented for every type that is hashable, comparable, cloneable, sendable and
/// serde-serialisable. The serde bound is what lets state be written to checkpoints.
pub trait StateKey: Hash + Eq + Clone + Send + Serialize + DeserializeOwned + 'static {}
impl<T: Hash + Eq + Clone + Send + Serialize + DeserializeOwned + 'static> StateKey for T {}

/// A type storable as a state value. Blanket-implemented for sendable serde types.
pub trait StateValue: Send + Serialize + DeserializeOwned + 'static {}
impl<T: Send + Serialize + DeserializeOwned + 'static> StateValue for T {}
