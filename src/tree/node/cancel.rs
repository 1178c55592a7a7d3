//! The cancellation walk: how a node ends, how its subtree ends after it,
//! and when the notifications (user code) run.
//!
//! `cancel` ends the node (lock-free if it holds nothing, else under its
//! lock), then ends its subtree depth-first with an explicit stack
//! (invariant 5), collecting wakers, callbacks and unsubscriptions in a
//! `Work`; only when every node below is done does it fire them
//! (invariant 4).

use std::mem;
use std::sync::Arc;

use super::{CancelNode, Inner};
use crate::error::{Cause, Error};
use crate::sync::Ordering;
use crate::timer;
use crate::tree::cause::{CauseArg, OwnCause};
use crate::tree::link::Source;
use crate::tree::registry::{Entry, Registration, Registry, deliver_each};
use crate::tree::shards;
use crate::tree::state::{self, ARMED, CAUSE, LockFree, PROPAGATING};

impl CancelNode {
    /// Called by a user parent's notification: cancel with whatever the
    /// parent now reports. A user parent that notifies without reporting
    /// an error is treated as canceled (Go would panic here).
    pub(in crate::tree) fn cancel_from_parent(self: &Arc<Self>) {
        let err = self.parent.err().unwrap_or(Error::Canceled);
        let cause = self.parent.cause();
        self.cancel(err, CauseArg::Set(cause), false);
    }

    /// Called by the notification of a merge node's other parent when that
    /// parent is a user context (a library one cancels us in its walk):
    /// cancel with what `other` now reports, as `cancel_from_parent` does
    /// with the parent.
    pub(in crate::tree) fn cancel_from_other(self: &Arc<Self>) {
        let Some(other) = self.other() else {
            return;
        };
        let err = other.err().unwrap_or(Error::Canceled);
        let cause = other.cause();
        self.cancel(err, CauseArg::Set(cause), false);
    }

    /// Cancels this node and, iteratively, every descendant, then wakes
    /// their waiters and starts their `after_func` callbacks. A no-op if
    /// the node is already done (first cancel wins, for error and cause
    /// alike).
    ///
    /// `unlink` is true when the cancellation starts at this node (its own
    /// `CancelFunc` or its deadline): it then also removes itself from its
    /// parent's registry. When a parent cancels its children it has already
    /// taken its whole registry, so they skip that step.
    ///
    /// When this returns, every descendant reports done (`err()` is `Some`).
    pub(crate) fn cancel(self: &Arc<Self>, err: Error, cause: CauseArg, unlink: bool) {
        // A leaf (nothing registered, no cause to store) ends by one CAS,
        // with no walk and nothing to notify.
        match self.end_lock_free(err, &cause) {
            Some(true) => {
                if unlink {
                    self.unlink(timer::owner_of(&**self));
                }
                return;
            }
            Some(false) => return,
            None => {}
        }
        let mut work = Work::default();
        {
            // While this thread walks a subtree, a `cancel()` it makes from
            // a `Drop` of a user value (freed along the way) must not wait
            // for the walk to finish: it would wait for itself (the one
            // exception to invariant 6).
            let _walking = Walking::enter();
            if !self.finish(err, cause, &mut work, unlink) {
                return;
            }
            if !work.children.is_empty() {
                walk(err, &mut work);
            }
            if unlink {
                self.unlink(timer::owner_of(&**self));
            }
        }
        // All state is final; now run what may be user code (invariant 4).
        work.notify();
    }

    /// Returns once no cancellation is still walking the subtree below this
    /// node (see `PROPAGATING`). The walk runs no user code, so this waits
    /// for a bounded amount of tree work on another thread.
    pub(crate) fn wait_propagated(&self) {
        // Nothing to wait for (the common case): no need to look at the
        // thread-local walk marker.
        if !self.state.is_propagating() || Walking::active() {
            return;
        }
        let mut spins = 0u32;
        while self.state.is_propagating() {
            if spins < 64 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                crate::sync::yield_now();
            }
        }
    }

    /// The lock-free end of invariant 1, for a node with nothing to take
    /// out under the lock (at most a timer entry) and no cause to store.
    /// `Some(true)` if this call ended the node, `Some(false)` if it was
    /// already done, `None` if the locked path is needed.
    fn end_lock_free(&self, err: Error, cause: &CauseArg) -> Option<bool> {
        if let CauseArg::Set(Some(_)) | CauseArg::Expired(_) = cause {
            return None;
        }
        match self.state.end_lock_free(cause.done_bits(err)) {
            LockFree::Ended(before) => {
                self.ended_lock_free(before);
                Some(true)
            }
            LockFree::AlreadyDone => Some(false),
            LockFree::NeedsLock => None,
        }
    }

    /// After a lock-free end: take the timer entry out, if there was one.
    #[inline]
    fn ended_lock_free(&self, before: state::Bits) {
        if before.has(ARMED) {
            timer::remove(self, timer::owner_of(self));
        }
    }

    /// Ends this one node under its lock: sets state and cause, takes the
    /// registry and queues its children and notifications in `work`.
    /// Returns false if the node was already done.
    ///
    /// The critical section is `end_under_lock`; the rest runs with no
    /// lock held: a replaced cause dropped and the timer entry taken out,
    /// then the registrations with parents (`queue_unsubscriptions`) and
    /// the entries (`queue_entries`) queued. Each step is
    /// `#[inline(always)]`, with one call site: the split is for the
    /// reader, the code is the one function it was.
    fn finish(
        self: &Arc<Self>,
        err: Error,
        cause: CauseArg,
        work: &mut Work,
        own_cancel: bool,
    ) -> bool {
        let Some(taken) = self.end_under_lock(err, cause) else {
            return false;
        };
        // A user value, dropped unlocked (invariant 4).
        drop(taken.replaced);
        if taken.armed {
            timer::remove(&**self, timer::owner_of(&**self));
        }
        self.queue_unsubscriptions(
            taken.subscription,
            taken.other_registration,
            own_cancel,
            work,
        );
        self.queue_entries(
            taken.registry,
            taken.sharded,
            taken.has_registrations,
            err,
            work,
        );
        true
    }

    /// The locked end of invariant 1: in one critical section, checks that
    /// the node is live (and, for a timer's expiry, still due), sets the
    /// done state, and takes out everything the node's ender must deal
    /// with. `None` if the node was already done, or its deadline moved.
    /// The lock is released on return; so is `cause` when it was not
    /// stored (a user value, invariant 4).
    #[inline(always)]
    fn end_under_lock(&self, err: Error, cause: CauseArg) -> Option<Taken> {
        let mut inner = self.inner.lock();
        let state = self.state.relaxed();
        if !state.is_live() {
            return None;
        }
        if let CauseArg::Expired(now) = cause
            && self
                .deadline_locked(&inner)
                .is_none_or(|deadline| deadline > now)
        {
            // Extended after the timer took the old entry out; the new
            // one is armed.
            return None;
        }
        // A sharded node may have children in its shards: counted as
        // having registrations without looking.
        let sharded = self.shard_set.load(Ordering::Relaxed);
        let has_registrations = inner.registry.len() > 0 || sharded != 0;
        let propagating = if has_registrations { PROPAGATING } else { 0 };
        let before = self
            .state
            .end_locked(state, cause.done_bits(err) | propagating)?;
        let (registry, replaced) = inner.take_registry(cause, before.has(CAUSE));
        Some(Taken {
            registry,
            sharded,
            has_registrations,
            armed: before.has(ARMED),
            subscription: inner.take_subscription(),
            other_registration: inner.take_other_registration(),
            replaced,
        })
    }

    /// Queues, for after the walk, the taking back of the registrations
    /// `end_under_lock` took out; a merge node also leaves its parent's
    /// registry here. Runs with no lock held.
    #[inline(always)]
    fn queue_unsubscriptions(
        self: &Arc<Self>,
        subscription: Option<Registration>,
        other_registration: Option<Registration>,
        own_cancel: bool,
        work: &mut Work,
    ) {
        // If we ended first, the user parent must forget us; otherwise its
        // notification is what got us here and there is nothing to undo.
        // That is user code: it runs with the notifications, after the
        // whole subtree is done (invariant 4), so a panic in it cannot
        // leave descendants live.
        //
        // A merge node has two parents and may be ended by either (or by
        // itself): it always takes its registrations back from both, and
        // leaves its parent's registry (a no-op if that parent is what is
        // ending us: it is done, its registry already taken). Taking back
        // a registration that was just notified is harmless (`cancel`
        // returns false). `unlink` locks only the parent, and we hold no
        // lock here (invariant 3).
        let merge = self.is_merge();
        if merge {
            self.unlink(timer::owner_of(&**self));
        }
        if (own_cancel || merge)
            && let Some(subscription) = subscription
        {
            work.unsubscribe.push(subscription);
        }
        if let Some(registration) = other_registration {
            work.unsubscribe.push(registration);
        }
    }

    /// Queues the entries `end_under_lock` took out of the registry, then
    /// those of the shards (`sharded`: the set's id, or 0), below a step
    /// that clears `PROPAGATING` once they are all done. Runs with no
    /// lock held.
    #[inline(always)]
    fn queue_entries(
        self: &Arc<Self>,
        registry: Registry,
        sharded: u16,
        has_registrations: bool,
        err: Error,
        work: &mut Work,
    ) {
        if has_registrations {
            // Below the children: reached when the subtree is done.
            work.children.push(Step::Complete(self.clone()));
        }
        let mut parent_cause = None;
        for entry in registry.into_entries() {
            self.queue(entry, err, &mut parent_cause, work);
        }
        if sharded != 0 {
            // The shards' entries, taken with no node lock held
            // (`shards.rs`): nothing enters a done node's shards, and its
            // children's unlinks find the id gone.
            for entry in self.take_shards() {
                self.queue(entry, err, &mut parent_cause, work);
            }
        }
    }

    /// Queues one entry taken from this node's registry (or a shard) as it
    /// ends with `err`: a child to cancel, or a notification to deliver.
    /// `parent_cause` caches this node's cause for children that need a
    /// copy.
    #[inline(always)]
    fn queue(
        self: &Arc<Self>,
        entry: Entry,
        err: Error,
        parent_cause: &mut Option<Option<Cause>>,
        work: &mut Work,
    ) {
        match entry {
            Entry::Child(child) | Entry::Merged(child) => {
                // A child whose last handle is gone is being dropped right
                // now; its `Drop` sees us done and does nothing.
                let Some(child) = child.upgrade() else {
                    return;
                };
                // A direct child finds its cause through us; one that
                // reached us through a user wrapper, or a merge node for
                // which we are the other parent, gets a copy. (A child
                // made right on us is found without `source`.)
                let direct = child.parent.is_node(self)
                    || matches!(child.parent.source(), Source::Node(parent) if Arc::ptr_eq(parent, self));
                let cause = if direct {
                    // A leaf child ends right here, lock-free, without a
                    // trip through the stack.
                    if child.end_lock_free(err, &CauseArg::Inherited).is_some() {
                        return;
                    }
                    CauseArg::Inherited
                } else {
                    CauseArg::Set(parent_cause.get_or_insert_with(|| node_cause(self)).clone())
                };
                work.children.push(Step::Cancel(child, cause));
            }
            other => work.notify.push(other),
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

impl Inner {
    /// Takes the registry out of a node that has just ended, under its
    /// lock. A cause set now takes the registry's place: no allocation.
    /// A deadline cause that did not fire (`had_cause`: the node was made
    /// with one) is replaced by any other cause, and handed back: a user
    /// value, for the caller to drop after the lock (invariant 4).
    #[inline(always)]
    fn take_registry(&mut self, cause: CauseArg, had_cause: bool) -> (Registry, Option<Cause>) {
        let mut replaced = None;
        let registry = match cause {
            CauseArg::Set(Some(cause)) => {
                if had_cause {
                    replaced = self.extra.as_mut().and_then(|extra| extra.cause.take());
                }
                mem::replace(&mut self.registry, Registry::Ended(cause))
            }
            CauseArg::Set(None) | CauseArg::Inherited | CauseArg::Dropped => {
                if had_cause {
                    replaced = self.extra.as_mut().and_then(|extra| extra.cause.take());
                }
                mem::take(&mut self.registry)
            }
            CauseArg::Stored | CauseArg::Expired(_) => mem::take(&mut self.registry),
        };
        (registry, replaced)
    }
}

/// What `end_under_lock` took out of a node in the critical section that
/// ended it, for `finish` to deal with once the lock is released.
struct Taken {
    /// The node's registry (the cause set now, if any, left in its place).
    registry: Registry,
    /// The node's shard set id, 0 if none: its entries are still in the
    /// shards, taken out after the lock.
    sharded: u16,
    /// Whether the registry or the shards may hold entries: the node was
    /// left `PROPAGATING` until its subtree is done.
    has_registrations: bool,
    /// The node had a timer entry (`ARMED`), to take out.
    armed: bool,
    /// Its registration with a user parent.
    subscription: Option<Registration>,
    /// A merge node's registration with its other parent.
    other_registration: Option<Registration>,
    /// A deadline cause replaced by the cause set now (see
    /// `Inner::take_registry`).
    replaced: Option<Cause>,
}

/// Ends the subtree below a node `finish` just ended: depth-first with
/// an explicit stack (invariant 5). A `Complete` step is pushed below a
/// node's children, so it is reached once they (and their subtrees)
/// are all done.
fn walk(err: Error, work: &mut Work) {
    while let Some(step) = work.children.pop() {
        match step {
            Step::Cancel(child, cause) => {
                // Queued by `finish` only for the locked path: its
                // lock-free end failed (and cannot succeed later: the
                // `NEEDS_LOCK` flags stay set while a node is live), or
                // it gets a copy of the cause to store.
                child.finish(err, cause, work, false);
            }
            Step::Complete(node) => node.state.clear_propagating(),
        }
    }
}

/// The cause of a done node, following `Inherited` links up the tree.
fn node_cause(node: &CancelNode) -> Option<Cause> {
    match node.own_cause() {
        OwnCause::Live => None,
        OwnCause::Cause(cause) => Some(cause),
        OwnCause::Inherited => node.parent.cause(),
    }
}

/// Marks the current thread as walking a subtree in `CancelNode::cancel`
/// (a count, since a walk may nest through `Drop`s).
struct Walking;

crate::sync::thread_counter! {
    static WALKING;
}

impl Walking {
    fn enter() -> Walking {
        WALKING.with(|depth| depth.set(depth.get() + 1));
        Walking
    }

    fn active() -> bool {
        WALKING.with(|depth| depth.get() > 0)
    }
}

impl Drop for Walking {
    fn drop(&mut self) {
        WALKING.with(|depth| depth.set(depth.get() - 1));
    }
}

/// One step of a cancellation's walk over the subtree.
enum Step {
    /// End this node, with this cause.
    Cancel(Arc<CancelNode>, CauseArg),
    /// Everything below this node is done: clear its `PROPAGATING` bit.
    Complete(Arc<CancelNode>),
}

/// What a cancellation collected to do once all state is final.
#[derive(Default)]
struct Work {
    /// The explicit stack of invariant 5: children still to cancel, and
    /// nodes whose subtree is complete once the steps above them are done.
    children: Vec<Step>,
    /// Wakers and callbacks to fire after the whole subtree is done.
    notify: Vec<Entry>,
    /// Registrations with user parents to take back then.
    unsubscribe: Vec<Registration>,
}

impl Work {
    /// Fires every collected notification. A panic from one (a user's
    /// waker) does not stop the others; the first panic is resumed after
    /// all of them ran, so the caller still sees it.
    #[inline]
    fn notify(self) {
        if self.children.capacity() == 0
            && self.notify.capacity() == 0
            && self.unsubscribe.capacity() == 0
        {
            // Nothing was ever queued (a leaf): no buffer to free, so no
            // drop glue to run.
            mem::forget(self);
            return;
        }
        self.notify_all();
    }

    #[inline(never)]
    fn notify_all(self) {
        if self.unsubscribe.is_empty() && self.notify.is_empty() {
            return;
        }
        let unsubscribed = deliver_each(self.unsubscribe, |registration| {
            let _ = registration.cancel();
        });
        let notified = deliver_each(self.notify, Entry::fire);
        if let Some(payload) = unsubscribed.or(notified) {
            std::panic::resume_unwind(payload);
        }
    }
}
