//! A line writer shared by the splits (and workers) of one source.

use ferroflow_core::{Error, Result};
use parking_lot::Mutex;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Appends lines to one file from several threads.
#[derive(Debug, Clone)]
pub(crate) struct SharedWriter {
    path: PathBuf,
    inner: Arc<Mutex<BufWriter<File>>>,
}

impl SharedWriter {
    /// Opens `path` for appending, creating it and its directory if needed.
    pub(crate) fn append(path: &Path) -> Result<Self> {
        create_parent(path)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        Ok(Self {
            path: path.to_path_buf(),
            inner: Arc::new(Mutex::new(BufWriter::new(file))),
        })
    }

    pub(crate) fn write_line(&self, line: &str) -> Result<()> {
        let mut w = self.inner.lock();
        w.write_all(line.as_bytes())
            .and_then(|()| w.write_all(b"\n"))
            .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))
    }

    pub(crate) fn flush(&self) -> Result<()> {
        self.inner
            .lock()
            .flush()
            .map_err(|e| Error::io(format!("flushing {}", self.path.display()), e))
    }
}

/// Creates the directory `path` will live in.
pub(crate) fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating directory {}", dir.display()), e)),
        _ => Ok(()),
    }
}
