//! `PropagateLayer` for tonic clients: [`crate::http::PropagateLayer`]
//! over a tonic `Channel`, with tonic's body type kept and errors as
//! [`Status`].

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use tonic::Status;
use tonic::body::Body;
use tower_layer::Layer;
use tower_service::Service;

use crate::http::{PropagateBody, PropagateFuture as HttpPropagateFuture};

type BoxError = Box<dyn StdError + Send + Sync>;

/// A tower [`Layer`] for a tonic client's channel: every call whose
/// `tonic::Request` carries a [`Ctx`](crate::Ctx) (made by
/// [`request`](super::request)) sends the context's deadline
/// (`grpc-timeout`), trace and request id, fails fast when the context is
/// already done, and ends when it does: before the response (the call is
/// dropped), while a response stream is read, and while a request stream
/// is sent (the stream's producer is dropped and the HTTP/2 stream is
/// reset, so the server's handler sees its client leave).
///
/// The service's errors are [`Status`]es: a call ended by its context is
/// `CANCELLED` or `DEADLINE_EXCEEDED` with the cause in its message (see
/// [`status`](super::status)); transport errors are mapped as tonic maps
/// them.
///
/// # Examples
///
/// A generated client takes the layered channel in place of the channel
/// (docs/http.md, "gRPC (tonic)", has a whole client and server):
///
/// ```
/// use goctx::tonic::{Propagate, PropagateLayer};
/// use tower::Layer;
///
/// /// What to hand `HealthClient::new` (or any generated client) instead
/// /// of the `tonic::transport::Channel` itself.
/// fn with_contexts<C>(channel: C) -> Propagate<C> {
///     PropagateLayer::new().layer(channel)
/// }
/// # let _ = with_contexts(());
/// // Then each call carries its context:
/// // client.check(goctx::tonic::request(&ctx, message)).await?
/// ```
#[derive(Clone, Copy, Debug, Default)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct PropagateLayer {
    _private: (),
}

impl PropagateLayer {
    /// The layer.
    pub fn new() -> Self {
        PropagateLayer::default()
    }
}

impl<S> Layer<S> for PropagateLayer {
    type Service = Propagate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Propagate {
            inner: crate::http::PropagateLayer::new().layer(TonicBody(inner)),
        }
    }
}

/// The [`Service`] made by [`PropagateLayer`]; see there.
#[derive(Clone, Debug)]
pub struct Propagate<S> {
    inner: crate::http::Propagate<TonicBody<S>>,
}

impl<S> Propagate<S> {
    /// The wrapped channel.
    pub fn get_ref(&self) -> &S {
        &self.inner.get_ref().0
    }

    /// The wrapped channel, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner.into_inner().0
    }
}

impl<S, ResBody> Service<Request<Body>> for Propagate<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Status;
    type Future = PropagateFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Status::from)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        PropagateFuture {
            inner: self.inner.call(req),
        }
    }
}

/// Puts the watched request body back into tonic's body type, which a
/// `Channel` requires.
#[derive(Clone, Debug)]
struct TonicBody<S>(S);

impl<S> Service<Request<PropagateBody<Body>>> for TonicBody<S>
where
    S: Service<Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<PropagateBody<Body>>) -> Self::Future {
        self.0.call(req.map(Body::new))
    }
}

pin_project! {
    /// The response future of [`Propagate`]: the call, raced with its
    /// context; errors as [`Status`].
    #[must_use = "futures do nothing unless polled"]
    pub struct PropagateFuture<F> {
        #[pin]
        inner: HttpPropagateFuture<F>,
    }
}

impl<F, ResBody, E> Future for PropagateFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    E: Into<BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, Status>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = ready!(self.project().inner.poll(cx));
        Poll::Ready(match result {
            Ok(res) => Ok(res.map(|body| Body::new(StatusBody { inner: body }))),
            Err(err) => Err(Status::from(err)),
        })
    }
}

impl<F> fmt::Debug for PropagateFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PropagateFuture")
            .field("inner", &self.inner)
            .finish()
    }
}

pin_project! {
    /// A response body raced with the context, its errors as statuses
    /// (so tonic keeps the code instead of making it `UNKNOWN`).
    struct StatusBody<B> {
        #[pin]
        inner: PropagateBody<B>,
    }
}

impl<B> http_body::Body for StatusBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let frame = ready!(self.project().inner.poll_frame(cx));
        Poll::Ready(frame.map(|f| f.map_err(Status::from)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
