//! Commands: a verb (case-insensitive) and its argument.

/// Why a line is not a command Wharf accepts; each maps to a reply code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Not a command at all (empty, binary, not ASCII): 500.
    #[error("syntax error, command unrecognized")]
    Unrecognized,
    /// A known verb Wharf does not implement: 502.
    #[error("command not implemented")]
    NotImplemented,
    /// The verb needs an argument: 501.
    #[error("syntax error in parameters or arguments")]
    MissingArgument,
    /// The argument is malformed: 501.
    #[error("syntax error in parameters or arguments: {0}")]
    BadArgument(&'static str),
    /// The parameter is known but not supported (TYPE E, MODE B...): 504.
    #[error("command not implemented for that parameter")]
    UnsupportedParameter,
}

impl ParseError {
    /// The reply code for this error.
    pub fn code(&self) -> u16 {
        match self {
            ParseError::Unrecognized => 500,
            ParseError::NotImplemented => 502,
            ParseError::MissingArgument | ParseError::BadArgument(_) => 501,
            ParseError::UnsupportedParameter => 504,
        }
    }
}

/// TYPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferType {
    /// `TYPE A` (optionally `A N`): line endings converted.
    Ascii,
    /// `TYPE I` (or `L 8`): bytes as they are.
    Image,
}

/// PROT (RFC 2228 / 4217).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prot {
    /// Clear data channel.
    Clear,
    /// Private (TLS) data channel.
    Private,
}

/// A parsed command. Path arguments stay raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum Command {
    User(String),
    /// The password; never log it.
    Pass(String),
    Quit,
    Noop,
    Syst,
    Feat,
    Opts(String),
    Help(Option<String>),
    Stat(Option<Vec<u8>>),
    Pwd,
    Cwd(Vec<u8>),
    Cdup,
    Type(TransferType),
    /// MODE S only.
    Mode,
    /// STRU F only.
    Stru,
    Pasv,
    /// EPSV, or `EPSV ALL` (then only EPSV is accepted for data).
    Epsv {
        all: bool,
    },
    Port(String),
    Eprt(String),
    /// LIST with its path (options such as `-la` removed).
    List(Option<Vec<u8>>),
    Nlst(Option<Vec<u8>>),
    Mlsd(Option<Vec<u8>>),
    Mlst(Option<Vec<u8>>),
    Size(Vec<u8>),
    Mdtm(Vec<u8>),
    /// MFMT: seconds since the epoch (UTC) and the path.
    Mfmt(i64, Vec<u8>),
    Retr(Vec<u8>),
    Stor(Vec<u8>),
    Stou(Option<Vec<u8>>),
    Appe(Vec<u8>),
    Rest(u64),
    Rnfr(Vec<u8>),
    Rnto(Vec<u8>),
    Dele(Vec<u8>),
    Mkd(Vec<u8>),
    Rmd(Vec<u8>),
    Allo,
    Abor,
    Auth(String),
    Pbsz(u64),
    Prot(Prot),
    Ccc,
    /// SITE CHMOD mode path.
    SiteChmod(u32, Vec<u8>),
    /// HASH (draft-bryan-ftp-hash).
    Hash(Vec<u8>),
    Host(String),
}

impl Command {
    /// True for the commands that open a data connection.
    pub fn uses_data_connection(&self) -> bool {
        matches!(
            self,
            Command::List(_)
                | Command::Nlst(_)
                | Command::Mlsd(_)
                | Command::Retr(_)
                | Command::Stor(_)
                | Command::Stou(_)
                | Command::Appe(_)
        )
    }

    /// True for the commands allowed before login (everything else gets 530).
    pub fn allowed_before_login(&self) -> bool {
        matches!(
            self,
            Command::User(_)
                | Command::Pass(_)
                | Command::Auth(_)
                | Command::Pbsz(_)
                | Command::Prot(_)
                | Command::Feat
                | Command::Syst
                | Command::Help(_)
                | Command::Quit
                | Command::Opts(_)
                | Command::Noop
                | Command::Host(_)
        )
    }
}

/// Finds a complete ABOR line among the lines waiting in `buf` (commands a client sent
/// during a transfer). Returns the byte range to remove; other lines stay queued in order.
pub fn find_abort(buf: &[u8]) -> Option<std::ops::Range<usize>> {
    let mut start = 0;
    while let crate::Line::Complete(line, used) = crate::next_line(&buf[start..]) {
        if Command::parse(line) == Ok(Command::Abor) {
            return Some(start..start + used);
        }
        start += used;
    }
    None
}

fn text(arg: Option<&[u8]>) -> Result<String, ParseError> {
    let arg = arg.ok_or(ParseError::MissingArgument)?;
    String::from_utf8(arg.to_vec()).map_err(|_| ParseError::BadArgument("not UTF-8"))
}

fn path(arg: Option<&[u8]>) -> Result<Vec<u8>, ParseError> {
    match arg {
        Some(a) if !a.is_empty() => Ok(a.to_vec()),
        _ => Err(ParseError::MissingArgument),
    }
}

fn optional_path(arg: Option<&[u8]>) -> Option<Vec<u8>> {
    arg.filter(|a| !a.is_empty()).map(<[u8]>::to_vec)
}

/// LIST/NLST take `ls`-style options some clients send (`-la`, `-a -l`); they are dropped.
fn listing_path(arg: Option<&[u8]>) -> Option<Vec<u8>> {
    let mut rest = arg?;
    while rest.first() == Some(&b'-') {
        match rest.iter().position(|b| *b == b' ') {
            Some(space) => rest = &rest[space + 1..],
            None => return None,
        }
    }
    optional_path(Some(rest))
}

fn number<T: std::str::FromStr>(arg: Option<&[u8]>) -> Result<T, ParseError> {
    let arg = arg.ok_or(ParseError::MissingArgument)?;
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or(ParseError::BadArgument("expected a number"))
}

/// MFMT's `YYYYMMDDHHMMSS` (UTC) as seconds since the epoch.
fn mdtm_time(text: &[u8]) -> Result<i64, ParseError> {
    let bad = ParseError::BadArgument("time must be YYYYMMDDHHMMSS");
    let digits = text.get(..14).ok_or(bad.clone())?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    let n = |a: usize, b: usize| -> i64 {
        digits[a..b]
            .iter()
            .fold(0, |acc, d| acc * 10 + i64::from(d - b'0'))
    };
    let (y, mo, d, h, mi, s) = (n(0, 4), n(4, 6), n(6, 8), n(8, 10), n(10, 12), n(12, 14));
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
        || h > 23
        || mi > 59
        || s > 60
    {
        return Err(bad);
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y2, m2) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400 + h * 3600 + mi * 60 + s)
}

impl Command {
    /// Parses one line (without its line ending).
    pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
        let line = crate::line::strip_telnet(line);
        let (verb, arg) = match line.iter().position(|b| *b == b' ') {
            Some(space) => (&line[..space], Some(&line[space + 1..])),
            None => (line, None),
        };
        // Verbs are letters (RFC 959), and extensions may add digits (`XSHA256`).
        let well_formed = verb.first().is_some_and(u8::is_ascii_alphabetic)
            && verb.iter().all(u8::is_ascii_alphanumeric);
        if verb.len() > 8 || !well_formed {
            return Err(ParseError::Unrecognized);
        }
        let verb = verb.to_ascii_uppercase();
        Ok(match verb.as_slice() {
            b"USER" => Command::User(text(arg)?),
            b"PASS" => Command::Pass(text(arg.or(Some(b"")))?),
            b"QUIT" => Command::Quit,
            b"NOOP" => Command::Noop,
            b"SYST" => Command::Syst,
            b"FEAT" => Command::Feat,
            b"OPTS" => Command::Opts(text(arg)?),
            b"HELP" => Command::Help(arg.map(|a| String::from_utf8_lossy(a).into_owned())),
            b"STAT" => Command::Stat(optional_path(arg)),
            b"PWD" | b"XPWD" => Command::Pwd,
            b"CWD" | b"XCWD" => Command::Cwd(path(arg)?),
            b"CDUP" | b"XCUP" => Command::Cdup,
            b"TYPE" => {
                let t = text(arg)?.to_ascii_uppercase();
                match t.as_str() {
                    "A" | "A N" => Command::Type(TransferType::Ascii),
                    "I" | "L 8" => Command::Type(TransferType::Image),
                    _ => return Err(ParseError::UnsupportedParameter),
                }
            }
            b"MODE" => match text(arg)?.to_ascii_uppercase().as_str() {
                "S" => Command::Mode,
                _ => return Err(ParseError::UnsupportedParameter),
            },
            b"STRU" => match text(arg)?.to_ascii_uppercase().as_str() {
                "F" => Command::Stru,
                _ => return Err(ParseError::UnsupportedParameter),
            },
            b"PASV" => Command::Pasv,
            b"EPSV" => match arg.map(|a| a.to_ascii_uppercase()) {
                None => Command::Epsv { all: false },
                Some(a) if a == b"ALL" => Command::Epsv { all: true },
                Some(a) if a == b"1" || a == b"2" => Command::Epsv { all: false },
                Some(_) => return Err(ParseError::BadArgument("EPSV takes ALL, 1 or 2")),
            },
            b"PORT" => Command::Port(text(arg)?),
            b"EPRT" => Command::Eprt(text(arg)?),
            b"LIST" => Command::List(listing_path(arg)),
            b"NLST" => Command::Nlst(listing_path(arg)),
            b"MLSD" => Command::Mlsd(optional_path(arg)),
            b"MLST" => Command::Mlst(optional_path(arg)),
            b"SIZE" => Command::Size(path(arg)?),
            b"MDTM" => Command::Mdtm(path(arg)?),
            b"MFMT" => {
                let arg = arg.ok_or(ParseError::MissingArgument)?;
                let space = arg
                    .iter()
                    .position(|b| *b == b' ')
                    .ok_or(ParseError::MissingArgument)?;
                Command::Mfmt(mdtm_time(&arg[..space])?, path(Some(&arg[space + 1..]))?)
            }
            b"RETR" => Command::Retr(path(arg)?),
            b"STOR" => Command::Stor(path(arg)?),
            b"STOU" => Command::Stou(optional_path(arg)),
            b"APPE" => Command::Appe(path(arg)?),
            b"REST" => Command::Rest(number(arg)?),
            b"RNFR" => Command::Rnfr(path(arg)?),
            b"RNTO" => Command::Rnto(path(arg)?),
            b"DELE" => Command::Dele(path(arg)?),
            b"MKD" | b"XMKD" => Command::Mkd(path(arg)?),
            b"RMD" | b"XRMD" => Command::Rmd(path(arg)?),
            b"ALLO" => Command::Allo,
            b"ABOR" => Command::Abor,
            b"AUTH" => Command::Auth(text(arg)?.to_ascii_uppercase()),
            b"PBSZ" => Command::Pbsz(number(arg)?),
            b"PROT" => match text(arg)?.to_ascii_uppercase().as_str() {
                "C" => Command::Prot(Prot::Clear),
                "P" => Command::Prot(Prot::Private),
                "S" | "E" => return Err(ParseError::UnsupportedParameter),
                _ => return Err(ParseError::BadArgument("PROT takes C or P")),
            },
            b"CCC" => Command::Ccc,
            b"SITE" => {
                let arg = arg.ok_or(ParseError::MissingArgument)?;
                let mut parts = arg.splitn(3, |b| *b == b' ');
                let sub = parts.next().unwrap_or_default().to_ascii_uppercase();
                if sub != b"CHMOD" {
                    return Err(ParseError::NotImplemented);
                }
                let mode = parts.next().ok_or(ParseError::MissingArgument)?;
                let mode = std::str::from_utf8(mode)
                    .ok()
                    .and_then(|m| u32::from_str_radix(m, 8).ok())
                    .filter(|m| *m <= 0o7777)
                    .ok_or(ParseError::BadArgument("mode must be octal, at most 7777"))?;
                Command::SiteChmod(mode, path(parts.next())?)
            }
            b"HASH" | b"XSHA256" => Command::Hash(path(arg)?),
            b"HOST" => Command::Host(text(arg)?),
            b"ACCT" | b"REIN" | b"SMNT" | b"LPRT" | b"LPSV" => {
                return Err(ParseError::NotImplemented);
            }
            _ => return Err(ParseError::Unrecognized),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abort_is_found_among_queued_lines() {
        let buf = b"NOOP\r\n\xff\xf4\xff\xf2ABOR\r\nPWD\r\nAB";
        let range = find_abort(buf);
        assert_eq!(range, Some(6..16));
        assert_eq!(find_abort(b"NOOP\r\nABO"), None);
        assert_eq!(find_abort(b"abor\n"), Some(0..5));
    }

    #[test]
    fn commands() {
        assert_eq!(
            Command::parse(b"user Alice"),
            Ok(Command::User("Alice".into()))
        );
        assert_eq!(
            Command::parse(b"STOR my file.txt"),
            Ok(Command::Stor(b"my file.txt".to_vec()))
        );
        assert_eq!(
            Command::parse(b"LIST -la /in"),
            Ok(Command::List(Some(b"/in".to_vec())))
        );
        assert_eq!(Command::parse(b"LIST -la"), Ok(Command::List(None)));
        assert_eq!(Command::parse(b"REST 1024"), Ok(Command::Rest(1024)));
        assert_eq!(
            Command::parse(b"TYPE L 8"),
            Ok(Command::Type(TransferType::Image))
        );
        assert_eq!(Command::parse(b"EPSV ALL"), Ok(Command::Epsv { all: true }));
        assert_eq!(
            Command::parse(b"SITE CHMOD 640 a b"),
            Ok(Command::SiteChmod(0o640, b"a b".to_vec()))
        );
        assert_eq!(
            Command::parse(b"MFMT 20201231235959 f"),
            Ok(Command::Mfmt(1_609_459_199, b"f".to_vec()))
        );
        assert_eq!(Command::parse(b"PASS"), Ok(Command::Pass(String::new())));
    }

    #[test]
    fn refusals_and_codes() {
        for (line, code) in [
            (&b""[..], 500),
            (b"\xff\xfe", 500),
            (b"FROB x", 500),
            (b"REST -1", 501),
            (b"REST abc", 501),
            (b"RETR", 501),
            (b"TYPE E", 504),
            (b"MODE B", 504),
            (b"PROT S", 504),
            (b"SITE EXEC /bin/sh", 502),
            (b"SITE CPFR /etc/passwd", 502),
            (b"SITE CHMOD 99999 x", 501),
            (b"MFMT 2020 f", 501),
            (b"ACCT x", 502),
        ] {
            let err = Command::parse(line).unwrap_err();
            assert_eq!(err.code(), code, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn pre_login_allow_list() {
        assert!(Command::parse(b"AUTH TLS").unwrap().allowed_before_login());
        assert!(
            !Command::parse(b"SITE CHMOD 600 x")
                .unwrap()
                .allowed_before_login()
        );
        assert!(!Command::parse(b"RETR x").unwrap().allowed_before_login());
        assert!(!Command::parse(b"CWD /").unwrap().allowed_before_login());
    }
}

/// The fuzz target's property on deterministic pseudo-random input (see `fuzz/`).
#[cfg(test)]
mod random_input {
    use crate::{Line, next_line, parse_eprt, parse_port};

    use super::*;

    #[test]
    fn random_lines_never_panic() {
        let words: &[&[u8]] = &[
            b"USER", b"PASS", b"LIST", b"MFMT", b"SITE", b"CHMOD", b"REST", b"EPRT", b"PORT",
            b"TYPE", b"PROT", b"EPSV", b" ", b"-", b"|", b",", b"1", b"9", b"\xff", b"\r\n", b"\n",
            b"x", b"ABOR", b"\xf4", b"\xf2", b"AUTH",
        ];
        let mut state: u64 = 0x0123_4567_89ab_cdef;
        for _ in 0..100_000 {
            let mut line = Vec::new();
            for _ in 0..(state % 10) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                line.extend_from_slice(words[(state % words.len() as u64) as usize]);
            }
            if let Line::Complete(l, used) = next_line(&line) {
                assert!(used <= line.len() && l.len() < used);
            }
            let _ = Command::parse(&line);
            if let Some(range) = find_abort(&line) {
                assert!(range.start < range.end && range.end <= line.len());
            }
            let text = String::from_utf8_lossy(&line);
            let _ = parse_port(&text);
            let _ = parse_eprt(&text);
        }
    }
}
