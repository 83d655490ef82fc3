//! The bucketed file sink.

use super::bucket::{Bucket, BucketAssigner};
use super::commit::{
    due, marker_path, CommittedPartition, Counters, FileSinkCounters, Marker, PartitionCommitPolicy,
};
use super::config::FileSinkConfig;
use super::encode::BatchEncoder;
use super::format::check_schema;
use super::part::{read_segment, OpenPart, OpenState};
use super::store::{Store, Upload};
use arrow::datatypes::SchemaRef;
use ferroflow_core::{duration_millis, Error, Result, Sink, SinkContext, Timestamp, MIN_WATERMARK};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinHandle;

/// A finished file waiting for its checkpoint to complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Rolled {
    /// The pending file (moved to `target` at commit), or on S3 the marker of `upload`.
    pending: String,
    target: String,
    segments: Vec<String>,
    rows: u64,
    bytes: u64,
    /// On S3: the multipart upload to `target`, completed at commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upload: Option<Upload>,
}

/// What a checkpoint holds of one sink instance (its committable): the files to
/// publish, the open files to continue after a restore, and the partition-commit
/// bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Prepared {
    /// The run (`SinkContext::attempt`) that prepared it.
    #[serde(default)]
    run: u64,
    worker: usize,
    checkpoint: u64,
    publish: Vec<Rolled>,
    open: Vec<OpenState>,
    watermark: Timestamp,
    partitions: Vec<(String, Option<Timestamp>)>,
    /// For each of `partitions`, how many files had been opened in it.
    #[serde(default)]
    opened: Vec<u64>,
}

/// Writes a stream into files under time (or other) partitions of a directory on the
/// local disk, S3 or HDFS, in Parquet, ORC, JSON lines or CSV; see the
/// [module documentation](super) for the file lifecycle and guarantees.
pub struct FileSink<T, E, A> {
    config: Arc<FileSinkConfig>,
    schema: SchemaRef,
    encoder: E,
    assigner: A,
    policies: Vec<Arc<dyn PartitionCommitPolicy>>,
    counters: Counters,
    run: Option<Run<T>>,
    _t: PhantomData<fn(T)>,
}

impl<T, E: Clone, A: Clone> Clone for FileSink<T, E, A> {
    fn clone(&self) -> Self {
        Self {
            config: Arc::clone(&self.config),
            schema: Arc::clone(&self.schema),
            encoder: self.encoder.clone(),
            assigner: self.assigner.clone(),
            policies: self.policies.clone(),
            counters: Arc::clone(&self.counters),
            run: None,
            _t: PhantomData,
        }
    }
}

/// An instance's state once open.
struct Run<T> {
    store: Store,
    worker: usize,
    parallelism: usize,
    attempt: u64,
    next_file: u64,
    spool_dir: std::path::PathBuf,
    parts: Vec<OpenPart<T>>,
    /// The part that took the last record (records come in runs of one partition).
    last: usize,
    uploads: Vec<(Rolled, JoinHandle<Result<Option<Upload>>>)>,
    /// Prepared for checkpoints that have not completed yet.
    uncommitted: Vec<Prepared>,
    watermark: Timestamp,
    /// Partitions written to and not seen committed, with their end and a count of
    /// files opened in them (a partition is forgotten only if none was opened since the
    /// checkpoint that committed it).
    known: BTreeMap<String, (Option<Timestamp>, u64)>,
    delay_ms: i64,
    /// Whether the job takes checkpoints: open files keep recovery segments.
    recoverable: bool,
}

impl<T, E, A> FileSink<T, E, A>
where
    T: Send + 'static,
    E: BatchEncoder<T> + Clone,
    A: BucketAssigner<T> + Clone,
{
    /// A sink writing rows of `schema`, turned into Arrow batches by `encoder` and
    /// placed into partitions by `assigner`.
    ///
    /// # Errors
    /// [`Error::Config`] for invalid settings, or a schema the format cannot write (an
    /// ORC decimal column, a CSV list column), found here rather than mid-stream.
    pub fn new(config: FileSinkConfig, schema: SchemaRef, encoder: E, assigner: A) -> Result<Self> {
        config.validate()?;
        check_schema(&config.format, &schema)?;
        Ok(Self {
            config: Arc::new(config),
            schema,
            encoder,
            assigner,
            policies: Vec::new(),
            counters: Arc::default(),
            run: None,
            _t: PhantomData,
        })
    }

    /// Adds a partition-commit policy, run after `_SUCCESS` is written.
    #[must_use]
    pub fn with_policy(mut self, policy: impl PartitionCommitPolicy) -> Self {
        self.policies.push(Arc::new(policy));
        self
    }

    /// The counters every instance of this sink adds to.
    pub fn counters(&self) -> Arc<FileSinkCounters> {
        Arc::clone(&self.counters)
    }
}

/// Where a worker that reached the end of its input lists the files it published then.
fn final_marker(run: u64, worker: usize) -> String {
    format!("_ferroflow/final/{run}-{worker}.json")
}

fn run_err() -> Error {
    Error::Internal("file sink used before open".into())
}

impl<T, E, A> FileSink<T, E, A>
where
    T: Send + 'static,
    E: BatchEncoder<T> + Clone,
    A: BucketAssigner<T> + Clone,
{
    fn part_index(&mut self, bucket: Bucket) -> Result<usize> {
        let run = self.run.as_mut().ok_or_else(run_err)?;
        if let Some(p) = run.parts.get(run.last) {
            if Arc::ptr_eq(&p.bucket.path, &bucket.path) || p.bucket.path == bucket.path {
                return Ok(run.last);
            }
        }
        if let Some(i) = run.parts.iter().position(|p| p.bucket.path == bucket.path) {
            run.last = i;
            return Ok(i);
        }
        let name = format!("{}-{}-{}", run.attempt, run.worker, run.next_file);
        run.next_file += 1;
        let spool = run
            .spool_dir
            .join(format!("{name}.{}", self.config.format.extension()));
        let part = OpenPart::new(
            bucket,
            name,
            &self.config.format,
            &self.schema,
            spool,
            run.recoverable,
        )?;
        let entry = run
            .known
            .entry(part.bucket.path.to_string())
            .or_insert((part.bucket.end, 0));
        entry.1 += 1;
        run.parts.push(part);
        self.counters.opened(1);
        run.last = run.parts.len() - 1;
        Ok(run.last)
    }

    /// Finishes part `i` and starts its upload to the hidden pending area.
    fn roll(&mut self, i: usize) -> Result<()> {
        let run = self.run.as_mut().ok_or_else(run_err)?;
        let part = run.parts.swap_remove(i);
        run.last = 0;
        self.counters.opened(-1);
        let ext = self.config.format.extension();
        let name = part.name.clone();
        let partition = part.bucket.path.to_string();
        let (spool, bytes, segments, rows) = part.finish(&mut self.encoder)?;
        if rows == 0 {
            let _ = std::fs::remove_file(&spool);
            run.store.delete(&segments)?;
            return Ok(());
        }
        let target = if partition.is_empty() {
            format!("part-{name}.{ext}")
        } else {
            format!("{partition}/part-{name}.{ext}")
        };
        let (pending, task) = run
            .store
            .spawn_finished(&format!("{name}.{ext}"), &target, spool);
        tracing::debug!(file = %target, rows, bytes, "file sink: rolled a file");
        run.uploads.push((
            Rolled {
                pending,
                target,
                segments,
                rows,
                bytes,
                upload: None,
            },
            task,
        ));
        Ok(())
    }

    /// Rolls the parts that are due: their partition closed (the watermark passed its
    /// end plus the commit delay), or open or idle too long; `all` rolls every part.
    fn roll_due(&mut self, all: bool) -> Result<()> {
        let rolling = self.config.rolling.clone();
        loop {
            let run = self.run.as_ref().ok_or_else(run_err)?;
            let now = Instant::now();
            let found = run.parts.iter().position(|p| {
                all || p
                    .bucket
                    .end
                    .is_some_and(|end| end.saturating_add(run.delay_ms) <= run.watermark)
                    || now.duration_since(p.opened) >= rolling.rollover_interval
                    || now.duration_since(p.last_write) >= rolling.inactivity_interval
            });
            match found {
                Some(i) => self.roll(i)?,
                None => return Ok(()),
            }
        }
    }

    /// Publishes `files`: each pending file moved to its place (idempotent: a file
    /// already moved is found there), then, unless `keep_segments`, its recovery
    /// segments deleted.
    fn publish(&self, files: &[Rolled], keep_segments: bool) -> Result<()> {
        let run = self.run.as_ref().ok_or_else(run_err)?;
        for f in files {
            let moved = match &f.upload {
                Some(upload) => {
                    let completed = run.store.complete(&f.target, upload)?;
                    run.store.delete(std::slice::from_ref(&f.pending))?;
                    completed
                }
                None => run.store.rename(&f.pending, &f.target)?,
            };
            if !moved && !run.store.exists(&f.target)? {
                return Err(Error::Checkpoint(format!(
                    "file sink: {} holds neither the pending file {} nor its published copy {}",
                    run.store.url(),
                    f.pending,
                    f.target
                )));
            }
            if !keep_segments {
                run.store.delete(&f.segments)?;
            }
            if moved {
                self.counters.published(f.bytes);
            }
        }
        Ok(())
    }

    /// Records this worker's progress and commits the partitions that every worker's
    /// watermark has passed: of `own`, the ones this worker wrote to, those no worker
    /// with a smaller index lists (that worker commits them); with `all` (the input
    /// ended) every partition any worker listed.
    fn commit_partitions(
        &mut self,
        watermark: Timestamp,
        own: Vec<(String, Option<Timestamp>)>,
        all: bool,
    ) -> Result<Option<Timestamp>> {
        let run = self.run.as_ref().ok_or_else(run_err)?;
        let marker = Marker {
            run: run.attempt,
            watermark,
            partitions: own.clone(),
        };
        let bytes = serde_json::to_vec(&marker)
            .map_err(|e| Error::Internal(format!("file sink: encoding its marker: {e}")))?;
        run.store
            .put(&marker_path(run.parallelism, run.worker), bytes)?;
        let mut min = watermark;
        let mut listed = own;
        // Partitions a worker with a smaller index lists: committed by that worker.
        let mut theirs = std::collections::HashSet::new();
        for w in (0..run.parallelism).filter(|w| *w != run.worker) {
            let other = match run.store.get(&marker_path(run.parallelism, w))? {
                Some(b) => serde_json::from_slice::<Marker>(&b).ok(),
                None => None,
            };
            match other {
                Some(m) if m.run == run.attempt => {
                    min = min.min(m.watermark);
                    if all {
                        listed.extend(m.partitions);
                    } else if w < run.worker {
                        theirs.extend(m.partitions.into_iter().map(|(path, _)| path));
                    }
                }
                _ => return Ok(None),
            }
        }
        listed.retain(|(path, _)| !theirs.contains(path));
        listed.sort();
        listed.dedup();
        let delay = run.delay_ms;
        for (path, end) in listed {
            if !due(end, delay, min) {
                continue;
            }
            if self.config.commit.success_file {
                let rel = if path.is_empty() {
                    "_SUCCESS".to_string()
                } else {
                    format!("{path}/_SUCCESS")
                };
                run.store.put(&rel, Vec::new())?;
            }
            let partition = CommittedPartition {
                url: if path.is_empty() {
                    run.store.url().to_string()
                } else {
                    format!("{}/{path}", run.store.url())
                },
                path,
                end,
            };
            for policy in &self.policies {
                policy.commit(&partition)?;
            }
            tracing::info!(partition = %partition.url, "file sink: committed a partition");
            self.counters.partition_committed();
        }
        Ok(Some(min))
    }

    /// Adopts the open files of a restored checkpoint: their rows are read back from
    /// their segments into new files of the same partitions.
    fn adopt(&mut self, open: Vec<OpenState>) -> Result<()> {
        for state in open {
            let bucket = Bucket {
                path: state.partition.clone().into(),
                end: state.end,
            };
            let i = self.part_index(bucket)?;
            let run = self.run.as_mut().ok_or_else(run_err)?;
            for rel in state.segments {
                match run.store.get(&rel)? {
                    Some(bytes) => {
                        for batch in read_segment(bytes)? {
                            run.parts[i].replay(&batch)?;
                        }
                        run.parts[i].segments.push(rel);
                    }
                    None => {
                        tracing::warn!(
                            segment = %rel,
                            "file sink: a recovery segment is gone (its file was published \
                             by a checkpoint later than the one restored); its rows stay \
                             in that file"
                        );
                        self.counters.segment_missing();
                    }
                }
            }
        }
        Ok(())
    }

    /// Deletes the files worker `worker` of run `run` published when its input ended
    /// (listed in its final marker), except `prepared`, then the marker.
    fn undo_final_publish(
        &self,
        run_id: u64,
        worker: usize,
        prepared: &std::collections::HashSet<&str>,
    ) -> Result<()> {
        let run = self.run.as_ref().ok_or_else(run_err)?;
        let marker = final_marker(run_id, worker);
        let Some(bytes) = run.store.get(&marker)? else {
            return Ok(());
        };
        let targets: Vec<String> = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Checkpoint(format!("file sink: reading {marker}: {e}")))?;
        let doomed: Vec<String> = targets
            .into_iter()
            .filter(|t| !prepared.contains(t.as_str()))
            .collect();
        tracing::warn!(
            files = doomed.len(),
            "file sink: restored after the input had ended; removing the files published \
             then, whose rows are read again"
        );
        run.store.delete(&doomed)?;
        run.store.delete(&[marker])
    }

    /// Deletes pending files and segments of this instance's predecessors that no
    /// restored checkpoint refers to (left by checkpoints that never completed).
    fn remove_orphans(
        &self,
        keep: &std::collections::HashSet<String>,
        predecessors: &[(u64, usize)],
    ) -> Result<()> {
        let run = self.run.as_ref().ok_or_else(run_err)?;
        // Files are named `<run>-<worker>-<n>`: only the predecessors' own files can be
        // orphans here (files of earlier runs they adopted are in `keep`, or another
        // worker's to judge).
        let mine = |rel: &str| {
            let name = rel
                .rsplit('/')
                .nth(1)
                .filter(|_| rel.contains("/segments/"));
            let name = name.unwrap_or_else(|| rel.rsplit('/').next().unwrap_or(""));
            // HDFS's put writes `.<name>.tmp.<i>` first, the local disk's `<name>#<i>`
            // (listed by `Store::list`): a kill can leave either behind.
            let name = name.trim_start_matches('.');
            let mut fields = name.split(['-', '.']).map(str::parse::<u64>);
            match (fields.next(), fields.next()) {
                (Some(Ok(r)), Some(Ok(w))) => predecessors.contains(&(r, w as usize)),
                _ => false,
            }
        };
        let mut doomed = Vec::new();
        for dir in [
            "_ferroflow/pending",
            "_ferroflow/segments",
            "_ferroflow/uploads",
        ] {
            for rel in run.store.list(dir)? {
                if !keep.contains(&rel) && mine(&rel) {
                    doomed.push(rel);
                }
            }
        }
        // Uploads in place (S3) that no completed checkpoint names are aborted.
        for marker in doomed
            .iter()
            .filter(|r| r.starts_with("_ferroflow/uploads/"))
        {
            run.store.abort(marker)?;
        }
        if !doomed.is_empty() {
            tracing::info!(
                files = doomed.len(),
                "file sink: removing files of checkpoints that did not complete"
            );
        }
        run.store.delete(&doomed)
    }
}

impl<T, E, A> Sink<T> for FileSink<T, E, A>
where
    T: Send + 'static,
    E: BatchEncoder<T> + Clone,
    A: BucketAssigner<T> + Clone,
{
    fn name(&self) -> String {
        format!("files:{}", self.config.format.extension())
    }

    fn open(&mut self, ctx: &SinkContext) -> Result<()> {
        let store = Store::open(&self.config.path, &self.config.storage_options)?;
        let spool_dir = self
            .config
            .spool_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir)
            .join("ferroflow-spool");
        std::fs::create_dir_all(&spool_dir)
            .map_err(|e| Error::io(format!("file sink: creating {}", spool_dir.display()), e))?;
        self.run = Some(Run {
            store,
            worker: ctx.worker,
            parallelism: ctx.parallelism,
            attempt: ctx.attempt,
            next_file: 0,
            spool_dir,
            parts: Vec::new(),
            last: 0,
            uploads: Vec::new(),
            uncommitted: Vec::new(),
            watermark: MIN_WATERMARK,
            known: BTreeMap::new(),
            delay_ms: duration_millis(self.config.commit.delay),
            recoverable: ctx.checkpoint_interval.is_some(),
        });
        if ctx.restored_commits.is_empty() {
            return Ok(());
        }
        let mut restored = Vec::with_capacity(ctx.restored_commits.len());
        for value in &ctx.restored_commits {
            let p: Prepared = serde_json::from_value(value.clone()).map_err(|e| {
                Error::Checkpoint(format!("file sink: reading its checkpointed state: {e}"))
            })?;
            restored.push(p);
        }
        // Publish what the restored checkpoints prepared (idempotent), then continue
        // the open files of each predecessor's latest checkpoint.
        let mut keep = std::collections::HashSet::new();
        let mut latest: BTreeMap<usize, &Prepared> = BTreeMap::new();
        for p in &restored {
            self.publish(&p.publish, false)?;
            let slot = latest.entry(p.worker).or_insert(p);
            if p.checkpoint >= slot.checkpoint {
                *slot = p;
            }
        }
        let predecessors: Vec<(u64, usize)> = latest.values().map(|p| (p.run, p.worker)).collect();
        // A predecessor that reached the end of its input published its last files
        // without a checkpoint; the source replays their rows from the restored
        // checkpoint, so they are taken back (all but those the checkpoint itself
        // prepared, just published above).
        let prepared: std::collections::HashSet<&str> = restored
            .iter()
            .flat_map(|p| p.publish.iter().map(|f| f.target.as_str()))
            .collect();
        for &(r, w) in &predecessors {
            self.undo_final_publish(r, w, &prepared)?;
        }
        let mut open = Vec::new();
        let mut partitions = Vec::new();
        for p in latest.values() {
            for s in &p.open {
                keep.extend(s.segments.iter().cloned());
            }
            open.extend(p.open.iter().cloned());
            partitions.extend(p.partitions.iter().cloned());
        }
        self.remove_orphans(&keep, &predecessors)?;
        self.adopt(open)?;
        let run = self.run.as_mut().ok_or_else(run_err)?;
        for (path, end) in partitions {
            run.known.entry(path).or_insert((end, 0));
        }
        Ok(())
    }

    fn write(&mut self, batch: Vec<T>) -> Result<()> {
        let n = batch.len() as u64;
        let batch_rows = self.config.batch_rows;
        let target = self.config.rolling.target_file_size;
        for row in batch {
            let bucket = self.assigner.assign(&row)?;
            let i = self.part_index(bucket)?;
            let run = self.run.as_mut().ok_or_else(run_err)?;
            if run.parts[i].push(row, batch_rows, &mut self.encoder, target)? {
                self.roll(i)?;
            }
        }
        self.counters.add_rows(n);
        let run = self.run.as_ref().ok_or_else(run_err)?;
        let idle = self.config.rolling.inactivity_interval;
        let open_for = self.config.rolling.rollover_interval;
        let now = Instant::now();
        if run.parts.iter().any(|p| {
            now.duration_since(p.opened) >= open_for || now.duration_since(p.last_write) >= idle
        }) {
            self.roll_due(false)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp) -> Result<()> {
        let run = self.run.as_mut().ok_or_else(run_err)?;
        run.watermark = run.watermark.max(watermark);
        self.roll_due(false)
    }

    fn prepare_commit(&mut self, checkpoint: u64) -> Result<Option<serde_json::Value>> {
        self.roll_due(false)?;
        let run = self.run.as_mut().ok_or_else(run_err)?;
        let mut puts = Vec::new();
        for part in &mut run.parts {
            let rel = format!("_ferroflow/segments/{}/{checkpoint:08}.arrow", part.name);
            if let Some(local) = part.take_segment(rel.clone(), &mut self.encoder)? {
                puts.push(run.store.spawn_upload(&rel, local));
            }
        }
        for task in puts {
            run.store.join(task)?;
        }
        let mut publish = Vec::with_capacity(run.uploads.len());
        for (mut rolled, task) in std::mem::take(&mut run.uploads) {
            rolled.upload = run.store.join(task)?;
            publish.push(rolled);
        }
        let prepared = Prepared {
            run: run.attempt,
            worker: run.worker,
            checkpoint,
            publish,
            open: run.parts.iter().map(OpenPart::state).collect(),
            watermark: run.watermark,
            partitions: run
                .known
                .iter()
                .map(|(path, (end, _))| (path.clone(), *end))
                .collect(),
            opened: run.known.values().map(|(_, n)| *n).collect(),
        };
        let value = serde_json::to_value(&prepared)
            .map_err(|e| Error::Internal(format!("file sink: encoding its committable: {e}")))?;
        run.uncommitted.push(prepared);
        Ok(Some(value))
    }

    fn commit(&mut self, committables: Vec<serde_json::Value>) -> Result<()> {
        let started = Instant::now();
        let mut last = None;
        for value in committables {
            let p: Prepared = serde_json::from_value(value)
                .map_err(|e| Error::Internal(format!("file sink: reading its committable: {e}")))?;
            self.publish(&p.publish, false)?;
            let run = self.run.as_mut().ok_or_else(run_err)?;
            run.uncommitted.retain(|u| u.checkpoint > p.checkpoint);
            last = Some(p);
        }
        if let Some(p) = last {
            // How many files each partition had when the checkpoint was prepared.
            let snapshot: BTreeMap<String, u64> = p
                .partitions
                .iter()
                .map(|(path, _)| path.clone())
                .zip(p.opened.iter().copied())
                .collect();
            let Some(min) = self.commit_partitions(p.watermark, p.partitions.clone(), false)?
            else {
                self.counters.commit_took(started.elapsed());
                return Ok(());
            };
            // Forget partitions every worker passed (committed, here or by the worker
            // with the smallest index that lists them) in which no file was opened since
            // the checkpoint was prepared.
            let run = self.run.as_mut().ok_or_else(run_err)?;
            let delay = run.delay_ms;
            let open: Vec<String> = run
                .parts
                .iter()
                .map(|x| x.bucket.path.to_string())
                .collect();
            run.known.retain(|path, (end, n)| {
                !(due(*end, delay, min) && snapshot.get(path) == Some(n) && !open.contains(path))
            });
        }
        self.counters.commit_took(started.elapsed());
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.roll_due(true)?;
        let run = self.run.as_mut().ok_or_else(run_err)?;
        let mut files: Vec<Rolled> = run.uncommitted.drain(..).flat_map(|p| p.publish).collect();
        for (mut rolled, task) in std::mem::take(&mut run.uploads) {
            rolled.upload = run.store.join(task)?;
            files.push(rolled);
        }
        let watermark = run.watermark;
        let partitions: Vec<(String, Option<Timestamp>)> = run
            .known
            .iter()
            .map(|(path, (end, _))| (path.clone(), *end))
            .collect();
        let recoverable = run.recoverable;
        if recoverable && !files.is_empty() {
            // These files are not covered by a completed checkpoint: a restore from the
            // last one replays their rows, and must take them back first. Their segments
            // stay, for that restore to rebuild the open files it holds.
            let targets: Vec<&str> = files.iter().map(|f| f.target.as_str()).collect();
            let bytes = serde_json::to_vec(&targets).map_err(|e| {
                Error::Internal(format!("file sink: encoding its final marker: {e}"))
            })?;
            run.store
                .put(&final_marker(run.attempt, run.worker), bytes)?;
        }
        self.publish(&files, recoverable)?;
        self.commit_partitions(watermark, partitions, true)
            .map(drop)
    }
}
