//! Keyed count on the RocksDB backend with exactly-once checkpoints every second:
//! generator → `key_by(item)` → value-state count (RocksDB behind a write-behind cache) →
//! sink of final counts, at parallelism 1 and 2.
//!
//! Two cases: 100,000 keys, whose working set fits the default cache, with a checkpoint
//! every second; and 1,000,000 keys with the cache set to 100,000 entries, so that nine in
//! ten accesses read from RocksDB and evicted changes are written back throughout, with a
//! checkpoint every 10 s. Checkpoints flush every cache and write a full snapshot.
//!
//! `cargo bench --bench keyed_count_rocksdb`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use criterion::{criterion_group, criterion_main, Criterion};
use ferroflow::connectors::{ClickEvent, GeneratorConfig, GeneratorSource};
use ferroflow::prelude::*;
use ferroflow::state::{RocksDbBackend, RocksDbConfig};
use ferroflow::CheckpointConfig;
use std::time::{Duration, Instant};
use support::{bench_parallelism, cpu_time, FinalCount};

fn run(
    parallelism: usize,
    events: u64,
    keys: u64,
    cache: usize,
    checkpoint_every: Duration,
) -> (Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let env = StreamEnvironment::new(
        EnvConfig::default()
            .with_parallelism(parallelism)
            .with_signal_handling(false),
    );
    let rocksdb = RocksDbConfig::default()
        .with_local_dir(dir.path().join("db"))
        .with_cache_entries(cache);
    env.set_state_backend(RocksDbBackend::new(rocksdb).unwrap());
    env.enable_checkpointing(
        CheckpointConfig::new(dir.path().join("checkpoints")).with_interval(checkpoint_every),
    );
    let sink = CollectSink::new();
    let config = GeneratorConfig::default()
        .with_events(events)
        .with_items(keys);
    let source = GeneratorSource::new(config).expect("config");
    env.from_source(source, WatermarkStrategy::none())
        .key_by(|e: &ClickEvent| e.item_id)
        .process(FinalCount::default())
        .sink(sink.clone());
    let (cpu0, t0) = (cpu_time(), Instant::now());
    env.execute().expect("job");
    let (wall, cpu) = (t0.elapsed(), cpu_time() - cpu0);
    let counts = sink.take();
    assert_eq!(
        counts.len(),
        distinct_items(events, keys),
        "one final count per key seen"
    );
    assert_eq!(
        counts.iter().sum::<u64>(),
        events,
        "every event counted once"
    );
    (wall, cpu)
}

/// How many distinct items `events` events over `keys` items contain (not every item
/// need appear), counted from the generator itself.
fn distinct_items(events: u64, keys: u64) -> usize {
    let source = GeneratorSource::new(
        GeneratorConfig::default()
            .with_events(events)
            .with_items(keys),
    )
    .expect("config");
    (0..events)
        .map(|i| source.event(i).item_id)
        .collect::<std::collections::HashSet<_>>()
        .len()
}

fn keyed_count_rocksdb(c: &mut Criterion) {
    bench_parallelism(c, "keyed_count_rocksdb_100k_keys", 20_000_000, |p| {
        run(p, 20_000_000, 100_000, 1_000_000, Duration::from_secs(1))
    });
    bench_parallelism(
        c,
        "keyed_count_rocksdb_1m_keys_100k_cache",
        5_000_000,
        |p| run(p, 5_000_000, 1_000_000, 100_000, Duration::from_secs(10)),
    );
}

criterion_group!(benches, keyed_count_rocksdb);
criterion_main!(benches);
