//! Job lifecycle: bounded jobs end and flush, a slow sink bounds memory through
//! backpressure, any failing task ends the job with its error, and a stop request drains.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use ferroflow::connectors::{ClickEvent, GeneratorConfig, GeneratorSource, JsonLinesSink};
use ferroflow::prelude::*;
use ferroflow::testing::{CountPerKey, ScriptedSource, Step};
use ferroflow::{EnvConfig, Error, SinkContext};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn generator(events: u64) -> GeneratorSource {
    GeneratorSource::new(
        GeneratorConfig::default()
            .with_events(events)
            .with_users(1000),
    )
    .unwrap()
}

#[test]
fn bounded_job_terminates_and_flushes_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("counts.jsonl");
    let env = common::env(3);
    env.from_source(generator(20_000), WatermarkStrategy::none())
        .key_by(|e: &ClickEvent| e.user_id)
        .process(CountPerKey::default())
        .name("count")
        .sink(JsonLinesSink::new(&out));
    let result = env.execute().unwrap();
    let count = result
        .operator("count")
        .expect("named operator has metrics");
    assert_eq!((count.records_in, count.records_out), (20_000, 20_000));
    let mut lines = 0;
    for f in JsonLinesSink::<()>::output_files(&out, 3) {
        let text = std::fs::read_to_string(&f).unwrap();
        for line in text.lines() {
            let (_, n): (u64, u64) = serde_json::from_str(line).unwrap();
            assert!(n >= 1);
            lines += 1;
        }
    }
    assert_eq!(lines, 20_000, "every output record is in the files");
    assert_eq!(common::records_read(&result), 20_000);
}

#[test]
fn global_sink_writes_a_single_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("all.jsonl");
    let env = common::env(3);
    env.from_source(generator(5_000), WatermarkStrategy::none())
        .map(|e| e.seq)
        .global()
        .sink(JsonLinesSink::new(&out));
    env.execute().unwrap();
    let mut seqs: Vec<u64> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..5_000).collect::<Vec<_>>());
}

/// A sink that sleeps per batch and records the largest number of records that were
/// produced but not yet consumed.
#[derive(Clone)]
struct SlowSink {
    produced: Arc<AtomicI64>,
    consumed: Arc<AtomicI64>,
    max_in_flight: Arc<AtomicI64>,
}

impl Sink<u64> for SlowSink {
    fn write(&mut self, batch: Vec<u64>) -> Result<()> {
        let in_flight = self.produced.load(Ordering::SeqCst) - self.consumed.load(Ordering::SeqCst);
        self.max_in_flight.fetch_max(in_flight, Ordering::SeqCst);
        std::thread::sleep(Duration::from_micros(300));
        self.consumed
            .fetch_add(batch.len() as i64, Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn a_slow_sink_bounds_the_records_in_flight() {
    let (batch, capacity, p) = (64usize, 2usize, 2usize);
    let env = StreamEnvironment::new(
        EnvConfig::default()
            .with_parallelism(p)
            .with_batch_size(batch)
            .with_channel_capacity(capacity)
            .with_signal_handling(false),
    );
    let sink = SlowSink {
        produced: Arc::default(),
        consumed: Arc::default(),
        max_in_flight: Arc::default(),
    };
    let produced = Arc::clone(&sink.produced);
    let events = 100_000;
    env.from_source(generator(events), WatermarkStrategy::none())
        .inspect(move |_| {
            produced.fetch_add(1, Ordering::SeqCst);
        })
        .key_by(|e: &ClickEvent| e.user_id)
        .process(CountPerKey::default())
        .map(|(k, _)| k)
        .sink(sink.clone());
    let result = env.execute().unwrap();
    assert_eq!(sink.consumed.load(Ordering::SeqCst), events as i64);
    // What can be in flight: per source task one batch being processed plus one partly
    // filled buffer per target, and `capacity` batches in each of the p×p channels.
    let bound = (p * (batch + p * batch) + p * p * capacity * batch + p * batch) as i64;
    let max = sink.max_in_flight.load(Ordering::SeqCst);
    assert!(
        max <= bound,
        "in flight {max} > bound {bound}: memory is not bounded"
    );
    let blocked: Duration = result
        .metrics
        .iter()
        .filter(|m| m.operator.starts_with("exchange"))
        .map(|m| m.backpressure)
        .sum();
    assert!(
        blocked > Duration::from_millis(100),
        "the exchange should report backpressure, got {blocked:?}"
    );
}

fn assert_fails_with(env: &StreamEnvironment, needle: &str) -> Error {
    let started = Instant::now();
    let err = env.execute().expect_err("the job must fail");
    assert!(err.to_string().contains(needle), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "failure took {:?}",
        started.elapsed()
    );
    err
}

#[test]
fn an_error_in_one_worker_ends_the_job_with_that_error() {
    let env = common::env(3);
    env.from_source(generator(200_000), WatermarkStrategy::none())
        .try_map(|e: ClickEvent| {
            if e.seq == 150_000 {
                Err(Error::user(format!("bad record {}", e.seq)))
            } else {
                Ok(e)
            }
        })
        .key_by(|e: &ClickEvent| e.user_id)
        .process(CountPerKey::default())
        .sink(DiscardSink::new());
    let err = assert_fails_with(&env, "bad record 150000");
    assert!(matches!(err.root(), Error::User { .. }));
    assert!(!err.is_retryable());
}

#[derive(Clone, Default)]
struct PanicsOnKey;

impl KeyedProcessFunction for PanicsOnKey {
    type Key = u64;
    type In = ClickEvent;
    type Out = u64;
    fn process(
        &mut self,
        e: ClickEvent,
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, u64>,
    ) -> Result<()> {
        if *ctx.key() == 777 {
            panic!("boom on key 777");
        }
        out.collect(e.seq);
        Ok(())
    }
}

#[test]
fn a_panic_in_a_keyed_function_ends_the_job_without_hanging() {
    let env = common::env(2);
    env.from_source(generator(100_000), WatermarkStrategy::none())
        .key_by(|e: &ClickEvent| e.user_id)
        .process(PanicsOnKey)
        .sink(DiscardSink::new());
    let err = assert_fails_with(&env, "boom on key 777");
    assert!(matches!(err.root(), Error::Panic { .. }), "{err:?}");
    assert!(err.to_string().starts_with("task `"), "{err}");
}

#[derive(Clone)]
struct FailingSink {
    after: u64,
    seen: u64,
}

impl Sink<u64> for FailingSink {
    fn open(&mut self, ctx: &SinkContext) -> Result<()> {
        assert!(ctx.worker < ctx.parallelism);
        Ok(())
    }
    fn write(&mut self, batch: Vec<u64>) -> Result<()> {
        self.seen += batch.len() as u64;
        if self.seen > self.after {
            return Err(Error::io(
                "writing to the test sink",
                std::io::Error::other("disk full"),
            ));
        }
        Ok(())
    }
}

#[test]
fn a_failing_sink_ends_the_job_and_a_failing_source_too() {
    let env = common::env(2);
    env.from_source(generator(100_000), WatermarkStrategy::none())
        .map(|e| e.seq)
        .sink(FailingSink {
            after: 10_000,
            seen: 0,
        });
    assert_fails_with(&env, "disk full");

    let env = common::env(2);
    let source = ScriptedSource::new(vec![
        vec![
            Step::Emit((0..1000u64).collect()),
            Step::Fail("source broke".into()),
        ],
        vec![Step::IdleForever],
    ]);
    env.from_source(source, WatermarkStrategy::none())
        .key_by(|x: &u64| *x)
        .process(CountPerKey::default())
        .sink(DiscardSink::new());
    assert_fails_with(&env, "source broke");
}

#[test]
fn stop_drains_what_was_read_and_skips_the_final_watermark() {
    let env = common::env(2);
    let records: Vec<(u64, i64)> = (0..5000u64).map(|i| (i % 10, i as i64)).collect();
    let source = ScriptedSource::new(vec![vec![Step::Emit(records), Step::IdleForever]]);
    let counted = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&counted);
    let fired = CollectSink::new();
    env.from_source(source, WatermarkStrategy::monotonous(|r: &(u64, i64)| r.1))
        .key_by(|r: &(u64, i64)| r.0)
        .process(TimerAtEnd)
        .inspect(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .sink(fired.clone());
    let job = env.start().unwrap();
    let t = Instant::now();
    while job
        .metrics()
        .iter()
        .filter(|m| m.operator.starts_with("process"))
        .map(|m| m.records_in)
        .sum::<u64>()
        < 5000
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "records did not arrive"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!job.is_finished(), "the source is unbounded");
    job.stop_handle().stop();
    job.join().unwrap();
    assert_eq!(
        counted.load(Ordering::SeqCst),
        0,
        "no final watermark on stop: timers stay pending"
    );
}

/// Registers a timer far in event time for each key; emits the key when it fires.
#[derive(Clone)]
struct TimerAtEnd;

impl KeyedProcessFunction for TimerAtEnd {
    type Key = u64;
    type In = (u64, i64);
    type Out = u64;
    fn process(
        &mut self,
        _r: (u64, i64),
        ctx: &mut KeyedContext<'_, u64>,
        _out: &mut Collector<'_, u64>,
    ) -> Result<()> {
        ctx.register_event_time_timer(1_000_000_000);
        Ok(())
    }
    fn on_timer(
        &mut self,
        _t: Timer,
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, u64>,
    ) -> Result<()> {
        out.collect(*ctx.key());
        Ok(())
    }
}

#[test]
fn sigint_stops_a_job_that_handles_signals() {
    let env = StreamEnvironment::new(
        EnvConfig::default()
            .with_parallelism(1)
            .with_signal_handling(true),
    );
    let source = ScriptedSource::new(vec![vec![Step::Emit(vec![1u64, 2, 3]), Step::IdleForever]]);
    let out = CollectSink::new();
    env.from_source(source, WatermarkStrategy::none())
        .sink(out.clone());
    let job = env.start().unwrap();
    let t = Instant::now();
    while out.len() < 3 {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    signal_hook::low_level::raise(signal_hook::consts::SIGINT).unwrap();
    job.join().unwrap();
    assert_eq!(out.sorted(), vec![1, 2, 3]);
}

#[test]
fn processing_time_timers_fire_on_the_wall_clock() {
    #[derive(Clone)]
    struct Later;
    impl KeyedProcessFunction for Later {
        type Key = u64;
        type In = u64;
        type Out = (u64, i64);
        fn process(
            &mut self,
            _r: u64,
            ctx: &mut KeyedContext<'_, u64>,
            _o: &mut Collector<'_, (u64, i64)>,
        ) -> Result<()> {
            let at = ctx.current_processing_time() + 50;
            ctx.register_processing_time_timer(at);
            Ok(())
        }
        fn on_timer(
            &mut self,
            t: Timer,
            ctx: &mut KeyedContext<'_, u64>,
            out: &mut Collector<'_, (u64, i64)>,
        ) -> Result<()> {
            assert_eq!(t.domain, TimeDomain::ProcessingTime);
            assert!(ctx.current_processing_time() >= t.timestamp);
            out.collect((*ctx.key(), t.timestamp));
            Ok(())
        }
    }
    let env = common::env(2);
    let source = ScriptedSource::new(vec![vec![
        Step::Emit(vec![1u64, 2, 3]),
        Step::Idle(Duration::from_millis(300)),
    ]]);
    let out = CollectSink::new();
    env.from_source(source, WatermarkStrategy::none())
        .key_by(|x: &u64| *x)
        .process(Later)
        .sink(out.clone());
    env.execute().unwrap();
    assert_eq!(
        out.sorted().into_iter().map(|(k, _)| k).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
}

#[test]
fn invalid_graphs_and_configs_are_rejected_before_running() {
    let env = common::env(1);
    let _dangling = env.from_iter(vec![1u8]).map(|x| x + 1);
    let err = env.execute().unwrap_err();
    assert!(err.to_string().contains("does not end in a sink"), "{err}");

    let env = common::env(1);
    assert!(env
        .execute()
        .unwrap_err()
        .to_string()
        .contains("no streams"));

    let env = StreamEnvironment::new(
        EnvConfig::default()
            .with_parallelism(4)
            .with_max_parallelism(2)
            .with_signal_handling(false),
    );
    env.from_iter(vec![1u8]).sink(DiscardSink::new());
    assert!(matches!(env.execute().unwrap_err(), Error::Config(_)));

    let env = common::env(1);
    env.from_iter(vec![1u8])
        .set_parallelism(0)
        .sink(DiscardSink::new());
    assert!(env
        .execute()
        .unwrap_err()
        .to_string()
        .contains("at least 1"));
}
