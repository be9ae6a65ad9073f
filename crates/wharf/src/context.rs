//! What every command needs: the loaded configuration, the store, and a way to record
//! administrative events.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use wharf_admin::{Actor, AdminError, Operations, Recorder, Settings};
use wharf_core::{Event, EventKind};
use wharf_store::Store;
use wharf_types::Protocol;

use crate::audit::AuditSink;
use crate::config::Loaded;

/// A command's context.
pub struct Context {
    /// Configuration.
    pub loaded: Loaded,
    /// Store.
    pub store: Store,
    /// Audit sink.
    pub audit: AuditSink,
    /// Why the cluster's newest configuration revision could not be laid over this node's
    /// file (the file's own sections are in force then); `serve` refuses to start on it.
    pub cluster_refused: Option<String>,
}

impl Context {
    /// Loads the configuration at `path` and opens its store.
    pub async fn open(path: &std::path::Path) -> Result<Context> {
        let loaded = Loaded::load(path)?;
        let connect = crate::config::store::connect(&loaded)?;
        let store = Store::open(&connect)
            .await
            .with_context(|| format!("cannot open the store {}", connect.url))?;
        let (loaded, cluster_refused) = with_cluster(loaded, &store).await;
        if let Some(why) = &cluster_refused {
            // `serve` refuses to start on it; a command goes on, saying which sections it
            // follows.
            eprintln!(
                "wharf: warning: the cluster configuration does not apply on this node, so this command follows {}'s own [[authentication]], [ban], [password_policy] and [[handler]]:\n{why}",
                path.display()
            );
        }
        let section = &loaded.config.audit;
        let jsonl = match section.jsonl.as_str() {
            "" => None,
            p => Some(wharf_handlers::sinks::JsonLines::new(
                loaded.resolve(p),
                crate::config::sink::rotation(
                    section.rotate_size,
                    section.rotate_age,
                    section.keep,
                ),
            )),
        };
        let audit = AuditSink {
            store: store.clone(),
            node: loaded.config.server.name.clone(),
            jsonl,
            spill: Some(crate::audit_spill::Spill::new(
                loaded
                    .resolve(&loaded.config.server.data_dir)
                    .join("audit-spill.jsonl"),
            )),
            sinks: crate::audit::Sinks::new(
                crate::config::sink::written(&loaded),
                crate::config::sink::sinks(&loaded, false)?,
            ),
            written: None,
            turn: Default::default(),
        };
        Ok(Context {
            loaded,
            store,
            audit,
            cluster_refused,
        })
    }

    /// Records an administrative event made from the command line.
    pub async fn record(
        &self,
        kind: EventKind,
        subject: &str,
        message: impl Into<String>,
    ) -> Result<()> {
        let mut event = Event::new(kind).message(message);
        event.account = Some(subject.to_owned());
        self.record_event(event).await
    }

    /// Records `event` as made from the command line, by the operator running it.
    pub async fn record_event(&self, mut event: Event) -> Result<()> {
        event.protocol = Some(Protocol::Admin);
        event.service = Some("cli".to_owned());
        event = event.attr("operator", operator());
        Ok(self.audit.write(&[event]).await?)
    }
}

/// `loaded` with the newest cluster configuration revision laid over it, if one was ever
/// published, and `None`; or `loaded` as it was, and why the revision does not apply here.
pub async fn with_cluster(loaded: Loaded, store: &Store) -> (Loaded, Option<String>) {
    match store.cluster_configuration(None).await {
        Ok(revision) => lay(loaded, revision.as_ref()),
        Err(e) => (
            loaded,
            Some(format!(
                "cannot read the cluster configuration from the store: {e}"
            )),
        ),
    }
}

/// `loaded` with `revision` laid over it (as it is without one), and `None`; or `loaded`
/// as it was, and why the revision does not apply here.
pub fn lay(
    mut loaded: Loaded,
    revision: Option<&wharf_store::ClusterRevision>,
) -> (Loaded, Option<String>) {
    let Some(revision) = revision else {
        return (loaded, None);
    };
    match loaded.lay_cluster(revision) {
        Ok(()) => (loaded, None),
        Err(issues) => (loaded, Some(issues.to_string())),
    }
}

/// A command's records go straight to the audit writer.
struct CommandRecorder(AuditSink);

#[async_trait::async_trait]
impl Recorder for CommandRecorder {
    async fn record(&self, event: Event) -> Result<(), AdminError> {
        self.0
            .write(&[event])
            .await
            .map_err(|e| AdminError::Audit(e.to_string()))
    }
}

/// The settings administrative operations follow, from the configuration.
pub fn admin_settings(loaded: &Loaded) -> Settings {
    Settings {
        password_policy: loaded.config.password_policy.policy(),
        ban_policy: loaded.config.ban.policy(),
        issuer: format!("Wharf ({})", loaded.config.server.name),
        node: loaded.config.server.name.clone(),
    }
}

impl Context {
    /// The administrative operations, recording as this command.
    pub fn ops(&self) -> Operations {
        Operations::new(
            self.store.clone(),
            Arc::new(CommandRecorder(self.audit.clone())),
            admin_settings(&self.loaded),
        )
    }

    /// The command's author: the operating-system user running it.
    pub fn actor(&self) -> Actor {
        Actor::cli(operator())
    }
}

/// The operating-system user running the command: the one who ran `sudo`, else the
/// process's own user as the password database names it, else its number.
pub(crate) fn operator() -> String {
    if let Ok(user) = std::env::var("SUDO_USER")
        && !user.is_empty()
    {
        return user;
    }
    use std::os::unix::fs::MetadataExt;
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
    };
    let named = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                (fields.nth(1)? == uid.to_string()).then(|| name.to_owned())
            })
        });
    named.unwrap_or_else(|| format!("uid {uid}"))
}
