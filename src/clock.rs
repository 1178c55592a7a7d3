//! Which clock a new deadline is measured on, and who fires it.
//!
//! By default the real clock (`Instant::now()`) and goctx's timer thread.
//! With the `tokio` feature, a deadline made on a thread inside a tokio
//! runtime whose clock is not the real one (paused with
//! `tokio::time::pause`, `#[tokio::test(start_paused = true)]`, or moved by
//! `tokio::time::advance`) is measured on tokio's clock and fired by a
//! small task on that runtime, so tokio's auto-advance and `advance` fire
//! it, as Go's `testing/synctest` makes `context.WithTimeout` follow its
//! fake clock. See `tokio_clock.rs`. The node arms itself on the clock
//! chosen here (`CancelNode::start_deadline`).

use std::time::Instant;

/// The clock of one deadline, chosen when the context is made.
pub(crate) enum Clock {
    /// `Instant::now()`, fired by the timer thread.
    Real,
    /// A tokio runtime's virtual clock: its current time (converted to a
    /// std `Instant`) and the runtime that fires the deadline.
    #[cfg(feature = "tokio")]
    Tokio(Instant, tokio::runtime::Handle),
}

impl Clock {
    /// The clock for a deadline made on this thread now.
    #[inline]
    pub(crate) fn current() -> Clock {
        #[cfg(feature = "tokio")]
        if let Some((now, handle)) = crate::tokio_clock::virtual_now() {
            return Clock::Tokio(now, handle);
        }
        Clock::Real
    }

    /// The current time on this clock.
    #[inline]
    pub(crate) fn now(&self) -> Instant {
        match self {
            Clock::Real => Instant::now(),
            #[cfg(feature = "tokio")]
            Clock::Tokio(now, _) => *now,
        }
    }
}
