//! The in-place group: futures driven inside the group's own future.

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use super::{Failure, check_set_limit};
use crate::cancel::with_cancel_cause;
use crate::context::{Ctx, background};

type Task<'a, T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'a>>;

/// A group of futures driven in place: no spawning, no runtime. The
/// futures run inside the group's own future ([`wait`](InPlace::wait)),
/// concurrently but on the thread that polls it, on any executor; they
/// may borrow from the caller. Go's errgroup, for I/O-bound fan-out that
/// needs no parallelism (the rules are the [module's](super)).
///
/// - [`go`](InPlace::go) calls the task's closure at once, with the
///   group's context, to make its future; the future first runs when
///   `wait` is polled. So a task that fails cannot stop later `go` calls
///   from making theirs, but their futures see the group's context done
///   from their first poll. Put the work inside the `async` block: the
///   limit bounds the futures, not the closures (Go's `Go` blocks the
///   caller at the limit instead).
/// - `wait` takes the group: tasks cannot be added while it runs (no
///   crawler that adds tasks from tasks, no streaming input under the
///   limit's backpressure; `goctx::tokio::Group` does both).
/// - The futures must be `Send` (so the group's future can move to
///   another thread, as `tokio::spawn` needs): no `Rc` or `RefCell` in
///   them, even on a single-threaded executor.
/// - [`wait`](InPlace::wait) polls the running futures, at most the
///   limit's number at a time (in `go` order), until all are done, and
///   returns their values in `go` order, or the first error.
/// - Each wake-up polls every running future once (there is one waker for
///   the group): cheap for tens or hundreds of futures, or with a limit.
///   Thousands of long-lived futures that wake often belong on a runtime
///   (`goctx::tokio::Group`).
///
/// Dropping the group, or its `wait` future before it is done, cancels the
/// group's context with [`GroupDropped`](super::GroupDropped) and drops
/// the futures. A panic in a future cancels the group's context with
/// [`TaskPanicked`](super::TaskPanicked) and unwinds out of `wait` at
/// once, dropping the other futures.
///
/// # Examples
///
/// ```
/// # futures::executor::block_on(async {
/// #[derive(Clone, Debug, thiserror::Error)]
/// #[error("{0}: not found")]
/// struct NotFound(String);
///
/// let names = vec!["a.txt".to_string(), "bb.txt".to_string()];
/// let (mut group, _gctx) = goctx::group::InPlace::with_context(&goctx::background());
/// group.set_limit(Some(8));
/// for name in &names {
///     // Borrows `names`: nothing is spawned.
///     group.go(move |ctx| async move {
///         ctx.run(async { name.len() }).await.map_err(|_| NotFound(name.clone()))
///     });
/// }
/// assert_eq!(group.wait().await.unwrap(), vec![5, 6]);
/// # });
/// ```
#[doc(alias = "errgroup")]
pub struct InPlace<'a, T, E> {
    ctx: Ctx,
    failure: Option<Failure<E>>,
    tasks: Vec<Task<'a, T, E>>,
    limit: Option<usize>,
}

impl<'a, T, E> InPlace<'a, T, E>
where
    E: std::error::Error + Clone + Send + Sync + 'static,
{
    /// A group whose context is a child of `ctx`; returns it with that
    /// context. Go: `errgroup.WithContext`.
    #[doc(alias = "WithContext")]
    pub fn with_context(ctx: &Ctx) -> (InPlace<'a, T, E>, Ctx) {
        let (gctx, cancel) = with_cancel_cause(ctx);
        let group = InPlace {
            ctx: gctx.clone(),
            failure: Some(Failure::new(cancel)),
            tasks: Vec::new(),
            limit: None,
        };
        (group, gctx)
    }

    /// A group under [`background`]: Go's zero `errgroup.Group`.
    pub fn new() -> InPlace<'a, T, E> {
        InPlace::with_context(&background()).0
    }

    /// The group's context, which every task gets.
    pub fn context(&self) -> &Ctx {
        &self.ctx
    }

    /// At most `limit` futures run at once; `None` (the default): no
    /// bound. Go: `SetLimit` (negative there is `None` here). It bounds the
    /// futures only: every closure given to `go` has already run.
    ///
    /// Nothing runs before `wait`, so this never panics (Go's panics when
    /// goroutines are active). `Some(0)` makes `wait` panic if there is a
    /// task, rather than wait forever (as `scope`'s `go` does).
    #[doc(alias = "SetLimit")]
    pub fn set_limit(&mut self, limit: Option<usize>) {
        check_set_limit(0);
        self.limit = limit;
    }

    /// Adds a task: calls `task` now with the group's context to make its
    /// future, which runs when [`wait`](InPlace::wait) is polled. Go: `Go`
    /// (there is no `TryGo` here: nothing runs yet, so every task is
    /// accepted).
    ///
    /// A panic in `task` itself (before it returns its future) unwinds out
    /// of `go`; the group is not canceled until it is dropped.
    #[doc(alias = "Go")]
    pub fn go<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(Ctx) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'a,
    {
        self.tasks.push(Box::pin(task(self.ctx.clone())));
    }

    /// Runs the tasks until all are done; their values in `go` order, or
    /// the first error. The group's context is done when this returns.
    /// Go: `Wait`.
    ///
    /// Nothing happens until the returned future is polled: dropping it
    /// unpolled (a forgotten `.await`) drops the tasks and cancels the
    /// group with [`GroupDropped`](super::GroupDropped).
    ///
    /// # Panics
    ///
    /// Re-raises a task's panic at once, with its payload (the group's
    /// context is canceled with `TaskPanicked` first). Panics if the limit
    /// is `Some(0)` and there is a task: it could never run.
    #[doc(alias = "Wait")]
    #[must_use = "the tasks run only when the future is awaited"]
    pub fn wait(mut self) -> Wait<'a, T, E> {
        assert!(
            self.limit != Some(0) || self.tasks.is_empty(),
            "goctx: InPlace::wait with a limit of 0 and {} task(s): none could ever run",
            self.tasks.len()
        );
        let tasks: Vec<Option<Task<'a, T, E>>> = std::mem::take(&mut self.tasks)
            .into_iter()
            .map(Some)
            .collect();
        let mut values = Vec::with_capacity(tasks.len());
        values.resize_with(tasks.len(), || None);
        Wait {
            failure: self.failure.take(),
            tasks,
            values,
            started: 0,
            first_live: 0,
            running: 0,
            limit: self.limit.unwrap_or(usize::MAX),
        }
    }
}

impl<T, E> Default for InPlace<'_, T, E>
where
    E: std::error::Error + Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        InPlace::new()
    }
}

impl<T, E> Drop for InPlace<'_, T, E> {
    fn drop(&mut self) {
        if let Some(failure) = &self.failure {
            failure.dropped();
        }
    }
}

impl<T, E> fmt::Debug for InPlace<'_, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InPlace")
            .field("ctx", &self.ctx)
            .field("tasks", &self.tasks.len())
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// The future of [`InPlace::wait`]: drives the group's futures; their
/// values in `go` order, or the first error.
///
/// Dropping it before it is done cancels the group's context with
/// [`GroupDropped`](super::GroupDropped) and drops the futures.
#[must_use = "futures do nothing unless polled: the group's tasks run only when this is awaited"]
pub struct Wait<'a, T, E> {
    failure: Option<Failure<E>>,
    tasks: Vec<Option<Task<'a, T, E>>>,
    values: Vec<Option<T>>,
    /// Tasks `..started` have been started.
    started: usize,
    /// Tasks before this one are all done.
    first_live: usize,
    running: usize,
    limit: usize,
}

// Nothing is pinned in place: the futures are boxed.
impl<T, E> Unpin for Wait<'_, T, E> {}

impl<T, E> Future for Wait<'_, T, E>
where
    E: std::error::Error + Clone + Send + Sync + 'static,
{
    type Output = Result<Vec<T>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let failure = this
            .failure
            .as_ref()
            .expect("goctx: group's wait future polled after it returned");
        loop {
            // Start what the limit allows, then poll everything running;
            // go round again only if a task finished (a slot freed).
            while this.started < this.tasks.len() && this.running < this.limit {
                this.started += 1;
                this.running += 1;
            }
            let mut freed = false;
            for index in this.first_live..this.started {
                let Some(task) = &mut this.tasks[index] else {
                    continue;
                };
                match catch_unwind(AssertUnwindSafe(|| task.as_mut().poll(cx))) {
                    Ok(Poll::Pending) => continue,
                    Ok(Poll::Ready(Ok(value))) => this.values[index] = Some(value),
                    Ok(Poll::Ready(Err(err))) => failure.error(err),
                    Err(payload) => {
                        failure.panicked(&*payload);
                        resume_unwind(payload);
                    }
                }
                this.tasks[index] = None;
                this.running -= 1;
                freed = true;
            }
            while this.first_live < this.started && this.tasks[this.first_live].is_none() {
                this.first_live += 1;
            }
            if this.first_live == this.tasks.len() {
                let failure = this.failure.take().expect("checked above");
                return Poll::Ready(match failure.finish() {
                    Some(err) => Err(err),
                    None => Ok(std::mem::take(&mut this.values)
                        .into_iter()
                        .flatten()
                        .collect()),
                });
            }
            if !freed || this.started == this.tasks.len() {
                return Poll::Pending;
            }
        }
    }
}

impl<T, E> Drop for Wait<'_, T, E> {
    fn drop(&mut self) {
        if let Some(failure) = &self.failure {
            failure.dropped();
        }
    }
}

impl<T, E> fmt::Debug for Wait<'_, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wait")
            .field("tasks", &self.tasks.len())
            .field("done", &self.first_live)
            .field("running", &self.running)
            .finish_non_exhaustive()
    }
}
