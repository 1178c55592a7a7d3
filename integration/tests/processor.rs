//! Runs the `processor` example as a user would: as a process, reading its
//! output and sending it signals. `cargo test` builds the examples first.
//!
//! Durations are shrunk with `--time-scale` so that each run takes a
//! second or two; bounds are generous for a loaded machine, and no test
//! depends on tight timing.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// The processor example, built if needed (see `common::example`).
fn processor() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| common::example("processor")).clone()
}

struct Output {
    /// The `--time-scale` of a `run_scaled` run.
    scale: String,
    status: ExitStatus,
    stdout: Vec<String>,
    stderr: String,
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(processor())
        .args(args)
        .output()
        .expect("run the processor");
    Output {
        scale: String::new(),
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `[req-YYYYMMDD-HHMMSS]` (a suffix before `]` would be fine too).
fn has_request_id(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("[req-") else {
        return false;
    };
    let bytes = rest.as_bytes();
    bytes.len() > 16
        && bytes[..8].iter().all(u8::is_ascii_digit)
        && bytes[8] == b'-'
        && bytes[9..15].iter().all(u8::is_ascii_digit)
        && rest[15..].contains("] ")
}

/// The text after the request ID.
fn body(line: &str) -> &str {
    line.split_once("] ").map_or(line, |(_, text)| text)
}

fn task_lines(out: &Output) -> Vec<&str> {
    out.stdout
        .iter()
        .filter(|l| l.starts_with("[req-"))
        .map(String::as_str)
        .collect()
}

fn count(lines: &[&str], text: &str) -> usize {
    lines.iter().filter(|l| body(l) == text).count()
}

fn position(lines: &[String], text: &str) -> Option<usize> {
    lines.iter().position(|l| body(l) == text)
}

/// Fails the enclosing check (a `Result<(), String>` function) with a
/// message and the output that did not match.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Runs the processor with `args` plus `--time-scale <scale>` for each of
/// `scales` in turn, until `check` accepts the output. The first scale
/// keeps the test fast; the next ones only matter when a very busy machine
/// stalled the fast run past a deadline. A real regression fails them all.
fn run_scaled(args: &[&str], scales: &[&str], check: impl Fn(&Output) -> Result<(), String>) {
    let mut failures = Vec::new();
    for scale in scales {
        let mut all = args.to_vec();
        all.extend(["--time-scale", scale]);
        let mut out = run(&all);
        out.scale = (*scale).to_owned();
        match check(&out) {
            Ok(()) => return,
            Err(why) => {
                let report = format!(
                    "--time-scale {scale}: {why}\nstatus: {:?}\nstdout:\n{}\nstderr:\n{}",
                    out.status,
                    out.stdout.join("\n"),
                    out.stderr
                );
                eprintln!("{report}\n(retrying slower)");
                failures.push(report);
            }
        }
    }
    panic!("no run passed:\n{}", failures.join("\n\n"));
}

#[test]
fn default_run_matches_the_seed_sample() {
    run_scaled(&["--progress", "plain"], &["0.3", "1"], check_default_run);
}

fn check_default_run(out: &Output) -> Result<(), String> {
    ensure!(out.status.success(), "exit status");
    let lines = task_lines(out);
    for line in &lines {
        ensure!(has_request_id(line), "no request ID: {line}");
    }
    // One request ID for the whole run.
    let ids: std::collections::HashSet<_> = lines
        .iter()
        .map(|l| l.split_once(']').map(|p| p.0))
        .collect();
    ensure!(ids.len() == 1, "several request IDs");

    let starts: Vec<&str> = lines
        .iter()
        .map(|l| body(l))
        .filter(|b| b.starts_with("Starting task:"))
        .collect();
    // Three workers: the three most urgent start first, in priority order.
    ensure!(
        starts
            == [
                "Starting task: Process Images (Priority: 1)",
                "Starting task: Update Database (Priority: 1)",
                "Starting task: Generate Report (Priority: 2)",
                "Starting task: Send Emails (Priority: 3)",
            ],
        "start lines: {starts:#?}"
    );
    for name in ["Process Images", "Update Database", "Generate Report"] {
        ensure!(
            count(&lines, &format!("✅ Completed: {name}")) == 1,
            "{name} not completed once"
        );
    }
    let timeout = "❌ Canceled: Send Emails - Reason: context deadline exceeded";
    ensure!(count(&lines, timeout) == 1, "no `{timeout}`");
    let outcomes = lines
        .iter()
        .filter(|l| body(l).starts_with(['✅', '❌']))
        .count();
    ensure!(outcomes == 4, "{outcomes} outcome lines");
    ensure!(
        out.stdout.last().map(String::as_str) == Some("✅ All tasks completed or canceled"),
        "last line"
    );
    ensure!(
        out.stdout
            .iter()
            .any(|l| l.starts_with("Tasks: 4 | completed: 3 | timeout rate: 25.0%")),
        "metrics rates"
    );

    // Plain progress lines, none after a task's end.
    ensure!(
        lines
            .iter()
            .any(|l| body(l).starts_with("Progress: Send Emails")),
        "no progress lines"
    );
    let canceled = position(&out.stdout, timeout);
    let last_progress = out
        .stdout
        .iter()
        .rposition(|l| body(l).starts_with("Progress: Send Emails"));
    ensure!(last_progress < canceled, "progress after the task ended");
    Ok(())
}

/// Reads a child's stdout on a thread, line by line.
fn lines_of(child: &mut Child) -> Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_with_deadline(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(10));
    }
    None
}

/// `expected`: the exit code, 128 + the signal's number, so that
/// `processor && next` stops.
fn shutdown_on(signal: &str, expected: i32) {
    // Slow tasks: none can finish before the signal, however loaded the machine.
    let mut child = Command::new(processor())
        .args(["--time-scale", "10", "--progress", "off"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the processor");
    let rx = lines_of(&mut child);

    let mut seen = Vec::new();
    let started_by = Instant::now() + Duration::from_secs(30);
    while seen
        .iter()
        .filter(|l: &&String| body(l).starts_with("Starting task:"))
        .count()
        < 3
    {
        let left = started_by.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("tasks did not start: {seen:#?}");
            }
        }
    }

    let pid = child.id().to_string();
    let sent = Instant::now();
    let kill = Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("run kill");
    assert!(kill.success());
    let status = wait_with_deadline(&mut child, Duration::from_secs(5));
    let took = sent.elapsed();
    let Some(status) = status else {
        let _ = child.kill();
        panic!("still running 5 s after {signal}");
    };
    loop {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(line) => seen.push(line),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("stdout not closed: {seen:#?}"),
        }
    }
    assert_eq!(status.code(), Some(expected), "{signal}: status {status:?}");
    assert!(
        took < Duration::from_secs(5),
        "{signal}: exit took {took:?}"
    );

    let shutdown = seen
        .iter()
        .position(|l| l == "🚨 Shutdown signal received, canceling all tasks...")
        .unwrap_or_else(|| panic!("no shutdown line: {seen:#?}"));
    // Every task, running or still queued, is reported canceled, after
    // the shutdown line; none completed.
    for name in [
        "Process Images",
        "Update Database",
        "Generate Report",
        "Send Emails",
    ] {
        let line = format!("❌ Canceled: {name} - Reason: context canceled");
        let at =
            position(&seen, &line).unwrap_or_else(|| panic!("{signal}: no `{line}`: {seen:#?}"));
        assert!(at > shutdown, "{seen:#?}");
        assert!(has_request_id(&seen[at]));
    }
    assert!(
        !seen.iter().any(|l| body(l).starts_with("✅ Completed")),
        "{seen:#?}"
    );
    assert_eq!(
        seen.last().map(String::as_str),
        Some("✅ All tasks completed or canceled")
    );
}

#[test]
fn sigint_cancels_every_task_and_exits_promptly() {
    shutdown_on("-INT", 130);
}

#[test]
fn sigterm_cancels_every_task_and_exits_promptly() {
    shutdown_on("-TERM", 143);
}

#[test]
fn a_second_signal_never_delays_the_exit() {
    let mut child = Command::new(processor())
        .args(["--time-scale", "10", "--progress", "off"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the processor");
    let rx = lines_of(&mut child);
    let started = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    assert!(body(&started).starts_with("Starting task:"), "{started:?}");
    let pid = child.id().to_string();
    for signal in ["-INT", "-TERM"] {
        let kill = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("run kill");
        assert!(kill.success());
    }
    let status = wait_with_deadline(&mut child, Duration::from_secs(5));
    let Some(status) = status else {
        let _ = child.kill();
        panic!("still running 5 s after two signals");
    };
    // Either the graceful shutdown won the race (130, for the SIGINT that
    // started it) or the second signal cut it short (143, SIGTERM).
    assert!(matches!(status.code(), Some(130 | 143)), "{status:?}");
}

fn sample(name: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/processor/tasks");
    dir.join(name).to_string_lossy().into_owned()
}

#[test]
fn toml_tasks_file_with_subtasks_retries_and_an_extension() {
    let file = sample("pipeline.toml");
    run_scaled(
        &["--tasks", &file, "--progress", "off"],
        &["0.5", "1"],
        |out| {
            ensure!(out.status.success(), "exit status");
            let lines = task_lines(out);
            ensure!(
                lines.iter().all(|l| has_request_id(l)),
                "a line without request ID"
            );
            for name in [
                "Build Release",
                "Build Release / Linux",
                "Build Release / macOS",
                "Build Release / Windows",
                "Migrate Ledger",
                "Warm CDN Cache",
                "Notify Subscribers",
            ] {
                ensure!(
                    count(&lines, &format!("✅ Completed: {name}")) == 1,
                    "{name} not completed"
                );
            }
            // Subtasks start only after their parent did.
            let parent = position(&out.stdout, "Starting task: Build Release (Priority: 1)");
            let child = position(&out.stdout, "Starting subtask: Build Release / Linux");
            ensure!(parent.is_some() && parent < child, "subtask start");
            let retries = lines
                .iter()
                .filter(|l| body(l).starts_with("🔁 Retrying: Warm CDN Cache"))
                .count();
            ensure!(retries == 2, "{retries} retries of Warm CDN Cache");
            ensure!(
                lines
                    .iter()
                    .any(|l| body(l).starts_with("⏳ Deadline extended: Migrate Ledger")),
                "no deadline extension"
            );
            ensure!(
                out.stdout.last().map(String::as_str) == Some("✅ All tasks completed or canceled"),
                "last line"
            );
            Ok(())
        },
    );
}

#[test]
fn json_tasks_file_with_failures_and_timeouts() {
    let file = sample("outage.json");
    run_scaled(
        &["--tasks", &file, "--progress", "off"],
        &["0.3", "1"],
        |out| {
            // A task failed after its retries: exit code 1.
            ensure!(out.status.code() == Some(1), "exit status");
            let lines = task_lines(out);
            let expected = [
                "✅ Completed: Sync Inventory / EU Warehouse",
                "❌ Failed: Sync Inventory / US Warehouse - Reason: simulated failure halfway",
                // The failing subtask cancels its sibling through the group context.
                "❌ Canceled: Sync Inventory / APAC Warehouse - Reason: context canceled",
                // A critical task still stops at its hard limit.
                "❌ Canceled: Archive Logs - Reason: context deadline exceeded",
                // Its own 2 s timeout.
                "❌ Canceled: Rebuild Search Index - Reason: context deadline exceeded",
            ];
            for line in expected {
                ensure!(count(&lines, line) == 1, "no `{line}`");
            }
            ensure!(
                lines
                    .iter()
                    .any(|l| body(l).starts_with("❌ Failed: Sync Inventory - Reason: subtask")),
                "parent not failed"
            );
            ensure!(
                out.stdout.last().map(String::as_str)
                    == Some("❌ All tasks finished; 1 of 3 failed"),
                "last line"
            );
            // The hard limit ended Archive Logs, and the table says so, with
            // the deadline it ended with (10 s, scaled), not the first one.
            let row = out
                .stdout
                .iter()
                .find(|l| l.starts_with("Archive Logs "))
                .ok_or("no Archive Logs row")?;
            ensure!(
                row.contains("hard limit of") && row.contains("for critical tasks"),
                "no hard limit in the Detail column: {row}"
            );
            let scale: f64 = out.scale.parse().unwrap_or(1.0);
            let deadline = format!("{:.2}s", 10.0 * scale);
            ensure!(
                row.split_whitespace().any(|cell| cell == deadline),
                "the Deadline column is not the final {deadline}: {row}"
            );
            Ok(())
        },
    );
}

/// Issue 8, A1: a subtask's own timeout holds even while its critical
/// parent's deadline is extended past it (the parent's 3 s deadline is
/// sooner than the subtask's 7 s when the subtask starts; extensions then
/// move the parent's later, and the subtask must still end at 7 s rather
/// than run its full 8 s).
#[test]
fn a_subtask_times_out_under_a_critical_parent_whose_deadline_moves() {
    let file = scratch(
        "moving-parent.toml",
        r#"
[[tasks]]
id = "deploy"
name = "Deploy"
duration = "1s"
timeout = "3s"
priority = 1
critical = true

  [[tasks.subtasks]]
  id = "migrate"
  name = "Migrate"
  duration = "8s"
  timeout = "7s"
"#,
    );
    run_scaled(
        &["--tasks", &file, "--progress", "off"],
        &["0.3", "1"],
        |out| {
            let lines = task_lines(out);
            ensure!(
                lines
                    .iter()
                    .any(|l| body(l).starts_with("⏳ Deadline extended: Deploy")),
                "the parent's deadline never moved"
            );
            ensure!(
                count(
                    &lines,
                    "❌ Canceled: Deploy / Migrate - Reason: context deadline exceeded"
                ) == 1,
                "the subtask did not time out"
            );
            ensure!(
                count(&lines, "✅ Completed: Deploy / Migrate") == 0,
                "the subtask ran its full duration"
            );
            Ok(())
        },
    );
}

/// A scratch directory for this test process.
fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("goctx-processor-test-{}", std::process::id()))
}

fn scratch(name: &str, text: &str) -> String {
    let dir = scratch_dir();
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write scratch file");
    path.to_string_lossy().into_owned()
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    let malformed_toml = scratch("malformed.toml", "[[tasks]\nname = \"A\"\n");
    let malformed_json = scratch(
        "malformed.json",
        "{\"tasks\": [{\"name\": \"A\", \"duration\": }]}",
    );
    let negative_toml = scratch(
        "negative.toml",
        "[[tasks]]\nname = \"A\"\nduration = \"-2s\"\n",
    );
    let negative_json = scratch(
        "negative.json",
        "{\"tasks\": [{\"name\": \"A\", \"duration\": -1}]}",
    );
    let unknown_ext = scratch("tasks.yaml", "tasks: []\n");
    let missing = std::env::temp_dir().join("goctx-processor-no-such-file.toml");
    let missing = missing.to_string_lossy().into_owned();

    let cases: &[(&[&str], &str)] = &[
        (&["--tasks", &missing], "cannot read tasks file"),
        (&["--tasks", &malformed_toml], "malformed tasks file"),
        (&["--tasks", &malformed_json], "malformed tasks file"),
        (
            &["--tasks", &negative_toml],
            "negative durations are not allowed",
        ),
        (
            &["--tasks", &negative_json],
            "negative durations are not allowed",
        ),
        (
            &["--tasks", &unknown_ext],
            "unsupported tasks file extension",
        ),
        (&["--workers", "0"], "--workers must be at least 1"),
        (
            &["--task-timeout", "-1s"],
            "negative durations are not allowed",
        ),
        (
            &["--run-timeout", "-3"],
            "negative durations are not allowed",
        ),
        (
            &["--time-scale", "0"],
            "--time-scale must be a positive number",
        ),
    ];
    for (args, expected) in cases {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.stderr);
        let stderr: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(stderr.len(), 1, "{args:?}: not one line: {:?}", out.stderr);
        assert!(
            stderr[0].starts_with("processor: error: "),
            "{args:?}: {}",
            stderr[0]
        );
        assert!(stderr[0].contains(expected), "{args:?}: {}", stderr[0]);
        assert!(!out.stderr.contains("panicked"), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}: {:?}", out.stdout);
    }
    let _ = std::fs::remove_dir_all(scratch_dir());

    // clap's own usage errors exit with 2 as well.
    let out = run(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["--help"]);
    assert!(out.status.success());
    assert!(out.stdout.iter().any(|l| l.contains("--workers")));
}

/// The example's duration parser, included by path: it is Go's
/// `time.ParseDuration` (no crate takes exactly Go's grammar; see the
/// file's docs), tested here against the cases of Go's own table in
/// `src/time/time_test.go`.
#[path = "../../examples/processor/run/duration.rs"]
mod duration;

#[test]
fn go_parse_duration_accepts_what_go_accepts() {
    const S: u64 = 1_000_000_000;
    let ok: &[(&str, u64)] = &[
        ("0", 0),
        ("-0", 0),
        ("+0", 0),
        ("5s", 5 * S),
        ("30s", 30 * S),
        ("1478s", 1478 * S),
        ("+5s", 5 * S),
        ("5.0s", 5 * S),
        ("5.6s", 5 * S + 600_000_000),
        ("5.s", 5 * S),
        (".5s", S / 2),
        ("1.0s", S),
        ("1.00s", S),
        ("1.004s", S + 4_000_000),
        ("1.0040s", S + 4_000_000),
        ("100.00100s", 100 * S + 1_000_000),
        ("10ns", 10),
        ("11us", 11_000),
        ("12µs", 12_000),       // U+00B5, the micro sign
        ("12\u{3bc}s", 12_000), // U+03BC, Greek small mu
        ("13ms", 13_000_000),
        ("14s", 14 * S),
        ("15m", 15 * 60 * S),
        ("16h", 16 * 3600 * S),
        ("3h30m", (3 * 3600 + 30 * 60) * S),
        ("10.5s4m", 4 * 60 * S + 10 * S + S / 2),
        ("1m30s", 90 * S),
        ("1h2m3.5s", 3723 * S + S / 2),
        ("1h2m3s4ms5us6ns", 3723 * S + 4_000_000 + 5_000 + 6),
        ("39h9m14.425s", (39 * 3600 + 9 * 60 + 14) * S + 425_000_000),
        ("52763797000ns", 52_763_797_000),
        // Go's float64 step makes this exactly 20 minutes.
        ("0.3333333333333333333h", 20 * 60 * S),
        ("9007199254740993ns", (1 << 53) + 1),
        ("9223372036854775807ns", i64::MAX as u64),
        ("9223372036854775.807us", i64::MAX as u64),
        ("9223372036s854ms775us807ns", i64::MAX as u64),
        ("0.100000000000000000000h", 6 * 60 * S),
        ("0.830103483285477580700h", (49 * 60 + 48) * S + 372_539_827),
        // The processor's one addition: a bare number is seconds.
        ("3", 3 * S),
        ("1.5", S + S / 2),
    ];
    for (text, nanos) in ok {
        let parsed = duration::parse_duration(text);
        assert_eq!(
            parsed,
            Ok(Duration::from_nanos(*nanos)),
            "{text:?} should be {nanos} ns"
        );
    }
}

#[test]
fn go_parse_duration_rejects_what_go_rejects() {
    for text in [
        "",
        "-",
        "s",
        ".",
        "-.",
        ".s",
        "+.s",
        "1d",
        "3x",
        "1.5.2s",
        "\u{85}\u{85}",
        "hello \u{ff}ff world",
        "9223372036854775808ns",
        "9223372036854775.808us",
        "9223372036854ms775us808ns",
        // Go reads these as negative; the processor refuses them.
        "-5s",
        "-2m3.4s",
        "-9223372036854775808ns",
    ] {
        assert!(
            duration::parse_duration(text).is_err(),
            "{text:?} should be an error"
        );
    }
    let err = duration::parse_duration("1d").unwrap_err();
    assert!(err.contains("unknown unit 'd'"), "{err}");
    let err = duration::parse_duration("-5s").unwrap_err();
    assert!(err.contains("negative durations are not allowed"), "{err}");
}

#[test]
fn durations_are_shown_without_rounding_artefacts() {
    let ms = Duration::from_millis;
    for (d, shown) in [
        (Duration::from_secs(1), "1.00s"),
        (ms(1000) - Duration::from_micros(300), "1.00s"),
        (ms(1000) + Duration::from_micros(300), "1.00s"),
        (ms(999), "999ms"),
        (ms(1500), "1.50s"),
        (ms(59_999), "1m00s"),
        (ms(125_000), "2m05s"),
        (Duration::from_secs(3723), "1h02m03s"),
        (Duration::from_micros(250), "250µs"),
    ] {
        assert_eq!(duration::fmt_duration(d), shown, "{d:?}");
    }
}

#[test]
fn go_durations_on_the_command_line() {
    // `1m30s`-style flags are accepted; the run is short anyway (one task).
    let file = scratch(
        "go-durations.toml",
        "[[tasks]]\nname = \"Quick\"\nduration = \"20ms\"\ntimeout = \"1s\"\n",
    );
    let out = run(&[
        "--tasks",
        &file,
        "--progress",
        "off",
        "--task-timeout",
        "1m30s",
        "--hard-limit",
        "1h2m3.5s",
        "--backoff",
        "500us",
        "--max-backoff",
        "2µs",
    ]);
    assert!(out.status.success(), "{}", out.stderr);
    // One task, one worker: singular.
    let out = run(&["--tasks", &file, "--progress", "off", "--workers", "1"]);
    assert!(
        out.stdout
            .iter()
            .any(|l| l.starts_with("Metrics for req-") && l.ends_with("(1 task, 1 worker)")),
        "{:#?}",
        out.stdout
    );
    // The task's 1 s deadline, measured from its start, is 1.00s.
    let row = out
        .stdout
        .iter()
        .find(|l| l.starts_with("Quick "))
        .expect("a row for Quick");
    assert!(row.split_whitespace().any(|c| c == "1.00s"), "{row}");
}

/// Names a user might write, or an attacker: a newline, an escape
/// sequence, CJK, emoji, 5,000 characters.
#[test]
fn hostile_task_names_stay_on_their_line_and_in_their_column() {
    let long = "x".repeat(5000);
    let tasks = serde_json::json!({ "tasks": [
        { "name": "Line one\nLine two", "duration": "200ms" },
        { "name": "\u{1b}[31mRed\u{1b}[0m\r", "duration": "200ms" },
        { "name": "数据同步", "duration": "200ms" },
        { "name": "Deploy 🚀 now", "duration": "200ms", "subtasks": [
            { "name": "子任务 ✅", "duration": "100ms" }
        ]},
        { "name": long, "duration": "200ms" },
    ]});
    let file = scratch("hostile.json", &tasks.to_string());
    let out = Command::new(processor())
        .args(["--tasks", &file, "--progress", "plain", "--workers", "5"])
        .output()
        .expect("run the processor");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("UTF-8 output");
    let bad = text
        .bytes()
        .find(|&b| (b < 0x20 && b != b'\n') || b == 0x7f);
    assert!(bad.is_none(), "raw control byte {bad:?} in:\n{text}");

    let lines: Vec<&str> = text.lines().collect();
    let log_end = lines
        .iter()
        .position(|l| l.is_empty())
        .expect("a blank line before the metrics");
    for line in &lines[..log_end] {
        assert!(has_request_id(line), "no request ID: {line}");
    }
    let outcomes = lines[..log_end]
        .iter()
        .filter(|l| body(l).starts_with("✅ Completed"))
        .count();
    assert_eq!(outcomes, 6, "{text}");
    assert!(
        lines[..log_end]
            .iter()
            .any(|l| body(l) == r"✅ Completed: Line one\nLine two"),
        "{text}"
    );

    // The table: header, dashes, one row per task; all as wide as each
    // other on a terminal, and not 5,000 columns wide.
    let header = lines
        .iter()
        .position(|l| l.starts_with("Task "))
        .expect("a table header");
    let end = lines[header..]
        .iter()
        .position(|l| l.is_empty())
        .map_or(lines.len(), |n| header + n);
    let table = &lines[header..end];
    assert_eq!(table.len(), 2 + 6, "{text}");
    let widths: Vec<usize> = table
        .iter()
        .map(|l| unicode_width::UnicodeWidthStr::width(*l))
        .collect();
    assert!(widths.iter().all(|w| *w == widths[0]), "{widths:?}\n{text}");
    assert!(widths[0] < 250, "{widths:?}");
    assert!(table.iter().any(|l| l.contains("x…")), "{text}");
}

/// What a terminal shows after `output`: the few escapes the processor's
/// `--progress bars` writes (cursor up/down/left/right, clear line) played
/// on a grid of lines.
fn screen(output: &str) -> Vec<String> {
    let mut rows = vec![String::new()];
    let mut row = 0usize;
    let mut chars = output.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => {
                row += 1;
                if rows.len() <= row {
                    rows.push(String::new());
                }
            }
            '\r' => {}
            '\u{1b}' if chars.peek() == Some(&'[') => {
                chars.next();
                let mut n = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    n.push(*d);
                    chars.next();
                }
                let n: usize = n.parse().unwrap_or(1);
                match chars.next() {
                    Some('A') => row = row.saturating_sub(n),
                    Some('B') => {
                        row += n;
                        while rows.len() <= row {
                            rows.push(String::new());
                        }
                    }
                    Some('K') => rows[row].clear(),
                    _ => {}
                }
            }
            c => rows[row].push(c),
        }
    }
    while rows.last().is_some_and(String::is_empty) {
        rows.pop();
    }
    rows
}

/// A progress bar on the screen: `[` and 30 of `=`, `>`, ` ` then `]`.
fn has_bar(line: &str) -> bool {
    let chars: Vec<char> = line.chars().collect();
    chars.windows(32).any(|w| {
        w[0] == '[' && w[31] == ']' && w[1..31].iter().all(|c| matches!(c, '=' | '>' | ' '))
    })
}

/// Issue 10: 5,000 tasks on 1,000 workers with bars took 107 s and wrote
/// 66 MB (15 s and 0.9 MB without progress). Bars are now bounded and
/// redraws rate-limited: the same run with bars stays within a few times
/// the output of `--progress off` and not much slower.
#[test]
fn progress_bars_scale_to_thousands_of_tasks() {
    let tasks: Vec<_> = (0..5000)
        .map(|i| serde_json::json!({ "name": format!("Task {i}"), "duration": "2s", "priority": 1 + i % 3 }))
        .collect();
    let file = scratch(
        "5000.json",
        &serde_json::json!({ "tasks": tasks }).to_string(),
    );
    let measure = |progress: &str| {
        let start = Instant::now();
        let out = Command::new(processor())
            .args([
                "--tasks",
                &file,
                "--workers",
                "1000",
                "--time-scale",
                "0.25",
            ])
            .args(["--progress", progress])
            .output()
            .expect("run the processor");
        assert!(out.status.success(), "{progress}");
        (start.elapsed(), out.stdout)
    };
    let (off_time, off_out) = measure("off");
    let (bars_time, bars_out) = measure("bars");
    eprintln!(
        "off: {off_time:?}, {} bytes; bars: {bars_time:?}, {} bytes",
        off_out.len(),
        bars_out.len()
    );
    assert!(
        bars_out.len() < off_out.len() * 3 + 2_000_000,
        "bars wrote {} bytes, off {}",
        bars_out.len(),
        off_out.len()
    );
    assert!(
        bars_time < off_time * 2 + Duration::from_secs(10),
        "bars took {bars_time:?}, off {off_time:?}"
    );
    let text = String::from_utf8_lossy(&bars_out);
    let shown = screen(&text);
    assert!(!shown.iter().any(|l| has_bar(l)), "bars left on screen");
    assert_eq!(
        shown.last().map(String::as_str),
        Some("✅ All tasks completed or canceled")
    );
    // Every log line reached the screen, each on its own line.
    let completed = shown
        .iter()
        .filter(|l| body(l).starts_with("✅ Completed: Task "))
        .count();
    let odd: Vec<&String> = shown
        .iter()
        .filter(|l| l.contains("Completed") && !has_request_id(l))
        .take(5)
        .collect();
    assert_eq!(completed, 5000, "{odd:#?}");
}

/// Issue 10: Ctrl+C on a terminal left a progress bar on the screen.
#[test]
fn ctrl_c_leaves_no_progress_bar_on_screen() {
    let mut child = Command::new(processor())
        .args(["--time-scale", "10", "--progress", "bars"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the processor");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = thread::spawn(move || {
        let mut all = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut all);
        all
    });
    // Let the bars be drawn, then interrupt.
    thread::sleep(Duration::from_millis(1500));
    let pid = child.id().to_string();
    let kill = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("run kill");
    assert!(kill.success());
    let status = wait_with_deadline(&mut child, Duration::from_secs(10));
    let Some(status) = status else {
        let _ = child.kill();
        panic!("still running 10 s after SIGINT");
    };
    assert_eq!(status.code(), Some(130));
    let text = String::from_utf8_lossy(&reader.join().expect("reader")).into_owned();
    assert!(has_bar(&text), "no bar was ever drawn:\n{text:?}");
    let shown = screen(&text);
    assert!(
        !shown.iter().any(|l| has_bar(l)),
        "a bar is left on screen:\n{}",
        shown.join("\n")
    );
    assert!(
        shown
            .iter()
            .any(|l| l == "🚨 Shutdown signal received, canceling all tasks..."),
        "{}",
        shown.join("\n")
    );
}
