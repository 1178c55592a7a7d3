//! Ending one node: lock-free when it holds nothing (`end_lock_free`,
//! invariant 1), otherwise under its lock in `finish`, which takes out
//! what the node held and queues it in the walk's `Work` (`cancel.rs`):
//! children to end, notifications and unsubscriptions to run once the
//! subtree is done.

use std::mem;
use std::sync::Arc;

use super::cancel::{Step, Work};
use super::{CancelNode, Inner};
use crate::error::{Cause, Error};
use crate::sync::Ordering;
use crate::timer;
use crate::tree::cause::{CauseArg, OwnCause};
use crate::tree::link::Source;
use crate::tree::registry::{Entry, Registration, Registry};
use crate::tree::state::{self, ARMED, CAUSE, LockFree, PROPAGATING};

impl CancelNode {
    /// The lock-free end of invariant 1, for a node with nothing to take
    /// out under the lock (at most a timer entry) and no cause to store.
    /// `Some(true)` if this call ended the node, `Some(false)` if it was
    /// already done, `None` if the locked path is needed.
    pub(super) fn end_lock_free(&self, err: Error, cause: &CauseArg) -> Option<bool> {
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
    pub(super) fn finish(
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

/// The cause of a done node, following `Inherited` links up the tree.
fn node_cause(node: &CancelNode) -> Option<Cause> {
    match node.own_cause() {
        OwnCause::Live => None,
        OwnCause::Cause(cause) => Some(cause),
        OwnCause::Inherited => node.parent.cause(),
    }
}
