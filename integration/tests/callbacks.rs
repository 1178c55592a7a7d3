//! `after_func` callbacks when threads run out: none is lost, each runs
//! exactly once, and the callback threads stay within their bound.
//!
//! goctx's callback pool is process-wide, so every test body runs in a
//! child process of this test binary (`common::in_child_process`), some
//! under a real resource limit set by the shell (`ulimit -v`).

mod common;

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use common::tally::Tally;
use common::{in_child_process, threads_named};

/// Bound on a whole child process; generous for a loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(60);

/// A [`Tally`] that also records the most `goctx-callback` threads any
/// callback saw.
struct Seen {
    tally: Arc<Tally>,
    max_threads: AtomicUsize,
}

impl Deref for Seen {
    type Target = Tally;
    fn deref(&self) -> &Tally {
        &self.tally
    }
}

impl Seen {
    fn new(n: usize, gate_open: bool) -> Arc<Seen> {
        Arc::new(Seen {
            tally: Tally::new(n, gate_open),
            max_threads: AtomicUsize::new(0),
        })
    }

    /// Registers callback `i` on `ctx`: every 50th counts the callback
    /// threads, then each runs the tally's body with `work`.
    fn register(self: &Arc<Self>, ctx: &goctx::Ctx, i: usize, work: Duration) -> goctx::AfterFunc {
        let seen = self.clone();
        goctx::after_func(ctx, move || {
            if i.is_multiple_of(50)
                && let Some(threads) = threads_named("goctx-callback")
            {
                seen.max_threads.fetch_max(threads, SeqCst);
            }
            seen.tally.body(i, work);
        })
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
            let tally = Seen::new(500, true);
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
            let tally = Seen::new(3000, false);
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
            assert_eq!(tally.finished(), 0);
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
            let tally = Seen::new(100, false);
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
            let one = Seen::new(20, true);
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
