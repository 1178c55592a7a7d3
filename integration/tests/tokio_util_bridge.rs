//! The `tokio-util` feature: bridges between `Ctx` and `CancellationToken`.
//!
//! Most tests run without any executor at all: a cancel on one side is
//! seen on the other before `cancel()` returns, which is how they show
//! that no thread or task carries it. Released registrations are checked
//! with `dependents()` on the goctx side and with a per-thread count of
//! live heap bytes on the token side (a registration left behind would
//! keep its allocations).

mod common;

use std::future::Future;
use std::pin::pin;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use goctx::Error;
use goctx::tokio_util::{TokenCanceled, ctx_from_token, token_from_ctx};
use tokio_util::sync::CancellationToken;

/// Generous bound on every wait: a correct run takes microseconds.
const LIMIT: Duration = Duration::from_secs(10);

#[global_allocator]
static ALLOCATOR: common::alloc::Counting = common::alloc::Counting::PER_THREAD;

/// Live heap bytes this thread gained while running `f`.
fn live_bytes_after(f: impl FnOnce()) -> i64 {
    common::alloc::on_this_thread(f).0.live
}

#[test]
fn a_token_cancel_reaches_the_ctx_and_its_children_at_once() {
    let token = CancellationToken::new();
    let ctx = ctx_from_token(&token);
    let (child, _cancel) = goctx::with_cancel(&ctx);
    let (grandchild, _c) = goctx::with_timeout(&child, Duration::from_secs(3600));
    assert_eq!(ctx.err(), None);
    assert_eq!(grandchild.err(), None);
    assert!(ctx.cause().is_none());
    token.cancel();
    // No executor ran: the cancel itself carried the news.
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(grandchild.err(), Some(Error::Canceled));
    assert!(ctx.cause().is_some_and(|c| c.is::<TokenCanceled>()));
    assert!(grandchild.cause().is_some_and(|c| c.is::<TokenCanceled>()));
    assert_eq!(ctx.to_string(), "tokio_util::CancellationToken");
    assert_eq!(
        child.to_string(),
        "tokio_util::CancellationToken.WithCancel"
    );
}

#[test]
fn a_child_token_cancel_also_reaches_the_ctx() {
    let parent = CancellationToken::new();
    let ctx = ctx_from_token(&parent.child_token());
    let (child, _cancel) = goctx::with_cancel(&ctx);
    parent.cancel();
    assert_eq!(child.err(), Some(Error::Canceled));
}

#[test]
fn a_ctx_from_a_cancelled_token_is_born_done() {
    let token = CancellationToken::new();
    token.cancel();
    let ctx = ctx_from_token(&token);
    assert_eq!(ctx.err(), Some(Error::Canceled));
    let (child, _cancel) = goctx::with_cancel(&ctx);
    assert_eq!(child.err(), Some(Error::Canceled));
    assert_eq!(futures::executor::block_on(ctx.done()), Error::Canceled);
}

#[test]
fn a_ctx_cancel_reaches_the_token_at_once_and_releases_the_ctx() {
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    let token = token_from_ctx(&ctx);
    let child_token = token.child_token();
    assert_eq!(ctx.dependents(), 1);
    assert!(!token.is_cancelled());
    cancel.cancel();
    assert!(token.is_cancelled());
    assert!(child_token.is_cancelled());
    assert_eq!(ctx.dependents(), 0);
}

#[test]
fn a_parent_cancel_reaches_a_token_of_a_child_ctx() {
    let (parent, cancel) = goctx::with_cancel(&goctx::background());
    let (child, _c) = goctx::with_timeout(&parent, Duration::from_secs(3600));
    let token = token_from_ctx(&child);
    cancel.cancel();
    assert!(token.is_cancelled());
    assert_eq!(child.dependents(), 0);
    assert_eq!(parent.dependents(), 0);
}

#[test]
fn cancelling_the_token_releases_the_ctx_and_leaves_it_live() {
    let (ctx, _cancel) = goctx::with_cancel(&goctx::background());
    let token = token_from_ctx(&ctx);
    assert_eq!(ctx.dependents(), 1);
    token.cancel();
    assert_eq!(ctx.dependents(), 0, "released by the token's cancel");
    assert_eq!(ctx.err(), None, "a token cancel does not reach the ctx");
}

#[test]
fn a_token_of_a_done_or_never_done_ctx_registers_nothing() {
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    cancel.cancel();
    assert!(token_from_ctx(&ctx).is_cancelled());

    let root = goctx::background();
    let token = token_from_ctx(&root);
    assert!(!token.is_cancelled());
    assert_eq!(root.dependents(), 0);
    let (live, _c) = goctx::with_cancel(&goctx::without_cancel(&ctx));
    assert!(!token_from_ctx(&goctx::without_cancel(&live)).is_cancelled());
    assert_eq!(live.dependents(), 0);
}

#[test]
fn the_token_bridge_keeps_a_detached_ctx_alive_until_it_ends() {
    let (parent, cancel_parent) = goctx::with_cancel(&goctx::background());
    let (child, cancel_child) = goctx::with_cancel(&parent);
    cancel_child.detach();
    let token = token_from_ctx(&child);
    drop(child);
    assert_eq!(parent.dependents(), 1, "held by the bridge");
    cancel_parent.cancel();
    assert!(token.is_cancelled());
}

#[test]
fn derived_contexts_and_futures_release_their_token_registrations() {
    let token = CancellationToken::new();
    let ctx = ctx_from_token(&token);
    // Warm up whatever is allocated once (lazy statics, first use).
    drop(goctx::with_cancel(&ctx));
    let gained = live_bytes_after(|| {
        for _ in 0..200 {
            // A child canceled through its CancelFunc, one dropped
            // (RAII cancel), one detached and dropped, a pending done()
            // future dropped, an after_func stopped.
            let (child, cancel) = goctx::with_cancel(&ctx);
            cancel.cancel();
            drop(child);
            drop(goctx::with_cancel(&ctx));
            let (child, cancel) = goctx::with_cancel(&ctx);
            cancel.detach();
            drop(child);
            let mut done = pin!(ctx.done());
            let polled = done
                .as_mut()
                .poll(&mut TaskContext::from_waker(Waker::noop()));
            assert_eq!(polled, Poll::Pending);
            let handle = goctx::after_func(&ctx, || {});
            assert!(handle.stop());
        }
    });
    assert_eq!(gained, 0, "bytes kept by registrations that should be gone");
    assert!(!token.is_cancelled());
    // And the bridged context still works.
    let (child, _cancel) = goctx::with_cancel(&ctx);
    token.cancel();
    assert_eq!(child.err(), Some(Error::Canceled));
}

#[test]
fn registrations_fired_by_the_token_are_freed() {
    // Warm up: the first cancel makes the shared `TokenCanceled` cause, a
    // process-wide allocation that stays (not a leak).
    let token = CancellationToken::new();
    let ctx = ctx_from_token(&token);
    token.cancel();
    assert!(ctx.cause().is_some());
    drop((ctx, token));
    let gained = live_bytes_after(|| {
        for _ in 0..50 {
            let token = CancellationToken::new();
            let ctx = ctx_from_token(&token);
            let (child, _cancel) = goctx::with_cancel(&ctx);
            token.cancel();
            assert_eq!(child.err(), Some(Error::Canceled));
            drop((child, ctx, token));
        }
    });
    assert_eq!(gained, 0);
}

#[test]
fn token_bridges_are_freed_on_either_cancel() {
    let (ctx, _cancel) = goctx::with_cancel(&goctx::background());
    token_from_ctx(&ctx).cancel(); // warm up
    let gained = live_bytes_after(|| {
        for _ in 0..100 {
            // Released by the token's cancel.
            let token = token_from_ctx(&ctx);
            token.cancel();
            drop(token);
            // Released by the context's cancel.
            let (child, cancel) = goctx::with_cancel(&ctx);
            let token = token_from_ctx(&child);
            cancel.cancel();
            assert!(token.is_cancelled());
            drop((token, child));
        }
    });
    assert_eq!(gained, 0);
    assert_eq!(ctx.dependents(), 0);
}

#[test]
fn a_round_trip_carries_the_cancel_both_ways() {
    // token -> ctx -> token
    let first = CancellationToken::new();
    let last = token_from_ctx(&ctx_from_token(&first));
    first.cancel();
    assert!(last.is_cancelled());
    // ctx -> token -> ctx
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    let back = ctx_from_token(&token_from_ctx(&ctx));
    let (child, _c) = goctx::with_cancel(&back);
    cancel.cancel();
    assert_eq!(child.err(), Some(Error::Canceled));
    assert_eq!(ctx.dependents(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_on_either_side_are_woken() {
    // A goctx waiter woken by a token cancel from another task.
    let token = CancellationToken::new();
    let ctx = ctx_from_token(&token);
    let waiter = tokio::spawn(ctx.done_owned());
    let canceler = token.clone();
    tokio::spawn(async move { canceler.cancel() });
    let got = tokio::time::timeout(LIMIT, waiter).await.expect("woken");
    assert_eq!(got.expect("no panic"), Error::Canceled);

    // A token waiter woken by a ctx cancel from another task.
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    let waiter = tokio::spawn(token_from_ctx(&ctx).cancelled_owned());
    tokio::spawn(async move { cancel.cancel() });
    tokio::time::timeout(LIMIT, waiter)
        .await
        .expect("woken")
        .expect("no panic");
    assert_eq!(ctx.dependents(), 0);
}

#[test]
fn cancels_from_other_threads_cross_the_bridge() {
    for _ in 0..100 {
        let token = CancellationToken::new();
        let ctx = ctx_from_token(&token);
        let (ctx, _c) = goctx::with_cancel(&ctx);
        let back = token_from_ctx(&ctx);
        let canceler = std::thread::spawn(move || token.cancel());
        assert_eq!(ctx.wait_timeout(LIMIT), Some(Error::Canceled));
        // The bridge cancels `back` in the notification pass of the cancel,
        // on the canceler's thread, before `token.cancel()` returns; this
        // thread may see `ctx` done before that pass reached the bridge.
        canceler.join().expect("no panic");
        assert!(back.is_cancelled());
    }
}
