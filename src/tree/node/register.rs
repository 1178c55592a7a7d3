//! The node's side of registries: inserting an entry in its own under the
//! lock (`insert_locked`, `register`, a `done()` future's `poll_register`),
//! taking one back (`deregister`), counting them, the shard set that
//! spreads a contended node's children (`make_shards`, `take_shards`), and
//! taking the node's own entry out of its parent's (`unlink`). The entry
//! and registry types are in `registry.rs`, the shards in `shards.rs`.

use std::mem;
use std::sync::Arc;
use std::task::Waker;

use super::{CancelNode, Inner};
use crate::error::Error;
use crate::sync::Ordering;
use crate::tree::link::Source;
use crate::tree::registry::{Entry, Registration};
use crate::tree::shards;
use crate::tree::state::REGISTRY;

impl CancelNode {
    /// Inserts `entry` into the registry; `inner` is this node's locked
    /// state. Returns the entry back if the node is done.
    #[inline(always)]
    pub(super) fn insert_locked(&self, inner: &mut Inner, entry: Entry) -> Result<usize, Entry> {
        let state = self.state.relaxed();
        if !state.is_live() {
            return Err(entry);
        }
        if !state.has(REGISTRY) {
            // The read-modify-write is what stops a racing lock-free
            // cancel (invariant 1); if that cancel came first, we see it.
            let prev = self.state.set_flag(REGISTRY, Ordering::Relaxed);
            if !prev.is_live() {
                return Err(entry);
            }
        }
        Ok(inner.registry.insert(entry))
    }

    /// Registers `entry` with this node, or returns it if the node is
    /// already done (the caller then notifies it at once).
    pub(crate) fn register(self: &Arc<Self>, entry: Entry) -> Registration {
        let mut inner = self.inner.lock();
        match self.insert_locked(&mut inner, entry) {
            Ok(slot) => Registration::Node {
                node: Arc::downgrade(self),
                slot,
            },
            Err(entry) => {
                drop(inner);
                entry.fire();
                Registration::Notified
            }
        }
    }

    /// Removes a registration made by `register`. Returns whether it was
    /// still there (false once the node is done: it was notified).
    pub(crate) fn deregister(&self, slot: usize) -> bool {
        let mut inner = self.inner.lock();
        if !self.state.relaxed().is_live() {
            return false;
        }
        let entry = inner.registry.remove(slot);
        drop(inner);
        // Dropped unlocked: a waker's drop may free a task that owns
        // contexts (invariant 4).
        entry.is_some()
    }

    /// Registers or refreshes the waker of a `done()` future. Returns the
    /// error if the node is done (checked under the lock: invariant 2).
    ///
    /// The waker is cloned before the lock is taken: `Waker::clone` is
    /// executor code (invariant 4).
    pub(crate) fn poll_register(&self, slot: &mut Option<usize>, waker: &Waker) -> Option<Error> {
        match slot {
            Some(index) => {
                let new = waker.clone();
                let mut inner = self.inner.lock();
                if let Some(err) = self.state.relaxed().err() {
                    *slot = None;
                    drop(inner);
                    drop(new);
                    return Some(err);
                }
                let old = match inner.registry.get_mut(*index) {
                    Some(Entry::Waker(old)) if !old.will_wake(waker) => {
                        Some(mem::replace(old, new))
                    }
                    _ => None,
                };
                drop(inner);
                // Dropped unlocked (invariant 4).
                drop(old);
            }
            None => {
                let entry = Entry::Waker(waker.clone());
                let mut inner = self.inner.lock();
                match self.insert_locked(&mut inner, entry) {
                    Ok(index) => *slot = Some(index),
                    // Done (perhaps by a lock-free cancel since the
                    // caller's check).
                    Err(entry) => {
                        drop(inner);
                        drop(entry);
                        return self.err();
                    }
                }
            }
        }
        None
    }

    /// The number of live registrations (children, waiters, callbacks).
    /// Used by `Ctx::dependents`.
    pub(crate) fn registrations(&self) -> usize {
        let own = self.inner.lock().registry.len();
        // A done node has no children left in shards (its ender took them,
        // or is taking them, and its set may be another node's by now).
        match self.shard_set.load(Ordering::Relaxed) {
            0 => own,
            _ if !self.state.relaxed().is_live() => own,
            id => own + shards::len(id),
        }
    }

    /// Gives this node a shard set, because a thread attaching a child
    /// found its lock taken; returns the set's id. `None` if the node is
    /// done or every set is in use: the child then waits for the lock.
    /// Another thread may have sharded it meanwhile: then its set.
    #[cold]
    pub(in crate::tree) fn make_shards(&self) -> Option<u16> {
        // Taken before the node's lock: nothing nests under a node lock.
        let id = shards::take_id()?;
        let inner = self.inner.lock();
        let current = self.shard_set.load(Ordering::Relaxed);
        let result = if current != 0 {
            Some(current)
        } else if !self.state.relaxed().is_live() {
            None
        } else {
            // From now on the node ends under its lock, where its ender
            // sees the set and empties it (invariant 1): the
            // read-modify-write stops a racing lock-free end.
            let prev = self.state.set_flag(REGISTRY, Ordering::Relaxed);
            if prev.is_live() {
                self.shard_set.store(id, Ordering::Release);
                Some(id)
            } else {
                None
            }
        };
        drop(inner);
        if result != Some(id) {
            shards::give_back(id);
        }
        result
    }

    /// Takes every entry out of this node's shards and hands its shard set
    /// back (none: nothing). Only for a node that ended, or one being
    /// freed: nothing enters a done node's shards.
    pub(super) fn take_shards(&self) -> Vec<Entry> {
        match self.shard_set.swap(0, Ordering::Relaxed) {
            0 => Vec::new(),
            id => {
                let entries = shards::take_all(id);
                shards::give_back(id);
                entries
            }
        }
    }

    /// Removes this node's entry from the ancestor it is registered with.
    /// `owner` is the node's address in its `Arc`, which its entry points
    /// to (a node being freed has been moved out of it: see `release`).
    pub(super) fn unlink(&self, owner: usize) {
        let Source::Node(parent) = self.parent.source() else {
            return;
        };
        // Written only by this node's own birth and by this, its one
        // unlink: no lock needed to read it.
        let slot = self.slot.load(Ordering::Relaxed);
        if slot == super::NO_SLOT {
            return;
        }
        self.slot.store(super::NO_SLOT, Ordering::Relaxed);
        // In a shard of the parent: only that shard's lock. (If the parent
        // ends meanwhile and its set goes to another node, the check of
        // the parent's state under the shard's lock still fails: we never
        // take another node's entry.)
        let entry = if shards::is_sharded(slot) {
            match parent.shard_set.load(Ordering::Relaxed) {
                // The parent ended and gave its set back: nothing to take.
                0 => None,
                id => shards::remove(parent, id, slot, owner),
            }
        } else {
            let mut inner = parent.inner.lock();
            // A done parent has already emptied its registry (invariant
            // 1): our slot number means nothing there any more.
            if parent.state.relaxed().is_live() {
                inner.registry.remove(slot as usize)
            } else {
                None
            }
        };
        // Dropped unlocked.
        drop(entry);
    }
}
