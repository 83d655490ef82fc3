//! Keyed distinct count: generator → `key_by((item, hour))` → map state of users + value
//! state of the count → emit on every new distinct user. The same job as Flink's
//! heap-state UV benchmark (`MapState<user, Boolean>` + `ValueState<Long>` per key), on the
//! same 20M-event stream; it checks the same checksum (19,999,156 distinct triples).
//!
//! `cargo bench --bench keyed_distinct`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use criterion::{criterion_group, criterion_main, Criterion};
use ferroflow::connectors::{ClickEvent, GeneratorConfig, GeneratorSource};
use ferroflow::prelude::*;
use std::time::{Duration, Instant};
use support::{bench_parallelism, cpu_time};

const EVENTS: u64 = 20_000_000;
const DISTINCT: u64 = 19_999_156;
const HOUR_MS: i64 = 3_600_000;

#[derive(Clone, Default)]
struct Distinct {
    users: Option<MapState<u64, ()>>,
    count: Option<ValueState<u64>>,
}

impl KeyedProcessFunction for Distinct {
    type Key = (u64, i64);
    type In = ClickEvent;
    type Out = ((u64, i64), u64);

    fn open(&mut self, ctx: &mut OpenContext<'_, (u64, i64)>) -> Result<()> {
        self.users = Some(ctx.map_state("users")?);
        self.count = Some(ctx.value_state("count")?);
        Ok(())
    }

    fn process(
        &mut self,
        e: ClickEvent,
        ctx: &mut KeyedContext<'_, (u64, i64)>,
        out: &mut Collector<'_, Self::Out>,
    ) -> Result<()> {
        let (Some(users), Some(count)) = (self.users, self.count) else {
            return Ok(());
        };
        if users.insert(ctx, e.user_id, ())?.is_none() {
            let n = count.get_or_insert_with(ctx, || 0)?;
            *n += 1;
            let n = *n;
            out.collect((*ctx.key(), n));
        }
        Ok(())
    }
}

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
        .key_by(|e: &ClickEvent| (e.item_id, e.ts - e.ts.rem_euclid(HOUR_MS)))
        .process(Distinct::default())
        .sink(sink.clone());
    let (cpu0, t0) = (cpu_time(), Instant::now());
    env.execute().expect("job");
    let (wall, cpu) = (t0.elapsed(), cpu_time() - cpu0);
    assert_eq!(
        sink.count(),
        DISTINCT,
        "one update per new distinct (item, hour, user)"
    );
    (wall, cpu)
}

fn keyed_distinct(c: &mut Criterion) {
    bench_parallelism(c, "keyed_distinct", EVENTS, run);
}

criterion_group!(benches, keyed_distinct);
criterion_main!(benches);
