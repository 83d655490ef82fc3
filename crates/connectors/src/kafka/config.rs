//! Kafka source settings.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Which topics a source reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topics {
    /// These topics.
    List(Vec<String>),
    /// Every topic whose whole name matches this regular expression (checked again at
    /// each partition discovery, so new matching topics are picked up).
    Pattern(String),
}

/// What an out-of-range or missing committed offset falls back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetReset {
    /// The earliest offset still in the partition.
    #[default]
    Earliest,
    /// The end of the partition (only new records).
    Latest,
    /// Refuse to start, naming the partition.
    Fail,
}

impl OffsetReset {
    pub(crate) fn rdkafka_value(self) -> &'static str {
        match self {
            Self::Earliest => "earliest",
            Self::Latest => "latest",
            Self::Fail => "error",
        }
    }
}

/// Where a partition is read from when no checkpoint says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum StartMode {
    /// The earliest offset still in each partition (the default).
    #[default]
    Earliest,
    /// The end of each partition at start: only records produced afterwards.
    Latest,
    /// The first record whose timestamp is at or after `epoch_ms` (the end where none is).
    Timestamp {
        /// Epoch milliseconds.
        epoch_ms: i64,
    },
    /// Given offsets per topic and partition; partitions not listed use `otherwise`.
    Offsets {
        /// `topic -> partition -> offset of the next record to read`.
        offsets: BTreeMap<String, BTreeMap<i32, i64>>,
        /// For partitions not listed.
        otherwise: OffsetReset,
    },
    /// The consumer group's committed offsets; partitions without one use `reset`.
    Committed {
        /// For partitions without a committed offset.
        reset: OffsetReset,
    },
}

/// Where a restored job takes its read positions from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestorePositions {
    /// From the checkpoint (the default; exactly-once). A checkpoint whose positions
    /// belong to another cluster or topic is refused with an error naming both.
    #[default]
    Checkpoint,
    /// Keep the restored state but read from [`KafkaSourceConfig::start`], ignoring the
    /// checkpoint's positions: for moving a job to another Kafka cluster (or topic).
    /// Records between the checkpoint and the new start are not replayed.
    StartMode,
}

/// Where records that fail to decode go. Every one is also counted
/// (`ferroflow_dead_letters_total{source=...}` and [`crate::DeadLetterCounter`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetter {
    /// A warning in the log naming topic, partition, offset and error (the record stays
    /// in Kafka at that offset). The default.
    #[default]
    Log,
    /// Appended to a JSON-lines file: `{"source": "topic/partition@offset", "error": ...,
    /// "timestamp": ..., "key": ..., "raw": ...}` (key and value as text, lossily).
    File(PathBuf),
    /// Produced unchanged (key, value, headers) to this topic of the same cluster, with
    /// headers `ferroflow.error` and `ferroflow.source` added.
    Topic(String),
}

/// Settings of a [`crate::kafka::KafkaSource`]. Unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// `bootstrap.servers`. Default: `127.0.0.1:9092`.
    pub brokers: String,
    /// Topics to read. Default: an empty list (refused at start).
    pub topics: Topics,
    /// Consumer group: offsets are committed to it after each completed checkpoint (for
    /// lag monitoring) and read from it by [`StartMode::Committed`]. Default: `ferroflow`.
    pub group_id: String,
    /// Start positions without a checkpoint. Default: earliest.
    pub start: StartMode,
    /// Out-of-range offsets while reading (retention removed them). Default: earliest.
    pub out_of_range: OffsetReset,
    /// Where a restored job's positions come from. Default: the checkpoint.
    pub on_restore: RestorePositions,
    /// Commit offsets to the group when a checkpoint completes. Default: true.
    pub commit_offsets: bool,
    /// Bounded reading: stop each partition at the end offset it had when the job
    /// started (for backfills, tests and benchmarks). Default: false (unbounded).
    pub stop_at_end: bool,
    /// How often new partitions (and, with a pattern, new topics) are looked for (`30s`
    /// in files); `0s` disables discovery. Default: 30 s.
    #[serde(with = "humantime_serde")]
    pub discovery_interval: Duration,
    /// Timeout of metadata and offset lookups. Default: 10 s.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Records that fail to decode. Default: logged.
    pub dead_letter: DeadLetter,
    /// Further librdkafka consumer properties (`fetch.max.bytes`, security settings…).
    /// They override the source's own settings, except that offsets are never
    /// auto-committed.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaSourceConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            topics: Topics::List(Vec::new()),
            group_id: "ferroflow".into(),
            start: StartMode::default(),
            out_of_range: OffsetReset::default(),
            on_restore: RestorePositions::default(),
            commit_offsets: true,
            stop_at_end: false,
            discovery_interval: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            dead_letter: DeadLetter::default(),
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaSourceConfig {
    /// Reads `topics` from `brokers`, with the other settings at their defaults.
    pub fn new(brokers: impl Into<String>, topics: &[&str]) -> Self {
        Self {
            brokers: brokers.into(),
            topics: Topics::List(topics.iter().map(|t| (*t).to_string()).collect()),
            ..Self::default()
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// A message naming the setting that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("kafka source: `brokers` is empty".into());
        }
        match &self.topics {
            Topics::List(t) if t.is_empty() => {
                return Err("kafka source: no topics given".into());
            }
            Topics::List(t) if t.iter().any(|t| t.trim().is_empty()) => {
                return Err("kafka source: an empty topic name".into());
            }
            Topics::Pattern(p) => {
                regex::Regex::new(p)
                    .map_err(|e| format!("kafka source: bad topic pattern `{p}`: {e}"))?;
            }
            Topics::List(_) => {}
        }
        if self.group_id.trim().is_empty() {
            return Err("kafka source: `group_id` is empty".into());
        }
        if self.request_timeout.is_zero() {
            return Err("kafka source: `request_timeout` must be positive".into());
        }
        for key in ["enable.auto.commit", "enable.auto.offset.store"] {
            if self.properties.get(key).is_some_and(|v| v != "false") {
                return Err(format!(
                    "kafka source: `{key}` cannot be enabled: offsets are committed after checkpoints"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        assert!(KafkaSourceConfig::default().validate().is_err());
        let c = KafkaSourceConfig::new("127.0.0.1:9092", &["clicks"]);
        assert_eq!(c.validate(), Ok(()));
        let mut bad = c.clone();
        bad.topics = Topics::Pattern("clicks-(".into());
        assert!(bad.validate().unwrap_err().contains("pattern"));
        let mut bad = c.clone();
        bad.properties
            .insert("enable.auto.commit".into(), "true".into());
        assert!(bad.validate().unwrap_err().contains("enable.auto.commit"));
    }

    #[test]
    fn parses_from_toml_like_json() {
        let c: KafkaSourceConfig = serde_json::from_value(serde_json::json!({
            "brokers": "127.0.0.1:1",
            "topics": {"pattern": "clicks-.*"},
            "start": {"mode": "committed", "reset": "latest"},
            "on_restore": "start_mode",
            "dead_letter": {"topic": "clicks-dlq"}
        }))
        .unwrap();
        assert_eq!(
            c.start,
            StartMode::Committed {
                reset: OffsetReset::Latest
            }
        );
        assert_eq!(c.on_restore, RestorePositions::StartMode);
        assert_eq!(c.dead_letter, DeadLetter::Topic("clicks-dlq".into()));
        assert!(
            serde_json::from_value::<KafkaSourceConfig>(serde_json::json!({"brokrs": "x"}))
                .is_err()
        );
    }
}
