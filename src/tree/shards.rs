//! Spreading a contended parent's children over per-thread shards.
//!
//! Deriving a child registers it in its parent's registry, under the
//! parent's lock; canceling or dropping it takes it out again, under the
//! same lock. When several threads derive from one parent at once (a
//! server deriving every request's context from one base), they queue on
//! that lock, and the waiting costs far more than the work: on two cores,
//! two threads deriving from one parent ran at a third of the speed of two
//! threads with a parent each.
//!
//! So the first time a thread finds a parent's lock taken while attaching a
//! child, the parent gets a *shard set*: [`SHARDS`] registries, each behind
//! its own lock on its own cache lines. From then on every child of that
//! parent registers in the shard of the thread that makes it, so threads no
//! longer meet on one lock. Wakers, callbacks and merge registrations stay
//! in the node's own registry.
//!
//! A node has room for a 16-bit shard set id, not a pointer (issue 4's
//! 96-byte budget), so the sets live in a process-wide table, indexed by
//! id. A set is made once and reused by later nodes: a node hands its id
//! back, its shards emptied, when it ends (its ender takes every shard's
//! entries out, and nothing enters a done node's shards) or when it is
//! dropped while live (no child is left then: every child holds its
//! parent alive, and leaves its shard when it ends or is dropped). A
//! child that leaves its shard after its parent ended finds the id gone,
//! or, if it read the id just before, finds the parent done under the
//! shard's lock: either way it touches nothing, even if the set already
//! serves another node. When the table is full ([`MAX_SETS`] sets in use),
//! a contended parent simply keeps its one lock.
//!
//! The rules that make it safe are those of the node's own registry
//! (invariants 1 and 2 in `mod.rs`), one shard at a time:
//! - an insertion checks the parent's state under the shard's lock and
//!   inserts only into a live parent;
//! - the ender of a sharded parent sets the state first (under the node's
//!   lock) and then, with no node lock held, takes each shard's entries out
//!   under that shard's lock. An insertion that takes a shard's lock after
//!   the ender took it out sees the done state (the ender's state change
//!   happened before its shard lock); one before is taken out with it.
//!
//! Lock order: a shard's lock is taken with no other goctx lock held, and
//! nothing is locked under it. The table's id allocator is locked alone.

use std::sync::OnceLock;

use super::node::CancelNode;
use super::registry::{Entry, Registry};
use crate::sync::{AtomicU32, Mutex, Ordering, WaitMutex, process_global, thread_counter};

/// Shards per set: one per thread, round robin, for up to this many
/// threads deriving from one parent at once.
pub(super) const SHARDS: usize = 8;

/// Shard sets that can be in use at once (ids `1..=MAX_SETS`). The table
/// of them (64 KiB) is allocated when the first parent is sharded; a set
/// (1 KiB) when its id is first used. Both are kept.
const MAX_SETS: usize = 4096;

/// One thread's registry in a set, alone on its cache lines (128 bytes:
/// two lines, as neighbouring lines are fetched in pairs).
#[repr(align(128))]
#[derive(Default)]
struct Shard(Mutex<Registry>);

/// The shards of one parent.
#[derive(Default)]
pub(super) struct ShardSet([Shard; SHARDS]);

/// Every shard set, by id, and the ids free for reuse.
struct Table {
    sets: OnceLock<Box<[OnceLock<Box<ShardSet>>]>>,
    ids: WaitMutex<Ids>,
}

struct Ids {
    /// Ids handed back, to reuse first.
    free: Vec<u16>,
    /// The lowest id never handed out.
    next: usize,
}

process_global! {
    static TABLE: Table = Table {
        sets: OnceLock::new(),
        ids: WaitMutex::new(Ids { free: Vec::new(), next: 1 }),
    };
}

/// Where a sharded child is registered: bit 31 set, the shard in bits
/// 27..31, the index in that shard's registry below. A node's `slot` holds
/// either this or an index in the node's own registry (bit 31 clear).
const SHARDED: u32 = 1 << 31;
const SHARD_SHIFT: u32 = 27;
const INDEX_MASK: u32 = (1 << SHARD_SHIFT) - 1;
const _: () = assert!(SHARDS <= 1 << (31 - SHARD_SHIFT) && MAX_SETS < u16::MAX as usize);

/// Whether `slot` names a shard (else the node's own registry).
#[inline]
pub(super) fn is_sharded(slot: u32) -> bool {
    slot & SHARDED != 0
}

fn encode(shard: usize, index: usize) -> Option<u32> {
    let index = u32::try_from(index).ok().filter(|i| *i <= INDEX_MASK)?;
    Some(SHARDED | ((shard as u32) << SHARD_SHIFT) | index)
}

fn decode(slot: u32) -> (usize, usize) {
    (
        ((slot & !SHARDED) >> SHARD_SHIFT) as usize,
        (slot & INDEX_MASK) as usize,
    )
}

/// The set with this id (1-based).
fn set(id: u16) -> &'static ShardSet {
    let sets = TABLE
        .sets
        .get_or_init(|| (0..MAX_SETS).map(|_| OnceLock::new()).collect());
    sets[usize::from(id) - 1].get_or_init(Box::default)
}

/// Takes a free id, or `None` if every set is in use.
pub(super) fn take_id() -> Option<u16> {
    let mut ids = TABLE.ids.lock();
    if let Some(id) = ids.free.pop() {
        return Some(id);
    }
    if ids.next > MAX_SETS {
        return None;
    }
    let id = ids.next as u16;
    ids.next += 1;
    Some(id)
}

/// Hands `id` back for reuse, its shards emptied: by its node's end
/// (`finish`), or by its node's drop while live (`release`).
pub(super) fn give_back(id: u16) {
    TABLE.ids.lock().free.push(id);
}

thread_counter! {
    /// This thread's shard, plus one (0: not chosen yet).
    static THREAD_SHARD;
}

process_global! {
    /// Hands out shards to threads in turn.
    static NEXT_SHARD: AtomicU32 = AtomicU32::new(0);
}

/// The calling thread's shard.
#[inline]
fn thread_shard() -> usize {
    THREAD_SHARD.with(|shard| {
        let mut n = shard.get();
        if n == 0 {
            // Only spreads threads: `Relaxed`.
            n = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS as u32 + 1;
            shard.set(n);
        }
        n as usize - 1
    })
}

/// Inserts `entry` into the calling thread's shard of `parent`'s set `id`,
/// if `parent` is live (read under the shard's lock). Returns the slot to
/// record, `Ok(None)` if the index is too large to record (the entry then
/// stays until the parent ends; it is weak, so it holds nothing), or the
/// entry back if the parent is done.
pub(super) fn insert(parent: &CancelNode, id: u16, entry: Entry) -> Result<Option<u32>, Entry> {
    let shard = thread_shard();
    let mut registry = set(id).0[shard].0.lock();
    if !parent.state.relaxed().is_live() {
        return Err(entry);
    }
    let index = registry.insert(entry);
    Ok(encode(shard, index))
}

/// Takes out, from `parent`'s set `id`, the entry at `slot` (a sharded
/// slot) of the child whose address in its `Arc` is `child` (its `Weak`
/// points there), if `parent` is still live (read under the shard's
/// lock): a done parent has taken its entries out, so the slot means
/// nothing. An entry there that is not `child`'s is left alone (a slot of
/// the parent's own registry past two billion reads as a shard's).
pub(super) fn remove(parent: &CancelNode, id: u16, slot: u32, child: usize) -> Option<Entry> {
    let (shard, index) = decode(slot);
    let mut registry = set(id).0[shard].0.lock();
    if !parent.state.relaxed().is_live() {
        return None;
    }
    match registry.get_mut(index) {
        Some(Entry::Child(weak)) if weak.as_ptr() as usize == child => registry.remove(index),
        _ => None,
    }
}

/// Takes every entry out of set `id` (the parent is done).
pub(super) fn take_all(id: u16) -> Vec<Entry> {
    let mut entries = Vec::new();
    for shard in &set(id).0 {
        let registry = std::mem::take(&mut *shard.0.lock());
        entries.extend(registry.into_entries());
    }
    entries
}

/// How many entries set `id` holds.
pub(super) fn len(id: u16) -> usize {
    set(id).0.iter().map(|shard| shard.0.lock().len()).sum()
}

/// Gives the cancel node behind `link` a shard set, as contention would:
/// for the loom models, which cannot count on a thread finding the lock
/// taken. Returns the set's id.
#[cfg(all(test, loom))]
pub(crate) fn shard_now(link: &super::Link) -> Option<u16> {
    match link.source() {
        super::Source::Node(node) => node.make_shards(),
        _ => None,
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::{Arc, Barrier, Mutex, MutexGuard, PoisonError};
    use std::thread;

    use super::{MAX_SETS, SHARDS, TABLE, len, take_id};
    use crate::sync::Ordering;
    use crate::tree::{CancelNode, Source};
    use crate::{Ctx, Error, background, with_cancel};

    /// The table is process-wide and one test takes every set: these
    /// tests run one at a time.
    fn one_at_a_time() -> MutexGuard<'static, ()> {
        static LOCK: Mutex<()> = Mutex::new(());
        LOCK.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A child of `parent` (sharded with set `id`) made in this thread's
    /// shard, as `attach` makes one when it finds the parent's lock taken.
    fn sharded_child(parent: &Ctx, id: u16) -> Child {
        let child = CancelNode::new_in_shard(parent.0.clone());
        assert_eq!(node(parent).shard_set.load(Ordering::Relaxed), id);
        assert!(super::is_sharded(child.slot.load(Ordering::Relaxed)));
        crate::cancel::handles(child)
    }

    fn node(ctx: &Ctx) -> &Arc<CancelNode> {
        match ctx.0.source() {
            Source::Node(node) => node,
            _ => panic!("not a cancel node"),
        }
    }

    type Child = (Ctx, crate::CancelFunc);

    /// `threads` threads, started together, each make `per_thread`
    /// children with `make`; returns each thread's children.
    fn on_threads(
        threads: usize,
        per_thread: usize,
        make: impl Fn() -> Child + Sync,
    ) -> Vec<Vec<Child>> {
        let barrier = Barrier::new(threads);
        thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        (0..per_thread).map(|_| make()).collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("deriving thread"))
                .collect()
        })
    }

    fn all_canceled(children: &[Child]) -> bool {
        children
            .iter()
            .all(|(c, _)| c.err() == Some(Error::Canceled))
    }

    /// `on_threads` with `with_cancel(parent)`, all children in one list.
    fn derive_on_threads(parent: &Ctx, threads: usize, per_thread: usize) -> Vec<Child> {
        on_threads(threads, per_thread, || with_cancel(parent))
            .into_iter()
            .flatten()
            .collect()
    }

    #[test]
    fn children_of_a_sharded_parent_end_with_it_and_the_set_goes_back() {
        let _serial = one_at_a_time();
        let (parent, cancel_parent) = with_cancel(&background());
        let id = node(&parent).make_shards().expect("a free shard set");
        assert_eq!(node(&parent).make_shards(), Some(id), "sharded once");

        // Threads that find the parent's lock taken use their shards;
        // the others its own registry. Counted together either way.
        let mut children = derive_on_threads(&parent, SHARDS + 2, 50);
        let total = (SHARDS + 2) * 50;
        assert_eq!(parent.dependents(), total);

        // A child canceled, or dropped, leaves wherever it is.
        let (ctx, cancel) = children.pop().expect("a child");
        cancel.cancel();
        assert_eq!(ctx.err(), Some(Error::Canceled));
        drop(children.pop());
        assert_eq!(parent.dependents(), total - 2);
        assert_eq!(parent.err(), None);

        // The parent's end reaches every child, and hands the set back.
        cancel_parent.cancel();
        assert!(all_canceled(&children));
        assert_eq!(parent.dependents(), 0);
        assert_eq!(node(&parent).shard_set.load(Ordering::Relaxed), 0);
        assert!(TABLE.ids.lock().free.contains(&id), "the set went back");
        assert_eq!(len(id), 0, "empty");

        // A child of the done parent is born done; children leaving now
        // touch nothing.
        let (late, _late_cancel) = with_cancel(&parent);
        assert_eq!(late.err(), Some(Error::Canceled));
        drop(children);
        assert_eq!(len(id), 0);
    }

    #[test]
    fn children_in_shards_leave_them_when_canceled_or_dropped() {
        let _serial = one_at_a_time();
        let (parent, _cancel_parent) = with_cancel(&background());
        let id = node(&parent).make_shards().expect("a free shard set");
        // Children put in the shards directly, on four threads (four
        // shards), as threads that found the lock taken would.
        let children = on_threads(4, 100, || sharded_child(&parent, id));
        assert_eq!(len(id), 400);
        assert_eq!(parent.dependents(), 400);
        // One batch canceled, one freed live (its `CancelFunc`s detached,
        // so dropping them does not cancel), the rest dropped (the last
        // `CancelFunc` cancels), each on its own thread.
        thread::scope(|s| {
            for (i, batch) in children.into_iter().enumerate() {
                s.spawn(move || match i {
                    0 => {
                        for (ctx, cancel) in &batch {
                            cancel.cancel();
                            assert_eq!(ctx.err(), Some(Error::Canceled));
                        }
                    }
                    1 => {
                        for (ctx, cancel) in batch {
                            cancel.detach();
                            assert_eq!(ctx.err(), None);
                        }
                    }
                    _ => drop(batch),
                });
            }
        });
        assert_eq!(len(id), 0);
        assert_eq!(parent.dependents(), 0);
        assert_eq!(
            parent.err(),
            None,
            "its children's ends leave the parent live"
        );
    }

    #[test]
    fn a_sharded_node_dropped_live_gives_its_set_back() {
        let _serial = one_at_a_time();
        let (parent, cancel_parent) = with_cancel(&background());
        let id = node(&parent).make_shards().expect("a free shard set");
        let children: Vec<_> = (0..10).map(|_| sharded_child(&parent, id)).collect();
        assert_eq!(len(id), 10);
        drop(children);
        assert_eq!(len(id), 0);
        cancel_parent.detach();
        drop(parent);
        assert!(TABLE.ids.lock().free.contains(&id), "the set came back");
    }

    #[test]
    fn with_every_set_in_use_a_parent_keeps_its_lock() {
        let _serial = one_at_a_time();
        let mut taken = Vec::new();
        while let Some(id) = take_id() {
            taken.push(id);
        }
        assert!(taken.len() <= MAX_SETS);
        let (parent, cancel_parent) = with_cancel(&background());
        assert_eq!(node(&parent).make_shards(), None);
        let children = derive_on_threads(&parent, 2, 20);
        assert_eq!(parent.dependents(), 40);
        // Never used: straight back to the free list.
        TABLE.ids.lock().free.extend(taken);
        cancel_parent.cancel();
        assert!(all_canceled(&children));
        assert_eq!(parent.dependents(), 0);
    }
}
