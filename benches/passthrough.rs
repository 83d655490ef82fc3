//! Pass-through: generator → map → discarding sink, at parallelism 1 and 2.
//!
//! Measures the runtime's per-record overhead on the chained (no exchange) path.
//! `cargo bench --bench passthrough`

mod support;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferroflow::connectors::{GeneratorConfig, GeneratorSource};
use ferroflow::prelude::*;
use std::time::{Duration, Instant};
use support::{cpu_time, Totals};

const EVENTS: u64 = 20_000_000;

fn run(parallelism: usize) -> (Duration, Duration) {
    let env = StreamEnvironment::new(
        EnvConfig::default()
            .with_parallelism(parallelism)
            .with_signal_handling(false),
    );
    let sink = DiscardSink::new();
    let source = GeneratorSource::new(GeneratorConfig::default().with_events(EVENTS)).expect("config");
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
    let mut group = c.benchmark_group("passthrough");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(10);
    for p in [1usize, 2] {
        let mut totals = Totals::default();
        group.bench_with_input(BenchmarkId::new("parallelism", p), &p, |b, &p| {
            b.iter_custom(|iters| {
                let mut wall = Duration::ZERO;
                for _ in 0..iters {
                    let (w, cpu) = run(p);
                    totals.add(EVENTS, w, cpu);
                    wall += w;
                }
                wall
            });
        });
        totals.report(&format!("passthrough p={p}"));
    }
    group.finish();
}

criterion_group!(benches, passthrough);
criterion_main!(benches);
