//! RFC 3339 times as Wharf writes and reads them: audit records, API listings, expiries,
//! bans, `--since`. Every time written is UTC (`Z`).
//!
//! [`format_micros`] is the audit trail's form, and records are hashed as text, so its
//! output must never change for a given instant.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// `t` in UTC, with as many fractional digits as it needs (none for a whole second).
/// Fails only for years RFC 3339 cannot write (before year 0).
pub fn format(t: OffsetDateTime) -> Result<String, time::error::Format> {
    t.to_offset(UtcOffset::UTC).format(&Rfc3339)
}

/// `t` in UTC to the second, fractions dropped.
pub fn format_seconds(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    format(t).unwrap_or_else(|_| t.to_string())
}

/// `t` in UTC with exactly six fractional digits (microseconds): the audit trail's form,
/// which sorts as text in time order.
pub fn format_micros(time: OffsetDateTime) -> String {
    let t = time.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Reads an RFC 3339 time, with any offset.
pub fn parse(text: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(text, &Rfc3339)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> OffsetDateTime {
        parse(text).expect("an RFC 3339 time")
    }

    #[test]
    fn formats_in_utc_with_the_fraction_it_needs() {
        assert_eq!(
            format(at("2026-01-02T03:04:05Z")).unwrap(),
            "2026-01-02T03:04:05Z"
        );
        assert_eq!(
            format(at("2026-01-02T05:04:05.25+02:00")).unwrap(),
            "2026-01-02T03:04:05.25Z"
        );
        assert_eq!(
            format_seconds(at("2026-01-02T03:04:05.999999Z")),
            "2026-01-02T03:04:05Z"
        );
    }

    #[test]
    fn the_trail_form_has_six_digits_always() {
        assert_eq!(
            format_micros(at("2026-01-02T03:04:05Z")),
            "2026-01-02T03:04:05.000000Z"
        );
        assert_eq!(
            format_micros(at("2026-01-02T04:04:05.1234567+01:00")),
            "2026-01-02T03:04:05.123456Z"
        );
        assert_eq!(
            format_micros(OffsetDateTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn parses_what_it_writes_and_refuses_the_rest() {
        let t = at("2026-11-25T10:00:00.000001Z");
        assert_eq!(parse(&format_micros(t)).unwrap(), t);
        assert_eq!(parse(&format(t).unwrap()).unwrap(), t);
        for bad in ["", "2026-11-25", "15m", "2026-13-01T00:00:00Z"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
