//! The node behind `with_value`: one typed value (or a [`ValueSet`] of a
//! few), and a summary of every key above it so that a miss costs no walk.

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Arc;

use super::derived::Derived;
use super::link::{Link, Repr};

/// Several values of different types held in one node: what the HTTP
/// layer attaches to each request (its id, trace and peer), so that they
/// cost one node instead of one each. To a reader it is the chain of
/// `with_value` calls it stands for: same lookups, same name.
pub(crate) trait ValueSet: Send + Sync + 'static {
    /// The `key_bit`s of every type held.
    fn key_bits(&self) -> u64;
    /// The value of the type whose `TypeId` is `key`, if held.
    fn get(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)>;
    /// `.WithValue(type)` for each value, outermost last.
    fn fmt_names(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

/// A context carrying one value keyed by the value's type, or a set.
pub(crate) struct ValueNode {
    /// The context this one derives from. Immutable.
    pub(super) parent: Link,
    /// A one-bit-per-type summary (`key_bit`) of every key stored on the
    /// path from here to the root, all bits if a user context on it might
    /// answer any key. Immutable. A lookup whose bit is clear misses at
    /// once instead of walking the chain.
    pub(super) keys: u64,
    /// The value(s). Immutable; dropped with the node.
    held: Held,
    /// How many nodes derive from this one (`derived.rs`).
    pub(super) derived: Derived,
}

enum Held {
    One {
        /// `TypeId` of the value's type: the lookup key.
        key: TypeId,
        /// The value's type name, for `Display`.
        type_name: &'static str,
        value: Box<dyn Any + Send + Sync>,
    },
    Set(Box<dyn ValueSet>),
}

impl ValueNode {
    /// A link to a new value node under `parent`.
    pub(crate) fn link<T: Any + Send + Sync>(parent: &Link, value: T) -> Link {
        let key = TypeId::of::<T>();
        ValueNode::make(
            parent,
            key_bit(key),
            Held::One {
                key,
                type_name: std::any::type_name::<T>(),
                value: Box::new(value),
            },
        )
    }

    /// A link to a new node holding every value of `set`.
    pub(crate) fn link_set(parent: &Link, set: Box<dyn ValueSet>) -> Link {
        ValueNode::make(parent, set.key_bits(), Held::Set(set))
    }

    fn make(parent: &Link, bits: u64, held: Held) -> Link {
        parent.add_child();
        Link::new(Repr::Value(Arc::new(ValueNode {
            parent: parent.clone(),
            keys: parent.keys() | bits,
            held,
            derived: Derived::default(),
        })))
    }

    /// Consumes a node whose last handle is gone and gives back its parent,
    /// so that `Link`'s `Drop` can continue up the chain without recursion.
    /// The value(s) are dropped here.
    pub(super) fn into_parent(self) -> Link {
        let ValueNode { parent, held, .. } = self;
        drop(held);
        // Freed: no longer derived from its parent.
        parent.remove_child();
        parent
    }

    /// The value stored here under `key`, if any.
    #[inline]
    pub(super) fn get(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)> {
        match &self.held {
            Held::One {
                key: own, value, ..
            } => (*own == key).then_some(&**value),
            Held::Set(set) => set.get(key),
        }
    }

    /// This node's part of `Display`.
    pub(super) fn fmt_name(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.held {
            Held::One { type_name, .. } => write!(f, ".WithValue({type_name})"),
            Held::Set(set) => set.fmt_names(f),
        }
    }
}

/// The bit of `key` in `ValueNode::keys`: a hash of the `TypeId` folded to
/// one of 64 bits.
#[inline]
pub(crate) fn key_bit(key: TypeId) -> u64 {
    struct Fold(u64);
    impl std::hash::Hasher for Fold {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for &byte in bytes {
                self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3);
            }
        }
        fn write_u64(&mut self, n: u64) {
            self.0 ^= n;
        }
    }
    let mut fold = Fold(0);
    std::hash::Hash::hash(&key, &mut fold);
    1 << (fold.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58)
}
