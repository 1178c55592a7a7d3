//! The processor's broker mode (issue 20) against a real nats-server
//! with JetStream: `processor serve --broker` and `processor worker`
//! processes, started by the test, driven over HTTP, with the faults the
//! issue names: a deadline that passes in the queue, a worker killed with
//! SIGKILL, a worker stopped with SIGTERM, a DELETE reaching two workers,
//! the server restarted mid-run, and one trace id across every process.
//!
//! Every wait is bounded; the service polls are 20 ms apart.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use common::nats::Nats;
use common::servers::{ExampleServer, Lines, Stderr};
use serde_json::{Value, json};

/// The bound of every wait that should end quickly.
const LIMIT: Duration = Duration::from_secs(30);

fn processor() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| common::example("processor")).clone()
}

/// `processor serve --broker URL` on a free port; killed on drop.
fn service(nats: &Nats, extra: &[&str]) -> ExampleServer {
    let mut command = Command::new(processor());
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--broker", &nats.url])
        .args([
            "--ack-wait",
            "2s",
            "--task-timeout",
            "30s",
            "--hard-limit",
            "60s",
        ])
        .args(extra);
    ExampleServer::start(command, Stderr::Capture, Lines::Discard)
}

/// `processor worker --broker URL --name NAME --workers SLOTS`; killed on drop.
fn worker(nats: &Nats, name: &str, slots: usize) -> ExampleServer {
    worker_with(nats, name, slots, &["--ack-wait", "2s"])
}

fn worker_with(nats: &Nats, name: &str, slots: usize, extra: &[&str]) -> ExampleServer {
    let mut command = Command::new(processor());
    command
        .args(["worker", "--broker", &nats.url, "--name", name])
        .args(["--workers", &slots.to_string()])
        .args(extra);
    ExampleServer::start_worker(command, Stderr::Capture)
}

/// One HTTP/1.1 exchange on a connection of its own: status and JSON body.
fn http(addr: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).expect("connect to the service");
    // Long enough for a `?wait=true` run of the measurement.
    stream
        .set_read_timeout(Some(Duration::from_secs(600)))
        .unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    let text = String::from_utf8_lossy(&raw);
    let (head, mut rest) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let mut body = String::new();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 || tail.len() < size {
                break;
            }
            body.push_str(&tail[..size]);
            rest = tail[size..].trim_start_matches("\r\n");
        }
    } else {
        body = rest.to_owned();
    }
    let json = serde_json::from_str(&body).unwrap_or(Value::Null);
    (status, json)
}

fn tasks(names: &[&str], duration: &str) -> Value {
    let tasks: Vec<Value> = names
        .iter()
        .map(|name| json!({ "name": name, "duration": duration }))
        .collect();
    json!({ "tasks": tasks })
}

/// Starts a run (not waiting for it) and returns its id.
fn start_run(service: &ExampleServer, body: &Value) -> String {
    let (status, created) = http(&service.addr, "POST", "/runs", Some(body));
    assert_eq!(status, 201, "POST /runs: {created}");
    created["id"].as_str().expect("a run id").to_owned()
}

/// Polls the run until `check` holds; fails after `limit` with the run.
/// A run not there yet (404: its request is still on its way) is polled
/// again like one that does not pass.
fn run_until(
    service: &ExampleServer,
    id: &str,
    limit: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let (status, run) = http(&service.addr, "GET", &format!("/runs/{id}"), None);
        assert!(
            status == 200 || status == 404,
            "GET /runs/{id}: {status} {run}"
        );
        if status == 200 && check(&run) {
            return run;
        }
        assert!(
            start.elapsed() < limit,
            "run {id} not as expected after {limit:?}: {run:#}\nservice log:\n{}",
            service.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn finished(run: &Value) -> bool {
    run["state"] == "finished"
}

fn task_states(run: &Value) -> Vec<(String, String, Option<String>)> {
    run["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or_default().to_owned(),
                t["state"].as_str().unwrap_or_default().to_owned(),
                t["worker"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn all_running_on(run: &Value, worker: &str) -> bool {
    task_states(run)
        .iter()
        .all(|(_, state, w)| state == "running" && w.as_deref() == Some(worker))
}

fn signal(process: &ExampleServer, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &process.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name}");
}

/// The exit code of `process`, waited for at most `LIMIT`.
fn exit_code(process: &mut ExampleServer) -> Option<i32> {
    let start = Instant::now();
    while start.elapsed() < LIMIT {
        if let Some(status) = process.child.try_wait().expect("try_wait") {
            return status.code();
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("process still running after {LIMIT:?}");
}

/// Lines of `logs` that say `message` about task `task`.
fn log_lines<'a>(logs: &'a str, message: &str, task: &str) -> Vec<&'a str> {
    let task = format!("task=\"{task}\"");
    logs.lines()
        .filter(|l| l.contains(message) && l.contains(&task))
        .collect()
}

/// Messages the workers' consumer still holds: (not yet delivered,
/// delivered and not acknowledged).
fn consumer_backlog(nats: &Nats) -> (u64, usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(&nats.url).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
            .get_consumer_from_stream("workers", "PROCESSOR_TASKS")
            .await
            .expect("the workers' consumer");
        let info = consumer.info().await.expect("consumer info");
        (info.num_pending, info.num_ack_pending)
    })
}

#[test]
fn tasks_run_on_workers_under_one_trace_id() {
    let nats = Nats::start();
    let service = service(&nats, &[]);
    let a = worker(&nats, "wa", 2);
    let b = worker(&nats, "wb", 2);
    let body = tasks(&["one", "two", "three", "four"], "300ms");
    let (status, run) = http(&service.addr, "POST", "/runs?wait=true", Some(&body));
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["summary"]["completed"], 4, "{run:#}");
    let trace_id = run["trace_id"].as_str().expect("a trace id");
    let request_id = run["request_id"].as_str().expect("a request id");
    let mut by_worker = std::collections::HashMap::new();
    for task in run["tasks"].as_array().unwrap() {
        let worker = task["worker"].as_str().expect("each task names its worker");
        assert!(["wa", "wb"].contains(&worker), "{task}");
        *by_worker.entry(worker.to_owned()).or_insert(0) += 1;
        assert!(task["queued_ms"].is_u64(), "{task}");
        assert_eq!(task["progress"], 100, "progress came back: {task}");
    }
    // Each worker logs its tasks under the run's trace and request ids.
    for (name, process) in [("wa", &a), ("wb", &b)] {
        let logs = process.logs();
        let started: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("task started"))
            .collect();
        assert_eq!(
            started.len(),
            by_worker.get(name).copied().unwrap_or(0),
            "{logs}"
        );
        for line in started {
            assert!(line.contains(trace_id), "{line}");
            assert!(line.contains(request_id), "{line}");
        }
    }
    let service_logs = service.logs();
    assert!(
        service_logs
            .lines()
            .filter(|l| l.contains("task ended"))
            .all(|l| l.contains(trace_id)),
        "{service_logs}"
    );
    assert_eq!(consumer_backlog(&nats), (0, 0), "every task acknowledged");
}

#[test]
fn a_task_whose_deadline_passed_in_the_queue_never_runs() {
    let nats = Nats::start();
    let service = service(&nats, &["--run-timeout", "300ms"]);
    let id = start_run(&service, &tasks(&["late"], "100ms"));
    // No worker for 500 ms: the run's deadline passes while the task waits.
    thread::sleep(Duration::from_millis(500));
    let late = worker(&nats, "late-worker", 1);
    let run = run_until(&service, &id, LIMIT, finished);
    let task = &run["tasks"][0];
    assert_eq!(task["state"], "timed_out", "{run:#}");
    assert_eq!(task["worker"], Value::Null, "{run:#}");
    assert_eq!(run["summary"]["timed_out"], 1);
    // The worker is up and the queue is empty: the task is gone for good.
    assert_eq!(consumer_backlog(&nats), (0, 0));
    assert!(!late.logs().contains("task started"), "{}", late.logs());
}

#[test]
fn a_killed_workers_task_runs_once_to_completion_on_another() {
    let nats = Nats::start();
    let service = service(&nats, &[]);
    let mut first = worker(&nats, "doomed", 1);
    let id = start_run(&service, &tasks(&["survivor"], "1500ms"));
    run_until(&service, &id, LIMIT, |run| all_running_on(run, "doomed"));
    signal(&first, "KILL");
    let _ = exit_code(&mut first);
    let second = worker(&nats, "heir", 1);
    // Redelivered once the lease (2 s) runs out.
    let run = run_until(&service, &id, LIMIT, finished);
    assert_eq!(
        task_states(&run),
        vec![(
            "survivor".to_owned(),
            "completed".to_owned(),
            Some("heir".to_owned())
        )],
        "{run:#}"
    );
    let logs = second.logs();
    assert_eq!(
        log_lines(&logs, "task ended", "survivor").len(),
        1,
        "{logs}"
    );
    assert!(log_lines(&first.logs(), "task ended", "survivor").is_empty());
    assert_eq!(consumer_backlog(&nats), (0, 0));
}

#[test]
fn sigterm_hands_a_workers_tasks_to_another_within_a_second() {
    let nats = Nats::start();
    let service = service(&nats, &[]);
    // A free slot: its pull request is open on the server when it stops,
    // and must not swallow the tasks it hands back.
    let mut leaving = worker(&nats, "leaving", 3);
    let id = start_run(&service, &tasks(&["left", "right"], "2s"));
    run_until(&service, &id, LIMIT, |run| all_running_on(run, "leaving"));
    let staying = worker(&nats, "staying", 2);
    let sent = Instant::now();
    signal(&leaving, "TERM");
    let moved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_until(&service, &id, LIMIT, |run| all_running_on(run, "staying"))
    }));
    assert!(
        moved.is_ok(),
        "not handed over; the leaving worker's log:\n{}\nthe staying one's:\n{}",
        leaving.logs(),
        staying.logs()
    );
    let taken = sent.elapsed();
    assert!(taken < Duration::from_secs(1), "taken after {taken:?}");
    assert_eq!(exit_code(&mut leaving), Some(0), "{}", leaving.logs());
    let run = run_until(&service, &id, LIMIT, finished);
    assert_eq!(run["summary"]["completed"], 2, "{run:#}");
    assert!(
        task_states(&run)
            .iter()
            .all(|(_, _, w)| w.as_deref() == Some("staying")),
        "{run:#}"
    );
    let left = leaving.logs();
    assert!(left.contains("handing it back"), "{left}");
    assert!(!left.contains("task ended"), "{left}");
}

#[test]
fn delete_cancels_tasks_on_two_workers_within_a_second() {
    let nats = Nats::start();
    let service = service(&nats, &[]);
    let a = worker(&nats, "wa", 1);
    let b = worker(&nats, "wb", 1);
    let id = start_run(&service, &tasks(&["x", "y", "queued"], "30s"));
    run_until(&service, &id, LIMIT, |run| {
        let states = task_states(run);
        let running: Vec<_> = states.iter().filter(|(_, s, _)| s == "running").collect();
        running.len() == 2 && running[0].2 != running[1].2
    });
    let sent = Instant::now();
    let (status, _) = http(&service.addr, "DELETE", &format!("/runs/{id}"), None);
    assert_eq!(status, 202);
    let run = run_until(&service, &id, LIMIT, finished);
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(1), "canceled after {took:?}");
    assert_eq!(run["summary"]["canceled"], 3, "{run:#}");
    for task in run["tasks"].as_array().unwrap() {
        assert_eq!(task["cause"], "canceled via API", "{task}");
    }
    for process in [&a, &b] {
        let logs = process.logs();
        assert!(
            logs.lines()
                .any(|l| l.contains("task ended") && l.contains("canceled")),
            "{logs}"
        );
    }
    // The task no worker took was purged: nothing left to deliver.
    assert_eq!(consumer_backlog(&nats), (0, 0));
}

#[test]
fn a_restarted_server_loses_no_task() {
    let nats = Nats::start();
    let service = service(&nats, &[]);
    let _a = worker(&nats, "wa", 2);
    let _b = worker(&nats, "wb", 2);
    let names = ["t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8"];
    let id = start_run(&service, &tasks(&names, "1s"));
    run_until(&service, &id, LIMIT, |run| {
        task_states(run).iter().any(|(_, s, _)| s == "running")
    });
    nats.stop();
    thread::sleep(Duration::from_millis(300));
    nats.restart();
    let run = run_until(&service, &id, Duration::from_secs(60), finished);
    assert_eq!(run["summary"]["completed"], names.len(), "{run:#}");
    assert_eq!(consumer_backlog(&nats), (0, 0));
}

/// Figures for docs/PERFORMANCE.md, not a check: 10,000 short tasks
/// (10 ms of work each; 40 runs of 250, a run's most, one after the
/// other) through the service, the stream and 1 to 4 worker processes of
/// 16 slots, beside the in-process pool with as many slots, in one
/// process run; then 1,000 tasks with a free slot each, for the time from
/// enqueue to start alone.
///
/// ```text
/// cargo test -p integration --release --test processor_broker -- --ignored --nocapture broker_figures
/// ```
#[test]
#[ignore = "a measurement; run by hand (docs/PERFORMANCE.md)"]
fn broker_figures() {
    let runs: usize = std::env::var("BROKER_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(40);
    let counts: usize = std::env::var("BROKER_WORKERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4);
    let slots = 16;
    let nats = Nats::start();
    let on_broker = service(&nats, &["--log-format", "json"]);
    let mut workers = Vec::new();
    println!("| path | workers × slots | tasks | tasks/s | queued p50 | queued p99 |");
    println!("|---|---|---:|---:|---:|---:|");
    for count in 1..=counts {
        workers.push(worker_with(
            &nats,
            &format!("w{count}"),
            slots,
            &["--log-format", "json"],
        ));
        let local = in_process(&["--workers", &(count * slots).to_string()]);
        for (path, server) in [("in-process", &local), ("broker", &on_broker)] {
            let (tasks, rate, p50, p99) = measure(server, runs, 250, "10ms");
            println!("| {path} | {count} × {slots} | {tasks} | {rate:.0} | {p50} ms | {p99} ms |");
        }
    }
    // A free slot for every task: the time from enqueue to start is the
    // path's own, not a wait for a slot.
    let wide = 256;
    drop(workers);
    let _wide_workers: Vec<_> = (0..4)
        .map(|i| worker_with(&nats, &format!("wide{i}"), wide, &["--log-format", "json"]))
        .collect();
    let local = in_process(&["--workers", &(4 * wide).to_string()]);
    for burst in [250, 25] {
        for (path, server) in [("in-process", &local), ("broker", &on_broker)] {
            let (tasks, rate, p50, p99) = measure(server, 1_000 / burst, burst, "50ms");
            println!(
                "| {path}, a free slot each, runs of {burst} | 4 × {wide} | {tasks} | {rate:.0} | {p50} ms | {p99} ms |"
            );
        }
    }
}

fn in_process(extra: &[&str]) -> ExampleServer {
    let mut command = Command::new(processor());
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--task-timeout", "30s"])
        .args(["--hard-limit", "60s"])
        .args(extra);
    ExampleServer::start(command, Stderr::Capture, Lines::Discard)
}

/// Runs `runs` runs of `per_run` tasks of `duration`, one after the other,
/// each to its end: tasks, tasks per second over the whole, and the 50th
/// and 99th percentiles of the tasks' `queued_ms`.
fn measure(
    server: &ExampleServer,
    runs: usize,
    per_run: usize,
    duration: &str,
) -> (usize, f64, u64, u64) {
    let names: Vec<String> = (0..per_run).map(|i| format!("t{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let body = tasks(&names, duration);
    let mut queued = Vec::new();
    let started = Instant::now();
    for _ in 0..runs {
        let (status, run) = http(&server.addr, "POST", "/runs?wait=true", Some(&body));
        assert_eq!(status, 201, "{run}");
        let tasks = run["tasks"].as_array().unwrap();
        assert_eq!(
            run["summary"]["completed"],
            tasks.len(),
            "{}",
            run["summary"]
        );
        queued.extend(
            tasks
                .iter()
                .map(|t| t["queued_ms"].as_u64().expect("queued_ms")),
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    queued.sort_unstable();
    let at = |q: f64| queued[((queued.len() as f64 * q) as usize).min(queued.len() - 1)];
    (
        queued.len(),
        queued.len() as f64 / seconds,
        at(0.50),
        at(0.99),
    )
}

#[test]
fn a_client_that_leaves_cancels_its_tasks_on_the_workers() {
    let nats = Nats::start();
    let service = service(&nats, &[]);
    let w = worker(&nats, "wa", 2);
    // A `?wait=true` run is part of its request; the client then leaves,
    // as Ctrl+C on curl would.
    let body = tasks(&["a", "b"], "30s").to_string();
    let mut client = TcpStream::connect(&service.addr).expect("connect");
    let head = format!(
        "POST /runs?wait=true HTTP/1.1\r\nhost: {}\r\nx-run-id: leaving\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        service.addr,
        body.len()
    );
    client.write_all(head.as_bytes()).unwrap();
    client.write_all(body.as_bytes()).unwrap();
    run_until(&service, "leaving", LIMIT, |run| all_running_on(run, "wa"));
    let left = Instant::now();
    drop(client);
    let run = run_until(&service, "leaving", LIMIT, finished);
    let took = left.elapsed();
    assert!(took < Duration::from_secs(1), "canceled after {took:?}");
    assert_eq!(run["summary"]["canceled"], 2, "{run:#}");
    let logs = w.logs();
    assert_eq!(
        logs.lines()
            .filter(|l| l.contains("task ended") && l.contains("canceled"))
            .count(),
        2,
        "{logs}"
    );
}
