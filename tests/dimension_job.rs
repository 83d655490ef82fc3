//! The `dimension_join` example job as a user runs it: JSON-lines clicks with malformed
//! lines and string item ids, a CSV dimension file, left and inner joins; the output
//! equals a brute-force join, prices keep their decimals, and the unmatched and
//! dead-letter files hold what they should.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn binary() -> PathBuf {
    common::example("dimension_join")
}

/// Items 0..80 have rows; 80..100 do not.
fn write_inputs(dir: &Path) -> (Vec<Value>, BTreeMap<i64, Value>) {
    let mut csv = String::from("item_id,brand,category1,category2,price\n");
    let mut rows = BTreeMap::new();
    for i in 0..80i64 {
        let c2 = if i % 4 == 0 {
            String::new()
        } else {
            format!("c{}", i % 4)
        };
        let price = format!("{}.{}0", i, i % 10);
        csv.push_str(&format!(
            "{i},\"brand {i}, inc\",cat{},{c2},{price}\n",
            i % 3
        ));
        rows.insert(
            i,
            json!({"brand": format!("brand {i}, inc"), "category1": format!("cat{}", i % 3),
                   "category2": if c2.is_empty() { Value::Null } else { Value::String(c2) },
                   "price": price}),
        );
    }
    std::fs::write(dir.join("items.csv"), csv).unwrap();
    let mut clicks = Vec::new();
    let mut lines = Vec::new();
    for seq in 0..3_000i64 {
        let item = (seq * 7) % 100;
        // Every third id as a string of the number.
        let id = if seq % 3 == 0 {
            json!(item.to_string())
        } else {
            json!(item)
        };
        let click = json!({"seq": seq, "item_id": id, "page": "detail"});
        lines.push(click.to_string());
        clicks.push(click);
        if seq % 500 == 0 {
            lines.push("{not json".into());
            lines.push(r#"{"seq": -1, "item_id": "not-a-number"}"#.into());
        }
    }
    std::fs::write(dir.join("clicks.jsonl"), lines.join("\n") + "\n").unwrap();
    (clicks, rows)
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn item_of(click: &Value) -> i64 {
    match &click["item_id"] {
        Value::String(s) => s.parse().unwrap(),
        v => v.as_i64().unwrap(),
    }
}

fn run(dir: &Path, join: &str) {
    let out = Command::new(binary())
        .current_dir(dir)
        .args([
            "--input",
            "clicks.jsonl",
            "--output",
            "joined.jsonl",
            "--dim-file",
            "items.csv",
        ])
        .args([
            "--join",
            join,
            "--unmatched",
            "unmatched.jsonl",
            "--parallelism",
            "2",
        ])
        .args(["--retry-attempts", "1", "--retry-delay", "20ms"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_left_join_of_a_file_dimension_equals_a_brute_force_join() {
    let dir = tempfile::tempdir().unwrap();
    let (clicks, rows) = write_inputs(dir.path());
    run(dir.path(), "left");
    let mut got = read_lines(&dir.path().join("joined.jsonl"));
    got.sort_by_key(|v| v["seq"].as_i64());
    assert_eq!(got.len(), clicks.len());
    for (line, click) in got.iter().zip(&clicks) {
        let item = item_of(click);
        let want = rows.get(&item).cloned().unwrap_or(Value::Null);
        assert_eq!(line["dim"], want, "{line}");
        assert_eq!(line["matched"], json!(rows.contains_key(&item)));
        // The event's own fields are kept as they came.
        assert_eq!(line["item_id"], click["item_id"]);
        assert_eq!(line["page"], "detail");
    }
    // "7.70" stays "7.70".
    assert!(got.iter().any(|l| l["dim"]["price"] == "77.70"));
    let dead = std::fs::read_to_string(dir.path().join("joined.jsonl.dead-letter.jsonl")).unwrap();
    assert_eq!(
        dead.lines().count(),
        12,
        "two malformed lines per 500 clicks"
    );
}

#[test]
fn an_inner_join_writes_the_clicks_it_gave_up_on_to_the_unmatched_file() {
    let dir = tempfile::tempdir().unwrap();
    let (clicks, rows) = write_inputs(dir.path());
    run(dir.path(), "inner");
    let joined = read_lines(&dir.path().join("joined.jsonl"));
    let unmatched = read_lines(&dir.path().join("unmatched.jsonl"));
    let want_unmatched = clicks
        .iter()
        .filter(|c| !rows.contains_key(&item_of(c)))
        .count();
    assert_eq!(unmatched.len(), want_unmatched);
    assert_eq!(joined.len() + unmatched.len(), clicks.len());
    assert!(joined.iter().all(|l| l["matched"] == json!(true)));
    assert!(unmatched.iter().all(|c| !rows.contains_key(&item_of(c))));
}
