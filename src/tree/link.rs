//! [`Link`]: what a context handle points at, and everything that walks
//! the path from a context to its root. The public `Ctx` is a thin wrapper
//! around one; nodes hold their parent as one. Only this file matches on
//! the representation.

use std::any::{Any, TypeId};
use std::fmt;
use std::mem;
use std::sync::Arc;
use std::time::Instant;

use super::cause::OwnCause;
use super::derived::Derived;
use super::node::CancelNode;
use super::registry::{Entry, Registration};
use super::upstream::{CustomNode, Upstream};
use super::value_node::{ValueNode, key_bit};
use crate::error::{Cause, Error};

/// A counted reference to a context. Roots need no allocation. Dropping
/// the last reference to a node frees it and, iteratively, every ancestor
/// it alone kept alive (invariant 5).
#[derive(Clone)]
pub(crate) struct Link(Repr);

#[derive(Clone)]
pub(super) enum Repr {
    Background,
    Todo,
    Cancel(Arc<CancelNode>),
    Value(Arc<ValueNode>),
    Without(Arc<WithoutNode>),
    Custom(Arc<CustomNode>),
}

/// A context with its parent's values and nothing else (`without_cancel`).
pub(super) struct WithoutNode {
    parent: Link,
    derived: Derived,
}

/// Where a context's "done" signal comes from.
pub(crate) enum Source<'a> {
    /// It can never be done (roots, `without_cancel`).
    Never,
    /// From this library node (the nearest cancelable ancestor).
    Node(&'a Arc<CancelNode>),
    /// From a user-implemented context.
    Custom(&'a Arc<CustomNode>),
}

impl Default for Link {
    fn default() -> Self {
        Link::BACKGROUND
    }
}

impl Link {
    pub(crate) const BACKGROUND: Link = Link(Repr::Background);
    pub(crate) const TODO: Link = Link(Repr::Todo);

    pub(super) fn new(repr: Repr) -> Link {
        Link(repr)
    }

    pub(crate) fn cancel(node: Arc<CancelNode>) -> Link {
        Link(Repr::Cancel(node))
    }

    /// `parent`'s values without its cancellation (`without_cancel`).
    pub(crate) fn without(parent: &Link) -> Link {
        parent.add_child();
        Link(Repr::Without(Arc::new(WithoutNode {
            parent: parent.clone(),
            derived: Derived::default(),
        })))
    }

    /// A node is being made with this link as its parent (or a merge
    /// node's other parent): it counts in this context's `Derived` until
    /// it gives the link back with [`Link::remove_child`].
    #[inline]
    pub(super) fn add_child(&self) {
        if let Some((derived, _)) = self.derived() {
            derived.add();
        }
    }

    /// The node made with [`Link::add_child`] is being freed: it no longer
    /// counts. (The link itself is dropped or walked by the caller.)
    #[inline]
    pub(super) fn remove_child(&self) {
        if let Some((derived, node)) = self.derived() {
            derived.sub(node);
        }
    }

    /// This context's node's count of derived nodes, and the node's
    /// address (the drain waiters' key); `None` for a root.
    #[inline]
    pub(crate) fn derived(&self) -> Option<(&Derived, usize)> {
        match &self.0 {
            Repr::Background | Repr::Todo => None,
            Repr::Cancel(node) => Some((&node.derived, Arc::as_ptr(node) as usize)),
            Repr::Value(node) => Some((&node.derived, Arc::as_ptr(node) as usize)),
            Repr::Without(node) => Some((&node.derived, Arc::as_ptr(node) as usize)),
            Repr::Custom(node) => Some((&node.derived, Arc::as_ptr(node) as usize)),
        }
    }

    /// A user context.
    pub(crate) fn custom(context: Box<dyn Upstream>) -> Link {
        Link(Repr::Custom(Arc::new(CustomNode::new(context))))
    }

    /// Where this context's done signal comes from: the nearest cancelable
    /// node or user context on the path to the root, looking through
    /// values.
    #[inline]
    pub(crate) fn source(&self) -> Source<'_> {
        let mut cur = self;
        loop {
            match &cur.0 {
                Repr::Background | Repr::Todo | Repr::Without(_) => return Source::Never,
                Repr::Cancel(node) => return Source::Node(node),
                Repr::Value(node) => cur = &node.parent,
                Repr::Custom(node) => return Source::Custom(node),
            }
        }
    }

    /// `Ctx::err`: one atomic load for a cancel node.
    #[inline]
    pub(crate) fn err(&self) -> Option<Error> {
        if let Repr::Cancel(node) = &self.0 {
            return node.err();
        }
        match self.source() {
            Source::Never => None,
            Source::Node(node) => node.err(),
            Source::Custom(custom) => custom.err(),
        }
    }

    /// The error of a cancel node's link; `None` for a live one and for
    /// every other kind of link (which the caller then asks the long way).
    #[inline]
    pub(crate) fn node_err(&self) -> Option<Error> {
        match &self.0 {
            Repr::Cancel(node) => node.err(),
            _ => None,
        }
    }

    /// `Ctx::cause`, following inherited causes up the tree iteratively.
    pub(crate) fn cause(&self) -> Option<Cause> {
        let mut cur = self;
        loop {
            match cur.source() {
                Source::Never => return None,
                Source::Node(node) => match node.own_cause() {
                    OwnCause::Live => return None,
                    OwnCause::Cause(cause) => return Some(cause),
                    OwnCause::Inherited => cur = &node.parent,
                },
                // `Some` exactly when its `err()` is (see `CustomNode`).
                Source::Custom(custom) => return custom.cause(),
            }
        }
    }

    /// `Ctx::deadline`: the earliest deadline on the path, and on the paths
    /// of the other parents of merge nodes met on the way (walked after
    /// this one from a worklist, not by recursion; it allocates only if
    /// there is one).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let mut others = Vec::new();
        let mut earliest = self.path_deadline(&mut others);
        while let Some(other) = others.pop() {
            if let Some(at) = other.path_deadline(&mut others) {
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
            }
        }
        earliest
    }

    /// The earliest deadline on this context's path to the root, pushing
    /// the other parent of every merge node on it onto `others`.
    fn path_deadline(&self, others: &mut Vec<Link>) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        let mut cur = self;
        loop {
            let (found, next) = match &cur.0 {
                Repr::Background | Repr::Todo | Repr::Without(_) => (None, None),
                Repr::Cancel(node) => {
                    if let Some(other) = node.other() {
                        others.push(other);
                    }
                    (node.deadline(), Some(&node.parent))
                }
                Repr::Value(node) => (None, Some(&node.parent)),
                // A user context answers for its whole path.
                Repr::Custom(node) => (node.deadline(), None),
            };
            if let Some(at) = found {
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
            }
            match next {
                Some(parent) => cur = parent,
                None => return earliest,
            }
        }
    }

    /// `Ctx::value`'s lookup. Iterative: a long chain costs no stack.
    #[inline]
    pub(crate) fn lookup(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)> {
        let bit = key_bit(key);
        let mut cur = self;
        loop {
            match &cur.0 {
                Repr::Background | Repr::Todo => return None,
                Repr::Value(node) => {
                    // No value of this type anywhere above: stop here.
                    if node.keys & bit == 0 {
                        return None;
                    }
                    if let Some(value) = node.get(key) {
                        return Some(value);
                    }
                    cur = &node.parent;
                }
                Repr::Cancel(node) => cur = &node.parent,
                Repr::Without(node) => cur = &node.parent,
                Repr::Custom(node) => return node.lookup(key),
            }
        }
    }

    /// The key summary of the path from here to the root: the nearest
    /// value node has it; cancel and without-cancel nodes add nothing; a
    /// user context may answer anything.
    pub(super) fn keys(&self) -> u64 {
        let mut cur = self;
        loop {
            match &cur.0 {
                Repr::Background | Repr::Todo => return 0,
                Repr::Value(node) => return node.keys,
                Repr::Cancel(node) => cur = &node.parent,
                Repr::Without(node) => cur = &node.parent,
                Repr::Custom(_) => return u64::MAX,
            }
        }
    }

    /// Registers `entry` to be fired when this context is done; fires it
    /// right away if it already is.
    pub(crate) fn subscribe(&self, entry: Entry) -> Registration {
        match self.source() {
            Source::Never => Registration::Never,
            Source::Node(node) => node.register(entry),
            Source::Custom(custom) => custom.subscribe(entry),
        }
    }

    /// `Ctx::dependents`.
    pub(crate) fn dependents(&self) -> usize {
        match self.source() {
            Source::Node(node) => node.registrations(),
            Source::Never | Source::Custom(_) => 0,
        }
    }

    /// The pointer that identifies this context, for `Eq` and `Hash`.
    pub(crate) fn identity(&self) -> (u8, usize) {
        match &self.0 {
            Repr::Background => (0, 0),
            Repr::Todo => (1, 0),
            Repr::Cancel(node) => (2, Arc::as_ptr(node) as usize),
            Repr::Value(node) => (3, Arc::as_ptr(node) as usize),
            Repr::Without(node) => (4, Arc::as_ptr(node) as usize),
            Repr::Custom(node) => (5, Arc::as_ptr(node) as usize),
        }
    }

    /// Takes the representation out of a link that is going away, without
    /// running its `Drop` (the root left behind owns nothing).
    fn into_repr(self) -> Repr {
        mem::replace(&mut mem::ManuallyDrop::new(self).0, Repr::Background)
    }

    /// The cancel node this link is, if it is one (then also its
    /// `source`, found without a walk).
    #[inline]
    pub(super) fn as_cancel(&self) -> Option<&Arc<CancelNode>> {
        match &self.0 {
            Repr::Cancel(node) => Some(node),
            _ => None,
        }
    }

    /// Whether this link is `node` itself (not through values): the
    /// common case of a child made directly on a cancel node.
    #[inline]
    pub(super) fn is_node(&self, node: &Arc<CancelNode>) -> bool {
        matches!(&self.0, Repr::Cancel(parent) if Arc::ptr_eq(parent, node))
    }
}

impl Drop for Link {
    /// Drops iteratively: when this was the last handle of a node, the
    /// node's parent is taken out and dropped in the next round of the
    /// loop instead of recursively, so a chain of any length drops on a
    /// small stack.
    fn drop(&mut self) {
        let mut next = match &mut self.0 {
            // Roots own nothing.
            Repr::Background | Repr::Todo => return,
            repr => mem::replace(repr, Repr::Background),
        };
        // The other parents of freed merge nodes, dropped after this chain
        // (allocates only if there is one).
        let mut others: Vec<Repr> = Vec::new();
        loop {
            next = match next {
                Repr::Background | Repr::Todo | Repr::Custom(_) => Repr::Background,
                Repr::Cancel(node) => {
                    // The timer knows a node by its address in the `Arc`.
                    let owner = crate::timer::owner_of(&*node);
                    match Arc::into_inner(node) {
                        Some(node) => {
                            let (parent, other) = node.into_parent(owner);
                            if let Some(other) = other {
                                others.push(other.into_repr());
                            }
                            parent.into_repr()
                        }
                        None => Repr::Background,
                    }
                }
                Repr::Value(node) => match Arc::into_inner(node) {
                    Some(node) => node.into_parent().into_repr(),
                    None => Repr::Background,
                },
                Repr::Without(node) => match Arc::into_inner(node) {
                    Some(node) => {
                        node.parent.remove_child();
                        node.parent.into_repr()
                    }
                    None => Repr::Background,
                },
            };
            if matches!(next, Repr::Background) {
                match others.pop() {
                    Some(other) => next = other,
                    None => {
                        // A root owns nothing: no call to its drop glue.
                        mem::forget(next);
                        return;
                    }
                }
            }
        }
    }
}

impl fmt::Display for Link {
    /// Go's `String()` form, built from the root down:
    /// `context.Background.WithCancel`,
    /// `context.Background.WithValue(my_app::RequestId).WithDeadline(2026-11-25 10:00:00.5 +0000 UTC [4.99s])`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut path = Vec::new();
        let mut cur = self;
        loop {
            path.push(cur);
            cur = match &cur.0 {
                Repr::Background | Repr::Todo | Repr::Custom(_) => break,
                Repr::Cancel(node) => &node.parent,
                Repr::Value(node) => &node.parent,
                Repr::Without(node) => &node.parent,
            };
        }
        for link in path.iter().rev() {
            match &link.0 {
                Repr::Background => f.write_str("context.Background")?,
                Repr::Todo => f.write_str("context.TODO")?,
                Repr::Custom(node) => node.fmt_name(f)?,
                Repr::Cancel(node) => match node.deadline() {
                    None => match node.other() {
                        // Formatted with no lock held: `other` may be a
                        // user context, whose `fmt_name` is user code.
                        Some(other) => write!(f, ".WithMerge({other})")?,
                        None => f.write_str(".WithCancel")?,
                    },
                    Some(at) => {
                        f.write_str(".WithDeadline(")?;
                        crate::name::write_deadline(f, at)?;
                        f.write_str(")")?;
                    }
                },
                Repr::Value(node) => node.fmt_name(f)?,
                Repr::Without(_) => f.write_str(".WithoutCancel")?,
            }
        }
        Ok(())
    }
}
