//! Kafka connectors under injected broker failures, on librdkafka's in-process mock
//! cluster: transient fetch errors are retried without losing or repeating records,
//! records that cannot be delivered fail the job with a retryable error instead of
//! vanishing, and a start offset out of range follows the configured policy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::kafka::produce;
use ferroflow::connectors::kafka::rdkafka::mocking::MockCluster;
use ferroflow::connectors::kafka::rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use ferroflow::connectors::kafka::{
    JsonRecord, JsonValue, KafkaSink, KafkaSinkConfig, KafkaSource, KafkaSourceConfig,
};
use ferroflow::prelude::*;

#[test]
fn transient_fetch_errors_are_retried_without_loss_or_duplicates() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("clicks", 2, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let records: Vec<_> = (0..500u64)
        .map(|n| (Some(format!("k{}", n % 13)), n.to_string().into_bytes()))
        .collect();
    produce(&brokers, "clicks", &records);
    // The next fetches fail with errors the client retries.
    cluster.request_errors(
        RDKafkaApiKey::Fetch,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 6],
    );
    let mut config = KafkaSourceConfig::new(&brokers, &["clicks"]);
    config.stop_at_end = true;
    let out = CollectSink::new();
    let env = common::env(2);
    env.from_source(
        KafkaSource::new(config, JsonValue::<u64>::new()),
        WatermarkStrategy::none(),
    )
    .sink(out.clone());
    env.execute().unwrap();
    let mut got = out.take();
    got.sort_unstable();
    assert_eq!(got, (0..500).collect::<Vec<u64>>());
}

#[test]
fn undeliverable_records_fail_the_job_with_a_retryable_error() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("out", 1, 1).unwrap();
    let mut config = KafkaSinkConfig::new(cluster.bootstrap_servers(), "out");
    config
        .properties
        .insert("message.timeout.ms".into(), "1500".into());
    cluster.broker_down(1).unwrap();
    let env = common::env(1);
    env.from_iter(0..100u64)
        .sink(KafkaSink::new(config, JsonRecord::<u64>::new()));
    let err = env.execute().unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let text = err.to_string();
    assert!(text.contains("out"), "{text}");
}

#[test]
fn a_start_offset_out_of_range_follows_the_policy() {
    use ferroflow::connectors::kafka::{OffsetReset, StartMode};
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("t", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let records: Vec<_> = (0..10u64)
        .map(|n| (None, n.to_string().into_bytes()))
        .collect();
    produce(&brokers, "t", &records);
    let run = |policy: OffsetReset| {
        let mut config = KafkaSourceConfig::new(&brokers, &["t"]);
        config.stop_at_end = true;
        config.start = StartMode::Offsets {
            offsets: [("t".to_string(), [(0, 1_000)].into())].into(),
            otherwise: OffsetReset::Earliest,
        };
        config.out_of_range = policy;
        let out = CollectSink::new();
        let env = common::env(1);
        env.from_source(
            KafkaSource::new(config, JsonValue::<u64>::new()),
            WatermarkStrategy::none(),
        )
        .sink(out.clone());
        env.execute().map(|_| out.sorted())
    };
    let err = run(OffsetReset::Fail).unwrap_err().to_string();
    assert!(err.contains("t/0") && err.contains("fail"), "{err}");
    assert_eq!(run(OffsetReset::Latest).unwrap(), Vec::<u64>::new());
    assert_eq!(
        run(OffsetReset::Earliest).unwrap(),
        (0..10).collect::<Vec<_>>()
    );
}
