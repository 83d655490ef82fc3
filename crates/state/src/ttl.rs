//! State time-to-live: configuration, the clocks expiry is measured on, and the stamp kept
//! beside every value of a state declared with a TTL.
//!
//! A TTL is measured in processing time (the wall clock, read once per batch by the
//! runtime) or in event time (the operator's watermark). Each value, map entry or list
//! element carries the time it was last written (or, with [`TtlUpdate::OnReadAndWrite`],
//! read); it is expired once its clock reaches `stamp + ttl`. Expired values are never
//! returned. They are removed when accessed, by periodic sweeps driven by the same clock,
//! and on RocksDB by a compaction filter, so state that is never read again still goes.

use crate::store::StateKind;
use crate::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The clock a TTL is measured on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TtlTime {
    /// The wall clock. Default.
    #[default]
    ProcessingTime,
    /// The operator's watermark: a value written when the watermark was `w` expires once
    /// the watermark reaches `w + ttl`. Values written before the first watermark count
    /// from the first watermark, so they never expire early.
    EventTime,
}

/// Which accesses restart a value's TTL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TtlUpdate {
    /// Creating or writing a value restarts its TTL. Default.
    #[default]
    OnCreateAndWrite,
    /// Reads restart it too (point reads and list reads; iterating a map state does not).
    OnReadAndWrite,
}

/// Time-to-live of a state, set on its [`crate::StateDescriptor`].
///
/// ```
/// use ferroflow_state::{StateDescriptor, StateTtl};
/// use std::time::Duration;
///
/// let desc = StateDescriptor::new("seen")
///     .with_ttl(StateTtl::event_time(Duration::from_secs(3600)));
/// assert_eq!(desc.ttl().map(|t| t.ttl), Some(Duration::from_secs(3600)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateTtl {
    /// Time to live on the chosen clock (`25h` in files). Required, at least 1 ms.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// The clock. Default: processing time.
    #[serde(default)]
    pub time: TtlTime,
    /// Which accesses restart the TTL. Default: create and write.
    #[serde(default)]
    pub update: TtlUpdate,
    /// Interval, on the same clock, between sweeps that remove expired entries nobody
    /// reads. Default (`None`): half the TTL, so an entry is gone at most 1.5 × TTL after
    /// its last write. `0s` turns sweeps off (cleanup on access and, on RocksDB, by
    /// compaction only).
    #[serde(default, with = "humantime_serde")]
    pub sweep_interval: Option<Duration>,
}

impl StateTtl {
    /// A TTL of `ttl` in processing time.
    pub fn processing_time(ttl: Duration) -> Self {
        Self::new(ttl, TtlTime::ProcessingTime)
    }

    /// A TTL of `ttl` in event time (watermarks).
    pub fn event_time(ttl: Duration) -> Self {
        Self::new(ttl, TtlTime::EventTime)
    }

    fn new(ttl: Duration, time: TtlTime) -> Self {
        Self {
            ttl,
            time,
            update: TtlUpdate::default(),
            sweep_interval: None,
        }
    }

    /// Sets which accesses restart the TTL.
    #[must_use]
    pub fn with_update(mut self, update: TtlUpdate) -> Self {
        self.update = update;
        self
    }

    /// Sets the sweep interval (`Duration::ZERO` turns sweeps off).
    #[must_use]
    pub fn with_sweep_interval(mut self, every: Duration) -> Self {
        self.sweep_interval = Some(every);
        self
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.ttl < Duration::from_millis(1) || self.ttl.as_millis() > i64::MAX as u128 {
            return Err(Error::InvalidConfig(format!(
                "a state TTL must be between 1 ms and {} ms, not {:?}",
                i64::MAX,
                self.ttl
            )));
        }
        Ok(())
    }

    pub(crate) fn spec(&self) -> TtlSpec {
        TtlSpec {
            ttl: millis(self.ttl),
            time: self.time,
            update: self.update,
        }
    }

    /// The sweep interval in milliseconds, `None` when sweeps are off.
    pub(crate) fn sweep_every(&self) -> Option<i64> {
        match self.sweep_interval {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(millis(d).max(1)),
            None => Some((millis(self.ttl) / 2).max(1)),
        }
    }
}

/// A duration in whole milliseconds, as the clocks count.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Marks "no time yet" in clocks and stamps.
const UNSET: i64 = i64::MIN;

/// The clocks of one keyed store, shared with its RocksDB compaction filter.
#[derive(Debug)]
pub(crate) struct TtlClock {
    /// Processing time set by the runtime once per batch; `UNSET` reads the wall clock.
    processing: AtomicI64,
    watermark: AtomicI64,
    first_watermark: AtomicI64,
}

impl Default for TtlClock {
    fn default() -> Self {
        Self {
            processing: AtomicI64::new(UNSET),
            watermark: AtomicI64::new(UNSET),
            first_watermark: AtomicI64::new(UNSET),
        }
    }
}

fn wall_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl TtlClock {
    pub(crate) fn set_processing_time(&self, now: i64) {
        self.processing.store(now, Ordering::Relaxed);
    }

    pub(crate) fn advance_watermark(&self, watermark: i64) {
        if watermark == UNSET {
            return;
        }
        let _ = self.first_watermark.compare_exchange(
            UNSET,
            watermark,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        self.watermark.fetch_max(watermark, Ordering::Relaxed);
    }

    /// The current time on `time`'s clock; `UNSET` before the first watermark.
    #[inline]
    pub(crate) fn now(&self, time: TtlTime) -> i64 {
        match time {
            TtlTime::ProcessingTime => match self.processing.load(Ordering::Relaxed) {
                UNSET => wall_millis(),
                t => t,
            },
            TtlTime::EventTime => self.watermark.load(Ordering::Relaxed),
        }
    }
}

/// The part of a [`StateTtl`] that value accesses need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TtlSpec {
    pub(crate) ttl: i64,
    pub(crate) time: TtlTime,
    pub(crate) update: TtlUpdate,
}

impl TtlSpec {
    /// The stamp to give a value written now.
    #[inline]
    pub(crate) fn stamp(&self, clock: &TtlClock) -> i64 {
        clock.now(self.time)
    }

    /// Whether a value stamped `stamp` has expired.
    #[inline]
    pub(crate) fn expired(&self, stamp: i64, clock: &TtlClock) -> bool {
        let now = clock.now(self.time);
        if now == UNSET {
            return false;
        }
        let from = if stamp == UNSET {
            // Written before the first watermark: counts from the first one.
            match clock.first_watermark.load(Ordering::Relaxed) {
                UNSET => return false,
                first => first,
            }
        } else {
            stamp
        };
        from.saturating_add(self.ttl) <= now
    }

    pub(crate) fn refresh_on_read(&self) -> bool {
        self.update == TtlUpdate::OnReadAndWrite
    }
}

/// The TTL of every state of one store by state id, with the store's clock; shared with
/// the RocksDB compaction filter, which reads stamps from stored bytes.
#[derive(Debug, Default)]
pub(crate) struct TtlRegistry {
    pub(crate) clock: TtlClock,
    specs: RwLock<HashMap<u16, (TtlSpec, StateKind)>>,
}

impl TtlRegistry {
    pub(crate) fn register(&self, state_id: u16, spec: TtlSpec, kind: StateKind) {
        self.specs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(state_id, (spec, kind));
    }

    pub(crate) fn spec_of(&self, id: u16) -> Option<TtlSpec> {
        let specs = self.specs.read().unwrap_or_else(PoisonError::into_inner);
        specs.get(&id).map(|(spec, _)| *spec)
    }

    pub(crate) fn has_any(&self) -> bool {
        !self
            .specs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Whether a stored entry (`[key group][state id]...` → stamped value) has expired.
    /// List values hold a stamp per element and are left to sweeps.
    #[cfg_attr(not(feature = "rocksdb"), allow(dead_code))]
    pub(crate) fn stored_entry_expired(&self, key: &[u8], value: &[u8]) -> bool {
        let (Some(id), Some(stamp)) = (key.get(2..4), value.get(..8)) else {
            return false;
        };
        let id = u16::from_be_bytes([id[0], id[1]]);
        let specs = self.specs.read().unwrap_or_else(PoisonError::into_inner);
        match specs.get(&id) {
            Some((spec, kind)) if *kind != StateKind::List => {
                let mut b = [0u8; 8];
                b.copy_from_slice(stamp);
                spec.expired(i64::from_be_bytes(b), &self.clock)
            }
            _ => false,
        }
    }
}

/// A value with the time it was last written (or read), on its TTL's clock.
///
/// Encoded as the stamp in 8 big-endian bytes followed by the value, so the stamp sits at a
/// fixed place in stored bytes, where a compaction filter can read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stamped<V> {
    pub(crate) at: i64,
    pub(crate) value: V,
}

impl<V: Serialize> Serialize for Stamped<V> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (self.at.to_be_bytes(), &self.value).serialize(s)
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Stamped<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (at, value) = <([u8; 8], V)>::deserialize(d)?;
        Ok(Self {
            at: i64::from_be_bytes(at),
            value,
        })
    }
}

/// The stamp at the start of a stored stamped value.
pub(crate) fn stored_stamp(bytes: &[u8]) -> Option<i64> {
    let mut b = [0u8; 8];
    b.copy_from_slice(bytes.get(..8)?);
    Some(i64::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_is_the_first_eight_bytes() {
        let bytes = postcard::to_stdvec(&Stamped {
            at: 1_700_000_000_123,
            value: "x".to_string(),
        })
        .unwrap();
        assert_eq!(stored_stamp(&bytes), Some(1_700_000_000_123));
        let back: Stamped<String> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.value, "x");
        assert_eq!(stored_stamp(&[1, 2]), None);
    }

    #[test]
    fn event_time_counts_from_the_first_watermark() {
        let clock = TtlClock::default();
        let spec = StateTtl::event_time(Duration::from_millis(100)).spec();
        let early = spec.stamp(&clock);
        assert_eq!(early, UNSET);
        assert!(!spec.expired(early, &clock), "no watermark yet");
        clock.advance_watermark(1_000);
        assert!(!spec.expired(early, &clock));
        clock.advance_watermark(1_099);
        assert!(!spec.expired(early, &clock));
        clock.advance_watermark(1_100);
        assert!(spec.expired(early, &clock));
        // Watermarks never go back.
        clock.advance_watermark(5);
        assert_eq!(clock.now(TtlTime::EventTime), 1_100);
    }

    #[test]
    fn processing_time_uses_the_set_clock() {
        let clock = TtlClock::default();
        let spec = StateTtl::processing_time(Duration::from_secs(1)).spec();
        assert!(clock.now(TtlTime::ProcessingTime) > 1_600_000_000_000);
        clock.set_processing_time(10_000);
        let s = spec.stamp(&clock);
        clock.set_processing_time(10_999);
        assert!(!spec.expired(s, &clock));
        clock.set_processing_time(11_000);
        assert!(spec.expired(s, &clock));
    }

    #[test]
    fn config_validation_and_defaults() {
        let t: StateTtl = serde_json::from_str(r#"{"ttl": "1s"}"#).unwrap();
        assert_eq!(t.time, TtlTime::ProcessingTime);
        assert_eq!(t.update, TtlUpdate::OnCreateAndWrite);
        assert_eq!(t.sweep_every(), Some(500));
        assert_eq!(t.with_sweep_interval(Duration::ZERO).sweep_every(), None);
        assert!(StateTtl::processing_time(Duration::ZERO)
            .validate()
            .is_err());
        let e: StateTtl = serde_json::from_str(r#"{"ttl": "5ms", "time": "event_time"}"#).unwrap();
        assert_eq!(e.time, TtlTime::EventTime);
        assert!(serde_json::from_str::<StateTtl>(r#"{"ttl": "5ms", "tll": 1}"#).is_err());
    }
}
