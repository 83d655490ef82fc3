//! The bucketed file sink on the job of Flink's `file_sink` benchmark: generated events
//! `(ts, user_id, item_id, category)` over 24 hours of event time into hourly partitions
//! `dt=yyyy-MM-dd/hour=HH` on the local disk, checkpoints every 10 s, in CSV, JSON lines
//! Parquet (zstd) and ORC (zstd). Prints rows per second and per CPU-second, files per partition,
//! the longest commit after a checkpoint completed, and the peak resident memory.
//!
//! Also Nexmark q10 (every bid into minute partitions) in Parquet and ORC, to compare
//! with Flink 1.13's published 57.8 K rows/s per core, and the commit latency while
//! partitions close.
//!
//! `cargo bench --features parquet,orc --bench file_sink`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod support;

use arrow::array::{ArrayRef, Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use criterion::{criterion_group, criterion_main, Criterion};
use ferroflow::connectors::filesystem::{
    FileSink, FileSinkConfig, FileSinkCounters, Format, TimeBuckets,
};
use ferroflow::connectors::{ClickEvent, GeneratorConfig, GeneratorSource};
use ferroflow::prelude::*;
use ferroflow::CheckpointConfig;
use nexmark::event::Bid;
use std::sync::Arc;
use std::time::Duration;
use support::bids::Bids;
use support::{bench_parallelism, execute_timed, proc_status};

const ROWS: u64 = 5_000_000;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(
        ["ts", "user_id", "item_id", "category"]
            .map(|n| Field::new(n, DataType::Int64, false))
            .to_vec(),
    ))
}

/// The typed path: the four columns straight into Arrow builders.
fn encode(schema: &SchemaRef, rows: &[ClickEvent]) -> Result<RecordBatch> {
    let mut cols: Vec<Int64Builder> = (0..4)
        .map(|_| Int64Builder::with_capacity(rows.len()))
        .collect();
    for r in rows {
        cols[0].append_value(r.ts);
        cols[1].append_value(r.user_id as i64);
        cols[2].append_value(r.item_id as i64);
        cols[3].append_value(r.category as i64);
    }
    let cols: Vec<ArrayRef> = cols
        .iter_mut()
        .map(|b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    RecordBatch::try_new(Arc::clone(schema), cols)
        .map_err(|e| ferroflow::Error::Internal(e.to_string()))
}

/// A job environment with checkpoints every `interval` under `dir`, and a file sink of
/// clicks in `format` under `dir/out`, its partitions set by `partition`.
fn click_job(
    dir: &std::path::Path,
    p: usize,
    interval: Duration,
    format: &str,
    partition: impl FnOnce(&mut FileSinkConfig),
) -> (
    StreamEnvironment,
    impl Sink<ClickEvent> + Clone,
    Arc<FileSinkCounters>,
) {
    let env = StreamEnvironment::new(
        EnvConfig::default()
            .with_parallelism(p)
            .with_signal_handling(false),
    );
    env.enable_checkpointing(
        CheckpointConfig::new(dir.join("checkpoints")).with_interval(interval),
    );
    let mut config = FileSinkConfig::new(
        dir.join("out").to_str().unwrap(),
        Format::named(format).unwrap(),
    );
    config.spool_dir = Some(dir.join("spool"));
    partition(&mut config);
    let buckets = TimeBuckets::new(&config.partition, |c: &ClickEvent| c.ts).unwrap();
    let s = schema();
    let sink = FileSink::new(
        config,
        Arc::clone(&s),
        move |r: &[ClickEvent]| encode(&s, r),
        buckets,
    )
    .unwrap();
    let counters = sink.counters();
    (env, sink, counters)
}

fn run(p: usize, format: &str) -> (Duration, Duration) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (env, sink, counters) = click_job(dir.path(), p, Duration::from_secs(10), format, |c| {
        c.partition.template = "dt={yyyy-MM-dd}/hour={HH}".into();
    });
    let events = GeneratorConfig::default()
        .with_events(ROWS)
        .with_span(Duration::from_secs(24 * 3600));
    env.from_source(
        GeneratorSource::new(events).unwrap(),
        WatermarkStrategy::none(),
    )
    .sink(sink);
    let (wall, cpu) = execute_timed(&env);
    assert_eq!(counters.rows(), ROWS);
    // Workers finishing at the same moment may both commit a partition.
    assert!(
        counters.partitions_committed() >= 24,
        "every hour committed"
    );
    eprintln!(
        "file_sink_{format} p{p}: {} files ({:.2} per partition), {} partition commits, {} MB, longest commit {:.1} ms, peak RSS {} MB",
        counters.files_committed(),
        counters.files_committed() as f64 / 24.0,
        counters.partitions_committed(),
        counters.bytes_committed() >> 20,
        counters.max_commit().as_secs_f64() * 1e3,
        proc_status("VmHWM") >> 20,
    );
    (wall, cpu)
}

fn csv(p: usize) -> (Duration, Duration) {
    run(p, "csv")
}
fn jsonl(p: usize) -> (Duration, Duration) {
    run(p, "jsonl")
}
fn parquet(p: usize) -> (Duration, Duration) {
    run(p, "parquet")
}
fn orc(p: usize) -> (Duration, Duration) {
    run(p, "orc")
}

/// Nexmark q10: every bid logged as `(auction, bidder, price, dateTime, extra)` into
/// `dt=yyyy-MM-dd/hm=HHmm` partitions of one minute (UTC), `_SUCCESS` once the watermark
/// passed a partition by a minute.
const BIDS: u64 = 5_000_000;

fn q10_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("bidder", DataType::Int64, false),
        Field::new("price", DataType::Int64, false),
        Field::new(
            "date_time",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("extra", DataType::Utf8, false),
    ]))
}

fn q10_encode(schema: &SchemaRef, rows: &[Bid]) -> Result<RecordBatch> {
    let n = rows.len();
    let mut ids: Vec<Int64Builder> = (0..3).map(|_| Int64Builder::with_capacity(n)).collect();
    let mut ts = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut extra = StringBuilder::with_capacity(n, n * 8);
    for b in rows {
        ids[0].append_value(b.auction as i64);
        ids[1].append_value(b.bidder as i64);
        ids[2].append_value(b.price as i64);
        ts.append_value(b.date_time as i64);
        extra.append_value(&b.extra);
    }
    let mut cols: Vec<ArrayRef> = ids
        .iter_mut()
        .map(|b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    cols.push(Arc::new(ts.finish()));
    cols.push(Arc::new(extra.finish()));
    RecordBatch::try_new(Arc::clone(schema), cols)
        .map_err(|e| ferroflow::Error::Internal(e.to_string()))
}

fn q10(p: usize, format: &str) -> (Duration, Duration) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let env = StreamEnvironment::new(
        EnvConfig::default()
            .with_parallelism(p)
            .with_signal_handling(false),
    );
    // No checkpoints: the run is shorter than an interval, and the Nexmark source keeps
    // no positions; files are published and partitions committed when the input ends.
    let mut config = FileSinkConfig::new(
        dir.path().join("out").to_str().unwrap(),
        Format::named(format).unwrap(),
    );
    config.partition.length = Duration::from_secs(60);
    config.commit.delay = Duration::from_secs(60);
    config.spool_dir = Some(dir.path().join("spool"));
    let buckets = TimeBuckets::new(&config.partition, |b: &Bid| b.date_time as i64).unwrap();
    let s = q10_schema();
    let sink = FileSink::new(
        config,
        Arc::clone(&s),
        move |r: &[Bid]| q10_encode(&s, r),
        buckets,
    )
    .unwrap();
    let counters = sink.counters();
    let wm =
        WatermarkStrategy::bounded_out_of_orderness(Duration::ZERO, |b: &Bid| b.date_time as i64);
    env.from_source(Bids { total: BIDS }, wm).sink(sink);
    let (wall, cpu) = execute_timed(&env);
    assert_eq!(counters.rows(), BIDS);
    eprintln!(
        "nexmark_q10_{format} p{p}: {} files, {} partition commits, {} MB",
        counters.files_committed(),
        counters.partitions_committed(),
        counters.bytes_committed() >> 20,
    );
    (wall, cpu)
}

fn q10_parquet(p: usize) -> (Duration, Duration) {
    q10(p, "parquet")
}
fn q10_orc(p: usize) -> (Duration, Duration) {
    q10(p, "orc")
}

/// Commit latency while partitions close: 10-second partitions of wall-clock events at
/// 200 K/s for 30 s, a checkpoint every second, ORC. Prints how long a commit takes
/// after its checkpoint completed (publishing the files, the partition commit).
fn commit_latency() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (env, sink, counters) = click_job(dir.path(), 2, Duration::from_secs(1), "orc", |c| {
        c.partition.template = "dt={yyyy-MM-dd}/t={HHmmss}".into();
        c.partition.length = Duration::from_secs(10);
    });
    let events = GeneratorConfig::default()
        .with_events(6_000_000)
        .with_rate(200_000)
        .with_timestamps(ferroflow::connectors::TimestampMode::WallClock);
    let wm = WatermarkStrategy::bounded_out_of_orderness(
        Duration::from_millis(500),
        |c: &ClickEvent| c.ts,
    );
    env.from_source(GeneratorSource::new(events).unwrap(), wm)
        .sink(sink);
    env.execute().unwrap();
    eprintln!(
        "file_sink_commit_latency: {} commits, mean {:.2} ms, longest {:.2} ms; {} files, {} partition commits",
        counters.commits(),
        counters.mean_commit().as_secs_f64() * 1e3,
        counters.max_commit().as_secs_f64() * 1e3,
        counters.files_committed(),
        counters.partitions_committed(),
    );
}

fn file_sink(c: &mut Criterion) {
    if support::selected("file_sink_commit_latency") {
        commit_latency();
    }
    bench_parallelism(c, "file_sink_csv", ROWS, csv);
    bench_parallelism(c, "file_sink_jsonl", ROWS, jsonl);
    bench_parallelism(c, "file_sink_parquet", ROWS, parquet);
    bench_parallelism(c, "file_sink_orc", ROWS, orc);
    bench_parallelism(c, "nexmark_q10_parquet", BIDS, q10_parquet);
    bench_parallelism(c, "nexmark_q10_orc", BIDS, q10_orc);
}

criterion_group!(benches, file_sink);
criterion_main!(benches);
