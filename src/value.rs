//! `with_value`: typed, request-scoped values.

use std::any::Any;

use crate::context::Ctx;
use crate::tree::{ValueNode, ValueSet};

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
    Ctx(ValueNode::link(&parent.0, value))
}

/// A child of `parent` carrying every value of `set` in one node: to a
/// reader, the same as a `with_value` per value (used by
/// `propagation::extract` and the HTTP layer for a request's values).
pub(crate) fn with_value_set(parent: &Ctx, set: impl ValueSet) -> Ctx {
    Ctx(ValueNode::link_set(&parent.0, Box::new(set)))
}
