//! JSON-lines files: one record per line, appended under an exclusive lock, rotated by size
//! or age, with a retention count.
//!
//! A rotated file is renamed to `<file>.<seq of its first record, 12 digits>`, so the
//! segments sort in trail order and `wharf audit verify` reads them as one stream
//! ([`segments`]). Writers from several processes take the lock on the file and then check
//! that the name still leads to the file they locked: a writer that waited while another
//! rotated opens the new file instead of appending to the old one, so records never land
//! in a segment out of order.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wharf_store::AuditRecord;

/// When a file is rotated, and how many rotated files are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate once the file reaches this many bytes (0: never).
    pub max_bytes: u64,
    /// Rotate once the file's first record is this old (zero: never).
    pub max_age: Duration,
    /// Rotated files kept, the newest (0: all).
    pub keep: usize,
}

/// A JSON-lines file.
#[derive(Debug, Clone)]
pub struct JsonLines {
    path: PathBuf,
    rotation: Rotation,
}

/// A JSON-lines file, locked for this writer until dropped.
pub struct Locked {
    file: File,
}

/// The files holding `path`'s records in trail order: its rotated segments, then the file
/// itself (when it exists).
pub fn segments(path: &Path) -> io::Result<Vec<PathBuf>> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut rotated = Vec::new();
    if parent.is_dir() {
        for entry in fs::read_dir(&parent)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(number) = name
                .strip_prefix(&base)
                .and_then(|rest| rest.strip_prefix('.'))
                && number.len() == 12
                && number.bytes().all(|b| b.is_ascii_digit())
            {
                rotated.push(name);
            }
        }
    }
    rotated.sort();
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|n| parent.join(n)).collect();
    if path.exists() {
        out.push(path.to_owned());
    }
    Ok(out)
}

fn first_record(file: &File) -> Option<AuditRecord> {
    use std::os::unix::fs::FileExt;
    // A record line is far below 256 KiB; the read does not move the append offset.
    let mut buffer = vec![0u8; 256 * 1024];
    let n = file.read_at(&mut buffer, 0).ok()?;
    let line = buffer[..n].split(|b| *b == b'\n').next()?;
    serde_json::from_slice(line).ok()
}

impl JsonLines {
    /// A file at `path` with `rotation`.
    pub fn new(path: PathBuf, rotation: Rotation) -> JsonLines {
        JsonLines { path, rotation }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_locked(&self) -> io::Result<File> {
        loop {
            let mut options = OpenOptions::new();
            options.create(true).append(true).read(true);
            let file = match options.open(&self.path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // A sink's folder is made on first use, like the file itself.
                    if let Some(parent) = self.path.parent() {
                        fs::create_dir_all(parent)?;
                    }
                    options.open(&self.path)?
                }
                other => other?,
            };
            file.lock()?;
            let held = file.metadata()?;
            match fs::metadata(&self.path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => return Ok(file),
                // Rotated while we waited: lock the file the name leads to now.
                _ => continue,
            }
        }
    }

    fn due(&self, file: &File) -> io::Result<bool> {
        let size = file.metadata()?.len();
        if size == 0 {
            return Ok(false);
        }
        if self.rotation.max_bytes > 0 && size >= self.rotation.max_bytes {
            return Ok(true);
        }
        if !self.rotation.max_age.is_zero()
            && let Some(first) = first_record(file)
            && let Ok(time) = wharf_types::rfc3339::parse(&first.time)
        {
            return Ok(time::OffsetDateTime::now_utc() - time >= self.rotation.max_age);
        }
        Ok(false)
    }

    fn rotate(&self, file: &File) -> io::Result<()> {
        let seq = first_record(file).map_or(0, |r| r.seq);
        let mut target = PathBuf::from(format!("{}.{seq:012}", self.path.display()));
        if target.exists() {
            // A segment starting at this record exists (its writer was cut off): keep both.
            target = PathBuf::from(format!(
                "{}.{seq:012}-{}",
                self.path.display(),
                time::OffsetDateTime::now_utc().unix_timestamp_nanos()
            ));
        }
        fs::rename(&self.path, &target)?;
        if self.rotation.keep > 0 {
            let all = segments(&self.path)?;
            let rotated: Vec<&PathBuf> = all.iter().filter(|p| **p != self.path).collect();
            for old in rotated
                .iter()
                .take(rotated.len().saturating_sub(self.rotation.keep))
            {
                fs::remove_file(old)?;
            }
        }
        Ok(())
    }

    /// Locks the file (rotating it first when due). Blocking: it may wait for a writer in
    /// another process.
    pub fn lock(&self) -> io::Result<Locked> {
        let file = self.open_locked()?;
        if self.due(&file)? {
            self.rotate(&file)?;
            // The old file stays locked until `file` drops, after the new one is ours.
            let fresh = self.open_locked()?;
            return Ok(Locked { file: fresh });
        }
        Ok(Locked { file })
    }

    /// Locks and appends `records` (for sinks that are not the main copy).
    pub async fn append(&self, records: &[&AuditRecord]) -> io::Result<()> {
        let text = lines(records.iter().copied())?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.lock()?.write_text(&text))
            .await
            .map_err(io::Error::other)?
    }
}

/// The records as JSON lines (serde_json escapes control characters, so one record is
/// always one line).
pub fn lines<'a>(records: impl Iterator<Item = &'a AuditRecord>) -> io::Result<String> {
    let mut text = String::new();
    for record in records {
        text.push_str(&serde_json::to_string(record)?);
        text.push('\n');
    }
    Ok(text)
}

impl Locked {
    /// Appends `records`.
    pub fn write(&mut self, records: &[AuditRecord]) -> io::Result<()> {
        self.write_text(&lines(records.iter())?)
    }

    fn write_text(&mut self, text: &str) -> io::Result<()> {
        self.file.write_all(text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: i64) -> AuditRecord {
        serde_json::from_value(serde_json::json!({
            "seq": seq, "id": 30002, "name": "upload.finished",
            "time": "2026-01-01T00:00:00.000000Z", "node": "n", "outcome": "success",
            "prev": "0", "hash": format!("{seq:064}"),
        }))
        .unwrap()
    }

    #[test]
    fn rotates_by_size_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let file = JsonLines::new(
            path.clone(),
            Rotation {
                max_bytes: 600,
                keep: 2,
                ..Rotation::default()
            },
        );
        for seq in 1..=20 {
            file.lock().unwrap().write(&[record(seq)]).unwrap();
        }
        let all = segments(&path).unwrap();
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!(*all.last().unwrap(), path);
        // In trail order, without gaps from the first kept record on.
        let mut seqs = Vec::new();
        for segment in &all {
            for line in fs::read_to_string(segment).unwrap().lines() {
                seqs.push(serde_json::from_str::<AuditRecord>(line).unwrap().seq);
            }
        }
        assert_eq!(seqs.last(), Some(&20));
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    }

    #[test]
    fn rotates_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let file = JsonLines::new(
            path.clone(),
            Rotation {
                max_age: Duration::from_secs(60),
                ..Rotation::default()
            },
        );
        // The records say 2026-01-01, long enough ago: each batch starts a new file.
        file.lock().unwrap().write(&[record(1)]).unwrap();
        file.lock().unwrap().write(&[record(2)]).unwrap();
        assert_eq!(segments(&path).unwrap().len(), 2);
    }
}
