//! The receiving side of exchanges: merges the channels from every upstream worker, and
//! turns their watermarks into one (the minimum over inputs that are neither idle nor
//! finished; it never goes back).

use super::channel::Rx;
use super::{Control, Message};
use crate::{Error, Result, Timestamp, MIN_WATERMARK};
use crossbeam_channel::{Select, TryRecvError};
use std::collections::VecDeque;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
struct Input {
    watermark: Timestamp,
    idle: bool,
    ended: bool,
    /// Delivered the barrier being aligned: not read until alignment completes.
    blocked: bool,
}

/// Facade name: time from a stage input's first barrier of a checkpoint to its last.
pub(crate) const ALIGNMENT_SECONDS: &str = "ferroflow_checkpoint_alignment_seconds";

pub(crate) struct InputGate<T> {
    inputs: Vec<Rx<T>>,
    state: Vec<Input>,
    live: usize,
    combined: Timestamp,
    reported_idle: bool,
    next: usize,
    ready: VecDeque<Message<T>>,
    aligning: Option<u64>,
    /// When the first input of the checkpoint being aligned delivered its barrier.
    aligning_since: Option<std::time::Instant>,
}

impl<T> InputGate<T> {
    pub(crate) fn new(inputs: Vec<Rx<T>>) -> Self {
        let state = vec![
            Input {
                watermark: MIN_WATERMARK,
                idle: false,
                ended: false,
                blocked: false,
            };
            inputs.len()
        ];
        Self {
            live: inputs.len(),
            inputs,
            state,
            combined: MIN_WATERMARK,
            reported_idle: false,
            next: 0,
            ready: VecDeque::new(),
            aligning: None,
            aligning_since: None,
        }
    }

    /// The next message for the task, waiting at most `timeout` for one (`None`: nothing
    /// came). Watermarks are the combined watermark, a barrier comes once it has arrived
    /// on every live input, and `End` once every input ended.
    pub(crate) fn poll(&mut self, timeout: Duration) -> Result<Option<Message<T>>> {
        loop {
            if let Some(msg) = self.ready.pop_front() {
                return Ok(Some(msg));
            }
            if self.live == 0 {
                return Ok(Some(Message::Control(Control::End)));
            }
            let (i, msg) = match self.try_next()? {
                Some(found) => found,
                None => match self.wait(timeout)? {
                    Some(found) => found,
                    None => return Ok(None),
                },
            };
            self.handle(i, msg);
        }
    }

    fn try_next(&mut self) -> Result<Option<(usize, Message<T>)>> {
        let n = self.inputs.len();
        for j in 0..n {
            let i = (self.next + j) % n;
            if self.state[i].ended || self.state[i].blocked {
                continue;
            }
            match self.inputs[i].try_recv() {
                Ok(msg) => {
                    self.next = (i + 1) % n;
                    return Ok(Some((i, msg)));
                }
                Err(TryRecvError::Empty) => {}
                // The upstream task went away without `End`: it failed or was cancelled.
                Err(TryRecvError::Disconnected) => return Err(Error::Cancelled),
            }
        }
        Ok(None)
    }

    fn wait(&mut self, timeout: Duration) -> Result<Option<(usize, Message<T>)>> {
        let mut select = Select::new();
        let mut index = Vec::with_capacity(self.live);
        for (i, rx) in self.inputs.iter().enumerate() {
            if !self.state[i].ended && !self.state[i].blocked {
                rx.select(&mut select);
                index.push(i);
            }
        }
        match select.select_timeout(timeout) {
            Ok(op) => {
                let i = index[op.index()];
                match self.inputs[i].recv_selected(op) {
                    Ok(msg) => Ok(Some((i, msg))),
                    Err(_) => Err(Error::Cancelled),
                }
            }
            Err(_) => Ok(None),
        }
    }

    fn handle(&mut self, i: usize, msg: Message<T>) {
        match msg {
            Message::Data(batch) => {
                if self.state[i].idle {
                    self.state[i].idle = false;
                    self.reported_idle = false;
                }
                self.ready.push_back(Message::Data(batch));
            }
            Message::Control(Control::Watermark(w)) => {
                let s = &mut self.state[i];
                s.watermark = s.watermark.max(w);
                s.idle = false;
                self.reported_idle = false;
                self.advance();
            }
            Message::Control(Control::Idle) => {
                self.state[i].idle = true;
                self.advance();
            }
            Message::Control(Control::Barrier(id)) => {
                if self.aligning.is_some_and(|a| a != id) {
                    tracing::warn!(aligning = ?self.aligning, barrier = id, "Barrier of another checkpoint while aligning.");
                }
                self.aligning = Some(self.aligning.map_or(id, |a| a.max(id)));
                self.aligning_since
                    .get_or_insert_with(std::time::Instant::now);
                self.state[i].blocked = true;
                self.check_aligned();
            }
            Message::Control(Control::End) => {
                self.state[i].ended = true;
                self.state[i].blocked = false;
                self.live -= 1;
                // An ended input has nothing more before any barrier: it counts as aligned.
                self.check_aligned();
                if self.live == 0 {
                    self.ready.push_back(Message::Control(Control::End));
                } else {
                    self.advance();
                }
            }
            // Never sent across a channel.
            Message::Control(Control::Open | Control::Tick(_) | Control::CheckpointComplete(_)) => {
                tracing::warn!("A task-local control message arrived through a channel; ignored.");
            }
        }
    }

    /// Releases the barrier once every live input delivered it.
    fn check_aligned(&mut self) {
        let Some(id) = self.aligning else { return };
        if self.state.iter().all(|s| s.ended || s.blocked) {
            for s in &mut self.state {
                s.blocked = false;
            }
            self.aligning = None;
            if let Some(since) = self.aligning_since.take() {
                metrics::histogram!(ALIGNMENT_SECONDS).record(since.elapsed().as_secs_f64());
            }
            self.ready.push_back(Message::Control(Control::Barrier(id)));
        }
    }

    /// Queues the new combined watermark, if it moved. When every live input is idle, the
    /// watermark first advances to the largest among them (what they produced is
    /// complete), then `Idle` is reported once.
    fn advance(&mut self) {
        let live = self.state.iter().filter(|s| !s.ended);
        let active = live.clone().filter(|s| !s.idle).map(|s| s.watermark).min();
        let target = match active {
            Some(min) => min,
            None => live.map(|s| s.watermark).max().unwrap_or(MIN_WATERMARK),
        };
        if target > self.combined {
            self.combined = target;
            self.ready
                .push_back(Message::Control(Control::Watermark(target)));
        }
        if active.is_none() && !self.reported_idle {
            self.reported_idle = true;
            self.ready.push_back(Message::Control(Control::Idle));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::channel::{channel, Tx};

    /// A sending end that never finds its channel full in these tests.
    struct Sender(Tx<u32>);

    impl Sender {
        fn send(&self, msg: Message<u32>) -> std::result::Result<(), ()> {
            self.0.try_send(msg).map_err(|_| ())
        }
    }

    fn gate(n: usize) -> (Vec<Sender>, InputGate<u32>) {
        let (tx, rx): (Vec<_>, Vec<_>) = (0..n).map(|_| channel(16)).unzip();
        (tx.into_iter().map(Sender).collect(), InputGate::new(rx))
    }

    /// What the gate gave, as one flat enum for the assertions.
    #[derive(Debug)]
    enum GateEvent<T> {
        Data(Vec<T>),
        Watermark(Timestamp),
        Idle,
        Barrier(u64),
        End,
        Timeout,
    }

    fn next(g: &mut InputGate<u32>) -> GateEvent<u32> {
        match g.poll(Duration::from_millis(1)).unwrap() {
            None => GateEvent::Timeout,
            Some(Message::Data(b)) => GateEvent::Data(b),
            Some(Message::Control(Control::Watermark(w))) => GateEvent::Watermark(w),
            Some(Message::Control(Control::Idle)) => GateEvent::Idle,
            Some(Message::Control(Control::Barrier(id))) => GateEvent::Barrier(id),
            Some(Message::Control(Control::End)) => GateEvent::End,
            Some(Message::Control(c)) => panic!("a task-local message out of a gate: {c:?}"),
        }
    }

    /// A control message as an upstream task sends it.
    fn c(control: Control) -> Message<u32> {
        Message::Control(control)
    }

    #[test]
    fn watermark_is_minimum_of_inputs() {
        let (tx, mut g) = gate(2);
        tx[0].send(c(Control::Watermark(10))).unwrap();
        assert!(
            matches!(next(&mut g), GateEvent::Timeout),
            "input 1 still at MIN"
        );
        tx[1].send(c(Control::Watermark(5))).unwrap();
        assert!(matches!(next(&mut g), GateEvent::Watermark(5)));
        tx[1].send(c(Control::Watermark(20))).unwrap();
        assert!(matches!(next(&mut g), GateEvent::Watermark(10)));
    }

    #[test]
    fn idle_inputs_are_excluded_and_all_idle_is_reported() {
        let (tx, mut g) = gate(2);
        tx[0].send(c(Control::Watermark(10))).unwrap();
        tx[1].send(c(Control::Idle)).unwrap();
        assert!(matches!(next(&mut g), GateEvent::Watermark(10)));
        tx[0].send(c(Control::Idle)).unwrap();
        assert!(matches!(next(&mut g), GateEvent::Idle));
        // Back from idle with an older watermark: the combined one does not go back.
        tx[1].send(c(Control::Watermark(3))).unwrap();
        assert!(matches!(next(&mut g), GateEvent::Timeout));
        tx[1].send(c(Control::Watermark(12))).unwrap();
        assert!(matches!(next(&mut g), GateEvent::Watermark(12)));
    }

    #[test]
    fn all_idle_advances_to_the_largest_watermark_whatever_the_order() {
        for first_quiet in [0, 1] {
            let (tx, mut g) = gate(2);
            tx[0].send(c(Control::Watermark(100))).unwrap();
            tx[1].send(c(Control::Watermark(5000))).unwrap();
            assert!(matches!(next(&mut g), GateEvent::Watermark(100)));
            tx[first_quiet].send(c(Control::Idle)).unwrap();
            tx[1 - first_quiet].send(c(Control::Idle)).unwrap();
            let mut events = Vec::new();
            while let e @ (GateEvent::Watermark(_) | GateEvent::Idle) = next(&mut g) {
                events.push(format!("{e:?}"));
            }
            assert_eq!(
                events.last().map(String::as_str),
                Some("Idle"),
                "{events:?}"
            );
            assert!(
                events.contains(&"Watermark(5000)".to_string()),
                "{events:?}"
            );
        }
    }

    #[test]
    fn barriers_align_blocking_inputs_that_delivered_them() {
        let (tx, mut g) = gate(2);
        tx[0].send(Message::Data(vec![1])).unwrap();
        tx[0].send(c(Control::Barrier(7))).unwrap();
        tx[0].send(Message::Data(vec![2])).unwrap(); // after the barrier: must wait
        tx[1].send(Message::Data(vec![10])).unwrap();
        let mut seen = Vec::new();
        loop {
            match next(&mut g) {
                GateEvent::Data(b) => seen.extend(b),
                GateEvent::Timeout => break,
                e => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(seen, vec![1, 10], "input 0 is blocked after its barrier");
        tx[1].send(Message::Data(vec![11])).unwrap();
        tx[1].send(c(Control::Barrier(7))).unwrap();
        assert!(matches!(next(&mut g), GateEvent::Data(b) if b == vec![11]));
        assert!(matches!(next(&mut g), GateEvent::Barrier(7)));
        assert!(matches!(next(&mut g), GateEvent::Data(b) if b == vec![2]));
    }

    #[test]
    fn an_ended_input_counts_as_aligned() {
        let (tx, mut g) = gate(2);
        tx[0].send(c(Control::Barrier(3))).unwrap();
        assert!(matches!(next(&mut g), GateEvent::Timeout));
        tx[1].send(c(Control::End)).unwrap();
        assert!(matches!(next(&mut g), GateEvent::Barrier(3)));
    }

    #[test]
    fn end_after_all_inputs_end_and_disconnect_is_cancellation() {
        let (tx, mut g) = gate(2);
        tx[0].send(Message::Data(vec![1])).unwrap();
        tx[0].send(c(Control::End)).unwrap();
        assert!(matches!(next(&mut g), GateEvent::Data(_)));
        tx[1].send(c(Control::Watermark(7))).unwrap();
        assert!(matches!(next(&mut g), GateEvent::Watermark(7)));
        tx[1].send(c(Control::End)).unwrap();
        assert!(matches!(next(&mut g), GateEvent::End));

        let (tx, mut g) = gate(1);
        drop(tx);
        assert!(matches!(
            g.poll(Duration::from_millis(1)),
            Err(Error::Cancelled)
        ));
    }
}
