//! Client-side transfers as administrators see them: the configured transfers with where
//! each stands (which node runs it, a run asked for, its last run), their runs, and a run
//! asked for now. The transfers themselves are the configuration's (the binary tells what
//! they are); which node runs one and how is wharf-transfers' work.

use serde_json::{Value, json};
use wharf_core::EventKind;
use wharf_store::{LeaseView, TransferRun};

use crate::{Actor, AdminError, Need, Operations};

/// The most runs one listing returns.
pub const MAX_RUNS: i64 = 1000;

/// A configured transfer, as the configuration describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferInfo {
    /// Its name.
    pub name: String,
    /// `LOCATION:FOLDER` it takes files from.
    pub source: String,
    /// `LOCATION:FOLDER` it delivers them to.
    pub destination: String,
    /// When it runs on its own (`every 300 s`, `cron "0 2 * * *"`, `on events`, `by hand`).
    pub when: String,
}

/// A run as the API and the console show it.
pub fn transfer_run_view(run: &TransferRun) -> Value {
    json!({
        "run": run.id,
        "transfer": run.transfer,
        "node": run.node,
        "trigger": run.trigger,
        "state": run.state,
        "started": crate::time_text(run.started_us),
        "finished": run.finished_us.map(crate::time_text),
        "files": run.files,
        "bytes": run.bytes,
        "skipped": run.skipped,
        "failures": run.failures,
        "message": run.message,
    })
}

/// Where a transfer stands: `running on NODE`, `asked for (WHO)`, or `idle`.
fn state_of(lease: Option<&LeaseView>, now_us: i64) -> String {
    match lease {
        Some(l) if l.owner.is_some() && l.lease_until_us >= now_us => {
            format!("running on {}", l.owner.as_deref().unwrap_or_default())
        }
        Some(LeaseView {
            requested: Some((_, by)),
            ..
        }) => format!("asked for ({by})"),
        _ => "idle".to_owned(),
    }
}

impl Operations {
    /// The transfers of `catalog` (the configuration's) with where each stands.
    pub async fn transfers(
        &self,
        actor: &Actor,
        catalog: &[TransferInfo],
    ) -> Result<Vec<Value>, AdminError> {
        actor.require(Need::Read, "list transfers")?;
        let now = self.store.clock_us().await?;
        let leases = self.store.transfer_leases().await?;
        let mut views = Vec::with_capacity(catalog.len());
        for info in catalog {
            let lease = leases.iter().find(|l| l.transfer == info.name);
            let last = self.store.transfer_runs(&info.name, 1).await?;
            views.push(json!({
                "name": info.name,
                "source": info.source,
                "destination": info.destination,
                "when": info.when,
                "state": state_of(lease, now),
                "last_run": last.first().map(transfer_run_view),
            }));
        }
        Ok(views)
    }

    /// `name`'s runs, newest first, at most `limit` (and [`MAX_RUNS`]).
    pub async fn transfer_runs(
        &self,
        actor: &Actor,
        name: &str,
        catalog: &[TransferInfo],
        limit: i64,
    ) -> Result<Vec<TransferRun>, AdminError> {
        actor.require(Need::Read, "list transfer runs")?;
        known(name, catalog)?;
        let limit = if limit <= 0 { 20 } else { limit.min(MAX_RUNS) };
        Ok(self.store.transfer_runs(name, limit).await?)
    }

    /// Asks for a run of `name` now: whichever node holds it (or takes it first) runs it.
    pub async fn run_transfer(
        &self,
        actor: &Actor,
        name: &str,
        catalog: &[TransferInfo],
    ) -> Result<(), AdminError> {
        actor.require(Need::Operate, "run transfers")?;
        known(name, catalog)?;
        let who = match actor.admin_name() {
            Some(admin) => format!("manager ({admin})"),
            None => format!("hand ({})", actor.label()),
        };
        self.store.request_transfer_run(name, &who).await?;
        self.record(
            actor
                .event(EventKind::TransferRunRequested)
                .attr("target", name.to_owned())
                .message(format!("a run of transfer {name} asked for")),
        )
        .await
    }
}

fn known(name: &str, catalog: &[TransferInfo]) -> Result<(), AdminError> {
    if catalog.iter().any(|t| t.name == name) {
        Ok(())
    } else {
        Err(AdminError::NotFound(format!(
            "no transfer {name:?} is configured on this node"
        )))
    }
}
