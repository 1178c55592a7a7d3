//! The error of a query run under a context.

use std::fmt;

use tokio_postgres::error::SqlState;

use crate::error::{Cause, Ended, Error as CtxError};

/// What happened to a query run with [`run`](super::run) or
/// [`Canceler::run`](super::Canceler::run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The query failed on its own while the context was live: a syntax
    /// error, a constraint, a lost connection, or a `statement_timeout`
    /// that fired before the context ended (one shorter than the
    /// context's, set by someone else). [`Error::context_err`] is `None`.
    Query,
    /// The context was done before the call: nothing was sent to the
    /// server, and the query future was dropped without being polled.
    NotStarted,
    /// The context ended while the query ran: a CancelRequest was sent
    /// and the query's own answer came back (usually SQLSTATE 57014,
    /// `query_canceled`; [`Error::code`] says). The connection is idle
    /// and usable. With [`transaction`](super::transaction), the server's
    /// `statement_timeout` and the context's deadline fire together; the
    /// server's message then says "statement timeout" rather than "user
    /// request", but either way the context's deadline stopped it, and
    /// this is the kind.
    Canceled,
    /// The context ended while the query ran, and the query did not answer
    /// within the grace period (the cancel could not be delivered, or the
    /// server is slow to act on it). The query future was dropped; the
    /// statement may still be running on the server. tokio-postgres
    /// discards its late answer, so the connection is usable once the
    /// server is done with it.
    CancelUnconfirmed,
}

/// The error of a query run under a context: the database's error, the
/// context's [`err`](crate::Ctx::err) and [`cause`](crate::Ctx::cause)
/// when the context is why the query stopped, or both.
///
/// `Display` gives the context's part first (`"query canceled: context
/// deadline exceeded"`), then the database's; [`source`] is the
/// [`tokio_postgres::Error`] when there is one.
///
/// [`source`]: std::error::Error::source
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    postgres: Option<tokio_postgres::Error>,
    ended: Option<Ended>,
    cancel: Option<tokio_postgres::Error>,
}

impl Error {
    pub(super) fn query(err: tokio_postgres::Error) -> Error {
        Error::new(ErrorKind::Query, Some(err), None, None)
    }

    pub(super) fn new(
        kind: ErrorKind,
        postgres: Option<tokio_postgres::Error>,
        ended: Option<Ended>,
        cancel: Option<tokio_postgres::Error>,
    ) -> Error {
        Error {
            inner: Box::new(Inner {
                kind,
                postgres,
                ended,
                cancel,
            }),
        }
    }

    /// What happened; see [`ErrorKind`].
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The context's error when the context is why the query stopped
    /// ([`Canceled`](crate::Error::Canceled) or
    /// [`DeadlineExceeded`](crate::Error::DeadlineExceeded)); `None` when
    /// the query failed on its own.
    pub fn context_err(&self) -> Option<CtxError> {
        self.inner.ended.as_ref().map(|ended| ended.err)
    }

    /// The context's cause ([`Ctx::cause`](crate::Ctx::cause)) when the
    /// context is why the query stopped.
    pub fn cause(&self) -> Option<&Cause> {
        self.inner
            .ended
            .as_ref()
            .and_then(|ended| ended.cause.as_ref())
    }

    /// The server's SQLSTATE, when the server answered with an error:
    /// [`SqlState::QUERY_CANCELED`] (57014) for a canceled query or a
    /// `statement_timeout`.
    pub fn code(&self) -> Option<&SqlState> {
        self.inner.postgres.as_ref().and_then(|e| e.code())
    }

    /// The database's error, if the query answered with one.
    pub fn as_postgres(&self) -> Option<&tokio_postgres::Error> {
        self.inner.postgres.as_ref()
    }

    /// The database's error, if the query answered with one.
    pub fn into_postgres(self) -> Option<tokio_postgres::Error> {
        self.inner.postgres
    }

    /// Why the CancelRequest could not be sent (the server unreachable on
    /// a new connection, say), when it could not.
    pub fn cancel_error(&self) -> Option<&tokio_postgres::Error> {
        self.inner.cancel.as_ref()
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.inner.kind)
            .field("context_err", &self.context_err())
            .field("cause", &self.cause())
            .field("postgres", &self.inner.postgres)
            .field("cancel", &self.inner.cancel)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.inner.kind {
            ErrorKind::Query => {
                return match &self.inner.postgres {
                    Some(err) => write_postgres(f, err),
                    None => f.write_str("query failed"),
                };
            }
            ErrorKind::NotStarted => "query not started",
            ErrorKind::Canceled => "query canceled",
            ErrorKind::CancelUnconfirmed => "query abandoned, not confirmed stopped",
        };
        f.write_str(what)?;
        if let Some(ended) = &self.inner.ended {
            write!(f, ": {ended}")?;
        }
        if let Some(pg) = &self.inner.postgres {
            f.write_str(": ")?;
            write_postgres(f, pg)?;
        }
        if let Some(cancel) = &self.inner.cancel {
            write!(f, "; the cancel request failed: {cancel}")?;
        }
        Ok(())
    }
}

/// tokio-postgres's `Display` of a server error is only "db error"; the
/// server's message and SQLSTATE are what a log needs.
fn write_postgres(f: &mut fmt::Formatter<'_>, err: &tokio_postgres::Error) -> fmt::Result {
    match err.as_db_error() {
        Some(db) => write!(
            f,
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        ),
        None => write!(f, "{err}"),
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .postgres
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(err: tokio_postgres::Error) -> Error {
        Error::query(err)
    }
}
