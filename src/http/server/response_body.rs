//! `RequestContextBody`: the response body, owning the request context's
//! guard while it streams.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::causes::AbandonReason;
use super::guard::Guard;

pin_project! {
    /// The response body of [`RequestContext`](crate::http::RequestContext):
    /// the handler's body, owning the request context's cancel guard, so the
    /// context stays live while the body streams.
    ///
    /// The context ends with [`ResponseComplete`](crate::http::ResponseComplete)
    /// when the body is complete: its last frame polled, or dropped once
    /// [`is_end_stream`](Body::is_end_stream) says it has nothing more, or
    /// dropped once all of a declared length (`content-length`, or an exact
    /// [`size_hint`](Body::size_hint)) was handed out: hyper's HTTP/1
    /// server stops polling a body there. Dropped earlier (the client
    /// stopped reading or went away, or the body failed), it ends with
    /// [`RequestAbandoned`](crate::http::RequestAbandoned) and
    /// [`ResponseBodyDropped`](AbandonReason::ResponseBodyDropped). Bodies
    /// of `HEAD` requests and of 1xx, 204 and 304 responses, which hyper
    /// never sends, complete when dropped.
    ///
    /// The guard is released before the inner body is dropped, so contexts
    /// the body derived from the request context see the request's cause,
    /// not their own `CancelFunc`'s drop.
    ///
    /// Frames, errors, `size_hint` and `is_end_stream` are the inner
    /// body's. Bodies the layer writes itself (an enforced deadline, a
    /// rejected `grpc-timeout`) are empty.
    pub struct RequestContextBody<B: Body> {
        #[pin]
        inner: Option<B>,
        // `None` once the context was ended.
        guard: Option<Guard>,
        // Bytes of the declared length not yet handed out; `None` when no
        // length was declared. `Some(0)`: dropping the body is its end.
        left: Option<u64>,
    }

    impl<B: Body> PinnedDrop for RequestContextBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(guard) = this.guard.take() {
                let ended = *this.left == Some(0)
                    || this.inner.as_ref().as_pin_ref().is_none_or(|b| b.is_end_stream());
                if ended {
                    guard.complete();
                } else {
                    guard.abandon(AbandonReason::ResponseBodyDropped);
                }
            }
            // The inner body drops after this, with the context already ended.
        }
    }
}

impl<B: Body> RequestContextBody<B> {
    /// `declared`: the length hyper will send, if known (`Some(0)` for a
    /// body hyper never sends).
    pub(super) fn new(inner: Option<B>, guard: Guard, declared: Option<u64>) -> Self {
        RequestContextBody {
            inner,
            guard: Some(guard),
            left: declared,
        }
    }
}

impl<B: Body> Body for RequestContextBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = match this.inner.as_pin_mut() {
            Some(inner) => ready!(inner.poll_frame(cx)),
            None => None,
        };
        match &frame {
            None => {
                if let Some(guard) = this.guard.take() {
                    guard.complete();
                }
            }
            Some(Ok(frame)) => {
                if let (Some(left), Some(data)) = (this.left.as_mut(), frame.data_ref()) {
                    *left = left.saturating_sub(data.remaining() as u64);
                }
            }
            Some(Err(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(B::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), B::size_hint)
    }
}

impl<B: Body> fmt::Debug for RequestContextBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestContextBody")
            .field("ended", &self.guard.is_none())
            .finish_non_exhaustive()
    }
}
