//! The keyed operator that counts distinct users and page views per (dimensions, grain,
//! bucket), emits a changelog and closes buckets.

use super::distinct::{ExactSet, Sketch, UserId};
use super::grain::{time_text, BucketEnd};
use super::{Mode, UvConfig};
use ferroflow_core::{
    duration_millis, now_millis, BatchContext, Collector, Error, KeyedBatchFunction, KeyedContext,
    KeyedProcessFunction, OpenContext, Result, TimeDomain, Timer, TimerService, Timestamp,
};

/// How many inputs ahead of the one being counted its bucket's state entry is prefetched.
const PREFETCH_STATE_AHEAD: usize = 8;
/// How many inputs ahead the slot of the bucket's user table is prefetched (the entry
/// asked for at [`PREFETCH_STATE_AHEAD`] has arrived by then).
const PREFETCH_DATA_AHEAD: usize = 4;
use ferroflow_state::{StateDescriptor, StateTtl, ValueState, ValueView};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use smol_str::SmolStr;

pub use super::key::UvKey;
pub use super::values::DimValues;

/// Users seen for one key: one event's, or a batch's merged before the exchange.
#[derive(Debug, Clone)]
pub enum Users {
    /// One user.
    One(UserId),
    /// Several distinct users (exact pre-aggregation).
    Many(Vec<UserId>),
    /// A partial sketch (approximate pre-aggregation).
    Sketch(Box<Sketch>),
}

/// Input of the counting operator: users and page views of one key, which travels
/// beside it (`(UvKey, UvInput)` pairs, keyed with `key_by_pair`).
#[derive(Debug, Clone)]
pub struct UvInput {
    /// Its users.
    pub users: Users,
    /// Page views (events).
    pub pv: u64,
    /// Latest event time among them.
    pub ts: Timestamp,
}

/// Dimension field -> value, as rows and late records carry them.
pub type Dims = BTreeMap<SmolStr, SmolStr>;

/// One changelog row: the current (or, with `final`, the last) values of a bucket.
///
/// Its text fields are [`SmolStr`]s, which hold up to 23 bytes without allocating (field
/// names, most values, grain names and UTC times): a row is built with one allocation,
/// the map's node, where `String`s took five.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UvRow {
    /// Dimension field -> value; empty for the whole site.
    pub dims: Dims,
    /// The grain's name.
    pub grain: SmolStr,
    /// Bucket start, RFC 3339 in the configured zone.
    pub bucket: SmolStr,
    /// For cumulative grains: the end of the step these values cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<SmolStr>,
    /// Distinct users.
    pub uv: u64,
    /// Page views.
    pub pv: u64,
    /// True on the row written when the bucket closes; no row follows it.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// With `emit_sketches` in HLL mode, on final rows: the bucket's sketch
    /// ([`Sketch::to_hex`]), for rolling up later ([`super::distinct::roll_up`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sketch: Option<String>,
}

/// An event that arrived after its bucket had closed (bucket end + allowed lateness).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateRecord {
    /// Dimension field -> value.
    pub dims: Dims,
    /// The grain's name.
    pub grain: SmolStr,
    /// The closed bucket.
    pub bucket: SmolStr,
    /// Event time of the (latest) late event.
    pub ts: Timestamp,
    /// Late events it stands for.
    pub events: u64,
}

/// Output of the counting operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UvOutput {
    /// A changelog row.
    Row(UvRow),
    /// A late event.
    Late(LateRecord),
}

/// The state of one key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Bucket {
    users: Distinct,
    pv: u64,
    /// An update is scheduled.
    scheduled: bool,
    /// Cumulative grains: users and page views of steps the watermark has not passed
    /// yet, by step end (ascending). They join the totals when their step row goes out,
    /// so a step row counts exactly the events before its end.
    #[serde(default)]
    steps: Vec<(Timestamp, Distinct, u64)>,
}

impl Bucket {
    /// Adds to the step ending at `step_end` (pending), or to the totals.
    fn add(
        &mut self,
        step_end: Option<Timestamp>,
        users: Users,
        pv: u64,
        empty: &Distinct,
    ) -> Result<()> {
        let Some(end) = step_end else {
            self.pv += pv;
            return self.users.add(users);
        };
        let i = match self.steps.binary_search_by_key(&end, |s| s.0) {
            Ok(i) => i,
            Err(i) => {
                self.steps.insert(i, (end, empty.clone(), 0));
                i
            }
        };
        let step = &mut self.steps[i];
        step.2 += pv;
        step.1.add(users)
    }

    /// Moves the steps ending at or before `until` into the totals.
    fn settle(&mut self, until: Timestamp) -> Result<()> {
        let n = self.steps.partition_point(|s| s.0 <= until);
        for (_, users, pv) in self.steps.drain(..n) {
            self.users.merge(&users)?;
            self.pv += pv;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Distinct {
    Exact(ExactSet),
    Hll(Sketch),
}

impl Distinct {
    fn new(mode: Mode) -> Result<Self> {
        Ok(match mode {
            Mode::Exact => Self::Exact(ExactSet::default()),
            Mode::Hll { precision } => Self::Hll(Sketch::new(precision)?),
        })
    }

    /// Adds `users`, taking them: each kind is dropped where it is matched.
    fn add(&mut self, users: Users) -> Result<()> {
        match (self, users) {
            (Self::Exact(s), Users::One(u)) => {
                s.insert(&u);
            }
            (Self::Exact(s), Users::Many(us)) => us.iter().for_each(|u| {
                s.insert(u);
            }),
            (Self::Hll(s), Users::One(u)) => s.insert(&u),
            (Self::Hll(s), Users::Many(us)) => us.iter().for_each(|u| s.insert(u)),
            (Self::Hll(s), Users::Sketch(other)) => s.merge(&other)?,
            (Self::Exact(_), Users::Sketch(_)) => return Err(Error::Internal(
                "a sketch reached an exact count: the modes of pre-aggregation and counting differ"
                    .into(),
            )),
        }
        Ok(())
    }

    /// Starts loading the memory adding `users` will read first (a cache hint).
    fn prefetch(&self, users: &Users) {
        match (self, users) {
            (Self::Exact(s), Users::One(u)) => s.prefetch(u),
            (Self::Hll(s), Users::One(u)) => s.prefetch(u),
            _ => {}
        }
    }

    fn merge(&mut self, other: &Distinct) -> Result<()> {
        match (self, other) {
            (Self::Exact(a), Self::Exact(b)) => a.merge(b),
            (Self::Hll(a), Self::Hll(b)) => a.merge(b)?,
            _ => {
                return Err(Error::Internal(
                    "cannot merge exact users with a sketch".into(),
                ))
            }
        }
        Ok(())
    }

    fn count(&mut self) -> u64 {
        match self {
            Self::Exact(s) => s.len(),
            Self::Hll(s) => s.estimate(),
        }
    }
}

/// Counters shared by every worker of one counting operator.
#[derive(Debug, Default)]
pub struct UvCounters {
    /// Events (per key) that arrived after their bucket closed.
    pub late: AtomicU64,
    /// Rows emitted (updates and finals).
    pub rows: AtomicU64,
    /// Buckets opened (first event of a key) and closed (final row): their difference is
    /// the number of buckets in state.
    pub opened: AtomicU64,
    /// See `opened`.
    pub closed: AtomicU64,
}

impl UvCounters {
    /// Buckets currently in state (over every worker).
    pub fn open_buckets(&self) -> u64 {
        self.opened
            .load(Ordering::Relaxed)
            .saturating_sub(self.closed.load(Ordering::Relaxed))
    }
}

/// Counts distinct users and page views per key; see the module documentation.
#[derive(Clone)]
pub struct UvCount {
    config: Arc<UvConfig>,
    counters: Arc<UvCounters>,
    states: Vec<ValueState<Bucket>>,
    /// A new key's state.
    empty: Bucket,
    /// The fields of each dimension set and the name of each grain, as rows carry them.
    fields: Arc<[Vec<SmolStr>]>,
    grain_names: Arc<[SmolStr]>,
    /// Per grain, how its buckets' ends follow from their starts in the configured zone.
    ends: Arc<[BucketEnd]>,
    /// `config.lateness` and `config.update_interval` in milliseconds.
    lateness_ms: i64,
    update_interval_ms: i64,
}

impl UvCount {
    /// A counter for `config` (validated by the caller).
    pub fn new(config: Arc<UvConfig>, counters: Arc<UvCounters>) -> Result<Self> {
        let empty = Bucket {
            users: Distinct::new(config.mode)?,
            pv: 0,
            scheduled: false,
            steps: Vec::new(),
        };
        let fields = config
            .dimensions
            .iter()
            .map(|set| set.iter().map(SmolStr::new).collect())
            .collect();
        let grain_names = config
            .grains
            .iter()
            .map(|g| SmolStr::new(g.name()))
            .collect();
        let ends = config
            .grains
            .iter()
            .map(|g| g.end_rule(&config.timezone))
            .collect();
        Ok(Self {
            ends,
            lateness_ms: duration_millis(config.lateness),
            update_interval_ms: duration_millis(config.update_interval),
            config,
            counters,
            states: Vec::new(),
            empty,
            fields,
            grain_names,
        })
    }

    fn state(&self, key: &UvKey) -> Result<ValueState<Bucket>> {
        self.states
            .get(usize::from(key.grain))
            .copied()
            .ok_or_else(|| self.no_grain(key))
    }

    /// The error for a key whose grain is not configured.
    #[cold]
    fn no_grain(&self, key: &UvKey) -> Error {
        Error::Internal(format!(
            "no grain with index {} ({} configured)",
            key.grain,
            self.config.grains.len()
        ))
    }

    /// When the bucket of `key` closes: the watermark time at which its final row goes
    /// out and later events are late.
    #[inline]
    fn close_at(&self, key: &UvKey) -> Timestamp {
        // Fixed offsets (UTC too): start + length. Day grains in a zone with daylight
        // saving time: the next local day start, from the zone database.
        let g = usize::from(key.grain);
        let end = self.ends[g].end(key.bucket, &self.config.timezone);
        end.saturating_sub(1).saturating_add(self.lateness_ms)
    }

    /// The key's dimensions by field. Built by inserting: collecting into a
    /// `BTreeMap` sorts through a vector first, which costs more than the map itself
    /// for the few fields of a set.
    fn dims(&self, key: &UvKey) -> Dims {
        let mut dims = Dims::new();
        if let Some(fields) = self.fields.get(usize::from(key.set)) {
            for (field, value) in fields.iter().zip(key.values.iter()) {
                dims.insert(field.clone(), SmolStr::new(value));
            }
        }
        dims
    }

    /// The name of the key's grain.
    fn grain_name(&self, key: &UvKey) -> SmolStr {
        self.grain_names
            .get(usize::from(key.grain))
            .cloned()
            .unwrap_or_default()
    }

    fn row(
        &self,
        key: &UvKey,
        (uv, pv, sketch): (u64, u64, Option<String>),
        until: Option<Timestamp>,
        is_final: bool,
    ) -> UvOutput {
        self.counters.rows.fetch_add(1, Ordering::Relaxed);
        let zone = &self.config.timezone;
        UvOutput::Row(UvRow {
            dims: self.dims(key),
            grain: self.grain_name(key),
            bucket: time_text(key.bucket, zone),
            until: until.map(|t| time_text(t, zone)),
            uv,
            pv,
            is_final,
            sketch,
        })
    }

    /// Counts `input` into the bucket of `key` (in the table of its grain, `views`), or
    /// emits it as late when the bucket has closed.
    #[inline]
    fn count_one(
        &self,
        key: &UvKey,
        input: UvInput,
        views: &mut [ValueView<'_, UvKey, Bucket>],
        timers: &mut TimerService<'_, UvKey>,
        watermark: Timestamp,
        out: &mut Collector<'_, UvOutput>,
    ) -> Result<()> {
        let UvInput { users, pv, ts } = input;
        let close = self.close_at(key);
        if close <= watermark {
            self.late(key, pv, ts, out);
            return Ok(());
        }
        let Some(view) = views.get_mut(usize::from(key.grain)) else {
            return Err(self.no_grain(key));
        };
        let interval = self.update_interval_ms;
        // Cumulative grains: a step the watermark has not passed yet is kept apart.
        let step_end = self.config.grains[usize::from(key.grain)]
            .step_end(ts, key.bucket)
            .filter(|end| end.saturating_sub(1) > watermark && end.saturating_sub(1) < close);
        let b = view.get_or_insert_with(key, || self.empty.clone())?;
        // Every input carries at least one page view: only a new bucket has none.
        let fresh = b.pv == 0 && b.steps.is_empty();
        b.add(step_end, users, pv, &self.empty.users)?;
        let schedule = interval > 0 && !b.scheduled;
        b.scheduled |= schedule;
        if fresh {
            self.counters.opened.fetch_add(1, Ordering::Relaxed);
            timers.register_event_time_timer(key, close);
        }
        if schedule {
            let now = now_millis();
            timers.register_processing_time_timer(key, now - now.rem_euclid(interval) + interval);
        }
        if let Some(end) = step_end {
            timers.register_event_time_timer(key, end - 1);
        }
        Ok(())
    }

    /// Counts and emits an input whose bucket has closed.
    #[cold]
    fn late(&self, key: &UvKey, pv: u64, ts: Timestamp, out: &mut Collector<'_, UvOutput>) {
        self.counters.late.fetch_add(pv, Ordering::Relaxed);
        metrics::counter!("ferroflow_uv_late_events_total").increment(pv);
        out.collect(UvOutput::Late(LateRecord {
            dims: self.dims(key),
            grain: self.grain_name(key),
            bucket: time_text(key.bucket, &self.config.timezone),
            ts,
            events: pv,
        }));
    }

    /// The current (uv, pv) of the key in scope, if it has state; `unschedule` clears the
    /// flag of a scheduled update. Cumulative grains count only their settled steps,
    /// after settling the steps that end by `settle`.
    fn current(
        &self,
        state: ValueState<Bucket>,
        ctx: &mut KeyedContext<'_, UvKey>,
        unschedule: bool,
        settle: Option<Timestamp>,
    ) -> Result<Option<(u64, u64, Option<String>)>> {
        if state.get(ctx)?.is_none() {
            return Ok(None);
        }
        let b = state.get_or_insert_with(ctx, || self.empty.clone())?;
        if unschedule {
            b.scheduled = false;
        }
        let closing = settle == Some(Timestamp::MAX);
        if let Some(until) = settle {
            b.settle(until)?;
        }
        let sketch = match &b.users {
            Distinct::Hll(s) if closing && self.config.emit_sketches => Some(s.to_hex()?),
            _ => None,
        };
        Ok(Some((b.users.count(), b.pv, sketch)))
    }
}

impl KeyedProcessFunction for UvCount {
    type Key = UvKey;
    type In = UvInput;
    type Out = UvOutput;

    fn open(&mut self, ctx: &mut OpenContext<'_, UvKey>) -> Result<()> {
        self.states.clear();
        for g in &self.config.grains {
            // A backstop: the close timer clears a bucket exactly; the TTL removes what a
            // timer does not. A value's TTL runs from the watermark of its last write,
            // which may be far behind the bucket when events run ahead of the watermark:
            // the margin covers that lead.
            let ttl = g
                .length_ms()
                .max(0)
                .saturating_add(self.lateness_ms)
                .saturating_add(duration_millis(self.config.ttl_margin))
                .max(1);
            let desc = StateDescriptor::new(format!("uv-{}", g.name())).with_ttl(
                StateTtl::event_time(Duration::from_millis(ttl.unsigned_abs())),
            );
            self.states.push(ctx.value_state(desc)?);
        }
        Ok(())
    }

    fn process(
        &mut self,
        input: UvInput,
        ctx: &mut KeyedContext<'_, UvKey>,
        out: &mut Collector<'_, UvOutput>,
    ) -> Result<()> {
        let key = ctx.key();
        let mut batch = ctx.batch();
        let watermark = batch.current_watermark();
        let (mut views, mut timers) = batch.value_views(&self.states)?;
        self.count_one(key, input, &mut views, &mut timers, watermark, out)
    }

    fn on_timer(
        &mut self,
        timer: Timer,
        ctx: &mut KeyedContext<'_, UvKey>,
        out: &mut Collector<'_, UvOutput>,
    ) -> Result<()> {
        let key = ctx.key().clone();
        let state = self.state(&key)?;
        let close = self.close_at(&key);
        match timer.domain {
            TimeDomain::EventTime if timer.timestamp >= close => {
                if let Some(now) = self.current(state, ctx, false, Some(Timestamp::MAX))? {
                    state.clear(ctx)?;
                    self.counters.closed.fetch_add(1, Ordering::Relaxed);
                    out.collect(self.row(&key, now, None, true));
                }
            }
            // The end of a cumulative step.
            TimeDomain::EventTime => {
                let until = timer.timestamp + 1;
                if let Some(now) = self.current(state, ctx, false, Some(until))? {
                    out.collect(self.row(&key, now, Some(until), false));
                }
            }
            TimeDomain::ProcessingTime => {
                if let Some(now) = self.current(state, ctx, true, None)? {
                    out.collect(self.row(&key, now, None, false));
                }
            }
        }
        Ok(())
    }
}

impl KeyedBatchFunction for UvCount {
    /// Each grain's table is looked up once for the batch. Ahead of each input, the
    /// bucket's state entry is prefetched ([`PREFETCH_STATE_AHEAD`] inputs ahead), then
    /// the slot of its user table the user goes to ([`PREFETCH_DATA_AHEAD`] ahead): the
    /// two cache misses of every input overlap with other inputs' misses.
    fn process_batch(
        &mut self,
        batch: Vec<(UvKey, UvInput)>,
        ctx: &mut BatchContext<'_, UvKey>,
        out: &mut Collector<'_, UvOutput>,
    ) -> Result<()> {
        let watermark = ctx.current_watermark();
        let (mut views, mut timers) = ctx.value_views(&self.states)?;
        let mut inputs = batch.into_iter();
        while let Some((key, input)) = inputs.next() {
            let ahead = inputs.as_slice();
            if let Some((k, _)) = ahead.get(PREFETCH_STATE_AHEAD - 1) {
                if let Some(view) = views.get(usize::from(k.grain)) {
                    view.prefetch(k);
                }
            }
            if let Some((k, i)) = ahead.get(PREFETCH_DATA_AHEAD - 1) {
                if let Some(b) = views.get(usize::from(k.grain)).and_then(|v| v.likely(k)) {
                    b.users.prefetch(&i.users);
                }
            }
            self.count_one(&key, input, &mut views, &mut timers, watermark, out)?;
        }
        Ok(())
    }
}
