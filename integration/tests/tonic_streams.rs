//! goctx's tonic pieces on every kind of call (issue 16): a real server
//! (axum serving tonic's `Grpc` handlers behind `RequestContextLayer`) and
//! a real tonic client (`Grpc` over a `Channel` behind
//! `goctx::tonic::PropagateLayer`) on loopback. The service is written
//! here on tonic's codegen API with a prost message, so no protoc is
//! needed: `Ticks` (server streaming), `Collect` (client streaming),
//! `Chat` (bidi). Canceling the client's context ends the call with
//! CANCELLED and its cause, drops the client's request stream, resets the
//! HTTP/2 stream and ends the server's context with `RequestAbandoned`,
//! each within a second. Every wait is bounded.

mod common;
use common::waits::{bounded, ended_within};

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use axum::Router;
use axum::extract::Request as HttpRequest;
use axum::response::IntoResponse;
use axum::routing::post;
use futures::{Stream, StreamExt};
use goctx::Ctx;
use goctx::http::{RequestAbandoned, RequestContextLayer};
use goctx::tonic::{Propagate, PropagateLayer};
use http::uri::PathAndQuery;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tonic::codec::Streaming;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};
use tonic_prost::ProstCodec;
use tower::{Layer, service_fn};

/// How soon an end must cross the hop (Go's tests: "within a second").
const PROMPT: Duration = Duration::from_secs(1);

/// The one message of the service.
#[derive(Clone, PartialEq, prost::Message)]
struct Note {
    #[prost(string, tag = "1")]
    text: String,
}

fn note(text: impl Into<String>) -> Note {
    Note { text: text.into() }
}

type NoteStream = Pin<Box<dyn Stream<Item = Result<Note, Status>> + Send>>;

/// What the server's handlers report: their context on entry, and every
/// message they receive.
#[derive(Clone)]
struct Reports {
    ctx: mpsc::UnboundedSender<Ctx>,
    received: mpsc::UnboundedSender<String>,
    /// Sent when a server-side response stream is dropped.
    producer_dropped: mpsc::UnboundedSender<()>,
}

/// Sends on its channel when dropped: shows a stream's producer is gone.
struct DropSignal<T: Send + 'static>(Option<T>, fn(T));

impl<T: Send + 'static> Drop for DropSignal<T> {
    fn drop(&mut self) {
        if let Some(v) = self.0.take() {
            (self.1)(v);
        }
    }
}

/// The server: tonic's `Grpc` handlers on axum routes, behind the layer.
async fn serve(reports: Reports) -> SocketAddr {
    let ticks = {
        let reports = reports.clone();
        move |req: HttpRequest| {
            let reports = reports.clone();
            async move {
                let svc = service_fn(move |request: Request<Note>| {
                    let reports = reports.clone();
                    async move {
                        let ctx = goctx::tonic::request_context(&request)?;
                        let _ = reports.ctx.send(ctx);
                        let guard = DropSignal(Some(reports.producer_dropped), |tx| {
                            let _ = tx.send(());
                        });
                        let stream =
                            futures::stream::unfold((0u32, guard), |(n, guard)| async move {
                                if n > 0 {
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                }
                                Some((Ok(note(format!("tick {n}"))), (n + 1, guard)))
                            });
                        Ok::<_, Status>(Response::new(Box::pin(stream) as NoteStream))
                    }
                });
                let mut grpc = tonic::server::Grpc::new(ProstCodec::<Note, Note>::default());
                grpc.server_streaming(svc, req).await.into_response()
            }
        }
    };
    let collect = {
        let reports = reports.clone();
        move |req: HttpRequest| {
            let reports = reports.clone();
            async move {
                let svc = service_fn(move |request: Request<Streaming<Note>>| {
                    let reports = reports.clone();
                    async move {
                        let ctx = goctx::tonic::request_context(&request)?;
                        let _ = reports.ctx.send(ctx.clone());
                        let mut notes = request.into_inner();
                        let mut count = 0;
                        while let Some(item) = notes.next().await {
                            match item {
                                Ok(n) => {
                                    count += 1;
                                    let _ = reports.received.send(n.text);
                                }
                                // The request stream failed: answer with the
                                // context's status if it ended, as gRPC-Go does.
                                Err(status) => {
                                    return Err(goctx::tonic::ctx_status(&ctx).unwrap_or(status));
                                }
                            }
                        }
                        Ok(Response::new(note(format!("{count} notes"))))
                    }
                });
                let mut grpc = tonic::server::Grpc::new(ProstCodec::<Note, Note>::default());
                grpc.client_streaming(svc, req).await.into_response()
            }
        }
    };
    let chat = move |req: HttpRequest| {
        let reports = reports.clone();
        async move {
            let svc = service_fn(move |request: Request<Streaming<Note>>| {
                let reports = reports.clone();
                async move {
                    let ctx = goctx::tonic::request_context(&request)?;
                    let _ = reports.ctx.send(ctx);
                    let received = reports.received.clone();
                    let replies = request.into_inner().map(move |item| {
                        item.map(|n| {
                            let _ = received.send(n.text.clone());
                            note(format!("echo {}", n.text))
                        })
                    });
                    Ok::<_, Status>(Response::new(Box::pin(replies) as NoteStream))
                }
            });
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Note, Note>::default());
            grpc.streaming(svc, req).await.into_response()
        }
    };
    let app = Router::new()
        .route("/notes.Notes/Ticks", post(ticks))
        .route("/notes.Notes/Collect", post(collect))
        .route("/notes.Notes/Chat", post(chat))
        .layer(RequestContextLayer::new(&goctx::background()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

struct Server {
    addr: SocketAddr,
    ctx: mpsc::UnboundedReceiver<Ctx>,
    received: mpsc::UnboundedReceiver<String>,
    producer_dropped: mpsc::UnboundedReceiver<()>,
}

async fn server() -> Server {
    let (ctx, ctx_rx) = mpsc::unbounded_channel();
    let (received, received_rx) = mpsc::unbounded_channel();
    let (producer_dropped, dropped_rx) = mpsc::unbounded_channel();
    let addr = serve(Reports {
        ctx,
        received,
        producer_dropped,
    })
    .await;
    Server {
        addr,
        ctx: ctx_rx,
        received: received_rx,
        producer_dropped: dropped_rx,
    }
}

/// A tonic client over a channel behind goctx's layer.
async fn client(addr: SocketAddr) -> tonic::client::Grpc<Propagate<Channel>> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}")).expect("uri");
    let channel = bounded("connect", endpoint.connect())
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(PropagateLayer::new().layer(channel));
    bounded("ready", grpc.ready()).await.expect("ready");
    grpc
}

/// A request stream that never ends (a note every 200 ms) and reports
/// on the returned receiver when it is dropped.
fn endless_notes() -> (
    impl Stream<Item = Note> + Send + 'static,
    oneshot::Receiver<()>,
) {
    let (tx, rx) = oneshot::channel();
    let guard = DropSignal(Some(tx), |tx| {
        let _ = tx.send(());
    });
    let stream = futures::stream::unfold((0u32, guard), |(n, guard)| async move {
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Some((note(format!("note {n}")), (n + 1, guard)))
    });
    (stream, rx)
}

/// The status a canceled client call ends with.
fn assert_canceled(status: &Status) {
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");
    assert_eq!(
        status.message(),
        "context canceled: user gave up",
        "{status:?}"
    );
}

/// The server's context ends, abandoned, within a second.
async fn assert_server_abandoned(ctx: &Ctx) {
    let cause = ended_within(ctx, PROMPT).await;
    assert!(cause.is::<RequestAbandoned>(), "{cause}");
}

/// Server streaming: cancel after the first message. The next read fails
/// CANCELLED with the cause; the server's context ends abandoned and its
/// response stream is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streaming_cancel_ends_both_ends() {
    let mut server = server().await;
    let mut grpc = client(server.addr).await;
    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    let res = bounded(
        "call",
        grpc.server_streaming(
            goctx::tonic::request(&ctx, note("start")),
            PathAndQuery::from_static("/notes.Notes/Ticks"),
            ProstCodec::<Note, Note>::default(),
        ),
    )
    .await
    .expect("stream opened");
    let mut ticks = res.into_inner();
    let first = bounded("first tick", ticks.message()).await.expect("ok");
    assert_eq!(first.map(|n| n.text).as_deref(), Some("tick 0"));
    let server_ctx = bounded("handler", server.ctx.recv()).await.expect("ctx");

    cancel.cancel_with_cause("user gave up");
    let status = bounded("next read", ticks.message())
        .await
        .expect_err("canceled");
    assert_canceled(&status);
    assert_server_abandoned(&server_ctx).await;
    tokio::time::timeout(PROMPT, server.producer_dropped.recv())
        .await
        .expect("the server's stream is dropped within a second");
}

/// Client streaming: cancel once the server has a note. The call fails
/// CANCELLED; the client's request stream is dropped (its producer stops)
/// and the server's context ends abandoned, each within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_streaming_cancel_drops_the_producer_and_resets() {
    let mut server = server().await;
    let mut grpc = client(server.addr).await;
    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    let (notes, producer_dropped) = endless_notes();
    let call = tokio::spawn({
        let ctx = ctx.clone();
        async move {
            grpc.client_streaming(
                goctx::tonic::request(&ctx, notes),
                PathAndQuery::from_static("/notes.Notes/Collect"),
                ProstCodec::<Note, Note>::default(),
            )
            .await
        }
    });
    let server_ctx = bounded("handler", server.ctx.recv()).await.expect("ctx");
    let first = bounded("first note", server.received.recv()).await;
    assert_eq!(first.as_deref(), Some("note 0"));

    cancel.cancel_with_cause("user gave up");
    let status = bounded("call ends", call)
        .await
        .expect("join")
        .expect_err("canceled");
    assert_canceled(&status);
    tokio::time::timeout(PROMPT, producer_dropped)
        .await
        .expect("the client's request stream is dropped within a second")
        .expect("signal");
    assert_server_abandoned(&server_ctx).await;
}

/// Bidi: cancel after the first echo. The next read fails CANCELLED; the
/// request stream's producer is dropped; the server's context ends
/// abandoned; and the handler stops receiving notes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_cancel_stops_both_directions() {
    let mut server = server().await;
    let mut grpc = client(server.addr).await;
    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    let (notes, producer_dropped) = endless_notes();
    let res = bounded(
        "call",
        grpc.streaming(
            goctx::tonic::request(&ctx, notes),
            PathAndQuery::from_static("/notes.Notes/Chat"),
            ProstCodec::<Note, Note>::default(),
        ),
    )
    .await
    .expect("stream opened");
    let mut echoes = res.into_inner();
    let first = bounded("first echo", echoes.message()).await.expect("ok");
    assert_eq!(first.map(|n| n.text).as_deref(), Some("echo note 0"));
    let server_ctx = bounded("handler", server.ctx.recv()).await.expect("ctx");

    cancel.cancel_with_cause("user gave up");
    let status = bounded("next read", echoes.message())
        .await
        .expect_err("canceled");
    assert_canceled(&status);
    tokio::time::timeout(PROMPT, producer_dropped)
        .await
        .expect("the client's request stream is dropped within a second")
        .expect("signal");
    assert_server_abandoned(&server_ctx).await;
    // The handler hears no more notes once its context ended: drain what
    // arrived before, then nothing new within three of the client's
    // 200 ms periods.
    while server.received.try_recv().is_ok() {}
    let more = tokio::time::timeout(Duration::from_millis(600), server.received.recv()).await;
    assert!(
        !matches!(more, Ok(Some(_))),
        "the server kept receiving after the cancel: {more:?}"
    );
}

/// Server streaming under a 300 ms context: the deadline reaches the
/// handler's context (`grpc-timeout`), and the client's read fails with
/// DEADLINE_EXCEEDED and Go's message when it passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_reaches_server_streaming_handler() {
    let mut server = server().await;
    let mut grpc = client(server.addr).await;
    let budget = Duration::from_millis(300);
    let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), budget);
    let res = bounded(
        "call",
        grpc.server_streaming(
            goctx::tonic::request(&ctx, note("start")),
            PathAndQuery::from_static("/notes.Notes/Ticks"),
            ProstCodec::<Note, Note>::default(),
        ),
    )
    .await
    .expect("stream opened");
    let server_ctx = bounded("handler", server.ctx.recv()).await.expect("ctx");
    let left = server_ctx
        .deadline()
        .expect("grpc-timeout became a deadline");
    assert!(left <= std::time::Instant::now() + budget);
    let mut ticks = res.into_inner();
    let status = loop {
        match bounded("ticks until the deadline", ticks.message()).await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without an error"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(status.message(), "context deadline exceeded");
    let cause = ended_within(&server_ctx, PROMPT).await;
    assert!(
        server_ctx.err() == Some(goctx::Error::DeadlineExceeded) || cause.is::<RequestAbandoned>(),
        "{cause}"
    );
}
