//! The one place that names the synchronisation primitives.
//!
//! Everything in the crate takes its `Mutex` and atomics from here, so that a
//! `--cfg loom` build can swap in loom's model-checked versions without
//! touching the tree code. In a normal build the mutex is `parking_lot`'s:
//! one byte, no poisoning (a panicking user callback can never leave a lock
//! poisoned), and an uncontended lock/unlock that is a single atomic each.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicI64, AtomicU8, AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicI64, AtomicU8, AtomicUsize, Ordering};

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
        self.0.get_mut().unwrap_or_else(|poison| poison.into_inner())
    }
}
