//! `wharf events` and `wharf audit verify`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use wharf_core::EventKind;
use wharf_store::{AuditRecord, EventFilter};

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

/// `wharf audit verify`: every node's chain, reported per node; this node's chain also
/// against its JSON-lines file and the witnesses given.
pub async fn verify(ctx: &Context, witnesses: &[std::path::PathBuf]) -> Result<ExitCode> {
    let reports = ctx.store.verify_chains().await?;
    let own = &ctx.audit.node;
    let mut intact = true;
    let mut total = 0;
    let mut lines = Vec::new();
    for report in &reports {
        total += report.records;
        match &report.broken {
            Some((at, why)) => {
                intact = false;
                eprintln!(
                    "node {}: audit trail broken at record {at}: {why} ({} records before it hold)",
                    report.node, report.records
                );
            }
            None if &report.node == own => {
                match verify_own(ctx, report.records, witnesses).await? {
                    Ok(line) => lines.push(format!("node {}: {line}", report.node)),
                    Err(why) => {
                        intact = false;
                        eprintln!("node {}: {why}", report.node);
                    }
                }
            }
            None => lines.push(format!(
                "node {}: {} records, intact",
                report.node, report.records
            )),
        }
    }
    if !reports.iter().any(|r| &r.node == own) {
        // This node has no records in the store: its copies must hold none either.
        match verify_own(ctx, 0, witnesses).await? {
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
    stored: i64,
    witnesses: &[std::path::PathBuf],
) -> Result<Result<String, String>> {
    let node = &ctx.audit.node;
    for witness in witnesses {
        if let Some((at, why)) = check_witness(ctx, witness).await? {
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
        let before = ctx.store.chain_hash_at(node, walk.first - 1).await?;
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
        let store_hash = ctx.store.chain_hash_at(node, common).await?;
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
async fn check_witness(ctx: &Context, path: &std::path::Path) -> Result<Option<(i64, String)>> {
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
        let Some(here) = ctx.store.event_hash(record.seq).await? else {
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
