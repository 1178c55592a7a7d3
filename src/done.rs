//! Waiting for a context: the [`Done`] and [`Run`] futures, their owned
//! forms [`DoneOwned`] and [`RunOwned`], and the blocking wait for plain
//! threads.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::context::Ctx;
use crate::error::Error;
use crate::tree::{Entry, Registration, Source};

/// Waiting for a context: Go's `<-ctx.Done()`, as futures and as blocking
/// calls.
impl Ctx {
    /// A future that completes, with the context's error, when the context
    /// is done. Go: `<-ctx.Done()`.
    ///
    /// On a context that can never be done (a root, or
    /// [`without_cancel`](crate::without_cancel)) it never completes.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes unregisters it; nothing is
    /// lost, and a new `done()` can be awaited later.
    ///
    /// # Examples
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    /// std::thread::spawn(move || cancel.cancel());
    /// assert_eq!(ctx.done().await, goctx::Error::Canceled);
    /// # });
    /// ```
    #[doc(alias = "Done")]
    #[doc(alias = "cancelled")]
    #[inline]
    pub fn done(&self) -> Done<'_> {
        Done::new(self)
    }

    /// Like [`done`](Ctx::done), but the future holds its own handle of the
    /// context instead of borrowing it, so it is `'static`, `Send` and
    /// `Unpin`: it can be moved into `tokio::spawn` or stored in a struct.
    /// Tokio-util: `CancellationToken::cancelled_owned`.
    ///
    /// Costs one handle clone (an atomic increment). Every call returns an
    /// independent future; any number may wait at once, from any thread.
    /// On a context that is already done the future completes on its first
    /// poll; on one that can never be done it never completes. The future
    /// keeps the context alive while it exists.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes unregisters it; nothing is
    /// lost, and a new one can be awaited later.
    ///
    /// # Examples
    ///
    /// A worker spawned on tokio that stops when its context is canceled:
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tokio::task::JoinError> {
    /// let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    /// let worker = tokio::spawn(ctx.done_owned()); // `ctx.done()` would borrow `ctx`
    /// cancel.cancel();
    /// assert_eq!(worker.await?, goctx::Error::Canceled);
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "Done")]
    #[doc(alias = "cancelled_owned")]
    #[inline]
    pub fn done_owned(&self) -> DoneOwned {
        DoneOwned::new(self.clone())
    }

    /// Blocks the current thread until the context is done and returns its
    /// error. For code without an async runtime.
    ///
    /// On a context that can never be done this blocks forever; use
    /// [`wait_timeout`](Ctx::wait_timeout) to bound it. Any number of
    /// threads may wait at once; a context that is already done returns at
    /// once.
    ///
    /// # Do not call it on an async runtime's thread
    ///
    /// A thread that drives async tasks (a tokio worker, the thread inside
    /// any `block_on`, a single-threaded executor) must not block: if the
    /// task that would cancel the context needs that thread, the wait never
    /// ends (on a current-thread runtime, it certainly never does). In async
    /// code, `ctx.done().await` instead; from async code that must block,
    /// wrap the wait in `tokio::task::spawn_blocking` (or `block_in_place`
    /// on a multi-thread runtime).
    ///
    /// # Panics
    ///
    /// With the `tokio` feature, if the calling thread is being polled by
    /// tokio as a task or as a `block_on` future, instead of hanging, as
    /// tokio's own blocking calls do. Never inside `spawn_blocking` or
    /// `block_in_place`, or on a plain thread. The check cannot see a
    /// future wrapped in `tokio::task::coop::unconstrained`, nor executors
    /// other than tokio's; there the call blocks as described above.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), Duration::from_millis(5));
    /// assert_eq!(ctx.wait(), goctx::Error::DeadlineExceeded);
    /// ```
    #[track_caller]
    pub fn wait(&self) -> Error {
        #[cfg(feature = "tokio")]
        crate::may_block::assert_may_block();
        block_until(self, None).unwrap_or(Error::Canceled)
    }

    /// Blocks the current thread until the context is done or `timeout`
    /// passed; returns the context's error, or `None` on timeout.
    ///
    /// A `timeout` too large to represent waits without a bound.
    ///
    /// Like [`wait`](Ctx::wait), it must not be called on a thread that
    /// drives async tasks: the timeout then bounds the hang, but the thread
    /// does no other work meanwhile, and on a current-thread runtime the
    /// context cannot be canceled by that runtime's tasks until it returns.
    ///
    /// # Panics
    ///
    /// With the `tokio` feature, in the same places as [`wait`](Ctx::wait),
    /// whatever `timeout` is.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let root = goctx::background();
    /// assert_eq!(root.wait_timeout(Duration::from_millis(1)), None);
    /// ```
    #[track_caller]
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Error> {
        #[cfg(feature = "tokio")]
        crate::may_block::assert_may_block();
        match Instant::now().checked_add(timeout) {
            Some(until) => block_until(self, Some(until)),
            None => Some(self.wait()),
        }
    }

    /// Runs `future` until it completes or the context is done, whichever
    /// comes first: `Ok` with the output, or `Err` with the context's error.
    ///
    /// If the context is already done, `future` is not polled at all. When
    /// both are ready in the same poll, the context wins.
    ///
    /// # Examples
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    /// assert_eq!(ctx.run(async { 7 }).await, Ok(7));
    /// cancel.cancel();
    /// assert_eq!(ctx.run(async { 7 }).await, Err(goctx::Error::Canceled));
    /// # });
    /// ```
    #[doc(alias = "run_until_cancelled")]
    #[doc(alias = "select")]
    pub fn run<F: Future>(&self, future: F) -> Run<'_, F> {
        Run::new(self, future)
    }

    /// Like [`run`](Ctx::run), but the future holds its own handle of the
    /// context instead of borrowing it, so it is `'static` when `future`
    /// is, and `Send` when `future` is: it can be handed to `tokio::spawn`.
    /// Tokio-util: `CancellationToken::run_until_cancelled_owned`.
    ///
    /// If the context is already done, `future` is not polled at all. When
    /// both are ready in the same poll, the context wins. Dropping the
    /// returned future drops `future` and unregisters from the context.
    ///
    /// # Cancel safety
    ///
    /// As cancel-safe as `future` itself: when the context wins, `future`
    /// is dropped with whatever progress it had made.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tokio::task::JoinError> {
    /// let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    /// let worker = tokio::spawn(ctx.run_owned(async {
    ///     tokio::time::sleep(Duration::from_secs(3600)).await; // stand-in for long work
    ///     "finished"
    /// }));
    /// cancel.cancel();
    /// assert_eq!(worker.await?, Err(goctx::Error::Canceled));
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "run_until_cancelled_owned")]
    pub fn run_owned<F: Future>(&self, future: F) -> RunOwned<F> {
        RunOwned::new(self.clone(), future)
    }
}

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

// Unwind safe for the reasons given at `Ctx`'s impls: the waiter's
// registration changes only through `&mut self`, and a panic in a poll
// leaves at most a registered waker, which drop takes back. (`Done` gets
// these from its `&Ctx`; the owned form names them.)
impl std::panic::UnwindSafe for DoneOwned {}
impl std::panic::RefUnwindSafe for DoneOwned {}

/// The registration logic shared by [`Done`] and [`DoneOwned`]: each holds
/// one and passes its context to every call. Owned by one future, so no
/// field needs a lock: `&mut self` guards them all.
struct Waiter {
    /// Where the waker is registered; changes on each poll that registers
    /// (a new or changed waker) and on drop.
    ///
    /// In a `ManuallyDrop` so that dropping a `Done` runs no out-of-line
    /// drop glue for it: `release`, called by the owner's `Drop`, takes out
    /// whatever is registered and leaves `None`, which owns nothing.
    registration: std::mem::ManuallyDrop<Waiting>,
    /// Set once `poll` returned `Ready` (for `FusedFuture`); never unset.
    finished: bool,
}

/// Where this future's waker is registered.
enum Waiting {
    None,
    /// In the registry of the context's cancel node, at this slot, with a
    /// copy of the waker stored there (so a re-poll with the same waker
    /// needs no lock).
    Slot(usize, Waker),
    /// With a user context; the waker is kept to notice a changed one.
    Custom(Registration, Waker),
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
            registration: std::mem::ManuallyDrop::new(Waiting::None),
            finished: false,
        }
    }

    /// Polls for `ctx` being done. `ctx` must be the same context on every
    /// call (each owner passes the one it holds).
    #[inline]
    fn poll(&mut self, ctx: &Ctx, cx: &mut TaskContext<'_>) -> Poll<Error> {
        // A context made by `with_cancel` and friends that is done: one
        // load, no call (a done context never needs a registration).
        if let Some(err) = ctx.0.node_err() {
            self.finished = true;
            return Poll::Ready(err);
        }
        let result = self.poll_ctx(ctx, cx);
        self.finished |= result.is_ready();
        result
    }

    // Out of line: the done fast path in `poll` stays small.
    #[inline(never)]
    fn poll_ctx(&mut self, ctx: &Ctx, cx: &mut TaskContext<'_>) -> Poll<Error> {
        let this = self;
        match ctx.0.source() {
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
                if let Waiting::Slot(_, registered) = &*this.registration
                    && registered.will_wake(cx.waker())
                {
                    return Poll::Pending;
                }
                // Check and register under the node's lock, so a cancel
                // cannot slip between the two (tree invariant 2).
                let mut slot = match *this.registration {
                    Waiting::Slot(slot, _) => Some(slot),
                    _ => None,
                };
                let result = node.poll_register(&mut slot, cx.waker());
                *this.registration = match slot {
                    Some(slot) => Waiting::Slot(slot, cx.waker().clone()),
                    None => Waiting::None,
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
                if let Waiting::Custom(_, waker) = &*this.registration
                    && waker.will_wake(cx.waker())
                {
                    return Poll::Pending;
                }
                if let Waiting::Custom(old, _) =
                    std::mem::replace(&mut *this.registration, Waiting::None)
                {
                    let _ = old.cancel();
                }
                let waker = cx.waker().clone();
                let subscription = custom.subscribe(Entry::Waker(waker.clone()));
                *this.registration = Waiting::Custom(subscription, waker);
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
        // Never registered (or already released): nothing to take out, and
        // no drop glue to run on the replaced value.
        if matches!(*self.registration, Waiting::None) {
            return;
        }
        match std::mem::replace(&mut *self.registration, Waiting::None) {
            Waiting::None => {}
            Waiting::Slot(slot, _) => {
                if let Source::Node(node) = ctx.0.source() {
                    node.deregister(slot);
                }
            }
            Waiting::Custom(subscription, _) => {
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

/// Wakes a thread parked in `park_on`.
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
pub(crate) fn block_until(ctx: &Ctx, until: Option<Instant>) -> Option<Error> {
    if let Some(err) = ctx.err() {
        return Some(err);
    }
    // At the timeout: the context's state then (it may have just ended).
    park_on(Done::new(ctx), until).or_else(|| ctx.err())
}

/// Polls `future` on the current thread, parking between polls, until it
/// is ready (`Some` of its output) or `until` passes (`None`). Spurious
/// unparks are harmless: the loop polls again.
pub(crate) fn park_on<F: Future + Unpin>(
    mut future: F,
    until: Option<Instant>,
) -> Option<F::Output> {
    let waker = Waker::from(Arc::new(Unparker(thread::current())));
    let mut cx = TaskContext::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = Pin::new(&mut future).poll(&mut cx) {
            return Some(output);
        }
        match until {
            None => thread::park(),
            Some(until) => {
                let now = Instant::now();
                if now >= until {
                    return None;
                }
                thread::park_timeout(until - now);
            }
        }
    }
}
