//! Turning a stored account and its groups into the [`Account`] a session acts for.

use std::path::PathBuf;

use wharf_core::{Account, Rule, RuleSet, UploadMode};
use wharf_store::{AccountRecord, Store};
use wharf_types::Protocol;

use crate::AuthFailure;

/// Resolves home, rules, protocols and upload mode for `record`.
pub async fn resolve_account(
    store: &Store,
    record: &AccountRecord,
) -> Result<Account, AuthFailure> {
    let mut groups = Vec::with_capacity(record.groups.len());
    for name in &record.groups {
        match store.group(name).await? {
            Some(group) => groups.push(group),
            None => {
                return Err(AuthFailure::Misconfigured(format!(
                    "group {name:?} does not exist"
                )));
            }
        }
    }
    let template_group = groups.iter().find(|g| g.home_template.is_some());
    let (home, create_home) = match (&record.home, template_group) {
        (Some(home), _) => (PathBuf::from(home), groups.iter().any(|g| g.create_home)),
        (None, Some(group)) => {
            let template = group.home_template.as_deref().unwrap_or_default();
            (
                PathBuf::from(template.replace("${USER}", record.name.as_str())),
                group.create_home,
            )
        }
        (None, None) => {
            return Err(AuthFailure::Misconfigured(
                "no home folder: set one on the account or a home template on one of its groups"
                    .to_owned(),
            ));
        }
    };
    if !home.is_absolute() {
        return Err(AuthFailure::Misconfigured(format!(
            "home folder {} is not absolute",
            home.display()
        )));
    }
    let rules: Vec<&Rule> = record
        .rules
        .iter()
        .chain(groups.iter().flat_map(|g| g.rules.iter()))
        .collect();
    let rules = RuleSet::compile(rules).map_err(|e| AuthFailure::Misconfigured(e.0))?;
    let mut protocols: Vec<Protocol> = Vec::new();
    for group in &groups {
        for p in &group.protocols {
            if !protocols.contains(p) {
                protocols.push(*p);
            }
        }
    }
    let upload_mode = groups
        .iter()
        .find_map(|g| g.upload_mode)
        .unwrap_or(UploadMode::Atomic);
    Ok(Account {
        name: record.name.clone(),
        home,
        create_home,
        rules,
        protocols,
        upload_mode,
    })
}
