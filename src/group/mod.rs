//! Groups of tasks that share a context and fail together: Go's
//! `errgroup`. This module holds the runtime-free forms, [`scope`] (scoped
//! threads for blocking work) and [`InPlace`] (futures driven inside the
//! group's own future, on any executor), and what every form shares: the
//! first error's bookkeeping and the causes a group ends with. The tokio
//! form, tasks spawned on the runtime, is `goctx::tokio::Group` (feature
//! `tokio`).
//!
//! Which one:
//!
//! | form | tasks are | runs them | borrows | pick it for |
//! |---|---|---|---|---|
//! | `goctx::tokio::Group` | `'static` futures | as tokio tasks, in parallel on the runtime's threads | no | async work of any size; CPU work across cores; thousands of tasks |
//! | [`InPlace`] | `Send` futures | inside its own [`Wait`] future, on the thread polling it; any executor | yes | I/O-bound fan-out of tens to hundreds of futures; code without tokio |
//! | [`scope`] | blocking closures | one scoped thread each | yes | blocking work (files, CPU), no runtime |
//!
//! The rules, in every form (Go's, plus what Rust adds):
//!
//! 1. The group's context is a child of the context it was made from. The
//!    first task to return `Err(e)` cancels it, with `e` as its cause
//!    (`ctx.cause()` downcasts to `E`), so the other tasks can stop; the
//!    group's result is that error, never an ancestor's cause. When every
//!    task succeeds, the group's context is canceled with plain
//!    [`Canceled`](crate::Error::Canceled) once they are all done (Go's
//!    `Wait`). Either way it is done when the result is returned.
//! 2. A task that panics cancels the group's context at once, with
//!    [`TaskPanicked`] as its cause, so its siblings stop promptly; the
//!    group then re-raises the panic, with its original payload, once
//!    every task is done: when its wait returns for the spawned and the
//!    threaded forms; at once for [`InPlace`], whose other futures live
//!    inside the wait that unwinds and are dropped with it. (Go's errgroup tried this and reverted it in
//!    2025, because a re-panic far from the goroutine delayed the signal
//!    and lost the stack. Here the signal is immediate, and the runtime or
//!    the thread already captured the panic where it happened.)
//! 3. A limit bounds how many tasks run at once (`None`, the default: no
//!    bound). Changing it while tasks run panics, as in Go.
//! 4. Results come back in the order the tasks were started, whatever
//!    order they finished in.
//!
//! The error type needs `Clone`: one copy is the context's cause, the other
//! is returned. For an error type that is not `Clone` (`std::io::Error`),
//! use `Arc<E>`, which is `Clone` and an `Error` too. For plain messages
//! (Go's `errors.New`), [`Cause`] is one (`Cause::from("…")`);
//! the context's cause is then that same `Cause`, compared with
//! [`Cause::ptr_eq`](crate::Cause::ptr_eq) rather than downcast.

use std::any::Any;
use std::fmt;

use parking_lot::Mutex;

use crate::cancel::CancelFunc;
use crate::error::Cause;

mod in_place;
mod scope;

pub use in_place::{InPlace, Wait};
pub use scope::{Scope, scope};

/// The cause of a group's context when a task's panic is what ended it
/// (an error or the parent's end that came first stays the cause): the
/// other tasks see it at once; the group re-raises the panic itself when
/// it is waited on.
///
/// # Examples
///
/// ```
/// let result = std::panic::catch_unwind(|| {
///     goctx::group::scope(&goctx::background(), |s| {
///         s.go(|_| -> Result<(), std::fmt::Error> { panic!("disk on fire") });
///         s.go(|ctx| {
///             ctx.wait(); // ends as soon as the sibling panics
///             let cause = ctx.cause().expect("done");
///             let panicked = cause.downcast_ref::<goctx::group::TaskPanicked>().unwrap();
///             assert_eq!(panicked.message(), Some("disk on fire"));
///             Ok(())
///         });
///     })
/// });
/// assert!(result.is_err()); // the panic, re-raised with its payload
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("context canceled: a task of the group panicked{}", fmt_message(.message.as_deref()))]
pub struct TaskPanicked {
    message: Option<String>,
}

fn fmt_message(message: Option<&str>) -> String {
    message.map(|m| format!(": {m}")).unwrap_or_default()
}

impl TaskPanicked {
    /// The cause for a panic with this payload: its message when the
    /// payload is a string (as `panic!` with a message makes).
    pub(crate) fn from_payload(payload: &(dyn Any + Send)) -> TaskPanicked {
        let message = payload
            .downcast_ref::<&'static str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned());
        TaskPanicked { message }
    }

    /// The panic's message, if its payload was a string.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }
}

/// The cause of a group's context when the group was dropped before it
/// was waited on: its tasks are being stopped (the tokio form aborts
/// them), as a dropped [`CancelFunc`] cancels its context.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, thiserror::Error)]
#[error("context canceled: the task group was dropped before it was waited on")]
pub struct GroupDropped;

/// What the tasks of one group share: the group's cancel function and the
/// first error. (Crate-private; each form of group holds one in an `Arc`.)
pub(crate) struct Failure<E> {
    cancel: CancelFunc,
    first: Mutex<Option<E>>,
}

impl<E> Failure<E>
where
    E: std::error::Error + Clone + Send + Sync + 'static,
{
    pub(crate) fn new(cancel: CancelFunc) -> Failure<E> {
        Failure {
            cancel,
            first: Mutex::new(None),
        }
    }

    /// A task returned `err`: the first one is kept and cancels the group.
    pub(crate) fn error(&self, err: E) {
        let cause = {
            let mut first = self.first.lock();
            if first.is_some() {
                return;
            }
            let cause = Cause::new(err.clone());
            *first = Some(err);
            cause
        };
        // Only the first error gets here, so it is the cause (unless the
        // parent ended the group first). Canceled after the lock: the
        // cancel wakes waiters, which is user code.
        self.cancel.cancel_with_cause(cause);
    }

    /// A task panicked with `payload`: cancel the group now.
    pub(crate) fn panicked(&self, payload: &(dyn Any + Send)) {
        self.cancel
            .cancel_with_cause(TaskPanicked::from_payload(payload));
    }

    /// The group is over: cancel it (plain `Canceled` if nothing did
    /// before) and hand back the first error.
    pub(crate) fn finish(&self) -> Option<E> {
        self.cancel.cancel();
        self.first.lock().take()
    }
}

impl<E> Failure<E> {
    /// The group was dropped unwaited (the scoped form cannot be).
    pub(crate) fn dropped(&self) {
        self.cancel.cancel_with_cause(GroupDropped);
    }
}

impl<E> fmt::Debug for Failure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failure")
            .field("failed", &self.first.lock().is_some())
            .finish()
    }
}

/// Checks a new limit: panics if tasks are running (Go's `SetLimit` does
/// the same).
pub(crate) fn check_set_limit(active: usize) {
    assert!(
        active == 0,
        "goctx: set_limit called while {active} task(s) of the group are running; \
         set the limit before starting tasks"
    );
}
