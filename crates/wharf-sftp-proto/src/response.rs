//! Server replies.

use crate::attrs::FileAttrs;
use crate::kind;
use crate::wire::Put;

/// SSH_FX_* status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum StatusCode {
    /// Success.
    Ok = 0,
    /// End of file or of a listing.
    Eof = 1,
    /// No such file.
    NoSuchFile = 2,
    /// Permission denied.
    PermissionDenied = 3,
    /// Generic failure.
    Failure = 4,
    /// Malformed request.
    BadMessage = 5,
    /// Not supported.
    OpUnsupported = 8,
}

/// One entry of a NAME reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    /// The name (a bare name in listings, a full path from REALPATH).
    pub filename: Vec<u8>,
    /// The `ls -l` style line clients print.
    pub longname: Vec<u8>,
    /// Its attributes.
    pub attrs: FileAttrs,
}

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// SSH_FXP_VERSION with extension pairs.
    Version {
        /// Version.
        version: u32,
        /// (name, data) pairs.
        extensions: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// SSH_FXP_STATUS.
    Status {
        /// Request id.
        id: u32,
        /// Code.
        code: StatusCode,
        /// Human-readable message.
        message: String,
    },
    /// SSH_FXP_HANDLE.
    Handle {
        /// Request id.
        id: u32,
        /// Handle bytes.
        handle: Vec<u8>,
    },
    /// SSH_FXP_DATA.
    Data {
        /// Request id.
        id: u32,
        /// Data.
        data: Vec<u8>,
    },
    /// SSH_FXP_NAME.
    Name {
        /// Request id.
        id: u32,
        /// Entries.
        names: Vec<Name>,
    },
    /// SSH_FXP_ATTRS.
    Attrs {
        /// Request id.
        id: u32,
        /// Attributes.
        attrs: FileAttrs,
    },
    /// SSH_FXP_EXTENDED_REPLY with its already-encoded payload.
    ExtendedReply {
        /// Request id.
        id: u32,
        /// Extension-specific bytes.
        data: Vec<u8>,
    },
}

impl Response {
    /// A status reply.
    pub fn status(id: u32, code: StatusCode, message: impl Into<String>) -> Response {
        Response::Status {
            id,
            code,
            message: message.into(),
        }
    }

    /// A success status.
    pub fn ok(id: u32) -> Response {
        Response::status(id, StatusCode::Ok, "OK")
    }

    /// Encodes the reply with its 4-byte length prefix.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(match self {
            Response::Data { data, .. } => data.len() + 13,
            _ => 64,
        });
        out.put_u32(0);
        match self {
            Response::Version {
                version,
                extensions,
            } => {
                out.put_u8(kind::VERSION);
                out.put_u32(*version);
                for (name, data) in extensions {
                    out.put_str(name);
                    out.put_str(data);
                }
            }
            Response::Status { id, code, message } => {
                out.put_u8(kind::STATUS);
                out.put_u32(*id);
                out.put_u32(*code as u32);
                out.put_str(message.as_bytes());
                out.put_str(b"en");
            }
            Response::Handle { id, handle } => {
                out.put_u8(kind::HANDLE);
                out.put_u32(*id);
                out.put_str(handle);
            }
            Response::Data { id, data } => {
                out.put_u8(kind::DATA);
                out.put_u32(*id);
                out.put_str(data);
            }
            Response::Name { id, names } => {
                out.put_u8(kind::NAME);
                out.put_u32(*id);
                out.put_u32(u32::try_from(names.len()).unwrap_or(u32::MAX));
                for name in names {
                    out.put_str(&name.filename);
                    out.put_str(&name.longname);
                    name.attrs.encode(&mut out);
                }
            }
            Response::Attrs { id, attrs } => {
                out.put_u8(kind::ATTRS);
                out.put_u32(*id);
                attrs.encode(&mut out);
            }
            Response::ExtendedReply { id, data } => {
                out.put_u8(kind::EXTENDED_REPLY);
                out.put_u32(*id);
                out.extend_from_slice(data);
            }
        }
        let len = u32::try_from(out.len() - 4).unwrap_or(u32::MAX);
        out[..4].copy_from_slice(&len.to_be_bytes());
        out
    }
}

/// Helpers for building EXTENDED_REPLY payloads.
pub fn put_u64s(values: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 8);
    for v in values {
        out.put_u64(*v);
    }
    out
}

/// Encodes a string then raw bytes (check-file replies).
pub fn put_str_then_raw(name: &[u8], raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + raw.len() + 4);
    out.put_str(name);
    out.extend_from_slice(raw);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Request, RequestBody};

    #[test]
    fn status_encodes_with_length() {
        let bytes = Response::ok(7).encode();
        assert_eq!(&bytes[..4], &((bytes.len() - 4) as u32).to_be_bytes());
        assert_eq!(bytes[4], kind::STATUS);
    }

    #[test]
    fn hostile_lengths_do_not_allocate_or_panic() {
        // OPEN with a path length of 4 GiB but 3 bytes of data.
        let mut p = vec![
            kind::OPEN,
            0,
            0,
            0,
            1,
            0xff,
            0xff,
            0xff,
            0xff,
            b'a',
            b'b',
            b'c',
        ];
        assert!(Request::decode(&p).is_err());
        p.truncate(3);
        assert!(Request::decode(&p).is_err());
        assert!(Request::decode(&[]).is_err());
        assert!(Request::decode(&[250, 0, 0, 0, 1]).is_err());
    }

    #[test]
    fn names_are_bytes() {
        let mut p = vec![kind::STAT, 0, 0, 0, 9, 0, 0, 0, 2, 0xff, 0xfe];
        let r = Request::decode(&p).unwrap();
        assert_eq!(
            r.body,
            RequestBody::Stat {
                path: vec![0xff, 0xfe]
            }
        );
        p.push(0);
        assert!(Request::decode(&p).is_ok());
    }
}

/// The fuzz target's property, run on deterministic pseudo-random input in every test run
/// (the corpus-guided version lives in `fuzz/`).
#[cfg(test)]
mod random_input {
    use crate::{Request, decode_init, kind};

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn decoding_random_and_mutated_packets_never_panics() {
        let mut rng = XorShift(0x5eed_1234_abcd_ef01);
        let seeds: Vec<Vec<u8>> = vec![
            vec![
                kind::OPEN,
                0,
                0,
                0,
                1,
                0,
                0,
                0,
                3,
                b'a',
                b'b',
                b'c',
                0,
                0,
                0,
                0x1a,
                0,
                0,
                0,
                0x0f,
            ],
            vec![
                kind::WRITE,
                0,
                0,
                0,
                2,
                0,
                0,
                0,
                1,
                b'1',
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                2,
                9,
                9,
            ],
            vec![
                kind::EXTENDED,
                0,
                0,
                0,
                3,
                0,
                0,
                0,
                9,
                b'c',
                b'o',
                b'p',
                b'y',
                b'-',
                b'd',
                b'a',
                b't',
                b'a',
            ],
            vec![
                kind::SETSTAT,
                0,
                0,
                0,
                4,
                0,
                0,
                0,
                1,
                b'x',
                0x80,
                0,
                0,
                0x0f,
                0xff,
                0xff,
                0xff,
                0xff,
            ],
        ];
        for round in 0..200_000u32 {
            let mut buf = if round % 2 == 0 {
                let len = (rng.next() % 64) as usize;
                (0..len).map(|_| rng.next() as u8).collect::<Vec<u8>>()
            } else {
                seeds[(rng.next() % seeds.len() as u64) as usize].clone()
            };
            for _ in 0..(rng.next() % 4) {
                if buf.is_empty() {
                    break;
                }
                let i = (rng.next() % buf.len() as u64) as usize;
                buf[i] = rng.next() as u8;
            }
            if let Some(&first) = buf.first() {
                // Bias towards known packet types so decoding goes deep.
                buf[0] = [
                    first,
                    kind::OPEN,
                    kind::EXTENDED,
                    kind::SETSTAT,
                    kind::WRITE,
                ][(rng.next() % 5) as usize];
            }
            let _ = Request::decode(&buf);
            let _ = Request::peek_id(&buf);
            let _ = decode_init(&buf);
        }
    }
}
