//! `Tally`: callbacks that count themselves, for the tests of the
//! `after_func` callback pool.
//!
//! This file names nothing from goctx, only `std`, so that two kinds of
//! test share it: the integration tests (`integration/tests/callbacks.rs`, through
//! `mod common`) and the pool's unit tests inside the crate
//! (`src/spawn.rs`, through a `#[path]` module), which need the pool's
//! private state and so cannot live in `tests/`. A test registers
//! `move || tally.body(i, work)` with `after_func`.

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// Bound on any one wait (at the gate, or in `wait_for`); generous for a
/// loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(25);

/// Callbacks that count themselves: how often each ran, on which thread,
/// how many ran at once; and a gate that holds them until a test opens it.
pub struct Tally {
    /// How often callback `i` ran.
    pub ran: Vec<AtomicUsize>,
    /// Callbacks that ran on a `goctx-callback` thread.
    pub on_pool: AtomicUsize,
    /// Callbacks inside their body now, and the most there ever were.
    pub running: AtomicUsize,
    pub max_running: AtomicUsize,
    /// Callbacks that returned; `changed` is signaled on every change.
    pub finished: Mutex<usize>,
    changed: Condvar,
    /// Closed: callbacks wait (at most `PATIENCE`) until it opens.
    gate: Mutex<bool>,
    opened: Condvar,
    /// Callbacks that gave up waiting at the gate.
    gate_timeouts: AtomicUsize,
}

impl Tally {
    /// A tally for callbacks `0..n`, its gate open or closed.
    pub fn new(n: usize, gate_open: bool) -> Arc<Tally> {
        Arc::new(Tally {
            ran: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            on_pool: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
            finished: Mutex::new(0),
            changed: Condvar::new(),
            gate: Mutex::new(gate_open),
            opened: Condvar::new(),
            gate_timeouts: AtomicUsize::new(0),
        })
    }

    /// Callback `i`'s body: counts itself, blocks for `work` (the
    /// workload, not a synchronisation), then waits at the gate.
    pub fn body(&self, i: usize, work: Duration) {
        self.ran[i].fetch_add(1, SeqCst);
        if thread::current().name() == Some("goctx-callback") {
            self.on_pool.fetch_add(1, SeqCst);
        }
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.max_running.fetch_max(now, SeqCst);
        self.changed.notify_all();
        if !work.is_zero() {
            thread::sleep(work);
        }
        let gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        let (_gate, waited) = self
            .opened
            .wait_timeout_while(gate, PATIENCE, |open| !*open)
            .unwrap_or_else(PoisonError::into_inner);
        if waited.timed_out() {
            self.gate_timeouts.fetch_add(1, SeqCst);
        }
        self.running.fetch_sub(1, SeqCst);
        *self.finished.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.changed.notify_all();
    }

    /// Closes the gate: callbacks that start from now on wait at it.
    pub fn close(&self) {
        *self.gate.lock().unwrap_or_else(PoisonError::into_inner) = false;
    }

    /// Opens the gate and lets every waiting callback go on.
    pub fn open(&self) {
        *self.gate.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.opened.notify_all();
    }

    /// How many callbacks returned so far.
    pub fn finished(&self) -> usize {
        *self.finished.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits, at most `PATIENCE`, until `until(running, finished)` holds;
    /// panics naming `what` if it does not.
    pub fn wait_for(&self, what: &str, until: impl Fn(usize, usize) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        let mut finished = self.finished.lock().unwrap_or_else(PoisonError::into_inner);
        while !until(self.running.load(SeqCst), *finished) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}: {} running, {} finished",
                self.running.load(SeqCst),
                *finished
            );
            // `running` rises outside this mutex: wait in short slices.
            finished = self
                .changed
                .wait_timeout(finished, left.min(Duration::from_millis(50)))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Checks that every callback ran exactly once and none gave up at the
    /// gate.
    pub fn assert_each_ran_once(&self) {
        for (i, ran) in self.ran.iter().enumerate() {
            assert_eq!(ran.load(SeqCst), 1, "callback {i} ran this often");
        }
        assert_eq!(
            self.gate_timeouts.load(SeqCst),
            0,
            "a callback waited in vain"
        );
    }
}
