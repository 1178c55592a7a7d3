//! `Guard`: who ends a request context, and with which shared cause.
//!
//! One guard per request owns the request context's [`CancelFunc`]; it
//! moves from the response future to the response body, and whoever holds
//! it last ends the context: [`Guard::complete`] with
//! [`ResponseComplete`], [`Guard::abandon`] (or a plain drop) with
//! [`RequestAbandoned`]. The request body holds a second handle, used only
//! when the transport reports a failure ([`abandon`]).
//!
//! Every guard ends its context explicitly, so the `CancelFunc`'s own
//! drop afterwards is a no-op and never reports `CancelFuncDropped`.

use std::fmt;
use std::sync::LazyLock;

use super::causes::{AbandonReason, RequestAbandoned, ResponseComplete};
use crate::{CancelFunc, Cause};

/// `ResponseComplete`, made once per process: a request's end allocates
/// nothing for its cause.
static COMPLETE: LazyLock<Cause> = LazyLock::new(|| Cause::new(ResponseComplete));

/// One shared `RequestAbandoned` per reason without a payload.
static FUTURE_DROPPED: LazyLock<Cause> =
    LazyLock::new(|| abandoned_new(AbandonReason::ResponseFutureDropped));
static BODY_DROPPED: LazyLock<Cause> =
    LazyLock::new(|| abandoned_new(AbandonReason::ResponseBodyDropped));
static CONNECTION_CLOSED: LazyLock<Cause> =
    LazyLock::new(|| abandoned_new(AbandonReason::ConnectionClosed));
static BODY_FAILED: LazyLock<Cause> =
    LazyLock::new(|| abandoned_new(AbandonReason::RequestBodyFailed));
static SERVICE_ERROR: LazyLock<Cause> =
    LazyLock::new(|| abandoned_new(AbandonReason::ServiceError));

fn abandoned_new(reason: AbandonReason) -> Cause {
    Cause::new(RequestAbandoned::new(reason))
}

/// `RequestAbandoned` with `reason` as a cause: shared for the common
/// reasons, a new allocation only for a reset with its code (an error
/// path).
fn abandoned_cause(reason: AbandonReason) -> Cause {
    let shared = match reason {
        AbandonReason::ResponseFutureDropped => &FUTURE_DROPPED,
        AbandonReason::ResponseBodyDropped => &BODY_DROPPED,
        AbandonReason::ConnectionClosed => &CONNECTION_CLOSED,
        AbandonReason::RequestBodyFailed => &BODY_FAILED,
        AbandonReason::ServiceError => &SERVICE_ERROR,
        AbandonReason::StreamReset { .. } => return abandoned_new(reason),
    };
    Cause::clone(shared)
}

/// Ends the context of `cancel` as abandoned for `reason`, unless it is
/// already done (the first cancellation wins; the check only skips making
/// a cause that would be discarded).
pub(super) fn abandon(cancel: &CancelFunc, reason: AbandonReason) {
    if !cancel.is_canceled() {
        cancel.cancel_with_shared_cause(abandoned_cause(reason));
    }
}

/// Owns the request context's [`CancelFunc`]. Dropped without
/// [`complete`](Guard::complete) or [`abandon`](Guard::abandon): the
/// handler's future was dropped.
pub(super) struct Guard {
    /// `Some` until `complete`, `abandon` or drop takes it.
    cancel: Option<CancelFunc>,
    /// The request context, whose OpenTelemetry span is told of an early
    /// end (`RequestContextLayer::opentelemetry`), and whether the layer
    /// made that span (and so ends it with the request).
    #[cfg(feature = "opentelemetry")]
    span: Option<(crate::Ctx, bool)>,
}

impl Guard {
    pub(super) fn new(cancel: CancelFunc) -> Self {
        Guard {
            cancel: Some(cancel),
            #[cfg(feature = "opentelemetry")]
            span: None,
        }
    }

    /// Record on `ctx`'s OpenTelemetry span why it ended, if not
    /// `ResponseComplete`.
    #[cfg(feature = "opentelemetry")]
    pub(super) fn record_on(&mut self, ctx: crate::Ctx, owns_span: bool) {
        self.span = Some((ctx, owns_span));
    }

    /// A second handle for the request body, which may end the context
    /// when the transport fails.
    pub(super) fn handle(&self) -> Option<CancelFunc> {
        self.cancel.clone()
    }

    /// The response is complete.
    pub(super) fn complete(mut self) {
        if let Some(cancel) = self.cancel.take() {
            cancel.cancel_with_shared_cause(Cause::clone(&COMPLETE));
        }
        self.ended();
    }

    /// The request was abandoned for `reason`.
    pub(super) fn abandon(mut self, reason: AbandonReason) {
        if let Some(cancel) = self.cancel.take() {
            abandon(&cancel, reason);
        }
        self.ended();
    }

    /// The context has ended: records why on the span, if there is one
    /// and the end was early (whoever ended it: this guard, the request
    /// body, the deadline or the base).
    fn ended(&mut self) {
        #[cfg(feature = "opentelemetry")]
        if let Some((ctx, owns_span)) = self.span.take() {
            use opentelemetry::trace::TraceContextExt;
            let otel = crate::opentelemetry::otel_context(&ctx);
            if !ctx
                .cause()
                .is_some_and(|cause| cause.is::<ResponseComplete>())
            {
                crate::opentelemetry::record_end(&otel, &ctx);
            }
            if owns_span {
                otel.span().end();
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(cancel) = self.cancel.take() {
            abandon(&cancel, AbandonReason::ResponseFutureDropped);
        }
        self.ended();
    }
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("cancel", &self.cancel)
            .finish_non_exhaustive()
    }
}
