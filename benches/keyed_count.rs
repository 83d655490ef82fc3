//! Keyed count: generator → key_by (100K keys) → value-state count → discarding sink, at
//! parallelism 1 and 2, with the in-memory state backend.
//!
//! Every record crosses a keyed exchange (hash into key groups, batch per target, bounded
//! channel) and updates keyed state. `cargo bench --bench keyed_count`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use criterion::{criterion_group, criterion_main, Criterion};
use ferroflow::connectors::{ClickEvent, GeneratorConfig, GeneratorSource};
use ferroflow::prelude::*;
use std::time::{Duration, Instant};
use support::{bench_parallelism, cpu_time, FinalCount};

const EVENTS: u64 = 20_000_000;
const KEYS: u64 = 100_000;

fn run(parallelism: usize) -> (Duration, Duration) {
    let env = StreamEnvironment::new(
        EnvConfig::default()
            .with_parallelism(parallelism)
            .with_signal_handling(false),
    );
    let sink = CollectSink::new();
    let source = GeneratorSource::new(
        GeneratorConfig::default()
            .with_events(EVENTS)
            .with_items(KEYS),
    )
    .expect("config");
    env.from_source(source, WatermarkStrategy::none())
        .key_by(|e: &ClickEvent| e.item_id)
        .process(FinalCount::default())
        .sink(sink.clone());
    let (cpu0, t0) = (cpu_time(), Instant::now());
    env.execute().expect("job");
    let (wall, cpu) = (t0.elapsed(), cpu_time() - cpu0);
    let counts = sink.take();
    assert_eq!(counts.len() as u64, KEYS, "one final count per key");
    assert_eq!(
        counts.iter().sum::<u64>(),
        EVENTS,
        "every event counted once"
    );
    (wall, cpu)
}

fn keyed_count(c: &mut Criterion) {
    bench_parallelism(c, "keyed_count", EVENTS, run);
}

criterion_group!(benches, keyed_count);
criterion_main!(benches);
