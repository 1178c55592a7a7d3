//! Waiting for a context: the [`Done`] and [`Run`] futures, their owned
//! forms [`DoneOwned`] and [`RunOwned`], and the blocking wait for plain
//! threads.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Instant;

use crate::context::Ctx;
use crate::custom::Subscription;
use crate::error::Error;
use crate::tree::{Entry, Source};

/// The future returned by [`Ctx::done`]: completes with the context's
/// error once it is done.
///
/// It registers its waker with the context only when polled while the
/// context is live, and unregisters on drop. Polling after completion
/// returns the same error again. [`DoneOwned`] is the same future holding
/// its own handle of the context, for `tokio::spawn` and other `'static`
/// places.
#[must_use = "futures do nothing unless polled"]
pub struct Done<'a> {
    ctx: &'a Ctx,
    waiter: Waiter,
}

/// The future returned by [`Ctx::done_owned`]: [`Done`] holding a clone of
/// the context instead of a borrow, so it is `'static` (and `Send`, `Sync`,
/// `Unpin`) and can be moved into a spawned task. Tokio-util:
/// `CancellationToken::cancelled_owned`.
///
/// It behaves exactly like [`Done`] (the two share their polling code):
/// it registers its waker only when polled while the context is live,
/// unregisters on drop, and returns the same error again if polled after
/// completion. While it exists it keeps the context alive, like any other
/// handle.
#[must_use = "futures do nothing unless polled"]
pub struct DoneOwned {
    ctx: Ctx,
    waiter: Waiter,
}

/// The registration logic shared by [`Done`] and [`DoneOwned`]: each holds
/// one and passes its context to every call. Owned by one future, so no
/// field needs a lock: `&mut self` guards them all.
struct Waiter {
    /// Where the waker is registered; changes on each poll that registers
    /// (a new or changed waker) and on drop.
    registration: Registration,
    /// Set once `poll` returned `Ready` (for `FusedFuture`); never unset.
    finished: bool,
}

/// Where this future's waker is registered.
enum Registration {
    None,
    /// In the registry of the context's cancel node, at this slot, with a
    /// copy of the waker stored there (so a re-poll with the same waker
    /// needs no lock).
    Slot(usize, Waker),
    /// With a custom context; the waker is kept to notice a changed one.
    Custom(Subscription, Waker),
}

// Unwind safe for the reasons given at `Ctx`'s impls: a `Done` holds a
// registration that goctx keeps consistent across panics. `Run` follows
// from it and its future.
impl std::panic::UnwindSafe for Done<'_> {}
impl std::panic::RefUnwindSafe for Done<'_> {}

impl<'a> Done<'a> {
    #[inline]
    pub(crate) fn new(ctx: &'a Ctx) -> Self {
        Done {
            ctx,
            waiter: Waiter::new(),
        }
    }
}

impl DoneOwned {
    #[inline]
    pub(crate) fn new(ctx: Ctx) -> Self {
        DoneOwned {
            ctx,
            waiter: Waiter::new(),
        }
    }
}

impl Future for Done<'_> {
    type Output = Error;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Error> {
        let this = self.get_mut();
        this.waiter.poll(this.ctx, cx)
    }
}

impl Future for DoneOwned {
    type Output = Error;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Error> {
        let this = self.get_mut();
        this.waiter.poll(&this.ctx, cx)
    }
}

impl futures_core::FusedFuture for Done<'_> {
    /// True once the future returned `Ready`, so `futures::select!` skips
    /// it. Polling it again anyway returns the same error.
    fn is_terminated(&self) -> bool {
        self.waiter.finished
    }
}

impl futures_core::FusedFuture for DoneOwned {
    /// True once the future returned `Ready`, so `futures::select!` skips
    /// it. Polling it again anyway returns the same error.
    fn is_terminated(&self) -> bool {
        self.waiter.finished
    }
}

impl Waiter {
    #[inline]
    const fn new() -> Self {
        Waiter {
            registration: Registration::None,
            finished: false,
        }
    }

    /// Polls for `ctx` being done. `ctx` must be the same context on every
    /// call (each owner passes the one it holds).
    #[inline]
    fn poll(&mut self, ctx: &Ctx, cx: &mut TaskContext<'_>) -> Poll<Error> {
        let result = self.poll_ctx(ctx, cx);
        self.finished |= result.is_ready();
        result
    }

    #[inline]
    fn poll_ctx(&mut self, ctx: &Ctx, cx: &mut TaskContext<'_>) -> Poll<Error> {
        let this = self;
        match ctx.source() {
            Source::Never => Poll::Pending,
            Source::Node(node) => {
                // Fast path: one Acquire load.
                if let Some(err) = node.err() {
                    return Poll::Ready(err);
                }
                // Polled again with the waker we registered: it is still in
                // the registry (only we remove it, and a cancel drains it
                // only after making `err()` report, which we just checked),
                // so the cancel will wake it. Nothing to do, no lock.
                if let Registration::Slot(_, registered) = &this.registration
                    && registered.will_wake(cx.waker())
                {
                    return Poll::Pending;
                }
                // Check and register under the node's lock, so a cancel
                // cannot slip between the two (tree invariant 2).
                let mut slot = match this.registration {
                    Registration::Slot(slot, _) => Some(slot),
                    _ => None,
                };
                let result = node.poll_register(&mut slot, cx.waker());
                this.registration = match slot {
                    Some(slot) => Registration::Slot(slot, cx.waker().clone()),
                    None => Registration::None,
                };
                match result {
                    Some(err) => Poll::Ready(err),
                    None => Poll::Pending,
                }
            }
            Source::Custom(custom) => {
                if let Some(err) = custom.err() {
                    return Poll::Ready(err);
                }
                if let Registration::Custom(_, waker) = &this.registration
                    && waker.will_wake(cx.waker())
                {
                    return Poll::Pending;
                }
                if let Registration::Custom(old, _) =
                    std::mem::replace(&mut this.registration, Registration::None)
                {
                    let _ = old.cancel();
                }
                let waker = cx.waker().clone();
                let subscription = custom.subscribe(Entry::Waker(waker.clone()));
                this.registration = Registration::Custom(subscription, waker);
                // The context may have ended between the first check and
                // the subscription; its notification then woke us already,
                // but answering now saves a round trip.
                match custom.err() {
                    Some(err) => Poll::Ready(err),
                    None => Poll::Pending,
                }
            }
        }
    }

    /// Removes the registration, if any (on drop of the owner). `ctx` is
    /// the context every `poll` was given.
    #[inline]
    fn release(&mut self, ctx: &Ctx) {
        match std::mem::replace(&mut self.registration, Registration::None) {
            Registration::None => {}
            Registration::Slot(slot, _) => {
                if let Source::Node(node) = ctx.source() {
                    node.deregister(slot);
                }
            }
            Registration::Custom(subscription, _) => {
                let _ = subscription.cancel();
            }
        }
    }
}

impl Drop for Done<'_> {
    #[inline]
    fn drop(&mut self) {
        self.waiter.release(self.ctx);
    }
}

impl Drop for DoneOwned {
    #[inline]
    fn drop(&mut self) {
        // Before the field `ctx` drops: it may be the context's last handle,
        // and the slot must leave the registry while the node still exists.
        self.waiter.release(&self.ctx);
    }
}

impl fmt::Debug for Done<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Done")
            .field("err", &self.ctx.err())
            .finish()
    }
}

impl fmt::Debug for DoneOwned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DoneOwned")
            .field("err", &self.ctx.err())
            .finish()
    }
}

pin_project_lite::pin_project! {
    /// The future returned by [`Ctx::run`]: the wrapped future's output, or
    /// the context's error if the context is done first.
    #[must_use = "futures do nothing unless polled"]
    pub struct Run<'a, F> {
        done: Done<'a>,
        #[pin]
        future: F,
    }
}

pin_project_lite::pin_project! {
    /// The future returned by [`Ctx::run_owned`]: [`Run`] holding a clone of
    /// the context instead of a borrow, so it is `'static` when `F` is (and
    /// `Send` when `F` is). Tokio-util:
    /// `CancellationToken::run_until_cancelled_owned`.
    #[must_use = "futures do nothing unless polled"]
    pub struct RunOwned<F> {
        done: DoneOwned,
        #[pin]
        future: F,
    }
}

impl<'a, F> Run<'a, F> {
    pub(crate) fn new(ctx: &'a Ctx, future: F) -> Self {
        Run {
            done: Done::new(ctx),
            future,
        }
    }
}

impl<F> RunOwned<F> {
    pub(crate) fn new(ctx: Ctx, future: F) -> Self {
        RunOwned {
            done: DoneOwned::new(ctx),
            future,
        }
    }
}

/// One poll of a `Run` or `RunOwned`: the context first, so a done context
/// never polls the future again.
#[inline]
fn poll_run<D, F>(
    done: Pin<&mut D>,
    future: Pin<&mut F>,
    cx: &mut TaskContext<'_>,
) -> Poll<Result<F::Output, Error>>
where
    D: Future<Output = Error>,
    F: Future,
{
    if let Poll::Ready(err) = done.poll(cx) {
        return Poll::Ready(Err(err));
    }
    future.poll(cx).map(Ok)
}

impl<F: Future> Future for Run<'_, F> {
    type Output = Result<F::Output, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        poll_run(Pin::new(this.done), this.future, cx)
    }
}

impl<F: Future> Future for RunOwned<F> {
    type Output = Result<F::Output, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        poll_run(Pin::new(this.done), this.future, cx)
    }
}

impl<F> fmt::Debug for Run<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("err", &self.done.ctx.err())
            .finish_non_exhaustive()
    }
}

impl<F> fmt::Debug for RunOwned<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunOwned")
            .field("err", &self.done.ctx.err())
            .finish_non_exhaustive()
    }
}

/// Wakes a thread parked in `block_until`.
struct Unparker(Thread);

impl Wake for Unparker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Parks the current thread until `ctx` is done or `until` passes.
/// Spurious unparks are harmless: the loop polls again.
pub(crate) fn block_until(ctx: &Ctx, until: Option<Instant>) -> Option<Error> {
    if let Some(err) = ctx.err() {
        return Some(err);
    }
    let waker = Waker::from(Arc::new(Unparker(thread::current())));
    let mut cx = TaskContext::from_waker(&waker);
    let mut done = Done::new(ctx);
    loop {
        if let Poll::Ready(err) = Pin::new(&mut done).poll(&mut cx) {
            return Some(err);
        }
        match until {
            None => thread::park(),
            Some(until) => {
                let now = Instant::now();
                if now >= until {
                    return ctx.err();
                }
                thread::park_timeout(until - now);
            }
        }
    }
}
