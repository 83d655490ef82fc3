//! Test utilities: a scripted source whose splits follow a script (records, quiet spells,
//! failures), and a small keyed counter.

pub use crate::harness::KeyedHarness;
use crate::SplitPosition;
use crate::{
    Collector, Error, KeyedContext, KeyedProcessFunction, OpenContext, Result, Source, SplitReader,
    SplitStatus,
};
use ferroflow_state::{StateKey, ValueState};
use std::marker::PhantomData;
use std::time::{Duration, Instant};

/// One step of a split's script.
#[derive(Debug, Clone)]
pub enum Step<T> {
    /// Emit these records (over as many polls as the batch size needs).
    Emit(Vec<T>),
    /// Report [`SplitStatus::Idle`] for this long.
    Idle(Duration),
    /// Report idle until the job stops.
    IdleForever,
    /// Fail with this message.
    Fail(String),
    /// Panic with this message (to test that panics stop the job cleanly).
    Panic(String),
}

/// A source whose splits each follow a script, then finish.
#[derive(Debug, Clone)]
pub struct ScriptedSource<T> {
    splits: Vec<Vec<Step<T>>>,
}

impl<T: Clone + Send + 'static> ScriptedSource<T> {
    /// A source with one split per script.
    pub fn new(splits: Vec<Vec<Step<T>>>) -> Self {
        Self { splits }
    }
}

impl<T: Clone + Send + 'static> Source for ScriptedSource<T> {
    type Item = T;

    fn name(&self) -> String {
        "scripted".into()
    }

    fn create_splits(&mut self, _parallelism: usize) -> Result<Vec<Box<dyn SplitReader<T>>>> {
        Ok(self
            .splits
            .iter()
            .enumerate()
            .map(|(i, steps)| {
                Box::new(ScriptedReader {
                    id: i,
                    steps: steps.clone().into_iter().rev().collect(),
                    pending: Vec::new(),
                    idle_until: None,
                    emitted: 0,
                    skip: 0,
                }) as Box<dyn SplitReader<T>>
            })
            .collect())
    }
}

struct ScriptedReader<T> {
    id: usize,
    /// Remaining steps, last first.
    steps: Vec<Step<T>>,
    pending: Vec<T>,
    idle_until: Option<Instant>,
    /// Records returned so far (the split's position).
    emitted: u64,
    /// Records still to drop after a `seek`.
    skip: u64,
}

impl<T: Send> SplitReader<T> for ScriptedReader<T> {
    fn split_id(&self) -> String {
        format!("scripted-{}", self.id)
    }

    fn poll(&mut self, max: usize, out: &mut Vec<T>) -> Result<SplitStatus> {
        loop {
            if self.skip > 0 && !self.pending.is_empty() {
                let n = (self.skip as usize).min(self.pending.len());
                self.pending.drain(..n);
                self.skip -= n as u64;
                continue;
            }
            if !self.pending.is_empty() {
                let n = max.min(self.pending.len());
                out.extend(self.pending.drain(..n));
                self.emitted += n as u64;
                return Ok(SplitStatus::More);
            }
            if let Some(until) = self.idle_until {
                if Instant::now() < until {
                    return Ok(SplitStatus::Idle);
                }
                self.idle_until = None;
            }
            match self.steps.pop() {
                None => return Ok(SplitStatus::Finished),
                Some(Step::Emit(records)) => self.pending = records,
                Some(Step::Idle(_)) if self.skip > 0 => {}
                Some(Step::Idle(d)) => self.idle_until = Some(Instant::now() + d),
                Some(Step::IdleForever) => {
                    self.steps.push(Step::IdleForever);
                    return Ok(SplitStatus::Idle);
                }
                Some(Step::Fail(msg)) => return Err(Error::user(msg)),
                // Deliberate: this step exists to test how the runtime contains panics.
                #[allow(clippy::panic)]
                Some(Step::Panic(msg)) => std::panic::panic_any(msg),
            }
        }
    }

    fn position(&self) -> Option<SplitPosition> {
        Some(serde_json::json!({ "emitted": self.emitted }))
    }

    fn seek(&mut self, position: &SplitPosition) -> Result<()> {
        let emitted = position["emitted"]
            .as_u64()
            .ok_or_else(|| Error::Checkpoint(format!("bad scripted position {position}")))?;
        self.restore_to(emitted);
        Ok(())
    }
}

impl<T> ScriptedReader<T> {
    fn restore_to(&mut self, emitted: u64) {
        self.skip = emitted;
        self.emitted = emitted;
    }
}

/// Emits `(key, running count)` for every record.
#[derive(Debug)]
pub struct CountPerKey<K, T> {
    count: Option<ValueState<u64>>,
    _types: PhantomData<fn() -> (K, T)>,
}

impl<K, T> Default for CountPerKey<K, T> {
    fn default() -> Self {
        Self {
            count: None,
            _types: PhantomData,
        }
    }
}

impl<K, T> Clone for CountPerKey<K, T> {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl<K: StateKey, T: Send + 'static> KeyedProcessFunction for CountPerKey<K, T> {
    type Key = K;
    type In = T;
    type Out = (K, u64);

    fn open(&mut self, ctx: &mut OpenContext<'_, K>) -> Result<()> {
        self.count = Some(ctx.value_state("count")?);
        Ok(())
    }

    fn process(
        &mut self,
        _record: T,
        ctx: &mut KeyedContext<'_, K>,
        out: &mut Collector<'_, (K, u64)>,
    ) -> Result<()> {
        let state = self
            .count
            .ok_or_else(|| Error::Internal("CountPerKey used before open".into()))?;
        let n = state.get_or_insert_with(ctx, || 0)?;
        *n += 1;
        let n = *n;
        out.collect((ctx.key().clone(), n));
        Ok(())
    }
}
