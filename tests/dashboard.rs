//! The dashboard (`GET /` of `processor serve`) as a person sees it: the
//! page in Debian's headless Chromium, driven over W3C WebDriver
//! (fantoccini talking to Debian's chromedriver), while runs start,
//! progress, time out and are canceled, all without a reload.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's
//! `chromium` and `chromium-driver`, which `.ci/run` installs); without
//! them the tests fail and say so rather than skip.
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

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::servers::{ExampleServer, Lines, Stderr};
use fantoccini::Locator;
use serde_json::{Value, json};

use browser::{save_screenshot, with_browser};
use page::{
    ROW, RUN, assert_not_reloaded, assert_text_matches_state, open, states, wait, wait_run,
    wait_task,
};

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
        let mut command = Command::new(processor());
        command.args(["serve", "--addr", "127.0.0.1:0", "--time-scale", TIME_SCALE]);
        Server(ExampleServer::start(
            command,
            Stderr::Capture,
            Lines::Discard,
        ))
    }

    fn url(&self) -> String {
        format!("http://{}/", self.0.addr)
    }

    /// `POST /runs` with `body`; the new run's id.
    fn start_run(&self, body: &Value) -> String {
        let body = body.to_string();
        let mut stream = TcpStream::connect(&self.0.addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        let head = format!(
            "POST /runs HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("send head");
        stream.write_all(body.as_bytes()).expect("send body");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read response");
        let (status, json) = response.split_once("\r\n\r\n").expect("a response");
        assert!(status.starts_with("HTTP/1.1 201"), "POST /runs: {response}");
        let json: Value = serde_json::from_str(json).expect("JSON body");
        json["id"].as_str().expect("an id").to_owned()
    }

    fn logs(&self) -> String {
        self.0.logs()
    }
}

// ---------------------------------------------------------------------------
// The tests

/// The seed's run started with the button: one task seen running then
/// completed, Send Emails running then timed out with its cause; a second
/// run canceled with its own button; the page never reloaded.
#[tokio::test]
async fn runs_start_progress_time_out_and_cancel_live() {
    let server = Server::start();
    with_browser(|page| async move {
        let loaded_at = open(&page, &server.url()).await;

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
        assert_eq!(run["request_id"].as_str().unwrap().len(), 32, "{run:#}");
        assert_eq!(run["trace_id"].as_str().unwrap().len(), 32, "{run:#}");

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
        assert_eq!(db["bar"], 100.0);
        assert_eq!(db["attempts"], "1");
        assert_eq!(db["cause"], "");
        assert!(db["duration"].as_str().unwrap().ends_with('s'), "{db:#}");
        assert_text_matches_state(&db);

        // Send Emails: waits for a worker, runs, times out with its cause.
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

        let run = wait_run(&page, &seed, "finished").await;
        assert_eq!(run["text"], "finished");
        assert_eq!(run["cancel_hidden"], true, "no cancel button once finished");
        for task in ["img", "report"] {
            let row = wait_task(&page, &seed, task, "completed").await;
            assert_eq!(states(&row).last().unwrap(), "completed", "{row:#}");
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
        }
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
        for task in ["a", "b"] {
            let row = wait_task(&page, &second, task, "canceled").await;
            assert!(
                states(&row).ends_with(&["running".to_owned(), "canceled".to_owned()]),
                "not shown running, then canceled: {row:#}"
            );
            assert_eq!(row["text"], "canceled");
            assert_eq!(row["cause"], "canceled via API");
            assert_text_matches_state(&row);
        }
        let run = wait_run(&page, &second, "finished").await;
        assert_eq!(run["cause"], "cause: canceled via API");
        assert_eq!(run["cancel_hidden"], true);
        assert!(!button.is_displayed().await.unwrap());
        wait(
            &page,
            "#message confirms the cancel",
            "return document.getElementById(\"message\").textContent === \"cancel requested for \" + arguments[0];",
            vec![json!(second)],
        )
        .await;

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
