//! OpenTelemetry on goctx's context (feature `opentelemetry`): one
//! context carries the cancellation, the deadline and the telemetry, as
//! Go's `context.Context` carries OpenTelemetry Go's span and baggage.
//!
//! OpenTelemetry's Rust `Context` is "current" through a thread-local,
//! which async code keeps losing: a future sees it on its first poll and
//! not after, a spawned task never. goctx's context is passed by hand
//! through every call, task and thread, so it carries OpenTelemetry's too:
//!
//! - [`with_otel_context`] puts one in, [`otel_context`] takes it out (or
//!   makes one from goctx's own [`TraceContext`](crate::propagation::TraceContext),
//!   so a request's `Ctx` always gives the right parent);
//! - [`instrument`] makes it current for every poll of a future, so
//!   spans started anywhere inside have the right parent;
//! - [`record_end`] records on a span why a context ended;
//! - [`CarrierAdapter`] lets OpenTelemetry's propagators write and read
//!   any goctx [`Carrier`](crate::propagation::Carrier).
//!
//! With the `http` feature too, `RequestContextLayer::opentelemetry(true)`
//! and `PropagateLayer::opentelemetry(true)` use the global
//! `TextMapPropagator` (so `OTEL_PROPAGATORS`, baggage and B3 work) and the
//! server span an OpenTelemetry or tracing layer already made; see
//! docs/http.md.
//!
//! Depends on the `opentelemetry` API crate only (its `trace` feature);
//! the SDK and exporters are yours to choose.

mod carrier;
mod context;
mod instrument;
mod record;

pub use carrier::CarrierAdapter;
#[cfg(feature = "http")]
pub(crate) use carrier::ReadAdapter;
#[cfg(feature = "http")]
pub(crate) use context::{Carried, span_context_of, trace_context_of};
pub use context::{otel_context, with_otel_context};
pub use instrument::{Instrumented, instrument};
pub use record::{CONTEXT_ENDED, record_end};
