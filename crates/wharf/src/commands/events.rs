//! `wharf events` and `wharf audit verify`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use time::OffsetDateTime;
use wharf_core::EventKind;
use wharf_store::{AuditRecord, EventFilter};

use crate::cli::EventsArgs;
use crate::context::Context;

/// Parses `--since`: RFC 3339, or an age such as 90s, 15m, 2h, 7d.
fn since_us(text: &str) -> Result<i64> {
    let now = OffsetDateTime::now_utc();
    let at = if let Ok(t) = wharf_types::rfc3339::parse(text) {
        t
    } else {
        let (number, unit) = text.split_at(text.trim_end_matches(char::is_alphabetic).len());
        let n: i64 = number.parse().map_err(|_| anyhow::anyhow!("--since {text:?}: use RFC 3339 (2026-11-25T10:00:00Z) or an age such as 15m, 2h, 7d"))?;
        let secs = match unit {
            "s" => n,
            "m" => n * 60,
            "h" => n * 3600,
            "d" => n * 86400,
            _ => bail!("--since {text:?}: the unit must be s, m, h or d"),
        };
        now - time::Duration::seconds(secs)
    };
    Ok(i64::try_from(at.unix_timestamp_nanos() / 1000).unwrap_or(0))
}

fn human(r: &AuditRecord) -> String {
    let mut line = format!(
        "{:>6} {} {} {:<20} {:<7}",
        r.seq, r.time, r.id, r.name, r.outcome
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

/// `wharf events`.
pub async fn events(config: &Path, args: EventsArgs) -> Result<ExitCode> {
    if args.catalogue {
        print!("{}", EventKind::catalogue_markdown());
        return Ok(ExitCode::SUCCESS);
    }
    let ctx = Context::open(config).await?;
    let mut filter = EventFilter {
        since_us: args.since.as_deref().map(since_us).transpose()?,
        id: args.id,
        account: args.account.clone(),
        after_seq: None,
        limit: args.limit,
    };
    let mut last = 0;
    loop {
        let records = ctx.store.events(&filter).await?;
        for r in &records {
            if args.json {
                println!("{}", serde_json::to_string(r)?);
            } else {
                println!("{}", human(r));
            }
            last = r.seq;
        }
        if !args.follow {
            break;
        }
        filter.after_seq = Some(last);
        filter.limit = 1000;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(ExitCode::SUCCESS)
}

/// `wharf audit verify`.
pub async fn verify(ctx: &Context, witnesses: &[std::path::PathBuf]) -> Result<ExitCode> {
    let stored = match ctx.store.verify_chain().await? {
        Ok(count) => count,
        Err((seq, why)) => {
            eprintln!("audit trail broken at record {seq}: {why}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for witness in witnesses {
        if let Some((seq, why)) = check_witness(ctx, witness, stored).await? {
            eprintln!(
                "audit trail broken at record {seq}: {why} (witness {})",
                witness.display()
            );
            return Ok(ExitCode::FAILURE);
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
        println!("audit trail intact: {stored} records");
        return Ok(ExitCode::SUCCESS);
    };
    let walk = match crate::audit::verify_file(path)? {
        Ok(walk) => walk,
        Err((seq, why)) => {
            eprintln!(
                "audit trail broken at record {seq} in {}: {why}",
                path.display()
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let in_file = walk.last;
    if walk.first > 1 {
        // Retention removed the oldest segments: the copy must start where the store's
        // record before it ends.
        let before = ctx.store.event_hash(walk.first - 1).await?;
        if before.as_deref() != Some(walk.first_prev.as_str()) {
            eprintln!(
                "audit trail broken at record {}: the first record kept in {} does not follow the store's record {}",
                walk.first,
                path.display(),
                walk.first - 1
            );
            return Ok(ExitCode::FAILURE);
        }
    }
    let common = stored.min(in_file);
    if common >= walk.first {
        let store_hash = ctx.store.event_hash(common).await?;
        let same = if common == in_file {
            store_hash.as_deref() == Some(walk.last_hash.as_str())
        } else {
            // The file goes on past the store: compare at the store's end.
            let at = crate::audit::verify_file_upto(path, common)?;
            store_hash.is_some() && store_hash == at
        };
        if !same {
            eprintln!(
                "audit trail broken: the store and {} differ at or before record {common}",
                path.display()
            );
            return Ok(ExitCode::FAILURE);
        }
    }
    if in_file > stored {
        eprintln!(
            "audit trail broken at record {}: records {}-{in_file} are in {} but not in the store (cut off)",
            stored + 1,
            stored + 1,
            path.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    if stored > in_file {
        eprintln!(
            "audit trail broken at record {}: records {}-{stored} are in the store but not in {} (cut off)",
            in_file + 1,
            in_file + 1,
            path.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "audit trail intact: {stored} records, the same in the store and {}",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Compares a copy kept elsewhere with the store: each record it holds (a JSON line, or a
/// syslog line whose message is the record's JSON) must be in the store with the same
/// hash. This finds what the two local copies cannot: both cut at the same point, or both
/// rewritten with a recomputed chain. Answers the first record that differs.
async fn check_witness(
    ctx: &Context,
    path: &std::path::Path,
    stored: i64,
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
        if record.seq > stored {
            return Ok(Some((
                stored + 1,
                format!(
                    "records up to {} were sent elsewhere but are not in the store (cut off)",
                    record.seq
                ),
            )));
        }
        let here = ctx.store.event_hash(record.seq).await?;
        if here.as_deref() != Some(record.hash.as_str()) {
            return Ok(Some((
                record.seq,
                "the store's record differs from the copy sent elsewhere".to_owned(),
            )));
        }
    }
    if seen == 0 {
        anyhow::bail!("witness {} holds no audit records", path.display());
    }
    Ok(None)
}
