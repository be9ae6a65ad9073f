//! The one error type that sessions return to front-ends.
//!
//! Every front-end maps [`ErrorKind`] onto its own reply (SSH_FX_*, FTP reply codes, HTTP
//! statuses), so the kinds are few and protocol-neutral. The message is safe to show to
//! the client: it never contains a host path outside the home folder.

use wharf_types::PathError;

/// What went wrong, in terms every protocol can express.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No such file or folder.
    NotFound,
    /// A permission rule, the jail, or the operating system refused the operation.
    PermissionDenied,
    /// The destination already exists.
    AlreadyExists,
    /// The folder is not empty.
    NotEmpty,
    /// A folder was expected.
    NotADirectory,
    /// A file was expected.
    IsADirectory,
    /// The path was refused before it reached the filesystem.
    InvalidPath,
    /// The operation is not supported by this backend or in this mode.
    Unsupported,
    /// A limit was reached (handles, sizes, quota).
    LimitReached,
    /// The offset a client asked to continue from is not where the file ends.
    InvalidOffset,
    /// Any other failure; the message says which.
    Failure,
}

/// An error returned by [`crate::Session`] and the [`crate::vfs`] backends.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct CoreError {
    /// The protocol-neutral kind.
    pub kind: ErrorKind,
    /// A message safe to show to the client.
    pub message: String,
    /// A symbolic link stood where the jail follows none (see [`crate::vfs::jail`]).
    link: bool,
}

impl CoreError {
    /// Builds an error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CoreError {
            kind,
            message: message.into(),
            link: false,
        }
    }

    /// True when the operation met a symbolic link, which the jail never follows: the
    /// session then finds the path the link leads to and decides the rules there.
    pub fn is_link(&self) -> bool {
        self.link
    }

    /// A permission refusal.
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PermissionDenied, message)
    }

    /// Maps an operating-system error onto a kind, keeping host paths out of the message.
    pub fn from_io(err: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match err.kind() {
            K::NotFound => ErrorKind::NotFound,
            K::PermissionDenied => ErrorKind::PermissionDenied,
            K::AlreadyExists => ErrorKind::AlreadyExists,
            K::DirectoryNotEmpty => ErrorKind::NotEmpty,
            K::NotADirectory => ErrorKind::NotADirectory,
            K::IsADirectory => ErrorKind::IsADirectory,
            K::Unsupported => ErrorKind::Unsupported,
            K::StorageFull | K::QuotaExceeded => ErrorKind::LimitReached,
            _ => match err.raw_os_error() {
                // EXDEV from RESOLVE_BENEATH (the path tried to leave the root) and ELOOP
                // from a symlink the jail does not follow.
                Some(18) | Some(40) => ErrorKind::PermissionDenied,
                _ => ErrorKind::Failure,
            },
        };
        let message = match kind {
            ErrorKind::NotFound => "no such file or folder".to_owned(),
            ErrorKind::PermissionDenied => "permission denied".to_owned(),
            ErrorKind::AlreadyExists => "already exists".to_owned(),
            ErrorKind::NotEmpty => "folder not empty".to_owned(),
            ErrorKind::NotADirectory => "not a folder".to_owned(),
            ErrorKind::IsADirectory => "is a folder".to_owned(),
            ErrorKind::Unsupported => "operation not supported".to_owned(),
            ErrorKind::LimitReached => "no space left".to_owned(),
            _ => format!("operation failed: {}", io_reason(err)),
        };
        CoreError {
            kind,
            message,
            link: err.raw_os_error() == Some(40),
        }
    }
}

/// The OS's reason without the path it may carry.
fn io_reason(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code).to_string(),
        None => err.kind().to_string(),
    }
}

impl From<std::io::Error> for CoreError {
    fn from(err: std::io::Error) -> Self {
        CoreError::from_io(&err)
    }
}

impl From<rustix::io::Errno> for CoreError {
    fn from(err: rustix::io::Errno) -> Self {
        CoreError::from_io(&std::io::Error::from(err))
    }
}

impl From<PathError> for CoreError {
    fn from(err: PathError) -> Self {
        CoreError::new(ErrorKind::InvalidPath, err.to_string())
    }
}
