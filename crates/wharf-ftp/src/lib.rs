//! Wharf's FTP service: the control-channel state machine and data channels on tokio, every
//! file operation through the core session.
//!
//! This first version serves plain FTP (RFC 959/2428/3659 commands, passive and active
//! data channels). Explicit and implicit TLS come next; until then a service must say
//! `tls = "off"`. Data connections must come from (passive) or go to (active) the control
//! connection's own peer address, so FTP bounce and port stealing are refused.
//!
//! It must never touch a file or the store except through [`wharf_core::Session`] and
//! [`wharf_auth::LocalAuthenticator`].

#![forbid(unsafe_code)]

mod data;
mod server;
mod session;

pub use server::{FtpConfig, FtpService};
