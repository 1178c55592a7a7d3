//! Tokio integration (feature `tokio`): async `after_func` callbacks on the
//! caller's runtime, and the guard that keeps [`Ctx::wait`] from hanging a
//! thread that drives async tasks.
//!
//! goctx itself needs no runtime: its deadlines and `after_func` callbacks
//! run on its own helper threads. Those threads are outside any tokio
//! runtime, which is what this module bridges.
//!
//! Paths to tokio are written `::tokio::` here: this module is itself
//! named `tokio`.

use std::future::Future;
use std::task::{Context as TaskContext, Poll, Waker};

use ::tokio::runtime::Handle;
use ::tokio::task::coop;

use crate::after::{AfterFunc, after_func};
use crate::context::Ctx;

/// Arranges for `future` to be spawned on the tokio runtime of the caller
/// once `ctx` is done: [`after_func`] for async callbacks.
///
/// The runtime is captured now, with [`Handle::current`], because the
/// callback of a plain `after_func` runs on a goctx helper thread outside
/// any runtime, where `tokio::spawn` panics. Everything else is
/// `after_func`'s contract:
///
/// - `future` is spawned at most once, after `ctx.err()` became `Some`,
///   never on the thread that canceled the context. If `ctx` is already
///   done it is spawned at once; if `ctx` can never be done it never is.
/// - [`AfterFunc::stop`] returns `true` iff it prevented the spawn (the
///   future is then dropped without being polled); `false` once the future
///   was handed to the runtime or the registration was already stopped. It
///   does not wait for, or abort, a spawned future.
/// - Dropping the returned handle does not stop the callback.
/// - While the callback is pending it keeps `ctx` alive.
///
/// If the runtime has shut down by the time `ctx` is done, the spawn fails
/// quietly and `future` is dropped unpolled, as `Handle::spawn` does.
///
/// # Panics
///
/// If called outside a tokio runtime (no [`Handle::try_current`]). Call
/// [`after_func`] with `handle.spawn(..)` inside to pick a runtime
/// explicitly.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (ctx, cancel) = goctx::with_cancel(&goctx::background());
/// let (tx, rx) = tokio::sync::oneshot::channel();
/// let _handle = goctx::tokio::after_func_async(&ctx, async move {
///     tokio::time::sleep(Duration::from_millis(1)).await; // runtime-only API
///     let _ = tx.send("flushed");
/// });
/// cancel.cancel();
/// assert_eq!(tokio::time::timeout(Duration::from_secs(10), rx).await??, "flushed");
/// # Ok(())
/// # }
/// ```
#[doc(alias = "AfterFunc")]
#[track_caller]
pub fn after_func_async<Fut>(ctx: &Ctx, future: Fut) -> AfterFunc
where
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let Ok(handle) = Handle::try_current() else {
        panic!(
            "goctx::tokio::after_func_async must be called from within a tokio runtime \
             (it spawns the callback on the caller's runtime)"
        );
    };
    after_func(ctx, move || {
        // The task's output and `JoinHandle` are not needed: the callback
        // is fire-and-forget, as Go's `AfterFunc` goroutine is.
        drop(handle.spawn(future));
    })
}

/// Panics if the calling thread is driving async tasks for tokio, where a
/// blocking [`Ctx::wait`] could hang forever (the task that would cancel
/// the context may need this very thread). See [`Ctx::wait`].
#[track_caller]
pub(crate) fn assert_may_block() {
    if drives_async_tasks() {
        panic!(
            "goctx: Ctx::wait/wait_timeout called on a thread that drives tokio tasks \
             (a runtime worker or inside `block_on`): blocking it can hang forever. \
             Use `ctx.done().await`, or wait inside `tokio::task::spawn_blocking` or \
             `tokio::task::block_in_place`"
        );
    }
}

/// Whether tokio is polling the caller as a task or as a `block_on`
/// future.
///
/// Tokio decides "cannot block the current thread from within a runtime"
/// with a private thread-local flag that has no public reader. What is
/// public, and set the same way, is the cooperative-scheduling budget:
/// tokio polls every task and every `block_on` future with a finite
/// budget, and runs `spawn_blocking` closures and `block_in_place`
/// sections (and plain threads) with an unconstrained one. The budget's
/// value is not readable either, but its finiteness is observable without
/// changing it: take budget units until `has_budget_remaining` turns
/// false (finite) or more units were taken than a finite budget can hold
/// (unconstrained), then give them all back.
///
/// Misses (no panic, the old hang): a future wrapped in
/// `tokio::task::coop::unconstrained`. False alarm: a future wrapped in
/// `tokio::task::coop::cooperative` polled by another executor on a thread
/// that entered a tokio runtime handle.
fn drives_async_tasks() -> bool {
    // Outside any runtime context nothing tokio polls can be waiting on
    // this thread; this also rules out `cooperative` futures on foreign
    // executors in runtime-free programs.
    if Handle::try_current().is_err() {
        return false;
    }
    // A finite budget already spent: only tokio's polls have finite budgets.
    if !coop::has_budget_remaining() {
        return true;
    }
    let mut cx = TaskContext::from_waker(Waker::noop());
    // Remembers the budget as it is now and puts it back when dropped
    // (we never call `made_progress` on it): whatever the loop below takes
    // is returned when this guard drops at the end of the function.
    let Poll::Ready(_restore) = coop::poll_proceed(&mut cx) else {
        // Unreachable (budget remains), but a refusal means a finite budget.
        return true;
    };
    // A finite budget is a `u8`: 255 more units empty any of them.
    for _ in 0..u8::MAX {
        if !coop::has_budget_remaining() {
            return true;
        }
        match coop::poll_proceed(&mut cx) {
            // Keep the unit taken: `_restore` gives them all back at once.
            Poll::Ready(unit) => unit.made_progress(),
            Poll::Pending => return true,
        }
    }
    false
}
