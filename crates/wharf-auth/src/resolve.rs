//! Turning a stored account and its groups into the [`Account`] a session acts for.

use std::path::PathBuf;

use std::net::IpAddr;

use wharf_core::{Account, Rule, RuleSet, UploadMode};
use wharf_store::{AccountRecord, GroupRecord, Store};
use wharf_types::{AccountName, Protocol};

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
    Resolution::of(record, groups)?.compile()
}

/// What an [`Account`] would hold for a record and its groups, its rules as written: cheap
/// to make and to compare with an account already resolved (no pattern is compiled).
pub(crate) struct Resolution<'a> {
    name: &'a AccountName,
    home: PathBuf,
    groups: &'a [String],
    create_home: bool,
    rules: Vec<&'a Rule>,
    protocols: Vec<Protocol>,
    upload_mode: UploadMode,
    max_file_size: Option<u64>,
}

impl<'a> Resolution<'a> {
    /// Home, rules, protocols, upload mode and limits for `record` with `groups`.
    pub(crate) fn of(
        record: &'a AccountRecord,
        groups: &'a [GroupRecord],
    ) -> Result<Resolution<'a>, AuthFailure> {
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
        Ok(Resolution {
            name: &record.name,
            home,
            groups: &record.groups,
            create_home,
            rules: record
                .rules
                .iter()
                .chain(groups.iter().flat_map(|g| g.rules.iter()))
                .collect(),
            protocols: protocols_of(groups),
            upload_mode: groups
                .iter()
                .find_map(|g| g.upload_mode)
                .unwrap_or(UploadMode::Atomic),
            // The tightest bound wins: a group cannot raise what the account or another
            // group set.
            max_file_size: std::iter::once(record.max_file_size)
                .chain(groups.iter().map(|g| g.max_file_size))
                .flatten()
                .min(),
        })
    }

    /// The account's name.
    pub(crate) fn name(&self) -> &AccountName {
        self.name
    }

    /// True when `account` is what this resolution compiles to: same name, home, groups,
    /// rules (as written, in order), protocols, upload mode and limits.
    pub(crate) fn describes(&self, account: &Account) -> bool {
        *self.name == account.name
            && self.home == account.home
            && self.groups == account.groups.as_slice()
            && self.create_home == account.create_home
            && self.protocols == account.protocols
            && self.upload_mode == account.upload_mode
            && self.max_file_size == account.max_file_size
            && self.rules.len() == account.rules.source().len()
            && self
                .rules
                .iter()
                .zip(account.rules.source())
                .all(|(a, b)| *a == b)
    }

    /// The account, its rules compiled.
    pub(crate) fn compile(self) -> Result<Account, AuthFailure> {
        let rules = RuleSet::compile(self.rules).map_err(|e| AuthFailure::Misconfigured(e.0))?;
        Ok(Account {
            name: self.name.clone(),
            home: self.home,
            groups: self.groups.to_vec(),
            create_home: self.create_home,
            rules,
            protocols: self.protocols,
            upload_mode: self.upload_mode,
            max_file_size: self.max_file_size,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use wharf_types::{AccountName, AddressRules};

    fn rules(allow: &[&str], deny: &[&str]) -> AddressRules {
        AddressRules {
            allow: allow.iter().map(|s| s.parse().unwrap()).collect(),
            deny: deny.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    /// An enabled account `a` of group `g` at `/srv/a`, allowed from `addresses`.
    pub(crate) fn account(addresses: AddressRules) -> AccountRecord {
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
            email: None,
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
            email: None,
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

    #[test]
    fn a_resolution_describes_the_account_it_compiles_to_and_no_other() {
        let mut record = account(AddressRules::default());
        record.rules = vec![Rule::allow_all()];
        let groups = [GroupRecord {
            rules: vec![Rule {
                pattern: "re:\\.exe$".into(),
                allow: Vec::new(),
                deny: vec!["write".into()],
            }],
            ..group(AddressRules::default())
        }];
        let resolved = resolve_account_with(&record, &groups).unwrap();
        assert!(
            Resolution::of(&record, &groups)
                .unwrap()
                .describes(&resolved)
        );
        assert_eq!(resolve_account_with(&record, &groups).unwrap(), resolved);

        let differs = |record: &AccountRecord, groups: &[GroupRecord]| {
            let resolution = Resolution::of(record, groups).unwrap();
            assert!(!resolution.describes(&resolved));
            assert_ne!(resolution.compile().unwrap(), resolved);
        };
        let mut smaller = record.clone();
        smaller.max_file_size = Some(1024);
        differs(&smaller, &groups);
        let mut moved = record.clone();
        moved.home = Some("/srv/elsewhere".into());
        differs(&moved, &groups);
        let mut stricter = record.clone();
        stricter.rules[0].deny = vec!["delete".into()];
        differs(&stricter, &groups);
        let mut fewer = groups.clone();
        fewer[0].rules.clear();
        differs(&record, &fewer);
        let mut resumable = groups.clone();
        resumable[0].upload_mode = Some(UploadMode::Resumable);
        differs(&record, &resumable);
        let mut sftp_only = groups.clone();
        sftp_only[0].protocols = vec![Protocol::Sftp];
        differs(&record, &sftp_only);
        // What the account record holds beyond the session's account does not count.
        let mut elsewhere = record.clone();
        elsewhere.addresses = rules(&["198.51.100.0/24"], &[]);
        elsewhere.password_hash = Some("changed".into());
        assert!(
            Resolution::of(&elsewhere, &groups)
                .unwrap()
                .describes(&resolved)
        );
    }
}
