//! `wharf account ...`.

use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use wharf_admin::{AccountChange, NewAccount};
use wharf_store::AccountRecord;
use wharf_types::AccountName;

use crate::cli::AccountCommand;
use crate::context::Context;

/// Reads one password line from standard input.
pub fn read_password() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("empty password on standard input");
    }
    Ok(password)
}

fn read_key(path: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    wharf_auth::parse_public_key(line).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(line.trim().to_owned())
}

/// The stored account `name`, or an error naming it.
pub(super) async fn load(ctx: &Context, name: &str) -> Result<AccountRecord> {
    ctx.store
        .account(name)
        .await?
        .with_context(|| format!("no account named {name:?}"))
}

fn show(record: &AccountRecord) -> String {
    let keys: Vec<String> = record
        .keys
        .iter()
        .filter_map(|k| wharf_auth::parse_public_key(k).ok())
        .map(|k| wharf_auth::fingerprint(&k))
        .collect();
    format!(
        "name:     {}\nenabled:  {}\npassword: {}\nhome:     {}\ngroups:   {}\nkeys:     {}\nrules:    {}\nfrom:     {}\nexpires:  {}\nsecond factor: {}\nmax file size: {}\ne-mail:   {}",
        record.name,
        record.enabled,
        if record.password_hash.is_some() {
            "set"
        } else {
            "none"
        },
        record.home.as_deref().unwrap_or("(from group template)"),
        record.groups.join(", "),
        if keys.is_empty() {
            "none".to_owned()
        } else {
            keys.join(", ")
        },
        record.rules.len(),
        super::access::describe(&record.addresses),
        super::access::expiry_text(record.expires_us).unwrap_or_else(|| "never".to_owned()),
        match (record.second_factor.is_some(), record.require_second_factor) {
            (true, _) => "TOTP enrolled",
            (false, true) => "required, not enrolled (logins fail)",
            (false, false) => "none",
        },
        match record.max_file_size {
            Some(size) => super::size::human(size),
            None => "none of its own (its groups' or the service's bound, or 64 GiB)".to_owned(),
        },
        record.email.as_deref().unwrap_or("none"),
    )
}

fn json_view(record: &AccountRecord) -> serde_json::Value {
    // The same view the Manager's API gives: never the hash.
    wharf_admin::account_view(record)
}

/// Runs one account command.
pub async fn run(ctx: &Context, command: AccountCommand) -> Result<ExitCode> {
    match command {
        AccountCommand::Add {
            name,
            password_stdin,
            ssh_keys,
            home,
            groups,
            disabled,
            access,
            expiry,
            limits,
            contact,
            json,
        } => {
            let name = AccountName::new(&name)?;
            let max_file_size = limits
                .max_file_size
                .as_deref()
                .map(super::size::parse_bound)
                .transpose()?
                .flatten();
            let groups = if groups.is_empty() {
                vec!["users".to_owned()]
            } else {
                groups
            };
            let password = if password_stdin {
                Some(read_password()?)
            } else {
                None
            };
            let keys = ssh_keys
                .iter()
                .map(|p| read_key(p))
                .collect::<Result<Vec<_>>>()?;
            if password.is_none() && keys.is_empty() {
                eprintln!(
                    "note: {name} has no password and no key yet; add one with set-password or add-key"
                );
            }
            let mut record = AccountRecord {
                name: name.clone(),
                password_hash: None,
                home,
                enabled: !disabled,
                groups,
                keys,
                rules: Vec::new(),
                addresses: Default::default(),
                second_factor: None,
                require_second_factor: access.require_second_factor.unwrap_or(false),
                expires_us: expiry
                    .expires
                    .as_deref()
                    .map(super::access::parse_expiry)
                    .transpose()?
                    .flatten(),
                max_file_size,
                // Checked by the operation, as the Manager's are.
                email: contact.email,
            };
            super::access::apply(&mut record.addresses, &access, false)?;
            let record = ctx
                .ops()
                .add_account(&ctx.actor(), NewAccount { record, password })
                .await?;
            if json {
                println!("{}", json_view(&record));
            } else {
                println!("created account {name}");
            }
        }
        AccountCommand::List { json } => {
            let accounts = ctx.store.accounts().await?;
            if json {
                for a in &accounts {
                    println!("{}", json_view(a));
                }
            } else {
                println!(
                    "{:<24} {:<8} {:<8} {:<5} {:<13} groups",
                    "name", "enabled", "password", "keys", "max file size"
                );
                for a in &accounts {
                    println!(
                        "{:<24} {:<8} {:<8} {:<5} {:<13} {}",
                        a.name.as_str(),
                        a.enabled,
                        a.password_hash.is_some(),
                        a.keys.len(),
                        a.max_file_size
                            .map_or_else(|| "-".to_owned(), super::size::human),
                        a.groups.join(",")
                    );
                }
            }
        }
        AccountCommand::Show { name, json } => {
            let record = load(ctx, &name).await?;
            if json {
                println!("{}", json_view(&record));
            } else {
                println!("{}", show(&record));
            }
        }
        AccountCommand::Remove { name } => {
            ctx.ops().remove_account(&ctx.actor(), &name).await?;
            println!("removed account {name}");
        }
        AccountCommand::SetPassword { name, .. } => {
            let password = read_password()?;
            ctx.ops()
                .change_account(&ctx.actor(), &name, vec![AccountChange::Password(password)])
                .await?;
            println!("password changed for {name}");
        }
        AccountCommand::AddKey { name, file } => {
            let key = read_key(&file)?;
            ctx.ops()
                .change_account(
                    &ctx.actor(),
                    &name,
                    vec![AccountChange::AddKey(key.clone())],
                )
                .await?;
            let print = wharf_auth::parse_public_key(&key)
                .map(|k| wharf_auth::fingerprint(&k))
                .unwrap_or_default();
            println!("key {print} added to {name}");
        }
        AccountCommand::Set {
            name,
            access,
            reset,
            expiry,
            limits,
            contact,
        } => {
            let mut record = load(ctx, &name).await?;
            let mut changed =
                super::access::apply(&mut record.addresses, &access, reset.any_address)?;
            if let Some(text) = &expiry.expires {
                record.expires_us = super::access::parse_expiry(text)?;
                changed = true;
            }
            if let Some(required) = access.require_second_factor {
                record.require_second_factor = required;
                changed = true;
            }
            if let Some(text) = &limits.max_file_size {
                record.max_file_size = super::size::parse_bound(text)?;
                changed = true;
            }
            let mut changes = Vec::new();
            // Only what was given is changed, so the event names only that.
            if changed {
                changes.push(AccountChange::Access {
                    addresses: record.addresses,
                    expires_us: record.expires_us,
                    require_second_factor: record.require_second_factor,
                    max_file_size: record.max_file_size,
                });
            }
            if let Some(email) = contact.email {
                changes.push(AccountChange::Email(Some(email)));
            }
            if changes.is_empty() {
                bail!(
                    "nothing to change: give --allow-from, --deny-from, --any-address, --expires, --require-second-factor, --max-file-size or --email"
                );
            }
            let record = ctx
                .ops()
                .change_account(&ctx.actor(), &name, changes)
                .await?;
            let what = format!(
                "addresses: {}; expires: {}; second factor required: {}; max file size: {}; e-mail: {}",
                super::access::describe(&record.addresses),
                super::access::expiry_text(record.expires_us).unwrap_or_else(|| "never".into()),
                record.require_second_factor,
                super::size::describe(record.max_file_size),
                record.email.as_deref().unwrap_or("none")
            );
            println!("{name}: {what}");
        }
        AccountCommand::Totp(command) => super::totp::run(ctx, command).await?,
        AccountCommand::Enable { name } => set_enabled(ctx, &name, true).await?,
        AccountCommand::Disable { name } => set_enabled(ctx, &name, false).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_enabled(ctx: &Context, name: &str, enabled: bool) -> Result<()> {
    ctx.ops()
        .change_account(&ctx.actor(), name, vec![AccountChange::Enabled(enabled)])
        .await?;
    let what = if enabled { "enabled" } else { "disabled" };
    println!("{what} {name}");
    Ok(())
}
