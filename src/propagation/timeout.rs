//! Deadline headers: gRPC's `grpc-timeout` and Connect's
//! `connect-timeout-ms`, both relative durations on the wire.
//!
//! Pure functions, shared by [`extract`](super::extract) and the HTTP
//! server layer (decode), and by [`inject`](super::inject) and the HTTP
//! client layers (encode). Decoding follows grpc-go (the strictest reading of the spec);
//! encoding picks the shortest exact form and otherwise rounds down, so a
//! callee never outlives its caller's budget.

use std::fmt;
use std::time::Duration;

/// The largest value gRPC allows in front of the unit: eight digits.
const GRPC_MAX_VALUE: u128 = 99_999_999;

/// The largest value Connect allows: ten digits of milliseconds.
const CONNECT_MAX_MS: u128 = 9_999_999_999;

/// gRPC's units, largest first, with their length in nanoseconds.
const UNITS: [(u8, u128); 6] = [
    (b'H', 3_600_000_000_000),
    (b'M', 60_000_000_000),
    (b'S', 1_000_000_000),
    (b'm', 1_000_000),
    (b'u', 1_000),
    (b'n', 1),
];

/// Why a deadline header was rejected by [`decode_grpc_timeout`] or
/// [`decode_connect_timeout_ms`].
///
/// # Examples
///
/// ```
/// use goctx::propagation::{decode_grpc_timeout, InvalidTimeout};
///
/// assert_eq!(decode_grpc_timeout("1.5S"), Err(InvalidTimeout::Digits));
/// assert_eq!(InvalidTimeout::Unit.to_string(), "timeout header: unknown unit");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InvalidTimeout {
    /// No digits at all (an empty value, or a unit alone).
    Empty,
    /// More digits than the format allows (8 for gRPC, 10 for Connect).
    TooLong,
    /// Something other than ASCII digits where the number goes (a sign, a
    /// decimal point, letters, spaces).
    Digits,
    /// A `grpc-timeout` whose last character is not one of `H M S m u n`.
    Unit,
}

impl fmt::Display for InvalidTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidTimeout::Empty => "timeout header: no digits",
            InvalidTimeout::TooLong => "timeout header: too many digits",
            InvalidTimeout::Digits => "timeout header: not a decimal number",
            InvalidTimeout::Unit => "timeout header: unknown unit",
        })
    }
}

impl std::error::Error for InvalidTimeout {}

/// Parses `1..=max_digits` ASCII digits into a number.
fn parse_digits(digits: &[u8], max_digits: usize) -> Result<u128, InvalidTimeout> {
    if digits.is_empty() {
        return Err(InvalidTimeout::Empty);
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(InvalidTimeout::Digits);
    }
    if digits.len() > max_digits {
        return Err(InvalidTimeout::TooLong);
    }
    // At most ten digits: no overflow in u128.
    Ok(digits.iter().fold(0, |n, d| n * 10 + u128::from(d - b'0')))
}

/// Nanoseconds as a `Duration`; every value the decoders accept fits.
fn from_nanos(nanos: u128) -> Duration {
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    // The remainder is below 10^9, so it fits a u32.
    Duration::new(secs, (nanos % 1_000_000_000) as u32)
}

/// Decodes a `grpc-timeout` value: one to eight ASCII digits, then one
/// unit, `H` (hours), `M` (minutes), `S` (seconds), `m` (milliseconds),
/// `u` (microseconds) or `n` (nanoseconds).
///
/// Anything else is rejected, as grpc-go does: no sign, no decimal point,
/// no spaces, no other unit, no ninth digit. `0` is accepted (grpc-go
/// sends `0S` for a budget already spent) and means "already expired".
/// The largest value, `99999999H`, is about 11 400 years and fits a
/// [`Duration`].
///
/// # Errors
///
/// [`InvalidTimeout`] saying what is wrong with `value`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use goctx::propagation::decode_grpc_timeout;
///
/// assert_eq!(decode_grpc_timeout("3H"), Ok(Duration::from_secs(3 * 3600)));
/// assert_eq!(decode_grpc_timeout("13m"), Ok(Duration::from_millis(13)));
/// assert!(decode_grpc_timeout("82f").is_err());
/// assert!(decode_grpc_timeout("123456789H").is_err());
/// ```
pub fn decode_grpc_timeout(value: &str) -> Result<Duration, InvalidTimeout> {
    let bytes = value.as_bytes();
    let Some((&unit, digits)) = bytes.split_last() else {
        return Err(InvalidTimeout::Empty);
    };
    let Some(&(_, nanos)) = UNITS.iter().find(|(symbol, _)| *symbol == unit) else {
        return Err(InvalidTimeout::Unit);
    };
    let n = parse_digits(digits, 8)?;
    Ok(from_nanos(n * nanos))
}

/// Encodes a duration as a `grpc-timeout` value.
///
/// - If some unit expresses `timeout` exactly in at most eight digits, the
///   largest such unit is used (the shortest string): `3H`, `90S`, `1500m`.
/// - Otherwise the value is **rounded down** in the finest unit that fits
///   eight digits (as tonic does), so the callee's deadline is never later
///   than the caller's: the error is less than one of that unit.
/// - Never `0`: a zero duration is sent as `1n`, the smallest budget (an
///   expired budget is the caller's to handle, by not sending at all).
/// - Beyond `99999999H` the value is capped there.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use goctx::propagation::{decode_grpc_timeout, encode_grpc_timeout};
///
/// assert_eq!(encode_grpc_timeout(Duration::from_secs(42)), "42S");
/// assert_eq!(encode_grpc_timeout(Duration::from_millis(1500)), "1500m");
/// assert_eq!(encode_grpc_timeout(Duration::from_secs(2 * 3600)), "2H");
/// assert_eq!(encode_grpc_timeout(Duration::ZERO), "1n");
/// // 100 000 000 ns needs nine digits in `n`; 100 000 µs is exact.
/// assert_eq!(encode_grpc_timeout(Duration::from_nanos(100_000_000)), "100m");
/// // Not exact in eight digits: rounded down in microseconds.
/// let d = Duration::from_nanos(123_456_789);
/// assert_eq!(encode_grpc_timeout(d), "123456u");
/// assert!(decode_grpc_timeout(&encode_grpc_timeout(d))? <= d);
/// # Ok::<(), goctx::propagation::InvalidTimeout>(())
/// ```
pub fn encode_grpc_timeout(timeout: Duration) -> String {
    let nanos = timeout.as_nanos();
    if nanos == 0 {
        return "1n".to_owned();
    }
    // Largest unit that divides exactly and fits eight digits.
    let exact = UNITS
        .iter()
        .find(|&&(_, unit)| nanos.is_multiple_of(unit) && nanos / unit <= GRPC_MAX_VALUE);
    // Otherwise the finest unit whose rounded-down value fits. It is at
    // least 1: the next finer unit needed more than eight digits, and no
    // two neighbouring units differ by more than 1000.
    let (symbol, value) = match exact {
        Some(&(symbol, unit)) => (symbol, nanos / unit),
        None => UNITS
            .iter()
            .rev()
            .find(|&&(_, unit)| nanos / unit <= GRPC_MAX_VALUE)
            .map_or((b'H', GRPC_MAX_VALUE), |&(symbol, unit)| {
                (symbol, nanos / unit)
            }),
    };
    format!("{value}{}", char::from(symbol))
}

/// Decodes a `connect-timeout-ms` value: one to ten ASCII digits, in
/// milliseconds (the Connect protocol's rule). `0` is accepted and means
/// "already expired".
///
/// # Errors
///
/// [`InvalidTimeout`] saying what is wrong with `value`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use goctx::propagation::decode_connect_timeout_ms;
///
/// assert_eq!(decode_connect_timeout_ms("250"), Ok(Duration::from_millis(250)));
/// assert!(decode_connect_timeout_ms("12345678901").is_err());
/// assert!(decode_connect_timeout_ms("1.5").is_err());
/// ```
pub fn decode_connect_timeout_ms(value: &str) -> Result<Duration, InvalidTimeout> {
    let ms = parse_digits(value.as_bytes(), 10)?;
    Ok(from_nanos(ms * 1_000_000))
}

/// Encodes a duration as a `connect-timeout-ms` value: whole milliseconds
/// **rounded down**, but never `0` (less than a millisecond is sent as
/// `1`), and capped at ten digits.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use goctx::propagation::encode_connect_timeout_ms;
///
/// assert_eq!(encode_connect_timeout_ms(Duration::from_micros(2500)), "2");
/// assert_eq!(encode_connect_timeout_ms(Duration::from_micros(10)), "1");
/// ```
pub fn encode_connect_timeout_ms(timeout: Duration) -> String {
    let ms = (timeout.as_millis()).clamp(1, CONNECT_MAX_MS);
    ms.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_largest_first() {
        assert!(UNITS.windows(2).all(|w| w[0].1 > w[1].1));
    }
}
