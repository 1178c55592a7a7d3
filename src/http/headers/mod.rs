//! The HTTP side of [`goctx::propagation`](crate::propagation): the
//! header names as `http` constants (here), the `http::HeaderMap` forms
//! of [`TraceContext`](crate::propagation::TraceContext) and
//! [`RequestId`](crate::propagation::RequestId) (`codecs.rs`), and
//! `HeaderMap` as a [`Carrier`](crate::propagation::Carrier)
//! (`carrier.rs`).

mod carrier;
mod codecs;

use http::HeaderName;

/// The name of the W3C trace header: `traceparent`.
// A `const` like the names in `http::header` (a static name holds no
// shared state to mutate, whatever the lint infers from its type).
#[allow(clippy::declare_interior_mutable_const)]
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The name of the W3C vendor state header: `tracestate`.
// A `const` like the names in `http::header` (a static name holds no
// shared state to mutate, whatever the lint infers from its type).
#[allow(clippy::declare_interior_mutable_const)]
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The name of the request id header: `x-request-id` (a de-facto
/// convention, tower-http's default).
// A `const` like the names in `http::header` (a static name holds no
// shared state to mutate, whatever the lint infers from its type).
#[allow(clippy::declare_interior_mutable_const)]
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The name of gRPC's deadline header: `grpc-timeout`.
// A `const` like the names in `http::header` (a static name holds no
// shared state to mutate, whatever the lint infers from its type).
#[allow(clippy::declare_interior_mutable_const)]
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The name of the Connect protocol's deadline header: `connect-timeout-ms`.
// A `const` like the names in `http::header` (a static name holds no
// shared state to mutate, whatever the lint infers from its type).
#[allow(clippy::declare_interior_mutable_const)]
pub const CONNECT_TIMEOUT_MS: HeaderName = HeaderName::from_static("connect-timeout-ms");
