//! SFTP version 3 (draft-ietf-secsh-filexfer-02) and the OpenSSH extensions Wharf serves:
//! packet decoding and encoding, nothing else.
//!
//! Names and handles are byte strings (`Vec<u8>`): SFTP v3 does not promise UTF-8, and a
//! codec that decodes lossily corrupts names. Every length read from the wire is checked
//! against the bytes actually present before anything is allocated, so a hostile length
//! costs nothing. Decoding never panics (a fuzz target holds it to that).
//!
//! This crate must never do I/O, depend on tokio, or know about files or sessions.

#![forbid(unsafe_code)]

mod attrs;
mod request;
mod response;
mod wire;

pub use attrs::FileAttrs;
pub use request::{Extended, OpenFlags, Request, RequestBody, decode_init};
pub use response::{Name, Response, StatusCode, put_str_then_raw, put_u64s};
pub use wire::{DecodeError, Reader};

/// The protocol version Wharf speaks.
pub const VERSION: u32 = 3;

/// Largest SFTP packet Wharf accepts (payload after the 4-byte length), as OpenSSH does.
pub const MAX_PACKET: u32 = 256 * 1024;
/// Largest READ or WRITE data Wharf serves or accepts in one request.
pub const MAX_DATA: u32 = 255 * 1024;

/// Packet type numbers.
pub mod kind {
    #![allow(missing_docs)]
    pub const INIT: u8 = 1;
    pub const VERSION: u8 = 2;
    pub const OPEN: u8 = 3;
    pub const CLOSE: u8 = 4;
    pub const READ: u8 = 5;
    pub const WRITE: u8 = 6;
    pub const LSTAT: u8 = 7;
    pub const FSTAT: u8 = 8;
    pub const SETSTAT: u8 = 9;
    pub const FSETSTAT: u8 = 10;
    pub const OPENDIR: u8 = 11;
    pub const READDIR: u8 = 12;
    pub const REMOVE: u8 = 13;
    pub const MKDIR: u8 = 14;
    pub const RMDIR: u8 = 15;
    pub const REALPATH: u8 = 16;
    pub const STAT: u8 = 17;
    pub const RENAME: u8 = 18;
    pub const READLINK: u8 = 19;
    pub const SYMLINK: u8 = 20;
    pub const STATUS: u8 = 101;
    pub const HANDLE: u8 = 102;
    pub const DATA: u8 = 103;
    pub const NAME: u8 = 104;
    pub const ATTRS: u8 = 105;
    pub const EXTENDED: u8 = 200;
    pub const EXTENDED_REPLY: u8 = 201;
}
