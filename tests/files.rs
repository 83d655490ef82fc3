//! JSON-lines source and sink: round trip, malformed lines to a dead-letter file with a
//! count, and a clear error naming the line when no dead-letter file is configured.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use ferroflow::connectors::{JsonLinesSink, JsonLinesSource};
use ferroflow::prelude::*;
use ferroflow::Error;
use serde::{Deserialize, Serialize};
use std::io::Write;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct View {
    ts: i64,
    user_id: String,
}

fn write(path: &std::path::Path, lines: &[&str]) {
    let mut f = std::fs::File::create(path).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

#[test]
fn round_trip_through_a_directory_of_files() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let mut expected = Vec::new();
    for f in 0..4 {
        let mut lines = Vec::new();
        for i in 0..250 {
            let v = View {
                ts: f * 1000 + i,
                user_id: format!("u-{f}-{i}"),
            };
            lines.push(serde_json::to_string(&v).unwrap());
            expected.push(v);
        }
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        write(&input.join(format!("part-{f}.jsonl")), &refs);
    }
    write(
        &input.join("_SUCCESS"),
        &["not json, skipped as a marker file"],
    );
    let output = dir.path().join("out/views.jsonl");
    let env = common::env(2);
    env.from_source(
        JsonLinesSource::<View>::new(&input),
        WatermarkStrategy::monotonous(|v: &View| v.ts),
    )
    .sink(JsonLinesSink::new(&output));
    env.execute().unwrap();
    let mut got: Vec<View> = JsonLinesSink::<View>::output_files(&output, 2)
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
}

#[test]
fn malformed_lines_go_to_the_dead_letter_file_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("views.jsonl");
    write(
        &input,
        &[
            r#"{"ts": 1, "user_id": "a"}"#,
            r#"{"ts": 2, "user_id": "#,
            "",
            r#"{"ts": "later", "user_id": "b"}"#,
            r#"{"user_id": "c"}"#,
            r#"{"ts": 3, "user_id": "d"}"#,
        ],
    );
    let dead = dir.path().join("dlq/dead.jsonl");
    let source = JsonLinesSource::<View>::new(&input).with_dead_letter(&dead);
    let counter = source.dead_letters();
    let env = common::env(1);
    let out = CollectSink::new();
    env.from_source(source, WatermarkStrategy::none())
        .sink(out.clone());
    env.execute().unwrap();
    assert_eq!(
        out.sorted()
            .iter()
            .map(|v| v.user_id.as_str())
            .collect::<Vec<_>>(),
        vec!["a", "d"]
    );
    assert_eq!(counter.get(), 3);
    let dead_lines: Vec<serde_json::Value> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead_lines.len(), 3);
    let sources: Vec<String> = dead_lines
        .iter()
        .map(|d| d["source"].as_str().unwrap().to_string())
        .collect();
    for (d, line) in sources.iter().zip([2, 4, 5]) {
        assert!(d.ends_with(&format!("views.jsonl:{line}")), "{d}");
    }
    assert_eq!(dead_lines[2]["raw"], r#"{"user_id": "c"}"#);
    assert!(dead_lines[2]["error"]
        .as_str()
        .unwrap()
        .contains("missing field `ts`"));
}

#[test]
fn without_a_dead_letter_file_a_malformed_line_stops_the_job_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("views.jsonl");
    write(&input, &[r#"{"ts": 1, "user_id": "a"}"#, "garbage"]);
    let env = common::env(1);
    env.from_source(
        JsonLinesSource::<View>::new(&input),
        WatermarkStrategy::none(),
    )
    .sink(DiscardSink::new());
    let err = env.execute().unwrap_err();
    assert!(matches!(err.root(), Error::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("views.jsonl:2"), "{err}");
}

#[test]
fn a_missing_input_is_a_clear_error() {
    let env = common::env(1);
    env.from_source(
        JsonLinesSource::<View>::new("/nonexistent/input.jsonl"),
        WatermarkStrategy::none(),
    )
    .sink(DiscardSink::new());
    let err = env.execute().unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/input.jsonl"),
        "{err}"
    );
}
