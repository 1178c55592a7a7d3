//! Model-based property test: random operation sequences over a growing
//! forest of contexts, checked after every step against a small reference
//! model of Go's `context` semantics.
//!
//! The model keeps every context it ever created, including those whose
//! handles are all gone: in Go a context exists until the garbage collector
//! takes it, and nothing observable changes when the last reference goes.
//! The harness holds the real handles (`Ctx`, `CancelFunc` clones,
//! `AfterFunc` handles, pending `done()` futures) and drops them when the
//! sequence says so, which exercises goctx's RAII paths (dropping the last
//! `CancelFunc` cancels; a context with no handle left leaves its parent's
//! registry and the timer).
//!
//! Checked after every step, for every context the harness still holds:
//! `err()`, `cause()` (by identity for user causes, by value for the two
//! errors), `deadline()`, the values of three key types, whether `done()`
//! is ready, `dependents()` (goctx's registration count), every pending
//! `done()` waiter (woken once done, and ready with the right error), and
//! every `after_func` callback (ran exactly once iff its context is done and
//! it was not stopped first; `stop()` returns true iff it prevented the
//! run).
//!
//! Time: deadlines are either already expired (`with_timeout(.., 0)`), an
//! hour away (never reached during a case), or short (10–40 ms) and then
//! waited out by the `Advance` step, which sleeps until every short deadline
//! has passed on the clock and then waits, with generous bounds, for the
//! library to report them. goctx never fires a deadline before the clock
//! reaches it, so as long as a step ends before the earliest pending short
//! deadline, nothing can have fired early; a step that ends later (the
//! machine stalled) makes the case ambiguous and it is *rejected*, not
//! failed. That keeps the test deterministic on a loaded machine.
//!
//! Operations: derive any kind of child (`with_cancel`, `with_cancel_cause`,
//! `with_timeout` of an hour or zero, short `with_deadline`, `with_value`,
//! `without_cancel`, and two user `Context` types: one delegating, one with
//! its own cancellation) under any context still held; cancel with or
//! without a cause; clone, drop or detach a `CancelFunc`; drop a `Ctx`;
//! `extend_deadline`; register, stop or forget `after_func` callbacks;
//! start or drop a pending `done()` waiter; let short deadlines pass.
//!
//! Run more cases with `PROPTEST_CASES=5000 cargo test -p integration --test model`;
//! `GOCTX_MODEL_STATS=1` (with `--nocapture`) prints coverage counters.

mod common;
use common::Wrapper;
use common::causes::Why;
use common::hub::Hub;

use std::any::{Any, TypeId};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use goctx::custom::{Context, Notify, Subscription};
use goctx::{AfterFunc, CancelFunc, Cause, Ctx, Error, ExtendError};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestError, TestRunner};

/// How long an asynchronous effect (a callback starting on a helper thread,
/// a deadline the clock has passed) may take before it counts as lost.
/// Generous on purpose; once a case has failed (with this bound), the
/// shrinking runs that follow use a shorter one, so that shrinking a lost
/// callback does not take minutes.
fn patience() -> Duration {
    if SHRINKING.load(Ordering::Relaxed) {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(5)
    }
}

static SHRINKING: AtomicBool = AtomicBool::new(false);
const HOUR: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------
// Operations

#[derive(Clone, Copy, Debug)]
enum Kind {
    Cancel,
    CancelCause,
    /// `with_timeout(p, 1h)`, or `with_timeout_cause` when `cause`.
    TimeoutLong {
        cause: bool,
    },
    /// `with_timeout(p, 0)`: born expired (unless the parent is done).
    TimeoutZero {
        cause: bool,
    },
    /// `with_deadline(p, now + ms)`, fired by a later `Advance`.
    DeadlineShort {
        ms: u8,
        cause: bool,
    },
    Value {
        key: u8,
    },
    Without,
    /// A user `Context` that delegates everything to its parent.
    Wrapper,
    /// A user `Context` with its own cancellation (values from its parent,
    /// no deadline), canceled by the `CancelManual` step.
    Manual,
}

#[derive(Clone, Debug)]
enum Op {
    Derive { parent: Sel, kind: Kind },
    Cancel { target: Sel, cause: bool },
    CancelManual { target: Sel, cause: bool },
    CloneCancel { target: Sel },
    DropCancel { target: Sel },
    Detach { target: Sel },
    DropCtx { target: Sel },
    Extend { target: Sel, ms: u8 },
    AfterFunc { target: Sel },
    Stop { target: Sel },
    DropAfterHandle { target: Sel },
    Wait { target: Sel },
    DropWaiter { target: Sel },
    Advance,
}

fn kind_strategy() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => Just(Kind::Cancel),
        1 => Just(Kind::CancelCause),
        1 => any::<bool>().prop_map(|cause| Kind::TimeoutLong { cause }),
        1 => any::<bool>().prop_map(|cause| Kind::TimeoutZero { cause }),
        3 => (10u8..=40, any::<bool>()).prop_map(|(ms, cause)| Kind::DeadlineShort { ms, cause }),
        2 => (0u8..3).prop_map(|key| Kind::Value { key }),
        1 => Just(Kind::Without),
        1 => Just(Kind::Wrapper),
        1 => Just(Kind::Manual),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (any::<Sel>(), kind_strategy()).prop_map(|(parent, kind)| Op::Derive { parent, kind }),
        3 => (any::<Sel>(), any::<bool>()).prop_map(|(target, cause)| Op::Cancel { target, cause }),
        1 => (any::<Sel>(), any::<bool>()).prop_map(|(target, cause)| Op::CancelManual { target, cause }),
        1 => any::<Sel>().prop_map(|target| Op::CloneCancel { target }),
        2 => any::<Sel>().prop_map(|target| Op::DropCancel { target }),
        3 => any::<Sel>().prop_map(|target| Op::Detach { target }),
        4 => any::<Sel>().prop_map(|target| Op::DropCtx { target }),
        1 => (any::<Sel>(), 1u8..=30).prop_map(|(target, ms)| Op::Extend { target, ms }),
        3 => any::<Sel>().prop_map(|target| Op::AfterFunc { target }),
        1 => any::<Sel>().prop_map(|target| Op::Stop { target }),
        1 => any::<Sel>().prop_map(|target| Op::DropAfterHandle { target }),
        2 => any::<Sel>().prop_map(|target| Op::Wait { target }),
        1 => any::<Sel>().prop_map(|target| Op::DropWaiter { target }),
        2 => Just(Op::Advance),
    ]
}

// ---------------------------------------------------------------------------
// Test doubles

/// Value types, one per key.
#[derive(Debug)]
struct K0(u32);
#[derive(Debug)]
struct K1(u32);
#[derive(Debug)]
struct K2(u32);

/// A user context with its own cancellation, notifying synchronously.
struct Manual {
    parent: Ctx,
    state: Arc<ManualState>,
}

#[derive(Default)]
struct ManualState {
    ended: Mutex<ManualEnd>,
    hub: Arc<Hub>,
}

/// The error and cause, once canceled.
#[derive(Default)]
struct ManualEnd {
    err: Option<Error>,
    cause: Option<Cause>,
}

impl ManualState {
    fn cancel(&self, cause: Option<Cause>) {
        {
            let mut ended = self.ended.lock().unwrap();
            if ended.err.is_some() {
                return;
            }
            ended.err = Some(Error::Canceled);
            ended.cause = cause;
        }
        self.hub.notify_all();
    }

    fn subscribers(&self) -> usize {
        self.hub.len()
    }
}

impl Context for Manual {
    fn err(&self) -> Option<Error> {
        self.state.ended.lock().unwrap().err
    }
    fn cause(&self) -> Option<Cause> {
        let ended = self.state.ended.lock().unwrap();
        let err = ended.err?;
        Some(ended.cause.clone().unwrap_or_else(|| Cause::from(err)))
    }
    fn lookup(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)> {
        Context::lookup(&self.parent, key)
    }
    fn subscribe(&self, notify: Notify) -> Subscription {
        self.state.hub.subscribe(notify)
    }
}

/// Counts calls; lets a thread wait for the count to reach a value.
#[derive(Default)]
struct Counter {
    count: Mutex<usize>,
    changed: Condvar,
}

impl Counter {
    fn bump(&self) {
        *self.count.lock().unwrap() += 1;
        self.changed.notify_all();
    }
    fn get(&self) -> usize {
        *self.count.lock().unwrap()
    }
    /// Waits until the count is at least `n` or `patience()` passed; returns
    /// the count.
    fn wait_for(&self, n: usize) -> usize {
        let guard = self.count.lock().unwrap();
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, patience(), |count| *count < n)
            .unwrap();
        *guard
    }
}

struct CountingWaker(Arc<Counter>);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.bump();
    }
}

// ---------------------------------------------------------------------------
// The model

#[derive(Clone, Copy, Debug, PartialEq)]
enum MCause {
    Err(Error),
    User(usize),
    /// The last `CancelFunc` was dropped: `goctx::CancelFuncDropped`.
    Dropped,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum NodeKind {
    Root,
    /// A goctx cancel node (`with_cancel`, `with_deadline`, ...).
    Cancel,
    Value {
        key: u8,
        val: u32,
    },
    Without,
    Wrapper,
    Manual,
}

struct Node {
    parent: Option<usize>,
    kind: NodeKind,
    children: Vec<usize>,
    /// Cancel and Manual nodes: `Some` once done.
    done: Option<(Error, MCause)>,
    /// Cancel nodes with a deadline of their own.
    own_deadline: Option<Instant>,
    /// How far the true own deadline may lie after `own_deadline`: zero
    /// when it was read back exactly, the span of the call for a zero
    /// timeout (born done, so it cannot be read back).
    own_slack: Duration,
    /// Cause reported when the own deadline fires.
    deadline_cause: Option<usize>,
    /// A short deadline that `Advance` will fire (Go semantics: it fires
    /// whether or not anything still refers to the context).
    armed: bool,
    /// No handle of any kind is left (goctx has freed it).
    freed: bool,
    ctx: Option<Ctx>,
    cancels: Vec<CancelFunc>,
    manual: Option<Arc<ManualState>>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum AfterModel {
    /// Registered in the registry of `home`, the node that decides when
    /// the context is done (`None`: the context can never end, nothing is
    /// registered).
    Pending {
        home: Option<usize>,
    },
    Fired,
    Stopped,
}

struct After {
    node: usize,
    state: AfterModel,
    handle: Option<AfterFunc>,
    ran: Arc<Counter>,
}

struct Waiter {
    node: usize,
    home: Option<usize>,
    future: Pin<Box<dyn Future<Output = Error> + Send>>,
    woken: Arc<Counter>,
}

struct World {
    nodes: Vec<Node>,
    afters: Vec<After>,
    waiters: Vec<Waiter>,
    causes: Vec<Cause>,
    next_val: u32,
    /// The last step was an `Advance`: the timer thread may still be
    /// finishing the bookkeeping of what it fired.
    settling: bool,
}

/// Why a step failed.
#[derive(Debug)]
enum StepError {
    /// The library disagrees with the model. If a short deadline passed
    /// during the step, an early firing could explain it: the case is then
    /// rejected instead.
    Mismatch(String),
    /// Something the model says must happen did not happen within
    /// `patience()` (a callback that never ran, a waiter never woken). A
    /// deadline firing early can only make *more* happen, so this is a
    /// failure whatever the clock says.
    Lost(String),
    /// The case cannot be judged (a timing coincidence).
    Reject(&'static str),
}

type Check = Result<(), StepError>;

fn fail(msg: String) -> StepError {
    StepError::Mismatch(msg)
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(StepError::Mismatch(format!($($fmt)+)));
        }
    };
}

macro_rules! ensure_happened {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(StepError::Lost(format!($($fmt)+)));
        }
    };
}

/// Chooses among the candidates of an operation: contexts, handles,
/// callbacks. Shrinks towards the oldest.
type Sel = u8;

fn pick(candidates: &[usize], sel: &Sel) -> Option<usize> {
    (!candidates.is_empty()).then(|| candidates[usize::from(*sel) % candidates.len()])
}

impl World {
    fn new() -> Self {
        let mut world = World {
            nodes: Vec::new(),
            afters: Vec::new(),
            waiters: Vec::new(),
            causes: Vec::new(),
            next_val: 0,
            settling: false,
        };
        world.push(None, NodeKind::Root, Some(goctx::background()));
        world
    }

    fn push(&mut self, parent: Option<usize>, kind: NodeKind, ctx: Option<Ctx>) -> usize {
        count(&STATS.nodes, 1);
        let id = self.nodes.len();
        self.nodes.push(Node {
            parent,
            kind,
            children: Vec::new(),
            done: None,
            own_deadline: None,
            own_slack: Duration::ZERO,
            deadline_cause: None,
            armed: false,
            freed: false,
            ctx,
            cancels: Vec::new(),
            manual: None,
        });
        if let Some(p) = parent {
            self.nodes[p].children.push(id);
        }
        id
    }

    fn new_cause(&mut self) -> (usize, Cause) {
        let id = self.causes.len();
        let cause = Cause::new(Why(id));
        self.causes.push(cause.clone());
        (id, cause)
    }

    // -- Go semantics --------------------------------------------------------

    /// The cancel (or manual) node that decides when `i` is done.
    fn src(&self, i: usize) -> Option<usize> {
        let mut i = i;
        loop {
            match self.nodes[i].kind {
                NodeKind::Root | NodeKind::Without => return None,
                NodeKind::Cancel | NodeKind::Manual => return Some(i),
                NodeKind::Value { .. } | NodeKind::Wrapper => i = self.nodes[i].parent?,
            }
        }
    }

    fn state(&self, i: usize) -> Option<(Error, MCause)> {
        self.src(i).and_then(|s| self.nodes[s].done)
    }

    /// The earliest own deadline on the path to the root, as deadlines
    /// stand now (extensions included), and how much later the true one
    /// may be (see `own_slack`).
    fn deadline(&self, i: usize) -> Option<(Instant, Duration)> {
        let mut i = i;
        let mut earliest: Option<Instant> = None;
        let mut slack = Duration::ZERO;
        loop {
            let node = &self.nodes[i];
            if let (NodeKind::Cancel, Some(own)) = (node.kind, node.own_deadline) {
                earliest = Some(earliest.map_or(own, |e| e.min(own)));
                slack = slack.max(node.own_slack);
            }
            match node.kind {
                NodeKind::Root | NodeKind::Without | NodeKind::Manual => break,
                _ => match node.parent {
                    Some(p) => i = p,
                    None => break,
                },
            }
        }
        earliest.map(|at| (at, slack))
    }

    fn lookup(&self, i: usize, key: u8) -> Option<u32> {
        let mut i = i;
        loop {
            let node = &self.nodes[i];
            match node.kind {
                NodeKind::Root => return None,
                NodeKind::Value { key: k, val } if k == key => return Some(val),
                _ => i = node.parent?,
            }
        }
    }

    /// Ends node `s` (a cancel or manual node) and, as Go does, every
    /// cancel node below it, with the same error and cause. First cancel
    /// wins.
    fn end(&mut self, s: usize, err: Error, cause: MCause) {
        if self.nodes[s].done.is_some() {
            return;
        }
        self.nodes[s].done = Some((err, cause));
        self.nodes[s].armed = false;
        count(&STATS.cancels, 1);
        let mut stack: Vec<usize> = self.nodes[s].children.clone();
        while let Some(c) = stack.pop() {
            match self.nodes[c].kind {
                NodeKind::Cancel => self.end(c, err, cause),
                NodeKind::Value { .. } | NodeKind::Wrapper => {
                    stack.extend(self.nodes[c].children.iter().copied())
                }
                NodeKind::Without | NodeKind::Manual | NodeKind::Root => {}
            }
        }
    }

    /// after_func callbacks whose context is now done are due (Go: run
    /// exactly once).
    fn fire_afters(&mut self) {
        for k in 0..self.afters.len() {
            if matches!(self.afters[k].state, AfterModel::Pending { .. })
                && self.state(self.afters[k].node).is_some()
            {
                count(&STATS.afters_fired, 1);
                self.afters[k].state = AfterModel::Fired;
            }
        }
    }

    // -- goctx bookkeeping ---------------------------------------------------

    /// Marks nodes that no handle reaches any more (goctx frees them: a live
    /// one leaves its parent's registry and the timer). A pending
    /// `after_func` callback holds its context, as in Go, where the
    /// registration keeps the context reachable.
    fn collect(&mut self) {
        let n = self.nodes.len();
        let mut held = vec![false; n];
        for w in &self.waiters {
            held[w.node] = true;
        }
        for a in &self.afters {
            if let AfterModel::Pending { home: Some(_) } = a.state {
                held[a.node] = true;
            }
        }
        // Children have larger ids than their parents.
        for i in (0..n).rev() {
            let node = &self.nodes[i];
            if node.ctx.is_some() || !node.cancels.is_empty() {
                held[i] = true;
            }
            if held[i]
                && let Some(p) = node.parent
            {
                held[p] = true;
            }
        }
        for (node, held) in self.nodes.iter_mut().zip(held) {
            if !held && !node.freed {
                node.freed = true;
                if node.kind == NodeKind::Cancel && node.done.is_none() {
                    count(&STATS.freed_live, 1);
                }
            }
        }
    }

    /// goctx's registration count of live node `s`: live children in memory,
    /// pending callbacks and pending waiters registered with it.
    fn expected_registrations(&self, s: usize) -> usize {
        if self.nodes[s].done.is_some() {
            return 0;
        }
        let children = (0..self.nodes.len())
            .filter(|&c| {
                let node = &self.nodes[c];
                node.kind == NodeKind::Cancel
                    && !node.freed
                    && node.done.is_none()
                    && node.parent.and_then(|p| self.src(p)) == Some(s)
            })
            .count();
        let afters = self
            .afters
            .iter()
            .filter(|a| a.state == AfterModel::Pending { home: Some(s) })
            .count();
        let waiters = self.waiters.iter().filter(|w| w.home == Some(s)).count();
        children + afters + waiters
    }

    /// `Ctx::dependents` counts the registry of the nearest goctx cancel
    /// node through values; user contexts report 0.
    fn dependents_source(&self, i: usize) -> Option<usize> {
        let mut i = i;
        loop {
            match self.nodes[i].kind {
                NodeKind::Root | NodeKind::Without | NodeKind::Wrapper | NodeKind::Manual => {
                    return None;
                }
                NodeKind::Cancel => return Some(i),
                NodeKind::Value { .. } => i = self.nodes[i].parent?,
            }
        }
    }

    /// Live armed short deadlines, earliest first.
    fn armed(&self) -> Vec<(Instant, usize)> {
        let mut armed: Vec<_> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].armed && self.nodes[i].done.is_none())
            .filter_map(|i| self.nodes[i].own_deadline.map(|d| (d, i)))
            .collect();
        armed.sort();
        armed
    }

    fn with_ctx(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].ctx.is_some())
            .collect()
    }

    fn with_cancels(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| !self.nodes[i].cancels.is_empty())
            .collect()
    }

    // -- steps ---------------------------------------------------------------

    fn step(&mut self, op: &Op) -> Check {
        count(&STATS.steps, 1);
        self.settling = false;
        match op {
            Op::Derive { parent, kind } => {
                if let Some(p) = pick(&self.with_ctx(), parent) {
                    self.derive(p, *kind)?;
                }
            }
            Op::Cancel { target, cause } => {
                if let Some(i) = pick(&self.with_cancels(), target) {
                    let mcause = if *cause {
                        let (id, cause) = self.new_cause();
                        self.nodes[i].cancels[0].cancel_with_cause(cause);
                        MCause::User(id)
                    } else {
                        self.nodes[i].cancels[0].cancel();
                        MCause::Err(Error::Canceled)
                    };
                    self.end(i, Error::Canceled, mcause);
                }
            }
            Op::CancelManual { target, cause } => {
                let manuals: Vec<usize> = (0..self.nodes.len())
                    .filter(|&i| self.nodes[i].manual.is_some())
                    .collect();
                if let Some(i) = pick(&manuals, target) {
                    let state = self.nodes[i].manual.clone().unwrap();
                    let mcause = if *cause {
                        let (id, cause) = self.new_cause();
                        state.cancel(Some(cause));
                        MCause::User(id)
                    } else {
                        state.cancel(None);
                        MCause::Err(Error::Canceled)
                    };
                    self.end(i, Error::Canceled, mcause);
                }
            }
            Op::CloneCancel { target } => {
                if let Some(i) = pick(&self.with_cancels(), target) {
                    let clone = self.nodes[i].cancels[0].clone();
                    self.nodes[i].cancels.push(clone);
                }
            }
            Op::DropCancel { target } => {
                if let Some(i) = pick(&self.with_cancels(), target) {
                    drop(self.nodes[i].cancels.pop());
                    if self.nodes[i].cancels.is_empty() {
                        // The last counted handle: RAII cancel, and the
                        // cause says so.
                        self.end(i, Error::Canceled, MCause::Dropped);
                    }
                }
            }
            Op::Detach { target } => {
                if let Some(i) = pick(&self.with_cancels(), target) {
                    self.nodes[i].cancels.pop().unwrap().detach();
                }
            }
            Op::DropCtx { target } => {
                let candidates: Vec<usize> =
                    self.with_ctx().into_iter().filter(|&i| i != 0).collect();
                if let Some(i) = pick(&candidates, target) {
                    self.nodes[i].ctx = None;
                }
            }
            Op::Extend { target, ms } => {
                if let Some(i) = pick(&self.with_cancels(), target) {
                    self.extend(i, Duration::from_millis(u64::from(*ms)))?;
                }
            }
            Op::AfterFunc { target } => {
                if let Some(i) = pick(&self.with_ctx(), target) {
                    let ran = Arc::new(Counter::default());
                    let flag = ran.clone();
                    let handle =
                        goctx::after_func(self.nodes[i].ctx.as_ref().unwrap(), move || flag.bump());
                    let state = match self.src(i) {
                        None => AfterModel::Pending { home: None },
                        Some(s) if self.nodes[s].done.is_some() => AfterModel::Fired,
                        Some(s) => AfterModel::Pending { home: Some(s) },
                    };
                    self.afters.push(After {
                        node: i,
                        state,
                        handle: Some(handle),
                        ran,
                    });
                }
            }
            Op::Stop { target } => {
                let held: Vec<usize> = (0..self.afters.len())
                    .filter(|&k| self.afters[k].handle.is_some())
                    .collect();
                if let Some(k) = pick(&held, target) {
                    let stopped = self.afters[k].handle.as_ref().unwrap().stop();
                    let expected = matches!(self.afters[k].state, AfterModel::Pending { .. });
                    ensure!(
                        stopped == expected,
                        "stop() of after_func #{k} on node {} returned {stopped}, model says {expected} ({:?})",
                        self.afters[k].node,
                        self.afters[k].state
                    );
                    if expected {
                        count(&STATS.afters_stopped, 1);
                        self.afters[k].state = AfterModel::Stopped;
                    }
                }
            }
            Op::DropAfterHandle { target } => {
                let held: Vec<usize> = (0..self.afters.len())
                    .filter(|&k| self.afters[k].handle.is_some())
                    .collect();
                if let Some(k) = pick(&held, target) {
                    self.afters[k].handle = None;
                }
            }
            Op::Wait { target } => {
                if let Some(i) = pick(&self.with_ctx(), target) {
                    self.wait(i)?;
                }
            }
            Op::DropWaiter { target } => {
                if !self.waiters.is_empty() {
                    let k = usize::from(*target) % self.waiters.len();
                    drop(self.waiters.remove(k));
                }
            }
            Op::Advance => self.advance()?,
        }
        self.fire_afters();
        self.collect();
        self.check()?;
        self.check_waiters()
    }

    /// Runs one step and its checks, then the ambiguity guard: everything
    /// the step did happened before the clock read below, and goctx fires
    /// no deadline before its time, so if the earliest pending short
    /// deadline is still ahead, no deadline interfered.
    fn guarded_step(&mut self, op: &Op) -> Check {
        let result = self.step(op);
        let now = Instant::now();
        let tainted = self.armed().first().is_some_and(|&(first, _)| first <= now);
        match result {
            Err(StepError::Lost(msg)) => Err(StepError::Lost(msg)),
            _ if tainted => Err(StepError::Reject(
                "a short deadline passed before Advance (slow machine)",
            )),
            other => other,
        }
    }

    fn derive(&mut self, p: usize, kind: Kind) -> Check {
        let parent_ctx = self.nodes[p].ctx.clone().unwrap();
        match kind {
            Kind::Cancel | Kind::CancelCause => {
                let (ctx, cancel) = if matches!(kind, Kind::Cancel) {
                    goctx::with_cancel(&parent_ctx)
                } else {
                    goctx::with_cancel_cause(&parent_ctx)
                };
                self.add_cancel(p, ctx, cancel, None, None, false);
            }
            Kind::TimeoutLong { cause } | Kind::TimeoutZero { cause } => {
                let long = matches!(kind, Kind::TimeoutLong { .. });
                let dur = if long { HOUR } else { Duration::ZERO };
                let user = cause.then(|| self.new_cause());
                let t0 = Instant::now();
                let (ctx, cancel) = match &user {
                    Some((_, cause)) => goctx::with_timeout_cause(&parent_ctx, dur, cause.clone()),
                    None => goctx::with_timeout(&parent_ctx, dur),
                };
                let t1 = Instant::now();
                let (lo, hi) = (t0 + dur, t1 + dur);
                // Every deadline context keeps its own deadline, whatever
                // the parent's (unlike Go, where a sooner parent makes it a
                // plain cancel context). A request not later than the
                // current deadline changes nothing and reports it exactly.
                let own = match cancel.extend_deadline(t0) {
                    Ok(own) => {
                        ensure!(
                            lo <= own && own <= hi,
                            "with_timeout({dur:?}) own deadline {own:?} outside [{lo:?}, {hi:?}]"
                        );
                        Some(own)
                    }
                    // Born done (a done parent, or a zero timeout): the
                    // deadline, if it matters, is already past.
                    Err(ExtendError::Done(_)) => Some(lo),
                    Err(ExtendError::NoDeadline) => {
                        return Err(fail(format!(
                            "with_timeout({dur:?}) under node {p}: no deadline of its own"
                        )));
                    }
                };
                let exact = own != Some(lo) || lo == hi;
                let i = self.add_cancel(p, ctx, cancel, own, user.map(|u| u.0), false);
                if !exact {
                    self.nodes[i].own_slack = hi - lo;
                }
            }
            Kind::DeadlineShort { ms, cause } => {
                let d = Instant::now() + Duration::from_millis(u64::from(ms));
                let user = cause.then(|| self.new_cause());
                let (ctx, cancel) = match &user {
                    Some((_, cause)) => goctx::with_deadline_cause(&parent_ctx, d, cause.clone()),
                    None => goctx::with_deadline(&parent_ctx, d),
                };
                self.add_cancel(p, ctx, cancel, Some(d), user.map(|u| u.0), true);
            }
            Kind::Value { key } => {
                let val = self.next_val;
                self.next_val += 1;
                let ctx = match key {
                    0 => goctx::with_value(&parent_ctx, K0(val)),
                    1 => goctx::with_value(&parent_ctx, K1(val)),
                    _ => goctx::with_value(&parent_ctx, K2(val)),
                };
                self.push(Some(p), NodeKind::Value { key, val }, Some(ctx));
            }
            Kind::Without => {
                let ctx = goctx::without_cancel(&parent_ctx);
                self.push(Some(p), NodeKind::Without, Some(ctx));
            }
            Kind::Wrapper => {
                let ctx = Ctx::from_context(Wrapper(parent_ctx));
                self.push(Some(p), NodeKind::Wrapper, Some(ctx));
            }
            Kind::Manual => {
                let state = Arc::new(ManualState::default());
                let ctx = Ctx::from_context(Manual {
                    parent: parent_ctx,
                    state: state.clone(),
                });
                let i = self.push(Some(p), NodeKind::Manual, Some(ctx));
                self.nodes[i].manual = Some(state);
            }
        }
        Ok(())
    }

    /// Records a new cancel node and its birth state: Go cancels a child of
    /// a done parent during construction (parent's error and cause), and a
    /// deadline child whose deadline already passed with DeadlineExceeded.
    fn add_cancel(
        &mut self,
        p: usize,
        ctx: Ctx,
        cancel: CancelFunc,
        deadline: Option<Instant>,
        cause: Option<usize>,
        short: bool,
    ) -> usize {
        let parent_state = self.state(p);
        let i = self.push(Some(p), NodeKind::Cancel, Some(ctx));
        let node = &mut self.nodes[i];
        node.cancels.push(cancel);
        node.own_deadline = deadline;
        node.deadline_cause = cause;
        if let Some((err, cause)) = parent_state {
            node.done = Some((err, cause));
        } else if let Some(d) = deadline
            && d <= Instant::now()
            && !short
        {
            node.done = Some((Error::DeadlineExceeded, deadline_cause(cause)));
        } else {
            node.armed = short;
        }
        i
    }

    fn extend(&mut self, i: usize, by: Duration) -> Check {
        let node = &self.nodes[i];
        let target = node.own_deadline.unwrap_or_else(Instant::now) + by;
        let got = node.cancels[0].extend_deadline(target);
        let expected = match (node.done, node.own_deadline) {
            (Some((err, _)), _) => Err(ExtendError::Done(err)),
            (None, None) => Err(ExtendError::NoDeadline),
            (None, Some(_)) => Ok(target),
        };
        ensure!(
            got == expected,
            "extend_deadline on node {i}: got {got:?}, model says {expected:?}"
        );
        if expected.is_ok() {
            self.nodes[i].own_deadline = Some(target);
        }
        Ok(())
    }

    fn wait(&mut self, i: usize) -> Check {
        let ctx = self.nodes[i].ctx.clone().unwrap();
        let mut future: Pin<Box<dyn Future<Output = Error> + Send>> =
            Box::pin(async move { ctx.done().await });
        let woken = Arc::new(Counter::default());
        let waker = Waker::from(Arc::new(CountingWaker(woken.clone())));
        let polled = future.as_mut().poll(&mut TaskContext::from_waker(&waker));
        match (polled, self.state(i)) {
            (Poll::Ready(err), Some((expected, _))) => {
                ensure!(
                    err == expected,
                    "done() on node {i} gave {err:?}, model says {expected:?}"
                )
            }
            (Poll::Pending, None) => {
                let home = self.src(i);
                self.waiters.push(Waiter {
                    node: i,
                    home,
                    future,
                    woken,
                });
            }
            (polled, state) => {
                return Err(fail(format!(
                    "done() on node {i}: {polled:?}, model state {state:?}"
                )));
            }
        }
        Ok(())
    }

    /// Lets every armed short deadline pass, then expects the library to
    /// have fired them all, earliest first.
    fn advance(&mut self) -> Check {
        let armed = self.armed();
        let Some(&(last, _)) = armed.last() else {
            return Ok(());
        };
        loop {
            let now = Instant::now();
            if now > last {
                break;
            }
            std::thread::sleep(last - now + Duration::from_micros(200));
        }
        for (_, i) in armed {
            if self.nodes[i].done.is_none() {
                count(&STATS.deadlines_fired, 1);
                let cause = deadline_cause(self.nodes[i].deadline_cause);
                self.end(i, Error::DeadlineExceeded, cause);
            }
        }
        // The clock has passed; the timer thread reports in its own time.
        for i in 0..self.nodes.len() {
            let Some((err, _)) = self.state(i) else {
                continue;
            };
            if let Some(ctx) = &self.nodes[i].ctx {
                let got = ctx.wait_timeout(patience());
                ensure_happened!(
                    got == Some(err),
                    "node {i}: waited for {err:?} after Advance, got {got:?}"
                );
            } else if let Some(cancel) = self.nodes[i].cancels.first() {
                ensure_happened!(
                    eventually(|| cancel.is_canceled()),
                    "node {i}: CancelFunc not canceled after its deadline passed"
                );
            }
        }
        self.settling = true;
        Ok(())
    }

    // -- checks --------------------------------------------------------------

    fn check(&self) -> Check {
        for (k, a) in self.afters.iter().enumerate() {
            match a.state {
                AfterModel::Fired => {
                    let ran = a.ran.wait_for(1);
                    ensure_happened!(
                        ran >= 1,
                        "after_func #{k} on node {}: never ran, its context is done",
                        a.node
                    );
                    ensure!(
                        ran == 1,
                        "after_func #{k} on node {}: ran {ran} times, expected once",
                        a.node
                    );
                }
                AfterModel::Pending { .. } | AfterModel::Stopped => {
                    let ran = a.ran.get();
                    ensure!(
                        ran == 0,
                        "after_func #{k} on node {} ran {ran} times, model state {:?}",
                        a.node,
                        a.state
                    );
                }
            }
        }
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            let state = self.state(i);
            for cancel in &node.cancels {
                ensure!(
                    cancel.is_canceled() == node.done.is_some(),
                    "node {i}: CancelFunc::is_canceled() = {}, model done = {:?}",
                    cancel.is_canceled(),
                    node.done
                );
            }
            if let Some(manual) = &node.manual {
                let expected = self.expected_registrations(i);
                let check = || manual.subscribers() == expected;
                let ok = if self.settling {
                    eventually(check)
                } else {
                    check()
                };
                ensure!(
                    ok,
                    "manual node {i}: {} subscribers, model says {expected}",
                    manual.subscribers()
                );
            }
            let Some(ctx) = &node.ctx else { continue };
            let err = ctx.err();
            ensure!(
                err == state.map(|s| s.0),
                "node {i} ({:?}): err() = {err:?}, model says {:?}",
                node.kind,
                state
            );
            self.check_cause(i, ctx.cause(), state.map(|s| s.1))?;
            let deadline = ctx.deadline();
            let ok = match (deadline, self.deadline(i)) {
                (Some(got), Some((at, slack))) => at <= got && got <= at + slack,
                (got, want) => got.is_none() && want.is_none(),
            };
            ensure!(
                ok,
                "node {i}: deadline() = {deadline:?}, model says {:?}",
                self.deadline(i)
            );
            let values = [
                ctx.value::<K0>().map(|v| v.0),
                ctx.value::<K1>().map(|v| v.0),
                ctx.value::<K2>().map(|v| v.0),
            ];
            for (key, got) in values.into_iter().enumerate() {
                let expected = self.lookup(i, key as u8);
                ensure!(
                    got == expected,
                    "node {i}: value K{key} = {got:?}, model says {expected:?}"
                );
            }
            let polled = poll_once(ctx.done());
            ensure!(
                polled == state.map(|s| s.0),
                "node {i}: done() polled {polled:?}, model says {state:?}"
            );
            let expected = self
                .dependents_source(i)
                .map_or(0, |s| self.expected_registrations(s));
            let check = || ctx.dependents() == expected;
            let ok = if self.settling {
                eventually(check)
            } else {
                check()
            };
            ensure!(
                ok,
                "node {i}: dependents() = {}, model says {expected}",
                ctx.dependents()
            );
        }
        Ok(())
    }

    fn check_cause(&self, i: usize, got: Option<Cause>, expected: Option<MCause>) -> Check {
        match (got, expected) {
            (None, None) => Ok(()),
            (Some(got), Some(MCause::Err(err))) => {
                ensure!(
                    got.downcast_ref::<Error>() == Some(&err),
                    "node {i}: cause() = {got:?}, model says the error {err:?}"
                );
                Ok(())
            }
            (Some(got), Some(MCause::Dropped)) => {
                ensure!(
                    got.is::<goctx::CancelFuncDropped>(),
                    "node {i}: cause() = {got:?}, model says CancelFuncDropped"
                );
                Ok(())
            }
            (Some(got), Some(MCause::User(id))) => {
                ensure!(
                    Cause::ptr_eq(&got, &self.causes[id]),
                    "node {i}: cause() = {got:?} ({got}), model says test cause #{id}"
                );
                Ok(())
            }
            (got, expected) => Err(fail(format!(
                "node {i}: cause() = {got:?}, model says {expected:?}"
            ))),
        }
    }

    /// After the sequence: drop every `CancelFunc` (RAII cancel) and cancel
    /// every manual context, then check everything once more. Every
    /// callback whose context can end has now run or was stopped.
    fn finish(&mut self) -> Check {
        self.settling = false;
        for i in 0..self.nodes.len() {
            let cancels = std::mem::take(&mut self.nodes[i].cancels);
            if !cancels.is_empty() {
                drop(cancels);
                self.end(i, Error::Canceled, MCause::Dropped);
            }
            if let Some(manual) = &self.nodes[i].manual {
                manual.cancel(None);
                self.end(i, Error::Canceled, MCause::Err(Error::Canceled));
            }
        }
        self.fire_afters();
        self.collect();
        self.check()?;
        self.check_waiters()
    }
}

impl World {
    /// Pending `done()` futures: once the model says their context is done,
    /// they must have been woken and must be ready with the model's error.
    fn check_waiters(&mut self) -> Check {
        let mut k = 0;
        while k < self.waiters.len() {
            let node = self.waiters[k].node;
            let state = self.state(node);
            let w = &mut self.waiters[k];
            let waker = Waker::from(Arc::new(CountingWaker(w.woken.clone())));
            match state {
                Some((err, _)) => {
                    let woken = w.woken.wait_for(1);
                    ensure_happened!(
                        woken >= 1,
                        "waiter #{k} on node {node}: never woken, its context is done with {err:?}"
                    );
                    let polled = w.future.as_mut().poll(&mut TaskContext::from_waker(&waker));
                    ensure!(
                        polled == Poll::Ready(err),
                        "waiter #{k} on node {node}: woken, then polled {polled:?}, model says {err:?}"
                    );
                    count(&STATS.waiters_woken, 1);
                    self.waiters.remove(k);
                }
                None => {
                    if w.woken.get() > 0 {
                        let polled = w.future.as_mut().poll(&mut TaskContext::from_waker(&waker));
                        ensure!(
                            polled.is_pending(),
                            "waiter #{k} on node {node}: ready with {polled:?}, model says live"
                        );
                    }
                    k += 1;
                }
            }
        }
        Ok(())
    }
}

fn deadline_cause(cause: Option<usize>) -> MCause {
    cause.map_or(MCause::Err(Error::DeadlineExceeded), MCause::User)
}

/// Polls a future once with a waker that does nothing.
fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let waker = Waker::noop();
    match future.as_mut().poll(&mut TaskContext::from_waker(waker)) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

/// Re-checks `cond` until it holds or `patience()` passed. Only for state that
/// another thread finishes and that offers no signal to wait on.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > patience() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut world = World::new();
    for (n, op) in ops.iter().enumerate() {
        world
            .guarded_step(op)
            .map_err(|e| describe(e, &format!("step {n} ({op:?})")))?;
    }
    world.finish().map_err(|e| describe(e, "final drop"))
}

fn describe(err: StepError, at: &str) -> TestCaseError {
    match err {
        StepError::Mismatch(msg) => TestCaseError::fail(format!("{at}: {msg}")),
        StepError::Lost(msg) => TestCaseError::fail(format!("{at}: {msg}")),
        StepError::Reject(why) => TestCaseError::reject(why),
    }
}

/// Coverage counters, printed with `GOCTX_MODEL_STATS=1`.
#[derive(Default)]
struct Stats {
    cases: AtomicUsize,
    rejected: AtomicUsize,
    steps: AtomicUsize,
    nodes: AtomicUsize,
    cancels: AtomicUsize,
    afters_fired: AtomicUsize,
    afters_stopped: AtomicUsize,
    waiters_woken: AtomicUsize,
    deadlines_fired: AtomicUsize,
    freed_live: AtomicUsize,
}

static STATS: Stats = Stats {
    cases: AtomicUsize::new(0),
    rejected: AtomicUsize::new(0),
    steps: AtomicUsize::new(0),
    nodes: AtomicUsize::new(0),
    cancels: AtomicUsize::new(0),
    afters_fired: AtomicUsize::new(0),
    afters_stopped: AtomicUsize::new(0),
    waiters_woken: AtomicUsize::new(0),
    deadlines_fired: AtomicUsize::new(0),
    freed_live: AtomicUsize::new(0),
};

fn count(counter: &AtomicUsize, n: usize) {
    counter.fetch_add(n, Ordering::Relaxed);
}

#[test]
fn model_matches_go_semantics() {
    let config = ProptestConfig {
        // Shrunk failures are printed below; no regression file is
        // written into the source tree.
        failure_persistence: None,
        // Bound the time spent shrinking a failure (a lost callback costs
        // `patience()` per attempt).
        max_shrink_time: 180_000,
        // Rejections only come from a stalled machine; never fail for them.
        max_global_rejects: 1_000_000,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let strategy = proptest::collection::vec(op_strategy(), 1..100);
    let result = runner.run(&strategy, |ops| {
        count(&STATS.cases, 1);
        let result = run(&ops);
        match &result {
            Err(TestCaseError::Reject(_)) => count(&STATS.rejected, 1),
            Err(TestCaseError::Fail(_)) => SHRINKING.store(true, Ordering::Relaxed),
            Ok(()) => {}
        }
        result
    });
    if std::env::var_os("GOCTX_MODEL_STATS").is_some() {
        let s = &STATS;
        let get = |c: &AtomicUsize| c.load(Ordering::Relaxed);
        eprintln!(
            "cases {} (rejected {}), steps {}, contexts {}, cancels {}, deadlines fired {}, \
             live contexts freed {}, after_funcs run {} / stopped {}, waiters woken {}",
            get(&s.cases),
            get(&s.rejected),
            get(&s.steps),
            get(&s.nodes),
            get(&s.cancels),
            get(&s.deadlines_fired),
            get(&s.freed_live),
            get(&s.afters_fired),
            get(&s.afters_stopped),
            get(&s.waiters_woken),
        );
    }
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, ops)) => {
            panic!("{reason}\nminimal failing sequence:\n{ops:#?}")
        }
        Err(TestError::Abort(reason)) => panic!("aborted: {reason}"),
    }
}

fn run_fixed(ops: &[Op]) {
    if let Err(err) = run(ops) {
        panic!("{err}");
    }
}

/// Go: a context ends at its deadline whether or not anything still refers
/// to it, so an `after_func` registered on it runs then. The property above
/// shrinks to this sequence: a deadline child whose `CancelFunc` was
/// detached and whose last `Ctx` was dropped, then the deadline passes.
#[test]
fn abandoned_deadline_context_runs_its_after_func_at_the_deadline() {
    use Op::*;
    run_fixed(&[
        Derive {
            parent: 0,
            kind: Kind::DeadlineShort {
                ms: 10,
                cause: false,
            },
        },
        AfterFunc { target: 1 },
        Detach { target: 0 },
        DropCtx { target: 0 },
        Advance,
    ]);
}

/// The same with a plain cancel parent in between, and the parent canceled
/// afterwards: the callback must have run once, at the deadline, not at
/// the parent's cancel.
#[test]
fn abandoned_deadline_context_under_a_live_parent() {
    use Op::*;
    run_fixed(&[
        Derive {
            parent: 0,
            kind: Kind::Cancel,
        },
        Derive {
            parent: 1,
            kind: Kind::DeadlineShort {
                ms: 10,
                cause: false,
            },
        },
        AfterFunc { target: 2 },
        Detach { target: 1 },
        DropCtx { target: 1 },
        Advance,
        Cancel {
            target: 0,
            cause: false,
        },
    ]);
}

/// A sequence that exercises most steps once, kept as a smoke test of the
/// harness itself (it must pass).
#[test]
fn harness_smoke_sequence() {
    use Op::*;
    run_fixed(&[
        Derive {
            parent: 0,
            kind: Kind::CancelCause,
        },
        Derive {
            parent: 1,
            kind: Kind::Value { key: 1 },
        },
        Derive {
            parent: 2,
            kind: Kind::Wrapper,
        },
        Derive {
            parent: 3,
            kind: Kind::DeadlineShort {
                ms: 15,
                cause: true,
            },
        },
        Derive {
            parent: 4,
            kind: Kind::TimeoutLong { cause: true },
        },
        Derive {
            parent: 2,
            kind: Kind::Manual,
        },
        Derive {
            parent: 6,
            kind: Kind::Cancel,
        },
        Derive {
            parent: 2,
            kind: Kind::Without,
        },
        Derive {
            parent: 8,
            kind: Kind::TimeoutZero { cause: true },
        },
        AfterFunc { target: 4 },
        AfterFunc { target: 7 },
        AfterFunc { target: 8 },
        Wait { target: 5 },
        Wait { target: 7 },
        CloneCancel { target: 0 },
        Extend { target: 2, ms: 5 },
        Advance,
        CancelManual {
            target: 0,
            cause: true,
        },
        Stop { target: 2 },
        Cancel {
            target: 0,
            cause: true,
        },
        DropCancel { target: 0 },
        DropCtx { target: 0 },
    ]);
}
