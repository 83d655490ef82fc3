//! Upgrades by savepoint: a new version of a job, with operators added, finds the state of
//! each operator by its uid; state of an operator the new version lacks is an error
//! unless allow_non_restored_state; a state whose type changed is an error naming it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ferroflow::prelude::*;
use ferroflow::testing::{CountPerKey, ScriptedSource, Step};
use ferroflow::{CheckpointConfig, Collector, OpenContext, RestoreFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Numbers 0..1000, then 1000..1100 only in the second version's script, then the end
/// (the first version idles until stopped).
fn source(second: bool) -> ScriptedSource<u64> {
    let mut steps = vec![Step::Emit((0..1000).collect())];
    if second {
        steps.push(Step::Emit((1000..1100).collect()));
    } else {
        steps.push(Step::IdleForever);
    }
    ScriptedSource::new(vec![steps])
}

fn env(dir: &Path) -> StreamEnvironment {
    let env = StreamEnvironment::local(2);
    env.enable_checkpointing(
        CheckpointConfig::new(dir.join("checkpoints")).with_interval(Duration::from_secs(60)),
    );
    env
}

/// Runs the first version until it counted every number, and stops it with a savepoint.
fn first_version(dir: &Path, uids: bool) -> PathBuf {
    let env = env(dir);
    let out = CollectSink::new();
    let mut numbers = env.from_source(source(false), WatermarkStrategy::none());
    if uids {
        numbers = numbers.uid("numbers");
    }
    let mut counts = numbers.key_by(|x| x % 10).process(CountPerKey::default());
    if uids {
        counts = counts.uid("count-per-key");
    }
    let sink = counts.sink(out.clone());
    if uids {
        sink.uid("out");
    }
    let job = env.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.len() < 1000 {
        assert!(Instant::now() < deadline, "the first version did not count");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (savepoint, _) = job.stop_with_savepoint().unwrap();
    savepoint
}

/// The second version: two more operators before the count (which shifts every
/// generated name), and the next hundred numbers.
fn second_version(
    dir: &Path,
    savepoint: PathBuf,
    uids: bool,
    config: EnvConfig,
) -> Result<Vec<(u64, u64)>> {
    let env = StreamEnvironment::new(config.with_signal_handling(false).with_parallelism(2));
    env.enable_checkpointing(
        CheckpointConfig::new(dir.join("checkpoints")).with_interval(Duration::from_secs(60)),
    );
    env.restore_from(RestoreFrom::Path(savepoint));
    let out = CollectSink::new();
    let mut numbers = env.from_source(source(true), WatermarkStrategy::none());
    if uids {
        numbers = numbers.uid("numbers");
    }
    let mut counts = numbers
        .filter(|x| *x < u64::MAX)
        .map(|x| x)
        .key_by(|x| x % 10)
        .process(CountPerKey::default());
    if uids {
        counts = counts.uid("count-per-key");
    }
    let sink = counts.sink(out.clone());
    if uids {
        sink.uid("out");
    }
    env.execute()?;
    Ok(out.sorted())
}

#[test]
fn operators_with_uids_keep_their_state_across_a_changed_job() {
    let dir = tempfile::tempdir().unwrap();
    let savepoint = first_version(dir.path(), true);
    let out = second_version(dir.path(), savepoint, true, EnvConfig::default()).unwrap();
    // Only the new hundred numbers are read, and each key goes on from 100.
    assert_eq!(out.len(), 100, "{out:?}");
    for key in 0..10 {
        let last = out.iter().filter(|(k, _)| *k == key).map(|(_, n)| *n).max();
        assert_eq!(last, Some(110), "key {key}: {out:?}");
    }
}

#[test]
fn without_uids_a_changed_job_refuses_the_savepoint_naming_the_operators() {
    let dir = tempfile::tempdir().unwrap();
    let savepoint = first_version(dir.path(), false);
    let error = second_version(dir.path(), savepoint, false, EnvConfig::default()).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("holds state of operators this job does not have"),
        "{text}"
    );
    assert!(text.contains("(keyed state)"), "{text}");
    assert!(text.contains("allow_non_restored_state"), "{text}");
}

#[test]
fn allow_non_restored_state_starts_without_the_orphaned_state() {
    let dir = tempfile::tempdir().unwrap();
    let savepoint = first_version(dir.path(), false);
    let config = EnvConfig::default().with_allow_non_restored_state(true);
    let out = second_version(dir.path(), savepoint, false, config).unwrap();
    // The source kept its generated name (it is the first operator in both versions) and
    // its position; the count's state was dropped, so every count starts over.
    assert_eq!(out.len(), 100);
    assert!(out.iter().all(|(_, n)| *n <= 10), "{out:?}");
}

/// Keeps its count as text under the name the first version kept a number.
#[derive(Clone, Default)]
struct CountAsText {
    count: Option<ValueState<String>>,
}

impl KeyedProcessFunction for CountAsText {
    type Key = u64;
    type In = u64;
    type Out = u64;

    fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<()> {
        self.count = Some(ctx.value_state("count")?);
        Ok(())
    }

    fn process(
        &mut self,
        record: u64,
        _ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, u64>,
    ) -> Result<()> {
        out.collect(record);
        Ok(())
    }
}

#[test]
fn a_state_whose_type_changed_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let savepoint = first_version(dir.path(), true);
    let env = env(dir.path());
    env.restore_from(RestoreFrom::Path(savepoint));
    env.from_source(source(true), WatermarkStrategy::none())
        .uid("numbers")
        .key_by(|x| x % 10)
        .process(CountAsText::default())
        .uid("count-per-key")
        .sink(DiscardSink::new())
        .uid("out");
    let text = env.execute().unwrap_err().to_string();
    assert!(text.contains("state `count`"), "{text}");
    assert!(text.contains("String"), "{text}");
}

#[test]
fn two_operators_with_one_uid_fail_at_start() {
    let env = StreamEnvironment::local(1);
    env.from_iter(0..3u64)
        .uid("same")
        .map(|x| x)
        .uid("same")
        .sink(DiscardSink::new());
    let text = env.start().err().unwrap().to_string();
    assert!(text.contains("two operators have the uid `same`"), "{text}");
}
