//! How many users new buckets are given room for, learnt from the buckets that closed.
//!
//! A bucket's user table starts at one cache line and doubles as users arrive: the usual
//! bucket of 83 users (one item in one hour) allocated four tables, moved its ids three
//! times and freed three tables on the way, which cost the counting worker more than
//! the inserts themselves. Buckets of one dimension set and grain tend to end at similar
//! sizes, hour after hour, so a new bucket is given room at once for as many users as a
//! quarter of the recently closed buckets of its set and grain had at most. Three
//! quarters of the buckets then grow past that room or fill it, so little memory is
//! held for users that never come; the others start at their final size.
//!
//! A hint changes where ids sit in memory, never what is counted; it is not part of a
//! checkpoint and starts again from nothing after a restore.

/// Room for new buckets per (dimension set, grain).
#[derive(Debug, Clone)]
pub(super) struct SizeHints {
    grains: usize,
    /// Per (set, grain): four times the running estimate of the lower quartile of
    /// closed buckets' users.
    quarters: Vec<u64>,
}

impl SizeHints {
    pub(super) fn new(sets: usize, grains: usize) -> Self {
        Self {
            grains,
            quarters: vec![0; sets.saturating_mul(grains)],
        }
    }

    fn slot(&self, set: u16, grain: u16) -> Option<usize> {
        let grain = usize::from(grain);
        (grain < self.grains).then(|| usize::from(set) * self.grains + grain)
    }

    /// Users to make room for in a new bucket of `set` and `grain`.
    #[inline]
    pub(super) fn room(&self, set: u16, grain: u16) -> usize {
        self.slot(set, grain)
            .and_then(|i| self.quarters.get(i))
            .map_or(0, |&q| usize::try_from(q / 4).unwrap_or(usize::MAX))
    }

    /// A bucket of `set` and `grain` closed with `users`. The estimate moves up by a
    /// quarter of a user when a bucket ends above it and down by three quarters when
    /// one ends below (a streaming quantile estimate: it settles where a quarter of the
    /// buckets end below it).
    pub(super) fn closed(&mut self, set: u16, grain: u16, users: u64) {
        let Some(slot) = self.slot(set, grain) else {
            return;
        };
        if let Some(q) = self.quarters.get_mut(slot) {
            let estimate = *q / 4;
            if users > estimate {
                *q = q.saturating_add(1);
            } else if users < estimate {
                *q = q.saturating_sub(3);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hint settles near the lower quartile of the sizes it is shown, per set and
    /// grain, and starts at no room.
    #[test]
    fn hints_settle_at_the_lower_quartile_per_set_and_grain() {
        let mut hints = SizeHints::new(2, 2);
        assert_eq!(hints.room(1, 1), 0);
        // Sizes 0..200 in a scrambled order, over and over: the lower quartile is 50.
        for round in 0..200u64 {
            for i in 0..200u64 {
                hints.closed(1, 0, (i * 73 + round) % 200);
                hints.closed(0, 1, 10);
            }
        }
        let room = hints.room(1, 0);
        assert!((40..=60).contains(&room), "{room}");
        assert_eq!(hints.room(0, 1), 10);
        assert_eq!(hints.room(0, 0), 0);
        assert_eq!(hints.room(1, 1), 0);
        // Set or grain out of range: no room, nothing recorded.
        hints.closed(9, 9, 1_000);
        hints.closed(0, 2, 1_000);
        assert_eq!(hints.room(9, 9), 0);
        assert_eq!(hints.room(0, 2), 0);
        assert_eq!(hints.room(1, 0), room);
    }
}
