//! What a run asks of a location, whatever its protocol: list, read, write, rename, remove,
//! and a digest where the peer offers one.
//!
//! Paths are absolute and '/'-separated on the location (for a local folder, inside it).
//! Writes go to the name given and nowhere else: choosing temporary names and renaming is
//! the run's work, so every protocol delivers the same way.

use async_trait::async_trait;

/// What kind of failure a location operation met: it decides what the run does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The path does not exist.
    Missing,
    /// The destination name is taken.
    Exists,
    /// The location cannot be used at all: unreachable, the login refused, a host key or
    /// certificate that is not the trusted one. The run stops and is tried again later.
    Location,
    /// This operation failed; another attempt may work.
    Retry,
    /// Another attempt would fail the same way.
    Permanent,
}

/// A location operation's failure; its message never holds a secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct EndpointError {
    /// What kind.
    pub kind: Failure,
    /// What happened.
    pub message: String,
}

impl EndpointError {
    /// A failure of `kind`.
    pub fn new(kind: Failure, message: impl Into<String>) -> EndpointError {
        EndpointError {
            kind,
            message: message.into(),
        }
    }

    /// A failure worth another attempt.
    pub fn retry(message: impl Into<String>) -> EndpointError {
        EndpointError::new(Failure::Retry, message)
    }

    /// The location cannot be used.
    pub fn location(message: impl Into<String>) -> EndpointError {
        EndpointError::new(Failure::Location, message)
    }
}

/// A file found by a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its path below the listed folder (`a.xml`, `sub/b.xml`).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, µs since the Unix epoch (whole seconds on most servers).
    pub mtime_us: i64,
}

/// One entry of a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Its name, as the location gives it (checked by the listing and the run).
    pub name: String,
    /// A folder (else a regular file).
    pub folder: bool,
    /// Size in bytes (files).
    pub size: u64,
    /// Last modification, µs since the Unix epoch.
    pub mtime_us: i64,
}

/// What a listing found.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// The regular files (links and special files are not listed).
    pub files: Vec<Entry>,
    /// False when the listing stopped at its limit: files past it were not seen.
    pub complete: bool,
}

/// A file being read, from its start.
#[async_trait]
pub trait Download: Send {
    /// The next bytes, at most about `max`; empty at the end of the file.
    async fn read(&mut self, max: usize) -> Result<Vec<u8>, EndpointError>;
}

/// A file being written. Nothing is kept of it unless [`Upload::finish`] succeeds.
#[async_trait]
pub trait Upload: Send {
    /// Appends `data`.
    async fn write(&mut self, data: &[u8]) -> Result<(), EndpointError>;
    /// Makes everything written durable and closes the file.
    async fn finish(self: Box<Self>) -> Result<(), EndpointError>;
    /// Gives the file up: what was written is removed where the location allows it.
    async fn abort(self: Box<Self>);
}

/// One connection (or handle) to a location.
#[async_trait]
pub trait Endpoint: Send + Sync {
    /// The entries of one folder (its regular files and subfolders; links and special
    /// files left out), at most `cap`.
    async fn read_folder(&self, folder: &str, cap: usize) -> Result<Vec<Item>, EndpointError>;
    /// The regular files in `folder` (and below it when `recursive`, at most
    /// [`crate::run::MAX_DEPTH`] deep), at most `limit`. A subfolder that cannot be read
    /// is left out (the listing is then not complete); the folder itself must be read.
    async fn list(
        &self,
        folder: &str,
        recursive: bool,
        limit: usize,
    ) -> Result<Listing, EndpointError> {
        let mut listing = Listing {
            files: Vec::new(),
            complete: true,
        };
        let mut pending = vec![(folder.to_owned(), String::new(), 0usize)];
        while let Some((dir, prefix, depth)) = pending.pop() {
            let room = limit.saturating_sub(listing.files.len()).saturating_add(1);
            let items = match self.read_folder(&dir, room.max(1024)).await {
                Ok(items) => items,
                Err(e) if depth == 0 => return Err(e),
                Err(e) => {
                    tracing::warn!(folder = ?dir, error = ?e.message, "a subfolder could not be listed");
                    listing.complete = false;
                    continue;
                }
            };
            for item in items {
                if item.name.is_empty()
                    || item.name == "."
                    || item.name == ".."
                    || item.name.contains('/')
                    || item.name.chars().any(char::is_control)
                {
                    // Kept as it is: the run refuses it by name (see `refused_name`).
                    if !item.folder {
                        listing.files.push(Entry {
                            path: format!("{prefix}{}", item.name),
                            size: item.size,
                            mtime_us: item.mtime_us,
                        });
                    }
                    continue;
                }
                let rel = format!("{prefix}{}", item.name);
                if item.folder {
                    if recursive && depth < crate::run::MAX_DEPTH {
                        pending.push((crate::join(&dir, &item.name), format!("{rel}/"), depth + 1));
                    } else if recursive {
                        listing.complete = false;
                    }
                    continue;
                }
                if listing.files.len() >= limit {
                    listing.complete = false;
                    return Ok(listing);
                }
                listing.files.push(Entry {
                    path: rel,
                    size: item.size,
                    mtime_us: item.mtime_us,
                });
            }
        }
        Ok(listing)
    }
    /// The file at `path`, or `None` when nothing is there.
    async fn stat(&self, path: &str) -> Result<Option<Entry>, EndpointError>;
    /// Opens `path` for reading from its start.
    async fn open_read(&self, path: &str) -> Result<Box<dyn Download>, EndpointError>;
    /// Creates (or empties) `path` for writing.
    async fn create(&self, path: &str) -> Result<Box<dyn Upload>, EndpointError>;
    /// Renames `from` to `to`; without `replace`, fails with [`Failure::Exists`] when `to`
    /// exists.
    async fn rename(&self, from: &str, to: &str, replace: bool) -> Result<(), EndpointError>;
    /// Removes the file `path` ([`Failure::Missing`] when it is not there).
    async fn remove(&self, path: &str) -> Result<(), EndpointError>;
    /// Creates `folder` and its missing parents.
    async fn make_folders(&self, folder: &str) -> Result<(), EndpointError>;
    /// The SHA-256 of the file at `path` as the location computes it, with how it was
    /// asked (`check-file`, `sha256sum`, `local`...); `None` when it offers no digest.
    async fn sha256(&self, path: &str) -> Result<Option<(String, &'static str)>, EndpointError>;
    /// Where `path` is on this machine, when the location is a local folder: what event
    /// handlers need to act on a delivered file.
    async fn local_place(&self, _path: &str) -> Option<LocalPlace> {
        None
    }
    /// Ends the connection politely.
    async fn close(&self) {}
}

/// A file of a local location, as event handlers find it (`attrs.root`, `attrs.file`,
/// `attrs.inode` of `transfer.file.copied`).
#[derive(Debug, Clone)]
pub struct LocalPlace {
    /// The location's folder.
    pub root: std::path::PathBuf,
    /// The file's path on this machine.
    pub file: std::path::PathBuf,
    /// `DEVICE:INODE`.
    pub inode: Option<String>,
}
