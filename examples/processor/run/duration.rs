//! Durations as a Go user writes them (`time.ParseDuration`) and as the
//! processor shows them.
//!
//! Why a parser of our own: no crate on crates.io takes exactly Go's
//! grammar. `humantime` adds its own units and spellings (`2min`, `1d`,
//! spaces) and rejects some of Go's (`μs` with a Greek mu, `+5s`);
//! `go-parse-duration` 0.1.1 reads `µs` as the unit `µ` (it mixes char and
//! byte offsets), and its overflow bound is `1 << 62` (Rust's precedence
//! of `-` over `<<`), and it loops forever on a fraction of 19 or more
//! digits. This file follows Go's algorithm step by step instead and is
//! tested against the examples of Go's own test table
//! (`integration/tests/processor.rs`, `go_parse_duration_*`), which includes it by
//! path: it must stay free of `crate::` imports.

use std::time::Duration;

/// Go's `time.ParseDuration`, for durations that are not negative.
///
/// A duration is an optionally signed sequence of decimal numbers, each
/// with an optional fraction and a unit: `300ms`, `1.5h`, `2h45m`,
/// `1h2m3.5s`. Units are `ns`, `us` (or `µs`, `μs`), `ms`, `s`, `m`, `h`.
/// `0` needs no unit. Values beyond Go's range (about 292 years) are
/// errors, as in Go.
///
/// Two additions for the command line and task files: surrounding spaces
/// are ignored, and a bare number (`3`, `1.5`) means seconds. A negative
/// duration (other than `-0`) is an error.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if is_bare_number(unsigned) {
        return match unsigned.parse::<f64>().map(Duration::try_from_secs_f64) {
            Ok(Ok(d)) if text.starts_with('-') && !d.is_zero() => {
                Err(format!("negative durations are not allowed: '{text}'"))
            }
            Ok(Ok(d)) if d.as_nanos() <= i64::MAX as u128 => Ok(d),
            _ => Err(format!("duration '{text}' is out of range")),
        };
    }
    let nanos = parse_go(text)?;
    if nanos < 0 {
        return Err(format!("negative durations are not allowed: '{text}'"));
    }
    Ok(Duration::from_nanos(nanos as u64))
}

/// Digits with an optional fraction, and nothing else.
fn is_bare_number(text: &str) -> bool {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    (!int.is_empty() || !frac.is_empty())
        && int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
}

/// The signed nanoseconds of `orig`, by Go's algorithm: digits are read
/// as unsigned 64-bit integers bounded by 2^63, fractions as an integer
/// and a power of ten combined in `f64` (so `0.3333333333333333333h` is
/// exactly 20m, as in Go).
fn parse_go(orig: &str) -> Result<i64, String> {
    const BOUND: u64 = 1 << 63;
    let invalid = || format!("invalid duration '{orig}' (expected e.g. 500ms, 1.5s, 2m30s)");
    let mut s = orig;
    let mut neg = false;
    if let Some(rest) = s.strip_prefix(['-', '+']) {
        neg = s.starts_with('-');
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        let first = s.as_bytes()[0];
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(invalid());
        }
        // The integer part.
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let mut value: u64 = 0;
        for b in s[..digits].bytes() {
            if value > BOUND / 10 {
                return Err(invalid());
            }
            value = value * 10 + u64::from(b - b'0');
            if value > BOUND {
                return Err(invalid());
            }
        }
        let pre = digits > 0;
        s = &s[digits..];
        // The fraction: precision stops growing once it would overflow,
        // but every digit is consumed.
        let (mut frac, mut scale, mut post) = (0u64, 1f64, false);
        if let Some(rest) = s.strip_prefix('.') {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let mut overflow = false;
            for b in rest[..digits].bytes() {
                if overflow || frac > (BOUND - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let next = frac * 10 + u64::from(b - b'0');
                if next > BOUND {
                    overflow = true;
                    continue;
                }
                frac = next;
                scale *= 10.0;
            }
            post = digits > 0;
            s = &rest[digits..];
        }
        if !pre && !post {
            return Err(invalid());
        }
        // The unit: everything up to the next number. It ends at an ASCII
        // byte or at the end, so the slice is on a char boundary.
        let len = s
            .bytes()
            .position(|b| b == b'.' || b.is_ascii_digit())
            .unwrap_or(s.len());
        if len == 0 {
            return Err(format!(
                "missing unit in duration '{orig}' (use ns, us, ms, s, m or h)"
            ));
        }
        let (unit_text, rest) = s.split_at(len);
        s = rest;
        let unit: u64 = match unit_text {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            _ => {
                return Err(format!(
                    "unknown unit '{unit_text}' in duration '{orig}' (use ns, us, ms, s, m or h)"
                ));
            }
        };
        if value > BOUND / unit {
            return Err(invalid());
        }
        value *= unit;
        if frac > 0 {
            value += (frac as f64 * (unit as f64 / scale)) as u64;
            if value > BOUND {
                return Err(invalid());
            }
        }
        total += value;
        if total > BOUND {
            return Err(invalid());
        }
    }
    if neg {
        // -2^63 is the one value that fits only when negative.
        return Ok((total as i64).wrapping_neg());
    }
    i64::try_from(total).map_err(|_| invalid())
}

/// `350ms`, `1.50s`, `2m05s`, `1h02m03s`: short, for log lines and
/// tables. Rounded to the nearest unit shown, so a deadline a few
/// microseconds past 1 s reads `1.00s` and one a hair short of it is not
/// shown as `999ms`.
pub fn fmt_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    let round = |unit: u128| (nanos + unit / 2) / unit;
    if nanos == 0 {
        "0ms".to_owned()
    } else if nanos < 1_000 {
        format!("{nanos}ns")
    } else if round(1_000) < 1_000 {
        format!("{}µs", round(1_000))
    } else if round(1_000_000) < 1_000 {
        format!("{}ms", round(1_000_000))
    } else if round(10_000_000) < 6_000 {
        let centis = round(10_000_000);
        format!("{}.{:02}s", centis / 100, centis % 100)
    } else if round(1_000_000_000) < 3_600 {
        let secs = round(1_000_000_000);
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        let secs = round(1_000_000_000);
        format!("{}h{:02}m{:02}s", secs / 3600, secs / 60 % 60, secs % 60)
    }
}
