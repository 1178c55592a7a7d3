//! `goctx::propagation` beside OpenTelemetry's W3C propagator (issue 19):
//! a context's trace written into a `HashMap<String, String>` and read
//! back, per round. goctx's rows carry the request id too (one more key),
//! and its extract makes a cancelable context, where OpenTelemetry's makes
//! an `opentelemetry::Context` (no cancellation, no deadline).
//!
//! `cargo bench -p integration --bench propagation`; figures in docs/PERFORMANCE.md.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use goctx::propagation::{Propagator, RequestId, TraceContext};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn propagation(c: &mut Criterion) {
    let mut group = c.benchmark_group("Propagation");

    // goctx: trace and request id, inject then extract.
    let trace = TraceContext::parse(TRACEPARENT, None).unwrap();
    let ctx = goctx::with_value(&goctx::background(), trace.clone());
    let ctx = goctx::with_value(&ctx, RequestId::generate());
    let propagator = Propagator::new();
    group.bench_function("goctx inject + extract (trace, request id)", |b| {
        b.iter(|| {
            let mut carrier = HashMap::new();
            propagator.inject(&ctx, &mut carrier);
            let (remote, cancel) = propagator.extract(&goctx::background(), &carrier);
            black_box(&remote);
            drop((remote, cancel));
        })
    });
    // The codec alone, as OpenTelemetry's propagator is one: format,
    // write, read, parse, child span.
    group.bench_function("goctx codec only (trace)", |b| {
        b.iter(|| {
            let mut carrier: HashMap<String, String> = HashMap::new();
            carrier.insert("traceparent".to_owned(), black_box(&trace).traceparent());
            let parsed = TraceContext::parse(&carrier["traceparent"], None).map(|t| t.child());
            black_box(parsed);
        })
    });

    // OpenTelemetry: the SDK's W3C propagator on a remote span context.
    let otel = TraceContextPropagator::new();
    let span = SpanContext::new(
        TraceId::from_bytes(trace.trace_id()),
        SpanId::from_bytes(trace.span_id()),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let cx = opentelemetry::Context::new().with_remote_span_context(span);
    group.bench_function(
        "opentelemetry TraceContextPropagator inject + extract (trace)",
        |b| {
            b.iter(|| {
                let mut carrier = HashMap::new();
                otel.inject_context(&cx, &mut carrier);
                let remote = otel.extract(&carrier);
                black_box(remote);
            })
        },
    );
    group.finish();
}

criterion_group!(benches, propagation);
criterion_main!(benches);
