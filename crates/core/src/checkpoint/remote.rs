//! Checkpoint storage in an object store (S3, `file://`, HDFS).
//!
//! The store mirrors the layout of the local checkpoint directory: `chk-<n>/...`,
//! `savepoint-<n>/...` and `shared/...` under the URL's path. Tasks write their snapshots
//! locally as without storage; their files are then uploaded on a small runtime of the
//! job's own while the tasks go on processing, and a task's acknowledgement reaches the
//! coordinator only once its files are stored. The coordinator stores `_metadata` last,
//! which makes the checkpoint complete. Shared files already stored (checked by size) are
//! not uploaded again.

use super::coordinator::TaskSnapshot;
use super::metadata::{
    checkpoint_number, restorable_number, write_metadata_bytes, CheckpointMetadata, METADATA,
};
use super::CheckpointConfig;
use crate::{Error, Result};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Files up to this size are stored with one request; larger ones in parts of this size.
const PART_BYTES: usize = 8 << 20;

/// An open checkpoint storage.
pub(crate) struct Remote {
    inner: Arc<Inner>,
    /// Each task's newest upload, so that what the task says later arrives after it.
    in_flight: parking_lot::Mutex<HashMap<usize, tokio::task::JoinHandle<()>>>,
    /// Taken only when dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Remote {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed inside another runtime (a job
        // started from async code); uploads still running belong to abandoned checkpoints.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    url: String,
    concurrency: usize,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

fn storage_err(context: String, e: object_store::Error) -> Error {
    let retryable = crate::storage::is_retryable(&e);
    Error::Storage {
        context,
        source: Box::new(e),
        retryable,
    }
}

impl Remote {
    /// Opens `config.storage`; `None` without storage.
    pub(crate) fn open(config: &CheckpointConfig) -> Result<Option<Self>> {
        let Some(url) = &config.storage else {
            return Ok(None);
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ff-upload")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the checkpoint upload runtime", e))?;
        let (store, prefix) =
            crate::storage::open_store(url, &config.storage_options, runtime.handle()).map_err(
                |e| match e {
                    Error::Config(why) => Error::Config(format!("checkpoint storage {why}")),
                    other => other,
                },
            )?;
        let remote = Self {
            inner: Arc::new(Inner {
                store,
                prefix,
                url: url.clone(),
                concurrency: config.upload_concurrency.max(1),
            }),
            in_flight: parking_lot::Mutex::new(HashMap::new()),
            runtime: Some(runtime),
        };
        Ok(Some(remote))
    }

    /// The storage URL.
    pub(crate) fn url(&self) -> &str {
        &self.inner.url
    }

    /// Uploads what task `task`'s `snapshot` wrote under `root` in the background, then
    /// calls `done`. A task's uploads run one after the other, in order.
    pub(crate) fn upload_snapshot(
        &self,
        task: usize,
        root: PathBuf,
        snapshot: TaskSnapshot,
        done: impl FnOnce(TaskSnapshot, Result<()>) + Send + 'static,
    ) {
        let inner = Arc::clone(&self.inner);
        let mut in_flight = self.in_flight.lock();
        let before = in_flight.remove(&task);
        let Some(runtime) = &self.runtime else {
            return;
        };
        let handle = runtime.spawn(async move {
            if let Some(before) = before {
                let _ = before.await;
            }
            let result = inner.upload_snapshot(&root, &snapshot).await;
            done(snapshot, result);
        });
        in_flight.insert(task, handle);
    }

    /// Calls `f` once task `task`'s uploads so far have ended (at once if there are none).
    pub(crate) fn after_uploads(&self, task: usize, f: impl FnOnce() + Send + 'static) {
        match (self.in_flight.lock().remove(&task), &self.runtime) {
            (Some(before), Some(runtime)) => {
                runtime.spawn(async move {
                    let _ = before.await;
                    f();
                });
            }
            _ => f(),
        }
    }

    /// Runs `work` to its end on the storage runtime. Called from a thread that is itself
    /// inside an async runtime (a job started from async code), it runs on a helper
    /// thread, since a runtime cannot block inside another.
    fn block_on<T: Send>(&self, work: impl Future<Output = Result<T>> + Send) -> Result<T> {
        let Some(runtime) = &self.runtime else {
            return Err(Error::Cancelled);
        };
        crate::storage::block_on(runtime, work).unwrap_or_else(|_| Err(Error::Cancelled))
    }

    /// Stores `bytes` at `rel`.
    pub(crate) fn put_bytes(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        let location = self.inner.location(rel);
        let inner = &self.inner;
        self.block_on(async move {
            inner
                .store
                .put(&location, PutPayload::from(bytes))
                .await
                .map(drop)
                .map_err(|e| storage_err(format!("{}: writing {rel}", inner.url), e))
        })
    }

    /// Moves every object under directory `from` to directory `to`.
    pub(crate) fn rename_dir(&self, from: &str, to: &str) -> Result<()> {
        let inner = &self.inner;
        self.block_on(async {
            for rel in inner.list_files(from).await? {
                let Some(rest) = rel.strip_prefix(from) else {
                    continue;
                };
                let target = format!("{to}{rest}");
                inner
                    .store
                    .rename(&inner.location(&rel), &inner.location(&target))
                    .await
                    .map_err(|e| storage_err(format!("{}: moving {rel}", inner.url), e))?;
            }
            Ok(())
        })
    }

    /// Deletes directory `rel` and everything in it.
    pub(crate) fn delete_dir(&self, rel: &str) -> Result<()> {
        let inner = &self.inner;
        self.block_on(async { inner.delete_all(inner.list_files(rel).await?).await })
    }

    /// Every checkpoint directory (`chk-<n>`), complete or not.
    fn checkpoint_dirs(&self) -> Result<Vec<(u64, String)>> {
        self.numbered_dirs(checkpoint_number)
    }

    /// Every directory whose name `number` gives a number, complete or not.
    fn numbered_dirs(&self, number: fn(&str) -> Option<u64>) -> Result<Vec<(u64, String)>> {
        Ok(self
            .block_on(self.inner.dirs())?
            .into_iter()
            .filter_map(|d| number(&d).map(|n| (n, d)))
            .collect())
    }

    /// The complete ones (with `_metadata`) among `dirs`, newest first.
    fn complete_among(&self, dirs: &[(u64, String)]) -> Result<Vec<(u64, String)>> {
        let inner = &self.inner;
        self.block_on(async {
            let mut found = Vec::new();
            for (n, name) in dirs {
                if inner.metadata(name).await?.is_some() {
                    found.push((*n, name.clone()));
                }
            }
            found.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
            Ok(found)
        })
    }

    /// Complete checkpoints (`chk-<n>` with `_metadata`), newest first.
    #[cfg(test)]
    pub(crate) fn complete_checkpoints(&self) -> Result<Vec<(u64, String)>> {
        self.complete_among(&self.checkpoint_dirs()?)
    }

    /// Complete checkpoints and savepoints, newest first.
    pub(crate) fn restorable_checkpoints(&self) -> Result<Vec<(u64, String)>> {
        self.complete_among(&self.numbered_dirs(restorable_number)?)
    }

    /// Keeps the newest `retained` complete checkpoints and deletes older checkpoint
    /// directories, complete or not.
    pub(crate) fn prune(&self, retained: usize) {
        let listed = self.checkpoint_dirs().and_then(|all| {
            let complete = self.complete_among(&all)?;
            Ok((complete, all))
        });
        let (complete, all) = match listed {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "Could not list checkpoints in storage for pruning.");
                return;
            }
        };
        let Some(keep_from) = complete.iter().take(retained).map(|(n, _)| *n).min() else {
            return;
        };
        for (n, name) in all {
            if n < keep_from {
                if let Err(e) = self.delete_dir(&name) {
                    tracing::warn!(checkpoint = %name, storage = %self.inner.url, error = %e, "Could not remove an old checkpoint from storage.");
                }
            }
        }
    }

    /// The first checkpoint number not used in the storage.
    pub(crate) fn next_checkpoint_id(&self) -> Result<u64> {
        Ok(self
            .checkpoint_dirs()?
            .iter()
            .map(|(n, _)| *n)
            .max()
            .map_or(1, |n| n + 1))
    }

    /// Copies checkpoint (or savepoint) `name` into `local_root/name`, skipping files
    /// already there with the right size, and returns the local directory. `_metadata` is
    /// written last.
    pub(crate) fn fetch(&self, name: &str, local_root: &Path) -> Result<PathBuf> {
        let inner = &self.inner;
        let dir = local_root.join(name);
        self.block_on(async {
            let Some(bytes) = inner.metadata(name).await? else {
                return Err(Error::Checkpoint(format!(
                    "checkpoint {name} is not in {} (no {name}/{METADATA})",
                    inner.url
                )));
            };
            let meta: CheckpointMetadata = serde_json::from_slice(&bytes).map_err(|e| {
                Error::Checkpoint(format!(
                    "checkpoint {}/{name} cannot be restored: _metadata is not valid: {e}",
                    inner.url
                ))
            })?;
            let mut wanted = Vec::new();
            for f in &meta.state_files {
                wanted.push((f.file.clone(), f.bytes));
                wanted.extend(f.files.iter().map(|s| (s.path.clone(), s.bytes)));
            }
            let (mut fetched, mut bytes_fetched) = (0u64, 0u64);
            let results: Vec<u64> = stream::iter(wanted)
                .map(|(rel, bytes)| async move {
                    let local = local_root.join(&rel);
                    if std::fs::metadata(&local).is_ok_and(|m| m.len() == bytes) {
                        return Ok(0);
                    }
                    inner.download(&rel, &local).await
                })
                .buffer_unordered(inner.concurrency)
                .try_collect()
                .await?;
            for b in results.into_iter().filter(|b| *b > 0) {
                fetched += 1;
                bytes_fetched += b;
            }
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            write_metadata_bytes(&dir, &bytes)?;
            tracing::info!(checkpoint = name, storage = %inner.url, files = fetched, bytes = bytes_fetched, "Fetched a checkpoint from storage.");
            Ok(dir)
        })
    }

    /// Deletes the files in `shared/` that no stored checkpoint or savepoint uses. Must
    /// not run while a checkpoint is being stored. When anything cannot be read, nothing
    /// is deleted.
    pub(crate) fn collect_shared_files(&self) {
        let inner = &self.inner;
        let result = self.block_on(async {
            let mut used = HashSet::new();
            for name in inner.dirs().await? {
                if !(name.starts_with("chk-") || name.starts_with("savepoint-")) {
                    continue;
                }
                let Some(bytes) = inner.metadata(&name).await? else {
                    continue;
                };
                let meta: CheckpointMetadata = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::Checkpoint(format!("{}/{name}/{METADATA} is not valid: {e}", inner.url))
                })?;
                for f in meta.state_files {
                    used.extend(
                        f.files
                            .into_iter()
                            .filter(|f| f.is_shared())
                            .map(|f| f.path),
                    );
                }
            }
            let unused: Vec<String> = inner
                .list_files(ferroflow_state::native::SHARED_DIR)
                .await?
                .into_iter()
                .filter(|f| !used.contains(f))
                .collect();
            let count = unused.len();
            inner.delete_all(unused).await?;
            Ok::<_, Error>(count)
        });
        match result {
            Ok(0) => {}
            Ok(removed) => tracing::debug!(
                removed,
                storage = %inner.url,
                "Deleted stored shared checkpoint files no checkpoint uses."
            ),
            Err(e) => {
                tracing::warn!(error = %e, "Could not collect unused shared files in checkpoint storage; keeping them.")
            }
        }
    }
}

impl Inner {
    fn location(&self, rel: &str) -> StorePath {
        rel.split('/')
            .filter(|s| !s.is_empty())
            .fold(self.prefix.clone(), |p, s| p.join(s))
    }

    /// `location` relative to the prefix, as `a/b/c`.
    fn relative(&self, location: &StorePath) -> Option<String> {
        let parts: Vec<String> = location
            .prefix_match(&self.prefix)?
            .map(|p| p.as_ref().to_string())
            .collect();
        Some(parts.join("/"))
    }

    async fn dirs(&self) -> Result<Vec<String>> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let listed = self
            .store
            .list_with_delimiter(prefix)
            .await
            .map_err(|e| storage_err(format!("{}: listing", self.url), e))?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| self.relative(p))
            .collect())
    }

    /// Every file under directory `rel`, relative to the prefix.
    async fn list_files(&self, rel: &str) -> Result<Vec<String>> {
        let location = self.location(rel);
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&location))
            .try_collect()
            .await
            .map_err(|e| storage_err(format!("{}: listing {rel}", self.url), e))?;
        Ok(metas
            .iter()
            .filter_map(|m| self.relative(&m.location))
            .collect())
    }

    async fn delete(&self, rel: &str) -> Result<()> {
        match self.store.delete(&self.location(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage_err(format!("{}: deleting {rel}", self.url), e)),
        }
    }

    /// Deletes `files` (relative paths), several at once.
    async fn delete_all(&self, files: Vec<String>) -> Result<()> {
        stream::iter(files)
            .map(|f| async move { self.delete(&f).await })
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await
    }

    /// The `_metadata` of `name`, or `None` when it has none (incomplete).
    async fn metadata(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let rel = format!("{name}/{METADATA}");
        let got = match self.store.get(&self.location(&rel)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(storage_err(format!("{}: reading {rel}", self.url), e)),
        };
        let bytes = got
            .bytes()
            .await
            .map_err(|e| storage_err(format!("{}: reading {rel}", self.url), e))?;
        Ok(Some(bytes.to_vec()))
    }

    async fn upload_snapshot(&self, root: &Path, snapshot: &TaskSnapshot) -> Result<()> {
        let mut files = Vec::new();
        for s in &snapshot.states {
            files.push((s.file.clone(), s.bytes, false));
            files.extend(
                s.files
                    .iter()
                    .map(|f| (f.path.clone(), f.bytes, f.is_shared())),
            );
        }
        stream::iter(files)
            .map(|(rel, bytes, shared)| async move {
                if shared && self.stored_size(&rel).await? == Some(bytes) {
                    return Ok(());
                }
                self.upload(&root.join(&rel), &rel).await
            })
            .buffer_unordered(self.concurrency)
            .try_collect::<()>()
            .await
    }

    async fn stored_size(&self, rel: &str) -> Result<Option<u64>> {
        match self.store.head(&self.location(rel)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage_err(format!("{}: checking {rel}", self.url), e)),
        }
    }

    /// Stores local file `from` at `rel`: one request for small files, parts otherwise.
    async fn upload(&self, from: &Path, rel: &str) -> Result<()> {
        let ctx = || format!("{}: writing {rel}", self.url);
        let mut file = std::fs::File::open(from)
            .map_err(|e| Error::io(format!("opening {} to upload", from.display()), e))?;
        let read_err = |e| Error::io(format!("reading {} to upload", from.display()), e);
        let len = file.metadata().map_err(read_err)?.len();
        let location = self.location(rel);
        if len <= PART_BYTES as u64 {
            let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            file.read_to_end(&mut buf).map_err(read_err)?;
            self.store
                .put(&location, PutPayload::from(buf))
                .await
                .map_err(|e| storage_err(ctx(), e))?;
            return Ok(());
        }
        let upload = self
            .store
            .put_multipart(&location)
            .await
            .map_err(|e| storage_err(ctx(), e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut buf = vec![0u8; PART_BYTES];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(read_err(e));
                }
            };
            if let Err(e) = writer.wait_for_capacity(2).await {
                return Err(storage_err(ctx(), e));
            }
            writer.write(&buf[..n]);
        }
        writer.finish().await.map_err(|e| storage_err(ctx(), e))?;
        Ok(())
    }

    /// Fetches `rel` into local file `to` (through a temporary name); returns its size.
    async fn download(&self, rel: &str, to: &Path) -> Result<u64> {
        let ctx = || format!("{}: reading {rel}", self.url);
        let got = self
            .store
            .get(&self.location(rel))
            .await
            .map_err(|e| storage_err(ctx(), e))?;
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        let tmp = to.with_extension("partial");
        let write_err = |e| Error::io(format!("writing {}", tmp.display()), e);
        let mut out = std::fs::File::create(&tmp).map_err(write_err)?;
        let mut chunks = got.into_stream();
        let mut total = 0u64;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| storage_err(ctx(), e))?;
            out.write_all(&chunk).map_err(write_err)?;
            total += chunk.len() as u64;
        }
        out.sync_all().map_err(write_err)?;
        std::fs::rename(&tmp, to)
            .map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))?;
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    type Options<'a> = &'a [(&'a str, &'a str)];

    fn open(url: &str, options: Options<'_>) -> Result<Option<Remote>> {
        let mut config = CheckpointConfig::new("unused").with_storage(url);
        for (k, v) in options {
            config = config.with_storage_option(*k, *v);
        }
        Remote::open(&config)
    }

    #[test]
    fn bad_urls_and_options_are_configuration_errors() {
        let cases: [(&str, Options<'_>, &str); 4] = [
            ("ftp://host/x", &[], "unsupported scheme `ftp`"),
            ("not a url", &[], "checkpoint storage not a url"),
            (
                "file:///x",
                &[("region", "a")],
                "takes no options (got `region`)",
            ),
            ("s3://bucket/x", &[("no_such_key", "1")], "no_such_key"),
        ];
        for (url, options, wanted) in cases {
            let err = open(url, options).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{url}: {err:?}");
            assert!(err.to_string().contains(wanted), "{url}: {err}");
        }
        #[cfg(not(feature = "hdfs"))]
        assert!(open("hdfs://nn:9000/x", &[])
            .unwrap_err()
            .to_string()
            .contains("`hdfs` feature"));
    }

    #[test]
    fn a_file_store_mirrors_the_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let url = format!("file://{}", tmp.path().join("store").display());
        let remote = open(&url, &[]).unwrap().unwrap();
        assert_eq!(remote.complete_checkpoints().unwrap(), vec![]);
        assert_eq!(remote.next_checkpoint_id().unwrap(), 1);
        remote
            .put_bytes("chk-4/op-0.state", b"state".to_vec())
            .unwrap();
        assert_eq!(remote.next_checkpoint_id().unwrap(), 5);
        assert!(
            remote.complete_checkpoints().unwrap().is_empty(),
            "no _metadata yet"
        );
        remote.rename_dir("chk-4", "savepoint-4").unwrap();
        assert!(tmp.path().join("store/savepoint-4/op-0.state").is_file());
        assert!(!tmp.path().join("store/chk-4/op-0.state").exists());
        remote.delete_dir("savepoint-4").unwrap();
        assert!(!tmp.path().join("store/savepoint-4/op-0.state").exists());
    }

    /// A job started from async code opens, uses and drops its storage without the
    /// runtime-inside-a-runtime panics.
    #[test]
    fn usable_from_inside_an_async_runtime() {
        let tmp = tempfile::tempdir().unwrap();
        let url = format!("file://{}", tmp.path().join("store").display());
        let outer = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        outer.block_on(async {
            let remote = open(&url, &[]).unwrap().unwrap();
            remote.put_bytes("chk-1/_metadata", b"{}".to_vec()).unwrap();
            assert_eq!(remote.next_checkpoint_id().unwrap(), 2);
            drop(remote);
        });
    }

    /// Files above the part size go up in parts and come back byte for byte.
    #[test]
    fn large_files_round_trip_in_parts() {
        let tmp = tempfile::tempdir().unwrap();
        let url = format!("file://{}", tmp.path().join("store").display());
        let remote = open(&url, &[]).unwrap().unwrap();
        let data: Vec<u8> = (0..(PART_BYTES * 2 + 12_345) as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let local = tmp.path().join("big.sst");
        std::fs::write(&local, &data).unwrap();
        let back = tmp.path().join("back/big.sst");
        let inner = &remote.inner;
        remote
            .block_on(inner.upload(&local, "shared/s-big.sst"))
            .unwrap();
        let size = remote.block_on(inner.stored_size("shared/s-big.sst"));
        assert_eq!(size.unwrap(), Some(data.len() as u64));
        let got = remote
            .block_on(inner.download("shared/s-big.sst", &back))
            .unwrap();
        assert_eq!(got, data.len() as u64);
        assert!(std::fs::read(&back).unwrap() == data);
    }
}
