//! User-implemented contexts, as the core sees them: the small
//! [`Upstream`] interface that `custom.rs` implements for every public
//! `Context`, and the [`CustomNode`] that keeps goctx's promises about one.

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use super::derived::Derived;
use super::registry::{Entry, Registration};
use crate::error::{Cause, Error};

/// What the core needs from a user context. Implemented by `custom.rs`
/// for every `Context`; the core never names that trait.
pub(crate) trait Upstream: Send + Sync + 'static {
    fn deadline(&self) -> Option<Instant>;
    fn err(&self) -> Option<Error>;
    fn cause(&self) -> Option<Cause>;
    fn lookup(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)>;
    /// Registers `entry` to be fired once the context is done. `origin`
    /// goes with it, so that a notification the context delivers while
    /// its `err()` still says `None` is recorded as an end.
    fn subscribe(&self, entry: Entry, origin: Weak<CustomNode>) -> Registration;
    fn fmt_name(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

/// A user context inside a `Ctx`, with the answer goctx has already given
/// about it.
///
/// A user's methods may disagree with each other (a done `err()` with no
/// `cause()`, an `err()` that goes back to `None`, a notification before
/// `err()` says done). goctx's own promises must hold anyway, so the first
/// time it sees the context done it records the error and answers from
/// that record from then on: `err()` never goes back to `None` or changes,
/// and `done()`, derived contexts and callbacks all see that error.
/// `cause()` is `Some` exactly when `err()` is: the user's cause, or else
/// the error itself, as Go does since golang/go#73258. The cause is asked
/// each time, not recorded, as in Go (whose tests pin that a custom context
/// finding its cause through its parent reports the parent's later cause).
pub(crate) struct CustomNode {
    context: Box<dyn Upstream>,
    /// The recorded error: set once, by the first `err()` (or notification)
    /// that finds the context done; never changed afterwards.
    ended: OnceLock<Error>,
    /// How many nodes derive from this one (`derived.rs`).
    pub(super) derived: Derived,
}

impl CustomNode {
    pub(crate) fn new(context: Box<dyn Upstream>) -> Self {
        CustomNode {
            context,
            ended: OnceLock::new(),
            derived: Derived::default(),
        }
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        self.context.deadline()
    }

    pub(super) fn lookup(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)> {
        self.context.lookup(key)
    }

    pub(super) fn fmt_name(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.context.fmt_name(f)
    }

    /// The user's `err()`, made monotonic: once `Some`, always the same.
    /// Two racing first callers may see different user answers; the first
    /// recorded wins and both return it.
    pub(crate) fn err(&self) -> Option<Error> {
        if let Some(err) = self.ended.get() {
            return Some(*err);
        }
        let err = self.context.err()?;
        Some(*self.ended.get_or_init(|| err))
    }

    /// `Some` exactly when `err()` is: the user's cause, or the error.
    pub(crate) fn cause(&self) -> Option<Cause> {
        let err = self.err()?;
        Some(self.context.cause().unwrap_or_else(|| err.into_cause()))
    }

    /// A notification arrived: the context is done, whatever its `err()`
    /// says (see `Notify::notify`).
    pub(crate) fn end_notified(&self) {
        if self.err().is_none() {
            let _ = self.ended.set(Error::Canceled);
        }
    }

    /// Subscribes `entry` with the user context.
    pub(crate) fn subscribe(self: &Arc<Self>, entry: Entry) -> Registration {
        self.context.subscribe(entry, Arc::downgrade(self))
    }
}
