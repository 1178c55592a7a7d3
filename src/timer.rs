//! The runtime-agnostic deadline driver.
//!
//! One helper thread, `goctx-timer`, started on the first deadline, sleeps
//! until the next deadline and then cancels the contexts that are due with
//! `DeadlineExceeded`. It knows a context only through the small
//! [`Expire`] interface, which the core's node implements. Deadlines live in a hierarchical timing wheel
//! (`wheel.rs`) with 1 ms ticks: arming, disarming and moving one are O(1),
//! whatever the number of live deadlines. Each node remembers its entry's
//! index (`Expire::timer_slot`), so a cancel or drop removes its entry
//! directly. Entries hold weak references: a timer never keeps a context
//! alive.
//!
//! # Precision
//!
//! A deadline's tick is rounded up, and the thread only hands out a tick
//! once the clock has passed it, so a deadline never fires early; it fires
//! within about a millisecond after, later on an overloaded machine. The
//! node checks again under its own lock that its deadline has passed
//! (`Expire::expire` is given the time read), which also catches a deadline moved later by
//! `extend_deadline` after the thread took the old entry out.
//!
//! # When the thread cannot start
//!
//! A refused start (a thread or memory limit) is not remembered as a
//! start: `insert` panics before arming anything, with the lock released,
//! so a deadline is never armed without a thread to fire it, and the next
//! deadline tries again. The panic reaches the caller of `with_deadline` or
//! `with_timeout`, as `std::thread::spawn` would; it cannot come later,
//! because the thread never exits once started.
//!
//! # Rules
//!
//! - The timer thread never runs user code under its lock; it takes the
//!   due entries out, unlocks, then cancels them. A panicking waker during
//!   such a cancel is caught; the thread keeps going.
//! - The lock order is node, then timer (a node's `extend_deadline` moves
//!   its entry under the node's lock); the timer thread never takes a node
//!   lock while holding its own. Arming and removing take no node lock.
//!
//! Under `--cfg loom` there is no thread and no clock
//! (`sync::WAITING_THREADS`): the wheel is a per-execution one behind a
//! loom mutex, `insert` only arms, and a model thread plays the timer
//! thread with `fire_deadlines`.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::sync::{Condvar, WAITING_THREADS, WaitGuard, WaitMutex, process_global, spawn_thread};
use crate::wheel::Wheel;

/// What the timer needs of a context with a deadline.
pub(crate) trait Expire: Send + Sync + 'static {
    /// The deadline passed: `now` is the time the timer read. Called with
    /// no timer lock held. A node whose deadline was moved past `now`
    /// ignores it.
    fn expire(self: Arc<Self>, now: Instant);
    /// The current deadline, to fire the due entries of one tick in order.
    fn deadline(&self) -> Option<Instant>;
    /// Whether the context is done (a done one is not re-armed).
    fn is_done(&self) -> bool;
    /// The index of the context's entry in the wheel. Written and read
    /// under the timer's lock only.
    fn timer_slot(&self) -> u32;
    fn set_timer_slot(&self, index: u32);
}

/// The wheel's resolution.
const TICK: Duration = Duration::from_millis(1);

struct Timer {
    state: WaitMutex<State>,
    /// Signaled when a deadline is armed earlier than the thread sleeps to.
    wake: Condvar,
}

struct State {
    wheel: Wheel<Weak<dyn Expire>>,
    /// Tick 0 of the wheel; set by the first deadline.
    origin: Option<Instant>,
    /// The tick the thread sleeps until: `u64::MAX` while it waits for any
    /// deadline, 0 while it is awake (it will look at the wheel again).
    sleeping_until: u64,
    /// Whether the thread is running: set once its start succeeded (it
    /// never exits). A failed start leaves it false, so the next deadline
    /// tries again.
    started: bool,
}

process_global! {
    static TIMER: Timer = Timer {
        state: WaitMutex::new(State {
            wheel: Wheel::new(),
            origin: None,
            sleeping_until: 0,
            started: false,
        }),
        wake: Condvar::new(),
    };
}

fn lock() -> WaitGuard<'static, State> {
    TIMER.state.lock()
}

/// Identifies a context's entry (checked on removal, see `wheel.rs`): its
/// address in its `Arc` allocation.
pub(crate) fn owner_of<T>(node: &T) -> usize {
    node as *const T as usize
}

impl State {
    /// The first tick at or after `at` (rounded up: never early).
    fn tick_of(&mut self, at: Instant) -> u64 {
        // The clock at the first deadline, not the deadline itself: tick 0
        // must not lie in the future, or earlier deadlines would wait for it.
        let origin = *self.origin.get_or_insert_with(Instant::now);
        let since = at.saturating_duration_since(origin);
        // A tick divides a second, so whole seconds convert exactly and
        // only the sub-second part rounds up: the same result as rounding
        // up the 128-bit nanosecond count, without a 128-bit division
        // (saturating at `u64::MAX` alike).
        const _: () = assert!(TICK.as_secs() == 0 && 1_000_000_000 % TICK.subsec_nanos() == 0);
        const TICKS_PER_SEC: u64 = 1_000_000_000 / TICK.subsec_nanos() as u64;
        since
            .as_secs()
            .checked_mul(TICKS_PER_SEC)
            .and_then(|ticks| {
                ticks.checked_add(u64::from(
                    since.subsec_nanos().div_ceil(TICK.subsec_nanos()),
                ))
            })
            .unwrap_or(u64::MAX)
    }

    /// The last tick that has fully passed at `now`.
    fn ticks_passed(&self, now: Instant) -> u64 {
        let origin = self.origin.unwrap_or(now);
        let tick = now.saturating_duration_since(origin).as_nanos() / TICK.as_nanos();
        u64::try_from(tick).unwrap_or(u64::MAX)
    }

    fn arm<T: Expire>(&mut self, node: &Arc<T>, at: Instant) -> u64 {
        let tick = self.tick_of(at);
        let weak: Weak<dyn Expire> = Arc::downgrade(node) as Weak<T>;
        let index = self.wheel.insert(tick, owner_of(&**node), weak);
        node.set_timer_slot(index);
        tick
    }
}

/// Arms `node` to expire at `at`, starting the timer thread first if it is
/// not running.
///
/// # Panics
///
/// If the system refuses to start the timer thread (as
/// `std::thread::spawn` panics). Nothing is armed then, the lock is
/// released first, and the next call tries to start the thread again: a
/// deadline is either armed with a running thread to fire it, or its
/// caller hears that it could not be.
///
/// Under loom there is no thread to start: a model fires deadlines with
/// `fire_deadlines`.
pub(crate) fn insert<T: Expire>(node: &Arc<T>, at: Instant) {
    let mut state = lock();
    if WAITING_THREADS && !state.started {
        // Started under the lock, so that two first deadlines do not start
        // two threads; the new thread takes the lock only once we let go.
        if let Err(err) = start_thread() {
            drop(state);
            panic!("goctx: failed to start the timer thread, so a deadline cannot be armed: {err}");
        }
        state.started = true;
    }
    let tick = state.arm(node, at);
    let earlier = tick < state.sleeping_until;
    drop(state);
    if earlier {
        TIMER.wake.notify_one();
    }
}

/// Fault injection for the unit tests: the next this-many timer thread
/// starts fail as if the system refused them.
#[cfg(test)]
pub(crate) static FAIL_STARTS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

fn start_thread() -> std::io::Result<()> {
    #[cfg(test)]
    {
        use std::sync::atomic::Ordering::Relaxed;
        // Only the count matters, not what it orders: `Relaxed`.
        if FAIL_STARTS
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(std::io::Error::other("injected start failure"));
        }
    }
    spawn_thread("goctx-timer", run)
}

/// Disarms `node`'s entry if it is still `owner`'s. Harmless if it already
/// fired. `owner` is the context's address inside its `Arc`
/// (`owner_of(node)` while it is there; a node being dropped after
/// `Arc::into_inner` moved it passes the address it had). The entry's
/// index is read under the timer's lock, which ordered its writing.
pub(crate) fn remove<T: Expire>(node: &T, owner: usize) {
    let mut state = lock();
    let entry = state.wheel.remove(node.timer_slot(), owner);
    drop(state);
    // The weak reference is dropped after the lock.
    drop(entry);
}

/// Moves `node`'s entry to `to` (later than before).
pub(crate) fn reschedule<T: Expire>(node: &Arc<T>, to: Instant) {
    let mut state = lock();
    let tick = state.tick_of(to);
    // The old entry may be gone: the thread took it out and waits for
    // this node's lock to expire it (it will then see the new deadline and
    // leave the node alone), so a new entry is armed. Or a lock-free cancel
    // ended the node and took the entry out: then nothing is armed. A
    // cancel that ends it after this check finds the new entry (its
    // removal takes this lock), so no entry outlives the node.
    if !state
        .wheel
        .reschedule(node.timer_slot(), owner_of(&**node), tick)
        && !node.is_done()
    {
        state.arm(node, to);
    }
    // Later than before: the thread's current sleep ends early at worst,
    // and it looks at the wheel again then. No need to wake it.
}

/// The live nodes among `due`, earliest deadline first (`due` is left
/// empty). Entries of one 1 ms tick come out of the wheel in no particular
/// order; a child whose deadline is a little before its parent's must still
/// end first, by its own deadline and with its own cause.
fn in_deadline_order(due: &mut Vec<(u64, Weak<dyn Expire>)>) -> Vec<Arc<dyn Expire>> {
    let mut nodes: Vec<_> = due
        .drain(..)
        .filter_map(|(_, node)| node.upgrade())
        .collect();
    nodes.sort_by_cached_key(|node| node.deadline());
    nodes
}

fn run() {
    let mut due = Vec::new();
    let mut state = lock();
    loop {
        let now = Instant::now();
        let passed = state.ticks_passed(now);
        state.wheel.advance(passed, &mut due);
        if !due.is_empty() {
            state.sleeping_until = 0;
            drop(state);
            for node in in_deadline_order(&mut due) {
                let expire = std::panic::AssertUnwindSafe(|| node.expire(now));
                // A user's waker panicked; the context is done anyway.
                let _ = std::panic::catch_unwind(expire);
            }
            state = lock();
            continue;
        }
        state = match state.wheel.next_tick() {
            None => {
                state.sleeping_until = u64::MAX;
                TIMER.wake.wait(state)
            }
            Some(tick) => {
                state.sleeping_until = tick;
                let origin = state.origin.unwrap_or(now);
                // One tick is one millisecond. A wake-up beyond `Instant`'s
                // range (centuries) is rounded to an hour and re-checked.
                let wake_at = origin.checked_add(Duration::from_millis(tick));
                let sleep = wake_at.map_or(Duration::from_secs(3600), |at| {
                    at.saturating_duration_since(now)
                });
                TIMER.wake.wait_timeout(state, sleep).0
            }
        };
    }
}

/// The loom models' stand-in for the timer thread: plays one round of its
/// loop, its clock reading `now` rounded up to the end of its tick (as the
/// thread's clock would read a moment later). Under the timer lock, takes
/// out every entry whose tick has passed, which is every deadline at or
/// before `now` (and none a tick or more after it); releases the lock;
/// then expires each node still alive through `Expire::expire`, the
/// thread's own path. Unlike the thread it does not catch panics: in a
/// model, any panic is a failure.
///
/// So the models run the real `State`, wheel, `remove` and `reschedule`,
/// explore the node → timer lock order of `arm`, `extend_deadline` and
/// cancel against this, and loom checks the accesses to the nodes'
/// `timer_slot`.
#[cfg(all(test, loom))]
pub(crate) fn fire_deadlines(now: Instant) {
    let mut due = Vec::new();
    let mut state = lock();
    let tick = state.tick_of(now);
    let clock = state
        .origin
        .and_then(|origin| origin.checked_add(Duration::from_millis(tick)))
        .map_or(now, |end| end.max(now));
    state.wheel.advance(tick, &mut due);
    drop(state);
    for node in in_deadline_order(&mut due) {
        node.expire(clock);
    }
}

/// How many deadlines are armed: 0 once every deadline context was
/// canceled, fired or dropped. Also checks that the wheel's count and its
/// slot bitmaps agree on whether anything is armed. For the loom models.
#[cfg(all(test, loom))]
pub(crate) fn armed() -> usize {
    let state = lock();
    let armed = state.wheel.len();
    assert_eq!(
        armed == 0,
        state.wheel.next_tick().is_none(),
        "wheel count vs. slots"
    );
    armed
}

/// The timer thread's start, with failures injected through `FAIL_STARTS`.
/// Each body runs in a child process (`spawn::tests::in_child`), so that
/// the process-wide timer thread is not started yet.
#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::{Duration, Instant};

    use super::{FAIL_STARTS, lock};
    use crate::spawn::tests::in_child;
    use crate::{Error, background, with_deadline, with_timeout};

    #[test]
    fn a_refused_timer_start_panics_and_the_next_deadline_retries() {
        in_child(
            "timer::tests::a_refused_timer_start_panics_and_the_next_deadline_retries",
            || {
                FAIL_STARTS.store(2, SeqCst);
                for attempt in 0..2 {
                    let refused = std::panic::catch_unwind(|| {
                        with_timeout(&background(), Duration::from_millis(20))
                    });
                    let panic = refused.expect_err("a deadline without a timer thread");
                    let message = panic.downcast_ref::<String>().map_or("", String::as_str);
                    assert!(
                        message.contains("timer thread"),
                        "attempt {attempt}: {message}"
                    );
                    let state = lock();
                    assert!(!state.started, "a failed start is not a running thread");
                    assert_eq!(state.wheel.len(), 0, "nothing armed without a thread");
                }
                // Born-expired deadlines need no thread and do not panic.
                let (past, _c) = with_deadline(&background(), Instant::now());
                assert_eq!(past.err(), Some(Error::DeadlineExceeded));

                // The next deadline starts the thread, and it fires.
                let (ctx, _cancel) = with_timeout(&background(), Duration::from_millis(20));
                assert!(lock().started);
                assert_eq!(
                    ctx.wait_timeout(Duration::from_secs(20)),
                    Some(Error::DeadlineExceeded)
                );
            },
        );
    }
}
