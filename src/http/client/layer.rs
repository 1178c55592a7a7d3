//! `PropagateLayer`: how outgoing requests carry their context (which
//! headers, and how they are written), and the layer that wraps a client
//! in [`Propagate`].

use tower_layer::Layer;

#[cfg(doc)]
use super::body::PropagateBody;
#[cfg(doc)]
use super::error::PropagateError;
#[cfg(doc)]
use super::outgoing::with_context;
use super::service::Propagate;
#[cfg(doc)]
use crate::Ctx;
#[cfg(doc)]
use crate::propagation::{RequestId, TraceContext, encode_grpc_timeout};

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
