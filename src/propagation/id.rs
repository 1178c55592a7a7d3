//! Random identifiers for request ids, trace ids and span ids.
//!
//! Not cryptographic: each thread runs its own SplitMix64 sequence, seeded
//! once from std's `RandomState` (SipHash with per-process random keys)
//! over a process-wide counter and the time. No lock, no clock read and no
//! shared cache line per id: on the per-request path this costs a few
//! nanoseconds, where hashing the clock for every id cost about 50. Ids are
//! unique in practice (two threads' sequences would have to meet in a
//! 2^64 space) and unpredictable enough for correlation; do not use them as
//! secrets.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// A fresh random seed: SipHash over a process-wide counter and the time.
fn seed() -> u64 {
    static KEYS: LazyLock<RandomState> = LazyLock::new(RandomState::new);
    // Relaxed: only uniqueness of the value matters, not ordering.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = KEYS.build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(now) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.finish()
}

thread_local! {
    /// This thread's SplitMix64 state; seeded on first use.
    static STATE: Cell<Option<u64>> = const { Cell::new(None) };
}

/// 64 random-looking bits, never zero.
pub(crate) fn random_u64() -> u64 {
    STATE.with(|state| {
        let next = state
            .get()
            .unwrap_or_else(seed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(Some(next));
        // SplitMix64's output function.
        let mut z = next;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)).max(1)
    })
}

/// Writes `bytes` as lowercase hex digits (ASCII) into `out`, two per
/// byte; `out` is at least twice as long as `bytes`.
pub(crate) fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
}

/// `bytes` as 32 lowercase hex digits (ASCII).
pub(crate) fn hex32(bytes: &[u8; 16]) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex_into(bytes, &mut out);
    out
}

/// `bytes` as lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    hex_into(bytes, &mut out);
    // Hex digits are ASCII: never the fallback.
    String::from_utf8(out).unwrap_or_default()
}
