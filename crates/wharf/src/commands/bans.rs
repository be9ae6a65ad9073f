//! `wharf ban list`, `wharf ban add` and `wharf ban remove`: the store's bans, which every
//! running node follows within two seconds (the ban engine reads the store's changes each
//! second). These commands only write the store and record the administrator's event; they
//! never decide what a node enforces beyond that.

use std::process::ExitCode;

use anyhow::Result;
use time::OffsetDateTime;
use wharf_store::BanRecord;

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
            let network = ctx.ops().lift_ban(&ctx.actor(), &address).await?;
            println!("ban of {network} lifted; running servers follow within 2 seconds");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn add(
    ctx: &Context,
    address: &str,
    seconds: Option<u64>,
    reason: String,
) -> Result<ExitCode> {
    let ban = ctx
        .ops()
        .set_ban(&ctx.actor(), address, seconds, &reason)
        .await?;
    println!(
        "{} banned until {}; running servers follow within 2 seconds",
        ban.network,
        time_of(ban.until_us)
    );
    Ok(ExitCode::SUCCESS)
}
