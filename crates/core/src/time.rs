//! Event time: timestamps and watermarks.

use std::time::{SystemTime, UNIX_EPOCH};

/// A point in event or processing time: milliseconds since the Unix epoch, UTC.
pub type Timestamp = i64;

/// The watermark before any event has been seen.
pub const MIN_WATERMARK: Timestamp = Timestamp::MIN;

/// The watermark that closes event time: emitted when a bounded input ends, it fires every
/// pending event-time timer.
pub const MAX_WATERMARK: Timestamp = Timestamp::MAX;

/// The current wall-clock time as a [`Timestamp`].
pub fn now_millis() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
