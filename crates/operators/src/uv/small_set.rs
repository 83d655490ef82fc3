//! A small set of integer user ids: an open-addressing hash table with linear probing.
//!
//! The usual bucket (one item in one hour) holds tens of users, and nearly every event
//! adds a user that is not there yet. A sorted vector pays a binary search (a branch
//! misprediction per level) and a shift of half the vector on every such insert; this
//! table pays one multiply and, on average, about two probes. It grows by doubling at
//! three quarters full, so it takes at most twice the memory of a vector of the same
//! ids (on average about as much as a vector grown by doubling).

use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, SerializeSeq, Serializer};

/// Marks an empty slot. No encoded user id has this value (plain numbers stay below
/// 2^63, and packed strings carry their length, at most 7, in bits 56..63); the set's
/// owner keeps it out.
const EMPTY: u64 = u64::MAX;

/// Slots of the first table.
const MIN_SLOTS: usize = 4;

/// A set of `u64` ids (never `u64::MAX`).
#[derive(Debug, Clone, Default)]
pub(super) struct SmallIds {
    /// A power of two of slots, or none before the first insert.
    slots: Vec<u64>,
    len: usize,
}

impl SmallIds {
    /// Number of ids.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The slot where `v`'s probe sequence starts (Fibonacci hashing: the high bits of
    /// a multiply, so ids that differ only in their high bits spread too).
    fn home(&self, v: u64) -> usize {
        let bits = self.slots.len().trailing_zeros();
        (v.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as usize
    }

    /// Adds `v`; true if it was not there. `v` must not be `u64::MAX`.
    pub(super) fn insert(&mut self, v: u64) -> bool {
        debug_assert_ne!(v, EMPTY);
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(v);
        loop {
            match self.slots[i] {
                EMPTY => {
                    self.slots[i] = v;
                    self.len += 1;
                    return true;
                }
                x if x == v => return false,
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Whether `v` is in the set.
    pub(super) fn contains(&self, v: u64) -> bool {
        if self.slots.is_empty() || v == EMPTY {
            return false;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(v);
        loop {
            match self.slots[i] {
                EMPTY => return false,
                x if x == v => return true,
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// The ids, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots.iter().copied().filter(|&v| v != EMPTY)
    }

    /// Removes every id and gives the memory back.
    pub(super) fn clear(&mut self) {
        *self = Self::default();
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; size]);
        self.len = 0;
        for v in old.into_iter().filter(|&v| v != EMPTY) {
            self.insert(v);
        }
    }
}

/// Serialized as a sorted sequence of ids: the same bytes for the same set, however it
/// was built.
impl Serialize for SmallIds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut ids: Vec<u64> = self.iter().collect();
        ids.sort_unstable();
        let mut seq = serializer.serialize_seq(Some(ids.len()))?;
        for v in &ids {
            seq.serialize_element(v)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for SmallIds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ids = Vec::<u64>::deserialize(deserializer)?;
        if ids.contains(&EMPTY) {
            return Err(serde::de::Error::custom(
                "a small id set holds the reserved value u64::MAX",
            ));
        }
        let mut set = Self::default();
        ids.into_iter().for_each(|v| {
            set.insert(v);
        });
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn behaves_like_a_set_of_the_same_ids() {
        let mut set = SmallIds::default();
        let mut model = BTreeSet::new();
        assert!(!set.contains(0) && !set.contains(EMPTY));
        // Ids that collide in the low bits and in the high bits, 0, and packed strings.
        let ids = (0..300u64)
            .map(|i| i << 40)
            .chain((0..300).map(|i| i * 1024))
            .chain((0..100).map(|i| (1 << 63) | (7 << 56) | i))
            .chain([0, 1, 2, 0, 1]);
        for v in ids {
            assert_eq!(set.insert(v), model.insert(v), "{v}");
            assert_eq!(set.len(), model.len());
        }
        assert!(model.iter().all(|&v| set.contains(v)));
        assert!(!set.contains(3) && !set.contains((1 << 40) + 1));
        let listed: BTreeSet<u64> = set.iter().collect();
        assert_eq!(listed, model);
        // At most three quarters full.
        assert!(set.len() * 4 <= set.slots.len() * 3);
        set.clear();
        assert_eq!((set.len(), set.iter().count()), (0, 0));
    }

    #[test]
    fn serializes_sorted_and_round_trips() {
        let mut a = SmallIds::default();
        let mut b = SmallIds::default();
        for v in [9u64, 3, 7, 1] {
            a.insert(v);
        }
        for v in [1u64, 7, 3, 9] {
            b.insert(v);
        }
        let bytes = postcard::to_allocvec(&a).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&b).unwrap());
        assert_eq!(
            postcard::from_bytes::<Vec<u64>>(&bytes).unwrap(),
            vec![1, 3, 7, 9]
        );
        let back: SmallIds = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.iter().collect::<BTreeSet<_>>(), a.iter().collect());
        let bad = postcard::to_allocvec(&vec![1u64, EMPTY]).unwrap();
        assert!(postcard::from_bytes::<SmallIds>(&bad).is_err());
    }
}
