//! Incremental native checkpoints of a RocksDB store, and restoring from them.
//!
//! A checkpoint hard-links the live SST files into a temporary RocksDB checkpoint and
//! copies the write-ahead log written since the last flush (which RocksDB replays when the
//! checkpoint is opened), so the task's thread never waits for a flush; the write buffer
//! is then flushed in the background, and the next checkpoint links the resulting file
//! instead of copying the log again. SST files not yet in checkpoint storage are placed in
//! `shared/` (hard-linked when on the same file system, copied otherwise), the small
//! metadata files in the checkpoint's own directory. Restoring with the same key groups
//! links the files back and opens them as they are; restoring with other key groups
//! (rescaling) opens each old snapshot read-only and copies the ranges of the key groups
//! this worker now owns, which are contiguous because keys start with their key group.

use super::{db_err, RocksDbBackend, RocksInner, RocksKv};
use crate::native::{
    link_or_copy, NativeFile, NativeManifest, NativeState, NativeTarget, SHARED_DIR,
};
use crate::ttl::TtlRegistry;
use crate::{Error, KeyedSnapshot, KeyedStateStore, Result, StoreScope};
use rocksdb::checkpoint::Checkpoint;
use rocksdb::{FlushOptions, IteratorMode, ReadOptions, WriteBatch, DB};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

static NEXT_STORE: AtomicU64 = AtomicU64::new(0);

/// RocksDB's `level0_slowdown_writes_trigger` (its default, which the backend keeps).
const L0_SLOWDOWN: u64 = 20;

/// A name no other store (of this or another process) will have.
pub(super) fn new_store_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:x}-{:x}-{:x}",
        nanos,
        std::process::id(),
        NEXT_STORE.fetch_add(1, Ordering::Relaxed)
    )
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::Io(format!("{what}: {e}"))
}

impl RocksInner {
    /// Writes the files of a native checkpoint under `target`; returns them.
    pub(super) fn checkpoint_files(
        &self,
        target: &NativeTarget,
    ) -> Result<(String, Vec<NativeFile>)> {
        let db = self.db()?;
        let tmp = self.dir.with_extension("checkpoint");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io(format!("removing {}", tmp.display())))?;
        }
        // No flush: links the live SST files and copies the write-ahead log.
        Checkpoint::new(db)
            .and_then(|c| c.create_checkpoint_with_log_size(&tmp, u64::MAX))
            .map_err(|e| db_err("checkpoint", e))?;
        let result = self.place_files(&tmp, target);
        self.flush_in_background(db);
        if let Err(e) = std::fs::remove_dir_all(&tmp) {
            tracing::warn!(dir = %tmp.display(), error = %e, "Could not remove a temporary RocksDB checkpoint.");
        }
        result.map(|files| (self.store_id.clone(), files))
    }

    /// Starts a flush of the write buffer without waiting for it, unless the call would
    /// wait: while a flush is still running, or while level 0 is so full that RocksDB
    /// holds new flushes back until compactions catch up. The log then keeps growing and
    /// the next checkpoint copies more of it, but the task's thread never blocks here.
    fn flush_in_background(&self, db: &DB) {
        let int = |name: &str| db.property_int_value(name).ok().flatten().unwrap_or(0);
        if int("rocksdb.num-immutable-mem-table") > 0
            || int("rocksdb.num-files-at-level0") + 1 >= L0_SLOWDOWN
        {
            return;
        }
        let mut opts = FlushOptions::default();
        opts.set_wait(false);
        if let Err(e) = db.flush_opt(&opts) {
            // The next checkpoint copies a longer log; nothing is lost.
            tracing::warn!(error = %e, "Could not start a background flush of RocksDB.");
        }
    }

    fn place_files(&self, tmp: &Path, target: &NativeTarget) -> Result<Vec<NativeFile>> {
        let mut uploaded = self.uploaded.lock().unwrap_or_else(PoisonError::into_inner);
        let mut files = Vec::new();
        let (mut new_files, mut new_bytes) = (0u64, 0u64);
        for entry in std::fs::read_dir(tmp).map_err(io(format!("listing {}", tmp.display())))? {
            let entry = entry.map_err(io(format!("listing {}", tmp.display())))?;
            let local = entry.file_name().to_string_lossy().into_owned();
            let bytes = entry
                .metadata()
                .map_err(io(format!("reading {}", entry.path().display())))?
                .len();
            if !local.ends_with(".sst") {
                let path = format!("{}/{local}", target.private_dir);
                link_or_copy(&entry.path(), &target.root.join(&path))?;
                files.push(NativeFile { local, path, bytes });
                continue;
            }
            // An SST file never changes: reuse the stored copy while it is still there
            // (an abandoned checkpoint's files may have been collected since).
            if let Some(f) = uploaded.get(&local) {
                let stored = std::fs::metadata(target.root.join(&f.path)).map(|m| m.len());
                if f.bytes == bytes && stored.ok() == Some(bytes) {
                    files.push(f.clone());
                    continue;
                }
            }
            let path = format!("{SHARED_DIR}/{}-{local}", self.store_id);
            link_or_copy(&entry.path(), &target.root.join(&path))?;
            new_files += 1;
            new_bytes += bytes;
            let f = NativeFile {
                local: local.clone(),
                path,
                bytes,
            };
            uploaded.insert(local, f.clone());
            files.push(f);
        }
        // Files compacted away will not come back: forget them.
        uploaded.retain(|local, _| files.iter().any(|f| &f.local == local));
        files.sort_by(|a, b| a.local.cmp(&b.local));
        let total: u64 = files.iter().map(|f| f.bytes).sum();
        tracing::debug!(
            files = files.len(),
            total,
            new_files,
            new_bytes,
            "RocksDB checkpoint written."
        );
        Ok(files)
    }
}

/// Restores one worker's store from the snapshots of the previous run.
pub(super) fn restore(
    backend: &RocksDbBackend,
    scope: &StoreScope,
    snapshots: Vec<KeyedSnapshot>,
    root: &Path,
) -> Result<KeyedStateStore> {
    let mut manifests = Vec::new();
    let mut canonical = Vec::new();
    for mut s in snapshots {
        manifests.append(&mut s.native);
        canonical.push(s);
    }
    let ranges = scope.key_groups;
    manifests
        .retain(|m| m.key_groups().start() < ranges.end() && ranges.start() < m.key_groups().end());
    for m in &manifests {
        if m.backend != "rocksdb" {
            return Err(Error::InvalidConfig(format!(
                "state checkpointed natively by `{}` cannot be restored on rocksdb",
                m.backend
            )));
        }
        if m.max_parallelism != scope.max_parallelism {
            return Err(Error::InvalidConfig(format!(
                "the checkpoint has {} key groups and the job {}; max parallelism cannot change",
                m.max_parallelism, scope.max_parallelism
            )));
        }
        m.verify(root)?;
    }
    let states = merge_states(&manifests)?;
    let ttl = Arc::new(TtlRegistry::default());
    let dir = backend.new_dir(scope);
    let kv = match manifests.as_slice() {
        [m] if m.key_groups() == ranges => {
            // Same key groups: the old files are the new store.
            std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
            for f in &m.files {
                let (from, to) = (root.join(&f.path), dir.join(&f.local));
                if f.is_shared() {
                    // Data files never change: link them.
                    link_or_copy(&from, &to)?;
                } else {
                    // RocksDB may rewrite its metadata files: copy them.
                    std::fs::copy(&from, &to).map_err(io(format!(
                        "copying {} to {}",
                        from.display(),
                        to.display()
                    )))?;
                }
            }
            let kv = RocksKv::open(dir, &backend.config, Arc::clone(&ttl))?;
            kv.uploaded
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(
                    m.files
                        .iter()
                        .filter(|f| f.is_shared())
                        .map(|f| (f.local.clone(), f.clone())),
                );
            kv
        }
        _ => {
            let kv = RocksKv::open(dir, &backend.config, Arc::clone(&ttl))?;
            for m in &manifests {
                copy_key_groups(backend, &kv, m, scope, root, &states)?;
            }
            kv
        }
    };
    let mut store = KeyedStateStore::backed(
        scope.clone(),
        Arc::new(kv),
        backend.config.cache_entries,
        ttl,
    );
    store.adopt_native_states(states.into_values().collect());
    for s in canonical {
        store.restore(s)?;
    }
    Ok(store)
}

/// One entry per state name over all manifests (the first one's id wins); kinds and types
/// must agree.
fn merge_states(manifests: &[NativeManifest]) -> Result<HashMap<String, NativeState>> {
    let mut states: HashMap<String, NativeState> = HashMap::new();
    let mut used: HashMap<u16, String> = HashMap::new();
    for m in manifests {
        for st in &m.states {
            match states.get(&st.name) {
                Some(known) if known.kind != st.kind || known.type_name != st.type_name => {
                    return Err(Error::Codec(format!(
                        "state `{}` has different types in the snapshots being restored",
                        st.name
                    )))
                }
                Some(_) => {}
                None => {
                    let mut st = st.clone();
                    if used.contains_key(&st.id) {
                        // Another worker gave this id to another state: take a free one.
                        st.id = (0..=u16::MAX)
                            .find(|id| !used.contains_key(id))
                            .unwrap_or(u16::MAX);
                    }
                    used.insert(st.id, st.name.clone());
                    states.insert(st.name.clone(), st);
                }
            }
        }
    }
    Ok(states)
}

/// Copies the key groups of `scope` out of one old snapshot into `kv`, renumbering state
/// ids where the merged states differ.
fn copy_key_groups(
    backend: &RocksDbBackend,
    kv: &RocksKv,
    m: &NativeManifest,
    scope: &StoreScope,
    root: &Path,
    states: &HashMap<String, NativeState>,
) -> Result<()> {
    let tmp = backend.new_dir(scope).with_extension("restore");
    for f in &m.files {
        link_or_copy(&root.join(&f.path), &tmp.join(&f.local))?;
    }
    let ids: HashMap<u16, u16> = m
        .states
        .iter()
        .filter_map(|st| states.get(&st.name).map(|to| (st.id, to.id)))
        .collect();
    let result = (|| {
        let old = DB::open_for_read_only(&rocksdb::Options::default(), &tmp, false)
            .map_err(|e| db_err(&format!("opening the snapshot in {}", tmp.display()), e))?;
        let from = m.key_groups().start().max(scope.key_groups.start());
        let to = m.key_groups().end().min(scope.key_groups.end());
        let mut read = ReadOptions::default();
        read.set_iterate_upper_bound(to.to_be_bytes().to_vec());
        let start = from.to_be_bytes();
        let mut batch = WriteBatch::default();
        let db = kv.db()?;
        for item in old.iterator_opt(
            IteratorMode::From(&start, rocksdb::Direction::Forward),
            read,
        ) {
            let (k, v) = item.map_err(|e| db_err("reading a snapshot", e))?;
            let mut key = k.into_vec();
            if key.len() >= 4 {
                let id = u16::from_be_bytes([key[2], key[3]]);
                if let Some(new) = ids.get(&id).filter(|new| **new != id) {
                    key[2..4].copy_from_slice(&new.to_be_bytes());
                }
            }
            batch.put(key, v);
            if batch.len() >= 65_536 {
                db.write_opt(std::mem::take(&mut batch), &kv.write)
                    .map_err(|e| db_err("write", e))?;
            }
        }
        db.write_opt(batch, &kv.write)
            .map_err(|e| db_err("write", e))
    })();
    if let Err(e) = std::fs::remove_dir_all(&tmp) {
        tracing::warn!(dir = %tmp.display(), error = %e, "Could not remove a restored snapshot copy.");
    }
    result
}

#[cfg(test)]
pub(super) mod tests {
    use crate::native::NativeTarget;
    use crate::{
        KeyScope, KeyedSnapshot, KeyedStateStore, RocksDbBackend, RocksDbConfig, StateBackend,
        StoreScope, ValueState,
    };
    use std::collections::HashSet;
    use std::path::Path;

    const KEYS: u64 = 40_000;

    fn backend(dir: &Path) -> RocksDbBackend {
        RocksDbBackend::new(
            RocksDbConfig::default()
                .with_local_dir(dir)
                .with_cache_entries(1_000),
        )
        .unwrap()
    }

    pub(in crate::rocks) fn target(root: &Path, n: u64) -> NativeTarget {
        NativeTarget {
            root: root.to_path_buf(),
            private_dir: format!("chk-{n}/op-0.native"),
        }
    }

    pub(in crate::rocks) fn value(store: &mut KeyedStateStore, key: u64) -> Option<String> {
        let v = store.value_state::<u64, String>("v").unwrap();
        v.get(&mut KeyScope::new(store, &key)).unwrap().cloned()
    }

    /// A store of worker 0 of 1 under `work` whose value state `v` holds `value(k)` for
    /// every key below `keys`.
    pub(in crate::rocks) fn filled_store(
        work: &Path,
        keys: u64,
        value: impl Fn(u64) -> String,
    ) -> (
        RocksDbBackend,
        StoreScope,
        KeyedStateStore,
        ValueState<String>,
    ) {
        let b = backend(work);
        let scope = StoreScope::new("op", 0, 1, 64);
        let mut s = b.open_keyed_store(&scope).unwrap();
        let v = s.value_state::<u64, String>("v").unwrap();
        for k in 0..keys {
            v.set(&mut KeyScope::new(&mut s, &k), value(k)).unwrap();
        }
        (b, scope, s, v)
    }

    #[test]
    fn incremental_checkpoints_copy_only_new_files_and_restore_at_any_parallelism() {
        let work = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let (b, scope, mut s, v) = filled_store(work.path(), KEYS, |k| format!("first-{k:0>40}"));
        // Without a flush the data is still in the write-ahead log, which a checkpoint
        // copies: compact it into SST files first.
        s.compact().unwrap();
        let first = s.snapshot_into(Some(&target(root.path(), 1))).unwrap();
        let m1 = first.native[0].clone();
        assert!(first.sections.is_empty());
        // Change 1% of the keys.
        for k in (0..KEYS).step_by(100) {
            v.set(&mut KeyScope::new(&mut s, &k), format!("second-{k}"))
                .unwrap();
        }
        let second = s.snapshot_into(Some(&target(root.path(), 2))).unwrap();
        let m2 = second.native[0].clone();
        let old: HashSet<&str> = m1.files.iter().map(|f| f.path.as_str()).collect();
        // New files of any kind: SSTs and the copied log of the change.
        let new_bytes: u64 = m2
            .files
            .iter()
            .filter(|f| !old.contains(f.path.as_str()))
            .map(|f| f.bytes)
            .sum();
        let shared: u64 = m1
            .files
            .iter()
            .filter(|f| f.is_shared())
            .map(|f| f.bytes)
            .sum();
        assert!(shared > 0);
        assert!(
            new_bytes * 10 < shared,
            "the second checkpoint added {new_bytes} bytes to {shared}"
        );
        m2.verify(root.path()).unwrap();
        drop(s);

        // Same key groups: the files are opened as they are.
        let mut same = b
            .restore_keyed_store(&scope, vec![second.clone()], root.path())
            .unwrap();
        assert_eq!(value(&mut same, 100).as_deref(), Some("second-100"));
        assert_eq!(value(&mut same, 101), Some(format!("first-{:0>40}", 101)));
        assert_eq!(same.stats().unwrap().entries(), KEYS as usize);
        // Its next checkpoint reuses the restored files.
        let third = same.snapshot_into(Some(&target(root.path(), 3))).unwrap();
        let reused = third.native[0]
            .files
            .iter()
            .filter(|f| f.is_shared() && m2.files.contains(f))
            .count();
        assert!(reused > 0);
        drop(same);

        // Rescaled to three workers: each gets its key groups, every key once.
        let mut total = 0;
        for w in 0..3 {
            let scope = StoreScope::new("op", w, 3, 64);
            let snap = second.clone().filter(scope.key_groups);
            let mut part = b
                .restore_keyed_store(&scope, vec![snap], root.path())
                .unwrap();
            let mine = (0..KEYS)
                .find(|k| scope.key_groups.contains(crate::key_group_for_key(k, 64)))
                .unwrap();
            assert!(value(&mut part, mine).is_some());
            total += part.stats().unwrap().entries();
        }
        assert_eq!(total, KEYS as usize);
    }

    #[test]
    fn a_missing_shared_file_is_an_error_naming_it_and_types_are_checked() {
        let work = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let b = backend(work.path());
        let scope = StoreScope::new("op", 0, 1, 64);
        let mut s = b.open_keyed_store(&scope).unwrap();
        let v = s.value_state::<u64, String>("v").unwrap();
        v.set(&mut KeyScope::new(&mut s, &1u64), "x".into())
            .unwrap();
        s.compact().unwrap();
        let snap = s.snapshot_into(Some(&target(root.path(), 1))).unwrap();
        drop(s);

        // Declared with another type after a restore: an error.
        let mut r = b
            .restore_keyed_store(&scope, vec![snap.clone()], root.path())
            .unwrap();
        let err = r.value_state::<u64, u32>("v").unwrap_err();
        assert!(err.to_string().contains("cannot change"), "{err}");
        drop(r);

        // The memory backend refuses native state with a clear error.
        let err = crate::MemoryBackend
            .restore_keyed_store(&scope, vec![snap.clone()], root.path())
            .unwrap_err();
        assert!(err.to_string().contains("savepoints"), "{err}");

        // Round trip through the file format keeps the manifest.
        let file = root.path().join("chk-1/op-0.state");
        snap.write_to(&file).unwrap();
        assert_eq!(
            KeyedSnapshot::read_native_manifests(&file).unwrap(),
            snap.native
        );

        let shared = snap.native[0]
            .files
            .iter()
            .find(|f| f.is_shared())
            .unwrap()
            .clone();
        std::fs::remove_file(root.path().join(&shared.path)).unwrap();
        let err = b
            .restore_keyed_store(&scope, vec![snap], root.path())
            .unwrap_err();
        assert!(err.to_string().contains(&shared.path), "{err}");
    }
}
