//! Snapshots finished in the background: what the task does after the barrier waits
//! where it must and never reaches the snapshot.

use super::native::tests::{filled_store, target, value};
use crate::{KeyScope, StateBackend};

const KEYS: u64 = 5_000;

#[test]
fn writes_after_a_barrier_stay_out_of_its_snapshot() {
    let work = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    // The backend caches 1,000 entries: most of the 5,000 keys live in RocksDB only,
    // so the writes below reach RocksDB through evictions and the reads through misses.
    let (b, scope, mut s, v) = filled_store(work.path(), KEYS, |k| format!("before-{k}"));
    let pending = s
        .snapshot_in_background(Some(&target(root.path(), 1)))
        .unwrap();
    assert!(!pending.is_ready(), "RocksDB finishes in the background");
    // After the barrier, while the snapshot may still be running: every key changes
    // and is read back.
    for k in 0..KEYS {
        v.set(&mut KeyScope::new(&mut s, &k), format!("after-{k}"))
            .unwrap();
    }
    for k in (0..KEYS).step_by(7) {
        assert_eq!(value(&mut s, k), Some(format!("after-{k}")));
    }
    let snapshot = pending.wait().unwrap();
    assert!(!snapshot.native[0].files.is_empty());
    assert!(!snapshot.native[0].store_id.is_empty());
    // A later snapshot of the same store sees the new values.
    let second = s.snapshot_into(Some(&target(root.path(), 2))).unwrap();
    drop(s);

    let mut restored = b
        .restore_keyed_store(&scope, vec![snapshot], root.path())
        .unwrap();
    for k in 0..KEYS {
        assert_eq!(value(&mut restored, k), Some(format!("before-{k}")), "{k}");
    }
    // (Counted once the state is declared again, by the reads above.)
    assert_eq!(restored.stats().unwrap().entries(), KEYS as usize);
    drop(restored);
    let mut later = b
        .restore_keyed_store(&scope, vec![second], root.path())
        .unwrap();
    for k in (0..KEYS).step_by(13) {
        assert_eq!(value(&mut later, k), Some(format!("after-{k}")), "{k}");
    }
}
