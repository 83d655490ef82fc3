//! The dashboard's settings: command-line flags over an optional TOML file over defaults.
//!
//! A TOML file takes the same names as the flags, with `_` for `-` (`grains` is a list):
//!
//! ```toml
//! input = "clicks.jsonl"
//! output = "uv.jsonl"
//! dimensions = ";platform;platform,province;category1,category2"
//! grains = ["hour", "day", "day-cumulative:1m"]
//! mode = "exact"            # or "hll" (with hll_precision = 14)
//! lateness = "1m"
//! update_interval = "1s"
//! parallelism = 2
//! http = "127.0.0.1:9249"   # metrics, status page, probes
//! savepoint_on_stop = true  # SIGTERM stops with a savepoint
//! state = "rocksdb"         # or "memory"
//! checkpoint_dir = "/var/lib/uv-dashboard"
//! checkpoint_interval = "10s"
//! checkpoint_storage = "s3://bucket/uv-dashboard"  # optional, with checkpoint_dir
//! redis = "redis://127.0.0.1:6379"
//! timezone = "Asia/Shanghai"  # or an offset such as "+08:00"
//! # instead of `input`: read a Kafka topic
//! kafka_brokers = "127.0.0.1:9092"
//! topic = "clicks"
//! kafka_group = "uv-dashboard"
//! ```

use anyhow::{bail, Context as _};
use clap::{Parser, ValueEnum};
use ferroflow::operators::uv::{Grain, HotKeys, Mode, UvConfig};
use ferroflow::Zone;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Where keyed state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateKind {
    /// On the heap.
    Memory,
    /// In RocksDB, behind write-behind caches.
    Rocksdb,
}

/// Exact or approximate distinct counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeArg {
    /// Every user id kept (Roaring bitmaps).
    Exact,
    /// HyperLogLog++ sketches.
    Hll,
}

#[derive(Parser, Debug, Default)]
#[command(about = "UV/PV dashboard over many dimensions and time grains, on ferroflow")]
pub struct Args {
    /// TOML file with any of the settings below (flags win over it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// JSON-lines click events (file or directory); default: the built-in generator.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Output file of changelog rows (JSON lines). Default: target/uv_dashboard.jsonl.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Malformed input lines go here. Default: <output>.dead-letter.jsonl.
    #[arg(long)]
    pub dead_letter: Option<PathBuf>,
    /// Late events go here. Default: <output>.late.jsonl.
    #[arg(long)]
    pub late_output: Option<PathBuf>,
    /// Dimension sets, `;`-separated, fields `,`-separated; an empty set is the whole
    /// site. Default: `;platform;province;platform,province;category1;category1,category2`.
    #[arg(long)]
    pub dimensions: Option<String>,
    /// Time grain: hour, day, day-cumulative:<step>, or a length like 15m (repeatable).
    /// Default: hour and day.
    #[arg(long = "grain")]
    pub grains: Vec<String>,
    /// Distinct counting mode. Default: exact.
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// HyperLogLog precision (4..=18). Default: 14.
    #[arg(long)]
    pub hll_precision: Option<u8>,
    /// With --mode hll: final rows carry the bucket's sketch (hex) for later roll-ups.
    #[arg(long)]
    pub emit_sketches: bool,
    /// How long after a bucket's end events still count (30s, 5m, 1h). Default: 1m.
    #[arg(long)]
    pub lateness: Option<String>,
    /// Out-of-orderness the watermark allows. Default: 5s.
    #[arg(long)]
    pub disorder: Option<String>,
    /// Processing time between changelog updates of a changed bucket; 0 for final rows
    /// only. Default: 1s.
    #[arg(long)]
    pub update_interval: Option<String>,
    /// Time zone buckets align to: an IANA name (Asia/Shanghai, Europe/Berlin) or an
    /// offset (+08:00). Default: UTC.
    #[arg(long)]
    pub timezone: Option<String>,
    /// Workers per operator. Default: 2.
    #[arg(long)]
    pub parallelism: Option<usize>,
    /// Serve Prometheus metrics, the status page, JSON endpoints and probes here
    /// (`127.0.0.1:9249`).
    #[arg(long)]
    pub http: Option<std::net::SocketAddr>,
    /// On SIGTERM/SIGINT, stop with a savepoint (needs --checkpoint-dir); the next run
    /// resumes from it.
    #[arg(long)]
    pub savepoint_on_stop: bool,
    /// State backend. Default: memory.
    #[arg(long, value_enum)]
    pub state: Option<StateKind>,
    /// Checkpoints (and resuming after a restart) in this directory.
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Time between checkpoints. Default: 10s.
    #[arg(long)]
    pub checkpoint_interval: Option<String>,
    /// Keep checkpoints in this object store too (`s3://bucket/prefix`, `file:///...`,
    /// `hdfs://...`); --checkpoint-dir is then the local working copy. S3 credentials
    /// come from the usual AWS_* variables.
    #[arg(long)]
    pub checkpoint_storage: Option<String>,
    /// Also write current values to this Redis server (`redis://127.0.0.1:6379`).
    #[arg(long)]
    pub redis: Option<String>,
    /// Key prefix in Redis. Default: uv.
    #[arg(long)]
    pub redis_prefix: Option<String>,
    /// Pre-aggregate per batch before the exchange (hot keys). Default: true.
    #[arg(long)]
    pub pre_aggregate: Option<bool>,
    /// Read events from Kafka at these brokers (`host:port,...`) instead of a file.
    #[arg(long)]
    pub kafka_brokers: Option<String>,
    /// The Kafka topic (with --kafka-brokers; several separated by `,`).
    #[arg(long)]
    pub topic: Option<String>,
    /// Consumer group that offsets are committed to after each checkpoint. Default:
    /// uv-dashboard.
    #[arg(long)]
    pub kafka_group: Option<String>,
    /// Where to start without a checkpoint: earliest or latest. Default: earliest.
    #[arg(long)]
    pub kafka_start: Option<String>,
    /// Stop at the end offsets the topic has at start (a backfill), instead of running
    /// until stopped.
    #[arg(long)]
    pub kafka_bounded: bool,
    /// Generated events (without --input). Default: 5,000,000.
    #[arg(long)]
    pub events: Option<u64>,
    /// Distinct users in generated events. Default: 1,000,000.
    #[arg(long)]
    pub users: Option<u64>,
    /// Event time the generated events cover, hours. Default: 24.
    #[arg(long)]
    pub hours: Option<u64>,
}

/// The TOML file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    input: Option<PathBuf>,
    output: Option<PathBuf>,
    dead_letter: Option<PathBuf>,
    late_output: Option<PathBuf>,
    dimensions: Option<String>,
    grains: Option<Vec<String>>,
    mode: Option<ModeArg>,
    hll_precision: Option<u8>,
    emit_sketches: Option<bool>,
    lateness: Option<String>,
    disorder: Option<String>,
    update_interval: Option<String>,
    timezone: Option<String>,
    parallelism: Option<usize>,
    http: Option<std::net::SocketAddr>,
    savepoint_on_stop: Option<bool>,
    state: Option<StateKind>,
    checkpoint_dir: Option<PathBuf>,
    checkpoint_interval: Option<String>,
    checkpoint_storage: Option<String>,
    redis: Option<String>,
    redis_prefix: Option<String>,
    pre_aggregate: Option<bool>,
    kafka_brokers: Option<String>,
    topic: Option<String>,
    kafka_group: Option<String>,
    kafka_start: Option<String>,
    kafka_bounded: Option<bool>,
    events: Option<u64>,
    users: Option<u64>,
    hours: Option<u64>,
}

/// Reading events from Kafka.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "kafka"), allow(dead_code))]
pub struct KafkaInput {
    pub brokers: String,
    pub topics: Vec<String>,
    pub group: String,
    pub start_latest: bool,
    pub bounded: bool,
}

/// A duration written as `500ms`, `30s`, `5m`, `1h` or `1d`.
fn duration(text: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(text.trim())
        .with_context(|| format!("`{text}` is not a duration like 500ms, 30s, 5m or 1h"))
}

/// Every setting, resolved.
#[derive(Debug)]
pub struct Settings {
    pub input: Option<PathBuf>,
    pub output: PathBuf,
    dead_letter: Option<PathBuf>,
    late_output: Option<PathBuf>,
    dimensions: String,
    grains: Vec<String>,
    mode: ModeArg,
    hll_precision: u8,
    emit_sketches: bool,
    lateness: String,
    disorder: String,
    update_interval: String,
    timezone: String,
    pub parallelism: usize,
    pub http: Option<std::net::SocketAddr>,
    pub savepoint_on_stop: bool,
    pub state: StateKind,
    pub checkpoint_dir: Option<PathBuf>,
    checkpoint_interval: String,
    pub checkpoint_storage: Option<String>,
    pub redis: Option<String>,
    pub redis_prefix: String,
    /// Redis keys expire this long after their last write.
    pub redis_ttl_secs: u64,
    pre_aggregate: bool,
    pub kafka: Option<KafkaInput>,
    pub events: u64,
    pub users: u64,
    pub hours: u64,
}

fn kafka_input(
    brokers: Option<String>,
    topic: Option<String>,
    group: Option<String>,
    start: Option<String>,
    bounded: bool,
) -> anyhow::Result<Option<KafkaInput>> {
    let Some(brokers) = brokers else {
        if topic.is_some() {
            bail!("--topic needs --kafka-brokers");
        }
        return Ok(None);
    };
    let topics: Vec<String> = topic
        .context("--kafka-brokers needs --topic")?
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if topics.is_empty() {
        bail!("--topic is empty");
    }
    let start_latest = match start.as_deref().unwrap_or("earliest") {
        "earliest" => false,
        "latest" => true,
        other => bail!("--kafka-start: `{other}` is neither earliest nor latest"),
    };
    Ok(Some(KafkaInput {
        brokers,
        topics,
        group: group.unwrap_or_else(|| "uv-dashboard".into()),
        start_latest,
        bounded,
    }))
}

impl Settings {
    /// Flags, over the TOML file named by `--config`, over defaults.
    pub fn load(args: Args) -> anyhow::Result<Self> {
        let file: FileSettings = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => FileSettings::default(),
        };
        let grains = if args.grains.is_empty() {
            file.grains
                .unwrap_or_else(|| vec!["hour".into(), "day".into()])
        } else {
            args.grains
        };
        let s = Self {
            input: args.input.or(file.input),
            output: args
                .output
                .or(file.output)
                .unwrap_or_else(|| PathBuf::from("target/uv_dashboard.jsonl")),
            dead_letter: args.dead_letter.or(file.dead_letter),
            late_output: args.late_output.or(file.late_output),
            dimensions: args.dimensions.or(file.dimensions).unwrap_or_else(|| {
                ";platform;province;platform,province;category1;category1,category2".into()
            }),
            grains,
            mode: args.mode.or(file.mode).unwrap_or(ModeArg::Exact),
            hll_precision: args.hll_precision.or(file.hll_precision).unwrap_or(14),
            emit_sketches: args.emit_sketches || file.emit_sketches.unwrap_or(false),
            lateness: args
                .lateness
                .or(file.lateness)
                .unwrap_or_else(|| "1m".into()),
            disorder: args
                .disorder
                .or(file.disorder)
                .unwrap_or_else(|| "5s".into()),
            update_interval: args
                .update_interval
                .or(file.update_interval)
                .unwrap_or_else(|| "1s".into()),
            timezone: args
                .timezone
                .or(file.timezone)
                .unwrap_or_else(|| "UTC".into()),
            parallelism: args.parallelism.or(file.parallelism).unwrap_or(2),
            http: args.http.or(file.http),
            savepoint_on_stop: args.savepoint_on_stop || file.savepoint_on_stop.unwrap_or(false),
            state: args.state.or(file.state).unwrap_or(StateKind::Memory),
            checkpoint_dir: args.checkpoint_dir.or(file.checkpoint_dir),
            checkpoint_storage: args.checkpoint_storage.or(file.checkpoint_storage),
            checkpoint_interval: args
                .checkpoint_interval
                .or(file.checkpoint_interval)
                .unwrap_or_else(|| "10s".into()),
            redis: args.redis.or(file.redis),
            redis_prefix: args
                .redis_prefix
                .or(file.redis_prefix)
                .unwrap_or_else(|| "uv".into()),
            redis_ttl_secs: 3 * 24 * 3600,
            pre_aggregate: args.pre_aggregate.or(file.pre_aggregate).unwrap_or(true),
            kafka: kafka_input(
                args.kafka_brokers.or(file.kafka_brokers),
                args.topic.or(file.topic),
                args.kafka_group.or(file.kafka_group),
                args.kafka_start.or(file.kafka_start),
                args.kafka_bounded || file.kafka_bounded.unwrap_or(false),
            )?,
            events: args.events.or(file.events).unwrap_or(5_000_000),
            users: args.users.or(file.users).unwrap_or(1_000_000),
            hours: args.hours.or(file.hours).unwrap_or(24),
        };
        if s.parallelism == 0 {
            bail!("--parallelism must be at least 1");
        }
        if s.input.is_some() && s.kafka.is_some() {
            bail!("--input and --kafka-brokers are alternatives; give one");
        }
        if s.checkpoint_dir.is_none() && (s.checkpoint_storage.is_some() || s.savepoint_on_stop) {
            bail!("--checkpoint-storage and --savepoint-on-stop need --checkpoint-dir");
        }
        for field in s.uv_config()?.dimensions.iter().flatten() {
            if !crate::event::FIELDS.contains(&field.as_str()) {
                bail!(
                    "--dimensions: unknown field `{field}`; events have {}",
                    crate::event::FIELDS.join(", ")
                );
            }
        }
        duration(&s.disorder).context("--disorder")?;
        if duration(&s.checkpoint_interval)
            .context("--checkpoint-interval")?
            .is_zero()
        {
            bail!("--checkpoint-interval must be positive");
        }
        Ok(s)
    }

    /// The UV operator's configuration.
    pub fn uv_config(&self) -> anyhow::Result<UvConfig> {
        let grains = self
            .grains
            .iter()
            .map(|g| Grain::parse(g))
            .collect::<ferroflow::Result<Vec<_>>>()?;
        let config = UvConfig {
            dimensions: UvConfig::parse_dimensions(&self.dimensions),
            grains,
            mode: match self.mode {
                ModeArg::Exact => Mode::Exact,
                ModeArg::Hll => Mode::Hll {
                    precision: self.hll_precision,
                },
            },
            lateness: duration(&self.lateness).context("--lateness")?,
            update_interval: duration(&self.update_interval).context("--update-interval")?,
            timezone: Zone::parse(&self.timezone).context("--timezone")?,
            hot_keys: if self.pre_aggregate {
                HotKeys::PreAggregate
            } else {
                HotKeys::Off
            },
            emit_sketches: self.emit_sketches,
            ..UvConfig::default()
        };
        config.validate()?;
        Ok(config)
    }

    /// The out-of-orderness bound (checked by `load`).
    pub fn disorder(&self) -> Duration {
        duration(&self.disorder).unwrap_or(Duration::from_secs(5))
    }

    /// The checkpoint interval (checked by `load`).
    pub fn checkpoint_interval(&self) -> Duration {
        duration(&self.checkpoint_interval).unwrap_or(Duration::from_secs(10))
    }

    pub fn dead_letter_path(&self) -> PathBuf {
        self.dead_letter
            .clone()
            .unwrap_or_else(|| sibling(&self.output, "dead-letter.jsonl"))
    }

    pub fn late_output_path(&self) -> PathBuf {
        self.late_output
            .clone()
            .unwrap_or_else(|| sibling(&self.output, "late.jsonl"))
    }
}

/// `dir/name.jsonl` -> `dir/name.<suffix>`.
fn sibling(output: &std::path::Path, suffix: &str) -> PathBuf {
    let stem = output.file_stem().unwrap_or_default().to_string_lossy();
    output.with_file_name(format!("{stem}.{suffix}"))
}
