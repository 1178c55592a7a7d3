//! A throw-away PostgreSQL server for the tests and benchmarks that need
//! a real one: its own data directory under the system's temporary
//! directory, a free loopback port, no password (trust, loopback only).
//!
//! PostgreSQL refuses to run as root, so as root the server runs as the
//! `postgres` user (Debian's package makes it). It is stopped, and its
//! directory removed, when the test process exits however it exits: a
//! small shell watchdog holds the server and waits on a pipe whose other
//! end only this process holds; the pipe closes when the process ends,
//! panics and aborts included.

use std::io::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A running throw-away server.
pub struct Postgres {
    /// `postgres://goctx@127.0.0.1:<port>/postgres`
    pub url: String,
    /// The loopback port it listens on.
    pub port: u16,
    /// Its server log (every statement is logged: `log_statement = all`).
    pub log: PathBuf,
    dir: PathBuf,
    // The pipe is held, never written: the server stops when it closes.
    watchdog: Mutex<(Child, ChildStdin)>,
}

/// The one server of this test process, started on first use.
pub fn shared() -> &'static Postgres {
    static SERVER: OnceLock<Postgres> = OnceLock::new();
    SERVER.get_or_init(Postgres::start)
}

/// How long the server may take to start on a loaded machine.
const START_PATIENCE: Duration = Duration::from_secs(60);

impl Postgres {
    /// Starts a new server; panics with what went wrong if it cannot.
    pub fn start() -> Postgres {
        let bin = bindir();
        let root = is_root();
        // A free port now may be taken by the time the server binds it:
        // try a few times, each with a new directory (a stopped watchdog
        // removes its own).
        let mut last = String::new();
        for attempt in 0..5 {
            let dir = new_dir(root, attempt);
            let data = dir.join("data");
            run(
                as_server_user(root, &bin.join("initdb"))
                    .arg("-D")
                    .arg(&data)
                    .args(["-U", "goctx", "-A", "trust", "-E", "UTF8", "--no-sync"]),
                "initdb",
            );
            let log = dir.join("server.log");
            let port = free_port();
            let (child, stdin) = watchdog(root, &bin, &dir, &data, &log, port);
            let server = Postgres {
                url: format!("postgres://goctx@127.0.0.1:{port}/postgres"),
                port,
                log,
                dir,
                watchdog: Mutex::new((child, stdin)),
            };
            match server.wait_ready(&bin) {
                Ok(()) => return server,
                Err(e) => {
                    last = e;
                    // Closing the pipe stops that server and removes its
                    // directory; wait for it before trying again.
                    let (mut child, stdin) = server.watchdog.into_inner().unwrap();
                    drop(stdin);
                    let _ = child.wait();
                }
            }
        }
        panic!("PostgreSQL did not start: {last}");
    }

    fn wait_ready(&self, bin: &Path) -> Result<(), String> {
        let until = Instant::now() + START_PATIENCE;
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .map_err(|e| format!("pg_isready: {e}"))?;
            if ready.success() {
                return Ok(());
            }
            // A server that could not listen (its port taken) says so and
            // exits; the watchdog shell itself lives on. (Not any FATAL
            // line: a probe during start-up logs "the database system is
            // starting up".)
            if self
                .log_text()
                .contains("could not create any TCP/IP sockets")
            {
                return Err(format!("the server failed; its log:\n{}", self.log_text()));
            }
            if self
                .watchdog
                .lock()
                .unwrap()
                .0
                .try_wait()
                .ok()
                .flatten()
                .is_some()
            {
                return Err(format!("the server exited; its log:\n{}", self.log_text()));
            }
            if Instant::now() > until {
                return Err(format!(
                    "not ready after {START_PATIENCE:?}; its log:\n{}",
                    self.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The server's directory (data and log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Where the server's programs are: `GOCTX_PG_BINDIR`, else the newest
/// Debian install (`/usr/lib/postgresql/<version>/bin`), else `pg_config`.
fn bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GOCTX_PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return bin;
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if bin.join("initdb").exists() {
            return bin;
        }
    }
    panic!(
        "these tests start a PostgreSQL server of their own, and found none: install \
         PostgreSQL's server (Debian: `apt-get install postgresql`; .ci/run does), or set \
         GOCTX_PG_BINDIR to the directory that holds initdb and postgres"
    );
}

/// A new, empty directory for one server, owned by the user it runs as.
fn new_dir(root: bool, attempt: u32) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // As root, /tmp itself: a TMPDIR of root's own may be closed to the
    // `postgres` user.
    let tmp = if root {
        PathBuf::from("/tmp")
    } else {
        std::env::temp_dir()
    };
    let dir = tmp.join(format!("goctx-pg-{}-{nanos}-{attempt}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the server's directory");
    if root {
        run(Command::new("chown").arg("postgres:").arg(&dir), "chown");
    }
    dir
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// util-linux's `runuser`, which a root shell's PATH may not reach.
fn runuser() -> PathBuf {
    ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("runuser"))
}

fn as_server_user(root: bool, program: &Path) -> Command {
    if root {
        let mut command = Command::new(runuser());
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The server under a watchdog shell: it starts the server in the
/// background, waits for its standard input to close, then stops the
/// server (fast shutdown) and removes the directory.
fn watchdog(
    root: bool,
    bin: &Path,
    dir: &Path,
    data: &Path,
    log: &Path,
    port: u16,
) -> (Child, ChildStdin) {
    let script = r#"
        "$1" -D "$2" -p "$3" -k "$4" \
            -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
            -c full_page_writes=off -c max_connections=300 \
            -c log_statement=all -c "log_line_prefix=%m [%p] " >"$5" 2>&1 &
        server=$!
        cat >/dev/null
        kill -INT "$server" 2>/dev/null
        wait "$server"
        rm -rf "$4"
    "#;
    let mut command = if root {
        let mut c = Command::new(runuser());
        c.args(["-u", "postgres", "--", "sh", "-c", script, "sh"]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", script, "sh"]);
        c
    };
    let mut child = command
        .arg(bin.join("postgres"))
        .arg(data)
        .arg(port.to_string())
        .arg(dir)
        .arg(log)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the server's watchdog");
    let mut stdin = child.stdin.take().expect("piped");
    stdin.flush().ok();
    (child, stdin)
}
