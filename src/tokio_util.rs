//! Bridges between [`Ctx`] and tokio-util's [`CancellationToken`] (feature
//! `tokio-util`), both ways, with no thread or task per bridge.
//!
//! Servers built on axum, tonic or plain tokio often hand their code a
//! `CancellationToken` for graceful shutdown, or want one to pass on;
//! these functions connect such a token to a goctx tree.
//!
//! - [`ctx_from_token`]: a `Ctx` that is done when the token is cancelled.
//!   It is a user [`Context`] whose [`subscribe`](Context::subscribe)
//!   registers a waker directly with the token; canceling the token wakes
//!   it, and the wake-up delivers the [`Notify`] on the canceling thread.
//! - [`token_from_ctx`]: a `CancellationToken` that is cancelled when the
//!   `Ctx` is done. A [`DoneOwned`] future is polled by hand with a waker
//!   that, once the context is done, cancels the token on the canceling
//!   thread.
//!
//! Paths to tokio-util are written `::tokio_util::` here: this module is
//! itself named `tokio_util`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Weak};
use std::task::{Context as TaskContext, Wake, Waker};

use ::tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::context::Ctx;
use crate::custom::{Context, Notify, Subscription};
use crate::done::DoneOwned;
use crate::error::{Cause, Error};
use crate::sync::Mutex;
use crate::tree::Source;

/// The [cause](Ctx::cause) of a context made by [`ctx_from_token`] once its
/// token was cancelled: the token carries no reason of its own.
///
/// # Examples
///
/// ```
/// use goctx::tokio_util::{TokenCanceled, ctx_from_token};
/// use tokio_util::sync::CancellationToken;
///
/// let token = CancellationToken::new();
/// let ctx = ctx_from_token(&token);
/// token.cancel();
/// assert!(ctx.cause().is_some_and(|cause| cause.is::<TokenCanceled>()));
/// assert_eq!(TokenCanceled.to_string(), "cancellation token canceled");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("cancellation token canceled")]
pub struct TokenCanceled;

/// A context that is done, with [`Error::Canceled`] and the cause
/// [`TokenCanceled`], once `token` is cancelled.
///
/// The context has no deadline and no values; derive from it as from any
/// other context. Its [`err`](Ctx::err) asks the token (which takes the
/// token's lock, unlike a goctx node's single atomic load); contexts
/// derived from it are goctx nodes again and cheap to check.
///
/// Calling it again for the same token gives another, independent context
/// that is done at the same moment. Cancellation reaches the context, and
/// everything derived from it, before `token.cancel()` returns, on the
/// canceling thread; if `token` is already cancelled the context is born
/// done.
///
/// # Registrations
///
/// Creating the context registers nothing. Each waiter on it (a derived
/// context, a pending [`done`](Ctx::done) future, an
/// [`after_func`](crate::after_func) callback) holds one registration with
/// the token, which is released when that waiter goes away: the derived
/// context is canceled or its last handle dropped, the future completes or
/// is dropped, the callback starts or is stopped. Or when the token is
/// cancelled. Nothing runs in the background: no thread, no task.
///
/// # Examples
///
/// A server hands out a shutdown token (as axum's and tonic's graceful
/// shutdown examples do); goctx-based request code derives its contexts
/// from it:
///
/// ```
/// use std::time::Duration;
/// use tokio_util::sync::CancellationToken;
///
/// async fn handle_request(ctx: &goctx::Ctx) -> Result<&'static str, goctx::Error> {
///     let (ctx, _cancel) = goctx::with_timeout(ctx, Duration::from_secs(30));
///     // Stand-in for slow work that the shutdown interrupts.
///     ctx.run(std::future::pending()).await
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tokio::task::JoinError> {
/// let shutdown = CancellationToken::new();
/// let server_ctx = goctx::tokio_util::ctx_from_token(&shutdown);
/// let request = tokio::spawn(async move { handle_request(&server_ctx).await });
/// shutdown.cancel(); // e.g. on SIGTERM
/// assert_eq!(request.await?, Err(goctx::Error::Canceled));
/// # Ok(())
/// # }
/// ```
pub fn ctx_from_token(token: &CancellationToken) -> Ctx {
    Ctx::from_context(TokenContext {
        token: token.clone(),
    })
}

/// A token that is cancelled once `ctx` is done, for APIs that take a
/// [`CancellationToken`].
///
/// Each call returns a new, independent token. If `ctx` is already done
/// the token is born cancelled; if `ctx` can never be done (a root,
/// [`without_cancel`](crate::without_cancel)) it is a plain token that
/// only its own `cancel` ends. The cancellation reaches the token (and its
/// child tokens) before the call that ended `ctx` returns, on that thread.
/// Canceling the token has no effect on `ctx`.
///
/// # Registrations
///
/// One registration with `ctx`, holding a handle of `ctx` (so, as with a
/// pending [`after_func`](crate::after_func) callback, `ctx` still ends by
/// its deadline or its parent even if all its other handles are dropped).
/// It is released when `ctx` is done, or as soon as the token is cancelled
/// by anyone. Tokens cannot report being dropped: if every clone of the
/// token is dropped first, the registration stays until `ctx` is done.
/// Nothing runs in the background: no thread, no task.
///
/// # Examples
///
/// Shutting down a server that takes a token when the application's
/// context ends (axum's `with_graceful_shutdown(token.cancelled_owned())`
/// and tonic's `serve_with_shutdown` take such a future):
///
/// ```
/// use tokio_util::sync::CancellationToken;
///
/// // Stand-in for `axum::serve(listener, app).with_graceful_shutdown(..)`.
/// async fn serve(shutdown: CancellationToken) -> &'static str {
///     shutdown.cancelled_owned().await;
///     "drained"
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tokio::task::JoinError> {
/// let (app_ctx, stop) = goctx::with_cancel(&goctx::background());
/// let server = tokio::spawn(serve(goctx::tokio_util::token_from_ctx(&app_ctx)));
/// stop.cancel(); // e.g. on SIGTERM
/// assert_eq!(server.await?, "drained");
/// assert_eq!(app_ctx.dependents(), 0); // the bridge let go of `app_ctx`
/// # Ok(())
/// # }
/// ```
pub fn token_from_ctx(ctx: &Ctx) -> CancellationToken {
    let token = CancellationToken::new();
    if ctx.err().is_some() {
        token.cancel();
        return token;
    }
    if let Source::Never = ctx.0.source() {
        // Nothing can end `ctx`: nothing to register.
        return token;
    }
    let bridge = Arc::new(CtxToToken {
        state: Mutex::new(Some(Bridge {
            done: ctx.done_owned(),
            cancelled: Box::pin(token.clone().cancelled_owned()),
            token: token.clone(),
        })),
    });
    bridge.poll();
    token
}

/// The user context behind [`ctx_from_token`].
struct TokenContext {
    /// Set at creation, never changed.
    token: CancellationToken,
}

/// The one shared allocation every [`TokenCanceled`] cause points to.
static TOKEN_CANCELED: LazyLock<Cause> = LazyLock::new(|| Cause::new(TokenCanceled));

impl Context for TokenContext {
    fn err(&self) -> Option<Error> {
        // Once cancelled, a token stays cancelled: `err` never goes back.
        self.token.is_cancelled().then_some(Error::Canceled)
    }

    fn cause(&self) -> Option<Cause> {
        self.err().map(|_| TOKEN_CANCELED.clone())
    }

    fn subscribe(&self, notify: Notify) -> Subscription {
        let watch = Arc::new(TokenWatch {
            state: Mutex::new(Some(Watch {
                cancelled: Box::pin(self.token.clone().cancelled_owned()),
                notify,
            })),
        });
        // Registers the waker with the token, or delivers at once if the
        // token is already cancelled.
        watch.poll();
        // Weak: the subscription handle keeps nothing alive; the
        // registration itself (the waker in the token) holds the watch
        // until it fires or is taken back.
        let weak: Weak<TokenWatch> = Arc::downgrade(&watch);
        Subscription::new(move || {
            let taken = weak.upgrade().and_then(|watch| watch.state.lock().take());
            // Dropped outside the lock: drops the future, which leaves the
            // token's waiter list.
            taken.is_some()
        })
    }

    fn fmt_name(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tokio_util::CancellationToken")
    }
}

/// One registration of a [`TokenContext`] subscriber with its token.
struct TokenWatch {
    /// `Some` while registered; taken (under the lock, so exactly once) by
    /// whichever comes first: the token's cancellation, observed in
    /// `poll`, or the subscription's cancel.
    state: Mutex<Option<Watch>>,
}

struct Watch {
    /// Registered with the token while pending, with a waker that is this
    /// `TokenWatch`; dropping it unregisters.
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Delivered once the token is cancelled.
    notify: Notify,
}

impl TokenWatch {
    /// Polls the token's future; on cancellation takes the state and
    /// delivers the notification.
    fn poll(self: &Arc<Self>) {
        let waker = Waker::from(self.clone());
        let mut cx = TaskContext::from_waker(&waker);
        let mut state = self.state.lock();
        let Some(watch) = state.as_mut() else {
            return;
        };
        if watch.cancelled.as_mut().poll(&mut cx).is_pending() {
            return;
        }
        let taken = state.take();
        // Never notify under our lock: the notification cancels derived
        // contexts, whose teardown may take back this very subscription.
        drop(state);
        if let Some(Watch { cancelled, notify }) = taken {
            drop(cancelled);
            notify.notify();
        }
    }
}

impl Wake for TokenWatch {
    /// Called by `token.cancel()` after it released the token's locks
    /// (tokio-util wakes waiters last), so polling here cannot deadlock.
    fn wake(self: Arc<Self>) {
        self.poll();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.poll();
    }
}

/// The bridge behind [`token_from_ctx`].
struct CtxToToken {
    /// `Some` while both registrations stand; taken (under the lock, so
    /// exactly once) by the first `poll` that sees the context done or the
    /// token cancelled.
    state: Mutex<Option<Bridge>>,
}

struct Bridge {
    /// Registered with the context, waking this bridge.
    done: DoneOwned,
    /// Registered with the token, waking this bridge: a token canceled by
    /// someone else releases the context's registration early.
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    /// The token to cancel when the context is done.
    token: CancellationToken,
}

impl CtxToToken {
    fn poll(self: &Arc<Self>) {
        let waker = Waker::from(self.clone());
        let mut cx = TaskContext::from_waker(&waker);
        let mut state = self.state.lock();
        let Some(bridge) = state.as_mut() else {
            return;
        };
        let ctx_done = Pin::new(&mut bridge.done).poll(&mut cx).is_ready();
        if !ctx_done && bridge.cancelled.as_mut().poll(&mut cx).is_pending() {
            return;
        }
        let taken = state.take();
        // Everything below runs without our lock: dropping the futures
        // takes the context's and the token's locks, and `cancel` wakes
        // the token's waiters, which may include this bridge.
        drop(state);
        if let Some(Bridge {
            done,
            cancelled,
            token,
        }) = taken
        {
            drop(cancelled);
            drop(done);
            if ctx_done {
                token.cancel();
            }
        }
    }
}

impl Wake for CtxToToken {
    /// Called by the context's cancel or the token's, outside their locks.
    fn wake(self: Arc<Self>) {
        self.poll();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.poll();
    }
}
