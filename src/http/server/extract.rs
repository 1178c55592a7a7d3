//! axum extractors for the request context and its values.

use std::convert::Infallible;
use std::fmt;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::Ctx;
use crate::propagation::{RequestId, TraceContext};

/// The rejection of the [`Ctx`], [`RequestId`] and [`TraceContext`]
/// extractors when the request has no context: the router lacks
/// [`RequestContextLayer`](crate::http::RequestContextLayer).
///
/// Answers 500 Internal Server Error with a plain-text body naming the
/// layer. There is no fallback to [`background()`](crate::background):
/// that would hide the misconfiguration and give handlers a context that
/// never ends.
///
/// # Examples
///
/// ```
/// use axum::response::IntoResponse;
/// use goctx::http::MissingRequestContext;
///
/// let res = MissingRequestContext.into_response();
/// assert_eq!(res.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
/// assert!(MissingRequestContext.to_string().contains("RequestContextLayer"));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MissingRequestContext;

impl fmt::Display for MissingRequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "no goctx::Ctx in the request extensions: \
             add goctx::http::RequestContextLayer to the router (Router::layer)",
        )
    }
}

impl std::error::Error for MissingRequestContext {}

impl IntoResponse for MissingRequestContext {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

/// The request's context, put there by
/// [`RequestContextLayer`](crate::http::RequestContextLayer).
///
/// Rejects with [`MissingRequestContext`] (500) without the layer; take
/// `Option<Ctx>` to accept both.
///
/// # Examples
///
/// ```
/// use axum::{Router, routing::get};
///
/// async fn handler(ctx: goctx::Ctx) -> String {
///     let id = ctx.value::<goctx::http::RequestId>().map(|id| id.to_string());
///     format!("request {}", id.unwrap_or_default())
/// }
///
/// let app: Router = Router::new()
///     .route("/", get(handler))
///     .layer(goctx::http::RequestContextLayer::new(&goctx::background()));
/// # let _ = app;
/// ```
impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = MissingRequestContext;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Ctx>()
            .cloned()
            .ok_or(MissingRequestContext)
    }
}

/// `Option<Ctx>`: the request's context if the layer is there, `None`
/// otherwise; never rejects.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Ctx {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Ctx>().cloned())
    }
}

/// The request's [`RequestId`], from its context; same as
/// `ctx.value::<RequestId>()`. Rejects with [`MissingRequestContext`]
/// without the layer.
///
/// # Examples
///
/// ```
/// use axum::{Router, routing::get};
/// use goctx::http::RequestId;
///
/// async fn handler(id: RequestId) -> String {
///     id.to_string()
/// }
///
/// let app: Router = Router::new()
///     .route("/", get(handler))
///     .layer(goctx::http::RequestContextLayer::new(&goctx::background()));
/// # let _ = app;
/// ```
impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = MissingRequestContext;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Ctx>()
            .and_then(|ctx| ctx.value::<RequestId>().cloned())
            .ok_or(MissingRequestContext)
    }
}

/// The request's [`TraceContext`], from its context; same as
/// `ctx.value::<TraceContext>()`. Rejects with [`MissingRequestContext`]
/// without the layer.
///
/// # Examples
///
/// ```
/// use axum::{Router, routing::get};
/// use goctx::http::TraceContext;
///
/// async fn handler(trace: TraceContext) -> String {
///     trace.trace_id_hex()
/// }
///
/// let app: Router = Router::new()
///     .route("/", get(handler))
///     .layer(goctx::http::RequestContextLayer::new(&goctx::background()));
/// # let _ = app;
/// ```
impl<S: Send + Sync> FromRequestParts<S> for TraceContext {
    type Rejection = MissingRequestContext;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Ctx>()
            .and_then(|ctx| ctx.value::<TraceContext>().cloned())
            .ok_or(MissingRequestContext)
    }
}
