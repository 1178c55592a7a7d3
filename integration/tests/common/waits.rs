//! Bounded waits for the async HTTP and gRPC tests: a wait for something
//! that must happen fails the test, naming what, instead of hanging it.

use std::future::Future;
use std::time::{Duration, Instant};

use goctx::{Cause, Ctx};
use tokio::time::timeout;

/// The bound on every wait for something that must happen.
pub const WATCHDOG: Duration = Duration::from_secs(5);

/// `f`, or a panic naming `what` after the watchdog.
pub async fn bounded<F: Future>(what: &str, f: F) -> F::Output {
    match timeout(WATCHDOG, f).await {
        Ok(out) => out,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// The cause `ctx` ends with, within `limit`.
pub async fn ended_within(ctx: &Ctx, limit: Duration) -> Cause {
    let start = Instant::now();
    match timeout(limit, ctx.done()).await {
        Ok(_) => ctx.cause().expect("a done context has a cause"),
        Err(_) => panic!("context still live after {:?}: {ctx:?}", start.elapsed()),
    }
}
