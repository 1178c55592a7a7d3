//! `RequestId`: the `x-request-id` convention.

use std::fmt;
use std::sync::Arc;

use super::id::{hex32, random_u64};

/// A request's id, carried as a context value: the inbound `x-request-id`
/// when it is 1 to 128 visible ASCII characters, otherwise a new random
/// one (32 lowercase hex digits), made when first read. Put there by
/// [`extract`](crate::propagation::extract) and by the HTTP layer
/// (`goctx::http::RequestContextLayer`); written out by
/// [`inject`](crate::propagation::inject) and the HTTP client layer.
///
/// Cheap to clone: an id of up to 32 bytes (every generated one) is kept
/// inline, a longer one in a shared string. Read it with
/// `ctx.value::<RequestId>()`, or with the `axum` feature as an extractor.
///
/// # Examples
///
/// ```
/// use goctx::propagation::RequestId;
///
/// assert_eq!(RequestId::parse("req-42").unwrap().as_str(), "req-42");
/// assert!(RequestId::parse("has space").is_none());
/// let fresh = RequestId::generate();
/// assert_eq!(fresh.as_str().len(), 32);
///
/// let ctx = goctx::with_value(&goctx::background(), fresh.clone());
/// assert_eq!(ctx.value::<RequestId>(), Some(&fresh));
/// ```
#[derive(Clone)]
pub struct RequestId(Repr);

/// Where the id's text lives: inline when short (no allocation), else
/// shared. Either way only visible ASCII (checked by `parse`, or hex).
#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<str>),
}

const INLINE: usize = 32;

impl RequestId {
    /// Accepts `value` if it is 1 to 128 visible ASCII characters
    /// (`!` to `~`: no spaces, no control characters); `None` otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// use goctx::propagation::RequestId;
    ///
    /// assert!(RequestId::parse("0f2c-7").is_some());
    /// assert!(RequestId::parse("").is_none());
    /// assert!(RequestId::parse(&"x".repeat(129)).is_none());
    /// ```
    pub fn parse(value: &str) -> Option<RequestId> {
        let ok = (1..=128).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| {
            let mut bytes = [0u8; INLINE];
            match bytes.get_mut(..value.len()) {
                Some(inline) => {
                    inline.copy_from_slice(value.as_bytes());
                    // At most 32: fits.
                    let len = value.len() as u8;
                    RequestId(Repr::Inline { len, bytes })
                }
                None => RequestId(Repr::Shared(value.into())),
            }
        })
    }

    /// A new random id: 32 lowercase hex digits (not cryptographic; unique
    /// within the process and hard to guess, not secret).
    ///
    /// # Examples
    ///
    /// ```
    /// let a = goctx::propagation::RequestId::generate();
    /// assert_ne!(a, goctx::propagation::RequestId::generate());
    /// ```
    pub fn generate() -> RequestId {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&random_u64().to_be_bytes());
        bytes[8..].copy_from_slice(&random_u64().to_be_bytes());
        RequestId(Repr::Inline {
            len: INLINE as u8,
            bytes: hex32(&bytes),
        })
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Only ASCII is ever stored, so this never falls back.
            Repr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or("-")
            }
            Repr::Shared(text) => text,
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for RequestId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RequestId {}

impl std::hash::Hash for RequestId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for RequestId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RequestId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequestId").field(&self.as_str()).finish()
    }
}
