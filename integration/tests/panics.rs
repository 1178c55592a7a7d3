//! Panic containment: user code that panics — an `after_func` callback, a
//! waker, a user `Context` implementation — must not poison goctx's state,
//! stop its helper threads, or keep other callbacks and deadlines from
//! firing.
//!
//! What the library does with each panic, as asserted here:
//!
//! - A panicking `after_func` callback is caught on its helper thread; the
//!   thread and every other callback go on.
//! - A panicking waker woken by `cancel()` does not stop the cancellation:
//!   every context of the subtree is done, every other waiter is woken and
//!   every callback started; then `cancel()` resumes the (first) panic, so
//!   the caller still sees it. The same holds when the cancel is the drop
//!   of the last `CancelFunc` (the drop panics).
//! - A panicking waker woken by the timer thread is caught there; the
//!   timer thread goes on firing deadlines.
//! - A panic in a user `Context` method reaches whoever called into it
//!   (the deriving call, the poller, or the user's own code that delivers a
//!   `Notify`); the contexts involved and all others keep working.
//!
//! Each body runs under a watchdog (a deadlock fails instead of hanging).
//! The intentional panics carry a marker and are not printed.

mod common;
use common::hub::Hub;

use std::any::{Any, TypeId};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context as TaskContext, Wake, Waker};
use std::time::{Duration, Instant};

use goctx::custom::{Context, Notify, Subscription};
use goctx::{Cause, Ctx, Error, background};

const LIMIT: Duration = Duration::from_secs(60);
const PATIENCE: Duration = Duration::from_secs(10);
const MARK: &str = "goctx-test: intentional panic";

// ---------------------------------------------------------------------------
// Harness

fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string payload>".to_owned()
    }
}

/// Silences the intentional panics; records any other panic on a goctx
/// helper thread (a library bug) and prints it as usual.
fn install_hook() {
    common::hooks::record_helper_panics(|info| payload_text(info.payload()).contains(MARK));
}

fn assert_no_helper_panics() {
    let panics = common::hooks::helper_panics();
    assert!(
        panics.is_empty(),
        "goctx helper threads panicked on their own: {panics:#?}"
    );
}

fn watchdog<T: Send + 'static>(name: &str, body: impl FnOnce() -> T + Send + 'static) -> T {
    install_hook();
    common::run_with_deadlock_limit(name, LIMIT, body)
}

/// Runs `f`, which must panic; returns the panic message.
fn expect_panic(what: &str, f: impl FnOnce()) -> String {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(()) => panic!("{what}: expected a panic, returned normally"),
        Err(payload) => payload_text(&*payload),
    }
}

/// A waker that counts wakes (and signals them) and then panics with
/// `panic_with` if it has one.
struct TestWaker {
    woken: Mutex<usize>,
    changed: Condvar,
    panic_with: Option<String>,
}

impl TestWaker {
    fn woken(&self) -> usize {
        *self.woken.lock().unwrap()
    }

    /// Waits until woken at least once, or `PATIENCE` passed.
    fn wait_woken(&self) -> usize {
        let guard = self.woken.lock().unwrap();
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, PATIENCE, |n| *n == 0)
            .unwrap();
        *guard
    }
}

impl Wake for TestWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        *self.woken.lock().unwrap() += 1;
        self.changed.notify_all();
        if let Some(message) = &self.panic_with {
            panic!("{message}");
        }
    }
}

fn test_waker(panic_with: Option<&str>) -> (Arc<TestWaker>, Waker) {
    let state = Arc::new(TestWaker {
        woken: Mutex::new(0),
        changed: Condvar::new(),
        panic_with: panic_with.map(|m| format!("{MARK}: {m}")),
    });
    (state.clone(), Waker::from(state))
}

type Pending = Pin<Box<dyn Future<Output = Error> + Send>>;

/// Polls `ctx.done()` by hand with `waker`; the returned future keeps the
/// registration.
fn register(ctx: &Ctx, waker: &Waker) -> Pending {
    try_register(ctx, waker).expect("the context is already done")
}

/// Like `register`; `None` if the context is already done.
fn try_register(ctx: &Ctx, waker: &Waker) -> Option<Pending> {
    let ctx = ctx.clone();
    let mut future: Pending = Box::pin(async move { ctx.done().await });
    let polled = future.as_mut().poll(&mut TaskContext::from_waker(waker));
    polled.is_pending().then_some(future)
}

/// A context that must still work after the panics: derive, cancel, wait.
fn assert_goctx_works() {
    let (ctx, cancel) = goctx::with_cancel(&background());
    let (child, _c) = goctx::with_cancel(&ctx);
    let (tx, rx) = mpsc::channel();
    let _h = goctx::after_func(&child, move || tx.send(()).unwrap_or(()));
    cancel.cancel();
    assert_eq!(child.err(), Some(Error::Canceled));
    assert_eq!(
        rx.recv_timeout(PATIENCE),
        Ok(()),
        "a fresh callback did not run"
    );
    let (timed, _t) = goctx::with_timeout(&background(), Duration::from_millis(5));
    assert_eq!(
        timed.wait_timeout(PATIENCE),
        Some(Error::DeadlineExceeded),
        "a fresh deadline did not fire"
    );
}

// ---------------------------------------------------------------------------
// after_func callbacks

/// Panicking callbacks, many at once, interleaved with ordinary ones on the
/// same contexts: every ordinary callback runs, the helper threads survive
/// (later callbacks and deadlines still work).
#[test]
fn a_panicking_callback_is_contained() {
    watchdog("callback_panics", || {
        for _ in 0..20 {
            let (ctx, cancel) = goctx::with_cancel(&background());
            let (tx, rx) = mpsc::channel();
            for i in 0..10 {
                if i % 2 == 0 {
                    let _ = goctx::after_func(&ctx, move || panic!("{MARK}: callback {i}"));
                } else {
                    let tx = tx.clone();
                    let _ = goctx::after_func(&ctx, move || tx.send(i).unwrap_or(()));
                }
            }
            // A deadline armed meanwhile still fires.
            let (timed, _t) = goctx::with_timeout(&background(), Duration::from_millis(2));
            cancel.cancel();
            let mut got: Vec<i32> = (0..5)
                .map(|_| rx.recv_timeout(PATIENCE).expect("a callback was lost"))
                .collect();
            got.sort_unstable();
            assert_eq!(got, vec![1, 3, 5, 7, 9]);
            assert_eq!(timed.wait_timeout(PATIENCE), Some(Error::DeadlineExceeded));
        }
        assert_goctx_works();
        assert_no_helper_panics();
    });
}

// ---------------------------------------------------------------------------
// Wakers

/// Two panicking wakers and an ordinary one on a context with a child, a
/// grandchild waiter and callbacks. `cancel()` panics with one of the two
/// messages, after all the work is done: every context ended, every waker
/// was called, every callback started, the context left its parent.
#[test]
fn a_panicking_waker_during_cancel_is_resumed_after_all_notifications() {
    watchdog("waker_panics", || {
        let (parent, cancel_parent) = goctx::with_cancel(&background());
        let (ctx, cancel) = goctx::with_cancel_cause(&parent);
        let (child, _c) = goctx::with_cancel(&ctx);
        let (first, first_waker) = test_waker(Some("waker 1"));
        let (second, second_waker) = test_waker(Some("waker 2"));
        let (plain, plain_waker) = test_waker(None);
        let (grand, grand_waker) = test_waker(None);
        let _p1 = register(&ctx, &first_waker);
        let _p2 = register(&ctx, &second_waker);
        let _p3 = register(&ctx, &plain_waker);
        let _p4 = register(&child, &grand_waker);
        let (tx, rx) = mpsc::channel();
        for i in 0..3 {
            let tx = tx.clone();
            let _ = goctx::after_func(if i == 0 { &ctx } else { &child }, move || {
                tx.send(i).unwrap_or(())
            });
        }
        assert_eq!(parent.dependents(), 1);

        let why = Cause::from(Error::Canceled);
        let message = expect_panic("cancel with panicking wakers", || {
            cancel.cancel_with_cause(why.clone())
        });
        assert!(
            message.ends_with("waker 1") || message.ends_with("waker 2"),
            "cancel() resumed an unexpected panic: {message}"
        );
        for (name, waker) in [
            ("first", &first),
            ("second", &second),
            ("plain", &plain),
            ("grandchild", &grand),
        ] {
            assert_eq!(waker.woken(), 1, "{name} waker");
        }
        assert_eq!(ctx.err(), Some(Error::Canceled));
        assert_eq!(child.err(), Some(Error::Canceled));
        assert!(child.cause().is_some_and(|c| Cause::ptr_eq(&c, &why)));
        let mut ran: Vec<i32> = (0..3)
            .map(|_| rx.recv_timeout(PATIENCE).expect("a callback was lost"))
            .collect();
        ran.sort_unstable();
        assert_eq!(ran, vec![0, 1, 2]);
        assert_eq!(
            parent.dependents(),
            0,
            "the canceled context did not leave its parent"
        );

        // The same contexts keep working.
        cancel.cancel(); // no-op, no panic: already done
        let (late, _l) = goctx::with_cancel(&ctx);
        assert_eq!(late.err(), Some(Error::Canceled));
        let (sibling, cancel_sibling) = goctx::with_cancel(&parent);
        assert_eq!(parent.dependents(), 1);
        cancel_parent.cancel();
        assert_eq!(sibling.err(), Some(Error::Canceled));
        drop(cancel_sibling);
        assert_goctx_works();
        assert_no_helper_panics();
    });
}

/// The cancel can be the drop of the last `CancelFunc`: the drop panics
/// (after finishing the cancellation), and nothing is left half done.
#[test]
fn a_panicking_waker_during_raii_cancel() {
    watchdog("waker_panics_drop", || {
        let (parent, _p) = goctx::with_cancel(&background());
        let (ctx, cancel) = goctx::with_cancel(&parent);
        let (child, _c) = goctx::with_cancel(&ctx);
        let (bad, bad_waker) = test_waker(Some("waker in drop"));
        let (good, good_waker) = test_waker(None);
        let _p1 = register(&ctx, &bad_waker);
        let _p2 = register(&child, &good_waker);
        let message = expect_panic("dropping the last CancelFunc", move || drop(cancel));
        assert!(message.ends_with("waker in drop"), "{message}");
        assert_eq!(bad.woken(), 1);
        assert_eq!(good.woken(), 1);
        assert_eq!(ctx.err(), Some(Error::Canceled));
        assert_eq!(child.err(), Some(Error::Canceled));
        assert_eq!(parent.dependents(), 0);
        assert_goctx_works();
    });
}

/// Wakers woken by the timer thread panic: the timer thread catches it,
/// the context is done and its other waiters are woken, and later
/// deadlines still fire.
#[test]
fn a_panicking_waker_on_the_timer_thread() {
    watchdog("timer_waker_panics", || {
        let mut round = 0;
        let mut attempts = 0;
        while round < 5 {
            attempts += 1;
            assert!(
                attempts <= 50,
                "could not register wakers before 50 ms deadlines"
            );
            let (ctx, _c) = goctx::with_timeout(&background(), Duration::from_millis(50));
            let (child, _cc) = goctx::with_cancel(&ctx);
            let (bad, bad_waker) = test_waker(Some("timer waker"));
            // On a stalled machine the deadline may pass first: redo.
            let Some(_p) = try_register(&ctx, &bad_waker) else {
                continue;
            };
            round += 1;
            assert_eq!(
                child.wait_timeout(PATIENCE),
                Some(Error::DeadlineExceeded),
                "round {round}"
            );
            assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
            assert_eq!(bad.wait_woken(), 1, "the panicking waker was never called");
            let (later, _l) = goctx::with_timeout(&background(), Duration::from_millis(3));
            assert_eq!(
                later.wait_timeout(PATIENCE),
                Some(Error::DeadlineExceeded),
                "timer thread stopped"
            );
        }
        assert_goctx_works();
        assert_no_helper_panics();
    });
}

// ---------------------------------------------------------------------------
// User Context implementations

/// A user context whose methods panic on demand. Its subscriber list is
/// the shared `Hub`; what stays here is deliberate: `subscribe` and the
/// `Subscription`'s cancel function may panic before they reach it.
#[derive(Default)]
struct Touchy {
    panic_err: AtomicBool,
    panic_subscribe: AtomicBool,
    panic_unsubscribe: AtomicBool,
    panic_deadline: AtomicBool,
    panic_lookup: AtomicBool,
    err: Mutex<Option<Error>>,
    hub: Hub,
}

struct TouchyCtx(Arc<Touchy>);

impl Touchy {
    fn subscribers(&self) -> usize {
        self.hub.len()
    }

    /// Ends the context and delivers every notification, like a well
    /// behaved implementation. Returns the panic a notification raised.
    fn cancel(&self) -> Option<String> {
        *self.err.lock().unwrap() = Some(Error::Canceled);
        std::panic::catch_unwind(|| self.hub.notify_all())
            .err()
            .map(|payload| payload_text(&*payload))
    }
}

fn maybe_panic(flag: &AtomicBool, what: &str) {
    if flag.load(Ordering::SeqCst) {
        panic!("{MARK}: {what}");
    }
}

impl Context for TouchyCtx {
    fn deadline(&self) -> Option<Instant> {
        maybe_panic(&self.0.panic_deadline, "deadline()");
        None
    }
    fn err(&self) -> Option<Error> {
        maybe_panic(&self.0.panic_err, "err()");
        *self.0.err.lock().unwrap()
    }
    fn lookup(&self, _key: TypeId) -> Option<&(dyn Any + Send + Sync)> {
        maybe_panic(&self.0.panic_lookup, "lookup()");
        None
    }
    fn subscribe(&self, notify: Notify) -> Subscription {
        maybe_panic(&self.0.panic_subscribe, "subscribe()");
        if self.0.hub.is_notified() {
            // Delivered at once by the hub: nothing to take back.
            return self.0.hub.subscribe(notify);
        }
        let inner = self.0.hub.subscribe(notify);
        let touchy = self.0.clone();
        Subscription::new(move || {
            maybe_panic(&touchy.panic_unsubscribe, "the Subscription's cancel");
            inner.cancel()
        })
    }
}

fn touchy() -> (Arc<Touchy>, Ctx) {
    let state = Arc::new(Touchy::default());
    (state.clone(), Ctx::from_context(TouchyCtx(state)))
}

/// Panics in `subscribe()`, `deadline()` and `lookup()` reach the caller
/// that derives or asks; nothing is left registered or half built; once the
/// context behaves again, the same context works normally.
#[test]
fn panics_in_context_methods_reach_the_caller_and_leave_nothing_behind() {
    watchdog("custom_methods", || {
        let (state, custom) = touchy();

        state.panic_subscribe.store(true, Ordering::SeqCst);
        expect_panic("with_cancel over a panicking subscribe()", || {
            drop(goctx::with_cancel(&custom))
        });
        expect_panic("with_timeout over a panicking subscribe()", || {
            drop(goctx::with_timeout(&custom, Duration::from_secs(3600)))
        });
        expect_panic("after_func over a panicking subscribe()", || {
            drop(goctx::after_func(&custom, || {}))
        });
        state.panic_subscribe.store(false, Ordering::SeqCst);
        assert_eq!(state.subscribers(), 0);

        state.panic_deadline.store(true, Ordering::SeqCst);
        // Making a deadline child does not ask the parent's deadline (the
        // child keeps its own); asking the child does.
        let (timed, cancel_timed) = goctx::with_timeout(&custom, Duration::from_secs(3600));
        expect_panic("deadline() through a panicking deadline()", || {
            let _ = timed.deadline();
        });
        state.panic_deadline.store(false, Ordering::SeqCst);
        assert!(timed.deadline().is_some());
        drop((timed, cancel_timed));
        assert_eq!(state.subscribers(), 0);

        let (child, cancel_child) = goctx::with_cancel(&custom);
        assert_eq!(state.subscribers(), 1);
        state.panic_lookup.store(true, Ordering::SeqCst);
        expect_panic("value() through a panicking lookup()", || {
            let _ = child.value::<u8>();
        });
        state.panic_lookup.store(false, Ordering::SeqCst);
        assert_eq!(child.value::<u8>(), None);

        // err() panics while a waiter polls a context that reads it.
        let valued = goctx::with_value(&custom, 1u8);
        state.panic_err.store(true, Ordering::SeqCst);
        expect_panic("polling done() through a panicking err()", || {
            let mut done = std::pin::pin!(valued.done());
            let _ = done
                .as_mut()
                .poll(&mut TaskContext::from_waker(Waker::noop()));
        });
        state.panic_err.store(false, Ordering::SeqCst);

        // Everything still works, including cancellation through the
        // custom context.
        let (waiting, waiting_waker) = test_waker(None);
        let _pending = register(&valued, &waiting_waker);
        assert_eq!(state.subscribers(), 2);
        assert_eq!(state.cancel(), None);
        assert_eq!(child.err(), Some(Error::Canceled));
        assert_eq!(waiting.woken(), 1);
        drop(cancel_child);
        assert_goctx_works();
        assert_no_helper_panics();
    });
}

/// `err()` panics when the custom context notifies a derived context (which
/// reads the parent's error to copy it): the panic reaches the code that
/// delivered the `Notify`. The derived context stays usable: its own
/// cancel works and cancels its subtree.
#[test]
fn a_panicking_err_while_notifying_children() {
    watchdog("custom_err_notify", || {
        let (state, custom) = touchy();
        let (child, cancel_child) = goctx::with_cancel(&custom);
        let (grandchild, _g) = goctx::with_cancel(&child);
        let (other, cancel_other) = goctx::with_cancel(&custom);
        state.panic_err.store(true, Ordering::SeqCst);
        let message = state.cancel();
        assert!(message.is_some_and(|m| m.ends_with("err()")));
        state.panic_err.store(false, Ordering::SeqCst);
        // Every notification was delivered (the custom context caught the
        // panics); the derived contexts could not read the error.
        assert_eq!(state.subscribers(), 0);
        cancel_child.cancel();
        assert_eq!(child.err(), Some(Error::Canceled));
        assert_eq!(grandchild.err(), Some(Error::Canceled));
        cancel_other.cancel();
        assert_eq!(other.err(), Some(Error::Canceled));
        assert_goctx_works();
        assert_no_helper_panics();
    });
}

/// The `Subscription` cancel function panics while a derived context ends
/// by its own cancel. `cancel()` may resume that panic, but the
/// cancellation must still be complete: the whole subtree is done and every
/// waiter is woken (otherwise they would wait forever).
#[test]
fn a_panicking_unsubscribe_does_not_leave_the_subtree_live() {
    watchdog("custom_unsubscribe_cancel", || {
        let (state, custom) = touchy();
        let (ctx, cancel) = goctx::with_cancel(&custom);
        let (grandchild, _g) = goctx::with_cancel(&ctx);
        let (waiting, waiting_waker) = test_waker(None);
        let _pending = register(&ctx, &waiting_waker);
        let (tx, rx) = mpsc::channel();
        let _h = goctx::after_func(&grandchild, move || tx.send(()).unwrap_or(()));
        state.panic_unsubscribe.store(true, Ordering::SeqCst);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cancel.cancel()));
        state.panic_unsubscribe.store(false, Ordering::SeqCst);
        assert_eq!(ctx.err(), Some(Error::Canceled));
        assert_eq!(
            grandchild.err(),
            Some(Error::Canceled),
            "the subtree stayed live"
        );
        assert_eq!(waiting.woken(), 1, "a waiter was never woken");
        assert_eq!(rx.recv_timeout(PATIENCE), Ok(()), "a callback was lost");
        assert_goctx_works();
    });
}

/// The same, when the derived context ends by its deadline on the timer
/// thread: the timer thread survives, and the subtree still ends.
#[test]
fn a_panicking_unsubscribe_on_the_timer_thread() {
    watchdog("custom_unsubscribe_timer", || {
        let (state, custom) = touchy();
        state.panic_unsubscribe.store(true, Ordering::SeqCst);
        let (ctx, _c) = goctx::with_timeout(&custom, Duration::from_millis(20));
        let (grandchild, _g) = goctx::with_cancel(&ctx);
        let got = grandchild.wait_timeout(PATIENCE);
        state.panic_unsubscribe.store(false, Ordering::SeqCst);
        assert_eq!(ctx.wait_timeout(PATIENCE), Some(Error::DeadlineExceeded));
        assert_eq!(
            got,
            Some(Error::DeadlineExceeded),
            "the subtree of an expired context stayed live"
        );
        let (later, _l) = goctx::with_timeout(&background(), Duration::from_millis(3));
        assert_eq!(
            later.wait_timeout(PATIENCE),
            Some(Error::DeadlineExceeded),
            "timer thread stopped"
        );
        assert_goctx_works();
    });
}

/// The `Subscription` cancel function panics while a live derived context
/// is dropped (it unsubscribes on the way out): the drop panics, once (no
/// abort), and the custom context's later notification finds nothing.
#[test]
fn a_panicking_unsubscribe_during_drop() {
    watchdog("custom_unsubscribe_drop", || {
        let (state, custom) = touchy();
        let (ctx, cancel) = goctx::with_cancel(&custom);
        cancel.detach();
        state.panic_unsubscribe.store(true, Ordering::SeqCst);
        let message = expect_panic("dropping the last handle", move || drop(ctx));
        assert!(message.ends_with("the Subscription's cancel"), "{message}");
        state.panic_unsubscribe.store(false, Ordering::SeqCst);
        assert_eq!(state.cancel(), None);
        assert_goctx_works();
    });
}
