//! State backends: where a worker's keyed state lives.

use crate::{KeyGroupRange, KeyedSnapshot, KeyedStateStore, Result, DEFAULT_MAX_PARALLELISM};
use std::fmt;
use std::path::Path;

/// Where one keyed store belongs: which operator, which worker, which key groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreScope {
    /// Name of the operator that owns the state.
    pub operator: String,
    /// Index of the worker (0-based).
    pub worker: usize,
    /// Number of workers running the operator.
    pub parallelism: usize,
    /// Number of key groups.
    pub max_parallelism: u16,
    /// Key groups this worker owns.
    pub key_groups: KeyGroupRange,
}

impl StoreScope {
    /// Scope of the worker `worker` of `parallelism`, owning its share of `max_parallelism`
    /// key groups.
    pub fn new(
        operator: impl Into<String>,
        worker: usize,
        parallelism: usize,
        max_parallelism: u16,
    ) -> Self {
        Self {
            operator: operator.into(),
            worker,
            parallelism,
            max_parallelism,
            key_groups: KeyGroupRange::for_worker(max_parallelism, parallelism, worker),
        }
    }

    /// A scope owning every key group: one worker, default max parallelism.
    pub fn single(operator: impl Into<String>) -> Self {
        Self::new(operator, 0, 1, DEFAULT_MAX_PARALLELISM)
    }
}

/// A state backend opens, for each worker of each keyed operator, the store that holds
/// that worker's keyed state.
///
/// Operators see only typed handles; a backend decides where the data lives and how it is
/// made durable. [`MemoryBackend`] keeps everything in typed hash maps on the heap (the
/// equivalent of Flink's `hashmap` backend): fastest, bounded by memory.
pub trait StateBackend: Send + Sync + fmt::Debug + 'static {
    /// Short name for logs and metrics, e.g. `"memory"`.
    fn name(&self) -> &'static str;

    /// Opens the keyed store of one worker of one operator.
    ///
    /// # Errors
    /// When the backend cannot provide storage for the scope.
    fn open_keyed_store(&self, scope: &StoreScope) -> Result<KeyedStateStore>;

    /// Opens the keyed store of one worker with restored state: the snapshots of every
    /// worker of the previous run that overlap this worker's key groups, whose files
    /// (native snapshots) are under the checkpoint root `root`. By default the store is
    /// opened empty and each snapshot's sections restored into it; a snapshot taken
    /// natively is restored only by the backend that took it.
    ///
    /// # Errors
    /// When a snapshot does not fit the declared states, is damaged, or is native to
    /// another backend.
    fn restore_keyed_store(
        &self,
        scope: &StoreScope,
        snapshots: Vec<KeyedSnapshot>,
        root: &Path,
    ) -> Result<KeyedStateStore> {
        let _ = root;
        let mut store = self.open_keyed_store(scope)?;
        for s in snapshots {
            store.restore(s)?;
        }
        Ok(store)
    }
}

/// Keeps keyed state in typed hash maps on the heap. No serialisation on access.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryBackend;

impl StateBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn open_keyed_store(&self, scope: &StoreScope) -> Result<KeyedStateStore> {
        Ok(KeyedStateStore::in_memory(scope.clone()))
    }
}
