//! Temporary files of uploads that lost their owner, and their removal.
//!
//! An upload writes to a hidden temporary file ([`super::TEMP_PREFIX`]) until it commits or
//! is given up; either way the file is gone. Only a process that stops in the middle (a
//! crash, `kill -9`, a power cut) leaves one behind. [`sweep`] walks a folder tree for such
//! files and removes those no upload of this process owns and nobody has written to for
//! a while (so that an upload on another node sharing the storage is left alone too).
//!
//! This module owns the register of this process's live temporary files and the walk. The
//! walk opens every folder beneath the one before it and follows no link, so a client who
//! swaps a folder for a link during a sweep cannot make it remove anything elsewhere. It
//! never touches a file whose name is not a temporary upload's.

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};

use super::TEMP_PREFIX;

/// Folders deeper than this below a swept root are not walked.
const MAX_DEPTH: usize = 64;

/// `(device, inode)` of every temporary upload file this process has open.
static LIVE: LazyLock<Mutex<HashSet<(u64, u64)>>> = LazyLock::new(Mutex::default);

/// A temporary file registered as live for as long as this value exists.
#[derive(Debug)]
pub(crate) struct LiveTemp((u64, u64));

impl LiveTemp {
    /// Registers the temporary file open as `fd`.
    pub(crate) fn register(fd: &OwnedFd) -> Option<LiveTemp> {
        let st = rustix::fs::fstat(fd).ok()?;
        let key = (st.st_dev, st.st_ino);
        LIVE.lock().ok()?.insert(key);
        Some(LiveTemp(key))
    }
}

impl Drop for LiveTemp {
    fn drop(&mut self) {
        if let Ok(mut live) = LIVE.lock() {
            live.remove(&self.0);
        }
    }
}

/// A temporary file that was swept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// The swept root it was found under.
    pub root: PathBuf,
    /// Its path below the root, `/`-separated, starting with `/`.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// The final name it was kept under (a resumable upload's), when it was not removed.
    pub kept_as: Option<String>,
}

/// The extended attribute naming a resumable upload's final name on its temporary file,
/// so that a sweep after a crash keeps it as resumable mode promises.
pub(crate) const FINAL_NAME: &str = "user.wharf.final";

/// The final name a resumable upload's temporary file carries, if it is a plain name.
fn final_name(dir: &OwnedFd, temp: &str) -> Option<String> {
    let fd = rustix::fs::openat(
        dir,
        temp,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let mut buf = [0u8; 256];
    let len = rustix::fs::fgetxattr(&fd, FINAL_NAME, &mut buf[..]).ok()?;
    let name = std::str::from_utf8(buf.get(..len)?).ok()?;
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.starts_with(TEMP_PREFIX)
        && !name.chars().any(char::is_control);
    plain.then(|| name.to_owned())
}

/// Removes, below `root`, the temporary upload files no live upload of this process owns
/// and that were last written more than `idle` ago. Walks at most `budget` entries (the
/// budget is shared by the caller's roots). A root that does not exist is no error.
pub fn sweep(root: &Path, idle: Duration, budget: &mut usize) -> std::io::Result<Vec<Leftover>> {
    let dir = match rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(dir) => dir,
        Err(rustix::io::Errno::NOENT) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let cutoff = SystemTime::now()
        .checked_sub(idle)
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut found = Vec::new();
    let mut walk = Walk {
        root,
        cutoff,
        budget,
        found: &mut found,
    };
    walk.folder(&dir, "", 0)?;
    Ok(found)
}

struct Walk<'a> {
    root: &'a Path,
    cutoff: i64,
    budget: &'a mut usize,
    found: &'a mut Vec<Leftover>,
}

impl Walk<'_> {
    fn folder(&mut self, dir: &OwnedFd, at: &str, depth: usize) -> std::io::Result<()> {
        let mut subfolders = Vec::new();
        for entry in rustix::fs::Dir::read_from(dir)? {
            if *self.budget == 0 {
                return Ok(());
            }
            *self.budget -= 1;
            let Ok(entry) = entry else { continue };
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory if depth < MAX_DEPTH => subfolders.push(name.to_owned()),
                FileType::RegularFile if name.starts_with(TEMP_PREFIX) => {
                    let live = LIVE
                        .lock()
                        .map_or(true, |l| l.contains(&(st.st_dev, st.st_ino)));
                    if live || st.st_mtime > self.cutoff {
                        continue;
                    }
                    let kept_as = final_name(dir, name).filter(|last| {
                        rustix::fs::renameat_with(
                            dir,
                            name,
                            dir,
                            last.as_str(),
                            RenameFlags::NOREPLACE,
                        )
                        .is_ok()
                    });
                    if kept_as.is_some()
                        || rustix::fs::unlinkat(dir, name, AtFlags::empty()).is_ok()
                    {
                        self.found.push(Leftover {
                            root: self.root.to_path_buf(),
                            path: format!("{at}/{name}"),
                            bytes: u64::try_from(st.st_size).unwrap_or(0),
                            kept_as,
                        });
                    }
                }
                _ => {}
            }
        }
        for name in subfolders {
            let Ok(sub) = rustix::fs::openat(
                dir,
                name.as_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) else {
                continue;
            };
            self.folder(&sub, &format!("{at}/{name}"), depth + 1)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(path: &Path, secs: u64) {
        let when = SystemTime::now() - Duration::from_secs(secs);
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(when).unwrap();
    }

    #[test]
    fn removes_only_old_unowned_temporary_files() {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("homes");
        std::fs::create_dir_all(root.join("a/deep")).unwrap();
        let old = root.join(format!("a/deep/{TEMP_PREFIX}old"));
        let fresh = root.join(format!("a/{TEMP_PREFIX}fresh"));
        let owned = root.join(format!("a/{TEMP_PREFIX}owned"));
        let other = root.join("a/keep.txt");
        for p in [&old, &fresh, &owned, &other] {
            std::fs::write(p, b"data").unwrap();
        }
        age(&old, 7200);
        age(&owned, 7200);
        age(&other, 7200);
        let fd = rustix::fs::open(&owned, OFlags::RDONLY, Mode::empty()).unwrap();
        let live = LiveTemp::register(&fd).unwrap();
        // A link to a folder outside is never walked.
        let outside = top.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let bait = outside.join(format!("{TEMP_PREFIX}bait"));
        std::fs::write(&bait, b"x").unwrap();
        age(&bait, 7200);
        std::os::unix::fs::symlink(&outside, root.join("a/link")).unwrap();

        let mut budget = 1000;
        let removed = sweep(&root, Duration::from_secs(3600), &mut budget).unwrap();
        assert_eq!(
            removed,
            vec![Leftover {
                root: root.clone(),
                path: format!("/a/deep/{TEMP_PREFIX}old"),
                bytes: 4,
                kept_as: None,
            }]
        );
        assert!(fresh.exists() && owned.exists() && other.exists() && bait.exists());
        drop(live);
        let removed = sweep(&root, Duration::from_secs(3600), &mut budget).unwrap();
        assert_eq!(removed.len(), 1);
        assert!(!owned.exists());
        // A resumable upload's temporary file is kept under its final name when it is free.
        let resumable = root.join(format!("a/{TEMP_PREFIX}resumable"));
        std::fs::write(&resumable, b"partial").unwrap();
        let fd = rustix::fs::open(&resumable, OFlags::RDONLY, Mode::empty()).unwrap();
        rustix::fs::fsetxattr(&fd, FINAL_NAME, b"big.iso", rustix::fs::XattrFlags::empty())
            .unwrap();
        drop(fd);
        age(&resumable, 7200);
        let kept = sweep(&root, Duration::from_secs(3600), &mut budget).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].kept_as.as_deref(), Some("big.iso"));
        assert_eq!(std::fs::read(root.join("a/big.iso")).unwrap(), b"partial");
        assert!(
            sweep(&top.path().join("none"), Duration::ZERO, &mut budget)
                .unwrap()
                .is_empty()
        );
    }
}
