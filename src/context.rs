//! The public handle, [`Ctx`]: a thin wrapper over the core's `Link`.
//! Every method delegates; the waiting methods (`done`, `wait`, `run`)
//! live with their futures in `done.rs`.

use std::any::{Any, TypeId};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::time::Instant;

use crate::custom::{Context, Notify, Subscription};
use crate::error::{Cause, Error};
use crate::tree::Link;

/// A handle to a context: cheap to clone, `Send + Sync + 'static`.
///
/// Every function of this crate takes and returns `Ctx`. Cloning copies a
/// pointer (roots are not even that); all clones are the same context.
/// Contexts form a tree: each derived context holds its parent, and a
/// parent that is canceled cancels all its descendants before
/// [`CancelFunc::cancel`](crate::CancelFunc::cancel) returns.
///
/// `Ctx` compares equal, and hashes, by identity: clones are equal,
/// a parent and its child are not.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let root = goctx::background();
/// let (ctx, cancel) = goctx::with_timeout(&root, Duration::from_secs(5));
/// assert_eq!(ctx.err(), None);
/// assert!(ctx.deadline().is_some());
/// cancel.cancel();
/// assert_eq!(ctx.err(), Some(goctx::Error::Canceled));
/// assert_eq!(format!("{root}"), "context.Background");
/// ```
#[doc(alias = "Context")]
#[derive(Clone, Default)]
pub struct Ctx(pub(crate) Link);

// Unwind safety (checked in integration/tests/api.rs). goctx's own state is consistent
// wherever a panic can unwind: no user code runs under a goctx lock, and a
// cancellation finishes its state changes before it runs wakers and
// callbacks, re-raising their first panic only afterwards (tree invariant
// 4). What a `Ctx` shares with user code is read-only through it (values
// are handed out as `&T`), so a panic observed through one leaves nothing
// half-changed that goctx exposes. tokio-util marks `CancellationToken`
// the same way.
impl std::panic::UnwindSafe for Ctx {}
impl std::panic::RefUnwindSafe for Ctx {}

/// An empty root context: never done, no deadline, no values. The root of
/// every tree in `main`, in tests and at the top of a request.
///
/// Allocates nothing; every call returns an equal handle.
///
/// # Examples
///
/// ```
/// let root = goctx::background();
/// assert_eq!(root.err(), None);
/// assert_eq!(root.deadline(), None);
/// assert_eq!(root.to_string(), "context.Background");
/// ```
#[doc(alias = "Background")]
pub const fn background() -> Ctx {
    Ctx(Link::BACKGROUND)
}

/// Like [`background`], for code that has not decided which context to use
/// yet. It behaves identically; only its name differs, so that the
/// placeholder is easy to find.
///
/// # Examples
///
/// ```
/// assert_eq!(goctx::todo().to_string(), "context.TODO");
/// ```
#[doc(alias = "TODO")]
pub const fn todo() -> Ctx {
    Ctx(Link::TODO)
}

impl Ctx {
    /// Wraps a user-implemented [`Context`] so it can be used, and derived
    /// from, like any other context.
    ///
    /// See [`Context`] for an example.
    pub fn from_context<C: Context>(context: C) -> Ctx {
        Ctx(Link::custom(Box::new(context)))
    }

    /// When this context will be canceled because of its deadline, if it
    /// has one: the earliest deadline on its path to the root, as it stands
    /// now (a deadline moved by
    /// [`CancelFunc::extend_deadline`](crate::CancelFunc::extend_deadline)
    /// is read as moved), except that [`without_cancel`](crate::without_cancel)
    /// drops deadlines above it. Go: `Deadline()`.
    ///
    /// A context made by [`with_deadline`](crate::with_deadline) keeps its
    /// own deadline even under a parent whose deadline is sooner; this
    /// returns the sooner of the two, so it changes if the parent's
    /// deadline is extended.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let at = Instant::now() + Duration::from_secs(60);
    /// let (ctx, _cancel) = goctx::with_deadline(&goctx::background(), at);
    /// let (child, _c) = goctx::with_cancel(&ctx);
    /// assert_eq!(child.deadline(), Some(at));
    /// let (later, _l) = goctx::with_deadline(&ctx, at + Duration::from_secs(60));
    /// assert_eq!(later.deadline(), Some(at));
    /// ```
    #[doc(alias = "Deadline")]
    pub fn deadline(&self) -> Option<Instant> {
        self.0.deadline()
    }

    /// `None` while the context is live; once it is done, why:
    /// [`Error::Canceled`] or [`Error::DeadlineExceeded`]. Go: `Err()`.
    ///
    /// On a cancelable context this is a single atomic load, no lock. Once
    /// it returned `Some`, it returns the same error forever, and the
    /// context's [`done`](Ctx::done) future is already complete.
    ///
    /// # Examples
    ///
    /// ```
    /// let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    /// assert_eq!(ctx.err(), None);
    /// cancel.cancel();
    /// assert_eq!(ctx.err(), Some(goctx::Error::Canceled));
    /// ```
    #[doc(alias = "Err")]
    #[inline]
    pub fn err(&self) -> Option<Error> {
        self.0.err()
    }

    /// Why the context ended, in more detail than [`err`](Ctx::err). Go:
    /// `context.Cause(ctx)`.
    ///
    /// `None` while `err()` is `None`. Otherwise the cause given to the
    /// first cancellation ([`CancelFunc::cancel_with_cause`](crate::CancelFunc::cancel_with_cause),
    /// or the cause argument of [`with_deadline_cause`](crate::with_deadline_cause)
    /// when the deadline fired); without one, the error itself. A context
    /// canceled by its parent has the parent's cause.
    ///
    /// # Examples
    ///
    /// ```
    /// let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    /// assert!(ctx.cause().is_none());
    /// cancel.cancel_with_cause("client went away");
    /// assert_eq!(ctx.err(), Some(goctx::Error::Canceled));
    /// assert_eq!(ctx.cause().map(|c| c.to_string()).as_deref(), Some("client went away"));
    /// ```
    #[doc(alias = "Cause")]
    pub fn cause(&self) -> Option<Cause> {
        self.0.cause()
    }

    /// The value of type `T` stored by the nearest
    /// [`with_value`](crate::with_value) on the path to the root, if any.
    /// Go: `Value(key)`, with the value's type as the key.
    ///
    /// # Examples
    ///
    /// ```
    /// #[derive(Debug, PartialEq)]
    /// struct RequestId(String);
    ///
    /// let ctx = goctx::with_value(&goctx::background(), RequestId("r1".into()));
    /// let (child, _cancel) = goctx::with_cancel(&ctx);
    /// assert_eq!(child.value::<RequestId>(), Some(&RequestId("r1".into())));
    /// assert_eq!(child.value::<u32>(), None);
    /// ```
    #[doc(alias = "Value")]
    pub fn value<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.0.lookup(TypeId::of::<T>())?.downcast_ref()
    }

    /// How many registrations wait on this context's cancellation right
    /// now: child contexts, pending `done()` futures and `after_func`
    /// callbacks registered with the nearest cancelable context on the path
    /// to the root. Zero for contexts that can never be done and for done
    /// ones, and zero when the nearest such context is a user-implemented
    /// one ([`Ctx::from_context`]): those registrations are in the user's
    /// own subscriber list, which goctx does not see.
    ///
    /// Meant for diagnostics and leak checks: when everything derived from
    /// a long-lived context has been canceled or dropped, this is back to
    /// zero. Check it on a context that is still live: a done one reads
    /// zero whatever is left (its registrations were taken out when it
    /// ended), so it proves nothing there.
    ///
    /// # Examples
    ///
    /// ```
    /// let (parent, _cancel) = goctx::with_cancel(&goctx::background());
    /// let (child, cancel_child) = goctx::with_cancel(&parent);
    /// assert_eq!(parent.dependents(), 1);
    /// drop((child, cancel_child));
    /// assert_eq!(parent.dependents(), 0);
    /// ```
    pub fn dependents(&self) -> usize {
        self.0.dependents()
    }
}

impl Context for Ctx {
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
        self.0.lookup(key)
    }

    fn subscribe(&self, notify: Notify) -> Subscription {
        Subscription(self.0.subscribe(notify.into_entry()))
    }

    fn fmt_name(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl PartialEq for Ctx {
    fn eq(&self, other: &Self) -> bool {
        self.0.identity() == other.0.identity()
    }
}

impl Eq for Ctx {}

impl Hash for Ctx {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.identity().hash(state);
    }
}

impl fmt::Display for Ctx {
    /// Go's `String()` form, built from the root down:
    /// `context.Background.WithCancel`,
    /// `context.Background.WithValue(my_app::RequestId).WithDeadline(2026-11-25 10:00:00.5 +0000 UTC [4.99s])`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Ctx {
    /// The name, and the state at the time of the call.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("name", &format_args!("{self}"))
            .field("err", &self.err())
            .field("deadline", &self.deadline())
            .finish()
    }
}
