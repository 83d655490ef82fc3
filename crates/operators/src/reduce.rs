//! Rolling reduce per key.

use ferroflow_core::{
    Collector, DataStream, Error, KeyedContext, KeyedProcessFunction, KeyedStream, OpenContext,
    Result,
};
use ferroflow_state::{StateKey, StateValue, ValueState};
use std::marker::PhantomData;
use std::sync::Arc;

/// Combines each record with the key's running value and emits the new value.
pub struct Reduce<K, T, F> {
    f: Arc<F>,
    acc: Option<ValueState<T>>,
    _k: PhantomData<fn() -> K>,
}

impl<K, T, F> Clone for Reduce<K, T, F> {
    fn clone(&self) -> Self {
        Self {
            f: Arc::clone(&self.f),
            acc: None,
            _k: PhantomData,
        }
    }
}

impl<K, T, F> Reduce<K, T, F> {
    /// A reduce with combining function `f(accumulated, next)`.
    pub fn new(f: F) -> Self {
        Self {
            f: Arc::new(f),
            acc: None,
            _k: PhantomData,
        }
    }
}

impl<K, T, F> KeyedProcessFunction for Reduce<K, T, F>
where
    K: StateKey,
    T: StateValue + Clone,
    F: Fn(&T, T) -> T + Send + Sync + 'static,
{
    type Key = K;
    type In = T;
    type Out = T;

    fn open(&mut self, ctx: &mut OpenContext<'_, K>) -> Result<()> {
        self.acc = Some(ctx.value_state("reduce")?);
        Ok(())
    }

    fn process(
        &mut self,
        record: T,
        ctx: &mut KeyedContext<'_, K>,
        out: &mut Collector<'_, T>,
    ) -> Result<()> {
        let acc = self
            .acc
            .ok_or_else(|| Error::Internal("reduce used before open".into()))?;
        let next = match acc.get(ctx)? {
            Some(prev) => (self.f)(prev, record),
            None => record,
        };
        acc.set(ctx, next.clone())?;
        out.collect(next);
        Ok(())
    }
}

/// Aggregations on keyed streams.
pub trait KeyedStreamExt<K, T> {
    /// Emits, for every record, the key's running aggregate `f(f(f(r1, r2), r3), …)`.
    ///
    /// ```
    /// use ferroflow_core::{sinks::CollectSink, StreamEnvironment};
    /// use ferroflow_operators::KeyedStreamExt;
    ///
    /// # fn main() -> ferroflow_core::Result<()> {
    /// let env = StreamEnvironment::local(2);
    /// let out = CollectSink::new();
    /// env.from_iter(vec![("a", 1), ("b", 5), ("a", 2)])
    ///     .map(|(k, v)| (k.to_string(), v))
    ///     .key_by(|(k, _)| k.clone())
    ///     .reduce(|(k, a), (_, b)| (k.clone(), a + b))
    ///     .sink(out.clone());
    /// env.execute()?;
    /// assert_eq!(out.sorted(), vec![("a".into(), 1), ("a".into(), 3), ("b".into(), 5)]);
    /// # Ok(()) }
    /// ```
    fn reduce<F>(self, f: F) -> DataStream<T>
    where
        F: Fn(&T, T) -> T + Send + Sync + 'static;
}

impl<K: StateKey, T: StateValue + Clone> KeyedStreamExt<K, T> for KeyedStream<K, T> {
    fn reduce<F>(self, f: F) -> DataStream<T>
    where
        F: Fn(&T, T) -> T + Send + Sync + 'static,
    {
        self.process(Reduce::new(f)).name("reduce")
    }
}
