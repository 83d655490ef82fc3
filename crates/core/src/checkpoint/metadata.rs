//! The `_metadata` file of a checkpoint, and finding checkpoints on disk.

use super::SplitPosition;
use crate::{Error, Result};
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
        }
    }

    /// Writes `dir/_metadata` durably: temporary file, fsync, rename, fsync of the
    /// directory. Until the rename the checkpoint does not exist for a restore.
    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        let io = |what: &str, e: std::io::Error| Error::io(format!("{what} {}", dir.display()), e);
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Config(format!("encoding checkpoint metadata: {e}")))?;
        let tmp = dir.join("_metadata.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(|e| io("writing metadata in", e))?;
        f.write_all(&json)
            .map_err(|e| io("writing metadata in", e))?;
        f.sync_all().map_err(|e| io("syncing metadata in", e))?;
        std::fs::rename(&tmp, dir.join(METADATA)).map_err(|e| io("publishing metadata in", e))?;
        if let Ok(d) = std::fs::File::open(dir) {
            // Best effort: makes the rename durable on file systems that need it.
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// The `n` of a checkpoint directory name `chk-<n>`.
pub(crate) fn checkpoint_number(name: &str) -> Option<u64> {
    name.strip_prefix("chk-").and_then(|n| n.parse().ok())
}

/// Complete checkpoints under `root`, newest first: directories `chk-<n>` with metadata.
pub(crate) fn latest_checkpoints(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
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
        let Some(n) = checkpoint_number(&name) else {
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
        Error::Config(format!(
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
