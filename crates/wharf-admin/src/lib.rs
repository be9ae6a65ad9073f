//! Wharf's administrative operations: one layer that the `wharf` commands and the Manager
//! (web console and admin REST API) both call, so a change is validated the same way and
//! recorded by the same 5xxxx event whoever makes it.
//!
//! Every operation takes the [`Actor`] making it (a Manager administrator with its role, or
//! the operating-system user of a command), checks the actor's [`Role`] first, validates,
//! writes the store, and records one event naming the actor, its address and what changed
//! (before and after, never a secret). Reads that an auditor may make go through here too,
//! so the Manager holds no store of its own.
//!
//! It must never speak a network protocol or print: callers render the results. It must
//! never record a password, a token, a one-time code or a second-factor secret.

#![forbid(unsafe_code)]

mod accounts;
mod actor;
mod admins;
mod bans;
mod cluster;
mod email;
mod error;
mod events;
mod groups;
mod jobs;
mod login;
mod nodes;
mod role;
mod sessions;
mod tokens;
mod transfers;
mod views;

pub use accounts::{AccountChange, NewAccount, RuleVerdict, account_name};
pub use actor::{Actor, Recorder, Who};
pub use admins::{AdminChange, Enrolment, NewAdmin};
pub use bans::MAX_ADMIN_BAN_SECS;
pub use cluster::{MAX_REVISIONS, revision_view};
pub use email::{MAX_EMAIL, email_address};
pub use error::AdminError;
pub use events::{EventSearch, MAX_PAGE, parse_ids, parse_outcome, parse_since};
pub use groups::{GroupChange, group_view};
pub use jobs::{MAX_JOBS, job_state, job_view};
pub use login::{Identity, LoginStep, Origin};
pub use nodes::node_view;
pub use role::{Need, Role};
pub use sessions::session_view;
pub use tokens::{MAX_TOKEN_DAYS, NewToken, TokenIdentity, TokenMade};
pub use transfers::{MAX_RUNS, TransferInfo, transfer_run_view};
pub use views::{account_view, admin_view, ban_view, token_view};
/// An authenticator enrolment as drafted and confirmed.
pub use wharf_auth::SecondFactor;
/// The records operations return, as the store keeps them.
pub use wharf_store::{
    AccountRecord, AdminRecord, AdminTokenRecord, AuditRecord, BanRecord, ClusterRevision,
    GroupRecord, HandlerJob, JobState,
};

use std::sync::Arc;

use wharf_auth::{BanPolicy, PasswordPolicy};
use wharf_store::Store;

/// The settings operations follow, from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// New passwords (accounts' and administrators') are checked against it.
    pub password_policy: PasswordPolicy,
    /// How an address maps to the network a ban names, and the default ban time.
    pub ban_policy: BanPolicy,
    /// The issuer one-time code enrolments name (`Wharf (node)`).
    pub issuer: String,
    /// The node's name (what a ban set here records as its origin).
    pub node: String,
}

/// The operations, over one store, recording through one [`Recorder`].
#[derive(Clone)]
pub struct Operations {
    store: Store,
    recorder: Arc<dyn Recorder>,
    settings: Arc<std::sync::RwLock<Arc<Settings>>>,
}

impl Operations {
    /// Operations on `store` under `settings`, recording through `recorder`.
    pub fn new(store: Store, recorder: Arc<dyn Recorder>, settings: Settings) -> Operations {
        Operations {
            store,
            recorder,
            settings: Arc::new(std::sync::RwLock::new(Arc::new(settings))),
        }
    }

    /// Follows a reloaded configuration: every clone of these operations checks the new
    /// settings from the next call.
    pub fn set_settings(&self, settings: Settings) {
        if let Ok(mut current) = self.settings.write() {
            *current = Arc::new(settings);
        }
    }

    /// The settings in force.
    pub(crate) fn settings(&self) -> Arc<Settings> {
        match self.settings.read() {
            Ok(current) => Arc::clone(&current),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    async fn record(&self, event: wharf_core::Event) -> Result<(), AdminError> {
        self.recorder.record(event).await
    }

    /// Records a change made outside these operations (the configuration file, which the
    /// binary writes), built with [`Actor::event`] so it names who made it.
    pub async fn record_event(&self, event: wharf_core::Event) -> Result<(), AdminError> {
        self.record(event).await
    }
}

/// Now, in µs since the Unix epoch.
pub(crate) fn now_us() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// A time in µs since the epoch as RFC 3339 seconds.
pub(crate) fn time_text(us: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    wharf_types::rfc3339::format_seconds(t)
}
