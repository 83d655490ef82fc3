//! Checkpoints of a large RocksDB keyed state (1 GiB by default): the synchronous pause of
//! an incremental checkpoint after 1% of the keys changed, the share of bytes it adds to
//! checkpoint storage, and the time to restore the state into a fresh store.
//!
//! The state is a value state of `u64 -> [u8; 100]` (random, incompressible bytes) in one
//! store, written through the same write-behind cache the runtime uses; the checkpoint is
//! `KeyedStateStore::snapshot_in_background`, the call a keyed operator makes on a barrier
//! (timed until it returns: the pause; and until its background part is done: the
//! completion), and the restore is `StateBackend::restore_keyed_store`, the call a restored job makes. The
//! checkpoint root and the working directory are on one file system, so new data files
//! are hard-linked into `shared/`.
//!
//! `cargo bench --bench rocksdb_checkpoint` (`FERROFLOW_BENCH_STATE_MB` sets the size).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use criterion::{criterion_group, criterion_main, Criterion};
use ferroflow::state::native::NativeTarget;
use ferroflow::state::{
    KeyScope, KeyedSnapshot, KeyedStateStore, RocksDbBackend, RocksDbConfig, StateBackend,
    StoreScope, ValueState,
};
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

const VALUE: usize = 100;

fn state_mb() -> u64 {
    std::env::var("FERROFLOW_BENCH_STATE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

/// A value of random bytes for `key` and `round`.
fn value(key: u64, round: u64) -> Vec<u8> {
    let mut x = key ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    (0..VALUE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct Fixture {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    root: std::path::PathBuf,
    backend: RocksDbBackend,
    scope: StoreScope,
    store: KeyedStateStore,
    state: ValueState<Vec<u8>>,
    keys: u64,
    round: u64,
    checkpoint: u64,
    last: Option<KeyedSnapshot>,
    /// Write-back part of each pause.
    /// Time from the barrier until each snapshot was complete.
    complete: Vec<Duration>,
}

impl Fixture {
    fn new() -> Self {
        let work = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
        let root = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
        let backend = RocksDbBackend::new(
            RocksDbConfig::default()
                .with_local_dir(work.path())
                .with_cache_entries(100_000),
        )
        .unwrap();
        let scope = StoreScope::new("bench", 0, 1, 128);
        let mut store = backend.open_keyed_store(&scope).unwrap();
        let state = store.value_state::<u64, Vec<u8>>("v").unwrap();
        // ~120 bytes per entry on disk: key layout, postcard length, 100 value bytes.
        let keys = state_mb() * (1 << 20) / 120;
        let t = Instant::now();
        for k in 0..keys {
            state
                .set(&mut KeyScope::new(&mut store, &k), value(k, 0))
                .unwrap();
        }
        store.compact().unwrap();
        let bytes = store.approximate_bytes().unwrap();
        println!(
            "rocksdb_checkpoint: {keys} keys, {:.0} MiB in RocksDB, loaded in {:.1?}",
            bytes as f64 / (1 << 20) as f64,
            t.elapsed()
        );
        let root_path = root.path().to_path_buf();
        let mut f = Self {
            _dirs: (work, root),
            root: root_path,
            backend,
            scope,
            store,
            state,
            keys,
            round: 0,
            checkpoint: 0,
            last: None,
            complete: Vec::new(),
        };
        // The first checkpoint places every file.
        f.checkpoint();
        f
    }

    fn change_one_percent(&mut self) {
        self.round += 1;
        for k in (self.round % 100..self.keys).step_by(100) {
            self.state
                .set(
                    &mut KeyScope::new(&mut self.store, &k),
                    value(k, self.round),
                )
                .unwrap();
        }
    }

    /// Takes a checkpoint; returns its synchronous duration and the bytes it added.
    fn checkpoint(&mut self) -> (Duration, u64, u64) {
        self.checkpoint += 1;
        let target = NativeTarget {
            root: self.root.clone(),
            private_dir: format!("chk-{}/bench-0.native", self.checkpoint),
        };
        let t = Instant::now();
        let pending = self.store.snapshot_in_background(Some(&target)).unwrap();
        let pause = t.elapsed();
        let snap = pending.wait().unwrap();
        self.complete.push(t.elapsed());
        let before: HashSet<String> = self
            .last
            .iter()
            .flat_map(|s| s.native[0].files.iter().map(|f| f.path.clone()))
            .collect();
        let m = &snap.native[0];
        let added = m
            .files
            .iter()
            .filter(|f| !before.contains(&f.path))
            .map(|f| f.bytes)
            .sum();
        let total = m.bytes();
        self.last = Some(snap);
        (pause, added, total)
    }
}

fn bench(c: &mut Criterion) {
    let mut f = Fixture::new();
    let mut group = c.benchmark_group("rocksdb_checkpoint");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    let mut shares = Vec::new();
    group.bench_function("sync_pause_after_1pct_change", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                f.change_one_percent();
                let (pause, added, all) = f.checkpoint();
                shares.push(added as f64 / all as f64);
                total += pause;
            }
            total
        })
    });
    shares.sort_by(f64::total_cmp);
    f.complete.sort();
    println!(
        "rocksdb_checkpoint: snapshots were complete (write-back and checkpoint done in the background) {:.1?} after the barrier (median of {})",
        f.complete[f.complete.len() / 2],
        f.complete.len()
    );
    println!(
        "rocksdb_checkpoint: an incremental checkpoint after 1% of keys changed added {:.2}% of the checkpoint's bytes (median of {})",
        shares[shares.len() / 2] * 100.0,
        shares.len()
    );
    let snap = f.last.clone().unwrap();
    let (backend, scope, root) = (f.backend.clone(), f.scope.clone(), f.root.clone());
    group.bench_function("restore", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let mut store = restore(&backend, &scope, &snap, &root);
                let v = store.value_state::<u64, Vec<u8>>("v").unwrap();
                assert!(v
                    .get(&mut KeyScope::new(&mut store, &7u64))
                    .unwrap()
                    .is_some());
                total += t.elapsed();
            }
            total
        })
    });
    let t = Instant::now();
    let halves: usize = (0..2)
        .map(|w| {
            let scope = StoreScope::new("bench", w, 2, 128);
            let mut s = restore(
                &backend,
                &scope,
                &snap.clone().filter(scope.key_groups),
                &root,
            );
            s.value_state::<u64, Vec<u8>>("v").unwrap();
            s.stats().unwrap().entries()
        })
        .sum();
    assert_eq!(halves as u64, f.keys);
    println!(
        "rocksdb_checkpoint: restore rescaled 1 -> 2 workers (both, one after the other) in {:.1?}",
        t.elapsed()
    );
    group.finish();
}

fn restore(
    b: &RocksDbBackend,
    scope: &StoreScope,
    snap: &KeyedSnapshot,
    root: &Path,
) -> KeyedStateStore {
    b.restore_keyed_store(scope, vec![snap.clone()], root)
        .unwrap()
}

criterion_group!(benches, bench);
criterion_main!(benches);
