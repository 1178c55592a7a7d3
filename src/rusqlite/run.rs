//! Running statements under a context: interrupt and progress check.

use std::sync::Arc;

use ::rusqlite::{Connection, ErrorCode};
use parking_lot::Mutex;

use super::error::{Error, ErrorKind};
use crate::after::{AfterFunc, after_func};
use crate::context::Ctx;
use crate::error::Ended;

/// How many SQLite virtual-machine steps pass between two checks of the
/// context by [`run`]'s progress handler: 10,000, a fraction of a
/// millisecond of work.
pub const PROGRESS_STEPS: i32 = 10_000;

/// Runs `f` on `conn` until it returns or `ctx` ends; when `ctx` ends
/// first, the statement running on `conn` is interrupted (SQLite's
/// `sqlite3_interrupt`) and fails with `SQLITE_INTERRUPT`, returned as
/// [`ErrorKind::Interrupted`] with the context's `err()` and `cause()`.
///
/// - `ctx` already done: [`ErrorKind::NotStarted`], and `f` is not
///   called.
/// - `f` returns first: its result, unchanged (an error as
///   [`ErrorKind::Query`]). A result `f` got before the context ended
///   is kept even if it ended since.
///
/// `f` may run several statements; each stops once the context is done.
/// When `run` returns, or `f` panics, nothing it set up can touch `conn`
/// again: the interrupt is disarmed (waiting out one in progress) and the
/// progress handler removed. `run` installs its own progress handler on `conn`
/// for the call, replacing one of the caller's (rusqlite keeps no way to
/// read it back); the `busy_timeout` and everything else are untouched.
///
/// Blocking: call it from a thread that may block (in async code, inside
/// `tokio::task::spawn_blocking`).
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), goctx::rusqlite::Error> {
/// let conn = rusqlite::Connection::open_in_memory().map_err(goctx::rusqlite::Error::from)?;
/// let ctx = goctx::background();
/// let answer: i64 = goctx::rusqlite::run(&ctx, &conn, |conn| {
///     conn.query_row("SELECT 6 * 7", [], |row| row.get(0))
/// })?;
/// assert_eq!(answer, 42);
/// # Ok(()) }
/// ```
pub fn run<T, F>(ctx: &Ctx, conn: &Connection, f: F) -> Result<T, Error>
where
    F: FnOnce(&Connection) -> ::rusqlite::Result<T>,
{
    if let Some(err) = ctx.err() {
        return Err(Error::new(
            ErrorKind::NotStarted,
            None,
            Some(Ended {
                err,
                cause: ctx.cause(),
            }),
        ));
    }
    // `Some` while `run` may interrupt `conn`; the callback interrupts under
    // the lock, so once `run` has taken the handle out, no interrupt from
    // this call can reach a later statement.
    let armed = Arc::new(Mutex::new(Some(conn.get_interrupt_handle())));
    let callback = Arc::clone(&armed);
    let stop = after_func(ctx, move || {
        if let Some(handle) = &*callback.lock() {
            handle.interrupt();
        }
    });
    let watched = ctx.clone();
    conn.progress_handler(PROGRESS_STEPS, Some(move || watched.err().is_some()));
    // Disarms on the way out, a panic in `f` included: a connection that
    // outlives the panic (caught, or in a pool) must not be interrupted
    // later by this call's context.
    let disarm = Disarm {
        conn,
        armed: &armed,
        stop: &stop,
    };

    let result = f(conn);
    drop(disarm);

    result.map_err(|err| {
        let interrupted = err.sqlite_error_code() == Some(ErrorCode::OperationInterrupted);
        match ctx.err() {
            Some(ended) if interrupted => Error::new(
                ErrorKind::Interrupted,
                Some(err),
                Some(Ended {
                    err: ended,
                    cause: ctx.cause(),
                }),
            ),
            _ => Error::new(ErrorKind::Query, Some(err), None),
        }
    })
}

/// Takes back what [`run`] set up on the connection, when dropped.
struct Disarm<'a> {
    conn: &'a Connection,
    armed: &'a Mutex<Option<::rusqlite::InterruptHandle>>,
    stop: &'a AfterFunc,
}

impl Drop for Disarm<'_> {
    fn drop(&mut self) {
        self.stop.stop();
        self.armed.lock().take();
        self.conn.progress_handler(0, None::<fn() -> bool>);
    }
}
