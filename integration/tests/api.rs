//! The shape of the public API: auto traits, `Debug`, equality, `Display`.

use std::fmt::Debug;
use std::time::Duration;

use goctx::{Ctx, Error, ExtendError};

// Auto traits and `Debug` of every public type: integration/tests/autotraits.rs.

#[test]
fn debug_shows_state_not_internals() {
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    let shown = format!("{ctx:?}");
    assert!(shown.contains("context.Background.WithCancel"), "{shown}");
    assert!(shown.contains("err: None"), "{shown}");
    assert_eq!(format!("{cancel:?}"), "CancelFunc { err: None }");
    cancel.cancel();
    assert!(format!("{ctx:?}").contains("err: Some(Canceled)"));
    assert_eq!(format!("{cancel:?}"), "CancelFunc { err: Some(Canceled) }");
    let handle = goctx::after_func(&goctx::background(), || {});
    assert_eq!(format!("{handle:?}"), "AfterFunc { pending: true }");
    assert!(handle.stop());
    assert_eq!(format!("{handle:?}"), "AfterFunc { pending: false }");
}

#[test]
fn equality_is_identity() {
    let root = goctx::background();
    assert_eq!(root, goctx::background());
    assert_ne!(root, goctx::todo());
    assert_eq!(Ctx::default(), root);
    let (a, _ca) = goctx::with_cancel(&root);
    let (b, _cb) = goctx::with_cancel(&root);
    assert_eq!(a, a.clone());
    assert_ne!(a, b);
    let mut set = std::collections::HashSet::new();
    set.insert(a.clone());
    set.insert(a.clone());
    set.insert(b);
    assert_eq!(set.len(), 2);
}

#[derive(Debug)]
struct RequestId;

#[test]
fn display_follows_go_names() {
    let root = goctx::background();
    let (c, _c) = goctx::with_cancel(&root);
    assert_eq!(c.to_string(), "context.Background.WithCancel");
    let v = goctx::with_value(&c, RequestId);
    assert_eq!(
        v.to_string(),
        "context.Background.WithCancel.WithValue(api::RequestId)"
    );
    let w = goctx::without_cancel(&v);
    assert_eq!(
        w.to_string(),
        "context.Background.WithCancel.WithValue(api::RequestId).WithoutCancel"
    );
    let (t, _t) = goctx::with_timeout(&goctx::todo(), Duration::from_secs(3600));
    let name = t.to_string();
    assert!(name.starts_with("context.TODO.WithDeadline("), "{name}");
    assert!(name.ends_with("s])"), "{name}");
    assert!(name.contains(" +0000 UTC ["), "{name}");
    // A later deadline under a sooner one keeps its own deadline (Go would
    // make it a plain `.WithCancel` context): the name shows its own.
    let (later, _l) = goctx::with_timeout(&t, Duration::from_secs(7200));
    let name = later.to_string();
    assert_eq!(name.matches(".WithDeadline(").count(), 2, "{name}");
    assert_eq!(later.deadline(), t.deadline());
}

#[test]
fn error_messages_are_gos() {
    assert_eq!(Error::Canceled.to_string(), "context canceled");
    assert_eq!(
        Error::DeadlineExceeded.to_string(),
        "context deadline exceeded"
    );
    assert!(Error::DeadlineExceeded.is_timeout() && Error::DeadlineExceeded.is_temporary());
    assert!(!Error::Canceled.is_timeout() && !Error::Canceled.is_temporary());
    let io: std::io::Error = Error::DeadlineExceeded.into();
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(io.to_string(), "context deadline exceeded");
    let io: std::io::Error = Error::Canceled.into();
    assert_eq!(
        io.get_ref().map(|e| e.to_string()),
        Some("context canceled".to_owned())
    );
}

#[test]
fn extend_error_messages_say_why() {
    let (_ctx, cancel) = goctx::with_cancel(&goctx::background());
    let later = std::time::Instant::now() + Duration::from_secs(1);
    assert_eq!(cancel.extend_deadline(later), Err(ExtendError::NoDeadline));
    assert_eq!(
        ExtendError::NoDeadline.to_string(),
        "cannot extend the deadline: the context has no deadline of its own"
    );
    cancel.cancel();
    assert_eq!(
        cancel.extend_deadline(later),
        Err(ExtendError::Done(Error::Canceled))
    );
    assert_eq!(
        ExtendError::Done(Error::Canceled).to_string(),
        "cannot extend the deadline: context canceled"
    );
}

/// The same deadline prints the same wall-clock time at every call (the
/// wall clock is read through one pair of readings per process).
#[test]
fn display_of_a_deadline_is_stable() {
    let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), Duration::from_secs(60));
    let wall = |s: String| s.split(" [").next().map(str::to_owned);
    let first = wall(ctx.to_string());
    for _ in 0..100 {
        assert_eq!(wall(ctx.to_string()), first);
    }
}

/// Issue 16: a cause is made from what users have at hand (a message, a
/// goctx error, a boxed or shared error) with `From`, keeps its identity
/// through a cancellation, and reads like the error it holds.
#[test]
fn cause_from_messages_errors_and_shared_errors() {
    use goctx::Cause;
    use std::sync::Arc;

    let from_str = Cause::from("shutting down");
    let from_string: Cause = String::from("drained").into();
    assert_eq!(from_str.to_string(), "shutting down");
    assert_eq!(format!("{from_string}"), "drained");

    // A goctx error shares one process-wide allocation, as `err()`'s own
    // cause does.
    let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), Duration::ZERO);
    let own = ctx.cause().expect("expired");
    let made: Cause = Error::DeadlineExceeded.into();
    assert!(Cause::ptr_eq(&own, &made));
    assert_eq!(made.downcast_ref::<Error>(), Some(&Error::DeadlineExceeded));

    // A shared error keeps its identity: as an `Arc`, as a cause, and
    // through `cancel_with_cause`.
    let shared: Arc<dyn std::error::Error + Send + Sync> = Arc::new(std::io::Error::other("disk"));
    let cause = Cause::from(shared.clone());
    assert!(Arc::ptr_eq(&cause.clone().into_arc(), &shared));
    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    cancel.cancel_with_cause(cause.clone());
    assert!(Cause::ptr_eq(&ctx.cause().expect("canceled"), &cause));
    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    cancel.cancel_with_cause(shared.clone());
    assert!(Arc::ptr_eq(
        &ctx.cause().expect("canceled").into_arc(),
        &shared
    ));

    // Transparent: downcasts, `Debug` and `source` are the error's.
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(std::io::Error::other("net"));
    let cause = Cause::from(boxed);
    assert!(cause.is::<std::io::Error>());
    assert_eq!(
        format!("{cause:?}"),
        format!("{:?}", std::io::Error::other("net"))
    );
    #[derive(Debug)]
    struct Outer(std::fmt::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("outer")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let wrapped = Cause::new(Outer(std::fmt::Error));
    let source = std::error::Error::source(&wrapped).expect("the inner error's source");
    assert!(source.is::<std::fmt::Error>());
    assert!(!Cause::ptr_eq(
        &wrapped,
        &Cause::new(std::io::Error::other("other"))
    ));
}
