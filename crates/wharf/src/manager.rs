//! The Manager service wired to this node: its settings from `[[service]]`, the operations
//! over the node's store recording through the running bus (each change answered once its
//! record is durable), and the kept logins in the store.

use std::sync::Arc;

use wharf_admin::{AdminError, Operations, Recorder};
use wharf_core::{Event, EventBus};
use wharf_manager::ManagerConfig;

use crate::config::{Loaded, ManagerKeys, Service, secs};

/// The running server's records: through the bus, each waited for until durable.
struct BusRecorder(EventBus);

#[async_trait::async_trait]
impl Recorder for BusRecorder {
    async fn record(&self, event: Event) -> Result<(), AdminError> {
        self.0
            .emit_durable(event)
            .await
            .map_err(|e| AdminError::Audit(e.0))
    }
}

/// The operations the Manager calls, recording on `bus`.
pub fn operations(loaded: &Loaded, store: &wharf_store::Store, bus: &EventBus) -> Operations {
    Operations::new(
        store.clone(),
        Arc::new(BusRecorder(bus.clone())),
        crate::context::admin_settings(loaded),
    )
}

/// A `manager` service's settings.
pub fn config(
    service: &Service,
    keys: &ManagerKeys,
    addresses: Vec<std::net::SocketAddr>,
    tls: Arc<rustls::ServerConfig>,
) -> ManagerConfig {
    ManagerConfig {
        name: service.name.get_ref().clone(),
        addresses,
        tls,
        max_connections: *service.max_connections.get_ref(),
        max_per_ip: *service.max_per_ip.get_ref(),
        header_timeout: secs(&keys.header_timeout),
        session_timeout: secs(&keys.session_timeout),
        session_lifetime: secs(&keys.session_lifetime),
        allow_from: keys
            .allow_from
            .as_ref()
            .map(|list| {
                list.get_ref()
                    .iter()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
            .unwrap_or_default(),
        proxy: service.proxy(),
    }
}

/// What the Manager or the cluster follower asks of the serve loop: apply the file again,
/// and answer how it went.
pub struct ReloadRequest {
    /// Where the answer goes.
    pub answer: tokio::sync::oneshot::Sender<Result<String, String>>,
    /// For the cluster follower: the revision it saw. The serve loop skips the reload when
    /// that revision is already in force (the publishing node applies its own revision
    /// while its follower may have seen it too), so one revision is one reload.
    pub for_revision: Option<i64>,
}

/// The node's configuration file, for the Manager's configuration page: checked exactly as
/// `wharf check-config` checks it, written only once it checks (the one before kept as
/// `wharf.toml.previous`, and put back when the running server cannot apply the new one),
/// and applied through the serve loop's reload.
pub struct ConfigFile {
    path: std::path::PathBuf,
    reload: tokio::sync::mpsc::Sender<ReloadRequest>,
}

impl ConfigFile {
    /// The file at `path`, applied through `reload`.
    pub fn new(
        path: &std::path::Path,
        reload: tokio::sync::mpsc::Sender<ReloadRequest>,
    ) -> ConfigFile {
        ConfigFile {
            path: path.to_owned(),
            reload,
        }
    }

    /// A file beside the configuration (so relative paths resolve alike), named `what`.
    fn beside(&self, what: &str) -> std::path::PathBuf {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "wharf.toml".to_owned());
        self.path.with_file_name(format!(".{name}.{what}"))
    }

    /// Has the serve loop reload, unless `for_revision` is already in force.
    async fn ask(&self, for_revision: Option<i64>) -> Result<String, String> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let request = ReloadRequest {
            answer,
            for_revision,
        };
        match self.reload.send(request).await {
            Ok(()) => answered
                .await
                .unwrap_or_else(|_| Err("the server is stopping".to_owned())),
            Err(_) => Err("the server is stopping".to_owned()),
        }
    }

    fn issue(key: &str, message: impl Into<String>) -> ConfigIssue {
        ConfigIssue {
            line: None,
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

use wharf_manager::ConfigIssue;

/// The configuration's problems as the Manager shows them (line, key, message).
fn shown(issues: crate::config::Issues) -> Vec<ConfigIssue> {
    issues
        .0
        .into_iter()
        .map(|i| ConfigIssue {
            line: i.line,
            key: i.key,
            message: i.message,
        })
        .collect()
}

#[async_trait::async_trait]
impl wharf_manager::Configuration for ConfigFile {
    fn text(&self) -> Result<String, String> {
        std::fs::read_to_string(&self.path)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))
    }

    fn check(&self, text: &str) -> Vec<ConfigIssue> {
        // Each check its own file: two administrators checking at once must never read
        // each other's text.
        let trial = self.beside(&format!(
            "check-{}",
            wharf_types::hex(&rand::random::<[u8; 8]>())
        ));
        if let Err(e) = std::fs::write(&trial, text) {
            return vec![ConfigFile::issue("(file)", format!("cannot check: {e}"))];
        }
        let issues = match Loaded::load(&trial) {
            Ok(loaded) => match crate::config::handler::handlers(&loaded) {
                Ok(_) => match crate::config::transfer::transfers(&loaded) {
                    Ok(_) => Vec::new(),
                    Err(e) => vec![ConfigFile::issue("transfer", format!("{e:#}"))],
                },
                Err(e) => vec![ConfigFile::issue("handler", format!("{e:#}"))],
            },
            Err(issues) => shown(issues),
        };
        let _ = std::fs::remove_file(&trial);
        issues
    }

    fn check_shared(&self, number: i64, text: &str) -> Vec<ConfigIssue> {
        match crate::config::shared::check_revision(&self.path, number, text) {
            Ok(()) => Vec::new(),
            Err(issues) => shown(issues),
        }
    }

    fn shared_of_file(&self) -> String {
        crate::config::shared::sections_of_file(&self.path)
    }

    fn transfers(&self) -> Vec<wharf_admin::TransferInfo> {
        Loaded::load(&self.path)
            .map(|loaded| crate::config::transfer::catalog(&loaded))
            .unwrap_or_default()
    }

    async fn metrics(&self) -> Option<String> {
        crate::metrics::render().await
    }

    async fn reload(&self) -> Result<String, String> {
        self.ask(None).await
    }

    async fn apply_revision(&self, revision: i64) -> Result<String, String> {
        self.ask(Some(revision)).await
    }

    async fn apply(&self, text: &str) -> Result<String, Vec<ConfigIssue>> {
        let issues = self.check(text);
        if !issues.is_empty() {
            return Err(issues);
        }
        let previous = self.beside("previous");
        let fresh = self.beside(&format!(
            "new-{}",
            wharf_types::hex(&rand::random::<[u8; 8]>())
        ));
        let written = std::fs::copy(&self.path, &previous)
            .and_then(|_| std::fs::write(&fresh, text))
            .and_then(|()| std::fs::rename(&fresh, &self.path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&fresh);
            return Err(vec![ConfigFile::issue(
                "(file)",
                format!("cannot write {}: {e}", self.path.display()),
            )]);
        }
        let outcome = wharf_manager::Configuration::reload(self).await;
        outcome.map_err(|why| {
            // The running server did not take it: the file goes back to what it runs.
            let _ = std::fs::rename(&previous, &self.path);
            vec![ConfigFile::issue("reload", why)]
        })
    }
}
