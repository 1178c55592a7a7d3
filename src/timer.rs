//! The runtime-agnostic deadline driver.
//!
//! One helper thread, `goctx-timer`, started on the first deadline, sleeps
//! until the earliest armed deadline and then cancels that context with
//! `DeadlineExceeded`. Deadlines live in an ordered map keyed by
//! `(deadline, node address)`, so arming, disarming and finding the next one
//! are O(log n). The map holds weak references: a timer never keeps a
//! context alive, and a context dropped or canceled early removes its entry.
//!
//! - The timer thread never runs user code under its lock; it takes the
//!   due entries out, unlocks, then cancels them. A panicking waker during
//!   such a cancel is caught; the thread keeps going.
//! - It never fires early: it re-reads the clock after every wake-up.
//! - The lock order is node, then timer (arming happens under the node's
//!   lock); the timer thread never takes a node lock while holding its own.
//!
//! Under `--cfg loom` there is no thread and no clock: the entries live in
//! a per-execution map behind a loom mutex, and a model fires them with
//! `model::fire_deadlines` (see the `model` module at the end). The
//! thread, its condvar and `lock`/`insert`/`run` below are then unused.
#![cfg_attr(loom, allow(dead_code, unused_imports))]

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread;
use std::time::Instant;

use crate::tree::CancelNode;

struct Timer {
    state: Mutex<State>,
    /// Signaled when an earlier deadline is armed than the thread sleeps to.
    wake: Condvar,
}

struct State {
    entries: BTreeMap<(Instant, usize), Weak<CancelNode>>,
    /// Whether the thread was started (or failed to start).
    started: bool,
}

static TIMER: Timer = Timer {
    state: Mutex::new(State {
        entries: BTreeMap::new(),
        started: false,
    }),
    wake: Condvar::new(),
};

#[cfg(not(loom))]
fn lock() -> MutexGuard<'static, State> {
    // No user code runs under this lock; poison cannot leave the map torn.
    TIMER.state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn key(node: &CancelNode, at: Instant) -> (Instant, usize) {
    (at, node as *const CancelNode as usize)
}

/// Arms `node` to expire at `at`. If no timer thread can be started, the
/// deadline never fires and a message says so.
#[cfg(not(loom))]
pub(crate) fn insert(node: &Arc<CancelNode>, at: Instant) {
    let mut state = lock();
    if !state.started {
        state.started = true;
        let started = thread::Builder::new().name("goctx-timer".into()).spawn(run);
        if let Err(err) = started {
            eprintln!("goctx: cannot start the timer thread ({err}); deadlines will not fire");
        }
    }
    let earliest = state
        .entries
        .first_key_value()
        .is_none_or(|(first, _)| at < first.0);
    state.entries.insert(key(node, at), Arc::downgrade(node));
    drop(state);
    if earliest {
        TIMER.wake.notify_one();
    }
}

/// Disarms `node`'s deadline `at`. Harmless if it already fired.
pub(crate) fn remove(node: &CancelNode, at: Instant) {
    lock().entries.remove(&key(node, at));
}

/// Moves `node`'s entry from `from` to `to`.
pub(crate) fn reschedule(node: &Arc<CancelNode>, from: Instant, to: Instant) {
    let mut state = lock();
    // The old entry may be gone already: the thread took it out and waits
    // for this node's lock to expire it. It will then see the new deadline
    // and leave the node alone, so the new entry is armed in any case.
    let weak = state
        .entries
        .remove(&key(node, from))
        .unwrap_or_else(|| Arc::downgrade(node));
    state.entries.insert(key(node, to), weak);
    // Later than before: the thread's current sleep ends early at worst,
    // and it re-reads the map then. No need to wake it.
}

#[cfg(not(loom))]
fn run() {
    let mut due = Vec::new();
    let mut state = lock();
    loop {
        let now = Instant::now();
        while let Some(entry) = state.entries.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let at = entry.key().0;
            due.push((at, entry.remove()));
        }
        if !due.is_empty() {
            drop(state);
            for (at, node) in due.drain(..) {
                if let Some(node) = node.upgrade() {
                    let expire = std::panic::AssertUnwindSafe(|| node.expire(at));
                    // A user's waker panicked; the context is done anyway.
                    let _ = std::panic::catch_unwind(expire);
                }
            }
            state = lock();
            continue;
        }
        state = match state.entries.first_key_value() {
            None => TIMER
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner),
            Some((first, _)) => {
                let sleep = first.0.saturating_duration_since(now);
                TIMER
                    .wake
                    .wait_timeout(state, sleep)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
    }
}

/// The loom stand-in for the timer thread (`--cfg loom` only).
///
/// Loom has no clock and must not be blocked by a real thread, so there is
/// no `goctx-timer` thread here. The entries live in a map that is new for
/// every loom execution (a `loom::lazy_static`), behind the crate's loom
/// mutex, so that the models explore the node → timer lock order of
/// `arm`/`extend_deadline` against `fire_deadlines`. `remove` and
/// `reschedule` above are shared with the real build; only `lock` and
/// `insert` (which starts the thread) are replaced.
#[cfg(loom)]
pub(crate) mod model {
    use super::*;

    loom::lazy_static! {
        static ref STATE: crate::sync::Mutex<State> =
            crate::sync::Mutex::new(State { entries: BTreeMap::new(), started: true });
    }

    pub(super) fn lock() -> crate::sync::MutexGuard<'static, State> {
        STATE.lock()
    }

    /// Arms `node` to expire at `at`, without any thread to wake.
    pub(crate) fn insert(node: &Arc<CancelNode>, at: Instant) {
        lock().entries.insert(key(node, at), Arc::downgrade(node));
    }

    /// Does what one round of the timer thread's loop does when the clock
    /// reads `now`: takes every entry due at or before `now` out under the
    /// timer lock, releases it, then expires each node still alive through
    /// `CancelNode::expire`, the thread's own path. Unlike the thread it
    /// does not catch panics: in a model, any panic is a failure.
    pub fn fire_deadlines(now: Instant) {
        let mut due = Vec::new();
        let mut state = lock();
        while let Some(entry) = state.entries.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let at = entry.key().0;
            due.push((at, entry.remove()));
        }
        drop(state);
        for (at, node) in due {
            if let Some(node) = node.upgrade() {
                node.expire(at);
            }
        }
    }

    /// How many deadlines are armed: 0 once every deadline context was
    /// canceled, fired or dropped.
    pub fn armed() -> usize {
        lock().entries.len()
    }
}

#[cfg(loom)]
use model::lock;

#[cfg(loom)]
pub(crate) use model::insert;
