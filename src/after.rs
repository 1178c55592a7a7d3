//! `after_func`: run a callback once a context is done.

use std::fmt;
use std::sync::Arc;

use crate::context::Ctx;
use crate::custom::Subscription;
use crate::spawn::{self, Job};
use crate::sync::Mutex;
use crate::tree::Entry;

/// Arranges for `f` to run on a helper thread once `ctx` is done. Go:
/// `AfterFunc`.
///
/// - `f` runs at most once, after `ctx.err()` became `Some`, and never on
///   the thread that canceled the context: `cancel()` neither runs nor waits
///   for it. Each callback gets a helper thread of its own while it runs, so
///   a slow callback delays no other callback and no deadline.
/// - If `ctx` is already done, `f` is started at once (still on a helper
///   thread).
/// - If `ctx` can never be done (a root, [`without_cancel`](crate::without_cancel)),
///   `f` never runs.
/// - [`AfterFunc::stop`] cancels the registration. Dropping the handle does
///   **not**: the callback stays armed.
///
/// Several callbacks on one context are independent of each other.
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
#[doc(alias = "AfterFunc")]
pub fn after_func<F>(ctx: &Ctx, f: F) -> AfterFunc
where
    F: FnOnce() + Send + 'static,
{
    let state = Arc::new(AfterState {
        f: Mutex::new(Some(Box::new(f))),
        home: Mutex::new(None),
    });
    let subscription = ctx.subscribe_entry(Entry::After(state.clone()));
    state.settle(subscription);
    AfterFunc { state }
}

/// The handle of an [`after_func`] registration. Go: the `stop` function
/// `AfterFunc` returns.
pub struct AfterFunc {
    state: Arc<AfterState>,
}

impl AfterFunc {
    /// Stops the callback from running. Returns `true` if this call
    /// prevented it; `false` if it has already been started or the
    /// registration was already stopped. Does not wait for a started
    /// callback to finish. Like Go's `stop`, and `time.Timer.Stop`.
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
pub(crate) struct AfterState {
    /// The callback; taken by whichever comes first, the context ending
    /// (`run`) or `stop`. Taking it under this lock is what makes exactly
    /// one of them win.
    f: Mutex<Option<Job>>,
    /// Where the registration currently lives, so `stop` can remove it.
    /// Replaced when a context is dropped and its callbacks move to its
    /// parent (`rehome`).
    home: Mutex<Option<Subscription>>,
}

impl AfterState {
    /// The context is done: start the callback unless it was stopped.
    pub(crate) fn run(self: Arc<Self>) {
        let job = self.f.lock().take();
        if let Some(job) = job {
            // The registration has fired; there is nothing left to remove.
            let home = self.home.lock().take();
            drop(home);
            spawn::spawn(job);
        }
    }

    /// Records where the registration lives, unless the callback was
    /// already taken meanwhile (then the registration is removed again).
    fn settle(&self, subscription: Subscription) {
        *self.home.lock() = Some(subscription);
        let taken = self.f.lock().is_none();
        if taken {
            let home = self.home.lock().take();
            if let Some(subscription) = home {
                let _ = subscription.cancel();
            }
        }
    }

    /// The context this callback waited on was dropped without ending.
    /// It can now only end when `parent` does: wait there instead.
    pub(crate) fn rehome(state: Arc<Self>, parent: &Ctx) {
        let taken = state.f.lock().is_none();
        if taken {
            return;
        }
        let subscription = parent.subscribe_entry(Entry::After(state.clone()));
        state.settle(subscription);
    }
}
