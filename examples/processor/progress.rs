//! Per-task progress (% complete) and the terminal it shares with the log
//! lines.
//!
//! On a terminal every running task gets an indicatif bar below the log;
//! otherwise (a pipe, a file, a test) progress is plain lines at 25 %
//! steps. Either way a task's progress stops with the task: a canceled
//! task's bar is removed where it stood, and no line follows its end.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::run::TaskRef;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// Bars on a terminal, plain lines otherwise.
    Auto,
    /// Plain lines, even on a terminal.
    Plain,
    /// No progress output.
    Off,
}

pub struct Progress {
    view: View,
}

enum View {
    Bars {
        multi: MultiProgress,
        style: ProgressStyle,
        bars: HashMap<Arc<str>, ProgressBar>,
    },
    /// The last 25 % step printed, per task and attempt.
    Plain {
        printed: HashMap<Arc<str>, (u32, u8)>,
    },
    Off,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Progress {
        let view = match mode {
            ProgressMode::Auto if std::io::stdout().is_terminal() => {
                let style = ProgressStyle::with_template(
                    "{prefix:<28} [{bar:30.cyan/blue}] {pos:>3}% {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                View::Bars {
                    multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
                    style,
                    bars: HashMap::new(),
                }
            }
            ProgressMode::Auto | ProgressMode::Plain => View::Plain {
                printed: HashMap::new(),
            },
            ProgressMode::Off => View::Off,
        };
        Progress { view }
    }

    /// Prints a log line above the bars. Errors (a closed pipe) are
    /// ignored: losing output must not crash the run.
    pub fn println(&self, line: &str) {
        match &self.view {
            View::Bars { multi, .. } => multi.suspend(|| write_line(line)),
            View::Plain { .. } | View::Off => write_line(line),
        }
    }

    pub fn started(&mut self, task: &TaskRef) {
        if let View::Bars { multi, style, bars } = &mut self.view {
            let bar = multi.add(ProgressBar::new(100).with_style(style.clone()));
            bar.set_prefix(task.name.to_string());
            bars.insert(task.id.clone(), bar);
        }
    }

    pub fn update(&mut self, task: &TaskRef, percent: u8, attempt: u32) {
        match &mut self.view {
            View::Bars { bars, .. } => {
                if let Some(bar) = bars.get(&task.id) {
                    bar.set_position(percent.into());
                    if attempt > 1 {
                        bar.set_message(format!("attempt {attempt}"));
                    }
                }
            }
            View::Plain { printed } => {
                let step = percent / 25 * 25;
                let last = printed.entry(task.id.clone()).or_insert((attempt, 0));
                if last.0 != attempt {
                    *last = (attempt, 0);
                }
                // 100 % is left to the "Completed" line.
                if step > last.1 && step < 100 {
                    last.1 = step;
                    let retry = if attempt > 1 {
                        format!(" (attempt {attempt})")
                    } else {
                        String::new()
                    };
                    let line = format!(
                        "[{}] Progress: {} {step}%{retry}",
                        task.request_id, task.name
                    );
                    write_line(&line);
                }
            }
            View::Off => {}
        }
    }

    /// The task ended: its progress stops here.
    pub fn finished(&mut self, task: &TaskRef) {
        match &mut self.view {
            View::Bars { bars, .. } => {
                if let Some(bar) = bars.remove(&task.id) {
                    bar.finish_and_clear();
                }
            }
            View::Plain { printed } => {
                printed.remove(&task.id);
            }
            View::Off => {}
        }
    }

    /// Removes any bar left (there should be none once the run is over).
    pub fn clear(&mut self) {
        if let View::Bars { multi, bars, .. } = &mut self.view {
            for (_, bar) in bars.drain() {
                bar.finish_and_clear();
            }
            let _ = multi.clear();
        }
    }
}

fn write_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
