//! The server on OpenTelemetry (features `http` and `opentelemetry`):
//! the request context on the server span an outer layer made, or on one
//! the layer makes (its parent read by the global `TextMapPropagator`).

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderMap, HeaderValue, Method, Uri};
use opentelemetry::KeyValue;
use opentelemetry::global::{self, BoxedTracer};
use opentelemetry::trace::{Span, SpanBuilder, SpanKind, TraceContextExt, Tracer};

use crate::opentelemetry::{ReadAdapter, span_context_of, trace_context_of};
use crate::propagation::TraceContext;

/// The tracer a layer makes server spans with, and whether it turned out
/// to be the API's no-op (which makes no span: its "span" is the parent's
/// context), so that the work of building one is skipped from then on.
pub(super) struct ServerTracer {
    /// Unwind safe as asserted: only called, never left half changed here.
    tracer: std::panic::AssertUnwindSafe<BoxedTracer>,
    noop: AtomicBool,
}

impl ServerTracer {
    /// The global provider's tracer, now.
    pub(super) fn from_global() -> ServerTracer {
        ServerTracer {
            tracer: std::panic::AssertUnwindSafe(global::tracer("goctx")),
            noop: AtomicBool::new(false),
        }
    }
}

impl fmt::Debug for ServerTracer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTracer")
            .field("noop", &self.noop.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A request's OpenTelemetry context and goctx's trace context made from
/// it, and whether the layer started the request's span (and so ends it).
///
/// When a span is current (an OpenTelemetry or tracing layer outside this
/// one made the server span, and tracing-opentelemetry activates it),
/// that span is the request's: its ids become the trace context and no
/// span is made. Otherwise the layer makes the server span, as Go's
/// otelhttp handler does, with the global tracer, its parent read from
/// the headers by the global propagator (`OTEL_PROPAGATORS`: W3C,
/// baggage, B3, Jaeger) or, when that finds none, from `traceparent` as
/// the layer reads it without OpenTelemetry; or none with `restart_trace`. With no tracer
/// provider installed (the API's no-op), there is no span to make: the
/// trace context is goctx's own, a child of the remote span or a new
/// trace.
pub(super) fn server_context(
    tracer: &ServerTracer,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    inbound_traceparent: Option<&HeaderValue>,
    restart_trace: bool,
) -> (opentelemetry::Context, TraceContext, bool) {
    let current = opentelemetry::Context::current();
    if current.has_active_span() {
        let span = current.span().span_context().clone();
        // The caller's span, if the inbound header names this trace.
        let parent = inbound_traceparent
            .and_then(|value| value.to_str().ok())
            .and_then(|value| TraceContext::parse(value, None))
            .filter(|remote| remote.trace_id() == span.trace_id().to_bytes())
            .map(|remote| remote.span_id());
        if let Some(trace) = trace_context_of(&span, parent) {
            return (current, trace, false);
        }
    }
    let parent = if restart_trace {
        current
    } else {
        let parent = global::get_text_map_propagator(|p| {
            p.extract_with_context(&current, &ReadAdapter(headers))
        });
        // No global propagator set (OpenTelemetry's default is a no-op),
        // or one that found nothing: the W3C headers as the layer reads
        // them without OpenTelemetry, so the request stays in its
        // caller's trace.
        if parent.span().span_context().is_valid() {
            parent
        } else {
            match TraceContext::remote_from_header(inbound_traceparent, headers) {
                Some(remote) => parent.with_remote_span_context(span_context_of(&remote)),
                None => parent,
            }
        }
    };
    let remote = parent.span().span_context().clone();
    // Relaxed: a flag that only ever goes from false to true, and whose
    // reading late costs one span built for nothing.
    if tracer.noop.load(Ordering::Relaxed) {
        let trace = trace_context_of(&remote, None)
            .map_or_else(TraceContext::new_root, |remote| remote.child());
        return (parent, trace, false);
    }
    let method = method_name(method);
    let span = tracer.tracer.build_with_context(
        SpanBuilder::from_name(method.clone())
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", method),
                KeyValue::new("url.path", uri.path().to_owned()),
            ]),
        &parent,
    );
    let made = span.span_context().clone();
    // The no-op tracer hands back the parent's span context (or an
    // invalid one): no span, now or later. A real tracer always makes new
    // ids, sampled or not.
    if made.is_valid() && made.span_id() != remote.span_id() {
        let parent_id = remote.is_valid().then(|| remote.span_id().to_bytes());
        if let Some(trace) = trace_context_of(&made, parent_id) {
            return (parent.with_span(span), trace, true);
        }
    } else {
        tracer.noop.store(true, Ordering::Relaxed);
    }
    let trace = trace_context_of(&remote, None)
        .map_or_else(TraceContext::new_root, |remote| remote.child());
    (parent, trace, false)
}

/// The method's name, without an allocation for the standard ones.
fn method_name(method: &Method) -> Cow<'static, str> {
    const STANDARD: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::PATCH, "PATCH"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    STANDARD
        .iter()
        .find(|(known, _)| known == method)
        .map_or_else(
            || Cow::Owned(method.as_str().to_owned()),
            |(_, name)| Cow::Borrowed(*name),
        )
}
