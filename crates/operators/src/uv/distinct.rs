//! Distinct-user sets: exact (compressed bitmaps of encoded ids) and approximate
//! (HyperLogLog++ sketches), both serializable and mergeable.
//!
//! **User id encoding (exact mode).** Ids are stored as 64-bit integers in a Roaring
//! treemap whenever that is reversible, and as strings otherwise:
//!
//! - a number, or a string of decimal digits without a leading zero below 2^63, is that
//!   number (so `1842` and `"1842"` are the same user);
//! - any other string of 1 to 7 bytes is packed: bit 63 set, bits 56..63 the length,
//!   the bytes big-endian in bits 0..56 (`"u-1842"` is one such integer);
//! - longer strings are kept as strings.
//!
//! [`UserId::decode`] inverts the encoding. Nothing is hashed in exact mode, so there
//! are no collisions.

pub use super::sketch::{roll_up, Sketch};
use super::small_set::SmallIds;
use roaring::RoaringTreemap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};

const PACKED: u64 = 1 << 63;

/// A user id, encoded for storage.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum UserId {
    /// A number or a packed short string.
    Int(u64),
    /// A string too long to pack.
    Str(Box<str>),
}

impl UserId {
    /// Encodes a string id.
    pub fn encode(id: &str) -> Self {
        let b = id.as_bytes();
        let decimal = !b.is_empty() && b.iter().all(u8::is_ascii_digit);
        if decimal && (b[0] != b'0' || b.len() == 1) {
            if let Ok(n) = id.parse::<u64>() {
                if n < PACKED {
                    return Self::Int(n);
                }
            }
        }
        if (1..=7).contains(&b.len()) {
            let mut v = PACKED | (b.len() as u64) << 56;
            for (i, byte) in b.iter().enumerate() {
                v |= u64::from(*byte) << (8 * (6 - i));
            }
            return Self::Int(v);
        }
        Self::Str(id.into())
    }

    /// Encodes a numeric id (below 2^63; larger ones are kept as their decimal text).
    #[inline]
    pub fn number(n: u64) -> Self {
        if n < PACKED {
            Self::Int(n)
        } else {
            Self::large_number(n)
        }
    }

    /// A numeric id too large for an integer slot, as its decimal text.
    #[cold]
    #[inline(never)]
    fn large_number(n: u64) -> Self {
        Self::Str(n.to_string().into())
    }

    /// The id as text: the inverse of [`UserId::encode`].
    pub fn decode(&self) -> String {
        match self {
            Self::Str(s) => s.to_string(),
            Self::Int(v) if v & PACKED == 0 => v.to_string(),
            Self::Int(v) => {
                let len = ((v >> 56) & 0x7f) as usize;
                let bytes: Vec<u8> = (0..len.min(7))
                    .map(|i| (v >> (8 * (6 - i))) as u8)
                    .collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
    }

    /// A 64-bit hash that is the same in every process and version (for sketches).
    pub fn stable_hash(&self) -> u64 {
        match self {
            Self::Int(v) => fmix64(*v),
            Self::Str(s) => {
                let mut h = StableHasher::default();
                h.write(s.as_bytes());
                h.finish()
            }
        }
    }
}

/// Integer ids a set keeps in its small table before it moves them into a bitmap.
const SMALL: usize = 256;

/// An exact set of users. Small sets (the usual bucket of one item and hour holds tens
/// of users) are a small hash table of ids: one allocation, 4 to 16 bytes a user, about
/// two probes per insert. From 256 integer ids on they move into a Roaring treemap,
/// about 2 bytes a user once dense. Ids that are not integers are kept as strings.
///
/// The set itself takes 40 bytes: the bitmap and the strings, which most buckets never
/// need, sit behind one pointer, so that a bucket's state entry stays small and more
/// open buckets share the CPU's caches.
#[derive(Debug, Clone, Default)]
pub struct ExactSet {
    small: SmallIds,
    large: Option<Box<Large>>,
}

/// The parts of an [`ExactSet`] beyond the small table.
#[derive(Debug, Clone, Default, PartialEq)]
struct Large {
    ints: RoaringTreemap,
    strs: BTreeSet<Box<str>>,
}

/// How an [`ExactSet`] is serialized: the small table's ids, the bitmap, the strings.
#[derive(Serialize)]
struct ExactSetOut<'a> {
    small: &'a SmallIds,
    ints: &'a RoaringTreemap,
    strs: &'a BTreeSet<Box<str>>,
}

/// An [`ExactSet`] as read.
#[derive(Deserialize)]
struct ExactSetIn {
    #[serde(default)]
    small: SmallIds,
    ints: RoaringTreemap,
    strs: BTreeSet<Box<str>>,
}

impl Serialize for ExactSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let none = Large::default();
        let large = self.large.as_deref().unwrap_or(&none);
        ExactSetOut {
            small: &self.small,
            ints: &large.ints,
            strs: &large.strs,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ExactSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let read = ExactSetIn::deserialize(deserializer)?;
        let large = (!read.ints.is_empty() || !read.strs.is_empty()).then(|| {
            Box::new(Large {
                ints: read.ints,
                strs: read.strs,
            })
        });
        Ok(Self {
            small: read.small,
            large,
        })
    }
}

impl PartialEq for ExactSet {
    /// The same users, however they are stored.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self.strs() == other.strs()
            && self
                .small
                .iter()
                .chain(other.small.iter())
                .all(|v| self.contains(&UserId::Int(v)) && other.contains(&UserId::Int(v)))
            && self
                .ints()
                .into_iter()
                .flat_map(|ints| ints.iter())
                .all(|v| other.contains(&UserId::Int(v)))
    }
}

impl ExactSet {
    /// Adds a user; true if it was not there.
    pub fn insert(&mut self, id: &UserId) -> bool {
        match id {
            UserId::Int(v) => self.insert_int(*v),
            UserId::Str(s) => {
                let strs = &mut self.large_mut().strs;
                if strs.contains(s) {
                    false
                } else {
                    strs.insert(s.clone())
                }
            }
        }
    }

    fn large_mut(&mut self) -> &mut Large {
        self.large.get_or_insert_with(Box::default)
    }

    /// The bitmap, once the set has moved into it.
    fn ints(&self) -> Option<&RoaringTreemap> {
        self.large
            .as_ref()
            .map(|l| &l.ints)
            .filter(|i| !i.is_empty())
    }

    fn strs(&self) -> Option<&BTreeSet<Box<str>>> {
        self.large
            .as_ref()
            .map(|l| &l.strs)
            .filter(|s| !s.is_empty())
    }

    fn insert_int(&mut self, v: u64) -> bool {
        if let Some(large) = self.large.as_mut().filter(|l| !l.ints.is_empty()) {
            return large.ints.insert(v);
        }
        // `u64::MAX` (which no encoding makes) cannot go into the small table.
        if v != u64::MAX && (self.small.len() < SMALL || self.small.contains(v)) {
            return self.small.insert(v);
        }
        self.move_to_bitmap();
        self.large_mut().ints.insert(v)
    }

    /// Moves the small table's ids into the bitmap.
    fn move_to_bitmap(&mut self) {
        let ints: RoaringTreemap = self.small.iter().collect();
        self.small.clear();
        self.large_mut().ints |= ints;
    }

    /// Starts loading the memory an insert of `id` will read first (a cache hint;
    /// changes nothing).
    pub fn prefetch(&self, id: &UserId) {
        if let (UserId::Int(v), None) = (id, self.ints()) {
            self.small.prefetch(*v);
        }
    }

    /// Adds every user of `other`.
    pub fn merge(&mut self, other: &ExactSet) {
        for v in other.small.iter() {
            self.insert_int(v);
        }
        if let Some(theirs) = other.ints() {
            if self.ints().is_none() {
                self.move_to_bitmap();
            }
            self.large_mut().ints |= theirs;
        }
        if let Some(theirs) = other.strs() {
            self.large_mut().strs.extend(theirs.iter().cloned());
        }
    }

    /// Number of distinct users.
    pub fn len(&self) -> u64 {
        let large = self
            .large
            .as_ref()
            .map_or(0, |l| l.ints.len() + l.strs.len() as u64);
        self.small.len() as u64 + large
    }

    /// True when no user was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: &UserId) -> bool {
        match id {
            UserId::Int(v) => {
                self.small.contains(*v) || self.ints().is_some_and(|i| i.contains(*v))
            }
            UserId::Str(s) => self.strs().is_some_and(|strs| strs.contains(s)),
        }
    }

    /// Bytes the set takes when serialized (a measure of its memory).
    pub fn serialized_bytes(&self) -> u64 {
        let large = self.large.as_ref().map_or(0, |l| {
            l.ints.serialized_size() as u64 + l.strs.iter().map(|s| s.len() as u64 + 8).sum::<u64>()
        });
        8 * self.small.len() as u64 + large
    }
}

/// MurmurHash3's 64-bit finalizer: a bijection that mixes every input bit into every
/// output bit.
pub(super) fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// A hasher whose output never changes between processes, platforms or versions: FNV-1a
/// over the bytes (integers little-endian), finished by MurmurHash3's 64-bit finalizer.
#[derive(Debug, Clone, Copy)]
pub struct StableHasher(u64);

impl Default for StableHasher {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, i: u64) {
        // An already mixed 64-bit value (see `UserId::stable_hash`) needs no more work.
        self.0 ^= i;
    }
    fn finish(&self) -> u64 {
        fmix64(self.0)
    }
}

/// Builds [`StableHasher`]s.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct StableState;

impl BuildHasher for StableState {
    type Hasher = StableHasher;
    fn build_hasher(&self) -> StableHasher {
        StableHasher(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_encode_reversibly_and_numbers_match_their_text() {
        for id in [
            "u-1842",
            "0",
            "7",
            "1842",
            "007",
            "abcdefg",
            "abcdefgh",
            "用户",
            "",
            "18446744073709551615",
        ] {
            assert_eq!(UserId::encode(id).decode(), id, "{id}");
        }
        assert_eq!(UserId::encode("1842"), UserId::number(1842));
        assert!(matches!(UserId::encode("u-1842"), UserId::Int(_)));
        assert!(matches!(UserId::encode("a-long-user-id"), UserId::Str(_)));
        assert_ne!(UserId::encode("007"), UserId::encode("7"));
    }

    #[test]
    fn small_sets_move_into_a_bitmap_and_merge_either_way() {
        let mut big = ExactSet::default();
        for v in 0..1_000u64 {
            assert!(big.insert(&UserId::number(v * 7)));
            assert!(!big.insert(&UserId::number(v * 7)));
        }
        assert_eq!(big.len(), 1_000);
        assert!(big.contains(&UserId::number(700)) && !big.contains(&UserId::number(701)));
        let mut small = ExactSet::default();
        for v in [1u64, 7, 14] {
            small.insert(&UserId::number(v));
        }
        let mut a = small.clone();
        a.merge(&big);
        let mut b = big.clone();
        b.merge(&small);
        assert_eq!(a.len(), 1_001);
        assert_eq!(a, b);
        let bytes = postcard::to_allocvec(&a).unwrap();
        assert_eq!(postcard::from_bytes::<ExactSet>(&bytes).unwrap(), b);
    }

    #[test]
    fn the_reserved_value_is_counted_like_any_other_id() {
        let mut s = ExactSet::default();
        s.insert(&UserId::number(1));
        assert!(s.insert(&UserId::Int(u64::MAX)));
        assert!(!s.insert(&UserId::Int(u64::MAX)));
        assert!(s.insert(&UserId::number(2)) && !s.insert(&UserId::number(1)));
        assert_eq!(s.len(), 3);
        assert!(s.contains(&UserId::Int(u64::MAX)) && s.contains(&UserId::number(1)));
    }

    #[test]
    fn exact_sets_count_merge_and_round_trip() {
        let mut a = ExactSet::default();
        assert!(a.insert(&UserId::encode("u-1")));
        assert!(!a.insert(&UserId::encode("u-1")));
        assert!(a.insert(&UserId::encode("a-rather-long-id")));
        assert!(!a.insert(&UserId::encode("a-rather-long-id")));
        let mut b = ExactSet::default();
        b.insert(&UserId::number(5));
        b.insert(&UserId::encode("u-1"));
        a.merge(&b);
        assert_eq!(a.len(), 3);
        let bytes = postcard::to_allocvec(&a).unwrap();
        assert_eq!(postcard::from_bytes::<ExactSet>(&bytes).unwrap(), a);
    }
}
