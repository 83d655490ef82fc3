//! Tables of states declared with a TTL: their values are [`Stamped`], reads skip and drop
//! expired values, and sweeps remove the expired values nobody reads.

use super::kv::{decode, encode, sweep_store, SweepAction};
use super::{ErasedTable, ListTable, MapTable, ReducingTable, ValueTable};
use crate::snapshot::Section;
use crate::store::StateKind;
use crate::ttl::{stored_stamp, Stamped, TtlClock, TtlRegistry, TtlSpec};
use crate::{Result, StateKey, StateValue};
use hashbrown::HashMap;
use std::any::Any;
use std::sync::Arc;

/// Removal of expired entries, for tables whose values are stamped.
pub(crate) trait Sweep {
    /// Removes every expired entry; returns how many went.
    fn sweep(&mut self, spec: &TtlSpec, clock: &TtlClock) -> Result<usize>;
}

/// A table with a TTL: the typed table (reached through `as_any`, so handles downcast to
/// it as to any table) plus what its sweeps need.
pub(crate) struct Expiring<T> {
    pub(crate) inner: T,
    pub(crate) spec: TtlSpec,
    pub(crate) registry: Arc<TtlRegistry>,
}

impl<T: ErasedTable + Sweep + 'static> ErasedTable for Expiring<T> {
    fn kind(&self) -> StateKind {
        self.inner.kind()
    }
    fn type_name(&self) -> &'static str {
        self.inner.type_name()
    }
    fn stats(&mut self) -> Result<(usize, usize)> {
        self.inner.stats()
    }
    fn as_any(&self) -> &dyn Any {
        self.inner.as_any()
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self.inner.as_any_mut()
    }
    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }
    fn snapshot(&mut self, name: &str, max_parallelism: u16, out: &mut Vec<Section>) -> Result<()> {
        self.inner.snapshot(name, max_parallelism, out)
    }
    fn restore(&mut self, section: &Section) -> Result<()> {
        self.inner.restore(section)
    }
    fn approx_bytes(&self) -> u64 {
        self.inner.approx_bytes()
    }
    fn memory_keys(&self) -> u64 {
        self.inner.memory_keys()
    }
    fn sweep(&mut self) -> Result<usize> {
        Sweep::sweep(&mut self.inner, &self.spec, &self.registry.clock)
    }
}

/// Memory mode gives memory back once a sweep has emptied most of a map.
fn shrink<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 64 && map.capacity() > 4 * map.len() {
        map.shrink_to_fit();
    }
}

/// Sweep decision for a stored value that starts with its stamp.
fn stamped_entry(bytes: &[u8], spec: &TtlSpec, clock: &TtlClock) -> SweepAction {
    match stored_stamp(bytes) {
        Some(at) if spec.expired(at, clock) => SweepAction::Delete,
        _ => SweepAction::Keep,
    }
}

impl<K: StateKey, V: StateValue> ValueTable<K, Stamped<V>> {
    /// Drops the key's value if it has expired; whether a live value remains.
    fn live(&mut self, key: &K, spec: &TtlSpec, clock: &TtlClock) -> Result<bool> {
        match self.get(key)? {
            None => Ok(false),
            Some(s) if spec.expired(s.at, clock) => {
                self.remove(key)?;
                Ok(false)
            }
            Some(_) => Ok(true),
        }
    }

    pub(crate) fn ttl_get(
        &mut self,
        key: &K,
        spec: &TtlSpec,
        clock: &TtlClock,
    ) -> Result<Option<&V>> {
        if !self.live(key, spec, clock)? {
            return Ok(None);
        }
        if spec.refresh_on_read() {
            let at = spec.stamp(clock);
            return Ok(self.get_mut(key)?.map(|s| {
                s.at = at;
                &s.value
            }));
        }
        Ok(self.get(key)?.map(|s| &s.value))
    }

    pub(crate) fn ttl_set(
        &mut self,
        key: &K,
        value: V,
        spec: &TtlSpec,
        clock: &TtlClock,
    ) -> Result<()> {
        let at = spec.stamp(clock);
        self.set(key, Stamped { at, value })
    }

    pub(crate) fn ttl_get_or_insert_with(
        &mut self,
        key: &K,
        init: impl FnOnce() -> V,
        spec: &TtlSpec,
        clock: &TtlClock,
    ) -> Result<&mut V> {
        let at = spec.stamp(clock);
        // One lookup: an expired value is replaced as if it were absent.
        let s = self.get_or_replace_with(
            key,
            |s| spec.expired(s.at, clock),
            || Stamped { at, value: init() },
        )?;
        // Handing out a mutable reference counts as a write.
        s.at = at;
        Ok(&mut s.value)
    }

    pub(crate) fn ttl_remove(
        &mut self,
        key: &K,
        spec: &TtlSpec,
        clock: &TtlClock,
    ) -> Result<Option<V>> {
        Ok(self
            .remove(key)?
            .filter(|s| !spec.expired(s.at, clock))
            .map(|s| s.value))
    }
}

impl<K: StateKey, V: StateValue> Sweep for ValueTable<K, Stamped<V>> {
    fn sweep(&mut self, spec: &TtlSpec, clock: &TtlClock) -> Result<usize> {
        if let Self::Memory(map) = self {
            let before = map.len();
            map.retain(|_, s| !spec.expired(s.at, clock));
            let removed = before - map.len();
            shrink(map);
            return Ok(removed);
        }
        // Write every change back; the cache is then a clean copy and can be dropped, so
        // the store alone is swept.
        self.flush()?;
        let Self::Backed { cache, b } = self else {
            return Ok(0);
        };
        *cache = HashMap::new();
        sweep_store(b, |v| Ok(stamped_entry(v, spec, clock)))
    }
}

impl<K: StateKey, UK: StateKey, V: StateValue> MapTable<K, UK, Stamped<V>> {
    fn live(&mut self, key: &K, user_key: &UK, spec: &TtlSpec, clock: &TtlClock) -> Result<bool> {
        match self.get(key, user_key)? {
            None => Ok(false),
            Some(s) if spec.expired(s.at, clock) => {
                self.remove(key, user_key)?;
                Ok(false)
            }
            Some(_) => Ok(true),
        }
    }

    pub(crate) fn ttl_get(
        &mut self,
        key: &K,
        user_key: &UK,
        spec: &TtlSpec,
        clock: &TtlClock,
    ) -> Result<Option<&V>> {
        if !self.live(key, user_key, spec, clock)? {
            return Ok(None);
        }
        if spec.refresh_on_read() {
            let at = spec.stamp(clock);
            return Ok(self.get_mut(key, user_key)?.map(|s| {
                s.at = at;
                &s.value
            }));
        }
        Ok(self.get(key, user_key)?.map(|s| &s.value))
    }

    pub(crate) fn ttl_insert(
        &mut self,
        key: &K,
        user_key: UK,
        value: V,
        spec: &TtlSpec,
        clock: &TtlClock,
    ) -> Result<Option<V>> {
        let at = spec.stamp(clock);
        Ok(self
            .insert(key, user_key, Stamped { at, value })?
            .filter(|s| !spec.expired(s.at, clock))
            .map(|s| s.value))
    }

    pub(crate) fn ttl_get_or_insert_with(
        &mut self,
        key: &K,
        user_key: &UK,
        init: impl FnOnce() -> V,
        spec: &TtlSpec,
        clock: &TtlClock,
    ) -> Result<&mut V> {
        self.live(key, user_key, spec, clock)?;
        let at = spec.stamp(clock);
        let s = self.get_or_insert_with(key, user_key, || Stamped { at, value: init() })?;
        s.at = at;
        Ok(&mut s.value)
    }

    pub(crate) fn ttl_remove(
        &mut self,
        key: &K,
        user_key: &UK,
        spec: &TtlSpec,
        clock: &TtlClock,
    ) -> Result<Option<V>> {
        Ok(self
            .remove(key, user_key)?
            .filter(|s| !spec.expired(s.at, clock))
            .map(|s| s.value))
    }

    /// The live entries of the key's map (iterating does not restart TTLs).
    pub(crate) fn ttl_iter<'a>(
        &'a mut self,
        key: &K,
        spec: TtlSpec,
        clock: &'a TtlClock,
    ) -> Result<Box<dyn Iterator<Item = (&'a UK, &'a V)> + 'a>> {
        Ok(Box::new(
            self.iter(key)?
                .filter(move |(_, s)| !spec.expired(s.at, clock))
                .map(|(k, s)| (k, &s.value)),
        ))
    }
}

impl<K: StateKey, UK: StateKey, V: StateValue> Sweep for MapTable<K, UK, Stamped<V>> {
    fn sweep(&mut self, spec: &TtlSpec, clock: &TtlClock) -> Result<usize> {
        if let Self::Memory(map) = self {
            let mut removed = 0;
            map.retain(|_, inner| {
                let before = inner.len();
                inner.retain(|_, s| !spec.expired(s.at, clock));
                removed += before - inner.len();
                shrink(inner);
                !inner.is_empty()
            });
            shrink(map);
            return Ok(removed);
        }
        self.flush()?;
        let Self::Backed { cache, cached, b } = self else {
            return Ok(0);
        };
        *cache = HashMap::new();
        *cached = 0;
        sweep_store(b, |v| Ok(stamped_entry(v, spec, clock)))
    }
}

/// The elements of a list state.
pub struct ListIter<'a, V>(ListElems<'a, V>);

enum ListElems<'a, V> {
    Plain(std::slice::Iter<'a, V>),
    Stamped(std::slice::Iter<'a, Stamped<V>>),
}

impl<'a, V> ListIter<'a, V> {
    pub(crate) fn plain(values: &'a [V]) -> Self {
        Self(ListElems::Plain(values.iter()))
    }
}

impl<'a, V> Iterator for ListIter<'a, V> {
    type Item = &'a V;
    fn next(&mut self) -> Option<&'a V> {
        match &mut self.0 {
            ListElems::Plain(it) => it.next(),
            ListElems::Stamped(it) => it.next().map(|s| &s.value),
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.0 {
            ListElems::Plain(it) => it.size_hint(),
            ListElems::Stamped(it) => it.size_hint(),
        }
    }
}

impl<V> ExactSizeIterator for ListIter<'_, V> {}

impl<K: StateKey, V: StateValue> ListTable<K, Stamped<V>> {
    /// The key's live elements; expired ones are removed first.
    pub(crate) fn ttl_get(
        &mut self,
        key: &K,
        spec: &TtlSpec,
        clock: &TtlClock,
    ) -> Result<ListIter<'_, V>> {
        let refresh = spec.refresh_on_read();
        let stale = match self.0.get(key)? {
            Some(list) => refresh || list.iter().any(|s| spec.expired(s.at, clock)),
            None => false,
        };
        if stale {
            let at = spec.stamp(clock);
            let mut empty = false;
            if let Some(list) = self.0.get_mut(key)? {
                list.retain(|s| !spec.expired(s.at, clock));
                if refresh {
                    list.iter_mut().for_each(|s| s.at = at);
                }
                empty = list.is_empty();
            }
            if empty {
                self.0.remove(key)?;
            }
        }
        let list = self.get(key)?;
        Ok(ListIter(ListElems::Stamped(list.iter())))
    }

    pub(crate) fn ttl_push(
        &mut self,
        key: &K,
        value: V,
        spec: &TtlSpec,
        clock: &TtlClock,
    ) -> Result<()> {
        let at = spec.stamp(clock);
        self.push(key, Stamped { at, value })
    }

    pub(crate) fn ttl_replace(
        &mut self,
        key: &K,
        values: Vec<V>,
        spec: &TtlSpec,
        clock: &TtlClock,
    ) -> Result<()> {
        let at = spec.stamp(clock);
        self.replace(
            key,
            values
                .into_iter()
                .map(|value| Stamped { at, value })
                .collect(),
        )
    }

    pub(crate) fn ttl_take(&mut self, key: &K, spec: &TtlSpec, clock: &TtlClock) -> Result<Vec<V>> {
        Ok(self
            .take(key)?
            .into_iter()
            .filter(|s| !spec.expired(s.at, clock))
            .map(|s| s.value)
            .collect())
    }
}

impl<K: StateKey, V: StateValue> Sweep for ListTable<K, Stamped<V>> {
    fn sweep(&mut self, spec: &TtlSpec, clock: &TtlClock) -> Result<usize> {
        if let ValueTable::Memory(map) = &mut self.0 {
            let mut removed = 0;
            map.retain(|_, list| {
                let before = list.len();
                list.retain(|s| !spec.expired(s.at, clock));
                removed += before - list.len();
                !list.is_empty()
            });
            shrink(map);
            return Ok(removed);
        }
        self.0.flush()?;
        let ValueTable::Backed { cache, b } = &mut self.0 else {
            return Ok(0);
        };
        *cache = HashMap::new();
        let mut removed = 0;
        // Elements have their own stamps: decode, keep the live ones, write back.
        sweep_store(b, |bytes| {
            let mut list: Vec<Stamped<V>> = decode(bytes)?;
            let before = list.len();
            list.retain(|s| !spec.expired(s.at, clock));
            Ok(match before - list.len() {
                0 => SweepAction::Keep,
                n if list.is_empty() => {
                    removed += n - 1;
                    SweepAction::Delete
                }
                n => {
                    removed += n;
                    SweepAction::Rewrite(encode(&list)?)
                }
            })
        })
        .map(|deleted| deleted + removed)
    }
}

impl<K: StateKey, V: StateValue> ReducingTable<K, Stamped<V>> {
    pub(crate) fn ttl_get(
        &mut self,
        key: &K,
        spec: &TtlSpec,
        clock: &TtlClock,
    ) -> Result<Option<&V>> {
        self.values.ttl_get(key, spec, clock)
    }

    /// Folds `value` in; an expired aggregate is dropped first, so `value` starts anew.
    pub(crate) fn ttl_add(
        &mut self,
        key: &K,
        value: V,
        spec: &TtlSpec,
        clock: &TtlClock,
    ) -> Result<()> {
        self.values.live(key, spec, clock)?;
        let at = spec.stamp(clock);
        self.add(key, Stamped { at, value })
    }

    pub(crate) fn ttl_remove(
        &mut self,
        key: &K,
        spec: &TtlSpec,
        clock: &TtlClock,
    ) -> Result<Option<V>> {
        self.values.ttl_remove(key, spec, clock)
    }
}

impl<K: StateKey, V: StateValue> Sweep for ReducingTable<K, Stamped<V>> {
    fn sweep(&mut self, spec: &TtlSpec, clock: &TtlClock) -> Result<usize> {
        Sweep::sweep(&mut self.values, spec, clock)
    }
}
