//! Which partition (directory under the sink's root) a record goes to.

use super::config::PartitionConfig;
use ferroflow_core::{Error, Result, Timestamp, Zone};
use std::sync::Arc;

const DAY: i64 = 86_400_000;

/// A partition: its path under the sink's root (`dt=2026-12-05/hm=1405`) and, for a
/// time partition, the instant it ends. A partition with an end is committed once the
/// watermark passes it (plus the commit delay); one without is never committed by time
/// (only when the input ends).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Bucket {
    /// The partition's path, relative, without leading or trailing `/`.
    pub path: Arc<str>,
    /// When the partition's time range ends (exclusive), in epoch milliseconds.
    pub end: Option<Timestamp>,
}

/// Picks each record's partition. Closures `FnMut(&T) -> Result<Bucket>` are assigners.
pub trait BucketAssigner<T>: Send + 'static {
    /// The partition of `record`.
    ///
    /// # Errors
    /// A record that has no partition; it is sent to the sink's error path.
    fn assign(&mut self, record: &T) -> Result<Bucket>;
}

impl<T, F> BucketAssigner<T> for F
where
    F: FnMut(&T) -> Result<Bucket> + Send + 'static,
{
    fn assign(&mut self, record: &T) -> Result<Bucket> {
        self(record)
    }
}

/// Time partitions from each record's event time: `dt={yyyy-MM-dd}/hm={HHmm}` with
/// 5-minute partitions in `Asia/Shanghai`, say. Partitions start at local multiples of
/// the length from local midnight, so they follow the zone's daylight saving changes: an
/// hour that is repeated when clocks go back is one partition twice as long, an hour
/// skipped when they go forward has none.
pub struct TimeBuckets<T> {
    fields: Arc<Vec<Piece>>,
    length: i64,
    zone: Zone,
    time: fn(&T) -> Timestamp,
    /// The last partition handed out, with its start and end: records mostly come in
    /// time order, so most lookups stop here.
    last: Option<(Timestamp, Timestamp, Bucket)>,
}

impl<T> Clone for TimeBuckets<T> {
    fn clone(&self) -> Self {
        Self {
            fields: Arc::clone(&self.fields),
            length: self.length,
            zone: self.zone.clone(),
            time: self.time,
            last: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

impl<T> TimeBuckets<T> {
    /// Partitions as `config` says, of the event time `time` reads from a record.
    ///
    /// # Errors
    /// [`Error::Config`] for a template with an unknown field or unclosed brace, or a
    /// length that does not divide a day.
    pub fn new(config: &PartitionConfig, time: fn(&T) -> Timestamp) -> Result<Self> {
        let length = i64::try_from(config.length.as_millis()).unwrap_or(i64::MAX);
        if length < 1_000 || DAY % length != 0 {
            return Err(Error::Config(format!(
                "partition length {} must be at least 1s and divide a day (5m, 1h, 1d)",
                humantime::format_duration(config.length)
            )));
        }
        Ok(Self {
            fields: Arc::new(parse_template(&config.template)?),
            length,
            zone: config.time_zone.clone(),
            time,
            last: None,
        })
    }

    /// The partition holding instant `ts`.
    pub fn bucket_at(&mut self, ts: Timestamp) -> Bucket {
        if let Some((start, end, bucket)) = &self.last {
            if ts >= *start && ts < *end {
                return bucket.clone();
            }
        }
        let local = ts.saturating_add(self.zone.offset_ms_at(ts));
        let start_local = local - local.rem_euclid(self.length);
        let start = self.zone.local_to_utc(start_local);
        let end = self
            .zone
            .local_to_utc(start_local.saturating_add(self.length));
        let bucket = Bucket {
            path: render(&self.fields, start_local).into(),
            end: Some(end),
        };
        // A start computed after a skipped hour can lie after `ts`; cache only ranges
        // that hold it.
        if ts >= start && ts < end {
            self.last = Some((start, end, bucket.clone()));
        }
        bucket
    }
}

impl<T: 'static> BucketAssigner<T> for TimeBuckets<T> {
    fn assign(&mut self, record: &T) -> Result<Bucket> {
        let ts = (self.time)(record);
        Ok(self.bucket_at(ts))
    }
}

fn parse_template(template: &str) -> Result<Vec<Piece>> {
    let bad = |why: &str| Error::Config(format!("partition template `{template}`: {why}"));
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '{' {
            text.push(c);
            continue;
        }
        let mut field = String::new();
        loop {
            match chars.next() {
                Some('}') => break,
                Some(c) => field.push(c),
                None => return Err(bad("a `{` is not closed")),
            }
        }
        let mut rest = field.as_str();
        while !rest.is_empty() {
            let (piece, len) = if rest.starts_with("yyyy") {
                (Piece::Year, 4)
            } else if rest.starts_with("MM") {
                (Piece::Month, 2)
            } else if rest.starts_with("dd") {
                (Piece::Day, 2)
            } else if rest.starts_with("HH") {
                (Piece::Hour, 2)
            } else if rest.starts_with("mm") {
                (Piece::Minute, 2)
            } else if rest.starts_with("ss") {
                (Piece::Second, 2)
            } else {
                let c = rest.chars().next().unwrap_or('-');
                if c.is_ascii_alphabetic() {
                    return Err(bad(&format!(
                        "unknown field letter `{c}` in `{{{field}}}` (use yyyy, MM, dd, HH, mm, ss)"
                    )));
                }
                (Piece::Text(c.to_string()), c.len_utf8())
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            match piece {
                Piece::Text(t) => text.push_str(&t),
                other => pieces.push(other),
            }
            rest = &rest[len..];
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    if pieces.iter().all(|p| matches!(p, Piece::Text(_))) {
        return Err(bad("it has no time field"));
    }
    Ok(pieces)
}

/// The template filled in with local wall-clock time `local`.
fn render(pieces: &[Piece], local: i64) -> String {
    let ts = jiff::Timestamp::from_millisecond(local).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let dt = ts.to_zoned_datetime(jiff::tz::TimeZone::UTC).datetime();
    let mut out = String::with_capacity(32);
    for piece in pieces {
        use std::fmt::Write;
        let _ = match piece {
            Piece::Text(t) => {
                out.push_str(t);
                Ok(())
            }
            Piece::Year => write!(out, "{:04}", dt.year()),
            Piece::Month => write!(out, "{:02}", dt.month()),
            Piece::Day => write!(out, "{:02}", dt.day()),
            Piece::Hour => write!(out, "{:02}", dt.hour()),
            Piece::Minute => write!(out, "{:02}", dt.minute()),
            Piece::Second => write!(out, "{:02}", dt.second()),
        };
    }
    out.trim_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn buckets(template: &str, length: u64, zone: &str) -> TimeBuckets<i64> {
        let cfg = PartitionConfig {
            template: template.into(),
            length: Duration::from_secs(length),
            time_zone: Zone::parse(zone).unwrap(),
        };
        TimeBuckets::new(&cfg, |t: &i64| *t).unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn five_minute_partitions_in_shanghai() {
        let mut b = buckets("dt={yyyy-MM-dd}/hm={HHmm}", 300, "Asia/Shanghai");
        // 2026-12-05T16:07:30Z is 2026-12-06 00:07:30 in Shanghai.
        let got = b.bucket_at(at("2026-12-05T16:07:30Z"));
        assert_eq!(&*got.path, "dt=2026-12-06/hm=0005");
        assert_eq!(got.end, Some(at("2026-12-05T16:10:00Z")));
        // Cached range: the same partition up to its end, the next one after.
        assert_eq!(b.bucket_at(at("2026-12-05T16:09:59.999Z")), got);
        assert_eq!(
            &*b.bucket_at(at("2026-12-05T16:10:00Z")).path,
            "dt=2026-12-06/hm=0010"
        );
        assert_eq!(
            &*b.bucket_at(at("2026-12-05T15:59:59Z")).path,
            "dt=2026-12-05/hm=2355"
        );
    }

    #[test]
    fn hours_follow_daylight_saving() {
        let mut b = buckets("dt={yyyy-MM-dd}/h={HH}", 3600, "Europe/Berlin");
        // 2026-10-25: clocks go back at 03:00 CEST to 02:00 CET; local hour 02 happens
        // twice, as one partition of two hours.
        let first = b.bucket_at(at("2026-10-25T00:30:00Z")); // 02:30 CEST
        let second = b.bucket_at(at("2026-10-25T01:30:00Z")); // 02:30 CET
        assert_eq!(&*first.path, "dt=2026-10-25/h=02");
        assert_eq!(first, second);
        assert_eq!(first.end, Some(at("2026-10-25T02:00:00Z")));
        // 2026-03-29: clocks go forward at 02:00 CET to 03:00 CEST: hour 01 ends at the
        // change, and the next partition is hour 03.
        let before = b.bucket_at(at("2026-03-29T00:59:00Z"));
        assert_eq!(&*before.path, "dt=2026-03-29/h=01");
        assert_eq!(before.end, Some(at("2026-03-29T01:00:00Z")));
        assert_eq!(
            &*b.bucket_at(at("2026-03-29T01:00:00Z")).path,
            "dt=2026-03-29/h=03"
        );
    }

    #[test]
    fn daily_partitions_and_bad_templates() {
        let mut b = buckets("day={yyyyMMdd}", 86_400, "UTC");
        let got = b.bucket_at(at("2026-12-05T23:59:59Z"));
        assert_eq!(&*got.path, "day=20261205");
        assert_eq!(got.end, Some(at("2026-12-06T00:00:00Z")));
        let cfg = |t: &str, len: u64| PartitionConfig {
            template: t.into(),
            length: Duration::from_secs(len),
            time_zone: Zone::utc(),
        };
        let err = |t: &str, len: u64| {
            TimeBuckets::<i64>::new(&cfg(t, len), |t| *t)
                .err()
                .unwrap()
                .to_string()
        };
        assert!(err("dt={yyyy-MM-dd", 60).contains("not closed"));
        assert!(err("dt={yyyy-QQ}", 60).contains("`Q`"));
        assert!(err("static", 60).contains("no time field"));
        assert!(err("dt={yyyy}", 7 * 60).contains("divide a day"));
    }
}
