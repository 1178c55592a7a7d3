//! Allocation budgets: goctx's counterpart of Go's `TestAllocs`.
//!
//! A counting global allocator records, per thread, how many allocations
//! (and how many bytes) the measured operation makes. Counts, not times:
//! the test is deterministic. Only the thread that runs the measurement is
//! counted, so the test harness's threads and goctx's own helper threads
//! (the timer thread) cannot disturb the numbers; everything is measured in
//! one `#[test]`, in sequence.
//!
//! Each budget is the count measured on the current implementation; Go's
//! budget for the same operation (from `context/x_test.go`, Go 1.27) is
//! named beside it. Run with `--nocapture` to see the table of counts.

mod common;
use common::alloc::signed;

use std::future::Future;
use std::pin::pin;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use goctx::{Ctx, background, with_cancel, with_timeout, with_value};

#[global_allocator]
static GLOBAL: common::alloc::Counting = common::alloc::Counting::PER_THREAD;

/// What one run of an operation cost on average.
#[derive(Debug, Clone, Copy)]
struct Cost {
    allocs: f64,
    bytes: f64,
}

/// Runs `op` once to warm up (lazy statics, first-use buffers), then
/// `RUNS` times with counting on; returns the average per run.
fn per_run(mut op: impl FnMut()) -> Cost {
    const RUNS: u32 = 100;
    op();
    let (allocs, bytes) = counted(|| {
        for _ in 0..RUNS {
            op();
        }
    });
    Cost {
        allocs: allocs as f64 / f64::from(RUNS),
        bytes: bytes as f64 / f64::from(RUNS),
    }
}

/// Counts what `f` allocates on this thread: (allocations, bytes).
fn counted(f: impl FnOnce()) -> (u64, u64) {
    let (counts, ()) = common::alloc::on_this_thread(f);
    (counts.allocs, counts.bytes)
}

/// Bytes that `f` leaves in use on this thread (allocated minus freed),
/// with what it returns still alive.
fn retained<T>(f: impl FnOnce() -> T) -> (i64, T) {
    let (counts, kept) = common::alloc::on_this_thread(f);
    (counts.live, kept)
}

fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
    let mut cx = TaskContext::from_waker(Waker::noop());
    pin!(future).poll(&mut cx)
}

/// A value type for `with_value`, with a payload (so boxed on the heap).
struct RequestId(#[allow(dead_code)] u64);
/// A zero-sized value: its box needs no allocation.
struct Flag;

#[test]
fn allocation_budgets() {
    let mut report = Vec::new();
    let mut check = |name: &str, cost: Cost, budget: f64, go: &str| {
        report.push(format!(
            "| {name} | {} | {} | {budget} | {go} |",
            cost.allocs, cost.bytes
        ));
        // The epsilon absorbs the rounding of amortized (per-level) costs.
        assert!(
            cost.allocs <= budget + 1e-9,
            "{name}: {} allocations per run, budget {budget}",
            cost.allocs
        );
    };

    // Go: `Background()` limit 0.
    let cost = per_run(|| drop(std::hint::black_box(background())));
    check("background()", cost, 0.0, "0");

    // Go: `WithCancel(bg)` + `cancel()` + `<-c.Done()` limit 5.
    let cost = per_run(|| {
        let (ctx, cancel) = with_cancel(&background());
        cancel.cancel();
        assert!(poll_once(ctx.done()).is_ready());
    });
    check("with_cancel(background) + cancel + done()", cost, 1.0, "5");

    // The same under a live cancelable parent: the child is registered
    // with it. Go: not measured (2 allocs, 96 B in BenchmarkCommonParentCancel).
    let (parent, _cancel_parent) = with_cancel(&background());
    let cost = per_run(|| {
        let (ctx, cancel) = with_cancel(&parent);
        cancel.cancel();
        drop(ctx);
    });
    check(
        "with_cancel(live parent) + cancel",
        cost,
        1.0,
        "(2, benchmark)",
    );
    assert_eq!(parent.dependents(), 0);

    // Ending with a cause stores it where the node's registrations were,
    // not in a box of its own: the node, plus the short-lived box that
    // `cancel_with_cause`'s `Into<Box<dyn Error>>` argument makes of a
    // `Cause` made once (kept as it is, not copied). Go stores the cause in
    // the node too (`WithCancelCause`, not in Go's TestAllocs).
    let cause = goctx::Cause::new(std::io::Error::other("shutting down"));
    let cost = per_run(|| {
        let (ctx, cancel) = goctx::with_cancel_cause(&parent);
        cancel.cancel_with_cause(cause.clone());
        assert!(goctx::Cause::ptr_eq(&ctx.cause().unwrap(), &cause));
    });
    check(
        "with_cancel_cause(live parent) + cancel_with_cause(made once)",
        cost,
        2.0,
        "-",
    );
    assert_eq!(parent.dependents(), 0);

    // Go: `WithValue(bg, k1, nil)` + `Value(k1)` limit 3. A boxed value
    // costs the node plus the box; a zero-sized one only the node.
    let cost = per_run(|| {
        let ctx = with_value(&background(), RequestId(7));
        assert!(ctx.value::<RequestId>().is_some());
    });
    check("with_value(u64 payload) + value()", cost, 2.0, "3");
    let cost = per_run(|| {
        let ctx = with_value(&background(), Flag);
        assert!(ctx.value::<Flag>().is_some());
    });
    check("with_value(zero-sized) + value()", cost, 1.0, "3");

    // Go: `WithTimeout(bg, 5ms)` + `cancel()` + `<-c.Done()` limit 8. The
    // first deadline starts the timer thread; `per_run` warms up first.
    let cost = per_run(|| {
        let (ctx, cancel) = with_timeout(&background(), Duration::from_secs(3600));
        cancel.cancel();
        assert!(poll_once(ctx.done()).is_ready());
    });
    check(
        "with_timeout(1h) + cancel + done(), empty timer",
        cost,
        1.0,
        "8",
    );
    // With other deadlines pending, the timer's map usually has room.
    let held: Vec<_> = (0..100)
        .map(|_| with_timeout(&background(), Duration::from_secs(7200)))
        .collect();
    let cost = per_run(|| {
        let (ctx, cancel) = with_timeout(&background(), Duration::from_secs(3600));
        cancel.cancel();
        drop(ctx);
    });
    check("with_timeout(1h) + cancel, 100 live timers", cost, 1.0, "8");
    drop(held);

    // Go's BenchmarkCancelTree (depth=100, OpenCanceler) and a fan-out of
    // 100 children, build + cancel the root + free: allocations per
    // context, amortized (a parent's registry is allocated on its first
    // child and grows by doubling). Go: 5 and ~2 allocations per context.
    const N: usize = 100;
    let cost = per_run(|| {
        let (root, cancel) = with_cancel(&background());
        let mut leaf = root.clone();
        for _ in 0..N {
            let (child, cancel_child) = with_cancel(&leaf);
            cancel_child.detach();
            leaf = child;
        }
        cancel.cancel();
    });
    let per_level = Cost {
        allocs: cost.allocs / N as f64,
        bytes: cost.bytes / N as f64,
    };
    check(
        "CancelTree chain of 100, per level",
        per_level,
        // One node per level (the single child is registered inline), plus
        // the work stack's amortized growth.
        1.07,
        "5 (benchmark)",
    );
    let mut kids = Vec::with_capacity(N);
    let cost = per_run(|| {
        let (root, cancel) = with_cancel(&background());
        for _ in 0..N {
            let (child, cancel_child) = with_cancel(&root);
            cancel_child.detach();
            kids.push(child);
        }
        cancel.cancel();
        kids.clear();
    });
    let per_child = Cost {
        allocs: cost.allocs / N as f64,
        bytes: cost.bytes / N as f64,
    };
    check(
        "fan-out of 100, per child",
        per_child,
        1.09,
        "~2 (benchmark)",
    );

    // Go: `<-c.Done()` on a done context is part of the budgets above; a
    // non-blocking poll of a live one (BenchmarkContextCancelDone) is 0.
    let (live, _cancel_live) = with_cancel(&background());
    let cost = per_run(|| assert!(poll_once(live.done()).is_pending()));
    check("done() polled once, live", cost, 0.0, "0 (benchmark)");
    assert_eq!(live.dependents(), 0);
    let (dead, cancel_dead) = with_cancel(&background());
    cancel_dead.cancel();
    let cost = per_run(|| assert!(poll_once(dead.done()).is_ready()));
    check("done() polled once, canceled", cost, 0.0, "0 (benchmark)");
    let cost = per_run(|| assert!(dead.err().is_some() && live.err().is_none()));
    check("err()", cost, 0.0, "0 (benchmark)");

    // Memory per `with_cancel` child: what 1000 children of one parent keep
    // in use (their nodes plus their slots in the parent's registry).
    let (root, _cancel_root) = with_cancel(&background());
    let _warm = with_cancel(&root);
    drop(_warm);
    const CHILDREN: i64 = 1000;
    let (bytes, kept): (i64, Vec<(Ctx, goctx::CancelFunc)>) =
        retained(|| (0..CHILDREN).map(|_| with_cancel(&root)).collect());
    let vec_bytes = signed(kept.capacity() * std::mem::size_of::<(Ctx, goctx::CancelFunc)>());
    let per_child = (bytes - vec_bytes) as f64 / CHILDREN as f64;
    let (node_bytes, one) = retained(|| with_cancel(&background()));
    drop(one);
    report.push(format!(
        "| memory per with_cancel child | 1 | {node_bytes} (node) / {per_child:.1} (node + parent slot, 1000 children) | - | 96 B in 2 |"
    ));
    drop(kept);
    // Go: 96 B in 2 allocations; issue 4's target was at most 96 B in one.
    // Budget = the measured size (an 88-byte node behind the 16-byte `Arc`
    // header: 80 until issue 17's count of derived nodes; a 24-byte slot in
    // the parent's registry, amortized over its doubling `Vec`), so growth
    // is noticed. glibc serves 96- and 104-byte requests from one 112-byte
    // chunk: the memory in use per node is unchanged there.
    assert!(
        node_bytes <= 104,
        "a with_cancel node grew to {node_bytes} bytes"
    );
    assert!(per_child <= 129.0, "a child costs {per_child} bytes");

    // For comparison only (not a budget): tokio-util's child token, alone
    // and amortized over 1000 children of one parent.
    let token_root = tokio_util::sync::CancellationToken::new();
    let (token_allocs, _) = counted(|| drop(token_root.child_token()));
    let (token_bytes, token) = retained(|| token_root.child_token());
    drop(token);
    let (tokens_bytes, tokens): (i64, Vec<_>) =
        retained(|| (0..CHILDREN).map(|_| token_root.child_token()).collect());
    let tokens_vec = signed(tokens.capacity() * std::mem::size_of_val(&token_root));
    let per_token = (tokens_bytes - tokens_vec) as f64 / CHILDREN as f64;
    drop(tokens);
    report.push(format!(
        "| (tokio-util child_token, for comparison) | {token_allocs} | {token_bytes} (node) / {per_token:.1} (node + parent slot, 1000 children) | - | - |"
    ));

    println!("| operation | allocs/run | bytes/run | budget | Go TestAllocs |");
    println!("|---|---|---|---|---|");
    for line in report {
        println!("{line}");
    }
}
