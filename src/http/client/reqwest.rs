//! `RequestBuilderExt`: a request context for reqwest calls.
//!
//! reqwest's `RequestBuilder` has no hook for middleware, so
//! [`PropagateLayer`](crate::http::PropagateLayer) cannot reach it;
//! `.context(&ctx)` wraps the builder instead, and its `send()` does the
//! layer's work with reqwest's own calls.

use std::fmt;
use std::future::Future;
use std::ops::Deref;

use bytes::Bytes;

use super::error::PropagateError;
use super::outgoing::prepare;
use crate::Ctx;

/// `.context(&ctx)` on a reqwest request: the call sends the context's
/// deadline, trace and request id, fails fast if the context is done, and
/// ends when the context does. Go: `http.NewRequestWithContext`.
///
/// Sealed: implemented for [`reqwest::RequestBuilder`] only.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use goctx::http::RequestBuilderExt;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let http = reqwest::Client::new();
/// let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), Duration::from_secs(2));
/// let resp = http.get("http://127.0.0.1:3000/").context(&ctx).send().await?;
/// let body = resp.text().await?; // also ends when `ctx` does
/// # let _ = body; Ok(()) }
/// ```
pub trait RequestBuilderExt: sealed::Sealed {
    /// Binds `ctx` to this request; see [`ContextRequestBuilder`].
    ///
    /// See the trait's example.
    fn context(self, ctx: &Ctx) -> ContextRequestBuilder;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for ::reqwest::RequestBuilder {}
}

impl RequestBuilderExt for ::reqwest::RequestBuilder {
    fn context(self, ctx: &Ctx) -> ContextRequestBuilder {
        ContextRequestBuilder {
            builder: self,
            ctx: ctx.clone(),
            grpc_timeout_for_http: false,
        }
    }
}

/// A reqwest request bound to a [`Ctx`], made by
/// [`RequestBuilderExt::context`]; [`send`](Self::send) it.
///
/// The headers and rules are [`PropagateLayer`](crate::http::PropagateLayer)'s:
/// `grpc-timeout` on gRPC requests (and with
/// [`grpc_timeout_for_http`](Self::grpc_timeout_for_http) on all),
/// `traceparent`/`tracestate` and `x-request-id` from the context's
/// values, and headers the caller set win (a `grpc-timeout` only if it is
/// no longer than the time left). `grpc-timeout` carries the shortest
/// budget the call enforces: the context's time left, or the request's
/// own [`timeout`](reqwest::RequestBuilder::timeout) if that is shorter.
///
/// `.context()` only ever shortens what reqwest would do on its own: a
/// client-wide timeout (`ClientBuilder::timeout`) still applies, and a
/// per-request timeout is lowered to the time left, so reqwest then stops
/// at the deadline on its own, body reads included, even through
/// [`ContextResponse::into_inner`]. (The client-wide timeout is not
/// readable, so it cannot be put in `grpc-timeout`; set it per request
/// to have it sent.)
///
/// # Examples
///
/// ```
/// use goctx::http::RequestBuilderExt;
///
/// let (ctx, _cancel) = goctx::with_cancel(&goctx::background());
/// let req = reqwest::Client::new().get("http://127.0.0.1:1/").context(&ctx);
/// println!("{req:?}"); // send it with `req.send().await?`
/// ```
#[must_use = "a request does nothing until it is sent"]
pub struct ContextRequestBuilder {
    builder: ::reqwest::RequestBuilder,
    ctx: Ctx,
    grpc_timeout_for_http: bool,
}

impl ContextRequestBuilder {
    /// Whether to send `grpc-timeout` on plain HTTP requests too; off by
    /// default. See [`PropagateLayer::grpc_timeout_for_http`](crate::http::PropagateLayer::grpc_timeout_for_http).
    ///
    /// # Examples
    ///
    /// ```
    /// use goctx::http::RequestBuilderExt;
    ///
    /// let req = reqwest::Client::new()
    ///     .get("http://127.0.0.1:1/")
    ///     .context(&goctx::background())
    ///     .grpc_timeout_for_http(true);
    /// # drop(req);
    /// ```
    pub fn grpc_timeout_for_http(mut self, on: bool) -> Self {
        self.grpc_timeout_for_http = on;
        self
    }

    /// Sends the request, racing it with the context.
    ///
    /// If the context is already done (or its deadline passed) nothing is
    /// sent and no connection is made. If the context ends before the
    /// response's head arrives, reqwest's future is dropped (its
    /// connection closed) and the error is the context's.
    ///
    /// An async fn rather than a named future: reqwest's own future has
    /// no name to hold it by.
    ///
    /// # Errors
    ///
    /// [`PropagateError::Context`] with the context's error and cause;
    /// [`PropagateError::Inner`] with reqwest's error (a builder error
    /// comes first, before the context is looked at). A reqwest timeout
    /// at the context's deadline is `Context` with `DeadlineExceeded`.
    ///
    /// # Examples
    ///
    /// ```
    /// use goctx::http::RequestBuilderExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    /// cancel.cancel();
    /// let err = reqwest::Client::new().get("http://127.0.0.1:1/").context(&ctx).send().await.unwrap_err();
    /// assert_eq!(err.ctx_err(), Some(goctx::Error::Canceled));
    /// # }
    /// ```
    pub async fn send(self) -> Result<ContextResponse, PropagateError<::reqwest::Error>> {
        let (client, request) = self.builder.build_split();
        let mut request = request.map_err(PropagateError::Inner)?;
        let ctx = self.ctx;
        let own = request.timeout().copied();
        let remaining = prepare(
            &ctx,
            request.headers_mut(),
            self.grpc_timeout_for_http,
            own,
            false,
        )
        .map_err(|(err, cause)| PropagateError::Context { err, cause })?;
        // Only ever shorten what reqwest would do on its own: a request
        // timeout of its own is lowered to the time left; without one the
        // client-wide timeout stays in force (a per-request timeout would
        // replace it, and the client's is not readable to compare).
        if let (Some(left), Some(own)) = (remaining, own) {
            *request.timeout_mut() = Some(own.min(left));
        }
        let inner = race(&ctx, client.execute(request)).await?;
        Ok(ContextResponse { inner, ctx })
    }
}

impl fmt::Debug for ContextRequestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextRequestBuilder")
            .field("builder", &self.builder)
            .field("ctx", &self.ctx)
            .field("grpc_timeout_for_http", &self.grpc_timeout_for_http)
            .finish()
    }
}

/// `future` raced with `ctx`: the context wins ties, and a reqwest error
/// seen once the context is done (or its deadline passed: a per-request
/// timeout was lowered to it) is the context's.
async fn race<T>(
    ctx: &Ctx,
    future: impl Future<Output = Result<T, ::reqwest::Error>>,
) -> Result<T, PropagateError<::reqwest::Error>> {
    match ctx.run(future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(PropagateError::or_ctx(ctx, e)),
        Err(err) => Err(
            PropagateError::from_ctx(ctx).unwrap_or(PropagateError::Context {
                err,
                cause: err.into_cause(),
            }),
        ),
    }
}

/// A reqwest [`Response`](reqwest::Response) whose body reads race the
/// request's context: [`bytes`](Self::bytes), [`text`](Self::text) and
/// [`chunk`](Self::chunk) fail with the context's error as soon as it
/// ends. `bytes` and `text` consume the response, so the body is dropped
/// then and reqwest closes the connection; after `chunk` fails, that
/// happens when the `ContextResponse` is dropped.
///
/// Everything else of reqwest's `Response` that borrows it (`status()`,
/// `headers()`, `url()`, ...) is reached through `Deref`.
///
/// # Examples
///
/// ```no_run
/// use goctx::http::RequestBuilderExt;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (ctx, _cancel) = goctx::with_cancel(&goctx::background());
/// let mut resp = reqwest::Client::new().get("http://127.0.0.1:3000/events").context(&ctx).send().await?;
/// println!("{}", resp.status());
/// while let Some(chunk) = resp.chunk().await? {
///     println!("{} bytes", chunk.len());
/// }
/// # Ok(()) }
/// ```
pub struct ContextResponse {
    inner: ::reqwest::Response,
    ctx: Ctx,
}

impl ContextResponse {
    /// The request's context.
    ///
    /// See the type's example (for all of its methods).
    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    /// reqwest's response, no longer raced with the context (reqwest's
    /// own timeouts still apply, a per-request one lowered to the
    /// deadline).
    pub fn into_inner(self) -> ::reqwest::Response {
        self.inner
    }

    /// The whole body, unless the context ends first.
    ///
    /// # Errors
    ///
    /// As [`send`](ContextRequestBuilder::send), and reqwest's body errors.
    pub async fn bytes(self) -> Result<Bytes, PropagateError<::reqwest::Error>> {
        race(&self.ctx, self.inner.bytes()).await
    }

    /// The whole body as text (decoded as reqwest does), unless the
    /// context ends first.
    ///
    /// # Errors
    ///
    /// As [`bytes`](Self::bytes).
    pub async fn text(self) -> Result<String, PropagateError<::reqwest::Error>> {
        race(&self.ctx, self.inner.text()).await
    }

    /// The next chunk of the body (`None` at its end), unless the context
    /// ends first.
    ///
    /// # Errors
    ///
    /// As [`bytes`](Self::bytes). After a context error the body is gone:
    /// later calls return the same error.
    ///
    /// # Cancel safety
    ///
    /// As reqwest's `chunk`: dropping the call loses no data.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, PropagateError<::reqwest::Error>> {
        race(&self.ctx, self.inner.chunk()).await
    }

    /// reqwest's `error_for_status`: `Err` for a 4xx or 5xx status.
    ///
    /// # Errors
    ///
    /// reqwest's status error.
    pub fn error_for_status(self) -> Result<Self, ::reqwest::Error> {
        let ContextResponse { inner, ctx } = self;
        Ok(ContextResponse {
            inner: inner.error_for_status()?,
            ctx,
        })
    }
}

impl Deref for ContextResponse {
    type Target = ::reqwest::Response;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl fmt::Debug for ContextResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextResponse")
            .field("inner", &self.inner)
            .field("ctx", &self.ctx)
            .finish()
    }
}
