//! A keyed function run by hand: records, watermarks and timers fed one by one to a single
//! worker's keyed state, so tests can look at the state in between (Flink's keyed
//! operator test harness).

use crate::keyed::{
    fire_timers, BatchContext, Collector, KeyedBatchFunction, KeyedContext, KeyedProcessFunction,
    OpenContext,
};
use crate::timer::{TimeDomain, Timers};
use crate::{now_millis, Result, Timestamp, MIN_WATERMARK};
use ferroflow_state::{KeyedStateStore, StateBackend, StoreScope};
use std::marker::PhantomData;

/// Runs one instance of a [`KeyedProcessFunction`] over the keyed state of one worker
/// that owns every key group.
///
/// ```
/// use ferroflow_core::testing::{CountPerKey, KeyedHarness};
/// use ferroflow_state::MemoryBackend;
///
/// # fn main() -> ferroflow_core::Result<()> {
/// let mut h = KeyedHarness::new(CountPerKey::default(), &MemoryBackend)?;
/// assert_eq!(h.process(7u64, "a")?, vec![(7, 1)]);
/// assert_eq!(h.process(7u64, "b")?, vec![(7, 2)]);
/// assert_eq!(h.state_entries()?, 1);
/// # Ok(()) }
/// ```
pub struct KeyedHarness<F: KeyedProcessFunction> {
    f: F,
    store: KeyedStateStore,
    timers: Timers<F::Key>,
    watermark: Timestamp,
}

impl<F: KeyedProcessFunction> KeyedHarness<F> {
    /// Opens `f` over a new store of `backend`.
    pub fn new(mut f: F, backend: &impl StateBackend) -> Result<Self> {
        let mut store = backend.open_keyed_store(&StoreScope::new("harness", 0, 1, 128))?;
        f.open(&mut OpenContext {
            store: &mut store,
            worker: 0,
            parallelism: 1,
            _key: PhantomData,
        })?;
        Ok(Self {
            f,
            store,
            timers: Timers::new(),
            watermark: MIN_WATERMARK,
        })
    }

    /// Processes one record of `key`; returns what the function emitted.
    pub fn process(&mut self, key: F::Key, record: F::In) -> Result<Vec<F::Out>> {
        self.store.set_processing_time(now_millis());
        let mut out = Vec::new();
        let mut ctx = KeyedContext::new(&key, &mut self.store, &mut self.timers, self.watermark);
        self.f
            .process(record, &mut ctx, &mut Collector::new(&mut out))?;
        Ok(out)
    }

    /// Processes one micro-batch as the keyed exchange hands it over to a
    /// [`KeyedBatchFunction`]; returns what the function emitted.
    pub fn process_batch(&mut self, batch: Vec<(F::Key, F::In)>) -> Result<Vec<F::Out>>
    where
        F: KeyedBatchFunction,
    {
        self.store.set_processing_time(now_millis());
        let mut out = Vec::new();
        let mut ctx = BatchContext::new(&mut self.store, &mut self.timers, self.watermark);
        self.f
            .process_batch(batch, &mut ctx, &mut Collector::new(&mut out))?;
        Ok(out)
    }

    /// Moves the watermark to `watermark` (if later): fires the event-time timers due,
    /// then moves the TTL clock and runs the sweeps due, as a running job does.
    pub fn advance_watermark(&mut self, watermark: Timestamp) -> Result<Vec<F::Out>> {
        if watermark <= self.watermark {
            return Ok(Vec::new());
        }
        self.watermark = watermark;
        let out = self.fire(TimeDomain::EventTime, watermark)?;
        self.store.advance_watermark(watermark);
        self.store.sweep_due()?;
        Ok(out)
    }

    /// Fires the processing-time timers due at `now` (epoch milliseconds).
    pub fn fire_processing_timers(&mut self, now: Timestamp) -> Result<Vec<F::Out>> {
        self.fire(TimeDomain::ProcessingTime, now)
    }

    /// Drops every pending timer (as if they had been lost), leaving the state as it is.
    pub fn drop_timers(&mut self) {
        self.timers = Timers::new();
    }

    /// Pending timers of both clocks.
    pub fn pending_timers(&self) -> usize {
        self.timers.event.len() + self.timers.processing.len()
    }

    /// Entries in the state (values, map entries, list elements) over every state.
    pub fn state_entries(&mut self) -> Result<usize> {
        Ok(self.store.stats()?.entries())
    }

    /// The store, for closer looks.
    pub fn store(&mut self) -> &mut KeyedStateStore {
        &mut self.store
    }

    fn fire(&mut self, domain: TimeDomain, upto: Timestamp) -> Result<Vec<F::Out>> {
        fire_timers(
            &mut self.f,
            &mut self.store,
            &mut self.timers,
            self.watermark,
            domain,
            upto,
        )
    }
}
