//! `goctx::merge` (issue 9): a context done when either of two is, with
//! values from the first, the earlier deadline, the cause of whichever
//! ended first, and no registration left behind in either input.
//! Go has no `Merge` (golang/go#36503 was declined); Go's
//! `ExampleAfterFunc_merge` recipe is the behaviour compared against.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::Wrapper;
use common::hub::Hub;
use goctx::custom::{Context, Notify, Subscription};
use goctx::{CancelFuncDropped, Cause, Ctx, Error, ExtendError};

common::causes::unit_cause!(
    /// A user cause, as a server would give its request context when the
    /// client goes away.
    RequestAbandoned,
    "request abandoned"
);
common::causes::unit_cause!(
    /// Another user cause, for the other input.
    ShuttingDown,
    "shutting down"
);

fn is<T: std::error::Error + 'static>(cause: Option<Cause>) -> bool {
    cause.is_some_and(|c| c.downcast_ref::<T>().is_some())
}

fn message(cause: Option<Cause>) -> Option<String> {
    cause.map(|c| c.to_string())
}

#[test]
fn ends_with_the_parent_and_its_cause() {
    let (parent, cancel_parent) = goctx::with_cancel(&goctx::background());
    let (other, _cancel_other) = goctx::with_cancel(&goctx::background());
    let (ctx, _cancel) = goctx::merge(&parent, &other);
    assert_eq!(ctx.err(), None);
    assert_eq!((parent.dependents(), other.dependents()), (1, 1));

    cancel_parent.cancel_with_cause(RequestAbandoned);
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert!(is::<RequestAbandoned>(ctx.cause()));
    assert_eq!(other.err(), None);
    assert_eq!(other.dependents(), 0, "registration with other taken back");
}

#[test]
fn ends_with_the_other_and_its_cause() {
    let (parent, _cancel_parent) = goctx::with_cancel(&goctx::background());
    let (other, cancel_other) = goctx::with_cancel(&goctx::background());
    let (ctx, _cancel) = goctx::merge(&parent, &other);

    cancel_other.cancel_with_cause(ShuttingDown);
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert!(is::<ShuttingDown>(ctx.cause()));
    assert_eq!(parent.err(), None);
    assert_eq!(parent.dependents(), 0, "left the parent's registry");
}

#[test]
fn the_cause_is_that_of_whichever_ended_first_in_both_orders() {
    for parent_first in [true, false] {
        let (parent, cancel_parent) = goctx::with_cancel(&goctx::background());
        let (other, cancel_other) = goctx::with_cancel(&goctx::background());
        let (ctx, _cancel) = goctx::merge(&parent, &other);
        if parent_first {
            cancel_parent.cancel_with_cause(RequestAbandoned);
            cancel_other.cancel_with_cause(ShuttingDown);
            assert!(is::<RequestAbandoned>(ctx.cause()));
        } else {
            cancel_other.cancel_with_cause(ShuttingDown);
            cancel_parent.cancel_with_cause(RequestAbandoned);
            assert!(is::<ShuttingDown>(ctx.cause()));
        }
        assert_eq!(ctx.err(), Some(Error::Canceled));
    }
}

#[test]
fn the_others_deadline_ends_it_with_deadline_exceeded() {
    let (parent, _cancel_parent) = goctx::with_cancel(&goctx::background());
    let (other, _cancel_other) =
        goctx::with_timeout_cause(&goctx::background(), Duration::from_millis(5), "slow");
    let (ctx, _cancel) = goctx::merge(&parent, &other);
    assert_eq!(
        ctx.wait_timeout(Duration::from_secs(10)),
        Some(Error::DeadlineExceeded)
    );
    assert_eq!(message(ctx.cause()).as_deref(), Some("slow"));
    assert_eq!(parent.dependents(), 0);
}

#[test]
fn waiters_and_descendants_see_the_others_end() {
    let (parent, _cancel_parent) = goctx::with_cancel(&goctx::background());
    let (other, cancel_other) = goctx::with_cancel(&goctx::background());
    let (ctx, _cancel) = goctx::merge(&parent, &other);
    let (child, _cancel_child) = goctx::with_cancel(&ctx);
    let waiter = std::thread::spawn({
        let ctx = ctx.clone();
        move || ctx.wait()
    });
    cancel_other.cancel_with_cause(ShuttingDown);
    assert_eq!(waiter.join().ok(), Some(Error::Canceled));
    assert_eq!(child.err(), Some(Error::Canceled));
    assert!(is::<ShuttingDown>(child.cause()));
}

#[test]
fn its_cancel_func_works_as_usual_and_takes_both_registrations_back() {
    let (parent, _cancel_parent) = goctx::with_cancel(&goctx::background());
    let (other, _cancel_other) = goctx::with_cancel(&goctx::background());

    let (ctx, cancel) = goctx::merge(&parent, &other);
    cancel.cancel();
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(message(ctx.cause()), Some(Error::Canceled.to_string()));
    assert_eq!((parent.dependents(), other.dependents()), (0, 0));

    let (ctx, cancel) = goctx::merge(&parent, &other);
    cancel.cancel_with_cause(RequestAbandoned);
    cancel.cancel_with_cause(ShuttingDown);
    assert!(is::<RequestAbandoned>(ctx.cause()), "the first cause stays");
    assert_eq!((parent.dependents(), other.dependents()), (0, 0));

    let (ctx, cancel) = goctx::merge(&parent, &other);
    drop(cancel);
    assert!(is::<CancelFuncDropped>(ctx.cause()));
    assert_eq!((parent.dependents(), other.dependents()), (0, 0));

    let (ctx, cancel) = goctx::merge(&parent, &other);
    cancel.detach();
    assert_eq!(ctx.err(), None);
    assert_eq!((parent.dependents(), other.dependents()), (1, 1));
    drop(ctx);
    assert_eq!(
        (parent.dependents(), other.dependents()),
        (0, 0),
        "a detached merged context dropped everywhere leaves nothing"
    );
    assert_eq!((parent.err(), other.err()), (None, None));
}

#[test]
fn the_deadline_is_the_earlier_and_follows_extensions_of_either() {
    let now = Instant::now();
    let (soon, late) = (
        now + Duration::from_secs(60),
        now + Duration::from_secs(120),
    );

    let (parent, extend_parent) = goctx::with_deadline(&goctx::background(), soon);
    let (other, extend_other) = goctx::with_deadline(&goctx::background(), late);
    let (ctx, cancel) = goctx::merge(&parent, &other);
    assert_eq!(ctx.deadline(), Some(soon));
    let (child, _c) = goctx::with_cancel(&ctx);
    assert_eq!(child.deadline(), Some(soon));

    // The parent's moves past the other's: the other's is now the earlier.
    let later = now + Duration::from_secs(180);
    assert_eq!(extend_parent.extend_deadline(later), Ok(later));
    assert_eq!(ctx.deadline(), Some(late));
    // And the other's moves past that.
    let latest = now + Duration::from_secs(240);
    assert_eq!(extend_other.extend_deadline(latest), Ok(latest));
    assert_eq!(ctx.deadline(), Some(later));

    assert_eq!(
        cancel.extend_deadline(latest),
        Err(ExtendError::NoDeadline),
        "a merged context has no deadline of its own"
    );

    // Only one input has a deadline: that one.
    let (ctx, _c) = goctx::merge(&goctx::background(), &other);
    assert_eq!(ctx.deadline(), Some(latest));
    let (ctx, _c) = goctx::merge(&parent, &goctx::background());
    assert_eq!(ctx.deadline(), Some(later));
    let (ctx, _c) = goctx::merge(&goctx::background(), &goctx::todo());
    assert_eq!(ctx.deadline(), None);
}

#[test]
fn born_done_when_either_is_done_with_the_parents_cause_if_both() {
    let (live, _keep) = goctx::with_cancel(&goctx::background());
    let (parent_done, cancel) = goctx::with_cancel(&goctx::background());
    cancel.cancel_with_cause(RequestAbandoned);
    let (other_done, cancel) = goctx::with_cancel(&goctx::background());
    cancel.cancel_with_cause(ShuttingDown);

    let (ctx, _c) = goctx::merge(&parent_done, &live);
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert!(is::<RequestAbandoned>(ctx.cause()));

    let (ctx, _c) = goctx::merge(&live, &other_done);
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert!(is::<ShuttingDown>(ctx.cause()));

    let (ctx, _c) = goctx::merge(&parent_done, &other_done);
    assert!(
        is::<RequestAbandoned>(ctx.cause()),
        "the parent is checked first"
    );

    let (expired, _c) = goctx::with_timeout(&goctx::background(), Duration::ZERO);
    let (ctx, _c) = goctx::merge(&live, &expired);
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));

    assert_eq!(live.dependents(), 0, "born done: nothing registered");
}

#[test]
fn values_come_from_the_parent_only() {
    struct RequestId(&'static str);
    struct ServerName(&'static str);

    let parent = goctx::with_value(&goctx::background(), RequestId("r1"));
    let other = goctx::with_value(&goctx::background(), ServerName("s1"));
    let (other, _c) = goctx::with_cancel(&other);
    let (ctx, _c) = goctx::merge(&parent, &other);
    assert_eq!(ctx.value::<RequestId>().map(|v| v.0), Some("r1"));
    assert!(ctx.value::<ServerName>().is_none());
    assert_eq!(other.value::<ServerName>().map(|v| v.0), Some("s1"));
}

#[test]
fn its_name_is_the_parents_with_merge_of_the_others() {
    let (parent, _c) = goctx::with_cancel(&goctx::background());
    let other = goctx::without_cancel(&goctx::todo());
    let (ctx, _c) = goctx::merge(&parent, &other);
    assert_eq!(
        ctx.to_string(),
        "context.Background.WithCancel.WithMerge(context.TODO.WithoutCancel)"
    );
    let (child, _c) = goctx::with_cancel(&ctx);
    assert_eq!(
        child.to_string(),
        "context.Background.WithCancel.WithMerge(context.TODO.WithoutCancel).WithCancel"
    );
    assert!(format!("{ctx:?}").contains("WithMerge"));
}

#[test]
fn others_that_can_never_be_done_register_nothing() {
    let (parent, cancel_parent) = goctx::with_cancel(&goctx::background());
    let (shutdown, _c) = goctx::with_cancel(&goctx::background());
    for other in [
        goctx::background(),
        goctx::todo(),
        goctx::without_cancel(&shutdown),
    ] {
        let (ctx, _c) = goctx::merge(&parent, &other);
        assert_eq!(ctx.err(), None);
        assert_eq!(shutdown.dependents(), 0);
    }
    let (ctx, _c) = goctx::merge(&parent, &goctx::without_cancel(&shutdown));
    cancel_parent.cancel();
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

#[test]
fn a_value_context_over_the_other_registers_with_the_node_below() {
    let (shutdown, cancel_shutdown) = goctx::with_cancel(&goctx::background());
    let other = goctx::with_value(&shutdown, 7u32);
    let (ctx, _c) = goctx::merge(&goctx::background(), &other);
    assert_eq!(shutdown.dependents(), 1);
    cancel_shutdown.cancel_with_cause(ShuttingDown);
    assert!(is::<ShuttingDown>(ctx.cause()));
}

#[test]
fn merging_a_context_with_itself_or_its_child() {
    let (parent, cancel) = goctx::with_cancel(&goctx::background());
    let (ctx, _c) = goctx::merge(&parent, &parent);
    assert_eq!(parent.dependents(), 2);
    let (child, _cc) = goctx::with_cancel(&parent);
    let (ctx2, c2) = goctx::merge(&parent, &child);
    c2.cancel();
    assert_eq!(ctx2.err(), Some(Error::Canceled));
    assert_eq!(parent.dependents(), 3, "ctx (twice) and child");
    cancel.cancel_with_cause(RequestAbandoned);
    assert!(is::<RequestAbandoned>(ctx.cause()));
}

#[test]
fn a_user_context_as_the_other_delegating_to_a_library_one() {
    let (inner, cancel_inner) = goctx::with_cancel(&goctx::background());
    let other = Ctx::from_context(Wrapper(inner.clone()));
    let (parent, cancel_parent) = goctx::with_cancel(&goctx::background());

    let (ctx, cancel) = goctx::merge(&parent, &other);
    assert_eq!(inner.dependents(), 1);
    cancel.cancel();
    assert_eq!(inner.dependents(), 0, "taken back on its own cancel");

    let (ctx2, _c) = goctx::merge(&parent, &other);
    cancel_parent.cancel_with_cause(RequestAbandoned);
    assert!(is::<RequestAbandoned>(ctx2.cause()));
    assert_eq!(inner.dependents(), 0, "taken back when the parent ends it");
    drop((ctx, ctx2));

    let (parent, _c) = goctx::with_cancel(&goctx::background());
    let (ctx, _c) = goctx::merge(&parent, &other);
    cancel_inner.cancel_with_cause(ShuttingDown);
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert!(is::<ShuttingDown>(ctx.cause()));
    assert_eq!(parent.dependents(), 0);
}

#[test]
fn a_user_context_as_the_parent_is_unsubscribed_when_the_other_ends_it() {
    let (inner, _keep) = goctx::with_cancel(&goctx::background());
    let parent = Ctx::from_context(Wrapper(inner.clone()));
    let (other, cancel_other) = goctx::with_cancel(&goctx::background());
    let (ctx, _c) = goctx::merge(&parent, &other);
    assert_eq!(inner.dependents(), 1);
    cancel_other.cancel_with_cause(ShuttingDown);
    assert!(is::<ShuttingDown>(ctx.cause()));
    assert_eq!(inner.dependents(), 0);
}

/// A user context that notifies by itself (not through a `Ctx`), so the
/// merged context learns of it through `Notify::notify`.
#[derive(Default)]
struct Manual {
    ended: AtomicBool,
    hub: Arc<Hub>,
}

impl Manual {
    fn cancel(&self) {
        self.ended.store(true, Ordering::SeqCst);
        self.hub.notify_all();
    }

    fn pending(&self) -> usize {
        self.hub.len()
    }
}

/// `Ctx::from_context` needs an owned context; the test keeps a handle.
struct Shared(Arc<Manual>);

impl Context for Shared {
    fn err(&self) -> Option<Error> {
        self.0
            .ended
            .load(Ordering::SeqCst)
            .then_some(Error::DeadlineExceeded)
    }
    fn cause(&self) -> Option<Cause> {
        self.err().map(|_| Cause::from(Box::from(ShuttingDown)))
    }
    fn subscribe(&self, notify: Notify) -> Subscription {
        self.0.hub.subscribe(notify)
    }
}

#[test]
fn a_user_context_as_the_other_that_notifies_by_itself() {
    let manual = Arc::new(Manual::default());
    let other = Ctx::from_context(Shared(manual.clone()));
    let (parent, cancel_parent) = goctx::with_cancel(&goctx::background());

    let (ctx, _c) = goctx::merge(&parent, &other);
    assert_eq!(manual.pending(), 1);
    drop(ctx);
    drop(_c);
    assert_eq!(manual.pending(), 0, "dropped: subscription canceled");

    let (ctx, _c) = goctx::merge(&parent, &other);
    let (ctx2, _c2) = goctx::merge(&parent, &other);
    cancel_parent.cancel_with_cause(RequestAbandoned);
    assert!(is::<RequestAbandoned>(ctx.cause()));
    assert_eq!(manual.pending(), 0, "ended by the parent: canceled");
    drop((ctx, ctx2));

    let (parent, _c) = goctx::with_cancel(&goctx::background());
    let (ctx, _c) = goctx::merge(&parent, &other);
    manual.cancel();
    assert_eq!(
        ctx.err(),
        Some(Error::DeadlineExceeded),
        "the other's error, not the parent's"
    );
    assert!(is::<ShuttingDown>(ctx.cause()));
    assert_eq!(parent.dependents(), 0);

    // Already done: born done with the other's error and cause.
    let (ctx, _c) = goctx::merge(&parent, &other);
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    assert!(is::<ShuttingDown>(ctx.cause()));
}

/// A million merged contexts of one long-lived `other`, each dropped (or
/// canceled) in turn, leave nothing in `other` or `parent`.
#[test]
fn a_million_merged_children_leave_no_registration() {
    const N: usize = 1_000_000;
    let started = Instant::now();
    let (shutdown, _keep) = goctx::with_cancel(&goctx::background());
    let (parent, _keep_parent) = goctx::with_cancel(&goctx::background());

    for _ in 0..N {
        let (ctx, cancel) = goctx::merge(&parent, &shutdown);
        cancel.detach();
        drop(ctx);
    }
    assert_eq!((shutdown.dependents(), parent.dependents()), (0, 0));

    for _ in 0..N {
        let (ctx, cancel) = goctx::merge(&parent, &shutdown);
        cancel.cancel();
        // Still held: the registrations went at the cancel, not the drop.
        assert_eq!(shutdown.dependents(), 0);
        drop(ctx);
    }
    assert_eq!((shutdown.dependents(), parent.dependents()), (0, 0));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

/// Nested in the `other` position 100 000 deep, dropped on a small stack.
#[test]
fn a_deep_nest_of_merges_drops_and_reads_its_deadline_iteratively() {
    let at = Instant::now() + Duration::from_secs(60);
    let (root, _c) = goctx::with_deadline(&goctx::background(), at);
    let (parent, _keep) = goctx::with_cancel(&goctx::background());
    common::run_with_deadlock_limit("deep merge", Duration::from_secs(60), move || {
        let mut ctx = root.clone();
        for _ in 0..100_000 {
            let (merged, cancel) = goctx::merge(&parent, &ctx);
            cancel.detach();
            ctx = merged;
        }
        assert_eq!(ctx.deadline(), Some(at));
        drop(ctx);
        assert_eq!((root.dependents(), parent.dependents()), (0, 0));
    });
}

/// `parent` and `other` canceled at once from two threads: exactly one
/// cause wins, the merged context is done, nothing stays registered.
#[test]
fn concurrent_ends_of_both_inputs() {
    let (root_a, _ka) = goctx::with_cancel(&goctx::background());
    let (root_b, _kb) = goctx::with_cancel(&goctx::background());
    for _ in 0..1000 {
        let (parent, cancel_parent) = goctx::with_cancel(&root_a);
        let (other, cancel_other) = goctx::with_cancel(&root_b);
        let (ctx, cancel) = goctx::merge(&parent, &other);
        let barrier = Arc::new(Barrier::new(2));
        let a = std::thread::spawn({
            let barrier = barrier.clone();
            move || {
                barrier.wait();
                cancel_parent.cancel_with_cause(RequestAbandoned);
            }
        });
        barrier.wait();
        cancel_other.cancel_with_cause(ShuttingDown);
        a.join().expect("thread");
        assert_eq!(ctx.err(), Some(Error::Canceled));
        let cause = ctx.cause();
        assert!(
            is::<RequestAbandoned>(cause.clone()) ^ is::<ShuttingDown>(cause),
            "exactly one cause"
        );
        drop((ctx, cancel, parent, other));
        assert_eq!((root_a.dependents(), root_b.dependents()), (0, 0));
    }
}

/// The merged context's own cancel racing its parent's, under a long-lived
/// `other` that never ends: the registration with `other` goes either way,
/// while the merged context is still held.
#[test]
fn concurrent_own_and_parent_cancels_under_a_long_lived_other() {
    let (shutdown, _keep) = goctx::with_cancel(&goctx::background());
    for _ in 0..1000 {
        let (parent, cancel_parent) = goctx::with_cancel(&goctx::background());
        let (ctx, cancel) = goctx::merge(&parent, &shutdown);
        let barrier = Arc::new(Barrier::new(2));
        let a = std::thread::spawn({
            let barrier = barrier.clone();
            move || {
                barrier.wait();
                cancel_parent.cancel_with_cause(RequestAbandoned);
            }
        });
        barrier.wait();
        cancel.cancel_with_cause(ShuttingDown);
        a.join().expect("thread");
        let cause = ctx.cause();
        assert!(is::<RequestAbandoned>(cause.clone()) ^ is::<ShuttingDown>(cause));
        assert_eq!(shutdown.dependents(), 0);
        assert_eq!(parent.dependents(), 0);
        drop(ctx);
    }
}
