//! Misuse and extremes: every case has a defined outcome, checked here.
//!
//! - `Duration`/`Instant` extremes: `Duration::MAX` means "no deadline",
//!   `Duration::ZERO` and past instants mean "born expired", instants
//!   centuries away behave like any other deadline;
//! - re-entrancy: cancelling, deriving, registering callbacks, stopping,
//!   and dropping contexts from inside an `after_func` callback or from
//!   inside a waker that goctx is calling;
//! - `extend_deadline` racing the deadline it moves.
//!
//! Each test body runs under a watchdog: a deadlock fails the test after
//! `LIMIT` instead of hanging the run. A panic on one of goctx's own helper
//! threads (`goctx-timer`, `goctx-callback`) outside user code is a library
//! bug; a panic hook records them and the tests that involve the helpers
//! assert there were none (none of the callbacks here panic).

mod common;
use common::causes::{Why, cause};

use std::future::Future;
use std::pin::pin;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use goctx::{AfterFunc, CancelFunc, Cause, Ctx, Error, ExtendError, background};

/// Bound on each test body; generous for a loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(60);
/// Bound on waiting for one asynchronous effect (a callback starting).
const PATIENCE: Duration = Duration::from_secs(10);
const HOUR: Duration = Duration::from_secs(3600);
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// Runs `body` on its own thread and fails if it has not finished within
/// `LIMIT` (a deadlock). Panics inside `body` are passed on.
fn watchdog<T: Send + 'static>(name: &str, body: impl FnOnce() -> T + Send + 'static) -> T {
    common::hooks::record_helper_panics(|_| false);
    common::run_with_deadlock_limit(name, LIMIT, body)
}

fn assert_no_helper_panics() {
    let panics = common::hooks::helper_panics();
    assert!(
        panics.is_empty(),
        "goctx helper threads panicked: {panics:#?}"
    );
}

/// A waker that runs a closure on every wake.
struct FnWaker<F: Fn() + Send + Sync + 'static>(F);

impl<F: Fn() + Send + Sync + 'static> Wake for FnWaker<F> {
    fn wake(self: Arc<Self>) {
        (self.0)();
    }
}

fn fn_waker(f: impl Fn() + Send + Sync + 'static) -> Waker {
    Waker::from(Arc::new(FnWaker(f)))
}

/// Polls `ctx.done()` once with `waker`, registering it, and keeps the
/// registration by leaking nothing: the returned guard owns the future.
fn register_waker(ctx: &Ctx, waker: &Waker) -> Pin2 {
    try_register_waker(ctx, waker).expect("context already done")
}

/// Like `register_waker`; `None` if the context is already done.
fn try_register_waker(ctx: &Ctx, waker: &Waker) -> Option<Pin2> {
    let ctx = ctx.clone();
    let mut future: Pin2 = Box::pin(async move { ctx.done().await });
    let polled = future.as_mut().poll(&mut TaskContext::from_waker(waker));
    polled.is_pending().then_some(future)
}

type Pin2 = std::pin::Pin<Box<dyn Future<Output = Error> + Send>>;

fn is_cause(got: Option<Cause>, expected: &Cause) -> bool {
    got.is_some_and(|got| Cause::ptr_eq(&got, expected))
}

fn is_err_cause(got: Option<Cause>, err: Error) -> bool {
    got.is_some_and(|got| got.downcast_ref::<Error>() == Some(&err))
}

// ---------------------------------------------------------------------------
// Duration and Instant extremes

/// `Duration::MAX` cannot be added to any instant: the timeout means "no
/// deadline", a plain cancelable child.
#[test]
fn duration_max_timeout_means_no_deadline() {
    watchdog("duration_max", || {
        let (ctx, cancel) = goctx::with_timeout(&background(), Duration::MAX);
        assert_eq!(ctx.deadline(), None);
        assert_eq!(ctx.err(), None);
        assert_eq!(ctx.to_string(), "context.Background.WithCancel");
        let (with_cause, _c) =
            goctx::with_timeout_cause(&background(), Duration::MAX, Why("never"));
        assert_eq!(with_cause.deadline(), None);
        assert_eq!(with_cause.wait_timeout(Duration::from_millis(20)), None);

        // Under a parent with a deadline, the parent's deadline shows through.
        let (parent, _p) = goctx::with_timeout(&background(), HOUR);
        let (child, _c) = goctx::with_timeout(&parent, Duration::MAX);
        assert_eq!(child.deadline(), parent.deadline());

        cancel.cancel();
        assert_eq!(ctx.err(), Some(Error::Canceled));
        assert!(is_err_cause(ctx.cause(), Error::Canceled));
    });
}

/// A zero timeout is a deadline that has already passed: the child is born
/// done with `DeadlineExceeded` (and the `*_cause` argument as its cause);
/// its cancel function changes nothing afterwards.
#[test]
fn zero_timeout_is_born_expired() {
    watchdog("zero_timeout", || {
        let (ctx, cancel) = goctx::with_timeout(&background(), Duration::ZERO);
        assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
        assert!(is_err_cause(ctx.cause(), Error::DeadlineExceeded));
        assert!(ctx.deadline().is_some_and(|d| d <= Instant::now()));
        cancel.cancel();
        assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));

        let why = cause("too slow");
        let (ctx, _cancel) = goctx::with_timeout_cause(&background(), Duration::ZERO, why.clone());
        assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
        assert!(is_cause(ctx.cause(), &why));
        assert_eq!(
            ctx.wait_timeout(Duration::ZERO),
            Some(Error::DeadlineExceeded)
        );

        // A callback on it starts at once.
        let (tx, rx) = mpsc::channel();
        let handle = goctx::after_func(&ctx, move || tx.send(()).unwrap_or(()));
        assert_eq!(rx.recv_timeout(PATIENCE), Ok(()));
        assert!(!handle.stop());
    });
}

fn past(years: u64) -> Instant {
    Instant::now()
        .checked_sub(YEAR * years as u32)
        .expect("this platform's Instant reaches centuries back")
}

fn future(years: u64) -> Instant {
    Instant::now()
        .checked_add(YEAR * years as u32)
        .expect("this platform's Instant reaches centuries ahead")
}

/// An instant far in the past is a deadline that has passed: born done.
#[test]
fn deadline_far_in_the_past_is_born_expired() {
    watchdog("far_past", || {
        for years in [1, 100, 1000] {
            let at = past(years);
            let why = cause("long ago");
            let (ctx, cancel) = goctx::with_deadline_cause(&background(), at, why.clone());
            assert_eq!(
                ctx.err(),
                Some(Error::DeadlineExceeded),
                "{years} years ago"
            );
            assert!(is_cause(ctx.cause(), &why));
            assert!(ctx.deadline().is_some_and(|d| d <= Instant::now()));
            cancel.cancel();
            assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
            // Children of it are born done with its error and cause.
            let (child, _c) = goctx::with_cancel(&ctx);
            assert_eq!(child.err(), Some(Error::DeadlineExceeded));
            assert!(is_cause(child.cause(), &why));
        }
    });
}

/// An instant centuries ahead is an ordinary deadline that does not fire
/// during the test; the context cancels normally, and deadlines derived
/// below it are earlier and get timers of their own.
#[test]
fn deadline_far_in_the_future_behaves_like_any_deadline() {
    watchdog("far_future", || {
        for years in [1, 100, 1000] {
            let at = future(years);
            let (ctx, cancel) = goctx::with_deadline(&background(), at);
            assert_eq!(ctx.err(), None, "{years} years ahead");
            assert!(ctx.deadline().is_some_and(|d| d > Instant::now() + HOUR));
            assert_eq!(ctx.wait_timeout(Duration::from_millis(10)), None);
            let (child, _c) = goctx::with_timeout(&ctx, Duration::from_millis(5));
            assert!(child.deadline() < ctx.deadline());
            assert_eq!(child.wait_timeout(PATIENCE), Some(Error::DeadlineExceeded));
            assert_eq!(ctx.err(), None);
            let later = at + HOUR;
            assert!(cancel.extend_deadline(later).is_ok());
            cancel.cancel();
            assert_eq!(ctx.err(), Some(Error::Canceled));
            assert_eq!(
                cancel.extend_deadline(later + HOUR),
                Err(ExtendError::Done(Error::Canceled))
            );
        }
    });
}

/// Go's `Deadline()` returns the deadline exactly as it was given; so must
/// `deadline()`, however far away it is, and so must `extend_deadline`'s
/// result agree with what `deadline()` reports afterwards.
#[test]
fn deadlines_are_reported_exactly_even_centuries_away() {
    watchdog("exact_deadlines", || {
        let mut wrong = Vec::new();
        for years in [1, 100, 300, 1000] {
            for at in [past(years), future(years)] {
                let (ctx, _cancel) = goctx::with_deadline(&background(), at);
                if ctx.deadline() != Some(at) {
                    wrong.push(format!(
                        "with_deadline {years} years away: deadline() is off by {:?}",
                        diff(ctx.deadline(), at)
                    ));
                }
            }
            let (ctx, cancel) = goctx::with_timeout(&background(), HOUR);
            let to = future(years);
            let result = cancel.extend_deadline(to);
            if result != Ok(to) || ctx.deadline() != Some(to) {
                wrong.push(format!(
                    "extend_deadline to {years} years ahead: returned a deadline off by {:?}, deadline() off by {:?}",
                    result.map(|r| diff(Some(r), to)),
                    diff(ctx.deadline(), to)
                ));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    });
}

fn diff(got: Option<Instant>, want: Instant) -> Option<Duration> {
    got.map(|got| if got > want { got - want } else { want - got })
}

/// `wait_timeout` with extreme durations: `Duration::MAX` on a done context
/// returns at once; on a live one it waits until the context ends; zero
/// never blocks.
#[test]
fn wait_timeout_extremes() {
    watchdog("wait_timeout", || {
        let (done, cancel) = goctx::with_cancel(&background());
        cancel.cancel();
        let start = Instant::now();
        assert_eq!(done.wait_timeout(Duration::MAX), Some(Error::Canceled));
        assert_eq!(done.wait_timeout(Duration::ZERO), Some(Error::Canceled));
        assert!(start.elapsed() < Duration::from_secs(5));

        let (live, cancel) = goctx::with_cancel(&background());
        assert_eq!(live.wait_timeout(Duration::ZERO), None);
        assert_eq!(live.wait_timeout(Duration::from_nanos(1)), None);
        let waiter = thread::spawn({
            let live = live.clone();
            move || live.wait_timeout(Duration::MAX)
        });
        cancel.cancel_with_cause(Why("stop waiting"));
        assert_eq!(waiter.join().ok(), Some(Some(Error::Canceled)));

        let (deadline, _c) = goctx::with_timeout(&background(), Duration::from_millis(5));
        assert_eq!(
            deadline.wait_timeout(Duration::MAX),
            Some(Error::DeadlineExceeded)
        );
    });
}

// ---------------------------------------------------------------------------
// Re-entrancy from after_func callbacks

/// A callback cancels its own context (a no-op: it is done), a sibling and
/// the parent. First cancel wins: the context keeps its own cause, the
/// parent gets the one given inside the callback.
#[test]
fn cancel_from_inside_an_after_func_callback() {
    watchdog("cancel_in_callback", || {
        let (parent, cancel_parent) = goctx::with_cancel_cause(&background());
        let (ctx, cancel) = goctx::with_cancel(&parent);
        let (sibling, cancel_sibling) = goctx::with_cancel(&parent);
        let inside = cause("canceled inside the callback");
        let (tx, rx) = mpsc::channel();
        let _handle = goctx::after_func(&ctx, {
            let cancel = cancel.clone();
            let inside = inside.clone();
            move || {
                cancel.cancel_with_cause(Why("too late"));
                cancel_sibling.cancel();
                cancel_parent.cancel_with_cause(inside);
                tx.send(()).unwrap_or(());
            }
        });
        cancel.cancel();
        assert_eq!(rx.recv_timeout(PATIENCE), Ok(()));
        assert_eq!(ctx.err(), Some(Error::Canceled));
        assert!(is_err_cause(ctx.cause(), Error::Canceled));
        assert_eq!(sibling.err(), Some(Error::Canceled));
        assert_eq!(parent.err(), Some(Error::Canceled));
        assert!(is_cause(parent.cause(), &inside));
        assert_no_helper_panics();
    });
}

/// Callbacks that cancel the next context, whose callback cancels the next,
/// and so on: the callback threads hand work to each other while they
/// finish their own. Every callback runs exactly once, every round, and no
/// helper thread panics (an earlier version of the pool lost count of its
/// idle threads exactly here and underflowed).
#[test]
fn chains_of_callbacks_cancelling_each_other() {
    watchdog("callback_chains", || {
        const ROUNDS: usize = 300;
        const LENGTH: usize = 4;
        let (tx, rx) = mpsc::channel();
        for round in 0..ROUNDS {
            let mut contexts: Vec<(Ctx, CancelFunc)> = (0..LENGTH)
                .map(|_| goctx::with_cancel(&background()))
                .collect();
            let mut handles = Vec::new();
            for i in 0..LENGTH {
                let next = contexts.get(i + 1).map(|(_, cancel)| cancel.clone());
                let tx = tx.clone();
                handles.push(goctx::after_func(&contexts[i].0, move || {
                    if let Some(next) = next {
                        next.cancel();
                    }
                    tx.send((round, i)).unwrap_or(());
                }));
            }
            contexts[0].1.cancel();
            let mut seen = [false; LENGTH];
            for _ in 0..LENGTH {
                let (r, i) = rx
                    .recv_timeout(PATIENCE)
                    .expect("a callback of the chain never ran");
                assert_eq!(r, round);
                assert!(!seen[i], "callback {i} ran twice");
                seen[i] = true;
            }
            for handle in &handles {
                assert!(!handle.stop());
            }
            contexts.clear();
        }
        assert!(
            rx.recv_timeout(Duration::from_millis(50)).is_err(),
            "an extra callback ran"
        );
        assert_no_helper_panics();
    });
}

/// The callback owns the context's last handles (`Ctx` and `CancelFunc`)
/// and drops them: the context is freed from inside its own callback.
/// Afterwards the parent has nothing registered and keeps working.
#[test]
fn dropping_a_context_inside_its_own_callback() {
    watchdog("drop_in_callback", || {
        let (parent, cancel_parent) = goctx::with_cancel(&background());
        for _ in 0..100 {
            let (ctx, cancel) = goctx::with_cancel(&parent);
            let (tx, rx) = mpsc::channel();
            let slot = Arc::new(Mutex::new(Some((ctx.clone(), cancel.clone()))));
            let _handle = goctx::after_func(&ctx, {
                let slot = slot.clone();
                move || {
                    let taken = slot.lock().unwrap().take();
                    let seen = taken.as_ref().map(|(ctx, _)| ctx.err());
                    drop(taken); // the last Ctx and CancelFunc of `ctx`
                    tx.send(seen).unwrap_or(());
                }
            });
            drop(ctx);
            cancel.cancel();
            drop(cancel);
            assert_eq!(rx.recv_timeout(PATIENCE), Ok(Some(Some(Error::Canceled))));
            assert_eq!(parent.dependents(), 0);
            let (child, cancel_child) = goctx::with_cancel(&parent);
            assert_eq!(parent.dependents(), 1);
            drop((child, cancel_child));
            assert_eq!(parent.dependents(), 0);
        }
        cancel_parent.cancel();
        assert_no_helper_panics();
    });
}

/// A callback whose closure owns its context's only `CancelFunc`: the
/// pending callback keeps the context alive; the parent's cancellation runs
/// it; then everything is freed.
#[test]
fn a_callback_owning_its_contexts_cancel_func() {
    watchdog("callback_owns_cancel", || {
        let (parent, cancel_parent) = goctx::with_cancel(&background());
        let (tx, rx) = mpsc::channel();
        {
            let (ctx, cancel) = goctx::with_cancel(&parent);
            let _h = goctx::after_func(&ctx, move || {
                drop(cancel);
                tx.send(()).unwrap_or(());
            });
        }
        assert_eq!(
            parent.dependents(),
            1,
            "the pending callback keeps its context registered"
        );
        cancel_parent.cancel();
        assert_eq!(rx.recv_timeout(PATIENCE), Ok(()));
        assert_no_helper_panics();
    });
}

/// `stop()` drops the callback; when the callback owned the context's last
/// `CancelFunc`, that drop cancels the context while `stop` runs, and the
/// cancellation finds the very registration being stopped. Outcome: `stop`
/// returns true, the callback never runs, the context is canceled.
#[test]
fn stop_drops_a_callback_that_owns_its_contexts_last_cancel_func() {
    watchdog("stop_drops_cancel", || {
        let (parent, _p) = goctx::with_cancel(&background());
        for _ in 0..100 {
            let (ctx, cancel) = goctx::with_cancel(&parent);
            let (tx, rx) = mpsc::channel::<()>();
            let handle = goctx::after_func(&ctx, move || {
                drop(cancel);
                tx.send(()).unwrap_or(());
            });
            assert!(handle.stop());
            assert_eq!(
                ctx.err(),
                Some(Error::Canceled),
                "dropping the last CancelFunc cancels"
            );
            assert!(
                rx.recv_timeout(Duration::from_millis(20)).is_err(),
                "a stopped callback ran"
            );
            assert!(!handle.stop());
            drop(ctx);
            assert_eq!(parent.dependents(), 0);
        }
        assert_no_helper_panics();
    });
}

/// Deriving from the context inside its own callback: every derived context
/// is born done with the context's error and cause; a callback registered
/// there starts at once; `stop()` of the running callback's own handle
/// returns false.
#[test]
fn deriving_and_registering_inside_a_callback() {
    watchdog("derive_in_callback", || {
        let (ctx, cancel) = goctx::with_cancel_cause(&background());
        let why = cause("request aborted");
        let own: Arc<Mutex<Option<AfterFunc>>> = Arc::new(Mutex::new(None));
        let (tx, rx) = mpsc::channel();
        let handle = goctx::after_func(&ctx, {
            let ctx = ctx.clone();
            let why = why.clone();
            let own = own.clone();
            move || {
                let (child, _c) = goctx::with_cancel(&ctx);
                let (timed, _t) = goctx::with_timeout(&ctx, HOUR);
                let valued = goctx::with_value(&ctx, 7u32);
                let (under_value, _v) = goctx::with_cancel(&valued);
                let all_born_done = [&child, &timed, &under_value]
                    .iter()
                    .all(|c| c.err() == Some(Error::Canceled) && is_cause(c.cause(), &why));
                let (inner_tx, inner_rx) = mpsc::channel();
                let _inner = goctx::after_func(&ctx, move || inner_tx.send(()).unwrap_or(()));
                let nested_ran = inner_rx.recv_timeout(PATIENCE).is_ok();
                let stopped_self = own.lock().unwrap().as_ref().map(|h| h.stop());
                tx.send((all_born_done, nested_ran, stopped_self))
                    .unwrap_or(());
            }
        });
        // Hand the callback its own handle before it can run.
        *own.lock().unwrap() = Some(handle);
        cancel.cancel_with_cause(why.clone());
        assert_eq!(rx.recv_timeout(PATIENCE), Ok((true, true, Some(false))));
        assert_no_helper_panics();
    });
}

// ---------------------------------------------------------------------------
// Re-entrancy from wakers

/// A waker that, when `cancel()` wakes it, cancels another context, cancels
/// the context being canceled again, derives from it, registers a callback
/// on it and reads its cause. All of it happens inside `cancel()`, before it
/// returns, without deadlock; what the waker saw is the final state.
#[test]
fn cancel_and_derive_from_inside_a_waker() {
    watchdog("waker_reentry", || {
        let (ctx, cancel) = goctx::with_cancel_cause(&background());
        let (other, cancel_other) = goctx::with_cancel(&background());
        let why = cause("shutdown");
        let seen: Arc<Mutex<Vec<bool>>> = Arc::new(Mutex::new(Vec::new()));
        let (cb_tx, cb_rx) = mpsc::channel();
        let waker = fn_waker({
            let ctx = ctx.clone();
            let cancel = cancel.clone();
            let why = why.clone();
            let seen = seen.clone();
            let cb_tx = Mutex::new(Some(cb_tx));
            move || {
                cancel_other.cancel_with_cause(Why("from a waker"));
                cancel.cancel(); // already done: nothing changes
                let (child, _c) = goctx::with_cancel(&ctx);
                let mut seen = seen.lock().unwrap();
                seen.push(child.err() == Some(Error::Canceled) && is_cause(child.cause(), &why));
                seen.push(is_cause(ctx.cause(), &why));
                seen.push(ctx.dependents() == 0);
                if let Some(tx) = cb_tx.lock().unwrap().take() {
                    // Dropping the handle does not stop the callback.
                    drop(goctx::after_func(&ctx, move || tx.send(()).unwrap_or(())));
                }
            }
        });
        let pending = register_waker(&ctx, &waker);
        assert_eq!(ctx.dependents(), 1);
        cancel.cancel_with_cause(why.clone());
        // The waker ran inside cancel():
        assert_eq!(other.err(), Some(Error::Canceled));
        assert_eq!(*seen.lock().unwrap(), vec![true, true, true]);
        assert_eq!(cb_rx.recv_timeout(PATIENCE), Ok(()));
        drop(pending);
        assert_no_helper_panics();
    });
}

/// A waker that owns the last handles of another live context and drops
/// them when woken: that context is canceled (RAII) and freed inside the
/// first cancellation.
#[test]
fn dropping_contexts_from_inside_a_waker() {
    watchdog("waker_drops", || {
        let (parent, _p) = goctx::with_cancel(&background());
        let (ctx, cancel) = goctx::with_cancel(&parent);
        let (victim, cancel_victim) = goctx::with_cancel(&parent);
        let (victim_child, _vc) = goctx::with_cancel(&victim);
        let owned = Mutex::new(Some((victim, cancel_victim)));
        let waker = fn_waker(move || drop(owned.lock().unwrap().take()));
        let pending = register_waker(&ctx, &waker);
        drop(waker);
        cancel.cancel();
        assert_eq!(victim_child.err(), Some(Error::Canceled));
        drop(pending);
        drop((ctx, victim_child));
        assert_eq!(parent.dependents(), 0);
    });
}

/// What a waker saw of a context it derived: its error, and whether its
/// cause was the expected one.
type Seen = (Option<Error>, bool);

/// A waker woken by the timer thread (a deadline) cancels another context
/// and derives from the expired one. The timer thread goes on: a later
/// deadline still fires.
#[test]
fn timer_thread_wakers_may_reenter() {
    watchdog("timer_waker", || {
        // The deadline must not pass before the waker is registered; on a
        // stalled machine it might, and the round is simply redone.
        let mut attempts = 0;
        let (ctx, other, derived, pending) = loop {
            attempts += 1;
            assert!(
                attempts <= 20,
                "could not register a waker before a 100 ms deadline"
            );
            let (ctx, cancel) = goctx::with_timeout(&background(), Duration::from_millis(100));
            cancel.detach();
            let (other, cancel_other) = goctx::with_cancel(&background());
            let derived: Arc<Mutex<Option<Seen>>> = Arc::new(Mutex::new(None));
            let waker = fn_waker({
                let ctx = ctx.clone();
                let derived = derived.clone();
                move || {
                    let (child, _c) = goctx::with_cancel(&ctx);
                    *derived.lock().unwrap() = Some((
                        child.err(),
                        is_err_cause(child.cause(), Error::DeadlineExceeded),
                    ));
                    cancel_other.cancel();
                }
            });
            if let Some(pending) = try_register_waker(&ctx, &waker) {
                break (ctx, other, derived, pending);
            }
        };
        assert_eq!(other.wait_timeout(PATIENCE), Some(Error::Canceled));
        assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
        assert_eq!(
            *derived.lock().unwrap(),
            Some((Some(Error::DeadlineExceeded), true))
        );
        drop(pending);
        let (later, _l) = goctx::with_timeout(&background(), Duration::from_millis(5));
        assert_eq!(later.wait_timeout(PATIENCE), Some(Error::DeadlineExceeded));
        assert_no_helper_panics();
    });
}

/// A waker that polls the same `done()` future's context again from inside
/// `wake` (as an executor running the task inline would): it sees it done.
#[test]
fn a_waker_polling_inline_sees_the_context_done() {
    watchdog("inline_poll", || {
        let (ctx, cancel) = goctx::with_cancel(&background());
        let polled: Arc<Mutex<Option<Poll<Error>>>> = Arc::new(Mutex::new(None));
        let waker = fn_waker({
            let ctx = ctx.clone();
            let polled = polled.clone();
            move || {
                let mut done = pin!(ctx.done());
                let result = done
                    .as_mut()
                    .poll(&mut TaskContext::from_waker(Waker::noop()));
                *polled.lock().unwrap() = Some(result);
            }
        });
        let pending = register_waker(&ctx, &waker);
        cancel.cancel();
        assert_eq!(*polled.lock().unwrap(), Some(Poll::Ready(Error::Canceled)));
        drop(pending);
    });
}

// ---------------------------------------------------------------------------
// extend_deadline racing the deadline

/// `extend_deadline` called right around the moment the deadline passes.
/// Exactly one of two outcomes, consistently:
/// - `Ok(new)`: the extension won; the context is not done before `new`
///   and ends at or after it with `DeadlineExceeded`;
/// - `Err(Done(DeadlineExceeded))`: the deadline won; the context is done
///   and keeps its old deadline.
#[test]
fn extend_deadline_racing_the_deadline() {
    watchdog("extend_race", || {
        let mut outcomes = [0usize; 2];
        for i in 0..300u32 {
            let first = Instant::now() + Duration::from_millis(2);
            let (ctx, cancel) = goctx::with_deadline(&background(), first);
            let (child, _c) = goctx::with_cancel(&ctx);
            // Call from 1 ms before to 2 ms after the deadline (the timer's
            // resolution is about 1 ms): both sides of the race.
            let call_at =
                first - Duration::from_millis(1) + Duration::from_micros(u64::from(i % 31) * 100);
            while Instant::now() < call_at {
                std::hint::spin_loop();
            }
            let new = first + Duration::from_millis(3);
            match cancel.extend_deadline(new) {
                Ok(got) => {
                    outcomes[0] += 1;
                    assert_eq!(got, new);
                    assert_eq!(ctx.deadline(), Some(new));
                    assert_eq!(
                        child.deadline(),
                        Some(new),
                        "a child without a deadline follows"
                    );
                    let err = ctx.err();
                    if err.is_some() {
                        assert!(
                            Instant::now() >= new,
                            "done before the extended deadline: {err:?}"
                        );
                    }
                    assert_eq!(child.wait_timeout(PATIENCE), Some(Error::DeadlineExceeded));
                    assert!(Instant::now() >= new, "fired before the extended deadline");
                    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
                }
                Err(err) => {
                    outcomes[1] += 1;
                    assert_eq!(err, ExtendError::Done(Error::DeadlineExceeded));
                    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
                    assert_eq!(child.err(), Some(Error::DeadlineExceeded));
                    assert_eq!(ctx.deadline(), Some(first));
                }
            }
        }
        // Both sides of the race must have been exercised at least once on
        // any machine: the early calls extend, the late ones find it done.
        assert!(outcomes[0] > 0, "no extension ever won: {outcomes:?}");
    });
}

/// Several threads extend the same deadline while it approaches: the final
/// deadline is the largest successful extension, and the context ends at
/// or after it.
#[test]
fn extend_deadline_from_many_threads() {
    watchdog("extend_many", || {
        for _ in 0..20 {
            let start = Instant::now();
            let (ctx, cancel) =
                goctx::with_deadline(&background(), start + Duration::from_millis(2));
            let threads: Vec<_> = (0..4u64)
                .map(|t| {
                    let cancel = cancel.clone();
                    thread::spawn(move || {
                        let mut best = None;
                        for step in 0..50u64 {
                            let to = start + Duration::from_micros(2000 + t * 37 + step * 100);
                            if let Ok(got) = cancel.extend_deadline(to) {
                                best = best.max(Some(got));
                            }
                        }
                        best
                    })
                })
                .collect();
            let best = threads.into_iter().filter_map(|t| t.join().unwrap()).max();
            let err = ctx.wait_timeout(PATIENCE);
            assert_eq!(err, Some(Error::DeadlineExceeded));
            let final_deadline = ctx.deadline().unwrap();
            if let Some(best) = best {
                assert!(
                    final_deadline >= best,
                    "the deadline moved back: {final_deadline:?} < {best:?}"
                );
                assert!(Instant::now() >= final_deadline);
            }
        }
    });
}
