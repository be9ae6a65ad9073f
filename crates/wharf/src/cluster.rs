//! This node in its cluster: taking its name in the store at start (refused while a live
//! node holds it), the heartbeat that keeps the name and reports what the node serves, the
//! clean stop that frees it, and the record of a store outage once the store is back.
//!
//! On SQLite the node is alone, and all of this works the same.
//!
//! This module must never keep serving under a name another process took over: it tells
//! `serve` to stop ([`Node::lost`]).

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use time::OffsetDateTime;
use tokio::sync::{Notify, watch};
use wharf_auth::OpenConnections;
use wharf_core::{Event, EventBus, EventKind};
use wharf_store::{Claim, NodeRecord, NodeService, Store};

use crate::config::{Loaded, ServerSection};

/// The longest node name.
const MAX_NAME: usize = 64;

/// Checks `[server]`'s node keys.
pub fn validate(server: &ServerSection, issue: &mut dyn FnMut(Range<usize>, String, String)) {
    let name = &server.name;
    if name.is_empty()
        || name.chars().count() > MAX_NAME
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        issue(
            0..0,
            "server.name".into(),
            format!(
                "{name:?} cannot name a node: give 1 to {MAX_NAME} characters without spaces, unique in the cluster"
            ),
        );
    }
    let beat = *server.heartbeat.get_ref();
    if beat == 0 || beat > 300 {
        issue(
            server.heartbeat.span(),
            "server.heartbeat".into(),
            "give the seconds between heartbeats, 1 to 300".into(),
        );
    }
    let timeout = *server.node_timeout.get_ref();
    if timeout < beat.saturating_mul(2) || timeout > 3600 {
        issue(
            server.node_timeout.span(),
            "server.node_timeout".into(),
            format!(
                "give at least two heartbeats ({} s), at most 3600 s; three heartbeats is usual",
                beat.saturating_mul(2)
            ),
        );
    }
}

/// This process holding its node name.
pub struct Node {
    store: Store,
    name: String,
    incarnation: String,
    heartbeat: Duration,
    lost: Arc<Notify>,
}

/// Whether `holder` ran on this machine and its process is gone (killed, crashed): it cannot
/// beat again, whatever its last heartbeat says.
pub fn process_is_gone(holder: &NodeRecord) -> bool {
    if holder.host != host_name() {
        return false;
    }
    // A process killed but not yet reaped by its parent is a zombie: gone all the same.
    match std::fs::read_to_string(format!("/proc/{}/stat", holder.pid)) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

impl Node {
    /// Takes the node's name in the store, or explains which live node holds it. With
    /// `force` (an operator's `wharf takeover`), takes it from a live holder too, which
    /// stops at its next heartbeat.
    pub async fn register(loaded: &Loaded, store: &Store, force: bool) -> Result<Node> {
        let server = &loaded.config.server;
        let now = now_us();
        let heartbeat = Duration::from_secs(*server.heartbeat.get_ref());
        let record = NodeRecord {
            name: server.name.clone(),
            incarnation: format!("{:016x}", rand::random::<u64>()),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            host: host_name(),
            pid: std::process::id(),
            services: services_of(loaded),
            sessions: 0,
            started_us: now,
            seen_us: now,
            heartbeat_ms: millis(heartbeat),
            timeout_ms: millis(Duration::from_secs(*server.node_timeout.get_ref())),
            stopped_us: None,
        };
        // A holder on this machine whose process is gone (killed, crashed) cannot beat
        // again: its name is taken over at once rather than after the timeout, so a node
        // restarted after a crash starts straight away.
        let gone = move |holder: &NodeRecord| force || process_is_gone(holder);
        match store.claim_node_unless_gone(&record, &gone).await {
            Ok(Claim::Claimed { replaced }) => {
                if let Some(old) = replaced.filter(|old| old.stopped_us.is_none()) {
                    tracing::warn!(
                        "node {:?} takes over its name from a process that stopped beating {} ago (pid {} on {})",
                        old.name,
                        ago(now, old.seen_us),
                        old.pid,
                        old.host
                    );
                }
            }
            Ok(Claim::Live(holder)) => bail!(
                "node name {:?} is held by a live node: {}; stop that node, or give this one another [server] name",
                holder.name,
                describe(&holder, now)
            ),
            Err(e) => bail!("cannot register node {:?} in the store: {e}", record.name),
        }
        Ok(Node {
            store: store.clone(),
            name: record.name,
            incarnation: record.incarnation,
            heartbeat,
            lost: Arc::new(Notify::new()),
        })
    }

    /// Notified when another process took this node's name over (this one was cut off from
    /// the store past its timeout): `serve` must stop.
    pub fn lost(&self) -> Arc<Notify> {
        Arc::clone(&self.lost)
    }

    /// Beats until `stop`, then marks the node stopped so its name is free at once.
    pub async fn run(
        self,
        connections: OpenConnections,
        bus: EventBus,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Since when, and why, the store has been out of reach.
        let mut outage: Option<(i64, String)> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
            let now = now_us();
            let open = u64::try_from(connections.count()).unwrap_or(u64::MAX);
            match self
                .store
                .node_heartbeat(&self.name, &self.incarnation, open, now)
                .await
            {
                Ok(true) => {
                    if let Some((since, why)) = outage.take() {
                        back(&bus, since, now, why);
                    }
                }
                Ok(false) => {
                    if let Some((since, why)) = outage.take() {
                        back(&bus, since, now, why);
                    }
                    tracing::error!(
                        "node name {:?} was taken over by another process while this one was silent; stopping",
                        self.name
                    );
                    self.lost.notify_one();
                    return;
                }
                Err(e) => {
                    if outage.is_none() {
                        tracing::warn!(
                            "store unreachable: {e}; logins fail until it is back (this node's heartbeat waits too)"
                        );
                        outage = Some((now, e.to_string()));
                    }
                }
            }
        }
        match self
            .store
            .node_stopped(&self.name, &self.incarnation, now_us())
            .await
        {
            Ok(_) => {}
            Err(e) => tracing::warn!(
                "cannot mark node {:?} stopped in the store ({e}); its name is free again once its heartbeat is older than node_timeout",
                self.name
            ),
        }
    }
}

/// Records the end of a store outage.
fn back(bus: &EventBus, since: i64, now: i64, why: String) {
    let seconds = now.saturating_sub(since) / 1_000_000;
    tracing::info!("store reachable again after {seconds} s");
    bus.emit(
        Event::new(EventKind::StoreUnreachable)
            .failed(why)
            .attr("since", time_of(since))
            .attr("seconds", seconds.to_string()),
    );
}

/// What the node's services listen on, as configured.
fn services_of(loaded: &Loaded) -> Vec<NodeService> {
    loaded
        .config
        .services
        .iter()
        .map(|service| NodeService {
            name: service.name.get_ref().clone(),
            kind: service.type_name().to_owned(),
            addresses: service
                .socket_addresses()
                .unwrap_or_default()
                .iter()
                .map(ToString::to_string)
                .collect(),
        })
        .collect()
}

/// A node for messages: where it runs and listens, when it started, when last seen.
pub fn describe(node: &NodeRecord, now: i64) -> String {
    let listening: Vec<String> = node
        .services
        .iter()
        .map(|s| format!("{} ({}) on {}", s.name, s.kind, s.addresses.join(", ")))
        .collect();
    format!(
        "wharf {} on host {} (pid {}), listening with {}; started {}, last seen {} ago (down after {} s without a heartbeat)",
        node.version,
        node.host,
        node.pid,
        if listening.is_empty() {
            "no services".to_owned()
        } else {
            listening.join("; ")
        },
        time_of(node.started_us),
        ago(now, node.seen_us),
        node.timeout_ms / 1000
    )
}

/// How long ago `then` was, to the tenth of a second.
pub fn ago(now: i64, then: i64) -> String {
    let tenths = now.saturating_sub(then).max(0) / 100_000;
    format!("{}.{} s", tenths / 10, tenths % 10)
}

/// `us` (µs since the Unix epoch) in RFC 3339, to the second.
pub fn time_of(us: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    wharf_types::rfc3339::format_seconds(t)
}

/// Now, µs since the Unix epoch.
pub fn now_us() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The machine's name, as the kernel has it.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_tenths_of_seconds() {
        assert_eq!(ago(10_000_000, 7_450_000), "2.5 s");
        assert_eq!(ago(1, 5), "0.0 s");
    }
}
