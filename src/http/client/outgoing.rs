//! What an outgoing request carries of its context: the context itself,
//! in its extensions ([`with_context`]), and the headers written from it
//! ([`prepare`]), shared by [`Propagate`] and the reqwest extension.

use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Request, header};

use super::error::PropagateError;
#[cfg(doc)]
use super::layer::PropagateLayer;
#[cfg(doc)]
use super::service::Propagate;
use crate::http::headers::{GRPC_TIMEOUT, TRACEPARENT, X_REQUEST_ID};
use crate::propagation::{RequestId, TraceContext, decode_grpc_timeout, encode_grpc_timeout};
use crate::{Cause, Ctx, Error};

/// Attaches `ctx` to an outgoing request (in its extensions), for
/// [`PropagateLayer`] to find; the same as
/// `req.extensions_mut().insert(ctx.clone())`. Go:
/// `http.NewRequestWithContext`. A context already there is replaced.
///
/// # Examples
///
/// ```
/// let (ctx, _cancel) = goctx::with_cancel(&goctx::background());
/// let req = http::Request::get("http://127.0.0.1:1/").body(())?;
/// let req = goctx::http::with_context(req, &ctx);
/// assert!(req.extensions().get::<goctx::Ctx>().is_some());
/// # Ok::<(), http::Error>(())
/// ```
#[doc(alias = "NewRequestWithContext")]
pub fn with_context<B>(mut req: Request<B>, ctx: &Ctx) -> Request<B> {
    req.extensions_mut().insert(ctx.clone());
    req
}

/// gRPC-style requests: `content-type: application/grpc` and its
/// `+proto`, `+json`, `-web` variants.
fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Checks `ctx` and writes the outgoing headers (see [`PropagateLayer`]):
/// the time left until the deadline, or why the request must not be sent.
pub(crate) fn prepare(
    ctx: &Ctx,
    headers: &mut HeaderMap,
    grpc_timeout_for_http: bool,
    own_timeout: Option<Duration>,
    otel: bool,
) -> Result<Option<Duration>, (Error, Cause)> {
    if let Some(PropagateError::Context { err, cause }) = PropagateError::<()>::from_ctx(ctx) {
        return Err((err, cause));
    }
    // `from_ctx` saw the deadline in the future a moment ago; if it has
    // passed since, the budget is spent: never send `0`.
    let remaining = match ctx.deadline() {
        None => None,
        Some(at) => match at.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Some(left),
            _ => {
                let err = Error::DeadlineExceeded;
                return Err((err, err.into_cause()));
            }
        },
    };
    // The header carries the shortest budget the call enforces: the
    // context's, or the client's own timeout for this call if shorter.
    let budget = match (remaining, own_timeout) {
        (Some(left), Some(own)) => Some(left.min(own)),
        (left, own) => left.or(own.filter(|own| !own.is_zero())),
    };
    if let Some(left) = budget
        && (grpc_timeout_for_http || is_grpc(headers))
    {
        let callers_is_shorter = headers
            .get(GRPC_TIMEOUT)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| decode_grpc_timeout(v).ok())
            .is_some_and(|theirs| !theirs.is_zero() && theirs <= left);
        if !callers_is_shorter {
            // Digits and a unit letter: always a valid header value.
            if let Ok(value) = HeaderValue::from_str(&encode_grpc_timeout(left)) {
                headers.insert(GRPC_TIMEOUT, value);
            }
        }
    }
    if !headers.contains_key(TRACEPARENT) {
        #[cfg(feature = "opentelemetry")]
        if otel {
            super::otel::inject(ctx, headers);
        }
        #[cfg(not(feature = "opentelemetry"))]
        let _ = otel;
        if !otel && let Some(trace) = ctx.value::<TraceContext>() {
            trace.insert_into(headers);
        }
    }
    if !headers.contains_key(X_REQUEST_ID)
        && let Some(id) = ctx.value::<RequestId>()
    {
        headers.insert(X_REQUEST_ID, id.header_value());
    }
    Ok(remaining)
}
