//! The sqlx recipe of docs/http.md ("Databases"), against a real
//! PostgreSQL server started by the test: sqlx has no cancel of its own,
//! so the recipe asks the server, from another pool connection, to cancel
//! the backend running the query (`pg_cancel_backend`) when the context
//! ends. The recipe's code is here as the guide shows it (a test checks).

mod common;

use std::time::{Duration, Instant};

// --- the recipe, as in docs/http.md ---
use goctx::Ctx;
use sqlx::postgres::{PgConnection, PgPool};

/// Runs `sql` (one row, one text column) on `conn` until it answers or
/// `ctx` ends; when `ctx` ends first, another connection of `pool` asks
/// the server to cancel it. Needs a pool with a connection to spare.
async fn fetch_text(
    ctx: &Ctx,
    pool: &PgPool,
    conn: &mut PgConnection,
    sql: &str,
) -> Result<String, sqlx::Error> {
    if let Some(err) = ctx.err() {
        return Err(sqlx::Error::Protocol(format!("not started: {err}")));
    }
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *conn)
        .await?;
    let (sent, cancel_sent) = tokio::sync::oneshot::channel::<()>();
    let canceler = pool.clone();
    let stop = goctx::tokio::after_func_async(ctx, async move {
        let _ = sqlx::query("SELECT pg_cancel_backend($1)")
            .bind(pid)
            .execute(&canceler)
            .await;
        let _ = sent.send(());
    });
    let result = sqlx::query_scalar(sql).fetch_one(&mut *conn).await;
    if !stop.stop() {
        // The cancel is out or on its way: wait for it, so it cannot stop
        // the connection's next statement instead.
        let _ = cancel_sent.await;
    }
    result
}
// --- end of the recipe ---

async fn pool() -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&common::postgres::shared().url)
        .await
        .expect("connect to the test server")
}

#[tokio::test]
async fn the_recipe_stops_the_query_on_the_server() {
    let pool = pool().await;
    let mut conn = pool.acquire().await.unwrap();
    let (ctx, cancel) = goctx::with_cancel(&goctx::background());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let start = Instant::now();
    let err = fetch_text(&ctx, &pool, &mut conn, "SELECT pg_sleep(30)::text")
        .await
        .expect_err("canceled");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let code = err
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("57014"), "{err}");
    assert_eq!(ctx.err(), Some(goctx::Error::Canceled));
    // The connection is usable at once.
    let one: String = sqlx::query_scalar("SELECT 'one'")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(one, "one");
}

#[tokio::test]
async fn the_recipe_returns_answers_and_sends_nothing_when_done() {
    let pool = pool().await;
    let mut conn = pool.acquire().await.unwrap();
    let ctx = goctx::background();
    let answer = fetch_text(&ctx, &pool, &mut conn, "SELECT 'forty-two'")
        .await
        .unwrap();
    assert_eq!(answer, "forty-two");
    let (done, cancel) = goctx::with_cancel(&ctx);
    cancel.cancel();
    let err = fetch_text(&done, &pool, &mut conn, "SELECT 'never'")
        .await
        .expect_err("not started");
    assert!(
        err.to_string().contains("not started: context canceled"),
        "{err}"
    );
}

#[test]
fn the_guide_shows_the_recipe_as_it_is() {
    let this = include_str!("sqlx.rs");
    let guide = include_str!("../../docs/http.md");
    let recipe = this
        .split_once("// --- the recipe, as in docs/http.md ---\n")
        .and_then(|(_, rest)| rest.split_once("// --- end of the recipe ---"))
        .map(|(recipe, _)| recipe)
        .unwrap();
    assert!(
        guide.contains(recipe),
        "docs/http.md's sqlx recipe differs from integration/tests/sqlx.rs"
    );
}
