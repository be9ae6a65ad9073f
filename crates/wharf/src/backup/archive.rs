//! The backup archive: a tar file, sealed with the age format when a passphrase is given.
//!
//! Layout: `store.db` (a SQLite snapshot of the whole store, whatever the backend), then
//! `files/PATH` for each file below the configuration's folder and `outside/PATH` for each
//! file elsewhere, then `manifest.json` last, which lists every other entry with its size,
//! SHA-256 and mode. Reading checks the manifest against what was read: an entry missing,
//! added, repeated, altered or of another kind fails the whole archive. Sealed with age, the
//! archive is also authenticated: without the passphrase nobody can alter it and keep the
//! manifest true.
//!
//! This module must never trust a name from an archive: entry names are checked to be plain
//! relative paths under the known prefixes before anything is done with them, and only
//! regular files are accepted.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};

/// The format this binary writes.
pub const FORMAT: u32 = 1;
/// The store snapshot's entry.
pub const STORE_ENTRY: &str = "store.db";
const MANIFEST_ENTRY: &str = "manifest.json";
/// The largest manifest read (a manifest lists files, it does not hold them).
const MAX_MANIFEST: u64 = 16 << 20;
/// How every age file starts.
const AGE_MAGIC: &[u8] = b"age-encryption.org/v1";

/// What an archive holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Archive format ([`FORMAT`]).
    pub format: u32,
    /// When the backup was taken (RFC 3339, UTC).
    pub made: String,
    /// The Wharf version that took it.
    pub version: String,
    /// The node that took it.
    pub node: String,
    /// The configuration file, relative to its folder.
    pub config: String,
    /// The store snapshot.
    pub store: StoreEntry,
    /// Every other file.
    pub files: Vec<FileEntry>,
}

/// The store snapshot in an archive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreEntry {
    /// The backend backed up: `sqlite` or `postgres`.
    pub backend: String,
    /// Its URL as configured (never with a password).
    pub url: String,
    /// Accounts in the snapshot.
    pub accounts: u64,
    /// Audit records in the snapshot.
    pub records: i64,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// One carried file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    /// Where it goes back: relative to the configuration's folder, or absolute.
    pub path: String,
    /// Unix permission bits.
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

impl FileEntry {
    /// The entry's name in the archive.
    pub fn entry(&self) -> String {
        entry_for(&self.path)
    }
}

/// The archive entry name for a carried file's path.
pub fn entry_for(path: &str) -> String {
    match path.strip_prefix('/') {
        Some(absolute) => format!("outside/{absolute}"),
        None => format!("files/{path}"),
    }
}

/// Checks that `path`, from a manifest, is one a restore may write: a plain relative path,
/// or a plain absolute one, every part a name (no `.`, `..` or empty part).
pub fn checked_path(path: &str) -> Result<PathBuf> {
    let relative = path.strip_prefix('/').unwrap_or(path);
    let plain = !relative.is_empty()
        && relative
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if !plain {
        bail!("the manifest names {path:?}, which is not a plain path");
    }
    Ok(PathBuf::from(path))
}

/// Checks what a restore relies on in a manifest beyond its digests: the configuration is
/// a file name listed among the files, and no file's path is another's folder.
fn check_manifest(manifest: &Manifest) -> Result<()> {
    checked_path(&manifest.config)?;
    if manifest.config.contains('/') {
        bail!(
            "the manifest names the configuration {:?}, which is not a file name",
            manifest.config
        );
    }
    if !manifest.files.iter().any(|f| f.path == manifest.config) {
        bail!(
            "the manifest does not list its configuration {:?} among its files",
            manifest.config
        );
    }
    let mut paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    paths.sort_unstable();
    for pair in paths.windows(2) {
        if pair[1]
            .strip_prefix(pair[0])
            .is_some_and(|rest| rest.starts_with('/'))
        {
            bail!(
                "the manifest names {:?} both as a file and as a folder ({:?})",
                pair[0],
                pair[1]
            );
        }
    }
    Ok(())
}

/// Where an archive is written: plain or sealed.
enum Sink {
    Plain(BufWriter<File>),
    Sealed(age::stream::StreamWriter<BufWriter<File>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Sealed(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Sealed(w) => w.flush(),
        }
    }
}

/// An archive being written.
pub struct Writer {
    tar: tar::Builder<Sink>,
}

impl Writer {
    /// Starts an archive in `file` (new), sealed with `passphrase` if given.
    pub fn create(file: File, passphrase: Option<&str>) -> Result<Writer> {
        let out = BufWriter::with_capacity(1 << 20, file);
        let sink = match passphrase {
            None => Sink::Plain(out),
            Some(p) => {
                let encryptor = age::Encryptor::with_user_passphrase(
                    age::secrecy::SecretString::from(p.to_owned()),
                );
                Sink::Sealed(
                    encryptor
                        .wrap_output(out)
                        .context("cannot start the encrypted archive")?,
                )
            }
        };
        let mut tar = tar::Builder::new(sink);
        tar.mode(tar::HeaderMode::Deterministic);
        Ok(Writer { tar })
    }

    /// Adds `size` bytes read from `source` as `name`; returns their SHA-256. Fails if the
    /// source holds fewer or more bytes than `size` (a file changed while read).
    pub fn add(&mut self, name: &str, source: impl Read, size: u64, mode: u32) -> Result<String> {
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(mode & 0o777);
        header.set_entry_type(tar::EntryType::Regular);
        let mut hashing = Hashing::new(source.take(size));
        self.tar
            .append_data(&mut header, name, &mut hashing)
            .with_context(|| format!("cannot write {name} into the archive"))?;
        if hashing.read != size {
            bail!(
                "{name} changed while it was read ({} bytes instead of {size}); take the backup again",
                hashing.read
            );
        }
        Ok(hashing.finish())
    }

    /// Writes the manifest and closes the archive; returns the file, flushed to disk.
    pub fn finish(mut self, manifest: &Manifest) -> Result<File> {
        let text = serde_json::to_vec_pretty(manifest)?;
        self.add(MANIFEST_ENTRY, text.as_slice(), text.len() as u64, 0o600)?;
        let sink = self.tar.into_inner().context("cannot close the archive")?;
        let out = match sink {
            Sink::Plain(w) => w,
            Sink::Sealed(w) => w.finish().context("cannot close the encrypted archive")?,
        };
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(file)
    }
}

struct Hashing<R> {
    inner: R,
    context: digest::Context,
    read: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            context: digest::Context::new(&digest::SHA256),
            read: 0,
        }
    }

    fn finish(self) -> String {
        wharf_types::hex(self.context.finish().as_ref())
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.context.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Opens `path` for reading, unsealing it when it is an age file.
pub fn open(path: &Path, passphrase: Option<&str>) -> Result<Box<dyn Read>> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut start = [0u8; AGE_MAGIC.len()];
    let sealed = match file.read_exact(&mut start) {
        Ok(()) => start == AGE_MAGIC,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => false,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = BufReader::with_capacity(1 << 20, file);
    if !sealed {
        return Ok(Box::new(reader));
    }
    let Some(passphrase) = passphrase else {
        bail!(
            "{} is encrypted: give its passphrase with --passphrase env:NAME or file:PATH",
            path.display()
        );
    };
    let decryptor = age::Decryptor::new_buffered(reader)
        .with_context(|| format!("{} is not a readable age file", path.display()))?;
    let identity =
        age::scrypt::Identity::new(age::secrecy::SecretString::from(passphrase.to_owned()));
    let unsealed = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot decrypt {}: {e} (a wrong passphrase, or an altered archive)",
                path.display()
            )
        })?;
    Ok(Box::new(unsealed))
}

/// Reads a whole archive, handing each entry but the manifest to `take` (name, contents,
/// size, mode) and checking everything against the manifest at the end.
pub fn read(
    source: impl Read,
    mut take: impl FnMut(&str, &mut dyn Read, u64, u32) -> Result<()>,
) -> Result<Manifest> {
    let mut archive = tar::Archive::new(source);
    let mut seen: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut manifest: Option<Manifest> = None;
    let unreadable = "the archive is damaged, or is neither a Wharf backup nor an age file";
    for entry in archive.entries().context(unreadable)? {
        let entry = entry.context(unreadable)?;
        let name = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| anyhow::anyhow!("the archive holds an entry whose name is not UTF-8"))?;
        if manifest.is_some() {
            bail!("the archive holds {name:?} after its manifest");
        }
        if entry.header().entry_type() != tar::EntryType::Regular {
            bail!("the archive holds {name:?}, which is not a regular file");
        }
        let size = entry.header().size().context("damaged entry size")?;
        let mode = entry.header().mode().context("damaged entry mode")?;
        if name == MANIFEST_ENTRY {
            if size > MAX_MANIFEST {
                bail!("the archive's manifest is {size} bytes, more than a manifest can be");
            }
            let mut text = Vec::with_capacity(size as usize);
            entry.take(MAX_MANIFEST).read_to_end(&mut text)?;
            manifest = Some(
                serde_json::from_slice(&text).context("the archive's manifest does not parse")?,
            );
            continue;
        }
        check_entry_name(&name)?;
        if seen.contains_key(&name) {
            bail!("the archive holds {name:?} twice");
        }
        let mut hashing = Hashing::new(entry);
        take(&name, &mut hashing, size, mode)?;
        io::copy(&mut hashing, &mut io::sink())?;
        if hashing.read != size {
            bail!("the archive's entry {name:?} is cut short");
        }
        seen.insert(name, (size, hashing.finish()));
    }
    let Some(manifest) = manifest else {
        bail!("the archive has no manifest: it is cut short, or not a Wharf backup");
    };
    if manifest.format != FORMAT {
        bail!(
            "the archive is in format {}, which this Wharf ({}) does not read",
            manifest.format,
            env!("CARGO_PKG_VERSION")
        );
    }
    check_manifest(&manifest)?;
    let mut expected: BTreeMap<String, (u64, String)> = BTreeMap::new();
    expected.insert(
        STORE_ENTRY.to_owned(),
        (manifest.store.size, manifest.store.sha256.clone()),
    );
    for file in &manifest.files {
        checked_path(&file.path)?;
        if expected
            .insert(file.entry(), (file.size, file.sha256.clone()))
            .is_some()
        {
            bail!("the manifest lists {:?} twice", file.path);
        }
    }
    for (name, (size, sha)) in &expected {
        match seen.remove(name) {
            None => bail!("the archive lacks {name:?}, which its manifest lists"),
            Some((got_size, got_sha)) if got_size != *size || got_sha != *sha => {
                bail!("{name:?} differs from the manifest: the archive was altered or damaged")
            }
            Some(_) => {}
        }
    }
    if let Some(name) = seen.keys().next() {
        bail!("the archive holds {name:?}, which its manifest does not list");
    }
    Ok(manifest)
}

/// Accepts only the names this module writes.
fn check_entry_name(name: &str) -> Result<()> {
    if name == STORE_ENTRY {
        return Ok(());
    }
    let rest = name
        .strip_prefix("files/")
        .or_else(|| name.strip_prefix("outside/"));
    match rest {
        Some(rest)
            if !rest.is_empty()
                && !rest.contains("//")
                && Path::new(rest)
                    .components()
                    .all(|c| matches!(c, Component::Normal(_))) =>
        {
            Ok(())
        }
        _ => bail!("the archive holds {name:?}, which no Wharf backup holds"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(files: Vec<FileEntry>, store: &[u8]) -> Manifest {
        Manifest {
            format: FORMAT,
            made: "2026-12-01T00:00:00Z".into(),
            version: "test".into(),
            node: "n".into(),
            config: "wharf.toml".into(),
            store: StoreEntry {
                backend: "sqlite".into(),
                url: "sqlite:x.db".into(),
                accounts: 0,
                records: 0,
                size: store.len() as u64,
                sha256: wharf_types::hex(digest::digest(&digest::SHA256, store).as_ref()),
            },
            files,
        }
    }

    fn write(passphrase: Option<&str>, extra: Option<&str>) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar");
        let mut writer = Writer::create(File::create(&path).unwrap(), passphrase).unwrap();
        writer.add(STORE_ENTRY, &b"db"[..], 2, 0o600).unwrap();
        let sha = writer
            .add("files/wharf.toml", &b"[server]\n"[..], 9, 0o644)
            .unwrap();
        if let Some(name) = extra {
            writer.add(name, &b"x"[..], 1, 0o600).unwrap();
        }
        let entry = FileEntry {
            path: "wharf.toml".into(),
            mode: 0o644,
            size: 9,
            sha256: sha,
        };
        writer.finish(&manifest(vec![entry], b"db")).unwrap();
        (dir, path)
    }

    fn names(path: &Path, passphrase: Option<&str>) -> Result<Vec<String>> {
        let mut names = Vec::new();
        read(open(path, passphrase)?, |name, _, _, _| {
            names.push(name.to_owned());
            Ok(())
        })?;
        Ok(names)
    }

    #[test]
    fn an_archive_reads_back_and_checks() {
        let (_dir, path) = write(None, None);
        assert_eq!(
            names(&path, None).unwrap(),
            ["store.db", "files/wharf.toml"]
        );
    }

    #[test]
    fn a_sealed_archive_needs_its_passphrase() {
        let (_dir, path) = write(Some("correct horse"), None);
        assert!(std::fs::read(&path).unwrap().starts_with(AGE_MAGIC));
        assert_eq!(names(&path, Some("correct horse")).unwrap().len(), 2);
        let none = names(&path, None).unwrap_err().to_string();
        assert!(none.contains("encrypted"), "{none}");
        let wrong = names(&path, Some("wrong")).unwrap_err().to_string();
        assert!(wrong.contains("cannot decrypt"), "{wrong}");
    }

    #[test]
    fn an_altered_byte_fails_the_archive() {
        let (_dir, path) = write(None, None);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.windows(9).position(|w| w == b"[server]\n").unwrap();
        bytes[at + 1] = b'S';
        std::fs::write(&path, &bytes).unwrap();
        let e = names(&path, None).unwrap_err().to_string();
        assert!(e.contains("differs from the manifest"), "{e}");
    }

    #[test]
    fn an_entry_the_manifest_does_not_list_fails_the_archive() {
        let (_dir, path) = write(None, Some("files/extra"));
        let e = names(&path, None).unwrap_err().to_string();
        assert!(e.contains("does not list"), "{e}");
    }

    #[test]
    fn names_that_climb_out_are_refused() {
        for bad in [
            "files/../x",
            "outside/",
            "files//x",
            "other/x",
            "files/./x",
            "/etc/x",
        ] {
            assert!(check_entry_name(bad).is_err(), "{bad}");
        }
        for bad in [
            "../x", "a/../b", "", "a//b", "./a", "/", "a/.", "a/b/", "/a/./b",
        ] {
            assert!(checked_path(bad).is_err(), "{bad}");
        }
        assert!(checked_path("/opt/scan.sh").is_ok());
        assert!(checked_path("wharf-data/keys/k").is_ok());
    }
}
