//! Groups of tasks (issue 17): per task, spawn + finish + wait for 1,000
//! trivial tasks, `goctx::tokio::Group` beside a bare `tokio::task::JoinSet`
//! (the floor of spawning on tokio), on the same two-worker runtime;
//! `goctx::group::InPlace` (the futures driven inside one task, nothing
//! spawned) in the same shape; and
//! `goctx::group::scope` beside a bare `std::thread::scope`. Go's errgroup
//! in the same shape: `scripts/go-bench.sh` (`BenchmarkGroup1000`).
//!
//! `cargo bench -p integration --bench group`; figures in
//! docs/PERFORMANCE.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::task::JoinSet;

const TASKS: usize = 1000;
const THREADS: usize = 8;

#[derive(Clone, Debug)]
struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}

impl std::error::Error for Never {}

/// Runs `body` as a task of `runtime` (as a service's code runs), not on
/// the benchmark's own thread: wake-ups between the spawner and its tasks
/// stay inside the runtime.
async fn inside<F>(runtime: &tokio::runtime::Runtime, body: F) -> usize
where
    F: std::future::Future<Output = usize> + Send + 'static,
{
    runtime.spawn(body).await.unwrap()
}

fn tokio_group(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let mut group = c.benchmark_group("Group1000");
    group.throughput(Throughput::Elements(TASKS as u64));
    group.bench_function("tokio JoinSet (floor)", |b| {
        b.iter(|| {
            runtime.block_on(inside(&runtime, async {
                let mut set = JoinSet::new();
                for i in 0..TASKS {
                    set.spawn(async move { black_box(i) });
                }
                let mut sum = 0;
                while let Some(done) = set.join_next().await {
                    sum += done.unwrap();
                }
                black_box(sum)
            }))
        });
    });
    group.bench_function("goctx::tokio::Group", |b| {
        b.iter(|| {
            runtime.block_on(inside(&runtime, async {
                let mut tasks = goctx::tokio::Group::<usize, Never>::new();
                for i in 0..TASKS {
                    tasks.try_spawn(move |_ctx| async move { Ok(black_box(i)) });
                }
                black_box(tasks.wait().await.unwrap().len())
            }))
        });
    });
    group.bench_function("goctx::group::InPlace (no spawn)", |b| {
        b.iter(|| {
            runtime.block_on(inside(&runtime, async {
                let mut tasks = goctx::group::InPlace::<usize, Never>::new();
                for i in 0..TASKS {
                    tasks.go(move |_ctx| async move { Ok(black_box(i)) });
                }
                black_box(tasks.wait().await.unwrap().len())
            }))
        });
    });
    group.bench_function("goctx::tokio::Group, limit 10", |b| {
        b.iter(|| {
            runtime.block_on(inside(&runtime, async {
                let mut tasks = goctx::tokio::Group::<usize, Never>::new();
                tasks.set_limit(Some(10));
                for i in 0..TASKS {
                    tasks
                        .spawn(move |_ctx| async move { Ok(black_box(i)) })
                        .await
                        .unwrap();
                }
                black_box(tasks.wait().await.unwrap().len())
            }))
        });
    });
    group.finish();
}

fn scoped_threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("Scope8");
    group.throughput(Throughput::Elements(THREADS as u64));
    group.bench_function("std::thread::scope (floor)", |b| {
        b.iter(|| {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..THREADS)
                    .map(|i| s.spawn(move || black_box(i)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap())
                    .sum::<usize>()
            })
        });
    });
    group.bench_function("goctx::group::scope", |b| {
        let ctx = goctx::background();
        b.iter(|| {
            let values = goctx::group::scope(&ctx, |s| {
                for i in 0..THREADS {
                    s.go(move |_ctx| Ok::<_, Never>(black_box(i)));
                }
            });
            values.unwrap().into_iter().sum::<usize>()
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = tokio_group, scoped_threads
}
criterion_main!(benches);
