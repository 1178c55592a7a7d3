//! The tree's Rust-side promises: RAII cancel, nothing left behind, no
//! recursion, deadlines that never fire early, exact wake-ups.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use goctx::{Ctx, Error};

const LONG: Duration = Duration::from_secs(10);

#[test]
fn dropping_the_last_cancel_func_cancels() {
    let root = goctx::background();
    let (ctx, cancel) = goctx::with_cancel(&root);
    let clone = cancel.clone();
    drop(cancel);
    assert_eq!(ctx.err(), None, "a clone is still alive");
    drop(clone);
    assert_eq!(ctx.err(), Some(Error::Canceled));
    // The cause says it was a drop, not a call (issue 8, B6).
    assert!(
        ctx.cause()
            .is_some_and(|c| c.is::<goctx::CancelFuncDropped>())
    );
}

/// Go's `ctx, _ := context.WithTimeout(..)` habit, written in Rust: `_`
/// drops the `CancelFunc` at once. The context and everything derived from
/// it say why they are canceled.
#[test]
fn a_cancel_func_bound_to_underscore_names_the_drop_as_the_cause() {
    let (ctx, _) = goctx::with_timeout(&goctx::background(), LONG);
    assert_eq!(ctx.err(), Some(Error::Canceled));
    let cause = ctx.cause().expect("done, so a cause");
    assert!(cause.is::<goctx::CancelFuncDropped>(), "{cause}");
    assert_eq!(
        cause.to_string(),
        "context canceled: the last CancelFunc was dropped"
    );
    let (child, _keep) = goctx::with_cancel(&ctx);
    assert!(
        child
            .cause()
            .is_some_and(|c| c.is::<goctx::CancelFuncDropped>())
    );

    // A call is not a drop, and the first cancellation's cause stays.
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    cancel.cancel();
    drop(cancel);
    assert_eq!(
        ctx.cause().and_then(|c| c.downcast_ref::<Error>().copied()),
        Some(Error::Canceled)
    );
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    let (child, child_cancel) = goctx::with_cancel(&ctx);
    drop(child_cancel);
    cancel.cancel_with_cause("parent's own cause");
    assert!(
        child
            .cause()
            .is_some_and(|c| c.is::<goctx::CancelFuncDropped>())
    );
    assert_eq!(
        ctx.cause().map(|c| c.to_string()).as_deref(),
        Some("parent's own cause")
    );
}

/// Causes from plain messages and any error type (issue 8, B7).
#[test]
fn causes_accept_messages_strings_boxed_errors_and_error_types() {
    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    cancel.cancel_with_cause("db unreachable");
    assert_eq!(
        ctx.cause().map(|c| c.to_string()).as_deref(),
        Some("db unreachable")
    );

    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    cancel.cancel_with_cause(String::from("owned message"));
    assert_eq!(
        ctx.cause().map(|c| c.to_string()).as_deref(),
        Some("owned message")
    );

    let boxed: Box<dyn std::error::Error + Send + Sync> = "boxed".into();
    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    cancel.cancel_with_cause(boxed);
    assert_eq!(ctx.cause().map(|c| c.to_string()).as_deref(), Some("boxed"));

    let io = std::io::Error::other("disk gone");
    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    cancel.cancel_with_cause(io);
    let cause = ctx.cause().expect("a cause");
    assert_eq!(
        cause.downcast_ref::<std::io::Error>().map(|e| e.kind()),
        Some(std::io::ErrorKind::Other)
    );

    // A `Cause` passed back in stays the same shared value.
    let shared = goctx::Cause::new(std::io::Error::other("shared"));
    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    cancel.cancel_with_cause(shared.clone());
    assert!(
        ctx.cause()
            .is_some_and(|c| goctx::Cause::ptr_eq(&c, &shared))
    );

    let (ctx, _c) = goctx::with_timeout_cause(&goctx::background(), Duration::ZERO, "too slow");
    assert_eq!(
        ctx.cause().map(|c| c.to_string()).as_deref(),
        Some("too slow")
    );
    let (ctx, _c) = goctx::with_deadline_cause(
        &goctx::background(),
        std::time::Instant::now(),
        format!("budget {}", 3),
    );
    assert_eq!(
        ctx.cause().map(|c| c.to_string()).as_deref(),
        Some("budget 3")
    );
}

#[test]
fn detach_keeps_the_context_alive_and_its_parent_still_cancels_it() {
    let (parent, cancel_parent) = goctx::with_cancel(&goctx::background());
    let (child, cancel_child) = goctx::with_cancel(&parent);
    cancel_child.detach();
    assert_eq!(child.err(), None);
    assert_eq!(parent.dependents(), 1);
    cancel_parent.cancel();
    assert_eq!(child.err(), Some(Error::Canceled));
}

#[test]
fn a_detached_context_dropped_everywhere_leaves_nothing_behind() {
    let (parent, _cancel) = goctx::with_cancel(&goctx::background());
    let (child, cancel_child) = goctx::with_timeout(&parent, Duration::from_secs(3600));
    let grandchild = goctx::with_value(&child, 5u8);
    cancel_child.detach();
    assert_eq!(parent.dependents(), 1);
    drop(child);
    assert_eq!(parent.dependents(), 1, "the value child still holds it");
    drop(grandchild);
    assert_eq!(parent.dependents(), 0);
}

#[test]
fn a_million_short_lived_children_keep_the_parent_registry_empty() {
    let (parent, _cancel) = goctx::with_cancel(&goctx::background());
    let (_live, _keep) = goctx::with_cancel(&parent);
    for i in 0..1_000_000u32 {
        let (child, cancel) = goctx::with_cancel(&parent);
        if i % 2 == 0 {
            cancel.cancel();
        }
        drop((child, cancel));
    }
    assert_eq!(parent.dependents(), 1);
}

/// Builds a chain of `depth` nested contexts on a thread with a small
/// stack: neither cancelling nor dropping may recurse per level.
fn deep_chain(depth: usize, cancel_first: bool) {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let (root, cancel) = goctx::with_cancel(&goctx::background());
            let mut leaf = root.clone();
            // Mostly cancel and value layers. A few deadline layers: each
            // `with_timeout` asks the parent for its deadline, which walks
            // up to the nearest own deadline (O(depth), as in Go).
            for i in 0..depth {
                leaf = match i % 1000 {
                    0..600 => {
                        let (c, f) = goctx::with_cancel(&leaf);
                        f.detach();
                        c
                    }
                    600..999 => goctx::with_value(&leaf, i),
                    _ => {
                        let (c, f) = goctx::with_timeout(&leaf, Duration::from_secs(3600));
                        f.detach();
                        c
                    }
                };
            }
            assert_eq!(leaf.err(), None);
            if cancel_first {
                cancel.cancel();
                assert_eq!(leaf.err(), Some(Error::Canceled));
                drop(leaf);
            } else {
                drop(leaf);
                assert_eq!(root.dependents(), 0);
                drop(cancel);
            }
        })
        .and_then(|t| {
            t.join()
                .map_err(|_| std::io::Error::other("deep chain thread panicked"))
        })
        .expect("the deep chain test thread ran to completion");
}

#[test]
fn a_100k_chain_cancels_and_drops_without_recursion() {
    deep_chain(100_000, true);
}

#[test]
fn a_100k_chain_drops_before_cancel_without_recursion() {
    deep_chain(100_000, false);
}

#[test]
fn deadlines_never_fire_early() {
    let root = goctx::background();
    let contexts: Vec<_> = (0..50)
        .map(|i| {
            let at = Instant::now() + Duration::from_millis(1 + (i % 10) * 3);
            (at, goctx::with_deadline(&root, at))
        })
        .collect();
    for (at, (ctx, _cancel)) in &contexts {
        assert_eq!(ctx.wait_timeout(LONG), Some(Error::DeadlineExceeded));
        assert!(Instant::now() >= *at, "fired before its deadline");
    }
}

#[test]
fn huge_timeouts_mean_never() {
    let root = goctx::background();
    let (ctx, cancel) = goctx::with_timeout(&root, Duration::MAX);
    assert_eq!(ctx.deadline(), None);
    assert_eq!(ctx.err(), None);
    assert_eq!(ctx.wait_timeout(Duration::from_millis(5)), None);
    cancel.cancel();
    assert_eq!(ctx.wait_timeout(Duration::MAX), Some(Error::Canceled));
}

#[test]
fn extend_deadline_moves_the_timer() {
    let root = goctx::background();
    let start = Instant::now();
    let (ctx, cancel) = goctx::with_timeout(&root, Duration::from_millis(20));
    let (follower, _f) = goctx::with_timeout(&ctx, Duration::from_secs(3600)); // follows ctx
    let later = start + Duration::from_millis(150);
    assert_eq!(cancel.extend_deadline(later), Ok(later));
    // Not later than the current one: nothing changes.
    assert_eq!(cancel.extend_deadline(start), Ok(later));
    assert_eq!(follower.deadline(), Some(later));
    assert_eq!(ctx.wait_timeout(LONG), Some(Error::DeadlineExceeded));
    assert!(Instant::now() >= later, "fired at the old deadline");
    assert_eq!(follower.err(), Some(Error::DeadlineExceeded));
}

#[test]
fn a_pending_after_func_keeps_an_abandoned_context_until_it_ends() {
    let (parent, cancel_parent) = goctx::with_cancel(&goctx::background());
    let (child, cancel_child) = goctx::with_cancel(&parent);
    let (tx, rx) = std::sync::mpsc::channel();
    let _handle = goctx::after_func(&child, move || tx.send(()).unwrap_or(()));
    cancel_child.detach();
    drop(child);
    assert_eq!(
        parent.dependents(),
        1,
        "the child stays registered for its callback"
    );
    assert!(rx.recv_timeout(Duration::from_millis(20)).is_err());
    cancel_parent.cancel();
    assert!(rx.recv_timeout(LONG).is_ok());
}

#[test]
fn a_pending_after_func_still_fires_at_an_abandoned_contexts_deadline() {
    let root = goctx::background();
    let start = Instant::now();
    let (ctx, cancel) = goctx::with_timeout(&root, Duration::from_millis(30));
    let (tx, rx) = std::sync::mpsc::channel();
    let _handle = goctx::after_func(&ctx, move || tx.send(Instant::now()).unwrap_or(()));
    cancel.detach();
    drop(ctx);
    let fired = rx.recv_timeout(LONG).expect("the deadline fired");
    assert!(fired >= start + Duration::from_millis(30));
}

#[test]
fn stopping_the_callback_of_an_abandoned_context_frees_it() {
    let (parent, _cancel_parent) = goctx::with_cancel(&goctx::background());
    let (child, cancel_child) = goctx::with_cancel(&parent);
    let handle = goctx::after_func(&child, || {});
    cancel_child.detach();
    drop(child);
    assert_eq!(parent.dependents(), 1);
    assert!(handle.stop());
    assert_eq!(parent.dependents(), 0, "stop released the last reference");
}

/// A waker that counts its wake-ups.
#[derive(Default)]
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<Counter>, Waker) {
    let counter = Arc::new(Counter::default());
    (counter.clone(), Waker::from(counter))
}

fn poll_once(done: &mut goctx::future::Done<'_>, waker: &Waker) -> Poll<Error> {
    std::pin::Pin::new(done).poll_ready_with(waker)
}

trait PollWith {
    fn poll_ready_with(self, waker: &Waker) -> Poll<Error>;
}

impl PollWith for std::pin::Pin<&mut goctx::future::Done<'_>> {
    fn poll_ready_with(self, waker: &Waker) -> Poll<Error> {
        std::future::Future::poll(self, &mut TaskContext::from_waker(waker))
    }
}

#[test]
fn cancelling_a_subtree_wakes_exactly_its_waiters() {
    // root ─┬─ a ─┬─ a1
    //       │     └─ a2 (value) ─ a21
    //       └─ b ── b1
    let (root, _cancel_root) = goctx::with_cancel(&goctx::background());
    let (a, cancel_a) = goctx::with_cancel(&root);
    let (a1, _c1) = goctx::with_cancel(&a);
    let a2 = goctx::with_value(&a, 2u8);
    let (a21, _c21) = goctx::with_timeout(&a2, Duration::from_secs(3600));
    let (b, _cb) = goctx::with_cancel(&root);
    let (b1, _cb1) = goctx::with_cancel(&b);
    let all: Vec<&Ctx> = vec![&root, &a, &a1, &a2, &a21, &b, &b1];
    let waiters: Vec<_> = all
        .iter()
        .map(|ctx| (ctx.done(), counting_waker()))
        .collect();
    let mut waiters = waiters;
    for (done, (_, waker)) in &mut waiters {
        assert!(poll_once(done, waker).is_pending());
        // A second poll with the same waker registers nothing new.
        assert!(poll_once(done, waker).is_pending());
    }
    cancel_a.cancel();
    let counts: Vec<usize> = waiters
        .iter()
        .map(|(_, (c, _))| c.0.load(Ordering::SeqCst))
        .collect();
    assert_eq!(
        counts,
        vec![0, 1, 1, 1, 1, 0, 0],
        "root, a, a1, a2, a21, b, b1"
    );
    for (i, (done, (_, waker))) in waiters.iter_mut().enumerate() {
        let expect_done = (1..=4).contains(&i);
        assert_eq!(
            poll_once(done, waker).is_ready(),
            expect_done,
            "context {i}"
        );
    }
}

#[test]
fn a_dropped_done_future_unregisters_and_a_new_waker_replaces_the_old() {
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    let (first, first_waker) = counting_waker();
    let (second, second_waker) = counting_waker();
    let mut done = ctx.done();
    assert!(poll_once(&mut done, &first_waker).is_pending());
    assert!(poll_once(&mut done, &second_waker).is_pending());
    assert_eq!(ctx.dependents(), 1);
    let mut dropped = ctx.done();
    assert!(poll_once(&mut dropped, &first_waker).is_pending());
    assert_eq!(ctx.dependents(), 2);
    drop(dropped);
    assert_eq!(ctx.dependents(), 1);
    cancel.cancel();
    assert_eq!(first.0.load(Ordering::SeqCst), 0);
    assert_eq!(second.0.load(Ordering::SeqCst), 1);
    assert_eq!(
        poll_once(&mut done, &second_waker),
        Poll::Ready(Error::Canceled)
    );
}

#[test]
fn err_some_means_done_is_complete() {
    // Go issue 75533: once err() reports, done() must already be complete.
    for _ in 0..200 {
        let (ctx, cancel) = goctx::with_cancel(&goctx::background());
        let (_, waker) = counting_waker();
        let canceler = std::thread::spawn(move || cancel.cancel());
        while ctx.err().is_none() {
            std::hint::spin_loop();
        }
        let mut done = ctx.done();
        assert_eq!(poll_once(&mut done, &waker), Poll::Ready(Error::Canceled));
        canceler.join().expect("canceler thread");
    }
}

/// A value type per number, to fill the 64-bit key summary many times over.
#[derive(Debug, PartialEq)]
struct K<const N: usize>(usize);

macro_rules! chain_of_keys {
    ($ctx:ident; $($n:literal)*) => {
        $( let $ctx = goctx::with_value(&$ctx, K::<$n>($n)); )*
    };
}

#[test]
fn value_lookups_stay_exact_with_more_types_than_summary_bits() {
    let root = goctx::background();
    let (ctx, _c) = goctx::with_cancel(&root);
    chain_of_keys!(ctx; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29
        30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59
        60 61 62 63 64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79);
    let (leaf, _l) = goctx::with_cancel(&ctx);
    assert_eq!(leaf.value::<K<0>>(), Some(&K(0)));
    assert_eq!(leaf.value::<K<41>>(), Some(&K(41)));
    assert_eq!(leaf.value::<K<79>>(), Some(&K(79)));
    assert_eq!(leaf.value::<K<80>>(), None);
    assert_eq!(leaf.value::<u8>(), None);
    // A shadowing value of the same type wins; the summary does not hide it.
    let shadowed = goctx::with_value(&leaf, K::<3>(333));
    assert_eq!(shadowed.value::<K<3>>(), Some(&K(333)));
    assert_eq!(
        goctx::without_cancel(&shadowed).value::<K<7>>(),
        Some(&K(7))
    );
}
