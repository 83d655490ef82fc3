//! The lookup join across failures: a job killed with SIGKILL (or failing) while lookups
//! are in flight and records wait for retries, restored from its latest checkpoint,
//! publishes exactly what an uninterrupted run does, on the memory and the RocksDB
//! backends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::counting::latest;
use ferroflow::connectors::JsonLinesPartSink;
use ferroflow::operators::lookup_join::{
    Joined, LookupJoin, LookupJoinConfig, MemoryTable, MissRetry,
};
use ferroflow::prelude::*;
use ferroflow::testing::{ScriptedSource, Step};
use ferroflow::{CheckpointConfig, RestoreFrom};
use std::path::Path;
use std::time::Duration;

const N: u64 = 4_000;
const ITEMS: u64 = 300;
/// Items at or above this have no row.
const PRESENT: u64 = 250;

type Click = (u64, u64);

fn item_of(seq: u64) -> u64 {
    (seq * 7 + seq / 11) % ITEMS
}

fn brand(item: u64) -> String {
    format!("brand-{item}")
}

/// Clicks in batches of 40 with a pause after each, so that checkpoints land while
/// lookups are in flight and records wait for retries.
fn clicks() -> ScriptedSource<Click> {
    let all: Vec<Click> = (0..N).map(|s| (s, item_of(s))).collect();
    let steps = all
        .chunks(40)
        .flat_map(|c| [Step::Emit(c.to_vec()), Step::Idle(Duration::from_millis(3))])
        .collect();
    ScriptedSource::new(vec![steps])
}

fn expected() -> Vec<(u64, u64, Option<String>)> {
    (0..N)
        .map(|s| {
            let item = item_of(s);
            (s, item, (item < PRESENT).then(|| brand(item)))
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Memory,
    #[cfg(feature = "rocksdb")]
    RocksDb,
}

fn run(dir: &Path, backend: Backend, fail_after: Option<u64>, restore: RestoreFrom) -> Result<()> {
    let env = common::env(2);
    env.enable_checkpointing(
        CheckpointConfig::new(dir.join("checkpoints")).with_interval(Duration::from_millis(30)),
    );
    match backend {
        Backend::Memory => {}
        #[cfg(feature = "rocksdb")]
        Backend::RocksDb => {
            env.set_state_backend(
                ferroflow::state::RocksDbBackend::new(
                    ferroflow::state::RocksDbConfig::default()
                        .with_local_dir(dir.join("rocksdb"))
                        .with_cache_entries(16),
                )
                .unwrap(),
            );
        }
    }
    env.restore_from(restore);
    let table = MemoryTable::new((0..PRESENT).map(|i| (i, brand(i))));
    table.set_latency(Duration::from_millis(2));
    let config = LookupJoinConfig {
        // Misses wait for two retries, so records are held at most barriers.
        retry: MissRetry {
            attempts: 2,
            delay: Duration::from_millis(15),
            multiplier: 1.0,
            ..MissRetry::default()
        },
        cache_rows: 50,
        ..LookupJoinConfig::default()
    };
    let clicks = env
        .from_source(clicks(), WatermarkStrategy::none())
        .try_map(common::fail_after(fail_after));
    LookupJoin::partial(table, config)
        .left(clicks, |c: &Click| c.1)?
        .map(|j: Joined<Click, String>| (j.event.0, j.event.1, j.dim))
        .sink(JsonLinesPartSink::new(dir.join("out")));
    env.execute().map(|_| ())
}

fn published(dir: &Path) -> Vec<(u64, u64, Option<String>)> {
    let mut out = Vec::new();
    for f in JsonLinesPartSink::<()>::published(&dir.join("out")).unwrap() {
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            out.push(serde_json::from_str(line).unwrap());
        }
    }
    out.sort();
    out
}

fn backends() -> Vec<Backend> {
    vec![
        Backend::Memory,
        #[cfg(feature = "rocksdb")]
        Backend::RocksDb,
    ]
}

#[test]
fn a_failing_job_restored_publishes_each_record_once() {
    for backend in backends() {
        let clean = tempfile::tempdir().unwrap();
        run(clean.path(), backend, None, RestoreFrom::Nothing).unwrap();
        assert_eq!(published(clean.path()), expected(), "{backend:?}");
        let d = tempfile::tempdir().unwrap();
        let err = run(d.path(), backend, Some(2_500), RestoreFrom::Nothing).unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        run(d.path(), backend, None, latest()).unwrap();
        assert_eq!(published(d.path()), expected(), "{backend:?}");
    }
}

/// The job of `killed_with_sigkill_and_restored`, run in a child process of this test
/// binary; without `FERROFLOW_LOOKUP_CHILD_DIR` it does nothing.
#[test]
fn child_job() {
    let Ok(root) = std::env::var("FERROFLOW_LOOKUP_CHILD_DIR") else {
        return;
    };
    let backend = match std::env::var("FERROFLOW_LOOKUP_BACKEND").as_deref() {
        #[cfg(feature = "rocksdb")]
        Ok("rocksdb") => Backend::RocksDb,
        _ => Backend::Memory,
    };
    run(Path::new(&root), backend, None, latest()).unwrap();
}

#[test]
fn killed_with_sigkill_and_restored() {
    for backend in backends() {
        let d = tempfile::tempdir().unwrap();
        std::env::set_var(
            "FERROFLOW_LOOKUP_BACKEND",
            format!("{backend:?}").to_lowercase(),
        );
        common::kill_after_checkpoint(
            "child_job",
            "FERROFLOW_LOOKUP_CHILD_DIR",
            d.path(),
            &d.path().join("checkpoints"),
            3,
        );
        assert!(
            published(d.path()).len() < N as usize,
            "killed before the end"
        );
        run(d.path(), backend, None, latest()).unwrap();
        assert_eq!(published(d.path()), expected(), "{backend:?}");
    }
}
