//! ferroflow operators built on the core runtime.
//!
//! - [`reduce`]: Flink's `KeyedStream.reduce`, a rolling aggregate per key kept in value
//!   state, through [`KeyedStreamExt::reduce`].
#![deny(missing_docs)]

pub mod reduce;

pub use reduce::{KeyedStreamExt, Reduce};
