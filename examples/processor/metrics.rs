//! Run metrics, built from the event stream alone (so any consumer of the
//! stream could keep the same numbers): per-task duration, attempts and
//! retries, and the timeout and cancellation rates.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use comfy_table::{Cell, ContentLineStyle, LineStyle, Table, TableStyle};

use crate::run::task::fmt_duration;
use crate::run::text;
use crate::run::{Event, Outcome, TaskReport};

/// The widest a task name or a detail may be in the table; longer ones end
/// in `…` (the log lines keep them whole).
const MAX_NAME_WIDTH: usize = 40;
const MAX_DETAIL_WIDTH: usize = 80;

/// Columns separated by two spaces, a dashed line under the header, no
/// borders (the seed's plain-text look); comfy-table pads each cell to its
/// column's display width, so CJK and emoji names line up.
const STYLE: TableStyle = TableStyle::new()
    .header_lines(ContentLineStyle::none().junction(' '))
    .header_separator(LineStyle::none().fill('-').junction(' '))
    .content_lines(ContentLineStyle::none().junction(' '));

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

#[derive(Default)]
pub struct Metrics {
    /// "req-... (4 tasks, 3 workers)", from the run's first event.
    heading: String,
    /// In the order tasks were queued (top-level) or started (subtasks).
    rows: Vec<Row>,
    index: HashMap<Arc<str>, usize>,
}

struct Row {
    id: Arc<str>,
    name: Arc<str>,
    priority: u32,
    parent: Option<Arc<str>>,
    retries: u32,
    /// The deadline the task started with, then the one it ended with.
    deadline: Option<Duration>,
    report: Option<TaskReport>,
}

/// Counts over the top-level tasks.
#[derive(Debug, Default, PartialEq)]
pub struct Rates {
    pub tasks: usize,
    pub completed: usize,
    pub timed_out: usize,
    pub canceled: usize,
    pub failed: usize,
    pub retries: u32,
}

impl Metrics {
    pub fn record(&mut self, event: &Event) {
        match event {
            Event::RunStarted {
                request_id,
                tasks,
                workers,
            } => {
                self.heading = format!(
                    "Metrics for {request_id} ({}, {})",
                    plural(*tasks, "task"),
                    plural(*workers, "worker")
                );
            }
            Event::Queued { task } | Event::Started { task, .. } => {
                if !self.index.contains_key(&task.id) {
                    self.index.insert(task.id.clone(), self.rows.len());
                    self.rows.push(Row {
                        id: task.id.clone(),
                        name: task.name.clone(),
                        priority: task.priority,
                        parent: task.parent.clone(),
                        retries: 0,
                        deadline: None,
                        report: None,
                    });
                }
                if let Event::Started {
                    task, deadline_in, ..
                } = event
                    && let Some(row) = self.row(&task.id)
                {
                    row.deadline = *deadline_in;
                }
            }
            Event::Retrying { task, .. } => {
                if let Some(row) = self.row(&task.id) {
                    row.retries += 1;
                }
            }
            Event::Finished(report) => {
                if let Some(row) = self.row(&report.task.id) {
                    row.deadline = report.deadline.or(row.deadline);
                    row.report = Some(report.clone());
                }
            }
            _ => {}
        }
    }

    fn row(&mut self, id: &str) -> Option<&mut Row> {
        let at = *self.index.get(id)?;
        self.rows.get_mut(at)
    }

    pub fn rates(&self) -> Rates {
        let mut rates = Rates::default();
        for row in &self.rows {
            rates.retries += row.retries;
            if row.parent.is_some() {
                continue;
            }
            rates.tasks += 1;
            match row.report.as_ref().map(|r| &r.outcome) {
                Some(Outcome::Completed) => rates.completed += 1,
                Some(Outcome::Canceled(goctx::Error::DeadlineExceeded)) => rates.timed_out += 1,
                Some(Outcome::Canceled(goctx::Error::Canceled)) | None => rates.canceled += 1,
                Some(Outcome::Failed(_)) => rates.failed += 1,
            }
        }
        rates
    }

    /// The table, one string per line: every task (subtasks indented under
    /// their parent), then the rates.
    pub fn table(&self) -> Vec<String> {
        let header = [
            "Task", "Priority", "Outcome", "Attempts", "Retries", "Duration", "Deadline", "Detail",
        ];
        let mut cells: Vec<[String; 8]> = Vec::new();
        for row in self.rows.iter().filter(|r| r.parent.is_none()) {
            self.add_rows(row, 0, &mut cells);
        }
        let mut table = Table::new();
        table.load_style(STYLE);
        table.set_header(header);
        for line in cells {
            table.add_row(line.map(Cell::new));
        }
        for column in table.column_iter_mut() {
            column.set_padding((0, 1));
        }
        let mut out = vec![self.heading.clone(), String::new()];
        out.extend(table.lines());

        let rates = self.rates();
        let percent = |n: usize| {
            if rates.tasks == 0 {
                0.0
            } else {
                n as f64 * 100.0 / rates.tasks as f64
            }
        };
        let durations: Vec<Duration> = self
            .rows
            .iter()
            .filter(|r| r.parent.is_none())
            .filter_map(|r| r.report.as_ref().filter(|r| r.started).map(|r| r.elapsed))
            .collect();
        out.push(String::new());
        out.push(format!(
            "Tasks: {} | completed: {} | timeout rate: {:.1}% ({}) | cancellation rate: {:.1}% ({}) | failed: {} | retries: {}",
            rates.tasks,
            rates.completed,
            percent(rates.timed_out),
            rates.timed_out,
            percent(rates.canceled),
            rates.canceled,
            rates.failed,
            rates.retries,
        ));
        if let Some(max) = durations.iter().max() {
            let total: Duration = durations.iter().sum();
            let mean = total / durations.len() as u32;
            out.push(format!(
                "Task duration: mean {} | max {}",
                fmt_duration(mean),
                fmt_duration(*max)
            ));
        }
        out
    }

    fn add_rows(&self, row: &Row, depth: usize, cells: &mut Vec<[String; 8]>) {
        let indent = if depth == 0 {
            String::new()
        } else {
            format!("{}└ ", "  ".repeat(depth - 1))
        };
        // A subtask's display name repeats its parent's; show the last part.
        let short = row.name.rsplit(" / ").next().unwrap_or(&row.name);
        let (outcome, attempts, duration, detail) = match &row.report {
            None => (
                "unknown".to_owned(),
                String::new(),
                String::new(),
                String::new(),
            ),
            Some(report) => {
                let outcome = match (&report.outcome, report.started) {
                    (Outcome::Completed, _) => "completed".to_owned(),
                    (Outcome::Canceled(goctx::Error::DeadlineExceeded), true) => {
                        "timed out".to_owned()
                    }
                    (Outcome::Canceled(goctx::Error::Canceled), true) => "canceled".to_owned(),
                    (Outcome::Canceled(goctx::Error::DeadlineExceeded), false) => {
                        "timed out (queued)".to_owned()
                    }
                    (Outcome::Canceled(goctx::Error::Canceled), false) => {
                        "canceled (queued)".to_owned()
                    }
                    (Outcome::Failed(_), _) => "failed".to_owned(),
                };
                let detail = match &report.outcome {
                    Outcome::Failed(error) => error.clone(),
                    _ => report.cause.clone().unwrap_or_default(),
                };
                let duration = if report.started {
                    fmt_duration(report.elapsed)
                } else {
                    "-".to_owned()
                };
                (outcome, report.attempts.to_string(), duration, detail)
            }
        };
        cells.push([
            format!("{indent}{}", text::cell(short, MAX_NAME_WIDTH)),
            row.priority.to_string(),
            outcome,
            attempts,
            row.retries.to_string(),
            duration,
            row.deadline.map(fmt_duration).unwrap_or_default(),
            text::cell(&detail, MAX_DETAIL_WIDTH),
        ]);
        for child in self
            .rows
            .iter()
            .filter(|r| r.parent.as_ref() == Some(&row.id))
        {
            self.add_rows(child, depth + 1, cells);
        }
    }
}
