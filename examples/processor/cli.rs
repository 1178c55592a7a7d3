//! The command line, the processor's front end: the flags of `processor`,
//! `processor serve` and `processor worker`, the set-up of a process
//! (input checks, logs, the tokio runtime), and the CLI run itself: its
//! root context, its signal handling and its event loop. The service
//! (`serve/`) and the worker (`worker.rs`) get their settings from here,
//! checked, and never look back.
//!
//! Ctrl+C (or SIGTERM) cancels the run: running tasks end with `context
//! canceled`, queued ones are reported canceled, the summary follows. A
//! second Ctrl+C exits at once.
//!
//! Exit codes: 0 when every task completed, timed out or was canceled; 1
//! when a task failed after its retries; 2 for bad input; 130 when Ctrl+C
//! (SIGINT) stopped the run, 143 for SIGTERM, so that `processor && next`
//! stops there. See `docs/processor.md` for the design.

use std::ffi::OsString;
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use clap::Parser;

use crate::console::Console;
use crate::progress::{self, ProgressMode};
use crate::run::retry::RetryPolicy;
use crate::run::signal::{next_signal, received};
use crate::run::task::{self, InputError, Task, parse_duration};
use crate::run::{self, Cause, Emitter, Event, RunConfig};
use crate::serve;
#[cfg(feature = "nats")]
use crate::worker;

/// `processor`, `processor serve ...` or `processor worker ...`, as the
/// first argument says.
pub fn main() -> ExitCode {
    let mode = std::env::args_os().nth(1);
    if mode.as_deref().is_some_and(|arg| arg == "serve") {
        return serve_main(std::env::args_os().skip(1));
    }
    if mode.as_deref().is_some_and(|arg| arg == "worker") {
        return worker_main(std::env::args_os().skip(1));
    }
    // clap reports its own usage errors and exits with code 2.
    let cli = Cli::parse();
    let setup = match Setup::from_cli(cli) {
        Ok(setup) => setup,
        Err(err) => return bad_input(err),
    };
    block_on(process(setup))
}

/// Bad input: one line on stderr, exit code 2.
fn bad_input(message: impl Display) -> ExitCode {
    eprintln!("processor: error: {message}");
    ExitCode::from(2)
}

/// Runs `main` on the multi-threaded tokio runtime every mode runs on;
/// if the runtime does not start, says why and exits 1.
fn block_on(main: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(main),
        Err(err) => {
            eprintln!("processor: error: cannot start the async runtime: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Runs simulated tasks concurrently under goctx contexts: a per-task
/// timeout, cancellation on SIGINT/SIGTERM, the request ID in every line.
#[derive(Parser, Debug)]
#[command(
    name = "processor",
    version,
    after_help = "Commands:\n  \
                  serve   the same runs as an HTTP service with a live dashboard \
                  (`processor serve --help`)\n  \
                  worker  runs the tasks of `serve --broker nats://...` from NATS JetStream \
                  (`processor worker --help`; built with `--features nats`)\n\n\
                  Without a command: one run in this terminal. docs/processor.md has the rest."
)]
struct Cli {
    /// Task set to run, TOML or JSON by extension [default: four sample tasks]
    #[arg(long, value_name = "FILE")]
    tasks: Option<PathBuf>,

    /// Tasks running at once
    #[arg(long, value_name = "N", default_value_t = 3)]
    workers: usize,

    /// Deadline of each task, in Go's syntax (500ms, 1.5s, 1m30s, ...)
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "5s",
        allow_hyphen_values = true
    )]
    task_timeout: String,

    /// Deadline of the whole run [default: none]
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    run_timeout: Option<String>,

    /// Retries of a failing task before it is given up
    #[arg(long, value_name = "N", default_value_t = 3)]
    max_retries: u32,

    /// Backoff before the first retry; doubles for each later one, plus jitter
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "200ms",
        allow_hyphen_values = true
    )]
    backoff: String,

    /// Largest backoff between two attempts
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "2s",
        allow_hyphen_values = true
    )]
    max_backoff: String,

    /// How far a critical task's deadline moves each time it runs short (0 disables)
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "2s",
        allow_hyphen_values = true
    )]
    extend_by: String,

    /// Longest a critical task may run, extensions included
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "10s",
        allow_hyphen_values = true
    )]
    hard_limit: String,

    /// Multiplies every duration (task work, timeouts, backoff); 0.1 runs ten times faster
    #[arg(
        long,
        value_name = "FACTOR",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    time_scale: f64,

    /// Progress display
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    progress: ProgressMode,

    /// Do not print the metrics table
    #[arg(long)]
    no_metrics: bool,
}

/// Everything the run needs, checked.
struct Setup {
    tasks: Vec<Task>,
    config: RunConfig,
    run_timeout: Option<Duration>,
    progress: ProgressMode,
    show_metrics: bool,
}

/// The most workers accepted; far more than any demo needs, and well
/// inside the group limit's bound (`Semaphore::MAX_PERMITS`).
const MAX_WORKERS: usize = 10_000;

fn duration_flag(flag: &str, text: &str, scale: f64) -> Result<Duration, InputError> {
    let d = parse_duration(text).map_err(|e| InputError(format!("--{flag}: {e}")))?;
    task::scale(d, scale).map_err(|e| InputError(format!("--{flag}: {e}")))
}

fn positive(flag: &str, d: Duration) -> Result<Duration, InputError> {
    if d.is_zero() {
        return Err(InputError(format!("--{flag} must be greater than zero")));
    }
    Ok(d)
}

impl Setup {
    fn from_cli(cli: Cli) -> Result<Setup, InputError> {
        let scale = cli.time_scale;
        if !scale.is_finite() || scale <= 0.0 {
            return Err(InputError(format!(
                "--time-scale must be a positive number, got {scale}"
            )));
        }
        if cli.workers == 0 {
            return Err(InputError("--workers must be at least 1".into()));
        }
        if cli.workers > MAX_WORKERS {
            return Err(InputError(format!(
                "--workers must be at most {MAX_WORKERS}"
            )));
        }
        let task_timeout = positive(
            "task-timeout",
            duration_flag("task-timeout", &cli.task_timeout, scale)?,
        )?;
        let run_timeout = match &cli.run_timeout {
            Some(text) => Some(positive(
                "run-timeout",
                duration_flag("run-timeout", text, scale)?,
            )?),
            None => None,
        };
        let base = duration_flag("backoff", &cli.backoff, scale)?;
        let max_delay = duration_flag("max-backoff", &cli.max_backoff, scale)?;
        let extend_by = duration_flag("extend-by", &cli.extend_by, scale)?;
        let hard_limit = duration_flag("hard-limit", &cli.hard_limit, scale)?;
        if hard_limit < task_timeout {
            return Err(InputError(format!(
                "--hard-limit ({}) must not be shorter than --task-timeout ({})",
                cli.hard_limit, cli.task_timeout
            )));
        }
        let tasks = match &cli.tasks {
            Some(path) => task::load(path)?,
            None => task::default_tasks(),
        };
        let tasks = tasks
            .iter()
            .map(|t| t.scaled(scale))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Setup {
            tasks,
            config: RunConfig {
                workers: cli.workers,
                task_timeout,
                retry: RetryPolicy {
                    max_retries: cli.max_retries,
                    base,
                    max_delay,
                },
                extend_by,
                hard_limit,
            },
            run_timeout,
            progress: cli.progress,
            show_metrics: !cli.no_metrics,
        })
    }
}

/// The CLI run: its contexts, the signal watcher, the console fed from
/// the run's events; the exit code from how it ended.
async fn process(setup: Setup) -> ExitCode {
    // The context tree of the run (drawn in docs/processor.md).
    let root = goctx::background();
    // Canceled by the signal handler: Go's `ctx, cancel := WithCancel(...)`.
    let (run_ctx, cancel_run) = goctx::with_cancel(&root);
    let ctx = run::with_request_id(&run_ctx, &request_id_now());
    // The optional deadline of the whole run; its CancelFunc lives to the end.
    let (ctx, _run_deadline) = match setup.run_timeout {
        Some(limit) => {
            let cause = Cause(format!("run timeout of {}", task::fmt_duration(limit)));
            let (ctx, cancel) = goctx::with_timeout_cause(&ctx, limit, cause);
            (ctx, Some(cancel))
        }
        None => (ctx, None),
    };

    let (events, mut received) = Emitter::channel();
    // Listen before the first task starts, so no early signal is lost.
    let (signaled, _stop_listening) = goctx::tokio::signal_context(&goctx::background());
    let watcher = tokio::spawn(watch(signaled, cancel_run.clone(), events.clone()));
    let running = tokio::spawn(run::run(ctx, setup.config, setup.tasks, events));

    let mut console = Console::new(setup.progress, setup.show_metrics);
    let mut finished = None;
    loop {
        // Log lines held back for the progress bars go out after a quiet spell.
        let next = tokio::time::timeout(progress::FLUSH_EVERY, received.recv());
        let Ok(received) = next.await else {
            console.tick();
            continue;
        };
        let Some(event) = received else { break };
        console.show(&event);
        if let Event::RunFinished(summary) = event {
            finished = Some(summary);
            break;
        }
    }
    watcher.abort();
    let summary = match (finished, running.await) {
        (Some(summary), _) | (None, Ok(summary)) => summary,
        (None, Err(err)) => {
            eprintln!("processor: error: the run stopped unexpectedly: {err}");
            return ExitCode::FAILURE;
        }
    };
    console.finish(&summary);
    drop(cancel_run);
    // Stopped by a signal: the shell's 128 + signal number, whatever the
    // tasks did, so that `processor && next` does not go on.
    let signaled = SIGNALED.load(Ordering::SeqCst);
    if signaled != 0 {
        ExitCode::from(signaled)
    } else if summary.failed + summary.lost > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
/// The exit code of the signal that stopped the run (130 for SIGINT, 143
/// for SIGTERM), 0 if none did. Set by [`watch`] before it
/// cancels the run, so the run's end always sees it.
static SIGNALED: AtomicU8 = AtomicU8::new(0);
/// First signal (the end of `signaled`): announce the shutdown, then cancel
/// the run (in that order, so the announcement comes before the tasks'
/// "Canceled" lines). Second signal: exit at once, as a shell expects.
async fn watch(signaled: goctx::Ctx, cancel_run: goctx::CancelFunc, events: Emitter) {
    signaled.done().await;
    let Some(signal) = received(&signaled) else {
        return;
    };
    let second = tokio::spawn(next_signal());
    let code = u8::try_from(signal.exit_code()).unwrap_or(130);
    SIGNALED.store(code, Ordering::SeqCst);
    events.send(Event::Shutdown {
        reason: format!("{signal} received"),
    });
    cancel_run.cancel_with_cause(Cause(format!("{signal} received")));
    let Ok(Some(again)) = second.await else {
        return;
    };
    eprintln!("processor: second signal ({again}), exiting now");
    std::process::exit(again.exit_code());
}

/// `req-YYYYMMDD-HHMMSS` from the UTC clock.
fn request_id_now() -> String {
    chrono::Utc::now().format("req-%Y%m%d-%H%M%S").to_string()
}

/// Serves the task processor over HTTP: runs, live events, metrics and a dashboard.
#[derive(Parser, Debug)]
#[command(name = "processor serve", bin_name = "processor serve")]
struct ServeCli {
    /// Address to listen on (port 0 picks a free one); loopback unless told otherwise
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,

    /// How long runs may go on after a shutdown signal before they are canceled
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    grace: String,

    /// A peer that remote tasks may run on (repeatable); without any, loopback peers only
    #[arg(long = "peer", value_name = "URL")]
    peers: Vec<String>,

    /// Log lines on stderr: text or JSON
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// A NATS server with JetStream: runs' tasks go there, for `processor worker` processes [default: run them here]
    #[arg(long, value_name = "URL")]
    broker: Option<String>,

    /// With --broker: a task whose worker goes silent this long goes to another worker
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    ack_wait: String,

    #[command(flatten)]
    run: Cli,
}

/// `processor serve ...`: `args` starts with `serve`.
fn serve_main(args: impl Iterator<Item = OsString>) -> ExitCode {
    let cli = ServeCli::parse_from(args);
    let grace = match parse_duration(&cli.grace) {
        Ok(grace) => grace,
        Err(e) => return bad_input(format!("--grace: {e}")),
    };
    let mut allowed = Vec::new();
    for peer in &cli.peers {
        match serve::normalize_peer(peer) {
            Ok(url) => allowed.push(url),
            Err(e) => return bad_input(format!("--peer: {e}")),
        }
    }
    let ack_wait = match ack_wait(&cli.ack_wait) {
        Ok(ack_wait) => ack_wait,
        Err(e) => return bad_input(e),
    };
    let time_scale = cli.run.time_scale;
    let setup = match Setup::from_cli(cli.run) {
        Ok(setup) => setup,
        Err(e) => return bad_input(e),
    };
    init_logs(cli.log_format);
    block_on(serve::main(serve::Options {
        addr: cli.addr,
        grace,
        broker: cli.broker,
        ack_wait,
        peers: serve::PeerPolicy { allowed },
        defaults: serve::RunDefaults {
            config: setup.config,
            run_timeout: setup.run_timeout,
            tasks: setup.tasks,
            time_scale,
        },
    }))
}

/// `--ack-wait`, the lease of a broker task: at least 100ms.
fn ack_wait(text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        Ok(d) if d >= Duration::from_millis(100) => Ok(d),
        Ok(_) => Err("--ack-wait must be at least 100ms".into()),
        Err(e) => Err(format!("--ack-wait: {e}")),
    }
}

/// Runs the tasks of `processor serve --broker` runs, from a NATS JetStream server.
#[derive(Parser, Debug)]
#[command(name = "processor worker", bin_name = "processor worker")]
struct WorkerCli {
    /// The NATS server (with JetStream) the service publishes to
    #[arg(long, value_name = "URL")]
    broker: String,

    /// Tasks this process runs at once
    #[arg(long, value_name = "N", default_value_t = 3)]
    workers: usize,

    /// This worker's name in the service's records [default: worker-PID]
    #[arg(long)]
    name: Option<String>,

    /// The lease of a task, if this process creates the consumer: a task whose
    /// worker goes silent this long goes to another one [default: 30s]
    #[arg(long, value_name = "DURATION")]
    ack_wait: Option<String>,

    /// Log lines on stderr: text or JSON
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// `processor worker ...`: `args` starts with `worker`.
fn worker_main(args: impl Iterator<Item = OsString>) -> ExitCode {
    let cli = WorkerCli::parse_from(args);
    #[cfg(not(feature = "nats"))]
    {
        let _ = cli;
        eprintln!("processor: error: {}", run::NO_BROKER);
        ExitCode::FAILURE
    }
    #[cfg(feature = "nats")]
    worker_run(cli)
}

/// The worker's run, once its flags are read.
#[cfg(feature = "nats")]
fn worker_run(cli: WorkerCli) -> ExitCode {
    if cli.workers == 0 || cli.workers > MAX_WORKERS {
        return bad_input(format!("--workers must be between 1 and {MAX_WORKERS}"));
    }
    let ack_wait = match cli.ack_wait.as_deref().map(ack_wait).transpose() {
        Ok(ack_wait) => ack_wait,
        Err(e) => return bad_input(e),
    };
    let name = cli
        .name
        .clone()
        .unwrap_or_else(|| format!("worker-{}", std::process::id()));
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return bad_input("--name must be 1-64 characters, none of them control characters");
    }
    init_logs(cli.log_format);
    block_on(worker::serve_tasks(
        cli.broker,
        cli.workers,
        name.into(),
        ack_wait,
    ))
}

/// How `processor serve` and `processor worker` write their logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The log lines of `processor serve` and `processor worker`, on stderr.
fn init_logs(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => builder.with_ansi(false).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
