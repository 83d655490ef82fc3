//! Task loops. A task is one worker's instance of one chain: it pulls input (from source
//! splits or from an input gate), pushes it through the chain, and ends when its input
//! ends, the job stops, or anything fails.

use super::control::JobControl;
use super::gate::InputGate;
use super::{Control, ControlCalls, Message, Next};
use crate::checkpoint::coordinator::CheckpointHub;
use crate::checkpoint::SplitPositionEntry;
use crate::metrics::OperatorMetrics;
use crate::watermark::{SplitWatermark, WatermarkStrategy};
use crate::{Error, Result, SplitPosition, SplitReader, SplitStatus, MAX_WATERMARK, MIN_WATERMARK};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Interval between `tick` calls while input flows.
const TICK: Duration = Duration::from_millis(1);
/// Longest wait for input before ticking anyway.
const WAIT: Duration = Duration::from_millis(10);

/// A runnable task.
pub(crate) trait Task: Send {
    fn name(&self) -> &str;
    fn run(&mut self, control: &JobControl) -> Result<()>;
}

/// Runs a task to its end and reports a failure (or panic) to the job.
pub(crate) fn run_task(mut task: Box<dyn Task>, control: &JobControl) {
    let name = task.name().to_string();
    tracing::debug!(task = %name, "Task started.");
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task.run(control)));
    match outcome {
        Ok(Ok(())) => tracing::debug!(task = %name, "Task finished."),
        Ok(Err(e)) => control.fail(&name, e),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            control.fail(&name, Error::Panic { message });
        }
    }
}

/// A task's part in checkpointing.
pub(crate) struct TaskCheckpoint {
    hub: Arc<CheckpointHub>,
    task: usize,
    last_barrier: u64,
    last_completed: u64,
}

impl TaskCheckpoint {
    pub(crate) fn new(hub: Arc<CheckpointHub>, task: usize) -> Self {
        let (last_barrier, last_completed) = (hub.requested(), hub.completed());
        Self {
            hub,
            task,
            last_barrier,
            last_completed,
        }
    }

    /// Tells the chain about a newly completed checkpoint, and returns its number.
    fn notify<T>(&mut self, chain: &mut Next<T>) -> Result<Option<u64>> {
        let done = self.hub.completed();
        if done > self.last_completed {
            self.last_completed = done;
            chain.checkpoint_complete(done)?;
            return Ok(Some(done));
        }
        Ok(None)
    }

    /// Passes barrier `id` through the chain and acknowledges it with what the chain
    /// snapshotted plus `positions`.
    fn barrier<T>(
        &mut self,
        id: u64,
        positions: Vec<SplitPositionEntry>,
        chain: &mut Next<T>,
    ) -> Result<()> {
        self.last_barrier = id;
        let mut snapshot = self.hub.new_snapshot(id);
        snapshot.positions = positions;
        chain.barrier(&mut snapshot)?;
        self.hub.ack(self.task, snapshot);
        Ok(())
    }
}

/// Settings a source task needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SourceSettings {
    pub(crate) batch_size: usize,
    pub(crate) watermark_interval: Duration,
    pub(crate) idle_sleep: Duration,
}

struct Split<T> {
    reader: Box<dyn SplitReader<T>>,
    watermark: SplitWatermark,
    finished: bool,
    /// Positions recorded at barriers whose checkpoints have not completed yet.
    pending: std::collections::VecDeque<(u64, SplitPosition)>,
}

impl<T> Split<T> {
    fn new(reader: Box<dyn SplitReader<T>>, now: Instant) -> Self {
        Self {
            reader,
            watermark: SplitWatermark::new(now),
            finished: false,
            pending: std::collections::VecDeque::new(),
        }
    }

    /// Checkpoint `done` completed: hands the reader the newest position recorded at or
    /// before it, and forgets the older ones.
    fn completed(&mut self, done: u64) -> Result<()> {
        let mut last = None;
        while self.pending.front().is_some_and(|(id, _)| *id <= done) {
            last = self.pending.pop_front();
        }
        match last {
            Some((id, position)) => self.reader.checkpoint_complete(id, &position),
            None => Ok(()),
        }
    }
}

/// Reads the splits assigned to one worker and drives the chain behind them.
pub(crate) struct SourceTask<T> {
    name: String,
    operator: String,
    splits: Vec<Split<T>>,
    strategy: WatermarkStrategy<T>,
    chain: Next<T>,
    settings: SourceSettings,
    metrics: Arc<OperatorMetrics>,
    checkpoint: Option<TaskCheckpoint>,
}

impl<T: Send + 'static> SourceTask<T> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: String,
        operator: String,
        readers: Vec<Box<dyn SplitReader<T>>>,
        strategy: WatermarkStrategy<T>,
        chain: Next<T>,
        settings: SourceSettings,
        metrics: Arc<OperatorMetrics>,
        checkpoint: Option<TaskCheckpoint>,
    ) -> Self {
        let now = Instant::now();
        let splits = readers
            .into_iter()
            .map(|reader| Split::new(reader, now))
            .collect();
        Self {
            name,
            operator,
            splits,
            strategy,
            chain,
            settings,
            metrics,
            checkpoint,
        }
    }

    /// Emits a barrier if a checkpoint was requested, and passes on completions. Returns
    /// true when the barrier was a stop-with-savepoint's: the source must end now.
    fn checkpointing(&mut self) -> Result<bool> {
        let Some(c) = &mut self.checkpoint else {
            return Ok(false);
        };
        if let Some(done) = c.notify(&mut self.chain)? {
            for split in &mut self.splits {
                split.completed(done)?;
            }
        }
        let requested = c.hub.requested();
        if requested <= c.last_barrier {
            return Ok(false);
        }
        let positions = split_positions(&self.operator, &self.splits)?;
        for (split, entry) in self.splits.iter_mut().zip(&positions) {
            split.pending.push_back((requested, entry.position.clone()));
        }
        c.barrier(requested, positions, &mut self.chain)?;
        Ok(c.hub.stops_after(requested))
    }

    /// Ends the chain and tells the coordinator this source's final positions.
    fn finish(&mut self) -> Result<()> {
        self.chain.finish()?;
        if let Some(c) = &self.checkpoint {
            c.hub
                .finished(c.task, Some(split_positions(&self.operator, &self.splits)?));
        }
        Ok(())
    }

    fn close_splits(&mut self) -> Result<()> {
        for s in self.splits.iter_mut().filter(|s| !s.finished) {
            s.finished = true;
            s.reader.close()?;
        }
        Ok(())
    }

    /// Reads one batch from every unfinished split; returns the number of records read.
    fn read_round(&mut self, now: Instant) -> Result<usize> {
        let mut total = 0;
        for split in self.splits.iter_mut().filter(|s| !s.finished) {
            let mut batch = Vec::with_capacity(self.settings.batch_size);
            let start = Instant::now();
            let status = split.reader.poll(self.settings.batch_size, &mut batch)?;
            self.metrics.add_busy(start.elapsed());
            match status {
                SplitStatus::Finished => {
                    split.finished = true;
                    split.reader.close()?;
                }
                SplitStatus::Idle | SplitStatus::More if batch.is_empty() => {
                    split.watermark.check_idle(&self.strategy, now);
                }
                _ => {}
            }
            if !batch.is_empty() {
                total += batch.len();
                split.watermark.observe(&self.strategy, &batch, now);
                self.metrics.record_out(batch.len());
                self.chain.push(batch)?;
            }
        }
        self.discover(now)?;
        Ok(total)
    }

    /// Adds the splits that readers discovered, opened.
    fn discover(&mut self, now: Instant) -> Result<()> {
        let mut found = Vec::new();
        for split in self.splits.iter_mut().filter(|s| !s.finished) {
            found.extend(split.reader.discover()?);
        }
        for mut reader in found {
            tracing::info!(task = %self.name, split = %reader.split_id(), "New split discovered.");
            reader.open()?;
            self.splits.push(Split::new(reader, now));
        }
        Ok(())
    }

    /// The task's watermark: `Some(min)` over active splits, `None` if all are idle.
    fn current_watermark(&self) -> Option<crate::Timestamp> {
        self.splits
            .iter()
            .filter(|s| !s.finished && !s.watermark.idle && s.reader.holds_watermark())
            .map(|s| s.watermark.current(&self.strategy))
            .min()
    }

    /// The largest watermark among unfinished splits (all of them idle).
    fn idle_watermark(&self) -> crate::Timestamp {
        self.splits
            .iter()
            .filter(|s| !s.finished && s.reader.holds_watermark())
            .map(|s| s.watermark.current(&self.strategy))
            .max()
            .unwrap_or(MIN_WATERMARK)
    }
}

/// The position of every split of `operator`, finished or not.
fn split_positions<T>(operator: &str, splits: &[Split<T>]) -> Result<Vec<SplitPositionEntry>> {
    splits
        .iter()
        .map(|s| {
            let split = s.reader.split_id();
            let position = s.reader.position().ok_or_else(|| {
                Error::Config(format!(
                    "split `{split}` of source `{operator}` cannot report a position: \
                     checkpoints need replayable sources"
                ))
            })?;
            Ok(SplitPositionEntry {
                operator: operator.to_string(),
                split,
                position,
            })
        })
        .collect()
}

impl<T: Send + 'static> Task for SourceTask<T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&mut self, control: &JobControl) -> Result<()> {
        for s in &mut self.splits {
            s.reader.open()?;
        }
        self.chain.open()?;
        let mut emitted = MIN_WATERMARK;
        let mut last_emit = Instant::now();
        let mut last_tick = last_emit;
        let mut reported_idle = false;
        loop {
            if control.is_cancelled() {
                return Err(Error::Cancelled);
            }
            if control.is_stopping() {
                // Graceful stop: no final watermark, so event-time results stay open.
                tracing::info!(task = %self.name, "Stop requested; draining.");
                self.close_splits()?;
                return self.finish();
            }
            if self.checkpointing()? {
                tracing::info!(task = %self.name, "Stopping after the savepoint barrier.");
                self.close_splits()?;
                return self.finish();
            }
            let now = Instant::now();
            let read = self.read_round(now)?;
            if self.splits.iter().all(|s| s.finished) {
                if emitted < MAX_WATERMARK {
                    self.chain.watermark(MAX_WATERMARK)?;
                }
                return self.finish();
            }
            match self.current_watermark() {
                Some(w) => {
                    let due = now.duration_since(last_emit) >= self.settings.watermark_interval;
                    if w > emitted && (due || reported_idle) {
                        self.chain.watermark(w)?;
                        self.metrics.set_watermark(w, true);
                        emitted = w;
                        last_emit = now;
                    }
                    reported_idle = false;
                }
                None if !reported_idle => {
                    // Every split is idle: what they did produce is complete, so event
                    // time advances to the largest of their watermarks before going idle
                    // (otherwise the order in which splits fell quiet would decide).
                    let w = self.idle_watermark();
                    if w > emitted {
                        self.chain.watermark(w)?;
                        self.metrics.set_watermark(w, true);
                        emitted = w;
                        last_emit = now;
                    }
                    self.chain.idle()?;
                    reported_idle = true;
                }
                None => {}
            }
            if read == 0 {
                self.chain.tick(now)?;
                last_tick = now;
                let sleeping = Instant::now();
                std::thread::sleep(self.settings.idle_sleep);
                self.metrics.add_idle(sleeping.elapsed());
            } else if now.duration_since(last_tick) >= TICK {
                self.chain.tick(now)?;
                last_tick = now;
            }
        }
    }
}

/// Drives a chain from an input gate.
pub(crate) struct ChannelTask<T> {
    name: String,
    gate: InputGate<T>,
    chain: Next<T>,
    checkpoint: Option<TaskCheckpoint>,
    /// The stage input's metrics: time waiting for input, the input watermark.
    metrics: Arc<OperatorMetrics>,
}

impl<T: Send + 'static> ChannelTask<T> {
    pub(crate) fn new(
        name: String,
        gate: InputGate<T>,
        chain: Next<T>,
        checkpoint: Option<TaskCheckpoint>,
        metrics: Arc<OperatorMetrics>,
    ) -> Self {
        Self {
            name,
            gate,
            chain,
            checkpoint,
            metrics,
        }
    }
}

impl<T: Send + 'static> Task for ChannelTask<T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&mut self, control: &JobControl) -> Result<()> {
        self.chain.open()?;
        let mut last_tick = Instant::now();
        loop {
            if control.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let waiting = Instant::now();
            let next = self.gate.poll(WAIT)?;
            if next.is_none() {
                self.metrics.add_idle(waiting.elapsed());
            }
            match next {
                None => {}
                Some(Message::Data(batch)) => self.chain.push(batch)?,
                Some(Message::Control(Control::Barrier(id))) => {
                    if let Some(c) = &mut self.checkpoint {
                        c.barrier(id, Vec::new(), &mut self.chain)?;
                    }
                }
                Some(Message::Control(Control::End)) => {
                    self.chain.finish()?;
                    if let Some(c) = &self.checkpoint {
                        c.hub.finished(c.task, None);
                    }
                    return Ok(());
                }
                Some(Message::Control(Control::Watermark(w))) => {
                    self.metrics.set_watermark(w, false);
                    self.chain.control(Control::Watermark(w), None)?;
                }
                // Idleness goes down the chain as it is.
                Some(Message::Control(control)) => self.chain.control(control, None)?,
            }
            if let Some(c) = &mut self.checkpoint {
                c.notify(&mut self.chain)?;
            }
            let now = Instant::now();
            if now.duration_since(last_tick) >= TICK {
                self.chain.tick(now)?;
                last_tick = now;
            }
        }
    }
}
