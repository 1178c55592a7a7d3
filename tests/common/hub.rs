//! The one subscriber list of the suite: what a user `Context` keeps of the
//! `Notify`s its `subscribe` is handed, to deliver them all when it ends
//! and to give one back when its `Subscription` is canceled.
//!
//! A test's user context keeps its own error (and cause), sets it first,
//! then calls [`Hub::fire`]; its `subscribe` is [`Hub::subscribe`]. A
//! context that never ends never fires its hub ([`NeverDone`] is the plain
//! one). A context that must do something of its own around a subscription
//! (panic on demand) uses [`Hub::register`] and [`Hub::unsubscribe`] and
//! builds the `Subscription` itself.
//!
//! Nothing is delivered or dropped under the hub's lock: a `Notify` cancels
//! derived contexts and may call back into the user context (its `err()`),
//! or reach another hub.
//!
//! `examples/leakcheck.rs` includes this file too (by `#[path]`), so it may
//! use only `std` and goctx.

use std::collections::BTreeMap;
use std::panic;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use goctx::{Context, Error, Notify, Subscription};

/// The pending notifications of one user context, and whether it ended.
#[derive(Default)]
pub struct Hub {
    state: Mutex<HubState>,
}

#[derive(Default)]
struct HubState {
    /// The id the next registration gets.
    next_id: u64,
    /// Pending notifications by id, in the order they were registered.
    waiting: BTreeMap<u64, Notify>,
    /// Set by the first `fire`: later subscribers are notified on the spot.
    fired: bool,
}

impl Hub {
    fn state(&self) -> MutexGuard<'_, HubState> {
        // A poisoned lock only means an assertion failed elsewhere.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What a user context's `subscribe` returns: `notify` registered, or,
    /// if the hub already fired, delivered at once
    /// ([`Subscription::notified`]). Canceling the subscription is
    /// [`Hub::unsubscribe`].
    pub fn subscribe(self: &Arc<Self>, notify: Notify) -> Subscription {
        match self.register(notify) {
            Some(id) => {
                let hub = Arc::clone(self);
                Subscription::new(move || hub.unsubscribe(id))
            }
            None => Subscription::notified(),
        }
    }

    /// Registers `notify` and returns its id; or, if the hub already fired,
    /// delivers it at once (outside the lock) and returns `None`.
    pub fn register(&self, notify: Notify) -> Option<u64> {
        let mut state = self.state();
        if state.fired {
            drop(state);
            notify.notify();
            return None;
        }
        let id = state.next_id;
        state.next_id += 1;
        state.waiting.insert(id, notify);
        Some(id)
    }

    /// Takes back registration `id`: its `Notify` is dropped at once (so
    /// whatever it would have canceled is not kept alive). Returns `true`
    /// if it was still pending, `false` if it was already delivered (what
    /// a `Subscription`'s cancel function returns).
    pub fn unsubscribe(&self, id: u64) -> bool {
        // The guard is gone at the end of this statement, before the
        // `Notify` is dropped.
        let removed = self.state().waiting.remove(&id);
        removed.is_some()
    }

    /// Delivers every pending notification, outside the lock, in the order
    /// they were registered; later subscribers are notified on the spot.
    /// The owner must already report its error. Firing again delivers
    /// nothing.
    ///
    /// A notification that panics (a user `err()` that panics while the
    /// derived context reads it) does not stop the others: all are
    /// delivered, then the first panic is resumed.
    pub fn fire(&self) {
        let waiting = {
            let mut state = self.state();
            state.fired = true;
            std::mem::take(&mut state.waiting)
        };
        let mut first_panic = None;
        for notify in waiting.into_values() {
            if let Err(payload) = panic::catch_unwind(move || notify.notify()) {
                first_panic.get_or_insert(payload);
            }
        }
        if let Some(payload) = first_panic {
            panic::resume_unwind(payload);
        }
    }

    /// How many notifications are pending: the live subscriptions, the
    /// Rust counterpart of Go's number of registered `AfterFunc`s.
    pub fn len(&self) -> usize {
        self.state().waiting.len()
    }

    /// Whether no notification is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A user context that is never done but keeps its own subscriber list in
/// `.0` (never fired), so derived contexts register with user code and must
/// unregister: `.0.is_empty()` once they are gone.
pub struct NeverDone(pub Arc<Hub>);

impl Context for NeverDone {
    fn err(&self) -> Option<Error> {
        None
    }
    fn subscribe(&self, notify: Notify) -> Subscription {
        self.0.subscribe(notify)
    }
}
