//! The client reads the clock here and nowhere else: wall-clock seconds for
//! messages and expiries, a monotonic instant for waits.
//!
//! Debug builds only (the test binaries), `ENLACE_DEBUG_CLOCK_OFFSET_SECS`
//! moves the wall clock forward by that many seconds, so that an
//! end-to-end test can see a disappearing-message timer run out.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A monotonic instant, for deadlines of waits.
pub(crate) fn instant() -> Instant {
    Instant::now()
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now() -> u64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    secs.saturating_add(debug_offset())
}

/// The test clock's offset: always 0 outside debug builds.
#[cfg(debug_assertions)]
fn debug_offset() -> u64 {
    use std::sync::OnceLock;
    static OFFSET: OnceLock<u64> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::env::var("ENLACE_DEBUG_CLOCK_OFFSET_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    })
}

#[cfg(not(debug_assertions))]
fn debug_offset() -> u64 {
    0
}

/// `YYYY-MM-DD HH:MM UTC`.
pub(crate) fn format_utc(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(format_utc(1_795_725_720), "2026-11-26 20:42 UTC");
    }
}
