//! The error of statements run under a context.

use std::fmt;

use crate::error::{Cause, Ended, Error as CtxError};

/// What happened to statements run with [`run`](super::run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A statement failed on its own (or was interrupted by someone else)
    /// while the context was live. [`Error::context_err`] is `None`.
    Query,
    /// The context was done before the call; the closure was not called.
    NotStarted,
    /// The context ended while a statement ran, and SQLite stopped it
    /// (`SQLITE_INTERRUPT`). The connection is usable; an open
    /// transaction is still open (SQLite leaves it to the caller).
    Interrupted,
}

/// The error of statements run under a context: SQLite's error, the
/// context's [`err`](crate::Ctx::err) and [`cause`](crate::Ctx::cause)
/// when the context is why they stopped, or both.
///
/// `Display` gives the context's part first (`"statement interrupted:
/// context canceled"`), then SQLite's; [`source`] is the
/// [`rusqlite::Error`] when there is one.
///
/// [`source`]: std::error::Error::source
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    sqlite: Option<::rusqlite::Error>,
    ended: Option<Ended>,
}

impl Error {
    pub(super) fn new(
        kind: ErrorKind,
        sqlite: Option<::rusqlite::Error>,
        ended: Option<Ended>,
    ) -> Error {
        Error {
            inner: Box::new(Inner {
                kind,
                sqlite,
                ended,
            }),
        }
    }

    /// What happened; see [`ErrorKind`].
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The context's error when the context is why the statements
    /// stopped; `None` when they failed on their own.
    pub fn context_err(&self) -> Option<CtxError> {
        self.inner.ended.as_ref().map(|ended| ended.err)
    }

    /// The context's cause ([`Ctx::cause`](crate::Ctx::cause)) when the
    /// context is why the statements stopped.
    pub fn cause(&self) -> Option<&Cause> {
        self.inner
            .ended
            .as_ref()
            .and_then(|ended| ended.cause.as_ref())
    }

    /// SQLite's error, if a statement failed.
    pub fn as_sqlite(&self) -> Option<&::rusqlite::Error> {
        self.inner.sqlite.as_ref()
    }

    /// SQLite's error, if a statement failed.
    pub fn into_sqlite(self) -> Option<::rusqlite::Error> {
        self.inner.sqlite
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.inner.kind)
            .field("context_err", &self.context_err())
            .field("cause", &self.cause())
            .field("sqlite", &self.inner.sqlite)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.inner.kind {
            ErrorKind::Query => {
                return match &self.inner.sqlite {
                    Some(err) => write!(f, "{err}"),
                    None => f.write_str("statement failed"),
                };
            }
            ErrorKind::NotStarted => "statement not started",
            ErrorKind::Interrupted => "statement interrupted",
        };
        f.write_str(what)?;
        if let Some(ended) = &self.inner.ended {
            write!(f, ": {ended}")?;
        }
        if let Some(sqlite) = &self.inner.sqlite {
            write!(f, ": {sqlite}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .sqlite
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<::rusqlite::Error> for Error {
    fn from(err: ::rusqlite::Error) -> Error {
        Error::new(ErrorKind::Query, Some(err), None)
    }
}
