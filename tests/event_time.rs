//! Watermarks and timers: per-split watermarks with bounded out-of-orderness, the minimum
//! over inputs, idle splits, and the final watermark of bounded inputs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use ferroflow::connectors::{ClickEvent, GeneratorConfig, GeneratorSource};
use ferroflow::prelude::*;
use ferroflow::testing::{ScriptedSource, Step};
use ferroflow::{EnvConfig, Error};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const WINDOW: i64 = 1_000;

/// Counts events per key and tumbling window of one second; emits
/// `(key, window_start, count, watermark_at_fire)` when the window's timer fires.
/// Fails if a record arrives behind the watermark (it would be late).
#[derive(Clone, Default)]
struct WindowCount {
    counts: Option<MapState<i64, u64>>,
}

impl KeyedProcessFunction for WindowCount {
    type Key = u64;
    type In = (u64, i64);
    type Out = (u64, i64, u64, i64);

    fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<()> {
        self.counts = Some(ctx.map_state("counts")?);
        Ok(())
    }

    fn process(
        &mut self,
        (_, ts): (u64, i64),
        ctx: &mut KeyedContext<'_, u64>,
        _out: &mut Collector<'_, Self::Out>,
    ) -> Result<()> {
        if ts <= ctx.current_watermark() {
            return Err(Error::user(format!(
                "late record ts={ts} watermark={}",
                ctx.current_watermark()
            )));
        }
        let window = ts - ts.rem_euclid(WINDOW);
        let counts = self.counts.ok_or_else(|| Error::user("not opened"))?;
        *counts.get_or_insert_with(ctx, &window, || 0)? += 1;
        ctx.register_event_time_timer(window + WINDOW - 1);
        Ok(())
    }

    fn on_timer(
        &mut self,
        timer: Timer,
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, Self::Out>,
    ) -> Result<()> {
        assert_eq!(timer.domain, TimeDomain::EventTime);
        let window = timer.timestamp + 1 - WINDOW;
        let counts = self.counts.ok_or_else(|| Error::user("not opened"))?;
        let n = counts.remove(ctx, &window)?.unwrap_or(0);
        out.collect((*ctx.key(), window, n, ctx.current_watermark()));
        Ok(())
    }
}

fn env(parallelism: usize) -> StreamEnvironment {
    StreamEnvironment::new(
        EnvConfig::default()
            .with_parallelism(parallelism)
            .with_batch_size(64)
            .with_watermark_interval(Duration::ZERO)
            .with_signal_handling(false),
    )
}

#[test]
fn out_of_order_splits_fire_each_window_once_after_the_watermark_passes_it() {
    // 8 splits, each with timestamps up to 2 s out of order; the watermark allows 2 s.
    // 30K events over 60 s of event time: about 500 per window.
    let config = GeneratorConfig::default()
        .with_events(30_000)
        .with_span(Duration::from_secs(60))
        .with_users(50)
        .with_max_disorder(Duration::from_secs(2))
        .with_splits(8);
    let mut expected: BTreeMap<(u64, i64), u64> = BTreeMap::new();
    for e in common::all_events(&config) {
        *expected
            .entry((e.user_id % 5, e.ts - e.ts.rem_euclid(WINDOW)))
            .or_default() += 1;
    }
    for p in [1, 3] {
        let env = env(p);
        let out = CollectSink::new();
        let watermarks = WatermarkStrategy::bounded_out_of_orderness(
            Duration::from_secs(2),
            |e: &ClickEvent| e.ts,
        );
        env.from_source(GeneratorSource::new(config.clone()).unwrap(), watermarks)
            .map(|e| (e.user_id % 5, e.ts))
            .key_by(|r: &(u64, i64)| r.0)
            .process(WindowCount::default())
            .sink(out.clone());
        env.execute().unwrap();
        let fired = out.take();
        let mut got = BTreeMap::new();
        for (key, window, n, wm) in &fired {
            assert!(
                *wm >= window + WINDOW - 1,
                "window {window} fired at watermark {wm}"
            );
            assert!(
                got.insert((*key, *window), *n).is_none(),
                "window ({key},{window}) fired twice"
            );
        }
        assert_eq!(got, expected, "p={p}");
        // Timers fire in event-time order per key.
        for key in 0..5 {
            let windows: Vec<i64> = fired.iter().filter(|r| r.0 == key).map(|r| r.1).collect();
            assert!(
                windows.windows(2).all(|w| w[0] < w[1]),
                "key {key}: {windows:?}"
            );
        }
    }
}

#[test]
fn records_behind_the_watermark_are_detected_as_late() {
    // Disorder of 3 s against an allowance of 100 ms: some records must be late.
    let config = GeneratorConfig::default()
        .with_events(5_000)
        .with_span(Duration::from_secs(10))
        .with_max_disorder(Duration::from_secs(3));
    let env = env(1);
    let watermarks = WatermarkStrategy::bounded_out_of_orderness(
        Duration::from_millis(100),
        |e: &ClickEvent| e.ts,
    );
    env.from_source(GeneratorSource::new(config).unwrap(), watermarks)
        .map(|e| (e.user_id % 5, e.ts))
        .key_by(|r: &(u64, i64)| r.0)
        .process(WindowCount::default())
        .sink(DiscardSink::new());
    let err = env.execute().unwrap_err();
    assert!(err.to_string().contains("late record"), "{err}");
}

/// Split 0 has events at 0..=4 s right away; split 1 is silent for `quiet`, then emits
/// one event at 10 s. Returns how long after the start the 0 s window fired.
fn first_window_latency(idleness: Option<Duration>, quiet: Duration) -> Duration {
    let events: Vec<(u64, i64)> = (0..50).map(|i| (1, i * 100)).collect();
    let source = ScriptedSource::new(vec![
        vec![
            Step::Emit(events),
            Step::Idle(quiet + Duration::from_millis(200)),
        ],
        vec![Step::Idle(quiet), Step::Emit(vec![(2, 10_000)])],
    ]);
    let mut watermarks = WatermarkStrategy::monotonous(|r: &(u64, i64)| r.1);
    if let Some(t) = idleness {
        watermarks = watermarks.with_idleness(t);
    }
    let env = env(1);
    let start = Instant::now();
    let fired_at = CollectSink::new();
    let stamp = fired_at.clone();
    env.from_source(source, watermarks)
        .key_by(|r: &(u64, i64)| r.0)
        .process(WindowCount::default())
        .filter(|r| r.0 == 1 && r.1 == 0)
        .map(move |_| start.elapsed())
        .sink(stamp);
    env.execute().unwrap();
    let times = fired_at.take();
    assert_eq!(times.len(), 1);
    times[0]
}

#[test]
fn an_idle_split_does_not_hold_back_the_watermark_once_marked_idle() {
    let quiet = Duration::from_millis(1500);
    let with = first_window_latency(Some(Duration::from_millis(50)), quiet);
    assert!(
        with < Duration::from_millis(1000),
        "with idleness the window fired after {with:?}"
    );
    let without = first_window_latency(None, quiet);
    assert!(
        without >= quiet,
        "without idleness the window fired after {without:?}, before the quiet split spoke"
    );
}

#[test]
fn union_takes_the_minimum_watermark_of_its_inputs() {
    // Fast stream reaches 9.9 s at once; slow stream is quiet for 600 ms at 0 s.
    let fast = ScriptedSource::new(vec![vec![Step::Emit(
        (0..100).map(|i| (1u64, i * 100)).collect(),
    )]]);
    let slow = ScriptedSource::new(vec![vec![
        Step::Emit(vec![(2u64, 0)]),
        Step::Idle(Duration::from_millis(600)),
        Step::Emit(vec![(2u64, 500)]),
    ]]);
    let env = env(2);
    let wm = |r: &(u64, i64)| r.1;
    let out = CollectSink::new();
    env.from_source(fast, WatermarkStrategy::monotonous(wm))
        .union(env.from_source(slow, WatermarkStrategy::monotonous(wm)))
        .key_by(|r: &(u64, i64)| r.0)
        .process(WindowCount::default())
        .sink(out.clone());
    // The slow record at 500 ms would be late if the union let the fast watermark through.
    env.execute().unwrap();
    let got: BTreeMap<(u64, i64), u64> = out
        .take()
        .into_iter()
        .map(|(k, w, n, _)| ((k, w), n))
        .collect();
    assert_eq!(got.get(&(2, 0)), Some(&2));
    assert_eq!(got.values().sum::<u64>(), 102);
}

#[test]
fn the_final_watermark_fires_every_pending_event_timer() {
    let env = env(2);
    let out = CollectSink::new();
    // Timestamps far in the future relative to the data: only the end of input fires them.
    env.from_iter((0..1000u64).map(|i| (i % 10, 1_000_000 + (i as i64))))
        .key_by(|r: &(u64, i64)| r.0)
        .process(WindowCount::default())
        .sink(out.clone());
    env.execute().unwrap();
    let fired = out.take();
    assert_eq!(fired.iter().map(|r| r.2).sum::<u64>(), 1000);
    assert!(
        fired.iter().all(|r| r.3 == i64::MAX),
        "fired by the final watermark"
    );
}
