//! The byte-level store under backed tables, and the key layout in it.

use crate::{key_group_for_key, Error, Result};
use serde::Serialize;
use std::sync::Arc;

/// One change in a write batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KvOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    /// Deletes every key in `[from, to)`.
    DeleteRange(Vec<u8>, Vec<u8>),
}

/// Called on each entry of a scan with its key and value.
pub(crate) type Visitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'a;

/// A sorted byte-level key-value store (RocksDB, or a `BTreeMap` in tests).
pub(crate) trait KvStore: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Applies the operations atomically, in order.
    fn write(&self, ops: Vec<KvOp>) -> Result<()>;
    /// Calls `f` on every entry whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8], f: &mut Visitor<'_>) -> Result<()>;
    /// Bytes the store takes (on disk and in write buffers), as far as it can tell.
    fn approximate_bytes(&self) -> Result<u64>;
    /// Entries the store holds, as far as it can tell cheaply.
    fn approximate_keys(&self) -> Result<u64> {
        Ok(0)
    }
    /// Writes a native snapshot of the store's current contents (see [`crate::native`]):
    /// returns the store's id and the files, or `None` if the store has no native format.
    fn native_checkpoint(
        &self,
        target: &crate::native::NativeTarget,
    ) -> Result<Option<(String, Vec<crate::native::NativeFile>)>> {
        let _ = target;
        Ok(None)
    }
    /// Writes a native snapshot after `write_back` has written the caches back, and may
    /// finish it in the background: a store that does holds the write-back's writes
    /// until `write_back` returns, applies them and writes the snapshot on another
    /// thread, and makes every later call wait for that thread, so that the snapshot
    /// holds exactly what was written before it and nothing after. `None` if the store
    /// has no native format (the write-back is done then).
    fn native_checkpoint_in_background(
        &self,
        write_back: &mut dyn FnMut() -> Result<()>,
        target: &crate::native::NativeTarget,
    ) -> Result<Option<crate::native::PendingNative>> {
        write_back()?;
        Ok(self
            .native_checkpoint(target)?
            .map(|done| crate::native::PendingNative::Ready(Ok(done))))
    }
    /// Compacts the whole store, dropping deleted and filtered entries.
    fn compact(&self) -> Result<()> {
        Ok(())
    }
}

/// Puts a large batch of puts and deletes in key order, keeping the order of operations
/// on the same key (the sort is stable), so that the result of applying the batch does
/// not change. A sorted-list write buffer (RocksDB's skiplist) then inserts each key next
/// to the previous one instead of searching from the top: a write-back of tens of
/// thousands of scattered cache entries takes a fraction of the time. Batches with a
/// range deletion, and small ones, are left as they are.
#[cfg_attr(not(feature = "rocksdb"), allow(dead_code))]
pub(crate) fn sort_for_insert(ops: &mut [KvOp]) {
    /// Below this many operations a sort saves less than it costs.
    const MIN: usize = 64;
    if ops.len() < MIN || ops.iter().any(|op| matches!(op, KvOp::DeleteRange(..))) {
        return;
    }
    ops.sort_by(|a, b| a.key().cmp(b.key()));
}

impl KvOp {
    /// The key a put or delete changes (a range deletion: the start of its range).
    #[cfg_attr(not(feature = "rocksdb"), allow(dead_code))]
    fn key(&self) -> &[u8] {
        match self {
            Self::Put(k, _) | Self::Delete(k) | Self::DeleteRange(k, _) => k,
        }
    }
}

/// What a sweep does with one stored entry.
pub(crate) enum SweepAction {
    Keep,
    Delete,
    /// Replace the value (some of a list's elements expired).
    Rewrite(Vec<u8>),
}

/// Visits every stored entry of a table and applies `decide`, one key group per write
/// batch. Returns how many entries were deleted.
pub(crate) fn sweep_store(
    b: &Backing,
    mut decide: impl FnMut(&[u8]) -> Result<SweepAction>,
) -> Result<usize> {
    let mut deleted = 0;
    for group in 0..b.max_parallelism {
        let mut ops = Vec::new();
        b.store.scan_prefix(&b.prefix(group), &mut |k, v| {
            match decide(v)? {
                SweepAction::Keep => {}
                SweepAction::Delete => {
                    deleted += 1;
                    ops.push(KvOp::Delete(k.to_vec()));
                }
                SweepAction::Rewrite(value) => ops.push(KvOp::Put(k.to_vec(), value)),
            }
            Ok(())
        })?;
        if !ops.is_empty() {
            b.store.write(ops)?;
        }
    }
    Ok(deleted)
}

/// Where a backed table keeps its entries.
#[derive(Clone)]
pub(crate) struct Backing {
    pub(crate) store: Arc<dyn KvStore>,
    pub(crate) state_id: u16,
    pub(crate) max_parallelism: u16,
    /// Cached entries after which the cache is written back and emptied.
    pub(crate) cache_capacity: usize,
}

/// Key layout: `[key group u16 BE][state id u16 BE][postcard(key)][postcard(user key)]`.
/// postcard encodings are self-delimiting, so one key's encoding is never a prefix of
/// another's, and each (key group, state) is one contiguous range.
impl Backing {
    pub(crate) fn prefix(&self, key_group: u16) -> [u8; 4] {
        let g = key_group.to_be_bytes();
        let s = self.state_id.to_be_bytes();
        [g[0], g[1], s[0], s[1]]
    }

    pub(crate) fn key<K: Serialize + std::hash::Hash>(&self, key: &K) -> Result<Vec<u8>> {
        let group = key_group_for_key(key, self.max_parallelism).0;
        let buf = self.prefix(group).to_vec();
        postcard::to_extend(key, buf)
            .map_err(|e| Error::Codec(format!("encoding a state key: {e}")))
    }

    pub(crate) fn entry_key<UK: Serialize>(
        &self,
        key_bytes: &[u8],
        user_key: &UK,
    ) -> Result<Vec<u8>> {
        postcard::to_extend(user_key, key_bytes.to_vec())
            .map_err(|e| Error::Codec(format!("encoding a map key: {e}")))
    }
}

/// Picks cache entries to evict until `target` weight is chosen, second-chance style: an
/// entry used since the last pass (`mark` set) loses its mark and is taken only if the
/// unmarked entries do not reach `target`. Returns the victims' keys.
pub(crate) fn victims<K: Clone, S>(
    cache: &mut hashbrown::HashMap<K, S>,
    target: usize,
    mark: impl Fn(&mut S) -> &mut bool,
    weight: impl Fn(&S) -> usize,
) -> Vec<K> {
    let mut chosen = Vec::new();
    let mut chosen_weight = 0;
    let mut second_chance: Vec<(K, usize)> = Vec::new();
    let mut second_weight = 0;
    for (k, s) in cache.iter_mut() {
        if chosen_weight >= target {
            break;
        }
        let w = weight(s);
        let m = mark(s);
        if *m {
            *m = false;
            if chosen_weight + second_weight < target {
                second_weight += w;
                second_chance.push((k.clone(), w));
            }
        } else {
            chosen_weight += w;
            chosen.push(k.clone());
        }
    }
    for (k, w) in second_chance {
        if chosen_weight >= target {
            break;
        }
        chosen_weight += w;
        chosen.push(k);
    }
    chosen
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| Error::Codec(format!("encoding a state value: {e}")))
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| Error::Codec(format!("decoding a state value: {e}")))
}

/// Splits `bytes` into a decoded `T` and the rest.
pub(crate) fn take<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<(T, &[u8])> {
    postcard::take_from_bytes(bytes).map_err(|e| Error::Codec(format!("decoding a state key: {e}")))
}

/// The smallest key greater than every key starting with `prefix`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

/// An in-memory sorted store: the model backed tables are tested against.
#[cfg(test)]
pub(crate) mod model {
    use super::{prefix_end, KvOp, KvStore, Visitor};
    use crate::Result;
    use std::collections::BTreeMap;
    use std::sync::{Mutex, MutexGuard, PoisonError};

    #[derive(Default)]
    pub(crate) struct BTreeKv(Mutex<BTreeMap<Vec<u8>, Vec<u8>>>);

    impl BTreeKv {
        fn map(&self) -> MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    impl KvStore for BTreeKv {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            Ok(self.map().get(key).cloned())
        }
        fn write(&self, ops: Vec<KvOp>) -> Result<()> {
            let mut m = self.map();
            for op in ops {
                match op {
                    KvOp::Put(k, v) => {
                        m.insert(k, v);
                    }
                    KvOp::Delete(k) => {
                        m.remove(&k);
                    }
                    KvOp::DeleteRange(from, to) => {
                        let doomed: Vec<Vec<u8>> =
                            m.range(from..to).map(|(k, _)| k.clone()).collect();
                        for k in doomed {
                            m.remove(&k);
                        }
                    }
                }
            }
            Ok(())
        }
        fn scan_prefix(&self, prefix: &[u8], f: &mut Visitor<'_>) -> Result<()> {
            let m = self.map();
            for (k, v) in m.range(prefix.to_vec()..prefix_end(prefix)) {
                f(k, v)?;
            }
            Ok(())
        }
        fn approximate_bytes(&self) -> Result<u64> {
            Ok(self
                .map()
                .iter()
                .map(|(k, v)| (k.len() + v.len()) as u64)
                .sum())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{sort_for_insert, KvOp};

    fn put(k: u8, v: u8) -> KvOp {
        KvOp::Put(vec![k], vec![v])
    }

    #[test]
    fn large_batches_are_sorted_keeping_the_order_per_key() {
        // Keys 99, 98, ..., 0, then a second write of key 7 and a delete of key 3.
        let mut ops: Vec<KvOp> = (0..100).rev().map(|k| put(k, 0)).collect();
        ops.push(put(7, 1));
        ops.push(KvOp::Delete(vec![3]));
        sort_for_insert(&mut ops);
        let keys: Vec<u8> = ops.iter().map(|op| op.key()[0]).collect();
        assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{keys:?}");
        // The later operation on a key still comes after the earlier one.
        assert_eq!(ops[3], put(3, 0));
        assert_eq!(ops[4], KvOp::Delete(vec![3]));
        assert_eq!(ops[8], put(7, 0));
        assert_eq!(ops[9], put(7, 1));
    }

    #[test]
    fn small_batches_and_range_deletions_keep_their_order() {
        let mut small: Vec<KvOp> = (0..10).rev().map(|k| put(k, 0)).collect();
        let before = small.clone();
        sort_for_insert(&mut small);
        assert_eq!(small, before);
        let mut ranged: Vec<KvOp> = (0..100).rev().map(|k| put(k, 0)).collect();
        ranged.push(KvOp::DeleteRange(vec![0], vec![50]));
        let before = ranged.clone();
        sort_for_insert(&mut ranged);
        assert_eq!(ranged, before);
    }
}
