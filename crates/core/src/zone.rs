//! Time zones for local-time buckets and partitions: IANA zones with their daylight saving
//! rules (`Asia/Shanghai`, `Europe/Berlin`) and fixed offsets (`UTC`, `+08:00`), from
//! [jiff](https://docs.rs/jiff)'s copy of the IANA time-zone database (the system's
//! `/usr/share/zoneinfo` where there is one, else the copy compiled in).

use crate::{Error, Result, Timestamp};
use jiff::tz::{Offset, TimeZone};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

const SECOND: i64 = 1_000;
const HOUR: i64 = 3_600 * SECOND;
const DAY: i64 = 24 * HOUR;

/// A time zone, by IANA name or fixed offset. In configuration files it is the text it was
/// parsed from (`"Asia/Shanghai"`, `"UTC"`, `"+08:00"`).
///
/// ```
/// use ferroflow_core::Zone;
///
/// let berlin = Zone::parse("Europe/Berlin")?;
/// // 2025-03-30, the day clocks move forward, has 23 hours in Berlin.
/// let day = berlin.local_day(1_743_328_800_000); // 2025-03-30T10:00:00Z
/// assert_eq!(berlin.day_start(day + 1) - berlin.day_start(day), 23 * 3_600_000);
/// # Ok::<(), ferroflow_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Zone {
    name: String,
    tz: TimeZone,
    /// Milliseconds east of UTC, for zones that never change offset.
    fixed: Option<i64>,
}

impl Zone {
    /// Coordinated Universal Time.
    pub fn utc() -> Self {
        Self {
            name: "UTC".into(),
            tz: TimeZone::UTC,
            fixed: Some(0),
        }
    }

    /// Parses an IANA zone name (`Asia/Shanghai`, `America/New_York`), `UTC`/`Z`, or a
    /// fixed offset `+08:00`, `-05:30`, `+8`.
    ///
    /// # Errors
    /// [`Error::Config`] for text that is neither a known zone nor an offset.
    pub fn parse(text: &str) -> Result<Self> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("utc") || t == "Z" {
            return Ok(Self::utc());
        }
        if t.starts_with('+') || t.starts_with('-') {
            let ms = parse_offset_ms(t)?;
            let secs = i32::try_from(ms / SECOND).map_err(|_| bad_zone(text))?;
            let offset = Offset::from_seconds(secs).map_err(|_| bad_zone(text))?;
            return Ok(Self {
                name: t.to_string(),
                tz: TimeZone::fixed(offset),
                fixed: Some(ms),
            });
        }
        let tz = TimeZone::get(t).map_err(|e| {
            Error::Config(format!(
                "`{text}` is not a time zone: {e} (give an IANA name such as Asia/Shanghai, \
                 UTC, or an offset such as +08:00)"
            ))
        })?;
        let fixed = tz
            .to_fixed_offset()
            .ok()
            .map(|o| i64::from(o.seconds()) * SECOND);
        Ok(Self {
            name: t.to_string(),
            tz,
            fixed,
        })
    }

    /// The name it was parsed from.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The offset east of UTC in milliseconds, if the zone never changes it.
    pub fn fixed_offset_ms(&self) -> Option<i64> {
        self.fixed
    }

    /// The offset east of UTC in force at `ts`, in milliseconds.
    pub fn offset_ms_at(&self, ts: Timestamp) -> i64 {
        if let Some(fixed) = self.fixed {
            return fixed;
        }
        i64::from(self.tz.to_offset(to_jiff(ts)).seconds()) * SECOND
    }

    /// The local calendar day of `ts`, as days since 1970-01-01.
    pub fn local_day(&self, ts: Timestamp) -> i64 {
        ts.saturating_add(self.offset_ms_at(ts)).div_euclid(DAY)
    }

    /// The first instant after `after` at which local clocks in this zone show
    /// `hour:minute` (on a day when that time does not exist, the instant clocks jump
    /// past it; when it happens twice, the first).
    pub fn next_local_time(&self, after: Timestamp, hour: i8, minute: i8) -> Timestamp {
        let fallback = after.saturating_add(DAY);
        let Ok(time) = jiff::civil::Time::new(hour, minute, 0, 0) else {
            return fallback;
        };
        let today = to_jiff(after).to_zoned_datetime(self.tz.clone()).date();
        let mut day = today;
        for _ in 0..3 {
            if let Ok(at) = day.to_datetime(time).to_zoned_datetime(self.tz.clone()) {
                let ms = at.timestamp().as_millisecond();
                if ms > after {
                    return ms;
                }
            }
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => break,
            }
        }
        fallback
    }

    /// The instant at which the local wall-clock time `local` (milliseconds since
    /// 1970-01-01T00:00 on this zone's clocks) occurs. A time that occurs twice (clocks
    /// turned back) gives the earlier instant; one skipped (clocks turned forward) is
    /// read with the offset from before the change, which lands after the gap.
    pub fn local_to_utc(&self, local: i64) -> Timestamp {
        if let Some(fixed) = self.fixed {
            return local.saturating_sub(fixed);
        }
        let civil = to_jiff(local).to_zoned_datetime(TimeZone::UTC).datetime();
        match civil.to_zoned_datetime(self.tz.clone()) {
            Ok(z) => z.timestamp().as_millisecond(),
            Err(_) => local.saturating_sub(self.offset_ms_at(local)),
        }
    }

    /// The first instant of local calendar day `day` (days since 1970-01-01). Days are
    /// 23 or 25 hours long where clocks change; where midnight does not exist the day
    /// starts at the first time that does.
    pub fn day_start(&self, day: i64) -> Timestamp {
        let midnight = day.saturating_mul(DAY);
        if let Some(fixed) = self.fixed {
            return midnight.saturating_sub(fixed);
        }
        let local = to_jiff(midnight)
            .to_zoned_datetime(TimeZone::UTC)
            .datetime();
        match local
            .to_zoned_datetime(self.tz.clone())
            .and_then(|z| z.start_of_day())
        {
            Ok(z) => z.timestamp().as_millisecond(),
            // Outside the years jiff covers (-9999 to 9999): the offset in force at the
            // nearest covered instant.
            Err(_) => midnight.saturating_sub(self.offset_ms_at(midnight)),
        }
    }
}

/// `ts` as a jiff timestamp, clamped to the years jiff covers.
fn to_jiff(ts: Timestamp) -> jiff::Timestamp {
    let ms = ts.clamp(
        jiff::Timestamp::MIN.as_millisecond(),
        jiff::Timestamp::MAX.as_millisecond(),
    );
    jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

fn bad_zone(text: &str) -> Error {
    Error::Config(format!(
        "`{text}` is not a time zone (give an IANA name such as Asia/Shanghai, UTC, or an \
         offset such as +08:00 or -05:30)"
    ))
}

/// Parses `+08:00`, `-05:30` or `+8`; milliseconds east of UTC.
fn parse_offset_ms(text: &str) -> Result<i64> {
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(bad_zone(text)),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let h: i64 = h.parse().map_err(|_| bad_zone(text))?;
    let m: i64 = m.parse().map_err(|_| bad_zone(text))?;
    if h > 14 || m > 59 {
        return Err(bad_zone(text));
    }
    Ok(sign * (h * HOUR + m * 60 * SECOND))
}

impl Default for Zone {
    fn default() -> Self {
        Self::utc()
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Zone {}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({})", self.name)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl std::str::FromStr for Zone {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl Serialize for Zone {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Epoch milliseconds of a UTC civil time.
    fn utc(y: i16, mo: i8, d: i8, h: i8, mi: i8) -> i64 {
        jiff::civil::date(y, mo, d)
            .at(h, mi, 0, 0)
            .to_zoned_datetime(TimeZone::UTC)
            .unwrap()
            .timestamp()
            .as_millisecond()
    }

    #[test]
    fn names_and_offsets_parse_with_clear_errors() {
        assert_eq!(Zone::parse("UTC").unwrap().fixed_offset_ms(), Some(0));
        assert_eq!(Zone::parse("Z").unwrap(), Zone::utc());
        assert_eq!(
            Zone::parse("+08:00").unwrap().fixed_offset_ms(),
            Some(8 * HOUR)
        );
        assert_eq!(
            Zone::parse("-05:30").unwrap().offset_ms_at(0),
            -(5 * HOUR + 30 * 60_000)
        );
        let shanghai = Zone::parse("Asia/Shanghai").unwrap();
        assert_eq!(shanghai.offset_ms_at(utc(2025, 7, 1, 0, 0)), 8 * HOUR);
        assert_eq!(shanghai.name(), "Asia/Shanghai");
        for bad in ["Mars/Olympus", "+25:00", "8", ""] {
            let e = Zone::parse(bad).unwrap_err().to_string();
            assert!(e.contains("time zone"), "{bad}: {e}");
        }
        let z: Zone = serde_json::from_str("\"Europe/Berlin\"").unwrap();
        assert_eq!(serde_json::to_string(&z).unwrap(), "\"Europe/Berlin\"");
        assert!(serde_json::from_str::<Zone>("\"Nowhere\"").is_err());
    }

    #[test]
    fn berlin_days_have_23_and_25_hours_when_clocks_change() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        // 2025-03-30: 02:00 CET becomes 03:00 CEST (01:00Z).
        let day = berlin.local_day(utc(2025, 3, 30, 12, 0));
        assert_eq!(berlin.day_start(day), utc(2025, 3, 29, 23, 0));
        assert_eq!(berlin.day_start(day + 1), utc(2025, 3, 30, 22, 0));
        // 2025-10-26: 03:00 CEST becomes 02:00 CET (01:00Z).
        let day = berlin.local_day(utc(2025, 10, 26, 12, 0));
        assert_eq!(berlin.day_start(day), utc(2025, 10, 25, 22, 0));
        assert_eq!(berlin.day_start(day + 1), utc(2025, 10, 26, 23, 0));
        assert_eq!(berlin.offset_ms_at(utc(2025, 10, 26, 0, 59)), 2 * HOUR);
        assert_eq!(berlin.offset_ms_at(utc(2025, 10, 26, 1, 0)), HOUR);
        // Local days are whole days of the zone, not of UTC.
        assert_eq!(berlin.local_day(utc(2025, 10, 25, 22, 0)), day);
        assert_eq!(berlin.local_day(utc(2025, 10, 25, 21, 59)), day - 1);
    }

    #[test]
    fn fixed_offsets_and_utc_keep_their_arithmetic() {
        let sh = Zone::parse("+08:00").unwrap();
        let ts = utc(2025, 11, 21, 8, 0);
        let day = sh.local_day(ts);
        assert_eq!(sh.day_start(day), utc(2025, 11, 20, 16, 0));
        assert_eq!(Zone::utc().day_start(0), 0);
        assert_eq!(Zone::utc().local_day(-1), -1);
        // The far ends of time do not panic.
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        let _ = berlin.day_start(berlin.local_day(i64::MIN));
        let _ = berlin.day_start(berlin.local_day(i64::MAX));
    }

    #[test]
    fn the_next_local_time_of_day_follows_the_zones_clock() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        // 02:30 in Berlin is 00:30Z in summer; asked at 00:00Z, it is today's.
        assert_eq!(
            berlin.next_local_time(utc(2025, 7, 1, 0, 0), 2, 30),
            utc(2025, 7, 1, 0, 30)
        );
        // Asked just after it, tomorrow's.
        assert_eq!(
            berlin.next_local_time(utc(2025, 7, 1, 0, 30), 2, 30),
            utc(2025, 7, 2, 0, 30)
        );
        // 2025-03-30 has no 02:30 in Berlin: the instant clocks jumped past it.
        assert_eq!(
            berlin.next_local_time(utc(2025, 3, 29, 23, 0), 2, 30),
            utc(2025, 3, 30, 1, 30)
        );
        // 2025-10-26 has 02:30 twice: the first.
        assert_eq!(
            berlin.next_local_time(utc(2025, 10, 25, 23, 0), 2, 30),
            utc(2025, 10, 26, 0, 30)
        );
        let shanghai = Zone::parse("Asia/Shanghai").unwrap();
        assert_eq!(
            shanghai.next_local_time(utc(2025, 11, 21, 8, 0), 10, 15),
            utc(2025, 11, 22, 2, 15)
        );
        // An hour that is no time of day: a day later.
        assert_eq!(Zone::utc().next_local_time(0, 25, 0), 86_400_000);
    }
}
