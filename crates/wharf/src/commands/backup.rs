//! `wharf backup FILE`, `wharf backup verify FILE` and `wharf restore FILE --into DIR`: the
//! command-line side of `crate::backup`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use wharf_core::{Event, EventKind};

use crate::backup::{self, make, restore, schedule};
use crate::cli::{BackupArgs, BackupCommand, RestoreArgs};
use crate::context::Context;

/// `wharf backup …`.
pub async fn backup(config: &Path, args: BackupArgs) -> Result<ExitCode> {
    if let Some(BackupCommand::Verify { file, passphrase }) = args.check {
        return verify(&file, passphrase.as_deref()).await;
    }
    let Some(file) = args.file else {
        anyhow::bail!("give the archive to write: wharf backup FILE");
    };
    let passphrase = backup::passphrase(args.passphrase.as_deref())?;
    let ctx = Context::open(config).await?;
    let source = make::Source::of(&ctx.loaded);
    match make::make(&source, &ctx.store, &file, passphrase).await {
        Ok(made) => {
            ctx.record_event(schedule::made_event(&made, "command"))
                .await?;
            println!(
                "{}: {} bytes; store: {} accounts, {} audit records; {} files{}",
                made.file.display(),
                made.bytes,
                made.manifest.store.accounts,
                made.manifest.store.records,
                made.manifest.files.len(),
                if made.encrypted { "; encrypted" } else { "" }
            );
            for f in &made.manifest.files {
                println!("  {}", f.path);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let event = Event::new(EventKind::BackupFailed)
                .failed(format!("{e:#}"))
                .attr("file", file.display().to_string())
                .attr("trigger", "command");
            ctx.record_event(event).await?;
            Err(e)
        }
    }
}

async fn verify(file: &Path, passphrase: Option<&str>) -> Result<ExitCode> {
    let checked = backup::check(file, backup::passphrase(passphrase)?).await?;
    let m = &checked.manifest;
    println!(
        "{}: backup of node {} taken {} by Wharf {}",
        file.display(),
        m.node,
        m.made,
        m.version
    );
    println!(
        "files: {} and the store snapshot ({} bytes), every digest matches the manifest",
        m.files.len(),
        m.store.size
    );
    let mut sound = true;
    for chain in &checked.chains {
        match &chain.broken {
            None => println!(
                "trail: node {}: {} records, chain verifies",
                chain.node, chain.records
            ),
            Some((at, why)) => {
                sound = false;
                println!("trail: node {}: BROKEN at record {at}: {why}", chain.node);
            }
        }
    }
    println!(
        "store: {} accounts ({} from {})",
        checked.accounts, m.store.backend, m.store.url
    );
    Ok(if sound {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `wharf restore …`.
pub async fn restore(args: RestoreArgs) -> Result<ExitCode> {
    let options = restore::Options {
        passphrase: backup::passphrase(args.passphrase.as_deref())?,
        archive: args.file,
        into: args.into,
        store: args.store,
        store_password: args.store_password,
        store_ca_file: args.store_ca_file,
        no_store: args.no_store,
        node: args.node,
        force: args.force,
    };
    restore::restore(&options).await?;
    Ok(ExitCode::SUCCESS)
}
