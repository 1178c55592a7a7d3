//! `RequestBody`: the request body as the inner service sees it, ending
//! the request context the moment the transport reports a failure.
//!
//! hyper reports a client that leaves mid-upload (HTTP/1 EOF, an HTTP/2
//! `RST_STREAM`) only as an error from the body read. Without this
//! wrapper the handler would get that error while its context is still
//! live, could answer, and the context would end `ResponseComplete` for a
//! response nobody received (golang/go#52183, hyper#3681).

use std::error::Error as StdError;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::causes::AbandonReason;
use super::guard::abandon;
use crate::CancelFunc;

/// The boxed error a [`RequestBody`] returns, as tower-http's bodies do.
pub type BoxError = Box<dyn StdError + Send + Sync>;

pin_project! {
    /// The request body of a [`RequestContext`](crate::http::RequestContext)
    /// service: the inner body, unchanged, except that an error from it
    /// first ends the request context with
    /// [`RequestAbandoned`](crate::http::RequestAbandoned) and a reason
    /// read from the error ([`ConnectionClosed`], [`StreamReset`],
    /// otherwise [`RequestBodyFailed`]), then is returned, boxed.
    ///
    /// So when a body read fails, `ctx.err()` is already `Some` before the
    /// handler sees the error, and the request can no longer end
    /// [`ResponseComplete`](crate::http::ResponseComplete).
    ///
    /// Frames, `size_hint` and `is_end_stream` are the inner body's. A body
    /// that was already complete when the request arrived (a `GET`) holds
    /// no handle on the context.
    ///
    /// [`ConnectionClosed`]: AbandonReason::ConnectionClosed
    /// [`StreamReset`]: AbandonReason::StreamReset
    /// [`RequestBodyFailed`]: AbandonReason::RequestBodyFailed
    pub struct RequestBody<B> {
        #[pin]
        inner: B,
        // `None` for a body complete from the start, and once it failed.
        cancel: Option<CancelFunc>,
    }
}

impl<B: Body> RequestBody<B> {
    pub(super) fn new(inner: B, cancel: impl FnOnce() -> Option<CancelFunc>) -> Self {
        let cancel = if inner.is_end_stream() {
            None
        } else {
            cancel()
        };
        RequestBody { inner, cancel }
    }
}

impl<B> RequestBody<B> {
    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The inner body; the request context no longer hears of its errors.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        match ready!(this.inner.poll_frame(cx)) {
            Some(Err(err)) => {
                let err = err.into();
                if let Some(cancel) = this.cancel.take() {
                    abandon(&cancel, reason_of(&*err));
                }
                Poll::Ready(Some(Err(err)))
            }
            Some(Ok(frame)) => Poll::Ready(Some(Ok(frame))),
            None => {
                // Complete: nothing more can fail.
                *this.cancel = None;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody")
            .field("watched", &self.cancel.is_some())
            .finish_non_exhaustive()
    }
}

/// The reason a body error gives, from the first error in its `source()`
/// chain that names one: an I/O error of a closed connection, or (with the
/// `h2` feature) an HTTP/2 reset or lost connection.
pub(crate) fn reason_of(err: &(dyn StdError + 'static)) -> AbandonReason {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected
            ) {
                return AbandonReason::ConnectionClosed;
            }
        }
        #[cfg(feature = "h2")]
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            if h2.is_reset() && h2.is_remote() {
                let code = h2.reason().map(u32::from);
                return AbandonReason::StreamReset { code };
            }
            if h2.is_io() || h2.is_go_away() {
                return AbandonReason::ConnectionClosed;
            }
        }
        next = err.source();
    }
    AbandonReason::RequestBodyFailed
}
