//! Every public type's auto traits and `Debug`, in one place (thiserror's
//! `test_autotrait.rs` style): `Send`, `Sync`, `Unpin`, `UnwindSafe` and
//! `RefUnwindSafe` wherever the type's own parameters allow them. A change
//! that loses one fails to compile here rather than in a user's crate.

use std::fmt::Debug;
use std::future::Ready;
use std::panic::{RefUnwindSafe, UnwindSafe};

/// The full set, for types that hold no user type that could opt out.
fn full<T: Send + Sync + Unpin + UnwindSafe + RefUnwindSafe + Debug>() {}

/// A stand-in for a user's future, body or service: every auto trait.
type Inner = Ready<()>;

#[test]
fn core_types() {
    use goctx::custom::*;
    use goctx::future::*;
    use goctx::*;
    full::<Ctx>();
    full::<CancelFunc>();
    full::<AfterFunc>();
    full::<Done<'static>>();
    full::<DoneOwned>();
    full::<Run<'static, Inner>>();
    full::<RunOwned<Inner>>();
    full::<UntilDone<Inner>>();
    full::<Drained>();
    full::<Error>();
    full::<ExtendError>();
    full::<CancelFuncDropped>();
    full::<Subscription>();
    full::<Subscribers>();
    // A `Notify` is handed to one thread at a time: `Send`, not `Sync`.
    fn send_unpin_unwind<T: Send + Unpin + UnwindSafe + RefUnwindSafe + Debug>() {}
    send_unpin_unwind::<Notify>();
    // `Cause` is std's `Arc<dyn Error + Send + Sync>`: its auto traits are std's.
    fn send_sync<T: Send + Sync + Unpin + Debug>() {}
    send_sync::<Cause>();
}

#[test]
fn propagation_types() {
    use goctx::propagation::*;
    full::<Propagator>();
    full::<DeadlineForm>();
    full::<RequestId>();
    full::<TraceContext>();
    full::<InvalidTimeout>();
}

#[test]
fn opentelemetry_types() {
    use goctx::opentelemetry::*;
    // OpenTelemetry's `Context` holds `dyn Any` values: not unwind safe,
    // so neither is a future that holds one.
    fn send_sync<T: Send + Sync + Unpin + Debug>() {}
    send_sync::<Instrumented<Inner>>();
    send_sync::<CarrierAdapter<'static, std::collections::HashMap<String, String>>>();
}

#[test]
fn nats_types() {
    use goctx::nats::*;
    full::<Disposition>();
    full::<CanceledByProducer>();
    // `Permanent` holds a `Cause`, whose auto traits are std's `Arc<dyn Error>`'s.
    fn send_sync<T: Send + Sync + Unpin + Debug>() {}
    send_sync::<Permanent>();
}

#[derive(Clone, Debug, thiserror::Error)]
#[error("a task's error")]
struct TaskError;

#[test]
fn group_types() {
    use goctx::group::*;
    full::<TaskPanicked>();
    full::<GroupDropped>();
    fn scope_type<T: Send + Sync + Unpin + Debug>(_: &T) {}
    let _ = scope(&goctx::background(), |s| {
        scope_type(s);
        s.go(|_| Ok::<(), TaskError>(()));
    });
    // The in-place group holds boxed `Send` futures: `Send` and `Unpin`,
    // not `Sync` (nothing needs to share one between threads).
    fn send_unpin<T: Send + Unpin + Debug>(_: &T) {}
    let group = InPlace::<u32, TaskError>::new();
    send_unpin(&group);
    send_unpin(&group.wait());
}

#[test]
fn tokio_types() {
    full::<goctx::tokio::Group<String, TaskError>>();
}

#[test]
fn signal_types() {
    full::<goctx::tokio::Signal>();
    full::<goctx::tokio::SignalReceived>();
}

#[test]
fn tokio_util_types() {
    full::<goctx::tokio_util::TokenCanceled>();
}

#[test]
fn http_types() {
    use goctx::http::*;
    type Body = String;
    full::<PeerAddr>();
    full::<RequestContextLayer>();
    full::<RequestContext<Inner>>();
    full::<RequestContextFuture<Inner>>();
    full::<RequestContextBody<Body>>();
    full::<RequestBody<Body>>();
    full::<RequestAbandoned>();
    full::<AbandonReason>();
    full::<ResponseComplete>();
    full::<InvalidTimeout>();
    full::<RequestId>();
    full::<TraceContext>();
    full::<PropagateLayer>();
    full::<Propagate<Inner>>();
    full::<PropagateFuture<Inner>>();
    full::<PropagateBody<Body>>();
    full::<PropagateError<std::fmt::Error>>();
}

#[test]
fn axum_types() {
    full::<goctx::http::MissingRequestContext>();
}

/// reqwest's builder and response are not unwind safe themselves, so
/// the wrappers are everything else.
#[test]
fn reqwest_types() {
    fn send_sync_unpin<T: Send + Sync + Unpin + Debug>() {}
    send_sync_unpin::<goctx::http::ContextRequestBuilder>();
    send_sync_unpin::<goctx::http::ContextResponse>();
}

#[test]
fn tonic_types() {
    use goctx::tonic::*;
    full::<PropagateLayer>();
    full::<Propagate<Inner>>();
    full::<PropagateFuture<Inner>>();
}

/// The database errors hold the driver's error, which holds a boxed
/// `dyn Error` and so is not unwind safe: everything else.
#[test]
fn postgres_types() {
    fn send_sync_unpin<T: Send + Sync + Unpin + Debug>() {}
    send_sync_unpin::<goctx::postgres::Error>();
    full::<goctx::postgres::ErrorKind>();
    full::<goctx::postgres::Canceler>();
}

/// `run`'s future can go to `tokio::spawn` (checked at compile time).
#[allow(dead_code)]
fn postgres_run_is_send(ctx: &goctx::Ctx, client: &tokio_postgres::Client) {
    fn send<T: Send>(_: &T) {}
    send(&goctx::postgres::run(
        ctx,
        client,
        client.query("SELECT 1", &[]),
    ));
    let canceler = goctx::postgres::Canceler::new();
    send(&canceler.run(ctx, client, client.execute("SELECT 1", &[])));
}

#[test]
fn rusqlite_types() {
    fn send_sync_unpin<T: Send + Sync + Unpin + Debug>() {}
    send_sync_unpin::<goctx::rusqlite::Error>();
    full::<goctx::rusqlite::ErrorKind>();
}
