//! `wharf group ...`.

use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use wharf_admin::GroupChange;
use wharf_core::{Rule, RuleSet, UploadMode};
use wharf_store::GroupRecord;
use wharf_types::Protocol;

use crate::cli::GroupCommand;
use crate::context::Context;

/// Parses `PATTERN=verb,verb`.
fn rule(spec: &str, allow: bool) -> Result<Rule> {
    let (pattern, verbs) = spec.rsplit_once('=').with_context(|| {
        format!("rule {spec:?} must look like PATTERN=VERBS, such as '/**=read,list'")
    })?;
    let verbs: Vec<String> = verbs
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect();
    let rule = Rule {
        pattern: pattern.to_owned(),
        allow: if allow { verbs.clone() } else { Vec::new() },
        deny: if allow { Vec::new() } else { verbs },
    };
    RuleSet::validate(&rule).map_err(|e| anyhow::anyhow!("rule {spec:?}: {e}"))?;
    Ok(rule)
}

/// Parses `sftp,scp`.
pub fn protocols(list: &str) -> Result<Vec<Protocol>> {
    list.split(',')
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<Protocol>()
                .ok()
                .filter(|p| Protocol::FILE_PROTOCOLS.contains(p))
                .with_context(|| {
                    format!(
                        "unknown protocol {p:?}; use sftp, scp, ftp, ftps, http, https or webdav"
                    )
                })
        })
        .collect()
}

/// Parses an upload mode name.
pub fn upload_mode(text: &str) -> Result<UploadMode> {
    match text {
        "atomic" => Ok(UploadMode::Atomic),
        "resumable" => Ok(UploadMode::Resumable),
        other => bail!("unknown upload mode {other:?}; use atomic or resumable"),
    }
}

/// Rules from `--allow`/`--deny` in command-line order.
fn rules_in_order(allow: &[String], deny: &[String]) -> Result<Vec<Rule>> {
    // clap keeps each option's order; interleave by original argv position.
    let argv: Vec<String> = std::env::args().collect();
    let mut out = Vec::new();
    let (mut a, mut d) = (allow.iter(), deny.iter());
    let mut i = 0;
    while i < argv.len() {
        match argv[i].as_str() {
            "--allow" => {
                if let Some(spec) = a.next() {
                    out.push(rule(spec, true)?);
                }
                i += 1;
            }
            "--deny" => {
                if let Some(spec) = d.next() {
                    out.push(rule(spec, false)?);
                }
                i += 1;
            }
            s if s.starts_with("--allow=") => {
                if let Some(spec) = a.next() {
                    out.push(rule(spec, true)?);
                }
            }
            s if s.starts_with("--deny=") => {
                if let Some(spec) = d.next() {
                    out.push(rule(spec, false)?);
                }
            }
            _ => {}
        }
        i += 1;
    }
    for spec in a {
        out.push(rule(spec, true)?);
    }
    for spec in d {
        out.push(rule(spec, false)?);
    }
    Ok(out)
}

/// Runs one group command.
pub async fn run(ctx: &Context, command: GroupCommand) -> Result<ExitCode> {
    match command {
        GroupCommand::Add {
            name,
            home_template,
            create_home,
            allow,
            deny,
            protocols: protos,
            upload_mode: mode,
            access,
            limits,
            contact,
        } => {
            if let Some(t) = &home_template
                && !t.starts_with('/')
            {
                bail!("--home-template must be an absolute path, such as /srv/wharf/${{USER}}");
            }
            let group = GroupRecord {
                name: name.clone(),
                home_template,
                create_home,
                rules: rules_in_order(&allow, &deny)?,
                protocols: match protos {
                    Some(list) => protocols(&list)?,
                    None => Vec::new(),
                },
                upload_mode: mode.as_deref().map(upload_mode).transpose()?,
                addresses: Default::default(),
                require_second_factor: access.require_second_factor.unwrap_or(false),
                max_file_size: limits
                    .max_file_size
                    .as_deref()
                    .map(super::size::parse_bound)
                    .transpose()?
                    .flatten(),
                // Checked by the operation, as the Manager's are.
                email: contact.email,
            };
            let mut group = group;
            super::access::apply(&mut group.addresses, &access, false)?;
            ctx.ops().add_group(&ctx.actor(), group).await?;
            println!("created group {name}");
        }
        GroupCommand::List { json } => {
            let groups = ctx.store.groups().await?;
            if json {
                for g in &groups {
                    println!("{}", serde_json::to_string(g)?);
                }
            } else {
                println!(
                    "{:<24} {:<6} {:<13} home template",
                    "name", "rules", "max file size"
                );
                for g in &groups {
                    println!(
                        "{:<24} {:<6} {:<13} {}",
                        g.name,
                        g.rules.len(),
                        g.max_file_size
                            .map_or_else(|| "-".to_owned(), super::size::human),
                        g.home_template.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        GroupCommand::Show { name, json } => {
            let g = ctx
                .store
                .group(&name)
                .await?
                .with_context(|| format!("no group named {name:?}"))?;
            if json {
                println!("{}", serde_json::to_string(&g)?);
            } else {
                println!("name:          {}", g.name);
                println!(
                    "home template: {}",
                    g.home_template.as_deref().unwrap_or("-")
                );
                println!("create home:   {}", g.create_home);
                let protos: Vec<&str> = g.protocols.iter().map(|p| p.as_str()).collect();
                println!(
                    "protocols:     {}",
                    if protos.is_empty() {
                        "all".to_owned()
                    } else {
                        protos.join(", ")
                    }
                );
                println!(
                    "upload mode:   {}",
                    match g.upload_mode {
                        Some(UploadMode::Resumable) => "resumable",
                        _ => "atomic",
                    }
                );
                println!("from:          {}", super::access::describe(&g.addresses));
                println!("max file size: {}", super::size::describe(g.max_file_size));
                println!("e-mail:        {}", g.email.as_deref().unwrap_or("none"));
                println!(
                    "second factor: {}",
                    if g.require_second_factor {
                        "required"
                    } else {
                        "optional"
                    }
                );
                println!("rules:");
                for r in &g.rules {
                    println!(
                        "  {:<32} allow [{}] deny [{}]",
                        r.pattern,
                        r.allow.join(","),
                        r.deny.join(",")
                    );
                }
            }
        }
        GroupCommand::Set {
            name,
            access,
            reset,
            limits,
            contact,
        } => {
            let mut group = ctx
                .store
                .group(&name)
                .await?
                .with_context(|| format!("no group named {name:?}"))?;
            let mut changed =
                super::access::apply(&mut group.addresses, &access, reset.any_address)?;
            if let Some(required) = access.require_second_factor {
                group.require_second_factor = required;
                changed = true;
            }
            if let Some(text) = &limits.max_file_size {
                group.max_file_size = super::size::parse_bound(text)?;
                changed = true;
            }
            let mut changes = Vec::new();
            // Only what was given is changed, so the event names only that.
            if changed {
                changes.push(GroupChange::Access {
                    addresses: group.addresses,
                    require_second_factor: group.require_second_factor,
                    max_file_size: group.max_file_size,
                });
            }
            if let Some(email) = contact.email {
                changes.push(GroupChange::Email(Some(email)));
            }
            if changes.is_empty() {
                bail!(
                    "nothing to change: give --allow-from, --deny-from, --any-address, --require-second-factor, --max-file-size or --email"
                );
            }
            let group = ctx.ops().change_group(&ctx.actor(), &name, changes).await?;
            let what = format!(
                "addresses: {}; second factor required: {}; max file size: {}; e-mail: {}",
                super::access::describe(&group.addresses),
                group.require_second_factor,
                super::size::describe(group.max_file_size),
                group.email.as_deref().unwrap_or("none")
            );
            println!("{name}: {what}");
        }
        GroupCommand::Remove { name } => {
            ctx.ops().remove_group(&ctx.actor(), &name).await?;
            println!("removed group {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
