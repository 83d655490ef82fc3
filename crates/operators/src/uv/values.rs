//! The values of one dimension set, packed into one string.
//!
//! A key holds its dimension values packed into one [`SmolStr`]: each value followed by
//! the unit separator U+001F. The values of a set are usually short (`app`, `guangdong`,
//! `item-1842`), so most packed strings fit the 23 bytes a `SmolStr` holds inline:
//! cloning the key allocates nothing, and its values take 24 bytes however many fields
//! the set has. A longer packed string is shared by the key's clones.
//!
//! A value that contains U+001F or U+001B has each of them escaped by a U+001B in front,
//! so packing is reversible for every string.

use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, SerializeSeq, Serializer};
use smol_str::{SmolStr, SmolStrBuilder};
use std::borrow::Cow;

/// Ends each value.
const END: u8 = 0x1f;
/// Escapes an `END` or an `ESC` inside a value.
const ESC: u8 = 0x1b;
/// `END` as a string, appended without encoding a `char`.
const END_STR: &str = "\u{1f}";

/// The values of one dimension set, in the set's order (see the module documentation).
/// Equal, ordered and hashed as the packed string; two `DimValues` are equal exactly
/// when their values are.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DimValues(SmolStr);

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

    /// The packed text.
    pub fn packed(&self) -> &str {
        &self.0
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
        self.0.is_empty()
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

/// Packs the values of one set, one after the other.
#[derive(Debug, Default)]
pub(super) struct Packer(SmolStrBuilder);

impl Packer {
    /// Appends `value`, escaped and ended.
    #[inline]
    pub(super) fn push(&mut self, value: &str) {
        // Both marks are control characters below U+0020: a value without any of those
        // (nearly every value) is copied as it is, tested with one compare a byte.
        if value.bytes().all(|b| b > END) {
            self.0.push_str(value);
        } else {
            for c in value.chars() {
                if c == char::from(END) || c == char::from(ESC) {
                    self.0.push(char::from(ESC));
                }
                self.0.push(c);
            }
        }
        self.0.push_str(END_STR);
    }

    /// The packed values.
    #[inline]
    pub(super) fn finish(self) -> DimValues {
        DimValues(self.0.finish())
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

    /// Bytes of packed text a `SmolStr` holds without allocating.
    const INLINE: usize = 23;

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
            // Serialized like the list of its values.
            let owned: Vec<String> = list.iter().map(|s| s.to_string()).collect();
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
                    assert_eq!(packed.0.is_heap_allocated(), 3 + n + escapes > INLINE);
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
            assert_eq!(px.packed().len() > INLINE, px.0.is_heap_allocated());
        }
    }
}
