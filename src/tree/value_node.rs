//! The node behind `with_value`: one typed value, and a summary of every
//! key above it so that a miss costs no walk.

use std::any::{Any, TypeId};
use std::sync::Arc;

use super::link::{Link, Repr};

/// A context carrying one value, keyed by the value's type.
pub(crate) struct ValueNode {
    /// The context this one derives from. Immutable.
    pub(super) parent: Link,
    /// `TypeId` of the stored value's type: the lookup key. Immutable.
    pub(super) key: TypeId,
    /// The stored type's name, for `Display`. Immutable.
    pub(super) type_name: &'static str,
    /// A one-bit-per-type summary (`key_bit`) of every key stored on the
    /// path from here to the root, all bits if a user context on it might
    /// answer any key. Immutable. A lookup whose bit is clear misses at
    /// once instead of walking the chain.
    pub(super) keys: u64,
    /// The value. Immutable; dropped with the node.
    value: Box<dyn Any + Send + Sync>,
}

impl ValueNode {
    /// A link to a new value node under `parent`.
    pub(crate) fn link<T: Any + Send + Sync>(parent: &Link, value: T) -> Link {
        let key = TypeId::of::<T>();
        Link::new(Repr::Value(Arc::new(ValueNode {
            parent: parent.clone(),
            key,
            type_name: std::any::type_name::<T>(),
            keys: parent.keys() | key_bit(key),
            value: Box::new(value),
        })))
    }

    pub(super) fn value(&self) -> &(dyn Any + Send + Sync) {
        &*self.value
    }
}

/// The bit of `key` in `ValueNode::keys`: a hash of the `TypeId` folded to
/// one of 64 bits.
#[inline]
pub(super) fn key_bit(key: TypeId) -> u64 {
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
