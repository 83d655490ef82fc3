//! Where records that fail to decode go.

use super::client::{client_config, flush, send_waiting, tracked_producer, TrackedProducer};
use super::config::DeadLetter;
use super::decode::RecordView;
use super::KafkaError;
use crate::jsonl::writer::SharedWriter;
use crate::DeadLetterCounter;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

enum Target {
    Log,
    File(SharedWriter),
    Topic {
        producer: Arc<TrackedProducer>,
        topic: String,
    },
}

/// The dead-letter output of one source, shared by its readers.
pub(crate) struct DeadLetters {
    target: Target,
    counter: DeadLetterCounter,
    metric: metrics::Counter,
    timeout: Duration,
}

impl DeadLetters {
    pub(crate) fn open(
        config: &DeadLetter,
        brokers: &str,
        properties: &BTreeMap<String, String>,
        counter: DeadLetterCounter,
        source: &str,
        timeout: Duration,
    ) -> Result<Self, ferroflow_core::Error> {
        let target = match config {
            DeadLetter::Log => Target::Log,
            DeadLetter::File(path) => Target::File(SharedWriter::append(path)?),
            DeadLetter::Topic(topic) => {
                // Only connection and security settings apply to this producer.
                let shared: BTreeMap<String, String> = properties
                    .iter()
                    .filter(|(k, _)| {
                        k.starts_with("security.")
                            || k.starts_with("ssl.")
                            || k.starts_with("sasl.")
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let c = client_config(brokers, &[("enable.idempotence", "true")], &shared);
                Target::Topic {
                    producer: Arc::new(tracked_producer(&c)?),
                    topic: topic.clone(),
                }
            }
        };
        Ok(Self {
            target,
            counter,
            metric: metrics::counter!("ferroflow_dead_letters_total", "source" => source.to_string()),
            timeout,
        })
    }

    /// Sends one record that failed to decode with `error`.
    pub(crate) fn send(&self, record: &RecordView<'_>, error: &str) -> Result<(), KafkaError> {
        let location = format!("{}/{}@{}", record.topic, record.partition, record.offset);
        match &self.target {
            Target::Log => {
                tracing::warn!(record = %location, %error, "Kafka record could not be decoded; skipped (it stays in Kafka at this offset).");
            }
            Target::File(w) => {
                let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
                let line = serde_json::json!({
                    "source": location,
                    "error": error,
                    "timestamp": record.timestamp,
                    "key": text(record.key),
                    "raw": text(record.payload),
                });
                w.write_line(&line.to_string())
                    .map_err(|e| KafkaError::DeadLetter(e.to_string()))?;
            }
            Target::Topic { producer, topic } => {
                let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 2);
                for (k, v) in record.headers {
                    headers = headers.insert(Header { key: k, value: *v });
                }
                headers = headers
                    .insert(Header {
                        key: "ferroflow.error",
                        value: Some(error.as_bytes()),
                    })
                    .insert(Header {
                        key: "ferroflow.source",
                        value: Some(location.as_bytes()),
                    });
                let mut r = BaseRecord::<[u8], [u8]>::to(topic).headers(headers);
                if let Some(k) = record.key {
                    r = r.key(k);
                }
                if let Some(p) = record.payload {
                    r = r.payload(p);
                }
                if let Some(ts) = record.timestamp {
                    r = r.timestamp(ts);
                }
                send_waiting(producer, r, self.timeout)
                    .map_err(|e| KafkaError::DeadLetter(e.to_string()))?;
            }
        }
        self.counter.add(1);
        self.metric.increment(1);
        Ok(())
    }

    /// Makes the dead letters sent so far durable (before the records after them are
    /// handed on, so a checkpoint never covers a dead letter that was lost).
    pub(crate) fn flush(&self) -> Result<(), KafkaError> {
        match &self.target {
            Target::Log => Ok(()),
            Target::File(w) => w.flush().map_err(|e| KafkaError::DeadLetter(e.to_string())),
            Target::Topic { producer, .. } => flush(producer, self.timeout),
        }
    }
}
