//! Plumbing for user-implemented contexts: the [`Notify`] a custom context
//! is handed when something wants to know it is done, and the
//! [`Subscription`] it hands back.
//!
//! This is goctx's version of Go's `AfterFunc` hook for custom contexts
//! (the `afterFuncer` interface), made the only mechanism: no helper thread
//! ever watches a custom context.

use std::fmt;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use crate::context::Context;
use crate::error::{Cause, Error};

use crate::tree::{CancelNode, Entry};

/// A one-shot notification that a context is done.
///
/// A [`Context`] implementation receives one from every
/// [`subscribe`](Context::subscribe) call and must call
/// [`notify`](Notify::notify) once its `err()` returns `Some`. Behind it is
/// a derived context to cancel, a task to wake, or an `after_func` callback
/// to start on a helper thread: it never blocks and never runs user
/// callbacks on the calling thread, except in the last resort of
/// [`after_func`](crate::after_func) (no callback thread exists and the
/// system refuses to start one).
///
/// Dropping a `Notify` without calling it is allowed (it is how a context
/// that can never be done declines).
#[must_use = "a Notify does nothing unless `notify` is called"]
pub struct Notify {
    /// What to cancel, wake or start.
    entry: Entry,
    /// The user context that handed this out (through
    /// `CustomNode::subscribe`), so that a notification it delivers while
    /// its own `err()` still says `None` can be recorded as an end. Weak: a
    /// user context keeps the `Notify`s it was given, and must not keep
    /// itself alive through them.
    origin: Weak<CustomNode>,
}

// Unwind safe for the reasons given at `Ctx`'s impls: a notification is
// consumed by the one call that delivers it.
impl std::panic::UnwindSafe for Notify {}
impl std::panic::RefUnwindSafe for Notify {}

impl Notify {
    pub(crate) fn into_entry(self) -> Entry {
        self.entry
    }

    /// Delivers the notification: cancels the derived context (with the
    /// error and cause the subscribed context now reports), wakes the
    /// waiting task, or schedules the callback.
    ///
    /// A context that notifies while its `err()` still returns `None`
    /// breaks the contract; goctx then treats it as canceled from here on
    /// ([`Error::Canceled`](crate::Error::Canceled)), so that what it
    /// reports and what its derived contexts report agree.
    pub fn notify(self) {
        if let Some(origin) = self.origin.upgrade() {
            origin.end_notified();
        }
        self.entry.fire();
    }
}

impl fmt::Debug for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.entry {
            Entry::Child(_) | Entry::Merged(_) => "context",
            Entry::Waker(_) => "waker",
            Entry::After(_) => "after_func",
        };
        f.debug_struct("Notify").field("target", &target).finish()
    }
}

/// The handle returned by [`Context::subscribe`]: cancels the subscription.
///
/// Dropping it keeps the subscription in place.
#[must_use = "dropping a Subscription keeps the registration; call `cancel` to remove it"]
pub struct Subscription(SubRepr);

enum SubRepr {
    /// The context can never be done: nothing is registered.
    Never,
    /// The notification has already been delivered.
    Notified,
    /// Registered in a library node's registry at this slot.
    Node { node: Weak<CancelNode>, slot: usize },
    /// Registered with a user context; this closure takes it back.
    Custom(Box<dyn FnOnce() -> bool + Send + Sync>),
}

// Unwind safe: consumed by the one `cancel` call that takes it back; a user
// closure behind it is called at most once, by value.
impl std::panic::UnwindSafe for Subscription {}
impl std::panic::RefUnwindSafe for Subscription {}

impl Subscription {
    /// A subscription that `cancel` takes back by calling `cancel`, which
    /// must return `true` if the notification had not been delivered (and
    /// now never will be), `false` otherwise.
    pub fn new<F>(cancel: F) -> Self
    where
        F: FnOnce() -> bool + Send + Sync + 'static,
    {
        Subscription(SubRepr::Custom(Box::new(cancel)))
    }

    /// The subscription of a context that can never be done: nothing was
    /// registered, and `cancel` returns `true`.
    pub fn never() -> Self {
        Subscription(SubRepr::Never)
    }

    /// The subscription of a context that was already done and delivered
    /// the notification on the spot: `cancel` returns `false`.
    pub fn notified() -> Self {
        Subscription(SubRepr::Notified)
    }

    /// Whether this is [`Subscription::never`].
    pub(crate) fn is_never(&self) -> bool {
        matches!(self.0, SubRepr::Never)
    }

    pub(crate) fn node(node: &Arc<CancelNode>, slot: usize) -> Self {
        Subscription(SubRepr::Node {
            node: Arc::downgrade(node),
            slot,
        })
    }

    /// Removes the registration. Returns `true` if this prevented the
    /// notification, `false` if it was already delivered (or is being
    /// delivered right now).
    pub fn cancel(self) -> bool {
        match self.0 {
            SubRepr::Never => true,
            SubRepr::Notified => false,
            SubRepr::Node { node, slot } => {
                node.upgrade().is_some_and(|node| node.deregister(slot))
            }
            SubRepr::Custom(cancel) => cancel(),
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.0 {
            SubRepr::Never => "never",
            SubRepr::Notified => "notified",
            SubRepr::Node { .. } => "registered",
            SubRepr::Custom(_) => "custom",
        };
        f.debug_tuple("Subscription").field(&state).finish()
    }
}

/// A user context inside a `Ctx`, with the answer goctx has already given
/// about it.
///
/// A user's methods may disagree with each other (a done `err()` with no
/// `cause()`, an `err()` that goes back to `None`, a notification before
/// `err()` says done). goctx's own promises must hold anyway, so the first
/// time it sees the context done it records the error and answers from
/// that record from then on: `err()` never goes back to `None` or changes,
/// and `done()`, derived contexts and callbacks all see that error.
/// `cause()` is `Some` exactly when `err()` is: the user's cause, or else
/// the error itself, as Go does since golang/go#73258. The cause is asked
/// each time, not recorded, as in Go (whose tests pin that a custom context
/// finding its cause through its parent reports the parent's later cause).
pub(crate) struct CustomNode {
    context: Box<dyn Context>,
    /// The recorded error: set once, by the first `err()` (or notification)
    /// that finds the context done; never changed afterwards.
    ended: OnceLock<Error>,
}

impl CustomNode {
    pub(crate) fn new(context: Box<dyn Context>) -> Self {
        CustomNode {
            context,
            ended: OnceLock::new(),
        }
    }

    pub(crate) fn context(&self) -> &dyn Context {
        &*self.context
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.context.deadline()
    }

    /// The user's `err()`, made monotonic: once `Some`, always the same.
    /// Two racing first callers may see different user answers; the first
    /// recorded wins and both return it.
    pub(crate) fn err(&self) -> Option<Error> {
        if let Some(err) = self.ended.get() {
            return Some(*err);
        }
        let err = self.context.err()?;
        Some(*self.ended.get_or_init(|| err))
    }

    /// `Some` exactly when `err()` is: the user's cause, or the error.
    pub(crate) fn cause(&self) -> Option<Cause> {
        let err = self.err()?;
        Some(self.context.cause().unwrap_or_else(|| err.into_cause()))
    }

    /// A notification arrived: the context is done, whatever its `err()`
    /// says (see `Notify::notify`).
    fn end_notified(&self) {
        if self.err().is_none() {
            let _ = self.ended.set(Error::Canceled);
        }
    }

    /// Subscribes `entry` with the user context; the `Notify` it is handed
    /// knows where it came from (see `Notify::origin`).
    pub(crate) fn subscribe(self: &Arc<Self>, entry: Entry) -> Subscription {
        self.context.subscribe(Notify {
            entry,
            origin: Arc::downgrade(self),
        })
    }
}
