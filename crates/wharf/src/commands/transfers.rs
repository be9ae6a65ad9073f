//! `wharf transfer list|run|history`: the client-side transfers, run one by hand, and what
//! their runs did.
//!
//! `run` runs the transfer in this process, holding its lease like a node (as
//! `NODE/cli/PID`), so it never runs beside the server's own run of it: when a node holds
//! the transfer, it waits for that run to end.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use wharf_store::{TransferFile, TransferRun};
use wharf_transfers::Transfer;
use wharf_transfers::run::{Context as RunContext, Watch};

use crate::cli::TransferCommand;
use crate::context::Context;

fn time_of(us: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    wharf_types::rfc3339::format_micros(t)
}

/// Text from a peer (a server's answer in a failure), as a terminal may show it: control
/// characters escaped, so no escape sequence of a partner's server reaches the operator's
/// terminal.
fn shown(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn run_json(run: &TransferRun) -> serde_json::Value {
    serde_json::json!({
        "run": run.id,
        "transfer": run.transfer,
        "node": run.node,
        "trigger": run.trigger,
        "state": run.state,
        "started": time_of(run.started_us),
        "finished": run.finished_us.map(time_of),
        "files": run.files,
        "bytes": run.bytes,
        "skipped": run.skipped,
        "failures": run.failures,
        "message": run.message,
    })
}

fn file_json(file: &TransferFile) -> serde_json::Value {
    serde_json::json!({
        "id": file.id,
        "transfer": file.transfer,
        "source": file.source,
        "size": file.size,
        "state": file.state.as_str(),
        "destination": file.destination,
        "sha256": file.sha256,
        "attempts": file.attempts,
        "due": time_of(file.due_us),
        "run": file.run_id,
        "last_error": file.last_error,
        "updated": time_of(file.updated_us),
    })
}

/// Runs one `wharf transfer` command.
pub async fn run(ctx: &Context, command: TransferCommand) -> Result<ExitCode> {
    let transfers = crate::config::transfer::transfers(&ctx.loaded)?;
    match command {
        TransferCommand::List { json } => list(ctx, &transfers, json).await,
        TransferCommand::Run { name, wait } => {
            let Some(transfer) = transfers.iter().find(|t| t.name == name) else {
                bail!(
                    "no [[transfer]] is named {name:?} in {}",
                    ctx.loaded.path.display()
                );
            };
            run_one(ctx, transfer, Duration::from_secs(wait)).await
        }
        TransferCommand::History {
            name,
            limit,
            files,
            json,
        } => {
            if !transfers.iter().any(|t| t.name == name) {
                bail!(
                    "no [[transfer]] is named {name:?} in {}",
                    ctx.loaded.path.display()
                );
            }
            history(ctx, &name, limit.clamp(1, 100_000), files, json).await
        }
    }
}

async fn list(ctx: &Context, transfers: &[Arc<Transfer>], json: bool) -> Result<ExitCode> {
    let now = ctx.store.clock_us().await?;
    let leases: HashMap<_, _> = ctx
        .store
        .transfer_leases()
        .await?
        .into_iter()
        .map(|l| (l.transfer.clone(), l))
        .collect();
    if transfers.is_empty() && !json {
        println!("no transfers configured");
    }
    for transfer in transfers {
        let lease = leases.get(&transfer.name);
        let running = lease
            .filter(|l| l.lease_until_us >= now)
            .and_then(|l| l.owner.clone());
        let requested = lease.and_then(|l| l.requested.clone());
        let last = ctx
            .store
            .transfer_runs(&transfer.name, 1)
            .await?
            .into_iter()
            .next();
        let state = match (&running, &requested) {
            (Some(owner), _) => format!("running on {owner}"),
            (None, Some((_, by))) => format!("asked for ({by})"),
            (None, None) => "idle".to_owned(),
        };
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "name": transfer.name,
                    "source": format!("{}:{}", transfer.source.name, transfer.source_folder),
                    "destination": format!("{}:{}", transfer.destination.name, transfer.destination_folder),
                    "when": transfer.when(),
                    "state": state,
                    "last_run": last.as_ref().map(run_json),
                })
            );
        } else {
            let last = last.map_or("never run".to_owned(), |r| {
                format!(
                    "last run {} {} ({} files, {} failed)",
                    time_of(r.started_us),
                    r.state,
                    r.files,
                    r.failures
                )
            });
            println!(
                "{:<20} {}:{} -> {}:{}  [{}]  {state}; {last}",
                transfer.name,
                transfer.source.name,
                transfer.source_folder,
                transfer.destination.name,
                transfer.destination_folder,
                transfer.when()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn history(
    ctx: &Context,
    name: &str,
    limit: i64,
    files: bool,
    json: bool,
) -> Result<ExitCode> {
    if files {
        let rows = ctx.store.transfer_files(name, limit).await?;
        for file in &rows {
            if json {
                println!("{}", file_json(file));
            } else {
                println!(
                    "{:>6}  {:<9} {} -> {}  {} bytes  attempts {}{}",
                    file.id,
                    file.state.as_str(),
                    file.source,
                    file.destination.as_deref().unwrap_or("-"),
                    file.size,
                    file.attempts,
                    file.last_error
                        .as_deref()
                        .map(|e| format!("  ({})", shown(e)))
                        .unwrap_or_default()
                );
            }
        }
        if rows.is_empty() && !json {
            println!("no files recorded for {name}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let runs = ctx.store.transfer_runs(name, limit).await?;
    for run in &runs {
        if json {
            println!("{}", run_json(run));
        } else {
            println!(
                "run {:>5}  {}  {:<8} {:<22} on {}: {} files, {} bytes, {} skipped, {} failed{}",
                run.id,
                time_of(run.started_us),
                run.state,
                run.trigger,
                run.node,
                run.files,
                run.bytes,
                run.skipped,
                run.failures,
                run.message
                    .as_deref()
                    .map(|m| format!(" ({})", shown(m)))
                    .unwrap_or_default()
            );
        }
    }
    if runs.is_empty() && !json {
        println!("{name} has not run yet");
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_one(ctx: &Context, transfer: &Arc<Transfer>, wait: Duration) -> Result<ExitCode> {
    let node = &ctx.loaded.config.server.name;
    let owner = format!("{node}/cli/{}", std::process::id());
    let hold = ctx.loaded.config.handler_queue.settings().lease;
    let started = Instant::now();
    let mut said = false;
    let lease = loop {
        let now = ctx.store.clock_us().await?;
        let until = now.saturating_add(i64::try_from(hold.as_micros()).unwrap_or(i64::MAX));
        if let Some(lease) = ctx
            .store
            .claim_transfer(&transfer.name, &owner, now, until)
            .await?
        {
            break lease;
        }
        if started.elapsed() >= wait {
            let holder = ctx
                .store
                .transfer_leases()
                .await?
                .into_iter()
                .find(|l| l.transfer == transfer.name)
                .and_then(|l| l.owner)
                .unwrap_or_default();
            eprintln!(
                "wharf: {} is still running on {holder}; try again later",
                transfer.name
            );
            return Ok(ExitCode::FAILURE);
        }
        if !said {
            eprintln!(
                "wharf: {} is running elsewhere; waiting for that run to end",
                transfer.name
            );
            said = true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let run_ctx = RunContext {
        store: ctx.store.clone(),
        recorder: Arc::new(ctx.audit.clone()),
        node: owner.clone(),
    };
    let watch: Arc<dyn Watch> = if std::io::stdout().is_terminal() {
        Arc::new(Bars::default())
    } else {
        Arc::new(Lines)
    };
    let trigger = format!("hand ({})", crate::context::operator());
    let outcome =
        wharf_transfers::scheduler::run_held(transfer, lease, &run_ctx, &trigger, hold, watch)
            .await;
    let summary = outcome?;
    println!(
        "run {}: {} files delivered ({} bytes), {} skipped, {} failed{}",
        summary.run,
        summary.files,
        summary.bytes,
        summary.skipped,
        summary.failures,
        summary
            .stopped
            .as_deref()
            .map(|s| format!("; stopped: {}", shown(s)))
            .unwrap_or_default()
    );
    Ok(if summary.failures == 0 && summary.stopped.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One line per file as it ends (not a terminal).
struct Lines;

impl Watch for Lines {
    fn ended(&self, name: &str, outcome: &str) {
        println!("{outcome:<8} {name}");
    }
}

/// A bar per file in progress, redrawn in place (a terminal).
#[derive(Default)]
struct Bars {
    state: Mutex<BarState>,
}

#[derive(Default)]
struct BarState {
    /// Files in progress: name, size, bytes so far.
    active: Vec<(String, u64, u64)>,
    /// Lines drawn last time (to move back over).
    drawn: usize,
    last: Option<Instant>,
}

fn bar(name: &str, size: u64, done: u64) -> String {
    let width = 30;
    let done = done.min(size);
    let filled = (done * width as u64)
        .checked_div(size)
        .unwrap_or(width as u64) as usize;
    let percent = (done * 100).checked_div(size).unwrap_or(100);
    format!(
        "{name:<32.32} [{}{}] {percent:>3}%  {done}/{size} bytes",
        "#".repeat(filled),
        ".".repeat(width - filled)
    )
}

impl Bars {
    fn redraw(&self, state: &mut BarState, line: Option<String>) {
        let mut out = std::io::stdout().lock();
        if state.drawn > 0 {
            let _ = write!(out, "\x1b[{}A", state.drawn);
        }
        let mut written = 0;
        if let Some(line) = line {
            let _ = writeln!(out, "\x1b[2K{line}");
            written += 1;
        }
        for (name, size, done) in &state.active {
            let _ = writeln!(out, "\x1b[2K{}", bar(name, *size, *done));
            written += 1;
        }
        // Bars of files that ended since the last drawing: cleared, and the cursor back
        // above them.
        let extra = state.drawn.saturating_sub(written);
        for _ in 0..extra {
            let _ = writeln!(out, "\x1b[2K");
        }
        if extra > 0 {
            let _ = write!(out, "\x1b[{extra}A");
        }
        let _ = out.flush();
        state.drawn = state.active.len();
        state.last = Some(Instant::now());
    }
}

impl Watch for Bars {
    fn started(&self, name: &str, size: u64) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.active.push((name.to_owned(), size, 0));
        self.redraw(&mut state, None);
    }

    fn progress(&self, name: &str, bytes: u64) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(entry) = state.active.iter_mut().find(|(n, ..)| n == name) {
            entry.2 = bytes;
        }
        if state
            .last
            .is_none_or(|l| l.elapsed() >= Duration::from_millis(100))
        {
            self.redraw(&mut state, None);
        }
    }

    fn ended(&self, name: &str, outcome: &str) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let size = state
            .active
            .iter()
            .find(|(n, ..)| n == name)
            .map_or(0, |e| e.1);
        state.active.retain(|(n, ..)| n != name);
        self.redraw(
            &mut state,
            Some(format!("{outcome:<8} {name} ({size} bytes)")),
        );
    }
}
