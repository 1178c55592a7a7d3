//! Go's `String()` spelling of deadlines: a wall-clock time in UTC and the
//! time left, `2026-11-25 10:00:00.5 +0000 UTC [4.99s]`.
//!
//! `Instant` has no calendar, so the wall-clock time is read through one
//! pair of readings of both clocks, taken together once per process: the
//! same deadline then prints the same time at every call (as a Go
//! `time.Time` keeps the wall reading it was made with), and a later jump
//! of the system clock does not move it.

use std::fmt;
use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The process's pair of clock readings (see the module docs).
static ANCHOR: LazyLock<(Instant, SystemTime)> =
    LazyLock::new(|| (Instant::now(), SystemTime::now()));

/// Writes `at` as Go prints a `time.Time` in UTC, then the signed time left
/// in brackets, as Go's `Duration.String()`.
pub(crate) fn write_deadline(f: &mut fmt::Formatter<'_>, at: Instant) -> fmt::Result {
    let (base, wall) = *ANCHOR;
    let wall_at = if at >= base {
        wall.checked_add(at - base)
    } else {
        wall.checked_sub(base - at)
    };
    let now = Instant::now();
    let (left, negative) = if at >= now {
        (at - now, false)
    } else {
        (now - at, true)
    };
    match wall_at.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
        Some(since_epoch) => write_utc(f, since_epoch)?,
        None => f.write_str("(out of calendar range)")?,
    }
    f.write_str(" [")?;
    if negative && !left.is_zero() {
        f.write_str("-")?;
    }
    write_duration(f, left)?;
    f.write_str("]")
}

/// `YYYY-MM-DD HH:MM:SS[.fraction] +0000 UTC`, fraction without trailing
/// zeros, as Go's default time format.
fn write_utc(f: &mut fmt::Formatter<'_>, since_epoch: Duration) -> fmt::Result {
    let secs = since_epoch.as_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    write!(
        f,
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )?;
    write_fraction(f, since_epoch.subsec_nanos())?;
    f.write_str(" +0000 UTC")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days` algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `.123` for 123 000 000 ns; nothing for zero.
fn write_fraction(f: &mut fmt::Formatter<'_>, nanos: u32) -> fmt::Result {
    if nanos == 0 {
        return Ok(());
    }
    let digits = format!("{nanos:09}");
    write!(f, ".{}", digits.trim_end_matches('0'))
}

/// Go's `Duration.String()`: `0s`, `1.5µs`, `20ms`, `4.99s`, `1h2m3.5s`.
pub(crate) fn write_duration(f: &mut fmt::Formatter<'_>, d: Duration) -> fmt::Result {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return f.write_str("0s");
    }
    if nanos < 1_000 {
        return write!(f, "{nanos}ns");
    }
    if nanos < 1_000_000 {
        return write_scaled(f, nanos, 1_000, "µs");
    }
    if nanos < 1_000_000_000 {
        return write_scaled(f, nanos, 1_000_000, "ms");
    }
    let secs = d.as_secs();
    let (hours, minutes, seconds) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if hours > 0 {
        write!(f, "{hours}h")?;
    }
    if hours > 0 || minutes > 0 {
        write!(f, "{minutes}m")?;
    }
    write!(f, "{seconds}")?;
    write_fraction(f, d.subsec_nanos())?;
    f.write_str("s")
}

fn write_scaled(f: &mut fmt::Formatter<'_>, nanos: u128, unit: u128, suffix: &str) -> fmt::Result {
    write!(f, "{}", nanos / unit)?;
    let frac = nanos % unit;
    if frac != 0 {
        let width = unit.ilog10() as usize;
        let digits = format!("{frac:0width$}");
        write!(f, ".{}", digits.trim_end_matches('0'))?;
    }
    f.write_str(suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct D(Duration);
    impl fmt::Display for D {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write_duration(f, self.0)
        }
    }
    struct U(Duration);
    impl fmt::Display for U {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write_utc(f, self.0)
        }
    }

    #[test]
    fn durations_read_like_go() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(7), "7ns"),
            (Duration::from_nanos(1_500), "1.5µs"),
            (Duration::from_micros(684_158), "684.158ms"),
            (Duration::from_millis(20), "20ms"),
            (Duration::from_nanos(59_999_979_302), "59.999979302s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (
                Duration::from_nanos(97_909_196_080_030),
                "27h11m49.19608003s",
            ),
        ];
        for (d, want) in cases {
            assert_eq!(D(d).to_string(), want);
        }
    }

    #[test]
    fn calendar_dates_are_right() {
        // 2030-01-02 03:04:05.000000006 UTC, the example in Go's docs.
        let t = Duration::new(1_893_553_445, 6);
        assert_eq!(U(t).to_string(), "2030-01-02 03:04:05.000000006 +0000 UTC");
        assert_eq!(
            U(Duration::ZERO).to_string(),
            "1970-01-01 00:00:00 +0000 UTC"
        );
        // A leap day.
        assert_eq!(
            U(Duration::from_secs(951_782_400)).to_string(),
            "2000-02-29 00:00:00 +0000 UTC"
        );
    }
}
