//! A node's side of deadlines: its own deadline (an `AtomicInstant`, so
//! that it can be read without a lock); arming it with the timer; the
//! timer's expiry; and moving it later (`extend_deadline`).
//!
//! The one place in the core that nests locks is here: `extend_deadline`
//! takes the timer's lock while holding the node's. The timer thread never
//! takes a node lock while holding its own, so the order cannot invert.

use std::sync::Arc;
use std::time::Instant;

use super::{CancelNode, Inner};
use crate::clock::Clock;
use crate::error::{Error, ExtendError};
use crate::sync::Ordering;
use crate::timer::{self, Expire};
use crate::tree::cause::CauseArg;
use crate::tree::instant::{FAR, Stored, encode};
use crate::tree::state::ARMED;

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
