//! One processing run, as a library: give it a context, a configuration
//! and tasks; it reports everything that happens as a stream of [`Event`]s
//! and returns a [`Summary`].
//!
//! The run prints nothing. The CLI in `cli.rs` is one consumer of the
//! events (it renders lines, progress and metrics); an HTTP endpoint or a
//! live dashboard would be another, fed from the same channel.
//!
//! This folder is the run library, the wing every front end of the
//! processor shares (the CLI, `processor worker`, the service in
//! `serve/`): the run here, and beside it the tasks and their files
//! (`task`), Go's durations (`duration`), the priority queue (`queue`),
//! retries (`retry`), task names made safe to show (`text`), signals
//! as contexts (`signal`) and broker mode's subjects and messages
//! (`broker`). None of it reads flags, prints, or serves HTTP.
//!
//! Context tree of one run (see `docs/processor.md`):
//!
//! ```text
//! background()                          main
//! └─ with_cancel                        run: canceled on SIGINT/SIGTERM
//!    └─ with_value(RequestId)           run: the request ID
//!       └─ with_timeout (optional)      run: --run-timeout
//!          ├─ with_timeout              task: --task-timeout (or its own)
//!          │  └─ with_cancel            the task's subtask group
//!          │     └─ with_cancel / with_timeout   one subtask
//!          └─ with_timeout              critical task: hard limit
//!             └─ with_timeout           critical task: extendable deadline
//! ```

// Broker mode (`serve --broker`, `processor worker`) runs on NATS
// JetStream, whose client is goctx's `nats` feature: a build without it
// (the plain `cargo run --example processor`) says how to get one.
#[cfg(feature = "nats")]
pub mod broker;
pub mod duration;
pub mod queue;
pub mod retry;
pub mod signal;
pub mod task;
pub mod text;

/// What `--broker` and `processor worker` answer in a build without the
/// `nats` feature.
#[cfg(not(feature = "nats"))]
pub const NO_BROKER: &str = "broker mode needs the `nats` feature: \
    cargo run --features nats --example processor -- ...";

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use goctx::tokio::Group;
use goctx::{CancelFunc, Ctx};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use queue::PriorityQueue;
use retry::{RetryPolicy, TaskError};
use task::{Task, fmt_duration};

/// The context key of the request ID. Private: the only way in or out is
/// [`with_request_id`] and [`request_id`], Go's unexported key type.
struct RequestId(Arc<str>);

/// A child of `parent` carrying the run's request ID.
pub fn with_request_id(parent: &Ctx, id: &str) -> Ctx {
    goctx::with_value(parent, RequestId(id.into()))
}

/// The request ID `ctx` carries, or `-`.
pub fn request_id(ctx: &Ctx) -> Arc<str> {
    ctx.value::<RequestId>()
        .map_or_else(|| Arc::from("-"), |id| id.0.clone())
}

/// A cancellation cause: the detail behind `context canceled` or
/// `context deadline exceeded` (shown in the metrics table).
#[derive(Clone, Debug)]
pub struct Cause(pub String);

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Cause {}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunConfig {
    /// Tasks running at once (at least 1).
    pub workers: usize,
    /// Deadline of each top-level task that sets no timeout of its own.
    pub task_timeout: Duration,
    pub retry: RetryPolicy,
    /// How far a critical task's deadline is pushed out each time it runs
    /// short. Zero disables extensions.
    pub extend_by: Duration,
    /// A critical task never runs longer than this, extensions included.
    pub hard_limit: Duration,
}

/// Which task an event is about.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskRef {
    /// Read from the task's own context, where it arrived by `with_value`.
    pub request_id: Arc<str>,
    pub id: Arc<str>,
    /// The display name; a subtask's is `Parent / Child`.
    pub name: Arc<str>,
    pub priority: u32,
    /// The parent task's id, for subtasks.
    pub parent: Option<Arc<str>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Completed,
    /// Ended by its context: [`goctx::Error::DeadlineExceeded`] for a
    /// timeout, [`goctx::Error::Canceled`] otherwise.
    Canceled(#[serde(with = "error_name")] goctx::Error),
    /// Gave up after the last retry, or a subtask did not complete.
    Failed(String),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskReport {
    pub task: TaskRef,
    pub outcome: Outcome,
    /// False for a task still queued when the run was canceled.
    pub started: bool,
    pub elapsed: Duration,
    pub attempts: u32,
    /// `ctx.cause()` of a canceled task, when it says more than the error
    /// (for a critical task stopped at its hard limit, that limit).
    pub cause: Option<String>,
    /// The deadline the task ended with, from its start: the one it
    /// started with, or a later one after extensions.
    pub deadline: Option<Duration>,
}

/// Everything a run reports, in order. Serializable: a worker process
/// sends its tasks' events to the service (broker mode).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Event {
    RunStarted {
        request_id: Arc<str>,
        tasks: usize,
        workers: usize,
    },
    /// A top-level task entered the queue.
    Queued {
        task: TaskRef,
    },
    /// A task got a worker (a subtask: its parent started it).
    Started {
        task: TaskRef,
        deadline_in: Option<Duration>,
        /// The worker process that runs it (broker mode); `None` here.
        #[serde(default)]
        worker: Option<Arc<str>>,
        /// How long a top-level task waited for a worker, from the time it
        /// was queued (published, in broker mode).
        #[serde(default)]
        queued: Option<Duration>,
    },
    /// Work done in the current attempt; an attempt starts at 0.
    Progress {
        task: TaskRef,
        percent: u8,
        attempt: u32,
    },
    /// An attempt failed; the next one starts after `delay` unless the
    /// context ends first.
    Retrying {
        task: TaskRef,
        attempt: u32,
        error: String,
        delay: Duration,
    },
    /// A critical task's deadline moved later.
    DeadlineExtended {
        task: TaskRef,
        by: Duration,
        left: Duration,
        at_hard_limit: bool,
    },
    Finished(TaskReport),
    /// Sent by the front end that stops the run (the CLI on a signal),
    /// just before it cancels the run's context.
    Shutdown {
        /// Not shown by the CLI (the seed's line has no reason); for
        /// other consumers.
        #[allow(dead_code)]
        reason: String,
    },
    /// The last event of a run.
    RunFinished(Summary),
}

/// Where a run sends its events. Sending never blocks, and a consumer
/// that went away does not disturb the run.
#[derive(Clone, Debug)]
pub struct Emitter(mpsc::UnboundedSender<Event>);

impl Emitter {
    pub fn channel() -> (Emitter, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Emitter(tx), rx)
    }

    pub fn send(&self, event: Event) {
        let _ = self.0.send(event);
    }
}

/// Counts over the top-level tasks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub tasks: usize,
    pub completed: usize,
    pub timed_out: usize,
    pub canceled: usize,
    pub failed: usize,
    /// Tasks whose worker panicked (a bug; reported, never hidden).
    pub lost: usize,
}

impl Summary {
    pub fn add(&mut self, report: &TaskReport) {
        self.tasks += 1;
        match report.outcome {
            Outcome::Completed => self.completed += 1,
            Outcome::Canceled(goctx::Error::DeadlineExceeded) => self.timed_out += 1,
            Outcome::Canceled(goctx::Error::Canceled) => self.canceled += 1,
            Outcome::Failed(_) => self.failed += 1,
        }
    }
}

/// Runs `tasks` under `ctx`, at most `config.workers` at a time, most
/// urgent first. Returns when every task has completed, failed or been
/// canceled; tasks still queued when `ctx` ends are reported canceled.
pub async fn run(ctx: Ctx, config: RunConfig, tasks: Vec<Task>, events: Emitter) -> Summary {
    run_with(ctx, config, tasks, events, None).await
}

/// One attempt's work, done by an [`Executor`].
pub type Work = Pin<Box<dyn Future<Output = Result<(), TaskError>> + Send>>;

/// Does a task's work somewhere else instead of simulating it: the
/// service's remote tasks (`serve/remote.rs`) run on a peer.
pub trait Executor: Send + Sync {
    /// The work of one attempt of `task` under `ctx`, or `None` for a task
    /// this executor does not take (it is then simulated as usual). The
    /// run reports 0 % when the work starts and 100 % when it succeeds;
    /// `progress` is for what the work learns in between.
    fn work(&self, ctx: &Ctx, task: &Task, attempt: u32, progress: Progress) -> Option<Work>;
}

/// Reports the progress of one attempt whose work an [`Executor`] does
/// (a remote task: what its peer says), as [`Event::Progress`].
#[derive(Clone, Debug)]
pub struct Progress {
    events: Emitter,
    task: TaskRef,
    attempt: u32,
}

impl Progress {
    /// `percent` of the attempt's work is done (more than 100 counts as 100).
    pub fn report(&self, percent: u8) {
        self.events.send(Event::Progress {
            task: self.task.clone(),
            percent: percent.min(100),
            attempt: self.attempt,
        });
    }
}

/// [`run`], with an [`Executor`] that may take over tasks' work.
pub async fn run_with(
    ctx: Ctx,
    config: RunConfig,
    tasks: Vec<Task>,
    events: Emitter,
    executor: Option<Arc<dyn Executor>>,
) -> Summary {
    let shared = Arc::new(Shared {
        config,
        events,
        executor,
        queued_at: Instant::now(),
    });
    let request_id = request_id(&ctx);
    shared.events.send(Event::RunStarted {
        request_id: request_id.clone(),
        tasks: tasks.len(),
        workers: shared.config.workers,
    });

    let queue = PriorityQueue::new();
    for task in tasks {
        shared.events.send(Event::Queued {
            task: task_ref(&request_id, &task, None),
        });
        queue.push(task.priority, task);
    }
    queue.close();

    // The dispatcher: the most urgent task, then a free worker (the run's
    // group of at most `--workers` tasks, Go's errgroup with `SetLimit`).
    // Both waits race the run's context, so a shutdown stops dispatching at
    // once; a task popped but never started goes back with the others.
    // Tasks report their failures instead of returning them, so the group
    // never fails; a task whose worker panicked comes back as `None`.
    let (mut group, _) = Group::<Option<TaskReport>, Infallible>::with_context(&ctx);
    group.set_limit(Some(shared.config.workers));
    let mut unstarted = Vec::new();
    loop {
        let Ok(Some(task)) = queue.pop(&ctx).await else {
            break;
        };
        let (run_ctx, job) = (ctx.clone(), shared.clone());
        let spawned = group
            .spawn(|_| {
                let node = start_task(&run_ctx, task.clone(), &job);
                async move {
                    let report = AssertUnwindSafe(execute(node, job)).catch_unwind().await;
                    Ok(report.ok())
                }
            })
            .await;
        if spawned.is_err() {
            unstarted.push(task);
            break;
        }
    }

    let mut summary = Summary::default();
    // Left in the queue: the run ended before they got a worker.
    let reason = ctx.err().unwrap_or(goctx::Error::Canceled);
    for task in unstarted.into_iter().chain(queue.drain()) {
        let report = TaskReport {
            task: task_ref(&request_id, &task, None),
            outcome: Outcome::Canceled(reason),
            started: false,
            elapsed: Duration::ZERO,
            attempts: 0,
            cause: cause_detail(&ctx),
            deadline: None,
        };
        summary.add(&report);
        shared.events.send(Event::Finished(report));
    }

    let Ok(reports) = group.wait().await;
    for report in reports {
        match report {
            Some(report) => summary.add(&report),
            None => summary.lost += 1,
        }
    }
    shared.events.send(Event::RunFinished(summary.clone()));
    summary
}

/// Runs one top-level task under `ctx` at once, as a worker of the
/// run's pool would (its timeout, retries, subtasks, deadline
/// extensions), and returns its report (`queued`: how long it waited
/// before this); a worker process of broker mode runs each task it takes
/// this way. A panic in the task comes back as `None`.
#[cfg(feature = "nats")]
pub async fn run_task(
    ctx: &Ctx,
    config: RunConfig,
    task: Task,
    queued: Duration,
    events: Emitter,
) -> Option<TaskReport> {
    let shared = Arc::new(Shared {
        config,
        events,
        executor: None,
        queued_at: Instant::now()
            .checked_sub(queued)
            .unwrap_or_else(Instant::now),
    });
    let node = start_task(ctx, task, &shared);
    AssertUnwindSafe(execute(node, shared))
        .catch_unwind()
        .await
        .ok()
}

/// The (de)serialized form of [`goctx::Error`]: Go's wording.
mod error_name {
    use serde::{Deserialize, Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(err: &goctx::Error, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match err {
            goctx::Error::DeadlineExceeded => "deadline exceeded",
            _ => "canceled",
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<goctx::Error, D::Error> {
        match String::deserialize(d)?.as_str() {
            "deadline exceeded" => Ok(goctx::Error::DeadlineExceeded),
            "canceled" => Ok(goctx::Error::Canceled),
            other => Err(de::Error::custom(format!(
                "unknown context error {other:?}"
            ))),
        }
    }
}

struct Shared {
    config: RunConfig,
    events: Emitter,
    executor: Option<Arc<dyn Executor>>,
    /// When the run's tasks were queued.
    queued_at: Instant,
}

/// A task with its contexts, started but not yet run.
struct Node {
    task: Task,
    tref: TaskRef,
    ctx: Ctx,
    /// Released (and so canceling `ctx`) when the node is dropped.
    cancel: CancelFunc,
    timeout: Option<Duration>,
    critical: Option<HardLimit>,
    started_at: Instant,
    /// When a top-level task was queued.
    queued_since: Option<Instant>,
}

/// The upper bound of a critical task: a parent context whose deadline
/// does not move.
struct HardLimit {
    deadline: Option<Instant>,
    /// The cause the hard limit's context is canceled with.
    cause: String,
    ctx: Ctx,
    _cancel: CancelFunc,
}

pub fn task_ref(request_id: &Arc<str>, task: &Task, parent: Option<&TaskRef>) -> TaskRef {
    let name = match parent {
        Some(parent) => format!("{} / {}", parent.name, task.name),
        None => task.name.clone(),
    };
    TaskRef {
        request_id: request_id.clone(),
        id: task.id.as_str().into(),
        name: name.into(),
        priority: task.priority,
        parent: parent.map(|p| p.id.clone()),
    }
}

/// Creates a top-level task's contexts and announces it. Done by the
/// dispatcher, so `Started` events come in dispatch order.
fn start_task(run_ctx: &Ctx, task: Task, shared: &Shared) -> Node {
    // Taken before the contexts, so that a deadline measured from here is
    // never shorter than the timeout (a 1 s deadline reads 1.00s).
    let started_at = Instant::now();
    let timeout = task.timeout.unwrap_or(shared.config.task_timeout);
    let critical = task.critical.then(|| {
        let limit = shared.config.hard_limit;
        let cause = format!("hard limit of {} for critical tasks", fmt_duration(limit));
        let (ctx, cancel) = goctx::with_timeout_cause(run_ctx, limit, Cause(cause.clone()));
        HardLimit {
            deadline: ctx.deadline(),
            cause,
            ctx,
            _cancel: cancel,
        }
    });
    let parent = critical.as_ref().map_or(run_ctx, |hard| &hard.ctx);
    let (ctx, cancel) = goctx::with_timeout(parent, timeout);
    announce(
        Node {
            tref: task_ref(&request_id(&ctx), &task, None),
            task,
            ctx,
            cancel,
            timeout: Some(timeout),
            critical,
            started_at,
            queued_since: Some(shared.queued_at),
        },
        shared,
    )
}

/// Creates a subtask's contexts under its parent's subtask group.
fn start_subtask(group: &Ctx, task: Task, parent: &TaskRef, shared: &Shared) -> Node {
    let started_at = Instant::now();
    let (ctx, cancel) = match task.timeout {
        Some(timeout) => goctx::with_timeout(group, timeout),
        None => goctx::with_cancel(group),
    };
    announce(
        Node {
            tref: task_ref(&request_id(&ctx), &task, Some(parent)),
            timeout: task.timeout,
            task,
            ctx,
            cancel,
            critical: None,
            started_at,
            queued_since: None,
        },
        shared,
    )
}

fn announce(node: Node, shared: &Shared) -> Node {
    let deadline_in = node
        .ctx
        .deadline()
        .map(|d| d.saturating_duration_since(node.started_at));
    shared.events.send(Event::Started {
        task: node.tref.clone(),
        deadline_in,
        worker: None,
        queued: node
            .queued_since
            .map(|at| node.started_at.saturating_duration_since(at)),
    });
    node
}

pub fn cause_detail(ctx: &Ctx) -> Option<String> {
    let cause = ctx.cause()?;
    // A cause that is just the error itself adds nothing.
    match cause.downcast_ref::<goctx::Error>() {
        Some(_) => None,
        None => Some(cause.to_string()),
    }
}

/// Runs a started task to the end and reports it. Boxed: subtasks make it
/// recursive.
fn execute(node: Node, shared: Arc<Shared>) -> Pin<Box<dyn Future<Output = TaskReport> + Send>> {
    Box::pin(async move {
        let body = body(&node, &shared);
        let ((result, attempts), reached_limit) = match &node.critical {
            Some(hard) => {
                tokio::pin!(body);
                tokio::select! {
                    done = &mut body => (done, false),
                    reached = extend_while_running(&node, hard, &shared) => (body.await, reached),
                }
            }
            None => (body.await, false),
        };
        let outcome = match result {
            Ok(()) => Outcome::Completed,
            // `err()` tells a timeout from a cancel.
            Err(TaskError::Context(err)) => Outcome::Canceled(node.ctx.err().unwrap_or(err)),
            Err(TaskError::Failed(error)) => Outcome::Failed(error),
        };
        let cause = match (&outcome, &node.critical) {
            // A deadline extended up to the hard limit is the hard limit,
            // whichever of the two contexts' timers fired first (the
            // task's own may fire a tick before its parent's).
            (Outcome::Canceled(goctx::Error::DeadlineExceeded), Some(hard))
                if reached_limit || hard.ctx.err().is_some() =>
            {
                Some(hard.cause.clone())
            }
            (Outcome::Canceled(_), _) => cause_detail(&node.ctx),
            _ => None,
        };
        let deadline = node
            .ctx
            .deadline()
            .map(|d| d.saturating_duration_since(node.started_at));
        let report = TaskReport {
            task: node.tref.clone(),
            outcome,
            started: true,
            elapsed: node.started_at.elapsed(),
            attempts,
            cause,
            deadline,
        };
        shared.events.send(Event::Finished(report.clone()));
        report
        // `node` drops here: its CancelFuncs release its contexts.
    })
}

/// The task's own work (with retries), then its subtasks.
async fn body(node: &Node, shared: &Arc<Shared>) -> (Result<(), TaskError>, u32) {
    let retried = retry::retry(
        &node.ctx,
        &shared.config.retry,
        |attempt| work(node, shared, attempt),
        |notice| {
            shared.events.send(Event::Retrying {
                task: node.tref.clone(),
                attempt: notice.attempt,
                error: notice.error,
                delay: notice.delay,
            });
        },
    )
    .await;
    if retried.result.is_err() || node.task.subtasks.is_empty() {
        return (retried.result, retried.attempts);
    }
    (run_subtasks(node, shared).await, retried.attempts)
}

/// Simulated work in small steps; each step races the context, so a
/// cancel or a deadline interrupts it within microseconds. Steps end at
/// fixed points from the start of the attempt, so a late wake-up on a busy
/// machine does not make the work longer than `duration`.
async fn work(node: &Node, shared: &Shared, attempt: u32) -> Result<(), TaskError> {
    if let Some(executor) = &shared.executor
        && let Some(elsewhere) = executor.work(
            &node.ctx,
            &node.task,
            attempt,
            Progress {
                events: shared.events.clone(),
                task: node.tref.clone(),
                attempt,
            },
        )
    {
        let progress = |percent| Event::Progress {
            task: node.tref.clone(),
            percent,
            attempt,
        };
        shared.events.send(progress(0));
        elsewhere.await?;
        shared.events.send(progress(100));
        return Ok(());
    }
    let total = node.task.duration;
    let fails = attempt <= node.task.fail_times;
    let step = (total / 20).clamp(Duration::from_millis(10), Duration::from_millis(200));
    let start = tokio::time::Instant::now();
    let mut reported = None;
    loop {
        if let Some(err) = node.ctx.err() {
            return Err(err.into());
        }
        let done = start.elapsed().min(total);
        let percent = if total.is_zero() {
            100
        } else {
            (done.as_secs_f64() / total.as_secs_f64() * 100.0).min(100.0) as u8
        };
        if reported != Some(percent) {
            reported = Some(percent);
            shared.events.send(Event::Progress {
                task: node.tref.clone(),
                percent,
                attempt,
            });
        }
        if fails && done >= total / 2 {
            return Err(TaskError::Failed("simulated failure halfway".into()));
        }
        if done >= total {
            return Ok(());
        }
        // Until the next step boundary (or the halfway point, for a
        // failing attempt), never past the end.
        let into_step = Duration::from_nanos((done.as_nanos() % step.as_nanos()) as u64);
        let mut wait = (step - into_step).min(total - done);
        if fails {
            wait = wait.min(total / 2 - done);
        }
        node.ctx.run(tokio::time::sleep(wait)).await?;
    }
}

/// Runs the subtasks concurrently, each under a context derived from this
/// task's, so this task's cancel or timeout reaches them all. The first
/// subtask that does not complete cancels its siblings (manual
/// cancellation through the group's `with_cancel`) and fails the parent.
async fn run_subtasks(node: &Node, shared: &Arc<Shared>) -> Result<(), TaskError> {
    // Go's errgroup: the first subtask that does not complete cancels the
    // group's context, with its problem as the cause.
    let (mut group, group_ctx) = Group::<(), Cause>::with_context(&node.ctx);
    for subtask in &node.task.subtasks {
        let child = start_subtask(&group_ctx, subtask.clone(), &node.tref, shared);
        let (parent, shared) = (node.ctx.clone(), shared.clone());
        let started = group.try_spawn(move |group_ctx| async move {
            let Ok(report) = AssertUnwindSafe(execute(child, shared))
                .catch_unwind()
                .await
            else {
                return Err(Cause("a subtask's worker panicked".to_owned()));
            };
            match report.outcome {
                Outcome::Completed => Ok(()),
                // Ended by this task's own end, or by the sibling that failed.
                Outcome::Canceled(_) if parent.err().is_some() || group_ctx.err().is_some() => {
                    Ok(())
                }
                Outcome::Canceled(err) => {
                    Err(Cause(format!("subtask {} ended: {err}", report.task.name)))
                }
                Outcome::Failed(error) => Err(Cause(format!(
                    "subtask {} failed: {error}",
                    report.task.name
                ))),
            }
        });
        debug_assert!(started, "no limit: every subtask starts");
    }
    let result = group.wait().await;
    if let Some(err) = node.ctx.err() {
        return Err(TaskError::Context(err));
    }
    result
        .map(drop)
        .map_err(|problem| TaskError::Failed(problem.0))
}

/// For a critical task: whenever its deadline comes near while it still
/// runs, push the deadline out by `extend_by`, never past the hard limit.
/// Returns when no more extension is possible (or the task's context is
/// done), true if the deadline then stood at the hard limit; the task
/// itself goes on.
async fn extend_while_running(node: &Node, hard: &HardLimit, shared: &Shared) -> bool {
    let (Some(limit), Some(timeout)) = (hard.deadline, node.timeout) else {
        return false;
    };
    let extend_by = shared.config.extend_by;
    let margin = timeout / 4;
    let tick = (timeout / 20).clamp(Duration::from_millis(5), Duration::from_millis(100));
    loop {
        if node.ctx.run(tokio::time::sleep(tick)).await.is_err() {
            return false;
        }
        let Some(deadline) = node.ctx.deadline() else {
            return false;
        };
        let now = Instant::now();
        if deadline.saturating_duration_since(now) > margin {
            continue;
        }
        let target = deadline
            .checked_add(extend_by)
            .map_or(limit, |t| t.min(limit));
        if target <= deadline {
            return deadline >= limit;
        }
        // Fails once the context is done: nothing to extend then. (A task's
        // context always has a deadline of its own, even when the run's is
        // sooner; `deadline()` above is the sooner of the two.)
        let Ok(new) = node.cancel.extend_deadline(target) else {
            return false;
        };
        let at_hard_limit = new >= limit;
        shared.events.send(Event::DeadlineExtended {
            task: node.tref.clone(),
            by: new.saturating_duration_since(deadline),
            left: new.saturating_duration_since(now),
            at_hard_limit,
        });
        if at_hard_limit {
            return true;
        }
    }
}
