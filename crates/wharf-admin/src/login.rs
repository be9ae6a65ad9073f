//! Manager logins: a password, then a one-time code when the administrator has enrolled
//! them, each outcome recorded (`admin.login_succeeded`, `admin.login_failed` with its
//! cause, which the ban engine scores like a file service's failed login). A refusal
//! never says whether the name exists, and an unknown name costs the same password check
//! as a known one.

use std::net::SocketAddr;

use tokio::sync::OnceCell;
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

/// A hash to check unknown names' passwords against, so they take as long.
static DECOY: OnceCell<String> = OnceCell::const_new();

async fn decoy() -> &'static str {
    DECOY
        .get_or_init(|| async {
            tokio::task::spawn_blocking(|| wharf_auth::hash_password("decoy password, never set"))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default()
        })
        .await
}

fn login_event(kind: EventKind, service: &str, remote: SocketAddr, name: &str) -> Event {
    let mut event = Event::new(kind);
    event.protocol = Some(Protocol::Admin);
    event.service = Some(service.to_owned());
    event.remote = Some(remote);
    event.attr("name", name.to_owned())
}

impl Operations {
    async fn refuse(
        &self,
        service: &str,
        remote: SocketAddr,
        name: &str,
        cause: &str,
    ) -> AdminError {
        let event = login_event(EventKind::AdminLoginFailed, service, remote, name)
            .failed(format!("Manager login refused: {cause}"))
            .attr("cause", cause.to_owned());
        match self.record(event).await {
            Ok(()) => AdminError::LoginFailed,
            Err(e) => e,
        }
    }

    async fn admitted(
        &self,
        service: &str,
        remote: SocketAddr,
        record: &AdminRecord,
        second_factor: bool,
    ) -> Result<Identity, AdminError> {
        let event = login_event(
            EventKind::AdminLoginSucceeded,
            service,
            remote,
            &record.name,
        )
        .attr("admin", record.name.clone())
        .attr("second_factor", second_factor.to_string())
        .message(format!("{} logged in to the Manager", record.name));
        self.record(event).await?;
        Ok(Identity {
            name: record.name.clone(),
            role: role_of_record(record),
        })
    }

    /// Checks `name`'s password on the Manager `service` for a client at `remote`.
    pub async fn login(
        &self,
        service: &str,
        remote: SocketAddr,
        name: &str,
        password: &str,
    ) -> Result<LoginStep, AdminError> {
        let record = match self.store.admin(name).await {
            Ok(record) => record,
            Err(_) => return Err(self.refuse(service, remote, name, "store").await),
        };
        let Some(record) = record else {
            wharf_auth::verify_password(decoy().await, password).await;
            return Err(self.refuse(service, remote, name, "unknown-admin").await);
        };
        if !wharf_auth::verify_password(&record.password_hash, password).await {
            return Err(self.refuse(service, remote, name, "wrong-password").await);
        }
        if !record.enabled {
            return Err(self.refuse(service, remote, name, "disabled").await);
        }
        if record.second_factor.is_some() {
            return Ok(LoginStep::NeedsCode);
        }
        if record.require_second_factor {
            return Err(self
                .refuse(service, remote, name, "second-factor-not-enrolled")
                .await);
        }
        Ok(LoginStep::Done(
            self.admitted(service, remote, &record, false).await?,
        ))
    }

    /// Checks the one-time (or recovery) `code` of `name`, whose password was accepted.
    pub async fn login_code(
        &self,
        service: &str,
        remote: SocketAddr,
        name: &str,
        code: &str,
    ) -> Result<Identity, AdminError> {
        let Ok(Some(mut record)) = self.store.admin(name).await else {
            return Err(self.refuse(service, remote, name, "unknown-admin").await);
        };
        let factor: Option<SecondFactor> = record
            .second_factor
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok());
        let Some(factor) = factor else {
            return Err(self
                .refuse(service, remote, name, "second-factor-not-enrolled")
                .await);
        };
        let now = u64::try_from(crate::now_us() / 1_000_000).unwrap_or(0);
        let used = factor.check(code, now);
        if used == CodeCheck::Wrong {
            return Err(self.refuse(service, remote, name, "wrong-code").await);
        }
        if !record.enabled {
            return Err(self.refuse(service, remote, name, "disabled").await);
        }
        // The code's step (or the recovery code) is spent before the login counts.
        record.second_factor = serde_json::to_string(&factor.after(&used)).ok();
        self.store.update_admin(&record).await?;
        self.admitted(service, remote, &record, true).await
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
