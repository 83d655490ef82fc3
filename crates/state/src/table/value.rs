//! Value state: one `V` per key.

use super::kv::{decode, encode, take, victims, Backing, KvOp};
use super::{ErasedTable, NewTable};
use crate::snapshot::{decode_section, encode_sections, Section};
use crate::store::StateKind;
use crate::{Result, StateKey, StateValue};
use hashbrown::hash_map::RawEntryMut;
use hashbrown::HashMap;
use std::any::Any;

/// A cached entry of a backed table: `None` is a known absence (or a deletion).
pub(crate) struct Slot<V> {
    pub(crate) value: Option<V>,
    /// Changed since it was last written back.
    pub(crate) dirty: bool,
    /// Used since the last eviction pass.
    pub(crate) used: bool,
}

impl<V> Slot<V> {
    pub(crate) fn loaded(value: Option<V>) -> Self {
        Self {
            value,
            dirty: false,
            used: true,
        }
    }
}

/// `key -> V`.
pub(crate) enum ValueTable<K, V> {
    /// The map is the state.
    Memory(HashMap<K, V>),
    /// A write-behind cache over a store.
    Backed {
        cache: HashMap<K, Slot<V>>,
        b: Backing,
    },
}

impl<K, V> NewTable for ValueTable<K, V> {
    fn new_table(backing: Option<Backing>) -> Self {
        match backing {
            None => Self::Memory(HashMap::new()),
            Some(b) => Self::Backed {
                cache: HashMap::new(),
                b,
            },
        }
    }
}

impl<K: StateKey, V: StateValue> ValueTable<K, V> {
    /// The cached slot of `key`, loaded from the store on a miss.
    fn slot<'a>(
        cache: &'a mut HashMap<K, Slot<V>>,
        b: &Backing,
        key: &K,
    ) -> Result<&'a mut Slot<V>> {
        Ok(match cache.raw_entry_mut().from_key(key) {
            RawEntryMut::Occupied(e) => {
                let slot = e.into_mut();
                slot.used = true;
                slot
            }
            RawEntryMut::Vacant(e) => {
                let value = match b.store.get(&b.key(key)?)? {
                    Some(bytes) => Some(decode::<V>(&bytes)?),
                    None => None,
                };
                e.insert(key.clone(), Slot::loaded(value)).1
            }
        })
    }

    /// When the cache is full: evicts a quarter of it, writing back the victims that
    /// changed (and only those). Called on every access: the test is inlined, the
    /// eviction is not.
    #[inline]
    fn make_room(&mut self) -> Result<()> {
        match self {
            Self::Backed { cache, b } if cache.len() >= b.cache_capacity => self.evict(),
            _ => Ok(()),
        }
    }

    #[cold]
    #[inline(never)]
    fn evict(&mut self) -> Result<()> {
        let Self::Backed { cache, b } = self else {
            return Ok(());
        };
        let mut ops = Vec::new();
        for k in victims(cache, (b.cache_capacity / 4).max(1), |s| &mut s.used, |_| 1) {
            if let Some(slot) = cache.remove(&k) {
                if slot.dirty {
                    ops.push(slot_op(b, &k, &slot)?);
                }
            }
        }
        if ops.is_empty() {
            return Ok(());
        }
        b.store.write(ops)
    }

    pub(crate) fn get(&mut self, key: &K) -> Result<Option<&V>> {
        self.make_room()?;
        match self {
            Self::Memory(map) => Ok(map.get(key)),
            Self::Backed { cache, b } => Ok(Self::slot(cache, b, key)?.value.as_ref()),
        }
    }

    /// The value of `key` for changing in place (in backed mode it will be written back).
    pub(crate) fn get_mut(&mut self, key: &K) -> Result<Option<&mut V>> {
        self.make_room()?;
        match self {
            Self::Memory(map) => Ok(map.get_mut(key)),
            Self::Backed { cache, b } => {
                let slot = Self::slot(cache, b, key)?;
                slot.dirty |= slot.value.is_some();
                Ok(slot.value.as_mut())
            }
        }
    }

    /// Starts loading `key`'s entry into the CPU's caches if it is in memory (a hint:
    /// nothing is read from the store and nothing changes).
    pub(crate) fn prefetch(&self, key: &K) {
        match self {
            Self::Memory(map) => crate::hint::prefetch_entry(map, key),
            Self::Backed { cache, .. } => crate::hint::prefetch_entry(cache, key),
        }
    }

    /// The value of `key` if it is in memory now, without loading it from the store or
    /// marking it used: for prefetching what a value points to, never for results.
    pub(crate) fn peek(&self, key: &K) -> Option<&V> {
        match self {
            Self::Memory(map) => map.get(key),
            Self::Backed { cache, .. } => cache.get(key)?.value.as_ref(),
        }
    }

    /// The value of the entry in memory that is probably `key`'s, found by its hash tag
    /// without comparing keys ([`crate::hint::likely_entry`]): for prefetching what a
    /// value points to, never for results.
    pub(crate) fn likely(&self, key: &K) -> Option<&V> {
        match self {
            Self::Memory(map) => crate::hint::likely_entry(map, key).map(|(_, v)| v),
            Self::Backed { cache, .. } => {
                crate::hint::likely_entry(cache, key).and_then(|(_, s)| s.value.as_ref())
            }
        }
    }

    /// Keys in memory mode; 0 in backed mode (the store counts those).
    pub(crate) fn memory_keys(&self) -> u64 {
        match self {
            Self::Memory(map) => map.len() as u64,
            Self::Backed { .. } => 0,
        }
    }

    /// Heap bytes of the table's own structures (values' own heap data not included).
    pub(crate) fn approx_bytes(&self) -> u64 {
        let n = match self {
            Self::Memory(map) => map.capacity() * size_of::<(K, V)>(),
            Self::Backed { cache, .. } => cache.capacity() * size_of::<(K, Slot<V>)>(),
        };
        n as u64
    }

    pub(crate) fn get_or_insert_with(
        &mut self,
        key: &K,
        init: impl FnOnce() -> V,
    ) -> Result<&mut V> {
        self.get_or_replace_with(key, |_| false, init)
    }

    /// The value of `key` for changing in place, with one lookup: `init()` is inserted
    /// if there is none, and replaces the present one if `stale` says so.
    pub(crate) fn get_or_replace_with(
        &mut self,
        key: &K,
        stale: impl FnOnce(&V) -> bool,
        init: impl FnOnce() -> V,
    ) -> Result<&mut V> {
        self.make_room()?;
        match self {
            Self::Memory(map) => Ok(match map.raw_entry_mut().from_key(key) {
                RawEntryMut::Occupied(e) => {
                    let v = e.into_mut();
                    if stale(v) {
                        *v = init();
                    }
                    v
                }
                RawEntryMut::Vacant(e) => e.insert(key.clone(), init()).1,
            }),
            Self::Backed { cache, b } => {
                let slot = Self::slot(cache, b, key)?;
                // The caller may change the value through the reference.
                slot.dirty = true;
                if slot.value.as_ref().is_some_and(stale) {
                    slot.value = None;
                }
                Ok(slot.value.get_or_insert_with(init))
            }
        }
    }

    pub(crate) fn set(&mut self, key: &K, value: V) -> Result<()> {
        self.make_room()?;
        match self {
            Self::Memory(map) => match map.raw_entry_mut().from_key(key) {
                RawEntryMut::Occupied(mut e) => {
                    e.insert(value);
                }
                RawEntryMut::Vacant(e) => {
                    e.insert(key.clone(), value);
                }
            },
            // A blind write: no need to read the old value.
            Self::Backed { cache, .. } => {
                let slot = Slot {
                    value: Some(value),
                    dirty: true,
                    used: true,
                };
                match cache.raw_entry_mut().from_key(key) {
                    RawEntryMut::Occupied(mut e) => {
                        e.insert(slot);
                    }
                    RawEntryMut::Vacant(e) => {
                        e.insert(key.clone(), slot);
                    }
                }
            }
        }
        Ok(())
    }

    pub(crate) fn remove(&mut self, key: &K) -> Result<Option<V>> {
        self.make_room()?;
        match self {
            Self::Memory(map) => Ok(map.remove(key)),
            Self::Backed { cache, b } => {
                let slot = Self::slot(cache, b, key)?;
                let old = slot.value.take();
                slot.dirty |= old.is_some();
                Ok(old)
            }
        }
    }

    /// Backed mode: flushes, then calls `f` with the entries of each key group in the
    /// store. Memory mode has nothing in a store and calls nothing.
    fn for_each_group(&mut self, mut f: impl FnMut(Vec<(K, V)>) -> Result<()>) -> Result<()> {
        self.flush()?;
        match self {
            Self::Memory(_) => Ok(()),
            Self::Backed { b, .. } => {
                for group in 0..b.max_parallelism {
                    let mut entries = Vec::new();
                    b.store.scan_prefix(&b.prefix(group), &mut |k, v| {
                        let (key, _) = take::<K>(&k[4..])?;
                        entries.push((key, decode::<V>(v)?));
                        Ok(())
                    })?;
                    if !entries.is_empty() {
                        f(entries)?;
                    }
                }
                Ok(())
            }
        }
    }

    pub(crate) fn stats_with(&mut self, weight: impl Fn(&V) -> usize) -> Result<(usize, usize)> {
        if let Self::Memory(map) = self {
            return Ok((map.len(), map.values().map(&weight).sum()));
        }
        let (mut keys, mut entries) = (0, 0);
        self.for_each_group(|group| {
            keys += group.len();
            entries += group.iter().map(|(_, v)| weight(v)).sum::<usize>();
            Ok(())
        })?;
        Ok((keys, entries))
    }

    pub(crate) fn snapshot_as(
        &mut self,
        name: &str,
        kind: StateKind,
        type_name: &str,
        max: u16,
        out: &mut Vec<Section>,
    ) -> Result<()> {
        if let Self::Memory(map) = self {
            return encode_sections(name, kind, type_name, map.iter(), max, out);
        }
        self.for_each_group(|group| {
            encode_sections(
                name,
                kind,
                type_name,
                group.iter().map(|(k, v)| (k, v)),
                max,
                out,
            )
        })
    }

    pub(crate) fn restore_entries(&mut self, entries: Vec<(K, V)>) -> Result<()> {
        // Cached changes of restored keys must not be dropped below.
        self.flush()?;
        match self {
            Self::Memory(map) => {
                map.extend(entries);
                Ok(())
            }
            Self::Backed { cache, b } => {
                let mut ops = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    cache.remove(&k);
                    ops.push(KvOp::Put(b.key(&k)?, encode(&v)?));
                }
                b.store.write(ops)
            }
        }
    }

    pub(crate) fn flush(&mut self) -> Result<()> {
        let Self::Backed { cache, b } = self else {
            return Ok(());
        };
        let mut ops = Vec::new();
        for (k, slot) in cache.iter_mut().filter(|(_, s)| s.dirty) {
            ops.push(slot_op(b, k, slot)?);
            slot.dirty = false;
        }
        if ops.is_empty() {
            return Ok(());
        }
        b.store.write(ops)
    }
}

/// The write that brings the store up to date with a changed slot.
fn slot_op<K: StateKey, V: StateValue>(b: &Backing, key: &K, slot: &Slot<V>) -> Result<KvOp> {
    let key = b.key(key)?;
    Ok(match &slot.value {
        Some(v) => KvOp::Put(key, encode(v)?),
        None => KvOp::Delete(key),
    })
}

impl<K: StateKey, V: StateValue> ErasedTable for ValueTable<K, V> {
    fn kind(&self) -> StateKind {
        StateKind::Value
    }
    fn type_name(&self) -> &'static str {
        std::any::type_name::<(K, V)>()
    }
    fn stats(&mut self) -> Result<(usize, usize)> {
        self.stats_with(|_| 1)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn flush(&mut self) -> Result<()> {
        ValueTable::flush(self)
    }
    fn approx_bytes(&self) -> u64 {
        ValueTable::approx_bytes(self)
    }
    fn memory_keys(&self) -> u64 {
        ValueTable::memory_keys(self)
    }
    fn snapshot(&mut self, name: &str, max_parallelism: u16, out: &mut Vec<Section>) -> Result<()> {
        let type_name = self.type_name();
        self.snapshot_as(name, StateKind::Value, type_name, max_parallelism, out)
    }
    fn restore(&mut self, section: &Section) -> Result<()> {
        self.restore_entries(decode_section::<K, V>(section)?)
    }
}
