//! `processor serve --broker URL`: a run's tasks go on the broker's
//! stream instead of the in-process pool, and `processor worker`
//! processes run them (see `crate::run::broker` for the subjects).
//!
//! The run drives the same [`Event`]s as an in-process run, so the
//! records, the dashboard, the logs and the metrics work unchanged: it
//! publishes every task (most urgent first) with the run's context in the
//! headers, then turns what the workers send back into events, until
//! every task has its final report.
//!
//! When the run's context ends (DELETE, its deadline, the server's
//! shutdown): the workers hear it (a cancel on the run's cancel subject,
//! or the deadline they carry), the tasks still in the stream are purged,
//! and those are reported as never started. Tasks that were running get
//! [`REPORT_GRACE`] to send their reports.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use goctx::Ctx;

use crate::run::broker::{self, TaskMessage};
use crate::run::task::Task;
use crate::run::{self, Emitter, Event, Outcome, RunConfig, Summary, TaskReport};

/// How long a run that ended waits for the reports of tasks that were
/// running on workers (they stop within milliseconds of hearing it).
pub const REPORT_GRACE: Duration = Duration::from_secs(5);

/// How long each pull of a run's reports waits.
const RESULTS_PULL: Duration = Duration::from_secs(2);

/// The service's connection to the broker.
pub struct Broker {
    pub url: String,
    client: async_nats::Client,
    js: jetstream::Context,
    tasks: jetstream::stream::Stream,
    results: jetstream::stream::Stream,
    /// Random per process: keeps runs of services sharing a broker apart.
    instance: String,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("url", &self.url).finish()
    }
}

impl Broker {
    /// Connects and makes sure the streams and the workers' consumer
    /// exist (`ack_wait` for a consumer this creates).
    pub async fn connect(url: &str, ack_wait: Duration) -> Result<Broker, String> {
        let client = broker::connect(url).await?;
        let js = jetstream::new(client.clone());
        let (tasks, _, _) = broker::ensure(&js, ack_wait).await?;
        let results = js
            .get_stream(broker::RESULTS)
            .await
            .map_err(|e| format!("cannot open stream {}: {e}", broker::RESULTS))?;
        let instance = format!(
            "{:x}",
            broker::unix_micros() ^ u64::from(std::process::id())
        );
        Ok(Broker {
            url: url.to_owned(),
            client,
            js,
            tasks,
            results,
            instance,
        })
    }
}

/// Runs `tasks` on the broker's workers under `ctx` (the run's context:
/// its deadline, trace and request id travel with each task), reporting
/// as [`run::run`] does.
pub async fn run(
    broker: Arc<Broker>,
    ctx: Ctx,
    run_id: String,
    config: RunConfig,
    mut tasks: Vec<Task>,
    events: Emitter,
) -> Summary {
    let request_id = run::request_id(&ctx);
    events.send(Event::RunStarted {
        request_id: request_id.clone(),
        tasks: tasks.len(),
        workers: config.workers,
    });
    let token = broker::run_token(&broker.instance, &run_id);
    let mut summary = Summary::default();
    // Every top-level task without its final report yet; true once a
    // worker said it started.
    let mut pending: HashMap<String, (Task, bool)> = HashMap::new();

    // Listen before publishing, so nothing a fast worker says is missed.
    let listening = async {
        let live = broker
            .client
            .subscribe(broker::events_subject(&token))
            .await
            .map_err(|e| e.to_string())?;
        let results = broker
            .results
            .create_consumer(pull::OrderedConfig {
                filter_subject: broker::results_subject(&token),
                // Pulls of 2 s with a heartbeat each second: after a
                // server restart, the consumer is recreated within seconds
                // (with the default 30 s pulls it takes a minute).
                max_expires: RESULTS_PULL,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((live, results))
    };
    let (mut live, mut results) = match listening.await {
        Ok(both) => both,
        Err(e) => {
            tracing::error!(request_id = &*request_id, error = %e, "cannot listen on the broker");
            for task in &tasks {
                let report = unstarted(&request_id, task, failed(&e));
                summary.add(&report);
                events.send(Event::Finished(report));
            }
            events.send(Event::RunFinished(summary.clone()));
            return summary;
        }
    };

    // Most urgent first: the stream hands tasks out in publish order.
    tasks.sort_by_key(|t| t.priority);
    let cancel_subject = broker::cancel_subject(&token);
    let mut acks = Vec::with_capacity(tasks.len());
    for task in tasks {
        events.send(Event::Queued {
            task: run::task_ref(&request_id, &task, None),
        });
        let message = TaskMessage {
            run: token.clone(),
            config: config.clone(),
            task: task.clone(),
            enqueued_at_us: broker::unix_micros(),
        };
        let payload = serde_json::to_vec(&message).unwrap_or_default();
        let published = goctx::nats::publish(
            &ctx,
            &broker.js,
            broker::tasks_subject(&token),
            payload.into(),
            Some(&cancel_subject),
        )
        .await;
        match published {
            Ok(ack) => {
                acks.push((task.id.clone(), ack));
                pending.insert(task.id.clone(), (task, false));
            }
            Err(e) => {
                let report = match ctx.err() {
                    Some(err) => unstarted(&request_id, &task, Outcome::Canceled(err)),
                    None => unstarted(&request_id, &task, failed(&e.to_string())),
                };
                summary.add(&report);
                events.send(Event::Finished(report));
            }
        }
    }
    for (id, ack) in acks {
        if let Err(e) = ack.await
            && let Some((task, _)) = pending.remove(&id)
        {
            let report = unstarted(&request_id, &task, failed(&e.to_string()));
            summary.add(&report);
            events.send(Event::Finished(report));
        }
    }
    // The workers running its tasks hear when the run ends.
    goctx::nats::cancel_when_done(&ctx, broker.client.clone(), cancel_subject);

    let mut grace: Option<tokio::time::Instant> = None;
    // async-nats's ordered consumer does not wake its reader after a first
    // missed heartbeat (a server gone); polling it again each tick lets it
    // see the second one and recreate itself.
    let mut tick = tokio::time::interval(RESULTS_PULL / 4);
    while !pending.is_empty() {
        let give_up = async {
            match grace {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(msg) = live.next() => {
                let Ok(event) = serde_json::from_slice::<Event>(&msg.payload) else { continue };
                if let Event::Started { task, .. } = &event
                    && task.parent.is_none()
                    && let Some(entry) = pending.get_mut(&*task.id)
                {
                    entry.1 = true;
                }
                if !matches!(event, Event::Finished(_) | Event::RunStarted { .. } | Event::RunFinished(_)) {
                    events.send(event);
                }
            }
            Some(Ok(msg)) = results.next() => {
                let Ok(Event::Finished(mut report)) = serde_json::from_slice::<Event>(&msg.payload) else {
                    continue;
                };
                if let Outcome::Canceled(_) = report.outcome
                    && let Some(cause) = ctx.cause()
                    && cause.downcast_ref::<goctx::Error>().is_none()
                {
                    // The run's own cause says more than "the producer
                    // canceled the task".
                    report.cause = Some(cause.to_string());
                }
                if report.task.parent.is_some() {
                    events.send(Event::Finished(report));
                } else if pending.remove(&*report.task.id).is_some() {
                    // The first report of a task counts; a task run again
                    // after a lost acknowledgement reports twice.
                    summary.add(&report);
                    events.send(Event::Finished(report));
                }
            }
            _ = ctx.done(), if grace.is_none() => {
                grace = Some(tokio::time::Instant::now() + REPORT_GRACE);
                // Tasks no worker took will not run: take them out.
                let purged = broker.tasks.purge().filter(broker::tasks_subject(&token)).await;
                if let Err(e) = purged {
                    tracing::warn!(request_id = &*request_id, error = %e, "cannot purge the run's queued tasks");
                }
                let err = ctx.err().unwrap_or(goctx::Error::Canceled);
                let queued: Vec<String> = pending
                    .iter()
                    .filter(|(_, (_, started))| !started)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in queued {
                    if let Some((task, _)) = pending.remove(&id) {
                        let mut report = unstarted(&request_id, &task, Outcome::Canceled(err));
                        report.cause = run::cause_detail(&ctx);
                        summary.add(&report);
                        events.send(Event::Finished(report));
                    }
                }
            }
            _ = tick.tick() => {}
            () = give_up => break,
        }
    }
    // Started, but no report within the grace period (a worker lost).
    let err = ctx.err().unwrap_or(goctx::Error::Canceled);
    for (_, (task, _)) in pending.drain() {
        let mut report = unstarted(&request_id, &task, Outcome::Canceled(err));
        report.started = true;
        report.cause = Some("no report from the worker".into());
        summary.add(&report);
        events.send(Event::Finished(report));
    }
    let cleaned = broker
        .results
        .purge()
        .filter(broker::results_subject(&token))
        .await;
    if let Err(e) = cleaned {
        tracing::warn!(request_id = &*request_id, error = %e, "cannot purge the run's reports");
    }
    events.send(Event::RunFinished(summary.clone()));
    summary
}

fn failed(why: &str) -> Outcome {
    Outcome::Failed(format!("not enqueued on the broker: {why}"))
}

/// The report of a task that never started.
fn unstarted(request_id: &Arc<str>, task: &Task, outcome: Outcome) -> TaskReport {
    TaskReport {
        task: run::task_ref(request_id, task, None),
        outcome,
        started: false,
        elapsed: Duration::ZERO,
        attempts: 0,
        cause: None,
        deadline: None,
    }
}
