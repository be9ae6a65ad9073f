//! The file an event is about: where it is (a root folder and a path beneath it), the file
//! itself once opened, and whether it is the file its event names.
//!
//! A subject is opened as two descriptors: its folder, found beneath the root by the core's
//! jail with no link followed anywhere, and the file, opened from that folder without
//! following a link. Everything a handler then does (hash, verify, link, rename) acts on
//! these descriptors, so a folder swapped for a link, or a file renamed over, after the
//! event cannot lead a handler to another file. Before acting, the opened file is compared
//! with what its event says: the same inode (`attrs.inode`) and the same SHA-256.
//!
//! This module never changes a file, never follows a link and never resolves a path name
//! from an event with `std::fs`.

use std::cell::OnceCell;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use wharf_core::CoreError;
use wharf_core::vfs::jail::{self, Root};
use wharf_store::AuditRecord;
use wharf_types::{VirtualPath, hex};

use crate::ActionError;

/// Events whose file is at `path2` (the destination) rather than `path`: renames, copies,
/// and a client-side transfer's delivery (`transfer.file.copied`, whose `attrs.file` and
/// `attrs.root` name the delivered file when its destination is a local folder).
const AT_PATH2: &[u32] = &[30021, 30026, 60010];

/// The file an event is about, where it is now.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The folder it is reached beneath, on the server: the account's home, or the root a
    /// handler's event names (`attrs.root`).
    pub root: PathBuf,
    /// Its path beneath `root`.
    pub rel: VirtualPath,
    /// Its path on the server (`root` and `rel`), for events and templates only.
    pub file: PathBuf,
    /// The account's home folder on the server, when the event names it.
    pub home: Option<PathBuf>,
    /// Its path as the account sees (or last saw) it.
    pub path: String,
    /// Its name.
    pub name: String,
}

/// `file` as a path beneath `root`, when it is one and every name is plain UTF-8.
pub(crate) fn beneath(root: &Path, file: &Path) -> Option<VirtualPath> {
    let rest = file.strip_prefix(root).ok()?.to_str()?;
    let rel = VirtualPath::parse(rest).ok()?;
    // A path the core would normalise differently (`.`, `..`, doubled `/`) is not taken.
    (rel.relative() == rest.trim_start_matches('/')).then_some(rel)
}

/// The file `record` is about, if it is about one: handlers' own events say where they
/// left it (`attrs.file`, beneath `attrs.root`); the core's file events give the account's
/// home and the path inside it.
pub fn subject(record: &AuditRecord) -> Option<Subject> {
    if record.outcome != "success" {
        return None;
    }
    let home = record.attrs.get("home").map(PathBuf::from);
    let path = if AT_PATH2.contains(&record.id) {
        record.path2.clone()?
    } else {
        record.path.clone()?
    };
    let virtual_path = VirtualPath::parse(&path).ok()?;
    if virtual_path.as_str() != path || virtual_path.is_root() {
        return None;
    }
    let (root, rel) = match record.attrs.get("file") {
        Some(file) => {
            let file = PathBuf::from(file);
            let root = record
                .attrs
                .get("root")
                .map(PathBuf::from)
                .filter(|root| file.starts_with(root))
                .or_else(|| home.clone().filter(|home| file.starts_with(home)))
                .or_else(|| file.parent().map(Path::to_path_buf))?;
            let rel = beneath(&root, &file)?;
            (root, rel)
        }
        None => (home.clone()?, virtual_path),
    };
    let name = rel.file_name()?.to_owned();
    let file = root.join(rel.relative());
    Some(Subject {
        root,
        rel,
        file,
        home,
        path,
        name,
    })
}

/// Which file this is: device and inode, written `DEVICE:INODE` as in `attrs.inode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    pub(crate) fn of(st: &rustix::fs::Stat) -> FileId {
        FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.dev, self.ino)
    }
}

/// What changes when a file's content or metadata does: size, modification and change
/// times, and the number of names it has. The change time moves with every write,
/// truncation, mode change and link, so a file with the same stamp has not been touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    nlink: u64,
}

impl Stamp {
    pub(crate) fn of(file: &File) -> io::Result<Stamp> {
        let st = rustix::fs::fstat(file)?;
        Ok(Stamp {
            size: st.st_size,
            mtime: (st.st_mtime, st.st_mtime_nsec as i64),
            ctime: (st.st_ctime, st.st_ctime_nsec as i64),
            nlink: st.st_nlink as u64,
        })
    }

    /// Whether the content can differ: size or modification time moved. (Linking and
    /// renaming the file move only its change time.)
    pub(crate) fn same_content(&self, other: &Stamp) -> bool {
        self.size == other.size && self.mtime == other.mtime
    }
}

/// A file opened for an action: its folder, its name there, and the open file.
pub struct Held {
    /// The folder holding it, opened beneath its root.
    pub(crate) dir: OwnedFd,
    /// Its name in `dir`.
    pub(crate) name: String,
    /// The file, open for reading.
    pub(crate) file: File,
    /// Which file it is.
    pub id: FileId,
    /// Its stamp when it was opened.
    pub(crate) stamp: Stamp,
    /// Its SHA-256, once known.
    sha256: OnceCell<String>,
}

/// A link on the way: the message every refusal for one carries.
fn link_refusal(what: &str) -> ActionError {
    ActionError::refused(format!(
        "{what}: a symbolic link stands on the way, and handlers follow no link; left alone"
    ))
}

fn core_error(what: &str, e: &CoreError) -> ActionError {
    if e.is_link() {
        link_refusal(what)
    } else {
        ActionError::retry(format!("cannot open {what}: {}", e.message))
    }
}

/// Opens `name` in `dir` as a regular file, following no link; `None` when it is not there.
pub(crate) fn open_in(dir: &OwnedFd, name: &str, what: &str) -> Result<Option<Held>, ActionError> {
    let fd = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(rustix::io::Errno::LOOP) => return Err(link_refusal(what)),
        Err(e) => return Err(ActionError::retry(format!("cannot open {what}: {e}"))),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| ActionError::retry(format!("{what}: {e}")))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(ActionError::permanent(format!(
            "{what} is not a regular file (a folder or a device); left alone"
        )));
    }
    let file = File::from(fd);
    let stamp = Stamp::of(&file).map_err(|e| ActionError::retry(format!("{what}: {e}")))?;
    let dir = rustix::io::dup(dir).map_err(|e| ActionError::retry(format!("{what}: {e}")))?;
    Ok(Some(Held {
        dir,
        name: name.to_owned(),
        file,
        id: FileId::of(&st),
        stamp,
        sha256: OnceCell::new(),
    }))
}

/// Opens the folder `rel` names beneath `root`, following no link; `None` when a folder on
/// the way is not there.
pub(crate) fn open_folder(
    root: &Path,
    rel: &VirtualPath,
    what: &str,
) -> Result<Option<OwnedFd>, ActionError> {
    let root = match Root::open(root) {
        Ok(root) => root,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ActionError::retry(format!(
                "cannot open {}: {e}",
                root.display()
            )));
        }
    };
    match root.open_at(rel, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(e)
            if matches!(
                e.kind,
                wharf_core::ErrorKind::NotFound | wharf_core::ErrorKind::NotADirectory
            ) && !e.is_link() =>
        {
            Ok(None)
        }
        Err(e) => Err(core_error(what, &e)),
    }
}

impl Subject {
    /// Opens the file, following no link on the way; `None` when it is not there.
    pub fn open(&self) -> Result<Option<Held>, ActionError> {
        let Some(dir) = open_folder(&self.root, &self.rel.parent(), &self.path)? else {
            return Ok(None);
        };
        open_in(&dir, &self.name, &self.path)
    }

    /// Opens the file and checks that it is the one `record` names (see [`Held::check`]).
    /// A file that is not there is an error that says so.
    pub fn open_checked(&self, record: &AuditRecord) -> Result<Held, ActionError> {
        let held = self.open()?.ok_or_else(|| self.gone())?;
        held.check(record, &self.path, true)?;
        Ok(held)
    }

    /// The error for a file that is no longer where its event says.
    pub fn gone(&self) -> ActionError {
        ActionError::permanent(format!(
            "{} is gone (moved or deleted since the event)",
            self.path
        ))
    }
}

/// SHA-256 and `others` of `file`'s content, read through the descriptor, in one pass;
/// fails when the file changed while it was read.
pub(crate) fn digests(
    file: &File,
    others: &[&'static digest::Algorithm],
) -> io::Result<(digest::Digest, Vec<digest::Digest>)> {
    let before = Stamp::of(file)?;
    let mut sha = digest::Context::new(&digest::SHA256);
    let mut contexts: Vec<digest::Context> =
        others.iter().map(|a| digest::Context::new(a)).collect();
    let mut buffer = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        let n = file.read_at(&mut buffer, offset)?;
        if n == 0 {
            break;
        }
        sha.update(&buffer[..n]);
        for context in &mut contexts {
            context.update(&buffer[..n]);
        }
        offset += n as u64;
    }
    if !Stamp::of(file)?.same_content(&before) {
        return Err(io::Error::other("the file changed while it was read"));
    }
    Ok((
        sha.finish(),
        contexts.into_iter().map(digest::Context::finish).collect(),
    ))
}

impl Held {
    /// Its SHA-256: the digest remembered on the file while its stamp matches, or the
    /// content hashed through the descriptor.
    pub fn sha256(&self) -> Result<String, ActionError> {
        if let Some(known) = self.sha256.get() {
            return Ok(known.clone());
        }
        let hex = match jail::remembered_sha256(&self.file) {
            Some(hex) => hex,
            None => {
                let (sha, _) = digests(&self.file, &[])
                    .map_err(|e| ActionError::retry(format!("cannot read {}: {e}", self.name)))?;
                hex(sha.as_ref())
            }
        };
        let _ = self.sha256.set(hex.clone());
        Ok(hex)
    }

    /// Records a SHA-256 computed elsewhere from this descriptor (a signature check).
    pub(crate) fn know_sha256(&self, hex: String) {
        let _ = self.sha256.set(hex);
    }

    /// Checks that this is the file `record` names: the same inode when the event gives one
    /// (`attrs.inode`), and, when `content` and the event gives a SHA-256, the same digest.
    /// Otherwise the file was replaced or changed since the event, and is left alone.
    pub fn check(
        &self,
        record: &AuditRecord,
        path: &str,
        content: bool,
    ) -> Result<(), ActionError> {
        if let Some(inode) = record.attrs.get("inode")
            && *inode != self.id.to_string()
        {
            return Err(ActionError::refused(format!(
                "{path} is not the file its event names (file {inode}; now file {}): it was \
                 replaced since; left alone",
                self.id
            )));
        }
        if content && let Some(expected) = &record.sha256 {
            let found = self.sha256()?;
            if !found.eq_ignore_ascii_case(expected) {
                return Err(ActionError::refused(format!(
                    "{path} does not hold what its event names (SHA-256 {found}, the event says \
                     {expected}): it changed since; left alone"
                )));
            }
        }
        Ok(())
    }

    /// Fails when the file was written to since it was opened (its size or modification
    /// time moved, or its change time moved while it kept its names, as a write followed
    /// by resetting the modification time does), so what was checked is what is acted on.
    /// A change of names alone (a file renamed over it) is left to the move, which then
    /// finds another file at the name.
    pub(crate) fn unchanged(&self, what: &str) -> Result<(), ActionError> {
        let now = Stamp::of(&self.file).map_err(|e| ActionError::retry(format!("{what}: {e}")))?;
        let touched = now.ctime != self.stamp.ctime && now.nlink == self.stamp.nlink;
        if now.same_content(&self.stamp) && !touched {
            Ok(())
        } else {
            Err(ActionError::refused(format!(
                "{what} was written to after it was checked; left alone"
            )))
        }
    }

    /// Fails when its name no longer leads to it (renamed over, or removed, while it was
    /// read): what was checked is then not what the name holds, and an event saying it
    /// was checked would send the handlers that follow to another file.
    pub(crate) fn still_named(&self, what: &str) -> Result<(), ActionError> {
        if Held::id_at(&self.dir, &self.name) == Some(self.id) {
            Ok(())
        } else {
            Err(ActionError::refused(format!(
                "{what} was replaced or removed while it was checked; left alone"
            )))
        }
    }

    /// Whether its size and modification time are still those it was checked with (a link
    /// made by the handler moves only its change time).
    pub(crate) fn content_unchanged(&self) -> bool {
        Stamp::of(&self.file).is_ok_and(|now| now.same_content(&self.stamp))
    }

    /// What is now at `name` in `dir`: its identity, if it is there and not a link.
    pub(crate) fn id_at(dir: &impl AsFd, name: &str) -> Option<FileId> {
        rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .filter(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
            .map(|st| FileId::of(&st))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn record(attrs: &[(&str, &str)], path: &str) -> AuditRecord {
        let json = serde_json::json!({
            "seq": 1, "id": 30002, "name": "upload.finished", "time": "2026-01-01T00:00:00Z",
            "node": "n", "path": path, "outcome": "success", "prev": "", "hash": "h",
            "attrs": attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_folder_swapped_for_a_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(home.join("upload")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(home.join("upload/a.csv"), b"a").unwrap();
        std::fs::write(outside.join("a.csv"), b"canary").unwrap();
        let rec = record(&[("home", home.to_str().unwrap())], "/upload/a.csv");
        let subject = subject(&rec).unwrap();
        assert!(subject.open().unwrap().is_some());
        std::fs::rename(home.join("upload"), home.join("away")).unwrap();
        std::os::unix::fs::symlink(&outside, home.join("upload")).unwrap();
        let err = subject.open().err().unwrap();
        assert!(err.refused, "{err:?}");
        // A link to a folder inside the home is refused as well: no link is followed.
        std::fs::remove_file(home.join("upload")).unwrap();
        std::os::unix::fs::symlink("away", home.join("upload")).unwrap();
        assert!(subject.open().err().unwrap().refused);
        // And a link as the file itself.
        std::fs::remove_file(home.join("upload")).unwrap();
        std::fs::create_dir(home.join("upload")).unwrap();
        std::os::unix::fs::symlink(outside.join("a.csv"), home.join("upload/a.csv")).unwrap();
        assert!(subject.open().err().unwrap().refused);
    }

    #[test]
    fn another_inode_or_other_bytes_are_not_the_events_file() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join("a.csv"), b"first").unwrap();
        let sha = hex(digest::digest(&digest::SHA256, b"first").as_ref());
        let held = subject(&record(&[("home", home.to_str().unwrap())], "/a.csv"))
            .unwrap()
            .open()
            .unwrap()
            .unwrap();
        let id = held.id.to_string();
        let mut rec = record(
            &[("home", home.to_str().unwrap()), ("inode", &id)],
            "/a.csv",
        );
        rec.sha256 = Some(sha.clone());
        assert!(held.check(&rec, "/a.csv", true).is_ok());
        rec.sha256 = Some("0".repeat(64));
        assert!(held.check(&rec, "/a.csv", true).err().unwrap().refused);
        assert!(held.check(&rec, "/a.csv", false).is_ok());
        std::fs::write(home.join("b.csv"), b"first").unwrap();
        std::fs::rename(home.join("b.csv"), home.join("a.csv")).unwrap();
        rec.sha256 = Some(sha);
        let now = subject(&rec).unwrap().open().unwrap().unwrap();
        assert!(now.check(&rec, "/a.csv", true).err().unwrap().refused);
    }
}
