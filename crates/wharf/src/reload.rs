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

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use wharf_core::{Event, EventBus, EventKind};
use wharf_store::{ClusterRevision, Store};

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
        bus.set_upload_naming(engine.upload_naming());
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

/// The cluster configuration revision this node runs (none before the first is published),
/// kept so that a reload while the store is out of reach lays the same one again.
#[derive(Default)]
pub struct InForce(std::sync::Mutex<Option<ClusterRevision>>);

impl InForce {
    /// Starting with `revision`.
    pub fn new(revision: Option<ClusterRevision>) -> InForce {
        InForce(std::sync::Mutex::new(revision))
    }

    fn get(&self) -> Option<ClusterRevision> {
        match self.0.lock() {
            Ok(kept) => kept.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, revision: Option<ClusterRevision>) {
        match self.0.lock() {
            Ok(mut kept) => *kept = revision,
            Err(poisoned) => *poisoned.into_inner() = revision,
        }
    }

    /// Whether a follower's request for `revision` is already met (by a reload that
    /// applied it, or a newer one, since the follower saw it).
    pub fn covers(&self, revision: Option<i64>) -> bool {
        revision.is_some_and(|wanted| self.number() >= wanted)
    }

    /// Its number (0: none).
    pub fn number(&self) -> i64 {
        self.get().map_or(0, |r| r.revision)
    }
}

/// What a reload replaces: the services, the event handlers and the transfers.
pub struct Running<'a> {
    /// The services.
    pub supervisor: &'a mut Supervisor,
    /// The event handlers' engine.
    pub handlers: &'a mut Handlers,
    /// The transfers' scheduler.
    pub transfers: &'a crate::transfers::Transfers,
}

/// How long a reload waits for the store to name the newest revision before it lays the
/// one in force again.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Loads `path` again, lays the cluster's newest configuration revision over it (the one
/// in force when the store does not answer in time), and applies it; records what happened
/// and returns it as one line.
pub async fn reload(
    path: &Path,
    store: &Store,
    in_force: &InForce,
    running: Running<'_>,
    operations: &wharf_admin::Operations,
    bus: &EventBus,
) -> Result<String, String> {
    let Running {
        supervisor,
        handlers,
        transfers,
    } = running;
    let refused = |why: String, revision: Option<&ClusterRevision>| {
        let mut event = Event::new(EventKind::ConfigurationRefused).failed(why.clone());
        if let Some(r) = revision {
            event = event
                .attr("revision", r.revision.to_string())
                .attr("published_by", r.admin.clone());
        }
        bus.emit(event);
        Err(why)
    };
    let loaded = match Loaded::load(path) {
        Ok(loaded) => loaded,
        Err(issues) => return refused(issues.to_string(), None),
    };
    let newest = match tokio::time::timeout(STORE_WAIT, store.cluster_configuration(None)).await {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the cluster configuration: the revision in force is laid again");
            in_force.get()
        }
        Err(_) => {
            tracing::warn!(
                "the store did not name the cluster configuration in time: the revision in force is laid again"
            );
            in_force.get()
        }
    };
    let loaded = match crate::context::lay(loaded, newest.as_ref()) {
        (loaded, None) => loaded,
        (_, Some(why)) => return refused(why, newest.as_ref()),
    };
    let refused = |why: String| refused(why, newest.as_ref());
    if let Err(e) = crate::config::handler::handlers(&loaded) {
        return refused(format!("{}: {e:#}", path.display()));
    }
    // Built (secrets read) before anything is applied.
    let new_transfers = match crate::transfers::Transfers::build(&loaded) {
        Ok(list) => list,
        Err(e) => return refused(format!("{}: [[transfer]]: {e:#}", path.display())),
    };
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
    let transfer_count = transfers.replace(new_transfers);
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
        "{}; handlers {}; audit sinks {}; {transfer_count} transfer(s); certificate read again; authentication chain {}; ban policy applied{revision}",
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
    in_force.set(newest);
    Ok(line)
}

/// How often a node asks the store whether a new cluster configuration revision appeared.
pub const CLUSTER_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// The longest wait before a revision that did not apply here is tried again.
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// Asks the serve loop (through `reload`) to apply each new cluster configuration revision,
/// until `stop`. A revision that does not apply here (a `file:` secret missing on this
/// node, the node's own file being edited) is tried again after 2 s, then after twice as
/// long each time up to a minute, so the node catches up once the cause is mended without
/// recording a refusal every second. Nothing here waits past `stop`.
pub async fn follow_cluster(
    store: Store,
    in_force: Arc<InForce>,
    reload: tokio::sync::mpsc::Sender<crate::manager::ReloadRequest>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(CLUSTER_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The head last tried without success, when to try it again, and the wait after that.
    let mut retry: Option<(i64, tokio::time::Instant, std::time::Duration)> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let head = tokio::select! {
            head = tokio::time::timeout(STORE_WAIT, store.cluster_configuration_head()) => head,
            _ = stop.changed() => return,
        };
        let Ok(Ok(now)) = head else {
            continue;
        };
        if now <= in_force.number() {
            retry = None;
            continue;
        }
        let wait = match retry {
            Some((tried, at, _)) if tried == now && tokio::time::Instant::now() < at => continue,
            Some((tried, _, wait)) if tried == now => (wait * 2).min(RETRY_MAX),
            _ => std::time::Duration::from_secs(2),
        };
        let (answer, answered) = tokio::sync::oneshot::channel();
        let request = crate::manager::ReloadRequest {
            answer,
            for_revision: Some(now),
        };
        if reload.send(request).await.is_err() {
            return;
        }
        // The loop may be stopping with this request unread: never wait past the stop.
        let answer = tokio::select! {
            answer = answered => answer,
            _ = stop.changed() => return,
        };
        match answer {
            Ok(Ok(line)) => {
                retry = None;
                eprintln!("wharf: cluster configuration revision {now} applied: {line}");
            }
            Ok(Err(why)) => {
                retry = Some((now, tokio::time::Instant::now() + wait, wait));
                eprintln!(
                    "wharf: cluster configuration revision {now} not applied, the running one stays (tried again in {} s):\n{why}",
                    wait.as_secs()
                );
            }
            Err(_) => return,
        }
    }
}
