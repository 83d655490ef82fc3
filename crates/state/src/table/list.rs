//! List state: a list of `V` per key, stored as one value.

use super::value::ValueTable;
use super::{Backing, ErasedTable, NewTable};
use crate::snapshot::{decode_section, Section};
use crate::store::StateKind;
use crate::{Result, StateKey, StateValue};
use std::any::Any;

/// `key -> [V]`. Empty lists are removed.
pub(crate) struct ListTable<K, V>(pub(crate) ValueTable<K, Vec<V>>);

impl<K, V> NewTable for ListTable<K, V> {
    fn new_table(backing: Option<Backing>) -> Self {
        Self(ValueTable::new_table(backing))
    }
}

impl<K: StateKey, V: StateValue> ListTable<K, V> {
    pub(crate) fn get(&mut self, key: &K) -> Result<&[V]> {
        Ok(self.0.get(key)?.map_or(&[], Vec::as_slice))
    }

    pub(crate) fn push(&mut self, key: &K, value: V) -> Result<()> {
        self.0.get_or_insert_with(key, Vec::new)?.push(value);
        Ok(())
    }

    pub(crate) fn replace(&mut self, key: &K, values: Vec<V>) -> Result<()> {
        if values.is_empty() {
            self.0.remove(key).map(|_| ())
        } else {
            self.0.set(key, values)
        }
    }

    pub(crate) fn take(&mut self, key: &K) -> Result<Vec<V>> {
        Ok(self.0.remove(key)?.unwrap_or_default())
    }
}

impl<K: StateKey, V: StateValue> ErasedTable for ListTable<K, V> {
    fn kind(&self) -> StateKind {
        StateKind::List
    }
    fn type_name(&self) -> &'static str {
        std::any::type_name::<(K, V)>()
    }
    fn stats(&mut self) -> Result<(usize, usize)> {
        self.0.stats_with(Vec::len)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn flush(&mut self) -> Result<()> {
        self.0.flush()
    }
    fn memory_keys(&self) -> u64 {
        self.0.memory_keys()
    }
    fn approx_bytes(&self) -> u64 {
        let elements: usize = match &self.0 {
            ValueTable::Memory(map) => map.values().map(Vec::capacity).sum(),
            ValueTable::Backed { cache, .. } => cache
                .values()
                .filter_map(|s| s.value.as_ref().map(Vec::capacity))
                .sum(),
        };
        self.0.approx_bytes() + (elements * size_of::<V>()) as u64
    }
    fn snapshot(&mut self, name: &str, max_parallelism: u16, out: &mut Vec<Section>) -> Result<()> {
        let type_name = self.type_name();
        self.0
            .snapshot_as(name, StateKind::List, type_name, max_parallelism, out)
    }
    fn restore(&mut self, section: &Section) -> Result<()> {
        // Lists from several snapshots of one key are appended, as memory mode always did.
        for (k, values) in decode_section::<K, Vec<V>>(section)? {
            self.0.get_or_insert_with(&k, Vec::new)?.extend(values);
        }
        Ok(())
    }
}
