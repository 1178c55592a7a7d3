//! The private core: the cancellation tree behind every context.
//!
//! The core knows nothing of the public handles (`Ctx`, `CancelFunc`,
//! `Context`, `Notify`, `Subscription`, `AfterFunc`). It declares the small
//! interfaces it needs and the public modules implement them: [`Upstream`]
//! for user contexts, [`Callback`] for `after_func`; the timer knows a node
//! only through `timer::Expire`.
//!
//! # Shape
//!
//! A context is a [`Link`]: a root, or a counted reference to a node. A
//! [`CancelNode`] (`with_cancel`, `with_deadline`, `merge`) holds a strong
//! link to its parent; a [`ValueNode`] and a `without_cancel` node do too.
//! A parent knows its dependants only through its registry: weak
//! references to child nodes, wakers of pending `done()` futures, and
//! `after_func` callbacks. (A parent that threads contend for also keeps
//! children in per-thread shards, `shards.rs`: the same registry, split.) Strong references therefore point towards the
//! root, and dropping the last handle of a context frees it; its `Drop`
//! takes its entry out of the parent. (Two exceptions, on purpose: a
//! pending `after_func` callback keeps its context, see `after.rs`; and a
//! merge node holds a second parent, `Extra::other`, with whose registry it
//! is registered by an `Entry::Merged`.)
//!
//! # Files
//!
//! | file | concern |
//! |---|---|
//! | `mod.rs` | this table, the shape, the numbered invariants, the lock order; re-exports |
//! | `cause.rs` | `CauseArg`, how a cancellation sets the cause; `OwnCause`, a node's answer |
//! | `derived.rs` | how many nodes derive from a node; the `drained()` waiters |
//! | `instant.rs` | `AtomicInstant`: a node's deadline, read without a lock |
//! | `link.rs` | `Link` and every walk from a context to its root |
//! | `node/mod.rs` | `CancelNode`'s fields, `Inner` and `Extra`, its error and cause, the handle count |
//! | `node/attach.rs` | birth: `new`, `new_merge`, registering with the parent(s) or born done |
//! | `node/cancel.rs` | `cancel`: the walk over a node's subtree, then the notifications |
//! | `node/deadline.rs` | a node's own deadline, arming the timer, `extend_deadline`, `Expire` |
//! | `node/finish.rs` | ending one node: lock-free, or under its lock in `finish`'s steps |
//! | `node/register.rs` | entries in and out of a node's registry; its shard set; `unlink` |
//! | `node/release.rs` | death: the last handle gone, `release`, `into_parent` |
//! | `registry.rs` | `Entry`, the per-node `Registry`, `Registration`, `deliver_each` |
//! | `shards.rs` | a contended parent's children, spread over per-thread shards |
//! | `state.rs` | the state byte: live/done, flags, and the one CAS that ends a node |
//! | `upstream.rs` | user contexts: `Upstream`, `CustomNode` |
//! | `value_node.rs` | `with_value`'s node and the key summary |
//!
//! # Invariants
//!
//! 1. A node's state goes from live to done once, by compare-and-swap
//!    (`state.rs`). Normally under the node's lock, in the critical section
//!    that also stores the cause and takes the whole registry out. A node
//!    with nothing to take out under the lock (no registration, no stored
//!    cause, no user parent: none of the `NEEDS_LOCK` flags) is ended by
//!    the CAS alone; if it had a timer entry (`ARMED`), the ender removes
//!    it afterwards. The `NEEDS_LOCK` flags are set by read-modify-write
//!    under the lock, so once one is set the lock-free CAS fails and the
//!    locked path runs. Either way exactly one ender wins. A sharded node
//!    (`shards.rs`) always ends on the locked path; its ender then takes
//!    each shard's entries out under that shard's lock.
//! 2. Hence, under a node's lock, a live state means the registry is still
//!    the node's and anything inserted will be notified; a done state
//!    means nothing may be inserted any more. Every insertion checks the
//!    state under the lock first (check–insert under one lock: no lost
//!    wake-up, no lost child). The same holds for a shard under its own
//!    lock, as the ender sets the state before it takes a shard's lock.
//! 3. No code path holds two node locks at once. Cancellation takes a
//!    node's entries out under its lock, releases it, and only then visits
//!    the children one at a time. Removal from a parent locks only the
//!    parent. The only nesting is node lock → timer lock
//!    (`extend_deadline`), and the timer never takes a node lock while
//!    holding its own.
//! 4. No user code runs while a goctx lock is held: no waker is woken,
//!    cloned or dropped, no callback started, no user `Context` method or
//!    `Subscription` called. Wakes, callbacks and unsubscriptions of a
//!    cancellation run only once its whole subtree is done. Drops of user
//!    values are the exception to that second rule: a node freed during a
//!    walk (its last handle was a weak registration's upgrade) drops its
//!    values, and a deadline cause replaced by an explicit one is dropped,
//!    mid-walk, though never under a lock.
//! 5. Cancellation is iterative: an explicit stack of nodes, never
//!    recursion, so a chain of any depth cancels on a small stack.
//!    Dropping a chain is iterative too (`Link`'s `Drop`), and so is
//!    following inherited causes (`Link::cause`).
//! 6. A node ended by its library parent does not copy the cause: it is
//!    marked `INHERITED` and its cause is asked of the parent, final by
//!    then. A node that had registrations is `PROPAGATING` until the walk
//!    over its subtree is over: the walk's origin until the walk clears
//!    it, a node the walk ended by inheritance until its nearest
//!    non-inherited ancestor is clear (`wait_propagated` looks up the
//!    tree). `CancelFunc::cancel` waits for that, so every
//!    `cancel()` that returns, winner or loser of a race, leaves the
//!    subtree done (Go gets this from holding the mutex while canceling
//!    children). One exception: a `cancel()` made on the thread that is
//!    walking (from a `Drop` of a value freed mid-walk, invariant 4)
//!    returns without waiting, as waiting would wait for itself.
//!
//! # Lock order
//!
//! Node lock, then timer lock (invariant 3); nothing else nests. A shard's
//! lock and the shard table's id lock are each taken with no other goctx
//! lock held.

mod cause;
mod derived;
mod instant;
mod link;
mod node;
mod registry;
mod shards;
mod state;
mod upstream;
mod value_node;

pub(crate) use cause::CauseArg;
pub(crate) use derived::{
    register as register_drain_waiter, unregister as unregister_drain_waiter,
};
pub(crate) use link::{Link, Source};
pub(crate) use node::CancelNode;
pub(crate) use registry::{Callback, Entry, Registration, deliver_each};
#[cfg(all(test, loom))]
pub(crate) use shards::shard_now;
pub(crate) use upstream::{CustomNode, Upstream};
pub(crate) use value_node::{ValueNode, ValueSet, key_bit};
