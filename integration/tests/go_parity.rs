//! A port of Go's own `context` test suite (Go 1.27): `x_test.go`,
//! `context_test.go`, `afterfunc_test.go`, `net_test.go` and the examples
//! of `example_test.go`, in sections named after those files.
//!
//! Ported from Go's tests, rewritten in Rust:
//!   - source: <https://github.com/golang/go>, `src/context/*_test.go`
//!   - Copyright 2014 The Go Authors. All rights reserved. Use of this
//!     source code is governed by a BSD-style license that can be found
//!     in the LICENSE file (<https://go.dev/LICENSE>).
//!
//! One Rust test per Go test (and one per row of Go's `TestCause` table),
//! named after it in snake case, with a `// Go: TestName` line above it so
//! the two suites can be read side by side. The tests check behaviour, not
//! Go's internals: where Go counts the children of a `cancelCtx` we count
//! the registrations reported by `Ctx::dependents`, and where Go counts the
//! goroutines started to watch a custom parent we check that no watcher is
//! needed, because propagation through a custom context is synchronous.
//!
//! Deliberate differences from Go, each noted again where it matters:
//! - values are keyed by their Rust type, not by a runtime key value;
//! - dropping the last `CancelFunc` cancels, so the tests keep every cancel
//!   function alive (bound to `_c…`) wherever Go leaves a context live;
//! - nil parents, nil keys and non-comparable keys cannot be expressed.

mod common;
use common::causes::{Why, cause};
use common::hub::Hub;

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context as TaskCx, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use goctx::custom::{Context, Notify, Subscription};
use goctx::{CancelFunc, Cause, Ctx, Error};

// ---------------------------------------------------------------------------
// Timing constants
// ---------------------------------------------------------------------------

/// Go's `shortDuration`: a deadline that passes almost at once.
const SHORT: Duration = Duration::from_millis(1);

/// Go's `veryLongDuration`: a deadline no test run will ever reach.
const VERY_LONG: Duration = Duration::from_secs(1000 * 3600);

/// Go's `quiescent(t)`: how long something that must happen may take before
/// the test declares it stuck. Generous, so a loaded machine never flakes.
const QUIESCENT: Duration = Duration::from_secs(10);

/// How long to watch for something that must *not* happen (a callback that
/// must not run). A miss here can only let a bug slip, never fail a
/// correct library.
const NOT_HAPPENING: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

/// Go's non-blocking `select { case <-ctx.Done(): … default: }`: the error
/// if the context is done right now, `None` if waiting would block.
fn done_now(ctx: &Ctx) -> Option<Error> {
    ctx.done().now_or_never()
}

/// Whether `got` is the very cause `want` (same allocation).
fn is_same_cause(got: &Option<Cause>, want: &Cause) -> bool {
    got.as_ref().is_some_and(|got| Cause::ptr_eq(got, want))
}

/// Whether `got` is the plain error `want` used as a cause (what Go's
/// `Cause` returns when no cause was given).
fn is_error_cause(got: &Option<Cause>, want: Error) -> bool {
    got.as_ref().and_then(|got| got.downcast_ref::<Error>()) == Some(&want)
}

/// Locks a test mutex; a poisoned one only means another assertion failed.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Go's `testDeadline`: the context must end within `QUIESCENT`, with
/// `DeadlineExceeded`.
fn expect_deadline_exceeded(ctx: &Ctx, name: &str) {
    assert_eq!(
        ctx.wait_timeout(QUIESCENT),
        Some(Error::DeadlineExceeded),
        "{name}: context did not time out within {QUIESCENT:?}"
    );
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded), "{name}: err()");
}

/// A small deterministic generator (SplitMix64), seeded from the clock
/// like Go's `testLayers`; the seed is printed in every failure message.
struct SplitMix(u64);

impl SplitMix {
    fn from_clock() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        SplitMix(nanos as u64)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

// ---------------------------------------------------------------------------
// Allocation counting (for Go's TestAllocs)
// ---------------------------------------------------------------------------

/// Counts the allocations made by the current thread. Tests run in
/// parallel, so a process-wide count (what Go's `AllocsPerRun` reads) would
/// pick up other tests' work; a per-thread count measures only the code
/// under test.
#[global_allocator]
static ALLOCATOR: common::alloc::Counting = common::alloc::Counting::PER_THREAD;

/// Go's `testing.AllocsPerRun`: one warm-up call (it may start helper
/// threads or fill lazily created statics), then the average number of
/// allocations of `runs` calls, on this thread.
fn allocs_per_run(runs: u32, mut f: impl FnMut()) -> f64 {
    f();
    let before = common::alloc::this_thread().allocs;
    for _ in 0..runs {
        f();
    }
    let after = common::alloc::this_thread().allocs;
    (after - before) as f64 / f64::from(runs)
}

// ---------------------------------------------------------------------------
// Custom contexts
// ---------------------------------------------------------------------------
//
// Those with a done signal of their own keep their subscribers in a
// `common::hub::Hub`: its `len` is the Rust counterpart of Go's "number of
// registered AfterFuncs" (or of watcher goroutines).

// Go's `otherContext` (and `myCtx`, which is the same thing): a type the
// library does not know that wraps a context and delegates everything to
// it, including the done signal. Go keeps such a wrapper on the fast path
// because its `Done` is the inner context's; here `subscribe` delegates,
// so children register directly with the inner context.
use common::Wrapper as Other;

fn other(ctx: &Ctx) -> Ctx {
    Ctx::from_context(Other(ctx.clone()))
}

/// Go's `myDoneCtx`: delegates everything except the done signal, for
/// which it hands out a fresh one that never fires. In Go each child of it
/// costs a watcher goroutine that lives until the child is canceled; here
/// each child costs one subscription in `hub`, released when the child is
/// canceled.
struct MyDoneCtx {
    inner: Ctx,
    hub: Arc<Hub>,
}

impl Context for MyDoneCtx {
    fn deadline(&self) -> Option<Instant> {
        self.inner.deadline()
    }

    fn err(&self) -> Option<Error> {
        self.inner.err()
    }

    fn lookup(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)> {
        self.inner.lookup(key)
    }

    fn subscribe(&self, notify: Notify) -> Subscription {
        // The hub is never fired: this signal never comes.
        self.hub.subscribe(notify)
    }
}

/// Wraps `inner` in a `MyDoneCtx`; the hub counts its subscriptions.
fn my_done_ctx(inner: &Ctx) -> (Ctx, Arc<Hub>) {
    let hub = Arc::new(Hub::default());
    let ctx = Ctx::from_context(MyDoneCtx {
        inner: inner.clone(),
        hub: hub.clone(),
    });
    (ctx, hub)
}

/// Go's `customDoneContext`: error, cause and values come from the wrapped
/// context, but the done signal is its own, delivered when the test fires
/// `hub` (Go's `close(donec)`).
struct CustomDoneContext {
    inner: Ctx,
    hub: Arc<Hub>,
}

impl Context for CustomDoneContext {
    fn deadline(&self) -> Option<Instant> {
        self.inner.deadline()
    }

    fn err(&self) -> Option<Error> {
        self.inner.err()
    }

    fn cause(&self) -> Option<Cause> {
        // Go finds the cause through the wrapper's `Value`, which reaches
        // the inner library context.
        self.inner.cause()
    }

    fn lookup(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)> {
        self.inner.lookup(key)
    }

    fn subscribe(&self, notify: Notify) -> Subscription {
        self.hub.subscribe(notify)
    }
}

/// Go's `customCauseContext`: a context with its own state and no values;
/// `cancel` sets `Canceled`, signals done, then calls the child's
/// `CancelFunc` set with `set_cancel_child`, if any.
#[derive(Clone, Default)]
struct CustomCauseContext(Arc<CustomCauseState>);

#[derive(Default)]
struct CustomCauseState {
    err: Mutex<Option<Error>>,
    cancel_child: Mutex<Option<CancelFunc>>,
    hub: Arc<Hub>,
}

impl CustomCauseContext {
    fn cancel(&self) {
        *lock(&self.0.err) = Some(Error::Canceled);
        self.0.hub.notify_all();
        // Taken out, which also breaks the cycle child -> self -> child.
        let cancel_child = lock(&self.0.cancel_child).take();
        if let Some(cancel_child) = cancel_child {
            cancel_child.cancel();
        }
    }

    fn set_cancel_child(&self, cancel: CancelFunc) {
        *lock(&self.0.cancel_child) = Some(cancel);
    }

    fn ctx(&self) -> Ctx {
        Ctx::from_context(self.clone())
    }
}

impl Context for CustomCauseContext {
    fn err(&self) -> Option<Error> {
        *lock(&self.0.err)
    }

    // `cause` keeps the trait's default: the error itself, which is what
    // Go's `Cause` returns for a custom context with no library context
    // underneath.

    fn subscribe(&self, notify: Notify) -> Subscription {
        self.0.hub.subscribe(notify)
    }
}

/// Go's `afterFuncContext`: a custom context with its own registry of
/// callbacks (Go's `AfterFunc` method; here `subscribe`), and no other way
/// to learn that it is done. `registrations` is Go's `len(afterFuncs)`.
#[derive(Clone, Default)]
struct AfterFuncContext(Arc<AfterFuncState>);

#[derive(Default)]
struct AfterFuncState {
    err: Mutex<Option<Error>>,
    hub: Arc<Hub>,
}

impl AfterFuncContext {
    fn cancel(&self, err: Error) {
        {
            let mut slot = lock(&self.0.err);
            if slot.is_some() {
                return;
            }
            *slot = Some(err);
        }
        self.0.hub.notify_all();
    }

    fn registrations(&self) -> usize {
        self.0.hub.len()
    }

    fn ctx(&self) -> Ctx {
        Ctx::from_context(self.clone())
    }
}

impl Context for AfterFuncContext {
    fn err(&self) -> Option<Error> {
        *lock(&self.0.err)
    }

    fn subscribe(&self, notify: Notify) -> Subscription {
        self.0.hub.subscribe(notify)
    }
}

/// Go's `newCustomContext(parent)`: a custom context with its own error,
/// ended by its own `cancel` or, through an `after_func` on `parent`, when
/// the parent ends (then with the parent's error). Deadline and values are
/// the parent's.
#[derive(Clone)]
struct CustomContext(Arc<CustomContextState>);

struct CustomContextState {
    parent: Ctx,
    err: Mutex<Option<Error>>,
    hub: Arc<Hub>,
}

impl CustomContext {
    fn new(parent: &Ctx) -> Self {
        let this = CustomContext(Arc::new(CustomContextState {
            parent: parent.clone(),
            err: Mutex::new(None),
            hub: Arc::default(),
        }));
        let watcher = this.clone();
        // The handle is not needed: the callback only copies the parent's
        // error, which is harmless whenever it runs.
        let _registration = goctx::after_func(parent, move || {
            let err = watcher.0.parent.err().unwrap_or(Error::Canceled);
            watcher.end(err);
        });
        this
    }

    /// Ends the context with `err` unless it already ended.
    fn end(&self, err: Error) {
        {
            let mut slot = lock(&self.0.err);
            if slot.is_some() {
                return;
            }
            *slot = Some(err);
        }
        self.0.hub.notify_all();
    }

    fn cancel(&self) {
        self.end(Error::Canceled);
    }

    fn ctx(&self) -> Ctx {
        Ctx::from_context(self.clone())
    }
}

impl Context for CustomContext {
    fn deadline(&self) -> Option<Instant> {
        self.0.parent.deadline()
    }

    fn err(&self) -> Option<Error> {
        *lock(&self.0.err)
    }

    fn cause(&self) -> Option<Cause> {
        // Go's `Cause` finds the parent's cancelCtx through this context's
        // `Value` (which delegates to the parent) and prefers its cause,
        // whatever this context's own state; only without one does it fall
        // back to the error. The same here. Whether this is consulted at
        // all while `err` is `None` is the library's business (Go 1.27:
        // it is not).
        self.0
            .parent
            .cause()
            .or_else(|| self.err().map(Cause::from))
    }

    fn lookup(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)> {
        self.0.parent.lookup(key)
    }

    fn subscribe(&self, notify: Notify) -> Subscription {
        self.0.hub.subscribe(notify)
    }
}

// ---------------------------------------------------------------------------
// context_test.go: the tests Go keeps inside package context because they
// look at unexported state (run from x_test.go as XTestFoo)
// ---------------------------------------------------------------------------

// Go: TestParentFinishesChild
#[test]
fn parent_finishes_child() {
    // parent -> cancel_child
    // parent -> value_child -> timer_child
    // parent -> an after_func callback
    let (parent, cancel) = goctx::with_cancel(&goctx::background());
    let (cancel_child, _stop_cancel_child) = goctx::with_cancel(&parent);
    let value_child = goctx::with_value(&parent, Label("value"));
    let (timer_child, _stop_timer_child) = goctx::with_timeout(&value_child, VERY_LONG);
    let _after = goctx::after_func(&parent, || {});

    for (name, c) in [
        ("parent", &parent),
        ("cancel_child", &cancel_child),
        ("value_child", &value_child),
        ("timer_child", &timer_child),
    ] {
        assert_eq!(done_now(c), None, "{name} done before cancel");
    }

    // Go: the parent's children map holds exactly the cancel child, the
    // timer child (registered through the value context) and the
    // callback. The value context reports the same node's count.
    assert_eq!(parent.dependents(), 3, "bad linkage");
    assert_eq!(
        value_child.dependents(),
        3,
        "value_child must see parent's registry"
    );

    cancel.cancel();

    assert_eq!(
        parent.dependents(),
        0,
        "cancel did not clear the registrations"
    );
    for (name, c) in [
        ("parent", &parent),
        ("cancel_child", &cancel_child),
        ("value_child", &value_child),
        ("timer_child", &timer_child),
    ] {
        assert_eq!(
            done_now(c),
            Some(Error::Canceled),
            "{name} not done after cancel"
        );
        assert_eq!(c.err(), Some(Error::Canceled), "{name}.err()");
    }

    // A value context made on a canceled parent is done from the start.
    let precanceled_child = goctx::with_value(&parent, Label("value"));
    assert_eq!(done_now(&precanceled_child), Some(Error::Canceled));
    assert_eq!(precanceled_child.err(), Some(Error::Canceled));
}

// Go: TestChildFinishesFirst
#[test]
fn child_finishes_first() {
    let (cancelable, _stop) = goctx::with_cancel(&goctx::background());
    for (parent, can_register) in [(goctx::background(), false), (cancelable.clone(), true)] {
        let (child, cancel) = goctx::with_cancel(&parent);

        assert_eq!(done_now(&parent), None, "parent done too early");
        assert_eq!(done_now(&child), None, "child done too early");

        // Go: only a cancelable parent links the child (children == 1);
        // Background keeps no record at all.
        let want = usize::from(can_register);
        assert_eq!(parent.dependents(), want, "bad linkage under {parent}");

        cancel.cancel();

        assert_eq!(
            parent.dependents(),
            0,
            "child's cancel did not unlink it from {parent}"
        );
        assert_eq!(done_now(&child), Some(Error::Canceled));
        assert_eq!(child.err(), Some(Error::Canceled));
        assert_eq!(
            done_now(&parent),
            None,
            "parent {parent} must not be finished"
        );
        assert_eq!(parent.err(), None);
    }
}

// Go: TestCancelRemoves
#[test]
fn cancel_removes() {
    let bg = goctx::background();

    let (ctx, _c1) = goctx::with_cancel(&bg);
    assert_eq!(ctx.dependents(), 0, "after creation");
    let (_child, cancel) = goctx::with_cancel(&ctx);
    assert_eq!(ctx.dependents(), 1, "with a with_cancel child");
    cancel.cancel();
    assert_eq!(ctx.dependents(), 0, "after canceling the with_cancel child");

    let (ctx, _c2) = goctx::with_cancel(&bg);
    assert_eq!(ctx.dependents(), 0, "after creation");
    let (_child, cancel) = goctx::with_timeout(&ctx, Duration::from_secs(60 * 60));
    assert_eq!(ctx.dependents(), 1, "with a with_timeout child");
    cancel.cancel();
    assert_eq!(
        ctx.dependents(),
        0,
        "after canceling the with_timeout child"
    );

    let (ctx, _c3) = goctx::with_cancel(&bg);
    assert_eq!(ctx.dependents(), 0, "after creation");
    let after = goctx::after_func(&ctx, || {});
    assert_eq!(ctx.dependents(), 1, "with an after_func");
    assert!(after.stop(), "stop must prevent the callback");
    assert_eq!(ctx.dependents(), 0, "after stopping the after_func");
}

// Go: TestCustomContextGoroutines
//
// Go counts the goroutines it starts to watch custom parents. goctx never
// starts one: a custom parent is asked to notify (`subscribe`). What Go
// counts as "one more goroutine" is here one more subscription with the
// custom context, released when the child ends; and where Go needs none,
// the child is registered with the library context directly, and
// propagation is complete when `cancel` returns.
#[test]
fn custom_context_goroutines() {
    let bg = goctx::background();

    // A parent with a done signal of its own: one subscription per child,
    // dropped when the child is canceled.
    let (parent0, hub0) = my_done_ctx(&bg);
    let (_ctx0, cancel0) = goctx::with_cancel(&parent0);
    assert_eq!(hub0.len(), 1);
    cancel0.cancel();
    assert_eq!(
        hub0.len(),
        0,
        "a canceled child must release its subscription"
    );

    let (parent0, hub0) = my_done_ctx(&bg);
    let (_ctx0, cancel0) = goctx::with_timeout(&parent0, VERY_LONG);
    assert_eq!(hub0.len(), 1);
    cancel0.cancel();
    assert_eq!(
        hub0.len(),
        0,
        "a canceled timeout child must release its subscription"
    );

    let (ctx1, cancel1) = goctx::with_cancel(&bg);
    assert_eq!(ctx1.dependents(), 0);

    // A wrapper that delegates its done signal (Go's myCtx): the child is
    // registered with ctx1 itself.
    let ctx2 = other(&ctx1);
    let (ctx3, _cancel3) = goctx::with_cancel(&ctx2);
    assert_eq!(
        ctx1.dependents(),
        1,
        "ctx3 must be registered with ctx1 directly"
    );

    // A wrapper with its own done signal around ctx2: the child waits on
    // that signal and must not be registered with ctx1.
    let (ctx2b, hub3b) = my_done_ctx(&ctx2);
    let (_ctx3b, cancel3b) = goctx::with_cancel(&ctx2b);
    assert_eq!(hub3b.len(), 1);
    assert_eq!(
        ctx1.dependents(),
        1,
        "ctx2b does not provide ctx1's signal; it must not be used"
    );

    let (ctx4, _cancel4) = goctx::with_timeout(&ctx3, VERY_LONG);
    assert_eq!(ctx3.dependents(), 1);

    let (ctx5, cancel5) = goctx::with_cancel(&ctx4);
    assert_eq!(ctx4.dependents(), 1);
    cancel5.cancel();
    assert_eq!(ctx4.dependents(), 0);

    // Under a canceled parent: born done, nothing registered.
    let (ctx6, cancel6) = goctx::with_timeout(&ctx5, VERY_LONG);
    assert_eq!(ctx6.err(), Some(Error::Canceled));
    assert_eq!(ctx5.dependents(), 0);
    cancel6.cancel();

    cancel1.cancel();
    // No watcher involved: the whole chain through the wrapper is done
    // when cancel returns.
    for (name, c) in [("ctx2", &ctx2), ("ctx3", &ctx3), ("ctx4", &ctx4)] {
        assert_eq!(
            c.err(),
            Some(Error::Canceled),
            "{name} not canceled synchronously"
        );
    }
    let (ctx7, _cancel7) = goctx::with_cancel(&ctx5);
    assert_eq!(ctx7.err(), Some(Error::Canceled));

    cancel3b.cancel();
    assert_eq!(
        hub3b.len(),
        0,
        "nothing may be left waiting on a custom context"
    );
}

// ---------------------------------------------------------------------------
// x_test.go
// ---------------------------------------------------------------------------

// Go: TestBackground
#[test]
fn background() {
    let c = goctx::background();
    assert_eq!(done_now(&c), None, "Background must never be done");
    assert_eq!(c.wait_timeout(SHORT), None);
    assert_eq!(c.err(), None);
    assert!(c.cause().is_none());
    assert_eq!(c.deadline(), None);
    assert_eq!(format!("{c}"), "context.Background");
}

// Go: TestTODO
#[test]
fn todo() {
    let c = goctx::todo();
    assert_eq!(done_now(&c), None, "TODO must never be done");
    assert_eq!(c.wait_timeout(SHORT), None);
    assert_eq!(c.err(), None);
    assert!(c.cause().is_none());
    assert_eq!(c.deadline(), None);
    assert_eq!(format!("{c}"), "context.TODO");
}

// Go: TestWithCancel
#[test]
fn with_cancel() {
    let (c1, cancel) = goctx::with_cancel(&goctx::background());
    assert_eq!(format!("{c1}"), "context.Background.WithCancel");

    let o = other(&c1);
    let (c2, _c2) = goctx::with_cancel(&o);
    let contexts = [&c1, &o, &c2];

    for (i, c) in contexts.iter().enumerate() {
        assert_eq!(c.err(), None, "c[{i}].err() before cancel");
        assert_eq!(done_now(c), None, "c[{i}] done before cancel");
    }
    // The wrapper delegates its done signal, so c2 is registered with c1
    // itself: no watcher in between.
    assert_eq!(c1.dependents(), 1);

    cancel.cancel();
    // Propagation is synchronous: everything is done when cancel returns.
    for (i, c) in contexts.iter().enumerate() {
        assert_eq!(
            done_now(c),
            Some(Error::Canceled),
            "c[{i}] not done right after cancel"
        );
        assert_eq!(c.err(), Some(Error::Canceled), "c[{i}].err()");
    }
}

#[derive(Debug, PartialEq)]
struct Label(&'static str);

// Go: TestDeadline
#[test]
fn deadline() {
    let bg = goctx::background();

    let (c, _c1) = goctx::with_deadline(&bg, Instant::now() + SHORT);
    let name = format!("{c}");
    assert!(
        name.starts_with("context.Background.WithDeadline("),
        "name {name:?}"
    );
    expect_deadline_exceeded(&c, "WithDeadline");

    let (c, _c2) = goctx::with_deadline(&bg, Instant::now() + SHORT);
    let o = other(&c);
    expect_deadline_exceeded(&o, "WithDeadline+otherContext");

    // The wrapper's earlier deadline governs the child's later one.
    let (c, _c3) = goctx::with_deadline(&bg, Instant::now() + SHORT);
    let o = other(&c);
    let (c, _c4) = goctx::with_deadline(&o, Instant::now() + VERY_LONG);
    expect_deadline_exceeded(&c, "WithDeadline+otherContext+WithDeadline");

    let (c, _c5) = goctx::with_deadline(&bg, Instant::now() - SHORT);
    expect_deadline_exceeded(&c, "WithDeadline+inthepast");

    let (c, _c6) = goctx::with_deadline(&bg, Instant::now());
    expect_deadline_exceeded(&c, "WithDeadline+now");
}

// Go: TestTimeout
#[test]
fn timeout() {
    let bg = goctx::background();

    let (c, _c1) = goctx::with_timeout(&bg, SHORT);
    let name = format!("{c}");
    assert!(
        name.starts_with("context.Background.WithDeadline("),
        "name {name:?}"
    );
    expect_deadline_exceeded(&c, "WithTimeout");

    let (c, _c2) = goctx::with_timeout(&bg, SHORT);
    let o = other(&c);
    expect_deadline_exceeded(&o, "WithTimeout+otherContext");

    let (c, _c3) = goctx::with_timeout(&bg, SHORT);
    let o = other(&c);
    let (c, _c4) = goctx::with_timeout(&o, VERY_LONG);
    expect_deadline_exceeded(&c, "WithTimeout+otherContext+WithTimeout");
}

// Go: TestCanceledTimeout
#[test]
fn canceled_timeout() {
    let (c, _c1) = goctx::with_timeout(&goctx::background(), Duration::from_secs(1));
    let o = other(&c);
    let (c, cancel) = goctx::with_timeout(&o, VERY_LONG);
    cancel.cancel();
    // Synchronous: done as soon as cancel returns.
    assert_eq!(done_now(&c), Some(Error::Canceled));
    assert_eq!(c.err(), Some(Error::Canceled));
}

/// Go's keys `key1(1)`, `key2(1)` and `key2(3)`. goctx keys values by
/// type, so each Go key becomes a type: `Key1<1>`, `Key2<1>`, `Key2<3>`.
/// Two instances of one generic type with different parameters are
/// different keys, as `key2(1)` and `key2(3)` are in Go; `Key1<1>` and
/// `Key2<1>` differ like Go's same-int-different-type keys.
///
/// The payload is an `Option` so that Go's `WithValue(c, k1, nil)` has a
/// counterpart: a newer `Key1<1>(None)` shadows the older value, and reads
/// as "no string", just as Go's nil fails the `.(string)` assertion.
#[derive(Debug)]
struct Key1<const N: u8>(Option<&'static str>);

#[derive(Debug)]
struct Key2<const N: u8>(Option<&'static str>);

/// Go's `check` helper of TestValues: the string under each key, if any.
fn check_values(c: &Ctx, name: &str, v1: Option<&str>, v2: Option<&str>, v3: Option<&str>) {
    assert_eq!(c.value::<Key1<1>>().and_then(|k| k.0), v1, "{name}: k1");
    assert_eq!(c.value::<Key2<1>>().and_then(|k| k.0), v2, "{name}: k2");
    assert_eq!(c.value::<Key2<3>>().and_then(|k| k.0), v3, "{name}: k3");
}

// Go: TestValues
//
// Divergence: goctx's name shows only the key type, `.WithValue(<type>)`,
// not the value (Go: `.WithValue(context_test.key1, c1k1)`).
#[test]
fn values() {
    let k1 = std::any::type_name::<Key1<1>>();
    let k2 = std::any::type_name::<Key2<1>>();
    let k3 = std::any::type_name::<Key2<3>>();

    let c0 = goctx::background();
    check_values(&c0, "c0", None, None, None);

    let c1 = goctx::with_value(&goctx::background(), Key1::<1>(Some("c1k1")));
    check_values(&c1, "c1", Some("c1k1"), None, None);
    assert_eq!(
        format!("{c1}"),
        format!("context.Background.WithValue({k1})")
    );

    let c2 = goctx::with_value(&c1, Key2::<1>(Some("c2k2")));
    check_values(&c2, "c2", Some("c1k1"), Some("c2k2"), None);
    assert_eq!(
        format!("{c2}"),
        format!("context.Background.WithValue({k1}).WithValue({k2})")
    );

    let c3 = goctx::with_value(&c2, Key2::<3>(Some("c3k3")));
    check_values(&c3, "c3", Some("c1k1"), Some("c2k2"), Some("c3k3"));

    let c4 = goctx::with_value(&c3, Key1::<1>(None));
    check_values(&c4, "c4", None, Some("c2k2"), Some("c3k3"));
    assert_eq!(
        format!("{c4}"),
        format!(
            "context.Background.WithValue({k1}).WithValue({k2}).WithValue({k3}).WithValue({k1})"
        )
    );

    // Lookups through a custom wrapper that delegates.
    let o0 = other(&goctx::background());
    check_values(&o0, "o0", None, None, None);

    let o1 = other(&goctx::with_value(
        &goctx::background(),
        Key1::<1>(Some("c1k1")),
    ));
    check_values(&o1, "o1", Some("c1k1"), None, None);

    let o2 = goctx::with_value(&o1, Key2::<1>(Some("o2k2")));
    check_values(&o2, "o2", Some("c1k1"), Some("o2k2"), None);

    let o3 = other(&c4);
    check_values(&o3, "o3", None, Some("c2k2"), Some("c3k3"));

    let o4 = goctx::with_value(&o3, Key2::<3>(None));
    check_values(&o4, "o4", None, Some("c2k2"), None);
}

// Go: TestAllocs
//
// Go's budgets, per call, counted on the calling thread (helper threads
// such as the timer thread are not counted; neither are Go's runtime
// internals).
#[test]
fn allocs() {
    let bg = goctx::background();
    let runs = 100;

    let n = allocs_per_run(runs, || {
        std::hint::black_box(goctx::background());
    });
    assert!(n <= 0.0, "background(): {n} allocations per call, want 0");

    let n = allocs_per_run(runs, || {
        let c = goctx::with_value(&bg, Key1::<1>(None));
        std::hint::black_box(c.value::<Key1<1>>());
    });
    assert!(
        n <= 3.0,
        "with_value + value: {n} allocations per call, want <= 3"
    );

    let n = allocs_per_run(runs, || {
        let (c, _c) = goctx::with_timeout(&bg, Duration::from_nanos(1));
        c.wait();
    });
    assert!(
        n <= 12.0,
        "with_timeout(1ns) + wait: {n} allocations per call, want <= 12"
    );

    let n = allocs_per_run(runs, || {
        let (c, cancel) = goctx::with_cancel(&bg);
        cancel.cancel();
        c.wait();
    });
    assert!(
        n <= 5.0,
        "with_cancel + cancel + wait: {n} allocations per call, want <= 5"
    );

    let n = allocs_per_run(runs, || {
        let (c, cancel) = goctx::with_timeout(&bg, Duration::from_millis(5));
        cancel.cancel();
        c.wait();
    });
    assert!(
        n <= 8.0,
        "with_timeout(5ms) + cancel + wait: {n} allocations per call, want <= 8"
    );
}

// Go: TestSimultaneousCancels
#[test]
#[allow(
    clippy::mutable_key_type,
    reason = "Ctx hashes and compares by identity, which never changes"
)]
fn simultaneous_cancels() {
    // A tree built breadth first, fan-out 4, until it has at least 100
    // contexts (it ends up with 101).
    let (root, cancel) = goctx::with_cancel(&goctx::background());
    let mut contexts = vec![(root.clone(), cancel)];
    let mut queue = VecDeque::from([root]);
    while contexts.len() < 100 {
        let Some(parent) = queue.pop_front() else {
            break;
        };
        for _ in 0..4 {
            let (ctx, cancel) = goctx::with_cancel(&parent);
            contexts.push((ctx.clone(), cancel));
            queue.push_back(ctx);
        }
    }
    // A HashMap keyed by context (identity), as Go's map: its iteration
    // order is random per map, which shuffles both loops below.
    let m: HashMap<Ctx, CancelFunc> = contexts.into_iter().collect();
    assert_eq!(m.len(), 101);

    // Every cancel on its own thread, started in random order.
    let (returned_tx, returned) = mpsc::channel();
    let mut waits = HashSet::new();
    let mut threads = Vec::new();
    for (ctx, cancel) in m {
        waits.insert(ctx);
        let returned_tx = returned_tx.clone();
        threads.push(thread::spawn(move || {
            cancel.cancel();
            let _ = returned_tx.send(());
        }));
    }

    // Every context must end (no deadlock between the cancels)...
    for ctx in &waits {
        assert!(
            ctx.wait_timeout(QUIESCENT).is_some(),
            "timed out waiting for {ctx}"
        );
    }
    // ...and every cancel must return.
    for i in 0..threads.len() {
        assert!(
            returned.recv_timeout(QUIESCENT).is_ok(),
            "timed out waiting for cancel functions ({i} returned)"
        );
    }
    for t in threads {
        t.join().expect("cancel thread panicked");
    }
}

// Go: TestInterlockedCancels
#[test]
fn interlocked_cancels() {
    let (parent, cancel_parent) = goctx::with_cancel(&goctx::background());
    let (child, cancel_child) = goctx::with_cancel(&parent);
    let t = thread::spawn({
        let parent = parent.clone();
        move || {
            parent.wait();
            cancel_child.cancel();
        }
    });
    cancel_parent.cancel();
    assert!(
        child.wait_timeout(QUIESCENT).is_some(),
        "timed out waiting for the child"
    );
    t.join().expect("canceling thread panicked");
}

/// A distinct value type per layer of Go's `testLayers`, which uses a fresh
/// pointer as key for each value layer. Rust keys are types, so the test
/// draws from a fixed family of types, `Layer<0>`, `Layer<1>`, ….
struct Layer<const N: usize>(usize);

fn push_layer<const N: usize>(ctx: &Ctx) -> Ctx {
    goctx::with_value(ctx, Layer::<N>(N))
}

fn read_layer<const N: usize>(ctx: &Ctx) -> Option<usize> {
    ctx.value::<Layer<N>>().map(|layer| layer.0)
}

type LayerFns = (fn(&Ctx) -> Ctx, fn(&Ctx) -> Option<usize>);

macro_rules! layer_table {
    ($($n:literal)*) => {
        const LAYERS: &[LayerFns] = &[$((push_layer::<$n>, read_layer::<$n>)),*];
    };
}

layer_table!(
    0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23
    24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47
);

/// Go's `testLayers`: at least 30 random layers of values, cancel contexts
/// and timeout contexts (at least one of each) on top of each other.
fn test_layers(timeout: bool) {
    const MIN_LAYERS: usize = 30;
    let mut rng = SplitMix::from_clock();
    let seed = rng.0;

    let mut values = 0;
    let mut cancels: Vec<CancelFunc> = Vec::new();
    let mut timers = 0;
    let mut ctx = goctx::background();
    let mut layers = 0;
    while layers < MIN_LAYERS || timers == 0 || cancels.is_empty() || values == 0 {
        match rng.below(3) {
            0 => {
                if values == LAYERS.len() {
                    // Out of value types: draw again.
                    continue;
                }
                ctx = (LAYERS[values].0)(&ctx);
                values += 1;
            }
            1 => {
                let (child, cancel) = goctx::with_cancel(&ctx);
                ctx = child;
                cancels.push(cancel);
            }
            _ => {
                let d = if timeout { SHORT } else { VERY_LONG };
                let (child, cancel) = goctx::with_timeout(&ctx, d);
                ctx = child;
                cancels.push(cancel);
                timers += 1;
            }
        }
        layers += 1;
    }

    let check_values = |when: &str| {
        for (n, (_, read)) in LAYERS[..values].iter().enumerate() {
            assert_eq!(
                read(&ctx),
                Some(n),
                "seed={seed}: {when}: value of layer type {n}"
            );
        }
    };

    if !timeout {
        assert_eq!(
            done_now(&ctx),
            None,
            "seed={seed}: ctx must not be canceled yet"
        );
    }
    let name = format!("{ctx}");
    assert!(
        name.starts_with("context.Background."),
        "seed={seed}: name {name:?}"
    );
    check_values("before cancel");

    if timeout {
        assert_eq!(
            ctx.wait_timeout(QUIESCENT),
            Some(Error::DeadlineExceeded),
            "seed={seed}: ctx should have timed out"
        );
        check_values("after timeout");
    } else {
        let cancel = &cancels[rng.below(cancels.len())];
        cancel.cancel();
        assert_eq!(
            done_now(&ctx),
            Some(Error::Canceled),
            "seed={seed}: ctx should be canceled"
        );
        check_values("after cancel");
    }
}

// Go: TestLayersCancel
#[test]
fn layers_cancel() {
    test_layers(false);
}

// Go: TestLayersTimeout
#[test]
fn layers_timeout() {
    test_layers(true);
}

// Go: TestWithCancelCanceledParent
#[test]
fn with_cancel_canceled_parent() {
    let (parent, pcancel) = goctx::with_cancel_cause(&goctx::background());
    let because = cause("Because!");
    pcancel.cancel_with_cause(because.clone());

    let (c, _c) = goctx::with_cancel(&parent);
    assert_eq!(
        done_now(&c),
        Some(Error::Canceled),
        "child not done upon construction"
    );
    assert_eq!(c.err(), Some(Error::Canceled));
    assert!(
        is_same_cause(&c.cause(), &because),
        "child cause {:?}",
        c.cause()
    );
    assert_eq!(
        parent.dependents(),
        0,
        "a born-done child registers nothing"
    );
}

// Go: TestWithCancelSimultaneouslyCanceledParent
#[test]
fn with_cancel_simultaneously_canceled_parent() {
    for i in 0..100 {
        let (parent, pcancel) = goctx::with_cancel_cause(&goctx::background());
        let because = cause("Because!");
        let t = thread::spawn({
            let because = because.clone();
            move || pcancel.cancel_with_cause(because)
        });

        let (c, _c) = goctx::with_cancel(&parent);
        assert_eq!(
            c.wait_timeout(QUIESCENT),
            Some(Error::Canceled),
            "round {i}"
        );
        assert_eq!(c.err(), Some(Error::Canceled), "round {i}");
        assert!(
            is_same_cause(&c.cause(), &because),
            "round {i}: cause {:?}",
            c.cause()
        );
        t.join().expect("canceling thread panicked");
    }
}

// Go: TestWithValueChecksKey
//
// Go panics on a nil key and on a key of a non-comparable type. Neither
// can be written here: the key is the value's type, compared by `TypeId`,
// so any type works, including one without `Eq` such as `Vec<u8>`, and
// two types never collide even when they hold the same data.
#[test]
fn with_value_checks_key() {
    #[derive(Debug, PartialEq)]
    struct Foo(Vec<u8>);

    let bg = goctx::background();
    let c = goctx::with_value(&bg, b"foo".to_vec());
    let c = goctx::with_value(&c, Foo(b"bar".to_vec()));
    assert_eq!(c.value::<Vec<u8>>().map(Vec::as_slice), Some(&b"foo"[..]));
    assert_eq!(c.value::<Foo>(), Some(&Foo(b"bar".to_vec())));
    assert_eq!(c.value::<String>(), None);
}

// Go: TestInvalidDerivedFail
//
// Go panics when given a nil parent. Every constructor here takes `&Ctx`,
// which cannot be null; the closest thing to a zero value, `Ctx::default`,
// is Background, and everything derives from it normally.
#[test]
fn invalid_derived_fail() {
    let zero = Ctx::default();
    assert_eq!(format!("{zero}"), "context.Background");

    let (c, cancel) = goctx::with_cancel(&zero);
    assert_eq!(format!("{c}"), "context.Background.WithCancel");
    cancel.cancel();
    assert_eq!(c.err(), Some(Error::Canceled));

    let (c, _c) = goctx::with_deadline(&zero, Instant::now() + SHORT);
    expect_deadline_exceeded(&c, "with_deadline(Ctx::default())");

    let c = goctx::with_value(&zero, Label("bar"));
    assert_eq!(c.value::<Label>(), Some(&Label("bar")));
}

// Go: TestDeadlineExceededSupportsTimeout
#[test]
fn deadline_exceeded_supports_timeout() {
    assert!(Error::DeadlineExceeded.is_timeout());
    assert!(!Error::Canceled.is_timeout());
}

/// The expected `cause()` of a TestCause row.
enum WantCause<'a> {
    None,
    Error(Error),
    Same(&'a Cause),
}

fn check_cause(ctx: &Ctx, want_err: Option<Error>, want_cause: WantCause<'_>) {
    assert_eq!(ctx.err(), want_err, "err()");
    let got = ctx.cause();
    let ok = match want_cause {
        WantCause::None => got.is_none(),
        WantCause::Error(err) => is_error_cause(&got, err),
        WantCause::Same(want) => is_same_cause(&got, want),
    };
    let got_text = got.as_ref().map(ToString::to_string);
    assert!(ok, "cause() = {got_text:?}");
}

/// Go's `forever` in TestCause.
const FOREVER: Duration = Duration::from_secs(1_000_000);

// Go: TestCause/Background
#[test]
fn cause_background() {
    check_cause(&goctx::background(), None, WantCause::None);
}

// Go: TestCause/TODO
#[test]
fn cause_todo() {
    check_cause(&goctx::todo(), None, WantCause::None);
}

// Go: TestCause/WithCancel
#[test]
fn cause_with_cancel() {
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    cancel.cancel();
    check_cause(
        &ctx,
        Some(Error::Canceled),
        WantCause::Error(Error::Canceled),
    );
}

// Go: TestCause/WithCancelCause
#[test]
fn cause_with_cancel_cause() {
    let parent_cause = cause("parentCause");
    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    cancel.cancel_with_cause(parent_cause.clone());
    check_cause(&ctx, Some(Error::Canceled), WantCause::Same(&parent_cause));
}

// Go: TestCause/WithCancelCause_nil
//
// Go's `cancel(nil)` is `cancel()` here: no cause given.
#[test]
fn cause_with_cancel_cause_nil() {
    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    cancel.cancel();
    check_cause(
        &ctx,
        Some(Error::Canceled),
        WantCause::Error(Error::Canceled),
    );
}

// Go: TestCause/WithCancelCause:_parent_cause_before_child
#[test]
fn cause_with_cancel_cause_parent_cause_before_child() {
    let (parent_cause, child_cause) = (cause("parentCause"), cause("childCause"));
    let (ctx, cancel_parent) = goctx::with_cancel_cause(&goctx::background());
    let (ctx, cancel_child) = goctx::with_cancel_cause(&ctx);
    cancel_parent.cancel_with_cause(parent_cause.clone());
    cancel_child.cancel_with_cause(child_cause);
    check_cause(&ctx, Some(Error::Canceled), WantCause::Same(&parent_cause));
}

// Go: TestCause/WithCancelCause:_parent_cause_after_child
#[test]
fn cause_with_cancel_cause_parent_cause_after_child() {
    let (parent_cause, child_cause) = (cause("parentCause"), cause("childCause"));
    let (ctx, cancel_parent) = goctx::with_cancel_cause(&goctx::background());
    let (ctx, cancel_child) = goctx::with_cancel_cause(&ctx);
    cancel_child.cancel_with_cause(child_cause.clone());
    cancel_parent.cancel_with_cause(parent_cause);
    check_cause(&ctx, Some(Error::Canceled), WantCause::Same(&child_cause));
}

// Go: TestCause/WithCancelCause:_parent_cause_before_nil
#[test]
fn cause_with_cancel_cause_parent_cause_before_nil() {
    let parent_cause = cause("parentCause");
    let (ctx, cancel_parent) = goctx::with_cancel_cause(&goctx::background());
    let (ctx, cancel_child) = goctx::with_cancel(&ctx);
    cancel_parent.cancel_with_cause(parent_cause.clone());
    cancel_child.cancel();
    check_cause(&ctx, Some(Error::Canceled), WantCause::Same(&parent_cause));
}

// Go: TestCause/WithCancelCause:_parent_cause_after_nil
#[test]
fn cause_with_cancel_cause_parent_cause_after_nil() {
    let parent_cause = cause("parentCause");
    let (ctx, cancel_parent) = goctx::with_cancel_cause(&goctx::background());
    let (ctx, cancel_child) = goctx::with_cancel(&ctx);
    cancel_child.cancel();
    cancel_parent.cancel_with_cause(parent_cause);
    check_cause(
        &ctx,
        Some(Error::Canceled),
        WantCause::Error(Error::Canceled),
    );
}

// Go: TestCause/WithCancelCause:_child_cause_after_nil
#[test]
fn cause_with_cancel_cause_child_cause_after_nil() {
    let child_cause = cause("childCause");
    let (ctx, cancel_parent) = goctx::with_cancel(&goctx::background());
    let (ctx, cancel_child) = goctx::with_cancel_cause(&ctx);
    cancel_parent.cancel();
    cancel_child.cancel_with_cause(child_cause);
    check_cause(
        &ctx,
        Some(Error::Canceled),
        WantCause::Error(Error::Canceled),
    );
}

// Go: TestCause/WithCancelCause:_child_cause_before_nil
#[test]
fn cause_with_cancel_cause_child_cause_before_nil() {
    let child_cause = cause("childCause");
    let (ctx, cancel_parent) = goctx::with_cancel(&goctx::background());
    let (ctx, cancel_child) = goctx::with_cancel_cause(&ctx);
    cancel_child.cancel_with_cause(child_cause.clone());
    cancel_parent.cancel();
    check_cause(&ctx, Some(Error::Canceled), WantCause::Same(&child_cause));
}

// Go: TestCause/WithTimeout
#[test]
fn cause_with_timeout() {
    let (ctx, cancel) = goctx::with_timeout(&goctx::background(), Duration::ZERO);
    cancel.cancel();
    check_cause(
        &ctx,
        Some(Error::DeadlineExceeded),
        WantCause::Error(Error::DeadlineExceeded),
    );
}

// Go: TestCause/WithTimeout_canceled
#[test]
fn cause_with_timeout_canceled() {
    let (ctx, cancel) = goctx::with_timeout(&goctx::background(), FOREVER);
    cancel.cancel();
    check_cause(
        &ctx,
        Some(Error::Canceled),
        WantCause::Error(Error::Canceled),
    );
}

// Go: TestCause/WithTimeoutCause
#[test]
fn cause_with_timeout_cause() {
    let too_slow = cause("tooSlow");
    let (ctx, cancel) =
        goctx::with_timeout_cause(&goctx::background(), Duration::ZERO, too_slow.clone());
    cancel.cancel();
    check_cause(
        &ctx,
        Some(Error::DeadlineExceeded),
        WantCause::Same(&too_slow),
    );
}

// Go: TestCause/WithTimeoutCause_canceled
#[test]
fn cause_with_timeout_cause_canceled() {
    let too_slow = cause("tooSlow");
    let (ctx, cancel) = goctx::with_timeout_cause(&goctx::background(), FOREVER, too_slow);
    cancel.cancel();
    // The returned CancelFunc does not report the deadline's cause.
    check_cause(
        &ctx,
        Some(Error::Canceled),
        WantCause::Error(Error::Canceled),
    );
}

// Go: TestCause/WithTimeoutCause_stacked
#[test]
fn cause_with_timeout_cause_stacked() {
    let (too_slow, finished_early) = (cause("tooSlow"), cause("finishedEarly"));
    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    let (ctx, _c) = goctx::with_timeout_cause(&ctx, Duration::ZERO, too_slow.clone());
    cancel.cancel_with_cause(finished_early);
    check_cause(
        &ctx,
        Some(Error::DeadlineExceeded),
        WantCause::Same(&too_slow),
    );
}

// Go: TestCause/WithTimeoutCause_stacked_canceled
#[test]
fn cause_with_timeout_cause_stacked_canceled() {
    let (too_slow, finished_early) = (cause("tooSlow"), cause("finishedEarly"));
    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    let (ctx, _c) = goctx::with_timeout_cause(&ctx, FOREVER, too_slow);
    cancel.cancel_with_cause(finished_early.clone());
    check_cause(
        &ctx,
        Some(Error::Canceled),
        WantCause::Same(&finished_early),
    );
}

// Go: TestCause/WithoutCancel
#[test]
fn cause_without_cancel() {
    check_cause(
        &goctx::without_cancel(&goctx::background()),
        None,
        WantCause::None,
    );
}

// Go: TestCause/WithoutCancel_canceled
#[test]
fn cause_without_cancel_canceled() {
    let finished_early = cause("finishedEarly");
    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    let ctx = goctx::without_cancel(&ctx);
    cancel.cancel_with_cause(finished_early);
    check_cause(&ctx, None, WantCause::None);
}

// Go: TestCause/WithoutCancel_timeout
#[test]
fn cause_without_cancel_timeout() {
    let too_slow = cause("tooSlow");
    let (ctx, cancel) = goctx::with_timeout_cause(&goctx::background(), Duration::ZERO, too_slow);
    let ctx = goctx::without_cancel(&ctx);
    cancel.cancel();
    check_cause(&ctx, None, WantCause::None);
}

// Go: TestCause/parent_of_custom_context_not_canceled
#[test]
fn cause_parent_of_custom_context_not_canceled() {
    let (parent, _cancel_parent) = goctx::with_cancel_cause(&goctx::background());
    let custom = CustomContext::new(&parent);
    let ctx = custom.ctx();
    check_cause(&ctx, None, WantCause::None);
    custom.cancel();
    check_cause(
        &ctx,
        Some(Error::Canceled),
        WantCause::Error(Error::Canceled),
    );
}

// Go: TestCause/parent_of_custom_context_is_canceled_before
#[test]
fn cause_parent_of_custom_context_is_canceled_before() {
    let parent_cause = cause("parentCause");
    let (parent, cancel_parent) = goctx::with_cancel_cause(&goctx::background());
    let custom = CustomContext::new(&parent);
    let ctx = custom.ctx();
    cancel_parent.cancel_with_cause(parent_cause.clone());
    // The custom context learns of its parent on a callback thread, so it
    // may or may not have ended yet. While it reports no error it must
    // report no cause either (Go 1.27 asks Err first), although the cause
    // it would report is already there.
    let early = ctx.cause();
    if ctx.err().is_none() {
        // err() was still None after cause() was read, so it was None
        // while cause() ran.
        let early = early.map(|c| c.to_string());
        assert_eq!(early, None, "cause() while err() is None");
    }
    custom.cancel();
    check_cause(&ctx, Some(Error::Canceled), WantCause::Same(&parent_cause));
}

// Go: TestCause/parent_of_custom_context_is_canceled_after
//
// Go's own comment says this result "isn't really right": the custom
// context ended first, by itself, but reports the parent's later cause.
// It is what Go 1.27 does, and so what a custom context that finds its
// cause through its parent (as Go's does, through `Value`) reports here.
#[test]
fn cause_parent_of_custom_context_is_canceled_after() {
    let parent_cause = cause("parentCause");
    let (parent, cancel_parent) = goctx::with_cancel_cause(&goctx::background());
    let custom = CustomContext::new(&parent);
    let ctx = custom.ctx();
    custom.cancel();
    check_cause(
        &ctx,
        Some(Error::Canceled),
        WantCause::Error(Error::Canceled),
    );
    cancel_parent.cancel_with_cause(parent_cause.clone());
    check_cause(&ctx, Some(Error::Canceled), WantCause::Same(&parent_cause));
}

// Go: TestCauseRace
#[test]
fn cause_race() {
    let want = cause("TestCauseRace");
    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    let t = thread::spawn({
        let want = want.clone();
        move || cancel.cancel_with_cause(want)
    });
    // Poll the cause itself, not the done signal: reading it while another
    // thread sets it must never observe a torn or wrong value.
    let give_up = Instant::now() + QUIESCENT;
    loop {
        if let Some(got) = ctx.cause() {
            assert!(Cause::ptr_eq(&got, &want), "cause() = {got}, want {want}");
            break;
        }
        assert!(Instant::now() < give_up, "cause never appeared");
        thread::yield_now();
    }
    t.join().expect("canceling thread panicked");
}

// Go: TestWithoutCancel
#[test]
fn without_cancel() {
    let ctx = goctx::with_value(&goctx::background(), Label("value"));
    let ctx = goctx::without_cancel(&ctx);
    assert_eq!(ctx.deadline(), None);
    assert_eq!(done_now(&ctx), None, "never done");
    assert_eq!(ctx.err(), None);
    assert_eq!(ctx.value::<Label>(), Some(&Label("value")));
}

// Go: TestCustomContextPropagation
#[test]
fn custom_context_propagation() {
    let want = cause("TestCustomContextPropagation");
    let (ctx1, cancel1) = goctx::with_cancel_cause(&goctx::background());
    let donec = Arc::new(Hub::default());
    let ctx2 = Ctx::from_context(CustomDoneContext {
        inner: ctx1.clone(),
        hub: donec.clone(),
    });
    let (ctx3, _cancel3) = goctx::with_cancel(&ctx2);
    assert_eq!(donec.len(), 1, "ctx3 must wait on ctx2's own signal");

    cancel1.cancel_with_cause(want.clone());
    // ctx2's signal has not come yet, and it is the only thing ctx3 hears.
    assert_eq!(ctx3.err(), None, "ctx3 must follow ctx2's signal, not ctx1");
    donec.notify_all(); // Go: close(donec)

    assert_eq!(ctx3.wait_timeout(QUIESCENT), Some(Error::Canceled));
    assert_eq!(ctx3.err(), Some(Error::Canceled));
    assert!(
        is_same_cause(&ctx3.cause(), &want),
        "cause {:?}",
        ctx3.cause()
    );
}

// Go: TestCustomContextCause
#[test]
fn custom_context_cause() {
    // Canceling a custom context: err and cause are both Canceled.
    let ccc = CustomCauseContext::default();
    let ccc_ctx = ccc.ctx();
    ccc.cancel();
    check_cause(
        &ccc_ctx,
        Some(Error::Canceled),
        WantCause::Error(Error::Canceled),
    );

    // A child canceled with a cause has that cause; the custom parent is
    // not canceled by it.
    let ccc = CustomCauseContext::default();
    let ccc_ctx = ccc.ctx();
    let (ctx, cause_func) = goctx::with_cancel_cause(&ccc_ctx);
    let want = cause("TestCustomContextCause");
    cause_func.cancel_with_cause(want.clone());
    check_cause(&ctx, Some(Error::Canceled), WantCause::Same(&want));
    check_cause(&ccc_ctx, None, WantCause::None);
    assert_eq!(ccc.0.hub.len(), 0, "the canceled child must unsubscribe");

    // Canceling the custom parent afterwards changes nothing for the
    // child; the parent itself is canceled, without a cause.
    ccc.cancel();
    check_cause(&ctx, Some(Error::Canceled), WantCause::Same(&want));
    check_cause(
        &ccc_ctx,
        Some(Error::Canceled),
        WantCause::Error(Error::Canceled),
    );

    // A custom context that cancels its child when it is canceled.
    let ccc = CustomCauseContext::default();
    let ccc_ctx = ccc.ctx();
    let (ctx, cancel_func) = goctx::with_cancel(&ccc_ctx);
    ccc.set_cancel_child(cancel_func);
    ccc.cancel();
    check_cause(
        &ctx,
        Some(Error::Canceled),
        WantCause::Error(Error::Canceled),
    );
    check_cause(
        &ccc_ctx,
        Some(Error::Canceled),
        WantCause::Error(Error::Canceled),
    );
}

// Go: TestAfterFuncCalledAfterCancel
#[test]
fn after_func_called_after_cancel() {
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    let (tx, donec) = mpsc::channel();
    let stop = goctx::after_func(&ctx, move || {
        let _ = tx.send(());
    });
    assert_eq!(
        donec.recv_timeout(NOT_HAPPENING),
        Err(RecvTimeoutError::Timeout),
        "after_func called before the context is done"
    );
    cancel.cancel();
    assert!(
        donec.recv_timeout(QUIESCENT).is_ok(),
        "after_func not called after cancel"
    );
    assert!(
        !stop.stop(),
        "stop() after the callback started must return false"
    );
}

// Go: TestAfterFuncCalledAfterTimeout
#[test]
fn after_func_called_after_timeout() {
    let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), SHORT);
    let (tx, donec) = mpsc::channel();
    let _stop = goctx::after_func(&ctx, move || {
        let _ = tx.send(());
    });
    assert!(
        donec.recv_timeout(QUIESCENT).is_ok(),
        "after_func not called after the deadline"
    );
}

// Go: TestAfterFuncCalledImmediately
#[test]
fn after_func_called_immediately() {
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    cancel.cancel();
    let (tx, donec) = mpsc::channel();
    let stop = goctx::after_func(&ctx, move || {
        let _ = tx.send(());
    });
    assert!(
        donec.recv_timeout(QUIESCENT).is_ok(),
        "after_func not called for a done context"
    );
    assert!(!stop.stop(), "the callback already started");
}

// Go: TestAfterFuncNotCalledAfterStop
#[test]
fn after_func_not_called_after_stop() {
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    let (tx, donec) = mpsc::channel();
    let stop = goctx::after_func(&ctx, move || {
        let _ = tx.send(());
    });
    assert!(stop.stop(), "first stop() must prevent the callback");
    cancel.cancel();
    // The sender went down with the stopped callback, so a disconnect is
    // the expected answer; only a message would mean it ran.
    assert_ne!(
        donec.recv_timeout(NOT_HAPPENING),
        Ok(()),
        "after_func called after stop"
    );
    assert!(!stop.stop(), "second stop() must return false");
}

// Go: TestAfterFuncCalledAsynchronously
//
// The callback blocks until the test receives from it, which the test only
// does after `cancel` returned: a cancel that ran the callback, or waited
// for it, would never return. The cancel runs on its own thread so that
// such a bug fails the test instead of hanging it.
#[test]
fn after_func_called_asynchronously() {
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    let (tx, donec) = mpsc::sync_channel::<thread::ThreadId>(0);
    let _stop = goctx::after_func(&ctx, move || {
        let _ = tx.send(thread::current().id());
    });
    let (returned_tx, returned) = mpsc::channel();
    let canceler = thread::spawn(move || {
        cancel.cancel();
        let _ = returned_tx.send(thread::current().id());
    });
    let cancel_thread = returned
        .recv_timeout(QUIESCENT)
        .expect("cancel did not return");
    let callback_thread = donec
        .recv_timeout(QUIESCENT)
        .expect("after_func not called");
    assert_ne!(
        callback_thread, cancel_thread,
        "callback ran on the canceling thread"
    );
    canceler.join().expect("canceling thread panicked");
}

// Go: TestContextErrDoneRace
//
// Once `err()` reports the end, the done signal must already be complete:
// a done future that was waiting before the cancel is ready at once.
#[test]
fn context_err_done_race() {
    let mut cx = TaskCx::from_waker(Waker::noop());
    for i in 0..10 {
        let (ctx, cancel) = goctx::with_cancel(&goctx::background());
        let mut done = ctx.done();
        assert!(
            done.poll_unpin(&mut cx).is_pending(),
            "round {i}: done too early"
        );
        let t = thread::spawn(move || cancel.cancel());
        let give_up = Instant::now() + QUIESCENT;
        while ctx.err().is_none() {
            assert!(Instant::now() < give_up, "round {i}: never canceled");
            std::hint::spin_loop();
        }
        assert_eq!(
            done.poll_unpin(&mut cx),
            Poll::Ready(Error::Canceled),
            "round {i}: err() is set but done is not"
        );
        t.join().expect("canceling thread panicked");
    }
}

// ---------------------------------------------------------------------------
// afterfunc_test.go
// ---------------------------------------------------------------------------

// Go: TestCustomContextAfterFuncCancel
#[test]
fn custom_context_after_func_cancel() {
    let ctx0 = AfterFuncContext::default();
    let (ctx1, _cancel) = goctx::with_cancel(&ctx0.ctx());
    ctx0.cancel(Error::Canceled);
    // Delivered through the custom context's own registry, synchronously.
    assert_eq!(ctx1.err(), Some(Error::Canceled));
    assert_eq!(ctx1.wait_timeout(QUIESCENT), Some(Error::Canceled));
}

// Go: TestCustomContextAfterFuncTimeout
#[test]
fn custom_context_after_func_timeout() {
    let ctx0 = AfterFuncContext::default();
    let (ctx1, _cancel) = goctx::with_timeout(&ctx0.ctx(), VERY_LONG);
    ctx0.cancel(Error::Canceled);
    assert_eq!(ctx1.err(), Some(Error::Canceled));
    assert_eq!(ctx1.wait_timeout(QUIESCENT), Some(Error::Canceled));
}

// Go: TestCustomContextAfterFuncAfterFunc
#[test]
fn custom_context_after_func_after_func() {
    let ctx0 = AfterFuncContext::default();
    let (tx, donec) = mpsc::channel();
    let _stop = goctx::after_func(&ctx0.ctx(), move || {
        let _ = tx.send(());
    });
    ctx0.cancel(Error::Canceled);
    assert!(
        donec.recv_timeout(QUIESCENT).is_ok(),
        "after_func on a custom context not called"
    );
}

// Go: TestCustomContextAfterFuncUnregisterCancel
#[test]
fn custom_context_after_func_unregister_cancel() {
    let ctx0 = AfterFuncContext::default();
    let parent = ctx0.ctx();
    let (_ctx1, cancel1) = goctx::with_cancel(&parent);
    let (_ctx2, cancel2) = goctx::with_cancel(&parent);
    assert_eq!(ctx0.registrations(), 2, "after two with_cancel");
    cancel1.cancel();
    cancel2.cancel();
    assert_eq!(ctx0.registrations(), 0, "after canceling both children");
}

// Go: TestCustomContextAfterFuncUnregisterTimeout
#[test]
fn custom_context_after_func_unregister_timeout() {
    let ctx0 = AfterFuncContext::default();
    let (_ctx1, cancel) = goctx::with_timeout(&ctx0.ctx(), VERY_LONG);
    assert_eq!(ctx0.registrations(), 1, "after with_timeout");
    cancel.cancel();
    assert_eq!(
        ctx0.registrations(),
        0,
        "after canceling the with_timeout child"
    );
}

// Go: TestCustomContextAfterFuncUnregisterAfterFunc
#[test]
fn custom_context_after_func_unregister_after_func() {
    let ctx0 = AfterFuncContext::default();
    let stop = goctx::after_func(&ctx0.ctx(), || {});
    assert_eq!(ctx0.registrations(), 1, "after after_func");
    assert!(stop.stop());
    assert_eq!(ctx0.registrations(), 0, "after stopping the after_func");
}

// ---------------------------------------------------------------------------
// net_test.go
// ---------------------------------------------------------------------------

// Go: TestDeadlineExceededIsNetError
//
// Rust has no `net.Error`; the equivalents are the `is_timeout` and
// `is_temporary` predicates and the conversion to `std::io::Error`.
#[test]
fn deadline_exceeded_is_net_error() {
    let err = Error::DeadlineExceeded;
    assert!(err.is_timeout(), "timeout");
    assert!(err.is_temporary(), "temporary");
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    assert!(!Error::Canceled.is_timeout());
    assert!(!Error::Canceled.is_temporary());
}

// ---------------------------------------------------------------------------
// example_test.go: the examples, with their printed output as assertions
// ---------------------------------------------------------------------------

// Go: ExampleWithCancel
#[tokio::test]
async fn example_with_cancel() {
    // A generator that stops when its context ends, so it does not leak.
    fn generate(
        ctx: Ctx,
    ) -> (
        tokio::sync::mpsc::Receiver<u32>,
        tokio::task::JoinHandle<Error>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let task = tokio::spawn(async move {
            let mut n = 1;
            loop {
                tokio::select! {
                    err = ctx.done() => return err,
                    sent = tx.send(n) => {
                        if sent.is_err() {
                            return Error::Canceled;
                        }
                        n += 1;
                    }
                }
            }
        });
        (rx, task)
    }

    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    let (mut numbers, task) = generate(ctx.clone());
    let mut seen = Vec::new();
    while let Some(n) = numbers.recv().await {
        seen.push(n);
        if n == 5 {
            break;
        }
    }
    cancel.cancel();
    assert_eq!(seen, [1, 2, 3, 4, 5]);
    let stopped = tokio::time::timeout(QUIESCENT, task).await;
    assert_eq!(
        stopped.ok().and_then(Result::ok),
        Some(Error::Canceled),
        "generator kept going"
    );
}

// Go: ExampleWithDeadline
#[test]
fn example_with_deadline() {
    let d = Instant::now() + SHORT;
    let (ctx, _cancel) = goctx::with_deadline(&goctx::background(), d);
    // Something that is never ready races the deadline.
    let out = futures::executor::block_on(ctx.run(std::future::pending::<()>()));
    let printed = match out {
        Ok(()) => "overslept".to_owned(),
        Err(err) => err.to_string(),
    };
    assert_eq!(printed, "context deadline exceeded");
}

// Go: ExampleWithTimeout
#[test]
fn example_with_timeout() {
    let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), SHORT);
    let out = futures::executor::block_on(ctx.run(std::future::pending::<()>()));
    let printed = match out {
        Ok(()) => "overslept".to_owned(),
        Err(err) => err.to_string(),
    };
    assert_eq!(printed, "context deadline exceeded");
}

// Go: ExampleWithValue
//
// Go keys by a string type (`favContextKey("language")`); goctx keys by
// type, so each key is a type of its own.
#[test]
fn example_with_value() {
    struct Language(&'static str);
    struct Color(&'static str);

    fn describe<T: Any + Send + Sync>(ctx: &Ctx, key: &str, show: fn(&T) -> &str) -> String {
        match ctx.value::<T>() {
            Some(v) => format!("found value: {}", show(v)),
            None => format!("key not found: {key}"),
        }
    }

    let ctx = goctx::with_value(&goctx::background(), Language("Go"));
    assert_eq!(
        describe::<Language>(&ctx, "language", |l| l.0),
        "found value: Go"
    );
    assert_eq!(
        describe::<Color>(&ctx, "color", |c| c.0),
        "key not found: color"
    );
}

// Go: ExampleAfterFunc_cond
//
// Waiting on a condition variable until the context ends: the callback
// wakes every waiter, each of which then checks its own context.
#[test]
fn example_after_func_cond() {
    /// Waits on `cond` (with `guard` held) until `met` or `ctx` ends.
    fn wait_on_cond<'a>(
        ctx: &Ctx,
        shared: &'a Arc<(Mutex<()>, Condvar)>,
        mut guard: MutexGuard<'a, ()>,
        met: impl Fn() -> bool,
    ) -> Result<(), Error> {
        let waker = Arc::clone(shared);
        // The callback takes the lock before waking, so it cannot slip in
        // between our check of the context and our wait.
        let stop = goctx::after_func(ctx, move || {
            let _guard = lock(&waker.0);
            waker.1.notify_all();
        });
        let result = loop {
            if met() {
                break Ok(());
            }
            guard = shared.1.wait(guard).unwrap_or_else(PoisonError::into_inner);
            if let Some(err) = ctx.err() {
                break Err(err);
            }
        };
        drop(guard);
        stop.stop();
        result
    }

    let shared = Arc::new((Mutex::new(()), Condvar::new()));
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), SHORT);
                let guard = lock(&shared.0);
                wait_on_cond(&ctx, &shared, guard, || false)
            })
        })
        .collect();
    for waiter in waiters {
        let printed = match waiter.join().expect("waiter panicked") {
            Ok(()) => "condition met".to_owned(),
            Err(err) => err.to_string(),
        };
        assert_eq!(printed, "context deadline exceeded");
    }
}

// Go: ExampleAfterFunc_connection
//
// Interrupting a blocking read when the context ends. Go moves the
// connection's read deadline to "now"; a blocked read in Rust is
// interrupted by shutting the reading side down instead (a Unix socket
// pair stands in for Go's TCP connection).
#[cfg(unix)]
#[test]
fn example_after_func_connection() {
    use std::io::Read;
    use std::net::Shutdown;
    use std::os::unix::net::UnixStream;

    fn read_from_conn(ctx: &Ctx, conn: &UnixStream, buf: &mut [u8]) -> std::io::Result<usize> {
        let interrupter = conn.try_clone()?;
        let (stopped_tx, stopped) = mpsc::channel();
        let stop = goctx::after_func(ctx, move || {
            let _ = interrupter.shutdown(Shutdown::Read);
            let _ = stopped_tx.send(());
        });
        let n = (&*conn).read(buf);
        if !stop.stop() {
            // The callback started: wait for it, then report why.
            let _ = stopped.recv();
            return Err(ctx.err().unwrap_or(Error::Canceled).into());
        }
        n
    }

    let (conn, _peer) = UnixStream::pair().expect("socket pair");
    // A safety net only: should the callback fail to interrupt the read,
    // the test fails after this long instead of hanging.
    conn.set_read_timeout(Some(QUIESCENT))
        .expect("read timeout");
    let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), SHORT);
    let mut buf = [0u8; 1024];
    let started = Instant::now();
    let err = read_from_conn(&ctx, &conn, &mut buf).expect_err("nothing was sent");
    assert!(
        started.elapsed() < QUIESCENT,
        "the read was not interrupted"
    );
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(err.to_string(), "context deadline exceeded");
}

// Go: ExampleAfterFunc_merge
//
// A context canceled when either of two contexts is, with the cause of
// whichever ended it.
#[test]
fn example_after_func_merge() {
    fn merge_cancel(ctx: &Ctx, cancel_ctx: &Ctx) -> (Ctx, impl Fn()) {
        let (merged, cancel) = goctx::with_cancel_cause(ctx);
        let watched = cancel_ctx.clone();
        let cancel_from_other = cancel.clone();
        let stop = goctx::after_func(cancel_ctx, move || match watched.cause() {
            Some(why) => cancel_from_other.cancel_with_cause(why),
            None => cancel_from_other.cancel(),
        });
        (merged, move || {
            stop.stop();
            cancel.cancel();
        })
    }

    let (ctx1, cancel1) = goctx::with_cancel_cause(&goctx::background());
    let (ctx2, cancel2) = goctx::with_cancel_cause(&goctx::background());
    let (merged, merged_cancel) = merge_cancel(&ctx1, &ctx2);

    cancel2.cancel_with_cause(Why("ctx2 canceled"));
    assert_eq!(merged.wait_timeout(QUIESCENT), Some(Error::Canceled));
    let printed = merged.cause().map(|c| c.to_string());
    assert_eq!(printed.as_deref(), Some("ctx2 canceled"));

    // Go's deferred calls.
    merged_cancel();
    cancel1.cancel_with_cause(Why("ctx1 canceled"));
    assert_eq!(
        printed,
        merged.cause().map(|c| c.to_string()),
        "first cause must stay"
    );
}
