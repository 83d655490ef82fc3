//! A keyed micro-batch processed as a whole, for operators whose speed depends on it:
//! [`KeyedBatchFunction`]. Users write a [`KeyedProcessFunction`], called per record.

use super::{Collector, KeyedContext, KeyedProcessFunction};
use crate::timer::Timers;
use crate::{now_millis, Result, Timestamp};
use ferroflow_state::{KeyedStateStore, StateKey, StateValue, ValueState, ValueView};

/// A keyed function that takes each micro-batch from the keyed exchange whole, to look its
/// state tables up once per batch ([`BatchContext::value_views`]) instead of once per
/// record. It is the fast path of operators such as the UV count, run with
/// `KeyedStream::process_batched`; it must give the same results as
/// [`KeyedProcessFunction::process`] on each record in turn, which is what the
/// function's `process` stays for (tests, and records handed over one by one).
pub trait KeyedBatchFunction: KeyedProcessFunction {
    /// Processes one micro-batch of `(key, record)` pairs, in order.
    ///
    /// # Errors
    /// An error stops the job.
    fn process_batch(
        &mut self,
        batch: Vec<(Self::Key, Self::In)>,
        ctx: &mut BatchContext<'_, Self::Key>,
        out: &mut Collector<'_, Self::Out>,
    ) -> Result<()>;
}

/// The context of one [`KeyedBatchFunction::process_batch`] call: the keyed state of
/// every key, the timers and the current watermark.
///
/// A record's own context ([`BatchContext::keyed`]) is what `process` receives. A
/// function that handles the batch itself can instead take views of its value states'
/// tables once for the whole batch ([`BatchContext::value_views`]): the same state, with
/// no table lookup per record.
///
/// ```
/// use ferroflow_core::testing::KeyedHarness;
/// use ferroflow_core::{
///     BatchContext, Collector, KeyedBatchFunction, KeyedContext, KeyedProcessFunction,
///     OpenContext, Result,
/// };
/// use ferroflow_state::{MemoryBackend, ValueState};
///
/// /// Emits each record's key with the number of records of that key so far.
/// #[derive(Default)]
/// struct Count {
///     seen: Vec<ValueState<u64>>,
/// }
///
/// impl KeyedProcessFunction for Count {
///     type Key = String;
///     type In = ();
///     type Out = (String, u64);
///     fn open(&mut self, ctx: &mut OpenContext<'_, String>) -> Result<()> {
///         self.seen = vec![ctx.value_state("seen")?];
///         Ok(())
///     }
///     /// One record: the batch path on a batch of one.
///     fn process(
///         &mut self,
///         record: (),
///         ctx: &mut KeyedContext<'_, String>,
///         out: &mut Collector<'_, (String, u64)>,
///     ) -> Result<()> {
///         let key = ctx.key().clone();
///         self.process_batch(vec![(key, record)], &mut ctx.batch(), out)
///     }
/// }
///
/// impl KeyedBatchFunction for Count {
///     /// The table is looked up once for the whole batch.
///     fn process_batch(
///         &mut self,
///         batch: Vec<(String, ())>,
///         ctx: &mut BatchContext<'_, String>,
///         out: &mut Collector<'_, (String, u64)>,
///     ) -> Result<()> {
///         let (mut views, _timers) = ctx.value_views(&self.seen)?;
///         for (key, ()) in batch {
///             if let Some(view) = views.first_mut() {
///                 let seen = view.get_or_insert_with(&key, || 0)?;
///                 *seen += 1;
///                 let seen = *seen;
///                 out.collect((key, seen));
///             }
///         }
///         Ok(())
///     }
/// }
///
/// # fn main() -> Result<()> {
/// let mut h = KeyedHarness::new(Count::default(), &MemoryBackend)?;
/// let batch = vec![("a".to_string(), ()), ("b".to_string(), ()), ("a".to_string(), ())];
/// let out = h.process_batch(batch)?;
/// let expected = [("a", 1), ("b", 1), ("a", 2)].map(|(k, n)| (k.to_string(), n));
/// assert_eq!(out, expected);
/// assert_eq!(h.process("a".to_string(), ())?, vec![("a".to_string(), 3)]);
/// # Ok(()) }
/// ```
pub struct BatchContext<'a, K> {
    store: &'a mut KeyedStateStore,
    timers: &'a mut Timers<K>,
    watermark: Timestamp,
}

impl<'a, K: StateKey> BatchContext<'a, K> {
    pub(crate) fn new(
        store: &'a mut KeyedStateStore,
        timers: &'a mut Timers<K>,
        watermark: Timestamp,
    ) -> Self {
        Self {
            store,
            timers,
            watermark,
        }
    }

    /// The current event-time watermark of this operator instance.
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }

    /// The wall clock, in epoch milliseconds.
    pub fn current_processing_time(&self) -> Timestamp {
        now_millis()
    }

    /// The context of one record with key `key`, as [`KeyedProcessFunction::process`]
    /// receives it.
    pub fn keyed<'b>(&'b mut self, key: &'b K) -> KeyedContext<'b, K> {
        KeyedContext::new(key, self.store, self.timers, self.watermark)
    }

    /// Views of the tables of `states` (declared in `open`, each once), in their order,
    /// and the timers, for the rest of the batch.
    ///
    /// # Errors
    /// When a handle was not declared by this function with these types, or is given
    /// twice.
    pub fn value_views<V: StateValue>(
        &mut self,
        states: &[ValueState<V>],
    ) -> Result<ViewsAndTimers<'_, K, V>> {
        let views = self.store.value_views(states)?;
        Ok((
            views,
            TimerService {
                timers: self.timers,
            },
        ))
    }
}

/// Views of value states' tables, in the order they were asked for, and the timers:
/// what [`BatchContext::value_views`] gives.
pub type ViewsAndTimers<'a, K, V> = (Vec<ValueView<'a, K, V>>, TimerService<'a, K>);

/// Registers timers for any key, beside [`ValueView`]s (see
/// [`BatchContext::value_views`]).
pub struct TimerService<'a, K> {
    timers: &'a mut Timers<K>,
}

impl<K: StateKey> TimerService<'_, K> {
    /// Fires `on_timer` for `key` once the watermark reaches `at`; as
    /// [`KeyedContext::register_event_time_timer`].
    pub fn register_event_time_timer(&mut self, key: &K, at: Timestamp) {
        self.timers.event.register(at, key.clone());
    }

    /// Fires `on_timer` for `key` once the wall clock reaches `at`.
    pub fn register_processing_time_timer(&mut self, key: &K, at: Timestamp) {
        self.timers.processing.register(at, key.clone());
    }
}

/// Processes `batch` one record after another with [`KeyedProcessFunction::process`]:
/// how a keyed function that is not a [`KeyedBatchFunction`] takes a batch.
///
/// # Errors
/// The first error of `process`; the records after it are not processed.
pub fn process_each<F: KeyedProcessFunction + ?Sized>(
    f: &mut F,
    batch: Vec<(F::Key, F::In)>,
    ctx: &mut BatchContext<'_, F::Key>,
    out: &mut Collector<'_, F::Out>,
) -> Result<()> {
    for (key, record) in batch {
        f.process(record, &mut ctx.keyed(&key), out)?;
    }
    Ok(())
}
