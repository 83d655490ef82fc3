//! Native (incremental) snapshots of a backing store: which files make up one worker's
//! state in a checkpoint, where they are, and which declared state each state id is.
//!
//! A store that supports them (RocksDB) writes its immutable data files once into a
//! `shared/` directory under the checkpoint root and lists them in every checkpoint that
//! uses them; only files not already there are copied. Small mutable files (RocksDB's
//! `MANIFEST`, `CURRENT`, `OPTIONS`) go into the checkpoint's own directory.

use crate::store::StateKind;
use crate::{Error, KeyGroupRange, KeyedSnapshot, Result, Section};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The directory checkpoints share data files in, relative to the checkpoint root.
pub const SHARED_DIR: &str = "shared";

/// Where a native snapshot goes.
#[derive(Debug, Clone)]
pub struct NativeTarget {
    /// The checkpoint root (the directory holding `chk-<n>/` and `shared/`).
    pub root: PathBuf,
    /// This worker's own directory, relative to `root` (inside the checkpoint's).
    pub private_dir: String,
}

/// One file of a native snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeFile {
    /// Its name in the store's working directory.
    pub local: String,
    /// Where it is, relative to the checkpoint root (`shared/...` for shared files).
    pub path: String,
    /// Its size.
    pub bytes: u64,
}

impl NativeFile {
    /// Whether checkpoints share this file (it lives in `shared/`).
    pub fn is_shared(&self) -> bool {
        self.path.starts_with(SHARED_DIR)
    }
}

type NativeFiles = Result<(String, Vec<NativeFile>)>;

/// The store id and files of a native snapshot, possibly still being written by a
/// background thread.
#[derive(Debug)]
pub enum PendingNative {
    /// Finished.
    Ready(NativeFiles),
    /// A thread is finishing it and will send the answer.
    Running(std::sync::mpsc::Receiver<NativeFiles>),
}

impl PendingNative {
    /// A sender for the thread that finishes the snapshot, and the snapshot to wait on.
    #[cfg_attr(not(feature = "rocksdb"), allow(dead_code))]
    pub(crate) fn channel() -> (std::sync::mpsc::SyncSender<NativeFiles>, Self) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        (tx, Self::Running(rx))
    }

    /// Whether it is finished: [`PendingNative::wait`] will not block.
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Ready(_))
    }

    /// Waits for the snapshot's store id and files.
    pub fn wait(self) -> NativeFiles {
        match self {
            Self::Ready(done) => done,
            Self::Running(rx) => rx.recv().unwrap_or_else(|_| {
                Err(Error::Io(
                    "a native snapshot's thread ended without finishing it".into(),
                ))
            }),
        }
    }
}

/// A keyed snapshot whose native part may still be written in the background
/// ([`crate::KeyedStateStore::snapshot_in_background`]).
#[derive(Debug)]
pub struct PendingSnapshot {
    snapshot: KeyedSnapshot,
    /// The files of `snapshot.native[0]`, when they are still coming.
    native: Option<PendingNative>,
}

impl PendingSnapshot {
    /// A snapshot that is complete.
    pub fn ready(snapshot: KeyedSnapshot) -> Self {
        Self {
            snapshot,
            native: None,
        }
    }

    /// `snapshot` whose single native manifest gets its store id and files from
    /// `native`.
    pub(crate) fn new(snapshot: KeyedSnapshot, native: PendingNative) -> Self {
        Self {
            snapshot,
            native: Some(native),
        }
    }

    /// Whether it is complete: [`PendingSnapshot::wait`] will not block.
    pub fn is_ready(&self) -> bool {
        self.native.as_ref().is_none_or(PendingNative::is_ready)
    }

    /// The snapshot's sections in the canonical format, for adding more (a keyed
    /// operator adds its timers).
    pub fn sections_mut(&mut self) -> &mut Vec<Section> {
        &mut self.snapshot.sections
    }

    /// Waits for the background part; the complete snapshot.
    pub fn wait(self) -> Result<KeyedSnapshot> {
        let mut snapshot = self.snapshot;
        if let Some(native) = self.native {
            let (store_id, files) = native.wait()?;
            if let Some(m) = snapshot.native.first_mut() {
                m.store_id = store_id;
                m.files = files;
            }
        }
        Ok(snapshot)
    }
}

/// A declared state as stored natively: its store-level id and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeState {
    /// The state's name.
    pub name: String,
    /// The id in stored keys.
    pub id: u16,
    /// `value`, `map`, `list` or `reducing`.
    pub kind: String,
    /// The Rust types it was declared with.
    pub type_name: String,
}

impl NativeState {
    pub(crate) fn kind_name(kind: StateKind) -> &'static str {
        match kind {
            StateKind::Value => "value",
            StateKind::Map => "map",
            StateKind::List => "list",
            StateKind::Reducing => "reducing",
        }
    }
}

/// One worker's native snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeManifest {
    /// The backend that wrote it (`rocksdb`).
    pub backend: String,
    /// Identifies the store instance; shared file names start with it.
    pub store_id: String,
    /// Number of key groups of the job.
    pub max_parallelism: u16,
    /// First key group the worker owned.
    pub key_group_start: u16,
    /// One past the last key group the worker owned.
    pub key_group_end: u16,
    /// Every declared (or restored and carried) state.
    pub states: Vec<NativeState>,
    /// The files, all needed to restore.
    pub files: Vec<NativeFile>,
}

impl NativeManifest {
    /// The key groups the snapshot holds.
    pub fn key_groups(&self) -> KeyGroupRange {
        KeyGroupRange::new(self.key_group_start, self.key_group_end)
    }

    /// Total bytes of its files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    /// Checks that every file exists under `root` with its recorded size.
    pub fn verify(&self, root: &Path) -> Result<()> {
        for f in &self.files {
            let path = root.join(&f.path);
            match std::fs::metadata(&path) {
                Ok(m) if m.len() == f.bytes => {}
                Ok(m) => {
                    return Err(Error::Corrupt(format!(
                        "{} has {} bytes, expected {}",
                        path.display(),
                        m.len(),
                        f.bytes
                    )))
                }
                Err(e) => {
                    return Err(Error::Corrupt(format!(
                        "{} is missing: {e}",
                        path.display()
                    )))
                }
            }
        }
        Ok(())
    }
}

/// Places `from` at `to`: a hard link when both are on one file system (files of a
/// snapshot are immutable), a copy otherwise. Writes through a temporary name so that a
/// crash never leaves a partial file under the final name.
#[cfg_attr(not(feature = "rocksdb"), allow(dead_code))]
pub(crate) fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    let io = |what: &str, e: std::io::Error| {
        Error::Io(format!(
            "{what} {} to {}: {e}",
            from.display(),
            to.display()
        ))
    };
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("creating the directory for", e))?;
    }
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    let tmp = to.with_extension("partial");
    std::fs::copy(from, &tmp).map_err(|e| io("copying", e))?;
    std::fs::rename(&tmp, to).map_err(|e| io("renaming", e))
}
