//! The Kafka sink: at-least-once, or exactly-once through transactions.

use super::client::{client_config, flush, send_waiting, tracked_producer, TrackedProducer};
use super::decode::{ProducerRecord, Serializer};
use super::txn::{recover, Transactions};
use super::KafkaError;
use ferroflow_core::{Result, Sink, SinkContext};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// The delivery guarantee of a [`KafkaSink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Records are sent as they come and acknowledged at every checkpoint barrier; after
    /// a failure, what was sent since the last checkpoint is sent again.
    #[default]
    AtLeastOnce,
    /// Records are written in Kafka transactions committed when their checkpoint
    /// completes: `read_committed` readers see each record once, a checkpoint interval
    /// after it was written. Needs checkpointing and a `transactional_id_prefix`.
    ExactlyOnce,
}

/// Settings of a [`KafkaSink`]. Unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// `bootstrap.servers`. Default: `127.0.0.1:9092`.
    pub brokers: String,
    /// Topic written to. Default: empty (refused at start).
    pub topic: String,
    /// Longest wait for outstanding records at a checkpoint or at the end (`60s` in
    /// files). Default: 60 s.
    #[serde(with = "humantime_serde")]
    pub flush_timeout: Duration,
    /// Further librdkafka producer properties (`linger.ms`, `compression.type`, security
    /// settings…); they override the sink's own. `transactional.id` and
    /// `transaction.timeout.ms` are refused here: they have their own settings.
    pub properties: BTreeMap<String, String>,
    /// Delivery guarantee. Default: `at_least_once`.
    pub delivery: Delivery,
    /// Exactly-once: transactional ids are `{prefix}-{worker}-{n}`, and the marker
    /// groups `{prefix}-marker-{worker}`. It must be the same across restarts of a job
    /// and differ between jobs writing to one cluster (a second job with the same prefix
    /// fences the first). Default: empty (refused with exactly-once).
    pub transactional_id_prefix: String,
    /// Exactly-once: transactional producers per worker. One holds the open
    /// transaction, the others transactions waiting for their checkpoint to complete;
    /// when checkpoints fail repeatedly and all are waiting, the job fails and restarts
    /// from its last checkpoint. At least 2. Default: 4.
    pub transaction_pool_size: usize,
    /// Exactly-once: `transaction.timeout.ms`, how long the broker keeps a transaction
    /// open before aborting it. Must be at least twice the checkpoint interval and at
    /// most the broker's `transaction.max.timeout.ms`. Default: 15 min (the broker's
    /// default maximum).
    #[serde(with = "humantime_serde")]
    pub transaction_timeout: Duration,
}

impl Default for KafkaSinkConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            topic: String::new(),
            flush_timeout: Duration::from_secs(60),
            properties: BTreeMap::new(),
            delivery: Delivery::AtLeastOnce,
            transactional_id_prefix: String::new(),
            transaction_pool_size: 4,
            transaction_timeout: Duration::from_secs(900),
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

    /// Writes exactly once, with transactional ids starting with `prefix`.
    #[must_use]
    pub fn exactly_once(mut self, prefix: impl Into<String>) -> Self {
        self.delivery = Delivery::ExactlyOnce;
        self.transactional_id_prefix = prefix.into();
        self
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
        if self.flush_timeout.is_zero() {
            return Err("kafka sink: `flush_timeout` must be positive".into());
        }
        for own in ["transactional.id", "transaction.timeout.ms"] {
            if self.properties.contains_key(own) {
                return Err(format!(
                    "kafka sink: `{own}` is set through `transactional_id_prefix` and \
                     `transaction_timeout`, not `properties`"
                ));
            }
        }
        if self.delivery == Delivery::ExactlyOnce {
            let prefix = self.transactional_id_prefix.trim();
            if prefix.is_empty() || prefix.len() != self.transactional_id_prefix.len() {
                return Err(
                    "kafka sink: exactly-once needs a `transactional_id_prefix` \
                            (without surrounding spaces), unique to the job"
                        .into(),
                );
            }
            if self.transaction_pool_size < 2 {
                return Err(format!(
                    "kafka sink: `transaction_pool_size` is {}; exactly-once needs at least 2 \
                     (one open transaction, one waiting for its checkpoint)",
                    self.transaction_pool_size
                ));
            }
        }
        Ok(())
    }

    /// Checks that exactly-once can work with checkpoints every `interval` (`None`: no
    /// checkpoints).
    ///
    /// # Errors
    /// Why it cannot.
    pub fn check_checkpoints(&self, interval: Option<Duration>) -> Result<(), String> {
        if self.delivery != Delivery::ExactlyOnce {
            return Ok(());
        }
        let Some(interval) = interval else {
            return Err(
                "kafka sink: exactly-once commits transactions when checkpoints \
                        complete; enable checkpointing, or use at_least_once"
                    .into(),
            );
        };
        if self.transaction_timeout < interval.saturating_mul(2) {
            return Err(format!(
                "kafka sink: `transaction_timeout` ({:?}) is shorter than twice the \
                 checkpoint interval ({interval:?}): transactions would be aborted by the \
                 broker before their checkpoint completes. Raise it (up to the broker's \
                 `transaction.max.timeout.ms`) or checkpoint more often",
                self.transaction_timeout
            ));
        }
        Ok(())
    }
}

/// A librdkafka record for `r` on `topic`.
pub(crate) fn base_record<'a>(topic: &'a str, r: &'a ProducerRecord) -> BaseRecord<'a, [u8], [u8]> {
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
    record
}

/// Writes items to a Kafka topic.
///
/// **At least once** (the default): records are sent as they come, and at every
/// checkpoint barrier (and at the end) the sink waits until all of them are acknowledged
/// by the brokers; a record that cannot be delivered fails the job, which restarts from
/// the last checkpoint and sends again. The producer is idempotent, so broker-side
/// retries do not duplicate records.
///
/// **Exactly once** ([`Delivery::ExactlyOnce`]): records go into Kafka transactions that
/// commit when their checkpoint completes, from a bounded pool of transactional ids per
/// worker. At start every id of the pool is initialised, which aborts what an earlier
/// run left open and fences its producers; after a restore, transactions whose
/// checkpoint completed but whose commit was lost are written again from the copy kept
/// in the checkpoint (a marker offset committed inside every transaction, for the group
/// `{prefix}-marker-{worker}`, tells which were committed). Start
/// is refused without checkpointing or with a `transaction_timeout` shorter than
/// twice the checkpoint interval. Readers must use `isolation.level=read_committed`.
///
/// Records are keyed and partitioned as the [`Serializer`] says; without an explicit
/// partition, the key is hashed with murmur2 as the Java client does, so records of one
/// key land in the same partition whichever client wrote them.
pub struct KafkaSink<T, S> {
    config: KafkaSinkConfig,
    serializer: Arc<S>,
    writer: Option<Writer>,
    _t: PhantomData<fn(T)>,
}

enum Writer {
    AtLeastOnce(TrackedProducer),
    ExactlyOnce(Box<Transactions>),
}

fn opened(writer: &mut Option<Writer>) -> Result<&mut Writer, KafkaError> {
    writer
        .as_mut()
        .ok_or_else(|| KafkaError::Config("kafka sink used before open".into()))
}

impl<T, S> Clone for KafkaSink<T, S> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            serializer: Arc::clone(&self.serializer),
            writer: None,
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
            writer: None,
            _t: PhantomData,
        }
    }

    fn timeout(&self) -> Duration {
        self.config.flush_timeout
    }

    fn writer(&mut self) -> Result<&mut Writer, KafkaError> {
        opened(&mut self.writer)
    }
}

impl<T: Send + 'static, S: Serializer<T>> Sink<T> for KafkaSink<T, S> {
    fn name(&self) -> String {
        "kafka".into()
    }

    fn open(&mut self, ctx: &SinkContext) -> Result<()> {
        self.config
            .validate()
            .and_then(|()| self.config.check_checkpoints(ctx.checkpoint_interval))
            .map_err(ferroflow_core::Error::Config)?;
        if !ctx.restored_commits.is_empty() {
            recover(&self.config, &ctx.restored_commits)?;
        }
        self.writer = Some(match self.config.delivery {
            Delivery::AtLeastOnce => {
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
                Writer::AtLeastOnce(tracked_producer(&config)?)
            }
            Delivery::ExactlyOnce => Writer::ExactlyOnce(Box::new(Transactions::open(
                &self.config,
                ctx.worker,
                ctx.attempt,
            )?)),
        });
        Ok(())
    }

    fn write(&mut self, batch: Vec<T>) -> Result<()> {
        let timeout = self.timeout();
        let Self {
            config,
            serializer,
            writer,
            ..
        } = self;
        let topic = config.topic.as_str();
        let writer = opened(writer)?;
        if let Writer::AtLeastOnce(producer) = writer {
            if let Some(what) = producer.context().take_failure() {
                return Err(KafkaError::Delivery(what).into());
            }
        }
        for item in &batch {
            let r = serializer
                .serialize(item)
                .map_err(|source| KafkaError::Encode {
                    context: format!("encoding a record for `{topic}`"),
                    source,
                })?;
            match writer {
                Writer::AtLeastOnce(producer) => {
                    send_waiting(producer, base_record(topic, &r), timeout)?;
                }
                Writer::ExactlyOnce(txns) => txns.send(r)?,
            }
        }
        Ok(())
    }

    fn prepare_commit(&mut self, checkpoint: u64) -> Result<Option<serde_json::Value>> {
        let timeout = self.timeout();
        match self.writer()? {
            Writer::AtLeastOnce(producer) => {
                flush(producer, timeout)?;
                Ok(None)
            }
            Writer::ExactlyOnce(txns) => {
                let c = txns.prepare(checkpoint)?;
                let value = serde_json::to_value(c).map_err(|e| KafkaError::Encode {
                    context: "encoding a committable".into(),
                    source: ferroflow_core::CodecError::with_source("not JSON", e),
                })?;
                Ok(Some(value))
            }
        }
    }

    fn commit(&mut self, committables: Vec<serde_json::Value>) -> Result<()> {
        if let Writer::ExactlyOnce(txns) = self.writer()? {
            txns.commit(committables)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        let timeout = self.timeout();
        match self.writer()? {
            Writer::AtLeastOnce(producer) => flush(producer, timeout)?,
            Writer::ExactlyOnce(txns) => txns.finish()?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn exactly_once_settings_are_checked() {
        let c = KafkaSinkConfig::new("127.0.0.1:9092", "out");
        assert!(c.validate().is_ok());
        assert!(
            c.check_checkpoints(None).is_ok(),
            "at-least-once needs none"
        );

        let mut eos = c.clone();
        eos.delivery = Delivery::ExactlyOnce;
        assert!(eos
            .validate()
            .unwrap_err()
            .contains("transactional_id_prefix"));
        let eos = c.clone().exactly_once("job-a");
        assert!(eos.validate().is_ok());
        assert!(eos
            .check_checkpoints(None)
            .unwrap_err()
            .contains("enable checkpointing"));
        assert!(eos.check_checkpoints(Some(Duration::from_secs(60))).is_ok());
        let err = eos
            .check_checkpoints(Some(Duration::from_secs(600)))
            .unwrap_err();
        assert!(err.contains("900s") && err.contains("600s"), "{err}");

        let mut small = eos.clone();
        small.transaction_pool_size = 1;
        assert!(small.validate().unwrap_err().contains("at least 2"));
        let mut own = eos;
        own.properties
            .insert("transactional.id".into(), "mine".into());
        assert!(own
            .validate()
            .unwrap_err()
            .contains("transactional_id_prefix"));
    }

    #[test]
    fn delivery_reads_from_toml_style_names() {
        let c: KafkaSinkConfig = serde_json::from_value(serde_json::json!({
            "topic": "out",
            "delivery": "exactly_once",
            "transactional_id_prefix": "uv",
        }))
        .unwrap();
        assert_eq!(c.delivery, Delivery::ExactlyOnce);
        assert_eq!(c.transaction_pool_size, 4);
        assert!(
            serde_json::from_value::<KafkaSinkConfig>(serde_json::json!({
                "delivery": "twice"
            }))
            .is_err()
        );
    }
}
