//! Typed in-memory tables, one per declared state, keyed by the record key.

use crate::snapshot::{decode_section, encode_sections, Section};
use crate::store::StateKind;
use crate::{Result, StateKey, StateValue};
use hashbrown::HashMap;
use std::any::Any;

/// Object-safe view of a typed table, for registration checks and statistics.
pub(crate) trait ErasedTable: Send {
    fn kind(&self) -> StateKind;
    fn type_name(&self) -> &'static str;
    /// Number of keys holding state.
    fn keys(&self) -> usize;
    /// Number of entries: one per value key, one per map entry, one per list element.
    fn entries(&self) -> usize;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// Appends one section per key group holding entries.
    fn snapshot(&self, name: &str, max_parallelism: u16, out: &mut Vec<Section>) -> Result<()>;
    /// Adds the entries of a section (written by `snapshot` of the same table type).
    fn restore(&mut self, section: &Section) -> Result<()>;
}

/// `key -> V`.
pub(crate) struct ValueTable<K, V> {
    pub(crate) map: HashMap<K, V>,
}

/// `key -> (user key -> V)`. Empty inner maps are removed.
pub(crate) struct MapTable<K, UK, V> {
    pub(crate) map: HashMap<K, HashMap<UK, V>>,
}

/// `key -> [V]`. Empty lists are removed.
pub(crate) struct ListTable<K, V> {
    pub(crate) map: HashMap<K, Vec<V>>,
}

impl<K, V> Default for ValueTable<K, V> {
    fn default() -> Self {
        Self {
            map: HashMap::default(),
        }
    }
}
impl<K, UK, V> Default for MapTable<K, UK, V> {
    fn default() -> Self {
        Self {
            map: HashMap::default(),
        }
    }
}
impl<K, V> Default for ListTable<K, V> {
    fn default() -> Self {
        Self {
            map: HashMap::default(),
        }
    }
}

macro_rules! erased {
    ($ty:ident < $($p:ident : $b:path),+ >, $kind:expr, $item:ty, |$s:ident| $entries:expr,
     |$map:ident, $k:ident, $x:ident| $merge:expr) => {
        impl<$($p: $b),+> ErasedTable for $ty<$($p),+> {
            fn kind(&self) -> StateKind {
                $kind
            }
            fn type_name(&self) -> &'static str {
                std::any::type_name::<Self>()
            }
            fn keys(&self) -> usize {
                self.map.len()
            }
            fn entries(&self) -> usize {
                let $s = self;
                $entries
            }
            fn as_any(&self) -> &dyn Any {
                self
            }
            fn as_any_mut(&mut self) -> &mut dyn Any {
                self
            }
            fn snapshot(&self, name: &str, max_parallelism: u16, out: &mut Vec<Section>) -> Result<()> {
                encode_sections(name, $kind, self.type_name(), self.map.iter(), max_parallelism, out)
            }
            fn restore(&mut self, section: &Section) -> Result<()> {
                let $map = &mut self.map;
                for ($k, $x) in decode_section::<K, $item>(section)? {
                    $merge;
                }
                Ok(())
            }
        }
    };
}

erased!(ValueTable<K: StateKey, V: StateValue>, StateKind::Value, V,
    |t| t.map.len(),
    |map, k, v| { map.insert(k, v); });
erased!(MapTable<K: StateKey, UK: StateKey, V: StateValue>, StateKind::Map, HashMap<UK, V>,
    |t| t.map.values().map(HashMap::len).sum(),
    |map, k, entries| map.entry(k).or_default().extend(entries));
erased!(ListTable<K: StateKey, V: StateValue>, StateKind::List, Vec<V>,
    |t| t.map.values().map(Vec::len).sum(),
    |map, k, values| map.entry(k).or_default().extend(values));
