//! The lookup join against in-memory tables: results equal a brute-force join; misses
//! retried until rows arrive; inner joins' unmatched output; partitioned caches; the
//! negative cache and single flight; the full cache and its reloads; a byte bound.

use super::cache::LookupCache;
use super::function;
use super::*;
use ferroflow_core::sinks::CollectSink;
use ferroflow_core::StreamEnvironment;
use ferroflow_state::{key_group_for_key, worker_for_key_group};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// A click: (sequence number, item).
type Click = (u64, u64);

fn clicks(n: u64, items: u64) -> Vec<Click> {
    (0..n).map(|i| (i, (i * 7 + i / 3) % items)).collect()
}

fn brand(item: u64) -> String {
    format!("brand-{item}")
}

/// Items below `present` have a row.
fn table(present: u64) -> MemoryTable<u64, String> {
    MemoryTable::new((0..present).map(|i| (i, brand(i))))
}

fn no_retry() -> LookupJoinConfig {
    LookupJoinConfig {
        retry: MissRetry {
            attempts: 0,
            ..MissRetry::default()
        },
        ..LookupJoinConfig::default()
    }
}

type Out = Joined<Click, String>;

fn run_left(
    p: usize,
    input: Vec<Click>,
    join: LookupJoin<u64, String>,
) -> (Vec<(u64, Option<String>)>, Arc<LookupCounters>) {
    let counters = join.counters();
    let env = StreamEnvironment::local(p);
    let out = CollectSink::<Out>::new();
    join.left(env.from_iter(input), |c: &Click| c.1)
        .unwrap()
        .sink(out.clone());
    env.execute().unwrap();
    let mut rows: Vec<_> = out.take().into_iter().map(|j| (j.event.0, j.dim)).collect();
    rows.sort();
    (rows, counters)
}

fn brute(input: &[Click], present: u64) -> Vec<(u64, Option<String>)> {
    let mut rows: Vec<_> = input
        .iter()
        .map(|&(seq, item)| (seq, (item < present).then(|| brand(item))))
        .collect();
    rows.sort();
    rows
}

#[test]
fn a_left_join_equals_a_brute_force_join() {
    let input = clicks(20_000, 500);
    for cache in [CacheMode::Partial, CacheMode::None] {
        for p in [1, 3] {
            let config = LookupJoinConfig {
                cache,
                ..no_retry()
            };
            let (rows, counters) =
                run_left(p, input.clone(), LookupJoin::partial(table(300), config));
            assert_eq!(rows, brute(&input, 300), "{cache:?} p{p}");
            let c = |x: &AtomicU64| LookupCounters::get(x);
            assert_eq!(c(&counters.matched) + c(&counters.unmatched), 20_000);
            assert_eq!(
                c(&counters.unmatched) as usize,
                brute(&input, 300).iter().filter(|r| r.1.is_none()).count()
            );
            if cache == CacheMode::Partial {
                // Each key went to the store about once (a key's records may race its
                // first request within one batch window), not once per record.
                assert!(
                    c(&counters.keys_requested) < 1_000,
                    "{}",
                    c(&counters.keys_requested)
                );
                // Every record is counted once: found in the cache (a row or a known
                // miss), or not (looked up, or waiting for its key's request).
                let answered = c(&counters.hits) + c(&counters.negative_hits);
                assert_eq!(answered + c(&counters.misses), 20_000);
                assert!(answered > 0);
            }
        }
    }
}

/// Hot keys repeat within a batch: each record is still joined, and counted once as a
/// hit, a known miss or a miss, while the store sees each key about once.
#[test]
fn hot_keys_repeated_within_batches_are_each_joined_and_counted() {
    let input: Vec<Click> = (0..10_000)
        .map(|i| (i, [0, 1, 2, 0, 0, 1][(i % 6) as usize]))
        .collect();
    let config = LookupJoinConfig {
        cache: CacheMode::Partial,
        ..no_retry()
    };
    // Items 0 and 1 have rows, item 2 has none.
    let (rows, counters) = run_left(1, input.clone(), LookupJoin::partial(table(2), config));
    assert_eq!(rows, brute(&input, 2));
    let c = |x: &AtomicU64| LookupCounters::get(x);
    assert_eq!(
        c(&counters.hits) + c(&counters.negative_hits) + c(&counters.misses),
        10_000
    );
    assert_eq!(c(&counters.matched), 10_000 - 1_667);
    assert!(
        c(&counters.keys_requested) <= 6,
        "{}",
        c(&counters.keys_requested)
    );
}

#[test]
fn rows_written_after_the_start_are_joined_through_retries() {
    let dim = table(100);
    let late = dim.clone();
    let config = LookupJoinConfig {
        retry: MissRetry {
            attempts: 20,
            delay: Duration::from_millis(20),
            multiplier: 1.5,
            max_delay: Duration::from_millis(200),
        },
        ..LookupJoinConfig::default()
    };
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        for i in 100..200 {
            late.insert(i, brand(i));
        }
    });
    let input = clicks(5_000, 200);
    let (rows, counters) = run_left(2, input.clone(), LookupJoin::partial(dim, config));
    writer.join().unwrap();
    assert_eq!(rows, brute(&input, 200));
    assert!(LookupCounters::get(&counters.retries) > 0);
    assert_eq!(LookupCounters::get(&counters.unmatched), 0);
    assert_eq!(counters.held(), 0, "nothing waits once the job ended");
}

#[test]
fn an_inner_join_sends_records_given_up_on_to_its_unmatched_output() {
    let input = clicks(3_000, 100);
    let config = LookupJoinConfig {
        retry: MissRetry {
            attempts: 2,
            delay: Duration::from_millis(5),
            ..MissRetry::default()
        },
        ..LookupJoinConfig::default()
    };
    let join = LookupJoin::partial(table(60), config);
    let counters = join.counters();
    let env = StreamEnvironment::local(2);
    let (joined, unmatched) = join
        .inner(env.from_iter(input.clone()), |c: &Click| c.1)
        .unwrap();
    let (out, lost) = (CollectSink::<Out>::new(), CollectSink::<Click>::new());
    joined.sink(out.clone());
    unmatched.sink(lost.clone());
    env.execute().unwrap();
    let want = brute(&input, 60);
    let mut got: Vec<_> = out.take().into_iter().map(|j| (j.event.0, j.dim)).collect();
    got.sort();
    assert_eq!(
        got,
        want.iter()
            .filter(|r| r.1.is_some())
            .cloned()
            .collect::<Vec<_>>()
    );
    let mut lost: Vec<u64> = lost.take().into_iter().map(|c| c.0).collect();
    lost.sort();
    let want_lost: Vec<u64> = want.iter().filter(|r| r.1.is_none()).map(|r| r.0).collect();
    assert_eq!(lost, want_lost);
    assert_eq!(
        LookupCounters::get(&counters.unmatched) as usize,
        want_lost.len()
    );
    // Each record given up on was looked up three times (two retries).
    assert!(LookupCounters::get(&counters.retries) as usize >= 2 * want_lost.len());
}

#[test]
fn each_worker_caches_only_the_keys_of_its_key_groups() {
    let p = 3;
    let input = clicks(10_000, 1_000);
    let (rows, counters) = run_left(
        p,
        input.clone(),
        LookupJoin::partial(table(1_000), no_retry()),
    );
    assert_eq!(rows, brute(&input, 1_000));
    let caches = opened_caches::<u64, String>(&counters);
    assert_eq!(caches.len(), p);
    let max = ferroflow_core::EnvConfig::default().max_parallelism;
    let mut all = 0;
    for (worker, cache) in caches {
        let keys = cache.keys();
        assert!(!keys.is_empty());
        all += keys.len();
        for k in keys {
            assert_eq!(
                worker_for_key_group(key_group_for_key(&k, max), max, p),
                worker,
                "key {k}"
            );
        }
    }
    assert_eq!(all, 1_000, "every key cached once, by its worker");
}

/// The caches the join with `counters` opened, by worker.
fn opened_caches<K: LookupKey, V: Clone + Serialize + Send + Sync + 'static>(
    counters: &Arc<LookupCounters>,
) -> Vec<(usize, Arc<LookupCache<K, V>>)> {
    let mine = Arc::as_ptr(counters) as usize;
    let mut out: Vec<_> = function::OPENED
        .lock()
        .iter()
        .filter(|(join, _, _)| *join == mine)
        .filter_map(|(_, w, c)| {
            Arc::clone(c)
                .downcast::<LookupCache<K, V>>()
                .ok()
                .map(|c| (*w, c))
        })
        .collect();
    out.sort_by_key(|(w, _)| *w);
    out
}

#[test]
fn missing_keys_and_concurrent_misses_reach_the_store_once() {
    // Zipf-like: item k with weight about 1/(k+1); most items have no row.
    let mut input = Vec::new();
    for i in 0..40_000u64 {
        let r = (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) % 10_000 + 1;
        input.push((i, 10_000 / r - 1));
    }
    let dim = table(50);
    dim.set_latency(Duration::from_millis(5));
    let config = LookupJoinConfig {
        miss_ttl: Duration::from_secs(600),
        ..no_retry()
    };
    let (rows, counters) = run_left(2, input.clone(), LookupJoin::partial(dim.clone(), config));
    assert_eq!(rows, brute(&input, 50));
    let distinct: std::collections::BTreeSet<u64> = input.iter().map(|c| c.1).collect();
    let (requests, keys) = dim.requests();
    // Every distinct key asked once: misses are remembered, and a key already being
    // looked up is not asked again.
    assert_eq!(keys as usize, distinct.len(), "{requests} requests");
    assert!(requests * 20 < input.len() as u64, "{requests} requests");
    assert!(LookupCounters::get(&counters.negative_hits) > 0);
}

#[test]
fn a_full_cache_answers_from_the_workers_share_and_reloads_when_the_table_changes() {
    let dim = table(100);
    let late = dim.clone();
    let config = LookupJoinConfig {
        cache: CacheMode::Full,
        reload: ReloadConfig {
            watch_interval: Some(Duration::from_millis(20)),
            ..ReloadConfig::default()
        },
        retry: MissRetry {
            attempts: 50,
            delay: Duration::from_millis(20),
            multiplier: 1.0,
            max_delay: Duration::from_millis(20),
        },
        ..LookupJoinConfig::default()
    };
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        for i in 100..150 {
            late.insert(i, brand(i));
        }
    });
    let input = clicks(4_000, 150);
    let (rows, counters) = run_left(2, input.clone(), LookupJoin::full(dim.clone(), config));
    writer.join().unwrap();
    assert_eq!(rows, brute(&input, 150));
    assert_eq!(dim.requests(), (0, 0), "a full cache never looks keys up");
    // The first load of both workers, then at least one reload each.
    assert!(LookupCounters::get(&counters.reloads) >= 4);
}

#[test]
fn a_full_cache_needs_a_table_and_a_partial_one_a_store() {
    let env = StreamEnvironment::local(1);
    let config = LookupJoinConfig {
        cache: CacheMode::Full,
        ..LookupJoinConfig::default()
    };
    let err = LookupJoin::partial(table(1), config)
        .left(env.from_iter(clicks(1, 1)), |c: &Click| c.1)
        .err()
        .unwrap();
    assert!(err.to_string().contains("LookupJoin::full"), "{err}");
}

#[test]
fn a_cache_bounded_in_bytes_stays_under_its_bound() {
    let bound = 20_000;
    let config = LookupJoinConfig {
        cache_bytes: Some(bound),
        ..no_retry()
    };
    let input = clicks(30_000, 5_000);
    let (rows, counters) = run_left(1, input.clone(), LookupJoin::partial(table(5_000), config));
    assert_eq!(rows, brute(&input, 5_000));
    let caches = opened_caches::<u64, String>(&counters);
    assert_eq!(caches.len(), 1);
    let (entries, bytes) = caches[0].1.size();
    assert!(bytes <= bound, "{bytes} bytes in {entries} entries");
    assert!(entries > 50, "{entries}");
}

#[test]
fn settings_read_from_toml_with_durations() {
    let config: LookupJoinConfig = toml::from_str(
        r#"
        cache = "partial"
        cache_rows = 5000
        cache_ttl = "5m"
        miss_ttl = "2s"
        retry = { attempts = 4, delay = "500ms" }
        async = { capacity = 8, ordered = true }
        reload = { interval = "1h", at = "02:30", timezone = "Asia/Shanghai" }
        "#,
    )
    .unwrap();
    assert_eq!(config.cache_ttl, Some(Duration::from_secs(300)));
    assert_eq!(config.retry.attempts, 4);
    assert_eq!(config.retry.delay_after(1), Duration::from_millis(500));
    assert_eq!(config.retry.delay_after(3), Duration::from_millis(2_000));
    assert_eq!(config.async_.capacity, 8);
    assert!(config.validate().is_ok());
    let bad: LookupJoinConfig = toml::from_str(r#"reload = { at = "25:00" }"#).unwrap();
    assert!(bad.validate().unwrap_err().to_string().contains("25:00"));
    assert!(toml::from_str::<LookupJoinConfig>("cache_size = 1").is_err());
    let _ = BTreeMap::<u8, u8>::new();
}

#[test]
fn a_first_load_that_takes_too_long_fails_the_start_clearly() {
    let dim = table(10);
    dim.set_latency(Duration::from_millis(500));
    let config = LookupJoinConfig {
        cache: CacheMode::Full,
        reload: ReloadConfig {
            first_load_timeout: Duration::from_millis(50),
            ..ReloadConfig::default()
        },
        ..LookupJoinConfig::default()
    };
    let env = StreamEnvironment::local(1);
    LookupJoin::full(dim, config)
        .left(env.from_iter(clicks(10, 10)), |c: &Click| c.1)
        .unwrap()
        .sink(CollectSink::new());
    let err = env.execute().unwrap_err().to_string();
    assert!(
        err.contains("first load") && err.contains("first_load_timeout"),
        "{err}"
    );
}

#[test]
fn lookups_that_time_out_can_give_their_records_up() {
    let dim = table(100);
    dim.set_latency(Duration::from_millis(300));
    let config = LookupJoinConfig {
        lookup_timeout: Duration::from_millis(30),
        on_timeout: OnLookupTimeout::Unmatched,
        ..LookupJoinConfig::default()
    };
    let input = clicks(500, 100);
    let started = std::time::Instant::now();
    let (rows, counters) = run_left(1, input.clone(), LookupJoin::partial(dim, config));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(rows.len(), input.len());
    assert!(rows.iter().all(|r| r.1.is_none()), "every lookup timed out");
    assert_eq!(LookupCounters::get(&counters.unmatched), 500);
    assert!(LookupCounters::get(&counters.failures) > 0);
}
