//! State TTL on every store kind: expired values are never returned, reads refresh when
//! asked to, and sweeps and compaction bring state back to (near) zero.

use crate::table::BTreeKv;
use crate::{
    KeyScope, KeyedStateStore, MemoryBackend, StateBackend, StateDescriptor, StateKey, StateTtl,
    StateValue, StoreScope, TtlUpdate, ValueState,
};
use std::sync::Arc;
use std::time::Duration;

fn scope() -> StoreScope {
    StoreScope::new("ttl", 0, 1, 32)
}

/// A fresh store of each kind; the cache of backed ones is small so that entries really
/// travel to the store and back.
fn stores(_dir: &std::path::Path, cache: usize) -> Vec<(&'static str, KeyedStateStore)> {
    #[allow(unused_mut)]
    let mut v = vec![
        ("memory", MemoryBackend.open_keyed_store(&scope()).unwrap()),
        (
            "backed-btree",
            KeyedStateStore::backed(scope(), Arc::new(BTreeKv::default()), cache, Arc::default()),
        ),
    ];
    #[cfg(feature = "rocksdb")]
    v.push((
        "rocksdb",
        crate::RocksDbBackend::new(
            crate::RocksDbConfig::default()
                .with_local_dir(_dir)
                .with_cache_entries(cache),
        )
        .unwrap()
        .open_keyed_store(&scope())
        .unwrap(),
    ));
    v
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Declares value state `name` with `ttl`.
fn ttl_value<K: StateKey, V: StateValue>(
    s: &mut KeyedStateStore,
    name: &str,
    ttl: StateTtl,
) -> ValueState<V> {
    s.value_state::<K, V>(StateDescriptor::new(name).with_ttl(ttl))
        .unwrap()
}

/// A processing-time TTL whose sweeps run on every chance.
fn sweep_always(ttl: Duration) -> StateTtl {
    StateTtl::processing_time(ttl).with_sweep_interval(Duration::ZERO)
}

#[test]
fn expired_values_are_never_returned() {
    let dir = tempfile::tempdir().unwrap();
    for (name, mut s) in stores(dir.path(), 2) {
        let ttl = sweep_always(ms(100));
        let v = ttl_value::<u32, u64>(&mut s, "v", ttl);
        let m = s
            .map_state::<u32, u32, u64>(StateDescriptor::new("m").with_ttl(ttl))
            .unwrap();
        let l = s
            .list_state::<u32, u64>(StateDescriptor::new("l").with_ttl(ttl))
            .unwrap();
        let r = s
            .reducing_state::<u32, u64>(StateDescriptor::new("r").with_ttl(ttl), |a, b| a + b)
            .unwrap();
        s.set_processing_time(1_000);
        for k in 0u32..5 {
            let mut cx = KeyScope::new(&mut s, &k);
            v.set(&mut cx, 1).unwrap();
            m.insert(&mut cx, 1, 1).unwrap();
            l.push(&mut cx, 1).unwrap();
            r.add(&mut cx, 1).unwrap();
        }
        s.set_processing_time(1_050);
        for k in 0u32..5 {
            let mut cx = KeyScope::new(&mut s, &k);
            m.insert(&mut cx, 2, 2).unwrap();
            l.push(&mut cx, 2).unwrap();
            r.add(&mut cx, 2).unwrap();
        }
        s.set_processing_time(1_099);
        let k = 3u32;
        let mut cx = KeyScope::new(&mut s, &k);
        assert_eq!(v.get(&mut cx).unwrap(), Some(&1), "{name}");
        assert_eq!(r.get(&mut cx).unwrap(), Some(&3), "{name}");
        s.set_processing_time(1_100);
        for k in 0u32..5 {
            let mut cx = KeyScope::new(&mut s, &k);
            assert_eq!(v.get(&mut cx).unwrap(), None, "{name}: value");
            assert_eq!(m.get(&mut cx, &1).unwrap(), None, "{name}: map entry 1");
            assert_eq!(m.get(&mut cx, &2).unwrap(), Some(&2), "{name}: map entry 2");
            let entries: Vec<_> = m.iter(&mut cx).unwrap().map(|(k, v)| (*k, *v)).collect();
            assert_eq!(entries, [(2, 2)], "{name}: map iteration");
            let list: Vec<u64> = l.get(&mut cx).unwrap().copied().collect();
            assert_eq!(list, [2], "{name}: list");
            // The aggregate was written at 1_050, so it lives; once expired, add restarts it.
            assert_eq!(r.get(&mut cx).unwrap(), Some(&3), "{name}: reducing");
        }
        s.set_processing_time(1_150);
        let mut cx = KeyScope::new(&mut s, &k);
        assert_eq!(r.get(&mut cx).unwrap(), None, "{name}");
        r.add(&mut cx, 7).unwrap();
        assert_eq!(r.get(&mut cx).unwrap(), Some(&7), "{name}: restarted");
        assert_eq!(m.len(&mut cx).unwrap(), 0, "{name}");
        assert!(l.clear(&mut cx).unwrap().is_empty(), "{name}");
        assert_eq!(v.clear(&mut cx).unwrap(), None, "{name}");
        // A value set after expiry is live again.
        v.set(&mut cx, 9).unwrap();
        assert_eq!(v.get(&mut cx).unwrap(), Some(&9), "{name}");
    }
}

#[test]
fn get_or_insert_with_starts_over_on_an_expired_value() {
    let dir = tempfile::tempdir().unwrap();
    for (name, mut s) in stores(dir.path(), 2) {
        let ttl = sweep_always(ms(100));
        let v = ttl_value::<u32, u64>(&mut s, "v", ttl);
        s.set_processing_time(1_000);
        for k in 0u32..5 {
            let mut cx = KeyScope::new(&mut s, &k);
            *v.get_or_insert_with(&mut cx, || 10).unwrap() += u64::from(k);
        }
        // Key 0 is changed again before the others expire, which renews its TTL.
        s.set_processing_time(1_060);
        *v.get_or_insert_with(&mut KeyScope::new(&mut s, &0u32), || 10)
            .unwrap() += 1;
        // Nothing reads the values before they are changed again: the first access after
        // expiry is the one that must not see the old value.
        s.set_processing_time(1_100);
        for k in 0u32..5 {
            let mut cx = KeyScope::new(&mut s, &k);
            let e = v.get_or_insert_with(&mut cx, || 100).unwrap();
            let expected = if k == 0 { 11 } else { 100 };
            assert_eq!(*e, expected, "{name}: key {k}");
            *e += 1;
        }
        // The new values are live, and stamped at 1_100.
        s.set_processing_time(1_199);
        for k in 0u32..5 {
            let mut cx = KeyScope::new(&mut s, &k);
            let expected = if k == 0 { 12 } else { 101 };
            assert_eq!(v.get(&mut cx).unwrap(), Some(&expected), "{name}: key {k}");
        }
    }
}

#[test]
fn reads_refresh_only_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    for (name, mut s) in stores(dir.path(), 2) {
        let base = StateTtl::processing_time(ms(100));
        let write_only = ttl_value::<u8, u8>(&mut s, "w", base);
        let on_read = s
            .value_state::<u8, u8>(
                StateDescriptor::new("r").with_ttl(base.with_update(TtlUpdate::OnReadAndWrite)),
            )
            .unwrap();
        let k = 1u8;
        s.set_processing_time(0);
        let mut cx = KeyScope::new(&mut s, &k);
        write_only.set(&mut cx, 1).unwrap();
        on_read.set(&mut cx, 1).unwrap();
        for t in [60, 120, 180] {
            s.set_processing_time(t);
            let mut cx = KeyScope::new(&mut s, &k);
            assert_eq!(on_read.get(&mut cx).unwrap(), Some(&1), "{name} at {t}");
        }
        let mut cx = KeyScope::new(&mut s, &k);
        assert_eq!(write_only.get(&mut cx).unwrap(), None, "{name}");
        s.set_processing_time(280);
        let mut cx = KeyScope::new(&mut s, &k);
        assert_eq!(on_read.get(&mut cx).unwrap(), None, "{name}");
    }
}

#[test]
fn redeclaring_with_another_ttl_is_an_error() {
    let mut s = MemoryBackend.open_keyed_store(&scope()).unwrap();
    let a = StateDescriptor::new("x").with_ttl(StateTtl::event_time(ms(5)));
    s.value_state::<u8, u8>(a.clone()).unwrap();
    s.value_state::<u8, u8>(a).unwrap();
    let b = StateDescriptor::new("x").with_ttl(StateTtl::event_time(ms(6)));
    assert!(s.value_state::<u8, u8>(b).is_err());
    assert!(
        s.value_state::<u8, u8>("x").is_err(),
        "TTL cannot be dropped either"
    );
    let zero = StateDescriptor::new("z").with_ttl(StateTtl::event_time(Duration::ZERO));
    let err = s.value_state::<u8, u8>(zero).unwrap_err();
    assert!(err.to_string().contains("state `z`"), "{err}");
}

/// A long event-time stream in which every key appears once: with a TTL of one hour, the
/// state (entries and bytes) returns to near zero once event time has moved past it, on
/// every store kind, without any expired key being read again.
#[test]
fn state_returns_to_near_zero_after_the_ttl() {
    const EVENTS: u64 = 200_000;
    const HOUR: u64 = 3_600_000;
    const STEP: u64 = 100; // event-time milliseconds between events: 20,000 s in all
    let dir = tempfile::tempdir().unwrap();
    for (name, mut s) in stores(dir.path(), 10_000) {
        let ttl = StateTtl::event_time(ms(HOUR)).with_sweep_interval(ms(10 * 60 * 1000));
        let seen = ttl_value::<u64, u64>(&mut s, "seen", ttl);
        let hits = s
            .map_state::<u64, u32, u64>(StateDescriptor::new("hits").with_ttl(ttl))
            .unwrap();
        let mut peak = (0, 0);
        for i in 0..EVENTS {
            let ts = 1_700_000_000_000 + i * STEP;
            let key = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut cx = KeyScope::new(&mut s, &key);
            seen.set(&mut cx, ts).unwrap();
            hits.insert(&mut cx, (i % 7) as u32, 1).unwrap();
            if i % 1_000 == 999 {
                // What the runtime does on a watermark (bounded out-of-orderness of 5 s).
                s.advance_watermark((ts - 5_000) as i64);
                s.sweep_due().unwrap();
            }
            if i % 20_000 == 19_999 {
                let entries = s.stats().unwrap().entries();
                let bytes = s.approximate_bytes().unwrap();
                peak = (peak.0.max(entries), peak.1.max(bytes));
            }
        }
        // One hour of events (36,000 keys × 2 states) at most should be alive at the peak.
        assert!(peak.0 <= 2 * 54_000, "{name}: peak entries {}", peak.0);
        assert!(peak.0 >= 2 * 36_000, "{name}: peak entries {}", peak.0);
        // Event time moves on (an idle stream's watermark, or the final one).
        let end = 1_700_000_000_000 + EVENTS * STEP + 2 * HOUR;
        s.advance_watermark(end as i64);
        s.sweep_due().unwrap();
        s.compact().unwrap();
        let entries = s.stats().unwrap().entries();
        let bytes = s.approximate_bytes().unwrap();
        assert_eq!(entries, 0, "{name}: entries left");
        assert!(
            bytes * 50 < peak.1,
            "{name}: {bytes} bytes left of a peak of {}",
            peak.1
        );
    }
}

/// On RocksDB, expired entries leave the disk through the compaction filter alone, with
/// sweeps off and nothing read.
#[cfg(feature = "rocksdb")]
#[test]
fn rocksdb_compaction_filter_drops_expired_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = crate::RocksDbBackend::new(
        crate::RocksDbConfig::default()
            .with_local_dir(dir.path())
            .with_cache_entries(100),
    )
    .unwrap()
    .open_keyed_store(&scope())
    .unwrap();
    let ttl = StateTtl::event_time(ms(1_000)).with_sweep_interval(Duration::ZERO);
    let v = ttl_value::<u32, String>(&mut s, "v", ttl);
    let plain = s.value_state::<u32, String>("plain").unwrap();
    s.advance_watermark(0);
    for k in 0u32..20_000 {
        let mut cx = KeyScope::new(&mut s, &k);
        v.set(&mut cx, format!("value-{k:08}")).unwrap();
        if k % 100 == 0 {
            plain.set(&mut cx, "kept".into()).unwrap();
        }
    }
    s.compact().unwrap();
    assert_eq!(s.stats().unwrap().entries(), 20_200);
    s.advance_watermark(1_000);
    assert_eq!(s.sweep_due().unwrap(), 0, "sweeps are off");
    s.compact().unwrap();
    let stats = s.stats().unwrap();
    assert_eq!((stats.tables[0].keys, stats.tables[1].keys), (0, 200));
}

#[test]
fn peek_sees_only_values_in_memory_and_prefetch_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for (name, mut s) in stores(dir.path(), 4) {
        let plain = s.value_state::<u64, u64>("plain").unwrap();
        let timed = ttl_value::<u64, u64>(&mut s, "timed", sweep_always(ms(50)));
        s.set_processing_time(1_000);
        for k in 0..16u64 {
            let mut cx = KeyScope::new(&mut s, &k);
            plain.prefetch(&mut cx);
            timed.prefetch(&mut cx);
            assert_eq!(plain.peek(&mut cx), None, "{name}");
            plain.set(&mut cx, k * 10).unwrap();
            timed.set(&mut cx, k * 100).unwrap();
            assert_eq!(plain.peek(&mut cx), Some(&(k * 10)), "{name}");
            assert_eq!(timed.peek(&mut cx), Some(&(k * 100)), "{name}");
        }
        // Backed stores keep 4 entries in memory: peek does not load the others, and
        // neither it nor prefetch changes what reads return.
        let in_memory = (0..16u64)
            .filter(|k| plain.peek(&mut KeyScope::new(&mut s, k)).is_some())
            .count();
        assert!(
            if name == "memory" {
                in_memory == 16
            } else {
                in_memory < 16
            },
            "{name}: {in_memory} of 16 in memory"
        );
        for k in 0..16u64 {
            let mut cx = KeyScope::new(&mut s, &k);
            plain.prefetch(&mut cx);
            assert_eq!(plain.get(&mut cx).unwrap(), Some(&(k * 10)), "{name}");
            assert_eq!(timed.get(&mut cx).unwrap(), Some(&(k * 100)), "{name}");
        }
        // Prefetching never revives an expired value.
        s.set_processing_time(2_000);
        let k = 15u64;
        let mut cx = KeyScope::new(&mut s, &k);
        timed.prefetch(&mut cx);
        assert_eq!(timed.get(&mut cx).unwrap(), None, "{name}");
        assert_eq!(s.stats().unwrap().tables[0].keys, 16, "{name}");
    }
}
