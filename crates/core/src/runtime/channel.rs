//! The bounded channels of exchanges: crossbeam's, with a send that waits while the
//! channel is full (backpressure) and gives up when the job stops.

use super::Message;
use crossbeam_channel::{
    Receiver, Select, SelectedOperation, SendTimeoutError, Sender, TryRecvError, TrySendError,
};
use std::time::Duration;

/// The sending end of an exchange channel.
#[derive(Debug)]
pub(crate) struct Tx<T> {
    chan: Sender<Message<T>>,
}

/// The receiving end of an exchange channel.
#[derive(Debug)]
pub(crate) struct Rx<T> {
    chan: Receiver<Message<T>>,
}

/// Why a send did not go through.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SendError {
    /// The receiving end is gone.
    Disconnected,
    /// `stop` asked to give up.
    Stopped,
}

/// A channel holding at most `capacity` (at least 1) messages.
pub(crate) fn channel<T>(capacity: usize) -> (Tx<T>, Rx<T>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    (Tx { chan: tx }, Rx { chan: rx })
}

impl<T> Tx<T> {
    /// Sends `msg` if there is room now; gives it back otherwise.
    pub(crate) fn try_send(&self, msg: Message<T>) -> Result<(), TrySendError<Message<T>>> {
        self.chan.try_send(msg)
    }

    /// Sends `msg`, blocking while the channel is full, for at most `poll` at a time,
    /// after which `stop` is asked whether to give up.
    pub(crate) fn send_waiting(
        &self,
        mut msg: Message<T>,
        poll: Duration,
        stop: impl Fn() -> bool,
    ) -> Result<(), SendError> {
        loop {
            match self.chan.send_timeout(msg, poll) {
                Ok(()) => return Ok(()),
                Err(SendTimeoutError::Disconnected(_)) => return Err(SendError::Disconnected),
                Err(SendTimeoutError::Timeout(m)) => msg = m,
            }
            if stop() {
                return Err(SendError::Stopped);
            }
        }
    }
}

impl<T> Rx<T> {
    /// The next message if one is queued.
    pub(crate) fn try_recv(&self) -> Result<Message<T>, TryRecvError> {
        self.chan.try_recv()
    }

    /// Adds this channel to `select` (see [`Rx::recv_selected`]).
    pub(crate) fn select<'a>(&'a self, select: &mut Select<'a>) -> usize {
        select.recv(&self.chan)
    }

    /// Completes an operation `select` picked for this channel.
    pub(crate) fn recv_selected(
        &self,
        op: SelectedOperation<'_>,
    ) -> Result<Message<T>, crossbeam_channel::RecvError> {
        op.recv(&self.chan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const POLL: Duration = Duration::from_millis(20);

    fn data(msg: Message<u64>) -> Vec<u64> {
        match msg {
            Message::Data(v) => v,
            other => panic!("not data: {other:?}"),
        }
    }

    /// Every message arrives once and in order, whatever the capacity, with a receiver
    /// that takes its time, so that the sender keeps blocking on a full channel.
    #[test]
    fn a_blocked_sender_delivers_every_message_in_order() {
        for capacity in [1usize, 2, 3, 8] {
            let (tx, rx) = channel::<u64>(capacity);
            let n = 2_000u64;
            let sender = std::thread::spawn(move || {
                for i in 0..n {
                    let msg = Message::Data(vec![i]);
                    let msg = match tx.try_send(msg) {
                        Ok(()) => continue,
                        Err(TrySendError::Full(m)) => m,
                        Err(TrySendError::Disconnected(_)) => panic!("receiver gone"),
                    };
                    tx.send_waiting(msg, POLL, || false).unwrap();
                }
            });
            let mut got = Vec::new();
            while got.len() < n as usize {
                match rx.try_recv() {
                    Ok(msg) => got.extend(data(msg)),
                    Err(TryRecvError::Empty) => std::thread::yield_now(),
                    Err(TryRecvError::Disconnected) => break,
                }
                // Some work per message, so that the sender keeps finding it full.
                std::hint::black_box((0..200).sum::<u64>());
            }
            sender.join().unwrap();
            assert_eq!(got, (0..n).collect::<Vec<_>>(), "capacity {capacity}");
        }
    }

    /// A sender waiting on a full channel gives up when asked to, and reports a receiver
    /// that went away.
    #[test]
    fn a_waiting_sender_stops_and_sees_a_closed_channel() {
        let (tx, rx) = channel::<u64>(1);
        tx.try_send(Message::Data(vec![1])).unwrap();
        let start = Instant::now();
        let stopped = tx.send_waiting(Message::Data(vec![2]), Duration::from_millis(5), || {
            start.elapsed() > Duration::from_millis(30)
        });
        assert_eq!(stopped, Err(SendError::Stopped));
        drop(rx);
        assert_eq!(
            tx.send_waiting(Message::Data(vec![3]), POLL, || false),
            Err(SendError::Disconnected)
        );
    }
}
