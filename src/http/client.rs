//! `PropagateLayer`: outgoing requests carry their context's deadline,
//! trace and request id, and end when the context does.
//!
//! The lifecycle, in ownership terms: the request's [`Ctx`] rides in its
//! extensions; [`Propagate::call`] reads it, writes the headers and hands
//! a [`DoneOwned`] of it to the [`PropagateFuture`], which races it with
//! the inner client's future; with the response, the same `DoneOwned`
//! moves into the [`PropagateBody`], which races it with every frame.
//! Whoever holds it when the context ends drops the inner future or body:
//! that drop is what makes hyper close the connection or reset the stream.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Request, Response, header};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::client_error::PropagateError;
use super::headers::{GRPC_TIMEOUT, TRACEPARENT, X_REQUEST_ID};
use super::propagate_body::PropagateBody;
use crate::future::DoneOwned;
use crate::propagation::{RequestId, TraceContext, decode_grpc_timeout, encode_grpc_timeout};
use crate::{Cause, Ctx, Error};

/// Attaches `ctx` to an outgoing request (in its extensions), for
/// [`PropagateLayer`] to find; the same as
/// `req.extensions_mut().insert(ctx.clone())`. Go:
/// `http.NewRequestWithContext`. A context already there is replaced.
///
/// # Examples
///
/// ```
/// let (ctx, _cancel) = goctx::with_cancel(&goctx::background());
/// let req = http::Request::get("http://127.0.0.1:1/").body(())?;
/// let req = goctx::http::with_context(req, &ctx);
/// assert!(req.extensions().get::<goctx::Ctx>().is_some());
/// # Ok::<(), http::Error>(())
/// ```
#[doc(alias = "NewRequestWithContext")]
pub fn with_context<B>(mut req: Request<B>, ctx: &Ctx) -> Request<B> {
    req.extensions_mut().insert(ctx.clone());
    req
}

/// A tower [`Layer`] for HTTP clients (hyper-util's legacy `Client`, any
/// `Service<http::Request<PropagateBody<B>>>`; for tonic's
/// `Channel`, whose body type is fixed, `goctx::tonic::PropagateLayer`
/// with the `tonic` feature): a request that
/// carries a [`Ctx`] in its extensions (see [`with_context`]) sends the
/// context's deadline, trace and request id, and ends when the context
/// does. Requests without one pass through untouched.
///
/// For a request with a context, the service:
///
/// 1. **fails at once if the context is done** (or its deadline passed),
///    without calling the inner service: nothing connects, nothing is
///    sent (Go's transport does the same);
/// 2. adds headers computed from the context at this moment:
///    - `grpc-timeout`: the time left until the context's deadline, on
///      gRPC requests (`content-type: application/grpc*`) and, with
///      [`grpc_timeout_for_http`](Self::grpc_timeout_for_http), on all
///      others; encoded by [`encode_grpc_timeout`] (rounded down, never
///      `0`);
///    - `traceparent` and `tracestate` from the context's
///      [`TraceContext`]: the same trace id and flags, this hop's span id
///      as the parent-id, `tracestate` verbatim; nothing if the context
///      has no trace;
///    - `x-request-id` from the context's [`RequestId`], if any;
/// 3. races the call with the context: if the context ends first, the
///    inner future is dropped (hyper then closes the HTTP/1 connection or
///    resets the HTTP/2 stream) and the call fails with the context's
///    error and cause;
/// 4. races every frame of the response body with the context the same
///    way ([`PropagateBody`]);
/// 5. races the request body too ([`PropagateBody`], the body type
///    the inner client sees): hyper's HTTP/2 client sends a request body
///    from a task of its own that outlives the response future, so a
///    streaming upload would go on after the call failed. When the context
///    ends, the body's producer is dropped and its next poll fails, which
///    makes hyper reset the stream (or close the HTTP/1 connection).
///
/// Headers the caller set win: a `traceparent` or `x-request-id` already
/// on the request is left as it is (an OpenTelemetry propagator may have
/// written it), and so is a valid `grpc-timeout` no longer than the
/// context's remaining time (tonic's `Request::set_timeout`); a longer or
/// malformed one is replaced, since the call ends at the context's
/// deadline anyway.
///
/// # On error
///
/// [`PropagateError::Context`] when the context ended first (step 1, 3 or
/// 4); [`PropagateError::Inner`] with the inner service's error, unless
/// the context was done by the time it came (then `Context`).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use tower::{Service, ServiceBuilder, ServiceExt};
/// use goctx::http::{PropagateLayer, with_context};
/// use hyper_util::{client::legacy::Client, rt::TokioExecutor};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // The client's body type is the layer's wrapper of the request's
/// // (`PropagateBody<String>`), inferred here.
/// let hyper = Client::builder(TokioExecutor::new()).build_http();
/// let mut client = ServiceBuilder::new().layer(PropagateLayer::new()).service(hyper);
///
/// let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), Duration::from_secs(2));
/// let req = http::Request::get("http://127.0.0.1:3000/").body(String::new())?;
/// let res = client.ready().await?.call(with_context(req, &ctx)).await?;
/// println!("{}", res.status());
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct PropagateLayer {
    /// Send `grpc-timeout` on requests that are not gRPC too.
    grpc_timeout_for_http: bool,
    /// Write the trace headers with OpenTelemetry's global propagator.
    #[cfg(feature = "opentelemetry")]
    opentelemetry: bool,
}

impl PropagateLayer {
    /// A layer with `grpc-timeout` on gRPC requests only.
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = goctx::http::PropagateLayer::new();
    /// # let _ = layer;
    /// ```
    pub fn new() -> Self {
        PropagateLayer::default()
    }

    /// Whether to send `grpc-timeout` on plain HTTP requests too. Off by
    /// default: there is no standard deadline header for HTTP (Go's client
    /// sends none), and a deadline tells a third party how long the caller
    /// will wait. Turn it on for calls between services that read it,
    /// such as servers with [`RequestContextLayer`](crate::http::RequestContextLayer).
    ///
    /// # Examples
    ///
    /// ```
    /// let internal = goctx::http::PropagateLayer::new().grpc_timeout_for_http(true);
    /// # let _ = internal;
    /// ```
    pub fn grpc_timeout_for_http(mut self, on: bool) -> Self {
        self.grpc_timeout_for_http = on;
        self
    }

    /// Whether to write the trace headers with OpenTelemetry's global
    /// `TextMapPropagator` (feature `opentelemetry`) instead of the
    /// built-in `traceparent`/`tracestate`: baggage, B3 or Jaeger headers
    /// go out as the application configured them. The context written is
    /// the request context's
    /// ([`otel_context`](crate::opentelemetry::otel_context)), or the
    /// current one when the caller started a span of that trace around
    /// the call (its span is then the parent). A `traceparent` the caller
    /// set on the request is kept, with nothing else written. Off by
    /// default.
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = goctx::http::PropagateLayer::new().opentelemetry(true);
    /// # let _ = layer;
    /// ```
    #[cfg(feature = "opentelemetry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
    pub fn opentelemetry(mut self, on: bool) -> Self {
        self.opentelemetry = on;
        self
    }

    /// Whether the OpenTelemetry setting is on (always off without the
    /// feature).
    fn otel(&self) -> bool {
        #[cfg(feature = "opentelemetry")]
        return self.opentelemetry;
        #[cfg(not(feature = "opentelemetry"))]
        false
    }
}

impl<S> Layer<S> for PropagateLayer {
    type Service = Propagate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Propagate {
            inner,
            grpc_timeout_for_http: self.grpc_timeout_for_http,
            otel: self.otel(),
        }
    }
}

/// The [`Service`] made by [`PropagateLayer`]; see there.
///
/// The inner client is called with the request body wrapped in a
/// [`PropagateBody`], so a hyper-util client behind it is built for
/// that body type. Built for the plain body instead
/// (`Client<HttpConnector, String>`), the client is not a service of the
/// wrapped requests, and the compiler says only that "the method `ready`
/// (or `call`) exists for `Propagate<Client<HttpConnector, String>>`, but
/// its trait bounds were not satisfied".
///
/// # Examples
///
/// ```
/// use goctx::http::PropagateBody;
/// use tower::Layer;
///
/// let hyper = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
///     .build_http::<PropagateBody<String>>();
/// let client = goctx::http::PropagateLayer::new().layer(hyper);
/// # let _ = client;
/// ```
#[derive(Clone, Debug)]
pub struct Propagate<S> {
    inner: S,
    grpc_timeout_for_http: bool,
    /// `PropagateLayer::opentelemetry`.
    otel: bool,
}

impl<S> Propagate<S> {
    /// The wrapped client.
    ///
    /// See the type's example.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped client, unwrapped.
    ///
    /// See the type's example.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Propagate<S>
where
    S: Service<Request<PropagateBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body,
{
    type Response = Response<PropagateBody<ResBody>>;
    type Error = PropagateError<S::Error>;
    type Future = PropagateFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(PropagateError::Inner)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let Some(ctx) = req.extensions().get::<Ctx>().cloned() else {
            let req = req.map(PropagateBody::new);
            return PropagateFuture::start(self.inner.call(req), None);
        };
        match prepare(
            &ctx,
            req.headers_mut(),
            self.grpc_timeout_for_http,
            None,
            self.otel,
        ) {
            // The inner service is not called: no connection, no request.
            Err((err, cause)) => PropagateFuture {
                inner: None,
                done: None,
                ctx: None,
                failed: Some(PropagateError::Context { err, cause }),
            },
            Ok(_) => {
                let req = req.map(|body| PropagateBody::watched(body, Some(&ctx)));
                PropagateFuture::start(self.inner.call(req), Some(ctx))
            }
        }
    }
}

/// gRPC-style requests: `content-type: application/grpc` and its
/// `+proto`, `+json`, `-web` variants.
fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Checks `ctx` and writes the outgoing headers (see [`PropagateLayer`]):
/// the time left until the deadline, or why the request must not be sent.
pub(crate) fn prepare(
    ctx: &Ctx,
    headers: &mut HeaderMap,
    grpc_timeout_for_http: bool,
    own_timeout: Option<Duration>,
    otel: bool,
) -> Result<Option<Duration>, (Error, Cause)> {
    if let Some(PropagateError::Context { err, cause }) = PropagateError::<()>::from_ctx(ctx) {
        return Err((err, cause));
    }
    // `from_ctx` saw the deadline in the future a moment ago; if it has
    // passed since, the budget is spent: never send `0`.
    let remaining = match ctx.deadline() {
        None => None,
        Some(at) => match at.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Some(left),
            _ => {
                let err = Error::DeadlineExceeded;
                return Err((err, err.into_cause()));
            }
        },
    };
    // The header carries the shortest budget the call enforces: the
    // context's, or the client's own timeout for this call if shorter.
    let budget = match (remaining, own_timeout) {
        (Some(left), Some(own)) => Some(left.min(own)),
        (left, own) => left.or(own.filter(|own| !own.is_zero())),
    };
    if let Some(left) = budget
        && (grpc_timeout_for_http || is_grpc(headers))
    {
        let callers_is_shorter = headers
            .get(GRPC_TIMEOUT)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| decode_grpc_timeout(v).ok())
            .is_some_and(|theirs| !theirs.is_zero() && theirs <= left);
        if !callers_is_shorter {
            // Digits and a unit letter: always a valid header value.
            if let Ok(value) = HeaderValue::from_str(&encode_grpc_timeout(left)) {
                headers.insert(GRPC_TIMEOUT, value);
            }
        }
    }
    if !headers.contains_key(TRACEPARENT) {
        #[cfg(feature = "opentelemetry")]
        if otel {
            super::otel::inject(ctx, headers);
        }
        #[cfg(not(feature = "opentelemetry"))]
        let _ = otel;
        if !otel && let Some(trace) = ctx.value::<TraceContext>() {
            trace.insert_into(headers);
        }
    }
    if !headers.contains_key(X_REQUEST_ID)
        && let Some(id) = ctx.value::<RequestId>()
    {
        headers.insert(X_REQUEST_ID, id.header_value());
    }
    Ok(remaining)
}

/// The context's error and cause, once `done` said it ended with `err`.
fn ended(ctx: Option<&Ctx>, err: Error) -> (Error, Cause) {
    let cause = ctx.and_then(Ctx::cause).unwrap_or_else(|| err.into_cause());
    (err, cause)
}

pin_project! {
    /// The response future of [`Propagate`]: the inner client's future,
    /// raced with the request's context.
    ///
    /// When the context ends first, the inner future is dropped at once
    /// and the output is [`PropagateError::Context`]; when both are ready
    /// in the same poll, the context wins (as in [`Ctx::run`]). Without a
    /// context it is the inner future, its body wrapped.
    ///
    /// # Panics
    ///
    /// If polled again after it completed.
    ///
    /// # Examples
    ///
    /// Any `Service<http::Request<B>>` can be the client; here a stand-in
    /// that counts its calls:
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use tower::{Service, ServiceExt, service_fn};
    /// use goctx::http::{PropagateLayer, PropagateBody, with_context};
    /// use tower::Layer;
    ///
    /// # futures::executor::block_on(async {
    /// let calls = AtomicUsize::new(0);
    /// let inner = service_fn(|_req: http::Request<PropagateBody<String>>| {
    ///     calls.fetch_add(1, Ordering::SeqCst);
    ///     async { Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hi"))) }
    /// });
    /// let mut client = PropagateLayer::new().layer(inner);
    ///
    /// let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    /// let req = || with_context(http::Request::new(String::new()), &ctx);
    /// let ok = client.ready().await?.call(req()).await;
    /// assert!(ok.is_ok());
    /// cancel.cancel();
    /// let err = client.ready().await?.call(req()).await;
    /// assert_eq!(err.err().and_then(|e| e.ctx_err()), Some(goctx::Error::Canceled));
    /// assert_eq!(calls.load(Ordering::SeqCst), 1, "a done context never reaches the client");
    /// # Ok::<(), goctx::http::PropagateError<std::convert::Infallible>>(())
    /// # }).unwrap();
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct PropagateFuture<F> {
        // `None` when the request was not sent, and once completed.
        #[pin]
        inner: Option<F>,
        // The race; `None` without a context, and once it moved to the body.
        done: Option<DoneOwned>,
        // For the cause; `None` without a context.
        ctx: Option<Ctx>,
        // Set when the context was done before sending; taken by the poll.
        failed: Option<PropagateError<std::convert::Infallible>>,
    }
}

impl<F> PropagateFuture<F> {
    fn start(inner: F, ctx: Option<Ctx>) -> Self {
        PropagateFuture {
            inner: Some(inner),
            done: ctx.as_ref().map(Ctx::done_owned),
            ctx,
            failed: None,
        }
    }
}

impl<F, B, E> Future for PropagateFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<PropagateBody<B>>, PropagateError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(PropagateError::Context { err, cause }) = this.failed.take() {
            return Poll::Ready(Err(PropagateError::Context { err, cause }));
        }
        // The context first: when both are ready, it wins.
        if let Some(done) = this.done.as_mut()
            && let Poll::Ready(err) = Pin::new(done).poll(cx)
        {
            // Dropping the client's future is how hyper learns to give up.
            this.inner.set(None);
            *this.done = None;
            let (err, cause) = ended(this.ctx.as_ref(), err);
            return Poll::Ready(Err(PropagateError::Context { err, cause }));
        }
        let inner = this
            .inner
            .as_mut()
            .as_pin_mut()
            .expect("PropagateFuture polled after completion");
        let result = ready!(inner.poll(cx));
        this.inner.set(None);
        let ctx = this.ctx.take();
        let done = this.done.take();
        Poll::Ready(match result {
            Ok(res) => Ok(res.map(|body| PropagateBody::racing(body, done, ctx))),
            Err(e) => Err(match &ctx {
                Some(ctx) => PropagateError::or_ctx(ctx, e),
                None => PropagateError::Inner(e),
            }),
        })
    }
}

impl<F> fmt::Debug for PropagateFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PropagateFuture")
            .field("ctx", &self.ctx)
            .field("sent", &self.failed.is_none())
            .finish_non_exhaustive()
    }
}
