//! Typed in-memory tables, one per declared state, keyed by the record key.

use crate::store::StateKind;
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
    ($ty:ident < $($p:ident),+ >, $kind:expr, |$s:ident| $entries:expr) => {
        impl<$($p: Send + 'static),+> ErasedTable for $ty<$($p),+> {
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
        }
    };
}

erased!(ValueTable<K, V>, StateKind::Value, |t| t.map.len());
erased!(MapTable<K, UK, V>, StateKind::Map, |t| t.map.values().map(HashMap::len).sum());
erased!(ListTable<K, V>, StateKind::List, |t| t.map.values().map(Vec::len).sum());
