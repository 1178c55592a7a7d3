//! The HTTP layers on OpenTelemetry (features `http` and `opentelemetry`):
//! the server's request context from the global `TextMapPropagator` or
//! from the server span an outer layer made, and outgoing headers written
//! by the global propagator.

use http::{HeaderMap, HeaderValue};
use opentelemetry::global;
use opentelemetry::trace::TraceContextExt;

use crate::Ctx;
use crate::opentelemetry::{CarrierAdapter, ReadAdapter, otel_context, trace_context_of};
use crate::propagation::TraceContext;

/// A request's OpenTelemetry context and goctx's trace context made from
/// it. When a span is current (an OpenTelemetry or tracing layer outside
/// this one made the server span, and tracing-opentelemetry activates
/// it), that span is the request's: its ids become the trace context and
/// no span id is minted. Otherwise the global propagator reads the
/// headers (`OTEL_PROPAGATORS`: W3C, baggage, B3, Jaeger), and the trace
/// context is a child of the remote span it found, or a new trace.
/// `restart_trace` skips the headers.
pub(super) fn server_context(
    headers: &HeaderMap,
    inbound_traceparent: Option<&HeaderValue>,
    restart_trace: bool,
) -> (opentelemetry::Context, TraceContext) {
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
            return (current, trace);
        }
    }
    if restart_trace {
        return (current, TraceContext::new_root());
    }
    let otel = global::get_text_map_propagator(|p| {
        p.extract_with_context(&current, &ReadAdapter(headers))
    });
    let trace = trace_context_of(otel.span().span_context(), None)
        .map_or_else(TraceContext::new_root, |remote| remote.child());
    (otel, trace)
}

/// Writes the outgoing trace headers with the global propagator, from
/// `ctx`'s OpenTelemetry context (its baggage and span), except that a
/// span the caller started around the call, current and of the same
/// trace, is the parent instead of the request's.
pub(super) fn inject(ctx: &Ctx, headers: &mut HeaderMap) {
    let mut otel = otel_context(ctx);
    let current = opentelemetry::Context::current();
    if current.has_active_span() {
        let span = current.span().span_context().clone();
        let ours = otel.span().span_context().clone();
        if span.trace_id() == ours.trace_id() && span.span_id() != ours.span_id() {
            otel = otel.with_remote_span_context(span);
        }
    }
    global::get_text_map_propagator(|p| p.inject_context(&otel, &mut CarrierAdapter(headers)));
}
