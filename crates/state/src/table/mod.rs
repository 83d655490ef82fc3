//! Typed tables, one per declared state. A table either holds its entries in typed hash
//! maps (memory mode) or is a typed write-behind cache over a byte-level [`KvStore`]
//! (backed mode, e.g. RocksDB).

mod expiring;
mod kv;
mod list;
mod map;
mod reducing;
mod value;

pub use expiring::ListIter;
pub(crate) use expiring::{Expiring, Sweep};
#[cfg(test)]
pub(crate) use kv::model::BTreeKv;
#[cfg(feature = "rocksdb")]
pub(crate) use kv::Visitor;
#[cfg(feature = "rocksdb")]
pub(crate) use kv::{prefix_end, sort_for_insert, KvOp};
pub(crate) use kv::{Backing, KvStore};
pub(crate) use list::ListTable;
pub(crate) use map::MapTable;
pub(crate) use reducing::{ReduceFn, ReducingTable};
pub(crate) use value::ValueTable;

use crate::snapshot::Section;
use crate::store::StateKind;
use crate::Result;
use std::any::Any;

/// Object-safe view of a typed table, for registration, statistics, flushes and
/// snapshots.
pub(crate) trait ErasedTable: Send {
    fn kind(&self) -> StateKind;
    fn type_name(&self) -> &'static str;
    /// (keys holding state, entries): one entry per value, map entry or list element.
    /// Exact; in backed mode this flushes and scans the store.
    fn stats(&mut self) -> Result<(usize, usize)>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// Writes every cached change to the backing store (no-op in memory mode).
    fn flush(&mut self) -> Result<()>;
    /// Appends one section per key group holding entries.
    fn snapshot(&mut self, name: &str, max_parallelism: u16, out: &mut Vec<Section>) -> Result<()>;
    /// Adds the entries of a section (written by `snapshot` of the same table type).
    fn restore(&mut self, section: &Section) -> Result<()>;
    /// Heap bytes of the table's in-memory structures (a cache, in backed mode).
    fn approx_bytes(&self) -> u64;
    /// Keys held in memory in memory mode (in backed mode the store counts them: 0).
    fn memory_keys(&self) -> u64;
    /// Removes expired entries; returns how many went. Only tables with a TTL have any.
    fn sweep(&mut self) -> Result<usize> {
        Ok(0)
    }
}

/// A fresh table of type `Self` in the given mode.
pub(crate) trait NewTable: Sized {
    fn new_table(backing: Option<Backing>) -> Self;
}
