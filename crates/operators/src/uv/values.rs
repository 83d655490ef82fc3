//! The values of one dimension set, packed into one string.
//!
//! A key holds its dimension values as one [`SmolStr`]: each value followed by the unit
//! separator U+001F. The values of a set are usually short (`app`, `guangdong`,
//! `item-1842`), so most packed strings fit the 23 bytes a `SmolStr` holds inline: the
//! key carries no pointer, cloning it allocates nothing, and it takes 24 bytes however
//! many fields the set has. A longer packed string is shared (see
//! [`super::dimension_value`]).
//!
//! A value that contains U+001F or U+001B has each of them escaped by a U+001B in front,
//! so packing is reversible for every string.

use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, SerializeSeq, Serializer};
use smol_str::{SmolStr, SmolStrBuilder};
use std::borrow::Cow;
use std::hash::{Hash, Hasher};

/// Ends each value.
const END: u8 = 0x1f;
/// Escapes an `END` or an `ESC` inside a value.
const ESC: u8 = 0x1b;

/// The values of one dimension set, in the set's order (see the module documentation).
///
/// Equal, ordered and hashed as the list of its values: two `DimValues` are equal
/// exactly when their values are.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
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
        let mut rest = self.0.as_str();
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

/// Packs the values of one set, one after the other, in place while they fit the 23
/// bytes a key holds inline: no allocation and no second copy for the usual short sets.
#[derive(Debug, Default)]
pub(super) struct Packer(SmolStrBuilder);

impl Packer {
    /// Appends `value`, escaped and ended.
    #[inline]
    pub(super) fn push(&mut self, value: &str) {
        // Both marks are control characters: one test per byte finds any value that
        // may need escaping (the loop escapes only the two marks).
        if value.bytes().any(|b| b <= END) {
            for c in value.chars() {
                if c == char::from(END) || c == char::from(ESC) {
                    self.0.push(char::from(ESC));
                }
                self.0.push(c);
            }
        } else {
            self.0.push_str(value);
        }
        self.0.push(char::from(END));
    }

    /// The packed values: inline when they fit, else shared (see
    /// [`super::dimension_value`]).
    #[inline]
    pub(super) fn finish(self) -> DimValues {
        if self.0.len() <= SmolStr::INLINE_CAP {
            DimValues(self.0.finish())
        } else {
            DimValues(super::dimension_value(self.0.as_str()))
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
}
