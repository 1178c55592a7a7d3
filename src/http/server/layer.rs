//! `RequestContextLayer`: what a server's request contexts are made
//! with (the base, the timeouts, the headers honoured), and the layer
//! that wraps a service in [`RequestContext`].

use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

#[cfg(doc)]
use super::causes::{AbandonReason, RequestAbandoned, ResponseComplete};
#[cfg(doc)]
use super::request_body::RequestBody;
use super::service::RequestContext;
#[cfg(doc)]
use super::values::PeerAddr;
use crate::Ctx;
#[cfg(doc)]
use crate::Error;
#[cfg(doc)]
use crate::propagation::{RequestId, TraceContext};

/// A tower [`Layer`] that gives every request its own [`Ctx`], derived
/// from a base context, in the request's extensions; the context ends
/// when the response is complete or the client goes away, with a cause
/// that says which.
///
/// Per request, the service:
///
/// 1. derives `ctx` from the base with [`with_cancel_cause`](crate::with_cancel_cause),
///    or, when the request has a deadline, with [`with_timeout`](crate::with_timeout)
///    (one node either way): the base's values are visible, and canceling
///    the base (shutdown) ends every request in flight with the base's
///    cause;
/// 2. the deadline: the sooner of the peer's `grpc-timeout` and
///    `connect-timeout-ms`, clamped by [`max_timeout`](Self::max_timeout);
/// 3. adds the values [`RequestId`], [`TraceContext`] and (feature `axum`)
///    [`PeerAddr`];
/// 4. inserts `ctx` into the request's extensions (the `axum` feature's
///    extractor reads it from there; elsewhere,
///    `req.extensions().get::<goctx::Ctx>()`);
/// 5. hands the inner service the request body as a [`RequestBody`],
///    which ends `ctx` with [`RequestAbandoned`] (the connection closed,
///    the stream was reset) before a failed read returns its error;
/// 6. ends `ctx` with [`ResponseComplete`] once the response body is
///    complete, or with [`RequestAbandoned`] and its
///    [`reason`](RequestAbandoned::reason) if the response future or body
///    is dropped first (see `docs/http.md` for every trigger), always
///    before dropping the handler's future or body, so contexts the
///    handler derived inherit the cause;
/// 7. sends the request id back in the response's `x-request-id` (see
///    [`echo_request_id`](Self::echo_request_id)).
///
/// The first cancellation wins: a context ended by its deadline or by the
/// base keeps that error and cause.
///
/// # On error
///
/// - A malformed `grpc-timeout` on a gRPC request (`content-type:
///   application/grpc*`) is answered at once, without calling the inner
///   service, with HTTP 200 and `grpc-status: 13` (INTERNAL), as grpc-go
///   does. On other requests malformed deadline headers are ignored.
/// - With [`enforce_deadline`](Self::enforce_deadline), a request still
///   without a response at its deadline is answered with 504 (gRPC:
///   `grpc-status: 4`, DEADLINE_EXCEEDED), and the handler is dropped.
/// - An error from the inner service is passed through unchanged; the
///   context ends with [`RequestAbandoned`] ([`ServiceError`](AbandonReason::ServiceError)).
/// - An error from the request body reaches the inner service boxed
///   ([`BoxError`](crate::http::BoxError)), after the context ended.
///
/// # Examples
///
/// With the `axum` feature a handler takes `ctx: goctx::Ctx` directly;
/// without it, axum's `Extension` reads it just as well:
///
/// ```
/// use std::time::Duration;
/// use axum::{Extension, Router, routing::get};
/// use goctx::http::RequestContextLayer;
///
/// async fn handler(Extension(ctx): Extension<goctx::Ctx>) -> String {
///     // Live while the response is being produced; hand it to spawned
///     // work, `after_func` and outgoing calls.
///     format!("deadline: {:?}", ctx.deadline().is_some())
/// }
///
/// let (server_ctx, _shutdown) = goctx::with_cancel_cause(&goctx::background());
/// let app: Router = Router::new().route("/", get(handler)).layer(
///     RequestContextLayer::new(&server_ctx)
///         .max_timeout(Duration::from_secs(30))
///         .enforce_deadline(true),
/// );
/// # let _ = app;
/// ```
#[derive(Clone, Debug)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct RequestContextLayer {
    config: Arc<Config>,
}

/// What a layer was built with. Immutable once the layer wraps a service.
#[derive(Clone, Debug)]
pub(super) struct Config {
    /// Every request context derives from it.
    pub(super) base: Ctx,
    /// Upper bound on every request's timeout.
    pub(super) max_timeout: Option<Duration>,
    /// Answer 504 / DEADLINE_EXCEEDED at the deadline.
    pub(super) enforce_deadline: bool,
    /// Ignore inbound `traceparent`/`tracestate`.
    pub(super) restart_trace: bool,
    /// Send the request id back in the response's `x-request-id`.
    pub(super) echo_request_id: bool,
    /// Read the trace from OpenTelemetry (global propagator or current
    /// span) and record early ends on its span; the tracer that makes the
    /// server span when no outer layer did, taken from the global
    /// provider when the setting was turned on.
    #[cfg(feature = "opentelemetry")]
    pub(super) opentelemetry: Option<Arc<super::otel::ServerTracer>>,
}

impl RequestContextLayer {
    /// A layer whose request contexts derive from `base` (Go's
    /// `Server.BaseContext`): values in `base` are visible in every
    /// request, and canceling `base` ends every request in flight with
    /// `base`'s cause. Pass [`background()`](crate::background) for none.
    ///
    /// By default: no timeout of the server's own, inbound deadline
    /// headers honoured but not enforced, inbound traces continued.
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = goctx::http::RequestContextLayer::new(&goctx::background());
    /// # let _ = layer;
    /// ```
    pub fn new(base: &Ctx) -> Self {
        RequestContextLayer {
            config: Arc::new(Config {
                base: base.clone(),
                max_timeout: None,
                enforce_deadline: false,
                restart_trace: false,
                echo_request_id: true,
                #[cfg(feature = "opentelemetry")]
                opentelemetry: None,
            }),
        }
    }

    /// Bounds every request's timeout by `max`: a request with a longer
    /// deadline header, or none, gets `max`. A peer can only shorten its
    /// own request.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let layer = goctx::http::RequestContextLayer::new(&goctx::background())
    ///     .max_timeout(Duration::from_secs(30));
    /// # let _ = layer;
    /// ```
    pub fn max_timeout(mut self, max: Duration) -> Self {
        Arc::make_mut(&mut self.config).max_timeout = Some(max);
        self
    }

    /// Whether to answer for the handler at the deadline: when the
    /// request's context ends with [`DeadlineExceeded`](Error::DeadlineExceeded)
    /// before the handler returned a response, the handler's future is
    /// dropped and the client gets 504 Gateway Timeout (gRPC requests:
    /// HTTP 200 with `grpc-status: 4`, trailers-only). Off by default: the
    /// handler sees its context end and answers as it likes.
    ///
    /// Only the response's head is covered: a body already streaming goes
    /// on (its context is done, so a body that watches it ends).
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = goctx::http::RequestContextLayer::new(&goctx::background())
    ///     .enforce_deadline(true);
    /// # let _ = layer;
    /// ```
    pub fn enforce_deadline(mut self, enforce: bool) -> Self {
        Arc::make_mut(&mut self.config).enforce_deadline = enforce;
        self
    }

    /// Whether to start a new trace for every request, ignoring inbound
    /// `traceparent` and `tracestate`: for a server at a trust boundary
    /// (the W3C spec's "front gate"), where callers' trace ids and
    /// sampling flags are not to be believed. Off by default.
    ///
    /// # Examples
    ///
    /// ```
    /// let edge = goctx::http::RequestContextLayer::new(&goctx::background())
    ///     .restart_trace(true);
    /// # let _ = edge;
    /// ```
    pub fn restart_trace(mut self, restart: bool) -> Self {
        Arc::make_mut(&mut self.config).restart_trace = restart;
        self
    }

    /// Whether to send the request's id back in the response's
    /// `x-request-id` header, so a `curl -i` user can find their request
    /// in the logs (tower-http's `PropagateRequestIdLayer` does the same):
    /// the inbound id when the client sent a valid one; otherwise the id
    /// the layer made, if anything read it (a request's [`RequestId`] is
    /// made on first read, so an id no log line or outgoing call used is
    /// neither made nor sent). A response that already has the header
    /// keeps its own. On by default.
    ///
    /// # Examples
    ///
    /// ```
    /// let quiet = goctx::http::RequestContextLayer::new(&goctx::background())
    ///     .echo_request_id(false);
    /// # let _ = quiet;
    /// ```
    pub fn echo_request_id(mut self, echo: bool) -> Self {
        Arc::make_mut(&mut self.config).echo_request_id = echo;
        self
    }

    /// Whether to take the request's trace from OpenTelemetry (feature
    /// `opentelemetry`). Off by default: the built-in W3C code.
    ///
    /// On, the request context carries an OpenTelemetry context
    /// ([`otel_context`](crate::opentelemetry::otel_context)) whose span is
    /// the request's server span:
    ///
    /// - the span current as the request comes in, when an OpenTelemetry
    ///   or `tracing` layer outside this one made it (and
    ///   tracing-opentelemetry activates it): the [`TraceContext`] takes
    ///   its ids, no span is made, and that layer decides the parent
    ///   ([`restart_trace`](Self::restart_trace) does not apply);
    /// - otherwise one the layer makes with the global tracer, as Go's
    ///   otelhttp handler does: named after the method, with
    ///   `http.request.method` and `url.path`, its parent read from the
    ///   headers by the global `TextMapPropagator`
    ///   (`opentelemetry::global::set_text_map_propagator`, or
    ///   `OTEL_PROPAGATORS` through the SDK: W3C, baggage, B3, Jaeger;
    ///   when it finds no parent, as OpenTelemetry's default no-op
    ///   propagator never does, the W3C `traceparent` as the layer reads it
    ///   without OpenTelemetry), ended when the request context ends. The tracer is the global
    ///   provider's when this is called: set the provider first (as any
    ///   instrumentation taking `global::tracer` needs). Without a tracer
    ///   provider (the API's no-op), there is no span: the trace context
    ///   is goctx's own.
    ///
    /// When the request context ends with anything but
    /// [`ResponseComplete`] (abandoned, its deadline, the server's
    /// shutdown), the layer records why on that span
    /// ([`record_end`](crate::opentelemetry::record_end)) as the response
    /// ends. An outer layer's span must still be open then: tower-http's
    /// `TraceLayer` keeps it until the response body ends; a span entered
    /// only around the handler's future (`.instrument(span)` in a
    /// middleware) is closed once the head is sent, so a deadline's 504
    /// or a client leaving mid-body is not recorded on it.
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = goctx::http::RequestContextLayer::new(&goctx::background())
    ///     .opentelemetry(true);
    /// # let _ = layer;
    /// ```
    #[cfg(feature = "opentelemetry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
    pub fn opentelemetry(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.config).opentelemetry =
            on.then(|| Arc::new(super::otel::ServerTracer::from_global()));
        self
    }
}

impl<S> Layer<S> for RequestContextLayer {
    type Service = RequestContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestContext {
            inner,
            config: self.config.clone(),
        }
    }
}
