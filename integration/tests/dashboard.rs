//! The dashboard (`GET /` of `processor serve`) as a person sees it: the
//! page in Debian's headless Chromium, driven over W3C WebDriver
//! (fantoccini talking to Debian's chromedriver), while runs start,
//! progress, time out and are canceled, all without a reload. What is
//! checked is what is drawn: bars by their drawn width and colour,
//! placeholders and summaries by whether they are laid out, columns by
//! their positions.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's
//! `chromium` and `chromium-driver`, which `.ci/run` installs); without
//! them the tests fail and say so rather than skip. The broker-mode test
//! also needs Debian's `nats-server` (`integration/tests/common/nats.rs`).
//!
//! Every wait polls the page's DOM and gives up after [`WAIT`]. A
//! `MutationObserver` put on the page at load records each state a task
//! row shows, so a state the page showed only briefly is not missed
//! between two polls.
//!
//! The screenshot of a run in progress is written to
//! `target/tmp/dashboard.png`; with `GOCTX_UPDATE_SCREENSHOT=1` also to
//! `docs/dashboard.png`, the picture in docs/processor.md (a test that
//! rewrote a committed file on every run would leave the tree dirty).

#[path = "dashboard/browser.rs"]
mod browser;
mod common;
#[path = "dashboard/page.rs"]
mod page;
#[path = "dashboard/proxy.rs"]
mod proxy;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::nats::Nats;
use common::servers::{ExampleServer, Lines, Stderr};
use fantoccini::Locator;
use serde_json::{Value, json};

use browser::{save_screenshot, with_browser};
use page::{
    ROW, RUN, assert_bar_matches_progress, assert_not_reloaded, assert_text_matches_state,
    duration_ticks, millis, open, progress, progresses, states, wait, wait_run, wait_task,
};
use proxy::GatedProxy;

/// The longest any one wait may take.
const WAIT: Duration = Duration::from_secs(20);

/// Halves every duration of the server: the seed's run takes about 3.3 s
/// (Send Emails starts at 0.75 s and times out 2.5 s later).
const TIME_SCALE: &str = "0.5";

/// The screenshot's size, the browser window's.
const WIDTH: u32 = 1200;
const HEIGHT: u32 = 800;

const MARKUP_NAME: &str = "<img src=x onerror=alert(1)>";

// ---------------------------------------------------------------------------
// The server

fn processor() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| common::example("processor")).clone()
}

/// `processor serve` on a free loopback port; killed on drop.
struct Server(ExampleServer);

impl Server {
    fn start() -> Server {
        Server::start_with(&[])
    }

    /// With more flags (`--peer`).
    fn start_with(extra: &[&str]) -> Server {
        let mut command = Command::new(processor());
        command
            .args(["serve", "--addr", "127.0.0.1:0", "--time-scale", TIME_SCALE])
            .args(extra);
        Server(ExampleServer::start(
            command,
            Stderr::Capture,
            Lines::Discard,
        ))
    }

    /// In broker mode: the run's tasks go to `processor worker`
    /// processes through the nats-server at `broker`. At full speed, no
    /// `--time-scale`.
    fn on_broker(broker: &str) -> Server {
        let mut command = Command::new(processor());
        command.args(["serve", "--addr", "127.0.0.1:0", "--broker", broker]);
        Server(ExampleServer::start(
            command,
            Stderr::Capture,
            Lines::Discard,
        ))
    }

    fn url(&self) -> String {
        format!("http://{}/", self.0.addr)
    }

    /// The base URL, as `--peer` and a task's `peer` take it.
    fn origin(&self) -> String {
        format!("http://{}", self.0.addr)
    }

    /// `POST /runs` with `body`; the new run's id.
    fn start_run(&self, body: &Value) -> String {
        let (status, json) = self.request("POST", "/runs", &body.to_string());
        assert_eq!(status, 201, "POST /runs: {json:#}");
        json["id"].as_str().expect("an id").to_owned()
    }

    /// `DELETE /runs/{id}`: the answer, a `202` with the run.
    fn cancel_run(&self, id: &str) -> Value {
        let (status, json) = self.request("DELETE", &format!("/runs/{id}"), "");
        assert_eq!(status, 202, "DELETE /runs/{id}: {json:#}");
        json
    }

    /// One request with a JSON body on a new connection: the status and
    /// the JSON answer.
    fn request(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let mut stream = TcpStream::connect(&self.0.addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("send head");
        stream.write_all(body.as_bytes()).expect("send body");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read response");
        let (head, json) = response.split_once("\r\n\r\n").expect("a response");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status: {response}"));
        let json = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {response}"));
        (status, json)
    }

    fn logs(&self) -> String {
        self.0.logs()
    }
}

/// `processor worker --name NAME --workers 1` on the nats-server at
/// `broker`, once it says it is ready; killed on drop.
fn worker(broker: &str, name: &str) -> ExampleServer {
    let mut command = Command::new(processor());
    command.args([
        "worker",
        "--broker",
        broker,
        "--name",
        name,
        "--workers",
        "1",
    ]);
    let worker = ExampleServer::start_worker(command, Stderr::Capture);
    assert_eq!(worker.addr, name, "the worker's ready line names it");
    worker
}

// ---------------------------------------------------------------------------
// The tests

/// What `#placeholder` shows: its state, its text, and whether it is laid
/// out on the page.
const PLACEHOLDER: &str = r##"
const p = document.getElementById("placeholder");
return { state: p.getAttribute("data-state"), text: p.textContent,
  shown: !p.hidden && p.getClientRects().length > 0,
  runs: document.querySelectorAll("#runs section.run").length };
"##;

async fn placeholder(page: &fantoccini::Client) -> Value {
    page.execute(PLACEHOLDER, vec![])
        .await
        .expect("read #placeholder")
}

/// Where each column of run `run`'s table is drawn: `[left, width]` of
/// each header cell, and of each cell of its first task row.
const COLUMNS: &str = r##"
const section = document.getElementById("run-" + arguments[0]);
const rect = (e) => { const r = e.getBoundingClientRect(); return [r.left, r.width]; };
return { head: [...section.querySelectorAll("thead th")].map(rect),
  row: [...section.querySelector("tr.task").children].map(rect) };
"##;

/// The seed's run started with the button: one task seen running then
/// completed, Send Emails running then timed out with its cause and its
/// bar where it stopped; the finished run's summary; a second run whose
/// durations tick, canceled with its own button, its bars short of full
/// and coloured as canceled; the columns of both cards in line; the
/// empty state before the first run; the page never reloaded.
#[tokio::test]
async fn runs_start_progress_time_out_and_cancel_live() {
    let server = Server::start();
    with_browser(|page| async move {
        let loaded_at = open(&page, &server.url()).await;

        // A new server has no runs, and the page says so.
        let empty = wait(
            &page,
            "the empty state",
            &format!(
                "const p = (() => {{ {PLACEHOLDER} }})(); \
                 return p.state === \"empty\" ? p : null;"
            ),
            vec![],
        )
        .await;
        assert_eq!(empty["shown"], true, "{empty:#}");
        assert!(
            empty["text"].as_str().unwrap().starts_with("No runs yet"),
            "{empty:#}"
        );
        let shown = page
            .find(Locator::Css("#placeholder"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap();
        assert!(shown, "the empty state is not on screen");

        // The seed's run, from the button.
        page.find(Locator::Css("button#start-seed"))
            .await
            .expect("the start button")
            .click()
            .await
            .expect("click start");
        let message = wait(
            &page,
            "#message says the run started",
            r##"const m = document.getElementById("message").textContent;
               return m.startsWith("started ") ? m.slice("started ".length) : null;"##,
            vec![],
        )
        .await;
        let seed = message.as_str().unwrap().to_owned();
        let run = wait(
            &page,
            "the seed's run appears with its four tasks",
            &format!("const run = (() => {{ {RUN} }})(); return run && run.tasks === 4 ? run : null;"),
            vec![json!(seed)],
        )
        .await;
        assert_eq!(run["id"], seed);
        assert_eq!(run["text"], "running", "{run:#}");
        assert_eq!(run["cancel_hidden"], false, "{run:#}");
        assert_eq!(run["summary"], Value::Null, "no summary while it runs: {run:#}");
        assert_eq!(run["request_id"].as_str().unwrap().len(), 32, "{run:#}");
        assert_eq!(run["trace_id"].as_str().unwrap().len(), 32, "{run:#}");
        let gone = placeholder(&page).await;
        assert_eq!(gone["shown"], false, "the empty state stays with a run: {gone:#}");

        // Update Database: running, then completed at 100%.
        let db = wait_task(&page, &seed, "db", "completed").await;
        assert_eq!(states(&db).last().unwrap(), "completed");
        assert!(
            states(&db).contains(&"running".to_owned()),
            "Update Database was never shown running: {db:#}"
        );
        assert_eq!(db["name"], "Update Database");
        assert_eq!(db["text"], "completed");
        assert_eq!(db["progress"], "100");
        assert_eq!(db["percent"], "100%");
        assert_bar_matches_progress(&db);
        assert_eq!(db["attempts"], "1");
        assert_eq!(db["cause"], "");
        assert!(db["duration"].as_str().unwrap().ends_with('s'), "{db:#}");
        assert_text_matches_state(&db);
        let completed_colour = db["colour"].clone();

        // Send Emails: waits for a worker, runs, times out with its cause;
        // its bar stops where its work did, in the colour of a timeout.
        let email = wait_task(&page, &seed, "email", "timed_out").await;
        let seen = states(&email);
        let running = seen.iter().position(|s| s == "running");
        assert!(
            running.is_some() && seen.last().unwrap() == "timed_out",
            "Send Emails was not shown running, then timed out: {email:#}"
        );
        assert_eq!(email["name"], "Send Emails");
        assert_eq!(email["text"], "timed out");
        assert_eq!(email["cause"], "context deadline exceeded");
        assert_eq!(email["deadline"], "2.50s", "the 5 s task timeout, scaled");
        assert_text_matches_state(&email);
        // 4 s of work with 2.5 s to do it: about 62%, never a full bar.
        let stopped = progress(&email);
        assert!(
            0 < stopped && stopped < 100,
            "a timed-out task shows {stopped}%: {email:#}"
        );
        assert_bar_matches_progress(&email);
        assert_ne!(
            email["colour"], completed_colour,
            "a timed-out bar looks like a completed one"
        );

        // The finished run's summary, on its card.
        let run = wait_run(&page, &seed, "finished").await;
        assert_eq!(run["text"], "finished");
        assert_eq!(run["cancel_hidden"], true, "no cancel button once finished");
        assert!(run["summary"].is_string(), "no summary drawn: {run:#}");
        assert_eq!(
            run["counts"],
            json!({"completed": "3 completed", "timed_out": "1 timed out",
                   "canceled": "0 canceled", "failed": "0 failed"}),
            "{run:#}"
        );
        assert_eq!(run["cause"], "", "the seed's run ended by itself: {run:#}");
        // Send Emails started at 0.75 s and had 2.5 s.
        let took = run["summary_duration"].as_str().unwrap();
        let took_ms = millis(took.strip_prefix("took ").expect("took ..."));
        assert!(took_ms >= 3_000.0, "{run:#}");
        assert_eq!(run["duration"], took.strip_prefix("took ").unwrap(), "{run:#}");
        for task in ["img", "report"] {
            let row = wait_task(&page, &seed, task, "completed").await;
            assert_eq!(states(&row).last().unwrap(), "completed", "{row:#}");
            assert_bar_matches_progress(&row);
        }
        let cancel = page
            .find(Locator::Css(&format!(
                "#runs button.cancel-run[data-run-id=\"{seed}\"]"
            )))
            .await
            .expect("the seed run's cancel button");
        assert!(!cancel.is_displayed().await.unwrap());

        // A second run of two long tasks, canceled from its own button.
        let long = json!({"tasks": [
            {"id": "a", "name": "Long A", "duration": "30s", "timeout": "60s"},
            {"id": "b", "name": "Long B", "duration": "30s", "timeout": "60s"}]});
        let second = server.start_run(&long);
        let mut running_colour = Value::Null;
        for task in ["a", "b"] {
            let row = wait(
                &page,
                &format!("task {task} of {second} runs with some progress"),
                &format!(
                    "const row = (() => {{ {ROW} }})();\n\
                     return row && row.state === \"running\" && Number(row.progress) >= 3 \
                       ? row : null;"
                ),
                vec![json!(second), json!(task)],
            )
            .await;
            // As `GET /runs` has it: a running task's duration so far.
            assert!(
                row["duration"].as_str().unwrap().ends_with('s'),
                "a running task shows no duration: {row:#}"
            );
            assert_eq!(row["deadline"], "30.00s", "its own 60 s timeout, scaled");
            running_colour = row["colour"].clone();
        }
        // A running task's duration goes on between the server's updates.
        let before = wait_task(&page, &second, "a", "running").await;
        duration_ticks(&page, &second, "a", &before).await;
        let order = page
            .execute(
                r##"return [...document.querySelectorAll("#runs section.run")]
                     .map(s => s.getAttribute("data-run-id"));"##,
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(order, json!([second, seed]), "newest run first");
        let png = page.screenshot().await.expect("a screenshot");
        save_screenshot(&png);

        let button = page
            .find(Locator::Css(&format!(
                "#runs button.cancel-run[data-run-id=\"{second}\"]"
            )))
            .await
            .expect("the second run's cancel button");
        assert!(button.is_displayed().await.unwrap());
        assert_eq!(button.text().await.unwrap(), "Cancel");
        button.click().await.expect("click cancel");
        let mut canceled_colour = Value::Null;
        for task in ["a", "b"] {
            let row = wait_task(&page, &second, task, "canceled").await;
            assert!(
                states(&row).ends_with(&["running".to_owned(), "canceled".to_owned()]),
                "not shown running, then canceled: {row:#}"
            );
            assert_eq!(row["text"], "canceled");
            assert_eq!(row["cause"], "canceled via API");
            assert_text_matches_state(&row);
            // Canceled a few % in: the bar stays there, in another colour.
            let stopped = progress(&row);
            assert!(
                (3..100).contains(&stopped),
                "a canceled task shows {stopped}%: {row:#}"
            );
            assert_bar_matches_progress(&row);
            assert_ne!(row["colour"], running_colour, "{row:#}");
            assert_ne!(row["colour"], completed_colour, "{row:#}");
            assert_ne!(row["colour"], email["colour"], "{row:#}");
            canceled_colour = row["colour"].clone();
        }
        assert_ne!(canceled_colour, Value::Null);
        let run = wait_run(&page, &second, "finished").await;
        assert_eq!(run["cause"], "cause: canceled via API");
        assert!(
            run["summary"]
                .as_str()
                .is_some_and(|s| s.contains("cause: canceled via API")),
            "the cause is not in the drawn summary: {run:#}"
        );
        assert_eq!(run["counts"]["canceled"], "2 canceled", "{run:#}");
        assert_eq!(run["counts"]["completed"], "0 completed", "{run:#}");
        assert_eq!(run["cancel_hidden"], true);
        assert!(!button.is_displayed().await.unwrap());
        wait(
            &page,
            "#message confirms the cancel",
            "return document.getElementById(\"message\").textContent === \"cancel requested for \" + arguments[0];",
            vec![json!(second)],
        )
        .await;

        // The two cards' columns line up, whatever their names and causes.
        let seed_columns = page.execute(COLUMNS, vec![json!(seed)]).await.unwrap();
        let second_columns = page.execute(COLUMNS, vec![json!(second)]).await.unwrap();
        assert_columns_line_up(&seed_columns, &second_columns);

        assert_not_reloaded(&page, loaded_at).await;
        let connection = page
            .find(Locator::Css("#connection"))
            .await
            .unwrap()
            .attr("data-state")
            .await
            .unwrap();
        assert_eq!(connection.as_deref(), Some("open"), "{}", server.logs());
    })
    .await;
}

/// Each column starts at the same x and has the same width in both
/// tables, and each table's first row lines up with its header.
fn assert_columns_line_up(a: &Value, b: &Value) {
    let cells = |v: &Value, part: &str| -> Vec<(f64, f64)> {
        v[part]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[0].as_f64().unwrap(), r[1].as_f64().unwrap()))
            .collect()
    };
    let same = |x: &[(f64, f64)], y: &[(f64, f64)]| {
        x.len() == y.len()
            && x.iter()
                .zip(y)
                .all(|(p, q)| (p.0 - q.0).abs() < 0.5 && (p.1 - q.1).abs() < 0.5)
    };
    assert_eq!(cells(a, "head").len(), 7, "{a:#}");
    assert!(
        same(&cells(a, "head"), &cells(b, "head")),
        "the columns differ from card to card:\n{a:#}\n{b:#}"
    );
    for v in [a, b] {
        assert!(
            same(&cells(v, "head"), &cells(v, "row")),
            "a row's cells are not under its header: {v:#}"
        );
    }
}

/// A remote task's bar moves with its peer's progress and its duration
/// ticks; a parent's bar is its own work's share plus its subtasks',
/// never near full while they have not begun; canceled, both stop short
/// of full.
#[tokio::test]
async fn progress_comes_from_where_the_work_runs() {
    let peer = Server::start();
    let server = Server::start_with(&["--peer", &peer.origin()]);
    with_browser(|page| async move {
        let loaded_at = open(&page, &server.url()).await;
        // At the time scale of 0.5: Far works 6 s on the peer; Parent
        // works 1 s itself, then its two subtasks 6 s each.
        let run = server.start_run(&json!({"tasks": [
            {"id": "far", "name": "Far", "duration": "12s", "timeout": "60s",
             "peer": peer.origin()},
            {"id": "parent", "name": "Parent", "duration": "2s", "timeout": "60s",
             "subtasks": [{"id": "s1", "name": "S1", "duration": "12s"},
                          {"id": "s2", "name": "S2", "duration": "12s"}]}]}));

        // The remote task: the peer's progress, several steps of it, while
        // it runs.
        let far = wait(
            &page,
            "the remote task shows its peer's progress",
            &format!(
                "const row = (() => {{ {ROW} }})();\n\
                 const moving = row && row.progresses.filter(p => p > 0 && p < 100);\n\
                 return row && row.state === \"running\" && new Set(moving).size >= 3 \
                   ? row : null;"
            ),
            vec![json!(run), json!("far")],
        )
        .await;
        assert_eq!(far["name"], format!("Far → {}", peer.origin()), "{far:#}");
        let steps = progresses(&far);
        assert!(
            steps.windows(2).all(|w| w[0] <= w[1]),
            "the remote task's progress went back: {steps:?}"
        );
        assert_bar_matches_progress(&far);
        // Its duration goes on while it runs (it used to freeze).
        duration_ticks(&page, &run, "far", &far).await;

        // The parent: well into its subtasks, its bar is the mean of its
        // own work (done) and theirs.
        let parent = wait(
            &page,
            "the parent and its subtasks run, the subtasks past 20%",
            &format!(
                "const row = (() => {{ {ROW} }})();\n\
                 const last = row && row.family[row.family.length - 1];\n\
                 return last && last[0] === \"running\" \
                   && last[2].every(([s, p]) => s === \"running\" && p >= 20) ? row : null;"
            ),
            vec![json!(run), json!("parent")],
        )
        .await;
        let family = parent["family"].as_array().unwrap().clone();
        let mut while_queued = 0;
        for frame in &family {
            let (state, shown) = (frame[0].as_str().unwrap(), frame[1].as_u64().unwrap());
            let subtasks = frame[2].as_array().unwrap();
            let sum: u64 = subtasks.iter().map(|s| s[1].as_u64().unwrap()).sum();
            // Its own work counts at most 100 of (1 + subtasks) shares; the
            // subtasks' rows may be a step ahead of it, never behind.
            let most = (100 + sum) / (1 + subtasks.len() as u64);
            assert!(
                shown <= most,
                "the parent shows {shown}% with its subtasks at {subtasks:?}: {parent:#}"
            );
            if state == "running" && subtasks.iter().any(|s| s[0] == "queued") {
                while_queued += 1;
                assert!(
                    shown <= 34,
                    "the parent shows {shown}% while a subtask waits: {parent:#}"
                );
            }
        }
        assert!(
            while_queued > 0,
            "the parent was never seen running before its subtasks: {parent:#}"
        );
        assert!(
            progress(&parent) > 34,
            "the subtasks' progress is not in the parent's: {parent:#}"
        );
        assert_bar_matches_progress(&parent);

        // Canceled, neither bar is full, and both look ended.
        let answer = server.cancel_run(&run);
        assert_eq!(answer["state"], "cancel_requested", "{answer:#}");
        for task in ["far", "parent", "s1", "s2"] {
            let row = wait_task(&page, &run, task, "canceled").await;
            let stopped = progress(&row);
            assert!(
                0 < stopped && stopped < 100,
                "canceled {task} shows {stopped}%: {row:#}"
            );
            assert_bar_matches_progress(&row);
        }
        let run_shown = wait_run(&page, &run, "finished").await;
        assert_eq!(
            run_shown["counts"]["canceled"], "2 canceled",
            "{run_shown:#}"
        );
        assert_not_reloaded(&page, loaded_at).await;
    })
    .await;
}

/// Until `GET /runs` answers, the page says it is loading; then that
/// there are no runs; then it shows the first run. `GET /runs` is held
/// by a proxy until the test has seen the loading state.
#[tokio::test]
async fn loading_then_empty_then_a_run() {
    let server = Server::start();
    let mut proxy = GatedProxy::start(&server.0.addr).await;
    with_browser(|page| async move {
        let loaded_at = open(&page, &proxy.url()).await;
        proxy.runs_asked().await;
        let loading = placeholder(&page).await;
        assert_eq!(
            loading,
            json!({"state": "loading", "text": "Loading…", "shown": true, "runs": 0}),
            "while GET /runs is held"
        );
        let element = page.find(Locator::Css("#placeholder")).await.unwrap();
        assert!(element.is_displayed().await.unwrap());
        assert_eq!(element.text().await.unwrap(), "Loading…");

        proxy.release();
        let empty = wait(
            &page,
            "the empty state once GET /runs answered",
            &format!(
                "const p = (() => {{ {PLACEHOLDER} }})(); \
                 return p.state === \"empty\" ? p : null;"
            ),
            vec![],
        )
        .await;
        assert_eq!(empty["shown"], true, "{empty:#}");
        assert_eq!(
            empty["text"],
            "No runs yet. Start one with the button above, or POST /runs."
        );
        assert!(element.is_displayed().await.unwrap());

        let run = server.start_run(&json!({"tasks": [
            {"id": "t", "name": "T", "duration": "10s"}]}));
        wait_task(&page, &run, "t", "running").await;
        let after = placeholder(&page).await;
        assert_eq!(after["shown"], false, "{after:#}");
        assert!(!element.is_displayed().await.unwrap());
        assert_not_reloaded(&page, loaded_at).await;
    })
    .await;
}

/// A task named like markup shows as that text, both in a run the page
/// loads from `GET /runs` and in one that arrives over the live feed:
/// no `img` element, no alert.
#[tokio::test]
async fn a_markup_task_name_shows_as_text() {
    let server = Server::start();
    let task = |id: &str| json!({"tasks": [{"id": id, "name": MARKUP_NAME, "duration": "100ms"}]});
    let before = server.start_run(&task("x"));
    with_browser(|page| async move {
        let loaded_at = open(&page, &server.url()).await;
        let after = server.start_run(&task("y"));
        for (run, id) in [(&before, "x"), (&after, "y")] {
            let row = wait_task(&page, run, id, "completed").await;
            assert_eq!(row["name"], MARKUP_NAME, "{row:#}");
            let cell = page
                .find(Locator::Css(&format!(
                    "#run-{run} tr.task[data-task-id=\"{id}\"] .task-name"
                )))
                .await
                .expect("the name cell");
            assert_eq!(cell.text().await.unwrap(), MARKUP_NAME);
        }
        let images = page
            .execute(
                r##"return document.querySelectorAll("#runs img").length;"##,
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(images, json!(0), "markup in a name became an element");
        assert!(
            page.get_alert_text().await.is_err(),
            "an alert is open: the name ran as script"
        );
        assert_not_reloaded(&page, loaded_at).await;
    })
    .await;
}

/// Broker mode: a task's row names the `processor worker` process running
/// it (`Name @ worker`) from the moment it shows running, and still once
/// it has completed. Two workers of one slot each and two tasks: both
/// workers are on screen at once, one per row, as `GET /runs/{id}` has
/// them.
#[tokio::test]
async fn broker_rows_name_the_worker_running_each_task() {
    let nats = Nats::start();
    let server = Server::on_broker(&nats.url);
    let workers = [worker(&nats.url, "north"), worker(&nats.url, "south")];
    let names: Vec<String> = workers.iter().map(|w| w.addr.clone()).collect();
    with_browser(|page| async move {
        let loaded_at = open(&page, &server.url()).await;
        // Long enough to be seen running at full speed on a loaded machine.
        let run = server.start_run(&json!({"tasks": [
            {"id": "a", "name": "Alpha", "duration": "3s", "timeout": "60s"},
            {"id": "b", "name": "Beta", "duration": "3s", "timeout": "60s"}]}));

        // Both rows running at the same moment, each on a worker.
        let both = wait(
            &page,
            "both tasks show running",
            &format!(
                "const row = function () {{ {ROW} }};\n\
                 const rows = [row(arguments[0], \"a\"), row(arguments[0], \"b\")];\n\
                 return rows.every(r => r && r.state === \"running\") ? rows : null;"
            ),
            vec![json!(run)],
        )
        .await;
        let mut shown = Vec::new();
        for (row, (id, task)) in both
            .as_array()
            .unwrap()
            .iter()
            .zip([("a", "Alpha"), ("b", "Beta")])
        {
            let name = row["name"].as_str().unwrap();
            let worker = name
                .strip_prefix(&format!("{task} @ "))
                .unwrap_or_else(|| panic!("a running task's row names no worker: {row:#}"));
            assert!(
                names.iter().any(|n| n == worker),
                "{task} shows worker {worker:?}, not one of {names:?}: {row:#}"
            );
            // The name cell as laid out on screen, not only in the DOM.
            let cell = page
                .find(Locator::Css(&format!(
                    "#run-{run} tr.task[data-task-id=\"{id}\"] .task-name"
                )))
                .await
                .expect("the name cell");
            assert!(
                cell.is_displayed().await.unwrap(),
                "{task}'s name is not on screen"
            );
            assert_eq!(cell.text().await.unwrap(), name);
            shown.push(worker.to_owned());
        }
        let mut distinct = shown.clone();
        distinct.sort();
        assert_eq!(
            distinct, names,
            "one slot each and two tasks, yet the rows show {shown:?}\n{both:#}"
        );
        // The page shows what the service recorded.
        let (status, record) = server.request("GET", &format!("/runs/{run}"), "");
        assert_eq!(status, 200, "{record:#}");
        for (task, worker) in ["a", "b"].iter().zip(&shown) {
            let recorded = record["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["id"] == *task)
                .unwrap_or_else(|| panic!("no task {task}: {record:#}"));
            assert_eq!(recorded["worker"], json!(worker), "{record:#}");
        }

        // Completed, each row still names its worker; it never showed
        // another, nor a running state without one, nor a worker before
        // one took it.
        for ((id, task), worker) in [("a", "Alpha"), ("b", "Beta")].into_iter().zip(&shown) {
            let row = wait_task(&page, &run, id, "completed").await;
            assert_eq!(row["name"], format!("{task} @ {worker}"), "{row:#}");
            for seen in row["names"].as_array().unwrap() {
                let (state, name) = (seen[0].as_str().unwrap(), seen[1].as_str().unwrap());
                let expected = if state == "queued" {
                    task.to_owned()
                } else {
                    format!("{task} @ {worker}")
                };
                assert_eq!(name, expected, "shown {state}: {row:#}");
            }
        }
        let finished = wait_run(&page, &run, "finished").await;
        assert_eq!(
            finished["counts"]["completed"], "2 completed",
            "{finished:#}"
        );
        assert_not_reloaded(&page, loaded_at).await;
    })
    .await;
}
