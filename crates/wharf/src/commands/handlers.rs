//! `wharf handler jobs`: what the event handlers' queue holds.

use std::process::ExitCode;

use anyhow::{Result, bail};
use wharf_store::{HandlerJob, JobState};

use crate::cli::HandlerCommand;
use crate::context::Context;

fn time_of(us: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    wharf_types::rfc3339::format_micros(t)
}

fn json(job: &HandlerJob) -> serde_json::Value {
    serde_json::json!({
        "id": job.id,
        "handler": job.handler,
        "event": job.event_seq,
        "state": job.state.as_str(),
        "attempts": job.attempts,
        "due": time_of(job.due_us),
        "queued": time_of(job.created_us),
        "node": job.node,
        "owner": job.owner,
        "lease_until": job.lease_until_us.map(time_of),
        "claims": job.claims,
        "last_error": job.last_error,
    })
}

/// Runs one `wharf handler` command.
pub async fn run(ctx: &Context, command: HandlerCommand) -> Result<ExitCode> {
    match command {
        HandlerCommand::Jobs {
            state,
            limit,
            json: as_json,
        } => {
            let state = match state.as_deref() {
                None => None,
                Some("queued") => Some(JobState::Queued),
                Some("running") => Some(JobState::Running),
                Some("done") => Some(JobState::Done),
                Some("failed") => Some(JobState::Failed),
                Some(other) => {
                    bail!("--state {other:?}: use queued, running, done or failed")
                }
            };
            let jobs = ctx
                .store
                .handler_jobs(state, limit.clamp(1, 100_000))
                .await?;
            if as_json {
                for job in &jobs {
                    println!("{}", json(job));
                }
            } else if jobs.is_empty() {
                println!("no handler jobs");
            } else {
                for job in &jobs {
                    println!(
                        "{:>6}  {:<8} {:<24} event {:<8} attempts {}  due {}{}{}",
                        job.id,
                        job.state.as_str(),
                        job.handler,
                        job.event_seq,
                        job.attempts,
                        time_of(job.due_us),
                        job.owner
                            .as_deref()
                            .map(|o| format!("  node {o}"))
                            .unwrap_or_default(),
                        job.last_error
                            .as_deref()
                            .map(|e| format!("  ({e})"))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
