//! The client on OpenTelemetry (features `http` and `opentelemetry`):
//! outgoing headers written by the global propagator.

use http::HeaderMap;
use opentelemetry::global;
use opentelemetry::trace::TraceContextExt;

use crate::Ctx;
use crate::opentelemetry::{CarrierAdapter, otel_context};

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
