//! Applying the configuration file again while the server runs (`wharf reload`, SIGHUP):
//! the file is validated first, and a file that does not validate changes nothing; then
//! the services are started, retired or replaced ([`crate::supervisor`]), the certificate
//! is read again, the event handlers are replaced when their sections changed (the next
//! event follows the new ones; their queue and cursor are in the store), and the password
//! policy the administrative operations check follows. The cluster's newest configuration
//! revision, if one was published, is laid over the file first; [`follow_cluster`] asks
//! for a reload when another revision appears. One record says what was done.
//!
//! This module never touches a session: sessions open before a reload go on as they are.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use wharf_core::{Event, EventBus, EventKind};
use wharf_store::Store;

use crate::audit::AuditSink;
use crate::config::Loaded;
use crate::supervisor::Supervisor;

/// The running event-handler engine, replaceable.
pub struct Handlers {
    store: Store,
    audit: AuditSink,
    written: Arc<Notify>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    sections: String,
}

impl Handlers {
    /// Starts the engine `loaded` describes.
    pub fn start(
        loaded: &Loaded,
        store: Store,
        audit: AuditSink,
        written: Arc<Notify>,
        bus: &EventBus,
    ) -> anyhow::Result<Handlers> {
        let mut handlers = Handlers {
            store,
            audit,
            written,
            stop: watch::channel(false).0,
            task: None,
            sections: String::new(),
        };
        handlers.launch(loaded, bus)?;
        Ok(handlers)
    }

    fn launch(&mut self, loaded: &Loaded, bus: &EventBus) -> anyhow::Result<()> {
        let engine = wharf_handlers::Engine::new(
            self.store.clone(),
            loaded.config.server.name.clone(),
            crate::config::handler::handlers(loaded)?,
            self.audit.clone(),
            Arc::clone(&self.written),
        )
        .with_settings(loaded.config.handler_queue.settings());
        bus.set_durable(!loaded.config.handlers.is_empty());
        // Uploads a uuid-prefix handler would rename are named uniquely as they commit, so a
        // second upload of the same name can never replace one before its handler runs.
        if let Some(naming) = engine.upload_naming() {
            bus.set_upload_naming(naming);
        }
        let (stop, stopped) = watch::channel(false);
        self.stop = stop;
        self.task = Some(tokio::spawn(engine.run(stopped)));
        self.sections = loaded.handler_sections();
        Ok(())
    }

    /// Replaces the engine when `loaded`'s handler sections differ; true when it did.
    async fn replace(&mut self, loaded: &Loaded, bus: &EventBus) -> anyhow::Result<bool> {
        if loaded.handler_sections() == self.sections {
            return Ok(false);
        }
        // Built before the old one stops: a handler that cannot be built changes nothing.
        crate::config::handler::handlers(loaded)?;
        self.stop().await;
        self.launch(loaded, bus)?;
        Ok(true)
    }

    /// Stops the engine and waits for it.
    pub async fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Loads `path` again, lays the cluster's newest configuration revision over it, and
/// applies it; records what happened and returns it as one line.
pub async fn reload(
    path: &Path,
    store: &Store,
    cluster_seen: &AtomicI64,
    supervisor: &mut Supervisor,
    handlers: &mut Handlers,
    operations: &wharf_admin::Operations,
    bus: &EventBus,
) -> Result<String, String> {
    let refused = |why: String| {
        bus.emit(Event::new(EventKind::ConfigurationRefused).failed(why.clone()));
        Err(why)
    };
    let loaded = match Loaded::load(path) {
        Ok(loaded) => loaded,
        Err(issues) => return refused(issues.to_string()),
    };
    let loaded = match crate::context::with_cluster(loaded, store).await {
        Ok(loaded) => loaded,
        Err((_, why)) => return refused(why),
    };
    if let Some(cluster) = &loaded.cluster {
        cluster_seen.fetch_max(cluster.revision, Ordering::SeqCst);
    }
    if let Err(e) = crate::config::handler::handlers(&loaded) {
        return refused(format!("{}: {e:#}", path.display()));
    }
    // Built before anything is applied: a chain that cannot be built changes nothing.
    let chain = match crate::config::auth::methods(&loaded) {
        Ok(chain) => chain,
        Err(e) => return refused(format!("{}: [[authentication]]: {e:#}", path.display())),
    };
    let chain_names: Vec<String> = chain.iter().map(|m| m.name().to_owned()).collect();
    let sinks_written = crate::config::sink::written(&loaded);
    let sinks = if handlers.audit.sinks.differ(&sinks_written) {
        match crate::config::sink::sinks(&loaded, true) {
            Ok(sinks) => Some(sinks),
            Err(e) => return refused(format!("{}: [[audit.sink]]: {e:#}", path.display())),
        }
    } else {
        None
    };
    let applied = match supervisor.apply(&loaded).await {
        Ok(applied) => applied,
        Err(why) => return refused(why),
    };
    let replaced_handlers = match handlers.replace(&loaded, bus).await {
        Ok(replaced) => replaced,
        Err(e) => return refused(format!("handlers: {e:#}")),
    };
    operations.set_settings(crate::context::admin_settings(&loaded));
    supervisor.authenticator().set_methods(chain);
    let replaced_sinks = sinks.is_some();
    if let Some(sinks) = sinks {
        handlers.audit.sinks.replace(sinks_written, sinks);
    }
    if let Some(bans) = supervisor.authenticator().bans() {
        bans.set_policy(loaded.config.ban.policy());
    }
    let revision = loaded.cluster.as_ref().map_or(String::new(), |c| {
        format!(
            "; cluster configuration revision {} (published by {})",
            c.revision, c.admin
        )
    });
    let line = format!(
        "{}; handlers {}; audit sinks {}; certificate read again; authentication chain {}; ban policy applied{revision}",
        applied.describe(),
        if replaced_handlers {
            "replaced"
        } else {
            "unchanged"
        },
        if replaced_sinks {
            "replaced"
        } else {
            "unchanged"
        },
        chain_names.join(", ")
    );
    let outcome = if applied.failed.is_empty() {
        Event::new(EventKind::ConfigurationReloaded).message(line.clone())
    } else {
        Event::new(EventKind::ConfigurationReloaded).failed(line.clone())
    };
    let mut outcome = outcome
        .attr("handlers", replaced_handlers.to_string())
        .attr("sinks", replaced_sinks.to_string());
    if let Some(cluster) = &loaded.cluster {
        outcome = outcome
            .attr("revision", cluster.revision.to_string())
            .attr("published_by", cluster.admin.clone());
    }
    bus.emit(outcome);
    Ok(line)
}

/// How often a node asks the store whether a new cluster configuration revision appeared.
pub const CLUSTER_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Asks the serve loop (through `reload`) to apply each new cluster configuration revision,
/// once per revision, until `stop`; `seen` is the newest revision a reload has read (a
/// publish on this node reloads at once, and is not applied twice). A store that cannot be
/// read is asked again at the next tick.
pub async fn follow_cluster(
    store: Store,
    seen: Arc<AtomicI64>,
    reload: tokio::sync::mpsc::Sender<crate::manager::ReloadRequest>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(CLUSTER_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let Ok(now) = store.cluster_configuration_head().await else {
            continue;
        };
        if now <= seen.load(Ordering::SeqCst) {
            continue;
        }
        // Once per revision: one that does not apply here is refused once (with its
        // record), not every second.
        seen.fetch_max(now, Ordering::SeqCst);
        let (answer, answered) = tokio::sync::oneshot::channel();
        if reload.send(answer).await.is_err() {
            return;
        }
        // The loop may be stopping with this request unread: never wait past the stop.
        let answer = tokio::select! {
            answer = answered => answer,
            _ = stop.changed() => return,
        };
        match answer {
            Ok(Ok(line)) => {
                eprintln!("wharf: cluster configuration revision {now} applied: {line}")
            }
            Ok(Err(why)) => eprintln!(
                "wharf: cluster configuration revision {now} not applied, the running one stays:\n{why}"
            ),
            Err(_) => return,
        }
    }
}
