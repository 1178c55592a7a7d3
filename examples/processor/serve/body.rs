//! The body of `POST /runs`, checked: the task files' JSON schema plus an
//! optional `peer` on any task, bounded in size, task count and depth.
//! Every error names the field at fault (`tasks[1].subtasks[0].duration`),
//! and nothing is started unless the whole body is good.

use std::collections::HashMap;

use serde_json::Value;

use crate::run::task::{self, Task};

/// Tasks in one run, subtasks included.
pub const MAX_TASKS: usize = 256;
/// Levels of tasks: a top-level task is level 1, its subtasks level 2...
pub const MAX_DEPTH: usize = 4;

/// A request body that cannot start a run: answered with `400`.
#[derive(Debug)]
pub struct BodyError {
    /// Where in the body: `body`, `tasks`, `tasks[2].priority`...
    pub field: String,
    pub message: String,
}

impl BodyError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> BodyError {
        BodyError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A task that runs on a peer: the task as the client wrote it (without
/// its `peer`), sent to the peer as a one-task run.
#[derive(Clone, Debug)]
pub struct PeerTask {
    pub url: String,
    pub task: Value,
}

/// What a good body asks for.
#[derive(Debug)]
pub struct RunRequest {
    /// Durations already multiplied by the server's time scale.
    pub tasks: Vec<Task>,
    /// Remote tasks by task id.
    pub peers: HashMap<String, PeerTask>,
}

/// Which peers a task may name: the `--peer` URLs, or when there are
/// none, any loopback address (a server must not be a proxy to anywhere).
#[derive(Clone, Debug, Default)]
pub struct PeerPolicy {
    pub allowed: Vec<String>,
}

impl PeerPolicy {
    /// The URL in its normal form (`http://host:port`, no trailing slash),
    /// if it is allowed.
    pub fn check(&self, url: &str) -> Result<String, String> {
        let normal = normalize_peer(url)?;
        if self.allowed.is_empty() {
            let host = normal
                .trim_start_matches("http://")
                .rsplit_once(':')
                .map_or("", |(host, _)| host);
            let loopback = host == "localhost"
                || host == "[::1]"
                || host
                    .parse::<std::net::Ipv4Addr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(format!(
                    "peer '{normal}' is not on loopback; start the server with --peer {normal} to allow it"
                ));
            }
        } else if !self.allowed.contains(&normal) {
            return Err(format!(
                "peer '{normal}' is not one of the server's --peer URLs"
            ));
        }
        Ok(normal)
    }
}

/// `http://host:port` with nothing after it but an optional `/`.
pub fn normalize_peer(url: &str) -> Result<String, String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("'{url}' is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("'{url}' must start with http://"));
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("'{url}' has no host"));
    };
    if authority.port_u16().is_none() || authority.as_str().contains('@') {
        return Err(format!("'{url}' must be http://host:port"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("'{url}' must have no path or query"));
    }
    Ok(format!("http://{authority}"))
}

/// Parses a body. An empty body or `{}` runs `default_tasks` (the
/// seed's, or `--tasks`, already scaled).
pub fn parse(
    bytes: &[u8],
    default_tasks: &[Task],
    time_scale: f64,
    peers: &PeerPolicy,
) -> Result<RunRequest, BodyError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(defaults(default_tasks));
    }
    let mut doc: Value = serde_json::from_slice(bytes)
        .map_err(|e| BodyError::new("body", format!("malformed JSON: {e}")))?;
    let Value::Object(top) = &mut doc else {
        return Err(BodyError::new(
            "body",
            "expected a JSON object such as {\"tasks\": [...]}",
        ));
    };
    if let Some(key) = top.keys().find(|k| *k != "tasks") {
        return Err(BodyError::new(
            key.clone(),
            format!("unknown field '{key}', expected 'tasks'"),
        ));
    }
    let Some(list) = top.get_mut("tasks") else {
        return Ok(defaults(default_tasks));
    };
    let Value::Array(list) = list else {
        return Err(BodyError::new("tasks", "expected an array of tasks"));
    };
    if list.is_empty() {
        return Err(BodyError::new("tasks", "the run lists no tasks"));
    }

    // One pass in the order the task loader numbers tasks (depth first,
    // parent before children): limits, peers, and the path of each task.
    let mut walk = Walk {
        paths: Vec::new(),
        ids: HashMap::new(),
        names: HashMap::new(),
        peers: Vec::new(),
        policy: peers,
    };
    for (i, t) in list.iter_mut().enumerate() {
        walk.task(t, format!("tasks[{i}]"), 1)?;
    }

    let tasks = task::from_json(doc).map_err(|message| locate(message, &walk))?;
    let mut flat = Vec::new();
    flatten(&tasks, &mut flat);
    let mut by_id = HashMap::new();
    for (index, peer) in walk.peers {
        if let Some(t) = flat.get(index) {
            by_id.insert(t.id.clone(), peer);
        }
    }
    let tasks = tasks
        .iter()
        .map(|t| local_part(t, &by_id).scaled(time_scale))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BodyError::new("tasks", e.0))?;
    Ok(RunRequest {
        tasks,
        peers: by_id,
    })
}

fn defaults(tasks: &[Task]) -> RunRequest {
    RunRequest {
        tasks: tasks.to_vec(),
        peers: HashMap::new(),
    }
}

struct Walk<'a> {
    /// The path of every task, in the loader's order.
    paths: Vec<String>,
    /// The path of each task with an explicit id (the last, for a repeat).
    ids: HashMap<String, String>,
    /// The path of each task by name (the first, for a repeat): the
    /// loader's messages name a task by its name.
    names: HashMap<String, String>,
    /// (index in that order, peer) of remote tasks.
    peers: Vec<(usize, PeerTask)>,
    policy: &'a PeerPolicy,
}

impl Walk<'_> {
    fn task(&mut self, value: &mut Value, path: String, depth: usize) -> Result<(), BodyError> {
        if depth > MAX_DEPTH {
            return Err(BodyError::new(
                path,
                format!("tasks are nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        if self.paths.len() == MAX_TASKS {
            return Err(BodyError::new(
                path,
                format!("a run has at most {MAX_TASKS} tasks, subtasks included"),
            ));
        }
        let Value::Object(fields) = value else {
            return Err(BodyError::new(path, "expected a task object"));
        };
        let index = self.paths.len();
        self.paths.push(path.clone());
        if let Some(Value::String(id)) = fields.get("id") {
            self.ids.insert(id.clone(), path.clone());
        }
        if let Some(Value::String(name)) = fields.get("name") {
            self.names
                .entry(crate::run::text::escape(name).into_owned())
                .or_insert_with(|| path.clone());
        }
        if let Some(peer) = fields.remove("peer") {
            let field = format!("{path}.peer");
            let Value::String(url) = peer else {
                return Err(BodyError::new(field, "expected a URL string"));
            };
            let url = self
                .policy
                .check(&url)
                .map_err(|e| BodyError::new(field, e))?;
            self.peers.push((
                index,
                PeerTask {
                    url,
                    task: Value::Object(fields.clone()),
                },
            ));
        }
        if let Some(subtasks) = fields.get_mut("subtasks") {
            let Value::Array(subtasks) = subtasks else {
                return Err(BodyError::new(
                    format!("{path}.subtasks"),
                    "expected an array of tasks",
                ));
            };
            for (i, t) in subtasks.iter_mut().enumerate() {
                self.task(t, format!("{path}.subtasks[{i}]"), depth + 1)?;
            }
        }
        Ok(())
    }
}

fn flatten<'a>(tasks: &'a [Task], out: &mut Vec<&'a Task>) {
    for t in tasks {
        out.push(t);
        flatten(&t.subtasks, out);
    }
}

/// What runs here of a task: a remote task's subtasks run on the peer.
fn local_part(task: &Task, peers: &HashMap<String, PeerTask>) -> Task {
    Task {
        subtasks: if peers.contains_key(&task.id) {
            Vec::new()
        } else {
            task.subtasks.iter().map(|s| local_part(s, peers)).collect()
        },
        ..task.clone()
    }
}

/// Turns the loader's message into a field. Schema errors start with
/// their path; the loader's own checks name a task by its name (`task 'x'
/// has priority 0...`), or by id, which the walk's paths resolve.
fn locate(message: String, walk: &Walk<'_>) -> BodyError {
    if let Some((path, rest)) = message.split_once(": ")
        && path.starts_with("tasks")
    {
        return BodyError::new(path, rest);
    }
    let field = ["priority", "timeout", "critical", "name", "id"]
        .into_iter()
        .find(|f| message.contains(f))
        .unwrap_or("id");
    let id = message.split('\'').nth(1).unwrap_or_default();
    let task_path = walk.names.get(id).or_else(|| walk.ids.get(id)).or_else(|| {
        id.strip_prefix("task-")
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| walk.paths.get(n.wrapping_sub(1)))
    });
    match task_path {
        Some(path) => BodyError::new(format!("{path}.{field}"), message),
        None => BodyError::new(format!("tasks[].{field}"), message),
    }
}
