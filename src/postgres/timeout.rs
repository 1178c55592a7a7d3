//! The context's deadline as the server's `statement_timeout`.

use std::time::Instant;

use tokio_postgres::{Client, Transaction};

use super::error::Error;
use super::run::{DEFAULT_CANCELER, run};
use crate::context::Ctx;

/// Begins a transaction under `ctx` and hands the server the time `ctx`
/// has left, as [`set_statement_timeout`] does.
///
/// The `BEGIN` itself runs under [`run`]: it fails with the context's
/// error if `ctx` is done, and sends nothing then. A pooled connection
/// derefs to the client (`&mut object`).
///
/// Dropping the transaction without `commit` rolls it back (tokio-postgres
/// sends the `ROLLBACK` ahead of the connection's next statement), which
/// also ends the `SET LOCAL`: the connection goes back to a pool outside
/// any transaction and with its own `statement_timeout`.
///
/// # Examples
///
/// ```no_run
/// # async fn example(ctx: goctx::Ctx, mut client: tokio_postgres::Client) -> Result<(), goctx::postgres::Error> {
/// let tx = goctx::postgres::transaction(&ctx, &mut client).await?;
/// // The server stops this on its own at the deadline, even if this
/// // process stalls; `run` cancels it sooner if `ctx` is canceled.
/// goctx::postgres::run(&ctx, tx.client(), tx.execute("UPDATE accounts SET seen = now()", &[])).await?;
/// goctx::postgres::commit(&ctx, tx).await?;
/// # Ok(()) }
/// # let _ = example;
/// ```
pub async fn transaction<'a>(ctx: &Ctx, client: &'a mut Client) -> Result<Transaction<'a>, Error> {
    // The token first: `transaction()` borrows the client mutably.
    let token = client.cancel_token();
    let tx = DEFAULT_CANCELER
        .run_with(ctx, || token, client.transaction())
        .await?;
    set_statement_timeout(ctx, &tx).await?;
    Ok(tx)
}

/// Commits `tx` under `ctx`, as [`run`] would run it: `run(&ctx,
/// tx.client(), tx.commit())` cannot be written, since `commit` consumes
/// the transaction the client is borrowed from.
///
/// If `ctx` is done before the call, nothing is sent and the transaction
/// is dropped, which rolls it back.
pub async fn commit(ctx: &Ctx, tx: Transaction<'_>) -> Result<(), Error> {
    let token = tx.cancel_token();
    DEFAULT_CANCELER.run_with(ctx, || token, tx.commit()).await
}

/// Makes the context's remaining time the transaction's
/// `statement_timeout` (`SET LOCAL`, in milliseconds, rounded up, at most
/// the server's limit of `i32::MAX` ms, about 24.8 days), so that
/// the server stops a statement at the deadline on its own, even when this
/// process is frozen or cut off from the server and never sends a cancel:
/// the database's counterpart of gRPC's `grpc-timeout`. Returns the
/// timeout set, or `None` when `ctx` has no deadline (then nothing is
/// sent).
///
/// Each later statement of the transaction may run for the time that was
/// left when this was called: the limit is per statement, as
/// `statement_timeout` is. Running each under [`run`] also stops the
/// transaction as a whole at the deadline. Call it again to tighten the
/// limit as time passes.
///
/// `SET LOCAL` lasts until the transaction ends, which is why this takes a
/// [`Transaction`]: outside one the server ignores it (with a warning), and
/// a session-wide `SET` would follow a pooled connection to its next user.
///
/// # Errors
///
/// The context's error, without sending anything, when `ctx` is done
/// (and so when its deadline has passed); the server's if the `SET`
/// fails.
#[doc(alias = "statement_timeout")]
pub async fn set_statement_timeout(
    ctx: &Ctx,
    tx: &Transaction<'_>,
) -> Result<Option<std::time::Duration>, Error> {
    let Some(deadline) = ctx.deadline() else {
        return Ok(None);
    };
    let left = deadline.saturating_duration_since(Instant::now());
    // Rounded up, and at least 1: 0 would mean "no timeout" to the server.
    let millis = left
        .as_nanos()
        .div_ceil(1_000_000)
        .clamp(1, MAX_STATEMENT_TIMEOUT_MS);
    let sql = format!("SET LOCAL statement_timeout = {millis}");
    run(ctx, tx.client(), tx.batch_execute(&sql)).await?;
    // At most `MAX_STATEMENT_TIMEOUT_MS`, so the conversion cannot fail.
    Ok(Some(std::time::Duration::from_millis(millis as u64)))
}

/// The largest `statement_timeout` PostgreSQL accepts: `i32::MAX`
/// milliseconds, about 24.8 days.
const MAX_STATEMENT_TIMEOUT_MS: u128 = i32::MAX as u128;
