//! Retention of the audit trail: records older than `[audit] retention_days` move out of
//! the store into gzip-compressed JSON-lines files in `[audit] archive_dir`, one file per
//! run of at most [`BATCH`] records, named `NODE-FIRST-LAST.jsonl.gz` by the chain numbers
//! they hold. The store keeps a checkpoint per file (numbers, the hash the first record
//! follows, the last one's hash, the file's SHA-256), and `wharf audit verify` walks the
//! files, then the store, as one chain.
//!
//! A file is written under a temporary name, synced, read back and checked, renamed, and
//! its folder synced, before the store forgets a record: a crash at any point leaves every
//! record in the store, the archive, or both — never in neither. Records whose chain does
//! not verify are not archived: an archive never launders a broken trail. Each node
//! archives its own chain only (its archive folder is its own, as its JSON-lines copy is),
//! and one process at a time (a lock file in the folder).
//!
//! This module must never change a record: it copies them as they are, hashes included.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use wharf_core::{Event, EventKind};
use wharf_store::{AuditRecord, Checkpoint, GENESIS, Store, chain_hash};

/// The most records one archive file holds.
pub const BATCH: i64 = 100_000;

/// How often a running server looks for records past their retention.
pub const EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// `node` as a file name's part: letters, digits, `-` and `_` as they are, every other
/// byte as `%XX`, so two node names never make one file name (nor a path).
fn safe(node: &str) -> String {
    node.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Whether `file` is a name an archive could have: one plain name, no folder.
fn plain(file: &str) -> bool {
    !file.is_empty()
        && !file.starts_with('.')
        && !file.contains(['/', '\\'])
        && std::path::Path::new(file)
            .file_name()
            .is_some_and(|n| n == file)
}

/// The name of the file holding `node`'s records `first..=last`.
fn file_name(node: &str, first: i64, last: i64) -> String {
    format!("{}-{first:012}-{last:012}.jsonl.gz", safe(node))
}

fn sha256_of(path: &Path) -> Result<String> {
    let mut file = File::open(path)?;
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = std::io::Read::read(&mut file, &mut buffer)?;
        if n == 0 {
            break;
        }
        context.update(&buffer[..n]);
    }
    Ok(wharf_types::hex(context.finish().as_ref()))
}

/// Where archive `file` is: the first of `dirs` holding it (never a name that would lead
/// out of them: the name comes from the store).
pub fn locate(dirs: &[PathBuf], file: &str) -> Option<PathBuf> {
    if !plain(file) {
        return None;
    }
    dirs.iter().map(|d| d.join(file)).find(|p| p.is_file())
}

/// Each record of an archive file, in order.
pub fn read_archive(path: &Path) -> Result<impl Iterator<Item = Result<AuditRecord>>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let shown = path.display().to_string();
    Ok(BufReader::new(GzDecoder::new(file))
        .lines()
        .map(move |line| {
            let line = line.with_context(|| format!("{shown} does not decompress"))?;
            serde_json::from_str::<AuditRecord>(&line)
                .with_context(|| format!("a line of {shown} is not a record"))
        }))
}

/// Writes `records` to `dir/name` durably; its SHA-256.
fn write_archive(dir: &Path, name: &str, records: &[AuditRecord]) -> Result<String> {
    let path = dir.join(name);
    let temporary = dir.join(format!(".{name}.partial"));
    {
        let file = File::create(&temporary)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        let mut gz = GzEncoder::new(BufWriter::new(file), Compression::default());
        for record in records {
            serde_json::to_writer(&mut gz, record)?;
            gz.write_all(b"\n")?;
        }
        let file = gz.finish()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
    }
    // Read back before anything depends on it.
    let mut count = 0usize;
    let mut last = String::new();
    for record in read_archive(&temporary)? {
        last = record?.hash;
        count += 1;
    }
    if count != records.len() || records.last().map(|r| &r.hash) != Some(&last) {
        let _ = fs::remove_file(&temporary);
        bail!("{} did not read back as written", temporary.display());
    }
    let digest = sha256_of(&temporary)?;
    // Never over another file: a link fails when the name is taken. The same records
    // written again (a run cut off before the store took the first) make the same bytes.
    match fs::hard_link(&temporary, &path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if sha256_of(&path)? != digest {
                let _ = fs::remove_file(&temporary);
                bail!(
                    "{} exists and holds other records: nothing is archived over it",
                    path.display()
                );
            }
        }
        Err(e) => return Err(e.into()),
    }
    fs::remove_file(&temporary)?;
    File::open(dir)?.sync_all()?;
    Ok(digest)
}

/// Where an archive run's records go (the bus of a running server, or a command's writer).
#[async_trait::async_trait]
pub trait Recorder: Send + Sync {
    /// Records `event`.
    async fn record(&self, event: Event) -> Result<()>;
}

/// Moves `node`'s records written before `before_us` into archive files in `dir`; the
/// checkpoints made. Records an `audit.archived` event per file as soon as the store took it.
pub async fn archive(
    store: &Store,
    node: &str,
    dir: &Path,
    before_us: i64,
    record: &dyn Recorder,
) -> Result<Vec<Checkpoint>> {
    fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    let lock = File::create(dir.join(format!(".{}.archiving", safe(node))))?;
    // One archiver per folder: the server's schedule and `wharf audit archive` take turns.
    let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock)).await??;
    // What a run cut off (kill -9) left half written: never a file the store names.
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name
            .strip_prefix(&format!(".{}-", safe(node)))
            .filter(|rest| name.ends_with(".jsonl.gz.partial") && rest.len() > 13)
            .is_some_and(|rest| {
                rest.as_bytes()[..12].iter().all(u8::is_ascii_digit) && rest.as_bytes()[12] == b'-'
            });
        if ours {
            let _ = fs::remove_file(entry.path());
        }
    }
    // The run's own `audit.archived` records come after this head: never archived by it.
    let head = store.chain_head(node).await?.map_or(0, |r| r.chain_seq());
    let mut made = Vec::new();
    loop {
        let mut records = store.archivable_records(node, before_us, BATCH).await?;
        records.retain(|r| r.chain_seq() < head);
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            break;
        };
        let mut prev = store
            .audit_checkpoint(node)
            .await?
            .map_or_else(|| GENESIS.to_owned(), |c| c.last_hash);
        let first_prev = prev.clone();
        for r in &records {
            if r.prev != prev || chain_hash(r) != r.hash {
                bail!(
                    "node {node}'s record {} does not verify: nothing more is archived; run `wharf audit verify`",
                    r.chain_seq()
                );
            }
            prev = r.hash.clone();
        }
        let (first_seq, last_seq) = (first.chain_seq(), last.chain_seq());
        let name = file_name(node, first_seq, last_seq);
        let dir_owned = dir.to_owned();
        let name_owned = name.clone();
        let sha256 =
            tokio::task::spawn_blocking(move || write_archive(&dir_owned, &name_owned, &records))
                .await??;
        let checkpoint = Checkpoint {
            node: node.to_owned(),
            first_seq,
            last_seq,
            first_prev,
            last_hash: prev,
            records: last_seq - first_seq + 1,
            file: name,
            sha256,
            made_us: now_us(),
        };
        if let Err(refusal) = store.commit_archive(&checkpoint).await? {
            bail!(
                "the store did not take the archive {}: {refusal:?}",
                checkpoint.file
            );
        }
        record
            .record(
                Event::new(EventKind::AuditArchived)
                    .message(format!(
                        "records {first_seq}-{last_seq} moved to {}",
                        checkpoint.file
                    ))
                    .attr("file", checkpoint.file.clone())
                    .attr("first", first_seq.to_string())
                    .attr("last", last_seq.to_string())
                    .attr("sha256", checkpoint.sha256.clone()),
            )
            .await?;
        made.push(checkpoint);
    }
    drop(lock);
    Ok(made)
}

/// The running server's retention: every [`EVERY`] (the first time a minute after the
/// start), `node`'s records older than `days` move to `dir`, each file recorded on `bus`.
pub async fn run(
    store: Store,
    node: String,
    dir: PathBuf,
    days: u64,
    bus: wharf_core::EventBus,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut wait = std::time::Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        wait = EVERY;
        let age = i64::try_from(days.saturating_mul(86_400_000_000)).unwrap_or(i64::MAX);
        let before_us = now_us().saturating_sub(age);
        if let Err(e) = archive(&store, &node, &dir, before_us, &bus).await {
            bus.emit(Event::new(EventKind::AuditArchiveFailed).failed(format!("{e:#}")));
        }
    }
}

#[async_trait::async_trait]
impl Recorder for wharf_core::EventBus {
    async fn record(&self, event: Event) -> Result<()> {
        self.emit(event);
        Ok(())
    }
}

fn now_us() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000).unwrap_or(0)
}

/// What [`verify`] found of a node's archives.
pub struct ArchivesChecked {
    /// Records in them, all holding.
    pub records: i64,
    /// Files.
    pub files: usize,
}

/// Walks `node`'s archive files in `dir` as the store's checkpoints list them: each file
/// present and as written (its SHA-256), its records numbered without a gap, each following
/// the one before (across files too) and matching its hash. `Err((record, why))` names the
/// first that does not hold.
pub fn verify(
    checkpoints: &[Checkpoint],
    dirs: &[PathBuf],
) -> Result<Result<ArchivesChecked, (i64, String)>> {
    let mut prev = GENESIS.to_owned();
    let mut expected = 1;
    for c in checkpoints {
        if c.first_seq != expected || c.first_prev != prev {
            return Ok(Err((
                expected,
                format!("the archives do not follow each other at {}", c.file),
            )));
        }
        let Some(path) = locate(dirs, &c.file) else {
            let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            return Ok(Err((
                c.first_seq,
                format!(
                    "archive {} (records {}-{}) is not in {}; give its folder with --archives",
                    c.file,
                    c.first_seq,
                    c.last_seq,
                    looked.join(", ")
                ),
            )));
        };
        if sha256_of(&path)? != c.sha256 {
            return Ok(Err((
                c.first_seq,
                format!(
                    "archive {} is not the file that was written (its SHA-256 differs)",
                    c.file
                ),
            )));
        }
        for record in read_archive(&path)? {
            let record = match record {
                Ok(record) => record,
                Err(e) => return Ok(Err((expected, format!("{e:#}")))),
            };
            if record.chain_seq() != expected || record.prev != prev {
                return Ok(Err((
                    expected,
                    format!(
                        "record {expected} in {} does not follow the previous record",
                        c.file
                    ),
                )));
            }
            if chain_hash(&record) != record.hash {
                return Ok(Err((
                    expected,
                    format!(
                        "record {expected} in {}: content does not match its hash",
                        c.file
                    ),
                )));
            }
            prev = record.hash;
            expected += 1;
        }
        if expected != c.last_seq + 1 || prev != c.last_hash {
            return Ok(Err((
                expected,
                format!("archive {} ends before record {}", c.file, c.last_seq),
            )));
        }
    }
    Ok(Ok(ArchivesChecked {
        records: expected - 1,
        files: checkpoints.len(),
    }))
}

/// The hashes of archived records, read a file at a time (the one last asked for is kept):
/// the witnesses' records are asked for in chain order, so each file is read once.
pub struct ArchivedHashes {
    dirs: Vec<PathBuf>,
    kept: Option<(String, i64, Vec<String>)>,
}

impl ArchivedHashes {
    /// Archives in `dirs`.
    pub fn new(dirs: &[PathBuf]) -> ArchivedHashes {
        ArchivedHashes {
            dirs: dirs.to_vec(),
            kept: None,
        }
    }

    /// The hash of record `n` of the chain `checkpoints` describe, if it is archived.
    pub fn hash_at(&mut self, checkpoints: &[Checkpoint], n: i64) -> Result<Option<String>> {
        let Some(c) = checkpoints
            .iter()
            .find(|c| c.first_seq <= n && n <= c.last_seq)
        else {
            return Ok(None);
        };
        if self
            .kept
            .as_ref()
            .is_none_or(|(file, _, _)| file != &c.file)
        {
            let mut hashes = Vec::new();
            let Some(path) = locate(&self.dirs, &c.file) else {
                return Ok(None);
            };
            for record in read_archive(&path)? {
                hashes.push(record?.hash);
            }
            self.kept = Some((c.file.clone(), c.first_seq, hashes));
        }
        Ok(self.kept.as_ref().and_then(|(_, first, hashes)| {
            usize::try_from(n - first)
                .ok()
                .and_then(|i| hashes.get(i).cloned())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::{file_name, plain, safe};

    #[test]
    fn node_names_make_distinct_plain_file_names() {
        let names = ["eu:1", "eu/1", "eu_1", "eu%3A1", "eu.1", "wharf-1"];
        let made: std::collections::HashSet<String> = names.iter().map(|n| safe(n)).collect();
        assert_eq!(made.len(), names.len(), "{made:?}");
        for n in names {
            assert!(plain(&file_name(n, 1, 2)), "{}", file_name(n, 1, 2));
        }
        assert_eq!(
            file_name("wharf-1", 1, 8),
            "wharf-1-000000000001-000000000008.jsonl.gz"
        );
        for bad in ["/tmp/x", "../x", "a/b", ".hidden", ""] {
            assert!(!plain(bad), "{bad}");
        }
    }
}
