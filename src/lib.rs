//! # ferroflow
//!
//! Embeddable stream processing for Rust: the operators Flink jobs are made of (keyed
//! state, event time and timers, keyed exchanges, connectors) linked into an ordinary
//! binary. No cluster, no JVM.
//!
//! This crate re-exports the workspace's public API:
//! - the stream API and runtime from [`ferroflow_core`] (at the top level),
//! - keyed state from [`ferroflow_state`] as [`state`],
//! - operators from [`ferroflow_operators`] as [`operators`],
//! - connectors from [`ferroflow_connectors`] as [`connectors`].
//!
//! ```
//! use ferroflow::prelude::*;
//! use ferroflow::connectors::{ClickEvent, GeneratorConfig, GeneratorSource};
//!
//! # fn main() -> ferroflow::Result<()> {
//! let env = StreamEnvironment::local(2);
//! let views = CollectSink::new();
//! let source = GeneratorSource::new(GeneratorConfig::default().with_events(10_000))?;
//! env.from_source(source, WatermarkStrategy::monotonous(|e: &ClickEvent| e.ts))
//!     .map(|e| (e.category, 1u64))
//!     .key_by(|(category, _)| *category)
//!     .reduce(|(c, a), (_, b)| (*c, a + b))
//!     .sink(views.clone());
//! env.execute()?;
//! let total: u64 = views.take().into_iter().filter(|(_, n)| *n > 0).count() as u64;
//! assert_eq!(total, 10_000);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub use ferroflow_core::*;

/// Keyed state: key groups, state handles, backends.
pub mod state {
    pub use ferroflow_state::*;
}

/// Operators built on the runtime.
pub mod operators {
    pub use ferroflow_operators::*;
}

/// Sources and sinks for external systems and files.
pub mod connectors {
    pub use ferroflow_connectors::*;
}

/// The names most jobs use.
pub mod prelude {
    pub use ferroflow_core::sinks::{CollectSink, DiscardSink};
    pub use ferroflow_core::{
        Collector, DataStream, EnvConfig, KeyedContext, KeyedProcessFunction, KeyedStream,
        OpenContext, Result, Sink, Source, StreamEnvironment, TimeDomain, Timer, Timestamp,
        WatermarkStrategy,
    };
    pub use ferroflow_operators::KeyedStreamExt;
    pub use ferroflow_state::{
        ListState, MapState, ReducingState, StateDescriptor, StateTtl, ValueState,
    };
}

/// The README's code blocks, compiled and run as doctests so the README stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
