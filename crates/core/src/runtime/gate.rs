//! The receiving side of exchanges: merges the channels from every upstream worker, and
//! turns their watermarks into one (the minimum over inputs that are neither idle nor
//! finished; it never goes back).

use super::channel::Rx;
use super::exchange::Message;
use crate::{Error, Result, Timestamp, MIN_WATERMARK};
use crossbeam_channel::{Select, TryRecvError};
use std::collections::VecDeque;
use std::time::Duration;

/// What the gate hands to the task.
#[derive(Debug)]
pub(crate) enum GateEvent<T> {
    Data(Vec<T>),
    Watermark(Timestamp),
    Idle,
    /// Checkpoint barrier `n`, delivered once it has arrived on every live input.
    Barrier(u64),
    End,
    Timeout,
}

#[derive(Debug, Clone, Copy)]
struct Input {
    watermark: Timestamp,
    idle: bool,
    ended: bool,
    /// Delivered the barrier being aligned: not read until alignment completes.
    blocked: bool,
}

pub(crate) struct InputGate<T> {
    inputs: Vec<Rx<T>>,
    state: Vec<Input>,
    live: usize,
    combined: Timestamp,
    reported_idle: bool,
    next: usize,
    ready: VecDeque<GateEvent<T>>,
    aligning: Option<u64>,
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
        }
    }

    /// The next event, waiting at most `timeout` for one.
    pub(crate) fn poll(&mut self, timeout: Duration) -> Result<GateEvent<T>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(event);
            }
            if self.live == 0 {
                return Ok(GateEvent::End);
            }
            let (i, msg) = match self.try_next()? {
                Some(found) => found,
                None => match self.wait(timeout)? {
                    Some(found) => found,
                    None => return Ok(GateEvent::Timeout),
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
                self.ready.push_back(GateEvent::Data(batch));
            }
            Message::Watermark(w) => {
                let s = &mut self.state[i];
                s.watermark = s.watermark.max(w);
                s.idle = false;
                self.reported_idle = false;
                self.advance();
            }
            Message::Idle => {
                self.state[i].idle = true;
                self.advance();
            }
            Message::Barrier(id) => {
                if self.aligning.is_some_and(|a| a != id) {
                    tracing::warn!(aligning = ?self.aligning, barrier = id, "Barrier of another checkpoint while aligning.");
                }
                self.aligning = Some(self.aligning.map_or(id, |a| a.max(id)));
                self.state[i].blocked = true;
                self.check_aligned();
            }
            Message::End => {
                self.state[i].ended = true;
                self.state[i].blocked = false;
                self.live -= 1;
                // An ended input has nothing more before any barrier: it counts as aligned.
                self.check_aligned();
                if self.live == 0 {
                    self.ready.push_back(GateEvent::End);
                } else {
                    self.advance();
                }
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
            self.ready.push_back(GateEvent::Barrier(id));
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
            self.ready.push_back(GateEvent::Watermark(target));
        }
        if active.is_none() && !self.reported_idle {
            self.reported_idle = true;
            self.ready.push_back(GateEvent::Idle);
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

    fn next(g: &mut InputGate<u32>) -> GateEvent<u32> {
        g.poll(Duration::from_millis(1)).unwrap()
    }

    #[test]
    fn watermark_is_minimum_of_inputs() {
        let (tx, mut g) = gate(2);
        tx[0].send(Message::Watermark(10)).unwrap();
        assert!(
            matches!(next(&mut g), GateEvent::Timeout),
            "input 1 still at MIN"
        );
        tx[1].send(Message::Watermark(5)).unwrap();
        assert!(matches!(next(&mut g), GateEvent::Watermark(5)));
        tx[1].send(Message::Watermark(20)).unwrap();
        assert!(matches!(next(&mut g), GateEvent::Watermark(10)));
    }

    #[test]
    fn idle_inputs_are_excluded_and_all_idle_is_reported() {
        let (tx, mut g) = gate(2);
        tx[0].send(Message::Watermark(10)).unwrap();
        tx[1].send(Message::Idle).unwrap();
        assert!(matches!(next(&mut g), GateEvent::Watermark(10)));
        tx[0].send(Message::Idle).unwrap();
        assert!(matches!(next(&mut g), GateEvent::Idle));
        // Back from idle with an older watermark: the combined one does not go back.
        tx[1].send(Message::Watermark(3)).unwrap();
        assert!(matches!(next(&mut g), GateEvent::Timeout));
        tx[1].send(Message::Watermark(12)).unwrap();
        assert!(matches!(next(&mut g), GateEvent::Watermark(12)));
    }

    #[test]
    fn all_idle_advances_to_the_largest_watermark_whatever_the_order() {
        for first_quiet in [0, 1] {
            let (tx, mut g) = gate(2);
            tx[0].send(Message::Watermark(100)).unwrap();
            tx[1].send(Message::Watermark(5000)).unwrap();
            assert!(matches!(next(&mut g), GateEvent::Watermark(100)));
            tx[first_quiet].send(Message::Idle).unwrap();
            tx[1 - first_quiet].send(Message::Idle).unwrap();
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
        tx[0].send(Message::Barrier(7)).unwrap();
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
        tx[1].send(Message::Barrier(7)).unwrap();
        assert!(matches!(next(&mut g), GateEvent::Data(b) if b == vec![11]));
        assert!(matches!(next(&mut g), GateEvent::Barrier(7)));
        assert!(matches!(next(&mut g), GateEvent::Data(b) if b == vec![2]));
    }

    #[test]
    fn an_ended_input_counts_as_aligned() {
        let (tx, mut g) = gate(2);
        tx[0].send(Message::Barrier(3)).unwrap();
        assert!(matches!(next(&mut g), GateEvent::Timeout));
        tx[1].send(Message::End).unwrap();
        assert!(matches!(next(&mut g), GateEvent::Barrier(3)));
    }

    #[test]
    fn end_after_all_inputs_end_and_disconnect_is_cancellation() {
        let (tx, mut g) = gate(2);
        tx[0].send(Message::Data(vec![1])).unwrap();
        tx[0].send(Message::End).unwrap();
        assert!(matches!(next(&mut g), GateEvent::Data(_)));
        tx[1].send(Message::Watermark(7)).unwrap();
        assert!(matches!(next(&mut g), GateEvent::Watermark(7)));
        tx[1].send(Message::End).unwrap();
        assert!(matches!(next(&mut g), GateEvent::End));

        let (tx, mut g) = gate(1);
        drop(tx);
        assert!(matches!(
            g.poll(Duration::from_millis(1)),
            Err(Error::Cancelled)
        ));
    }
}
