//! `wharf apply` and `wharf export`: accounts and groups as TOML, for configuration as code,
//! backups and migrations. Applying the same file twice changes nothing the second time.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use wharf_core::{EventKind, Rule, RuleSet, UploadMode};
use wharf_store::{AccountRecord, GroupRecord};
use wharf_types::{AccountName, AddressRules, IpNetwork, Protocol};

use crate::context::Context;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default, rename = "group", skip_serializing_if = "Vec::is_empty")]
    groups: Vec<GroupEntry>,
    #[serde(default, rename = "account", skip_serializing_if = "Vec::is_empty")]
    accounts: Vec<AccountEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupEntry {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    home_template: Option<String>,
    #[serde(default)]
    create_home: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    protocols: Vec<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upload_mode: Option<UploadMode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    allow_from: Vec<IpNetwork>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    deny_from: Vec<IpNetwork>,
    #[serde(default, skip_serializing_if = "is_false")]
    require_second_factor: bool,
    /// Largest file a session may make, in bytes (or "512K" by hand); absent: no bound.
    #[serde(
        default,
        deserialize_with = "super::size::deserialize_bound",
        skip_serializing_if = "Option::is_none"
    )]
    max_file_size: Option<u64>,
    /// Where notifications go (one bare address); absent or empty: nowhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(default, rename = "rule", skip_serializing_if = "Vec::is_empty")]
    rules: Vec<Rule>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountEntry {
    name: AccountName,
    #[serde(default = "yes")]
    enabled: bool,
    /// An Argon2id (PHC) hash, as exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password_hash: Option<String>,
    /// A password given as `env:NAME` or `file:PATH` (never literally).
    #[serde(default, skip_serializing)]
    password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    home: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    allow_from: Vec<IpNetwork>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    deny_from: Vec<IpNetwork>,
    /// RFC 3339 time or YYYY-MM-DD from which logins are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<String>,
    /// Enrolment itself (the TOTP secret) is never exported or changed by `apply`.
    #[serde(default, skip_serializing_if = "is_false")]
    require_second_factor: bool,
    /// Largest file a session may make, in bytes (or "512K" by hand); absent: no bound.
    #[serde(
        default,
        deserialize_with = "super::size::deserialize_bound",
        skip_serializing_if = "Option::is_none"
    )]
    max_file_size: Option<u64>,
    /// Where notifications go (one bare address); absent or empty: nowhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(default, rename = "rule", skip_serializing_if = "Vec::is_empty")]
    rules: Vec<Rule>,
}

fn yes() -> bool {
    true
}

fn secret(spec: &str, base: &Path) -> Result<String> {
    if let Some(name) = spec.strip_prefix("env:") {
        return std::env::var(name)
            .with_context(|| format!("environment variable {name} is not set"));
    }
    if let Some(path) = spec.strip_prefix("file:") {
        let path = base.join(path);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return Ok(text.trim_end_matches(['\r', '\n']).to_owned());
    }
    bail!(
        "passwords must be given as env:NAME or file:PATH, or as password_hash; a literal password in a file is refused"
    )
}

/// An entry's address, checked as the commands and the Manager check one.
fn checked_email(email: Option<&str>) -> Result<Option<String>, String> {
    match email {
        Some(text) => wharf_admin::email_address(text).map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

/// `wharf apply FILE`: every entry is checked (and new passwords hashed) before anything is
/// written, so a file with one bad entry changes nothing.
pub async fn apply(ctx: &Context, file: &Path) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let doc: Document = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start].matches('\n').count() + 1)
            .unwrap_or(0);
        anyhow::anyhow!("{}:{}: {}", file.display(), line, e.message().trim())
    })?;
    let base = file.parent().unwrap_or(Path::new("."));
    let within = |what: String| move |e: String| anyhow::anyhow!("{}: {what}: {e}", file.display());

    let mut groups = Vec::with_capacity(doc.groups.len());
    for g in &doc.groups {
        let fail = within(format!("group {}", g.name));
        AccountName::new(&g.name).map_err(|e| fail(e.to_string()))?;
        for rule in &g.rules {
            RuleSet::validate(rule).map_err(|e| fail(e.to_string()))?;
        }
        groups.push(GroupRecord {
            name: g.name.clone(),
            home_template: g.home_template.clone(),
            create_home: g.create_home,
            rules: g.rules.clone(),
            protocols: g.protocols.clone(),
            upload_mode: g.upload_mode,
            addresses: AddressRules {
                allow: g.allow_from.clone(),
                deny: g.deny_from.clone(),
            },
            require_second_factor: g.require_second_factor,
            max_file_size: g.max_file_size,
            email: checked_email(g.email.as_deref()).map_err(&fail)?,
        });
    }
    // Accounts are checked against the groups as they will be: the store's, with the
    // file's replacing those of the same name.
    let mut known: HashMap<String, GroupRecord> = ctx
        .store
        .groups()
        .await?
        .into_iter()
        .map(|g| (g.name.clone(), g))
        .collect();
    for g in &groups {
        known.insert(g.name.clone(), g.clone());
    }
    let mut accounts = Vec::with_capacity(doc.accounts.len());
    for a in &doc.accounts {
        let fail = within(format!("account {}", a.name));
        for rule in &a.rules {
            RuleSet::validate(rule).map_err(|e| fail(e.to_string()))?;
        }
        for key in &a.keys {
            wharf_auth::parse_public_key(key).map_err(|e| fail(e.to_string()))?;
        }
        let existing = ctx.store.account(a.name.as_str()).await?;
        let stored_hash = existing.as_ref().and_then(|e| e.password_hash.clone());
        let second_factor = existing.as_ref().and_then(|e| e.second_factor.clone());
        let password_hash = match (&a.password_hash, &a.password) {
            (Some(hash), _) => Some(hash.clone()),
            (None, Some(spec)) => {
                let password = secret(spec, base).map_err(|e| fail(format!("password: {e:#}")))?;
                match stored_hash {
                    // The stored hash already matches: re-applying changes nothing.
                    Some(hash) if wharf_auth::verify_password(&hash, &password).await => Some(hash),
                    // A new password meets the policy (an exported hash is taken as is).
                    _ => {
                        ctx.loaded
                            .config
                            .password_policy
                            .policy()
                            .check(a.name.as_str(), &password)
                            .map_err(|e| fail(e.to_string()))?;
                        Some(wharf_auth::hash_password(&password).map_err(anyhow::Error::msg)?)
                    }
                }
            }
            (None, None) => stored_hash,
        };
        let record = AccountRecord {
            name: a.name.clone(),
            password_hash,
            home: a.home.clone(),
            enabled: a.enabled,
            groups: if a.groups.is_empty() {
                vec!["users".to_owned()]
            } else {
                a.groups.clone()
            },
            keys: a.keys.clone(),
            rules: a.rules.clone(),
            addresses: AddressRules {
                allow: a.allow_from.clone(),
                deny: a.deny_from.clone(),
            },
            second_factor,
            require_second_factor: a.require_second_factor,
            max_file_size: a.max_file_size,
            email: checked_email(a.email.as_deref()).map_err(&fail)?,
            expires_us: match &a.expires {
                Some(text) => super::access::parse_expiry(text).map_err(|e| fail(e.to_string()))?,
                None => None,
            },
        };
        let mut its_groups = Vec::with_capacity(record.groups.len());
        for name in &record.groups {
            let group = known.get(name).with_context(|| {
                format!(
                    "{}: account {}: group {name:?} does not exist",
                    file.display(),
                    a.name
                )
            })?;
            its_groups.push(group.clone());
        }
        wharf_auth::resolve_account_with(&record, &its_groups).map_err(|e| fail(e.to_string()))?;
        accounts.push((record, existing));
    }

    let (mut created, mut updated, mut unchanged) = (0, 0, 0);
    for record in &groups {
        match ctx.store.group(&record.name).await? {
            None => {
                ctx.store.create_group(record).await?;
                ctx.record(
                    EventKind::GroupCreated,
                    &record.name,
                    "group created by apply",
                )
                .await?;
                created += 1;
            }
            Some(existing) if existing == *record => unchanged += 1,
            Some(_) => {
                ctx.store.update_group(record).await?;
                ctx.record(
                    EventKind::GroupUpdated,
                    &record.name,
                    "group updated by apply",
                )
                .await?;
                updated += 1;
            }
        }
    }
    for (record, existing) in &accounts {
        let name = record.name.as_str();
        match existing {
            None => {
                ctx.store.create_account(record).await?;
                ctx.record(EventKind::AccountCreated, name, "account created by apply")
                    .await?;
                created += 1;
            }
            Some(existing) if existing == record => unchanged += 1,
            Some(_) => {
                ctx.store.update_account(record).await?;
                ctx.record(EventKind::AccountUpdated, name, "account updated by apply")
                    .await?;
                updated += 1;
            }
        }
    }
    let summary = format!("{created} created, {updated} updated, {unchanged} unchanged");
    ctx.record(
        EventKind::ConfigurationApplied,
        "-",
        format!("{}: {summary}", file.display()),
    )
    .await?;
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}

/// `wharf export`.
pub async fn export(ctx: &Context) -> Result<ExitCode> {
    let doc = Document {
        groups: ctx
            .store
            .groups()
            .await?
            .into_iter()
            .map(|g| GroupEntry {
                name: g.name,
                home_template: g.home_template,
                create_home: g.create_home,
                protocols: g.protocols,
                upload_mode: g.upload_mode,
                allow_from: g.addresses.allow,
                deny_from: g.addresses.deny,
                require_second_factor: g.require_second_factor,
                max_file_size: g.max_file_size,
                email: g.email,
                rules: g.rules,
            })
            .collect(),
        accounts: ctx
            .store
            .accounts()
            .await?
            .into_iter()
            .map(|a| AccountEntry {
                name: a.name,
                enabled: a.enabled,
                password_hash: a.password_hash,
                password: None,
                home: a.home,
                groups: a.groups,
                keys: a.keys,
                allow_from: a.addresses.allow,
                deny_from: a.addresses.deny,
                expires: super::access::expiry_text(a.expires_us),
                require_second_factor: a.require_second_factor,
                max_file_size: a.max_file_size,
                email: a.email,
                rules: a.rules,
            })
            .collect(),
    };
    print!(
        "# Wharf accounts and groups; re-import with `wharf apply FILE`.\n{}",
        toml::to_string(&doc)?
    );
    Ok(ExitCode::SUCCESS)
}
