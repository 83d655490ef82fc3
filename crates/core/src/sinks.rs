//! Built-in sinks for tests, examples and benchmarks.

use crate::{Result, Sink};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Collects every record in memory, shared by all its clones (so all workers' output ends
/// up in one place). For tests and small jobs.
///
/// ```
/// # use ferroflow_core::{StreamEnvironment, sinks::CollectSink};
/// # fn main() -> ferroflow_core::Result<()> {
/// let env = StreamEnvironment::local(2);
/// let out = CollectSink::new();
/// env.from_iter(vec![3, 1, 2]).sink(out.clone());
/// env.execute()?;
/// assert_eq!(out.sorted(), vec![1, 2, 3]);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct CollectSink<T> {
    items: Arc<Mutex<Vec<T>>>,
}

impl<T> Clone for CollectSink<T> {
    fn clone(&self) -> Self {
        Self {
            items: Arc::clone(&self.items),
        }
    }
}

impl<T> Default for CollectSink<T> {
    fn default() -> Self {
        Self {
            items: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl<T> CollectSink<T> {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of records collected so far.
    pub fn len(&self) -> usize {
        self.items.lock().len()
    }

    /// Whether nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes every record collected so far.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.items.lock())
    }

    /// A copy of the records, sorted (the order across workers is not deterministic).
    pub fn sorted(&self) -> Vec<T>
    where
        T: Ord + Clone,
    {
        let mut v = self.items.lock().clone();
        v.sort();
        v
    }
}

impl<T: Send + 'static> Sink<T> for CollectSink<T> {
    fn name(&self) -> String {
        "collect".into()
    }

    fn write(&mut self, batch: Vec<T>) -> Result<()> {
        self.items.lock().extend(batch);
        Ok(())
    }
}

/// Drops every record, counting them. For benchmarks.
#[derive(Debug, Clone, Default)]
pub struct DiscardSink {
    count: Arc<AtomicU64>,
}

impl DiscardSink {
    /// A new sink with a zero count.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records dropped so far, over all clones.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl<T: Send + 'static> Sink<T> for DiscardSink {
    fn name(&self) -> String {
        "discard".into()
    }

    fn write(&mut self, batch: Vec<T>) -> Result<()> {
        self.count.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}
