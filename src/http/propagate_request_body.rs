//! `PropagateRequestBody`: an outgoing request body that stops when its
//! context ends.
//!
//! hyper's HTTP/2 client pipes a request body to the connection from a
//! task of its own, which keeps polling the body after the response future
//! is dropped; only a body error makes it reset the stream. So ending the
//! context must end the body: the next poll fails with the context's error,
//! the producer is dropped, and hyper resets the stream (HTTP/2) or closes
//! the connection (HTTP/1).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::client_error::PropagateError;
use super::watch::poll_watched;
use crate::{Ctx, DoneOwned};

pin_project! {
    /// The request body as [`Propagate`](crate::http::Propagate) hands it to
    /// the client: the caller's body, raced with the request's context.
    ///
    /// While the context is live, frames, errors (as
    /// [`PropagateError::Inner`]), `size_hint` and `is_end_stream` are the
    /// inner body's. Once it ends, the next poll drops the inner body (a
    /// stream's producer learns at once) and fails with
    /// [`PropagateError::Context`], which makes hyper reset the HTTP/2
    /// stream or close the HTTP/1 connection. A request without a context,
    /// or whose body was complete from the start, is not watched.
    ///
    /// # Examples
    ///
    /// A hyper-util client behind [`PropagateLayer`](crate::http::PropagateLayer)
    /// takes this body type (inferred when the client is built in place):
    ///
    /// ```
    /// use bytes::Bytes;
    /// use goctx::http::{Propagate, PropagateLayer, PropagateRequestBody};
    /// use http_body_util::Full;
    /// use hyper_util::client::legacy::{Client, connect::HttpConnector};
    /// use hyper_util::rt::TokioExecutor;
    /// use tower::Layer;
    ///
    /// let hyper: Client<HttpConnector, PropagateRequestBody<Full<Bytes>>> =
    ///     Client::builder(TokioExecutor::new()).build_http();
    /// let client: Propagate<_> = PropagateLayer::new().layer(hyper);
    /// # let _ = client;
    /// ```
    pub struct PropagateRequestBody<B> {
        // `None` once the context ended the body.
        #[pin]
        inner: Option<B>,
        // The race; `None` when not watched, and once the body ended.
        done: Option<DoneOwned>,
        // For the cause; `None` when not watched.
        ctx: Option<Ctx>,
    }
}

impl<B: Body> PropagateRequestBody<B> {
    /// `inner`, watched by no context: for sending a request on the same
    /// client without going through [`Propagate`](crate::http::Propagate).
    pub fn new(inner: B) -> Self {
        PropagateRequestBody::watched(inner, None)
    }

    /// `inner`, watched by `ctx` unless it is already complete.
    pub(super) fn watched(inner: B, ctx: Option<&Ctx>) -> Self {
        let ctx = ctx.filter(|_| !inner.is_end_stream()).cloned();
        PropagateRequestBody {
            inner: Some(inner),
            done: ctx.as_ref().map(Ctx::done_owned),
            ctx,
        }
    }
}

impl<B> PropagateRequestBody<B> {
    /// The inner body, unless the context already ended it.
    pub fn get_ref(&self) -> Option<&B> {
        self.inner.as_ref()
    }
}

impl<B: Body> Body for PropagateRequestBody<B> {
    type Data = B::Data;
    type Error = PropagateError<B::Error>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        poll_watched(this.inner, this.done, this.ctx.as_ref(), cx)
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

impl<B> fmt::Debug for PropagateRequestBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PropagateRequestBody")
            .field("ctx", &self.ctx)
            .field("ended_by_ctx", &self.inner.is_none())
            .finish_non_exhaustive()
    }
}
