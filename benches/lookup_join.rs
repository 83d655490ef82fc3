//! The lookup join (`operators::lookup_join`) on the generated click stream that Flink's
//! `lookup_join` benchmark uses (item ids uniform over a 1M-row dimension table, so every
//! event finds its row):
//!
//! - `lookup_full`: the full cache, each worker holding its share of the 1M rows (loaded
//!   before records flow, as Flink's job loads its whole table in `open()`); every event
//!   must match, and the sum of matched prices must equal the brute-force sum. A row is
//!   a category, a price and a short name kept inline (`SmolStr`), so each joined record
//!   gets a copy of its row;
//! - `lookup_full_shared`: the same with rows behind `Arc`s, as the JVM shares objects:
//!   each joined record gets a pointer, and updates the row's shared count;
//! - `lookup_partial_redis`: the partial cache (100K rows) in front of a real Redis with
//!   1M item hashes, Zipf-skewed item ids (exponent 1.1); prints round trips per event
//!   and the hit rate. Needs Redis at `FERROFLOW_REDIS_URL` (default
//!   `redis://127.0.0.1:6379`).
//!
//! - `lookup_memory/<p>`: the peak memory the full-cache job adds at parallelism `p`;
//!   run each in a process of its own (`$B --bench lookup_memory/1`).
//!
//! `cargo bench --bench lookup_join`; one case: `... -- lookup_full/parallelism/1`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod support;

use criterion::{criterion_group, criterion_main, Criterion};
use ferroflow::connectors::redis::{RedisLookup, RedisRow};
use ferroflow::connectors::{ClickEvent, GeneratorConfig, GeneratorSource};
use ferroflow::operators::lookup_join::{
    CacheMode, Joined, LookupCounters, LookupJoin, LookupJoinConfig, MemoryTable, MissRetry,
};
use ferroflow::operators::uv::SmolStr;
use ferroflow::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use support::{bench_parallelism, execute_timed, proc_status, selected};

const DIM_ROWS: u64 = 1_000_000;
const FULL_EVENTS: u64 = 10_000_000;
const PARTIAL_EVENTS: u64 = 5_000_000;

/// A dimension row, with the fields of Flink's job: a category, a price in cents, a name.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Dim {
    category: u32,
    price_cents: i64,
    name: SmolStr,
}

fn dim(item: u64) -> Dim {
    Dim {
        category: (item % 100) as u32,
        price_cents: (item * 37 % 100_000) as i64,
        name: SmolStr::new(format!("item-{item}")),
    }
}

/// The table, built once.
fn table() -> &'static MemoryTable<u64, Dim> {
    static TABLE: OnceLock<MemoryTable<u64, Dim>> = OnceLock::new();
    TABLE.get_or_init(|| MemoryTable::new((0..DIM_ROWS).map(|i| (i, dim(i)))))
}

/// The table with its rows shared behind `Arc`s, built once.
fn shared_table() -> &'static MemoryTable<u64, Arc<Dim>> {
    static TABLE: OnceLock<MemoryTable<u64, Arc<Dim>>> = OnceLock::new();
    TABLE.get_or_init(|| MemoryTable::new((0..DIM_ROWS).map(|i| (i, Arc::new(dim(i))))))
}

fn events(n: u64, skew: f64) -> GeneratorSource {
    GeneratorSource::new(
        GeneratorConfig::default()
            .with_events(n)
            .with_items(DIM_ROWS)
            .with_item_skew(skew),
    )
    .unwrap()
}

fn full(p: usize) -> (Duration, Duration) {
    full_with(p, table(), |d: &Dim| d.price_cents)
}

fn full_shared(p: usize) -> (Duration, Duration) {
    full_with(p, shared_table(), |d: &Arc<Dim>| d.price_cents)
}

/// The full-cache join of the click stream with `table`, checked against the brute-force
/// sum of prices.
fn full_with<V>(
    p: usize,
    table: &MemoryTable<u64, V>,
    price_of: fn(&V) -> i64,
) -> (Duration, Duration)
where
    V: Clone + Serialize + Send + Sync + 'static,
{
    let env = StreamEnvironment::new(
        EnvConfig::default()
            .with_parallelism(p)
            .with_signal_handling(false),
    );
    let config = LookupJoinConfig {
        cache: CacheMode::Full,
        retry: MissRetry {
            attempts: 0,
            ..MissRetry::default()
        },
        ..LookupJoinConfig::default()
    };
    let (matched, price) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (m, s) = (Arc::clone(&matched), Arc::clone(&price));
    let clicks = env.from_source(events(FULL_EVENTS, 0.0), WatermarkStrategy::none());
    LookupJoin::full(table.clone(), config)
        .left(clicks, |c: &ClickEvent| c.item_id)
        .unwrap()
        .map_batch(move |batch: Vec<Joined<ClickEvent, V>>| {
            let (mut n, mut sum) = (0, 0);
            for j in &batch {
                if let Some(d) = &j.dim {
                    n += 1;
                    sum += price_of(d) as u64;
                }
            }
            m.fetch_add(n, Ordering::Relaxed);
            s.fetch_add(sum, Ordering::Relaxed);
            Vec::<()>::new()
        })
        .sink(DiscardSink::new());
    let (wall, cpu) = execute_timed(&env);
    assert_eq!(
        matched.load(Ordering::Relaxed),
        FULL_EVENTS,
        "every event finds its row"
    );
    assert_eq!(price.load(Ordering::Relaxed), expected_price_sum());
    (wall, cpu)
}

/// The sum of the prices of every event's item, computed directly.
fn expected_price_sum() -> u64 {
    static SUM: OnceLock<u64> = OnceLock::new();
    *SUM.get_or_init(|| {
        let source = events(FULL_EVENTS, 0.0);
        (0..FULL_EVENTS)
            .map(|i| dim(source.event(i).item_id).price_cents as u64)
            .sum()
    })
}

fn redis_url() -> String {
    std::env::var("FERROFLOW_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Writes the 1M item hashes to Redis once (a marker key says they are there).
fn fill_redis() {
    static FILLED: OnceLock<()> = OnceLock::new();
    FILLED.get_or_init(|| {
        let mut conn = redis::Client::open(redis_url().as_str())
            .unwrap()
            .get_connection()
            .expect("the partial-cache bench needs Redis (FERROFLOW_REDIS_URL)");
        let marker = "ffbench:item:filled";
        if redis::cmd("GET")
            .arg(marker)
            .query::<Option<String>>(&mut conn)
            .unwrap()
            .is_some()
        {
            return;
        }
        for chunk in (0..DIM_ROWS).collect::<Vec<_>>().chunks(10_000) {
            let mut pipe = redis::pipe();
            for &i in chunk {
                let d = dim(i);
                pipe.hset_multiple(
                    format!("ffbench:item:{i}"),
                    &[
                        ("category", d.category.to_string()),
                        ("price_cents", d.price_cents.to_string()),
                        ("name", d.name.to_string()),
                    ],
                )
                .ignore();
            }
            pipe.exec(&mut conn).unwrap();
        }
        let _: () = redis::cmd("SET")
            .arg(marker)
            .arg("1")
            .query(&mut conn)
            .unwrap();
    });
}

/// A row as Redis keeps it: every field text.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DimText {
    category: String,
    price_cents: String,
    name: String,
}

fn partial(p: usize) -> (Duration, Duration) {
    fill_redis();
    let env = StreamEnvironment::new(
        EnvConfig::default()
            .with_parallelism(p)
            .with_signal_handling(false),
    );
    let config = LookupJoinConfig {
        cache: CacheMode::Partial,
        cache_rows: 100_000,
        ..LookupJoinConfig::default()
    };
    // Rows shared behind `Arc`s, as in the full-cache case: a cache hit clones a pointer.
    let source =
        RedisLookup::<u64, Arc<DimText>>::new(&redis_url(), "ffbench:item:{}", RedisRow::Hash)
            .unwrap();
    let join = LookupJoin::partial(source, config);
    let counters = join.counters();
    let clicks = env.from_source(events(PARTIAL_EVENTS, 1.1), WatermarkStrategy::none());
    join.left(clicks, |c: &ClickEvent| c.item_id)
        .unwrap()
        .sink(DiscardSink::new());
    let (wall, cpu) = execute_timed(&env);
    let get = |c: &AtomicU64| LookupCounters::get(c);
    assert_eq!(get(&counters.matched), PARTIAL_EVENTS);
    eprintln!(
        "lookup_partial_redis p={p}: hit rate {:.1}%, {} requests for {} keys: {:.4} round trips per event",
        counters.hit_rate() * 100.0,
        get(&counters.requests),
        get(&counters.keys_requested),
        get(&counters.requests) as f64 / PARTIAL_EVENTS as f64,
    );
    (wall, cpu)
}

/// Peak memory the full-cache job adds at parallelism `p` (the table it loads from is
/// built first and not counted): run each parallelism in a process of its own.
fn memory(p: usize) {
    let _ = table();
    let before = proc_status("VmRSS");
    full(p);
    let peak = proc_status("VmHWM");
    eprintln!(
        "SUMMARY lookup_memory p={p}: peak RSS {:.0} MiB, {:.0} MiB before the job: the job added {:.0} MiB",
        peak as f64 / 1048576.0,
        before as f64 / 1048576.0,
        peak.saturating_sub(before) as f64 / 1048576.0,
    );
}

fn lookup(c: &mut Criterion) {
    bench_parallelism(c, "lookup_full", FULL_EVENTS, full);
    bench_parallelism(c, "lookup_full_shared", FULL_EVENTS, full_shared);
    for p in [1, 2] {
        if selected(&format!("lookup_memory/{p}"))
            && std::env::args().any(|a| a.contains("lookup_memory"))
        {
            memory(p);
        }
    }
    bench_parallelism(c, "lookup_partial_redis", PARTIAL_EVENTS, partial);
}

criterion_group!(benches, lookup);
criterion_main!(benches);
