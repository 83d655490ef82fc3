//! ferroflow operators built on the core runtime.
//!
//! - [`reduce`]: Flink's `KeyedStream.reduce`, a rolling aggregate per key kept in value
//!   state, through [`KeyedStreamExt::reduce`].
//! - [`uv`]: distinct users and page views over many dimensions and time grains, exact
//!   or with HyperLogLog++, with a changelog, lateness, TTL cleanup and hot-key
//!   pre-aggregation.
//! - [`lookup_join`]: enrichment from a dimension table in Redis, SQL or a file:
//!   hash-partitioned, async and batched, cached, with delayed retry of misses.
#![deny(missing_docs)]

pub mod lookup_join;
pub mod reduce;
pub mod uv;

pub use reduce::{KeyedStreamExt, Reduce};
