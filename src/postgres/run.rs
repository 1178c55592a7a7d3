//! Running a query under a context: race, cancel, drain.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{CancelToken, Client, NoTls, Socket};

use super::error::{Error, ErrorKind};
use crate::cancel::CancelFunc;
use crate::context::{Ctx, background};
use crate::deadline::with_timeout;
use crate::done::{Done, DoneOwned};
use crate::error::Ended;

/// How long [`run`] waits, after sending a CancelRequest, for the query to
/// answer before giving up on it: 5 seconds.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// Runs `query` on `client` until the query answers or `ctx` ends; when
/// `ctx` ends first, the server is asked to stop the query.
///
/// This is what Go's pgx does with a context: the database counterpart of
/// dropping an HTTP request. Dropping a tokio-postgres future only stops
/// waiting for the answer; the server would go on running the statement
/// for its full time, holding its locks and I/O.
///
/// - `ctx` already done: returns [`ErrorKind::NotStarted`] at once.
///   `query` is dropped without being polled, so nothing reaches the
///   server (tokio-postgres sends a statement on the first poll).
/// - The query answers first: its result, unchanged (a database error
///   comes back as [`ErrorKind::Query`]).
/// - `ctx` ends first: a CancelRequest goes to the server on a new
///   connection ([`Client::cancel_token`]), and `run` waits, at most
///   [`DEFAULT_GRACE`], for the query's own answer and for the request to
///   be sent. The answer is usually SQLSTATE 57014 (`query_canceled`),
///   returned as [`ErrorKind::Canceled`] with the context's `err()` and
///   `cause()`. If the query finished before the cancel reached it, its
///   result is returned as it is. Past the grace period,
///   [`ErrorKind::CancelUnconfirmed`].
///
/// When `run` returns, the statement is no longer running on the server
/// (except after `CancelUnconfirmed`), so the connection can go back to a
/// pool and the next statement runs at once. As with every PostgreSQL
/// cancel, a request that reaches the server only after the statement
/// finished can, rarely, stop the next statement on that connection
/// instead; `run` keeps that window to the server's own few milliseconds
/// by waiting until the request is sent.
///
/// The CancelRequest goes without TLS; a server or proxy that refuses
/// that takes [`Canceler::tls`].
///
/// `client` is the client the query runs on: a pooled connection derefs
/// to it (`&object`), and a transaction has [`client()`][tx].
///
/// [tx]: tokio_postgres::Transaction::client
///
/// # Cancel safety
///
/// Not cancel safe in the sense that matters here: `run` can only cancel
/// the statement while it is being polled. Dropping its future drops
/// `query`, as dropping `query` itself would: tokio-postgres discards the
/// answer, **no CancelRequest is sent, and the statement runs on** on the
/// server, keeping the connection busy (its next statement waits behind
/// it). So bound a query with the context (`with_timeout`), not with
/// `tokio::time::timeout` or a `select!` that drops it; and where the
/// caller's future may be dropped (an axum handler whose client leaves),
/// run the query in a task of its own (docs/http.md, "Databases").
///
/// # Examples
///
/// ```no_run
/// # async fn example(client: tokio_postgres::Client) -> Result<(), goctx::postgres::Error> {
/// use std::time::Duration;
///
/// let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), Duration::from_millis(300));
/// match goctx::postgres::run(&ctx, &client, client.query("SELECT pg_sleep(30)", &[])).await {
///     Ok(rows) => println!("{} rows", rows.len()),
///     Err(err) if err.kind() == goctx::postgres::ErrorKind::Canceled => {
///         // The server stopped the statement (SQLSTATE 57014) because the
///         // context ended: err.context_err() says how.
///         println!("stopped: {err}");
///     }
///     Err(err) => return Err(err),
/// }
/// # Ok(()) }
/// # let _ = example;
/// ```
#[doc(alias = "pgx")]
#[doc(alias = "QueryContext")]
pub fn run<'a, Q, T>(
    ctx: &'a Ctx,
    client: &'a Client,
    query: Q,
) -> impl Future<Output = Result<T, Error>> + 'a
where
    Q: IntoFuture<Output = Result<T, tokio_postgres::Error>>,
    Q::IntoFuture: 'a,
    T: 'a,
{
    DEFAULT_CANCELER.run_with(ctx, || client.cancel_token(), query)
}

/// The canceler of [`run`], [`transaction`](super::transaction) and
/// [`commit`](super::commit).
pub(super) static DEFAULT_CANCELER: Canceler<NoTls> = Canceler::new();

/// [`run`] with a TLS connector for the CancelRequest, or another grace
/// period.
///
/// ```no_run
/// # async fn example(ctx: goctx::Ctx, client: tokio_postgres::Client) -> Result<(), goctx::postgres::Error> {
/// use std::time::Duration;
///
/// let canceler = goctx::postgres::Canceler::new().grace(Duration::from_secs(1));
/// let n = canceler.run(&ctx, &client, client.execute("DELETE FROM jobs WHERE done", &[])).await?;
/// println!("{n} jobs deleted");
/// # Ok(()) }
/// # let _ = example;
/// ```
#[derive(Clone)]
pub struct Canceler<M = NoTls> {
    tls: M,
    grace: Duration,
}

impl Canceler<NoTls> {
    /// A canceler that sends its CancelRequest without TLS and waits
    /// [`DEFAULT_GRACE`] for the canceled query to answer.
    pub const fn new() -> Canceler<NoTls> {
        Canceler {
            tls: NoTls,
            grace: DEFAULT_GRACE,
        }
    }
}

impl Default for Canceler<NoTls> {
    fn default() -> Self {
        Canceler::new()
    }
}

impl<M> fmt::Debug for Canceler<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Canceler")
            .field("tls", &std::any::type_name::<M>())
            .field("grace", &self.grace)
            .finish()
    }
}

impl<M> Canceler<M> {
    /// Sends the CancelRequest through `tls` (the connector the client
    /// was made with, say): for servers and proxies that accept no plain
    /// connection.
    pub fn tls<N>(self, tls: N) -> Canceler<N> {
        Canceler {
            tls,
            grace: self.grace,
        }
    }

    /// How long to wait, after sending the CancelRequest, for the query to
    /// answer (default [`DEFAULT_GRACE`]).
    pub fn grace(mut self, grace: Duration) -> Canceler<M> {
        self.grace = grace;
        self
    }

    /// [`run`], with this canceler's TLS connector and grace period.
    pub fn run<'a, Q, T>(
        &'a self,
        ctx: &'a Ctx,
        client: &'a Client,
        query: Q,
    ) -> impl Future<Output = Result<T, Error>> + 'a
    where
        Q: IntoFuture<Output = Result<T, tokio_postgres::Error>>,
        Q::IntoFuture: 'a,
        T: 'a,
        M: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
        M::Stream: Send,
        M::TlsConnect: Send,
        <M::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        self.run_with(ctx, || client.cancel_token(), query)
    }

    /// [`Canceler::run`] with the cancel token taken when needed, or ahead
    /// of a query that borrows the client mutably.
    pub(super) fn run_with<'a, Q, T, K>(
        &'a self,
        ctx: &'a Ctx,
        token: K,
        query: Q,
    ) -> Guarded<'a, Q::IntoFuture, T, K, M>
    where
        Q: IntoFuture<Output = Result<T, tokio_postgres::Error>>,
        K: FnOnce() -> CancelToken,
    {
        Guarded {
            query: query.into_future(),
            done: ctx.done(),
            ctx,
            canceler: self,
            token: Some(token),
            phase: Phase::First,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Canceler::run`]: one struct around the caller's
    /// query future, so the query is not copied from one async frame to
    /// the next on every call (they are large).
    pub(super) struct Guarded<'a, F, T, K, M> {
        #[pin]
        query: F,
        done: Done<'a>,
        ctx: &'a Ctx,
        canceler: &'a Canceler<M>,
        token: Option<K>,
        phase: Phase<T>,
    }
}

enum Phase<T> {
    /// Not polled yet: the context is checked before the query is.
    First,
    /// Racing the query against the context.
    Racing,
    /// The context ended: the cancel is out, the answer awaited.
    Draining(Box<Drain<T>>),
    /// Returned.
    Finished,
}

/// The cancel path's state, boxed: allocated only when a cancel is sent.
struct Drain<T> {
    cancel: Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>,
    answer: Option<Result<T, tokio_postgres::Error>>,
    sent: Option<Result<(), tokio_postgres::Error>>,
    /// Ends after the grace period: goctx's own timer, which needs no
    /// time driver in the caller's runtime. Its cancel function is kept,
    /// since dropping it would end it at once.
    grace: DoneOwned,
    _grace: CancelFunc,
    ended: Ended,
}

impl<F, T, K, M> Future for Guarded<'_, F, T, K, M>
where
    F: Future<Output = Result<T, tokio_postgres::Error>>,
    K: FnOnce() -> CancelToken,
    M: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    M::Stream: Send,
    M::TlsConnect: Send,
    <M::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.phase {
                Phase::First => {
                    if let Some(err) = this.ctx.err() {
                        *this.phase = Phase::Finished;
                        let ended = Some(Ended {
                            err,
                            cause: this.ctx.cause(),
                        });
                        return Poll::Ready(Err(Error::new(
                            ErrorKind::NotStarted,
                            None,
                            ended,
                            None,
                        )));
                    }
                    *this.phase = Phase::Racing;
                }
                Phase::Racing => {
                    if let Poll::Ready(result) = this.query.as_mut().poll(cx) {
                        *this.phase = Phase::Finished;
                        return Poll::Ready(result.map_err(Error::query));
                    }
                    let Poll::Ready(err) = Pin::new(&mut *this.done).poll(cx) else {
                        return Poll::Pending;
                    };
                    // The context ended first: ask the server to stop, then
                    // drain, waiting for the query's answer and for the
                    // request to be out.
                    let token = (this.token.take().expect("the token is taken once"))();
                    let tls = this.canceler.tls.clone();
                    let (grace, grace_cancel) = with_timeout(&background(), this.canceler.grace);
                    *this.phase = Phase::Draining(Box::new(Drain {
                        cancel: Box::pin(async move { token.cancel_query(tls).await }),
                        answer: None,
                        sent: None,
                        grace: grace.done_owned(),
                        _grace: grace_cancel,
                        ended: Ended {
                            err,
                            cause: this.ctx.cause(),
                        },
                    }));
                }
                Phase::Draining(drain) => {
                    if drain.answer.is_none()
                        && let Poll::Ready(answer) = this.query.as_mut().poll(cx)
                    {
                        drain.answer = Some(answer);
                    }
                    if drain.sent.is_none()
                        && let Poll::Ready(sent) = drain.cancel.as_mut().poll(cx)
                    {
                        drain.sent = Some(sent);
                    }
                    let complete = drain.answer.is_some() && drain.sent.is_some();
                    if !complete && Pin::new(&mut drain.grace).poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let Phase::Draining(drain) = std::mem::replace(this.phase, Phase::Finished)
                    else {
                        unreachable!("matched above")
                    };
                    let Drain {
                        answer,
                        sent,
                        ended,
                        ..
                    } = *drain;
                    let cancel_err = sent.and_then(Result::err);
                    return Poll::Ready(match answer {
                        Some(Ok(value)) => Ok(value),
                        Some(Err(err)) => Err(Error::new(
                            ErrorKind::Canceled,
                            Some(err),
                            Some(ended),
                            cancel_err,
                        )),
                        None => Err(Error::new(
                            ErrorKind::CancelUnconfirmed,
                            None,
                            Some(ended),
                            cancel_err,
                        )),
                    });
                }
                Phase::Finished => panic!("goctx::postgres::run polled after it returned"),
            }
        }
    }
}
