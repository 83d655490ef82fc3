//! The RocksDB state backend.
//!
//! Each worker of each keyed operator gets its own RocksDB database in a local working
//! directory (deleted when the operator instance ends). Declared states are typed
//! write-behind caches over it: reads that hit the cache cost a hash lookup; changed
//! entries are written back in one batch when a state's cache fills up and before every
//! snapshot. Durability comes from checkpoints; the write-ahead log is kept (never
//! synced) so that a checkpoint needs no flush of the write buffer on the task's thread:
//! it links the SST files and copies the log written since the last flush, and the flush
//! runs in the background after it.
//!
//! A snapshot does little on the task's thread: the caches' changed entries are
//! serialised into one batch, and a thread applies it and takes the checkpoint. Every
//! later call that reaches the database waits for that thread (a cache hit does not), so
//! the checkpoint holds exactly the state at the barrier.
//!
//! States with a TTL keep each value's stamp in its first eight bytes; a compaction filter
//! drops expired values of value, map and reducing states whenever RocksDB compacts, so
//! state nobody reads again leaves the disk without being scanned.

mod native;

use crate::native::{NativeFile, NativeTarget, PendingNative};
use crate::table::{sort_for_insert, KvOp, KvStore, Visitor};
use crate::ttl::TtlRegistry;
use crate::{Error, KeyedStateStore, Result, StateBackend, StoreScope};
use rocksdb::compaction_filter::Decision;
use rocksdb::{
    BlockBasedOptions, Cache, DBCompressionType, Direction, IteratorMode, Options, ReadOptions,
    WriteBatch, WriteOptions, DB,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// RocksDB backend settings. Unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RocksDbConfig {
    /// Directory for the working databases. Default: `<system temp dir>/ferroflow-rocksdb`.
    pub local_dir: PathBuf,
    /// Entries each declared state keeps in its write-behind cache. Default: 1,000,000.
    pub cache_entries: usize,
    /// RocksDB block cache per database, MiB. Default: 64.
    pub block_cache_mb: usize,
    /// RocksDB write buffer (memtable) size, MiB. Default: 64.
    pub write_buffer_mb: usize,
}

impl Default for RocksDbConfig {
    fn default() -> Self {
        Self {
            local_dir: std::env::temp_dir().join("ferroflow-rocksdb"),
            cache_entries: 1_000_000,
            block_cache_mb: 64,
            write_buffer_mb: 64,
        }
    }
}

impl RocksDbConfig {
    /// Sets `local_dir`.
    #[must_use]
    pub fn with_local_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.local_dir = dir.into();
        self
    }

    /// Sets `cache_entries`.
    #[must_use]
    pub fn with_cache_entries(mut self, entries: usize) -> Self {
        self.cache_entries = entries;
        self
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.cache_entries == 0 {
            return Err(Error::InvalidConfig(
                "rocksdb.cache_entries must be at least 1".into(),
            ));
        }
        if self.write_buffer_mb == 0 {
            return Err(Error::InvalidConfig(
                "rocksdb.write_buffer_mb must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Keeps keyed state in RocksDB, behind typed write-behind caches.
#[derive(Debug, Clone, Default)]
pub struct RocksDbBackend {
    pub(super) config: RocksDbConfig,
}

impl RocksDbBackend {
    /// A backend with `config`.
    pub fn new(config: RocksDbConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }
}

static NEXT_DB: AtomicU64 = AtomicU64::new(0);

impl StateBackend for RocksDbBackend {
    fn name(&self) -> &'static str {
        "rocksdb"
    }

    fn open_keyed_store(&self, scope: &StoreScope) -> Result<KeyedStateStore> {
        let ttl = Arc::new(TtlRegistry::default());
        let kv = RocksKv::open(self.new_dir(scope), &self.config, Arc::clone(&ttl))?;
        Ok(KeyedStateStore::backed(
            scope.clone(),
            Arc::new(kv),
            self.config.cache_entries,
            ttl,
        ))
    }

    fn restore_keyed_store(
        &self,
        scope: &StoreScope,
        snapshots: Vec<crate::KeyedSnapshot>,
        root: &std::path::Path,
    ) -> Result<KeyedStateStore> {
        native::restore(self, scope, snapshots, root)
    }
}

impl RocksDbBackend {
    /// A fresh working directory for one store.
    fn new_dir(&self, scope: &StoreScope) -> PathBuf {
        let safe: String = scope
            .operator
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        self.config.local_dir.join(format!(
            "{safe}-{}-{}-{}",
            scope.worker,
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        ))
    }
}

struct RocksKv {
    inner: Arc<RocksInner>,
    background: Mutex<Background>,
}

/// The database and what its checkpoints need: shared with the thread that finishes a
/// checkpoint in the background.
struct RocksInner {
    db: Option<DB>,
    dir: PathBuf,
    write: WriteOptions,
    /// Names this store's shared files in checkpoint storage.
    store_id: String,
    /// Data files already in checkpoint storage, by local name.
    uploaded: Mutex<HashMap<String, NativeFile>>,
}

impl std::ops::Deref for RocksKv {
    type Target = RocksInner;
    fn deref(&self) -> &RocksInner {
        &self.inner
    }
}

/// A checkpoint's write-back and file copies running off the task's thread.
#[derive(Default)]
struct Background {
    /// While set, writes are collected here instead of applied (the write-back of a
    /// checkpoint in progress).
    collecting: Option<Vec<KvOp>>,
    /// The thread finishing the last checkpoint; it returns an error only if the
    /// write-back failed, which leaves the database behind the caches.
    running: Option<std::thread::JoinHandle<Result<()>>>,
    /// Why the store can no longer be used: a write-back failed.
    failed: Option<String>,
}

fn db_err(what: &str, e: rocksdb::Error) -> Error {
    Error::Io(format!("rocksdb {what}: {e}"))
}

impl RocksKv {
    fn open(dir: PathBuf, config: &RocksDbConfig, ttl: Arc<TtlRegistry>) -> Result<Self> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Io(format!("creating {}: {e}", dir.display())))?;
        let opts = Self::options(config, ttl);
        let db =
            DB::open(&opts, &dir).map_err(|e| db_err(&format!("opening {}", dir.display()), e))?;
        let write = WriteOptions::default();
        Ok(Self {
            inner: Arc::new(RocksInner {
                db: Some(db),
                store_id: native::new_store_id(),
                dir,
                write,
                uploaded: Mutex::new(HashMap::new()),
            }),
            background: Mutex::new(Background::default()),
        })
    }

    fn background(&self) -> std::sync::MutexGuard<'_, Background> {
        self.background
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for a checkpoint running in the background: every read and write of the
    /// database after a barrier comes after that barrier's write-back, and nothing
    /// written after the barrier reaches its checkpoint. Fails for good once a
    /// write-back has failed.
    fn settle(&self) -> Result<()> {
        let mut bg = self.background();
        if let Some(running) = bg.running.take() {
            let outcome = running
                .join()
                .unwrap_or_else(|_| Err(Error::Io("a checkpoint thread panicked".into())));
            if let Err(e) = outcome {
                bg.failed = Some(e.to_string());
            }
        }
        match &bg.failed {
            Some(why) => Err(Error::Io(format!(
                "a write-back to RocksDB failed ({why}): this store is behind its caches and \
                 the job must restore from a checkpoint"
            ))),
            None => Ok(()),
        }
    }

    fn options(config: &RocksDbConfig, ttl: Arc<TtlRegistry>) -> Options {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&Cache::new_lru_cache(config.block_cache_mb << 20));
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_block_based_table_factory(&table);
        opts.set_write_buffer_size(config.write_buffer_mb << 20);
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_max_background_jobs(2);
        opts.set_compaction_filter("ferroflow-ttl", move |_level, key: &[u8], value: &[u8]| {
            if ttl.stored_entry_expired(key, value) {
                Decision::Remove
            } else {
                Decision::Keep
            }
        });
        opts
    }
}

impl RocksInner {
    fn db(&self) -> Result<&DB> {
        self.db
            .as_ref()
            .ok_or_else(|| Error::Io("rocksdb database already closed".into()))
    }

    fn apply(&self, mut ops: Vec<KvOp>) -> Result<()> {
        sort_for_insert(&mut ops);
        let mut batch = WriteBatch::default();
        for op in ops {
            match op {
                KvOp::Put(k, v) => batch.put(k, v),
                KvOp::Delete(k) => batch.delete(k),
                KvOp::DeleteRange(from, to) => batch.delete_range(from, to),
            }
        }
        self.db()?
            .write_opt(batch, &self.write)
            .map_err(|e| db_err("write", e))
    }
}

impl Drop for RocksKv {
    fn drop(&mut self) {
        // The database closes once the checkpoint thread lets go of it.
        if let Err(e) = self.settle() {
            tracing::warn!(error = %e, "A RocksDB store closed after a failed write-back.");
        }
    }
}

impl Drop for RocksInner {
    fn drop(&mut self) {
        drop(self.db.take());
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                // A leftover working directory wastes disk but loses nothing.
                tracing::warn!(dir = %self.dir.display(), error = %e, "Could not remove a RocksDB working directory.");
            }
        }
    }
}

impl KvStore for RocksKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.settle()?;
        self.db()?.get(key).map_err(|e| db_err("get", e))
    }

    fn write(&self, ops: Vec<KvOp>) -> Result<()> {
        {
            let mut bg = self.background();
            if let Some(collected) = bg.collecting.as_mut() {
                collected.extend(ops);
                return Ok(());
            }
        }
        self.settle()?;
        self.apply(ops)
    }

    fn scan_prefix(&self, prefix: &[u8], f: &mut Visitor<'_>) -> Result<()> {
        self.settle()?;
        let mut read = ReadOptions::default();
        read.set_iterate_upper_bound(crate::table::prefix_end(prefix));
        for item in self
            .db()?
            .iterator_opt(IteratorMode::From(prefix, Direction::Forward), read)
        {
            let (k, v) = item.map_err(|e| db_err("scan", e))?;
            if !k.starts_with(prefix) {
                break;
            }
            f(&k, &v)?;
        }
        Ok(())
    }

    fn approximate_keys(&self) -> Result<u64> {
        let db = self.db()?;
        Ok(db
            .property_int_value("rocksdb.estimate-num-keys")
            .map_err(|e| db_err("reading a property", e))?
            .unwrap_or(0))
    }

    fn approximate_bytes(&self) -> Result<u64> {
        let db = self.db()?;
        let mut total = 0;
        for property in [
            "rocksdb.total-sst-files-size",
            "rocksdb.cur-size-all-mem-tables",
        ] {
            total += db
                .property_int_value(property)
                .map_err(|e| db_err("reading a property", e))?
                .unwrap_or(0);
        }
        Ok(total)
    }

    fn native_checkpoint(
        &self,
        target: &NativeTarget,
    ) -> Result<Option<(String, Vec<NativeFile>)>> {
        self.settle()?;
        self.checkpoint_files(target).map(Some)
    }

    fn native_checkpoint_in_background(
        &self,
        write_back: &mut dyn FnMut() -> Result<()>,
        target: &NativeTarget,
    ) -> Result<Option<PendingNative>> {
        self.settle()?;
        self.background().collecting = Some(Vec::new());
        let written = write_back();
        let ops = self.background().collecting.take().unwrap_or_default();
        if let Err(e) = written {
            // What was collected is marked written in the caches: apply it now.
            self.apply(ops)?;
            return Err(e);
        }
        let inner = Arc::clone(&self.inner);
        let target = target.clone();
        let (tx, pending) = PendingNative::channel();
        let running = std::thread::Builder::new()
            .name("ferroflow-rocksdb-checkpoint".into())
            .spawn(move || {
                if let Err(e) = inner.apply(ops) {
                    let _ = tx.send(Err(Error::Io(format!("checkpoint write-back: {e}"))));
                    return Err(e);
                }
                let _ = tx.send(inner.checkpoint_files(&target));
                Ok(())
            })
            .map_err(|e| {
                // The write-back went with the closure: the store is behind its caches.
                let why = format!("starting a checkpoint thread: {e}");
                self.background().failed = Some(why.clone());
                Error::Io(why)
            })?;
        self.background().running = Some(running);
        Ok(Some(pending))
    }

    fn compact(&self) -> Result<()> {
        self.settle()?;
        self.db()?.compact_range(None::<&[u8]>, None::<&[u8]>);
        Ok(())
    }
}

#[cfg(test)]
mod background_tests;
