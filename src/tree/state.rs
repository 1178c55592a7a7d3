//! The state byte of a cancel node, and the rules for changing it
//! (invariant 1 of `tree/mod.rs`).
//!
//! The low two bits say whether the node is live and, once done, why; the
//! bits above are flags. While the node is live the flags record what the
//! node holds that its ender must take out (`ARMED`, `REGISTRY`, `CAUSE`,
//! `SUBSCRIBED`); once it is done they record how it ended (`INHERITED`)
//! and whether its subtree is still being walked (`PROPAGATING`).
//!
//! Every change goes through [`State`]: flags are set by read-modify-write,
//! and the one change from live to done is a compare-and-swap, so exactly
//! one ender wins and no flag set before it is lost.

use crate::error::Error;
use crate::sync::{AtomicU8, Ordering};

/// Live: not done.
pub(super) const LIVE: u8 = 0;
/// Done with `Error::Canceled`.
pub(super) const CANCELED: u8 = 1;
/// Done with `Error::DeadlineExceeded`.
pub(super) const DEADLINE: u8 = 2;
/// Done with `Error::Canceled` because the last `CancelFunc` was dropped:
/// the cause, when no other was stored, is `CancelFuncDropped` (kept here,
/// so the common RAII cancel stores nothing and allocates nothing).
pub(super) const DROPPED: u8 = 3;
/// Mask of the bits above.
const DONE_MASK: u8 = 3;
/// Flag: the node has an entry in the timer. Set when the deadline is
/// armed; whoever ends the node removes the entry.
pub(super) const ARMED: u8 = 4;
/// Flag: something was registered (the registry may be non-empty).
pub(super) const REGISTRY: u8 = 8;
/// Flag: `Extra::cause` holds a deadline cause while live.
pub(super) const CAUSE: u8 = 16;
/// Flag: `Extra` may hold a registration with a user parent, or a merge
/// node's registration with its other parent (set at birth for a merge
/// node, so that it always ends on the locked path, which takes the
/// registration back).
pub(super) const SUBSCRIBED: u8 = 32;
/// Set with the done bits: the node was ended by its library parent, so
/// its cause is the parent's; nothing is copied.
pub(super) const INHERITED: u8 = 64;
/// Set with the done bits when the node had registrations: its subtree
/// may still be being walked. The walk clears it on the node it started
/// from (and on any node it gave a copy of the cause) once the whole
/// subtree below is done; on a node it ended by inheritance the mark
/// stays and means "the answer is up the tree". A `CancelFunc::cancel`
/// that loses the race to end the node waits for the walk to be over
/// (`wait_propagated`), so that any `cancel()` returning implies the
/// subtree is done (as in Go, where the loser waits on the node's mutex).
pub(super) const PROPAGATING: u8 = 128;
/// Flags that need the locked path to end a node (there is something to
/// take out under the lock). `ARMED` alone does not: the ender removes the
/// timer entry after the CAS, which the timer tolerates.
const NEEDS_LOCK: u8 = REGISTRY | CAUSE | SUBSCRIBED;

/// One reading of the state byte.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Bits(u8);

impl Bits {
    #[inline]
    pub(super) fn is_live(self) -> bool {
        self.0 & DONE_MASK == LIVE
    }

    /// The error a reader sees: `None` while live.
    #[inline]
    pub(super) fn err(self) -> Option<Error> {
        match self.0 & DONE_MASK {
            LIVE => None,
            DEADLINE => Some(Error::DeadlineExceeded),
            // CANCELED or DROPPED
            _ => Some(Error::Canceled),
        }
    }

    #[inline]
    pub(super) fn has(self, flag: u8) -> bool {
        self.0 & flag != 0
    }

    /// Ended by dropping the last `CancelFunc`, with no other cause.
    #[inline]
    pub(super) fn is_dropped(self) -> bool {
        self.0 & DONE_MASK == DROPPED
    }

    /// Live and holding nothing that must be taken out under the lock.
    #[inline]
    fn lock_free_end_allowed(self) -> bool {
        self.0 & NEEDS_LOCK == 0
    }
}

/// The done bits an ending with `err` leaves; `dropped` when the last
/// `CancelFunc` went away without a cause.
#[inline]
pub(super) fn done_bits(err: Error, dropped: bool) -> u8 {
    match err {
        Error::Canceled if dropped => DROPPED,
        Error::Canceled => CANCELED,
        Error::DeadlineExceeded => DEADLINE,
    }
}

/// What `State::end_lock_free` did.
pub(super) enum LockFree {
    /// This call ended the node; the bits it replaced.
    Ended(Bits),
    /// The node was already done.
    AlreadyDone,
    /// The node holds something that must be taken out under its lock.
    NeedsLock,
}

/// The state byte. Read lock-free with `Acquire` by `err()`; the change to
/// done is published with `Release`, so a reader who sees "done" also sees
/// everything the ender wrote before it.
pub(super) struct State(AtomicU8);

impl State {
    pub(super) fn new(flags: u8) -> State {
        State(AtomicU8::new(flags))
    }

    /// For code that holds the node's lock, or only needs the flag bits:
    /// the lock (or the read-modify-write that set a flag) orders it.
    #[inline]
    pub(super) fn relaxed(&self) -> Bits {
        Bits(self.0.load(Ordering::Relaxed))
    }

    /// For lock-free readers of the outcome.
    #[inline]
    pub(super) fn acquire(&self) -> Bits {
        Bits(self.0.load(Ordering::Acquire))
    }

    /// Sets `flag` and returns the bits before. Callers check the result:
    /// if the node was done already, the flag means nothing and whatever
    /// it stood for must be undone by the caller.
    #[inline]
    pub(super) fn set_flag(&self, flag: u8, order: Ordering) -> Bits {
        Bits(self.0.fetch_or(flag, order))
    }

    /// Overwrites the byte of a node nobody else can see (at birth, and
    /// once its last handle is gone).
    pub(super) fn set_unshared(&self, bits: u8) {
        self.0.store(bits, Ordering::Relaxed);
    }

    /// The lock-free end of invariant 1: ends a live node that holds
    /// nothing to take out under the lock, by CAS. `Release` publishes
    /// the end to `err()` readers.
    #[inline]
    pub(super) fn end_lock_free(&self, done: u8) -> LockFree {
        let mut now = self.relaxed();
        loop {
            if !now.is_live() {
                return LockFree::AlreadyDone;
            }
            if !now.lock_free_end_allowed() {
                return LockFree::NeedsLock;
            }
            match self
                .0
                .compare_exchange_weak(now.0, done, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return LockFree::Ended(now),
                Err(seen) => now = Bits(seen),
            }
        }
    }

    /// The locked end of invariant 1, by a caller holding the node's lock
    /// who read `from` under it. Only the lock-free end (or `arm`'s flag)
    /// can change the byte behind the lock, so a failed CAS is retried
    /// unless the node is done. Returns the bits it replaced, or `None` if
    /// another ender won. `Release`, as in `end_lock_free`; this also
    /// clears the live flags, whose entries the caller takes out.
    #[inline]
    pub(super) fn end_locked(&self, from: Bits, done: u8) -> Option<Bits> {
        let mut now = from;
        loop {
            match self
                .0
                .compare_exchange(now.0, done, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return Some(now),
                Err(seen) if !Bits(seen).is_live() => return None,
                Err(seen) => now = Bits(seen),
            }
        }
    }

    /// The subtree below the node is done. `Release`: pairs with the
    /// `Acquire` in `is_propagating`, so a waiter that sees it clear sees
    /// the whole subtree ended (also when a waiter clears it, having seen
    /// the walk's origin clear: happens-before is transitive).
    #[inline]
    pub(super) fn clear_propagating(&self) {
        self.0.fetch_and(!PROPAGATING, Ordering::Release);
    }

    #[inline]
    pub(super) fn is_propagating(&self) -> bool {
        self.acquire().has(PROPAGATING)
    }
}
