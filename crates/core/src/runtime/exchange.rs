//! Exchanges: the only place records leave a worker thread. Records are buffered per
//! target worker into batches and sent over bounded channels; a full channel blocks the
//! sender until it is half empty (backpressure, see [`super::channel`]), and the time
//! blocked is measured.

use super::channel::{channel, Rx, SendError, Tx};
use super::control::JobControl;
use super::{Control, Message, Push, Snapshot};
use crate::metrics::OperatorMetrics;
use crate::{Error, Result};
use crossbeam_channel::TrySendError;
use ferroflow_state::{key_group_for_key, worker_for_key_group, StateKey};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a blocked sender wakes up to check for cancellation.
const BLOCKED_POLL: Duration = Duration::from_millis(20);

/// The sending ends one upstream worker holds, one per downstream worker.
pub(crate) type Senders<T> = Vec<Tx<T>>;
/// The receiving ends one downstream worker holds, one per upstream worker.
pub(crate) type Receivers<T> = Vec<Rx<T>>;

/// The channel matrix of one exchange: `senders[from][to]`, `receivers[to][from]`.
pub(crate) fn channel_matrix<T>(
    upstream: usize,
    downstream: usize,
    capacity: usize,
) -> (Vec<Senders<T>>, Vec<Receivers<T>>) {
    let mut senders: Vec<Vec<_>> = (0..upstream)
        .map(|_| Vec::with_capacity(downstream))
        .collect();
    let mut receivers: Vec<Vec<_>> = (0..downstream)
        .map(|_| Vec::with_capacity(upstream))
        .collect();
    for from in senders.iter_mut() {
        for to in receivers.iter_mut() {
            let (tx, rx) = channel(capacity);
            from.push(tx);
            to.push(rx);
        }
    }
    (senders, receivers)
}

/// Per-target batch buffers in front of the channels.
pub(crate) struct Outbox<T> {
    senders: Senders<T>,
    buffers: Vec<Vec<T>>,
    batch_size: usize,
    linger: Duration,
    pending_since: Option<Instant>,
    control: Arc<JobControl>,
    metrics: Arc<OperatorMetrics>,
    blocked: Duration,
}

impl<T: Send> Outbox<T> {
    pub(crate) fn new(
        senders: Senders<T>,
        batch_size: usize,
        linger: Duration,
        control: Arc<JobControl>,
        metrics: Arc<OperatorMetrics>,
    ) -> Self {
        let buffers = senders.iter().map(|_| Vec::new()).collect();
        Self {
            senders,
            buffers,
            batch_size,
            linger,
            pending_since: None,
            control,
            metrics,
            blocked: Duration::ZERO,
        }
    }

    pub(crate) fn targets(&self) -> usize {
        self.senders.len()
    }

    #[inline]
    pub(crate) fn push_record(&mut self, target: usize, record: T) -> Result<()> {
        let buf = &mut self.buffers[target];
        if buf.capacity() == 0 {
            buf.reserve_exact(self.batch_size);
        }
        buf.push(record);
        if buf.len() >= self.batch_size {
            self.send_buffer(target)?;
        }
        Ok(())
    }

    /// Appends a whole batch for one target, sending it as is when nothing is buffered.
    pub(crate) fn push_batch(&mut self, target: usize, mut batch: Vec<T>) -> Result<()> {
        let buf = &mut self.buffers[target];
        if buf.is_empty() && batch.len() * 2 >= self.batch_size {
            let n = batch.len();
            self.send(target, Message::Data(batch))?;
            self.metrics.record_out(n);
            return Ok(());
        }
        buf.append(&mut batch);
        if buf.len() >= self.batch_size {
            self.send_buffer(target)?;
        }
        Ok(())
    }

    fn send_buffer(&mut self, target: usize) -> Result<()> {
        let batch = std::mem::take(&mut self.buffers[target]);
        let n = batch.len();
        self.send(target, Message::Data(batch))?;
        self.metrics.record_out(n);
        Ok(())
    }

    /// Starts the linger clock after input was buffered; flushes once it ran out.
    pub(crate) fn after_input(&mut self, now: Instant) -> Result<()> {
        if self.buffers.iter().all(Vec::is_empty) {
            self.pending_since = None;
            return Ok(());
        }
        match self.pending_since {
            None => self.pending_since = Some(now),
            Some(t) if now.duration_since(t) >= self.linger => self.flush()?,
            Some(_) => {}
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> Result<()> {
        for target in 0..self.buffers.len() {
            if !self.buffers[target].is_empty() {
                self.send_buffer(target)?;
            }
        }
        self.pending_since = None;
        Ok(())
    }

    /// Flushes, then sends a control message to every target.
    pub(crate) fn broadcast(&mut self, make: impl Fn() -> Message<T>) -> Result<()> {
        self.flush()?;
        for target in 0..self.senders.len() {
            self.send(target, make())?;
        }
        Ok(())
    }

    /// Time spent blocked since the last call.
    pub(crate) fn take_blocked(&mut self) -> Duration {
        std::mem::take(&mut self.blocked)
    }

    fn send(&mut self, target: usize, msg: Message<T>) -> Result<()> {
        let tx = &self.senders[target];
        let msg = match tx.try_send(msg) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(m)) => m,
            Err(TrySendError::Disconnected(_)) => return Err(Error::Cancelled),
        };
        let start = Instant::now();
        let control = &self.control;
        let result = tx
            .send_waiting(msg, BLOCKED_POLL, || control.is_cancelled())
            .map_err(|e| match e {
                SendError::Disconnected | SendError::Stopped => Error::Cancelled,
            });
        let waited = start.elapsed();
        self.blocked += waited;
        self.metrics.add_backpressure(waited);
        result
    }
}

impl<T: Send> Outbox<T> {
    /// What an exchange node does with a control message: flush what is buffered and
    /// broadcast watermarks, idleness, barriers and the end to every target; flush
    /// lingering batches on ticks.
    fn control(&mut self, control: Control) -> Result<()> {
        match control {
            Control::Open | Control::CheckpointComplete(_) => Ok(()),
            Control::Tick(now) => self.after_input(now),
            c @ (Control::Watermark(_) | Control::Idle | Control::Barrier(_) | Control::End) => {
                self.broadcast(|| Message::Control(c))
            }
        }
    }
}

/// Routes each record to the worker owning its key's key group, as a `(key, value)`
/// pair that `split` makes of the record: `key_by` pairs a computed key with the whole
/// record, `key_by_pair` takes pairs apart that already carry their key.
pub(crate) struct KeyedExchange<T, K, V, F> {
    outbox: Outbox<(K, V)>,
    split: Arc<F>,
    max_parallelism: u16,
    metrics: Arc<OperatorMetrics>,
    _t: PhantomData<fn(T)>,
}

impl<T, K, V, F> KeyedExchange<T, K, V, F> {
    pub(crate) fn new(
        outbox: Outbox<(K, V)>,
        split: Arc<F>,
        max_parallelism: u16,
        metrics: Arc<OperatorMetrics>,
    ) -> Self {
        Self {
            outbox,
            split,
            max_parallelism,
            metrics,
            _t: PhantomData,
        }
    }
}

impl<T, K, V, F> Push<T> for KeyedExchange<T, K, V, F>
where
    T: Send + 'static,
    K: StateKey,
    V: Send + 'static,
    F: Fn(T) -> (K, V) + Send + Sync + 'static,
{
    fn push(&mut self, batch: Vec<T>) -> Result<()> {
        let start = Instant::now();
        self.metrics.record_in(batch.len());
        let targets = self.outbox.targets();
        if targets == 1 {
            // One worker takes every key: no key group to work out, and the batch goes
            // as a whole (collected in place when a record is already a key-value pair).
            let pairs: Vec<(K, V)> = batch.into_iter().map(&*self.split).collect();
            self.outbox.push_batch(0, pairs)?;
        } else {
            for record in batch {
                let pair = (self.split)(record);
                let group = key_group_for_key(&pair.0, self.max_parallelism);
                let target = worker_for_key_group(group, self.max_parallelism, targets);
                self.outbox.push_record(target, pair)?;
            }
        }
        let now = Instant::now();
        self.outbox.after_input(now)?;
        let busy = now
            .duration_since(start)
            .saturating_sub(self.outbox.take_blocked());
        self.metrics.add_busy(busy);
        Ok(())
    }

    fn control(&mut self, control: Control, _snapshot: Snapshot<'_>) -> Result<()> {
        self.outbox.control(control)
    }
}

/// How a [`BatchExchange`] picks a target.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Route {
    /// Always the same worker (forward to the worker with the same index, or global to 0).
    Fixed(usize),
    /// Batch by batch in turn.
    RoundRobin(usize),
}

/// Moves whole batches to a target chosen per batch.
pub(crate) struct BatchExchange<T> {
    outbox: Outbox<T>,
    route: Route,
    metrics: Arc<OperatorMetrics>,
    _t: PhantomData<fn(T)>,
}

impl<T> BatchExchange<T> {
    pub(crate) fn new(outbox: Outbox<T>, route: Route, metrics: Arc<OperatorMetrics>) -> Self {
        Self {
            outbox,
            route,
            metrics,
            _t: PhantomData,
        }
    }
}

impl<T: Send + 'static> Push<T> for BatchExchange<T> {
    fn push(&mut self, batch: Vec<T>) -> Result<()> {
        let start = Instant::now();
        self.metrics.record_in(batch.len());
        let target = match &mut self.route {
            Route::Fixed(t) => *t,
            Route::RoundRobin(next) => {
                let t = *next;
                *next = (t + 1) % self.outbox.targets();
                t
            }
        };
        self.outbox.push_batch(target, batch)?;
        let now = Instant::now();
        self.outbox.after_input(now)?;
        let busy = now
            .duration_since(start)
            .saturating_sub(self.outbox.take_blocked());
        self.metrics.add_busy(busy);
        Ok(())
    }

    fn control(&mut self, control: Control, _snapshot: Snapshot<'_>) -> Result<()> {
        self.outbox.control(control)
    }
}
