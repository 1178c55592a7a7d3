//! Feature `nats` (issue 20, the library): tasks on a real nats-server
//! with JetStream, started by the test on a free loopback port.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use bytes::Bytes;
use common::nats::Nats;
use goctx::nats::{CanceledByProducer, Disposition, Permanent, cancel_when_done, process, publish};
use goctx::propagation::{RequestId, TraceContext};
use goctx::{Cause, Ctx, Error};

/// Every wait is bounded by this.
const LIMIT: Duration = Duration::from_secs(20);

/// A server, a client, a stream `TASKS` on `tasks.>` and a pull consumer
/// with `ack_wait`.
async fn setup(
    ack_wait: Duration,
) -> (
    Nats,
    async_nats::Client,
    jetstream::Context,
    jetstream::consumer::Consumer<pull::Config>,
) {
    let server = Nats::start();
    let client = async_nats::connect(&server.url).await.expect("connect");
    let js = jetstream::new(client.clone());
    let stream = js
        .create_stream(stream::Config {
            name: "TASKS".into(),
            subjects: vec!["tasks.>".into()],
            ..Default::default()
        })
        .await
        .expect("stream");
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("workers".into()),
            ack_wait,
            max_deliver: 5,
            ..Default::default()
        })
        .await
        .expect("consumer");
    (server, client, js, consumer)
}

/// The consumer's next message, if one comes within `wait`.
async fn fetch_one(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    wait: Duration,
) -> Option<jetstream::Message> {
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .expires(wait)
        .messages()
        .await
        .expect("fetch");
    let next = std::future::poll_fn(|cx| {
        futures_core::Stream::poll_next(std::pin::Pin::new(&mut batch), cx)
    });
    match tokio::time::timeout(wait * 3, next).await {
        Ok(Some(msg)) => Some(msg.expect("no error")),
        Ok(None) | Err(_) => None,
    }
}

/// The next message of the consumer, waited for at most `LIMIT`.
async fn next_message(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
) -> jetstream::Message {
    fetch_one(consumer, LIMIT).await.expect("a message in time")
}

/// Whether the consumer has nothing left to deliver (within `wait`).
async fn nothing_left(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    wait: Duration,
) -> bool {
    fetch_one(consumer, wait).await.is_none()
}

fn producer_ctx(timeout: Duration) -> (Ctx, goctx::CancelFunc) {
    let (ctx, cancel) = goctx::with_timeout(&goctx::background(), timeout);
    let ctx = goctx::with_value(&ctx, TraceContext::new_root());
    (
        goctx::with_value(&ctx, RequestId::parse("run-1").unwrap()),
        cancel,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_under_its_producers_context_and_is_acked() {
    let (_server, client, js, consumer) = setup(Duration::from_secs(5)).await;
    let (ctx, _cancel) = producer_ctx(Duration::from_secs(30));
    let ack = publish(&ctx, &js, "tasks.a", Bytes::from_static(b"one"), None)
        .await
        .unwrap();
    ack.await.unwrap();
    let msg = next_message(&consumer).await;
    let seen = Arc::new(std::sync::Mutex::new(None));
    let record = seen.clone();
    let disposition = process(
        &goctx::background(),
        &client,
        &msg,
        Duration::from_secs(5),
        |task| async move {
            *record.lock().unwrap() = Some(task);
            Ok(())
        },
    )
    .await
    .unwrap();
    assert_eq!(disposition, Disposition::Ack);
    let task = seen.lock().unwrap().take().unwrap();
    assert_eq!(task.value::<RequestId>().unwrap().as_str(), "run-1");
    let (theirs, ours) = (
        task.value::<TraceContext>().unwrap(),
        ctx.value::<TraceContext>().unwrap(),
    );
    assert_eq!(
        theirs.trace_id(),
        ours.trace_id(),
        "one trace across the queue"
    );
    assert!(task.deadline().unwrap() <= ctx.deadline().unwrap());
    assert!(
        nothing_left(&consumer, Duration::from_millis(300)).await,
        "acked: not redelivered"
    );
}

// Issue 20: a task enqueued with 300 ms left and delayed in the queue by
// 500 ms is never run and ends `DeadlineExceeded` (terminated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_deadline_passed_in_the_queue_never_runs() {
    let (_server, client, js, consumer) = setup(Duration::from_secs(5)).await;
    let (ctx, _cancel) = producer_ctx(Duration::from_millis(300));
    publish(&ctx, &js, "tasks.late", Bytes::new(), None)
        .await
        .unwrap()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let msg = next_message(&consumer).await;
    let ran = Arc::new(AtomicUsize::new(0));
    let count = ran.clone();
    let disposition = process(
        &goctx::background(),
        &client,
        &msg,
        Duration::from_secs(5),
        |_| async move {
            count.fetch_add(1, Ordering::SeqCst);
            Ok(())
        },
    )
    .await
    .unwrap();
    assert_eq!(disposition, Disposition::Term);
    assert_eq!(ran.load(Ordering::SeqCst), 0, "never run");
    assert!(
        nothing_left(&consumer, Duration::from_millis(300)).await,
        "never redelivered"
    );
}

// The lease: a task that runs for three times `ack_wait` is not
// redelivered meanwhile, thanks to the in-progress acks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_task_keeps_its_lease() {
    let ack_wait = Duration::from_secs(1);
    let (_server, client, js, consumer) = setup(ack_wait).await;
    let (ctx, _cancel) = producer_ctx(Duration::from_secs(30));
    publish(&ctx, &js, "tasks.long", Bytes::new(), None)
        .await
        .unwrap()
        .await
        .unwrap();
    let msg = next_message(&consumer).await;
    let worker = {
        let client = client.clone();
        tokio::spawn(async move {
            process(&goctx::background(), &client, &msg, ack_wait, |_| async {
                tokio::time::sleep(ack_wait * 3).await;
                Ok(())
            })
            .await
            .unwrap()
        })
    };
    // While it runs, nobody else gets it.
    assert!(
        nothing_left(&consumer, ack_wait).await,
        "redelivered while running"
    );
    assert_eq!(
        tokio::time::timeout(LIMIT, worker).await.unwrap().unwrap(),
        Disposition::Ack
    );
}

// The disposition table: a plain error is retried (Nak, delivered again),
// a permanent one is terminated, a worker's shutdown hands the task back.
// Redeliveries may come before the other tasks: each task's work is
// picked by its subject and delivery, not by the order of arrival.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cause_picks_the_disposition() {
    let (_server, client, js, consumer) = setup(Duration::from_secs(5)).await;
    let (ctx, _cancel) = producer_ctx(Duration::from_secs(30));
    for subject in ["tasks.retry", "tasks.fatal", "tasks.shutdown"] {
        publish(&ctx, &js, subject, Bytes::new(), None)
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let mut seen: Vec<(String, Disposition)> = Vec::new();
    // Five ends in all: retry twice, fatal once, shutdown twice.
    while seen.len() < 5 {
        let msg = next_message(&consumer).await;
        let subject = msg.subject.to_string();
        let first = !seen.iter().any(|(s, _)| *s == subject);
        // The worker's base; its `CancelFunc` outlives the task (dropping
        // the last handle cancels it, which is a shutdown).
        let (worker_base, stop) = goctx::with_cancel(&goctx::background());
        let d = process(&worker_base, &client, &msg, Duration::from_secs(5), {
            let (subject, stop) = (subject.clone(), stop.clone());
            move |task| async move {
                match (subject.as_str(), first) {
                    ("tasks.retry", true) => Err(Cause::from("flaky")),
                    ("tasks.fatal", _) => Err(Cause::new(Permanent(Cause::from("bad input")))),
                    ("tasks.shutdown", true) => {
                        // The worker shuts down while the task runs.
                        stop.cancel();
                        task.done().await;
                        Err(Cause::from(task.err().unwrap()))
                    }
                    _ => Ok(()),
                }
            }
        })
        .await
        .unwrap();
        drop(stop);
        seen.push((subject, d));
    }
    let of = |subject: &str| -> Vec<Disposition> {
        seen.iter()
            .filter(|(s, _)| s == subject)
            .map(|(_, d)| *d)
            .collect()
    };
    assert_eq!(
        of("tasks.retry"),
        [Disposition::Nak, Disposition::Ack],
        "{seen:?}"
    );
    assert_eq!(of("tasks.fatal"), [Disposition::Term], "{seen:?}");
    assert_eq!(
        of("tasks.shutdown"),
        [Disposition::Nak, Disposition::Ack],
        "{seen:?}"
    );
    assert!(nothing_left(&consumer, Duration::from_millis(300)).await);
}

// A task that returned `Ok` is done: acked even if its worker began
// shutting down meanwhile (only unfinished work is handed back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_task_is_acked_during_a_shutdown() {
    let (_server, client, js, consumer) = setup(Duration::from_secs(5)).await;
    let (ctx, _cancel) = producer_ctx(Duration::from_secs(30));
    publish(&ctx, &js, "tasks.done", Bytes::new(), None)
        .await
        .unwrap()
        .await
        .unwrap();
    let msg = next_message(&consumer).await;
    let (worker_base, stop) = goctx::with_cancel(&goctx::background());
    let d = process(
        &worker_base,
        &client,
        &msg,
        Duration::from_secs(5),
        move |_| async move {
            stop.cancel();
            Ok(())
        },
    )
    .await
    .unwrap();
    assert_eq!(d, Disposition::Ack);
    assert!(nothing_left(&consumer, Duration::from_millis(300)).await);
}

// Cancel from the producer reaches the worker running its task within 1 s,
// with a cause that says so; the task is terminated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producers_cancel_reaches_the_worker() {
    let (_server, client, js, consumer) = setup(Duration::from_secs(5)).await;
    let (ctx, cancel) = producer_ctx(Duration::from_secs(30));
    cancel_when_done(&ctx, client.clone(), "cancel.run-1".to_owned());
    publish(&ctx, &js, "tasks.c", Bytes::new(), Some("cancel.run-1"))
        .await
        .unwrap()
        .await
        .unwrap();
    let msg = next_message(&consumer).await;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let worker = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut ended = None;
            let d = process(
                &goctx::background(),
                &client,
                &msg,
                Duration::from_secs(5),
                |task| {
                    let slot = &mut ended;
                    async move {
                        let _ = started_tx.send(());
                        task.done().await;
                        *slot = Some((Instant::now(), task.cause()));
                        Err(Cause::from(task.err().unwrap()))
                    }
                },
            )
            .await
            .unwrap();
            (d, ended)
        })
    };
    tokio::time::timeout(LIMIT, started_rx)
        .await
        .unwrap()
        .unwrap();
    // Give the worker's subscription a moment to reach the server.
    client.flush().await.unwrap();
    let canceled_at = Instant::now();
    cancel.cancel();
    let (d, ended) = tokio::time::timeout(LIMIT, worker).await.unwrap().unwrap();
    let (at, cause) = ended.expect("the task saw its end");
    assert!(
        at - canceled_at < Duration::from_secs(1),
        "took {:?}",
        at - canceled_at
    );
    assert!(cause.unwrap().is::<CanceledByProducer>());
    assert_eq!(d, Disposition::Term);
    let _ = Error::Canceled;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_comes_back_after_a_backoff_not_at_once() {
    let (_server, client, js, consumer) = setup(Duration::from_secs(5)).await;
    let (ctx, _cancel) = producer_ctx(Duration::from_secs(30));
    let ack = publish(&ctx, &js, "tasks.flaky", Bytes::from_static(b"x"), None)
        .await
        .unwrap();
    ack.await.unwrap();
    let mut deliveries = Vec::new();
    for _ in 0..3 {
        let msg = next_message(&consumer).await;
        deliveries.push(Instant::now());
        let disposition = process(
            &goctx::background(),
            &client,
            &msg,
            Duration::from_secs(5),
            |_| async { Err(Cause::from("flaky")) },
        )
        .await
        .unwrap();
        assert_eq!(disposition, Disposition::Nak);
    }
    // 100 ms before the second delivery, 200 ms before the third: a task
    // that keeps failing does not spin.
    let gaps: Vec<Duration> = deliveries.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] >= Duration::from_millis(90), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(190), "{gaps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_under_a_done_context_returns_its_cause() {
    let (_server, _client, js, consumer) = setup(Duration::from_secs(5)).await;
    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    cancel.cancel_with_cause(Cause::from("gave up"));
    let err = publish(&ctx, &js, "tasks.never", Bytes::new(), None)
        .await
        .expect_err("a done context publishes nothing");
    assert_eq!(err.to_string(), "gave up");
    assert!(nothing_left(&consumer, Duration::from_millis(300)).await);
}
