//! Wharf's shared nouns: the values every other crate agrees on.
//!
//! This crate owns the *meaning* of a client-visible path ([`VirtualPath`]), of an account
//! name ([`AccountName`]), of a permission verb ([`Verb`]) and of a protocol name
//! ([`Protocol`]). Each is validated once, when it is built from untrusted input, so code
//! that holds one never re-checks it.
//!
//! It also holds the text forms every crate writes the same way: lowercase [`hex`], RFC
//! 3339 times ([`rfc3339`]) and text escaped for HTML pages ([`html`]).
//!
//! It must never do I/O, depend on tokio, or know about any protocol's wire format.

#![forbid(unsafe_code)]

mod account;
mod hex;
pub mod html;
mod network;
mod path;
pub mod rfc3339;
mod verb;

pub use account::{AccountName, AccountNameError};
pub use hex::hex;
pub use network::{AddressRules, IpNetwork, NetworkParseError};
pub use path::{MAX_NAME_BYTES, MAX_PATH_BYTES, PathError, VirtualPath};
pub use verb::{Protocol, Verb, VerbParseError};
