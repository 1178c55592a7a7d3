//! `RequestContextLayer::opentelemetry(true)` in a process with no tracer
//! provider (OpenTelemetry's API alone, its no-op tracer): no span can be
//! made, so the request's trace context is goctx's own, a child of the
//! inbound one, on the first request (which finds out) and on every later
//! one (which skips building a span). A process of its own: the tracer
//! provider is process-wide.

use std::convert::Infallible;
use std::sync::mpsc;

use goctx::Ctx;
use goctx::http::{RequestBody, RequestContextLayer};
use goctx::propagation::TraceContext;
use tower::{Layer, Service, ServiceExt};

#[tokio::test]
async fn without_a_tracer_provider_the_trace_is_goctx_own() {
    let (seen_tx, seen_rx) = mpsc::channel::<Ctx>();
    let mut service = RequestContextLayer::new(&goctx::background())
        .opentelemetry(true)
        .layer(tower::service_fn(
            move |req: http::Request<RequestBody<String>>| {
                seen_tx
                    .send(req.extensions().get::<Ctx>().unwrap().clone())
                    .unwrap();
                async { Ok::<_, Infallible>(http::Response::new(String::new())) }
            },
        ));
    for _ in 0..2 {
        let req = http::Request::get("/")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .body(String::new())
            .unwrap();
        let _response = service.ready().await.unwrap().call(req).await.unwrap();
        let ctx = seen_rx.recv().unwrap();
        let trace = ctx.value::<TraceContext>().unwrap();
        assert_eq!(trace.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            trace.parent_span_id(),
            Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        );
        assert_ne!(
            trace.span_id(),
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
    }
}
