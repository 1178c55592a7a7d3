//! The one place that names the synchronisation primitives and threads,
//! and the only module that says what changes under `--cfg loom`.
//!
//! Everything in the crate takes its locks, condition variables, atomics,
//! thread-locals, process-wide statics and helper threads from here, so
//! that a `--cfg loom` build can swap in loom's model-checked versions
//! without touching the code that uses them. In a normal build the nodes'
//! `Mutex` is `parking_lot`'s: one byte, no poisoning (a panicking user
//! callback can never leave a lock poisoned), and an uncontended
//! lock/unlock that is a single atomic each. The helper threads wait on
//! std's mutex and condition variable (`WaitMutex`, `Condvar`).
//!
//! What loom changes, all of it here:
//! - the primitives are loom's;
//! - [`seq_cst_access_fence`] is a fence, not nothing (loom treats `SeqCst`
//!   accesses as acquire/release);
//! - a process-wide static ([`process_global!`]) is made anew for every
//!   modelled execution, as each stands for a fresh process;
//! - there are no helper threads that wait for work ([`WAITING_THREADS`]):
//!   loom has no clock and no timed wait, and every modelled thread must
//!   end. So there is no timer thread (a model fires deadlines itself) and
//!   each `after_func` callback runs on a thread of its own that ends with
//!   it, instead of on the pool; [`spawn_thread`] starts loom threads and
//!   keeps their handles for a model to join.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU16, AtomicU32, Ordering, fence};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicI64, AtomicU8, AtomicU16, AtomicU32, Ordering, fence};

/// Nothing, except under loom, where it is a `SeqCst` fence. loom models
/// `SeqCst` loads and read-modify-writes as acquire/release only, so an
/// algorithm that relies on their place in the single total order of
/// `SeqCst` operations (`tree/derived.rs`'s handshake) calls this between
/// them: loom then checks the algorithm with a fence there, which gives
/// the ordering the real `SeqCst` accesses give without one.
#[inline(always)]
pub(crate) fn seq_cst_access_fence() {
    #[cfg(loom)]
    fence(Ordering::SeqCst);
}

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

    /// Whether some thread holds the lock at this moment (a hint: it may
    /// change right after). One load.
    #[inline]
    pub(crate) fn is_locked(&self) -> bool {
        self.0.is_locked()
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

    /// Loom's mutex cannot be looked at without trying it: held if a
    /// `try_lock` fails (a modelled operation either way).
    pub(crate) fn is_locked(&self) -> bool {
        matches!(self.0.try_lock(), Err(std::sync::TryLockError::WouldBlock))
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

/// The lock that helper threads wait on with a [`Condvar`] (the timer's
/// and the callback pool's). In a normal build it is std's, not
/// `parking_lot`'s: a futex that never allocates, where `parking_lot`
/// allocates its per-thread parking data the first time a thread blocks,
/// and a thread that arms a deadline must not allocate for it
/// (`integration/tests/alloc.rs`). The calling convention is [`Mutex`]'s: `lock()`
/// returns the guard, and poisoning is stripped (no user code runs under
/// these locks, so a panic cannot leave their state torn).
#[cfg(not(loom))]
pub(crate) struct WaitMutex<T>(std::sync::Mutex<T>);

#[cfg(not(loom))]
pub(crate) type WaitGuard<'a, T> = std::sync::MutexGuard<'a, T>;

#[cfg(not(loom))]
impl<T> WaitMutex<T> {
    pub(crate) const fn new(value: T) -> Self {
        WaitMutex(std::sync::Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> WaitGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Under loom, the crate's (loom) mutex.
#[cfg(loom)]
pub(crate) type WaitMutex<T> = Mutex<T>;

#[cfg(loom)]
pub(crate) type WaitGuard<'a, T> = MutexGuard<'a, T>;

#[cfg(not(loom))]
use std::sync::Condvar as StdOrLoomCondvar;

// Under loom, loom's condition variable. Its timed wait never times out
// (loom has no clock), which is why nothing waits for work under loom
// (`WAITING_THREADS`).
#[cfg(loom)]
use loom::sync::Condvar as StdOrLoomCondvar;

/// The condition variable of a [`WaitMutex`]: the guard is passed in and
/// handed back, and there is no poisoning.
pub(crate) struct Condvar(StdOrLoomCondvar);

impl Condvar {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Condvar(StdOrLoomCondvar::new())
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Condvar(StdOrLoomCondvar::new())
    }

    /// Unlocks `guard`, blocks until notified (or woken spuriously), and
    /// locks again.
    pub(crate) fn wait<'a, T>(&self, guard: WaitGuard<'a, T>) -> WaitGuard<'a, T> {
        self.0
            .wait(guard)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Like [`wait`](Self::wait), for at most `timeout`; also says whether
    /// the wait timed out.
    pub(crate) fn wait_timeout<'a, T>(
        &self,
        guard: WaitGuard<'a, T>,
        timeout: std::time::Duration,
    ) -> (WaitGuard<'a, T>, bool) {
        let (guard, result) = self
            .0
            .wait_timeout(guard, timeout)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (guard, result.timed_out())
    }

    pub(crate) fn notify_one(&self) {
        self.0.notify_one();
    }
}

/// Declares a process-wide `static` (its initializer must be `const` in a
/// normal build). Under loom it is a `loom::lazy_static` instead, made anew
/// for every modelled execution, so no state leaks from one execution to
/// the next.
#[cfg(not(loom))]
macro_rules! process_global {
    ($(#[$attr:meta])* static $name:ident: $ty:ty = $init:expr;) => {
        $(#[$attr])*
        static $name: $ty = $init;
    };
}

#[cfg(loom)]
macro_rules! process_global {
    ($(#[$attr:meta])* static $name:ident: $ty:ty = $init:expr;) => {
        loom::lazy_static! {
            $(#[$attr])*
            static ref $name: $ty = $init;
        }
    };
}

pub(crate) use process_global;

/// Declares a per-thread counter, a `LocalKey<Cell<u32>>` starting at 0.
/// Under loom it is per modelled thread (loom runs all of them on one OS
/// thread, where a std thread-local would be shared).
#[cfg(not(loom))]
macro_rules! thread_counter {
    ($(#[$attr:meta])* static $name:ident;) => {
        std::thread_local! {
            $(#[$attr])*
            static $name: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
        }
    };
}

#[cfg(loom)]
macro_rules! thread_counter {
    ($(#[$attr:meta])* static $name:ident;) => {
        loom::thread_local! {
            $(#[$attr])*
            static $name: std::cell::Cell<u32> = std::cell::Cell::new(0);
        }
    };
}

pub(crate) use thread_counter;

/// Whether goctx runs helper threads that wait for work: the timer thread,
/// which sleeps until the next deadline, and the callback pool, whose
/// threads wait for callbacks. True in a normal build; false under loom
/// (see the module docs), where the timer module arms deadlines without a
/// thread and each callback gets a thread of its own.
pub(crate) const WAITING_THREADS: bool = cfg!(not(loom));

/// Starts a helper thread named `name` that runs `body`. An error means the
/// system refused the thread (a thread or memory limit).
#[cfg(not(loom))]
pub(crate) fn spawn_thread(
    name: &str,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map(drop)
}

/// Under loom, a loom thread, whose handle is kept so that a model can
/// join it ([`join_threads`]). A panic in it is not caught: in a model, a
/// panicking thread is a failure.
#[cfg(loom)]
pub(crate) fn spawn_thread(
    _name: &str,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    let handle = loom::thread::spawn(body);
    loom_threads::started().push(handle);
    Ok(())
}

/// Joins every thread started by [`spawn_thread`] in this execution,
/// including threads started by those threads, and returns how many there
/// were. A panic in one is resumed here.
#[cfg(all(test, loom))]
pub(crate) fn join_threads() -> usize {
    let mut joined = 0;
    loop {
        let handles = std::mem::take(&mut *loom_threads::started());
        if handles.is_empty() {
            return joined;
        }
        for handle in handles {
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
            joined += 1;
        }
    }
}

/// The handles of the loom threads started in the current execution. The
/// list is bookkeeping, not part of what is modelled: it sits behind a std
/// mutex that is never held across a loom operation, so it can never block
/// a modelled thread.
#[cfg(loom)]
mod loom_threads {
    type Handles = std::sync::Mutex<Vec<loom::thread::JoinHandle<()>>>;

    loom::lazy_static! {
        static ref STARTED: Handles = std::sync::Mutex::new(Vec::new());
    }

    pub(super) fn started() -> std::sync::MutexGuard<'static, Vec<loom::thread::JoinHandle<()>>> {
        STARTED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
