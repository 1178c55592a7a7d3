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
    /// every time, so `Cause::ptr_eq` holds between two calls.
    pub(crate) fn into_cause(self) -> Cause {
        static CANCELED: LazyLock<Cause> = LazyLock::new(|| Cause(Arc::new(Error::Canceled)));
        static DEADLINE: LazyLock<Cause> =
            LazyLock::new(|| Cause(Arc::new(Error::DeadlineExceeded)));
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

/// The reason behind a cancellation: any error, shared (Go's `error` as
/// `context.Cause` returns it).
///
/// Returned by [`Ctx::cause`](crate::Ctx::cause). When a context was ended
/// without an explicit cause, its cause is its [`Error`]
/// (`cause.downcast_ref::<goctx::Error>()`). A cheap handle: clones share
/// one error, and [`Cause::ptr_eq`] tells whether two are the same one
/// (Go compares errors with `==`).
///
/// It derefs to `dyn Error + Send + Sync`, so `cause.is::<T>()`,
/// `cause.downcast_ref::<T>()`, `cause.source()` and `to_string()` work as
/// on the error itself; `Display`, `Debug` and [`source`](std::error::Error::source)
/// are the error's. Made from an error with [`Cause::new`], or with
/// `.into()` / `Cause::from` from a message (`&str`, `String`), a goctx
/// [`Error`], a boxed error or an `Arc` of one.
///
/// # Examples
///
/// ```
/// use goctx::Cause;
///
/// let why = Cause::from("shutting down");
/// let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
/// cancel.cancel_with_cause(why.clone());
/// let got = ctx.cause().expect("canceled");
/// assert!(Cause::ptr_eq(&got, &why));
/// assert_eq!(got.to_string(), "shutting down");
///
/// let timeout: Cause = goctx::Error::DeadlineExceeded.into();
/// assert_eq!(timeout.downcast_ref::<goctx::Error>(), Some(&goctx::Error::DeadlineExceeded));
/// ```
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl Cause {
    /// `err` as a cause. A `Cause` passed in is kept as it is (the same
    /// shared error); a goctx [`Error`] shares one process-wide allocation.
    pub fn new<E>(err: E) -> Cause
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        // One allocation for a new error; none for one that is already a
        // cause or a goctx error (`into_cause`'s rules, without its box).
        let any: &dyn std::any::Any = &err;
        if let Some(cause) = any.downcast_ref::<Cause>() {
            return cause.clone();
        }
        if let Some(err) = any.downcast_ref::<Error>() {
            return err.into_cause();
        }
        Cause(Arc::new(err))
    }

    /// Whether `a` and `b` are the same error (clones of one cause), as
    /// Go's `==` on two error values.
    pub fn ptr_eq(a: &Cause, b: &Cause) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }

    /// The shared error, for APIs that take an `Arc` of one (such as
    /// `tonic::Status::set_source`).
    pub fn into_arc(self) -> Arc<dyn std::error::Error + Send + Sync + 'static> {
        self.0
    }
}

impl std::ops::Deref for Cause {
    type Target = dyn std::error::Error + Send + Sync + 'static;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl AsRef<dyn std::error::Error + Send + Sync + 'static> for Cause {
    fn as_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&*self.0, f)
    }
}

impl std::fmt::Debug for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

/// Transparent: the error's own `source()`.
impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Cause {
        into_cause(message)
    }
}

impl From<String> for Cause {
    fn from(message: String) -> Cause {
        into_cause(message)
    }
}

impl From<Error> for Cause {
    fn from(err: Error) -> Cause {
        err.into_cause()
    }
}

impl From<CancelFuncDropped> for Cause {
    fn from(_: CancelFuncDropped) -> Cause {
        dropped_cause()
    }
}

impl From<Box<dyn std::error::Error + Send + Sync + 'static>> for Cause {
    fn from(err: Box<dyn std::error::Error + Send + Sync + 'static>) -> Cause {
        into_cause(err)
    }
}

impl From<Arc<dyn std::error::Error + Send + Sync + 'static>> for Cause {
    fn from(err: Arc<dyn std::error::Error + Send + Sync + 'static>) -> Cause {
        Cause(err)
    }
}

impl From<Cause> for Arc<dyn std::error::Error + Send + Sync + 'static> {
    fn from(cause: Cause) -> Self {
        cause.0
    }
}

/// Turns a user's error (any error type, a `&str`, a `String`, a boxed
/// error) into a [`Cause`], keeping the identity of a value that already is
/// one (so `Cause::ptr_eq` works for callers who pass a `Cause` they hold)
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
    // An `Arc` of an error, as causes were before `Cause` had a type of
    // its own: kept, not wrapped again.
    let boxed = match boxed.downcast::<Arc<dyn std::error::Error + Send + Sync + 'static>>() {
        Ok(shared) => return Cause(*shared),
        Err(other) => other,
    };
    match boxed.downcast::<Error>() {
        Ok(err) => err.into_cause(),
        Err(other) => Cause(Arc::from(other)),
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
    static DROPPED: LazyLock<Cause> = LazyLock::new(|| Cause(Arc::new(CancelFuncDropped)));
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

/// How a context ended, as the database integrations' errors carry it:
/// its `err()` and `cause()`. (Crate-private.)
#[cfg(any(feature = "postgres", feature = "rusqlite"))]
#[derive(Clone, Debug)]
pub(crate) struct Ended {
    pub(crate) err: Error,
    pub(crate) cause: Option<Cause>,
}

#[cfg(any(feature = "postgres", feature = "rusqlite"))]
impl std::fmt::Display for Ended {
    /// `context canceled (the cause)`; the cause is left out when it only
    /// repeats the error.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.err)?;
        match &self.cause {
            Some(cause) if cause.downcast_ref::<Error>() != Some(&self.err) => {
                write!(f, " ({cause})")
            }
            _ => Ok(()),
        }
    }
}
