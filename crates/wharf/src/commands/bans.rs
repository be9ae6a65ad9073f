//! `wharf ban list`, `wharf ban add` and `wharf ban remove`: the store's bans, which every
//! running node follows within two seconds (the ban engine reads the store's changes each
//! second). These commands only write the store and record the administrator's event; they
//! never decide what a node enforces beyond that.

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
        BanCommand::Add {
            address,
            seconds,
            reason,
        } => add(ctx, &address, seconds, reason).await,
        BanCommand::Remove { address } => {
            let candidates = networks(ctx, &address)?;
            for network in candidates {
                if ctx.store.remove_ban(&network.to_string(), now_us()).await? {
                    let event = Event::new(EventKind::BanRemoved)
                        .message(format!("ban of {network} lifted"))
                        .attr("network", network.to_string());
                    ctx.record_event(event).await?;
                    println!("ban of {network} lifted; running servers follow within 2 seconds");
                    return Ok(ExitCode::SUCCESS);
                }
            }
            bail!("no ban for {address}; `wharf ban list` shows the bans in force")
        }
    }
}

/// The networks `address` may name: itself as written, and for an address the network it is
/// banned by under the current policy (its /64 for IPv6 by default), most likely last.
fn networks(ctx: &Context, address: &str) -> Result<Vec<IpNetwork>> {
    let Ok(given) = address.parse::<IpNetwork>() else {
        bail!("{address:?} is not an IP address or network (like 203.0.113.7 or 2001:db8::/64)");
    };
    let policy = ctx.loaded.config.ban.policy();
    let mut candidates = vec![given];
    if let Ok(addr) = address
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
    {
        candidates.push(policy.network_of(addr));
    }
    Ok(candidates)
}

/// The longest ban an administrator may set (ten years): keeps the end time representable.
const MAX_ADMIN_BAN_SECS: u64 = 10 * 365 * 24 * 3600;

async fn add(
    ctx: &Context,
    address: &str,
    seconds: Option<u64>,
    reason: String,
) -> Result<ExitCode> {
    let candidates = networks(ctx, address)?;
    // An address is banned by its network, as the engine would ban it.
    let Some(network) = candidates.last().copied() else {
        bail!("{address:?} names no network");
    };
    let policy = ctx.loaded.config.ban.policy();
    let seconds = seconds.unwrap_or(policy.ban_time.as_secs());
    if seconds == 0 || seconds > MAX_ADMIN_BAN_SECS {
        bail!("--seconds must be 1 to {MAX_ADMIN_BAN_SECS}");
    }
    if reason.len() > 500 {
        bail!("--reason is at most 500 bytes");
    }
    let name = network.to_string();
    let strikes = ctx.store.ban(&name).await?.map_or(0, |b| b.strikes) + 1;
    let now = now_us();
    let until = now.saturating_add(i64::try_from(seconds)?.saturating_mul(1_000_000));
    ctx.store
        .put_ban(&BanRecord {
            network: name.clone(),
            banned_us: now,
            until_us: until,
            strikes,
            reason: reason.clone(),
            node: "cli".to_owned(),
        })
        .await?;
    let event = Event::new(EventKind::BanSet)
        .message(format!("{network} banned: {reason}"))
        .attr("network", name)
        .attr("until", time_of(until))
        .attr("seconds", seconds.to_string());
    ctx.record_event(event).await?;
    println!(
        "{network} banned until {}; running servers follow within 2 seconds",
        time_of(until)
    );
    Ok(ExitCode::SUCCESS)
}
