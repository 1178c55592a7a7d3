//! The `tokio` feature: `after_func_async`, and the guard that makes
//! `Ctx::wait` panic on a thread tokio is polling instead of hanging.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use goctx::Error;

/// Generous bound on every wait: a correct run takes milliseconds.
const LIMIT: Duration = Duration::from_secs(10);

/// What `wait` panics with on a runtime thread (a stable part of it).
const MESSAGE: &str = "called on a thread that drives tokio tasks";

fn panic_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

/// A context that is already done: if the guard wrongly lets `wait`
/// through, it returns at once instead of hanging the test.
fn done_ctx() -> goctx::Ctx {
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    cancel.cancel();
    ctx
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn wait_in_current_thread_block_on_panics() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let ctx = done_ctx();
    let got = catch_unwind(AssertUnwindSafe(|| rt.block_on(async { ctx.wait() })));
    let payload = got.expect_err("wait inside block_on must panic");
    assert!(
        panic_text(&*payload).contains(MESSAGE),
        "{}",
        panic_text(&*payload)
    );
    // wait_timeout too, whatever the timeout.
    let got = catch_unwind(AssertUnwindSafe(|| {
        rt.block_on(async { ctx.wait_timeout(Duration::ZERO) })
    }));
    assert!(panic_text(&*got.expect_err("must panic")).contains(MESSAGE));
}

#[test]
fn wait_in_a_current_thread_task_panics() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let ctx = done_ctx();
    let joined = rt.block_on(async move { tokio::spawn(async move { ctx.wait() }).await });
    let err = joined.expect_err("the task must panic");
    assert!(panic_text(&*err.into_panic()).contains(MESSAGE));
}

#[test]
fn wait_in_a_multi_thread_worker_task_panics() {
    let rt = multi_thread();
    let ctx = done_ctx();
    let joined = rt.block_on(async move {
        tokio::time::timeout(LIMIT, tokio::spawn(async move { ctx.wait() })).await
    });
    let err = joined.expect("bounded").expect_err("the task must panic");
    assert!(panic_text(&*err.into_panic()).contains(MESSAGE));
}

#[test]
fn wait_in_multi_thread_block_on_panics() {
    let rt = multi_thread();
    let ctx = done_ctx();
    let got = catch_unwind(AssertUnwindSafe(|| rt.block_on(async { ctx.wait() })));
    assert!(panic_text(&*got.expect_err("must panic")).contains(MESSAGE));
}

#[test]
fn wait_in_spawn_blocking_waits() {
    let rt = multi_thread();
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    let got = rt.block_on(async move {
        let waiter = tokio::task::spawn_blocking(move || ctx.wait_timeout(LIMIT));
        // Cancel from a task once the blocking thread is (likely) waiting;
        // either order gives the same answer.
        tokio::spawn(async move { cancel.cancel() });
        waiter.await
    });
    assert_eq!(got.expect("no panic"), Some(Error::Canceled));
}

#[test]
fn wait_in_spawn_blocking_on_a_current_thread_runtime_waits() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    let got = rt.block_on(async move {
        let waiter = tokio::task::spawn_blocking(move || ctx.wait_timeout(LIMIT));
        cancel.cancel();
        waiter.await
    });
    assert_eq!(got.expect("no panic"), Some(Error::Canceled));
}

#[test]
fn wait_in_block_in_place_waits() {
    let rt = multi_thread();
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    let got = rt.block_on(async move {
        tokio::spawn(async move {
            let canceler = tokio::spawn(async move { cancel.cancel() });
            let got = tokio::task::block_in_place(|| ctx.wait_timeout(LIMIT));
            let _ = canceler.await;
            got
        })
        .await
    });
    assert_eq!(got.expect("no panic"), Some(Error::Canceled));
}

#[test]
fn wait_in_block_in_place_inside_block_on_waits() {
    let rt = multi_thread();
    let ctx = done_ctx();
    let got = rt.block_on(async { tokio::task::block_in_place(|| ctx.wait()) });
    assert_eq!(got, Error::Canceled);
}

#[test]
fn wait_on_a_plain_thread_waits_even_with_a_runtime_entered() {
    let rt = multi_thread();
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    let waiter = std::thread::spawn(move || ctx.wait_timeout(LIMIT));
    cancel.cancel();
    assert_eq!(waiter.join().expect("no panic"), Some(Error::Canceled));
    // A runtime entered (`Runtime::enter`) but not polling us: no panic.
    let _guard = rt.enter();
    assert_eq!(done_ctx().wait(), Error::Canceled);
}

#[test]
fn the_guard_leaves_the_task_budget_as_it_was() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let ctx = done_ctx();
    rt.block_on(async {
        // Spend some budget so a change would show, then trip the guard.
        for _ in 0..100 {
            tokio::task::coop::consume_budget().await;
        }
        let before = tokio::task::coop::has_budget_remaining();
        let got = catch_unwind(AssertUnwindSafe(|| ctx.wait()));
        assert!(got.is_err());
        assert_eq!(tokio::task::coop::has_budget_remaining(), before);
        // 28 units were left: spending 28 more exhausts it, 27 do not.
        for _ in 0..27 {
            tokio::task::coop::consume_budget().await;
        }
        assert!(tokio::task::coop::has_budget_remaining());
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_func_async_runs_on_the_runtime() {
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let handle = goctx::tokio::after_func_async(&ctx, async move {
        // Both panic outside a runtime.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let inner = tokio::spawn(async { "spawned" });
        let _ = tx.send(inner.await.unwrap_or("inner task failed"));
    });
    cancel.cancel();
    let got = tokio::time::timeout(LIMIT, rx).await.expect("ran in time");
    assert_eq!(got.expect("sent"), "spawned");
    assert!(!handle.stop(), "already started");
}

#[tokio::test(flavor = "current_thread")]
async fn after_func_async_on_a_current_thread_runtime() {
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    cancel.cancel(); // already done: spawned at once
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _handle = goctx::tokio::after_func_async(&ctx, async move {
        tokio::task::yield_now().await;
        let _ = tx.send(());
    });
    tokio::time::timeout(LIMIT, rx)
        .await
        .expect("ran in time")
        .expect("sent");
}

/// Sets its flag when dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn stop_before_cancel_prevents_the_async_callback() {
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    let ran = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    let (ran2, flag) = (ran.clone(), DropFlag(dropped.clone()));
    let handle = goctx::tokio::after_func_async(&ctx, async move {
        let _flag = flag;
        ran2.store(true, Ordering::SeqCst);
    });
    assert_eq!(ctx.dependents(), 1);
    assert!(handle.stop());
    // The future was dropped unpolled by `stop` itself, and unregistered.
    assert!(dropped.load(Ordering::SeqCst));
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(ctx.dependents(), 0);
    assert!(!handle.stop(), "exactly once");
    cancel.cancel();
    assert!(!ran.load(Ordering::SeqCst));
}

#[test]
fn after_func_async_outside_a_runtime_panics() {
    let (ctx, _cancel) = goctx::with_cancel(&goctx::background());
    let got = catch_unwind(AssertUnwindSafe(|| {
        goctx::tokio::after_func_async(&ctx, async {})
    }));
    let text = panic_text(&*got.expect_err("must panic"));
    assert!(text.contains("within a tokio runtime"), "{text}");
    assert_eq!(ctx.dependents(), 0, "nothing registered");
}
