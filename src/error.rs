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

/// Turns a user's error into a [`Cause`], keeping the identity of a value
/// that already is one (so `Arc::ptr_eq` works for callers who pass a
/// `Cause` they hold).
pub(crate) fn into_cause<E>(err: E) -> Cause
where
    E: std::error::Error + Send + Sync + 'static,
{
    let any: &dyn std::any::Any = &err;
    match any.downcast_ref::<Cause>() {
        Some(cause) => cause.clone(),
        None => Arc::new(err),
    }
}
