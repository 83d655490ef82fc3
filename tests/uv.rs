//! The UV count on both state backends: closed buckets leave the state (and the TTL
//! removes buckets whose timers are gone), and results are exactly-once across failures
//! and restores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Without the `rocksdb` feature only the memory-backend tests are built.
#![cfg_attr(not(feature = "rocksdb"), allow(unused_imports, dead_code))]

mod common;

use common::counting::latest;
use common::differences;
use ferroflow::connectors::{ClickEvent, GeneratorConfig, GeneratorSource, JsonLinesPartSink};
use ferroflow::operators::uv::{self, Grain, Mode, UserId, UvConfig, UvCount, UvEvent, UvOutput};
use ferroflow::prelude::*;
use ferroflow::state::{MemoryBackend, StateBackend};
#[cfg(feature = "rocksdb")]
use ferroflow::state::{RocksDbBackend, RocksDbConfig};
use ferroflow::testing::KeyedHarness;
use ferroflow::{CheckpointConfig, RestoreFrom};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const MINUTE: i64 = 60_000;

/// A generated click with a platform derived from the user.
#[derive(Debug, Clone)]
struct Click(ClickEvent);

const PLATFORMS: [&str; 3] = ["app", "web", "mini"];

impl UvEvent for Click {
    fn event_time(&self) -> i64 {
        self.0.ts
    }
    fn user(&self) -> UserId {
        UserId::number(self.0.user_id)
    }
    fn dimension(&self, field: &str) -> Option<&str> {
        (field == "platform").then(|| PLATFORMS[(self.0.user_id % 3) as usize])
    }
}

/// One-minute buckets whose TTL backstop is two minutes (the margin is one minute: this
/// test moves the watermark after every minute, so events never run further ahead).
fn minute_config() -> UvConfig {
    UvConfig {
        dimensions: UvConfig::parse_dimensions(";platform"),
        grains: vec![Grain::tumbling("1m", Duration::from_secs(60))],
        lateness: Duration::ZERO,
        update_interval: Duration::ZERO,
        ttl_margin: Duration::from_secs(60),
        ..UvConfig::default()
    }
}

/// Feeds 60 minutes of clicks, one minute at a time, moving the watermark after each;
/// returns the most state entries seen after a minute closed.
fn feed(h: &mut KeyedHarness<UvCount>, config: &UvConfig, drop_timers: bool) -> usize {
    let mut most = 0;
    for minute in 0..60 {
        for u in 0..50u64 {
            let click = Click(ClickEvent {
                seq: 0,
                ts: minute * MINUTE + (u as i64) * 1_000,
                user_id: u + minute as u64,
                item_id: 0,
                category: 0,
            });
            for (key, input) in uv::expand(config, &click) {
                h.process(key, input).unwrap();
            }
        }
        if drop_timers {
            h.drop_timers();
        }
        h.advance_watermark((minute + 1) * MINUTE - 1).unwrap();
        most = most.max(h.state_entries().unwrap());
    }
    most
}

fn cleanup_on(backend: &impl StateBackend) {
    let config = minute_config();
    let op = || UvCount::new(Arc::new(config.clone()), Arc::default()).unwrap();

    // Close timers clear each minute as it ends: the state never holds more than one
    // minute's buckets (4 keys: the whole site and three platforms).
    let mut h = KeyedHarness::new(op(), backend).unwrap();
    let most = feed(&mut h, &config, false);
    assert!(most <= 4, "{most} entries after a minute closed");
    assert_eq!(h.state_entries().unwrap(), 0);

    // Without timers, the TTL (in event time: the grain plus the lateness plus the margin)
    // removes closed buckets all the same: state stays bounded instead of growing by 4 a
    // minute.
    let mut h = KeyedHarness::new(op(), backend).unwrap();
    let most = feed(&mut h, &config, true);
    assert!(most <= 4 * 4, "{most} entries with the TTL alone");
    h.advance_watermark(200 * MINUTE).unwrap();
    assert_eq!(h.state_entries().unwrap(), 0, "expired buckets left");
}

#[test]
fn closed_buckets_leave_the_state_on_the_memory_backend() {
    cleanup_on(&MemoryBackend);
}

#[cfg(feature = "rocksdb")]
#[test]
fn closed_buckets_leave_the_state_on_rocksdb() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RocksDbBackend::new(
        RocksDbConfig::default()
            .with_local_dir(dir.path())
            .with_cache_entries(2),
    )
    .unwrap();
    cleanup_on(&backend);
}

fn generator() -> GeneratorConfig {
    // About a second of throttled input over two hours of event time, so that many
    // checkpoints complete and many minutes close during a run.
    GeneratorConfig::default()
        .with_events(30_000)
        .with_users(800)
        .with_splits(2)
        .with_span(Duration::from_secs(2 * 3600))
        .with_max_disorder(Duration::from_secs(5))
        .with_rate(30_000)
}

#[cfg(feature = "rocksdb")]
/// The UV job on RocksDB, failing once after `fail_after` records when set.
fn run_job(dir: &std::path::Path, fail_after: Option<u64>, restore: RestoreFrom) -> Result<()> {
    let env = StreamEnvironment::new(
        EnvConfig::default()
            .with_parallelism(2)
            .with_batch_size(64)
            .with_signal_handling(false)
            // Failures here must end the job: restarts have tests of their own.
            .with_restart(ferroflow::RestartStrategy::None),
    );
    env.set_state_backend(
        RocksDbBackend::new(
            RocksDbConfig::default()
                .with_local_dir(dir.join("rocksdb"))
                .with_cache_entries(50),
        )
        .unwrap(),
    );
    env.enable_checkpointing(
        CheckpointConfig::new(dir.join("checkpoints")).with_interval(Duration::from_millis(40)),
    );
    env.restore_from(restore);
    let events = env
        .from_source(
            GeneratorSource::new(generator()).unwrap(),
            WatermarkStrategy::bounded_out_of_orderness(
                Duration::from_secs(5),
                |e: &ClickEvent| e.ts,
            ),
        )
        .try_map(common::fail_after(fail_after))
        .map(Click);
    let config = UvConfig {
        grains: vec![
            Grain::tumbling("10m", Duration::from_secs(600)),
            Grain::hour(),
        ],
        mode: Mode::Exact,
        lateness: Duration::from_millis(10_000),
        update_interval: Duration::from_millis(20),
        // The throttled generator runs minutes of event time ahead of each watermark.
        ttl_margin: UvConfig::default().ttl_margin,
        ..minute_config()
    };
    let (rows, _) = uv::count(events, config)?;
    rows.sink(JsonLinesPartSink::new(dir.join("out")));
    env.execute().map(|_| ())
}

/// Final rows by (dims, grain, bucket); fails on a second final row for a key.
fn finals(dir: &std::path::Path) -> BTreeMap<String, (u64, u64)> {
    let mut m = BTreeMap::new();
    for f in JsonLinesPartSink::<()>::published(&dir.join("out")).unwrap() {
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            if let UvOutput::Row(r) = serde_json::from_str(line).unwrap() {
                if r.is_final {
                    let k = format!("{:?}/{}/{}", r.dims, r.grain, r.bucket);
                    assert!(
                        m.insert(k, (r.uv, r.pv)).is_none(),
                        "duplicate final row {line}"
                    );
                }
            }
        }
    }
    m
}

#[cfg(feature = "rocksdb")]
#[test]
fn final_rows_are_exactly_once_across_failures_on_rocksdb() {
    let clean = tempfile::tempdir().unwrap();
    run_job(clean.path(), None, RestoreFrom::Nothing).unwrap();
    let want = finals(clean.path());
    // 2 hours: at least 12 ten-minute and 2 hour buckets (disorder may open one more of
    // each before the start), for the site and three platforms.
    assert!(want.len() >= (12 + 2) * 4, "{} final rows", want.len());
    // Every event counts once per dimension set and grain.
    assert_eq!(want.values().map(|v| v.1).sum::<u64>(), 30_000 * 2 * 2);

    for fail_after in [3_000, 11_000, 23_000] {
        let d = tempfile::tempdir().unwrap();
        let err = run_job(d.path(), Some(fail_after), RestoreFrom::Nothing).unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        run_job(d.path(), None, latest()).unwrap();
        let diff = differences(&finals(d.path()), &want);
        assert!(
            diff.is_empty(),
            "failure after {fail_after} records: {diff:#?}"
        );
    }
}
