//! `RequestContext`: the service that makes each request's context and
//! hands it, with the request, to the inner service.

#[cfg(feature = "axum")]
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::future::{Echo, RequestContextFuture};
use super::guard::Guard;
use super::inbound::{Inbound, min_timeout};
use super::layer::Config;
#[cfg(doc)]
use super::layer::RequestContextLayer;
use super::request_body::RequestBody;
use super::response_body::RequestContextBody;
use super::values::{PeerAddr, RequestExtra};
use crate::propagation::values::{LazyRequestId, Values};
use crate::propagation::{RequestId, TraceContext};

/// The [`Service`] made by [`RequestContextLayer`]; see there.
///
/// # Examples
///
/// Wrapping a service by hand (`Router::layer` does this for axum):
///
/// ```
/// use tower::Layer;
///
/// let layer = goctx::http::RequestContextLayer::new(&goctx::background());
/// let service: goctx::http::RequestContext<axum::Router> = layer.layer(axum::Router::new());
/// # let _ = service;
/// ```
#[derive(Clone, Debug)]
pub struct RequestContext<S> {
    pub(super) inner: S,
    pub(super) config: Arc<Config>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestContext<S>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body,
    ResBody: Body,
{
    type Response = Response<RequestContextBody<ResBody>>;
    type Error = S::Error;
    type Future = RequestContextFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        // One pass over the headers instead of a hashed lookup per name:
        // cheaper for the few headers a request usually has.
        let inbound = Inbound::scan(req.headers());
        let grpc = inbound.grpc;
        let head = req.method() == Method::HEAD;
        let peer_timeout = match inbound.timeout(grpc) {
            Ok(timeout) => timeout,
            Err(err) => {
                let msg = format!("malformed grpc-timeout: {err}");
                let (_, cancel) = crate::with_cancel_cause(&config.base);
                return RequestContextFuture::early(msg, Guard::new(cancel));
            }
        };
        // One node: the request's own, with the deadline if it has one
        // (rather than a deadline child of it: a node fewer per request).
        let (mut ctx, cancel) = match min_timeout(peer_timeout, config.max_timeout) {
            Some(timeout) => crate::with_timeout(&config.base, timeout),
            None => crate::with_cancel_cause(&config.base),
        };
        #[cfg(feature = "opentelemetry")]
        let otel = config.opentelemetry.as_deref().map(|tracer| {
            super::otel::server_context(
                tracer,
                req.method(),
                req.uri(),
                req.headers(),
                inbound.traceparent,
                config.restart_trace,
            )
        });
        #[cfg(not(feature = "opentelemetry"))]
        let otel: Option<((), TraceContext, bool)> = None;
        #[cfg_attr(not(feature = "opentelemetry"), allow(unused_mut))]
        let mut guard = Guard::new(cancel);
        let (otel, trace, owns_span) = match otel {
            Some((otel, trace, owned)) => (Some(otel), trace, owned),
            None if config.restart_trace => (None, TraceContext::new_root(), false),
            None => (
                None,
                TraceContext::from_parent_header(inbound.traceparent, req.headers()),
                false,
            ),
        };
        #[cfg(not(feature = "opentelemetry"))]
        let _ = owns_span;
        #[cfg(feature = "axum")]
        let peer = req
            .extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|info| PeerAddr(info.0));
        #[cfg(not(feature = "axum"))]
        let peer: Option<PeerAddr> = None;
        // The client's id if valid; otherwise one is made when first read.
        let inbound_id = inbound
            .request_id
            .and_then(|v| v.to_str().ok())
            .and_then(RequestId::parse);
        // What to echo: `None` when off; the client's own value, shared
        // rather than copied; or (`Some(None)`) the id made, if it is.
        let echo = config
            .echo_request_id
            .then(|| inbound_id.as_ref().and(inbound.request_id).cloned());
        let id = LazyRequestId(inbound_id.map_or_else(OnceLock::new, OnceLock::from));
        // One node for the three values (as three `with_value`s would read).
        let extra = RequestExtra {
            peer,
            #[cfg(feature = "opentelemetry")]
            otel: otel.map(crate::opentelemetry::Carried),
        };
        #[cfg(not(feature = "opentelemetry"))]
        let _ = otel;
        ctx = Values { id, trace, extra }.attach(&ctx);
        #[cfg(feature = "opentelemetry")]
        if config.opentelemetry.is_some() {
            guard.record_on(ctx.clone(), owns_span);
        }
        let echo = match echo {
            None => Echo::Off,
            Some(Some(value)) => Echo::Inbound(value),
            Some(None) => Echo::Made(ctx.clone()),
        };
        let deadline =
            (config.enforce_deadline && ctx.deadline().is_some()).then(|| ctx.done_owned());
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(ctx);
        let body = RequestBody::new(body, || guard.handle());
        RequestContextFuture {
            inner: Some(self.inner.call(Request::from_parts(parts, body))),
            early: None,
            deadline,
            grpc,
            head,
            echo,
            guard: Some(guard),
        }
    }
}
