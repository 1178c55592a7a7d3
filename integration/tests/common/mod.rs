//! Test doubles shared by several test files.

// Each test file uses only some of these.
#![allow(dead_code)]

pub mod alloc;
pub mod causes;
pub mod hooks;
pub mod hub;
pub mod loopback;
pub mod nats;
pub mod postgres;
pub mod servers;
pub mod tally;
pub mod waits;

use std::any::{Any, TypeId};
use std::time::Instant;

use goctx::custom::{Context, Notify, Subscription};
use goctx::{Cause, Ctx, Error};

/// A user context that delegates everything to an inner context: the
/// typical wrapper a user writes, so derived contexts go through the
/// custom-context paths while behaving like the inner one.
pub struct Wrapper(pub Ctx);

impl Context for Wrapper {
    fn deadline(&self) -> Option<Instant> {
        self.0.deadline()
    }
    fn err(&self) -> Option<Error> {
        self.0.err()
    }
    fn cause(&self) -> Option<Cause> {
        self.0.cause()
    }
    fn lookup(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)> {
        Context::lookup(&self.0, key)
    }
    fn subscribe(&self, notify: Notify) -> Subscription {
        Context::subscribe(&self.0, notify)
    }
    // Shows the inner context's name, as a Go wrapper that embeds it does.
    fn fmt_name(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt_name(f)
    }
}

/// Runs `body` on its own thread named `name` and fails if it has not
/// finished within `limit` (a deadlock). Panics inside `body` are passed on.
pub fn run_with_deadlock_limit<T: Send + 'static>(
    name: &str,
    limit: std::time::Duration,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    use std::sync::mpsc::{self, RecvTimeoutError};
    let (done_tx, done_rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let out = body();
            let _ = done_tx.send(());
            out
        })
        .expect("spawn test thread");
    match done_rx.recv_timeout(limit) {
        Ok(()) | Err(RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(RecvTimeoutError::Timeout) => {
            panic!("{name}: not finished after {limit:?} (deadlock?)")
        }
    }
}

/// The environment variable that tells a re-executed test binary which
/// test's body to run (see [`in_child_process`]).
pub const CHILD_ENV: &str = "GOCTX_TEST_CHILD";

/// Runs `body` in a new process of this test binary that runs only the
/// test `name` (as libtest names it), after the shell commands `setup`
/// (such as `ulimit -v 1500000`; `""` for none): the child gets goctx's
/// process-wide helper threads to itself, under real resource limits. In
/// the child, runs `body` and returns. In the parent, fails if the child
/// fails or has not finished within `limit` (it is then killed). Returns
/// the child's standard output in the parent, `None` in the child.
pub fn in_child_process(
    name: &str,
    setup: &str,
    limit: std::time::Duration,
    body: impl FnOnce(),
) -> Option<String> {
    if std::env::var_os(CHILD_ENV).is_some_and(|child| child == name) {
        body();
        return None;
    }
    // Under a memory limit the standard library itself may abort the child
    // process: a thread whose stack could be mapped but whose signal stack
    // then cannot be ("failed to allocate an alternative stack") aborts
    // before any goctx code runs on it. That is outside goctx and depends on
    // where the limit falls, so such a run is tried again, a few times.
    const STD_ABORT: &str = "failed to allocate an alternative stack";
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (success, stdout, stderr) = run_child(name, setup, limit);
        if success && stdout.contains("1 passed") {
            return Some(stdout);
        }
        if attempts < 3 && stderr.contains(STD_ABORT) {
            eprintln!("{name}: the standard library aborted the child ({STD_ABORT}); again");
            continue;
        }
        panic!("{name}: child process failed:\n{stdout}\n{stderr}");
    }
}

/// One run of the child process of [`in_child_process`]: whether it
/// exited successfully, its standard output and its standard error.
fn run_child(name: &str, setup: &str, limit: std::time::Duration) -> (bool, String, String) {
    use std::process::{Command, Stdio};
    use std::sync::mpsc;

    let exe = std::env::current_exe().expect("test binary path");
    let script = format!("{setup}\nexec \"$0\" --exact \"$1\" --nocapture --test-threads=1");
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(exe)
        .arg(name)
        .env(CHILD_ENV, name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the child test process");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(output) = rx.recv_timeout(limit) else {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        panic!("{name}: child process not finished after {limit:?} (deadlock?)");
    };
    let output = output.expect("wait for the child test process");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        format!(
            "({})\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// How many threads of this process are named `name` (from
/// `/proc/self/task/*/comm`; Linux only, `None` elsewhere).
pub fn threads_named(name: &str) -> Option<usize> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    Some(
        tasks
            .filter_map(Result::ok)
            .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
            .filter(|comm| comm.trim_end() == name)
            .count(),
    )
}

/// `target/<profile>/examples/<name>`, next to this test's `deps/`, built
/// first: a plain `cargo test` builds the examples before the tests, but
/// `cargo test -p integration --test <file>` does not, and a stale binary must not be
/// tested (a no-op when it is fresh). The example may be the root
/// package's (`processor`) or this one's (`http_server`); it is built for
/// the whole workspace, so with the features `cargo test --workspace`
/// builds it with (the processor's broker mode needs `nats`).
pub fn example(name: &str) -> std::path::PathBuf {
    use std::path::Path;
    use std::process::Command;

    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable in target/<profile>/deps");
    let mut build = Command::new(env!("CARGO"));
    // Not the variables cargo set for this test (`CARGO_PKG_NAME`,
    // `CARGO_MANIFEST_DIR`, ...): build scripts that watch them (ring's)
    // would see a change, and the next plain cargo command would rebuild
    // them and all above. Settings (`CARGO_HOME`, `CARGO_TARGET_DIR`,
    // `CARGO_PROFILE_*`, ...) stay.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|set_by_cargo| key.starts_with(set_by_cargo))
            || key == "CARGO_PRIMARY_PACKAGE"
            || key == "CARGO_TARGET_TMPDIR"
        {
            build.env_remove(&*key);
        }
    }
    build.args(["build", "--quiet", "--workspace", "--example", name]);
    build.arg("--manifest-path");
    build.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"));
    if profile_dir.file_name().is_some_and(|dir| dir == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build");
    assert!(status.success(), "cargo build --example {name} failed");
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} is missing", path.display());
    path
}
