//! The file an event is about, and the moves, copies and quarantines handlers make.
//!
//! Every operation here may run twice for one event (a crash after the effect, before the
//! job was marked done), so each one recognises its own finished work: a move whose source
//! is gone and whose destination holds the event's SHA-256 is already done; a copy whose
//! destination holds the same bytes is already done. A file never appears half-written
//! under a destination name: copies go to a hidden temporary name in the destination
//! folder, are flushed to disk, then linked into place. Without `overwrite`, an existing,
//! different destination is never replaced (the link fails instead of replacing). Links
//! and folders are never followed or moved: a handler only acts on regular files.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use aws_lc_rs::digest;
use serde::Serialize;
use wharf_store::AuditRecord;

use crate::ActionError;

/// The file an event is about, where it is now.
#[derive(Debug, Clone)]
pub struct Subject {
    /// Its path on the server.
    pub file: PathBuf,
    /// The account's home folder on the server, when the event names it.
    pub home: Option<PathBuf>,
    /// Its path as the account sees (or last saw) it.
    pub path: String,
    /// Its name.
    pub name: String,
    /// Whether `file` was found from the home and the path (not named by a handler).
    pub in_home: bool,
}

impl Subject {
    /// Checks that a file found from the home is still beneath it once links in its
    /// folders are resolved: the client's folders must not lead a handler elsewhere.
    pub fn confined(&self) -> Result<(), ActionError> {
        let (true, Some(home)) = (self.in_home, &self.home) else {
            return Ok(());
        };
        let parent = self.file.parent().unwrap_or(home);
        let (Ok(home), Ok(parent)) = (fs::canonicalize(home), fs::canonicalize(parent)) else {
            // Gone: the action finds that out and says so.
            return Ok(());
        };
        if parent.starts_with(&home) {
            Ok(())
        } else {
            Err(ActionError::permanent(format!(
                "{} leads outside the account's home; left alone",
                self.path
            )))
        }
    }
}

/// Events whose file is at `path2` (the destination) rather than `path`.
const AT_PATH2: &[u32] = &[30021, 30026];

/// The file `record` is about, if it is about one: handlers' own events say where they
/// left it (`attrs.file`); the core's file events give the account's home and the path.
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
    let plain = path.starts_with('/')
        && !path.contains('\0')
        && Path::new(&path)
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !plain {
        return None;
    }
    let (file, in_home) = match record.attrs.get("file") {
        Some(file) => (PathBuf::from(file), false),
        None => (home.as_ref()?.join(path.trim_start_matches('/')), true),
    };
    let name = file.file_name()?.to_string_lossy().into_owned();
    Some(Subject {
        file,
        home,
        path,
        name,
        in_home,
    })
}

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut context = digest::Context::new(&digest::SHA256);
    let mut file = fs::File::open(path)?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        context.update(&buffer[..n]);
    }
    Ok(context
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn io_error(what: &str, path: &Path, e: &io::Error) -> ActionError {
    ActionError::retry(format!("{what} {}: {e}", path.display()))
}

/// Checks that `path` is a regular file (not a link, not a folder); `Ok(false)` when it is
/// not there.
fn regular_file(path: &Path) -> Result<bool, ActionError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() => Ok(true),
        Ok(_) => Err(ActionError::permanent(format!(
            "{} is not a regular file (a link or a folder); left alone",
            path.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("cannot look at", path, &e)),
    }
}

fn same_content(path: &Path, sha256: &str) -> bool {
    sha256_file(path).is_ok_and(|h| h == sha256)
}

fn make_parent(path: &Path) -> Result<(), ActionError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| io_error("cannot create", parent, &e))?;
    }
    Ok(())
}

fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent()
        && let Ok(dir) = fs::File::open(parent)
    {
        let _ = dir.sync_all();
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

/// Moves `from` to `to`. `sha256`, the content the event recorded, tells a finished earlier
/// run from a file that went away.
pub fn move_file(
    from: &Path,
    to: &Path,
    overwrite: bool,
    sha256: Option<&str>,
) -> Result<Placed, ActionError> {
    if !regular_file(from)? {
        if regular_file(to)? && sha256.is_none_or(|h| same_content(to, h)) {
            return Ok(Placed::Already);
        }
        return Err(ActionError::permanent(format!(
            "{} is gone (moved or deleted since the event)",
            from.display()
        )));
    }
    if from == to {
        return Ok(Placed::Already);
    }
    make_parent(to)?;
    if regular_file(to)? && !overwrite {
        let here = sha256_file(from).map_err(|e| io_error("cannot read", from, &e))?;
        if same_content(to, &here) {
            fs::remove_file(from).map_err(|e| io_error("cannot remove", from, &e))?;
            return Ok(Placed::Already);
        }
        return Err(ActionError::permanent(format!(
            "{} already exists with other content (set overwrite, or use ${{UUID}} in the destination)",
            to.display()
        )));
    }
    let linked = if overwrite {
        fs::rename(from, to)
    } else {
        // A hard link never replaces an existing name, so a file arriving at the
        // destination meanwhile is kept; the source name goes once the link is made.
        fs::hard_link(from, to).and_then(|()| fs::remove_file(from))
    };
    match linked {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(18) => {
            // EXDEV: another filesystem, so copy, then remove the source.
            copy_file(from, to, overwrite)?;
            fs::remove_file(from).map_err(|e| io_error("cannot remove", from, &e))?;
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(ActionError::permanent(format!(
                "{} appeared meanwhile; left as it is",
                to.display()
            )));
        }
        Err(e) => return Err(io_error("cannot move to", to, &e)),
    }
    sync_parent(to);
    Ok(Placed::Now)
}

/// Copies `from` to `to` through a temporary name in the destination folder.
pub fn copy_file(from: &Path, to: &Path, overwrite: bool) -> Result<Placed, ActionError> {
    if !regular_file(from)? {
        return Err(ActionError::permanent(format!(
            "{} is gone (moved or deleted since the event)",
            from.display()
        )));
    }
    make_parent(to)?;
    if regular_file(to)? {
        let here = sha256_file(from).map_err(|e| io_error("cannot read", from, &e))?;
        if same_content(to, &here) {
            return Ok(Placed::Already);
        }
        if !overwrite {
            return Err(ActionError::permanent(format!(
                "{} already exists with other content (set overwrite, or use ${{UUID}} in the destination)",
                to.display()
            )));
        }
    }
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = to.with_file_name(format!(".{name}.wharf-{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        fs::copy(from, &temp)?;
        fs::File::open(&temp)?.sync_all()?;
        if overwrite {
            fs::rename(&temp, to)
        } else {
            fs::hard_link(&temp, to)
        }
    })();
    let _ = fs::remove_file(&temp);
    match result {
        Ok(()) => {
            sync_parent(to);
            Ok(Placed::Now)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(ActionError::permanent(format!(
            "{} appeared meanwhile; left as it is",
            to.display()
        ))),
        Err(e) => Err(io_error("cannot copy to", to, &e)),
    }
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

/// Moves `subject` (and `companions`, such as its signature, when present) into `folder`
/// as `<uuid>-<name>`, after writing `<uuid>-<name>.json` saying why. Answers where the
/// file went.
pub fn quarantine(
    subject: &Subject,
    companions: &[PathBuf],
    folder: &Path,
    uuid: &str,
    reason: &str,
    handler: &str,
    record: &AuditRecord,
) -> Result<PathBuf, ActionError> {
    create_private_folder(folder)?;
    let target = folder.join(format!("{uuid}-{}", subject.name));
    let sidecar = folder.join(format!("{uuid}-{}.json", subject.name));
    let text = serde_json::to_vec_pretty(&Sidecar {
        reason,
        handler,
        original: subject.file.display().to_string(),
        quarantined_as: target.display().to_string(),
        event: record,
    })
    .map_err(|e| ActionError::permanent(e.to_string()))?;
    write_atomically(&sidecar, &text)?;
    move_file(&subject.file, &target, false, record.sha256.as_deref())?;
    for companion in companions {
        if let Some(name) = companion.file_name() {
            let to = folder.join(format!("{uuid}-{}", name.to_string_lossy()));
            if matches!(regular_file(companion), Ok(true)) {
                move_file(companion, &to, false, None)?;
            }
        }
    }
    Ok(target)
}

fn create_private_folder(folder: &Path) -> Result<(), ActionError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(folder)
        .map_err(|e| io_error("cannot create", folder, &e))
}

fn write_atomically(path: &Path, data: &[u8]) -> Result<(), ActionError> {
    let temp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut file = fs::File::create(&temp)?;
        file.write_all(data)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(|e| io_error("cannot write", path, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_run_twice_is_done_once() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("a.csv");
        let to = dir.path().join("out/a.csv");
        fs::write(&from, b"data").unwrap();
        let sha = sha256_file(&from).unwrap();
        assert_eq!(
            move_file(&from, &to, false, Some(&sha)).unwrap(),
            Placed::Now
        );
        assert_eq!(
            move_file(&from, &to, false, Some(&sha)).unwrap(),
            Placed::Already
        );
        assert_eq!(fs::read(&to).unwrap(), b"data");
    }

    #[test]
    fn a_move_never_replaces_other_content() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("a.csv");
        let to = dir.path().join("b.csv");
        fs::write(&from, b"new").unwrap();
        fs::write(&to, b"old").unwrap();
        let err = move_file(&from, &to, false, None).unwrap_err();
        assert!(err.permanent);
        assert_eq!(fs::read(&to).unwrap(), b"old");
        assert_eq!(fs::read(&from).unwrap(), b"new");
    }

    #[test]
    fn a_folder_link_out_of_the_home_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        fs::create_dir_all(&home).unwrap();
        std::os::unix::fs::symlink("/etc", home.join("upload")).unwrap();
        let subject = Subject {
            file: home.join("upload/passwd"),
            home: Some(home.clone()),
            path: "/upload/passwd".into(),
            name: "passwd".into(),
            in_home: true,
        };
        assert!(subject.confined().unwrap_err().permanent);
        fs::remove_file(home.join("upload")).unwrap();
        fs::create_dir(home.join("upload")).unwrap();
        assert!(subject.confined().is_ok());
    }

    #[test]
    fn links_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        let err = move_file(&link, &dir.path().join("x"), false, None).unwrap_err();
        assert!(err.permanent);
    }
}
