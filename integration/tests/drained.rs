//! `Ctx::drained` (issue 17): ready once every context derived from a
//! base is gone, canceled or not; the drain step of a graceful shutdown.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};
use std::time::Duration;

use goctx::{background, merge, with_cancel, with_timeout, with_value, without_cancel};

/// Generous bound on every wait: a correct run takes milliseconds.
const LIMIT: Duration = Duration::from_secs(10);

fn ready<F: Future>(future: &mut std::pin::Pin<&mut F>) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    future.as_mut().poll(&mut cx).is_ready()
}

#[test]
fn nothing_derived_is_drained_at_once() {
    let (base, _cancel) = with_cancel(&background());
    let _own_handle = base.clone(); // handles of the base itself do not count
    let done = base.done_owned();
    let mut drained = pin!(base.drained());
    assert!(ready(&mut drained));
    drop(done);
}

#[test]
fn a_cancel_is_not_a_drain_only_the_drop_of_every_handle_is() {
    let (base, shutdown) = with_cancel(&background());
    let (request, request_cancel) = with_timeout(&base, Duration::from_secs(60));
    let request_clone = request.clone();
    shutdown.cancel();
    assert!(request.err().is_some());
    assert_eq!(base.dependents(), 0, "canceled: unregistered at once");
    let mut drained = pin!(base.drained());
    assert!(!ready(&mut drained), "the request context is still held");
    drop(request);
    assert!(!ready(&mut drained), "a clone is still held");
    drop(request_clone);
    assert!(!ready(&mut drained), "its CancelFunc is still held");
    drop(request_cancel);
    assert!(ready(&mut drained));
}

#[test]
fn every_kind_of_derived_context_counts_and_so_do_grandchildren() {
    let (base, _cancel) = with_cancel(&background());
    let valued = with_value(&base, "tenant");
    let (grandchild, grandchild_cancel) = with_cancel(&valued);
    let detached = without_cancel(&base);
    let (other, _other_cancel) = with_cancel(&background());
    let (merged, merged_cancel) = merge(&other, &base); // base as the other parent
    let mut drained = pin!(base.drained());
    drop(valued); // kept alive by the grandchild
    assert!(!ready(&mut drained));
    drop((grandchild, grandchild_cancel));
    assert!(!ready(&mut drained));
    drop(detached);
    assert!(!ready(&mut drained));
    drop((merged, merged_cancel));
    assert!(ready(&mut drained));
    // A value context is drained by its own children too.
    let valued = with_value(&base, 7_u32);
    let (child, child_cancel) = with_cancel(&valued);
    let mut valued_drained = pin!(valued.drained());
    assert!(!ready(&mut valued_drained));
    drop((child, child_cancel));
    assert!(ready(&mut valued_drained));
}

#[test]
fn a_context_derived_later_is_waited_for_too() {
    let (base, _cancel) = with_cancel(&background());
    let mut drained = pin!(base.drained());
    assert!(ready(&mut drained));
    let (late, late_cancel) = with_cancel(&base);
    assert!(!ready(&mut drained));
    drop((late, late_cancel));
    assert!(ready(&mut drained));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_task_wakes_when_the_last_handle_goes_elsewhere() {
    let (base, shutdown) = with_cancel(&background());
    let (request, request_cancel) = with_cancel(&base);
    // A handler's task winding down after the shutdown.
    let handler = tokio::spawn(async move {
        request.done().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop((request, request_cancel));
    });
    shutdown.cancel();
    tokio::time::timeout(LIMIT, base.drained())
        .await
        .expect("drained once the handler let go");
    assert!(handler.is_finished() || handler.await.is_ok());
}

#[test]
fn wait_drained_blocks_until_the_last_thread_lets_go() {
    let (base, shutdown) = with_cancel(&background());
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let (ctx, cancel) = with_cancel(&base);
            std::thread::spawn(move || {
                ctx.wait();
                std::thread::sleep(Duration::from_millis(5 * i));
                drop((ctx, cancel));
            })
        })
        .collect();
    assert!(!base.wait_drained_timeout(Duration::from_millis(1)));
    shutdown.cancel();
    assert!(
        base.wait_drained_timeout(LIMIT),
        "drained after the workers"
    );
    for worker in workers {
        worker.join().unwrap();
    }
    base.wait_drained();
}

#[test]
fn many_children_come_and_go_on_threads_and_the_count_ends_at_zero() {
    let (base, _cancel) = with_cancel(&background());
    std::thread::scope(|s| {
        for t in 0..4 {
            let base = &base;
            s.spawn(move || {
                for i in 0..2_000 {
                    let (ctx, cancel) = with_cancel(base);
                    let valued = with_value(&ctx, i);
                    if (i + t) % 3 == 0 {
                        cancel.cancel();
                    }
                    drop((valued, cancel, ctx));
                }
            });
        }
        // A waiter racing the churn: it may see zero between children, or
        // at the end; it must not hang.
        s.spawn(|| assert!(base.wait_drained_timeout(LIMIT)));
    });
    let mut drained = pin!(base.drained());
    assert!(ready(&mut drained));
}

#[test]
#[should_panic(expected = "drained() on background() or todo()")]
fn draining_a_root_panics_with_a_clear_message() {
    drop(background().drained());
}
