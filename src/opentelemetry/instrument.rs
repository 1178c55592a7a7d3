//! `Instrumented`: a future polled with a context's OpenTelemetry
//! context current.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::context::otel_context;
use crate::Ctx;

pin_project! {
    /// A future that makes its OpenTelemetry context current
    /// ([`opentelemetry::Context::attach`]) for every poll and detaches it
    /// before returning, as OpenTelemetry's `FutureExt::with_context` does.
    /// Made by [`instrument`].
    ///
    /// OpenTelemetry's current context is a thread-local: a plain future
    /// sees it at the first poll and has lost it at the next, on another
    /// worker thread or after another task ran on this one. Wrapped, every
    /// span started inside (by your code, `tracing` with
    /// tracing-opentelemetry, or a client library) has the right parent.
    ///
    /// # Cancel safety
    ///
    /// As the inner future's: dropping this drops it.
    #[must_use = "futures do nothing unless polled"]
    pub struct Instrumented<F> {
        otel: opentelemetry::Context,
        #[pin]
        inner: F,
    }
}

/// `future`, polled with `ctx`'s OpenTelemetry context
/// ([`otel_context`]) current. Compose it with the rest of goctx as any
/// future: `ctx.run(instrument(&ctx, f))`,
/// `tokio::spawn(ctx.run_owned(instrument(&ctx, f)))`, a group's task,
/// an `after_func_async` body.
///
/// # Examples
///
/// ```
/// use opentelemetry::trace::TraceContextExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let ctx = goctx::with_value(&goctx::background(), goctx::propagation::TraceContext::new_root());
/// let trace_id = ctx.value::<goctx::propagation::TraceContext>().unwrap().trace_id();
/// let seen = tokio::spawn(ctx.run_owned(goctx::opentelemetry::instrument(&ctx, async {
///     tokio::task::yield_now().await;
///     opentelemetry::Context::current().span().span_context().trace_id()
/// })))
/// .await
/// .unwrap()
/// .unwrap();
/// assert_eq!(seen.to_bytes(), trace_id);
/// # }
/// ```
pub fn instrument<F: Future>(ctx: &Ctx, future: F) -> Instrumented<F> {
    Instrumented {
        otel: otel_context(ctx),
        inner: future,
    }
}

impl<F> Instrumented<F> {
    /// The OpenTelemetry context it makes current.
    pub fn otel_context(&self) -> &opentelemetry::Context {
        &self.otel
    }
}

impl<F: Future> Future for Instrumented<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _current = this.otel.clone().attach();
        this.inner.poll(cx)
    }
}

impl<F> fmt::Debug for Instrumented<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instrumented")
            .field("otel", &self.otel)
            .finish_non_exhaustive()
    }
}
