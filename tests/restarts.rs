//! Restart strategies: a job whose sink fails is rebuilt in the process and restored from
//! its newest checkpoint, and its output is still exactly once; a spent budget ends the
//! job with the last error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use ferroflow::prelude::*;
use ferroflow::restart::{FixedDelay, RestartStrategy};
use ferroflow::testing::{ScriptedSource, Step};
use ferroflow::{CheckpointConfig, Error, SinkContext};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the sink published, by commit id.
type Published = Arc<Mutex<BTreeMap<String, Vec<u64>>>>;

/// Publishes only at commit, under ids that make a repeated commit harmless: the
/// published records are exactly once when the runtime is.
#[derive(Clone)]
struct Transactional {
    published: Published,
    worker: usize,
    attempt: u64,
    buffer: Vec<u64>,
    /// Writing a batch with this record fails while `failures` is below `fail_times`.
    poison: u64,
    failures: Arc<AtomicUsize>,
    fail_times: usize,
}

impl Transactional {
    /// Fails `fail_times` times on the batch holding `poison`.
    fn new(poison: u64, failures: &Arc<AtomicUsize>, fail_times: usize) -> Self {
        Self {
            published: Published::default(),
            worker: 0,
            attempt: 0,
            buffer: Vec::new(),
            poison,
            failures: Arc::clone(failures),
            fail_times,
        }
    }

    fn publish(&self, committables: Vec<serde_json::Value>) {
        let mut published = self.published.lock();
        for c in committables {
            let id = c["id"].as_str().unwrap().to_string();
            let records: Vec<u64> = serde_json::from_value(c["records"].clone()).unwrap();
            published.insert(id, records);
        }
    }
}

impl Sink<u64> for Transactional {
    fn open(&mut self, ctx: &SinkContext) -> Result<()> {
        self.worker = ctx.worker;
        self.attempt = ctx.attempt;
        self.publish(ctx.restored_commits.clone());
        Ok(())
    }

    fn write(&mut self, batch: Vec<u64>) -> Result<()> {
        if batch.contains(&self.poison)
            && self.failures.fetch_add(1, Ordering::SeqCst) < self.fail_times
        {
            return Err(Error::user("the sink's store is down"));
        }
        self.buffer.extend(batch);
        Ok(())
    }

    fn prepare_commit(&mut self, checkpoint: u64) -> Result<Option<serde_json::Value>> {
        let records = std::mem::take(&mut self.buffer);
        Ok(Some(serde_json::json!({
            "id": format!("{}-{checkpoint}", self.worker),
            "records": records,
        })))
    }

    fn commit(&mut self, committables: Vec<serde_json::Value>) -> Result<()> {
        self.publish(committables);
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        let records = std::mem::take(&mut self.buffer);
        self.publish(vec![serde_json::json!({
            "id": format!("{}-final-{}", self.worker, self.attempt),
            "records": records,
        })]);
        Ok(())
    }
}

/// `n` numbers in steps of ten with a pause between, so that checkpoints complete while
/// it runs.
fn numbers(n: u64) -> ScriptedSource<u64> {
    let steps = (0..n)
        .collect::<Vec<_>>()
        .chunks(10)
        .flat_map(|c| [Step::Emit(c.to_vec()), Step::Idle(Duration::from_millis(4))])
        .collect();
    ScriptedSource::new(vec![steps])
}

fn job(
    dir: &std::path::Path,
    strategy: RestartStrategy,
    fail_times: usize,
) -> (StreamEnvironment, Published, Arc<AtomicUsize>) {
    let env = StreamEnvironment::new(
        EnvConfig::default()
            .with_parallelism(2)
            .with_signal_handling(false)
            .with_restart(strategy)
            .with_http("127.0.0.1:0".parse().unwrap()),
    );
    env.enable_checkpointing(
        CheckpointConfig::new(dir.join("checkpoints")).with_interval(Duration::from_millis(50)),
    );
    let failures = Arc::new(AtomicUsize::new(0));
    let sink = Transactional::new(1_500, &failures, fail_times);
    let published = Arc::clone(&sink.published);
    env.from_source(numbers(2_000), WatermarkStrategy::none())
        .rebalance()
        .map(|x| x)
        .sink(sink);
    (env, published, failures)
}

#[test]
fn a_sink_failing_three_times_restarts_from_checkpoints_with_exactly_once_output() {
    let dir = tempfile::tempdir().unwrap();
    let strategy = RestartStrategy::FixedDelay(FixedDelay {
        attempts: 5,
        delay: Duration::from_millis(20),
    });
    let (env, published, failures) = job(dir.path(), strategy, 3);
    let handle = env.start().unwrap();
    let addr = handle.http_addr().unwrap();
    let result = loop {
        if handle.is_finished() {
            break handle;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(result.restarts(), 3, "one restart per failure");
    // The status endpoints tell the same, with the errors.
    let jobs: serde_json::Value = serde_json::from_str(&common::http::get(addr, "/jobs")).unwrap();
    assert_eq!(jobs["restarts"], 3, "{jobs}");
    assert_eq!(jobs["state"], "finished", "{jobs}");
    let errors = jobs["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 3, "{jobs}");
    assert!(errors[0]["message"]
        .as_str()
        .unwrap()
        .contains("the sink's store is down"));
    let metrics = common::http::get(addr, "/metrics");
    // At least: the recorder is process-wide, and other tests may share the process.
    let restarts = common::http::series_sum(&metrics, "ferroflow_restarts_total", &[]);
    assert!(restarts.is_some_and(|r| r >= 3.0), "{metrics}");
    let checkpoints = result.checkpoints();
    assert!(checkpoints.completed > 0, "{checkpoints:?}");
    result
        .join()
        .expect("the job finishes after three restarts");
    assert_eq!(
        failures.load(Ordering::SeqCst),
        4,
        "three failures, then a success"
    );
    let mut all: Vec<u64> = published.lock().values().flatten().copied().collect();
    let total = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(total, all.len(), "a record was published twice");
    assert_eq!(all, (0..2_000).collect::<Vec<_>>(), "records lost");
}

#[test]
fn a_spent_budget_ends_the_job_with_the_last_error() {
    let dir = tempfile::tempdir().unwrap();
    let strategy = RestartStrategy::FixedDelay(FixedDelay {
        attempts: 2,
        delay: Duration::from_millis(10),
    });
    let (env, _published, failures) = job(dir.path(), strategy, usize::MAX);
    let handle = env.start().unwrap();
    while !handle.is_finished() {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(handle.restarts(), 2);
    let error = handle.join().unwrap_err();
    assert!(
        error.to_string().contains("the sink's store is down"),
        "{error}"
    );
    assert_eq!(
        failures.load(Ordering::SeqCst),
        3,
        "the first run and two restarts"
    );
}

#[test]
fn without_a_strategy_and_checkpoints_the_first_failure_ends_the_job() {
    let env = StreamEnvironment::local(1);
    let failures = Arc::new(AtomicUsize::new(0));
    let sink = Transactional::new(5, &failures, usize::MAX);
    env.from_iter(0..10u64).sink(sink);
    let handle = env.start().unwrap();
    let error = handle.join().unwrap_err();
    assert!(error.to_string().contains("down"), "{error}");
    assert_eq!(failures.load(Ordering::SeqCst), 1);
}

#[test]
fn a_collection_source_cannot_be_restarted_and_says_so() {
    let env = StreamEnvironment::new(
        EnvConfig::default()
            .with_parallelism(1)
            .with_signal_handling(false)
            .with_restart(RestartStrategy::FixedDelay(FixedDelay {
                attempts: 3,
                delay: Duration::ZERO,
            })),
    );
    let sink = Transactional::new(5, &Arc::default(), usize::MAX);
    env.from_iter(0..10u64).sink(sink);
    let error = env.start().unwrap().join().unwrap_err();
    assert!(
        error
            .to_string()
            .contains("cannot be read again by a restarted job"),
        "{error}"
    );
}
