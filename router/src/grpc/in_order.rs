//! How a bidirectional stream's messages are answered: in their order, up to
//! `--grpc-max-parallel-stream-requests` at once (as TEI's `buffered`), and the next message is
//! read only once the one before holds its room under `--max-concurrent-requests` (or has
//! failed). So a stream keeps at most one message waiting for room: while the server is full it
//! stops reading, and HTTP/2's flow control holds the rest at the client, where TEI would take
//! up to the parallel bound of messages (4 MiB each at most) into memory per stream.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::FuturesOrdered;
use futures_util::{Stream, StreamExt};
use tokio::sync::oneshot;

use crate::infer::Room;

/// The answers of `start(message, room)` for each message of `messages`, in their order.
pub(crate) struct InOrder<S, St, F: Future> {
    /// `None` once the client has sent its last message.
    messages: Option<S>,
    start: St,
    in_flight: FuturesOrdered<F>,
    /// Resolves when the last message read holds its room (its sender dropped).
    waiting: Option<oneshot::Receiver<()>>,
    parallel: usize,
}

impl<S, St, F> InOrder<S, St, F>
where
    S: Stream + Unpin,
    St: FnMut(S::Item, Room) -> F + Unpin,
    F: Future,
{
    pub(crate) fn new(messages: S, parallel: usize, start: St) -> Self {
        Self {
            messages: Some(messages),
            start,
            in_flight: FuturesOrdered::new(),
            waiting: None,
            parallel: parallel.max(1),
        }
    }

    /// Whether the message read last has its room (or no longer needs it).
    fn room_taken(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(waiting) = &mut self.waiting else {
            return true;
        };
        if Pin::new(waiting).poll(cx).is_pending() {
            return false;
        }
        self.waiting = None;
        true
    }

    /// Reads and starts messages while the bounds allow.
    fn read(&mut self, cx: &mut Context<'_>) {
        while self.in_flight.len() < self.parallel && self.room_taken(cx) {
            let Some(messages) = &mut self.messages else {
                return;
            };
            match messages.poll_next_unpin(cx) {
                Poll::Ready(Some(message)) => {
                    let (taken, waiting) = oneshot::channel();
                    self.in_flight.push_back((self.start)(message, Room::Wait(taken)));
                    self.waiting = Some(waiting);
                }
                Poll::Ready(None) => self.messages = None,
                Poll::Pending => return,
            }
        }
    }
}

impl<S, St, F> Stream for InOrder<S, St, F>
where
    S: Stream + Unpin,
    St: FnMut(S::Item, Room) -> F + Unpin,
    F: Future,
    F::Output: Unpin,
{
    type Item = F::Output;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        let this = self.get_mut();
        this.read(cx);
        match this.in_flight.poll_next_unpin(cx) {
            Poll::Ready(Some(answer)) => Poll::Ready(Some(answer)),
            // Nothing in flight: `read` left a waker on the messages, or they ended.
            Poll::Ready(None) if this.messages.is_none() => Poll::Ready(None),
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::sync::{mpsc, Semaphore};
    use tokio_stream::wrappers::UnboundedReceiverStream;

    use super::*;

    /// A message source that counts what was read from it.
    fn source(n: usize, read: Arc<AtomicUsize>) -> impl Stream<Item = usize> + Unpin {
        futures_util::stream::iter(0..n).inspect(move |_| {
            read.fetch_add(1, Ordering::SeqCst);
        })
    }

    fn poll_once<S: Stream + Unpin>(answers: &mut S) -> Poll<Option<S::Item>> {
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        answers.poll_next_unpin(&mut cx)
    }

    #[tokio::test]
    async fn answers_in_order_with_at_most_parallel_in_flight() {
        let read = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (r, m) = (running.clone(), most.clone());
        let answers: Vec<usize> = InOrder::new(source(20, read.clone()), 3, move |i, room| {
            drop(room);
            let (r, m) = (r.clone(), m.clone());
            async move {
                m.fetch_max(r.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                // Later messages finish first: the order is still the messages'.
                tokio::time::sleep(std::time::Duration::from_millis(20 - i as u64)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                i
            }
        })
        .collect()
        .await;
        assert_eq!(answers, (0..20).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), 3, "the parallel bound is reached and kept");
        assert_eq!(read.load(Ordering::SeqCst), 20);
    }

    #[tokio::test]
    async fn reads_the_next_message_only_once_the_one_before_has_room() {
        let read = Arc::new(AtomicUsize::new(0));
        // Room for nothing until the test adds it.
        let room = Arc::new(Semaphore::new(0));
        let held = room.clone();
        let mut answers = InOrder::new(source(5, read.clone()), 8, move |i, taken| {
            let room = held.clone();
            async move {
                // Each message keeps its room, as one still running would.
                room.acquire().await.expect("open").forget();
                drop(taken);
                i
            }
        });
        for _ in 0..3 {
            assert!(poll_once(&mut answers).is_pending());
        }
        assert_eq!(
            read.load(Ordering::SeqCst),
            1,
            "one message waits for room, the rest stay unread"
        );
        room.add_permits(1);
        assert_eq!(poll_once(&mut answers), Poll::Ready(Some(0)));
        assert!(poll_once(&mut answers).is_pending());
        assert_eq!(
            read.load(Ordering::SeqCst),
            2,
            "message 0 took its room: message 1 is read and waits"
        );
        room.add_permits(10);
        let rest: Vec<usize> = answers.collect().await;
        assert_eq!(rest, vec![1, 2, 3, 4]);
        assert_eq!(read.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_message_that_fails_before_its_room_lets_the_next_be_read() {
        let read = Arc::new(AtomicUsize::new(0));
        // The room is never taken: dropping it unread (a refused message) must not stall the stream.
        let answers: Vec<usize> = InOrder::new(source(4, read.clone()), 1, |i, room| {
            drop(room);
            async move { i }
        })
        .collect()
        .await;
        assert_eq!(answers, vec![0, 1, 2, 3]);
    }

    #[tokio::test]
    async fn waits_for_a_client_that_has_not_sent_yet_and_ends_when_it_closes() {
        let (send, receive) = mpsc::unbounded_channel();
        let mut answers = InOrder::new(UnboundedReceiverStream::new(receive), 4, |i: usize, room| {
            drop(room);
            async move { i * 10 }
        });
        send.send(1).expect("open");
        assert_eq!(answers.next().await, Some(10));
        let next = tokio::spawn(async move { (answers.next().await, answers.next().await) });
        tokio::task::yield_now().await;
        send.send(2).expect("open");
        drop(send);
        assert_eq!(next.await.expect("ran"), (Some(20), None));
    }
}
