//! The causes a request context ends with, and why a request was abandoned.

use std::fmt;

/// The cause of a request context whose request ended before its response
/// was complete: the client went away, or something between the client and
/// the handler gave up. [`reason`](Self::reason) says which, as far as
/// the server can tell.
///
/// The context's [`err()`](crate::Ctx::err) is
/// [`Error::Canceled`](crate::Error::Canceled); the cause tells it apart
/// from [`ResponseComplete`] and from a shutdown. Go's request context
/// carries no cause at all (golang/go#64465 asks for one).
///
/// `Display` is one line: `request abandoned before its response was
/// complete: ` and the reason.
///
/// # Examples
///
/// ```
/// use goctx::http::{AbandonReason, RequestAbandoned};
///
/// let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
/// cancel.cancel_with_cause(RequestAbandoned::new(AbandonReason::ResponseBodyDropped));
/// let cause = ctx.cause().expect("canceled");
/// let abandoned = cause.downcast_ref::<RequestAbandoned>().expect("abandoned");
/// assert_eq!(abandoned.reason(), AbandonReason::ResponseBodyDropped);
/// assert!(cause.to_string().starts_with("request abandoned before its response was complete: "));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestAbandoned {
    reason: AbandonReason,
}

impl RequestAbandoned {
    /// A cause with this reason.
    pub const fn new(reason: AbandonReason) -> Self {
        RequestAbandoned { reason }
    }

    /// Why the request was abandoned.
    pub const fn reason(&self) -> AbandonReason {
        self.reason
    }
}

impl fmt::Display for RequestAbandoned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request abandoned before its response was complete: {}",
            self.reason
        )
    }
}

impl std::error::Error for RequestAbandoned {}

/// Why a request was abandoned: the reason inside [`RequestAbandoned`].
///
/// hyper does not say why it drops a handler's future or a response body;
/// the reasons that come from a drop ([`ResponseFutureDropped`],
/// [`ResponseBodyDropped`]) therefore name what was dropped, not who
/// dropped it. The reasons that come from the request body
/// ([`ConnectionClosed`], [`StreamReset`], [`RequestBodyFailed`]) are
/// exact: the transport reported them. `docs/http.md` has the table of
/// which event gives which reason.
///
/// [`ResponseFutureDropped`]: AbandonReason::ResponseFutureDropped
/// [`ResponseBodyDropped`]: AbandonReason::ResponseBodyDropped
/// [`ConnectionClosed`]: AbandonReason::ConnectionClosed
/// [`StreamReset`]: AbandonReason::StreamReset
/// [`RequestBodyFailed`]: AbandonReason::RequestBodyFailed
///
/// # Examples
///
/// ```
/// use goctx::http::AbandonReason;
///
/// let reset = AbandonReason::StreamReset { code: Some(0x8) };
/// assert_eq!(reset.to_string(), "the client reset the HTTP/2 stream (error code 0x8)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AbandonReason {
    /// The handler's response future was dropped before it produced a
    /// response: hyper saw the HTTP/1 connection close or the HTTP/2
    /// stream reset while the handler ran, or a layer outside
    /// [`RequestContextLayer`](crate::http::RequestContextLayer) (a
    /// timeout, a load shedder) gave up on it. The `Service` contract
    /// gives no way to tell these apart.
    ResponseFutureDropped,
    /// The response body was dropped before its end: the client stopped
    /// reading a streaming body or went away while it streamed, or the
    /// body's own error made hyper abort the response.
    ResponseBodyDropped,
    /// Reading the request body found the connection closed before the
    /// body was complete (HTTP/1: EOF, reset or broken pipe; HTTP/2: the
    /// connection was lost).
    ConnectionClosed,
    /// Reading the request body found the HTTP/2 stream reset by the
    /// client (`RST_STREAM`). `code` is the HTTP/2 error code (`0x8` is
    /// CANCEL) with the `h2` feature, and `None` without it.
    StreamReset {
        /// The `RST_STREAM` error code, when known.
        code: Option<u32>,
    },
    /// Reading the request body failed for another reason (a malformed
    /// chunked encoding, a body longer than its `content-length`, an
    /// error from a layer outside this one).
    RequestBodyFailed,
    /// The inner service returned an error instead of a response.
    ServiceError,
}

impl fmt::Display for AbandonReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbandonReason::ResponseFutureDropped => f.write_str(
                "the handler was dropped before it answered (the client left, or an outer layer gave up)",
            ),
            AbandonReason::ResponseBodyDropped => f.write_str(
                "the response body was dropped before its end (the client stopped reading or left)",
            ),
            AbandonReason::ConnectionClosed => {
                f.write_str("the connection closed while the request body was read")
            }
            AbandonReason::StreamReset { code: Some(code) } => {
                write!(f, "the client reset the HTTP/2 stream (error code {code:#x})")
            }
            AbandonReason::StreamReset { code: None } => {
                f.write_str("the client reset the HTTP/2 stream")
            }
            AbandonReason::RequestBodyFailed => f.write_str("the request body failed"),
            AbandonReason::ServiceError => f.write_str("the service returned an error"),
        }
    }
}

/// The cause of a request context whose response was complete: the
/// handler returned and its whole body was handed to the connection (its
/// last frame polled, all of a declared `content-length` written, or a
/// body that was empty from the start dropped).
///
/// Go cancels `r.Context()` when `ServeHTTP` returns, which is after the
/// body is written; this is the same moment for a streaming body.
///
/// # Examples
///
/// ```
/// use goctx::http::ResponseComplete;
///
/// let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
/// cancel.cancel_with_cause(ResponseComplete);
/// assert!(ctx.cause().is_some_and(|c| c.is::<ResponseComplete>()));
/// assert_eq!(ResponseComplete.to_string(), "response complete");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, thiserror::Error)]
#[error("response complete")]
pub struct ResponseComplete;
