//! Deadlines on a tokio runtime's virtual clock (feature `tokio`).
//!
//! tokio has no public "is the clock paused?" call, so goctx reads
//! tokio's clock twice, back to back: a paused clock stands still between
//! the two readings (only `advance` or auto-advance move it, and neither
//! can run in between), while a running one reads the real clock, which
//! has moved (no two back-to-back readings were equal in 10 million tries
//! on the development machine).
//!
//! An error in the verdict is safe in one direction only, and this one
//! leans that way: a clock too coarse to move between two reads makes a
//! real-time runtime look paused, and its deadlines still fire on time
//! (tokio's timers follow the real clock then), at the cost of a task per
//! deadline.
//!
//! A virtual-clock deadline is fired by a task spawned on the runtime that
//! sleeps until the node's own deadline, then expires it; after an
//! `extend_deadline` it sleeps again. The task holds the node weakly, so
//! it never keeps a context alive; it ends at the deadline (or at once if
//! it finds the context already done or gone when it wakes).

use std::sync::{Arc, Weak};
use std::time::Instant;

use crate::timer::Expire;

/// tokio's current time (as a std `Instant`) and the runtime, if this
/// thread is in a tokio runtime whose clock is not the real one.
pub(crate) fn virtual_now() -> Option<(Instant, tokio::runtime::Handle)> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let now = tokio::time::Instant::now();
    let stood_still = tokio::time::Instant::now() == now;
    stood_still.then(|| (now.into_std(), handle))
}

/// Fires `node` at its own deadline on `handle`'s clock.
pub(crate) fn arm<T: Expire>(handle: &tokio::runtime::Handle, node: &Arc<T>) {
    // The task is not awaited: it ends by itself at the deadline.
    drop(handle.spawn(expire_at_deadline(Arc::downgrade(node))));
}

async fn expire_at_deadline<T: Expire>(node: Weak<T>) {
    loop {
        // Not held across the sleep: the task must not keep the context.
        let at = {
            let Some(node) = node.upgrade() else { return };
            if node.is_done() {
                return;
            }
            match node.deadline() {
                Some(at) => at,
                None => return,
            }
        };
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
        let Some(node) = node.upgrade() else { return };
        let now = tokio::time::Instant::now().into_std();
        // Expired unless `extend_deadline` moved it meanwhile (then the
        // expiry is refused and the loop sleeps until the new deadline).
        node.expire(now);
    }
}
