//! `processor worker --broker URL`: runs the tasks a `processor serve
//! --broker URL` puts on the broker, any number of these processes on any
//! machine.
//!
//! ```text
//! cargo run --example processor -- worker --broker nats://127.0.0.1:4222 --workers 4
//! ```
//!
//! The first line on stdout is `worker NAME ready`; logs go to stderr,
//! each with the request id and trace id the task brought, so the logs of
//! the service and of every worker join by trace id.
//!
//! Each task runs under the context its message carries
//! (`goctx::nats::process`): its run's deadline (time in the stream
//! counts), trace and request id, plus the run's per-task timeout from
//! the moment it starts here. Its lease is kept while it runs. The first
//! SIGINT or SIGTERM hands every running task back (`Nak`: another worker
//! takes it at once) and exits 0 when they are handed back; a second one
//! exits at once.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use goctx::nats::Permanent;
use goctx::propagation::{RequestId, TraceContext};
use goctx::{Cause, Ctx};
use tokio::sync::Semaphore;

use crate::run::broker::{self, TaskMessage};
use crate::run::signal::{next_signal, received};
use crate::run::{self, Emitter, Event, Outcome, TaskReport};

/// The lease of a consumer this process creates without `--ack-wait`.
const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);

/// How long one pull request for tasks waits on the server: also the
/// longest a shutdown waits for the last one to expire.
const PULL_EXPIRES: Duration = Duration::from_millis(500);

/// What every task handler of this process shares.
struct Worker {
    name: Arc<str>,
    client: async_nats::Client,
    js: jetstream::Context,
    /// The consumer's lease.
    ack_wait: Duration,
    /// Canceled on the first signal: running tasks are handed back.
    base: Ctx,
}

/// Takes tasks from the broker at `url` and runs at most `slots` at once,
/// until a signal; `cli.rs` has checked the flags and set up the logs.
pub async fn serve_tasks(
    url: String,
    slots: usize,
    name: Arc<str>,
    asked: Option<Duration>,
) -> ExitCode {
    // Listen for signals before anything can run.
    let (signaled, _stop_listening) = goctx::tokio::signal_context(&goctx::background());
    let client = match broker::connect(&url).await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("processor: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let js = jetstream::new(client.clone());
    let (consumer, ack_wait) = match broker::ensure(&js, asked.unwrap_or(DEFAULT_ACK_WAIT)).await {
        Ok((_, consumer, ack_wait)) => (consumer, ack_wait),
        Err(e) => {
            eprintln!("processor: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (base, stop) = goctx::with_cancel_cause(&goctx::background());
    let worker = Arc::new(Worker {
        name: name.clone(),
        client,
        js,
        ack_wait,
        base: base.clone(),
    });
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "worker {name} ready");
        let _ = out.flush();
    }
    if let Some(asked) = asked
        && asked != ack_wait
    {
        tracing::warn!(
            request_id = "-",
            trace_id = "-",
            asked_ms = asked.as_millis() as u64,
            ack_wait_ms = ack_wait.as_millis() as u64,
            "--ack-wait ignored: the consumer exists with its own (delete it to change it)"
        );
    }
    tracing::info!(request_id = "-", trace_id = "-", worker = &*name, slots, broker = %url,
        ack_wait_ms = ack_wait.as_millis() as u64, "worker ready");

    // The first signal hands the running tasks back; the second exits.
    let shutdown = {
        tokio::spawn(async move {
            signaled.done().await;
            let signal = received(&signaled).map_or("shutdown", |s| s.name());
            tracing::info!(
                request_id = "-",
                trace_id = "-",
                signal,
                "shutting down: handing running tasks back"
            );
            stop.cancel_with_cause(run::Cause(format!("worker shutting down ({signal})")));
            // `None`: the runtime is shutting down, not a second signal.
            if let Some(again) = next_signal().await {
                eprintln!("processor: second signal ({again}), exiting now");
                std::process::exit(130);
            }
        })
    };

    let free = Arc::new(Semaphore::new(slots));
    let mut running = tokio::task::JoinSet::new();
    // The pull request open on the server, if any: at a shutdown, what it
    // still delivers is handed back (below).
    let mut open_batch = None;
    while base.err().is_none() {
        // At least one free slot, then as many tasks as there are slots.
        let Ok(Ok(first)) = base.run(free.clone().acquire_owned()).await else {
            break;
        };
        let wanted = 1 + free.available_permits();
        let batch = consumer
            .batch()
            .max_messages(wanted)
            .expires(PULL_EXPIRES)
            .messages()
            .await;
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                // The server is away (restarting?): the client reconnects.
                tracing::warn!(request_id = "-", trace_id = "-", error = %e, "cannot fetch tasks; retrying");
                drop(first);
                let _ = base
                    .run(tokio::time::sleep(Duration::from_millis(250)))
                    .await;
                continue;
            }
        };
        let mut first = Some(first);
        let stopped = loop {
            let next = match base.run(batch.next()).await {
                Ok(Some(next)) => next,
                Ok(None) => break false,
                Err(_) => break true,
            };
            let Ok(msg) = next else { break false };
            let permit = match first.take() {
                Some(permit) => permit,
                None => match free.clone().try_acquire_owned() {
                    Ok(permit) => permit,
                    // Never: the batch asked for the free slots only.
                    Err(_) => {
                        let _ = msg.double_ack_with(jetstream::AckKind::Nak(None)).await;
                        continue;
                    }
                },
            };
            let worker = worker.clone();
            running.spawn(async move {
                handle(&worker, msg).await;
                drop(permit);
            });
            // Reap finished handlers as we go.
            while running.try_join_next().is_some() {}
        };
        if stopped {
            open_batch = Some(batch);
        }
    }
    // A pull request outlives the process that made it: the server would
    // deliver the tasks handed back below to it, where nobody reads them,
    // and they would wait out the lease. So it is read until it expires,
    // and whatever it brings goes back at once.
    let refuse = async {
        if let Some(mut batch) = open_batch {
            while let Some(Ok(msg)) = batch.next().await {
                let _ = msg.double_ack_with(jetstream::AckKind::Nak(None)).await;
            }
        }
    };
    // Handing back: every running task sees `base` canceled and is Nak'd.
    let handed_back = tokio::time::timeout(Duration::from_secs(30), async {
        let ((), ()) = tokio::join!(refuse, async {
            while running.join_next().await.is_some() {}
        });
    })
    .await
    .is_ok();
    shutdown.abort();
    // Whatever is still buffered (progress, events) goes out before exit.
    let _ = tokio::time::timeout(Duration::from_secs(2), worker.client.flush()).await;
    tracing::info!(request_id = "-", trace_id = "-", handed_back, "stopped");
    if handed_back {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One message: run it under its context, tell the server how it ended.
async fn handle(worker: &Arc<Worker>, msg: jetstream::Message) {
    let decided =
        goctx::nats::process(&worker.base, &worker.client, &msg, worker.ack_wait, |ctx| {
            run_message(worker.clone(), ctx, msg.payload.clone())
        })
        .await;
    // How it ended, `run_message` logged with the task's ids.
    if let Err(e) = decided {
        tracing::warn!(request_id = "-", trace_id = "-", error = %e,
            "cannot tell the server how a task ended; it is redelivered after the lease");
    }
}

/// The work of one message under `ctx`, the context its headers carry.
async fn run_message(worker: Arc<Worker>, ctx: Ctx, payload: bytes::Bytes) -> Result<(), Cause> {
    let message: TaskMessage = serde_json::from_slice(&payload).map_err(|e| {
        tracing::error!(request_id = "-", trace_id = "-", error = %e, "malformed task message");
        Cause::new(Permanent(Cause::from(format!(
            "malformed task message: {e}"
        ))))
    })?;
    let request_id = ctx
        .value::<RequestId>()
        .map_or_else(|| "-".to_owned(), |id| id.as_str().to_owned());
    let trace_id = ctx
        .value::<TraceContext>()
        .map_or_else(|| "-".to_owned(), TraceContext::trace_id_hex);
    let ctx = run::with_request_id(&ctx, &request_id);
    let queued =
        Duration::from_micros(broker::unix_micros().saturating_sub(message.enqueued_at_us));
    let task = message.task;
    let run = message.run;
    tracing::info!(
        %request_id,
        %trace_id,
        worker = &*worker.name,
        task = task.name.as_str(),
        queued_ms = queued.as_millis() as u64,
        "task started"
    );

    let (events, received) = Emitter::channel();
    let forwarder = tokio::spawn(forward(worker.clone(), run.clone(), received));
    let report = run::run_task(&ctx, message.config, task.clone(), queued, events).await;
    // Every event of the task is out before its final report.
    let _ = forwarder.await;

    let handing_back = worker.base.err().is_some()
        && !matches!(
            report.as_ref().map(|r| &r.outcome),
            Some(Outcome::Completed)
        );
    if handing_back {
        tracing::info!(
            %request_id,
            %trace_id,
            worker = &*worker.name,
            task = task.name.as_str(),
            "task stopped by the shutdown; handing it back"
        );
        return Err(Cause::from("worker shutting down"));
    }
    let report = report.unwrap_or_else(|| TaskReport {
        task: run::task_ref(&request_id.as_str().into(), &task, None),
        outcome: Outcome::Failed("the worker's task panicked".into()),
        started: true,
        elapsed: Duration::ZERO,
        attempts: 1,
        cause: None,
        deadline: None,
    });
    let outcome = report.outcome.clone();
    tracing::info!(
        %request_id,
        %trace_id,
        worker = &*worker.name,
        task = task.name.as_str(),
        outcome = outcome_name(&outcome),
        cause = report.cause.as_deref(),
        "task ended"
    );
    if !send_report(&worker, &run, Event::Finished(report)).await {
        // No report, no acknowledgement: it runs again elsewhere.
        return Err(Cause::from("the report could not be sent"));
    }
    match outcome {
        Outcome::Completed => Ok(()),
        // Final: the service has the report; never run it again.
        other => Err(Cause::new(Permanent(Cause::from(outcome_name(&other))))),
    }
}

fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Completed => "completed",
        Outcome::Canceled(goctx::Error::DeadlineExceeded) => "timed_out",
        Outcome::Canceled(_) => "canceled",
        Outcome::Failed(_) => "failed",
    }
}

/// Sends a task's events to the service: progress over core NATS (a lost
/// one is replaced by the next), subtasks' final reports through the
/// results stream.
async fn forward(
    worker: Arc<Worker>,
    run: String,
    mut received: tokio::sync::mpsc::UnboundedReceiver<Event>,
) {
    let subject = broker::events_subject(&run);
    while let Some(mut event) = received.recv().await {
        match &mut event {
            Event::Started { worker: w, .. } => *w = Some(worker.name.clone()),
            Event::Finished(report) => {
                // A subtask stopped by this worker's shutdown runs again
                // elsewhere with its parent: no report.
                if worker.base.err().is_some() && report.outcome != Outcome::Completed {
                    continue;
                }
                if report.task.parent.is_some() {
                    send_report(&worker, &run, event).await;
                }
                continue;
            }
            _ => {}
        }
        if let Ok(payload) = serde_json::to_vec(&event) {
            let _ = worker.client.publish(subject.clone(), payload.into()).await;
        }
    }
}

/// Publishes a final report on the results stream and waits for the
/// server to store it; tries for up to 30 s (a server restarting), less
/// if the worker shuts down. True once stored.
async fn send_report(worker: &Worker, run: &str, event: Event) -> bool {
    let Ok(payload) = serde_json::to_vec(&event) else {
        return false;
    };
    let payload = bytes::Bytes::from(payload);
    let subject = broker::results_subject(run);
    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut pause = Duration::from_millis(50);
    loop {
        let stored = async {
            worker
                .js
                .publish(subject.clone(), payload.clone())
                .await?
                .await
                .map_err(async_nats::Error::from)
        };
        match tokio::time::timeout(Duration::from_secs(5), stored).await {
            Ok(Ok(_)) => return true,
            Ok(Err(e)) => {
                tracing::warn!(request_id = "-", trace_id = "-", error = %e, "cannot store a report; retrying")
            }
            Err(_) => {
                tracing::warn!(
                    request_id = "-",
                    trace_id = "-",
                    "storing a report timed out; retrying"
                )
            }
        }
        if tokio::time::Instant::now() + pause > give_up {
            return false;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}
