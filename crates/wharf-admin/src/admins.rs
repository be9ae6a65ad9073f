//! Manager administrators: add, list, change (password, role, enabled, one-time codes),
//! remove. The last enabled administrator with the admin role can be neither removed,
//! disabled nor demoted: the Manager would have nobody left to run it.

use wharf_auth::SecondFactor;
use wharf_core::EventKind;
use wharf_store::{AdminRecord, AdminWrite};
use wharf_types::AccountName;

use crate::views::admin_view;
use crate::{Actor, AdminError, Need, Operations, Role};

/// A new administrator.
#[derive(Clone)]
pub struct NewAdmin {
    /// Login name (the characters an account name may have).
    pub name: String,
    /// Its password, checked against the password policy.
    pub password: String,
    /// Its role.
    pub role: Role,
    /// Logins need a one-time code.
    pub require_second_factor: bool,
}

/// A one-time code enrolment, shown once.
#[derive(Debug, Clone)]
pub struct Enrolment {
    /// The base32 secret.
    pub secret: String,
    /// The `otpauth://` URI (for a QR code).
    pub uri: String,
    /// Recovery codes, each good once.
    pub recovery_codes: Vec<String>,
}

/// What to change on an administrator.
#[derive(Clone)]
pub enum AdminChange {
    /// A new password (checked against the policy).
    Password(String),
    /// A new role.
    Role(Role),
    /// Enabled or disabled.
    Enabled(bool),
    /// Whether logins need a one-time code.
    RequireSecondFactor(bool),
    /// Removes the enrolled one-time codes (a lost phone).
    ResetSecondFactor,
}

impl AdminChange {
    fn describe(&self) -> String {
        match self {
            AdminChange::Password(_) => "password changed".into(),
            AdminChange::Role(role) => format!("role set to {role}"),
            AdminChange::Enabled(true) => "enabled".into(),
            AdminChange::Enabled(false) => "disabled".into(),
            AdminChange::RequireSecondFactor(on) => format!("one-time codes required: {on}"),
            AdminChange::ResetSecondFactor => "one-time codes removed".into(),
        }
    }
}

pub(crate) fn role_of_record(record: &AdminRecord) -> Role {
    // A role the store holds that this version does not know gets the least power.
    record.role.parse().unwrap_or(Role::Auditor)
}

impl Operations {
    /// Every administrator, by name.
    pub async fn admins(&self, actor: &Actor) -> Result<Vec<AdminRecord>, AdminError> {
        actor.require(Need::Read, "list administrators")?;
        Ok(self.store.admins().await?)
    }

    /// One administrator.
    pub async fn admin(&self, actor: &Actor, name: &str) -> Result<AdminRecord, AdminError> {
        actor.require(Need::Read, "read administrators")?;
        self.load_admin(name).await
    }

    pub(crate) async fn load_admin(&self, name: &str) -> Result<AdminRecord, AdminError> {
        self.store
            .admin(name)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("no administrator named {name:?}")))
    }

    /// Creates an administrator.
    pub async fn add_admin(&self, actor: &Actor, new: NewAdmin) -> Result<AdminRecord, AdminError> {
        actor.require(Need::Administer, "add administrators")?;
        let name = AccountName::new(&new.name)
            .map_err(|e| AdminError::invalid(format!("administrator name: {e}")))?;
        self.settings()
            .password_policy
            .check(name.as_str(), &new.password)
            .map_err(|e| AdminError::invalid(e.to_string()))?;
        let record = AdminRecord {
            name: name.as_str().to_owned(),
            password_hash: hash(&new.password).await?,
            role: new.role.as_str().to_owned(),
            enabled: true,
            second_factor: None,
            require_second_factor: new.require_second_factor,
            created_us: crate::now_us(),
            updated_us: crate::now_us(),
        };
        self.store
            .create_admin(&record)
            .await
            .map_err(|e| match e {
                wharf_store::StoreError::Exists(what) => {
                    AdminError::Exists(format!("{what} already exists"))
                }
                other => other.into(),
            })?;
        let after = admin_view(&record);
        self.record(actor.change(
            EventKind::AdminCreated,
            &record.name,
            None,
            Some(&after),
            format!(
                "administrator {} created with the {} role",
                record.name, new.role
            ),
        ))
        .await?;
        Ok(record)
    }

    /// Changes an administrator (the admin role only), all of `changes` or none.
    pub async fn change_admin(
        &self,
        actor: &Actor,
        name: &str,
        changes: Vec<AdminChange>,
    ) -> Result<AdminRecord, AdminError> {
        actor.require(Need::Administer, "change administrators")?;
        if changes.is_empty() {
            return Err(AdminError::invalid("nothing to change"));
        }
        let mut record = self.load_admin(name).await?;
        let before = admin_view(&record);
        let seen = record.updated_us;
        let mut ends_sessions = false;
        for change in &changes {
            match change {
                AdminChange::Password(password) => {
                    self.settings()
                        .password_policy
                        .check(name, password)
                        .map_err(|e| AdminError::invalid(e.to_string()))?;
                    record.password_hash = hash(password).await?;
                    ends_sessions = true;
                }
                AdminChange::Role(role) => {
                    record.role = role.as_str().to_owned();
                    ends_sessions = true;
                }
                AdminChange::Enabled(enabled) => {
                    record.enabled = *enabled;
                    ends_sessions |= !enabled;
                }
                AdminChange::RequireSecondFactor(on) => record.require_second_factor = *on,
                AdminChange::ResetSecondFactor => {
                    if record.second_factor.take().is_none() {
                        return Err(AdminError::invalid(format!(
                            "{name} has no one-time codes enrolled"
                        )));
                    }
                    ends_sessions = true;
                }
            }
        }
        self.write(&mut record, seen).await?;
        if ends_sessions {
            self.store.end_admin_sessions(name).await?;
        }
        let what: Vec<String> = changes.iter().map(AdminChange::describe).collect();
        self.record(actor.change(
            EventKind::AdminUpdated,
            name,
            Some(&before),
            Some(&admin_view(&record)),
            format!("administrator {name}: {}", what.join("; ")),
        ))
        .await?;
        Ok(record)
    }

    /// An administrator's own password, from its browser session (never with an API token:
    /// a token must not turn into its owner's login), with the current one given again.
    /// Its browser sessions end: it logs in again with the new one.
    pub async fn change_own_password(
        &self,
        actor: &Actor,
        current: &str,
        new: &str,
    ) -> Result<(), AdminError> {
        let name = own_session(actor, "change the password")?;
        let mut record = self.load_admin(&name).await?;
        if !wharf_auth::verify_password(&record.password_hash, current).await {
            return Err(AdminError::invalid("the current password is wrong"));
        }
        self.settings()
            .password_policy
            .check(&name, new)
            .map_err(|e| AdminError::invalid(e.to_string()))?;
        let seen = record.updated_us;
        record.password_hash = hash(new).await?;
        self.write(&mut record, seen).await?;
        self.store.end_admin_sessions(&name).await?;
        self.record(actor.change(
            EventKind::AdminUpdated,
            &name,
            None,
            None,
            format!("administrator {name}: own password changed"),
        ))
        .await
    }

    /// Writes `record` read at `seen`, keeping an enabled admin.
    pub(crate) async fn write(
        &self,
        record: &mut AdminRecord,
        seen: i64,
    ) -> Result<(), AdminError> {
        match self.store.write_admin(record, seen).await? {
            AdminWrite::Done(updated) => {
                record.updated_us = updated;
                Ok(())
            }
            AdminWrite::Missing => Err(AdminError::NotFound(format!(
                "no administrator named {:?}",
                record.name
            ))),
            AdminWrite::Changed => Err(AdminError::Conflict(format!(
                "administrator {} was changed meanwhile; read it again and retry",
                record.name
            ))),
            AdminWrite::LastAdmin => Err(last_admin(&record.name)),
        }
    }

    /// Enrols one-time codes for an administrator (its own, or any with the admin role);
    /// the secret and recovery codes are returned once and stored only in the store.
    pub async fn enrol_admin_second_factor(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<Enrolment, AdminError> {
        let own = actor.admin_name() == Some(name);
        if own {
            own_session(actor, "enrol one-time codes")?;
        } else {
            actor.require(
                Need::Administer,
                "enrol another administrator's one-time codes",
            )?;
        }
        let mut record = self.load_admin(name).await?;
        let before = admin_view(&record);
        let seen = record.updated_us;
        let (factor, codes) =
            SecondFactor::enrol().map_err(|e| AdminError::invalid(format!("cannot enrol: {e}")))?;
        let uri = factor.uri(&self.settings().issuer, &format!("manager-{name}"));
        record.second_factor = Some(
            serde_json::to_string(&factor)
                .map_err(|e| AdminError::Audit(format!("cannot keep the secret: {e}")))?,
        );
        self.write(&mut record, seen).await?;
        if !own {
            // Another administrator's authenticator was replaced: its sessions end.
            self.store.end_admin_sessions(name).await?;
        }
        self.record(actor.change(
            EventKind::AdminUpdated,
            name,
            Some(&before),
            Some(&admin_view(&record)),
            format!("administrator {name}: one-time codes enrolled"),
        ))
        .await?;
        Ok(Enrolment {
            secret: factor.secret,
            uri,
            recovery_codes: codes,
        })
    }

    /// A new authenticator for the caller's own administrator, not kept yet: the console
    /// shows it, and [`Operations::confirm_own_second_factor`] keeps it once a first code
    /// from the app proves it was taken down right. Returns the factor (to be carried,
    /// sealed, to the confirmation) and what is shown once.
    pub fn draft_own_second_factor(
        &self,
        actor: &Actor,
    ) -> Result<(SecondFactor, Enrolment), AdminError> {
        own_session(actor, "enrol one-time codes")?;
        let name = actor.admin_name().unwrap_or_default();
        let (factor, codes) =
            SecondFactor::enrol().map_err(|e| AdminError::invalid(format!("cannot enrol: {e}")))?;
        let uri = factor.uri(&self.settings().issuer, &format!("manager-{name}"));
        let enrolment = Enrolment {
            secret: factor.secret.clone(),
            uri,
            recovery_codes: codes,
        };
        Ok((factor, enrolment))
    }

    /// Keeps `factor` (drafted by [`Operations::draft_own_second_factor`]) as the caller's
    /// authenticator once `code` is a current code of it; a recovery code does not count.
    /// The code is spent: the next login needs the next one.
    pub async fn confirm_own_second_factor(
        &self,
        actor: &Actor,
        factor: SecondFactor,
        code: &str,
    ) -> Result<(), AdminError> {
        own_session(actor, "enrol one-time codes")?;
        let name = actor.admin_name().unwrap_or_default().to_owned();
        let now = u64::try_from(crate::now_us() / 1_000_000).unwrap_or(0);
        let used = match factor.check(code, now) {
            used @ wharf_auth::CodeCheck::Totp(_) => used,
            _ => {
                return Err(AdminError::invalid(
                    "that is not the app's current code: check the secret was entered as shown \
                     and the device's clock, then give the next code",
                ));
            }
        };
        let factor = factor.after(&used);
        let mut record = self.load_admin(&name).await?;
        let before = admin_view(&record);
        let seen = record.updated_us;
        record.second_factor = Some(
            serde_json::to_string(&factor)
                .map_err(|e| AdminError::Audit(format!("cannot keep the secret: {e}")))?,
        );
        self.write(&mut record, seen).await?;
        self.record(actor.change(
            EventKind::AdminUpdated,
            &name,
            Some(&before),
            Some(&admin_view(&record)),
            format!("administrator {name}: one-time codes enrolled (confirmed with a first code)"),
        ))
        .await
    }

    /// Removes an administrator, its API tokens and its browser sessions.
    pub async fn remove_admin(&self, actor: &Actor, name: &str) -> Result<(), AdminError> {
        actor.require(Need::Administer, "remove administrators")?;
        let record = self.load_admin(name).await?;
        match self.store.remove_admin_keeping_one(name).await? {
            AdminWrite::Done(_) => {}
            AdminWrite::LastAdmin => return Err(last_admin(name)),
            AdminWrite::Missing | AdminWrite::Changed => {
                return Err(AdminError::NotFound(format!(
                    "no administrator named {name:?}"
                )));
            }
        }
        self.store.end_admin_sessions(name).await?;
        self.record(actor.change(
            EventKind::AdminRemoved,
            name,
            Some(&admin_view(&record)),
            None,
            format!("administrator {name} removed"),
        ))
        .await
    }
}

fn last_admin(name: &str) -> AdminError {
    AdminError::invalid(format!(
        "cannot do this to {name}: it is the last enabled administrator with the admin role; \
         add another first (`wharf admin add NAME --role admin`)"
    ))
}

/// The actor's own name, when it acts from its own browser session (not a token).
fn own_session(actor: &Actor, what: &str) -> Result<String, AdminError> {
    match &actor.who {
        crate::Who::Admin {
            name, token: None, ..
        } => Ok(name.clone()),
        crate::Who::Admin { .. } => Err(AdminError::Forbidden(format!(
            "an API token may not {what}; log in to the console"
        ))),
        crate::Who::Operator(_) => Err(AdminError::Forbidden(format!(
            "a command may not {what} for an administrator; use `wharf admin set-password`"
        ))),
    }
}

/// Hashes off the async workers: Argon2 takes tens of milliseconds of CPU by design.
pub(crate) async fn hash(password: &str) -> Result<String, AdminError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || wharf_auth::hash_password(&password))
        .await
        .map_err(|e| AdminError::Audit(format!("password hashing stopped: {e}")))?
        .map_err(|e| AdminError::invalid(e.to_string()))
}
