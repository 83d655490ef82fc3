//! Keyed exchange: every record of a key reaches one worker (the owner of its key group),
//! and keyed results do not depend on parallelism.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use ferroflow::connectors::{ClickEvent, GeneratorConfig, GeneratorSource};
use ferroflow::prelude::*;
use ferroflow::state::{key_group_for_key, worker_for_key_group, KeyGroupRange};
use ferroflow::testing::CountPerKey;
use ferroflow::{BatchContext, Error, KeyedBatchFunction};
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

/// The sizes of the batches a [`KeyedBatchFunction`] was handed, in call order.
type BatchLog = std::sync::Arc<parking_lot::Mutex<Vec<usize>>>;

/// Counts records per item, record by record (`process`) or a batch at a time
/// (`process_batch`, which logs each batch's size).
#[derive(Clone)]
struct Batched {
    log: BatchLog,
    count: Option<ValueState<u64>>,
}

impl KeyedProcessFunction for Batched {
    type Key = u64;
    type In = ClickEvent;
    type Out = (u64, u64);

    fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<()> {
        self.count = Some(ctx.value_state("count")?);
        Ok(())
    }

    fn process(
        &mut self,
        _e: ClickEvent,
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, (u64, u64)>,
    ) -> Result<()> {
        let count = self.count.ok_or_else(|| Error::user("not opened"))?;
        let key = *ctx.key();
        let n = count.get_or_insert_with(ctx, || 0)?;
        *n += 1;
        out.collect((key, *n));
        Ok(())
    }
}

impl KeyedBatchFunction for Batched {
    fn process_batch(
        &mut self,
        batch: Vec<(u64, ClickEvent)>,
        ctx: &mut BatchContext<'_, u64>,
        out: &mut Collector<'_, (u64, u64)>,
    ) -> Result<()> {
        self.log.lock().push(batch.len());
        let count = self.count.ok_or_else(|| Error::user("not opened"))?;
        let (mut views, _timers) = ctx.value_views(&[count])?;
        for (key, _e) in batch {
            if let Some(view) = views.first_mut() {
                let n = view.get_or_insert_with(&key, || 0)?;
                *n += 1;
                out.collect((key, *n));
            }
        }
        Ok(())
    }
}

#[test]
fn a_batch_function_gets_batches_whole_and_counts_as_record_by_record() {
    let events = 20_000;
    let run = |batched: bool| {
        let env = StreamEnvironment::new(EnvConfig::default().with_parallelism(1));
        let source = GeneratorSource::new(generator(events, 500).with_items(300)).unwrap();
        let log = BatchLog::default();
        let out = CollectSink::new();
        let f = Batched {
            log: std::sync::Arc::clone(&log),
            count: None,
        };
        let keyed = env
            .from_source(source, WatermarkStrategy::none())
            .key_by(|e: &ClickEvent| e.item_id);
        let counted = if batched {
            keyed.process_batched(f)
        } else {
            keyed.process(f)
        };
        counted.sink(out.clone());
        env.execute().unwrap();
        let sizes = log.lock().clone();
        (out.take(), sizes)
    };
    let (per_record, none) = run(false);
    assert!(none.is_empty(), "process never hands a batch over");
    let (whole, sizes) = run(true);
    assert_eq!(whole, per_record, "the same counts in the same order");
    assert_eq!(sizes.iter().sum::<usize>() as u64, events);
    assert!(sizes.iter().any(|&n| n > 1), "{sizes:?}");
    let mut want: BTreeMap<u64, u64> = BTreeMap::new();
    let gen = GeneratorSource::new(generator(events, 500).with_items(300)).unwrap();
    for i in 0..events {
        *want.entry(gen.event(i).item_id).or_default() += 1;
    }
    let mut last: BTreeMap<u64, u64> = BTreeMap::new();
    for (k, n) in whole {
        let prev = last.insert(k, n).unwrap_or(0);
        assert_eq!(n, prev + 1);
    }
    assert_eq!(last, want);
}
