//! Checkpoint configuration.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// When and where to checkpoint. Unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Directory holding the checkpoints. With `storage` set it is the local working copy:
    /// tasks write their snapshots here, uploads go from here, and restores fetch into
    /// it (skipping files already present). Default: `checkpoints`.
    pub dir: PathBuf,
    /// Durable storage for checkpoints, as a URL: `s3://bucket/prefix` (and S3-compatible
    /// stores through the `aws_endpoint` option), `file:///absolute/path`, or
    /// `hdfs://namenode:port/path` (feature `hdfs`). Default: none, checkpoints stay in
    /// `dir`. With storage, each task uploads its new files after its barrier without
    /// holding up the stream; a checkpoint is complete when its `_metadata` is stored;
    /// restores read the storage, and retention and collection of shared files apply there.
    pub storage: Option<String>,
    /// Options for the storage client, by object_store's key names, e.g. `aws_endpoint`,
    /// `aws_region`, `aws_access_key_id`, `aws_secret_access_key`, `aws_allow_http`. S3 also
    /// reads the usual `AWS_*` environment variables; options given here win. Default:
    /// none.
    pub storage_options: BTreeMap<String, String>,
    /// Files one task uploads at once. Default: 4.
    pub upload_concurrency: usize,
    /// Time between the starts of two checkpoints (`10s` in files). Default: 10 s.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long a checkpoint may take before it is abandoned. Default: 10 min.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Least time between the end of one checkpoint and the start of the next.
    /// Default: 0 s.
    #[serde(with = "humantime_serde")]
    pub min_pause: Duration,
    /// Completed checkpoints kept; older ones are deleted. Default: 3.
    pub retained: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("checkpoints"),
            storage: None,
            storage_options: BTreeMap::new(),
            upload_concurrency: 4,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(600),
            min_pause: Duration::ZERO,
            retained: 3,
        }
    }
}

impl CheckpointConfig {
    /// Checkpoints in `dir` with the defaults otherwise.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            ..Self::default()
        }
    }

    /// Sets `interval`.
    #[must_use]
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets `timeout`.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets `min_pause`.
    #[must_use]
    pub fn with_min_pause(mut self, pause: Duration) -> Self {
        self.min_pause = pause;
        self
    }

    /// Sets `storage`: checkpoints are kept at this URL, `dir` is the local working copy.
    #[must_use]
    pub fn with_storage(mut self, url: impl Into<String>) -> Self {
        self.storage = Some(url.into());
        self
    }

    /// Adds one `storage_options` entry.
    #[must_use]
    pub fn with_storage_option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.storage_options.insert(key.into(), value.into());
        self
    }

    /// Sets `retained`.
    #[must_use]
    pub fn with_retained(mut self, retained: usize) -> Self {
        self.retained = retained;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.interval < Duration::from_millis(1) {
            return Err(Error::Config(
                "checkpoint interval must be at least 1ms".into(),
            ));
        }
        if self.timeout < Duration::from_millis(1) {
            return Err(Error::Config(
                "checkpoint timeout must be at least 1ms".into(),
            ));
        }
        if self.upload_concurrency == 0 {
            return Err(Error::Config(
                "checkpoint upload_concurrency must be at least 1".into(),
            ));
        }
        if self.storage.is_some() && !cfg!(feature = "object-store") {
            return Err(Error::Config(
                "checkpoint storage needs ferroflow built with the `object-store` feature".into(),
            ));
        }
        if self.retained == 0 {
            return Err(Error::Config(
                "checkpoint retained must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Where a job's state comes from when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RestoreFrom {
    /// Start with empty state and every source at its beginning.
    #[default]
    Nothing,
    /// The newest complete checkpoint or savepoint in the checkpoint directory (a
    /// savepoint taken at a stop is the newest state of the job); empty state if there is
    /// none. If the newest is damaged, the job refuses to start unless `fallback` allows
    /// trying older ones; it never starts from empty state because of damage.
    Latest {
        /// Try older complete checkpoints when the newest cannot be read. What the skipped
        /// checkpoints had already committed is produced again (sinks see that stretch
        /// twice), so this trades exactly-once for availability and is off by default.
        fallback: bool,
    },
    /// This checkpoint directory (`.../chk-<n>`); an error if it cannot be read.
    Path(PathBuf),
}
