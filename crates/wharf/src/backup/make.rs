//! Taking a backup while the server runs: the store's snapshot first (one instant of every
//! table), then the configuration and the files it names, then the manifest, all into
//! `FILE.partial`, renamed to `FILE` only once complete and flushed, so a backup that fails
//! half-way never sits under its final name.
//!
//! This module must never change the store or a configured file: it only reads them.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use time::OffsetDateTime;
use wharf_store::{Backend, Store};

use crate::backup::archive::{self, FileEntry, Manifest, StoreEntry, Writer};
use crate::backup::named::{self, Place};
use crate::config::Loaded;

/// What a backup needs to know of the node it backs up.
#[derive(Debug, Clone)]
pub struct Source {
    /// The configuration file.
    pub config: PathBuf,
    /// Its folder, where relative paths start.
    pub base: PathBuf,
    /// The node's name.
    pub node: String,
    /// The store's URL as configured.
    pub store_url: String,
    /// Files never carried: `[backup] passphrase`'s file, which would open every sealed
    /// archive (and sit in the clear in a plain one).
    pub left_out: Vec<PathBuf>,
}

impl Source {
    /// The node `loaded` describes.
    pub fn of(loaded: &Loaded) -> Source {
        Source {
            config: loaded.path.clone(),
            base: loaded.base.clone(),
            node: loaded.config.server.name.clone(),
            store_url: loaded.config.store.url.get_ref().clone(),
            left_out: loaded
                .config
                .backup
                .as_ref()
                .and_then(|b| b.passphrase.as_ref())
                .and_then(|spec| spec.get_ref().strip_prefix("file:"))
                .and_then(|path| std::fs::canonicalize(loaded.resolve(path)).ok())
                .into_iter()
                .collect(),
        }
    }
}

/// What a finished backup holds.
#[derive(Debug, Clone)]
pub struct Made {
    /// The archive.
    pub file: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Whether it is sealed with a passphrase.
    pub encrypted: bool,
    /// The manifest written into it.
    pub manifest: Manifest,
}

/// Backs up the node `source` describes, whose store is `store`, into `file` (new).
pub async fn make(
    source: &Source,
    store: &Store,
    file: &Path,
    passphrase: Option<String>,
) -> Result<Made> {
    if file.exists() {
        bail!("{} exists already: give a new file name", file.display());
    }
    let folder = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let scratch = tempfile::Builder::new()
        .prefix(".wharf-backup-")
        .tempdir_in(&folder)
        .with_context(|| format!("cannot make a scratch folder in {}", folder.display()))?;
    let snapshot_path = scratch.path().join("store.db");
    store
        .snapshot_into(&snapshot_path)
        .await
        .context("cannot take the store's snapshot")?;
    let (accounts, records) = {
        let snapshot = Store::open_sqlite(&snapshot_path).await?;
        let accounts = snapshot.accounts().await?.len() as u64;
        let records = match snapshot.verify_chain().await? {
            Ok(records) => records,
            Err((at, why)) => bail!(
                "the store's audit trail does not verify at record {at} ({why}); run `wharf audit verify`, then back up"
            ),
        };
        // Closing the last connection folds SQLite's write-ahead log back into the file,
        // so the one file carries everything.
        snapshot.close().await;
        (accounts, records)
    };
    let named = named::files(&source.config, &source.base, &source.left_out)?;
    let backend = match store.backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let config = match source.config.file_name() {
        Some(name) => name.to_string_lossy().into_owned(),
        None => bail!("{} does not name a file", source.config.display()),
    };
    let made = wharf_types::rfc3339::format_seconds(OffsetDateTime::now_utc());
    let node = source.node.clone();
    let url = wharf_store::redacted(&source.store_url);
    let target = file.to_owned();
    let partial = partial_name(file);
    let encrypted = passphrase.is_some();
    let manifest = tokio::task::spawn_blocking(move || -> Result<Manifest> {
        let out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        let written = write(
            out,
            passphrase.as_deref(),
            &snapshot_path,
            &named,
            |store_size, store_sha, files| Manifest {
                format: archive::FORMAT,
                made,
                version: env!("CARGO_PKG_VERSION").to_owned(),
                node,
                config,
                store: StoreEntry {
                    backend: backend.to_owned(),
                    url,
                    accounts,
                    records,
                    size: store_size,
                    sha256: store_sha,
                },
                files,
            },
        );
        match written {
            Ok(manifest) => {
                std::fs::rename(&partial, &target).with_context(|| {
                    format!(
                        "cannot rename {} to {}",
                        partial.display(),
                        target.display()
                    )
                })?;
                if let Some(folder) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
                    File::open(folder).and_then(|d| d.sync_all()).ok();
                }
                Ok(manifest)
            }
            Err(e) => {
                std::fs::remove_file(&partial).ok();
                Err(e)
            }
        }
    })
    .await??;
    drop(scratch);
    let bytes = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    Ok(Made {
        file: file.to_owned(),
        bytes,
        encrypted,
        manifest,
    })
}

/// `FILE.partial`, where the archive is written until it is complete.
fn partial_name(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Writes the whole archive into `out`; `manifest` is given the snapshot's size and digest
/// and the files' entries once they are written.
fn write(
    out: File,
    passphrase: Option<&str>,
    snapshot: &Path,
    named: &[named::Named],
    manifest: impl FnOnce(u64, String, Vec<FileEntry>) -> Manifest,
) -> Result<Manifest> {
    let mut writer = Writer::create(out, passphrase)?;
    let (store_size, store_sha) = {
        let source = File::open(snapshot).context("cannot read the store's snapshot")?;
        let size = source.metadata()?.len();
        let sha = writer.add(archive::STORE_ENTRY, source, size, 0o600)?;
        (size, sha)
    };
    let mut files = Vec::with_capacity(named.len());
    for item in named {
        let source = File::open(&item.source)
            .with_context(|| format!("cannot read {}", item.source.display()))?;
        let metadata = source.metadata()?;
        let path = match &item.place {
            Place::Inside(relative) => relative.to_string_lossy().into_owned(),
            Place::Outside(absolute) => absolute.to_string_lossy().into_owned(),
        };
        let mode = metadata.permissions().mode() & 0o777;
        let sha256 = writer.add(&archive::entry_for(&path), source, metadata.len(), mode)?;
        files.push(FileEntry {
            path,
            mode,
            size: metadata.len(),
            sha256,
        });
    }
    let manifest = manifest(store_size, store_sha, files);
    writer.finish(&manifest)?;
    Ok(manifest)
}
