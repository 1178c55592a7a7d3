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
//! Three wings, each its own place in this folder (`docs/processor.md`
//! has the design, `docs/ARCHITECTURE.md` the file map):
//!
//! - `run/`: the run library, what every front end shares: the run and
//!   its events, tasks, durations, the queue, retries, signals as
//!   contexts, broker mode's messages. It knows no flags and prints nothing.
//! - `cli.rs` with `console.rs`, `progress.rs`, `metrics.rs`: the command
//!   line. Every flag of every mode, the process set-up, and the CLI run
//!   with its signals and its output on a terminal.
//! - `serve/`: `processor serve`, the service and its dashboard; it gets
//!   its settings from `cli.rs` and uses only `run/`.
//!
//! `worker.rs` is `processor worker`, broker mode's other side: started
//! by `cli.rs` like the service, and like it using only `run/`.

// The command line and its output on a terminal.
mod cli;
mod console;
mod metrics;
mod progress;
// The run library.
mod run;
// `processor serve`.
mod serve;
// `processor worker` (broker mode needs the `nats` feature).
#[cfg(feature = "nats")]
mod worker;

fn main() -> std::process::ExitCode {
    cli::main()
}
