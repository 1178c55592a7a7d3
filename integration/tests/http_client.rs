//! `goctx::http::PropagateLayer` (over hyper-util's legacy client) and
//! `RequestBuilderExt` (reqwest) against real axum servers on loopback,
//! which run `RequestContextLayer` so both ends of a call are seen. The
//! shapes follow Go's client tests (fail fast before dialing, cancel
//! while waiting for headers or reading the body). Every wait is bounded.

mod common;
use common::waits::{bounded, ended_within};

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::get;
use futures::StreamExt;
use goctx::http::{
    Propagate, PropagateBody, PropagateError, PropagateLayer, RequestAbandoned, RequestBuilderExt,
    RequestId, TraceContext, decode_grpc_timeout, with_context,
};
use goctx::{Cause, Ctx};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tower::{ServiceBuilder, ServiceExt};

/// How soon a disconnect must be seen (Go's tests: "within a second").
const PROMPT: Duration = Duration::from_secs(1);

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
const TRACESTATE: &str = "congo=t61rcWkgMzE";

type Hyper = Client<HttpConnector, PropagateBody<Empty<Bytes>>>;
type ClientError = PropagateError<hyper_util::client::legacy::Error>;

/// Serves `app` on 127.0.0.1:0; the server lives as long as the runtime.
async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// hyper-util's client behind the layer, as an application builds it.
fn propagating(grpc_timeout_for_http: bool) -> Propagate<Hyper> {
    let hyper: Hyper = Client::builder(TokioExecutor::new()).build_http();
    ServiceBuilder::new()
        .layer(PropagateLayer::new().grpc_timeout_for_http(grpc_timeout_for_http))
        .service(hyper)
}

fn request(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Request<Empty<Bytes>> {
    let mut req = Request::get(format!("http://{addr}{path}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Empty::new()).expect("request")
}

/// A context as a server handler has one: a deadline, a trace continued
/// from `TRACEPARENT` (a new span of its own) and a request id.
fn handler_like_ctx(timeout: Duration) -> (Ctx, goctx::CancelFunc, TraceContext) {
    let (ctx, cancel) = goctx::with_timeout(&goctx::background(), timeout);
    let trace = TraceContext::parse(TRACEPARENT, Some(TRACESTATE))
        .expect("valid")
        .child();
    let ctx = goctx::with_value(&ctx, trace.clone());
    let ctx = goctx::with_value(&ctx, RequestId::parse("req-7").expect("valid"));
    (ctx, cancel, trace)
}

/// A server whose `/echo` reports the request's headers and context on
/// `probe`, `/hang` reports the context and never answers, and `/stream`
/// reports it, sends one chunk and then nothing more.
fn probe_app(probe: mpsc::UnboundedSender<(HeaderMap, Ctx)>) -> Router {
    let echo = probe.clone();
    let hang = probe.clone();
    Router::new()
        .route(
            "/echo",
            get(move |ctx: Ctx, headers: HeaderMap| async move {
                echo.send((headers, ctx)).expect("probe");
                "echoed"
            }),
        )
        .route(
            "/hang",
            get(move |ctx: Ctx, headers: HeaderMap| async move {
                hang.send((headers, ctx)).expect("probe");
                std::future::pending::<()>().await;
            }),
        )
        .route(
            "/stream",
            get(move |ctx: Ctx, headers: HeaderMap| async move {
                probe.send((headers, ctx)).expect("probe");
                let first = futures::stream::once(async { Ok::<_, Infallible>("first") });
                Body::from_stream(first.chain(futures::stream::pending()))
            }),
        )
        .layer(goctx::http::RequestContextLayer::new(&goctx::background()))
}

/// A listener that only counts the connections it accepts.
async fn counting_listener() -> (SocketAddr, Arc<AtomicUsize>, Arc<Notify>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let notify = Arc::new(Notify::new());
    tokio::spawn({
        let (accepted, notify) = (accepted.clone(), notify.clone());
        async move {
            let mut conns = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                conns.push(conn); // held open: a request would hang, not fail
                accepted.fetch_add(1, Ordering::SeqCst);
                notify.notify_one();
            }
        }
    });
    (addr, accepted, notify)
}

fn assert_ctx_error<E: std::fmt::Debug>(
    err: &PropagateError<E>,
    want: goctx::Error,
    cause: impl Fn(&Cause) -> bool,
) {
    assert_eq!(err.ctx_err(), Some(want), "{err:?}");
    assert!(cause(err.cause().expect("a cause")), "{err:?}");
}

/// Go: the transport's `roundTrip` returns `context.Cause(ctx)` before
/// dialing. A canceled and an expired context, through the tower layer
/// and through reqwest: the error carries the context's error and cause,
/// and the listener never sees a connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn done_ctx_fails_fast_without_connecting() {
    let (addr, accepted, notify) = counting_listener().await;
    let (canceled, cancel) = goctx::with_cancel_cause(&goctx::background());
    cancel.cancel_with_cause("user gave up");
    let (expired, _c) = goctx::with_timeout(&goctx::background(), Duration::ZERO);
    let reqwest = reqwest::Client::new();

    for (ctx, want, cause) in [
        (&canceled, goctx::Error::Canceled, "user gave up"),
        (
            &expired,
            goctx::Error::DeadlineExceeded,
            "context deadline exceeded",
        ),
    ] {
        let req = with_context(request(addr, "/", &[]), ctx);
        let err: ClientError = bounded("tower call", propagating(false).oneshot(req))
            .await
            .expect_err("fails fast");
        assert_ctx_error(&err, want, |c| c.to_string() == cause);

        let err = bounded(
            "reqwest call",
            reqwest.get(format!("http://{addr}/")).context(ctx).send(),
        )
        .await
        .expect_err("fails fast");
        assert_ctx_error(&err, want, |c| c.to_string() == cause);
    }

    // The counter works: a connection made now is the first it counts.
    let _probe = TcpStream::connect(addr).await.expect("connect");
    bounded("probe accepted", notify.notified()).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "only the probe connected"
    );
}

/// Go: TestClientCancel-style. Canceling the context while the server's
/// handler runs ends the call with the context's cause, and the server's
/// request context ends too (`RequestAbandoned`) within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_request_aborts_call_and_server_ctx() {
    let (probe, mut seen) = mpsc::unbounded_channel();
    let addr = serve(probe_app(probe)).await;
    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    let call =
        tokio::spawn(propagating(false).oneshot(with_context(request(addr, "/hang", &[]), &ctx)));

    let (_, server_ctx) = bounded("handler entered", seen.recv()).await.expect("ctx");
    cancel.cancel_with_cause("user gave up");
    let err = bounded("call ends", call)
        .await
        .expect("join")
        .expect_err("canceled");
    assert_ctx_error(&err, goctx::Error::Canceled, |c| {
        c.to_string() == "user gave up"
    });
    let cause = ended_within(&server_ctx, PROMPT).await;
    assert!(cause.is::<RequestAbandoned>(), "{cause}");
}

/// A 300 ms context becomes a `grpc-timeout` in (0, 300 ms] on a gRPC
/// request, none on plain HTTP unless enabled; against a server that
/// never answers, the call fails with `DeadlineExceeded` at about 300 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_becomes_grpc_timeout_and_deadline_exceeded() {
    let (probe, mut seen) = mpsc::unbounded_channel();
    let addr = serve(probe_app(probe)).await;
    let budget = Duration::from_millis(300);
    let grpc = [("content-type", "application/grpc")];

    for (layer_on, headers, sent) in [
        (false, &grpc[..], true),
        (false, &[][..], false),
        (true, &[][..], true),
    ] {
        let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), budget);
        let req = with_context(request(addr, "/echo", headers), &ctx);
        let res = bounded("echo", propagating(layer_on).oneshot(req))
            .await
            .expect("response");
        assert_eq!(res.status(), StatusCode::OK);
        let (headers, server_ctx) = bounded("echo probe", seen.recv()).await.expect("probe");
        let value = headers
            .get("grpc-timeout")
            .map(|v| v.to_str().expect("ascii").to_owned());
        assert_eq!(value.is_some(), sent, "layer_on={layer_on} {headers:?}");
        if let Some(value) = value {
            let d = decode_grpc_timeout(&value).expect("valid grpc-timeout");
            assert!(!d.is_zero() && d <= budget, "{value}");
            assert!(server_ctx.deadline().is_some(), "the server read it");
        }
    }

    let start = Instant::now();
    let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), budget);
    let req = with_context(request(addr, "/hang", &grpc), &ctx);
    let err = bounded("slow call", propagating(false).oneshot(req))
        .await
        .expect_err("deadline");
    let elapsed = start.elapsed();
    assert!(err.is_deadline_exceeded(), "{err:?}");
    assert!(
        elapsed >= budget && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
}

/// Go: the transport's `readLoop` cancels on `ctx.Done()` while the body
/// is read. The first chunk arrives; the context is canceled; the next
/// read fails with the context's cause, the one after ends the body, and
/// the server sees its client leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_during_body_aborts_read() {
    let (probe, mut seen) = mpsc::unbounded_channel();
    let addr = serve(probe_app(probe)).await;
    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    let req = with_context(request(addr, "/stream", &[]), &ctx);
    let res = bounded("response", propagating(false).oneshot(req))
        .await
        .expect("response");
    let (_, server_ctx) = bounded("handler entered", seen.recv()).await.expect("ctx");
    let mut body = res.into_body();

    let first = bounded("first chunk", body.frame())
        .await
        .expect("a frame")
        .expect("ok");
    assert_eq!(first.into_data().expect("data"), "first");
    cancel.cancel_with_cause("reader gave up");
    let err = bounded("aborted read", body.frame())
        .await
        .expect("an error")
        .expect_err("error");
    assert_ctx_error(&err, goctx::Error::Canceled, |c| {
        c.to_string() == "reader gave up"
    });
    assert!(
        body.frame().await.is_none(),
        "the body ends after the error"
    );
    let cause = ended_within(&server_ctx, PROMPT).await;
    assert!(cause.is::<RequestAbandoned>(), "{cause}");
}

/// What the two-hop tests see: A's context and how much time it had on
/// entry (if it had a deadline); B's the same; the result of A's spawned
/// call to B.
struct Hops {
    a: mpsc::UnboundedReceiver<(Ctx, Option<Duration>)>,
    b: mpsc::UnboundedReceiver<(Ctx, Option<Duration>)>,
    a_call: mpsc::UnboundedReceiver<Result<StatusCode, ClientError>>,
    addr: SocketAddr,
}

/// A → B, both with `RequestContextLayer`. A's `/call` works 100 ms, then
/// calls B's `/info` with its request context; A's `/spawn` hands the call
/// to B's `/hang` to a spawned task (which only the context can stop) and
/// waits forever.
async fn two_hops() -> Hops {
    let (b_probe, b) = mpsc::unbounded_channel();
    let remaining = |ctx: &Ctx| {
        ctx.deadline()
            .map(|at| at.saturating_duration_since(Instant::now()))
    };
    let b_hang = b_probe.clone();
    let b_app = Router::new()
        .route(
            "/info",
            get(move |ctx: Ctx| async move {
                b_probe.send((ctx.clone(), remaining(&ctx))).expect("probe");
                "b"
            }),
        )
        .route(
            "/hang",
            get(move |ctx: Ctx| async move {
                b_hang.send((ctx.clone(), remaining(&ctx))).expect("probe");
                std::future::pending::<()>().await;
            }),
        )
        .layer(goctx::http::RequestContextLayer::new(&goctx::background()));
    let b_addr = serve(b_app).await;

    let (a_probe, a) = mpsc::unbounded_channel();
    let (a_result, a_call) = mpsc::unbounded_channel();
    let client = propagating(true);
    let (a_spawn, spawn_client) = (a_probe.clone(), client.clone());
    let a_app = Router::new()
        .route(
            "/call",
            get(move |ctx: Ctx| async move {
                a_probe.send((ctx.clone(), remaining(&ctx))).expect("probe");
                tokio::time::sleep(Duration::from_millis(100)).await; // A's own work
                let req = with_context(request(b_addr, "/info", &[]), &ctx);
                let res = client.oneshot(req).await.expect("B answers");
                res.status()
            }),
        )
        .route(
            "/spawn",
            get(move |ctx: Ctx| async move {
                a_spawn.send((ctx.clone(), remaining(&ctx))).expect("probe");
                let req = with_context(request(b_addr, "/hang", &[]), &ctx);
                tokio::spawn(async move {
                    let res = spawn_client.oneshot(req).await;
                    let _ = a_result.send(res.map(|r| r.status()));
                });
                std::future::pending::<()>().await;
            }),
        )
        .layer(goctx::http::RequestContextLayer::new(&goctx::background()));
    let addr = serve(a_app).await;
    Hops { a, b, a_call, addr }
}

/// Two hops: B's budget is A's less A's own work; B continues the same
/// trace with A's span as its parent, `tracestate` and `x-request-id`
/// unchanged (the caller's explicit headers reach A as they are).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hop_budget_trace_and_request_id() {
    let mut hops = two_hops().await;
    let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), Duration::from_secs(3));
    let headers = [
        ("traceparent", TRACEPARENT),
        ("tracestate", TRACESTATE),
        ("x-request-id", "req-42"),
    ];
    let req = with_context(request(hops.addr, "/call", &headers), &ctx);
    let res = bounded("A answers", propagating(true).oneshot(req))
        .await
        .expect("response");
    assert_eq!(res.status(), StatusCode::OK);

    let (a_ctx, a_left) = bounded("A entered", hops.a.recv()).await.expect("A");
    let (b_ctx, b_left) = bounded("B entered", hops.b.recv()).await.expect("B");
    let (a_left, b_left) = (a_left.expect("A's deadline"), b_left.expect("B's deadline"));
    assert!(a_left <= Duration::from_secs(3), "{a_left:?}");
    assert!(
        b_left <= a_left - Duration::from_millis(100),
        "B {b_left:?} vs A {a_left:?} less 100 ms of work"
    );
    assert!(
        b_left > a_left - Duration::from_secs(1),
        "B {b_left:?} vs A {a_left:?}"
    );

    let a_trace = a_ctx.value::<TraceContext>().expect("A's trace");
    let b_trace = b_ctx.value::<TraceContext>().expect("B's trace");
    assert_eq!(a_trace.trace_id_hex(), TRACE_ID);
    assert_eq!(a_trace.parent_span_id(), Some(PARENT_ID));
    assert_eq!(b_trace.trace_id_hex(), TRACE_ID, "same trace");
    assert_eq!(
        b_trace.parent_span_id(),
        Some(a_trace.span_id()),
        "A's span is B's parent"
    );
    assert_ne!(b_trace.parent_span_id(), Some(PARENT_ID), "a new parent id");
    assert_eq!(b_trace.tracestate(), Some(TRACESTATE));
    assert!(b_trace.sampled());
    let b_id = b_ctx.value::<RequestId>().expect("B's request id");
    assert_eq!(b_id.as_str(), "req-42");
}

/// Two hops: a client that leaves A ends A's context, which aborts A's
/// call to B (made from a spawned task, so only the context can stop it)
/// with `RequestAbandoned` as the cause, and B's context ends within a
/// second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hop_client_disconnect_cancels_b() {
    let mut hops = two_hops().await;
    let plain: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let call = tokio::spawn(plain.request(request(hops.addr, "/spawn", &[])));
    let (a_ctx, _) = bounded("A entered", hops.a.recv()).await.expect("A");
    let (b_ctx, b_left) = bounded("B entered", hops.b.recv()).await.expect("B");
    assert_eq!(b_left, None, "no deadline anywhere");

    call.abort(); // the client goes away
    let cause = ended_within(&a_ctx, PROMPT).await;
    assert!(cause.is::<RequestAbandoned>(), "A: {cause}");
    let cause = ended_within(&b_ctx, PROMPT).await;
    assert!(cause.is::<RequestAbandoned>(), "B: {cause}");
    let err = bounded("A's call ends", hops.a_call.recv())
        .await
        .expect("result")
        .expect_err("aborted");
    assert_ctx_error(&err, goctx::Error::Canceled, |c| c.is::<RequestAbandoned>());
}

/// Without a context nothing is added and the call is the inner client's;
/// with one, headers the caller set win (a `grpc-timeout` only when it is
/// no longer than the time left).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ctx_passes_through_and_caller_headers_win() {
    let (probe, mut seen) = mpsc::unbounded_channel();
    let addr = serve(probe_app(probe)).await;
    let grpc = ("content-type", "application/grpc");

    let req = request(addr, "/echo", &[grpc, ("x-custom", "1")]);
    let res = bounded("plain call", propagating(true).oneshot(req))
        .await
        .expect("response");
    let body = bounded("body", res.into_body().collect())
        .await
        .expect("body");
    assert_eq!(body.to_bytes(), "echoed");
    let (headers, _) = bounded("probe", seen.recv()).await.expect("probe");
    assert_eq!(headers["x-custom"], "1");
    for name in ["grpc-timeout", "traceparent", "tracestate", "x-request-id"] {
        assert!(!headers.contains_key(name), "{name} added: {headers:?}");
    }

    let (ctx, _cancel, _) = handler_like_ctx(Duration::from_secs(5));
    let mine = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    for (theirs, kept) in [("1S", true), ("1H", false), ("5x", false)] {
        let headers = [
            grpc,
            ("grpc-timeout", theirs),
            ("traceparent", mine),
            ("x-request-id", "mine"),
        ];
        let req = with_context(request(addr, "/echo", &headers), &ctx);
        bounded("call", propagating(false).oneshot(req))
            .await
            .expect("response");
        let (headers, _) = bounded("probe", seen.recv()).await.expect("probe");
        assert_eq!(headers["traceparent"], mine);
        assert!(!headers.contains_key("tracestate"));
        assert_eq!(headers["x-request-id"], "mine");
        let sent = headers["grpc-timeout"].to_str().expect("ascii");
        if kept {
            assert_eq!(sent, theirs);
        } else {
            let d = decode_grpc_timeout(sent).expect("valid");
            assert!(d <= Duration::from_secs(5), "{sent}");
        }
    }
}

/// reqwest: the context's trace, request id and (on gRPC requests or when
/// enabled) deadline are sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_sends_headers() {
    let (probe, mut seen) = mpsc::unbounded_channel();
    let addr = serve(probe_app(probe)).await;
    let http = reqwest::Client::new();
    let (ctx, _cancel, trace) = handler_like_ctx(Duration::from_secs(5));
    let url = format!("http://{addr}/echo");

    for (grpc, on, sent) in [
        (false, false, false),
        (false, true, true),
        (true, false, true),
    ] {
        let mut req = http.get(&url);
        if grpc {
            req = req.header("content-type", "application/grpc+proto");
        }
        let resp = bounded("send", req.context(&ctx).grpc_timeout_for_http(on).send())
            .await
            .expect("response");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(bounded("text", resp.text()).await.expect("text"), "echoed");
        let (headers, server_ctx) = bounded("probe", seen.recv()).await.expect("probe");
        assert_eq!(headers["traceparent"], trace.traceparent().as_str());
        assert!(
            headers["traceparent"]
                .to_str()
                .expect("ascii")
                .contains(TRACE_ID)
        );
        assert_eq!(headers["tracestate"], TRACESTATE);
        assert_eq!(headers["x-request-id"], "req-7");
        assert_eq!(
            headers.contains_key("grpc-timeout"),
            sent,
            "grpc={grpc} on={on}"
        );
        if sent {
            let d = decode_grpc_timeout(headers["grpc-timeout"].to_str().expect("ascii"))
                .expect("valid");
            assert!(!d.is_zero() && d <= Duration::from_secs(5));
            assert!(server_ctx.deadline().is_some());
        }
        let server_trace = server_ctx.value::<TraceContext>().expect("trace");
        assert_eq!(server_trace.parent_span_id(), Some(trace.span_id()));
    }
}

/// reqwest: canceling while the handler runs ends the call with the
/// context's cause and the server's context with `RequestAbandoned`; a
/// 300 ms context against a server that never answers fails with
/// `DeadlineExceeded` (not reqwest's timeout) at about 300 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_cancel_mid_request_and_deadline() {
    let (probe, mut seen) = mpsc::unbounded_channel();
    let addr = serve(probe_app(probe)).await;
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/hang");

    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    let call = tokio::spawn({
        let (req, ctx) = (http.get(&url), ctx.clone());
        async move { req.context(&ctx).send().await }
    });
    let (_, server_ctx) = bounded("handler entered", seen.recv()).await.expect("ctx");
    cancel.cancel_with_cause("user gave up");
    let err = bounded("call ends", call)
        .await
        .expect("join")
        .expect_err("canceled");
    assert_ctx_error(&err, goctx::Error::Canceled, |c| {
        c.to_string() == "user gave up"
    });
    let cause = ended_within(&server_ctx, PROMPT).await;
    assert!(cause.is::<RequestAbandoned>(), "{cause}");

    let budget = Duration::from_millis(300);
    let start = Instant::now();
    let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), budget);
    let err = bounded("slow call", http.get(&url).context(&ctx).send())
        .await
        .expect_err("deadline");
    let elapsed = start.elapsed();
    assert!(err.is_deadline_exceeded(), "{err:?}");
    assert!(
        elapsed >= budget && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
}

/// reqwest (issue 16, input 6): a client-wide timeout of 1 s is kept when
/// the context allows 3 s. The body's six chunks, 400 ms apart, would take
/// about 2 s; the call fails with reqwest's own timeout instead, as it
/// does without `.context()`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_client_timeout_survives_a_longer_context() {
    let app = Router::new().route(
        "/slow",
        get(|| async {
            let chunks = futures::stream::iter(0..6).then(|i| async move {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                }
                Ok::<_, Infallible>(Bytes::from_static(b"chunk\n"))
            });
            Body::from_stream(chunks)
        }),
    );
    let addr = serve(app).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("client");
    let url = format!("http://{addr}/slow");

    let plain = bounded("without context", async {
        http.get(&url).send().await?.bytes().await
    })
    .await;
    assert!(
        plain.is_err_and(|e| e.is_timeout()),
        "reqwest alone times out"
    );

    let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), Duration::from_secs(3));
    let with_ctx = bounded("with context", async {
        http.get(&url).context(&ctx).send().await?.bytes().await
    })
    .await;
    match with_ctx {
        Err(PropagateError::Inner(e)) => assert!(e.is_timeout(), "{e:?}"),
        other => panic!("expected reqwest's own timeout, got {other:?}"),
    }
    assert_eq!(ctx.err(), None, "the context had time left");
}

/// reqwest (issue 16, input 7): `grpc-timeout` carries the request's own
/// 200 ms timeout, not the 5 s left in the context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_grpc_timeout_is_the_shortest_budget() {
    let (probe, mut seen) = mpsc::unbounded_channel();
    let addr = serve(probe_app(probe)).await;
    let http = reqwest::Client::new();
    let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), Duration::from_secs(5));
    let url = format!("http://{addr}/echo");

    for (own, at_most) in [
        (Some(Duration::from_millis(200)), Duration::from_millis(200)),
        (Some(Duration::from_secs(30)), Duration::from_secs(5)),
        (None, Duration::from_secs(5)),
    ] {
        let mut req = http.get(&url).header("content-type", "application/grpc");
        if let Some(own) = own {
            req = req.timeout(own);
        }
        let resp = bounded("send", req.context(&ctx).send())
            .await
            .expect("response");
        assert_eq!(resp.status(), StatusCode::OK);
        let (headers, _) = bounded("probe", seen.recv()).await.expect("probe");
        let sent =
            decode_grpc_timeout(headers["grpc-timeout"].to_str().expect("ascii")).expect("valid");
        assert!(
            !sent.is_zero() && sent <= at_most,
            "own {own:?}: sent {sent:?}, at most {at_most:?}"
        );
        assert!(sent > at_most / 2, "own {own:?}: sent {sent:?}");
    }
}

/// reqwest: canceling between two chunks fails the next `chunk()` with
/// the context's cause; the server sees its client leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_cancel_during_body_aborts_read() {
    let (probe, mut seen) = mpsc::unbounded_channel();
    let addr = serve(probe_app(probe)).await;
    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    let mut resp = bounded(
        "response",
        reqwest::Client::new()
            .get(format!("http://{addr}/stream"))
            .context(&ctx)
            .send(),
    )
    .await
    .expect("response");
    let (_, server_ctx) = bounded("handler entered", seen.recv()).await.expect("ctx");
    let first = bounded("first chunk", resp.chunk()).await.expect("ok");
    assert_eq!(first.as_deref(), Some(&b"first"[..]));
    cancel.cancel_with_cause("reader gave up");
    let err = bounded("aborted read", resp.chunk())
        .await
        .expect_err("error");
    assert_ctx_error(&err, goctx::Error::Canceled, |c| {
        c.to_string() == "reader gave up"
    });
    drop(resp);
    let cause = ended_within(&server_ctx, PROMPT).await;
    assert!(cause.is::<RequestAbandoned>(), "{cause}");
}

/// The client types are `Send`, `Sync` and `Debug` (futures and bodies
/// when what they wrap is), and `Unpin` where what they wrap is.
#[test]
fn client_types_are_send_sync_debug() {
    fn send_sync_debug<T: Send + Sync + std::fmt::Debug + Unpin>() {}
    type Inner = std::future::Ready<Result<http::Response<String>, std::io::Error>>;
    send_sync_debug::<PropagateLayer>();
    send_sync_debug::<Propagate<Hyper>>();
    send_sync_debug::<goctx::http::PropagateFuture<Inner>>();
    send_sync_debug::<goctx::http::PropagateBody<String>>();
    send_sync_debug::<PropagateError<std::io::Error>>();
    send_sync_debug::<goctx::http::ContextRequestBuilder>();
    send_sync_debug::<goctx::http::ContextResponse>();
}
