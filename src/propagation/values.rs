//! The values an extracted context carries, in one node: the request id
//! (made when first read), the trace context, and one more value of the
//! caller's (the HTTP layer's peer address).

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::{LazyLock, OnceLock};

use super::{RequestId, TraceContext};
use crate::context::Ctx;
use crate::tree::{ValueSet, key_bit};

/// The request id: set from a valid inbound one, or made on first read,
/// so a request whose id nobody reads never pays for making one. Also a
/// key of its own, crate-private, to see whether the id was made without
/// making it (the HTTP layer echoes an id only if it was).
pub(crate) struct LazyRequestId(pub(crate) OnceLock<RequestId>);

/// A context's propagated values in one node: to a reader, the same as
/// `with_value` of the id, then the trace, then `extra` if there is one.
pub(crate) struct Values<X> {
    pub(crate) id: LazyRequestId,
    pub(crate) trace: TraceContext,
    pub(crate) extra: Option<X>,
}

/// A type that can be the extra value: its key bit, computed once per
/// type by the implementation (a `static` in a generic function would be
/// one for every type).
pub(crate) trait Extra: Any + Send + Sync {
    fn key_bit() -> u64;
}

/// No extra value.
impl Extra for () {
    fn key_bit() -> u64 {
        0
    }
}

impl<X: Extra> Values<X> {
    /// A child of `parent` carrying these values in one node. (Inlined:
    /// the values are built in place rather than moved through a call.)
    #[inline]
    pub(crate) fn attach(self, parent: &Ctx) -> Ctx {
        crate::value::with_value_set(parent, self)
    }
}

impl<X: Extra> ValueSet for Values<X> {
    fn key_bits(&self) -> u64 {
        // The three fixed types' bits, computed once.
        static FIXED: LazyLock<u64> = LazyLock::new(|| {
            key_bit(TypeId::of::<RequestId>())
                | key_bit(TypeId::of::<LazyRequestId>())
                | key_bit(TypeId::of::<TraceContext>())
        });
        match self.extra {
            Some(_) => *FIXED | X::key_bit(),
            None => *FIXED,
        }
    }

    fn get(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)> {
        if key == TypeId::of::<RequestId>() {
            Some(self.id.0.get_or_init(RequestId::generate))
        } else if key == TypeId::of::<LazyRequestId>() {
            Some(&self.id)
        } else if key == TypeId::of::<TraceContext>() {
            Some(&self.trace)
        } else if key == TypeId::of::<X>() {
            self.extra
                .as_ref()
                .map(|extra| extra as &(dyn Any + Send + Sync))
        } else {
            None
        }
    }

    fn fmt_names(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            ".WithValue({}).WithValue({})",
            std::any::type_name::<RequestId>(),
            std::any::type_name::<TraceContext>()
        )?;
        if self.extra.is_some() {
            write!(f, ".WithValue({})", std::any::type_name::<X>())?;
        }
        Ok(())
    }
}
