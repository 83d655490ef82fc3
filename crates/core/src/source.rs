//! Sources: splittable, pull-based inputs.
//!
//! A [`Source`] divides its input into splits (files, partitions, generator shards); the
//! runtime assigns split `i` to worker `i % parallelism` and pulls batches from each
//! split's [`SplitReader`]. Pulling (rather than letting sources push) keeps control in
//! the runtime: it decides when to read, tracks watermarks per split and stops reading on
//! shutdown.

use crate::checkpoint::SplitPosition;
use crate::Result;

/// What a [`SplitReader::poll`] call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitStatus {
    /// More records may be available at once.
    More,
    /// No record is available now; ask again later (the runtime backs off briefly).
    Idle,
    /// The split is exhausted. Records appended by this call are still delivered.
    Finished,
}

/// A type's name without its path and parameters, in lower case (`MySource<T>` gives
/// `mysource`): the default name of a source, of a split and of other pluggable parts.
pub fn short_type_name<T: ?Sized>() -> String {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base).to_lowercase()
}

/// Reads one split. Owned by one worker thread. Implement `poll`; a split that can be
/// replayed also implements `split_id`, `position` and `seek`.
pub trait SplitReader<T>: Send {
    /// Appends at most `max` records to `out` and says whether more may follow.
    ///
    /// # Errors
    /// A failing read stops the job with that error.
    fn poll(&mut self, max: usize, out: &mut Vec<T>) -> Result<SplitStatus>;

    /// A stable identifier of the split, unique within its source (e.g. a file path or
    /// `generator-3/8`): checkpoints record positions under it. Default: the reader's
    /// type name, which is enough for a source of one split; a checkpoint in which two
    /// splits of one source report a position under the same id fails, naming it.
    fn split_id(&self) -> String {
        short_type_name::<Self>()
    }

    /// Called once on the worker thread before the first `poll`.
    fn open(&mut self) -> Result<()> {
        Ok(())
    }

    /// Called once when the split is finished or the job stops.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }

    /// The position after the last record returned by `poll` (also after the split
    /// finished or closed), recorded in checkpoints. `None` means the split cannot be
    /// replayed, and a job with checkpoints enabled then fails at its first checkpoint
    /// with an error naming the split.
    fn position(&self) -> Option<SplitPosition> {
        None
    }

    /// Continues after `position`, as recorded by [`Self::position`] in a checkpoint.
    /// Called before `open`.
    ///
    /// # Errors
    /// When the position does not belong to this split or cannot be reached.
    fn seek(&mut self, position: &SplitPosition) -> Result<()> {
        Err(crate::Error::Checkpoint(format!(
            "split `{}` cannot be restored to {position}: it is not replayable",
            self.split_id()
        )))
    }

    /// Called before `open` when the job starts from a checkpoint. `own` is the position
    /// the checkpoint recorded for this split (if it has one), `recorded` every split
    /// position it recorded for this source, so that a reader can check that they belong
    /// to the input it reads (the same cluster, say). The default seeks to `own` and
    /// otherwise reads the split from its start.
    ///
    /// # Errors
    /// When the recorded positions cannot be applied to this split.
    fn restore(&mut self, own: Option<&SplitPosition>, recorded: &[&SplitPosition]) -> Result<()> {
        let _ = recorded;
        match own {
            Some(position) => self.seek(position),
            None => {
                tracing::info!(split = %self.split_id(), "Split not in the checkpoint; reading it from the start.");
                Ok(())
            }
        }
    }

    /// The worker that should read this split, given the source's parallelism (`None`:
    /// no preference; such splits are spread round-robin). Used so that a split always
    /// lands on the same worker, whether it was listed at start or discovered later.
    fn owner(&self, parallelism: usize) -> Option<usize> {
        let _ = parallelism;
        None
    }

    /// Splits that appeared since the last call (new partitions of a topic, say), to be
    /// read by this worker. Called after every read round; a reader that discovers
    /// splits limits how often it looks. Default: none.
    ///
    /// # Errors
    /// A failure to look stops the job; a reader that can retry should log and retry.
    fn discover(&mut self) -> Result<Vec<Box<dyn SplitReader<T>>>> {
        Ok(Vec::new())
    }

    /// Whether this split's event time counts toward the worker's watermark. A split that
    /// never produces records itself (one that only discovers others) returns false.
    fn holds_watermark(&self) -> bool {
        true
    }

    /// The checkpoint `checkpoint`, which recorded `position` for this split, completed:
    /// the split may tell its upstream (commit offsets to a consumer group, say).
    /// Called on the worker thread, in checkpoint order; a checkpoint whose completion
    /// was overtaken by a later one's is skipped.
    ///
    /// # Errors
    /// A failure stops the job; a reader for which this is only advisory logs instead.
    fn checkpoint_complete(&mut self, checkpoint: u64, position: &SplitPosition) -> Result<()> {
        let _ = (checkpoint, position);
        Ok(())
    }
}

/// A splittable input of records of type `Item`: implement `create_splits`.
pub trait Source: Send + 'static {
    /// The record type.
    type Item: Send + 'static;

    /// Name used in logs, metrics and the operator's name in checkpoints, e.g.
    /// `"generator"`. Default: the type's name in lower case (`MySource<T>` gives
    /// `mysource`); a source whose type may be renamed should give a stable name.
    fn name(&self) -> String {
        short_type_name::<Self>()
    }

    /// Divides the input into splits. `parallelism` (the number of workers that will read
    /// them) is a hint: a source may return more splits, fewer, or none.
    ///
    /// # Errors
    /// When the input cannot be enumerated (a missing directory, say).
    fn create_splits(
        &mut self,
        parallelism: usize,
    ) -> Result<Vec<Box<dyn SplitReader<Self::Item>>>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Clicks<T>(std::marker::PhantomData<T>);

    impl<T: Send + 'static> Source for Clicks<T> {
        type Item = T;
        fn create_splits(&mut self, _p: usize) -> Result<Vec<Box<dyn SplitReader<T>>>> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn a_source_is_named_after_its_type_by_default() {
        assert_eq!(Clicks::<String>(std::marker::PhantomData).name(), "clicks");
    }
}
