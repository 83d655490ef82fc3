//! ferroflow connectors.
//!
//! - [`generator`]: a deterministic, seeded, splittable click-event generator with
//!   configurable key cardinality, skew, out-of-orderness and rate.
//! - [`jsonl`]: JSON-lines files: a source (one split per file, malformed lines counted
//!   and sent to a dead-letter file), a sink, and an exactly-once part-file sink.
//! - [`kafka`] (feature `kafka`): a Kafka source with positions in checkpoints and
//!   per-partition watermarks, and a Kafka sink.
//! - [`dimension`]: dimension tables in CSV and JSON-lines files, for the full cache of
//!   a lookup join.
//! - [`redis`] (feature `redis`): a lookup source of rows stored as JSON strings or
//!   hashes, and a sink of idempotent hash and sorted-set writes.
//! - [`sql`] (feature `sql`): a lookup and table source on PostgreSQL and
//!   MySQL/MariaDB.
//! - [`filesystem`] (feature `filesystem`, `parquet`): bucketed Parquet, JSON-lines
//!   and CSV files on the local disk, S3 and HDFS, exactly once, with
//!   partition commit.
#![deny(missing_docs)]

pub mod dimension;
#[cfg(feature = "filesystem")]
pub mod filesystem;
pub mod generator;
pub mod jsonl;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "sql")]
pub mod sql;

pub use generator::{ClickEvent, GeneratorConfig, GeneratorSource, TimestampMode};
pub use jsonl::{DeadLetterCounter, JsonLinesPartSink, JsonLinesSink, JsonLinesSource};
