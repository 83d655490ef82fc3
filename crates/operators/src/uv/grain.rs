//! Time grains: which bucket an event time falls in, when a bucket closes, and how a
//! bucket is named in output.

use ferroflow_core::{duration_millis, Error, Result, Timestamp, Zone};
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;
use std::time::Duration;

const SECOND: i64 = 1_000;
const HOUR: i64 = 3_600 * SECOND;
const DAY: i64 = 24 * HOUR;

/// A time grain of a UV count. Buckets are aligned to local time in the configured time
/// zone (UTC by default): grains of whole days follow the zone's calendar days (23 or 25
/// hours long where clocks change); shorter grains align to the offset in force, so an
/// hour grain has the hours of the local clock.
///
/// In TOML: `{ type = "tumbling", name = "5m", size = "5m" }`,
/// `{ type = "cumulative", name = "day_cumulative", size = "1d", step = "1m" }`,
/// `{ type = "range", name = "double11", start = "2025-11-11T00:00:00+08:00",
/// end = "2025-11-12T00:00:00+08:00" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Grain {
    /// Consecutive buckets of `size` (an hour, a day, or any length).
    Tumbling {
        /// The name in output rows (`hour`, `day`, `5m`...).
        name: String,
        /// Bucket length (`1h`, `1d`, `5m`).
        #[serde(with = "humantime_serde")]
        size: Duration,
    },
    /// Buckets of `size` whose running value is also emitted at the end of every `step`
    /// of event time within the bucket, like Flink's `CUMULATE` window: a day-to-date UV
    /// updated every minute. Rows carry `until`, the end of the step.
    Cumulative {
        /// The name in output rows.
        name: String,
        /// Bucket length.
        #[serde(with = "humantime_serde")]
        size: Duration,
        /// Step length; divides `size`.
        #[serde(with = "humantime_serde")]
        step: Duration,
    },
    /// One explicit range `[start, end)`, such as a promotion period. Events outside it
    /// do not count in this grain.
    Range {
        /// The name in output rows (`double11`).
        name: String,
        /// First instant of the range (inclusive), RFC 3339 with an offset.
        start: jiff::Timestamp,
        /// End of the range (exclusive).
        end: jiff::Timestamp,
    },
}

impl Grain {
    /// Hourly buckets named `hour`.
    pub fn hour() -> Self {
        Self::tumbling("hour", Duration::from_secs(3_600))
    }

    /// Daily buckets named `day`.
    pub fn day() -> Self {
        Self::tumbling("day", Duration::from_secs(86_400))
    }

    /// Buckets of `size` named `name`.
    pub fn tumbling(name: impl Into<String>, size: Duration) -> Self {
        Self::Tumbling {
            name: name.into(),
            size,
        }
    }

    /// A day-to-date count updated every `step`, named `day_cumulative`.
    pub fn day_cumulative(step: Duration) -> Self {
        Self::Cumulative {
            name: "day_cumulative".into(),
            size: Duration::from_secs(86_400),
            step,
        }
    }

    /// The range `[start, end)` named `name`, as epoch milliseconds.
    ///
    /// # Errors
    /// When either end is outside the years -9999 to 9999.
    pub fn range(name: impl Into<String>, start: Timestamp, end: Timestamp) -> Result<Self> {
        let at = |ms| {
            jiff::Timestamp::from_millisecond(ms)
                .map_err(|e| Error::Config(format!("range grain: {ms} ms: {e}")))
        };
        Ok(Self::Range {
            name: name.into(),
            start: at(start)?,
            end: at(end)?,
        })
    }

    /// Parses `hour`, `day`, `day-cumulative:<step>` or a duration such as `15m` or `2h`
    /// (a tumbling grain of that length, named by the text).
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "hour" => return Ok(Self::hour()),
            "day" => return Ok(Self::day()),
            _ => {}
        }
        let duration = |t: &str| {
            humantime::parse_duration(t).map_err(|e| {
                Error::Config(format!(
                    "grain `{text}`: `{t}` is not a duration like 30s, 5m, 1h or 1d ({e})"
                ))
            })
        };
        if let Some(step) = text.strip_prefix("day-cumulative:") {
            return Ok(Self::day_cumulative(duration(step)?));
        }
        Ok(Self::tumbling(text, duration(text)?))
    }

    /// The name in output rows.
    pub fn name(&self) -> &str {
        match self {
            Self::Tumbling { name, .. }
            | Self::Cumulative { name, .. }
            | Self::Range { name, .. } => name,
        }
    }

    /// Checks lengths and ranges.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: &str| Err(Error::Config(format!("grain `{}`: {why}", self.name())));
        let whole_ms = |d: &Duration| d.subsec_nanos().is_multiple_of(1_000_000);
        match self {
            Self::Tumbling { size, .. } if size.is_zero() || !whole_ms(size) => {
                bad("the size must be a positive whole number of milliseconds")
            }
            Self::Cumulative { size, step, .. }
                if step.is_zero()
                    || !whole_ms(size)
                    || !whole_ms(step)
                    || duration_millis(*size) % duration_millis(*step) != 0 =>
            {
                bad("size and step must be positive whole milliseconds and the step must divide the size")
            }
            Self::Range { start, end, .. } if end <= start => {
                bad("the range must end after it starts")
            }
            _ if self.name().is_empty() => bad("a grain needs a name"),
            _ => Ok(()),
        }
    }

    /// Bucket length of a tumbling or cumulative grain, ms.
    fn size_ms(&self) -> Option<i64> {
        match self {
            Self::Tumbling { size, .. } | Self::Cumulative { size, .. } => {
                Some(duration_millis(*size))
            }
            Self::Range { .. } => None,
        }
    }

    /// A range grain's `[start, end)`, ms.
    fn range_ms(&self) -> Option<(Timestamp, Timestamp)> {
        match self {
            Self::Range { start, end, .. } => Some((start.as_millisecond(), end.as_millisecond())),
            _ => None,
        }
    }

    /// The bucket `[start, end)` holding `ts` in `zone`; `None` when `ts` is outside a
    /// range grain.
    pub fn bucket(&self, ts: Timestamp, zone: &Zone) -> Option<(Timestamp, Timestamp)> {
        match self.range_ms() {
            Some((start, end)) => (start..end).contains(&ts).then_some((start, end)),
            None => Some(tumbling_bucket(ts, self.size_ms()?, zone)),
        }
    }

    /// The end of the bucket that starts at `start` in `zone`.
    pub fn bucket_end(&self, start: Timestamp, zone: &Zone) -> Timestamp {
        self.end_rule(zone).end(start, zone)
    }

    /// How the end of this grain's buckets in `zone` follows from their start: worked
    /// out once, it serves every bucket of the grain ([`BucketEnd::end`]).
    pub(super) fn end_rule(&self, zone: &Zone) -> BucketEnd {
        match (self.range_ms(), self.size_ms()) {
            (Some((_, end)), _) => BucketEnd::At(end),
            (None, Some(size)) if local_days(size, zone) => BucketEnd::LocalDays(size),
            (None, size) => BucketEnd::After(size.unwrap_or(0)),
        }
    }

    /// Whether this grain's buckets are local calendar days of `zone` (whole days in a
    /// zone whose offset changes), so that they are not all of one length.
    pub(super) fn follows_local_days(&self, zone: &Zone) -> bool {
        self.size_ms().is_some_and(|size| local_days(size, zone))
    }

    /// For a cumulative grain, the end of the step holding `ts` within a bucket starting
    /// at `start`.
    pub fn step_end(&self, ts: Timestamp, start: Timestamp) -> Option<Timestamp> {
        match self {
            Self::Cumulative { step, .. } => {
                let step = duration_millis(*step);
                let into = ts - start;
                Some(start + (into - into.rem_euclid(step)) + step)
            }
            _ => None,
        }
    }

    /// The nominal length of one bucket, ms (a day grain's days may be an hour shorter or
    /// longer where clocks change).
    pub(super) fn length_ms(&self) -> i64 {
        match self.range_ms() {
            Some((start, end)) => end.saturating_sub(start),
            None => self.size_ms().unwrap_or(0),
        }
    }

    /// Whether rows are also emitted at the end of each step.
    pub fn is_cumulative(&self) -> bool {
        matches!(self, Self::Cumulative { .. })
    }
}

/// How a grain's bucket ends, given its start ([`Grain::end_rule`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BucketEnd {
    /// Every bucket ends at this instant (a range grain).
    At(Timestamp),
    /// Every bucket is this many milliseconds long (fixed lengths).
    After(i64),
    /// Buckets are this many whole local days (ms), whose lengths the zone database
    /// gives.
    LocalDays(i64),
}

impl BucketEnd {
    /// The end of the bucket starting at `start` in `zone`, the zone this rule was made
    /// for.
    #[inline]
    pub(super) fn end(self, start: Timestamp, zone: &Zone) -> Timestamp {
        match self {
            Self::At(end) => end,
            Self::After(size) => start.saturating_add(size),
            Self::LocalDays(size) => tumbling_bucket(start, size, zone).1,
        }
    }
}

/// Whether buckets of `size_ms` in `zone` are local calendar days: sizes of whole days in
/// a zone whose offset changes. (In a fixed-offset zone, UTC included, a day is always
/// 24 hours and plain arithmetic gives the same buckets.)
fn local_days(size_ms: i64, zone: &Zone) -> bool {
    zone.fixed_offset_ms().is_none() && size_ms % DAY == 0
}

/// The tumbling bucket of `size_ms` holding `ts` in `zone`: whole local days for sizes of
/// whole days (counted from 1970-01-01 local), else fixed lengths aligned to the local
/// clock at `ts`.
fn tumbling_bucket(ts: Timestamp, size_ms: i64, zone: &Zone) -> (Timestamp, Timestamp) {
    if local_days(size_ms, zone) {
        let days = size_ms / DAY;
        let day = zone.local_day(ts);
        let first = day - day.rem_euclid(days);
        return (
            zone.day_start(first),
            zone.day_start(first.saturating_add(days)),
        );
    }
    let offset = zone.offset_ms_at(ts);
    let local = ts.saturating_add(offset);
    let start = local - local.rem_euclid(size_ms) - offset;
    (start, start.saturating_add(size_ms))
}

/// `2026-11-21T08:00:00Z` for epoch milliseconds in UTC, or `2026-11-21T16:00:00+08:00`
/// with the offset `zone` has at that time.
pub fn format_time(ms: Timestamp, zone: &Zone) -> String {
    time_text(ms, zone).into()
}

/// [`format_time`] as a [`SmolStr`], held inline (no allocation) in UTC, where it is 20
/// bytes long. Every row carries one.
pub(super) fn time_text(ms: Timestamp, zone: &Zone) -> SmolStr {
    offset_time_text(ms, zone.offset_ms_at(ms))
}

/// The local time of `ms` at `offset_ms` east of UTC, written digit by digit into a buffer
/// on the stack: one row in 80 events in the per-(item, hour) UV job, where going through
/// a general formatter would cost more than the rest of the row.
fn offset_time_text(ms: Timestamp, offset_ms: i64) -> SmolStr {
    let (year, month, day, rem) = local_fields(ms, offset_ms);
    let zone_minutes = offset_ms.abs() / 60_000;
    // Years 0 to 9999 and zones within ±99:59, as four and two digits; anything else
    // through the general formatter.
    if !(0..=9999).contains(&year) || zone_minutes >= 100 * 60 {
        return format_time_general(year, month, day, rem, offset_ms).into();
    }
    let mut out = Digits::default();
    out.push_digits(year, 4);
    out.push(b'-');
    out.push_digits(month, 2);
    out.push(b'-');
    out.push_digits(day, 2);
    out.push(b'T');
    out.push_digits(rem / 3600, 2);
    out.push(b':');
    out.push_digits(rem % 3600 / 60, 2);
    out.push(b':');
    out.push_digits(rem % 60, 2);
    if offset_ms == 0 {
        out.push(b'Z');
    } else {
        out.push(if offset_ms < 0 { b'-' } else { b'+' });
        out.push_digits(zone_minutes / 60, 2);
        out.push(b':');
        out.push_digits(zone_minutes % 60, 2);
    }
    out.text()
}

/// ASCII text of at most 25 bytes (the longest time [`time_text`] writes itself).
#[derive(Default)]
struct Digits {
    bytes: [u8; 25],
    len: usize,
}

impl Digits {
    fn push(&mut self, b: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    /// The last `width` decimal digits of `n` (0 <= n), zero-padded.
    fn push_digits(&mut self, n: i64, width: u32) {
        for p in (0..width).rev() {
            let digit = n / 10_i64.pow(p) % 10;
            self.push(b'0' + digit as u8);
        }
    }

    fn text(&self) -> SmolStr {
        let bytes = &self.bytes[..self.len];
        // Only ASCII digits and marks were pushed.
        std::str::from_utf8(bytes).map_or_else(|_| SmolStr::default(), SmolStr::new)
    }
}

/// The local (year, month, day, second of the day) of epoch milliseconds `ms` in a zone
/// `offset_ms` east of UTC.
fn local_fields(ms: Timestamp, offset_ms: i64) -> (i64, i64, i64, i64) {
    let secs = ms.saturating_add(offset_ms).div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil(days);
    (year, month, day, rem)
}

/// Civil (year, month, day) from days since 1970-01-01 (H. Hinnant's algorithm).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// [`format_time`] through `format!`, for years outside 0..=9999 and unusual zones.
#[cold]
fn format_time_general(year: i64, month: i64, day: i64, rem: i64, offset_ms: i64) -> String {
    let zone = if offset_ms == 0 {
        "Z".to_string()
    } else {
        let m = offset_ms.abs() / 60_000;
        let sign = if offset_ms < 0 { '-' } else { '+' };
        format!("{sign}{:02}:{:02}", m / 60, m % 60)
    };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{zone}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_formatted_as_the_general_formatter_does() {
        let general = |ms: i64, offset_ms: i64| {
            let (y, m, d, rem) = local_fields(ms, offset_ms);
            format_time_general(y, m, d, rem, offset_ms)
        };
        // From a week before 0000-01-01 to a week after 9999-12-31, every 97 days and
        // at a different time of day each time, in four zones.
        let mut ms: i64 = -62_167_219_200_000 - 7 * DAY;
        while ms < 253_402_300_800_000 + 7 * DAY {
            for offset_ms in [0, 8 * HOUR, -(5 * HOUR + 30 * 60_000), 14 * HOUR] {
                assert_eq!(
                    offset_time_text(ms, offset_ms),
                    general(ms, offset_ms),
                    "{ms} {offset_ms}"
                );
            }
            ms += 97 * DAY + 3_723_456;
        }
        let utc = Zone::utc();
        assert_eq!(format_time(0, &utc), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(-1, &utc), "1969-12-31T23:59:59Z");
        assert_eq!(
            format_time(1_763_712_000_000, &Zone::parse("-03:00").unwrap()),
            "2025-11-21T05:00:00-03:00"
        );
        assert_eq!(
            offset_time_text(0, 101 * HOUR),
            "1970-01-05T05:00:00+101:00"
        );
    }

    /// The local time with its offset, as jiff writes it (`Z` for UTC).
    fn jiff_text(ms: i64, zone: &str) -> String {
        let tz = jiff::tz::TimeZone::get(zone).unwrap();
        let text = jiff::Timestamp::from_millisecond(ms)
            .unwrap()
            .to_zoned_datetime(tz)
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string();
        text.strip_suffix("+00:00")
            .map_or(text.clone(), |t| format!("{t}Z"))
    }

    #[test]
    fn local_times_match_the_zone_database_across_clock_changes() {
        for zone in ["Europe/Berlin", "Asia/Shanghai", "America/New_York", "UTC"] {
            let z = Zone::parse(zone).unwrap();
            // Every 17 minutes over 2025.
            let mut ms = 1_735_689_600_000_i64;
            while ms < 1_767_225_600_000 {
                assert_eq!(format_time(ms, &z), jiff_text(ms, zone), "{zone} {ms}");
                ms += 17 * 60_000;
            }
        }
    }

    /// Epoch milliseconds of a UTC civil time.
    fn at(y: i16, mo: i8, d: i8, h: i8) -> i64 {
        jiff::civil::date(y, mo, d)
            .at(h, 0, 0, 0)
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .unwrap()
            .timestamp()
            .as_millisecond()
    }

    #[test]
    fn berlin_change_days_have_23_and_25_hour_buckets() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        let day = Grain::day();
        // 2025-03-30: clocks go from 02:00 to 03:00; the local day is 23 hours.
        let (s, e) = day.bucket(at(2025, 3, 30, 12), &berlin).unwrap();
        assert_eq!((s, e), (at(2025, 3, 29, 23), at(2025, 3, 30, 22)));
        assert_eq!(e - s, 23 * HOUR);
        assert_eq!(day.bucket_end(s, &berlin), e);
        assert_eq!(format_time(s, &berlin), "2025-03-30T00:00:00+01:00");
        // 2025-10-26: clocks go from 03:00 back to 02:00; the local day is 25 hours.
        let (s, e) = day.bucket(at(2025, 10, 26, 23) - 1, &berlin).unwrap();
        assert_eq!((s, e), (at(2025, 10, 25, 22), at(2025, 10, 26, 23)));
        assert_eq!(e - s, 25 * HOUR);
        assert_eq!(format_time(s, &berlin), "2025-10-26T00:00:00+02:00");
        assert_eq!(day.bucket(at(2025, 10, 26, 23), &berlin).unwrap().0, e);
        // Its hours: 25 buckets of one hour, 02:00 twice (at +02:00, then +01:00).
        let hours: Vec<_> = (0..25 * 4)
            .map(|q| Grain::hour().bucket(s + q * 15 * 60_000, &berlin).unwrap())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(hours.len(), 25);
        assert!(hours.iter().all(|(a, b)| b - a == HOUR));
        assert_eq!(
            format_time(hours[2].0, &berlin),
            "2025-10-26T02:00:00+02:00"
        );
        assert_eq!(
            format_time(hours[3].0, &berlin),
            "2025-10-26T02:00:00+01:00"
        );
        // A day-to-date count steps to the end of the long day, and no further.
        let cum = Grain::day_cumulative(Duration::from_secs(3_600));
        assert_eq!(cum.bucket_end(s, &berlin), e);
        assert_eq!(cum.step_end(e - 1, s), Some(e));
    }

    /// The rule worked out once per grain and zone ends each bucket where `bucket` ends
    /// it, for every kind of grain, in fixed and changing zones, across Berlin's change
    /// days and where the arithmetic saturates.
    #[test]
    fn end_rules_give_the_bucket_ends() {
        let grains = [
            Grain::hour(),
            Grain::day(),
            Grain::day_cumulative(Duration::from_secs(600)),
            Grain::parse("15m").unwrap(),
            Grain::range("promo", at(2025, 3, 29, 0), at(2025, 3, 31, 0)).unwrap(),
        ];
        let mut times: Vec<i64> = (0..200)
            .map(|i| at(2025, 3, 29, 0) + i * 17 * 60_000)
            .collect();
        times.extend((0..200).map(|i| at(2025, 10, 25, 0) + i * 17 * 60_000));
        times.extend([i64::MAX - HOUR / 2, i64::MIN / 2, 0]);
        for zone in ["UTC", "+08:00", "-05:30", "Europe/Berlin", "Asia/Shanghai"] {
            let zone = Zone::parse(zone).unwrap();
            for g in &grains {
                let rule = g.end_rule(&zone);
                for &ts in &times {
                    let Some((start, end)) = g.bucket(ts, &zone) else {
                        continue;
                    };
                    assert_eq!(rule.end(start, &zone), end, "{g:?} {ts}");
                    assert_eq!(g.bucket_end(start, &zone), end, "{g:?} {ts}");
                }
            }
        }
    }

    #[test]
    fn buckets_align_to_the_zone_and_ranges_exclude_outside_events() {
        let utc = Zone::utc();
        let ts = 1_763_712_000_123; // 2025-11-21T08:00:00.123Z
        let (s, e) = Grain::hour().bucket(ts, &utc).unwrap();
        assert_eq!((s, e), (1_763_712_000_000, 1_763_712_000_000 + HOUR));
        assert_eq!(format_time(s, &utc), "2025-11-21T08:00:00Z");
        for shanghai in ["+08:00", "Asia/Shanghai"] {
            let zone = Zone::parse(shanghai).unwrap();
            let (s, e) = Grain::day().bucket(ts, &zone).unwrap();
            assert_eq!(format_time(s, &zone), "2025-11-21T00:00:00+08:00");
            assert_eq!(format_time(s, &utc), "2025-11-20T16:00:00Z");
            assert_eq!(e - s, DAY);
        }
        let promo = Grain::range("promo", ts, ts + 10).unwrap();
        assert_eq!(promo.bucket(ts + 9, &utc), Some((ts, ts + 10)));
        assert_eq!(promo.bucket(ts + 10, &utc), None);
        assert_eq!(promo.bucket(ts - 1, &utc), None);
        assert_eq!(promo.length_ms(), 10);
        assert_eq!(promo.bucket_end(ts, &utc), ts + 10);
        assert_eq!(Grain::day().length_ms(), DAY);
        let cum = Grain::day_cumulative(Duration::from_secs(60));
        let (s, _) = cum.bucket(ts, &utc).unwrap();
        assert_eq!(cum.step_end(s, s), Some(s + 60_000));
        assert_eq!(cum.step_end(s + 60_000, s), Some(s + 120_000));
    }

    #[test]
    fn grains_durations_and_offsets_parse_with_clear_errors() {
        assert_eq!(Grain::parse("hour").unwrap(), Grain::hour());
        assert_eq!(
            Grain::parse("15m").unwrap(),
            Grain::tumbling("15m", Duration::from_secs(900))
        );
        assert_eq!(
            Grain::parse("day-cumulative:1m").unwrap(),
            Grain::day_cumulative(Duration::from_secs(60))
        );
        assert!(Grain::parse("weekly")
            .unwrap_err()
            .to_string()
            .contains("not a duration"));
        assert!(Grain::parse("2x")
            .unwrap_err()
            .to_string()
            .contains("`2x` is not a duration"));
        // Grains in TOML: durations and RFC 3339 instants, not milliseconds.
        #[derive(serde::Deserialize)]
        struct Config {
            grains: Vec<Grain>,
        }
        let config: Config = toml::from_str(
            r#"grains = [
                { type = "tumbling", name = "5m", size = "5m" },
                { type = "cumulative", name = "dtd", size = "1d", step = "1m" },
                { type = "range", name = "double11", start = "2025-11-11T00:00:00+08:00",
                  end = "2025-11-12T00:00:00+08:00" },
            ]"#,
        )
        .unwrap();
        let double11 = 1_762_790_400_000; // 2025-11-10T16:00:00Z
        assert_eq!(
            config.grains,
            vec![
                Grain::tumbling("5m", Duration::from_secs(300)),
                Grain::Cumulative {
                    name: "dtd".into(),
                    size: Duration::from_secs(86_400),
                    step: Duration::from_secs(60),
                },
                Grain::range("double11", double11, double11 + DAY).unwrap(),
            ]
        );
        assert!(config.grains.iter().all(|g| g.validate().is_ok()));
        assert!(toml::from_str::<Config>(
            r#"grains = [{ type = "tumbling", name = "h", size_ms = 3600000 }]"#
        )
        .is_err());
        assert!(Grain::Cumulative {
            name: "x".into(),
            size: Duration::from_secs(86_400),
            step: Duration::from_secs(7 * 3_600)
        }
        .validate()
        .is_err());
    }
}
