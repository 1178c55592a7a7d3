//! `PropagateFuture`: the inner client's future raced with the request's
//! context, handing the race on to the response body.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::body::PropagateBody;
use super::error::PropagateError;
#[cfg(doc)]
use super::service::Propagate;
use crate::future::DoneOwned;
use crate::{Cause, Ctx, Error};

/// The context's error and cause, once `done` said it ended with `err`.
fn ended(ctx: Option<&Ctx>, err: Error) -> (Error, Cause) {
    let cause = ctx.and_then(Ctx::cause).unwrap_or_else(|| err.into_cause());
    (err, cause)
}

pin_project! {
    /// The response future of [`Propagate`]: the inner client's future,
    /// raced with the request's context.
    ///
    /// When the context ends first, the inner future is dropped at once
    /// and the output is [`PropagateError::Context`]; when both are ready
    /// in the same poll, the context wins (as in [`Ctx::run`]). Without a
    /// context it is the inner future, its body wrapped.
    ///
    /// # Panics
    ///
    /// If polled again after it completed.
    ///
    /// # Examples
    ///
    /// Any `Service<http::Request<B>>` can be the client; here a stand-in
    /// that counts its calls:
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use tower::{Service, ServiceExt, service_fn};
    /// use goctx::http::{PropagateLayer, PropagateBody, with_context};
    /// use tower::Layer;
    ///
    /// # futures::executor::block_on(async {
    /// let calls = AtomicUsize::new(0);
    /// let inner = service_fn(|_req: http::Request<PropagateBody<String>>| {
    ///     calls.fetch_add(1, Ordering::SeqCst);
    ///     async { Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hi"))) }
    /// });
    /// let mut client = PropagateLayer::new().layer(inner);
    ///
    /// let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    /// let req = || with_context(http::Request::new(String::new()), &ctx);
    /// let ok = client.ready().await?.call(req()).await;
    /// assert!(ok.is_ok());
    /// cancel.cancel();
    /// let err = client.ready().await?.call(req()).await;
    /// assert_eq!(err.err().and_then(|e| e.ctx_err()), Some(goctx::Error::Canceled));
    /// assert_eq!(calls.load(Ordering::SeqCst), 1, "a done context never reaches the client");
    /// # Ok::<(), goctx::http::PropagateError<std::convert::Infallible>>(())
    /// # }).unwrap();
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct PropagateFuture<F> {
        // `None` when the request was not sent, and once completed.
        #[pin]
        pub(super) inner: Option<F>,
        // The race; `None` without a context, and once it moved to the body.
        pub(super) done: Option<DoneOwned>,
        // For the cause; `None` without a context.
        pub(super) ctx: Option<Ctx>,
        // Set when the context was done before sending; taken by the poll.
        pub(super) failed: Option<PropagateError<std::convert::Infallible>>,
    }
}

impl<F> PropagateFuture<F> {
    pub(super) fn start(inner: F, ctx: Option<Ctx>) -> Self {
        PropagateFuture {
            inner: Some(inner),
            done: ctx.as_ref().map(Ctx::done_owned),
            ctx,
            failed: None,
        }
    }
}

impl<F, B, E> Future for PropagateFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<PropagateBody<B>>, PropagateError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(PropagateError::Context { err, cause }) = this.failed.take() {
            return Poll::Ready(Err(PropagateError::Context { err, cause }));
        }
        // The context first: when both are ready, it wins.
        if let Some(done) = this.done.as_mut()
            && let Poll::Ready(err) = Pin::new(done).poll(cx)
        {
            // Dropping the client's future is how hyper learns to give up.
            this.inner.set(None);
            *this.done = None;
            let (err, cause) = ended(this.ctx.as_ref(), err);
            return Poll::Ready(Err(PropagateError::Context { err, cause }));
        }
        let inner = this
            .inner
            .as_mut()
            .as_pin_mut()
            .expect("PropagateFuture polled after completion");
        let result = ready!(inner.poll(cx));
        this.inner.set(None);
        let ctx = this.ctx.take();
        let done = this.done.take();
        Poll::Ready(match result {
            Ok(res) => Ok(res.map(|body| PropagateBody::racing(body, done, ctx))),
            Err(e) => Err(match &ctx {
                Some(ctx) => PropagateError::or_ctx(ctx, e),
                None => PropagateError::Inner(e),
            }),
        })
    }
}

impl<F> fmt::Debug for PropagateFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PropagateFuture")
            .field("ctx", &self.ctx)
            .field("sent", &self.failed.is_none())
            .finish_non_exhaustive()
    }
}
