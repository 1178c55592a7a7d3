//! `processor serve`: the task processor as an HTTP service.
//!
//! ```text
//! cargo run --example processor -- serve --addr 127.0.0.1:8080
//! ```
//!
//! The first line on stdout is `listening on http://ADDR`; logs go to
//! stderr (`--log-format json` for JSON lines), each with the request id
//! and trace id. The CLI's flags (`--workers`, `--task-timeout`,
//! `--time-scale`, `--tasks`...) are the defaults of every run; `cli.rs`
//! reads them and the service's own, and hands them over as [`Options`].
//!
//! Shutdown (SIGINT or SIGTERM): stop accepting, let runs go on for
//! `--grace`, then cancel what is left with "server shutting down"; exit
//! 0 once every run has ended. A second signal exits at once with 130.

// One concern per file (issue 10). Nothing here looks back at the
// command line: it uses the run library, `crate::run`, alone.
mod api;
mod body;
#[cfg(feature = "nats")]
mod broker;
#[cfg(not(feature = "nats"))]
#[path = "no_broker.rs"]
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

use api::App;
pub use body::{PeerPolicy, normalize_peer};
use broker::Broker;
use runs::Runs;

use crate::run::signal::{next_signal, received};
use crate::run::task::Task;
use crate::run::{Cause, RunConfig};

/// What `processor serve` was asked for, checked (`cli.rs` reads the flags).
pub struct Options {
    /// Where to listen; port 0 picks a free one.
    pub addr: SocketAddr,
    /// How long runs may go on after a shutdown signal before they are canceled.
    pub grace: Duration,
    /// A NATS server with JetStream that runs' tasks go to; `None` runs them here.
    pub broker: Option<String>,
    /// With `broker`: a task whose worker goes silent this long goes to another.
    pub ack_wait: Duration,
    /// The peers remote tasks may name.
    pub peers: PeerPolicy,
    pub defaults: RunDefaults,
}

/// What a run started over HTTP takes from the command line.
pub struct RunDefaults {
    /// The pool, timeouts, retries, limits.
    pub config: RunConfig,
    pub run_timeout: Option<Duration>,
    /// The tasks of a run whose body names none.
    pub tasks: Vec<Task>,
    /// Multiplies every duration of a request body.
    pub time_scale: f64,
}

/// Serves until a shutdown signal, then until every run has ended.
pub async fn main(options: Options) -> ExitCode {
    let broker = match &options.broker {
        Some(url) => match Broker::connect(url, options.ack_wait).await {
            Ok(broker) => Some(Arc::new(broker)),
            Err(e) => {
                eprintln!("processor: error: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    serve(options, broker).await
}

async fn serve(options: Options, broker: Option<Arc<Broker>>) -> ExitCode {
    let Options {
        addr,
        grace,
        peers,
        defaults,
        ..
    } = options;
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
        defaults,
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
            stop_base.cancel_with_cause(Cause("server shutting down".into()));
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
