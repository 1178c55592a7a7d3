//! `goctx::http::RequestContextLayer` against real axum servers on
//! loopback: when a request context ends and with which cause. The shapes
//! follow Go's net/http tests (`TestServerRequestContextCancel_*`,
//! `TestServerContexts`). Every wait is bounded.

mod common;
use common::loopback::serve;
use common::waits::{WATCHDOG, bounded, ended_within};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::{get, post};
use futures::StreamExt;
use goctx::http::{
    PeerAddr, RequestAbandoned, RequestContextLayer, RequestId, ResponseComplete, TraceContext,
};
use goctx::{Cause, Ctx};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::timeout;

/// How soon a disconnect must be seen (Go's tests: "within a second").
const PROMPT: Duration = Duration::from_secs(1);

fn http1_client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn request(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Request<Empty<Bytes>> {
    let mut req = Request::get(format!("http://{addr}{path}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Empty::new()).expect("request")
}

/// Sends a request and reads the whole response.
async fn fetch(
    client: &Client<HttpConnector, Empty<Bytes>>,
    req: Request<Empty<Bytes>>,
) -> (StatusCode, HeaderMap, String) {
    let res = bounded("response", client.request(req))
        .await
        .expect("request");
    let (parts, body) = res.into_parts();
    let body = bounded("body", body.collect()).await.expect("body");
    let text = String::from_utf8_lossy(&body.to_bytes()).into_owned();
    (parts.status, parts.headers, text)
}

/// The query string's `key=value` pairs.
fn query(uri: &http::Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A router whose handlers report their context on `probe`.
type Probe = mpsc::UnboundedSender<Ctx>;

/// Go: TestServerRequestContextCancel_ServeHTTPDone. The context is live in
/// the handler, carries the request values, and ends with
/// `ResponseComplete` once the response is sent; the base's registry is
/// empty again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctx_live_in_handler_then_response_complete() {
    let (base, _stop) = goctx::with_cancel_cause(&goctx::background());
    let (probe, mut seen) = mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/",
            get(move |ctx: Ctx| async move {
                let live = ctx.err().is_none();
                probe.send(ctx).expect("probe");
                format!("live={live}")
            }),
        )
        .layer(RequestContextLayer::new(&base));
    let addr = serve(app).await;

    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let req = request(
        addr,
        "/",
        &[
            ("x-request-id", "req-1"),
            ("traceparent", traceparent),
            ("tracestate", "congo=t61rcWkgMzE"),
        ],
    );
    let (status, _, body) = fetch(&http1_client(), req).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "live=true"));

    let ctx = bounded("handler ran", seen.recv()).await.expect("ctx");
    let cause = ended_within(&ctx, PROMPT).await;
    assert!(cause.is::<ResponseComplete>(), "{cause}");
    assert_eq!(ctx.err(), Some(goctx::Error::Canceled));
    assert_eq!(
        ctx.value::<RequestId>().map(RequestId::as_str),
        Some("req-1")
    );
    let trace = ctx.value::<TraceContext>().expect("trace");
    assert_eq!(trace.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        trace.parent_span_id(),
        Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
    );
    assert_ne!(
        trace.span_id(),
        [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
    );
    assert_eq!(trace.tracestate(), Some("congo=t61rcWkgMzE"));
    assert!(trace.sampled());
    let peer = ctx
        .value::<PeerAddr>()
        .expect("peer address from ConnectInfo");
    assert!(peer.0.ip().is_loopback());
    assert_eq!(base.dependents(), 0);
}

/// A handler that reports its context, starts a task and an `after_func`
/// that watch it, and then waits forever (never looking at the context).
fn hanging_app(base: &Ctx, probe: Probe, watchers: mpsc::UnboundedSender<Cause>) -> Router {
    Router::new()
        .route(
            "/hang",
            get(move |ctx: Ctx| async move {
                let task_saw = watchers.clone();
                let watched = ctx.clone();
                tokio::spawn(async move {
                    watched.done().await;
                    let _ = task_saw.send(watched.cause().expect("cause"));
                });
                let callback_saw = watchers.clone();
                let in_callback = ctx.clone();
                let _registration = goctx::after_func(&ctx, move || {
                    let _ = callback_saw.send(in_callback.cause().expect("cause"));
                });
                probe.send(ctx).expect("probe");
                std::future::pending::<()>().await;
            }),
        )
        .layer(RequestContextLayer::new(base))
}

/// Go: TestServerRequestContextCancel_ConnClose. A raw HTTP/1 client sends
/// a request and closes the connection while the handler runs: the
/// context ends within a second with `RequestAbandoned`, and a spawned
/// task and an `after_func` callback both see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_client_close_abandons_request() {
    let (probe, mut seen) = mpsc::unbounded_channel();
    let (watchers, mut watched) = mpsc::unbounded_channel();
    let addr = serve(hanging_app(&goctx::background(), probe, watchers)).await;

    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.write_all(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let ctx = bounded("handler entered", seen.recv()).await.expect("ctx");
    assert_eq!(ctx.err(), None);
    drop(conn);

    let cause = ended_within(&ctx, PROMPT).await;
    assert!(cause.is::<RequestAbandoned>(), "{cause}");
    for who in ["spawned task", "after_func"] {
        let cause = bounded(who, watched.recv()).await.expect(who);
        assert!(cause.is::<RequestAbandoned>(), "{who}: {cause}");
    }
}

/// HTTP/2 with prior knowledge: two streams on one connection; dropping
/// one response future resets that stream only. Its context ends with
/// `RequestAbandoned`; the other stays live and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_stream_reset_ends_only_that_stream() {
    let (probe, mut seen) = mpsc::unbounded_channel::<(String, Ctx)>();
    let release = Arc::new(Notify::new());
    let app = Router::new()
        .route(
            "/wait",
            get({
                let release = release.clone();
                move |ctx: Ctx, uri: http::Uri| async move {
                    let q = query(&uri);
                    probe.send((q["id"].clone(), ctx.clone())).expect("probe");
                    release.notified().await;
                    "released"
                }
            }),
        )
        .layer(RequestContextLayer::new(&goctx::background()));
    let addr = serve(app).await;
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();

    // The first request opens the connection; the second shares it.
    let a = tokio::spawn(client.request(request(addr, "/wait?id=a", &[])));
    let (id, first) = bounded("first handler", seen.recv()).await.expect("ctx");
    let b = tokio::spawn({
        let client = client.clone();
        async move { fetch(&client, request(addr, "/wait?id=b", &[])).await }
    });
    let (id2, second) = bounded("second handler", seen.recv()).await.expect("ctx");
    let (ctx_a, ctx_b) = if id == "a" {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!([id.as_str(), id2.as_str()].len(), 2);
    assert_eq!(
        ctx_a.value::<PeerAddr>(),
        ctx_b.value::<PeerAddr>(),
        "both streams on one connection"
    );

    a.abort(); // drops the response future: RST_STREAM(CANCEL)
    let cause = ended_within(&ctx_a, PROMPT).await;
    assert!(cause.is::<RequestAbandoned>(), "{cause}");
    assert_eq!(ctx_b.err(), None, "the other stream is untouched");

    release.notify_one(); // only B waits; a stored permit if it has not yet
    let (status, _, body) = bounded("second response", b).await.expect("join");
    assert_eq!((status, body.as_str()), (StatusCode::OK, "released"));
    let cause = ended_within(&ctx_b, PROMPT).await;
    assert!(cause.is::<ResponseComplete>(), "{cause}");
}

/// A client that gives up (its own timeout) is a disconnect for the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_timeout_is_a_disconnect() {
    let (probe, mut seen) = mpsc::unbounded_channel();
    let (watchers, _watched) = mpsc::unbounded_channel();
    let addr = serve(hanging_app(&goctx::background(), probe, watchers)).await;

    let client = http1_client();
    let res = timeout(
        Duration::from_millis(100),
        client.request(request(addr, "/hang", &[])),
    )
    .await;
    assert!(res.is_err(), "the client timed out");
    let ctx = bounded("handler entered", seen.recv()).await.expect("ctx");
    let cause = ended_within(&ctx, PROMPT).await;
    assert!(cause.is::<RequestAbandoned>(), "{cause}");
}

/// A streaming body keeps the context live after the handler returned; it
/// ends with `ResponseComplete` when the stream ends, or with
/// `RequestAbandoned` when the client stops reading and goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_body_keeps_ctx_until_it_ends() {
    let (probe, mut seen) = mpsc::unbounded_channel::<(Ctx, mpsc::UnboundedSender<&'static str>)>();
    let app = Router::new()
        .route(
            "/stream",
            get(move |ctx: Ctx| async move {
                let (chunks, rx) = mpsc::unbounded_channel::<&'static str>();
                probe.send((ctx, chunks)).expect("probe");
                let stream = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv()
                        .await
                        .map(|chunk| (Ok::<_, std::io::Error>(Bytes::from(chunk)), rx))
                });
                Body::from_stream(stream)
            }),
        )
        .layer(RequestContextLayer::new(&goctx::background()));
    let addr = serve(app).await;
    let client = http1_client();

    // To the end.
    let res = tokio::spawn(client.request(request(addr, "/stream", &[])));
    let (ctx, chunks) = bounded("handler", seen.recv()).await.expect("ctx");
    let mut body = bounded("head", res)
        .await
        .expect("join")
        .expect("response")
        .into_body();
    chunks.send("one").expect("chunk");
    let frame = bounded("first chunk", body.frame())
        .await
        .expect("frame")
        .expect("ok");
    assert_eq!(frame.into_data().ok().as_deref(), Some(&b"one"[..]));
    assert_eq!(
        ctx.err(),
        None,
        "live while the body streams, after the handler returned"
    );
    chunks.send("two").expect("chunk");
    drop(chunks);
    let rest = bounded("rest", body.collect())
        .await
        .expect("rest")
        .to_bytes();
    assert_eq!(&rest[..], b"two");
    let cause = ended_within(&ctx, PROMPT).await;
    assert!(cause.is::<ResponseComplete>(), "{cause}");

    // The client stops reading and goes away.
    let res = tokio::spawn(client.request(request(addr, "/stream", &[])));
    let (ctx, chunks) = bounded("handler", seen.recv()).await.expect("ctx");
    let mut body = bounded("head", res)
        .await
        .expect("join")
        .expect("response")
        .into_body();
    chunks.send("one").expect("chunk");
    bounded("first chunk", body.frame())
        .await
        .expect("frame")
        .expect("ok");
    drop(body); // an unfinished HTTP/1 response: the client closes the connection
    let cause = ended_within(&ctx, PROMPT).await;
    assert!(cause.is::<RequestAbandoned>(), "{cause}");
    drop(chunks);
}

/// Go: TestServerContexts, plus shutdown. Values of the base context are
/// visible in every request; canceling the base ends requests in flight
/// with the base's cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_values_visible_and_base_cancel_ends_requests() {
    #[derive(Debug)]
    struct ServerName(&'static str);

    let (base, shutdown) = goctx::with_cancel_cause(&goctx::background());
    let base = goctx::with_value(&base, ServerName("api-1"));
    let (probe, mut seen) = mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/",
            get(move |ctx: Ctx| async move {
                let name = ctx.value::<ServerName>().map_or("-", |n| n.0);
                probe.send(ctx.clone()).expect("probe");
                ctx.done().await;
                format!("{name}: {}", ctx.cause().expect("cause"))
            }),
        )
        .layer(RequestContextLayer::new(&base));
    let addr = serve(app).await;

    let client = http1_client();
    let res = tokio::spawn({
        let client = client.clone();
        async move { fetch(&client, request(addr, "/", &[])).await }
    });
    let ctx = bounded("handler", seen.recv()).await.expect("ctx");
    assert_eq!(base.dependents(), 1);
    shutdown.cancel_with_cause("server shutting down");
    let cause = ended_within(&ctx, PROMPT).await;
    assert_eq!(cause.to_string(), "server shutting down");
    let (status, _, body) = bounded("response", res).await.expect("join");
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "api-1: server shutting down")
    );
    assert_eq!(base.dependents(), 0);
}

/// Reports the handler's remaining time budget in milliseconds ("none"
/// without a deadline).
fn deadline_app(layer: RequestContextLayer, calls: Arc<AtomicUsize>) -> Router {
    Router::new()
        .route(
            "/",
            get(move |ctx: Ctx| async move {
                calls.fetch_add(1, Ordering::SeqCst);
                match ctx.deadline() {
                    None => "none".to_owned(),
                    Some(at) => at
                        .saturating_duration_since(Instant::now())
                        .as_millis()
                        .to_string(),
                }
            }),
        )
        .route(
            "/wait",
            get(|ctx: Ctx| async move {
                let err = ctx.done().await;
                err.to_string()
            }),
        )
        .layer(layer)
}

async fn remaining_ms(addr: SocketAddr, headers: &[(&str, &str)]) -> Option<u64> {
    let (status, _, body) = fetch(&http1_client(), request(addr, "/", headers)).await;
    assert_eq!(status, StatusCode::OK);
    body.parse().ok()
}

/// Inbound deadlines: `grpc-timeout` (the spec's vectors), `connect-timeout-ms`,
/// the sooner of both, clamping by `max_timeout`, malformed values ignored
/// on plain HTTP and rejected on gRPC with `grpc-status: 13`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_deadline_headers() {
    let calls = Arc::new(AtomicUsize::new(0));
    let addr = serve(deadline_app(
        RequestContextLayer::new(&goctx::background()),
        calls.clone(),
    ))
    .await;
    let in_range = |ms: Option<u64>, lo: u64, hi: u64| ms.is_some_and(|ms| lo <= ms && ms <= hi);

    let ms = remaining_ms(addr, &[("grpc-timeout", "200m")]).await;
    assert!(in_range(ms, 150, 200), "{ms:?}");
    let ms = remaining_ms(addr, &[("grpc-timeout", "42S")]).await;
    assert!(in_range(ms, 41_000, 42_000), "{ms:?}");
    let ms = remaining_ms(addr, &[("grpc-timeout", "1M")]).await;
    assert!(in_range(ms, 59_000, 60_000), "{ms:?}");
    let ms = remaining_ms(addr, &[("grpc-timeout", "3H")]).await;
    assert!(in_range(ms, 3 * 3_600_000 - 1000, 3 * 3_600_000), "{ms:?}");
    let ms = remaining_ms(addr, &[("connect-timeout-ms", "250")]).await;
    assert!(in_range(ms, 200, 250), "{ms:?}");
    let ms = remaining_ms(
        addr,
        &[("grpc-timeout", "5S"), ("connect-timeout-ms", "300")],
    )
    .await;
    assert!(in_range(ms, 250, 300), "the sooner of both: {ms:?}");
    for tiny in ["13m", "2u", "82n"] {
        let ms = remaining_ms(addr, &[("grpc-timeout", tiny)]).await;
        assert!(in_range(ms, 0, 13), "{tiny}: {ms:?}");
    }
    for bad in ["", "5", "5x", "-1S", "1.5S", "123456789S", "82f", "oneH"] {
        assert_eq!(
            remaining_ms(addr, &[("grpc-timeout", bad)]).await,
            None,
            "{bad:?}"
        );
    }
    assert_eq!(
        remaining_ms(addr, &[("connect-timeout-ms", "1.5")]).await,
        None
    );

    // gRPC: a malformed grpc-timeout is answered without calling the handler.
    let before = calls.load(Ordering::SeqCst);
    for bad in ["", "5x", "123456789S", "1.5S"] {
        let req = request(
            addr,
            "/",
            &[("content-type", "application/grpc"), ("grpc-timeout", bad)],
        );
        let (status, headers, body) = fetch(&http1_client(), req).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["grpc-status"], "13", "{bad:?}");
        assert_eq!(headers["content-type"], "application/grpc");
        assert!(
            headers["grpc-message"]
                .to_str()
                .is_ok_and(|m| m.contains("grpc-timeout"))
        );
        assert!(body.is_empty());
    }
    assert_eq!(calls.load(Ordering::SeqCst), before, "handler not called");
    let grpc = [
        ("content-type", "application/grpc+proto"),
        ("grpc-timeout", "300m"),
    ];
    let ms = remaining_ms(addr, &grpc).await;
    assert!(in_range(ms, 250, 300), "{ms:?}");

    // The context ends at the deadline, with DeadlineExceeded.
    let start = Instant::now();
    let req = request(addr, "/wait", &[("grpc-timeout", "100m")]);
    let (_, _, body) = fetch(&http1_client(), req).await;
    assert_eq!(body, "context deadline exceeded");
    assert!(start.elapsed() >= Duration::from_millis(100));

    // Clamped: a peer can only shorten its own request.
    let addr = serve(deadline_app(
        RequestContextLayer::new(&goctx::background()).max_timeout(Duration::from_millis(300)),
        calls.clone(),
    ))
    .await;
    let ms = remaining_ms(addr, &[("grpc-timeout", "1H")]).await;
    assert!(in_range(ms, 250, 300), "clamped: {ms:?}");
    let ms = remaining_ms(addr, &[("grpc-timeout", "100m")]).await;
    assert!(in_range(ms, 50, 100), "shorter kept: {ms:?}");
    let ms = remaining_ms(addr, &[]).await;
    assert!(
        in_range(ms, 250, 300),
        "no header: the server's maximum: {ms:?}"
    );
}

/// Drops into `dropped` when the handler's future is dropped.
struct DropSignal(Option<oneshot::Sender<()>>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// `enforce_deadline(true)`: at the deadline the client gets 504 (gRPC:
/// `grpc-status: 4`) and the handler, which ignores its context, is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforced_deadline_answers_504_and_drops_handler() {
    let (dropped_tx, mut dropped) = mpsc::unbounded_channel::<oneshot::Receiver<()>>();
    let (probe, mut seen) = mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/",
            get(move |ctx: Ctx| async move {
                let (tx, rx) = oneshot::channel();
                let _signal = DropSignal(Some(tx));
                dropped_tx.send(rx).expect("drop probe");
                probe.send(ctx).expect("probe");
                std::future::pending::<()>().await;
            }),
        )
        .layer(RequestContextLayer::new(&goctx::background()).enforce_deadline(true));
    let addr = serve(app).await;

    let start = Instant::now();
    let (status, _, _) = fetch(
        &http1_client(),
        request(addr, "/", &[("grpc-timeout", "100m")]),
    )
    .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(start.elapsed() >= Duration::from_millis(100));
    let rx = bounded("handler", dropped.recv()).await.expect("rx");
    bounded("handler dropped", rx).await.expect("dropped");
    let ctx = bounded("ctx", seen.recv()).await.expect("ctx");
    assert_eq!(ctx.err(), Some(goctx::Error::DeadlineExceeded));

    let req = request(
        addr,
        "/",
        &[
            ("content-type", "application/grpc"),
            ("grpc-timeout", "50m"),
        ],
    );
    let (status, headers, _) = fetch(&http1_client(), req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["grpc-status"], "4");
    let rx = bounded("handler", dropped.recv()).await.expect("rx");
    bounded("handler dropped", rx).await.expect("dropped");
}

/// Without the layer the extractor answers 500 and names the layer;
/// `Option<Ctx>` accepts both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extractor_without_layer_is_500_naming_the_layer() {
    let app = Router::new()
        .route("/ctx", get(|_ctx: Ctx| async { "unreachable" }))
        .route("/id", get(|_id: RequestId| async { "unreachable" }))
        .route(
            "/optional",
            get(|ctx: Option<Ctx>| async move { format!("{}", ctx.is_some()) }),
        );
    let addr = serve(app).await;
    for path in ["/ctx", "/id"] {
        let (status, _, body) = fetch(&http1_client(), request(addr, path, &[])).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.contains("RequestContextLayer"), "{body}");
    }
    let (_, _, body) = fetch(&http1_client(), request(addr, "/optional", &[])).await;
    assert_eq!(body, "false");
}

/// Pins hyper's limit (Go has the same one): a client that sends a
/// request's headers, never its body, and closes is **not** noticed while
/// the handler leaves the body unread, because hyper reads nothing from
/// the connection until the body is asked for. Once the handler reads the
/// body, the read fails, and the request body ends the context with
/// `RequestAbandoned` (the connection closed) before the handler sees the
/// error: its answer, written into the socket's buffer, does not make the
/// request complete (golang/go#52183).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_request_body_hides_the_disconnect() {
    let (probe, mut seen) = mpsc::unbounded_channel();
    let read_now = Arc::new(Notify::new());
    let (read_result, mut read_results) = mpsc::unbounded_channel::<bool>();
    let app = Router::new()
        .route(
            "/upload",
            post({
                let read_now = read_now.clone();
                move |ctx: Ctx, body: Body| async move {
                    probe.send(ctx).expect("probe");
                    read_now.notified().await;
                    let ok = body.collect().await.is_ok();
                    read_result.send(ok).expect("result");
                    "read"
                }
            }),
        )
        .layer(RequestContextLayer::new(&goctx::background()));
    let addr = serve(app).await;

    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nabc")
        .await
        .expect("write");
    let ctx = bounded("handler entered", seen.recv()).await.expect("ctx");
    drop(conn);
    // A bounded look for an event that must not happen.
    assert!(
        timeout(Duration::from_millis(500), ctx.done())
            .await
            .is_err(),
        "hyper noticed the close with the body unread; update docs/http.md"
    );
    read_now.notify_one();
    let ok = bounded("body read", read_results.recv())
        .await
        .expect("result");
    assert!(!ok, "the body read fails: the client is gone");
    let cause = ended_within(&ctx, PROMPT).await;
    let abandoned = cause.downcast_ref::<RequestAbandoned>();
    assert_eq!(
        abandoned.map(RequestAbandoned::reason),
        Some(goctx::http::AbandonReason::ConnectionClosed),
        "{cause}"
    );
}

/// The load test: many requests on loopback, bounded concurrency, about
/// 30% of clients disconnecting at random points (while the handler runs,
/// or after the first chunk of a streaming body). Every request context
/// ends with the cause matching what its client did, the base's registry
/// empties, no handler keeps running and the server keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_with_random_disconnects() {
    const REQUESTS: u64 = 10_000;
    const CONCURRENCY: usize = 64;

    let (base, _stop) = goctx::with_cancel_cause(&goctx::background());
    let contexts: Arc<Mutex<HashMap<u64, Ctx>>> = Arc::default();
    let running = Arc::new(AtomicUsize::new(0));

    /// Counts a running handler or body stream while it exists.
    struct Running(Arc<AtomicUsize>);
    impl Running {
        fn new(n: &Arc<AtomicUsize>) -> Self {
            n.fetch_add(1, Ordering::SeqCst);
            Running(n.clone())
        }
    }
    impl Drop for Running {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    let app = Router::new()
        .route(
            "/load",
            get({
                let contexts = contexts.clone();
                let running = running.clone();
                move |ctx: Ctx, uri: http::Uri| async move {
                    let guard = Running::new(&running);
                    let q = query(&uri);
                    let id: u64 = q["id"].parse().expect("id");
                    contexts.lock().expect("lock").insert(id, ctx.clone());
                    match q["mode"].as_str() {
                        // Waits for the client to leave.
                        "hang" => {
                            ctx.done().await;
                            Body::empty()
                        }
                        // One chunk, then waits for the client to leave.
                        "stream" => {
                            let first = futures::stream::once(async {
                                Ok::<_, std::io::Error>(Bytes::from_static(b"first"))
                            });
                            let rest = futures::stream::once(async move {
                                let _guard = guard;
                                ctx.done().await;
                                Ok(Bytes::new())
                            });
                            Body::from_stream(first.chain(rest))
                        }
                        _ => {
                            tokio::task::yield_now().await;
                            let chunks = ["a", "b", "c"]
                                .map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c.as_bytes())));
                            Body::from_stream(futures::stream::iter(chunks))
                        }
                    }
                }
            }),
        )
        .layer(RequestContextLayer::new(&base));
    let addr = serve(app).await;

    // A deterministic spread: 70% complete, 15% hang, 15% stream.
    let mode = |i: u64| match i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60 {
        0..=10 => "ok",
        11..=13 => "hang",
        _ => "stream",
    };
    let start = Instant::now();
    let outcomes: Vec<(u64, &'static str, bool)> = futures::stream::iter(0..REQUESTS)
        .map(|i| async move {
            let mode = mode(i);
            let mut conn = TcpStream::connect(addr).await.expect("connect");
            let req = format!(
                "GET /load?id={i}&mode={mode} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            conn.write_all(req.as_bytes()).await.expect("write");
            let mut buf = Vec::new();
            let complete = match mode {
                "ok" => {
                    timeout(WATCHDOG, conn.read_to_end(&mut buf))
                        .await
                        .expect("response in time")
                        .expect("read");
                    buf.starts_with(b"HTTP/1.1 200") && buf.ends_with(b"0\r\n\r\n")
                }
                "hang" => {
                    // Leave at a random point: before or after the handler started.
                    let us = (i.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 54) * 10; // 0..10 ms
                    tokio::time::sleep(Duration::from_micros(us)).await;
                    false
                }
                _ => {
                    // Leave after the first chunk.
                    let mut chunk = [0u8; 1024];
                    let mut seen = Vec::new();
                    while !seen.windows(5).any(|w| w == b"first") {
                        let n = timeout(WATCHDOG, conn.read(&mut chunk))
                            .await
                            .expect("first chunk in time")
                            .expect("read");
                        assert_ne!(n, 0, "server closed before the first chunk");
                        seen.extend_from_slice(&chunk[..n]);
                    }
                    false
                }
            };
            drop(conn);
            (i, mode, complete)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let elapsed = start.elapsed();

    // Every handler and body stream ends, and every context with it.
    bounded("base registry empties", async {
        while base.dependents() != 0 || running.load(Ordering::SeqCst) != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let contexts = std::mem::take(&mut *contexts.lock().expect("lock"));
    let (mut complete, mut abandoned, mut never_started) = (0, 0, 0);
    for (i, mode, client_complete) in outcomes {
        let Some(ctx) = contexts.get(&i) else {
            // A client that left before its request reached a handler.
            assert_eq!(mode, "hang", "request {i} never reached its handler");
            never_started += 1;
            continue;
        };
        let cause = ctx.cause().expect("every request context ended");
        if mode == "ok" {
            assert!(client_complete, "request {i}: incomplete response");
            assert!(cause.is::<ResponseComplete>(), "request {i}: {cause}");
            complete += 1;
        } else {
            assert!(
                cause.is::<RequestAbandoned>(),
                "request {i} ({mode}): {cause}"
            );
            abandoned += 1;
        }
    }
    eprintln!(
        "load: {REQUESTS} requests, {CONCURRENCY} at once, in {elapsed:?}: \
         {complete} complete, {abandoned} abandoned, {never_started} left before the handler"
    );
    assert!(
        abandoned >= REQUESTS as usize / 5,
        "about 30% disconnect: {abandoned}"
    );

    // The server still answers.
    let (status, _, body) = fetch(
        &http1_client(),
        request(addr, "/load?id=999999&mode=ok", &[]),
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "abc"));
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
}

/// The layer carries a request's id, trace and peer in one context node;
/// to a reader that is the same as a `with_value` of each: the values are
/// found, a later `with_value` of the same type shadows one, and the name
/// lists them. Called directly (no server): no `ConnectInfo`, so no peer.
#[tokio::test]
async fn request_values_read_like_with_value_calls() {
    use goctx::http::{PeerAddr, RequestContextLayer, RequestId, TraceContext};
    use tower::{Layer, ServiceExt};

    let (tx, mut rx) = mpsc::unbounded_channel::<Ctx>();
    let handler = tower::service_fn(
        move |req: Request<goctx::http::RequestBody<Empty<Bytes>>>| {
            let tx = tx.clone();
            async move {
                let ctx = req.extensions().get::<Ctx>().cloned();
                if let Some(ctx) = ctx {
                    let _ = tx.send(ctx);
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(Empty::<Bytes>::new()))
            }
        },
    );
    let service = RequestContextLayer::new(&goctx::background()).layer(handler);
    let req = Request::get("/")
        .header("x-request-id", "req-1")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = bounded("the layered call", service.oneshot(req))
        .await
        .expect("answered");
    let ctx = bounded("the handler", rx.recv())
        .await
        .expect("the handler saw a context");
    assert_eq!(
        ctx.value::<RequestId>().map(RequestId::as_str),
        Some("req-1")
    );
    assert_eq!(
        ctx.value::<TraceContext>()
            .map(TraceContext::trace_id_hex)
            .as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert!(ctx.value::<PeerAddr>().is_none(), "no ConnectInfo, no peer");
    assert!(ctx.value::<u32>().is_none());
    assert_eq!(
        ctx.to_string(),
        format!(
            "context.Background.WithCancel.WithValue({}).WithValue({})",
            std::any::type_name::<RequestId>(),
            std::any::type_name::<TraceContext>()
        ),
        "the name of the with_value calls the node stands for"
    );
    let shadowed = goctx::with_value(&ctx, RequestId::parse("req-2").expect("valid"));
    assert_eq!(
        shadowed.value::<RequestId>().map(RequestId::as_str),
        Some("req-2")
    );
    assert_eq!(
        shadowed.value::<TraceContext>(),
        ctx.value::<TraceContext>(),
        "the rest still found below"
    );
    drop(response);
}
