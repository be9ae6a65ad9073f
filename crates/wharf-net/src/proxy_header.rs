//! The PROXY protocol header (HAProxy's, versions 1 and 2) a load balancer sends before a
//! client's first byte, naming the client's address: parsed from bytes, nothing else.
//!
//! [`parse`] is given the bytes read so far and says whether they hold a whole header (and
//! how many bytes it took), could still become one, or never will. It never asks for more
//! than [`MAX_HEADER`] bytes: a version 1 line is at most [`V1_MAX`] bytes with its CRLF,
//! and a version 2 header's address-and-TLV block at most [`V2_MAX_BLOCK`]. Bytes that
//! cannot start a header (an SSH banner, a TLS ClientHello, an HTTP request) are refused at
//! the first byte that differs, so a client sent without a header is refused at once.
//!
//! Version 2 `LOCAL` (a balancer's own health check) and version 1 `UNKNOWN` name no client:
//! they give [`Header::Local`] and the caller keeps the socket's address. TLVs are skipped,
//! each one checked to end inside the block. This module must never do I/O, allocate from
//! a length it was sent, or panic on any input (a fuzz target holds it to that).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest version 1 header, CRLF included (the protocol's own limit).
pub const V1_MAX: usize = 107;
/// The longest version 2 address-and-TLV block accepted. The addresses need at most 216
/// bytes (two Unix paths); HAProxy's TLVs (ALPN, authority, unique id, TLS details) fit well
/// within the rest.
pub const V2_MAX_BLOCK: usize = 1024;
/// The longest header of either version.
pub const MAX_HEADER: usize = V2_FIXED + V2_MAX_BLOCK;

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V2_FIXED: usize = 16;

/// Whom a header names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A client relayed by the balancer: its address, and the address it connected to.
    Proxied {
        /// The client.
        source: SocketAddr,
        /// The address the client reached (the balancer's front end).
        destination: SocketAddr,
    },
    /// The balancer speaking for itself (v2 `LOCAL`, v1 `UNKNOWN`, v2 `AF_UNSPEC`): the
    /// connection's own address stands.
    Local,
}

/// A whole header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    /// 1 or 2.
    pub version: u8,
    /// Whom it names.
    pub header: Header,
    /// Bytes it took; what follows belongs to the client.
    pub length: usize,
}

/// What the bytes so far amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A header may still follow: every byte given belongs to it, so read more.
    Incomplete,
    /// A whole header, in the first `length` bytes.
    Complete(Parsed),
}

/// Why the bytes are not a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The first bytes are neither `PROXY ` nor the version 2 signature.
    #[error("the connection did not start with a PROXY protocol header")]
    Missing,
    /// Longer than the limit of its version.
    #[error("PROXY protocol header longer than its limit")]
    TooLong,
    /// A version 1 line that does not follow the grammar.
    #[error("malformed PROXY protocol v1 header")]
    MalformedV1,
    /// A version 2 header with a wrong version, command, or block.
    #[error("malformed PROXY protocol v2 header")]
    MalformedV2,
    /// A version 2 header for datagrams or Unix sockets, meaningless on a TCP service.
    #[error("PROXY protocol v2 header for an unsupported transport")]
    Unsupported,
}

/// Reads a header from the start of `bytes`.
pub fn parse(bytes: &[u8]) -> Result<Progress, HeaderError> {
    let head = &bytes[..bytes.len().min(V2_SIGNATURE.len())];
    if V2_SIGNATURE.starts_with(head) && !head.is_empty() {
        return parse_v2(bytes);
    }
    let head = &bytes[..bytes.len().min(V1_PREFIX.len())];
    if V1_PREFIX.starts_with(head) {
        return parse_v1(bytes);
    }
    Err(HeaderError::Missing)
}

fn parse_v1(bytes: &[u8]) -> Result<Progress, HeaderError> {
    let window = &bytes[..bytes.len().min(V1_MAX)];
    let Some(end) = window.iter().position(|&b| b == b'\n') else {
        if bytes.len() >= V1_MAX {
            return Err(HeaderError::TooLong);
        }
        // A CR may only come right before the LF.
        if window
            .iter()
            .position(|&b| b == b'\r')
            .is_some_and(|at| at + 1 < window.len())
        {
            return Err(HeaderError::MalformedV1);
        }
        return Ok(Progress::Incomplete);
    };
    if end < V1_PREFIX.len() || window[end - 1] != b'\r' {
        return Err(HeaderError::MalformedV1);
    }
    let line = std::str::from_utf8(&window[V1_PREFIX.len()..end - 1])
        .map_err(|_| HeaderError::MalformedV1)?;
    let length = end + 1;
    let fields: Vec<&str> = line.split(' ').collect();
    let header = match fields.as_slice() {
        ["UNKNOWN", ..] => Header::Local,
        [family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let ip = |text: &str| -> Result<IpAddr, HeaderError> {
                let ip = if *family == "TCP4" {
                    IpAddr::V4(
                        text.parse::<Ipv4Addr>()
                            .map_err(|_| HeaderError::MalformedV1)?,
                    )
                } else {
                    IpAddr::V6(
                        text.parse::<Ipv6Addr>()
                            .map_err(|_| HeaderError::MalformedV1)?,
                    )
                };
                Ok(ip)
            };
            Header::Proxied {
                source: SocketAddr::new(ip(src)?, port(sport)?),
                destination: SocketAddr::new(ip(dst)?, port(dport)?),
            }
        }
        _ => return Err(HeaderError::MalformedV1),
    };
    Ok(Progress::Complete(Parsed {
        version: 1,
        header,
        length,
    }))
}

/// A v1 port: 1 to 5 decimal digits, at most 65535.
fn port(text: &str) -> Result<u16, HeaderError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HeaderError::MalformedV1);
    }
    text.parse().map_err(|_| HeaderError::MalformedV1)
}

fn parse_v2(bytes: &[u8]) -> Result<Progress, HeaderError> {
    if bytes.len() < V2_FIXED {
        // The fixed part is checked as it arrives, so a wrong version is refused early.
        if let Some(&ver_cmd) = bytes.get(12) {
            check_version(ver_cmd)?;
        }
        return Ok(Progress::Incomplete);
    }
    let ver_cmd = bytes[12];
    check_version(ver_cmd)?;
    let family = bytes[13];
    let block_len = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    if block_len > V2_MAX_BLOCK {
        return Err(HeaderError::TooLong);
    }
    let length = V2_FIXED + block_len;
    let Some(block) = bytes.get(V2_FIXED..length) else {
        return Ok(Progress::Incomplete);
    };
    let local = ver_cmd & 0x0f == 0;
    let (addresses, header) = match (local, family >> 4, family & 0x0f) {
        // LOCAL: whatever the block holds, the connection's own address stands.
        (true, _, _) => (block.len(), Header::Local),
        (false, 0, _) => (0, Header::Local),
        (false, 1, 1) => {
            let a = block.get(..12).ok_or(HeaderError::MalformedV2)?;
            let ip = |at: usize| IpAddr::V4(Ipv4Addr::new(a[at], a[at + 1], a[at + 2], a[at + 3]));
            let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
            (
                12,
                Header::Proxied {
                    source: SocketAddr::new(ip(0), port(8)),
                    destination: SocketAddr::new(ip(4), port(10)),
                },
            )
        }
        (false, 2, 1) => {
            let a = block.get(..36).ok_or(HeaderError::MalformedV2)?;
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&a[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
            (
                36,
                Header::Proxied {
                    source: SocketAddr::new(ip(0), port(32)),
                    destination: SocketAddr::new(ip(16), port(34)),
                },
            )
        }
        (false, 1..=3, 0..=2) => return Err(HeaderError::Unsupported),
        _ => return Err(HeaderError::MalformedV2),
    };
    if !local {
        skip_tlvs(&block[addresses..])?;
    }
    Ok(Progress::Complete(Parsed {
        version: 2,
        header,
        length,
    }))
}

fn check_version(ver_cmd: u8) -> Result<(), HeaderError> {
    if ver_cmd >> 4 != 2 || ver_cmd & 0x0f > 1 {
        return Err(HeaderError::MalformedV2);
    }
    Ok(())
}

/// Walks the TLVs after the addresses: each must end inside the block. Their values are
/// not used.
fn skip_tlvs(mut rest: &[u8]) -> Result<(), HeaderError> {
    while !rest.is_empty() {
        let [_kind, hi, lo, tail @ ..] = rest else {
            return Err(HeaderError::MalformedV2);
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        rest = tail.get(len..).ok_or(HeaderError::MalformedV2)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(bytes: &[u8]) -> Parsed {
        match parse(bytes) {
            Ok(Progress::Complete(p)) => p,
            other => panic!("{other:?} for {bytes:?}"),
        }
    }

    fn sock(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn v2(ver_cmd: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(ver_cmd);
        h.push(family);
        h.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
        h.extend_from_slice(block);
        h
    }

    fn v4_block() -> Vec<u8> {
        let mut b = vec![192, 0, 2, 7, 10, 0, 0, 1];
        b.extend_from_slice(&40000u16.to_be_bytes());
        b.extend_from_slice(&2222u16.to_be_bytes());
        b
    }

    #[test]
    fn v1_names_the_client_over_ipv4_and_ipv6() {
        let line = b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 2222\r\nSSH-2.0-x\r\n";
        let p = complete(line);
        assert_eq!(p.version, 1);
        assert_eq!(p.length, line.len() - b"SSH-2.0-x\r\n".len());
        assert_eq!(
            p.header,
            Header::Proxied {
                source: sock("192.0.2.7:40000"),
                destination: sock("10.0.0.1:2222")
            }
        );
        let p = complete(b"PROXY TCP6 2001:db8::7 ::1 65535 21\r\n");
        assert_eq!(
            p.header,
            Header::Proxied {
                source: sock("[2001:db8::7]:65535"),
                destination: sock("[::1]:21")
            }
        );
        assert_eq!(complete(b"PROXY UNKNOWN\r\n").header, Header::Local);
        assert_eq!(
            complete(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").header,
            Header::Local
        );
    }

    #[test]
    fn v1_waits_for_its_line_and_no_longer_than_its_limit() {
        let line = b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 2222\r\n";
        for cut in 1..line.len() {
            assert_eq!(parse(&line[..cut]), Ok(Progress::Incomplete), "cut {cut}");
        }
        let mut long = b"PROXY TCP6 ".to_vec();
        long.resize(V1_MAX, b'1');
        assert_eq!(parse(&long), Err(HeaderError::TooLong));
        assert_eq!(parse(&long[..V1_MAX - 1]), Ok(Progress::Incomplete));
        // 107 bytes exactly, CRLF included, is allowed.
        let mut widest = b"PROXY UNKNOWN ".to_vec();
        widest.resize(V1_MAX - 2, b'x');
        widest.extend_from_slice(b"\r\n");
        assert_eq!(complete(&widest).length, V1_MAX);
    }

    #[test]
    fn v1_refuses_what_breaks_the_grammar() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 2222\n"[..],
            b"PROXY TCP4 192.0.2.7 10.0.0.1 40000\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 2222 9\r\n",
            b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",
            b"PROXY TCP6 192.0.2.7 ::1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 -1 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 +1 2\r\n",
            b"PROXY TCP4  192.0.2.7 10.0.0.1 1 2\r\n",
            b"PROXY UDP4 192.0.2.7 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2\r\r\n",
            b"PROXY \r\n",
            b"PROXY TCP4 \xff 10.0.0.1 1 2\r\n",
        ] {
            assert_eq!(parse(bad), Err(HeaderError::MalformedV1), "{bad:?}");
        }
        assert_eq!(parse(b"PROXY TCP4\rX"), Err(HeaderError::MalformedV1));
    }

    #[test]
    fn anything_else_is_refused_at_the_first_byte_that_differs() {
        assert_eq!(parse(b"SSH-2.0-OpenSSH_9.6\r\n"), Err(HeaderError::Missing));
        assert_eq!(parse(b"\x16\x03\x01\x02\x00"), Err(HeaderError::Missing));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(HeaderError::Missing));
        assert_eq!(parse(b"PROXX"), Err(HeaderError::Missing));
        assert_eq!(parse(b"\r\n\r\n\0\r\nQUIX"), Err(HeaderError::Missing));
        assert_eq!(parse(b"P"), Ok(Progress::Incomplete));
        assert_eq!(parse(b"\r\n"), Ok(Progress::Incomplete));
        assert_eq!(parse(b""), Ok(Progress::Incomplete));
    }

    #[test]
    fn v2_names_the_client_and_skips_tlvs() {
        let mut block = v4_block();
        // ALPN and a NOOP TLV, as HAProxy may add.
        block.extend_from_slice(&[0x01, 0, 2, b'h', b'2', 0x04, 0, 0]);
        let mut bytes = v2(0x21, 0x11, &block);
        let header_len = bytes.len();
        bytes.extend_from_slice(b"\x16\x03\x01");
        let p = complete(&bytes);
        assert_eq!(p.version, 2);
        assert_eq!(p.length, header_len);
        assert_eq!(
            p.header,
            Header::Proxied {
                source: sock("192.0.2.7:40000"),
                destination: sock("10.0.0.1:2222")
            }
        );
        for cut in 0..header_len {
            assert_eq!(parse(&bytes[..cut]), Ok(Progress::Incomplete), "cut {cut}");
        }

        let mut block = Vec::new();
        block.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        block.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        block.extend_from_slice(&50000u16.to_be_bytes());
        block.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(
            complete(&v2(0x21, 0x21, &block)).header,
            Header::Proxied {
                source: sock("[2001:db8::7]:50000"),
                destination: sock("[::1]:443")
            }
        );
    }

    #[test]
    fn v2_local_and_unspec_keep_the_connections_address() {
        assert_eq!(complete(&v2(0x20, 0x00, &[])).header, Header::Local);
        // LOCAL with an address block: the block is skipped, not believed.
        assert_eq!(complete(&v2(0x20, 0x11, &v4_block())).header, Header::Local);
        assert_eq!(complete(&v2(0x21, 0x00, &[])).header, Header::Local);
    }

    #[test]
    fn v2_refuses_bad_versions_short_blocks_overruns_and_oversized_blocks() {
        assert_eq!(
            parse(&v2(0x11, 0x11, &v4_block())),
            Err(HeaderError::MalformedV2)
        );
        assert_eq!(
            parse(&v2(0x22, 0x11, &v4_block())),
            Err(HeaderError::MalformedV2)
        );
        // The version is refused before the rest arrives.
        assert_eq!(
            parse(&v2(0x31, 0x11, &v4_block())[..13]),
            Err(HeaderError::MalformedV2)
        );
        assert_eq!(
            parse(&v2(0x21, 0x11, &v4_block()[..11])),
            Err(HeaderError::MalformedV2)
        );
        assert_eq!(
            parse(&v2(0x21, 0x21, &[0; 35])),
            Err(HeaderError::MalformedV2)
        );
        let mut overrun = v4_block();
        overrun.extend_from_slice(&[0x05, 0, 9, 1]);
        assert_eq!(
            parse(&v2(0x21, 0x11, &overrun)),
            Err(HeaderError::MalformedV2)
        );
        let mut dangling = v4_block();
        dangling.push(0x05);
        assert_eq!(
            parse(&v2(0x21, 0x11, &dangling)),
            Err(HeaderError::MalformedV2)
        );
        assert_eq!(
            parse(&v2(0x21, 0x12, &v4_block())),
            Err(HeaderError::Unsupported)
        );
        assert_eq!(
            parse(&v2(0x21, 0x31, &[0; 216])),
            Err(HeaderError::Unsupported)
        );
        assert_eq!(parse(&v2(0x21, 0x41, &[])), Err(HeaderError::MalformedV2));
        // The length is judged from the fixed part alone, before the block is read.
        let mut huge = v2(0x21, 0x11, &[]);
        huge[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(parse(&huge), Err(HeaderError::TooLong));
        let widest = v2(0x20, 0x00, &[0; V2_MAX_BLOCK]);
        assert_eq!(complete(&widest).length, MAX_HEADER);
    }
}

/// The fuzz target's property on deterministic pseudo-random input (see `fuzz/`).
#[cfg(test)]
mod random_input {
    use super::*;

    #[test]
    fn random_headers_never_panic_and_never_overreach() {
        let words: &[&[u8]] = &[
            b"PROXY ",
            b"TCP4 ",
            b"TCP6 ",
            b"UNKNOWN",
            b"192.0.2.1 ",
            b"::1 ",
            b"65535 ",
            b"1 ",
            b"\r\n",
            b"\n",
            b"\r",
            b" ",
            V2_SIGNATURE,
            b"\x20",
            b"\x21",
            b"\x11",
            b"\x21",
            b"\x00\x0c",
            b"\x00\x24",
            b"\xff\xff",
            b"\x00",
            b"\x01\x00\x02h2",
            b"\xff",
        ];
        let mut state: u64 = 0x0123_4567_89ab_cdef;
        for _ in 0..200_000 {
            let mut data = Vec::new();
            for _ in 0..(state % 12) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                data.extend_from_slice(words[(state % words.len() as u64) as usize]);
            }
            if let Ok(Progress::Complete(parsed)) = parse(&data) {
                assert!(parsed.length <= data.len() && parsed.length <= MAX_HEADER);
                assert!(parsed.version == 2 || parsed.length <= V1_MAX);
                assert_eq!(
                    parse(&data[..parsed.length]),
                    Ok(Progress::Complete(parsed))
                );
            }
        }
    }
}
