//! The node's spill file: audit records that could not reach the store yet, kept on disk in
//! the order they happened until the writer has put them in the store.
//!
//! Records are written unnumbered (as JSON lines, [`wharf_store::AuditRecord::unnumbered`]),
//! each append followed by an fsync: a record in this file is durable, and a file operation
//! waiting for it may be answered. The writer reads the file from the front in chunks; after
//! a chunk is in the store it records how far it got in a small side file (`<file>.done`, written
//! whole and renamed, so a crash leaves the old or the new offset). A crash between the
//! store's commit and that write leaves a chunk that is already in the store: the writer
//! recognises it by the node's last record in the store (see `crate::audit`), so nothing is
//! written twice. When the whole file is in the store both files are removed.
//!
//! This module must never number or chain records (that is the store's, under its lock),
//! and never drop a line that parses.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use wharf_store::AuditRecord;

/// The spill file of one node.
#[derive(Debug, Clone)]
pub struct Spill {
    path: PathBuf,
}

/// A chunk read from the front of the spill file.
pub struct Chunk {
    /// The records, in order.
    pub records: Vec<AuditRecord>,
    /// Where the file goes on after them.
    pub end: u64,
}

impl Spill {
    /// The spill file at `path`.
    pub fn new(path: PathBuf) -> Spill {
        Spill { path }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn done_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".done");
        PathBuf::from(name)
    }

    /// Whether records wait in the file.
    pub fn pending(&self) -> io::Result<bool> {
        match fs::metadata(&self.path) {
            Ok(meta) if !meta.is_file() => Err(io::Error::other("not a regular file")),
            Ok(meta) => Ok(meta.len() > self.offset()?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// How many records wait in the file (for `wharf audit verify`).
    pub fn count(&self) -> io::Result<usize> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        file.seek(SeekFrom::Start(self.offset()?))?;
        Ok(BufReader::new(file).lines().count())
    }

    fn offset(&self) -> io::Result<u64> {
        match fs::read_to_string(self.done_path()) {
            Ok(text) => Ok(text.trim().parse().unwrap_or(0)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Appends `records` and makes them durable.
    pub fn append(&self, records: &[AuditRecord]) -> io::Result<()> {
        let mut text = String::new();
        for record in records {
            text.push_str(&serde_json::to_string(record).map_err(io::Error::other)?);
            text.push('\n');
        }
        let created = !self.path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.path)?;
        let size = file.metadata()?.len();
        if size > 0 {
            // A line cut short by a crash (never confirmed) must not swallow the next one.
            use std::os::unix::fs::FileExt;
            let mut last = [0u8; 1];
            file.read_exact_at(&mut last, size - 1)?;
            if last[0] != b'\n' {
                text.insert(0, '\n');
            }
        }
        file.write_all(text.as_bytes())?;
        file.sync_data()?;
        if created {
            // The file's name is durable only once its folder is.
            sync_parent(&self.path)?;
        }
        Ok(())
    }

    /// Up to `max` records from the front (a line cut short by a crash ends the file).
    pub fn front(&self, max: usize) -> io::Result<Chunk> {
        let start = self.offset()?;
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Chunk {
                    records: Vec::new(),
                    end: start,
                });
            }
            Err(e) => return Err(e),
        };
        file.seek(SeekFrom::Start(start))?;
        let mut reader = BufReader::new(file);
        let mut records = Vec::new();
        let mut end = start;
        let mut line = String::new();
        while records.len() < max {
            line.clear();
            let n = reader.read_line(&mut line)?;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            end += n as u64;
            match serde_json::from_str::<AuditRecord>(&line) {
                Ok(record) => records.push(record),
                Err(e) => {
                    // Only a damaged disk makes a whole line unreadable: say so, go on.
                    tracing::error!(file = %self.path.display(), at = end - n as u64, error = %e, "unreadable line in the audit spill file skipped");
                }
            }
        }
        Ok(Chunk { records, end })
    }

    /// Records that the file up to `end` is in the store; removes both files once all of
    /// it is.
    pub fn consumed(&self, end: u64) -> io::Result<()> {
        let size = fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if end >= size {
            fs::remove_file(&self.path).or_else(ignore_missing)?;
            fs::remove_file(self.done_path()).or_else(ignore_missing)?;
            return sync_parent(&self.path);
        }
        let done = self.done_path();
        let mut temp = done.as_os_str().to_owned();
        temp.push(".new");
        let temp = PathBuf::from(temp);
        {
            let mut file = File::create(&temp)?;
            file.write_all(end.to_string().as_bytes())?;
            file.sync_data()?;
        }
        fs::rename(&temp, &done)?;
        sync_parent(&done)
    }
}

fn ignore_missing(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => File::open(parent)?.sync_all(),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_core::{Event, EventKind};

    fn records(n: usize) -> Vec<AuditRecord> {
        (0..n)
            .map(|i| {
                AuditRecord::unnumbered(
                    "a",
                    &Event::new(EventKind::FileDeleted).path(format!("/f{i}")),
                )
            })
            .collect()
    }

    #[test]
    fn records_come_back_in_order_and_the_file_goes_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Spill::new(dir.path().join("audit-spill.jsonl"));
        assert!(!spill.pending().unwrap());
        let all = records(5);
        spill.append(&all[..3]).unwrap();
        spill.append(&all[3..]).unwrap();
        assert_eq!(spill.count().unwrap(), 5);
        let first = spill.front(2).unwrap();
        assert_eq!(first.records, all[..2]);
        spill.consumed(first.end).unwrap();
        // A restart reads on from the offset kept on disk.
        let again = Spill::new(dir.path().join("audit-spill.jsonl"));
        assert_eq!(again.count().unwrap(), 3);
        let rest = again.front(10).unwrap();
        assert_eq!(rest.records, all[2..]);
        again.consumed(rest.end).unwrap();
        assert!(!again.pending().unwrap());
        assert!(!dir.path().join("audit-spill.jsonl").exists());
        assert!(!dir.path().join("audit-spill.jsonl.done").exists());
    }

    #[test]
    fn a_line_cut_short_ends_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Spill::new(dir.path().join("s.jsonl"));
        spill.append(&records(2)).unwrap();
        let mut file = OpenOptions::new().append(true).open(spill.path()).unwrap();
        file.write_all(b"{\"seq\":0,").unwrap();
        assert_eq!(spill.front(10).unwrap().records.len(), 2);
        // The next append starts on a line of its own: only the cut line is lost.
        spill.append(&records(1)).unwrap();
        assert_eq!(spill.front(10).unwrap().records.len(), 3);
    }
}
