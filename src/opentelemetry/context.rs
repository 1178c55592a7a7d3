//! An OpenTelemetry `Context` carried as a goctx value, and the two
//! directions between OpenTelemetry's span context and goctx's
//! [`TraceContext`].

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};

use crate::Ctx;
use crate::propagation::TraceContext;

/// The OpenTelemetry context a goctx context carries (a crate-private key
/// type: only this crate puts it in and takes it out; the HTTP layer puts
/// it in the request's value node).
#[derive(Clone)]
pub(crate) struct Carried(pub(crate) opentelemetry::Context);

/// A child of `ctx` that carries `otel`: [`otel_context`] returns it from
/// this context and every context derived from it, on any thread and
/// across every `.await`, with no thread-local involved.
///
/// # Examples
///
/// ```
/// use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
///
/// let span = SpanContext::new(
///     TraceId::from_bytes([7; 16]),
///     SpanId::from_bytes([9; 8]),
///     TraceFlags::SAMPLED,
///     true,
///     TraceState::default(),
/// );
/// let otel = opentelemetry::Context::new().with_remote_span_context(span.clone());
/// let ctx = goctx::opentelemetry::with_otel_context(&goctx::background(), otel);
/// let (child, _cancel) = goctx::with_cancel(&ctx);
/// assert_eq!(goctx::opentelemetry::otel_context(&child).span().span_context(), &span);
/// ```
pub fn with_otel_context(ctx: &Ctx, otel: opentelemetry::Context) -> Ctx {
    crate::with_value(ctx, Carried(otel))
}

/// The OpenTelemetry context of `ctx`, the nearest of:
///
/// 1. the one put in with [`with_otel_context`] (by you, or by the HTTP
///    layers when their OpenTelemetry setting is on);
/// 2. one whose span is a remote span context made from the context's
///    [`TraceContext`] (trace id, span id, flags, `tracestate`), so code
///    that only has a request's `Ctx` stays in the request's trace;
/// 3. [`opentelemetry::Context::current`].
///
/// The second is a fallback for contexts made without OpenTelemetry
/// (the HTTP layers with their setting off, `propagation::extract`): its
/// span id is goctx's id for the hop, which no exporter ever receives, so
/// a backend shows the spans under it with a missing parent; and a trace
/// goctx started is not sampled (flags `00`), so the SDK's default,
/// parent-based sampler drops them. With OpenTelemetry in use, turn the
/// layers' setting on (`RequestContextLayer::opentelemetry`), which puts
/// the request's real server span here.
pub fn otel_context(ctx: &Ctx) -> opentelemetry::Context {
    if let Some(Carried(otel)) = ctx.value::<Carried>() {
        return otel.clone();
    }
    if let Some(trace) = ctx.value::<TraceContext>() {
        return opentelemetry::Context::new().with_remote_span_context(span_context_of(trace));
    }
    opentelemetry::Context::current()
}

/// `trace` as a remote OpenTelemetry span context.
pub(crate) fn span_context_of(trace: &TraceContext) -> SpanContext {
    let state = trace
        .tracestate()
        .and_then(|state| state.parse::<TraceState>().ok())
        .unwrap_or_default();
    SpanContext::new(
        TraceId::from_bytes(trace.trace_id()),
        SpanId::from_bytes(trace.span_id()),
        TraceFlags::new(trace.flags()),
        true,
        state,
    )
}

/// An OpenTelemetry span context as goctx's [`TraceContext`], with
/// `parent` as its parent span id; `None` if it is not valid.
#[cfg(feature = "http")]
pub(crate) fn trace_context_of(
    span: &SpanContext,
    parent: Option<[u8; 8]>,
) -> Option<TraceContext> {
    if !span.is_valid() {
        return None;
    }
    // Most spans have no trace state: no header text made for them.
    let state = (*span.trace_state() != TraceState::NONE).then(|| span.trace_state().header());
    TraceContext::from_parts(
        span.trace_id().to_bytes(),
        span.span_id().to_bytes(),
        parent,
        span.trace_flags().to_u8(),
        state.as_deref().filter(|state| !state.is_empty()),
    )
}
