//! The cancellation walk: how a cancellation spreads from one node over
//! its subtree, and when the notifications (user code) run.
//!
//! `cancel` ends the node (lock-free if it holds nothing, else under its
//! lock: `finish.rs`), then ends its subtree depth-first with an explicit
//! stack (invariant 5), collecting wakers, callbacks and unsubscriptions
//! in a `Work`; only when every node below is done does it fire them
//! (invariant 4).

use std::mem;
use std::sync::Arc;

use super::CancelNode;
use crate::error::Error;
use crate::timer;
use crate::tree::cause::CauseArg;
use crate::tree::link::Source;
use crate::tree::registry::{Entry, Registration, deliver_each};
use crate::tree::state::{INHERITED, PROPAGATING};

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
    ///
    /// Only a walk's origin (and a node given a copy of the cause) has its
    /// mark cleared by the walk, once its whole subtree is done. A node the
    /// walk ended by inheritance keeps its mark, which then means "ask the
    /// parent": the walk that ended it is the one that ended its parent,
    /// so the answer is at the nearest ancestor that is not `INHERITED`,
    /// or at one whose mark is already clear. Clearing each such mark as
    /// the walk went would cost it a read-modify-write and a stack step per
    /// node; a loser of the race to cancel is rare, so it pays instead, and
    /// clears the marks on its way up once the walk is over, so that the
    /// next look stops early (issue 22).
    pub(crate) fn wait_propagated(&self) {
        // Nothing to wait for (the common case): no need to look at the
        // thread-local walk marker.
        if !self.state.is_propagating() || Walking::active() {
            return;
        }
        let mut origin: &CancelNode = self;
        loop {
            let bits = origin.state.acquire();
            if !bits.has(PROPAGATING) {
                break;
            }
            if !bits.has(INHERITED) {
                let mut spins = 0u32;
                while origin.state.is_propagating() {
                    if spins < 64 {
                        std::hint::spin_loop();
                        spins += 1;
                    } else {
                        crate::sync::yield_now();
                    }
                }
                break;
            }
            // An inherited node's ender is the library parent it is
            // registered with, kept alive by the link.
            match origin.parent.source() {
                Source::Node(parent) => origin = parent,
                Source::Never | Source::Custom(_) => break,
            }
        }
        // That walk is over: the marks below `origin` mean nothing now.
        let mut node: &CancelNode = self;
        while !std::ptr::eq(node, origin) {
            node.state.clear_propagating();
            match node.parent.source() {
                Source::Node(parent) => node = parent,
                Source::Never | Source::Custom(_) => break,
            }
        }
    }
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
pub(super) enum Step {
    /// End this node, with this cause.
    Cancel(Arc<CancelNode>, CauseArg),
    /// Everything below this node is done: clear its `PROPAGATING` bit.
    Complete(Arc<CancelNode>),
}

/// What a cancellation collected to do once all state is final.
#[derive(Default)]
pub(super) struct Work {
    /// The explicit stack of invariant 5: children still to cancel, and
    /// nodes whose subtree is complete once the steps above them are done.
    pub(super) children: Vec<Step>,
    /// Wakers and callbacks to fire after the whole subtree is done.
    pub(super) notify: Vec<Entry>,
    /// Registrations with user parents to take back then.
    pub(super) unsubscribe: Vec<Registration>,
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
