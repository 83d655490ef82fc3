//! The `kafka_to_hive` example as a user runs it, its files read back by pyarrow (the
//! Apache Parquet and ORC C++ readers): every input row exactly once with its types, partitions
//! as the template says, `_SUCCESS` in each complete partition, no visible in-progress
//! file; and the same after kill -9 at many points with restarts at other parallelisms,
//! on the local disk and on S3 (a local S3 server).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn binary() -> PathBuf {
    common::example("kafka_to_hive")
}

/// 2026-12-05T15:50:00Z: the input crosses midnight in Shanghai (16:00Z).
const START: i64 = 1_796_485_800_000;

/// What a row must read back as: ts, item_id, price, site, is_new.
type Want = BTreeMap<String, (i64, i64, Option<String>, Option<String>, Option<bool>)>;

/// `rows` good clicks (user `u<i>`, 36 ms apart; every seventh without `site`,
/// `is_new` and `price`) and three malformed lines.
fn write_input(path: &Path, rows: i64) -> Want {
    let mut text = String::new();
    let mut want = BTreeMap::new();
    for i in 0..rows {
        let ts = START + i * 36;
        let price = format!("{}.{:02}", i % 1000, i % 100);
        let mut line = json!({"ts": ts, "user_id": format!("u{i}"), "item_id": i % 5000,
            "site": "main", "platform": "ios", "category1": "c1", "category2": "c2",
            "province": "Zhejiang", "activity": "none", "is_new": i % 2 == 0, "price": price});
        let sparse = i % 7 == 3;
        if sparse {
            for field in ["site", "is_new", "price"] {
                line.as_object_mut().unwrap().remove(field);
            }
        }
        text.push_str(&line.to_string());
        text.push('\n');
        if i == 10 {
            text.push_str("{not json\n");
            text.push_str(
                &json!({"ts": ts, "user_id": "bad", "item_id": 1, "price": "1.234"}).to_string(),
            );
            text.push('\n');
            text.push_str(&json!({"user_id": "no-ts", "item_id": 1}).to_string());
            text.push('\n');
        }
        want.insert(
            format!("u{i}"),
            if sparse {
                (ts, i % 5000, None, None, None)
            } else {
                (
                    ts,
                    i % 5000,
                    Some(price),
                    Some("main".into()),
                    Some(i % 2 == 0),
                )
            },
        );
    }
    std::fs::write(path, text).unwrap();
    want
}

fn start(
    format: &str,
    compression: Option<&str>,
    input: &Path,
    output: &str,
    dir: &Path,
    parallelism: usize,
    s3: Option<&str>,
) -> Child {
    let mut cmd = Command::new(binary());
    cmd.args(["--input", input.to_str().unwrap(), "--output", output])
        .args(["--format", format])
        .args(
            compression
                .map(|c| ["--compression", c])
                .into_iter()
                .flatten(),
        )
        .args([
            "--checkpoint-dir",
            dir.to_str().unwrap(),
            "--checkpoint-interval",
            "100ms",
        ])
        .args([
            "--commit-delay",
            "0s",
            "--parallelism",
            &parallelism.to_string(),
        ])
        .args(["--ddl", dir.join("clicks.sql").to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(endpoint) = s3 {
        cmd.env("AWS_ENDPOINT", endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test");
    }
    cmd.spawn().unwrap()
}

fn finish(child: Child) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the job failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read_back(root: &str, s3: Option<&str>) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/file_sink/read_table.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(root);
    if let Some(endpoint) = s3 {
        cmd.arg(endpoint);
    }
    let out = cmd.output().expect("python3 runs");
    assert!(
        out.status.success(),
        "reading the table with pyarrow failed (`bash scripts/test` installs pyarrow): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Checks the table against the input: every row once, values, types, partitions,
/// `_SUCCESS` everywhere (the input ended), no hidden file visible.
fn check(format: &str, table: &Value, want: &Want) {
    let mut seen = BTreeMap::new();
    let mut partitions = std::collections::BTreeSet::new();
    for row in table["rows"].as_array().unwrap() {
        let user = row[0].as_str().unwrap().to_string();
        let got = (
            row[1].as_i64().unwrap(),
            row[2].as_i64().unwrap(),
            row[3].as_str().map(String::from),
            row[6].as_str().map(String::from),
            row[7].as_bool(),
        );
        assert_eq!(row[4], row[5], "row {user} is in the wrong partition");
        partitions.insert(row[4].as_str().unwrap().to_string());
        assert!(
            seen.insert(user.clone(), got).is_none(),
            "row {user} appears twice"
        );
    }
    assert_eq!(seen.len(), want.len(), "rows missing");
    for (user, w) in want {
        assert_eq!(seen.get(user), Some(w), "row {user}");
    }
    let schemas = table["schemas"].as_array().unwrap();
    assert_eq!(schemas.len(), 1, "{schemas:?}");
    let schema = schemas[0].as_str().unwrap();
    // ORC has no required columns, and its timestamps come back in nanoseconds
    // without a zone (stored as UTC).
    let columns = if format == "orc" {
        [
            "ts: timestamp[ns]",
            "user_id: string",
            "item_id: int64",
            "is_new: bool",
            "price: decimal128(12, 2)",
        ]
    } else {
        [
            "ts: timestamp[ms, tz=UTC] not null",
            "user_id: string not null",
            "item_id: int64 not null",
            "is_new: bool",
            "price: decimal128(12, 2)",
        ]
    };
    for column in columns {
        assert!(schema.contains(column), "{column} in {schema}");
    }
    let success: std::collections::BTreeSet<String> = table["success"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        success, partitions,
        "_SUCCESS in exactly the partitions with data"
    );
    assert_eq!(
        table["staged"],
        serde_json::json!([]),
        "nothing left staged: every file published, every orphan removed"
    );
    for f in table["visible"].as_array().unwrap() {
        let f = f.as_str().unwrap();
        assert!(
            f.ends_with(&format!(".{format}")) && f.contains("/part-"),
            "unexpected visible file {f}"
        );
    }
}

/// One run of the job into a local directory, read back and checked.
fn one_run(format: &str, compression: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clicks.jsonl");
    let want = write_input(&input, 20_000);
    let out = dir.path().join("table");
    finish(start(
        format,
        compression,
        &input,
        out.to_str().unwrap(),
        &dir.path().join("run"),
        2,
        None,
    ));
    let table = read_back(out.to_str().unwrap(), None);
    check(format, &table, &want);
    // The codec the files declare, as the reader names it.
    let codec = match (format, compression.unwrap_or("zstd")) {
        (_, "none") => "UNCOMPRESSED",
        ("parquet", "zlib") => "GZIP",
        // pyarrow names LZ4_RAW pages `LZ4`.
        ("parquet", "lz4") => "LZ4",
        (_, c) => &c.to_uppercase(),
    };
    assert_eq!(table["codecs"], serde_json::json!([codec]), "{format}");
    // 12 minutes of event time across Shanghai midnight: 23:50 and 23:55 on 2026-12-05,
    // 00:00 on 2026-12-06, one file per worker at most in each.
    let success = table["success"].as_array().unwrap();
    assert_eq!(success.len(), 3, "{success:?}");
    assert!(table["visible"].as_array().unwrap().len() <= 2 * success.len());
    assert!(success.iter().any(|p| p == "dt=2026-12-05/hm=2355"));
    assert!(success.iter().any(|p| p == "dt=2026-12-06/hm=0000"));
    let dead = std::fs::read_to_string(dir.path().join("run/dead-letters.jsonl")).unwrap();
    assert_eq!(dead.lines().count(), 3, "{dead}");
    let ddl = std::fs::read_to_string(dir.path().join("run/clicks.sql")).unwrap();
    assert!(
        ddl.contains("price decimal(12,2)")
            && ddl.contains("PARTITIONED BY (dt string, hm string)")
            && ddl.contains(&format!("STORED AS {}", format.to_uppercase())),
        "{ddl}"
    );
}

#[test]
fn an_orc_table_pyarrow_reads_back_with_every_row_once() {
    one_run("orc", None);
}

#[test]
fn a_parquet_table_pyarrow_reads_back_with_every_row_once() {
    one_run("parquet", None);
}

#[test]
fn orc_in_every_compression_pyarrow_reads_back() {
    for compression in ["zlib", "lz4", "snappy", "none"] {
        one_run("orc", Some(compression));
    }
}

#[test]
fn parquet_in_gzip_and_lz4_pyarrow_reads_back() {
    for compression in ["zlib", "lz4"] {
        one_run("parquet", Some(compression));
    }
}

/// Runs the job, killing it with SIGKILL a little after each of several checkpoints
/// and starting it again at another parallelism, until it finishes by itself.
fn run_with_kills(
    format: &str,
    input: &Path,
    output: &str,
    dir: &Path,
    s3: Option<&str>,
    seed: u64,
) -> usize {
    let checkpoints = dir.join("checkpoints");
    let mut rng = seed;
    for round in 0.. {
        let parallelism = [1, 2, 3][round % 3];
        let mut child = start(format, None, input, output, dir, parallelism, s3);
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let number = |p: PathBuf| -> u64 {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .strip_prefix("chk-")
                .unwrap()
                .parse()
                .unwrap()
        };
        let first = common::newest_checkpoint_dir(&checkpoints).map_or(0, number);
        let target = first + 1 + (rng >> 33) % 3;
        let t = Instant::now();
        let killed = loop {
            if child.try_wait().unwrap().is_some() {
                break false;
            }
            if round < 6 && common::newest_checkpoint_dir(&checkpoints).map_or(0, number) >= target
            {
                std::thread::sleep(Duration::from_millis((rng >> 40) % 150));
                if child.try_wait().unwrap().is_some() {
                    break false;
                }
                child.kill().unwrap();
                child.wait().unwrap();
                break true;
            }
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "the job made no progress"
            );
            std::thread::sleep(Duration::from_millis(2));
        };
        if !killed {
            finish(child);
            // Every round before this one ended in a kill.
            return round;
        }
    }
    unreachable!()
}

#[test]
fn kill_9_at_many_points_and_rescale_lose_and_repeat_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clicks.jsonl");
    let want = write_input(&input, 200_000);
    let out = dir.path().join("table");
    let kills = run_with_kills(
        "orc",
        &input,
        out.to_str().unwrap(),
        &dir.path().join("run"),
        None,
        7,
    );
    assert!(kills >= 2, "the job was killed {kills} times only");
    check("orc", &read_back(out.to_str().unwrap(), None), &want);
}

#[test]
fn on_s3_after_kill_9_every_row_once() {
    let s3 = common::s3::server("lake");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clicks.jsonl");
    let want = write_input(&input, 40_000);
    let kills = run_with_kills(
        "parquet",
        &input,
        "s3://lake/clicks",
        &dir.path().join("run"),
        Some(&s3.endpoint),
        11,
    );
    assert!(kills >= 1, "the job was never killed");
    check(
        "parquet",
        &read_back("s3://lake/clicks", Some(&s3.endpoint)),
        &want,
    );
}

#[cfg(feature = "hdfs")]
#[test]
fn on_hdfs_after_kill_9_every_row_once() {
    let hdfs = common::hdfs::start();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clicks.jsonl");
    let want = write_input(&input, 40_000);
    let table = format!("{}/warehouse/clicks", hdfs.url);
    let kills = run_with_kills("orc", &input, &table, &dir.path().join("run"), None, 13);
    assert!(kills >= 1, "the job was never killed");
    check("orc", &read_back(&table, None), &want);
}
