//! Manager logins: a password, then a one-time code when the administrator has enrolled
//! them, each outcome recorded (`admin.login_succeeded`, `admin.login_failed` with its
//! cause, which the ban engine scores like a file service's failed login). A refusal
//! never says whether the name exists, and an unknown name costs the same password check
//! as a known one.

use std::net::SocketAddr;

use wharf_auth::{CodeCheck, SecondFactor};
use wharf_core::{Event, EventKind};
use wharf_store::AdminRecord;
use wharf_types::Protocol;

use crate::admins::role_of_record;
use crate::{AdminError, Operations, Role};

/// A logged-in administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Its name.
    pub name: String,
    /// Its role now.
    pub role: Role,
}

/// Where a password login stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginStep {
    /// Logged in.
    Done(Identity),
    /// The password was right; a one-time code must follow.
    NeedsCode,
}

/// The longest name a login is looked up by: longer ones name no administrator.
const MAX_NAME: usize = 64;

/// Where a Manager login comes from: the service, the client's address, the connection.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The Manager service's name.
    pub service: String,
    /// The client's address.
    pub remote: SocketAddr,
    /// The connection's id, as its records name it.
    pub session: String,
}

fn login_event(kind: EventKind, from: &Origin, name: &str) -> Event {
    let mut event = Event::new(kind);
    event.protocol = Some(Protocol::Admin);
    event.service = Some(from.service.clone());
    event.remote = Some(from.remote);
    event.session = Some(from.session.clone());
    // What anyone may type is bounded before it is recorded.
    event.attr("name", name.chars().take(MAX_NAME).collect::<String>())
}

impl Operations {
    async fn refuse(&self, from: &Origin, name: &str, cause: &str) -> AdminError {
        let event = login_event(EventKind::AdminLoginFailed, from, name)
            .failed(format!("Manager login refused: {cause}"))
            .attr("cause", cause.to_owned());
        match self.record(event).await {
            Ok(()) => AdminError::LoginFailed,
            Err(e) => e,
        }
    }

    async fn admitted(
        &self,
        from: &Origin,
        record: &AdminRecord,
        second_factor: bool,
    ) -> Result<Identity, AdminError> {
        let event = login_event(EventKind::AdminLoginSucceeded, from, &record.name)
            .attr("admin", record.name.clone())
            .attr("second_factor", second_factor.to_string())
            .message(format!("{} logged in to the Manager", record.name));
        self.record(event).await?;
        Ok(Identity {
            name: record.name.clone(),
            role: role_of_record(record),
        })
    }

    /// Checks `name`'s password for a Manager login coming `from` a client.
    pub async fn login(
        &self,
        from: &Origin,
        name: &str,
        password: &str,
    ) -> Result<LoginStep, AdminError> {
        let record = if name.len() > MAX_NAME || wharf_types::AccountName::new(name).is_err() {
            None
        } else {
            match self.store.admin(name).await {
                Ok(record) => record,
                Err(_) => return Err(self.refuse(from, name, "store").await),
            }
        };
        let Some(record) = record else {
            wharf_auth::burn_time(password).await;
            return Err(self.refuse(from, name, "unknown-admin").await);
        };
        if !wharf_auth::verify_password(&record.password_hash, password).await {
            return Err(self.refuse(from, name, "wrong-password").await);
        }
        if !record.enabled {
            return Err(self.refuse(from, name, "disabled").await);
        }
        if record.second_factor.is_some() {
            return Ok(LoginStep::NeedsCode);
        }
        if record.require_second_factor {
            return Err(self.refuse(from, name, "second-factor-not-enrolled").await);
        }
        Ok(LoginStep::Done(self.admitted(from, &record, false).await?))
    }

    /// Checks the one-time (or recovery) `code` of `name`, whose password was accepted.
    pub async fn login_code(
        &self,
        from: &Origin,
        name: &str,
        code: &str,
    ) -> Result<Identity, AdminError> {
        let mut record = match self.store.admin(name).await {
            Ok(Some(record)) => record,
            Ok(None) => return Err(self.refuse(from, name, "unknown-admin").await),
            Err(_) => return Err(self.refuse(from, name, "store").await),
        };
        let factor: Option<SecondFactor> = record
            .second_factor
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok());
        let Some(factor) = factor else {
            return Err(self.refuse(from, name, "second-factor-not-enrolled").await);
        };
        let now = u64::try_from(crate::now_us() / 1_000_000).unwrap_or(0);
        let used = factor.check(code, now);
        if used == CodeCheck::Wrong {
            return Err(self.refuse(from, name, "wrong-code").await);
        }
        if !record.enabled {
            return Err(self.refuse(from, name, "disabled").await);
        }
        // The code's step (or the recovery code) is spent before the login counts, by a
        // write that fails if another login spent something meanwhile: one code, one login.
        let seen = record.updated_us;
        record.second_factor = Some(
            serde_json::to_string(&factor.after(&used))
                .map_err(|e| AdminError::Audit(format!("cannot keep the second factor: {e}")))?,
        );
        match self.write(&mut record, seen).await {
            Ok(()) => {}
            Err(AdminError::Conflict(_)) => {
                return Err(self.refuse(from, name, "code-reused").await);
            }
            Err(e) => return Err(e),
        }
        self.admitted(from, &record, true).await
    }

    /// The administrator `name` as it stands now (enabled, its current role), for a
    /// request that comes with a kept login: `None` once it was removed or disabled.
    pub async fn readmit(&self, name: &str) -> Result<Option<Identity>, AdminError> {
        Ok(self
            .store
            .admin(name)
            .await?
            .filter(|r| r.enabled)
            .map(|r| Identity {
                role: role_of_record(&r),
                name: r.name,
            }))
    }

    /// Records that `actor` logged out.
    pub async fn logged_out(&self, actor: &crate::Actor) -> Result<(), AdminError> {
        let name = actor.admin_name().unwrap_or_default().to_owned();
        self.record(
            actor
                .event(EventKind::AdminLoggedOut)
                .message(format!("{name} logged out of the Manager")),
        )
        .await
    }

    /// Records a request refused for `actor`'s role; `what` names it.
    pub async fn refused(&self, actor: &crate::Actor, what: &str) -> Result<(), AdminError> {
        self.record(
            actor
                .event(EventKind::AdminRefused)
                .failed(format!("refused for the {} role: {what}", actor.role()))
                .attr("role", actor.role().as_str()),
        )
        .await
    }
}
