//! Event time: timestamps and watermarks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
        .map_or(0, duration_millis)
}

/// A duration in whole milliseconds, as timestamps count time (saturating at
/// `Timestamp::MAX`): for adding a configured `Duration` to a [`Timestamp`].
pub fn duration_millis(d: Duration) -> Timestamp {
    Timestamp::try_from(d.as_millis()).unwrap_or(Timestamp::MAX)
}
