//! A small set of integer user ids: an open-addressing hash table with linear probing.
//!
//! The usual bucket (one item in one hour) holds tens of users, and nearly every event
//! adds a user that is not there yet. A sorted vector pays a binary search (a branch
//! misprediction per level) and a shift of half the vector on every such insert; this
//! table pays one multiply and, on average, about two probes. It grows by doubling at
//! three quarters full, so it takes at most twice the memory of a vector of the same
//! ids (on average about as much as a vector grown by doubling).
//!
//! Measured against `hashbrown::HashSet<u64>` (its default hasher) in the same place, on
//! the per-(item, hour) exact UV job (`uv_exact_memory/parallelism/1`, 20 M events, three
//! runs each, back to back): 10.9–11.2 M events per CPU-second with this table,
//! 7.7–8.6 M with hashbrown's (wall 17.7–18.6 M/s against 12.0–13.4 M/s). The dashboard
//! job, whose buckets are larger and fewer, runs the same with either.
//!
//! While every id fits in 32 bits (numeric ids below 4,294,967,295), the slots are 32
//! bits wide: half the memory, so more of the open buckets' tables stay in the CPU's
//! caches. The first id that does not fit widens the table to 64-bit slots for good.

use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, SerializeSeq, Serializer};

/// Marks an empty slot. No encoded user id has this value (plain numbers stay below
/// 2^63, and packed strings carry their length, at most 7, in bits 56..63); the set's
/// owner keeps it out.
const EMPTY: u64 = u64::MAX;

/// Bytes of the first table: one cache line, so that a bucket's first dozen users take
/// one allocation and one cache miss.
const FIRST_TABLE_BYTES: usize = 64;

/// A slot width: `u32` or `u64`, whose largest value marks an empty slot.
pub(super) trait Slot: Copy + Eq {
    const EMPTY: Self;
    fn get(self) -> u64;
    /// `v` in this width, if it fits and is not the empty mark.
    fn from_id(v: u64) -> Option<Self>;
}

impl Slot for u32 {
    const EMPTY: Self = u32::MAX;
    fn get(self) -> u64 {
        u64::from(self)
    }
    fn from_id(v: u64) -> Option<Self> {
        u32::try_from(v).ok().filter(|&n| n != u32::MAX)
    }
}

impl Slot for u64 {
    const EMPTY: Self = u64::MAX;
    fn get(self) -> u64 {
        self
    }
    fn from_id(v: u64) -> Option<Self> {
        (v != EMPTY).then_some(v)
    }
}

/// The table of one width.
#[derive(Debug, Clone, Default)]
pub(super) struct Table<S> {
    /// A power of two of slots, or none before the first insert.
    slots: Box<[S]>,
    len: usize,
}

impl<S: Slot> Table<S> {
    /// Slots of a table's first allocation.
    fn first_slots() -> usize {
        FIRST_TABLE_BYTES / size_of::<S>()
    }

    /// The slot where `v`'s probe sequence starts (Fibonacci hashing: the high bits of
    /// a multiply, so ids that differ only in their high bits spread too). The same for
    /// both widths.
    fn home(&self, v: u64) -> usize {
        let bits = self.slots.len().trailing_zeros();
        (v.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as usize
    }

    /// Adds `v` (not `S::EMPTY`); true if it was not there. Inlined: the growth, once
    /// per doubling, is kept out of line.
    #[inline]
    fn insert(&mut self, v: S) -> bool {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(v.get());
        loop {
            let x = self.slots[i];
            if x == S::EMPTY {
                self.slots[i] = v;
                self.len += 1;
                return true;
            }
            if x == v {
                return false;
            }
            i = (i + 1) & mask;
        }
    }

    fn contains(&self, v: S) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(v.get());
        loop {
            let x = self.slots[i];
            if x == S::EMPTY {
                return false;
            }
            if x == v {
                return true;
            }
            i = (i + 1) & mask;
        }
    }

    /// Starts loading the slot where `v`'s probe starts (a cache hint).
    fn prefetch(&self, v: u64) {
        if let Some(slot) = self.slots.get(self.home(v)) {
            ferroflow_state::hint::prefetch(slot);
        }
    }

    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots
            .iter()
            .filter(|&&v| v != S::EMPTY)
            .map(|v| v.get())
    }

    /// Doubles the table. The ids in it are distinct, so each goes to the first empty
    /// slot of its probe sequence without comparing it to the others.
    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(Self::first_slots());
        let old = std::mem::replace(&mut self.slots, vec![S::EMPTY; size].into_boxed_slice());
        let mask = size - 1;
        for v in old.iter().copied().filter(|&v| v != S::EMPTY) {
            let mut i = self.home(v.get());
            while self.slots[i] != S::EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = v;
        }
    }
}

/// A set of `u64` ids (never `u64::MAX`).
#[derive(Debug, Clone)]
pub(super) enum SmallIds {
    /// Every id fits in 32 bits.
    Narrow(Table<u32>),
    /// Some id does not.
    Wide(Table<u64>),
}

impl Default for SmallIds {
    fn default() -> Self {
        Self::Narrow(Table::default())
    }
}

impl SmallIds {
    /// Number of ids.
    pub(super) fn len(&self) -> usize {
        match self {
            Self::Narrow(t) => t.len,
            Self::Wide(t) => t.len,
        }
    }

    /// Adds `v`; true if it was not there. `v` must not be `u64::MAX`.
    #[inline]
    pub(super) fn insert(&mut self, v: u64) -> bool {
        debug_assert_ne!(v, EMPTY);
        match self {
            Self::Narrow(t) => match u32::from_id(v) {
                Some(n) => t.insert(n),
                None => self.widen().insert(v),
            },
            Self::Wide(t) => t.insert(v),
        }
    }

    /// Whether `v` is in the set.
    pub(super) fn contains(&self, v: u64) -> bool {
        match self {
            Self::Narrow(t) => u32::from_id(v).is_some_and(|n| t.contains(n)),
            Self::Wide(t) => v != EMPTY && t.contains(v),
        }
    }

    /// Starts loading the slot where `v` would be (a cache hint; changes nothing).
    pub(super) fn prefetch(&self, v: u64) {
        match self {
            Self::Narrow(t) => t.prefetch(v),
            Self::Wide(t) => t.prefetch(v),
        }
    }

    /// The ids, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        let (narrow, wide) = match self {
            Self::Narrow(t) => (Some(t.iter()), None),
            Self::Wide(t) => (None, Some(t.iter())),
        };
        narrow
            .into_iter()
            .flatten()
            .chain(wide.into_iter().flatten())
    }

    /// Bytes of the table's slots.
    #[cfg(test)]
    pub(super) fn heap_bytes(&self) -> usize {
        match self {
            Self::Narrow(t) => 4 * t.slots.len(),
            Self::Wide(t) => 8 * t.slots.len(),
        }
    }

    /// Removes every id and gives the memory back.
    pub(super) fn clear(&mut self) {
        *self = Self::default();
    }

    /// Moves the ids into 64-bit slots; returns the wide table.
    #[cold]
    #[inline(never)]
    fn widen(&mut self) -> &mut Table<u64> {
        if let Self::Narrow(t) = self {
            let mut wide = Table::<u64> {
                slots: vec![EMPTY; t.slots.len().max(Table::<u64>::first_slots())]
                    .into_boxed_slice(),
                len: 0,
            };
            t.iter().for_each(|v| {
                wide.insert(v);
            });
            *self = Self::Wide(wide);
        }
        match self {
            Self::Wide(t) => t,
            // Made wide above.
            Self::Narrow(_) => self.widen(),
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
        // At most three quarters full, and wide once an id needs it.
        assert!(matches!(set, SmallIds::Wide(_)));
        assert!(set.len() * 8 * 4 <= set.heap_bytes() * 3);
        set.clear();
        assert_eq!((set.len(), set.iter().count()), (0, 0));
    }

    #[test]
    fn stays_narrow_while_ids_fit_in_32_bits() {
        // The first table is one cache line of narrow slots; widening keeps its slots.
        let mut first = SmallIds::default();
        first.insert(1);
        assert_eq!(first.heap_bytes(), 64);
        first.insert(1 << 40);
        assert_eq!((first.heap_bytes(), first.len()), (128, 2));
        let mut set = SmallIds::default();
        for v in 0..1000u64 {
            assert!(set.insert(v * 4_000_000));
        }
        assert!(matches!(set, SmallIds::Narrow(_)));
        assert_eq!(set.heap_bytes(), 4 * 2048);
        // u32::MAX itself is an id, not the empty mark, and does not fit.
        assert!(!set.contains(u64::from(u32::MAX)) && !set.contains(1 << 40));
        assert!(set.insert(u64::from(u32::MAX)));
        assert!(matches!(set, SmallIds::Wide(_)));
        assert!(!set.insert(u64::from(u32::MAX)) && !set.insert(3_996_000_000));
        assert_eq!(set.len(), 1001);
        assert!((0..1000u64).all(|v| set.contains(v * 4_000_000)));
        assert!(set.contains(u64::from(u32::MAX)));
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
