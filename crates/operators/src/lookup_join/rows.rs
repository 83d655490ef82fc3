//! A worker's share of a full table, laid out for looking up a batch of keys at once.
//!
//! A full table is built once per load and then only read, a batch of keys at a time,
//! at random: in a large table nearly every lookup misses the processor's caches.
//! Looked up one after another, as with `hashbrown`, each lookup waits for two dependent
//! reads from memory (control bytes, then bucket), and the processor overlaps only the
//! few lookups its window of instructions holds. [`Rows::each_row`] takes the keys in
//! chunks and asks for the memory of a whole chunk before it reads any of it: first every
//! key's slot, then every row those slots point to, then compares and copies. Measured in
//! the `lookup_full` bench (1M rows, 10M events, parallelism 1, rows of three inline
//! fields), alternating the two builds seven times on one machine: 5.00M events per
//! CPU-second (median; 3.83–5.25M) against 3.71M (2.71–5.09M) with
//! `hashbrown::HashMap`, 35% more. It is smaller too: the index is 8 bytes a slot beside
//! rows stored once, where a map's buckets hold whole rows at most seven eighths full;
//! the job's peak memory for those 1M rows was 93 MiB against 145 MiB.
//!
//! Layout: the rows in a vector in load order, and an open-addressing index of
//! `(tag, position)` slots, linear probing, at most half full. A duplicate key keeps the
//! last row loaded, as a map would.

use hashbrown::DefaultHashBuilder;
use std::hash::{BuildHasher, Hash};

/// Keys looked up together before their answers are read: enough reads in flight to
/// hide the memory's latency, few enough that their lines stay in the first-level cache.
const CHUNK: usize = 32;

/// An empty slot's position.
const EMPTY: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The high half of the key's hash.
    tag: u32,
    /// Where the row is in `entries`, or [`EMPTY`].
    position: u32,
}

/// A read-only hash table of rows (see the module's documentation).
#[derive(Debug)]
pub(super) struct Rows<K, V> {
    entries: Vec<(K, V)>,
    slots: Vec<Slot>,
    mask: usize,
    len: usize,
    hasher: DefaultHashBuilder,
}

impl<K: Hash + Eq, V> Rows<K, V> {
    /// The rows of `entries` (a later duplicate key replaces the earlier row). `None`
    /// when there are more than `u32::MAX - 1` of them.
    pub(super) fn new(entries: Vec<(K, V)>) -> Option<Self> {
        if entries.len() >= EMPTY as usize {
            return None;
        }
        let size = (entries.len() * 2).max(16).next_power_of_two();
        // Huge pages asked for before the slots are first written, so that they are
        // faulted in as huge pages; the rows, already written by the load, are moved
        // into huge pages by the kernel (unless the source wrote them on huge pages).
        let mut slots = with_capacity_on_huge_pages(size);
        slots.resize(
            size,
            Slot {
                tag: 0,
                position: EMPTY,
            },
        );
        advise_huge_pages(&entries, true);
        let mut rows = Self {
            slots,
            entries,
            mask: size - 1,
            len: 0,
            hasher: DefaultHashBuilder::default(),
        };
        // In chunks, as lookups are: every key's first slot is asked for before any is
        // written.
        let mut hashes = [0u64; CHUNK];
        for start in (0..rows.entries.len()).step_by(CHUNK) {
            let positions = start..(start + CHUNK).min(rows.entries.len());
            for (hash, position) in hashes.iter_mut().zip(positions.clone()) {
                *hash = rows.hash_and_fetch(&rows.entries[position].0);
            }
            for (&hash, position) in hashes.iter().zip(positions) {
                rows.insert(hash, position);
            }
        }
        Some(rows)
    }

    /// Indexes the row at `position` under `hash` (a later duplicate key takes the slot).
    fn insert(&mut self, hash: u64, position: usize) {
        let (tag, mut at) = self.start(hash);
        loop {
            let slot = self.slots[at];
            if slot.position == EMPTY {
                self.len += 1;
                break;
            }
            if slot.tag == tag && self.entries[slot.position as usize].0 == self.entries[position].0
            {
                break;
            }
            at = (at + 1) & self.mask;
        }
        // Positions fit in u32: checked by `new`.
        self.slots[at] = Slot {
            tag,
            position: position as u32,
        };
    }

    /// Distinct keys.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The hash's tag and first slot.
    #[inline]
    fn start(&self, hash: u64) -> (u32, usize) {
        ((hash >> 32) as u32, hash as usize & self.mask)
    }

    /// The hash of `key`, its first slot asked for without waiting for it.
    #[inline]
    fn hash_and_fetch(&self, key: &K) -> u64 {
        let hash = self.hasher.hash_one(key);
        prefetch(self.slots.as_ptr().wrapping_add(hash as usize & self.mask));
        hash
    }

    /// The row of `key`, searched from the slot of `hash`.
    #[inline]
    fn find(&self, hash: u64, key: &K) -> Option<&V> {
        let (tag, mut at) = self.start(hash);
        loop {
            let slot = self.slots[at];
            if slot.position == EMPTY {
                return None;
            }
            if slot.tag == tag {
                let (k, v) = &self.entries[slot.position as usize];
                if k == key {
                    return Some(v);
                }
            }
            at = (at + 1) & self.mask;
        }
    }

    /// The row of `key`.
    pub(super) fn get(&self, key: &K) -> Option<&V> {
        self.find(self.hasher.hash_one(key), key)
    }

    /// Hands each of `items`, in order, to `each` with the row of its key, if any. The
    /// items are taken by value so that no answer needs a vector of its own.
    pub(super) fn each_row<T>(
        &self,
        items: Vec<T>,
        key: impl Fn(&T) -> &K,
        mut each: impl FnMut(T, Option<&V>),
    ) {
        let mut hashes = [0u64; CHUNK];
        let mut first = [EMPTY; CHUNK];
        let mut items = items.into_iter();
        loop {
            let chunk = items.as_slice();
            let chunk = chunk.get(..CHUNK).unwrap_or(chunk);
            if chunk.is_empty() {
                return;
            }
            // Pass 1: fetch each key's first slot.
            for (hash, item) in hashes.iter_mut().zip(chunk) {
                *hash = self.hash_and_fetch(key(item));
            }
            // Pass 2: the slots are at hand; fetch the row of each key's first slot whose
            // tag matches.
            for (hash, position) in hashes.iter().zip(first.iter_mut()).take(chunk.len()) {
                let (tag, mut at) = self.start(*hash);
                *position = loop {
                    let slot = self.slots[at];
                    if slot.position == EMPTY || slot.tag == tag {
                        break slot.position;
                    }
                    at = (at + 1) & self.mask;
                };
                if *position != EMPTY {
                    let entry = self.entries.as_ptr().wrapping_add(*position as usize);
                    prefetch(entry);
                    prefetch(
                        entry
                            .cast::<u8>()
                            .wrapping_add(size_of::<(K, V)>().saturating_sub(1)),
                    );
                }
            }
            // Pass 3: the rows are at hand; compare and hand over (a tag that matched
            // another key searches on).
            for (hash, position) in hashes.iter().zip(&first).take(chunk.len()) {
                let Some(item) = items.next() else { return };
                let k = key(&item);
                let row = match self.entries.get(*position as usize) {
                    None => None,
                    Some((candidate, row)) if candidate == k => Some(row),
                    Some(_) => self.find(*hash, k),
                };
                each(item, row);
            }
        }
    }
}

/// An empty vector with room for `capacity` items, on huge pages where the kernel gives
/// them (see [`advise_huge_pages`]): for the rows of a table, written once and then read
/// at random, so that [`Rows::new`] does not have to move them into huge pages.
pub(super) fn with_capacity_on_huge_pages<T>(capacity: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(capacity);
    advise_huge_pages(v.spare_capacity_mut(), false);
    v
}

/// Asks the kernel to back the whole 2 MiB pages within `memory` by huge pages, and with
/// `now`, to move what is already there into huge pages at once (Linux 6.1 and later;
/// on older kernels the pages are merged later, in the background, if at all).
///
/// A lookup reads two places of a large table at random, and with 4 KiB pages each
/// read also misses the processor's table of page addresses, which then walks the page
/// tables in memory. With 2 MiB pages the table's pages fit that table. Measured in
/// `lookup_full` (1M rows, p1, six pairs alternating with the same build without it):
/// 13.5–16.8M events per CPU-second against 12.3–14.5M. The memory used is the same:
/// only whole pages inside the table's own memory are advised, and they are all used.
/// The advice is a hint: where it is refused, the table is the same, on small pages.
#[allow(unsafe_code)]
fn advise_huge_pages<T>(memory: &[T], now: bool) {
    #[cfg(target_os = "linux")]
    {
        /// `MADV_COLLAPSE` (Linux 6.1), not in every libc's headers.
        const MADV_COLLAPSE: libc::c_int = 25;
        const HUGE: usize = 2 << 20;
        let start = memory.as_ptr() as usize;
        let (from, to) = (
            start.next_multiple_of(HUGE),
            (start + size_of_val(memory)) / HUGE * HUGE,
        );
        if to <= from {
            return;
        }
        let (at, len) = (from as *mut libc::c_void, to - from);
        // SAFETY: advice on whole pages inside memory this slice borrows; neither
        // advice changes what the memory holds.
        let refused = unsafe {
            libc::madvise(at, len, libc::MADV_HUGEPAGE) != 0
                || (now && libc::madvise(at, len, MADV_COLLAPSE) != 0)
        };
        if refused {
            tracing::debug!(
                bytes = len,
                error = %std::io::Error::last_os_error(),
                "Huge pages for a lookup table refused; it stays on small pages."
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (memory, now);
}

/// Asks the processor to fetch the cache line at `at` without waiting for it.
#[inline(always)]
fn prefetch<T>(at: *const T) {
    ferroflow_state::hint::prefetch_ptr(at.cast::<u8>());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hasher;

    impl<K: Hash + Eq, V: Clone> Rows<K, V> {
        /// The rows of `keys`, in order, through [`Rows::each_row`].
        fn get_all(&self, keys: &[K]) -> Vec<Option<V>> {
            let mut found = Vec::new();
            self.each_row(
                keys.iter().collect(),
                |k: &&K| *k,
                |_, row| {
                    found.push(row.cloned());
                },
            );
            found
        }
    }

    #[test]
    fn finds_every_row_and_no_other_key_one_at_a_time_and_in_batches() {
        let rows = Rows::new((0..10_000u64).map(|k| (k * 3, k * 10)).collect()).unwrap();
        assert_eq!(rows.len(), 10_000);
        let keys: Vec<u64> = (0..40_000).collect();
        let all = rows.get_all(&keys);
        for (k, found) in keys.iter().zip(&all) {
            let want = (k % 3 == 0 && *k < 30_000).then_some(k / 3 * 10);
            assert_eq!(found.as_ref(), want.as_ref(), "key {k}");
            assert_eq!(rows.get(k).copied(), want, "key {k}");
        }
    }

    /// A key whose hash is the same for every value: every key shares one tag and one
    /// first slot, so lookups must search past tags that match other keys.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Clash(u64);

    impl Hash for Clash {
        fn hash<H: Hasher>(&self, state: &mut H) {
            state.write_u64(7);
        }
    }

    #[test]
    fn keys_whose_hashes_collide_are_told_apart() {
        let rows = Rows::new((0..50).map(|k| (Clash(k), k)).collect()).unwrap();
        let keys: Vec<Clash> = (0..60).rev().map(Clash).collect();
        let all = rows.get_all(&keys);
        for (k, found) in keys.iter().zip(all) {
            assert_eq!(found, (k.0 < 50).then_some(k.0));
        }
    }

    #[test]
    fn a_later_duplicate_replaces_the_row_and_empty_tables_answer_nothing() {
        let rows = Rows::new(vec![(1u64, "a"), (2, "b"), (1, "c")]).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows.get(&1), Some(&"c"));
        assert_eq!(
            rows.get_all(&[1u64, 2, 3]),
            vec![Some("c"), Some("b"), None]
        );
        let empty = Rows::<u64, u64>::new(Vec::new()).unwrap();
        assert_eq!(empty.len(), 0);
        assert_eq!(empty.get_all(&[1u64, 2]), vec![None, None]);
    }
}
