//! `GET /metrics`: the service's numbers in the Prometheus text format,
//! kept and encoded by `prometheus-client` (the Prometheus project's Rust
//! client), never formatted by hand.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The metrics of one server. Every method can be called from any task.
pub struct Metrics {
    /// Locked only to encode (registration happens in `new`).
    registry: Mutex<Registry>,
    task_duration: Family<Labels, Histogram, fn() -> Histogram>,
    tasks: Family<Labels, Counter>,
    retries: Counter,
    extensions: Counter,
    runs_in_flight: Gauge,
    http_requests: Family<Labels, Counter>,
}

fn duration_histogram() -> Histogram {
    // 10 ms to about 40 s.
    Histogram::new(exponential_buckets(0.01, 2.0, 13))
}

impl Metrics {
    pub fn new() -> Metrics {
        let task_duration = Family::new_with_constructor(duration_histogram as fn() -> Histogram);
        let tasks = Family::default();
        let retries = Counter::default();
        let extensions = Counter::default();
        let runs_in_flight = Gauge::default();
        let http_requests = Family::default();
        let mut registry = Registry::with_prefix("processor");
        registry.register(
            "task_duration_seconds",
            "Time from a task's start to its end, by outcome",
            task_duration.clone(),
        );
        registry.register(
            "tasks",
            "Tasks (and subtasks) that ended, by outcome",
            tasks.clone(),
        );
        registry.register(
            "task_retries",
            "Failed attempts that were retried",
            retries.clone(),
        );
        registry.register(
            "deadline_extensions",
            "Times a critical task's deadline was pushed out",
            extensions.clone(),
        );
        registry.register(
            "runs_in_flight",
            "Runs started and not yet finished",
            runs_in_flight.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            http_requests.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            task_duration,
            tasks,
            retries,
            extensions,
            runs_in_flight,
            http_requests,
        }
    }

    /// A task ended with `outcome` (`completed`, `timed_out`, ...) after
    /// `elapsed` (zero for one that never started).
    pub fn task_ended(&self, outcome: &str, elapsed: Duration) {
        let labels = vec![("outcome", outcome.to_owned())];
        self.tasks.get_or_create(&labels).inc();
        self.task_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    pub fn retried(&self) {
        self.retries.inc();
    }

    pub fn extended(&self) {
        self.extensions.inc();
    }

    pub fn run_started(&self) {
        self.runs_in_flight.inc();
    }

    pub fn run_finished(&self) {
        self.runs_in_flight.dec();
    }

    /// Runs started and not finished.
    pub fn in_flight(&self) -> i64 {
        self.runs_in_flight.get()
    }

    /// `route` is the matched route pattern (`/runs/{id}`), never the raw
    /// path, so the label's values stay few.
    pub fn http_request(&self, route: &str, status: u16) {
        let labels = vec![("route", route.to_owned()), ("status", status.to_string())];
        self.http_requests.get_or_create(&labels).inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}
