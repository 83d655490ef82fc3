//! The exactly-once Kafka sink.
//!
//! On librdkafka's mock cluster (always run): transactions carry every record once, a
//! commit lost to a crash after its checkpoint completed is written again from the copy
//! in the checkpoint, and start is refused when exactly-once cannot hold.
//!
//! Against a broker with transactions and `read_committed` (noida-db, started by the test
//! harness, or Apache Kafka named by `FERROFLOW_KAFKA_BROKERS`): Kafka → keyed count →
//! Kafka, failed at many points and restored, read back with `read_committed`, has no
//! duplicate and no loss; aborted records stay hidden; a lost commit is made up once and
//! only once. The mock cluster (aborted records not hidden, transactional offsets not
//! applied) cannot show this.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::kafka::{broker, create_topic, produce, read_all, read_committed, unique};
use ferroflow::connectors::kafka::rdkafka::mocking::MockCluster;
use ferroflow::connectors::kafka::{
    JsonRecord, JsonValue, KafkaSink, KafkaSinkConfig, KafkaSource, KafkaSourceConfig,
};
use ferroflow::prelude::*;
use ferroflow::testing::{CountPerKey, ScriptedSource, Step};
use ferroflow::{CheckpointConfig, Error, JobResult, RestoreFrom, SinkContext};
use parking_lot::Mutex;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn sink_config(brokers: &str, topic: &str, prefix: &str) -> KafkaSinkConfig {
    let mut c = KafkaSinkConfig::new(brokers, topic).exactly_once(prefix);
    c.transaction_timeout = Duration::from_secs(60);
    c.flush_timeout = Duration::from_secs(30);
    c
}

fn sink(config: KafkaSinkConfig) -> KafkaSink<u64, JsonRecord<u64>> {
    KafkaSink::new(
        config,
        JsonRecord::new().with_key(|n: &u64| Some((n % 7).to_string().into_bytes())),
    )
}

fn checkpoints(dir: &Path) -> CheckpointConfig {
    // Kept, so that a test can restore an older one.
    CheckpointConfig::new(dir)
        .with_interval(Duration::from_millis(100))
        .with_retained(1_000)
}

/// A sink that fails the job instead of committing the first checkpoint prepared after
/// `after` records were written: a crash after that checkpoint completed and before its
/// transaction committed, with nothing written since.
#[derive(Clone)]
struct LoseCommit<S> {
    inner: S,
    written: Arc<AtomicU64>,
    after: u64,
    last: Arc<Mutex<Option<u64>>>,
    armed: Arc<AtomicBool>,
}

impl<S> LoseCommit<S> {
    fn new(inner: S, after: u64) -> Self {
        Self {
            inner,
            written: Arc::new(AtomicU64::new(0)),
            after,
            last: Arc::new(Mutex::new(None)),
            armed: Arc::new(AtomicBool::new(true)),
        }
    }
}

impl<T: Send + 'static, S: Sink<T> + Clone> Sink<T> for LoseCommit<S> {
    fn open(&mut self, ctx: &SinkContext) -> Result<()> {
        self.inner.open(ctx)
    }
    fn write(&mut self, batch: Vec<T>) -> Result<()> {
        self.written.fetch_add(batch.len() as u64, Ordering::SeqCst);
        self.inner.write(batch)
    }
    fn prepare_commit(&mut self, checkpoint: u64) -> Result<Option<serde_json::Value>> {
        if self.written.load(Ordering::SeqCst) >= self.after {
            self.last.lock().get_or_insert(checkpoint);
        }
        self.inner.prepare_commit(checkpoint)
    }
    fn commit(&mut self, committables: Vec<serde_json::Value>) -> Result<()> {
        let last = *self.last.lock();
        let hit = committables
            .iter()
            .any(|c| last.is_some() && c["checkpoint"].as_u64() == last);
        if hit && self.armed.swap(false, Ordering::SeqCst) {
            return Err(Error::user("crashed before committing"));
        }
        self.inner.commit(committables)
    }
    fn finish(&mut self) -> Result<()> {
        self.inner.finish()
    }
}

/// Emits `0..n` in small steps, then idles until stopped.
fn numbers(n: u64) -> ScriptedSource<u64> {
    let mut steps: Vec<Step<u64>> = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        steps.push(Step::Emit(chunk.to_vec()));
        steps.push(Step::Idle(Duration::from_millis(2)));
    }
    steps.push(Step::IdleForever);
    ScriptedSource::new(vec![steps])
}

/// Runs `numbers(n)` into `sink` until `done` says the output is complete or the job
/// ends, then stops it.
fn run_until<S: Sink<u64> + Clone>(
    dir: &Path,
    n: u64,
    restore: RestoreFrom,
    sink: S,
    done: impl Fn() -> bool,
) -> Result<JobResult> {
    let env = common::env(1);
    env.enable_checkpointing(checkpoints(dir));
    env.restore_from(restore);
    env.from_source(numbers(n), WatermarkStrategy::none())
        .sink(sink);
    let handle = env.start()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !handle.is_finished() && !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    handle.stop();
    handle.join()
}

/// The values of `records`, sorted.
fn values(records: &[(i32, Option<String>, String)]) -> Vec<u64> {
    let mut v: Vec<u64> = records.iter().map(|r| r.2.parse().unwrap()).collect();
    v.sort_unstable();
    v
}

/// The number of records in the transactions the newest checkpoint under `dir` holds.
fn records_in_newest_checkpoint(dir: &Path) -> u64 {
    let meta = common::newest_checkpoint_dir(dir)
        .unwrap()
        .join("_metadata");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(meta).unwrap()).unwrap();
    meta["sink_commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["committable"]["transaction"]["count"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum()
}

#[test]
fn transactions_carry_every_record_once_on_the_mock_cluster() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("out", 3, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let env = common::env(2);
    env.enable_checkpointing(checkpoints(dir.path()));
    let steps: Vec<Vec<Step<u64>>> = (0..2u64)
        .map(|s| {
            (0..20u64)
                .flat_map(|c| {
                    let from = s * 2_000 + c * 100;
                    [
                        Step::Emit((from..from + 100).collect()),
                        Step::Idle(Duration::from_millis(10)),
                    ]
                })
                .collect()
        })
        .collect();
    env.from_source(ScriptedSource::new(steps), WatermarkStrategy::none())
        .sink(sink(sink_config(&brokers, "out", "eos-mock")));
    env.execute().unwrap();
    assert_eq!(
        values(&read_all(&brokers, "out")),
        (0..4_000).collect::<Vec<_>>()
    );
}

#[test]
fn a_commit_lost_to_a_crash_is_written_again_from_the_checkpoint() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("out", 2, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let n = 3_000;
    let lose = LoseCommit::new(sink(sink_config(&brokers, "out", "eos-lost")), n);
    let err = run_until(dir.path(), n, RestoreFrom::Nothing, lose.clone(), || false).unwrap_err();
    assert!(
        err.to_string().contains("crashed before committing"),
        "{err}"
    );
    let lost = records_in_newest_checkpoint(dir.path());
    assert!(lost > 0, "the newest checkpoint holds the lost transaction");

    // The mock cluster shows aborted records too and does not apply the marker, so what
    // is read is every record once (committed or aborted) plus the records of every
    // transaction in the checkpoint, written again on restore.
    let got = || values(&read_all(&brokers, "out"));
    let want = n + lost;
    run_until(
        dir.path(),
        n,
        RestoreFrom::Latest { fallback: false },
        lose,
        || got().len() as u64 >= want,
    )
    .unwrap();
    let got = got();
    assert_eq!(got.len() as u64, want);
    let mut distinct = got.clone();
    distinct.dedup();
    assert_eq!(
        distinct,
        (0..n).collect::<Vec<_>>(),
        "every record is there"
    );
}

#[test]
fn start_is_refused_when_exactly_once_cannot_hold() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("out", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let env = common::env(1);
    env.from_iter(0..10u64)
        .sink(sink(sink_config(&brokers, "out", "eos-refused")));
    let err = env.execute().unwrap_err().to_string();
    assert!(err.contains("enable checkpointing"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let env = common::env(1);
    env.enable_checkpointing(
        CheckpointConfig::new(dir.path()).with_interval(Duration::from_secs(60)),
    );
    env.from_iter(0..10u64)
        .sink(sink(sink_config(&brokers, "out", "eos-refused")));
    let err = env.execute().unwrap_err().to_string();
    assert!(err.contains("transaction_timeout"), "{err}");
}

const USERS: u64 = 300;
const EVENTS: u64 = 12_000;

/// Every (user, running count) of the input, as the output JSON text.
fn expected_counts() -> Vec<String> {
    let mut counts = vec![0u64; USERS as usize];
    let mut out = Vec::new();
    for i in 0..EVENTS {
        let u = (i * 7_919) % USERS;
        counts[u as usize] += 1;
        out.push(format!("[{u},{}]", counts[u as usize]));
    }
    out.sort_unstable();
    out
}

/// Kafka → key_by user → running count → Kafka (exactly once), failing after
/// `fail_after` records when set.
fn keyed_job(
    brokers: &str,
    input: &str,
    output: &str,
    dir: &Path,
    parallelism: usize,
    fail_after: Option<u64>,
) -> Result<JobResult> {
    let env = common::env(parallelism);
    env.enable_checkpointing(checkpoints(dir));
    env.restore_from(RestoreFrom::Latest { fallback: false });
    let mut source = KafkaSourceConfig::new(brokers, &[input]);
    source.stop_at_end = true;
    source.group_id = format!("{output}-group");
    let mut config = KafkaSinkConfig::new(brokers, output).exactly_once(output);
    config.transaction_timeout = Duration::from_secs(60);
    env.from_source(
        KafkaSource::new(source, JsonValue::<u64>::new()),
        WatermarkStrategy::none(),
    )
    .try_map(common::fail_after(fail_after))
    .key_by(|u: &u64| *u)
    .process(CountPerKey::default())
    .sink(KafkaSink::new(
        config,
        JsonRecord::<(u64, u64)>::new()
            .with_key(|c: &(u64, u64)| Some(c.0.to_string().into_bytes())),
    ));
    env.execute()
}

#[test]
fn kafka_to_keyed_count_to_kafka_is_exactly_once_across_failures() {
    let broker = broker();
    let brokers = broker.brokers.clone();
    let input = unique("eos-in");
    let output = unique("eos-out");
    create_topic(&brokers, &input, 4);
    create_topic(&brokers, &output, 3);
    let records: Vec<_> = (0..EVENTS)
        .map(|i| {
            let u = (i * 7_919) % USERS;
            (Some(u.to_string()), u.to_string().into_bytes())
        })
        .collect();
    produce(&brokers, &input, &records);
    let dir = tempfile::tempdir().unwrap();
    for (parallelism, fail_after) in [(2, 1_500), (1, 4_000), (3, 2_500), (2, 6_000)] {
        let err = keyed_job(
            &brokers,
            &input,
            &output,
            dir.path(),
            parallelism,
            Some(fail_after),
        )
        .unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        let partial: Vec<String> = read_committed(&brokers, &output)
            .into_iter()
            .map(|r| r.2)
            .collect();
        let mut distinct = partial.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            partial.len(),
            "no duplicate after a failure"
        );
    }
    keyed_job(&brokers, &input, &output, dir.path(), 2, None).unwrap();
    let mut got: Vec<String> = read_committed(&brokers, &output)
        .into_iter()
        .map(|r| r.2)
        .collect();
    got.sort_unstable();
    assert_eq!(got, expected_counts());
    assert!(
        read_all(&brokers, &output).len() > got.len(),
        "the failed runs left aborted records, hidden from read_committed"
    );
}

#[test]
fn a_lost_commit_is_made_up_once_and_only_once() {
    let broker = broker();
    let brokers = broker.brokers.clone();
    let output = unique("eos-lost");
    create_topic(&brokers, &output, 2);
    let dir = tempfile::tempdir().unwrap();
    let n = 3_000;
    let lose = LoseCommit::new(sink(sink_config(&brokers, &output, &output)), n);
    run_until(dir.path(), n, RestoreFrom::Nothing, lose.clone(), || false).unwrap_err();
    assert!(records_in_newest_checkpoint(dir.path()) > 0);
    let got = || values(&read_committed(&brokers, &output));
    assert!(
        (got().len() as u64) < n,
        "the lost transaction is not visible"
    );
    let newest = common::newest_checkpoint_dir(dir.path()).unwrap();
    let all = (0..n).collect::<Vec<_>>();
    run_until(
        dir.path(),
        n,
        RestoreFrom::Latest { fallback: false },
        lose.clone(),
        || got().len() as u64 >= n,
    )
    .unwrap();
    assert_eq!(got(), all, "made up once");
    // Restoring the same checkpoint again: the marker shows the commit, nothing is
    // written twice.
    let start = Instant::now();
    run_until(dir.path(), n, RestoreFrom::Path(newest), lose, move || {
        start.elapsed() > Duration::from_secs(3)
    })
    .unwrap();
    assert_eq!(got(), all, "and only once");
}
