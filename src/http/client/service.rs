//! `Propagate`: the client service that checks each request's context,
//! writes its headers and races the call with it.

use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::PropagateBody;
use super::error::PropagateError;
use super::future::PropagateFuture;
#[cfg(doc)]
use super::layer::PropagateLayer;
use super::outgoing::prepare;
use crate::Ctx;

/// The [`Service`] made by [`PropagateLayer`]; see there.
///
/// The inner client is called with the request body wrapped in a
/// [`PropagateBody`], so a hyper-util client behind it is built for
/// that body type. Built for the plain body instead
/// (`Client<HttpConnector, String>`), the client is not a service of the
/// wrapped requests, and the compiler says only that "the method `ready`
/// (or `call`) exists for `Propagate<Client<HttpConnector, String>>`, but
/// its trait bounds were not satisfied".
///
/// # Examples
///
/// ```
/// use goctx::http::PropagateBody;
/// use tower::Layer;
///
/// let hyper = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
///     .build_http::<PropagateBody<String>>();
/// let client = goctx::http::PropagateLayer::new().layer(hyper);
/// # let _ = client;
/// ```
#[derive(Clone, Debug)]
pub struct Propagate<S> {
    pub(super) inner: S,
    pub(super) grpc_timeout_for_http: bool,
    /// `PropagateLayer::opentelemetry`.
    pub(super) otel: bool,
}

impl<S> Propagate<S> {
    /// The wrapped client.
    ///
    /// See the type's example.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped client, unwrapped.
    ///
    /// See the type's example.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Propagate<S>
where
    S: Service<Request<PropagateBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body,
{
    type Response = Response<PropagateBody<ResBody>>;
    type Error = PropagateError<S::Error>;
    type Future = PropagateFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(PropagateError::Inner)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let Some(ctx) = req.extensions().get::<Ctx>().cloned() else {
            let req = req.map(PropagateBody::new);
            return PropagateFuture::start(self.inner.call(req), None);
        };
        match prepare(
            &ctx,
            req.headers_mut(),
            self.grpc_timeout_for_http,
            None,
            self.otel,
        ) {
            // The inner service is not called: no connection, no request.
            Err((err, cause)) => PropagateFuture {
                inner: None,
                done: None,
                ctx: None,
                failed: Some(PropagateError::Context { err, cause }),
            },
            Ok(_) => {
                let req = req.map(|body| PropagateBody::watched(body, Some(&ctx)));
                PropagateFuture::start(self.inner.call(req), Some(ctx))
            }
        }
    }
}
