//! The causes a request context ends with.

/// The cause of a request context whose request ended before its response
/// was complete: the client went away.
///
/// hyper reports no reason when it gives up on a request; it drops the
/// response future, or the response body. So this one cause covers every
/// way that happens:
///
/// - HTTP/1: the client closed the connection while the handler ran
///   (hyper noticed the EOF and dropped the handler's future);
/// - HTTP/2: the client reset the stream (`RST_STREAM`) or the connection
///   went away;
/// - a layer outside [`RequestContextLayer`](crate::http::RequestContextLayer),
///   such as a tower `Timeout`, dropped the response future;
/// - the response body was dropped before its end (the client stopped
///   reading, or a body error made hyper abort the response);
/// - the inner service returned an error instead of a response.
///
/// The context's [`err()`](crate::Ctx::err) is
/// [`Error::Canceled`](crate::Error::Canceled); the cause tells it apart.
///
/// # Examples
///
/// ```
/// use goctx::http::RequestAbandoned;
///
/// let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
/// cancel.cancel_with_cause(RequestAbandoned);
/// assert!(ctx.cause().is_some_and(|c| c.is::<RequestAbandoned>()));
/// assert_eq!(RequestAbandoned.to_string(), "request abandoned before its response was complete");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, thiserror::Error)]
#[error("request abandoned before its response was complete")]
pub struct RequestAbandoned;

/// The cause of a request context whose response was complete: the
/// handler returned and its whole body was handed to the connection (its
/// last frame polled, or a body that was empty from the start dropped).
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
