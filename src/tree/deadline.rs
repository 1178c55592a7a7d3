//! A node's side of deadlines: its own deadline, stored so that it can be
//! read without a lock; arming it with the timer; the timer's expiry; and
//! moving it later (`extend_deadline`).
//!
//! The one place in the core that nests locks is here: `extend_deadline`
//! takes the timer's lock while holding the node's. The timer thread never
//! takes a node lock while holding its own, so the order cannot invert.

use std::sync::Arc;
use std::time::Instant;

use super::cause::CauseArg;
use super::node::{CancelNode, Inner};
use super::state::ARMED;
use crate::clock::Clock;
use crate::error::{Error, ExtendError};
use crate::sync::{AtomicI64, Ordering};
use crate::timer::{self, Expire};

impl CancelNode {
    /// This node's own deadline (not the parent's).
    #[inline]
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.deadline.load() {
            Stored::Far => self.deadline_locked(&self.inner.lock()),
            stored => stored.instant(),
        }
    }

    /// `deadline()` for a caller that holds `inner`'s lock.
    pub(super) fn deadline_locked(&self, inner: &Inner) -> Option<Instant> {
        match self.deadline.load() {
            Stored::Far => inner.extra.as_ref().and_then(|e| e.far_deadline),
            stored => stored.instant(),
        }
    }

    /// Makes this fresh deadline node end at its own deadline `at`, on
    /// `clock`; `expired` when the caller found `at` already past (the
    /// node then ends here, without a timer).
    pub(crate) fn start_deadline(self: &Arc<Self>, at: Instant, expired: bool, clock: Clock) {
        if expired {
            self.cancel(Error::DeadlineExceeded, CauseArg::Stored, true);
            return;
        }
        match clock {
            Clock::Real => self.arm(at),
            #[cfg(feature = "tokio")]
            Clock::Tokio(_, handle) => crate::tokio_clock::arm(&handle, self),
        }
    }

    /// Arms this node's deadline with the timer, unless it is already done.
    /// No node lock: the entry is made first, then `ARMED` is set by
    /// read-modify-write. If the node ended before that (the RMW sees it),
    /// nobody else knew of the entry, so we take it out again; if it ends
    /// after, its ender sees `ARMED` and takes it out.
    fn arm(self: &Arc<Self>, at: Instant) {
        timer::insert(self, at);
        let prev = self.state.set_flag(ARMED, Ordering::AcqRel);
        if !prev.is_live() {
            timer::remove(&**self, timer::owner_of(&**self));
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
        let state = self.state.relaxed();
        if let Some(err) = state.err() {
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
        if state.has(ARMED) {
            // Under the node's lock the timer thread cannot expire us (its
            // expiry takes this lock). A lock-free cancel can still end us
            // meanwhile; `reschedule` then re-arms nothing (see there).
            timer::reschedule(self, deadline);
        }
        Ok(deadline)
    }
}

impl Expire for CancelNode {
    /// Called by the timer (thread or task), which read `now` from its
    /// clock after finding this node's deadline due. Ignored if the
    /// deadline was moved past `now` meanwhile.
    fn expire(self: Arc<Self>, now: Instant) {
        self.cancel(Error::DeadlineExceeded, CauseArg::Expired(now), true);
    }

    fn deadline(&self) -> Option<Instant> {
        CancelNode::deadline(self)
    }

    fn is_done(&self) -> bool {
        self.err().is_some()
    }

    /// See `CancelNode::timer_slot`. Relaxed: both sides hold the timer's
    /// lock.
    fn timer_slot(&self) -> u32 {
        self.timer_slot.load(Ordering::Relaxed)
    }

    fn set_timer_slot(&self, index: u32) {
        self.timer_slot.store(index, Ordering::Relaxed);
    }
}

/// An `Option<Instant>` that can be read without a lock: signed
/// nanoseconds from a process-wide base instant. `NO_INSTANT` is `None`;
/// `MERGED` marks a merge node (no deadline of its own); `FAR` marks a
/// deadline more than ±292 years from the base, kept exactly in
/// `Extra::far_deadline` instead.
pub(super) struct AtomicInstant(AtomicI64);

pub(super) const NO_INSTANT: i64 = i64::MIN;
pub(super) const FAR: i64 = i64::MIN + 1;
/// A merge node: no deadline of its own, but its other parent's (in
/// `Extra::other`) bounds it. Never changed once stored.
pub(super) const MERGED: i64 = i64::MIN + 2;

/// What `AtomicInstant` holds.
pub(super) enum Stored {
    None,
    At(Instant),
    Far,
    Merged,
}

impl Stored {
    /// The deadline, for every case but `Far`.
    #[inline]
    fn instant(self) -> Option<Instant> {
        match self {
            Stored::At(at) => Some(at),
            Stored::None | Stored::Merged | Stored::Far => None,
        }
    }
}

fn base() -> Instant {
    static BASE: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);
    *BASE
}

impl AtomicInstant {
    pub(super) fn new(nanos: i64) -> Self {
        AtomicInstant(AtomicI64::new(nanos))
    }

    /// Relaxed: the value is set before the node is shared (the `Arc`
    /// publishes it) and changed only under the node's lock by
    /// `extend_deadline`; a reader racing an extension sees the old or the
    /// new deadline, both of which were true at some point.
    #[inline]
    pub(super) fn load(&self) -> Stored {
        match self.0.load(Ordering::Relaxed) {
            NO_INSTANT => Stored::None,
            FAR => Stored::Far,
            MERGED => Stored::Merged,
            nanos => Stored::At(decode(nanos)),
        }
    }

    pub(super) fn store(&self, nanos: i64) {
        self.0.store(nanos, Ordering::Relaxed);
    }
}

/// `at` as nanoseconds from the base, if that fits (and is not one of the
/// three reserved values).
pub(super) fn encode(at: Instant) -> Option<i64> {
    // Whole seconds and the rest in `i64`, checked: fits exactly when the
    // 128-bit nanosecond count would, without the 128-bit conversion.
    let nanos_of = |d: std::time::Duration| {
        i64::try_from(d.as_secs())
            .ok()?
            .checked_mul(1_000_000_000)?
            .checked_add(i64::from(d.subsec_nanos()))
    };
    let base = base();
    let nanos = if at >= base {
        nanos_of(at - base)?
    } else {
        -nanos_of(base - at)?
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
    // Every value `encode` makes decodes; `base` answers the impossible.
    at.unwrap_or(base)
}
