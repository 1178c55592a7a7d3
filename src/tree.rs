//! The private cancellation tree: the node behind every `with_cancel`,
//! `with_deadline` and `with_timeout` context.
//!
//! # Shape
//!
//! A [`CancelNode`] holds a strong reference to its parent context. A parent
//! knows its dependants only through its [`Registry`]: weak references to
//! child nodes, wakers of pending `done()` futures, and `after_func`
//! registrations. (A merge node, `merge.rs`, also holds a second parent,
//! `Extra::other`, and is registered with it by an `Entry::Merged`; it
//! always ends under its lock and then leaves both parents' registries.)
//! Strong references therefore point towards the root, and
//! dropping the last handle of a context frees it; its `Drop` takes its
//! entry out of the parent. (A pending `after_func` registration holds its
//! context on purpose, see `after.rs`.) Most nodes have at most one
//! registration, which is stored inline; more move to a slab.
//!
//! # Invariants
//!
//! 1. `state` goes from live to `CANCELED` or `DEADLINE` once, by
//!    compare-and-swap. Normally under `inner`'s lock, in the critical
//!    section that also stores the cause and takes the whole registry out.
//!    A node with nothing to take out under the lock (none of the
//!    `NEEDS_LOCK` flag bits: no registration, no stored cause, no custom
//!    parent) is ended by the CAS alone, without the lock; if it had a
//!    timer entry (`ARMED`), the ender removes it afterwards. The
//!    `NEEDS_LOCK` bits are set by read-modify-write under the lock, so
//!    once one is set the lock-free CAS fails and the locked path runs.
//!    Either way exactly one ender wins.
//! 2. Hence, under `inner`'s lock, a live state means the registry is
//!    still the node's and anything inserted will be notified; a done state
//!    means nothing may be inserted any more. Every insertion checks the
//!    state under the lock first (check–insert under one lock: no lost
//!    wake-up, no lost child).
//! 3. No code path holds two node locks at once. Cancellation takes a
//!    node's entries out under its lock, releases it, and only then visits
//!    the children one at a time. Removal from a parent locks only the
//!    parent. There is therefore no lock order to get wrong between nodes.
//!    The only nesting is node lock → timer lock (`extend_deadline`), and
//!    the timer thread never takes a node lock while holding its own.
//! 4. No user code (wakers, callbacks, custom `Context` methods and
//!    `Subscription`s, drops of user values) runs while a goctx lock is
//!    held, nor before the whole subtree of a cancellation is done.
//! 5. Cancellation is iterative: an explicit stack of nodes, never
//!    recursion, so a chain of any depth cancels on a small stack.
//!    Dropping a chain is iterative too (see `Ctx`'s `Drop`), and so is
//!    following inherited causes (`Ctx::cause`).
//! 6. A node ended by its library parent does not copy the cause: it is
//!    marked `INHERITED` and `cause()` asks the parent, whose cause is final
//!    by then. A node that had registrations stays `PROPAGATING` until its
//!    subtree is done; `CancelFunc::cancel` waits for that, so every
//!    `cancel()` that returns, winner or loser of a race, leaves the
//!    subtree done (Go gets this from holding the mutex while canceling
//!    children).

use std::mem;
use std::sync::{Arc, Weak};
use std::task::Waker;
use std::time::Instant;

use crate::after::AfterState;
use crate::context::Ctx;
use crate::custom::Subscription;
use crate::error::{Cause, Error, ExtendError};
use crate::sync::{AtomicU8, AtomicU32, Mutex, Ordering};
use crate::timer;

/// `state` values (the low two bits).
pub(crate) const LIVE: u8 = 0;
pub(crate) const CANCELED: u8 = 1;
pub(crate) const DEADLINE: u8 = 2;
/// Canceled because the last `CancelFunc` was dropped: `err()` is
/// `Canceled`, and the cause, when no other was stored, is
/// `CancelFuncDropped` (kept in the state, so the common RAII cancel stores
/// nothing and allocates nothing).
pub(crate) const DROPPED: u8 = 3;
/// Mask of the bits above.
const DONE_MASK: u8 = 3;
/// Flag bit: the node has an entry in the timer. Set when the deadline is
/// armed; whoever ends the node removes the entry.
const ARMED: u8 = 4;
/// Flag bit: something was registered (the registry may be non-empty).
const REGISTRY: u8 = 8;
/// Flag bit: `inner.extra` holds a deadline cause while live.
const CAUSE: u8 = 16;
/// Flag bit: `inner.extra` may hold a subscription: a custom parent's, or
/// a merge node's registration with its other parent (set at birth for a
/// merge node, so that it always ends on the locked path, which takes the
/// registration back).
const SUBSCRIBED: u8 = 32;
/// Set together with the done bits: the node was ended by its (library)
/// parent, so its cause is the parent's; nothing is copied.
const INHERITED: u8 = 64;
/// Set together with the done bits when the node had registrations, and
/// cleared once the whole subtree below it is done. A `CancelFunc::cancel`
/// that loses the race to end the node waits for it to clear, so that
/// any `cancel()` returning implies the subtree is done (as in Go, where
/// the loser waits on the node's mutex).
const PROPAGATING: u8 = 128;
/// Flags that need the locked path to end a node (there is something to
/// take out under the lock). `ARMED` alone does not: the ender removes the
/// timer entry after the CAS, which the timer tolerates (see `arm`).
const NEEDS_LOCK: u8 = REGISTRY | CAUSE | SUBSCRIBED;

/// Marks "not registered in a parent" in `CancelNode::slot`.
const NO_SLOT: u32 = u32::MAX;

/// How a cancellation sets the cause.
pub(crate) enum CauseArg {
    /// Use the cause stored at creation (a deadline firing with the
    /// `*_cause` argument of `with_deadline_cause`).
    Stored,
    /// Like `Stored`, from the timer thread, which read this time from the
    /// clock: ignored unless the node's deadline is at or before it (it was
    /// moved later by `extend_deadline` after the thread took the entry).
    Expired(Instant),
    /// Use this cause; `None` means "the error itself".
    Set(Option<Cause>),
    /// The last `CancelFunc` was dropped: the cause is `CancelFuncDropped`.
    Dropped,
    /// Ended by the library parent the node is registered with: the cause
    /// is that parent's, found through `parent` when asked.
    Inherited,
}

/// What `CancelNode::own_cause` found.
pub(crate) enum OwnCause {
    Live,
    /// Ask the parent (the node was ended by it).
    Inherited,
    Cause(Cause),
}

/// The state of one cancelable context.
pub(crate) struct CancelNode {
    /// The context this one was derived from. Immutable. Keeps the parent
    /// (and so the whole path to the root) alive.
    pub(crate) parent: Ctx,
    /// This node's own deadline, for `with_deadline`/`with_timeout` nodes;
    /// `None` for `with_cancel` nodes, whose deadline is the parent's. Set
    /// at creation; moved later only by `extend_deadline`, under `inner`'s
    /// lock while the node is live, so it is frozen once the node is done.
    deadline: AtomicInstant,
    /// `LIVE`, `CANCELED` or `DEADLINE` in the low bits, plus flag bits
    /// (`ARMED`, `REGISTRY`, `CAUSE`, `SUBSCRIBED`) while live and
    /// `INHERITED` once done. Flags are set by read-modify-write (under
    /// `inner`'s lock, except `ARMED`); the state goes from live to done
    /// once, by CAS (invariant 1), with `Release`; it is read lock-free
    /// with `Acquire`, so a reader who sees "done" also sees everything the
    /// canceling thread wrote before it canceled.
    state: AtomicU8,
    /// How many `CancelFunc` handles are alive besides one (0: a single
    /// handle). Changed by `CancelFunc`'s `Clone`/`Drop`/`detach` only; the
    /// drop that finds it at zero is the last and cancels the node (RAII
    /// cancel). 32 bits keep the node in 96 bytes; at `u32::MAX` it sticks
    /// (see `cancel.rs`).
    pub(crate) handles: AtomicU32,
    /// This node's index in the registry of the node it is registered with
    /// (its nearest cancelable ancestor), or `NO_SLOT`. Written and read
    /// only while that ancestor's lock is held, so `Relaxed` suffices: the
    /// lock orders the accesses.
    slot: AtomicU32,
    /// The index of this node's entry in the timer wheel, written by the
    /// timer under its lock when the entry is made (`NIL` before). Only
    /// meaningful while `ARMED`; the timer checks ownership on use.
    timer_slot: AtomicU32,
    /// Everything that changes at cancellation.
    inner: Mutex<Inner>,
}

/// The lock-protected part of a node. Guarded by `CancelNode::inner`.
#[derive(Default)]
struct Inner {
    /// Who to notify when this node is done. Taken out by the cancellation
    /// that ends the node.
    registry: Registry,
    /// Rarely needed state, boxed to keep the node small.
    extra: Option<Box<Extra>>,
}

/// The rare parts of a node's state. Guarded by `CancelNode::inner`.
#[derive(Default)]
struct Extra {
    /// While live: the cause a firing deadline will report (the argument of
    /// `with_deadline_cause`), if any. Once done: the cause of the first
    /// cancellation, unless `INHERITED`; `None` means "the error itself".
    cause: Option<Cause>,
    /// The registration with a custom (user-implemented) parent, if the
    /// parent is one. Taken when the node is done or dropped.
    subscription: Option<Subscription>,
    /// The deadline, when it is too far from now (centuries) for
    /// `AtomicInstant` to hold exactly; `deadline` then says `FAR`.
    far_deadline: Option<Instant>,
    /// A merge node's other parent (`merge.rs`): set at birth, never
    /// changed (`deadline` then says `MERGED`). Kept after the node ends,
    /// for `deadline()` and the name; taken out only by `take_other` once
    /// the node is unreachable.
    other: Option<Ctx>,
    /// A merge node's registration with `other`. Stored by `attach_other`
    /// while the node is live; taken (and canceled) by whoever ends or
    /// drops the node.
    other_registration: Option<Subscription>,
}

impl Inner {
    fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    fn take_subscription(&mut self) -> Option<Subscription> {
        self.extra.as_mut()?.subscription.take()
    }

    fn take_other_registration(&mut self) -> Option<Subscription> {
        self.extra.as_mut()?.other_registration.take()
    }

    fn cause(&self) -> Option<Cause> {
        self.extra.as_ref()?.cause.clone()
    }
}

impl CancelNode {
    /// A new, live, unregistered node. The caller registers it with the
    /// parent (`attach`) before handing it out.
    pub(crate) fn new(parent: Ctx, deadline: Option<Instant>, cause: Option<Cause>) -> Self {
        let (deadline, far_deadline) = match deadline.map(encode) {
            None => (NO_INSTANT, None),
            Some(Some(nanos)) => (nanos, None),
            Some(None) => (FAR, deadline),
        };
        let state = if cause.is_some() { CAUSE } else { LIVE };
        let extra = (cause.is_some() || far_deadline.is_some()).then(|| {
            Box::new(Extra {
                cause,
                far_deadline,
                ..Extra::default()
            })
        });
        CancelNode {
            parent,
            deadline: AtomicInstant(crate::sync::AtomicI64::new(deadline)),
            state: AtomicU8::new(state),
            handles: AtomicU32::new(0),
            slot: AtomicU32::new(NO_SLOT),
            timer_slot: AtomicU32::new(crate::wheel::NIL),
            inner: Mutex::new(Inner {
                registry: Registry::Empty,
                extra,
            }),
        }
    }

    /// A new, live, unregistered merge node (`merge.rs`): a cancel node of
    /// `parent`, without a deadline of its own, that `attach_other` also
    /// registers with `other`. `SUBSCRIBED` from birth: such a node always
    /// ends under its lock, where the registration is taken out.
    pub(crate) fn new_merge(parent: Ctx, other: Ctx) -> Self {
        let node = CancelNode::new(parent, None, None);
        node.deadline.store(MERGED);
        node.state.store(SUBSCRIBED, Ordering::Relaxed);
        node.inner.lock().extra = Some(Box::new(Extra {
            other: Some(other),
            ..Extra::default()
        }));
        node
    }

    /// Whether this is a merge node. One `Relaxed` load: the marker is
    /// written before the node is shared and never changed.
    #[inline]
    fn is_merge(&self) -> bool {
        matches!(self.deadline.load(), Stored::Merged)
    }

    /// A merge node's other parent; `None` for every other node (without
    /// taking the lock).
    pub(crate) fn other(&self) -> Option<Ctx> {
        if !self.is_merge() {
            return None;
        }
        self.inner.lock().extra.as_ref()?.other.clone()
    }

    /// Takes a merge node's other parent out of a node nobody can reach
    /// any more, so that `Ctx`'s `Drop` drops it without recursion.
    pub(crate) fn take_other(&mut self) -> Option<Ctx> {
        self.inner.get_mut().extra.as_mut()?.other.take()
    }

    /// Registers a merge node, already attached to its parent, with its
    /// other parent. Born done (with `other`'s error and cause) if `other`
    /// is done; nothing registered if it can never be. Otherwise the
    /// registration is stored under our lock if we are still live (check–
    /// insert, invariant 2: whoever ends us later takes it back), or taken
    /// back here if we ended meanwhile (by the parent, or by `other`'s
    /// notification). Calls into `other`, which may be user code, with no
    /// lock held (invariant 4).
    pub(crate) fn attach_other(self: &Arc<Self>) {
        let Some(other) = self.other() else {
            return;
        };
        if let Some(err) = other.err() {
            self.cancel(err, CauseArg::Set(other.cause()), false);
            return;
        }
        let registration = other.subscribe_entry(Entry::Merged(Arc::downgrade(self)));
        if registration.is_never() {
            return;
        }
        let mut inner = self.inner.lock();
        if self.state.load(Ordering::Relaxed) & DONE_MASK == LIVE {
            inner.extra().other_registration = Some(registration);
        } else {
            drop(inner);
            let _ = registration.cancel();
        }
    }

    /// Called by the notification of a merge node's other parent when that
    /// parent is a user context (a library one cancels us in its walk):
    /// cancel with what `other` now reports, as `cancel_from_parent` does
    /// with the parent.
    pub(crate) fn cancel_from_other(self: &Arc<Self>) {
        let Some(other) = self.other() else {
            return;
        };
        let err = other.err().unwrap_or(Error::Canceled);
        let cause = other.cause();
        self.cancel(err, CauseArg::Set(cause), false);
    }

    /// Inserts `entry` into the registry; `inner` is this node's locked
    /// state. Returns the entry back if the node is done.
    fn insert_locked(&self, inner: &mut Inner, entry: Entry) -> Result<usize, Entry> {
        let state = self.state.load(Ordering::Relaxed);
        if state & DONE_MASK != LIVE {
            return Err(entry);
        }
        if state & REGISTRY == 0 {
            // The read-modify-write is what stops a racing lock-free
            // cancel (invariant 1); if that cancel came first, we see it.
            let prev = self.state.fetch_or(REGISTRY, Ordering::Relaxed);
            if prev & DONE_MASK != LIVE {
                return Err(entry);
            }
        }
        Ok(inner.registry.insert(entry))
    }

    /// This node's error: one `Acquire` load, no lock.
    #[inline]
    pub(crate) fn err(&self) -> Option<Error> {
        state_err(self.state.load(Ordering::Acquire))
    }

    /// This node's own answer to `cause()`; `Ctx::cause` follows
    /// `Inherited` up the tree, iteratively.
    pub(crate) fn own_cause(&self) -> OwnCause {
        let state = self.state.load(Ordering::Acquire);
        let Some(err) = state_err(state) else {
            return OwnCause::Live;
        };
        if state & INHERITED != 0 {
            return OwnCause::Inherited;
        }
        if state & DONE_MASK == DROPPED {
            return OwnCause::Cause(crate::error::dropped_cause());
        }
        let cause = self.inner.lock().cause();
        OwnCause::Cause(cause.unwrap_or_else(|| err.into_cause()))
    }

    /// Registers `self` (a fresh node) with the context it derives from.
    /// If that context is already done, `self` is canceled right here with
    /// the parent's error and cause ("born done"), and nothing is
    /// registered.
    pub(crate) fn attach(self: &Arc<Self>) {
        match self.parent.source() {
            Source::Never => {}
            Source::Node(parent) => {
                // A done parent (checked before and again under its lock)
                // needs no lock and no weak reference made and dropped.
                if let Some(err) = parent.err() {
                    self.cancel(err, CauseArg::Inherited, false);
                    return;
                }
                let mut inner = parent.inner.lock();
                let done = parent.state.load(Ordering::Relaxed) & DONE_MASK != LIVE;
                let registered = if done {
                    Err(())
                } else {
                    parent
                        .insert_locked(&mut inner, Entry::Child(Arc::downgrade(self)))
                        .map_err(drop)
                };
                match registered {
                    Ok(slot) => {
                        // A registry of over four billion entries cannot
                        // record this slot; the entry then stays until the
                        // parent ends (it is weak, so it holds nothing).
                        let slot = u32::try_from(slot).unwrap_or(NO_SLOT);
                        self.slot.store(slot, Ordering::Relaxed);
                    }
                    Err(_) => {
                        drop(inner);
                        let err = parent.err().unwrap_or(Error::Canceled);
                        self.cancel(err, CauseArg::Inherited, false);
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
                let prev = self.state.fetch_or(SUBSCRIBED, Ordering::Relaxed);
                if prev & DONE_MASK == LIVE {
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

    /// See `timer_slot`. Relaxed: both sides hold the timer's lock.
    pub(crate) fn timer_slot(&self) -> u32 {
        self.timer_slot.load(Ordering::Relaxed)
    }

    pub(crate) fn set_timer_slot(&self, index: u32) {
        self.timer_slot.store(index, Ordering::Relaxed);
    }

    /// This node's own deadline (not the parent's).
    #[inline]
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.deadline.load() {
            Stored::None | Stored::Merged => None,
            Stored::At(at) => Some(at),
            Stored::Far => self
                .inner
                .lock()
                .extra
                .as_ref()
                .and_then(|e| e.far_deadline),
        }
    }

    /// `deadline()` for a caller that holds `inner`'s lock.
    fn deadline_locked(&self, inner: &Inner) -> Option<Instant> {
        match self.deadline.load() {
            Stored::None | Stored::Merged => None,
            Stored::At(at) => Some(at),
            Stored::Far => inner.extra.as_ref().and_then(|e| e.far_deadline),
        }
    }

    /// Moves this node's own deadline later, re-arming the timer. Refused
    /// once the node is done and for nodes without a deadline of their
    /// own; a `deadline` that is not later than the current one changes
    /// nothing. Returns the deadline in force afterwards.
    pub(crate) fn extend_deadline(
        self: &Arc<Self>,
        deadline: Instant,
    ) -> Result<Instant, ExtendError> {
        let mut inner = self.inner.lock();
        let state = self.state.load(Ordering::Relaxed);
        if let Some(err) = state_err(state) {
            drop(inner);
            // As with a losing `cancel()`: report "done" only once the
            // subtree is done too.
            self.wait_propagated();
            return Err(ExtendError::Done(err));
        }
        let current = self
            .deadline_locked(&inner)
            .ok_or(ExtendError::NoDeadline)?;
        if deadline <= current {
            return Ok(current);
        }
        match encode(deadline) {
            Some(nanos) => self.deadline.store(nanos),
            None => {
                inner.extra().far_deadline = Some(deadline);
                self.deadline.store(FAR);
            }
        }
        if state & ARMED != 0 {
            // Under the node's lock the timer thread cannot expire us (its
            // expiry takes this lock). A lock-free cancel can still end us
            // meanwhile; `reschedule` then re-arms nothing (see there).
            timer::reschedule(self, current, deadline);
        }
        Ok(deadline)
    }

    /// Arms this node's deadline with the timer, unless it is already done.
    /// No node lock: the entry is made first, then `ARMED` is set by
    /// read-modify-write. If the node ended before that (the RMW sees it),
    /// nobody else knew of the entry, so we take it out again; if it ends
    /// after, its ender sees `ARMED` and takes it out.
    pub(crate) fn arm(self: &Arc<Self>, at: Instant) {
        timer::insert(self, at);
        let prev = self.state.fetch_or(ARMED, Ordering::AcqRel);
        if prev & DONE_MASK != LIVE {
            timer::remove(self, timer::owner(self));
        }
    }

    /// Called by the timer thread, which read `now` from the clock after
    /// finding this node's deadline due.
    pub(crate) fn expire(self: &Arc<Self>, now: Instant) {
        self.cancel(Error::DeadlineExceeded, CauseArg::Expired(now), true);
    }

    /// Called by a custom parent's notification: cancel with whatever the
    /// parent now reports. A custom parent that notifies without reporting
    /// an error is treated as canceled (Go would panic here).
    pub(crate) fn cancel_from_parent(self: &Arc<Self>) {
        let err = self.parent.err().unwrap_or(Error::Canceled);
        let cause = self.parent.cause();
        self.cancel(err, CauseArg::Set(cause), false);
    }

    /// Cancels this node and, iteratively, every descendant, then wakes
    /// their waiters and hands their `after_func` callbacks to the callback
    /// threads. A no-op if the node is already done (first cancel wins, for
    /// error and cause alike).
    ///
    /// `unlink` is true when the cancellation starts at this node (its own
    /// `CancelFunc` or its deadline): it then also removes itself from its
    /// parent's registry. When a parent cancels its children it has already
    /// taken its whole registry, so they skip that step.
    ///
    /// When this returns, every descendant reports done (`err()` is `Some`).
    pub(crate) fn cancel(self: &Arc<Self>, err: Error, cause: CauseArg, unlink: bool) {
        let mut work = Work::default();
        {
            // While this thread walks a subtree, a `cancel()` it makes from
            // a `Drop` of a user value (freed along the way) must not wait
            // for the walk to finish: it would wait for itself.
            let _walking = Walking::enter();
            if !self.walk(err, cause, unlink, &mut work) {
                return;
            }
        }
        // All state is final; now run what may be user code (invariant 4).
        work.notify();
    }

    /// The part of `cancel` before any user code runs: ends this node and
    /// its whole subtree. Returns false if the node was already done.
    fn walk(self: &Arc<Self>, err: Error, cause: CauseArg, unlink: bool, work: &mut Work) -> bool {
        let ended = match self.end_lock_free(err, &cause) {
            Some(ended) => ended,
            None => self.finish(err, cause, work, unlink),
        };
        if !ended {
            return false;
        }
        // Depth-first over the subtree with an explicit stack (invariant 5).
        // A `Complete` step is pushed below a node's children, so it is
        // reached once they (and their subtrees) are all done.
        while let Some(step) = work.children.pop() {
            match step {
                Step::Cancel(child, cause) => {
                    if child.end_lock_free(err, &cause).is_none() {
                        child.finish(err, cause, work, false);
                    }
                }
                Step::Complete(node) => {
                    node.state.fetch_and(!PROPAGATING, Ordering::Release);
                }
            }
        }
        if unlink {
            self.unlink();
        }
        true
    }

    /// Returns once no cancellation is still walking the subtree below this
    /// node (see `PROPAGATING`). The walk runs no user code, so this waits
    /// for a bounded amount of tree work on another thread.
    pub(crate) fn wait_propagated(&self) {
        if Walking::active() {
            return;
        }
        let mut spins = 0u32;
        while self.state.load(Ordering::Acquire) & PROPAGATING != 0 {
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
        let inherited = match cause {
            // `Stored` with nothing stored (no `CAUSE` flag, checked below)
            // is the same as no cause.
            CauseArg::Set(None) | CauseArg::Stored | CauseArg::Dropped => 0,
            CauseArg::Inherited => INHERITED,
            CauseArg::Set(Some(_)) | CauseArg::Expired(_) => return None,
        };
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & DONE_MASK != LIVE {
                return Some(false);
            }
            if state & NEEDS_LOCK != 0 {
                return None;
            }
            // Release publishes the cancel to `err()` readers.
            match self.state.compare_exchange_weak(
                state,
                done_bits(err, cause) | inherited,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => state = now,
            }
        }
        if state & ARMED != 0 {
            timer::remove(self, timer::owner(self));
        }
        Some(true)
    }

    /// Ends this one node under its lock: sets state and cause, takes the
    /// registry and queues its children and notifications in `work`.
    /// Returns false if the node was already done.
    fn finish(
        self: &Arc<Self>,
        err: Error,
        cause: CauseArg,
        work: &mut Work,
        own_cancel: bool,
    ) -> bool {
        let mut replaced = None;
        let (registry, armed, subscription, other_registration) = {
            let mut inner = self.inner.lock();
            let state = self.state.load(Ordering::Relaxed);
            if state & DONE_MASK != LIVE {
                return false;
            }
            if let CauseArg::Expired(now) = cause
                && self
                    .deadline_locked(&inner)
                    .is_none_or(|deadline| deadline > now)
            {
                // Extended after the timer took the old entry out; the new
                // one is armed.
                return false;
            }
            let inherited = if matches!(cause, CauseArg::Inherited) {
                INHERITED
            } else {
                0
            };
            let propagating = if inner.registry.len() > 0 {
                PROPAGATING
            } else {
                0
            };
            // Only the lock-free path (or `arm`'s flag) can change the state
            // behind our lock; if the CAS fails, look again.
            // Release: publishes everything before the cancel to threads
            // that load "done" with Acquire (the cause, written next, is
            // read under this lock). This also clears the flag bits; the
            // entries they stand for are taken out right here.
            let mut state = state;
            loop {
                match self.state.compare_exchange(
                    state,
                    done_bits(err, &cause) | inherited | propagating,
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(now) if now & DONE_MASK != LIVE => return false,
                    Err(now) => state = now,
                }
            }
            match cause {
                // The replaced cause (a deadline cause that did not fire) is
                // a user value: dropped after the lock (invariant 4).
                CauseArg::Set(Some(cause)) => replaced = inner.extra().cause.replace(cause),
                CauseArg::Set(None) | CauseArg::Inherited | CauseArg::Dropped => {
                    replaced = inner.extra.as_mut().and_then(|extra| extra.cause.take());
                }
                CauseArg::Stored | CauseArg::Expired(_) => {}
            }
            (
                mem::take(&mut inner.registry),
                state & ARMED != 0,
                inner.take_subscription(),
                inner.take_other_registration(),
            )
        };
        drop(replaced);
        if armed {
            timer::remove(self, timer::owner(self));
        }
        // If we ended first, the custom parent must forget us; otherwise its
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
            self.unlink();
        }
        if (own_cancel || merge)
            && let Some(subscription) = subscription
        {
            work.unsubscribe.push(subscription);
        }
        if let Some(registration) = other_registration {
            work.unsubscribe.push(registration);
        }
        if registry.len() > 0 {
            // Below the children: reached when the subtree is done.
            work.children.push(Step::Complete(self.clone()));
        }
        let mut parent_cause = None;
        for entry in registry.into_entries() {
            match entry {
                Entry::Child(child) | Entry::Merged(child) => {
                    // A child whose last handle is gone is being dropped
                    // right now; its `Drop` sees us done and does nothing.
                    let Some(child) = child.upgrade() else {
                        continue;
                    };
                    // A direct child finds its cause through us; one that
                    // reached us through a custom wrapper, or a merge node
                    // for which we are the other parent, gets a copy.
                    let cause = match child.parent.source() {
                        Source::Node(parent) if Arc::ptr_eq(parent, self) => {
                            // A leaf child ends right here, lock-free,
                            // without a trip through the stack.
                            if child.end_lock_free(err, &CauseArg::Inherited).is_some() {
                                continue;
                            }
                            CauseArg::Inherited
                        }
                        _ => CauseArg::Set(
                            parent_cause.get_or_insert_with(|| node_cause(self)).clone(),
                        ),
                    };
                    work.children.push(Step::Cancel(child, cause));
                }
                other => work.notify.push(other),
            }
        }
        true
    }

    /// Removes this node's entry from the ancestor it is registered with.
    fn unlink(&self) {
        if let Source::Node(parent) = self.parent.source() {
            let mut inner = parent.inner.lock();
            // A done parent has already emptied its registry (invariant 1):
            // our slot number means nothing there any more.
            if parent.state.load(Ordering::Relaxed) & DONE_MASK == LIVE {
                // Both sides of `slot` hold the parent's lock: plain
                // load and store, no read-modify-write needed.
                let slot = self.slot.load(Ordering::Relaxed);
                if slot != NO_SLOT {
                    self.slot.store(NO_SLOT, Ordering::Relaxed);
                    let entry = inner.registry.remove(slot as usize);
                    drop(inner);
                    drop(entry);
                }
            }
        }
    }

    /// Registers `entry` with this node, or returns it if the node is
    /// already done (the caller then notifies it at once).
    pub(crate) fn register(&self, entry: Entry) -> Result<usize, Entry> {
        let mut inner = self.inner.lock();
        self.insert_locked(&mut inner, entry)
    }

    /// Removes a registration made by `register`. Returns whether it was
    /// still there (false once the node is done: it was notified).
    pub(crate) fn deregister(&self, slot: usize) -> bool {
        let mut inner = self.inner.lock();
        if self.state.load(Ordering::Relaxed) & DONE_MASK != LIVE {
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
    pub(crate) fn poll_register(&self, slot: &mut Option<usize>, waker: &Waker) -> Option<Error> {
        let mut inner = self.inner.lock();
        if let Some(err) = state_err(self.state.load(Ordering::Relaxed)) {
            *slot = None;
            return Some(err);
        }
        match slot {
            Some(index) => {
                if let Some(Entry::Waker(old)) = inner.registry.get_mut(*index)
                    && !old.will_wake(waker)
                {
                    let old = std::mem::replace(old, waker.clone());
                    drop(inner);
                    // Dropped unlocked (invariant 4).
                    drop(old);
                }
            }
            None => match self.insert_locked(&mut inner, Entry::Waker(waker.clone())) {
                Ok(index) => *slot = Some(index),
                // Ended by a lock-free cancel since the check above.
                Err(entry) => {
                    drop(inner);
                    drop(entry);
                    return self.err();
                }
            },
        }
        None
    }

    /// The number of live registrations (children, waiters, callbacks).
    /// Used by `Ctx::dependents`.
    pub(crate) fn registrations(&self) -> usize {
        self.inner.lock().registry.len()
    }
}

/// The cause of a done node, following `Inherited` links up the tree.
pub(crate) fn node_cause(node: &CancelNode) -> Option<Cause> {
    match node.own_cause() {
        OwnCause::Live => None,
        OwnCause::Cause(cause) => Some(cause),
        OwnCause::Inherited => node.parent.cause(),
    }
}

impl CancelNode {
    /// Consumes a node whose last handle is gone and gives back its parent
    /// handle, so that `Ctx`'s `Drop` can continue up the chain without
    /// recursion.
    pub(crate) fn into_parent(mut self, owner: usize) -> Ctx {
        self.release(owner);
        // Nothing can observe this node any more; mark it so that `Drop`
        // does not release it twice.
        self.state.store(CANCELED, Ordering::Relaxed);
        mem::take(&mut self.parent)
    }

    /// The last handle is gone (no `Ctx`, no `CancelFunc`, no child, no
    /// pending callback). If the node never ended, take its traces out of
    /// the world: its entry in the parent, its timer entry, its
    /// subscription with a custom parent.
    ///
    /// `owner` is the address the node had in its `Arc` (the timer knows
    /// the node by it); `into_parent` has moved the node out since.
    fn release(&mut self, owner: usize) {
        let state = self.state.load(Ordering::Relaxed);
        if state & DONE_MASK != LIVE {
            return;
        }
        let inner = self.inner.get_mut();
        let subscription = inner.take_subscription();
        let other_registration = inner.take_other_registration();
        let registry = mem::take(&mut inner.registry);
        if state & ARMED != 0 {
            timer::remove(self, owner);
        }
        self.unlink();
        // Children hold us alive, `done()` futures borrow us and pending
        // `after_func` callbacks keep us (see `AfterState::keep`), so the
        // registry is empty here; whatever it holds is dropped unfired.
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
    fn drop(&mut self) {
        // Still in place in the `Arc` allocation (or already released and
        // marked by `into_parent`).
        let owner = timer::owner(self);
        self.release(owner);
    }
}

/// Where a context's "done" signal comes from.
pub(crate) enum Source<'a> {
    /// It can never be done (roots, `without_cancel`).
    Never,
    /// From this library node (the nearest cancelable ancestor).
    Node(&'a Arc<CancelNode>),
    /// From a user-implemented context.
    Custom(&'a Arc<crate::custom::CustomNode>),
}

/// Something to notify when a node is done.
pub(crate) enum Entry {
    /// A child node: cancel it with the same error and cause.
    Child(Weak<CancelNode>),
    /// A pending `done()` future (or a blocked `wait()`): wake it.
    Waker(Waker),
    /// An `after_func` registration: start its callback on a helper thread.
    After(Arc<AfterState>),
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
            Entry::After(state) => state.run(),
        }
    }
}

/// Marks the current thread as walking a subtree in `CancelNode::cancel`
/// (a count, since a walk may nest through `Drop`s).
struct Walking;

#[cfg(not(loom))]
thread_local! {
    static WALKING: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

impl Walking {
    #[cfg(not(loom))]
    fn enter() -> Walking {
        WALKING.with(|depth| depth.set(depth.get() + 1));
        Walking
    }

    #[cfg(not(loom))]
    fn active() -> bool {
        WALKING.with(|depth| depth.get() > 0)
    }

    /// Loom runs its threads on one OS thread, so a thread-local would be
    /// shared between modelled threads; the models have no such `Drop`.
    #[cfg(loom)]
    fn enter() -> Walking {
        Walking
    }

    #[cfg(loom)]
    fn active() -> bool {
        false
    }
}

#[cfg(not(loom))]
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
    /// Subscriptions with custom parents to cancel then.
    unsubscribe: Vec<Subscription>,
}

impl Work {
    /// Fires every collected notification. A panic from one (a user's
    /// waker) does not stop the others; the first panic is resumed after
    /// all of them ran, so the caller still sees it.
    fn notify(self) {
        let mut first_panic = None;
        for subscription in self.unsubscribe {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _ = subscription.cancel();
            }));
            if let Err(payload) = result {
                first_panic.get_or_insert(payload);
            }
        }
        for entry in self.notify {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| entry.fire()));
            if let Err(payload) = result {
                first_panic.get_or_insert(payload);
            }
        }
        if let Some(payload) = first_panic {
            std::panic::resume_unwind(payload);
        }
    }
}

/// A node's registrations. Most nodes have none or one (a chain of
/// contexts, a single waiter), kept inline; more move to a slab.
#[derive(Default)]
enum Registry {
    #[default]
    Empty,
    /// One entry, at index 0.
    One(Entry),
    /// Any number, in a slab (kept once allocated, reused).
    Many(Box<Slab>),
}

impl Registry {
    fn len(&self) -> usize {
        match self {
            Registry::Empty => 0,
            Registry::One(_) => 1,
            Registry::Many(slab) => slab.len(),
        }
    }

    fn insert(&mut self, entry: Entry) -> usize {
        match mem::take(self) {
            Registry::Empty => {
                *self = Registry::One(entry);
                0
            }
            Registry::One(first) => {
                // The first entry keeps index 0 in the slab.
                let mut slab = Box::<Slab>::default();
                slab.insert(first);
                let index = slab.insert(entry);
                *self = Registry::Many(slab);
                index
            }
            Registry::Many(mut slab) => {
                let index = slab.insert(entry);
                *self = Registry::Many(slab);
                index
            }
        }
    }

    fn remove(&mut self, index: usize) -> Option<Entry> {
        match self {
            Registry::Empty => None,
            Registry::One(_) if index == 0 => match mem::take(self) {
                Registry::One(entry) => Some(entry),
                _ => None,
            },
            Registry::One(_) => None,
            Registry::Many(slab) => slab.remove(index),
        }
    }

    fn get_mut(&mut self, index: usize) -> Option<&mut Entry> {
        match self {
            Registry::One(entry) if index == 0 => Some(entry),
            Registry::Many(slab) => slab.get_mut(index),
            _ => None,
        }
    }

    fn into_entries(self) -> impl Iterator<Item = Entry> {
        let (one, many) = match self {
            Registry::Empty => (None, None),
            Registry::One(entry) => (Some(entry), None),
            Registry::Many(slab) => (None, Some(slab)),
        };
        one.into_iter()
            .chain(many.into_iter().flat_map(|slab| (*slab).into_entries()))
    }
}

/// A slab of entries with a free list: O(1) insert and remove by index,
/// indexes stable while an entry is present.
struct Slab {
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

#[inline]
fn state_err(state: u8) -> Option<Error> {
    match state & DONE_MASK {
        LIVE => None,
        DEADLINE => Some(Error::DeadlineExceeded),
        // CANCELED or DROPPED
        _ => Some(Error::Canceled),
    }
}

/// The done bits a cancellation with `err` and `cause` leaves.
fn done_bits(err: Error, cause: &CauseArg) -> u8 {
    match (err, cause) {
        (Error::Canceled, CauseArg::Dropped) => DROPPED,
        (Error::Canceled, _) => CANCELED,
        (Error::DeadlineExceeded, _) => DEADLINE,
    }
}

/// An `Option<Instant>` that can be read without a lock: signed
/// nanoseconds from a process-wide base instant. `NO_INSTANT` is `None`;
/// `MERGED` marks a merge node (no deadline of its own); `FAR` marks a
/// deadline more than ±292 years from the base, kept exactly in
/// `Extra::far_deadline` instead.
struct AtomicInstant(crate::sync::AtomicI64);

const NO_INSTANT: i64 = i64::MIN;
const FAR: i64 = i64::MIN + 1;
/// A merge node: no deadline of its own, but its other parent's (in
/// `Extra::other`) bounds it. Never changed once stored.
const MERGED: i64 = i64::MIN + 2;

/// What `AtomicInstant` holds.
enum Stored {
    None,
    At(Instant),
    Far,
    Merged,
}

fn base() -> Instant {
    static BASE: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);
    *BASE
}

impl AtomicInstant {
    /// Relaxed: the value is set before the node is shared (the `Arc`
    /// publishes it) and changed only under the node's lock by
    /// `extend_deadline`; a reader racing an extension sees the old or the
    /// new deadline, both of which were true at some point.
    fn load(&self) -> Stored {
        match self.0.load(Ordering::Relaxed) {
            NO_INSTANT => Stored::None,
            FAR => Stored::Far,
            MERGED => Stored::Merged,
            nanos => Stored::At(decode(nanos)),
        }
    }

    fn store(&self, nanos: i64) {
        self.0.store(nanos, Ordering::Relaxed);
    }
}

/// `at` as nanoseconds from the base, if that fits (and is not one of the
/// three reserved values).
fn encode(at: Instant) -> Option<i64> {
    let base = base();
    let nanos = if at >= base {
        i64::try_from((at - base).as_nanos()).ok()?
    } else {
        -i64::try_from((base - at).as_nanos()).ok()?
    };
    (nanos > MERGED).then_some(nanos)
}

fn decode(nanos: i64) -> Instant {
    let base = base();
    let offset = std::time::Duration::from_nanos(nanos.unsigned_abs());
    let at = if nanos >= 0 {
        base.checked_add(offset)
    } else {
        base.checked_sub(offset)
    };
    // Unreachable for values `encode` made; `base` is a harmless answer.
    at.unwrap_or(base)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Issue 4's memory budget: one allocation of at most 96 bytes per
    /// `with_cancel` child (the node plus `Arc`'s two counters).
    #[test]
    fn a_cancel_node_fits_in_96_bytes() {
        let arc_counters = 2 * size_of::<usize>();
        assert!(
            size_of::<CancelNode>() + arc_counters <= 96,
            "{}",
            size_of::<CancelNode>()
        );
    }

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
