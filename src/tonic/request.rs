//! A `tonic::Request` from a context (client), and the context of a
//! `tonic::Request` (server).

use std::time::Instant;

use http::HeaderValue;
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::Ctx;
use crate::http::{GRPC_TIMEOUT, RequestId, TraceContext, X_REQUEST_ID, encode_grpc_timeout};

/// An outgoing call's request, bound to `ctx` (gRPC-Go passes the context
/// to every call): `grpc-timeout` from the context's deadline, W3C
/// `traceparent`/`tracestate` from its [`TraceContext`] and `x-request-id`
/// from its [`RequestId`], as metadata, and `ctx` itself in the request's
/// extensions, where a channel behind [`PropagateLayer`](super::PropagateLayer)
/// finds it to end the call, streams included, when the context ends.
///
/// Without the layer the metadata still goes out (tonic's channel then
/// enforces the deadline itself), but canceling the context does not stop
/// the call. A context already done, or past its deadline, gets no
/// `grpc-timeout` (the layer fails such a call without sending it).
/// Metadata added to the request afterwards wins.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), Duration::from_secs(2));
/// let req = goctx::tonic::request(&ctx, "ping");
/// assert!(req.metadata().get("grpc-timeout").is_some());
/// assert!(req.extensions().get::<goctx::Ctx>().is_some());
/// ```
#[doc(alias = "NewOutgoingContext")]
pub fn request<T>(ctx: &Ctx, message: T) -> tonic::Request<T> {
    let mut headers = http::HeaderMap::new();
    if ctx.err().is_none()
        && let Some(at) = ctx.deadline()
        && let Some(left) = at.checked_duration_since(Instant::now())
        && !left.is_zero()
        && let Ok(value) = HeaderValue::from_str(&encode_grpc_timeout(left))
    {
        headers.insert(GRPC_TIMEOUT, value);
    }
    if let Some(trace) = ctx.value::<TraceContext>() {
        trace.insert_into(&mut headers);
    }
    if let Some(id) = ctx.value::<RequestId>() {
        headers.insert(X_REQUEST_ID, id.header_value());
    }
    let mut req = tonic::Request::from_parts(
        MetadataMap::from_headers(headers),
        tonic::Extensions::default(),
        message,
    );
    req.extensions_mut().insert(ctx.clone());
    req
}

/// The handler's context: the one [`RequestContextLayer`](crate::http::RequestContextLayer)
/// made for this call (tonic copies it from the HTTP request), with the
/// caller's deadline, trace and request id, canceled when the client
/// cancels or goes away, and ended `ResponseComplete` with the response.
///
/// # Errors
///
/// `INTERNAL`, naming the missing layer, when the server was built
/// without `Server::builder().layer(RequestContextLayer::new(..))`.
///
/// # Examples
///
/// ```
/// let req = goctx::tonic::request(&goctx::background(), ());
/// assert!(goctx::tonic::request_context(&req).is_ok());
/// let bare = tonic::Request::new(());
/// assert_eq!(goctx::tonic::request_context(&bare).unwrap_err().code(), tonic::Code::Internal);
/// ```
pub fn request_context<T>(req: &tonic::Request<T>) -> Result<Ctx, Status> {
    req.extensions().get::<Ctx>().cloned().ok_or_else(|| {
        Status::internal(
            "no goctx::Ctx in the request: serve with goctx::http::RequestContextLayer \
             (Server::builder().layer(RequestContextLayer::new(&base)))",
        )
    })
}
