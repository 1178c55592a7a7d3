//! Soak test: worker threads apply random operations to a shared forest of
//! contexts for a while, asserting invariants as they go; waiter threads
//! block on contexts that are bound to end; a watchdog fails the test if
//! any thread stops making progress (a deadlock or a lost wake-up).
//!
//! Duration: `GOCTX_SOAK_SECS` seconds of random operations (default 10),
//! e.g. `GOCTX_SOAK_SECS=3600 cargo test -p integration --release --test soak -- --nocapture`
//! for an hour. `GOCTX_SOAK_THREADS` sets the number of worker threads
//! (default 4; there are also 2 waiter threads). `GOCTX_SOAK_SEED` fixes
//! the random seed (printed at the start).
//!
//! Checked continuously, by every thread:
//! - `err()` never changes once `Some`; `cause()` is `Some` exactly when
//!   `err()` is, and the same `Arc` every time; `done()` is ready exactly
//!   when `err()` is `Some`, with the same error;
//! - a context derived from a done parent is born done, with the parent's
//!   error and cause; a child exists done as soon as its parent's `cancel()`
//!   returns;
//! - every pending `done()` waker is woken once its context is done, and
//!   every blocked `wait()` returns (the waiters only wait on contexts with
//!   a deadline, so each wait must end);
//! - `after_func` callbacks run at most once and never after a `stop()`
//!   that returned true.
//!
//! At the end, after every handle is dropped: the long-lived roots have no
//! registration left (`dependents() == 0`, the user context's subscriber
//! list is empty), every callback either ran once or was stopped, and no
//! goctx helper thread panicked.

mod common;
use common::Wrapper;
use common::causes::Why;
use common::hub::{Hub, NeverDone};

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use goctx::{AfterFunc, CancelFunc, Ctx, Error, background};

/// A thread whose progress counter did not move for this long is stuck.
const STALL: Duration = Duration::from_secs(60);
/// Bound on one asynchronous effect (a waker being called by another
/// thread's cancel, a callback starting).
const PATIENCE: Duration = Duration::from_secs(20);
const SLOTS: usize = 64;
const MAX_DEPTH: u32 = 48;
const MAX_CALLBACKS: usize = 2048;

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

// ---------------------------------------------------------------------------
// Small helpers

/// xorshift64*: enough randomness for choosing operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

struct Tag(#[allow(dead_code)] u64);

/// Counts wakes; lets a thread wait for the first one.
#[derive(Default)]
struct Flag {
    count: Mutex<usize>,
    changed: Condvar,
}

impl Flag {
    fn wait(&self, limit: Duration) -> usize {
        let guard = self.count.lock().unwrap();
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, limit, |n| *n == 0)
            .unwrap();
        *guard
    }
}

struct FlagWaker(Arc<Flag>);

impl Wake for FlagWaker {
    fn wake(self: Arc<Self>) {
        *self.0.count.lock().unwrap() += 1;
        self.0.changed.notify_all();
    }
}

// ---------------------------------------------------------------------------
// Shared state

#[derive(Default)]
struct Slot {
    ctx: Option<Ctx>,
    cancel: Option<CancelFunc>,
    depth: u32,
}

struct Callback {
    handle: AfterFunc,
    stopped: Arc<AtomicBool>,
}

struct World {
    roots: Vec<Ctx>,
    /// The subscriber list of the long-lived user context among the roots
    /// (never done during the run), so that derived contexts register with
    /// user code.
    hub: Arc<Hub>,
    slots: Vec<Mutex<Slot>>,
    callbacks: Mutex<Vec<Callback>>,
    registered: AtomicUsize,
    ran: AtomicUsize,
    /// Signaled after every callback run (the count is read under it).
    ran_signal: (Mutex<()>, Condvar),
    ran_twice: AtomicUsize,
    ran_after_stop: AtomicUsize,
    stopped: AtomicUsize,
    /// Violations by kind (the message with digits masked): how often,
    /// and the first full message.
    failures: Mutex<BTreeMap<String, (usize, String)>>,
    stop: AtomicBool,
    ops: AtomicU64,
}

impl World {
    /// Records a violation. The run goes on, so that one frequent problem
    /// does not hide the others; everything is reported at the end.
    fn fail(&self, msg: String) {
        let kind: String = msg
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .take(100)
            .collect();
        let mut failures = self.failures.lock().unwrap();
        let entry = failures.entry(kind).or_insert((0, msg));
        entry.0 += 1;
    }

    /// A context to derive from: a slot's, or a root.
    fn pick_parent(&self, rng: &mut Rng) -> (Ctx, u32) {
        let slot = self.slots[rng.below(SLOTS)].lock().unwrap();
        match &slot.ctx {
            Some(ctx) if slot.depth < MAX_DEPTH => (ctx.clone(), slot.depth),
            _ => {
                drop(slot);
                (self.roots[rng.below(self.roots.len())].clone(), 0)
            }
        }
    }

    fn put(&self, rng: &mut Rng, ctx: Ctx, cancel: Option<CancelFunc>, depth: u32) {
        let old = {
            let mut slot = self.slots[rng.below(SLOTS)].lock().unwrap();
            std::mem::replace(
                &mut *slot,
                Slot {
                    ctx: Some(ctx),
                    cancel,
                    depth,
                },
            )
        };
        // Dropped unlocked: dropping the last CancelFunc cancels a subtree.
        drop(old);
    }

    fn slot_cancel(&self, rng: &mut Rng) -> Option<(Option<Ctx>, CancelFunc)> {
        let slot = self.slots[rng.below(SLOTS)].lock().unwrap();
        slot.cancel.clone().map(|cancel| (slot.ctx.clone(), cancel))
    }

    fn slot_ctx(&self, rng: &mut Rng) -> Option<Ctx> {
        self.slots[rng.below(SLOTS)].lock().unwrap().ctx.clone()
    }
}

/// The consistency checks any thread may run on any context at any time.
fn check(world: &World, ctx: &Ctx, what: &str) {
    let cause_first = ctx.cause();
    let err = ctx.err();
    if cause_first.is_some() && err.is_none() {
        world.fail(format!(
            "{what}: cause() was Some while err() is None: {ctx:?}"
        ));
    }
    let Some(err) = err else { return };
    let cause = ctx.cause();
    match (&cause_first, &cause) {
        (_, None) => world.fail(format!("{what}: err() is {err:?} but cause() is None")),
        (Some(a), Some(b)) if !goctx::Cause::ptr_eq(a, b) => {
            world.fail(format!("{what}: cause() changed from {a} to {b}"))
        }
        _ => {}
    }
    if ctx.err() != Some(err) {
        world.fail(format!("{what}: err() changed after {err:?}"));
    }
    let mut done = pin!(ctx.done());
    match done
        .as_mut()
        .poll(&mut TaskContext::from_waker(Waker::noop()))
    {
        Poll::Ready(got) if got == err => {}
        other => world.fail(format!(
            "{what}: err() is {err:?} but done() polled {other:?}"
        )),
    }
}

// ---------------------------------------------------------------------------
// Operations

fn derive(world: &World, rng: &mut Rng) {
    let (parent, depth) = world.pick_parent(rng);
    let parent_err = parent.err();
    let parent_cause = parent.cause();
    let (ctx, cancel, inherits) = match rng.below(10) {
        0 | 1 => {
            let (c, f) = goctx::with_cancel(&parent);
            (c, Some(f), true)
        }
        2 => {
            let (c, f) = goctx::with_cancel_cause(&parent);
            (c, Some(f), true)
        }
        3 => {
            let ms = rng.below(20) as u64;
            let (c, f) = if rng.chance(50) {
                goctx::with_timeout(&parent, Duration::from_millis(ms))
            } else {
                goctx::with_timeout_cause(&parent, Duration::from_millis(ms), Why(ms))
            };
            (c, Some(f), true)
        }
        4 => {
            let at = Instant::now() + Duration::from_secs(3600);
            let (c, f) = goctx::with_deadline(&parent, at);
            (c, Some(f), true)
        }
        5 => (goctx::with_value(&parent, Tag(rng.next())), None, true),
        6 => (goctx::without_cancel(&parent), None, false),
        7 => (Ctx::from_context(Wrapper(parent.clone())), None, true),
        _ => {
            // A child canceled right away through its parent's cancel,
            // when the slot's context has one.
            let (c, f) = goctx::with_cancel(&parent);
            (c, Some(f), true)
        }
    };
    if inherits && let Some(err) = parent_err {
        // Born done, with the parent's error and cause.
        if ctx.err() != Some(err) {
            world.fail(format!(
                "child of a done parent ({err:?}) born with {:?}",
                ctx.err()
            ));
        }
        if let (Some(child), Some(parent)) = (ctx.cause(), &parent_cause)
            && !goctx::Cause::ptr_eq(&child, parent)
        {
            world.fail(format!(
                "child of a done parent has cause {child}, parent has {parent}"
            ));
        }
    }
    if !inherits && ctx.err().is_some() {
        world.fail("without_cancel context is done".into());
    }
    check(world, &ctx, "derived");
    world.put(rng, ctx, cancel, depth + 1);
}

fn cancel(world: &World, rng: &mut Rng) {
    let Some((ctx, cancel)) = world.slot_cancel(rng) else {
        return;
    };
    // A fresh child under it, which must be done as soon as cancel returns.
    let child = ctx.as_ref().map(goctx::with_cancel);
    if rng.chance(50) {
        cancel.cancel();
    } else {
        cancel.cancel_with_cause(Why(rng.next()));
    }
    if !cancel.is_canceled() {
        world.fail("cancel() returned, is_canceled() is false".into());
    }
    if let Some(ctx) = &ctx {
        if ctx.err().is_none() {
            world.fail("cancel() returned, err() is None".into());
        }
        check(world, ctx, "canceled");
    }
    if let Some((child, _f)) = &child
        && child.err().is_none()
    {
        world.fail("cancel() returned, a child is still live".into());
    }
}

fn drop_slot(world: &World, rng: &mut Rng) {
    let old = std::mem::take(&mut *world.slots[rng.below(SLOTS)].lock().unwrap());
    drop(old);
}

fn detach(world: &World, rng: &mut Rng) {
    let cancel = world.slots[rng.below(SLOTS)].lock().unwrap().cancel.take();
    if let Some(cancel) = cancel {
        cancel.detach();
    }
}

fn extend(world: &World, rng: &mut Rng) {
    let Some((ctx, cancel)) = world.slot_cancel(rng) else {
        return;
    };
    let to = Instant::now() + Duration::from_millis(rng.below(30) as u64);
    // deadline() is the sooner of the context's own deadline and its
    // ancestors' (which may be sooner), so never later than its own. Other
    // threads may extend the same context meanwhile, so the own deadline is
    // read back afterwards (a request not later than it changes nothing):
    // own deadlines only move later, so that bound holds at any earlier read.
    if cancel.extend_deadline(to).is_ok()
        && let Some(ctx) = ctx
        && let Some(deadline) = ctx.deadline()
        && let Ok(own) = cancel.extend_deadline(to)
        && deadline > own
    {
        world.fail(format!(
            "extend_deadline says the own deadline is {own:?}, deadline() is later: {deadline:?}"
        ));
    }
}

fn register_callback(world: &Arc<World>, rng: &mut Rng) {
    let Some(ctx) = world.slot_ctx(rng) else {
        return;
    };
    let stopped = Arc::new(AtomicBool::new(false));
    let ran = Arc::new(AtomicBool::new(false));
    let handle = goctx::after_func(&ctx, {
        let world = world.clone();
        let stopped = stopped.clone();
        move || {
            if ran.swap(true, Ordering::SeqCst) {
                world.ran_twice.fetch_add(1, Ordering::SeqCst);
            }
            if stopped.load(Ordering::SeqCst) {
                world.ran_after_stop.fetch_add(1, Ordering::SeqCst);
            }
            world.ran.fetch_add(1, Ordering::SeqCst);
            let _guard = world.ran_signal.0.lock().unwrap();
            world.ran_signal.1.notify_all();
        }
    });
    world.registered.fetch_add(1, Ordering::SeqCst);
    let retired = {
        let mut callbacks = world.callbacks.lock().unwrap();
        callbacks.push(Callback { handle, stopped });
        (callbacks.len() > MAX_CALLBACKS).then(|| callbacks.swap_remove(rng.below(MAX_CALLBACKS)))
    };
    if let Some(callback) = retired {
        stop_callback(world, callback);
    }
}

fn stop_callback(world: &World, callback: Callback) {
    if callback.handle.stop() {
        callback.stopped.store(true, Ordering::SeqCst);
        world.stopped.fetch_add(1, Ordering::SeqCst);
    }
    if callback.handle.stop() {
        world.fail("stop() returned true twice".into());
    }
}

fn stop_random(world: &World, rng: &mut Rng) {
    let callback = {
        let mut callbacks = world.callbacks.lock().unwrap();
        if callbacks.is_empty() {
            return;
        }
        let k = rng.below(callbacks.len());
        callbacks.swap_remove(k)
    };
    stop_callback(world, callback);
}

/// Polls `done()` by hand with a counting waker, then cancels: the waker
/// must be woken (by this cancel, or by an ancestor's that got there
/// first), and the future must then be ready.
fn poll_then_cancel(world: &World, rng: &mut Rng) {
    let (parent, _) = world.pick_parent(rng);
    let (ctx, cancel) = goctx::with_cancel(&parent);
    let flag = Arc::new(Flag::default());
    let waker = Waker::from(Arc::new(FlagWaker(flag.clone())));
    let mut done = Box::pin(ctx.done());
    let first = done.as_mut().poll(&mut TaskContext::from_waker(&waker));
    if rng.chance(30) {
        thread::yield_now();
    }
    cancel.cancel();
    if first.is_pending() && flag.wait(PATIENCE) == 0 {
        world.fail(format!("a pending done() waker was never woken ({ctx:?})"));
    }
    match done.as_mut().poll(&mut TaskContext::from_waker(&waker)) {
        Poll::Ready(_) => {}
        Poll::Pending => world.fail("done() pending after cancel() returned".into()),
    }
}

fn check_random(world: &World, rng: &mut Rng) {
    if let Some(ctx) = world.slot_ctx(rng) {
        check(world, &ctx, "slot");
        let _ = ctx.value::<Tag>();
        let _ = ctx.deadline();
    }
}

fn worker(world: Arc<World>, seed: u64, progress: Arc<AtomicU64>) {
    let mut rng = Rng(seed | 1);
    while !world.stop.load(Ordering::Relaxed) {
        match rng.below(100) {
            0..=29 => derive(&world, &mut rng),
            30..=39 => cancel(&world, &mut rng),
            40..=49 => drop_slot(&world, &mut rng),
            50..=54 => detach(&world, &mut rng),
            55..=59 => extend(&world, &mut rng),
            60..=71 => register_callback(&world, &mut rng),
            72..=77 => stop_random(&world, &mut rng),
            78..=84 => poll_then_cancel(&world, &mut rng),
            _ => check_random(&world, &mut rng),
        }
        world.ops.fetch_add(1, Ordering::Relaxed);
        progress.fetch_add(1, Ordering::Relaxed);
    }
}

/// Blocks on contexts that must end (each has a deadline of at most 20 ms
/// of its own), with `wait()`, with an async executor, and with `run()`.
fn waiter(world: Arc<World>, seed: u64, progress: Arc<AtomicU64>) {
    let mut rng = Rng(seed | 1);
    while !world.stop.load(Ordering::Relaxed) {
        let (parent, _) = world.pick_parent(&mut rng);
        let (ctx, _cancel) =
            goctx::with_timeout(&parent, Duration::from_millis(rng.below(20) as u64));
        let got = match rng.below(3) {
            0 => ctx.wait(),
            1 => futures::executor::block_on(ctx.done()),
            _ => match futures::executor::block_on(ctx.run(std::future::pending::<()>())) {
                Err(err) => err,
                Ok(()) => unreachable!(),
            },
        };
        if ctx.err() != Some(got) {
            world.fail(format!(
                "a waiter returned {got:?}, err() is {:?}",
                ctx.err()
            ));
        }
        check(&world, &ctx, "waited");
        world.ops.fetch_add(1, Ordering::Relaxed);
        progress.fetch_add(1, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------

#[test]
fn soak() {
    common::hooks::record_helper_panics(|_| false);
    let secs: u64 = env("GOCTX_SOAK_SECS").unwrap_or(10);
    let workers: usize = env("GOCTX_SOAK_THREADS").unwrap_or(4);
    let seed: u64 = env("GOCTX_SOAK_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!("soak: {secs} s, {workers} workers + 2 waiters, GOCTX_SOAK_SEED={seed}");

    let (cancel_root, cancel_root_fn) = goctx::with_cancel(&background());
    let (timed_root, timed_root_fn) =
        goctx::with_timeout(&background(), Duration::from_secs(24 * 3600));
    let hub = Arc::new(Hub::default());
    let roots = vec![
        cancel_root.clone(),
        timed_root.clone(),
        goctx::with_value(&cancel_root, Tag(0)),
        Ctx::from_context(Wrapper(timed_root.clone())),
        Ctx::from_context(NeverDone(hub.clone())),
    ];
    let world = Arc::new(World {
        roots,
        hub,
        slots: (0..SLOTS).map(|_| Mutex::new(Slot::default())).collect(),
        callbacks: Mutex::new(Vec::new()),
        registered: AtomicUsize::new(0),
        ran: AtomicUsize::new(0),
        ran_signal: (Mutex::new(()), Condvar::new()),
        ran_twice: AtomicUsize::new(0),
        ran_after_stop: AtomicUsize::new(0),
        stopped: AtomicUsize::new(0),
        failures: Mutex::new(BTreeMap::new()),
        stop: AtomicBool::new(false),
        ops: AtomicU64::new(0),
    });

    let mut threads = Vec::new();
    for i in 0..workers + 2 {
        let world = world.clone();
        let progress = Arc::new(AtomicU64::new(0));
        let seed = seed
            .wrapping_add(i as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let name = if i < workers {
            format!("soak-worker-{i}")
        } else {
            format!("soak-waiter-{}", i - workers)
        };
        let handle = thread::Builder::new()
            .name(name.clone())
            .spawn({
                let progress = progress.clone();
                move || {
                    if i < workers {
                        worker(world, seed, progress)
                    } else {
                        waiter(world, seed, progress)
                    }
                }
            })
            .expect("spawn");
        threads.push((name, progress, handle));
    }

    // The watchdog: every thread must keep making progress.
    let start = Instant::now();
    let run_for = Duration::from_secs(secs);
    let mut last: Vec<(u64, Instant)> = threads.iter().map(|_| (0, Instant::now())).collect();
    let mut next_report = Duration::from_secs(60);
    loop {
        thread::sleep(Duration::from_millis(200));
        let now = Instant::now();
        for (k, (name, progress, handle)) in threads.iter().enumerate() {
            let n = progress.load(Ordering::Relaxed);
            if n != last[k].0 || handle.is_finished() {
                last[k] = (n, now);
            } else if now - last[k].1 > STALL {
                world.stop.store(true, Ordering::Relaxed);
                panic!(
                    "watchdog: {name} made no progress for {STALL:?} (deadlock or lost wake-up) after {} ops; \
                     failures so far: {:#?}",
                    world.ops.load(Ordering::Relaxed),
                    world.failures.lock().unwrap()
                );
            }
        }
        if start.elapsed() >= run_for {
            break;
        }
        if start.elapsed() >= next_report {
            eprintln!(
                "soak: {:?}, {} ops",
                start.elapsed(),
                world.ops.load(Ordering::Relaxed)
            );
            next_report += Duration::from_secs(60);
        }
    }
    world.stop.store(true, Ordering::Relaxed);
    let stop_time = Instant::now();
    for (name, _, handle) in threads {
        while !handle.is_finished() {
            assert!(
                stop_time.elapsed() < STALL,
                "watchdog: {name} did not finish after the stop signal"
            );
            thread::sleep(Duration::from_millis(10));
        }
        if let Err(panic) = handle.join() {
            std::panic::resume_unwind(panic);
        }
    }
    // Everything found is reported together at the end.
    let mut problems: Vec<String> = world
        .failures
        .lock()
        .unwrap()
        .values()
        .map(|(count, first)| format!("{first} (seen {count}x)"))
        .collect();
    let mut expect = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };

    // Tear down: drop every slot, stop every callback still held.
    for slot in &world.slots {
        let old = std::mem::take(&mut *slot.lock().unwrap());
        drop(old);
    }
    let callbacks = std::mem::take(&mut *world.callbacks.lock().unwrap());
    for callback in callbacks {
        stop_callback(&world, callback);
    }
    let left = cancel_root.dependents();
    expect(
        left == 0,
        format!("{left} registrations left on the cancel root"),
    );
    let left = timed_root.dependents();
    expect(
        left == 0,
        format!("{left} registrations left on the deadline root"),
    );
    let left = world.hub.len();
    expect(
        left == 0,
        format!("{left} subscriptions left on the user context"),
    );
    cancel_root_fn.cancel();
    timed_root_fn.cancel();

    // Every registered callback ran exactly once or was stopped.
    let registered = world.registered.load(Ordering::SeqCst);
    let stopped = world.stopped.load(Ordering::SeqCst);
    {
        let guard = world.ran_signal.0.lock().unwrap();
        let _unused = world
            .ran_signal
            .1
            .wait_timeout_while(guard, PATIENCE, |_| {
                world.ran.load(Ordering::SeqCst) + stopped < registered
            })
            .unwrap();
    }
    let ran = world.ran.load(Ordering::SeqCst);
    let twice = world.ran_twice.load(Ordering::SeqCst);
    expect(twice == 0, format!("{twice} callbacks ran twice"));
    let after_stop = world.ran_after_stop.load(Ordering::SeqCst);
    expect(
        after_stop == 0,
        format!("{after_stop} stopped callbacks ran"),
    );
    expect(
        ran + stopped == registered,
        format!("callbacks: {ran} ran + {stopped} stopped != {registered} registered"),
    );

    // The helper threads are still healthy.
    let (probe, probe_cancel) = goctx::with_cancel(&background());
    let (tx, rx) = std::sync::mpsc::channel();
    let _h = goctx::after_func(&probe, move || tx.send(()).unwrap_or(()));
    probe_cancel.cancel();
    expect(
        rx.recv_timeout(PATIENCE).is_ok(),
        "the callback pool no longer runs callbacks".into(),
    );
    let (timed, _t) = goctx::with_timeout(&background(), Duration::from_millis(2));
    expect(
        timed.wait_timeout(PATIENCE) == Some(Error::DeadlineExceeded),
        "the timer thread stopped".into(),
    );
    let panics = common::hooks::helper_panics().clone();
    expect(
        panics.is_empty(),
        format!("goctx helper threads panicked: {panics:#?}"),
    );
    eprintln!(
        "soak: {} ops in {:?}; {registered} callbacks ({ran} ran, {stopped} stopped)",
        world.ops.load(Ordering::Relaxed),
        start.elapsed()
    );
    assert!(problems.is_empty(), "soak found: {problems:#?}");
}

/// Go's `cancel` holds the context's lock while it cancels the children,
/// so any `cancel()` call on a context — even one that finds it already
/// canceled by a concurrent ancestor's cancellation — returns only once
/// every descendant is done. Here thread B cancels the root of
/// root → ctx → 2000 children while this thread, as soon as it sees `ctx`
/// done, calls ctx's own (now redundant) cancel and then looks at the
/// children: none may still be live.
#[test]
fn a_cancel_that_loses_the_race_returns_after_the_subtree_is_done() {
    const ROUNDS: usize = 100;
    let mut rounds_with_live_children = 0;
    for _ in 0..ROUNDS {
        let (root, cancel_root) = goctx::with_cancel(&background());
        let (ctx, cancel) = goctx::with_cancel(&root);
        let children: Vec<_> = (0..2000).map(|_| goctx::with_cancel(&ctx)).collect();
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let other = thread::spawn({
            let barrier = barrier.clone();
            move || {
                barrier.wait();
                cancel_root.cancel();
            }
        });
        barrier.wait();
        let start = Instant::now();
        while ctx.err().is_none() {
            assert!(
                start.elapsed() < PATIENCE,
                "the root's cancel never reached ctx"
            );
            std::hint::spin_loop();
        }
        cancel.cancel(); // loses: ctx is already canceled
        if children.iter().any(|(child, _)| child.err().is_none()) {
            rounds_with_live_children += 1;
        }
        other.join().expect("canceling thread");
    }
    assert_eq!(
        rounds_with_live_children, 0,
        "in {rounds_with_live_children} of {ROUNDS} rounds, cancel() returned while children of its context were still live"
    );
}
