//! ferroflow core: typed streams, the dataflow runtime, event time and keyed processing.
//!
//! A job is built on a [`StreamEnvironment`]: sources give [`DataStream`]s, operators
//! transform them, `key_by` partitions them by key into a [`KeyedStream`] whose
//! [`KeyedProcessFunction`] has keyed state and timers, and sinks end them. `execute`
//! runs the job on `parallelism` worker threads per chain.
//!
//! How it runs:
//! - Records move in batches (`Vec<T>`, [`EnvConfig::batch_size`]). Stateless operators
//!   are chained: plain calls on the worker that read the records.
//! - `key_by` hashes each key into one of [`EnvConfig::max_parallelism`] key groups and
//!   sends the record over a bounded channel to the worker owning that group. A full
//!   channel blocks the sender, so a slow sink slows the source and memory stays flat.
//! - Watermarks are generated per source split, combined as the minimum over inputs
//!   (idle inputs excluded), and travel in the data channels with the records.
//! - A failure in any task (an error or a panic) stops every task and is returned by
//!   `execute`.
//!
//! ```
//! use ferroflow_core::{StreamEnvironment, sinks::CollectSink, testing::CountPerKey};
//!
//! # fn main() -> ferroflow_core::Result<()> {
//! let env = StreamEnvironment::local(2);
//! let counts = CollectSink::new();
//! env.from_iter(vec!["a", "b", "a"])
//!     .map(str::to_string)
//!     .key_by(|w| w.clone())
//!     .process(CountPerKey::default())
//!     .sink(counts.clone());
//! env.execute()?;
//! assert_eq!(counts.sorted(), vec![("a".into(), 1), ("a".into(), 2), ("b".into(), 1)]);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod async_op;
pub mod checkpoint;
mod config;
mod env;
mod error;
mod graph;
mod harness;
mod keyed;
mod launch;
pub mod metrics;
mod ops;
pub mod restart;
mod runtime;
mod sink;
pub mod sinks;
mod source;
pub mod sources;
#[cfg(feature = "object-store")]
pub mod storage;
mod stream;
mod supervisor;
pub mod testing;
mod time;
mod timer;
mod watermark;
mod zone;

pub use async_op::{
    AsyncCall, AsyncConfig, AsyncFunction, AsyncOpenContext, OnBarrier, OnTimeout, Reply,
};
pub use checkpoint::SplitPosition;
pub use checkpoint::{CheckpointConfig, RestoreFrom};
pub use config::{EnvConfig, MetricsConfig, OnSignal};
pub use env::{JobHandle, JobResult, StopHandle, StreamEnvironment};
pub use error::{BoxError, CodecError, Error, ErrorDomain, Result};
pub use keyed::{
    process_each, BatchContext, Collector, KeyedBatchFunction, KeyedContext, KeyedProcessFunction,
    OpenContext, TimerService, ViewsAndTimers,
};
pub use restart::RestartStrategy;
pub use sink::{Sink, SinkContext};
pub use source::{short_type_name, Source, SplitReader, SplitStatus};
pub use stream::{DataStream, KeyedStream, SinkStream};
pub use time::{duration_millis, now_millis, Timestamp, MAX_WATERMARK, MIN_WATERMARK};
pub use timer::{TimeDomain, Timer};
pub use watermark::WatermarkStrategy;
pub use zone::Zone;
