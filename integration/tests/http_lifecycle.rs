//! The request lifecycle under the traffic that public bug reports found
//! breaking it (issue 16): exact-length streams, request bodies that fail
//! or are reset, a fast answer after a reset, contexts a handler derives,
//! and the reason every `RequestAbandoned` carries. Real axum servers on
//! loopback, HTTP/1 and HTTP/2; raw sockets and raw h2 frames where a
//! client library would not send what a real client sends. Every wait is
//! bounded.

mod common;
use common::loopback::serve;
use common::waits::{bounded, ended_within};

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request as AxumRequest;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use goctx::http::{AbandonReason, RequestAbandoned, RequestContextLayer, ResponseComplete};
use goctx::{Cause, Ctx, Error};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// How soon an end must be seen.
const PROMPT: Duration = Duration::from_secs(1);

/// The reason of a `RequestAbandoned` cause; fails on any other cause.
fn reason(cause: &Cause) -> AbandonReason {
    match cause.downcast_ref::<RequestAbandoned>() {
        Some(abandoned) => abandoned.reason(),
        None => panic!("expected RequestAbandoned, got {cause:?} ({cause})"),
    }
}

/// `GET path` with `headers` over HTTP/1 (or HTTP/2 with prior
/// knowledge): the response head, its body unread.
async fn fetch_head(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    http2: bool,
) -> http::Response<hyper::body::Incoming> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(http2)
        .build_http();
    let mut req = Request::get(format!("http://{addr}{path}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Empty::new()).expect("request");
    bounded("response", client.request(req))
        .await
        .expect("sent")
}

/// What a handler saw at the moment its body read returned.
#[derive(Debug)]
struct AtBodyError {
    read_failed: bool,
    err: Option<Error>,
    cause: Option<Cause>,
}

/// `POST /upload`: reads the whole body; reports the context at the
/// moment the read returns (no `.await` in between), then answers 201 at
/// once, as a handler that ignores the error would.
fn upload_app(probe: mpsc::UnboundedSender<(Ctx, AtBodyError)>) -> Router {
    Router::new()
        .route(
            "/upload",
            post(move |ctx: Ctx, body: Body| async move {
                let read = body.collect().await;
                let seen = AtBodyError {
                    read_failed: read.is_err(),
                    err: ctx.err(),
                    cause: ctx.cause(),
                };
                let _ = probe.send((ctx, seen));
                (StatusCode::CREATED, "stored")
            }),
        )
        .layer(RequestContextLayer::new(&goctx::background()))
}

/// A `content-length: 3000` response streamed as three 1000-byte chunks.
fn exact_length_app(probe: mpsc::UnboundedSender<Ctx>) -> Router {
    Router::new()
        .route(
            "/exact",
            get(move |ctx: Ctx| async move {
                let _ = probe.send(ctx);
                let chunks = (0..3).map(|i| Ok::<_, Infallible>(Bytes::from(vec![b'a' + i; 1000])));
                Response::builder()
                    .header("content-length", "3000")
                    .body(Body::from_stream(futures::stream::iter(chunks)))
                    .expect("response")
            }),
        )
        .layer(RequestContextLayer::new(&goctx::background()))
}

async fn exact_length_completes(http2: bool) {
    let (probe, mut seen) = mpsc::unbounded_channel();
    let addr = serve(exact_length_app(probe)).await;
    let res = fetch_head(addr, "/exact", &[], http2).await;
    assert_eq!(res.headers()["content-length"], "3000");
    let body = bounded("body", res.into_body().collect())
        .await
        .expect("read");
    assert_eq!(body.to_bytes().len(), 3000);

    let ctx = bounded("handler ran", seen.recv()).await.expect("ctx");
    let cause = ended_within(&ctx, PROMPT).await;
    assert!(cause.is::<ResponseComplete>(), "{cause}");
}

/// Input 1: an exact-length stream is complete once its declared length is
/// written, though hyper's HTTP/1 server never polls it to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_length_stream_completes_http1() {
    exact_length_completes(false).await;
}

/// Input 1, over HTTP/2 (where hyper does poll to the end): the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_length_stream_completes_http2() {
    exact_length_completes(true).await;
}

/// Input 2: the client declares 1 MiB, sends 64 KiB and closes. When the
/// handler's body read fails, its context is already abandoned (the
/// connection closed), and the 201 it answers afterwards changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_cut_off_abandons_before_the_read_fails_http1() {
    let (probe, mut seen) = mpsc::unbounded_channel();
    let addr = serve(upload_app(probe)).await;

    let mut conn = TcpStream::connect(addr).await.expect("connect");
    let head = "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n";
    conn.write_all(head.as_bytes()).await.expect("head");
    conn.write_all(&vec![b'x'; 64 * 1024])
        .await
        .expect("64 KiB");
    drop(conn);

    let (ctx, at) = bounded("handler's read returned", seen.recv())
        .await
        .expect("probe");
    assert!(at.read_failed, "{at:?}");
    assert_eq!(at.err, Some(Error::Canceled), "{at:?}");
    let cause = at.cause.expect("cause at the read");
    assert_eq!(reason(&cause), AbandonReason::ConnectionClosed, "{cause}");
    assert_eq!(
        cause.to_string(),
        "request abandoned before its response was complete: \
         the connection closed while the request body was read"
    );
    // The handler's answer did not turn it into a complete response.
    let end = ended_within(&ctx, PROMPT).await;
    assert_eq!(reason(&end), AbandonReason::ConnectionClosed);
}

/// Opens an HTTP/2 connection with raw h2 and starts `POST /upload`
/// without END_STREAM; returns the stream's sending half and the response.
async fn h2_upload(addr: SocketAddr) -> (h2::SendStream<Bytes>, h2::client::ResponseFuture) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = bounded("h2 ready", client.ready()).await.expect("ready");
    let req = Request::post(format!("http://{addr}/upload"))
        .body(())
        .expect("request");
    let (response, stream) = client.send_request(req, false).expect("send headers");
    (stream, response)
}

/// Input 3: HEADERS without END_STREAM, 64 KiB of DATA, RST_STREAM(CANCEL):
/// when the body read fails, the context is already abandoned, with the
/// reset's code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_reset_abandons_before_the_read_fails_http2() {
    let (probe, mut seen) = mpsc::unbounded_channel();
    let addr = serve(upload_app(probe)).await;
    let (mut stream, _response) = h2_upload(addr).await;
    stream
        .send_data(Bytes::from(vec![b'x'; 64 * 1024]), false)
        .expect("data");
    stream.send_reset(h2::Reason::CANCEL);

    let (ctx, at) = bounded("handler's read returned", seen.recv())
        .await
        .expect("probe");
    assert!(at.read_failed, "{at:?}");
    assert_eq!(at.err, Some(Error::Canceled), "{at:?}");
    let cause = at.cause.expect("cause at the read");
    assert_eq!(
        reason(&cause),
        AbandonReason::StreamReset { code: Some(0x8) },
        "{cause}"
    );
    let end = ended_within(&ctx, PROMPT).await;
    assert!(end.is::<RequestAbandoned>(), "{end}");
}

/// Input 4: two 1 KiB DATA frames, then RST_STREAM(CANCEL); the handler's
/// `collect()` fails and it answers 201 at once. The client never got that
/// answer, so the request ends abandoned, not complete (hyper#3681).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_then_fast_answer_is_abandoned_http2() {
    let (probe, mut seen) = mpsc::unbounded_channel();
    let addr = serve(upload_app(probe)).await;
    let (mut stream, _response) = h2_upload(addr).await;
    for _ in 0..2 {
        stream
            .send_data(Bytes::from(vec![b'y'; 1024]), false)
            .expect("data");
    }
    stream.send_reset(h2::Reason::CANCEL);

    let (ctx, at) = bounded("handler answered", seen.recv())
        .await
        .expect("probe");
    assert!(at.read_failed, "{at:?}");
    let end = ended_within(&ctx, PROMPT).await;
    assert_eq!(
        reason(&end),
        AbandonReason::StreamReset { code: Some(0x8) },
        "{end}"
    );
    assert_eq!(
        end.to_string(),
        "request abandoned before its response was complete: \
         the client reset the HTTP/2 stream (error code 0x8)"
    );
}

/// A malformed chunked body is a body failure of another kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chunked_body_is_request_body_failed() {
    let (probe, mut seen) = mpsc::unbounded_channel();
    let addr = serve(upload_app(probe)).await;

    let mut conn = TcpStream::connect(addr).await.expect("connect");
    let head = "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    conn.write_all(head.as_bytes()).await.expect("head");
    conn.write_all(b"zz\r\nnot a chunk\r\n")
        .await
        .expect("bad chunk");

    let (_ctx, at) = bounded("handler's read returned", seen.recv())
        .await
        .expect("probe");
    assert!(at.read_failed, "{at:?}");
    let cause = at.cause.expect("cause at the read");
    assert_eq!(reason(&cause), AbandonReason::RequestBodyFailed, "{cause}");
    let mut rest = Vec::new();
    let _ = bounded("server closes", conn.read_to_end(&mut rest)).await;
}

/// Input 8: a handler derives its own context, Go style, and the client
/// leaves. Everything derived from the request context ends with the
/// request's cause, not `CancelFuncDropped` from the handler's `_cancel`
/// being dropped with its future.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_context_inherits_the_abandonment() {
    let (probe, mut seen) = mpsc::unbounded_channel::<Ctx>();
    let (saw, mut saw_rx) = mpsc::unbounded_channel::<Cause>();
    let app = Router::new()
        .route(
            "/hang",
            get(move |ctx: Ctx| async move {
                let (child, _cancel) = goctx::with_timeout(&ctx, Duration::from_secs(60));
                let watched = child.clone();
                let saw = saw.clone();
                let _query = goctx::after_func(&child, move || {
                    let _ = saw.send(watched.cause().expect("cause"));
                });
                let _ = probe.send(child);
                std::future::pending::<()>().await;
            }),
        )
        .layer(RequestContextLayer::new(&goctx::background()));
    let addr = serve(app).await;

    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.write_all(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let child = bounded("handler entered", seen.recv())
        .await
        .expect("child");
    drop(conn);

    let cause = ended_within(&child, PROMPT).await;
    assert_eq!(
        reason(&cause),
        AbandonReason::ResponseFutureDropped,
        "{cause}"
    );
    let in_callback = bounded("after_func ran", saw_rx.recv())
        .await
        .expect("cause");
    assert!(in_callback.is::<RequestAbandoned>(), "{in_callback}");
}

/// Input 8, completing: a context the handler derived and handed to its
/// streaming body (with its `CancelFunc`) ends `ResponseComplete` with
/// the response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_context_held_by_the_body_completes_with_it() {
    let (probe, mut seen) = mpsc::unbounded_channel::<Ctx>();
    let app = Router::new()
        .route(
            "/stream",
            get(move |ctx: Ctx| async move {
                let (child, cancel) = goctx::with_timeout(&ctx, Duration::from_secs(60));
                let _ = probe.send(child);
                let chunks = futures::stream::iter(["a", "b"]).map(move |s| {
                    let _held = &cancel;
                    Ok::<_, Infallible>(Bytes::from(s))
                });
                Body::from_stream(chunks)
            }),
        )
        .layer(RequestContextLayer::new(&goctx::background()));
    let addr = serve(app).await;
    let res = fetch_head(addr, "/stream", &[], false).await;
    let body = bounded("body", res.into_body().collect())
        .await
        .expect("read");
    assert_eq!(&body.to_bytes()[..], b"ab");
    let child = bounded("handler ran", seen.recv()).await.expect("child");
    let cause = ended_within(&child, PROMPT).await;
    assert!(cause.is::<ResponseComplete>(), "{cause}");
}

/// Reason `ResponseFutureDropped`, from an outer layer: a timeout
/// middleware outside the request context layer gives up on the handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outer_timeout_is_response_future_dropped() {
    async fn give_up_fast(req: AxumRequest, next: Next) -> Response {
        match tokio::time::timeout(Duration::from_millis(50), next.run(req)).await {
            Ok(res) => res,
            Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        }
    }
    let (probe, mut seen) = mpsc::unbounded_channel::<Ctx>();
    let app = Router::new()
        .route(
            "/hang",
            get(move |ctx: Ctx| async move {
                let _ = probe.send(ctx);
                std::future::pending::<()>().await;
            }),
        )
        .layer(RequestContextLayer::new(&goctx::background()))
        .layer(middleware::from_fn(give_up_fast));
    let addr = serve(app).await;
    let res = fetch_head(addr, "/hang", &[], false).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ctx = bounded("handler entered", seen.recv()).await.expect("ctx");
    let cause = ended_within(&ctx, PROMPT).await;
    assert_eq!(
        reason(&cause),
        AbandonReason::ResponseFutureDropped,
        "{cause}"
    );
}

/// Reason `ResponseBodyDropped`: the client reads one chunk of an endless
/// stream and goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_stops_reading_is_response_body_dropped() {
    let (probe, mut seen) = mpsc::unbounded_channel::<Ctx>();
    let app = Router::new()
        .route(
            "/endless",
            get(move |ctx: Ctx| async move {
                let _ = probe.send(ctx);
                let ticks = futures::stream::unfold((), |()| async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Some((Ok::<_, Infallible>(Bytes::from_static(b"tick\n")), ()))
                });
                Body::from_stream(ticks)
            }),
        )
        .layer(RequestContextLayer::new(&goctx::background()));
    let addr = serve(app).await;
    let res = fetch_head(addr, "/endless", &[], false).await;
    let mut body = res.into_body();
    let first = bounded("first chunk", body.frame()).await.expect("frame");
    assert!(first.expect("ok").is_data());
    drop(body);

    let ctx = bounded("handler ran", seen.recv()).await.expect("ctx");
    let cause = ended_within(&ctx, Duration::from_secs(3)).await;
    assert_eq!(
        reason(&cause),
        AbandonReason::ResponseBodyDropped,
        "{cause}"
    );
}

/// Reason `ServiceError`: the inner service fails instead of answering.
#[tokio::test]
async fn service_error_is_its_own_reason() {
    use tower::{Layer, ServiceExt, service_fn};

    let (probe, mut seen) = mpsc::unbounded_channel::<Ctx>();
    let svc = RequestContextLayer::new(&goctx::background()).layer(service_fn(
        move |req: Request<goctx::http::RequestBody<Full<Bytes>>>| {
            let probe = probe.clone();
            async move {
                let ctx = req.extensions().get::<Ctx>().cloned().expect("ctx");
                let _ = probe.send(ctx);
                Err::<Response<Full<Bytes>>, _>(std::io::Error::other("backend down"))
            }
        },
    ));
    let req = Request::get("/")
        .body(Full::new(Bytes::new()))
        .expect("req");
    let result = svc.oneshot(req).await;
    assert!(result.is_err());
    let ctx = seen.recv().await.expect("ctx");
    let cause = ctx.cause().expect("ended");
    assert_eq!(reason(&cause), AbandonReason::ServiceError, "{cause}");
}

/// The response carries the request's id: the client's, else the one the
/// layer made when something read it; a handler's own header wins; the
/// setting turns it off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_echoes_the_request_id() {
    let app = |echo: bool| {
        Router::new()
            .route(
                "/",
                get(|ctx: Ctx| async move {
                    ctx.value::<goctx::http::RequestId>()
                        .expect("id")
                        .to_string()
                }),
            )
            .route(
                "/own",
                get(|| async { ([("x-request-id", "handler-chose")], "own") }),
            )
            .route("/quiet", get(|| async { "no id read" }))
            .layer(RequestContextLayer::new(&goctx::background()).echo_request_id(echo))
    };
    let on = serve(app(true)).await;
    let off = serve(app(false)).await;
    let ask = |addr: SocketAddr, path: &'static str, id: Option<&'static str>| async move {
        let headers: Vec<(&str, &str)> = id.map(|id| ("x-request-id", id)).into_iter().collect();
        let res = fetch_head(addr, path, &headers, false).await;
        let echoed = res
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().expect("ascii").to_owned());
        let body = bounded("body", res.into_body().collect())
            .await
            .expect("body");
        let text = String::from_utf8(body.to_bytes().to_vec()).expect("utf-8");
        (echoed, text)
    };

    let (echoed, _) = ask(on, "/", Some("req-42")).await;
    assert_eq!(echoed.as_deref(), Some("req-42"));
    let (echoed, seen) = ask(on, "/", None).await;
    assert_eq!(
        echoed.as_deref(),
        Some(seen.as_str()),
        "the id the handler saw"
    );
    assert_eq!(seen.len(), 32);
    // An id nobody read is neither made nor sent; a client's always is.
    let (echoed, _) = ask(on, "/quiet", None).await;
    assert_eq!(echoed, None);
    let (echoed, _) = ask(on, "/quiet", Some("req-45")).await;
    assert_eq!(echoed.as_deref(), Some("req-45"));
    let (echoed, _) = ask(on, "/own", Some("req-43")).await;
    assert_eq!(echoed.as_deref(), Some("handler-chose"));
    let (echoed, _) = ask(off, "/", Some("req-44")).await;
    assert_eq!(echoed, None);
}

/// Input 5: `PropagateLayer` over hyper-util's HTTP/2 client, a request
/// body that never ends (a frame every 200 ms) and a server that answers
/// each frame on its response stream. Canceling the client's context after
/// the first reply fails the next read with the cause, and within a second
/// the request body's producer is dropped, the stream is reset and the
/// server's context ends abandoned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cancel_of_a_bidi_stream_resets_it() {
    use goctx::http::{PropagateBody, PropagateError, PropagateLayer, with_context};
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    use tower::{Layer, Service, ServiceExt};

    let (probe, mut seen) = mpsc::unbounded_channel::<Ctx>();
    let (heard, mut heard_rx) = mpsc::unbounded_channel::<usize>();
    let app = Router::new()
        .route(
            "/chat",
            post(move |ctx: Ctx, body: Body| async move {
                let _ = probe.send(ctx);
                let heard = heard.clone();
                let replies = body.into_data_stream().map(move |chunk| {
                    chunk.map(|data| {
                        let _ = heard.send(data.len());
                        Bytes::from(format!("got {}\n", data.len()))
                    })
                });
                Body::from_stream(replies)
            }),
        )
        .layer(RequestContextLayer::new(&goctx::background()));
    let addr = serve(app).await;

    // The producer: a frame every 200 ms, for ever; says when dropped.
    let (dropped_tx, dropped) = tokio::sync::oneshot::channel::<()>();
    struct Signal(Option<tokio::sync::oneshot::Sender<()>>);
    impl Drop for Signal {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(());
            }
        }
    }
    let frames = Box::pin(futures::stream::unfold(
        Signal(Some(dropped_tx)),
        |signal| async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Some((
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"ping"))),
                signal,
            ))
        },
    ));
    let hyper: Client<_, PropagateBody<StreamBody<_>>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let mut client = PropagateLayer::new().layer(hyper);
    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    let req = Request::post(format!("http://{addr}/chat"))
        .body(StreamBody::new(frames))
        .expect("request");
    let res = bounded(
        "response head",
        client
            .ready()
            .await
            .expect("ready")
            .call(with_context(req, &ctx)),
    )
    .await
    .expect("response");
    let mut body = res.into_body();
    let first = bounded("first reply", body.frame()).await.expect("frame");
    assert_eq!(
        first.expect("ok").into_data().expect("data"),
        Bytes::from_static(b"got 4\n")
    );
    let server_ctx = bounded("handler", seen.recv()).await.expect("ctx");

    cancel.cancel_with_cause("user gave up");
    let next = bounded("next read", body.frame()).await.expect("a frame");
    match next {
        Err(PropagateError::Context { cause, .. }) => assert_eq!(cause.to_string(), "user gave up"),
        other => panic!("expected the context's error, got {other:?}"),
    }
    tokio::time::timeout(PROMPT, dropped)
        .await
        .expect("the request body's producer is dropped within a second")
        .expect("signal");
    let cause = ended_within(&server_ctx, PROMPT).await;
    assert!(cause.is::<RequestAbandoned>(), "{cause}");
    while heard_rx.try_recv().is_ok() {}
    let more = tokio::time::timeout(Duration::from_millis(600), heard_rx.recv()).await;
    assert!(
        !matches!(more, Ok(Some(_))),
        "the server kept receiving: {more:?}"
    );
}
