//! The `_metadata` file of a checkpoint, and finding checkpoints on disk.

use super::SplitPosition;
use crate::{CodecError, Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Name of the file that marks a checkpoint complete.
pub(crate) const METADATA: &str = "_metadata";
const FORMAT: u32 = 1;

/// One operator instance's keyed-state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    /// Operator name.
    pub operator: String,
    /// Worker that wrote it.
    pub worker: usize,
    /// Path relative to the checkpoint directory root.
    pub file: String,
    /// Size in bytes.
    pub bytes: u64,
    /// The further files the state file's native snapshot uses: private ones inside the
    /// checkpoint's directory and ones in `shared/` that several checkpoints use. Empty
    /// for state in the canonical format.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<StoredFile>,
}

/// A file a checkpoint uses besides its state files.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StoredFile {
    /// Path relative to the checkpoint directory root.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
}

impl StoredFile {
    /// Whether several checkpoints may use the file (it lives in `shared/`).
    pub fn is_shared(&self) -> bool {
        self.path
            .strip_prefix(ferroflow_state::native::SHARED_DIR)
            .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// The recorded position of one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitPositionEntry {
    /// Source operator name.
    pub operator: String,
    /// Split id.
    pub split: String,
    /// Position after the last record before the barrier.
    pub position: SplitPosition,
}

/// What one sink instance prepared for this checkpoint and commits once it completes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkCommit {
    /// Sink operator name.
    pub operator: String,
    /// Worker that prepared it.
    pub worker: usize,
    /// Sink-specific description of what to commit.
    pub committable: serde_json::Value,
}

/// The state of a non-keyed operator instance (an async operator's inputs in flight,
/// say), as the operator serialised it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorState {
    /// Operator name.
    pub operator: String,
    /// Worker that took it.
    pub worker: usize,
    /// The operator's snapshot.
    pub state: serde_json::Value,
}

/// Everything a restore needs, written as `chk-<n>/_metadata`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    /// File format version.
    pub format: u32,
    /// Checkpoint number.
    pub id: u64,
    /// Wall-clock time the checkpoint completed, epoch ms.
    pub completed_at_ms: i64,
    /// Key groups of the job (restores must use the same).
    pub max_parallelism: u16,
    /// Keyed-state files.
    pub state_files: Vec<StateFile>,
    /// Split positions.
    pub positions: Vec<SplitPositionEntry>,
    /// Pending sink commits.
    pub sink_commits: Vec<SinkCommit>,
    /// Snapshots of non-keyed operators (absent in checkpoints of earlier versions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operator_states: Vec<OperatorState>,
}

impl CheckpointMetadata {
    pub(crate) fn new(id: u64, max_parallelism: u16) -> Self {
        Self {
            format: FORMAT,
            id,
            completed_at_ms: crate::now_millis(),
            max_parallelism,
            state_files: Vec::new(),
            positions: Vec::new(),
            sink_commits: Vec::new(),
            operator_states: Vec::new(),
        }
    }

    /// Writes `dir/_metadata` durably (see [`write_metadata_bytes`]).
    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| {
            Error::codec(
                "checkpoint metadata",
                CodecError::with_source("cannot be encoded", e),
            )
        })?;
        write_metadata_bytes(dir, &json)
    }
}

/// Writes `dir/_metadata` durably: temporary file, fsync, rename, fsync of the directory.
/// Until the rename the checkpoint does not exist for a restore.
pub(crate) fn write_metadata_bytes(dir: &Path, json: &[u8]) -> Result<()> {
    let io = |what: &str, e: std::io::Error| Error::io(format!("{what} {}", dir.display()), e);
    let tmp = dir.join("_metadata.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| io("writing metadata in", e))?;
    f.write_all(json)
        .map_err(|e| io("writing metadata in", e))?;
    f.sync_all().map_err(|e| io("syncing metadata in", e))?;
    std::fs::rename(&tmp, dir.join(METADATA)).map_err(|e| io("publishing metadata in", e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        // Best effort: makes the rename durable on file systems that need it.
        let _ = d.sync_all();
    }
    Ok(())
}

/// The last component of a checkpoint directory path (`chk-<n>`, `savepoint-<n>`).
pub(crate) fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The `n` of a checkpoint directory name `chk-<n>`.
pub(crate) fn checkpoint_number(name: &str) -> Option<u64> {
    name.strip_prefix("chk-").and_then(|n| n.parse().ok())
}

/// The number of a directory a job can resume from: a checkpoint `chk-<n>` or a
/// savepoint `savepoint-<n>` (both count up in one sequence).
pub(crate) fn restorable_number(name: &str) -> Option<u64> {
    checkpoint_number(name).or_else(|| name.strip_prefix("savepoint-").and_then(|n| n.parse().ok()))
}

/// Complete checkpoints under `root`, newest first: directories `chk-<n>` with metadata.
pub(crate) fn latest_checkpoints(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    complete_dirs(root, checkpoint_number)
}

/// Complete checkpoints and savepoints under `root`, newest first: what the latest
/// state of the job is (a savepoint taken at a stop is newer than any checkpoint).
pub(crate) fn restorable_checkpoints(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    complete_dirs(root, restorable_number)
}

fn complete_dirs(root: &Path, number: fn(&str) -> Option<u64>) -> Result<Vec<(u64, PathBuf)>> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::io(
                format!("listing checkpoints in {}", root.display()),
                e,
            ))
        }
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(n) = number(&name) else {
            continue;
        };
        if entry.path().join(METADATA).is_file() {
            found.push((n, entry.path()));
        }
    }
    found.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    Ok(found)
}

/// Reads and checks a checkpoint: its metadata parses and every state file it names
/// exists with the recorded size and an intact checksum.
pub(crate) fn load_checkpoint(dir: &Path) -> Result<CheckpointMetadata> {
    let bad = |why: String| {
        Error::Checkpoint(format!(
            "checkpoint {} cannot be restored: {why}",
            dir.display()
        ))
    };
    let bytes =
        std::fs::read(dir.join(METADATA)).map_err(|e| bad(format!("reading _metadata: {e}")))?;
    let meta: CheckpointMetadata =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("_metadata is not valid: {e}")))?;
    if meta.format != FORMAT {
        return Err(bad(format!("unsupported format {}", meta.format)));
    }
    let root = dir.parent().unwrap_or(dir);
    for f in &meta.state_files {
        let path = root.join(&f.file);
        match std::fs::metadata(&path) {
            Ok(m) if m.len() == f.bytes => {
                ferroflow_state::KeyedSnapshot::verify(&path).map_err(|e| bad(e.to_string()))?;
                for native in ferroflow_state::KeyedSnapshot::read_native_manifests(&path)
                    .map_err(|e| bad(e.to_string()))?
                {
                    native.verify(root).map_err(|e| bad(e.to_string()))?;
                }
            }
            Ok(m) => {
                return Err(bad(format!(
                    "{} has {} bytes, expected {}",
                    path.display(),
                    m.len(),
                    f.bytes
                )))
            }
            Err(e) => return Err(bad(format!("{}: {e}", path.display()))),
        }
    }
    Ok(meta)
}

/// The shared files (see `ferroflow_state::native`) that complete checkpoints and
/// savepoints under `root` use, as paths relative to `root`.
fn shared_files_in_use(root: &Path) -> Result<std::collections::HashSet<String>> {
    let mut used = std::collections::HashSet::new();
    let entries =
        std::fs::read_dir(root).map_err(|e| Error::io(format!("listing {}", root.display()), e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta_path = entry.path().join(METADATA);
        if !(name.starts_with("chk-") || name.starts_with("savepoint-")) || !meta_path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&meta_path)
            .map_err(|e| Error::io(format!("reading {}", meta_path.display()), e))?;
        let meta: CheckpointMetadata = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Checkpoint(format!("{} is not valid: {e}", meta_path.display())))?;
        for f in &meta.state_files {
            used.extend(
                f.files
                    .iter()
                    .filter(|f| f.is_shared())
                    .map(|f| f.path.clone()),
            );
            if !f.files.is_empty() {
                continue;
            }
            // Checkpoints written before the metadata listed the files: read the manifests.
            let manifests =
                ferroflow_state::KeyedSnapshot::read_native_manifests(&root.join(&f.file))?;
            for m in manifests {
                used.extend(
                    m.files
                        .into_iter()
                        .filter(|f| f.is_shared())
                        .map(|f| f.path),
                );
            }
        }
    }
    Ok(used)
}

/// Deletes the files in `root/shared/` that no complete checkpoint or savepoint uses.
/// Must not run while a checkpoint is being written. When anything cannot be read, nothing
/// is deleted.
pub(crate) fn collect_shared_files(root: &Path) {
    let shared = root.join(ferroflow_state::native::SHARED_DIR);
    let Ok(files) = std::fs::read_dir(&shared) else {
        return;
    };
    let used = match shared_files_in_use(root) {
        Ok(used) => used,
        Err(e) => {
            tracing::warn!(error = %e, "Could not tell which shared checkpoint files are in use; keeping all.");
            return;
        }
    };
    let (mut removed, mut bytes) = (0u64, 0u64);
    for file in files.flatten() {
        let rel = format!(
            "{}/{}",
            ferroflow_state::native::SHARED_DIR,
            file.file_name().to_string_lossy()
        );
        if used.contains(&rel) {
            continue;
        }
        let size = file.metadata().map_or(0, |m| m.len());
        match std::fs::remove_file(file.path()) {
            Ok(()) => {
                removed += 1;
                bytes += size;
            }
            Err(e) => {
                tracing::warn!(file = %file.path().display(), error = %e, "Could not delete an unused shared checkpoint file.");
            }
        }
    }
    if removed > 0 {
        tracing::debug!(
            removed,
            bytes,
            "Deleted shared checkpoint files no checkpoint uses."
        );
    }
}
