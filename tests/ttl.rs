//! State TTL inside a running job: the keyed runtime moves the TTL clocks with watermarks
//! and batches, so expired state is gone for the next record of its key, on both backends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ferroflow::prelude::*;
use ferroflow::state::{MemoryBackend, StateBackend, StateDescriptor, StateTtl, ValueState};
use ferroflow::testing::{ScriptedSource, Step};
use ferroflow::Error;
use std::collections::BTreeMap;
use std::time::Duration;

const HOUR: i64 = 3_600_000;

/// Counts records per key in a value state with an event-time TTL of one hour; emits
/// `(key, ts, count)` per record.
#[derive(Clone, Default)]
struct CountWithTtl {
    count: Option<ValueState<u64>>,
}

impl KeyedProcessFunction for CountWithTtl {
    type Key = u64;
    type In = (u64, i64);
    type Out = (u64, i64, u64);

    fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<()> {
        let ttl = StateTtl::event_time(Duration::from_millis(HOUR as u64));
        self.count = Some(ctx.value_state(StateDescriptor::new("count").with_ttl(ttl))?);
        Ok(())
    }

    fn process(
        &mut self,
        (key, ts): (u64, i64),
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, Self::Out>,
    ) -> Result<()> {
        let count = self.count.ok_or_else(|| Error::user("not opened"))?;
        let n = count.get_or_insert_with(ctx, || 0)?;
        *n += 1;
        out.collect((key, ts, *n));
        Ok(())
    }
}

fn run(backend: impl StateBackend) -> BTreeMap<(u64, i64), u64> {
    // Keys 1 and 2 at 0; key 2 again at 30 min (alive); an event at 3 h moves the
    // watermark past both; keys 1 and 2 come back after that and start from scratch.
    // A value is stamped with the watermark at the time of the write: key 3's first
    // record came while the watermark was still about 30 min, so it has expired too;
    // its record at 3 h + 3 ms was written at a watermark near 3 h and is alive.
    let pause = Step::Idle(Duration::from_millis(150));
    let source = ScriptedSource::new(vec![vec![
        Step::Emit(vec![(1u64, 0i64), (2, 0)]),
        pause.clone(),
        Step::Emit(vec![(2, HOUR / 2)]),
        pause.clone(),
        Step::Emit(vec![(3, 3 * HOUR)]),
        pause.clone(),
        Step::Emit(vec![
            (1, 3 * HOUR + 1),
            (2, 3 * HOUR + 2),
            (3, 3 * HOUR + 3),
        ]),
        pause,
        Step::Emit(vec![(3, 3 * HOUR + 4)]),
    ]]);
    let env = StreamEnvironment::new(
        EnvConfig::default()
            .with_parallelism(2)
            .with_watermark_interval(Duration::ZERO)
            .with_signal_handling(false),
    );
    env.set_state_backend(backend);
    let out = CollectSink::new();
    env.from_source(
        source,
        WatermarkStrategy::bounded_out_of_orderness(Duration::from_secs(1), |r: &(u64, i64)| r.1),
    )
    .key_by(|r: &(u64, i64)| r.0)
    .process(CountWithTtl::default())
    .sink(out.clone());
    env.execute().unwrap();
    out.take()
        .into_iter()
        .map(|(k, ts, n)| ((k, ts), n))
        .collect()
}

fn expected() -> BTreeMap<(u64, i64), u64> {
    [
        ((1, 0), 1),
        ((2, 0), 1),
        ((2, HOUR / 2), 2),
        ((3, 3 * HOUR), 1),
        // Expired: key 1 was last written at watermark < 0, key 2 at < 30 min.
        ((1, 3 * HOUR + 1), 1),
        ((2, 3 * HOUR + 2), 1),
        ((3, 3 * HOUR + 3), 1),
        // Written at a watermark of 3 h - 1 s: alive.
        ((3, 3 * HOUR + 4), 2),
    ]
    .into_iter()
    .collect()
}

#[test]
fn event_time_ttl_expires_state_between_records_on_the_memory_backend() {
    assert_eq!(run(MemoryBackend), expected());
}

#[cfg(feature = "rocksdb")]
#[test]
fn event_time_ttl_expires_state_between_records_on_rocksdb() {
    let dir = tempfile::tempdir().unwrap();
    let backend = ferroflow::state::RocksDbBackend::new(
        ferroflow::state::RocksDbConfig::default()
            .with_local_dir(dir.path())
            .with_cache_entries(1),
    )
    .unwrap();
    assert_eq!(run(backend), expected());
}
