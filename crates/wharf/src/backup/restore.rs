//! `wharf restore FILE --into DIR`: a node brought back from a backup, on this machine or a
//! new one.
//!
//! The whole archive is read and checked into a scratch folder inside `DIR` before anything
//! is put in place, so a damaged or altered archive changes nothing. Then the configuration
//! and the files below its folder go below `DIR`; files that lived elsewhere go back to the
//! same absolute path when nothing is there (a different file already there is kept unless
//! `--force`, and said). The store snapshot becomes the SQLite file the configuration names,
//! or, with `--store postgres://…`, is copied into that (empty) database and the restored
//! configuration is pointed at it. The restored store's node rows are marked stopped (the
//! processes they describe are not this machine's), and the restore is recorded in its trail.
//!
//! This module must never write outside `DIR` except the absolute paths the manifest names,
//! and never write over a non-empty `DIR` without `--force`.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use aws_lc_rs::digest;
use wharf_core::{Event, EventKind};
use wharf_store::{Backend, Connect, Store};

use crate::backup::archive::{self, Manifest};
use crate::context::Context;

/// What a restore was asked to do.
#[derive(Debug, Default)]
pub struct Options {
    /// The archive.
    pub archive: PathBuf,
    /// The folder to restore into (new or empty, or anything with `force`).
    pub into: PathBuf,
    /// The archive's passphrase, if it is sealed.
    pub passphrase: Option<String>,
    /// Restore the store into this store instead of the one the backup names.
    pub store: Option<String>,
    /// That store's password, as `env:NAME` or `file:PATH` (written to the configuration).
    pub store_password: Option<String>,
    /// That store's CA file (written to the configuration).
    pub store_ca_file: Option<String>,
    /// Leave the store out (a standby on its pair's shared PostgreSQL store).
    pub no_store: bool,
    /// Give the restored node this name.
    pub node: Option<String>,
    /// Write over what is there.
    pub force: bool,
}

/// Where the store goes.
enum StoreTarget {
    File(PathBuf),
    Postgres(Connect),
    /// Nowhere: the configuration's shared store stays as it is.
    Shared,
}

/// Restores `options.archive` into `options.into`; prints what was done.
pub async fn restore(options: &Options) -> Result<()> {
    let into = &options.into;
    if into.exists() {
        let mut entries =
            fs::read_dir(into).with_context(|| format!("cannot read {}", into.display()))?;
        if entries.next().is_some() && !options.force {
            bail!(
                "{} is not empty: restore into a new or empty folder, or give --force to write over what is there",
                into.display()
            );
        }
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(into)
        .with_context(|| format!("cannot create {}", into.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix(".wharf-restore-")
        .tempdir_in(into)
        .with_context(|| format!("cannot make a scratch folder in {}", into.display()))?;
    let staged = scratch.path().to_owned();
    let manifest = {
        let staged = staged.clone();
        let archive_path = options.archive.clone();
        let passphrase = options.passphrase.clone();
        tokio::task::spawn_blocking(move || stage(&archive_path, passphrase.as_deref(), &staged))
            .await??
    };
    // `archive::read` checked the configuration's name and every path of the manifest.
    let config = PathBuf::from(&manifest.config);
    let target = store_target(options, &manifest)?;
    let snapshot = staged.join(archive::STORE_ENTRY);
    check_snapshot(&snapshot).await?;
    // Everything that can refuse the restore is asked before anything is put in place.
    let store_said = match &target {
        StoreTarget::File(path) => {
            if path.exists() {
                if !options.force {
                    bail!(
                        "{} exists: give --force to replace it with the backup's store",
                        path.display()
                    );
                }
                refuse_if_running(path).await?;
            }
            format!("the SQLite file {}", path.display())
        }
        StoreTarget::Shared => format!(
            "none: the configuration still names {}, left as it is",
            manifest.store.url
        ),
        StoreTarget::Postgres(connect) => {
            let from = Store::open_sqlite(&snapshot).await?;
            let to = Store::open(connect)
                .await
                .with_context(|| format!("cannot open {}", wharf_store::redacted(&connect.url)))?;
            from.copy_into(&to).await?;
            let (a, b) = (from.verify_chain().await?, to.verify_chain().await?);
            from.close().await;
            to.close().await;
            if a != b {
                bail!("the copy's audit chain differs from the backup's: {b:?} against {a:?}");
            }
            wharf_store::redacted(&connect.url)
        }
    };

    let mut outside_said = Vec::new();
    let mut inside = 0usize;
    for file in &manifest.files {
        let path = PathBuf::from(&file.path);
        let source = staged.join(file.entry());
        if path.is_absolute() {
            let placed = place_outside(&source, &path, file.mode, &file.sha256, options.force)?;
            outside_said.push(format!("{}: {}", path.display(), placed.as_str()));
        } else {
            inside += 1;
            put(&source, &into.join(&path), file.mode)?;
        }
    }
    let config_path = into.join(&config);
    edit_config(&config_path, options)?;
    if let StoreTarget::File(path) = &target {
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            match fs::remove_file(PathBuf::from(side)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        put(&snapshot, path, 0o600)?;
    }
    drop(scratch);

    let ctx = Context::open(&config_path).await.with_context(|| {
        format!(
            "the files are restored into {}, but its configuration does not load",
            into.display()
        )
    })?;
    let renamed = options.node.as_ref().is_some_and(|n| *n != manifest.node);
    let set_aside = if renamed {
        set_audit_file_aside(&ctx, into, &manifest.node)?
    } else {
        None
    };
    if let Some(aside) = &set_aside {
        println!(
            "audit file: node {}'s JSON-lines copy set aside as {} (this node, renamed, starts its own)",
            manifest.node,
            aside.display()
        );
    }
    if matches!(target, StoreTarget::Shared) {
        // The store is the pair's, in use: nothing about it is this restore's to change.
        ctx.store.close().await;
        println!(
            "restored the configuration and files of node {} taken {} (Wharf {}); store: {store_said}",
            manifest.node, manifest.made, manifest.version
        );
        print_files(inside, into, &outside_said);
        println!(
            "stand by with: wharf --config {} serve --standby --for {}",
            config_path.display(),
            manifest.node
        );
        return Ok(());
    }
    let trimmed = if renamed {
        0
    } else {
        trim_audit_file(&ctx, into).await?
    };
    let stopped = ctx.store.stop_every_node(crate::cluster::now_us()).await?;
    let event = Event::new(EventKind::BackupRestored)
        .message(format!(
            "restored from {} (taken {} by node {}, Wharf {})",
            options.archive.display(),
            manifest.made,
            manifest.node,
            manifest.version
        ))
        .attr("archive", options.archive.display().to_string())
        .attr("made", manifest.made.clone())
        .attr("from_node", manifest.node.clone());
    ctx.record_event(event).await?;
    ctx.store.close().await;

    println!(
        "restored the backup of node {} taken {} (Wharf {})",
        manifest.node, manifest.made, manifest.version
    );
    println!(
        "store: {} accounts, {} audit records, into {store_said}",
        manifest.store.accounts, manifest.store.records
    );
    print_files(inside, into, &outside_said);
    if trimmed > 0 {
        println!(
            "audit file: {trimmed} records written after the store's snapshot were cut, so the file and the trail agree"
        );
    }
    if stopped > 0 {
        println!(
            "nodes: {stopped} marked stopped (the processes that were running when the backup was taken)"
        );
    }
    println!(
        "start it with: wharf --config {} serve",
        config_path.display()
    );
    Ok(())
}

/// The JSON-lines copy of the trail the restored configuration names, if the restore put
/// it below `into`: a file elsewhere belongs to whoever wrote it there, and is left alone.
fn restored_audit_file(ctx: &Context, into: &Path) -> Option<PathBuf> {
    let jsonl = &ctx.loaded.config.audit.jsonl;
    if jsonl.is_empty() {
        return None;
    }
    let path = fs::canonicalize(ctx.loaded.resolve(jsonl)).ok()?;
    let folder = fs::canonicalize(into).ok()?;
    path.starts_with(&folder).then_some(path)
}

/// Moves the restored JSON-lines copy of `old_node`'s trail out of the way of the renamed
/// node's own; where it went.
fn set_audit_file_aside(ctx: &Context, into: &Path, old_node: &str) -> Result<Option<PathBuf>> {
    let Some(path) = restored_audit_file(ctx, into) else {
        return Ok(None);
    };
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".from-{old_node}"));
    let aside = PathBuf::from(aside);
    fs::rename(&path, &aside).with_context(|| format!("cannot rename {}", path.display()))?;
    Ok(Some(aside))
}

/// Cuts the restored JSON-lines copy of the trail back to the store's snapshot: the file
/// was read after the snapshot was taken, so it may end with records the restored store
/// does not hold (and with half a line). Returns how many records were cut.
async fn trim_audit_file(ctx: &Context, into: &Path) -> Result<usize> {
    let Some(path) = restored_audit_file(ctx, into) else {
        return Ok(0);
    };
    let Ok(file) = File::open(&path) else {
        return Ok(0);
    };
    let node = &ctx.loaded.config.server.name;
    let head = ctx
        .store
        .chain_head(node)
        .await?
        .map_or(0, |record| record.chain_seq());
    // Read line by line: the file may be far larger than memory should hold.
    let mut lines = io::BufReader::new(file);
    let mut line = Vec::new();
    let mut keep = 0usize;
    let mut cut = 0usize;
    loop {
        line.clear();
        if io::BufRead::read_until(&mut lines, b'\n', &mut line)? == 0 {
            break;
        }
        let within = line.ends_with(b"\n")
            && serde_json::from_slice::<wharf_store::AuditRecord>(&line)
                .is_ok_and(|record| record.chain_seq() <= head);
        if within && cut == 0 {
            keep += line.len();
        } else {
            cut += 1;
        }
    }
    if cut > 0 {
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        file.set_len(keep as u64)?;
        file.sync_all()?;
    }
    Ok(cut)
}

/// Says how many files went below the folder, and names each one put elsewhere.
fn print_files(inside: usize, into: &Path, outside: &[String]) {
    println!(
        "files: {inside} below {}, {} elsewhere",
        into.display(),
        outside.len()
    );
    for said in outside {
        println!("  {said}");
    }
}

/// Reads and checks the whole archive into `staged`.
fn stage(archive_path: &Path, passphrase: Option<&str>, staged: &Path) -> Result<Manifest> {
    let source = archive::open(archive_path, passphrase)?;
    archive::read(source, |name, contents, _, _| {
        // `name` is checked by `archive::read`: plain parts under a known prefix.
        let target = staged.join(name);
        if let Some(parent) = target.parent() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
        }
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&target)
            .with_context(|| format!("cannot write {}", target.display()))?;
        io::copy(contents, &mut out)?;
        Ok(())
    })
    .with_context(|| format!("{} is not a sound backup", archive_path.display()))
}

/// Decides where the store goes, before anything is put in place.
fn store_target(options: &Options, manifest: &Manifest) -> Result<StoreTarget> {
    if options.no_store {
        if manifest.store.backend != "postgres" {
            bail!(
                "--no-store: the backup's store is the SQLite file {}, which only the archive holds; restore it with the rest",
                manifest.store.url
            );
        }
        return Ok(StoreTarget::Shared);
    }
    let (url, chosen) = match &options.store {
        Some(url) => (url.as_str(), true),
        None => (manifest.store.url.as_str(), false),
    };
    match wharf_store::check_url(url)? {
        Backend::Sqlite => {
            let written = url.trim_start_matches("sqlite:").trim_start_matches("//");
            let path = Path::new(written);
            // The backup's own URL may only place the store below the folder; a place
            // elsewhere must be chosen on the command line.
            if !chosen && (path.is_absolute() || archive::checked_path(written).is_err()) {
                bail!(
                    "the backup's store was the SQLite file {written}, outside its folder: give --store sqlite:PATH (relative to {})",
                    options.into.display()
                );
            }
            Ok(StoreTarget::File(options.into.join(path)))
        }
        Backend::Postgres if !chosen => bail!(
            "the backup was taken from the PostgreSQL store {url}: give --store postgres://USER@HOST:PORT/DB (an empty database) or --store sqlite:wharf-data/wharf.db"
        ),
        Backend::Postgres => {
            if let Some(spec) = &options.store_password
                && !(spec.starts_with("env:") || spec.starts_with("file:"))
            {
                bail!("--store-password: give it as env:NAME or file:PATH, never literally");
            }
            let password = options
                .store_password
                .as_deref()
                .map(|spec| crate::config::auth::secret_at(&options.into, spec))
                .transpose()?;
            Ok(StoreTarget::Postgres(Connect {
                url: url.to_owned(),
                base: options.into.clone(),
                password,
                ca_file: options.store_ca_file.as_ref().map(PathBuf::from),
                application: "wharf restore".to_owned(),
                max_connections: 2,
            }))
        }
    }
}

/// Moves a staged file to `target` with `mode`, replacing what is there.
fn put(source: &Path, target: &Path, mode: u32) -> Result<()> {
    if let Some(parent) = target.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    fs::rename(source, target)
        .with_context(|| format!("cannot put {} in place", target.display()))?;
    fs::set_permissions(target, fs::Permissions::from_mode(mode & 0o777))?;
    Ok(())
}

/// What became of a file that lived outside the configuration's folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placed {
    Written,
    Unchanged,
    Kept,
}

impl Placed {
    fn as_str(self) -> &'static str {
        match self {
            Placed::Written => "written",
            Placed::Unchanged => "already there, the same",
            Placed::Kept => "a different file is there; kept as it is (--force replaces it)",
        }
    }
}

/// Puts a file that lived outside the configuration's folder back at its path.
fn place_outside(
    source: &Path,
    target: &Path,
    mode: u32,
    sha256: &str,
    force: bool,
) -> Result<Placed> {
    if target.exists() {
        if digest_of(target)? == sha256 {
            return Ok(Placed::Unchanged);
        }
        if !force {
            return Ok(Placed::Kept);
        }
    }
    if let Some(parent) = target.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    // Another file system, most likely: written beside the target as a new file (never
    // through a link someone left there), then renamed over it, so the path never holds
    // half a file.
    let mut beside = target.as_os_str().to_owned();
    beside.push(format!(".wharf-restore-{:08x}", rand::random::<u32>()));
    let beside = PathBuf::from(beside);
    let written = (|| -> Result<()> {
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode & 0o777)
            .open(&beside)
            .with_context(|| format!("cannot create {}", beside.display()))?;
        io::copy(&mut File::open(source)?, &mut out)?;
        out.set_permissions(fs::Permissions::from_mode(mode & 0o777))?;
        out.sync_all()?;
        fs::rename(&beside, target)
            .with_context(|| format!("cannot put {} in place", target.display()))?;
        Ok(())
    })();
    if written.is_err() {
        fs::remove_file(&beside).ok();
    }
    written.map(|()| Placed::Written)
}

/// Refuses to replace the store of a node that runs now on this machine.
async fn refuse_if_running(path: &Path) -> Result<()> {
    let Ok(existing) = Store::open_sqlite(path).await else {
        return Ok(());
    };
    let nodes = existing.nodes().await.unwrap_or_default();
    existing.close().await;
    let now = crate::cluster::now_us();
    if let Some(node) = nodes.iter().find(|n| {
        n.stopped_us.is_none()
            && n.state(now) == wharf_store::NodeState::Up
            && !crate::cluster::process_is_gone(n)
    }) {
        bail!(
            "{} is the store of node {}, running now ({}): stop it before restoring over it",
            path.display(),
            node.name,
            crate::cluster::describe(node, now)
        );
    }
    Ok(())
}

/// Refuses a snapshot that is not a store, or whose audit trail does not verify.
async fn check_snapshot(snapshot: &Path) -> Result<()> {
    let store = Store::open_sqlite(snapshot)
        .await
        .context("the archive's store snapshot does not open")?;
    let chains = store.verify_chains().await;
    store.close().await;
    if let Some(chain) = chains?.into_iter().find(|c| c.broken.is_some()) {
        let (at, why) = chain.broken.unwrap_or_default();
        bail!(
            "the archive's audit trail does not verify: node {}, record {at}: {why}",
            chain.node
        );
    }
    Ok(())
}

fn digest_of(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut context = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = io::Read::read(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        context.update(&buf[..n]);
    }
    Ok(wharf_types::hex(context.finish().as_ref()))
}

/// Gives the restored configuration the node name and the store the command line gave,
/// keeping the rest of the file (comments included) as it was.
fn edit_config(config_path: &Path, options: &Options) -> Result<()> {
    if options.store.is_none() && options.node.is_none() {
        return Ok(());
    }
    let text = fs::read_to_string(config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("cannot parse {}", config_path.display()))?;
    if let Some(node) = &options.node {
        doc.entry("server")
            .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
            .as_table_mut()
            .context("[server] is not a table")?
            .insert("name", toml_edit::value(node.as_str()));
    }
    if options.store.is_none() {
        fs::write(config_path, doc.to_string())
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        return Ok(());
    }
    let store = doc
        .entry("store")
        .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
        .as_table_mut()
        .context("[store] is not a table")?;
    if let Some(url) = &options.store {
        store.insert("url", toml_edit::value(url.as_str()));
    }
    match &options.store_password {
        Some(spec) => {
            store.insert("password", toml_edit::value(spec.as_str()));
        }
        None => {
            store.remove("password");
        }
    }
    match &options.store_ca_file {
        Some(path) => {
            store.insert("ca_file", toml_edit::value(path.as_str()));
        }
        None => {
            store.remove("ca_file");
        }
    }
    fs::write(config_path, doc.to_string())
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    Ok(())
}
