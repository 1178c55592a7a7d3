//! `goctx::tokio::signal_context` with real signals sent to this process
//! (issue 17). One test function: signal dispositions are process-wide,
//! and a signal sent before any listener exists would end the test run.
#![cfg(unix)]

use std::time::Duration;

use goctx::Error;
use goctx::tokio::{Signal, SignalReceived, signal_context};
use tokio::time::timeout;

/// Generous bound on every wait: a correct run takes milliseconds.
const LIMIT: Duration = Duration::from_secs(10);

fn send(signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[tokio::test]
async fn signal_context_ends_with_the_signal_as_cause() {
    // SIGTERM, seen by two contexts at once.
    let (ctx, _stop) = signal_context(&goctx::background());
    let (other, _stop_other) = signal_context(&goctx::background());
    assert_eq!(ctx.err(), None);
    send("-TERM");
    timeout(LIMIT, ctx.done()).await.expect("ended by SIGTERM");
    timeout(LIMIT, other.done())
        .await
        .expect("every listener hears it");
    assert_eq!(ctx.err(), Some(Error::Canceled));
    let cause = ctx.cause().unwrap();
    let received = cause
        .downcast_ref::<SignalReceived>()
        .expect("SignalReceived");
    assert_eq!(received.signal(), Signal::Terminate);
    assert_eq!(cause.to_string(), "context canceled: received SIGTERM");

    // SIGINT, to a new context (the first one is done and stays so).
    let (ctx, _stop) = signal_context(&goctx::background());
    send("-INT");
    timeout(LIMIT, ctx.done()).await.expect("ended by SIGINT");
    let cause = ctx.cause().unwrap();
    assert_eq!(
        cause.downcast_ref::<SignalReceived>().map(|r| r.signal()),
        Some(Signal::Interrupt)
    );
    assert_eq!(Signal::Interrupt.exit_code(), 130);

    // Ended by its parent: the parent's cause, no signal.
    let (parent, cancel_parent) = goctx::with_cancel_cause(&goctx::background());
    let (ctx, _stop) = signal_context(&parent);
    cancel_parent.cancel_with_cause("deploy finished");
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(ctx.cause().unwrap().to_string(), "deploy finished");

    // Stopped: canceled, and a later signal changes nothing.
    let (ctx, stop) = signal_context(&goctx::background());
    stop.cancel();
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert!(
        ctx.cause()
            .unwrap()
            .downcast_ref::<SignalReceived>()
            .is_none()
    );
    let (witness, _stop) = signal_context(&goctx::background());
    send("-TERM");
    timeout(LIMIT, witness.done())
        .await
        .expect("the signal arrived");
    assert!(
        ctx.cause()
            .unwrap()
            .downcast_ref::<SignalReceived>()
            .is_none()
    );
}
