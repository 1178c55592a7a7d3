//! The seed's "Context in HTTP" handler, runnable: `cargo run --example http_server`.
//!
//! Two services start on loopback ports: the API (`GET /users/{id}`) and a
//! downstream "profile" service it calls. Each request to the API gets a
//! [`goctx::Ctx`] from `RequestContextLayer`; the handler hands it to:
//!
//! - a slow SQL query on an embedded SQLite database (created on first
//!   run), interrupted through `after_func` (SQLite's interrupt handle)
//!   when the context ends, and
//! - an HTTP call to the downstream service through `PropagateLayer`,
//!   which carries the deadline, trace and request id, and is dropped
//!   when the context ends: the downstream sees its own request context
//!   canceled.
//!
//! Try it (the README's "Context in HTTP" section):
//!
//! ```text
//! cargo run --example http_server
//! curl -i http://127.0.0.1:3000/users/42        # about 2 s, then JSON
//! curl -m 1 http://127.0.0.1:3000/users/42      # give up after 1 s: watch the logs
//! ```
//!
//! Every log line starts with the request id.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use goctx::http::{PropagateBody, PropagateLayer, RequestContextLayer, RequestId, with_context};
use goctx::{Ctx, Error};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};

/// Command line of the example.
#[derive(Parser, Debug)]
#[command(
    about = "goctx's request contexts in an HTTP service: a slow SQL query and a downstream call, both stopped when the client leaves"
)]
struct Args {
    /// Address of the API (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// How long the SQL query runs if nobody interrupts it.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    query: Duration,
    /// How long the downstream service takes to answer.
    #[arg(long, default_value = "1500ms", value_parser = parse_duration)]
    downstream: Duration,
    /// The request deadline the API gives every request (at most).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    max_timeout: Duration,
}

/// Durations in the usual short forms (`500ms`, `2s`, `1m30s`).
fn parse_duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

/// `[req-id] message`, the request id of `ctx` first on every line.
fn log(ctx: &Ctx, message: impl std::fmt::Display) {
    let id = ctx.value::<RequestId>().map_or("-", RequestId::as_str);
    println!("[{id}] {message}");
}

fn why(ctx: &Ctx) -> String {
    ctx.cause()
        .map_or_else(|| "live".to_owned(), |cause| cause.to_string())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let db = prepare_database()?;

    // The server's base context: its cancellation (on Ctrl+C, below) ends
    // every request still in flight.
    let (server_ctx, shutdown) = goctx::with_cancel_cause(&goctx::background());

    // The downstream service, on its own port.
    let downstream_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let downstream_addr = downstream_listener.local_addr()?;
    let slow = args.downstream;
    let downstream = Router::new()
        .route(
            "/profiles/{id}",
            get(move |ctx: Ctx, Path(id): Path<u64>| downstream_profile(ctx, id, slow)),
        )
        .layer(RequestContextLayer::new(&server_ctx));
    tokio::spawn(async move {
        let _ = axum::serve(downstream_listener, downstream).await;
    });

    // The API.
    let state = Api {
        db,
        query: args.query,
        downstream: format!("http://{downstream_addr}"),
        client: Client::builder(TokioExecutor::new()).build_http(),
    };
    let api = Router::new()
        .route(
            "/users/{id}",
            get(move |ctx: Ctx, Path(id): Path<u64>| {
                let state = state.clone();
                async move { state.user(ctx, id).await }
            }),
        )
        .layer(RequestContextLayer::new(&server_ctx).max_timeout(args.max_timeout));
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    println!(
        "listening on http://{} (downstream on http://{downstream_addr})",
        listener.local_addr()?
    );
    println!("try: curl -i http://{}/users/42", listener.local_addr()?);

    // Graceful shutdown: stop accepting on Ctrl+C; in-flight requests get
    // a moment, then the base context ends them with a cause.
    axum::serve(listener, api)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            println!("shutting down: in-flight requests have 1s");
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                shutdown.cancel_with_cause("server shutting down");
            });
        })
        .await?;
    Ok(())
}

/// What the API's handler needs.
#[derive(Clone)]
struct Api {
    db: PathBuf,
    query: Duration,
    downstream: String,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, PropagateBody<String>>,
}

impl Api {
    /// `GET /users/{id}`: the seed's handler. The query and the downstream
    /// call run at once, both under the request's context.
    async fn user(&self, ctx: Ctx, id: u64) -> Response {
        log(&ctx, format!("GET /users/{id}: started"));
        let started = Instant::now();
        let query = slow_query(ctx.clone(), self.db.clone(), id, self.query);
        let profile = self.profile(&ctx, id);
        let (row, profile) = tokio::join!(query, profile);
        match (row, profile) {
            (Ok(name), Ok(profile)) => {
                log(
                    &ctx,
                    format!("GET /users/{id}: 200 in {:?}", started.elapsed()),
                );
                Json(serde_json::json!({ "id": id, "name": name, "profile": profile }))
                    .into_response()
            }
            (row, profile) => {
                let detail = format!(
                    "query: {}; downstream: {}",
                    row.err().unwrap_or_else(|| "ok".into()),
                    profile.err().unwrap_or_else(|| "ok".into())
                );
                log(
                    &ctx,
                    format!(
                        "GET /users/{id}: failed after {:?} ({detail}); context: {}",
                        started.elapsed(),
                        why(&ctx)
                    ),
                );
                (StatusCode::SERVICE_UNAVAILABLE, detail).into_response()
            }
        }
    }

    /// The downstream call, through `PropagateLayer`: it carries the
    /// request's deadline, trace and id, and is dropped when the context
    /// ends.
    async fn profile(&self, ctx: &Ctx, id: u64) -> Result<String, String> {
        let mut client = ServiceBuilder::new()
            .layer(PropagateLayer::new().grpc_timeout_for_http(true))
            .service(self.client.clone());
        let req = http::Request::get(format!("{}/profiles/{id}", self.downstream))
            .body(String::new())
            .map_err(|e| e.to_string())?;
        let res = client
            .ready()
            .await
            .map_err(|e| e.to_string())?
            .call(with_context(req, ctx))
            .await
            .map_err(|e| {
                log(ctx, format!("downstream call stopped: {e}"));
                e.to_string()
            })?;
        let body = res.into_body().collect().await.map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
    }
}

/// The slow SQL query of the seed, on a blocking thread. `after_func`
/// interrupts it (SQLite's `sqlite3_interrupt`) when the request's
/// context ends; `stop()` unregisters the callback once the query is done.
async fn slow_query(ctx: Ctx, db: PathBuf, id: u64, budget: Duration) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let conn = rusqlite::Connection::open(&db).map_err(|e| e.to_string())?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        let interrupt = conn.get_interrupt_handle();
        let on_done = ctx.clone();
        let stop = goctx::after_func(&ctx, move || {
            interrupt.interrupt();
            log(
                &on_done,
                format!("SQL query interrupted: {}", why(&on_done)),
            );
        });
        // A query that takes about `budget`: counting rows one by one.
        let rows = (budget.as_secs_f64() * ROWS_PER_SECOND) as i64;
        // SQLite forgets an interrupt that comes while no statement runs,
        // so one that lands just before the query starts would be lost: a
        // progress handler (every 100,000 steps, a few milliseconds) also
        // stops the query once the context is done.
        let watched = ctx.clone();
        conn.progress_handler(100_000, Some(move || watched.err().is_some()));
        log(&ctx, "SQL query running");
        let result = conn.query_row(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1)
             SELECT (SELECT name FROM users WHERE id = ?2 % 3 + 1) FROM n ORDER BY x DESC LIMIT 1",
            rusqlite::params![rows, id as i64],
            |row| row.get::<_, String>(0),
        );
        stop.stop();
        // Logged here, on the blocking thread: when the client leaves, the
        // handler's future (and so the `.await` below) is already gone.
        match &result {
            Ok(_) => log(&ctx, format!("SQL query done in {:?}", started.elapsed())),
            Err(e) => log(
                &ctx,
                format!("SQL query stopped after {:?}: {e}", started.elapsed()),
            ),
        }
        result.map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Rows the recursive query counts per second, about, in a debug build on
/// a modest machine (a release build is faster).
const ROWS_PER_SECOND: f64 = 1_700_000.0;

/// The downstream service's handler: slow, and it says how its request
/// context ended.
async fn downstream_profile(ctx: Ctx, id: u64, slow: Duration) -> Result<String, StatusCode> {
    let budget = ctx
        .deadline()
        .map(|d| d.saturating_duration_since(Instant::now()));
    log(
        &ctx,
        format!("downstream: GET /profiles/{id} (budget {budget:?})"),
    );
    let watcher = ctx.clone();
    tokio::spawn(async move {
        watcher.done().await;
        log(
            &watcher,
            format!("downstream: request context ended: {}", why(&watcher)),
        );
    });
    match ctx.run(tokio::time::sleep(slow)).await {
        Ok(()) => Ok(format!("profile of user {id}")),
        Err(Error::DeadlineExceeded) => Err(StatusCode::GATEWAY_TIMEOUT),
        Err(Error::Canceled) => Err(StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// Creates the example database on first run: a small `users` table.
fn prepare_database() -> Result<PathBuf, rusqlite::Error> {
    let path = std::env::temp_dir().join("goctx-http-example.sqlite3");
    let conn = rusqlite::Connection::open(&path)?;
    // Two copies of the example (two tests at once) may set the file up
    // at the same moment: wait for the other's lock instead of failing.
    conn.busy_timeout(Duration::from_secs(5))?;
    // Write only on the first run: a write would wait for readers of
    // another running copy.
    let ready: bool = conn.query_row(
        "SELECT count(*) = 1 FROM sqlite_master WHERE type = 'table' AND name = 'users'",
        [],
        |row| row.get(0),
    )?;
    if !ready {
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
             INSERT OR IGNORE INTO users (id, name) VALUES (1, 'Ada'), (2, 'Grace'), (3, 'Edsger');
             COMMIT;",
        )?;
    }
    Ok(path)
}
