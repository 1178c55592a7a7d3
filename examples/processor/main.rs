//! The concurrent task processor of the seed's hands-on assignment, on
//! goctx: timeouts, cancellation and request-scoped values working
//! together.
//!
//! ```text
//! cargo run --example processor                      # the seed's sample run
//! cargo run --example processor -- --tasks examples/processor/tasks/pipeline.toml
//! cargo run --example processor -- --time-scale 0.2  # everything 5x faster
//! ```
//!
//! Ctrl+C (or SIGTERM) cancels the run: running tasks end with `context
//! canceled`, queued ones are reported canceled, the summary follows. A
//! second Ctrl+C exits at once.
//!
//! Exit codes: 0 when every task completed, timed out or was canceled; 1
//! when a task failed after its retries; 2 for bad input; 130 when Ctrl+C
//! (SIGINT) stopped the run, 143 for SIGTERM, so that `processor && next`
//! stops there. See `docs/processor.md` for the design.

mod console;
mod metrics;
mod progress;
mod run;
// Service mode, `processor serve` (issue 10): the folder serve/.
mod serve;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use clap::Parser;
use goctx::tokio::{Signal, SignalReceived};

use crate::console::Console;
use crate::progress::ProgressMode;
use crate::run::retry::RetryPolicy;
use crate::run::task::{self, InputError, Task, parse_duration};
use crate::run::{Cause, Emitter, Event, RunConfig};

/// Runs simulated tasks concurrently under goctx contexts: a per-task
/// timeout, cancellation on SIGINT/SIGTERM, the request ID in every line.
#[derive(Parser, Debug)]
#[command(
    name = "processor",
    version,
    after_help = "Service mode: `processor serve --addr 127.0.0.1:8080` serves the same runs over HTTP, \
                  with a live dashboard (`processor serve --help`, docs/processor.md). With \
                  `--broker nats://...`, its tasks run on `processor worker --broker nats://...` \
                  processes (`processor worker --help`)."
)]
struct Cli {
    /// Task set to run, TOML or JSON by extension [default: the seed's four tasks]
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

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|arg| arg == "serve") {
        return serve::main(std::env::args_os().skip(1));
    }
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == "worker")
    {
        return worker::main(std::env::args_os().skip(1));
    }
    // clap reports its own usage errors and exits with code 2.
    let cli = Cli::parse();
    let setup = match Setup::from_cli(cli) {
        Ok(setup) => setup,
        Err(err) => {
            eprintln!("processor: error: {err}");
            return ExitCode::from(2);
        }
    };
    match runtime() {
        Ok(runtime) => runtime.block_on(process(setup)),
        Err(code) => code,
    }
}

/// The multi-threaded tokio runtime both modes run on; on failure, says
/// why and gives the exit code.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            eprintln!("processor: error: cannot start the async runtime: {err}");
            ExitCode::FAILURE
        })
}

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
/// for SIGTERM), 0 if none did. Set by [`Signals::watch`] before it
/// cancels the run, so the run's end always sees it.
static SIGNALED: AtomicU8 = AtomicU8::new(0);

/// The signal that ended `ctx`, a [`signal_context`](goctx::tokio::signal_context),
/// if a signal is what ended it.
pub fn received(ctx: &goctx::Ctx) -> Option<Signal> {
    let cause = ctx.cause()?;
    cause
        .downcast_ref::<SignalReceived>()
        .map(SignalReceived::signal)
}

/// Waits for the next SIGINT or SIGTERM (Ctrl+C on Windows), listening
/// from this call on. `None` if the listening ended without one: the
/// runtime shutting down drops the listener, which ends its context with
/// another cause, and that must not pass for a second Ctrl+C.
pub async fn next_signal() -> Option<Signal> {
    let (ctx, _stop) = goctx::tokio::signal_context(&goctx::background());
    ctx.done().await;
    received(&ctx)
}

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
