//! Watermark strategies: how a source assigns event time and generates watermarks.

use crate::{Timestamp, MIN_WATERMARK};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Extractor<T> = Arc<dyn Fn(&T) -> Timestamp + Send + Sync>;

/// How a source's records get event time, and how watermarks follow.
///
/// Watermarks are generated **per split**: a split's watermark is the largest timestamp it
/// has produced minus the allowed out-of-orderness minus one millisecond, and a worker's
/// watermark is the minimum over its splits. A split that has produced nothing for the
/// idleness timeout is excluded from that minimum until it produces again, so one quiet
/// partition does not hold event time back.
pub struct WatermarkStrategy<T> {
    pub(crate) extractor: Option<Extractor<T>>,
    pub(crate) out_of_orderness: i64,
    pub(crate) idleness: Option<Duration>,
}

impl<T> Clone for WatermarkStrategy<T> {
    fn clone(&self) -> Self {
        Self {
            extractor: self.extractor.clone(),
            out_of_orderness: self.out_of_orderness,
            idleness: self.idleness,
        }
    }
}

impl<T> fmt::Debug for WatermarkStrategy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatermarkStrategy")
            .field("event_time", &self.extractor.is_some())
            .field("out_of_orderness_ms", &self.out_of_orderness)
            .field("idleness", &self.idleness)
            .finish()
    }
}

impl<T> WatermarkStrategy<T> {
    /// No event time: the watermark stays at its minimum until the input ends.
    pub fn none() -> Self {
        Self {
            extractor: None,
            out_of_orderness: 0,
            idleness: None,
        }
    }

    /// Event time from `timestamp`; records may arrive up to `max_out_of_orderness` late
    /// relative to the largest timestamp seen in their split.
    pub fn bounded_out_of_orderness(
        max_out_of_orderness: Duration,
        timestamp: impl Fn(&T) -> Timestamp + Send + Sync + 'static,
    ) -> Self {
        Self {
            extractor: Some(Arc::new(timestamp)),
            out_of_orderness: i64::try_from(max_out_of_orderness.as_millis()).unwrap_or(i64::MAX),
            idleness: None,
        }
    }

    /// Event time from `timestamp`, which never decreases within a split.
    pub fn monotonous(timestamp: impl Fn(&T) -> Timestamp + Send + Sync + 'static) -> Self {
        Self::bounded_out_of_orderness(Duration::ZERO, timestamp)
    }

    /// Marks a split idle after `timeout` without records.
    #[must_use]
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idleness = Some(timeout);
        self
    }
}

/// Watermark bookkeeping of one split.
#[derive(Debug)]
pub(crate) struct SplitWatermark {
    max_ts: Timestamp,
    last_record: Instant,
    pub(crate) idle: bool,
}

impl SplitWatermark {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            max_ts: MIN_WATERMARK,
            last_record: now,
            idle: false,
        }
    }

    /// Takes note of a batch read from the split.
    pub(crate) fn observe<T>(
        &mut self,
        strategy: &WatermarkStrategy<T>,
        batch: &[T],
        now: Instant,
    ) {
        if batch.is_empty() {
            return;
        }
        self.last_record = now;
        self.idle = false;
        if let Some(f) = &strategy.extractor {
            let max = batch.iter().map(|r| f(r)).max().unwrap_or(MIN_WATERMARK);
            self.max_ts = self.max_ts.max(max);
        }
    }

    /// Marks the split idle if it has been quiet for the strategy's timeout.
    pub(crate) fn check_idle<T>(&mut self, strategy: &WatermarkStrategy<T>, now: Instant) {
        if let Some(timeout) = strategy.idleness {
            if now.duration_since(self.last_record) >= timeout {
                self.idle = true;
            }
        }
    }

    pub(crate) fn current<T>(&self, strategy: &WatermarkStrategy<T>) -> Timestamp {
        if self.max_ts == MIN_WATERMARK {
            return MIN_WATERMARK;
        }
        self.max_ts
            .saturating_sub(strategy.out_of_orderness)
            .saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_watermark_trails_max_timestamp() {
        let s =
            WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(100), |x: &i64| *x);
        let t0 = Instant::now();
        let mut w = SplitWatermark::new(t0);
        assert_eq!(w.current(&s), MIN_WATERMARK);
        w.observe(&s, &[1000, 1500, 1200], t0);
        assert_eq!(w.current(&s), 1399);
        w.observe(&s, &[900], t0);
        assert_eq!(w.current(&s), 1399, "watermarks never go back");
    }

    #[test]
    fn split_goes_idle_after_timeout_and_wakes_on_data() {
        let s =
            WatermarkStrategy::monotonous(|x: &i64| *x).with_idleness(Duration::from_millis(10));
        let t0 = Instant::now();
        let mut w = SplitWatermark::new(t0);
        w.check_idle(&s, t0 + Duration::from_millis(5));
        assert!(!w.idle);
        w.check_idle(&s, t0 + Duration::from_millis(10));
        assert!(w.idle);
        w.observe(&s, &[5], t0 + Duration::from_millis(11));
        assert!(!w.idle);
    }
}
