//! Wharf's core: the one choke point between every protocol and the files.
//!
//! A protocol front-end authenticates a connection (through `wharf-auth`), receives an
//! [`Account`], and opens a [`Session`] for it. From then on the front-end is a thin
//! translator: every listing, download, upload, rename or attribute change is a method of
//! [`Session`], which normalises the path, checks the permission rules, calls the [`vfs`]
//! backend (jailed to the account's home), computes SHA-256 while bytes stream, and emits
//! the audit [`events`]. A fix made here fixes every protocol.
//!
//! This crate must never speak a wire protocol, open a socket, or touch the store directly:
//! it only sees the [`Account`] it is given and the [`EventBus`] it writes to.

#![forbid(unsafe_code)]

pub mod account;
pub mod closing;
pub mod dav_state;
pub mod error;
pub mod events;
pub mod live;
pub mod naming;
pub mod permissions;
pub mod session;
pub mod upload;
pub mod vfs;
pub mod web_sessions;

pub use account::{Account, UploadMode};
pub use closing::ClosingRecord;
pub use error::{CoreError, ErrorKind};
pub use events::{
    Event, EventBus, EventKind, EventObserver, NotDurable, Outcome, WriterProgress, shown_name,
};
pub use live::{Cut, Live};
pub use naming::UploadNaming;
pub use permissions::{Effect, PathPattern, Rule, RuleError, RuleSet};
pub use session::{DigestHasher, DigestKind, Session, SessionInfo};
pub use upload::{Download, Upload, UploadOpen, WriteMode};
pub use vfs::{Attrs, DirEntry, FileKind, Metadata, Vfs, VfsStats};
