//! The one place that names the synchronisation primitives.
//!
//! Everything in the crate takes its `Mutex` and atomics from here, so that a
//! `--cfg loom` build can swap in loom's model-checked versions without
//! touching the tree code. In a normal build the mutex is `parking_lot`'s:
//! one byte, no poisoning (a panicking user callback can never leave a lock
//! poisoned), and an uncontended lock/unlock that is a single atomic each.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU32, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicI64, AtomicU8, AtomicU32, Ordering};

// `Arc` and `Weak` are deliberately not swapped: the crate uses
// `std::sync::{Arc, Weak}` under loom too. loom 0.7's `Arc` has no `Weak`
// (no `downgrade`/`upgrade`) and no `into_inner`, and the tree depends on
// all three: child registrations, timer entries and subscriptions are weak
// by design (strong references only point towards the root), and `Ctx`'s
// iterative drop takes the last node out with `Arc::into_inner`. Emulating
// weak references on top of loom's `Arc` would mean a second, test-only
// reference-counting scheme, i.e. modelling code that production does not
// run. What is lost is small: std's reference counts are real atomic RMWs,
// so they stay linearizable under loom; loom just does not switch threads
// inside them. Every interleaving that matters is still explored, because
// each strong-count change that can race (a parent upgrading a child's weak
// reference, the child's last handle going away) sits next to a modelled
// operation: the parent's registry is read and emptied under its loom
// mutex, and a dropped node's `release` loads its loom `state` and then
// takes the parent's loom mutex to unlink.

/// A mutual-exclusion lock with the `parking_lot` calling convention
/// (`lock()` returns the guard directly; there is no poisoning).
#[cfg(not(loom))]
#[derive(Default)]
pub(crate) struct Mutex<T>(parking_lot::Mutex<T>);

#[cfg(not(loom))]
pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;

#[cfg(not(loom))]
impl<T> Mutex<T> {
    pub(crate) const fn new(value: T) -> Self {
        Mutex(parking_lot::const_mutex(value))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock()
    }

    /// Exclusive access without locking, for `Drop` and construction.
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.0.get_mut()
    }
}

/// Under loom the same API sits on loom's mutex. Loom's mutex can poison
/// when a modelled thread panics; a model that panics has failed anyway, so
/// the poison is stripped.
#[cfg(loom)]
#[derive(Default)]
pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

#[cfg(loom)]
pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

#[cfg(loom)]
impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex(loom::sync::Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.0
            .get_mut()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Lets other threads run while waiting for one (a cancellation finishing
/// on another thread). Under loom, a yield point the model checker knows.
#[cfg(not(loom))]
pub(crate) fn yield_now() {
    std::thread::yield_now();
}

#[cfg(loom)]
pub(crate) fn yield_now() {
    loom::thread::yield_now();
}
