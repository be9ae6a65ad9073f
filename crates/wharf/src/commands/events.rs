//! `wharf events`, `wharf audit verify` (the store's chains, the archive files retention
//! moved records into, this node's JSON-lines copy and the witnesses given) and
//! `wharf audit archive`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use wharf_core::EventKind;
use wharf_store::{AuditRecord, Checkpoint, EventFilter};

use crate::audit_archive::ArchivedHashes;

use crate::cli::EventsArgs;
use crate::context::Context;

/// Parses `--since` (the Manager's API reads it the same way).
fn since_us(text: &str) -> Result<i64> {
    wharf_admin::parse_since(text).map_err(|e| anyhow::anyhow!("--{e}"))
}

fn human(r: &AuditRecord) -> String {
    let mut line = format!(
        "{:>6} {} {:<12} {} {:<20} {:<7}",
        r.seq, r.time, r.node, r.id, r.name, r.outcome
    );
    for (label, value) in [
        ("account", r.account.as_deref()),
        ("protocol", r.protocol.as_deref()),
        ("remote", r.remote.as_deref()),
        ("path", r.path.as_deref()),
        ("to", r.path2.as_deref()),
        ("sha256", r.sha256.as_deref()),
        ("message", r.message.as_deref()),
    ] {
        if let Some(v) = value {
            line.push_str(&format!(" {label}={}", v.escape_debug()));
        }
    }
    if let Some(b) = r.bytes {
        line.push_str(&format!(" bytes={b}"));
    }
    for (k, v) in &r.attrs {
        line.push_str(&format!(" {k}={}", v.escape_debug()));
    }
    line
}

/// How far behind its cursor `--follow` reads again: another node's record may commit
/// after records with a higher `seq` were read (see `wharf_store::audit`).
const FOLLOW_WINDOW: i64 = 2000;

/// `wharf events`: the cluster's records, every node's merged in time order, each naming
/// its node.
pub async fn events(config: &Path, args: EventsArgs) -> Result<ExitCode> {
    if args.catalogue {
        print!("{}", EventKind::catalogue_markdown());
        return Ok(ExitCode::SUCCESS);
    }
    let ctx = Context::open(config).await?;
    let mut filter = EventFilter {
        since_us: args.since.as_deref().map(since_us).transpose()?,
        account: args.account.clone(),
        protocol: args.protocol.clone(),
        outcome: args
            .outcome
            .as_deref()
            .map(wharf_admin::parse_outcome)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--{e}"))?,
        node: args.node.clone(),
        before_seq: args.before,
        limit: args.limit,
        ..EventFilter::default()
    };
    if let Some(ids) = &args.id {
        wharf_admin::parse_ids(ids, &mut filter).map_err(|e| anyhow::anyhow!("--{e}"))?;
    }
    if args.follow && args.before.is_some() {
        anyhow::bail!("--follow reads on from the newest records; it cannot start --before one");
    }
    let print = |r: &AuditRecord| -> Result<()> {
        if args.json {
            println!("{}", serde_json::to_string(r)?);
        } else {
            println!("{}", human(r));
        }
        Ok(())
    };
    let mut shown = std::collections::BTreeSet::new();
    for r in &ctx.store.events(&filter).await? {
        print(r)?;
        shown.insert(r.seq);
    }
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        let head = shown.last().copied().unwrap_or(0);
        let floor = head.saturating_sub(FOLLOW_WINDOW).max(0);
        shown = shown.split_off(&floor);
        filter.after_seq = Some(floor);
        filter.limit = FOLLOW_WINDOW + 1000;
        for r in &ctx.store.events(&filter).await? {
            if shown.insert(r.seq) {
                print(r)?;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The archive files of every node, as the store's checkpoints list them, looked for in
/// this node's `[audit] archive_dir` and the folders given.
struct Archives {
    dirs: Vec<PathBuf>,
    checkpoints: BTreeMap<String, Vec<Checkpoint>>,
    hashes: ArchivedHashes,
}

impl Archives {
    async fn load(ctx: &Context, extra: &[PathBuf]) -> Result<Archives> {
        let mut dirs = vec![ctx.loaded.resolve(&ctx.loaded.config.audit.archive_dir)];
        dirs.extend(extra.iter().cloned());
        let mut checkpoints = BTreeMap::new();
        for node in ctx.store.checkpointed_nodes().await? {
            let list = ctx.store.audit_checkpoints(&node).await?;
            checkpoints.insert(node, list);
        }
        Ok(Archives {
            hashes: ArchivedHashes::new(&dirs),
            dirs,
            checkpoints,
        })
    }

    /// The hash of record `n` of `node`'s chain, from the store or its archive.
    async fn hash_at(&mut self, ctx: &Context, node: &str, n: i64) -> Result<Option<String>> {
        if let Some(hash) = ctx.store.chain_hash_at(node, n).await? {
            return Ok(Some(hash));
        }
        match self.checkpoints.get(node) {
            Some(list) => self.hashes.hash_at(list, n),
            None => Ok(None),
        }
    }
}

/// A command's archive records, written as it goes.
struct CommandRecorder<'a>(&'a Context);

#[async_trait::async_trait]
impl crate::audit_archive::Recorder for CommandRecorder<'_> {
    async fn record(&self, event: wharf_core::Event) -> Result<()> {
        self.0.record_event(event).await
    }
}

/// `wharf audit archive`: this node's records past their retention, into archive files.
pub async fn archive(ctx: &Context, older_than: Option<&str>) -> Result<ExitCode> {
    let before_us = match older_than {
        Some(age) => {
            wharf_admin::parse_since(age).map_err(|e| anyhow::anyhow!("--older-than: {e}"))?
        }
        None => {
            let days = *ctx.loaded.config.audit.retention_days.get_ref();
            if days == 0 {
                anyhow::bail!(
                    "[audit] retention_days is 0 (every record stays in the store): set it, or give --older-than"
                );
            }
            wharf_admin::parse_since(&format!("{days}d"))
                .map_err(|e| anyhow::anyhow!("retention_days: {e}"))?
        }
    };
    let dir = ctx.loaded.resolve(&ctx.loaded.config.audit.archive_dir);
    let made = crate::audit_archive::archive(
        &ctx.store,
        &ctx.audit.node,
        &dir,
        before_us,
        &CommandRecorder(ctx),
    )
    .await;
    let made = match made {
        Ok(made) => made,
        Err(e) => {
            ctx.record_event(
                wharf_core::Event::new(EventKind::AuditArchiveFailed).failed(format!("{e:#}")),
            )
            .await?;
            return Err(e);
        }
    };
    if made.is_empty() {
        println!("no record of node {} to archive", ctx.audit.node);
    }
    for c in &made {
        println!(
            "records {}-{} of node {} moved to {}",
            c.first_seq,
            c.last_seq,
            c.node,
            dir.join(&c.file).display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `wharf audit verify`: every node's chain, archives then store, reported per node; this
/// node's chain also against its JSON-lines file and the witnesses given.
pub async fn verify(
    ctx: &Context,
    witnesses: &[PathBuf],
    archive_dirs: &[PathBuf],
) -> Result<ExitCode> {
    let mut archives = Archives::load(ctx, archive_dirs).await?;
    let reports = ctx.store.verify_chains().await?;
    let own = &ctx.audit.node;
    let mut intact = true;
    let mut total = 0;
    let mut lines = Vec::new();
    for report in &reports {
        total += report.records;
        let mut note = String::new();
        if let Some(list) = archives.checkpoints.get(&report.node) {
            match crate::audit_archive::verify(list, &archives.dirs)? {
                Ok(checked) => {
                    note = format!(
                        " ({} of them in {} archive file{})",
                        checked.records,
                        checked.files,
                        if checked.files == 1 { "" } else { "s" }
                    );
                }
                Err((at, why)) => {
                    intact = false;
                    eprintln!(
                        "node {}: audit trail broken at record {at}: {why}",
                        report.node
                    );
                    continue;
                }
            }
        }
        match &report.broken {
            Some((at, why)) => {
                intact = false;
                eprintln!(
                    "node {}: audit trail broken at record {at}: {why} ({} records before it hold)",
                    report.node, report.records
                );
            }
            None if &report.node == own => {
                match verify_own(ctx, &mut archives, report.records, witnesses).await? {
                    Ok(line) => lines.push(format!(
                        "node {}: {}",
                        report.node,
                        line.replacen(" records", &format!(" records{note}"), 1)
                    )),
                    Err(why) => {
                        intact = false;
                        eprintln!("node {}: {why}", report.node);
                    }
                }
            }
            None => lines.push(format!(
                "node {}: {} records{note}, intact",
                report.node, report.records
            )),
        }
    }
    if !reports.iter().any(|r| &r.node == own) {
        // This node has no records in the store: its copies must hold none either.
        match verify_own(ctx, &mut archives, 0, witnesses).await? {
            Ok(line) if line.starts_with("0 records") => {}
            Ok(line) => lines.push(format!("node {own}: {line}")),
            Err(why) => {
                intact = false;
                eprintln!("node {own}: {why}");
            }
        }
    }
    for line in &lines {
        println!("{line}");
    }
    if let Some(spill) = &ctx.audit.spill {
        let waiting = spill.count().unwrap_or(0);
        if waiting > 0 {
            println!(
                "node {own}: {waiting} records wait in {} for the store (written when the server next reaches it)",
                spill.path().display()
            );
        }
    }
    if !intact {
        let now: usize = {
            let mut n = 0;
            for node in ctx.store.checkpointed_nodes().await? {
                n += ctx.store.audit_checkpoints(&node).await?.len();
            }
            n
        };
        if now != archives.checkpoints.values().map(Vec::len).sum::<usize>() {
            eprintln!(
                "records were archived while this check ran, which can look like a break: check again"
            );
        }
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "audit trail intact: {total} records, {} node{}",
        reports.len(),
        if reports.len() == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}

/// This node's intact chain of `stored` records against the witnesses and its JSON-lines
/// copy (which holds this node's records only): `Ok(what to print)` or `Err(why not)`.
async fn verify_own(
    ctx: &Context,
    archives: &mut Archives,
    stored: i64,
    witnesses: &[PathBuf],
) -> Result<Result<String, String>> {
    let node = &ctx.audit.node;
    for witness in witnesses {
        if let Some((at, why)) = check_witness(ctx, archives, witness).await? {
            return Ok(Err(format!(
                "audit trail broken at record {at}: {why} (witness {})",
                witness.display()
            )));
        }
    }
    // The JSON-lines copy is the second witness: records cut off the end of one copy are
    // still in the other.
    let Some(path) = ctx
        .audit
        .jsonl
        .as_ref()
        .map(|j| j.path())
        .filter(|p| wharf_handlers::sinks::segments(p).is_ok_and(|s| !s.is_empty()))
    else {
        return Ok(Ok(format!("{stored} records, intact")));
    };
    let walk = match crate::audit::verify_file(path)? {
        Ok(walk) => walk,
        Err((at, why)) => {
            return Ok(Err(format!(
                "audit trail broken at record {at} in {}: {why}",
                path.display()
            )));
        }
    };
    let in_file = walk.last;
    if walk.first > 1 {
        // Retention removed the oldest segments: the copy must start where the store's
        // record before it ends.
        let before = archives.hash_at(ctx, node, walk.first - 1).await?;
        if before.as_deref() != Some(walk.first_prev.as_str()) {
            return Ok(Err(format!(
                "audit trail broken at record {}: the first record kept in {} does not follow the store's record {}",
                walk.first,
                path.display(),
                walk.first - 1
            )));
        }
    }
    let common = stored.min(in_file);
    if common >= walk.first {
        let store_hash = archives.hash_at(ctx, node, common).await?;
        let same = if common == in_file {
            store_hash.as_deref() == Some(walk.last_hash.as_str())
        } else {
            // The file goes on past the store: compare at the store's end.
            let at = crate::audit::verify_file_upto(path, common)?;
            store_hash.is_some() && store_hash == at
        };
        if !same {
            return Ok(Err(format!(
                "audit trail broken: the store and {} differ at or before record {common}",
                path.display()
            )));
        }
    }
    if in_file > stored {
        return Ok(Err(format!(
            "audit trail broken at record {}: records {}-{in_file} are in {} but not in the store (cut off)",
            stored + 1,
            stored + 1,
            path.display()
        )));
    }
    if stored > in_file {
        return Ok(Err(format!(
            "audit trail broken at record {}: records {}-{stored} are in the store but not in {} (cut off)",
            in_file + 1,
            in_file + 1,
            path.display()
        )));
    }
    Ok(Ok(format!(
        "{stored} records, intact, the same in the store and {}",
        path.display()
    )))
}

/// Compares a copy kept elsewhere with the store: each record it holds (a JSON line, or a
/// syslog line whose message is the record's JSON) must be in the store with the same
/// hash. This finds what the two local copies cannot: both cut at the same point, or both
/// rewritten with a recomputed chain. Answers the first record that differs.
async fn check_witness(
    ctx: &Context,
    archives: &mut Archives,
    path: &Path,
) -> Result<Option<(i64, String)>> {
    use std::io::BufRead;
    let file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot read witness {}: {e}", path.display()))?;
    let mut seen = 0usize;
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        let Some(start) = line.find('{') else {
            continue;
        };
        let Ok(record) = serde_json::from_str::<wharf_store::AuditRecord>(&line[start..]) else {
            continue;
        };
        seen += 1;
        if wharf_store::chain_hash(&record) != record.hash {
            // The witness's own line is damaged: it proves nothing either way.
            continue;
        }
        let here = match ctx.store.event_hash(record.seq).await? {
            Some(here) => Some(here),
            None => {
                archives
                    .hash_at(ctx, &record.node, record.chain_seq())
                    .await?
            }
        };
        let Some(here) = here else {
            return Ok(Some((
                record.chain_seq(),
                format!(
                    "record {} of node {} was sent elsewhere but is not in the store (cut off)",
                    record.chain_seq(),
                    record.node
                ),
            )));
        };
        if here != record.hash {
            return Ok(Some((
                record.chain_seq(),
                "the store's record differs from the copy sent elsewhere".to_owned(),
            )));
        }
    }
    if seen == 0 {
        anyhow::bail!("witness {} holds no audit records", path.display());
    }
    Ok(None)
}
