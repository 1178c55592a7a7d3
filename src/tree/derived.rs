//! How many contexts derive from a node, and who waits for none to be
//! left (`Ctx::drained`).
//!
//! Every node that holds a link to a parent (a cancel, value, merge or
//! without-cancel node) counts itself in that parent's [`Derived`] from
//! its birth until it is freed, canceled or not: a merge node counts in
//! both of its parents. Grandchildren keep children alive, so a count of
//! zero means nothing derived from the node is left at all. Roots count
//! nothing.
//!
//! The count is not `dependents()`: a canceled child leaves its parent's
//! registry at once but stays counted until its last handle is gone, which
//! is what a graceful shutdown waits for.
//!
//! Waiters are kept in one process-wide table, keyed by the address of
//! the node they wait on: a node pays nothing for them but its counter.
//! The handshake is Dekker's: a waiter stores its waker and increments
//! `WAITING`, issues a `SeqCst` fence, then reads the count; the last child
//! decrements the count and reads `WAITING`, both `SeqCst`. (The count is
//! two words, see [`Derived`]; the decrement and the fence order the word
//! every death changes, and a birth read late only makes a waiter look
//! again.) The fence and
//! the child's two operations all stand in the one total order of `SeqCst`
//! operations and fences, so at least one side sees the other's write: if
//! the decrement comes before the fence, the waiter's read after the fence
//! sees it (zero); if the fence comes first, the child's `WAITING` read,
//! which follows it, sees the increment made before it, and wakes the
//! waiter. (C++20's fence rules, which Rust's atomics follow.)
//!
//! The child's side is the hot one, once per freed node whose parent has
//! no other child; it has no fence of its own, because a fence there is a
//! full barrier (`mfence` on x86) that waits for every pending store: it
//! made "create and drop a child" slower than tokio-util's equivalent
//! although it runs fewer instructions (issue 22, docs/PERFORMANCE.md). On
//! x86 the decrement is a locked instruction either way and the `SeqCst`
//! load a plain load. (Plain loads, not read-modify-writes, read `WAITING`,
//! so freeing nodes on many threads does not contend on it. loom treats
//! `SeqCst` accesses as acquire/release, so under `--cfg loom` the child
//! side adds the fence back, `sync::seq_cst_access_fence`: the models in
//! `loom_models.rs` check the handshake in that form.)

use std::task::Waker;

use crate::sync::{AtomicU32, Mutex, Ordering, fence, process_global, seq_cst_access_fence};

/// The number of nodes that hold a link to this one: `counted` plus
/// `locked`, in wrapping arithmetic.
///
/// `locked` counts the children that attached under this node's lock (the
/// common `with_cancel` child of a live, uncontended node): only holders
/// of that lock write it, so a load and a `Release` store add one, where
/// an atomic increment would be a locked instruction (on x86), and the
/// busiest path of the tree pays no more of those than it must (issue 22).
/// `counted` takes every other birth (value, without-cancel and merge
/// nodes, children of a contended or done node) by increment, and every
/// death by decrement, so on its own it may wrap below zero.
///
/// Reading the sum: `counted` first, then `locked`. Whatever a child's
/// decrement in `counted` is seen, its increment, which happened before
/// it, is then seen too, so the sum never counts a death without its
/// birth; a birth it misses is one made concurrently with the look.
#[derive(Default)]
pub(crate) struct Derived {
    counted: AtomicU32,
    locked: AtomicU32,
}

impl Derived {
    /// A child was made. (Four billion live children, the most the count
    /// holds, would take hundreds of gigabytes.)
    #[inline]
    pub(super) fn add(&self) {
        self.counted.fetch_add(1, Ordering::Relaxed);
    }

    /// A child was made by a thread that holds this counter's node's lock
    /// (`CancelNode::attach`). `Release`: a reader that sees the count
    /// sees the child made.
    #[inline]
    pub(super) fn add_locked(&self) {
        let now = self.locked.load(Ordering::Relaxed);
        self.locked.store(now.wrapping_add(1), Ordering::Release);
    }

    /// A child was freed. `node` is this counter's node's address, for the
    /// waiters.
    #[inline]
    pub(super) fn sub(&self, node: usize) {
        // `SeqCst`, both: the child's side of the handshake (module docs).
        let before = self.counted.fetch_sub(1, Ordering::SeqCst);
        // The total this death leaves. `locked` read after our decrement:
        // it holds our own birth if that was counted there. A birth it
        // does not see yet makes the total look smaller, which at worst
        // wakes a waiter that then finds a child left and waits again.
        if before
            .wrapping_sub(1)
            .wrapping_add(self.locked.load(Ordering::Acquire))
            == 0
        {
            seq_cst_access_fence();
            if WAITING.load(Ordering::SeqCst) > 0 {
                wake(node);
            }
        }
    }

    /// Whether no child is left: a plain look, for a first check.
    #[inline]
    pub(crate) fn is_zero(&self) -> bool {
        self.get() == 0
    }

    /// Whether no child is left, read after a fence: the look a
    /// registered waiter makes (see the module docs).
    pub(crate) fn is_zero_after_registering(&self) -> bool {
        fence(Ordering::SeqCst);
        self.get() == 0
    }

    /// The number of children: `counted` first, then `locked` (see the
    /// type's docs).
    #[inline]
    pub(crate) fn get(&self) -> u32 {
        let counted = self.counted.load(Ordering::Acquire);
        counted.wrapping_add(self.locked.load(Ordering::Acquire))
    }
}

/// A drain waiter: the node it waits on, its own id, its waker.
struct Waiter {
    node: usize,
    id: u64,
    waker: Waker,
}

struct Table {
    waiters: Vec<Waiter>,
    next_id: u64,
}

process_global! {
    /// How many waiters are registered (read without the lock by every
    /// node whose last child goes).
    static WAITING: AtomicU32 = AtomicU32::new(0);
}

process_global! {
    static TABLE: Mutex<Table> = Mutex::new(Table {
        waiters: Vec::new(),
        next_id: 1,
    });
}

/// Registers (or updates) the waiter `id` on `node`; `id` 0 asks for a
/// new one, whose id is returned. Look at the count afterwards, with
/// [`is_zero_after_registering`](Derived::is_zero_after_registering).
pub(crate) fn register(node: usize, id: u64, waker: &Waker) -> u64 {
    let mut table = TABLE.lock();
    if id != 0
        && let Some(waiter) = table.waiters.iter_mut().find(|w| w.id == id)
    {
        if !waiter.waker.will_wake(waker) {
            waiter.waker.clone_from(waker);
        }
        return id;
    }
    let id = table.next_id;
    table.next_id += 1;
    table.waiters.push(Waiter {
        node,
        id,
        waker: waker.clone(),
    });
    WAITING.fetch_add(1, Ordering::Relaxed);
    id
}

/// Takes the waiter `id` out, if it is registered.
pub(crate) fn unregister(id: u64) {
    if id == 0 {
        return;
    }
    let removed = {
        let mut table = TABLE.lock();
        let found = table.waiters.iter().position(|w| w.id == id);
        found.map(|i| table.waiters.swap_remove(i))
    };
    if removed.is_some() {
        WAITING.fetch_sub(1, Ordering::Relaxed);
    }
    // The waker (user code) is dropped here, after the lock.
    drop(removed);
}

/// Wakes every waiter on `node` (they stay registered and look again).
fn wake(node: usize) {
    let wakers: Vec<Waker> = TABLE
        .lock()
        .waiters
        .iter()
        .filter(|w| w.node == node)
        .map(|w| w.waker.clone())
        .collect();
    // User code (wakers) runs with no goctx lock held (invariant 4).
    for waker in wakers {
        waker.wake();
    }
}
