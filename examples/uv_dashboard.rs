//! The UV dashboard: distinct users (UV) and page views (PV) of a click stream over many
//! dimension sets and time grains at once, the job e-commerce platforms ran on Storm with
//! Redis as state.
//!
//! ```text
//! cargo run --release --example uv_dashboard                  # generated clicks, 6 × 2 counts
//! cargo run --release --example uv_dashboard -- --input clicks.jsonl --output uv.jsonl \
//!     --dimensions "platform;platform,province;category1,category2" --grain hour --grain day \
//!     --mode exact --lateness 1m --state rocksdb --checkpoint-dir /var/lib/uv --redis redis://127.0.0.1:6379
//! cargo run --release --example uv_dashboard -- --config uv.toml   # same settings in TOML
//! cargo run --release --example uv_dashboard -- --kafka-brokers 127.0.0.1:9092 --topic clicks \
//!     --checkpoint-dir /var/lib/uv                                 # from Kafka, exactly-once output
//! ```
//!
//! Input events are JSON lines such as
//! `{"ts": 1763712000123, "user_id": "u-1842", "platform": "app", "province": "guangdong", ...}`
//! (`ts` in epoch milliseconds and `user_id` are required). A malformed line, or one
//! without `ts` or `user_id`, is counted and appended to the dead-letter file; it never
//! stops the job. Output lines are changelog rows,
//! `{"dims": {"platform": "app"}, "grain": "hour", "bucket": "2026-11-21T08:00:00Z", "uv": 1234, "pv": 5678, "final": false}`;
//! for each (dims, grain, bucket) the last line is the `"final": true` one, written when
//! the watermark passes the bucket's end plus the lateness. Late events go to the
//! late-event file.
//!
//! Output is exactly-once: rows are written to part files under `<output>.parts/`,
//! published when a checkpoint completes, and joined into `<output>` when a bounded input
//! ends. Started again with the same `--checkpoint-dir` after being killed, the job
//! resumes from its latest checkpoint. `--redis` also writes current values to Redis (key
//! layout in `uv_dashboard/redis_sink.rs`).
#![allow(clippy::print_stdout, clippy::print_stderr)]
// Without the `redis` feature the Redis output (and what only it uses) is left out.
#![cfg_attr(not(feature = "redis"), allow(dead_code))]

#[path = "common/mod.rs"]
mod common;

#[path = "uv_dashboard/event.rs"]
mod event;
#[cfg(feature = "redis")]
#[path = "uv_dashboard/redis_sink.rs"]
mod redis_sink;
#[path = "uv_dashboard/settings.rs"]
mod settings;

use anyhow::Context as _;
use clap::Parser;
use event::{DashboardEvent, Enrich};
#[cfg(feature = "kafka")]
use ferroflow::connectors::kafka::{
    DeadLetter, JsonValue, KafkaSource, KafkaSourceConfig, StartMode, Topics,
};
use ferroflow::connectors::{
    ClickEvent, GeneratorConfig, GeneratorSource, JsonLinesPartSink, JsonLinesSource,
};
use ferroflow::operators::uv::{self, UvOutput};
use ferroflow::prelude::*;
#[cfg(feature = "rocksdb")]
use ferroflow::state::{RocksDbBackend, RocksDbConfig};
use ferroflow::{CheckpointConfig, OnSignal, RestoreFrom, SinkContext};
use settings::{Args, Settings, StateKind};
use std::io::{BufRead, BufWriter, Write};
use std::path::Path;
use std::time::Duration;

fn main() -> anyhow::Result<()> {
    common::init_tracing();
    let s = Settings::load(Args::parse())?;
    let uv_config = s.uv_config()?;
    let parts = common::sibling(&s.output, ".parts");

    let env = StreamEnvironment::new(
        common::env_config("uv_dashboard", s.parallelism, s.http).with_on_signal(
            if s.savepoint_on_stop {
                OnSignal::Savepoint
            } else {
                OnSignal::Drain
            },
        ),
    );
    match s.state {
        StateKind::Memory => {}
        #[cfg(not(feature = "rocksdb"))]
        StateKind::Rocksdb => anyhow::bail!(
            "--state rocksdb: this build has no RocksDB backend; build with the `rocksdb` \
             feature (`cargo run --release --features rocksdb --example uv_dashboard -- ...`, \
             which needs a C++ compiler and libclang: `apt-get install build-essential libclang-dev`)"
        ),
        #[cfg(feature = "rocksdb")]
        StateKind::Rocksdb => {
            let dir = s.checkpoint_dir.as_ref().map_or_else(
                || std::env::temp_dir().join("uv-dashboard-rocksdb"),
                |d| d.join("rocksdb-work"),
            );
            env.set_state_backend(RocksDbBackend::new(
                RocksDbConfig::default().with_local_dir(dir),
            )?);
        }
    }
    if let Some(dir) = &s.checkpoint_dir {
        let mut checkpoints =
            CheckpointConfig::new(dir.join("checkpoints")).with_interval(s.checkpoint_interval());
        if let Some(url) = &s.checkpoint_storage {
            checkpoints = checkpoints.with_storage(url);
        }
        env.enable_checkpointing(checkpoints);
        // Resume from the newest checkpoint if there is one, else start empty.
        env.restore_from(RestoreFrom::Latest { fallback: false });
    } else {
        // A fresh run: earlier output would otherwise be joined into this one.
        common::remove_dir_if_exists(&parts)?;
    }

    let disorder = s.disorder();
    let (events, dead_letters) = match (&s.input, &s.kafka) {
        #[cfg(not(feature = "kafka"))]
        (_, Some(_)) => anyhow::bail!(
            "--kafka-brokers: this build has no Kafka connector; build with the `kafka` feature \
             (`cargo run --release --features kafka --example uv_dashboard -- ...`)"
        ),
        #[cfg(feature = "kafka")]
        (_, Some(kafka)) => {
            let config = KafkaSourceConfig {
                brokers: kafka.brokers.clone(),
                topics: Topics::List(kafka.topics.clone()),
                group_id: kafka.group.clone(),
                stop_at_end: kafka.bounded,
                start: if kafka.start_latest {
                    StartMode::Latest
                } else {
                    StartMode::Earliest
                },
                dead_letter: DeadLetter::File(s.dead_letter_path()),
                ..KafkaSourceConfig::default()
            };
            let source = KafkaSource::new(config, JsonValue::<DashboardEvent>::new());
            let counter = source.dead_letters();
            // Event time per partition; a partition quiet for 10 s does not hold it back.
            let watermarks =
                WatermarkStrategy::bounded_out_of_orderness(disorder, |e: &DashboardEvent| e.ts)
                    .with_idleness(Duration::from_secs(10));
            (env.from_source(source, watermarks), Some(counter))
        }
        (Some(path), None) => {
            let watermarks =
                WatermarkStrategy::bounded_out_of_orderness(disorder, |e: &DashboardEvent| e.ts);
            let source =
                JsonLinesSource::<DashboardEvent>::new(path).with_dead_letter(s.dead_letter_path());
            let counter = source.dead_letters();
            (env.from_source(source, watermarks), Some(counter))
        }
        (None, None) => {
            let config = GeneratorConfig::default()
                .with_events(s.events)
                .with_users(s.users)
                .with_item_skew(1.1)
                .with_span(Duration::from_secs(s.hours * 3600))
                .with_max_disorder(disorder);
            let enrich = Enrich::new(config.categories);
            let source = GeneratorSource::new(config)?;
            let watermarks =
                WatermarkStrategy::bounded_out_of_orderness(disorder, |c: &ClickEvent| c.ts);
            let stream = env
                .from_source(source, watermarks)
                .map(move |c: ClickEvent| enrich.event(&c));
            (stream, None)
        }
    };
    let (rows, counters) = uv::count(events, uv_config)?;
    let sink = JsonLinesPartSink::<UvOutput>::new(&parts);
    let output = match &s.redis {
        #[cfg(feature = "redis")]
        Some(url) => rows.global().sink(Tee::new(
            sink,
            redis_sink::sink(url, &s.redis_prefix, s.redis_ttl_secs),
        )),
        #[cfg(not(feature = "redis"))]
        Some(_) => anyhow::bail!(
            "--redis: this build has no Redis connector; build with the `redis` feature \
             (on by default)"
        ),
        None => rows.global().sink(sink),
    };
    // A stable id: a later version of the job finds the sink's pending commits.
    output.uid("uv-output");

    let job = env.start().context("starting the job")?;
    let started = std::time::Instant::now();
    let (mut last_events, mut last_rows, mut last_t) = (0u64, 0u64, 0.0f64);
    while !job.is_finished() {
        std::thread::sleep(Duration::from_secs(1));
        let m = job.metrics();
        let read = sum_out(&m, "source");
        let rows = counters.rows.load(std::sync::atomic::Ordering::Relaxed);
        let t = started.elapsed().as_secs_f64();
        let dt = (t - last_t).max(1e-3);
        eprintln!(
            "{t:6.1}s  events {read:>11} ({:>6.2} M/s)  updates {rows:>9} ({:>8.0}/s)  open buckets {:>8}  late {:>6}{}",
            read.saturating_sub(last_events) as f64 / dt / 1e6,
            rows.saturating_sub(last_rows) as f64 / dt,
            counters.open_buckets(),
            counters.late.load(std::sync::atomic::Ordering::Relaxed),
            dead_letters.as_ref().map_or(String::new(), |d| format!("  dead letters {}", d.get())),
        );
        (last_events, last_rows, last_t) = (read, rows, t);
    }
    let result = job.join()?;
    let read = sum_out(&result.metrics, "source");
    let (rows, late) = join_parts(&parts, &s.output, &s.late_output_path())?;
    println!(
        "read {read} events in {:.2}s ({:.2} M events/s); wrote {rows} rows to {} and {late} late events to {}{}",
        result.elapsed.as_secs_f64(),
        read as f64 / result.elapsed.as_secs_f64() / 1e6,
        s.output.display(),
        s.late_output_path().display(),
        dead_letters.map_or(String::new(), |d| format!("; {} malformed lines in {}", d.get(), s.dead_letter_path().display())),
    );
    Ok(())
}

fn sum_out(metrics: &[ferroflow::metrics::OperatorSnapshot], prefix: &str) -> u64 {
    metrics
        .iter()
        .filter(|m| m.operator.starts_with(prefix))
        .map(|m| m.records_out)
        .sum()
}

/// Joins the published parts, in the order they were written, into the row output and
/// the late-event output. Returns how many lines each got.
fn join_parts(parts: &Path, output: &Path, late_output: &Path) -> anyhow::Result<(u64, u64)> {
    let mut files = JsonLinesPartSink::<UvOutput>::published(parts)
        .with_context(|| format!("listing {}", parts.display()))?;
    files.sort_by_key(|p| part_order(p));
    let create = |p: &Path| -> anyhow::Result<BufWriter<std::fs::File>> {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        Ok(BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        ))
    };
    let (mut out, mut late) = (create(output)?, create(late_output)?);
    let (mut rows, mut lates) = (0, 0);
    for f in files {
        let reader = std::io::BufReader::new(std::fs::File::open(&f)?);
        for line in reader.lines() {
            let line = line?;
            match serde_json::from_str::<UvOutput>(&line)
                .with_context(|| format!("reading {}", f.display()))?
            {
                UvOutput::Row(_) => {
                    writeln!(out, "{line}")?;
                    rows += 1;
                }
                UvOutput::Late(_) => {
                    writeln!(late, "{line}")?;
                    lates += 1;
                }
            }
        }
    }
    out.flush()?;
    late.flush()?;
    Ok((rows, lates))
}

/// `part-<worker>-<attempt>-<seq>.jsonl` sorts by (attempt, seq, worker).
fn part_order(p: &Path) -> (u64, u64, u64) {
    let name = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let n: Vec<u64> = name
        .trim_start_matches("part-")
        .split('-')
        .filter_map(|x| x.parse().ok())
        .collect();
    match n.as_slice() {
        [w, a, s] => (*a, *s, *w),
        _ => (u64::MAX, u64::MAX, u64::MAX),
    }
}

/// Sends every batch to two sinks. The first one's commits are the checkpoint's; the
/// second one writes through (at-least-once).
#[derive(Clone)]
struct Tee<A, B> {
    a: A,
    b: B,
}

impl<A, B> Tee<A, B> {
    fn new(a: A, b: B) -> Self {
        Self { a, b }
    }
}

impl<T: Clone + Send + 'static, A: Sink<T>, B: Sink<T>> Sink<T> for Tee<A, B> {
    fn name(&self) -> String {
        format!("{}+{}", self.a.name(), self.b.name())
    }
    fn open(&mut self, ctx: &SinkContext) -> Result<()> {
        self.a.open(ctx)?;
        self.b.open(&SinkContext {
            restored_commits: Vec::new(),
            ..ctx.clone()
        })
    }
    fn write(&mut self, batch: Vec<T>) -> Result<()> {
        self.b.write(batch.clone())?;
        self.a.write(batch)
    }
    fn finish(&mut self) -> Result<()> {
        self.b.finish()?;
        self.a.finish()
    }
    fn prepare_commit(&mut self, checkpoint: u64) -> Result<Option<serde_json::Value>> {
        self.b.prepare_commit(checkpoint)?;
        self.a.prepare_commit(checkpoint)
    }
    fn commit(&mut self, committables: Vec<serde_json::Value>) -> Result<()> {
        self.a.commit(committables)
    }
}
