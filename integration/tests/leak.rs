//! Leak checks with a counting allocator: live memory stays flat across
//! create/drop cycles of every kind of context, and a 100 000-deep chain
//! is freed completely, whichever way it ends.
//!
//! The global allocator below counts live bytes and live allocations for
//! the whole process, with atomics (every thread, including goctx's timer
//! and callback threads). So that nothing else allocates while it measures,
//! this file holds a single `#[test]`, which runs its checks in sequence.
//!
//! Method: run one warm-up round of a workload (it fills lazily created
//! statics, starts the timer and callback threads, grows reusable buffers
//! to their working size), read the live counters, run the workload many
//! more times, read them again. A leak of even one small allocation per
//! hundred cycles exceeds the tolerance by orders of magnitude; the
//! tolerance only absorbs the callback pool starting or retiring a thread.
//!
//! Cycle counts fit in about ten seconds in a debug build (`cargo test
//! --test leak`); `GOCTX_LEAK_SCALE=10` multiplies them (a release build,
//! `cargo test -p integration --release --test leak`, runs the full million per kind in
//! comparable time).

mod common;
use common::Wrapper;
use common::alloc::signed;
use common::causes::Why;
use common::hub::{Hub, NeverDone};

use std::future::Future;
use std::pin::pin;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use goctx::{Ctx, Error, background};

// ---------------------------------------------------------------------------
// The counting allocator

#[global_allocator]
static ALLOCATOR: common::alloc::Counting = common::alloc::Counting::WITH_PROCESS_TOTALS;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Live {
    bytes: i64,
    allocs: i64,
    /// Threads of the process (goctx's callback pool grows and shrinks).
    threads: i64,
}

fn live() -> Live {
    let threads = threads();
    let (bytes, allocs) = common::alloc::process_live();
    Live {
        bytes,
        allocs,
        threads,
    }
}

/// The number of threads of this process, where the platform tells.
fn threads() -> i64 {
    std::fs::read_dir("/proc/self/task").map_or(0, |dir| signed(dir.count()))
}

/// Slack for lazily grown buffers that a warm-up round may not have
/// reached yet.
const SLACK_BYTES: i64 = 4 * 1024;
const SLACK_ALLOCS: i64 = 16;
/// What one more thread in goctx's callback pool costs the heap (its
/// handle, name, closure and thread-local bookkeeping), generously.
const THREAD_BYTES: i64 = 4 * 1024;
const THREAD_ALLOCS: i64 = 32;

/// For workloads that start no thread and grow no buffer past what the
/// warm-up reached: back to the very same live memory.
fn check_exact(what: &str, before: Live, after: Live) -> Result<(), String> {
    if after.bytes <= before.bytes && after.allocs <= before.allocs {
        return Ok(());
    }
    Err(format!(
        "{what}: {} bytes in {} allocations still live afterwards (before {before:?}, after {after:?})",
        after.bytes - before.bytes,
        after.allocs - before.allocs
    ))
}

fn check_flat(what: &str, before: Live, after: Live) -> Result<(), String> {
    let bytes = after.bytes - before.bytes;
    let allocs = after.allocs - before.allocs;
    let new_threads = (after.threads - before.threads).max(0);
    if bytes <= SLACK_BYTES + new_threads * THREAD_BYTES
        && allocs <= SLACK_ALLOCS + new_threads * THREAD_ALLOCS
    {
        return Ok(());
    }
    Err(format!(
        "{what}: live memory grew by {bytes} bytes in {allocs} allocations, with {new_threads} more threads \
         (before {before:?}, after {after:?})"
    ))
}

fn scale() -> usize {
    std::env::var("GOCTX_LEAK_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

// ---------------------------------------------------------------------------
// Test doubles

struct RequestId(#[allow(dead_code)] u64);

fn poll_pending(ctx: &Ctx) {
    let mut done = pin!(ctx.done());
    let polled = done
        .as_mut()
        .poll(&mut TaskContext::from_waker(Waker::noop()));
    assert!(matches!(polled, Poll::Pending));
}

// ---------------------------------------------------------------------------
// Workloads: each creates and drops one context (or registration) of one
// kind under the long-lived `parent`, and checks it did what it should.

type Workload = fn(&Ctx, &Shared);

struct Shared {
    wrapped: Ctx,
    /// A user context with its own subscriber list, `own_hub` (never done
    /// here), so that derived contexts register with user code and must
    /// unregister.
    own: Ctx,
    own_hub: Arc<Hub>,
    tx: mpsc::Sender<()>,
    rx: Mutex<mpsc::Receiver<()>>,
}

fn cancel_explicitly(parent: &Ctx, _: &Shared) {
    let (ctx, cancel) = goctx::with_cancel(parent);
    cancel.cancel();
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

fn cancel_with_cause_and_drop(parent: &Ctx, _: &Shared) {
    let (ctx, cancel) = goctx::with_cancel_cause(parent);
    let (child, _c) = goctx::with_cancel(&ctx);
    cancel.cancel_with_cause(Why("why"));
    assert!(child.cause().is_some());
}

fn drop_cancel_func(parent: &Ctx, _: &Shared) {
    let (ctx, cancel) = goctx::with_cancel(parent);
    drop(cancel);
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

fn detach_and_drop(parent: &Ctx, _: &Shared) {
    let (ctx, cancel) = goctx::with_cancel(parent);
    cancel.detach();
    drop(ctx);
}

fn timeout_hour(parent: &Ctx, _: &Shared) {
    let (ctx, cancel) = goctx::with_timeout(parent, Duration::from_secs(3600));
    assert!(ctx.deadline().is_some());
    drop(cancel);
}

fn timeout_hour_detached(parent: &Ctx, _: &Shared) {
    let (ctx, cancel) = goctx::with_timeout(parent, Duration::from_secs(3600));
    cancel.detach();
    drop(ctx);
}

fn timeout_zero(parent: &Ctx, _: &Shared) {
    let (ctx, _cancel) = goctx::with_timeout_cause(parent, Duration::ZERO, Why("why"));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}

fn deadline_centuries_ahead(parent: &Ctx, _: &Shared) {
    let at = Instant::now() + Duration::from_secs(1000 * 365 * 24 * 3600);
    let (ctx, cancel) = goctx::with_deadline(parent, at);
    assert!(ctx.deadline().is_some());
    cancel.cancel();
}

fn value(parent: &Ctx, _: &Shared) {
    let ctx = goctx::with_value(parent, RequestId(7));
    let (child, _c) = goctx::with_cancel(&ctx);
    assert!(child.value::<RequestId>().is_some());
}

fn without_cancel(parent: &Ctx, _: &Shared) {
    let ctx = goctx::without_cancel(parent);
    let (child, _c) = goctx::with_cancel(&ctx);
    assert_eq!(child.err(), None);
}

fn after_func_stopped(parent: &Ctx, _: &Shared) {
    let handle = goctx::after_func(parent, || unreachable!("stopped"));
    assert!(handle.stop());
}

fn after_func_dropped_handle(parent: &Ctx, _: &Shared) {
    let (ctx, cancel) = goctx::with_cancel(parent);
    let handle = goctx::after_func(&ctx, || {});
    drop(handle); // stays armed; the cancel below frees the registration
    drop(ctx);
    drop(cancel);
}

fn after_func_fired(parent: &Ctx, shared: &Shared) {
    let (ctx, cancel) = goctx::with_cancel(parent);
    let tx = shared.tx.clone();
    let _h = goctx::after_func(&ctx, move || tx.send(()).unwrap_or(()));
    cancel.cancel();
    let rx = shared.rx.lock().unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(()));
}

fn done_polled_then_dropped(parent: &Ctx, _: &Shared) {
    let (ctx, _cancel) = goctx::with_cancel(parent);
    poll_pending(&ctx);
    poll_pending(parent);
}

fn wait_timeout_zero(parent: &Ctx, _: &Shared) {
    assert_eq!(parent.wait_timeout(Duration::ZERO), None);
}

fn custom_child(_: &Ctx, shared: &Shared) {
    let (ctx, cancel) = goctx::with_cancel(&shared.wrapped);
    poll_pending(&ctx);
    cancel.cancel();
    let (ctx, cancel) = goctx::with_cancel(&shared.own);
    poll_pending(&shared.own);
    drop((ctx, cancel));
    assert!(shared.own_hub.is_empty());
}

fn short_deadline_fires(parent: &Ctx, _: &Shared) {
    let (ctx, _cancel) = goctx::with_timeout(parent, Duration::from_micros(100));
    assert_eq!(
        ctx.wait_timeout(Duration::from_secs(10)),
        Some(Error::DeadlineExceeded)
    );
}

/// (name, workload, cycles per round in a debug build)
const WORKLOADS: &[(&str, Workload, usize)] = &[
    ("with_cancel + cancel", cancel_explicitly, 100_000),
    (
        "with_cancel_cause + child + cancel_with_cause",
        cancel_with_cause_and_drop,
        50_000,
    ),
    (
        "with_cancel + drop the CancelFunc",
        drop_cancel_func,
        100_000,
    ),
    ("with_cancel + detach + drop", detach_and_drop, 100_000),
    ("with_timeout(1h) + drop", timeout_hour, 50_000),
    (
        "with_timeout(1h) + detach + drop",
        timeout_hour_detached,
        50_000,
    ),
    ("with_timeout_cause(0)", timeout_zero, 50_000),
    (
        "with_deadline(1000 years) + cancel",
        deadline_centuries_ahead,
        50_000,
    ),
    ("with_value + child", value, 100_000),
    ("without_cancel + child", without_cancel, 100_000),
    ("after_func + stop", after_func_stopped, 100_000),
    (
        "after_func, handle dropped, context canceled",
        after_func_dropped_handle,
        50_000,
    ),
    ("after_func that runs", after_func_fired, 5_000),
    (
        "done() polled, then dropped",
        done_polled_then_dropped,
        100_000,
    ),
    ("wait_timeout(0)", wait_timeout_zero, 50_000),
    ("custom context children", custom_child, 50_000),
    ("deadline that fires", short_deadline_fires, 1_000),
];

fn run_workloads(parent: &Ctx, shared: &Shared, total: &mut usize, failures: &mut Vec<String>) {
    let rounds = scale();
    for &(name, workload, cycles) in WORKLOADS {
        // Warm-up round, then measure across the rest.
        for _ in 0..cycles / 10 {
            workload(parent, shared);
        }
        let before = live();
        let start = Instant::now();
        for _ in 0..cycles * rounds {
            workload(parent, shared);
        }
        let after = live();
        *total += cycles * rounds;
        assert_eq!(
            parent.dependents(),
            0,
            "{name}: registrations left on the parent"
        );
        failures.extend(check_flat(name, before, after).err());
        if std::env::var_os("GOCTX_LEAK_VERBOSE").is_some() {
            eprintln!(
                "{name}: {} cycles in {:?}, {:+} bytes",
                cycles * rounds,
                start.elapsed(),
                after.bytes - before.bytes
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The deep chain

const DEPTH: usize = 100_000;

#[derive(Clone, Copy, Debug)]
enum End {
    /// Cancel the root, then drop every handle, root first.
    CancelThenDropRootFirst,
    /// Cancel the root, then drop every handle, leaf first.
    CancelThenDropLeafFirst,
    /// Drop every handle but the root's (detaching the cancel functions,
    /// keeping only the leaf), then cancel the root, then drop the leaf.
    DropThenCancel,
    /// Detach everything and drop it all while the chain is live: every
    /// node leaves its parent on the way out.
    DropLive,
}

/// A chain mixing every kind of node: mostly cancel nodes, with values,
/// some hour-long timeouts, a `without_cancel` link and a custom wrapper.
/// Built, ended as `end` says, and dropped, on a default-size thread
/// stack.
fn chain(end: End) {
    let body = move || {
        let (root, cancel_root) = goctx::with_cancel(&background());
        let mut ctxs: Vec<Ctx> = Vec::with_capacity(DEPTH);
        let mut cancels = Vec::with_capacity(DEPTH);
        let mut tip = root.clone();
        for i in 0..DEPTH {
            tip = if i == DEPTH / 2 {
                goctx::without_cancel(&goctx::with_value(&tip, i))
            } else if i == DEPTH / 3 {
                Ctx::from_context(Wrapper(tip.clone()))
            } else if i % 10 == 3 {
                goctx::with_value(&tip, i)
            } else {
                // A timeout node now and then (most become plain cancel
                // nodes: an earlier ancestor deadline wins, as in Go).
                let (ctx, cancel) = if i % 1000 == 5 {
                    goctx::with_timeout(&tip, Duration::from_secs(3600))
                } else {
                    goctx::with_cancel(&tip)
                };
                cancels.push(cancel);
                ctx
            };
            ctxs.push(tip.clone());
        }
        let leaf = tip;
        // Nothing below the `without_cancel` link sees the root's cancel.
        match end {
            End::CancelThenDropRootFirst | End::CancelThenDropLeafFirst => {
                cancel_root.cancel();
                assert_eq!(ctxs[DEPTH / 2 - 1].err(), Some(Error::Canceled));
                assert_eq!(
                    leaf.err(),
                    None,
                    "a descendant of the without_cancel link was canceled"
                );
                if let End::CancelThenDropLeafFirst = end {
                    ctxs.reverse();
                    cancels.reverse();
                }
                drop(ctxs);
                drop(cancels);
                drop(leaf);
                drop(root);
            }
            End::DropThenCancel => {
                for cancel in cancels {
                    cancel.detach();
                }
                drop(ctxs);
                assert_eq!(root.dependents(), 1);
                cancel_root.cancel();
                assert_eq!(leaf.err(), None);
                drop(leaf);
                drop(root);
            }
            End::DropLive => {
                for cancel in cancels {
                    cancel.detach();
                }
                ctxs.reverse();
                drop(ctxs);
                drop(leaf);
                assert_eq!(root.dependents(), 0, "the chain left a registration behind");
                drop(root);
            }
        }
        drop(cancel_root);
    };
    // The default stack size for spawned threads (2 MiB unless
    // RUST_MIN_STACK says otherwise): no recursion on the chain's length.
    thread::Builder::new()
        .name(format!("chain {end:?}"))
        .spawn(body)
        .expect("spawn")
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}

// ---------------------------------------------------------------------------

#[test]
fn memory_stays_flat() {
    let started = Instant::now();
    let (parent, cancel_parent) = goctx::with_cancel(&background());
    let own_hub = Arc::new(Hub::default());
    let (tx, rx) = mpsc::channel();
    let shared = Shared {
        wrapped: Ctx::from_context(Wrapper(parent.clone())),
        own: Ctx::from_context(NeverDone(own_hub.clone())),
        own_hub,
        tx,
        rx: Mutex::new(rx),
    };

    let mut total = 0;
    let mut failures = Vec::new();
    run_workloads(&parent, &shared, &mut total, &mut failures);

    // Chains: warm up once (thread start-up, lazily created statics), then
    // every way of ending must come back to the same live memory.
    chain(End::CancelThenDropRootFirst);
    for end in [
        End::CancelThenDropRootFirst,
        End::CancelThenDropLeafFirst,
        End::DropThenCancel,
        End::DropLive,
    ] {
        let before = live();
        let start = Instant::now();
        chain(end);
        let after = live();
        if std::env::var_os("GOCTX_LEAK_VERBOSE").is_some() {
            eprintln!(
                "chain {end:?}: {:?}, {:+} bytes",
                start.elapsed(),
                after.bytes - before.bytes
            );
        }
        failures.extend(check_exact(&format!("100 000-deep chain, {end:?}"), before, after).err());
    }

    assert_eq!(parent.dependents(), 0);
    cancel_parent.cancel();
    eprintln!(
        "leak: {total} create/drop cycles and 5 deep chains in {:?}",
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "memory not flat:\n{}",
        failures.join("\n")
    );
}
