//! A task on JetStream: published with its context in the headers,
//! processed under that context with its lease kept and its end decided
//! by the cause.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use async_nats::{HeaderMap, Subject};
use futures_core::Stream;

use crate::propagation::{Carrier, DeadlineForm, Propagator};
use crate::{Cause, Ctx, Error};

/// The header naming the subject a producer publishes to when its tasks
/// are to stop (see [`cancel_when_done`]).
pub const CANCEL_SUBJECT: &str = "goctx-cancel-subject";

/// How [`process`] ended a message, as the server was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Disposition {
    /// Done: never delivered again.
    Ack,
    /// Not done here: delivered again, to this or another worker: at once
    /// when the worker is shutting down, after a backoff when the task
    /// failed (see [`process`]).
    Nak,
    /// Never to be done: never delivered again.
    Term,
}

/// An error that retrying will not fix: a task that fails with it is
/// [`Term`](Disposition::Term)inated rather than redelivered. Return
/// `Err(Cause::new(Permanent(err)))`.
#[derive(Debug, thiserror::Error)]
#[error("permanent failure: {0}")]
pub struct Permanent(pub Cause);

/// The cause of a task's context when its producer canceled it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, thiserror::Error)]
#[error("context canceled: the producer canceled the task")]
pub struct CanceledByProducer;

/// The propagator of tasks: the deadline in its absolute form, so time
/// spent in the stream counts; the trace and the request id.
pub fn propagator() -> Propagator {
    Propagator::new().deadline_form(DeadlineForm::Absolute)
}

/// Publishes a task on `subject` with `ctx`'s deadline (absolute), trace
/// and request id in its headers, and, if `cancel_subject` is given, the
/// subject its workers listen on for a cancel ([`cancel_when_done`]).
/// Returns JetStream's acknowledgement future, as
/// `jetstream::Context::publish_with_headers` does.
///
/// # Errors
///
/// JetStream's publish error; a context already done publishes nothing
/// and returns its cause ([`Ctx::cause`]: the error itself, or the cause
/// it was canceled with), boxed.
pub async fn publish(
    ctx: &Ctx,
    js: &jetstream::Context,
    subject: impl Into<Subject>,
    payload: bytes::Bytes,
    cancel_subject: Option<&str>,
) -> Result<jetstream::context::PublishAckFuture, async_nats::Error> {
    if let Some(err) = ctx.err() {
        return Err(Box::new(ctx.cause().unwrap_or_else(|| Cause::from(err))));
    }
    let mut headers = HeaderMap::new();
    propagator().inject(ctx, &mut headers);
    if let Some(subject) = cancel_subject {
        headers.set(CANCEL_SUBJECT, subject.to_owned());
    }
    Ok(js
        .publish_with_headers(subject.into(), headers, payload)
        .await?)
}

/// When `ctx` ends, for whatever reason, tells every worker still running
/// a task published with `cancel_subject` to stop: one message on that
/// subject, published from a tokio task.
///
/// `cancel_subject` must not be one of the task stream's subjects: the
/// cancel (an empty message, published however the context ends) would be
/// stored as a task.
///
/// It reaches the tasks that are running when it is published: a task
/// still in the stream does not hear it and runs when a worker takes it
/// (unless its deadline passed). Remove those from the stream (a purge
/// by subject) when a producer gives up on all of its work.
pub fn cancel_when_done(ctx: &Ctx, client: async_nats::Client, cancel_subject: String) {
    let done = ctx.done_owned();
    tokio::spawn(async move {
        done.await;
        let _ = client.publish(cancel_subject, bytes::Bytes::new()).await;
        let _ = client.flush().await;
    });
}

/// Runs `work` on `msg` under the context its headers carry, derived
/// from `base` (cancel `base` to shut the worker down), and tells the
/// server how it ended:
///
/// | the task | disposition | why |
/// |---|---|---|
/// | returned `Ok` | [`Ack`](Disposition::Ack) | done |
/// | its deadline passed (in the stream, or while it ran) | [`Term`](Disposition::Term) | late work is useless; the deadline is the producer's |
/// | its producer canceled it ([`CanceledByProducer`]) | `Term` | nobody wants the result |
/// | failed with [`Permanent`] | `Term` | retrying cannot help |
/// | `base` ended (the worker is shutting down) | [`Nak`](Disposition::Nak), no delay | another worker takes it at once |
/// | failed otherwise | `Nak`, after a backoff | worth another try, but not in a loop: 100 ms before the second delivery, doubling with each one, never more than `ack_wait` |
///
/// A task whose deadline passed while it waited in the stream is not run.
/// While `work` runs, its lease is kept: an in-progress ack every half
/// of `ack_wait`. Pass the consumer's own `ack_wait`
/// (`consumer.info().await?.config.ack_wait`): with a longer one, the
/// lease lapses while the task runs and the server hands the message to
/// another worker as well. The task's context is canceled once `work`
/// returns. The disposition is confirmed by the server before `process`
/// returns (a double ack), so a program may exit right after.
///
/// # Errors
///
/// [`async_nats::Error`] (not [`crate::Error`]): a failure to subscribe
/// to the producer's cancel subject, or to have the disposition confirmed
/// (the server then redelivers after `ack_wait`).
pub async fn process<F, Fut>(
    base: &Ctx,
    client: &async_nats::Client,
    msg: &jetstream::Message,
    ack_wait: Duration,
    work: F,
) -> Result<Disposition, async_nats::Error>
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = Result<(), Cause>>,
{
    let empty = HeaderMap::new();
    let headers = msg.headers.as_ref().unwrap_or(&empty);
    let (ctx, cancel) = propagator().extract(base, headers);
    let disposition = if let Some(err) = ctx.err() {
        // Born done: never run, ended by its context.
        decide(base, &ctx, Some(Cause::from(err)))
    } else {
        // The producer's cancel, heard while the task runs.
        if let Some(subject) = Carrier::get(headers, CANCEL_SUBJECT) {
            let mut sub = client.subscribe(subject.to_owned()).await?;
            let (watched, cancel) = (ctx.clone(), cancel.clone());
            tokio::spawn(async move {
                if let Ok(Some(_)) = watched.run(next(&mut sub)).await {
                    cancel.cancel_with_cause(CanceledByProducer);
                }
                let _ = sub.unsubscribe().await;
            });
        }
        // The lease, kept while the context is live.
        let (kept, lease_msg) = (ctx.clone(), msg.clone());
        let every = (ack_wait / 2).max(Duration::from_millis(10));
        tokio::spawn(async move {
            let _ = kept
                .run(async {
                    loop {
                        tokio::time::sleep(every).await;
                        let _ = lease_msg.ack_with(AckKind::Progress).await;
                    }
                })
                .await;
        });
        let result = work(ctx.clone()).await;
        let disposition = decide(base, &ctx, result.err());
        cancel.cancel();
        disposition
    };
    let kind = match disposition {
        Disposition::Ack => AckKind::Ack,
        Disposition::Nak if base.err().is_some() => AckKind::Nak(None),
        Disposition::Nak => AckKind::Nak(Some(backoff(msg, ack_wait))),
        Disposition::Term => AckKind::Term,
    };
    msg.double_ack_with(kind).await?;
    Ok(disposition)
}

/// The disposition table of [`process`]: `failure` is `None` for a task
/// that returned `Ok` (done, whatever happened to its context since).
fn decide(base: &Ctx, ctx: &Ctx, failure: Option<Cause>) -> Disposition {
    let Some(failure) = failure else {
        return Disposition::Ack;
    };
    if base.err().is_some() {
        Disposition::Nak
    } else if ctx.err() == Some(Error::DeadlineExceeded)
        || ctx
            .cause()
            .is_some_and(|cause| cause.is::<CanceledByProducer>())
        || failure.is::<Permanent>()
    {
        Disposition::Term
    } else {
        Disposition::Nak
    }
}

/// The wait before a failed task's next delivery: 100 ms after the first,
/// doubling with each delivery, at most `ack_wait`.
fn backoff(msg: &jetstream::Message, ack_wait: Duration) -> Duration {
    let delivered = msg.info().map_or(1, |info| info.delivered.max(1));
    let doublings = u32::try_from(delivered - 1).unwrap_or(u32::MAX).min(20);
    (Duration::from_millis(100) * 2u32.pow(doublings)).min(ack_wait.max(Duration::from_millis(100)))
}

/// The next item of a stream.
async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}

impl fmt::Display for Disposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Disposition::Ack => "ack",
            Disposition::Nak => "nak",
            Disposition::Term => "term",
        })
    }
}
