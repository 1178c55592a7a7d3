//! PostgreSQL queries that stop on the server when their context ends
//! (feature `postgres`, on tokio-postgres): Go's pgx behaviour.
//!
//! Dropping a tokio-postgres (or sqlx) query future stops the client
//! waiting, not the server working: the statement runs on for its full
//! time, holding locks and I/O. Here the context reaches the server two
//! ways:
//!
//! - [`run`]: when the context ends before the query answers, a
//!   CancelRequest goes to the server, and the query's own answer
//!   (SQLSTATE 57014) comes back with the context's `err()` and `cause()`
//!   in an [`Error`]. A context already done sends nothing.
//! - [`transaction`] and [`set_statement_timeout`]: inside a transaction,
//!   the time the context has left becomes `SET LOCAL statement_timeout`,
//!   so the server stops the statement at the deadline even if this
//!   process is frozen or cut off.
//!
//! Built on tokio-postgres 0.7: the `Client` you pass must come from that
//! line of the crate.
//!
//! A pooled connection (deadpool-postgres, bb8) derefs to the
//! [`tokio_postgres::Client`] these take, and goes back to the pool idle
//! and outside any transaction. `docs/http.md` ("Databases") has the
//! rules, the SQLite counterpart and a recipe for sqlx.
//!
//! ```no_run
//! # async fn example(ctx: goctx::Ctx, client: tokio_postgres::Client) -> Result<(), goctx::postgres::Error> {
//! let rows = goctx::postgres::run(
//!     &ctx,
//!     &client,
//!     client.query("SELECT name FROM users WHERE id = $1", &[&42_i64]),
//! )
//! .await?;
//! println!("{} rows", rows.len());
//! # Ok(()) }
//! # let _ = example;
//! ```

mod error;
mod run;
mod timeout;

pub use error::{Error, ErrorKind};
pub use run::{Canceler, DEFAULT_GRACE, run};
pub use timeout::{commit, set_statement_timeout, transaction};
