//! The `Range` request header (RFC 9110 §14): one byte range, or none.
//!
//! Several ranges in one request are refused (416): they are the tool of overlapping-range
//! amplification and no file client needs them to resume. Pure: no I/O.

/// What a `Range` header asks for, against a file of `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable header: send the whole file.
    Full,
    /// Bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// Not satisfiable, or more than one range: 416.
    Unsatisfiable,
}

/// Parses `header` for a file of `size` bytes.
pub fn parse(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(header) = header else {
        return RangeRequest::Full;
    };
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        // Unknown units are ignored (RFC 9110 §14.2).
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Unsatisfiable;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Unsatisfiable;
    };
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            Some(n) if n > 0 && size > 0 => RangeRequest::Partial {
                start: size.saturating_sub(n),
                end: size - 1,
            },
            _ => RangeRequest::Unsatisfiable,
        },
        (start, "") => match number(start) {
            Some(s) if s < size => RangeRequest::Partial {
                start: s,
                end: size - 1,
            },
            _ => RangeRequest::Unsatisfiable,
        },
        (start, end) => match (number(start), number(end)) {
            (Some(s), Some(e)) if s <= e && s < size => RangeRequest::Partial {
                start: s,
                end: e.min(size - 1),
            },
            _ => RangeRequest::Unsatisfiable,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse(None, 10), RangeRequest::Full);
        assert_eq!(
            parse(Some("bytes=0-4"), 10),
            RangeRequest::Partial { start: 0, end: 4 }
        );
        assert_eq!(
            parse(Some("bytes=5-"), 10),
            RangeRequest::Partial { start: 5, end: 9 }
        );
        assert_eq!(
            parse(Some("bytes=-3"), 10),
            RangeRequest::Partial { start: 7, end: 9 }
        );
        assert_eq!(
            parse(Some("bytes=-30"), 10),
            RangeRequest::Partial { start: 0, end: 9 }
        );
        assert_eq!(
            parse(Some("bytes=2-99"), 10),
            RangeRequest::Partial { start: 2, end: 9 }
        );
        assert_eq!(parse(Some("bytes=10-"), 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse(Some("bytes=4-2"), 10), RangeRequest::Unsatisfiable);
        assert_eq!(
            parse(Some("bytes=0-1,0-1"), 10),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(parse(Some("bytes=-0"), 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse(Some("bytes=x-1"), 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse(Some("items=0-1"), 10), RangeRequest::Full);
        assert_eq!(parse(Some("bytes=0-"), 0), RangeRequest::Unsatisfiable);
        assert_eq!(
            parse(Some("bytes=99999999999999999999999-"), 10),
            RangeRequest::Unsatisfiable
        );
    }
}
