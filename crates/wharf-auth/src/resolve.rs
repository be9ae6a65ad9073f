//! Turning a stored account and its groups into the [`Account`] a session acts for.

use std::path::PathBuf;

use std::net::IpAddr;

use wharf_core::{Account, Rule, RuleSet, UploadMode};
use wharf_store::{AccountRecord, GroupRecord, Store};
use wharf_types::Protocol;

use crate::AuthFailure;

/// Resolves home, rules, protocols and upload mode for `record`.
pub async fn resolve_account(
    store: &Store,
    record: &AccountRecord,
) -> Result<Account, AuthFailure> {
    let groups = load_groups(store, record).await?;
    resolve_account_with(record, &groups)
}

/// The account's groups, in its order; a missing group is a misconfiguration.
pub(crate) async fn load_groups(
    store: &Store,
    record: &AccountRecord,
) -> Result<Vec<GroupRecord>, AuthFailure> {
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
    Ok(groups)
}

/// Whether a client at `addr` may log in as `record`: inside no `deny` network of the
/// account or its groups, and inside an `allow` network when there are any (the account's
/// own allow list when it has one, else its groups' lists together).
pub fn address_allowed(record: &AccountRecord, groups: &[GroupRecord], addr: IpAddr) -> bool {
    let rules = std::iter::once(&record.addresses).chain(groups.iter().map(|g| &g.addresses));
    if rules
        .clone()
        .any(|r| r.deny.iter().any(|n| n.contains(addr)))
    {
        return false;
    }
    let allow: Vec<_> = if record.addresses.allow.is_empty() {
        groups
            .iter()
            .flat_map(|g| g.addresses.allow.iter())
            .collect()
    } else {
        record.addresses.allow.iter().collect()
    };
    allow.is_empty() || allow.iter().any(|n| n.contains(addr))
}

/// The protocols `groups` allow together; empty means all.
pub(crate) fn protocols_of(groups: &[GroupRecord]) -> Vec<Protocol> {
    let mut protocols: Vec<Protocol> = Vec::new();
    for group in groups {
        for p in &group.protocols {
            if !protocols.contains(p) {
                protocols.push(*p);
            }
        }
    }
    protocols
}

/// Resolves `record` with its groups given (in its order), without the store.
pub fn resolve_account_with(
    record: &AccountRecord,
    groups: &[GroupRecord],
) -> Result<Account, AuthFailure> {
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
    let protocols = protocols_of(groups);
    let upload_mode = groups
        .iter()
        .find_map(|g| g.upload_mode)
        .unwrap_or(UploadMode::Atomic);
    Ok(Account {
        name: record.name.clone(),
        home,
        groups: record.groups.clone(),
        create_home,
        rules,
        protocols,
        upload_mode,
        // The tightest bound wins: a group cannot raise what the account or another group set.
        max_file_size: std::iter::once(record.max_file_size)
            .chain(groups.iter().map(|g| g.max_file_size))
            .flatten()
            .min(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_types::{AccountName, AddressRules};

    fn rules(allow: &[&str], deny: &[&str]) -> AddressRules {
        AddressRules {
            allow: allow.iter().map(|s| s.parse().unwrap()).collect(),
            deny: deny.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    fn account(addresses: AddressRules) -> AccountRecord {
        AccountRecord {
            name: AccountName::new("a").unwrap(),
            password_hash: None,
            home: Some("/srv/a".into()),
            enabled: true,
            groups: vec!["g".into()],
            keys: Vec::new(),
            rules: Vec::new(),
            addresses,
            expires_us: None,
            second_factor: None,
            require_second_factor: false,
            max_file_size: None,
        }
    }

    fn group(addresses: AddressRules) -> GroupRecord {
        GroupRecord {
            name: "g".into(),
            home_template: None,
            create_home: false,
            rules: Vec::new(),
            protocols: Vec::new(),
            upload_mode: None,
            addresses,
            require_second_factor: false,
            max_file_size: None,
        }
    }

    #[test]
    fn deny_wins_and_the_account_allow_list_replaces_the_groups() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let open = account(AddressRules::default());
        assert!(address_allowed(&open, &[], ip("198.51.100.1")));
        // A group's allow list applies when the account has none.
        let office = [group(rules(&["198.51.100.0/24"], &[]))];
        assert!(address_allowed(&open, &office, ip("198.51.100.1")));
        assert!(!address_allowed(&open, &office, ip("203.0.113.1")));
        // The account's own allow list takes the place of its groups'.
        let travelling = account(rules(&["203.0.113.0/24"], &[]));
        assert!(address_allowed(&travelling, &office, ip("203.0.113.1")));
        assert!(!address_allowed(&travelling, &office, ip("198.51.100.1")));
        // A deny anywhere refuses, even inside an allowed network; IPv4-mapped counts.
        let denied = [group(rules(&[], &["203.0.113.128/25"]))];
        assert!(!address_allowed(&travelling, &denied, ip("203.0.113.200")));
        assert!(!address_allowed(
            &travelling,
            &denied,
            ip("::ffff:203.0.113.200")
        ));
        assert!(address_allowed(&travelling, &denied, ip("203.0.113.5")));
        let v6 = account(rules(&["2001:db8::/32"], &["2001:db8:bad::/48"]));
        assert!(address_allowed(&v6, &[], ip("2001:db8:1::1")));
        assert!(!address_allowed(&v6, &[], ip("2001:db8:bad::1")));
        assert!(!address_allowed(&v6, &[], ip("192.0.2.1")));
    }

    #[test]
    fn max_file_size_is_the_smallest_set() {
        let sized = |own: Option<u64>, groups: &[Option<u64>]| {
            let mut record = account(AddressRules::default());
            record.max_file_size = own;
            let groups: Vec<GroupRecord> = groups
                .iter()
                .map(|&size| GroupRecord {
                    max_file_size: size,
                    ..group(AddressRules::default())
                })
                .collect();
            resolve_account_with(&record, &groups)
                .unwrap()
                .max_file_size
        };
        assert_eq!(sized(None, &[]), None);
        assert_eq!(sized(None, &[None, None]), None);
        assert_eq!(sized(Some(512), &[]), Some(512));
        assert_eq!(sized(None, &[None, Some(2048), Some(1024)]), Some(1024));
        // Neither the account nor a group can raise another's bound.
        assert_eq!(sized(Some(512), &[Some(1024)]), Some(512));
        assert_eq!(sized(Some(4096), &[None, Some(1024)]), Some(1024));
    }
}
