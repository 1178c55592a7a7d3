//! Birth and death of a cancel node: its fields, how it joins its parent
//! (`attach`), and how it leaves the world when its last handle goes
//! (`release`). The count of `CancelFunc` handles lives here too.

use std::mem;
use std::sync::Arc;
use std::time::Instant;

use super::deadline::{AtomicInstant, FAR, MERGED, NO_INSTANT, Stored, encode};
use super::derived::Derived;
use super::link::{Link, Source};
use super::registry::{Entry, Registration, Registry};
use super::shards;
use super::state::{ARMED, CAUSE, LIVE, REGISTRY, SUBSCRIBED, State};
use super::walk::CauseArg;
use crate::error::{Cause, Error};
use crate::sync::{AtomicU16, AtomicU32, Mutex, Ordering};

/// Marks "not registered in a parent" in `CancelNode::slot`.
pub(super) const NO_SLOT: u32 = u32::MAX;

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
    /// A new, live node, registered with the context it derives from. If
    /// that context is already done, the node is born done, with its error
    /// and cause, and nothing is registered.
    #[inline]
    pub(crate) fn new(
        parent: Link,
        deadline: Option<Instant>,
        cause: Option<Cause>,
    ) -> Arc<CancelNode> {
        let node = Arc::new(CancelNode::unattached(parent, deadline, cause));
        node.attach();
        node
    }

    /// A new, live, unregistered node.
    #[inline]
    fn unattached(parent: Link, deadline: Option<Instant>, cause: Option<Cause>) -> Self {
        let (deadline, far_deadline) = match deadline.map(encode) {
            None => (NO_INSTANT, None),
            Some(Some(nanos)) => (nanos, None),
            Some(None) => (FAR, deadline),
        };
        let flags = if cause.is_some() { CAUSE } else { LIVE };
        let extra = (cause.is_some() || far_deadline.is_some()).then(|| {
            Box::new(Extra {
                cause,
                far_deadline,
                ..Extra::default()
            })
        });
        parent.add_child();
        CancelNode {
            parent,
            deadline: AtomicInstant::new(deadline),
            state: State::new(flags),
            handles: AtomicU32::new(0),
            slot: AtomicU32::new(NO_SLOT),
            shard_set: AtomicU16::new(0),
            timer_slot: AtomicU32::new(crate::wheel::NIL),
            derived: Derived::default(),
            inner: Mutex::new(Inner {
                registry: Registry::Empty,
                extra,
            }),
        }
    }

    /// A new merge node (`merge.rs`): a cancel node of `parent`, without a
    /// deadline of its own, registered with both `parent` and `other`.
    /// `SUBSCRIBED` from birth: such a node always ends under its lock,
    /// where the registration with `other` is taken out. The parent is
    /// attached first: if both are done, the node has the parent's error
    /// and cause.
    pub(crate) fn new_merge(parent: Link, other: Link) -> Arc<CancelNode> {
        let node = CancelNode::unattached(parent, None, None);
        other.add_child();
        node.deadline.store(MERGED);
        node.state.set_unshared(SUBSCRIBED);
        node.inner.lock().extra = Some(Box::new(Extra {
            other: Some(other),
            ..Extra::default()
        }));
        let node = Arc::new(node);
        node.attach();
        if node.err().is_none() {
            node.attach_other();
        }
        node
    }

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

    /// Registers `self` (a fresh node) with the context it derives from.
    /// If that context is already done, `self` is canceled right here with
    /// the parent's error and cause ("born done"), and nothing is
    /// registered.
    fn attach(self: &Arc<Self>) {
        match self.parent.source() {
            Source::Never => {}
            Source::Node(parent) => {
                // A done parent needs no lock and no weak reference made
                // and dropped. Checked again under the lock (invariant 2).
                if parent.err().is_some() {
                    return self.born_done(parent);
                }
                // A sharded parent, or another thread holds its lock right
                // now: this thread's shard of it instead (see `shards.rs`).
                if (parent.shard_set.load(Ordering::Relaxed) != 0 || parent.inner.is_locked())
                    && self.attach_contended(parent)
                {
                    return;
                }
                let entry = Entry::Child(Arc::downgrade(self));
                let mut inner = parent.inner.lock();
                match parent.insert_locked(&mut inner, entry) {
                    Ok(slot) => {
                        // A registry of over four billion entries cannot
                        // record this slot; the entry then stays until the
                        // parent ends (it is weak, so it holds nothing).
                        // (Past two billion a slot reads as a shard's;
                        // `shards::remove` then finds another entry there
                        // and leaves it: the same outcome.)
                        let slot = u32::try_from(slot).unwrap_or(NO_SLOT);
                        self.slot.store(slot, Ordering::Relaxed);
                    }
                    Err(entry) => {
                        drop(inner);
                        drop(entry);
                        self.born_done(parent);
                    }
                }
            }
            Source::Custom(custom) => {
                // Done already (as goctx has recorded it): born done, like
                // a child of a done library node, whether or not the user's
                // context would notify.
                if let Some(err) = custom.err() {
                    self.cancel(err, CauseArg::Set(custom.cause()), false);
                    return;
                }
                // Ask the user's context to notify us. It may call the
                // notification right away (it is already done), or from
                // another thread at any moment; `cancel_from_parent`
                // handles both.
                let sub = custom.subscribe(Entry::Child(Arc::downgrade(self)));
                let mut inner = self.inner.lock();
                let prev = self.state.set_flag(SUBSCRIBED, Ordering::Relaxed);
                if prev.is_live() {
                    inner.extra().subscription = Some(sub);
                } else {
                    // Already canceled by the notification: the
                    // subscription has fired and needs no cancel.
                    drop(inner);
                    drop(sub);
                }
            }
        }
    }

    /// `attach` to a sharded parent, or one whose lock was just seen
    /// taken: registers in the calling thread's shard, sharding the parent
    /// first if need be; born done if the parent is done. False if the
    /// parent cannot be sharded; `attach` then waits for its lock. (The
    /// look at the lock is a hint: a lock taken just after it is waited
    /// for. Children may be in the parent's own registry and in its shards
    /// at once; its ender empties both.)
    #[cold]
    #[inline(never)]
    fn attach_contended(self: &Arc<Self>, parent: &CancelNode) -> bool {
        let id = match parent.shard_set.load(Ordering::Acquire) {
            0 => match parent.make_shards() {
                Some(id) => id,
                None => return false,
            },
            id => id,
        };
        match shards::insert(parent, id, Entry::Child(Arc::downgrade(self))) {
            // A shard of over 134 million entries cannot record the slot:
            // the entry stays until the parent ends, as in `attach`.
            Ok(slot) => self.slot.store(slot.unwrap_or(NO_SLOT), Ordering::Relaxed),
            Err(entry) => {
                drop(entry);
                self.born_done(parent);
            }
        }
        true
    }

    /// Ends `self` (a fresh node) with its done library parent's error,
    /// its cause inherited: "born done".
    #[cold]
    fn born_done(self: &Arc<Self>, parent: &CancelNode) {
        let err = parent.err().unwrap_or(Error::Canceled);
        self.cancel(err, CauseArg::Inherited, false);
    }

    /// A new `with_cancel` node of `parent` (a live cancel node),
    /// registered in the calling thread's shard of it, as if `attach` had
    /// found the parent's lock taken. For the shards' unit tests.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn new_in_shard(parent: Link) -> Arc<CancelNode> {
        let node = Arc::new(CancelNode::unattached(parent, None, None));
        let Source::Node(parent) = node.parent.source() else {
            panic!("not a cancel node's child");
        };
        assert!(node.attach_contended(parent), "sharded");
        node
    }

    /// Gives this node a shard set, because a thread attaching a child
    /// found its lock taken; returns the set's id. `None` if the node is
    /// done or every set is in use: the child then waits for the lock.
    /// Another thread may have sharded it meanwhile: then its set.
    #[cold]
    pub(super) fn make_shards(&self) -> Option<u16> {
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

    /// Registers a merge node, already attached to its parent, with its
    /// other parent. Born done (with `other`'s error and cause) if `other`
    /// is done; nothing registered if it can never be. Otherwise the
    /// registration is stored under our lock if we are still live (check–
    /// insert, invariant 2: whoever ends us later takes it back), or taken
    /// back here if we ended meanwhile (by the parent, or by `other`'s
    /// notification). Calls into `other`, which may be user code, with no
    /// lock held (invariant 4).
    fn attach_other(self: &Arc<Self>) {
        let Some(other) = self.other() else {
            return;
        };
        if let Some(err) = other.err() {
            self.cancel(err, CauseArg::Set(other.cause()), false);
            return;
        }
        let registration = other.subscribe(Entry::Merged(Arc::downgrade(self)));
        if registration.is_never() {
            return;
        }
        let mut inner = self.inner.lock();
        if self.state.relaxed().is_live() {
            inner.extra().other_registration = Some(registration);
        } else {
            drop(inner);
            let _ = registration.cancel();
        }
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

    /// Consumes a node whose last handle is gone and gives back its parent,
    /// and a merge node's other parent, so that `Link`'s `Drop` can
    /// continue up the chain without recursion.
    #[inline(always)]
    pub(super) fn into_parent(mut self, owner: usize) -> (Link, Option<Link>) {
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
        let owner = crate::timer::owner_of(self);
        self.release(owner);
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::CancelNode;

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
