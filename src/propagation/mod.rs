//! Carrying a context across a process boundary: its deadline, its trace,
//! its request id and the values you opt in, written into any text
//! carrier (HTTP headers, gRPC metadata, a queue message's headers, a
//! map) and read back on the other side as a new context.
//!
//! Go's `context` has no wire form; gRPC-Go writes the deadline into
//! metadata and OpenTelemetry's propagators write the trace. Here one
//! call does all of it, with the same rules at every boundary:
//!
//! - [`inject`] (or [`Propagator::inject`]) writes a context into a
//!   [`Carrier`];
//! - [`extract`] (or [`Propagator::extract`]) makes a child of a base
//!   context from a carrier, and returns its [`CancelFunc`](crate::CancelFunc).
//!
//! The HTTP layers (`goctx::http`, feature `http`) carry
//! the same fields in the same formats: what [`inject`] writes into a
//! `HeaderMap`, `RequestContextLayer` reads, and what `PropagateLayer`
//! sends, [`extract`] reads. (They scan the headers in one pass rather
//! than asking for each key, which is cheaper per request; the codecs are
//! these.)
//!
//! The formats: W3C Trace Context for the trace ([`TraceContext`]),
//! `x-request-id` for the request id ([`RequestId`]), gRPC's
//! `grpc-timeout` for a relative deadline, and milliseconds since the
//! Unix epoch for an absolute one ([`DeadlineForm`] says when to use
//! which).
//!
//! # Examples
//!
//! ```
//! use std::collections::HashMap;
//! use std::time::Duration;
//! use goctx::propagation::{self, Propagator, RequestId, TraceContext};
//!
//! // The caller: a request context with a deadline, a trace and an id.
//! let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), Duration::from_secs(5));
//! let ctx = goctx::with_value(&ctx, TraceContext::new_root());
//! let ctx = goctx::with_value(&ctx, RequestId::parse("req-42").unwrap());
//! let mut carrier: HashMap<String, String> = HashMap::new();
//! propagation::inject(&ctx, &mut carrier);
//!
//! // The callee, in another process.
//! let limits = Propagator::new().max_timeout(Duration::from_secs(60));
//! let (remote, _cancel) = propagation::extract(&goctx::background(), &carrier, &limits);
//! assert_eq!(remote.value::<RequestId>().unwrap().as_str(), "req-42");
//! let (mine, theirs) = (remote.value::<TraceContext>().unwrap(), ctx.value::<TraceContext>().unwrap());
//! assert_eq!(mine.trace_id(), theirs.trace_id());
//! assert_eq!(mine.parent_span_id(), Some(theirs.span_id()));
//! assert!(remote.deadline().unwrap() <= ctx.deadline().unwrap() + Duration::from_millis(100));
//! ```

mod carrier;
pub(crate) mod id;
mod propagator;
mod request_id;
mod timeout;
mod trace;
pub(crate) mod values;

pub use carrier::Carrier;
pub use propagator::{DeadlineForm, Propagated, Propagator, extract, inject};
pub use request_id::RequestId;
pub use timeout::{
    InvalidTimeout, decode_connect_timeout_ms, decode_grpc_timeout, encode_connect_timeout_ms,
    encode_grpc_timeout,
};
pub use trace::TraceContext;

/// The carrier keys goctx reads and writes, lowercase. (With the `http`
/// feature, `goctx::http` has the same names as `http::HeaderName`s.)
pub mod keys {
    /// W3C Trace Context: the caller's trace id, span id and flags.
    pub const TRACEPARENT: &str = "traceparent";
    /// W3C Trace Context: the vendors' state, passed on as it came.
    pub const TRACESTATE: &str = "tracestate";
    /// The request id (a de-facto convention, tower-http's default).
    pub const REQUEST_ID: &str = "x-request-id";
    /// gRPC's relative deadline: the time left, as 1 to 8 digits and a
    /// unit (`H`, `M`, `S`, `m`, `u`, `n`).
    pub const GRPC_TIMEOUT: &str = "grpc-timeout";
    /// The Connect protocol's relative deadline, in milliseconds (read,
    /// never written).
    pub const CONNECT_TIMEOUT_MS: &str = "connect-timeout-ms";
    /// An absolute deadline: milliseconds since the Unix epoch, as
    /// decimal digits ([`DeadlineForm::Absolute`](super::DeadlineForm::Absolute)).
    pub const DEADLINE: &str = "deadline-unix-ms";
}
