//! `Ctx::drained`: waiting until every context derived from one is gone,
//! the drain step of a graceful shutdown.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use crate::context::Ctx;
use crate::done::park_on;
use crate::tree::{register_drain_waiter, unregister_drain_waiter};

impl Ctx {
    /// A future that is ready once no context derived from this one is
    /// left: every context made from it (with `with_cancel`, `with_value`,
    /// `merge`, …), and every context made from those, has been dropped,
    /// with all its handles and `CancelFunc`s, whether it was canceled or
    /// not. Handles of this context itself do not count.
    ///
    /// This is what a graceful shutdown waits for after canceling the base
    /// context: canceling ends every request context at once (so
    /// [`dependents`](Ctx::dependents) drops to zero immediately), but a
    /// handler, a spawned task or an open stream may still hold its request
    /// context while it winds down. `drained` says when the last one let
    /// go. It is ready at once if nothing derives from this context; it can
    /// become pending again only if a new context is derived, and a context
    /// derived later is waited for too.
    ///
    /// The future holds its own handle of this context (it is `'static`).
    /// Go has no counterpart (a `sync.WaitGroup` that every handler must
    /// remember to join); tokio-util's is `TaskTracker::wait`, which counts
    /// tasks, not contexts.
    ///
    /// # Panics
    ///
    /// On [`background`](crate::background) and [`todo`](crate::todo):
    /// nothing counts what derives from a root, so it could never be known
    /// to be drained. Derive the server's context first (`with_cancel`,
    /// `signal_context`) and drain that.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future unregisters it; nothing else changes.
    ///
    /// # Examples
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let (server, shutdown) = goctx::with_cancel(&goctx::background());
    /// let (request, _done) = goctx::with_cancel(&server);
    /// shutdown.cancel();
    /// assert_eq!(server.dependents(), 0); // canceled, so unregistered...
    /// let drained = server.drained();
    /// drop((request, _done)); // ...but only gone once dropped
    /// drained.await;
    /// # });
    /// ```
    #[track_caller]
    pub fn drained(&self) -> Drained {
        assert!(
            self.0.derived().is_some(),
            "goctx: drained() on background() or todo(): nothing counts what derives \
             from a root; drain a context derived from it"
        );
        Drained {
            ctx: self.clone(),
            id: 0,
        }
    }

    /// Blocks the current thread until no context derived from this one is
    /// left; the blocking form of [`drained`](Ctx::drained).
    ///
    /// # Panics
    ///
    /// As [`drained`](Ctx::drained); and, with the `tokio` feature, where
    /// [`wait`](Ctx::wait) panics (on a thread that drives tokio tasks).
    #[track_caller]
    pub fn wait_drained(&self) {
        #[cfg(feature = "tokio")]
        crate::may_block::assert_may_block();
        park_on(self.drained(), None);
    }

    /// Like [`wait_drained`](Ctx::wait_drained), for at most `timeout`;
    /// returns whether the context was drained. A `timeout` too large to
    /// represent waits without a bound.
    ///
    /// # Panics
    ///
    /// As [`wait_drained`](Ctx::wait_drained).
    #[track_caller]
    pub fn wait_drained_timeout(&self, timeout: Duration) -> bool {
        #[cfg(feature = "tokio")]
        crate::may_block::assert_may_block();
        park_on(self.drained(), Instant::now().checked_add(timeout)).is_some()
    }
}

/// The future returned by [`Ctx::drained`].
#[must_use = "futures do nothing unless polled"]
pub struct Drained {
    ctx: Ctx,
    /// The waiter's id in the drain table; 0 while not registered.
    id: u64,
}

impl Future for Drained {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some((derived, node)) = this.ctx.0.derived() else {
            // `drained` refused roots.
            return Poll::Pending;
        };
        if derived.is_zero() {
            return Poll::Ready(());
        }
        // Register, then look again: a last child freed in between either
        // is seen now or sees this waiter (`derived.rs`).
        this.id = register_drain_waiter(node, this.id, cx.waker());
        if derived.is_zero_after_registering() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Drained {
    fn drop(&mut self) {
        unregister_drain_waiter(self.id);
    }
}

impl fmt::Debug for Drained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drained")
            .field("ctx", &self.ctx)
            .field(
                "derived",
                &self.ctx.0.derived().map_or(0, |(derived, _)| derived.get()),
            )
            .finish()
    }
}

// A `Drained` changes only through `&mut self` (its registration), and a
// panic in a waker leaves at most a registration that drop takes back.
impl std::panic::UnwindSafe for Drained {}
impl std::panic::RefUnwindSafe for Drained {}
