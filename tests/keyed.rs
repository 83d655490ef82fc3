//! Keyed exchange: every record of a key reaches one worker (the owner of its key group),
//! and keyed results do not depend on parallelism.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use ferroflow::connectors::{ClickEvent, GeneratorConfig, GeneratorSource};
use ferroflow::prelude::*;
use ferroflow::state::{key_group_for_key, worker_for_key_group, KeyGroupRange};
use ferroflow::testing::CountPerKey;
use ferroflow::{Error, PREFETCH_DATA_AHEAD, PREFETCH_STATE_AHEAD};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Emits `(key, worker)` for every record.
#[derive(Clone, Default)]
struct WhereAmI {
    worker: usize,
    parallelism: usize,
}

impl KeyedProcessFunction for WhereAmI {
    type Key = u64;
    type In = ClickEvent;
    type Out = (u64, usize);

    fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<()> {
        self.worker = ctx.worker();
        self.parallelism = ctx.parallelism();
        Ok(())
    }

    fn process(
        &mut self,
        _e: ClickEvent,
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, (u64, usize)>,
    ) -> Result<()> {
        let range = KeyGroupRange::for_worker(128, self.parallelism, self.worker);
        if !range.contains(key_group_for_key(ctx.key(), 128)) {
            return Err(Error::user(format!(
                "key {} on worker {} outside {range:?}",
                ctx.key(),
                self.worker
            )));
        }
        out.collect((*ctx.key(), self.worker));
        Ok(())
    }
}

fn generator(events: u64, users: u64) -> GeneratorConfig {
    GeneratorConfig::default()
        .with_events(events)
        .with_users(users)
}

#[test]
fn every_record_of_a_key_reaches_its_key_groups_worker() {
    let config = generator(40_000, 3_000);
    // `key_by` computes the key; `key_by_pair` takes it from a (key, value) pair.
    for (p, pairs) in (1..=4).flat_map(|p| [(p, false), (p, true)]) {
        let env = common::env(p);
        let out = CollectSink::new();
        let events = env.from_source(
            GeneratorSource::new(config.clone()).unwrap(),
            WatermarkStrategy::none(),
        );
        let keyed = if pairs {
            events.map(|e: ClickEvent| (e.user_id, e)).key_by_pair()
        } else {
            events.key_by(|e: &ClickEvent| e.user_id)
        };
        keyed.process(WhereAmI::default()).sink(out.clone());
        env.execute().unwrap();
        let seen = out.take();
        assert_eq!(seen.len(), 40_000, "p={p}: every record processed once");
        let mut workers: HashMap<u64, BTreeSet<usize>> = HashMap::new();
        for (key, worker) in seen {
            workers.entry(key).or_default().insert(worker);
        }
        let used: BTreeSet<usize> = workers.values().flatten().copied().collect();
        assert_eq!(used.len(), p, "p={p}: all workers get keys");
        for (key, ws) in workers {
            assert_eq!(ws.len(), 1, "p={p}: key {key} on workers {ws:?}");
            let owner = worker_for_key_group(key_group_for_key(&key, 128), 128, p);
            assert_eq!(ws.into_iter().next(), Some(owner));
        }
    }
}

#[test]
fn keyed_results_are_identical_for_every_parallelism() {
    let config = generator(60_000, 5_000).with_item_skew(1.1).with_items(500);
    let mut expected: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for e in common::all_events(&config) {
        *expected.entry((e.item_id, e.user_id % 7)).or_default() += 1;
    }
    for p in 1..=4 {
        let env = common::env(p);
        let out = CollectSink::new();
        env.from_source(
            GeneratorSource::new(config.clone()).unwrap(),
            WatermarkStrategy::none(),
        )
        .map(|e| (e.item_id, e.user_id % 7))
        .key_by(|k: &(u64, u64)| *k)
        .process(CountPerKey::default())
        .sink(out.clone());
        env.execute().unwrap();
        let mut finals: BTreeMap<(u64, u64), u64> = BTreeMap::new();
        for (k, n) in out.take() {
            let e = finals.entry(k).or_default();
            *e = (*e).max(n);
        }
        assert_eq!(finals, expected, "p={p}");
    }
}

#[test]
fn string_keys_and_tuple_keys_route_consistently() {
    let env = common::env(3);
    let out = CollectSink::new();
    let words: Vec<String> = (0..3000).map(|i| format!("w{}", i % 97)).collect();
    env.from_iter(words)
        .key_by(|w: &String| w.clone())
        .process(CountPerKey::default())
        .filter(|(_, n)| *n == 1)
        .sink(out.clone());
    env.execute().unwrap();
    assert_eq!(
        out.len(),
        97,
        "each word's first occurrence counted exactly once"
    );
}

/// Calls in order: a prefetch stage (or `None` for `process`) and the record's sequence
/// number.
type CallLog = std::sync::Arc<parking_lot::Mutex<Vec<(Option<Prefetch>, u64)>>>;

/// Counts records per item and logs, in call order, which records it was asked to
/// prefetch and which it processed.
#[derive(Clone)]
struct Prefetching {
    log: CallLog,
    count: Option<ValueState<u64>>,
}

impl KeyedProcessFunction for Prefetching {
    type Key = u64;
    type In = ClickEvent;
    type Out = (u64, u64);
    const PREFETCH: bool = true;

    fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<()> {
        self.count = Some(ctx.value_state("count")?);
        Ok(())
    }

    fn prefetch(&mut self, e: &ClickEvent, stage: Prefetch, ctx: &mut KeyedContext<'_, u64>) {
        assert_eq!(*ctx.key(), e.item_id, "the record's key is in scope");
        if let Some(count) = self.count {
            match stage {
                Prefetch::State => count.prefetch(ctx),
                Prefetch::Data => {
                    count.peek(ctx);
                }
            }
        }
        self.log.lock().push((Some(stage), e.seq));
    }

    fn process(
        &mut self,
        e: ClickEvent,
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, (u64, u64)>,
    ) -> Result<()> {
        self.log.lock().push((None, e.seq));
        let count = self.count.ok_or_else(|| Error::user("not opened"))?;
        let key = *ctx.key();
        let n = count.get_or_insert_with(ctx, || 0)?;
        *n += 1;
        out.collect((key, *n));
        Ok(())
    }
}

#[test]
fn a_function_is_asked_to_prefetch_records_ahead_of_processing_them() {
    let events = 20_000;
    let env = StreamEnvironment::new(EnvConfig::default().with_parallelism(1));
    let source = GeneratorSource::new(generator(events, 500).with_items(300)).unwrap();
    let log = CallLog::default();
    let out = CollectSink::new();
    env.from_source(source, WatermarkStrategy::none())
        .key_by(|e: &ClickEvent| e.item_id)
        .process(Prefetching {
            log: std::sync::Arc::clone(&log),
            count: None,
        })
        .sink(out.clone());
    env.execute().unwrap();
    // Counts are what they would be without prefetching.
    let mut last: BTreeMap<u64, u64> = BTreeMap::new();
    for (k, n) in out.take() {
        let prev = last.insert(k, n).unwrap_or(0);
        assert_eq!(n, prev + 1);
    }
    let mut want: BTreeMap<u64, u64> = BTreeMap::new();
    let gen = GeneratorSource::new(generator(events, 500).with_items(300)).unwrap();
    for i in 0..events {
        *want.entry(gen.event(i).item_id).or_default() += 1;
    }
    assert_eq!(last, want);
    // The prefetch calls made just before a record is processed are for the records
    // the set distances after it, and most records are prefetched in both stages.
    let log = log.lock();
    let mut pending = Vec::new();
    let mut calls = [0u64; 2];
    for &(stage, seq) in log.iter() {
        match stage {
            Some(stage) => pending.push((stage, seq)),
            None => {
                for (stage, ahead_seq) in pending.drain(..) {
                    let (ahead, i) = match stage {
                        Prefetch::State => (PREFETCH_STATE_AHEAD, 0),
                        Prefetch::Data => (PREFETCH_DATA_AHEAD, 1),
                    };
                    assert_eq!(ahead_seq, seq + ahead as u64, "{stage:?}");
                    calls[i] += 1;
                }
            }
        }
    }
    assert!(pending.is_empty());
    assert!(calls.iter().all(|&n| n * 10 > events * 9), "{calls:?}");
}
