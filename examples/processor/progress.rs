//! Per-task progress (% complete) and the terminal it shares with the log
//! lines.
//!
//! On a terminal, running tasks get indicatif bars below the log, at most
//! [`MAX_BARS`] of them, plus one summary bar for the whole run; otherwise
//! (a pipe, a file, a test) progress is plain lines at 25 % steps. Either
//! way a task's progress stops with the task, and no bar outlives the run
//! or a shutdown.
//!
//! # Keeping a terminal responsive
//! indicatif redraws every bar each time a line is printed above them. With
//! a bar per running task and two log lines per task, 5,000 tasks on 1,000
//! workers wrote 66 MB in 107 s (15 s without progress), and the screen
//! fell a minute behind. So here:
//! - at most [`MAX_BARS`] task bars; a bar freed by a finished task passes
//!   to a running task that has none; the summary bar counts the rest;
//! - on a terminal, log lines wait in a buffer and go out together at most
//!   every [`FLUSH_EVERY`] (one redraw for the batch); [`Progress::tick`]
//!   sends out what waits when no event comes;
//! - bars redraw at most [`REFRESH_HZ`] times a second.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

use crate::run::TaskRef;
use crate::run::text;

/// Task bars shown at once; more running tasks show in the summary bar.
pub const MAX_BARS: usize = 8;
/// How long a log line may wait to be printed with others, on a terminal.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Most bar redraws per second.
const REFRESH_HZ: u8 = 10;
/// Columns for a task's name in its bar.
const NAME_WIDTH: usize = 28;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// Bars on a terminal, plain lines otherwise.
    Auto,
    /// Plain lines, even on a terminal.
    Plain,
    /// No progress output.
    Off,
    /// Bars even when stdout is not a terminal, drawn with ANSI escapes as
    /// on an 80x24 terminal (tests measure the bars' output with it).
    #[value(hide = true)]
    Bars,
}

pub struct Progress {
    view: View,
}

enum View {
    Bars(Box<Bars>),
    /// The last 25 % step printed, per task and attempt.
    Plain {
        printed: HashMap<Arc<str>, (u32, u8)>,
    },
    Off,
}

struct Bars {
    multi: MultiProgress,
    style: ProgressStyle,
    /// The bottom bar: top-level tasks finished out of all.
    summary: ProgressBar,
    /// Bars of the tasks shown, by task id (at most `MAX_BARS`).
    shown: HashMap<Arc<str>, ProgressBar>,
    /// Running tasks without a bar, in start order, with their progress
    /// (so a bar handed over starts at the right place).
    waiting: BTreeMap<u64, (TaskRef, u8, u32)>,
    /// `waiting`'s key of each task in it.
    waiting_key: HashMap<Arc<str>, u64>,
    next_key: u64,
    running: usize,
    /// Log lines not yet printed, and when the last batch went out.
    lines: Vec<String>,
    flushed: Instant,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Progress {
        let target = match mode {
            ProgressMode::Auto if std::io::stdout().is_terminal() => {
                Some(ProgressDrawTarget::stdout_with_hz(REFRESH_HZ))
            }
            ProgressMode::Bars => Some(ProgressDrawTarget::term_like_with_hz(
                Box::new(AnsiStdout),
                REFRESH_HZ,
            )),
            _ => None,
        };
        let view = match (mode, target) {
            (_, Some(target)) => View::Bars(Box::new(Bars::new(target))),
            (ProgressMode::Off, _) => View::Off,
            _ => View::Plain {
                printed: HashMap::new(),
            },
        };
        Progress { view }
    }

    /// Prints a log line above the bars (on a terminal, with the next
    /// batch). Errors (a closed pipe) are ignored: losing output must not
    /// crash the run.
    pub fn println(&mut self, line: &str) {
        match &mut self.view {
            View::Bars(bars) => {
                bars.lines.push(line.to_owned());
                if bars.flushed.elapsed() >= FLUSH_EVERY {
                    bars.flush();
                }
            }
            View::Plain { .. } | View::Off => write_line(line),
        }
    }

    /// Prints the log lines that have waited long enough; call it when no
    /// event came for a while.
    pub fn tick(&mut self) {
        if let View::Bars(bars) = &mut self.view {
            bars.flush();
        }
    }

    /// The number of top-level tasks in the run, for the summary bar.
    pub fn run_started(&mut self, tasks: usize) {
        if let View::Bars(bars) = &mut self.view {
            bars.summary.set_length(tasks as u64);
        }
    }

    pub fn started(&mut self, task: &TaskRef) {
        if let View::Bars(bars) = &mut self.view {
            bars.running += 1;
            if bars.shown.len() < MAX_BARS {
                let bar = bars.multi.insert_before(
                    &bars.summary,
                    ProgressBar::new(100).with_style(bars.style.clone()),
                );
                show(&bar, task, 0, 1);
                bars.shown.insert(task.id.clone(), bar);
            } else {
                let key = bars.next_key;
                bars.next_key += 1;
                bars.waiting.insert(key, (task.clone(), 0, 1));
                bars.waiting_key.insert(task.id.clone(), key);
            }
            bars.update_summary();
        }
    }

    pub fn update(&mut self, task: &TaskRef, percent: u8, attempt: u32) {
        match &mut self.view {
            View::Bars(bars) => {
                if let Some(bar) = bars.shown.get(&task.id) {
                    bar.set_position(percent.into());
                    if attempt > 1 {
                        bar.set_message(format!("attempt {attempt}"));
                    }
                } else if let Some(key) = bars.waiting_key.get(&task.id)
                    && let Some(entry) = bars.waiting.get_mut(key)
                {
                    entry.1 = percent;
                    entry.2 = attempt;
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
                    write_line(&text::escape(&line));
                }
            }
            View::Off => {}
        }
    }

    /// The task ended: its progress stops here; its bar, if it had one,
    /// passes to a running task that has none.
    pub fn finished(&mut self, task: &TaskRef, started: bool) {
        match &mut self.view {
            View::Bars(bars) => {
                if task.parent.is_none() {
                    bars.summary.inc(1);
                }
                if !started {
                    return;
                }
                bars.running = bars.running.saturating_sub(1);
                if let Some(bar) = bars.shown.remove(&task.id) {
                    match bars.waiting.pop_first() {
                        Some((_, (next, percent, attempt))) => {
                            bars.waiting_key.remove(&next.id);
                            show(&bar, &next, percent, attempt);
                            bars.shown.insert(next.id.clone(), bar);
                        }
                        // Taken out without a redraw of its own; the next
                        // draw leaves its line out.
                        None => bars.multi.remove(&bar),
                    }
                } else if let Some(key) = bars.waiting_key.remove(&task.id) {
                    bars.waiting.remove(&key);
                }
                bars.update_summary();
            }
            View::Plain { printed } => {
                printed.remove(&task.id);
            }
            View::Off => {}
        }
    }

    /// Prints what waits and removes every bar, for good: at the end of
    /// the run and on a shutdown signal (so that no bar is left on the
    /// screen, even if a second signal ends the process at once). Later
    /// lines are printed directly.
    pub fn clear(&mut self) {
        if let View::Bars(bars) = &mut self.view {
            bars.flush();
            for (_, bar) in bars.shown.drain() {
                bars.multi.remove(&bar);
            }
            bars.multi.remove(&bars.summary);
            let _ = bars.multi.clear();
            self.view = View::Off;
        }
    }
}

impl Bars {
    fn new(target: ProgressDrawTarget) -> Bars {
        let style = ProgressStyle::with_template("{prefix} [{bar:30.cyan/blue}] {pos:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        // Every line fits in 80 columns: a wrapped line would make each
        // redraw move over more lines than it drew on some terminals.
        let summary_style =
            ProgressStyle::with_template("{msg:28} [{bar:30.green/white}] {pos}/{len} done")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        let multi = MultiProgress::with_draw_target(target);
        let summary = multi.add(ProgressBar::new(0).with_style(summary_style));
        Bars {
            multi,
            style,
            summary,
            shown: HashMap::new(),
            waiting: BTreeMap::new(),
            waiting_key: HashMap::new(),
            next_key: 0,
            running: 0,
            lines: Vec::new(),
            flushed: Instant::now(),
        }
    }

    /// Prints the waiting lines as one batch: the bars are cleared and
    /// redrawn once for all of them.
    fn flush(&mut self) {
        self.flushed = Instant::now();
        if self.lines.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.lines);
        self.multi.suspend(|| {
            let mut out = std::io::stdout().lock();
            for line in &batch {
                let _ = writeln!(out, "{line}");
            }
            let _ = out.flush();
        });
    }

    fn update_summary(&self) {
        let hidden = self.running.saturating_sub(self.shown.len());
        let msg = match hidden {
            0 => format!("All tasks: {} running", self.running),
            n => format!("{} running, {n} not shown", self.running),
        };
        self.summary.set_message(msg);
    }
}

/// Points `bar` at `task`.
fn show(bar: &ProgressBar, task: &TaskRef, percent: u8, attempt: u32) {
    // Padded here, by display width: indicatif's own padding counts chars.
    let name = text::cell(&task.name, NAME_WIDTH);
    let pad = NAME_WIDTH.saturating_sub(text::width(&name));
    bar.set_prefix(format!("{name}{}", " ".repeat(pad)));
    bar.set_position(percent.into());
    if attempt > 1 {
        bar.set_message(format!("attempt {attempt}"));
    } else {
        bar.set_message("");
    }
}

fn write_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Stdout as an 80x24 ANSI terminal, whatever it really is: the draw
/// target of `--progress bars`, so that tests can measure what the bars
/// write. The same escapes as a real terminal: `ESC[nA`/`ESC[nB` to move
/// up/down, `ESC[2K` to clear a line.
#[derive(Debug)]
struct AnsiStdout;

impl AnsiStdout {
    fn write(&self, text: &str) -> std::io::Result<()> {
        std::io::stdout().lock().write_all(text.as_bytes())
    }
}

impl TermLike for AnsiStdout {
    fn width(&self) -> u16 {
        80
    }
    fn height(&self) -> u16 {
        24
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.write(&format!("\x1b[{n}A"))
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.write(&format!("\x1b[{n}B"))
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.write(&format!("\x1b[{n}C"))
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.write(&format!("\x1b[{n}D"))
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write(&format!("{s}\n"))
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.write(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.write("\r\x1b[2K")
    }
    fn flush(&self) -> std::io::Result<()> {
        std::io::stdout().lock().flush()
    }
}
