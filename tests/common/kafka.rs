//! A Kafka-protocol broker for the tests: `noida-db` (a Kafka-protocol broker with
//! transactions, `pip install noida-db==0.2.3`) started as its own process on a free
//! loopback port with its own data directory, or the broker `FERROFLOW_KAFKA_BROKERS`
//! names. `scripts/test` installs noida-db; without either, a test that needs a broker
//! fails and says how to get one.

use ferroflow::connectors::kafka::rdkafka::admin::{
    AdminClient, AdminOptions, NewTopic, TopicReplication,
};
use ferroflow::connectors::kafka::rdkafka::client::DefaultClientContext;
use ferroflow::connectors::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use ferroflow::connectors::kafka::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use ferroflow::connectors::kafka::rdkafka::producer::{
    BaseRecord, DefaultProducerContext, Producer, ThreadedProducer,
};
use ferroflow::connectors::kafka::rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running broker; a broker process this harness started is killed on drop.
pub struct Broker {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Whether this harness started the broker (a new cluster of its own).
    pub owned: bool,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c);
        }
    }
}

/// Kills a broker started in a process group of its own, and the whole group: the
/// `noida-db` on `PATH` is often a wrapper (pip's entry point, pyenv's shim) whose child
/// is the broker, and killing the wrapper alone would leave the broker running.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// The `noida-db` program: `FERROFLOW_NOIDA_DB`, or `noida-db` on `PATH`.
fn noida_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("FERROFLOW_NOIDA_DB") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("noida-db"))
            .find(|p| p.is_file())
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A broker for one test: a new noida-db process of its own (a cluster of its own), or
/// the one `FERROFLOW_KAFKA_BROKERS` names. Fails the test when neither can be had.
pub fn broker() -> Broker {
    broker_of_cluster(None)
}

/// As [`broker`], with a given Kafka cluster id when the harness starts the broker.
/// noida-db keeps its cluster id in `kafka.json` in its data directory; a new data
/// directory gets a fixed default, so two brokers would otherwise look like one cluster.
pub fn broker_of_cluster(cluster_id: Option<&str>) -> Broker {
    let dir = tempfile::tempdir().unwrap();
    if let Ok(brokers) = std::env::var("FERROFLOW_KAFKA_BROKERS") {
        return Broker {
            brokers,
            owned: false,
            child: None,
            _dir: dir,
        };
    }
    let noida = noida_binary().unwrap_or_else(|| {
        panic!(
            "no Kafka broker: run `bash scripts/test` (it installs one), or \
             `pip install noida-db==0.2.3`, or set FERROFLOW_KAFKA_BROKERS"
        )
    });
    // A port another process takes between here and the broker's bind fails the start;
    // try a few.
    for _ in 0..5 {
        let port = free_port();
        if let Some(id) = cluster_id {
            let data = dir.path().join("data");
            std::fs::create_dir_all(&data).unwrap();
            let state = serde_json::json!({
                "topics": [], "broker_id": 1, "host": "127.0.0.1", "port": port,
                "cluster_id": id, "next_producer_id": 1000, "committed_offsets": [],
                "offset_metadata": [], "broker_configs": {}
            });
            std::fs::write(data.join("kafka.json"), state.to_string()).unwrap();
        }
        let log = std::fs::File::create(dir.path().join("noida.log")).unwrap();
        let mut child = Command::new(&noida)
            .args(["start", "--only", "kafka", "--host", "127.0.0.1"])
            .args(["--kafka-port", &port.to_string()])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", noida.display()));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Broker {
                    brokers: format!("127.0.0.1:{port}"),
                    owned: true,
                    child: Some(child),
                    _dir: dir,
                };
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if Instant::now() > deadline {
                stop(&mut child);
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    let log = std::fs::read_to_string(dir.path().join("noida.log")).unwrap_or_default();
    panic!("noida-db did not start a Kafka listener: {log}");
}

/// A topic name no other test uses.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = futures_executor::block_on(admin.create_topics(
        [&new],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))
    .unwrap();
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

/// Produces `(key, value)` records, waiting while the producer's queue is full, and
/// waits until all are acknowledged.
pub fn produce<'a>(
    brokers: &str,
    topic: &str,
    records: impl IntoIterator<Item = &'a (Option<String>, Vec<u8>)>,
) {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "20")
        .create()
        .unwrap();
    for (k, v) in records {
        let mut r = BaseRecord::<str, [u8]>::to(topic).payload(&v[..]);
        if let Some(k) = k {
            r = r.key(k.as_str());
        }
        loop {
            match p.send(r) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    r = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => panic!("producing to {topic}: {e}"),
            }
        }
    }
    p.flush(Duration::from_secs(600)).unwrap();
}

/// A consumer for reading topics back, with `isolation.level` = `isolation`.
fn reader_with(brokers: &str, isolation: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "ferroflow-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation)
        .create()
        .unwrap()
}

fn reader(brokers: &str) -> BaseConsumer {
    reader_with(brokers, "read_uncommitted")
}

/// Every record of `topic` (aborted ones included): `(partition, key, value)`, in
/// partition and offset order.
pub fn read_all(brokers: &str, topic: &str) -> Vec<(i32, Option<String>, String)> {
    read_with(brokers, topic, "read_uncommitted")
}

/// The committed records of `topic`, as a `read_committed` reader sees them.
pub fn read_committed(brokers: &str, topic: &str) -> Vec<(i32, Option<String>, String)> {
    read_with(brokers, topic, "read_committed")
}

/// Reads each partition from its start until the end the broker reports (for
/// `read_committed`, the last stable offset), which is not `high - 1` when transaction
/// markers take offsets.
fn read_with(brokers: &str, topic: &str, isolation: &str) -> Vec<(i32, Option<String>, String)> {
    let c = reader_with(brokers, isolation);
    let meta = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let parts: Vec<i32> = meta.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut out = Vec::new();
    for p in parts {
        let (low, high) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        if high <= low {
            continue;
        }
        let mut l = TopicPartitionList::new();
        l.add_partition_offset(topic, p, Offset::Offset(low))
            .unwrap();
        c.assign(&l).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "reading {topic}/{p} timed out");
            match c.poll(Duration::from_millis(100)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => panic!("reading {topic}/{p}: {e}"),
                Some(Ok(m)) => out.push((
                    p,
                    m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                )),
            }
        }
    }
    out
}

/// The offsets `group` has committed for each partition of `topic` (-1: none).
pub fn committed(brokers: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut l = TopicPartitionList::new();
    for p in 0..partitions {
        l.add_partition(topic, p);
    }
    let got = c.committed_offsets(l, Duration::from_secs(10)).unwrap();
    got.elements()
        .iter()
        .map(|e| e.offset().to_raw().unwrap_or(-1))
        .collect()
}

/// The headers of the first record of partition 0 of `topic`, as text.
pub fn headers_of_first(brokers: &str, topic: &str) -> Vec<(String, String)> {
    use ferroflow::connectors::kafka::rdkafka::message::Headers;
    let c = reader(brokers);
    let mut l = TopicPartitionList::new();
    l.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    c.assign(&l).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no record in {topic}");
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            return m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
        }
    }
}
