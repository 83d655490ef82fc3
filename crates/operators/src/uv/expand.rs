//! Expanding an event into its keyed inputs: one per dimension set × grain.

use super::values::Packer;
use super::{Grain, Users, UvConfig, UvEvent, UvInput, UvKey};
use ferroflow_core::Timestamp;

/// The keyed inputs one event makes: one per dimension set (whose fields it has) × grain
/// (whose bucket holds it).
pub fn expand<E: UvEvent>(config: &UvConfig, e: &E) -> Vec<(UvKey, UvInput)> {
    let mut out = Vec::with_capacity(config.dimensions.len() * config.grains.len());
    expand_into(config, e, &mut out);
    out
}

/// [`expand`] into `out`.
pub fn expand_into<E: UvEvent>(config: &UvConfig, e: &E, out: &mut Vec<(UvKey, UvInput)>) {
    Expander::new(config).expand_into(e, out);
}

/// Expands one event after another, remembering each grain's latest bucket: events
/// come mostly in time order, so most find their bucket without a division.
pub(super) struct Expander<'a> {
    config: &'a UvConfig,
    /// Per grain: the latest bucket `[start, end)` found, where every time in it is
    /// known to give that bucket again.
    last: Vec<Option<(Timestamp, Timestamp)>>,
}

impl<'a> Expander<'a> {
    pub(super) fn new(config: &'a UvConfig) -> Self {
        Self {
            config,
            last: vec![None; config.grains.len()],
        }
    }

    /// The start of the bucket of grain `i` holding `ts`, as [`Grain::bucket`] gives it.
    #[inline]
    fn bucket(&mut self, i: usize, g: &Grain, ts: Timestamp) -> Option<Timestamp> {
        let last = self.last.get_mut(i)?;
        if let Some((start, end)) = *last {
            if start <= ts && ts < end {
                return Some(start);
            }
        }
        let zone = &self.config.timezone;
        let (start, end) = g.bucket(ts, zone)?;
        // Remembered only where every time in `[start, end)` is known to give the same
        // bucket: whole local days always are; fixed lengths are where nothing saturates
        // and the zone's offset does not change within the bucket.
        let exact = match g {
            Grain::Range { .. } => true,
            _ if g.follows_local_days(zone) => start < end,
            _ => {
                let offset = zone.offset_ms_at(ts);
                start.checked_add(g.length_ms()) == Some(end)
                    && start.checked_add(offset).is_some()
                    && end.checked_add(offset).is_some()
                    && ts.checked_add(offset).is_some()
                    && zone.offset_ms_at(start) == offset
                    && zone.offset_ms_at(end - 1) == offset
            }
        };
        *last = exact.then_some((start, end));
        Some(start)
    }

    /// [`expand_into`] for the next event. Inlined into the loop over a batch.
    #[inline]
    pub(super) fn expand_into<E: UvEvent>(&mut self, e: &E, out: &mut Vec<(UvKey, UvInput)>) {
        let config = self.config;
        let ts = e.event_time();
        // The event's bucket in each grain that covers it, worked out once for every set.
        let mut buckets = smallvec::SmallVec::<[(u16, Timestamp); 4]>::new();
        for (i, g) in config.grains.iter().enumerate() {
            if let Some(start) = self.bucket(i, g, ts) {
                buckets.push((i as u16, start));
            }
        }
        expand_buckets(config, e, ts, &buckets, out);
    }
}

/// The inputs of `e` for the buckets `(grain, start)` it falls in.
#[inline]
fn expand_buckets<E: UvEvent>(
    config: &UvConfig,
    e: &E,
    ts: Timestamp,
    buckets: &[(u16, Timestamp)],
    out: &mut Vec<(UvKey, UvInput)>,
) {
    let Some(((last_grain, last_bucket), rest)) = buckets.split_last() else {
        return;
    };
    let user = e.user();
    #[inline(always)]
    fn input(key: UvKey, users: Users, ts: Timestamp) -> (UvKey, UvInput) {
        (key, UvInput { users, pv: 1, ts })
    }
    'sets: for (set, fields) in config.dimensions.iter().enumerate() {
        let mut packer = Packer::default();
        for f in fields {
            match e.dimension(f) {
                Some(v) => packer.push(v),
                // The event lacks a field of this set.
                None => continue 'sets,
            }
        }
        let values = packer.finish();
        for &(grain, bucket) in rest {
            let key = UvKey::new(set as u16, values.clone(), grain, bucket);
            out.push(input(key, Users::One(user.clone()), ts));
        }
        let key = UvKey::new(set as u16, values, *last_grain, *last_bucket);
        out.push(input(key, Users::One(user.clone()), ts));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uv::UserId;
    use std::time::Duration;

    const MINUTE: i64 = 60_000;
    const HOUR: i64 = 60 * MINUTE;

    struct Ev {
        ts: i64,
        platform: &'static str,
    }

    impl UvEvent for Ev {
        fn event_time(&self) -> i64 {
            self.ts
        }
        fn user(&self) -> UserId {
            UserId::number(7)
        }
        fn dimension(&self, field: &str) -> Option<&str> {
            (field == "platform").then_some(self.platform)
        }
    }

    /// Expanding a run of events with the latest buckets remembered gives exactly what
    /// expanding each on its own gives: in order, out of order, across bucket and zone
    /// edges, and at the ends of the time range where the bucket arithmetic saturates.
    #[test]
    fn remembered_buckets_change_no_expansion() {
        let grains = vec![
            Grain::hour(),
            Grain::day(),
            Grain::day_cumulative(Duration::from_secs(600)),
            Grain::range("promo", 5 * HOUR, 7 * HOUR).unwrap(),
        ];
        let mut times: Vec<i64> = (0..400).map(|i| i * 7 * MINUTE - 3 * HOUR).collect();
        times.extend([
            5 * HOUR - 1,
            5 * HOUR,
            7 * HOUR - 1,
            7 * HOUR,
            2 * HOUR,
            9 * HOUR,
        ]);
        times.extend([
            i64::MAX,
            i64::MAX - 1,
            i64::MAX - HOUR,
            i64::MIN / 2,
            0,
            -1,
            1,
        ]);
        // Around Berlin's clock changes of 2025 (03-30 and 10-26, at 01:00Z).
        for change in [1_743_296_400_000_i64, 1_761_440_400_000] {
            times.extend((0..420).map(|i| change - 25 * HOUR + i * 7 * MINUTE));
        }
        for zone in [
            "UTC",
            "+08:00",
            "-05:30",
            "Europe/Berlin",
            "America/New_York",
        ] {
            let config = UvConfig {
                dimensions: UvConfig::parse_dimensions(";platform"),
                grains: grains.clone(),
                timezone: ferroflow_core::Zone::parse(zone).unwrap(),
                ..UvConfig::default()
            };
            let mut expander = Expander::new(&config);
            for &ts in &times {
                let e = Ev {
                    ts,
                    platform: "app",
                };
                let mut remembered = Vec::new();
                expander.expand_into(&e, &mut remembered);
                let keys =
                    |v: &[(UvKey, UvInput)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
                assert_eq!(
                    keys(&remembered),
                    keys(&expand(&config, &e)),
                    "ts {ts}, zone {zone}"
                );
            }
        }
    }
}
