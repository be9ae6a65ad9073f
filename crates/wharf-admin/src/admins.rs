//! Manager administrators: add, list, change (password, role, enabled, one-time codes),
//! remove. The last enabled administrator with the admin role can be neither removed,
//! disabled nor demoted: the Manager would have nobody left to run it.

use wharf_auth::SecondFactor;
use wharf_core::EventKind;
use wharf_store::AdminRecord;
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

fn role_of(record: &AdminRecord) -> Role {
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

    /// Changes an administrator. An administrator may change its own password and
    /// one-time codes whatever its role; everything else needs the admin role.
    pub async fn change_admin(
        &self,
        actor: &Actor,
        name: &str,
        change: AdminChange,
    ) -> Result<AdminRecord, AdminError> {
        let own = actor.admin_name() == Some(name);
        let self_service = matches!(change, AdminChange::Password(_));
        if !(own && self_service) {
            actor.require(Need::Administer, "change administrators")?;
        }
        let mut record = self.load_admin(name).await?;
        let before = admin_view(&record);
        match &change {
            AdminChange::Password(password) => {
                self.settings()
                    .password_policy
                    .check(name, password)
                    .map_err(|e| AdminError::invalid(e.to_string()))?;
                record.password_hash = hash(password).await?;
            }
            AdminChange::Role(role) => {
                if *role != Role::Admin {
                    self.keep_one_admin(&record, "demote").await?;
                }
                record.role = role.as_str().to_owned();
            }
            AdminChange::Enabled(enabled) => {
                if !enabled {
                    self.keep_one_admin(&record, "disable").await?;
                }
                record.enabled = *enabled;
            }
            AdminChange::RequireSecondFactor(on) => record.require_second_factor = *on,
            AdminChange::ResetSecondFactor => {
                if record.second_factor.take().is_none() {
                    return Err(AdminError::invalid(format!(
                        "{name} has no one-time codes enrolled"
                    )));
                }
            }
        }
        self.store.update_admin(&record).await?;
        let after = admin_view(&record);
        self.record(actor.change(
            EventKind::AdminUpdated,
            name,
            Some(&before),
            Some(&after),
            format!("administrator {name}: {}", change.describe()),
        ))
        .await?;
        Ok(record)
    }

    /// Enrols one-time codes for an administrator (its own, or any with the admin role);
    /// the secret and recovery codes are returned once and stored only in the store.
    pub async fn enrol_admin_second_factor(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<Enrolment, AdminError> {
        if actor.admin_name() != Some(name) {
            actor.require(
                Need::Administer,
                "enrol another administrator's one-time codes",
            )?;
        }
        let mut record = self.load_admin(name).await?;
        let before = admin_view(&record);
        let (factor, codes) =
            SecondFactor::enrol().map_err(|e| AdminError::invalid(format!("cannot enrol: {e}")))?;
        let uri = factor.uri(&self.settings().issuer, &format!("manager-{name}"));
        record.second_factor = Some(
            serde_json::to_string(&factor)
                .map_err(|e| AdminError::invalid(format!("cannot keep the secret: {e}")))?,
        );
        self.store.update_admin(&record).await?;
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

    /// Removes an administrator and its API tokens.
    pub async fn remove_admin(&self, actor: &Actor, name: &str) -> Result<(), AdminError> {
        actor.require(Need::Administer, "remove administrators")?;
        let record = self.load_admin(name).await?;
        self.keep_one_admin(&record, "remove").await?;
        if !self.store.remove_admin(name).await? {
            return Err(AdminError::NotFound(format!(
                "no administrator named {name:?}"
            )));
        }
        self.record(actor.change(
            EventKind::AdminRemoved,
            name,
            Some(&admin_view(&record)),
            None,
            format!("administrator {name} removed"),
        ))
        .await
    }

    /// Refuses to `verb` the last enabled administrator holding the admin role.
    async fn keep_one_admin(&self, record: &AdminRecord, verb: &str) -> Result<(), AdminError> {
        if role_of(record) == Role::Admin
            && record.enabled
            && self.store.enabled_admin_count_with_role("admin").await? <= 1
        {
            return Err(AdminError::invalid(format!(
                "cannot {verb} {}: it is the last enabled administrator with the admin role; \
                 add another first (`wharf admin add NAME --role admin`)",
                record.name
            )));
        }
        Ok(())
    }
}

pub(crate) fn role_of_record(record: &AdminRecord) -> Role {
    role_of(record)
}

/// Hashes off the async workers: Argon2 takes tens of milliseconds of CPU by design.
pub(crate) async fn hash(password: &str) -> Result<String, AdminError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || wharf_auth::hash_password(&password))
        .await
        .map_err(|e| AdminError::invalid(format!("password hashing stopped: {e}")))?
        .map_err(|e| AdminError::invalid(e.to_string()))
}
