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
//! Prints medians of 15 rounds of 200 trees, in microseconds per tree,
//! goctx's rounds alternating with tokio-util's.
//!
//! Given a shape and a count (`fanout-goctx`, `fanout-tokio`, `chain-goctx`
//! or `chain-tokio`, then N), it builds, cancels and drops N trees of that
//! shape and prints nothing: for counting instructions under valgrind, as
//! the difference of two counts (docs/PERFORMANCE.md, issue 22).

use std::any::Any;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

const TREES: u32 = 200;
const ROUNDS: usize = 15;
const WIDTH: usize = 1000;

/// A tree of one shape, built: the call that cancels its root, and the
/// tree itself, dropped last.
type Built = (Box<dyn FnOnce()>, Box<dyn Any>);

/// Builds one tree of a shape.
type Shape = fn() -> Built;

/// The shapes, by name.
const SHAPES: [(&str, Shape); 4] = [
    ("fanout-goctx", fanout_goctx),
    ("fanout-tokio", fanout_tokio),
    ("chain-goctx", chain_goctx),
    ("chain-tokio", chain_tokio),
];

/// A root and WIDTH children of it.
fn fanout_goctx() -> Built {
    let (root, cancel) = goctx::with_cancel(&goctx::background());
    let kids: Vec<_> = (0..WIDTH).map(|_| goctx::with_cancel(&root)).collect();
    (Box::new(move || cancel.cancel()), Box::new((root, kids)))
}

fn fanout_tokio() -> Built {
    let root = CancellationToken::new();
    let kids: Vec<_> = (0..WIDTH).map(|_| root.child_token()).collect();
    let canceler = root.clone();
    (Box::new(move || canceler.cancel()), Box::new((root, kids)))
}

/// A root and a chain of WIDTH below it, every `CancelFunc` kept.
fn chain_goctx() -> Built {
    let (root, cancel) = goctx::with_cancel(&goctx::background());
    let mut keep = Vec::with_capacity(WIDTH);
    let mut ctx = root.clone();
    for _ in 0..WIDTH {
        let (child, child_cancel) = goctx::with_cancel(&ctx);
        keep.push(child_cancel);
        ctx = child;
    }
    (
        Box::new(move || cancel.cancel()),
        Box::new((root, keep, ctx)),
    )
}

fn chain_tokio() -> Built {
    let root = CancellationToken::new();
    let mut keep = Vec::with_capacity(WIDTH);
    let mut token = root.clone();
    for _ in 0..WIDTH {
        let child = token.child_token();
        keep.push(token);
        token = child;
    }
    let canceler = root.clone();
    (
        Box::new(move || canceler.cancel()),
        Box::new((root, keep, token)),
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The three phases of TREES trees of `shape`, in microseconds per tree.
fn round(shape: Shape) -> [f64; 3] {
    let (mut b, mut c, mut d) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for _ in 0..TREES {
        let t0 = Instant::now();
        let (cancel_root, tree) = shape();
        let t1 = Instant::now();
        cancel_root();
        let t2 = Instant::now();
        drop(black_box(tree));
        let t3 = Instant::now();
        b += t1 - t0;
        c += t2 - t1;
        d += t3 - t2;
    }
    [b, c, d].map(|d| d.as_secs_f64() * 1e6 / f64::from(TREES))
}

/// Builds, cancels and drops trees of the goctx shape and of the
/// tokio-util one in alternating rounds (so that a machine slowing down
/// weighs on both alike), and prints each phase's median per tree.
fn report(goctx: (&str, Shape), tokio: (&str, Shape)) {
    let mut rounds = [Vec::new(), Vec::new()];
    round(goctx.1);
    round(tokio.1);
    for _ in 0..ROUNDS {
        rounds[0].push(round(goctx.1));
        rounds[1].push(round(tokio.1));
    }
    for ((name, _), rounds) in [goctx, tokio].into_iter().zip(rounds) {
        let phase = |i: usize| median(rounds.iter().map(|r| r[i]).collect());
        let (build, cancel, dropped) = (phase(0), phase(1), phase(2));
        println!(
            "{name:<14} build {build:>7.1}  cancel {cancel:>7.1}  drop {dropped:>7.1}  total {:>7.1}  µs per tree",
            build + cancel + dropped
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {}
        [shape, count] => {
            let Some(&(_, tree)) = SHAPES.iter().find(|(name, _)| name == shape) else {
                eprintln!(
                    "tree_phases: no shape {shape:?}; the shapes: fanout-goctx, fanout-tokio, chain-goctx, chain-tokio"
                );
                std::process::exit(2);
            };
            let Ok(count) = count.parse::<u32>() else {
                eprintln!("tree_phases: the count must be a number, not {count:?}");
                std::process::exit(2);
            };
            for _ in 0..count {
                let (cancel_root, tree) = tree();
                cancel_root();
                drop(black_box(tree));
            }
            return;
        }
        _ => {
            eprintln!("usage: tree_phases [SHAPE COUNT]");
            std::process::exit(2);
        }
    }
    report(SHAPES[0], SHAPES[1]);
    report(SHAPES[2], SHAPES[3]);

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
