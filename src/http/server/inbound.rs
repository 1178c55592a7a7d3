//! What the server reads from a request's headers: one pass over them
//! for the deadline headers, the request id, the trace and whether the
//! request is gRPC.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};

use crate::propagation::{InvalidTimeout, decode_connect_timeout_ms, decode_grpc_timeout};

/// What the layer reads from a request's headers, found in one pass.
pub(super) struct Inbound<'a> {
    /// A gRPC-style request: `content-type: application/grpc` and its
    /// `+proto`, `+json`, `-web` variants.
    pub(super) grpc: bool,
    grpc_timeout: Option<&'a HeaderValue>,
    connect_timeout: Option<&'a HeaderValue>,
    pub(super) request_id: Option<&'a HeaderValue>,
    /// The `traceparent` header if there is exactly one.
    pub(super) traceparent: Option<&'a HeaderValue>,
}

impl<'a> Inbound<'a> {
    /// The first value of each header of interest (as `HeaderMap::get`
    /// finds it); `traceparent` only if it is not repeated.
    pub(super) fn scan(headers: &'a HeaderMap) -> Inbound<'a> {
        let mut content_type = None;
        let mut grpc_timeout = None;
        let mut connect_timeout = None;
        let mut request_id = None;
        let mut traceparent = None;
        let mut traceparents = 0;
        for (name, value) in headers {
            // Header names are lowercase in `HeaderName`.
            let slot = match name.as_str() {
                "content-type" => &mut content_type,
                "grpc-timeout" => &mut grpc_timeout,
                "connect-timeout-ms" => &mut connect_timeout,
                "x-request-id" => &mut request_id,
                "traceparent" => {
                    traceparents += 1;
                    &mut traceparent
                }
                _ => continue,
            };
            slot.get_or_insert(value);
        }
        Inbound {
            grpc: content_type.is_some_and(|v| v.as_bytes().starts_with(b"application/grpc")),
            grpc_timeout,
            connect_timeout,
            request_id,
            traceparent: traceparent.filter(|_| traceparents == 1),
        }
    }

    /// The peer's timeout: the sooner of `grpc-timeout` and
    /// `connect-timeout-ms`. A malformed `grpc-timeout` is an error on
    /// gRPC requests; every other malformed value is ignored.
    pub(super) fn timeout(&self, grpc: bool) -> Result<Option<Duration>, InvalidTimeout> {
        let grpc_timeout = match self.grpc_timeout {
            None => None,
            Some(value) => match value
                .to_str()
                .map_err(|_| InvalidTimeout::Digits)
                .and_then(decode_grpc_timeout)
            {
                Ok(timeout) => Some(timeout),
                Err(err) if grpc => return Err(err),
                Err(_) => None,
            },
        };
        let connect_timeout = self
            .connect_timeout
            .and_then(|v| v.to_str().ok())
            .and_then(|v| decode_connect_timeout_ms(v).ok());
        Ok(min_timeout(grpc_timeout, connect_timeout))
    }
}

pub(super) fn min_timeout(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
