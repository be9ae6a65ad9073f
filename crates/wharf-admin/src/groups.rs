//! Groups: add, list, change, remove. A group's rules apply to every member after the
//! member's own, so they are bounded and compiled like an account's before they are kept;
//! a group with members is not removed.

use serde_json::Value;
use wharf_core::{EventKind, Rule};
use wharf_store::GroupRecord;
use wharf_types::{AccountName, AddressRules, Protocol};

use crate::accounts::{MAX_PATTERN, MAX_RULES};
use crate::{Actor, AdminError, Need, Operations};

/// A group as the API and the events show it (it holds no secret).
pub fn group_view(group: &GroupRecord) -> Value {
    serde_json::to_value(group).unwrap_or(Value::Null)
}

/// One change to a group.
#[derive(Clone)]
pub enum GroupChange {
    /// Its rules, replacing the ones it has.
    Rules(Vec<Rule>),
    /// Where members may log in from, whether they need a one-time code, and the largest
    /// file a member may make.
    Access {
        /// Allowed and denied networks.
        addresses: AddressRules,
        /// Members' logins need a one-time code.
        require_second_factor: bool,
        /// The group's bound on file sizes, in bytes.
        max_file_size: Option<u64>,
    },
    /// The protocols members may use (empty: all).
    Protocols(Vec<Protocol>),
    /// Where notifications about the group go, as given (checked here); `None` or empty:
    /// nowhere.
    Email(Option<String>),
}

impl GroupChange {
    fn describe(&self) -> String {
        match self {
            GroupChange::Rules(rules) => format!("rules replaced ({} rules)", rules.len()),
            GroupChange::Access { .. } => "access and limits changed".into(),
            GroupChange::Protocols(list) => {
                let names: Vec<&str> = list.iter().map(|p| p.as_str()).collect();
                format!(
                    "protocols: {}",
                    if names.is_empty() {
                        "all".to_owned()
                    } else {
                        names.join(", ")
                    }
                )
            }
            GroupChange::Email(email) => crate::email::described(email.as_deref()),
        }
    }
}

fn bounded(group: &GroupRecord) -> Result<(), AdminError> {
    if group.rules.len() > MAX_RULES {
        return Err(AdminError::invalid(format!(
            "at most {MAX_RULES} rules per group"
        )));
    }
    if group.rules.iter().any(|r| r.pattern.len() > MAX_PATTERN) {
        return Err(AdminError::invalid(format!(
            "a rule pattern is longer than {MAX_PATTERN} bytes"
        )));
    }
    if let Some(template) = &group.home_template
        && !template.starts_with('/')
    {
        return Err(AdminError::invalid(
            "the home template must be an absolute path, such as /srv/wharf/${USER}",
        ));
    }
    wharf_core::RuleSet::compile(&group.rules).map_err(|e| AdminError::invalid(e.0))?;
    Ok(())
}

impl Operations {
    /// Every group, by name.
    pub async fn groups(&self, actor: &Actor) -> Result<Vec<GroupRecord>, AdminError> {
        actor.require(Need::Read, "list groups")?;
        Ok(self.store.groups().await?)
    }

    /// One group.
    pub async fn group(&self, actor: &Actor, name: &str) -> Result<GroupRecord, AdminError> {
        actor.require(Need::Read, "read groups")?;
        self.load_group(name).await
    }

    async fn load_group(&self, name: &str) -> Result<GroupRecord, AdminError> {
        self.store
            .group(name)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("no group named {name:?}")))
    }

    /// Creates a group.
    pub async fn add_group(
        &self,
        actor: &Actor,
        mut group: GroupRecord,
    ) -> Result<GroupRecord, AdminError> {
        actor.require(Need::Operate, "add groups")?;
        group.email = crate::email::checked(group.email.as_deref())?;
        AccountName::new(&group.name)
            .map_err(|e| AdminError::invalid(format!("group name: {e}")))?;
        bounded(&group)?;
        self.store.create_group(&group).await.map_err(|e| match e {
            wharf_store::StoreError::Exists(what) => {
                AdminError::Exists(format!("{what} already exists"))
            }
            other => other.into(),
        })?;
        self.record(actor.change(
            EventKind::GroupCreated,
            &group.name,
            None,
            Some(&group_view(&group)),
            "group created",
        ))
        .await?;
        Ok(group)
    }

    /// Changes a group: all of `changes`, checked first, or none.
    pub async fn change_group(
        &self,
        actor: &Actor,
        name: &str,
        changes: Vec<GroupChange>,
    ) -> Result<GroupRecord, AdminError> {
        actor.require(Need::Operate, "change groups")?;
        if changes.is_empty() {
            return Err(AdminError::invalid("nothing to change"));
        }
        let mut group = self.load_group(name).await?;
        let before = group_view(&group);
        for change in &changes {
            match change {
                GroupChange::Rules(rules) => group.rules = rules.clone(),
                GroupChange::Access {
                    addresses,
                    require_second_factor,
                    max_file_size,
                } => {
                    group.addresses = addresses.clone();
                    group.require_second_factor = *require_second_factor;
                    group.max_file_size = *max_file_size;
                }
                GroupChange::Protocols(list) => group.protocols = list.clone(),
                GroupChange::Email(email) => {
                    group.email = crate::email::checked(email.as_deref())?;
                }
            }
        }
        bounded(&group)?;
        self.store.update_group(&group).await?;
        let what: Vec<String> = changes.iter().map(GroupChange::describe).collect();
        self.record(actor.change(
            EventKind::GroupUpdated,
            name,
            Some(&before),
            Some(&group_view(&group)),
            what.join("; "),
        ))
        .await?;
        Ok(group)
    }

    /// Removes a group that has no members.
    pub async fn remove_group(&self, actor: &Actor, name: &str) -> Result<(), AdminError> {
        actor.require(Need::Operate, "remove groups")?;
        let group = self.load_group(name).await?;
        let members: Vec<String> = self
            .store
            .accounts()
            .await?
            .into_iter()
            .filter(|a| a.groups.iter().any(|g| g == name))
            .map(|a| a.name.to_string())
            .collect();
        if !members.is_empty() {
            return Err(AdminError::Conflict(format!(
                "group {name:?} still has members: {}",
                members.join(", ")
            )));
        }
        if !self.store.remove_group(name).await? {
            return Err(AdminError::NotFound(format!("no group named {name:?}")));
        }
        self.record(actor.change(
            EventKind::GroupRemoved,
            name,
            Some(&group_view(&group)),
            None,
            "group removed",
        ))
        .await
    }
}
