//! `with_cancel`, `with_cancel_cause`, the [`CancelFunc`] they return, and
//! `without_cancel`.

use std::fmt;
use std::sync::Arc;

use std::time::Instant;

use crate::context::Ctx;
use crate::error::{Error, ExtendError, into_cause};
use crate::tree::{CancelNode, CauseArg, Link};

/// Returns a child of `parent` that is canceled when the returned
/// [`CancelFunc`] is called or dropped, or when `parent` is done, whichever
/// happens first. Go: `WithCancel`.
///
/// The child has the parent's deadline and values. If `parent` is already
/// done, the child is born done, with the parent's error and cause.
///
/// Dropping every clone of the `CancelFunc` cancels the child: this is
/// Go's `defer cancel()`, done for you. Use [`CancelFunc::detach`] to let
/// the child outlive the function.
///
/// # Examples
///
/// ```
/// let root = goctx::background();
/// let (ctx, cancel) = goctx::with_cancel(&root);
/// let worker = std::thread::spawn({
///     let ctx = ctx.clone();
///     move || ctx.wait()
/// });
/// cancel.cancel();
/// assert_eq!(worker.join().ok(), Some(goctx::Error::Canceled));
/// assert_eq!(format!("{ctx}"), "context.Background.WithCancel");
/// ```
#[doc(alias = "WithCancel")]
#[must_use = "dropping the CancelFunc cancels the context at once"]
pub fn with_cancel(parent: &Ctx) -> (Ctx, CancelFunc) {
    handles(CancelNode::new(parent.0.clone(), None, None))
}

/// Like [`with_cancel`]; the returned function can also record why it
/// canceled, with [`CancelFunc::cancel_with_cause`]. Go: `WithCancelCause`.
///
/// (Every [`CancelFunc`] can do that in goctx; this name exists so that Go
/// code ports word for word.)
///
/// # Examples
///
/// ```
/// let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
/// cancel.cancel_with_cause("shutting down");
/// assert_eq!(ctx.err(), Some(goctx::Error::Canceled));
/// assert_eq!(ctx.cause().map(|c| c.to_string()), Some("shutting down".into()));
/// ```
#[doc(alias = "WithCancelCause")]
#[must_use = "dropping the CancelFunc cancels the context at once"]
pub fn with_cancel_cause(parent: &Ctx) -> (Ctx, CancelFunc) {
    with_cancel(parent)
}

/// The context handle and the single `CancelFunc` of a fresh node.
pub(crate) fn handles(node: Arc<CancelNode>) -> (Ctx, CancelFunc) {
    let func = CancelFunc {
        node: Some(node.clone()),
    };
    (Ctx(Link::cancel(node)), func)
}

/// Cancels the context it was returned with. Go: `CancelFunc` and
/// `CancelCauseFunc` in one type.
///
/// Cancelling cancels every context derived from it too, before the call
/// returns; it does not wait for the work those contexts were guarding.
/// Only the first cancellation counts (for the error and for the cause
/// alike); later calls, from any thread, do nothing.
///
/// The function is `Clone`; dropping the **last** clone cancels the context
/// with [`Error::Canceled`], unless that clone was [`detach`](Self::detach)ed.
/// So the context ends, at the latest, when the code that created it is done
/// with it: Go's `defer cancel()` (and its `lostcancel` check) are built in.
#[must_use = "dropping the CancelFunc cancels the context at once"]
pub struct CancelFunc {
    /// Counted in `node.handles`. `None` only inside `detach`, which
    /// consumes the handle, so every other method sees `Some`.
    node: Option<Arc<CancelNode>>,
}

// Unwind safe for the reasons given at `Ctx`'s impls.
impl std::panic::UnwindSafe for CancelFunc {}
impl std::panic::RefUnwindSafe for CancelFunc {}

impl CancelFunc {
    /// Cancels the context with [`Error::Canceled`]; its cause is the error
    /// itself. Idempotent.
    #[doc(alias = "CancelFunc")]
    pub fn cancel(&self) {
        if let Some(node) = &self.node {
            node.cancel(Error::Canceled, CauseArg::Set(None), true);
            // If another cancellation got there first, wait for it to
            // finish the subtree: `cancel()` returning means "all done".
            node.wait_propagated();
        }
    }

    /// Cancels the context with [`Error::Canceled`] and records `cause` as
    /// [`Ctx::cause`]. If the context is already done, nothing changes: the
    /// first cause stays. Go: calling a `CancelCauseFunc`.
    ///
    /// `cause` is anything that converts into a boxed error, as for
    /// [`std::io::Error::new`]: a message (`&str`, `String`), any error
    /// type (found again with `cause.downcast_ref::<T>()`), a
    /// `Box<dyn Error + Send + Sync>`, or a [`Cause`](crate::Cause) (kept as
    /// the same shared value).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::fmt;
    ///
    /// #[derive(Debug)]
    /// struct Unreachable(&'static str);
    ///
    /// impl fmt::Display for Unreachable {
    ///     fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    ///         write!(f, "{} unreachable", self.0)
    ///     }
    /// }
    ///
    /// impl std::error::Error for Unreachable {}
    ///
    /// let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    /// cancel.cancel_with_cause(Unreachable("db"));
    /// let cause = ctx.cause().expect("canceled");
    /// assert_eq!(cause.to_string(), "db unreachable");
    /// assert!(cause.downcast_ref::<Unreachable>().is_some());
    ///
    /// let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    /// cancel.cancel_with_cause(format!("{} retries failed", 3));
    /// assert_eq!(ctx.cause().map(|c| c.to_string()).as_deref(), Some("3 retries failed"));
    /// ```
    pub fn cancel_with_cause<E>(&self, cause: E)
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Some(node) = &self.node {
            node.cancel(
                Error::Canceled,
                CauseArg::Set(Some(into_cause(cause))),
                true,
            );
            node.wait_propagated();
        }
    }

    /// `cancel_with_cause` with a cause that already is a shared [`Cause`]:
    /// no allocation (the HTTP layer's per-request causes are made once).
    #[cfg(feature = "http")]
    pub(crate) fn cancel_with_shared_cause(&self, cause: crate::Cause) {
        if let Some(node) = &self.node {
            node.cancel(Error::Canceled, CauseArg::Set(Some(cause)), true);
            node.wait_propagated();
        }
    }

    /// Gives this handle up without canceling. If it was the last handle,
    /// the context now ends only through its parent or its deadline; and
    /// if every `Ctx` handle of it is dropped too, it is simply freed (it
    /// leaves its parent's registry and the timer). This is Go's "never
    /// call cancel", without Go's leak.
    ///
    /// # Examples
    ///
    /// ```
    /// let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    /// cancel.detach();
    /// assert_eq!(ctx.err(), None);
    /// ```
    pub fn detach(self) {
        // Nothing is left for `Drop` to do once the handle is taken out.
        let mut this = std::mem::ManuallyDrop::new(self);
        if let Some(node) = this.node.take() {
            node.release_handle();
        }
    }

    /// Moves the deadline of a context made by
    /// [`with_deadline`](crate::with_deadline) or
    /// [`with_timeout`](crate::with_timeout) later, to `deadline`: the
    /// primitive behind "give this critical task more time".
    ///
    /// Goes beyond Go, where a deadline is fixed. The parent still bounds
    /// the child: extending past the parent's deadline is allowed but the
    /// parent ends the child at its own deadline. A `deadline` not later
    /// than the current one changes nothing. Contexts derived from this one
    /// without a deadline of their own follow the new deadline; those made
    /// with a deadline of their own keep it (and [`Ctx::deadline`](crate::Ctx::deadline)
    /// on them reports the sooner of the two).
    ///
    /// Returns the deadline in force afterwards.
    ///
    /// # Errors
    ///
    /// [`ExtendError::Done`](crate::ExtendError::Done) once the context is
    /// done (its deadline may already have fired), and
    /// [`ExtendError::NoDeadline`](crate::ExtendError::NoDeadline) when the
    /// context has no deadline of its own.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let (ctx, cancel) = goctx::with_timeout(&goctx::background(), Duration::from_secs(1));
    /// let later = Instant::now() + Duration::from_secs(10);
    /// assert_eq!(cancel.extend_deadline(later), Ok(later));
    /// assert_eq!(ctx.deadline(), Some(later));
    /// cancel.cancel();
    /// assert!(cancel.extend_deadline(later + Duration::from_secs(1)).is_err());
    /// ```
    pub fn extend_deadline(&self, deadline: Instant) -> Result<Instant, ExtendError> {
        match &self.node {
            Some(node) => node.extend_deadline(deadline),
            None => Err(ExtendError::NoDeadline),
        }
    }

    /// Whether the context is done (by this function, its parent or its
    /// deadline).
    pub fn is_canceled(&self) -> bool {
        self.node.as_ref().is_some_and(|node| node.err().is_some())
    }
}

impl Clone for CancelFunc {
    fn clone(&self) -> Self {
        if let Some(node) = &self.node {
            node.add_handle();
        }
        CancelFunc {
            node: self.node.clone(),
        }
    }
}

impl Drop for CancelFunc {
    fn drop(&mut self) {
        if let Some(node) = &self.node {
            // The last handle (see `release_handle` for the orderings).
            if node.release_handle() && node.err().is_none() {
                node.cancel(Error::Canceled, CauseArg::Dropped, true);
            }
        }
    }
}

impl fmt::Debug for CancelFunc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let err = self.node.as_ref().and_then(|node| node.err());
        f.debug_struct("CancelFunc").field("err", &err).finish()
    }
}

/// Returns a context with `parent`'s values but none of its cancellation:
/// never done, no deadline, no cause, even if `parent` already is done.
/// Go: `WithoutCancel`.
///
/// Use it for work that must finish after the request that started it
/// (an audit log write, a cache fill), while keeping its request values.
///
/// # Examples
///
/// ```
/// struct TraceId(u64);
///
/// let (ctx, cancel) = goctx::with_cancel(&goctx::background());
/// let ctx = goctx::with_value(&ctx, TraceId(7));
/// let detached = goctx::without_cancel(&ctx);
/// cancel.cancel();
/// assert_eq!(detached.err(), None);
/// assert_eq!(detached.deadline(), None);
/// assert_eq!(detached.value::<TraceId>().map(|t| t.0), Some(7));
/// ```
#[doc(alias = "WithoutCancel")]
pub fn without_cancel(parent: &Ctx) -> Ctx {
    Ctx(Link::without(&parent.0))
}
