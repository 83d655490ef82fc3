//! Without the `object-store` feature there is no checkpoint storage besides the local
//! directory: `Remote` has no values, and asking for storage is a configuration error.

use super::coordinator::TaskSnapshot;
use super::CheckpointConfig;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Checkpoint storage; uninhabited in this build.
#[derive(Debug)]
pub(crate) enum Remote {}

impl Remote {
    pub(crate) fn open(config: &CheckpointConfig) -> Result<Option<Self>> {
        match &config.storage {
            None => Ok(None),
            Some(url) => Err(Error::Config(format!(
                "checkpoint storage {url} needs ferroflow built with the `object-store` feature"
            ))),
        }
    }

    pub(crate) fn url(&self) -> &str {
        match *self {}
    }

    pub(crate) fn upload_snapshot(
        &self,
        _task: usize,
        _root: PathBuf,
        _snapshot: TaskSnapshot,
        _done: impl FnOnce(TaskSnapshot, Result<()>) + Send + 'static,
    ) {
        match *self {}
    }

    pub(crate) fn after_uploads(&self, _task: usize, _f: impl FnOnce() + Send + 'static) {
        match *self {}
    }

    pub(crate) fn put_bytes(&self, _rel: &str, _bytes: Vec<u8>) -> Result<()> {
        match *self {}
    }

    pub(crate) fn rename_dir(&self, _from: &str, _to: &str) -> Result<()> {
        match *self {}
    }

    pub(crate) fn delete_dir(&self, _rel: &str) -> Result<()> {
        match *self {}
    }

    pub(crate) fn restorable_checkpoints(&self) -> Result<Vec<(u64, String)>> {
        match *self {}
    }

    pub(crate) fn prune(&self, _retained: usize) {
        match *self {}
    }

    pub(crate) fn next_checkpoint_id(&self) -> Result<u64> {
        match *self {}
    }

    pub(crate) fn fetch(&self, _name: &str, _local_root: &Path) -> Result<PathBuf> {
        match *self {}
    }

    pub(crate) fn collect_shared_files(&self) {
        match *self {}
    }
}
