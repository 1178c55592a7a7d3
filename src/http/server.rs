//! `RequestContextLayer`: a request context per request, ended by the
//! response's completion or the client's departure.
//!
//! The lifecycle, in ownership terms: [`Guard`] owns the request
//! context's `CancelFunc`. The [`RequestContextFuture`] holds it while the
//! handler runs; when the handler returns a response, the guard moves
//! into the [`RequestContextBody`]. Whoever holds it last decides the
//! cause: the end of the body cancels with [`ResponseComplete`]; dropping
//! the future or the body earlier cancels with [`RequestAbandoned`].

use std::any::{Any, TypeId};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, OnceLock};
use std::task::{Context, Poll, ready};

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::causes::AbandonReason;
#[cfg(doc)]
use super::causes::{RequestAbandoned, ResponseComplete};
use super::guard::Guard;
use super::request_body::RequestBody;
use super::response_body::RequestContextBody;
use crate::future::DoneOwned;
use crate::propagation::values::{Extra, LazyRequestId, Values};
use crate::propagation::{
    InvalidTimeout, RequestId, TraceContext, decode_connect_timeout_ms, decode_grpc_timeout,
};
use crate::tree::key_bit;
use crate::{Ctx, Error};

/// The peer's address, carried as a context value when the server knows
/// it. With the `axum` feature, [`RequestContextLayer`] adds it from
/// axum's `ConnectInfo<SocketAddr>` (a server started with
/// `into_make_service_with_connect_info::<SocketAddr>()`); Go's
/// `http.LocalAddrContextKey` is the counterpart on the other end.
///
/// # Examples
///
/// ```
/// use goctx::http::PeerAddr;
///
/// let addr = PeerAddr(([127, 0, 0, 1], 4242).into());
/// let ctx = goctx::with_value(&goctx::background(), addr);
/// assert_eq!(ctx.value::<PeerAddr>().map(|a| a.0.port()), Some(4242));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

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
struct Config {
    /// Every request context derives from it.
    base: Ctx,
    /// Upper bound on every request's timeout.
    max_timeout: Option<Duration>,
    /// Answer 504 / DEADLINE_EXCEEDED at the deadline.
    enforce_deadline: bool,
    /// Ignore inbound `traceparent`/`tracestate`.
    restart_trace: bool,
    /// Send the request id back in the response's `x-request-id`.
    echo_request_id: bool,
    /// Read the trace from OpenTelemetry (global propagator or current
    /// span) and record early ends on its span; the tracer that makes the
    /// server span when no outer layer did, taken from the global
    /// provider when the setting was turned on.
    #[cfg(feature = "opentelemetry")]
    opentelemetry: Option<Arc<super::otel::ServerTracer>>,
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

/// The [`Service`] made by [`RequestContextLayer`]; see there.
///
/// # Examples
///
/// Wrapping a service by hand (`Router::layer` does this for axum):
///
/// ```
/// use tower::Layer;
///
/// let layer = goctx::http::RequestContextLayer::new(&goctx::background());
/// let service: goctx::http::RequestContext<axum::Router> = layer.layer(axum::Router::new());
/// # let _ = service;
/// ```
#[derive(Clone, Debug)]
pub struct RequestContext<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestContext<S>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body,
    ResBody: Body,
{
    type Response = Response<RequestContextBody<ResBody>>;
    type Error = S::Error;
    type Future = RequestContextFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        // One pass over the headers instead of a hashed lookup per name:
        // cheaper for the few headers a request usually has.
        let inbound = Inbound::scan(req.headers());
        let grpc = inbound.grpc;
        let head = req.method() == Method::HEAD;
        let peer_timeout = match inbound.timeout(grpc) {
            Ok(timeout) => timeout,
            Err(err) => {
                let msg = format!("malformed grpc-timeout: {err}");
                let (_, cancel) = crate::with_cancel_cause(&config.base);
                return RequestContextFuture::early(msg, Guard::new(cancel));
            }
        };
        // One node: the request's own, with the deadline if it has one
        // (rather than a deadline child of it: a node fewer per request).
        let (mut ctx, cancel) = match min_timeout(peer_timeout, config.max_timeout) {
            Some(timeout) => crate::with_timeout(&config.base, timeout),
            None => crate::with_cancel_cause(&config.base),
        };
        #[cfg(feature = "opentelemetry")]
        let otel = config.opentelemetry.as_deref().map(|tracer| {
            super::otel::server_context(
                tracer,
                req.method(),
                req.uri(),
                req.headers(),
                inbound.traceparent,
                config.restart_trace,
            )
        });
        #[cfg(not(feature = "opentelemetry"))]
        let otel: Option<((), TraceContext, bool)> = None;
        #[cfg_attr(not(feature = "opentelemetry"), allow(unused_mut))]
        let mut guard = Guard::new(cancel);
        let (otel, trace, owns_span) = match otel {
            Some((otel, trace, owned)) => (Some(otel), trace, owned),
            None if config.restart_trace => (None, TraceContext::new_root(), false),
            None => (
                None,
                TraceContext::from_parent_header(inbound.traceparent, req.headers()),
                false,
            ),
        };
        #[cfg(not(feature = "opentelemetry"))]
        let _ = owns_span;
        #[cfg(feature = "axum")]
        let peer = req
            .extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|info| PeerAddr(info.0));
        #[cfg(not(feature = "axum"))]
        let peer: Option<PeerAddr> = None;
        // The client's id if valid; otherwise one is made when first read.
        let inbound_id = inbound
            .request_id
            .and_then(|v| v.to_str().ok())
            .and_then(RequestId::parse);
        // What to echo: `None` when off; the client's own value, shared
        // rather than copied; or (`Some(None)`) the id made, if it is.
        let echo = config
            .echo_request_id
            .then(|| inbound_id.as_ref().and(inbound.request_id).cloned());
        let id = LazyRequestId(inbound_id.map_or_else(OnceLock::new, OnceLock::from));
        // One node for the three values (as three `with_value`s would read).
        let extra = RequestExtra {
            peer,
            #[cfg(feature = "opentelemetry")]
            otel: otel.map(crate::opentelemetry::Carried),
        };
        #[cfg(not(feature = "opentelemetry"))]
        let _ = otel;
        ctx = Values { id, trace, extra }.attach(&ctx);
        #[cfg(feature = "opentelemetry")]
        if config.opentelemetry.is_some() {
            guard.record_on(ctx.clone(), owns_span);
        }
        let echo = match echo {
            None => Echo::Off,
            Some(Some(value)) => Echo::Inbound(value),
            Some(None) => Echo::Made(ctx.clone()),
        };
        let deadline =
            (config.enforce_deadline && ctx.deadline().is_some()).then(|| ctx.done_owned());
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(ctx);
        let body = RequestBody::new(body, || guard.handle());
        RequestContextFuture {
            inner: Some(self.inner.call(Request::from_parts(parts, body))),
            early: None,
            deadline,
            grpc,
            head,
            echo,
            guard: Some(guard),
        }
    }
}

/// The request id a response echoes.
enum Echo {
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

/// The request's values beyond the id and the trace, in the same node.
struct RequestExtra {
    peer: Option<PeerAddr>,
    /// With `RequestContextLayer::opentelemetry`.
    #[cfg(feature = "opentelemetry")]
    otel: Option<crate::opentelemetry::Carried>,
}

impl Extra for RequestExtra {
    fn key_bits(&self) -> u64 {
        static PEER: LazyLock<u64> = LazyLock::new(|| key_bit(TypeId::of::<PeerAddr>()));
        #[cfg_attr(not(feature = "opentelemetry"), allow(unused_mut))]
        let mut bits = if self.peer.is_some() { *PEER } else { 0 };
        #[cfg(feature = "opentelemetry")]
        if self.otel.is_some() {
            static OTEL: LazyLock<u64> =
                LazyLock::new(|| key_bit(TypeId::of::<crate::opentelemetry::Carried>()));
            bits |= *OTEL;
        }
        bits
    }

    fn get(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)> {
        if key == TypeId::of::<PeerAddr>() {
            return self
                .peer
                .as_ref()
                .map(|peer| peer as &(dyn Any + Send + Sync));
        }
        #[cfg(feature = "opentelemetry")]
        if key == TypeId::of::<crate::opentelemetry::Carried>() {
            return self
                .otel
                .as_ref()
                .map(|otel| otel as &(dyn Any + Send + Sync));
        }
        None
    }

    fn fmt_names(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.peer.is_some() {
            write!(f, ".WithValue({})", std::any::type_name::<PeerAddr>())?;
        }
        #[cfg(feature = "opentelemetry")]
        if self.otel.is_some() {
            f.write_str(".WithValue(opentelemetry::Context)")?;
        }
        Ok(())
    }
}

/// What the layer reads from a request's headers, found in one pass.
struct Inbound<'a> {
    /// A gRPC-style request: `content-type: application/grpc` and its
    /// `+proto`, `+json`, `-web` variants.
    grpc: bool,
    grpc_timeout: Option<&'a HeaderValue>,
    connect_timeout: Option<&'a HeaderValue>,
    request_id: Option<&'a HeaderValue>,
    /// The `traceparent` header if there is exactly one.
    traceparent: Option<&'a HeaderValue>,
}

impl<'a> Inbound<'a> {
    /// The first value of each header of interest (as `HeaderMap::get`
    /// finds it); `traceparent` only if it is not repeated.
    fn scan(headers: &'a HeaderMap) -> Inbound<'a> {
        let mut content_type = None;
        let mut grpc_timeout = None;
        let mut connect_timeout = None;
        let mut request_id = None;
        let mut traceparent = None;
        let mut traceparents = 0;
        for (name, value) in headers {
            // Header names are lowercase in `HeaderName`.
            let slot = match name.as_str() {
                "content-type" => &mut content_type,
                "grpc-timeout" => &mut grpc_timeout,
                "connect-timeout-ms" => &mut connect_timeout,
                "x-request-id" => &mut request_id,
                "traceparent" => {
                    traceparents += 1;
                    &mut traceparent
                }
                _ => continue,
            };
            slot.get_or_insert(value);
        }
        Inbound {
            grpc: content_type.is_some_and(|v| v.as_bytes().starts_with(b"application/grpc")),
            grpc_timeout,
            connect_timeout,
            request_id,
            traceparent: traceparent.filter(|_| traceparents == 1),
        }
    }

    /// The peer's timeout: the sooner of `grpc-timeout` and
    /// `connect-timeout-ms`. A malformed `grpc-timeout` is an error on
    /// gRPC requests; every other malformed value is ignored.
    fn timeout(&self, grpc: bool) -> Result<Option<Duration>, InvalidTimeout> {
        let grpc_timeout = match self.grpc_timeout {
            None => None,
            Some(value) => match value
                .to_str()
                .map_err(|_| InvalidTimeout::Digits)
                .and_then(decode_grpc_timeout)
            {
                Ok(timeout) => Some(timeout),
                Err(err) if grpc => return Err(err),
                Err(_) => None,
            },
        };
        let connect_timeout = self
            .connect_timeout
            .and_then(|v| v.to_str().ok())
            .and_then(|v| decode_connect_timeout_ms(v).ok());
        Ok(min_timeout(grpc_timeout, connect_timeout))
    }
}

fn min_timeout(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
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
        inner: Option<F>,
        // The message of a gRPC INTERNAL answer given without calling the
        // inner service (made into a response when polled).
        early: Option<String>,
        // Set when the deadline is enforced; `None` once it fired.
        deadline: Option<DoneOwned>,
        grpc: bool,
        head: bool,
        // The `x-request-id` to echo; `Off` once the future completed.
        echo: Echo,
        // `None` once the future completed.
        guard: Option<Guard>,
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
    fn early(message: String, guard: Guard) -> Self {
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
        && let header::Entry::Vacant(slot) = res.headers_mut().entry(super::headers::X_REQUEST_ID)
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
