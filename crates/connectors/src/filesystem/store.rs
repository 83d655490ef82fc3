//! The sink's view of its storage: one object store (local disk, S3, HDFS) under a root,
//! driven from the worker thread through the file sinks' I/O runtime.

use bytes::Bytes;
use ferroflow_core::storage::object_store::{
    self, path::Path as StorePath, ObjectStore, ObjectStoreExt,
};
use ferroflow_core::{Error, Result};
use futures_util::StreamExt;
use object_store::aws::AmazonS3;
use object_store::multipart::{MultipartStore, PartId};
use object_store::{PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::io::Read;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Parts of this size are uploaded while a finished file is read from the spool disk.
const PART_BYTES: usize = 16 << 20;

pub(crate) fn store_err(context: String, e: object_store::Error) -> Error {
    let retryable = ferroflow_core::storage::is_retryable(&e);
    Error::external("object store", context, e, retryable)
}

/// The URL of a local path (made absolute) or the URL given.
pub(crate) fn url_of(path: &str) -> Result<String> {
    if path.contains("://") {
        return Ok(path.to_string());
    }
    let p = std::path::Path::new(path);
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("file sink: reading the current directory", e))?
            .join(p)
    };
    std::fs::create_dir_all(&abs)
        .map_err(|e| Error::io(format!("file sink: creating {}", abs.display()), e))?;
    let url = url::Url::from_directory_path(&abs).map_err(|()| {
        Error::Config(format!(
            "file sink: `{}` is not a usable path",
            abs.display()
        ))
    })?;
    Ok(url.to_string())
}

/// A multipart upload of a finished file to its final key, completed when the
/// checkpoint that covers it completes (S3, which has no rename).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Upload {
    pub(crate) id: String,
    pub(crate) parts: Vec<String>,
}

/// What `_ferroflow/uploads/<file>.json` says of an upload, for its abort if no
/// completed checkpoint names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct UploadMarker {
    target: String,
    id: String,
}

pub(crate) struct Store {
    store: Arc<dyn ObjectStore>,
    /// The same store when it is S3: files are uploaded in place and completed at commit.
    s3: Option<Arc<AmazonS3>>,
    root: StorePath,
    url: String,
    /// On the local disk, the root directory. There the store writes a file as
    /// `<name>#<n>` and renames it when complete; it neither lists nor addresses such
    /// staged files, and a kill in the middle of a write leaves one behind.
    local: Option<std::path::PathBuf>,
    runtime: &'static tokio::runtime::Runtime,
}

/// Whether `name` is a file the local store is still writing (or was, when the process
/// died): `<name>#<digits>`.
fn is_staged(name: &str) -> bool {
    name.split_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The staged files under `dir`, as paths relative to it joined with `/`.
fn staged_files(dir: &std::path::Path, prefix: &str, out: &mut Vec<String>) -> Result<()> {
    let err = |e| Error::io(format!("file sink: listing {}", dir.display()), e);
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err(e)),
    };
    for entry in entries {
        let entry = entry.map_err(err)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = format!("{prefix}/{name}");
        if entry.file_type().map_err(err)?.is_dir() {
            staged_files(&entry.path(), &rel, out)?;
        } else if is_staged(&name) {
            out.push(rel);
        }
    }
    Ok(())
}

/// The I/O runtime of every file sink in the process, started on first use and kept.
/// One, not one per sink: hdfs-native keeps DataNode connections in a process-wide
/// cache, and a connection made on a runtime that has shut down (the sink of a worker
/// that finished) fails the read of whichever sink takes it from the cache next.
fn io_runtime() -> Result<&'static tokio::runtime::Runtime> {
    static IO: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(rt) = IO.get() {
        return Ok(rt);
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("ferroflow-filesink-io")
        .enable_all()
        .build()
        .map_err(|e| Error::io("file sink: starting its I/O runtime", e))?;
    // Another sink may have started one meanwhile: keep the first.
    let _ = IO.set(rt);
    IO.get()
        .ok_or_else(|| Error::Internal("file sink: the I/O runtime did not start".into()))
}

impl Store {
    pub(crate) fn open(path: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        let url = url_of(path)?;
        let runtime = io_runtime()?;
        let (store, s3, root) = if url.starts_with("s3://") || url.starts_with("s3a://") {
            let (s3, root) = ferroflow_core::storage::open_s3(&url, options)?;
            (Arc::clone(&s3) as Arc<dyn ObjectStore>, Some(s3), root)
        } else {
            let (store, root) =
                ferroflow_core::storage::open_store(&url, options, runtime.handle())?;
            (store, None, root)
        };
        let local = url::Url::parse(&url)
            .ok()
            .filter(|u| u.scheme() == "file")
            .and_then(|u| u.to_file_path().ok());
        Ok(Self {
            store,
            s3,
            root,
            url: url.trim_end_matches('/').to_string(),
            local,
            runtime,
        })
    }

    /// The URL of the sink's root, without a trailing `/`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    fn location(&self, rel: &str) -> StorePath {
        let mut loc = self.root.clone();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            loc = loc.clone().join(part);
        }
        loc
    }

    /// Runs `work` to its end. From a thread that is itself inside an async runtime
    /// (a job started from async code) it runs on a helper thread.
    pub(crate) fn block_on<T: Send>(&self, work: impl Future<Output = T> + Send) -> T {
        ferroflow_core::storage::block_on(self.runtime, work)
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }

    /// Starts storing `bytes` at `rel`.
    pub(crate) fn spawn_put(&self, rel: &str, bytes: Vec<u8>) -> JoinHandle<Result<()>> {
        let store = Arc::clone(&self.store);
        let loc = self.location(rel);
        let context = format!("{}: writing {rel}", self.url);
        self.runtime.spawn(async move {
            store
                .put(&loc, PutPayload::from(bytes))
                .await
                .map(drop)
                .map_err(|e| store_err(context, e))
        })
    }

    /// Stores `bytes` at `rel`.
    pub(crate) fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        let task = self.spawn_put(rel, bytes);
        self.join(task)
    }

    /// Starts uploading the local file `local` to `rel` (in parts for a large file),
    /// then removes `local`.
    pub(crate) fn spawn_upload(
        &self,
        rel: &str,
        local: std::path::PathBuf,
    ) -> JoinHandle<Result<()>> {
        self.runtime.spawn(self.upload(rel, local))
    }

    /// Uploading the local file `local` to `rel` (in parts for a large file), then
    /// removing `local`.
    fn upload(
        &self,
        rel: &str,
        local: std::path::PathBuf,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let store = Arc::clone(&self.store);
        let loc = self.location(rel);
        let context = format!("{}: uploading {rel}", self.url);
        async move {
            let read_err = |e| Error::io(format!("file sink: reading {}", local.display()), e);
            let size = std::fs::metadata(&local).map_err(read_err)?.len();
            if size <= PART_BYTES as u64 {
                let bytes = std::fs::read(&local).map_err(read_err)?;
                store
                    .put(&loc, PutPayload::from(bytes))
                    .await
                    .map_err(|e| store_err(context.clone(), e))?;
            } else {
                let upload = store
                    .put_multipart(&loc)
                    .await
                    .map_err(|e| store_err(context.clone(), e))?;
                let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
                let mut file = std::fs::File::open(&local).map_err(read_err)?;
                let mut buf = vec![0u8; PART_BYTES];
                loop {
                    let n = file.read(&mut buf).map_err(read_err)?;
                    if n == 0 {
                        break;
                    }
                    writer
                        .wait_for_capacity(4)
                        .await
                        .map_err(|e| store_err(context.clone(), e))?;
                    writer.write(&buf[..n]);
                }
                writer
                    .finish()
                    .await
                    .map_err(|e| store_err(context.clone(), e))?;
            }
            std::fs::remove_file(&local).map_err(read_err)
        }
    }

    /// A multipart upload of the local file `local` to `target` on `s3`: recorded at
    /// `marker`, its parts uploaded, `local` removed; the upload stays invisible until
    /// [`Store::complete`].
    fn upload_in_place(
        &self,
        s3: Arc<AmazonS3>,
        marker: &str,
        target: &str,
        local: std::path::PathBuf,
    ) -> impl Future<Output = Result<Upload>> + Send + 'static {
        let store = Arc::clone(&self.store);
        let (marker_loc, loc) = (self.location(marker), self.location(target));
        let target = target.to_string();
        let context = format!("{}: uploading {target}", self.url);
        async move {
            let err = |e| store_err(context.clone(), e);
            let read_err = |e| Error::io(format!("file sink: reading {}", local.display()), e);
            let id = s3.create_multipart(&loc).await.map_err(err)?;
            let record = serde_json::to_vec(&UploadMarker {
                target,
                id: id.clone(),
            })
            .map_err(|e| Error::Internal(format!("{context}: {e}")))?;
            store
                .put(&marker_loc, PutPayload::from(record))
                .await
                .map_err(err)?;
            let mut file = std::fs::File::open(&local).map_err(read_err)?;
            let mut parts = Vec::new();
            loop {
                let mut chunk = Vec::with_capacity(PART_BYTES);
                let n = (&mut file)
                    .take(PART_BYTES as u64)
                    .read_to_end(&mut chunk)
                    .map_err(read_err)?;
                if n == 0 && !parts.is_empty() {
                    break;
                }
                let part = s3
                    .put_part(&loc, &id, parts.len(), PutPayload::from(chunk))
                    .await
                    .map_err(err)?;
                parts.push(part.content_id);
                if n < PART_BYTES {
                    break;
                }
            }
            std::fs::remove_file(&local).map_err(read_err)?;
            Ok(Upload { id, parts })
        }
    }

    /// Completes `upload` to `target`. `Ok(false)` if it was completed before (the
    /// upload is gone and the object is there).
    pub(crate) fn complete(&self, target: &str, upload: &Upload) -> Result<bool> {
        let s3 = self
            .s3
            .as_ref()
            .ok_or_else(|| Error::Internal(format!("{}: not on S3", self.url)))?;
        let loc = self.location(target);
        let context = format!("{}: completing {target}", self.url);
        let parts = upload
            .parts
            .iter()
            .map(|p| PartId {
                content_id: p.clone(),
            })
            .collect();
        self.block_on(async {
            match s3.complete_multipart(&loc, &upload.id, parts).await {
                Ok(_) => Ok(true),
                Err(e) => match self.store.head(&loc).await {
                    Ok(_) => Ok(false),
                    Err(_) => Err(store_err(context, e)),
                },
            }
        })
    }

    /// Aborts the upload `marker` records (if it still runs) and deletes the marker.
    pub(crate) fn abort(&self, marker: &str) -> Result<()> {
        let Some(s3) = self.s3.as_ref() else {
            return self.delete(&[marker.to_string()]);
        };
        if let Some(bytes) = self.get(marker)? {
            let m: UploadMarker = serde_json::from_slice(&bytes).map_err(|e| {
                Error::Checkpoint(format!("file sink: reading upload marker {marker}: {e}"))
            })?;
            let loc = self.location(&m.target);
            let context = format!("{}: aborting the upload of {}", self.url, m.target);
            self.block_on(async {
                match s3.abort_multipart(&loc, &m.id).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(store_err(context, e)),
                }
            })?;
        }
        self.delete(&[marker.to_string()])
    }

    /// Starts storing the finished local file `local` (named `file`, removed once
    /// stored) for publication at `target`: on S3 a multipart upload to `target`, which
    /// [`Store::complete`] makes visible; elsewhere an upload to the pending area, which
    /// [`Store::rename`] moves. Returns the pending file or upload marker, and the task
    /// (its upload, on S3).
    pub(crate) fn spawn_finished(
        &self,
        file: &str,
        target: &str,
        local: std::path::PathBuf,
    ) -> (String, JoinHandle<Result<Option<Upload>>>) {
        match &self.s3 {
            Some(s3) => {
                let marker = format!("_ferroflow/uploads/{file}.json");
                let upload = self.upload_in_place(Arc::clone(s3), &marker, target, local);
                (
                    marker,
                    self.runtime.spawn(async move { upload.await.map(Some) }),
                )
            }
            None => {
                let pending = format!("_ferroflow/pending/{file}");
                let upload = self.upload(&pending, local);
                (
                    pending,
                    self.runtime
                        .spawn(async move { upload.await.map(|()| None) }),
                )
            }
        }
    }

    /// Waits for `task`.
    pub(crate) fn join<T: Send>(&self, task: JoinHandle<Result<T>>) -> Result<T> {
        self.block_on(task)
            .map_err(|e| Error::Internal(format!("file sink: an upload task failed: {e}")))?
    }

    /// The object at `rel`, or `None` if there is none. A read that panics is tried
    /// again: hdfs-native's reader panics ("Cannot read past end of the file") when
    /// the file it reads is replaced under it, as commit markers are by other workers.
    pub(crate) fn get(&self, rel: &str) -> Result<Option<Bytes>> {
        const ATTEMPTS: u32 = 3;
        let context = format!("{}: reading {rel}", self.url);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (store, loc) = (Arc::clone(&self.store), self.location(rel));
            let task = self.runtime.spawn(async move {
                match store.get(&loc).await {
                    Ok(got) => got.bytes().await.map(Some),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            });
            match self.block_on(task) {
                Ok(read) => return read.map_err(|e| store_err(context, e)),
                Err(failed) if failed.is_panic() && attempt < ATTEMPTS => {
                    tracing::warn!(%context, attempt, "file sink: a read panicked; trying again");
                    std::thread::sleep(std::time::Duration::from_millis(50 * u64::from(attempt)));
                }
                Err(failed) => {
                    return Err(Error::external(
                        "object store",
                        context,
                        format!("the read failed: {failed}"),
                        true,
                    ))
                }
            }
        }
    }

    /// Whether an object exists at `rel`.
    pub(crate) fn exists(&self, rel: &str) -> Result<bool> {
        let loc = self.location(rel);
        let context = format!("{}: looking up {rel}", self.url);
        self.block_on(async {
            match self.store.head(&loc).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(store_err(context, e)),
            }
        })
    }

    /// Moves `from` to `to` (on S3 a copy and a delete). `Ok(false)` if `from` is gone.
    pub(crate) fn rename(&self, from: &str, to: &str) -> Result<bool> {
        let (a, b) = (self.location(from), self.location(to));
        let context = format!("{}: moving {from} to {to}", self.url);
        self.block_on(async {
            match self.store.rename(&a, &b).await {
                Ok(()) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                // Some stores (HDFS) report a missing source as a generic error.
                Err(e) => match self.store.head(&a).await {
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    _ => Err(store_err(context, e)),
                },
            }
        })
    }

    /// Deletes the objects at `rels`; those already gone are fine.
    pub(crate) fn delete(&self, rels: &[String]) -> Result<()> {
        self.block_on(async {
            for rel in rels {
                if let Some(dir) = &self.local {
                    if is_staged(rel.rsplit('/').next().unwrap_or("")) {
                        match std::fs::remove_file(dir.join(rel)) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => {
                                return Err(Error::io(
                                    format!("file sink: {}: deleting {rel}", self.url),
                                    e,
                                ))
                            }
                        }
                        continue;
                    }
                }
                match self.store.delete(&self.location(rel)).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(store_err(format!("{}: deleting {rel}", self.url), e)),
                }
            }
            Ok(())
        })
    }

    /// The objects under directory `prefix`, relative to the root; on the local disk
    /// also the files left staged by a write that never finished.
    pub(crate) fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let loc = self.location(prefix);
        let root = self.root.as_ref().to_string();
        let context = format!("{}: listing {prefix}", self.url);
        self.block_on(async {
            let mut out = Vec::new();
            let mut items = self.store.list(Some(&loc));
            while let Some(item) = items.next().await {
                let meta = item.map_err(|e| store_err(context.clone(), e))?;
                let full = meta.location.as_ref();
                let rel = full
                    .strip_prefix(root.as_str())
                    .unwrap_or(full)
                    .trim_start_matches('/');
                out.push(rel.to_string());
            }
            if let Some(dir) = &self.local {
                let prefix = prefix.trim_matches('/');
                staged_files(&dir.join(prefix), prefix, &mut out)?;
            }
            Ok(out)
        })
    }
}
