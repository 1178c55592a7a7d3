//! gRPC statuses from a context's end: CANCELLED or DEADLINE_EXCEEDED, with
//! the cause in the message, as gRPC-Go's `status.FromContextError` gives.

use std::error::Error as StdError;

use tonic::{Code, Status};

use crate::http::PropagateError;
use crate::{Cause, Ctx, Error};

/// The status of a call that ended because its context did: `err`'s code
/// ([`Error::Canceled`] is `CANCELLED`, [`Error::DeadlineExceeded`] is
/// `DEADLINE_EXCEEDED`) and a message of `err`, then `: ` and the cause
/// when the cause says more than `err` itself. The cause is the status's
/// [`source`](std::error::Error::source), for code that downcasts it.
///
/// # Examples
///
/// ```
/// use goctx::tonic::status;
///
/// let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
/// cancel.cancel_with_cause("client went away");
/// let st = status(goctx::Error::Canceled, ctx.cause().expect("done"));
/// assert_eq!(st.code(), tonic::Code::Cancelled);
/// assert_eq!(st.message(), "context canceled: client went away");
/// ```
pub fn status(err: Error, cause: Cause) -> Status {
    let code = match err {
        Error::Canceled => Code::Cancelled,
        Error::DeadlineExceeded => Code::DeadlineExceeded,
    };
    let mut status = if cause.downcast_ref::<Error>() == Some(&err) {
        Status::new(code, err.to_string())
    } else {
        Status::new(code, format!("{err}: {cause}"))
    };
    status.set_source(cause.into_arc());
    status
}

/// The status of `ctx` if it is done ([`status`] of its error and cause),
/// `None` while it is live. What a server handler returns when its
/// request context ended first.
///
/// # Examples
///
/// ```
/// let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), std::time::Duration::ZERO);
/// let st = goctx::tonic::ctx_status(&ctx).expect("done");
/// assert_eq!(st.code(), tonic::Code::DeadlineExceeded);
/// assert_eq!(st.message(), "context deadline exceeded");
/// assert!(goctx::tonic::ctx_status(&goctx::background()).is_none());
/// ```
pub fn ctx_status(ctx: &Ctx) -> Option<Status> {
    let err = ctx.err()?;
    Some(status(err, ctx.cause().unwrap_or_else(|| err.into_cause())))
}

/// `CANCELLED` or `DEADLINE_EXCEEDED` with Go's message, without a cause
/// (use [`ctx_status`] to keep one). Lets a handler write
/// `ctx.run(work).await?` in a function returning `Result<_, Status>`.
impl From<Error> for Status {
    fn from(err: Error) -> Status {
        status(err, err.into_cause())
    }
}

/// The context's end as [`status`] gives it; the inner client's error as
/// tonic would map it (`Status::from_error`: a status inside it is kept,
/// a failed connection is `UNAVAILABLE`, anything else `UNKNOWN`).
impl<E> From<PropagateError<E>> for Status
where
    E: Into<Box<dyn StdError + Send + Sync>>,
{
    fn from(err: PropagateError<E>) -> Status {
        match err {
            PropagateError::Context { err, cause } => status(err, cause),
            PropagateError::Inner(e) => Status::from_error(e.into()),
        }
    }
}
