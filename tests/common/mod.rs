//! Test doubles shared by several test files.

// Each test file uses only some of these.
#![allow(dead_code)]

use std::any::{Any, TypeId};
use std::time::Instant;

use goctx::{Cause, Context, Ctx, Error, Notify, Subscription};

/// A user context that delegates everything to an inner context: the
/// typical wrapper a user writes, so derived contexts go through the
/// custom-context paths while behaving like the inner one.
pub struct Wrapper(pub Ctx);

impl Context for Wrapper {
    fn deadline(&self) -> Option<Instant> {
        self.0.deadline()
    }
    fn err(&self) -> Option<Error> {
        self.0.err()
    }
    fn cause(&self) -> Option<Cause> {
        self.0.cause()
    }
    fn lookup(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)> {
        Context::lookup(&self.0, key)
    }
    fn subscribe(&self, notify: Notify) -> Subscription {
        Context::subscribe(&self.0, notify)
    }
}

/// Runs `body` on its own thread named `name` and fails if it has not
/// finished within `limit` (a deadlock). Panics inside `body` are passed on.
pub fn run_with_deadlock_limit<T: Send + 'static>(
    name: &str,
    limit: std::time::Duration,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    use std::sync::mpsc::{self, RecvTimeoutError};
    let (done_tx, done_rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let out = body();
            let _ = done_tx.send(());
            out
        })
        .expect("spawn test thread");
    match done_rx.recv_timeout(limit) {
        Ok(()) | Err(RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(RecvTimeoutError::Timeout) => {
            panic!("{name}: not finished after {limit:?} (deadlock?)")
        }
    }
}
