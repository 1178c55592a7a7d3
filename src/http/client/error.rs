//! `PropagateError`: an outgoing call ended by its context, or failed.

use std::fmt;
use std::time::Instant;

use crate::{Cause, Ctx, Error};

/// The error of an outgoing request (and of its response body) made
/// through [`Propagate`](crate::http::Propagate) or
/// [`RequestBuilderExt`](crate::http::RequestBuilderExt): either the
/// request's context ended first, or the client itself failed.
///
/// The context wins ties: when the client fails and the context is done
/// by the time the failure is seen, the error is
/// [`Context`](PropagateError::Context). A client timeout that fires at
/// the context's deadline (reqwest's, set from it) is reported as the
/// context's `DeadlineExceeded` too.
///
/// As an [`std::error::Error`]: a `Context` error displays the context's
/// error (`context canceled`, `context deadline exceeded`) and its
/// [`source()`](std::error::Error::source) is the cause, when the cause
/// says more than the error; an `Inner` error displays and sources as
/// the client's error does (it is transparent).
///
/// # Examples
///
/// ```
/// use goctx::http::PropagateError;
///
/// let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
/// cancel.cancel_with_cause("user gave up");
/// let err = PropagateError::<std::io::Error>::from_ctx(&ctx).ok_or("live")?;
/// assert_eq!(err.ctx_err(), Some(goctx::Error::Canceled));
/// assert_eq!(err.cause().map(|c| c.to_string()).as_deref(), Some("user gave up"));
/// assert_eq!(err.to_string(), "context canceled");
/// let source = std::error::Error::source(&err).ok_or("no source")?;
/// assert_eq!(source.to_string(), "user gave up");
/// # Ok::<(), &'static str>(())
/// ```
#[derive(Clone, Debug)]
pub enum PropagateError<E> {
    /// The request's context was done: before the request was sent
    /// (nothing was sent), while waiting for the response (the client's
    /// future was dropped) or while the body was read (the body was
    /// dropped). Go's client returns `context.Cause(ctx)` in these cases.
    Context {
        /// The context's [`err()`](crate::Ctx::err).
        err: Error,
        /// The context's [`cause()`](crate::Ctx::cause).
        cause: Cause,
    },
    /// The client, service or body failed on its own.
    Inner(E),
}

// Unwind safe when `E` is: the cause is shared and never changed, as in
// the `Ctx` it came from (see `Ctx`'s impls).
impl<E: std::panic::UnwindSafe> std::panic::UnwindSafe for PropagateError<E> {}
impl<E: std::panic::RefUnwindSafe> std::panic::RefUnwindSafe for PropagateError<E> {}

impl<E> PropagateError<E> {
    /// `Context` with `ctx`'s error and cause if `ctx` is done, or if its
    /// deadline has passed although the timer has not fired yet (then:
    /// `DeadlineExceeded`, as cause too); `None` while it is live.
    ///
    /// See the type's example.
    pub fn from_ctx(ctx: &Ctx) -> Option<Self> {
        if let Some(err) = ctx.err() {
            let cause = ctx.cause().unwrap_or_else(|| err.into_cause());
            return Some(PropagateError::Context { err, cause });
        }
        if ctx.deadline().is_some_and(|at| at <= Instant::now()) {
            let err = Error::DeadlineExceeded;
            return Some(PropagateError::Context {
                err,
                cause: err.into_cause(),
            });
        }
        None
    }

    /// The context's error, for a `Context` error; `None` for `Inner`.
    ///
    /// # Examples
    ///
    /// ```
    /// use goctx::http::PropagateError;
    ///
    /// let err: PropagateError<std::io::Error> = PropagateError::Inner(std::io::ErrorKind::Other.into());
    /// assert_eq!(err.ctx_err(), None);
    /// assert!(err.inner().is_some());
    /// ```
    pub fn ctx_err(&self) -> Option<Error> {
        match self {
            PropagateError::Context { err, .. } => Some(*err),
            PropagateError::Inner(_) => None,
        }
    }

    /// The context's cause, for a `Context` error; `None` for `Inner`.
    ///
    /// See the type's example.
    pub fn cause(&self) -> Option<&Cause> {
        match self {
            PropagateError::Context { cause, .. } => Some(cause),
            PropagateError::Inner(_) => None,
        }
    }

    /// Whether the context's deadline ended the request.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use goctx::http::PropagateError;
    ///
    /// let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), Duration::ZERO);
    /// let err = PropagateError::<std::io::Error>::from_ctx(&ctx).ok_or("live")?;
    /// assert!(err.is_deadline_exceeded());
    /// # Ok::<(), &'static str>(())
    /// ```
    pub fn is_deadline_exceeded(&self) -> bool {
        self.ctx_err() == Some(Error::DeadlineExceeded)
    }

    /// The client's own error, for `Inner`.
    ///
    /// See [`ctx_err`](Self::ctx_err)'s example.
    pub fn inner(&self) -> Option<&E> {
        match self {
            PropagateError::Inner(e) => Some(e),
            PropagateError::Context { .. } => None,
        }
    }

    /// The client's own error, for `Inner`.
    ///
    /// # Examples
    ///
    /// ```
    /// use goctx::http::PropagateError;
    ///
    /// let err: PropagateError<&str> = PropagateError::Inner("connection refused");
    /// assert_eq!(err.into_inner(), Some("connection refused"));
    /// ```
    pub fn into_inner(self) -> Option<E> {
        match self {
            PropagateError::Inner(e) => Some(e),
            PropagateError::Context { .. } => None,
        }
    }

    /// `Context` if `ctx` is done (the race went to the context), else
    /// `Inner(e)`.
    pub(crate) fn or_ctx(ctx: &Ctx, e: E) -> Self {
        PropagateError::from_ctx(ctx).unwrap_or(PropagateError::Inner(e))
    }
}

impl<E: fmt::Display> fmt::Display for PropagateError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropagateError::Context { err, .. } => fmt::Display::fmt(err, f),
            PropagateError::Inner(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for PropagateError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // A cause that is the error itself adds nothing to the chain.
            PropagateError::Context { cause, .. } if cause.downcast_ref::<Error>().is_some() => {
                None
            }
            PropagateError::Context { cause, .. } => Some(&**cause),
            PropagateError::Inner(e) => e.source(),
        }
    }
}
