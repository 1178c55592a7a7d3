//! The values a request context carries beyond the id and the trace:
//! [`PeerAddr`], and the node's extra slot that holds it (and, with
//! `opentelemetry`, the request's OpenTelemetry context) beside them.

use std::any::{Any, TypeId};
use std::fmt;
use std::net::SocketAddr;
use std::sync::LazyLock;

#[cfg(doc)]
use super::layer::RequestContextLayer;
use crate::propagation::values::Extra;
use crate::tree::key_bit;

/// The peer's address, carried as a context value when the server knows
/// it. With the `axum` feature, [`RequestContextLayer`] adds it from
/// axum's `ConnectInfo<SocketAddr>` (a server started with
/// `into_make_service_with_connect_info::<SocketAddr>()`); Go's
/// `http.LocalAddrContextKey` is the counterpart on the other end.
///
/// # Examples
///
/// ```
/// use goctx::http::PeerAddr;
///
/// let addr = PeerAddr(([127, 0, 0, 1], 4242).into());
/// let ctx = goctx::with_value(&goctx::background(), addr);
/// assert_eq!(ctx.value::<PeerAddr>().map(|a| a.0.port()), Some(4242));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

/// The request's values beyond the id and the trace, in the same node.
pub(super) struct RequestExtra {
    pub(super) peer: Option<PeerAddr>,
    /// With `RequestContextLayer::opentelemetry`.
    #[cfg(feature = "opentelemetry")]
    pub(super) otel: Option<crate::opentelemetry::Carried>,
}

impl Extra for RequestExtra {
    fn key_bits(&self) -> u64 {
        static PEER: LazyLock<u64> = LazyLock::new(|| key_bit(TypeId::of::<PeerAddr>()));
        #[cfg_attr(not(feature = "opentelemetry"), allow(unused_mut))]
        let mut bits = if self.peer.is_some() { *PEER } else { 0 };
        #[cfg(feature = "opentelemetry")]
        if self.otel.is_some() {
            static OTEL: LazyLock<u64> =
                LazyLock::new(|| key_bit(TypeId::of::<crate::opentelemetry::Carried>()));
            bits |= *OTEL;
        }
        bits
    }

    fn get(&self, key: TypeId) -> Option<&(dyn Any + Send + Sync)> {
        if key == TypeId::of::<PeerAddr>() {
            return self
                .peer
                .as_ref()
                .map(|peer| peer as &(dyn Any + Send + Sync));
        }
        #[cfg(feature = "opentelemetry")]
        if key == TypeId::of::<crate::opentelemetry::Carried>() {
            return self
                .otel
                .as_ref()
                .map(|otel| otel as &(dyn Any + Send + Sync));
        }
        None
    }

    fn fmt_names(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.peer.is_some() {
            write!(f, ".WithValue({})", std::any::type_name::<PeerAddr>())?;
        }
        #[cfg(feature = "opentelemetry")]
        if self.otel.is_some() {
            f.write_str(".WithValue(opentelemetry::Context)")?;
        }
        Ok(())
    }
}
