//! The [`Context`] trait for user-implemented contexts, and its plumbing:
//! the [`Notify`] a user context is handed when something wants to know it
//! is done, and the [`Subscription`] it hands back.
//!
//! This is goctx's version of Go's `AfterFunc` hook for custom contexts
//! (the `afterFuncer` interface), made the only mechanism: no helper thread
//! ever watches a user context. Here every `Context` also becomes the
//! core's `Upstream`, the only face of it the core sees.

mod subscribers;

pub use subscribers::Subscribers;

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Weak;
use std::time::Instant;

use crate::error::{Cause, Error};
use crate::tree::{CustomNode, Entry, Registration, Upstream};

/// A context: a cancellation signal, an optional deadline and typed
/// request-scoped values, shared by everything working on one request.
///
/// This is the trait a user implements to plug a context type of their own
/// into the tree, the counterpart of implementing Go's `context.Context`
/// interface. Wrap an implementation with [`Ctx::from_context`](crate::Ctx::from_context); contexts
/// derived from it (with [`with_cancel`](crate::with_cancel) and friends)
/// then learn of its cancellation through [`subscribe`](Context::subscribe),
/// synchronously and without any helper thread.
///
/// [`Ctx`](crate::Ctx) itself implements this trait, which is how a wrapper delegates
/// to a context it holds.
///
/// All methods may be called concurrently from many threads.
///
/// # Examples
///
/// A context that adds a value to an inner context and delegates the rest:
///
/// ```
/// use std::any::{Any, TypeId};
/// use std::time::Instant;
/// use goctx::{Cause, Ctx, Error};
/// use goctx::custom::{Context, Notify, Subscription};
///
/// struct Tenant(&'static str);
///
/// struct TenantCtx {
///     inner: Ctx,
///     tenant: Tenant,
/// }
///
/// impl Context for TenantCtx {
///     fn deadline(&self) -> Option<Instant> { self.inner.deadline() }
///     fn err(&self) -> Option<Error> { self.inner.err() }
///     fn cause(&self) -> Option<Cause> { self.inner.cause() }
///     fn lookup(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)> {
///         if key == TypeId::of::<Tenant>() { Some(&self.tenant) } else { self.inner.lookup(key) }
///     }
///     fn subscribe(&self, notify: Notify) -> Subscription { self.inner.subscribe(notify) }
/// }
///
/// let (parent, cancel) = goctx::with_cancel(&goctx::background());
/// let ctx = Ctx::from_context(TenantCtx { inner: parent, tenant: Tenant("acme") });
/// let (child, _cancel_child) = goctx::with_cancel(&ctx);
/// assert_eq!(child.value::<Tenant>().map(|t| t.0), Some("acme"));
/// cancel.cancel();
/// assert_eq!(child.err(), Some(Error::Canceled)); // propagated synchronously
/// ```
///
/// A context with a done signal of its own keeps the `Notify`s it is
/// handed in a [`Subscribers`] list and calls its
/// `notify_all` when it ends; see the example there.
pub trait Context: Send + Sync + 'static {
    /// When this context will be canceled by its deadline, if it has one.
    /// Successive calls must return the same value.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// `None` while the context is live; afterwards why it ended. Once it
    /// returned `Some`, every later call must return the same error.
    fn err(&self) -> Option<Error>;

    /// Why the context ended, in more detail than [`err`](Context::err).
    /// Must be `None` while `err()` is `None`. The default reports the
    /// error itself.
    fn cause(&self) -> Option<Cause> {
        self.err().map(Error::into_cause)
    }

    /// The value stored under `key` (the [`TypeId`] of the value's type),
    /// if any. Wrappers should delegate misses to the context they wrap;
    /// the lookup stops at a context that does not. The default has no
    /// values.
    fn lookup(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)> {
        let _ = key;
        None
    }

    /// Asks to be told when this context is done.
    ///
    /// The implementation must call [`Notify::notify`] exactly once after
    /// `err()` starts returning `Some`, unless the returned
    /// [`Subscription`] is canceled first. If the context is already done
    /// it may call it right away, on the calling thread. `notify` never
    /// blocks; it may be called from any thread, but not while holding a
    /// lock that this context's own methods take (it reads `err()` and
    /// `cause()`).
    ///
    /// A context that can never be done drops `notify` and returns
    /// [`Subscription::never`].
    fn subscribe(&self, notify: Notify) -> Subscription;

    /// Writes this context's name, Go's `String()`. The default writes the
    /// implementing type's name.
    fn fmt_name(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::any::type_name::<Self>())
    }
}

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
    /// ([`Error::Canceled`]), so that what it
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
        f.debug_struct("Notify")
            .field("target", &self.entry.kind())
            .finish()
    }
}

/// The handle returned by [`Context::subscribe`]: cancels the subscription.
///
/// Dropping it keeps the subscription in place.
#[must_use = "dropping a Subscription keeps the registration; call `cancel` to remove it"]
pub struct Subscription(pub(crate) Registration);

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
        Subscription(Registration::Custom(Box::new(cancel)))
    }

    /// The subscription of a context that can never be done: nothing was
    /// registered, and `cancel` returns `true`.
    pub fn never() -> Self {
        Subscription(Registration::Never)
    }

    /// The subscription of a context that was already done and delivered
    /// the notification on the spot: `cancel` returns `false`.
    pub fn notified() -> Self {
        Subscription(Registration::Notified)
    }

    /// Removes the registration. Returns `true` if this prevented the
    /// notification, `false` if it was already delivered (or is being
    /// delivered right now).
    pub fn cancel(self) -> bool {
        self.0.cancel()
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.0.kind();
        f.debug_tuple("Subscription").field(&state).finish()
    }
}

/// Every user context is an `Upstream` for the core: the methods
/// delegate, and a subscription hands the user a `Notify` that knows where
/// it came from.
impl<C: Context> Upstream for C {
    fn deadline(&self) -> Option<Instant> {
        Context::deadline(self)
    }

    fn err(&self) -> Option<Error> {
        Context::err(self)
    }

    fn cause(&self) -> Option<Cause> {
        Context::cause(self)
    }

    fn lookup(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)> {
        Context::lookup(self, key)
    }

    fn subscribe(&self, entry: Entry, origin: Weak<CustomNode>) -> Registration {
        Context::subscribe(self, Notify { entry, origin }).0
    }

    fn fmt_name(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Context::fmt_name(self, f)
    }
}
