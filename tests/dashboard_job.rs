//! The `uv_dashboard` example job as a user runs it: JSON-lines input with malformed
//! lines, exact output checked against a brute-force count, resumption after `kill -9`,
//! and Redis output against the real server on loopback.
// Without the `rocksdb` feature the kill-and-restart test, which needs Stdio and
// Instant, is not built.
#![cfg_attr(not(feature = "rocksdb"), allow(unused_imports))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use common::differences;
use ferroflow::operators::uv::grain::format_time;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HOUR: i64 = 3_600_000;
const START: i64 = 1_763_712_000_000; // 2025-11-21T08:00:00Z

fn binary() -> PathBuf {
    common::example("uv_dashboard")
}

const PLATFORMS: [&str; 3] = ["app", "web", "mini"];
const PROVINCES: [&str; 4] = ["guangdong", "zhejiang", "jiangsu", "sichuan"];

/// `n` events over `hours`, with repeat users, disorder of up to 10 minutes, a skewed
/// platform, and some events without a province.
fn events(n: u64, hours: i64) -> Vec<Value> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let ts = START + (i as i64) * hours * HOUR / n as i64 - (next() % 600_000) as i64;
            let user = next() % 2_000;
            let mut e = json!({
                "ts": ts,
                "user_id": if user % 5 == 0 { json!(user) } else { json!(format!("u-{user}")) },
                "site": "main",
                "platform": PLATFORMS[if next() % 2 == 0 { 0 } else { (next() % 3) as usize }],
                "category1": "women",
                "is_new": false,
            });
            if next() % 10 != 0 {
                e["province"] = json!(PROVINCES[(next() % 4) as usize]);
            }
            e
        })
        .collect()
}

const DIMENSIONS: &str = ";platform;platform,province";

/// Final (uv, pv) per "dims/grain/bucket", by brute force.
fn brute(events: &[Value]) -> BTreeMap<String, (u64, u64)> {
    let mut m: BTreeMap<String, (BTreeSet<String>, u64)> = BTreeMap::new();
    for e in events {
        for set in DIMENSIONS.split(';') {
            let fields: Vec<&str> = set.split(',').filter(|f| !f.is_empty()).collect();
            let Some(dims) = fields
                .iter()
                .map(|f| e[*f].as_str().map(|v| (f.to_string(), v.to_string())))
                .collect::<Option<BTreeMap<String, String>>>()
            else {
                continue;
            };
            let ts = e["ts"].as_i64().unwrap();
            for (grain, size) in [("hour", HOUR), ("day", 24 * HOUR)] {
                let bucket = format_time(ts - ts.rem_euclid(size), &ferroflow::Zone::utc());
                let user = match &e["user_id"] {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                let entry = m.entry(key(&dims, grain, &bucket)).or_default();
                entry.0.insert(user);
                entry.1 += 1;
            }
        }
    }
    m.into_iter()
        .map(|(k, (users, pv))| (k, (users.len() as u64, pv)))
        .collect()
}

fn key(dims: &BTreeMap<String, String>, grain: &str, bucket: &str) -> String {
    format!("{dims:?}/{grain}/{bucket}")
}

/// Final rows of an output file; fails on a second final row for a key or on a row
/// after the final one.
fn finals(output: &Path) -> BTreeMap<String, (u64, u64)> {
    let mut m = BTreeMap::new();
    for line in std::fs::read_to_string(output).unwrap().lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let dims: BTreeMap<String, String> = serde_json::from_value(r["dims"].clone()).unwrap();
        let k = key(
            &dims,
            r["grain"].as_str().unwrap(),
            r["bucket"].as_str().unwrap(),
        );
        assert!(!m.contains_key(&k), "a row after the final one: {line}");
        if r["final"] == json!(true) {
            m.insert(k, (r["uv"].as_u64().unwrap(), r["pv"].as_u64().unwrap()));
        }
    }
    m
}

fn write_input(path: &Path, events: &[Value], malformed: &[&str]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for (i, e) in events.iter().enumerate() {
        writeln!(f, "{e}").unwrap();
        if i % 1000 == 500 {
            if let Some(bad) = malformed.get(i / 1000) {
                writeln!(f, "{bad}").unwrap();
            }
        }
    }
    f.flush().unwrap();
}

/// A temporary directory holding `in.jsonl` (the events, with malformed lines mixed in)
/// and, once the job ran, `uv.jsonl`.
struct Setup {
    dir: tempfile::TempDir,
    input: PathBuf,
    output: PathBuf,
    events: Vec<Value>,
}

fn setup(n: u64, hours: i64, malformed: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.jsonl"), dir.path().join("uv.jsonl"));
    let events = events(n, hours);
    write_input(&input, &events, malformed);
    Setup {
        dir,
        input,
        output,
        events,
    }
}

/// The job's arguments for reading `input`, this test's dimensions and grains, then
/// `extra`.
fn args(input: &Path, output: &Path, extra: &[&str]) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = vec!["--input".into(), input.into()];
    a.extend(job_args(output, extra));
    a
}

/// As [`args`], without an input (the job then reads what `extra` names).
fn job_args(output: &Path, extra: &[&str]) -> Vec<std::ffi::OsString> {
    [
        "--output",
        output.to_str().unwrap(),
        "--dimensions",
        DIMENSIONS,
        "--grain",
        "hour",
        "--grain",
        "day",
        "--lateness",
        "15m",
        "--disorder",
        "10m",
        "--parallelism",
        "2",
    ]
    .iter()
    .chain(extra)
    .map(Into::into)
    .collect()
}

/// Runs the job, asserts it succeeded (showing its stderr if not), returns its stdout.
fn run_ok(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn exact_output_matches_brute_force_and_malformed_lines_go_to_the_dead_letter_file() {
    let malformed = [
        "not json",
        r#"{"user_id": "u-1", "platform": "app"}"#,
        r#"{"ts": 1763712000123, "platform": "app"}"#,
        r#"{"ts": "yesterday", "user_id": "u-1"}"#,
    ];
    let t = setup(6_000, 30, &malformed);
    let stdout = run_ok(Command::new(binary()).args(args(&t.input, &t.output, &[])));
    assert!(stdout.contains("4 malformed lines"), "{stdout}");
    let dead = std::fs::read_to_string(t.dir.path().join("uv.dead-letter.jsonl")).unwrap();
    assert_eq!(dead.lines().count(), 4, "{dead}");
    let diff = differences(&finals(&t.output), &brute(&t.events));
    assert!(diff.is_empty(), "{diff:#?}");
}

/// The job's arguments for `t` on RocksDB, checkpointing into `checkpoints` every 100 ms.
#[cfg(feature = "rocksdb")]
fn checkpointed_args(t: &Setup, checkpoints: &Path) -> Vec<std::ffi::OsString> {
    args(
        &t.input,
        &t.output,
        &[
            "--state",
            "rocksdb",
            "--checkpoint-dir",
            checkpoints.to_str().unwrap(),
            "--checkpoint-interval",
            "100ms",
        ],
    )
}

#[cfg(feature = "rocksdb")]
#[test]
fn killed_with_sigkill_and_restarted_gives_the_same_final_output() {
    let t = setup(150_000, 48, &[]);
    let checkpoints = t.dir.path().join("state");
    let a = checkpointed_args(&t, &checkpoints);
    let mut child = Command::new(binary())
        .args(&a)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once two checkpoints have completed.
    let started = Instant::now();
    let completed = || {
        std::fs::read_dir(checkpoints.join("checkpoints"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().join("_metadata").exists())
                    .count()
            })
            .unwrap_or(0)
    };
    while completed() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint completed"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!t.output.exists(), "the killed run must not have finished");

    run_ok(Command::new(binary()).args(&a));
    let diff = differences(&finals(&t.output), &brute(&t.events));
    assert!(diff.is_empty(), "{diff:#?}");
}

/// SIGTERM with `--savepoint-on-stop` (as Kubernetes stops a pod): the job stops with a
/// savepoint, the next run resumes from it, and the final output is exact. The status
/// listener answers the probes meanwhile.
#[cfg(feature = "rocksdb")]
#[test]
fn sigterm_stops_with_a_savepoint_that_the_next_run_resumes_from() {
    let t = setup(150_000, 48, &[]);
    let checkpoints = t.dir.path().join("state");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let http = format!("127.0.0.1:{port}");
    let a = checkpointed_args(&t, &checkpoints);
    let mut first = a.clone();
    first.extend([
        "--savepoint-on-stop".into(),
        "--http".into(),
        http.clone().into(),
    ]);
    let mut child = Command::new(binary())
        .args(&first)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = http.parse().unwrap();
    let started = Instant::now();
    // Ready once it runs and a checkpoint completed.
    loop {
        assert!(started.elapsed() < Duration::from_secs(120), "never ready");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended before SIGTERM"
        );
        if std::net::TcpStream::connect(addr).is_ok()
            && common::http::request(addr, "GET", "/readyz").0 == 200
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let savepoints: Vec<_> = std::fs::read_dir(checkpoints.join("checkpoints"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("savepoint-"))
        .filter(|e| e.path().join("_metadata").is_file())
        .collect();
    assert_eq!(savepoints.len(), 1, "{stderr}");

    // The next run (plain flags) resumes from the savepoint: exact output, nothing twice.
    run_ok(Command::new(binary()).args(&a));
    let diff = differences(&finals(&t.output), &brute(&t.events));
    assert!(diff.is_empty(), "{diff:#?}");
}

#[test]
fn redis_holds_the_final_values() {
    let url =
        std::env::var("FERROFLOW_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap_or_else(|e| {
            panic!(
                "no Redis at {url} ({e}): run `bash scripts/test` (it starts one), start \
                 redis-server, or set FERROFLOW_REDIS_URL"
            )
        });
    let t = setup(3_000, 5, &[]);
    let prefix = format!("ferroflow-test-{}-{}", std::process::id(), START);
    let a = args(
        &t.input,
        &t.output,
        &["--redis", url.as_str(), "--redis-prefix", prefix.as_str()],
    );
    run_ok(Command::new(binary()).args(&a));

    let want = brute(&t.events);
    let mut seen = 0;
    for line in std::fs::read_to_string(&t.output).unwrap().lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        if r["final"] != json!(true) {
            continue;
        }
        let dims: BTreeMap<String, String> = serde_json::from_value(r["dims"].clone()).unwrap();
        let dims_key = if dims.is_empty() {
            "all".to_string()
        } else {
            // Field order of the dimension set; the two-field set is platform,province.
            let order = ["platform", "province"];
            order
                .iter()
                .filter_map(|f| dims.get(*f).map(|v| format!("{f}={v}")))
                .collect::<Vec<_>>()
                .join(",")
        };
        let (grain, bucket) = (r["grain"].as_str().unwrap(), r["bucket"].as_str().unwrap());
        let hash: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(format!("{prefix}:{grain}:{bucket}:{dims_key}"))
            .query(&mut conn)
            .unwrap();
        let (uv, pv) = want[&key(&dims, grain, bucket)];
        assert_eq!(hash.get("uv"), Some(&uv.to_string()), "{line}");
        assert_eq!(hash.get("pv"), Some(&pv.to_string()), "{line}");
        assert_eq!(hash.get("final").map(String::as_str), Some("1"), "{line}");
        seen += 1;
    }
    assert_eq!(seen, want.len());
    // Clean up this run's keys.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut conn)
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query(&mut conn).unwrap();
    }
}

#[test]
fn a_toml_config_file_sets_the_same_options_and_hll_stays_within_its_bound() {
    let t = setup(5_000, 10, &[]);
    let config = t.dir.path().join("uv.toml");
    std::fs::write(
        &config,
        format!(
            "input = {:?}\noutput = {:?}\ndimensions = {DIMENSIONS:?}\ngrains = [\"hour\"]\n\
             mode = \"hll\"\nhll_precision = 12\nlateness = \"15m\"\ndisorder = \"10m\"\nparallelism = 1\n",
            t.input.to_str().unwrap(),
            t.output.to_str().unwrap()
        ),
    )
    .unwrap();
    run_ok(Command::new(binary()).arg("--config").arg(&config));
    let want: BTreeMap<String, (u64, u64)> = brute(&t.events)
        .into_iter()
        .filter(|(k, _)| k.contains("/hour/"))
        .collect();
    let got = finals(&t.output);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    let sigma = 1.04 / 64.0; // 1.04 / sqrt(2^12)
    for (k, (uv, pv)) in &want {
        let (a_uv, a_pv) = got[k];
        assert_eq!(a_pv, *pv, "{k}");
        assert!(
            (a_uv as f64 - *uv as f64).abs() <= 4.0 * sigma * *uv as f64 + 1.0,
            "{k}: {a_uv} vs {uv}"
        );
    }

    // An unknown setting is refused with its name.
    std::fs::write(&config, "dimension = \"platform\"\n").unwrap();
    let out = Command::new(binary())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("dimension"));
}

#[cfg(feature = "kafka")]
#[test]
fn reads_the_events_from_kafka_and_dead_letters_malformed_records() {
    let b = common::kafka::broker();
    let topic = common::kafka::unique("clicks");
    common::kafka::create_topic(&b.brokers, &topic, 3);
    let t = setup(6_000, 30, &[]);
    let mut records: Vec<(Option<String>, Vec<u8>)> = t
        .events
        .iter()
        .map(|e| (Some(e["user_id"].to_string()), e.to_string().into_bytes()))
        .collect();
    for bad in ["not json", r#"{"ts": 1763712000123, "platform": "app"}"#] {
        records.insert(3_000, (None, bad.as_bytes().to_vec()));
    }
    common::kafka::produce(&b.brokers, &topic, &records);
    // The same arguments as the file runs, with Kafka in place of `--input`.
    let stdout = run_ok(Command::new(binary()).args(job_args(
        &t.output,
        &[
            "--kafka-brokers",
            &b.brokers,
            "--topic",
            &topic,
            "--kafka-bounded",
        ],
    )));
    assert!(stdout.contains("2 malformed lines"), "{stdout}");
    let diff = differences(&finals(&t.output), &brute(&t.events));
    assert!(diff.is_empty(), "{diff:#?}");
}
