//! `processor serve` as a client sees it: the example binary started on a
//! free loopback port, driven over real HTTP/1.1 connections (a small
//! client on `TcpStream`, so a test can also walk away mid-request).
//!
//! Every wait is bounded; task durations are a few hundred milliseconds.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use common::servers::{ExampleServer, Lines, Stderr};
use serde_json::{Value, json};

fn processor() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| common::example("processor")).clone()
}

/// A running server; killed on drop.
struct Server(ExampleServer);

impl Server {
    fn start(extra: &[&str]) -> Server {
        let mut command = Command::new(processor());
        command
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--task-timeout",
                "30s",
                "--hard-limit",
                "60s",
            ])
            .args(extra);
        Server(ExampleServer::start(
            command,
            Stderr::Capture,
            Lines::Discard,
        ))
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
        request(&self.addr, method, path, headers, body)
    }

    fn post_json(&self, path: &str, body: &Value) -> Response {
        self.request(
            "POST",
            path,
            &[("content-type", "application/json")],
            &body.to_string(),
        )
    }

    fn run(&self, id: &str) -> Value {
        let res = self.request("GET", &format!("/runs/{id}"), &[], "");
        assert_eq!(res.status, 200, "GET /runs/{id}: {}", res.body);
        res.json()
    }

    /// Polls `GET /runs/{id}` until `check` holds; fails after `limit`.
    fn run_until(&self, id: &str, limit: Duration, check: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let run = self.run(id);
            if check(&run) {
                return run;
            }
            assert!(
                start.elapsed() < limit,
                "run {id} not as expected after {limit:?}: {run:#}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// The exit code, or `None` if still running after `limit`.
    fn wait(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status.code().unwrap_or(-1));
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn logs(&self) -> String {
        self.0.logs()
    }
}

// The tests read `server.addr`; `wait` needs the child mutably.
impl Deref for Server {
    type Target = ExampleServer;
    fn deref(&self) -> &ExampleServer {
        &self.0
    }
}

impl DerefMut for Server {
    fn deref_mut(&mut self) -> &mut ExampleServer {
        &mut self.0
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    stream
}

fn send_head(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).expect("send head");
    stream.write_all(body.as_bytes()).expect("send body");
}

/// One request on a new connection; the whole response.
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    let mut stream = connect(addr);
    send_head(&mut stream, method, path, headers, body);
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

fn task(id: &str, name: &str, duration: &str) -> Value {
    json!({ "id": id, "name": name, "duration": duration })
}

fn created_id(res: &Response) -> String {
    assert_eq!(res.status, 201, "{}", res.body);
    res.json()["id"].as_str().expect("an id").to_owned()
}

fn error_field(res: &Response) -> String {
    res.json()["field"].as_str().unwrap_or("").to_owned()
}

#[test]
fn every_route_answers_with_its_documented_shape() {
    let server = Server::start(&["--time-scale", "0.05"]);
    // An empty body (with the JSON content type) runs the seed's tasks.
    let res = server.request("POST", "/runs", &[("content-type", "application/json")], "");
    let id = created_id(&res);
    let created = res.json();
    assert_eq!(created["request_id"].as_str().map(str::len), Some(32));
    assert_eq!(created["trace_id"].as_str().map(str::len), Some(32));
    assert_eq!(
        res.header("x-request-id"),
        created["request_id"].as_str(),
        "the request id is echoed"
    );
    // {} is the same as an empty body.
    let second = created_id(&server.post_json("/runs", &json!({})));

    let run = server.run(&id);
    for key in [
        "id",
        "request_id",
        "trace_id",
        "state",
        "started_at",
        "ended_at",
        "tasks",
    ] {
        assert!(run.get(key).is_some(), "run lacks {key}: {run:#}");
    }
    let names: Vec<&str> = run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Process Images",
            "Update Database",
            "Generate Report",
            "Send Emails"
        ]
    );
    for key in [
        "id",
        "name",
        "state",
        "progress",
        "attempts",
        "duration_ms",
        "deadline_ms",
        "cause",
        "subtasks",
    ] {
        assert!(run["tasks"][0].get(key).is_some(), "task lacks {key}");
    }

    let list = server.request("GET", "/runs", &[], "").json();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second.as_str(), id.as_str()], "newest first");

    // The seed at 1/20 speed: Send Emails (8 s -> 400 ms) outlives its
    // 5 s (-> 250 ms) timeout... but the flags give 30 s: all complete.
    let done = server.run_until(&id, Duration::from_secs(10), |r| r["state"] == "finished");
    assert!(done["ended_at"].is_string());
    for t in done["tasks"].as_array().unwrap() {
        assert_eq!(t["state"], "completed", "{t:#}");
        assert_eq!(t["progress"], 100);
        assert_eq!(t["attempts"], 1);
    }

    assert_eq!(
        server.request("GET", "/runs/no-such-run", &[], "").status,
        404
    );
    assert_eq!(
        server
            .request("DELETE", "/runs/no-such-run", &[], "")
            .status,
        404
    );
    assert_eq!(server.request("GET", "/nowhere", &[], "").status, 404);
    let finished = server.request("DELETE", &format!("/runs/{id}"), &[], "");
    assert_eq!(
        finished.status, 202,
        "DELETE of a finished run changes nothing"
    );
    assert_eq!(
        finished.json()["state"],
        "finished",
        "nothing was asked of it"
    );
    assert_eq!(server.run(&id)["cause"], Value::Null);

    let page = server.request("GET", "/", &[], "");
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.header("content-security-policy").is_some());
    for hook in [
        "id=\"start-seed\"",
        "id=\"runs\"",
        "id=\"connection\"",
        "cancel-run",
        "data-task-id",
        "EventSource(\"/events\")",
    ] {
        assert!(page.body.contains(hook), "dashboard lacks {hook}");
    }
}

#[test]
fn bad_requests_get_a_json_error_naming_the_field() {
    let server = Server::start(&[]);
    let cases = [
        (
            json!({"tasks": [{"name": "a", "duration": "soon"}]}),
            "tasks[0].duration",
        ),
        (json!({"tasks": [{"name": "a"}]}), "tasks[0]"),
        (
            json!({"tasks": [task("a", "A", "1s"), {"name": "b", "duration": 1, "priority": 0}]}),
            "tasks[1].priority",
        ),
        (
            json!({"tasks": [{"name": "a", "duration": 1, "colour": "red"}]}),
            "tasks[0].colour",
        ),
        (
            json!({"tasks": [task("x", "A", "1s"), task("x", "B", "1s")]}),
            "tasks[1].id",
        ),
        (
            json!({"tasks": [{"name": "a", "duration": 1, "timeout": 0}]}),
            "tasks[0].timeout",
        ),
        (json!({"tasks": []}), "tasks"),
        (json!({"tasks": "all"}), "tasks"),
        (json!({"jobs": []}), "jobs"),
        (json!([1, 2]), "body"),
        (
            json!({"tasks": [{"name": "a", "duration": 1, "peer": "ftp://example.com"}]}),
            "tasks[0].peer",
        ),
        (
            json!({"tasks": [{"name": "a", "duration": 1, "peer": "http://192.0.2.1:80"}]}),
            "tasks[0].peer",
        ),
    ];
    for (body, field) in cases {
        let res = server.post_json("/runs", &body);
        assert_eq!(res.status, 400, "{body}: {}", res.body);
        assert!(
            error_field(&res).starts_with(field),
            "{body}: field {:?}, expected {field}",
            res.json()["field"]
        );
        assert!(res.json()["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    // Nesting and size bounds.
    let mut deep = json!({"name": "leaf", "duration": 1});
    for _ in 0..5 {
        deep = json!({"name": "level", "duration": 1, "subtasks": [deep]});
    }
    let res = server.post_json("/runs", &json!({ "tasks": [deep] }));
    assert_eq!(res.status, 400);
    assert!(res.json()["error"].as_str().unwrap().contains("nested"));
    let many: Vec<Value> = (0..300)
        .map(|i| task(&format!("t{i}"), "T", "1s"))
        .collect();
    let res = server.post_json("/runs", &json!({ "tasks": many }));
    assert_eq!(res.status, 400);
    assert!(res.json()["error"].as_str().unwrap().contains("at most"));

    // Not JSON at all.
    let res = server.request(
        "POST",
        "/runs",
        &[("content-type", "application/json")],
        "{\"tasks\": [",
    );
    assert_eq!((res.status, error_field(&res).as_str()), (400, "body"));
    let res = server.request(
        "POST",
        "/runs?wait=maybe",
        &[("content-type", "application/json")],
        "{}",
    );
    assert_eq!((res.status, error_field(&res).as_str()), (400, "wait"));
    // Wrong media type, too large.
    let res = server.request("POST", "/runs", &[("content-type", "text/plain")], "{}");
    assert_eq!(res.status, 415);
    assert_eq!(server.request("POST", "/runs", &[], "{}").status, 415);
    let res = server.request(
        "DELETE",
        "/runs/x",
        &[("content-type", "text/plain")],
        "stop",
    );
    assert_eq!(res.status, 415);
    // Over 1 MiB: refused from the declared length, before the body is
    // sent (the client waits for `100 Continue`, as curl does for large
    // bodies; sending it anyway could race the server's close).
    let mut stream = connect(&server.addr);
    let head = "POST /runs HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\
                content-type: application/json\r\nexpect: 100-continue\r\n\
                content-length: 2097152\r\n\r\n";
    stream.write_all(head.as_bytes()).expect("send head");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    let res = parse_response(&raw);
    assert_eq!(res.status, 413, "{res:?}");
    assert_eq!(error_field(&res), "body");

    // None of these created a run.
    let list = server.request("GET", "/runs", &[], "").json();
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list:#}");
    // And the server is still up.
    assert_eq!(server.request("GET", "/runs", &[], "").status, 200);
}

#[test]
fn wait_true_answers_with_the_finished_run_and_runs_go_concurrently() {
    let server = Arc::new(Server::start(&[]));
    let body = json!({"tasks": [
        task("a", "A", "300ms"),
        {"id": "b", "name": "B", "duration": "200ms",
         "subtasks": [task("b1", "B1", "100ms"), task("b2", "B2", "150ms")]},
        {"id": "slow", "name": "Slow", "duration": "5s", "timeout": "200ms"},
    ]});
    let started = Instant::now();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let server = server.clone();
            let body = body.clone();
            thread::spawn(move || server.post_json("/runs?wait=true", &body))
        })
        .collect();
    let mut ids = Vec::new();
    for handle in handles {
        let res = handle.join().expect("client thread");
        assert_eq!(res.status, 201, "{}", res.body);
        let run = res.json();
        assert_eq!(run["state"], "finished");
        let tasks = run["tasks"].as_array().unwrap();
        assert_eq!(tasks[0]["state"], "completed");
        assert_eq!(tasks[1]["state"], "completed");
        assert_eq!(tasks[1]["subtasks"][1]["state"], "completed");
        assert_eq!(tasks[1]["subtasks"][1]["parent"], "b");
        assert_eq!(tasks[2]["state"], "timed_out");
        assert_eq!(tasks[2]["cause"], "context deadline exceeded");
        assert_eq!(run["summary"]["timed_out"], 1);
        ids.push(run["id"].as_str().unwrap().to_owned());
    }
    // Four runs of ~0.5 s each, at once, with 3 workers each.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4);
}

#[test]
fn delete_cancels_a_run_within_a_second() {
    let server = Server::start(&[]);
    let body = json!({"tasks": [task("long", "Long", "20s"), task("later", "Later", "20s"),
        task("queued", "Queued", "1s"), task("queued2", "Queued 2", "1s")]});
    let id = created_id(&server.post_json("/runs", &body));
    server.run_until(&id, Duration::from_secs(5), |r| {
        r["tasks"][0]["state"] == "running"
    });
    let res = server.request("DELETE", &format!("/runs/{id}"), &[], "");
    assert_eq!(res.status, 202);
    let canceled_at = Instant::now();
    // The answer says what was asked, in the run's usual shape.
    let answer = res.json();
    assert_eq!(answer["state"], "cancel_requested", "{answer:#}");
    assert_eq!(answer["id"], id.as_str());
    assert_eq!(
        answer["tasks"].as_array().map(Vec::len),
        Some(4),
        "{answer:#}"
    );
    // Asked again while it ends: the same answer, or the finished run.
    let again = server.request("DELETE", &format!("/runs/{id}"), &[], "");
    assert_eq!(again.status, 202);
    let state = again.json()["state"].clone();
    assert!(
        state == "cancel_requested" || state == "finished",
        "{state}"
    );
    let run = server.run_until(&id, Duration::from_secs(1), |r| r["state"] == "finished");
    assert!(canceled_at.elapsed() < Duration::from_secs(1));
    assert_eq!(run["cause"], "canceled via API");
    for t in run["tasks"].as_array().unwrap() {
        assert_eq!(t["state"], "canceled", "{t:#}");
        assert_eq!(t["cause"], "canceled via API");
    }
    let metrics = server.request("GET", "/metrics", &[], "").body;
    assert!(
        metrics.contains("processor_tasks_total{outcome=\"canceled\"} 4"),
        "{metrics}"
    );
}

#[test]
fn a_client_leaving_a_waited_run_cancels_it() {
    let server = Server::start(&[]);
    let mut stream = connect(&server.addr);
    let body = json!({"tasks": [task("long", "Long", "20s")]}).to_string();
    send_head(
        &mut stream,
        "POST",
        "/runs?wait=true",
        &[
            ("content-type", "application/json"),
            ("x-request-id", "leaving-client-1"),
        ],
        &body,
    );
    // The run starts under the request's context...
    let start = Instant::now();
    let id = loop {
        let list = server.request("GET", "/runs", &[], "").json();
        if let Some(run) = list
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["request_id"] == "leaving-client-1")
        {
            break run["id"].as_str().unwrap().to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the run did not start"
        );
        thread::sleep(Duration::from_millis(20));
    };
    server.run_until(&id, Duration::from_secs(5), |r| {
        r["tasks"][0]["state"] == "running"
    });
    // ... and the client walks away.
    drop(stream);
    let run = server.run_until(&id, Duration::from_secs(2), |r| r["state"] == "finished");
    assert_eq!(run["tasks"][0]["state"], "canceled");
    let cause = run["cause"].as_str().unwrap_or("");
    assert!(cause.contains("request abandoned"), "cause: {cause}");
    assert_eq!(run["tasks"][0]["cause"], run["cause"]);
}

#[test]
fn a_remote_task_runs_on_the_peer_in_the_same_trace() {
    let b = Server::start(&["--log-format", "json"]);
    let a = Server::start(&["--peer", &b.url(), "--log-format", "json"]);
    let body = json!({"tasks": [
        {"id": "far", "name": "Far <b>away</b>", "duration": "20s", "timeout": "15s", "peer": b.url()},
        task("near", "Near", "20s"),
    ]});
    let created = a.post_json("/runs", &body);
    let id = created_id(&created);
    let trace_id = created.json()["trace_id"].as_str().unwrap().to_owned();
    let a_run = a.run_until(&id, Duration::from_secs(5), |r| {
        r["tasks"][0]["state"] == "running"
    });
    assert_eq!(a_run["tasks"][0]["peer"], b.url());
    // A's task shows the progress B reports (1% per 200 ms of 20 s).
    let moving = a.run_until(&id, Duration::from_secs(10), |r| {
        r["tasks"][0]["progress"].as_u64().is_some_and(|p| p > 0)
    });
    assert!(moving["tasks"][0]["progress"].as_u64().unwrap() < 100);

    // B's run: same trace and request id, a deadline no later than A's.
    let start = Instant::now();
    let b_run = loop {
        let list = b.request("GET", "/runs", &[], "").json();
        if let Some(run) = list.as_array().unwrap().first()
            && run["tasks"][0]["state"] == "running"
        {
            break run.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no run on B: {list:#}"
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(b_run["trace_id"], trace_id.as_str());
    assert_eq!(b_run["request_id"], a_run["request_id"]);
    assert_eq!(b_run["tasks"][0]["name"], "Far <b>away</b>");
    let a_deadline = a_run["tasks"][0]["deadline_ms"].as_u64().unwrap();
    let b_deadline = b_run["deadline_ms"]
        .as_u64()
        .expect("B's run has the caller's deadline");
    assert!(
        b_deadline <= a_deadline,
        "B {b_deadline} ms > A {a_deadline} ms"
    );
    assert!(
        b_deadline > a_deadline - 5_000,
        "B {b_deadline} ms, A {a_deadline} ms"
    );
    assert!(b_run["tasks"][0]["deadline_ms"].as_u64().unwrap() <= a_deadline);

    // DELETE on A reaches B within a second, with A's cause.
    let b_id = b_run["id"].as_str().unwrap().to_owned();
    assert_eq!(
        a.request("DELETE", &format!("/runs/{id}"), &[], "").status,
        202
    );
    let at = Instant::now();
    let b_done = b.run_until(&b_id, Duration::from_secs(1), |r| r["state"] == "finished");
    assert!(at.elapsed() < Duration::from_secs(1));
    assert_eq!(b_done["tasks"][0]["state"], "canceled");
    assert_eq!(b_done["cause"], "canceled via API");
    let a_done = a.run_until(&id, Duration::from_secs(2), |r| r["state"] == "finished");
    assert_eq!(a_done["tasks"][0]["state"], "canceled");

    // Both logs carry the trace id: they join on it.
    thread::sleep(Duration::from_millis(100));
    for (name, server) in [("A", &a), ("B", &b)] {
        let lines: Vec<Value> = server
            .logs()
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {l}"))
            })
            .collect();
        assert!(
            lines
                .iter()
                .all(|l| l.get("request_id").is_some() && l.get("trace_id").is_some())
        );
        let joined = lines
            .iter()
            .filter(|l| l["trace_id"] == trace_id.as_str())
            .count();
        assert!(joined >= 3, "{name} has {joined} lines of the trace");
    }
}

#[test]
fn sigterm_drains_runs_then_cancels_them_at_the_grace_period() {
    // A short run in flight finishes within the grace period: exit 0.
    let mut server = Server::start(&["--grace", "5s"]);
    let id =
        created_id(&server.post_json("/runs", &json!({"tasks": [task("t", "Short", "400ms")]})));
    server.run_until(&id, Duration::from_secs(5), |r| {
        r["tasks"][0]["state"] == "running"
    });
    server.signal("TERM");
    assert_eq!(
        server.wait(Duration::from_secs(5)),
        Some(0),
        "{}",
        server.logs()
    );
    assert!(
        server.logs().contains("state=\"completed\""),
        "{}",
        server.logs()
    );

    // A long one is canceled when the grace period is over: exit 0 too.
    let mut server = Server::start(&["--grace", "300ms"]);
    let id = created_id(&server.post_json("/runs", &json!({"tasks": [task("t", "Long", "30s")]})));
    server.run_until(&id, Duration::from_secs(5), |r| {
        r["tasks"][0]["state"] == "running"
    });
    let at = Instant::now();
    server.signal("TERM");
    assert_eq!(
        server.wait(Duration::from_secs(5)),
        Some(0),
        "{}",
        server.logs()
    );
    assert!(at.elapsed() >= Duration::from_millis(300));
    let logs = server.logs();
    assert!(
        logs.contains("state=\"canceled\"") && logs.contains("server shutting down"),
        "{logs}"
    );
}

#[test]
fn a_second_signal_exits_at_once_with_130() {
    let mut server = Server::start(&["--grace", "30s"]);
    let id = created_id(&server.post_json("/runs", &json!({"tasks": [task("t", "Long", "30s")]})));
    server.run_until(&id, Duration::from_secs(5), |r| {
        r["tasks"][0]["state"] == "running"
    });
    server.signal("INT");
    thread::sleep(Duration::from_millis(200));
    assert_eq!(server.wait(Duration::ZERO), None, "still draining");
    server.signal("INT");
    assert_eq!(server.wait(Duration::from_secs(3)), Some(130));
}

#[test]
fn metrics_parse_as_prometheus_text() {
    let server = Server::start(&[]);
    let body = json!({"tasks": [task("ok", "Ok", "100ms"),
        {"id": "flaky", "name": "Flaky", "duration": "100ms", "fail_times": 1}]});
    assert_eq!(server.post_json("/runs?wait=true", &body).status, 201);
    let res = server.request("GET", "/metrics", &[], "");
    assert_eq!(res.status, 200);
    let lines = res.body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");
    let names: Vec<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for name in [
        "processor_task_duration_seconds_count",
        "processor_tasks_total",
        "processor_task_retries_total",
        "processor_deadline_extensions_total",
        "processor_runs_in_flight",
        "processor_http_requests_total",
    ] {
        assert!(names.contains(&name), "no {name} in {names:?}");
    }
    let value = |metric: &str, label: (&str, &str)| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && s.labels.get(label.0) == Some(label.1))
            .map(|s| match s.value {
                // OpenMetrics names a counter's family without `_total`, which
                // this parser does not match up: the sample is then untyped.
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    assert_eq!(
        value("processor_tasks_total", ("outcome", "completed")),
        Some(2.0)
    );
    assert_eq!(
        value("processor_http_requests_total", ("route", "/runs")),
        Some(1.0)
    );
    assert!(res.body.contains("processor_task_retries_total 1"));
}

#[test]
fn events_stream_a_new_run() {
    let server = Server::start(&[]);
    let mut stream = connect(&server.addr);
    send_head(
        &mut stream,
        "GET",
        "/events",
        &[("accept", "text/event-stream")],
        "",
    );
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    reader.read_line(&mut head).expect("status line");
    assert!(head.contains(" 200 "), "{head}");
    let id =
        created_id(&server.post_json("/runs", &json!({"tasks": [task("t", "<i>T</i>", "100ms")]})));
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut event = String::new();
        for line in reader.lines().map_while(Result::ok) {
            if let Some(name) = line.strip_prefix("event: ") {
                event = name.to_owned();
            } else if let Some(data) = line.strip_prefix("data: ")
                && tx.send((event.clone(), data.to_owned())).is_err()
            {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while !seen.iter().any(|(e, d): &(String, Value)| {
        e == "run" && d["id"] == id.as_str() && d["state"] == "finished"
    }) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((event, data)) => {
                seen.push((event, serde_json::from_str(&data).expect("JSON data")))
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                panic!("events so far: {seen:?}")
            }
        }
    }
    assert!(
        seen.iter()
            .any(|(e, d)| e == "run" && d["id"] == id.as_str() && d["state"] == "running")
    );
    assert!(seen.iter().any(|(e, d)| e == "task"
        && d["run_id"] == id.as_str()
        && d["task"]["state"] == "completed"
        && d["task"]["name"] == "<i>T</i>"));
}

#[test]
fn a_markup_name_is_served_as_data() {
    let server = Server::start(&[]);
    let name = "<img src=x onerror=alert(1)>";
    let res = server.post_json(
        "/runs?wait=true",
        &json!({"tasks": [task("x", name, "50ms")]}),
    );
    assert_eq!(res.status, 201);
    assert!(
        res.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(
        res.json()["tasks"][0]["name"],
        name,
        "the name comes back as it was sent"
    );
    let page = server.request("GET", "/", &[], "").body;
    assert!(!page.contains("innerHTML") && !page.contains("insertAdjacentHTML"));
    assert!(page.contains("textContent"));
    // Log lines quote it rather than pass it through raw.
    thread::sleep(Duration::from_millis(100));
    assert!(
        server.logs().contains(&format!("task=\"{name}\"")),
        "{}",
        server.logs()
    );
}

#[test]
fn a_wrong_method_gets_a_json_405_naming_the_allowed_ones() {
    let server = Server::start(&[]);
    let cases = [
        ("PUT", "/runs", &["GET", "POST"][..]),
        ("DELETE", "/runs", &["GET", "POST"]),
        ("PATCH", "/runs/run-1", &["GET", "DELETE"]),
        ("POST", "/runs/run-1", &["GET", "DELETE"]),
        ("POST", "/metrics", &["GET"]),
        ("DELETE", "/events", &["GET"]),
        ("POST", "/", &["GET"]),
    ];
    for (method, path, allowed) in cases {
        let res = server.request(method, path, &[("content-type", "application/json")], "{}");
        assert_eq!(res.status, 405, "{method} {path}: {res:?}");
        assert!(
            res.header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{method} {path}: {res:?}"
        );
        let allow: Vec<&str> = res
            .header("allow")
            .unwrap_or_else(|| panic!("{method} {path}: no allow header: {res:?}"))
            .split(',')
            .map(str::trim)
            .collect();
        for m in allowed {
            assert!(allow.contains(m), "{method} {path}: allow {allow:?}");
        }
        assert!(!allow.contains(&method), "{method} {path}: allow {allow:?}");
        let error = res.json();
        assert_eq!(error["field"], "method", "{method} {path}: {error:#}");
        let message = error["error"].as_str().unwrap_or("");
        assert!(
            message.starts_with(method) && allowed.iter().all(|m| message.contains(m)),
            "{method} {path}: {message:?}"
        );
        assert!(res.header("x-request-id").is_some(), "{res:?}");
    }
    // Nothing was started by them.
    let list = server.request("GET", "/runs", &[], "").json();
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list:#}");
}

#[test]
fn a_parents_progress_includes_its_subtasks_and_an_ended_task_is_never_full() {
    let server = Server::start(&[]);
    let body = json!({"tasks": [{"id": "p", "name": "P", "duration": "100ms",
        "subtasks": [task("s1", "S1", "20s"), task("s2", "S2", "20s")]}]});
    let id = created_id(&server.post_json("/runs", &body));
    // Each GET is one snapshot: the parent's own work (done, 100) is one
    // share of three.
    let run = server.run_until(&id, Duration::from_secs(10), |r| {
        let subtasks = r["tasks"][0]["subtasks"].as_array().unwrap();
        subtasks
            .iter()
            .all(|s| s["state"] == "running" && s["progress"].as_u64() >= Some(2))
    });
    let parent = &run["tasks"][0];
    let share = |r: &Value| r["progress"].as_u64().unwrap();
    let subtasks = parent["subtasks"].as_array().unwrap();
    assert_eq!(
        share(parent),
        (100 + share(&subtasks[0]) + share(&subtasks[1])) / 3,
        "{run:#}"
    );
    assert!(share(parent) < 50, "{run:#}");

    server.request("DELETE", &format!("/runs/{id}"), &[], "");
    let run = server.run_until(&id, Duration::from_secs(2), |r| r["state"] == "finished");
    let parent = &run["tasks"][0];
    assert_eq!(parent["state"], "canceled");
    let subtasks = parent["subtasks"].as_array().unwrap();
    assert_eq!(
        share(parent),
        (100 + share(&subtasks[0]) + share(&subtasks[1])) / 3,
        "{run:#}"
    );
    for t in [parent, &subtasks[0], &subtasks[1]] {
        assert!((1..100).contains(&share(t)), "{t:#}");
    }
}
