//! `with_deadline`, `with_timeout` and their `*_cause` forms.

use std::time::{Duration, Instant};

use crate::cancel::{CancelFunc, handles, with_cancel};
use crate::clock::Clock;
use crate::context::Ctx;
use crate::error::{Cause, into_cause};
use crate::tree::CancelNode;

/// Returns a child of `parent` that is canceled with
/// [`Error::DeadlineExceeded`](crate::Error::DeadlineExceeded) at `deadline`, or earlier by its
/// [`CancelFunc`] (error [`Error::Canceled`](crate::Error::Canceled)) or by `parent`. Go:
/// `WithDeadline`.
///
/// Go's rules, with one deliberate difference:
/// - The child keeps `deadline` as its own even when `parent`'s deadline
///   is sooner. Go returns a plain `WithCancel` child then, which is sound
///   only while deadlines never move; in goctx a parent's deadline can be
///   moved later ([`CancelFunc::extend_deadline`]), and the child must
///   still end at `deadline`. [`Ctx::deadline`] reports the sooner of the
///   two, as in Go; the child's name (`Display`) shows its own deadline,
///   `.WithDeadline(..)`, where Go would show `.WithCancel`.
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
    let clock = Clock::current();
    let expired = deadline <= clock.now();
    deadline_node(parent, deadline, None, expired, clock)
}

/// Like [`with_deadline`]; when the deadline fires, [`Ctx::cause`] reports
/// `cause`. An explicit cancel still reports the error itself, as in Go
/// (`WithDeadlineCause`), and so does a parent whose deadline fires first
/// (the child then reports the parent's cause).
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
/// #[derive(Debug)]
/// struct TooSlow;
///
/// impl std::fmt::Display for TooSlow {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("backend too slow")
///     }
/// }
///
/// impl std::error::Error for TooSlow {}
///
/// let (ctx, _cancel) = goctx::with_deadline_cause(&goctx::background(), Instant::now(), TooSlow);
/// assert_eq!(ctx.err(), Some(goctx::Error::DeadlineExceeded));
/// assert!(ctx.cause().is_some_and(|c| c.is::<TooSlow>()));
/// ```
#[doc(alias = "WithDeadlineCause")]
#[must_use = "dropping the CancelFunc cancels the context at once"]
pub fn with_deadline_cause<E>(parent: &Ctx, deadline: Instant, cause: E) -> (Ctx, CancelFunc)
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let clock = Clock::current();
    let expired = deadline <= clock.now();
    deadline_node(parent, deadline, Some(into_cause(cause)), expired, clock)
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
    let clock = Clock::current();
    match clock.now().checked_add(timeout) {
        // One clock read: `now + timeout` is past exactly when the timeout
        // is zero.
        Some(deadline) => deadline_node(parent, deadline, None, timeout.is_zero(), clock),
        // A deadline past what `Instant` holds: none at all.
        None => with_cancel(parent),
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
/// let (ctx, _cancel) =
///     goctx::with_timeout_cause(&goctx::background(), Duration::ZERO, "query budget spent");
/// assert_eq!(ctx.cause().map(|c| c.to_string()), Some("query budget spent".into()));
/// ```
#[doc(alias = "WithTimeoutCause")]
#[must_use = "dropping the CancelFunc cancels the context at once"]
pub fn with_timeout_cause<E>(parent: &Ctx, timeout: Duration, cause: E) -> (Ctx, CancelFunc)
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let clock = Clock::current();
    match clock.now().checked_add(timeout) {
        Some(deadline) => deadline_node(
            parent,
            deadline,
            Some(into_cause(cause)),
            timeout.is_zero(),
            clock,
        ),
        // A deadline past what `Instant` holds: none at all.
        None => with_cancel(parent),
    }
}

/// `expired`: `deadline` is not in the future (the caller read the clock).
fn deadline_node(
    parent: &Ctx,
    deadline: Instant,
    cause: Option<Cause>,
    expired: bool,
    clock: Clock,
) -> (Ctx, CancelFunc) {
    // Unlike Go, a parent whose deadline is sooner does not make this a
    // plain cancel context: the parent's deadline can move later
    // (`extend_deadline`), and then this context's own must still hold.
    let node = CancelNode::new(parent.0.clone(), Some(deadline), cause);
    node.start_deadline(deadline, expired, clock);
    handles(node)
}
