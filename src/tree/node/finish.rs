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
    /// The block below is the critical section of invariant 1: the node's
    /// lock is held for it alone, and it stays here in one piece so that
    /// its scope can be read at a glance (returning what it takes out in a
    /// struct from a function of its own also cost the walk some 20
    /// instructions per node). What follows runs unlocked. The steps it
    /// calls are `#[inline(always)]` with one call site each: the split is
    /// for the reader, the code is the one function it was.
    pub(super) fn finish(
        self: &Arc<Self>,
        err: Error,
        cause: CauseArg,
        work: &mut Work,
        own_cancel: bool,
    ) -> bool {
        let mut replaced = None;
        // Ended by the parent's walk: the walk's origin carries the
        // `PROPAGATING` that a losing `cancel()` waits on (`wait_propagated`).
        let inherited = matches!(cause, CauseArg::Inherited);
        let sharded: u16;
        let has_registrations: bool;
        let (registry, armed, mut subscription, mut other_registration) = {
            let mut inner = self.inner.lock();
            let state = self.state.relaxed();
            if !state.is_live() || self.deadline_moved(&inner, &cause) {
                return false;
            }
            (sharded, has_registrations) = self.registrations_pending(&inner);
            let propagating = if has_registrations { PROPAGATING } else { 0 };
            let Some(before) = self
                .state
                .end_locked(state, cause.done_bits(err) | propagating)
            else {
                return false;
            };
            // A cause set now takes the registry's place: no allocation. A
            // deadline cause that did not fire is replaced, and dropped
            // after the lock: a user value (invariant 4).
            let registry = match cause {
                CauseArg::Set(Some(cause)) => {
                    if before.has(CAUSE) {
                        replaced = inner.take_deadline_cause();
                    }
                    mem::replace(&mut inner.registry, Registry::Ended(cause))
                }
                CauseArg::Set(None) | CauseArg::Inherited | CauseArg::Dropped => {
                    if before.has(CAUSE) {
                        replaced = inner.take_deadline_cause();
                    }
                    mem::take(&mut inner.registry)
                }
                CauseArg::Stored | CauseArg::Expired(_) => mem::take(&mut inner.registry),
            };
            (
                registry,
                before.has(ARMED),
                inner.take_subscription(),
                inner.take_other_registration(),
            )
        };
        // A user value, dropped unlocked (invariant 4).
        drop(replaced);
        if armed {
            timer::remove(&**self, timer::owner_of(&**self));
        }
        self.queue_unsubscriptions(&mut subscription, &mut other_registration, own_cancel, work);
        self.queue_entries(
            registry,
            sharded,
            has_registrations && !inherited,
            err,
            work,
        );
        true
    }

    /// Whether a timer's expiry (`cause` is `Expired`) comes too early:
    /// the deadline was moved past the time the timer read (or taken away)
    /// after the timer took the old entry out; the new one is armed.
    /// `inner` is this node's locked state.
    #[inline(always)]
    fn deadline_moved(&self, inner: &Inner, cause: &CauseArg) -> bool {
        if let CauseArg::Expired(now) = *cause {
            self.deadline_locked(inner)
                .is_none_or(|deadline| deadline > now)
        } else {
            false
        }
    }

    /// What a node ending now must walk: its shard set's id (0: none),
    /// and whether its registry or its shards may hold entries. A sharded
    /// node may have children in its shards: counted as having
    /// registrations without looking. `inner` is this node's locked state.
    #[inline(always)]
    fn registrations_pending(&self, inner: &Inner) -> (u16, bool) {
        let sharded = self.shard_set.load(Ordering::Relaxed);
        (sharded, inner.registry.len() > 0 || sharded != 0)
    }

    /// Queues, for after the walk, the taking back of the registrations
    /// `finish` took out; a merge node also leaves its parent's registry
    /// here. Runs with no lock held. The registrations come by reference
    /// (what is not queued is dropped by `finish`, as before the split):
    /// moved in, they cost the walk instructions per node.
    #[inline(always)]
    fn queue_unsubscriptions(
        self: &Arc<Self>,
        subscription: &mut Option<Registration>,
        other_registration: &mut Option<Registration>,
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
            && let Some(subscription) = subscription.take()
        {
            work.unsubscribe.push(subscription);
        }
        if let Some(registration) = other_registration.take() {
            work.unsubscribe.push(registration);
        }
    }

    /// Queues the entries `finish` took out of the registry, then
    /// those of the shards (`sharded`: the set's id, or 0); if `complete`,
    /// below a step that clears `PROPAGATING` once they are all done (a
    /// walk's origin, or a node given a copy of the cause; the nodes a
    /// walk ends by inheritance keep the mark, see `wait_propagated`).
    /// Runs with no lock held.
    #[inline(always)]
    fn queue_entries(
        self: &Arc<Self>,
        registry: Registry,
        sharded: u16,
        complete: bool,
        err: Error,
        work: &mut Work,
    ) {
        if complete {
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
    /// Takes out the cause a deadline would have reported
    /// (`with_deadline_cause`), when another cause ends the node first.
    #[inline(always)]
    fn take_deadline_cause(&mut self) -> Option<Cause> {
        self.extra.as_mut().and_then(|extra| extra.cause.take())
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
