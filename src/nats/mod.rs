//! Tasks on NATS JetStream that carry their context (feature `nats`), on
//! the official `async-nats` client.
//!
//! A producer [`publish`]es a task with its context's deadline (absolute:
//! time spent in the stream counts), trace and request id in the message
//! headers (`goctx::propagation`, over NATS headers, which are a
//! [`Carrier`](crate::propagation::Carrier)). A worker [`process`]es each
//! message under the context those headers carry: a task whose deadline
//! passed in the stream never runs; while one runs, its lease is kept by
//! in-progress acks; when it ends, the cause picks the disposition (`Ack`,
//! `Nak` for another worker, `Term`; see [`process`]). A producer that
//! gives up tells the workers with [`cancel_when_done`], and their tasks
//! end with [`CanceledByProducer`].
//!
//! The stream and the consumer are yours to make, as JetStream's
//! documentation shows: work-queue retention suits tasks; a durable pull
//! consumer with explicit acks, whose `ack_wait` (the lease) you pass to
//! [`process`]. Keep cancel subjects out of the stream's subjects, or a
//! cancel is stored as a task.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use async_nats::jetstream::{self, consumer::pull, stream};
//! use futures::StreamExt;
//!
//! # #[allow(dead_code)]
//! # async fn demo() -> Result<(), async_nats::Error> {
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let js = jetstream::new(client.clone());
//! let tasks = js
//!     .get_or_create_stream(stream::Config {
//!         name: "TASKS".into(),
//!         subjects: vec!["tasks.>".into()],
//!         retention: stream::RetentionPolicy::WorkQueue,
//!         ..Default::default()
//!     })
//!     .await?;
//! let ack_wait = Duration::from_secs(30);
//! let consumer: jetstream::consumer::PullConsumer = tasks
//!     .get_or_create_consumer(
//!         "workers",
//!         pull::Config {
//!             durable_name: Some("workers".into()),
//!             ack_wait,
//!             ..Default::default()
//!         },
//!     )
//!     .await?;
//!
//! // Producer: the task carries this context's deadline (time in the
//! // stream counts), trace and request id; when the context ends, the
//! // workers running it hear so on "cancel.resize".
//! let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), Duration::from_secs(60));
//! let ack = goctx::nats::publish(&ctx, &js, "tasks.resize", "photo.jpg".into(), Some("cancel.resize")).await?;
//! ack.await?;
//! goctx::nats::cancel_when_done(&ctx, client.clone(), "cancel.resize".into());
//!
//! // Worker: cancel `base` to hand every running task back.
//! let (base, _stop) = goctx::with_cancel(&goctx::background());
//! let mut messages = consumer.fetch().max_messages(1).messages().await?;
//! while let Some(msg) = messages.next().await {
//!     let msg = msg?;
//!     let payload = msg.payload.clone();
//!     let disposition = goctx::nats::process(&base, &client, &msg, ack_wait, |task| async move {
//!         // The work, under `task`: it ends at the producer's deadline.
//!         task.run(async { println!("resizing {payload:?}") }).await?;
//!         Ok(())
//!     })
//!     .await?;
//!     println!("{disposition}");
//! }
//! # Ok(())
//! # }
//! ```

mod headers;
mod task;

pub use task::{
    CANCEL_SUBJECT, CanceledByProducer, Disposition, Permanent, cancel_when_done, process,
    propagator, publish,
};
