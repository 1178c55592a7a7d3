//! Feature `opentelemetry` (issue 19): the OpenTelemetry context carried
//! by goctx's context across awaits and spawns, and two axum services on
//! loopback (A calls B through `PropagateLayer`) traced with the SDK's
//! in-memory exporter and tracing-opentelemetry: one trace with the right
//! parent links, baggage set at A read at B, and A's span told why its
//! request was abandoned.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use goctx::Ctx;
use goctx::http::{PropagateBody, PropagateLayer, RequestContextLayer, with_context};
use goctx::opentelemetry::{
    CONTEXT_ENDED, CarrierAdapter, instrument, otel_context, with_otel_context,
};
use goctx::propagation::TraceContext;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::{SpanId, Status, TraceContextExt, TracerProvider};
use opentelemetry::{KeyValue, global};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tower::{Service, ServiceBuilder, ServiceExt};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

/// `/slow` has started: its request context is live.
static SLOW_STARTED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Every wait in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(10);

/// The process-wide set-up a service does once: a tracer provider that
/// exports to memory, tracing with tracing-opentelemetry on it, and W3C
/// trace context plus baggage as the global propagator.
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let tracer = provider.tracer("goctx-tests");
        global::set_tracer_provider(provider);
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber per process");
        global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ]));
        exporter
    })
}

/// Spans of `trace_id` exported so far.
fn spans_of(trace_id: opentelemetry::trace::TraceId) -> Vec<SpanData> {
    exporter()
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|span| span.span_context.trace_id() == trace_id)
        .collect()
}

/// Waits (bounded) until `n` spans named `name` of `trace_id` are exported.
async fn wait_for_span(trace_id: opentelemetry::trace::TraceId, name: &str) -> SpanData {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        if let Some(span) = spans_of(trace_id).into_iter().find(|s| s.name == name) {
            return span;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no span {name:?} exported; all: {:?}",
            exporter()
                .get_finished_spans()
                .unwrap()
                .iter()
                .map(|s| (s.name.clone(), s.span_context.trace_id()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What an OpenTelemetry/tracing server layer does (as tower-http's
/// `TraceLayer` with tracing-opentelemetry would): a server span per
/// request, its parent read from the headers by the global propagator,
/// entered for every poll of the rest of the stack.
async fn server_span(mut req: Request, next: Next) -> Response {
    let name = format!("server {}", req.uri().path());
    let parent = global::get_text_map_propagator(|p| p.extract(&CarrierAdapter(req.headers_mut())));
    let span = tracing::info_span!("server", otel.name = name);
    span.set_parent(parent).unwrap();
    next.run(req).instrument(span).await
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// B: answers with the baggage its request context carries.
async fn service_b() -> SocketAddr {
    async fn tenant(ctx: Ctx) -> String {
        let otel = otel_context(&ctx);
        otel.baggage()
            .get("tenant")
            .map_or_else(|| "no baggage".to_owned(), |v| v.to_string())
    }
    let app = Router::new()
        .route("/b", get(tenant))
        .layer(RequestContextLayer::new(&goctx::background()).opentelemetry(true))
        .layer(middleware::from_fn(server_span));
    serve(app).await
}

/// A: sets baggage and calls B with its request context; `/slow` waits
/// for the client to leave.
async fn service_a(b: SocketAddr) -> SocketAddr {
    let hyper = Client::builder(TokioExecutor::new()).build_http::<PropagateBody<Empty<Bytes>>>();
    let client = ServiceBuilder::new()
        .layer(PropagateLayer::new().opentelemetry(true))
        .service(hyper);
    let call_b = move |ctx: Ctx| {
        let mut client = client.clone();
        async move {
            let otel = otel_context(&ctx).with_baggage([KeyValue::new("tenant", "acme")]);
            let ctx = with_otel_context(&ctx, otel);
            let req = http::Request::get(format!("http://{b}/b"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let res = client
                .ready()
                .await
                .unwrap()
                .call(with_context(req, &ctx))
                .await
                .unwrap();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            String::from_utf8(body.to_vec()).unwrap()
        }
    };
    async fn slow(ctx: Ctx) -> &'static str {
        SLOW_STARTED.notify_one();
        ctx.done().await;
        "never sent"
    }
    let app = Router::new()
        .route("/a", get(call_b))
        .route("/slow", get(slow))
        .layer(RequestContextLayer::new(&goctx::background()).opentelemetry(true))
        .layer(middleware::from_fn(server_span));
    serve(app).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_across_two_services_with_baggage() {
    exporter();
    let b = service_b().await;
    let a = service_a(b).await;
    // A trace of the test's own, so its spans can be found.
    let root = TraceContext::new_root();
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let req = http::Request::get(format!("http://{a}/a"))
        .header(
            "traceparent",
            format!("00-{}-{}-01", root.trace_id_hex(), "00f067aa0ba902b7"),
        )
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = tokio::time::timeout(LIMIT, client.request(req))
        .await
        .unwrap()
        .unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "acme", "B read the baggage A set");

    let trace_id = opentelemetry::trace::TraceId::from_bytes(root.trace_id());
    let span_a = wait_for_span(trace_id, "server /a").await;
    let span_b = wait_for_span(trace_id, "server /b").await;
    assert_eq!(
        span_a.parent_span_id,
        SpanId::from_bytes([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]),
        "A continues the test's trace"
    );
    assert_eq!(
        span_b.parent_span_id,
        span_a.span_context.span_id(),
        "B's span is a child of A's"
    );
    assert!(span_b.parent_span_is_remote);
    assert!(
        matches!(span_a.status, Status::Unset | Status::Ok),
        "A completed: {:?}",
        span_a.status
    );
    assert!(span_a.events.iter().all(|e| e.name != CONTEXT_ENDED));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_span_records_an_abandoned_request() {
    exporter();
    let b = service_b().await;
    let a = service_a(b).await;
    let root = TraceContext::new_root();
    // The client sends the request, then closes the connection once the
    // handler runs (hyper notices the close and drops the handler).
    let mut conn = tokio::net::TcpStream::connect(a).await.unwrap();
    // Sampled (flags 01): the SDK's default sampler follows the parent.
    let head = format!(
        "GET /slow HTTP/1.1\r\nHost: x\r\ntraceparent: 00-{}-00f067aa0ba902b7-01\r\n\r\n",
        root.trace_id_hex()
    );
    tokio::io::AsyncWriteExt::write_all(&mut conn, head.as_bytes())
        .await
        .unwrap();
    tokio::time::timeout(LIMIT, SLOW_STARTED.notified())
        .await
        .expect("the handler started");
    drop(conn);
    let trace_id = opentelemetry::trace::TraceId::from_bytes(root.trace_id());
    let span = wait_for_span(trace_id, "server /slow").await;
    let event = span
        .events
        .iter()
        .find(|e| e.name == CONTEXT_ENDED)
        .expect("the context's end is an event of the span");
    let cause = event
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "goctx.cause")
        .unwrap()
        .value
        .to_string();
    assert!(cause.contains("request abandoned"), "{cause}");
    match &span.status {
        Status::Error { description } => assert!(description.contains("request abandoned")),
        other => panic!("status {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_otel_context_survives_spawn_and_awaits() {
    let root = TraceContext::new_root();
    let ctx = goctx::with_value(&goctx::background(), root.clone());
    let expected = opentelemetry::trace::TraceId::from_bytes(root.trace_id());
    let seen = tokio::spawn(ctx.run_owned(instrument(&ctx, async {
        let mut seen = Vec::new();
        for _ in 0..3 {
            // Each await may resume on the other worker thread.
            tokio::time::sleep(Duration::from_millis(5)).await;
            tokio::task::yield_now().await;
            seen.push(
                opentelemetry::Context::current()
                    .span()
                    .span_context()
                    .trace_id(),
            );
        }
        seen
    })));
    let seen = tokio::time::timeout(LIMIT, seen)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen, vec![expected; 3]);

    // Without the wrapper, a spawned task does not have it: what the
    // wrapper is for.
    let _attached = otel_context(&ctx).attach();
    let lost = tokio::spawn(async {
        tokio::task::yield_now().await;
        opentelemetry::Context::current()
            .span()
            .span_context()
            .trace_id()
    });
    assert_ne!(
        tokio::time::timeout(LIMIT, lost).await.unwrap().unwrap(),
        expected
    );
}

#[tokio::test]
async fn the_layer_without_a_server_span_uses_the_global_propagator() {
    exporter();
    // B has no tracing layer here: goctx reads the headers itself with the
    // global propagator (baggage included).
    async fn tenant(ctx: Ctx) -> String {
        let otel = otel_context(&ctx);
        let trace = ctx.value::<TraceContext>().unwrap();
        format!(
            "{} {} {}",
            otel.baggage()
                .get("tenant")
                .map_or("none".into(), |v| v.to_string()),
            trace.trace_id_hex(),
            trace
                .parent_span_id()
                .map_or("-".into(), |p| format!("{p:02x?}"))
        )
    }
    let app = Router::new()
        .route("/b", get(tenant))
        .layer(RequestContextLayer::new(&goctx::background()).opentelemetry(true));
    let b = serve(app).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let req = http::Request::get(format!("http://{b}/b"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("baggage", "tenant=globex")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = tokio::time::timeout(LIMIT, client.request(req))
        .await
        .unwrap()
        .unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        body,
        "globex 4bf92f3577b34da6a3ce929d0e0e4736 [00, f0, 67, aa, 0b, a9, 02, b7]"
    );
}

// Without an outer server-span layer, the layer makes the server span: a
// request without `traceparent` gets a span that is exported, whose trace
// is the request context's `TraceContext`, and spans started in the
// handler under `instrument` are its children.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_outer_layer_the_layer_makes_the_server_span() {
    use opentelemetry::trace::Tracer;
    exporter();
    async fn work(ctx: Ctx) -> String {
        let trace = ctx.value::<TraceContext>().unwrap().clone();
        tokio::spawn(ctx.run_owned(instrument(&ctx, async {
            tokio::task::yield_now().await;
            let tracer = global::tracer("handler");
            let _span = tracer.start("handler work"); // ends when dropped
        })))
        .await
        .unwrap()
        .unwrap();
        format!("{} {}", trace.trace_id_hex(), trace.sampled())
    }
    let app = Router::new()
        .route("/work", get(work))
        .layer(RequestContextLayer::new(&goctx::background()).opentelemetry(true));
    let addr = serve(app).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let res = tokio::time::timeout(
        LIMIT,
        client.get(format!("http://{addr}/work").parse().unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    let body =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let (trace_hex, sampled) = body.split_once(' ').unwrap();
    assert_eq!(sampled, "true", "the SDK sampled the layer's root span");
    let trace_id = opentelemetry::trace::TraceId::from_hex(trace_hex).unwrap();
    let server = wait_for_span(trace_id, "GET").await;
    let work = wait_for_span(trace_id, "handler work").await;
    assert_eq!(
        server.parent_span_id,
        SpanId::INVALID,
        "a new trace: a root span"
    );
    assert_eq!(work.parent_span_id, server.span_context.span_id());
    assert!(
        server
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == "url.path" && kv.value.as_str() == "/work")
    );
}
