//! What text a file holds, fed to the [`Scanner`]: the file's own bytes; for a ZIP
//! archive (DOCX, XLSX and ODT are ZIP archives of XML parts), the text of each entry and
//! every byte outside the entries (what comes before the archive, between entries, its
//! comment); for gzip, what it holds; for a PDF document, its text (read by another
//! process, see [`super::pdf`]); all within [`Limits`] and by the check's deadline.
//!
//! What a stream is, is decided by its content, never by its name, at every level: a
//! gzip stream or a PDF inside an archive is read as such, a ZIP inside gzip too. Whatever
//! the limits stop (an archive that expands too far or too fast, too many entries, too
//! deep a nesting, entries that share their compressed data, local entries the directory
//! does not list, an encrypted entry, a format not read here, the deadline) makes the file
//! [`Unscannable`]: what could not be read could hold anything, and the handler decides
//! what that means. Memory stays bounded: entries are streamed, and a nested archive is
//! held in memory only up to [`Limits::nested`] bytes.

use std::io::{Cursor, Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

use zip::ZipArchive;

use super::pdf::{MAX_PDF, PdfReader, Reading};
use super::scan::{CHUNK, Scanner};
use super::xml::{Mode, Stripper};

/// How far a content check follows a file's content.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of text read in all, entries of archives included.
    pub max_bytes: u64,
    /// Entries of archives, all levels together.
    pub max_entries: u64,
    /// How many times an entry may expand (bytes out for a byte in).
    pub max_ratio: u64,
    /// Archives and compressed streams within one another (1: a ZIP file's entries are
    /// read, a ZIP or gzip stream inside is not; 0: a ZIP or gzip file is unscannable).
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

/// Bytes read to tell what a stream is.
const HEAD: usize = 6;

/// A walk over one file.
pub struct Walk<'s, 'r> {
    scanner: &'s mut Scanner<'r>,
    limits: Limits,
    bytes: u64,
    entries: u64,
    pdf: Option<&'s PdfReader>,
    deadline: Instant,
    timeout: Duration,
    /// The file's size: what a gzip file's text may expand from.
    file_len: u64,
}

impl<'s, 'r> Walk<'s, 'r> {
    /// A walk feeding `scanner` within `limits`, with no deadline and no PDF reader.
    pub fn new(scanner: &'s mut Scanner<'r>, limits: Limits) -> Walk<'s, 'r> {
        let timeout = Duration::from_secs(365 * 24 * 3600);
        Walk {
            scanner,
            limits,
            bytes: 0,
            entries: 0,
            pdf: None,
            deadline: Instant::now() + timeout,
            timeout,
            file_len: 0,
        }
    }

    /// Reads PDF documents with `reader`.
    pub fn reading_pdf(mut self, reader: Option<&'s PdfReader>) -> Walk<'s, 'r> {
        self.pdf = reader;
        self
    }

    /// Stops, unscannable, once `timeout` has passed.
    pub fn within(mut self, timeout: Duration) -> Walk<'s, 'r> {
        self.deadline = Instant::now() + timeout;
        self.timeout = timeout;
        self
    }

    fn in_time(&self) -> Result<(), Stop> {
        if Instant::now() > self.deadline {
            return Err(unscannable(format!(
                "the check ran past its timeout ({} s)",
                self.timeout.as_secs()
            )));
        }
        Ok(())
    }

    /// Walks a whole file (read from its start).
    pub fn file<R: Read + Seek>(&mut self, mut file: R) -> Result<(), Stop> {
        let mut head = [0u8; HEAD];
        let n = read_up_to(&mut file, &mut head).map_err(Stop::Io)?;
        let is_zip = head[..n].starts_with(ZIP_MAGIC) || directory_end(&mut file)?.is_some();
        self.file_len = file.seek(SeekFrom::End(0)).map_err(Stop::Io)?;
        file.rewind().map_err(Stop::Io)?;
        if is_zip {
            if self.limits.max_depth == 0 {
                return Err(unscannable(
                    "a ZIP archive is not read (the check's max_depth is 0)",
                ));
            }
            return self.archive(file, 1);
        }
        let hint = Hint {
            xml: head[..n].starts_with(b"<?xml"),
            office: false,
        };
        self.stream(&mut file, None, 0, hint)
    }

    /// Walks one stream by what its first bytes say it is: a ZIP archive, gzip, a PDF
    /// document, a format not read here, or text. `depth`: the archives and compressed
    /// streams it is in; `ratio_of`: the compressed size its text may expand from.
    fn stream(
        &mut self,
        reader: &mut dyn Read,
        ratio_of: Option<u64>,
        depth: u32,
        hint: Hint,
    ) -> Result<(), Stop> {
        let mut head = [0u8; HEAD];
        let n = read_up_to(reader, &mut head).map_err(|e| self.read_failed(e, ratio_of))?;
        let head = &head[..n];
        let mut whole = Cursor::new(head.to_vec()).chain(reader);
        let nested = head.starts_with(ZIP_MAGIC) || head.starts_with(GZIP_MAGIC);
        if nested && depth >= self.limits.max_depth {
            return Err(unscannable(format!(
                "archives nested deeper than {} (the check's max_depth)",
                self.limits.max_depth
            )));
        }
        if head.starts_with(ZIP_MAGIC) {
            let inner = self.held(&mut whole, self.limits.nested, "a nested archive", ratio_of)?;
            return self.archive(Cursor::new(inner), depth + 1);
        }
        if head.starts_with(GZIP_MAGIC) {
            let mut unzipped = flate2::read::MultiGzDecoder::new(whole);
            let hint = Hint { xml: false, ..hint };
            // Within compressed data, a read that fails is content that cannot be read.
            let ratio_of = Some(ratio_of.unwrap_or(self.file_len));
            return self.stream(&mut unzipped, ratio_of, depth + 1, hint);
        }
        if head.starts_with(PDF_MAGIC) {
            let pdf = self.held(&mut whole, MAX_PDF, "a PDF document", ratio_of)?;
            return self.pdf(pdf);
        }
        if let Some(format) = unread_format(head) {
            return Err(unscannable(format!(
                "{format} content is not read by content checks"
            )));
        }
        let xml = hint.xml || head.starts_with(b"<?xml") || (hint.office && head.starts_with(b"<"));
        let mode = match (xml, hint.office) {
            (false, _) => None,
            (true, true) => Some(Mode::Office),
            (true, false) => Some(Mode::Markup),
        };
        self.text(&mut whole, ratio_of, mode)
    }

    /// Reads a stream whole, up to `max` bytes (counted against the limits).
    fn held(
        &mut self,
        reader: &mut dyn Read,
        max: u64,
        what: &str,
        ratio_of: Option<u64>,
    ) -> Result<Vec<u8>, Stop> {
        let mut held = Vec::new();
        reader
            .take(max + 1)
            .read_to_end(&mut held)
            .map_err(|e| self.read_failed(e, ratio_of))?;
        if held.len() as u64 > max {
            return Err(unscannable(format!("{what} is larger than {max} bytes")));
        }
        self.count(held.len() as u64, held.len() as u64, ratio_of)?;
        self.in_time()?;
        Ok(held)
    }

    /// A failed read: within an archive or a compressed stream, content that cannot be
    /// read; of the file itself, worth trying again.
    fn read_failed(&self, e: std::io::Error, ratio_of: Option<u64>) -> Stop {
        match ratio_of {
            Some(_) => unscannable(format!("content cannot be read: {e}")),
            None => Stop::Io(e),
        }
    }

    /// Feeds a stream's text to the scanner (`mode`: XML, stripped so); `ratio_of` bounds
    /// its expansion. Attribute values of XML are scanned as a stream of their own.
    fn text(
        &mut self,
        reader: &mut dyn Read,
        ratio_of: Option<u64>,
        mode: Option<Mode>,
    ) -> Result<(), Stop> {
        let mut buffer = vec![0u8; CHUNK];
        let mut stripper = mode.map(Stripper::new);
        let (mut stripped, mut values) = (Vec::new(), Vec::new());
        let mut attributes = mode.map(|_| self.scanner.beside());
        let mut read = 0u64;
        loop {
            self.in_time()?;
            let n = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_failed(e, ratio_of)),
            };
            read += n as u64;
            self.count(n as u64, read, ratio_of)?;
            match (&mut stripper, &mut attributes) {
                (Some(s), Some(a)) => {
                    stripped.clear();
                    values.clear();
                    s.feed(&buffer[..n], &mut stripped, &mut values);
                    self.scanner.feed(&stripped);
                    a.feed(&values);
                }
                _ => self.scanner.feed(&buffer[..n]),
            }
        }
        self.scanner.end_stream();
        if let Some(mut a) = attributes {
            a.end_stream();
            self.scanner.absorb(&a);
        }
        Ok(())
    }

    /// Feeds the text of a PDF document to the scanner, as the PDF reader writes it.
    fn pdf(&mut self, pdf: Vec<u8>) -> Result<(), Stop> {
        let Some(reader) = self.pdf else {
            return Err(unscannable("PDF documents are not read here"));
        };
        let cannot = |why: String| unscannable(format!("a PDF document cannot be read: {why}"));
        let mut reading = Reading::start(reader, pdf, self.deadline).map_err(cannot)?;
        let fed = match reading.text() {
            Some(text) => self.text(text, None, None),
            None => Ok(()),
        };
        // What the reader wrote counts only when it read the whole document.
        reading.finish().map_err(cannot)?;
        fed
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
        let end = directory_end(&mut reader)?;
        if let Some(end) = &end {
            let room = self.limits.max_entries.saturating_sub(self.entries);
            if end.entries > room || end.size > room.saturating_mul(MAX_DIRECTORY_RECORD) {
                return Err(unscannable(format!(
                    "the archives hold more than {} entries (the check's max_entries)",
                    self.limits.max_entries
                )));
            }
        }
        let len = reader.seek(SeekFrom::End(0)).map_err(Stop::Io)?;
        reader.rewind().map_err(Stop::Io)?;
        let not_zip =
            |e: zip::result::ZipError| unscannable(format!("not a readable ZIP archive: {e}"));
        let mut archive = ZipArchive::new(reader).map_err(not_zip)?;
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
        if archive.has_overlapping_files().map_err(not_zip)? {
            return Err(unscannable(
                "archive entries share their compressed data: a compression bomb",
            ));
        }
        // A local entry the directory does not list is extracted by streaming tools and
        // would be read here only as compressed bytes.
        archive.validate_header_consistency().map_err(|e| {
            unscannable(format!("the archive's entries and directory disagree: {e}"))
        })?;
        let mut covered = Vec::with_capacity(archive.len() + 1);
        for index in 0..archive.len() {
            self.in_time()?;
            let mut entry = archive
                .by_index(index)
                .map_err(|e| unscannable(format!("archive entry {index} cannot be read: {e}")))?;
            // Folders are read too: a name the reader takes for a folder (`x\\`) may
            // still hold data that other tools extract.
            if entry.encrypted() {
                return Err(unscannable(format!("archive entry {index} is encrypted")));
            }
            let compressed = entry.compressed_size();
            let data_start = entry.data_start().unwrap_or(entry.header_start());
            covered.push((entry.header_start(), data_start.saturating_add(compressed)));
            let name = entry.name_raw().to_ascii_lowercase();
            let hint = Hint {
                xml: name.ends_with(b".xml") || name.ends_with(b".rels"),
                office: is_office_part(&name),
            };
            self.stream(&mut entry, Some(compressed), depth, hint)?;
        }
        // The directory and its end record; what is before, between and after (a prefix,
        // gaps, the archive's comment) is read as it is.
        let directory_start = archive.central_directory_start();
        let directory_end = end.map_or(len, |e| e.at.saturating_add(22).min(len));
        covered.push((directory_start.min(directory_end), directory_end));
        let mut reader = archive.into_inner();
        for (from, to) in uncovered(covered, len) {
            reader.seek(SeekFrom::Start(from)).map_err(Stop::Io)?;
            self.text(&mut (&mut reader).take(to - from), None, None)?;
        }
        Ok(())
    }
}

/// What a stream's container says of it.
#[derive(Debug, Clone, Copy)]
struct Hint {
    /// Named as XML.
    xml: bool,
    /// A part of an office document, whose runs of text join (see [`Mode::Office`]).
    office: bool,
}

/// Parts of DOCX, XLSX, PPTX (`word/`, `xl/`, `ppt/`) and OpenDocument files.
fn is_office_part(name: &[u8]) -> bool {
    [&b"word/"[..], b"xl/", b"ppt/"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        || name == b"content.xml"
        || name == b"styles.xml"
}

/// The parts of `0..len` that no range of `covered` holds.
fn uncovered(mut covered: Vec<(u64, u64)>, len: u64) -> Vec<(u64, u64)> {
    covered.sort_unstable();
    let mut gaps = Vec::new();
    let mut at = 0;
    for (from, to) in covered {
        if from > at {
            gaps.push((at, from.min(len)));
        }
        at = at.max(to);
    }
    if at < len {
        gaps.push((at, len));
    }
    gaps.retain(|(from, to)| from < to);
    gaps
}

const GZIP_MAGIC: &[u8] = b"\x1f\x8b";
const PDF_MAGIC: &[u8] = b"%PDF-";

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

/// The end record of a ZIP archive's central directory.
struct DirectoryEnd {
    /// The entries it declares (the ZIP64 figure when there is one).
    entries: u64,
    /// The directory's declared size.
    size: u64,
    /// Where the record is in the file.
    at: u64,
}

/// The end of a ZIP archive's central directory, wherever the archive starts in the file
/// (a self-extracting program or a script may come first).
fn directory_end<R: Read + Seek>(file: &mut R) -> Result<Option<DirectoryEnd>, Stop> {
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
    Ok(Some(DirectoryEnd {
        entries,
        size,
        at: len - tail_len + at as u64,
    }))
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

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(data).expect("gzip");
        gz.finish().expect("gzip")
    }

    #[test]
    fn bytes_outside_an_archives_entries_are_read() {
        let rows = "4111 1111 1111 1111\n".repeat(200);
        let mut prefixed = rows.clone().into_bytes();
        prefixed.extend(zip_of(&[("readme.txt", b"hello")]));
        assert_eq!(walk(prefixed, Limits::default()), Ok(vec![200]));
        // The archive's comment too.
        let mut commented = Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut commented);
        w.start_file("a.txt", SimpleFileOptions::default())
            .expect("entry");
        w.write_all(b"nothing").expect("write");
        w.set_comment("card 5500 0000 0000 0004").expect("comment");
        w.finish().expect("finish");
        assert_eq!(walk(commented.into_inner(), Limits::default()), Ok(vec![1]));
        // A plain archive has nothing outside its entries to count.
        let plain = zip_of(&[("a.txt", b"4111 1111 1111 1111"), ("b.txt", b"x")]);
        assert_eq!(walk(plain, Limits::default()), Ok(vec![1]));
    }

    #[test]
    fn what_a_stream_is_is_read_at_every_level() {
        let cards = b"4111 1111 1111 1111\n";
        // gzip in a ZIP, a ZIP in gzip.
        let zipped_gz = zip_of(&[("cards.csv.gz", &gzip(cards))]);
        assert_eq!(walk(zipped_gz, Limits::default()), Ok(vec![1]));
        let gz_zip = gzip(&zip_of(&[("cards.csv", cards)]));
        assert_eq!(walk(gz_zip, Limits::default()), Ok(vec![1]));
        // Formats not read here are unscannable wherever they are.
        let zipped_bz2 = zip_of(&[("cards.csv.bz2", b"BZh91AY&SY....")]);
        assert!(walk(zipped_bz2, Limits::default()).is_err_and(|e| e.contains("bzip2")));
        // With no depth, a ZIP file is not read as raw bytes: it is unscannable.
        let flat = Limits {
            max_depth: 0,
            ..Limits::default()
        };
        let zipped = zip_of(&[("cards.csv", cards)]);
        assert!(walk(zipped, flat).is_err_and(|e| e.contains("max_depth")));
        assert!(walk(gzip(cards), flat).is_err_and(|e| e.contains("max_depth")));
        // A PDF document with nothing to read it is unscannable, in an archive too.
        let pdf = zip_of(&[("statement.pdf", b"%PDF-1.4\n...")]);
        assert!(walk(pdf, Limits::default()).is_err_and(|e| e.contains("PDF")));
    }

    #[test]
    fn xml_attributes_and_elements_are_read_apart() {
        let doc = br#"<?xml version="1.0"?><rows><row pan="4111 1111 1111 1111"/><id>7</id><pan>5500000000000004</pan></rows>"#;
        assert_eq!(walk(doc.to_vec(), Limits::default()), Ok(vec![2]));
        let zipped = zip_of(&[("customers.xml", doc)]);
        assert_eq!(walk(zipped, Limits::default()), Ok(vec![2]));
        // An office part joins its runs, and its attributes are read too.
        let docx = zip_of(&[(
            "word/document.xml",
            br#"<w:p><w:r><w:t>4111 1111 </w:t></w:r><w:r><w:t>1111 1111</w:t></w:r></w:p><wp:docPr descr="5500 0000 0000 0004"/>"#,
        )]);
        assert_eq!(walk(docx, Limits::default()), Ok(vec![2]));
    }

    #[test]
    fn a_walk_ends_at_its_deadline() {
        let rules = cards();
        let mut scanner = Scanner::new(&rules);
        let data = vec![b'1'; 4 * CHUNK];
        let result = Walk::new(&mut scanner, Limits::default())
            .within(Duration::ZERO)
            .file(Cursor::new(data));
        assert!(matches!(result, Err(Stop::Unscannable(u)) if u.0.contains("timeout")));
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
