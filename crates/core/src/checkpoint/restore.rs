//! What each task gets back from a restored checkpoint, and where a task's checkpoint
//! files go. Operators only say what they snapshot and take what this module hands them;
//! none of them reads checkpoint metadata or builds checkpoint paths itself.

use super::{CheckpointMetadata, OperatorState, SplitPosition};
use crate::{Result, SplitReader};
use ferroflow_state::{KeyedSnapshot, KeyedStateStore, StateBackend, StoreScope};
use std::path::PathBuf;

/// A checkpoint being restored, with the directory its file paths are relative to.
pub(crate) struct Restored {
    pub(crate) meta: CheckpointMetadata,
    pub(crate) root: PathBuf,
}

/// The part of a restored checkpoint (if any) that belongs to one task: one worker of
/// `parallelism`, which may differ from the parallelism the checkpoint was taken at.
#[derive(Clone, Copy)]
pub(crate) struct TaskRestore<'a> {
    pub(crate) restored: Option<&'a Restored>,
    pub(crate) worker: usize,
    pub(crate) parallelism: usize,
}

impl TaskRestore<'_> {
    /// The keyed state of `scope.operator` in this worker's key groups, on `backend`;
    /// empty on a fresh start.
    pub(crate) fn keyed_store(
        &self,
        backend: &dyn StateBackend,
        scope: &StoreScope,
    ) -> Result<KeyedStateStore> {
        let Some(restored) = self.restored else {
            return Ok(backend.open_keyed_store(scope)?);
        };
        let mut snapshots = Vec::new();
        for f in restored
            .meta
            .state_files
            .iter()
            .filter(|f| f.operator == scope.operator)
        {
            let snapshot = KeyedSnapshot::read_from(&restored.root.join(&f.file))?;
            snapshots.push(snapshot.filter(scope.key_groups));
        }
        Ok(backend.restore_keyed_store(scope, snapshots, &restored.root)?)
    }

    /// What sink `operator` had prepared and not yet known to be committed, for the
    /// workers of the checkpoint that map to this one (worker `w` of the checkpoint goes to
    /// worker `w % parallelism`).
    pub(crate) fn sink_commits(&self, operator: &str) -> Vec<serde_json::Value> {
        let Some(restored) = self.restored else {
            return Vec::new();
        };
        restored
            .meta
            .sink_commits
            .iter()
            .filter(|c| c.operator == operator && self.is_mine(c.worker))
            .map(|c| c.committable.clone())
            .collect()
    }

    /// The non-keyed state operator `operator` snapshotted, for the workers of the
    /// checkpoint that map to this one (as for sink commits).
    pub(crate) fn operator_states(&self, operator: &str) -> Vec<serde_json::Value> {
        let Some(restored) = self.restored else {
            return Vec::new();
        };
        restored
            .meta
            .operator_states
            .iter()
            .filter(|s| s.operator == operator && self.is_mine(s.worker))
            .map(|s| s.state.clone())
            .collect()
    }

    /// Hands each split reader of source `operator` its recorded position (and every
    /// position of the source, for readers that must work out theirs from others').
    pub(crate) fn restore_splits<T>(
        &self,
        operator: &str,
        readers: &mut [Box<dyn SplitReader<T>>],
    ) -> Result<()> {
        let Some(restored) = self.restored else {
            return Ok(());
        };
        let mine: Vec<_> = restored
            .meta
            .positions
            .iter()
            .filter(|p| p.operator == operator)
            .collect();
        let all: Vec<&SplitPosition> = mine.iter().map(|p| &p.position).collect();
        for reader in readers {
            let split = reader.split_id();
            let own = mine.iter().find(|p| p.split == split).map(|p| &p.position);
            reader.restore(own, &all)?;
        }
        Ok(())
    }

    fn is_mine(&self, checkpoint_worker: usize) -> bool {
        checkpoint_worker % self.parallelism.max(1) == self.worker
    }
}

/// Where a task's files of checkpoint `checkpoint` go, relative to the checkpoint root:
/// `chk-<n>/<operator>-<worker>`, to which each kind of file adds its extension.
pub(crate) fn task_file_base(checkpoint: u64, operator: &str, worker: usize) -> String {
    format!("chk-{checkpoint}/{}-{worker}", file_safe(operator))
}

/// A file-name-safe form of an operator name.
pub(crate) fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// An operator's own snapshot, for [`CheckpointMetadata::operator_states`].
pub(crate) fn operator_state(
    operator: &str,
    worker: usize,
    state: serde_json::Value,
) -> OperatorState {
    OperatorState {
        operator: operator.to_string(),
        worker,
        state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_go_to_the_worker_their_index_maps_to() {
        let mut meta = CheckpointMetadata::new(3, 128);
        for w in 0..4 {
            meta.operator_states
                .push(operator_state("async#2", w, serde_json::json!(w)));
        }
        meta.operator_states
            .push(operator_state("other", 0, serde_json::json!("x")));
        let restored = Restored {
            meta,
            root: PathBuf::from("/nowhere"),
        };
        let view = |worker, parallelism| TaskRestore {
            restored: Some(&restored),
            worker,
            parallelism,
        };
        assert_eq!(
            view(0, 2).operator_states("async#2"),
            vec![serde_json::json!(0), serde_json::json!(2)]
        );
        assert_eq!(
            view(1, 3).operator_states("async#2"),
            vec![serde_json::json!(1)]
        );
        let fresh = TaskRestore {
            restored: None,
            worker: 0,
            parallelism: 1,
        };
        assert!(fresh.operator_states("async#2").is_empty());
        assert!(fresh.sink_commits("sink#1").is_empty());
        assert_eq!(task_file_base(7, "uv count#3", 1), "chk-7/uv_count_3-1");
    }
}
