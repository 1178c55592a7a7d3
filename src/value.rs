//! `with_value`: typed, request-scoped values.

use std::any::{Any, TypeId};
use std::sync::Arc;

use crate::context::{Ctx, Repr};

/// A context carrying one value, keyed by the value's type.
pub(crate) struct ValueNode {
    /// The context this one derives from. Immutable.
    pub(crate) parent: Ctx,
    /// `TypeId` of the stored value's type: the lookup key. Immutable.
    pub(crate) key: TypeId,
    /// The stored type's name, for `Display`. Immutable.
    pub(crate) type_name: &'static str,
    /// A one-bit-per-type summary (`key_bit`) of every key stored on the
    /// path from here to the root, all bits if a custom context on it
    /// might answer any key. Immutable. A lookup whose bit is clear misses
    /// at once instead of walking the chain.
    pub(crate) keys: u64,
    value: Box<dyn Any + Send + Sync>,
}

impl ValueNode {
    pub(crate) fn value(&self) -> &(dyn Any + Send + Sync) {
        &*self.value
    }

    pub(crate) fn into_parent(self) -> Ctx {
        self.parent
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

/// The key summary of the path from `ctx` to the root: the nearest value
/// node has it; cancel and without-cancel nodes add nothing; a custom
/// context may answer anything.
fn path_keys(ctx: &Ctx) -> u64 {
    let mut cur = ctx;
    loop {
        match &cur.0 {
            Repr::Background | Repr::Todo => return 0,
            Repr::Value(node) => return node.keys,
            Repr::Cancel(node) => cur = &node.parent,
            Repr::Without(parent) => cur = parent,
            Repr::Custom(_) => return u64::MAX,
        }
    }
}

/// Returns a child of `parent` that carries `value`. Go: `WithValue`.
///
/// The key is the value's type: [`Ctx::value::<T>()`](Ctx::value) finds the
/// nearest value of type `T` on the path to the root, so a newer value of
/// the same type shadows an older one. Give each piece of request data its
/// own type (a newtype such as `struct RequestId(String)`): that is Go's
/// advice of an unexported key type, enforced by the compiler, and lookups
/// need no type assertion.
///
/// The child shares the parent's cancellation and deadline. Use values for
/// request-scoped data that crosses API boundaries, not to pass optional
/// parameters.
///
/// # Examples
///
/// ```
/// #[derive(Debug, PartialEq)]
/// struct RequestId(&'static str);
/// #[derive(Debug, PartialEq)]
/// struct UserId(u64);
///
/// let root = goctx::background();
/// let ctx = goctx::with_value(&root, RequestId("req-1"));
/// let ctx = goctx::with_value(&ctx, UserId(42));
/// let ctx = goctx::with_value(&ctx, RequestId("req-2")); // shadows req-1
///
/// assert_eq!(ctx.value::<RequestId>(), Some(&RequestId("req-2")));
/// assert_eq!(ctx.value::<UserId>(), Some(&UserId(42)));
/// assert_eq!(root.value::<UserId>(), None);
/// ```
#[doc(alias = "WithValue")]
pub fn with_value<T: Any + Send + Sync>(parent: &Ctx, value: T) -> Ctx {
    let key = TypeId::of::<T>();
    Ctx(Repr::Value(Arc::new(ValueNode {
        parent: parent.clone(),
        key,
        type_name: std::any::type_name::<T>(),
        keys: path_keys(parent) | key_bit(key),
        value: Box::new(value),
    })))
}
