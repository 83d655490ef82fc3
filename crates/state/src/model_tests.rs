//! Every backend agrees with a `BTreeMap` model under random operation sequences,
//! including snapshots restored into fresh stores mid-sequence and caches small enough
//! to be written back constantly.

use crate::table::BTreeKv;
use crate::{
    KeyScope, KeyedSnapshot, KeyedStateStore, ListState, MapState, MemoryBackend, ReducingState,
    StateBackend, StoreScope, ValueState,
};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone)]
enum Op {
    VSet(u32, i64),
    VAdd(u32, i64),
    VClear(u32),
    MInsert(u32, u16, i32),
    MAdd(u32, u16, i32),
    MRemove(u32, u16),
    MClear(u32),
    LPush(u32, u8),
    LReplace(u32, Vec<u8>),
    LClear(u32),
    RAdd(u32, i64),
    RClear(u32),
    Flush,
    SnapshotRestore,
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0u32..6;
    prop_oneof![
        (k.clone(), any::<i64>()).prop_map(|(k, x)| Op::VSet(k, x)),
        (k.clone(), -100i64..100).prop_map(|(k, x)| Op::VAdd(k, x)),
        k.clone().prop_map(Op::VClear),
        (k.clone(), 0u16..5, any::<i32>()).prop_map(|(k, u, v)| Op::MInsert(k, u, v)),
        (k.clone(), 0u16..5, -9i32..9).prop_map(|(k, u, v)| Op::MAdd(k, u, v)),
        (k.clone(), 0u16..5).prop_map(|(k, u)| Op::MRemove(k, u)),
        k.clone().prop_map(Op::MClear),
        (k.clone(), any::<u8>()).prop_map(|(k, x)| Op::LPush(k, x)),
        (k.clone(), proptest::collection::vec(any::<u8>(), 0..3))
            .prop_map(|(k, v)| Op::LReplace(k, v)),
        k.clone().prop_map(Op::LClear),
        (k.clone(), -50i64..50).prop_map(|(k, x)| Op::RAdd(k, x)),
        k.prop_map(Op::RClear),
        Just(Op::Flush),
        Just(Op::SnapshotRestore),
    ]
}

#[derive(Default, Debug, PartialEq, Clone)]
struct Model {
    values: BTreeMap<u32, i64>,
    maps: BTreeMap<u32, BTreeMap<u16, i32>>,
    lists: BTreeMap<u32, Vec<u8>>,
    sums: BTreeMap<u32, i64>,
}

/// Makes an empty store of one kind.
type Maker = Box<dyn Fn() -> KeyedStateStore>;

/// A store under test and how to make an empty one of the same kind.
struct Subject {
    name: &'static str,
    make: Maker,
    store: KeyedStateStore,
}

struct Handles {
    v: ValueState<i64>,
    m: MapState<u16, i32>,
    l: ListState<u8>,
    r: ReducingState<i64>,
}

fn declare(s: &mut KeyedStateStore) -> Handles {
    Handles {
        v: s.value_state::<u32, i64>("v").unwrap(),
        m: s.map_state::<u32, u16, i32>("m").unwrap(),
        l: s.list_state::<u32, u8>("l").unwrap(),
        r: s.reducing_state::<u32, i64>("r", |a, b| a.wrapping_add(b))
            .unwrap(),
    }
}

fn scope() -> StoreScope {
    StoreScope::new("op", 0, 1, 16)
}

fn subjects(_dir: &std::path::Path) -> Vec<Subject> {
    #[allow(unused_mut)]
    let mut v: Vec<(&'static str, Maker)> = vec![
        (
            "memory",
            Box::new(|| MemoryBackend.open_keyed_store(&scope()).unwrap()),
        ),
        (
            "backed-btree",
            Box::new(|| {
                KeyedStateStore::backed(scope(), Arc::new(BTreeKv::default()), 3, Arc::default())
            }),
        ),
    ];
    #[cfg(feature = "rocksdb")]
    {
        let backend = crate::RocksDbBackend::new(
            crate::RocksDbConfig::default()
                .with_local_dir(_dir)
                .with_cache_entries(3),
        )
        .unwrap();
        v.push((
            "rocksdb",
            Box::new(move || backend.open_keyed_store(&scope()).unwrap()),
        ));
    }
    v.into_iter()
        .map(|(name, make)| Subject {
            name,
            store: make(),
            make,
        })
        .collect()
}

/// Observes everything about keys 0..6 through the handles.
fn observe(s: &mut KeyedStateStore) -> Model {
    let h = declare(s);
    let mut m = Model::default();
    for k in 0u32..6 {
        let mut cx = KeyScope::new(s, &k);
        if let Some(x) = h.v.get(&mut cx).unwrap() {
            m.values.insert(k, *x);
        }
        let map: BTreeMap<u16, i32> = h.m.iter(&mut cx).unwrap().map(|(a, b)| (*a, *b)).collect();
        assert_eq!(h.m.len(&mut cx).unwrap(), map.len());
        if !map.is_empty() {
            m.maps.insert(k, map);
        }
        let list: Vec<u8> = h.l.get(&mut cx).unwrap().copied().collect();
        if !list.is_empty() {
            m.lists.insert(k, list);
        }
        if let Some(x) = h.r.get(&mut cx).unwrap() {
            m.sums.insert(k, *x);
        }
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn backends_agree_with_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        let dir = tempfile::tempdir().unwrap();
        let mut subjects = subjects(dir.path());
        let mut model = Model::default();
        for op in &ops {
            // The model's answer, then each subject's.
            let want = match op {
                Op::VSet(k, x) => { model.values.insert(*k, *x); None }
                Op::VAdd(k, x) => { let e = model.values.entry(*k).or_insert(0); *e += x; Some(i64::from(*e != 0)) }
                Op::VClear(k) => Some(model.values.remove(k).unwrap_or(-1)),
                Op::MInsert(k, u, v) => Some(i64::from(model.maps.entry(*k).or_default().insert(*u, *v).unwrap_or(-1))),
                Op::MAdd(k, u, v) => { let e = model.maps.entry(*k).or_default().entry(*u).or_insert(0); *e += v; Some(i64::from(*e)) }
                Op::MRemove(k, u) => Some(i64::from(model.maps.get_mut(k).and_then(|m| m.remove(u)).unwrap_or(-1))),
                Op::MClear(k) => { model.maps.remove(k); None }
                Op::LPush(k, x) => { model.lists.entry(*k).or_default().push(*x); None }
                Op::LReplace(k, v) => { if v.is_empty() { model.lists.remove(k); } else { model.lists.insert(*k, v.clone()); } None }
                Op::LClear(k) => Some(model.lists.remove(k).map_or(-1, |l| l.len() as i64)),
                Op::RAdd(k, x) => { let e = model.sums.entry(*k).or_insert(0); *e = e.wrapping_add(*x); None }
                Op::RClear(k) => Some(model.sums.remove(k).unwrap_or(i64::MIN)),
                Op::Flush | Op::SnapshotRestore => None,
            };
            model.maps.retain(|_, m| !m.is_empty());
            for s in &mut subjects {
                let h = declare(&mut s.store);
                let got = match op {
                    Op::VSet(k, x) => { h.v.set(&mut KeyScope::new(&mut s.store, k), *x).unwrap(); None }
                    Op::VAdd(k, x) => { let mut cx = KeyScope::new(&mut s.store, k); let e = h.v.get_or_insert_with(&mut cx, || 0).unwrap(); *e += x; Some(i64::from(*e != 0)) }
                    Op::VClear(k) => Some(h.v.clear(&mut KeyScope::new(&mut s.store, k)).unwrap().unwrap_or(-1)),
                    Op::MInsert(k, u, v) => Some(i64::from(h.m.insert(&mut KeyScope::new(&mut s.store, k), *u, *v).unwrap().unwrap_or(-1))),
                    Op::MAdd(k, u, v) => { let mut cx = KeyScope::new(&mut s.store, k); let e = h.m.get_or_insert_with(&mut cx, u, || 0).unwrap(); *e += v; Some(i64::from(*e)) }
                    Op::MRemove(k, u) => Some(i64::from(h.m.remove(&mut KeyScope::new(&mut s.store, k), u).unwrap().unwrap_or(-1))),
                    Op::MClear(k) => { h.m.clear(&mut KeyScope::new(&mut s.store, k)).unwrap(); None }
                    Op::LPush(k, x) => { h.l.push(&mut KeyScope::new(&mut s.store, k), *x).unwrap(); None }
                    Op::LReplace(k, v) => { h.l.replace(&mut KeyScope::new(&mut s.store, k), v.clone()).unwrap(); None }
                    Op::LClear(k) => { let l = h.l.clear(&mut KeyScope::new(&mut s.store, k)).unwrap(); Some(if l.is_empty() { -1 } else { l.len() as i64 }) }
                    Op::RAdd(k, x) => { h.r.add(&mut KeyScope::new(&mut s.store, k), *x).unwrap(); None }
                    Op::RClear(k) => Some(h.r.clear(&mut KeyScope::new(&mut s.store, k)).unwrap().unwrap_or(i64::MIN)),
                    Op::Flush => { s.store.flush().unwrap(); None }
                    Op::SnapshotRestore => {
                        let bytes = s.store.snapshot().unwrap().encode().unwrap();
                        let mut fresh = (s.make)();
                        fresh.restore(KeyedSnapshot::decode(&bytes, "model").unwrap()).unwrap();
                        s.store = fresh;
                        None
                    }
                };
                prop_assert_eq!(got, want, "{} after {:?}", s.name, op);
            }
        }
        for s in &mut subjects {
            prop_assert_eq!(&observe(&mut s.store), &model, "{} at the end", s.name);
            let stats = s.store.stats().unwrap();
            prop_assert_eq!(stats.tables[0].keys, model.values.len(), "{} value keys", s.name);
            prop_assert_eq!(stats.tables[1].entries, model.maps.values().map(BTreeMap::len).sum::<usize>(), "{} map entries", s.name);
        }
    }
}

#[test]
fn snapshots_move_between_backends() {
    let dir = tempfile::tempdir().unwrap();
    let subjects = subjects(dir.path());
    assert_eq!(
        subjects.len(),
        if cfg!(feature = "rocksdb") { 3 } else { 2 }
    );
    let mut source = MemoryBackend.open_keyed_store(&scope()).unwrap();
    let h = declare(&mut source);
    for k in 0u32..6 {
        let mut cx = KeyScope::new(&mut source, &k);
        h.v.set(&mut cx, i64::from(k) * 10).unwrap();
        h.m.insert(&mut cx, k as u16, -(k as i32)).unwrap();
        h.l.push(&mut cx, k as u8).unwrap();
        h.r.add(&mut cx, i64::from(k)).unwrap();
        h.r.add(&mut cx, 100).unwrap();
    }
    let want = observe(&mut source);
    assert_eq!(want.sums.get(&5), Some(&105));
    let bytes = source.snapshot().unwrap().encode().unwrap();
    for s in subjects {
        let mut target = (s.make)();
        target
            .restore(KeyedSnapshot::decode(&bytes, "x").unwrap())
            .unwrap();
        assert_eq!(observe(&mut target), want, "memory -> {}", s.name);
        // And back out again.
        let again = target.snapshot().unwrap().encode().unwrap();
        let mut back = MemoryBackend.open_keyed_store(&scope()).unwrap();
        back.restore(KeyedSnapshot::decode(&again, "y").unwrap())
            .unwrap();
        assert_eq!(observe(&mut back), want, "{} -> memory", s.name);
    }
}
