//! The CLI's view of a run: turns events into the log lines of the seed's
//! sample output, drives the progress display and prints the metrics and
//! the summary at the end.

use crate::metrics::Metrics;
use crate::progress::{Progress, ProgressMode};
use crate::run::task::fmt_duration;
use crate::run::text::escape;
use crate::run::{Event, Outcome, Summary};

pub struct Console {
    progress: Progress,
    metrics: Metrics,
    show_metrics: bool,
}

impl Console {
    pub fn new(mode: ProgressMode, show_metrics: bool) -> Console {
        Console {
            progress: Progress::new(mode),
            metrics: Metrics::default(),
            show_metrics,
        }
    }

    pub fn show(&mut self, event: &Event) {
        self.metrics.record(event);
        match event {
            Event::RunStarted { tasks, .. } => self.progress.run_started(*tasks),
            Event::Queued { .. } => {}
            Event::Started { task, .. } => {
                self.progress.started(task);
                let line = match task.parent {
                    None => format!("Starting task: {} (Priority: {})", task.name, task.priority),
                    Some(_) => format!("Starting subtask: {}", task.name),
                };
                self.task_line(&task.request_id, &line);
            }
            Event::Progress {
                task,
                percent,
                attempt,
            } => {
                self.progress.update(task, *percent, *attempt);
            }
            Event::Retrying {
                task,
                attempt,
                error,
                delay,
            } => {
                let line = format!(
                    "🔁 Retrying: {} - attempt {attempt} failed ({error}), next attempt in {}",
                    task.name,
                    fmt_duration(*delay)
                );
                self.task_line(&task.request_id, &line);
            }
            Event::DeadlineExtended {
                task,
                by,
                left,
                at_hard_limit,
            } => {
                let limit = if *at_hard_limit {
                    ", hard limit reached"
                } else {
                    ""
                };
                let line = format!(
                    "⏳ Deadline extended: {} - by {}, {} left{limit}",
                    task.name,
                    fmt_duration(*by),
                    fmt_duration(*left)
                );
                self.task_line(&task.request_id, &line);
            }
            Event::Finished(report) => {
                self.progress.finished(&report.task, report.started);
                let name = &report.task.name;
                let line = match &report.outcome {
                    Outcome::Completed => format!("✅ Completed: {name}"),
                    Outcome::Canceled(err) => format!("❌ Canceled: {name} - Reason: {err}"),
                    Outcome::Failed(error) => format!("❌ Failed: {name} - Reason: {error}"),
                };
                self.task_line(&report.task.request_id, &line);
            }
            Event::Shutdown { .. } => {
                // No bar stays on the screen after a Ctrl+C, even if a
                // second one ends the process before the summary.
                self.progress.clear();
                self.progress.println("");
                self.progress
                    .println("🚨 Shutdown signal received, canceling all tasks...");
            }
            Event::RunFinished(_) => {}
        }
    }

    /// A log line. Task names (and anything else from outside) may hold
    /// newlines or escape sequences: escaped here, so every line stays one
    /// line with its request ID and nothing reaches the terminal raw.
    fn task_line(&mut self, request_id: &str, text: &str) {
        let line = format!("[{request_id}] {text}");
        self.progress.println(&escape(&line));
    }

    /// Prints log lines held back to spare the progress bars a redraw;
    /// call it when no event came for [`crate::progress::FLUSH_EVERY`].
    pub fn tick(&mut self) {
        self.progress.tick();
    }

    /// The end of the run: metrics table, then the seed's summary line.
    pub fn finish(&mut self, summary: &Summary) {
        self.progress.clear();
        if self.show_metrics {
            self.progress.println("");
            for line in self.metrics.table() {
                self.progress.println(&line);
            }
        }
        self.progress.println("");
        let lost = summary.failed + summary.lost;
        if lost == 0 {
            self.progress.println("✅ All tasks completed or canceled");
        } else {
            self.progress.println(&format!(
                "❌ All tasks finished; {lost} of {} failed",
                summary.tasks
            ));
        }
    }
}
