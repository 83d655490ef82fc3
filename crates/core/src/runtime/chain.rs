//! Chained stateless operators and the sink at the end of a chain. Each is a plain call
//! on the worker thread: no channel, no copy beyond the operator's own output.

use super::{barrier_snapshot, Control, Next, Push, Snapshot};
use crate::checkpoint::coordinator::TaskSnapshot;
use crate::checkpoint::SinkCommit;
use crate::metrics::OperatorMetrics;
use crate::{Result, Sink, SinkContext};
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

/// A stateless batch transformation, shared by every worker.
pub(crate) trait BatchFn<T, U>: Send + Sync + 'static {
    fn apply(&self, batch: Vec<T>) -> Result<Vec<U>>;
}

pub(crate) struct MapFn<F>(pub F);
impl<T, U, F: Fn(T) -> U + Send + Sync + 'static> BatchFn<T, U> for MapFn<F> {
    #[inline]
    fn apply(&self, batch: Vec<T>) -> Result<Vec<U>> {
        Ok(batch.into_iter().map(&self.0).collect())
    }
}

pub(crate) struct TryMapFn<F>(pub F);
impl<T, U, F: Fn(T) -> Result<U> + Send + Sync + 'static> BatchFn<T, U> for TryMapFn<F> {
    fn apply(&self, batch: Vec<T>) -> Result<Vec<U>> {
        batch.into_iter().map(&self.0).collect()
    }
}

pub(crate) struct FilterFn<F>(pub F);
impl<T, F: Fn(&T) -> bool + Send + Sync + 'static> BatchFn<T, T> for FilterFn<F> {
    #[inline]
    fn apply(&self, mut batch: Vec<T>) -> Result<Vec<T>> {
        batch.retain(&self.0);
        Ok(batch)
    }
}

pub(crate) struct FlatMapFn<F>(pub F);
impl<T, U, I, F> BatchFn<T, U> for FlatMapFn<F>
where
    I: IntoIterator<Item = U>,
    F: Fn(T) -> I + Send + Sync + 'static,
{
    fn apply(&self, batch: Vec<T>) -> Result<Vec<U>> {
        Ok(batch.into_iter().flat_map(&self.0).collect())
    }
}

pub(crate) struct BatchMapFn<F>(pub F);
impl<T, U, F> BatchFn<T, U> for BatchMapFn<F>
where
    F: Fn(Vec<T>) -> Vec<U> + Send + Sync + 'static,
{
    fn apply(&self, batch: Vec<T>) -> Result<Vec<U>> {
        Ok((self.0)(batch))
    }
}

pub(crate) struct InspectFn<F>(pub F);
impl<T, F: Fn(&T) + Send + Sync + 'static> BatchFn<T, T> for InspectFn<F> {
    fn apply(&self, batch: Vec<T>) -> Result<Vec<T>> {
        batch.iter().for_each(&self.0);
        Ok(batch)
    }
}

/// What [`SplitNode`] asks of each record: `Ok` goes on, `Err` to the side.
pub(crate) type SplitFn<T, A, B> = dyn Fn(T) -> std::result::Result<A, B> + Send + Sync;

/// Sends each record on or to a side output; control messages reach both, the side
/// first (so a barrier's snapshot holds the side exchange's part before the main
/// chain's).
pub(crate) struct SplitNode<T, A, B> {
    pub(crate) f: Arc<SplitFn<T, A, B>>,
    pub(crate) main: Next<A>,
    pub(crate) side: Next<B>,
}

impl<T: Send + 'static, A: Send + 'static, B: Send + 'static> Push<T> for SplitNode<T, A, B> {
    fn push(&mut self, batch: Vec<T>) -> Result<()> {
        let mut main = Vec::with_capacity(batch.len());
        let mut side = Vec::new();
        for record in batch {
            match (self.f)(record) {
                Ok(a) => main.push(a),
                Err(b) => side.push(b),
            }
        }
        if !side.is_empty() {
            self.side.push(side)?;
        }
        if !main.is_empty() {
            self.main.push(main)?;
        }
        Ok(())
    }

    fn control(&mut self, control: Control, snapshot: Snapshot<'_>) -> Result<()> {
        match snapshot {
            Some(s) => {
                self.side.control(control, Some(&mut *s))?;
                self.main.control(control, Some(s))
            }
            None => {
                self.side.control(control, None)?;
                self.main.control(control, None)
            }
        }
    }
}

/// Runs a [`BatchFn`] and passes its output on.
pub(crate) struct Stateless<T, U> {
    op: Arc<dyn BatchFn<T, U>>,
    next: Next<U>,
    metrics: Arc<OperatorMetrics>,
    _in: PhantomData<fn(T)>,
}

impl<T, U> Stateless<T, U> {
    pub(crate) fn new(
        op: Arc<dyn BatchFn<T, U>>,
        next: Next<U>,
        metrics: Arc<OperatorMetrics>,
    ) -> Self {
        Self {
            op,
            next,
            metrics,
            _in: PhantomData,
        }
    }
}

impl<T: Send + 'static, U: Send + 'static> Push<T> for Stateless<T, U> {
    fn push(&mut self, batch: Vec<T>) -> Result<()> {
        let start = Instant::now();
        self.metrics.record_in(batch.len());
        let out = self.op.apply(batch)?;
        self.metrics.record_out(out.len());
        self.metrics.add_busy(start.elapsed());
        if out.is_empty() {
            return Ok(());
        }
        self.next.push(out)
    }

    fn control(&mut self, control: Control, snapshot: Snapshot<'_>) -> Result<()> {
        self.next.control(control, snapshot)
    }
}

/// A sink at the end of a chain.
pub(crate) struct SinkNode<T, S> {
    sink: S,
    operator: String,
    ctx: SinkContext,
    metrics: Arc<OperatorMetrics>,
    /// Prepared for checkpoints not yet known to be complete.
    prepared: BTreeMap<u64, serde_json::Value>,
    _in: PhantomData<fn(T)>,
}

impl<T, S> SinkNode<T, S> {
    pub(crate) fn new(
        sink: S,
        operator: String,
        ctx: SinkContext,
        metrics: Arc<OperatorMetrics>,
    ) -> Self {
        Self {
            sink,
            operator,
            ctx,
            metrics,
            prepared: BTreeMap::new(),
            _in: PhantomData,
        }
    }
}

impl<T: Send + 'static, S: Sink<T>> SinkNode<T, S> {
    fn finish(&mut self) -> Result<()> {
        let start = Instant::now();
        // The input ended: what was prepared for checkpoints still in flight is final too.
        let prepared = std::mem::take(&mut self.prepared);
        if !prepared.is_empty() {
            self.sink.commit(prepared.into_values().collect())?;
        }
        self.sink.finish()?;
        self.metrics.add_busy(start.elapsed());
        Ok(())
    }

    fn barrier(&mut self, snapshot: &mut TaskSnapshot) -> Result<()> {
        let start = Instant::now();
        if let Some(committable) = self.sink.prepare_commit(snapshot.checkpoint)? {
            self.prepared.insert(snapshot.checkpoint, committable);
        }
        // Everything prepared and not yet known to be committed goes into the checkpoint,
        // not only this barrier's: when an earlier checkpoint failed, its committable is
        // published only with this one, and a restore from this one must still find it.
        for committable in self.prepared.values() {
            snapshot.sinks.push(SinkCommit {
                operator: self.operator.clone(),
                worker: self.ctx.worker,
                committable: committable.clone(),
            });
        }
        self.metrics.add_busy(start.elapsed());
        Ok(())
    }

    fn checkpoint_complete(&mut self, id: u64) -> Result<()> {
        let later = self.prepared.split_off(&(id + 1));
        let done = std::mem::replace(&mut self.prepared, later);
        if !done.is_empty() {
            self.sink.commit(done.into_values().collect())?;
        }
        Ok(())
    }
}

impl<T: Send + 'static, S: Sink<T>> Push<T> for SinkNode<T, S> {
    fn push(&mut self, batch: Vec<T>) -> Result<()> {
        let start = Instant::now();
        self.metrics.record_in(batch.len());
        self.sink.write(batch)?;
        self.metrics.add_busy(start.elapsed());
        Ok(())
    }

    fn control(&mut self, control: Control, snapshot: Snapshot<'_>) -> Result<()> {
        match control {
            Control::Open => self.sink.open(&self.ctx),
            Control::Watermark(w) => self.sink.on_watermark(w),
            Control::Idle | Control::Tick(_) => Ok(()),
            Control::End => self.finish(),
            Control::Barrier(_) => self.barrier(barrier_snapshot(snapshot)?),
            Control::CheckpointComplete(id) => self.checkpoint_complete(id),
        }
    }
}
