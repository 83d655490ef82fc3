//! Kafka connectors against a Kafka-protocol broker on loopback (`FERROFLOW_KAFKA_BROKERS`,
//! or a noida-db broker started here, as the tests do):
//!
//! - `kafka_source`: JSON records of exactly 100 bytes in 8 partitions (200,000 by
//!   default, `FERROFLOW_BENCH_RECORDS` to change), read to the end by the source and
//!   decoded with serde; records/s and MB/s, wall and per CPU-second of this process
//!   (librdkafka's threads included, the broker's not);
//! - `kafka_uv_kafka`: generated clicks as JSON in Kafka (half as many) → UV per
//!   (item, hour), exact → JSON rows to another topic; the final rows must add up to the
//!   distinct (item, hour, user) triples counted here;
//! - `kafka_uv_kafka_exactly_once`: the same job with checkpoints every 500 ms and the
//!   sink writing exactly once (transactions committed per checkpoint, records copied
//!   into the checkpoint).
//!
//! The broker is chosen by `FERROFLOW_BENCH_BROKER`: `mock` (the default) is librdkafka's
//! in-process mock cluster, which serves from memory, so its work counts in this
//! process's CPU time (the per-core figures are conservative); `noida` starts a noida-db
//! broker (a separate process on the same two cores, so the wall rates share the machine
//! with it); `FERROFLOW_KAFKA_BROKERS` with `noida` uses that broker instead.
//!
//! `cargo bench --no-default-features --features kafka --bench kafka`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

#[allow(dead_code)]
#[path = "../tests/common/kafka.rs"]
mod broker;
mod support;

use criterion::{criterion_group, criterion_main, Criterion};
use ferroflow::connectors::kafka::{
    JsonRecord, JsonValue, KafkaSink, KafkaSinkConfig, KafkaSource, KafkaSourceConfig,
};
use ferroflow::connectors::{ClickEvent, GeneratorConfig, GeneratorSource};
use ferroflow::operators::uv::{self, Grain, HotKeys, Mode, UserId, UvConfig, UvEvent, UvOutput};
use ferroflow::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use support::{bench_parallelism, cpu_time};

/// Partitions of each topic. The mock cluster keeps at most 100,000 records or 5 MiB per
/// partition, so the default record count must spread over several.
const PARTITIONS: i32 = 8;

fn records() -> u64 {
    std::env::var("FERROFLOW_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

fn clicks() -> u64 {
    records() / 2
}

/// A 100-byte record (checked when producing).
#[derive(Debug, Serialize, Deserialize)]
struct Rec {
    id: u64,
    user: String,
    pad: String,
}

fn record(id: u64) -> Vec<u8> {
    let mut r = Rec {
        id,
        user: format!("u-{}", id % 100_000),
        pad: String::new(),
    };
    let len = serde_json::to_vec(&r).unwrap().len();
    r.pad = "x".repeat(100 - len);
    let bytes = serde_json::to_vec(&r).unwrap();
    assert_eq!(bytes.len(), 100);
    bytes
}

/// A generated click as it travels through Kafka.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Click {
    ts: i64,
    user: u64,
    item: Arc<str>,
}

impl UvEvent for Click {
    fn event_time(&self) -> i64 {
        self.ts
    }
    fn user(&self) -> UserId {
        UserId::number(self.user)
    }
    fn dimension(&self, field: &str) -> Option<&str> {
        (field == "item").then_some(&*self.item)
    }
}

/// Creates a topic on the chosen broker.
type CreateTopic = Box<dyn Fn(&str)>;

struct Fixture {
    _broker: Option<broker::Broker>,
    brokers: String,
    records_topic: String,
    clicks_topic: String,
    distinct: u64,
    /// Where the end-to-end job writes (every iteration appends).
    out_topic: String,
}

/// Produces `n` records made by `value`, and says how long it took.
fn produce(brokers: &str, topic: &str, n: u64, value: impl Fn(u64) -> (String, Vec<u8>)) {
    let records: Vec<(Option<String>, Vec<u8>)> = (0..n)
        .map(|i| {
            let (k, v) = value(i);
            (Some(k), v)
        })
        .collect();
    let start = Instant::now();
    broker::produce(brokers, topic, &records);
    eprintln!(
        "produced {n} records to {topic} in {:.1}s",
        start.elapsed().as_secs_f64()
    );
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mock = std::env::var("FERROFLOW_BENCH_BROKER").map_or(true, |b| b == "mock");
        let (b, brokers, create): (_, _, CreateTopic) = if mock {
            let cluster =
                ferroflow::connectors::kafka::rdkafka::mocking::MockCluster::new(1).unwrap();
            let brokers = cluster.bootstrap_servers();
            let cluster: &'static _ = Box::leak(Box::new(cluster));
            (
                None,
                brokers,
                Box::new(move |t: &str| cluster.create_topic(t, PARTITIONS, 1).unwrap()),
            )
        } else {
            let b = broker::broker();
            let brokers = b.brokers.clone();
            let create = {
                let brokers = brokers.clone();
                Box::new(move |t: &str| broker::create_topic(&brokers, t, PARTITIONS))
            };
            (Some(b), brokers, create)
        };
        eprintln!(
            "broker: {}",
            if mock {
                "librdkafka mock cluster"
            } else {
                "noida-db / FERROFLOW_KAFKA_BROKERS"
            }
        );
        let records_topic = broker::unique("bench-records");
        create(&records_topic);
        produce(&brokers, &records_topic, records(), |i| {
            (format!("k{}", i % 1024), record(i))
        });
        let clicks_topic = broker::unique("bench-clicks");
        create(&clicks_topic);
        let out_topic = broker::unique("bench-uv");
        create(&out_topic);
        let config = GeneratorConfig::default().with_events(clicks());
        let g = GeneratorSource::new(config).unwrap();
        let click = |e: &ClickEvent| Click {
            ts: e.ts,
            user: e.user_id,
            item: Arc::from(format!("item-{}", e.item_id)),
        };
        let mut triples = HashSet::new();
        for i in 0..clicks() {
            let e = g.event(i);
            triples.insert((e.item_id, e.ts.div_euclid(3_600_000), e.user_id));
        }
        produce(&brokers, &clicks_topic, clicks(), |i| {
            let e = g.event(i);
            (
                format!("{}", e.item_id),
                serde_json::to_vec(&click(&e)).unwrap(),
            )
        });
        Fixture {
            _broker: b,
            brokers,
            records_topic,
            clicks_topic,
            distinct: triples.len() as u64,
            out_topic,
        }
    })
}

fn source_config(topic: &str) -> KafkaSourceConfig {
    let f = fixture();
    let mut c = KafkaSourceConfig::new(&f.brokers, &[topic]);
    c.stop_at_end = true;
    if let Ok(props) = std::env::var("FERROFLOW_BENCH_CONSUMER") {
        for kv in props.split(',') {
            if let Some((k, v)) = kv.split_once('=') {
                c.properties.insert(k.into(), v.into());
            }
        }
    }
    c
}

fn source_only(p: usize) -> (Duration, Duration) {
    let f = fixture();
    let env = StreamEnvironment::new(EnvConfig::default().with_parallelism(p));
    let sink = DiscardSink::new();
    env.from_source(
        KafkaSource::new(source_config(&f.records_topic), JsonValue::<Rec>::new()),
        WatermarkStrategy::none(),
    )
    .sink(sink.clone());
    let (t0, c0) = (Instant::now(), cpu_time());
    env.execute().unwrap();
    let out = (t0.elapsed(), cpu_time() - c0);
    assert_eq!(sink.count(), records());
    out
}

fn end_to_end(p: usize, exactly_once: bool) -> (Duration, Duration) {
    let f = fixture();
    let env = StreamEnvironment::new(EnvConfig::default().with_parallelism(p));
    let checkpoints = tempfile::tempdir().unwrap();
    let mut sink = KafkaSinkConfig::new(&f.brokers, &f.out_topic);
    if exactly_once {
        env.enable_checkpointing(
            ferroflow::CheckpointConfig::new(checkpoints.path())
                .with_interval(Duration::from_millis(500)),
        );
        sink = sink.exactly_once(broker::unique("bench-uv-eos"));
    }
    let clicks = env.from_source(
        KafkaSource::new(source_config(&f.clicks_topic), JsonValue::<Click>::new()),
        WatermarkStrategy::bounded_out_of_orderness(Duration::ZERO, |c: &Click| c.ts),
    );
    // As the in-memory UV bench, plus a changelog row per changed bucket every second.
    let config = UvConfig {
        dimensions: vec![vec!["item".into()]],
        grains: vec![Grain::hour()],
        mode: Mode::Exact,
        lateness: Duration::ZERO,
        update_interval: Duration::from_millis(1_000),
        hot_keys: HotKeys::Off,
        ..UvConfig::default()
    };
    let (rows, _) = uv::count(clicks, config).unwrap();
    let sum = Arc::new(AtomicU64::new(0));
    let s = Arc::clone(&sum);
    rows.inspect(move |o| {
        if let UvOutput::Row(r) = o {
            if r.is_final {
                s.fetch_add(r.uv, Ordering::Relaxed);
            }
        }
    })
    .sink(KafkaSink::new(sink, JsonRecord::new()));
    let (t0, c0) = (Instant::now(), cpu_time());
    env.execute().unwrap();
    let out = (t0.elapsed(), cpu_time() - c0);
    assert_eq!(sum.load(Ordering::Relaxed), f.distinct);
    out
}

fn benches(c: &mut Criterion) {
    bench_parallelism(c, "kafka_source", records(), source_only);
    eprintln!("(kafka_source records are 100 bytes: MB/s = M records/s × 100)");
    bench_parallelism(c, "kafka_uv_kafka", clicks(), |p| end_to_end(p, false));
    bench_parallelism(c, "kafka_uv_kafka_exactly_once", clicks(), |p| {
        end_to_end(p, true)
    });
}

criterion_group!(kafka, benches);
criterion_main!(kafka);
