//! Contexts for HTTP servers: one [`Ctx`](crate::Ctx) per request, ended
//! when the response is complete or the client goes away, plus the header
//! codecs that carry deadlines, traces and request ids between services.
//!
//! hyper and axum have no request context: when a client goes away they
//! drop the handler's future, which only stops it at its next `.await`
//! and which spawned tasks, `after_func` callbacks and blocking code never
//! learn of. [`RequestContextLayer`] turns that drop into a cancellation
//! with a cause, and keeps the context live while a streaming body runs.
//!
//! # Lifecycle of a request context
//!
//! | trigger | `err()` | `cause()` | Go's `r.Context()` |
//! |---|---|---|---|
//! | response body complete (last frame polled, or its declared length handed out) | `Canceled` | [`ResponseComplete`] | canceled when `ServeHTTP` returns, no cause |
//! | handler's future dropped: HTTP/1 connection closed, HTTP/2 stream reset, or an outer layer (timeout) gave up | `Canceled` | [`RequestAbandoned`], [`ResponseFutureDropped`](AbandonReason::ResponseFutureDropped) | canceled, no cause |
//! | response body dropped before its end (client stopped reading) | `Canceled` | [`RequestAbandoned`], [`ResponseBodyDropped`](AbandonReason::ResponseBodyDropped) | a failed write cancels, no cause |
//! | request body read failed: connection closed, stream reset, other | `Canceled` | [`RequestAbandoned`], [`ConnectionClosed`](AbandonReason::ConnectionClosed), [`StreamReset`](AbandonReason::StreamReset), [`RequestBodyFailed`](AbandonReason::RequestBodyFailed) | live while the handler sees the error |
//! | inner service returned an error | `Canceled` | [`RequestAbandoned`], [`ServiceError`](AbandonReason::ServiceError) | no equivalent |
//! | the peer's deadline (`grpc-timeout`, `connect-timeout-ms`) or [`max_timeout`](RequestContextLayer::max_timeout) | `DeadlineExceeded` | `DeadlineExceeded` | net/http reads no deadline header; gRPC-Go does |
//! | base context canceled (shutdown) | the base's | the base's | `Shutdown` never cancels request contexts |
//! | client closed while the request body is unread | not detected until the body is read | | the same limit |
//!
//! The first of these wins; later ones change nothing.
//!
//! See `docs/http.md` for header formats and trust rules, the graceful
//! shutdown recipe and what cannot be detected.
//!
//! # Examples
//!
//! (With the `axum` feature the handler can take `ctx: goctx::Ctx`
//! directly instead of through `Extension`.)
//!
//! ```no_run
//! use axum::{Extension, Router, routing::get};
//! use goctx::http::RequestContextLayer;
//!
//! async fn slow(Extension(ctx): Extension<goctx::Ctx>) -> &'static str {
//!     // Work that outlives the handler's future still learns the
//!     // client left: the context is canceled, with a cause.
//!     let watcher = ctx.clone();
//!     tokio::spawn(async move {
//!         watcher.done().await;
//!         eprintln!("request ended: {:?}", watcher.cause());
//!     });
//!     ctx.done().await;
//!     "unreachable for a client that stays"
//! }
//!
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! let (server_ctx, _shutdown) = goctx::with_cancel_cause(&goctx::background());
//! let app = Router::new()
//!     .route("/slow", get(slow))
//!     .layer(RequestContextLayer::new(&server_ctx));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

mod client;
mod headers;
mod server;

// Server side: a request context per request.
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use server::MissingRequestContext;
pub use server::{
    AbandonReason, BoxError, PeerAddr, RequestAbandoned, RequestBody, RequestContext,
    RequestContextBody, RequestContextFuture, RequestContextLayer, ResponseComplete,
};

// Headers: their names here; the codecs live in `goctx::propagation`, and
// their names stay here too, as the HTTP-facing spelling of the same items
// (`headers/` adds their `HeaderMap` forms and `HeaderMap` as a `Carrier`).
pub use crate::propagation::{
    InvalidTimeout, RequestId, TraceContext, decode_connect_timeout_ms, decode_grpc_timeout,
    encode_connect_timeout_ms, encode_grpc_timeout,
};
pub use headers::{CONNECT_TIMEOUT_MS, GRPC_TIMEOUT, TRACEPARENT, TRACESTATE, X_REQUEST_ID};

// Client side: outgoing requests carry their context (issue 9).
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub use client::{ContextRequestBuilder, ContextResponse, RequestBuilderExt};
pub use client::{
    Propagate, PropagateBody, PropagateError, PropagateFuture, PropagateLayer, with_context,
};
