//! The values of one dimension set, packed into one string.
//!
//! A key holds its dimension values packed: each value followed by the unit separator
//! U+001F. The values of a set are usually short (`app`, `guangdong`, `item-1842`), so
//! most packed strings fit the 23 bytes a key holds inline: the key carries no pointer,
//! cloning it allocates nothing, and it takes 24 bytes however many fields the set has.
//! The inline bytes are zero after the packed string, so the key hash and comparisons
//! read them as three whole words. A longer packed string is shared (see
//! [`super::dimension_value`]).
//!
//! A value that contains U+001F or U+001B has each of them escaped by a U+001B in front,
//! so packing is reversible for every string.

use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, SerializeSeq, Serializer};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Ends each value.
const END: u8 = 0x1f;
/// Escapes an `END` or an `ESC` inside a value.
const ESC: u8 = 0x1b;
/// Bytes of packed values a key holds inline.
pub(super) const INLINE: usize = 23;

/// The values of one dimension set, in the set's order (see the module documentation).
///
/// Equal, ordered and hashed as the list of its values: two `DimValues` are equal
/// exactly when their values are.
#[derive(Clone, Default)]
pub struct DimValues(Repr);

/// A packed string of at most [`INLINE`] bytes is always inline, a longer one always
/// shared: equal values have the same form.
#[derive(Clone, PartialEq, Eq)]
enum Repr {
    Inline(Inline),
    /// A longer packed string, shared by the keys that hold it.
    Shared(Arc<str>),
}

/// Packed bytes held in a key: the bytes, then zeros, then their length. In this order
/// (`repr(C)`), so that comparing two is comparing 24 contiguous bytes, which compiles
/// to three word comparisons.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Inline {
    bytes: [u8; INLINE],
    len: Len,
}

impl Default for Repr {
    fn default() -> Self {
        Self::Inline(Inline {
            bytes: [0; INLINE],
            len: Len::default(),
        })
    }
}

/// The length of inline bytes: the 232 values a byte can take besides these leave the
/// enum room for its tag, so that a key's values take 24 bytes in either form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(u8)]
#[rustfmt::skip]
enum Len {
    #[default] L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11,
    L12, L13, L14, L15, L16, L17, L18, L19, L20, L21, L22, L23,
}

#[rustfmt::skip]
const LENS: [Len; INLINE + 1] = {
    use Len::*;
    [
        L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11,
        L12, L13, L14, L15, L16, L17, L18, L19, L20, L21, L22, L23,
    ]
};

const _: () = assert!(size_of::<DimValues>() == 24);

/// The `i`-th little-endian word of `bytes` (zero-padded to 24).
#[inline]
fn word(bytes: &[u8; INLINE], i: usize) -> u64 {
    let mut w = [0u8; 8];
    match i {
        0 => w.copy_from_slice(&bytes[0..8]),
        1 => w.copy_from_slice(&bytes[8..16]),
        _ => w[..7].copy_from_slice(&bytes[16..23]),
    }
    u64::from_le_bytes(w)
}

impl DimValues {
    /// No values (the whole site).
    pub fn new() -> Self {
        Self::default()
    }

    /// Packs `values`.
    pub fn from_values<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut packer = Packer::default();
        values.into_iter().for_each(|v| packer.push(v));
        packer.finish()
    }

    /// The packed bytes.
    #[inline]
    pub(super) fn bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline(Inline { bytes, len }) => &bytes[..*len as usize],
            Repr::Shared(text) => text.as_bytes(),
        }
    }

    /// The packed bytes as little-endian words, zero-padded, if they are inline.
    #[inline]
    pub(super) fn inline_words(&self) -> Option<([u64; 3], usize)> {
        match &self.0 {
            Repr::Inline(Inline { bytes, len }) => Some((
                [word(bytes, 0), word(bytes, 1), word(bytes, 2)],
                *len as usize,
            )),
            Repr::Shared(_) => None,
        }
    }

    /// The packed text.
    pub fn packed(&self) -> &str {
        match &self.0 {
            // Every inline string is packed from whole `str`s and ASCII marks, so it is
            // always UTF-8: the default is never taken.
            Repr::Inline(..) => std::str::from_utf8(self.bytes()).unwrap_or_default(),
            Repr::Shared(text) => text,
        }
    }

    /// The values, in order. A value is borrowed unless it had to be escaped.
    pub fn iter(&self) -> impl Iterator<Item = Cow<'_, str>> + '_ {
        let mut rest = self.packed();
        std::iter::from_fn(move || {
            let (value, tail) = next_value(rest)?;
            rest = tail;
            Some(value)
        })
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True for the whole site's empty set.
    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }
}

/// Inline values compare as three words; shared ones as strings.
impl PartialEq for DimValues {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for DimValues {}

/// Ordered as the packed strings.
impl Ord for DimValues {
    fn cmp(&self, other: &Self) -> Ordering {
        self.bytes().cmp(other.bytes())
    }
}

impl PartialOrd for DimValues {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// As the list of values.
impl std::fmt::Debug for DimValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DimValues")
            .field(&self.iter().collect::<Vec<_>>())
            .finish()
    }
}

/// Packs the values of one set, one after the other, into the 23 bytes a key holds
/// inline while they fit: no allocation and no second copy for the usual short sets.
/// The bytes are gathered as three little-endian words, from word-sized reads of each
/// value, so that nothing reads back as a word what was just written a few bytes at a
/// time (which stalls a CPU until the bytes reach its cache).
#[derive(Debug, Default)]
pub(super) struct Packer {
    /// The packed bytes so far, zero after `len`.
    words: [u64; 3],
    len: usize,
    /// The packed text, once it is longer than [`INLINE`] bytes.
    long: Option<String>,
}

/// True if a word has a byte below 0x20 (both marks are such control characters):
/// subtracting 0x20 from every byte then sets the top bit of a byte whose own top bit
/// was clear, and only then.
#[inline]
fn has_control(w: u64) -> bool {
    const LOW: u64 = 0x2020_2020_2020_2020;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    w.wrapping_sub(LOW) & !w & HIGH != 0
}

/// Sets the bytes of `w` (a word whose bytes past the first `8 - at % 8` may spill into
/// the next word) at byte `at` of `words`; bytes past the third word are dropped.
#[inline]
fn or_at(words: &mut [u64; 3], w: u64, at: usize) {
    let shifted = u128::from(w) << (8 * (at % 8));
    let (lo, hi) = (shifted as u64, (shifted >> 64) as u64);
    match at / 8 {
        0 => {
            words[0] |= lo;
            words[1] |= hi;
        }
        1 => {
            words[1] |= lo;
            words[2] |= hi;
        }
        _ => words[2] |= lo,
    }
}

impl Packer {
    /// Appends `value`, escaped and ended.
    #[inline]
    pub(super) fn push(&mut self, value: &str) {
        if !self.push_inline(value.as_bytes(), true) {
            self.push_slow(value);
        }
    }

    /// Appends `bytes` and an end mark to the inline words if they fit there and, when
    /// `plain` is asked for, `bytes` has no control byte; false (and nothing changed)
    /// otherwise.
    #[inline]
    fn push_inline(&mut self, bytes: &[u8], plain: bool) -> bool {
        let start = self.len;
        let end = start + bytes.len();
        if self.long.is_some() || end >= INLINE {
            return false;
        }
        let mut words = self.words;
        let mut control = false;
        let mut chunks = bytes.chunks_exact(8);
        let mut at = start;
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            let w = u64::from_le_bytes(w);
            control |= has_control(w);
            or_at(&mut words, w, at);
            at += 8;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let w = super::key::tail_word(rest);
            // The padding is read as 0xff bytes, which are no control bytes.
            control |= has_control(w | !0u64 << (8 * rest.len()));
            or_at(&mut words, w, at);
        }
        if plain && control {
            return false;
        }
        or_at(&mut words, u64::from(END), end);
        self.words = words;
        self.len = end + 1;
        true
    }

    /// A value with a control byte (which may be a mark to escape), or one past the
    /// inline bytes.
    #[cold]
    fn push_slow(&mut self, value: &str) {
        let escaped: Cow<'_, str> = if value.bytes().any(|b| b == END || b == ESC) {
            let mut escaped = String::with_capacity(value.len() + 2);
            for c in value.chars() {
                if c == char::from(END) || c == char::from(ESC) {
                    escaped.push(char::from(ESC));
                }
                escaped.push(c);
            }
            Cow::Owned(escaped)
        } else {
            Cow::Borrowed(value)
        };
        if !self.push_inline(escaped.as_bytes(), false) {
            self.push_long(&escaped);
        }
    }

    /// The inline words as bytes.
    #[inline]
    fn inline_bytes(&self) -> [u8; INLINE] {
        let [a, b, c] = self.words.map(u64::to_le_bytes);
        let mut bytes = [0u8; INLINE];
        bytes[..8].copy_from_slice(&a);
        bytes[8..16].copy_from_slice(&b);
        bytes[16..].copy_from_slice(&c[..7]);
        bytes
    }

    /// Appends past the inline bytes: the packed text moves to a string.
    #[cold]
    fn push_long(&mut self, value: &str) {
        let inline = self.inline_bytes();
        let len = self.len;
        let long = self.long.get_or_insert_with(|| {
            // The inline bytes are whole `str`s and marks: always UTF-8, so nothing is
            // replaced.
            String::from_utf8_lossy(&inline[..len]).into_owned()
        });
        long.push_str(value);
        long.push(char::from(END));
    }

    /// The packed values: inline when they fit, else shared (see
    /// [`super::dimension_value`]).
    #[inline]
    pub(super) fn finish(self) -> DimValues {
        match (&self.long, LENS.get(self.len)) {
            (None, Some(&len)) => DimValues(Repr::Inline(Inline {
                bytes: self.inline_bytes(),
                len,
            })),
            _ => self.finish_long(),
        }
    }

    #[cold]
    fn finish_long(self) -> DimValues {
        match &self.long {
            Some(text) => DimValues(Repr::Shared(Arc::from(super::dimension_value(text)))),
            // `len` stays below the inline bytes' size while there is no long text.
            None => DimValues::default(),
        }
    }
}

/// The first value of `packed` and what follows it.
fn next_value(packed: &str) -> Option<(Cow<'_, str>, &str)> {
    let bytes = packed.as_bytes();
    let mut escaped = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            ESC => {
                escaped = true;
                i += 2;
            }
            END => {
                let raw = packed.get(..i)?;
                let rest = packed.get(i + 1..)?;
                let value = if escaped {
                    Cow::Owned(unescape(raw))
                } else {
                    Cow::Borrowed(raw)
                };
                return Some((value, rest));
            }
            _ => i += 1,
        }
    }
    None
}

fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == char::from(ESC) {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

/// Hashed as the list of values (a length, then each value as `str` hashes): the same
/// hash, and so the same key group, as a `Vec<String>` of the values.
impl Hash for DimValues {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.len());
        self.iter().for_each(|v| v.as_ref().hash(state));
    }
}

/// Serialized as the sequence of values.
impl Serialize for DimValues {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for v in self.iter() {
            seq.serialize_element(v.as_ref())?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for DimValues {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let values = Vec::<String>::deserialize(deserializer)?;
        Ok(Self::from_values(values.iter().map(String::as_str)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of<T: Hash>(t: &T) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        t.hash(&mut h);
        h.finish()
    }

    #[test]
    fn packs_any_values_reversibly() {
        let lists: [&[&str]; 10] = [
            &[],
            // Control characters other than the two marks are kept as they are.
            &["\t\u{1}x", "\u{1e}"],
            // Packed, 23 bytes (inline) and 24 (shared).
            &["a-value-of-22-bytes..."],
            &["a-value-of-23-bytes...."],
            &[""],
            &["", ""],
            &["app", "guangdong"],
            &["a\u{1f}b", "\u{1b}", "c\u{1b}\u{1f}"],
            &["用户", "a-value-far-longer-than-a-small-string-holds"],
            &["\u{1f}"],
        ];
        for list in lists {
            let v = DimValues::from_values(list.iter().copied());
            let back: Vec<String> = v.iter().map(Cow::into_owned).collect();
            assert_eq!(back, list, "{:?}", v.packed());
            assert_eq!(v.len(), list.len());
            assert_eq!(v.is_empty(), list.is_empty());
            // Hashed and serialized like the list of its values.
            let owned: Vec<String> = list.iter().map(|s| s.to_string()).collect();
            assert_eq!(hash_of(&v), hash_of(&owned));
            let bytes = postcard::to_allocvec(&v).unwrap();
            assert_eq!(bytes, postcard::to_allocvec(&owned).unwrap());
            assert_eq!(postcard::from_bytes::<DimValues>(&bytes).unwrap(), v);
        }
        let controls = DimValues::from_values(["\t\u{1}x", "\u{1e}"]);
        assert_eq!(controls.packed(), "\t\u{1}x\u{1f}\u{1e}\u{1f}");
        // Different lists never pack alike.
        let a = DimValues::from_values(["a\u{1f}", "b"]);
        let b = DimValues::from_values(["a", "\u{1f}b"]);
        assert_ne!(a, b);
        assert!(!DimValues::from_values(["app", "guangdong"])
            .packed()
            .is_empty());
    }

    /// A mark anywhere in a value of any length is escaped (else the value would come
    /// back split or changed), and other bytes are not.
    #[test]
    fn marks_are_escaped_at_every_position() {
        for n in 1..=25usize {
            for i in 0..n {
                for b in [b'\0', 0x1b, 0x1f, 0x20, 0x7f] {
                    let mut v = vec![b'a'; n];
                    v[i] = b;
                    let v = String::from_utf8(v).unwrap();
                    let packed = DimValues::from_values(["x", v.as_str()]);
                    let back: Vec<String> = packed.iter().map(Cow::into_owned).collect();
                    assert_eq!(back, ["x", v.as_str()], "{b:#x} at {i} of {n}");
                    let escapes = usize::from(b == 0x1b || b == 0x1f);
                    assert_eq!(packed.packed().len(), 2 + n + 1 + escapes);
                    // Held inline exactly when the packed text fits.
                    assert_eq!(packed.inline_words().is_some(), 3 + n + escapes <= INLINE);
                }
            }
        }
    }

    /// Equality and order are those of the packed strings, in either form and at the
    /// edge between them.
    #[test]
    fn values_compare_as_their_packed_strings() {
        let lists: Vec<Vec<String>> = (0..30usize)
            .flat_map(|n| {
                let a: String = "abcdefghijklmnopqrstuvwxyz0123".chars().take(n).collect();
                let b = format!("{a}z");
                [vec![a.clone()], vec![b], vec![a.clone(), a]]
            })
            .collect();
        let packed: Vec<DimValues> = lists
            .iter()
            .map(|l| DimValues::from_values(l.iter().map(String::as_str)))
            .collect();
        for (x, px) in packed.iter().enumerate() {
            for (y, py) in packed.iter().enumerate() {
                assert_eq!(px == py, lists[x] == lists[y], "{px:?} {py:?}");
                assert_eq!(px.cmp(py), px.packed().cmp(py.packed()));
            }
            // A copy made apart from the first is equal to it.
            let again = DimValues::from_values(lists[x].iter().map(String::as_str));
            assert_eq!(&again, px);
            assert_eq!(px.packed().len() <= INLINE, px.inline_words().is_some());
        }
    }
}
