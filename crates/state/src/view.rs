//! Value state tables looked up once for a run of keys.
//!
//! A handle such as [`ValueState::get_or_insert_with`] finds its table in the store on
//! every call (an index and a type check) and reads the key from the access scope. A
//! function that processes a whole batch of records can instead take [`ValueView`]s of
//! its tables once per batch, through [`KeyedStateStore::value_views`], and use them for
//! every record of the batch: the same reads, writes and TTL rules as the handle, without
//! the per-call lookup.

use crate::table::{ErasedTable, ValueTable};
use crate::ttl::{Stamped, TtlClock, TtlSpec};
use crate::{Error, KeyedStateStore, Result, StateKey, StateValue, ValueState};

/// One value state's table, for any number of keys in a row (see the module
/// documentation). Borrowed from the store for as long as it is used.
pub struct ValueView<'a, K, V> {
    table: Table<'a, K, V>,
}

enum Table<'a, K, V> {
    Plain(&'a mut ValueTable<K, V>),
    Ttl {
        table: &'a mut ValueTable<K, Stamped<V>>,
        spec: TtlSpec,
        clock: &'a TtlClock,
    },
}

impl<K: StateKey, V: StateValue> ValueView<'_, K, V> {
    /// The value of `key`, inserting `init()` first if there is none (or it expired);
    /// as [`ValueState::get_or_insert_with`]: with a TTL this counts as a write.
    #[inline]
    pub fn get_or_insert_with(&mut self, key: &K, init: impl FnOnce() -> V) -> Result<&mut V> {
        match &mut self.table {
            Table::Plain(t) => t.get_or_insert_with(key, init),
            Table::Ttl { table, spec, clock } => {
                table.ttl_get_or_insert_with(key, init, spec, clock)
            }
        }
    }

    /// Starts loading `key`'s entry into the CPU's caches; as [`ValueState::prefetch`].
    #[inline]
    pub fn prefetch(&self, key: &K) {
        match &self.table {
            Table::Plain(t) => t.prefetch(key),
            Table::Ttl { table, .. } => table.prefetch(key),
        }
    }

    /// `key`'s value if it is in memory now, expired or not; as [`ValueState::peek`]:
    /// only for prefetching what the value points to, never for a result.
    #[inline]
    pub fn peek(&self, key: &K) -> Option<&V> {
        match &self.table {
            Table::Plain(t) => t.peek(key),
            Table::Ttl { table, .. } => table.peek(key).map(|s| &s.value),
        }
    }

    /// The value in memory that is probably `key`'s, expired or not: found by the hash's
    /// 7-bit tag without comparing keys, so it is `key`'s whenever `key` is in memory
    /// (unless another key with the same tag comes first) and may be another key's when
    /// it is not. Cheaper than [`ValueView::peek`], and like it only for prefetching
    /// what the value points to, never for a result.
    #[inline]
    pub fn likely(&self, key: &K) -> Option<&V> {
        match &self.table {
            Table::Plain(t) => t.likely(key),
            Table::Ttl { table, .. } => table.likely(key).map(|s| &s.value),
        }
    }
}

impl KeyedStateStore {
    /// Views of the tables of `states`, in their order, for keys of type `K`. Each state
    /// may appear once.
    ///
    /// # Errors
    /// [`Error::HandleMismatch`] when a handle was not declared on this store with these
    /// types, or appears twice.
    pub fn value_views<K: StateKey, V: StateValue>(
        &mut self,
        states: &[ValueState<V>],
    ) -> Result<Vec<ValueView<'_, K, V>>> {
        let (tables, clock) = self.tables_and_clock();
        let mut free: Vec<Option<&mut Box<dyn ErasedTable>>> =
            tables.iter_mut().map(Some).collect();
        states
            .iter()
            .map(|s| {
                let id = s.id();
                let mismatch = || Error::HandleMismatch { id };
                let t = free
                    .get_mut(id as usize)
                    .and_then(Option::take)
                    .ok_or_else(mismatch)?
                    .as_any_mut();
                let table = match s.ttl() {
                    None => Table::Plain(t.downcast_mut().ok_or_else(mismatch)?),
                    Some(spec) => Table::Ttl {
                        table: t.downcast_mut().ok_or_else(mismatch)?,
                        spec,
                        clock,
                    },
                };
                Ok(ValueView { table })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::{KeyScope, MemoryBackend, StateBackend, StateDescriptor, StateTtl, StoreScope};
    use std::time::Duration;

    fn store() -> crate::KeyedStateStore {
        MemoryBackend
            .open_keyed_store(&StoreScope::single("op"))
            .unwrap()
    }

    /// A view reads and writes the same entries as the handle, with and without a TTL,
    /// and rejects a handle given twice.
    #[test]
    fn views_share_entries_with_handles() {
        let mut s = store();
        let plain = s.value_state::<String, u64>("plain").unwrap();
        let ttl = s
            .value_state::<String, u64>(
                StateDescriptor::new("ttl").with_ttl(StateTtl::event_time(Duration::from_secs(1))),
            )
            .unwrap();
        let k = "a".to_string();
        plain.set(&mut KeyScope::new(&mut s, &k), 5).unwrap();
        {
            let mut views = s.value_views::<String, u64>(&[ttl, plain]).unwrap();
            let [t, p] = views.as_mut_slice() else {
                panic!("two views");
            };
            assert_eq!(p.peek(&k), Some(&5));
            // The only key of its table: its own value, whatever its tag; an empty
            // table has none.
            assert_eq!(p.likely(&k), Some(&5));
            assert_eq!(t.likely(&k), None);
            *p.get_or_insert_with(&k, || 0).unwrap() += 1;
            *t.get_or_insert_with(&k, || 40).unwrap() += 2;
            assert_eq!(t.peek(&"b".to_string()), None);
        }
        assert_eq!(plain.get(&mut KeyScope::new(&mut s, &k)).unwrap(), Some(&6));
        assert_eq!(ttl.get(&mut KeyScope::new(&mut s, &k)).unwrap(), Some(&42));
        assert!(s.value_views::<String, u64>(&[plain, plain]).is_err());
        // The wrong key type is a mismatch, not a wrong table.
        assert!(s.value_views::<u32, u64>(&[plain]).is_err());
    }
}
