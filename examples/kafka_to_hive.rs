//! Kafka → Hive: a click stream landed as a Hive table of time-partitioned files
//! (`dt=yyyy-MM-dd/hm=HHmm`, 5-minute partitions in Asia/Shanghai by default), exactly
//! once, with `_SUCCESS` in each partition once it is complete.
//!
//! ```text
//! cargo run --release --features orc,parquet --example kafka_to_hive        # generated clicks
//! cargo run --release --features orc,parquet --example kafka_to_hive -- --input clicks.jsonl \
//!     --output s3://lake/clicks --checkpoint-dir /var/lib/k2h --ddl clicks.sql
//! cargo run --release --features orc,parquet --example kafka_to_hive -- --kafka-brokers \
//!     127.0.0.1:9092 --topic clicks --output hdfs://namenode:9000/warehouse/clicks
//! ```
//!
//! Input: JSON lines (or Kafka records) as in `uv_dashboard`, plus `item_id` and `price`
//! as a decimal string (`"12.34"`); a malformed line goes to `<checkpoint dir or
//! output>/dead-letters.jsonl` and is counted. Output URLs: a path, `file:///path`,
//! `s3://bucket/prefix` (credentials, region and endpoint from the `AWS_*` environment
//! variables, e.g. `AWS_ENDPOINT=http://127.0.0.1:5000 AWS_ALLOW_HTTP=true`) or
//! `hdfs://host:port/path` (`hdfs` feature). Formats: `orc` (default), `parquet`,
//! `jsonl`, `csv`. The Hive `CREATE EXTERNAL TABLE` statement is printed, or written with `--ddl`;
//! with `--hive-metastore thrift://host:9083` (`hive` feature) the table is created in
//! the metastore if missing and every committed partition is added to it.
//!
//! With `--checkpoint-dir` the job checkpoints every `--checkpoint-interval` and, started
//! again with the same directory after a crash (kill -9 included), resumes from its
//! latest checkpoint: the committed output is that of a run never interrupted.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "kafka_to_hive/click.rs"]
mod click;
#[path = "common/mod.rs"]
mod common;

use anyhow::Context as _;
use clap::Parser;
use click::Click;
use ferroflow::connectors::filesystem::{
    CommittedPartition, Compression, FileSink, FileSinkConfig, Format, HiveTable, RecordEncoder,
    TimeBuckets,
};
#[cfg(feature = "kafka")]
use ferroflow::connectors::kafka::{
    DeadLetter, JsonValue, KafkaSource, KafkaSourceConfig, StartMode, Topics,
};
use ferroflow::connectors::{ClickEvent, GeneratorConfig, GeneratorSource, JsonLinesSource};
use ferroflow::prelude::*;
use ferroflow::{CheckpointConfig, RestoreFrom, Zone};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(about = "Land a click stream as a Hive table of partitioned files")]
struct Args {
    /// Serve Prometheus metrics, the status page, JSON endpoints and probes here
    /// (`127.0.0.1:9249`).
    #[arg(long)]
    http: Option<std::net::SocketAddr>,
    /// JSON-lines click events; default: generated clicks.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Generated events (without --input or Kafka).
    #[arg(long, default_value_t = 2_000_000)]
    events: u64,
    /// Hours of event time the generated events span.
    #[arg(long, default_value_t = 2)]
    hours: u64,
    /// Kafka bootstrap servers (with --topic).
    #[arg(long)]
    kafka_brokers: Option<String>,
    /// Kafka topic.
    #[arg(long, default_value = "clicks")]
    topic: String,
    /// Kafka consumer group.
    #[arg(long, default_value = "kafka-to-hive")]
    kafka_group: String,
    /// Stop at the end of the topic instead of waiting for more.
    #[arg(long)]
    kafka_bounded: bool,
    /// Where the table goes: a path, file:///path, s3://bucket/prefix, hdfs://host:port/path.
    #[arg(long, default_value = "target/kafka_to_hive")]
    output: String,
    /// orc, parquet, jsonl or csv.
    #[arg(long, default_value = "orc")]
    format: String,
    /// Compression of ORC stripes or Parquet pages: none, snappy, zstd, zlib or lz4
    /// (default: zstd).
    #[arg(long)]
    compression: Option<Compression>,
    /// Length of a partition (must divide a day).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    partition_length: Duration,
    /// Time zone of the partition paths.
    #[arg(long, default_value = "Asia/Shanghai")]
    timezone: String,
    /// Files are finished at this size (bytes).
    #[arg(long, default_value_t = 128 << 20)]
    target_file_size: u64,
    /// Files are finished after this long open.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    rollover_interval: Duration,
    /// Checkpoint here and resume from the latest checkpoint found here.
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    checkpoint_interval: Duration,
    /// A partition is committed once the watermark passes its end plus this.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    commit_delay: Duration,
    /// Events may be this late (watermark delay).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    disorder: Duration,
    #[arg(long, default_value_t = 1)]
    parallelism: usize,
    /// Write the Hive DDL here instead of printing it.
    #[arg(long)]
    ddl: Option<PathBuf>,
    /// Table name (`db.table`, or `table` in `default`) in the DDL and the metastore.
    #[arg(long, default_value = "clicks")]
    table: String,
    /// Register each committed partition in this Hive metastore (`thrift://host:9083`),
    /// creating the table if missing (`hive` feature).
    #[arg(long)]
    hive_metastore: Option<String>,
}

/// A partition-commit policy.
type Policy = Box<dyn Fn(&CommittedPartition) -> Result<()> + Send + Sync>;

/// The Hive metastore commit policy, creating the table first if it is missing.
#[cfg(feature = "hive")]
fn metastore_policy(uri: &str, name: &str, table: &HiveTable) -> anyhow::Result<Policy> {
    use ferroflow::connectors::filesystem::{
        HiveMetastoreConfig, HiveMetastorePolicy, PartitionCommitPolicy,
    };
    let config = HiveMetastoreConfig {
        uri: uri.to_string(),
        ..HiveMetastoreConfig::default()
    };
    let policy = HiveMetastorePolicy::new(config, name)?;
    if policy.create_table(table)? {
        eprintln!("created table {}.{} in {uri}", table.database, table.name);
    }
    Ok(Box::new(move |p: &CommittedPartition| policy.commit(p)))
}

#[cfg(not(feature = "hive"))]
fn metastore_policy(_: &str, _: &str, _: &HiveTable) -> anyhow::Result<Policy> {
    anyhow::bail!(
        "--hive-metastore: this build has no Hive metastore client; build with the `hive` feature"
    )
}

fn main() -> anyhow::Result<()> {
    common::init_tracing();
    let a = Args::parse();
    let mut format = Format::named(&a.format)?;
    if let Some(compression) = a.compression {
        format = format.with_compression(compression)?;
    }
    let mut config = FileSinkConfig::new(a.output.clone(), format);
    config.partition.length = a.partition_length;
    config.partition.time_zone = Zone::parse(&a.timezone)?;
    config.rolling.target_file_size = a.target_file_size;
    config.rolling.rollover_interval = a.rollover_interval;
    config.commit.delay = a.commit_delay;
    let encoder = RecordEncoder::<Click>::new();
    let schema = encoder.schema();
    let buckets = TimeBuckets::new(&config.partition, |c: &Click| c.ts)?;
    let table = HiveTable::new(
        &a.table,
        &schema,
        &config.partition.template,
        &config.format,
        &a.output,
    )?;
    let mut sink = FileSink::new(config, schema, encoder, buckets)?;
    if let Some(uri) = &a.hive_metastore {
        sink = sink.with_policy(metastore_policy(uri, &a.table, &table)?);
    }
    let counters = sink.counters();

    let ddl = table.ddl();
    match &a.ddl {
        Some(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(path, &ddl).with_context(|| format!("writing {}", path.display()))?;
        }
        None => println!("{ddl}"),
    }

    let env = StreamEnvironment::new(common::env_config("kafka_to_hive", a.parallelism, a.http));
    let dead_letter_path = a.checkpoint_dir.as_ref().map_or_else(
        || PathBuf::from("target/kafka_to_hive.dead-letters.jsonl"),
        |d| d.join("dead-letters.jsonl"),
    );
    if let Some(dir) = &a.checkpoint_dir {
        env.enable_checkpointing(
            CheckpointConfig::new(dir.join("checkpoints")).with_interval(a.checkpoint_interval),
        );
        env.restore_from(RestoreFrom::Latest { fallback: false });
    }
    let watermarks = || WatermarkStrategy::bounded_out_of_orderness(a.disorder, |c: &Click| c.ts);
    let (clicks, dead_letters) = match (&a.input, &a.kafka_brokers) {
        #[cfg(not(feature = "kafka"))]
        (_, Some(_)) => anyhow::bail!(
            "--kafka-brokers: this build has no Kafka connector; build with the `kafka` feature"
        ),
        #[cfg(feature = "kafka")]
        (_, Some(brokers)) => {
            let config = KafkaSourceConfig {
                brokers: brokers.clone(),
                topics: Topics::List(vec![a.topic.clone()]),
                group_id: a.kafka_group.clone(),
                stop_at_end: a.kafka_bounded,
                start: StartMode::Earliest,
                dead_letter: DeadLetter::File(dead_letter_path.clone()),
                ..KafkaSourceConfig::default()
            };
            let source = KafkaSource::new(config, JsonValue::<Click>::new());
            let counter = source.dead_letters();
            let wm = watermarks().with_idleness(Duration::from_secs(10));
            (env.from_source(source, wm), Some(counter))
        }
        (Some(path), None) => {
            let source = JsonLinesSource::<Click>::new(path).with_dead_letter(&dead_letter_path);
            let counter = source.dead_letters();
            (env.from_source(source, watermarks()), Some(counter))
        }
        (None, None) => {
            let config = GeneratorConfig::default()
                .with_events(a.events)
                .with_span(Duration::from_secs(a.hours * 3600))
                .with_max_disorder(a.disorder);
            let wm = WatermarkStrategy::bounded_out_of_orderness(a.disorder, |c: &ClickEvent| c.ts);
            let stream = env
                .from_source(GeneratorSource::new(config)?, wm)
                .map(|c: ClickEvent| Click::generated(&c));
            (stream, None)
        }
    };
    clicks.sink(sink);

    let job = env.start().context("starting the job")?;
    let started = std::time::Instant::now();
    let (mut last_rows, mut last_t) = (0u64, 0.0f64);
    while !job.is_finished() {
        std::thread::sleep(Duration::from_secs(1));
        let rows = counters.rows();
        let t = started.elapsed().as_secs_f64();
        eprintln!(
            "{t:6.1}s  rows {rows:>11} ({:>7.0}/s)  open files {:>4}  files committed {:>5}  partitions committed {:>5}  last commit {:>6.1} ms{}",
            rows.saturating_sub(last_rows) as f64 / (t - last_t).max(1e-3),
            counters.open_files(),
            counters.files_committed(),
            counters.partitions_committed(),
            counters.last_commit().as_secs_f64() * 1e3,
            dead_letters.as_ref().map_or(String::new(), |d| format!("  dead letters {}", d.get())),
        );
        (last_rows, last_t) = (rows, t);
    }
    let result = job.join()?;
    println!(
        "wrote {} rows in {:.2}s ({:.0} rows/s): {} files ({} bytes) and {} partition commits under {}; {} commits after checkpoints, mean {:.1} ms, longest {:.1} ms{}",
        counters.rows(),
        result.elapsed.as_secs_f64(),
        counters.rows() as f64 / result.elapsed.as_secs_f64(),
        counters.files_committed(),
        counters.bytes_committed(),
        counters.partitions_committed(),
        a.output,
        counters.commits(),
        counters.mean_commit().as_secs_f64() * 1e3,
        counters.max_commit().as_secs_f64() * 1e3,
        dead_letters.map_or(String::new(), |d| format!("; {} malformed lines in {}", d.get(), dead_letter_path.display())),
    );
    Ok(())
}
