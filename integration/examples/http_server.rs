//! The seed's "Context in HTTP" handler, runnable: `cargo run -p integration --example http_server`.
//!
//! Two services start on loopback ports: the API (`GET /users/{id}`) and a
//! downstream "profile" service it calls. Each request to the API gets a
//! [`goctx::Ctx`] from `RequestContextLayer`; the handler hands it to:
//!
//! - a slow SQL query, interrupted when the context ends: on an embedded
//!   SQLite database by default (created on first run; `goctx::rusqlite`),
//!   or on a PostgreSQL server with `--database postgres://…` (or
//!   `DATABASE_URL`), where `goctx::postgres` has the server stop it
//!   (SQLSTATE 57014) and the request's deadline is the transaction's
//!   `statement_timeout`, and
//! - an HTTP call to the downstream service through `PropagateLayer`,
//!   which carries the deadline, trace and request id, and is dropped
//!   when the context ends: the downstream sees its own request context
//!   canceled.
//!
//! Try it (the README's "Context in HTTP" section):
//!
//! ```text
//! cargo run -p integration --example http_server
//! curl -i http://127.0.0.1:3000/users/42        # about 2 s, then JSON
//! curl -m 1 http://127.0.0.1:3000/users/42      # give up after 1 s: watch the logs
//! ```
//!
//! On PostgreSQL (`scripts/postgres-example.sh` starts a throw-away server
//! and prints the command):
//!
//! ```text
//! cargo run -p integration --example http_server -- --database postgres://goctx@127.0.0.1:5433/postgres
//! ```
//!
//! Every log line starts with the time (UTC) and the request id.

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
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rusqlite::functions::FunctionFlags;
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
    /// Run the query on this PostgreSQL server (a `postgres://` URL)
    /// instead of the embedded SQLite database.
    #[arg(long, env = "DATABASE_URL")]
    database: Option<String>,
    /// Connections in the PostgreSQL pool.
    #[arg(long, default_value_t = 16)]
    pool_size: usize,
}

/// Durations in the usual short forms (`500ms`, `2s`, `1m30s`).
fn parse_duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

/// `time [req-id] message`: the time (UTC, milliseconds) and the request
/// id of `ctx` first on every line.
fn log(ctx: &Ctx, message: impl std::fmt::Display) {
    let id = ctx.value::<RequestId>().map_or("-", RequestId::as_str);
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
    println!(
        "{now} [{}] {message}",
        utf8_percent_encode(id, LOGGED_AS_IS)
    );
}

/// What a request id may show as it is in a log line: letters, digits
/// and `-._~:`. The client chooses the id, so everything else is
/// percent-escaped, and an id like `]x[GET/admin` cannot pass for the
/// structure of a log line.
const LOGGED_AS_IS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':');

fn why(ctx: &Ctx) -> String {
    ctx.cause()
        .map_or_else(|| "live".to_owned(), |cause| cause.to_string())
}

#[tokio::main]
async fn main() {
    if let Err(err) = serve(Args::parse()).await {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}

async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let db = match &args.database {
        Some(url) => Database::Postgres(prepare_postgres(url, args.pool_size).await?),
        None => Database::Sqlite(prepare_sqlite()?),
    };

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
    let database = db.describe();
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
    println!("database: {database}");
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

/// Where the slow query runs.
#[derive(Clone)]
enum Database {
    /// The embedded SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL server, through a pool.
    Postgres(deadpool_postgres::Pool),
}

impl Database {
    fn describe(&self) -> String {
        match self {
            Database::Sqlite(path) => format!("SQLite at {}", path.display()),
            Database::Postgres(_) => "PostgreSQL".to_owned(),
        }
    }
}

/// What the API's handler needs.
#[derive(Clone)]
struct Api {
    db: Database,
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
        let query = async {
            match &self.db {
                Database::Sqlite(path) => {
                    sqlite_query(ctx.clone(), path.clone(), id, self.query).await
                }
                Database::Postgres(pool) => {
                    postgres_query(ctx.clone(), pool.clone(), id, self.query).await
                }
            }
        };
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
                // 504 when the request's deadline ran out, 503 otherwise.
                let status = if ctx.err() == Some(Error::DeadlineExceeded) {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                (status, detail).into_response()
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

/// The seed's slow SQL query on SQLite, on a blocking thread:
/// `goctx::rusqlite::run` interrupts it (`sqlite3_interrupt`) when the
/// request's context ends.
async fn sqlite_query(ctx: Ctx, db: PathBuf, id: u64, budget: Duration) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let conn = rusqlite::Connection::open(&db).map_err(|e| e.to_string())?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        // SQLite has no sleep: the query counts rows until the clock passes
        // `until_ms`, read through a function of our own (SQLite's 'now' is
        // fixed for a whole statement).
        conn.create_scalar_function("now_ms", 0, FunctionFlags::SQLITE_UTF8, |_| Ok(now_ms()))
            .map_err(|e| e.to_string())?;
        let until_ms = now_ms() + i64::try_from(budget.as_millis()).unwrap_or(i64::MAX / 2);
        let result = goctx::rusqlite::run(&ctx, &conn, |conn| {
            // Inside `run`: the context was live and the interrupt is
            // armed, so an end from here on stops the statement (logged
            // before `run`, a client leaving at once found it not started).
            log(&ctx, "SQL query running (SQLite)");
            conn.query_row(
                COUNTING_QUERY,
                rusqlite::params![until_ms, id as i64],
                |row| row.get::<_, String>(0),
            )
        });
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

/// A query that takes a while: counting rows one by one until `now_ms()`
/// passes `?1`, then the name of user `?2`.
const COUNTING_QUERY: &str =
    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE now_ms() < ?1)
     SELECT (SELECT name FROM users WHERE id = ?2 % 3 + 1) FROM n ORDER BY x DESC LIMIT 1";

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The slow SQL query on PostgreSQL (`pg_sleep`), in a transaction whose
/// `statement_timeout` is the request's remaining time, run with
/// `goctx::postgres::run`: when the context ends, the server is asked to
/// stop the query, and answers with SQLSTATE 57014.
///
/// It runs in a task of its own. axum drops the handler's future when the
/// client leaves, and everything it was awaiting with it; dropping a query
/// future does not stop the query on the server. The task lives on: it
/// sees the context end, has the server stop the query, waits for its
/// answer, and only then hands the connection back to the pool, idle and
/// outside any transaction.
async fn postgres_query(
    ctx: Ctx,
    pool: deadpool_postgres::Pool,
    id: u64,
    budget: Duration,
) -> Result<String, String> {
    tokio::spawn(async move {
        let started = Instant::now();
        let no_connection = |e: &dyn std::fmt::Display| format!("no database connection: {e}");
        let mut client = ctx
            .run(pool.get())
            .await
            .map_err(|e| no_connection(&e))?
            .map_err(|e| no_connection(&e))?;
        let tx = goctx::postgres::transaction(&ctx, &mut client)
            .await
            .map_err(|e| e.to_string())?;
        // The backend's pid, to find it in `pg_stat_activity`.
        let pid: i32 = goctx::postgres::run(
            &ctx,
            tx.client(),
            tx.query_one("SELECT pg_backend_pid()", &[]),
        )
        .await
        .map_err(|e| e.to_string())?
        .get(0);
        let timeout = ctx.deadline().map_or_else(
            || "none".to_owned(),
            |d| format!("{} ms", d.saturating_duration_since(Instant::now()).as_millis()),
        );
        log(
            &ctx,
            format!("SQL query running (PostgreSQL backend {pid}, statement_timeout {timeout})"),
        );
        let sleep = budget.as_secs_f64();
        let result = goctx::postgres::run(
            &ctx,
            tx.client(),
            tx.query_one(
                "SELECT (SELECT name FROM users WHERE id = $1::bigint % 3 + 1) FROM pg_sleep($2::float8)",
                &[&(id as i64), &sleep],
            ),
        )
        .await;
        match result {
            Ok(row) => {
                goctx::postgres::commit(&ctx, tx)
                    .await
                    .map_err(|e| e.to_string())?;
                log(&ctx, format!("SQL query done in {:?}", started.elapsed()));
                Ok(row.get::<_, String>(0))
            }
            Err(e) => {
                log(
                    &ctx,
                    format!("SQL query stopped after {:?}: {e}", started.elapsed()),
                );
                Err(e.to_string())
            }
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

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

/// Creates the example's SQLite database on first run: a small `users`
/// table.
fn prepare_sqlite() -> Result<PathBuf, rusqlite::Error> {
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

/// Connects a pool to the PostgreSQL server at `url` and creates the
/// `users` table if it is not there.
async fn prepare_postgres(
    url: &str,
    size: usize,
) -> Result<deadpool_postgres::Pool, Box<dyn std::error::Error>> {
    let mut config = deadpool_postgres::Config::new();
    config.url = Some(url.to_owned());
    config.pool = Some(deadpool_postgres::PoolConfig::new(size.max(1)));
    let pool = config.create_pool(
        Some(deadpool_postgres::Runtime::Tokio1),
        tokio_postgres::NoTls,
    )?;
    let client = pool.get().await?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, name text NOT NULL);
             INSERT INTO users (id, name) VALUES (1, 'Ada'), (2, 'Grace'), (3, 'Edsger')
             ON CONFLICT (id) DO NOTHING;",
        )
        .await?;
    Ok(pool)
}
