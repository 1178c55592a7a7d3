//! Whether the calling thread may block (feature `tokio`): the check behind
//! `Ctx::wait`'s panic on a thread that drives tokio tasks.

use std::task::{Context as TaskContext, Poll, Waker};

use tokio::runtime::Handle;
use tokio::task::coop;

/// Panics if the calling thread is driving async tasks for tokio, where a
/// blocking `Ctx::wait` could hang forever (the task that would cancel
/// the context may need this very thread). See `Ctx::wait`.
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
