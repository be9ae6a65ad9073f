//! Backups and restores: `wharf backup FILE`, `wharf backup verify FILE`, `wharf restore
//! FILE --into DIR`, and the backups `[backup]` has the running server take.
//!
//! One archive carries what a node needs to come back on another machine: a consistent
//! snapshot of the store (accounts, groups, administrators, second factors, bans, handler
//! jobs, the audit trail), the configuration, and every file the configuration names (host
//! keys, TLS certificate and key, handler keys, programs, secret files, CA files, the audit
//! file), with a manifest of SHA-256 digests; sealed with the age format when a passphrase
//! is given. Home folders are not carried: they live on storage with its own backups (or,
//! for a pair or a cluster, on storage every node mounts).
//!
//! This module must never print a passphrase, and never put anything in place from an
//! archive that has not been read and checked whole.

pub mod archive;
pub mod make;
pub mod named;
pub mod restore;
pub mod schedule;

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use wharf_store::Store;

use crate::backup::archive::Manifest;

/// Reads a passphrase given on the command line as `env:NAME` or `file:PATH`.
pub fn passphrase(spec: Option<&str>) -> Result<Option<String>> {
    match spec {
        None => Ok(None),
        Some(s) if s.starts_with("env:") || s.starts_with("file:") => {
            let secret = crate::config::auth::secret_at(Path::new("."), s)?;
            if secret.is_empty() {
                bail!("--passphrase: {s} is empty");
            }
            Ok(Some(secret))
        }
        Some(_) => bail!("--passphrase: give it as env:NAME or file:PATH, never literally"),
    }
}

/// What checking an archive found.
pub struct Checked {
    /// Its manifest.
    pub manifest: Manifest,
    /// Per node: records and whether its chain verifies.
    pub chains: Vec<wharf_store::ChainReport>,
    /// Accounts in the snapshot.
    pub accounts: u64,
}

/// Reads `file` whole, checks every digest against its manifest, and opens the store
/// snapshot to verify its audit chains, without restoring anything.
pub async fn check(file: &Path, passphrase: Option<String>) -> Result<Checked> {
    let folder = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    let scratch = tempfile::Builder::new()
        .prefix(".wharf-verify-")
        .tempdir_in(&folder)
        .or_else(|_| tempfile::tempdir())
        .context("cannot make a scratch folder")?;
    let snapshot = scratch.path().join(archive::STORE_ENTRY);
    let manifest = {
        let file = file.to_owned();
        let snapshot = snapshot.clone();
        tokio::task::spawn_blocking(move || -> Result<Manifest> {
            let source = archive::open(&file, passphrase.as_deref())?;
            archive::read(source, |name, contents, _, _| {
                if name == archive::STORE_ENTRY {
                    let mut out = std::fs::File::create(&snapshot)?;
                    std::io::copy(contents, &mut out)?;
                }
                Ok(())
            })
            .with_context(|| format!("{} is not a sound backup", file.display()))
        })
        .await??
    };
    let store = Store::open_sqlite(&snapshot)
        .await
        .context("the archive's store snapshot does not open")?;
    let chains = store.verify_chains().await?;
    let accounts = store.accounts().await?.len() as u64;
    store.close().await;
    Ok(Checked {
        manifest,
        chains,
        accounts,
    })
}
