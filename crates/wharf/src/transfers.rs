//! The client-side transfers' scheduler as the server runs it: started with the server,
//! given the new transfers on reload (a run in progress finishes with the ones it started
//! with), stopped with the server (runs in progress are cut off and resume from the store).

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use wharf_store::Store;
use wharf_transfers::Transfer;
use wharf_transfers::run::Context as RunContext;
use wharf_transfers::scheduler::Scheduler;

use crate::audit::AuditSink;
use crate::config::Loaded;

type List = Arc<Vec<Arc<Transfer>>>;

/// The running scheduler.
pub struct Transfers {
    list: watch::Sender<List>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Transfers {
    /// Starts the scheduler for `loaded`'s transfers.
    pub fn start(loaded: &Loaded, store: Store, audit: AuditSink) -> anyhow::Result<Transfers> {
        let transfers: List = Arc::new(crate::config::transfer::transfers(loaded)?);
        let (list, follow) = watch::channel(transfers);
        let (stop, stopped) = watch::channel(false);
        let ctx = Arc::new(RunContext {
            store,
            recorder: Arc::new(audit),
            node: loaded.config.server.name.clone(),
        });
        let hold = loaded.config.handler_queue.settings().lease;
        let task = tokio::spawn(Scheduler::new(ctx, follow, hold).run(stopped));
        Ok(Transfers {
            list,
            stop,
            task: Some(task),
        })
    }

    /// Builds `loaded`'s transfers (secrets read) without applying them.
    pub fn build(loaded: &Loaded) -> anyhow::Result<List> {
        Ok(Arc::new(crate::config::transfer::transfers(loaded)?))
    }

    /// Gives the scheduler `transfers`; how many there are.
    pub fn replace(&self, transfers: List) -> usize {
        let count = transfers.len();
        self.list.send_replace(transfers);
        count
    }

    /// Stops the scheduler and waits for it.
    pub async fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}
