//! Kafka source and sink (feature `kafka`), through librdkafka.
//!
//! ## Source
//!
//! [`KafkaSource`] reads topics given by list or pattern. Every partition is a split,
//! owned by one worker (`(crc32(topic) + partition) % parallelism`, so the same worker
//! gets it whether it was listed at start or discovered later); each worker has one
//! consumer for all its partitions, with offsets assigned by the job rather than by a
//! group rebalance. Because partitions are splits, event time and idleness are tracked
//! per partition (see [`ferroflow_core::WatermarkStrategy`]).
//!
//! - **Positions** (the next offset of each partition) go into every checkpoint with the
//!   cluster id and topic; once a checkpoint completes they are committed to the consumer
//!   group, so ordinary lag monitoring works. A restore reads on from the checkpoint;
//!   a checkpoint from another cluster or topic is refused unless
//!   [`RestorePositions::StartMode`] says to keep the state and start afresh there
//!   (moving a job between clusters).
//! - **Start modes** without a checkpoint: earliest, latest, timestamp, given offsets,
//!   committed group offsets with a reset policy ([`StartMode`]). They are resolved to
//!   concrete offsets when the job starts.
//! - **Discovery**: every `discovery_interval`, new partitions (and new topics
//!   matching a pattern) are found and read from their earliest offset.
//! - **Decoding** by a [`Deserializer`]: bytes, UTF-8, JSON (serde), protobuf (prost),
//!   optionally with the record's metadata ([`WithMetadata`]: topic, partition, offset,
//!   timestamp, key, headers). A record that fails to decode is counted and goes to the
//!   [`DeadLetter`] output (log, file or topic); it never stops the job.
//! - **Bounded reading** (`stop_at_end`): each partition ends at the end offset it had at
//!   start, so a backlog can be processed as a batch job.
//!
//! ## Sink
//!
//! [`KafkaSink`] writes at least once (it waits for every record to be acknowledged at
//! each checkpoint barrier, and a record that cannot be delivered fails the job) or
//! exactly once ([`Delivery::ExactlyOnce`]: Kafka transactions from a bounded pool of
//! transactional ids per worker, committed when their checkpoint completes, with the
//! records kept in the checkpoint so that a commit lost to a crash is made up on
//! restore). Keys are hashed with murmur2 like the Java client; a [`Serializer`] may
//! also pick partitions explicitly.
//!
//! Consumer-group assignment, where several processes share the partitions through the
//! group protocol, is not supported yet; [`PartitionListener`] hooks receive the
//! partitions a worker starts and stops reading, as they will under group assignment.

mod client;
mod config;
mod dead_letter;
mod decode;
mod reader;
mod sink;
mod source;
mod txn;
mod wal;

/// The `rdkafka` crate these connectors are built on (librdkafka), for its settings, an
/// admin client or its in-process mock cluster in tests.
pub use rdkafka;

pub use config::{DeadLetter, KafkaSourceConfig, OffsetReset, RestorePositions, StartMode, Topics};
pub use decode::{
    BytesValue, Consumed, Deserializer, JsonRecord, JsonValue, ProducerRecord, ProtobufValue,
    RecordView, Serializer, Utf8Value, WithMetadata,
};
pub use sink::{Delivery, KafkaSink, KafkaSinkConfig};
pub use source::{KafkaSource, PartitionListener, TopicPartition};

/// Errors of the Kafka connectors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// A call into the Kafka client failed.
    #[error("kafka {context}: {source}")]
    Client {
        /// What was being done.
        context: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Settings that cannot work.
    #[error("kafka configuration: {0}")]
    Config(String),
    /// A checkpoint's positions do not fit this source.
    #[error("kafka restore: {0}")]
    Restore(String),
    /// A record could not be delivered.
    #[error("kafka {0}")]
    Delivery(String),
    /// The dead-letter output failed.
    #[error("kafka dead-letter output: {0}")]
    DeadLetter(String),
    /// A record (or a committable) could not be encoded.
    #[error("kafka {context}: {source}")]
    Encode {
        /// What was being encoded, for which topic.
        context: String,
        /// The serializer's error.
        #[source]
        source: ferroflow_core::CodecError,
    },
}

impl KafkaError {
    pub(crate) fn client(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        Self::Client {
            context: context.into(),
            source,
        }
    }

    /// Whether a restart may get past it (a broker that was down, a timeout).
    pub fn is_retryable(&self) -> bool {
        use rdkafka::error::KafkaError as K;
        match self {
            Self::Client { source, .. } => !matches!(
                source,
                K::ClientConfig(..) | K::ClientCreation(_) | K::Subscription(_)
            ),
            Self::Delivery(_) | Self::DeadLetter(_) => true,
            Self::Config(_) | Self::Restore(_) | Self::Encode { .. } => false,
        }
    }
}

impl From<KafkaError> for ferroflow_core::Error {
    fn from(e: KafkaError) -> Self {
        match e {
            KafkaError::Config(m) => Self::Config(m),
            KafkaError::Restore(m) => Self::Checkpoint(m),
            KafkaError::Encode { context, source } => Self::codec(context, source),
            e => {
                let retryable = e.is_retryable();
                Self::external("kafka", "", e, retryable)
            }
        }
    }
}
