//! The job's I/O runtime: a tokio runtime, started the first time an operator needs it and
//! shut down when the last task holding it ends.

use crate::{Error, Result};
use std::sync::{Arc, OnceLock};

/// One per job, shared by every async operator of every worker.
pub(crate) struct IoRuntime {
    threads: usize,
    runtime: OnceLock<tokio::runtime::Runtime>,
}

impl IoRuntime {
    pub(crate) fn new(threads: usize) -> Arc<Self> {
        Arc::new(Self {
            threads: threads.max(1),
            runtime: OnceLock::new(),
        })
    }

    /// The runtime, started on first use.
    pub(crate) fn handle(&self) -> Result<tokio::runtime::Handle> {
        if let Some(rt) = self.runtime.get() {
            return Ok(rt.handle().clone());
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.threads)
            .thread_name("ferroflow-io")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the job's I/O runtime", e))?;
        // Another worker may have started one meanwhile: keep the first.
        let _ = self.runtime.set(rt);
        self.runtime
            .get()
            .map(|rt| rt.handle().clone())
            .ok_or_else(|| Error::Internal("the job's I/O runtime did not start".into()))
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        // Tasks of a failed job may still be waiting on I/O: do not wait for them.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
