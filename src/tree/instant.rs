//! [`AtomicInstant`]: an `Option<Instant>` that can be read without a
//! lock, as a cancel node keeps its own deadline (`node/deadline.rs`).

use std::time::Instant;

use crate::sync::{AtomicI64, Ordering};

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
    pub(super) fn instant(self) -> Option<Instant> {
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
