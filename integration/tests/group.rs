//! Groups of tasks (issue 17): `goctx::tokio::Group`,
//! `goctx::group::scope` and `goctx::group::InPlace`. Go's `errgroup_test.go`, behaviour by behaviour
//! (the Go test's name is beside each port), then what Rust adds: panics,
//! drop, a limit racing the context, auto traits.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use goctx::group::TaskPanicked;

/// Generous bound on every wait: a correct run takes milliseconds.
const LIMIT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("task error {0}")]
struct TaskError(u32);

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

mod on_tokio {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use goctx::group::{GroupDropped, TaskPanicked};
    use goctx::tokio::Group;
    use goctx::{Ctx, Error};
    use tokio::sync::{Semaphore, oneshot};
    use tokio::time::timeout;

    use super::{LIMIT, TaskError, panic_text};

    /// The error sequences of Go's `TestZeroGroup`, `TestWithContext` and
    /// `TestCancelCause` (`None` is a task returning nil).
    fn cases() -> Vec<Vec<Option<TaskError>>> {
        let (e1, e2) = (Some(TaskError(1)), Some(TaskError(2)));
        vec![
            vec![],
            vec![None],
            vec![e1.clone()],
            vec![e1.clone(), None],
            vec![e1.clone(), e2.clone()],
            vec![None, e1.clone(), e2.clone()],
            vec![None, None, e2],
        ]
    }

    fn first_error(errs: &[Option<TaskError>]) -> Option<TaskError> {
        errs.iter().flatten().next().cloned()
    }

    /// Runs `errs` one task after the other (each finished before the next
    /// starts, so "first" is well defined, as in Go's sequential tests), then
    /// waits for the group. With `try_spawn`, which (like Go's `Go` with no
    /// limit) starts a task even after the group failed; `spawn` would
    /// refuse once it has.
    async fn run_in_order(
        mut group: Group<usize, TaskError>,
        errs: &[Option<TaskError>],
    ) -> Result<Vec<usize>, TaskError> {
        for (i, err) in errs.iter().cloned().enumerate() {
            let (tx, rx) = oneshot::channel();
            let started = group.try_spawn(move |_ctx| async move {
                let result = match err {
                    Some(err) => Err(err),
                    None => Ok(i),
                };
                let _ = tx.send(());
                result
            });
            assert!(started, "no limit: a slot is always free");
            timeout(LIMIT, rx).await.expect("task ran").expect("sent");
        }
        group.wait().await
    }

    // Go: TestZeroGroup. A group with no context of its own returns the first
    // error, or the values when there is none.
    #[tokio::test]
    async fn zero_group_returns_the_first_error() {
        for errs in cases() {
            let result = run_in_order(Group::new(), &errs).await;
            match first_error(&errs) {
                Some(first) => assert_eq!(result, Err(first), "{errs:?}"),
                None => assert_eq!(result, Ok((0..errs.len()).collect()), "{errs:?}"),
            }
        }
    }

    // Go: TestWithContext. `wait` returns the first error, and the group's
    // context is done after `wait` whatever happened.
    #[tokio::test]
    async fn with_context_is_done_after_wait() {
        for errs in cases() {
            let (group, gctx) = Group::with_context(&goctx::background());
            let result = run_in_order(group, &errs).await;
            assert_eq!(result.err(), first_error(&errs), "{errs:?}");
            assert!(
                gctx.err().is_some(),
                "{errs:?}: the group's context is done"
            );
        }
    }

    // Go: TestCancelCause. The cause is the first error; with no error it is
    // plain `Canceled`.
    #[tokio::test]
    async fn cancel_cause_is_the_first_error() {
        for errs in cases() {
            let (group, gctx) = Group::with_context(&goctx::background());
            let _ = run_in_order(group, &errs).await;
            let cause = gctx.cause().expect("done after wait");
            match first_error(&errs) {
                Some(first) => assert_eq!(cause.downcast_ref::<TaskError>(), Some(&first)),
                None => assert_eq!(cause.downcast_ref::<Error>(), Some(&Error::Canceled)),
            }
            assert_eq!(gctx.err(), Some(Error::Canceled));
        }
    }

    // The first error cancels the group's context at once, not at `wait`: a
    // sibling blocked on its context wakes up and sees the error as cause.
    #[tokio::test]
    async fn the_first_error_cancels_the_siblings_at_once() {
        let (mut group, _gctx) = Group::<(), TaskError>::with_context(&goctx::background());
        let (seen_tx, seen_rx) = oneshot::channel();
        group
            .spawn(|ctx: Ctx| async move {
                ctx.done().await;
                let cause = ctx.cause().expect("done");
                let _ = seen_tx.send(cause.downcast_ref::<TaskError>().cloned());
                Ok(())
            })
            .await
            .unwrap();
        group.spawn(|_| async { Err(TaskError(7)) }).await.unwrap();
        // Not waiting on the group yet: the sibling hears of the error by itself.
        let seen = timeout(LIMIT, seen_rx)
            .await
            .expect("sibling woke")
            .unwrap();
        assert_eq!(seen, Some(TaskError(7)));
        assert_eq!(group.wait().await, Err(TaskError(7)));
    }

    // The bug a hand-written group had: a parent's cause reported as the
    // group's error. The group's error is a task's, never the parent's cause.
    #[tokio::test]
    async fn a_parent_cancel_is_not_the_groups_error() {
        let (parent, cancel_parent) = goctx::with_cancel_cause(&goctx::background());
        let (mut group, gctx) = Group::<u32, TaskError>::with_context(&parent);
        group
            .spawn(|ctx: Ctx| async move {
                ctx.done().await;
                Err(TaskError(3))
            })
            .await
            .unwrap();
        group.spawn(|_| async { Ok(1) }).await.unwrap();
        cancel_parent.cancel_with_cause("shutting down");
        assert_eq!(
            timeout(LIMIT, group.wait()).await.unwrap(),
            Err(TaskError(3))
        );
        // The group's context ended with the parent's cause.
        assert_eq!(gctx.cause().unwrap().to_string(), "shutting down");
    }

    #[tokio::test]
    async fn values_come_back_in_spawn_order() {
        let mut group = Group::<usize, TaskError>::new();
        let gates: Vec<_> = (0..5).map(|_| oneshot::channel::<()>()).collect();
        let mut senders = Vec::new();
        for (i, (tx, rx)) in gates.into_iter().enumerate() {
            senders.push(tx);
            group
                .spawn(move |_| async move {
                    let _ = rx.await;
                    Ok(i * 10)
                })
                .await
                .unwrap();
        }
        // Finish them in reverse order.
        for tx in senders.into_iter().rev() {
            tx.send(()).unwrap();
            tokio::task::yield_now().await;
        }
        assert_eq!(
            timeout(LIMIT, group.wait()).await.unwrap(),
            Ok(vec![0, 10, 20, 30, 40])
        );
    }

    // Go: TestTryGo. With a limit of 42, 42 `TryGo`s succeed and the 43rd
    // fails; once they finish a new one succeeds; the limit can be switched
    // when nothing runs.
    #[tokio::test]
    async fn try_spawn_respects_the_limit() {
        let release = Arc::new(Semaphore::new(0));
        let task = |release: Arc<Semaphore>| {
            move |_ctx: Ctx| async move {
                release.acquire().await.unwrap().forget();
                Ok::<_, TaskError>(())
            }
        };
        let mut group = Group::<(), TaskError>::new();
        group.set_limit(Some(42));
        for i in 0..42 {
            assert!(
                group.try_spawn(task(release.clone())),
                "try_spawn {i} fails"
            );
        }
        assert!(
            !group.try_spawn(task(release.clone())),
            "the 43rd must fail"
        );
        release.add_permits(42);
        timeout(LIMIT, group.wait()).await.unwrap().unwrap();

        let mut group = Group::<(), TaskError>::new();
        group.set_limit(Some(42));
        assert!(
            group.try_spawn(task(release.clone())),
            "room again after wait"
        );
        release.add_permits(1);
        timeout(LIMIT, group.wait()).await.unwrap().unwrap();

        // Switch the limit while nothing runs.
        let mut group = Group::<(), TaskError>::new();
        group.set_limit(Some(42));
        group.set_limit(Some(1));
        assert!(group.try_spawn(task(release.clone())));
        assert!(
            !group.try_spawn(task(release.clone())),
            "limit 1 allows one"
        );
        release.add_permits(1);
        timeout(LIMIT, group.wait()).await.unwrap().unwrap();
    }

    // Go: TestGoLimit. 1,025 tasks under a limit of 10: never more than 10
    // run at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spawn_never_runs_more_than_the_limit() {
        const LIMIT_N: usize = 10;
        let active = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut group = Group::<(), TaskError>::new();
        group.set_limit(Some(LIMIT_N));
        for _ in 0..=1 << 10 {
            let (active, peak) = (active.clone(), peak.clone());
            group
                .spawn(move |_| async move {
                    let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    active.fetch_sub(1, Ordering::SeqCst);
                    if now > LIMIT_N {
                        return Err(TaskError(now as u32));
                    }
                    Ok(())
                })
                .await
                .unwrap();
        }
        timeout(LIMIT, group.wait()).await.unwrap().unwrap();
        let peak = peak.load(Ordering::SeqCst);
        assert!((1..=LIMIT_N).contains(&peak), "peak {peak}");
    }

    // Go: SetLimit panics while goroutines are active ("modify limit while
    // ... still active").
    #[tokio::test]
    async fn set_limit_while_tasks_run_panics() {
        let mut group = Group::<(), TaskError>::new();
        let (tx, rx) = oneshot::channel::<()>();
        group
            .spawn(|_| async move {
                let _ = rx.await;
                Ok(())
            })
            .await
            .unwrap();
        let panic = catch_unwind(AssertUnwindSafe(|| group.set_limit(Some(4))))
            .expect_err("set_limit must panic while a task runs");
        let message = panic_text(&*panic);
        assert!(message.contains("while 1 task(s)"), "{message}");
        tx.send(()).unwrap();
        timeout(LIMIT, group.wait()).await.unwrap().unwrap();
    }

    // Rust: the wait for a slot races the group's context. With a limit of 0
    // nothing starts; `spawn` returns the context's error when it ends, and
    // the closure never runs.
    #[tokio::test]
    async fn spawn_waiting_for_a_slot_returns_when_the_group_ends() {
        let (parent, cancel_parent) = goctx::with_cancel(&goctx::background());
        let (mut group, _gctx) = Group::<(), TaskError>::with_context(&parent);
        group.set_limit(Some(0));
        let called = Arc::new(AtomicBool::new(false));
        assert!(
            !group.try_spawn(|_| async { Ok(()) }),
            "limit 0 starts nothing"
        );
        let canceler = tokio::spawn(async move {
            tokio::task::yield_now().await;
            cancel_parent.cancel();
        });
        let flag = called.clone();
        let result = timeout(
            LIMIT,
            group.spawn(move |_| {
                flag.store(true, Ordering::SeqCst);
                async { Ok(()) }
            }),
        )
        .await
        .expect("spawn returned when the group ended");
        assert_eq!(result, Err(Error::Canceled));
        assert!(!called.load(Ordering::SeqCst), "the closure must not run");
        canceler.await.unwrap();
        assert_eq!(timeout(LIMIT, group.wait()).await.unwrap(), Ok(vec![]));
    }

    // Rust: a task that panics cancels the group at once with `TaskPanicked`,
    // and `wait` re-raises the panic with its payload.
    #[tokio::test]
    async fn a_panic_cancels_the_group_and_wait_resumes_it() {
        let (mut group, gctx) = Group::<(), TaskError>::with_context(&goctx::background());
        let (seen_tx, seen_rx) = oneshot::channel();
        group
            .spawn(|ctx: Ctx| async move {
                ctx.done().await;
                let cause = ctx.cause().unwrap();
                let _ = seen_tx.send(cause.downcast_ref::<TaskPanicked>().cloned());
                Ok(())
            })
            .await
            .unwrap();
        group
            .spawn(|_| async { panic!("disk on fire") })
            .await
            .unwrap();
        let seen = timeout(LIMIT, seen_rx).await.unwrap().unwrap();
        let panicked = seen.expect("the cause is TaskPanicked");
        assert_eq!(panicked.message(), Some("disk on fire"));
        let waited = tokio::spawn(group.wait()).await;
        let payload = waited.expect_err("wait panics").into_panic();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"disk on fire"));
        assert!(gctx.cause().unwrap().is::<TaskPanicked>());
    }

    // Rust: dropping the group before `wait` cancels its context with
    // `GroupDropped` and aborts its tasks (their futures are dropped).
    #[tokio::test]
    async fn dropping_the_group_cancels_and_aborts() {
        struct OnDrop(Option<oneshot::Sender<()>>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                let _ = self.0.take().unwrap().send(());
            }
        }
        let (mut group, gctx) = Group::<(), TaskError>::with_context(&goctx::background());
        let (dropped_tx, dropped_rx) = oneshot::channel();
        let (started_tx, started_rx) = oneshot::channel();
        group
            .spawn(|_| async move {
                let _guard = OnDrop(Some(dropped_tx));
                let _ = started_tx.send(());
                std::future::pending::<()>().await;
                Ok(())
            })
            .await
            .unwrap();
        timeout(LIMIT, started_rx).await.unwrap().unwrap();
        drop(group);
        assert!(gctx.cause().unwrap().is::<GroupDropped>());
        timeout(LIMIT, dropped_rx)
            .await
            .expect("the task was aborted")
            .unwrap();
    }

    // Rust: dropping `wait` half way is dropping the group: the tasks it
    // had not reached yet are aborted too, not left running.
    #[tokio::test]
    async fn dropping_wait_is_dropping_the_group() {
        struct OnDrop(Option<oneshot::Sender<()>>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                let _ = self.0.take().unwrap().send(());
            }
        }
        let (mut group, gctx) = Group::<(), TaskError>::with_context(&goctx::background());
        let (dropped_tx, dropped_rx) = oneshot::channel();
        group.spawn(|_| async { Ok(()) }).await.unwrap();
        group
            .spawn(|_| async move {
                let _guard = OnDrop(Some(dropped_tx));
                std::future::pending().await
            })
            .await
            .unwrap();
        assert!(
            timeout(Duration::from_millis(10), group.wait())
                .await
                .is_err()
        );
        assert!(gctx.cause().unwrap().is::<GroupDropped>());
        timeout(LIMIT, dropped_rx)
            .await
            .expect("the task wait had not reached was aborted")
            .unwrap();
    }

    // Rust: when several tasks panic, the context's cause names the first
    // to panic, and `wait` re-raises the payload of the first spawned.
    #[tokio::test]
    async fn several_panics_resume_the_first_spawned() {
        let (mut group, gctx) = Group::<(), TaskError>::with_context(&goctx::background());
        group
            .spawn(|ctx: Ctx| async move {
                ctx.done().await; // until the other task's panic
                panic!("spawned first")
            })
            .await
            .unwrap();
        group
            .spawn(|_| async { panic!("panicked first") })
            .await
            .unwrap();
        let waited = timeout(LIMIT, tokio::spawn(group.wait())).await.unwrap();
        let payload = waited.expect_err("wait panics").into_panic();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"spawned first"));
        let cause = gctx.cause().unwrap();
        let panicked = cause.downcast_ref::<TaskPanicked>().unwrap();
        assert_eq!(panicked.message(), Some("panicked first"));
    }

    // Rust: once the group has ended, `spawn` starts nothing, even with a
    // slot free (the loop that stops at its first `Err` then stops).
    #[tokio::test]
    async fn spawn_after_the_group_ended_starts_nothing() {
        let (mut group, gctx) = Group::<(), TaskError>::with_context(&goctx::background());
        group.set_limit(Some(1));
        group.spawn(|_| async { Err(TaskError(1)) }).await.unwrap();
        timeout(LIMIT, gctx.done())
            .await
            .expect("the error ended it");
        // The failed task's slot may be free by now; nothing starts.
        let called = Arc::new(AtomicBool::new(false));
        let flag = called.clone();
        let spawned = group
            .spawn(move |_| {
                flag.store(true, Ordering::SeqCst);
                async { Ok(()) }
            })
            .await;
        assert_eq!(spawned, Err(Error::Canceled));
        assert!(!called.load(Ordering::SeqCst));
        assert_eq!(group.wait().await, Err(TaskError(1)));
    }

    // Rust: a closure that panics before making its future gives its
    // limit slot back (it used to be lost for good).
    #[tokio::test]
    async fn a_panicking_closure_gives_its_slot_back() {
        let mut group = Group::<(), TaskError>::new();
        group.set_limit(Some(1));
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            group.try_spawn(|_| -> std::future::Ready<Result<(), TaskError>> {
                panic!("before the future")
            })
        }));
        assert!(panicked.is_err());
        assert!(group.try_spawn(|_| async { Ok(()) }), "the slot is free");
        timeout(LIMIT, group.wait()).await.unwrap().unwrap();
    }

    // Rust: a task aborted by its runtime's shutdown is not a silently
    // missing value: `wait` says so.
    #[test]
    fn wait_panics_when_a_runtime_shutdown_aborted_a_task() {
        let first = tokio::runtime::Runtime::new().unwrap();
        let mut group = Group::<u32, TaskError>::new();
        first.block_on(async {
            group.try_spawn(|_| async { Ok(1) });
            group.try_spawn(|_| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(2)
            });
        });
        first.shutdown_timeout(Duration::ZERO);
        let second = tokio::runtime::Runtime::new().unwrap();
        let waited = catch_unwind(AssertUnwindSafe(|| second.block_on(group.wait())));
        let payload = waited.expect_err("wait panics");
        assert!(
            panic_text(&*payload).contains("aborted"),
            "{}",
            panic_text(&*payload)
        );
    }

    #[test]
    fn public_types_are_send_sync_and_unwind_safe() {
        fn check<T: Send + Sync + std::panic::UnwindSafe + std::panic::RefUnwindSafe>() {}
        check::<Group<String, TaskError>>();
        check::<TaskPanicked>();
        check::<GroupDropped>();
        fn send<T: Send>(_: &T) {}
        // The futures of `spawn` and `wait` can move to another thread.
        let mut group = Group::<String, TaskError>::new();
        send(&group.spawn(|_| async { Ok(String::new()) }));
        send(&group.wait());
    }
}

// ---- the scoped form, on threads ----

#[test]
fn scope_returns_values_in_order() {
    let words = ["alpha", "beta", "gamma"]; // borrowed by the tasks
    let lengths = goctx::group::scope(&goctx::background(), |s| {
        for (i, word) in words.iter().enumerate() {
            s.go(move |_| {
                // The later tasks finish first.
                std::thread::sleep(Duration::from_millis(10 * (3 - i as u64)));
                Ok::<_, TaskError>(word.len())
            });
        }
    });
    assert_eq!(lengths, Ok(vec![5, 4, 5]));
}

// Go: TestWithContext and TestCancelCause, on threads.
#[test]
fn scope_returns_the_first_error_and_cancels_the_others() {
    let seen = std::sync::Mutex::new(None);
    let result = goctx::group::scope(&goctx::background(), |s| {
        s.go(|ctx| {
            assert!(ctx.wait_timeout(LIMIT).is_some(), "canceled by the sibling");
            *seen.lock().unwrap() = ctx.cause().unwrap().downcast_ref::<TaskError>().cloned();
            Ok(1)
        });
        s.go(|_| Err(TaskError(9)));
    });
    assert_eq!(result, Err(TaskError(9)));
    assert_eq!(*seen.lock().unwrap(), Some(TaskError(9)));
}

// Go: TestGoLimit, on threads.
#[test]
fn scope_never_runs_more_than_the_limit() {
    let active = AtomicUsize::new(0);
    let peak = AtomicUsize::new(0);
    let result = goctx::group::scope(&goctx::background(), |s| {
        s.set_limit(Some(4));
        for _ in 0..64 {
            s.go(|_| {
                let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::yield_now();
                active.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, TaskError>(())
            });
        }
    });
    assert_eq!(result.map(|v| v.len()), Ok(64));
    let peak = peak.load(Ordering::SeqCst);
    assert!((1..=4).contains(&peak), "peak {peak}");
}

// Go: TestTryGo, on threads.
#[test]
fn scope_try_go_respects_the_limit() {
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let result = goctx::group::scope(&goctx::background(), |s| {
        s.set_limit(Some(1));
        assert!(s.try_go(|_| {
            release_rx.lock().unwrap().recv_timeout(LIMIT).unwrap();
            Ok::<_, TaskError>(1)
        }));
        assert!(!s.try_go(|_| Ok(2)), "the slot is taken");
        release_tx.send(()).unwrap();
    });
    assert_eq!(result, Ok(vec![1]));
}

#[test]
fn scope_set_limit_while_tasks_run_panics() {
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let result = goctx::group::scope(&goctx::background(), |s| {
        s.go(|_| {
            release_rx.lock().unwrap().recv_timeout(LIMIT).unwrap();
            Ok::<_, TaskError>(())
        });
        let panic = catch_unwind(AssertUnwindSafe(|| s.set_limit(Some(2))));
        release_tx.send(()).unwrap();
        assert!(panic.is_err(), "set_limit must panic while a task runs");
    });
    assert_eq!(result, Ok(vec![()]));
}

#[test]
fn scope_go_with_a_limit_of_zero_panics_instead_of_hanging() {
    let panic = catch_unwind(|| {
        goctx::group::scope(&goctx::background(), |s| {
            s.set_limit(Some(0));
            assert!(!s.try_go(|_| Ok::<_, TaskError>(())));
            s.go(|_| Ok(()));
        })
    })
    .expect_err("go with limit 0 panics");
    let message = panic_text(&*panic);
    assert!(message.contains("limit of 0"), "{message}");
}

#[test]
fn scope_resumes_a_task_panic_with_its_payload() {
    let sibling_cause = std::sync::Mutex::new(None);
    let panic = catch_unwind(AssertUnwindSafe(|| {
        goctx::group::scope(&goctx::background(), |s| {
            s.go(|ctx| {
                assert!(ctx.wait_timeout(LIMIT).is_some());
                *sibling_cause.lock().unwrap() = ctx.cause();
                Ok::<_, TaskError>(())
            });
            s.go(|_| std::panic::panic_any(42_u32));
        })
    }))
    .expect_err("the task's panic is re-raised");
    assert_eq!(panic.downcast_ref::<u32>(), Some(&42));
    let cause = sibling_cause
        .lock()
        .unwrap()
        .clone()
        .expect("sibling canceled");
    let panicked = cause.downcast_ref::<TaskPanicked>().expect("TaskPanicked");
    assert_eq!(
        panicked.message(),
        None,
        "a non-string payload has no message"
    );
}

#[test]
fn scope_is_canceled_by_its_parent() {
    let (parent, cancel) = goctx::with_cancel(&goctx::background());
    let result = goctx::group::scope(&parent, |s| {
        s.go(|ctx| match ctx.wait_timeout(LIMIT) {
            Some(_) => Err(TaskError(0)),
            None => Ok(()),
        });
        cancel.cancel();
    });
    assert_eq!(result, Err(TaskError(0)));
}

// --- goctx::group::InPlace: futures driven in place, on any executor ---

mod in_place {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::executor::block_on;
    use goctx::group::{GroupDropped, InPlace, TaskPanicked};

    use super::{TaskError, panic_text};

    /// A future that is pending once (waking itself) before it is ready:
    /// the group must come back to it.
    struct YieldOnce(bool);

    impl std::future::Future for YieldOnce {
        type Output = ();
        fn poll(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<()> {
            if self.0 {
                return std::task::Poll::Ready(());
            }
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }

    // Go: TestZeroGroup and the values of TestWithContext; on futures'
    // own executor, no runtime.
    #[test]
    fn values_come_back_in_go_order_and_borrowed_data_is_fine() {
        let words = ["three".to_string(), "four".to_string(), "five".to_string()];
        let mut group = InPlace::<usize, TaskError>::new();
        for (i, word) in words.iter().enumerate() {
            group.go(move |_ctx| async move {
                // Later tasks finish first.
                for _ in 0..(3 - i) {
                    YieldOnce(false).await;
                }
                Ok(word.len())
            });
        }
        assert_eq!(block_on(group.wait()), Ok(vec![5, 4, 4]));
        let empty = InPlace::<(), TaskError>::new();
        assert_eq!(block_on(empty.wait()), Ok(vec![]));
    }

    // Go: TestWithContext and TestCancelCause.
    #[test]
    fn the_first_error_cancels_the_others_and_is_the_result() {
        let (mut group, gctx) = InPlace::<u32, TaskError>::with_context(&goctx::background());
        let seen = std::sync::Mutex::new(None);
        let seen = &seen;
        group.go(|ctx| async move {
            // Ends only because the sibling's error cancels the group.
            let err = ctx.done().await;
            assert_eq!(err, goctx::Error::Canceled);
            *seen.lock().unwrap() = ctx.cause().unwrap().downcast_ref::<TaskError>().cloned();
            Ok(1)
        });
        group.go(|_ctx| async { Err(TaskError(7)) });
        group.go(|_ctx| async { Err(TaskError(8)) });
        assert_eq!(block_on(group.wait()), Err(TaskError(7)));
        assert_eq!(*seen.lock().unwrap(), Some(TaskError(7)));
        assert_eq!(gctx.err(), Some(goctx::Error::Canceled));
    }

    // Go: TestGoLimit.
    #[test]
    fn never_more_than_the_limit_run_at_once() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let (running, most) = (&running, &most);
        let mut group = InPlace::<(), TaskError>::new();
        group.set_limit(Some(3));
        for _ in 0..20 {
            group.go(move |_ctx| async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                YieldOnce(false).await;
                YieldOnce(false).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            });
        }
        assert_eq!(block_on(group.wait()).map(|v| v.len()), Ok(20));
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_panic_cancels_the_group_and_unwinds_out_of_wait() {
        let (mut group, gctx) = InPlace::<(), TaskError>::with_context(&goctx::background());
        group.go(|ctx| async move {
            ctx.done().await;
            Ok(())
        });
        group.go(|_ctx| async { panic!("the disk is on fire") });
        let payload = catch_unwind(AssertUnwindSafe(|| block_on(group.wait()))).unwrap_err();
        assert_eq!(panic_text(&*payload), "the disk is on fire");
        let cause = gctx.cause().expect("canceled");
        assert_eq!(
            cause.downcast_ref::<TaskPanicked>().unwrap().message(),
            Some("the disk is on fire")
        );
    }

    #[test]
    fn dropping_the_group_or_its_wait_cancels_with_group_dropped() {
        let (mut group, gctx) = InPlace::<(), TaskError>::with_context(&goctx::background());
        group.go(|_ctx| async { Ok(()) });
        drop(group);
        assert!(
            gctx.cause()
                .unwrap()
                .downcast_ref::<GroupDropped>()
                .is_some()
        );

        let (mut group, gctx) = InPlace::<(), TaskError>::with_context(&goctx::background());
        group.go(|ctx| async move {
            ctx.done().await;
            Ok(())
        });
        let mut wait = Box::pin(group.wait());
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        assert_eq!(gctx.err(), None);
        drop(wait);
        assert!(
            gctx.cause()
                .unwrap()
                .downcast_ref::<GroupDropped>()
                .is_some()
        );
    }

    #[test]
    fn the_parent_ending_reaches_every_task() {
        let (parent, cancel) = goctx::with_cancel(&goctx::background());
        let mut group = InPlace::<goctx::Error, TaskError>::with_context(&parent).0;
        for _ in 0..3 {
            group.go(|ctx| async move { Ok(ctx.done().await) });
        }
        let mut wait = Box::pin(group.wait());
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        cancel.cancel();
        // Go's rule: tasks that return Ok make an Ok group.
        assert_eq!(block_on(wait), Ok(vec![goctx::Error::Canceled; 3]));
    }

    #[test]
    fn a_limit_of_zero_panics_in_wait_instead_of_hanging() {
        let mut group = InPlace::<(), TaskError>::new();
        group.set_limit(Some(0));
        group.go(|_ctx| async { Ok(()) });
        let payload = catch_unwind(AssertUnwindSafe(|| drop(group.wait()))).unwrap_err();
        assert!(
            panic_text(&*payload).contains("limit of 0"),
            "{}",
            panic_text(&*payload)
        );
        // Without tasks there is nothing to run, and nothing to refuse.
        let mut empty = InPlace::<(), TaskError>::new();
        empty.set_limit(Some(0));
        assert_eq!(block_on(empty.wait()), Ok(vec![]));
    }

    /// Wakes come from timers on tokio's threads: the group's one waker is
    /// registered by every pending future and must bring `wait` back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_tokio_wakes_from_other_threads_reach_the_group() {
        let mut group = InPlace::<u64, TaskError>::new();
        for ms in [30_u64, 10, 20] {
            group.go(move |_ctx| async move {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                Ok(ms)
            });
        }
        let values = tokio::time::timeout(super::LIMIT, group.wait()).await;
        assert_eq!(values.expect("in time"), Ok(vec![30, 10, 20]));
    }
}
