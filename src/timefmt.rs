//! Times as the server writes and reads them in text: RFC 3339 in UTC with milliseconds out, RFC 3339
//! (any offset) or Unix milliseconds in. One pair for the API, the CLI, exports, backups and the monitor.

use rookery_events::Timestamp;

/// Reads `value` as RFC 3339 (`2025-01-31T12:00:00Z`, `2025-01-31T13:00:00.5+01:00`) or Unix
/// milliseconds; `name` names the parameter in the error.
///
/// # Errors
/// A sentence naming `name` when `value` is neither, or before 1970.
pub fn parse_time(name: &str, value: &str) -> Result<Timestamp, String> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().map(Timestamp).map_err(|_| format!("{name} must be a time, got {value:?}"));
    }
    let t = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{name} must be an RFC 3339 time (2025-01-31T12:00:00Z) or Unix milliseconds, got {value:?}: {e}"))?;
    let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
    u64::try_from(ms).map(Timestamp).map_err(|_| format!("{name} must not be before 1970, got {value:?}"))
}

/// `t` as RFC 3339 in UTC with milliseconds (`2023-11-14T22:13:20.123Z`).
pub fn format_time(t: Timestamp) -> String {
    let nanos = i128::from(t.0) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(dt) => {
            let (y, mo, d) = (dt.year(), u8::from(dt.month()), dt.day());
            let (h, mi, s, ms) = (dt.hour(), dt.minute(), dt.second(), dt.millisecond());
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
        }
        // Beyond the year 9999: not a time this server recorded; show the raw number.
        Err(_) => t.0.to_string(),
    }
}

/// `t` as `yyyy-MM-dd HH:mm:ss` in UTC, whole seconds: the JMessage API's times.
pub fn format_civil(t: Timestamp) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.0) * 1_000_000) {
        Ok(dt) => format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", dt.year(), u8::from(dt.month()), dt.day(), dt.hour(), dt.minute(), dt.second()),
        Err(_) => t.0.to_string(),
    }
}

/// `value` as a calendar date `yyyy-MM-dd` when it is one (a real day of a four-digit year).
pub fn parse_date(value: &str) -> Option<String> {
    let b = value.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !digits(0..4) || !digits(5..7) || !digits(8..10) {
        return None;
    }
    let year: i32 = value[0..4].parse().ok()?;
    let month = time::Month::try_from(value[5..7].parse::<u8>().ok()?).ok()?;
    let day: u8 = value[8..10].parse().ok()?;
    time::Date::from_calendar_date(year, month, day).ok().map(|_| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_in_utc_with_milliseconds() {
        assert_eq!(format_time(Timestamp(1_700_000_000_123)), "2023-11-14T22:13:20.123Z");
        assert_eq!(parse_time("since", "2023-11-14T22:13:20.123Z").unwrap(), Timestamp(1_700_000_000_123));
        assert_eq!(parse_time("since", "2023-11-14T23:13:20.123+01:00").unwrap(), Timestamp(1_700_000_000_123));
        assert_eq!(parse_time("at", "1700000000123").unwrap(), Timestamp(1_700_000_000_123));
        assert!(parse_time("at", "1969-12-31T23:59:59Z").unwrap_err().contains("at must not be before 1970"));
        assert!(parse_time("at", "yesterday").unwrap_err().contains("at must be an RFC 3339 time"));
    }

    #[test]
    fn civil_times_and_dates() {
        assert_eq!(format_civil(Timestamp(1_700_000_000_123)), "2023-11-14 22:13:20");
        assert_eq!(parse_date("1990-01-24").as_deref(), Some("1990-01-24"));
        for bad in ["1990-02-30", "1990-1-24", "90-01-24", "1990/01/24", "1990-13-01", ""] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }
}
