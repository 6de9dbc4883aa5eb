//! Times as every command prints them: RFC 3339 to the second, in local
//! time with its offset (`2026-12-01T02:16:46+01:00`), or in UTC
//! (`2026-12-01T01:16:46Z`) with `--utc`.

use std::sync::atomic::{AtomicBool, Ordering};

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// Set once from `--utc` before any command runs.
static UTC: AtomicBool = AtomicBool::new(false);

/// Makes [`show`] print UTC (`--utc`) or local time.
pub(crate) fn set_utc(utc: bool) {
    UTC.store(utc, Ordering::Relaxed);
}

/// Whether `--utc` was given.
pub(crate) fn utc() -> bool {
    UTC.load(Ordering::Relaxed)
}

/// Milliseconds since the Unix epoch as the command line asked: see
/// [`fmt_time`].
pub(crate) fn show(ms: u64) -> String {
    fmt_time(ms, utc())
}

/// Milliseconds since the Unix epoch as RFC 3339 to the second: in UTC
/// with `Z` when `utc`, else in the local time zone (`TZ`, or the system's)
/// with its offset. Times past what RFC 3339 can write (the end of year
/// 9999, less a day for offsets) print as the latest it can.
pub(crate) fn fmt_time(ms: u64, utc: bool) -> String {
    if utc {
        fmt_in(ms, None)
    } else {
        fmt_in(ms, Some(&TimeZone::system()))
    }
}

/// In `zone` with its offset, or in UTC with `Z` when there is none.
fn fmt_in(ms: u64, zone: Option<&TimeZone>) -> String {
    let ts = i64::try_from(ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .unwrap_or(Timestamp::MAX);
    // Whole seconds: the tables are for people.
    let ts = Timestamp::from_second(ts.as_second()).unwrap_or(ts);
    match zone {
        None => ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Some(zone) => ts
            .to_zoned(zone.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use jiff::tz::{Offset, TimeZone};

    use super::*;

    #[test]
    fn utc_times_end_in_z() {
        assert_eq!(fmt_time(0, true), "1970-01-01T00:00:00Z");
        assert_eq!(fmt_time(951_782_400_000, true), "2000-02-29T00:00:00Z");
        assert_eq!(fmt_time(1_795_348_578_999, true), "2026-11-22T11:56:18Z");
        assert_eq!(fmt_time(u64::MAX, true), "9999-12-30T22:00:00Z");
    }

    #[test]
    fn local_times_carry_their_offset() {
        let ms = 1_795_348_578_999;
        let india = TimeZone::fixed(Offset::from_seconds(5 * 3600 + 1800).unwrap());
        assert_eq!(fmt_in(ms, Some(&india)), "2026-11-22T17:26:18+05:30");
        let west = TimeZone::fixed(Offset::from_hours(-8).unwrap());
        assert_eq!(fmt_in(ms, Some(&west)), "2026-11-22T03:56:18-08:00");
        // Local time shows its offset even when it is zero.
        let zero = TimeZone::fixed(Offset::from_hours(0).unwrap());
        assert_eq!(fmt_in(ms, Some(&zero)), "2026-11-22T11:56:18+00:00");
        // Whatever the machine's zone, the text is RFC 3339 for the same instant.
        let text = fmt_time(ms, false);
        let parsed: Timestamp = text.parse().unwrap();
        assert_eq!(parsed.as_second(), 1_795_348_578, "{text}");
    }
}
