//! Runs `integration/examples/http_server.rs` as a user would (issues 9 and 18): a
//! request is answered with the query's row and the downstream's profile,
//! and a client that leaves stops both the SQL query and the downstream
//! call (its own request context ends). On SQLite (the default) the query
//! is interrupted in-process; with `--database postgres://…`, on a real
//! server started by the test, the server stops it (SQLSTATE 57014), and
//! 200 concurrent requests, 30 % abandoned, leave no backend busy and no
//! connection in a transaction. Servers bind 127.0.0.1:0; every wait is
//! bounded.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::servers::{ExampleServer, Lines, Stderr};

/// Generous for a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(20);

fn start(args: &[&str]) -> ExampleServer {
    let mut command = Command::new(common::example("http_server"));
    command.args(["--addr", "127.0.0.1:0"]).args(args);
    ExampleServer::start(command, Stderr::Inherit, Lines::Keep)
}

/// Waits until a line containing each of `wanted` has been printed.
fn expect_lines(server: &ExampleServer, wanted: &[&str]) -> Vec<String> {
    let until = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    while !wanted
        .iter()
        .all(|w| seen.iter().any(|l: &String| l.contains(w)))
    {
        let left = until.saturating_duration_since(Instant::now());
        match server.next_line(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!(
                "never printed all of {wanted:?}; printed:\n{}",
                seen.join("\n")
            ),
        }
    }
    seen
}

fn request(addr: &str, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nx-request-id: test-req\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    stream
}

#[test]
fn a_request_gets_the_row_and_the_profile() {
    let server = start(&["--query", "100ms", "--downstream", "100ms"]);
    let mut stream = request(&server.addr, "/users/2");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains(r#""profile":"profile of user 2""#),
        "{response}"
    );
    let lines = expect_lines(&server, &["SQL query done", "GET /users/2: 200"]);
    // Every line of the request carries the time and its id.
    for line in lines
        .iter()
        .filter(|l| l.contains("/users/2") || l.contains("SQL query"))
    {
        assert_timestamped(line, "test-req");
    }
}

/// `2026-12-07T05:05:48.203Z [id] …`
fn assert_timestamped(line: &str, id: &str) {
    let (time, rest) = line.split_once(' ').unwrap_or_else(|| panic!("{line}"));
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "no timestamp: {line}"
    );
    assert!(rest.starts_with(&format!("[{id}] ")), "{line}");
}

#[test]
fn a_client_chosen_request_id_cannot_forge_log_structure() {
    let server = start(&["--query", "10ms", "--downstream", "10ms"]);
    let mut stream = TcpStream::connect(&server.addr).expect("connect");
    write!(
        stream,
        "GET /users/1 HTTP/1.1\r\nHost: x\r\nx-request-id: ]x[GET/admin\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let lines = expect_lines(&server, &["GET /users/1: 200"]);
    for line in lines.iter().filter(|l| l.contains("/users/1")) {
        assert_timestamped(line, "%5Dx%5BGET%2Fadmin");
        assert!(!line.contains("]x[GET"), "{line}");
    }
}

#[test]
fn a_client_that_leaves_stops_the_query_and_the_downstream_call() {
    let server = start(&["--query", "30s", "--downstream", "30s"]);
    let stream = request(&server.addr, "/users/7");
    // Both are under way: the downstream has the request, the query runs.
    expect_lines(
        &server,
        &["downstream: GET /profiles/7", "SQL query running"],
    );
    drop(stream);
    let left = Instant::now();
    let lines = expect_lines(
        &server,
        &[
            "downstream: request context ended: request abandoned",
            "SQL query stopped after",
        ],
    );
    let stopped = lines
        .iter()
        .find(|l| l.contains("SQL query stopped"))
        .unwrap();
    assert!(
        stopped.contains("statement interrupted: context canceled (request abandoned"),
        "{stopped}"
    );
    assert!(
        left.elapsed() < Duration::from_secs(10),
        "took {:?}",
        left.elapsed()
    );
    assert!(
        lines.iter().all(|l| !l.contains("200 in")),
        "answered anyway:\n{}",
        lines.join("\n")
    );
}

/// Runs `f` with a client of the test's PostgreSQL server.
fn with_postgres<T>(f: impl AsyncFnOnce(&tokio_postgres::Client) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (client, connection) =
            tokio_postgres::connect(&common::postgres::shared().url, tokio_postgres::NoTls)
                .await
                .expect("connect to the test server");
        tokio::spawn(connection);
        f(&client).await
    })
}

/// Backends running the example's `pg_sleep`, and backends left inside a
/// transaction, as `pg_stat_activity` shows them now.
fn busy_backends() -> (i64, i64) {
    with_postgres(async |client| {
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE state = 'active' AND query LIKE '%FROM pg_sleep%'),
                        count(*) FILTER (WHERE state LIKE 'idle in transaction%')
                 FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
                &[],
            )
            .await
            .expect("pg_stat_activity");
        (row.get(0), row.get(1))
    })
}

/// Waits (bounded by `patience`) until no backend runs the example's
/// query and none is inside a transaction; returns how long it took.
fn wait_quiet(patience: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let busy = busy_backends();
        if busy == (0, 0) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < patience,
            "after {patience:?}: {} backends still run the query, {} are in a transaction",
            busy.0,
            busy.1
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The PostgreSQL tests look at every backend of the shared server: one
/// at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn start_on_postgres(args: &[&str]) -> ExampleServer {
    let url = common::postgres::shared().url.clone();
    let mut all = vec!["--database", url.as_str()];
    all.extend_from_slice(args);
    start(&all)
}

#[test]
fn on_postgres_a_client_that_leaves_stops_the_query_on_the_server() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = start_on_postgres(&["--query", "30s", "--downstream", "30s"]);
    let stream = request(&server.addr, "/users/7");
    expect_lines(&server, &["SQL query running (PostgreSQL backend"]);
    assert_eq!(busy_backends().0, 1, "the query runs on the server");
    drop(stream);
    let left = Instant::now();
    let lines = expect_lines(&server, &["SQL query stopped after"]);
    let stopped = lines
        .iter()
        .find(|l| l.contains("SQL query stopped"))
        .unwrap();
    assert_timestamped(stopped, "test-req");
    assert!(
        stopped.contains("query canceled: context canceled (request abandoned")
            && stopped.contains("(SQLSTATE 57014)"),
        "{stopped}"
    );
    // The server runs nothing of it any more (integration/benches/postgres.rs
    // measures how soon: milliseconds).
    wait_quiet(PATIENCE);
    assert!(
        left.elapsed() < Duration::from_secs(10),
        "took {:?}",
        left.elapsed()
    );
    let log = common::postgres::shared().log_text();
    assert!(
        log.contains("ERROR:  canceling statement due to user request"),
        "{log}"
    );
}

#[test]
fn on_postgres_200_requests_with_30_percent_abandoned_leave_nothing_behind() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = start_on_postgres(&[
        "--query",
        "200ms",
        "--downstream",
        "10ms",
        "--pool-size",
        "16",
    ]);
    let addr = server.addr.clone();
    // A fixed seed: the same requests are abandoned on every run.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let plan: Vec<Option<Duration>> = (0..200)
        .map(|_| {
            let roll = next() % 100;
            let after = Duration::from_millis(next() % 400);
            (roll < 30).then_some(after)
        })
        .collect();
    let abandoned = plan.iter().filter(|p| p.is_some()).count();
    let answered: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = plan
            .iter()
            .enumerate()
            .map(|(i, leave)| {
                let addr = addr.clone();
                s.spawn(move || {
                    let mut stream = request(&addr, &format!("/users/{i}"));
                    match leave {
                        Some(after) => {
                            std::thread::sleep(*after);
                            drop(stream);
                            None
                        }
                        None => {
                            stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
                            let mut response = String::new();
                            stream.read_to_string(&mut response).expect("response");
                            Some(response)
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(answered.len(), 200 - abandoned);
    for response in &answered {
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
    // Every abandoned query is stopped, every connection back in the pool
    // idle and outside any transaction.
    wait_quiet(PATIENCE);
    // And the pool still works.
    let mut stream = request(&addr, "/users/1");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    eprintln!("{abandoned} of 200 requests abandoned");
}
