//! The bucketed file sink on the job of Flink's `file_sink` benchmark: generated events
//! `(ts, user_id, item_id, category)` over 24 hours of event time into hourly partitions
//! `dt=yyyy-MM-dd/hour=HH` on the local disk, checkpoints every 10 s, in CSV, JSON lines
//! Parquet (zstd) and ORC (zstd). Prints rows per second and per CPU-second, files per partition,
//! the longest commit after a checkpoint completed, and the peak resident memory.
//!
//! `cargo bench --features parquet,orc --bench file_sink`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod support;

use arrow::array::{ArrayRef, Int64Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use criterion::{criterion_group, criterion_main, Criterion};
use ferroflow::connectors::filesystem::{FileSink, FileSinkConfig, Format, TimeBuckets};
use ferroflow::connectors::{ClickEvent, GeneratorConfig, GeneratorSource};
use ferroflow::prelude::*;
use ferroflow::CheckpointConfig;
use std::sync::Arc;
use std::time::Duration;
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

fn run(p: usize, format: &str) -> (Duration, Duration) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let env = StreamEnvironment::new(
        EnvConfig::default()
            .with_parallelism(p)
            .with_signal_handling(false),
    );
    env.enable_checkpointing(
        CheckpointConfig::new(dir.path().join("checkpoints"))
            .with_interval(Duration::from_secs(10)),
    );
    let mut config = FileSinkConfig::new(
        dir.path().join("out").to_str().unwrap(),
        Format::named(format).unwrap(),
    );
    config.partition.template = "dt={yyyy-MM-dd}/hour={HH}".into();
    config.spool_dir = Some(dir.path().join("spool"));
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

fn file_sink(c: &mut Criterion) {
    bench_parallelism(c, "file_sink_csv", ROWS, csv);
    bench_parallelism(c, "file_sink_jsonl", ROWS, jsonl);
    bench_parallelism(c, "file_sink_parquet", ROWS, parquet);
    bench_parallelism(c, "file_sink_orc", ROWS, orc);
}

criterion_group!(benches, file_sink);
criterion_main!(benches);
