//! Who is told when a node is done: the [`Entry`] kinds, the per-node
//! [`Registry`] that holds them, the [`Registration`] handle that takes
//! one back, and [`deliver_each`], which tells them (user code: a panic in
//! one does not stop the others).
//!
//! Every insertion checks the state under the node's lock first
//! (invariant 2), and whoever ends the node takes the whole registry out in
//! the same critical section (invariant 1): so an entry is either notified
//! or handed back to its inserter, never lost.

use std::mem;
use std::sync::{Arc, Weak};
use std::task::Waker;

use super::node::CancelNode;
use crate::error::Cause;

/// Something started once a context is done: the core's side of
/// `after_func`, which implements it (the core never names the callback
/// machinery).
pub(crate) trait Callback: Send + Sync + 'static {
    /// The context is done. Called once, with no goctx lock held; must not
    /// block (the callback itself runs elsewhere).
    fn start(self: Arc<Self>);
}

/// Something to notify when a node is done.
pub(crate) enum Entry {
    /// A child node: cancel it with the same error and cause.
    Child(Weak<CancelNode>),
    /// A pending `done()` future (or a blocked `wait()`): wake it.
    Waker(Waker),
    /// An `after_func` registration: start its callback.
    Callback(Arc<dyn Callback>),
    /// A merge node registered with its other parent: cancel it with that
    /// parent's error and cause (not with its own parent's, which is what
    /// `Child` would read).
    Merged(Weak<CancelNode>),
}

impl Entry {
    /// Delivers the notification. Called without any goctx lock held.
    pub(crate) fn fire(self) {
        match self {
            Entry::Child(child) => {
                if let Some(child) = child.upgrade() {
                    child.cancel_from_parent();
                }
            }
            Entry::Merged(node) => {
                if let Some(node) = node.upgrade() {
                    node.cancel_from_other();
                }
            }
            Entry::Waker(waker) => waker.wake(),
            Entry::Callback(callback) => callback.start(),
        }
    }

    /// What the entry stands for, for `Debug` output.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Entry::Child(_) | Entry::Merged(_) => "context",
            Entry::Waker(_) => "waker",
            Entry::Callback(_) => "after_func",
        }
    }
}

/// Runs `deliver` on every item, even after one panics (user code: a waker,
/// a user context's unsubscription); returns the first panic, for the
/// caller to resume once everything was delivered.
pub(crate) fn deliver_each<T>(
    items: impl IntoIterator<Item = T>,
    mut deliver: impl FnMut(T),
) -> Option<Box<dyn std::any::Any + Send>> {
    let mut first_panic = None;
    for item in items {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| deliver(item)));
        if let Err(payload) = result {
            first_panic.get_or_insert(payload);
        }
    }
    first_panic
}

/// Where an entry was registered, so it can be taken back. The public
/// `Subscription` wraps one.
pub(crate) enum Registration {
    /// The context can never be done: nothing is registered.
    Never,
    /// The notification has already been delivered.
    Notified,
    /// In a library node's registry, at this slot.
    Node { node: Weak<CancelNode>, slot: usize },
    /// With a user context; this closure takes it back.
    Custom(Box<dyn FnOnce() -> bool + Send + Sync>),
}

impl Registration {
    pub(crate) fn is_never(&self) -> bool {
        matches!(self, Registration::Never)
    }

    /// Removes the registration. `true` if this prevented the
    /// notification, `false` if it was already delivered (or is being
    /// delivered right now).
    pub(crate) fn cancel(self) -> bool {
        match self {
            Registration::Never => true,
            Registration::Notified => false,
            Registration::Node { node, slot } => {
                node.upgrade().is_some_and(|node| node.deregister(slot))
            }
            Registration::Custom(cancel) => cancel(),
        }
    }

    /// Its state, for `Debug` output.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Registration::Never => "never",
            Registration::Notified => "notified",
            Registration::Node { .. } => "registered",
            Registration::Custom(_) => "custom",
        }
    }
}

/// A node's registrations. Most nodes have none or one (a chain of
/// contexts, a single waiter), kept inline; more move to a slab.
#[derive(Default)]
pub(super) enum Registry {
    #[default]
    Empty,
    /// One entry, at index 0.
    One(Entry),
    /// Any number, in a slab (kept once allocated, reused).
    Many(Box<Slab>),
    /// The node is done and was ended with this cause. Nothing registers
    /// with a done node, so the space entries took holds its cause: ending
    /// with a cause allocates nothing. (A deadline cause that fired stays
    /// in `Extra`, where it was while the node was live.)
    Ended(Cause),
}

impl Registry {
    pub(super) fn len(&self) -> usize {
        match self {
            Registry::Empty | Registry::Ended(_) => 0,
            Registry::One(_) => 1,
            Registry::Many(slab) => slab.len(),
        }
    }

    #[inline(always)]
    pub(super) fn insert(&mut self, entry: Entry) -> usize {
        match self {
            Registry::Empty => {
                // The old value owns nothing: forgotten rather than handed
                // to the (out-of-line) drop glue that `*self = ...` calls.
                mem::forget(mem::replace(self, Registry::One(entry)));
                0
            }
            Registry::Many(slab) => slab.insert(entry),
            Registry::Ended(_) => unreachable!("an entry inserted into a done node"),
            Registry::One(_) => {
                let Registry::One(first) = mem::take(self) else {
                    unreachable!("matched One above")
                };
                // The first entry keeps index 0 in the slab.
                let mut slab = Box::<Slab>::default();
                slab.insert(first);
                let index = slab.insert(entry);
                *self = Registry::Many(slab);
                index
            }
        }
    }

    #[inline(always)]
    pub(super) fn remove(&mut self, index: usize) -> Option<Entry> {
        match self {
            Registry::Empty | Registry::Ended(_) => None,
            Registry::One(_) if index == 0 => match mem::take(self) {
                Registry::One(entry) => Some(entry),
                _ => None,
            },
            Registry::One(_) => None,
            Registry::Many(slab) => slab.remove(index),
        }
    }

    pub(super) fn get_mut(&mut self, index: usize) -> Option<&mut Entry> {
        match self {
            Registry::One(entry) if index == 0 => Some(entry),
            Registry::Many(slab) => slab.get_mut(index),
            _ => None,
        }
    }

    pub(super) fn into_entries(self) -> impl Iterator<Item = Entry> {
        // An empty slab stands in for a missing one (it allocates nothing),
        // which spares a level of iterator.
        let (one, many) = match self {
            Registry::Empty => (None, Slab::default().into_entries()),
            // A done node's cause, dropped out of line: this path is never
            // taken (only a live node's entries are taken out), and its drop
            // glue inline costs every cancel walk a few instructions.
            Registry::Ended(cause) => {
                drop_cold(cause);
                (None, Slab::default().into_entries())
            }
            Registry::One(entry) => (Some(entry), Slab::default().into_entries()),
            Registry::Many(slab) => (None, (*slab).into_entries()),
        };
        one.into_iter().chain(many)
    }
}

/// A slab of entries with a free list: O(1) insert and remove by index,
/// indexes stable while an entry is present.
pub(super) struct Slab {
    slots: Vec<Slot>,
    /// Head of the free list (an index into `slots`), or `NO_FREE`.
    free: usize,
    /// Occupied slots.
    len: usize,
}

const NO_FREE: usize = usize::MAX;

enum Slot {
    Full(Entry),
    /// A free slot, linking to the next free one.
    Vacant(usize),
}

impl Default for Slab {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: NO_FREE,
            len: 0,
        }
    }
}

impl Slab {
    fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn insert(&mut self, entry: Entry) -> usize {
        self.len += 1;
        if let Some(&Slot::Vacant(next)) = self.slots.get(self.free) {
            let index = self.free;
            self.free = next;
            self.slots[index] = Slot::Full(entry);
            index
        } else {
            // The free list is empty: grow.
            self.slots.push(Slot::Full(entry));
            self.slots.len() - 1
        }
    }

    fn remove(&mut self, index: usize) -> Option<Entry> {
        let slot = self.slots.get_mut(index)?;
        if matches!(slot, Slot::Vacant(_)) {
            return None;
        }
        let Slot::Full(entry) = mem::replace(slot, Slot::Vacant(self.free)) else {
            return None;
        };
        self.free = index;
        self.len -= 1;
        if self.len == 0 {
            // Forget the free list; give memory back after a burst, keep a
            // small buffer for the common one-child-at-a-time pattern.
            self.free = NO_FREE;
            if self.slots.capacity() > 64 {
                self.slots = Vec::new();
            } else {
                self.slots.clear();
            }
        }
        Some(entry)
    }

    fn get_mut(&mut self, index: usize) -> Option<&mut Entry> {
        match self.slots.get_mut(index) {
            Some(Slot::Full(entry)) => Some(entry),
            _ => None,
        }
    }

    fn into_entries(self) -> impl Iterator<Item = Entry> {
        self.slots.into_iter().filter_map(|slot| match slot {
            Slot::Full(entry) => Some(entry),
            Slot::Vacant(_) => None,
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::task::Waker;

    use super::{Entry, Registry};

    #[test]
    fn the_registry_reuses_freed_slots() {
        let mut registry = Registry::default();
        let a = registry.insert(Entry::Waker(Waker::noop().clone()));
        let b = registry.insert(Entry::Waker(Waker::noop().clone()));
        assert!(registry.remove(a).is_some());
        assert!(
            registry.remove(a).is_none(),
            "a vacant slot cannot be removed twice"
        );
        assert_eq!(registry.insert(Entry::Waker(Waker::noop().clone())), a);
        assert_eq!(registry.len(), 2);
        assert!(registry.remove(b).is_some());
        assert!(registry.remove(a).is_some());
        assert_eq!(registry.len(), 0);
        assert_eq!(
            registry.insert(Entry::Waker(Waker::noop().clone())),
            0,
            "emptied, starts over"
        );
    }
}

/// Drops `cause` in a function of its own, kept out of the hot path.
#[cold]
#[inline(never)]
fn drop_cold(cause: Cause) {
    drop(cause);
}
