//! `PropagateBody`: a body raced with its request's context, frame by
//! frame, in either direction of a client call.
//!
//! The response body a client reads, and the request body hyper's client
//! sends: hyper's HTTP/2 client sends a request body from a task of its
//! own, which keeps polling after the response future is dropped, so a
//! streaming upload would go on after the call failed unless its body
//! stops too.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::error::PropagateError;
use crate::Ctx;
use crate::future::DoneOwned;

pin_project! {
    /// A body of a call through [`Propagate`](crate::http::Propagate),
    /// raced with the request's context: the response body the caller
    /// reads, and the request body the inner client sends (so the client
    /// is a `Service<http::Request<PropagateBody<B>>>`).
    ///
    /// The first poll after the context ended drops the inner body and
    /// yields one [`PropagateError::Context`]; polls after that yield
    /// `None`. Dropping it is what makes hyper give up: for a response, it
    /// closes the HTTP/1 connection (which cannot be reused with a body half
    /// read) or resets the HTTP/2 stream; for a request, the producer of a
    /// streaming upload learns at once and hyper resets the stream. Once
    /// the inner body ended, the context no longer matters. Frames, the
    /// inner body's errors ([`PropagateError::Inner`], or `Context` if
    /// the context was done by then), `size_hint` and `is_end_stream` are
    /// the inner body's. Without a context it is the inner body.
    ///
    /// # Examples
    ///
    /// ```
    /// use http_body_util::BodyExt;
    /// use tower::{ServiceExt, service_fn};
    /// use goctx::http::{PropagateLayer, PropagateBody, with_context};
    /// use tower::Layer;
    ///
    /// # futures::executor::block_on(async {
    /// let inner = service_fn(|_req: http::Request<PropagateBody<String>>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("a long body")))
    /// });
    /// let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    /// let req = with_context(http::Request::new(String::new()), &ctx);
    /// let res = PropagateLayer::new().layer(inner).oneshot(req).await?;
    /// let mut body = res.into_body();
    /// cancel.cancel_with_cause("reader gave up");
    /// let err = body.frame().await.ok_or("a frame")?.err().ok_or("an error")?;
    /// assert_eq!(err.cause().map(|c| c.to_string()).as_deref(), Some("reader gave up"));
    /// assert!(body.frame().await.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// A hyper-util client behind the layer is built for this body type
    /// (inferred when the client is built in place):
    ///
    /// ```
    /// use bytes::Bytes;
    /// use goctx::http::{Propagate, PropagateLayer, PropagateBody};
    /// use http_body_util::Full;
    /// use hyper_util::client::legacy::{Client, connect::HttpConnector};
    /// use hyper_util::rt::TokioExecutor;
    /// use tower::Layer;
    ///
    /// let hyper: Client<HttpConnector, PropagateBody<Full<Bytes>>> =
    ///     Client::builder(TokioExecutor::new()).build_http();
    /// let client: Propagate<_> = PropagateLayer::new().layer(hyper);
    /// # let _ = client;
    /// ```
    pub struct PropagateBody<B> {
        // `None` once the context ended the body.
        #[pin]
        inner: Option<B>,
        // The race; `None` when not watched, and once the body ended.
        done: Option<DoneOwned>,
        // For the cause; `None` when not watched.
        ctx: Option<Ctx>,
    }
}

impl<B> PropagateBody<B> {
    /// `inner`, watched by no context: for sending a request on the same
    /// client without going through [`Propagate`](crate::http::Propagate).
    pub fn new(inner: B) -> Self {
        PropagateBody::racing(inner, None, None)
    }

    /// `inner` raced with `done`, the cause read from `ctx`.
    pub(super) fn racing(inner: B, done: Option<DoneOwned>, ctx: Option<Ctx>) -> Self {
        PropagateBody {
            inner: Some(inner),
            done,
            ctx,
        }
    }

    /// The inner body, unless the context already ended it.
    pub fn get_ref(&self) -> Option<&B> {
        self.inner.as_ref()
    }
}

impl<B: Body> PropagateBody<B> {
    /// `inner`, watched by `ctx` unless it is already complete.
    pub(super) fn watched(inner: B, ctx: Option<&Ctx>) -> Self {
        let ctx = ctx.filter(|_| !inner.is_end_stream()).cloned();
        let done = ctx.as_ref().map(Ctx::done_owned);
        PropagateBody::racing(inner, done, ctx)
    }
}

impl<B: Body> Body for PropagateBody<B> {
    type Data = B::Data;
    type Error = PropagateError<B::Error>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        // The context first: when both are ready, it wins.
        if let Some(done) = this.done.as_mut()
            && let Poll::Ready(err) = Pin::new(done).poll(cx)
        {
            this.inner.set(None);
            *this.done = None;
            let cause = this
                .ctx
                .as_ref()
                .and_then(Ctx::cause)
                .unwrap_or_else(|| err.into_cause());
            return Poll::Ready(Some(Err(PropagateError::Context { err, cause })));
        }
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        Poll::Ready(match ready!(inner.poll_frame(cx)) {
            // The end: stop watching the context (unregisters the waker).
            None => {
                *this.done = None;
                None
            }
            Some(Ok(frame)) => Some(Ok(frame)),
            Some(Err(e)) => Some(Err(match this.ctx.as_ref() {
                Some(ctx) if this.done.is_some() => PropagateError::or_ctx(ctx, e),
                _ => PropagateError::Inner(e),
            })),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(B::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), B::size_hint)
    }
}

impl<B> fmt::Debug for PropagateBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PropagateBody")
            .field("ctx", &self.ctx)
            .field("aborted", &self.inner.is_none())
            .finish_non_exhaustive()
    }
}
