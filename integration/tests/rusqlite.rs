//! `goctx::rusqlite`: statements interrupted when their context ends,
//! including an end that lands between two statements (SQLite forgets an
//! interrupt while no statement runs), and nothing left armed afterwards.

use std::time::{Duration, Instant};

use goctx::rusqlite::{ErrorKind, run};
use goctx::{Error, background, with_cancel, with_cancel_cause, with_timeout};
use rusqlite::{Connection, ErrorCode};

/// Counts to a billion: minutes of work, unless interrupted.
const COUNT_FOREVER: &str = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 1000000000) SELECT count(*) FROM n";
/// Generous for a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(10);

fn count(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(COUNT_FOREVER, [], |row| row.get(0))
}

#[test]
fn a_canceled_context_interrupts_the_statement() {
    let conn = Connection::open_in_memory().unwrap();
    let (ctx, cancel) = with_cancel_cause(&background());
    let canceler = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        cancel.cancel_with_cause("client went away");
    });
    let start = Instant::now();
    let err = run(&ctx, &conn, count).expect_err("interrupted");
    assert!(start.elapsed() < PATIENCE);
    canceler.join().unwrap();
    assert_eq!(err.kind(), ErrorKind::Interrupted);
    assert_eq!(err.context_err(), Some(Error::Canceled));
    assert_eq!(err.cause().unwrap().to_string(), "client went away");
    assert_eq!(
        err.as_sqlite().and_then(|e| e.sqlite_error_code()),
        Some(ErrorCode::OperationInterrupted)
    );
    assert_eq!(
        err.to_string(),
        "statement interrupted: context canceled (client went away): interrupted"
    );
    // The connection is usable, and nothing of the run is left on it.
    let one: i64 = conn.query_row("SELECT 1", [], |r| r.get(0)).unwrap();
    assert_eq!(one, 1);
}

#[test]
fn a_deadline_interrupts_the_statement() {
    let conn = Connection::open_in_memory().unwrap();
    let (ctx, _cancel) = with_timeout(&background(), Duration::from_millis(50));
    let err = run(&ctx, &conn, count).expect_err("interrupted");
    assert_eq!(err.kind(), ErrorKind::Interrupted);
    assert_eq!(err.context_err(), Some(Error::DeadlineExceeded));
    assert_eq!(
        err.to_string(),
        "statement interrupted: context deadline exceeded: interrupted"
    );
}

#[test]
fn an_end_between_two_statements_stops_the_second() {
    // The context ends after the first statement and before the second
    // starts: the interrupt finds nothing running and SQLite forgets it;
    // the progress handler stops the second.
    let conn = Connection::open_in_memory().unwrap();
    let (ctx, cancel) = with_cancel(&background());
    let err = run(&ctx, &conn, |conn| {
        let first: i64 = conn.query_row("SELECT 1", [], |r| r.get(0))?;
        cancel.cancel();
        // Bounded: the callback thread has called (or will call) interrupt
        // with no statement running.
        std::thread::sleep(Duration::from_millis(20));
        count(conn).map(|n| n + first)
    })
    .expect_err("the second statement stops");
    assert_eq!(err.kind(), ErrorKind::Interrupted);
    assert_eq!(err.context_err(), Some(Error::Canceled));
}

#[test]
fn a_done_context_does_not_call_the_closure() {
    let conn = Connection::open_in_memory().unwrap();
    let (ctx, cancel) = with_cancel(&background());
    cancel.cancel();
    let mut called = false;
    let err = run(&ctx, &conn, |_| {
        called = true;
        Ok(())
    })
    .expect_err("not started");
    assert!(!called);
    assert_eq!(err.kind(), ErrorKind::NotStarted);
    assert!(err.as_sqlite().is_none());
    assert_eq!(err.to_string(), "statement not started: context canceled");
}

#[test]
fn results_and_own_errors_come_back_unchanged() {
    let conn = Connection::open_in_memory().unwrap();
    let ctx = background();
    let n: i64 = run(&ctx, &conn, |c| {
        c.query_row("SELECT 6 * 7", [], |r| r.get(0))
    })
    .unwrap();
    assert_eq!(n, 42);
    let err = run(&ctx, &conn, |c| {
        c.execute("INSERT INTO nowhere VALUES (1)", [])
    })
    .expect_err("no such table");
    assert_eq!(err.kind(), ErrorKind::Query);
    assert_eq!(err.context_err(), None);
    assert!(err.to_string().contains("no such table"), "{err}");
}

#[test]
fn nothing_stays_armed_after_the_call() {
    // A context that ends after `run` returned must not interrupt later
    // statements on the connection, nor leave a progress handler that
    // stops them.
    let conn = Connection::open_in_memory().unwrap();
    let (ctx, cancel) = with_cancel(&background());
    let n: i64 = run(&ctx, &conn, |c| c.query_row("SELECT 7", [], |r| r.get(0))).unwrap();
    assert_eq!(n, 7);
    cancel.cancel();
    ctx.wait();
    let n: i64 = conn
        .query_row(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 300000) SELECT count(*) FROM n",
            [],
            |r| r.get(0),
        )
        .expect("runs to its end");
    assert_eq!(n, 300_000);
}

#[test]
fn a_panicking_closure_leaves_nothing_armed() {
    // The connection outlives the panic (caught here; in a pool, say):
    // the run's context ending later must not stop its next statements.
    let conn = Connection::open_in_memory().unwrap();
    let (ctx, cancel) = with_cancel(&background());
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = run(&ctx, &conn, |_| -> rusqlite::Result<()> {
            panic!("in the closure")
        });
    }));
    assert!(caught.is_err());
    let canceler = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        cancel.cancel();
    });
    // About a quarter of a second of counting: the cancel lands during it.
    let n: i64 = conn
        .query_row(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 2000000) SELECT count(*) FROM n",
            [],
            |r| r.get(0),
        )
        .expect("not interrupted by the earlier run's context");
    assert_eq!(n, 2_000_000);
    canceler.join().unwrap();
}
