//! The sink driven by hand, as the runtime drives it, on the local disk.

use super::*;
#[cfg(feature = "parquet")]
use arrow::array::{Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use ferroflow_core::{Sink, SinkContext, MAX_WATERMARK};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    ts: i64,
    id: i64,
    name: String,
}

const HOUR: i64 = 3_600_000;

fn schema() -> arrow::datatypes::SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Int64, false),
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
    ]))
}

type TestSink = FileSink<Row, SerdeEncoder<Row>, TimeBuckets<Row>>;

fn sink(root: &Path, format: Format, tweak: impl FnOnce(&mut FileSinkConfig)) -> TestSink {
    let mut cfg = FileSinkConfig::new(root.to_str().unwrap(), format);
    cfg.partition.template = "dt={yyyy-MM-dd}/h={HH}".into();
    cfg.batch_rows = 4;
    cfg.spool_dir = Some(root.join("spool-dir-outside"));
    tweak(&mut cfg);
    let schema = schema();
    let buckets = TimeBuckets::new(&cfg.partition, |r: &Row| r.ts).unwrap();
    FileSink::new(
        cfg,
        Arc::clone(&schema),
        SerdeEncoder::new(&schema),
        buckets,
    )
    .unwrap()
}

fn ctx(
    worker: usize,
    parallelism: usize,
    attempt: u64,
    restored: Vec<serde_json::Value>,
) -> SinkContext {
    SinkContext {
        worker,
        parallelism,
        attempt,
        restored_commits: restored,
        checkpoint_interval: Some(Duration::from_secs(10)),
    }
}

fn rows(ids: std::ops::Range<i64>, hour: i64) -> Vec<Row> {
    ids.map(|id| Row {
        ts: hour * HOUR + id,
        id,
        name: format!("n{id}"),
    })
    .collect()
}

/// Visible files (not starting with `_` or `.` anywhere in their path) under `root`.
fn visible(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with('_') || name.starts_with('.') || name == "spool-dir-outside" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().to_string());
            }
        }
    }
    out.sort();
    out
}

/// The `id` of every row of the visible JSON-lines files under `root`, sorted.
fn jsonl_ids(root: &Path) -> Vec<i64> {
    let mut ids: Vec<i64> = visible(root)
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(root.join(f))
                .unwrap()
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                        .as_i64()
                        .unwrap()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    ids.sort_unstable();
    ids
}

#[cfg(feature = "parquet")]
fn parquet_ids(root: &Path) -> Vec<i64> {
    let mut ids = Vec::new();
    for f in visible(root).iter().filter(|f| f.ends_with(".parquet")) {
        let file = std::fs::File::open(root.join(f)).unwrap();
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 1024).unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let col = batch
                .column(1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            ids.extend(col.values().iter().copied());
            let names = batch
                .column(2)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            assert_eq!(names.value(0), format!("n{}", col.value(0)));
        }
    }
    ids.sort_unstable();
    ids
}

#[cfg(feature = "parquet")]
#[test]
fn files_appear_only_after_their_partition_closes_and_a_checkpoint_completes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut s = sink(root, Format::named("parquet").unwrap(), |_| {});
    s.open(&ctx(0, 1, 7, vec![])).unwrap();
    s.write(rows(0..10, 0)).unwrap();
    s.write(rows(10..13, 1)).unwrap();
    let c1 = s.prepare_commit(1).unwrap().unwrap();
    s.commit(vec![c1]).unwrap();
    assert!(
        visible(root).is_empty(),
        "open files are not published: {:?}",
        visible(root)
    );
    // Hour 0 closes; hour 1 stays open.
    s.on_watermark(HOUR).unwrap();
    assert!(
        visible(root).is_empty(),
        "a rolled file waits for its checkpoint"
    );
    let c2 = s.prepare_commit(2).unwrap().unwrap();
    assert!(visible(root).is_empty());
    s.commit(vec![c2]).unwrap();
    assert_eq!(
        visible(root),
        vec!["dt=1970-01-01/h=00/part-7-0-0.parquet".to_string()]
    );
    assert!(root.join("dt=1970-01-01/h=00/_SUCCESS").exists());
    assert_eq!(parquet_ids(root), (0..10).collect::<Vec<_>>());
    // The end of input publishes and commits the rest.
    s.on_watermark(MAX_WATERMARK).unwrap();
    s.finish().unwrap();
    assert_eq!(parquet_ids(root), (0..13).collect::<Vec<_>>());
    assert!(root.join("dt=1970-01-01/h=01/_SUCCESS").exists());
    assert_eq!(s.counters().files_committed(), 2);
    assert_eq!(s.counters().partitions_committed(), 2);
    assert!(walk(&root.join("_ferroflow/pending")).is_empty());
    // Hour 0's segments went with its publication; hour 1's file, published when the
    // input ended without a checkpoint, keeps its segments for a restore from
    // checkpoint 2 to rebuild it, and the final marker names it.
    let left = walk(&root.join("_ferroflow/segments"));
    assert!(!left.is_empty());
    assert!(
        left.iter().all(|p| p.to_string_lossy().contains("/7-0-1/")),
        "{left:?}"
    );
    let marker = std::fs::read_to_string(root.join("_ferroflow/final/7-0.json")).unwrap();
    assert_eq!(marker, r#"["dt=1970-01-01/h=01/part-7-0-1.parquet"]"#);
}

#[cfg(feature = "parquet")]
#[test]
fn many_checkpoints_make_one_file_and_a_restore_continues_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut s = sink(root, Format::named("parquet").unwrap(), |_| {});
    s.open(&ctx(0, 1, 1, vec![])).unwrap();
    let mut last = None;
    for cp in 1..=5 {
        s.write(rows((cp - 1) * 10..cp * 10, 0)).unwrap();
        let c = s.prepare_commit(cp as u64).unwrap().unwrap();
        s.commit(vec![c.clone()]).unwrap();
        last = Some(c);
    }
    // Rows after checkpoint 5 and a checkpoint 6 that never completes: lost with the
    // crash, replayed by the source.
    s.write(rows(50..60, 0)).unwrap();
    let _never = s.prepare_commit(6).unwrap();
    drop(s);
    let mut s = sink(root, Format::named("parquet").unwrap(), |_| {});
    s.open(&ctx(0, 1, 2, vec![last.unwrap()])).unwrap();
    // Checkpoint 6's segments were removed as orphans.
    let segs: Vec<_> = walk(&root.join("_ferroflow/segments"));
    assert_eq!(segs.len(), 5, "{segs:?}");
    s.write(rows(50..60, 0)).unwrap();
    s.on_watermark(MAX_WATERMARK).unwrap();
    s.finish().unwrap();
    assert_eq!(parquet_ids(root), (0..60).collect::<Vec<_>>());
    let files = visible(root);
    assert_eq!(
        files.len(),
        1,
        "one file for the partition, not one per checkpoint: {files:?}"
    );
    assert!(root.join("dt=1970-01-01/h=00/_SUCCESS").exists());
}

#[cfg(feature = "parquet")]
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn target_size_rolls_files_and_rows_stay_whole_in_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut s = sink(root, Format::Jsonl, |c| c.rolling.target_file_size = 200);
    s.open(&ctx(0, 1, 3, vec![])).unwrap();
    s.write(rows(0..40, 0)).unwrap();
    s.on_watermark(MAX_WATERMARK).unwrap();
    let c = s.prepare_commit(1).unwrap().unwrap();
    s.commit(vec![c]).unwrap();
    let files = visible(root);
    assert!(files.len() >= 4, "a 200-byte target rolls often: {files:?}");
    assert_eq!(jsonl_ids(root), (0..40).collect::<Vec<_>>());
    assert!(root.join("dt=1970-01-01/h=00/_SUCCESS").exists());
}

#[test]
fn a_partition_is_committed_only_when_every_worker_passed_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let commits = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let seen = Arc::clone(&commits);
    let make = || {
        let seen = Arc::clone(&seen);
        sink(root, Format::Csv, |_| {}).with_policy(move |p: &CommittedPartition| {
            seen.lock().push(p.path.clone());
            Ok(())
        })
    };
    let (mut a, mut b) = (make(), make());
    a.open(&ctx(0, 2, 9, vec![])).unwrap();
    b.open(&ctx(1, 2, 9, vec![])).unwrap();
    a.write(rows(0..5, 0)).unwrap();
    b.write(rows(5..8, 0)).unwrap();
    a.on_watermark(HOUR).unwrap();
    let ca = a.prepare_commit(1).unwrap().unwrap();
    a.commit(vec![ca]).unwrap();
    // Worker 1 has not passed the hour: no commit, though worker 0's file is out.
    assert!(!root.join("dt=1970-01-01/h=00/_SUCCESS").exists());
    assert!(commits.lock().is_empty());
    assert_eq!(visible(root).len(), 1);
    b.on_watermark(HOUR).unwrap();
    let cb = b.prepare_commit(1).unwrap().unwrap();
    b.commit(vec![cb]).unwrap();
    assert_eq!(visible(root).len(), 2, "one CSV file per worker");
    // Worker 1 leaves the partition to worker 0, which lists it too: it commits it at
    // its next checkpoint.
    assert!(commits.lock().is_empty());
    assert!(!root.join("dt=1970-01-01/h=00/_SUCCESS").exists());
    let ca = a.prepare_commit(2).unwrap().unwrap();
    a.commit(vec![ca]).unwrap();
    assert!(root.join("dt=1970-01-01/h=00/_SUCCESS").exists());
    assert_eq!(*commits.lock(), vec!["dt=1970-01-01/h=00".to_string()]);
    let cb = b.prepare_commit(2).unwrap().unwrap();
    b.commit(vec![cb]).unwrap();
    assert_eq!(commits.lock().len(), 1, "committed once");
}

#[test]
fn a_schema_the_format_cannot_write_is_refused_at_start() {
    let list = Arc::new(Schema::new(vec![Field::new(
        "tags",
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        true,
    )]));
    let zoned = Arc::new(Schema::new(vec![Field::new(
        "ts",
        DataType::Timestamp(
            arrow::datatypes::TimeUnit::Millisecond,
            Some("Asia/Shanghai".into()),
        ),
        false,
    )]));
    let attempt = |format: Format, schema: &arrow::datatypes::SchemaRef| {
        let cfg = FileSinkConfig::new("/tmp/never-written", format);
        let buckets = TimeBuckets::new(&cfg.partition, |r: &Row| r.ts).unwrap();
        FileSink::<Row, _, _>::new(cfg, Arc::clone(schema), SerdeEncoder::new(schema), buckets)
            .err()
            .map(|e| e.to_string())
    };
    let csv = attempt(Format::Csv, &list).unwrap();
    assert!(csv.contains("`tags`") && csv.contains("CSV"), "{csv}");
    #[cfg(feature = "orc")]
    {
        let orc = attempt(Format::named("orc").unwrap(), &list).unwrap();
        assert!(orc.contains("`tags`") && orc.contains("ORC"), "{orc}");
        let orc = attempt(Format::named("orc").unwrap(), &zoned).unwrap();
        assert!(orc.contains("Asia/Shanghai"), "{orc}");
    }
    #[cfg(not(feature = "orc"))]
    {
        let orc = attempt(Format::named("orc").unwrap(), &zoned).unwrap();
        assert!(orc.contains("`orc` feature"), "{orc}");
    }
    assert!(
        attempt(Format::Jsonl, &list).is_none(),
        "JSON lines write lists"
    );
}

#[test]
fn late_rows_commit_their_partition_again() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let commits = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let seen = Arc::clone(&commits);
    let mut s = sink(root, Format::Jsonl, |_| {}).with_policy(move |p: &CommittedPartition| {
        seen.lock().push(p.path.clone());
        Ok(())
    });
    s.open(&ctx(0, 1, 5, vec![])).unwrap();
    s.write(rows(0..5, 0)).unwrap();
    s.on_watermark(2 * HOUR).unwrap();
    let c = s.prepare_commit(1).unwrap().unwrap();
    s.commit(vec![c]).unwrap();
    assert_eq!(commits.lock().len(), 1);
    // Two late rows for hour 0: a second file, and the partition committed again.
    s.write(rows(5..7, 0)).unwrap();
    let c = s.prepare_commit(2).unwrap().unwrap();
    s.commit(vec![c]).unwrap();
    assert_eq!(
        *commits.lock(),
        vec![
            "dt=1970-01-01/h=00".to_string(),
            "dt=1970-01-01/h=00".to_string()
        ]
    );
    assert_eq!(visible(root).len(), 2);
    // Nothing new: no third commit.
    let c = s.prepare_commit(3).unwrap().unwrap();
    s.commit(vec![c]).unwrap();
    assert_eq!(commits.lock().len(), 2);
}

/// A JSON-lines sink of run 1 that wrote rows 0..10 into hour 0 and completed
/// checkpoint 1, and that checkpoint's state.
fn one_checkpoint(root: &Path) -> (TestSink, serde_json::Value) {
    let mut s = sink(root, Format::Jsonl, |_| {});
    s.open(&ctx(0, 1, 1, vec![])).unwrap();
    s.write(rows(0..10, 0)).unwrap();
    let c1 = s.prepare_commit(1).unwrap().unwrap();
    s.commit(vec![c1.clone()]).unwrap();
    (s, c1)
}

#[test]
fn restoring_an_older_checkpoint_after_later_ones_committed_works() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (mut s, old) = one_checkpoint(root);
    // Checkpoint 2 rolls and publishes the file (its segments are deleted).
    s.write(rows(10..20, 0)).unwrap();
    s.on_watermark(HOUR).unwrap();
    let c = s.prepare_commit(2).unwrap().unwrap();
    s.commit(vec![c]).unwrap();
    drop(s);
    // Back to checkpoint 1 (a savepoint, say): the job starts; the rows it had in its
    // open file are in the published file, not written twice.
    let mut s = sink(root, Format::Jsonl, |_| {});
    s.open(&ctx(0, 1, 2, vec![old])).unwrap();
    assert_eq!(s.counters().segments_missing(), 1);
    s.on_watermark(MAX_WATERMARK).unwrap();
    s.finish().unwrap();
    assert_eq!(jsonl_ids(root).len(), 20);
}

#[test]
fn a_restore_publishes_what_the_restored_checkpoint_prepared() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut s = sink(root, Format::Jsonl, |_| {});
    s.open(&ctx(0, 1, 1, vec![])).unwrap();
    s.write(rows(0..10, 0)).unwrap();
    s.write(rows(10..15, 1)).unwrap();
    s.on_watermark(HOUR).unwrap();
    // Checkpoint 1 completes, but the job dies before the sink hears of it.
    let c1 = s.prepare_commit(1).unwrap().unwrap();
    drop(s);
    assert!(visible(root).is_empty());
    let mut s = sink(root, Format::Jsonl, |_| {});
    s.open(&ctx(0, 1, 2, vec![c1.clone()])).unwrap();
    assert_eq!(
        visible(root).len(),
        1,
        "hour 0's file is published on restore"
    );
    // A second restore from the same checkpoint finds it published: no error, no copy.
    drop(s);
    let mut s = sink(root, Format::Jsonl, |_| {});
    s.open(&ctx(0, 1, 3, vec![c1])).unwrap();
    s.on_watermark(MAX_WATERMARK).unwrap();
    s.finish().unwrap();
    assert_eq!(jsonl_ids(root), (0..15).collect::<Vec<_>>());
}

#[test]
fn late_rows_between_prepare_and_commit_are_committed_too() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let commits = Arc::new(parking_lot::Mutex::new(0u32));
    let seen = Arc::clone(&commits);
    let mut s = sink(root, Format::Jsonl, |_| {}).with_policy(move |_: &CommittedPartition| {
        *seen.lock() += 1;
        Ok(())
    });
    s.open(&ctx(0, 1, 5, vec![])).unwrap();
    s.write(rows(0..5, 0)).unwrap();
    s.on_watermark(2 * HOUR).unwrap();
    let c1 = s.prepare_commit(1).unwrap().unwrap();
    // A late row arrives and its file rolls before checkpoint 1 completes.
    s.write(rows(5..6, 0)).unwrap();
    s.on_watermark(2 * HOUR + 1).unwrap();
    s.commit(vec![c1]).unwrap();
    assert_eq!(*commits.lock(), 1);
    let c2 = s.prepare_commit(2).unwrap().unwrap();
    s.commit(vec![c2]).unwrap();
    assert_eq!(
        *commits.lock(),
        2,
        "the late file's partition is committed again"
    );
    assert_eq!(visible(root).len(), 2);
}

#[test]
fn a_restore_after_the_input_ended_takes_back_what_the_end_published() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut s = sink(root, Format::Jsonl, |_| {});
    s.open(&ctx(0, 1, 1, vec![])).unwrap();
    s.write(rows(0..10, 0)).unwrap();
    let c1 = s.prepare_commit(1).unwrap().unwrap();
    s.commit(vec![c1.clone()]).unwrap();
    // The input ends: rows 10..20 are published without a checkpoint, then the process
    // dies before it exits.
    s.write(rows(10..20, 0)).unwrap();
    s.on_watermark(MAX_WATERMARK).unwrap();
    s.finish().unwrap();
    drop(s);
    // Restarted from checkpoint 1, the source reads rows 10..20 again.
    let mut s = sink(root, Format::Jsonl, |_| {});
    s.open(&ctx(0, 1, 2, vec![c1])).unwrap();
    s.write(rows(10..20, 0)).unwrap();
    s.on_watermark(MAX_WATERMARK).unwrap();
    s.finish().unwrap();
    assert_eq!(jsonl_ids(root), (0..20).collect::<Vec<_>>());
}

#[test]
fn a_restore_removes_files_a_kill_left_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (s, c1) = one_checkpoint(root);
    drop(s);
    // What the local store leaves when the process dies while it writes a pending
    // file or a segment: `<name>#<n>`, which it neither lists nor deletes.
    let half = [
        "_ferroflow/pending/1-0-7.jsonl#1",
        "_ferroflow/segments/1-0-8/00000002.arrow#1",
    ];
    // Run 5 is not the restored checkpoint's: its files are not this worker's to judge.
    let other = "_ferroflow/pending/5-0-1.jsonl#1";
    for rel in half.iter().chain([&other]) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"half").unwrap();
    }
    let mut s = sink(root, Format::Jsonl, |_| {});
    s.open(&ctx(0, 1, 2, vec![c1])).unwrap();
    for rel in half {
        assert!(!root.join(rel).exists(), "{rel} is left");
    }
    assert!(root.join(other).exists());
    s.write(rows(10..20, 0)).unwrap();
    s.on_watermark(MAX_WATERMARK).unwrap();
    s.finish().unwrap();
    assert_eq!(jsonl_ids(root), (0..20).collect::<Vec<_>>());
}
