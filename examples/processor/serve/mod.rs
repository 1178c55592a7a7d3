//! `processor serve`: the task processor as an HTTP service.
//!
//! ```text
//! cargo run --example processor -- serve --addr 127.0.0.1:8080
//! ```
//!
//! The first line on stdout is `listening on http://ADDR`; logs go to
//! stderr (`--log-format json` for JSON lines), each with the request id
//! and trace id. The CLI's flags (`--workers`, `--task-timeout`,
//! `--time-scale`, `--tasks`...) are the defaults of every run.
//!
//! Shutdown (SIGINT or SIGTERM): stop accepting, let runs go on for
//! `--grace`, then cancel what is left with "server shutting down"; exit
//! 0 once every run has ended. A second signal exits at once with 130.

// One concern per file (issue 10).
mod api;
mod body;
mod broker;
mod dashboard;
mod metrics;
mod remote;
mod runs;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use clap::Parser;

use crate::{Cli, Setup, next_signal, received};
use api::App;
use body::{PeerPolicy, normalize_peer};
use broker::Broker;
use runs::Runs;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `processor serve ...`: `args` starts with `serve`.
pub fn main(args: impl Iterator<Item = std::ffi::OsString>) -> ExitCode {
    let cli = ServeCli::parse_from(args);
    let fail = |message: String| {
        eprintln!("processor: error: {message}");
        ExitCode::from(2)
    };
    let grace = match crate::run::task::parse_duration(&cli.grace) {
        Ok(grace) => grace,
        Err(e) => return fail(format!("--grace: {e}")),
    };
    let mut allowed = Vec::new();
    for peer in &cli.peers {
        match normalize_peer(peer) {
            Ok(url) => allowed.push(url),
            Err(e) => return fail(format!("--peer: {e}")),
        }
    }
    let ack_wait = match crate::run::task::parse_duration(&cli.ack_wait) {
        Ok(d) if d >= Duration::from_millis(100) => d,
        Ok(_) => return fail("--ack-wait must be at least 100ms".into()),
        Err(e) => return fail(format!("--ack-wait: {e}")),
    };
    let time_scale = cli.run.time_scale;
    let setup = match Setup::from_cli(cli.run) {
        Ok(setup) => setup,
        Err(e) => return fail(e.to_string()),
    };
    init_logs(cli.log_format);
    let runtime = match crate::runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let broker = match &cli.broker {
            Some(url) => match Broker::connect(url, ack_wait).await {
                Ok(broker) => Some(Arc::new(broker)),
                Err(e) => {
                    eprintln!("processor: error: {e}");
                    return ExitCode::FAILURE;
                }
            },
            None => None,
        };
        serve(
            cli.addr,
            grace,
            setup,
            time_scale,
            PeerPolicy { allowed },
            broker,
        )
        .await
    })
}

pub fn init_logs(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => builder.with_ansi(false).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn serve(
    addr: SocketAddr,
    grace: Duration,
    setup: Setup,
    time_scale: f64,
    peers: PeerPolicy,
    broker: Option<Arc<Broker>>,
) -> ExitCode {
    // Listen for signals before anything can run.
    let (signaled, _stop_listening) = goctx::tokio::signal_context(&goctx::background());
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("processor: error: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{local}");
        let _ = out.flush();
    }

    // The root of every request and run of this server.
    let (base, stop_base) = goctx::with_cancel_cause(&goctx::background());
    let server_ctx = base.clone();
    let (draining_tx, draining) = api::draining();
    let on_broker = broker.as_ref().map(|b| b.url.clone());
    let runs = Arc::new(Runs::new(broker));
    let app = Arc::new(App {
        runs: runs.clone(),
        base,
        config: setup.config,
        run_timeout: setup.run_timeout,
        default_tasks: setup.tasks,
        time_scale,
        peers,
        client: remote::client(),
        draining: draining.clone(),
        next_run: AtomicU64::new(0),
        instance: format!("run-{}", local.port()),
    });
    tracing::info!(request_id = "-", trace_id = "-", addr = %local, broker = on_broker.as_deref(), "listening");

    let shutdown = shutdown(signaled, grace, stop_base, draining_tx, runs.clone());
    let served = axum::serve(
        listener,
        api::router(app).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    if let Err(e) = served {
        tracing::error!(request_id = "-", trace_id = "-", error = %e, "server failed");
        return ExitCode::FAILURE;
    }
    // Connections are closed; runs not tied to one may still be ending.
    // After the grace period they are all canceled, so this is short:
    // drained once every context the server handed out (requests, runs and
    // their tasks) is gone.
    let patience = grace + Duration::from_secs(10);
    let drained = tokio::time::timeout(patience, server_ctx.drained())
        .await
        .is_ok();
    let left = runs.metrics.in_flight();
    tracing::info!(
        request_id = "-",
        trace_id = "-",
        runs_left = left,
        drained,
        "stopped"
    );
    if left == 0 && drained {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Resolves on the first signal (axum then stops accepting); the grace
/// period and the second signal are handled by a task of their own.
async fn shutdown(
    signaled: goctx::Ctx,
    grace: Duration,
    stop_base: goctx::CancelFunc,
    draining: tokio::sync::watch::Sender<bool>,
    runs: Arc<Runs>,
) {
    signaled.done().await;
    // Listening for the second signal starts now.
    let mut second = tokio::spawn(next_signal());
    let name = received(&signaled).map_or("shutdown", |signal| signal.name());
    let running = runs.running();
    tracing::info!(
        request_id = "-",
        trace_id = "-",
        signal = name,
        runs = running.len(),
        grace_ms = grace.as_millis() as u64,
        "shutting down: no new runs; runs in flight get the grace period"
    );
    let _ = draining.send(true);
    tokio::spawn(async move {
        let grace_over = async {
            tokio::select! {
                () = tokio::time::sleep(grace) => {}
                () = async {
                    while runs.metrics.in_flight() > 0 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                } => {}
            }
        };
        let early = tokio::select! {
            () = grace_over => None,
            signal = &mut second => Some(signal),
        };
        if early.is_none() {
            if runs.metrics.in_flight() > 0 {
                tracing::warn!(
                    request_id = "-",
                    trace_id = "-",
                    runs = runs.metrics.in_flight(),
                    "grace period over: canceling the runs left"
                );
            }
            // Ends every request context and run: the cause says why.
            stop_base.cancel_with_cause(crate::run::Cause("server shutting down".into()));
        }
        let signal = match early {
            Some(signal) => signal,
            None => second.await,
        };
        let Ok(Some(signal)) = signal else { return };
        eprintln!("processor: second signal ({signal}), exiting now");
        std::process::exit(130);
    });
}
