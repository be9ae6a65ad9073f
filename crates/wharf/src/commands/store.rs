//! `wharf store copy`: a single node's SQLite store moved, whole, into PostgreSQL.
//!
//! The destination is opened (and migrated) by this binary, so both stores have the same
//! tables; the copy refuses a destination that already holds rows. Afterwards the copy's
//! audit chain is checked against the source's, and the operator is told which line of
//! `wharf.toml` to change. The source is never modified.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use wharf_store::{Backend, Connect, Store};

use crate::context::Context;

/// Copies the configured store into `to`.
pub async fn copy(
    ctx: &Context,
    to: &str,
    password: Option<&str>,
    ca_file: Option<PathBuf>,
) -> Result<ExitCode> {
    if ctx.store.backend() != Backend::Sqlite {
        bail!(
            "the configured store is not SQLite: `wharf store copy` moves a SQLite store into PostgreSQL"
        );
    }
    if wharf_store::check_url(to)? != Backend::Postgres {
        bail!("--to: give a postgres://USER@HOST:PORT/DB URL");
    }
    let password = match password {
        Some(spec) if spec.starts_with("env:") || spec.starts_with("file:") => {
            Some(crate::config::auth::secret(&ctx.loaded, spec)?)
        }
        Some(_) => bail!("--password: give it as env:NAME or file:PATH, never literally"),
        None => None,
    };
    let connect = Connect {
        url: to.to_owned(),
        base: ctx.loaded.base.clone(),
        password,
        ca_file,
        application: format!("wharf {} (store copy)", ctx.loaded.config.server.name),
        max_connections: 2,
    };
    let dest = Store::open(&connect)
        .await
        .with_context(|| format!("cannot open {}", wharf_store::redacted(to)))?;
    let counts = ctx.store.copy_into(&dest).await?;
    for (table, rows) in &counts {
        println!("{table:<20} {rows:>10} rows");
    }
    let source_chain = ctx.store.verify_chain().await?;
    let copied_chain = dest.verify_chain().await?;
    dest.close().await;
    if source_chain != copied_chain {
        eprintln!(
            "the copy's audit chain differs from the source's: {copied_chain:?} against {source_chain:?}"
        );
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "copied into {}; to use it, set [store] url = {:?} in {} (and the password, if any, as [store] password)",
        wharf_store::redacted(to),
        wharf_store::redacted(to),
        ctx.loaded.path.display()
    );
    Ok(ExitCode::SUCCESS)
}
