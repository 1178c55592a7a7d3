//! `Ctx::done_owned` and `Ctx::run_owned`: the `'static` forms of `done()`
//! and `run()`, for `tokio::spawn` and other places that need to own the
//! future.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::Duration;

use futures::future::FusedFuture;
use goctx::future::{DoneOwned, RunOwned};
use goctx::{Ctx, Error};

/// Generous bound on every wait: a correct run takes microseconds.
const LIMIT: Duration = Duration::from_secs(10);

/// Counts its wake-ups.
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<CountingWaker>, Waker) {
    let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
    (counter.clone(), Waker::from(counter))
}

fn poll<F: Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(future).poll(&mut TaskContext::from_waker(waker))
}

#[test]
fn owned_futures_are_static_send_and_unpin() {
    fn assert_spawnable<T: Send + Sync + Unpin + 'static>() {}
    fn assert_send_static<T: Send + 'static>() {}
    assert_spawnable::<DoneOwned>();
    assert_send_static::<RunOwned<std::future::Ready<u8>>>();
    // `Send` follows the wrapped future.
    assert_send_static::<RunOwned<tokio::time::Sleep>>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawned_worker_ends_on_cancel() {
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    // The worker loops on real work until the context is done.
    let worker_ctx = ctx.clone();
    let worker = tokio::spawn(async move {
        let mut rounds = 0u64;
        let mut done = worker_ctx.done_owned();
        loop {
            tokio::select! {
                err = &mut done => return (err, rounds),
                () = tokio::task::yield_now() => rounds += 1,
            }
        }
    });
    let waiter = tokio::spawn(ctx.done_owned());
    cancel.cancel();
    let (err, _rounds) = tokio::time::timeout(LIMIT, worker)
        .await
        .expect("worker ended")
        .expect("worker did not panic");
    assert_eq!(err, Error::Canceled);
    let err = tokio::time::timeout(LIMIT, waiter)
        .await
        .expect("waiter ended");
    assert_eq!(err.expect("waiter did not panic"), Error::Canceled);
    assert_eq!(ctx.dependents(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn a_spawned_run_owned_returns_the_output_or_the_error() {
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    let quick = tokio::spawn(ctx.run_owned(async { 7 }));
    assert_eq!(quick.await.expect("no panic"), Ok(7));

    let slow = tokio::spawn(ctx.run_owned(tokio::time::sleep(Duration::from_secs(3600))));
    tokio::task::yield_now().await; // let it register
    assert_eq!(ctx.dependents(), 1);
    cancel.cancel();
    let got = tokio::time::timeout(LIMIT, slow).await.expect("ended");
    assert_eq!(got.expect("no panic"), Err(Error::Canceled));
    assert_eq!(ctx.dependents(), 0);
}

#[test]
fn done_owned_registers_once_and_is_woken_once() {
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    let (woken, waker) = counting_waker();
    let mut done = ctx.done_owned();
    assert!(!done.is_terminated());
    assert_eq!(poll(&mut done, &waker), Poll::Pending);
    assert_eq!(poll(&mut done, &waker), Poll::Pending);
    assert_eq!(
        ctx.dependents(),
        1,
        "a re-poll with the same waker re-registers nothing"
    );

    // A different waker replaces the registration; the old one is not woken.
    let (old, old_waker) = (woken, waker);
    let (woken, waker) = counting_waker();
    assert_eq!(poll(&mut done, &waker), Poll::Pending);
    assert_eq!(ctx.dependents(), 1);

    cancel.cancel();
    assert_eq!(woken.0.load(Ordering::SeqCst), 1);
    assert_eq!(old.0.load(Ordering::SeqCst), 0);
    drop(old_waker);
    assert_eq!(poll(&mut done, &waker), Poll::Ready(Error::Canceled));
    assert!(done.is_terminated());
    // Fused: polling again answers the same.
    assert_eq!(poll(&mut done, &waker), Poll::Ready(Error::Canceled));
    assert_eq!(woken.0.load(Ordering::SeqCst), 1);
}

#[test]
fn dropping_a_pending_done_owned_unregisters() {
    let (ctx, _cancel) = goctx::with_cancel(&goctx::background());
    let mut done = ctx.done_owned();
    assert_eq!(poll(&mut done, Waker::noop()), Poll::Pending);
    assert_eq!(ctx.dependents(), 1);
    drop(done);
    assert_eq!(ctx.dependents(), 0);

    // The same through a user context: its subscription is taken back.
    let wrapped = Ctx::from_context(common::Wrapper(ctx.clone()));
    let mut done = wrapped.done_owned();
    assert_eq!(poll(&mut done, Waker::noop()), Poll::Pending);
    assert_eq!(ctx.dependents(), 1);
    drop(done);
    assert_eq!(ctx.dependents(), 0);
}

#[test]
fn done_owned_keeps_its_context_alive() {
    let (parent, cancel_parent) = goctx::with_cancel(&goctx::background());
    let (child, cancel_child) = goctx::with_cancel(&parent);
    cancel_child.detach();
    let (woken, waker) = counting_waker();
    let mut done = child.done_owned();
    assert_eq!(poll(&mut done, &waker), Poll::Pending);
    // Every other handle of the child is gone; the future still holds one,
    // so the child stays in its parent and hears the parent's cancel.
    drop(child);
    assert_eq!(parent.dependents(), 1);
    cancel_parent.cancel();
    assert_eq!(woken.0.load(Ordering::SeqCst), 1);
    assert_eq!(poll(&mut done, &waker), Poll::Ready(Error::Canceled));
    drop(done);
    assert_eq!(parent.dependents(), 0);
}

#[test]
fn run_owned_does_not_poll_the_future_once_done() {
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    cancel.cancel();
    let polled = Arc::new(AtomicUsize::new(0));
    let counter = polled.clone();
    let mut run = Box::pin(ctx.run_owned(std::future::poll_fn(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(1)
    })));
    let got = run
        .as_mut()
        .poll(&mut TaskContext::from_waker(Waker::noop()));
    assert_eq!(got, Poll::Ready(Err(Error::Canceled)));
    assert_eq!(polled.load(Ordering::SeqCst), 0);
}

#[test]
fn owned_futures_on_a_never_done_context_stay_pending_unregistered() {
    let root = goctx::background();
    let mut done = root.done_owned();
    assert_eq!(poll(&mut done, Waker::noop()), Poll::Pending);
    assert!(!done.is_terminated());
    assert_eq!(root.dependents(), 0);
}

#[test]
fn debug_shows_state() {
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    let done = ctx.done_owned();
    let run = ctx.run_owned(async { 1 });
    assert_eq!(format!("{done:?}"), "DoneOwned { err: None }");
    assert_eq!(format!("{run:?}"), "RunOwned { err: None, .. }");
    cancel.cancel();
    assert_eq!(format!("{done:?}"), "DoneOwned { err: Some(Canceled) }");
}
