//! Instructions per task of the groups (issue 17), for callgrind: N
//! rounds of 1,000 trivial tasks on a current-thread runtime, of one kind
//! (`joinset`, `group` or `inplace`), nothing printed. Two runs with
//! different N, subtracted, cancel the start-up; docs/PERFORMANCE.md has
//! the command and the figures. Also timed as it is (`time`).
//!
//! `cargo bench -p integration --bench group_ir --no-run`, then
//! `valgrind --tool=callgrind target/release/deps/group_ir-<hash> group 4`.

use std::hint::black_box;

#[derive(Clone, Debug)]
struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}

impl std::error::Error for Never {}

const TASKS: usize = 1000;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let (Some(kind), Some(rounds)) = (args.next(), args.next()) else {
        // `cargo bench` runs every bench binary with `--bench`: nothing
        // to do without the arguments.
        return;
    };
    let rounds: usize = rounds.parse().expect("rounds: a number");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        for _ in 0..rounds {
            let n = match kind.as_str() {
                "joinset" => {
                    let mut set = tokio::task::JoinSet::new();
                    for i in 0..TASKS {
                        set.spawn(async move { black_box(i) });
                    }
                    let mut sum = 0;
                    while let Some(done) = set.join_next().await {
                        sum += done.unwrap();
                    }
                    sum
                }
                "group" => {
                    let mut group = goctx::tokio::Group::<usize, Never>::new();
                    for i in 0..TASKS {
                        group.try_spawn(move |_ctx| async move { Ok(black_box(i)) });
                    }
                    group.wait().await.unwrap().len()
                }
                "inplace" => {
                    let mut group = goctx::group::InPlace::<usize, Never>::new();
                    for i in 0..TASKS {
                        group.go(move |_ctx| async move { Ok(black_box(i)) });
                    }
                    group.wait().await.unwrap().len()
                }
                other => panic!("unknown kind {other:?}: joinset, group or inplace"),
            };
            black_box(n);
        }
    });
}
