//! The job of the exactly-once scenario tests: replayable generator → key_by → keyed
//! count → exactly-once part-file sink, failing after a given number of records.

use ferroflow::connectors::{ClickEvent, GeneratorConfig, GeneratorSource, JsonLinesPartSink};
use ferroflow::prelude::*;
use ferroflow::testing::CountPerKey;
use ferroflow::{CheckpointConfig, EnvConfig, RestoreFrom};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const EVENTS: u64 = 40_000;

pub fn generator() -> GeneratorConfig {
    // Throttled to ~0.8 s so that tens of checkpoints complete during a run.
    GeneratorConfig::default()
        .with_events(EVENTS)
        .with_users(1_500)
        .with_splits(4)
        .with_rate(50_000)
}

/// Every (user, running count) the job emits, from a brute-force count.
pub fn expected() -> Vec<(u64, u64)> {
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    for e in super::all_events(&generator()) {
        *counts.entry(e.user_id).or_default() += 1;
    }
    let mut out: Vec<(u64, u64)> = counts
        .into_iter()
        .flat_map(|(u, c)| (1..=c).map(move |n| (u, n)))
        .collect();
    out.sort_unstable();
    out
}

pub fn published(dir: &Path) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for f in JsonLinesPartSink::<()>::published(dir).unwrap() {
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            out.push(serde_json::from_str(line).unwrap());
        }
    }
    out.sort_unstable();
    out
}

pub struct Dirs {
    pub _tmp: tempfile::TempDir,
    pub checkpoints: PathBuf,
    pub output: PathBuf,
}

pub fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    Dirs {
        checkpoints: tmp.path().join("checkpoints"),
        output: tmp.path().join("out"),
        _tmp: tmp,
    }
}

/// Runs the job once; fails it after `fail_after` records when set.
pub fn run(
    d: &Dirs,
    parallelism: usize,
    fail_after: Option<u64>,
    restore: RestoreFrom,
) -> Result<()> {
    job(d, parallelism, fail_after, restore)
        .execute()
        .map(|_| ())
}

/// Builds the job on the memory backend.
pub fn job(
    d: &Dirs,
    parallelism: usize,
    fail_after: Option<u64>,
    restore: RestoreFrom,
) -> StreamEnvironment {
    job_on(d, parallelism, fail_after, restore, false)
}

/// Builds the job; on RocksDB when `rocksdb` (with a small write-behind cache, so that
/// state is written back during the run, not only at barriers).
pub fn job_on(
    d: &Dirs,
    parallelism: usize,
    fail_after: Option<u64>,
    restore: RestoreFrom,
    rocksdb: bool,
) -> StreamEnvironment {
    job_with(
        d,
        parallelism,
        fail_after,
        restore,
        rocksdb,
        CheckpointConfig::new(&d.checkpoints).with_interval(Duration::from_millis(25)),
    )
}

/// Builds the job with `checkpoints` as its checkpoint configuration.
pub fn job_with(
    d: &Dirs,
    parallelism: usize,
    fail_after: Option<u64>,
    restore: RestoreFrom,
    rocksdb: bool,
    checkpoints: CheckpointConfig,
) -> StreamEnvironment {
    let env = StreamEnvironment::new(
        EnvConfig::default()
            .with_parallelism(parallelism)
            .with_batch_size(64)
            .with_signal_handling(false)
            // Failures here must end the job: restarts have tests of their own.
            .with_restart(ferroflow::RestartStrategy::None),
    );
    env.enable_checkpointing(checkpoints);
    env.restore_from(restore);
    if rocksdb {
        #[cfg(feature = "rocksdb")]
        env.set_state_backend(
            ferroflow::state::RocksDbBackend::new(
                ferroflow::state::RocksDbConfig::default()
                    .with_local_dir(d.checkpoints.with_file_name("rocksdb"))
                    .with_cache_entries(500),
            )
            .unwrap(),
        );
        #[cfg(not(feature = "rocksdb"))]
        panic!("built without the rocksdb feature");
    }
    env.from_source(
        GeneratorSource::new(generator()).unwrap(),
        WatermarkStrategy::none(),
    )
    .try_map(super::fail_after(fail_after))
    .key_by(|e: &ClickEvent| e.user_id)
    .process(CountPerKey::default())
    .name("count")
    .sink(JsonLinesPartSink::new(&d.output));
    env
}

pub fn latest() -> RestoreFrom {
    RestoreFrom::Latest { fallback: false }
}
