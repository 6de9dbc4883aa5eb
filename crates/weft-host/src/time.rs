//! The host's clock and the one way it writes times for people: RFC 3339
//! in UTC to the second (`2026-11-22T11:56:18Z`), as instance log files
//! carry them. `humantime` formats and parses that form; it is already in
//! the workspace and does this one thing, where a full date-time library
//! would bring time zones nothing here needs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// RFC 3339 UTC to the second, for log files.
pub(crate) fn rfc3339(ms: u64) -> String {
    // RFC 3339 ends at year 9999, and `humantime` refuses to write later
    // times; a clock that far off still gets a line.
    const LAST_SECOND: u64 = 253_402_300_799;
    let time = UNIX_EPOCH + Duration::from_secs((ms / 1000).min(LAST_SECOND));
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Reads back what [`rfc3339`] wrote (`2026-11-22T11:56:18Z`), in
/// milliseconds since the Unix epoch.
pub(crate) fn parse_rfc3339(text: &str) -> Option<u64> {
    // Only the exact form written, so that a line that merely starts with
    // a time-like word is not taken for one of ours.
    if text.len() != "2026-11-22T11:56:18Z".len() {
        return None;
    }
    let time = humantime::parse_rfc3339(text).ok()?;
    let secs = time.duration_since(UNIX_EPOCH).ok()?.as_secs();
    secs.checked_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_348_578_999), "2026-11-22T11:56:18Z");
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn times_read_back() {
        for ms in [0, 951_782_400_000, 1_795_348_578_000, 4_107_542_399_000] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms), "{}", rfc3339(ms));
        }
        for bad in [
            "",
            "2026-11-22 11:56:18Z",
            "2026-13-22T11:56:18Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T11:56:18",
            "+026-11-22T11:56:18Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_clock_is_past_2020() {
        assert!(now_ms() > 1_577_836_800_000);
    }
}
