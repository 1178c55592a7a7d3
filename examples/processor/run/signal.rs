//! Signals as contexts, for every front end: which signal ended a
//! [`signal_context`](goctx::tokio::signal_context), and the wait for the
//! next one. What each front end does on a signal is its own: the CLI
//! cancels its run (`cli.rs`), the service drains (`serve/mod.rs`), a
//! worker hands its tasks back (`worker.rs`); each exits at once on a
//! second one.

use goctx::tokio::{Signal, SignalReceived};

/// The signal that ended `ctx`, a [`signal_context`](goctx::tokio::signal_context),
/// if a signal is what ended it.
pub fn received(ctx: &goctx::Ctx) -> Option<Signal> {
    let cause = ctx.cause()?;
    cause
        .downcast_ref::<SignalReceived>()
        .map(SignalReceived::signal)
}

/// Waits for the next SIGINT or SIGTERM (Ctrl+C on Windows), listening
/// from this call on. `None` if the listening ended without one: the
/// runtime shutting down drops the listener, which ends its context with
/// another cause, and that must not pass for a second Ctrl+C.
pub async fn next_signal() -> Option<Signal> {
    let (ctx, _stop) = goctx::tokio::signal_context(&goctx::background());
    ctx.done().await;
    received(&ctx)
}
