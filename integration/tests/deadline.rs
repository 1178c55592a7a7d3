//! Deadlines that move: every context made with a deadline keeps its own,
//! whatever its parent's deadline does later (issue 8, A1).

use std::time::{Duration, Instant};

use goctx::{Error, ExtendError};

/// Generous: the child's own deadline is 200 ms; the parent's moves to 3 s.
const PATIENCE: Duration = Duration::from_millis(2500);

#[test]
fn a_child_keeps_its_own_deadline_when_the_parent_deadline_moves() {
    let root = goctx::background();
    let (parent, pc) = goctx::with_timeout(&root, Duration::from_millis(50));
    let made = Instant::now();
    let (child, cc) = goctx::with_timeout(&parent, Duration::from_millis(200));
    // The parent's deadline is sooner, so it is the child's for now.
    assert_eq!(child.deadline(), parent.deadline());
    let later = Instant::now() + Duration::from_secs(3);
    assert_eq!(pc.extend_deadline(later), Ok(later));
    // Now the child's own deadline is the sooner one.
    let own = child.deadline().expect("a deadline");
    assert!(own < later, "deadline() {own:?} is not the child's own");
    assert!(own >= made + Duration::from_millis(200));
    assert_eq!(child.wait_timeout(PATIENCE), Some(Error::DeadlineExceeded));
    assert!(made.elapsed() >= Duration::from_millis(200));
    assert_eq!(parent.err(), None, "the parent ended with the child");
    assert!(cc.is_canceled());
}

#[test]
fn a_child_under_a_sooner_parent_can_extend_its_own_deadline() {
    let (parent, _pc) = goctx::with_timeout(&goctx::background(), Duration::from_secs(60));
    let (child, cc) = goctx::with_timeout(&parent, Duration::from_secs(120));
    // Reads back the own deadline: a request not later changes nothing.
    let own = cc.extend_deadline(Instant::now()).expect("own deadline");
    assert!(own > parent.deadline().expect("parent deadline"));
    let further = own + Duration::from_secs(60);
    assert_eq!(cc.extend_deadline(further), Ok(further));
    // The parent still bounds the child.
    assert_eq!(child.deadline(), parent.deadline());
}

#[test]
fn a_child_with_only_a_cancel_follows_the_moved_parent_deadline() {
    let (parent, pc) = goctx::with_timeout(&goctx::background(), Duration::from_secs(60));
    let (child, cc) = goctx::with_cancel(&parent);
    let later = Instant::now() + Duration::from_secs(600);
    assert_eq!(pc.extend_deadline(later), Ok(later));
    assert_eq!(child.deadline(), Some(later));
    assert_eq!(cc.extend_deadline(later), Err(ExtendError::NoDeadline));
}

#[test]
fn a_sooner_parent_still_ends_the_child_with_the_parents_cause() {
    let (parent, _pc) = goctx::with_timeout(&goctx::background(), Duration::from_millis(20));
    let (child, _cc) = goctx::with_timeout_cause(&parent, Duration::from_secs(60), "own cause");
    assert_eq!(child.wait_timeout(PATIENCE), Some(Error::DeadlineExceeded));
    let cause = child.cause().expect("a cause");
    assert_eq!(
        cause.downcast_ref::<Error>(),
        Some(&Error::DeadlineExceeded)
    );
}
