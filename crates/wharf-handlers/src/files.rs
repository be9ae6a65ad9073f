//! The moves, copies and quarantines handlers make, on descriptors only.
//!
//! A destination is a folder opened beneath a root (the account's home when it lies there,
//! else the fixed folder the administrator wrote before the template's first variable, or
//! the quarantine folder), created and reached through no link. A move links the *name*
//! it was given into the destination, then checks that the linked file is the one that
//! was opened and checked (same inode, unchanged), and removes the link again otherwise:
//! whatever was renamed over the source meanwhile never arrives. The source name is then
//! taken away only if it still is that file. A copy reads the checked descriptor itself.
//!
//! Every operation here may run twice for one event (a crash after the effect, before the
//! job was marked done), so each one recognises its own finished work: the destination
//! already holds the same file (or the same bytes). A file never appears half-written
//! under a destination name: copies go to a hidden temporary name in the destination
//! folder, are flushed to disk, then linked into place. Without `overwrite`, an existing,
//! different destination is never replaced.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use serde::Serialize;
use wharf_core::vfs::TEMP_PREFIX;
use wharf_core::vfs::jail::Root;
use wharf_store::AuditRecord;
use wharf_types::hex;

use crate::ActionError;
use crate::subject::{FileId, Held, Subject, beneath, open_in};

/// A hidden name for work in progress. Clients can neither list nor open names with the
/// core's temporary prefix, so one in a home folder cannot be touched meanwhile.
fn temp_name() -> String {
    format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple())
}

fn sys(what: &str, e: Errno) -> ActionError {
    ActionError::retry(format!("{what}: {e}"))
}

/// A folder a destination may lie beneath.
#[derive(Debug, Clone)]
pub struct Base {
    /// The folder on the server.
    pub folder: PathBuf,
    /// Whether it is created when missing: a folder from the configuration is; a home is
    /// not (a missing home is an error).
    pub create: bool,
}

/// Where a file goes: a folder opened beneath a root, and the name in it.
pub struct Dest {
    pub(crate) dir: OwnedFd,
    pub(crate) name: String,
    /// The destination's path on the server, for events.
    pub file: PathBuf,
    /// The root it was reached beneath (`attrs.root` in events, so a later handler finds
    /// the file the same way).
    pub root: PathBuf,
}

fn link_refusal(what: &Path) -> ActionError {
    ActionError::refused(format!(
        "{}: a symbolic link stands on the way, and handlers follow no link; nothing was \
         moved or created there",
        what.display()
    ))
}

/// Opens (creating its folders) the destination `to`, beneath the first of `bases` it
/// lies in.
pub fn destination(to: &Path, bases: &[Base]) -> Result<Dest, ActionError> {
    let (base, rel) = bases
        .iter()
        .find_map(|b| beneath(&b.folder, to).map(|rel| (b, rel)))
        .ok_or_else(|| {
            ActionError::permanent(format!(
                "{} lies in no folder a handler may write to (the home, or the folder \
                 written before the destination's first variable)",
                to.display()
            ))
        })?;
    let name = rel
        .file_name()
        .ok_or_else(|| ActionError::permanent(format!("{} names a folder", to.display())))?
        .to_owned();
    if base.create {
        create_private_folder(&base.folder, 0o755)?;
    }
    let root = Root::open(&base.folder)
        .map_err(|e| ActionError::retry(format!("cannot open {}: {e}", base.folder.display())))?;
    let dir = root.create_folders(&rel.parent(), 0o755).map_err(|e| {
        if e.is_link() {
            link_refusal(to)
        } else {
            ActionError::retry(format!(
                "cannot create the folders of {}: {e}",
                to.display()
            ))
        }
    })?;
    Ok(Dest {
        dir,
        name,
        file: to.to_owned(),
        root: base.folder.clone(),
    })
}

impl Dest {
    /// A destination in the folder `held` is in.
    pub(crate) fn in_folder_of(
        held: &Held,
        name: String,
        file: PathBuf,
        root: PathBuf,
    ) -> Result<Dest, ActionError> {
        Ok(Dest {
            dir: rustix::io::dup(&held.dir).map_err(|e| sys("cannot open the folder", e))?,
            name,
            file,
            root,
        })
    }

    /// Another name in this destination's folder.
    pub(crate) fn sibling(&self, name: String, file: PathBuf) -> Result<Dest, ActionError> {
        Ok(Dest {
            dir: rustix::io::dup(&self.dir).map_err(|e| sys("cannot open the folder", e))?,
            name,
            file,
            root: self.root.clone(),
        })
    }

    /// Which file is at the destination now.
    pub fn id(&self) -> Option<FileId> {
        Held::id_at(&self.dir, &self.name)
    }

    /// The file at the destination, if there is one (a link there is refused).
    pub fn open(&self) -> Result<Option<Held>, ActionError> {
        open_in(&self.dir, &self.name, &self.file.display().to_string())
    }

    /// Whether the destination already holds what `record` is about: the same inode when
    /// the event names one, else the same SHA-256 when it gives one, else any file. An
    /// earlier attempt that finished before its job was marked left it so.
    pub fn holds(&self, record: &AuditRecord) -> bool {
        let Ok(Some(there)) = self.open() else {
            return false;
        };
        if let Some(inode) = record.attrs.get("inode") {
            return *inode == there.id.to_string();
        }
        match &record.sha256 {
            Some(sha) => there.sha256().is_ok_and(|h| h.eq_ignore_ascii_case(sha)),
            None => true,
        }
    }
}

/// What a move or copy found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// It did the work now.
    Now,
    /// An earlier run had done it.
    Already,
}

fn replaced(what: &str, held: &Held, found: Option<FileId>) -> ActionError {
    ActionError::refused(format!(
        "{what} was replaced after it was checked (checked file {}, now {}): the file now \
         there was not moved; left alone",
        held.id,
        found.map_or_else(|| "nothing".to_owned(), |id| id.to_string())
    ))
}

/// Moves the checked file `held` (named `what` in messages) to `dest`.
pub fn move_file(
    held: &Held,
    dest: &Dest,
    overwrite: bool,
    what: &str,
) -> Result<Placed, ActionError> {
    held.unchanged(what)?;
    let linked = if overwrite {
        temp_name()
    } else {
        dest.name.clone()
    };
    match rustix::fs::linkat(
        &held.dir,
        held.name.as_str(),
        &dest.dir,
        linked.as_str(),
        AtFlags::empty(),
    ) {
        Ok(()) => {}
        Err(Errno::XDEV) => {
            // Another filesystem: copy the checked descriptor, then take the source away.
            let placed = copy_file(held, dest, overwrite, what)?;
            remove_source(held, what)?;
            return Ok(placed);
        }
        Err(Errno::EXIST) => {
            // Done by an earlier run (the same file is there), or the same bytes are there.
            let there = Held::id_at(&dest.dir, &dest.name);
            let same = there == Some(held.id)
                || match dest.open() {
                    Ok(Some(other)) => other.sha256()? == held.sha256()?,
                    _ => false,
                };
            if !same {
                return Err(ActionError::permanent(format!(
                    "{} already exists with other content (set overwrite, or use ${{UUID}} in \
                     the destination)",
                    dest.file.display()
                )));
            }
            remove_source(held, what)?;
            return Ok(Placed::Already);
        }
        Err(Errno::NOENT) => {
            return Err(ActionError::permanent(format!(
                "{what} is gone (moved or deleted since the event)"
            )));
        }
        Err(e) => return Err(sys(&format!("cannot move to {}", dest.file.display()), e)),
    }
    // The name was linked, not the descriptor: whatever stood at the name then is what
    // arrived. Only the checked file may stay.
    let arrived = Held::id_at(&dest.dir, &linked);
    if arrived != Some(held.id) || !held.content_unchanged() {
        let _ = rustix::fs::unlinkat(&dest.dir, linked.as_str(), AtFlags::empty());
        return Err(if arrived == Some(held.id) {
            ActionError::refused(format!(
                "{what} was written to after it was checked; left alone"
            ))
        } else {
            replaced(what, held, arrived)
        });
    }
    if overwrite
        && let Err(e) =
            rustix::fs::renameat(&dest.dir, linked.as_str(), &dest.dir, dest.name.as_str())
    {
        let _ = rustix::fs::unlinkat(&dest.dir, linked.as_str(), AtFlags::empty());
        return Err(sys(&format!("cannot move to {}", dest.file.display()), e));
    }
    sync(&dest.dir);
    remove_source(held, what)?;
    detach(held, dest, what)?;
    Ok(Placed::Now)
}

/// Removes the checked file `held` (named `what` in messages), if it is unchanged and
/// still at its name.
pub fn remove_file(held: &Held, what: &str) -> Result<(), ActionError> {
    held.unchanged(what)?;
    remove_source(held, what)
}

/// Gives the moved file its own inode when it still has another name (a hard link the
/// account made), unless it stayed in its folder: through that name the account could
/// otherwise change the delivered file after its check.
fn detach(held: &Held, dest: &Dest, what: &str) -> Result<(), ActionError> {
    let names = rustix::fs::fstat(&held.file).map_or(1, |st| st.st_nlink);
    let same_folder = match (rustix::fs::fstat(&held.dir), rustix::fs::fstat(&dest.dir)) {
        (Ok(a), Ok(b)) => FileId::of(&a) == FileId::of(&b),
        _ => false,
    };
    if names <= 1 || same_folder {
        return Ok(());
    }
    copy_file(held, dest, true, what).map(|_| ())
}

/// Takes the source name away if it still is `held`'s file; a file put there meanwhile is
/// put back.
fn remove_source(held: &Held, what: &str) -> Result<(), ActionError> {
    let taken = temp_name();
    match rustix::fs::renameat(&held.dir, held.name.as_str(), &held.dir, taken.as_str()) {
        Ok(()) => {}
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(sys(&format!("cannot remove {what}"), e)),
    }
    if Held::id_at(&held.dir, &taken) == Some(held.id) {
        rustix::fs::unlinkat(&held.dir, taken.as_str(), AtFlags::empty())
            .map_err(|e| sys(&format!("cannot remove {what}"), e))?;
        sync(&held.dir);
        return Ok(());
    }
    // Another file took the name after the check: it is not ours to remove.
    let back = rustix::fs::renameat_with(
        &held.dir,
        taken.as_str(),
        &held.dir,
        held.name.as_str(),
        RenameFlags::NOREPLACE,
    );
    if back.is_err() {
        // Yet another file holds the name now; keep this one visible beside it.
        let kept = format!("{}-{}", uuid::Uuid::new_v4(), held.name);
        let _ = rustix::fs::renameat(&held.dir, taken.as_str(), &held.dir, kept.as_str());
        tracing::warn!(file = %what, kept = %kept, "a file renamed over a handler's source was kept under another name");
    }
    Ok(())
}

/// Copies the checked file `held` to `dest`, reading its descriptor, through a hidden
/// temporary name in the destination folder.
pub fn copy_file(
    held: &Held,
    dest: &Dest,
    overwrite: bool,
    what: &str,
) -> Result<Placed, ActionError> {
    if let Some(there) = dest.open()? {
        // The same inode is not a copy (see `detach`); the same bytes are.
        if there.id != held.id && there.sha256()? == held.sha256()? {
            return Ok(Placed::Already);
        }
        if !overwrite {
            return Err(ActionError::permanent(format!(
                "{} already exists with other content (set overwrite, or use ${{UUID}} in the \
                 destination)",
                dest.file.display()
            )));
        }
    }
    let expected = held.sha256()?;
    let temp = temp_name();
    let mode = rustix::fs::fstat(&held.file).map_or(0o644, |st| st.st_mode & 0o777);
    let fd = rustix::fs::openat(
        &dest.dir,
        temp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
    .map_err(|e| sys(&format!("cannot copy to {}", dest.file.display()), e))?;
    let result = (|| {
        let copied = copy_bytes(&held.file, &mut File::from(fd))?;
        if copied != expected {
            return Err(ActionError::refused(format!(
                "{what} changed while it was copied (SHA-256 {copied}, checked {expected}); \
                 nothing was copied"
            )));
        }
        let placed = if overwrite {
            rustix::fs::renameat(&dest.dir, temp.as_str(), &dest.dir, dest.name.as_str())
        } else {
            rustix::fs::linkat(
                &dest.dir,
                temp.as_str(),
                &dest.dir,
                dest.name.as_str(),
                AtFlags::empty(),
            )
        };
        match placed {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => Err(ActionError::permanent(format!(
                "{} appeared meanwhile; left as it is",
                dest.file.display()
            ))),
            Err(e) => Err(sys(&format!("cannot copy to {}", dest.file.display()), e)),
        }
    })();
    let _ = rustix::fs::unlinkat(&dest.dir, temp.as_str(), AtFlags::empty());
    result?;
    sync(&dest.dir);
    Ok(Placed::Now)
}

/// The extended attribute that names the handler job that made a file, so a retried job
/// recognises its own output (an encryption is never the same bytes twice).
const MADE_BY: &str = "user.wharf.made_by";

/// Whether `dest` holds a file the job `marker` made.
pub fn made_by(dest: &Dest, marker: &str) -> bool {
    let Ok(Some(there)) = dest.open() else {
        return false;
    };
    let mut buf = [0u8; 128];
    rustix::fs::fgetxattr(&there.file, MADE_BY, &mut buf[..])
        .is_ok_and(|n| buf.get(..n) == Some(marker.as_bytes()))
}

/// Makes a new file at `dest` from what `write` writes, through a hidden temporary name in
/// its folder, flushed, marked as made by `marker`, then linked into place; an existing
/// file at `dest` is never replaced. What `write` answers is answered.
pub fn write_new<T>(
    dest: &Dest,
    marker: &str,
    write: impl FnOnce(&mut File) -> Result<T, ActionError>,
) -> Result<T, ActionError> {
    let temp = temp_name();
    let fd = rustix::fs::openat(
        &dest.dir,
        temp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o640),
    )
    .map_err(|e| sys(&format!("cannot write {}", dest.file.display()), e))?;
    let result = (|| {
        let mut file = File::from(fd);
        let answer = write(&mut file)?;
        // Where the filesystem keeps no extended attributes, a retry finds the name taken
        // and says so rather than writing twice.
        let _ = rustix::fs::fsetxattr(
            &file,
            MADE_BY,
            marker.as_bytes(),
            rustix::fs::XattrFlags::empty(),
        );
        file.sync_all().map_err(|e| {
            ActionError::retry(format!("cannot write {}: {e}", dest.file.display()))
        })?;
        match rustix::fs::linkat(
            &dest.dir,
            temp.as_str(),
            &dest.dir,
            dest.name.as_str(),
            AtFlags::empty(),
        ) {
            Ok(()) => Ok(answer),
            Err(Errno::EXIST) => Err(ActionError::permanent(format!(
                "{} already exists; left as it is",
                dest.file.display()
            ))),
            Err(e) => Err(sys(&format!("cannot write {}", dest.file.display()), e)),
        }
    })();
    let _ = rustix::fs::unlinkat(&dest.dir, temp.as_str(), AtFlags::empty());
    sync(&dest.dir);
    result
}

/// Copies `from` (through its descriptor, from the start) to `to`, flushed; answers the
/// SHA-256 of what was written.
fn copy_bytes(from: &File, to: &mut File) -> Result<String, ActionError> {
    let fail = |e: io::Error| ActionError::retry(format!("cannot copy: {e}"));
    let mut context = digest::Context::new(&digest::SHA256);
    let mut buffer = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        let n = from.read_at(&mut buffer, offset).map_err(fail)?;
        if n == 0 {
            break;
        }
        context.update(&buffer[..n]);
        to.write_all(&buffer[..n]).map_err(fail)?;
        offset += n as u64;
    }
    to.sync_all().map_err(fail)?;
    Ok(hex(context.finish().as_ref()))
}

fn sync(dir: &impl AsFd) {
    let _ = rustix::fs::fsync(dir);
}

/// The sidecar written next to a quarantined file.
#[derive(Serialize)]
struct Sidecar<'a> {
    reason: &'a str,
    handler: &'a str,
    original: String,
    quarantined_as: String,
    event: &'a AuditRecord,
}

/// What goes to quarantine: the file and its companions (such as its signature).
pub struct ToQuarantine<'a> {
    /// The file.
    pub subject: &'a Subject,
    /// The file, opened and checked.
    pub held: &'a Held,
    /// Files that go with it, opened from its folder.
    pub companions: &'a [Held],
}

/// Moves the file (and its companions) into `folder` as `<uuid>-<name>`, after writing
/// `<uuid>-<name>.json` saying why. Answers where the file went, and which file it is
/// there.
pub fn quarantine(
    what: ToQuarantine<'_>,
    folder: &Path,
    uuid: &str,
    reason: &str,
    handler: &str,
    record: &AuditRecord,
) -> Result<(PathBuf, Option<FileId>), ActionError> {
    let held = what.held;
    let name = &what.subject.name;
    let target = folder.join(format!("{uuid}-{name}"));
    let dest = quarantine_place(folder, &target)?;
    let text = serde_json::to_vec_pretty(&Sidecar {
        reason,
        handler,
        original: what.subject.file.display().to_string(),
        quarantined_as: target.display().to_string(),
        event: record,
    })
    .map_err(|e| ActionError::permanent(e.to_string()))?;
    let sidecar = format!("{uuid}-{name}.json");
    write_atomically(&dest.dir, &sidecar, &text)?;
    if let Err(e) = move_file(held, &dest, false, &what.subject.path) {
        if e.refused {
            // Nothing was quarantined: no sidecar says otherwise.
            let _ = rustix::fs::unlinkat(&dest.dir, sidecar.as_str(), AtFlags::empty());
        }
        return Err(e);
    }
    for companion in what.companions {
        let name = format!("{uuid}-{}", companion.name);
        let dest = dest.sibling(name.clone(), folder.join(name))?;
        move_file(companion, &dest, false, &companion.name)?;
    }
    Ok((target, dest.id()))
}

/// The quarantine folder (created private, outside every home) and `target`'s name in it.
pub fn quarantine_place(folder: &Path, target: &Path) -> Result<Dest, ActionError> {
    create_private_folder(folder, 0o700)?;
    destination(
        target,
        &[Base {
            folder: folder.to_owned(),
            create: false,
        }],
    )
}

/// Creates a folder named by the configuration (never by an event) and those above it.
fn create_private_folder(folder: &Path, mode: u32) -> Result<(), ActionError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(folder)
        .map_err(|e| ActionError::retry(format!("cannot create {}: {e}", folder.display())))
}

fn write_atomically(dir: &OwnedFd, name: &str, data: &[u8]) -> Result<(), ActionError> {
    let temp = temp_name();
    let result = (|| {
        let fd = rustix::fs::openat(
            dir,
            temp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let mut file = File::from(fd);
        file.write_all(data)?;
        file.sync_all()?;
        rustix::fs::renameat(dir, temp.as_str(), dir, name)?;
        Ok::<(), io::Error>(())
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(dir, temp.as_str(), AtFlags::empty());
    }
    result.map_err(|e| ActionError::retry(format!("cannot write {name}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subject::subject;
    use std::collections::BTreeMap;
    use std::fs;

    fn record(home: &Path, path: &str) -> AuditRecord {
        let json = serde_json::json!({
            "seq": 1, "id": 30002, "name": "upload.finished", "time": "2026-01-01T00:00:00Z",
            "node": "n", "path": path, "outcome": "success", "prev": "", "hash": "h",
            "attrs": BTreeMap::from([("home".to_owned(), home.display().to_string())]),
        });
        serde_json::from_value(json).unwrap()
    }

    fn base(folder: &Path) -> Vec<Base> {
        vec![Base {
            folder: folder.to_owned(),
            create: true,
        }]
    }

    #[test]
    fn a_move_run_twice_is_done_once() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        fs::create_dir_all(&home).unwrap();
        fs::write(home.join("a.csv"), b"data").unwrap();
        let rec = record(&home, "/a.csv");
        let subject = subject(&rec).unwrap();
        let held = subject.open_checked(&rec).unwrap();
        let out = dir.path().join("out");
        let dest = destination(&out.join("x/a.csv"), &base(&out)).unwrap();
        assert_eq!(
            move_file(&held, &dest, false, "/a.csv").unwrap(),
            Placed::Now
        );
        assert_eq!(fs::read(out.join("x/a.csv")).unwrap(), b"data");
        assert!(!home.join("a.csv").exists());
        // The rerun finds the source gone and the destination holding the file.
        assert!(subject.open().unwrap().is_none());
        assert!(dest.holds(&rec));
    }

    #[test]
    fn a_move_never_replaces_other_content() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        fs::create_dir_all(&home).unwrap();
        fs::write(home.join("a.csv"), b"new").unwrap();
        fs::write(home.join("b.csv"), b"old").unwrap();
        let rec = record(&home, "/a.csv");
        let held = subject(&rec).unwrap().open_checked(&rec).unwrap();
        let dest = destination(&home.join("b.csv"), &base(&home)).unwrap();
        let err = move_file(&held, &dest, false, "/a.csv").unwrap_err();
        assert!(err.permanent && !err.refused);
        assert_eq!(fs::read(home.join("b.csv")).unwrap(), b"old");
        assert_eq!(fs::read(home.join("a.csv")).unwrap(), b"new");
    }

    #[test]
    fn a_file_renamed_over_the_checked_one_is_not_moved() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        fs::create_dir_all(&home).unwrap();
        fs::write(home.join("a.csv"), b"signed").unwrap();
        let rec = record(&home, "/a.csv");
        let held = subject(&rec).unwrap().open_checked(&rec).unwrap();
        fs::write(home.join("evil"), b"unsigned").unwrap();
        fs::rename(home.join("evil"), home.join("a.csv")).unwrap();
        let out = dir.path().join("valid");
        let dest = destination(&out.join("a.csv"), &base(&out)).unwrap();
        let err = move_file(&held, &dest, false, "/a.csv").unwrap_err();
        assert!(err.refused, "{err:?}");
        assert!(!out.join("a.csv").exists());
        assert_eq!(fs::read(home.join("a.csv")).unwrap(), b"unsigned");
    }

    #[test]
    fn a_destination_folder_swapped_for_a_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let outside = dir.path().join("outside");
        fs::create_dir_all(&home).unwrap();
        fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, home.join("incoming")).unwrap();
        let err = destination(&home.join("incoming/a.csv"), &base(&home))
            .err()
            .unwrap();
        assert!(err.refused);
        let err = destination(&home.join("incoming/deeper/a.csv"), &base(&home))
            .err()
            .unwrap();
        assert!(err.refused);
        assert!(fs::read_dir(&outside).unwrap().next().is_none());
    }

    #[test]
    fn a_file_with_another_name_in_the_home_arrives_as_its_own_copy() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        fs::create_dir_all(&home).unwrap();
        fs::write(home.join("a.csv"), b"checked").unwrap();
        fs::hard_link(home.join("a.csv"), home.join("other-name")).unwrap();
        let rec = record(&home, "/a.csv");
        let held = subject(&rec).unwrap().open_checked(&rec).unwrap();
        let out = dir.path().join("out");
        let dest = destination(&out.join("a.csv"), &base(&out)).unwrap();
        assert_eq!(
            move_file(&held, &dest, false, "/a.csv").unwrap(),
            Placed::Now
        );
        fs::write(home.join("other-name"), b"changed later").unwrap();
        assert_eq!(fs::read(out.join("a.csv")).unwrap(), b"checked");
        assert!(!home.join("a.csv").exists());
    }

    #[test]
    fn a_copy_reads_the_checked_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        fs::create_dir_all(&home).unwrap();
        fs::write(home.join("a.csv"), b"first").unwrap();
        let rec = record(&home, "/a.csv");
        let held = subject(&rec).unwrap().open_checked(&rec).unwrap();
        fs::write(home.join("b"), b"second").unwrap();
        fs::rename(home.join("b"), home.join("a.csv")).unwrap();
        let out = dir.path().join("out");
        let dest = destination(&out.join("a.csv"), &base(&out)).unwrap();
        assert_eq!(
            copy_file(&held, &dest, false, "/a.csv").unwrap(),
            Placed::Now
        );
        assert_eq!(fs::read(out.join("a.csv")).unwrap(), b"first");
        assert_eq!(
            copy_file(&held, &dest, false, "/a.csv").unwrap(),
            Placed::Already
        );
    }
}
