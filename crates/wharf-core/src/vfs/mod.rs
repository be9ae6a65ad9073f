//! The storage interface under every session, and its backends.
//!
//! A [`Vfs`] is opened for one account's home and sees only [`VirtualPath`]s: paths that are
//! already normalised and permission-checked by [`crate::Session`]. A backend's job is to
//! keep every operation inside the home (whatever symlinks or races say) and to make uploads
//! atomic; it never checks permission rules and never emits events.

mod digest_cache;
pub mod jail;
pub mod leftovers;
mod local;

use std::sync::Arc;

use async_trait::async_trait;
use wharf_types::VirtualPath;

pub use local::LocalFs;

use crate::error::CoreError;

/// Names starting with this are the backends' own in-flight uploads: hidden from listings
/// and refused as client paths.
pub const TEMP_PREFIX: &str = ".wharf-part-";

/// What kind of entry a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A folder.
    Dir,
    /// A symbolic link (only reported when links are not followed).
    Symlink,
    /// Anything else (device, socket, fifo).
    Other,
}

/// An entry's attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// Entry kind.
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`0o7777` part of the mode).
    pub permissions: u32,
    /// Owner id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Last access, seconds since the epoch.
    pub atime: i64,
    /// Last modification, seconds since the epoch.
    pub mtime: i64,
    /// Which file this is on its storage (`DEVICE:INODE` on a local filesystem), so that
    /// whoever acts on it later (event handlers) can tell it from a file put in its place.
    pub identity: Option<String>,
}

impl Metadata {
    /// The entry as an `ls -l` line, the form SFTP long names and FTP LIST use, with
    /// `owner` shown as owner and group.
    pub fn ls_line(&self, name: &str, owner: &str) -> String {
        let kind = match self.kind {
            FileKind::Dir => 'd',
            FileKind::Symlink => 'l',
            FileKind::File => '-',
            FileKind::Other => '?',
        };
        let mut perms = String::with_capacity(9);
        for shift in [6, 3, 0] {
            let bits = (self.permissions >> shift) & 7;
            perms.push(if bits & 4 != 0 { 'r' } else { '-' });
            perms.push(if bits & 2 != 0 { 'w' } else { '-' });
            perms.push(if bits & 1 != 0 { 'x' } else { '-' });
        }
        let when = time::OffsetDateTime::from_unix_timestamp(self.mtime)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let month = MONTHS
            .get(usize::from(u8::from(when.month())) - 1)
            .copied()
            .unwrap_or("Jan");
        format!(
            "{kind}{perms}    1 {owner:<8} {owner:<8} {size:>12} {month} {day:>2} {hour:02}:{minute:02} {name}",
            size = self.size,
            day = when.day(),
            hour = when.hour(),
            minute = when.minute(),
        )
    }

    /// Modification time as `YYYYMMDDHHMMSS` (UTC), the form of FTP MDTM and MLSD.
    pub fn mtime_compact(&self) -> String {
        let t = time::OffsetDateTime::from_unix_timestamp(self.mtime)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }
}

/// One folder entry with its attributes (links not followed).
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// The entry's name (UTF-8; other names are not listed).
    pub name: String,
    /// Its attributes.
    pub metadata: Metadata,
}

/// Attribute changes; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs {
    /// New size (truncate or extend).
    pub size: Option<u64>,
    /// New permission bits.
    pub permissions: Option<u32>,
    /// New access and modification times, seconds since the epoch.
    pub times: Option<(i64, i64)>,
    /// New owner and group ids.
    pub owner: Option<(u32, u32)>,
}

impl Attrs {
    /// True when nothing would change.
    pub fn is_empty(&self) -> bool {
        *self == Attrs::default()
    }
}

/// Space figures for `statvfs`-style requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct VfsStats {
    /// Block size.
    pub block_size: u64,
    /// Fragment size.
    pub fragment_size: u64,
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub blocks_free: u64,
    /// Blocks available to unprivileged users.
    pub blocks_available: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub files_free: u64,
    /// Inodes available to unprivileged users.
    pub files_available: u64,
    /// Filesystem id.
    pub fsid: u64,
    /// Mount flags.
    pub flags: u64,
    /// Longest name.
    pub name_max: u64,
}

/// How an upload treats what already exists at its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenWrite {
    /// Start from an empty file (create or replace).
    Truncate,
    /// Keep the existing content; writes land at the offsets the client gives.
    Keep,
}

/// Parameters of [`Vfs::open_write`].
#[derive(Debug, Clone, Copy)]
pub struct WriteTarget {
    /// Keep or discard existing content.
    pub open: OpenWrite,
    /// Write in place instead of through a temporary file (resumable mode, existing file).
    pub in_place: bool,
    /// On abort, keep what was written under the final name.
    pub keep_partial: bool,
    /// Commit over a file that appears at the final name meanwhile; false when the
    /// account may create but not overwrite (the commit then fails rather than replace).
    pub replace: bool,
    /// Permission bits for a new file.
    pub permissions: Option<u32>,
}

/// A file open for reading.
#[async_trait]
pub trait ReadFile: Send + Sync {
    /// Reads up to `len` bytes at `offset`; an empty result means end of file.
    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, CoreError>;
    /// The open file's attributes.
    async fn metadata(&self) -> Result<Metadata, CoreError>;
    /// A stamp of the file's current content (size and time), taken before hashing it.
    async fn digest_stamp(&self) -> Option<String> {
        None
    }
    /// The file's SHA-256 (lowercase hex) if the storage remembers it for this content.
    async fn cached_digest(&self) -> Option<String> {
        None
    }
    /// Remembers the SHA-256 computed since `stamp` was taken, if the file is unchanged.
    async fn remember_digest(&self, _stamp: Option<String>, _hex: &str) {}
    /// The open operating-system file, when the storage is a local file system, so the
    /// core can hand its pages to a socket without copying them through user space.
    fn os_file(&self) -> Option<Arc<std::fs::File>> {
        None
    }
}

/// A file open for writing. Nothing reaches the final name until [`WriteFile::commit`].
#[async_trait]
pub trait WriteFile: Send + Sync {
    /// Writes `data` at `offset`.
    async fn write_at(&self, offset: u64, data: Vec<u8>) -> Result<(), CoreError>;
    /// Writes consecutive pieces starting at `offset`, in one operation where the storage
    /// allows it.
    async fn write_pieces_at(&self, offset: u64, pieces: Vec<Vec<u8>>) -> Result<(), CoreError> {
        let mut at = offset;
        for piece in pieces {
            let len = piece.len() as u64;
            self.write_at(at, piece).await?;
            at += len;
        }
        Ok(())
    }
    /// Reads back what is written so far (for hashing after out-of-order writes).
    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, CoreError>;
    /// The current size of the data being written.
    async fn size(&self) -> Result<u64, CoreError>;
    /// Flushes written data to stable storage.
    async fn sync(&self) -> Result<(), CoreError>;
    /// Remembers the finished upload's SHA-256 with the file (before [`WriteFile::commit`]).
    async fn remember_digest(&self, _hex: &str) {}
    /// Makes the upload visible under its final name, durably.
    async fn commit(&self) -> Result<(), CoreError>;
    /// Like [`WriteFile::commit`], but under `name` in the same folder, which must not exist
    /// yet (see [`crate::naming`]).
    async fn commit_under(&self, name: &str) -> Result<(), CoreError> {
        let _ = name;
        Err(CoreError::new(
            crate::ErrorKind::Unsupported,
            "this storage cannot choose an upload's name",
        ))
    }
    /// Writes the last bytes, remembers the digest and commits, as
    /// [`WriteFile::write_pieces_at`], [`WriteFile::remember_digest`] and
    /// [`WriteFile::commit`] (or [`WriteFile::commit_under`]) would one after the other, in
    /// one trip to storage where it allows. Returns `false`, having written the bytes and
    /// committed nothing, when the file does not hold `finish.size` bytes.
    async fn finish(&self, finish: Finish<'_>) -> Result<bool, CoreError> {
        if let Some((at, pieces)) = finish.last {
            self.write_pieces_at(at, pieces).await?;
        }
        if self.size().await? != finish.size {
            return Ok(false);
        }
        self.remember_digest(finish.sha256).await;
        match finish.unique {
            Some(name) => self.commit_under(name).await?,
            None => self.commit().await?,
        }
        Ok(true)
    }
    /// Which file is being written (see [`Metadata::identity`]).
    async fn identity(&self) -> Option<String> {
        None
    }
    /// The attributes of what is written so far (for the session that writes it, which
    /// sees its own upload in progress under the final name).
    async fn metadata(&self) -> Result<Metadata, CoreError> {
        let size = self.size().await?;
        Ok(Metadata {
            kind: FileKind::File,
            size,
            permissions: 0o644,
            uid: 0,
            gid: 0,
            atime: 0,
            mtime: 0,
            identity: self.identity().await,
        })
    }
    /// Changes the attributes of the file being written (size, permission bits, times),
    /// which it keeps when committed.
    async fn set_attrs(&self, attrs: &Attrs) -> Result<(), CoreError> {
        let _ = attrs;
        Err(CoreError::new(
            crate::ErrorKind::Unsupported,
            "this storage cannot change an upload in progress",
        ))
    }
    /// Makes the upload commit under `to` (the client renamed it before closing it); with
    /// `replace`, over a file there.
    async fn retarget(&self, to: &VirtualPath, replace: bool) -> Result<(), CoreError> {
        let _ = (to, replace);
        Err(CoreError::new(
            crate::ErrorKind::Unsupported,
            "this storage cannot rename an upload in progress",
        ))
    }
    /// Gives the upload up: removes it, or keeps it under its final name when the target
    /// asked for `keep_partial`. Returns true when data was kept.
    async fn abort(&self) -> Result<bool, CoreError>;
    /// Cuts what is written so far to `len` bytes (before giving a refused upload up).
    async fn truncate(&self, len: u64) -> Result<(), CoreError>;
    /// Gives the upload up keeping nothing, whatever the target asked: a temporary file is
    /// removed (a file written in place stays as it is).
    async fn discard(&self) -> Result<(), CoreError>;
}

/// What [`WriteFile::finish`] does.
pub struct Finish<'a> {
    /// Consecutive pieces still to write, from an offset.
    pub last: Option<(u64, Vec<Vec<u8>>)>,
    /// The size the file must have once they are written.
    pub size: u64,
    /// The content's SHA-256, remembered with the file.
    pub sha256: &'a str,
    /// The name to commit under instead of the final one (see [`crate::naming`]).
    pub unique: Option<&'a str>,
}

/// Storage for one account's home.
#[async_trait]
pub trait Vfs: Send + Sync {
    /// Attributes of `path`; `follow` resolves a final symlink (never outside the home).
    async fn stat(&self, path: &VirtualPath, follow: bool) -> Result<Metadata, CoreError>;
    /// The entries of a folder, at most `limit` of them.
    async fn read_dir(&self, path: &VirtualPath, limit: usize) -> Result<Vec<DirEntry>, CoreError>;
    /// Opens a file for reading.
    async fn open_read(&self, path: &VirtualPath) -> Result<Box<dyn ReadFile>, CoreError>;
    /// Opens a file for writing.
    async fn open_write(
        &self,
        path: &VirtualPath,
        target: WriteTarget,
    ) -> Result<Box<dyn WriteFile>, CoreError>;
    /// Creates a folder.
    async fn mkdir(&self, path: &VirtualPath, permissions: Option<u32>) -> Result<(), CoreError>;
    /// Removes an empty folder.
    async fn rmdir(&self, path: &VirtualPath) -> Result<(), CoreError>;
    /// Removes a file or link.
    async fn remove_file(&self, path: &VirtualPath) -> Result<(), CoreError>;
    /// Renames `from` to `to`; with `replace` false an existing `to` is an error.
    async fn rename(
        &self,
        from: &VirtualPath,
        to: &VirtualPath,
        replace: bool,
    ) -> Result<(), CoreError>;
    /// Changes attributes.
    async fn set_attrs(&self, path: &VirtualPath, attrs: &Attrs) -> Result<(), CoreError>;
    /// The path `path` really leads to inside the home: links on the way (and a last link,
    /// when `follow_last`) replaced by what they point to. Every other operation follows no
    /// link and fails with [`CoreError::is_link`] when it meets one; the session then asks
    /// this, decides the rules on the answer, and acts on it.
    async fn real_path(
        &self,
        path: &VirtualPath,
        follow_last: bool,
    ) -> Result<VirtualPath, CoreError> {
        let _ = follow_last;
        Ok(path.clone())
    }
    /// Creates a symbolic link at `link` to `target`: with the content `relative` when
    /// given (plain names below the link's folder), otherwise stored so that it leads to
    /// `target` wherever in the home the link or its folders are moved later.
    async fn symlink(
        &self,
        relative: Option<&str>,
        target: &VirtualPath,
        link: &VirtualPath,
    ) -> Result<(), CoreError>;
    /// A symbolic link's content as a client may see it: a relative text as stored, or an
    /// absolute path in the home; refused when it leads outside the home.
    async fn read_link(&self, path: &VirtualPath) -> Result<String, CoreError>;
    /// Creates a hard link `link` to `existing`.
    async fn hard_link(&self, existing: &VirtualPath, link: &VirtualPath) -> Result<(), CoreError>;
    /// Copies a file server-side, atomically; returns the bytes copied. With `replace`
    /// false, an existing `to` is an error.
    async fn copy(
        &self,
        from: &VirtualPath,
        to: &VirtualPath,
        replace: bool,
    ) -> Result<u64, CoreError>;
    /// Space figures for the filesystem holding the home.
    async fn stats(&self) -> Result<VfsStats, CoreError>;
}
