//! A throw-away nats-server with JetStream for the tests that need one:
//! a free loopback port, a store directory of its own (file storage, so a
//! restart keeps the streams). It is stopped, and its directory removed,
//! when the test process exits however it exits: a shell watchdog holds
//! the server and waits on a pipe only this process holds (as
//! `postgres.rs` does).

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server.
pub struct Nats {
    /// `nats://127.0.0.1:<port>`
    pub url: String,
    dir: PathBuf,
    // The pipe is held, never written: the server stops when it closes.
    watchdog: Option<(Child, ChildStdin)>,
}

/// How long the server may take to start on a loaded machine.
const START_PATIENCE: Duration = Duration::from_secs(30);

impl Nats {
    /// Starts a server; panics with what went wrong if it cannot.
    pub fn start() -> Nats {
        let bin = binary();
        let mut last = String::new();
        // A port free now may be taken by the time the server binds it.
        for attempt in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!(
                "goctx-nats-{}-{}-{attempt}",
                std::process::id(),
                port
            ));
            std::fs::create_dir_all(&dir).expect("the server's directory");
            // The server runs under a watchdog shell; `restart` asks it
            // for a new server on the same port and store (a file
            // `restart`), after `stop` killed the last one (its pid is in
            // the file `pid`).
            let script = format!(
                "d='{dir}'; start() {{ '{bin}' -a 127.0.0.1 -p {port} -js -sd \"$d/store\" >>\"$d/server.log\" 2>&1 & echo $! >\"$d/pid\"; }}; \
                 start; \
                 ( while :; do if [ -e \"$d/restart\" ]; then rm -f \"$d/restart\"; start; fi; sleep 0.05; done ) & loop=$!; \
                 cat >/dev/null; kill $loop; pid=$(cat \"$d/pid\"); kill $pid; \
                 while kill -0 $pid 2>/dev/null; do sleep 0.05; done; rm -rf \"$d\"",
                bin = bin.display(),
                dir = dir.display(),
            );
            let mut child = Command::new("sh")
                .args(["-c", &script])
                .stdin(Stdio::piped())
                .spawn()
                .expect("sh");
            let stdin = child.stdin.take().expect("the watchdog's pipe");
            let started = Instant::now();
            while started.elapsed() < START_PATIENCE {
                if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                    return Nats {
                        url: format!("nats://127.0.0.1:{port}"),
                        dir,
                        watchdog: Some((child, stdin)),
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            last = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            drop(stdin);
            let _ = child.wait();
        }
        panic!("nats-server did not start: {last}");
    }

    /// Stops the server (SIGTERM, as an operator would) and waits until
    /// its port is closed; the store stays. [`Nats::restart`] starts it
    /// again.
    pub fn stop(&self) {
        let pid = std::fs::read_to_string(self.dir.join("pid")).expect("the server's pid");
        let status = Command::new("kill").arg(pid.trim()).status().expect("kill");
        assert!(status.success(), "kill the server");
        let started = Instant::now();
        while started.elapsed() < START_PATIENCE {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port())).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("nats-server still listening {START_PATIENCE:?} after SIGTERM");
    }

    /// Starts the server stopped by [`Nats::stop`] again, on the same port
    /// and store, and waits until it accepts connections.
    pub fn restart(&self) {
        std::fs::write(self.dir.join("restart"), b"").expect("ask the watchdog");
        let started = Instant::now();
        while started.elapsed() < START_PATIENCE {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port())).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("nats-server did not start again: {}", self.log());
    }

    fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the url")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.watchdog.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// nats-server on the `PATH`, or where Debian's package puts it.
fn binary() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")]);
    for dir in candidates {
        let bin = dir.join("nats-server");
        if is_file(&bin) {
            return bin;
        }
    }
    panic!("nats-server not found: install Debian's nats-server (.ci/run does)");
}

fn is_file(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}
