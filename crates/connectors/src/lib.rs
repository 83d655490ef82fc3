//! ferroflow connectors.
//!
//! - [`generator`]: a deterministic, seeded, splittable click-event generator with
//!   configurable key cardinality, skew, out-of-orderness and rate.
//! - [`jsonl`]: JSON-lines files: a source (one split per file, malformed lines counted
//!   and sent to a dead-letter file), a sink, and an exactly-once part-file sink.
//! - [`kafka`] (feature `kafka`): a Kafka source with positions in checkpoints and
//!   per-partition watermarks, and a Kafka sink.
#![deny(missing_docs)]

pub mod generator;
pub mod jsonl;
#[cfg(feature = "kafka")]
pub mod kafka;

pub use generator::{ClickEvent, GeneratorConfig, GeneratorSource, TimestampMode};
pub use jsonl::{DeadLetterCounter, JsonLinesPartSink, JsonLinesSink, JsonLinesSource};
