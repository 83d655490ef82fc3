//! The Kafka sink (at-least-once).

use super::client::{client_config, flush, send_waiting, tracked_producer, TrackedProducer};
use super::decode::Serializer;
use super::KafkaError;
use ferroflow_core::{Result, Sink, SinkContext};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// Settings of a [`KafkaSink`]. Unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// `bootstrap.servers`. Default: `127.0.0.1:9092`.
    pub brokers: String,
    /// Topic written to. Default: empty (refused at start).
    pub topic: String,
    /// Longest wait for outstanding records at a checkpoint or at the end, ms. Default:
    /// 60,000.
    pub flush_timeout_ms: u64,
    /// Further librdkafka producer properties (`linger.ms`, `compression.type`, security
    /// settings…); they override the sink's own.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaSinkConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            topic: String::new(),
            flush_timeout_ms: 60_000,
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaSinkConfig {
    /// Writes to `topic` on `brokers`, other settings at their defaults.
    pub fn new(brokers: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: topic.into(),
            ..Self::default()
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// A message naming the setting that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("kafka sink: `brokers` is empty".into());
        }
        if self.topic.trim().is_empty() {
            return Err("kafka sink: `topic` is empty".into());
        }
        if self.flush_timeout_ms == 0 {
            return Err("kafka sink: `flush_timeout_ms` must be positive".into());
        }
        Ok(())
    }
}

/// Writes items to a Kafka topic, at least once: records are sent as they come, and at
/// every checkpoint barrier (and at the end) the sink waits until all of them are
/// acknowledged by the brokers; a record that cannot be delivered fails the job, which
/// restarts from the last checkpoint and sends again. The producer is idempotent, so
/// broker-side retries do not duplicate records.
///
/// Records are keyed and partitioned as the [`Serializer`] says; without an explicit
/// partition, the key is hashed with murmur2 as the Java client does, so records of one
/// key land in the same partition whichever client wrote them.
pub struct KafkaSink<T, S> {
    config: KafkaSinkConfig,
    serializer: Arc<S>,
    producer: Option<TrackedProducer>,
    _t: PhantomData<fn(T)>,
}

impl<T, S> Clone for KafkaSink<T, S> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            serializer: Arc::clone(&self.serializer),
            producer: None,
            _t: PhantomData,
        }
    }
}

impl<T, S: Serializer<T>> KafkaSink<T, S> {
    /// A sink with `config`, encoding items with `serializer`.
    pub fn new(config: KafkaSinkConfig, serializer: S) -> Self {
        Self {
            config,
            serializer: Arc::new(serializer),
            producer: None,
            _t: PhantomData,
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.flush_timeout_ms)
    }

    fn producer(&self) -> Result<&TrackedProducer, KafkaError> {
        self.producer
            .as_ref()
            .ok_or_else(|| KafkaError::Config("kafka sink written before open".into()))
    }
}

impl<T: Send + 'static, S: Serializer<T>> Sink<T> for KafkaSink<T, S> {
    fn name(&self) -> String {
        "kafka".into()
    }

    fn open(&mut self, ctx: &SinkContext) -> Result<()> {
        self.config
            .validate()
            .map_err(ferroflow_core::Error::Config)?;
        let client_id = format!("ferroflow-sink-{}", ctx.worker);
        let config = client_config(
            &self.config.brokers,
            &[
                ("client.id", &client_id),
                ("enable.idempotence", "true"),
                ("partitioner", "murmur2_random"),
                ("linger.ms", "5"),
            ],
            &self.config.properties,
        );
        self.producer = Some(tracked_producer(&config)?);
        Ok(())
    }

    fn write(&mut self, batch: Vec<T>) -> Result<()> {
        let timeout = self.timeout();
        let topic = self.config.topic.as_str();
        let producer = self.producer()?;
        if let Some(what) = producer.context().take_failure() {
            return Err(KafkaError::Delivery(what).into());
        }
        for item in &batch {
            let r = self
                .serializer
                .serialize(item)
                .map_err(|e| KafkaError::Config(format!("encoding a record for `{topic}`: {e}")))?;
            let mut record = BaseRecord::<[u8], [u8]>::to(topic).payload(&r.value[..]);
            if let Some(k) = &r.key {
                record = record.key(&k[..]);
            }
            if let Some(p) = r.partition {
                record = record.partition(p);
            }
            if let Some(ts) = r.timestamp {
                record = record.timestamp(ts);
            }
            if !r.headers.is_empty() {
                let mut h = OwnedHeaders::new_with_capacity(r.headers.len());
                for (k, v) in &r.headers {
                    h = h.insert(Header {
                        key: k,
                        value: Some(&v[..]),
                    });
                }
                record = record.headers(h);
            }
            send_waiting(producer, record, timeout)?;
        }
        Ok(())
    }

    fn prepare_commit(&mut self, _checkpoint: u64) -> Result<Option<serde_json::Value>> {
        flush(self.producer()?, self.timeout())?;
        Ok(None)
    }

    fn finish(&mut self) -> Result<()> {
        Ok(flush(self.producer()?, self.timeout())?)
    }
}
