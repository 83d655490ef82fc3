//! Keyed processing: a user function called per record with the record's key in scope,
//! keyed state for that key, and per-key timers.

use crate::checkpoint::coordinator::{DeferredState, TaskSnapshot};
use crate::checkpoint::restore::task_file_base;
use crate::checkpoint::{StateFile, StoredFile};
use crate::metrics::OperatorMetrics;
use crate::runtime::{barrier_snapshot, Control, ControlCalls, Next, Push, Snapshot};
use crate::timer::{TimeDomain, Timer, Timers};
use crate::{now_millis, Result, Timestamp, MIN_WATERMARK};
use ferroflow_state::native::NativeTarget;
use ferroflow_state::{
    decode_section, encode_sections, KeyedStateStore, ListState, MapState, ReducingState,
    StateAccess, StateDescriptor, StateKey, StateKind, StateValue, ValueState,
};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

mod batch;
pub use batch::{process_each, BatchContext, KeyedBatchFunction, TimerService, ViewsAndTimers};

/// Collects the output of a function.
pub struct Collector<'a, T> {
    buf: &'a mut Vec<T>,
}

impl<'a, T> Collector<'a, T> {
    pub(crate) fn new(buf: &'a mut Vec<T>) -> Self {
        Self { buf }
    }

    /// Emits one record.
    #[inline]
    pub fn collect(&mut self, record: T) {
        self.buf.push(record);
    }
}

/// A function over a keyed stream, Flink's `KeyedProcessFunction`: implement `process`;
/// `open`, `on_timer` and `close` are lifecycle hooks with empty defaults.
///
/// One instance runs per worker (each a clone of the value passed to
/// `KeyedStream::process`). `process` is called for every record with the record's key in
/// scope: state handles declared in `open` read and write that key's state, and timers
/// registered through the context fire later for that key in `on_timer`.
///
/// At the end of a bounded input a final watermark fires every pending event-time timer;
/// pending processing-time timers are dropped.
pub trait KeyedProcessFunction: Send + 'static {
    /// The key type, as produced by `key_by`.
    type Key: StateKey;
    /// Input records.
    type In: Send + 'static;
    /// Output records.
    type Out: Send + 'static;

    /// Declares state; called once per worker before any record.
    fn open(&mut self, ctx: &mut OpenContext<'_, Self::Key>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Processes one record.
    ///
    /// # Errors
    /// An error stops the job.
    fn process(
        &mut self,
        record: Self::In,
        ctx: &mut KeyedContext<'_, Self::Key>,
        out: &mut Collector<'_, Self::Out>,
    ) -> Result<()>;

    /// A timer registered for `ctx.key()` fired.
    fn on_timer(
        &mut self,
        timer: Timer,
        ctx: &mut KeyedContext<'_, Self::Key>,
        out: &mut Collector<'_, Self::Out>,
    ) -> Result<()> {
        let _ = (timer, ctx, out);
        Ok(())
    }

    /// The input ended (after the final watermark, if any).
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// What `open` can do: declare state, learn where it runs.
pub struct OpenContext<'a, K> {
    pub(crate) store: &'a mut KeyedStateStore,
    pub(crate) worker: usize,
    pub(crate) parallelism: usize,
    pub(crate) _key: PhantomData<fn() -> K>,
}

impl<K: StateKey> OpenContext<'_, K> {
    /// Declares a value state (one `V` per key).
    pub fn value_state<V: StateValue>(
        &mut self,
        desc: impl Into<StateDescriptor>,
    ) -> Result<ValueState<V>> {
        Ok(self.store.value_state::<K, V>(desc)?)
    }

    /// Declares a map state (a map `UK -> V` per key).
    pub fn map_state<UK: StateKey, V: StateValue>(
        &mut self,
        desc: impl Into<StateDescriptor>,
    ) -> Result<MapState<UK, V>> {
        Ok(self.store.map_state::<K, UK, V>(desc)?)
    }

    /// Declares a list state (a list of `V` per key).
    pub fn list_state<V: StateValue>(
        &mut self,
        desc: impl Into<StateDescriptor>,
    ) -> Result<ListState<V>> {
        Ok(self.store.list_state::<K, V>(desc)?)
    }

    /// Declares a reducing state: one `V` per key, into which `add` folds values with
    /// `reduce(current, added)`.
    pub fn reducing_state<V: StateValue>(
        &mut self,
        desc: impl Into<StateDescriptor>,
        reduce: impl Fn(&V, V) -> V + Send + Sync + 'static,
    ) -> Result<ReducingState<V>> {
        Ok(self.store.reducing_state::<K, V>(desc, reduce)?)
    }

    /// Index of this worker.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Number of workers running this function.
    pub fn parallelism(&self) -> usize {
        self.parallelism
    }
}

/// The context of one `process` or `on_timer` call: the current key, its state, timers and
/// the current watermark.
pub struct KeyedContext<'a, K> {
    key: &'a K,
    store: &'a mut KeyedStateStore,
    timers: &'a mut Timers<K>,
    watermark: Timestamp,
}

impl<'a, K: StateKey> KeyedContext<'a, K> {
    pub(crate) fn new(
        key: &'a K,
        store: &'a mut KeyedStateStore,
        timers: &'a mut Timers<K>,
        watermark: Timestamp,
    ) -> Self {
        Self {
            key,
            store,
            timers,
            watermark,
        }
    }

    /// The key of the record (or timer) being processed. The reference outlives borrows
    /// of the context, so state can be read and written while the key is held.
    pub fn key(&self) -> &'a K {
        self.key
    }

    /// The current event-time watermark of this operator instance.
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }

    /// The wall clock, in epoch milliseconds.
    pub fn current_processing_time(&self) -> Timestamp {
        now_millis()
    }

    /// Fires `on_timer` for the current key once the watermark reaches `at`. Registering
    /// the same (time, key) twice fires once.
    pub fn register_event_time_timer(&mut self, at: Timestamp) {
        self.timers.event.register(at, self.key.clone());
    }

    /// Fires `on_timer` for the current key once the wall clock reaches `at`.
    pub fn register_processing_time_timer(&mut self, at: Timestamp) {
        self.timers.processing.register(at, self.key.clone());
    }

    /// The whole store and every timer, as a batch's context: for a `process` that
    /// shares its code with a [`KeyedBatchFunction::process_batch`].
    pub fn batch(&mut self) -> BatchContext<'_, K> {
        BatchContext::new(self.store, self.timers, self.watermark)
    }

    /// Removes an event-time timer of the current key.
    pub fn delete_event_time_timer(&mut self, at: Timestamp) {
        self.timers.event.delete(at, self.key);
    }

    /// Removes a processing-time timer of the current key.
    pub fn delete_processing_time_timer(&mut self, at: Timestamp) {
        self.timers.processing.delete(at, self.key);
    }
}

impl<K: StateKey> StateAccess for KeyedContext<'_, K> {
    type Key = K;
    fn parts(&mut self) -> (&mut KeyedStateStore, &K) {
        (self.store, self.key)
    }
}

/// Snapshot names of the timer queues.
const EVENT_TIMERS: &str = "__timers.event";
const PROCESSING_TIMERS: &str = "__timers.processing";

/// Calls `f.on_timer` for every timer of `domain` due at `upto`, in time order (timers
/// registered while firing fire too if due); returns the output.
pub(crate) fn fire_timers<F: KeyedProcessFunction>(
    f: &mut F,
    store: &mut KeyedStateStore,
    timers: &mut Timers<F::Key>,
    watermark: Timestamp,
    domain: TimeDomain,
    upto: Timestamp,
) -> Result<Vec<F::Out>> {
    let mut out = Vec::new();
    loop {
        let queue = match domain {
            TimeDomain::EventTime => &mut timers.event,
            TimeDomain::ProcessingTime => &mut timers.processing,
        };
        let Some((at, keys)) = queue.pop_due(upto) else {
            break;
        };
        let timer = Timer {
            timestamp: at,
            domain,
        };
        for key in keys {
            let mut ctx = KeyedContext::new(&key, store, timers, watermark);
            f.on_timer(timer, &mut ctx, &mut Collector::new(&mut out))?;
        }
    }
    Ok(out)
}

/// Runs a [`KeyedProcessFunction`] on `(key, record)` pairs from a keyed exchange.
pub(crate) struct KeyedNode<F: KeyedProcessFunction> {
    f: F,
    /// How `f` takes a batch: record by record, or whole ([`KeyedBatchFunction`]).
    process: ProcessBatch<F>,
    store: KeyedStateStore,
    timers: Timers<F::Key>,
    watermark: Timestamp,
    worker: usize,
    parallelism: usize,
    next: Next<F::Out>,
    metrics: Arc<OperatorMetrics>,
    /// Some declared state has a TTL: keep its clocks current and sweep it.
    ttl: bool,
    /// `ferroflow_state_entries` and `ferroflow_state_bytes` of this operator and worker.
    state_size: [metrics::Gauge; 2],
    next_state_report: Instant,
}

/// How often a keyed operator reports the size of its state.
const STATE_REPORT: std::time::Duration = std::time::Duration::from_secs(10);

/// How a keyed node hands a batch to its function.
pub(crate) type ProcessBatch<F> = fn(
    &mut F,
    Vec<(
        <F as KeyedProcessFunction>::Key,
        <F as KeyedProcessFunction>::In,
    )>,
    &mut BatchContext<'_, <F as KeyedProcessFunction>::Key>,
    &mut Collector<'_, <F as KeyedProcessFunction>::Out>,
) -> Result<()>;

impl<F: KeyedProcessFunction> KeyedNode<F> {
    /// A node over `store`, which may hold restored state (timers included).
    pub(crate) fn new(
        f: F,
        process: ProcessBatch<F>,
        mut store: KeyedStateStore,
        next: Next<F::Out>,
        metrics: Arc<OperatorMetrics>,
    ) -> Result<Self> {
        let scope = store.scope().clone();
        let mut timers = Timers::new();
        for (name, queue) in [
            (EVENT_TIMERS, &mut timers.event),
            (PROCESSING_TIMERS, &mut timers.processing),
        ] {
            for section in store.take_pending(name) {
                for (key, times) in decode_section::<F::Key, Vec<Timestamp>>(&section)? {
                    for at in times {
                        queue.register(at, key.clone());
                    }
                }
            }
        }
        Ok(Self {
            f,
            process,
            store,
            timers,
            watermark: MIN_WATERMARK,
            worker: scope.worker,
            parallelism: scope.parallelism,
            next,
            state_size: {
                let labels = [
                    ("operator", scope.operator.clone()),
                    ("worker", scope.worker.to_string()),
                ];
                [
                    metrics::gauge!(crate::metrics::STATE_ENTRIES, &labels),
                    metrics::gauge!(crate::metrics::STATE_BYTES, &labels),
                ]
            },
            next_state_report: Instant::now(),
            metrics,
            ttl: false,
        })
    }

    /// Publishes the approximate size of the state (cheap: no scan).
    fn report_state_size(&mut self, now: Instant) {
        self.next_state_report = now + STATE_REPORT;
        match (
            self.store.approximate_entries(),
            self.store.approximate_bytes(),
        ) {
            (Ok(entries), Ok(bytes)) => {
                #[allow(clippy::cast_precision_loss)]
                {
                    self.state_size[0].set(entries as f64);
                    self.state_size[1].set(bytes as f64);
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e, "Cannot read the state's size.");
            }
        }
    }

    /// Moves the TTL clocks on and runs the sweeps that are due.
    fn advance_ttl(&mut self, watermark: Option<Timestamp>) -> Result<()> {
        if !self.ttl {
            return Ok(());
        }
        self.store.set_processing_time(now_millis());
        if let Some(w) = watermark {
            self.store.advance_watermark(w);
        }
        self.store.sweep_due()?;
        Ok(())
    }

    /// Fires the timers of one clock that are due at `upto`; returns their output.
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

    fn emit(&mut self, out: Vec<F::Out>) -> Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        self.metrics.record_out(out.len());
        self.next.push(out)
    }
}

impl<F: KeyedProcessFunction> KeyedNode<F> {
    fn open(&mut self) -> Result<()> {
        let mut ctx = OpenContext {
            store: &mut self.store,
            worker: self.worker,
            parallelism: self.parallelism,
            _key: PhantomData,
        };
        self.f.open(&mut ctx)?;
        self.ttl = self.store.has_ttl();
        self.advance_ttl(None)?;
        self.next.open()
    }

    fn watermark(&mut self, watermark: Timestamp) -> Result<()> {
        if watermark <= self.watermark {
            return Ok(());
        }
        let start = Instant::now();
        self.watermark = watermark;
        let out = self.fire(TimeDomain::EventTime, watermark)?;
        self.advance_ttl(Some(watermark))?;
        self.metrics.add_busy(start.elapsed());
        self.emit(out)?;
        self.next.watermark(watermark)
    }

    fn tick(&mut self, now: Instant) -> Result<()> {
        self.advance_ttl(None)?;
        if now >= self.next_state_report {
            self.report_state_size(now);
        }
        if self.timers.processing.len() > 0 {
            let wall = now_millis();
            if self
                .timers
                .processing
                .next_time()
                .is_some_and(|t| t <= wall)
            {
                let start = Instant::now();
                let out = self.fire(TimeDomain::ProcessingTime, wall)?;
                self.metrics.add_busy(start.elapsed());
                self.emit(out)?;
            }
        }
        self.next.tick(now)
    }

    fn finish(&mut self) -> Result<()> {
        self.f.close()?;
        self.next.finish()
    }

    fn barrier(&mut self, snapshot: &mut TaskSnapshot) -> Result<()> {
        let start = Instant::now();
        self.report_state_size(start);
        let scope = self.store.scope().clone();
        let base = task_file_base(snapshot.checkpoint, &scope.operator, scope.worker);
        // Checkpoints are native (incremental) where the backend can; savepoints are
        // canonical, so they restore on any backend.
        let target = (!snapshot.savepoint).then(|| NativeTarget {
            root: snapshot.root.clone(),
            private_dir: format!("{base}.native"),
        });
        // RocksDB finishes its part in the background; the timers are taken now.
        let mut state = self.store.snapshot_in_background(target.as_ref())?;
        for (name, queue) in [
            (EVENT_TIMERS, &self.timers.event),
            (PROCESSING_TIMERS, &self.timers.processing),
        ] {
            let by_key = queue.by_key();
            encode_sections(
                name,
                StateKind::List,
                "timers",
                by_key.iter(),
                scope.max_parallelism,
                state.sections_mut(),
            )?;
        }
        let root = snapshot.root.clone();
        let state_ready = state.is_ready();
        let finish = move || -> Result<StateFile> {
            let state = state.wait()?;
            let file = format!("{base}.state");
            let bytes = state.write_to(&root.join(&file))?;
            let files = state
                .native
                .iter()
                .flat_map(|m| &m.files)
                .map(|f| StoredFile {
                    path: f.path.clone(),
                    bytes: f.bytes,
                })
                .collect();
            Ok(StateFile {
                operator: scope.operator,
                worker: scope.worker,
                file,
                bytes,
                files,
            })
        };
        if state_ready {
            snapshot.states.push(finish()?);
        } else {
            snapshot.deferred.push(DeferredState::new(Box::new(finish)));
        }
        self.metrics.add_busy(start.elapsed());
        self.next.barrier(snapshot)
    }
}

impl<F: KeyedProcessFunction> Push<(F::Key, F::In)> for KeyedNode<F> {
    fn push(&mut self, batch: Vec<(F::Key, F::In)>) -> Result<()> {
        let start = Instant::now();
        self.metrics.record_in(batch.len());
        if self.ttl {
            self.store.set_processing_time(now_millis());
        }
        let mut out = Vec::new();
        let mut ctx = BatchContext::new(&mut self.store, &mut self.timers, self.watermark);
        (self.process)(&mut self.f, batch, &mut ctx, &mut Collector::new(&mut out))?;
        self.metrics.add_busy(start.elapsed());
        self.emit(out)
    }

    fn control(&mut self, control: Control, snapshot: Snapshot<'_>) -> Result<()> {
        match control {
            Control::Open => self.open(),
            Control::Watermark(w) => self.watermark(w),
            Control::Idle => self.next.idle(),
            Control::Tick(now) => self.tick(now),
            Control::End => self.finish(),
            Control::Barrier(_) => self.barrier(barrier_snapshot(snapshot)?),
            Control::CheckpointComplete(id) => self.next.checkpoint_complete(id),
        }
    }
}
