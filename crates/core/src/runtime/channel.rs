//! The bounded channels of exchanges, with backpressure that wakes a blocked sender once
//! per half channel rather than once per batch.
//!
//! When a producer outpaces its consumer, the channel between them stays full. A plain
//! blocking send then parks the producer, and every batch the consumer takes wakes it to
//! put in one more: a context switch on the producer's core and a wake-up call on the
//! consumer's for every batch, work that does nothing for the job. Here a sender that
//! finds its channel full parks until the receiver has taken it down to half its
//! capacity, then fills it again without stopping: one wake-up for every half channel of
//! batches. The consumer never waits for it, since half a channel of batches is still
//! queued when the sender is woken.

use super::Message;
use crossbeam_channel::{Receiver, Select, SelectedOperation, Sender, TryRecvError, TrySendError};
use parking_lot::Mutex;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::Thread;
use std::time::Duration;

/// What the two ends of one channel share: whether the sender waits for room, and its
/// thread.
#[derive(Debug, Default)]
struct Room {
    waiting: AtomicBool,
    sender: Mutex<Option<Thread>>,
    /// Times the receiver woke the sender.
    wakes: AtomicU64,
}

/// The sending end of an exchange channel.
#[derive(Debug)]
pub(crate) struct Tx<T> {
    chan: Sender<Message<T>>,
    room: Arc<Room>,
}

/// The receiving end of an exchange channel.
#[derive(Debug)]
pub(crate) struct Rx<T> {
    chan: Receiver<Message<T>>,
    room: Arc<Room>,
    /// The sender is woken once no more than this many messages are queued.
    low: usize,
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
    let capacity = capacity.max(1);
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    let room = Arc::new(Room::default());
    (
        Tx {
            chan: tx,
            room: Arc::clone(&room),
        },
        Rx {
            chan: rx,
            room,
            low: capacity / 2,
        },
    )
}

impl<T> Tx<T> {
    /// Sends `msg` if there is room now; gives it back otherwise.
    pub(crate) fn try_send(&self, msg: Message<T>) -> Result<(), TrySendError<Message<T>>> {
        self.chan.try_send(msg)
    }

    /// Sends `msg`, waiting while the channel is full: parked until the receiver has
    /// taken the channel down to half, or for at most `poll` at a time, after which
    /// `stop` is asked whether to give up.
    pub(crate) fn send_waiting(
        &self,
        mut msg: Message<T>,
        poll: Duration,
        stop: impl Fn() -> bool,
    ) -> Result<(), SendError> {
        {
            // The thread to wake: this one (a sending end may move between threads).
            let me = std::thread::current();
            let mut sender = self.room.sender.lock();
            if sender.as_ref().map(Thread::id) != Some(me.id()) {
                *sender = Some(me);
            }
        }
        loop {
            // Announced before the attempt: a receiver that takes the channel down to
            // half after a failed attempt sees it and wakes this thread. The fences
            // here and in `received` order each side's write before its read of the
            // other's, so one of the two always sees the other's.
            self.room.waiting.store(true, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            match self.chan.try_send(msg) {
                Ok(()) => {
                    self.room.waiting.store(false, Ordering::Relaxed);
                    return Ok(());
                }
                Err(TrySendError::Full(m)) => msg = m,
                Err(TrySendError::Disconnected(_)) => return Err(SendError::Disconnected),
            }
            if stop() {
                self.room.waiting.store(false, Ordering::Relaxed);
                return Err(SendError::Stopped);
            }
            std::thread::park_timeout(poll);
        }
    }
}

impl<T> Rx<T> {
    /// The next message if one is queued.
    pub(crate) fn try_recv(&self) -> Result<Message<T>, TryRecvError> {
        let msg = self.chan.try_recv()?;
        self.received();
        Ok(msg)
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
        let msg = op.recv(&self.chan)?;
        self.received();
        Ok(msg)
    }

    /// After a message was taken: wakes a waiting sender once the channel is down to
    /// half. A fence and the load of one flag while no sender waits.
    #[inline]
    fn received(&self) {
        fence(Ordering::SeqCst);
        if self.room.waiting.load(Ordering::Relaxed)
            && self.chan.len() <= self.low
            && self.room.waiting.swap(false, Ordering::SeqCst)
        {
            self.room.wakes.fetch_add(1, Ordering::Relaxed);
            if let Some(sender) = self.room.sender.lock().as_ref() {
                sender.unpark();
            }
        }
    }

    /// Times this end woke its sender.
    #[cfg(test)]
    fn wakes(&self) -> u64 {
        self.room.wakes.load(Ordering::Relaxed)
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
    /// that takes its time; and a sender blocked on a full channel is woken once per
    /// half channel at most, not once per message.
    #[test]
    fn a_blocked_sender_is_woken_once_per_half_channel() {
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
            // A wake needs the sender to have found the channel full since the last
            // one: at least `capacity - low` sends apart.
            let per_wake = (capacity - capacity / 2) as u64;
            assert!(
                rx.wakes() <= n / per_wake + 1,
                "capacity {capacity}: {} wakes for {n} messages",
                rx.wakes()
            );
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
