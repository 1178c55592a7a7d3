//! `RequestContextFuture`: the response future, owning the request
//! context's guard until the response's body takes it; the answers it
//! gives for the handler (a malformed `grpc-timeout`, an enforced
//! deadline) and the request id it echoes.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Response, StatusCode, header};
use http_body::Body;
use pin_project_lite::pin_project;

use super::causes::AbandonReason;
#[cfg(doc)]
use super::causes::RequestAbandoned;
use super::guard::Guard;
use super::response_body::RequestContextBody;
#[cfg(doc)]
use super::service::RequestContext;
use crate::future::DoneOwned;
use crate::propagation::RequestId;
use crate::propagation::values::LazyRequestId;
use crate::{Ctx, Error};

/// The request id a response echoes.
pub(super) enum Echo {
    Off,
    /// The client's valid `x-request-id`.
    Inbound(HeaderValue),
    /// The request context, whose id is echoed if something read it (and
    /// so made it): an id nobody read is in no log line to find.
    Made(Ctx),
}

impl Echo {
    fn header(self) -> Option<HeaderValue> {
        match self {
            Echo::Off => None,
            Echo::Inbound(value) => Some(value),
            Echo::Made(ctx) => ctx
                .value::<LazyRequestId>()
                .and_then(|id| id.0.get())
                .map(RequestId::header_value),
        }
    }
}

/// A trailers-only gRPC response: status and message in the headers.
fn grpc_status(code: u8, message: &str) -> Response<()> {
    let mut res = Response::new(());
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(u16::from(code)));
    // Messages here are plain ASCII, which needs no percent-encoding.
    if let Ok(value) = HeaderValue::from_str(message) {
        headers.insert("grpc-message", value);
    }
    res
}

/// The answer at an enforced deadline.
fn deadline_response(grpc: bool) -> Response<()> {
    if grpc {
        grpc_status(4, "deadline exceeded")
    } else {
        let mut res = Response::new(());
        *res.status_mut() = StatusCode::GATEWAY_TIMEOUT;
        res
    }
}

pin_project! {
    /// The response future of [`RequestContext`]: the inner service's
    /// future, owning the request context's cancel guard.
    ///
    /// Dropped before it completes (hyper saw the client go away, an
    /// HTTP/2 stream was reset, an outer timeout gave up), it ends the
    /// context with [`RequestAbandoned`] and
    /// [`ResponseFutureDropped`](AbandonReason::ResponseFutureDropped)
    /// *before* the handler's future is dropped: contexts the handler
    /// derived (`let (ctx, _cancel) = goctx::with_timeout(&ctx, ..)`) end
    /// with the request's cause, as their Go counterparts inherit it, not
    /// with their own `CancelFunc`'s drop. Completed with a response, it
    /// hands the guard to the response's [`RequestContextBody`]; completed
    /// with an error, it ends the context with
    /// [`ServiceError`](AbandonReason::ServiceError).
    ///
    /// # Panics
    ///
    /// If polled again after it completed.
    #[must_use = "futures do nothing unless polled"]
    pub struct RequestContextFuture<F> {
        // `None` for an early answer, and once the handler was dropped
        // at an enforced deadline.
        #[pin]
        pub(super) inner: Option<F>,
        // The message of a gRPC INTERNAL answer given without calling the
        // inner service (made into a response when polled).
        pub(super) early: Option<String>,
        // Set when the deadline is enforced; `None` once it fired.
        pub(super) deadline: Option<DoneOwned>,
        pub(super) grpc: bool,
        pub(super) head: bool,
        // The `x-request-id` to echo; `Off` once the future completed.
        pub(super) echo: Echo,
        // `None` once the future completed.
        pub(super) guard: Option<Guard>,
    }

    impl<F> PinnedDrop for RequestContextFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            // End the context first; the handler's future (`inner`) is
            // dropped after this, by the field drops.
            if let Some(guard) = this.project().guard.take() {
                guard.abandon(AbandonReason::ResponseFutureDropped);
            }
        }
    }
}

impl<F> RequestContextFuture<F> {
    pub(super) fn early(message: String, guard: Guard) -> Self {
        RequestContextFuture {
            inner: None,
            early: Some(message),
            deadline: None,
            grpc: true,
            head: false,
            echo: Echo::Off,
            guard: Some(guard),
        }
    }
}

/// The response as the layer hands it on: its body owns `guard`, and it
/// carries the echoed request id.
fn finish<B: Body>(
    mut res: Response<Option<B>>,
    guard: Guard,
    echo: Echo,
    head: bool,
) -> Response<RequestContextBody<B>> {
    if let Some(id) = echo.header()
        && let header::Entry::Vacant(slot) =
            res.headers_mut().entry(crate::http::headers::X_REQUEST_ID)
    {
        slot.insert(id);
    }
    // hyper drops these bodies unread: nothing of them is sent, so
    // dropping them is their end.
    let status = res.status();
    let unread = head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    // hyper's HTTP/1 server stops polling a body once its declared length
    // is written; the body counts the bytes to know it was complete. An
    // exact size hint is that length (hyper writes it as the header); the
    // header is looked up only for bodies that do not know their size.
    let declared = if unread {
        Some(0)
    } else {
        match res.body().as_ref().map(|b| b.size_hint().exact()) {
            Some(Some(exact)) => Some(exact),
            _ => res
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok()),
        }
    };
    res.map(|body| RequestContextBody::new(body, guard, declared))
}

impl<F, B, E> Future for RequestContextFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<RequestContextBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(message) = this.early.take() {
            let guard = this
                .guard
                .take()
                .expect("RequestContextFuture polled after completion");
            let res = grpc_status(13, &message).map(|()| None::<B>);
            return Poll::Ready(Ok(finish(
                res,
                guard,
                std::mem::replace(this.echo, Echo::Off),
                true,
            )));
        }
        // The deadline first: when both are ready, the deadline wins, as
        // in `Ctx::run`.
        if let Some(done) = this.deadline.as_mut()
            && let Poll::Ready(err) = Pin::new(done).poll(cx)
        {
            *this.deadline = None;
            if err == Error::DeadlineExceeded {
                this.inner.set(None);
                let guard = this
                    .guard
                    .take()
                    .expect("RequestContextFuture polled after completion");
                let res = deadline_response(*this.grpc).map(|()| None::<B>);
                return Poll::Ready(Ok(finish(
                    res,
                    guard,
                    std::mem::replace(this.echo, Echo::Off),
                    true,
                )));
            }
        }
        let inner = this
            .inner
            .as_mut()
            .as_pin_mut()
            .expect("RequestContextFuture polled after completion");
        let result = ready!(inner.poll(cx));
        this.inner.set(None);
        let guard = this
            .guard
            .take()
            .expect("RequestContextFuture polled after completion");
        Poll::Ready(match result {
            Ok(res) => Ok(finish(
                res.map(Some),
                guard,
                std::mem::replace(this.echo, Echo::Off),
                *this.head,
            )),
            Err(err) => {
                guard.abandon(AbandonReason::ServiceError);
                Err(err)
            }
        })
    }
}

impl<F> fmt::Debug for RequestContextFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestContextFuture")
            .field("complete", &self.guard.is_none())
            .field("enforces_deadline", &self.deadline.is_some())
            .field("grpc", &self.grpc)
            .finish_non_exhaustive()
    }
}
