//! The callback threads: where `after_func` callbacks run.
//!
//! Go starts a goroutine per callback. Threads cost more, and a system can
//! refuse to start one, so goctx keeps a bounded pool with a queue:
//!
//! - a callback is queued, then taken by a `goctx-callback` thread; a new
//!   thread is started whenever more callbacks are queued than threads are
//!   idle, as long as fewer than `max` threads exist (`max`: see
//!   `set_max_threads`, 512 by default). Below the bound a callback that
//!   blocks delays no other callback and no deadline; once `max` threads
//!   are all busy, further callbacks wait in the queue, in order, for the
//!   first thread to come free;
//! - a thread that cannot be started (the system refuses: a memory or
//!   thread limit) loses nothing: its callback stays queued for the
//!   threads that exist, and the start is retried at the next `spawn` and
//!   each time a callback thread finishes a callback while a backlog
//!   remains;
//! - the last resort: when no callback thread exists at all and none can be
//!   started, the caller of `spawn` runs the queued callbacks itself, at
//!   once. Every caller holds no goctx lock there (`spawn` is only reached
//!   through `Entry::fire`, which invariant 4 of the tree only calls with
//!   no lock held: after a cancellation walk, from `after_func` on a done
//!   context, or from a user context's `Notify::notify`). This is the one
//!   case where a callback runs on the thread that ended its context (the
//!   canceler or the timer thread) and that thread waits for it. We chose
//!   it over waiting for a later event because there may be none: a queue
//!   with no thread to serve it could hold a callback forever, while its
//!   `AfterFunc::stop` already answered false;
//! - `cancel()` never waits for a callback otherwise;
//! - threads idle for `IDLE_EXIT` exit, and so do threads beyond a lowered
//!   bound once they finish their callback;
//! - a panicking callback is caught; the thread goes on serving.
//!
//! Under `--cfg loom` the pool is unused: each callback runs on a loom
//! thread of its own (`sync::WAITING_THREADS`), so the models see it run
//! concurrently with the canceling thread, as in the real build.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use crate::sync::{Condvar, WAITING_THREADS, WaitGuard, WaitMutex, process_global, spawn_thread};

/// A callback to run.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// How long an idle callback thread waits for work before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(10);

/// The default bound on callback threads (as tokio's default
/// `max_blocking_threads`): plenty for callbacks that do short cleanup,
/// and at most 512 thread stacks of address space.
pub(crate) const DEFAULT_MAX_THREADS: usize = 512;

struct Pool {
    state: WaitMutex<State>,
    /// Signaled once per queued callback while a thread is idle.
    ready: Condvar,
}

/// The pool's bookkeeping, all under `Pool::state`.
///
/// Invariant: a queued callback always has a thread that will look at the
/// queue (a busy, idle or starting one: `live > 0`), or is being run by
/// the last resort; threads block only on an empty queue, and only exit
/// when the queue is empty or `live > max` (then `max ≥ 1` others remain).
struct State {
    /// Callbacks not yet taken by a thread, oldest first. Pushed by
    /// `spawn`; popped by a callback thread, or by the caller of a failed
    /// start that left no thread at all (the last resort).
    queue: VecDeque<Job>,
    /// Threads started and not exited, counting one being started: raised
    /// (with `idle`) before a start is tried, so that concurrent callers
    /// count it; lowered when the start fails or the thread exits.
    live: usize,
    /// Threads that will look at the queue before they block or exit:
    /// those blocked in `ready.wait_timeout` and those being started.
    /// Raised by a thread before it waits and by a starter; lowered by the
    /// thread when it wakes or begins, or when its start fails.
    idle: usize,
    /// The bound on `live`, at least 1. Changed by `set_max_threads`.
    max: usize,
}

impl State {
    /// Reserves a new thread if some queued callback has no idle thread to
    /// take it and the bound allows another: raises `live` and `idle`. The
    /// caller must then call `start` without the lock.
    fn reserve(&mut self) -> bool {
        if self.queue.len() > self.idle && self.live < self.max {
            self.live += 1;
            self.idle += 1;
            true
        } else {
            false
        }
    }
}

process_global! {
    static POOL: Pool = Pool {
        state: WaitMutex::new(State {
            queue: VecDeque::new(),
            live: 0,
            idle: 0,
            max: DEFAULT_MAX_THREADS,
        }),
        ready: Condvar::new(),
    };
}

fn lock() -> WaitGuard<'static, State> {
    POOL.state.lock()
}

/// Sets the bound on callback threads (`n == 0` counts as 1) and returns
/// the previous one. Raising it starts threads for a waiting backlog at
/// once; lowering it lets surplus threads exit as they finish their
/// callbacks (a running callback is never interrupted).
pub(crate) fn set_max_threads(n: usize) -> usize {
    let mut state = lock();
    let previous = std::mem::replace(&mut state.max, n.max(1));
    let mut starts = 0;
    while state.reserve() {
        starts += 1;
    }
    drop(state);
    for _ in 0..starts {
        start();
    }
    previous
}

/// The current bound on callback threads.
pub(crate) fn max_threads() -> usize {
    lock().max
}

/// Runs `job` on a callback thread: at once if the bound allows, else when
/// a thread comes free. Only if no callback thread exists and none can be
/// started does it run `job` (and any other queued callback) before
/// returning, on the caller's thread. Call it with no goctx lock held.
pub(crate) fn spawn(job: Job) {
    if !WAITING_THREADS {
        // Under loom: a thread of its own, which ends with the callback.
        spawn_thread("goctx-callback", job).expect("a loom thread always starts");
        return;
    }
    let mut state = lock();
    state.queue.push_back(job);
    let idle = state.idle > 0;
    let new_thread = state.reserve();
    drop(state);
    if idle {
        // One signal per queued callback: a thread that blocked on the
        // empty queue wakes for it. (A thread being started needs no
        // signal: it looks at the queue before it ever blocks.)
        POOL.ready.notify_one();
    }
    if new_thread {
        start();
    }
}

/// Starts a thread reserved by `State::reserve`. If the system refuses,
/// gives the reservation back; if that leaves no thread at all, runs the
/// queue here (the last resort of the module docs).
fn start() {
    if let Err(_refused) = start_thread() {
        let mut state = lock();
        state.live -= 1;
        state.idle -= 1;
        drop(state);
        run_queue_if_no_thread();
    }
}

/// The last resort: runs queued callbacks on this thread, one at a time
/// and without the lock, for as long as no callback thread exists. Stops
/// as soon as one does (a later `spawn` managed to start it): the rest of
/// the queue is then that thread's.
fn run_queue_if_no_thread() {
    loop {
        let mut state = lock();
        if state.live > 0 {
            return;
        }
        let Some(job) = state.queue.pop_front() else {
            return;
        };
        drop(state);
        run(job);
    }
}

/// Fault injection for the unit tests: the next this-many callback thread
/// starts fail as if the system refused them.
#[cfg(test)]
pub(crate) static FAIL_STARTS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

fn start_thread() -> io::Result<()> {
    #[cfg(test)]
    {
        use std::sync::atomic::Ordering::Relaxed;
        // Only the count matters, not what it orders: `Relaxed`.
        if FAIL_STARTS
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(io::Error::other("injected start failure"));
        }
    }
    spawn_thread("goctx-callback", serve)
}

/// A callback thread's life: take callbacks from the queue until it has
/// been idle for `IDLE_EXIT` or the bound was lowered below the number of
/// threads.
fn serve() {
    let mut state = lock();
    // We were counted idle while being started.
    state.idle -= 1;
    loop {
        if state.live > state.max {
            // The bound was lowered: this thread is surplus. `max ≥ 1`
            // others remain; if we were woken for a queued callback, pass
            // the signal on so an idle one takes it.
            state.live -= 1;
            let pass_on = !state.queue.is_empty();
            drop(state);
            if pass_on {
                POOL.ready.notify_one();
            }
            return;
        }
        if let Some(job) = state.queue.pop_front() {
            // Retry a start that failed earlier (or that a raised bound now
            // allows): a backlog beyond the idle threads gets another one.
            let new_thread = state.reserve();
            drop(state);
            if new_thread {
                start();
            }
            run(job);
            state = lock();
            continue;
        }
        state.idle += 1;
        let (next, timed_out) = POOL.ready.wait_timeout(state, IDLE_EXIT);
        state = next;
        state.idle -= 1;
        // A callback queued while we timed out is still ours to take.
        if timed_out && state.queue.is_empty() {
            state.live -= 1;
            return;
        }
    }
}

fn run(job: Job) {
    // A panicking callback must not take the thread (or other callbacks)
    // down; the default hook has already printed the panic message.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
}
/// The callback tally of the pool's tests, shared with the integration
/// tests (`integration/tests/callbacks.rs`): it names only `std`.
// Written for `tests/`, where its items are `pub`; here they are private
// to the tests, and not every one is used.
#[cfg(all(test, not(loom)))]
#[path = "../integration/tests/common/tally.rs"]
#[allow(unreachable_pub, dead_code)]
mod tally;

/// Unit tests of the pool's private invariants, with start failures
/// injected through `FAIL_STARTS`. The pool is process-wide, so each test
/// body runs in a child process of its own (`in_child`): a fresh pool, and
/// no other test's callbacks or injected failures.
#[cfg(all(test, not(loom)))]
pub(crate) mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering::SeqCst;
    use std::thread;
    use std::time::Duration;

    use super::tally::Tally;
    use super::{FAIL_STARTS, lock, max_threads, set_max_threads};
    use crate::{AfterFunc, after_func, background, with_cancel};
    /// Names the test a child process is to run.
    const CHILD: &str = "GOCTX_UNIT_CHILD";

    /// Runs `body` in a new process of this test binary that runs only the
    /// test `name` (its full path, e.g. `spawn::tests::x`), so the body has
    /// the process-wide pool and timer to itself. Fails if the child fails
    /// or has not finished within a minute.
    pub(crate) fn in_child(name: &str, body: impl FnOnce()) {
        if std::env::var_os(CHILD).is_some_and(|child| child == name) {
            body();
            return;
        }
        let exe = std::env::current_exe().expect("test binary path");
        let child = std::process::Command::new(exe)
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(CHILD, name)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the child test process");
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let output = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(output) => output.expect("wait for the child"),
            Err(_) => {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
                panic!("{name}: child process not done within a minute (deadlock?)");
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "{name}: child failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Callback `i` of `tally`, on `ctx`: counts itself and waits at the
    /// tally's gate if it is closed.
    impl Tally {
        fn register(self: &Arc<Self>, ctx: &crate::Ctx, i: usize) -> AfterFunc {
            let tally = self.clone();
            after_func(ctx, move || tally.body(i, Duration::ZERO))
        }
    }

    fn pool() -> (usize, usize, usize) {
        let state = lock();
        (state.live, state.idle, state.queue.len())
    }

    #[test]
    fn with_no_thread_at_all_callbacks_run_on_the_caller() {
        in_child(
            "spawn::tests::with_no_thread_at_all_callbacks_run_on_the_caller",
            || {
                FAIL_STARTS.store(usize::MAX, SeqCst);
                let tally = Tally::new(21, true);
                let (ctx, cancel) = with_cancel(&background());
                let handles: Vec<_> = (0..20).map(|i| tally.register(&ctx, i)).collect();
                cancel.cancel();
                // The last resort ran them before `cancel()` returned.
                assert_eq!(tally.finished(), 20);
                assert_eq!(tally.on_pool.load(SeqCst), 0);
                assert!(handles.iter().all(|h| !h.stop()), "stop() after they ran");
                // On a done context: inside `after_func` itself.
                let late = tally.register(&ctx, 20);
                assert_eq!(tally.ran[20].load(SeqCst), 1);
                assert!(!late.stop());
                tally.assert_each_ran_once();
                assert_eq!(pool(), (0, 0, 0), "(live, idle, queued)");

                // Once threads can start again, callbacks use them.
                FAIL_STARTS.store(0, SeqCst);
                let again = Tally::new(1, true);
                let _h = again.register(&ctx, 0);
                again.wait_for("a pooled callback", |_, finished| finished == 1);
                assert_eq!(again.on_pool.load(SeqCst), 1);
            },
        );
    }

    #[test]
    fn refused_starts_queue_callbacks_for_the_threads_that_exist() {
        in_child(
            "spawn::tests::refused_starts_queue_callbacks_for_the_threads_that_exist",
            || {
                let tally = Tally::new(51, true);
                tally.close();
                // Callback 0 takes the one thread and holds it.
                let (first, cancel_first) = with_cancel(&background());
                let _h0 = tally.register(&first, 0);
                cancel_first.cancel();
                tally.wait_for("the first callback", |running, _| running == 1);

                FAIL_STARTS.store(usize::MAX, SeqCst);
                let (ctx, cancel) = with_cancel(&background());
                let handles: Vec<_> = (1..51).map(|i| tally.register(&ctx, i)).collect();
                cancel.cancel();
                // Queued, not run on this thread and not dropped.
                assert_eq!(tally.ran.iter().map(|r| r.load(SeqCst)).sum::<usize>(), 1);
                assert_eq!(pool(), (1, 0, 50), "(live, idle, queued)");
                assert!(
                    handles.iter().all(|h| !h.stop()),
                    "stop() of a queued callback"
                );

                tally.open();
                tally.wait_for("the queue to drain", |_, finished| finished == 51);
                tally.assert_each_ran_once();
                assert_eq!(tally.on_pool.load(SeqCst), 51, "all on the pool thread");
                assert_eq!(tally.max_running.load(SeqCst), 1);
                assert_eq!(pool().2, 0);
            },
        );
    }

    #[test]
    fn a_refused_start_is_retried_at_the_next_spawn() {
        in_child(
            "spawn::tests::a_refused_start_is_retried_at_the_next_spawn",
            || {
                let tally = Tally::new(3, true);
                tally.close();
                let (ctx, cancel) = with_cancel(&background());
                let _h0 = tally.register(&ctx, 0);
                cancel.cancel();
                tally.wait_for("the first callback", |running, _| running == 1);

                FAIL_STARTS.store(1, SeqCst);
                let _h1 = tally.register(&ctx, 1); // its start is refused
                assert_eq!(pool(), (1, 0, 1), "(live, idle, queued)");
                let _h2 = tally.register(&ctx, 2); // this start works
                // Both run while callback 0 still holds the first thread.
                tally.wait_for("callbacks 1 and 2", |running, _| running == 3);
                assert_eq!(pool(), (3, 0, 0));
                tally.open();
                tally.wait_for("all", |_, finished| finished == 3);
                tally.assert_each_ran_once();
            },
        );
    }

    #[test]
    fn a_refused_start_is_retried_when_a_callback_finishes() {
        in_child(
            "spawn::tests::a_refused_start_is_retried_when_a_callback_finishes",
            || {
                let first = Tally::new(1, true);
                first.close();
                let (ctx, cancel) = with_cancel(&background());
                let _h0 = first.register(&ctx, 0);
                cancel.cancel();
                first.wait_for("the first callback", |running, _| running == 1);

                let rest = Tally::new(2, true);
                rest.close();
                FAIL_STARTS.store(2, SeqCst);
                let _h1 = rest.register(&ctx, 0);
                let _h2 = rest.register(&ctx, 1);
                assert_eq!(pool(), (1, 0, 2), "(live, idle, queued)");
                // The first thread comes free, takes one, and starts a
                // thread for the other: both run at once.
                first.open();
                rest.wait_for("both queued callbacks", |running, _| running == 2);
                rest.open();
                rest.wait_for("all", |_, finished| finished == 2);
                first.assert_each_ran_once();
                rest.assert_each_ran_once();
                assert_eq!(rest.on_pool.load(SeqCst), 2);
            },
        );
    }

    #[test]
    fn the_bound_holds_and_can_be_changed() {
        in_child("spawn::tests::the_bound_holds_and_can_be_changed", || {
            assert_eq!(max_threads(), super::DEFAULT_MAX_THREADS);
            assert_eq!(set_max_threads(4), super::DEFAULT_MAX_THREADS);
            let tally = Tally::new(40, true);
            tally.close();
            let (ctx, cancel) = with_cancel(&background());
            let _handles: Vec<_> = (0..40).map(|i| tally.register(&ctx, i)).collect();
            cancel.cancel();
            tally.wait_for("four running", |running, _| running == 4);
            assert_eq!(pool(), (4, 0, 36), "(live, idle, queued)");

            // Raising the bound starts threads for the backlog at once.
            set_max_threads(6);
            tally.wait_for("six running", |running, _| running == 6);
            assert_eq!(pool(), (6, 0, 34));
            // Lowering it stops nothing that runs; surplus threads exit as
            // they finish and take no new callback.
            set_max_threads(2);
            assert_eq!(pool().0, 6, "running callbacks keep their threads");
            tally.open();
            tally.wait_for("all forty", |_, finished| finished == 40);
            tally.assert_each_ran_once();
            assert_eq!(tally.on_pool.load(SeqCst), 40);
            let later = Tally::new(20, true);
            later.close();
            let (ctx, cancel) = with_cancel(&background());
            let _later: Vec<_> = (0..20).map(|i| later.register(&ctx, i)).collect();
            cancel.cancel();
            later.wait_for("two running", |running, _| running == 2);
            later.open();
            later.wait_for("all twenty", |_, finished| finished == 20);
            later.assert_each_ran_once();
            assert_eq!(later.max_running.load(SeqCst), 2);
            assert!(pool().0 <= 2, "surplus threads exited: {:?}", pool());

            // Zero counts as one, and callbacks still run.
            set_max_threads(0);
            assert_eq!(max_threads(), 1);
            let one = Tally::new(10, true);
            let (ctx, cancel) = with_cancel(&background());
            let _one: Vec<_> = (0..10).map(|i| one.register(&ctx, i)).collect();
            cancel.cancel();
            one.wait_for("all ten", |_, finished| finished == 10);
            one.assert_each_ran_once();
            assert_eq!(one.max_running.load(SeqCst), 1);
        });
    }

    /// Every callback runs exactly once or is stopped, never both, whatever
    /// starts are refused, with `stop()` racing the cancel; the number of
    /// threads never passes the bound.
    #[test]
    fn exactly_once_with_refused_starts_and_racing_stops() {
        in_child(
            "spawn::tests::exactly_once_with_refused_starts_and_racing_stops",
            || {
                set_max_threads(3);
                for round in 0..40 {
                    FAIL_STARTS.store(round % 7, SeqCst);
                    let tally = Tally::new(30, true);
                    let (ctx, cancel) = with_cancel(&background());
                    let handles: Arc<Vec<_>> =
                        Arc::new((0..30).map(|i| tally.register(&ctx, i)).collect());
                    let stopper = {
                        let handles = handles.clone();
                        thread::spawn(move || {
                            (0..30)
                                .map(|i| i % 2 == 1 && handles[i].stop())
                                .collect::<Vec<_>>()
                        })
                    };
                    cancel.cancel();
                    let stopped = stopper.join().expect("stopper");
                    let expected = stopped.iter().filter(|s| !**s).count();
                    tally.wait_for("the unstopped callbacks", |_, finished| {
                        finished == expected
                    });
                    for (i, was_stopped) in stopped.iter().enumerate() {
                        let ran = tally.ran[i].load(SeqCst);
                        assert_eq!(ran + usize::from(*was_stopped), 1, "round {round}, #{i}");
                        assert!(!handles[i].stop(), "stop() after the cancel");
                    }
                    let (live, _, _) = pool();
                    assert!(live <= 3, "round {round}: {live} threads");
                    assert!(tally.max_running.load(SeqCst) <= 3);
                }
            },
        );
    }
}
