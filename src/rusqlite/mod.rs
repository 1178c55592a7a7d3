//! SQLite statements that stop when their context ends (feature
//! `rusqlite`): the same one-call shape as [`postgres`](crate::postgres).
//!
//! SQLite runs in the calling thread, so stopping it takes two things,
//! both done by [`run`]: an [`after_func`](crate::after_func) that calls
//! `sqlite3_interrupt` when the context ends, and a progress handler that
//! checks the context every few thousand virtual-machine steps. The
//! second closes a gap in the first: SQLite forgets an interrupt that
//! comes while no statement is running, so a context that ends just
//! before a statement starts (or between two statements of one closure)
//! would otherwise let it run to its end.
//!
//! Built on rusqlite 0.37: your own `rusqlite` dependency must be 0.37 as
//! well (two versions would each link their own SQLite, which cargo
//! refuses), and it picks how SQLite is linked (its `bundled` feature, or
//! the system's library).
//!
//! ```
//! # fn main() -> Result<(), goctx::rusqlite::Error> {
//! use std::time::Duration;
//!
//! let conn = rusqlite::Connection::open_in_memory().map_err(goctx::rusqlite::Error::from)?;
//! let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), Duration::from_millis(50));
//! // Counts to a billion: far longer than 50 ms.
//! let err = goctx::rusqlite::run(&ctx, &conn, |conn| {
//!     conn.query_row(
//!         "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 1000000000)
//!          SELECT count(*) FROM n",
//!         [],
//!         |row| row.get::<_, i64>(0),
//!     )
//! })
//! .unwrap_err();
//! assert_eq!(err.context_err(), Some(goctx::Error::DeadlineExceeded));
//! # Ok(()) }
//! ```

mod error;
mod run;

pub use error::{Error, ErrorKind};
pub use run::{PROGRESS_STEPS, run};
