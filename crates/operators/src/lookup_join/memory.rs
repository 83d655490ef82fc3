//! A dimension table in memory: for tests, examples, and tables the job itself fills.

use super::{LookupKey, LookupSource, TableSource};
use ferroflow_core::Result;
use parking_lot::RwLock;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A table in memory that changes while a job runs: a handle to clone and keep, both a
/// [`LookupSource`] and a [`TableSource`]. It counts the requests it answers, and can
/// take a while to answer, like a store across a network.
#[derive(Debug)]
pub struct MemoryTable<K, V> {
    inner: Arc<Inner<K, V>>,
}

#[derive(Debug)]
struct Inner<K, V> {
    rows: RwLock<HashMap<K, V>>,
    /// Changes with every write (the table's version).
    generation: AtomicU64,
    requests: AtomicU64,
    keys: AtomicU64,
    latency: RwLock<Duration>,
}

impl<K, V> Clone for MemoryTable<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: LookupKey, V: Clone + Serialize + Send + Sync + 'static> Default for MemoryTable<K, V> {
    fn default() -> Self {
        Self::new(std::iter::empty())
    }
}

impl<K: LookupKey, V: Clone + Serialize + Send + Sync + 'static> MemoryTable<K, V> {
    /// A table of `rows`.
    pub fn new(rows: impl IntoIterator<Item = (K, V)>) -> Self {
        Self {
            inner: Arc::new(Inner {
                rows: RwLock::new(rows.into_iter().collect()),
                generation: AtomicU64::new(0),
                requests: AtomicU64::new(0),
                keys: AtomicU64::new(0),
                latency: RwLock::new(Duration::ZERO),
            }),
        }
    }

    /// Adds or replaces a row.
    pub fn insert(&self, key: K, value: V) {
        self.inner.rows.write().insert(key, value);
        self.inner.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes a row.
    pub fn remove(&self, key: &K) {
        self.inner.rows.write().remove(key);
        self.inner.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Rows in the table.
    pub fn len(&self) -> usize {
        self.inner.rows.read().len()
    }

    /// True when the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every answer (and every load) takes this long from now on.
    pub fn set_latency(&self, latency: Duration) {
        *self.inner.latency.write() = latency;
    }

    /// Lookup requests answered so far, and the keys they asked for.
    pub fn requests(&self) -> (u64, u64) {
        (
            self.inner.requests.load(Ordering::Relaxed),
            self.inner.keys.load(Ordering::Relaxed),
        )
    }

    async fn wait(&self) {
        let latency = *self.inner.latency.read();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }
}

impl<K: LookupKey, V: Clone + Serialize + Send + Sync + 'static> LookupSource
    for MemoryTable<K, V>
{
    type Key = K;
    type Value = V;

    async fn lookup(&self, keys: &[K]) -> Result<Vec<Option<V>>> {
        self.wait().await;
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        self.inner
            .keys
            .fetch_add(keys.len() as u64, Ordering::Relaxed);
        let rows = self.inner.rows.read();
        Ok(keys.iter().map(|k| rows.get(k).cloned()).collect())
    }

    fn name(&self) -> String {
        "memory".into()
    }
}

impl<K: LookupKey, V: Clone + Serialize + Send + Sync + 'static> TableSource for MemoryTable<K, V> {
    type Key = K;
    type Value = V;

    async fn load_all(&self) -> Result<Vec<(K, V)>> {
        self.load_where(&|_| true).await
    }

    /// Copies only the rows kept.
    async fn load_where(&self, keep: &(dyn Fn(&K) -> bool + Send + Sync)) -> Result<Vec<(K, V)>> {
        self.wait().await;
        let rows = self.inner.rows.read();
        // Which rows are kept, decided once per row; then the share is copied once into
        // a vector of its size (growing one instead would hold the old and the new copy
        // at once, time after time), on huge pages as the table will be.
        let kept: Vec<bool> = rows.keys().map(keep).collect();
        let mut share =
            super::rows::with_capacity_on_huge_pages(kept.iter().filter(|&&k| k).count());
        share.extend(
            rows.iter()
                .zip(&kept)
                .filter(|(_, &k)| k)
                .map(|((k, v), _)| (k.clone(), v.clone())),
        );
        Ok(share)
    }

    async fn version(&self) -> Result<Option<String>> {
        Ok(Some(
            self.inner.generation.load(Ordering::Relaxed).to_string(),
        ))
    }

    fn name(&self) -> String {
        "memory".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_copies_only_the_rows_kept() {
        let table = MemoryTable::new((0..100u64).map(|k| (k, k * 10)));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut share = rt.block_on(table.load_where(&|k| k % 3 == 0)).unwrap();
        share.sort_unstable();
        assert_eq!(
            share,
            (0..100).step_by(3).map(|k| (k, k * 10)).collect::<Vec<_>>()
        );
        assert_eq!(rt.block_on(table.load_all()).unwrap().len(), 100);
    }
}
