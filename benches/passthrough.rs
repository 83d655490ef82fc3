//! Pass-through: generator → map → discarding sink, at parallelism 1 and 2.
//!
//! Measures the runtime's per-record overhead on the chained (no exchange) path.
//! `cargo bench --bench passthrough`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use criterion::{criterion_group, criterion_main, Criterion};
use ferroflow::connectors::{GeneratorConfig, GeneratorSource};
use ferroflow::prelude::*;
use std::time::{Duration, Instant};
use support::{bench_parallelism, cpu_time};

const EVENTS: u64 = 20_000_000;

fn run(parallelism: usize) -> (Duration, Duration) {
    let env = StreamEnvironment::new(
        EnvConfig::default()
            .with_parallelism(parallelism)
            .with_signal_handling(false),
    );
    let sink = DiscardSink::new();
    let source =
        GeneratorSource::new(GeneratorConfig::default().with_events(EVENTS)).expect("config");
    env.from_source(source, WatermarkStrategy::none())
        .map(|e| e.user_id ^ e.item_id)
        .sink(sink.clone());
    let (cpu0, t0) = (cpu_time(), Instant::now());
    env.execute().expect("job");
    let (wall, cpu) = (t0.elapsed(), cpu_time() - cpu0);
    assert_eq!(sink.count(), EVENTS);
    (wall, cpu)
}

fn passthrough(c: &mut Criterion) {
    bench_parallelism(c, "passthrough", EVENTS, run);
}

criterion_group!(benches, passthrough);
criterion_main!(benches);
