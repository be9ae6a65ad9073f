//! Permission verbs and protocol names.

use std::fmt;
use std::str::FromStr;

/// An operation that a permission rule allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    /// List a folder's entries or look at an entry's attributes.
    List,
    /// Download a file's content.
    Read,
    /// Create a new file.
    Write,
    /// Replace the content of an existing file.
    Overwrite,
    /// Add to the end of an existing file, or resume an upload.
    Append,
    /// Remove a file.
    Delete,
    /// Rename or move an entry (checked on both the source and the destination).
    Rename,
    /// Create a folder.
    Mkdir,
    /// Remove a folder.
    Rmdir,
    /// Change attributes (permissions bits, times).
    Setattr,
}

impl Verb {
    /// Every verb, in documentation order.
    pub const ALL: [Verb; 10] = [
        Verb::List,
        Verb::Read,
        Verb::Write,
        Verb::Overwrite,
        Verb::Append,
        Verb::Delete,
        Verb::Rename,
        Verb::Mkdir,
        Verb::Rmdir,
        Verb::Setattr,
    ];

    /// The verb's name as written in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::List => "list",
            Verb::Read => "read",
            Verb::Write => "write",
            Verb::Overwrite => "overwrite",
            Verb::Append => "append",
            Verb::Delete => "delete",
            Verb::Rename => "rename",
            Verb::Mkdir => "mkdir",
            Verb::Rmdir => "rmdir",
            Verb::Setattr => "setattr",
        }
    }
}

/// A verb name that is not one of [`Verb::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown permission {0:?}: use list, read, write, overwrite, append, delete, rename, mkdir, rmdir, setattr or all"
)]
pub struct VerbParseError(pub String);

impl FromStr for Verb {
    type Err = VerbParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Verb::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| VerbParseError(s.chars().take(40).collect()))
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The protocol a session speaks; a field of every audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// SSH transport before a subsystem is chosen.
    Ssh,
    /// SFTP over SSH.
    Sftp,
    /// SCP over SSH.
    Scp,
    /// Plain FTP.
    Ftp,
    /// FTP over TLS (explicit or implicit).
    Ftps,
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
    /// WebDAV over HTTP or HTTPS.
    Webdav,
    /// A command-line or Manager action, not a network session.
    Admin,
}

impl Protocol {
    /// Every protocol an account may be allowed to use.
    pub const FILE_PROTOCOLS: [Protocol; 7] = [
        Protocol::Sftp,
        Protocol::Scp,
        Protocol::Ftp,
        Protocol::Ftps,
        Protocol::Http,
        Protocol::Https,
        Protocol::Webdav,
    ];

    /// The protocol's name as written in configuration and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Ssh => "ssh",
            Protocol::Sftp => "sftp",
            Protocol::Scp => "scp",
            Protocol::Ftp => "ftp",
            Protocol::Ftps => "ftps",
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Webdav => "webdav",
            Protocol::Admin => "admin",
        }
    }
}

impl FromStr for Protocol {
    type Err = VerbParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Protocol::Ssh, Protocol::Admin]
            .into_iter()
            .chain(Protocol::FILE_PROTOCOLS)
            .find(|p| p.as_str() == s)
            .ok_or_else(|| VerbParseError(s.chars().take(40).collect()))
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
