//! `Ctx::stream` (issue 17): a stream that ends when its context does,
//! the shape of an SSE or WebSocket feed that a shutdown must end.

use std::future::poll_fn;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_core::{FusedStream, Stream};

/// Generous bound on every wait: a correct run takes milliseconds.
const LIMIT: Duration = Duration::from_secs(10);

/// A stream over a tokio channel, that records its polls and its drop.
struct Feed {
    rx: tokio::sync::mpsc::UnboundedReceiver<u32>,
    polls: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
}

impl Stream for Feed {
    type Item = u32;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u32>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        self.rx.poll_recv(cx)
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

fn feed() -> (
    tokio::sync::mpsc::UnboundedSender<u32>,
    Feed,
    Arc<AtomicUsize>,
    Arc<AtomicBool>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let polls = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicBool::new(false));
    let feed = Feed {
        rx,
        polls: polls.clone(),
        dropped: dropped.clone(),
    };
    (tx, feed, polls, dropped)
}

async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
}

#[tokio::test]
async fn items_flow_until_the_context_ends_and_a_waiting_reader_wakes() {
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    let (tx, feed, _polls, dropped) = feed();
    let mut events = Box::pin(ctx.stream(feed));
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    assert_eq!(next(&mut events).await, Some(1));
    assert_eq!(next(&mut events).await, Some(2));
    // A reader waiting on an idle feed is woken by the cancel, not by data.
    let reader = tokio::spawn(async move {
        let item = next(&mut events).await;
        (item, events.is_terminated())
    });
    tokio::task::yield_now().await;
    cancel.cancel();
    let (item, terminated) = tokio::time::timeout(LIMIT, reader)
        .await
        .expect("the reader woke")
        .unwrap();
    assert_eq!(item, None);
    assert!(terminated);
    assert!(
        dropped.load(Ordering::SeqCst),
        "the feed is dropped at the end"
    );
    drop(tx);
}

#[test]
fn a_done_context_takes_no_item_even_a_ready_one() {
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    cancel.cancel();
    let (tx, feed, polls, dropped) = feed();
    tx.send(7).unwrap();
    let mut events = pin!(ctx.stream(feed));
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(events.as_mut().poll_next(&mut cx), Poll::Ready(None));
    assert_eq!(polls.load(Ordering::SeqCst), 0, "the feed was never polled");
    assert!(dropped.load(Ordering::SeqCst));
    // Fused: stays ended.
    assert_eq!(events.as_mut().poll_next(&mut cx), Poll::Ready(None));
}

#[test]
fn the_inner_stream_ending_ends_it_too() {
    let (ctx, _cancel) = goctx::with_cancel(&goctx::background());
    let (tx, feed, _polls, dropped) = feed();
    tx.send(3).unwrap();
    drop(tx);
    let mut events = pin!(ctx.stream(feed));
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(events.as_mut().poll_next(&mut cx), Poll::Ready(Some(3)));
    assert_eq!(events.as_mut().poll_next(&mut cx), Poll::Ready(None));
    assert!(events.is_terminated());
    assert!(dropped.load(Ordering::SeqCst));
    assert_eq!(ctx.err(), None, "the context is not touched");
}
