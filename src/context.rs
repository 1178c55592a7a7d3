//! The public vocabulary: the [`Context`] trait and the [`Ctx`] handle.

use std::any::{Any, TypeId};
use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::mem;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::custom::{CustomNode, Notify, Subscription};
use crate::done::{self, Done, DoneOwned, Run, RunOwned};
use crate::error::{Cause, Error};
use crate::tree::{CancelNode, Entry, OwnCause, Source};
use crate::value::ValueNode;

/// A context: a cancellation signal, an optional deadline and typed
/// request-scoped values, shared by everything working on one request.
///
/// This is the trait a user implements to plug a context type of their own
/// into the tree, the counterpart of implementing Go's `context.Context`
/// interface. Wrap an implementation with [`Ctx::from_context`]; contexts
/// derived from it (with [`with_cancel`](crate::with_cancel) and friends)
/// then learn of its cancellation through [`subscribe`](Context::subscribe),
/// synchronously and without any helper thread.
///
/// [`Ctx`] itself implements this trait, which is how a wrapper delegates
/// to a context it holds.
///
/// All methods may be called concurrently from many threads.
///
/// # Examples
///
/// A context that adds a value to an inner context and delegates the rest:
///
/// ```
/// use std::any::{Any, TypeId};
/// use std::time::Instant;
/// use goctx::{Cause, Context, Ctx, Error, Notify, Subscription};
///
/// struct Tenant(&'static str);
///
/// struct TenantCtx {
///     inner: Ctx,
///     tenant: Tenant,
/// }
///
/// impl Context for TenantCtx {
///     fn deadline(&self) -> Option<Instant> { self.inner.deadline() }
///     fn err(&self) -> Option<Error> { self.inner.err() }
///     fn cause(&self) -> Option<Cause> { self.inner.cause() }
///     fn lookup(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)> {
///         if key == TypeId::of::<Tenant>() { Some(&self.tenant) } else { self.inner.lookup(key) }
///     }
///     fn subscribe(&self, notify: Notify) -> Subscription { self.inner.subscribe(notify) }
/// }
///
/// let (parent, cancel) = goctx::with_cancel(&goctx::background());
/// let ctx = Ctx::from_context(TenantCtx { inner: parent, tenant: Tenant("acme") });
/// let (child, _cancel_child) = goctx::with_cancel(&ctx);
/// assert_eq!(child.value::<Tenant>().map(|t| t.0), Some("acme"));
/// cancel.cancel();
/// assert_eq!(child.err(), Some(Error::Canceled)); // propagated synchronously
/// ```
pub trait Context: Send + Sync + 'static {
    /// When this context will be canceled by its deadline, if it has one.
    /// Successive calls must return the same value.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// `None` while the context is live; afterwards why it ended. Once it
    /// returned `Some`, every later call must return the same error.
    fn err(&self) -> Option<Error>;

    /// Why the context ended, in more detail than [`err`](Context::err).
    /// Must be `None` while `err()` is `None`. The default reports the
    /// error itself.
    fn cause(&self) -> Option<Cause> {
        self.err().map(Error::into_cause)
    }

    /// The value stored under `key` (the [`TypeId`] of the value's type),
    /// if any. Wrappers should delegate misses to the context they wrap;
    /// the lookup stops at a context that does not. The default has no
    /// values.
    fn lookup(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)> {
        let _ = key;
        None
    }

    /// Asks to be told when this context is done.
    ///
    /// The implementation must call [`Notify::notify`] exactly once after
    /// `err()` starts returning `Some`, unless the returned
    /// [`Subscription`] is canceled first. If the context is already done
    /// it may call it right away, on the calling thread. `notify` never
    /// blocks; it may be called from any thread, but not while holding a
    /// lock that this context's own methods take (it reads `err()` and
    /// `cause()`).
    ///
    /// A context that can never be done drops `notify` and returns
    /// [`Subscription::never`].
    fn subscribe(&self, notify: Notify) -> Subscription;

    /// Writes this context's name, Go's `String()`. The default writes the
    /// implementing type's name.
    fn fmt_name(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::any::type_name::<Self>())
    }
}

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
pub struct Ctx(pub(crate) Repr);

/// What a handle points at. Roots need no allocation.
#[derive(Clone)]
pub(crate) enum Repr {
    Background,
    Todo,
    Cancel(Arc<CancelNode>),
    Value(Arc<ValueNode>),
    Without(Arc<Ctx>),
    Custom(Arc<CustomNode>),
}

// Unwind safety (checked in tests/api.rs). goctx's own state is consistent
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
    Ctx(Repr::Background)
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
    Ctx(Repr::Todo)
}

impl Ctx {
    /// Wraps a user-implemented [`Context`] so it can be used, and derived
    /// from, like any other context.
    ///
    /// See [`Context`] for an example.
    pub fn from_context<C: Context>(context: C) -> Ctx {
        Ctx(Repr::Custom(Arc::new(CustomNode::new(Box::new(context)))))
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
        // The other parents of merge nodes met on the way, walked after
        // this path (a worklist, not recursion). Allocates only if there
        // is one.
        let mut others = Vec::new();
        let mut earliest = self.path_deadline(&mut others);
        while let Some(other) = others.pop() {
            if let Some(at) = other.path_deadline(&mut others) {
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
            }
        }
        earliest
    }

    /// The earliest deadline on this context's path to the root, pushing
    /// the other parent of every merge node on it onto `others`.
    fn path_deadline(&self, others: &mut Vec<Ctx>) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        let mut cur = self;
        loop {
            let (found, next) = match &cur.0 {
                Repr::Background | Repr::Todo | Repr::Without(_) => (None, None),
                Repr::Cancel(node) => {
                    if let Some(other) = node.other() {
                        others.push(other);
                    }
                    (node.deadline(), Some(&node.parent))
                }
                Repr::Value(node) => (None, Some(&node.parent)),
                // A user context answers for its whole path.
                Repr::Custom(node) => (node.deadline(), None),
            };
            if let Some(at) = found {
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
            }
            match next {
                Some(parent) => cur = parent,
                None => return earliest,
            }
        }
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
        if let Repr::Cancel(node) = &self.0 {
            return node.err();
        }
        match self.source() {
            Source::Never => None,
            Source::Node(node) => node.err(),
            Source::Custom(custom) => custom.err(),
        }
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
        let mut cur = self;
        loop {
            match cur.source() {
                Source::Never => return None,
                Source::Node(node) => match node.own_cause() {
                    OwnCause::Live => return None,
                    OwnCause::Cause(cause) => return Some(cause),
                    // Ended by its parent: the parent's cause, found
                    // iteratively (a long chain costs no stack).
                    OwnCause::Inherited => cur = &node.parent,
                },
                // `Some` exactly when its `err()` is (see `CustomNode`).
                Source::Custom(custom) => return custom.cause(),
            }
        }
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
        self.lookup_any(TypeId::of::<T>())?.downcast_ref()
    }

    /// The type-erased lookup behind [`value`](Ctx::value). Iterative: a
    /// long chain costs no stack.
    fn lookup_any(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)> {
        let bit = crate::value::key_bit(key);
        let mut cur = self;
        loop {
            match &cur.0 {
                Repr::Background | Repr::Todo => return None,
                Repr::Value(node) => {
                    // No value of this type anywhere above: stop here.
                    if node.keys & bit == 0 {
                        return None;
                    }
                    if node.key == key {
                        return Some(node.value());
                    }
                    cur = &node.parent;
                }
                Repr::Cancel(node) => cur = &node.parent,
                Repr::Without(parent) => cur = parent,
                Repr::Custom(node) => return node.context().lookup(key),
            }
        }
    }

    /// A future that completes, with the context's error, when the context
    /// is done. Go: `<-ctx.Done()`.
    ///
    /// On a context that can never be done (a root, or
    /// [`without_cancel`](crate::without_cancel)) it never completes.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes unregisters it; nothing is
    /// lost, and a new `done()` can be awaited later.
    ///
    /// # Examples
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    /// std::thread::spawn(move || cancel.cancel());
    /// assert_eq!(ctx.done().await, goctx::Error::Canceled);
    /// # });
    /// ```
    #[doc(alias = "Done")]
    #[inline]
    pub fn done(&self) -> Done<'_> {
        Done::new(self)
    }

    /// Like [`done`](Ctx::done), but the future holds its own handle of the
    /// context instead of borrowing it, so it is `'static`, `Send` and
    /// `Unpin`: it can be moved into `tokio::spawn` or stored in a struct.
    /// Tokio-util: `CancellationToken::cancelled_owned`.
    ///
    /// Costs one handle clone (an atomic increment). Every call returns an
    /// independent future; any number may wait at once, from any thread.
    /// On a context that is already done the future completes on its first
    /// poll; on one that can never be done it never completes. The future
    /// keeps the context alive while it exists.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes unregisters it; nothing is
    /// lost, and a new one can be awaited later.
    ///
    /// # Examples
    ///
    /// A worker spawned on tokio that stops when its context is canceled:
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tokio::task::JoinError> {
    /// let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    /// let worker = tokio::spawn(ctx.done_owned()); // `ctx.done()` would borrow `ctx`
    /// cancel.cancel();
    /// assert_eq!(worker.await?, goctx::Error::Canceled);
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "Done")]
    #[doc(alias = "cancelled_owned")]
    #[inline]
    pub fn done_owned(&self) -> DoneOwned {
        DoneOwned::new(self.clone())
    }

    /// Blocks the current thread until the context is done and returns its
    /// error. For code without an async runtime.
    ///
    /// On a context that can never be done this blocks forever; use
    /// [`wait_timeout`](Ctx::wait_timeout) to bound it. Any number of
    /// threads may wait at once; a context that is already done returns at
    /// once.
    ///
    /// # Do not call it on an async runtime's thread
    ///
    /// A thread that drives async tasks (a tokio worker, the thread inside
    /// any `block_on`, a single-threaded executor) must not block: if the
    /// task that would cancel the context needs that thread, the wait never
    /// ends (on a current-thread runtime, it certainly never does). In async
    /// code, `ctx.done().await` instead; from async code that must block,
    /// wrap the wait in `tokio::task::spawn_blocking` (or `block_in_place`
    /// on a multi-thread runtime).
    ///
    /// # Panics
    ///
    /// With the `tokio` feature, if the calling thread is being polled by
    /// tokio as a task or as a `block_on` future, instead of hanging, as
    /// tokio's own blocking calls do. Never inside `spawn_blocking` or
    /// `block_in_place`, or on a plain thread. The check cannot see a
    /// future wrapped in `tokio::task::coop::unconstrained`, nor executors
    /// other than tokio's; there the call blocks as described above.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), Duration::from_millis(5));
    /// assert_eq!(ctx.wait(), goctx::Error::DeadlineExceeded);
    /// ```
    #[track_caller]
    pub fn wait(&self) -> Error {
        #[cfg(feature = "tokio")]
        crate::tokio::assert_may_block();
        done::block_until(self, None).unwrap_or(Error::Canceled)
    }

    /// Blocks the current thread until the context is done or `timeout`
    /// passed; returns the context's error, or `None` on timeout.
    ///
    /// A `timeout` too large to represent waits without a bound.
    ///
    /// Like [`wait`](Ctx::wait), it must not be called on a thread that
    /// drives async tasks: the timeout then bounds the hang, but the thread
    /// does no other work meanwhile, and on a current-thread runtime the
    /// context cannot be canceled by that runtime's tasks until it returns.
    ///
    /// # Panics
    ///
    /// With the `tokio` feature, in the same places as [`wait`](Ctx::wait),
    /// whatever `timeout` is.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let root = goctx::background();
    /// assert_eq!(root.wait_timeout(Duration::from_millis(1)), None);
    /// ```
    #[track_caller]
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Error> {
        #[cfg(feature = "tokio")]
        crate::tokio::assert_may_block();
        match Instant::now().checked_add(timeout) {
            Some(until) => done::block_until(self, Some(until)),
            None => Some(self.wait()),
        }
    }

    /// Runs `future` until it completes or the context is done, whichever
    /// comes first: `Ok` with the output, or `Err` with the context's error.
    ///
    /// If the context is already done, `future` is not polled at all. When
    /// both are ready in the same poll, the context wins.
    ///
    /// # Examples
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    /// assert_eq!(ctx.run(async { 7 }).await, Ok(7));
    /// cancel.cancel();
    /// assert_eq!(ctx.run(async { 7 }).await, Err(goctx::Error::Canceled));
    /// # });
    /// ```
    pub fn run<F: Future>(&self, future: F) -> Run<'_, F> {
        Run::new(self, future)
    }

    /// Like [`run`](Ctx::run), but the future holds its own handle of the
    /// context instead of borrowing it, so it is `'static` when `future`
    /// is, and `Send` when `future` is: it can be handed to `tokio::spawn`.
    /// Tokio-util: `CancellationToken::run_until_cancelled_owned`.
    ///
    /// If the context is already done, `future` is not polled at all. When
    /// both are ready in the same poll, the context wins. Dropping the
    /// returned future drops `future` and unregisters from the context.
    ///
    /// # Cancel safety
    ///
    /// As cancel-safe as `future` itself: when the context wins, `future`
    /// is dropped with whatever progress it had made.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tokio::task::JoinError> {
    /// let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    /// let worker = tokio::spawn(ctx.run_owned(async {
    ///     tokio::time::sleep(Duration::from_secs(3600)).await; // stand-in for long work
    ///     "finished"
    /// }));
    /// cancel.cancel();
    /// assert_eq!(worker.await?, Err(goctx::Error::Canceled));
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "run_until_cancelled_owned")]
    pub fn run_owned<F: Future>(&self, future: F) -> RunOwned<F> {
        RunOwned::new(self.clone(), future)
    }

    /// How many registrations wait on this context's cancellation right
    /// now: child contexts, pending `done()` futures and `after_func`
    /// callbacks registered with the nearest cancelable context on the path
    /// to the root. Zero for contexts that can never be done and for done
    /// ones.
    ///
    /// Meant for diagnostics and leak checks: when everything derived from
    /// a long-lived context has been canceled or dropped, this is back to
    /// zero.
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
        match self.source() {
            Source::Node(node) => node.registrations(),
            Source::Never | Source::Custom(_) => 0,
        }
    }

    /// Where this context's done signal comes from: the nearest cancelable
    /// node or custom context on the path to the root, looking through
    /// values.
    pub(crate) fn source(&self) -> Source<'_> {
        let mut cur = self;
        loop {
            match &cur.0 {
                Repr::Background | Repr::Todo | Repr::Without(_) => return Source::Never,
                Repr::Cancel(node) => return Source::Node(node),
                Repr::Value(node) => cur = &node.parent,
                Repr::Custom(node) => return Source::Custom(node),
            }
        }
    }

    /// Registers `entry` to be fired when this context is done; fires it
    /// right away if it already is.
    pub(crate) fn subscribe_entry(&self, entry: Entry) -> Subscription {
        match self.source() {
            Source::Never => Subscription::never(),
            Source::Node(node) => match node.register(entry) {
                Ok(slot) => Subscription::node(node, slot),
                Err(entry) => {
                    entry.fire();
                    Subscription::notified()
                }
            },
            Source::Custom(custom) => custom.subscribe(entry),
        }
    }

    /// The pointer that identifies this context, for `Eq` and `Hash`.
    fn identity(&self) -> (u8, usize) {
        match &self.0 {
            Repr::Background => (0, 0),
            Repr::Todo => (1, 0),
            Repr::Cancel(node) => (2, Arc::as_ptr(node) as usize),
            Repr::Value(node) => (3, Arc::as_ptr(node) as usize),
            Repr::Without(node) => (4, Arc::as_ptr(node) as usize),
            Repr::Custom(node) => (5, Arc::as_ptr(node) as usize),
        }
    }
}

impl Context for Ctx {
    fn deadline(&self) -> Option<Instant> {
        Ctx::deadline(self)
    }

    fn err(&self) -> Option<Error> {
        Ctx::err(self)
    }

    fn cause(&self) -> Option<Cause> {
        Ctx::cause(self)
    }

    fn lookup(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)> {
        self.lookup_any(key)
    }

    fn subscribe(&self, notify: Notify) -> Subscription {
        self.subscribe_entry(notify.into_entry())
    }

    fn fmt_name(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Clone for Ctx {
    #[inline]
    fn clone(&self) -> Self {
        Ctx(self.0.clone())
    }
}

impl Default for Ctx {
    /// [`background`].
    fn default() -> Self {
        background()
    }
}

impl PartialEq for Ctx {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for Ctx {}

impl Hash for Ctx {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}

impl Drop for Ctx {
    /// Drops iteratively: when this was the last handle of a node, the
    /// node's parent handle is taken out and dropped in the next round of
    /// the loop instead of recursively, so a chain of any length drops on a
    /// small stack.
    fn drop(&mut self) {
        let mut next = mem::replace(&mut self.0, Repr::Background);
        // The other parents of freed merge nodes, dropped after this chain
        // (allocates only if there is one).
        let mut others: Vec<Repr> = Vec::new();
        loop {
            next = match next {
                Repr::Background | Repr::Todo | Repr::Custom(_) => Repr::Background,
                Repr::Cancel(node) => {
                    // The timer knows a node by its address in the `Arc`.
                    let owner = Arc::as_ptr(&node) as usize;
                    match Arc::into_inner(node) {
                        Some(mut node) => {
                            if let Some(mut other) = node.take_other() {
                                others.push(other.0.take());
                            }
                            node.into_parent(owner).0.take()
                        }
                        None => Repr::Background,
                    }
                }
                Repr::Value(node) => match Arc::into_inner(node) {
                    Some(node) => node.into_parent().0.take(),
                    None => Repr::Background,
                },
                Repr::Without(node) => match Arc::into_inner(node) {
                    Some(mut parent) => parent.0.take(),
                    None => Repr::Background,
                },
            };
            if matches!(next, Repr::Background) {
                match others.pop() {
                    Some(other) => next = other,
                    None => return,
                }
            }
        }
    }
}

impl Repr {
    /// Moves the representation out, leaving a root (which owns nothing).
    fn take(&mut self) -> Repr {
        mem::replace(self, Repr::Background)
    }
}

impl fmt::Display for Ctx {
    /// Go's `String()` form, built from the root down:
    /// `context.Background.WithCancel`,
    /// `context.Background.WithValue(my_app::RequestId).WithDeadline(2026-11-25 10:00:00.5 +0000 UTC [4.99s])`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut path = Vec::new();
        let mut cur = self;
        loop {
            path.push(cur);
            cur = match &cur.0 {
                Repr::Background | Repr::Todo | Repr::Custom(_) => break,
                Repr::Cancel(node) => &node.parent,
                Repr::Value(node) => &node.parent,
                Repr::Without(parent) => parent,
            };
        }
        for ctx in path.iter().rev() {
            match &ctx.0 {
                Repr::Background => f.write_str("context.Background")?,
                Repr::Todo => f.write_str("context.TODO")?,
                Repr::Custom(node) => node.context().fmt_name(f)?,
                Repr::Cancel(node) => match node.deadline() {
                    None => match node.other() {
                        // Formatted with no lock held: `other` may be a
                        // user context, whose `fmt_name` is user code.
                        Some(other) => write!(f, ".WithMerge({other})")?,
                        None => f.write_str(".WithCancel")?,
                    },
                    Some(at) => {
                        f.write_str(".WithDeadline(")?;
                        crate::name::write_deadline(f, at)?;
                        f.write_str(")")?;
                    }
                },
                Repr::Value(node) => write!(f, ".WithValue({})", node.type_name)?,
                Repr::Without(_) => f.write_str(".WithoutCancel")?,
            }
        }
        Ok(())
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
