//! The jail: every local path is reached beneath a descriptor, and no link is followed.
//!
//! A [`Root`] is a folder opened once (an account's home, a quarantine, a destination).
//! Everything beneath it is opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS)`: the kernel refuses `..` above the root, absolute paths, and every
//! symbolic link on the way, including one swapped in for a folder after a check. A link on
//! the way is reported as such ([`CoreError::is_link`]), so that the core session can find
//! the path the link really leads to ([`Root::real_path`]), decide the permission rules on
//! *that* path, and act on it, again without following anything. So a rule is never decided
//! on one file and the operation done on another.
//!
//! This module owns path resolution on the local filesystem and nothing else: it never
//! checks permission rules, never emits events, and never follows a link by itself.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use wharf_types::VirtualPath;

use crate::error::{CoreError, ErrorKind};

/// Symbolic links followed while finding one real path, as the kernel's own limit.
const MAX_LINK_HOPS: usize = 40;

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// A folder opened as the root of a jail.
#[derive(Clone, Debug)]
pub struct Root {
    fd: Arc<OwnedFd>,
    /// The folder's canonical host path: links the core makes are stored under it (absolute,
    /// so that no rename inside the root can make one point elsewhere), and an absolute
    /// link under it leads inside the root.
    host: Arc<PathBuf>,
}

/// The text of `path` relative to its root (`.` for the root itself).
fn relative(path: &VirtualPath) -> &str {
    if path.is_root() { "." } else { path.relative() }
}

impl Root {
    /// Opens the host folder `folder` (which must exist) as a root.
    pub fn open(folder: &Path) -> io::Result<Root> {
        let host = std::fs::canonicalize(folder)?;
        let fd = rustix::fs::open(
            &host,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            fd: Arc::new(fd),
            host: Arc::new(host),
        })
    }

    /// The host path a link to `target` stores: absolute, under the root's canonical path.
    pub fn link_text(&self, target: &VirtualPath) -> PathBuf {
        if target.is_root() {
            (*self.host).clone()
        } else {
            self.host.join(target.relative())
        }
    }

    /// Where a link whose stored text is `text`, found in the folder `folder`, points, as a
    /// path beneath the root; refused when it points outside (an absolute path elsewhere,
    /// or `..` above the root).
    pub fn link_target(&self, folder: &VirtualPath, text: &str) -> Result<VirtualPath, CoreError> {
        let mut names: Vec<&str> = match self.inside(text) {
            Some(rest) => {
                let mut names = Vec::new();
                push_names(&mut names, rest)?;
                return Ok(VirtualPath::parse(&format!("/{}", names.join("/")))?);
            }
            None if text.starts_with('/') => return Err(outside()),
            None => folder.components().collect(),
        };
        push_names(&mut names, text)?;
        Ok(VirtualPath::parse(&format!("/{}", names.join("/")))?)
    }

    /// A link's stored `text`, found in `folder`, as a client may see it: a relative text
    /// as it is, an absolute one under the root as the path it names beneath the root.
    /// Refused when it leads outside (see [`Root::link_target`]).
    pub fn shown_link(&self, folder: &VirtualPath, text: &str) -> Result<String, CoreError> {
        let target = self.link_target(folder, text)?;
        if text.starts_with('/') {
            Ok(target.to_string())
        } else {
            Ok(text.to_owned())
        }
    }

    /// The part of an absolute link text below the root's host path, if it is below it.
    fn inside<'t>(&self, text: &'t str) -> Option<&'t str> {
        let host = self.host.to_str()?;
        let rest = text.strip_prefix(host)?;
        if rest.is_empty() || rest.starts_with('/') {
            Some(rest)
        } else {
            None
        }
    }

    /// The root's own descriptor.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens `path` beneath the root with `flags`, following no link anywhere.
    pub fn open_at(
        &self,
        path: &VirtualPath,
        flags: OFlags,
        mode: Mode,
    ) -> Result<OwnedFd, CoreError> {
        Ok(rustix::fs::openat2(
            self.fd.as_fd(),
            relative(path),
            flags | OFlags::CLOEXEC,
            mode,
            RESOLVE,
        )?)
    }

    /// The folder holding `path`, opened for `*at` calls, and `path`'s last name. The last
    /// name itself is not resolved: an operation on it acts on the entry, link or not.
    pub fn open_parent<'p>(&self, path: &'p VirtualPath) -> Result<(OwnedFd, &'p str), CoreError> {
        let name = path
            .file_name()
            .ok_or_else(|| CoreError::denied("the root folder itself cannot be changed"))?;
        let dir = self.open_at(
            &path.parent(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )?;
        Ok((dir, name))
    }

    /// Opens the regular file at `path` for reading.
    pub fn open_file(&self, path: &VirtualPath) -> Result<File, CoreError> {
        let file = File::from(self.open_at(path, OFlags::RDONLY, Mode::empty())?);
        if !file.metadata()?.is_file() {
            return Err(CoreError::new(
                ErrorKind::IsADirectory,
                "not a regular file",
            ));
        }
        Ok(file)
    }

    /// Opens the folder at `path`, creating it and any missing folder above it with `mode`,
    /// beneath the root and through no link.
    pub fn create_folders(&self, path: &VirtualPath, mode: u32) -> Result<OwnedFd, CoreError> {
        let mut dir = self.open_at(
            &VirtualPath::root(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )?;
        for name in path.components() {
            match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(mode & 0o777)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            dir = rustix::fs::openat2(
                &dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                RESOLVE,
            )?;
        }
        Ok(dir)
    }

    /// The path `path` really leads to: every link on the way (and the last name's, when
    /// `follow_last`) replaced by what it points to, inside the root. A link that points
    /// outside (an absolute target, or `..` above the root) is refused. Names that do not
    /// exist yet are kept as written, so a path to be created resolves too.
    pub fn real_path(
        &self,
        path: &VirtualPath,
        follow_last: bool,
    ) -> Result<VirtualPath, CoreError> {
        let mut pending: Vec<String> = path.components().map(str::to_owned).collect();
        pending.reverse();
        // The real folders walked so far, each with its descriptor (the root first).
        let mut names: Vec<String> = Vec::new();
        let mut dirs: Vec<OwnedFd> = vec![self.open_at(
            &VirtualPath::root(),
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
        )?];
        let mut hops = 0;
        while let Some(name) = pending.pop() {
            match name.as_str() {
                "" | "." => continue,
                ".." => {
                    if names.pop().is_none() {
                        return Err(outside());
                    }
                    dirs.pop();
                    continue;
                }
                _ => {}
            }
            let Some(dir) = dirs.last() else {
                return Err(outside());
            };
            let last = pending.is_empty();
            let st = match rustix::fs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(rustix::io::Errno::NOENT) => {
                    // Nothing to follow from here on: the rest is a name to be created (or
                    // not found by the operation itself).
                    names.push(name);
                    names.extend(pending.drain(..).rev());
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Symlink if !last || follow_last => {
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        return Err(CoreError::new(
                            ErrorKind::InvalidPath,
                            "too many levels of symbolic links",
                        ));
                    }
                    let target = rustix::fs::readlinkat(dir, name.as_str(), Vec::new())?;
                    let target = target.into_string().map_err(|_| {
                        CoreError::new(ErrorKind::InvalidPath, "link target is not UTF-8")
                    })?;
                    let relative = match self.inside(&target) {
                        Some(rest) => {
                            // Absolute under the root: walk again from the root.
                            names.clear();
                            dirs.truncate(1);
                            rest
                        }
                        None if target.starts_with('/') => return Err(outside()),
                        None => target.as_str(),
                    };
                    pending.extend(relative.split('/').rev().map(str::to_owned));
                }
                FileType::Directory if !last => {
                    let fd = rustix::fs::openat(
                        dir,
                        name.as_str(),
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?;
                    dirs.push(fd);
                    names.push(name);
                }
                _ => {
                    names.push(name);
                    names.extend(pending.drain(..).rev());
                    break;
                }
            }
        }
        let text = format!("/{}", names.join("/"));
        Ok(VirtualPath::parse(&text)?)
    }
}

fn outside() -> CoreError {
    CoreError::denied("a link leads outside the home folder")
}

/// Appends the names of relative `text` to `names`, `..` removing one; refused when `..`
/// would climb above the root.
fn push_names<'t>(names: &mut Vec<&'t str>, text: &'t str) -> Result<(), CoreError> {
    for name in text.split('/') {
        match name {
            "" | "." => {}
            ".." => {
                names.pop().ok_or_else(outside)?;
            }
            _ => names.push(name),
        }
    }
    Ok(())
}

/// The SHA-256 remembered on `file` (`user.wharf.sha256`) while its stamp (size and
/// modification time) still matches, so that whoever acts on a file later (event handlers)
/// can check its content without reading it again. `None` means: hash it.
pub fn remembered_sha256(file: &File) -> Option<String> {
    super::digest_cache::recall(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vp(s: &str) -> VirtualPath {
        VirtualPath::parse(s).unwrap()
    }

    fn home() -> (tempfile::TempDir, Root) {
        let top = tempfile::tempdir().unwrap();
        let home = top.path().join("home");
        std::fs::create_dir_all(home.join("ro/deep")).unwrap();
        std::fs::write(home.join("ro/keep.txt"), b"keep").unwrap();
        std::os::unix::fs::symlink("ro", home.join("alias")).unwrap();
        std::os::unix::fs::symlink("../keep.txt", home.join("ro/deep/up")).unwrap();
        std::os::unix::fs::symlink(".", home.join("loop")).unwrap();
        std::os::unix::fs::symlink("self", home.join("self")).unwrap();
        std::os::unix::fs::symlink("../../x", home.join("ro/out")).unwrap();
        std::os::unix::fs::symlink("/etc", home.join("abs")).unwrap();
        let root = Root::open(&home).unwrap();
        std::os::unix::fs::symlink(root.link_text(&vp("/ro")), home.join("ro/deep/home-ro"))
            .unwrap();
        (top, root)
    }

    #[test]
    fn links_are_refused_as_links() {
        let (_top, root) = home();
        let err = root.open_file(&vp("/alias/keep.txt")).unwrap_err();
        assert!(err.is_link(), "{err:?}");
        assert_eq!(err.kind, ErrorKind::PermissionDenied);
        assert!(root.open_file(&vp("/ro/keep.txt")).is_ok());
    }

    #[test]
    fn real_paths_inside_the_root() {
        let (_top, root) = home();
        assert_eq!(
            root.real_path(&vp("/alias/keep.txt"), true).unwrap(),
            vp("/ro/keep.txt")
        );
        assert_eq!(
            root.real_path(&vp("/alias/new.txt"), true).unwrap(),
            vp("/ro/new.txt")
        );
        assert_eq!(root.real_path(&vp("/alias"), false).unwrap(), vp("/alias"));
        assert_eq!(root.real_path(&vp("/alias"), true).unwrap(), vp("/ro"));
        assert_eq!(
            root.real_path(&vp("/alias/deep/up"), true).unwrap(),
            vp("/ro/keep.txt")
        );
        assert_eq!(
            root.real_path(&vp("/loop/loop/ro"), true).unwrap(),
            vp("/ro")
        );
        assert_eq!(
            root.real_path(&vp("/none/a/b"), true).unwrap(),
            vp("/none/a/b")
        );
        assert_eq!(
            root.real_path(&vp("/alias/deep/home-ro/keep.txt"), true)
                .unwrap(),
            vp("/ro/keep.txt")
        );
    }

    #[test]
    fn link_targets_as_stored() {
        let (_top, root) = home();
        let text = root.link_text(&vp("/ro/keep.txt"));
        let text = text.to_str().unwrap();
        assert_eq!(
            root.link_target(&vp("/a/b"), text).unwrap(),
            vp("/ro/keep.txt")
        );
        assert_eq!(root.link_target(&vp("/a/b"), "../c").unwrap(), vp("/a/c"));
        assert!(root.link_target(&vp("/a/b"), "../../../c").is_err());
        assert!(root.link_target(&vp("/a"), "/etc/passwd").is_err());
        let sibling = format!("{}x/ro", root.link_text(&VirtualPath::root()).display());
        assert!(root.link_target(&vp("/a"), &sibling).is_err());
    }

    #[test]
    fn links_out_of_the_root_are_refused() {
        let (_top, root) = home();
        for path in ["/ro/out", "/abs", "/abs/passwd"] {
            let err = root.real_path(&vp(path), true).unwrap_err();
            assert_eq!(err.kind, ErrorKind::PermissionDenied, "{path}");
        }
        let err = root.real_path(&vp("/self"), true).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidPath);
    }

    #[test]
    fn folders_are_created_beneath_the_root() {
        let (top, root) = home();
        root.create_folders(&vp("/q/a/b"), 0o700).unwrap();
        assert!(top.path().join("home/q/a/b").is_dir());
        let err = root.create_folders(&vp("/alias/x"), 0o700).unwrap_err();
        assert_eq!(err.kind, ErrorKind::PermissionDenied);
        assert!(!top.path().join("home/ro/x").exists());
    }
}
