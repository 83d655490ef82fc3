//! The UV operator (`operators::uv::count`) on the generated click stream that Flink's UV
//! benchmark uses (20M events, 1M users, 10K items, 24 hours):
//!
//! - UV per (item, hour), exact, in memory: the final rows must add up to 19,999,156, the
//!   number of distinct (item, hour, user) triples (the checksum Flink's job prints);
//! - the same on RocksDB with a checkpoint every 10 s;
//! - the same with HyperLogLog++ (precision 14): the sum must be within 1% of the exact one;
//! - the full dashboard: 6 dimension sets × (hour, day), changelog every second, on the
//!   first 5M events;
//! - memory: peak resident memory per distinct (item, user) pair when every pair of the
//!   stream is held at once (one bucket spanning the stream per item).
//!
//! `cargo bench --bench uv` (every case), or `cargo bench --no-default-features --bench uv`
//! (every case but RocksDB's, without building RocksDB)
//!
//! `FERROFLOW_BENCH_UV_EVENTS=N` runs the per-(item, hour) cases on the first N events
//! instead of 20 M, for counting instructions under valgrind in a few minutes; their
//! totals are then not checked against the full stream's.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod support;

use criterion::{criterion_group, criterion_main, Criterion};
use ferroflow::connectors::{ClickEvent, GeneratorConfig, GeneratorSource};
use ferroflow::operators::uv::{
    self, Grain, HotKeys, Mode, SmolStr, UserId, UvConfig, UvEvent, UvOutput,
};
use ferroflow::prelude::*;
#[cfg(feature = "rocksdb")]
use ferroflow::state::{RocksDbBackend, RocksDbConfig};
#[cfg(feature = "rocksdb")]
use ferroflow::CheckpointConfig;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use support::{bench_parallelism, cpu_time, proc_status, selected};

const EVENTS: u64 = 20_000_000;
const DISTINCT: u64 = 19_999_156;

/// Names of items, categories, platforms and provinces, made once and shared.
fn names() -> &'static [Vec<SmolStr>; 4] {
    static NAMES: OnceLock<[Vec<SmolStr>; 4]> = OnceLock::new();
    NAMES.get_or_init(|| {
        let list = |prefix: &str, n: u64| {
            (0..n)
                .map(|i| SmolStr::new(format!("{prefix}{i}")))
                .collect()
        };
        [
            list("item-", 10_000),
            list("cat-", 100),
            list("p", 4),
            list("prov-", 31),
        ]
    })
}

/// A generated click read through the dimension names of the dashboard.
struct Click(ClickEvent);

impl Click {
    fn name(&self, field: &str) -> Option<&'static SmolStr> {
        let [items, cats, platforms, provinces] = names();
        let e = &self.0;
        Some(match field {
            "item" => &items[(e.item_id % 10_000) as usize],
            "category1" => &cats[(e.category % 10) as usize],
            "category2" => &cats[(e.category % 100) as usize],
            "platform" => &platforms[(e.user_id % 4) as usize],
            "province" => &provinces[(e.user_id / 4 % 31) as usize],
            _ => return None,
        })
    }
}

impl UvEvent for Click {
    fn event_time(&self) -> i64 {
        self.0.ts
    }
    fn user(&self) -> UserId {
        UserId::number(self.0.user_id)
    }
    fn dimension(&self, field: &str) -> Option<&str> {
        self.name(field).map(|n| &**n)
    }
}

struct Case {
    config: UvConfig,
    rocksdb: bool,
    /// Serve metrics over HTTP (`metrics.listen`) while the job runs.
    http: bool,
}

/// Runs one UV job over the stream; returns (wall, cpu, sum of final uv, rows).
fn run_case(parallelism: usize, case: &Case, events: u64) -> (Duration, Duration, u64, u64) {
    // RocksDB's files and the checkpoints, with the `rocksdb` feature.
    #[cfg(feature = "rocksdb")]
    let dir = tempfile::tempdir().unwrap();
    let config = EnvConfig::default()
        .with_parallelism(parallelism)
        .with_signal_handling(false);
    // With the HTTP listener: the Prometheus recorder takes every metric, and the
    // listener samples the counters each second (the metrics overhead cases).
    let config = if case.http {
        config.with_http("127.0.0.1:0".parse().unwrap())
    } else {
        config
    };
    let env = StreamEnvironment::new(config);
    #[cfg(not(feature = "rocksdb"))]
    assert!(
        !case.rocksdb,
        "the RocksDB case needs the `rocksdb` feature"
    );
    #[cfg(feature = "rocksdb")]
    if case.rocksdb {
        env.set_state_backend(
            RocksDbBackend::new(RocksDbConfig::default().with_local_dir(dir.path().join("db")))
                .unwrap(),
        );
        env.enable_checkpointing(
            CheckpointConfig::new(dir.path().join("checkpoints"))
                .with_interval(Duration::from_secs(10)),
        );
    }
    let source = GeneratorSource::new(GeneratorConfig::default().with_events(events)).unwrap();
    let events = env
        .from_source(
            source,
            WatermarkStrategy::bounded_out_of_orderness(Duration::ZERO, |e: &ClickEvent| e.ts),
        )
        .map(Click);
    let (rows, _) = uv::count(events, case.config.clone()).unwrap();
    let (sum, count) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (s, n) = (Arc::clone(&sum), Arc::clone(&count));
    rows.inspect(move |o| {
        if let UvOutput::Row(r) = o {
            n.fetch_add(1, Ordering::Relaxed);
            if r.is_final {
                s.fetch_add(r.uv, Ordering::Relaxed);
            }
        }
    })
    .sink(DiscardSink::new());
    let (cpu0, t0) = (cpu_time(), Instant::now());
    env.execute().expect("job");
    (
        t0.elapsed(),
        cpu_time() - cpu0,
        sum.load(Ordering::Relaxed),
        count.load(Ordering::Relaxed),
    )
}

fn per_item_hour(mode: Mode) -> UvConfig {
    UvConfig {
        dimensions: vec![vec!["item".into()]],
        grains: vec![Grain::hour()],
        mode,
        lateness: Duration::ZERO,
        update_interval: Duration::ZERO,
        timezone: ferroflow::Zone::utc(),
        // 10K items: no hot key to spread.
        hot_keys: HotKeys::Off,
        ..UvConfig::default()
    }
}

/// Events of the per-(item, hour) cases: the stream, or `FERROFLOW_BENCH_UV_EVENTS`.
fn item_hour_events() -> u64 {
    std::env::var("FERROFLOW_BENCH_UV_EVENTS").map_or(EVENTS, |v| {
        v.parse()
            .expect("FERROFLOW_BENCH_UV_EVENTS: a number of events")
    })
}

fn exact(p: usize, rocksdb: bool, http: bool) -> (Duration, Duration) {
    let case = Case {
        config: per_item_hour(Mode::Exact),
        rocksdb,
        http,
    };
    let events = item_hour_events();
    let (wall, cpu, sum, _) = run_case(p, &case, events);
    if events == EVENTS {
        assert_eq!(sum, DISTINCT, "distinct (item, hour, user) triples");
    }
    (wall, cpu)
}

fn hll(p: usize) -> (Duration, Duration) {
    let case = Case {
        config: per_item_hour(Mode::Hll { precision: 14 }),
        rocksdb: false,
        http: false,
    };
    let events = item_hour_events();
    let (wall, cpu, sum, _) = run_case(p, &case, events);
    let err = (sum as f64 - DISTINCT as f64).abs() / DISTINCT as f64;
    assert!(
        events != EVENTS || err < 0.01,
        "HLL sum {sum} vs {DISTINCT}"
    );
    (wall, cpu)
}

fn dashboard_config() -> UvConfig {
    UvConfig {
        dimensions: UvConfig::parse_dimensions(
            ";platform;province;platform,province;category1;category1,category2",
        ),
        grains: vec![Grain::hour(), Grain::day()],
        mode: Mode::Exact,
        lateness: Duration::ZERO,
        update_interval: Duration::from_millis(1_000),
        timezone: ferroflow::Zone::utc(),
        hot_keys: HotKeys::PreAggregate,
        ..UvConfig::default()
    }
}

static DASHBOARD_ROWS: AtomicU64 = AtomicU64::new(0);

/// The dashboard makes 12 counts of every event: a shorter stream keeps the bench short.
const DASHBOARD_EVENTS: u64 = 5_000_000;

fn dashboard(p: usize, http: bool) -> (Duration, Duration) {
    let case = Case {
        config: dashboard_config(),
        rocksdb: false,
        http,
    };
    let (wall, cpu, _, rows) = run_case(p, &case, DASHBOARD_EVENTS);
    DASHBOARD_ROWS.fetch_add(rows, Ordering::Relaxed);
    eprintln!(
        "dashboard p={p}: {rows} rows in {:.2}s = {:.0} updates/s",
        wall.as_secs_f64(),
        rows as f64 / wall.as_secs_f64()
    );
    (wall, cpu)
}

fn memory() {
    // Resident memory now (freed pages given back) and the peak during the job.
    let before = proc_status("VmRSS");
    let mut config = per_item_hour(Mode::Exact);
    // One bucket spanning the whole stream: every pair stays in state until the end.
    let start = GeneratorConfig::default().start_ts;
    config.grains = vec![
        Grain::range("all", start - 3_600_000, start + 25 * 3_600_000).expect("a valid range"),
    ];
    let (_, _, pairs, _) = run_case(
        1,
        &Case {
            config,
            rocksdb: false,
            http: false,
        },
        EVENTS,
    );
    let peak = proc_status("VmHWM");
    eprintln!(
        "SUMMARY uv_memory: {pairs} distinct (item, user) pairs held at once; peak RSS {:.0} MiB, {:.0} MiB before the job = {:.1} bytes per pair",
        peak as f64 / 1048576.0,
        before as f64 / 1048576.0,
        peak.saturating_sub(before) as f64 / pairs as f64
    );
}

fn uv(c: &mut Criterion) {
    // First, while the process is small: the peak-memory measure.
    if selected("uv_memory") {
        memory();
    }
    bench_parallelism(c, "uv_exact_memory", item_hour_events(), |p| {
        exact(p, false, false)
    });
    bench_parallelism(c, "uv_hll_memory", item_hour_events(), hll);
    // Without the `rocksdb` feature (`--no-default-features`), the other cases only.
    #[cfg(feature = "rocksdb")]
    bench_parallelism(c, "uv_exact_rocksdb", item_hour_events(), |p| {
        exact(p, true, false)
    });
    bench_parallelism(c, "uv_dashboard", DASHBOARD_EVENTS, |p| dashboard(p, false));
    // The same two jobs with the metrics listener on: run each case in a process of its
    // own (a filter per run), as the Prometheus recorder, once installed, stays.
    bench_parallelism(c, "uv_exact_memory_http", item_hour_events(), |p| {
        exact(p, false, true)
    });
    bench_parallelism(c, "uv_dashboard_http", DASHBOARD_EVENTS, |p| {
        dashboard(p, true)
    });
}

criterion_group!(benches, uv);
criterion_main!(benches);
