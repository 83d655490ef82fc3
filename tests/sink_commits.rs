//! Two-phase sinks across a failed checkpoint: what a sink prepared for a checkpoint that
//! timed out is published with the next one, and if the job dies before publishing, the
//! restore hands the sink every committable still pending, not only the newest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use ferroflow::prelude::*;
use ferroflow::{CheckpointConfig, Error, JobResult, RestoreFrom, SinkContext};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
struct Seen {
    restored: Vec<serde_json::Value>,
    commits: Vec<Vec<serde_json::Value>>,
}

/// Prepares its checkpoint number as the committable; preparing checkpoint `slow` takes
/// longer than the checkpoint timeout, and a commit that includes it fails the job.
#[derive(Clone)]
struct TwoPhase {
    seen: Arc<Mutex<Seen>>,
    slow: Option<u64>,
}

impl Sink<u64> for TwoPhase {
    fn open(&mut self, ctx: &SinkContext) -> Result<()> {
        self.seen.lock().restored = ctx.restored_commits.clone();
        Ok(())
    }
    fn write(&mut self, _batch: Vec<u64>) -> Result<()> {
        Ok(())
    }
    fn prepare_commit(&mut self, checkpoint: u64) -> Result<Option<serde_json::Value>> {
        if Some(checkpoint) == self.slow {
            std::thread::sleep(Duration::from_millis(600));
        }
        Ok(Some(serde_json::json!(checkpoint)))
    }
    fn commit(&mut self, committables: Vec<serde_json::Value>) -> Result<()> {
        let slow = self.slow.map(|s| serde_json::json!(s));
        let fail = committables.len() > 1 && committables.first() == slow.as_ref();
        self.seen.lock().commits.push(committables);
        if fail {
            return Err(Error::user("stop before publishing"));
        }
        Ok(())
    }
}

/// Numbers with a pause between them, so that checkpoints are taken while it runs.
fn slow_numbers(n: u64) -> ferroflow::testing::ScriptedSource<u64> {
    use ferroflow::testing::Step;
    let steps = (0..n)
        .flat_map(|i| [Step::Emit(vec![i]), Step::Idle(Duration::from_millis(5))])
        .collect();
    ferroflow::testing::ScriptedSource::new(vec![steps])
}

fn run(dir: &std::path::Path, sink: TwoPhase, restore: RestoreFrom) -> Result<JobResult> {
    let env = common::env(1);
    env.enable_checkpointing(
        CheckpointConfig::new(dir)
            .with_interval(Duration::from_millis(50))
            .with_timeout(Duration::from_millis(200))
            .with_min_pause(Duration::from_millis(10)),
    );
    env.restore_from(restore);
    env.from_source(slow_numbers(400), WatermarkStrategy::none())
        .sink(sink);
    env.execute()
}

#[test]
fn a_committable_of_a_failed_checkpoint_is_kept_until_published() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sink = TwoPhase {
        seen: Arc::clone(&seen),
        slow: Some(2),
    };
    let err = run(dir.path(), sink, RestoreFrom::Nothing).unwrap_err();
    assert!(err.to_string().contains("stop before publishing"), "{err}");
    let failing = seen.lock().commits.last().cloned().unwrap();
    assert_eq!(
        failing.first(),
        Some(&serde_json::json!(2)),
        "checkpoint 2 timed out, so its committable waits for a later one: {failing:?}"
    );

    // Restored from the checkpoint whose completion published (or should have) the
    // committable of checkpoint 2: the sink gets both again.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sink = TwoPhase {
        seen: Arc::clone(&seen),
        slow: None,
    };
    run(dir.path(), sink, RestoreFrom::Latest { fallback: false }).unwrap();
    let restored = seen.lock().restored.clone();
    assert_eq!(restored, failing, "every pending committable is restored");
}
