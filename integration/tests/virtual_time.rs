//! With the `tokio` feature, deadlines made inside a tokio runtime whose
//! clock is paused follow tokio's clock (issue 8, B9): auto-advance and
//! `tokio::time::advance` fire them, and `deadline()` reads on that clock.
//! Without the feature the file is empty.

use std::time::Duration;

use goctx::Error;

const HOUR: Duration = Duration::from_secs(3600);

/// Real time any of these tests may take on a loaded machine; virtual time
/// moves by hours meanwhile.
const REAL_LIMIT: Duration = Duration::from_secs(20);

#[tokio::test(start_paused = true)]
async fn a_one_hour_timeout_fires_under_auto_advance_in_well_under_a_second() {
    let real = std::time::Instant::now();
    let start = tokio::time::Instant::now();
    let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), HOUR);
    // The clock is paused: `start` is still tokio's now.
    assert_eq!(ctx.deadline(), Some((start + HOUR).into_std()));
    assert_eq!(ctx.done().await, Error::DeadlineExceeded);
    let virtual_elapsed = tokio::time::Instant::now() - start;
    assert!(virtual_elapsed >= HOUR, "fired early: {virtual_elapsed:?}");
    assert!(
        real.elapsed() < REAL_LIMIT,
        "took {:?} of real time",
        real.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn advance_fires_a_deadline_exactly_when_it_passes() {
    let start = tokio::time::Instant::now();
    let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), HOUR);
    tokio::time::advance(HOUR - Duration::from_secs(60)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(ctx.err(), None, "fired before its deadline");
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(ctx.done().await, Error::DeadlineExceeded);
    assert!(tokio::time::Instant::now() - start >= HOUR);
}

#[tokio::test(start_paused = true)]
async fn an_extended_deadline_fires_at_its_new_time_on_the_virtual_clock() {
    let start = tokio::time::Instant::now();
    let (ctx, cancel) = goctx::with_timeout(&goctx::background(), HOUR);
    let later = (start + 2 * HOUR).into_std();
    assert_eq!(cancel.extend_deadline(later), Ok(later));
    assert_eq!(ctx.done().await, Error::DeadlineExceeded);
    assert!(tokio::time::Instant::now() - start >= 2 * HOUR);
}

#[tokio::test(start_paused = true)]
async fn with_deadline_and_tokio_instants_agree() {
    let at = tokio::time::Instant::now() + Duration::from_secs(90);
    let (ctx, _cancel) = goctx::with_deadline(&goctx::background(), at.into_std());
    assert_eq!(ctx.err(), None);
    let (child, _c) = goctx::with_timeout(&ctx, HOUR);
    assert_eq!(child.deadline(), Some(at.into_std()));
    assert_eq!(child.done().await, Error::DeadlineExceeded);
    assert!(tokio::time::Instant::now() >= at);
    // Already past on tokio's clock: born done.
    let (past, _p) = goctx::with_deadline(&goctx::background(), at.into_std());
    assert_eq!(past.err(), Some(Error::DeadlineExceeded));
}

#[tokio::test(start_paused = true)]
async fn a_canceled_virtual_deadline_does_not_fire_later() {
    let (ctx, cancel) = goctx::with_timeout(&goctx::background(), HOUR);
    cancel.cancel();
    tokio::time::sleep(2 * HOUR).await;
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

/// A runtime on the real clock keeps real-time deadlines.
#[tokio::test]
async fn a_real_time_runtime_fires_on_the_real_clock() {
    let real = std::time::Instant::now();
    let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), Duration::from_millis(50));
    assert_eq!(ctx.done().await, Error::DeadlineExceeded);
    assert!(real.elapsed() >= Duration::from_millis(50));
}

/// A pause made a moment after a real-clock deadline on the same thread is
/// seen at once: the next deadline follows the paused clock (a new user
/// found it stayed on the real clock when made within microseconds).
#[tokio::test]
async fn a_deadline_made_right_after_pause_follows_the_paused_clock() {
    let real = std::time::Instant::now();
    let (_before, _keep) = goctx::with_timeout(&goctx::background(), Duration::from_secs(1));
    tokio::time::pause();
    let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), HOUR);
    let waited = tokio::time::timeout(2 * HOUR, ctx.done()).await;
    assert_eq!(
        waited,
        Ok(Error::DeadlineExceeded),
        "fired on the virtual clock"
    );
    assert!(
        real.elapsed() < REAL_LIMIT,
        "took {:?} of real time",
        real.elapsed()
    );
}
