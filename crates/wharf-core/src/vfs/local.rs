//! The local-filesystem backend, jailed by the kernel.
//!
//! Every path is opened relative to a descriptor of the home folder with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`: the kernel refuses any resolution
//! that would leave the home, whether through `..`, an absolute symlink, a relative symlink
//! pointing out, or a folder swapped for a link between a check and the open. Operations on
//! a name (`unlinkat`, `renameat`, `mkdirat`...) act on a parent folder opened that way, so
//! no second path resolution happens outside the jail.
//!
//! Blocking system calls run on tokio's blocking pool.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, Timespec, Timestamps};
use wharf_types::VirtualPath;

use super::jail::Root;
use super::leftovers::LiveTemp;
use super::{
    Attrs, DirEntry, FileKind, Metadata, OpenWrite, ReadFile, TEMP_PREFIX, Vfs, VfsStats,
    WriteFile, WriteTarget,
};
use crate::error::{CoreError, ErrorKind};
use crate::upload::MAX_GAP;

/// A home folder on the local filesystem.
#[derive(Clone)]
pub struct LocalFs {
    root: Root,
}

impl LocalFs {
    /// Opens `home` (which must exist and be a folder) as the root of the jail.
    pub fn open(home: &Path) -> io::Result<LocalFs> {
        Ok(LocalFs {
            root: Root::open(home)?,
        })
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, CoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Jail) -> Result<T, CoreError> + Send + 'static,
    {
        let jail = Jail {
            root: self.root.clone(),
        };
        tokio::task::spawn_blocking(move || f(&jail))
            .await
            .map_err(|e| CoreError::new(ErrorKind::Failure, format!("storage task failed: {e}")))?
    }
}

/// The synchronous half: every helper resolves beneath `root`, following no link.
struct Jail {
    root: Root,
}

impl Jail {
    fn open(&self, path: &VirtualPath, flags: OFlags, mode: Mode) -> Result<OwnedFd, CoreError> {
        self.root.open_at(path, flags, mode)
    }

    /// The parent folder of `path`, opened for directory operations, and the last name.
    fn parent<'p>(&self, path: &'p VirtualPath) -> Result<(OwnedFd, &'p str), CoreError> {
        self.root.open_parent(path)
    }

    fn stat(&self, path: &VirtualPath, follow: bool) -> Result<Metadata, CoreError> {
        if follow || path.is_root() {
            let fd = self.open(path, OFlags::PATH, Mode::empty())?;
            return Ok(metadata(&rustix::fs::fstat(&fd)?));
        }
        let (dir, name) = self.parent(path)?;
        Ok(metadata(&rustix::fs::statat(
            &dir,
            name,
            AtFlags::SYMLINK_NOFOLLOW,
        )?))
    }
}

fn metadata(st: &rustix::fs::Stat) -> Metadata {
    let kind = match rustix::fs::FileType::from_raw_mode(st.st_mode) {
        rustix::fs::FileType::RegularFile => FileKind::File,
        rustix::fs::FileType::Directory => FileKind::Dir,
        rustix::fs::FileType::Symlink => FileKind::Symlink,
        _ => FileKind::Other,
    };
    Metadata {
        kind,
        size: u64::try_from(st.st_size).unwrap_or(0),
        permissions: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        atime: st.st_atime,
        mtime: st.st_mtime,
        identity: Some(identity(st)),
    }
}

/// `DEVICE:INODE`, which tells one file from another put under the same name.
fn identity(st: &rustix::fs::Stat) -> String {
    format!("{}:{}", st.st_dev, st.st_ino)
}

fn temp_name() -> String {
    format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple())
}

fn mode_bits(permissions: Option<u32>, default: u32) -> Mode {
    Mode::from_raw_mode(permissions.map_or(default, |p| p & 0o777))
}

#[async_trait]
impl Vfs for LocalFs {
    async fn stat(&self, path: &VirtualPath, follow: bool) -> Result<Metadata, CoreError> {
        let path = path.clone();
        self.blocking(move |j| j.stat(&path, follow)).await
    }

    async fn read_dir(&self, path: &VirtualPath, limit: usize) -> Result<Vec<DirEntry>, CoreError> {
        let path = path.clone();
        self.blocking(move |j| {
            let fd = j.open(&path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
            let dir = rustix::fs::Dir::read_from(&fd)?;
            let mut entries = Vec::new();
            for entry in dir {
                let entry = entry?;
                let Ok(name) = entry.file_name().to_str() else {
                    continue;
                };
                if name == "." || name == ".." || name.starts_with(TEMP_PREFIX) {
                    continue;
                }
                let Ok(st) = rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW) else {
                    continue;
                };
                entries.push(DirEntry {
                    name: name.to_owned(),
                    metadata: metadata(&st),
                });
                if entries.len() >= limit {
                    return Err(CoreError::new(
                        ErrorKind::LimitReached,
                        format!("folder has more than {limit} entries"),
                    ));
                }
            }
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(entries)
        })
        .await
    }

    async fn open_read(&self, path: &VirtualPath) -> Result<Box<dyn ReadFile>, CoreError> {
        let path = path.clone();
        let file = self
            .blocking(move |j| {
                let fd = j.open(&path, OFlags::RDONLY, Mode::empty())?;
                let file = File::from(fd);
                if file.metadata()?.is_dir() {
                    return Err(CoreError::new(ErrorKind::IsADirectory, "is a folder"));
                }
                Ok(file)
            })
            .await?;
        Ok(Box::new(LocalRead {
            file: Arc::new(file),
        }))
    }

    async fn open_write(
        &self,
        path: &VirtualPath,
        target: WriteTarget,
    ) -> Result<Box<dyn WriteFile>, CoreError> {
        let path = path.clone();
        let write = self
            .blocking(move |j| {
                let (dir, name) = j.parent(&path)?;
                if let Ok(st) = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
                    && metadata(&st).kind == FileKind::Dir
                {
                    return Err(CoreError::new(ErrorKind::IsADirectory, "is a folder"));
                }
                let keep = target.open == OpenWrite::Keep;
                if keep && target.in_place {
                    let fd = j.open(
                        &path,
                        OFlags::RDWR | OFlags::CREATE,
                        mode_bits(target.permissions, 0o644),
                    )?;
                    // Written in place: the digest remembered for the old content is void
                    // from the first byte on.
                    super::digest_cache::forget(&fd);
                    return Ok(WriteState {
                        file: Arc::new(File::from(fd)),
                        place: Mutex::new(Place {
                            dir: Arc::new(dir),
                            final_name: name.to_owned(),
                            replace: true,
                        }),
                        temp_name: None,
                        keep_partial: true,
                        done: AtomicBool::new(false),
                        writeback: Writeback::default(),
                        _live: None,
                    });
                }
                let temp = temp_name();
                let fd = rustix::fs::openat(
                    &dir,
                    temp.as_str(),
                    OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                    mode_bits(target.permissions, 0o644),
                )?;
                let live = LiveTemp::register(&fd);
                if target.keep_partial {
                    // Resumable: a crash must not lose what was received (see leftovers).
                    let _ = rustix::fs::fsetxattr(
                        &fd,
                        super::leftovers::FINAL_NAME,
                        name.as_bytes(),
                        rustix::fs::XattrFlags::empty(),
                    );
                }
                let mut file = File::from(fd);
                let write = WriteState {
                    file: Arc::new(File::from(rustix::io::dup(&file)?)),
                    place: Mutex::new(Place {
                        dir: Arc::new(dir),
                        final_name: name.to_owned(),
                        replace: target.replace,
                    }),
                    temp_name: Some(temp),
                    keep_partial: target.keep_partial,
                    done: AtomicBool::new(false),
                    writeback: Writeback::default(),
                    _live: live,
                };
                if keep {
                    // Resume or append through a temporary file: start it with a copy of
                    // what is committed (copy_file_range, in the kernel).
                    match j.open(&path, OFlags::RDONLY, Mode::empty()) {
                        Ok(fd) => {
                            let mut existing = File::from(fd);
                            if let Err(e) = io::copy(&mut existing, &mut file) {
                                write.discard();
                                return Err(e.into());
                            }
                        }
                        Err(e) if e.kind == ErrorKind::NotFound => {}
                        Err(e) => {
                            write.discard();
                            return Err(e);
                        }
                    }
                }
                Ok(write)
            })
            .await?;
        Ok(Box::new(LocalWrite {
            state: Arc::new(write),
            root: self.root.clone(),
        }))
    }

    async fn mkdir(&self, path: &VirtualPath, permissions: Option<u32>) -> Result<(), CoreError> {
        let path = path.clone();
        self.blocking(move |j| {
            let (dir, name) = j.parent(&path)?;
            rustix::fs::mkdirat(&dir, name, mode_bits(permissions, 0o755))?;
            Ok(())
        })
        .await
    }

    async fn rmdir(&self, path: &VirtualPath) -> Result<(), CoreError> {
        let path = path.clone();
        self.blocking(move |j| {
            let (dir, name) = j.parent(&path)?;
            rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR)?;
            Ok(())
        })
        .await
    }

    async fn remove_file(&self, path: &VirtualPath) -> Result<(), CoreError> {
        let path = path.clone();
        self.blocking(move |j| {
            let (dir, name) = j.parent(&path)?;
            rustix::fs::unlinkat(&dir, name, AtFlags::empty())?;
            Ok(())
        })
        .await
    }

    async fn rename(
        &self,
        from: &VirtualPath,
        to: &VirtualPath,
        replace: bool,
    ) -> Result<(), CoreError> {
        let (from, to) = (from.clone(), to.clone());
        self.blocking(move |j| {
            let (from_dir, from_name) = j.parent(&from)?;
            let (to_dir, to_name) = j.parent(&to)?;
            let flags = if replace {
                RenameFlags::empty()
            } else {
                RenameFlags::NOREPLACE
            };
            rustix::fs::renameat_with(&from_dir, from_name, &to_dir, to_name, flags)?;
            Ok(())
        })
        .await
    }

    async fn set_attrs(&self, path: &VirtualPath, attrs: &Attrs) -> Result<(), CoreError> {
        let (path, attrs) = (path.clone(), attrs.clone());
        self.blocking(move |j| {
            if attrs.owner.is_some() {
                return Err(CoreError::new(
                    ErrorKind::Unsupported,
                    "changing the owner is not supported",
                ));
            }
            if let Some(size) = attrs.size {
                let fd = j.open(&path, OFlags::WRONLY, Mode::empty())?;
                let st = rustix::fs::fstat(&fd)?;
                // Growing a file makes a hole nobody wrote, which costs the client nothing
                // and every later reader of the whole file a hash of it: the holes a file
                // may have in all are bounded like an upload's.
                let allocated = u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512);
                let current = u64::try_from(st.st_size).unwrap_or(0);
                if size > current && size.saturating_sub(allocated) > MAX_GAP {
                    return Err(CoreError::new(
                        ErrorKind::LimitReached,
                        format!(
                            "growing the file would leave more than {MAX_GAP} bytes nobody wrote"
                        ),
                    ));
                }
                super::digest_cache::forget(&fd);
                rustix::fs::ftruncate(&fd, size)?;
            }
            if let Some(perm) = attrs.permissions {
                // fchmod needs a real descriptor; opening refuses a final symlink, so the
                // mode of something outside the home can never change.
                let fd = j.open(&path, OFlags::RDONLY | OFlags::NOFOLLOW, Mode::empty())?;
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(perm & 0o7777))?;
            }
            if let Some((atime, mtime)) = attrs.times {
                if let Ok(fd) = j.open(&path, OFlags::RDONLY | OFlags::NOFOLLOW, Mode::empty()) {
                    super::digest_cache::forget(&fd);
                }
                let (dir, name) = j.parent(&path)?;
                let stamps = Timestamps {
                    last_access: Timespec {
                        tv_sec: atime,
                        tv_nsec: 0,
                    },
                    last_modification: Timespec {
                        tv_sec: mtime,
                        tv_nsec: 0,
                    },
                };
                rustix::fs::utimensat(&dir, name, &stamps, AtFlags::SYMLINK_NOFOLLOW)?;
            }
            Ok(())
        })
        .await
    }

    async fn real_path(
        &self,
        path: &VirtualPath,
        follow_last: bool,
    ) -> Result<VirtualPath, CoreError> {
        let path = path.clone();
        self.blocking(move |j| j.root.real_path(&path, follow_last))
            .await
    }

    async fn symlink(
        &self,
        relative: Option<&str>,
        target: &VirtualPath,
        link: &VirtualPath,
    ) -> Result<(), CoreError> {
        let text = match relative {
            Some(text) => std::path::PathBuf::from(text),
            None => self.root.link_text(target),
        };
        let link = link.clone();
        self.blocking(move |j| {
            let (dir, name) = j.parent(&link)?;
            rustix::fs::symlinkat(text.as_path(), &dir, name)?;
            Ok(())
        })
        .await
    }

    async fn read_link(&self, path: &VirtualPath) -> Result<String, CoreError> {
        let path = path.clone();
        self.blocking(move |j| {
            let (dir, name) = j.parent(&path)?;
            let text = rustix::fs::readlinkat(&dir, name, Vec::new())?;
            let text = text
                .into_string()
                .map_err(|_| CoreError::new(ErrorKind::InvalidPath, "link target is not UTF-8"))?;
            j.root.shown_link(&path.parent(), &text)
        })
        .await
    }

    async fn hard_link(&self, existing: &VirtualPath, link: &VirtualPath) -> Result<(), CoreError> {
        let (existing, link) = (existing.clone(), link.clone());
        self.blocking(move |j| {
            let (from_dir, from_name) = j.parent(&existing)?;
            // A hard link to a link is a second copy of its text: the session links the
            // file the link leads to instead, deciding the rules there.
            let st = rustix::fs::statat(&from_dir, from_name, AtFlags::SYMLINK_NOFOLLOW)?;
            if metadata(&st).kind == FileKind::Symlink {
                return Err(rustix::io::Errno::LOOP.into());
            }
            let (to_dir, to_name) = j.parent(&link)?;
            rustix::fs::linkat(&from_dir, from_name, &to_dir, to_name, AtFlags::empty())?;
            Ok(())
        })
        .await
    }

    async fn copy(
        &self,
        from: &VirtualPath,
        to: &VirtualPath,
        replace: bool,
    ) -> Result<u64, CoreError> {
        let (from, to) = (from.clone(), to.clone());
        self.blocking(move |j| {
            let mut source = File::from(j.open(&from, OFlags::RDONLY, Mode::empty())?);
            if source.metadata()?.is_dir() {
                return Err(CoreError::new(ErrorKind::IsADirectory, "is a folder"));
            }
            let (dir, name) = j.parent(&to)?;
            let temp = temp_name();
            let fd = rustix::fs::openat(
                &dir,
                temp.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )?;
            let live = LiveTemp::register(&fd);
            let mut dest = File::from(fd);
            let write = WriteState {
                file: Arc::new(File::from(rustix::io::dup(&dest)?)),
                place: Mutex::new(Place {
                    dir: Arc::new(dir),
                    final_name: name.to_owned(),
                    replace,
                }),
                temp_name: Some(temp),
                keep_partial: false,
                done: AtomicBool::new(false),
                writeback: Writeback::default(),
                _live: live,
            };
            match io::copy(&mut source, &mut dest) {
                Ok(n) => {
                    write.commit_sync(None)?;
                    Ok(n)
                }
                Err(e) => {
                    write.discard();
                    Err(e.into())
                }
            }
        })
        .await
    }

    async fn stats(&self) -> Result<VfsStats, CoreError> {
        self.blocking(|j| {
            let fd = j.open(&VirtualPath::root(), OFlags::RDONLY, Mode::empty())?;
            let s = rustix::fs::fstatvfs(&fd)?;
            Ok(VfsStats {
                block_size: s.f_bsize,
                fragment_size: s.f_frsize,
                blocks: s.f_blocks,
                blocks_free: s.f_bfree,
                blocks_available: s.f_bavail,
                files: s.f_files,
                files_free: s.f_ffree,
                files_available: s.f_favail,
                fsid: s.f_fsid,
                flags: s.f_flag.bits(),
                name_max: s.f_namemax,
            })
        })
        .await
    }
}

struct LocalRead {
    file: Arc<File>,
}

#[async_trait]
impl ReadFile for LocalRead {
    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, CoreError> {
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || read_full_at(&file, offset, len))
            .await
            .map_err(|e| CoreError::new(ErrorKind::Failure, e.to_string()))?
    }

    async fn metadata(&self) -> Result<Metadata, CoreError> {
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || Ok(metadata(&rustix::fs::fstat(&*file)?)))
            .await
            .map_err(|e| CoreError::new(ErrorKind::Failure, e.to_string()))?
    }

    async fn digest_stamp(&self) -> Option<String> {
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || super::digest_cache::stamp(&file))
            .await
            .ok()
            .flatten()
    }

    async fn cached_digest(&self) -> Option<String> {
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || super::digest_cache::recall(&file))
            .await
            .ok()
            .flatten()
    }

    async fn remember_digest(&self, stamp: Option<String>, hex: &str) {
        let (file, hex) = (Arc::clone(&self.file), hex.to_owned());
        let _ = tokio::task::spawn_blocking(move || {
            super::digest_cache::remember(&file, stamp.as_deref(), &hex)
        })
        .await;
    }

    fn os_file(&self) -> Option<Arc<File>> {
        Some(Arc::clone(&self.file))
    }
}

/// Writes every piece, consecutively from `offset`, with as few `pwritev` calls as the
/// kernel allows (it may write less than asked; the rest follows).
fn write_all_vectored_at(file: &File, pieces: &[Vec<u8>], offset: u64) -> std::io::Result<()> {
    let (mut index, mut within, mut at) = (0usize, 0usize, offset);
    while index < pieces.len() {
        let slices: Vec<std::io::IoSlice<'_>> = std::iter::once(&pieces[index][within..])
            .chain(pieces[index + 1..].iter().map(|p| &p[..]))
            .map(std::io::IoSlice::new)
            .collect();
        let mut written = rustix::io::pwritev(file, &slices, at)?;
        if written == 0 && slices.iter().any(|s| !s.is_empty()) {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        at += written as u64;
        while index < pieces.len() && written >= pieces[index].len() - within {
            written -= pieces[index].len() - within;
            index += 1;
            within = 0;
        }
        within += written;
    }
    Ok(())
}

/// Reads until `len` bytes or end of file, so short reads never look like EOF to clients.
fn read_full_at(file: &File, offset: u64, len: usize) -> Result<Vec<u8>, CoreError> {
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// An upload in progress; the state lives behind an `Arc` so that commit and abort can
/// run on the blocking pool, and so that the last owner's `Drop` cleans up.
struct LocalWrite {
    state: Arc<WriteState>,
    /// The home, to find the folder of a new final name (see [`WriteFile::retarget`]).
    root: Root,
}

struct WriteState {
    file: Arc<File>,
    /// Where the upload commits; changes when the client renames the upload in progress.
    place: Mutex<Place>,
    /// `None` when writing in place.
    temp_name: Option<String>,
    keep_partial: bool,
    done: AtomicBool,
    writeback: Writeback,
    /// Keeps the temporary file out of the leftover sweep while the upload lives.
    _live: Option<LiveTemp>,
}

/// The folder and name an upload commits under.
struct Place {
    dir: Arc<OwnedFd>,
    final_name: String,
    /// Commit over a file that appeared at the final name meanwhile.
    replace: bool,
}

/// Bytes written before the kernel is asked to start writing them to disk.
const WRITEBACK_EVERY: u64 = 16 << 20;

/// Early writeback: a large upload's data is flushed in the background as it arrives, so
/// the fsync that makes the commit durable has only the last few MiB left to write.
#[derive(Default)]
struct Writeback {
    unflushed: AtomicU64,
    flushing: AtomicBool,
    /// A failed background flush fails the commit: after an fsync error the kernel may
    /// drop the dirty pages, and a later fsync would not report it again.
    failed: Mutex<Option<String>>,
}

impl WriteState {
    /// Counts `len` new bytes and starts a background flush when enough are waiting.
    fn note_written(self: &Arc<Self>, len: u64) {
        let waiting = self.writeback.unflushed.fetch_add(len, Ordering::SeqCst) + len;
        if waiting < WRITEBACK_EVERY || self.writeback.flushing.swap(true, Ordering::SeqCst) {
            return;
        }
        self.writeback.unflushed.store(0, Ordering::SeqCst);
        let state = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            // The lock is held across the flush: an fsync error is reported once per open
            // file, so if this flush takes it, the commit's own fsync sees success, and the
            // commit must wait here to learn of it (see `flush_failure`).
            if let Ok(mut failed) = state.writeback.failed.lock()
                && let Err(e) = state.file.sync_data()
            {
                *failed = Some(format!("background flush failed: {e}"));
            }
            state.writeback.flushing.store(false, Ordering::SeqCst);
        });
    }

    /// The failure of a background flush, waiting for one still running.
    fn flush_failure(&self) -> Option<String> {
        self.writeback.failed.lock().ok().and_then(|f| f.clone())
    }
}

impl WriteState {
    /// Commits under the final name, or under `unique` (which must not exist yet).
    fn commit_sync(&self, unique: Option<&str>) -> Result<(), CoreError> {
        if self.done.swap(true, Ordering::SeqCst) {
            return Err(CoreError::new(ErrorKind::Failure, "upload already closed"));
        }
        let result = (|| -> Result<(), CoreError> {
            self.file.sync_all()?;
            if let Some(failure) = self.flush_failure() {
                return Err(CoreError::new(ErrorKind::Failure, failure));
            }
            if self.keep_partial && self.temp_name.is_some() {
                let _ = rustix::fs::fremovexattr(&*self.file, super::leftovers::FINAL_NAME);
            }
            let place = self.place()?;
            let from = self.temp_name.as_deref().unwrap_or(&place.final_name);
            let (to, flags) = match unique {
                Some(name) => (name, RenameFlags::NOREPLACE),
                None if place.replace => (place.final_name.as_str(), RenameFlags::empty()),
                None => (place.final_name.as_str(), RenameFlags::NOREPLACE),
            };
            if from != to {
                rustix::fs::renameat_with(&*place.dir, from, &*place.dir, to, flags)?;
                // The rename is durable only once its folder is.
                rustix::fs::fsync(&*place.dir)?;
            }
            Ok(())
        })();
        if result.is_err() {
            self.unlink_temp();
        }
        result
    }

    /// The place the upload commits under (a copy: the lock is never held across I/O).
    fn place(&self) -> Result<Place, CoreError> {
        let place = self
            .place
            .lock()
            .map_err(|_| CoreError::new(ErrorKind::Failure, "upload state poisoned"))?;
        Ok(Place {
            dir: Arc::clone(&place.dir),
            final_name: place.final_name.clone(),
            replace: place.replace,
        })
    }

    fn unlink_temp(&self) {
        if let (Some(temp), Ok(place)) = (&self.temp_name, self.place()) {
            let _ = rustix::fs::unlinkat(&*place.dir, temp.as_str(), AtFlags::empty());
        }
    }

    /// Makes the upload commit under `to` instead: its temporary file moves to `to`'s
    /// folder (a file written in place is renamed there, as it is already visible).
    fn retarget_sync(&self, root: &Root, to: &VirtualPath, replace: bool) -> Result<(), CoreError> {
        let (new_dir, name) = root.open_parent(to)?;
        let mut place = self
            .place
            .lock()
            .map_err(|_| CoreError::new(ErrorKind::Failure, "upload state poisoned"))?;
        if self.done.load(Ordering::SeqCst) {
            return Err(CoreError::new(ErrorKind::Failure, "upload already closed"));
        }
        match &self.temp_name {
            // Temporary names are unique; in the same folder this changes nothing.
            Some(temp) => {
                rustix::fs::renameat(&*place.dir, temp.as_str(), &new_dir, temp.as_str())?
            }
            None => rustix::fs::renameat_with(
                &*place.dir,
                place.final_name.as_str(),
                &new_dir,
                name,
                if replace {
                    RenameFlags::empty()
                } else {
                    RenameFlags::NOREPLACE
                },
            )?,
        }
        if self.keep_partial && self.temp_name.is_some() {
            let _ = rustix::fs::fsetxattr(
                &*self.file,
                super::leftovers::FINAL_NAME,
                name.as_bytes(),
                rustix::fs::XattrFlags::empty(),
            );
        }
        *place = Place {
            dir: Arc::new(new_dir),
            final_name: name.to_owned(),
            replace,
        };
        Ok(())
    }

    fn abort_sync(&self) -> Result<bool, CoreError> {
        if self.done.swap(true, Ordering::SeqCst) {
            return Ok(false);
        }
        let place = self.place()?;
        match &self.temp_name {
            None => {
                let _ = self.file.sync_all();
                Ok(true)
            }
            Some(temp) if self.keep_partial => {
                let _ = rustix::fs::fremovexattr(&*self.file, super::leftovers::FINAL_NAME);
                self.file.sync_all()?;
                rustix::fs::renameat(
                    &*place.dir,
                    temp.as_str(),
                    &*place.dir,
                    place.final_name.as_str(),
                )?;
                rustix::fs::fsync(&*place.dir)?;
                Ok(true)
            }
            Some(temp) => {
                rustix::fs::unlinkat(&*place.dir, temp.as_str(), AtFlags::empty())?;
                Ok(false)
            }
        }
    }

    /// Removes the temporary file whatever the mode (used when opening fails half-way).
    fn discard(&self) {
        if !self.done.swap(true, Ordering::SeqCst) {
            self.unlink_temp();
        }
    }
}

impl Drop for WriteState {
    fn drop(&mut self) {
        // A handle dropped without commit or abort (a task cancelled mid-upload) must not
        // leave its temporary file behind.
        if !self.done.load(Ordering::SeqCst) {
            let _ = self.abort_sync();
        }
    }
}

#[async_trait]
impl WriteFile for LocalWrite {
    async fn write_at(&self, offset: u64, data: Vec<u8>) -> Result<(), CoreError> {
        let file = Arc::clone(&self.state.file);
        let len = data.len() as u64;
        tokio::task::spawn_blocking(move || file.write_all_at(&data, offset))
            .await
            .map_err(|e| CoreError::new(ErrorKind::Failure, e.to_string()))??;
        self.state.note_written(len);
        Ok(())
    }

    async fn write_pieces_at(&self, offset: u64, pieces: Vec<Vec<u8>>) -> Result<(), CoreError> {
        let file = Arc::clone(&self.state.file);
        let len: u64 = pieces.iter().map(|p| p.len() as u64).sum();
        tokio::task::spawn_blocking(move || write_all_vectored_at(&file, &pieces, offset))
            .await
            .map_err(|e| CoreError::new(ErrorKind::Failure, e.to_string()))??;
        self.state.note_written(len);
        Ok(())
    }

    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, CoreError> {
        let file = Arc::clone(&self.state.file);
        tokio::task::spawn_blocking(move || read_full_at(&file, offset, len))
            .await
            .map_err(|e| CoreError::new(ErrorKind::Failure, e.to_string()))?
    }

    async fn size(&self) -> Result<u64, CoreError> {
        Ok(self.state.file.metadata()?.len())
    }

    async fn sync(&self) -> Result<(), CoreError> {
        let file = Arc::clone(&self.state.file);
        tokio::task::spawn_blocking(move || file.sync_all())
            .await
            .map_err(|e| CoreError::new(ErrorKind::Failure, e.to_string()))??;
        Ok(())
    }

    async fn remember_digest(&self, hex: &str) {
        let (file, hex) = (Arc::clone(&self.state.file), hex.to_owned());
        let _ =
            tokio::task::spawn_blocking(move || super::digest_cache::remember(&file, None, &hex))
                .await;
    }

    async fn finish(&self, finish: super::Finish<'_>) -> Result<bool, CoreError> {
        let state = Arc::clone(&self.state);
        let (last, size) = (finish.last, finish.size);
        let (sha256, unique) = (finish.sha256.to_owned(), finish.unique.map(str::to_owned));
        tokio::task::spawn_blocking(move || {
            if let Some((at, pieces)) = &last {
                write_all_vectored_at(&state.file, pieces, *at)?;
            }
            if state.file.metadata()?.len() != size {
                return Ok(false);
            }
            super::digest_cache::remember(&state.file, None, &sha256);
            state.commit_sync(unique.as_deref()).map(|()| true)
        })
        .await
        .map_err(|e| CoreError::new(ErrorKind::Failure, e.to_string()))?
    }

    async fn commit(&self) -> Result<(), CoreError> {
        let state = Arc::clone(&self.state);
        tokio::task::spawn_blocking(move || state.commit_sync(None))
            .await
            .map_err(|e| CoreError::new(ErrorKind::Failure, e.to_string()))?
    }

    async fn commit_under(&self, name: &str) -> Result<(), CoreError> {
        let (state, name) = (Arc::clone(&self.state), name.to_owned());
        tokio::task::spawn_blocking(move || state.commit_sync(Some(&name)))
            .await
            .map_err(|e| CoreError::new(ErrorKind::Failure, e.to_string()))?
    }

    async fn identity(&self) -> Option<String> {
        rustix::fs::fstat(&*self.state.file)
            .ok()
            .map(|st| identity(&st))
    }

    async fn metadata(&self) -> Result<Metadata, CoreError> {
        Ok(metadata(&rustix::fs::fstat(&*self.state.file)?))
    }

    async fn set_attrs(&self, attrs: &Attrs) -> Result<(), CoreError> {
        if attrs.owner.is_some() {
            return Err(CoreError::new(
                ErrorKind::Unsupported,
                "changing the owner is not supported",
            ));
        }
        let (file, attrs) = (Arc::clone(&self.state.file), attrs.clone());
        tokio::task::spawn_blocking(move || -> Result<(), CoreError> {
            if let Some(size) = attrs.size {
                rustix::fs::ftruncate(&*file, size)?;
            }
            if let Some(perm) = attrs.permissions {
                rustix::fs::fchmod(&*file, Mode::from_raw_mode(perm & 0o777))?;
            }
            if let Some((atime, mtime)) = attrs.times {
                let at = |s| Timespec {
                    tv_sec: s,
                    tv_nsec: 0,
                };
                rustix::fs::futimens(
                    &*file,
                    &Timestamps {
                        last_access: at(atime),
                        last_modification: at(mtime),
                    },
                )?;
            }
            Ok(())
        })
        .await
        .map_err(|e| CoreError::new(ErrorKind::Failure, e.to_string()))?
    }

    async fn retarget(&self, to: &VirtualPath, replace: bool) -> Result<(), CoreError> {
        let (state, root, to) = (Arc::clone(&self.state), self.root.clone(), to.clone());
        tokio::task::spawn_blocking(move || state.retarget_sync(&root, &to, replace))
            .await
            .map_err(|e| CoreError::new(ErrorKind::Failure, e.to_string()))?
    }

    async fn truncate(&self, len: u64) -> Result<(), CoreError> {
        let file = Arc::clone(&self.state.file);
        tokio::task::spawn_blocking(move || file.set_len(len))
            .await
            .map_err(|e| CoreError::new(ErrorKind::Failure, e.to_string()))??;
        Ok(())
    }

    async fn discard(&self) -> Result<(), CoreError> {
        let state = Arc::clone(&self.state);
        tokio::task::spawn_blocking(move || state.discard())
            .await
            .map_err(|e| CoreError::new(ErrorKind::Failure, e.to_string()))
    }

    async fn abort(&self) -> Result<bool, CoreError> {
        let state = Arc::clone(&self.state);
        tokio::task::spawn_blocking(move || state.abort_sync())
            .await
            .map_err(|e| CoreError::new(ErrorKind::Failure, e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vp(s: &str) -> VirtualPath {
        VirtualPath::parse(s).unwrap()
    }

    fn setup() -> (tempfile::TempDir, LocalFs) {
        let top = tempfile::tempdir().unwrap();
        let home = top.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::write(top.path().join("secret.txt"), b"outside").unwrap();
        std::fs::create_dir(top.path().join("outside-dir")).unwrap();
        std::fs::write(home.join("inside.txt"), b"inside").unwrap();
        std::os::unix::fs::symlink(top.path().join("secret.txt"), home.join("abs-link")).unwrap();
        std::os::unix::fs::symlink("../secret.txt", home.join("rel-link")).unwrap();
        std::os::unix::fs::symlink("../outside-dir", home.join("dir-link")).unwrap();
        std::os::unix::fs::symlink("inside.txt", home.join("ok-link")).unwrap();
        let fs = LocalFs::open(&home).unwrap();
        (top, fs)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn symlinks_out_of_home_are_never_followed() {
        let (top, fs) = setup();
        for link in ["/abs-link", "/rel-link"] {
            let err = match fs.open_read(&vp(link)).await {
                Err(e) => e,
                Ok(_) => panic!("{link} was followed"),
            };
            assert_eq!(err.kind, ErrorKind::PermissionDenied, "{link}");
            assert!(fs.stat(&vp(link), true).await.is_err());
            // Not following the link itself is fine: it is an entry of the home.
            assert_eq!(
                fs.stat(&vp(link), false).await.unwrap().kind,
                FileKind::Symlink
            );
        }
        // Writing through a linked folder must not create anything outside.
        let target = WriteTarget {
            open: OpenWrite::Truncate,
            in_place: false,
            keep_partial: false,
            replace: true,
            permissions: None,
        };
        assert!(fs.open_write(&vp("/dir-link/x"), target).await.is_err());
        assert!(fs.mkdir(&vp("/dir-link/sub"), None).await.is_err());
        assert!(fs.read_dir(&vp("/dir-link"), 100).await.is_err());
        assert!(!top.path().join("outside-dir/x").exists());
        assert!(!top.path().join("outside-dir/sub").exists());
        // A link that stays inside is not followed by the backend either: it says a link
        // is in the way, and where the link leads (for the session to decide the rules there).
        let err = match fs.open_read(&vp("/ok-link")).await {
            Err(e) => e,
            Ok(_) => panic!("/ok-link was followed"),
        };
        assert!(err.is_link());
        let real = fs.real_path(&vp("/ok-link"), true).await.unwrap();
        assert_eq!(real, vp("/inside.txt"));
        let f = fs.open_read(&real).await.unwrap();
        assert_eq!(f.read_at(0, 100).await.unwrap(), b"inside");
        for link in ["/abs-link", "/rel-link", "/dir-link/x"] {
            let err = fs.real_path(&vp(link), true).await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::PermissionDenied, "{link}");
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn pieces_land_consecutively() {
        let (top, fs) = setup();
        let target = WriteTarget {
            open: OpenWrite::Truncate,
            in_place: false,
            keep_partial: false,
            replace: true,
            permissions: None,
        };
        let file = fs.open_write(&vp("/pieces.bin"), target).await.unwrap();
        let pieces: Vec<Vec<u8>> = [0usize, 5, 300_000, 1, 0, 70_000]
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|b| (b * 7 + i) as u8).collect())
            .collect();
        let whole = pieces.concat();
        file.write_at(0, b"head".to_vec()).await.unwrap();
        file.write_pieces_at(4, pieces).await.unwrap();
        file.commit().await.unwrap();
        let got = std::fs::read(top.path().join("home/pieces.bin")).unwrap();
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[4..], &whole[..]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn atomic_upload_appears_only_on_commit() {
        let (top, fs) = setup();
        let home = top.path().join("home");
        let target = WriteTarget {
            open: OpenWrite::Truncate,
            in_place: false,
            keep_partial: false,
            replace: true,
            permissions: None,
        };
        let w = fs.open_write(&vp("/new.bin"), target).await.unwrap();
        w.write_at(0, b"hello".to_vec()).await.unwrap();
        assert!(!home.join("new.bin").exists());
        let listed = fs.read_dir(&VirtualPath::root(), 100).await.unwrap();
        assert!(listed.iter().all(|e| !e.name.starts_with(TEMP_PREFIX)));
        w.commit().await.unwrap();
        assert_eq!(std::fs::read(home.join("new.bin")).unwrap(), b"hello");

        let w = fs.open_write(&vp("/gone.bin"), target).await.unwrap();
        w.write_at(0, b"partial".to_vec()).await.unwrap();
        drop(w);
        assert!(!home.join("gone.bin").exists());
        let leftovers: Vec<_> = std::fs::read_dir(&home)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(TEMP_PREFIX))
            .collect();
        assert!(leftovers.is_empty());
    }
}
