//! Snapshots of keyed state, partitioned by key group.
//!
//! A snapshot is a list of [`Section`]s: the entries of one state in one key group,
//! encoded with postcard. Restoring at another parallelism keeps only the sections of the
//! key groups the new worker owns, so rescaling needs no re-hashing of foreign data.
//!
//! On disk ([`KeyedSnapshot::write_to`]) a snapshot is:
//!
//! ```text
//! "FFKS" version:u8
//! repeated: name_len:u16 name type_len:u16 type kind:u8 key_group:u16 data_len:u32 data
//! crc32 of everything before:u32
//! ```
//! All integers little-endian. A file that is truncated, has a bad checksum or an unknown
//! version is rejected with an error naming it.

use crate::native::NativeManifest;
use crate::{key_group_for_key, Error, KeyGroupRange, Result, StateKey, StateKind};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

const MAGIC: &[u8; 4] = b"FFKS";
/// Version 2 adds native manifests after the version byte; version 1 is still read.
const VERSION: u8 = 2;

/// The entries of one state in one key group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// State name (timers and other runtime state use names starting with `__`).
    pub state: String,
    /// Kind of the state.
    pub kind: StateKind,
    /// Rust type of the table that wrote it. The encoding is not self-describing, so a
    /// restore into another type is refused instead of decoding garbage.
    pub type_name: String,
    /// The key group of every entry.
    pub key_group: u16,
    /// postcard-encoded `Vec<(K, X)>`.
    pub data: Vec<u8>,
}

/// A snapshot of the keyed state of one operator instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyedSnapshot {
    /// Sections, in no particular order.
    pub sections: Vec<Section>,
    /// Native snapshots of backing stores (one per worker that wrote one), restored by
    /// the backend that wrote them.
    pub native: Vec<NativeManifest>,
}

fn kind_code(kind: StateKind) -> u8 {
    match kind {
        StateKind::Value => 0,
        StateKind::Map => 1,
        StateKind::List => 2,
        StateKind::Reducing => 3,
    }
}

fn kind_from(code: u8) -> Option<StateKind> {
    match code {
        0 => Some(StateKind::Value),
        1 => Some(StateKind::Map),
        2 => Some(StateKind::List),
        3 => Some(StateKind::Reducing),
        _ => None,
    }
}

/// Encodes `entries` of the state `name` into one section per key group.
///
/// # Errors
/// When an entry cannot be serialised.
pub fn encode_sections<'a, K, X>(
    name: &str,
    kind: StateKind,
    type_name: &str,
    entries: impl Iterator<Item = (&'a K, X)>,
    max_parallelism: u16,
    out: &mut Vec<Section>,
) -> Result<()>
where
    K: StateKey,
    X: Serialize,
{
    let mut groups: BTreeMap<u16, Vec<(&K, X)>> = BTreeMap::new();
    for (k, x) in entries {
        groups
            .entry(key_group_for_key(k, max_parallelism).0)
            .or_default()
            .push((k, x));
    }
    for (key_group, entries) in groups {
        let data = postcard::to_stdvec(&entries)
            .map_err(|e| Error::Codec(format!("encoding state `{name}`: {e}")))?;
        out.push(Section {
            state: name.to_string(),
            kind,
            type_name: type_name.to_string(),
            key_group,
            data,
        });
    }
    Ok(())
}

/// Decodes the entries of a section written by [`encode_sections`].
///
/// # Errors
/// When the data does not decode as `Vec<(K, X)>` (another type, or corruption).
pub fn decode_section<K: DeserializeOwned, X: DeserializeOwned>(
    section: &Section,
) -> Result<Vec<(K, X)>> {
    postcard::from_bytes(&section.data).map_err(|e| {
        Error::Codec(format!(
            "decoding state `{}` (key group {}): {e}",
            section.state, section.key_group
        ))
    })
}

impl KeyedSnapshot {
    /// Sections of key groups inside `range`.
    pub fn filter(self, range: KeyGroupRange) -> Self {
        Self {
            sections: self
                .sections
                .into_iter()
                .filter(|s| range.contains(crate::KeyGroup(s.key_group)))
                .collect(),
            native: self
                .native
                .into_iter()
                .filter(|m| {
                    let theirs = m.key_groups();
                    theirs.start() < range.end() && range.start() < theirs.end()
                })
                .collect(),
        }
    }

    /// Total encoded bytes.
    pub fn bytes(&self) -> usize {
        self.sections.iter().map(|s| s.data.len()).sum()
    }

    /// Encodes the snapshot in the file format.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(self.bytes() + 64);
        buf.extend_from_slice(MAGIC);
        buf.push(VERSION);
        let native = serde_json::to_vec(&self.native)
            .map_err(|e| Error::Codec(format!("encoding native manifests: {e}")))?;
        let native_len = u32::try_from(native.len())
            .map_err(|_| Error::Codec("native manifests over 4 GiB".into()))?;
        buf.extend_from_slice(&native_len.to_le_bytes());
        buf.extend_from_slice(&native);
        for s in &self.sections {
            let name = s.state.as_bytes();
            let name_len = u16::try_from(name.len())
                .map_err(|_| Error::Codec(format!("state name too long: {}", s.state)))?;
            let type_name = s.type_name.as_bytes();
            let type_len = u16::try_from(type_name.len())
                .map_err(|_| Error::Codec(format!("type name too long: {}", s.type_name)))?;
            let data_len = u32::try_from(s.data.len())
                .map_err(|_| Error::Codec(format!("section of `{}` over 4 GiB", s.state)))?;
            buf.extend_from_slice(&name_len.to_le_bytes());
            buf.extend_from_slice(name);
            buf.extend_from_slice(&type_len.to_le_bytes());
            buf.extend_from_slice(type_name);
            buf.push(kind_code(s.kind));
            buf.extend_from_slice(&s.key_group.to_le_bytes());
            buf.extend_from_slice(&data_len.to_le_bytes());
            buf.extend_from_slice(&s.data);
        }
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        Ok(buf)
    }

    /// Decodes the file format; `origin` names the data in errors.
    pub fn decode(bytes: &[u8], origin: &str) -> Result<Self> {
        let corrupt = |why: &str| Error::Corrupt(format!("{origin}: {why}"));
        if bytes.len() < MAGIC.len() + 1 + 4 || &bytes[..4] != MAGIC {
            return Err(corrupt("not a keyed-state snapshot"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let mut crc_bytes = [0u8; 4];
        crc_bytes.copy_from_slice(crc);
        if crc32fast::hash(body) != u32::from_le_bytes(crc_bytes) {
            return Err(corrupt("checksum mismatch"));
        }
        let version = body[4];
        if version != 1 && version != VERSION {
            return Err(corrupt(&format!("unsupported version {version}")));
        }
        let mut r = Reader { buf: &body[5..] };
        let mut native = Vec::new();
        if version >= 2 {
            let len = r.u32().ok_or_else(|| corrupt("truncated"))? as usize;
            let bytes = r.take(len).ok_or_else(|| corrupt("truncated"))?;
            native = serde_json::from_slice(bytes)
                .map_err(|e| corrupt(&format!("bad native manifests: {e}")))?;
        }
        let mut sections = Vec::new();
        while !r.buf.is_empty() {
            let name_len = usize::from(r.u16().ok_or_else(|| corrupt("truncated"))?);
            let name = r.take(name_len).ok_or_else(|| corrupt("truncated"))?;
            let state = String::from_utf8(name.to_vec()).map_err(|_| corrupt("bad state name"))?;
            let type_len = usize::from(r.u16().ok_or_else(|| corrupt("truncated"))?);
            let type_name = r.take(type_len).ok_or_else(|| corrupt("truncated"))?;
            let type_name =
                String::from_utf8(type_name.to_vec()).map_err(|_| corrupt("bad type name"))?;
            let kind = r
                .u8()
                .and_then(kind_from)
                .ok_or_else(|| corrupt("bad state kind"))?;
            let key_group = r.u16().ok_or_else(|| corrupt("truncated"))?;
            let len = r.u32().ok_or_else(|| corrupt("truncated"))? as usize;
            let data = r.take(len).ok_or_else(|| corrupt("truncated"))?.to_vec();
            sections.push(Section {
                state,
                kind,
                type_name,
                key_group,
                data,
            });
        }
        Ok(Self { sections, native })
    }

    /// Writes the snapshot to `path` durably (write to a temporary file, sync, rename).
    pub fn write_to(&self, path: &Path) -> Result<u64> {
        let bytes = self.encode()?;
        let io = |e: std::io::Error| Error::Io(format!("writing {}: {e}", path.display()));
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        Ok(bytes.len() as u64)
    }

    /// Checks that `path` holds an intact snapshot (format and checksum) without decoding
    /// its sections.
    pub fn verify(path: &Path) -> Result<()> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Io(format!("reading {}: {e}", path.display())))?;
        let origin = path.display().to_string();
        let corrupt = |why: &str| Error::Corrupt(format!("{origin}: {why}"));
        if bytes.len() < MAGIC.len() + 1 + 4 || &bytes[..4] != MAGIC {
            return Err(corrupt("not a keyed-state snapshot"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err(corrupt("checksum mismatch"));
        }
        Ok(())
    }

    /// Reads only the native manifests at the head of a snapshot file (without reading or
    /// checking the sections): what checkpoint storage needs to know which shared files
    /// are in use.
    pub fn read_native_manifests(path: &Path) -> Result<Vec<NativeManifest>> {
        use std::io::Read;
        let origin = path.display().to_string();
        let corrupt = |why: &str| Error::Corrupt(format!("{origin}: {why}"));
        let mut file =
            std::fs::File::open(path).map_err(|e| Error::Io(format!("reading {origin}: {e}")))?;
        let mut head = [0u8; 9];
        file.read_exact(&mut head)
            .map_err(|_| corrupt("not a keyed-state snapshot"))?;
        if &head[..4] != MAGIC {
            return Err(corrupt("not a keyed-state snapshot"));
        }
        if head[4] < 2 {
            return Ok(Vec::new());
        }
        let len = u32::from_le_bytes([head[5], head[6], head[7], head[8]]) as usize;
        let mut json = vec![0u8; len];
        file.read_exact(&mut json)
            .map_err(|_| corrupt("truncated"))?;
        serde_json::from_slice(&json).map_err(|e| corrupt(&format!("bad native manifests: {e}")))
    }

    /// Reads a snapshot written by [`Self::write_to`].
    pub fn read_from(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Io(format!("reading {}: {e}", path.display())))?;
        Self::decode(&bytes, &path.display().to_string())
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyScope, KeyedStateStore, MemoryBackend, StateBackend, StoreScope};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn store(worker: usize, parallelism: usize) -> KeyedStateStore {
        MemoryBackend
            .open_keyed_store(&StoreScope::new("op", worker, parallelism, 128))
            .unwrap()
    }

    /// Fills value, map and list state for keys `0..n`.
    fn fill(s: &mut KeyedStateStore, keys: impl Iterator<Item = u64>) {
        let v = s.value_state::<u64, String>("v").unwrap();
        let m = s.map_state::<u64, u32, i64>("m").unwrap();
        let l = s.list_state::<u64, u8>("l").unwrap();
        for k in keys {
            let mut cx = KeyScope::new(s, &k);
            v.set(&mut cx, format!("value-{k}")).unwrap();
            for u in 0..(k % 4) as u32 {
                m.insert(&mut cx, u, -(k as i64) * i64::from(u)).unwrap();
            }
            l.push(&mut cx, (k % 7) as u8).unwrap();
            l.push(&mut cx, (k % 5) as u8).unwrap();
        }
    }

    type Dump = BTreeMap<u64, (Option<String>, BTreeMap<u32, i64>, Vec<u8>)>;

    fn dump(s: &mut KeyedStateStore, keys: impl Iterator<Item = u64>) -> Dump {
        let v = s.value_state::<u64, String>("v").unwrap();
        let m = s.map_state::<u64, u32, i64>("m").unwrap();
        let l = s.list_state::<u64, u8>("l").unwrap();
        let mut out = BTreeMap::new();
        for k in keys {
            let mut cx = KeyScope::new(s, &k);
            let value = v.get(&mut cx).unwrap().cloned();
            let map: BTreeMap<u32, i64> = m.iter(&mut cx).unwrap().map(|(a, b)| (*a, *b)).collect();
            let list: Vec<u8> = l.get(&mut cx).unwrap().copied().collect();
            if value.is_some() || !map.is_empty() || !list.is_empty() {
                out.insert(k, (value, map, list));
            }
        }
        out
    }

    #[test]
    fn round_trip_through_the_file_format_before_and_after_declaration() {
        let mut a = store(0, 1);
        fill(&mut a, 0..500);
        let want = dump(&mut a, 0..500);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("op-0.state");
        a.snapshot().unwrap().write_to(&path).unwrap();

        // Restore, then declare.
        let mut b = store(0, 1);
        b.restore(KeyedSnapshot::read_from(&path).unwrap()).unwrap();
        assert_eq!(b.unclaimed_states(), vec!["l", "m", "v"]);
        assert_eq!(dump(&mut b, 0..500), want);
        assert!(b.unclaimed_states().is_empty());

        // Declare, then restore.
        let mut c = store(0, 1);
        let _ = dump(&mut c, 0..1);
        c.restore(KeyedSnapshot::read_from(&path).unwrap()).unwrap();
        assert_eq!(dump(&mut c, 0..500), want);
        assert_eq!(c.stats().unwrap(), a.stats().unwrap());
    }

    #[test]
    fn rescale_two_workers_to_three_keeps_every_key_once() {
        let keys = 0..3000u64;
        let mut old: Vec<KeyedStateStore> = (0..2).map(|w| store(w, 2)).collect();
        for (w, s) in old.iter_mut().enumerate() {
            // Each old worker holds the keys of its own key groups, as the runtime would.
            let mine: Vec<u64> = keys
                .clone()
                .filter(|k| s.scope().key_groups.contains(key_group_for_key(k, 128)))
                .collect();
            assert!(!mine.is_empty(), "worker {w}");
            fill(s, mine.into_iter());
        }
        let mut reference = store(0, 1);
        fill(&mut reference, keys.clone());
        let want = dump(&mut reference, keys.clone());

        let snaps: Vec<KeyedSnapshot> = old.iter_mut().map(|s| s.snapshot().unwrap()).collect();
        let mut merged = Dump::new();
        for w in 0..3 {
            let mut s = store(w, 3);
            for snap in &snaps {
                s.restore(snap.clone()).unwrap();
            }
            for (k, entry) in dump(&mut s, keys.clone()) {
                assert!(
                    s.scope().key_groups.contains(key_group_for_key(&k, 128)),
                    "key {k} on worker {w}"
                );
                assert!(merged.insert(k, entry).is_none(), "key {k} restored twice");
            }
        }
        assert_eq!(merged, want);
    }

    #[test]
    fn damage_and_type_changes_are_clear_errors() {
        let mut a = store(0, 1);
        fill(&mut a, 0..50);
        let bytes = a.snapshot().unwrap().encode().unwrap();
        let mut flipped = bytes.clone();
        flipped[bytes.len() / 2] ^= 0x40;
        let err = KeyedSnapshot::decode(&flipped, "chk-7/op-0.state").unwrap_err();
        assert!(matches!(err, Error::Corrupt(_)));
        assert!(err.to_string().contains("chk-7/op-0.state"), "{err}");
        assert!(KeyedSnapshot::decode(&bytes[..bytes.len() - 9], "x").is_err());
        assert!(KeyedSnapshot::decode(b"nope", "x").is_err());

        // "v" was a value state of String; declaring it as a map state is a conflict,
        // declaring it with another value type fails to decode.
        let snap = KeyedSnapshot::decode(&bytes, "x").unwrap();
        let mut b = store(0, 1);
        b.restore(snap.clone()).unwrap();
        assert!(matches!(
            b.map_state::<u64, u32, i64>("v"),
            Err(Error::StateConflict { .. })
        ));
        let mut c = store(0, 1);
        c.restore(snap).unwrap();
        let err = c.value_state::<u64, Vec<u64>>("v").unwrap_err();
        assert!(matches!(err, Error::Codec(_)), "{err}");
        assert!(err.to_string().contains("alloc::string::String"), "{err}");
    }

    proptest! {
        /// Snapshots taken at random points restore to exactly the state at that point.
        #[test]
        fn snapshot_restore_matches_a_model(
            ops in proptest::collection::vec((0u64..40, any::<i64>(), any::<bool>()), 1..300),
            cut in 0usize..300,
        ) {
            let mut s = store(0, 1);
            let v = s.value_state::<u64, i64>("v").unwrap();
            let mut model = BTreeMap::new();
            let mut snapshot = None;
            for (i, (k, x, delete)) in ops.iter().enumerate() {
                if i == cut.min(ops.len() - 1) {
                    snapshot = Some((s.snapshot().unwrap().encode().unwrap(), model.clone()));
                }
                let mut cx = KeyScope::new(&mut s, k);
                if *delete {
                    v.clear(&mut cx).unwrap();
                    model.remove(k);
                } else {
                    v.set(&mut cx, *x).unwrap();
                    model.insert(*k, *x);
                }
            }
            let (bytes, at_cut) = snapshot.unwrap();
            let mut r = store(0, 1);
            r.restore(KeyedSnapshot::decode(&bytes, "p").unwrap()).unwrap();
            let v = r.value_state::<u64, i64>("v").unwrap();
            let mut got = BTreeMap::new();
            for k in 0u64..40 {
                if let Some(x) = v.get(&mut KeyScope::new(&mut r, &k)).unwrap() {
                    got.insert(k, *x);
                }
            }
            prop_assert_eq!(got, at_cut);
        }
    }
}
