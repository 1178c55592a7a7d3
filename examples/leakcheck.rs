//! A small program that uses every public API of goctx once or a few
//! times, for memory checkers: `scripts/valgrind.sh` runs it under
//! valgrind's memcheck and requires "definitely lost: 0 bytes" and
//! "indirectly lost: 0 bytes".
//!
//! It checks its own results as it goes (a wrong result exits non-zero),
//! waits for every callback it started, drops everything it made, and
//! returns. goctx's helper threads (the timer thread, idle callback
//! threads) live until the process exits, by design; valgrind reports their
//! bookkeeping as "still reachable" or, for a thread's stack block, as
//! "possibly lost". Neither is a leak.
//!
//! Run it directly with `cargo run --example leakcheck`.

use std::any::{Any, TypeId};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use goctx::custom::{Context, Notify, Subscription};
use goctx::{Cause, Ctx, Error, ExtendError};

// The test suite's subscriber list, shared rather than copied (it uses only
// `std` and goctx). Not every method is needed here.
#[allow(dead_code)]
#[path = "../integration/tests/common/hub.rs"]
mod hub;
use hub::Hub;

// Likewise the tests' named cause.
#[allow(dead_code, unused_macros)]
#[path = "../integration/tests/common/causes.rs"]
mod causes;
use causes::Why;

#[derive(Debug, PartialEq)]
struct RequestId(String);

/// A user context with its own cancellation and subscriber list.
#[derive(Default)]
struct Switch {
    err: Mutex<Option<Error>>,
    hub: Arc<Hub>,
}

struct SwitchCtx {
    switch: Arc<Switch>,
    values: Ctx,
}

impl Switch {
    fn flip(&self) {
        *self.err.lock().unwrap() = Some(Error::Canceled);
        self.hub.notify_all();
    }
}

impl Context for SwitchCtx {
    fn err(&self) -> Option<Error> {
        *self.switch.err.lock().unwrap()
    }
    fn lookup(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)> {
        Context::lookup(&self.values, key)
    }
    fn subscribe(&self, notify: Notify) -> Subscription {
        self.switch.hub.subscribe(notify)
    }
}

/// A user context that can never end.
struct Forever;

impl Context for Forever {
    fn err(&self) -> Option<Error> {
        None
    }
    fn subscribe(&self, notify: Notify) -> Subscription {
        drop(notify);
        Subscription::never()
    }
}

fn check(ok: bool, what: &str) {
    if !ok {
        eprintln!("leakcheck: FAILED: {what}");
        std::process::exit(2);
    }
}

fn main() {
    let start = Instant::now();
    // Keep the expected panic below out of the output.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let expected = info
            .payload()
            .downcast_ref::<&str>()
            .is_some_and(|s| s.ends_with("(expected)"));
        if !expected {
            previous(info);
        }
    }));
    let (tx, rx) = mpsc::channel::<&'static str>();
    let mut expected_callbacks = 0;

    // Roots, names, values.
    let root = goctx::background();
    check(goctx::todo().to_string() == "context.TODO", "todo name");
    check(Ctx::default() == root, "default is background");
    let ctx = goctx::with_value(&root, RequestId("req-1".into()));
    check(
        ctx.value::<RequestId>() == Some(&RequestId("req-1".into())),
        "value",
    );
    check(format!("{ctx:?}").contains("WithValue"), "debug format");

    // Cancel, causes, clones, detach, RAII.
    let (parent, cancel_parent) = goctx::with_cancel_cause(&ctx);
    let (child, cancel_child) = goctx::with_cancel(&parent);
    let clone = cancel_child.clone();
    clone.detach();
    check(parent.dependents() == 1, "dependents");
    let why = Cause::new(Why("shutting down"));
    cancel_parent.cancel_with_cause(why.clone());
    check(child.err() == Some(Error::Canceled), "child canceled");
    check(
        child.cause().is_some_and(|c| Cause::ptr_eq(&c, &why)),
        "cause",
    );
    check(cancel_child.is_canceled(), "is_canceled");
    drop(cancel_child);
    {
        let (raii, cancel) = goctx::with_cancel(&root);
        drop(cancel);
        check(raii.err() == Some(Error::Canceled), "raii cancel");
        let (detached, cancel) = goctx::with_cancel(&root);
        cancel.detach();
        check(detached.err().is_none(), "detached stays live");
    }

    // Deadlines of every form, a firing one, extension.
    let (timed, cancel_timed) = goctx::with_timeout(&root, Duration::from_secs(3600));
    let later = Instant::now() + Duration::from_secs(7200);
    check(cancel_timed.extend_deadline(later) == Ok(later), "extend");
    check(timed.deadline() == Some(later), "extended deadline");
    cancel_timed.cancel();
    check(
        cancel_timed.extend_deadline(later) == Err(ExtendError::Done(Error::Canceled)),
        "extend after cancel",
    );
    let _ = ExtendError::NoDeadline.to_string();
    let (expired, _c) = goctx::with_deadline_cause(&root, Instant::now(), Why("too late"));
    check(
        expired.err() == Some(Error::DeadlineExceeded),
        "born expired",
    );
    let (fires, _c) = goctx::with_timeout_cause(&root, Duration::from_millis(5), Why("slow"));
    check(fires.wait() == Error::DeadlineExceeded, "deadline fires");
    check(
        fires.cause().is_some_and(|c| c.to_string() == "slow"),
        "deadline cause",
    );
    let (at, _c) = goctx::with_deadline(&root, Instant::now() + Duration::from_millis(3));
    check(
        at.wait_timeout(Duration::from_secs(10)) == Some(Error::DeadlineExceeded),
        "with_deadline fires",
    );
    let (never, _c) = goctx::with_timeout(&root, Duration::MAX);
    check(never.deadline().is_none(), "Duration::MAX");
    check(never.to_string().ends_with("WithCancel"), "name");
    let io: std::io::Error = Error::DeadlineExceeded.into();
    check(
        io.kind() == std::io::ErrorKind::TimedOut && Error::DeadlineExceeded.is_timeout(),
        "io error",
    );
    check(Error::DeadlineExceeded.is_temporary(), "temporary");

    // without_cancel.
    let detached = goctx::without_cancel(&child);
    check(
        detached.err().is_none() && detached.value::<RequestId>().is_some(),
        "without_cancel",
    );

    // after_func: runs, stopped, on a done context, on a never-ending one,
    // one that panics, one that cancels another context.
    let (cb_ctx, cb_cancel) = goctx::with_cancel(&root);
    let (other, other_cancel) = goctx::with_cancel(&root);
    for _ in 0..3 {
        let tx = tx.clone();
        let _ = goctx::after_func(&cb_ctx, move || tx.send("ran").unwrap_or(()));
        expected_callbacks += 1;
    }
    let stopped = goctx::after_func(&cb_ctx, || unreachable!());
    check(stopped.stop() && !stopped.stop(), "stop");
    let _ = goctx::after_func(&cb_ctx, move || other_cancel.cancel());
    let _ = goctx::after_func(&cb_ctx, || {
        panic!("leakcheck: a panicking callback (expected)")
    });
    let tx2 = tx.clone();
    let _ = goctx::after_func(&child, move || tx2.send("already done").unwrap_or(()));
    expected_callbacks += 1;
    let forever = goctx::after_func(&detached, || unreachable!());
    check(
        format!("{forever:?}").contains("pending"),
        "after_func debug",
    );
    check(forever.stop(), "never-ending context: stop is true");
    cb_cancel.cancel();
    check(
        other.wait_timeout(Duration::from_secs(10)) == Some(Error::Canceled),
        "callback canceled",
    );

    // done(), run(), wait, across threads and an executor.
    let (async_ctx, async_cancel) = goctx::with_cancel(&root);
    let waiter = thread::spawn({
        let async_ctx = async_ctx.clone();
        move || futures::executor::block_on(async_ctx.done())
    });
    let blocked = thread::spawn({
        let async_ctx = async_ctx.clone();
        move || async_ctx.wait()
    });
    futures::executor::block_on(async {
        check(async_ctx.run(async { 7 }).await == Ok(7), "run ok");
    });
    async_cancel.cancel_with_cause(Why("done"));
    check(waiter.join().ok() == Some(Error::Canceled), "done() future");
    check(blocked.join().ok() == Some(Error::Canceled), "wait()");
    futures::executor::block_on(async {
        check(
            async_ctx.run(async { 7 }).await == Err(Error::Canceled),
            "run canceled",
        );
    });

    // User contexts: a cancelable one with children and waiters, a
    // never-ending one, a delegating use of Ctx as a Context.
    let switch = Arc::new(Switch::default());
    let custom = Ctx::from_context(SwitchCtx {
        switch: switch.clone(),
        values: ctx.clone(),
    });
    let (under, _u) = goctx::with_cancel(&custom);
    let (dropped, dropped_cancel) = goctx::with_cancel(&custom);
    drop((dropped, dropped_cancel));
    check(under.value::<RequestId>().is_some(), "custom lookup");
    let tx3 = tx.clone();
    let _ = goctx::after_func(&under, move || tx3.send("custom").unwrap_or(()));
    expected_callbacks += 1;
    let custom_waiter = thread::spawn({
        let under = under.clone();
        move || under.wait()
    });
    switch.flip();
    check(
        custom_waiter.join().ok() == Some(Error::Canceled),
        "custom propagation",
    );
    let forever_ctx = Ctx::from_context(Forever);
    let (f_child, _f) = goctx::with_cancel(&forever_ctx);
    check(
        f_child.wait_timeout(Duration::from_millis(1)).is_none(),
        "never-ending custom",
    );

    // Many threads racing on a shared tree, and a deep chain.
    let (shared, cancel_shared) = goctx::with_cancel(&root);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let shared = shared.clone();
            thread::spawn(move || {
                for i in 0..2_000 {
                    let (c, cancel) = goctx::with_cancel(&shared);
                    if i % 3 == 0 {
                        let _ = goctx::after_func(&c, || {});
                    }
                    if i % 2 == 0 {
                        cancel.cancel();
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        check(worker.join().is_ok(), "worker");
    }
    check(shared.dependents() == 0, "shared registry empty");
    cancel_shared.cancel();
    let mut tip = root.clone();
    let mut cancels = Vec::new();
    for _ in 0..10_000 {
        let (next, cancel) = goctx::with_cancel(&tip);
        cancels.push(cancel);
        tip = next;
    }
    cancels.remove(0).cancel();
    check(tip.err() == Some(Error::Canceled), "deep chain");
    drop(cancels);
    drop(tip);

    for _ in 0..expected_callbacks {
        check(
            rx.recv_timeout(Duration::from_secs(10)).is_ok(),
            "a callback never ran",
        );
    }
    drop(tx);
    println!(
        "leakcheck: every API used, all checks passed in {:?}",
        start.elapsed()
    );
}
