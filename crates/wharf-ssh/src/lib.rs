//! Wharf's SSH service: the russh transport, our own SFTP v3 engine and SCP, all through the
//! core session.
//!
//! This crate owns the SSH side of the contract: algorithm policy (modern only, no
//! compression), authentication callbacks bridged to `wharf-auth`, connection limits and
//! timeouts, and the routing of channels: the `sftp` subsystem to [`sftp`], `scp -t/-f` and
//! `sha256sum` to in-process handlers. No shell ever runs; every other request is refused
//! and recorded.
//!
//! It must never touch a file or the store except through [`wharf_core::Session`] and
//! [`wharf_auth::Authenticator`].

#![forbid(unsafe_code)]

mod algorithms;
pub mod exec;
pub mod input;
pub mod scp;
mod server;
pub mod sftp;

pub use algorithms::{AlgorithmError, Algorithms, Profile};
pub use russh::keys::PrivateKey;
pub use server::{SshConfig, SshService};
