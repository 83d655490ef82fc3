//! ferroflow operators built on the core runtime.
//!
//! - [`reduce`]: Flink's `KeyedStream.reduce`, a rolling aggregate per key kept in value
//!   state, through [`KeyedStreamExt::reduce`].
//! - [`uv`]: distinct users and page views over many dimensions and time grains, exact
//!   or with HyperLogLog++, with a changelog, lateness, TTL cleanup and hot-key
//!   pre-aggregation.
#![deny(missing_docs)]

pub mod reduce;
pub mod uv;

pub use reduce::{KeyedStreamExt, Reduce};
