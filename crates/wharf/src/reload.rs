//! Applying the configuration file again while the server runs (`wharf reload`, SIGHUP):
//! the file is validated first, and a file that does not validate changes nothing; then
//! the services are started, retired or replaced ([`crate::supervisor`]), the certificate
//! is read again, the event handlers are replaced when their sections changed (the next
//! event follows the new ones; their queue and cursor are in the store), and the password
//! policy the administrative operations check follows. One record says what was done.
//!
//! This module never touches a session: sessions open before a reload go on as they are.

use std::path::Path;
use std::sync::Arc;

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

/// The `[[handler]]` and `[handlers]` sections of the file, written canonically.
fn handler_sections(path: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        return String::new();
    };
    format!(
        "{:?}{:?}",
        table.get("handler").map(ToString::to_string),
        table.get("handlers").map(ToString::to_string)
    )
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
        self.sections = handler_sections(&loaded.path);
        Ok(())
    }

    /// Replaces the engine when `loaded`'s handler sections differ; true when it did.
    async fn replace(&mut self, loaded: &Loaded, bus: &EventBus) -> anyhow::Result<bool> {
        if handler_sections(&loaded.path) == self.sections {
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

/// Loads `path` again and applies it; records what happened and returns it as one line.
pub async fn reload(
    path: &Path,
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
    if let Err(e) = crate::config::handler::handlers(&loaded) {
        return refused(format!("{}: {e:#}", path.display()));
    }
    // Built before anything is applied: a chain that cannot be built changes nothing.
    let chain = match crate::config::auth::methods(&loaded) {
        Ok(chain) => chain,
        Err(e) => return refused(format!("{}: [[authentication]]: {e:#}", path.display())),
    };
    let chain_names: Vec<String> = chain.iter().map(|m| m.name().to_owned()).collect();
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
    if let Some(bans) = supervisor.authenticator().bans() {
        bans.set_policy(loaded.config.ban.policy());
    }
    let line = format!(
        "{}; handlers {}; certificate read again; authentication chain {}; ban policy applied",
        applied.describe(),
        if replaced_handlers {
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
    bus.emit(outcome.attr("handlers", replaced_handlers.to_string()));
    Ok(line)
}
