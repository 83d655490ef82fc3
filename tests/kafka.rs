//! Kafka source and sink against a real Kafka-protocol broker on loopback (noida-db,
//! started by the tests, or `FERROFLOW_KAFKA_BROKERS`): every partition read once, malformed
//! records to the dead-letter file, positions checkpointed and committed to the group,
//! restore after a savepoint without loss or duplicates, a cluster switch refused unless
//! asked for, partition discovery, and the sink's keyed partitioning.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::kafka::{
    broker, broker_of_cluster, committed, create_topic, produce, read_all, unique,
};
use ferroflow::connectors::kafka::{
    DeadLetter, JsonRecord, JsonValue, KafkaSink, KafkaSinkConfig, KafkaSource, KafkaSourceConfig,
    RestorePositions, Topics,
};
use ferroflow::prelude::*;
use ferroflow::{CheckpointConfig, RestoreFrom};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Ev {
    user: String,
    n: u64,
}

fn events(range: std::ops::Range<u64>) -> Vec<(Option<String>, Vec<u8>)> {
    range
        .map(|n| {
            let e = Ev {
                user: format!("u-{}", n % 7),
                n,
            };
            (Some(e.user.clone()), serde_json::to_vec(&e).unwrap())
        })
        .collect()
}

fn source(brokers: &str, topic: &str) -> KafkaSourceConfig {
    let mut c = KafkaSourceConfig::new(brokers, &[topic]);
    c.group_id = format!("{topic}-group");
    c
}

fn numbers(items: &[Ev]) -> Vec<u64> {
    let mut n: Vec<u64> = items.iter().map(|e| e.n).collect();
    n.sort_unstable();
    n
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_partition_is_read_once_and_malformed_records_go_to_the_dead_letter_file() {
    let b = broker();
    let topic = unique("read");
    create_topic(&b.brokers, &topic, 3);
    let mut records = events(0..600);
    for bad in [&b"{not json"[..], b"", b"[1,2]"] {
        records.insert(100, (Some("bad".into()), bad.to_vec()));
    }
    produce(&b.brokers, &topic, &records);

    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.jsonl");
    let mut config = source(&b.brokers, &topic);
    config.dead_letter = DeadLetter::File(dead.clone());
    let (items, dead_count) = read_to_end(&common::env(2), config).unwrap();

    assert_eq!(numbers(&items), (0..600).collect::<Vec<_>>());
    assert_eq!(dead_count, 3);
    let lines = std::fs::read_to_string(&dead).unwrap();
    assert_eq!(lines.lines().count(), 3, "{lines}");
    for l in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["source"].as_str().unwrap().starts_with(&topic), "{v}");
        assert!(!v["error"].as_str().unwrap().is_empty(), "{v}");
    }
}

/// Runs the unbounded job until the group has committed `total` offsets, then stops it
/// with a savepoint. Returns what it emitted and the savepoint.
fn run_until_committed(
    brokers: &str,
    topic: &str,
    partitions: i32,
    checkpoints: &std::path::Path,
    total: i64,
) -> (Vec<Ev>, std::path::PathBuf) {
    let out = CollectSink::new();
    let env = common::env(2);
    env.enable_checkpointing(
        CheckpointConfig::new(checkpoints).with_interval(Duration::from_millis(100)),
    );
    env.from_source(
        KafkaSource::new(source(brokers, topic), JsonValue::<Ev>::new()),
        WatermarkStrategy::none(),
    )
    .sink(out.clone());
    let job = env.start().unwrap();
    let group = format!("{topic}-group");
    wait_for(
        "offsets committed to the group",
        Duration::from_secs(60),
        || {
            committed(brokers, &group, topic, partitions)
                .iter()
                .map(|o| (*o).max(0))
                .sum::<i64>()
                == total
        },
    );
    let (savepoint, _) = job.stop_with_savepoint().unwrap();
    (out.take(), savepoint)
}

#[test]
fn positions_are_checkpointed_committed_to_the_group_and_restored_without_loss_or_duplicates() {
    let b = broker();
    let topic = unique("restore");
    create_topic(&b.brokers, &topic, 2);
    produce(&b.brokers, &topic, &events(0..400));
    let dir = tempfile::tempdir().unwrap();
    let (first, savepoint) = run_until_committed(&b.brokers, &topic, 2, dir.path(), 400);
    assert_eq!(numbers(&first), (0..400).collect::<Vec<_>>());

    // The group's committed offsets are the ends of the partitions.
    let ends: Vec<i64> =
        read_all(&b.brokers, &topic)
            .iter()
            .fold(vec![0i64; 2], |mut acc, (p, _, _)| {
                acc[*p as usize] += 1;
                acc
            });
    assert_eq!(
        committed(&b.brokers, &format!("{topic}-group"), &topic, 2),
        ends
    );

    produce(&b.brokers, &topic, &events(400..700));
    let second = run_restored(&savepoint, dir.path(), 3, source(&b.brokers, &topic)).unwrap();
    assert_eq!(numbers(&second), (400..700).collect::<Vec<_>>());
}

/// Runs a bounded job restored from `savepoint` at `parallelism`; returns what it emitted.
fn run_restored(
    savepoint: &std::path::Path,
    checkpoints: &std::path::Path,
    parallelism: usize,
    config: KafkaSourceConfig,
) -> Result<Vec<Ev>> {
    let env = common::env(parallelism);
    env.restore_from(RestoreFrom::Path(savepoint.to_path_buf()));
    env.enable_checkpointing(CheckpointConfig::new(checkpoints));
    read_to_end(&env, config).map(|(items, _)| items)
}

/// Reads the topics of `config` to their end in `env`; returns the items and the
/// number of dead letters.
fn read_to_end(env: &StreamEnvironment, mut config: KafkaSourceConfig) -> Result<(Vec<Ev>, u64)> {
    config.stop_at_end = true;
    let src = KafkaSource::new(config, JsonValue::<Ev>::new());
    let dead = src.dead_letters();
    let out = CollectSink::new();
    env.from_source(src, WatermarkStrategy::none())
        .sink(out.clone());
    env.execute()?;
    Ok((out.take(), dead.get()))
}

#[test]
fn a_checkpoint_from_another_cluster_is_refused_unless_the_switch_is_asked_for() {
    let a = broker_of_cluster(Some("ferroflow-a"));
    let other = broker_of_cluster(Some("ferroflow-b"));
    assert!(
        a.owned && other.owned,
        "a cluster switch needs two clusters: unset FERROFLOW_KAFKA_BROKERS so that the test \
         starts brokers of its own"
    );
    let topic = unique("switch");
    create_topic(&a.brokers, &topic, 1);
    create_topic(&other.brokers, &topic, 1);
    produce(&a.brokers, &topic, &events(0..50));
    produce(&other.brokers, &topic, &events(1000..1030));
    let dir = tempfile::tempdir().unwrap();
    let (_, savepoint) = run_until_committed(&a.brokers, &topic, 1, dir.path(), 50);

    let run = |on_restore: RestorePositions| {
        let mut config = source(&other.brokers, &topic);
        config.on_restore = on_restore;
        run_restored(&savepoint, dir.path(), 1, config)
    };
    let err = run(RestorePositions::Checkpoint).unwrap_err().to_string();
    assert!(
        err.contains("ferroflow-a") && err.contains("on_restore"),
        "{err}"
    );
    let switched = run(RestorePositions::StartMode).unwrap();
    assert_eq!(numbers(&switched), (1000..1030).collect::<Vec<_>>());
}

#[test]
fn new_topics_matching_the_pattern_are_discovered_while_running() {
    let b = broker();
    let prefix = unique("disc");
    create_topic(&b.brokers, &format!("{prefix}-a"), 1);
    produce(&b.brokers, &format!("{prefix}-a"), &events(0..10));
    let mut config = KafkaSourceConfig::new(&b.brokers, &[]);
    config.topics = Topics::Pattern(format!("{prefix}-.*"));
    config.discovery_interval = Duration::from_millis(200);
    let out = CollectSink::new();
    let env = common::env(2);
    env.from_source(
        KafkaSource::new(config, JsonValue::<Ev>::new()),
        WatermarkStrategy::none(),
    )
    .sink(out.clone());
    let job = env.start().unwrap();
    wait_for("the first topic", Duration::from_secs(30), || {
        out.len() == 10
    });
    create_topic(&b.brokers, &format!("{prefix}-b"), 2);
    produce(&b.brokers, &format!("{prefix}-b"), &events(10..40));
    wait_for("the discovered topic", Duration::from_secs(30), || {
        out.len() == 40
    });
    job.stop();
    job.join().unwrap();
    assert_eq!(numbers(&out.take()), (0..40).collect::<Vec<_>>());
}

#[test]
fn the_sink_writes_every_record_and_keeps_a_key_in_one_partition() {
    let b = broker();
    let topic = unique("sink");
    create_topic(&b.brokers, &topic, 3);
    let env = common::env(2);
    env.from_iter((0..900).map(|n| Ev {
        user: format!("u-{}", n % 11),
        n,
    }))
    .sink(KafkaSink::new(
        KafkaSinkConfig::new(&b.brokers, &topic),
        JsonRecord::<Ev>::new().with_key(|e: &Ev| Some(e.user.as_bytes().to_vec())),
    ));
    env.execute().unwrap();
    let got = read_all(&b.brokers, &topic);
    let evs: Vec<Ev> = got
        .iter()
        .map(|(_, _, v)| serde_json::from_str(v).unwrap())
        .collect();
    assert_eq!(numbers(&evs), (0..900).collect::<Vec<_>>());
    let mut placement = BTreeSet::new();
    for (p, k, _) in &got {
        placement.insert((k.clone().unwrap(), *p));
    }
    let keys: BTreeSet<_> = placement.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys.len(), 11);
    assert_eq!(
        placement.len(),
        11,
        "a key landed in two partitions: {placement:?}"
    );
    assert!(
        placement
            .iter()
            .map(|(_, p)| p)
            .collect::<BTreeSet<_>>()
            .len()
            > 1,
        "all keys in one partition"
    );
}

#[test]
fn malformed_records_can_go_to_a_dead_letter_topic_with_the_error_in_a_header() {
    let b = broker();
    let (topic, dlq) = (unique("dlq-in"), unique("dlq"));
    create_topic(&b.brokers, &topic, 1);
    create_topic(&b.brokers, &dlq, 1);
    let mut records = events(0..20);
    records.insert(5, (Some("bad-key".into()), b"{oops".to_vec()));
    produce(&b.brokers, &topic, &records);
    let mut config = source(&b.brokers, &topic);
    config.dead_letter = DeadLetter::Topic(dlq.clone());
    let (items, dead) = read_to_end(&common::env(1), config).unwrap();
    assert_eq!(numbers(&items), (0..20).collect::<Vec<_>>());
    assert_eq!(dead, 1);
    let got = read_all(&b.brokers, &dlq);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1.as_deref(), Some("bad-key"));
    assert_eq!(got[0].2, "{oops");
    let headers = common::kafka::headers_of_first(&b.brokers, &dlq);
    let error = headers.iter().find(|(k, _)| k == "ferroflow.error");
    assert!(error.is_some_and(|(_, v)| !v.is_empty()), "{headers:?}");
    let source = headers.iter().find(|(k, _)| k == "ferroflow.source");
    assert_eq!(
        source.map(|(_, v)| v.as_str()),
        Some(format!("{topic}/0@5").as_str())
    );
}

#[test]
fn each_partitions_lag_is_exported_to_prometheus() {
    let b = broker();
    let topic = unique("lag");
    create_topic(&b.brokers, &topic, 2);
    produce(&b.brokers, &topic, &events(0..2_000));
    let mut config = source(&b.brokers, &topic);
    config
        .properties
        .insert("statistics.interval.ms".into(), "100".into());
    let env = StreamEnvironment::new(
        EnvConfig::default()
            .with_parallelism(1)
            .with_signal_handling(false)
            .with_http("127.0.0.1:0".parse().unwrap()),
    );
    let out = CollectSink::new();
    env.from_source(
        KafkaSource::new(config, JsonValue::<Ev>::new()),
        WatermarkStrategy::none(),
    )
    .sink(out.clone());
    let job = env.start().unwrap();
    let addr = job.http_addr().unwrap();
    wait_for("every record", Duration::from_secs(30), || {
        out.len() == 2_000
    });
    let lag = |partition: &str| {
        let text = common::http::get(addr, "/metrics");
        common::http::series_sum(
            &text,
            "ferroflow_kafka_consumer_lag",
            &[
                &format!("topic=\"{topic}\""),
                &format!("partition=\"{partition}\""),
            ],
        )
    };
    // Both partitions report, and once everything is read their lag is 0.
    wait_for("lag 0 on both partitions", Duration::from_secs(20), || {
        lag("0") == Some(0.0) && lag("1") == Some(0.0)
    });
    produce(&b.brokers, &topic, &events(2_000..2_500));
    wait_for("the new records", Duration::from_secs(30), || {
        out.len() == 2_500
    });
    job.stop();
    job.join().unwrap();
}
