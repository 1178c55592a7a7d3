//! goctx works under any executor, and with none.

use std::time::Duration;

use goctx::Error;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_multi_thread_tasks_see_cancel_and_deadline() {
    let root = goctx::background();
    let (ctx, cancel) = goctx::with_cancel(&root);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let ctx = ctx.clone();
            tokio::spawn(async move { ctx.done().await })
        })
        .collect();
    tokio::task::yield_now().await;
    cancel.cancel();
    for task in tasks {
        assert_eq!(task.await.ok(), Some(Error::Canceled));
    }
    let (timed, _cancel) = goctx::with_timeout(&root, Duration::from_millis(5));
    let waited = tokio::spawn(async move { timed.done().await });
    assert_eq!(waited.await.ok(), Some(Error::DeadlineExceeded));
}

#[tokio::test(flavor = "current_thread")]
async fn tokio_current_thread_is_woken_by_the_timer_thread() {
    let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), Duration::from_millis(5));
    // The deadline fires on goctx's own timer thread, which wakes this
    // single-threaded runtime's task.
    assert_eq!(ctx.done().await, Error::DeadlineExceeded);
    let slow = ctx.run(tokio::time::sleep(Duration::from_secs(60))).await;
    assert_eq!(slow, Err(Error::DeadlineExceeded));
}

#[tokio::test(flavor = "current_thread")]
async fn run_returns_the_output_or_the_error() {
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    assert_eq!(ctx.run(async { "ok" }).await, Ok("ok"));
    let canceler = tokio::spawn(async move {
        tokio::task::yield_now().await;
        cancel.cancel();
    });
    let never = std::future::pending::<()>();
    assert_eq!(ctx.run(never).await, Err(Error::Canceled));
    canceler.await.expect("canceler task");
}

#[test]
fn run_does_not_poll_the_future_once_done() {
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    cancel.cancel();
    let polled = std::cell::Cell::new(false);
    let result = futures::executor::block_on(ctx.run(async {
        polled.set(true);
    }));
    assert_eq!(result, Err(Error::Canceled));
    assert!(!polled.get());
}

#[test]
fn futures_executor_and_plain_threads() {
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    let thread_waiter = std::thread::spawn({
        let ctx = ctx.clone();
        move || ctx.wait()
    });
    let async_waiter = std::thread::spawn({
        let ctx = ctx.clone();
        move || futures::executor::block_on(ctx.done())
    });
    cancel.cancel();
    assert_eq!(thread_waiter.join().ok(), Some(Error::Canceled));
    assert_eq!(async_waiter.join().ok(), Some(Error::Canceled));
}

#[test]
fn wait_timeout_returns_none_on_a_live_context() {
    let (ctx, _cancel) = goctx::with_cancel(&goctx::background());
    assert_eq!(ctx.wait_timeout(Duration::from_millis(10)), None);
    assert_eq!(goctx::background().wait_timeout(Duration::ZERO), None);
    assert_eq!(
        goctx::without_cancel(&ctx).wait_timeout(Duration::from_millis(1)),
        None
    );
}

#[test]
fn done_on_a_never_done_context_stays_pending() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let root = goctx::background();
    let mut done = root.done();
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(std::pin::Pin::new(&mut done).poll(&mut cx), Poll::Pending);
    assert_eq!(root.dependents(), 0);
}

#[test]
fn done_is_a_fused_future_for_select() {
    use futures::future::FusedFuture;
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    let mut done = ctx.done();
    let mut never = futures::future::pending::<()>();
    assert!(!done.is_terminated());
    cancel.cancel();
    let got = futures::executor::block_on(async {
        futures::select! {
            err = done => Some(err),
            () = never => None,
        }
    });
    assert_eq!(got, Some(Error::Canceled));
    assert!(done.is_terminated());
}
