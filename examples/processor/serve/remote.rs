//! Remote tasks: a task with a `peer` runs as a one-task run on that peer,
//! `POST /runs?wait=true`, through goctx's client layer. The call carries
//! the task's deadline (`grpc-timeout`), the request id and the trace, so
//! the peer's run lives in the same context tree, across the wire.
//!
//! While the call is in flight, the peer's run is read every
//! [`POLL_EVERY`] (`GET /runs/{id}`, the id the caller chose) and its
//! task's progress reported here as the task's own: progress comes from
//! where the work runs. The reads stop when the call ends.
//!
//! When the task's context is canceled (DELETE, the server's shutdown, a
//! failed sibling), the peer first hears why (`DELETE /runs/{id}` with the
//! cause, so its record says the same), then the call is dropped, which
//! the peer's `RequestContextLayer` also sees. A deadline needs no
//! message: the peer has the same one.

use std::collections::HashMap;
use std::time::Duration;

use goctx::Ctx;
use goctx::http::{PropagateBody, PropagateError, PropagateLayer, with_context};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower::{Service, ServiceBuilder, ServiceExt};

use super::body::PeerTask;
use crate::run::retry::TaskError;
use crate::run::task::Task;
use crate::run::{Executor, Progress, Work};

/// The header that names the run a caller creates on its peer, so it can
/// cancel that run with a cause.
pub const X_RUN_ID: &str = "x-run-id";

/// How often a remote task's progress is read from its peer.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// The longest one read may take; a slower one is given up (the next
/// tick tries again).
const POLL_TIMEOUT: Duration = Duration::from_secs(1);

/// Request bodies are `String`s, watched by their context through
/// `PropagateLayer`.
pub type HttpClient = Client<HttpConnector, PropagateBody<String>>;

/// A plain HTTP/1 client on the runtime; shared by all runs.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// The executor of one run's remote tasks.
pub struct Remote {
    pub client: HttpClient,
    pub run_id: String,
    /// By task id.
    pub peers: HashMap<String, PeerTask>,
}

impl Executor for Remote {
    fn work(&self, ctx: &Ctx, task: &Task, attempt: u32, progress: Progress) -> Option<Work> {
        let peer = self.peers.get(&task.id)?.clone();
        // Ids are the run's and a counter: never user text in a URL.
        let index = self.peers.keys().filter(|k| **k < task.id).count();
        let remote_id = format!("{}-r{index}-a{attempt}", self.run_id);
        Some(Box::pin(call(
            self.client.clone(),
            ctx.clone(),
            peer,
            remote_id,
            progress,
        )))
    }
}

async fn call(
    client: HttpClient,
    ctx: Ctx,
    peer: PeerTask,
    remote_id: String,
    progress: Progress,
) -> Result<(), TaskError> {
    // The call's own context: the task's values and deadline, but canceled
    // only here, after the peer was told why.
    let (call_ctx, stop_call) = goctx::with_cancel_cause(&goctx::without_cancel(&ctx));
    let (call_ctx, _deadline) = match ctx.deadline() {
        Some(at) => {
            let (c, d) = goctx::with_deadline(&call_ctx, at);
            (c, Some(d))
        }
        None => (call_ctx, None),
    };
    let body = serde_json::json!({ "tasks": [peer.task] }).to_string();
    let url = format!("{}/runs?wait=true", peer.url);
    let req = http::Request::post(&url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(X_RUN_ID, &remote_id)
        .body(body)
        .map_err(|e| TaskError::Failed(format!("bad request to peer: {e}")))?;
    let mut service = ServiceBuilder::new()
        .layer(PropagateLayer::new().grpc_timeout_for_http(true))
        .service(client.clone());
    let exchange = async {
        let ready = service.ready().await.map_err(failure)?;
        let res = ready
            .call(with_context(req, &call_ctx))
            .await
            .map_err(failure)?;
        let status = res.status();
        let bytes = res.into_body().collect().await.map_err(failure)?.to_bytes();
        Ok((status, bytes))
    };
    tokio::pin!(exchange);
    let outcome = tokio::select! {
        outcome = &mut exchange => outcome,
        never = follow_progress(&client, &peer.url, &remote_id, &progress) => match never {},
        _ = ctx.done() => {
            let err = ctx.err().unwrap_or(goctx::Error::Canceled);
            if err == goctx::Error::Canceled {
                let cause = ctx.cause().map_or_else(|| err.to_string(), |c| c.to_string());
                tell_peer(&client, &peer.url, &remote_id, &cause).await;
                stop_call.cancel_with_cause(crate::run::Cause(cause));
            }
            return Err(TaskError::Context(err));
        }
    };
    let (status, bytes) = match outcome {
        Ok(answer) => answer,
        Err(Failure::Context(err)) => return Err(TaskError::Context(err)),
        Err(Failure::Inner(e)) => {
            return Err(TaskError::Failed(format!(
                "peer {} unreachable: {e}",
                peer.url
            )));
        }
    };
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() {
        let error = answer["error"].as_str().unwrap_or("no error message");
        return Err(TaskError::Failed(format!(
            "peer answered {status}: {error}"
        )));
    }
    let task = &answer["tasks"][0];
    let text = |key: &str| task[key].as_str().unwrap_or("").to_owned();
    match task["state"].as_str() {
        Some("completed") => Ok(()),
        Some("timed_out") => Err(TaskError::Context(goctx::Error::DeadlineExceeded)),
        Some("canceled") if ctx.err().is_some() => Err(TaskError::Context(goctx::Error::Canceled)),
        Some("canceled") => Err(TaskError::Failed(format!(
            "canceled on the peer: {}",
            text("cause")
        ))),
        Some("failed") => Err(TaskError::Failed(format!("on the peer: {}", text("error")))),
        other => Err(TaskError::Failed(format!("peer's task ended as {other:?}"))),
    }
}

/// Reads the peer's run every [`POLL_EVERY`] and reports its task's
/// progress when it changes. Never returns: it ends when the call does
/// (the `select!` drops it).
async fn follow_progress(
    client: &HttpClient,
    peer: &str,
    remote_id: &str,
    progress: &Progress,
) -> std::convert::Infallible {
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported = None;
    loop {
        tick.tick().await;
        // `None` while the peer has not made the run yet, or did not answer.
        let read = tokio::time::timeout(POLL_TIMEOUT, peer_progress(client, peer, remote_id));
        if let Ok(Some(percent)) = read.await
            && reported != Some(percent)
        {
            reported = Some(percent);
            progress.report(percent);
        }
    }
}

/// The progress of the one task of run `remote_id` on `peer`.
async fn peer_progress(client: &HttpClient, peer: &str, remote_id: &str) -> Option<u8> {
    let req = http::Request::get(format!("{peer}/runs/{remote_id}"))
        .body(PropagateBody::new(String::new()))
        .ok()?;
    let res = client.request(req).await.ok()?;
    if !res.status().is_success() {
        return None;
    }
    let bytes = res.into_body().collect().await.ok()?.to_bytes();
    let run: Value = serde_json::from_slice(&bytes).ok()?;
    let percent = run["tasks"][0]["progress"].as_u64()?;
    Some(u8::try_from(percent.min(100)).unwrap_or(100))
}

/// How a call to a peer failed: its context ended, or the connection did.
enum Failure {
    Context(goctx::Error),
    Inner(String),
}

fn failure<E: std::fmt::Display>(e: PropagateError<E>) -> Failure {
    match e {
        PropagateError::Context { err, .. } => Failure::Context(err),
        PropagateError::Inner(e) => Failure::Inner(e.to_string()),
    }
}

/// `DELETE /runs/{id}` on the peer with the cause; at most a second, and
/// a failure only means the peer learns of it from the dropped call.
async fn tell_peer(client: &HttpClient, peer: &str, remote_id: &str, cause: &str) {
    let body = serde_json::json!({ "cause": cause }).to_string();
    let Ok(req) = http::Request::delete(format!("{peer}/runs/{remote_id}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(PropagateBody::new(body))
    else {
        return;
    };
    let send = async {
        if let Ok(res) = client.request(req).await {
            let _ = res.into_body().collect().await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), send).await;
}
