//! gRPC the way gRPC-Go users expect it, on tonic: a call's context goes
//! out with it, ends it when it ends, and comes back as a status.
//!
//! - Client: [`request`] builds a `tonic::Request` from a [`Ctx`](crate::Ctx)
//!   (deadline, trace and request id as metadata); a channel behind
//!   [`PropagateLayer`] ends the call when the context ends, request and
//!   response streams included, and fails with `CANCELLED` or
//!   `DEADLINE_EXCEEDED` and the cause.
//! - Server: [`RequestContextLayer`](crate::http::RequestContextLayer) on
//!   the server (`Server::builder().layer(..)`) and [`request_context`] in
//!   the handler; the same lifecycle and causes as HTTP.
//! - Both: [`ctx_status`], [`status`], and `From` conversions into
//!   [`tonic::Status`] for [`Error`](crate::Error) and
//!   [`PropagateError`](crate::http::PropagateError).
//!
//! `docs/http.md` ("gRPC") shows the three pieces together.

mod client;
mod request;
mod status;

pub use client::{Propagate, PropagateFuture, PropagateLayer};
pub use request::{request, request_context};
pub use status::{ctx_status, status};
