//! librdkafka clients: configuration, errors, and a producer whose delivery failures are
//! kept until someone asks.

use super::KafkaError;
use parking_lot::Mutex;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A client configuration from `brokers`, our `settings`, then the user's `properties`
/// (which win).
pub(crate) fn client_config(
    brokers: &str,
    settings: &[(&str, &str)],
    properties: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in settings {
        c.set(*k, *v);
    }
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

/// Facade name: records of a partition not yet read by the job (the partition's high
/// watermark minus the consumer's position), labelled `topic` and `partition`.
pub(crate) const CONSUMER_LAG: &str = "ferroflow_kafka_consumer_lag";

/// How often a consumer reports its statistics (and so its lag), unless the user's
/// `statistics.interval.ms` says otherwise.
pub(crate) const STATISTICS_INTERVAL_MS: &str = "5000";

/// A source's consumer: reports each assigned partition's lag from librdkafka's
/// statistics.
pub(crate) type Consumer = rdkafka::consumer::BaseConsumer<LagContext>;

/// Consumer context that turns librdkafka's statistics into lag gauges.
#[derive(Default, Clone, Copy)]
pub(crate) struct LagContext;

/// Facade name: message bytes a consumer received from the brokers (librdkafka's
/// `rxmsg_bytes`), labelled `client`.
pub(crate) const RECEIVED_BYTES: &str = "ferroflow_kafka_received_bytes";

impl ClientContext for LagContext {
    fn stats(&self, stats: rdkafka::Statistics) {
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!(RECEIVED_BYTES, "client" => stats.client_id.clone())
            .set(stats.rxmsg_bytes as f64);
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 {
                    continue;
                }
                // The position the job read to, else what the group committed.
                let lag = if p.app_offset >= 0 && p.hi_offset >= 0 {
                    p.hi_offset - p.app_offset
                } else {
                    p.consumer_lag
                };
                if lag >= 0 {
                    #[allow(clippy::cast_precision_loss)]
                    metrics::gauge!(CONSUMER_LAG, "topic" => topic.clone(), "partition" => partition.to_string())
                        .set(lag as f64);
                }
            }
        }
    }
}

impl rdkafka::consumer::ConsumerContext for LagContext {}

/// Producer context that remembers the first failed delivery.
#[derive(Default, Clone)]
pub(crate) struct Deliveries {
    failed: Arc<Mutex<Option<String>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if let Err((e, message)) = result {
            use rdkafka::Message;
            let what = format!(
                "delivery to {}/{} failed: {e}",
                message.topic(),
                message.partition()
            );
            let mut failed = self.failed.lock();
            if failed.is_none() {
                *failed = Some(what);
            }
        }
    }
}

impl Deliveries {
    /// The first delivery failure since the last call, if any.
    pub(crate) fn take_failure(&self) -> Option<String> {
        self.failed.lock().take()
    }
}

/// A producer polled by its own thread, with its delivery failures kept.
pub(crate) type TrackedProducer = ThreadedProducer<Deliveries>;

pub(crate) fn tracked_producer(config: &ClientConfig) -> Result<TrackedProducer, KafkaError> {
    config
        .create_with_context(Deliveries::default())
        .map_err(|e| KafkaError::client("creating a producer", e))
}

/// Waits until everything sent is delivered, and reports the first failure.
pub(crate) fn flush(producer: &TrackedProducer, timeout: Duration) -> Result<(), KafkaError> {
    producer
        .flush(timeout)
        .map_err(|e| KafkaError::client("flushing the producer", e))?;
    match producer.context().take_failure() {
        Some(what) => Err(KafkaError::Delivery(what)),
        None => Ok(()),
    }
}

/// Sends one record, waiting while the producer's queue is full.
pub(crate) fn send_waiting(
    producer: &TrackedProducer,
    mut record: BaseRecord<'_, [u8], [u8]>,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let start = Instant::now();
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                if start.elapsed() > timeout {
                    return Err(KafkaError::Delivery(format!(
                        "producer queue for `{}` still full after {timeout:?}",
                        back.topic
                    )));
                }
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, back)) => {
                return Err(KafkaError::client(
                    format!("producing to `{}`", back.topic),
                    e,
                ))
            }
        }
    }
}
