//! JSON-lines files: one JSON value per line.

mod sink;
mod source;
mod writer;

pub use sink::JsonLinesSink;
pub use source::{DeadLetterCounter, JsonLinesSource};
