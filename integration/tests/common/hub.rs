//! The one subscriber list of the suite: what a user `Context` keeps of the
//! `Notify`s its `subscribe` is handed, to deliver them all when it ends
//! and to give one back when its `Subscription` is canceled.
//!
//! It is `goctx::custom::Subscribers`, the helper the library offers to anyone
//! implementing `Context`. A test's user context keeps its own error (and
//! cause), sets it first, then calls `notify_all`; its `subscribe` is
//! `Hub::subscribe`. A context that never ends never notifies
//! ([`NeverDone`] is the plain one).
//!
//! `examples/leakcheck.rs` includes this file too (by `#[path]`), so it may
//! use only `std` and goctx.

use std::sync::Arc;

use goctx::Error;
use goctx::custom::{Context, Notify, Subscription};

/// The suite's subscriber list is the library's own.
pub type Hub = goctx::custom::Subscribers;

/// A user context that is never done but keeps its own subscriber list in
/// `.0` (never fired), so derived contexts register with user code and must
/// unregister: `.0.is_empty()` once they are gone.
pub struct NeverDone(pub Arc<Hub>);

impl Context for NeverDone {
    fn err(&self) -> Option<Error> {
        None
    }
    fn subscribe(&self, notify: Notify) -> Subscription {
        self.0.subscribe(notify)
    }
}
