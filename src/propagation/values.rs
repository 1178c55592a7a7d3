//! The values an extracted context carries, in one node: the request id
//! (made when first read), the trace context, and values of the caller's
//! (the HTTP layer's peer address and OpenTelemetry context).

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
/// `with_value` of the id, then the trace, then `extra`'s values.
pub(crate) struct Values<X> {
    pub(crate) id: LazyRequestId,
    pub(crate) trace: TraceContext,
    pub(crate) extra: X,
}

/// More values in the same node, as a `ValueSet` holds them: their key
/// bits (computed once per type by the implementation: a `static` in a
/// generic function would be one for every type), lookup and names.
pub(crate) trait Extra: Send + Sync + 'static {
    fn key_bits(&self) -> u64;
    fn get(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)>;
    fn fmt_names(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

/// No more values.
impl Extra for () {
    fn key_bits(&self) -> u64 {
        0
    }

    fn get(&self, _: TypeId) -> Option<&(dyn Any + Send + Sync)> {
        None
    }

    fn fmt_names(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
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
        *FIXED | self.extra.key_bits()
    }

    fn get(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)> {
        if key == TypeId::of::<RequestId>() {
            Some(self.id.0.get_or_init(RequestId::generate))
        } else if key == TypeId::of::<LazyRequestId>() {
            Some(&self.id)
        } else if key == TypeId::of::<TraceContext>() {
            Some(&self.trace)
        } else {
            self.extra.get(key)
        }
    }

    fn fmt_names(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As `with_value` of each would print them (`type_name`).
        write!(
            f,
            ".WithValue({}).WithValue({})",
            std::any::type_name::<RequestId>(),
            std::any::type_name::<TraceContext>()
        )?;
        self.extra.fmt_names(f)
    }
}
