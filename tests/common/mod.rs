//! Test doubles shared by several test files.

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
