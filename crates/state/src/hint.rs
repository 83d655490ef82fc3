//! Cache hints: asking the CPU to start loading memory that will be read soon.
//!
//! A keyed operator whose state is in memory spends most of its time waiting for cache
//! misses: each record's state entry, then whatever the entry points to, sits at a
//! random address. Prefetching the entries of records a few places ahead in a batch lets
//! those misses overlap instead of following one another.

/// Asks the CPU to start loading the cache line at `p` into every level of its caches,
/// and returns without waiting. A hint only: it reads nothing a program can observe,
/// cannot fault (whatever `p` is) and changes no result. A no-op on targets other than
/// x86_64.
#[inline(always)]
pub fn prefetch_ptr(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` performs no architectural memory access: it cannot fault,
    // whatever the address, and has no effect a program can observe beyond timing.
    // SSE, which provides it, is part of every x86_64 target. This is the one `unsafe`
    // block of this crate.
    #[allow(unsafe_code)]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Asks the CPU to start loading the first cache line of `value` into every level of its
/// caches, and returns without waiting. A hint only: it reads nothing a program can
/// observe and changes no result. A no-op on targets other than x86_64.
#[inline(always)]
pub fn prefetch<T: ?Sized>(value: &T) {
    prefetch_ptr((value as *const T).cast::<u8>());
}

/// Asks the CPU to start loading every cache line of the `len` bytes from `start`.
#[inline(always)]
pub(crate) fn prefetch_span(start: *const u8, len: usize) {
    const LINE: usize = 64;
    let offset = start as usize & (LINE - 1);
    let base = start.wrapping_sub(offset);
    for line in 0..(offset + len.max(1)).div_ceil(LINE) {
        prefetch_ptr(base.wrapping_add(line * LINE));
    }
}

/// Prefetches the entry of `key` in `map`, if the map has one that looks like it: the
/// probe reads only the map's control bytes, never a stored key, so it does not wait for
/// the entry it is about to prefetch. A wrong guess (another key with the same 7-bit
/// tag) costs one useless prefetch.
#[inline]
pub(crate) fn prefetch_entry<K, V, S>(map: &hashbrown::HashMap<K, V, S>, key: &K)
where
    K: std::hash::Hash,
    S: std::hash::BuildHasher,
{
    if let Some((k, v)) = likely_entry(map, key) {
        let (k, v) = ((k as *const K).cast::<u8>(), (v as *const V).cast::<u8>());
        prefetch_span(k.min(v), size_of::<(K, V)>());
    }
}

/// The first entry of `map` whose 7-bit hash tag matches `key`'s: `key`'s own entry when
/// the map holds it (and no other key with that tag comes first in its probe sequence),
/// perhaps another's when it does not. Compares no keys, so it reads only the control
/// bytes until the entry is used. For cache hints only, never for a result.
#[inline]
pub(crate) fn likely_entry<'a, K, V, S>(
    map: &'a hashbrown::HashMap<K, V, S>,
    key: &K,
) -> Option<(&'a K, &'a V)>
where
    K: std::hash::Hash,
    S: std::hash::BuildHasher,
{
    let hash = map.hasher().hash_one(key);
    map.raw_entry().from_hash(hash, |_| true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetching_changes_nothing() {
        let mut map = hashbrown::HashMap::new();
        for k in 0..1000u64 {
            map.insert(k, k * 2);
        }
        for k in 0..2000u64 {
            prefetch_entry(&map, &k);
        }
        prefetch(&map);
        prefetch_span(std::ptr::null(), 1000);
        assert_eq!(map.len(), 1000);
        assert!((0..1000u64).all(|k| map[&k] == k * 2));
    }
}
