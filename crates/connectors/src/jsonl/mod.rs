//! JSON-lines files: one JSON value per line.

mod parts;
mod sink;
mod source;
pub(crate) mod writer;

pub use parts::JsonLinesPartSink;
pub use sink::JsonLinesSink;
pub use source::{DeadLetterCounter, JsonLinesSource};
