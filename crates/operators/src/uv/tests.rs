//! Scenario tests of the UV count on the in-memory backend (the RocksDB backend and
//! restores are covered by the workspace's `tests/uv.rs`).

use super::*;
use ferroflow_core::sinks::CollectSink;
use ferroflow_core::sources::VecSource;
use ferroflow_core::testing::{ScriptedSource, Step};
use ferroflow_core::{JobResult, Source, StreamEnvironment, WatermarkStrategy};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

#[derive(Debug, Clone)]
struct Ev {
    ts: i64,
    user: String,
    platform: &'static str,
    cat: String,
}

impl UvEvent for Ev {
    fn event_time(&self) -> i64 {
        self.ts
    }
    fn user(&self) -> UserId {
        UserId::encode(&self.user)
    }
    fn dimension(&self, field: &str) -> Option<&str> {
        match field {
            "platform" => Some(self.platform),
            "category" => Some(&self.cat),
            _ => None,
        }
    }
}

/// `n` events over `hours` with repeat visits, disorder up to `disorder` ms, and
/// categories Zipf-distributed (the first carries about half of the traffic).
fn events(n: u64, hours: i64, disorder: i64, seed: u64) -> Vec<Ev> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let span = hours * HOUR;
    (0..n)
        .map(|i| {
            let base = (i as i64) * span / n as i64;
            let jitter = (next() % (disorder as u64 + 1)) as i64;
            // Zipf-like: category k with weight 1/k^1.5 over 50 categories.
            let r = (next() % 1_000_000) as f64 / 1_000_000.0;
            let cat = zipf(r, 50, 1.5);
            Ev {
                ts: (base - jitter).max(0),
                user: if next() % 10 == 0 {
                    format!("a-longer-user-id-{}", next() % 300)
                } else {
                    format!("u-{}", next() % 3_000)
                },
                platform: ["app", "web", "mini"][(next() % 3) as usize],
                // Some values longer than a key holds inline: those are shared.
                cat: if cat.is_multiple_of(3) {
                    format!("a-category-name-longer-than-a-key-holds-{cat}")
                } else {
                    format!("c{cat}")
                },
            }
        })
        .collect()
}

fn zipf(r: f64, n: u32, s: f64) -> u32 {
    let total: f64 = (1..=n).map(|k| 1.0 / f64::from(k).powf(s)).sum();
    let mut acc = 0.0;
    for k in 1..=n {
        acc += 1.0 / f64::from(k).powf(s) / total;
        if r < acc {
            return k;
        }
    }
    n
}

fn config(mode: Mode, hot_keys: HotKeys) -> UvConfig {
    UvConfig {
        dimensions: UvConfig::parse_dimensions(";platform;platform,category;category"),
        grains: vec![
            Grain::hour(),
            Grain::day(),
            Grain::tumbling("10m", Duration::from_secs(600)),
        ],
        mode,
        lateness: Duration::from_secs(5 * 60),
        update_interval: Duration::from_millis(50),
        timezone: Zone::utc(),
        hot_keys,
        ..UvConfig::default()
    }
}

type Key = (BTreeMap<String, String>, String, String);

fn run(
    evs: Vec<Ev>,
    config: UvConfig,
    disorder: i64,
) -> (Vec<UvOutput>, Arc<UvCounters>, JobResult) {
    run_source(VecSource::new(evs), config, disorder)
}

fn run_source(
    source: impl Source<Item = Ev>,
    config: UvConfig,
    disorder: i64,
) -> (Vec<UvOutput>, Arc<UvCounters>, JobResult) {
    let env = StreamEnvironment::local(2);
    let out = CollectSink::new();
    let stream = env.from_source(
        source,
        WatermarkStrategy::bounded_out_of_orderness(
            Duration::from_millis(disorder.unsigned_abs()),
            |e: &Ev| e.ts,
        ),
    );
    let (rows, counters) = count(stream, config).unwrap();
    rows.sink(out.clone());
    let result = env.execute().unwrap();
    (out.take(), counters, result)
}

/// The final row of every key; fails if a key has two.
fn finals(out: &[UvOutput]) -> BTreeMap<Key, (u64, u64)> {
    let mut m = BTreeMap::new();
    for o in out {
        if let UvOutput::Row(r) = o {
            if r.is_final {
                let dims = r.dims.iter().map(|(f, v)| (f.to_string(), v.to_string()));
                let k = (dims.collect(), r.grain.to_string(), r.bucket.to_string());
                assert!(
                    m.insert(k, (r.uv, r.pv)).is_none(),
                    "two final rows for {r:?}"
                );
            }
        }
    }
    m
}

/// The answer, by brute force over every event.
fn brute(evs: &[Ev], config: &UvConfig) -> BTreeMap<Key, (u64, u64)> {
    let mut m: BTreeMap<Key, (BTreeSet<String>, u64)> = BTreeMap::new();
    for e in evs {
        for fields in &config.dimensions {
            let dims: BTreeMap<String, String> = fields
                .iter()
                .map(|f| (f.clone(), e.dimension(f).unwrap_or_default().to_string()))
                .collect();
            for g in &config.grains {
                let (start, _) = g.bucket(e.ts, &Zone::utc()).unwrap();
                let k = (
                    dims.clone(),
                    g.name().to_string(),
                    grain::format_time(start, &Zone::utc()),
                );
                let entry = m.entry(k).or_default();
                entry.0.insert(e.user.clone());
                entry.1 += 1;
            }
        }
    }
    m.into_iter()
        .map(|(k, (users, pv))| (k, (users.len() as u64, pv)))
        .collect()
}

#[test]
fn exact_counts_equal_brute_force_with_duplicates_disorder_and_skew() {
    let evs = events(60_000, 3, 2 * MINUTE, 7);
    let expected = brute(&evs, &config(Mode::Exact, HotKeys::Off));
    let mut records_in = Vec::new();
    for hot in [HotKeys::Off, HotKeys::PreAggregate] {
        let (out, counters, result) = run(evs.clone(), config(Mode::Exact, hot), 2 * MINUTE);
        assert_eq!(counters.late.load(Ordering::Relaxed), 0);
        let diff = differences(&finals(&out), &expected);
        assert!(
            diff.is_empty(),
            "{hot:?}: {} of {} keys differ: {diff:#?}",
            diff.len(),
            expected.len()
        );
        // Changelog rows came before the final ones and never exceed them.
        let updates = out
            .iter()
            .filter(|o| matches!(o, UvOutput::Row(r) if !r.is_final))
            .count();
        assert!(updates > 0, "{hot:?}: no update rows");
        records_in.push(result.operator("uv_count").unwrap().records_in);
    }
    // Pre-aggregation sends far fewer records over the exchange for the same result.
    assert!(
        records_in[1] * 3 < records_in[0],
        "records into the count: {records_in:?}"
    );
}

use std::sync::atomic::Ordering;

#[test]
fn hll_counts_stay_within_the_error_bound() {
    let evs = events(40_000, 2, MINUTE, 11);
    let precision = 12;
    let exact = brute(&evs, &config(Mode::Exact, HotKeys::Off));
    for hot in [HotKeys::Off, HotKeys::PreAggregate] {
        let (out, _, _) = run(evs.clone(), config(Mode::Hll { precision }, hot), MINUTE);
        let approx = finals(&out);
        assert_eq!(approx.len(), exact.len());
        let sigma = Sketch::standard_error(precision);
        for (k, (uv, pv)) in &exact {
            let (a_uv, a_pv) = approx[k];
            assert_eq!(a_pv, *pv);
            let err = (a_uv as f64 - *uv as f64).abs() / *uv as f64;
            assert!(err <= 4.0 * sigma, "{k:?}: {a_uv} vs {uv} ({hot:?})");
        }
    }
}

#[test]
fn late_events_are_counted_and_emitted_not_applied_and_cumulative_steps_emit() {
    let ev = |ts: i64, user: &str| Ev {
        ts,
        user: user.into(),
        platform: "app",
        cat: "c1".into(),
    };
    let source = ScriptedSource::new(vec![vec![
        // Step rows count exactly the events before the step's end, even when later
        // events arrived with them.
        Step::Emit(vec![
            ev(10 * MINUTE, "u-1"),
            ev(70 * MINUTE, "u-2"),
            ev(80 * MINUTE, "u-1"),
            ev(3 * HOUR, "u-3"),
        ]),
        // A watermark past the first hour's end (there is no lateness) goes out.
        Step::Idle(Duration::from_millis(500)),
        Step::Emit(vec![ev(20 * MINUTE, "u-4")]),
    ]]);
    let config = UvConfig {
        dimensions: vec![Vec::new()],
        grains: vec![
            Grain::hour(),
            Grain::day_cumulative(Duration::from_secs(3_600)),
        ],
        lateness: Duration::ZERO,
        update_interval: Duration::ZERO,
        ..UvConfig::default()
    };
    let (out, counters, _) = run_source(source, config, 0);
    // The late event is late for its hour only: the day is still open.
    assert_eq!(counters.late.load(Ordering::Relaxed), 1);
    let late: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            UvOutput::Late(l) => Some((l.grain.as_str(), l.bucket.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(late, vec![("hour", "1970-01-01T00:00:00Z")]);
    let f = finals(&out);
    let hour = |b: &str| f[&(BTreeMap::new(), "hour".to_string(), b.to_string())];
    assert_eq!(hour("1970-01-01T00:00:00Z"), (1, 1));
    assert_eq!(hour("1970-01-01T01:00:00Z"), (2, 2));
    let day = f[&(
        BTreeMap::new(),
        "day_cumulative".to_string(),
        "1970-01-01T00:00:00Z".to_string(),
    )];
    assert_eq!(day, (4, 5));
    // Step rows: one per step that had events, each with the running values.
    let steps: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            UvOutput::Row(r) if r.grain == "day_cumulative" && !r.is_final => {
                Some((r.until.clone().unwrap_or_default().to_string(), r.uv, r.pv))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            ("1970-01-01T01:00:00Z".to_string(), 1, 1),
            ("1970-01-01T02:00:00Z".to_string(), 2, 3),
            ("1970-01-01T04:00:00Z".to_string(), 4, 5),
        ]
    );
}

#[test]
fn configuration_errors_are_clear() {
    let bad = UvConfig {
        grains: vec![Grain::hour(), Grain::hour()],
        ..UvConfig::default()
    };
    assert!(bad.validate().unwrap_err().to_string().contains("twice"));
    let bad = UvConfig {
        mode: Mode::Hll { precision: 30 },
        ..UvConfig::default()
    };
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("precision"));
    assert_eq!(
        UvConfig::parse_dimensions("platform;platform,province;;category1, category2"),
        vec![
            vec!["platform".to_string()],
            vec!["platform".into(), "province".into()],
            vec![],
            vec!["category1".into(), "category2".into()],
        ]
    );
}

#[test]
fn final_sketches_roll_up_from_goods_to_brands() {
    // Goods are the categories c1..c50; a brand groups the goods with the same last digit.
    let evs = events(30_000, 1, MINUTE, 5);
    let brand = |cat: &str| format!("b{}", cat.chars().last().unwrap_or('0'));
    let config = UvConfig {
        dimensions: vec![vec!["category".into()]],
        grains: vec![Grain::day()],
        mode: Mode::Hll { precision: 14 },
        update_interval: Duration::ZERO,
        emit_sketches: true,
        ..UvConfig::default()
    };
    let (out, _, _) = run(evs.clone(), config, MINUTE);
    let sketches = out.into_iter().filter_map(|o| match o {
        UvOutput::Row(r) if r.is_final => {
            let sketch = Sketch::from_hex(r.sketch.as_deref().unwrap()).unwrap();
            Some((r.dims["category"].clone(), sketch))
        }
        _ => None,
    });
    let by_brand = distinct::roll_up(sketches, |cat| brand(cat)).unwrap();
    let mut exact: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &evs {
        exact
            .entry(brand(&e.cat))
            .or_default()
            .insert(e.user.clone());
    }
    assert_eq!(by_brand.len(), exact.len());
    let sigma = Sketch::standard_error(14);
    for (b, mut s) in by_brand {
        let (est, n) = (s.estimate() as f64, exact[&b].len() as f64);
        assert!(
            (est - n).abs() <= 4.0 * sigma * n + 1.0,
            "{b}: {est} vs {n}"
        );
    }
}

/// Up to ten keys on which two result maps differ, for assertion messages.
fn differences<K: std::fmt::Debug + Ord, V: std::fmt::Debug + PartialEq>(
    got: &BTreeMap<K, V>,
    want: &BTreeMap<K, V>,
) -> Vec<String> {
    let keys: BTreeSet<&K> = got.keys().chain(want.keys()).collect();
    keys.into_iter()
        .filter(|k| got.get(k) != want.get(k))
        .take(10)
        .map(|k| format!("{k:?}: got {:?}, want {:?}", got.get(k), want.get(k)))
        .collect()
}

#[test]
fn keys_hash_once_compare_by_fields_and_read_back_whole() {
    let values = DimValues::from_values(["app", "guangdong"]);
    let a = UvKey::new(2, values.clone(), 1, 1_763_712_000_000);
    let same = UvKey::new(
        2,
        DimValues::from_values(["app", "guangdong"]),
        1,
        a.bucket(),
    );
    assert_eq!(a, same);
    assert_eq!(
        ferroflow_state::stable_hash(&a),
        ferroflow_state::stable_hash(&same)
    );
    // Every field takes part.
    for other in [
        UvKey::new(3, values.clone(), 1, a.bucket()),
        UvKey::new(
            2,
            DimValues::from_values(["app", "zhejiang"]),
            1,
            a.bucket(),
        ),
        UvKey::new(2, values.clone(), 0, a.bucket()),
        UvKey::new(2, values.clone(), 1, a.bucket() + HOUR),
    ] {
        assert_ne!(a, other);
        assert_ne!(
            ferroflow_state::stable_hash(&a),
            ferroflow_state::stable_hash(&other)
        );
    }
    // The hash picks the key group, so it must never change between versions.
    assert_eq!(ferroflow_state::key_group_for_key(&a, 128).0, 62);
    // Serialized without the hash, read back with it.
    let bytes = postcard::to_allocvec(&a).unwrap();
    let back: UvKey = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, a);
    assert_eq!(
        ferroflow_state::stable_hash(&back),
        ferroflow_state::stable_hash(&a)
    );
    assert_eq!((back.set(), back.grain(), back.values().len()), (2, 1, 2));
    // Ordered by fields, not by hash.
    let mut keys = [
        UvKey::new(1, DimValues::from_values(["b"]), 0, 0),
        UvKey::new(1, DimValues::from_values(["a"]), 0, 5),
        UvKey::new(0, DimValues::new(), 1, 0),
    ];
    keys.sort();
    let order: Vec<_> = keys.iter().map(|k| (k.set(), k.bucket())).collect();
    assert_eq!(order, [(0, 0), (1, 5), (1, 0)]);
}

#[test]
fn a_buckets_state_entry_stays_small() {
    // Sizes of what every open bucket holds in its state entry: a larger one puts more
    // cache lines between the counting worker and its state.
    assert!(size_of::<UvKey>() <= 48, "{}", size_of::<UvKey>());
    assert!(size_of::<ExactSet>() <= 40, "{}", size_of::<ExactSet>());
    assert!(
        size_of::<count::Bucket>() <= 96,
        "{}",
        size_of::<count::Bucket>()
    );
}

/// The count's own batch path (`process_batch`, with its tables looked up once per
/// batch and prefetching) emits exactly what `process` emits record by record, and
/// leaves the same state and timers: in both modes, over several grains (a cumulative
/// one among them), with disorder, late inputs and scheduled updates.
#[test]
fn batches_count_as_records_one_by_one() {
    use ferroflow_core::testing::KeyedHarness;
    use ferroflow_state::MemoryBackend;
    let evs = events(6_000, 5, 40 * MINUTE, 11);
    for mode in [Mode::Exact, Mode::Hll { precision: 12 }] {
        let config = Arc::new(UvConfig {
            dimensions: UvConfig::parse_dimensions(";platform;platform,category"),
            grains: vec![
                Grain::hour(),
                Grain::day_cumulative(Duration::from_secs(1_200)),
                Grain::day(),
            ],
            mode,
            update_interval: Duration::from_millis(1_000),
            ..UvConfig::default()
        });
        let new = || {
            let op = UvCount::new(Arc::clone(&config), Arc::default()).unwrap();
            KeyedHarness::new(op, &MemoryBackend).unwrap()
        };
        let (mut one, mut batched) = (new(), new());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (i, chunk) in evs.chunks(500).enumerate() {
            let inputs: Vec<(UvKey, UvInput)> =
                chunk.iter().flat_map(|e| expand(&config, e)).collect();
            for (key, input) in inputs.clone() {
                a.extend(one.process(key, input).unwrap());
            }
            b.extend(batched.process_batch(inputs).unwrap());
            // The watermark trails the events, so later chunks bring late inputs.
            let watermark = chunk.iter().map(|e| e.ts).max().unwrap_or(0) - 20 * MINUTE;
            a.extend(one.advance_watermark(watermark).unwrap());
            b.extend(batched.advance_watermark(watermark).unwrap());
            if i % 3 == 2 {
                let now = i64::MAX / 2;
                a.extend(one.fire_processing_timers(now).unwrap());
                b.extend(batched.fire_processing_timers(now).unwrap());
            }
        }
        assert!(
            a.iter().any(|o| matches!(o, UvOutput::Late(_))),
            "late inputs"
        );
        assert!(a
            .iter()
            .any(|o| matches!(o, UvOutput::Row(r) if !r.is_final)));
        assert_eq!(one.pending_timers(), batched.pending_timers());
        assert_eq!(
            one.state_entries().unwrap(),
            batched.state_entries().unwrap()
        );
        a.extend(one.advance_watermark(i64::MAX).unwrap());
        b.extend(batched.advance_watermark(i64::MAX).unwrap());
        // Timers of one instant fire in no particular order.
        a.sort_by_key(|o| format!("{o:?}"));
        b.sort_by_key(|o| format!("{o:?}"));
        assert_eq!(a.len(), b.len());
        assert!(a == b, "{mode:?}: the batch path's output differs");
    }
}

/// Buckets in a zone with daylight saving time, on both change days: the local days of
/// Europe/Berlin are 23 and 25 hours long, and the local hours 02:00 on 2025-10-26 come
/// twice (at +02:00, then at +01:00). The expected buckets are worked out with jiff's
/// zone database directly, not with the grain code under test.
#[test]
fn berlin_buckets_follow_the_local_calendar_on_both_change_days() {
    use jiff::tz::TimeZone;
    let tz = TimeZone::get("Europe/Berlin").unwrap();
    let text = |z: &jiff::ZonedDateTime| {
        let t = z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
        t.strip_suffix("+00:00")
            .map_or(t.clone(), |t| format!("{t}Z"))
    };
    for first_day in [1_743_120_000_000_i64, 1_761_264_000_000] {
        // Three days from 2025-03-28T00:00Z and from 2025-10-24T00:00Z.
        let evs: Vec<Ev> = events(30_000, 72, 0, 5)
            .into_iter()
            .map(|e| Ev {
                ts: e.ts + first_day,
                ..e
            })
            .collect();
        let config = UvConfig {
            dimensions: UvConfig::parse_dimensions(";platform"),
            grains: vec![Grain::hour(), Grain::day()],
            lateness: Duration::ZERO,
            update_interval: Duration::ZERO,
            timezone: Zone::parse("Europe/Berlin").unwrap(),
            // The collection source reads all three days at once, far ahead of the
            // watermark: the TTL backstop's margin must cover that lead (see
            // `UvConfig::ttl_margin`).
            ttl_margin: Duration::from_secs(7 * 86_400),
            ..UvConfig::default()
        };
        let mut want: BTreeMap<Key, (BTreeSet<String>, u64)> = BTreeMap::new();
        for e in &evs {
            let local = jiff::Timestamp::from_millisecond(e.ts)
                .unwrap()
                .to_zoned_datetime(tz.clone());
            let hour = local
                .with()
                .minute(0)
                .second(0)
                .millisecond(0)
                .build()
                .unwrap();
            let day = local.start_of_day().unwrap();
            for dims in [
                BTreeMap::new(),
                BTreeMap::from([("platform".to_string(), e.platform.to_string())]),
            ] {
                for (grain, start) in [("hour", text(&hour)), ("day", text(&day))] {
                    let entry = want.entry((dims.clone(), grain.into(), start)).or_default();
                    entry.0.insert(e.user.clone());
                    entry.1 += 1;
                }
            }
        }
        let want: BTreeMap<Key, (u64, u64)> = want
            .into_iter()
            .map(|(k, (users, pv))| (k, (users.len() as u64, pv)))
            .collect();
        let (out, counters, _) = run(evs, config, 0);
        let got = finals(&out);
        let diff = differences(&got, &want);
        assert!(
            diff.is_empty(),
            "late {}: {diff:#?}",
            counters.late.load(Ordering::Relaxed)
        );
        // The whole-site day rows: four local days (the events start at midnight UTC,
        // 01:00 or 02:00 local), the change day among them.
        let site_days: Vec<&str> = got
            .keys()
            .filter(|(d, g, _)| d.is_empty() && g == "day")
            .map(|(_, _, b)| b.as_str())
            .collect();
        assert_eq!(site_days.len(), 4, "{site_days:?}");
        let site_hours = got
            .keys()
            .filter(|(d, g, _)| d.is_empty() && g == "hour")
            .count();
        assert_eq!(site_hours, 72, "72 hours of events are 72 hour buckets");
    }
}
