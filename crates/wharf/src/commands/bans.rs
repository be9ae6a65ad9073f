//! `wharf ban list` and `wharf ban remove`.

use std::process::ExitCode;

use anyhow::{Result, bail};
use time::OffsetDateTime;
use wharf_core::{Event, EventKind};
use wharf_store::BanRecord;
use wharf_types::IpNetwork;

use crate::cli::BanCommand;
use crate::context::Context;

fn time_of(us: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    wharf_types::rfc3339::format_seconds(t)
}

fn now_us() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

fn json(ban: &BanRecord) -> serde_json::Value {
    serde_json::json!({
        "network": ban.network,
        "banned": time_of(ban.banned_us),
        "until": time_of(ban.until_us),
        "strikes": ban.strikes,
        "reason": ban.reason,
        "node": ban.node,
    })
}

/// Runs one `wharf ban` command.
pub async fn run(ctx: &Context, command: BanCommand) -> Result<ExitCode> {
    match command {
        BanCommand::List { json: as_json } => {
            let bans = ctx.store.active_bans(now_us()).await?;
            if as_json {
                let list: Vec<_> = bans.iter().map(json).collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if bans.is_empty() {
                println!("no bans in force");
            } else {
                for ban in &bans {
                    println!(
                        "{:<24} until {}  strikes {}  by {}  ({})",
                        ban.network,
                        time_of(ban.until_us),
                        ban.strikes,
                        ban.node,
                        ban.reason
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BanCommand::Remove { address } => {
            let Ok(given) = address.parse::<IpNetwork>() else {
                bail!(
                    "{address:?} is not an IP address or network (like 203.0.113.7 or 2001:db8::/64)"
                );
            };
            // An address names the network it is banned by under the current policy.
            let policy = ctx.loaded.config.ban.policy();
            let mut candidates = vec![given];
            if let Ok(addr) = address
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
            {
                candidates.push(policy.network_of(addr));
            }
            for network in candidates {
                if ctx.store.remove_ban(&network.to_string()).await? {
                    let event = Event::new(EventKind::BanRemoved)
                        .message(format!("ban of {network} lifted"))
                        .attr("network", network.to_string());
                    ctx.record_event(event).await?;
                    println!("ban of {network} lifted; running servers follow within 5 seconds");
                    return Ok(ExitCode::SUCCESS);
                }
            }
            bail!("no ban for {address}; `wharf ban list` shows the bans in force")
        }
    }
}
