//! The service's HTTP API: routes, request checks and answers.
//!
//! | route | answer |
//! |---|---|
//! | `POST /runs[?wait=true]` | `201` `{id, request_id, trace_id}`, or the finished run |
//! | `GET /runs`, `GET /runs/{id}` | runs, newest first; one run (`404` if unknown) |
//! | `DELETE /runs/{id}` | `202`, the run (`"state": "cancel_requested"`), its context canceled: "canceled via API" |
//! | `GET /metrics` | Prometheus text |
//! | `GET /events` | server-sent events: `run` and `task` |
//! | `GET /` | the dashboard |
//!
//! Errors are JSON, `{"error": "...", "field": "..."}`: `400` for a bad
//! body (naming the field), `404`, `413` over [`MAX_BODY`], `415` for a
//! body that is not `application/json`, `405` (with `allow`) for a
//! method a route does not take, `503` while shutting down.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;
use goctx::Ctx;
use goctx::http::{RequestContextLayer, RequestId, TraceContext};
use http_body_util::{BodyExt, Limited};
use tokio::sync::{broadcast, watch};

use super::RunDefaults;
use super::body::{self, PeerPolicy};
use super::remote::{Remote, X_RUN_ID};
use super::runs::{CancelResult, Ids, Runs};
use crate::run::Executor;

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;
/// Longest cause a caller may give in `DELETE /runs/{id}`.
const MAX_CAUSE: usize = 256;

/// Everything the handlers share.
pub struct App {
    pub runs: Arc<Runs>,
    /// The base of every request's and run's context; canceled with
    /// "server shutting down" when the grace period is over.
    pub base: Ctx,
    pub defaults: RunDefaults,
    pub peers: PeerPolicy,
    pub client: super::remote::HttpClient,
    /// Set once a shutdown has begun: no new runs, live feeds end.
    pub draining: watch::Receiver<bool>,
    pub next_run: AtomicU64,
    /// Logs for this instance's runs are told apart by this prefix.
    pub instance: String,
}

pub fn router(app: Arc<App>) -> Router {
    let routes = Router::new()
        .route("/", get(super::dashboard::page))
        .route("/runs", get(list_runs).post(create_run))
        .route("/runs/{id}", get(get_run).delete(cancel_run))
        .route("/metrics", get(metrics))
        .route("/events", get(events))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .layer(RequestContextLayer::new(&app.base))
        .with_state(app);
    // Around the whole router: axum adds a 405's `allow` header outside
    // any layer of the routes themselves.
    Router::new()
        .fallback_service(routes)
        .layer(middleware::from_fn(method_not_allowed))
}

/// An error answer: `{"error": ..., "field": ...}`.
pub struct ApiError {
    status: StatusCode,
    field: Option<String>,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            field: None,
            message: message.into(),
        }
    }

    fn field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "field": self.field });
        (self.status, Json(body)).into_response()
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route")
}

/// A method a route does not take: axum answers `405` with the route's
/// methods in `allow` and no body; this gives it the JSON error every
/// other answer has, `allow` kept.
async fn method_not_allowed(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let res = next.run(req).await;
    if res.status() != StatusCode::METHOD_NOT_ALLOWED {
        return res;
    }
    let (mut parts, _) = res.into_parts();
    let allowed = parts
        .headers
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(", ");
    let mut answer = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed here; this route takes {allowed}"),
    )
    .field("method")
    .into_response();
    // The other headers (`allow`, `x-request-id`) stay; the body's are new.
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    answer.headers_mut().extend(parts.headers);
    answer
}

/// `415` unless the body is JSON; an empty body passes when `empty_ok`.
fn require_json(headers: &HeaderMap, empty_ok: bool) -> Result<(), ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    let empty = headers
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() == b"0")
        || (!headers.contains_key(header::CONTENT_LENGTH)
            && !headers.contains_key(header::TRANSFER_ENCODING));
    if json || (empty_ok && empty) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON, with content-type: application/json",
        )
        .field("content-type"))
    }
}

/// The body, at most [`MAX_BODY`] bytes (`413` otherwise).
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY} bytes"),
        )
        .field("body")
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("cannot read the body: {e}"),
        )
        .field("body")),
    }
}

/// `wait=true|false|1|0` from the query; other parameters are ignored.
fn wait_param(uri: &Uri) -> Result<bool, ApiError> {
    let mut wait = false;
    for pair in uri.query().unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, "true"));
        if key == "wait" {
            wait = match value {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "wait must be true or false",
                    )
                    .field("wait"));
                }
            };
        }
    }
    Ok(wait)
}

fn request_ids(ctx: &Ctx) -> (RequestId, TraceContext) {
    let request_id = ctx
        .value::<RequestId>()
        .cloned()
        .unwrap_or_else(RequestId::generate);
    let trace = ctx
        .value::<TraceContext>()
        .cloned()
        .unwrap_or_else(TraceContext::new_root);
    (request_id, trace)
}

/// A run id chosen by the caller (a peer that will want to cancel it).
fn chosen_run_id(headers: &HeaderMap, runs: &Runs) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(X_RUN_ID) else {
        return Ok(None);
    };
    let id = value
        .to_str()
        .ok()
        .filter(|id| {
            (1..=128).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "x-run-id must be 1-128 letters, digits, '-', '_' or '.'",
            )
            .field(X_RUN_ID)
        })?;
    if runs.contains(id) {
        return Err(
            ApiError::new(StatusCode::CONFLICT, "a run with this id exists").field(X_RUN_ID),
        );
    }
    Ok(Some(id.to_owned()))
}

async fn create_run(
    State(app): State<Arc<App>>,
    ctx: Ctx,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Result<Response, ApiError> {
    require_json(&headers, false)?;
    let wait = wait_param(&uri)?;
    // Read the whole body first: a client that leaves is then seen at once.
    let bytes = read_body(&headers, body).await?;
    let request = body::parse(
        &bytes,
        &app.defaults.tasks,
        app.defaults.time_scale,
        &app.peers,
    )
    .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.message).field(e.field))?;
    let run_id = match chosen_run_id(&headers, &app.runs)? {
        Some(id) => id,
        None => format!(
            "{}-{}",
            app.instance,
            app.next_run.fetch_add(1, Ordering::Relaxed) + 1
        ),
    };
    if *app.draining.borrow() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server shutting down",
        ));
    }
    let (request_id, trace) = request_ids(&ctx);
    let executor: Option<Arc<dyn Executor>> = (!request.peers.is_empty()).then(|| {
        Arc::new(Remote {
            client: app.client.clone(),
            run_id: run_id.clone(),
            peers: request.peers.clone(),
        }) as Arc<dyn Executor>
    });
    let peers: HashMap<String, String> = request
        .peers
        .iter()
        .map(|(id, p)| (id.clone(), p.url.clone()))
        .collect();
    // ?wait=true: the run is part of this request, and ends with it.
    let parent = if wait { &ctx } else { &app.base };
    app.runs.start(
        parent,
        Ids {
            run_id: run_id.clone(),
            request_id: request_id.clone(),
            trace: trace.clone(),
        },
        app.defaults.config.clone(),
        app.defaults.run_timeout,
        request.tasks,
        peers,
        executor,
    );
    if wait {
        let record = app.runs.finished(&run_id).await;
        return Ok((StatusCode::CREATED, Json(record)).into_response());
    }
    let created = serde_json::json!({
        "id": run_id,
        "request_id": request_id.as_str(),
        "trace_id": trace.trace_id_hex(),
    });
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn list_runs(State(app): State<Arc<App>>) -> Response {
    Json(app.runs.list()).into_response()
}

async fn get_run(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    app.runs
        .get(&id)
        .map(|record| Json(record).into_response())
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no run with this id").field("id"))
}

async fn cancel_run(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_json(&headers, true)?;
    let bytes = read_body(&headers, body).await?;
    let mut cause = "canceled via API".to_owned();
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")).field("body")
        })?;
        match doc.get("cause") {
            None => {}
            // A caller's own cause (a peer passing on why its run ended).
            Some(serde_json::Value::String(given))
                if !given.trim().is_empty() && given.chars().count() <= MAX_CAUSE =>
            {
                cause = given.clone();
            }
            Some(_) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("cause must be a string of 1 to {MAX_CAUSE} characters"),
                )
                .field("cause"));
            }
        }
    }
    match app.runs.cancel(&id, cause) {
        CancelResult::Canceled(record) | CancelResult::AlreadyFinished(record) => {
            Ok((StatusCode::ACCEPTED, Json(record)).into_response())
        }
        CancelResult::Unknown => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "no run with this id").field("id"))
        }
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.runs.metrics.encode(),
    )
        .into_response()
}

/// `GET /events`: every change to a run or task as it happens. Events:
/// `run` (a whole run record: created, finished) and `task` (`{run_id,
/// task}`, a task record without its subtasks). `resync` tells a client
/// that fell behind to fetch `GET /runs` again. The stream ends when the
/// client leaves or the server begins to shut down.
async fn events(
    State(app): State<Arc<App>>,
    ctx: Ctx,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let feed = app.runs.subscribe();
    let draining = app.draining.clone();
    let state = (feed, draining, ctx, false);
    let stream = futures::stream::unfold(
        state,
        |(mut feed, mut draining, ctx, ended)| async move {
            if ended {
                return None;
            }
            let event = tokio::select! {
                received = feed.recv() => match received {
                    Ok(published) => SseEvent::default().event(published.event).data(published.data),
                    Err(broadcast::error::RecvError::Lagged(_)) => SseEvent::default().event("resync").data("{}"),
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = draining.wait_for(|d| *d) => {
                    SseEvent::default().event("shutdown").data("{}")
                }
                _ = ctx.done() => return None,
            };
            let last = *draining.borrow();
            Some((Ok(event), (feed, draining, ctx, last)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Per request: the metrics by route and status, and one log line with the
/// request and trace ids (reading the id here is what makes
/// `RequestContextLayer` echo it in `x-request-id`).
async fn observe(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = req.method().clone();
    let ctx = req.extensions().get::<Ctx>().cloned();
    let (request_id, trace) = ctx.as_ref().map(request_ids).unzip();
    let res = next.run(req).await;
    let status = res.status().as_u16();
    app.runs.metrics.http_request(&route, status);
    let request_id = request_id.map_or_else(|| "-".to_owned(), |id| id.as_str().to_owned());
    let trace_id = trace.map_or_else(|| "-".to_owned(), |t| t.trace_id_hex());
    tracing::info!(
        %request_id,
        %trace_id,
        method = %method,
        route = %route,
        status,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "http request"
    );
    res
}

/// Flags the shutdown for handlers and live feeds.
pub fn draining() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(false)
}
