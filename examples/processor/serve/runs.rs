//! The service's runs: each one's record (what `GET /runs/{id}` shows),
//! kept up to date from the run's event stream, plus the live feed behind
//! `GET /events`, the metrics and the log lines.
//!
//! Context tree of a run started over HTTP (see `docs/processor.md`):
//!
//! ```text
//! background()
//! └─ with_cancel_cause                server base: "server shutting down" after --grace
//!    └─ request context              RequestContextLayer: deadline, RequestId, TraceContext
//!       │                            (only for ?wait=true; other runs hang off the base)
//!       └─ with_cancel_cause          the run: DELETE cancels it, "canceled via API"
//!          └─ with_value(...)        request id, trace (for remote tasks' calls)
//!             └─ the CLI's run tree  tasks, subtasks, critical tasks (run/mod.rs)
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use goctx::http::{RequestId, TraceContext};
use goctx::{CancelFunc, Ctx};
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use super::broker::Broker;
use super::metrics::Metrics;
use crate::run::task::Task;
use crate::run::{self, Emitter, Event, Executor, Outcome, RunConfig, Summary, TaskReport};

/// Finished runs kept for `GET /runs`; the oldest go first.
const KEEP_FINISHED: usize = 500;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Queued,
    Running,
    Completed,
    TimedOut,
    Canceled,
    Failed,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Completed => "completed",
            TaskState::TimedOut => "timed_out",
            TaskState::Canceled => "canceled",
            TaskState::Failed => "failed",
        }
    }
}

/// One task (or subtask) of a run, as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct TaskRecord {
    pub id: String,
    pub name: String,
    /// The parent task's id, for subtasks.
    pub parent: Option<String>,
    pub priority: u32,
    /// The peer that runs it, for a remote task.
    pub peer: Option<String>,
    /// The worker process that runs it (broker mode, `processor worker`).
    pub worker: Option<String>,
    /// How long it waited for a worker (top-level tasks).
    pub queued_ms: Option<u64>,
    pub state: TaskState,
    /// 0–100: the mean of its own work's progress (one share, of the
    /// current attempt) and each subtask's (one share each); 100 only once
    /// it completed. See [`roll_up`].
    pub progress: u8,
    pub attempts: u32,
    pub retries: u32,
    pub deadline_extensions: u32,
    /// Time from start to end (or to now, while it runs).
    pub duration_ms: Option<u64>,
    /// The deadline it started with, from its start.
    pub deadline_ms: Option<u64>,
    /// Why a failed task failed.
    pub error: Option<String>,
    /// Why a task ended early: its context's cause.
    pub cause: Option<String>,
    pub subtasks: Vec<TaskRecord>,
    #[serde(skip)]
    started: Option<Instant>,
    /// Its own work's progress, of the current attempt: the last
    /// `Event::Progress` (for a remote task, what its peer said).
    #[serde(skip)]
    work_progress: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    /// Canceled via the API, still ending (its tasks are being told).
    CancelRequested,
    Finished,
}

#[derive(Clone, Debug, Serialize)]
pub struct SummaryRecord {
    pub tasks: usize,
    pub completed: usize,
    pub timed_out: usize,
    pub canceled: usize,
    pub failed: usize,
}

/// One run, as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub request_id: String,
    pub trace_id: String,
    pub state: RunState,
    /// RFC 3339, UTC, milliseconds.
    pub started_at: String,
    pub ended_at: Option<String>,
    pub duration_ms: Option<u64>,
    /// The run's own deadline (a caller's, or --run-timeout), from its start.
    pub deadline_ms: Option<u64>,
    /// Why the run's context ended early, if it did.
    pub cause: Option<String>,
    pub summary: Option<SummaryRecord>,
    pub tasks: Vec<TaskRecord>,
    #[serde(skip)]
    started: Instant,
}

impl RunRecord {
    /// The record with durations of running tasks brought up to now.
    fn snapshot(&self) -> RunRecord {
        let mut copy = self.clone();
        if copy.state != RunState::Finished {
            copy.duration_ms = Some(millis(self.started.elapsed()));
        }
        fn tick(tasks: &mut [TaskRecord]) {
            for t in tasks {
                if t.state == TaskState::Running
                    && let Some(started) = t.started
                {
                    t.duration_ms = Some(millis(started.elapsed()));
                }
                tick(&mut t.subtasks);
            }
        }
        tick(&mut copy.tasks);
        copy
    }

    fn task_mut(&mut self, id: &str) -> Option<&mut TaskRecord> {
        fn find<'a>(tasks: &'a mut [TaskRecord], id: &str) -> Option<&'a mut TaskRecord> {
            for t in tasks {
                if t.id == id {
                    return Some(t);
                }
                if let Some(found) = find(&mut t.subtasks, id) {
                    return Some(found);
                }
            }
            None
        }
        find(&mut self.tasks, id)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `2026-11-25T23:08:42.123Z`.
pub fn rfc3339(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at)
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn records(
    tasks: &[Task],
    parent: Option<&str>,
    peers: &HashMap<String, String>,
) -> Vec<TaskRecord> {
    tasks
        .iter()
        .map(|t| TaskRecord {
            id: t.id.clone(),
            name: t.name.clone(),
            parent: parent.map(str::to_owned),
            priority: t.priority,
            peer: peers.get(&t.id).cloned(),
            worker: None,
            queued_ms: None,
            state: TaskState::Queued,
            progress: 0,
            attempts: 0,
            retries: 0,
            deadline_extensions: 0,
            duration_ms: None,
            deadline_ms: None,
            error: None,
            cause: None,
            subtasks: records(&t.subtasks, Some(&t.id), peers),
            started: None,
            work_progress: 0,
        })
        .collect()
}

/// An event of the live feed: the SSE event's name and its JSON data.
#[derive(Clone, Debug)]
pub struct Published {
    pub event: &'static str,
    pub data: String,
}

/// The identity of a run, from its HTTP request.
#[derive(Clone, Debug)]
pub struct Ids {
    pub run_id: String,
    pub request_id: RequestId,
    pub trace: TraceContext,
}

struct Entry {
    record: RunRecord,
    /// Cancels the run (DELETE); released when the run finishes.
    cancel: Option<CancelFunc>,
    /// Flips to true when the run has finished.
    finished: watch::Receiver<bool>,
}

/// Every run of the server.
pub struct Runs {
    /// Guards the records; held only to read or update them, never across
    /// an `.await`.
    inner: Mutex<Inner>,
    feed: broadcast::Sender<Published>,
    pub metrics: Metrics,
    /// Broker mode: runs without remote tasks go to the workers.
    broker: Option<Arc<Broker>>,
}

#[derive(Default)]
struct Inner {
    runs: HashMap<String, Entry>,
    /// Run ids, oldest first.
    order: VecDeque<String>,
}

/// What `cancel` found.
pub enum CancelResult {
    Canceled(RunRecord),
    AlreadyFinished(RunRecord),
    Unknown,
}

impl Runs {
    pub fn new(broker: Option<Arc<Broker>>) -> Runs {
        Runs {
            inner: Mutex::new(Inner::default()),
            feed: broadcast::channel(4096).0,
            metrics: Metrics::new(),
            broker,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // No code panics while holding the lock; a poisoned map is whole.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.feed.subscribe()
    }

    fn publish(&self, event: &'static str, data: &impl Serialize) {
        if let Ok(data) = serde_json::to_string(data) {
            let _ = self.feed.send(Published { event, data });
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.lock().runs.contains_key(id)
    }

    /// Newest first.
    pub fn list(&self) -> Vec<RunRecord> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .rev()
            .filter_map(|id| inner.runs.get(id))
            .map(|e| e.record.snapshot())
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<RunRecord> {
        self.lock().runs.get(id).map(|e| e.record.snapshot())
    }

    /// Cancels a running run with `cause`; its state is `cancel_requested`
    /// until it has finished. A second request changes nothing (the first
    /// cause stays) and answers the same.
    pub fn cancel(&self, id: &str, cause: String) -> CancelResult {
        let mut inner = self.lock();
        let Some(entry) = inner.runs.get_mut(id) else {
            return CancelResult::Unknown;
        };
        match &entry.cancel {
            Some(cancel) if entry.record.state == RunState::Running => {
                tracing::info!(
                    request_id = %entry.record.request_id,
                    trace_id = %entry.record.trace_id,
                    run_id = %id,
                    cause = cause.as_str(),
                    "run canceled via the API"
                );
                cancel.cancel_with_cause(run::Cause(cause));
                entry.record.state = RunState::CancelRequested;
                let snapshot = entry.record.snapshot();
                self.publish("run", &snapshot);
                CancelResult::Canceled(snapshot)
            }
            Some(_) if entry.record.state == RunState::CancelRequested => {
                CancelResult::Canceled(entry.record.snapshot())
            }
            _ => CancelResult::AlreadyFinished(entry.record.snapshot()),
        }
    }

    /// Waits until run `id` has finished, and returns its record.
    pub async fn finished(&self, id: &str) -> Option<RunRecord> {
        let mut done = self.lock().runs.get(id)?.finished.clone();
        let _ = done.wait_for(|finished| *finished).await;
        self.get(id)
    }

    /// Starts a run under `parent` and returns at once.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        self: &Arc<Self>,
        parent: &Ctx,
        ids: Ids,
        config: RunConfig,
        run_timeout: Option<Duration>,
        tasks: Vec<Task>,
        peers: HashMap<String, String>,
        executor: Option<Arc<dyn Executor>>,
    ) {
        let (run_ctx, cancel) = goctx::with_cancel_cause(parent);
        // The values a remote task's call sends on: the caller's request
        // id and trace, also for runs that do not hang off the request.
        let ctx = goctx::with_value(&run_ctx, ids.request_id.clone());
        let ctx = goctx::with_value(&ctx, ids.trace.clone());
        let ctx = run::with_request_id(&ctx, ids.request_id.as_str());
        let (ctx, run_deadline) = match run_timeout {
            Some(limit) => {
                let cause = run::Cause(format!(
                    "run timeout of {}",
                    crate::run::task::fmt_duration(limit)
                ));
                let (ctx, cancel) = goctx::with_timeout_cause(&ctx, limit, cause);
                (ctx, Some(cancel))
            }
            None => (ctx, None),
        };
        let started = Instant::now();
        let record = RunRecord {
            id: ids.run_id.clone(),
            request_id: ids.request_id.as_str().to_owned(),
            trace_id: ids.trace.trace_id_hex(),
            state: RunState::Running,
            started_at: rfc3339(SystemTime::now()),
            ended_at: None,
            duration_ms: None,
            deadline_ms: ctx
                .deadline()
                .map(|d| millis(d.saturating_duration_since(started))),
            cause: None,
            summary: None,
            tasks: records(&tasks, None, &peers),
            started,
        };
        tracing::info!(
            request_id = %record.request_id,
            trace_id = %record.trace_id,
            run_id = %record.id,
            tasks = record.tasks.len(),
            deadline_ms = record.deadline_ms,
            "run started"
        );
        let (finished_tx, finished) = watch::channel(false);
        {
            let mut inner = self.lock();
            self.publish("run", &record);
            inner.runs.insert(
                ids.run_id.clone(),
                Entry {
                    record,
                    cancel: Some(cancel),
                    finished,
                },
            );
            inner.order.push_back(ids.run_id.clone());
            evict(&mut inner);
        }
        self.metrics.run_started();

        let (events, mut received) = Emitter::channel();
        match (&self.broker, executor) {
            (Some(broker), None) => {
                let broker = broker.clone();
                tokio::spawn(super::broker::run(
                    broker,
                    ctx,
                    ids.run_id.clone(),
                    config,
                    tasks,
                    events,
                ))
            }
            (_, executor) => tokio::spawn(run::run_with(ctx, config, tasks, events, executor)),
        };
        let runs = self.clone();
        let run_id = ids.run_id;
        tokio::spawn(async move {
            while let Some(event) = received.recv().await {
                let last = matches!(event, Event::RunFinished(_));
                runs.apply(&run_id, &event, &run_ctx);
                if last {
                    break;
                }
            }
            runs.metrics.run_finished();
            drop(run_deadline);
            let _ = finished_tx.send(true);
        });
    }

    /// Brings run `id`'s record up to date with `event`.
    fn apply(&self, id: &str, event: &Event, run_ctx: &Ctx) {
        let mut inner = self.lock();
        let Some(entry) = inner.runs.get_mut(id) else {
            return;
        };
        let record = &mut entry.record;
        let (request_id, trace_id) = (record.request_id.clone(), record.trace_id.clone());
        let task_id = match event {
            Event::Started {
                task,
                deadline_in,
                worker,
                queued,
            } => {
                let Some(t) = record.task_mut(&task.id) else {
                    return;
                };
                t.state = TaskState::Running;
                t.worker = worker.as_deref().map(str::to_owned);
                t.queued_ms = queued.map(millis);
                t.started = Some(Instant::now());
                t.deadline_ms = deadline_in.map(millis);
                // User text (names, causes, errors) goes in as `str`: the
                // text format quotes it with control characters escaped (a
                // name cannot split or recolour a line), JSON writes it as
                // a plain string.
                tracing::info!(%request_id, %trace_id, run_id = %id, task = &*task.name,
                    deadline_ms = t.deadline_ms, worker = t.worker.as_deref(), "task started");
                task.id.clone()
            }
            Event::Progress {
                task,
                percent,
                attempt,
            } => {
                let Some(t) = record.task_mut(&task.id) else {
                    return;
                };
                t.work_progress = *percent;
                t.attempts = t.attempts.max(*attempt);
                task.id.clone()
            }
            Event::Retrying {
                task,
                attempt,
                error,
                delay,
            } => {
                let Some(t) = record.task_mut(&task.id) else {
                    return;
                };
                t.retries += 1;
                self.metrics.retried();
                tracing::warn!(%request_id, %trace_id, run_id = %id, task = &*task.name,
                    attempt, error = error.to_string().as_str(), delay_ms = millis(*delay), "task attempt failed, retrying");
                task.id.clone()
            }
            Event::DeadlineExtended { task, by, left, .. } => {
                let Some(t) = record.task_mut(&task.id) else {
                    return;
                };
                t.deadline_extensions += 1;
                self.metrics.extended();
                tracing::info!(%request_id, %trace_id, run_id = %id, task = &*task.name,
                    by_ms = millis(*by), left_ms = millis(*left), "deadline extended");
                task.id.clone()
            }
            Event::Finished(report) => {
                let Some(t) = record.task_mut(&report.task.id) else {
                    return;
                };
                finish_task(t, report);
                self.metrics.task_ended(t.state.as_str(), report.elapsed);
                tracing::info!(%request_id, %trace_id, run_id = %id, task = &*report.task.name,
                    state = t.state.as_str(), attempts = t.attempts, cause = t.cause.as_deref(),
                    error = t.error.as_deref(), worker = t.worker.as_deref(), "task ended");
                report.task.id.clone()
            }
            Event::RunFinished(summary) => {
                record.state = RunState::Finished;
                record.ended_at = Some(rfc3339(SystemTime::now()));
                record.duration_ms = Some(millis(record.started.elapsed()));
                record.cause = run_ctx.cause().map(|c| c.to_string());
                record.summary = Some(summary_record(summary));
                // The run is over: release its contexts.
                entry.cancel = None;
                tracing::info!(%request_id, %trace_id, run_id = %id, cause = record.cause.as_deref(),
                    completed = summary.completed, timed_out = summary.timed_out,
                    canceled = summary.canceled, failed = summary.failed, "run finished");
                let snapshot = record.snapshot();
                self.publish("run", &snapshot);
                return;
            }
            Event::RunStarted { .. } | Event::Queued { .. } | Event::Shutdown { .. } => return,
        };
        // The task, then each of its parents whose progress it moved.
        let mut chain = vec![(task_id.to_string(), None)];
        while let Some(parent) = chain
            .last()
            .and_then(|(id, _)| record.task_mut(id))
            .and_then(|t| t.parent.clone())
        {
            let before = record.task_mut(&parent).map(|p| p.progress);
            chain.push((parent, before));
        }
        roll_up(&mut record.tasks);
        for (task_id, before) in chain {
            let Some(t) = record.task_mut(&task_id) else {
                continue;
            };
            if before.is_some_and(|before| before == t.progress) {
                continue;
            }
            self.publish(
                "task",
                &serde_json::json!({ "run_id": id, "task": view(t) }),
            );
        }
    }

    /// Ids of runs still running.
    pub fn running(&self) -> Vec<String> {
        let inner = self.lock();
        inner
            .runs
            .iter()
            .filter(|(_, e)| e.record.state != RunState::Finished)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

fn finish_task(t: &mut TaskRecord, report: &TaskReport) {
    t.state = match (&report.outcome, report.started) {
        (Outcome::Completed, _) => TaskState::Completed,
        (Outcome::Canceled(goctx::Error::DeadlineExceeded), _) => TaskState::TimedOut,
        (Outcome::Canceled(goctx::Error::Canceled), _) => TaskState::Canceled,
        (Outcome::Failed(_), _) => TaskState::Failed,
    };
    t.attempts = t.attempts.max(report.attempts);
    t.duration_ms = report.started.then(|| millis(report.elapsed));
    if let Outcome::Failed(error) = &report.outcome {
        t.error = Some(error.clone());
    }
    if let Outcome::Canceled(err) = &report.outcome {
        t.cause = Some(report.cause.clone().unwrap_or_else(|| err.to_string()));
    }
}

/// A task as the live feed sends it: without its subtasks, and, as in
/// `snapshot`, a running task's duration up to now.
fn view(t: &TaskRecord) -> TaskRecord {
    let mut view = t.clone();
    view.subtasks.clear();
    if view.state == TaskState::Running
        && let Some(started) = view.started
    {
        view.duration_ms = Some(millis(started.elapsed()));
    }
    view
}

/// Brings every task's `progress` up to date from its own work and its
/// subtasks, deepest first. The task's own work is one share and each
/// subtask another, so a parent whose work is done but whose subtasks have
/// not started shows 1/(n+1), not a full bar. A completed task shows 100;
/// one that did not complete keeps the share it reached, below 100.
fn roll_up(tasks: &mut [TaskRecord]) {
    for t in tasks {
        roll_up(&mut t.subtasks);
        if t.state == TaskState::Completed {
            t.progress = 100;
            continue;
        }
        let shares = 1 + t.subtasks.len() as u64;
        let done = u64::from(t.work_progress)
            + t.subtasks
                .iter()
                .map(|s| u64::from(s.progress))
                .sum::<u64>();
        t.progress = u8::try_from(done / shares).map_or(99, |p| p.min(99));
    }
}

fn summary_record(s: &Summary) -> SummaryRecord {
    SummaryRecord {
        tasks: s.tasks,
        completed: s.completed,
        timed_out: s.timed_out,
        canceled: s.canceled,
        failed: s.failed + s.lost,
    }
}

/// Drops the oldest finished runs beyond [`KEEP_FINISHED`].
fn evict(inner: &mut Inner) {
    let finished = inner
        .runs
        .values()
        .filter(|e| e.record.state == RunState::Finished)
        .count();
    let mut extra = finished.saturating_sub(KEEP_FINISHED);
    if extra == 0 {
        return;
    }
    let Inner { runs, order } = inner;
    order.retain(|id| {
        if extra > 0
            && runs
                .get(id)
                .is_some_and(|e| e.record.state == RunState::Finished)
        {
            runs.remove(id);
            extra -= 1;
            false
        } else {
            true
        }
    });
}
