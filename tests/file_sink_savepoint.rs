//! The file sink under stop-with-savepoint, writing Parquet with nested columns (list,
//! map, struct): stopping publishes every row read before the savepoint; resuming from
//! it at another parallelism finishes the table with every row exactly once. pyarrow
//! (the Apache Parquet C++ reader) reads the table back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use arrow::datatypes::{DataType, Field, Fields, Schema};
use ferroflow::connectors::filesystem::{
    FileSink, FileSinkConfig, Format, SerdeEncoder, TimeBuckets,
};
use ferroflow::prelude::*;
use ferroflow::testing::{ScriptedSource, Step};
use ferroflow::{CheckpointConfig, RestoreFrom};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const ROWS: i64 = 3_000;
const MINUTE: i64 = 60_000;

#[derive(Debug, Clone, serde::Serialize)]
struct Point {
    x: f64,
    y: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    ts: i64,
    id: i64,
    tags: Vec<String>,
    attrs: BTreeMap<String, i64>,
    point: Point,
}

fn row(id: i64) -> Row {
    Row {
        // Two rows a second from 2026-12-05T00:00Z: 25 minutes of event time.
        ts: 1_796_428_800_000 + id * 500,
        id,
        tags: (0..id % 3).map(|t| format!("t{t}")).collect(),
        attrs: BTreeMap::from([("n".to_string(), id * 2)]),
        point: Point {
            x: id as f64,
            y: -(id as f64),
        },
    }
}

fn schema() -> arrow::datatypes::SchemaRef {
    let entries = Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::Int64, false),
        ])),
        false,
    );
    Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Int64, false),
        Field::new("id", DataType::Int64, false),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, false))),
            false,
        ),
        Field::new("attrs", DataType::Map(Arc::new(entries), false), false),
        Field::new(
            "point",
            DataType::Struct(Fields::from(vec![
                Field::new("x", DataType::Float64, false),
                Field::new("y", DataType::Float64, false),
            ])),
            false,
        ),
    ]))
}

fn job(
    root: &Path,
    checkpoints: &Path,
    parallelism: usize,
    restore: RestoreFrom,
) -> StreamEnvironment {
    let env = common::env(parallelism);
    env.enable_checkpointing(
        CheckpointConfig::new(checkpoints).with_interval(Duration::from_millis(100)),
    );
    env.restore_from(restore);
    let mut config = FileSinkConfig::new(root.to_str().unwrap(), Format::named("parquet").unwrap());
    config.partition.template = "dt={yyyy-MM-dd}/hm={HHmm}".into();
    config.partition.length = Duration::from_secs(300);
    config.commit.delay = Duration::ZERO;
    let schema = schema();
    let buckets = TimeBuckets::new(&config.partition, |r: &Row| r.ts).unwrap();
    let sink = FileSink::new(
        config,
        Arc::clone(&schema),
        SerdeEncoder::new(&schema),
        buckets,
    )
    .unwrap();
    // Rows trickle in, so that the savepoint lands midway.
    let steps = (0..ROWS)
        .collect::<Vec<_>>()
        .chunks(50)
        .flat_map(|ids| {
            [
                Step::Emit(ids.iter().map(|&i| row(i)).collect()),
                Step::Idle(Duration::from_millis(20)),
            ]
        })
        .collect();
    env.from_source(
        ScriptedSource::new(vec![steps]),
        WatermarkStrategy::bounded_out_of_orderness(Duration::from_secs(1), |r: &Row| r.ts),
    )
    .sink(sink);
    env
}

/// The visible rows as pyarrow reads them: `[id, tags, attrs, [x, y]]`, and the schema.
fn read_back(root: &Path) -> (Vec<serde_json::Value>, String, Vec<String>) {
    let script = r#"
import json, os, sys
import pyarrow.parquet as pq
root = sys.argv[1]
rows, schemas, success = [], set(), []
for d, dirs, files in os.walk(root):
    dirs[:] = [x for x in dirs if not x.startswith(("_", "."))]
    for f in files:
        if f == "_SUCCESS":
            success.append(os.path.relpath(d, root))
        if f.startswith(("_", ".")):
            continue
        t = pq.read_table(os.path.join(d, f))
        schemas.add(str(t.schema.remove_metadata()))
        for r in t.to_pylist():
            rows.append([r["id"], r["tags"], sorted(r["attrs"]), [r["point"]["x"], r["point"]["y"]]])
print(json.dumps({"rows": rows, "schemas": sorted(schemas), "success": sorted(success)}))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, root.to_str().unwrap()])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "reading the table with pyarrow failed (`bash scripts/test` installs pyarrow): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let schemas = v["schemas"].as_array().unwrap();
    assert_eq!(schemas.len(), 1, "{schemas:?}");
    let success = v["success"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    (
        v["rows"].as_array().unwrap().clone(),
        schemas[0].as_str().unwrap().to_string(),
        success,
    )
}

fn ids(rows: &[serde_json::Value]) -> Vec<i64> {
    let mut ids: Vec<i64> = rows.iter().map(|r| r[0].as_i64().unwrap()).collect();
    ids.sort_unstable();
    ids
}

#[test]
fn stop_with_savepoint_publishes_what_was_read_and_resuming_finishes_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (root, checkpoints) = (dir.path().join("table"), dir.path().join("checkpoints"));
    let handle = job(&root, &checkpoints, 2, RestoreFrom::Nothing)
        .start()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let (savepoint, result) = handle.stop_with_savepoint().unwrap();
    let read = common::records_read(&result);
    assert!(
        read > 0 && read < ROWS as u64,
        "stopped midway, read {read}"
    );
    let (rows, _, success) = read_back(&root);
    assert_eq!(
        ids(&rows),
        (0..read as i64).collect::<Vec<_>>(),
        "every row read before the savepoint is published, once"
    );
    // No final watermark: the partition the source stopped in is not committed.
    let stopped_in = (read as i64 - 1) * 500 / (5 * MINUTE);
    assert!(success.len() as i64 <= stopped_in, "{success:?}");
    let committed_at_stop = success;

    job(&root, &checkpoints, 3, RestoreFrom::Path(savepoint))
        .execute()
        .unwrap();
    let (rows, schema, success) = read_back(&root);
    assert_eq!(
        ids(&rows),
        (0..ROWS).collect::<Vec<_>>(),
        "every row exactly once"
    );
    for r in &rows {
        let id = r[0].as_i64().unwrap();
        let tags: Vec<String> = (0..id % 3).map(|t| format!("t{t}")).collect();
        assert_eq!(r[1], serde_json::json!(tags), "row {id}");
        assert_eq!(r[2], serde_json::json!([["n", id * 2]]), "row {id}");
        assert_eq!(
            r[3],
            serde_json::json!([id as f64, -(id as f64)]),
            "row {id}"
        );
    }
    for column in [
        "tags: list<item: string not null> not null",
        "attrs: map<string, int64",
        "point: struct<x: double not null, y: double not null> not null",
    ] {
        assert!(schema.contains(column), "{column} in {schema}");
    }
    // 25 minutes from 00:00 UTC: five partitions, each committed once the input ended.
    assert!(committed_at_stop.iter().all(|p| success.contains(p)));
    assert_eq!(
        success,
        ["0000", "0005", "0010", "0015", "0020"]
            .iter()
            .map(|hm| format!("dt=2026-12-05/hm={hm}"))
            .collect::<Vec<_>>()
    );
}
