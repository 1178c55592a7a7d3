//! `after_func`: run a callback once a context is done.

use std::fmt;
use std::sync::Arc;

use crate::context::Ctx;
use crate::spawn::{self, Job};
use crate::sync::Mutex;
use crate::tree::{Callback, Entry, Registration};

/// Arranges for `f` to run on a helper thread once `ctx` is done. Go:
/// `AfterFunc`.
///
/// - `f` runs at most once, after `ctx.err()` became `Some`, on a
///   `goctx-callback` helper thread: `cancel()` neither runs nor waits for
///   it (but see the last resort below).
/// - Up to [`max_callback_threads`] callbacks (512 unless
///   [`set_max_callback_threads`] changed it) run at once, each on a thread
///   of its own, so a slow callback delays no other callback and no
///   deadline. Once that many are running, further callbacks wait in a
///   queue, in order, for the first thread to come free. Go starts a
///   goroutine per callback and has no such bound.
/// - A callback whose thread the system refuses to start (a memory or
///   thread limit) is not lost: it waits in the same queue for the threads
///   that exist, and the start is retried later. As a last resort, when no
///   callback thread exists and none can be started, the callback runs on
///   the thread that ended `ctx` (inside `cancel()`, on the timer thread,
///   or inside this call if `ctx` is already done), with no goctx lock
///   held, before that call returns. Waiting for a thread that may never
///   come could hold it forever, while [`AfterFunc::stop`] already says it
///   ran.
/// - If `ctx` is already done, `f` is started at once (still on a helper
///   thread, but for the last resort).
/// - If `ctx` can never be done (a root, [`without_cancel`](crate::without_cancel)),
///   `f` never runs.
/// - [`AfterFunc::stop`] cancels the registration. Dropping the handle does
///   **not**: the callback stays armed.
/// - While the callback is pending, the registration keeps `ctx` alive, so
///   the context still ends by its deadline or its parent even if every
///   other handle of it is dropped. Once the callback has started or was
///   stopped, the registration holds nothing.
///
/// Several callbacks on one context are independent of each other.
///
/// # Async code
///
/// The helper thread is outside any async runtime: inside `f`,
/// `tokio::spawn`, `tokio::time::sleep` and `Handle::current()` panic (and
/// the panic ends only the callback, so it is easily missed). Capture the
/// runtime's handle before registering and spawn through it, as in the
/// second example; with the `tokio` feature,
/// `goctx::tokio::after_func_async` does exactly that for a future.
///
/// # Examples
///
/// ```
/// use std::sync::mpsc;
///
/// let (ctx, cancel) = goctx::with_cancel(&goctx::background());
/// let (tx, rx) = mpsc::channel();
/// let _handle = goctx::after_func(&ctx, move || tx.send("cleaned up").unwrap_or(()));
/// cancel.cancel();
/// assert_eq!(rx.recv().ok(), Some("cleaned up"));
/// ```
///
/// Running async cleanup on the caller's tokio runtime:
///
/// ```
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (ctx, cancel) = goctx::with_cancel(&goctx::background());
/// let (tx, rx) = tokio::sync::oneshot::channel();
/// let handle = tokio::runtime::Handle::current(); // here, on the runtime
/// let _stop = goctx::after_func(&ctx, move || {
///     // On a goctx helper thread: `tokio::spawn` would panic here.
///     handle.spawn(async move {
///         tokio::time::sleep(Duration::from_millis(1)).await;
///         let _ = tx.send("flushed");
///     });
/// });
/// cancel.cancel();
/// assert_eq!(tokio::time::timeout(Duration::from_secs(10), rx).await??, "flushed");
/// # Ok(())
/// # }
/// ```
#[doc(alias = "AfterFunc")]
pub fn after_func<F>(ctx: &Ctx, f: F) -> AfterFunc
where
    F: FnOnce() + Send + 'static,
{
    let state = Arc::new(AfterState {
        f: Mutex::new(Some(Box::new(f))),
        home: Mutex::new(None),
        keep: Mutex::new(Some(ctx.clone())),
    });
    let subscription = ctx.0.subscribe(Entry::Callback(state.clone()));
    if subscription.is_never() {
        // Nothing can end this context: nothing to keep alive.
        state.release();
    }
    state.settle(subscription);
    AfterFunc { state }
}

/// Sets how many `after_func` callback threads may exist at once, and
/// returns the previous bound. The default is 512 (as tokio's
/// `max_blocking_threads`). Go: none; Go starts a goroutine per
/// `AfterFunc` callback.
///
/// `n` counts threads; `0` counts as 1 (a pool with no thread could run
/// nothing). The setting is process-wide and can be changed at any time:
///
/// - Raising it starts threads for callbacks already waiting.
/// - Lowering it never interrupts a running callback: surplus threads exit
///   as they finish theirs, and take no new ones meanwhile.
///
/// The trade-off: with the bound, a blocked callback delays no other
/// callback only as long as fewer than `n` callbacks are running; beyond
/// that, callbacks wait in a queue for a thread to come free. A program
/// whose callbacks block for long (waiting on each other, say) needs a
/// bound above the number that can block at once. Idle threads exit after
/// 10 seconds, so a high bound costs nothing while unused.
///
/// # Examples
///
/// ```
/// use std::sync::mpsc;
///
/// let previous = goctx::set_max_callback_threads(4);
/// assert_eq!(goctx::max_callback_threads(), 4);
///
/// let (ctx, cancel) = goctx::with_cancel(&goctx::background());
/// let (tx, rx) = mpsc::channel();
/// let _handle = goctx::after_func(&ctx, move || tx.send("ran").unwrap_or(()));
/// cancel.cancel();
/// assert_eq!(rx.recv().ok(), Some("ran"));
///
/// goctx::set_max_callback_threads(0); // counts as 1
/// assert_eq!(goctx::max_callback_threads(), 1);
/// goctx::set_max_callback_threads(previous);
/// ```
pub fn set_max_callback_threads(n: usize) -> usize {
    spawn::set_max_threads(n)
}

/// The current bound on `after_func` callback threads (512 by default);
/// see [`set_max_callback_threads`].
///
/// # Examples
///
/// ```
/// assert!(goctx::max_callback_threads() >= 1);
/// ```
pub fn max_callback_threads() -> usize {
    spawn::max_threads()
}

/// The handle of an [`after_func`] registration. Go: the `stop` function
/// `AfterFunc` returns.
pub struct AfterFunc {
    state: Arc<AfterState>,
}

// Unwind safe for the reasons given at `Ctx`'s impls; `stop` and the
// callback thread settle who runs by one atomic step.
impl std::panic::UnwindSafe for AfterFunc {}
impl std::panic::RefUnwindSafe for AfterFunc {}

impl AfterFunc {
    /// Stops the callback from running. Returns `true` if this call
    /// prevented it; `false` if it has already been started or the
    /// registration was already stopped. Does not wait for a started
    /// callback to finish. Like Go's `stop`, and `time.Timer.Stop`.
    ///
    /// "Started" means the context ended and the callback was handed to
    /// the callback threads, as Go starts its goroutine at that moment: a
    /// callback still waiting in the queue for a free thread (all
    /// [`max_callback_threads`](crate::max_callback_threads) busy) counts
    /// as started, cannot be stopped, and will run.
    ///
    /// # Examples
    ///
    /// ```
    /// let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    /// let handle = goctx::after_func(&ctx, || unreachable!());
    /// assert!(handle.stop());
    /// assert!(!handle.stop());
    /// cancel.cancel(); // the callback does not run
    /// ```
    pub fn stop(&self) -> bool {
        // Take the callback out and release the lock before dropping it:
        // its captures' `Drop` is user code (invariant 4 of the tree).
        let job = self.state.f.lock().take();
        if job.is_none() {
            return false;
        }
        drop(job);
        let home = self.state.home.lock().take();
        if let Some(subscription) = home {
            // Free the registration now rather than when the context ends.
            let _ = subscription.cancel();
        }
        self.state.release();
        true
    }
}

impl fmt::Debug for AfterFunc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pending = self.state.f.lock().is_some();
        f.debug_struct("AfterFunc")
            .field("pending", &pending)
            .finish()
    }
}

/// One registration, shared by the context's registry and the handle.
struct AfterState {
    /// The callback; taken by whichever comes first, the context ending
    /// (`run`) or `stop`. Taking it under this lock is what makes exactly
    /// one of them win.
    f: Mutex<Option<Job>>,
    /// Where the registration lives, so `stop` can remove it.
    home: Mutex<Option<Registration>>,
    /// The context, kept alive while the callback is pending: a context
    /// with a pending callback must still end (by its deadline, say) even
    /// when nobody else holds it, as in Go. This is the one deliberate
    /// reference loop in goctx (context → registry → this → context); it
    /// is broken when the callback starts or is stopped, which for a
    /// context that can end is bound to happen.
    keep: Mutex<Option<Ctx>>,
}

impl Callback for AfterState {
    /// The context is done: start the callback unless it was stopped.
    fn start(self: Arc<Self>) {
        let job = self.f.lock().take();
        if let Some(job) = job {
            // The registration has fired; there is nothing left to remove.
            let home = self.home.lock().take();
            drop(home);
            spawn::spawn(job);
            self.release();
        }
    }
}

impl AfterState {
    /// Records where the registration lives, unless the callback was
    /// already taken meanwhile (then the registration is removed again).
    fn settle(&self, subscription: Registration) {
        *self.home.lock() = Some(subscription);
        let taken = self.f.lock().is_none();
        if taken {
            let home = self.home.lock().take();
            if let Some(subscription) = home {
                let _ = subscription.cancel();
            }
            self.release();
        }
    }

    /// Lets go of the context (after the callback started or was stopped).
    /// Dropped outside the lock: it may be the context's last handle.
    fn release(&self) {
        let keep = self.keep.lock().take();
        drop(keep);
    }
}
