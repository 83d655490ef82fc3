//! The receiving side of exchanges: merges the channels from every upstream worker, and
//! turns their watermarks into one (the minimum over inputs that are neither idle nor
//! finished; it never goes back).

use super::exchange::Message;
use crate::{Error, Result, Timestamp, MIN_WATERMARK};
use crossbeam_channel::{Receiver, Select, TryRecvError};
use std::time::Duration;

/// What the gate hands to the task.
#[derive(Debug)]
pub(crate) enum GateEvent<T> {
    Data(Vec<T>),
    Watermark(Timestamp),
    Idle,
    End,
    Timeout,
}

#[derive(Debug, Clone, Copy)]
struct Input {
    watermark: Timestamp,
    idle: bool,
    ended: bool,
}

pub(crate) struct InputGate<T> {
    inputs: Vec<Receiver<Message<T>>>,
    state: Vec<Input>,
    live: usize,
    combined: Timestamp,
    reported_idle: bool,
    next: usize,
}

impl<T> InputGate<T> {
    pub(crate) fn new(inputs: Vec<Receiver<Message<T>>>) -> Self {
        let state = vec![
            Input {
                watermark: MIN_WATERMARK,
                idle: false,
                ended: false,
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
        }
    }

    /// The next event, waiting at most `timeout` for one.
    pub(crate) fn poll(&mut self, timeout: Duration) -> Result<GateEvent<T>> {
        loop {
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
            if let Some(event) = self.handle(i, msg) {
                return Ok(event);
            }
        }
    }

    fn try_next(&mut self) -> Result<Option<(usize, Message<T>)>> {
        let n = self.inputs.len();
        for j in 0..n {
            let i = (self.next + j) % n;
            if self.state[i].ended {
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
            if !self.state[i].ended {
                select.recv(rx);
                index.push(i);
            }
        }
        match select.select_timeout(timeout) {
            Ok(op) => {
                let i = index[op.index()];
                match op.recv(&self.inputs[i]) {
                    Ok(msg) => Ok(Some((i, msg))),
                    Err(_) => Err(Error::Cancelled),
                }
            }
            Err(_) => Ok(None),
        }
    }

    fn handle(&mut self, i: usize, msg: Message<T>) -> Option<GateEvent<T>> {
        match msg {
            Message::Data(batch) => {
                if self.state[i].idle {
                    self.state[i].idle = false;
                    self.reported_idle = false;
                }
                Some(GateEvent::Data(batch))
            }
            Message::Watermark(w) => {
                let s = &mut self.state[i];
                s.watermark = s.watermark.max(w);
                s.idle = false;
                self.reported_idle = false;
                self.advance()
            }
            Message::Idle => {
                self.state[i].idle = true;
                self.advance()
            }
            Message::End => {
                self.state[i].ended = true;
                self.live -= 1;
                if self.live == 0 {
                    return Some(GateEvent::End);
                }
                self.advance()
            }
        }
    }

    /// The new combined watermark, if it moved, or `Idle` if every live input is idle.
    fn advance(&mut self) -> Option<GateEvent<T>> {
        let active = self.state.iter().filter(|s| !s.ended && !s.idle);
        match active.map(|s| s.watermark).min() {
            None => {
                if self.reported_idle {
                    None
                } else {
                    self.reported_idle = true;
                    Some(GateEvent::Idle)
                }
            }
            Some(min) if min > self.combined => {
                self.combined = min;
                Some(GateEvent::Watermark(min))
            }
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::bounded;

    fn gate(n: usize) -> (Vec<crossbeam_channel::Sender<Message<u32>>>, InputGate<u32>) {
        let (tx, rx): (Vec<_>, Vec<_>) = (0..n).map(|_| bounded(16)).unzip();
        (tx, InputGate::new(rx))
    }

    fn next(g: &mut InputGate<u32>) -> GateEvent<u32> {
        g.poll(Duration::from_millis(1)).unwrap()
    }

    #[test]
    fn watermark_is_minimum_of_inputs() {
        let (tx, mut g) = gate(2);
        tx[0].send(Message::Watermark(10)).unwrap();
        assert!(matches!(next(&mut g), GateEvent::Timeout), "input 1 still at MIN");
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
        assert!(matches!(g.poll(Duration::from_millis(1)), Err(Error::Cancelled)));
    }
}
