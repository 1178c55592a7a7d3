//! A real distributed hop over gRPC (issue 9): tonic servers and clients
//! on loopback, with goctx on one end, the other or both. The service is
//! tonic-health's generated `Health`, implemented here so the handler can
//! report what it was given: the request's metadata (the raw
//! `grpc-timeout`) and, behind `RequestContextLayer`, the `goctx::Ctx`
//! that tonic copies from the HTTP request's extensions into
//! `tonic::Request::extensions()`. What the handler does is picked by the
//! request's `service` field. Every wait is bounded.

mod common;
use common::waits::{bounded, ended_within};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use goctx::Ctx;
use goctx::http::{RequestAbandoned, RequestContextLayer, decode_grpc_timeout};
use goctx::tonic::{Propagate, PropagateLayer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::metadata::MetadataMap;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower::ServiceBuilder;

/// How soon a cancellation must cross the hop (Go's tests: "within a second").
const PROMPT: Duration = Duration::from_secs(1);
/// The deadline every deadline test gives its call.
const BUDGET: Duration = Duration::from_millis(300);

/// The `service` names that pick the handler's behaviour.
const ANSWER: &str = "answer";
const SLOW: &str = "slow";
const WAIT_CTX: &str = "wait-ctx";

/// What the handler saw on entry.
struct Seen {
    metadata: MetadataMap,
    ctx: Option<Ctx>,
    arrived: Instant,
}

/// The `Health` service under test: reports every call on `seen`, then
/// answers (`ANSWER`), sleeps 10 s ignoring any context (`SLOW`), or waits
/// for its request context to end and answers with its error (`WAIT_CTX`).
#[derive(Clone)]
struct Probe {
    seen: mpsc::UnboundedSender<Seen>,
    calls: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl Health for Probe {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let arrived = Instant::now();
        self.calls.fetch_add(1, Ordering::SeqCst);
        let ctx = goctx::tonic::request_context(&request).ok();
        // The test may have stopped listening; the handler goes on.
        let _ = self.seen.send(Seen {
            metadata: request.metadata().clone(),
            ctx: ctx.clone(),
            arrived,
        });
        match request.get_ref().service.as_str() {
            SLOW => tokio::time::sleep(Duration::from_secs(10)).await,
            WAIT_CTX => {
                let ctx = goctx::tonic::request_context(&request)?;
                ctx.done().await;
                return Err(goctx::tonic::ctx_status(&ctx).expect("done"));
            }
            _ => {}
        }
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        }))
    }

    type WatchStream = futures::stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("not used by these tests"))
    }
}

/// A running server: its address, what its handler saw, how often it ran.
struct Running {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
    calls: Arc<AtomicUsize>,
}

fn probe() -> (Probe, mpsc::UnboundedReceiver<Seen>, Arc<AtomicUsize>) {
    let (tx, seen) = mpsc::unbounded_channel();
    let calls = Arc::new(AtomicUsize::new(0));
    let probe = Probe {
        seen: tx,
        calls: calls.clone(),
    };
    (probe, seen, calls)
}

/// A tonic server without goctx on 127.0.0.1:0; it lives as long as the runtime.
async fn serve_plain() -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (probe, seen, calls) = probe();
    tokio::spawn(async move {
        let _ = Server::builder()
            .add_service(HealthServer::new(probe))
            .serve_with_incoming(TcpIncoming::from(listener))
            .await;
    });
    Running { addr, seen, calls }
}

/// A tonic server with `layer` (a `RequestContextLayer`), as docs/http.md
/// shows it.
async fn serve_goctx(layer: RequestContextLayer) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (probe, seen, calls) = probe();
    tokio::spawn(async move {
        let _ = Server::builder()
            .layer(layer)
            .add_service(HealthServer::new(probe))
            .serve_with_incoming(TcpIncoming::from(listener))
            .await;
    });
    Running { addr, seen, calls }
}

/// The same service as tonic `Routes` served by axum, without goctx.
/// Unlike tonic's own `Server`, this has no `grpc-timeout` timer of its
/// own: only the client can end a call at its deadline.
async fn serve_axum() -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (probe, seen, calls) = probe();
    let app = tonic::service::Routes::new(HealthServer::new(probe)).into_axum_router();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Running { addr, seen, calls }
}

async fn channel(addr: SocketAddr) -> Channel {
    let endpoint = Endpoint::from_shared(format!("http://{addr}")).expect("uri");
    bounded("connect", endpoint.connect())
        .await
        .expect("connect")
}

/// tonic's `Channel` behind goctx's tonic `PropagateLayer`, as an
/// application builds it.
fn goctx_client(channel: Channel) -> HealthClient<Propagate<Channel>> {
    HealthClient::new(
        ServiceBuilder::new()
            .layer(PropagateLayer::new())
            .service(channel),
    )
}

/// A request for `service`, bound to `ctx` (`goctx::tonic::request`).
fn with_ctx(service: &str, ctx: &Ctx) -> Request<HealthCheckRequest> {
    goctx::tonic::request(
        ctx,
        HealthCheckRequest {
            service: service.into(),
        },
    )
}

/// The context's cause inside a status from a goctx client: the status's
/// source.
fn status_cause(status: &Status) -> String {
    std::error::Error::source(status)
        .unwrap_or_else(|| panic!("no cause in {status:?}"))
        .to_string()
}

/// The `grpc-timeout` the server received, decoded.
fn grpc_timeout(seen: &Seen) -> Duration {
    let value = seen
        .metadata
        .get("grpc-timeout")
        .unwrap_or_else(|| panic!("no grpc-timeout in {:?}", seen.metadata))
        .to_str()
        .expect("ascii");
    decode_grpc_timeout(value).unwrap_or_else(|e| panic!("{value:?}: {e}"))
}

/// The status a goctx client gets when its context's deadline ends the
/// call: DEADLINE_EXCEEDED with Go's message, the context's cause as the
/// status's source.
fn assert_client_deadline(status: &Status) {
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(status.message(), "context deadline exceeded", "{status:?}");
    assert_eq!(status_cause(status), "context deadline exceeded");
}

/// tonic's transport ending a call at its `grpc-timeout`: its own timer
/// (on the server outside every layer; on the client around the
/// connection) gives up with CANCELLED.
fn is_tonic_timeout(status: &Status) -> bool {
    status.code() == Code::Cancelled && status.message() == "Timeout expired"
}

/// goctx client → tonic servers without goctx. A 300 ms context becomes a
/// `grpc-timeout` in (0, 300 ms] in the server's metadata, and against a
/// handler that would take 10 s the call fails at about 300 ms.
///
/// The status is DEADLINE_EXCEEDED "context deadline exceeded". tonic's
/// `Channel` reads the `grpc-timeout` the layer wrote and times out too,
/// at the same instant or a hair after (the value is rounded down by under
/// a microsecond, the timer starts later); when it wins, the layer still
/// reports the context, whose deadline has passed. Against tonic's
/// own `Server`, which also ends the call at the deadline it read, its
/// CANCELLED "Timeout expired" could in principle cross the wire before
/// either client timer fires (never seen; the test allows it there
/// only). Served by axum, tonic's routes have no such timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goctx_deadline_reaches_plain_tonic_server() {
    for (tonic_server, mut server) in [(true, serve_plain().await), (false, serve_axum().await)] {
        let mut client = goctx_client(channel(server.addr).await);
        let start = Instant::now();
        let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), BUDGET);
        let req = with_ctx(SLOW, &ctx);
        let call = tokio::spawn(async move { client.check(req).await });

        let seen = bounded("handler entered", server.seen.recv())
            .await
            .expect("seen");
        let sent = grpc_timeout(&seen);
        assert!(!sent.is_zero() && sent <= BUDGET, "{sent:?}");
        assert!(seen.ctx.is_none(), "no goctx on this server");

        let status = bounded("call ends", call)
            .await
            .expect("join")
            .expect_err("the handler takes 10 s");
        let elapsed = start.elapsed();
        assert!(
            elapsed >= BUDGET && elapsed < Duration::from_secs(2),
            "{elapsed:?}"
        );
        if tonic_server && is_tonic_timeout(&status) {
            // The server's timer won the race; the client's deadline had
            // passed all the same.
            assert!(ctx.deadline().expect("deadline") <= Instant::now());
        } else {
            assert_client_deadline(&status);
        }
        assert_eq!(server.calls.load(Ordering::SeqCst), 1);
    }
}

/// A plain tonic client's call for `WAIT_CTX` with `Request::set_timeout(timeout)`.
async fn set_timeout_call(
    addr: SocketAddr,
    timeout: Duration,
) -> tokio::task::JoinHandle<Result<Response<HealthCheckResponse>, Status>> {
    let mut client = HealthClient::new(channel(addr).await);
    let mut req = Request::new(HealthCheckRequest {
        service: WAIT_CTX.into(),
    });
    req.set_timeout(timeout);
    tokio::spawn(async move { client.check(req).await })
}

/// The handler's answer once its context ended with `DeadlineExceeded`.
fn is_handlers_deadline(status: &Status) -> bool {
    status.code() == Code::DeadlineExceeded && status.message() == "context deadline exceeded"
}

/// Plain tonic client (`Request::set_timeout`) → tonic's `Server` with
/// `RequestContextLayer`. The handler's `goctx::Ctx` has a deadline within
/// (0, 300 ms] of the request's arrival and ends at it, never before the
/// client's 300 ms.
///
/// Pinned: three timers expire at that instant: the layer's deadline,
/// tonic's server timer (outside every layer, it drops the handler) and
/// the tonic client's own (it resets the stream). Whichever fires first
/// decides: the context ends with `DeadlineExceeded`, or, dropped by
/// tonic first, with `RequestAbandoned`; the client gets the handler's
/// DEADLINE_EXCEEDED or tonic's CANCELLED "Timeout expired". A server cap
/// shorter than the client's timeout (`max_timeout`) leaves one winner:
/// `DeadlineExceeded`, and the handler's answer reaches the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_timeout_becomes_request_ctx_deadline() {
    let base = goctx::background();
    let mut server = serve_goctx(RequestContextLayer::new(&base)).await;
    let start = Instant::now();
    let call = set_timeout_call(server.addr, BUDGET).await;

    let seen = bounded("handler entered", server.seen.recv())
        .await
        .expect("seen");
    assert_eq!(grpc_timeout(&seen), BUDGET, "tonic sends it exactly");
    let ctx = seen
        .ctx
        .expect("RequestContextLayer put a Ctx in the extensions");
    let deadline = ctx.deadline().expect("a deadline from grpc-timeout");
    let left = deadline.saturating_duration_since(seen.arrived);
    assert!(
        left <= BUDGET && left > BUDGET - Duration::from_millis(100),
        "{left:?}"
    );

    let cause = ended_within(&ctx, BUDGET + PROMPT).await;
    assert!(start.elapsed() >= BUDGET, "{:?}", start.elapsed());
    let status = bounded("call ends", call)
        .await
        .expect("join")
        .expect_err("the call ends in an error");
    if ctx.err() == Some(goctx::Error::DeadlineExceeded) {
        assert!(cause.is::<goctx::Error>(), "{cause}");
        assert!(
            is_handlers_deadline(&status) || is_tonic_timeout(&status),
            "{status:?}"
        );
    } else {
        assert_eq!(ctx.err(), Some(goctx::Error::Canceled));
        assert!(cause.is::<RequestAbandoned>(), "{cause}");
        assert!(is_tonic_timeout(&status), "{status:?}");
    }

    // The server's own, shorter cap: one winner.
    let cap = BUDGET / 2;
    let mut server = serve_goctx(RequestContextLayer::new(&base).max_timeout(cap)).await;
    let call = set_timeout_call(server.addr, BUDGET).await;
    let seen = bounded("handler entered", server.seen.recv())
        .await
        .expect("seen");
    let ctx = seen.ctx.expect("a request ctx");
    let left = ctx
        .deadline()
        .expect("deadline")
        .saturating_duration_since(seen.arrived);
    assert!(!left.is_zero() && left <= cap, "{left:?}");
    let cause = ended_within(&ctx, cap + PROMPT).await;
    assert_eq!(ctx.err(), Some(goctx::Error::DeadlineExceeded));
    assert!(cause.is::<goctx::Error>(), "{cause}");
    let status = bounded("call ends", call)
        .await
        .expect("join")
        .expect_err("deadline");
    assert!(is_handlers_deadline(&status), "{status:?}");
}

/// goctx on both ends of the hop, on tonic's own server: canceling the
/// client's context while the handler waits on its own resets the HTTP/2
/// stream, which ends the server's request context with
/// `RequestAbandoned` within a second; the client's error carries its
/// context's cause; nothing stays registered with the server's base; and
/// the connection survives the reset (a second call on the same channel
/// works).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cancel_cancels_server_ctx() {
    let (base, _shutdown) = goctx::with_cancel_cause(&goctx::background());
    let mut server = serve_goctx(RequestContextLayer::new(&base)).await;
    let client = goctx_client(channel(server.addr).await);

    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    let req = with_ctx(WAIT_CTX, &ctx);
    let mut first = client.clone();
    let call = tokio::spawn(async move { first.check(req).await });
    let seen = bounded("handler entered", server.seen.recv())
        .await
        .expect("seen");
    let server_ctx = seen.ctx.expect("a request ctx");
    assert!(server_ctx.deadline().is_none(), "no deadline on either end");
    assert!(base.dependents() > 0, "the request ctx hangs off the base");

    cancel.cancel_with_cause("user gave up");
    let status = bounded("call ends", call)
        .await
        .expect("join")
        .expect_err("canceled");
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");
    assert_eq!(
        status.message(),
        "context canceled: user gave up",
        "{status:?}"
    );
    assert_eq!(status_cause(&status), "user gave up");

    let cause = ended_within(&server_ctx, PROMPT).await;
    assert!(cause.is::<RequestAbandoned>(), "{cause}");
    assert_eq!(server_ctx.err(), Some(goctx::Error::Canceled));
    assert_eq!(base.dependents(), 0, "the ended request ctx left the base");

    let (ctx, _cancel) = goctx::with_cancel(&goctx::background());
    let mut second = client;
    let res = bounded("second call", second.check(with_ctx(ANSWER, &ctx)))
        .await
        .expect("the connection survived the reset");
    assert_eq!(res.get_ref().status, ServingStatus::Serving as i32);
    assert_eq!(server.calls.load(Ordering::SeqCst), 2);
}

/// Go: the transport returns `context.Cause(ctx)` before dialing. Through
/// tonic, a canceled and an expired context fail at once with the
/// context's error and cause, and the server's handler never runs; a
/// live context on the same client then reaches it (the counter works).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn done_ctx_sends_nothing() {
    let base = goctx::background();
    let server = serve_goctx(RequestContextLayer::new(&base)).await;
    let mut client = goctx_client(channel(server.addr).await);

    let (canceled, cancel) = goctx::with_cancel_cause(&goctx::background());
    cancel.cancel_with_cause("user gave up");
    let (expired, _c) = goctx::with_timeout(&goctx::background(), Duration::ZERO);
    for (ctx, want, message, cause) in [
        (
            &canceled,
            goctx::Error::Canceled,
            "context canceled: user gave up",
            "user gave up",
        ),
        (
            &expired,
            goctx::Error::DeadlineExceeded,
            "context deadline exceeded",
            "context deadline exceeded",
        ),
    ] {
        let status = bounded("call", client.check(with_ctx(ANSWER, ctx)))
            .await
            .expect_err("fails fast");
        let code = match want {
            goctx::Error::Canceled => Code::Cancelled,
            goctx::Error::DeadlineExceeded => Code::DeadlineExceeded,
        };
        assert_eq!(status.code(), code, "{status:?}");
        assert_eq!(status.message(), message);
        assert_eq!(status_cause(&status), cause);
    }
    assert_eq!(server.calls.load(Ordering::SeqCst), 0, "nothing was sent");

    let (live, _cancel) = goctx::with_cancel(&goctx::background());
    bounded("live call", client.check(with_ctx(ANSWER, &live)))
        .await
        .expect("a live context goes through");
    assert_eq!(server.calls.load(Ordering::SeqCst), 1);
}
