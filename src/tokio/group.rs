//! `Group`: Go's errgroup on tokio tasks.

use std::fmt;
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, resume_unwind};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use ::tokio::sync::Semaphore;
use ::tokio::task::JoinHandle;

use crate::background;
use crate::cancel::with_cancel_cause;
use crate::context::Ctx;
use crate::error::Error;
use crate::group::{Failure, check_set_limit};

/// Tasks spawned on the current tokio runtime that share a context and
/// fail together: Go's `errgroup.Group`, with the rules of
/// [`goctx::group`](crate::group) (first error cancels, panics cancel at
/// once and are re-raised, results in spawn order).
///
/// Tasks are `'static` tokio tasks, spawned with [`tokio::spawn`]'s
/// rules. For futures that borrow, drive them in place with
/// [`goctx::group::InPlace`](crate::group::InPlace); for blocking work
/// that borrows, [`goctx::group::scope`](crate::group::scope) (the
/// module's table says which to pick).
///
/// Dropping a group before [`wait`](Group::wait) cancels its context with
/// [`GroupDropped`](crate::group::GroupDropped), then aborts its tasks (as
/// a dropped [`JoinSet`](::tokio::task::JoinSet) does). The abort is
/// asynchronous, as tokio's is: a task's future is dropped the next time
/// the runtime gets to it, not before the drop returns; the canceled
/// context is what a task sees at once.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// #[derive(Clone, Debug, thiserror::Error)]
/// #[error("shard {0} is down")]
/// struct ShardDown(u32);
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (mut group, _gctx) = goctx::tokio::Group::with_context(&goctx::background());
/// group.set_limit(Some(2)); // at most 2 at a time
/// for shard in 0..5 {
///     let spawned = group
///         .spawn(move |ctx: goctx::Ctx| async move {
///             if shard == 1 {
///                 return Err(ShardDown(1));
///             }
///             // The failure of shard 1 cancels the others' context.
///             let _ = ctx.run(tokio::time::sleep(Duration::from_secs(60))).await;
///             Ok(shard)
///         })
///         .await;
///     if spawned.is_err() {
///         break; // the group failed while this waited for a slot
///     }
/// }
/// // `wait` says why: the task's error, not the `Canceled` of the wait.
/// let result = group.wait().await;
/// assert_eq!(result.unwrap_err().to_string(), "shard 1 is down");
/// # }
/// ```
///
/// Stop spawning when `spawn` returns `Err`, then `wait`: the error of
/// `spawn` only says that the group ended while it waited for a slot. Its
/// `?` would return that `Canceled` and drop the group unwaited, losing the
/// task's error that ended it (and canceling with `GroupDropped`).
///
/// The error type needs `Clone` (one copy is the context's cause, one is
/// returned): for one that is not (`std::io::Error`), use `Arc<E>`, and
/// downcast the cause to `Arc<E>`, as the next example does.
///
/// Go's errgroup pipeline example (`MD5All`), stage for stage: one task
/// walks a directory and feeds paths to a channel, a bounded number of
/// digesters read and hash the files, and the caller collects the sums.
/// The first error (an unreadable file) cancels every stage. (std's
/// `DefaultHasher` stands in for MD5.)
///
/// ```
/// use std::collections::BTreeMap;
/// use std::hash::{DefaultHasher, Hasher};
/// use std::path::PathBuf;
/// use std::sync::Arc;
///
/// use goctx::tokio::Group;
/// use tokio::sync::{Mutex, mpsc};
///
/// // `std::io::Error` is not `Clone`: the group's error is an `Arc` of it.
/// type Error = Arc<std::io::Error>;
///
/// async fn digest_all(root: PathBuf) -> Result<BTreeMap<PathBuf, u64>, Error> {
///     let (mut group, ctx) = Group::<(), Error>::with_context(&goctx::background());
///     let (paths_tx, paths_rx) = mpsc::channel::<PathBuf>(16);
///     group.try_spawn(move |ctx: goctx::Ctx| async move {
///         let mut dirs = vec![root];
///         while let Some(dir) = dirs.pop() {
///             for entry in std::fs::read_dir(dir)? {
///                 let path = entry?.path();
///                 if path.is_dir() {
///                     dirs.push(path);
///                 } else if ctx.run(paths_tx.send(path)).await.is_err() {
///                     return Ok(()); // canceled: another stage failed
///                 }
///             }
///         }
///         Ok(())
///     });
///     let (sums_tx, mut sums_rx) = mpsc::channel(16);
///     let paths_rx = Arc::new(Mutex::new(paths_rx));
///     for _ in 0..4 {
///         let (paths_rx, sums_tx) = (paths_rx.clone(), sums_tx.clone());
///         group.try_spawn(move |ctx: goctx::Ctx| async move {
///             loop {
///                 let Some(path) = paths_rx.lock().await.recv().await else {
///                     return Ok(()); // the walk is over
///                 };
///                 let mut hasher = DefaultHasher::new();
///                 hasher.write(&tokio::fs::read(&path).await?);
///                 if ctx.run(sums_tx.send((path, hasher.finish()))).await.is_err() {
///                     return Ok(());
///                 }
///             }
///         });
///     }
///     drop(sums_tx);
///     let mut sums = BTreeMap::new();
///     // Until the digesters are done, or the group failed.
///     while let Ok(Some((path, sum))) = ctx.run(sums_rx.recv()).await {
///         sums.insert(path, sum);
///     }
///     group.wait().await?;
///     Ok(sums)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let sums = digest_all(PathBuf::from("src/tokio")).await.unwrap();
/// assert!(sums.keys().any(|path| path.ends_with("group.rs")));
/// assert!(digest_all(PathBuf::from("no/such/dir")).await.is_err());
/// # }
/// ```
#[doc(alias = "errgroup")]
pub struct Group<T, E> {
    ctx: Ctx,
    shared: Arc<Shared<E>>,
    /// Every task started, in order: the results' order. (A vector of
    /// handles, not a `JoinSet`: `wait` wants them in this order anyway,
    /// and a handle costs no allocation and no list of its own; a
    /// `JoinSet` costs both, per task.) A finished task's memory stays
    /// until `wait` takes its result, as in a `JoinSet`.
    tasks: Vec<JoinHandle<Option<T>>>,
    /// Set by `wait`: the group's end is not a drop.
    waited: bool,
}

impl<T, E> Group<T, E>
where
    T: Send + 'static,
    E: std::error::Error + Clone + Send + Sync + 'static,
{
    /// A group whose context is a new child of `ctx`, returned beside it.
    /// Go: `errgroup.WithContext`.
    #[doc(alias = "WithContext")]
    pub fn with_context(ctx: &Ctx) -> (Group<T, E>, Ctx) {
        let (gctx, cancel) = with_cancel_cause(ctx);
        let group = Group {
            ctx: gctx.clone(),
            shared: Arc::new(Shared {
                failure: Failure::new(cancel),
                slots: None,
            }),
            tasks: Vec::new(),
            waited: false,
        };
        (group, gctx)
    }

    /// A group under [`background`]: Go's zero `errgroup.Group`. Its tasks
    /// still get a context, canceled by the first error.
    pub fn new() -> Group<T, E> {
        Group::with_context(&background()).0
    }

    /// The group's context, as every task gets it.
    pub fn context(&self) -> &Ctx {
        &self.ctx
    }

    /// Bounds how many tasks run at once: `None` for no bound (the
    /// default), `Some(0)` to start nothing. Go: `SetLimit`.
    ///
    /// # Panics
    ///
    /// If a task of this group is running (Go panics too).
    #[doc(alias = "SetLimit")]
    pub fn set_limit(&mut self, limit: Option<usize>) {
        check_set_limit(self.running());
        // No task holds the shared state now (checked above).
        let shared = Arc::get_mut(&mut self.shared).expect("no task of the group is running");
        shared.slots = limit.map(|n| Semaphore::new(n.min(Semaphore::MAX_PERMITS)));
    }

    /// Spawns `task(ctx)` on the current runtime, with the group's
    /// context, once a slot is free. Go: `Go`.
    ///
    /// Unlike Go's `Go`, which starts the task whatever happens, this
    /// returns `Err` without calling `task` when the group's context has
    /// ended (a task failed, or the parent context ended): at once if it
    /// already has, or while waiting for a slot if it ends first. The `Err`
    /// is the context's [`Error`] (`Canceled` or `DeadlineExceeded`), not
    /// the task error that ended the group: that one comes from `wait`.
    /// ([`try_spawn`](Group::try_spawn), like Go's `TryGo`, starts a task
    /// whenever a slot is free.)
    ///
    /// On `Err`, stop spawning and call [`wait`](Group::wait), which returns
    /// the error that ended the group; do not return the `Err` with `?`,
    /// which drops the group and loses that error.
    ///
    /// Tasks cannot spawn into their own group (this takes `&mut self`);
    /// for recursive fan-out, give each level a group of its own, or send
    /// new work back to the code that owns the group through a channel.
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future before it completes spawns nothing.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as [`tokio::spawn`].
    #[doc(alias = "Go")]
    pub async fn spawn<F, Fut>(&mut self, task: F) -> Result<(), Error>
    where
        F: FnOnce(Ctx) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        // A group already ended starts nothing: the caller's loop stops at
        // its first `Err`, whichever task freed the slot it would take.
        if let Some(err) = self.ctx.err() {
            return Err(err);
        }
        let held = match self.try_slot() {
            Some(held) => held,
            None => {
                let slots = self.shared.slots.as_ref().expect("no free slot: a limit");
                let mut acquire = pin!(slots.acquire());
                let mut done = pin!(self.ctx.done());
                let permit = poll_fn(|cx| {
                    if let Poll::Ready(permit) = acquire.as_mut().poll(cx) {
                        return Poll::Ready(Ok(permit));
                    }
                    done.as_mut().poll(cx).map(Err)
                })
                .await?;
                // The semaphore is the group's own and never closed. The
                // task gives the slot back when its future is dropped.
                permit
                    .expect("a group's semaphore is never closed")
                    .forget();
                true
            }
        };
        self.start(task, held);
        Ok(())
    }

    /// Spawns `task(ctx)` if a slot is free, and returns whether it did.
    /// Go: `TryGo`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as [`tokio::spawn`].
    #[doc(alias = "TryGo")]
    pub fn try_spawn<F, Fut>(&mut self, task: F) -> bool
    where
        F: FnOnce(Ctx) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let Some(held) = self.try_slot() else {
            return false;
        };
        self.start(task, held);
        true
    }

    /// Takes a free slot: `Some(true)` if one was taken (the task gives
    /// it back), `Some(false)` if there is no limit, `None` if all slots
    /// are taken.
    fn try_slot(&self) -> Option<bool> {
        match &self.shared.slots {
            None => Some(false),
            Some(slots) => slots.try_acquire().ok().map(|permit| {
                permit.forget();
                true
            }),
        }
    }

    fn start<F, Fut>(&mut self, task: F, held: bool)
    where
        F: FnOnce(Ctx) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        // If `task` panics, the slot it took is given back.
        let give_back = GiveBack(self.shared.slots.as_ref().filter(|_| held));
        let future = task(self.ctx.clone());
        std::mem::forget(give_back);
        self.tasks.push(::tokio::spawn(Task {
            future,
            // The task's handle on `shared` counts it as running until its
            // future is dropped (finished, panicked or aborted).
            shared: Arc::clone(&self.shared),
            held,
        }));
    }

    /// Waits for every task, cancels the group's context (plain
    /// `Canceled` if nothing did before), and returns the tasks' values in
    /// the order they were spawned, or the first error. Go: `Wait`.
    ///
    /// # Panics
    ///
    /// Re-raises a task's panic, with its payload, once every task
    /// finished. If several panicked, the payload is that of the one
    /// spawned first (the context's [`TaskPanicked`](crate::group::TaskPanicked)
    /// cause names the one that panicked first).
    ///
    /// If the runtime running the tasks shut down and aborted one before
    /// it finished (and no task failed or panicked), since its value is
    /// missing.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes drops the group: its
    /// context is canceled with `GroupDropped` and its tasks are aborted.
    #[doc(alias = "Wait")]
    pub async fn wait(mut self) -> Result<Vec<T>, E> {
        let mut out = Vec::with_capacity(self.tasks.len());
        let mut panic = None;
        let mut aborted = false;
        // In spawn order: a task that is not done yet is waited for while
        // the later ones run on. The handles stay in the group until it is
        // dropped, so a wait dropped half way still aborts the rest.
        for task in &mut self.tasks {
            match task.await {
                Ok(Some(value)) => out.push(value),
                // The group heard of the error inside the task.
                Ok(None) => {}
                Err(err) if err.is_panic() => {
                    panic.get_or_insert(err.into_panic());
                }
                // Only a runtime shutting down aborts our tasks before
                // `wait` returns: a result with a value missing would shift
                // every later one, so say so instead.
                Err(_) => aborted = true,
            }
        }
        self.waited = true;
        let first_error = self.shared.failure.finish();
        if let Some(payload) = panic {
            resume_unwind(payload);
        }
        if let Some(err) = first_error {
            return Err(err);
        }
        assert!(
            !aborted,
            "goctx: a task of the group was aborted before it finished \
             (the runtime running it shut down); its value is missing"
        );
        Ok(out)
    }
}

impl<T, E> Group<T, E> {
    /// Tasks whose future has not been dropped yet.
    fn running(&self) -> usize {
        Arc::strong_count(&self.shared) - 1
    }
}

impl<T, E> Default for Group<T, E>
where
    T: Send + 'static,
    E: std::error::Error + Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Group::new()
    }
}

impl<T, E> Drop for Group<T, E> {
    fn drop(&mut self) {
        if !self.waited {
            self.shared.failure.dropped();
            // A dropped handle lets its task run on: stop them (a task
            // already finished ignores this).
            for task in &self.tasks {
                task.abort();
            }
        }
    }
}

impl<T, E> fmt::Debug for Group<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("ctx", &self.ctx)
            .field("started", &self.tasks.len())
            .field("running", &self.running())
            .field(
                "free slots",
                &self.shared.slots.as_ref().map(|s| s.available_permits()),
            )
            .finish_non_exhaustive()
    }
}

// A group is used through `&mut self` and `self`; a panic inside one of its
// methods leaves nothing half changed that a later call would misread.
impl<T, E> std::panic::UnwindSafe for Group<T, E> {}
impl<T, E> std::panic::RefUnwindSafe for Group<T, E> {}

/// What a group and its tasks share. Each running task holds one handle:
/// the count of handles beyond the group's own is the count of tasks
/// whose future has not been dropped.
struct Shared<E> {
    failure: Failure<E>,
    /// The limit's slots (`None`: no limit); replaced by `set_limit` only
    /// while no task holds this.
    slots: Option<Semaphore>,
}

/// Gives a limit slot back when dropped: armed while a task's closure
/// runs, so a closure that panics does not keep the slot for good.
struct GiveBack<'a>(Option<&'a Semaphore>);

impl Drop for GiveBack<'_> {
    fn drop(&mut self) {
        if let Some(slots) = self.0 {
            slots.add_permits(1);
        }
    }
}

pin_project_lite::pin_project! {
    /// A task of the group as tokio runs it: the user's future, whose
    /// error or panic the group hears of at once, inside the task. (A
    /// struct, not an `async` block: the block would hold the future twice
    /// over, and a larger task costs every spawn.)
    struct Task<F, E> {
        #[pin]
        future: F,
        shared: Arc<Shared<E>>,
        // Whether it holds one of the limit's slots, given back when the
        // task is dropped. (A flag, not a permit: 16 bytes smaller, and
        // every byte of the task is moved on every spawn.)
        held: bool,
    }

    impl<F, E> PinnedDrop for Task<F, E> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if *this.held
                && let Some(slots) = &this.shared.slots
            {
                slots.add_permits(1);
            }
        }
    }
}

impl<F, T, E> Future for Task<F, E>
where
    F: Future<Output = Result<T, E>>,
    E: std::error::Error + Clone + Send + Sync + 'static,
{
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let future = this.future;
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(Ok(value))) => Poll::Ready(Some(value)),
            Ok(Poll::Ready(Err(err))) => {
                this.shared.failure.error(err);
                Poll::Ready(None)
            }
            Err(payload) => {
                // Siblings hear of it now; `wait` re-raises it.
                this.shared.failure.panicked(&*payload);
                resume_unwind(payload)
            }
        }
    }
}
