//! The dashboard page as the tests read it: the instrumentation put on it
//! at load, bounded waits on its DOM, and what a run's section and a
//! task's row show.

use std::time::{Duration, Instant};

use fantoccini::Client;
use serde_json::{Value, json};

use super::WAIT;

/// Set on the page once it has loaded: `__loadedAt` (the navigation's
/// start time; a reload changes it and drops the variable); `__seen`,
/// every (state, shown state text) each task row went through, in order,
/// keyed `"run/task"`; `__progress`, each row's progress values in order;
/// and `__family`, keyed `"run/parent"`, every `[state, progress,
/// [[state, progress] of each subtask]]` a parent and its subtasks showed
/// together; `__names`, every `[state, name as shown]` a row went
/// through. A `MutationObserver` on `#runs` records them all.
const INSTRUMENT: &str = r##"
window.__loadedAt = performance.timeOrigin;
window.__seen = {};
window.__progress = {};
window.__family = {};
window.__names = {};
const push = (map, key, value) => {
  const list = map[key] || (map[key] = []);
  const last = list[list.length - 1];
  if (last === undefined || JSON.stringify(last) !== JSON.stringify(value)) list.push(value);
};
const record = () => {
  const rows = [...document.querySelectorAll("#runs tr.task")];
  for (const row of rows) {
    const run = row.getAttribute("data-run-id");
    const id = row.getAttribute("data-task-id");
    const key = run + "/" + id;
    const state = row.getAttribute("data-state");
    const progress = Number(row.getAttribute("data-progress"));
    push(window.__seen, key, [state, row.querySelector(".task-state").textContent]);
    push(window.__progress, key, progress);
    push(window.__names, key, [state, row.querySelector(".task-name").textContent]);
    const children = rows.filter(r => r.getAttribute("data-run-id") === run
                                   && r.getAttribute("data-parent-id") === id);
    if (children.length > 0) {
      push(window.__family, key, [state, progress, children.map(
        c => [c.getAttribute("data-state"), Number(c.getAttribute("data-progress"))])]);
    }
  }
};
new MutationObserver(record).observe(document.getElementById("runs"),
  { subtree: true, childList: true, attributes: true, characterData: true });
record();
return window.__loadedAt;
"##;

/// Opens the dashboard, waits for the live feed, instruments the page;
/// the page's `__loadedAt`.
pub async fn open(page: &Client, url: &str) -> f64 {
    page.goto(url).await.expect("GET /");
    assert_eq!(page.title().await.unwrap(), "goctx task processor");
    wait(
        page,
        "the live feed opens (#connection[data-state=open])",
        r##"const c = document.getElementById("connection");
           return c.getAttribute("data-state") === "open" && c.textContent === "live";"##,
        vec![],
    )
    .await;
    page.execute(INSTRUMENT, vec![])
        .await
        .expect("instrument the page")
        .as_f64()
        .expect("__loadedAt")
}

/// Polls `script` (a function body; `arguments` are `args`) until it
/// returns something other than `false`, `null` or `undefined`; that value.
/// Fails after [`WAIT`] with what was awaited and what the page shows.
pub async fn wait(page: &Client, what: &str, script: &str, args: Vec<Value>) -> Value {
    let start = Instant::now();
    loop {
        let value = page
            .execute(script, args.clone())
            .await
            .unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
        if !matches!(value, Value::Null | Value::Bool(false)) {
            return value;
        }
        if start.elapsed() > WAIT {
            panic!(
                "not seen within {WAIT:?}: {what}\npage: {}",
                page_state(page).await
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The runs as the page shows them, and the states it recorded: for
/// failure messages.
async fn page_state(page: &Client) -> String {
    let script = r##"return JSON.stringify({
        connection: document.getElementById("connection").getAttribute("data-state"),
        message: document.getElementById("message").textContent,
        placeholder: document.getElementById("placeholder").textContent,
        runs: [...document.querySelectorAll("#runs section.run")].map(s => ({
          id: s.getAttribute("data-run-id"), state: s.getAttribute("data-state"),
          tasks: [...s.querySelectorAll("tr.task")].map(r => r.textContent) })),
        seen: window.__seen }, null, 1);"##;
    match page.execute(script, vec![]).await {
        Ok(Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}

/// What the row of task `task` in run `run` shows: its `data-*` states,
/// each cell's text, and its progress bar as drawn (`bar`: the filled
/// part's width in % of the bar's, `colour`: the fill's computed colour),
/// or `null` while there is no such row.
pub const ROW: &str = r##"
const [run, task] = arguments;
const section = document.getElementById("run-" + run);
if (!section) return null;
const row = [...section.querySelectorAll("tr.task")]
  .find(r => r.getAttribute("data-task-id") === task);
if (!row) return null;
const cell = (c) => row.querySelector(c).textContent;
const bar = row.querySelector(".task-progress .bar");
const fill = bar.querySelector(".bar-fill");
const drawn = fill.getBoundingClientRect().width / bar.getBoundingClientRect().width * 100;
return { state: row.getAttribute("data-state"), progress: row.getAttribute("data-progress"),
  depth: row.getAttribute("data-depth"), run: row.getAttribute("data-run-id"),
  name: cell(".task-name"), text: cell(".task-state"), percent: cell(".task-percent"),
  bar: Math.round(drawn * 10) / 10, colour: getComputedStyle(fill).backgroundColor,
  aria: bar.getAttribute("aria-valuenow"), attempts: cell(".task-attempts"),
  duration: cell(".task-duration"), deadline: cell(".task-deadline"), cause: cell(".task-cause"),
  seen: (window.__seen || {})[run + "/" + task] || [],
  progresses: (window.__progress || {})[run + "/" + task] || [],
  family: (window.__family || {})[run + "/" + task] || [],
  names: (window.__names || {})[run + "/" + task] || [] };
"##;

/// Waits until task `task` of run `run` shows `state`; the row.
pub async fn wait_task(page: &Client, run: &str, task: &str, state: &str) -> Value {
    let check = format!(
        "const row = (() => {{ {ROW} }})();\n\
         return row && row.state === arguments[2] ? row : null;"
    );
    wait(
        page,
        &format!("task {task} of {run} shows {state}"),
        &check,
        vec![json!(run), json!(task), json!(state)],
    )
    .await
}

/// What the section of run `run` shows, or `null`. `summary` is the
/// finished run's summary line as laid out (`null` while it is not
/// drawn), `counts` its count per outcome.
pub const RUN: &str = r##"
const section = document.getElementById("run-" + arguments[0]);
if (!section) return null;
const text = (c) => section.querySelector(c).textContent;
const summary = section.querySelector(".run-summary");
const drawn = summary.getClientRects().length > 0 && !summary.hidden;
const counts = {};
for (const c of summary.querySelectorAll(".summary-count")) {
  counts[c.getAttribute("data-outcome")] = c.textContent;
}
return { state: section.getAttribute("data-state"), id: text(".run-id"),
  text: text(".run-state"), cause: text(".run-cause"), duration: text(".run-duration"),
  request_id: text(".run-request-id"), trace_id: text(".run-trace-id"),
  cancel_hidden: section.querySelector("button.cancel-run").hidden,
  summary: drawn ? summary.innerText : null, counts,
  summary_duration: text(".summary-duration"),
  tasks: section.querySelectorAll("tr.task").length };
"##;

pub async fn wait_run(page: &Client, run: &str, state: &str) -> Value {
    let check = format!(
        "const run = (() => {{ {RUN} }})();\n\
         return run && run.state === arguments[1] ? run : null;"
    );
    wait(
        page,
        &format!("run {run} shows {state}"),
        &check,
        vec![json!(run), json!(state)],
    )
    .await
}

/// The states a row went through, in order (consecutive repeats dropped).
pub fn states(row: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for seen in row["seen"].as_array().expect("seen") {
        let state = seen[0].as_str().unwrap().to_owned();
        if out.last() != Some(&state) {
            out.push(state);
        }
    }
    out
}

/// Every state the row showed came with its own text (`timed_out` as
/// "timed out"): the cell and the attribute never disagreed.
pub fn assert_text_matches_state(row: &Value) {
    for seen in row["seen"].as_array().unwrap() {
        let (state, text) = (seen[0].as_str().unwrap(), seen[1].as_str().unwrap());
        assert_eq!(text, state.replace('_', " "), "row: {row:#}");
    }
}

/// The page has not been reloaded since `loaded_at`: the marker set at
/// load is there, unchanged, and there was one navigation.
pub async fn assert_not_reloaded(page: &Client, loaded_at: f64) {
    let same = page
        .execute(
            r##"return window.__loadedAt === arguments[0]
                 && performance.timeOrigin === arguments[0]
                 && performance.getEntriesByType("navigation").length === 1
                 && performance.getEntriesByType("navigation")[0].type === "navigate";"##,
            vec![json!(loaded_at)],
        )
        .await
        .expect("read the load marker");
    assert_eq!(same, json!(true), "the page was reloaded");
}

/// A duration as the page shows it (`850ms`, `1.25s`), in milliseconds.
pub fn millis(shown: &str) -> f64 {
    if let Some(ms) = shown.strip_suffix("ms") {
        ms.parse()
            .unwrap_or_else(|_| panic!("not a duration: {shown:?}"))
    } else if let Some(s) = shown.strip_suffix('s') {
        s.parse::<f64>()
            .unwrap_or_else(|_| panic!("not a duration: {shown:?}"))
            * 1000.0
    } else {
        panic!("not a duration: {shown:?}")
    }
}

/// The progress values a row showed, in order.
pub fn progresses(row: &Value) -> Vec<u64> {
    row["progresses"]
        .as_array()
        .expect("progresses")
        .iter()
        .map(|p| p.as_u64().expect("a whole percentage"))
        .collect()
}

/// The row's progress as its `data-progress` says.
pub fn progress(row: &Value) -> u64 {
    row["progress"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no progress: {row:#}"))
}

/// The bar as drawn agrees with the progress the row states, in its
/// `data-progress`, its text and its `aria-valuenow`.
pub fn assert_bar_matches_progress(row: &Value) {
    let progress = progress(row);
    assert_eq!(row["percent"], format!("{progress}%"), "{row:#}");
    assert_eq!(row["aria"], progress.to_string(), "{row:#}");
    let drawn = row["bar"].as_f64().expect("a drawn width");
    assert!(
        (drawn - progress as f64).abs() <= 1.0,
        "the bar is drawn {drawn}% full for {progress}%: {row:#}"
    );
}

/// Waits until task `task`'s running row shows a longer duration than in
/// `before` (the page ticks it between the server's updates).
pub async fn duration_ticks(page: &Client, run: &str, task: &str, before: &Value) {
    let ticked = wait(
        page,
        &format!("the duration of running task {task} ticks"),
        &format!(
            "const row = (() => {{ {ROW} }})();\n\
             return row.state === \"running\" && row.duration !== arguments[2] ? row : null;"
        ),
        vec![json!(run), json!(task), before["duration"].clone()],
    )
    .await;
    assert!(
        millis(ticked["duration"].as_str().unwrap()) > millis(before["duration"].as_str().unwrap()),
        "{before:#} then {ticked:#}"
    );
}
