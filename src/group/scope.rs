//! The scoped-thread group: blocking tasks on `std::thread::scope`.

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::{Failure, check_set_limit};
use crate::cancel::with_cancel_cause;
use crate::context::Ctx;

/// Runs blocking tasks on scoped threads under a child of `ctx`, and
/// returns their values in the order they were started, or the first
/// error. Go: `errgroup.WithContext` + `Go` + `Wait`, with
/// [`std::thread::scope`] underneath: tasks may borrow from the caller's
/// stack, and every task has finished when `scope` returns.
///
/// Each task gets the group's context: canceled by the first task that
/// fails (with that error as the cause), by a task that panics (cause
/// [`TaskPanicked`](super::TaskPanicked)), or by `ctx`; and once `scope` is about to return.
/// See the [module docs](super) for the rules every group follows.
///
/// # Panics
///
/// Re-raises the first panic of a task, with its payload, after every
/// task finished; and panics if `f` does (also after the tasks finished,
/// as `std::thread::scope` does). See [`Scope::go`] and
/// [`Scope::set_limit`] for misuse that panics.
///
/// # Examples
///
/// Go's `MD5All` pipeline, with blocking work on threads: the first
/// failure stops the others.
///
/// ```
/// use std::time::Duration;
///
/// #[derive(Clone, Debug, thiserror::Error)]
/// #[error("{0}: not found")]
/// struct NotFound(String);
///
/// let files = ["a.txt", "b.txt", "c.txt"];
/// let sizes = goctx::group::scope(&goctx::background(), |s| {
///     s.set_limit(Some(2)); // at most two at a time
///     for name in files {
///         s.go(move |ctx| {
///             if ctx.err().is_some() {
///                 return Err(NotFound(name.into())); // the group already failed
///             }
///             Ok(name.len() * 100) // stands for reading the file
///         });
///     }
/// });
/// assert_eq!(sizes.unwrap(), vec![500, 500, 500]);
///
/// let result = goctx::group::scope(&goctx::background(), |s| {
///     s.go(|_| Err(NotFound("missing.txt".into())));
///     s.go(|ctx| {
///         // Blocks until the sibling's error cancels the group.
///         assert!(ctx.wait_timeout(Duration::from_secs(10)).is_some());
///         let cause = ctx.cause().expect("done");
///         assert_eq!(cause.to_string(), "missing.txt: not found");
///         Ok(0)
///     });
/// });
/// assert_eq!(result.unwrap_err().to_string(), "missing.txt: not found");
/// ```
#[doc(alias = "errgroup")]
#[doc(alias = "WithContext")]
pub fn scope<'env, T, E, F>(ctx: &Ctx, f: F) -> Result<Vec<T>, E>
where
    T: Send + 'env,
    E: std::error::Error + Clone + Send + Sync + 'static,
    F: for<'scope> FnOnce(&Scope<'scope, 'env, T, E>),
{
    let (gctx, cancel) = with_cancel_cause(ctx);
    // Owned by the scope and its threads alike, so that the scope borrows
    // nothing of this function's frame.
    let shared = Arc::new(Shared {
        failure: Failure::new(cancel),
        slots: Slots::default(),
        results: Mutex::new(Vec::new()),
        panic: Mutex::new(None),
    });
    let outer = std::thread::scope(|threads| {
        let scope = Scope {
            threads,
            ctx: gctx,
            shared: Arc::clone(&shared),
        };
        // The caller's own panic waits for the tasks (std's rule), then
        // is re-raised below, after theirs.
        catch_unwind(AssertUnwindSafe(|| f(&scope)))
    });
    let first_error = shared.failure.finish();
    if let Some(payload) = shared.panic.lock().take() {
        resume_unwind(payload);
    }
    if let Err(payload) = outer {
        resume_unwind(payload);
    }
    if let Some(err) = first_error {
        return Err(err);
    }
    let values = std::mem::take(&mut *shared.results.lock());
    Ok(values
        .into_iter()
        .map(|value| value.expect("every task finished without an error"))
        .collect())
}

/// What a scope and its threads share.
struct Shared<T, E> {
    failure: Failure<E>,
    slots: Slots,
    results: Mutex<Vec<Option<T>>>,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

/// The handle [`scope`] passes its closure, to start tasks with. Go's
/// `errgroup.Group`, for threads.
pub struct Scope<'scope, 'env, T, E> {
    threads: &'scope std::thread::Scope<'scope, 'env>,
    ctx: Ctx,
    shared: Arc<Shared<T, E>>,
}

/// How many tasks run, and how many may.
#[derive(Default)]
struct Slots {
    state: Mutex<SlotState>,
    freed: Condvar,
}

#[derive(Default)]
struct SlotState {
    active: usize,
    limit: Option<usize>,
}

impl SlotState {
    /// Whether the limit is reached: a new task must wait.
    fn full(&self) -> bool {
        self.limit.is_some_and(|limit| self.active >= limit)
    }
}

impl<'scope, 'env, T, E> Scope<'scope, 'env, T, E>
where
    T: Send + 'env,
    E: std::error::Error + Clone + Send + Sync + 'static,
{
    /// The group's context, as every task gets it.
    pub fn context(&self) -> &Ctx {
        &self.ctx
    }

    /// Bounds how many tasks run at once: `None` for no bound (the
    /// default), `Some(0)` to start nothing. Go: `SetLimit` (where a
    /// negative number means no bound).
    ///
    /// # Panics
    ///
    /// If a task of this group is running.
    #[doc(alias = "SetLimit")]
    pub fn set_limit(&self, limit: Option<usize>) {
        let mut state = self.shared.slots.state.lock();
        check_set_limit(state.active);
        state.limit = limit;
    }

    /// Starts `task` on a new scoped thread with the group's context,
    /// first waiting, if the limit is reached, until a running task
    /// finishes. Go: `Go`, which waits the same way and starts the task
    /// even if the group's context is done by then: the task should look
    /// at its context first.
    ///
    /// # Panics
    ///
    /// If the limit is `Some(0)`: no slot can ever free up, so this would
    /// block forever (Go's `Go` deadlocks); use [`try_go`](Scope::try_go).
    /// If the thread cannot be spawned (as [`std::thread::Scope::spawn`]).
    #[doc(alias = "Go")]
    pub fn go<F>(&self, task: F)
    where
        F: FnOnce(&Ctx) -> Result<T, E> + Send + 'scope,
    {
        {
            let mut state = self.shared.slots.state.lock();
            assert!(
                state.limit != Some(0),
                "goctx: Scope::go with a limit of 0 would wait forever; use try_go"
            );
            while state.full() {
                self.shared.slots.freed.wait(&mut state);
            }
            state.active += 1;
        }
        self.start(task);
    }

    /// Starts `task` if a slot is free, and returns whether it did. Go:
    /// `TryGo`.
    #[doc(alias = "TryGo")]
    pub fn try_go<F>(&self, task: F) -> bool
    where
        F: FnOnce(&Ctx) -> Result<T, E> + Send + 'scope,
    {
        {
            let mut state = self.shared.slots.state.lock();
            if state.full() {
                return false;
            }
            state.active += 1;
        }
        self.start(task);
        true
    }

    /// Runs `task` on a thread; its slot is taken.
    fn start<F>(&self, task: F)
    where
        F: FnOnce(&Ctx) -> Result<T, E> + Send + 'scope,
    {
        let index = {
            let mut results = self.shared.results.lock();
            results.push(None);
            results.len() - 1
        };
        let ctx = self.ctx.clone();
        let shared = Arc::clone(&self.shared);
        self.threads.spawn(move || {
            match catch_unwind(AssertUnwindSafe(|| task(&ctx))) {
                Ok(Ok(value)) => shared.results.lock()[index] = Some(value),
                Ok(Err(err)) => shared.failure.error(err),
                Err(payload) => {
                    shared.failure.panicked(&*payload);
                    shared.panic.lock().get_or_insert(payload);
                }
            }
            shared.slots.state.lock().active -= 1;
            shared.slots.freed.notify_one();
        });
    }
}

impl<T, E> fmt::Debug for Scope<'_, '_, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.slots.state.lock();
        f.debug_struct("Scope")
            .field("ctx", &self.ctx)
            .field("active", &state.active)
            .field("limit", &state.limit)
            .finish_non_exhaustive()
    }
}
