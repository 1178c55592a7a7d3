//! Random identifiers for request ids, trace ids and span ids.
//!
//! Not cryptographic: std's `RandomState` (SipHash with per-process random
//! keys) over a process-wide counter and the time. Ids are unique within a
//! process and unpredictable enough for correlation; do not use them as
//! secrets.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// 64 random-looking bits, never zero.
pub(crate) fn random_u64() -> u64 {
    static KEYS: LazyLock<RandomState> = LazyLock::new(RandomState::new);
    // Relaxed: only uniqueness of the value matters, not ordering.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = KEYS.build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(now) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.finish().max(1)
}

/// Writes `bytes` as lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}
