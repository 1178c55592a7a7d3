//! Tokio integration (feature `tokio`): [`Group`] (Go's errgroup on tokio
//! tasks), async `after_func` callbacks on the caller's runtime, and the
//! guard that keeps [`Ctx::wait`] from hanging a thread that drives async
//! tasks.
//!
//! goctx itself needs no runtime: its deadlines and `after_func` callbacks
//! run on its own helper threads. Those threads are outside any tokio
//! runtime, which is what this module bridges.
//!
//! Paths to tokio are written `::tokio::` here: this module is itself
//! named `tokio`.

use std::future::Future;

mod group;
#[cfg(feature = "signal")]
mod signal;

pub use group::Group;
#[cfg(feature = "signal")]
#[cfg_attr(docsrs, doc(cfg(feature = "signal")))]
pub use signal::{Signal, SignalReceived, signal_context};

use ::tokio::runtime::Handle;

use crate::after::{AfterFunc, after_func};
use crate::context::Ctx;

/// Arranges for `future` to be spawned on the tokio runtime of the caller
/// once `ctx` is done: [`after_func`] for async callbacks.
///
/// The runtime is captured now, with [`Handle::current`], because the
/// callback of a plain `after_func` runs on a goctx helper thread outside
/// any runtime, where `tokio::spawn` panics. Everything else is
/// `after_func`'s contract:
///
/// - `future` is spawned at most once, after `ctx.err()` became `Some`,
///   never on the thread that canceled the context. If `ctx` is already
///   done it is spawned at once; if `ctx` can never be done it never is.
/// - [`AfterFunc::stop`] returns `true` iff it prevented the spawn (the
///   future is then dropped without being polled); `false` once the future
///   was handed to the runtime or the registration was already stopped. It
///   does not wait for, or abort, a spawned future.
/// - Dropping the returned handle does not stop the callback.
/// - While the callback is pending it keeps `ctx` alive.
///
/// If the runtime has shut down by the time `ctx` is done, the spawn fails
/// quietly and `future` is dropped unpolled, as `Handle::spawn` does.
///
/// # Panics
///
/// If called outside a tokio runtime (no [`Handle::try_current`]). Call
/// [`after_func`] with `handle.spawn(..)` inside to pick a runtime
/// explicitly.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (ctx, cancel) = goctx::with_cancel(&goctx::background());
/// let (tx, rx) = tokio::sync::oneshot::channel();
/// let _handle = goctx::tokio::after_func_async(&ctx, async move {
///     tokio::time::sleep(Duration::from_millis(1)).await; // runtime-only API
///     let _ = tx.send("flushed");
/// });
/// cancel.cancel();
/// assert_eq!(tokio::time::timeout(Duration::from_secs(10), rx).await??, "flushed");
/// # Ok(())
/// # }
/// ```
#[doc(alias = "AfterFunc")]
#[track_caller]
pub fn after_func_async<Fut>(ctx: &Ctx, future: Fut) -> AfterFunc
where
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let Ok(handle) = Handle::try_current() else {
        panic!(
            "goctx::tokio::after_func_async must be called from within a tokio runtime \
             (it spawns the callback on the caller's runtime)"
        );
    };
    after_func(ctx, move || {
        // The task's output and `JoinHandle` are not needed: the callback
        // is fire-and-forget, as Go's `AfterFunc` goroutine is.
        drop(handle.spawn(future));
    })
}
