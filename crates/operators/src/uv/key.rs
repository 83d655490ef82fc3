//! The key a UV count is kept under.

use super::distinct::fmix64;
use super::values::DimValues;
use ferroflow_core::Timestamp;
use serde::{Deserialize, Serialize};

/// What one count is kept under: a dimension set's values, a grain and a bucket.
///
/// A key carries a stable 64-bit hash of its fields, computed once when it is made:
/// hashing a key (for its key group, and in every state lookup) writes that one number,
/// and comparing two keys compares it first. The hash is not serialized; a key read back
/// computes it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "UvKeyFields")]
pub struct UvKey {
    #[serde(skip)]
    hash: u64,
    /// Index of the dimension set in [`UvConfig::dimensions`](super::UvConfig::dimensions).
    pub(super) set: u16,
    /// The event's values of the set's fields, in the set's order, packed into one
    /// string: held in the key itself up to 23 bytes, shared beyond. Cloning a key
    /// allocates nothing, and for inline values the worker that made the key and the
    /// worker that counts it share no memory.
    pub(super) values: DimValues,
    /// Index of the grain in [`UvConfig::grains`](super::UvConfig::grains).
    pub(super) grain: u16,
    /// Start of the bucket (epoch milliseconds).
    pub(super) bucket: Timestamp,
}

/// A [`UvKey`] as read, before its hash is computed.
#[derive(Deserialize)]
struct UvKeyFields {
    set: u16,
    values: DimValues,
    grain: u16,
    bucket: Timestamp,
}

impl From<UvKeyFields> for UvKey {
    fn from(f: UvKeyFields) -> Self {
        Self::new(f.set, f.values, f.grain, f.bucket)
    }
}

impl UvKey {
    /// The key of dimension set `set` with `values`, grain `grain` and the bucket
    /// starting at `bucket` (epoch milliseconds). `set` and `grain` are indexes into
    /// [`UvConfig::dimensions`](super::UvConfig::dimensions) and
    /// [`UvConfig::grains`](super::UvConfig::grains).
    #[inline]
    pub fn new(set: u16, values: DimValues, grain: u16, bucket: Timestamp) -> Self {
        let hash = key_hash(set, &values, grain, bucket);
        Self {
            hash,
            set,
            values,
            grain,
            bucket,
        }
    }

    /// Index of the dimension set in [`UvConfig::dimensions`](super::UvConfig::dimensions).
    pub fn set(&self) -> u16 {
        self.set
    }

    /// The values of the set's fields.
    pub fn values(&self) -> &DimValues {
        &self.values
    }

    /// Index of the grain in [`UvConfig::grains`](super::UvConfig::grains).
    pub fn grain(&self) -> u16 {
        self.grain
    }

    /// Start of the bucket (epoch milliseconds).
    pub fn bucket(&self) -> Timestamp {
        self.bucket
    }

    fn fields(&self) -> (u16, &DimValues, u16, Timestamp) {
        (self.set, &self.values, self.grain, self.bucket)
    }
}

/// A key's hash: the same in every process and version (it picks the key's key group).
/// The fields, then the packed values eight bytes at a time (the last word padded with
/// zeros), each folded in by a multiply and MurmurHash3's finalizer.
#[inline]
fn key_hash(set: u16, values: &DimValues, grain: u16, bucket: Timestamp) -> u64 {
    let Some((words, len)) = values.inline_words() else {
        return bytes_hash(set, values.bytes(), grain, bucket);
    };
    // Inline values are zero after their bytes: whole words are the padded tail.
    words
        .iter()
        .take(len.div_ceil(8))
        .fold(hash_start(set, grain, len, bucket), |h, &w| fold(h, w))
}

/// [`key_hash`] of packed values held as bytes.
fn bytes_hash(set: u16, values: &[u8], grain: u16, bucket: Timestamp) -> u64 {
    let mut h = hash_start(set, grain, values.len(), bucket);
    let mut chunks = values.chunks_exact(8);
    for c in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(c);
        h = fold(h, u64::from_le_bytes(word));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        h = fold(h, tail_word(rest));
    }
    h
}

/// The hash of a key's fixed fields and the length of its packed values.
#[inline]
fn hash_start(set: u16, grain: u16, len: usize, bucket: Timestamp) -> u64 {
    let head = u64::from(set) << 48 | u64::from(grain) << 32 | len as u64;
    fold(head, bucket as u64)
}

/// Folds one word into a key hash.
#[inline]
fn fold(h: u64, word: u64) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    fmix64((h ^ word).wrapping_mul(K))
}

/// The bytes of `rest` (1 to 7 of them) as a little-endian word padded with zeros, read
/// with fixed-size, overlapping loads instead of a copy of variable length.
#[inline]
pub(super) fn tail_word(rest: &[u8]) -> u64 {
    let n = rest.len();
    match rest {
        [a, b, c, d, ..] => {
            // The first four bytes, and the last four shifted so that only the bytes
            // after the first four remain (none for n = 4).
            let lo = u64::from(u32::from_le_bytes([*a, *b, *c, *d]));
            let last = u64::from(u32::from_le_bytes([
                rest[n - 4],
                rest[n - 3],
                rest[n - 2],
                rest[n - 1],
            ]));
            lo | (last >> (8 * (8 - n))) << 32
        }
        // One to three bytes: the first, the middle and the last (which overlap).
        [first, ..] => {
            let mid = rest[n / 2];
            let last = rest[n - 1];
            u64::from(*first) | u64::from(mid) << (8 * (n / 2)) | u64::from(last) << (8 * (n - 1))
        }
        [] => 0,
    }
}

/// The hash first, then the fixed-size fields, then the values. Inlined: every state
/// lookup of a key compares it.
impl PartialEq for UvKey {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && self.bucket == other.bucket
            && self.set == other.set
            && self.grain == other.grain
            && self.values == other.values
    }
}

impl Eq for UvKey {}

impl std::hash::Hash for UvKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Ordered by set, values, grain and bucket.
impl Ord for UvKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.fields().cmp(&other.fields())
    }
}

impl PartialOrd for UvKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word a tail of 1 to 7 bytes stands for: its bytes, zero-padded, little-endian.
    fn padded(rest: &[u8]) -> u64 {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        u64::from_le_bytes(word)
    }

    #[test]
    fn tail_words_are_the_padded_bytes() {
        let bytes: Vec<u8> = (1..=7u8).map(|i| i.wrapping_mul(0x9d) | 0x80).collect();
        for n in 1..=7 {
            assert_eq!(tail_word(&bytes[..n]), padded(&bytes[..n]), "{n} bytes");
            let ones = vec![0xffu8; n];
            assert_eq!(tail_word(&ones), padded(&ones), "{n} bytes of 0xff");
        }
    }

    /// Inline values are hashed as whole words, shared ones byte by byte: both give the
    /// same hash for the same packed bytes, at every length.
    #[test]
    fn word_and_byte_hashes_agree() {
        for n in 0..=30usize {
            let text: String = (0..n)
                .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
                .collect();
            for values in [vec![text.as_str()], vec!["x", text.as_str()], vec![]] {
                let v = DimValues::from_values(values.iter().copied());
                for (set, grain, bucket) in [(0, 0, 0), (3, 1, -77), (u16::MAX, 9, i64::MAX)] {
                    assert_eq!(
                        key_hash(set, &v, grain, bucket),
                        bytes_hash(set, v.packed().as_bytes(), grain, bucket),
                        "{values:?}"
                    );
                }
                assert_eq!(v.inline_words().is_some(), v.packed().len() <= 23);
            }
        }
    }

    const PINNED: [u64; 4] = [
        0xbf84_4b4f_2aca_2c44,
        0xf64d_6bc1_d95b_858a,
        0x9373_eac7_dd3d_3898,
        0x84b7_f1e8_fb7f_92be,
    ];

    /// A key's hash picks its key group, and checkpoints are restored by it: every
    /// version must give these values.
    #[test]
    fn key_hashes_never_change() {
        let hash = |set, values: &str, grain, bucket| {
            UvKey::new(
                set,
                DimValues::from_values(values.split(',').filter(|v| !v.is_empty())),
                grain,
                bucket,
            )
            .hash
        };
        assert_eq!(hash(0, "", 0, 1_763_712_000_000), PINNED[0]);
        assert_eq!(hash(1, "item-1842", 0, 1_763_712_000_000), PINNED[1]);
        assert_eq!(hash(2, "app,guangdong", 1, 1_763_683_200_000), PINNED[2]);
        assert_eq!(
            hash(3, "women,dresses,double11-promo", 2, -3_600_000),
            PINNED[3]
        );
    }
}
