//! SCIM `dateTime` handling (RFC 7643 §2.3.5).
//!
//! Roster stores every dateTime in one canonical form, `2026-11-29T17:49:20.123Z` (UTC,
//! millisecond precision, always `Z`), so that comparing the stored strings compares instants.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::ScimError;

/// Renders `t` in Roster's canonical form, `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_datetime(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses any RFC 3339 date-time (any offset, any fraction length) into UTC.
///
/// Errors are 400 `invalidValue`; callers in filter context re-label them `invalidFilter`.
pub fn parse_datetime(s: &str) -> Result<DateTime<Utc>, ScimError> {
    DateTime::parse_from_rfc3339(s.trim()).map(|t| t.with_timezone(&Utc)).map_err(|e| {
        ScimError::invalid_value(format!("'{s}' is not an RFC 3339 dateTime such as 2026-11-29T17:49:20Z ({e})"))
    })
}

/// Re-renders an RFC 3339 date-time in the canonical form (sub-millisecond digits are truncated).
pub fn normalize_datetime(s: &str) -> Result<String, ScimError> {
    parse_datetime(s).map(format_datetime)
}

/// The current time in the canonical form, as every timestamp Roster writes.
pub fn now() -> String {
    format_datetime(Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScimType;
    use chrono::TimeZone;

    #[test]
    fn formats_with_milliseconds_and_z() {
        let t = Utc.with_ymd_and_hms(2026, 11, 29, 17, 49, 20).single();
        assert_eq!(t.map(format_datetime).as_deref(), Some("2026-11-29T17:49:20.000Z"));
    }

    #[test]
    fn normalizes_offsets_to_utc() {
        assert_eq!(normalize_datetime("2015-10-10T14:38:21.8617979-07:00"), Ok("2015-10-10T21:38:21.861Z".to_string()));
    }

    #[test]
    fn normalizes_seconds_without_fraction() {
        assert_eq!(normalize_datetime("2011-05-13T04:42:34Z"), Ok("2011-05-13T04:42:34.000Z".to_string()));
    }

    #[test]
    fn canonical_strings_sort_in_time_order() {
        let a = normalize_datetime("2020-01-01T00:00:00+01:00").unwrap_or_default();
        let b = normalize_datetime("2019-12-31T23:30:00Z").unwrap_or_default();
        assert!(b > a, "23:30Z is later than 23:00Z");
    }

    #[test]
    fn rejects_non_rfc3339_text_as_invalid_value() {
        for bad in ["yesterday", "2020-01-01", "2020-13-01T00:00:00Z", ""] {
            let err = parse_datetime(bad).err();
            assert_eq!(err.and_then(|e| e.scim_type), Some(ScimType::InvalidValue), "{bad}");
        }
    }
}
