//! `Ctx::stream`: a stream that ends when the context does.

use std::fmt;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use futures_core::{FusedStream, Stream};
use pin_project_lite::pin_project;

use crate::context::Ctx;
use crate::done::DoneOwned;

impl Ctx {
    /// `stream`'s items until this context is done; then the stream ends
    /// (yields `None`) and `stream` is dropped. The shape of a
    /// server-sent-events or WebSocket feed tied to a request: canceling
    /// the server's base context ends every such feed, so a graceful
    /// shutdown is not held open by them (hyper#2787, axum#2673).
    ///
    /// Done first: once the context is done, no further item is taken from
    /// `stream`, even one that is ready. The returned stream holds its own
    /// handle of the context (it is `'static` if `stream` is).
    ///
    /// Go has no streams; the loop it stands for is
    /// `for { select { case <-ctx.Done(): return; case v := <-ch: ... } }`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::pin::pin;
    /// use std::task::{Context, Poll, Waker};
    /// use futures_core::Stream;
    ///
    /// struct Counter(u32);
    /// impl Stream for Counter {
    ///     type Item = u32;
    ///     fn poll_next(mut self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<u32>> {
    ///         self.0 += 1;
    ///         Poll::Ready(Some(self.0))
    ///     }
    /// }
    ///
    /// let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    /// let mut events = pin!(ctx.stream(Counter(0)));
    /// let mut cx = Context::from_waker(Waker::noop());
    /// assert_eq!(events.as_mut().poll_next(&mut cx), Poll::Ready(Some(1)));
    /// cancel.cancel();
    /// assert_eq!(events.as_mut().poll_next(&mut cx), Poll::Ready(None));
    /// ```
    pub fn stream<S: Stream>(&self, stream: S) -> UntilDone<S> {
        UntilDone {
            done: self.done_owned(),
            stream: Some(stream),
        }
    }
}

pin_project! {
    /// The stream returned by [`Ctx::stream`]: the inner stream's items
    /// until the context is done.
    #[must_use = "streams do nothing unless polled"]
    pub struct UntilDone<S> {
        done: DoneOwned,
        // `None` once ended: the inner stream is dropped then.
        #[pin]
        stream: Option<S>,
    }
}

impl<S: Stream> Stream for UntilDone<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<S::Item>> {
        let mut this = self.project();
        let Some(stream) = this.stream.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        if Pin::new(&mut *this.done).poll(cx).is_ready() {
            this.stream.set(None);
            return Poll::Ready(None);
        }
        match stream.poll_next(cx) {
            Poll::Ready(None) => {
                this.stream.set(None);
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.stream {
            // Ends early when the context does: no lower bound.
            Some(stream) => (0, stream.size_hint().1),
            None => (0, Some(0)),
        }
    }
}

impl<S: Stream> FusedStream for UntilDone<S> {
    fn is_terminated(&self) -> bool {
        self.stream.is_none()
    }
}

impl<S> fmt::Debug for UntilDone<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UntilDone")
            .field("done", &self.done)
            .field("ended", &self.stream.is_none())
            .finish()
    }
}
