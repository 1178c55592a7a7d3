//! goctx's promises hold over user contexts whose methods disagree with
//! each other (issue 8, A2): `err()` that goes back to `None`, a done
//! `err()` with no `cause()`, a `cause()` without an `err()`, notifications
//! before `err()` says done. Whatever the user answers, goctx's answers
//! keep its invariants: `err()` once `Some` stays the same; `cause()` is
//! `Some` exactly when `err()` is; `done()` completes exactly when `err()`
//! is `Some`, with that error; a derived context that is done agrees with
//! its parent's error, and every one is done once the parent notified.

use std::any::{Any, TypeId};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};

use goctx::custom::{Context, Notify, Subscription};
use goctx::{CancelFunc, Cause, Ctx, Error};
use proptest::prelude::*;

/// The example: a wrapper that reports done on its own but takes
/// its cause from a live inner context.
struct Wrapper(Ctx);

impl Context for Wrapper {
    fn err(&self) -> Option<Error> {
        Some(Error::Canceled)
    }
    fn cause(&self) -> Option<Cause> {
        self.0.cause()
    }
    fn lookup(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)> {
        Context::lookup(&self.0, key)
    }
    fn subscribe(&self, notify: Notify) -> Subscription {
        notify.notify();
        Subscription::notified()
    }
}

#[test]
fn a_done_user_context_without_a_cause_reports_its_error_as_the_cause() {
    let ctx = Ctx::from_context(Wrapper(goctx::background()));
    assert_eq!(ctx.err(), Some(Error::Canceled));
    let cause = ctx.cause().expect("err() is Some, so cause() must be");
    assert_eq!(cause.downcast_ref::<Error>(), Some(&Error::Canceled));
    let (child, _cancel) = goctx::with_cancel(&ctx);
    assert_eq!(child.err(), Some(Error::Canceled));
    assert!(child.cause().is_some());
}

/// What the liar answers right now; the test changes it between steps.
#[derive(Default)]
struct Script {
    err: Option<Error>,
    cause: bool,
    pending: Vec<Notify>,
}

/// A user context that answers from the `Script`. Its subscriber list is
/// deliberately not the suite's `common::hub::Hub`: it never gives a
/// notification back, and delivers them whenever the test says, whatever
/// `err()` says.
#[derive(Clone, Default)]
struct Liar(Arc<Mutex<Script>>);

impl Context for Liar {
    fn err(&self) -> Option<Error> {
        self.0.lock().unwrap().err
    }
    fn cause(&self) -> Option<Cause> {
        // Regardless of err(): sometimes a cause while live, sometimes none
        // while done.
        self.0
            .lock()
            .unwrap()
            .cause
            .then(|| Cause::new(std::io::Error::other("liar's cause")))
    }
    fn subscribe(&self, notify: Notify) -> Subscription {
        self.0.lock().unwrap().pending.push(notify);
        // Never takes anything back: a subscription that cannot be undone.
        Subscription::new(|| false)
    }
}

#[derive(Clone, Debug)]
enum Op {
    SetErr(Option<bool>),
    SetCause(bool),
    NotifyAll,
    Derive,
    Poll,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        prop::option::of(any::<bool>()).prop_map(Op::SetErr),
        any::<bool>().prop_map(Op::SetCause),
        Just(Op::NotifyAll),
        Just(Op::Derive),
        Just(Op::Poll),
    ]
}

fn poll_once(ctx: &Ctx) -> Poll<Error> {
    let mut done = ctx.done();
    Pin::new(&mut done).poll(&mut TaskContext::from_waker(Waker::noop()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn inconsistent_user_contexts_keep_goctx_invariants(ops in prop::collection::vec(op(), 1..40)) {
        let liar = Liar::default();
        let ctx = Ctx::from_context(liar.clone());
        let mut seen: Option<Error> = None;
        let mut notified = false;
        let mut children: Vec<(Ctx, CancelFunc)> = Vec::new();
        for op in ops {
            match op {
                Op::SetErr(e) => {
                    liar.0.lock().unwrap().err = e.map(|deadline| {
                        if deadline { Error::DeadlineExceeded } else { Error::Canceled }
                    });
                }
                Op::SetCause(c) => liar.0.lock().unwrap().cause = c,
                Op::NotifyAll => {
                    let pending = std::mem::take(&mut liar.0.lock().unwrap().pending);
                    notified |= !pending.is_empty();
                    for notify in pending {
                        notify.notify();
                    }
                }
                Op::Derive => {
                    let parent_err = ctx.err();
                    let (child, cancel) = goctx::with_cancel(&ctx);
                    if parent_err.is_some() {
                        prop_assert_eq!(child.err(), parent_err, "not born done");
                    }
                    children.push((child, cancel));
                }
                Op::Poll => {
                    let polled = poll_once(&ctx);
                    let err = ctx.err();
                    match polled {
                        Poll::Ready(e) => prop_assert_eq!(Some(e), err, "done() vs err()"),
                        Poll::Pending => prop_assert_eq!(err, None, "done() pending, err() Some"),
                    }
                }
            }
            // err() is monotonic.
            let err = ctx.err();
            if let Some(before) = seen {
                prop_assert_eq!(err, Some(before), "err() changed after it was Some");
            }
            seen = err;
            // cause() is Some exactly when err() is.
            let cause = ctx.cause();
            prop_assert_eq!(cause.is_some(), err.is_some(), "cause {:?} vs err {:?}", cause, err);
            // done() agrees with err().
            match poll_once(&ctx) {
                Poll::Ready(e) => prop_assert_eq!(Some(e), err),
                Poll::Pending => prop_assert_eq!(err, None),
            }
            // Children agree with the parent; all are done once notified.
            for (child, _) in &children {
                let child_err = child.err();
                if let Some(e) = child_err {
                    prop_assert_eq!(ctx.err(), Some(e), "child done with another error");
                    prop_assert!(child.cause().is_some(), "done child without a cause");
                } else {
                    prop_assert!(child.cause().is_none(), "live child with a cause");
                }
            }
            if notified {
                prop_assert!(ctx.err().is_some(), "notified, yet err() is None");
            }
        }
        // One final notification ends every child, with the parent's error.
        let pending = std::mem::take(&mut liar.0.lock().unwrap().pending);
        for notify in pending {
            notify.notify();
        }
        for (child, _) in &children {
            prop_assert!(child.err().is_some(), "a child outlived its parent's notification");
            prop_assert_eq!(child.err(), ctx.err());
        }
    }
}

/// `goctx::custom::Subscribers`, the list a user context keeps: delivery after the
/// context's end, immediate delivery to late subscribers, taking a
/// subscription back (true once, then the `Notify` is gone), clones that
/// share one list, and a `Debug` that shows the counts.
#[test]
fn subscribers_deliver_once_and_give_back() {
    use goctx::custom::{Notify, Subscribers, Subscription};
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Lamp {
        off: AtomicBool,
        list: Subscribers,
    }
    struct LampCtx(Arc<Lamp>);
    impl Context for LampCtx {
        fn err(&self) -> Option<Error> {
            self.0
                .off
                .load(Ordering::Acquire)
                .then_some(Error::Canceled)
        }
        fn subscribe(&self, notify: Notify) -> Subscription {
            self.0.list.subscribe(notify)
        }
    }

    let lamp = Arc::new(Lamp {
        off: AtomicBool::new(false),
        list: Subscribers::new(),
    });
    let ctx = Ctx::from_context(LampCtx(Arc::clone(&lamp)));
    let shared = lamp.list.clone();
    let (kept, _keep) = goctx::with_cancel(&ctx);
    let (gone, cancel_gone) = goctx::with_cancel(&ctx);
    assert_eq!(shared.len(), 2, "a clone sees the same list");
    drop((gone, cancel_gone));
    assert_eq!(lamp.list.len(), 1, "a dropped child takes its entry back");
    assert_eq!(
        format!("{:?}", lamp.list),
        "Subscribers { pending: 1, notified: false }"
    );

    lamp.off.store(true, Ordering::Release);
    lamp.list.notify_all();
    assert_eq!(kept.err(), Some(Error::Canceled));
    assert!(lamp.list.is_empty() && lamp.list.is_notified());
    lamp.list.notify_all(); // nothing left to deliver

    let (late, _late_cancel) = goctx::with_cancel(&ctx);
    assert_eq!(late.err(), Some(Error::Canceled), "notified on the spot");
    assert!(lamp.list.is_empty());
}
