//! The lookup join against a real Redis server: rows as JSON strings and as hashes,
//! rows written after the job started joined through retries, and a server that goes
//! away mid-job and comes back without a record lost or duplicated.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use ferroflow::connectors::redis::{RedisLookup, RedisRow};
use ferroflow::operators::lookup_join::{Joined, LookupJoin, LookupJoinConfig, MissRetry};
use ferroflow::prelude::*;
use ferroflow::sinks::CollectSink;
use ferroflow::testing::{ScriptedSource, Step};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    brand: String,
    price: String,
}

fn item(i: u64) -> Item {
    Item {
        brand: format!("brand-{}", i % 17),
        price: format!("{}.{:02}", i % 500, i % 100),
    }
}

fn redis_url() -> String {
    std::env::var("FERROFLOW_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn connect(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap_or_else(|e| {
            panic!("no Redis at {url} ({e}): run `bash scripts/test`, start redis-server, or set FERROFLOW_REDIS_URL")
        })
}

/// A key prefix of this test run, so that runs do not see each other's rows.
fn prefix(test: &str) -> String {
    format!(
        "ferroflow-test:{test}:{}:{}",
        std::process::id(),
        ferroflow::now_millis()
    )
}

fn write_rows(
    conn: &mut redis::Connection,
    prefix: &str,
    row: RedisRow,
    items: impl Iterator<Item = u64>,
) {
    let mut pipe = redis::pipe();
    for i in items {
        let key = format!("{prefix}:{i}");
        let it = item(i);
        match row {
            RedisRow::Json => {
                pipe.set(&key, serde_json::to_string(&it).unwrap()).ignore();
            }
            RedisRow::Hash => {
                pipe.hset_multiple(&key, &[("brand", it.brand), ("price", it.price)])
                    .ignore();
            }
        }
        pipe.expire(&key, 600).ignore();
    }
    pipe.exec(conn).unwrap();
}

type Click = (u64, u64);

fn clicks(n: u64, items: u64) -> Vec<Click> {
    (0..n).map(|i| (i, (i * 13 + i / 7) % items)).collect()
}

fn brute(input: &[Click], present: impl Fn(u64) -> bool) -> Vec<(u64, Option<Item>)> {
    let mut rows: Vec<_> = input
        .iter()
        .map(|&(s, i)| (s, present(i).then(|| item(i))))
        .collect();
    rows.sort_by_key(|r| r.0);
    rows
}

fn run(
    p: usize,
    input: Vec<Click>,
    source: RedisLookup<u64, Item>,
    config: LookupJoinConfig,
) -> Vec<(u64, Option<Item>)> {
    common::left_join(p, input, LookupJoin::partial(source, config))
}

#[test]
fn rows_as_json_strings_and_as_hashes_join_like_a_brute_force_join() {
    let url = redis_url();
    let mut conn = connect(&url);
    for row in [RedisRow::Json, RedisRow::Hash] {
        let prefix = prefix(&format!("{row:?}"));
        // Items 0..400 exist; 400..500 never do.
        write_rows(&mut conn, &prefix, row, 0..400);
        let input = clicks(20_000, 500);
        let config = LookupJoinConfig {
            retry: MissRetry {
                attempts: 1,
                delay: Duration::from_millis(10),
                ..MissRetry::default()
            },
            ..LookupJoinConfig::default()
        };
        let source = RedisLookup::new(&url, format!("{prefix}:{{}}"), row).unwrap();
        let rows = run(2, input.clone(), source, config);
        assert_eq!(rows, brute(&input, |i| i < 400), "{row:?}");
    }
}

#[test]
fn rows_written_after_the_start_are_joined_through_retries() {
    let url = redis_url();
    let mut conn = connect(&url);
    let prefix = prefix("late");
    write_rows(&mut conn, &prefix, RedisRow::Json, 0..50);
    let late_prefix = prefix.clone();
    let late_url = url.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        write_rows(
            &mut connect(&late_url),
            &late_prefix,
            RedisRow::Json,
            50..100,
        );
    });
    let config = LookupJoinConfig {
        retry: MissRetry {
            attempts: 30,
            delay: Duration::from_millis(50),
            multiplier: 1.0,
            ..MissRetry::default()
        },
        ..LookupJoinConfig::default()
    };
    let input = clicks(5_000, 100);
    let source = RedisLookup::new(&url, format!("{prefix}:{{}}"), RedisRow::Json).unwrap();
    let rows = run(2, input.clone(), source, config);
    writer.join().unwrap();
    assert_eq!(rows, brute(&input, |_| true));
}

#[test]
fn a_row_that_does_not_decode_fails_the_job_naming_its_key() {
    let url = redis_url();
    let mut conn = connect(&url);
    let prefix = prefix("bad");
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}:1"))
        .arg("not json")
        .arg("EX")
        .arg(600)
        .query(&mut conn)
        .unwrap();
    let env = common::env(1);
    let source =
        RedisLookup::<u64, Item>::new(&url, format!("{prefix}:{{}}"), RedisRow::Json).unwrap();
    LookupJoin::partial(source, LookupJoinConfig::default())
        .left(env.from_iter(vec![(0u64, 1u64)]), |c: &Click| c.1)
        .unwrap()
        .sink(CollectSink::new());
    let err = env.execute().unwrap_err().to_string();
    assert!(
        err.contains(&format!("{prefix}:1")) && err.contains("decode"),
        "{err}"
    );
}

/// A redis-server of this test's own on a free port.
struct OwnRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnRedis {
    fn start() -> Self {
        let port = common::free_port();
        let mut me = Self {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        me.restart();
        me
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server again (keeping its data: it saves on shutdown).
    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "yes"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed: apt-get install redis-server (bash scripts/test does)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if redis::Client::open(self.url().as_str())
                .unwrap()
                .get_connection_with_timeout(Duration::from_millis(200))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn a_redis_that_goes_away_mid_job_loses_and_duplicates_nothing() {
    let mut server = OwnRedis::start();
    let url = server.url();
    write_rows(&mut connect(&url), "dim", RedisRow::Hash, 0..300);
    // Records keep coming for about three seconds; the server is down for two of them.
    let steps: Vec<Vec<Step<Click>>> = vec![(0..60u64)
        .flat_map(|b| {
            [
                Step::Emit(
                    (b * 100..(b + 1) * 100)
                        .map(|i| (i, (i * 7) % 300))
                        .collect(),
                ),
                Step::Idle(Duration::from_millis(50)),
            ]
        })
        .collect()];
    let input: Vec<Click> = (0..6_000u64).map(|i| (i, (i * 7) % 300)).collect();
    let env = common::env(2);
    let out = CollectSink::<Joined<Click, Item>>::new();
    let config = LookupJoinConfig {
        // No cache: every batch goes to the server, so the outage is felt.
        cache: ferroflow::operators::lookup_join::CacheMode::None,
        ..LookupJoinConfig::default()
    };
    let join = LookupJoin::partial(
        RedisLookup::new(&url, "dim:{}", RedisRow::Hash).unwrap(),
        config,
    );
    let counters = join.counters();
    join.left(
        env.from_source(ScriptedSource::new(steps), WatermarkStrategy::none()),
        |c: &Click| c.1,
    )
    .unwrap()
    .sink(out.clone());
    let handle = env.start().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    server.stop();
    std::thread::sleep(Duration::from_secs(2));
    server.restart();
    handle.join().unwrap();
    let mut rows: Vec<_> = out.take().into_iter().map(|j| (j.event.0, j.dim)).collect();
    rows.sort_by_key(|r| r.0);
    assert_eq!(rows.len(), input.len(), "every record once");
    assert_eq!(rows, brute(&input, |_| true));
    let failures = ferroflow::operators::lookup_join::LookupCounters::get(&counters.failures);
    assert!(
        failures > 0,
        "the outage was felt: {failures} failed requests"
    );
    let _ = BTreeMap::<u8, u8>::new();
}
