//! Wharf's FTP service: the control-channel state machine and data channels on tokio, every
//! file operation through the core session.
//!
//! Plain FTP, explicit FTPS (`AUTH TLS`, RFC 4217) and implicit FTPS, with a per-service TLS
//! policy. Data connections must come from (passive) or go to (active) the control
//! connection's own peer address, so FTP bounce and port stealing are refused; a TLS data
//! connection must resume the control connection's TLS session.
//!
//! It must never touch a file or the store except through [`wharf_core::Session`] and
//! [`wharf_auth::Authenticator`].

#![forbid(unsafe_code)]

mod data;
mod server;
mod session;
mod stream;
mod tickets;
mod tls;

pub use server::{FtpConfig, FtpService, TlsMode};
