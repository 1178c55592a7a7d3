//! goctx beside tokio-util's `CancellationToken`, in the shapes of Go's
//! `context/benchmark_test.go` (see docs/PERFORMANCE.md for the numbers and
//! the Go column).
//!
//! Every group is named after the Go benchmark it mirrors; inside a group
//! the functions are `goctx` and, where the token can express the same
//! operation, `tokio-util`. Run with
//! `cargo bench -p integration --bench context -- --warm-up-time 1 --measurement-time 3`.
//!
//! Conventions:
//! - Go discards the `CancelFunc`s of the contexts it builds in
//!   `CancelTree`; goctx's `CancelFunc` cancels on drop, so the matching
//!   call is `detach()` ("never cancel it"), and the contexts are freed
//!   inside the timed loop (Go pays for them in its GC instead).
//! - The multi-threaded rows follow Go's `RunParallel`: the iterations are
//!   split between the threads and the time reported is wall time divided
//!   by all iterations, so perfect scaling halves the single-thread number.
//! - "Poll once" means: create the future, poll it once with a no-op
//!   waker, drop it (Go's `select { case <-ctx.Done(): default: }`).

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::task::{Context as TaskContext, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use goctx::{Ctx, background, with_cancel, with_timeout, with_value};
use tokio_util::sync::CancellationToken;

/// The label of goctx's rows.
const GOCTX: &str = "goctx";
/// The label of tokio-util's rows.
const TOKIO: &str = "tokio-util";

const HOUR: Duration = Duration::from_secs(3600);

/// Polls `future` once with a no-op waker.
fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
    let mut cx = TaskContext::from_waker(Waker::noop());
    pin!(future).poll(&mut cx)
}

/// Runs `work(n)` on `threads` threads that start together, splitting
/// `iters` between them, and returns the wall time from the first start to
/// the last finish (Go's `RunParallel` accounting).
fn parallel<F>(iters: u64, threads: u64, work: F) -> Duration
where
    F: Fn(u64) + Sync,
{
    let barrier = Barrier::new(threads as usize);
    let spans: Vec<(Instant, Instant)> = thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let share = iters / threads + u64::from(t < iters % threads);
                let (barrier, work) = (&barrier, &work);
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    work(share);
                    (start, Instant::now())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread panicked"))
            .collect()
    });
    let start = spans.iter().map(|s| s.0).min().expect("no threads");
    let end = spans.iter().map(|s| s.1).max().expect("no threads");
    end - start
}

/// A `with_value` layer for the value benches.
struct Layer(#[allow(dead_code)] usize);
/// A type never stored: every lookup of it misses.
struct Missing;
/// The value `CommonParentCancel` looks up, like Go's `"key"`.
struct Key(&'static str);

// ---------------------------------------------------------------- CancelTree

/// Go's `buildContextTree`: a chain of `depth` `with_cancel` contexts under
/// `root`, whose cancel functions are let go of without canceling.
fn goctx_chain(root: &Ctx, depth: usize) -> Ctx {
    let mut ctx = root.clone();
    for _ in 0..depth {
        let (child, cancel) = with_cancel(&ctx);
        cancel.detach();
        ctx = child;
    }
    ctx
}

/// The same chain of tokens. Tokens are both context and cancel handle, and
/// a dropped token leaves the tree, so all of them are kept in `keep`.
fn tokio_chain(root: &CancellationToken, depth: usize, keep: &mut Vec<CancellationToken>) {
    let mut token = root.clone();
    for _ in 0..depth {
        token = token.child_token();
        keep.push(token.clone());
    }
}

fn cancel_tree(c: &mut Criterion) {
    for depth in [1usize, 10, 100, 1000] {
        // Background: the chain hangs from a root that is never canceled.
        // tokio-util has no such root; its chain starts with `new()`.
        let mut g = c.benchmark_group(format!("CancelTree/depth={depth}/Background"));
        g.bench_function(GOCTX, |b| {
            b.iter(|| drop(black_box(goctx_chain(&background(), depth))));
        });
        let mut keep = Vec::with_capacity(depth);
        g.bench_function(TOKIO, |b| {
            b.iter(|| {
                let root = CancellationToken::new();
                keep.push(root.clone());
                tokio_chain(&root, depth - 1, &mut keep);
                black_box(&keep);
                keep.clear();
            });
        });
        g.finish();

        // OpenCanceler: chain under a live cancelable root, then cancel it.
        let mut g = c.benchmark_group(format!("CancelTree/depth={depth}/OpenCanceler"));
        g.bench_function(GOCTX, |b| {
            b.iter(|| {
                let (root, cancel) = with_cancel(&background());
                let leaf = goctx_chain(&root, depth);
                cancel.cancel();
                drop(black_box(leaf));
            });
        });
        g.bench_function(TOKIO, |b| {
            b.iter(|| {
                let root = CancellationToken::new();
                tokio_chain(&root, depth, &mut keep);
                root.cancel();
                black_box(&keep);
                keep.clear();
            });
        });
        g.finish();

        // ClosedCanceler: chain under an already canceled root (every
        // context is born done).
        let mut g = c.benchmark_group(format!("CancelTree/depth={depth}/ClosedCanceler"));
        g.bench_function(GOCTX, |b| {
            b.iter(|| {
                let (root, cancel) = with_cancel(&background());
                cancel.cancel();
                drop(black_box(goctx_chain(&root, depth)));
            });
        });
        g.bench_function(TOKIO, |b| {
            b.iter(|| {
                let root = CancellationToken::new();
                root.cancel();
                tokio_chain(&root, depth, &mut keep);
                black_box(&keep);
                keep.clear();
            });
        });
        g.finish();
    }
}

// ------------------------------------------------------------------- FanOut

fn fan_out(c: &mut Criterion) {
    for children in [10usize, 100, 1000, 10_000] {
        let mut g = c.benchmark_group(format!("FanOut/children={children}"));
        let mut kids = Vec::with_capacity(children);
        g.bench_function(GOCTX, |b| {
            b.iter(|| {
                let (root, cancel) = with_cancel(&background());
                for _ in 0..children {
                    let (child, cancel_child) = with_cancel(&root);
                    cancel_child.detach();
                    kids.push(child);
                }
                cancel.cancel();
                black_box(&kids);
                kids.clear();
            });
        });
        let mut tokens = Vec::with_capacity(children);
        g.bench_function(TOKIO, |b| {
            b.iter(|| {
                let root = CancellationToken::new();
                for _ in 0..children {
                    tokens.push(root.child_token());
                }
                root.cancel();
                black_box(&tokens);
                tokens.clear();
            });
        });
        g.finish();
    }
}

// ------------------------------------------------------- CommonParentCancel

/// One `CommonParentCancel` operation on goctx: a child of the shared
/// parent, a value lookup through it, cancel, free.
fn goctx_child_cancel(shared: &Ctx) {
    let (ctx, cancel) = with_cancel(shared);
    assert_eq!(ctx.value::<Key>().map(|k| k.0), Some("value"));
    cancel.cancel();
    drop(black_box((ctx, cancel)));
}

/// The same on tokio-util (which has no values).
fn tokio_child_cancel(shared: &CancellationToken) {
    let child = shared.child_token();
    child.cancel();
    drop(black_box(child));
}

fn common_parent_cancel(c: &mut Criterion) {
    let root = with_value(&background(), Key("value"));
    let (shared, _cancel_shared) = with_cancel(&root);
    let shared_token = CancellationToken::new();
    for threads in [1u64, 2] {
        let mut g = c.benchmark_group(format!("CommonParentCancel/threads={threads}"));
        if threads == 1 {
            g.bench_function(GOCTX, |b| b.iter(|| goctx_child_cancel(&shared)));
            g.bench_function(TOKIO, |b| b.iter(|| tokio_child_cancel(&shared_token)));
        } else {
            g.bench_function(GOCTX, |b| {
                b.iter_custom(|iters| {
                    parallel(iters, threads, |n| {
                        (0..n).for_each(|_| goctx_child_cancel(&shared))
                    })
                });
            });
            g.bench_function(TOKIO, |b| {
                b.iter_custom(|iters| {
                    parallel(iters, threads, |n| {
                        (0..n).for_each(|_| tokio_child_cancel(&shared_token));
                    })
                });
            });
        }
        g.finish();
    }
    assert_eq!(shared.dependents(), 0, "a child leaked");
}

// ---------------------------------------------------------------- ChildDrop

/// RAII cancel: a child of a live parent whose handles are simply dropped
/// (goctx's last `CancelFunc` cancels on drop), beside tokio-util's
/// `drop_guard`, which cancels its token on drop too: equal work. Go has
/// no RAII cancel (`defer cancel()` is `CommonParentCancel`).
///
/// A third line, `tokio-util-plain-drop`, is a tokio-util child token
/// simply dropped: it leaves its parent but is not canceled, less work than
/// goctx's drop, which cancels. It is there because the side-by-side
/// harness compares that pair (docs/PERFORMANCE.md, issue 22); the
/// comparison of equal work is the first two lines.
fn child_drop(c: &mut Criterion) {
    let (shared, _cancel_shared) = with_cancel(&background());
    let shared_token = CancellationToken::new();
    let mut g = c.benchmark_group("ChildDrop");
    g.bench_function(GOCTX, |b| b.iter(|| drop(black_box(with_cancel(&shared)))));
    g.bench_function(TOKIO, |b| {
        b.iter(|| drop(black_box(shared_token.child_token().drop_guard())));
    });
    g.bench_function("tokio-util-plain-drop", |b| {
        b.iter(|| drop(black_box(shared_token.child_token())));
    });
    g.finish();
    assert_eq!(shared.dependents(), 0, "a child leaked");
}

// -------------------------------------------------------------- WithTimeout

fn with_timeout_bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    for live in [40usize, 4000, 400_000] {
        let mut g = c.benchmark_group(format!("WithTimeout/concurrency={live}"));
        if live >= 400_000 {
            g.sample_size(30);
        }

        // goctx: `live` one-hour deadlines in the timer, then one more
        // created and canceled per iteration.
        let held: Vec<_> = (0..live)
            .map(|_| with_timeout(&background(), HOUR))
            .collect();
        g.bench_function(GOCTX, |b| {
            b.iter(|| {
                let (ctx, cancel) = with_timeout(&background(), HOUR);
                cancel.cancel();
                drop(black_box((ctx, cancel)));
            });
        });
        drop(held);

        // tokio-util has no deadlines: the nearest equivalent is a child
        // token plus a tokio `Sleep` armed in the runtime's timer wheel
        // (polled once so that it registers), dropped on cancel.
        let _enter = rt.enter();
        let root = CancellationToken::new();
        let held: Vec<_> = (0..live)
            .map(|_| {
                let mut sleep = Box::pin(tokio::time::sleep(HOUR));
                assert!(poll_once(sleep.as_mut()).is_pending());
                (root.child_token(), sleep)
            })
            .collect();
        g.bench_function(TOKIO, |b| {
            b.iter(|| {
                let token = root.child_token();
                let mut sleep = pin!(tokio::time::sleep(HOUR));
                let _ = poll_once(sleep.as_mut());
                token.cancel();
                drop(black_box(token));
            });
        });
        drop(held);
        g.finish();
    }
}

// ------------------------------------------------------- Err, Done, values

fn check_canceled(c: &mut Criterion) {
    let (ctx, cancel) = with_cancel(&background());
    cancel.cancel();
    let token = CancellationToken::new();
    token.cancel();

    let mut g = c.benchmark_group("CheckCanceled/Err");
    g.bench_function(GOCTX, |b| b.iter(|| black_box(black_box(&ctx).err())));
    g.bench_function(TOKIO, |b| {
        b.iter(|| black_box(black_box(&token).is_cancelled()))
    });
    g.finish();

    let mut g = c.benchmark_group("CheckCanceled/Done");
    g.bench_function(GOCTX, |b| {
        b.iter(|| black_box(poll_once(black_box(&ctx).done())))
    });
    g.bench_function(TOKIO, |b| {
        b.iter(|| black_box(poll_once(black_box(&token).cancelled())));
    });
    g.finish();
}

/// Reference costs of the primitives everything else is made of, on this
/// machine and in this harness: one `Acquire` load (the floor of an
/// `err()` check), one uncontended atomic read-modify-write, an
/// uncontended `parking_lot` lock + unlock, and a small heap allocation +
/// free (the size of a cancel node).
fn floor(c: &mut Criterion) {
    let flag = std::sync::atomic::AtomicU8::new(0);
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let lock = parking_lot::Mutex::new(0u64);

    let mut g = c.benchmark_group("Floor/atomic-load");
    g.bench_function("std", |b| {
        b.iter(|| black_box(black_box(&flag).load(Ordering::Acquire)))
    });
    g.finish();
    let mut g = c.benchmark_group("Floor/atomic-rmw");
    g.bench_function("std", |b| {
        b.iter(|| black_box(black_box(&counter).fetch_add(1, Ordering::AcqRel)))
    });
    g.finish();
    let mut g = c.benchmark_group("Floor/lock-unlock");
    g.bench_function("parking_lot", |b| b.iter(|| *black_box(&lock).lock() += 1));
    g.finish();
    let mut g = c.benchmark_group("Floor/alloc-free-96B");
    g.bench_function("std", |b| b.iter(|| drop(black_box(Box::new([0u64; 12])))));
    g.finish();
}

fn err_ok_canceled(c: &mut Criterion) {
    let (live, _keep) = with_cancel(&background());
    let (dead, cancel) = with_cancel(&background());
    cancel.cancel();
    let live_token = CancellationToken::new();
    let dead_token = CancellationToken::new();
    dead_token.cancel();

    let mut g = c.benchmark_group("ErrOK");
    g.bench_function(GOCTX, |b| b.iter(|| black_box(black_box(&live).err())));
    g.bench_function(TOKIO, |b| {
        b.iter(|| black_box(black_box(&live_token).is_cancelled()))
    });
    g.finish();

    let mut g = c.benchmark_group("ErrCanceled");
    g.bench_function(GOCTX, |b| b.iter(|| black_box(black_box(&dead).err())));
    g.bench_function(TOKIO, |b| {
        b.iter(|| black_box(black_box(&dead_token).is_cancelled()))
    });
    g.finish();
}

fn context_cancel_done(c: &mut Criterion) {
    let (ctx, _cancel) = with_cancel(&background());
    let token = CancellationToken::new();
    // Go's BenchmarkContextCancelDone runs on every P: 2 threads here.
    let mut g = c.benchmark_group("ContextCancelDone");
    g.bench_function(GOCTX, |b| {
        b.iter_custom(|iters| {
            parallel(iters, 2, |n| {
                for _ in 0..n {
                    assert!(poll_once(black_box(&ctx).done()).is_pending());
                }
            })
        });
    });
    g.bench_function(TOKIO, |b| {
        b.iter_custom(|iters| {
            parallel(iters, 2, |n| {
                for _ in 0..n {
                    assert!(poll_once(black_box(&token).cancelled()).is_pending());
                }
            })
        });
    });
    g.finish();

    // The same on one thread: the cost without contention.
    let mut g = c.benchmark_group("ContextCancelDone/threads=1");
    g.bench_function(GOCTX, |b| {
        b.iter(|| black_box(poll_once(black_box(&ctx).done())))
    });
    g.bench_function(TOKIO, |b| {
        b.iter(|| black_box(poll_once(black_box(&token).cancelled())));
    });
    g.finish();
    assert_eq!(ctx.dependents(), 0, "a done() future leaked its waker");
}

fn deep_value(c: &mut Criterion) {
    // tokio-util has no values: goctx only.
    for depth in [10usize, 20, 30, 50, 100] {
        let ctx = (0..depth).fold(background(), |ctx, i| with_value(&ctx, Layer(i)));
        let mut g = c.benchmark_group(format!("DeepValueSameGoRoutine/depth={depth}"));
        g.bench_function(GOCTX, |b| {
            b.iter(|| black_box(black_box(&ctx).value::<Missing>().is_some()));
        });
        g.finish();
    }
}

// ------------------------------------------------------------- Wake latency

/// Polls `future` to completion, raising `registered` once a poll returned
/// `Pending` (the waiter is then registered with the context).
async fn flag_when_pending<F: Future>(future: F, registered: &AtomicBool) -> F::Output {
    let mut future = pin!(future);
    std::future::poll_fn(|cx| {
        let poll = future.as_mut().poll(cx);
        if poll.is_pending() {
            registered.store(true, Ordering::Release);
        }
        poll
    })
    .await
}

/// Spins until `flag` is up, then a little longer so that the waiter has
/// gone to sleep (parked thread or idle runtime worker).
fn wait_registered(flag: &AtomicBool) {
    while !flag.load(Ordering::Acquire) {
        std::hint::spin_loop();
    }
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_micros(30) {
        std::hint::spin_loop();
    }
}

/// Time from a cancel on this thread to a waiter, armed by `arm`, running
/// again; `arm` gets the registered flag and a sender for its wake time.
/// Summed over `iters` rounds.
fn wake_rounds<T>(
    iters: u64,
    mut make: impl FnMut() -> (T, Box<dyn FnOnce()>),
    mut arm: impl FnMut(T, Arc<AtomicBool>, mpsc::Sender<Instant>),
) -> Duration {
    let mut total = Duration::ZERO;
    let (tx, rx) = mpsc::channel();
    for _ in 0..iters {
        let (waiter_side, cancel) = make();
        let registered = Arc::new(AtomicBool::new(false));
        arm(waiter_side, registered.clone(), tx.clone());
        wait_registered(&registered);
        let start = Instant::now();
        cancel();
        let woke = rx.recv().expect("waiter gone");
        total += woke.saturating_duration_since(start);
    }
    total
}

fn wake_latency(c: &mut Criterion) {
    // A runtime with one worker: the main thread cancels, the worker runs
    // the awaiting task (2 cores, one each).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("tokio runtime");

    let mut g = c.benchmark_group("WakeLatency/task");
    g.sample_size(30);
    g.bench_function(GOCTX, |b| {
        b.iter_custom(|iters| {
            wake_rounds(
                iters,
                || {
                    let (ctx, cancel) = with_cancel(&background());
                    (ctx, Box::new(move || cancel.cancel()) as Box<dyn FnOnce()>)
                },
                |ctx, registered, tx| {
                    rt.spawn(async move {
                        flag_when_pending(ctx.done(), &registered).await;
                        let _ = tx.send(Instant::now());
                    });
                },
            )
        });
    });
    g.bench_function(TOKIO, |b| {
        b.iter_custom(|iters| {
            wake_rounds(
                iters,
                || {
                    let token = CancellationToken::new();
                    let cancel = token.clone();
                    (
                        token,
                        Box::new(move || cancel.cancel()) as Box<dyn FnOnce()>,
                    )
                },
                |token, registered, tx| {
                    rt.spawn(async move {
                        flag_when_pending(token.cancelled(), &registered).await;
                        let _ = tx.send(Instant::now());
                    });
                },
            )
        });
    });
    g.finish();

    // A plain thread blocked until the context is done: goctx's `wait()`;
    // tokio-util has no blocking wait, so `block_on(cancelled())`.
    let (jobs, inbox) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
    let waiter = thread::spawn(move || inbox.into_iter().for_each(|job| job()));
    let mut g = c.benchmark_group("WakeLatency/thread");
    g.sample_size(30);
    g.bench_function(GOCTX, |b| {
        b.iter_custom(|iters| {
            wake_rounds(
                iters,
                || {
                    let (ctx, cancel) = with_cancel(&background());
                    (ctx, Box::new(move || cancel.cancel()) as Box<dyn FnOnce()>)
                },
                |ctx, registered, tx| {
                    let watch = ctx.clone();
                    jobs.send(Box::new(move || {
                        ctx.wait();
                        let _ = tx.send(Instant::now());
                    }))
                    .expect("waiter thread gone");
                    // `wait()` registers a waker: visible as a dependent.
                    while watch.dependents() == 0 {
                        std::hint::spin_loop();
                    }
                    registered.store(true, Ordering::Release);
                },
            )
        });
    });
    g.bench_function(TOKIO, |b| {
        b.iter_custom(|iters| {
            wake_rounds(
                iters,
                || {
                    let token = CancellationToken::new();
                    let cancel = token.clone();
                    (
                        token,
                        Box::new(move || cancel.cancel()) as Box<dyn FnOnce()>,
                    )
                },
                |token, registered, tx| {
                    jobs.send(Box::new(move || {
                        futures::executor::block_on(flag_when_pending(
                            token.cancelled(),
                            &registered,
                        ));
                        let _ = tx.send(Instant::now());
                    }))
                    .expect("waiter thread gone");
                },
            )
        });
    });
    g.finish();
    drop(jobs);
    waiter.join().expect("waiter thread panicked");
}

criterion_group!(
    benches,
    floor,
    err_ok_canceled,
    check_canceled,
    context_cancel_done,
    common_parent_cancel,
    child_drop,
    cancel_tree,
    fan_out,
    with_timeout_bench,
    deep_value,
    wake_latency
);
criterion_main!(benches);
