//! Loom models of every race in the cancellation tree that we know of.
//!
//! Run them in release mode with a preemption bound:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=4 \
//!     cargo test --release --lib loom_models
//! ```
//!
//! They live inside the crate, as unit tests under `cfg(all(test, loom))`
//! (as tokio-util's do), so that the hooks they need stay private and loom
//! is a dev-dependency only.
//!
//! Without `LOOM_MAX_PREEMPTIONS` the models use a bound of 2 (see
//! `model`). Measured on 2 cores, in release mode, the test run itself
//! (not the build) of the 28 models takes about 1.6 s with a bound of 2
//! and 24 s with 4 (the bound `.ci/run` uses); it grows steeply beyond,
//! and without a bound the model with four threads
//! (`done_of_descendant_vs_parent_cancel`) alone runs for more than ten
//! minutes.
//!
//! Under `--cfg loom` the crate's mutexes and atomics are loom's, there is
//! no timer thread (a model thread fires deadlines with
//! `timer::fire_deadlines`) and every `after_func` callback runs on a loom
//! thread of its own (joined with `sync::join_threads`); `src/sync.rs` is
//! where all of that is switched. Loom also checks, at the end of every
//! execution, that no loom `Arc` leaked: the wakers of `block_on` and the
//! counters captured by callbacks are loom `Arc`s, so a waker or callback
//! left behind in a registry fails the model.
//!
//! Besides its own claim, a model checks the bookkeeping at the end:
//! `dependents()` of the contexts that stay, and the number of armed
//! deadlines.
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use crate::sync::join_threads;
use crate::timer as timers;
use crate::{Ctx, Error, ExtendError};
use loom::future::block_on;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

/// Runs `f` under loom, with a preemption bound of 2 unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise.
fn model<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    model_bound(2, f);
}

/// `model` with a preemption bound of at least `bound` (for races that
/// need more preemptions to show), or `LOOM_MAX_PREEMPTIONS` if larger.
fn model_bound<F>(bound: usize, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(builder.preemption_bound.map_or(bound, |b| b.max(bound)));
    builder.check(f);
}

/// A cause with a name.
#[derive(Debug)]
struct Why(&'static str);

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Why {}

/// The text of `ctx`'s cause.
fn why(ctx: &Ctx) -> Option<String> {
    ctx.cause().map(|cause| cause.to_string())
}

/// Whether both contexts report the very same cause (one allocation):
/// what a cancellation hands down its subtree.
fn same_cause(a: &Ctx, b: &Ctx) -> bool {
    match (a.cause(), b.cause()) {
        (Some(a), Some(b)) => crate::Cause::ptr_eq(&a, &b),
        _ => false,
    }
}

/// A deadline far enough away that it is never "now": only the model fires
/// it, with `timer::fire_deadlines`.
fn far(base: Instant, hours: u64) -> Instant {
    base + Duration::from_secs(3600 * hours)
}

/// An `after_func` callback that counts its runs.
fn counter() -> (Arc<AtomicUsize>, impl FnOnce() + Send + 'static) {
    let runs = Arc::new(AtomicUsize::new(0));
    let f = {
        let runs = runs.clone();
        move || {
            runs.fetch_add(1, Ordering::SeqCst);
        }
    };
    (runs, f)
}

fn join<T>(handle: thread::JoinHandle<T>) -> T {
    match handle.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

// ---------------------------------------------------------------------------
// 1. Cancel vs. child creation under the same parent.
// ---------------------------------------------------------------------------

/// A child (and its own child) created while the parent is being canceled
/// is either registered in time, and canceled by the parent, or sees the
/// parent done and is born done: never missed. Either way it reports the
/// parent's error and the very same cause, and nothing stays registered.
#[test]
fn cancel_vs_child_creation() {
    model(|| {
        let (parent, cancel) = crate::with_cancel_cause(&crate::background());
        let canceler = thread::spawn(move || cancel.cancel_with_cause(Why("stop")));

        let (child, child_cancel) = crate::with_cancel(&parent);
        let (grandchild, _grandchild_cancel) = crate::with_cancel(&child);

        join(canceler);
        assert_eq!(parent.err(), Some(Error::Canceled));
        assert_eq!(why(&parent).as_deref(), Some("stop"));
        for ctx in [&child, &grandchild] {
            assert_eq!(ctx.err(), Some(Error::Canceled));
            assert!(same_cause(ctx, &parent));
        }
        assert!(child_cancel.is_canceled());
        assert_eq!(parent.dependents(), 0);
        assert_eq!(child.dependents(), 0);
    });
}

/// The same with a cancel without a cause (the lock-free path while the
/// parent has nothing registered, racing the child's registration) and a
/// deadline child derived through a value: its deadline is armed only if
/// it was registered live, and the parent's cancel takes it out of the
/// timer again. No timer entry survives.
#[test]
fn cancel_vs_deadline_child_creation() {
    model(|| {
        let at = far(Instant::now(), 1);
        let (parent, cancel) = crate::with_cancel(&crate::background());
        let canceler = thread::spawn(move || cancel.cancel());

        let valued = crate::with_value(&parent, 7_u32);
        let (child, _child_cancel) = crate::with_deadline(&valued, at);

        join(canceler);
        assert_eq!(child.err(), Some(Error::Canceled));
        assert!(same_cause(&child, &parent));
        assert_eq!(child.deadline(), Some(at));
        assert_eq!(parent.dependents(), 0);
        assert_eq!(timers::armed(), 0);
    });
}

// ---------------------------------------------------------------------------
// 2. Cancel vs. child drop (deregistration).
// ---------------------------------------------------------------------------

/// The child's last handles go away (its `CancelFunc` first: RAII cancel,
/// which unlinks it from the parent) while the parent is canceled.
#[test]
fn cancel_vs_child_drop() {
    model(|| {
        let (parent, cancel) = crate::with_cancel(&crate::background());
        let (child, child_cancel) = crate::with_cancel(&parent);
        let canceler = thread::spawn(move || cancel.cancel());

        drop(child_cancel);
        drop(child);

        join(canceler);
        assert_eq!(parent.err(), Some(Error::Canceled));
        assert_eq!(parent.dependents(), 0);
    });
}

/// A detached child whose last `Ctx` is dropped (the node's `release`
/// path: unlink without canceling) while the parent is canceled.
#[test]
fn cancel_vs_detached_child_drop() {
    model(|| {
        let (parent, cancel) = crate::with_cancel(&crate::background());
        let (child, child_cancel) = crate::with_cancel(&parent);
        child_cancel.detach();
        let canceler = thread::spawn(move || cancel.cancel());

        drop(child);

        join(canceler);
        assert_eq!(parent.err(), Some(Error::Canceled));
        assert_eq!(parent.dependents(), 0);
    });
}

/// Two siblings leave a parent that stays live, concurrently and by both
/// paths (one canceled by its own function, one detached and dropped):
/// the shared registry ends empty, with the live parent still working.
#[test]
fn sibling_deregistrations_leave_parent_empty() {
    model(|| {
        let (parent, cancel) = crate::with_cancel(&crate::background());
        let (first, first_cancel) = crate::with_cancel(&parent);
        let (second, second_cancel) = crate::with_cancel(&parent);
        assert_eq!(parent.dependents(), 2);

        let other = thread::spawn(move || {
            first_cancel.cancel();
            assert_eq!(first.err(), Some(Error::Canceled));
        });
        second_cancel.detach();
        drop(second);

        join(other);
        assert_eq!(parent.err(), None);
        assert_eq!(parent.dependents(), 0);
        // The parent still registers and cancels children.
        let (third, _third_cancel) = crate::with_cancel(&parent);
        assert_eq!(parent.dependents(), 1);
        cancel.cancel();
        assert_eq!(third.err(), Some(Error::Canceled));
    });
}

/// A child whose own handles are all gone, but which its grandchild keeps
/// alive, still passes the parent's cancel down: a task waiting on the
/// grandchild wakes, with the parent's cause (tokio-util's ignored
/// `cancel_grandchild_token_through_parent_if_child_was_dropped`, raced
/// against the wait).
#[test]
fn cancel_reaches_grandchild_through_dropped_child() {
    model(|| {
        let (parent, cancel) = crate::with_cancel_cause(&crate::background());
        let (child, child_cancel) = crate::with_cancel(&parent);
        let (grandchild, _grandchild_cancel) = crate::with_cancel(&child);
        child_cancel.detach();
        drop(child);
        let canceler = thread::spawn(move || cancel.cancel_with_cause(Why("stop")));

        assert_eq!(block_on(grandchild.done()), Error::Canceled);

        join(canceler);
        assert!(same_cause(&grandchild, &parent));
        assert_eq!(parent.dependents(), 0);
    });
}

/// A detached chain (child and grandchild, with a callback pending on the
/// grandchild) loses its last handle while the parent is canceled. The
/// drop is iterative: the grandchild leaves the child, its callback moves
/// to the child, then the child leaves the parent and the callback moves
/// to the parent, all racing the cancel walking down. The callback runs
/// exactly once and nothing stays registered.
#[test]
fn cancel_vs_chain_drop() {
    model(|| {
        let (parent, cancel) = crate::with_cancel(&crate::background());
        let (child, child_cancel) = crate::with_cancel(&parent);
        let (grandchild, grandchild_cancel) = crate::with_cancel(&child);
        child_cancel.detach();
        grandchild_cancel.detach();
        let (runs, f) = counter();
        let handle = crate::after_func(&grandchild, f);
        drop(child);
        let canceler = thread::spawn(move || cancel.cancel());

        drop(grandchild);

        join(canceler);
        join_threads();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(!handle.stop());
        assert_eq!(parent.dependents(), 0);
    });
}

// ---------------------------------------------------------------------------
// 3. Cancel vs. `done()` poll and waker registration (no lost wake-up).
// ---------------------------------------------------------------------------

/// `block_on(ctx.done())` against a cancel on another thread: loom reports
/// a deadlock if the wake-up is lost between the check and the waker
/// registration.
#[test]
fn done_vs_cancel() {
    model(|| {
        let (ctx, cancel) = crate::with_cancel(&crate::background());
        let canceler = thread::spawn(move || cancel.cancel());

        assert_eq!(block_on(ctx.done()), Error::Canceled);

        join(canceler);
        assert_eq!(ctx.dependents(), 0);
    });
}

/// Two waiters, on a grandchild (through a value) and on the parent itself,
/// while the parent is canceled: both wake.
#[test]
fn done_of_descendant_vs_parent_cancel() {
    model(|| {
        let (parent, cancel) = crate::with_cancel(&crate::background());
        let valued = crate::with_value(&parent, "request");
        let (grandchild, _grandchild_cancel) = crate::with_cancel(&valued);

        let waiter = {
            let parent = parent.clone();
            thread::spawn(move || block_on(parent.done()))
        };
        let canceler = thread::spawn(move || cancel.cancel());

        assert_eq!(block_on(grandchild.done()), Error::Canceled);

        assert_eq!(join(waiter), Error::Canceled);
        join(canceler);
        assert_eq!(parent.dependents(), 0);
        assert_eq!(grandchild.dependents(), 0);
    });
}

/// A pending `done()` future is dropped (deregistering its waker) while
/// the context is canceled: no stale slot is touched and no waker leaks.
#[test]
fn done_drop_vs_cancel() {
    model(|| {
        let (parent, _parent_cancel) = crate::with_cancel(&crate::background());
        let (ctx, cancel) = crate::with_cancel(&parent);
        let canceler = thread::spawn(move || cancel.cancel());

        {
            let mut done = pin!(ctx.done());
            let mut cx = TaskContext::from_waker(Waker::noop());
            match done.as_mut().poll(&mut cx) {
                Poll::Ready(err) => assert_eq!(err, Error::Canceled),
                Poll::Pending => {}
            }
        }

        join(canceler);
        assert_eq!(ctx.err(), Some(Error::Canceled));
        assert_eq!(ctx.dependents(), 0);
        assert_eq!(parent.err(), None);
        assert_eq!(parent.dependents(), 0);
    });
}

// ---------------------------------------------------------------------------
// 4. Two concurrent cancels with different causes.
// ---------------------------------------------------------------------------

/// Two clones of one `CancelFunc` cancel with different causes: exactly
/// one cause wins, and the node and its whole subtree report that one.
/// A reader that sees the context done already sees the final cause.
#[test]
fn concurrent_cancels_one_cause_wins() {
    model(|| {
        let (parent, cancel) = crate::with_cancel_cause(&crate::background());
        let (child, _child_cancel) = crate::with_cancel(&parent);
        let (grandchild, _grandchild_cancel) = crate::with_cancel(&child);

        let cancel_a = cancel.clone();
        let a = thread::spawn(move || cancel_a.cancel_with_cause(Why("a")));
        let b = thread::spawn(move || cancel.cancel_with_cause(Why("b")));

        // Seen early, the cause is already the final one.
        let early = grandchild.err().map(|err| (err, grandchild.cause()));

        join(a);
        join(b);
        let winner = why(&parent).expect("canceled");
        assert!(winner == "a" || winner == "b", "{winner}");
        for ctx in [&parent, &child, &grandchild] {
            assert_eq!(ctx.err(), Some(Error::Canceled));
        }
        assert!(same_cause(&child, &parent));
        assert!(same_cause(&grandchild, &parent));
        if let Some((err, cause)) = early {
            assert_eq!(err, Error::Canceled);
            let cause = cause.expect("a done context has a cause");
            assert!(crate::Cause::ptr_eq(
                &cause,
                &parent.cause().expect("canceled")
            ));
        }
        assert_eq!(parent.dependents(), 0);
    });
}

/// A parent and its child are canceled at once with different causes:
/// the parent keeps its own; the child and the grandchild agree on one,
/// which is either the parent's or the child's own.
#[test]
fn concurrent_cancels_of_parent_and_child() {
    model(|| {
        let (parent, cancel) = crate::with_cancel_cause(&crate::background());
        let (child, child_cancel) = crate::with_cancel_cause(&parent);
        let (grandchild, _grandchild_cancel) = crate::with_cancel(&child);

        let a = thread::spawn(move || cancel.cancel_with_cause(Why("parent")));
        child_cancel.cancel_with_cause(Why("child"));

        join(a);
        assert_eq!(why(&parent).as_deref(), Some("parent"));
        let winner = why(&child).expect("canceled");
        assert!(winner == "parent" || winner == "child", "{winner}");
        assert!(same_cause(&grandchild, &child));
        assert_eq!(grandchild.err(), Some(Error::Canceled));
        assert_eq!(parent.dependents(), 0);
        assert_eq!(child.dependents(), 0);
    });
}

/// A `cancel()` that loses the race returns only once the whole subtree is
/// done, also deep below nodes the winner's walk ends by inheritance
/// (their marks defer to the walk's origin, `wait_propagated`): checked
/// before the winner's thread is joined, then again by a second loser
/// further down, which finds the marks on its way up already cleared or
/// clears them.
#[test]
fn losing_cancel_returns_after_the_subtree_is_done() {
    model(|| {
        let (root, cancel) = crate::with_cancel(&crate::background());
        let (child, child_cancel) = crate::with_cancel(&root);
        let (grandchild, grandchild_cancel) = crate::with_cancel(&child);
        let (leaf, _leaf_cancel) = crate::with_cancel(&grandchild);

        let a = thread::spawn(move || cancel.cancel());
        child_cancel.cancel();
        for ctx in [&child, &grandchild, &leaf] {
            assert_eq!(ctx.err(), Some(Error::Canceled));
        }
        grandchild_cancel.cancel();
        assert_eq!(leaf.err(), Some(Error::Canceled));
        join(a);
        assert_eq!(root.err(), Some(Error::Canceled));
    });
}

/// On a leaf (nothing registered, no timer, no cause: the state is exactly
/// "live"), a cancel without a cause ends the node with one lock-free
/// compare-and-swap, while a cancel with a cause takes the locked path.
/// Exactly one of them wins, the cause is the winner's, and a reader who
/// sees the node done already sees that cause.
#[test]
fn leaf_fast_cancel_vs_cancel_with_cause() {
    model(|| {
        let (parent, _parent_cancel) = crate::with_cancel(&crate::background());
        let (leaf, cancel) = crate::with_cancel_cause(&parent);
        let with_cause = cancel.clone();
        let a = thread::spawn(move || cancel.cancel());
        let b = thread::spawn(move || with_cause.cancel_with_cause(Why("b")));

        let early = leaf.err().map(|err| (err, leaf.cause()));

        join(a);
        join(b);
        assert_eq!(leaf.err(), Some(Error::Canceled));
        let winner = why(&leaf).expect("canceled");
        assert!(winner == "context canceled" || winner == "b", "{winner}");
        if let Some((err, cause)) = early {
            assert_eq!(err, Error::Canceled);
            let cause = cause.expect("a done context has a cause");
            assert!(crate::Cause::ptr_eq(
                &cause,
                &leaf.cause().expect("canceled")
            ));
        }
        assert_eq!(parent.err(), None);
        assert_eq!(parent.dependents(), 0);
    });
}

// ---------------------------------------------------------------------------
// 5. `after_func` `stop()` vs. cancel.
// ---------------------------------------------------------------------------

/// Exactly one of "f runs" and "stop returns true".
#[test]
fn after_func_stop_vs_cancel() {
    model(|| {
        let (ctx, cancel) = crate::with_cancel(&crate::background());
        let (runs, f) = counter();
        let handle = crate::after_func(&ctx, f);
        let canceler = thread::spawn(move || cancel.cancel());

        let stopped = handle.stop();

        join(canceler);
        let callbacks = join_threads();
        let ran = runs.load(Ordering::SeqCst);
        assert_eq!(
            ran + usize::from(stopped),
            1,
            "ran {ran}, stopped {stopped}"
        );
        assert_eq!(callbacks, ran);
        assert!(!handle.stop());
        assert_eq!(ctx.dependents(), 0);
    });
}

/// The registration itself races the cancel (already done: started at
/// once; live: registered and started by the cancel), and `stop` comes
/// from a third thread: still exactly one of the two.
#[test]
fn after_func_registration_and_stop_vs_parent_cancel() {
    model(|| {
        let (parent, cancel) = crate::with_cancel(&crate::background());
        let (child, _child_cancel) = crate::with_cancel(&parent);
        let canceler = thread::spawn(move || cancel.cancel());

        let (runs, f) = counter();
        let handle = std::sync::Arc::new(crate::after_func(&child, f));
        let stopper = {
            let handle = handle.clone();
            thread::spawn(move || handle.stop())
        };

        join(canceler);
        let stopped = join(stopper);
        join_threads();
        let ran = runs.load(Ordering::SeqCst);
        assert_eq!(
            ran + usize::from(stopped),
            1,
            "ran {ran}, stopped {stopped}"
        );
        assert_eq!(parent.dependents(), 0);
        assert_eq!(child.dependents(), 0);
    });
}

/// The last outside handle of a context with a pending callback is dropped
/// (the callback keeps the context) while the parent is canceled: the
/// callback runs exactly once, and nothing stays registered.
#[test]
fn after_func_keeps_abandoned_context_vs_parent_cancel() {
    model(|| {
        let (parent, cancel) = crate::with_cancel(&crate::background());
        let (child, child_cancel) = crate::with_cancel(&parent);
        child_cancel.detach();
        let (runs, f) = counter();
        let handle = crate::after_func(&child, f);
        let canceler = thread::spawn(move || cancel.cancel());

        drop(child);

        join(canceler);
        join_threads();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(!handle.stop());
        assert_eq!(parent.dependents(), 0);
    });
}

// ---------------------------------------------------------------------------
// 6. Deadline firing vs. explicit cancel.
// ---------------------------------------------------------------------------

/// The timer fires while the context is canceled by hand: the error is one
/// of the two, the cause goes with it (the deadline's cause with
/// `DeadlineExceeded`, the explicit one with `Canceled`), the child agrees,
/// and no timer entry is left.
#[test]
fn deadline_vs_cancel() {
    model(|| {
        let at = far(Instant::now(), 1);
        let (ctx, cancel) = crate::with_deadline_cause(&crate::background(), at, Why("slow"));
        let (child, _child_cancel) = crate::with_cancel(&ctx);
        assert_eq!(timers::armed(), 1);
        let timer = thread::spawn(move || timers::fire_deadlines(at));

        cancel.cancel_with_cause(Why("manual"));

        join(timer);
        match ctx.err() {
            Some(Error::Canceled) => assert_eq!(why(&ctx).as_deref(), Some("manual")),
            Some(Error::DeadlineExceeded) => assert_eq!(why(&ctx).as_deref(), Some("slow")),
            None => panic!("neither the deadline nor the cancel ended the context"),
        }
        assert_eq!(child.err(), ctx.err());
        assert!(same_cause(&child, &ctx));
        assert_eq!(ctx.dependents(), 0);
        assert_eq!(timers::armed(), 0);
    });
}

/// The parent's deadline fires while its child (a leaf: its own cancel
/// takes the lock-free path) is canceled by hand. The child ends with one
/// of the two errors and never changes it afterwards, even for a reader
/// who looked in the middle; its cause goes with its error.
#[test]
fn parent_deadline_vs_child_cancel() {
    model(|| {
        let at = far(Instant::now(), 1);
        let (parent, _cancel) = crate::with_deadline_cause(&crate::background(), at, Why("slow"));
        let (child, child_cancel) = crate::with_cancel(&parent);
        let timer = thread::spawn(move || timers::fire_deadlines(at));
        let canceler = thread::spawn(move || child_cancel.cancel());

        let early = child.err();

        join(timer);
        join(canceler);
        let err = child.err();
        if early.is_some() {
            assert_eq!(err, early, "the error changed after it was seen");
        }
        match err {
            Some(Error::Canceled) => assert_eq!(why(&child).as_deref(), Some("context canceled")),
            Some(Error::DeadlineExceeded) => {
                assert_eq!(why(&child).as_deref(), Some("slow"));
                assert!(same_cause(&child, &parent));
            }
            None => panic!("the child is still live"),
        }
        assert_eq!(parent.err(), Some(Error::DeadlineExceeded));
        assert_eq!(parent.dependents(), 0);
        assert_eq!(timers::armed(), 0);
    });
}

/// A waiter on a deadline context wakes when the timer fires.
#[test]
fn done_vs_deadline() {
    model(|| {
        let at = far(Instant::now(), 1);
        let (ctx, _cancel) = crate::with_deadline(&crate::background(), at);
        let timer = thread::spawn(move || timers::fire_deadlines(at));

        assert_eq!(block_on(ctx.done()), Error::DeadlineExceeded);

        join(timer);
        assert_eq!(ctx.dependents(), 0);
        assert_eq!(timers::armed(), 0);
    });
}

/// The timer fires (its clock past the old deadline, before the new one)
/// while the deadline is extended: either the extension is refused because
/// the deadline fired, or it holds, and then the context stays live with
/// exactly the new deadline armed, even if the timer had already taken the
/// old entry out.
#[test]
fn deadline_vs_extend() {
    model(|| {
        let base = Instant::now();
        let (at, now, later) = (far(base, 1), far(base, 2), far(base, 3));
        let (ctx, cancel) = crate::with_deadline(&crate::background(), at);
        let timer = thread::spawn(move || timers::fire_deadlines(now));

        let extended = cancel.extend_deadline(later);

        join(timer);
        match extended {
            Ok(deadline) => {
                assert_eq!(deadline, later);
                assert_eq!(ctx.err(), None);
                assert_eq!(ctx.deadline(), Some(later));
                assert_eq!(timers::armed(), 1);
                timers::fire_deadlines(later);
                assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
            }
            Err(ExtendError::Done(Error::DeadlineExceeded)) => {
                assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
                assert_eq!(ctx.deadline(), Some(at));
            }
            Err(other) => panic!("unexpected refusal: {other}"),
        }
        assert_eq!(timers::armed(), 0);
    });
}

/// The deadline is extended while the context is canceled by hand: the
/// extension either comes first (and the cancel then disarms the moved
/// entry) or is refused, and no entry is left armed for a done context.
#[test]
fn extend_vs_cancel() {
    model(|| {
        let base = Instant::now();
        let (ctx, cancel) = crate::with_deadline(&crate::background(), far(base, 1));
        let canceler = {
            let cancel = cancel.clone();
            thread::spawn(move || cancel.cancel())
        };

        let extended = cancel.extend_deadline(far(base, 2));

        join(canceler);
        match extended {
            Ok(deadline) => assert_eq!(deadline, far(base, 2)),
            Err(refused) => assert_eq!(refused, ExtendError::Done(Error::Canceled)),
        }
        assert_eq!(ctx.err(), Some(Error::Canceled));
        assert_eq!(timers::armed(), 0);
    });
}

/// The timer fires while the last handles of a detached deadline context
/// are dropped: the entry is removed once, whoever gets there first.
#[test]
fn deadline_vs_drop() {
    model(|| {
        let at = far(Instant::now(), 1);
        let (parent, _parent_cancel) = crate::with_cancel(&crate::background());
        let (ctx, cancel) = crate::with_deadline(&parent, at);
        cancel.detach();
        let timer = thread::spawn(move || timers::fire_deadlines(at));

        drop(ctx);

        join(timer);
        assert_eq!(timers::armed(), 0);
        assert_eq!(parent.err(), None);
        assert_eq!(parent.dependents(), 0);
    });
}

// ---------------------------------------------------------------------------
// 7. RAII: drop of the last `CancelFunc` clone vs. cancel from another.
// ---------------------------------------------------------------------------

/// One clone is dropped while another cancels with a cause and is then
/// dropped: whichever drop is last, its cancel comes second and changes
/// nothing, so the explicit cause always stands.
#[test]
fn last_drop_vs_cancel_from_clone() {
    model(|| {
        let (parent, _parent_cancel) = crate::with_cancel(&crate::background());
        let (ctx, cancel) = crate::with_cancel_cause(&parent);
        let (child, _child_cancel) = crate::with_cancel(&ctx);
        let clone = cancel.clone();
        let dropper = thread::spawn(move || drop(clone));

        cancel.cancel_with_cause(Why("explicit"));
        drop(cancel);

        join(dropper);
        assert_eq!(ctx.err(), Some(Error::Canceled));
        assert_eq!(why(&ctx).as_deref(), Some("explicit"));
        assert!(same_cause(&child, &ctx));
        assert_eq!(parent.dependents(), 0);
        assert_eq!(ctx.dependents(), 0);
    });
}

/// Two clones are dropped at once: exactly one drop is the last, and it
/// cancels exactly once (the callback runs once); the context stays live
/// until then.
#[test]
fn concurrent_last_drops_cancel_once() {
    model(|| {
        let (parent, _parent_cancel) = crate::with_cancel(&crate::background());
        let (ctx, cancel) = crate::with_cancel(&parent);
        let (runs, f) = counter();
        let _handle = crate::after_func(&ctx, f);
        let clone = cancel.clone();
        let dropper = thread::spawn(move || drop(clone));

        drop(cancel);

        join(dropper);
        join_threads();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(ctx.err(), Some(Error::Canceled));
        // The last drop names itself as the cause.
        assert_eq!(
            why(&ctx).as_deref(),
            Some("context canceled: the last CancelFunc was dropped")
        );
        assert_eq!(parent.dependents(), 0);
    });
}

/// A clone is made from one handle while another is dropped: the context
/// stays live as long as any clone does, and the last drop cancels it.
#[test]
fn clone_vs_drop_keeps_context_live() {
    model(|| {
        let (ctx, cancel) = crate::with_cancel(&crate::background());
        let clone = cancel.clone();
        let cloner = thread::spawn(move || {
            let again = clone.clone();
            drop(clone);
            again
        });

        drop(cancel);

        let again = join(cloner);
        assert_eq!(ctx.err(), None);
        drop(again);
        assert_eq!(ctx.err(), Some(Error::Canceled));
    });
}

// ---------------------------------------------------------------------------
// Merge (`crate::merge`): two parents.
// ---------------------------------------------------------------------------

/// A merged context created while its other parent is being canceled is
/// either registered in time and canceled by it, or sees it done and is
/// born done: never missed, always with the other's cause, and it leaves
/// both its parents' registries.
#[test]
fn merge_vs_other_cancel() {
    model(|| {
        let (parent, _keep) = crate::with_cancel(&crate::background());
        let (other, cancel) = crate::with_cancel_cause(&crate::background());
        let canceler = thread::spawn(move || cancel.cancel_with_cause(Why("shutdown")));

        let (merged, _merged_cancel) = crate::merge(&parent, &other);

        join(canceler);
        assert_eq!(merged.err(), Some(Error::Canceled));
        assert!(same_cause(&merged, &other));
        assert_eq!(parent.err(), None);
        assert_eq!(parent.dependents(), 0);
        assert_eq!(other.dependents(), 0);
    });
}

/// Both parents canceled at once: exactly one cause wins, the merged
/// context and its child agree on it, and nothing stays registered in the
/// long-lived contexts above either parent.
#[test]
fn merge_parent_vs_other_cancel() {
    model(|| {
        let (root_a, _keep_a) = crate::with_cancel(&crate::background());
        let (root_b, _keep_b) = crate::with_cancel(&crate::background());
        let (parent, cancel_parent) = crate::with_cancel_cause(&root_a);
        let (other, cancel_other) = crate::with_cancel_cause(&root_b);
        let (merged, _merged_cancel) = crate::merge(&parent, &other);
        let (child, _child_cancel) = crate::with_cancel(&merged);

        let a = thread::spawn(move || cancel_parent.cancel_with_cause(Why("a")));
        cancel_other.cancel_with_cause(Why("b"));
        join(a);

        let winner = why(&merged).expect("canceled");
        assert!(winner == "a" || winner == "b", "{winner}");
        assert_eq!(child.err(), Some(Error::Canceled));
        assert_eq!(why(&child), Some(winner));
        drop((parent, other));
        assert_eq!(root_a.dependents(), 0);
        assert_eq!(root_b.dependents(), 0);
    });
}

/// The merged context's own cancel races its parent's under a live other:
/// the registration with the other is taken back either way, while the
/// merged context is still held.
#[test]
fn merge_own_cancel_vs_parent_cancel_under_live_other() {
    model(|| {
        let (other, _keep) = crate::with_cancel(&crate::background());
        let (parent, cancel_parent) = crate::with_cancel(&crate::background());
        let (merged, cancel) = crate::merge(&parent, &other);

        let a = thread::spawn(move || cancel_parent.cancel());
        cancel.cancel();
        join(a);

        assert_eq!(merged.err(), Some(Error::Canceled));
        assert_eq!(other.dependents(), 0);
        assert_eq!(parent.dependents(), 0);
    });
}

// ---------------------------------------------------------------------------
// 8. A sharded parent (`tree/shards.rs`): children in per-thread shards.
// ---------------------------------------------------------------------------

/// A child made on another thread while its sharded parent is canceled is
/// registered in its shard in time, and canceled by the parent's end, or
/// sees the parent done under the shard's lock and is born done: never
/// missed, and nothing stays in the shards.
#[test]
fn sharded_parent_cancel_vs_child_creation() {
    model(|| {
        let (parent, cancel) = crate::with_cancel_cause(&crate::background());
        assert!(crate::tree::shard_now(&parent.0).is_some());
        let deriving = parent.clone();
        let child = thread::spawn(move || crate::with_cancel(&deriving));

        cancel.cancel_with_cause(Why("stop"));
        let (child, child_cancel) = join(child);

        assert_eq!(child.err(), Some(Error::Canceled));
        assert!(same_cause(&child, &parent));
        assert!(child_cancel.is_canceled());
        assert_eq!(parent.dependents(), 0);
    });
}

/// A child of a sharded parent canceled (leaving its shard) or dropped
/// while the parent is canceled: whoever comes first, the child ends once
/// and the shards are left empty.
#[test]
fn sharded_child_cancel_and_drop_vs_parent_cancel() {
    model(|| {
        let (parent, cancel) = crate::with_cancel(&crate::background());
        assert!(crate::tree::shard_now(&parent.0).is_some());
        let (kept, kept_cancel) = crate::with_cancel(&parent);
        let dropped = crate::with_cancel(&parent);
        assert_eq!(parent.dependents(), 2);

        let own = thread::spawn(move || {
            kept_cancel.cancel();
            drop(dropped);
        });
        cancel.cancel();
        join(own);

        assert_eq!(kept.err(), Some(Error::Canceled));
        assert_eq!(parent.dependents(), 0);
    });
}

/// Two threads derive from one parent at once, which may find its lock
/// taken and shard it (the contention path), while a third cancels it:
/// both children end with the parent, and nothing stays registered. A
/// thread finds the lock taken only after three preemptions, hence the
/// bound.
#[test]
fn contended_children_vs_parent_cancel() {
    model_bound(3, || {
        let (parent, cancel) = crate::with_cancel(&crate::background());
        let spawn_child = |parent: &Ctx| {
            let parent = parent.clone();
            thread::spawn(move || crate::with_cancel(&parent))
        };
        let a = spawn_child(&parent);
        let b = spawn_child(&parent);
        cancel.cancel();
        let children = [join(a), join(b)];
        for (child, _) in &children {
            assert_eq!(child.err(), Some(Error::Canceled));
        }
        assert_eq!(parent.dependents(), 0);
    });
}

/// Children come and go under a live sharded parent on two threads: one
/// freed live (its `CancelFunc` detached, so its drop takes it out of its
/// shard), one canceled. Nothing stays in the shards, and the parent lives
/// on.
#[test]
fn sharded_children_come_and_go_under_a_live_parent() {
    model(|| {
        let (parent, _keep) = crate::with_cancel(&crate::background());
        assert!(crate::tree::shard_now(&parent.0).is_some());
        let freeing = {
            let parent = parent.clone();
            thread::spawn(move || {
                let (child, cancel) = crate::with_cancel(&parent);
                cancel.detach();
                drop(child);
            })
        };
        let canceling = {
            let parent = parent.clone();
            thread::spawn(move || {
                let (child, cancel) = crate::with_cancel(&parent);
                cancel.cancel();
                assert_eq!(child.err(), Some(Error::Canceled));
            })
        };
        join(freeing);
        join(canceling);
        assert_eq!(parent.err(), None);
        assert_eq!(parent.dependents(), 0);
    });
}

// ---------------------------------------------------------------------------
// Draining (`Ctx::drained`, `tree/derived.rs`)
// ---------------------------------------------------------------------------

/// `block_on(base.drained())` against the last derived context being
/// dropped on another thread: loom reports a deadlock if the wake-up is
/// lost between the waiter's look at the count and its registration.
#[test]
fn drained_vs_last_child_drop() {
    model(|| {
        let (base, cancel) = crate::with_cancel(&crate::background());
        let (child, child_cancel) = crate::with_cancel(&base);
        let valued = crate::with_value(&child, 7_u8);
        cancel.cancel();
        let dropper = thread::spawn(move || drop((child, child_cancel, valued)));

        block_on(base.drained());

        join(dropper);
        assert_eq!(base.dependents(), 0);
    });
}

/// Two children of one base dropped on two threads while a third waits:
/// the waiter wakes once the second is gone, not before (it finds the
/// count at zero).
#[test]
fn drained_vs_concurrent_child_drops() {
    model(|| {
        let (base, _cancel) = crate::with_cancel(&crate::background());
        let (a, a_cancel) = crate::with_cancel(&base);
        let b = crate::with_value(&base, 1_u8);
        let first = thread::spawn(move || drop((a, a_cancel)));
        let second = thread::spawn(move || drop(b));

        block_on(base.drained());
        assert!(base.0.derived().is_some_and(|(count, _)| count.is_zero()));

        join(first);
        join(second);
    });
}

/// A child born under its parent's lock (counted by a plain store,
/// `Derived::add_locked`) and freed on one thread, while another child,
/// counted by increment, lives on until a second thread frees it: the
/// waiter must not see the first child's death without its birth (a sum
/// of zero with the second child alive). The second thread marks the
/// flag before it frees its child, so a waiter woken early finds it unset.
#[test]
fn drained_sees_a_locked_birth_with_its_death() {
    model(|| {
        let (base, _cancel) = crate::with_cancel(&crate::background());
        let valued = crate::with_value(&base, 1_u8);
        let freed = Arc::new(AtomicUsize::new(0));
        let born = {
            let base = base.clone();
            thread::spawn(move || drop(crate::with_cancel(&base)))
        };
        let dropper = {
            let freed = freed.clone();
            thread::spawn(move || {
                freed.store(1, Ordering::Release);
                drop(valued);
            })
        };

        block_on(base.drained());
        assert_eq!(
            freed.load(Ordering::Acquire),
            1,
            "drained with a child alive"
        );

        join(born);
        join(dropper);
        assert_eq!(base.dependents(), 0);
    });
}
