//! A Kafka-protocol broker for the tests: `tansu` (with SQLite storage) started as its own
//! process on a free loopback port, or the broker `FERROFLOW_KAFKA_BROKERS` names.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running broker; a tansu child process is killed on drop.
pub struct Broker {
    /// `bootstrap.servers`.
    pub brokers: String,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn tansu_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("FERROFLOW_TANSU") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("tansu"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let home = std::env::var_os("HOME")?;
        let p = PathBuf::from(home).join(".cargo/bin/tansu");
        p.is_file().then_some(p)
    })
}

/// A broker for one test, or `None` (with the reason printed) when none can be had
/// outside CI. Under CI a missing broker fails the test.
pub fn broker(cluster_id: &str) -> Option<Broker> {
    let dir = tempfile::tempdir().unwrap();
    if let Ok(brokers) = std::env::var("FERROFLOW_KAFKA_BROKERS") {
        return Some(Broker {
            brokers,
            child: None,
            _dir: dir,
        });
    }
    let Some(tansu) = tansu_binary() else {
        let why = "no Kafka broker: install tansu (`cargo install tansu --features libsql`) \
                   or set FERROFLOW_KAFKA_BROKERS";
        if std::env::var_os("CI").is_some() {
            panic!("{why}");
        }
        eprintln!("SKIPPED: {why}");
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("tansu.log")).unwrap();
    let child = Command::new(&tansu)
        .arg("broker")
        .args(["--cluster-id", cluster_id])
        .args(["--listener-url", &url, "--advertised-listener-url", &url])
        // tansu resolves the SQLite path against its working directory.
        .args(["--storage-engine", "sqlite://tansu.db"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", tansu.display()));
    let broker = Broker {
        brokers: format!("127.0.0.1:{port}"),
        child: Some(child),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "tansu did not listen on {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(broker)
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
    use rdkafka::message::Headers;
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
