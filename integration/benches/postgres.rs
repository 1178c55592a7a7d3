//! `goctx::postgres` on a real server (issue 18), started by the benchmark
//! itself as the tests start theirs (integration/tests/common/postgres.rs):
//!
//! - `SELECT 1` over loopback, the bare tokio-postgres call beside the same
//!   call under `goctx::postgres::run` with a live context, in interleaved
//!   rounds: what running under a context costs a query that is not
//!   canceled;
//! - the time from a context's end to the canceled statement's answer
//!   (SQLSTATE 57014: the backend has stopped it) and to the backend shown
//!   idle in `pg_stat_activity`, median and p99 over 200 cancels.
//!
//! `cargo bench -p integration --bench postgres`; figures in
//! docs/PERFORMANCE.md.

#[path = "../tests/common/postgres.rs"]
#[allow(dead_code)]
mod server;

use std::hint::black_box;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

/// `SELECT 1`, bare and under `run`, in interleaved rounds (the order
/// alternating), so that the machine's drift hits both alike: the median
/// per-query time of each, and the median of the per-round ratios.
fn select_one(runtime: &tokio::runtime::Runtime, url: &str) {
    const ROUNDS: usize = 41;
    const PER_ROUND: u32 = 500;
    runtime.block_on(async {
        let client = connect(url).await;
        let statement = client.prepare("SELECT 1").await.unwrap();
        let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), Duration::from_secs(3600));
        let bare = async || {
            let start = Instant::now();
            for _ in 0..PER_ROUND {
                let row = client.query_one(&statement, &[]).await.unwrap();
                black_box(row.get::<_, i32>(0));
            }
            start.elapsed() / PER_ROUND
        };
        let under = async || {
            let start = Instant::now();
            for _ in 0..PER_ROUND {
                let row = goctx::postgres::run(&ctx, &client, client.query_one(&statement, &[]))
                    .await
                    .unwrap();
                black_box(row.get::<_, i32>(0));
            }
            start.elapsed() / PER_ROUND
        };
        bare().await; // warm-up
        under().await;
        let (mut b, mut u, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let (x, y) = if round % 2 == 0 {
                let x = bare().await;
                (x, under().await)
            } else {
                let y = under().await;
                (bare().await, y)
            };
            b.push(x);
            u.push(y);
            ratios.push(y.as_secs_f64() / x.as_secs_f64());
        }
        b.sort();
        u.sort();
        ratios.sort_by(f64::total_cmp);
        println!(
            "SELECT 1 over loopback, {ROUNDS} interleaved rounds of {PER_ROUND}: bare {:?}, under run {:?} (medians); per-round ratio median {:.4}, quartiles {:.4}..{:.4}",
            b[ROUNDS / 2],
            u[ROUNDS / 2],
            ratios[ROUNDS / 2],
            ratios[ROUNDS / 4],
            ratios[3 * ROUNDS / 4]
        );
    });
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Cancel, 200 times: the statement is seen running on the server, the
/// context is canceled, and the clock runs until `run` has the server's
/// answer, then until another connection sees the backend idle.
fn cancel_to_idle(runtime: &tokio::runtime::Runtime, url: &str) {
    const CANCELS: usize = 200;
    runtime.block_on(async {
        let client = std::sync::Arc::new(connect(url).await);
        let observer = connect(url).await;
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        let mut answered = Vec::with_capacity(CANCELS);
        let mut idle = Vec::with_capacity(CANCELS);
        for _ in 0..CANCELS {
            let (ctx, cancel) = goctx::with_cancel(&goctx::background());
            let c = client.clone();
            let query = tokio::spawn(async move {
                let err = goctx::postgres::run(&ctx, &c, c.query("SELECT pg_sleep(30)", &[]))
                    .await
                    .expect_err("canceled");
                (Instant::now(), err)
            });
            // Until the server runs it.
            loop {
                let row = observer
                    .query_one(
                        "SELECT state = 'active' AND query LIKE '%pg_sleep%' FROM pg_stat_activity WHERE pid = $1",
                        &[&pid],
                    )
                    .await
                    .unwrap();
                if row.get::<_, Option<bool>>(0) == Some(true) {
                    break;
                }
            }
            let start = Instant::now();
            cancel.cancel();
            let (at, err) = query.await.unwrap();
            assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::QUERY_CANCELED));
            answered.push(at - start);
            loop {
                let state: Option<String> = observer
                    .query_one("SELECT state FROM pg_stat_activity WHERE pid = $1", &[&pid])
                    .await
                    .unwrap()
                    .get(0);
                if state.as_deref() == Some("idle") {
                    idle.push(start.elapsed());
                    break;
                }
            }
        }
        answered.sort();
        idle.sort();
        println!(
            "cancel to answer (57014), {CANCELS} cancels: median {:?}, p99 {:?}, max {:?}",
            percentile(&answered, 0.5),
            percentile(&answered, 0.99),
            answered[CANCELS - 1]
        );
        println!(
            "cancel to backend idle in pg_stat_activity: median {:?}, p99 {:?}, max {:?}",
            percentile(&idle, 0.5),
            percentile(&idle, 0.99),
            idle[CANCELS - 1]
        );
    });
}

/// `GOCTX_PG_IR=bare:N` or `run:N`: only N queries of one kind, for
/// counting the client's instructions per query under callgrind (two
/// values of N; the difference cancels start-up):
/// `GOCTX_PG_URL=postgres://… GOCTX_PG_IR=run:1000 valgrind --tool=callgrind
/// target/release/deps/postgres-<hash>`, against a server already running
/// (`scripts/postgres-example.sh`).
fn only(runtime: &tokio::runtime::Runtime, url: &str, spec: &str) {
    let (kind, n) = spec.split_once(':').expect("bare:N or run:N");
    let n: u32 = n.parse().expect("N");
    runtime.block_on(async {
        let client = connect(url).await;
        let statement = client.prepare("SELECT 1").await.unwrap();
        let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), Duration::from_secs(3600));
        for _ in 0..n {
            let row = if kind == "run" {
                goctx::postgres::run(&ctx, &client, client.query_one(&statement, &[]))
                    .await
                    .unwrap()
            } else {
                client.query_one(&statement, &[]).await.unwrap()
            };
            black_box(row.get::<_, i32>(0));
        }
    });
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Ok(spec) = std::env::var("GOCTX_PG_IR") {
        // A server already running (its start-up would blur the count).
        let url = std::env::var("GOCTX_PG_URL").expect("GOCTX_PG_URL with GOCTX_PG_IR");
        return only(&runtime, &url, &spec);
    }
    let server = server::shared();
    select_one(&runtime, &server.url);
    cancel_to_idle(&runtime, &server.url);
}
