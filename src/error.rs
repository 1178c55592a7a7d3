//! The two ways a context ends, and the cause that may explain why.

use std::sync::{Arc, LazyLock};

/// Why a context is done: the value of [`Ctx::err`](crate::Ctx::err).
///
/// There are exactly two reasons, as in Go: the context was canceled
/// (by its own [`CancelFunc`](crate::CancelFunc), by an ancestor, or because
/// every handle of its cancel function was dropped), or its deadline passed.
/// The messages are Go's, word for word, so logs read the same in both
/// languages. For a richer explanation see [`Ctx::cause`](crate::Ctx::cause).
///
/// # Examples
///
/// ```
/// use goctx::Error;
///
/// assert_eq!(Error::Canceled.to_string(), "context canceled");
/// assert_eq!(Error::DeadlineExceeded.to_string(), "context deadline exceeded");
/// assert!(Error::DeadlineExceeded.is_timeout());
/// let io: std::io::Error = Error::DeadlineExceeded.into();
/// assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    /// The context was canceled for some reason other than its deadline
    /// passing. Go: `context.Canceled`.
    #[error("context canceled")]
    Canceled,
    /// The context's deadline passed. Go: `context.DeadlineExceeded`.
    #[error("context deadline exceeded")]
    DeadlineExceeded,
}

impl Error {
    /// Whether this error reports a timeout: true only for
    /// [`Error::DeadlineExceeded`], like Go's `net.Error.Timeout()`.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::DeadlineExceeded)
    }

    /// Whether this error is also "temporary" in the sense of Go's
    /// `net.Error.Temporary()`: true only for [`Error::DeadlineExceeded`].
    pub fn is_temporary(&self) -> bool {
        self.is_timeout()
    }

    /// This error as a [`Cause`]. The same shared allocation is returned
    /// every time, so `Arc::ptr_eq` holds between two calls.
    pub(crate) fn into_cause(self) -> Cause {
        static CANCELED: LazyLock<Cause> = LazyLock::new(|| Arc::new(Error::Canceled));
        static DEADLINE: LazyLock<Cause> = LazyLock::new(|| Arc::new(Error::DeadlineExceeded));
        match self {
            Error::Canceled => CANCELED.clone(),
            Error::DeadlineExceeded => DEADLINE.clone(),
        }
    }
}

impl From<Error> for std::io::Error {
    /// `DeadlineExceeded` becomes [`ErrorKind::TimedOut`](std::io::ErrorKind::TimedOut),
    /// `Canceled` becomes [`ErrorKind::Interrupted`](std::io::ErrorKind::Interrupted);
    /// the original error stays reachable through `get_ref()`.
    fn from(err: Error) -> Self {
        let kind = match err {
            Error::Canceled => std::io::ErrorKind::Interrupted,
            Error::DeadlineExceeded => std::io::ErrorKind::TimedOut,
        };
        std::io::Error::new(kind, err)
    }
}

/// The reason behind a cancellation: any error, shared.
///
/// Returned by [`Ctx::cause`](crate::Ctx::cause). When a context was ended
/// without an explicit cause, its cause is its [`Error`] (downcast with
/// `cause.downcast_ref::<goctx::Error>()`).
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Turns a user's error (any error type, a `&str`, a `String`, a boxed
/// error) into a [`Cause`], keeping the identity of a value that already is
/// one (so `Arc::ptr_eq` works for callers who pass a `Cause` they hold)
/// and sharing the allocation of a plain [`Error`].
pub(crate) fn into_cause<E>(err: E) -> Cause
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let boxed: Box<dyn std::error::Error + Send + Sync> = err.into();
    let boxed = match boxed.downcast::<Cause>() {
        Ok(cause) => return *cause,
        Err(other) => other,
    };
    match boxed.downcast::<Error>() {
        Ok(err) => err.into_cause(),
        Err(other) => Arc::from(other),
    }
}

/// The cause of a context canceled because the last handle of its
/// [`CancelFunc`](crate::CancelFunc) was dropped, rather than by a call.
///
/// Its `err()` is [`Error::Canceled`] as usual; the cause tells the two
/// apart. The usual culprit is Go's habit `ctx, _ := context.WithTimeout(..)`
/// written as `let (ctx, _) = goctx::with_timeout(..)`: `_` drops the
/// `CancelFunc` at once, so the context is canceled before it is used. Bind
/// it to a name (`_cancel`) instead, or call
/// [`CancelFunc::detach`](crate::CancelFunc::detach) to give it up without
/// canceling.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let (ctx, _) = goctx::with_timeout(&goctx::background(), Duration::from_secs(5));
/// assert_eq!(ctx.err(), Some(goctx::Error::Canceled));
/// let cause = ctx.cause().expect("done");
/// assert!(cause.is::<goctx::CancelFuncDropped>());
/// assert_eq!(cause.to_string(), "context canceled: the last CancelFunc was dropped");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, thiserror::Error)]
#[error("context canceled: the last CancelFunc was dropped")]
pub struct CancelFuncDropped;

/// `CancelFuncDropped` as a [`Cause`]: one shared allocation.
pub(crate) fn dropped_cause() -> Cause {
    static DROPPED: LazyLock<Cause> = LazyLock::new(|| Arc::new(CancelFuncDropped));
    DROPPED.clone()
}

/// Why [`CancelFunc::extend_deadline`](crate::CancelFunc::extend_deadline)
/// refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExtendError {
    /// The context is already done; its deadline is final.
    #[error("cannot extend the deadline: {0}")]
    Done(Error),
    /// The context has no deadline of its own to move: it was made by
    /// `with_cancel` (or `with_cancel_cause`), so its deadline, if any, is
    /// an ancestor's.
    #[error("cannot extend the deadline: the context has no deadline of its own")]
    NoDeadline,
}
