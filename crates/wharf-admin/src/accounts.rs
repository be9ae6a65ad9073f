//! Accounts: add, list, change, remove. Every new account is resolved before it is kept
//! (its groups exist, a home folder comes from somewhere), so a mistake shows when the
//! administrator makes it, not at the account's first login.

use std::path::Path;

use wharf_auth::SecondFactor;
use wharf_core::{EventKind, Rule, RuleSet};
use wharf_store::AccountRecord;
use wharf_types::{AccountName, AddressRules};

use crate::views::account_view;
use crate::{Actor, AdminError, Need, Operations};

/// A new account: the record to keep (its `password_hash` is ignored) and its password.
#[derive(Clone)]
pub struct NewAccount {
    /// The account as it will be stored.
    pub record: AccountRecord,
    /// Its password, checked against the password policy; `None`: no password login.
    pub password: Option<String>,
}

/// One change to an account.
#[derive(Clone)]
pub enum AccountChange {
    /// Enabled or disabled.
    Enabled(bool),
    /// A new password (checked against the policy).
    Password(String),
    /// An OpenSSH public key line to add.
    AddKey(String),
    /// A key to remove, by its SHA256 fingerprint or its whole line.
    RemoveKey(String),
    /// The account's own rules, replacing the ones it has.
    Rules(Vec<Rule>),
    /// Removes the enrolled one-time codes (a lost phone).
    ResetSecondFactor,
    /// Enrols one-time codes (replacing any): the factor made and shown once by the caller.
    EnrolSecondFactor(Box<SecondFactor>),
    /// Replaces the enrolled factor's recovery codes (their digests) with new ones.
    ReplaceRecoveryCodes(Vec<String>),
    /// Where it may log in from, when it stops working, whether logins need a one-time
    /// code, and the largest file it may make: all four at once, as `wharf account set`
    /// gives them.
    Access {
        /// Allowed and denied networks.
        addresses: AddressRules,
        /// When it stops working (µs since the epoch); `None`: never.
        expires_us: Option<i64>,
        /// Logins need a one-time code.
        require_second_factor: bool,
        /// Its own bound on file sizes, in bytes.
        max_file_size: Option<u64>,
    },
    /// Where its notifications go, as given (checked here); `None` or empty: nowhere.
    Email(Option<String>),
}

impl AccountChange {
    fn describe(&self) -> String {
        match self {
            AccountChange::Enabled(true) => "account enabled".into(),
            AccountChange::Enabled(false) => "account disabled".into(),
            AccountChange::Password(_) => "password changed".into(),
            AccountChange::AddKey(key) => format!("key added {}", fingerprint(key)),
            AccountChange::RemoveKey(key) => format!("key removed {key}"),
            AccountChange::Rules(rules) => format!("rules replaced ({} rules)", rules.len()),
            AccountChange::ResetSecondFactor => "second factor removed".into(),
            AccountChange::EnrolSecondFactor(_) => "second factor (TOTP) enrolled".into(),
            AccountChange::ReplaceRecoveryCodes(_) => "recovery codes replaced".into(),
            AccountChange::Access { .. } => "access and limits changed".into(),
            AccountChange::Email(email) => crate::email::described(email.as_deref()),
        }
    }
}

/// A factor as the store keeps it.
fn stored_factor(factor: &SecondFactor) -> Result<String, AdminError> {
    serde_json::to_string(factor).map_err(|e| AdminError::invalid(e.to_string()))
}

fn fingerprint(line: &str) -> String {
    wharf_auth::parse_public_key(line)
        .map(|k| wharf_auth::fingerprint(&k))
        .unwrap_or_default()
}

impl Operations {
    /// Every account, by name.
    pub async fn accounts(&self, actor: &Actor) -> Result<Vec<AccountRecord>, AdminError> {
        actor.require(Need::Read, "list accounts")?;
        Ok(self.store.accounts().await?)
    }

    /// One account.
    pub async fn account(&self, actor: &Actor, name: &str) -> Result<AccountRecord, AdminError> {
        actor.require(Need::Read, "read accounts")?;
        self.load_account(name).await
    }

    async fn load_account(&self, name: &str) -> Result<AccountRecord, AdminError> {
        self.store
            .account(name)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("no account named {name:?}")))
    }

    /// Creates an account.
    pub async fn add_account(
        &self,
        actor: &Actor,
        new: NewAccount,
    ) -> Result<AccountRecord, AdminError> {
        actor.require(Need::Operate, "add accounts")?;
        let mut record = new.record;
        for group in &record.groups {
            if self.store.group(group).await?.is_none() {
                return Err(AdminError::invalid(format!(
                    "group {group:?} does not exist; create it with `wharf group add {group}`"
                )));
            }
        }
        if let Some(home) = &record.home
            && !Path::new(home).is_absolute()
        {
            return Err(AdminError::invalid(
                "the home folder must be an absolute path",
            ));
        }
        for key in &record.keys {
            wharf_auth::parse_public_key(key)
                .map_err(|e| AdminError::invalid(format!("key: {e}")))?;
        }
        record.email = crate::email::checked(record.email.as_deref())?;
        bounded(&record)?;
        record.password_hash = match &new.password {
            Some(password) => {
                self.settings()
                    .password_policy
                    .check(record.name.as_str(), password)
                    .map_err(|e| AdminError::invalid(e.to_string()))?;
                Some(crate::admins::hash(password).await?)
            }
            None => None,
        };
        // Resolving now reports a missing home template before anyone tries to log in.
        wharf_auth::resolve_account(&self.store, &record)
            .await
            .map_err(|e| AdminError::invalid(e.to_string()))?;
        self.store
            .create_account(&record)
            .await
            .map_err(|e| match e {
                wharf_store::StoreError::Exists(what) => {
                    AdminError::Exists(format!("{what} already exists"))
                }
                other => other.into(),
            })?;
        let mut event = actor.change(
            EventKind::AccountCreated,
            record.name.as_str(),
            None,
            Some(&account_view(&record)),
            "account created",
        );
        event.account = Some(record.name.as_str().to_owned());
        self.record(event).await?;
        Ok(record)
    }

    /// Changes an account: all of `changes`, checked first, or none of them.
    pub async fn change_account(
        &self,
        actor: &Actor,
        name: &str,
        changes: Vec<AccountChange>,
    ) -> Result<AccountRecord, AdminError> {
        actor.require(Need::Operate, "change accounts")?;
        if changes.is_empty() {
            return Err(AdminError::invalid("nothing to change"));
        }
        let mut record = self.load_account(name).await?;
        let before = account_view(&record);
        for change in &changes {
            match change {
                AccountChange::Enabled(on) => record.enabled = *on,
                AccountChange::Password(password) => {
                    self.settings()
                        .password_policy
                        .check(name, password)
                        .map_err(|e| AdminError::invalid(e.to_string()))?;
                    record.password_hash = Some(crate::admins::hash(password).await?);
                }
                AccountChange::AddKey(line) => {
                    let line = line.trim().to_owned();
                    wharf_auth::parse_public_key(&line)
                        .map_err(|e| AdminError::invalid(format!("key: {e}")))?;
                    if !record.keys.contains(&line) {
                        record.keys.push(line);
                    }
                }
                AccountChange::RemoveKey(which) => {
                    let count = record.keys.len();
                    record
                        .keys
                        .retain(|k| k.trim() != which.trim() && fingerprint(k) != *which);
                    if record.keys.len() == count {
                        return Err(AdminError::NotFound(format!("{name} has no key {which}")));
                    }
                }
                AccountChange::Rules(rules) => record.rules = rules.clone(),
                AccountChange::ResetSecondFactor => {
                    if record.second_factor.take().is_none() {
                        return Err(AdminError::invalid(format!(
                            "{name} has no second factor enrolled"
                        )));
                    }
                }
                AccountChange::EnrolSecondFactor(factor) => {
                    record.second_factor = Some(stored_factor(factor)?);
                }
                AccountChange::ReplaceRecoveryCodes(digests) => {
                    let Some(stored) = &record.second_factor else {
                        return Err(AdminError::invalid(format!(
                            "{name} has no second factor enrolled; enrol one first"
                        )));
                    };
                    let mut factor: SecondFactor = serde_json::from_str(stored).map_err(|_| {
                        AdminError::invalid(format!(
                            "{name}'s stored second factor is unreadable; enrol it again"
                        ))
                    })?;
                    factor.recovery = digests.clone();
                    record.second_factor = Some(stored_factor(&factor)?);
                }
                AccountChange::Access {
                    addresses,
                    expires_us,
                    require_second_factor,
                    max_file_size,
                } => {
                    record.addresses = addresses.clone();
                    record.expires_us = *expires_us;
                    record.require_second_factor = *require_second_factor;
                    record.max_file_size = *max_file_size;
                }
                AccountChange::Email(email) => {
                    record.email = crate::email::checked(email.as_deref())?;
                }
            }
        }
        bounded(&record)?;
        self.store.update_account(&record).await?;
        let what: Vec<String> = changes.iter().map(AccountChange::describe).collect();
        let mut event = actor.change(
            EventKind::AccountUpdated,
            name,
            Some(&before),
            Some(&account_view(&record)),
            what.join("; "),
        );
        event.account = Some(name.to_owned());
        self.record(event).await?;
        Ok(record)
    }

    /// Removes an account.
    pub async fn remove_account(&self, actor: &Actor, name: &str) -> Result<(), AdminError> {
        actor.require(Need::Operate, "remove accounts")?;
        let record = self.load_account(name).await?;
        if !self.store.remove_account(name).await? {
            return Err(AdminError::NotFound(format!("no account named {name:?}")));
        }
        let mut event = actor.change(
            EventKind::AccountRemoved,
            name,
            Some(&account_view(&record)),
            None,
            "account removed",
        );
        event.account = Some(name.to_owned());
        self.record(event).await
    }
}

/// The most rules an account holds itself (its groups hold the shared ones).
pub const MAX_RULES: usize = 256;
/// The longest rule pattern, in bytes.
pub const MAX_PATTERN: usize = 1024;
/// The most SSH keys an account holds.
pub const MAX_KEYS: usize = 64;

/// Bounds what an account holds, since every login and the rule tester compile its rules,
/// and checks that they compile.
fn bounded(record: &AccountRecord) -> Result<(), AdminError> {
    if record.rules.len() > MAX_RULES {
        return Err(AdminError::invalid(format!(
            "at most {MAX_RULES} rules per account; put shared rules on a group"
        )));
    }
    if let Some(rule) = record.rules.iter().find(|r| r.pattern.len() > MAX_PATTERN) {
        return Err(AdminError::invalid(format!(
            "rule pattern longer than {MAX_PATTERN} bytes: {}…",
            rule.pattern.chars().take(40).collect::<String>()
        )));
    }
    if record.keys.len() > MAX_KEYS {
        return Err(AdminError::invalid(format!(
            "at most {MAX_KEYS} keys per account"
        )));
    }
    RuleSet::compile(&record.rules).map_err(|e| AdminError::invalid(e.0))?;
    Ok(())
}

/// Checks an account name as typed.
pub fn account_name(name: &str) -> Result<AccountName, AdminError> {
    AccountName::new(name).map_err(|e| AdminError::invalid(format!("account name: {e}")))
}

/// What the rules say about one verb at one path for one account: the rule tester.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleVerdict {
    /// Whether the verb is allowed there.
    pub allowed: bool,
    /// The rule that decided, as written (`None`: no rule names the verb there, so the
    /// default refuses it).
    pub rule: Option<Rule>,
    /// Whose rule it is: `account`, or `group NAME`.
    pub from: Option<String>,
}

impl Operations {
    /// May account `name` do `verb` at `path`, and which rule decides? Rules are the
    /// account's own, then its groups' in order, as at login; the path is the one the
    /// account would see (normalised like every request's).
    pub async fn test_rule(
        &self,
        actor: &Actor,
        name: &str,
        verb: &str,
        path: &str,
    ) -> Result<RuleVerdict, AdminError> {
        actor.require(Need::Read, "test rules")?;
        let record = self.load_account(name).await?;
        let verb: wharf_types::Verb = verb
            .parse()
            .map_err(|e| AdminError::invalid(format!("verb: {e}")))?;
        let path = wharf_types::VirtualPath::parse(path)
            .map_err(|e| AdminError::invalid(format!("path: {e}")))?;
        let mut owners: Vec<String> = vec!["account".to_owned(); record.rules.len()];
        let mut written: Vec<Rule> = record.rules.clone();
        for group in &record.groups {
            let Some(found) = self.store.group(group).await? else {
                return Err(AdminError::invalid(format!(
                    "group {group:?} does not exist"
                )));
            };
            owners.extend(std::iter::repeat_n(
                format!("group {group}"),
                found.rules.len(),
            ));
            written.extend(found.rules);
        }
        let set = RuleSet::compile(&written).map_err(|e| AdminError::invalid(e.0))?;
        let (effect, position) = set.explain(verb, &path);
        Ok(RuleVerdict {
            allowed: effect == wharf_core::Effect::Allow,
            rule: position.and_then(|p| written.get(p).cloned()),
            from: position.and_then(|p| owners.get(p).cloned()),
        })
    }
}
