//! Where the time of a tree row goes: the fan-out and chain rows of the
//! side-by-side harness (`scripts/side-by-side.sh`), split into building the
//! tree, canceling its root and dropping it, for goctx and tokio-util's
//! `CancellationToken`, plus what one atomic read-modify-write costs on this
//! machine. docs/PERFORMANCE.md (issue 22) explains the numbers.
//!
//! ```text
//! cargo run -p integration --release --example tree_phases
//! ```
//!
//! The shapes are the side-by-side harness's: goctx keeps each child's
//! `CancelFunc` until the tree is dropped, tokio-util keeps its tokens.
//! Prints medians of 15 rounds of 200 trees, in microseconds per tree.
//!
//! Given a shape and a count (`fanout-goctx`, `fanout-tokio`, `chain-goctx`
//! or `chain-tokio`, then N), it builds, cancels and drops N trees of that
//! shape and prints nothing: for counting instructions under valgrind, as
//! the difference of two counts (docs/PERFORMANCE.md, issue 22).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

const TREES: u32 = 200;
const ROUNDS: usize = 15;
const WIDTH: usize = 1000;

/// Build, cancel and drop times of one tree, summed over a round.
#[derive(Default)]
struct Phases {
    build: Duration,
    cancel: Duration,
    drop: Duration,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs `round` ROUNDS times and prints the median of each phase.
fn report(name: &str, mut round: impl FnMut() -> Phases) {
    let mut all = (Vec::new(), Vec::new(), Vec::new());
    round();
    for _ in 0..ROUNDS {
        let p = round();
        let per_tree = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(TREES);
        all.0.push(per_tree(p.build));
        all.1.push(per_tree(p.cancel));
        all.2.push(per_tree(p.drop));
    }
    println!(
        "{name:<28} build {:>7.1}  cancel {:>7.1}  drop {:>7.1}  µs per tree",
        median(all.0),
        median(all.1),
        median(all.2)
    );
}

/// Times the three phases of one tree: `build` returns what `cancel` then
/// cancels and what is dropped last.
fn phases<T, C: FnOnce(&T)>(p: &mut Phases, build: impl FnOnce() -> (T, C)) {
    let t0 = Instant::now();
    let (tree, cancel) = build();
    let t1 = Instant::now();
    cancel(&tree);
    let t2 = Instant::now();
    drop(black_box(tree));
    let t3 = Instant::now();
    p.build += t1 - t0;
    p.cancel += t2 - t1;
    p.drop += t3 - t2;
}

/// One tree of each shape, built, canceled and dropped.
fn fanout_goctx() {
    let (root, cancel) = goctx::with_cancel(&goctx::background());
    let kids: Vec<_> = (0..WIDTH).map(|_| goctx::with_cancel(&root)).collect();
    cancel.cancel();
    drop(black_box((root, kids)));
}

fn fanout_tokio() {
    let root = CancellationToken::new();
    let kids: Vec<_> = (0..WIDTH).map(|_| root.child_token()).collect();
    root.cancel();
    drop(black_box((root, kids)));
}

fn chain_goctx() {
    let (root, cancel) = goctx::with_cancel(&goctx::background());
    let mut keep = Vec::with_capacity(WIDTH);
    let mut ctx = root.clone();
    for _ in 0..WIDTH {
        let (child, child_cancel) = goctx::with_cancel(&ctx);
        keep.push(child_cancel);
        ctx = child;
    }
    cancel.cancel();
    drop(black_box((root, keep, ctx)));
}

fn chain_tokio() {
    let root = CancellationToken::new();
    let mut keep = Vec::with_capacity(WIDTH);
    let mut token = root.clone();
    for _ in 0..WIDTH {
        let child = token.child_token();
        keep.push(token);
        token = child;
    }
    root.cancel();
    drop(black_box((root, keep, token)));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [shape, count] = args.as_slice() {
        let Ok(count) = count.parse::<u32>() else {
            eprintln!("tree_phases: the count must be a number, not {count:?}");
            std::process::exit(2);
        };
        let tree: fn() = match shape.as_str() {
            "fanout-goctx" => fanout_goctx,
            "fanout-tokio" => fanout_tokio,
            "chain-goctx" => chain_goctx,
            "chain-tokio" => chain_tokio,
            _ => {
                eprintln!(
                    "tree_phases: the shape is fanout-goctx, fanout-tokio, chain-goctx or chain-tokio, not {shape:?}"
                );
                std::process::exit(2);
            }
        };
        for _ in 0..count {
            tree();
        }
        return;
    }
    if !args.is_empty() {
        eprintln!("usage: tree_phases [SHAPE COUNT]");
        std::process::exit(2);
    }
    let bg = goctx::background();
    report("fan-out of 1000, goctx", || {
        let mut p = Phases::default();
        for _ in 0..TREES {
            phases(&mut p, || {
                let (root, cancel) = goctx::with_cancel(&bg);
                let kids: Vec<_> = (0..WIDTH).map(|_| goctx::with_cancel(&root)).collect();
                ((root, kids), move |_: &_| cancel.cancel())
            });
        }
        p
    });
    report("fan-out of 1000, tokio-util", || {
        let mut p = Phases::default();
        for _ in 0..TREES {
            phases(&mut p, || {
                let root = CancellationToken::new();
                let kids: Vec<_> = (0..WIDTH).map(|_| root.child_token()).collect();
                ((root, kids), |tree: &(CancellationToken, Vec<_>)| {
                    tree.0.cancel()
                })
            });
        }
        p
    });
    report("chain of 1000, goctx", || {
        let mut p = Phases::default();
        for _ in 0..TREES {
            phases(&mut p, || {
                let (root, cancel) = goctx::with_cancel(&bg);
                let mut keep = Vec::with_capacity(WIDTH);
                let mut ctx = root.clone();
                for _ in 0..WIDTH {
                    let (child, child_cancel) = goctx::with_cancel(&ctx);
                    keep.push(child_cancel);
                    ctx = child;
                }
                ((root, keep, ctx), move |_: &_| cancel.cancel())
            });
        }
        p
    });
    report("chain of 1000, tokio-util", || {
        let mut p = Phases::default();
        for _ in 0..TREES {
            phases(&mut p, || {
                let root = CancellationToken::new();
                let mut keep = Vec::with_capacity(WIDTH);
                let mut token = root.clone();
                for _ in 0..WIDTH {
                    let child = token.child_token();
                    keep.push(token);
                    token = child;
                }
                (
                    (root, keep, token),
                    |tree: &(CancellationToken, Vec<_>, _)| tree.0.cancel(),
                )
            });
        }
        p
    });

    // One locked instruction (an atomic add) against a plain add, each in a
    // loop through `black_box`: what a read-modify-write costs here.
    let counter = AtomicU64::new(0);
    let n = 50_000_000u64;
    let mut locked = Vec::new();
    let mut plain = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..n {
            black_box(&counter).fetch_add(1, Ordering::Relaxed);
        }
        locked.push(t.elapsed().as_secs_f64() * 1e9 / n as f64);
        let mut x = 0u64;
        let t = Instant::now();
        for i in 0..n {
            x = black_box(x.wrapping_add(i));
        }
        plain.push(t.elapsed().as_secs_f64() * 1e9 / n as f64);
    }
    println!(
        "atomic add (locked): {:.2} ns per loop step; plain add: {:.2} ns",
        median(locked),
        median(plain)
    );
}
