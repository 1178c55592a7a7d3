//! `after_func` callbacks when threads run out: none is lost, each runs
//! exactly once, and the callback threads stay within their bound.
//!
//! goctx's callback pool is process-wide, so every test body runs in a
//! child process of this test binary (`common::in_child_process`), some
//! under a real resource limit set by the shell (`ulimit -v`).

mod common;

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::{in_child_process, threads_named};

/// Bound on a whole child process; generous for a loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(60);
/// Bound on any one wait inside a child.
const PATIENCE: Duration = Duration::from_secs(25);

/// Callbacks that count themselves.
struct Tally {
    /// How often callback `i` ran.
    ran: Vec<AtomicUsize>,
    /// Callbacks inside their body now, and the most there ever were.
    running: AtomicUsize,
    max_running: AtomicUsize,
    /// The most `goctx-callback` threads a callback ever saw.
    max_threads: AtomicUsize,
    /// Callbacks that returned; `changed` is signaled on every change.
    finished: Mutex<usize>,
    changed: Condvar,
    /// Closed: callbacks wait (bounded) until it opens.
    gate: Mutex<bool>,
    opened: Condvar,
    /// Callbacks that gave up waiting at the gate.
    gate_timeouts: AtomicUsize,
}

impl Tally {
    fn new(n: usize, gate_open: bool) -> Arc<Tally> {
        Arc::new(Tally {
            ran: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
            max_threads: AtomicUsize::new(0),
            finished: Mutex::new(0),
            changed: Condvar::new(),
            gate: Mutex::new(gate_open),
            opened: Condvar::new(),
            gate_timeouts: AtomicUsize::new(0),
        })
    }

    /// Registers callback `i` on `ctx`: counts itself, then blocks for
    /// `work` (the workload, not a synchronisation) and at the gate.
    fn register(self: &Arc<Self>, ctx: &goctx::Ctx, i: usize, work: Duration) -> goctx::AfterFunc {
        let tally = self.clone();
        goctx::after_func(ctx, move || {
            tally.ran[i].fetch_add(1, SeqCst);
            let now = tally.running.fetch_add(1, SeqCst) + 1;
            tally.max_running.fetch_max(now, SeqCst);
            if i.is_multiple_of(50)
                && let Some(threads) = threads_named("goctx-callback")
            {
                tally.max_threads.fetch_max(threads, SeqCst);
            }
            tally.changed.notify_all();
            std::thread::sleep(work);
            let gate = tally.gate.lock().unwrap_or_else(PoisonError::into_inner);
            let (_gate, waited) = tally
                .opened
                .wait_timeout_while(gate, PATIENCE, |open| !*open)
                .unwrap_or_else(PoisonError::into_inner);
            if waited.timed_out() {
                tally.gate_timeouts.fetch_add(1, SeqCst);
            }
            tally.running.fetch_sub(1, SeqCst);
            *tally
                .finished
                .lock()
                .unwrap_or_else(PoisonError::into_inner) += 1;
            tally.changed.notify_all();
        })
    }

    fn open(&self) {
        *self.gate.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.opened.notify_all();
    }

    /// Waits, at most `PATIENCE`, until `until(running, finished)` holds.
    fn wait_for(&self, what: &str, until: impl Fn(usize, usize) -> bool) {
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

    fn assert_each_ran_once(&self) {
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

/// The reported failure: under `ulimit -v 1500000`, 500 callbacks that
/// each block for 300 ms, then a cancel. Before the fix about half were
/// dropped (their threads were refused) while `stop()` said they had run.
#[test]
fn five_hundred_blocking_callbacks_under_a_memory_limit_all_run_once() {
    let out = in_child_process(
        "five_hundred_blocking_callbacks_under_a_memory_limit_all_run_once",
        "ulimit -v 1500000",
        LIMIT,
        || {
            let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
            assert!(
                limits
                    .lines()
                    .any(|l| l.starts_with("Max address space") && l.contains("1536000000")),
                "the memory limit is not in force:\n{limits}"
            );
            let tally = Tally::new(500, true);
            let (ctx, cancel) = goctx::with_cancel(&goctx::background());
            let handles: Vec<_> = (0..500)
                .map(|i| tally.register(&ctx, i, Duration::from_millis(300)))
                .collect();
            cancel.cancel();
            let stopped = handles.iter().filter(|handle| handle.stop()).count();
            assert_eq!(stopped, 0, "stop() after the cancel prevented callbacks");
            tally.wait_for("all 500 callbacks", |_, finished| finished == 500);
            tally.assert_each_ran_once();
            let most = tally.max_running.load(SeqCst);
            println!("at most {most} callbacks ran at once under the limit");
            // The bound (512) would let all 500 run at once: fewer means
            // the limit refused thread starts, so the fix was exercised.
            assert!(
                most < 500,
                "the limit refused no thread: nothing was tested"
            );
        },
    );
    if let Some(out) = out {
        assert!(out.contains("callbacks ran at once"), "{out}");
    }
}

/// Without a limit, 3,000 blocked callbacks used to make 3,000 threads.
#[test]
fn three_thousand_blocked_callbacks_stay_within_the_thread_bound() {
    in_child_process(
        "three_thousand_blocked_callbacks_stay_within_the_thread_bound",
        "",
        LIMIT,
        || {
            let bound = goctx::max_callback_threads();
            assert_eq!(bound, 512, "the documented default");
            let tally = Tally::new(3000, false);
            let (ctx, cancel) = goctx::with_cancel(&goctx::background());
            let handles: Vec<_> = (0..3000)
                .map(|i| tally.register(&ctx, i, Duration::ZERO))
                .collect();
            cancel.cancel();
            tally.wait_for("the bound's worth of callbacks", |running, _| {
                running == bound
            });
            if let Some(threads) = threads_named("goctx-callback") {
                assert_eq!(threads, bound, "callback threads while all are blocked");
            }
            assert_eq!(*tally.finished.lock().unwrap(), 0);
            assert_eq!(handles.iter().filter(|handle| handle.stop()).count(), 0);
            tally.open();
            tally.wait_for("all 3,000 callbacks", |_, finished| finished == 3000);
            tally.assert_each_ran_once();
            assert_eq!(tally.max_running.load(SeqCst), bound);
            assert!(tally.max_threads.load(SeqCst) <= bound);
            if let Some(threads) = threads_named("goctx-callback") {
                assert!(threads <= bound, "{threads} callback threads");
            }
        },
    );
}

/// `set_max_callback_threads` changes the bound; 0 counts as 1.
#[test]
fn set_max_callback_threads_bounds_the_callback_threads() {
    in_child_process(
        "set_max_callback_threads_bounds_the_callback_threads",
        "",
        LIMIT,
        || {
            assert_eq!(goctx::set_max_callback_threads(8), 512);
            let tally = Tally::new(100, false);
            let (ctx, cancel) = goctx::with_cancel(&goctx::background());
            let _handles: Vec<_> = (0..100)
                .map(|i| tally.register(&ctx, i, Duration::ZERO))
                .collect();
            cancel.cancel();
            tally.wait_for("eight callbacks", |running, _| running == 8);
            assert_eq!(threads_named("goctx-callback").unwrap_or(8), 8);
            tally.open();
            tally.wait_for("all 100 callbacks", |_, finished| finished == 100);
            tally.assert_each_ran_once();
            assert_eq!(tally.max_running.load(SeqCst), 8);

            assert_eq!(goctx::set_max_callback_threads(0), 8);
            assert_eq!(goctx::max_callback_threads(), 1);
            let one = Tally::new(20, true);
            let (ctx, cancel) = goctx::with_cancel(&goctx::background());
            let _handles: Vec<_> = (0..20)
                .map(|i| one.register(&ctx, i, Duration::ZERO))
                .collect();
            cancel.cancel();
            one.wait_for("all 20 callbacks", |_, finished| finished == 20);
            one.assert_each_ran_once();
            assert_eq!(one.max_running.load(SeqCst), 1);
        },
    );
}
