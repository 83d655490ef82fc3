//! Keyed UV (distinct users) and PV (page views) over many dimensions and time grains.
//!
//! One click event expands into one count per configured dimension set × grain (the
//! whole site, platform, platform + province, ...; hour, day, day-to-date, a promotion
//! period). Each count is keyed by (set, values, grain, bucket) and kept in keyed state:
//!
//! - **Exact** mode keeps the users of a bucket as encoded ids, in a small hash table
//!   while there are few and in a Roaring bitmap beyond (see [`distinct`] for the reversible
//!   encoding); **HLL** mode keeps a HyperLogLog++ sketch, exact while the bucket is
//!   small and mergeable so counts can be rolled up later
//!   ([`distinct::roll_up`]).
//! - **Emission**: a changelog row ([`UvRow`]) for each changed bucket every
//!   `update_interval` of processing time, a row at the end of every step of a
//!   cumulative grain, and a `final` row when the watermark passes the bucket's end plus
//!   the allowed lateness. Events for a closed bucket are late: they are counted and
//!   emitted as [`LateRecord`]s, never applied.
//! - **Cleanup**: the close timer removes the bucket's state; a TTL in event time (the
//!   grain's length plus the lateness plus [`UvConfig::ttl_margin`]) removes anything
//!   a timer does not, on either state backend.
//! - **Hot keys**: with [`HotKeys::PreAggregate`] each micro-batch is combined per key
//!   before the exchange (distinct users, or a partial sketch, and a page-view sum), so a
//!   whole-site key carrying half the traffic crosses the exchange once per batch instead
//!   of once per event.
//!
//! Results are exactly-once across restores: buckets and timers are keyed state, and the
//! rows go to whatever two-phase sink the job uses.

pub mod count;
pub mod distinct;
mod expand;
pub mod grain;
mod key;
mod sketch;
mod small_set;
mod values;

pub use count::{
    DimValues, Dims, LateRecord, SmolStr, Users, UvCount, UvCounters, UvInput, UvKey, UvOutput,
    UvRow,
};
pub use distinct::{ExactSet, Sketch, UserId};
pub use expand::{expand, expand_into};
pub use grain::Grain;

use ferroflow_core::{DataStream, Error, Result, Timestamp, Zone};
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// How distinct users are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Mode {
    /// Every user id is kept: exact counts.
    Exact,
    /// HyperLogLog++ with `2^precision` registers (4..=18): relative standard error
    /// `1.04 / sqrt(2^precision)`, at most `0.75 × 2^precision` bytes per bucket. A
    /// bucket's first 256 users (fewer below precision 13) are counted exactly (integer
    /// ids as they are), which is both faster and closer (see [`Sketch`]).
    Hll {
        /// Precision, 4 to 18. Default 14 (0.81% error, 12 KiB at most).
        precision: u8,
    },
}

/// How skewed keys are handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HotKeys {
    /// Every expanded event crosses the exchange.
    Off,
    /// Each micro-batch is combined per key before the exchange. Default.
    #[default]
    PreAggregate,
}

/// Settings of a UV count. Unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UvConfig {
    /// Dimension sets: each a list of event fields; an empty set is the whole site.
    /// Default: the whole site only.
    pub dimensions: Vec<Vec<String>>,
    /// Time grains. Default: hour and day.
    pub grains: Vec<Grain>,
    /// Exact or approximate. Default: exact.
    pub mode: Mode,
    /// How long after a bucket's end events are still applied (`1m` in files).
    /// Default: 0 s.
    #[serde(with = "humantime_serde")]
    pub lateness: Duration,
    /// Processing time between changelog updates of a changed bucket; `0s` emits only
    /// final rows (and cumulative steps). Default: 1 s.
    #[serde(with = "humantime_serde")]
    pub update_interval: Duration,
    /// Time zone whose local time buckets align to and rows are written in: an IANA name
    /// (`Asia/Shanghai`, `Europe/Berlin`, with daylight saving time) or an offset
    /// (`+08:00`). Default: `UTC`.
    pub timezone: Zone,
    /// Hot-key handling. Default: pre-aggregation.
    pub hot_keys: HotKeys,
    /// In HLL mode, final rows carry the bucket's sketch as hex text, so counts can be
    /// rolled up later ([`distinct::roll_up`]). Default: false.
    pub emit_sketches: bool,
    /// Bucket state also expires by an event-time TTL of the grain's length, plus the
    /// lateness, plus this margin, a backstop behind the close timer. A value's TTL runs
    /// from the watermark of its last write, so the margin must exceed how far events can
    /// run ahead of the watermark (a backlog read at full speed between two watermarks).
    /// Default: one day.
    #[serde(with = "humantime_serde")]
    pub ttl_margin: Duration,
}

impl Default for UvConfig {
    fn default() -> Self {
        Self {
            dimensions: vec![Vec::new()],
            grains: vec![Grain::hour(), Grain::day()],
            mode: Mode::Exact,
            lateness: Duration::ZERO,
            update_interval: Duration::from_secs(1),
            timezone: Zone::utc(),
            hot_keys: HotKeys::default(),
            emit_sketches: false,
            ttl_margin: Duration::from_secs(86_400),
        }
    }
}

impl UvConfig {
    /// Parses dimension sets written as `platform;platform,province;category1,category2`
    /// (sets separated by `;`, fields by `,`, an empty set is the whole site).
    pub fn parse_dimensions(text: &str) -> Vec<Vec<String>> {
        text.split(';')
            .map(|set| {
                set.split(',')
                    .map(str::trim)
                    .filter(|f| !f.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .collect()
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.dimensions.is_empty() || self.grains.is_empty() {
            return Err(Error::Config(
                "a UV count needs at least one dimension set and one grain".into(),
            ));
        }
        if self.dimensions.len() > usize::from(u16::MAX)
            || self.grains.len() > usize::from(u16::MAX)
        {
            return Err(Error::Config("too many dimension sets or grains".into()));
        }
        let mut names = std::collections::HashSet::new();
        for g in &self.grains {
            g.validate()?;
            if !names.insert(g.name()) {
                return Err(Error::Config(format!(
                    "grain `{}` is configured twice",
                    g.name()
                )));
            }
        }

        if let Mode::Hll { precision } = self.mode {
            Sketch::new(precision)?;
        }
        Ok(())
    }
}

/// An event a UV count can read.
pub trait UvEvent: Send + 'static {
    /// Event time, epoch milliseconds.
    fn event_time(&self) -> Timestamp;
    /// The user, encoded.
    fn user(&self) -> UserId;
    /// The value of a dimension field; `None` leaves the event out of every dimension
    /// set that names the field.
    fn dimension(&self, field: &str) -> Option<&str>;
}

/// Counts UV and PV of `events` as `config` says. Returns the operator's output and its
/// counters.
///
/// ```
/// use ferroflow_core::{sinks::CollectSink, sources::VecSource, StreamEnvironment, WatermarkStrategy};
/// use ferroflow_operators::uv::{self, UserId, UvConfig, UvEvent, UvOutput};
///
/// struct Click { ts: i64, user: &'static str, platform: &'static str }
/// impl UvEvent for Click {
///     fn event_time(&self) -> i64 { self.ts }
///     fn user(&self) -> UserId { UserId::encode(self.user) }
///     fn dimension(&self, field: &str) -> Option<&str> {
///         (field == "platform").then_some(self.platform)
///     }
/// }
///
/// # fn main() -> ferroflow_core::Result<()> {
/// let env = StreamEnvironment::local(2);
/// let out = CollectSink::new();
/// let clicks = vec![
///     Click { ts: 1_000, user: "u-1", platform: "app" },
///     Click { ts: 2_000, user: "u-1", platform: "app" },
///     Click { ts: 3_000, user: "u-2", platform: "web" },
/// ];
/// let config = UvConfig {
///     dimensions: UvConfig::parse_dimensions(";platform"),
///     ..UvConfig::default()
/// };
/// let events = env.from_source(
///     VecSource::new(clicks),
///     WatermarkStrategy::monotonous(|c: &Click| c.ts),
/// );
/// let (rows, _) = uv::count(events, config)?;
/// rows.sink(out.clone());
/// env.execute()?;
/// let finals: Vec<_> = out.take().into_iter().filter_map(|o| match o {
///     UvOutput::Row(r) if r.is_final && r.grain == "hour" => Some((r.dims.len(), r.uv, r.pv)),
///     _ => None,
/// }).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
/// assert_eq!(finals, vec![(0, 2, 3), (1, 1, 1), (1, 1, 2)]);
/// # Ok(()) }
/// ```
pub fn count<E: UvEvent>(
    events: DataStream<E>,
    config: UvConfig,
) -> Result<(DataStream<UvOutput>, Arc<UvCounters>)> {
    config.validate()?;
    let config = Arc::new(config);
    let counters = Arc::new(UvCounters::default());
    let expand_config = Arc::clone(&config);
    // Inputs per event, at most: one per dimension set and grain.
    let per_event = config.dimensions.len() * config.grains.len();
    let inputs = match config.hot_keys {
        HotKeys::Off => events.map_batch(move |batch: Vec<E>| {
            let mut out = Vec::with_capacity(batch.len() * per_event);
            let mut expander = expand::Expander::new(&expand_config);
            batch.iter().for_each(|e| expander.expand_into(e, &mut out));
            out
        }),
        HotKeys::PreAggregate => events.map_batch(move |batch: Vec<E>| {
            let mut expander = expand::Expander::new(&expand_config);
            combine(
                &expand_config,
                batch.iter().flat_map(|e| {
                    let mut out = Vec::with_capacity(per_event);
                    expander.expand_into(e, &mut out);
                    out
                }),
            )
        }),
    };
    let op = UvCount::new(Arc::clone(&config), Arc::clone(&counters))?;
    let out = inputs
        .name("uv_expand")
        .key_by_pair()
        .process_batched(op)
        .name("uv_count");
    Ok((out, counters))
}

/// Combines inputs per key (and, for cumulative grains, per step, so that step rows stay
/// exact): distinct users (exact) or one partial sketch (HLL), page views summed, latest
/// event time kept.
pub fn combine(
    config: &UvConfig,
    inputs: impl Iterator<Item = (UvKey, UvInput)>,
) -> Vec<(UvKey, UvInput)> {
    type Group = (UvKey, Timestamp);
    let mut by_key: HashMap<Group, (UvInput, hashbrown::HashSet<UserId>)> = HashMap::new();
    let mut out = Vec::new();
    for (key, i) in inputs {
        let user = match i.users {
            Users::One(user) => user,
            // Already combined: passed on as it is.
            users => {
                out.push((key, UvInput { users, ..i }));
                continue;
            }
        };
        let step = config
            .grains
            .get(usize::from(key.grain))
            .and_then(|g| g.step_end(i.ts, key.bucket))
            .unwrap_or(0);
        let group = (key, step);
        match by_key.get_mut(&group) {
            Some((acc, users)) => {
                acc.pv += i.pv;
                acc.ts = acc.ts.max(i.ts);
                users.insert(user);
            }
            None => {
                let mut users = hashbrown::HashSet::new();
                users.insert(user);
                let acc = UvInput {
                    users: Users::Many(Vec::new()),
                    pv: i.pv,
                    ts: i.ts,
                };
                by_key.insert(group, (acc, users));
            }
        }
    }
    out.extend(by_key.into_iter().map(|((key, _), (mut acc, users))| {
        acc.users = match config.mode {
            Mode::Hll { precision } if users.len() > 1 => match Sketch::new(precision) {
                Ok(mut s) => {
                    users.iter().for_each(|u| s.insert(u));
                    Users::Sketch(Box::new(s))
                }
                Err(_) => Users::Many(users.into_iter().collect()),
            },
            _ if users.len() == 1 => match users.into_iter().next() {
                Some(u) => Users::One(u),
                None => Users::Many(Vec::new()),
            },
            _ => Users::Many(users.into_iter().collect()),
        };
        (key, acc)
    }));
    out
}

#[cfg(test)]
mod tests;
