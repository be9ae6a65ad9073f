//! `wharf reload`: asks this node's running server to apply its configuration file again
//! (the same as sending it SIGHUP), then waits for its answer in the audit trail and prints
//! it: what it started, retired and replaced, or why it changed nothing.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use wharf_store::EventFilter;

use crate::context::Context;

/// How long to wait for the server's record of the reload.
const WAIT: Duration = Duration::from_secs(20);

/// Runs `wharf reload`.
pub async fn run(ctx: &Context) -> Result<ExitCode> {
    let name = &ctx.loaded.config.server.name;
    let nodes = ctx.store.nodes().await?;
    let Some(node) = nodes
        .iter()
        .find(|n| &n.name == name && n.stopped_us.is_none())
    else {
        bail!("node {name:?} is not running (`wharf serve` starts it)");
    };
    if node.host != crate::cluster::host_name() || crate::cluster::process_is_gone(node) {
        bail!(
            "node {name:?} runs on {} (process {}), not here; run `wharf reload` there",
            node.host,
            node.pid
        );
    }
    let newest = |after: Option<i64>| EventFilter {
        node: Some(name.clone()),
        after_seq: after,
        limit: 1000,
        ..Default::default()
    };
    let before = ctx
        .store
        .events(&EventFilter {
            limit: 1,
            ..newest(None)
        })
        .await?
        .last()
        .map_or(0, |r| r.seq);
    let pid = i32::try_from(node.pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    let Some(pid) = pid else {
        bail!("node {name:?} has no usable process id ({})", node.pid);
    };
    rustix::process::kill_process(pid, rustix::process::Signal::HUP)
        .map_err(|e| anyhow::anyhow!("cannot signal process {}: {e}", node.pid))?;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut after = before;
    while tokio::time::Instant::now() < deadline {
        for record in ctx.store.events(&newest(Some(after))).await? {
            after = after.max(record.seq);
            match record.id {
                10020 => {
                    println!("{}", record.message.unwrap_or_default());
                    return Ok(if record.outcome == "success" {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    });
                }
                10021 => {
                    eprintln!(
                        "configuration not reloaded; the running one stays:\n{}",
                        record.message.unwrap_or_default()
                    );
                    return Ok(ExitCode::FAILURE);
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!(
        "the server did not record the reload within {} s",
        WAIT.as_secs()
    )
}
