//! The split-reader hooks sources build on: `checkpoint_complete` hands each split the
//! position of the newest completed checkpoint, in order; `discover` adds splits while
//! the job runs; `owner` pins a split to a worker.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use ferroflow::prelude::*;
use ferroflow::{CheckpointConfig, SplitPosition, SplitReader, SplitStatus};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

/// Emits `from..to`, one record per poll with a short pause, and records completions.
struct Counter {
    id: String,
    next: u64,
    to: u64,
    completed: Arc<Mutex<Vec<(u64, u64)>>>,
    /// Splits to hand out once `next` reaches the first field.
    later: Option<(u64, Box<Counter>)>,
    owner: Option<usize>,
}

impl Counter {
    fn new(id: &str, from: u64, to: u64, completed: &Arc<Mutex<Vec<(u64, u64)>>>) -> Self {
        Self {
            id: id.into(),
            next: from,
            to,
            completed: Arc::clone(completed),
            later: None,
            owner: None,
        }
    }
}

impl SplitReader<u64> for Counter {
    fn split_id(&self) -> String {
        self.id.clone()
    }
    fn poll(&mut self, _max: usize, out: &mut Vec<u64>) -> Result<SplitStatus> {
        if self.next >= self.to {
            return Ok(SplitStatus::Finished);
        }
        std::thread::sleep(Duration::from_millis(2));
        out.push(self.next);
        self.next += 1;
        Ok(SplitStatus::More)
    }
    fn position(&self) -> Option<SplitPosition> {
        Some(serde_json::json!(self.next))
    }
    fn seek(&mut self, p: &SplitPosition) -> Result<()> {
        self.next = p.as_u64().unwrap();
        Ok(())
    }
    fn owner(&self, _parallelism: usize) -> Option<usize> {
        self.owner
    }
    fn discover(&mut self) -> Result<Vec<Box<dyn SplitReader<u64>>>> {
        match self.later.take() {
            Some((at, split)) if self.next >= at => Ok(vec![split as Box<dyn SplitReader<u64>>]),
            other => {
                self.later = other;
                Ok(Vec::new())
            }
        }
    }
    fn checkpoint_complete(&mut self, checkpoint: u64, p: &SplitPosition) -> Result<()> {
        self.completed
            .lock()
            .push((checkpoint, p.as_u64().unwrap()));
        Ok(())
    }
}

struct Splits(Vec<Counter>);

impl Source for Splits {
    type Item = u64;
    fn name(&self) -> String {
        "splits".into()
    }
    fn create_splits(&mut self, _p: usize) -> Result<Vec<Box<dyn SplitReader<u64>>>> {
        Ok(self
            .0
            .drain(..)
            .map(|c| Box::new(c) as Box<dyn SplitReader<u64>>)
            .collect())
    }
}

#[test]
fn completions_arrive_in_order_and_discovered_splits_are_read() {
    let completed = Arc::new(Mutex::new(Vec::new()));
    let mut first = Counter::new("a", 0, 150, &completed);
    first.later = Some((20, Box::new(Counter::new("b", 1000, 1050, &completed))));
    let dir = tempfile::tempdir().unwrap();
    let out = CollectSink::new();
    let env = common::env(1);
    env.enable_checkpointing(
        CheckpointConfig::new(dir.path()).with_interval(Duration::from_millis(30)),
    );
    env.from_source(Splits(vec![first]), WatermarkStrategy::none())
        .sink(out.clone());
    env.execute().unwrap();

    let want: Vec<u64> = (0..150).chain(1000..1050).collect();
    assert_eq!(out.sorted(), want);
    let completed = completed.lock().clone();
    assert!(completed.len() >= 2, "{completed:?}");
    // Per split, checkpoints and positions only move forward.
    for split in [0..150u64, 1000..1050] {
        let mine: Vec<_> = completed
            .iter()
            .filter(|(_, p)| split.contains(p) || *p == split.end)
            .collect();
        assert!(
            mine.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "{mine:?}"
        );
    }
}

#[test]
fn splits_go_to_the_worker_they_name() {
    let completed = Arc::new(Mutex::new(Vec::new()));
    let splits: Vec<Counter> = (0..4)
        .map(|i| {
            let mut c = Counter::new(&format!("s{i}"), i * 100, i * 100 + 5, &completed);
            c.owner = Some(1);
            c
        })
        .collect();
    let env = common::env(2);
    env.from_source(Splits(splits), WatermarkStrategy::none())
        .sink(DiscardSink::new());
    let result = env.execute().unwrap();
    let read: Vec<(usize, u64)> = result
        .metrics
        .iter()
        .filter(|m| m.operator.starts_with("source"))
        .map(|m| (m.worker, m.records_out))
        .collect();
    assert!(read.contains(&(1, 20)), "{read:?}");
    assert!(read.contains(&(0, 0)), "{read:?}");
}
