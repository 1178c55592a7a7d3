//! The callback threads: where `after_func` callbacks run.
//!
//! Go starts a goroutine per callback. Threads cost more, so goctx keeps a
//! small pool that grows on demand and shrinks when idle:
//!
//! - a callback never runs on the thread that canceled the context, and
//!   `cancel()` never waits for one;
//! - every callback gets a thread of its own while it runs: a new thread is
//!   started whenever no idle one is available, so a callback that blocks
//!   delays no other callback and no deadline;
//! - threads idle for `IDLE_EXIT` exit;
//! - a panicking callback is caught; the thread goes on serving.
//!
//! Under `--cfg loom` the pool is unused: each callback runs on a loom
//! thread of its own (the `model` module at the end), so the models see
//! it run concurrently with the canceling thread, as in the real build.
#![cfg_attr(loom, allow(dead_code, unused_imports))]

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

/// A callback to run.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// How long an idle callback thread waits for work before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(10);

struct Pool {
    state: Mutex<State>,
    ready: Condvar,
}

struct State {
    queue: VecDeque<Job>,
    /// Waiting threads not yet promised a job: waiting threads minus queued
    /// jobs. A job is queued only when it can be matched with one of them.
    idle: usize,
}

static POOL: Pool = Pool {
    state: Mutex::new(State {
        queue: VecDeque::new(),
        idle: 0,
    }),
    ready: Condvar::new(),
};

fn lock() -> MutexGuard<'static, State> {
    // No user code runs under this lock, so poison can only come from an
    // allocation failure; the state is still consistent.
    POOL.state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `job` on a callback thread, never on the caller's.
#[cfg(not(loom))]
pub(crate) fn spawn(job: Job) {
    let mut state = lock();
    if state.idle > 0 {
        state.idle -= 1;
        state.queue.push_back(job);
        drop(state);
        POOL.ready.notify_one();
        return;
    }
    drop(state);
    let started = thread::Builder::new()
        .name("goctx-callback".into())
        .spawn(move || serve(job));
    if let Err(err) = started {
        // The system refuses another thread; the job went down with the
        // closure. Nothing else can be done without running it on the
        // caller, which the contract forbids.
        eprintln!(
            "goctx: cannot start a callback thread ({err}); an after_func callback was dropped"
        );
    }
}

fn serve(first: Job) {
    run(first);
    let mut state = lock();
    loop {
        if let Some(job) = state.queue.pop_front() {
            // A queued job was promised to a waiting thread (`idle` was
            // decremented for it); we take it instead, so that thread will
            // wake to an empty queue and give its count back. Restore the
            // promise here to keep `idle` = waiting threads − queued jobs.
            state.idle += 1;
            drop(state);
            run(job);
            state = lock();
            continue;
        }
        state.idle += 1;
        let (next, timeout) = POOL
            .ready
            .wait_timeout(state, IDLE_EXIT)
            .unwrap_or_else(PoisonError::into_inner);
        state = next;
        if let Some(job) = state.queue.pop_front() {
            // The spawner already took our `idle` count for this job.
            drop(state);
            run(job);
            state = lock();
            continue;
        }
        state.idle -= 1;
        if timeout.timed_out() {
            return;
        }
    }
}

fn run(job: Job) {
    // A panicking callback must not take the thread (or other callbacks)
    // down; the default hook has already printed the panic message.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
}

/// The loom stand-in for the pool (`--cfg loom` only).
///
/// Every callback gets a `loom::thread` of its own, never the caller's, and
/// its handle is kept in a list that is new for every loom execution, so
/// that a model can join the callbacks (`join_callbacks`) before it checks
/// what they did. The list is bookkeeping, not part of what is modelled: it
/// sits behind a std mutex that is never held across a loom operation, so
/// it can never block a modelled thread.
#[cfg(loom)]
pub(crate) mod model {
    use super::{Job, PoisonError};

    type Started = std::sync::Mutex<Vec<loom::thread::JoinHandle<()>>>;

    loom::lazy_static! {
        static ref STARTED: Started = std::sync::Mutex::new(Vec::new());
    }

    fn started() -> std::sync::MutexGuard<'static, Vec<loom::thread::JoinHandle<()>>> {
        STARTED.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `job` on a new loom thread. Panics are not caught: in a model,
    /// a panicking callback is a failure.
    pub(crate) fn spawn(job: Job) {
        let handle = loom::thread::spawn(job);
        started().push(handle);
    }

    /// Waits for every callback started so far in this execution,
    /// including callbacks started by callbacks. Returns how many there
    /// were. A panic in a callback is resumed here.
    pub fn join_callbacks() -> usize {
        let mut joined = 0;
        loop {
            let handles = std::mem::take(&mut *started());
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
}

#[cfg(loom)]
pub(crate) use model::spawn;
