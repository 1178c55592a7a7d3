//! [`Subscribers`]: the subscriber list a user-implemented [`Context`]
//! keeps, so that implementing `subscribe` is one line.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::{Notify, Subscription};
use crate::sync::Mutex;
use crate::tree::deliver_each;

#[cfg(doc)]
use super::Context;

/// The [`Notify`]s a user-implemented [`Context`] has been handed, to
/// deliver them all when it ends. Its [`subscribe`](Subscribers::subscribe)
/// is what [`Context::subscribe`] returns, and
/// [`notify_all`](Subscribers::notify_all) is what the context calls once
/// its `err()` reports the end. Go: what a custom context with its own
/// `Done` channel gets from closing it.
///
/// - Subscribing after `notify_all` notifies at once, on the caller's
///   thread, and returns [`Subscription::notified`].
/// - Canceling a [`Subscription`] takes its `Notify` back and drops it at
///   once, so whatever it would have canceled is not kept alive.
/// - Nothing is delivered or dropped while the list's lock is held: a
///   `Notify` may call back into the context (its `err()`), so `notify_all`
///   delivers after unlocking, in the order of subscription.
///
/// Cloning is cheap and every clone is the same list.
///
/// # Panics
///
/// `notify_all` delivers every notification even if one panics (a derived
/// context reading a user `err()` that panics), then resumes the first
/// panic.
///
/// # Examples
///
/// A context that ends when a switch is turned off:
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use goctx::{Ctx, Error};
/// use goctx::custom::{Context, Notify, Subscribers, Subscription};
///
/// #[derive(Default)]
/// struct Switch {
///     off: AtomicBool,
///     subscribers: Subscribers,
/// }
///
/// struct SwitchCtx(Arc<Switch>);
///
/// impl Context for SwitchCtx {
///     fn err(&self) -> Option<Error> {
///         self.0.off.load(Ordering::Acquire).then_some(Error::Canceled)
///     }
///     fn subscribe(&self, notify: Notify) -> Subscription {
///         self.0.subscribers.subscribe(notify)
///     }
/// }
///
/// let switch = Arc::new(Switch::default());
/// let ctx = Ctx::from_context(SwitchCtx(Arc::clone(&switch)));
/// let (child, _cancel) = goctx::with_cancel(&ctx);
/// assert_eq!(switch.subscribers.len(), 1);
///
/// switch.off.store(true, Ordering::Release); // `err()` first,
/// switch.subscribers.notify_all(); // then the notifications
/// assert_eq!(child.err(), Some(Error::Canceled));
/// assert!(switch.subscribers.is_empty());
/// ```
#[derive(Clone, Default)]
pub struct Subscribers {
    state: Arc<Mutex<State>>,
}

/// Guarded by `Subscribers::state`.
#[derive(Default)]
struct State {
    /// The key the next subscription gets.
    next: u64,
    /// Pending notifications by key, in the order they subscribed.
    pending: BTreeMap<u64, Notify>,
    /// Set by the first `notify_all`; never cleared.
    notified: bool,
}

impl Subscribers {
    /// An empty list.
    pub fn new() -> Subscribers {
        Subscribers::default()
    }

    /// Keeps `notify` until [`notify_all`](Subscribers::notify_all), or
    /// notifies it at once if that has been called. Returns the
    /// [`Subscription`] that takes it back: its `cancel` returns `true` if
    /// it took the `Notify` back before delivery.
    pub fn subscribe(&self, notify: Notify) -> Subscription {
        let mut state = self.state.lock();
        if state.notified {
            drop(state);
            notify.notify();
            return Subscription::notified();
        }
        let key = state.next;
        state.next += 1;
        state.pending.insert(key, notify);
        drop(state);
        let list = Arc::clone(&self.state);
        Subscription::new(move || {
            // The lock is released at the end of this statement, before
            // the `Notify` taken back is dropped.
            let taken = list.lock().pending.remove(&key);
            taken.is_some()
        })
    }

    /// Delivers every pending notification, with no lock held, in the
    /// order they subscribed; later subscribers are notified at once. Call
    /// it after the context's `err()` reports the end. Calling it again
    /// delivers nothing.
    ///
    /// # Panics
    ///
    /// If a notification panics, the others are still delivered; then the
    /// first panic is resumed.
    pub fn notify_all(&self) {
        let pending = {
            let mut state = self.state.lock();
            state.notified = true;
            std::mem::take(&mut state.pending)
        };
        if let Some(payload) = deliver_each(pending.into_values(), Notify::notify) {
            std::panic::resume_unwind(payload);
        }
    }

    /// Whether [`notify_all`](Subscribers::notify_all) has been called.
    pub fn is_notified(&self) -> bool {
        self.state.lock().notified
    }

    /// How many notifications are pending: the live subscriptions (the
    /// counterpart of Go's number of registered `AfterFunc`s, or of
    /// watcher goroutines).
    pub fn len(&self) -> usize {
        self.state.lock().pending.len()
    }

    /// Whether no notification is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Subscribers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("Subscribers")
            .field("pending", &state.pending.len())
            .field("notified", &state.notified)
            .finish()
    }
}

// Unwind safe as the other public types: a panic in a delivered
// notification leaves the list consistent (it was emptied first).
impl std::panic::UnwindSafe for Subscribers {}
impl std::panic::RefUnwindSafe for Subscribers {}
