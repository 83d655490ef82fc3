//! The job's HTTP listener against a running job: Prometheus metrics with their labels
//! moving, the JSON endpoints, the probes, a savepoint taken over HTTP, and the status
//! page rendered by a real browser (headless Chromium). The Prometheus recorder is
//! process-wide and labels every series with the first job's name: each test needs a
//! process of its own, as `cargo nextest` (the README's test command) gives it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::http::{get, request, series_sum};
use ferroflow::prelude::*;
use ferroflow::testing::{CountPerKey, ScriptedSource, Step};
use ferroflow::{CheckpointConfig, JobHandle};
use std::time::{Duration, Instant};

/// Numbers for about `secs` seconds: steps of 50 with a pause between.
fn numbers(secs: u64) -> ScriptedSource<u64> {
    let steps = (0..secs * 200)
        .flat_map(|i| {
            [
                Step::Emit((i * 50..(i + 1) * 50).collect()),
                Step::Idle(Duration::from_millis(5)),
            ]
        })
        .collect();
    ScriptedSource::new(vec![steps])
}

/// A keyed count with checkpoints and a listener on a free loopback port.
fn start(name: &str, dir: &std::path::Path, secs: u64) -> JobHandle {
    let env = StreamEnvironment::new(
        EnvConfig::default()
            .with_name(name)
            .with_parallelism(2)
            .with_signal_handling(false)
            .with_http("127.0.0.1:0".parse().unwrap()),
    );
    env.enable_checkpointing(
        CheckpointConfig::new(dir.join("checkpoints")).with_interval(Duration::from_millis(200)),
    );
    env.from_source(
        numbers(secs),
        WatermarkStrategy::bounded_out_of_orderness(Duration::ZERO, |x: &u64| *x as i64),
    )
    .key_by(|x| x % 100)
    .process(CountPerKey::default())
    .sink(DiscardSink::new());
    env.start().unwrap()
}

/// Waits until `check` holds, up to 20 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn metrics_endpoints_and_probes_of_a_running_job() {
    let dir = tempfile::tempdir().unwrap();
    let job = start("ops-test", dir.path(), 60);
    let addr = job.http_addr().unwrap();
    assert_eq!(get(addr, "/livez").trim(), "ok");
    eventually("a completed checkpoint", || {
        job.checkpoints().completed >= 2
    });

    // Prometheus: names, the job/operator/worker labels, counters that move.
    let first = get(addr, "/metrics");
    let records = |text: &str| {
        series_sum(
            text,
            "ferroflow_records_in_total",
            &[
                "job_name=\"ops-test\"",
                "operator=\"process#",
                "worker=\"1\"",
            ],
        )
    };
    let before = records(&first).unwrap_or_else(|| panic!("no records_in series:\n{first}"));
    for name in [
        "ferroflow_records_out_total",
        "ferroflow_busy_nanoseconds_total",
        "ferroflow_idle_nanoseconds_total",
        "ferroflow_backpressure_nanoseconds_total",
        "ferroflow_watermark_milliseconds",
        "ferroflow_watermark_lag_milliseconds",
        "ferroflow_checkpoints_completed_total",
        "ferroflow_checkpoint_last_duration_seconds",
        "ferroflow_checkpoint_last_size_bytes",
        "ferroflow_checkpoint_alignment_seconds",
        "ferroflow_uptime_seconds",
    ] {
        assert!(
            series_sum(&first, name, &["job_name=\"ops-test\""]).is_some(),
            "{name} missing from /metrics:\n{first}"
        );
    }
    // Watermarks of sources and stage inputs only: a sink exports none.
    assert!(series_sum(
        &first,
        "ferroflow_watermark_milliseconds",
        &["operator=\"source:"]
    )
    .is_some());
    assert!(series_sum(
        &first,
        "ferroflow_watermark_milliseconds",
        &["operator=\"sink:"]
    )
    .is_none());
    // The keyed count's state: 100 keys over two workers.
    let entries = series_sum(&first, "ferroflow_state_entries", &["operator=\"process#"]);
    assert_eq!(entries, Some(100.0), "{first}");
    assert!(series_sum(&first, "ferroflow_state_bytes", &["operator=\"process#"]).unwrap() > 0.0);
    std::thread::sleep(Duration::from_millis(1500));
    let second = get(addr, "/metrics");
    let after = records(&second).unwrap();
    assert!(
        after > before,
        "records_in did not move: {before} then {after}"
    );
    let completed = |t: &str| series_sum(t, "ferroflow_checkpoints_completed_total", &[]).unwrap();
    assert!(completed(&second) > completed(&first));

    // /jobs: the graph with rates and watermarks.
    let jobs: serde_json::Value = serde_json::from_str(&get(addr, "/jobs")).unwrap();
    assert_eq!(jobs["name"], "ops-test");
    assert_eq!(jobs["state"], "running");
    assert_eq!(jobs["restarts"], 0);
    let stages = jobs["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2, "{jobs}");
    assert_eq!(jobs["edges"][0]["from"], 0);
    assert_eq!(jobs["edges"][0]["to"], 1);
    let ops: Vec<&str> = stages
        .iter()
        .flat_map(|s| s["operators"].as_array().unwrap())
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert!(ops[0].starts_with("source:"), "{ops:?}");
    assert!(ops.iter().any(|o| o.starts_with("process#")), "{ops:?}");
    assert!(ops.last().unwrap().starts_with("sink:"), "{ops:?}");
    let source = &stages[0]["operators"][0];
    assert!(
        source["records_out_per_s"].as_f64().unwrap() > 0.0,
        "{source}"
    );
    assert!(source["watermark"].as_i64().unwrap() > 0, "{source}");
    assert_eq!(stages[1]["parallelism"], 2);

    // /checkpoints and a savepoint over HTTP.
    let checkpoints: serde_json::Value = serde_json::from_str(&get(addr, "/checkpoints")).unwrap();
    assert!(checkpoints["completed"].as_u64().unwrap() >= 2);
    let newest = &checkpoints["history"][0];
    assert!(newest["id"].as_u64().unwrap() >= 2, "{newest}");
    let (status, body) = request(addr, "POST", "/savepoints");
    assert_eq!(status, 200, "{body}");
    let saved: serde_json::Value = serde_json::from_str(&body).unwrap();
    let path = std::path::PathBuf::from(saved["path"].as_str().unwrap());
    assert!(path.join("_metadata").is_file(), "{}", path.display());
    let (status, _) = request(addr, "GET", "/savepoints");
    assert_eq!(status, 405);
    let (status, _) = request(addr, "GET", "/nothing");
    assert_eq!(status, 404);

    // Ready while running; not once it ended (the listener lives with the handle).
    assert_eq!(get(addr, "/readyz").trim(), "ready");
    job.stop();
    eventually("the job to end", || job.is_finished());
    let (status, body) = request(addr, "GET", "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("finished"), "{body}");
    job.join().unwrap();
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
        "the listener outlived the job"
    );
}

#[test]
fn a_taken_port_fails_the_start_clearly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let env = StreamEnvironment::new(
        EnvConfig::default()
            .with_parallelism(1)
            .with_signal_handling(false)
            .with_http(taken.local_addr().unwrap()),
    );
    env.from_iter(0..10u64).sink(DiscardSink::new());
    let error = env.start().err().unwrap();
    assert!(error.to_string().contains("metrics.listen"), "{error}");
}

/// Debian's Chromium, or `FERROFLOW_CHROMIUM`.
fn chromium() -> String {
    if let Ok(path) = std::env::var("FERROFLOW_CHROMIUM") {
        return path;
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .ok()
            .filter(|o| o.status.success());
        if let Some(o) = found {
            return String::from_utf8_lossy(&o.stdout).trim().to_string();
        }
    }
    panic!(
        "no Chromium: `apt-get install chromium` (bash scripts/test does), or set FERROFLOW_CHROMIUM"
    );
}

fn headless(args: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn the_status_page_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let job = start("status-page", dir.path(), 60);
    let addr = job.http_addr().unwrap();
    eventually("a completed checkpoint", || {
        job.checkpoints().completed >= 2
    });
    std::thread::sleep(Duration::from_millis(1200));
    let url = format!("http://{addr}/");
    let dom = String::from_utf8(headless(&["--dump-dom", &url]).stdout).unwrap();
    // What the page's script rendered from /jobs and /checkpoints.
    assert!(dom.contains(r#"id="name">status-page<"#), "{dom}");
    assert!(dom.contains(r#"class="state running""#), "{dom}");
    let operators = dom.matches(r#"data-testid="operator""#).count();
    assert!(operators >= 4, "{operators} operators rendered:\n{dom}");
    assert!(dom.contains(r#"data-name="source:scripted"#) || dom.contains(r#"data-name="source:"#));
    assert!(dom.contains(r#"data-testid="checkpoint""#), "{dom}");
    assert!(dom.contains("completed"), "{dom}");
    assert!(
        dom.contains("watermark 19") || dom.contains("watermark 20"),
        "{dom}"
    );
    // A screenshot, for the docs when asked for.
    if let Ok(target) = std::env::var("FERROFLOW_SCREENSHOT") {
        headless(&[
            &format!("--screenshot={target}"),
            "--window-size=1280,820",
            &url,
        ]);
        assert!(std::path::Path::new(&target).is_file());
    }
    job.stop();
    job.join().unwrap();
}

/// Sleeps on every batch: slower than its input.
#[derive(Clone)]
struct SlowSink;

impl Sink<u64> for SlowSink {
    fn write(&mut self, _batch: Vec<u64>) -> Result<()> {
        std::thread::sleep(Duration::from_millis(3));
        Ok(())
    }
}

#[test]
fn backpressure_is_located_at_the_exchange_into_the_slow_stage() {
    let env = StreamEnvironment::new(
        EnvConfig::default()
            .with_name("slow")
            .with_parallelism(1)
            .with_batch_size(64)
            .with_channel_capacity(2)
            .with_signal_handling(false)
            .with_http("127.0.0.1:0".parse().unwrap()),
    );
    let steps = vec![Step::Emit((0..2_000_000).collect())];
    env.from_source(ScriptedSource::new(vec![steps]), WatermarkStrategy::none())
        .map(|x| x + 1)
        .rebalance()
        .filter(|x| x % 2 == 0)
        .sink(SlowSink);
    let job = env.start().unwrap();
    let addr = job.http_addr().unwrap();
    let mut located = serde_json::Value::Null;
    eventually("backpressure located", || {
        let jobs: serde_json::Value = serde_json::from_str(&get(addr, "/jobs")).unwrap();
        located = jobs["backpressure"].clone();
        !located.is_null()
    });
    assert!(
        located["exchange"]
            .as_str()
            .unwrap()
            .starts_with("exchange#"),
        "{located}"
    );
    assert!(
        located["stage"].as_str().unwrap().starts_with("source:"),
        "{located}"
    );
    let into = located["into"].as_array().unwrap();
    assert_eq!(into.len(), 1, "{located}");
    assert!(
        into[0].as_str().unwrap().starts_with("rebalance#"),
        "{located}"
    );
    assert!(
        located["backpressured_ms_per_s"].as_f64().unwrap() >= 100.0,
        "{located}"
    );
    assert!(
        located["backpressure_events"].as_u64().unwrap() > 0,
        "{located}"
    );
    // The same in Prometheus: the exchange's blocked time and events.
    let text = get(addr, "/metrics");
    let exchange = located["exchange"].as_str().unwrap();
    let label = format!("operator=\"{exchange}\"");
    assert!(series_sum(&text, "ferroflow_backpressure_events_total", &[&label]).unwrap() > 0.0);
    assert!(
        series_sum(&text, "ferroflow_backpressure_nanoseconds_total", &[&label]).unwrap() > 1e8
    );
    drop(job); // cancels
}
