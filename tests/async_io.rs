//! The async operator: calls with random delays, retries of inputs that cannot be
//! answered yet, failures of the job at many points, and the process killed with
//! SIGKILL. With either barrier mode and
//! either output order, the published output after a failure and a restore is exactly
//! that of an uninterrupted run; ordered output keeps input order; the bound on calls in
//! flight holds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::counting::latest;
use ferroflow::connectors::JsonLinesPartSink;
use ferroflow::prelude::*;
use ferroflow::testing::{ScriptedSource, Step};
use ferroflow::{AsyncCall, AsyncConfig, AsyncFunction, CheckpointConfig, OnBarrier, Reply};
use ferroflow::{Error, RestoreFrom};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const N: u64 = 3_000;

/// A pseudo-random number from `x` (SplitMix64's finaliser).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Answers each number after a random delay of up to 12 ms: multiples of 7 are "not
/// there yet" for their first two attempts, multiples of 11 produce nothing, the rest
/// come out with the attempt that answered them. Counts calls in flight.
#[derive(Clone)]
struct SlowLookup {
    in_flight: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

impl SlowLookup {
    fn new() -> Self {
        Self {
            in_flight: Arc::new(AtomicUsize::new(0)),
            most: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl AsyncFunction for SlowLookup {
    type In = u64;
    type Out = (u64, u32);

    fn call(&mut self, inputs: &[u64], attempt: u32) -> AsyncCall<(u64, u32)> {
        let inputs = inputs.to_vec();
        let (in_flight, most) = (Arc::clone(&self.in_flight), Arc::clone(&self.most));
        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(now, Ordering::SeqCst);
        Box::pin(async move {
            let delay = mix(inputs[0] * 31 + u64::from(attempt)) % 12;
            tokio::time::sleep(Duration::from_millis(delay)).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(inputs
                .iter()
                .map(|&x| {
                    if x % 7 == 0 && attempt < 3 {
                        Reply::RetryAfter(Duration::from_millis(3))
                    } else if x % 11 == 0 {
                        Reply::Skip
                    } else {
                        Reply::Emit((x, attempt))
                    }
                })
                .collect())
        })
    }
}

fn expected() -> Vec<(u64, u32)> {
    (0..N)
        .filter(|x| x % 11 != 0)
        .map(|x| (x, if x % 7 == 0 { 3 } else { 1 }))
        .collect()
}

/// The numbers in batches of 25 with a pause after each, so that checkpoints land while
/// calls are in flight.
fn numbers() -> ScriptedSource<u64> {
    let steps = (0..N)
        .collect::<Vec<_>>()
        .chunks(25)
        .flat_map(|c| [Step::Emit(c.to_vec()), Step::Idle(Duration::from_millis(2))])
        .collect();
    ScriptedSource::new(vec![steps])
}

fn run(
    dir: &Path,
    config: &AsyncConfig,
    fail_after: Option<u64>,
    restore: RestoreFrom,
) -> Result<()> {
    let env = common::env(2);
    env.enable_checkpointing(
        CheckpointConfig::new(dir.join("checkpoints")).with_interval(Duration::from_millis(25)),
    );
    env.restore_from(restore);
    env.from_source(numbers(), WatermarkStrategy::none())
        .rebalance()
        .try_map(common::fail_after(fail_after))
        .process_async(
            SlowLookup::new(),
            config.clone().with_capacity(8).with_max_batch(10),
        )
        .sink(JsonLinesPartSink::new(dir.join("out")));
    env.execute().map(|_| ())
}

/// The first few records on which two sorted outputs differ, for assertion messages.
fn first_differences(got: &[(u64, u32)], want: &[(u64, u32)]) -> String {
    let (got, want): (std::collections::BTreeSet<_>, std::collections::BTreeSet<_>) =
        (got.iter().collect(), want.iter().collect());
    let missing: Vec<_> = want.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(&want).take(5).collect();
    format!("missing {missing:?}, unexpected {extra:?}")
}

fn published(dir: &Path) -> Vec<(u64, u32)> {
    let mut out = Vec::new();
    for f in JsonLinesPartSink::<()>::published(&dir.join("out")).unwrap() {
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            out.push(serde_json::from_str(line).unwrap());
        }
    }
    out.sort_unstable();
    out
}

#[test]
fn output_is_exactly_once_across_failures_in_every_mode() {
    let want = expected();
    for on_barrier in [OnBarrier::Snapshot, OnBarrier::Drain] {
        for ordered in [false, true] {
            let config = AsyncConfig::default()
                .ordered(ordered)
                .on_barrier(on_barrier);
            let clean = tempfile::tempdir().unwrap();
            run(clean.path(), &config, None, RestoreFrom::Nothing).unwrap();
            let got = published(clean.path());
            assert!(
                got == want,
                "{on_barrier:?} ordered={ordered}: {}",
                first_differences(&got, &want)
            );
            for fail_after in [400, 1_900] {
                let d = tempfile::tempdir().unwrap();
                let err =
                    run(d.path(), &config, Some(fail_after), RestoreFrom::Nothing).unwrap_err();
                assert!(err.to_string().contains("injected failure"), "{err}");
                run(d.path(), &config, None, latest()).unwrap();
                let got = published(d.path());
                assert!(
                    got == want,
                    "{on_barrier:?} ordered={ordered} failing after {fail_after}: {} of {} \
                     records, {}",
                    got.len(),
                    want.len(),
                    first_differences(&got, &want)
                );
            }
        }
    }
}

/// The job of `killed_with_sigkill_and_restored`, run in a child process of this test
/// binary; without `FERROFLOW_ASYNC_CHILD_DIR` it does nothing.
#[test]
fn child_job() {
    let Ok(root) = std::env::var("FERROFLOW_ASYNC_CHILD_DIR") else {
        return;
    };
    run(Path::new(&root), &AsyncConfig::default(), None, latest()).unwrap();
}

#[test]
fn killed_with_sigkill_and_restored() {
    let want = expected();
    for wait_for in [1u64, 3] {
        let d = tempfile::tempdir().unwrap();
        // Killed with calls in flight.
        common::kill_after_checkpoint(
            "child_job",
            "FERROFLOW_ASYNC_CHILD_DIR",
            d.path(),
            &d.path().join("checkpoints"),
            wait_for,
        );
        assert!(
            published(d.path()).len() < want.len(),
            "killed before the end"
        );
        run(d.path(), &AsyncConfig::default(), None, latest()).unwrap();
        let got = published(d.path());
        assert!(
            got == want,
            "killed after {wait_for} checkpoints: {}",
            first_differences(&got, &want)
        );
    }
}

#[test]
fn ordered_output_keeps_input_order_and_calls_in_flight_stay_bounded() {
    let env = common::env(1);
    let out = CollectSink::new();
    let lookup = SlowLookup::new();
    env.from_source(numbers(), WatermarkStrategy::none())
        .process_async(
            lookup.clone(),
            AsyncConfig::default()
                .ordered(true)
                .with_capacity(4)
                .with_max_batch(5),
        )
        .sink(out.clone());
    env.execute().unwrap();
    let got = out.take();
    assert!(
        got == expected(),
        "{}",
        first_differences(&got, &expected())
    );
    let most = lookup.most.load(Ordering::SeqCst);
    assert!(
        (2..=4).contains(&most),
        "at most {most} calls were in flight"
    );
}

/// Fails every call with a retryable error a given number of times, then answers.
#[derive(Clone)]
struct Flaky {
    failures_left: Arc<AtomicUsize>,
    retryable: bool,
}

impl AsyncFunction for Flaky {
    type In = u64;
    type Out = u64;
    fn call(&mut self, inputs: &[u64], _attempt: u32) -> AsyncCall<u64> {
        let inputs = inputs.to_vec();
        let left = Arc::clone(&self.failures_left);
        let retryable = self.retryable;
        Box::pin(async move {
            if left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(if retryable {
                    Error::retryable("connection refused")
                } else {
                    Error::user("bad query")
                });
            }
            Ok(inputs.into_iter().map(Reply::Emit).collect())
        })
    }
}

#[test]
fn retryable_errors_are_retried_and_others_fail_the_job() {
    let run = |failures: usize, retryable: bool| {
        let env = common::env(1);
        let out = CollectSink::new();
        env.from_iter(0..50u64)
            .process_async(
                Flaky {
                    failures_left: Arc::new(AtomicUsize::new(failures)),
                    retryable,
                },
                AsyncConfig::default().with_retries(3, Duration::from_millis(1)),
            )
            .sink(out.clone());
        env.execute().map(|_| out.sorted())
    };
    assert_eq!(run(3, true).unwrap(), (0..50).collect::<Vec<_>>());
    let err = run(usize::MAX, true).unwrap_err().to_string();
    assert!(
        err.contains("failed 4 times") && err.contains("connection refused"),
        "{err}"
    );
    let err = run(1, false).unwrap_err();
    assert!(err.to_string().contains("bad query"), "{err}");
    assert!(!err.is_retryable());
}

/// A call that never answers.
#[derive(Clone)]
struct Hang;

impl AsyncFunction for Hang {
    type In = u64;
    type Out = u64;
    fn call(&mut self, _inputs: &[u64], _attempt: u32) -> AsyncCall<u64> {
        Box::pin(std::future::pending())
    }
}

#[test]
fn a_call_that_times_out_fails_the_job_after_its_retries() {
    let env = common::env(1);
    env.from_iter(0..3u64)
        .process_async(
            Hang,
            AsyncConfig::default()
                .with_timeout(Duration::from_millis(20), ferroflow::OnTimeout::Retry)
                .with_retries(2, Duration::from_millis(1)),
        )
        .sink(DiscardSink::new());
    let err = env.execute().unwrap_err().to_string();
    assert!(
        err.contains("timed out") && err.contains("failed 3 times"),
        "{err}"
    );
}
