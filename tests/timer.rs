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
