//! Reducing (aggregating) state: one value per key, folded on every `add`.

use super::value::ValueTable;
use super::{Backing, ErasedTable, NewTable};
use crate::snapshot::{decode_section, Section};
use crate::store::StateKind;
use crate::{Error, Result, StateKey, StateValue};
use std::any::Any;
use std::sync::Arc;

/// The fold of a reducing state: `reduce(current, added)`.
pub(crate) type ReduceFn<V> = Arc<dyn Fn(&V, V) -> V + Send + Sync>;

/// `key -> V`, where `add` folds values in with the declared function.
pub(crate) struct ReducingTable<K, V> {
    pub(crate) values: ValueTable<K, V>,
    reduce: Option<ReduceFn<V>>,
}

impl<K, V> NewTable for ReducingTable<K, V> {
    fn new_table(backing: Option<Backing>) -> Self {
        Self {
            values: ValueTable::new_table(backing),
            reduce: None,
        }
    }
}

impl<K: StateKey, V: StateValue> ReducingTable<K, V> {
    pub(crate) fn set_reduce(&mut self, reduce: ReduceFn<V>) {
        self.reduce = Some(reduce);
    }

    pub(crate) fn get(&mut self, key: &K) -> Result<Option<&V>> {
        self.values.get(key)
    }

    pub(crate) fn add(&mut self, key: &K, value: V) -> Result<()> {
        let reduce = self.reduce.as_ref().ok_or_else(|| {
            Error::InvalidConfig("reducing state used before its declaration".into())
        })?;
        let next = match self.values.get(key)? {
            Some(current) => reduce(current, value),
            None => value,
        };
        self.values.set(key, next)
    }

    pub(crate) fn remove(&mut self, key: &K) -> Result<Option<V>> {
        self.values.remove(key)
    }
}

impl<K: StateKey, V: StateValue> ErasedTable for ReducingTable<K, V> {
    fn kind(&self) -> StateKind {
        StateKind::Reducing
    }
    fn type_name(&self) -> &'static str {
        std::any::type_name::<(K, V)>()
    }
    fn stats(&mut self) -> Result<(usize, usize)> {
        self.values.stats_with(|_| 1)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn flush(&mut self) -> Result<()> {
        self.values.flush()
    }
    fn approx_bytes(&self) -> u64 {
        self.values.approx_bytes()
    }
    fn memory_keys(&self) -> u64 {
        self.values.memory_keys()
    }
    fn snapshot(&mut self, name: &str, max_parallelism: u16, out: &mut Vec<Section>) -> Result<()> {
        let type_name = self.type_name();
        self.values
            .snapshot_as(name, StateKind::Reducing, type_name, max_parallelism, out)
    }
    fn restore(&mut self, section: &Section) -> Result<()> {
        // Each key lives in one snapshot section, so restored values are set, not folded.
        self.values
            .restore_entries(decode_section::<K, V>(section)?)
    }
}
