//! The file path in a request URL: percent-decoded exactly once and checked, before the core
//! session normalises it.
//!
//! Decoded once, and only once: `%2520` is a name holding `%20`, as a file called
//! `percent%20x.txt` (made over SFTP) is listed `percent%2520x.txt` and must be reachable by
//! that very href. What the decoded path *is* decides, not what it looks like: refused
//! outright (400 and a `protocol.error` event) rather than normalised are `.` and `..`
//! segments, in any encoding (`%2e%2e`); Tomcat-style path parameters (`..;/`); bytes that
//! are not UTF-8 (overlong forms such as `%c0%ae`); backslashes, NUL and control
//! characters. A client of a file API has no reason to send any of them, and refusing keeps
//! every layer's reading identical. Nothing after this decodes again (the core takes the
//! decoded bytes as a name; dav-server decodes the same raw URL once, to the same path).
//!
//! Pure: no I/O.

/// Why a request path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `%` not followed by two hex digits.
    #[error("malformed percent-encoding")]
    BadEscape,
    /// The decoded bytes are not UTF-8 (including overlong encodings).
    #[error("path is not UTF-8")]
    NotUtf8,
    /// A `.` or `..` segment, or one carrying a `;` parameter after dots.
    #[error("dot segments are not allowed")]
    DotSegment,
    /// Backslash, NUL or a control character.
    #[error("path holds a forbidden character")]
    ForbiddenChar,
    /// Longer than the path limit.
    #[error("path too long")]
    TooLong,
}

/// Longest encoded path accepted.
pub const MAX_ENCODED_PATH: usize = 12 * 1024;

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes the part of a URL path after its route prefix into a `/`-rooted file path.
pub fn decode(encoded: &str) -> Result<String, PathError> {
    if encoded.len() > MAX_ENCODED_PATH {
        return Err(PathError::TooLong);
    }
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::BadEscape);
            };
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(out).map_err(|_| PathError::NotUtf8)?;
    if text.chars().any(|c| c == '\\' || c.is_control()) {
        return Err(PathError::ForbiddenChar);
    }
    for segment in text.split('/') {
        let name = segment.split(';').next().unwrap_or(segment);
        if name == "." || name == ".." || (segment.contains(';') && name.starts_with('.')) {
            return Err(PathError::DotSegment);
        }
    }
    let trimmed = text.trim_matches('/');
    Ok(format!("/{trimmed}"))
}

/// Percent-encodes a file path for a URL (every byte but unreserved characters and `/`).
pub fn encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_encoded_names() {
        assert_eq!(decode("reports/q3.pdf"), Ok("/reports/q3.pdf".into()));
        assert_eq!(decode(""), Ok("/".into()));
        assert_eq!(decode("a%20b/%C3%BC.txt"), Ok("/a b/ü.txt".into()));
        assert_eq!(decode("..foo/bar.."), Ok("/..foo/bar..".into()));
        assert_eq!(encode("/a b/ü.txt"), "/a%20b/%C3%BC.txt");
        assert_eq!(
            decode(&encode("/100% done;v2.txt")),
            Ok("/100% done;v2.txt".into())
        );
    }

    #[test]
    fn a_percent_sign_in_a_name_is_decoded_once() {
        // The href a listing gives for `percent%20x.txt` leads back to that name.
        assert_eq!(
            decode(&encode("/percent%20x.txt")),
            Ok("/percent%20x.txt".into())
        );
        assert_eq!(decode("percent%2520x.txt"), Ok("/percent%20x.txt".into()));
        // `%252e%252e` is a name made of `%2e%2e`, not a way up: nothing decodes it again.
        assert_eq!(decode("%252e%252e/etc"), Ok("/%2e%2e/etc".into()));
        assert_eq!(decode("a%25/b%2541"), Ok("/a%/b%41".into()));
    }

    #[test]
    fn traversal_in_every_spelling_is_refused() {
        for bad in [
            "../etc/passwd",
            "a/../../b",
            "%2e%2e/etc",
            "%2E%2E%2Fetc",
            "a/%2e/b",
            "..;/etc",
            "a/..;jsessionid=1/b",
            "%c0%ae%c0%ae/etc",
            "a%5c..%5cb",
            "a\\b",
            "a%00b",
            "%zz",
            "%2",
        ] {
            assert!(decode(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn random_input_never_panics() {
        let pieces = [
            "%", "2e", "..", "/", ";", "%c0", "%ae", "a", "%25", "\\", "ü",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..50_000 {
            let mut s = String::new();
            for _ in 0..(state % 12) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                s.push_str(pieces[(state % pieces.len() as u64) as usize]);
            }
            if let Ok(p) = decode(&s) {
                assert!(p.starts_with('/') && !p.split('/').any(|x| x == ".."));
            }
        }
    }
}
