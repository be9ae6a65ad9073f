//! Framing: one command per line, CRLF (or a bare LF, which many clients send) ended.

/// Longest command line accepted, without its line ending.
pub const MAX_LINE: usize = 4096;

/// What the buffer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    /// A complete line (without CR/LF) and the bytes it used up, ending included.
    Complete(&'a [u8], usize),
    /// No line end yet and still under the limit: read more.
    Incomplete,
    /// No line end within [`MAX_LINE`] bytes: refuse, do not buffer more.
    TooLong,
}

/// Finds the next line in `buf`.
pub fn next_line(buf: &[u8]) -> Line<'_> {
    let window = &buf[..buf.len().min(MAX_LINE + 2)];
    match window.iter().position(|b| *b == b'\n') {
        Some(end) => {
            let line = &buf[..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > MAX_LINE {
                Line::TooLong
            } else {
                Line::Complete(line, end + 1)
            }
        }
        None if buf.len() > MAX_LINE + 1 => Line::TooLong,
        None => Line::Incomplete,
    }
}

/// Drops the Telnet "interrupt process" and "synch" sequences (IAC IP, IAC DM) that
/// clients put before an urgent ABOR or STAT (RFC 959 §4.1.3), and a lone DM left over
/// when the urgent byte arrives inline.
pub fn strip_telnet(mut line: &[u8]) -> &[u8] {
    loop {
        match line {
            [0xff, _, rest @ ..] => line = rest,
            [0xf2, rest @ ..] => line = rest,
            _ => return line,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing() {
        assert_eq!(next_line(b"NOOP\r\nUSER a\r\n"), Line::Complete(b"NOOP", 6));
        assert_eq!(next_line(b"NOOP\n"), Line::Complete(b"NOOP", 5));
        assert_eq!(next_line(b"NOO"), Line::Incomplete);
        assert_eq!(next_line(&vec![b'a'; MAX_LINE + 10]), Line::TooLong);
        let mut long = vec![b'a'; MAX_LINE + 1];
        long.extend_from_slice(b"\r\n");
        assert_eq!(next_line(&long), Line::TooLong);
        let mut ok = vec![b'a'; MAX_LINE];
        ok.extend_from_slice(b"\r\n");
        assert!(matches!(next_line(&ok), Line::Complete(_, _)));
    }

    #[test]
    fn telnet_sequences_before_abor() {
        assert_eq!(strip_telnet(b"\xff\xf4\xff\xf2ABOR"), b"ABOR");
        assert_eq!(strip_telnet(b"\xff\xf4\xffABOR"), b"BOR");
        assert_eq!(strip_telnet(b"\xf2ABOR"), b"ABOR");
        assert_eq!(strip_telnet(b"\xff"), b"\xff");
        assert_eq!(strip_telnet(b"NOOP"), b"NOOP");
    }
}
