//! The nodes of a cluster as administrators see them: each node's state (up, down,
//! stopped), version, host, services with their addresses, sessions open and last
//! heartbeat, from the store's nodes table. The CLI's `wharf cluster status --json`, the
//! API and the console show the same view.

use serde_json::{Value, json};
use wharf_store::NodeRecord;

use crate::{Actor, AdminError, Need, Operations};

/// A node as the CLI, the API and the console show it at `now_us`.
pub fn node_view(node: &NodeRecord, now_us: i64) -> Value {
    json!({
        "name": node.name,
        "state": node.state(now_us).as_str(),
        "version": node.version,
        "host": node.host,
        "pid": node.pid,
        "services": node.services.iter().map(|s| json!({
            "name": s.name,
            "type": s.kind,
            "addresses": s.addresses,
        })).collect::<Vec<_>>(),
        "sessions_open": node.sessions,
        "started": crate::time_text(node.started_us),
        "last_seen": crate::time_text(node.seen_us),
        "seconds_since_seen": now_us.saturating_sub(node.seen_us).max(0) as f64 / 1e6,
        "heartbeat_seconds": node.heartbeat_ms as f64 / 1e3,
        "timeout_seconds": node.timeout_ms as f64 / 1e3,
        "stopped": node.stopped_us.map(crate::time_text),
    })
}

impl Operations {
    /// Every node that registered in the store, by name.
    pub async fn nodes(&self, actor: &Actor) -> Result<Vec<NodeRecord>, AdminError> {
        actor.require(Need::Read, "list the cluster's nodes")?;
        Ok(self.store.nodes().await?)
    }
}
