//! Replies: a three-digit code and one or more lines of text.

/// An FTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The reply code (100-599).
    pub code: u16,
    /// Text lines; line breaks inside them are replaced, so one reply stays one reply.
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply.
    pub fn new(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            lines: vec![text.into()],
        }
    }

    /// A multi-line reply (FEAT, HELP, STAT, MLST).
    pub fn multi(code: u16, lines: Vec<String>) -> Reply {
        Reply { code, lines }
    }

    /// The bytes to send, CRLF-terminated, in RFC 959 multi-line form when needed.
    pub fn encode(&self) -> Vec<u8> {
        let clean = |s: &str| s.replace(['\r', '\n', '\0'], " ");
        let code = self.code.clamp(100, 599);
        let mut out = String::new();
        match self.lines.as_slice() {
            [] => out.push_str(&format!("{code} \r\n")),
            [only] => out.push_str(&format!("{code} {}\r\n", clean(only))),
            [first, middle @ .., last] => {
                out.push_str(&format!("{code}-{}\r\n", clean(first)));
                for line in middle {
                    // A middle line must not look like the final line of the reply.
                    let text = clean(line);
                    out.push(' ');
                    out.push_str(&text);
                    out.push_str("\r\n");
                }
                out.push_str(&format!("{code} {}\r\n", clean(last)));
            }
        }
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding() {
        assert_eq!(Reply::new(200, "OK").encode(), b"200 OK\r\n");
        assert_eq!(
            Reply::new(550, "no such file: a\r\n226 forged").encode(),
            b"550 no such file: a  226 forged\r\n"
        );
        assert_eq!(
            Reply::multi(211, vec!["Features:".into(), "EPSV".into(), "End".into()]).encode(),
            b"211-Features:\r\n EPSV\r\n211 End\r\n"
        );
    }
}
