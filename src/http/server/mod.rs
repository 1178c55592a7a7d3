//! The server side: a request context per request, ended by the
//! response's completion or the client's departure.
//!
//! The lifecycle, in ownership terms: [`Guard`](guard::Guard) owns the
//! request context's `CancelFunc`. The [`RequestContextFuture`] holds it
//! while the handler runs; when the handler returns a response, the guard
//! moves into the [`RequestContextBody`]. Whoever holds it last decides
//! the cause: the end of the body cancels with [`ResponseComplete`];
//! dropping the future or the body earlier cancels with
//! [`RequestAbandoned`].
//!
//! One concept a file: `layer.rs` (the layer and its settings),
//! `service.rs` (each request's context made), `inbound.rs` (the headers
//! read), `values.rs` (`PeerAddr` and the request's value node),
//! `future.rs` (the response future), `guard.rs` (who ends the context,
//! with which shared cause), `request_body.rs` and `response_body.rs`
//! (the bodies that end it), `causes.rs`, `extract.rs` (axum's
//! extractors) and `otel.rs` (the server span).

mod causes;
#[cfg(feature = "axum")]
mod extract;
mod future;
mod guard;
mod inbound;
mod layer;
#[cfg(feature = "opentelemetry")]
mod otel;
mod request_body;
mod response_body;
mod service;
mod values;

pub use causes::{AbandonReason, RequestAbandoned, ResponseComplete};
#[cfg(feature = "axum")]
pub use extract::MissingRequestContext;
pub use future::RequestContextFuture;
pub use layer::RequestContextLayer;
pub use request_body::{BoxError, RequestBody};
pub use response_body::RequestContextBody;
pub use service::RequestContext;
pub use values::PeerAddr;
