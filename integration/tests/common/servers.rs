//! An example binary run as a server: started with its standard output
//! piped, its address read from the `listening on http://…` first line,
//! killed on drop.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How long the first line may take (a loaded 2-core machine builds and
/// starts the example slowly).
const FIRST_LINE: Duration = Duration::from_secs(20);

/// Where the child's standard error goes.
#[derive(Clone, Copy, Debug)]
pub enum Stderr {
    /// To the test's own standard error.
    Inherit,
    /// Into a string, read with [`ExampleServer::logs`].
    Capture,
}

/// What becomes of the lines printed after the first.
#[derive(Clone, Copy, Debug)]
pub enum Lines {
    /// Read and thrown away, so the child never blocks on a full pipe.
    Discard,
    /// Sent to a channel, read with [`ExampleServer::next_line`].
    Keep,
}

/// A running example; killed on drop.
pub struct ExampleServer {
    pub child: Child,
    /// `host:port`, from the first line.
    pub addr: String,
    stderr: Option<Arc<Mutex<String>>>,
    // In a mutex so that a server can be shared between threads.
    lines: Option<Mutex<Receiver<String>>>,
}

impl ExampleServer {
    /// Spawns `command` (its program and arguments set) with standard
    /// input closed and standard output piped, and waits for its
    /// `listening on http://…` first line. Fails, with the captured
    /// standard error if any, when that line does not come in time.
    pub fn start(command: Command, stderr: Stderr, lines: Lines) -> ExampleServer {
        Self::start_until(command, stderr, lines, "listening on http://...", |first| {
            first
                .strip_prefix("listening on http://")
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        })
    }

    /// [`ExampleServer::start`] for a process whose first line is
    /// `worker NAME ready` (`processor worker`); `addr` holds the name.
    pub fn start_worker(command: Command, stderr: Stderr) -> ExampleServer {
        Self::start_until(
            command,
            stderr,
            Lines::Discard,
            "worker NAME ready",
            |first| {
                first
                    .strip_prefix("worker ")
                    .and_then(|rest| rest.strip_suffix(" ready"))
                    .map(str::to_owned)
            },
        )
    }

    /// Starts `command` and waits for its first line, which `parse` turns
    /// into `addr` (`expected` describes it in failures).
    fn start_until(
        mut command: Command,
        stderr: Stderr,
        lines: Lines,
        expected: &str,
        parse: impl Fn(&str) -> Option<String>,
    ) -> ExampleServer {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(match stderr {
                Stderr::Inherit => Stdio::inherit(),
                Stderr::Capture => Stdio::piped(),
            })
            .spawn()
            .unwrap_or_else(|e| panic!("start {:?}: {e}", command.get_program()));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // With `Lines::Discard` the receiver is gone after the
                // first line; keep reading so the child never blocks.
                let _ = tx.send(line);
            }
        });
        let stderr = match stderr {
            Stderr::Inherit => None,
            Stderr::Capture => Some(collect(child.stderr.take().expect("stderr"))),
        };
        let Ok(first) = rx.recv_timeout(FIRST_LINE) else {
            let _ = child.kill();
            let _ = child.wait();
            // Let the stderr thread take the last lines.
            thread::sleep(Duration::from_millis(50));
            let logs = stderr.map(|s| s.lock().unwrap().clone());
            panic!(
                "no '{expected}' line; stderr: {}",
                logs.as_deref().unwrap_or("(inherited)")
            );
        };
        let addr = parse(&first).unwrap_or_else(|| panic!("first line was {first:?}"));
        let lines = match lines {
            Lines::Discard => None,
            Lines::Keep => Some(Mutex::new(rx)),
        };
        ExampleServer {
            child,
            addr,
            stderr,
            lines,
        }
    }

    /// The standard error so far; started with [`Stderr::Capture`].
    pub fn logs(&self) -> String {
        let stderr = self.stderr.as_ref().expect("started with Stderr::Capture");
        stderr.lock().unwrap().clone()
    }

    /// The next line after the first, waiting up to `timeout`; started
    /// with [`Lines::Keep`].
    pub fn next_line(&self, timeout: Duration) -> Result<String, RecvTimeoutError> {
        let lines = self.lines.as_ref().expect("started with Lines::Keep");
        lines.lock().unwrap().recv_timeout(timeout)
    }
}

impl Drop for ExampleServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Collects a child's pipe into a string, on its own thread.
pub fn collect(pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let all = Arc::new(Mutex::new(String::new()));
    let sink = all.clone();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut all = sink.lock().unwrap();
            all.push_str(&line);
            all.push('\n');
        }
    });
    all
}
