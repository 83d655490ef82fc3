//! Reading partitions: one consumer per worker, one split per partition.
//!
//! The worker's consumer fetches for all its partitions; whichever partition reader finds
//! its buffer empty polls the consumer and sorts what comes into per-partition buffers,
//! decoded. A reader's position is the offset after the last record it handed on, so
//! buffered records are never counted as read.

use super::config::{KafkaSourceConfig, RestorePositions};
use super::dead_letter::DeadLetters;
use super::decode::{Deserializer, RecordView};
use super::source::{list_partitions, owner, plan, tpl, PartitionListener, Plan, TopicPartition};
use super::KafkaError;
use ferroflow_core::{Result, SplitPosition, SplitReader, SplitStatus};
use parking_lot::Mutex;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::Headers;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What all readers of one source share.
pub(crate) struct Shared<D: Deserializer> {
    pub(crate) config: KafkaSourceConfig,
    /// The cluster id (or, if the brokers do not say, the bootstrap list).
    pub(crate) cluster: Arc<str>,
    /// Topics read at start.
    pub(crate) topics: BTreeSet<String>,
    pub(crate) deserializer: Arc<D>,
    pub(crate) dead: DeadLetters,
    pub(crate) listener: Option<Arc<dyn PartitionListener>>,
}

type Buffer<T> = VecDeque<(i64, Option<T>)>;

/// One worker's consumer and the records it fetched, by partition.
pub(crate) struct Worker<T> {
    consumer: super::client::Consumer,
    index: usize,
    buffers: HashMap<Arc<str>, HashMap<i32, Buffer<T>>>,
}

pub(crate) type SharedWorker<T> = Arc<Mutex<Worker<T>>>;

impl<T: Send + 'static> Worker<T> {
    pub(crate) fn shared(consumer: super::client::Consumer, index: usize) -> SharedWorker<T> {
        Arc::new(Mutex::new(Self {
            consumer,
            index,
            buffers: HashMap::new(),
        }))
    }

    pub(crate) fn reader<D: Deserializer<Output = T>>(
        worker: &SharedWorker<T>,
        shared: &Arc<Shared<D>>,
        tp: &TopicPartition,
        plan: &Plan,
    ) -> PartitionReader<D> {
        PartitionReader {
            worker: Arc::clone(worker),
            shared: Arc::clone(shared),
            topic: Arc::from(tp.topic.as_str()),
            partition: tp.partition,
            next: plan.start,
            earliest: plan.earliest,
            end: plan.end,
            assigned: false,
        }
    }

    /// Polls the consumer for up to `max` records and sorts them into the buffers.
    fn fill<D: Deserializer<Output = T>>(
        &mut self,
        max: usize,
        shared: &Shared<D>,
    ) -> Result<(), KafkaError> {
        let mut dead = false;
        for _ in 0..max {
            let msg = match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    fatal_or_log(e)?;
                    continue;
                }
            };
            let Some(buffer) = self
                .buffers
                .get_mut(msg.topic())
                .and_then(|m| m.get_mut(&msg.partition()))
            else {
                // A partition this worker stopped reading.
                continue;
            };
            // Allocates only for records that have headers.
            let mut headers = Vec::new();
            if let Some(h) = msg.headers() {
                headers.extend(h.iter().map(|h| (h.key, h.value)));
            }
            let view = RecordView {
                topic: msg.topic(),
                partition: msg.partition(),
                offset: msg.offset(),
                timestamp: msg.timestamp().to_millis(),
                key: msg.key(),
                payload: msg.payload(),
                headers: &headers,
            };
            match shared.deserializer.deserialize(&view) {
                Ok(item) => buffer.push_back((msg.offset(), Some(item))),
                Err(error) => {
                    shared.dead.send(&view, &error.to_string())?;
                    dead = true;
                    buffer.push_back((msg.offset(), None));
                }
            }
        }
        if dead {
            shared.dead.flush()?;
        }
        Ok(())
    }
}

/// Consumer errors that must stop the job; the rest are logged (librdkafka retries).
fn fatal_or_log(e: RdError) -> Result<(), KafkaError> {
    let code = e.rdkafka_error_code();
    // `AutoOffsetReset`: an offset out of range with `out_of_range = fail`.
    if matches!(
        code,
        Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::Fatal)
    ) {
        return Err(KafkaError::client("consuming", e));
    }
    tracing::warn!(error = %e, "Kafka consumer error; the client retries.");
    Ok(())
}

/// Reads one partition.
pub(crate) struct PartitionReader<D: Deserializer> {
    worker: SharedWorker<D::Output>,
    shared: Arc<Shared<D>>,
    topic: Arc<str>,
    partition: i32,
    /// Offset of the next record to hand on.
    next: i64,
    earliest: i64,
    end: Option<i64>,
    assigned: bool,
}

impl<D: Deserializer> PartitionReader<D> {
    fn tp(&self) -> TopicPartition {
        TopicPartition {
            topic: self.topic.to_string(),
            partition: self.partition,
        }
    }

    /// This partition at `offset`, as a librdkafka list.
    fn list(&self, offset: Offset) -> Result<TopicPartitionList, KafkaError> {
        tpl([(&*self.topic, self.partition, offset)])
    }

    fn at_end(&self) -> bool {
        self.end.is_some_and(|end| self.next >= end)
    }

    fn unassign(&mut self) -> Result<(), KafkaError> {
        if !self.assigned {
            return Ok(());
        }
        self.assigned = false;
        let mut w = self.worker.lock();
        if let Some(m) = w.buffers.get_mut(&*self.topic) {
            m.remove(&self.partition);
        }
        let list = self.list(Offset::Invalid)?;
        w.consumer
            .incremental_unassign(&list)
            .map_err(|e| KafkaError::client("unassigning a partition", e))?;
        if let Some(l) = &self.shared.listener {
            l.revoked(w.index, &[self.tp()]);
        }
        Ok(())
    }

    /// Checks that the checkpoint's positions belong to what this source reads.
    fn check_recorded(&self, recorded: &[&SplitPosition]) -> Result<(), KafkaError> {
        let current = &self.shared.cluster;
        for p in recorded {
            let (Some(cluster), Some(topic)) = (p["cluster"].as_str(), p["topic"].as_str()) else {
                continue;
            };
            if cluster != &**current || !self.shared.topics.contains(topic) {
                return Err(KafkaError::Restore(format!(
                    "the checkpoint's positions are for topic `{topic}` on cluster `{cluster}`, \
                     but this source reads {:?} on cluster `{current}`; to keep the state and read \
                     from the configured start mode instead, set `on_restore = \"start_mode\"`",
                    self.shared.topics
                )));
            }
        }
        Ok(())
    }
}

impl<D: Deserializer> SplitReader<D::Output> for PartitionReader<D> {
    fn split_id(&self) -> String {
        format!("{}/{}", self.topic, self.partition)
    }

    fn owner(&self, parallelism: usize) -> Option<usize> {
        Some(owner(&self.topic, self.partition, parallelism))
    }

    fn restore(&mut self, own: Option<&SplitPosition>, recorded: &[&SplitPosition]) -> Result<()> {
        if self.shared.config.on_restore == RestorePositions::StartMode {
            tracing::info!(split = %self.split_id(), offset = self.next, "Restored state; position taken from the start mode, not the checkpoint.");
            return Ok(());
        }
        self.check_recorded(recorded)?;
        match own {
            Some(p) => self.seek(p),
            None => {
                // A partition created after the checkpoint: read all of it.
                tracing::info!(split = %self.split_id(), offset = self.earliest, "Partition not in the checkpoint; reading it from its earliest offset.");
                self.next = self.earliest;
                Ok(())
            }
        }
    }

    fn seek(&mut self, position: &SplitPosition) -> Result<()> {
        match position["offset"].as_i64() {
            Some(offset) => {
                self.next = offset;
                Ok(())
            }
            None => Err(KafkaError::Restore(format!(
                "bad position {position} for {}",
                self.split_id()
            ))
            .into()),
        }
    }

    fn open(&mut self) -> Result<()> {
        if self.at_end() {
            return Ok(());
        }
        let list = self.list(Offset::Offset(self.next))?;
        let mut w = self.worker.lock();
        w.buffers
            .entry(Arc::clone(&self.topic))
            .or_default()
            .insert(self.partition, VecDeque::new());
        w.consumer
            .incremental_assign(&list)
            .map_err(|e| KafkaError::client("assigning a partition", e))?;
        self.assigned = true;
        if let Some(l) = &self.shared.listener {
            l.assigned(w.index, &[self.tp()]);
        }
        Ok(())
    }

    fn poll(&mut self, max: usize, out: &mut Vec<D::Output>) -> Result<SplitStatus> {
        if self.at_end() {
            return Ok(SplitStatus::Finished);
        }
        let mut w = self.worker.lock();
        let empty = w
            .buffers
            .get(&*self.topic)
            .and_then(|m| m.get(&self.partition))
            .is_none_or(VecDeque::is_empty);
        if empty {
            w.fill(max, &self.shared)?;
        }
        let Some(buffer) = w
            .buffers
            .get_mut(&*self.topic)
            .and_then(|m| m.get_mut(&self.partition))
        else {
            return Ok(SplitStatus::Idle);
        };
        let mut taken = 0;
        while taken < max {
            if self.at_end() {
                break;
            }
            let Some((offset, item)) = buffer.pop_front() else {
                break;
            };
            taken += 1;
            self.next = offset + 1;
            if let Some(item) = item {
                out.push(item);
            }
        }
        drop(w);
        if self.at_end() {
            return Ok(SplitStatus::Finished);
        }
        Ok(if taken > 0 {
            SplitStatus::More
        } else {
            SplitStatus::Idle
        })
    }

    fn close(&mut self) -> Result<()> {
        Ok(self.unassign()?)
    }

    fn position(&self) -> Option<SplitPosition> {
        Some(serde_json::json!({
            "cluster": &*self.shared.cluster,
            "topic": &*self.topic,
            "partition": self.partition,
            "offset": self.next,
        }))
    }

    fn checkpoint_complete(&mut self, checkpoint: u64, position: &SplitPosition) -> Result<()> {
        if !self.shared.config.commit_offsets {
            return Ok(());
        }
        let Some(offset) = position["offset"].as_i64() else {
            return Ok(());
        };
        let list = self.list(Offset::Offset(offset))?;
        if let Err(e) = self.worker.lock().consumer.commit(&list, CommitMode::Async) {
            // Committed offsets are for monitoring; the checkpoint holds the truth.
            tracing::warn!(split = %self.split_id(), checkpoint, error = %e, "Could not commit offsets to the consumer group.");
        }
        Ok(())
    }
}

/// One per worker: looks for new partitions at the discovery interval. Produces no
/// records and does not hold the worker's watermark back.
pub(crate) struct WatchReader<D: Deserializer> {
    worker: SharedWorker<D::Output>,
    shared: Arc<Shared<D>>,
    index: usize,
    parallelism: usize,
    known: BTreeSet<TopicPartition>,
    last: Instant,
}

impl<D: Deserializer> WatchReader<D> {
    pub(crate) fn new(
        worker: SharedWorker<D::Output>,
        shared: Arc<Shared<D>>,
        index: usize,
        parallelism: usize,
        known: BTreeSet<TopicPartition>,
    ) -> Self {
        Self {
            worker,
            shared,
            index,
            parallelism,
            known,
            last: Instant::now(),
        }
    }

    fn look(&mut self) -> Result<Vec<Box<dyn SplitReader<D::Output>>>, KafkaError> {
        let timeout = self.shared.config.request_timeout;
        let w = self.worker.lock();
        let all = list_partitions(&w.consumer, &self.shared.config.topics, timeout)?;
        let new: Vec<TopicPartition> = all
            .into_iter()
            .filter(|tp| owner(&tp.topic, tp.partition, self.parallelism) == self.index)
            .filter(|tp| !self.known.contains(tp))
            .collect();
        if new.is_empty() {
            return Ok(Vec::new());
        }
        let plans = plan(&w.consumer, &self.shared.config, &new, timeout)?;
        drop(w);
        let mut readers: Vec<Box<dyn SplitReader<D::Output>>> = Vec::new();
        for (tp, mut p) in new.into_iter().zip(plans) {
            // New partitions are read in full.
            p.start = p.earliest;
            readers.push(Box::new(Worker::reader(
                &self.worker,
                &self.shared,
                &tp,
                &p,
            )));
            self.known.insert(tp);
        }
        Ok(readers)
    }
}

impl<D: Deserializer> SplitReader<D::Output> for WatchReader<D> {
    fn split_id(&self) -> String {
        format!("discovery-{}", self.index)
    }

    fn owner(&self, _parallelism: usize) -> Option<usize> {
        Some(self.index)
    }

    fn restore(
        &mut self,
        _own: Option<&SplitPosition>,
        _recorded: &[&SplitPosition],
    ) -> Result<()> {
        Ok(())
    }

    fn poll(&mut self, _max: usize, _out: &mut Vec<D::Output>) -> Result<SplitStatus> {
        Ok(SplitStatus::Idle)
    }

    fn position(&self) -> Option<SplitPosition> {
        Some(serde_json::json!({}))
    }

    fn holds_watermark(&self) -> bool {
        false
    }

    fn discover(&mut self) -> Result<Vec<Box<dyn SplitReader<D::Output>>>> {
        let interval = self.shared.config.discovery_interval;
        if self.last.elapsed() < interval {
            return Ok(Vec::new());
        }
        self.last = Instant::now();
        match self.look() {
            Ok(found) => Ok(found),
            Err(e) => {
                tracing::warn!(worker = self.index, error = %e, "Partition discovery failed; trying again at the next interval.");
                Ok(Vec::new())
            }
        }
    }
}
