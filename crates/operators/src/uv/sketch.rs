//! HyperLogLog++ sketches of users with an exact front, serializable and mergeable, and
//! the roll-up of stored sketches to a coarser dimension.

use super::distinct::{fmix64, StableState, UserId};
use super::small_set::SmallIds;
use ferroflow_core::{CodecError, Error, Result};
use hyperloglogplus::{HyperLogLog, HyperLogLogPlus};
use serde::{Deserialize, Serialize};

/// Users a sketch keeps exactly, at most, before it becomes a HyperLogLog++ sketch:
/// 256 from precision 13 on, `2^(precision - 5)` below, so that from precision 7 on the
/// exact table (at most 8 bytes a slot, at most three quarters full, 64 bytes at least)
/// never takes more memory than the `0.75 × 2^precision` bytes of registers it stands
/// in for.
fn exact_limit(precision: u8) -> usize {
    (1usize << precision.saturating_sub(5)).min(256)
}

/// A HyperLogLog++ sketch of users, with an exact front.
///
/// The usual bucket (one item in one hour) holds tens of users, far fewer than a sketch
/// needs before it estimates anything. Up to 256 users (`2^(precision - 5)` below
/// precision 13), a sketch therefore keeps them in a small hash table and counts them
/// exactly: about two probes an insert and no allocation beyond the table. Each user is
/// kept as the pre-image of its stable hash ([`UserId::stable_hash`]) under MurmurHash3's
/// finalizer, which is a bijection: an integer id is itself (so the table keeps 32-bit
/// slots while every id fits), another id is the finalizer's inverse of its hash. Two
/// users are therefore counted as one only when their stable hashes collide, which
/// integer ids never do and other ids do with probability below `n² / 2^65`. The next
/// user moves the table into a HyperLogLog++ sketch (`hyperloglogplus`) of the stable
/// hashes, whose relative standard error is about `1.04 / sqrt(2^precision)` (0.81% at
/// precision 14). Both forms merge with each other when their precisions agree, so
/// counts can be rolled up after the fact.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "RawSketch")]
pub struct Sketch {
    precision: u8,
    form: Form,
}

/// A sketch as read, before its precision is checked.
#[derive(Deserialize)]
struct RawSketch {
    precision: u8,
    form: StoredForm,
}

impl TryFrom<RawSketch> for Sketch {
    type Error = Error;
    fn try_from(raw: RawSketch) -> Result<Self> {
        let mut sketch = Self::new(raw.precision)?;
        match raw.form {
            StoredForm::Hashes(hashes) => hashes.iter().for_each(|h| sketch.add(fmix64_inverse(h))),
            StoredForm::Hll(h) => sketch.form = Form::Hll(h),
            StoredForm::Ids(ids) => sketch.form = Form::Ids(ids),
        }
        Ok(sketch)
    }
}

/// A sketch in memory.
#[derive(Debug, Clone)]
enum Form {
    /// The users, exactly, as pre-images of their stable hashes.
    Ids(SmallIds),
    /// The HyperLogLog++ sketch.
    Hll(Box<HyperLogLogPlus<u64, StableState>>),
}

/// The forms as stored, by variant index (postcard writes the index).
#[derive(Deserialize)]
enum StoredForm {
    /// The stable hashes of the users: how sketches kept their exact front before
    /// pre-images. Read, never written.
    #[serde(rename = "Exact")]
    Hashes(SmallIds),
    /// The HyperLogLog++ sketch.
    Hll(Box<HyperLogLogPlus<u64, StableState>>),
    /// Pre-images of the users' stable hashes.
    Ids(SmallIds),
}

impl Serialize for Form {
    /// As the [`StoredForm`] of the same name and index.
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Self::Hll(h) => serializer.serialize_newtype_variant("StoredForm", 1, "Hll", h),
            Self::Ids(ids) => serializer.serialize_newtype_variant("StoredForm", 2, "Ids", ids),
        }
    }
}

/// The tables' empty mark, which no table holds: the one user whose pre-image it is goes
/// straight to HyperLogLog++.
const EMPTY: u64 = u64::MAX;

/// The inverse of [`fmix64`].
fn fmix64_inverse(mut k: u64) -> u64 {
    // A shift by 33 of a 64-bit xorshift is its own inverse; the multipliers are the
    // inverses, mod 2^64, of fmix64's.
    k ^= k >> 33;
    k = k.wrapping_mul(0x9cb4_b2f8_1293_37db);
    k ^= k >> 33;
    k = k.wrapping_mul(0x4f74_430c_22a5_4005);
    k ^ (k >> 33)
}

/// What the front keeps for `id`: the pre-image of its stable hash under [`fmix64`].
fn preimage(id: &UserId) -> u64 {
    match id {
        UserId::Int(v) => *v,
        other => fmix64_inverse(other.stable_hash()),
    }
}

impl Sketch {
    /// An empty sketch; `precision` is 4 to 18.
    pub fn new(precision: u8) -> Result<Self> {
        // The precisions `hyperloglogplus` accepts; checked here so that a new sketch
        // allocates nothing until its first user.
        if !(4..=18).contains(&precision) {
            return Err(Error::Config(format!(
                "HyperLogLog precision {precision}: must be 4 to 18"
            )));
        }
        Ok(Self {
            precision,
            form: Form::Ids(SmallIds::default()),
        })
    }

    fn empty_hll(precision: u8) -> Result<Box<HyperLogLogPlus<u64, StableState>>> {
        HyperLogLogPlus::new(precision, StableState)
            .map(Box::new)
            .map_err(|e| {
                Error::Config(format!(
                    "HyperLogLog precision {precision}: {e:?} (4 to 18)"
                ))
            })
    }

    /// The precision the sketch was made with.
    pub fn precision(&self) -> u8 {
        self.precision
    }

    /// True while the sketch still counts exactly.
    pub fn is_exact(&self) -> bool {
        matches!(self.form, Form::Ids(_))
    }

    /// Adds a user.
    pub fn insert(&mut self, id: &UserId) {
        self.add(preimage(id));
    }

    /// Starts loading the memory an insert of `id` will read first (a cache hint;
    /// changes nothing).
    pub fn prefetch(&self, id: &UserId) {
        if let Form::Ids(set) = &self.form {
            set.prefetch(preimage(id));
        }
    }

    /// Adds the user whose stable hash is `fmix64(pre)`.
    fn add(&mut self, pre: u64) {
        match &mut self.form {
            Form::Ids(set) => {
                let limit = exact_limit(self.precision);
                if pre != EMPTY && (set.len() < limit || set.contains(pre)) {
                    set.insert(pre);
                    return;
                }
            }
            Form::Hll(h) => {
                h.insert(&fmix64(pre));
                return;
            }
        }
        if let Some(h) = self.make_hll() {
            h.insert(&fmix64(pre));
        }
    }

    /// Moves the exact front into a HyperLogLog++ sketch; the sketch, or `None` if its
    /// precision is invalid (which [`Sketch::new`] and deserialisation rule out).
    fn make_hll(&mut self) -> Option<&mut HyperLogLogPlus<u64, StableState>> {
        if let Form::Ids(set) = &self.form {
            let mut h = Self::empty_hll(self.precision).ok()?;
            set.iter().for_each(|pre| h.insert(&fmix64(pre)));
            self.form = Form::Hll(h);
        }
        match &mut self.form {
            Form::Hll(h) => Some(h),
            Form::Ids(_) => None,
        }
    }

    /// Adds every user of `other` (same precision).
    pub fn merge(&mut self, other: &Sketch) -> Result<()> {
        if self.precision != other.precision {
            return Err(Error::codec(
                "HyperLogLog",
                CodecError::new(format!(
                    "sketches of precision {} and {} cannot be merged",
                    other.precision, self.precision
                )),
            ));
        }
        match &other.form {
            Form::Ids(set) => set.iter().for_each(|pre| self.add(pre)),
            Form::Hll(theirs) => {
                let precision = self.precision;
                let mine = self.make_hll().ok_or_else(|| {
                    Error::codec(
                        "HyperLogLog",
                        CodecError::new(format!("precision {precision} (4 to 18)")),
                    )
                })?;
                mine.merge(theirs).map_err(|e| {
                    Error::codec(
                        "HyperLogLog",
                        CodecError::new(format!("merging sketches: {e:?}")),
                    )
                })?;
            }
        }
        Ok(())
    }

    /// The estimated number of distinct users (exact while [`Sketch::is_exact`]).
    pub fn estimate(&mut self) -> u64 {
        match &mut self.form {
            Form::Ids(set) => set.len() as u64,
            Form::Hll(h) => h.count().round() as u64,
        }
    }

    /// The sketch as hex text (its postcard encoding), for storing beside a row.
    pub fn to_hex(&self) -> Result<String> {
        let bytes = postcard::to_allocvec(self).map_err(|e| {
            Error::codec(
                "HyperLogLog",
                CodecError::with_source("encoding a sketch", e),
            )
        })?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// A sketch from [`Sketch::to_hex`] text.
    pub fn from_hex(text: &str) -> Result<Self> {
        let bad = || {
            Error::codec(
                "HyperLogLog",
                CodecError::new("a sketch is not valid hex text"),
            )
        };
        if !text.len().is_multiple_of(2) {
            return Err(bad());
        }
        let bytes = (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(bad)
            })
            .collect::<Result<Vec<u8>>>()?;
        postcard::from_bytes(&bytes).map_err(|e| {
            Error::codec(
                "HyperLogLog",
                CodecError::with_source("decoding a sketch", e),
            )
        })
    }

    /// The relative standard error of this precision.
    pub fn standard_error(precision: u8) -> f64 {
        1.04 / f64::from(1u32 << precision).sqrt()
    }
}

/// Rolls stored sketches up to a coarser dimension: every sketch whose key maps to the
/// same group is merged, e.g. UV by goods to UV by brand. Returns each group's merged
/// sketch.
pub fn roll_up<K, G: Ord>(
    sketches: impl IntoIterator<Item = (K, Sketch)>,
    mut group: impl FnMut(&K) -> G,
) -> Result<std::collections::BTreeMap<G, Sketch>> {
    let mut out: std::collections::BTreeMap<G, Sketch> = std::collections::BTreeMap::new();
    for (k, s) in sketches {
        match out.entry(group(&k)) {
            std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge(&s)?,
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(s);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sketch of users `range` (as `user-{u}` ids).
    fn sketch_of(p: u8, range: std::ops::Range<u64>) -> Sketch {
        let mut s = Sketch::new(p).unwrap();
        range.for_each(|u| s.insert(&UserId::encode(&format!("user-{u}"))));
        s
    }

    #[test]
    fn sketches_count_exactly_until_their_limit_then_estimate() {
        let mut s = Sketch::new(14).unwrap();
        for u in 0..256u64 {
            let id = UserId::encode(&format!("user-{u}"));
            s.insert(&id);
            s.insert(&id);
            assert_eq!(s.estimate(), u + 1);
        }
        assert!(s.is_exact());
        s.insert(&UserId::encode("user-256"));
        assert!(!s.is_exact());
        // HyperLogLog++ is still all but exact this far below its register count.
        let est = s.estimate();
        assert!((255..=259).contains(&est), "{est}");
        // Low precisions keep fewer hashes: never much more memory than the registers.
        assert!(sketch_of(4, 0..1).is_exact() && !sketch_of(4, 0..2).is_exact());
        assert!(sketch_of(8, 0..8).is_exact() && !sketch_of(8, 0..9).is_exact());
        assert!(sketch_of(12, 0..128).is_exact() && !sketch_of(12, 0..129).is_exact());
    }

    #[test]
    fn exact_and_estimating_sketches_merge_like_one_sketch_of_every_user() {
        let p = 12;
        let mut whole = sketch_of(p, 0..5_000);
        let want = whole.estimate();
        // Estimating into exact, exact into estimating, and exact into exact past the
        // limit all give the sketch of every user.
        let mut a = sketch_of(p, 0..100);
        a.merge(&sketch_of(p, 100..5_000)).unwrap();
        let mut b = sketch_of(p, 100..5_000);
        b.merge(&sketch_of(p, 0..100)).unwrap();
        let mut c = sketch_of(p, 0..200);
        c.merge(&sketch_of(p, 150..300)).unwrap();
        assert_eq!((a.estimate(), b.estimate()), (want, want));
        assert!(!c.is_exact());
        assert_eq!(c.estimate(), sketch_of(p, 0..300).estimate());
        let mut d = sketch_of(14, 0..100);
        d.merge(&sketch_of(14, 50..150)).unwrap();
        assert!(d.is_exact());
        assert_eq!(d.estimate(), 150);
        // Precisions must agree in either form.
        assert!(sketch_of(12, 0..3).merge(&sketch_of(14, 0..3)).is_err());
        assert!(sketch_of(12, 0..3).merge(&sketch_of(14, 0..5_000)).is_err());
    }

    /// A sketch as stored before pre-images: the users' stable hashes, as postcard
    /// writes variant 0 of the form.
    fn stored_hashes(p: u8, ids: impl Iterator<Item = UserId>) -> Vec<u8> {
        #[derive(Serialize)]
        enum Old {
            Exact(SmallIds),
        }
        #[derive(Serialize)]
        struct OldSketch {
            precision: u8,
            form: Old,
        }
        let mut set = SmallIds::default();
        ids.for_each(|id| {
            set.insert(id.stable_hash());
        });
        postcard::to_allocvec(&OldSketch {
            precision: p,
            form: Old::Exact(set),
        })
        .unwrap()
    }

    fn sketch_of_ints(p: u8, range: std::ops::Range<u64>) -> Sketch {
        let mut s = Sketch::new(p).unwrap();
        range.for_each(|u| s.insert(&UserId::number(u)));
        s
    }

    #[test]
    fn the_front_keeps_integer_ids_as_they_are_and_reads_sketches_of_hashes() {
        for k in [0u64, 1, 42, u64::MAX, 1 << 63, 0x0123_4567_89ab_cdef] {
            assert_eq!(fmix64_inverse(fmix64(k)), k);
            assert_eq!(fmix64(fmix64_inverse(k)), k);
        }
        let ints = |r: std::ops::Range<u64>| r.map(UserId::number);
        let mut s = sketch_of_ints(14, 0..100);
        let long = UserId::encode("a-user-id-too-long-to-pack");
        s.insert(&long);
        s.insert(&long);
        s.insert(&UserId::number(7));
        assert_eq!(s.estimate(), 101);
        // Integer ids keep 32-bit slots until another kind of id arrives.
        let narrow = sketch_of_ints(14, 0..100);
        let (Form::Ids(n), Form::Ids(w)) = (&narrow.form, &s.form) else {
            panic!("not exact")
        };
        assert_eq!((n.heap_bytes(), w.heap_bytes()), (4 * 256, 8 * 256));
        // A stored sketch of hashes reads back as the same users and merges both ways.
        let mut old: Sketch = postcard::from_bytes(&stored_hashes(14, ints(50..150))).unwrap();
        assert!(old.is_exact());
        assert_eq!(old.estimate(), 100);
        let mut a = s.clone();
        a.merge(&old).unwrap();
        old.merge(&s).unwrap();
        assert_eq!((a.estimate(), old.estimate()), (151, 151));
        // Past the limit, both become the same HyperLogLog++ sketch of stable hashes.
        let mut new = sketch_of_ints(12, 0..3_000);
        let mut read: Sketch = postcard::from_bytes(&stored_hashes(12, ints(0..128))).unwrap();
        ints(128..3_000).for_each(|id| read.insert(&id));
        assert!(!new.is_exact() && !read.is_exact());
        assert_eq!(new.estimate(), read.estimate());
        let mut direct = HyperLogLogPlus::<u64, _>::new(12, StableState).unwrap();
        ints(0..3_000).for_each(|id| direct.insert(&id.stable_hash()));
        assert_eq!(new.estimate(), direct.count().round() as u64);
        // The one user whose pre-image is the empty mark goes to HyperLogLog++.
        let mut edge = Sketch::new(14).unwrap();
        edge.insert(&UserId::Int(u64::MAX));
        assert!(!edge.is_exact());
        assert_eq!(edge.estimate(), 1);
    }

    #[test]
    fn sketches_round_trip_in_both_forms_and_bad_precisions_are_refused() {
        for n in [0u64, 10, 5_000] {
            let mut s = sketch_of(14, 0..n);
            let mut back = Sketch::from_hex(&s.to_hex().unwrap()).unwrap();
            assert_eq!(
                (back.is_exact(), back.estimate()),
                (s.is_exact(), s.estimate())
            );
        }
        let bad = Sketch {
            precision: 30,
            form: Form::Ids(SmallIds::default()),
        };
        assert!(Sketch::from_hex(&bad.to_hex().unwrap()).is_err());
    }

    #[test]
    fn sketches_stay_within_their_error_bound_merge_and_roll_up() {
        let p = 14;
        let mut whole = Sketch::new(p).unwrap();
        let mut halves = [Sketch::new(p).unwrap(), Sketch::new(p).unwrap()];
        let n = 200_000u64;
        for u in 0..n {
            let id = UserId::encode(&format!("user-{u}"));
            whole.insert(&id);
            halves[(u % 2) as usize].insert(&id);
        }
        let bound = 4.0 * Sketch::standard_error(p) * n as f64;
        let est = whole.estimate();
        assert!((est as f64 - n as f64).abs() < bound, "{est} vs {n}");
        // A sketch survives serialization and merges to the same estimate.
        let bytes = postcard::to_allocvec(&halves[1]).unwrap();
        let second: Sketch = postcard::from_bytes(&bytes).unwrap();
        let rolled = roll_up([(1, halves[0].clone()), (2, second)], |_| "all").unwrap();
        let mut merged = rolled["all"].clone();
        assert_eq!(merged.estimate(), est);
        assert!(Sketch::new(3).is_err());
        assert!(Sketch::new(12).unwrap().merge(&whole).is_err());
    }
}
