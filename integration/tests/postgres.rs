//! `goctx::postgres` against a real PostgreSQL server, started by the
//! tests themselves (integration/tests/common/postgres.rs): a canceled context stops
//! the statement on the server, a deadline reaches the server as
//! `statement_timeout`, a context already done sends nothing, and a
//! pooled connection comes back idle, outside any transaction.
//! Every wait is bounded.

mod common;

use std::time::{Duration, Instant};

use goctx::postgres::{self, ErrorKind};
use goctx::{Ctx, Error};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// Generous for a loaded 2-core machine; the statements under test would
/// run for 30 s if nothing stopped them.
const PATIENCE: Duration = Duration::from_secs(10);
const SLEEP_30S: &str = "SELECT pg_sleep(30)";

async fn connect() -> Client {
    let (client, connection) = tokio_postgres::connect(&common::postgres::shared().url, NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(connection);
    client
}

async fn backend_pid(client: &Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0)
}

/// Waits (bounded) until backend `pid` is idle, as another connection
/// sees it in `pg_stat_activity`; returns how long that took.
async fn wait_idle(observer: &Client, pid: i32) -> Duration {
    let start = Instant::now();
    loop {
        let state: Option<String> = observer
            .query_one("SELECT state FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await
            .expect("pg_stat_activity")
            .get(0);
        if state.as_deref() == Some("idle") {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < PATIENCE,
            "backend {pid} still {state:?} after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Cancels `ctx` with `cause` after `after`.
fn cancel_after(after: Duration, cause: &'static str) -> Ctx {
    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        cancel.cancel_with_cause(cause);
    });
    ctx
}

#[tokio::test]
async fn a_canceled_context_stops_the_statement_on_the_server() {
    let client = connect().await;
    let observer = connect().await;
    let pid = backend_pid(&client).await;
    let ctx = cancel_after(Duration::from_millis(200), "the user left");

    let start = Instant::now();
    let err = postgres::run(&ctx, &client, client.query(SLEEP_30S, &[]))
        .await
        .expect_err("the statement is stopped");
    let took = start.elapsed();

    assert_eq!(err.kind(), ErrorKind::Canceled, "{err}");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert_eq!(err.context_err(), Some(Error::Canceled));
    assert_eq!(
        err.cause().map(ToString::to_string).as_deref(),
        Some("the user left")
    );
    assert!(took < PATIENCE, "took {took:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("query canceled: context canceled (the user left): ERROR: ")
            && text.contains("57014"),
        "{text}"
    );
    // The server is no longer running it, and the connection is usable.
    wait_idle(&observer, pid).await;
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

#[tokio::test]
async fn a_deadline_stops_the_statement_as_the_context_ends() {
    let client = connect().await;
    let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), Duration::from_millis(300));
    let err = postgres::run(&ctx, &client, client.query(SLEEP_30S, &[]))
        .await
        .expect_err("stopped at the deadline");
    assert_eq!(err.kind(), ErrorKind::Canceled, "{err}");
    assert_eq!(err.context_err(), Some(Error::DeadlineExceeded));
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED));
}

#[tokio::test]
async fn the_deadline_reaches_the_server_without_any_cancel() {
    let mut client = connect().await;
    let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), Duration::from_millis(300));
    let tx = postgres::transaction(&ctx, &mut client)
        .await
        .expect("begin");
    let timeout: String = tx
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    let millis: u64 = timeout.trim_end_matches("ms").parse().unwrap_or_else(|_| {
        panic!("statement_timeout is {timeout:?}");
    });
    assert!((1..=300).contains(&millis), "statement_timeout {timeout}");

    // Not under `run`: this process sends no cancel; the server stops the
    // statement on its own.
    let start = Instant::now();
    let err = tx
        .query(SLEEP_30S, &[])
        .await
        .expect_err("the server stops it");
    assert!(start.elapsed() < PATIENCE);
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err:?}");
    let message = err.as_db_error().map(|e| e.message().to_owned());
    assert_eq!(
        message.as_deref(),
        Some("canceling statement due to statement timeout")
    );
}

#[tokio::test]
async fn a_deadline_beyond_the_servers_limit_is_clamped() {
    // PostgreSQL takes at most i32::MAX ms (about 24.8 days).
    let mut client = connect().await;
    let (ctx, _cancel) =
        goctx::with_timeout(&goctx::background(), Duration::from_secs(30 * 24 * 3600));
    let tx = postgres::transaction(&ctx, &mut client)
        .await
        .expect("begin");
    let set = postgres::set_statement_timeout(&ctx, &tx)
        .await
        .expect("set");
    assert_eq!(set, Some(Duration::from_millis(i32::MAX as u64)));
    let timeout: String = tx
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(timeout, "2147483647ms");
}

#[tokio::test]
async fn no_deadline_sets_no_statement_timeout() {
    let mut client = connect().await;
    let ctx = goctx::background();
    let tx = postgres::transaction(&ctx, &mut client)
        .await
        .expect("begin");
    let set = postgres::set_statement_timeout(&ctx, &tx)
        .await
        .expect("nothing to set");
    assert_eq!(set, None);
    let timeout: String = tx
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(timeout, "0");
}

#[tokio::test]
async fn a_context_done_before_the_call_sends_nothing() {
    let mut client = connect().await;
    let (ctx, cancel) = goctx::with_cancel_cause(&goctx::background());
    cancel.cancel_with_cause("gone before");
    let marker = format!("goctx-never-sent-{}", std::process::id());

    let sql = format!("SELECT '{marker}'");
    let err = postgres::run(&ctx, &client, client.query(&sql, &[]))
        .await
        .expect_err("not started");
    assert_eq!(err.kind(), ErrorKind::NotStarted);
    assert_eq!(err.context_err(), Some(Error::Canceled));
    assert_eq!(
        err.cause().map(ToString::to_string).as_deref(),
        Some("gone before")
    );
    assert!(err.as_postgres().is_none());
    match postgres::transaction(&ctx, &mut client).await {
        Err(err) => assert_eq!(err.kind(), ErrorKind::NotStarted),
        Ok(_) => panic!("began a transaction under a done context"),
    }

    // The server logs every statement as it starts it (log_statement =
    // all), in order: once the sentinel is in the log, the marker would be
    // before it.
    let sentinel = format!("goctx-sentinel-{}", std::process::id());
    client
        .query(&format!("SELECT '{sentinel}'"), &[])
        .await
        .unwrap();
    let server = common::postgres::shared();
    let until = Instant::now() + PATIENCE;
    let log = loop {
        let log = server.log_text();
        if log.contains(&sentinel) {
            break log;
        }
        assert!(Instant::now() < until, "the sentinel never reached the log");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        !log.contains(&marker),
        "the server saw the statement:\n{log}"
    );
    assert!(!log.contains("BEGIN\n") || !log.contains("gone before"));
}

#[tokio::test]
async fn a_statement_that_answers_first_is_returned_unchanged() {
    let client = connect().await;
    let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), Duration::from_secs(30));
    let rows = postgres::run(&ctx, &client, client.query("SELECT 41 + 1", &[]))
        .await
        .expect("answers");
    assert_eq!(rows[0].get::<_, i32>(0), 42);
    let err = postgres::run(&ctx, &client, client.query("SELECT 1/0", &[]))
        .await
        .expect_err("division by zero");
    assert_eq!(err.kind(), ErrorKind::Query);
    assert_eq!(err.code(), Some(&SqlState::DIVISION_BY_ZERO));
    assert_eq!(err.context_err(), None);
    assert!(
        err.to_string()
            .contains("division by zero (SQLSTATE 22012)"),
        "{err}"
    );
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test]
async fn a_pooled_connection_comes_back_idle_and_outside_any_transaction() {
    let mut config = deadpool_postgres::Config::new();
    config.url = Some(common::postgres::shared().url.clone());
    config.pool = Some(deadpool_postgres::PoolConfig::new(1));
    let pool = config
        .create_pool(Some(deadpool_postgres::Runtime::Tokio1), NoTls)
        .expect("pool");
    let observer = connect().await;

    let mut object = pool.get().await.expect("a connection");
    let pid = backend_pid(&object).await;
    // In a transaction with the deadline as statement_timeout, canceled
    // from elsewhere before the deadline.
    let (deadline, _cancel) = goctx::with_timeout(&goctx::background(), Duration::from_secs(20));
    let (ctx, cancel) = goctx::with_cancel(&deadline);
    let tx = postgres::transaction(&ctx, &mut object)
        .await
        .expect("begin");
    let canceler = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let err = postgres::run(&ctx, tx.client(), tx.query(SLEEP_30S, &[]))
        .await
        .expect_err("canceled");
    canceler.await.unwrap();
    assert_eq!(err.kind(), ErrorKind::Canceled);
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED));
    drop(tx); // rolls back, ahead of the connection's next statement
    drop(object);

    // The same connection (a pool of one), usable, with no transaction
    // open and its own statement_timeout back.
    let object = pool.get().await.expect("the connection again");
    assert_eq!(backend_pid(&object).await, pid);
    // In the simple protocol a statement outside a transaction starts its
    // own, so the transaction began when the statement did; an aborted
    // transaction would refuse the statement (25P02).
    let rows = object
        .simple_query("SELECT now() = statement_timestamp(), current_setting('statement_timeout')")
        .await
        .expect("usable");
    let row = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .expect("a row");
    assert_eq!(row.get(0), Some("t"), "still inside a transaction");
    assert_eq!(row.get(1), Some("0"));
    drop(object);
    wait_idle(&observer, pid).await;
    let in_tx: i64 = observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state LIKE 'idle in%'",
            &[&pid],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_tx, 0);

    // Without a transaction, the same: cancel, then the next statement.
    let object = pool.get().await.expect("the connection again");
    let ctx = cancel_after(Duration::from_millis(100), "plain");
    let err = postgres::run(&ctx, &object, object.query(SLEEP_30S, &[]))
        .await
        .expect_err("canceled");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED));
    let one: i32 = object.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

#[tokio::test]
async fn an_unreachable_cancel_is_reported_after_the_grace_period() {
    // A client whose cancel token points at a port nobody listens on:
    // connect through a forwarding listener that then goes away.
    let server = common::postgres::shared();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = server.port;
    let forward = tokio::spawn(async move {
        let (mut inbound, _) = listener.accept().await.unwrap();
        drop(listener); // later connections (the cancel) are refused
        let mut outbound = tokio::net::TcpStream::connect(("127.0.0.1", upstream))
            .await
            .unwrap();
        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
    });
    let (client, connection) = tokio_postgres::connect(
        &format!("postgres://goctx@127.0.0.1:{port}/postgres"),
        NoTls,
    )
    .await
    .expect("connect through the forwarder");
    tokio::spawn(connection);

    let ctx = cancel_after(Duration::from_millis(100), "unreachable");
    let canceler = postgres::Canceler::new().grace(Duration::from_millis(300));
    let start = Instant::now();
    let err = canceler
        .run(&ctx, &client, client.query("SELECT pg_sleep(3)", &[]))
        .await
        .expect_err("not confirmed");
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(err.kind(), ErrorKind::CancelUnconfirmed, "{err}");
    assert!(err.cancel_error().is_some(), "{err:?}");
    assert_eq!(err.context_err(), Some(Error::Canceled));
    drop(client);
    forward.abort();
}
