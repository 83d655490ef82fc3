//! Job-wide control: graceful stop, cancellation, and the first error.

use crate::Error;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Shared by every task of a job.
#[derive(Debug, Default)]
pub(crate) struct JobControl {
    /// Set by a signal or a handle: sources stop reading, the rest drains.
    pub(crate) stop: Arc<AtomicBool>,
    /// Set when a task fails: every task stops at once.
    cancel: AtomicBool,
    error: Mutex<Option<Error>>,
}

impl JobControl {
    /// A control whose stop flag is `stop` (shared by every attempt of a job).
    pub(crate) fn with_stop(stop: Arc<AtomicBool>) -> Self {
        Self {
            stop,
            ..Self::default()
        }
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Records a task failure. The first real error wins; `Cancelled` (the echo of another
    /// task's failure) only cancels.
    pub(crate) fn fail(&self, task: &str, error: Error) {
        if !matches!(error, Error::Cancelled) {
            let mut slot = self.error.lock();
            if slot.is_none() {
                tracing::error!(task, error = %error, "Task failed; cancelling the job.");
                *slot = Some(Error::Task {
                    task: task.to_string(),
                    source: Box::new(error),
                });
            }
        }
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub(crate) fn take_error(&self) -> Option<Error> {
        self.error.lock().take()
    }
}
