//! Typed state handles and the current-key scope they are used with.

use crate::table::{ListIter, ListTable, MapTable, ReducingTable, ValueTable};
use crate::ttl::{Stamped, TtlSpec};
use crate::{KeyedStateStore, Result, StateKey, StateValue};
use std::marker::PhantomData;

/// Pairs a keyed store with the key whose state is being accessed.
///
/// The runtime's keyed context implements this with the key of the record (or timer) being
/// processed; [`KeyScope`] implements it for direct use.
pub trait StateAccess {
    /// The key type.
    type Key: StateKey;
    /// The store and the current key.
    fn parts(&mut self) -> (&mut KeyedStateStore, &Self::Key);
}

/// A [`StateAccess`] made of a store and a key.
#[derive(Debug)]
pub struct KeyScope<'a, K> {
    store: &'a mut KeyedStateStore,
    key: &'a K,
}

impl<'a, K> KeyScope<'a, K> {
    /// Accesses `store` as `key`.
    pub fn new(store: &'a mut KeyedStateStore, key: &'a K) -> Self {
        Self { store, key }
    }
}

impl<K: StateKey> StateAccess for KeyScope<'_, K> {
    type Key = K;
    fn parts(&mut self) -> (&mut KeyedStateStore, &K) {
        (self.store, self.key)
    }
}

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident < $($p:ident),+ >) => {
        $(#[$doc])*
        pub struct $name<$($p),+> {
            id: u32,
            ttl: Option<TtlSpec>,
            _types: PhantomData<fn() -> ($($p,)+)>,
        }
        impl<$($p),+> $name<$($p),+> {
            pub(crate) fn new(id: u32, ttl: Option<TtlSpec>) -> Self {
                Self { id, ttl, _types: PhantomData }
            }
        }
        impl<$($p),+> Clone for $name<$($p),+> {
            fn clone(&self) -> Self {
                *self
            }
        }
        impl<$($p),+> Copy for $name<$($p),+> {}
        impl<$($p),+> std::fmt::Debug for $name<$($p),+> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}(#{})", stringify!($name), self.id)
            }
        }
    };
}

handle!(
    /// Handle to a value state: one `V` per key. `Copy`; declare it once and keep it.
    ValueState<V>
);
handle!(
    /// Handle to a map state: a map `UK -> V` per key.
    MapState<UK, V>
);
handle!(
    /// Handle to a list state: a list of `V` per key.
    ListState<V>
);
handle!(
    /// Handle to a reducing (aggregating) state: one `V` per key, into which `add` folds
    /// values with the function given at declaration.
    ReducingState<V>
);

impl<V> ValueState<V> {
    /// The index of the handle's table in its store.
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// The handle's TTL, if it has one.
    pub(crate) fn ttl(&self) -> Option<TtlSpec> {
        self.ttl
    }
}

impl<V: StateValue> ValueState<V> {
    /// The value of the current key (`None` if absent or expired).
    pub fn get<'a, A: StateAccess>(&self, cx: &'a mut A) -> Result<Option<&'a V>> {
        let (store, key) = cx.parts();
        match &self.ttl {
            None => store.table::<ValueTable<A::Key, V>>(self.id)?.get(key),
            Some(spec) => {
                let (t, clock) =
                    store.table_and_clock::<ValueTable<A::Key, Stamped<V>>>(self.id)?;
                t.ttl_get(key, spec, clock)
            }
        }
    }

    /// Sets the value of the current key.
    pub fn set<A: StateAccess>(&self, cx: &mut A, value: V) -> Result<()> {
        let (store, key) = cx.parts();
        match &self.ttl {
            None => store
                .table::<ValueTable<A::Key, V>>(self.id)?
                .set(key, value),
            Some(spec) => {
                let (t, clock) =
                    store.table_and_clock::<ValueTable<A::Key, Stamped<V>>>(self.id)?;
                t.ttl_set(key, value, spec, clock)
            }
        }
    }

    /// The value of the current key, inserting `init()` first if there is none. With a
    /// TTL this counts as a write.
    pub fn get_or_insert_with<'a, A: StateAccess>(
        &self,
        cx: &'a mut A,
        init: impl FnOnce() -> V,
    ) -> Result<&'a mut V> {
        let (store, key) = cx.parts();
        match &self.ttl {
            None => store
                .table::<ValueTable<A::Key, V>>(self.id)?
                .get_or_insert_with(key, init),
            Some(spec) => {
                let (t, clock) =
                    store.table_and_clock::<ValueTable<A::Key, Stamped<V>>>(self.id)?;
                t.ttl_get_or_insert_with(key, init, spec, clock)
            }
        }
    }

    /// Starts loading the current key's entry into the CPU's caches, if it is in memory
    /// (the memory backend's table, or a backed store's cache), and returns without
    /// waiting for it. A hint for records a few places ahead of the one being processed
    /// (see `KeyedProcessFunction::prefetch`): it reads nothing from a store and changes
    /// nothing.
    pub fn prefetch<A: StateAccess>(&self, cx: &mut A) {
        let (store, key) = cx.parts();
        match &self.ttl {
            None => {
                if let Ok(t) = store.table::<ValueTable<A::Key, V>>(self.id) {
                    t.prefetch(key);
                }
            }
            Some(_) => {
                if let Ok(t) = store.table::<ValueTable<A::Key, Stamped<V>>>(self.id) {
                    t.prefetch(key);
                }
            }
        }
    }

    /// The value of the current key if it is in memory now, expired or not, without
    /// loading it from a store or counting as an access. Only for prefetching what the
    /// value points to: a result must never depend on it.
    pub fn peek<'a, A: StateAccess>(&self, cx: &'a mut A) -> Option<&'a V> {
        let (store, key) = cx.parts();
        match &self.ttl {
            None => store
                .table::<ValueTable<A::Key, V>>(self.id)
                .ok()?
                .peek(key),
            Some(_) => store
                .table::<ValueTable<A::Key, Stamped<V>>>(self.id)
                .ok()?
                .peek(key)
                .map(|s| &s.value),
        }
    }

    /// Removes and returns the value of the current key.
    pub fn clear<A: StateAccess>(&self, cx: &mut A) -> Result<Option<V>> {
        let (store, key) = cx.parts();
        match &self.ttl {
            None => store.table::<ValueTable<A::Key, V>>(self.id)?.remove(key),
            Some(spec) => {
                let (t, clock) =
                    store.table_and_clock::<ValueTable<A::Key, Stamped<V>>>(self.id)?;
                t.ttl_remove(key, spec, clock)
            }
        }
    }
}

impl<UK: StateKey, V: StateValue> MapState<UK, V> {
    /// The value under `user_key` in the current key's map.
    pub fn get<'a, A: StateAccess>(&self, cx: &'a mut A, user_key: &UK) -> Result<Option<&'a V>> {
        let (store, key) = cx.parts();
        match &self.ttl {
            None => store
                .table::<MapTable<A::Key, UK, V>>(self.id)?
                .get(key, user_key),
            Some(spec) => {
                let (t, clock) =
                    store.table_and_clock::<MapTable<A::Key, UK, Stamped<V>>>(self.id)?;
                t.ttl_get(key, user_key, spec, clock)
            }
        }
    }

    /// Whether the current key's map holds `user_key`.
    pub fn contains<A: StateAccess>(&self, cx: &mut A, user_key: &UK) -> Result<bool> {
        self.get(cx, user_key).map(|v| v.is_some())
    }

    /// Inserts into the current key's map; returns the previous value.
    pub fn insert<A: StateAccess>(&self, cx: &mut A, user_key: UK, value: V) -> Result<Option<V>> {
        let (store, key) = cx.parts();
        match &self.ttl {
            None => store
                .table::<MapTable<A::Key, UK, V>>(self.id)?
                .insert(key, user_key, value),
            Some(spec) => {
                let (t, clock) =
                    store.table_and_clock::<MapTable<A::Key, UK, Stamped<V>>>(self.id)?;
                t.ttl_insert(key, user_key, value, spec, clock)
            }
        }
    }

    /// The value under `user_key`, inserting `init()` first if there is none. With a TTL
    /// this counts as a write.
    pub fn get_or_insert_with<'a, A: StateAccess>(
        &self,
        cx: &'a mut A,
        user_key: &UK,
        init: impl FnOnce() -> V,
    ) -> Result<&'a mut V> {
        let (store, key) = cx.parts();
        match &self.ttl {
            None => store
                .table::<MapTable<A::Key, UK, V>>(self.id)?
                .get_or_insert_with(key, user_key, init),
            Some(spec) => {
                let (t, clock) =
                    store.table_and_clock::<MapTable<A::Key, UK, Stamped<V>>>(self.id)?;
                t.ttl_get_or_insert_with(key, user_key, init, spec, clock)
            }
        }
    }

    /// Removes `user_key` from the current key's map; returns its value.
    pub fn remove<A: StateAccess>(&self, cx: &mut A, user_key: &UK) -> Result<Option<V>> {
        let (store, key) = cx.parts();
        match &self.ttl {
            None => store
                .table::<MapTable<A::Key, UK, V>>(self.id)?
                .remove(key, user_key),
            Some(spec) => {
                let (t, clock) =
                    store.table_and_clock::<MapTable<A::Key, UK, Stamped<V>>>(self.id)?;
                t.ttl_remove(key, user_key, spec, clock)
            }
        }
    }

    /// Number of entries in the current key's map. With a backed store this reads the
    /// whole map; keep a count in value state if it is needed per record.
    pub fn len<A: StateAccess>(&self, cx: &mut A) -> Result<usize> {
        Ok(self.iter(cx)?.count())
    }

    /// Whether the current key's map is empty.
    pub fn is_empty<A: StateAccess>(&self, cx: &mut A) -> Result<bool> {
        self.len(cx).map(|n| n == 0)
    }

    /// The entries of the current key's map, in no particular order. Expired entries are
    /// skipped; iterating does not restart TTLs.
    pub fn iter<'a, A: StateAccess>(
        &self,
        cx: &'a mut A,
    ) -> Result<impl Iterator<Item = (&'a UK, &'a V)> + 'a> {
        let (store, key) = cx.parts();
        match self.ttl {
            None => store.table::<MapTable<A::Key, UK, V>>(self.id)?.iter(key),
            Some(spec) => {
                let (t, clock) =
                    store.table_and_clock::<MapTable<A::Key, UK, Stamped<V>>>(self.id)?;
                t.ttl_iter(key, spec, clock)
            }
        }
    }

    /// Removes the current key's whole map.
    pub fn clear<A: StateAccess>(&self, cx: &mut A) -> Result<()> {
        let (store, key) = cx.parts();
        match self.ttl {
            None => store.table::<MapTable<A::Key, UK, V>>(self.id)?.clear(key),
            Some(_) => store
                .table::<MapTable<A::Key, UK, Stamped<V>>>(self.id)?
                .clear(key),
        }
    }
}

impl<V: StateValue> ListState<V> {
    /// The current key's list (empty if none), in insertion order. With a TTL, expired
    /// elements are removed first.
    pub fn get<'a, A: StateAccess>(&self, cx: &'a mut A) -> Result<ListIter<'a, V>> {
        let (store, key) = cx.parts();
        match &self.ttl {
            None => Ok(ListIter::plain(
                store.table::<ListTable<A::Key, V>>(self.id)?.get(key)?,
            )),
            Some(spec) => {
                let (t, clock) = store.table_and_clock::<ListTable<A::Key, Stamped<V>>>(self.id)?;
                t.ttl_get(key, spec, clock)
            }
        }
    }

    /// Appends to the current key's list.
    pub fn push<A: StateAccess>(&self, cx: &mut A, value: V) -> Result<()> {
        let (store, key) = cx.parts();
        match &self.ttl {
            None => store
                .table::<ListTable<A::Key, V>>(self.id)?
                .push(key, value),
            Some(spec) => {
                let (t, clock) = store.table_and_clock::<ListTable<A::Key, Stamped<V>>>(self.id)?;
                t.ttl_push(key, value, spec, clock)
            }
        }
    }

    /// Replaces the current key's list; an empty list removes it.
    pub fn replace<A: StateAccess>(&self, cx: &mut A, values: Vec<V>) -> Result<()> {
        let (store, key) = cx.parts();
        match &self.ttl {
            None => store
                .table::<ListTable<A::Key, V>>(self.id)?
                .replace(key, values),
            Some(spec) => {
                let (t, clock) = store.table_and_clock::<ListTable<A::Key, Stamped<V>>>(self.id)?;
                t.ttl_replace(key, values, spec, clock)
            }
        }
    }

    /// Removes and returns the current key's list (its live elements).
    pub fn clear<A: StateAccess>(&self, cx: &mut A) -> Result<Vec<V>> {
        let (store, key) = cx.parts();
        match &self.ttl {
            None => store.table::<ListTable<A::Key, V>>(self.id)?.take(key),
            Some(spec) => {
                let (t, clock) = store.table_and_clock::<ListTable<A::Key, Stamped<V>>>(self.id)?;
                t.ttl_take(key, spec, clock)
            }
        }
    }
}

impl<V: StateValue> ReducingState<V> {
    /// The current key's aggregate.
    pub fn get<'a, A: StateAccess>(&self, cx: &'a mut A) -> Result<Option<&'a V>> {
        let (store, key) = cx.parts();
        match &self.ttl {
            None => store.table::<ReducingTable<A::Key, V>>(self.id)?.get(key),
            Some(spec) => {
                let (t, clock) =
                    store.table_and_clock::<ReducingTable<A::Key, Stamped<V>>>(self.id)?;
                t.ttl_get(key, spec, clock)
            }
        }
    }

    /// Folds `value` into the current key's aggregate (or starts it with `value`; with a
    /// TTL, an expired aggregate is started anew).
    pub fn add<A: StateAccess>(&self, cx: &mut A, value: V) -> Result<()> {
        let (store, key) = cx.parts();
        match &self.ttl {
            None => store
                .table::<ReducingTable<A::Key, V>>(self.id)?
                .add(key, value),
            Some(spec) => {
                let (t, clock) =
                    store.table_and_clock::<ReducingTable<A::Key, Stamped<V>>>(self.id)?;
                t.ttl_add(key, value, spec, clock)
            }
        }
    }

    /// Removes and returns the current key's aggregate.
    pub fn clear<A: StateAccess>(&self, cx: &mut A) -> Result<Option<V>> {
        let (store, key) = cx.parts();
        match &self.ttl {
            None => store
                .table::<ReducingTable<A::Key, V>>(self.id)?
                .remove(key),
            Some(spec) => {
                let (t, clock) =
                    store.table_and_clock::<ReducingTable<A::Key, Stamped<V>>>(self.id)?;
                t.ttl_remove(key, spec, clock)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Error, KeyScope, MemoryBackend, StateBackend, StateKind, StoreScope};
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn store() -> crate::KeyedStateStore {
        MemoryBackend
            .open_keyed_store(&StoreScope::single("t"))
            .unwrap()
    }

    #[test]
    fn value_state_per_key() {
        let mut s = store();
        let v = s.value_state::<u32, String>("v").unwrap();
        v.set(&mut KeyScope::new(&mut s, &1u32), "one".into())
            .unwrap();
        v.set(&mut KeyScope::new(&mut s, &2u32), "two".into())
            .unwrap();
        v.set(&mut KeyScope::new(&mut s, &1u32), "uno".into())
            .unwrap();
        assert_eq!(
            v.get(&mut KeyScope::new(&mut s, &1u32)).unwrap().unwrap(),
            "uno"
        );
        assert_eq!(
            v.clear(&mut KeyScope::new(&mut s, &2u32)).unwrap().unwrap(),
            "two"
        );
        assert_eq!(v.get(&mut KeyScope::new(&mut s, &2u32)).unwrap(), None);
        assert_eq!(s.stats().unwrap().entries(), 1);
    }

    #[test]
    fn redeclaring_returns_the_same_handle_and_conflicts_are_errors() {
        let mut s = store();
        let a = s.value_state::<u32, u64>("x").unwrap();
        let b = s.value_state::<u32, u64>("x").unwrap();
        a.set(&mut KeyScope::new(&mut s, &7u32), 5).unwrap();
        assert_eq!(b.get(&mut KeyScope::new(&mut s, &7u32)).unwrap(), Some(&5));
        let err = s.map_state::<u32, u64, u64>("x").unwrap_err();
        assert!(matches!(err, Error::StateConflict { .. }), "{err}");
        let err = s.value_state::<u32, String>("x").unwrap_err();
        assert!(err.to_string().contains("already registered"), "{err}");
        assert!(s.value_state::<u32, u8>("").is_err());
    }

    #[test]
    fn handle_used_with_wrong_key_type_is_an_error() {
        let mut s = store();
        let v = s.value_state::<u32, u64>("v").unwrap();
        let err = v
            .get(&mut KeyScope::new(&mut s, &"k".to_string()))
            .unwrap_err();
        assert!(matches!(err, Error::HandleMismatch { .. }));
        assert!(!err.is_retryable());
    }

    #[test]
    fn map_and_list_remove_empty_keys() {
        let mut s = store();
        let m = s.map_state::<u8, u64, ()>("m").unwrap();
        let l = s.list_state::<u8, i32>("l").unwrap();
        let k = 3u8;
        let mut cx = KeyScope::new(&mut s, &k);
        assert_eq!(m.insert(&mut cx, 10, ()).unwrap(), None);
        assert_eq!(m.insert(&mut cx, 10, ()).unwrap(), Some(()));
        assert!(m.contains(&mut cx, &10).unwrap());
        l.push(&mut cx, 1).unwrap();
        l.push(&mut cx, 2).unwrap();
        assert_eq!(l.get(&mut cx).unwrap().copied().collect::<Vec<_>>(), [1, 2]);
        let stats = s.stats().unwrap();
        assert_eq!(stats.tables[0].kind, StateKind::Map);
        assert_eq!((stats.tables[0].keys, stats.tables[1].entries), (1, 2));
        let mut cx = KeyScope::new(&mut s, &k);
        m.remove(&mut cx, &10).unwrap();
        l.replace(&mut cx, vec![]).unwrap();
        assert_eq!(
            s.stats()
                .unwrap()
                .tables
                .iter()
                .map(|t| t.keys)
                .sum::<usize>(),
            0
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u8, u16),
        Remove(u8, u8),
        Clear(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..8, 0u8..16, any::<u16>()).prop_map(|(k, u, v)| Op::Insert(k, u, v)),
            (0u8..8, 0u8..16).prop_map(|(k, u)| Op::Remove(k, u)),
            (0u8..8).prop_map(Op::Clear),
        ]
    }

    proptest! {
        /// Map state agrees with a `BTreeMap` model under random operations.
        #[test]
        fn map_state_matches_model(ops in proptest::collection::vec(op(), 0..200)) {
            let mut s = store();
            let m = s.map_state::<u8, u8, u16>("m").unwrap();
            let mut model: BTreeMap<u8, BTreeMap<u8, u16>> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, u, v) => {
                        let old = m.insert(&mut KeyScope::new(&mut s, &k), u, v).unwrap();
                        prop_assert_eq!(old, model.entry(k).or_default().insert(u, v));
                    }
                    Op::Remove(k, u) => {
                        let old = m.remove(&mut KeyScope::new(&mut s, &k), &u).unwrap();
                        let want = model.get_mut(&k).and_then(|e| e.remove(&u));
                        if model.get(&k).is_some_and(|e| e.is_empty()) { model.remove(&k); }
                        prop_assert_eq!(old, want);
                    }
                    Op::Clear(k) => {
                        m.clear(&mut KeyScope::new(&mut s, &k)).unwrap();
                        model.remove(&k);
                    }
                }
            }
            for k in 0u8..8 {
                let mut cx = KeyScope::new(&mut s, &k);
                let got: BTreeSet<(u8, u16)> = m.iter(&mut cx).unwrap().map(|(a, b)| (*a, *b)).collect();
                let want: BTreeSet<(u8, u16)> = model.get(&k).map(|e| e.iter().map(|(a, b)| (*a, *b)).collect()).unwrap_or_default();
                prop_assert_eq!(got, want);
            }
            prop_assert_eq!(s.stats().unwrap().tables[0].keys, model.len());
        }
    }
}
