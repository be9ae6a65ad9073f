//! FTP's control-channel language (RFC 959, 2228, 2389, 2428, 3659, 4217, 7151 and
//! draft-bryan-ftp-hash): splitting the byte stream into lines, parsing commands, and
//! building replies. Nothing else.
//!
//! Lines are capped before they are buffered further ([`next_line`]); arguments that name
//! files stay bytes (the core session decides what a valid name is); reply text can never
//! carry a line break, so a client-chosen name cannot forge a reply.
//!
//! This crate must never do I/O, depend on tokio, or know about files or sessions.

#![forbid(unsafe_code)]

mod address;
mod command;
mod line;
mod reply;

pub use address::{AddressError, format_epsv, format_pasv, parse_eprt, parse_port};
pub use command::{Command, ParseError, Prot, TransferType, find_abort};
pub use line::{Line, MAX_LINE, next_line, strip_telnet};
pub use reply::Reply;
