//! Bucketed files (feature `filesystem`, with `parquet` and `orc` for the bulk formats):
//! a stream written as Parquet, ORC, JSON-lines or CSV files under time partitions
//! (`dt=2026-12-05/hm=1405`) of a directory on the local disk, S3 or HDFS (feature
//! `hdfs`), exactly once, with partition commit, and files of a target size however
//! often checkpoints are taken.
//!
//! ```no_run
//! # #[cfg(feature = "parquet")] {
//! use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
//! use ferroflow_connectors::filesystem::{
//!     FileSink, FileSinkConfig, Format, SerdeEncoder, TimeBuckets,
//! };
//! use std::sync::Arc;
//!
//! #[derive(serde::Serialize)]
//! struct Click { ts: i64, user_id: String }
//!
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
//!     Field::new("user_id", DataType::Utf8, false),
//! ]));
//! let mut config = FileSinkConfig::new("s3://lake/clicks", Format::named("parquet")?);
//! config.partition.time_zone = ferroflow_core::Zone::parse("Asia/Shanghai")?;
//! let buckets = TimeBuckets::new(&config.partition, |c: &Click| c.ts)?;
//! let sink = FileSink::new(config, schema.clone(), SerdeEncoder::new(&schema), buckets)?;
//! # }
//! # Ok::<(), ferroflow_core::Error>(())
//! ```
//!
//! # The life of a file
//!
//! Each worker keeps one open file per partition it receives rows for. Rows are
//! encoded in batches ([`BatchEncoder`]) into the file, which is written on the local
//! spool disk. At every checkpoint barrier the batches since the last one are also
//! stored as a *recovery segment* (Arrow IPC) under `<root>/_ferroflow/segments/`, so
//! the checkpoint can name every row of the open file without closing it: **files are
//! not rolled at checkpoints**, whatever the interval. A file is finished (rolled) when
//! it reaches `rolling.target_file_size`, when it has been open for
//! `rolling.rollover_interval` or idle for `rolling.inactivity_interval`, when the
//! watermark passes its partition's end plus `commit.delay`, or when the input ends. A
//! finished file is uploaded to `<root>/_ferroflow/pending/` (a multipart upload for
//! a large file), and when the checkpoint after it completes it is moved to its
//! partition as `part-<run>-<worker>-<n>.<ext>` and its segments are deleted. S3 has no
//! rename: there the file is uploaded straight to its final key as a multipart upload
//! (its id recorded in `<root>/_ferroflow/uploads/`), which stays invisible until it is
//! completed when the checkpoint completes. Readers (Hive, Spark, pyarrow) skip names
//! starting with `_`, so they never see a file before it is complete and its
//! checkpoint done.
//!
//! A closed partition therefore holds one file per worker that wrote to it, or files
//! of the target size, not one file per checkpoint. The price is **visibility**: rows
//! become visible when their file is rolled and the next checkpoint completes (at
//! most rollover interval plus a checkpoint interval, and for a time partition at most
//! its end plus the commit delay plus a checkpoint interval).
//!
//! # Exactly once
//!
//! A checkpoint holds, per worker, the finished files waiting to be published and the
//! segments of the open ones. Publishing is idempotent: a pending file that is gone
//! must already be in its place, else the commit fails naming it. After a restore each
//! worker publishes what the restored checkpoint prepared, reads the open files back
//! from their segments (a rescaled job's workers take over those of the workers that
//! map to them, merging them per partition), and removes the pending files and segments
//! its predecessors left for checkpoints that never completed (files a kill left
//! half-written included). A run that completed no checkpoint at all is nobody's
//! predecessor: what it stored under `_ferroflow/` (pending files, segments, and on S3
//! upload markers with their open multipart uploads) stays, hidden from readers and
//! named `<run>-…` after the run's number (its start time in epoch milliseconds, see
//! `SinkContext::attempt`). No checkpoint names those files, so they can be deleted by
//! hand once that run has stopped (on S3, a bucket lifecycle rule that aborts incomplete
//! multipart uploads after a day covers the uploads). Restoring a checkpoint older than
//! the last completed one works: files published since stay, and rows of theirs that
//! the older checkpoint had in open files are not written again (their segments are
//! gone; see [`FileSinkCounters::segments_missing`]), but rows the source replays after
//! that checkpoint are written again.
//!
//! # Partition commit
//!
//! A time partition is committed when every worker's watermark (as of its last
//! completed checkpoint) passed its end plus `commit.delay`: an empty `_SUCCESS` file
//! is written into it (`commit.success_file`) and the [`PartitionCommitPolicy`]s run
//! (registering it in a Hive metastore with `HiveMetastorePolicy`, feature `hive`).
//! Workers record their progress in `<root>/_ferroflow/commit/`. Late rows open a new file in the partition, which is
//! committed again once that file is published. When the input ends, every partition is
//! committed; a job stopped without a final watermark commits only what its watermark
//! passed.

mod bucket;
mod commit;
mod config;
mod encode;
mod format;
mod hive;
#[cfg(feature = "orc")]
mod orc;
mod part;
mod record;
mod sink;
mod store;
#[cfg(test)]
mod tests;

pub use bucket::{Bucket, BucketAssigner, TimeBuckets};
pub use commit::{CommittedPartition, FileSinkCounters, PartitionCommitPolicy};
pub use config::{
    CommitConfig, Compression, FileSinkConfig, Format, OrcOptions, ParquetOptions, PartitionConfig,
    RollingPolicy,
};
pub use encode::{BatchEncoder, SerdeEncoder};
pub use ferroflow_derive::ArrowRecord;
pub use hive::{hive_type, partition_keys, HiveTable};
#[cfg(feature = "hive")]
pub use hive::{HiveMetastoreConfig, HiveMetastorePolicy, HivePartition};
#[doc(hidden)]
pub use record::__private;
pub use record::{ArrowRecord, ArrowValue, RecordEncoder};
pub use sink::FileSink;
