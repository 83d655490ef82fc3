//! Per-key timers in event time and processing time.

use crate::Timestamp;
use ferroflow_state::StateKey;
use hashbrown::DefaultHashBuilder;
use indexmap::IndexSet;
use std::collections::BTreeMap;

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeDomain {
    /// Fires when the watermark reaches the timer's timestamp.
    EventTime,
    /// Fires when the wall clock reaches the timer's timestamp.
    ProcessingTime,
}

/// A timer that fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timer {
    /// When it was set to fire.
    pub timestamp: Timestamp,
    /// Its clock.
    pub domain: TimeDomain,
}

/// Timers of one clock: at most one per (timestamp, key); fired in timestamp order, and in
/// registration order within a timestamp.
pub(crate) struct TimerQueue<K> {
    by_time: BTreeMap<Timestamp, IndexSet<K, DefaultHashBuilder>>,
    len: usize,
}

impl<K: StateKey> TimerQueue<K> {
    pub(crate) fn new() -> Self {
        Self {
            by_time: BTreeMap::new(),
            len: 0,
        }
    }

    pub(crate) fn register(&mut self, at: Timestamp, key: K) {
        if self.by_time.entry(at).or_default().insert(key) {
            self.len += 1;
        }
    }

    pub(crate) fn delete(&mut self, at: Timestamp, key: &K) {
        if let Some(keys) = self.by_time.get_mut(&at) {
            if keys.shift_remove(key) {
                self.len -= 1;
            }
            if keys.is_empty() {
                self.by_time.remove(&at);
            }
        }
    }

    /// Removes and returns every key of the earliest timestamp, if it is `<= upto`.
    pub(crate) fn pop_due(
        &mut self,
        upto: Timestamp,
    ) -> Option<(Timestamp, IndexSet<K, DefaultHashBuilder>)> {
        let entry = self.by_time.first_entry()?;
        if *entry.key() > upto {
            return None;
        }
        let (at, keys) = entry.remove_entry();
        self.len -= keys.len();
        Some((at, keys))
    }

    pub(crate) fn next_time(&self) -> Option<Timestamp> {
        self.by_time.keys().next().copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Every timer, grouped by key (for snapshots).
    pub(crate) fn by_key(&self) -> hashbrown::HashMap<K, Vec<Timestamp>> {
        let mut out: hashbrown::HashMap<K, Vec<Timestamp>> = hashbrown::HashMap::new();
        for (at, keys) in &self.by_time {
            for key in keys {
                out.entry(key.clone()).or_default().push(*at);
            }
        }
        out
    }
}

/// Both timer queues of one keyed operator instance.
pub(crate) struct Timers<K> {
    pub(crate) event: TimerQueue<K>,
    pub(crate) processing: TimerQueue<K>,
}

impl<K: StateKey> Timers<K> {
    pub(crate) fn new() -> Self {
        Self {
            event: TimerQueue::new(),
            processing: TimerQueue::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_time_then_registration_order_and_dedups() {
        let mut q = TimerQueue::new();
        q.register(20, 2u32);
        q.register(10, 1);
        q.register(20, 1);
        q.register(20, 2);
        assert_eq!(q.len(), 3);
        assert_eq!(q.next_time(), Some(10));
        assert!(q.pop_due(9).is_none());
        let (t, keys) = q.pop_due(25).unwrap();
        assert_eq!((t, keys.into_iter().collect::<Vec<_>>()), (10, vec![1]));
        q.register(20, 3);
        q.delete(20, &2);
        let (t, keys) = q.pop_due(25).unwrap();
        assert_eq!((t, keys.into_iter().collect::<Vec<_>>()), (20, vec![1, 3]));
        assert_eq!(q.len(), 0);
        assert!(q.pop_due(i64::MAX).is_none());
    }
}
