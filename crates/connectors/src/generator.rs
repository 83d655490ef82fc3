//! A deterministic, seeded event generator.
//!
//! Event `i` (of `events`) is a pure function of `i` and the configuration, so any split
//! can generate its share independently, any run reproduces the same stream, and results
//! can be checked against known checksums. With the defaults (`seed` 42, 1M users, 10K
//! items, 100 categories, 24 h of event time, no skew, no disorder) the stream is the one
//! used by the Apache Flink comparison benchmarks in `BENCHMARKS.md`:
//!
//! ```text
//! GOLDEN = 0x9E3779B97F4A7C15
//! mix(z) = SplitMix64 finaliser
//! u = mix(seed + (3i+1)·GOLDEN)   v = mix(seed + (3i+2)·GOLDEN)     (wrapping u64)
//! user_id = u % users   item_id = v % items   category = item_id % categories
//! ts = start_ts + ⌊i · span (ms) / events⌋   (computed in f64, as the reference does)
//! ```
//!
//! Options change the stream: `item_skew > 0` draws items from a Zipf distribution
//! (item 0 most frequent; `rand_distr`'s sampler, drawing from a SplitMix64 seeded with
//! `v`, so no table of the items is kept); a `max_disorder` above zero moves each
//! timestamp back by up to that much (`mix(seed + (3i+3)·GOLDEN) % (max_disorder in ms +
//! 1)`); `rate_per_sec` throttles.

use ferroflow_core::{
    duration_millis, now_millis, Error, Result, Source, SplitPosition, SplitReader, SplitStatus,
    Timestamp,
};
use rand_distr::{Distribution, Zipf};
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::SplitMix64;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finaliser.
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A generated click / page-view event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClickEvent {
    /// Position in the stream (0-based).
    pub seq: u64,
    /// Event time, epoch milliseconds.
    pub ts: Timestamp,
    /// The visitor.
    pub user_id: u64,
    /// The item viewed.
    pub item_id: u64,
    /// The item's category (`item_id % categories`).
    pub category: u64,
}

/// Where event timestamps come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampMode {
    /// `start_ts + i · span / events`: deterministic, spread evenly over `span`.
    Spread,
    /// The wall clock when the event is generated (for live, throttled runs).
    WallClock,
}

/// Generator settings. Every field has a default; unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Number of events. Default: 10,000,000.
    pub events: u64,
    /// Seed. Default: 42.
    pub seed: u64,
    /// Distinct users (the key cardinality of UV). Default: 1,000,000.
    pub users: u64,
    /// Distinct items. Default: 10,000.
    pub items: u64,
    /// Distinct categories. Default: 100.
    pub categories: u64,
    /// Event time of the first event, epoch ms. Default: 1,699,999,200,000
    /// (2023-11-14T22:00:00Z).
    pub start_ts: Timestamp,
    /// Event time spanned by the whole stream (`24h` in files). Default: 24 h.
    #[serde(with = "humantime_serde")]
    pub span: Duration,
    /// Timestamp source. Default: `spread`.
    pub timestamps: TimestampMode,
    /// Zipf exponent of the item distribution; 0 is uniform. Default: 0.
    pub item_skew: f64,
    /// Largest amount an event's timestamp is moved back (out-of-orderness).
    /// Default: 0 s.
    #[serde(with = "humantime_serde")]
    pub max_disorder: Duration,
    /// Number of splits; 0 means one per worker. Default: 0.
    pub splits: usize,
    /// Events per second over all splits; 0 means unthrottled. Default: 0.
    pub rate_per_sec: u64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            events: 10_000_000,
            seed: 42,
            users: 1_000_000,
            items: 10_000,
            categories: 100,
            start_ts: 1_699_999_200_000,
            span: Duration::from_secs(86_400),
            timestamps: TimestampMode::Spread,
            item_skew: 0.0,
            max_disorder: Duration::ZERO,
            splits: 0,
            rate_per_sec: 0,
        }
    }
}

impl GeneratorConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::Config`] naming the bad field.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("users", self.users),
            ("items", self.items),
            ("categories", self.categories),
        ] {
            if v == 0 {
                return Err(Error::Config(format!(
                    "generator.{name} must be at least 1"
                )));
            }
        }
        if !(self.item_skew >= 0.0 && self.item_skew.is_finite()) {
            return Err(Error::Config(
                "generator.item_skew must be a finite number >= 0".into(),
            ));
        }
        if self.max_disorder.as_millis() >= i64::MAX as u128
            || self.span.as_millis() >= i64::MAX as u128
        {
            return Err(Error::Config(
                "generator.max_disorder and span must be shorter than i64::MAX ms".into(),
            ));
        }
        Ok(())
    }

    /// Sets `events`.
    #[must_use]
    pub fn with_events(mut self, events: u64) -> Self {
        self.events = events;
        self
    }

    /// Sets `users`.
    #[must_use]
    pub fn with_users(mut self, users: u64) -> Self {
        self.users = users;
        self
    }

    /// Sets `items`.
    #[must_use]
    pub fn with_items(mut self, items: u64) -> Self {
        self.items = items;
        self
    }

    /// Sets `item_skew`.
    #[must_use]
    pub fn with_item_skew(mut self, exponent: f64) -> Self {
        self.item_skew = exponent;
        self
    }

    /// Sets `max_disorder`.
    #[must_use]
    pub fn with_max_disorder(mut self, disorder: Duration) -> Self {
        self.max_disorder = disorder;
        self
    }

    /// Sets `span`: the event time covered by the whole stream.
    #[must_use]
    pub fn with_span(mut self, span: Duration) -> Self {
        self.span = span;
        self
    }

    /// Sets `splits`.
    #[must_use]
    pub fn with_splits(mut self, splits: usize) -> Self {
        self.splits = splits;
        self
    }

    /// Sets `rate_per_sec`.
    #[must_use]
    pub fn with_rate(mut self, events_per_sec: u64) -> Self {
        self.rate_per_sec = events_per_sec;
        self
    }

    /// Sets `timestamps`.
    #[must_use]
    pub fn with_timestamps(mut self, mode: TimestampMode) -> Self {
        self.timestamps = mode;
        self
    }
}

/// Computes events from their index.
#[derive(Debug, Clone)]
struct EventFn {
    config: GeneratorConfig,
    /// The Zipf distribution of item ranks (1 = most frequent), when skewed.
    zipf: Option<Zipf<f64>>,
    /// The divisors of the formula's remainders: users, items, categories and the
    /// disorder's range (each at least 1 once the configuration is valid).
    users: u64,
    items: u64,
    categories: u64,
    disorder: u64,
}

impl EventFn {
    fn new(config: GeneratorConfig) -> Self {
        // Valid once the configuration is: at least one item, an exponent above 0.
        let zipf = (config.item_skew > 0.0)
            .then(|| Zipf::new(config.items as f64, config.item_skew).ok())
            .flatten();
        Self {
            users: config.users,
            items: config.items,
            categories: config.categories,
            disorder: duration_millis(config.max_disorder)
                .unsigned_abs()
                .wrapping_add(1),
            config,
            zipf,
        }
    }

    #[inline]
    fn event(&self, i: u64) -> ClickEvent {
        let c = &self.config;
        let u = mix(c.seed.wrapping_add((3 * i + 1).wrapping_mul(GOLDEN)));
        let v = mix(c.seed.wrapping_add((3 * i + 2).wrapping_mul(GOLDEN)));
        let item_id = match &self.zipf {
            None => rem(v, self.items),
            Some(zipf) => {
                let rank = zipf.sample(&mut SplitMix64::seed_from_u64(v)) as u64;
                rank.clamp(1, self.items) - 1
            }
        };
        let mut ts = match c.timestamps {
            TimestampMode::Spread => {
                c.start_ts
                    + (i as f64 * duration_millis(c.span) as f64 / c.events.max(1) as f64) as i64
            }
            TimestampMode::WallClock => now_millis(),
        };
        if !c.max_disorder.is_zero() {
            let d = mix(c.seed.wrapping_add((3 * i + 3).wrapping_mul(GOLDEN)));
            ts -= rem(d, self.disorder) as i64;
        }
        ClickEvent {
            seq: i,
            ts,
            user_id: rem(u, self.users),
            item_id,
            category: rem(item_id, self.categories),
        }
    }
}

/// A bounded, splittable source of [`ClickEvent`]s.
///
/// ```
/// use ferroflow_connectors::{GeneratorConfig, GeneratorSource};
/// use ferroflow_core::{sinks::CollectSink, StreamEnvironment, WatermarkStrategy};
///
/// # fn main() -> ferroflow_core::Result<()> {
/// let env = StreamEnvironment::local(2);
/// let out = CollectSink::new();
/// let source = GeneratorSource::new(GeneratorConfig::default().with_events(1000))?;
/// env.from_source(source, WatermarkStrategy::monotonous(|e: &ferroflow_connectors::ClickEvent| e.ts))
///     .sink(out.clone());
/// env.execute()?;
/// assert_eq!(out.len(), 1000);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct GeneratorSource {
    events: EventFn,
}

impl GeneratorSource {
    /// A source for `config`.
    ///
    /// # Errors
    /// When the configuration is invalid.
    pub fn new(config: GeneratorConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            events: EventFn::new(config),
        })
    }

    /// Event `i` of the stream, as the source would produce it.
    pub fn event(&self, i: u64) -> ClickEvent {
        self.events.event(i)
    }

    /// The configuration.
    pub fn config(&self) -> &GeneratorConfig {
        &self.events.config
    }
}

impl Source for GeneratorSource {
    type Item = ClickEvent;

    fn name(&self) -> String {
        "generator".into()
    }

    fn create_splits(
        &mut self,
        parallelism: usize,
    ) -> Result<Vec<Box<dyn SplitReader<ClickEvent>>>> {
        let c = &self.events.config;
        let n = if c.splits == 0 {
            parallelism.max(1)
        } else {
            c.splits
        };
        let total = c.events;
        let per_split_rate = if c.rate_per_sec == 0 {
            0.0
        } else {
            c.rate_per_sec as f64 / n as f64
        };
        Ok((0..n as u64)
            .map(|s| {
                let start = (u128::from(total) * u128::from(s) / n as u128) as u64;
                let end = (u128::from(total) * u128::from(s + 1) / n as u128) as u64;
                Box::new(GeneratorSplit {
                    id: format!("generator-{s}/{n}"),
                    events: self.events.clone(),
                    next: start,
                    start,
                    end,
                    rate: per_split_rate,
                    started: None,
                }) as Box<dyn SplitReader<ClickEvent>>
            })
            .collect())
    }
}

struct GeneratorSplit {
    id: String,
    events: EventFn,
    next: u64,
    start: u64,
    end: u64,
    rate: f64,
    started: Option<Instant>,
}

impl SplitReader<ClickEvent> for GeneratorSplit {
    fn split_id(&self) -> String {
        self.id.clone()
    }

    fn poll(&mut self, max: usize, out: &mut Vec<ClickEvent>) -> Result<SplitStatus> {
        let mut until = self.end.min(self.next.saturating_add(max as u64));
        if self.rate > 0.0 {
            let started = *self.started.get_or_insert_with(Instant::now);
            let allowed = self.start + (started.elapsed().as_secs_f64() * self.rate) as u64;
            until = until.min(allowed.max(self.next));
            if until == self.next && self.next < self.end {
                return Ok(SplitStatus::Idle);
            }
        }
        out.extend((self.next..until).map(|i| self.events.event(i)));
        self.next = until;
        Ok(if self.next >= self.end {
            SplitStatus::Finished
        } else {
            SplitStatus::More
        })
    }

    fn position(&self) -> Option<SplitPosition> {
        Some(serde_json::json!({ "next": self.next }))
    }

    fn seek(&mut self, position: &SplitPosition) -> Result<()> {
        let next = position["next"]
            .as_u64()
            .filter(|n| (self.start..=self.end).contains(n));
        let next = next.ok_or_else(|| {
            Error::Checkpoint(format!(
                "position {position} is outside split {} [{}, {})",
                self.id, self.start, self.end
            ))
        })?;
        self.next = next;
        // A throttled split resumes at its rate from here.
        self.start = next;
        Ok(())
    }
}

/// `n % d`, and 0 for a divisor of 0 (which a valid configuration never has).
#[inline]
fn rem(n: u64, d: u64) -> u64 {
    n.checked_rem(d).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(config: GeneratorConfig, parallelism: usize) -> Vec<ClickEvent> {
        let mut src = GeneratorSource::new(config).unwrap();
        let mut out = Vec::new();
        for mut split in src.create_splits(parallelism).unwrap() {
            while split.poll(100, &mut out).unwrap() != SplitStatus::Finished {}
        }
        out
    }

    #[test]
    fn splits_partition_the_stream_exactly() {
        let c = GeneratorConfig::default().with_events(10_001);
        let one = all(c.clone(), 1);
        let mut three = all(c, 3);
        three.sort_by_key(|e| e.seq);
        assert_eq!(one, three);
        assert_eq!(one.len(), 10_001);
    }

    #[test]
    fn events_match_the_reference_formula() {
        // (i, ts, user_id, item_id, category) of the default 20M-event stream, computed
        // independently (arbitrary-precision integers) from the formula in the module docs.
        let expected = [
            (0, 1_699_999_200_000, 275_413, 2291, 91),
            (1, 1_699_999_200_004, 255_764, 3250, 50),
            (12_345, 1_699_999_253_330, 970_167, 5635, 35),
            (19_999_999, 1_700_085_599_995, 823_164, 4070, 70),
        ];
        let src = GeneratorSource::new(GeneratorConfig::default().with_events(20_000_000)).unwrap();
        for (i, ts, user, item, cat) in expected {
            let e = src.event(i);
            assert_eq!(
                (e.seq, e.ts, e.user_id, e.item_id, e.category),
                (i, ts, user, item, cat)
            );
        }
    }

    /// The generator follows the formula for sizes other than the defaults too, up to
    /// the largest.
    #[test]
    fn events_follow_the_formula_for_any_sizes() {
        for (users, items, categories, disorder) in [
            (1_000_000, 10_000, 100, 0),
            (7, 3, 1, 999),
            (u64::MAX, 1 << 40, (1 << 40) + 1, 1),
            (1, 1, 1, 86_400_000),
        ] {
            let c = GeneratorConfig {
                users,
                items,
                categories,
                max_disorder: Duration::from_millis(disorder),
                ..GeneratorConfig::default().with_events(100_000)
            };
            let src = GeneratorSource::new(c.clone()).unwrap();
            for i in (0..100_000u64).step_by(97) {
                let u = mix(c.seed.wrapping_add((3 * i + 1).wrapping_mul(GOLDEN)));
                let v = mix(c.seed.wrapping_add((3 * i + 2).wrapping_mul(GOLDEN)));
                let d = mix(c.seed.wrapping_add((3 * i + 3).wrapping_mul(GOLDEN)));
                let e = src.event(i);
                assert_eq!(e.user_id, u % users);
                assert_eq!(e.item_id, v % items);
                assert_eq!(e.category, e.item_id % categories);
                let spread = c.start_ts
                    + (i as f64 * duration_millis(c.span) as f64 / c.events as f64) as i64;
                let back = if disorder > 0 { d % (disorder + 1) } else { 0 };
                assert_eq!(e.ts, spread - back as i64);
            }
        }
    }

    #[test]
    fn skew_and_disorder() {
        let c = GeneratorConfig::default()
            .with_events(50_000)
            .with_items(1000)
            .with_item_skew(1.2)
            .with_max_disorder(Duration::from_secs(5));
        let events = all(c, 1);
        let hot = events.iter().filter(|e| e.item_id == 0).count();
        assert!(hot > events.len() / 10, "item 0 should dominate, got {hot}");
        let mut counts = vec![0usize; 1000];
        for e in &events {
            counts[e.item_id as usize] += 1;
        }
        // Item k is drawn about (k + 1)^-1.2 as often as item 0.
        for (k, expected) in [(1, 0.435), (3, 0.189), (9, 0.063)] {
            let ratio = counts[k] as f64 / hot as f64;
            assert!(
                (ratio - expected).abs() < expected * 0.15,
                "item {k}: {ratio}"
            );
        }
        assert!(
            counts[500..].iter().sum::<usize>() > 0,
            "the tail is drawn too"
        );
        let spread = GeneratorConfig::default().with_events(50_000);
        let base = all(spread, 1);
        let mut late = 0;
        for (a, b) in events.iter().zip(&base) {
            assert!(b.ts - a.ts >= 0 && b.ts - a.ts <= 5000);
            late += usize::from(a.ts != b.ts);
        }
        assert!(late > 40_000);
    }

    #[test]
    fn throttled_split_reports_idle_instead_of_blocking() {
        let c = GeneratorConfig::default()
            .with_events(1_000_000)
            .with_rate(1000);
        let mut src = GeneratorSource::new(c).unwrap();
        let mut split = src.create_splits(1).unwrap().pop().unwrap();
        let mut out = Vec::new();
        let t = Instant::now();
        let mut idle = 0;
        while t.elapsed() < Duration::from_millis(50) {
            if split.poll(1000, &mut out).unwrap() == SplitStatus::Idle {
                idle += 1;
            }
        }
        assert!(idle > 0);
        assert!(out.len() < 200, "rate 1000/s for 50 ms, got {}", out.len());
    }

    #[test]
    fn invalid_config_is_rejected() {
        assert!(GeneratorSource::new(GeneratorConfig::default().with_users(0)).is_err());
        assert!(GeneratorSource::new(GeneratorConfig::default().with_item_skew(-1.0)).is_err());
    }
}
