//! One poll of a body raced with its context: the step the client's
//! response body ([`PropagateBody`](super::PropagateBody)) and request body
//! ([`PropagateRequestBody`](super::PropagateRequestBody)) share.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame};

use super::client_error::PropagateError;
use crate::{Ctx, DoneOwned};

/// A frame of a watched body, or why it stopped.
type WatchedFrame<B> = Result<Frame<<B as Body>::Data>, PropagateError<<B as Body>::Error>>;

/// Polls `inner` unless `ctx` ended first. When it did, `inner` is dropped
/// (its producer, or hyper's stream, learns at once), `done` is cleared and
/// the context's error is returned once; polls after that are `None`. When
/// `inner` ends, `done` is cleared too (its waker unregistered). An error of
/// `inner`'s while the context is done is reported as the context's.
///
/// `done` is `None` when nothing is watched; `ctx` gives the cause.
pub(super) fn poll_watched<B: Body>(
    mut inner: Pin<&mut Option<B>>,
    done: &mut Option<DoneOwned>,
    ctx: Option<&Ctx>,
    cx: &mut Context<'_>,
) -> Poll<Option<WatchedFrame<B>>> {
    // The context first: when both are ready, it wins.
    if let Some(watch) = done.as_mut()
        && let Poll::Ready(err) = Pin::new(watch).poll(cx)
    {
        inner.set(None);
        *done = None;
        let cause = ctx.and_then(Ctx::cause).unwrap_or_else(|| err.into_cause());
        return Poll::Ready(Some(Err(PropagateError::Context { err, cause })));
    }
    let Some(body) = inner.as_mut().as_pin_mut() else {
        return Poll::Ready(None);
    };
    Poll::Ready(match ready!(body.poll_frame(cx)) {
        None => {
            *done = None;
            None
        }
        Some(Ok(frame)) => Some(Ok(frame)),
        Some(Err(e)) => Some(Err(match ctx {
            Some(ctx) if done.is_some() => PropagateError::or_ctx(ctx, e),
            _ => PropagateError::Inner(e),
        })),
    })
}
