//! Broker mode's common ground (issue 20): the service and the worker
//! processes meet on a NATS JetStream server. This file names what both
//! sides agree on: the streams, the subjects, the consumer and the messages.
//!
//! ```text
//! processor serve --broker URL                 processor worker --broker URL
//!   publish ──► TASKS  processor.tasks.<run>   ──► pull consumer "workers"
//!                      (work queue, file)           (ack_wait = the lease)
//!   ◄── core   processor.events.<run>          ◄── started, progress, retries
//!   ◄── RESULTS processor.results.<run>        ◄── each task's final report
//!   core ──►   processor.cancel.<run>          ──► the run was canceled
//! ```
//!
//! A task message carries the run's context in its headers (deadline as
//! an absolute time, trace, request id: `goctx::nats::publish`); the body
//! is a [`TaskMessage`]. Final reports go through a stream, so none is
//! lost while the service is busy or the server restarts; progress goes
//! over core NATS, where a lost update is replaced by the next one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer::pull, stream};
use serde::{Deserialize, Serialize};

use super::RunConfig;
use super::task::Task;

/// The stream of tasks waiting for a worker (work-queue retention: a
/// message leaves once acked or terminated).
pub const TASKS: &str = "PROCESSOR_TASKS";
/// The stream of final reports, kept an hour.
pub const RESULTS: &str = "PROCESSOR_RESULTS";
/// The durable pull consumer every worker process shares.
pub const CONSUMER: &str = "workers";

pub fn tasks_subject(run: &str) -> String {
    format!("processor.tasks.{run}")
}

pub fn events_subject(run: &str) -> String {
    format!("processor.events.{run}")
}

pub fn results_subject(run: &str) -> String {
    format!("processor.results.{run}")
}

pub fn cancel_subject(run: &str) -> String {
    format!("processor.cancel.{run}")
}

/// A task as it travels: the run's settings and the task itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskMessage {
    /// The run's subject token (see [`run_token`]).
    pub run: String,
    pub config: RunConfig,
    pub task: Task,
    /// When the service published it, microseconds since the Unix epoch:
    /// the worker reports the time it waited.
    pub enqueued_at_us: u64,
}

/// Microseconds since the Unix epoch, now.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A subject token for a run: unique across services sharing a broker
/// (`instance`, random per process) and free of the characters a
/// subject gives meaning to (a run id may hold `.`).
pub fn run_token(instance: &str, run_id: &str) -> String {
    let id: String = run_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{instance}-{id}")
}

/// Connects to the broker, with a clear message when it cannot.
pub async fn connect(url: &str) -> Result<async_nats::Client, String> {
    async_nats::ConnectOptions::new()
        .name("goctx processor")
        .connect(url)
        .await
        .map_err(|e| format!("cannot connect to the broker at {url}: {e}"))
}

/// The two streams and the workers' consumer, created if missing (every
/// process calls this; the first one creates them). `ack_wait` applies
/// only when this call creates the consumer; the consumer's own is
/// returned.
pub async fn ensure(
    js: &jetstream::Context,
    ack_wait: Duration,
) -> Result<
    (
        jetstream::stream::Stream,
        jetstream::consumer::Consumer<pull::Config>,
        Duration,
    ),
    String,
> {
    let tasks = js
        .get_or_create_stream(stream::Config {
            name: TASKS.into(),
            subjects: vec!["processor.tasks.>".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("cannot create stream {TASKS}: {e}"))?;
    js.get_or_create_stream(stream::Config {
        name: RESULTS.into(),
        subjects: vec!["processor.results.>".into()],
        storage: stream::StorageType::File,
        max_age: Duration::from_secs(3600),
        ..Default::default()
    })
    .await
    .map_err(|e| format!("cannot create stream {RESULTS}: {e}"))?;
    let mut consumer: jetstream::consumer::Consumer<pull::Config> = tasks
        .get_or_create_consumer(
            CONSUMER,
            pull::Config {
                durable_name: Some(CONSUMER.into()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait,
                max_deliver: -1,
                max_ack_pending: 100_000,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("cannot create consumer {CONSUMER}: {e}"))?;
    let ack_wait = consumer
        .info()
        .await
        .map(|info| info.config.ack_wait)
        .map_err(|e| format!("cannot read consumer {CONSUMER}: {e}"))?;
    Ok((tasks, consumer, ack_wait))
}
