//! The Kafka source: finds the partitions and where to start reading them.

use super::client::{client_config, LagContext, STATISTICS_INTERVAL_MS};
use super::config::{KafkaSourceConfig, OffsetReset, StartMode, Topics};
use super::dead_letter::DeadLetters;
use super::decode::Deserializer;
use super::reader::{Shared, WatchReader, Worker};
use super::KafkaError;
use crate::DeadLetterCounter;
use ferroflow_core::{Result, Source, SplitReader};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// A topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
}

/// Told which partitions a worker starts and stops reading: at start, on discovery, at
/// the end. Called on the worker's thread; keep it short.
pub trait PartitionListener: Send + Sync + 'static {
    /// `worker` starts reading `partitions`.
    fn assigned(&self, worker: usize, partitions: &[TopicPartition]) {
        let _ = (worker, partitions);
    }
    /// `worker` stopped reading `partitions`.
    fn revoked(&self, worker: usize, partitions: &[TopicPartition]) {
        let _ = (worker, partitions);
    }
}

/// Reads Kafka topics; see the [module documentation](super).
pub struct KafkaSource<D: Deserializer> {
    config: KafkaSourceConfig,
    deserializer: Arc<D>,
    counter: DeadLetterCounter,
    listener: Option<Arc<dyn PartitionListener>>,
}

impl<D: Deserializer> KafkaSource<D> {
    /// A source with `config`, decoding records with `deserializer`.
    pub fn new(config: KafkaSourceConfig, deserializer: D) -> Self {
        Self {
            config,
            deserializer: Arc::new(deserializer),
            counter: DeadLetterCounter::default(),
            listener: None,
        }
    }

    /// Calls `listener` when workers start or stop reading partitions.
    #[must_use]
    pub fn with_listener(mut self, listener: impl PartitionListener) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// The count of records sent to the dead-letter output, readable while the job runs.
    pub fn dead_letters(&self) -> DeadLetterCounter {
        self.counter.clone()
    }

    fn timeout(&self) -> Duration {
        self.config.request_timeout
    }

    fn consumer(&self, client_id: &str) -> Result<super::client::Consumer, KafkaError> {
        let c = &self.config;
        client_config(
            &c.brokers,
            &[
                ("group.id", &c.group_id),
                ("client.id", client_id),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("enable.partition.eof", "false"),
                ("auto.offset.reset", c.out_of_range.rdkafka_value()),
                // librdkafka waits 1 s by default before fetching again once its local
                // queue was over a threshold: a stall for a source that drains in batches.
                ("fetch.queue.backoff.ms", "20"),
                // Statistics carry each partition's lag (`ferroflow_kafka_consumer_lag`).
                ("statistics.interval.ms", STATISTICS_INTERVAL_MS),
            ],
            &c.properties,
        )
        .create_with_context(LagContext)
        .map_err(|e| KafkaError::client("creating a consumer", e))
    }
}

/// Every partition of the selected topics, in order.
pub(crate) fn list_partitions<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topics: &Topics,
    timeout: Duration,
) -> Result<Vec<TopicPartition>, KafkaError> {
    let mut out = Vec::new();
    match topics {
        Topics::List(names) => {
            for name in names {
                let meta = consumer
                    .fetch_metadata(Some(name), timeout)
                    .map_err(|e| KafkaError::client(format!("reading metadata of `{name}`"), e))?;
                let topic = meta.topics().iter().find(|t| t.name() == name);
                match topic {
                    Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                        out.extend(t.partitions().iter().map(|p| TopicPartition {
                            topic: name.clone(),
                            partition: p.id(),
                        }));
                    }
                    _ => {
                        return Err(KafkaError::Config(format!(
                            "topic `{name}` does not exist (or has no partitions)"
                        )))
                    }
                }
            }
        }
        Topics::Pattern(p) => {
            let re = regex::Regex::new(&format!("^(?:{p})$"))
                .map_err(|e| KafkaError::Config(format!("bad topic pattern `{p}`: {e}")))?;
            let meta = consumer
                .fetch_metadata(None, timeout)
                .map_err(|e| KafkaError::client("reading cluster metadata", e))?;
            for t in meta.topics() {
                if t.name().starts_with("__") || !re.is_match(t.name()) || t.error().is_some() {
                    continue;
                }
                out.extend(t.partitions().iter().map(|p| TopicPartition {
                    topic: t.name().to_string(),
                    partition: p.id(),
                }));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Where each partition starts and (when bounded) ends.
pub(crate) struct Plan {
    pub(crate) start: i64,
    pub(crate) earliest: i64,
    pub(crate) end: Option<i64>,
}

fn resolve(
    reset: OffsetReset,
    tp: &TopicPartition,
    low: i64,
    high: i64,
) -> Result<i64, KafkaError> {
    match reset {
        OffsetReset::Earliest => Ok(low),
        OffsetReset::Latest => Ok(high),
        OffsetReset::Fail => Err(KafkaError::Config(format!(
            "no start offset for {}/{} and the reset policy is `fail`",
            tp.topic, tp.partition
        ))),
    }
}

/// A librdkafka partition list of `(topic, partition, offset)`.
pub(crate) fn tpl<'a>(
    parts: impl IntoIterator<Item = (&'a str, i32, Offset)>,
) -> Result<TopicPartitionList, KafkaError> {
    let mut list = TopicPartitionList::new();
    for (topic, partition, offset) in parts {
        list.add_partition_offset(topic, partition, offset)
            .map_err(|e| KafkaError::client("building a partition list", e))?;
    }
    Ok(list)
}

/// `parts`, each at `offset`.
fn tpl_at(parts: &[TopicPartition], offset: Offset) -> Result<TopicPartitionList, KafkaError> {
    tpl(parts
        .iter()
        .map(|tp| (tp.topic.as_str(), tp.partition, offset)))
}

fn offsets_of(list: &TopicPartitionList) -> BTreeMap<(String, i32), Offset> {
    list.elements()
        .iter()
        .map(|e| ((e.topic().to_string(), e.partition()), e.offset()))
        .collect()
}

/// Resolves the start mode to an offset per partition.
pub(crate) fn plan<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    config: &KafkaSourceConfig,
    parts: &[TopicPartition],
    timeout: Duration,
) -> Result<Vec<Plan>, KafkaError> {
    let mut marks = Vec::with_capacity(parts.len());
    for tp in parts {
        marks.push(
            consumer
                .fetch_watermarks(&tp.topic, tp.partition, timeout)
                .map_err(|e| {
                    KafkaError::client(
                        format!("reading offsets of {}/{}", tp.topic, tp.partition),
                        e,
                    )
                })?,
        );
    }
    let looked_up = match &config.start {
        StartMode::Timestamp { epoch_ms } => Some(offsets_of(
            &consumer
                .offsets_for_times(tpl_at(parts, Offset::Offset(*epoch_ms))?, timeout)
                .map_err(|e| KafkaError::client("looking up offsets by time", e))?,
        )),
        StartMode::Committed { .. } => Some(offsets_of(
            &consumer
                .committed_offsets(tpl_at(parts, Offset::Invalid)?, timeout)
                .map_err(|e| KafkaError::client("reading committed offsets", e))?,
        )),
        _ => None,
    };
    parts
        .iter()
        .zip(marks)
        .map(|(tp, (low, high))| {
            let found = looked_up
                .as_ref()
                .and_then(|m| m.get(&(tp.topic.clone(), tp.partition)))
                .and_then(|o| o.to_raw())
                .filter(|o| *o >= 0);
            let start = match &config.start {
                StartMode::Earliest => low,
                StartMode::Latest => high,
                // No record at or after the time: start at the end.
                StartMode::Timestamp { .. } => found.unwrap_or(high),
                StartMode::Committed { reset } => match found {
                    Some(o) => o,
                    None => resolve(*reset, tp, low, high)?,
                },
                StartMode::Offsets { offsets, otherwise } => {
                    match offsets.get(&tp.topic).and_then(|m| m.get(&tp.partition)) {
                        Some(o) => *o,
                        None => resolve(*otherwise, tp, low, high)?,
                    }
                }
            };
            let start = if (low..=high).contains(&start) {
                start
            } else {
                tracing::warn!(topic = %tp.topic, partition = tp.partition, start, low, high, "Start offset out of range; applying the out-of-range policy.");
                resolve(config.out_of_range, tp, low, high)?
            };
            Ok(Plan {
                start,
                earliest: low,
                end: config.stop_at_end.then_some(high),
            })
        })
        .collect()
}

/// The worker that owns a partition.
pub(crate) fn owner(topic: &str, partition: i32, parallelism: usize) -> usize {
    let h = u64::from(crc32fast::hash(topic.as_bytes())) + u64::from(partition.unsigned_abs());
    (h % parallelism.max(1) as u64) as usize
}

impl<D: Deserializer> Source for KafkaSource<D> {
    type Item = D::Output;

    fn name(&self) -> String {
        "kafka".into()
    }

    fn create_splits(
        &mut self,
        parallelism: usize,
    ) -> Result<Vec<Box<dyn SplitReader<D::Output>>>> {
        self.config
            .validate()
            .map_err(ferroflow_core::Error::Config)?;
        let timeout = self.timeout();
        let admin = self.consumer("ferroflow-admin")?;
        let cluster: Arc<str> = admin
            .client()
            .fetch_cluster_id(timeout)
            .unwrap_or_else(|| self.config.brokers.clone())
            .into();
        let parts = list_partitions(&admin, &self.config.topics, timeout)?;
        let plans = plan(&admin, &self.config, &parts, timeout)?;
        drop(admin);
        let dead = DeadLetters::open(
            &self.config.dead_letter,
            &self.config.brokers,
            &self.config.properties,
            self.counter.clone(),
            &format!("kafka:{:?}", self.config.topics),
            timeout,
        )?;
        let topics: BTreeSet<String> = parts.iter().map(|tp| tp.topic.clone()).collect();
        tracing::info!(%cluster, partitions = parts.len(), ?topics, "Kafka source planned.");
        let shared = Arc::new(Shared {
            config: self.config.clone(),
            cluster,
            topics,
            deserializer: Arc::clone(&self.deserializer),
            dead,
            listener: self.listener.clone(),
        });
        let discover = !self.config.discovery_interval.is_zero() && !self.config.stop_at_end;
        let mut by_worker: Vec<Vec<(TopicPartition, Plan)>> =
            (0..parallelism).map(|_| Vec::new()).collect();
        for (tp, plan) in parts.into_iter().zip(plans) {
            by_worker[owner(&tp.topic, tp.partition, parallelism)].push((tp, plan));
        }
        let mut splits: Vec<Box<dyn SplitReader<D::Output>>> = Vec::new();
        for (w, mine) in by_worker.into_iter().enumerate() {
            if mine.is_empty() && !discover {
                continue;
            }
            let worker = Worker::shared(self.consumer(&format!("ferroflow-{w}"))?, w);
            for (tp, plan) in &mine {
                splits.push(Box::new(Worker::reader(&worker, &shared, tp, plan)));
            }
            if discover {
                let known = mine.into_iter().map(|(tp, _)| tp).collect();
                splits.push(Box::new(WatchReader::new(
                    worker,
                    Arc::clone(&shared),
                    w,
                    parallelism,
                    known,
                )));
            }
        }
        Ok(splits)
    }
}

#[cfg(test)]
mod tests {
    use super::owner;

    #[test]
    fn owners_are_stable_and_spread() {
        assert_eq!(owner("clicks", 3, 4), owner("clicks", 3, 4));
        for p in 0..64 {
            assert!(owner("clicks", p, 3) < 3);
        }
        // Consecutive partitions of a topic go to consecutive workers.
        let workers: std::collections::BTreeSet<usize> =
            (0..8).map(|p| owner("clicks", p, 8)).collect();
        assert_eq!(workers.len(), 8);
        assert_eq!(owner("clicks", 5, 1), 0);
    }
}
