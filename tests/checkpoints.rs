//! Exactly-once through checkpoints: a job (replayable source → key_by → keyed count →
//! exactly-once part-file sink) fails or is killed at many points and is restored; its
//! published output always equals that of a run that never failed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::counting::*;

use ferroflow::prelude::*;
use ferroflow::{CheckpointConfig, RestoreFrom, SplitPosition, SplitReader, SplitStatus};
use std::path::Path;
use std::time::Duration;

fn complete_checkpoints(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|e| {
            e.flatten()
                .filter(|e| e.path().join("_metadata").is_file())
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn failures_at_many_points_never_duplicate_or_lose_output() {
    let want = expected();
    for (i, fail_after) in [1_500u64, 9_000, 17_777, 26_000, 39_000]
        .into_iter()
        .enumerate()
    {
        let d = dirs();
        let err = run(&d, 2, Some(fail_after), latest()).unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        assert!(
            complete_checkpoints(&d.checkpoints) > 0 || fail_after < 5_000,
            "kill point {i}: no checkpoint completed"
        );
        run(&d, 2, None, latest()).unwrap();
        assert_eq!(published(&d.output), want, "kill point {fail_after}");
    }
}

#[test]
fn repeated_failures_and_rescale_two_to_one_to_three() {
    let want = expected();
    let d = dirs();
    assert!(run(&d, 2, Some(12_000), latest()).is_err());
    assert!(run(&d, 1, Some(9_000), latest()).is_err());
    run(&d, 3, None, latest()).unwrap();
    assert_eq!(published(&d.output), want);
}

#[test]
fn a_run_without_failures_publishes_everything_and_keeps_only_recent_checkpoints() {
    let d = dirs();
    run(&d, 2, None, latest()).unwrap();
    assert_eq!(published(&d.output), expected());
    let kept = complete_checkpoints(&d.checkpoints);
    assert!(
        (1..=3).contains(&kept),
        "retained {kept} checkpoints, expected 1..=3"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&d.output)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "unpublished files left: {leftovers:?}"
    );
}

#[test]
fn a_damaged_checkpoint_is_named_and_fallback_uses_an_older_one() {
    let d = dirs();
    assert!(run(&d, 2, Some(30_000), latest()).is_err());
    assert!(
        complete_checkpoints(&d.checkpoints) >= 2,
        "need two checkpoints to fall back"
    );
    let newest = common::newest_checkpoint_dir(&d.checkpoints).unwrap();
    let state = std::fs::read_dir(&newest)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".state"))
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&state).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&state, bytes).unwrap();

    let err = run(&d, 2, None, latest()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&newest.display().to_string()) && msg.contains("checksum"),
        "{msg}"
    );
    assert!(
        published(&d.output).len() < expected().len(),
        "nothing ran from empty state"
    );

    // Falling back past a completed checkpoint replays what that checkpoint may already
    // have published: nothing is lost, and that stretch may appear twice.
    run(&d, 2, None, RestoreFrom::Latest { fallback: true }).unwrap();
    let mut got = published(&d.output);
    assert!(got.len() >= expected().len());
    got.dedup();
    assert_eq!(got, expected());
}

/// Runs the job in this process when started as the child of `killed_with_sigkill...`.
#[test]
fn child_job() {
    let Ok(root) = std::env::var("FERROFLOW_CHILD_DIR") else {
        return;
    };
    let d = Dirs {
        checkpoints: Path::new(&root).join("checkpoints"),
        output: Path::new(&root).join("out"),
        _tmp: tempfile::tempdir().unwrap(),
    };
    run(&d, 2, None, latest()).unwrap();
}

#[test]
fn killed_with_sigkill_and_restored() {
    let want = expected();
    for wait_for in [1u64, 6] {
        let d = dirs();
        let root = d.checkpoints.parent().unwrap().to_path_buf();
        common::kill_after_checkpoint(
            "child_job",
            "FERROFLOW_CHILD_DIR",
            &root,
            &d.checkpoints,
            wait_for,
        );
        assert!(
            published(&d.output).len() < want.len(),
            "killed before the end"
        );
        run(&d, 2, None, latest()).unwrap();
        assert_eq!(
            published(&d.output),
            want,
            "killed after {wait_for} checkpoints"
        );
    }
}

#[test]
fn checkpoints_need_replayable_sources() {
    struct OneShot;
    impl Source for OneShot {
        type Item = u64;
        fn name(&self) -> String {
            "one-shot".into()
        }
        fn create_splits(&mut self, _p: usize) -> Result<Vec<Box<dyn SplitReader<u64>>>> {
            Ok(vec![Box::new(Forever)])
        }
    }
    // The split's id defaults to its type's name.
    struct Forever;
    impl SplitReader<u64> for Forever {
        fn poll(&mut self, _max: usize, out: &mut Vec<u64>) -> Result<SplitStatus> {
            out.push(1);
            std::thread::sleep(Duration::from_millis(1));
            Ok(SplitStatus::More)
        }
    }
    let d = dirs();
    let env = common::env(1);
    env.enable_checkpointing(
        CheckpointConfig::new(&d.checkpoints).with_interval(Duration::from_millis(10)),
    );
    env.from_source(OneShot, WatermarkStrategy::none())
        .sink(DiscardSink::new());
    let err = env.execute().unwrap_err();
    assert!(
        err.to_string().contains("`forever`") && err.to_string().contains("replayable"),
        "{err}"
    );
}

/// Two replayable splits of one source that leave `split_id` at its default (the type's
/// name) would overwrite each other's position: the checkpoint fails, naming the id.
#[test]
fn replayable_splits_need_ids_of_their_own() {
    struct Twins;
    impl Source for Twins {
        type Item = u64;
        fn create_splits(&mut self, _p: usize) -> Result<Vec<Box<dyn SplitReader<u64>>>> {
            Ok(vec![Box::new(Counted(0)), Box::new(Counted(0))])
        }
    }
    struct Counted(u64);
    impl SplitReader<u64> for Counted {
        fn poll(&mut self, _max: usize, out: &mut Vec<u64>) -> Result<SplitStatus> {
            out.push(self.0);
            self.0 += 1;
            std::thread::sleep(Duration::from_millis(1));
            Ok(SplitStatus::More)
        }
        fn position(&self) -> Option<SplitPosition> {
            Some(self.0.into())
        }
    }
    let d = dirs();
    let env = common::env(1);
    env.enable_checkpointing(
        CheckpointConfig::new(&d.checkpoints).with_interval(Duration::from_secs(3600)),
    );
    env.from_source(Twins, WatermarkStrategy::none())
        .sink(DiscardSink::new());
    let handle = env.start().unwrap();
    let err = handle.savepoint().unwrap_err().to_string();
    assert!(
        err.contains("twins") && err.contains("`counted`") && err.contains("unique"),
        "{err}"
    );
    handle.stop();
    handle.join().unwrap();
}

#[test]
fn stop_with_savepoint_then_resume_at_another_parallelism() {
    let d = dirs();
    let handle = job(&d, 2, None, RestoreFrom::Nothing).start().unwrap();
    std::thread::sleep(Duration::from_millis(250));
    let (savepoint, result) = handle.stop_with_savepoint().unwrap();
    assert!(savepoint
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("savepoint-"));
    assert!(savepoint.join("_metadata").is_file());
    let read = common::records_read(&result);
    assert!(read > 0 && read < EVENTS, "stopped midway, read {read}");
    assert_eq!(
        published(&d.output).len() as u64,
        read,
        "everything read before the savepoint is published"
    );

    job(&d, 3, None, RestoreFrom::Path(savepoint.clone()))
        .execute()
        .unwrap();
    assert_eq!(published(&d.output), expected());
    assert!(
        savepoint.join("_metadata").is_file(),
        "savepoints are not pruned"
    );
}

#[test]
fn a_savepoint_while_running_does_not_disturb_the_job() {
    let d = dirs();
    let handle = job(&d, 2, None, RestoreFrom::Nothing).start().unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let savepoint = handle.savepoint().unwrap();
    handle.join().unwrap();
    assert_eq!(published(&d.output), expected());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(savepoint.join("_metadata")).unwrap()).unwrap();
    let files = meta["state_files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "one state file per keyed worker");
    for f in files {
        let file = f["file"].as_str().unwrap();
        assert!(file.starts_with("savepoint-"), "{file}");
        assert!(d.checkpoints.join(file).is_file());
    }
}

#[test]
fn savepoints_need_checkpointing() {
    let env = common::env(1);
    env.from_source(
        ferroflow::testing::ScriptedSource::new(vec![vec![ferroflow::testing::Step::IdleForever]]),
        WatermarkStrategy::<u64>::none(),
    )
    .sink(DiscardSink::new());
    let handle = env.start().unwrap();
    let err = handle.savepoint().unwrap_err();
    assert!(err.to_string().contains("checkpointing"), "{err}");
    handle.stop();
    handle.join().unwrap();
}

#[cfg(feature = "rocksdb")]
#[test]
fn rocksdb_state_is_exactly_once_across_failures_and_rescale() {
    let d = dirs();
    assert!(job_on(&d, 2, Some(14_000), latest(), true)
        .execute()
        .is_err());
    assert!(job_on(&d, 3, Some(11_000), latest(), true)
        .execute()
        .is_err());
    job_on(&d, 1, None, latest(), true).execute().unwrap();
    assert_eq!(published(&d.output), expected());
    let working = d.checkpoints.with_file_name("rocksdb");
    let left = std::fs::read_dir(&working).map(|e| e.count()).unwrap_or(0);
    assert_eq!(left, 0, "working databases are removed when operators end");
}

/// Files in `shared/` that the complete checkpoints under `root` list, and all files there.
#[cfg(feature = "rocksdb")]
fn shared_files(
    root: &Path,
) -> (
    std::collections::BTreeSet<String>,
    std::collections::BTreeSet<String>,
) {
    let mut used = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(root).unwrap().flatten() {
        let meta = entry.path().join("_metadata");
        if !meta.is_file() {
            continue;
        }
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(meta).unwrap()).unwrap();
        for f in meta["state_files"].as_array().unwrap() {
            let file = root.join(f["file"].as_str().unwrap());
            for m in ferroflow::state::KeyedSnapshot::read_native_manifests(&file).unwrap() {
                used.extend(
                    m.files
                        .into_iter()
                        .filter(|f| f.is_shared())
                        .map(|f| f.path),
                );
            }
        }
    }
    let present = std::fs::read_dir(root.join("shared"))
        .unwrap()
        .flatten()
        .map(|e| format!("shared/{}", e.file_name().to_string_lossy()))
        .collect();
    (used, present)
}

/// Restored at the same parallelism, RocksDB state is opened from the checkpoint's own
/// files; checkpoints are incremental, and shared files no checkpoint uses are deleted.
#[cfg(feature = "rocksdb")]
#[test]
fn rocksdb_native_checkpoints_restore_in_place_and_collect_unused_files() {
    let d = dirs();
    assert!(job_on(&d, 2, Some(15_000), latest(), true)
        .execute()
        .is_err());
    let (used, present) = shared_files(&d.checkpoints);
    assert!(!used.is_empty(), "RocksDB checkpoints are native");
    assert!(
        used.is_subset(&present),
        "every file a checkpoint lists is there"
    );
    job_on(&d, 2, None, latest(), true).execute().unwrap();
    assert_eq!(published(&d.output), expected());
    let (used, present) = shared_files(&d.checkpoints);
    assert_eq!(used, present);
}

/// Savepoints are canonical: one taken on RocksDB resumes on the memory backend.
#[cfg(feature = "rocksdb")]
#[test]
fn a_rocksdb_savepoint_resumes_on_the_memory_backend() {
    let d = dirs();
    let handle = job_on(&d, 2, None, RestoreFrom::Nothing, true)
        .start()
        .unwrap();
    std::thread::sleep(Duration::from_millis(250));
    let (savepoint, _) = handle.stop_with_savepoint().unwrap();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(savepoint.join("_metadata")).unwrap()).unwrap();
    for f in meta["state_files"].as_array().unwrap() {
        let file = d.checkpoints.join(f["file"].as_str().unwrap());
        let native = ferroflow::state::KeyedSnapshot::read_native_manifests(&file).unwrap();
        assert!(native.is_empty(), "{} holds native state", file.display());
    }
    job(&d, 3, None, RestoreFrom::Path(savepoint))
        .execute()
        .unwrap();
    assert_eq!(published(&d.output), expected());
}
