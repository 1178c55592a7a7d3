//! Plumbing for user-implemented contexts: the [`Notify`] a custom context
//! is handed when something wants to know it is done, and the
//! [`Subscription`] it hands back.
//!
//! This is goctx's version of Go's `AfterFunc` hook for custom contexts
//! (the `afterFuncer` interface), made the only mechanism: no helper thread
//! ever watches a custom context.

use std::fmt;
use std::sync::{Arc, Weak};

use crate::context::Context;
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
pub struct Notify(Entry);

impl Notify {
    pub(crate) fn new(entry: Entry) -> Self {
        Notify(entry)
    }

    pub(crate) fn into_entry(self) -> Entry {
        self.0
    }

    /// Delivers the notification: cancels the derived context (with the
    /// error and cause the subscribed context now reports), wakes the
    /// waiting task, or schedules the callback.
    pub fn notify(self) {
        self.0.fire();
    }
}

impl fmt::Debug for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.0 {
            Entry::Child(_) => "context",
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

/// A user context inside a `Ctx`.
pub(crate) struct CustomNode {
    context: Box<dyn Context>,
}

impl CustomNode {
    pub(crate) fn new(context: Box<dyn Context>) -> Self {
        CustomNode { context }
    }

    pub(crate) fn context(&self) -> &dyn Context {
        &*self.context
    }
}
