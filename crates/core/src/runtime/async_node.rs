//! The async operator's node: issues calls, collects their completions on the worker,
//! emits in order or as they complete without crossing watermarks, holds inputs for
//! retries, and snapshots what is unanswered at barriers.

use super::control::JobControl;
use super::io::IoRuntime;
use super::{barrier_snapshot, Control, ControlCalls, Next, Push, Snapshot};
use crate::async_op::{AsyncConfig, AsyncFunction, AsyncOpenContext, OnBarrier, OnTimeout, Reply};
use crate::checkpoint::coordinator::TaskSnapshot;
use crate::checkpoint::restore::operator_state;
use crate::metrics::OperatorMetrics;
use crate::{Collector, Error, Result, Timestamp};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a waiting worker sleeps before it looks at cancellation and retries again.
const WAIT: Duration = Duration::from_millis(10);
/// Longest delay between two retries of a failed call.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// An input unanswered at a barrier, as it goes into the checkpoint: the input and the
/// attempt it is at.
type Unanswered<I> = (I, u32);

enum State<O> {
    /// Part of call `call`, in flight.
    InFlight { call: u64 },
    /// Waiting to be called again at the time on the heap.
    Held { due: Instant },
    /// Answered, not emitted yet.
    Done(Option<O>),
    /// Answered and emitted.
    Emitted,
}

struct Slot<I, O> {
    input: I,
    attempt: u32,
    /// Failed calls (errors, timeouts) this input was part of, in a row.
    failures: u32,
    state: State<O>,
}

/// Inputs that arrived together, in input order.
struct Group<I, O> {
    slots: Vec<Slot<I, O>>,
}

enum Entry {
    Group(u64),
    Watermark(Timestamp),
}

/// A completed call.
struct Done<O> {
    group: u64,
    call: u64,
    result: std::result::Result<Vec<Reply<O>>, CallError>,
}

enum CallError {
    Failed(Error),
    TimedOut(Duration),
}

pub(crate) struct AsyncNode<F: AsyncFunction> {
    f: F,
    config: AsyncConfig,
    operator: String,
    worker: usize,
    parallelism: usize,
    max_parallelism: u16,
    next: Next<F::Out>,
    metrics: Arc<OperatorMetrics>,
    control: Arc<JobControl>,
    io: Arc<IoRuntime>,
    handle: Option<tokio::runtime::Handle>,
    done_tx: Sender<Done<F::Out>>,
    done_rx: Receiver<Done<F::Out>>,
    queue: VecDeque<Entry>,
    groups: BTreeMap<u64, Group<F::In, F::Out>>,
    held: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    next_group: u64,
    next_call: u64,
    in_flight: usize,
    pending: usize,
    /// Inputs the restored checkpoint held, issued at open.
    restored: Vec<Unanswered<F::In>>,
}

/// Everything an [`AsyncNode`] is built from.
pub(crate) struct AsyncParts<F: AsyncFunction> {
    pub(crate) f: F,
    pub(crate) config: AsyncConfig,
    pub(crate) operator: String,
    pub(crate) worker: usize,
    pub(crate) parallelism: usize,
    pub(crate) max_parallelism: u16,
    pub(crate) metrics: Arc<OperatorMetrics>,
    pub(crate) control: Arc<JobControl>,
    pub(crate) io: Arc<IoRuntime>,
    /// The operator's snapshots this worker restores.
    pub(crate) restored: Vec<serde_json::Value>,
}

impl<F: AsyncFunction> AsyncNode<F>
where
    F::In: Clone,
{
    pub(crate) fn new(parts: AsyncParts<F>, next: Next<F::Out>) -> Result<Self> {
        let mut restored = Vec::new();
        for state in parts.restored {
            let inputs: Vec<Unanswered<F::In>> = serde_json::from_value(state).map_err(|e| {
                Error::Checkpoint(format!(
                    "the checkpoint's state of async operator `{}` cannot be read as its \
                     inputs (did the input type change?): {e}",
                    parts.operator
                ))
            })?;
            restored.extend(inputs);
        }
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        Ok(Self {
            f: parts.f,
            config: parts.config,
            operator: parts.operator,
            worker: parts.worker,
            parallelism: parts.parallelism,
            max_parallelism: parts.max_parallelism,
            next,
            metrics: parts.metrics,
            control: parts.control,
            io: parts.io,
            handle: None,
            done_tx,
            done_rx,
            queue: VecDeque::new(),
            groups: BTreeMap::new(),
            held: BinaryHeap::new(),
            next_group: 0,
            next_call: 0,
            in_flight: 0,
            pending: 0,
            restored,
        })
    }

    /// Starts one call for `slots` of `group` (all at `attempt`).
    fn issue(&mut self, group: u64, slots: &[usize], inputs: &[F::In], attempt: u32) -> Result<()> {
        let handle = self.handle.clone().ok_or_else(|| {
            Error::Internal(format!("async operator `{}` was not opened", self.operator))
        })?;
        let call = self.next_call;
        self.next_call += 1;
        if let Some(g) = self.groups.get_mut(&group) {
            for &i in slots {
                if let Some(slot) = g.slots.get_mut(i) {
                    slot.state = State::InFlight { call };
                }
            }
        }
        let fut = self.f.call(inputs, attempt);
        let tx = self.done_tx.clone();
        let timeout = self.config.timeout;
        handle.spawn(async move {
            let result = match tokio::time::timeout(timeout, fut).await {
                Ok(Ok(replies)) => Ok(replies),
                Ok(Err(e)) => Err(CallError::Failed(e)),
                Err(_) => Err(CallError::TimedOut(timeout)),
            };
            // The receiver is gone only when the job has ended.
            let _ = tx.send(Done {
                group,
                call,
                result,
            });
        });
        self.in_flight += 1;
        metrics::counter!("ferroflow_async_calls_total", "operator" => self.operator.clone())
            .increment(1);
        Ok(())
    }

    /// A new group of `inputs` at `attempt`, called in chunks of `max_batch`.
    fn add_group(&mut self, inputs: Vec<F::In>, attempt: u32) -> Result<()> {
        for chunk in inputs.chunks(self.config.max_batch) {
            self.wait_for_room()?;
            let id = self.next_group;
            self.next_group += 1;
            let slots = chunk
                .iter()
                .map(|input| Slot {
                    input: input.clone(),
                    attempt,
                    failures: 0,
                    // Set to the call's number by `issue`.
                    state: State::InFlight { call: u64::MAX },
                })
                .collect();
            self.groups.insert(id, Group { slots });
            self.queue.push_back(Entry::Group(id));
            self.pending += chunk.len();
            let all: Vec<usize> = (0..chunk.len()).collect();
            self.issue(id, &all, chunk, attempt)?;
        }
        Ok(())
    }

    /// Blocks (taking completions and retrying what is due) until another call fits.
    fn wait_for_room(&mut self) -> Result<()> {
        while self.in_flight >= self.config.capacity || self.pending >= self.config.max_pending {
            self.wait_once()?;
        }
        Ok(())
    }

    /// Waits for one completion (or until the next retry is due, or a short while), takes
    /// every completion there is, issues due retries and emits what is ready.
    fn wait_once(&mut self) -> Result<()> {
        // A retry that is due but has no room waits for a completion like the rest.
        let until_due = match self.held.peek() {
            Some(Reverse((due, _, _))) if self.in_flight < self.config.capacity => {
                due.saturating_duration_since(Instant::now())
            }
            _ => WAIT,
        };
        self.receive(until_due.min(WAIT))?;
        self.poll()
    }

    /// Applies the next completion, waiting at most `timeout` for one; fails if the job
    /// was cancelled meanwhile.
    fn receive(&mut self, timeout: Duration) -> Result<()> {
        if self.control.is_cancelled() {
            return Err(Error::Cancelled);
        }
        match self.done_rx.recv_timeout(timeout) {
            Ok(done) => self.complete(done),
            Err(RecvTimeoutError::Timeout) => Ok(()),
            // This node holds a sender itself.
            Err(RecvTimeoutError::Disconnected) => Err(Error::Internal(format!(
                "async operator `{}` lost its completions",
                self.operator
            ))),
        }
    }

    /// Takes every completion there is, issues due retries, emits what is ready.
    fn poll(&mut self) -> Result<()> {
        while let Ok(done) = self.done_rx.try_recv() {
            self.complete(done)?;
        }
        self.retry_due(Instant::now())?;
        self.emit_ready()
    }

    /// Applies a completed call to its slots.
    fn complete(&mut self, done: Done<F::Out>) -> Result<()> {
        self.in_flight = self.in_flight.saturating_sub(1);
        let Some(group) = self.groups.get_mut(&done.group) else {
            return Ok(());
        };
        let mine: Vec<usize> = group
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s.state, State::InFlight { call } if call == done.call))
            .map(|(i, _)| i)
            .collect();
        let now = Instant::now();
        match done.result {
            Ok(replies) => {
                if replies.len() != mine.len() {
                    return Err(Error::user(format!(
                        "async operator `{}`: a call for {} inputs returned {} replies",
                        self.operator,
                        mine.len(),
                        replies.len()
                    )));
                }
                for (i, reply) in mine.into_iter().zip(replies) {
                    let slot = &mut group.slots[i];
                    slot.failures = 0;
                    slot.state = match reply {
                        Reply::Emit(o) => State::Done(Some(o)),
                        Reply::Skip => State::Done(None),
                        Reply::RetryAfter(delay) => {
                            slot.attempt += 1;
                            let due = now + delay;
                            self.held.push(Reverse((due, done.group, i)));
                            metrics::counter!("ferroflow_async_retries_total", "operator" => self.operator.clone())
                                .increment(1);
                            State::Held { due }
                        }
                    };
                }
            }
            Err(err) => {
                let (retryable, why) = match err {
                    CallError::Failed(e) => (e.is_retryable(), e.to_string()),
                    CallError::TimedOut(t) => (
                        self.config.on_timeout == OnTimeout::Retry,
                        format!("timed out after {t:?}"),
                    ),
                };
                let failures = mine
                    .first()
                    .map_or(0, |&i| group.slots[i].failures)
                    .saturating_add(1);
                if !retryable || failures > self.config.max_retries {
                    let message = format!(
                        "async operator `{}`: a call for {} inputs failed{}: {why}",
                        self.operator,
                        mine.len(),
                        if retryable {
                            format!(" {failures} times")
                        } else {
                            String::new()
                        }
                    );
                    // Retries ran out on an error a restart may get past; the rest is not.
                    return Err(if retryable {
                        Error::retryable(message)
                    } else {
                        Error::user(message)
                    });
                }
                tracing::warn!(operator = %self.operator, failures, error = %why, "Async call failed; retrying.");
                let backoff = self
                    .config
                    .retry_backoff
                    .saturating_mul(1 << (failures - 1).min(16))
                    .min(MAX_BACKOFF);
                let due = now + backoff;
                for i in mine {
                    let slot = &mut group.slots[i];
                    slot.failures = failures;
                    slot.state = State::Held { due };
                    self.held.push(Reverse((due, done.group, i)));
                }
            }
        }
        Ok(())
    }

    /// Calls again the held inputs whose time has come, one call per group and attempt,
    /// as far as the bound on calls in flight allows; the rest wait for the next look.
    fn retry_due(&mut self, now: Instant) -> Result<()> {
        let mut due: BTreeMap<(u64, u32), Vec<(usize, Instant)>> = BTreeMap::new();
        while let Some(&Reverse((at, group, i))) = self.held.peek() {
            if at > now {
                break;
            }
            self.held.pop();
            let Some(slot) = self.groups.get(&group).and_then(|g| g.slots.get(i)) else {
                continue;
            };
            if matches!(slot.state, State::Held { due } if due == at) {
                due.entry((group, slot.attempt)).or_default().push((i, at));
            }
        }
        for ((group, attempt), slots) in due {
            for chunk in slots.chunks(self.config.max_batch) {
                if self.in_flight >= self.config.capacity {
                    // Still held at the same time: back on the heap.
                    for &(i, at) in chunk {
                        self.held.push(Reverse((at, group, i)));
                    }
                    continue;
                }
                let inputs: Vec<F::In> = match self.groups.get(&group) {
                    Some(g) => chunk
                        .iter()
                        .map(|&(i, _)| g.slots[i].input.clone())
                        .collect(),
                    None => continue,
                };
                let indices: Vec<usize> = chunk.iter().map(|&(i, _)| i).collect();
                self.issue(group, &indices, &inputs, attempt)?;
            }
        }
        Ok(())
    }

    /// Emits answered inputs: in order (ordered), or as answered within the stretch before
    /// the first watermark still waiting (unordered); and watermarks once everything
    /// before them is out.
    fn emit_ready(&mut self) -> Result<()> {
        let mut out = Vec::new();
        loop {
            if !self.config.ordered {
                for entry in &self.queue {
                    let Entry::Group(id) = entry else { break };
                    if let Some(g) = self.groups.get_mut(id) {
                        take_done(g, &mut out, &mut self.pending);
                    }
                }
            }
            match self.queue.front() {
                Some(Entry::Watermark(w)) => {
                    let w = *w;
                    self.queue.pop_front();
                    self.flush(&mut out)?;
                    self.next.watermark(w)?;
                }
                Some(Entry::Group(id)) => {
                    let id = *id;
                    let Some(g) = self.groups.get_mut(&id) else {
                        self.queue.pop_front();
                        continue;
                    };
                    let answered = g
                        .slots
                        .iter()
                        .all(|s| matches!(s.state, State::Done(_) | State::Emitted));
                    if !answered {
                        break;
                    }
                    take_done(g, &mut out, &mut self.pending);
                    self.groups.remove(&id);
                    self.queue.pop_front();
                }
                None => break,
            }
        }
        self.flush(&mut out)
    }

    fn flush(&mut self, out: &mut Vec<F::Out>) -> Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(out);
        self.metrics.record_out(batch.len());
        self.next.push(batch)
    }

    /// Every input not emitted yet, in input order, with its attempt.
    fn unanswered(&self) -> Vec<Unanswered<F::In>> {
        let mut all = Vec::with_capacity(self.pending);
        for entry in &self.queue {
            let Entry::Group(id) = entry else { continue };
            if let Some(g) = self.groups.get(id) {
                all.extend(
                    g.slots
                        .iter()
                        .filter(|s| !matches!(s.state, State::Emitted))
                        .map(|s| (s.input.clone(), s.attempt)),
                );
            }
        }
        all
    }
}

/// Moves the answered, unemitted outputs of `g` into `out`.
fn take_done<I, O>(g: &mut Group<I, O>, out: &mut Vec<O>, pending: &mut usize) {
    for slot in &mut g.slots {
        if matches!(slot.state, State::Done(_)) {
            if let State::Done(Some(o)) = std::mem::replace(&mut slot.state, State::Emitted) {
                out.push(o);
            }
            *pending = pending.saturating_sub(1);
        }
    }
}

impl<F: AsyncFunction> AsyncNode<F>
where
    F::In: Clone,
{
    fn open(&mut self) -> Result<()> {
        let handle = self.io.handle()?;
        self.handle = Some(handle.clone());
        self.f.open(&AsyncOpenContext {
            worker: self.worker,
            parallelism: self.parallelism,
            max_parallelism: self.max_parallelism,
            operator: self.operator.clone(),
            handle,
        })?;
        self.next.open()?;
        // What the checkpoint held unanswered is called again first, by attempt.
        let mut by_attempt: BTreeMap<u32, Vec<F::In>> = BTreeMap::new();
        for (input, attempt) in std::mem::take(&mut self.restored) {
            by_attempt.entry(attempt).or_default().push(input);
        }
        for (attempt, inputs) in by_attempt {
            self.add_group(inputs, attempt)?;
        }
        Ok(())
    }

    fn watermark(&mut self, watermark: Timestamp) -> Result<()> {
        if self.queue.is_empty() {
            return self.next.watermark(watermark);
        }
        self.queue.push_back(Entry::Watermark(watermark));
        self.emit_ready()
    }

    fn tick(&mut self, now: Instant) -> Result<()> {
        self.poll()?;
        self.next.tick(now)
    }

    fn finish(&mut self) -> Result<()> {
        // Every input is answered (retries included) before the end goes on.
        while !self.queue.is_empty() {
            self.wait_once()?;
        }
        self.f.close()?;
        self.next.finish()
    }

    fn barrier(&mut self, snapshot: &mut TaskSnapshot) -> Result<()> {
        if self.config.on_barrier == OnBarrier::Drain {
            while self.in_flight > 0 {
                self.receive(WAIT)?;
            }
            self.emit_ready()?;
        }
        let unanswered = self.unanswered();
        if !unanswered.is_empty() {
            let state = serde_json::to_value(&unanswered).map_err(|e| {
                Error::user(format!(
                    "async operator `{}`: its inputs cannot be written to the checkpoint: {e}",
                    self.operator
                ))
            })?;
            snapshot
                .operators
                .push(operator_state(&self.operator, self.worker, state));
        }
        self.next.barrier(snapshot)
    }
}

impl<F: AsyncFunction> Push<F::In> for AsyncNode<F>
where
    F::In: Clone,
{
    fn push(&mut self, batch: Vec<F::In>) -> Result<()> {
        let start = Instant::now();
        self.metrics.record_in(batch.len());
        self.poll()?;
        // In order, an answer from `prepare` must not overtake inputs still waiting.
        let rest = if self.config.ordered && !self.queue.is_empty() {
            batch
        } else {
            // Room for every input answered at once (as a full table does), so that the
            // batch is not moved as it grows.
            let mut now = Vec::with_capacity(batch.len());
            let rest = self.f.prepare(batch, &mut Collector::new(&mut now))?;
            self.flush(&mut now)?;
            rest
        };
        if !rest.is_empty() {
            self.add_group(rest, 1)?;
        }
        self.emit_ready()?;
        self.metrics.add_busy(start.elapsed());
        Ok(())
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
