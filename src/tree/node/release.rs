//! Death of a cancel node: its last handle is gone. A node that never
//! ended takes its traces out of the world (`release`); `into_parent`
//! hands its parents to `Link`'s iterative `Drop`.

use std::mem;

use super::CancelNode;
use crate::tree::link::Link;
use crate::tree::registry::Registry;
use crate::tree::state::ARMED;

impl CancelNode {
    /// Consumes a node whose last handle is gone and gives back its parent,
    /// and a merge node's other parent, so that `Link`'s `Drop` can
    /// continue up the chain without recursion.
    #[inline(always)]
    pub(in crate::tree) fn into_parent(mut self, owner: usize) -> (Link, Option<Link>) {
        let other = self.take_other();
        // `release` does nothing for a done node (the common case here):
        // checked first, which saves the call.
        if self.state.relaxed().is_live() {
            self.release(owner);
        }
        let parent = mem::take(&mut self.parent);
        // Freed: no longer derived from its parents.
        parent.remove_child();
        if let Some(other) = &other {
            other.remove_child();
        }
        let inner = self.inner.get_mut();
        // Empty by now (`release`, or the cancellation that ended the node,
        // took it out, and nothing is inserted into a done node); checked
        // anyway, so that forgetting the node below can never leak.
        if !matches!(inner.registry, Registry::Empty) {
            drop(mem::take(&mut inner.registry));
        }
        let extra = inner.extra.take();
        // What is left (atomics, an unlocked mutex, an empty registry, a
        // root in `parent`) owns nothing: forgetting it skips the drop
        // glue, and with it `Drop`'s second `release`.
        mem::forget(self);
        drop(extra);
        (parent, other)
    }

    /// The last handle is gone (no `Ctx`, no `CancelFunc`, no child, no
    /// pending callback). If the node never ended, take its traces out of
    /// the world: its entry in the parent, its timer entry, its
    /// subscription with a user parent.
    ///
    /// `owner` is the address the node had in its `Arc` (the timer knows
    /// the node by it); `into_parent` has moved the node out since.
    fn release(&mut self, owner: usize) {
        let state = self.state.relaxed();
        if !state.is_live() {
            return;
        }
        let inner = self.inner.get_mut();
        let subscription = inner.take_subscription();
        let other_registration = inner.take_other_registration();
        let registry = mem::take(&mut inner.registry);
        if state.has(ARMED) {
            crate::timer::remove(&*self, owner);
        }
        // Our shards are empty but for entries too far in to record (of
        // children gone by now): dropped with the set, which goes back.
        drop(self.take_shards());
        self.unlink(owner);
        // Children hold us alive, `done()` futures borrow us and pending
        // `after_func` callbacks keep us (see `after.rs`), so the registry
        // is empty here; whatever it holds is dropped unfired.
        drop(registry);
        // User code last, once our own traces are gone: if it panics, the
        // panic leaves nothing half done.
        if let Some(subscription) = subscription {
            let _ = subscription.cancel();
        }
        if let Some(registration) = other_registration {
            let _ = registration.cancel();
        }
    }
}

impl Drop for CancelNode {
    #[inline]
    fn drop(&mut self) {
        // Still in place in the `Arc` allocation (`into_parent` forgets the
        // node it consumed, so this never runs after it).
        // `release` does nothing for a done node (the common case here):
        // checked first, which saves the call.
        if self.state.relaxed().is_live() {
            let owner = crate::timer::owner_of(self);
            self.release(owner);
        }
        // Freed: no longer derived from its parents (which the field drops
        // then release).
        self.parent.remove_child();
        if self.is_merge()
            && let Some(other) = self.take_other()
        {
            other.remove_child();
        }
    }
}
