//! Client-side transfers: Wharf fetches files from its partners' servers and delivers files
//! to them itself, on a schedule, on an event, or by hand, and never loses or doubles one.
//!
//! A [`Location`] is somewhere files are (a local folder, an SFTP server...), reached
//! through an [`Endpoint`]; a [`Transfer`] copies the files of one location's folder to
//! another's. A run ([`run`]) lists the source, records each file version in the store,
//! and moves each one through the store's states (`seen` → `copying` → `copied` →
//! `delivered` → `done`), writing every state before relying on it: a file is written
//! under a temporary name, verified, then renamed, and a run cut off at any point (a
//! `kill -9`, a lost connection) resumes from the row without a second copy under the final
//! name and without losing the source. One node of a cluster runs a transfer at a time,
//! holding its lease in the store ([`scheduler`]).
//!
//! Every outcome is a 6xxxx audit event, recorded through the same [`wharf_handlers::Recorder`]
//! as the handlers' outcomes, before the store moves on.
//!
//! This crate must never serve a client, never write a secret into an event or a log, and
//! never trust a server it was not told to trust: unknown host keys and certificates are
//! refused. Local files are reached only through the core's jail ([`wharf_core::vfs`]).

#![forbid(unsafe_code)]

pub mod cron;
mod endpoint;
mod ftp;
mod local;
mod pace;
pub mod run;
pub mod scheduler;
mod sftp;
pub mod spec;
pub mod timed;
pub mod tls;
mod webdav;

pub use endpoint::{
    Download, Endpoint, EndpointError, Entry, Failure, Item, Listing, LocalPlace, Upload,
};
pub use spec::{
    After, DavLogin, Existing, FtpSecurity, HostKeys, Location, LocationKind, SftpLogin, Transfer,
    Trigger, Verify,
};

/// The path `rel` below `folder` on a location (both '/'-separated; the result absolute).
pub fn join(folder: &str, rel: &str) -> String {
    let folder = folder.trim_end_matches('/');
    let rel = rel.trim_start_matches('/');
    match (folder.is_empty(), rel.is_empty()) {
        (true, true) => "/".to_owned(),
        (true, false) => format!("/{rel}"),
        (false, true) => folder.to_owned(),
        (false, false) => format!("{folder}/{rel}"),
    }
}

/// The folder part of a '/'-separated path (`""` for a bare name).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[..i],
        None => "",
    }
}

/// The name part of a '/'-separated path.
pub fn file_name(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_without_doubled_or_missing_slashes() {
        assert_eq!(join("/", "a.xml"), "/a.xml");
        assert_eq!(join("/in/", "/sub/a.xml"), "/in/sub/a.xml");
        assert_eq!(join("in", "a"), "in/a");
        assert_eq!(join("", ""), "/");
        assert_eq!(parent("/in/a.xml"), "/in");
        assert_eq!(file_name("/in/a.xml"), "a.xml");
        assert_eq!(file_name("a.xml"), "a.xml");
    }
}
