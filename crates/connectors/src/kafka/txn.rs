//! Exactly-once delivery through Kafka transactions.
//!
//! Each worker owns a pool of transactional producers, ids `{prefix}-{worker}-{n}`. Records
//! go into the open transaction of one of them; at a checkpoint barrier that transaction
//! is flushed and set aside (prepared), and the next records open a transaction on a free
//! producer. When the checkpoint completes, the prepared transaction is committed.
//!
//! librdkafka cannot take over another process's open transaction, so a crash between a
//! checkpoint completing and its transaction committing would lose that transaction (the
//! restarted producer aborts it). To close that gap, the committable stored in the
//! checkpoint carries the transaction's records, and every transaction also commits a
//! marker: an offset with a unique token, for the group `{prefix}-marker-{worker}` on
//! partition 0 of the topic, visible only if the transaction committed. On restore the
//! sink fences every transactional id the previous run used, reads the marker, and
//! writes again, in one new transaction, exactly the transactions whose tokens are not
//! yet committed.

use super::client::{client_config, flush, send_waiting, tracked_producer, TrackedProducer};
use super::decode::ProducerRecord;
use super::sink::{base_record, KafkaSinkConfig};
use super::{wal, KafkaError};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::KafkaError as RdError;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a worker stores in a checkpoint: who it was (so a restore can fence its
/// transactional ids) and the transaction it prepared, if it wrote anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Committable {
    pub(crate) prefix: String,
    pub(crate) topic: String,
    pub(crate) worker: usize,
    pub(crate) pool: usize,
    pub(crate) checkpoint: u64,
    pub(crate) transaction: Option<PreparedTxn>,
}

/// A flushed, uncommitted transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PreparedTxn {
    pub(crate) id: String,
    /// Unique per transaction; committed as the marker's metadata.
    pub(crate) token: String,
    pub(crate) count: usize,
    /// The records, in the [`wal`] format.
    pub(crate) records: String,
}

pub(crate) fn transactional_id(prefix: &str, worker: usize, n: usize) -> String {
    format!("{prefix}-{worker}-{n}")
}

fn marker_group(prefix: &str, worker: usize) -> String {
    format!("{prefix}-marker-{worker}")
}

/// Runs a transactional call, again while librdkafka says a retry may succeed.
fn txn_call(
    what: &str,
    timeout: Duration,
    mut call: impl FnMut() -> rdkafka::error::KafkaResult<()>,
) -> Result<(), KafkaError> {
    let start = Instant::now();
    loop {
        match call() {
            Ok(()) => return Ok(()),
            Err(RdError::Transaction(e)) if e.is_retriable() && start.elapsed() < timeout => {
                tracing::debug!(error = %e, "{what}: retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(KafkaError::client(what, e)),
        }
    }
}

/// A transactional producer for `id`, initialised: any transaction an earlier producer
/// with this id left open is aborted, and that producer is fenced.
fn init_producer(config: &KafkaSinkConfig, id: &str) -> Result<TrackedProducer, KafkaError> {
    let timeout = config.transaction_timeout.as_millis().to_string();
    let client = client_config(
        &config.brokers,
        &[
            ("client.id", id),
            ("transactional.id", id),
            ("transaction.timeout.ms", &timeout),
            ("partitioner", "murmur2_random"),
            ("linger.ms", "5"),
        ],
        &config.properties,
    );
    let producer = tracked_producer(&client)?;
    let wait = config.flush_timeout;
    txn_call(
        &format!("initialising transactional id `{id}`"),
        wait,
        || producer.init_transactions(wait),
    )?;
    Ok(producer)
}

/// The marker of one worker's transactions.
struct Marker {
    group: String,
    topic: String,
    consumer: BaseConsumer,
    metadata: ConsumerGroupMetadata,
}

impl Marker {
    fn new(config: &KafkaSinkConfig, group: String, topic: &str) -> Result<Self, KafkaError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &config.brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            // Committed offsets of a transaction still open are reported as unstable and
            // waited for, not read as absent.
            .set("isolation.level", "read_committed");
        // Security and connection settings apply here too; producer-only ones are
        // ignored by the consumer.
        for (k, v) in &config.properties {
            c.set(k, v);
        }
        let consumer: BaseConsumer = c
            .create()
            .map_err(|e| KafkaError::client("creating the marker reader", e))?;
        let metadata = consumer
            .group_metadata()
            .ok_or_else(|| KafkaError::Config(format!("no group metadata for `{group}`")))?;
        Ok(Self {
            group,
            topic: topic.to_string(),
            consumer,
            metadata,
        })
    }

    fn offsets(&self, token: &str) -> Result<TopicPartitionList, KafkaError> {
        let mut l = TopicPartitionList::new();
        let mut e = l.add_partition(&self.topic, 0);
        e.set_offset(Offset::Offset(0))
            .map_err(|e| KafkaError::client("building the marker", e))?;
        e.set_metadata(token);
        Ok(l)
    }

    /// The token of the last transaction committed with this marker.
    fn committed(&self, timeout: Duration) -> Result<Option<String>, KafkaError> {
        let mut l = TopicPartitionList::new();
        l.add_partition(&self.topic, 0);
        let got = self.consumer.committed_offsets(l, timeout).map_err(|e| {
            KafkaError::client(format!("reading the marker of `{}`", self.group), e)
        })?;
        Ok(got
            .elements()
            .first()
            .filter(|e| e.offset() != Offset::Invalid)
            .map(|e| e.metadata().to_string())
            .filter(|m| !m.is_empty()))
    }

    /// Adds the marker with `token` to `producer`'s open transaction, then commits it.
    fn commit(
        &self,
        producer: &TrackedProducer,
        token: &str,
        timeout: Duration,
    ) -> Result<(), KafkaError> {
        let offsets = self.offsets(token)?;
        txn_call("adding the marker to the transaction", timeout, || {
            producer.send_offsets_to_transaction(&offsets, &self.metadata, timeout)
        })?;
        txn_call("committing the transaction", timeout, || {
            producer.commit_transaction(timeout)
        })
    }
}

/// After a restore: fences every transactional id the previous run's workers in
/// `committables` used, and writes again the transactions they prepared whose marker
/// shows no commit. Returns how many records were written again.
pub(crate) fn recover(
    config: &KafkaSinkConfig,
    committables: &[serde_json::Value],
) -> Result<usize, KafkaError> {
    let mut by_worker: BTreeMap<(String, usize), Vec<Committable>> = BTreeMap::new();
    for c in committables {
        let c: Committable = serde_json::from_value(c.clone()).map_err(|e| {
            KafkaError::Restore(format!(
                "the checkpoint holds a sink committable that is not a Kafka transaction: {e}"
            ))
        })?;
        by_worker
            .entry((c.prefix.clone(), c.worker))
            .or_default()
            .push(c);
    }
    let timeout = config.flush_timeout;
    let mut resent = 0;
    for ((prefix, worker), mut list) in by_worker {
        list.sort_by_key(|c| c.checkpoint);
        list.dedup_by_key(|c| c.checkpoint);
        let pool = list.iter().map(|c| c.pool).max().unwrap_or(0);
        let mut first = None;
        for n in 0..pool {
            let p = init_producer(config, &transactional_id(&prefix, worker, n))?;
            first.get_or_insert(p);
        }
        let pending: Vec<&PreparedTxn> =
            list.iter().filter_map(|c| c.transaction.as_ref()).collect();
        let (Some(producer), Some(last)) = (first, list.last()) else {
            continue;
        };
        if pending.is_empty() {
            continue;
        }
        let marker = Marker::new(config, marker_group(&prefix, worker), &last.topic)?;
        let committed = marker.committed(timeout)?;
        let from = committed
            .as_deref()
            .and_then(|t| pending.iter().position(|p| p.token == t))
            .map_or(0, |i| i + 1);
        let lost = &pending[from..];
        let Some(newest) = lost.last() else {
            tracing::info!(worker, prefix, "restored transactions were all committed");
            continue;
        };
        txn_call("beginning a transaction", timeout, || {
            producer.begin_transaction()
        })?;
        let mut n = 0;
        for txn in lost {
            let records = wal::decode(&txn.records)
                .map_err(|e| KafkaError::Restore(format!("transaction `{}`: {e}", txn.token)))?;
            for r in &records {
                send_waiting(&producer, base_record(&last.topic, r), timeout)?;
            }
            n += records.len();
        }
        flush(&producer, timeout)?;
        marker.commit(&producer, &newest.token, timeout)?;
        tracing::warn!(
            worker,
            prefix,
            transactions = lost.len(),
            records = n,
            "wrote again transactions whose checkpoint completed but whose commit was lost"
        );
        metrics::counter!("ferroflow_kafka_sink_recovered_records_total").increment(n as u64);
        resent += n;
    }
    Ok(resent)
}

#[derive(Debug, Clone, PartialEq)]
enum Slot {
    Free,
    Open,
    Prepared { token: String, seq: u64 },
}

/// A transactional producer of the pool and what its transaction is waiting for.
struct Member {
    id: String,
    producer: TrackedProducer,
    slot: Slot,
}

/// One worker's transactional producers.
pub(crate) struct Transactions {
    config: KafkaSinkConfig,
    worker: usize,
    attempt: u64,
    producers: Vec<Member>,
    open: Option<usize>,
    records: Vec<ProducerRecord>,
    marker: Marker,
    seq: u64,
}

impl Transactions {
    /// Initialises the pool (fencing earlier producers with the same ids).
    pub(crate) fn open(
        config: &KafkaSinkConfig,
        worker: usize,
        attempt: u64,
    ) -> Result<Self, KafkaError> {
        let prefix = &config.transactional_id_prefix;
        let producers = (0..config.transaction_pool_size)
            .map(|n| {
                let id = transactional_id(prefix, worker, n);
                let producer = init_producer(config, &id)?;
                Ok(Member {
                    id,
                    producer,
                    slot: Slot::Free,
                })
            })
            .collect::<Result<Vec<_>, KafkaError>>()?;
        Ok(Self {
            marker: Marker::new(config, marker_group(prefix, worker), &config.topic)?,
            config: config.clone(),
            worker,
            attempt,
            producers,
            open: None,
            records: Vec::new(),
            seq: 0,
        })
    }

    fn timeout(&self) -> Duration {
        self.config.flush_timeout
    }

    /// The sequence number and marker token of the next transaction to be set aside;
    /// the token is unique across runs (it holds the run's start time).
    fn next_token(&mut self) -> (u64, String) {
        self.seq += 1;
        let token = format!("{}-{}-{}", self.attempt, self.worker, self.seq);
        (self.seq, token)
    }

    /// Sends `record` in the open transaction, opening one on a free producer if needed.
    pub(crate) fn send(&mut self, record: ProducerRecord) -> Result<(), KafkaError> {
        let timeout = self.timeout();
        let i = match self.open {
            Some(i) => i,
            None => {
                let Some(i) = self.producers.iter().position(|m| m.slot == Slot::Free) else {
                    return Err(KafkaError::Delivery(format!(
                        "transactional producers exhausted: all {} of worker {} hold transactions \
                         waiting for their checkpoints to complete; checkpoints are failing \
                         or slower than the transactions are opened (raise \
                         `transaction_pool_size`)",
                        self.producers.len(),
                        self.worker
                    )));
                };
                let producer = &self.producers[i].producer;
                txn_call("beginning a transaction", timeout, || {
                    producer.begin_transaction()
                })?;
                self.producers[i].slot = Slot::Open;
                self.open = Some(i);
                i
            }
        };
        let producer = &self.producers[i].producer;
        if let Some(what) = producer.context().take_failure() {
            return Err(KafkaError::Delivery(what));
        }
        send_waiting(producer, base_record(&self.config.topic, &record), timeout)?;
        self.records.push(record);
        Ok(())
    }

    /// Flushes the open transaction and sets it aside for `checkpoint`.
    pub(crate) fn prepare(&mut self, checkpoint: u64) -> Result<Committable, KafkaError> {
        let transaction = match self.open.take() {
            None => None,
            Some(i) => {
                flush(&self.producers[i].producer, self.timeout())?;
                let (seq, token) = self.next_token();
                self.producers[i].slot = Slot::Prepared {
                    token: token.clone(),
                    seq,
                };
                let records = std::mem::take(&mut self.records);
                Some(PreparedTxn {
                    id: self.producers[i].id.clone(),
                    token,
                    count: records.len(),
                    records: wal::encode(&records),
                })
            }
        };
        Ok(Committable {
            prefix: self.config.transactional_id_prefix.clone(),
            topic: self.config.topic.clone(),
            worker: self.worker,
            pool: self.producers.len(),
            checkpoint,
            transaction,
        })
    }

    fn commit_slot(&mut self, i: usize, token: &str) -> Result<(), KafkaError> {
        self.marker
            .commit(&self.producers[i].producer, token, self.timeout())?;
        self.producers[i].slot = Slot::Free;
        metrics::counter!("ferroflow_kafka_sink_transactions_committed_total").increment(1);
        Ok(())
    }

    /// Commits the prepared transactions of `committables` this pool holds (the others
    /// were committed already, or belong to a run that `recover` dealt with).
    pub(crate) fn commit(
        &mut self,
        committables: Vec<serde_json::Value>,
    ) -> Result<(), KafkaError> {
        for c in committables {
            let c: Committable = serde_json::from_value(c)
                .map_err(|e| KafkaError::Restore(format!("a committable of this sink: {e}")))?;
            let Some(txn) = c.transaction else { continue };
            let held = self.producers.iter().position(
                |p| matches!(&p.slot, Slot::Prepared { token, .. } if *token == txn.token),
            );
            if let Some(i) = held {
                self.commit_slot(i, &txn.token)?;
            }
        }
        Ok(())
    }

    /// The input ended: commits whatever is prepared, oldest first, and the open
    /// transaction.
    pub(crate) fn finish(&mut self) -> Result<(), KafkaError> {
        let mut prepared: Vec<(u64, usize, String)> = self
            .producers
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match &p.slot {
                Slot::Prepared { token, seq } => Some((*seq, i, token.clone())),
                _ => None,
            })
            .collect();
        prepared.sort();
        for (_, i, token) in prepared {
            self.commit_slot(i, &token)?;
        }
        if let Some(i) = self.open.take() {
            flush(&self.producers[i].producer, self.timeout())?;
            let (_, token) = self.next_token();
            self.records.clear();
            self.commit_slot(i, &token)?;
        }
        Ok(())
    }
}

impl Drop for Transactions {
    /// A failed job leaves transactions open; abort them now rather than leave
    /// `read_committed` readers waiting for the transaction timeout. (A restore writes
    /// again whatever a completed checkpoint needs.)
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        for Member { id, producer, slot } in &self.producers {
            if *slot == Slot::Free {
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(e) = producer.abort_transaction(left.max(Duration::from_millis(100))) {
                tracing::warn!(id, error = %e, "aborting an unfinished transaction");
            }
        }
    }
}
