//! Deadlines on a tokio runtime's virtual clock (feature `tokio`).
//!
//! tokio has no public "is the clock paused?" call, so goctx watches the
//! clock instead: per thread, it remembers the last pair of readings
//! (real clock, tokio clock) and compares how far each moved since. On a
//! real-time runtime both move together; on a paused one tokio's stands
//! still or jumps (auto-advance, `advance`). When the two readings are too
//! close to tell (under `PROBE` apart), the last verdict stands; the first
//! deadline on a thread waits until the real clock moved by `PROBE` and
//! reads tokio's clock again (about a microsecond, once).
//!
//! An error in the verdict is safe in one direction only, and the rule
//! leans that way: a real-time runtime taken for a virtual one still fires
//! on time (tokio's timers follow the real clock then), at the cost of a
//! task per deadline. Taking a paused runtime for a real one would need the
//! pause to have happened within `TOLERANCE` of the reading.
//!
//! A virtual-clock deadline is fired by a task spawned on the runtime that
//! sleeps until the node's own deadline, then expires it; after an
//! `extend_deadline` it sleeps again. The task holds the node weakly, so
//! it never keeps a context alive; it ends at the deadline (or at once if
//! it finds the context already done or gone when it wakes).

use std::cell::Cell;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::timer::Expire;

/// Readings closer together than this (real time) cannot tell a paused
/// clock from a running one.
const PROBE: Duration = Duration::from_micros(2);

/// How much the two clocks may disagree over one interval on a real-time
/// runtime (the two readings are not taken at the same instant).
const TOLERANCE: Duration = Duration::from_micros(200);

/// One thread's last readings and verdict.
#[derive(Clone, Copy)]
struct Reading {
    real: Instant,
    tokio: tokio::time::Instant,
    virtual_clock: bool,
}

thread_local! {
    static LAST: Cell<Option<Reading>> = const { Cell::new(None) };
}

/// tokio's current time (as a std `Instant`) and the runtime, if this
/// thread is in a tokio runtime whose clock is not the real one.
pub(crate) fn virtual_now() -> Option<(Instant, tokio::runtime::Handle)> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let mut tokio_now = tokio::time::Instant::now();
    let mut real = Instant::now();
    let last = LAST.with(Cell::get);
    // A paused clock stands still between two readings taken back to back;
    // the real clock (which a running tokio clock reads) never does. This
    // catches a pause made a moment ago, which the comparison with the
    // last reading below cannot tell yet (the clocks have not drifted
    // apart). Wrong only on a clock too coarse to move between two reads,
    // and then in the safe direction (see `moved_apart`).
    let stood_still = tokio::time::Instant::now() == tokio_now;
    let virtual_clock = match last {
        _ if stood_still => true,
        Some(last) if real.saturating_duration_since(last.real) < PROBE => last.virtual_clock,
        Some(last) => moved_apart(last.real, last.tokio, real, tokio_now),
        None => {
            // First deadline on this thread: let the real clock move, then
            // see whether tokio's moved with it.
            let (real0, tokio0) = (real, tokio_now);
            while real.saturating_duration_since(real0) < PROBE {
                std::hint::spin_loop();
                real = Instant::now();
            }
            tokio_now = tokio::time::Instant::now();
            real = Instant::now();
            moved_apart(real0, tokio0, real, tokio_now)
        }
    };
    LAST.with(|cell| {
        cell.set(Some(Reading {
            real,
            tokio: tokio_now,
            virtual_clock,
        }))
    });
    virtual_clock.then(|| (tokio_now.into_std(), handle))
}

/// Whether tokio's clock moved differently from the real clock between two
/// readings (it stood still, jumped, or went back: another runtime).
fn moved_apart(
    real0: Instant,
    tokio0: tokio::time::Instant,
    real1: Instant,
    tokio1: tokio::time::Instant,
) -> bool {
    let real = real1.saturating_duration_since(real0);
    let Some(tokio) = tokio1.checked_duration_since(tokio0) else {
        return true;
    };
    // Stood still while the real clock moved (callers ensure it moved by
    // at least `PROBE`): paused. A running tokio clock is `base + elapsed`
    // on the real clock, so it never stands still.
    if tokio.is_zero() {
        return true;
    }
    real.abs_diff(tokio) > TOLERANCE
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
