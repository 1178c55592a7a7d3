//! `with_deadline`, `with_timeout` and their `*_cause` forms.

use std::time::{Duration, Instant};

use crate::cancel::new_cancel;
use crate::context::{Ctx, Repr};
use crate::error::{Error, into_cause};
use crate::tree::CauseArg;
use crate::{CancelFunc, Cause};

/// Returns a child of `parent` that is canceled with
/// [`Error::DeadlineExceeded`] at `deadline`, or earlier by its
/// [`CancelFunc`] (error [`Error::Canceled`]) or by `parent`. Go:
/// `WithDeadline`.
///
/// Go's rules, exactly:
/// - If `parent`'s deadline is strictly earlier than `deadline`, the new
///   deadline could never fire first: the result is a plain
///   [`with_cancel`](crate::with_cancel) child (no timer; its name ends in
///   `.WithCancel`).
/// - If `deadline` is not in the future, the child is born done with
///   `DeadlineExceeded` (unless the parent is already done: then the
///   parent's error and cause win).
/// - Otherwise the runtime-agnostic timer thread cancels it at the
///   deadline. Cancelling or dropping the child removes the timer entry.
///
/// # Precision
///
/// A deadline never fires early: the child is done at some point at or
/// after `deadline`, usually within about a millisecond (the timer's
/// resolution), later on an overloaded machine. `err()` stays `None` until
/// then.
///
/// # Panics
///
/// If the deadline needs the timer thread and the system refuses to start
/// it (a thread or memory limit), as `std::thread::spawn` panics. Nothing
/// is armed then and the context being built is canceled and dropped; the
/// next call that needs the thread tries to start it again. Once started, the thread
/// runs for the life of the process, so later calls cannot fail this way.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
///
/// let at = Instant::now() + Duration::from_millis(10);
/// let (ctx, _cancel) = goctx::with_deadline(&goctx::background(), at);
/// assert_eq!(ctx.deadline(), Some(at));
/// assert_eq!(ctx.wait(), goctx::Error::DeadlineExceeded);
/// assert!(Instant::now() >= at);
/// ```
#[doc(alias = "WithDeadline")]
#[must_use = "dropping the CancelFunc cancels the context at once"]
pub fn with_deadline(parent: &Ctx, deadline: Instant) -> (Ctx, CancelFunc) {
    deadline_node(parent, deadline, None, deadline <= Instant::now())
}

/// Like [`with_deadline`]; when the deadline fires, [`Ctx::cause`] reports
/// `cause`. An explicit cancel still reports the error itself, as in Go
/// (`WithDeadlineCause`). The cause is dropped when `parent`'s deadline is
/// earlier, since this deadline can then never fire.
///
/// # Panics
///
/// As [`with_deadline`]: if the timer thread is needed and cannot be
/// started.
///
/// # Examples
///
/// ```
/// use std::time::Instant;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("backend too slow")]
/// struct TooSlow;
///
/// let (ctx, _cancel) = goctx::with_deadline_cause(&goctx::background(), Instant::now(), TooSlow);
/// assert_eq!(ctx.err(), Some(goctx::Error::DeadlineExceeded));
/// assert!(ctx.cause().is_some_and(|c| c.is::<TooSlow>()));
/// ```
#[doc(alias = "WithDeadlineCause")]
#[must_use = "dropping the CancelFunc cancels the context at once"]
pub fn with_deadline_cause<E>(parent: &Ctx, deadline: Instant, cause: E) -> (Ctx, CancelFunc)
where
    E: std::error::Error + Send + Sync + 'static,
{
    deadline_node(
        parent,
        deadline,
        Some(into_cause(cause)),
        deadline <= Instant::now(),
    )
}

/// `with_deadline(parent, now + timeout)`. Go: `WithTimeout`.
///
/// A zero timeout gives a context that is already done. A timeout too large
/// to represent as an `Instant` (such as `Duration::MAX`) means "never": the
/// result is a plain [`with_cancel`](crate::with_cancel) child.
///
/// # Panics
///
/// As [`with_deadline`]: if the timer thread is needed and cannot be
/// started.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let (ctx, cancel) = goctx::with_timeout(&goctx::background(), Duration::from_secs(30));
/// assert!(ctx.deadline().is_some());
/// assert!(format!("{ctx}").starts_with("context.Background.WithDeadline("));
/// cancel.cancel();
/// assert_eq!(ctx.err(), Some(goctx::Error::Canceled));
/// ```
#[doc(alias = "WithTimeout")]
#[must_use = "dropping the CancelFunc cancels the context at once"]
pub fn with_timeout(parent: &Ctx, timeout: Duration) -> (Ctx, CancelFunc) {
    match Instant::now().checked_add(timeout) {
        // One clock read: `now + timeout` is past exactly when the timeout
        // is zero.
        Some(deadline) => deadline_node(parent, deadline, None, timeout.is_zero()),
        None => new_cancel(parent, None, None),
    }
}

/// `with_deadline_cause(parent, now + timeout, cause)`. Go:
/// `WithTimeoutCause`.
///
/// # Panics
///
/// As [`with_deadline`]: if the timer thread is needed and cannot be
/// started.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("query budget spent")]
/// struct Budget;
///
/// let (ctx, _cancel) = goctx::with_timeout_cause(&goctx::background(), Duration::ZERO, Budget);
/// assert_eq!(ctx.cause().map(|c| c.to_string()), Some("query budget spent".into()));
/// ```
#[doc(alias = "WithTimeoutCause")]
#[must_use = "dropping the CancelFunc cancels the context at once"]
pub fn with_timeout_cause<E>(parent: &Ctx, timeout: Duration, cause: E) -> (Ctx, CancelFunc)
where
    E: std::error::Error + Send + Sync + 'static,
{
    match Instant::now().checked_add(timeout) {
        Some(deadline) => {
            deadline_node(parent, deadline, Some(into_cause(cause)), timeout.is_zero())
        }
        None => new_cancel(parent, None, None),
    }
}

/// `expired`: `deadline` is not in the future (the caller read the clock).
fn deadline_node(
    parent: &Ctx,
    deadline: Instant,
    cause: Option<Cause>,
    expired: bool,
) -> (Ctx, CancelFunc) {
    if let Some(sooner) = parent.deadline()
        && sooner < deadline
    {
        // The parent ends first anyway: no timer, and the cause can never
        // be reported (Go drops it too).
        return new_cancel(parent, None, None);
    }
    let (ctx, cancel) = new_cancel(parent, Some(deadline), cause);
    if let Repr::Cancel(node) = &ctx.0 {
        if expired {
            node.cancel(Error::DeadlineExceeded, CauseArg::Stored, true);
        } else {
            node.arm(deadline);
        }
    }
    (ctx, cancel)
}
