//! Birth of a cancel node: making it (`new`, `new_merge`) and registering
//! it with the context it derives from (`attach`), in a contended parent's
//! shard (`attach_contended`), with a merge node's other parent
//! (`attach_other`), or ending it at once if that context is done
//! (`born_done`).

use std::sync::Arc;
use std::time::Instant;

use super::{CancelNode, Extra, Inner, NO_SLOT};
use crate::error::{Cause, Error};
use crate::sync::{AtomicU16, AtomicU32, Mutex, Ordering};
use crate::tree::cause::CauseArg;
use crate::tree::derived::Derived;
use crate::tree::instant::{AtomicInstant, FAR, MERGED, NO_INSTANT, encode};
use crate::tree::link::{Link, Source};
use crate::tree::registry::{Entry, Registry};
use crate::tree::shards;
use crate::tree::state::{CAUSE, LIVE, SUBSCRIBED, State};

impl CancelNode {
    /// A new, live node, registered with the context it derives from. If
    /// that context is already done, the node is born done, with its error
    /// and cause, and nothing is registered.
    ///
    /// Always inlined: `with_cancel` passes no deadline and no cause, and
    /// inlined there the branches on them fold away (the common case, made
    /// without them; issue 22).
    #[inline(always)]
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
    #[inline(always)]
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
        // Counted in the parent's `Derived` by `attach`, which may do it
        // under the parent's lock, where it costs no atomic increment.
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

    /// Registers `self` (a fresh node) with the context it derives from.
    /// If that context is already done, `self` is canceled right here with
    /// the parent's error and cause ("born done"), and nothing is
    /// registered.
    ///
    /// It also counts `self` in its parent's `Derived`: under the parent's
    /// lock when it registers there (`add_locked`, no atomic increment),
    /// otherwise by `Link::add_child`.
    fn attach(self: &Arc<Self>) {
        match self.parent.as_cancel() {
            // Made right on a cancel node (not through values): the
            // common case, counted where the path is known.
            Some(parent) => self.attach_to(parent, true),
            None => self.attach_through(),
        }
    }

    /// `attach` for a node made on a value, a `without_cancel` context, a
    /// root or a user context: counted in that context's `Derived` at once.
    #[inline(never)]
    fn attach_through(self: &Arc<Self>) {
        self.parent.add_child();
        match self.parent.source() {
            Source::Never => {}
            Source::Node(parent) => self.attach_to(parent, false),
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

    /// Registers `self` with `parent`, its nearest cancel node. `direct`:
    /// `parent` is `self`'s own parent, in whose `Derived` this counts it
    /// (under the lock when it can: `add_locked`, no atomic increment).
    #[inline(always)]
    fn attach_to(self: &Arc<Self>, parent: &CancelNode, direct: bool) {
        // A done parent needs no lock and no weak reference made and
        // dropped. Checked again under the lock (invariant 2).
        if parent.err().is_some() {
            if direct {
                parent.derived.add();
            }
            return self.born_done(parent);
        }
        // A sharded parent, or another thread holds its lock right now:
        // this thread's shard of it instead (see `shards.rs`).
        if (parent.shard_set.load(Ordering::Relaxed) != 0 || parent.inner.is_locked())
            && self.attach_contended(parent, direct)
        {
            return;
        }
        let entry = Entry::Child(Arc::downgrade(self));
        let mut inner = parent.inner.lock();
        if direct {
            parent.derived.add_locked();
        }
        match parent.insert_locked(&mut inner, entry) {
            Ok(slot) => {
                // A registry of over four billion entries cannot record
                // this slot; the entry then stays until the parent ends
                // (it is weak, so it holds nothing). (Past two billion a
                // slot reads as a shard's; `shards::remove` then finds
                // another entry there and leaves it: the same outcome.)
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

    /// `attach` to a sharded parent, or one whose lock was just seen
    /// taken: registers in the calling thread's shard, sharding the parent
    /// first if need be; born done if the parent is done. False if the
    /// parent cannot be sharded; `attach` then waits for its lock. (The
    /// look at the lock is a hint: a lock taken just after it is waited
    /// for. Children may be in the parent's own registry and in its shards
    /// at once; its ender empties both.)
    /// `direct`: `self` is made right on `parent`, and this counts it in
    /// the parent's `Derived` if it registers here (else `attach` will).
    #[cold]
    #[inline(never)]
    fn attach_contended(self: &Arc<Self>, parent: &CancelNode, direct: bool) -> bool {
        let id = match parent.shard_set.load(Ordering::Acquire) {
            0 => match parent.make_shards() {
                Some(id) => id,
                None => return false,
            },
            id => id,
        };
        if direct {
            parent.derived.add();
        }
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
        let direct = node.parent.as_cancel().is_some();
        if !direct {
            node.parent.add_child();
        }
        assert!(node.attach_contended(parent, direct), "sharded");
        node
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
}
