//! What text a file holds, fed to the [`Scanner`]: the file's own bytes; for a ZIP
//! archive (DOCX, XLSX and ODT are ZIP archives of XML parts), the text of each entry,
//! nested archives included; for gzip, what it holds; for a PDF document, its text (read
//! by the pdf-extract crate, up to 32 MiB); all within [`Limits`].
//!
//! An archive is recognised by its content, never by its name. Whatever the limits stop
//! (an archive that expands too far or too fast, too many entries, too deep a nesting,
//! entries that share their compressed data, an encrypted entry, a compression method
//! not read here) makes the file [`Unscannable`]: what could not be read could hold
//! anything, and the handler decides what that means. Memory stays bounded: entries are
//! streamed, and a nested archive is held in memory only up to [`Limits::nested`] bytes.

use std::io::{Cursor, Read, Seek, SeekFrom};

use zip::ZipArchive;

use super::scan::{CHUNK, Scanner};
use super::xml::Stripper;

/// How far a content check follows a file's content.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of text read in all, entries of archives included.
    pub max_bytes: u64,
    /// Entries of archives, all levels together.
    pub max_entries: u64,
    /// How many times an entry may expand (bytes out for a byte in).
    pub max_ratio: u64,
    /// Archives within archives (1: a ZIP file's entries are read, a ZIP inside is not).
    pub max_depth: u32,
    /// Largest nested archive (held in memory to be read).
    pub nested: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bytes: 1 << 30,
            max_entries: 10_000,
            max_ratio: 100,
            max_depth: 2,
            nested: 16 << 20,
        }
    }
}

/// Why a file's content could not be read whole.
#[derive(Debug)]
pub struct Unscannable(pub String);

/// Why a walk stopped.
#[derive(Debug)]
pub enum Stop {
    /// The content is beyond the limits or unreadable as what it claims to be.
    Unscannable(Unscannable),
    /// Reading the file itself failed (worth trying again).
    Io(std::io::Error),
}

impl From<Unscannable> for Stop {
    fn from(u: Unscannable) -> Stop {
        Stop::Unscannable(u)
    }
}

fn unscannable(reason: impl Into<String>) -> Stop {
    Stop::Unscannable(Unscannable(reason.into()))
}

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// A walk over one file.
pub struct Walk<'s, 'r> {
    scanner: &'s mut Scanner<'r>,
    limits: Limits,
    bytes: u64,
    entries: u64,
}

impl<'s, 'r> Walk<'s, 'r> {
    /// A walk feeding `scanner` within `limits`.
    pub fn new(scanner: &'s mut Scanner<'r>, limits: Limits) -> Walk<'s, 'r> {
        Walk {
            scanner,
            limits,
            bytes: 0,
            entries: 0,
        }
    }

    /// Walks a whole file (read from its start).
    pub fn file<R: Read + Seek>(&mut self, mut file: R) -> Result<(), Stop> {
        let mut head = [0u8; 6];
        let n = read_up_to(&mut file, &mut head).map_err(Stop::Io)?;
        let head = &head[..n];
        let is_zip = head.starts_with(ZIP_MAGIC) || directory_end(&mut file)?.is_some();
        file.rewind().map_err(Stop::Io)?;
        if is_zip && self.limits.max_depth > 0 {
            return self.archive(file, 1);
        }
        if head.starts_with(GZIP_MAGIC) {
            let compressed = file.seek(SeekFrom::End(0)).map_err(Stop::Io)?;
            file.rewind().map_err(Stop::Io)?;
            let mut unzipped = flate2::read::MultiGzDecoder::new(file);
            return self.text(&mut unzipped, Some(compressed), false);
        }
        if head.starts_with(PDF_MAGIC) {
            let mut pdf = Vec::new();
            (&mut file)
                .take(MAX_PDF + 1)
                .read_to_end(&mut pdf)
                .map_err(Stop::Io)?;
            return self.pdf(&pdf);
        }
        if let Some(format) = unread_format(head) {
            return Err(unscannable(format!(
                "{format} content is not read by content checks"
            )));
        }
        self.text(&mut file, None, head.starts_with(b"<?xml"))
    }

    /// Feeds a stream's text to the scanner; `ratio_of` bounds its expansion.
    fn text(
        &mut self,
        reader: &mut dyn Read,
        ratio_of: Option<u64>,
        xml: bool,
    ) -> Result<(), Stop> {
        let mut buffer = vec![0u8; CHUNK];
        let mut stripper = xml.then(Stripper::default);
        let mut stripped = Vec::new();
        let mut read = 0u64;
        loop {
            let n = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if ratio_of.is_some() => {
                    return Err(unscannable(format!("an archive entry cannot be read: {e}")));
                }
                Err(e) => return Err(Stop::Io(e)),
            };
            read += n as u64;
            self.count(n as u64, read, ratio_of)?;
            match &mut stripper {
                Some(s) => {
                    stripped.clear();
                    s.feed(&buffer[..n], &mut stripped);
                    self.scanner.feed(&stripped);
                }
                None => self.scanner.feed(&buffer[..n]),
            }
        }
        self.scanner.end_stream();
        Ok(())
    }

    /// Feeds the text of a PDF document (read whole: the PDF format is not read as a
    /// stream) to the scanner.
    fn pdf(&mut self, pdf: &[u8]) -> Result<(), Stop> {
        if pdf.len() as u64 > MAX_PDF {
            return Err(unscannable(format!(
                "a PDF document is larger than {MAX_PDF} bytes"
            )));
        }
        // The PDF reader is another's code meeting hostile input: a panic in it is a
        // document that cannot be read, not a stopped job.
        let text = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem(pdf))
            .map_err(|_| unscannable("a PDF document cannot be read"))?
            .map_err(|e| {
                let reason: String = e
                    .to_string()
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(120)
                    .collect();
                unscannable(format!("a PDF document cannot be read: {reason}"))
            })?;
        self.text(&mut Cursor::new(text.into_bytes()), None, false)
    }

    fn count(&mut self, n: u64, entry_read: u64, ratio_of: Option<u64>) -> Result<(), Stop> {
        self.bytes += n;
        if self.bytes > self.limits.max_bytes {
            return Err(unscannable(format!(
                "the content expands past {} bytes (the check's max_bytes)",
                self.limits.max_bytes
            )));
        }
        if let Some(compressed) = ratio_of
            && entry_read > compressed.max(4096).saturating_mul(self.limits.max_ratio)
        {
            return Err(unscannable(format!(
                "an archive entry expands more than {} times (the check's max_ratio): a \
                 compression bomb",
                self.limits.max_ratio
            )));
        }
        Ok(())
    }

    fn archive<R: Read + Seek>(&mut self, mut reader: R, depth: u32) -> Result<(), Stop> {
        // The directory is read whole by the ZIP reader: its declared size and count are
        // checked first, so a directory of millions of entries is refused before it is read.
        if let Some((entries, size)) = directory_end(&mut reader)? {
            let room = self.limits.max_entries.saturating_sub(self.entries);
            if entries > room || size > room.saturating_mul(MAX_DIRECTORY_RECORD) {
                return Err(unscannable(format!(
                    "the archives hold more than {} entries (the check's max_entries)",
                    self.limits.max_entries
                )));
            }
        }
        reader.rewind().map_err(Stop::Io)?;
        let mut archive = ZipArchive::new(reader)
            .map_err(|e| unscannable(format!("not a readable ZIP archive: {e}")))?;
        if self.entries.saturating_add(archive.len() as u64) > self.limits.max_entries {
            return Err(unscannable(format!(
                "the archives hold more than {} entries (the check's max_entries)",
                self.limits.max_entries
            )));
        }
        self.entries += archive.len() as u64;
        if archive.has_duplicate_names() {
            // Tools disagree on which of two same-named entries they extract: all are read
            // or none.
            return Err(unscannable("archive entries share a name"));
        }
        if archive
            .has_overlapping_files()
            .map_err(|e| unscannable(format!("not a readable ZIP archive: {e}")))?
        {
            return Err(unscannable(
                "archive entries share their compressed data: a compression bomb",
            ));
        }
        for index in 0..archive.len() {
            let mut entry = archive
                .by_index(index)
                .map_err(|e| unscannable(format!("archive entry {index} cannot be read: {e}")))?;
            // Folders are read too: a name the reader takes for a folder (`x\\`) may
            // still hold data that other tools extract.
            if entry.encrypted() {
                return Err(unscannable(format!("archive entry {index} is encrypted")));
            }
            let compressed = entry.compressed_size();
            let name = entry.name_raw().to_ascii_lowercase();
            let named_xml = name.ends_with(b".xml") || name.ends_with(b".rels");
            let mut head = [0u8; 5];
            let n = read_up_to(&mut entry, &mut head)
                .map_err(|e| unscannable(format!("archive entry {index} cannot be read: {e}")))?;
            if head[..n].starts_with(ZIP_MAGIC) {
                if depth >= self.limits.max_depth {
                    return Err(unscannable(format!(
                        "archives nested deeper than {} (the check's max_depth)",
                        self.limits.max_depth
                    )));
                }
                let mut inner = head[..n].to_vec();
                let mut limited =
                    (&mut entry).take(self.limits.nested.saturating_sub(n as u64) + 1);
                limited.read_to_end(&mut inner).map_err(|e| {
                    unscannable(format!("archive entry {index} cannot be read: {e}"))
                })?;
                if inner.len() as u64 > self.limits.nested {
                    return Err(unscannable(format!(
                        "a nested archive is larger than {} bytes",
                        self.limits.nested
                    )));
                }
                self.count(inner.len() as u64, inner.len() as u64, Some(compressed))?;
                drop(entry);
                self.archive(Cursor::new(inner), depth + 1)?;
                continue;
            }
            if head[..n].starts_with(PDF_MAGIC) {
                let mut pdf = head[..n].to_vec();
                (&mut entry)
                    .take(MAX_PDF + 1)
                    .read_to_end(&mut pdf)
                    .map_err(|e| {
                        unscannable(format!("archive entry {index} cannot be read: {e}"))
                    })?;
                self.count(pdf.len() as u64, pdf.len() as u64, Some(compressed))?;
                self.pdf(&pdf)?;
                continue;
            }
            let xml = named_xml || head[..n].starts_with(b"<?xml") || head[..n].starts_with(b"<");
            let mut whole = Cursor::new(head[..n].to_vec()).chain(&mut entry);
            self.text(&mut whole, Some(compressed), xml)?;
        }
        Ok(())
    }
}

const GZIP_MAGIC: &[u8] = b"\x1f\x8b";
const PDF_MAGIC: &[u8] = b"%PDF-";

/// Largest PDF document read (it is held in memory to be read).
const MAX_PDF: u64 = 32 << 20;

/// Bytes a central directory record takes at most on average before the directory is too
/// large for its declared entries (a record is 46 bytes and its name, extra and comment).
const MAX_DIRECTORY_RECORD: u64 = 1024;

/// Compressed or archive formats not read here: their content is unknown.
fn unread_format(head: &[u8]) -> Option<&'static str> {
    [
        (&b"BZh"[..], "bzip2"),
        (b"\xfd7zXZ\x00", "xz"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"7z\xbc\xaf\x27\x1c", "7-Zip"),
        (b"Rar!\x1a\x07", "RAR"),
    ]
    .iter()
    .find(|(magic, _)| head.starts_with(magic))
    .map(|(_, name)| *name)
}

/// The end of a ZIP archive's central directory, wherever the archive starts in the file
/// (a self-extracting program or a script may come first): the entries and directory
/// size it declares, the ZIP64 ones when it has them.
fn directory_end<R: Read + Seek>(file: &mut R) -> Result<Option<(u64, u64)>, Stop> {
    const SIGNATURE: &[u8] = b"PK\x05\x06";
    let len = file.seek(SeekFrom::End(0)).map_err(Stop::Io)?;
    let tail_len = len.min(22 + 65_535);
    file.seek(SeekFrom::Start(len - tail_len))
        .map_err(Stop::Io)?;
    let mut tail = vec![0u8; usize::try_from(tail_len).unwrap_or(0)];
    file.read_exact(&mut tail).map_err(Stop::Io)?;
    let Some(at) = tail.windows(4).rposition(|w| w == SIGNATURE) else {
        return Ok(None);
    };
    let record = &tail[at..];
    if record.len() < 22 {
        return Ok(None);
    }
    let u16_at = |i: usize| u64::from(u16::from_le_bytes([record[i], record[i + 1]]));
    let u32_at = |i: usize| {
        u64::from(u32::from_le_bytes([
            record[i],
            record[i + 1],
            record[i + 2],
            record[i + 3],
        ]))
    };
    let (mut entries, mut size) = (u16_at(10), u32_at(12));
    // ZIP64: the locator just before points at the larger record.
    if (entries == 0xFFFF || size == 0xFFFF_FFFF) && at >= 20 {
        let locator = &tail[at - 20..at];
        if locator.starts_with(b"PK\x06\x07") {
            let mut offset = [0u8; 8];
            offset.copy_from_slice(&locator[8..16]);
            let offset = u64::from_le_bytes(offset);
            let mut zip64 = [0u8; 56];
            if offset.saturating_add(56) <= len {
                file.seek(SeekFrom::Start(offset)).map_err(Stop::Io)?;
                file.read_exact(&mut zip64).map_err(Stop::Io)?;
                if zip64.starts_with(b"PK\x06\x06") {
                    let u64_at = |i: usize| {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&zip64[i..i + 8]);
                        u64::from_le_bytes(b)
                    };
                    entries = u64_at(32);
                    size = u64_at(40);
                }
            }
        }
    }
    Ok(Some((entries, size)))
}

fn read_up_to(reader: &mut dyn Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut len = 0;
    while len < buffer.len() {
        match reader.read(&mut buffer[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use zip::write::SimpleFileOptions;

    use super::super::rules::{Builtin, Detector, Outcome, Rule};
    use super::*;

    fn cards() -> Vec<Rule> {
        vec![Rule {
            name: "cards".into(),
            detector: Detector::builtin(Builtin::CardNumber),
            min_matches: 1,
            outcome: Outcome::Quarantine,
        }]
    }

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut out);
        for (name, data) in entries {
            w.start_file(*name, SimpleFileOptions::default())
                .expect("entry");
            w.write_all(data).expect("write");
        }
        w.finish().expect("finish");
        out.into_inner()
    }

    fn walk(data: Vec<u8>, limits: Limits) -> Result<Vec<u64>, String> {
        let rules = cards();
        let mut scanner = Scanner::new(&rules);
        let result = Walk::new(&mut scanner, limits).file(Cursor::new(data));
        match result {
            Ok(()) => Ok(scanner.counts().to_vec()),
            Err(Stop::Unscannable(u)) => Err(u.0),
            Err(Stop::Io(e)) => Err(e.to_string()),
        }
    }

    #[test]
    fn office_parts_and_nested_archives_are_read() {
        let doc = zip_of(&[(
            "word/document.xml",
            b"<w:p><w:r><w:t>4111 1111 </w:t></w:r><w:r><w:t>1111 1111</w:t></w:r></w:p>",
        )]);
        assert_eq!(walk(doc.clone(), Limits::default()), Ok(vec![1]));
        let outer = zip_of(&[("a.csv", b"5500 0000 0000 0004\n"), ("in.docx", &doc)]);
        assert_eq!(walk(outer.clone(), Limits::default()), Ok(vec![2]));
        let shallow = Limits {
            max_depth: 1,
            ..Limits::default()
        };
        assert!(walk(outer, shallow).is_err_and(|e| e.contains("nested deeper")));
    }

    #[test]
    fn a_bomb_is_stopped_by_the_ratio() {
        let zeros = vec![0u8; 8 << 20];
        let bomb = zip_of(&[("zeros.txt", &zeros)]);
        assert!(bomb.len() < 64 << 10);
        let found = walk(bomb, Limits::default());
        assert!(found.is_err_and(|e| e.contains("compression bomb")),);
    }

    #[test]
    fn archives_that_hide_entries_are_unscannable() {
        // A script before the archive: still read as one.
        let mut prefixed = b"#!/bin/sh\nexit 0\n".to_vec();
        prefixed.extend(zip_of(&[("cards.csv", b"4111 1111 1111 1111\n")]));
        assert_eq!(walk(prefixed, Limits::default()), Ok(vec![1]));
        // A name the reader takes for a folder still has its data read.
        let folder_named = zip_of(&[("cards.csv\\", b"4111 1111 1111 1111\n")]);
        assert_eq!(walk(folder_named, Limits::default()), Ok(vec![1]));
        // More entries declared than allowed: refused before the directory is read.
        let many: Vec<(String, Vec<u8>)> = (0..30).map(|i| (format!("f{i}"), Vec::new())).collect();
        let many: Vec<(&str, &[u8])> = many
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        let few = Limits {
            max_entries: 20,
            ..Limits::default()
        };
        assert!(walk(zip_of(&many), few).is_err_and(|e| e.contains("more than 20 entries")));
    }

    #[test]
    fn gzip_is_read_and_other_compressors_are_not() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"card 4111 1111 1111 1111\n").expect("gzip");
        let gz = gz.finish().expect("gzip");
        assert_eq!(walk(gz, Limits::default()), Ok(vec![1]));
        assert!(
            walk(b"BZh91AY&SY...".to_vec(), Limits::default()).is_err_and(|e| e.contains("bzip2"))
        );
    }

    #[test]
    fn a_plain_file_is_its_own_text() {
        assert_eq!(
            walk(b"card 4111-1111-1111-1111".to_vec(), Limits::default()),
            Ok(vec![1])
        );
        // Something that starts like an archive, or a PDF, but is not one.
        assert!(walk(b"PK\x03\x04garbage".to_vec(), Limits::default()).is_err());
        assert!(
            walk(b"%PDF-1.4\n4111 1111 1111 1111".to_vec(), Limits::default())
                .is_err_and(|e| e.contains("PDF"))
        );
    }
}
