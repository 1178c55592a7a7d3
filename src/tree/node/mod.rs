//! A cancel node: the state of one cancelable context (`with_cancel`,
//! `with_deadline`, `merge`). Here: its fields, the lock-guarded `Inner`
//! and `Extra`, what reads its state without changing it (`err`,
//! `own_cause`, the merge marker), and the count of `CancelFunc` handles.
//! Its behaviour, one file per concern:
//!
//! | file | concern |
//! |---|---|
//! | `attach.rs` | birth: `new`, `new_merge`, registering with the parent(s) or born done |
//! | `cancel.rs` | `cancel`: the walk over a node's subtree, then the notifications |
//! | `deadline.rs` | a node's own deadline, arming the timer, `extend_deadline`, `Expire` |
//! | `finish.rs` | ending one node: lock-free, or under its lock in `finish`'s steps |
//! | `register.rs` | entries in and out of a node's registry; its shard set; `unlink` |
//! | `release.rs` | death: the last handle gone, `release`, `into_parent` |
//!
//! The types they use that the rest of the core shares stay outside the
//! folder: `State` (`state.rs`), `CauseArg` (`cause.rs`), `AtomicInstant`
//! (`instant.rs`), `Entry`, `Registry`, `Registration` (`registry.rs`).

mod attach;
mod cancel;
mod deadline;
mod finish;
mod register;
mod release;

use std::time::Instant;

use super::cause::OwnCause;
use super::derived::Derived;
use super::instant::{AtomicInstant, Stored};
use super::link::Link;
use super::registry::{Registration, Registry};
use super::state::{INHERITED, State};
use crate::error::{Cause, Error};
use crate::sync::{AtomicU16, AtomicU32, Mutex, Ordering};

/// Marks "not registered in a parent" in `CancelNode::slot`.
const NO_SLOT: u32 = u32::MAX;

/// The state of one cancelable context.
pub(crate) struct CancelNode {
    /// The context this one was derived from. Immutable. Keeps the parent
    /// (and so the whole path to the root) alive.
    pub(super) parent: Link,
    /// This node's own deadline, for `with_deadline`/`with_timeout` nodes;
    /// none for `with_cancel` nodes, whose deadline is the parent's. Set
    /// at creation; moved later only by `extend_deadline`, under `inner`'s
    /// lock while the node is live, so it is frozen once the node is done.
    pub(super) deadline: AtomicInstant,
    /// Live or done, plus flag bits; see `state.rs` for the rules.
    pub(super) state: State,
    /// How many `CancelFunc` handles are alive besides one (0: a single
    /// handle). Changed only by `add_handle`/`release_handle`; the release
    /// that finds it at zero is the last (RAII cancel). 32 bits keep the
    /// node small; at `u32::MAX` it sticks.
    handles: AtomicU32,
    /// This node's index in the registry of the node it is registered with
    /// (its nearest cancelable ancestor), or `NO_SLOT`; or, if that node is
    /// sharded, its place in a shard (`shards::is_sharded`). Written while
    /// the node is made (before anyone else can see it) and by the one
    /// `unlink`, so `Relaxed` suffices.
    pub(super) slot: AtomicU32,
    /// The id of this node's shard set (`shards.rs`), or 0: given the
    /// first time a thread found the lock taken while attaching a child.
    /// Set once, under the lock, while live; read without it; back to 0
    /// when the node ends (or is dropped live) and hands the set back.
    pub(super) shard_set: AtomicU16,
    /// The index of this node's entry in the timer wheel, written by the
    /// timer under its lock when the entry is made (`NIL` before). Only
    /// meaningful while `ARMED`; the timer checks ownership on use.
    pub(super) timer_slot: AtomicU32,
    /// How many nodes derive from this one (`derived.rs`).
    pub(crate) derived: Derived,
    /// Everything that changes at cancellation.
    pub(super) inner: Mutex<Inner>,
}

/// The lock-protected part of a node. Guarded by `CancelNode::inner`.
#[derive(Default)]
pub(super) struct Inner {
    /// Who to notify when this node is done. Taken out by the cancellation
    /// that ends the node, which leaves the cause it sets in its place.
    pub(super) registry: Registry,
    /// Rarely needed state, boxed to keep the node small.
    pub(super) extra: Option<Box<Extra>>,
}

/// The rare parts of a node's state. Guarded by `CancelNode::inner`.
#[derive(Default)]
pub(super) struct Extra {
    /// While live: the cause a firing deadline will report (the argument of
    /// `with_deadline_cause`), if any. Once done: that cause if the deadline
    /// is what ended the node; otherwise `None` (the cause of any other
    /// cancellation is in `Registry::Ended`).
    pub(super) cause: Option<Cause>,
    /// The registration with a user parent, if the parent is one. Taken
    /// when the node is done or dropped.
    pub(super) subscription: Option<Registration>,
    /// The deadline, when it is too far from now (centuries) for
    /// `AtomicInstant` to hold exactly; `deadline` then says `FAR`.
    pub(super) far_deadline: Option<Instant>,
    /// A merge node's other parent (`merge.rs`): set at birth, never
    /// changed (`deadline` then says `MERGED`). Kept after the node ends,
    /// for `deadline()` and the name; taken out only by `take_other` once
    /// the node is unreachable.
    pub(super) other: Option<Link>,
    /// A merge node's registration with `other`. Stored by `attach_other`
    /// while the node is live; taken (and canceled) by whoever ends or
    /// drops the node.
    pub(super) other_registration: Option<Registration>,
}

impl Inner {
    pub(super) fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    pub(super) fn take_subscription(&mut self) -> Option<Registration> {
        self.extra.as_mut()?.subscription.take()
    }

    pub(super) fn take_other_registration(&mut self) -> Option<Registration> {
        self.extra.as_mut()?.other_registration.take()
    }

    /// The cause a done node was ended with: in the registry's place
    /// (`Registry::Ended`), or, for a deadline cause that fired, in `Extra`.
    pub(super) fn cause(&self) -> Option<Cause> {
        match &self.registry {
            Registry::Ended(cause) => Some(cause.clone()),
            _ => self.extra.as_ref()?.cause.clone(),
        }
    }
}

impl CancelNode {
    /// Whether this is a merge node. One `Relaxed` load: the marker is
    /// written before the node is shared and never changed.
    #[inline]
    pub(super) fn is_merge(&self) -> bool {
        matches!(self.deadline.load(), Stored::Merged)
    }

    /// A merge node's other parent; `None` for every other node (without
    /// taking the lock).
    pub(super) fn other(&self) -> Option<Link> {
        if !self.is_merge() {
            return None;
        }
        self.inner.lock().extra.as_ref()?.other.clone()
    }

    /// Takes a merge node's other parent out of a node nobody can reach
    /// any more, so that `Link`'s `Drop` drops it without recursion.
    pub(super) fn take_other(&mut self) -> Option<Link> {
        self.inner.get_mut().extra.as_mut()?.other.take()
    }

    /// This node's error: one `Acquire` load, no lock.
    #[inline]
    pub(crate) fn err(&self) -> Option<Error> {
        self.state.acquire().err()
    }

    /// This node's own answer to `cause()`; `Link::cause` follows
    /// `Inherited` up the tree, iteratively.
    pub(crate) fn own_cause(&self) -> OwnCause {
        let state = self.state.acquire();
        let Some(err) = state.err() else {
            return OwnCause::Live;
        };
        if state.has(INHERITED) {
            return OwnCause::Inherited;
        }
        if state.is_dropped() {
            return OwnCause::Cause(crate::error::dropped_cause());
        }
        let cause = self.inner.lock().cause();
        OwnCause::Cause(cause.unwrap_or_else(|| err.into_cause()))
    }

    /// One more `CancelFunc` handle. Relaxed: a new handle is made from an
    /// existing one, which keeps the count above zero meanwhile (as
    /// `Arc::clone`). The count saturates: four billion live clones pin it
    /// at the maximum, where it stays (the context then ends only through
    /// `cancel`, its parent or its deadline) instead of wrapping.
    pub(crate) fn add_handle(&self) {
        let _ = self
            .handles
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1));
    }

    /// Gives one `CancelFunc` handle back; true if it was the last one.
    /// The count is of the handles besides one, so the usual single handle
    /// needs no read-modify-write: seeing zero means no other handle
    /// exists, and none can appear (clones are made from live handles, and
    /// this one is going). Acquire: the last handle must see everything
    /// the others did before they went (their decrements are `AcqRel`). A
    /// saturated count never comes down.
    pub(crate) fn release_handle(&self) -> bool {
        let mut n = self.handles.load(Ordering::Acquire);
        loop {
            match n {
                0 => return true,
                u32::MAX => return false,
                _ => match self.handles.compare_exchange_weak(
                    n,
                    n - 1,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return false,
                    Err(now) => n = now,
                },
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::CancelNode;
    use crate::error::Error;
    use crate::tree::cause::CauseArg;
    use crate::tree::link::Link;

    /// The nodes a walk ends by inheritance keep their `PROPAGATING` mark
    /// (the walk clears only its origin's); the first losing `cancel()`
    /// below clears every mark on its way up, so the marks cost each later
    /// look one step, not the depth of the chain.
    #[test]
    fn a_losing_cancel_clears_the_inherited_marks_on_its_way_up() {
        let root = CancelNode::new(Link::default(), None, None);
        let mut chain = vec![root.clone()];
        for _ in 0..100 {
            let parent = Link::cancel(chain[chain.len() - 1].clone());
            chain.push(CancelNode::new(parent, None, None));
        }
        root.cancel(Error::Canceled, CauseArg::Set(None), true);
        assert!(chain.iter().all(|node| node.err().is_some()));
        assert!(!root.state.is_propagating(), "the origin's walk is over");
        assert!(!chain[100].state.is_propagating(), "a leaf has no subtree");
        assert!(chain[1..100].iter().all(|node| node.state.is_propagating()));
        chain[99].wait_propagated();
        assert!(chain.iter().all(|node| !node.state.is_propagating()));
    }

    /// The memory budget: one allocation of at most 104 bytes per
    /// `with_cancel` child (the node plus `Arc`'s two counters). Issue 4
    /// set 96; the count of derived nodes (`Ctx::drained`, issue 17) took
    /// the node from 80 to 88 bytes. glibc's malloc serves a 96-byte and a
    /// 104-byte request from the same 112-byte chunk, so the memory in use
    /// per node did not change there.
    #[test]
    fn a_cancel_node_fits_in_104_bytes() {
        let arc_counters = 2 * size_of::<usize>();
        assert!(
            size_of::<CancelNode>() + arc_counters <= 104,
            "{}",
            size_of::<CancelNode>()
        );
    }
}
