//! Runs `examples/http_server.rs` as a user would (issue 9): a request is
//! answered with the query's row and the downstream's profile, and a
//! client that leaves stops both the SQL query (interrupted through
//! `after_func`) and the downstream call (its own request context ends).
//! Servers bind 127.0.0.1:0; every wait is bounded.

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
    // Every line of the request carries its id.
    for line in lines
        .iter()
        .filter(|l| l.contains("/users/2") || l.contains("SQL"))
    {
        assert!(line.starts_with("[test-req]"), "{line}");
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
            "SQL query interrupted: request abandoned",
            "downstream: request context ended: request abandoned",
            "SQL query stopped after",
        ],
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
