//! `record_end`: why a context ended, on an OpenTelemetry span.

use opentelemetry::KeyValue;
use opentelemetry::trace::{Status, TraceContextExt};

use crate::Ctx;

/// The name of the span event [`record_end`] adds.
pub const CONTEXT_ENDED: &str = "goctx.context_ended";

/// Records on `otel`'s span why `ctx` ended: an event [`CONTEXT_ENDED`]
/// with the attributes `goctx.error` (`err()`'s text: "context canceled"
/// or "context deadline exceeded") and `goctx.cause` (the cause's text,
/// with a `RequestAbandoned`'s reason), and the span's status set to
/// `Error` with the cause as its description. Nothing if `ctx` is not
/// done, or if the span is not recording (a remote span, or none, or one
/// already ended). Each call adds an event: call it once per end.
///
/// The HTTP layers call it, with their OpenTelemetry setting on, when a
/// request context ends with anything but `ResponseComplete`; call it
/// yourself where work of your own ends early. Neither Go's otel nor
/// tracing-opentelemetry records why a context ended.
///
/// # Examples
///
/// ```
/// use opentelemetry::trace::{Tracer, TracerProvider, TraceContextExt};
///
/// let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
/// let span = provider.tracer("example").start("work");
/// let otel = opentelemetry::Context::new().with_span(span);
/// let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
/// cancel.cancel_with_cause(goctx::Cause::from("the job was withdrawn"));
/// goctx::opentelemetry::record_end(&otel, &ctx);
/// ```
pub fn record_end(otel: &opentelemetry::Context, ctx: &Ctx) {
    let Some(err) = ctx.err() else {
        return;
    };
    let span = otel.span();
    if !span.is_recording() {
        return;
    }
    let cause = ctx
        .cause()
        .map_or_else(|| err.to_string(), |cause| cause.to_string());
    span.add_event(
        CONTEXT_ENDED,
        vec![
            KeyValue::new("goctx.error", err.to_string()),
            KeyValue::new("goctx.cause", cause.clone()),
        ],
    );
    span.set_status(Status::error(cause));
}
