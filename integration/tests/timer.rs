//! The timer thread, in a process of its own: the first deadline armed in
//! this test binary is far away, which once made the wheel's tick 0 lie in
//! the future and delayed every nearer deadline by an hour.

use std::time::{Duration, Instant};

use goctx::Error;

#[test]
fn timer_behaviour_in_one_process() {
    let root = goctx::background();

    // The very first deadline of the process is an hour away.
    let (far, _keep_far) = goctx::with_timeout(&root, Duration::from_secs(3600));

    // A near one armed afterwards still fires on time, never early.
    let start = Instant::now();
    let (near, _keep_near) = goctx::with_timeout(&root, Duration::from_millis(20));
    assert_eq!(
        near.wait_timeout(Duration::from_secs(10)),
        Some(Error::DeadlineExceeded)
    );
    assert!(start.elapsed() >= Duration::from_millis(20));
    assert_eq!(far.err(), None);

    // Ten thousand deadlines spread over 50 ms all fire, none early.
    let batch: Vec<_> = (0..10_000u64)
        .map(|i| {
            let at = Instant::now() + Duration::from_micros(i * 5);
            (at, goctx::with_deadline(&root, at))
        })
        .collect();
    for (at, (ctx, _cancel)) in &batch {
        assert_eq!(
            ctx.wait_timeout(Duration::from_secs(20)),
            Some(Error::DeadlineExceeded)
        );
        assert!(Instant::now() >= *at);
    }

    // Deadlines far beyond the wheel's span (years) are accepted and stay
    // armed without firing; canceling them disarms them.
    let (years, cancel_years) =
        goctx::with_timeout(&root, Duration::from_secs(5 * 365 * 24 * 3600));
    assert_eq!(years.wait_timeout(Duration::from_millis(5)), None);
    cancel_years.cancel();
    assert_eq!(years.err(), Some(Error::Canceled));
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Why(&'static str);

/// A child whose deadline is a fraction of a millisecond before its
/// parent's ends by its own deadline, with its own cause, even when both
/// fall into the same 1 ms tick of the timer wheel (whose slots do not keep
/// order) and went through a cascade from a coarser level (over 64 ms).
#[test]
fn the_earlier_of_two_deadlines_in_one_tick_fires_first() {
    let root = goctx::background();
    let base = Instant::now() + Duration::from_millis(100);
    let pairs: Vec<_> = (0..20u64)
        .map(|i| {
            let offset = Duration::from_micros(i * 1_037);
            let (parent, cancel_parent) = goctx::with_deadline_cause(
                &root,
                base + offset + Duration::from_micros(600),
                Why("parent"),
            );
            let (child, cancel_child) = goctx::with_deadline_cause(
                &parent,
                base + offset + Duration::from_micros(300),
                Why("child"),
            );
            (parent, cancel_parent, child, cancel_child)
        })
        .collect();
    for (parent, _, child, _) in &pairs {
        assert_eq!(
            parent.wait_timeout(Duration::from_secs(10)),
            Some(Error::DeadlineExceeded)
        );
        assert_eq!(child.err(), Some(Error::DeadlineExceeded));
        let cause = child.cause().map(|c| c.to_string());
        assert_eq!(
            cause.as_deref(),
            Some("child"),
            "the parent's deadline fired first"
        );
    }
}
