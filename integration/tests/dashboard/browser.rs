//! Debian's chromedriver and headless Chromium, one session per test:
//! started on a free loopback port with a fresh profile, always closed.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use fantoccini::{Client, ClientBuilder};
use futures::FutureExt;
use serde_json::{Value, json};

use super::common::servers::collect;
use super::{HEIGHT, WAIT, WIDTH};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free loopback port with one headless Chromium
/// session. [`Browser::close`] ends the session (and so Chromium); drop
/// kills chromedriver and removes the profile directory.
pub struct Browser {
    client: Client,
    driver: Child,
    profile: PathBuf,
}

impl Browser {
    async fn start() -> Browser {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: run .ci/run, or `apt-get install chromium chromium-driver` \
                 (Debian's {package} package); this test does not skip without it"
            );
        }
        // One profile directory per browser: this process's id and a count.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let profile = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("dashboard-chromium-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).expect("create the profile directory");

        let (driver, port) = start_chromedriver(&profile);
        // The flags this machine's closed network needs (no background
        // connections that would be refused), a fresh profile, and a fixed
        // window for the screenshot.
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            &format!("--window-size={WIDTH},{HEIGHT}"),
            &format!("--user-data-dir={}", profile.display()),
        ];
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            WAIT,
            ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&format!("http://127.0.0.1:{port}")),
        )
        .await
        .expect("chromedriver did not open a session within the limit")
        .unwrap_or_else(|e| {
            panic!(
                "no Chromium session: {e}\n{}",
                std::fs::read_to_string(profile.join("chromedriver.log")).unwrap_or_default()
            )
        });
        let browser = Browser {
            client,
            driver,
            profile,
        };
        // Headless Chromium's window includes room for a toolbar it does
        // not draw: grow the window so the page itself gets WIDTH x HEIGHT.
        let frame = browser
            .client
            .execute(
                "return [window.outerWidth - window.innerWidth, \
                         window.outerHeight - window.innerHeight];",
                vec![],
            )
            .await
            .expect("measure the window frame");
        let extra = |i: usize| frame[i].as_u64().expect("a size") as u32;
        browser
            .client
            .set_window_size(WIDTH + extra(0), HEIGHT + extra(1))
            .await
            .expect("size the window");
        browser
    }

    /// Ends the session, which closes Chromium.
    async fn close(&self) {
        let _ = tokio::time::timeout(WAIT, self.client.clone().close()).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Starts chromedriver on a free loopback port (asked of the OS by binding
/// port 0; tried again on another port if it was taken meanwhile) and
/// waits for its "started successfully" line.
fn start_chromedriver(profile: &Path) -> (Child, u16) {
    let mut last = String::new();
    for _ in 0..3 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                profile.join("chromedriver.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromedriver");
        let stdout = driver.stdout.take().expect("stdout");
        let stderr = collect(driver.stderr.take().expect("stderr"));
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let started = line.contains("started successfully");
                let _ = tx.send(line);
                if started {
                    break;
                }
            }
        });
        let start = Instant::now();
        let mut output = String::new();
        loop {
            match rx.recv_timeout(WAIT.saturating_sub(start.elapsed())) {
                Ok(line) if line.contains("started successfully") => return (driver, port),
                Ok(line) => {
                    output.push_str(&line);
                    output.push('\n');
                }
                Err(_) => break,
            }
        }
        let _ = driver.kill();
        let _ = driver.wait();
        last = format!("{output}{}", stderr.lock().unwrap());
    }
    panic!("chromedriver did not start:\n{last}");
}

/// Runs `steps` against a new browser session, then ends the session
/// whether they passed or not (a failed test must not leave Chromium
/// running).
pub async fn with_browser<F: std::future::Future<Output = ()>>(steps: impl FnOnce(Client) -> F) {
    let browser = Browser::start().await;
    let outcome = AssertUnwindSafe(steps(browser.client.clone()))
        .catch_unwind()
        .await;
    browser.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Writes the screenshot where the docs can pick it up (see the file's
/// docs) after checking it is a PNG of the window's size.
pub fn save_screenshot(png: &[u8]) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (WIDTH, HEIGHT), "the screenshot's size");
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&tmp, png).expect("write the screenshot");
    if std::env::var_os("GOCTX_UPDATE_SCREENSHOT").is_some_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard.png");
        std::fs::write(&docs, png).expect("write docs/dashboard.png");
    }
}
