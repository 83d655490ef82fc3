//! Map state: a map `UK -> V` per key.

use super::kv::{decode, encode, prefix_end, take, victims, Backing, KvOp};
use super::value::Slot;
use super::{ErasedTable, NewTable};
use crate::snapshot::{decode_section, encode_sections, Section};
use crate::store::StateKind;
use crate::{Result, StateKey, StateValue};
use hashbrown::hash_map::RawEntryMut;
use hashbrown::HashMap;
use std::any::Any;

/// The cached part of one key's map in backed mode.
pub(crate) struct MapSlot<UK, V> {
    key_bytes: Vec<u8>,
    pub(crate) entries: HashMap<UK, Slot<V>>,
    /// Every entry of the key is in `entries` (after a scan or a clear).
    complete: bool,
    /// The whole map was cleared: the store's entries go at the next flush.
    cleared: bool,
    /// Used since the last eviction pass.
    used: bool,
}

/// `key -> (user key -> V)`. Empty maps hold no entries.
pub(crate) enum MapTable<K, UK, V> {
    /// The maps are the state; empty inner maps are removed.
    Memory(HashMap<K, HashMap<UK, V>>),
    /// A write-behind cache over a store, entry by entry.
    Backed {
        cache: HashMap<K, MapSlot<UK, V>>,
        cached: usize,
        b: Backing,
    },
}

impl<K, UK, V> NewTable for MapTable<K, UK, V> {
    fn new_table(backing: Option<Backing>) -> Self {
        match backing {
            None => Self::Memory(HashMap::new()),
            Some(b) => Self::Backed {
                cache: HashMap::new(),
                cached: 0,
                b,
            },
        }
    }
}

impl<K: StateKey, UK: StateKey, V: StateValue> MapTable<K, UK, V> {
    /// When the cache is full: evicts whole keys' maps until a quarter of the cached
    /// entries are gone, writing back the changes of those maps (and only those).
    fn make_room(&mut self) -> Result<()> {
        let Self::Backed { cache, cached, b } = self else {
            return Ok(());
        };
        if *cached < b.cache_capacity {
            return Ok(());
        }
        let target = (b.cache_capacity / 4).max(1);
        let mut ops = Vec::new();
        // An empty slot still takes room: it weighs one.
        for k in victims(cache, target, |s| &mut s.used, |s| s.entries.len().max(1)) {
            if let Some(mut ms) = cache.remove(&k) {
                *cached = cached.saturating_sub(ms.entries.len());
                slot_ops(b, &mut ms, &mut ops)?;
            }
        }
        if ops.is_empty() {
            return Ok(());
        }
        b.store.write(ops)
    }

    fn map_slot<'a>(
        cache: &'a mut HashMap<K, MapSlot<UK, V>>,
        b: &Backing,
        key: &K,
    ) -> Result<&'a mut MapSlot<UK, V>> {
        Ok(match cache.raw_entry_mut().from_key(key) {
            RawEntryMut::Occupied(e) => {
                let slot = e.into_mut();
                slot.used = true;
                slot
            }
            RawEntryMut::Vacant(e) => {
                let slot = MapSlot {
                    key_bytes: b.key(key)?,
                    entries: HashMap::new(),
                    complete: false,
                    cleared: false,
                    used: true,
                };
                e.insert(key.clone(), slot).1
            }
        })
    }

    /// The cached entry of `user_key`, loaded from the store on a miss.
    fn entry<'a>(
        ms: &'a mut MapSlot<UK, V>,
        cached: &mut usize,
        b: &Backing,
        user_key: &UK,
    ) -> Result<&'a mut Slot<V>> {
        Ok(match ms.entries.raw_entry_mut().from_key(user_key) {
            RawEntryMut::Occupied(e) => e.into_mut(),
            RawEntryMut::Vacant(e) => {
                let value = if ms.complete {
                    None
                } else {
                    match b.store.get(&b.entry_key(&ms.key_bytes, user_key)?)? {
                        Some(bytes) => Some(decode::<V>(&bytes)?),
                        None => None,
                    }
                };
                *cached += 1;
                e.insert(user_key.clone(), Slot::loaded(value)).1
            }
        })
    }

    /// Loads every stored entry of the key into its slot.
    fn load_all(ms: &mut MapSlot<UK, V>, cached: &mut usize, b: &Backing) -> Result<()> {
        if ms.complete {
            return Ok(());
        }
        let prefix_len = ms.key_bytes.len();
        let entries = &mut ms.entries;
        b.store.scan_prefix(&ms.key_bytes, &mut |k, v| {
            let user_key: UK = decode(&k[prefix_len..])?;
            if !entries.contains_key(&user_key) {
                entries.insert(user_key, Slot::loaded(Some(decode(v)?)));
                *cached += 1;
            }
            Ok(())
        })?;
        ms.complete = true;
        Ok(())
    }

    pub(crate) fn get(&mut self, key: &K, user_key: &UK) -> Result<Option<&V>> {
        self.make_room()?;
        match self {
            Self::Memory(map) => Ok(map.get(key).and_then(|m| m.get(user_key))),
            Self::Backed { cache, cached, b } => {
                let ms = Self::map_slot(cache, b, key)?;
                Ok(Self::entry(ms, cached, b, user_key)?.value.as_ref())
            }
        }
    }

    /// The value under `user_key` for changing in place (written back in backed mode).
    pub(crate) fn get_mut(&mut self, key: &K, user_key: &UK) -> Result<Option<&mut V>> {
        self.make_room()?;
        match self {
            Self::Memory(map) => Ok(map.get_mut(key).and_then(|m| m.get_mut(user_key))),
            Self::Backed { cache, cached, b } => {
                let ms = Self::map_slot(cache, b, key)?;
                let slot = Self::entry(ms, cached, b, user_key)?;
                slot.dirty |= slot.value.is_some();
                Ok(slot.value.as_mut())
            }
        }
    }

    pub(crate) fn insert(&mut self, key: &K, user_key: UK, value: V) -> Result<Option<V>> {
        self.make_room()?;
        match self {
            Self::Memory(map) => {
                let inner = inner_map(map, key);
                Ok(inner.insert(user_key, value))
            }
            Self::Backed { cache, cached, b } => {
                let ms = Self::map_slot(cache, b, key)?;
                let slot = Self::entry(ms, cached, b, &user_key)?;
                slot.dirty = true;
                Ok(slot.value.replace(value))
            }
        }
    }

    pub(crate) fn get_or_insert_with(
        &mut self,
        key: &K,
        user_key: &UK,
        init: impl FnOnce() -> V,
    ) -> Result<&mut V> {
        self.make_room()?;
        match self {
            Self::Memory(map) => {
                let inner = inner_map(map, key);
                Ok(match inner.raw_entry_mut().from_key(user_key) {
                    RawEntryMut::Occupied(e) => e.into_mut(),
                    RawEntryMut::Vacant(e) => e.insert(user_key.clone(), init()).1,
                })
            }
            Self::Backed { cache, cached, b } => {
                let ms = Self::map_slot(cache, b, key)?;
                let slot = Self::entry(ms, cached, b, user_key)?;
                slot.dirty = true;
                Ok(slot.value.get_or_insert_with(init))
            }
        }
    }

    pub(crate) fn remove(&mut self, key: &K, user_key: &UK) -> Result<Option<V>> {
        self.make_room()?;
        match self {
            Self::Memory(map) => {
                let Some(inner) = map.get_mut(key) else {
                    return Ok(None);
                };
                let old = inner.remove(user_key);
                if inner.is_empty() {
                    map.remove(key);
                }
                Ok(old)
            }
            Self::Backed { cache, cached, b } => {
                let ms = Self::map_slot(cache, b, key)?;
                let slot = Self::entry(ms, cached, b, user_key)?;
                let old = slot.value.take();
                slot.dirty |= old.is_some();
                Ok(old)
            }
        }
    }

    /// The entries of the key's map, in no particular order.
    pub(crate) fn iter(&mut self, key: &K) -> Result<Box<dyn Iterator<Item = (&UK, &V)> + '_>> {
        self.make_room()?;
        match self {
            Self::Memory(map) => Ok(Box::new(map.get(key).into_iter().flat_map(|m| m.iter()))),
            Self::Backed { cache, cached, b } => {
                let ms = Self::map_slot(cache, b, key)?;
                Self::load_all(ms, cached, b)?;
                Ok(Box::new(
                    ms.entries
                        .iter()
                        .filter_map(|(k, s)| s.value.as_ref().map(|v| (k, v))),
                ))
            }
        }
    }

    pub(crate) fn clear(&mut self, key: &K) -> Result<()> {
        self.make_room()?;
        match self {
            Self::Memory(map) => {
                map.remove(key);
            }
            Self::Backed { cache, cached, b } => {
                let ms = Self::map_slot(cache, b, key)?;
                *cached -= ms.entries.len().min(*cached);
                ms.entries.clear();
                ms.complete = true;
                ms.cleared = true;
            }
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> Result<()> {
        let Self::Backed { cache, b, .. } = self else {
            return Ok(());
        };
        let mut ops = Vec::new();
        for ms in cache.values_mut() {
            slot_ops(b, ms, &mut ops)?;
        }
        if ops.is_empty() {
            return Ok(());
        }
        b.store.write(ops)
    }

    /// Backed mode: flushes, then calls `f` with each key group's maps from the store.
    fn for_each_group(
        &mut self,
        mut f: impl FnMut(Vec<(K, HashMap<UK, V>)>) -> Result<()>,
    ) -> Result<()> {
        self.flush()?;
        let Self::Backed { b, .. } = self else {
            return Ok(());
        };
        for group in 0..b.max_parallelism {
            let mut maps: Vec<(K, HashMap<UK, V>)> = Vec::new();
            let mut current: Option<Vec<u8>> = None;
            b.store.scan_prefix(&b.prefix(group), &mut |k, v| {
                let (key, rest) = take::<K>(&k[4..])?;
                let key_len = k.len() - rest.len();
                let user_key: UK = decode(rest)?;
                // Entries of one key are contiguous: start a new map when the key changes.
                if current.as_deref() != Some(&k[..key_len]) {
                    current = Some(k[..key_len].to_vec());
                    maps.push((key, HashMap::new()));
                }
                if let Some((_, m)) = maps.last_mut() {
                    m.insert(user_key, decode(v)?);
                }
                Ok(())
            })?;
            if !maps.is_empty() {
                f(maps)?;
            }
        }
        Ok(())
    }
}

/// Memory mode: the key's map, created empty if missing.
fn inner_map<'a, K: StateKey, UK, V>(
    map: &'a mut HashMap<K, HashMap<UK, V>>,
    key: &K,
) -> &'a mut HashMap<UK, V> {
    match map.raw_entry_mut().from_key(key) {
        RawEntryMut::Occupied(e) => e.into_mut(),
        RawEntryMut::Vacant(e) => e.insert(key.clone(), HashMap::new()).1,
    }
}

/// Appends the writes that bring the store up to date with one key's cached map, and
/// marks it clean.
fn slot_ops<UK: StateKey, V: StateValue>(
    b: &Backing,
    ms: &mut MapSlot<UK, V>,
    ops: &mut Vec<KvOp>,
) -> Result<()> {
    if ms.cleared {
        // Entries added after the clear are all dirty; none of them is in the store.
        ops.push(KvOp::DeleteRange(
            ms.key_bytes.clone(),
            prefix_end(&ms.key_bytes),
        ));
        ms.cleared = false;
    }
    for (uk, slot) in ms.entries.iter_mut().filter(|(_, s)| s.dirty) {
        let key = b.entry_key(&ms.key_bytes, uk)?;
        ops.push(match &slot.value {
            Some(v) => KvOp::Put(key, encode(v)?),
            None => KvOp::Delete(key),
        });
        slot.dirty = false;
    }
    Ok(())
}

impl<K: StateKey, UK: StateKey, V: StateValue> ErasedTable for MapTable<K, UK, V> {
    fn kind(&self) -> StateKind {
        StateKind::Map
    }
    fn type_name(&self) -> &'static str {
        std::any::type_name::<(K, UK, V)>()
    }
    fn stats(&mut self) -> Result<(usize, usize)> {
        if let Self::Memory(map) = self {
            return Ok((map.len(), map.values().map(HashMap::len).sum()));
        }
        let (mut keys, mut entries) = (0, 0);
        self.for_each_group(|maps| {
            keys += maps.len();
            entries += maps.iter().map(|(_, m)| m.len()).sum::<usize>();
            Ok(())
        })?;
        Ok((keys, entries))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn flush(&mut self) -> Result<()> {
        MapTable::flush(self)
    }
    fn memory_keys(&self) -> u64 {
        match self {
            Self::Memory(map) => map.values().map(|m| m.len() as u64).sum(),
            _ => 0,
        }
    }
    fn approx_bytes(&self) -> u64 {
        let n = match self {
            Self::Memory(map) => {
                map.capacity() * size_of::<(K, HashMap<UK, V>)>()
                    + map
                        .values()
                        .map(|m| m.capacity() * size_of::<(UK, V)>())
                        .sum::<usize>()
            }
            Self::Backed { cache, .. } => {
                cache.capacity() * size_of::<(K, MapSlot<UK, V>)>()
                    + cache
                        .values()
                        .map(|m| m.entries.capacity() * size_of::<(UK, Slot<V>)>())
                        .sum::<usize>()
            }
        };
        n as u64
    }
    fn snapshot(&mut self, name: &str, max_parallelism: u16, out: &mut Vec<Section>) -> Result<()> {
        let type_name = self.type_name();
        if let Self::Memory(map) = self {
            return encode_sections(
                name,
                StateKind::Map,
                type_name,
                map.iter(),
                max_parallelism,
                out,
            );
        }
        self.for_each_group(|maps| {
            encode_sections(
                name,
                StateKind::Map,
                type_name,
                maps.iter().map(|(k, m)| (k, m)),
                max_parallelism,
                out,
            )
        })
    }
    fn restore(&mut self, section: &Section) -> Result<()> {
        // Cached changes of restored keys must not be dropped below.
        self.flush()?;
        for (k, entries) in decode_section::<K, HashMap<UK, V>>(section)? {
            match self {
                Self::Memory(map) => map.entry(k).or_default().extend(entries),
                Self::Backed { cache, cached, b } => {
                    if let Some(ms) = cache.remove(&k) {
                        *cached -= ms.entries.len().min(*cached);
                    }
                    let key_bytes = b.key(&k)?;
                    let mut ops = Vec::with_capacity(entries.len());
                    for (uk, v) in entries {
                        ops.push(KvOp::Put(b.entry_key(&key_bytes, &uk)?, encode(&v)?));
                    }
                    b.store.write(ops)?;
                }
            }
        }
        Ok(())
    }
}
