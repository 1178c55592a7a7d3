//! The task model, the built-in task set and loading task sets from TOML or
//! JSON files.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

// Kept here too for the modules that import them from `task`.
pub use super::duration::{fmt_duration, parse_duration};
use super::text::escape;

/// One unit of simulated work.
///
/// `duration` is how long the work takes when nothing interrupts it. A task
/// may own `subtasks`; they start once the task's own work is done, run
/// concurrently, and their contexts derive from the task's context.
///
/// Serializable as it travels to a broker worker (`broker.rs`); files and
/// request bodies have a schema of their own (`RawFile`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub name: String,
    pub duration: Duration,
    /// 1 is the most urgent.
    pub priority: u32,
    /// Overrides the run's per-task timeout for this task.
    pub timeout: Option<Duration>,
    /// A critical task's deadline is pushed out while it still runs, up to
    /// the run's hard limit. Top-level tasks only.
    pub critical: bool,
    /// The first `fail_times` attempts fail halfway (to exercise retries).
    pub fail_times: u32,
    pub subtasks: Vec<Task>,
}

impl Task {
    fn new(id: &str, name: &str, millis: u64, priority: u32) -> Task {
        Task {
            id: id.into(),
            name: name.into(),
            duration: Duration::from_millis(millis),
            priority,
            timeout: None,
            critical: false,
            fail_times: 0,
            subtasks: Vec::new(),
        }
    }

    /// This task with every duration multiplied by `factor` (which must be
    /// finite and positive).
    pub fn scaled(&self, factor: f64) -> Result<Task, InputError> {
        Ok(Task {
            duration: scale(self.duration, factor)?,
            timeout: self.timeout.map(|t| scale(t, factor)).transpose()?,
            subtasks: self
                .subtasks
                .iter()
                .map(|s| s.scaled(factor))
                .collect::<Result<_, _>>()?,
            ..self.clone()
        })
    }
}

/// The seed's sample run: Send Emails needs longer than the 5 s limit.
/// With three workers, Send Emails waits for the first free one.
pub fn default_tasks() -> Vec<Task> {
    vec![
        Task::new("img", "Process Images", 2_500, 1),
        Task::new("db", "Update Database", 1_500, 1),
        Task::new("report", "Generate Report", 3_500, 2),
        Task::new("email", "Send Emails", 8_000, 3),
    ]
}

/// A problem with what the user asked for: reported on one line, exit code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError(pub String);

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// Multiplies `d` by `factor`, refusing results that do not fit.
pub fn scale(d: Duration, factor: f64) -> Result<Duration, InputError> {
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).map_err(|_| {
        InputError(format!(
            "duration {} is too large after scaling",
            fmt_duration(d)
        ))
    })
}

fn seconds(secs: f64) -> Result<Duration, String> {
    if secs.is_sign_negative() && secs != 0.0 {
        return Err(format!("negative durations are not allowed: {secs}"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("duration of {secs:e} s is out of range"))
}

/// Loads a task set; the format follows the extension (`.toml`, `.json`).
pub fn load(path: &Path) -> Result<Vec<Task>, InputError> {
    let shown = path.display();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let parse: fn(&str) -> Result<RawFile, String> = match ext.as_deref() {
        Some("toml") => parse_toml,
        Some("json") => |text| serde_json::from_str(text).map_err(|e| e.to_string()),
        Some(other) => {
            return Err(InputError(format!(
                "unsupported tasks file extension '.{other}' in '{shown}' (use .toml or .json)"
            )));
        }
        None => {
            return Err(InputError(format!(
                "tasks file '{shown}' has no extension (use .toml or .json)"
            )));
        }
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| InputError(format!("cannot read tasks file '{shown}': {e}")))?;
    let raw =
        parse(&text).map_err(|e| InputError(format!("malformed tasks file '{shown}': {e}")))?;
    convert(raw).map_err(|e| InputError(format!("invalid tasks file '{shown}': {e}")))
}

/// A task set from a parsed JSON document (the service's request bodies):
/// the same schema and checks as a `.json` file. A malformed document's
/// error starts with the path of the field at fault (`tasks[1].duration`).
pub fn from_json(value: serde_json::Value) -> Result<Vec<Task>, String> {
    let raw: RawFile = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        format!("{path}: {}", e.into_inner())
    })?;
    convert(raw)
}

/// toml's own message spans several lines (with a source excerpt); this
/// keeps it to one, with the position.
fn parse_toml(text: &str) -> Result<RawFile, String> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().trim().replace('\n', "; ");
        match e.span() {
            Some(span) => {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!("{message} at line {line} column {column}")
            }
            None => message,
        }
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    tasks: Vec<RawTask>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    id: Option<String>,
    name: String,
    duration: FileDuration,
    priority: Option<i64>,
    timeout: Option<FileDuration>,
    #[serde(default)]
    critical: bool,
    #[serde(default)]
    fail_times: u32,
    #[serde(default)]
    subtasks: Vec<RawTask>,
}

/// A duration in a file: a number of seconds or a string such as `"1.5s"`.
struct FileDuration(Duration);

impl<'de> Deserialize<'de> for FileDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = FileDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration: seconds as a number, or a string such as \"1.5s\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<FileDuration, E> {
                Ok(FileDuration(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FileDuration, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!(
                        "negative durations are not allowed: {v}"
                    ))),
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<FileDuration, E> {
                seconds(v).map(FileDuration).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FileDuration, E> {
                parse_duration(v).map(FileDuration).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

fn convert(raw: RawFile) -> Result<Vec<Task>, String> {
    if raw.tasks.is_empty() {
        return Err("the file lists no tasks".into());
    }
    let mut seen = std::collections::HashSet::new();
    let mut counter = 0;
    raw.tasks
        .into_iter()
        .map(|t| convert_task(t, None, &mut seen, &mut counter))
        .collect()
}

fn convert_task(
    raw: RawTask,
    parent: Option<u32>,
    seen: &mut std::collections::HashSet<String>,
    counter: &mut usize,
) -> Result<Task, String> {
    *counter += 1;
    let explicit_id = raw.id.is_some();
    let id = raw.id.unwrap_or_else(|| format!("task-{counter}"));
    // Messages name a task by its name, which the user wrote; an id made
    // up here would mean nothing to them.
    let what = if parent.is_some() { "subtask" } else { "task" };
    if raw.name.trim().is_empty() {
        return Err(if explicit_id {
            format!("{what} with id '{}' has an empty name", escape(&id))
        } else {
            format!("{what} number {counter} in the file has an empty name")
        });
    }
    let named = format!("{what} '{}'", escape(&raw.name));
    if !seen.insert(id.clone()) {
        return Err(format!("{named}: duplicate task id '{}'", escape(&id)));
    }
    let priority = match (raw.priority, parent) {
        (Some(p), _) if p < 1 => {
            return Err(format!(
                "{named} has priority {p}; priorities start at 1 (the most urgent)"
            ));
        }
        (Some(p), _) => u32::try_from(p).map_err(|_| {
            format!(
                "{named} has priority {p}, above the maximum of {}",
                u32::MAX
            )
        })?,
        (None, Some(p)) => p,
        (None, None) => 1,
    };
    if raw.critical && parent.is_some() {
        return Err(format!(
            "{named} is marked critical; only top-level tasks can be critical"
        ));
    }
    if raw.timeout.as_ref().is_some_and(|t| t.0.is_zero()) {
        return Err(format!("{named} has a zero timeout"));
    }
    let subtasks = raw
        .subtasks
        .into_iter()
        .map(|s| convert_task(s, Some(priority), seen, counter))
        .collect::<Result<_, _>>()?;
    Ok(Task {
        id,
        name: raw.name,
        duration: raw.duration.0,
        priority,
        timeout: raw.timeout.map(|t| t.0),
        critical: raw.critical,
        fail_times: raw.fail_times,
        subtasks,
    })
}
