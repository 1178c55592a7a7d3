//! Many threads at once: cancels racing cancels, creation, drops, waits and
//! callbacks. Each test is bounded (a few seconds on a loaded machine) and
//! checks its outcome exactly; a deadlock shows up as a `wait_timeout`
//! returning `None`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::Duration;

use goctx::{CancelFunc, Ctx, Error};

const LONG: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
#[error("cause {0}")]
struct Numbered(usize);

/// A 101-node tree (fan-out 4); every node's cancel function is called
/// from its own thread, all released at once. Every context must end up
/// canceled, and every thread must finish.
#[test]
fn concurrent_cancels_over_a_101_node_tree_from_101_threads() {
    for _round in 0..5 {
        let root = goctx::background();
        let mut nodes: Vec<(Ctx, CancelFunc)> = vec![goctx::with_cancel(&root)];
        let mut next = 0;
        while nodes.len() < 101 {
            let parent = nodes[next].0.clone();
            for _ in 0..4 {
                if nodes.len() < 101 {
                    nodes.push(goctx::with_cancel_cause(&parent));
                }
            }
            next += 1;
        }
        let barrier = Arc::new(Barrier::new(nodes.len()));
        let threads: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, (_, cancel))| {
                let cancel = cancel.clone();
                let barrier = barrier.clone();
                thread::spawn(move || {
                    barrier.wait();
                    cancel.cancel_with_cause(Numbered(i));
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("cancel thread");
        }
        for (ctx, _) in &nodes {
            assert_eq!(ctx.wait_timeout(LONG), Some(Error::Canceled));
            assert!(ctx.cause().is_some_and(|c| c.is::<Numbered>()));
        }
        // A child's cause is its own or one of its ancestors'.
        assert_eq!(nodes[0].0.dependents(), 0);
    }
}

/// Children are created under a parent while another thread cancels it:
/// every child ends canceled with the parent's cause, whether it was
/// registered before the cancel or born after it.
#[test]
fn creating_children_under_a_parent_being_canceled() {
    for _ in 0..100 {
        let (parent, cancel) = goctx::with_cancel_cause(&goctx::background());
        let barrier = Arc::new(Barrier::new(3));
        let makers: Vec<_> = (0..2)
            .map(|_| {
                let parent = parent.clone();
                let barrier = barrier.clone();
                thread::spawn(move || {
                    barrier.wait();
                    (0..50)
                        .map(|_| goctx::with_cancel(&parent))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        barrier.wait();
        cancel.cancel_with_cause(Numbered(7));
        for maker in makers {
            for (child, _cancel) in maker.join().expect("maker thread") {
                assert_eq!(child.err(), Some(Error::Canceled));
                let cause = child.cause().expect("a canceled child has a cause");
                assert_eq!(cause.downcast_ref::<Numbered>().map(|n| n.0), Some(7));
            }
        }
        assert_eq!(parent.dependents(), 0);
    }
}

/// Four threads churn children of one live parent (derive, then cancel,
/// drop or keep), the pattern of a server deriving every request from one
/// base context: contention spreads the parent's children over per-thread
/// shards. The parent then ends, while the threads still derive: every
/// kept child ends with its cause, every child made after is born done,
/// and nothing stays registered.
#[test]
fn threads_churning_children_of_one_parent_then_its_cancel() {
    for round in 0..20 {
        let (parent, cancel) = goctx::with_cancel_cause(&goctx::background());
        let barrier = Arc::new(Barrier::new(5));
        let churners: Vec<_> = (0..4)
            .map(|t| {
                let parent = parent.clone();
                let barrier = barrier.clone();
                thread::spawn(move || {
                    barrier.wait();
                    let mut kept = Vec::new();
                    for i in 0..2000usize {
                        let (child, child_cancel) = goctx::with_cancel(&parent);
                        match (i + t) % 4 {
                            0 => child_cancel.cancel(),
                            1 => drop((child, child_cancel)),
                            2 if i % 16 == 2 => kept.push((child, child_cancel)),
                            _ => drop(child),
                        }
                        if i == 1000 {
                            barrier.wait();
                        }
                    }
                    kept
                })
            })
            .collect();
        barrier.wait();
        // Half way through every thread's churn.
        barrier.wait();
        cancel.cancel_with_cause(Numbered(round));
        for churner in churners {
            for (child, _cancel) in churner.join().expect("churning thread") {
                assert_eq!(child.err(), Some(Error::Canceled));
                let cause = child.cause().expect("a canceled child has a cause");
                assert_eq!(cause.downcast_ref::<Numbered>().map(|n| n.0), Some(round));
            }
        }
        assert_eq!(parent.dependents(), 0, "round {round}");
    }
}

/// A parent and its child canceled at the same moment with different
/// causes: the child reports either its own cause or the parent's, and its
/// error is `Canceled` either way; nothing deadlocks.
#[test]
fn parent_and_child_cancel_races() {
    for _ in 0..500 {
        let (parent, cancel_parent) = goctx::with_cancel_cause(&goctx::background());
        let (child, cancel_child) = goctx::with_cancel_cause(&parent);
        let (grandchild, _keep) = goctx::with_cancel(&child);
        let barrier = Arc::new(Barrier::new(2));
        let other = {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                cancel_child.cancel_with_cause(Numbered(2));
            })
        };
        barrier.wait();
        cancel_parent.cancel_with_cause(Numbered(1));
        other.join().expect("child canceler");
        let cause = |ctx: &Ctx| {
            ctx.cause()
                .and_then(|c| c.downcast_ref::<Numbered>().map(|n| n.0))
        };
        assert_eq!(cause(&parent), Some(1));
        let child_cause = cause(&child);
        assert!(matches!(child_cause, Some(1 | 2)), "{child_cause:?}");
        // The grandchild always inherits whatever its parent ended with.
        assert_eq!(cause(&grandchild), child_cause);
        assert_eq!(grandchild.err(), Some(Error::Canceled));
    }
}

/// Handles dropped on some threads while the parent is canceled on
/// another: registrations never outlive their contexts.
#[test]
fn drops_racing_cancel_leave_no_registrations() {
    for _ in 0..50 {
        let (grand, _keep) = goctx::with_cancel(&goctx::background());
        let (parent, cancel) = goctx::with_cancel(&grand);
        let children: Vec<_> = (0..64).map(|_| goctx::with_cancel(&parent)).collect();
        assert_eq!(parent.dependents(), 64);
        let (left, right): (Vec<_>, Vec<_>) = children
            .into_iter()
            .enumerate()
            .partition(|(i, _)| i % 2 == 0);
        let barrier = Arc::new(Barrier::new(3));
        let droppers: Vec<_> = [left, right]
            .into_iter()
            .map(|half| {
                let barrier = barrier.clone();
                thread::spawn(move || {
                    barrier.wait();
                    for (i, (child, func)) in half {
                        if i % 4 == 0 {
                            func.detach();
                        }
                        drop(child);
                    }
                })
            })
            .collect();
        barrier.wait();
        cancel.cancel();
        for dropper in droppers {
            dropper.join().expect("dropper thread");
        }
        assert_eq!(parent.dependents(), 0);
        assert_eq!(
            grand.dependents(),
            0,
            "the canceled parent left its own parent"
        );
    }
}

/// Many threads blocked in `wait()` and many tasks awaiting `done()` are
/// all released by one cancel.
#[test]
fn one_cancel_releases_every_waiter() {
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    let ready = Arc::new(Barrier::new(17));
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let ctx = ctx.clone();
            let ready = ready.clone();
            thread::spawn(move || {
                ready.wait();
                if i % 2 == 0 {
                    ctx.wait()
                } else {
                    futures::executor::block_on(ctx.done())
                }
            })
        })
        .collect();
    ready.wait();
    cancel.cancel();
    for thread in threads {
        assert_eq!(thread.join().ok(), Some(Error::Canceled));
    }
    assert_eq!(ctx.dependents(), 0);
}

/// `stop()` racing the cancel: per registration, exactly one of "the
/// callback ran" and "stop returned true" happens.
#[test]
fn after_func_stop_racing_cancel_has_exactly_one_winner() {
    let ran = Arc::new(AtomicUsize::new(0));
    let mut stopped = 0;
    let rounds = 300;
    let (tx, rx) = mpsc::channel();
    for _ in 0..rounds {
        let (ctx, cancel) = goctx::with_cancel(&goctx::background());
        let handle = {
            let ran = ran.clone();
            let tx = tx.clone();
            goctx::after_func(&ctx, move || {
                ran.fetch_add(1, Ordering::SeqCst);
                tx.send(()).unwrap_or(());
            })
        };
        let barrier = Arc::new(Barrier::new(2));
        let canceler = {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                cancel.cancel();
            })
        };
        barrier.wait();
        if handle.stop() {
            stopped += 1;
        }
        canceler.join().expect("canceler");
        assert!(!handle.stop(), "a second stop never wins");
    }
    for _ in 0..rounds - stopped {
        rx.recv_timeout(LONG)
            .expect("every callback that was not stopped runs");
    }
    assert!(
        rx.recv_timeout(Duration::from_millis(50)).is_err(),
        "a stopped callback ran"
    );
    assert_eq!(ran.load(Ordering::SeqCst) + stopped, rounds);
}

/// Deadlines armed from many threads at once all fire, and explicit
/// cancels racing them leave each context with exactly one of the errors.
#[test]
fn many_deadlines_from_many_threads() {
    let threads: Vec<_> = (0..8)
        .map(|t| {
            thread::spawn(move || {
                let root = goctx::background();
                let contexts: Vec<_> = (0..200)
                    .map(|i| goctx::with_timeout(&root, Duration::from_millis(1 + (i + t) % 7)))
                    .collect();
                let mut exceeded = 0;
                for (i, (ctx, cancel)) in contexts.iter().enumerate() {
                    if i % 3 == 0 {
                        cancel.cancel();
                    }
                    match ctx.wait_timeout(LONG) {
                        Some(Error::DeadlineExceeded) => exceeded += 1,
                        Some(Error::Canceled) => {
                            assert_eq!(i % 3, 0, "only explicit cancels say Canceled")
                        }
                        None => panic!("a deadline never fired"),
                    }
                }
                exceeded
            })
        })
        .collect();
    for thread in threads {
        let exceeded = thread.join().expect("deadline thread");
        assert!(exceeded >= 200 * 2 / 3 - 1, "{exceeded}");
    }
}
