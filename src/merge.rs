//! `merge`: a context that ends when either of two contexts does.

use crate::cancel::{CancelFunc, handles};
use crate::context::Ctx;
use crate::tree::CancelNode;

/// Returns a child of `parent` that is also canceled when `other` is done:
/// it ends when `parent` ends, when `other` ends, or when the returned
/// [`CancelFunc`] is called or dropped, whichever happens first. Go: no
/// function; the declined proposal golang/go#36503 (`context.Merge`), which
/// Go code writes with `WithCancelCause` and `AfterFunc` (Go's
/// `ExampleAfterFunc_merge`).
///
/// - **Values** come from `parent` only; `other` contributes none.
/// - **Error and cause** are those of whichever ended it first: `parent`'s
///   (as for a [`with_cancel`](crate::with_cancel) child), `other`'s (the
///   very [`Cause`](crate::Cause) `other` reports, so
///   `cause.downcast_ref::<T>()` finds the type given to `other`'s
///   [`cancel_with_cause`](CancelFunc::cancel_with_cause)), or the
///   `CancelFunc`'s. When `parent` and `other` are canceled at the same
///   time from two threads, exactly one of them wins, for the error and
///   the cause alike.
/// - **Deadline**: [`Ctx::deadline`] reports the earlier of `parent`'s and
///   `other`'s, read when asked, so it follows
///   [`extend_deadline`](CancelFunc::extend_deadline) on either. The
///   context has no deadline of its own: `extend_deadline` on the returned
///   function fails with [`ExtendError::NoDeadline`](crate::ExtendError::NoDeadline).
/// - **Already done**: if `parent` is done, the context is born done with
///   `parent`'s error and cause; else if `other` is, with `other`'s. (If
///   both are, `parent` wins, as a Go child checks its parent first.)
/// - **No thread, no task**: the context registers with `other` as a child
///   registers with its parent (or through [`Context::subscribe`](crate::custom::Context::subscribe)
///   when `other` is a user context), synchronously. It takes that
///   registration back as soon as it ends, for any reason, or is dropped,
///   so a long-lived `other` (a server's shutdown context) never
///   accumulates entries: its [`dependents`](Ctx::dependents) count comes
///   back down. If `other` can never be done (a root,
///   [`without_cancel`](crate::without_cancel)), nothing is registered.
/// - The merged context holds `other` alive (for its deadline and name),
///   as it holds `parent`.
///
/// Each call returns a new, independent context; merging the same pair
/// twice registers twice. Its `Display` name is `parent`'s followed by
/// `.WithMerge(` and `other`'s name `)`.
///
/// # Examples
///
/// A request that ends when its client goes away or when the server shuts
/// down, whichever comes first:
///
/// ```
/// #[derive(Debug)]
/// struct ShuttingDown;
///
/// impl std::fmt::Display for ShuttingDown {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("server shutting down")
///     }
/// }
///
/// impl std::error::Error for ShuttingDown {}
///
/// let (shutdown, shut_down) = goctx::with_cancel_cause(&goctx::background());
/// let (request, _client_gone) = goctx::with_cancel_cause(&goctx::background());
///
/// let (ctx, _cancel) = goctx::merge(&request, &shutdown);
/// assert_eq!(shutdown.dependents(), 1);
/// assert_eq!(ctx.to_string(), "context.Background.WithCancel.WithMerge(context.Background.WithCancel)");
///
/// shut_down.cancel_with_cause(ShuttingDown);
/// assert_eq!(ctx.err(), Some(goctx::Error::Canceled));
/// let cause = ctx.cause().ok_or("no cause")?;
/// assert!(cause.downcast_ref::<ShuttingDown>().is_some());
/// assert_eq!(request.err(), None); // only the merged context ended
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Dropping the merged context (here, its `CancelFunc` cancels it first)
/// leaves nothing behind in either input:
///
/// ```
/// let (shutdown, _stop) = goctx::with_cancel(&goctx::background());
/// let (request, _done) = goctx::with_cancel(&goctx::background());
/// for _ in 0..3 {
///     let (_ctx, _cancel) = goctx::merge(&request, &shutdown);
/// }
/// assert_eq!(shutdown.dependents(), 0);
/// assert_eq!(request.dependents(), 0);
/// ```
#[doc(alias = "Merge")]
#[must_use = "dropping the CancelFunc cancels the context at once"]
pub fn merge(parent: &Ctx, other: &Ctx) -> (Ctx, CancelFunc) {
    // The parent is attached first: if both are done, the merged context
    // has the parent's error and cause.
    handles(CancelNode::new_merge(parent.0.clone(), other.0.clone()))
}
