//! `wharf cluster status`: the nodes of the cluster as the store knows them,
//! `wharf cluster forget`: a node removed from the cluster for good, and
//! `wharf cluster configuration`: the revisions of the configuration every node shares.

use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::cli::{ClusterCommand, ClusterConfigurationCommand};
use crate::cluster::{ago, describe, now_us, time_of};
use crate::context::Context;

/// Runs one `wharf cluster` command.
pub async fn run(ctx: &Context, command: ClusterCommand) -> Result<ExitCode> {
    match command {
        ClusterCommand::Status { json: as_json } => {
            let nodes = ctx.store.nodes().await?;
            let now = now_us();
            if as_json {
                let list: Vec<_> = nodes
                    .iter()
                    .map(|n| wharf_admin::node_view(n, now))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(ExitCode::SUCCESS);
            }
            if nodes.is_empty() {
                println!(
                    "no node has registered in this store yet (a node registers when `wharf serve` starts)"
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<16} {:<7} {:<9} {:>8}  {:<10} SERVICES",
                "NODE", "STATE", "VERSION", "SESSIONS", "LAST SEEN"
            );
            for node in &nodes {
                let services: Vec<String> = node
                    .services
                    .iter()
                    .map(|s| format!("{} {} {}", s.name, s.kind, s.addresses.join(",")))
                    .collect();
                println!(
                    "{:<16} {:<7} {:<9} {:>8}  {:<10} {}",
                    node.name,
                    node.state(now).as_str(),
                    node.version,
                    node.sessions,
                    format!("{} ago", ago(now, node.seen_us)),
                    services.join("; ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Forget { node } => {
            let now = now_us();
            if let Some(live) = ctx
                .store
                .nodes()
                .await?
                .into_iter()
                .find(|n| n.name == node && n.state(now) == wharf_store::NodeState::Up)
            {
                bail!(
                    "node {node:?} is up: {}; stop it first",
                    describe(&live, now)
                );
            }
            if !ctx.store.forget_node(&node, now).await? {
                bail!("no node is named {node:?}; see `wharf cluster status`");
            }
            println!("node {node:?} forgotten");
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Configuration(command) => configuration(ctx, command).await,
    }
}

/// The first line `show` writes before a revision's text.
const HEADER: &str = "# cluster configuration revision ";

/// FILE's text, refused past [`crate::config::shared::MAX_TEXT`] before more is read.
fn read_bounded(file: &std::path::Path) -> Result<String> {
    use std::io::Read as _;
    let max = crate::config::shared::MAX_TEXT;
    let opened = std::fs::File::open(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let mut bytes = Vec::new();
    opened
        .take(u64::try_from(max).unwrap_or(u64::MAX) + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    if bytes.len() > max {
        bail!("{}: at most {} KiB", file.display(), max / 1024);
    }
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{}: not UTF-8", file.display()))
}

async fn configuration(ctx: &Context, command: ClusterConfigurationCommand) -> Result<ExitCode> {
    let ops = ctx.ops();
    let actor = ctx.actor();
    match command {
        ClusterConfigurationCommand::Show { revision } => {
            match ops.cluster_configuration(&actor, revision).await? {
                Some(found) => {
                    // A comment TOML ignores, which `publish` reads back as the revision the
                    // edit started from.
                    println!(
                        "{HEADER}{} (published by {} at {})",
                        found.revision,
                        found.admin,
                        time_of(found.published_us)
                    );
                    print!("{}", found.text);
                }
                None if revision.is_some() => bail!(
                    "no revision {} was published; see `wharf cluster configuration history`",
                    revision.unwrap_or_default()
                ),
                None => {
                    eprintln!(
                        "# no cluster configuration was published yet: these are {}'s shared sections",
                        ctx.loaded.path.display()
                    );
                    print!(
                        "{}",
                        crate::config::shared::sections_of_file(&ctx.loaded.path)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ClusterConfigurationCommand::History => {
            let history = ops.cluster_configuration_history(&actor).await?;
            if history.is_empty() {
                println!("no cluster configuration was published yet");
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:>8}  {:<20}  PUBLISHED BY", "REVISION", "PUBLISHED");
            for r in &history {
                println!(
                    "{:>8}  {:<20}  {}",
                    r.revision,
                    time_of(r.published_us),
                    r.admin
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ClusterConfigurationCommand::Publish { file, head } => {
            let text = read_bounded(&file)?;
            // The line `show` wrote first names the revision the edit started from; it is
            // not part of the revision.
            let (shown, text) = match text.strip_prefix(HEADER) {
                Some(rest) => {
                    let (line, body) = rest.split_once('\n').unwrap_or((rest, ""));
                    let number = line.split_whitespace().next().and_then(|n| n.parse().ok());
                    (number, body.to_owned())
                }
                None => (None, text),
            };
            let head = match head.or(shown) {
                Some(head) if head >= 0 => head,
                Some(head) => bail!("--head {head}: give the revision FILE was edited from"),
                None => ctx.store.cluster_configuration_head().await?,
            };
            if let Err(issues) = crate::config::shared::check_revision(
                &ctx.loaded.path,
                head.saturating_add(1),
                &text,
            ) {
                eprintln!("{issues}");
                eprintln!("nothing published");
                return Ok(ExitCode::FAILURE);
            }
            let revision = ops
                .publish_cluster_configuration(&actor, head, &text)
                .await?;
            println!(
                "published cluster configuration revision {revision}; every running node applies it within 2 s (`wharf events --id 10020` shows each node's reload)"
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
