//! The nodes of a cluster: one row per node name, written by the node that holds the name
//! (its start, its heartbeat, its clean stop) and read by `wharf cluster status`.
//!
//! A name belongs to one live process at a time. [`Store::claim_node`] decides that inside
//! the table's write lock, so two processes starting under one name at the same moment are
//! ordered: the first takes the name, the second sees it live and is refused. A row whose
//! heartbeat is older than its own timeout, or that says it stopped, may be taken over; the
//! taker writes a new `incarnation`, and the process it replaced can no longer beat or stop
//! under that name (its writes match no row).
//!
//! Times are the writing node's clock (µs since the Unix epoch): nodes of a cluster are
//! expected to keep their clocks in step (NTP), as they do for the audit trail.
//!
//! This module must never decide what a node does when its name is refused: it answers, the
//! binary decides.

use serde::{Deserialize, Serialize};

use crate::backend::{Backing, Fetch, on_pool};
use crate::{Store, StoreError};

/// One service a node listens with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeService {
    /// The service's name in the node's configuration.
    pub name: String,
    /// Its type (`ssh`, `ftp`, `ftps-implicit`, `http`, `https`…).
    pub kind: String,
    /// The socket addresses it listens on (`127.0.0.1:2222`, `[::1]:2222`).
    pub addresses: Vec<String>,
}

/// A node's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node's name (`[server] name`), unique in the cluster.
    pub name: String,
    /// A random token of the process holding the name; a new one at each start.
    pub incarnation: String,
    /// The Wharf version it runs.
    pub version: String,
    /// The machine's host name.
    pub host: String,
    /// The process id on that machine.
    pub pid: u32,
    /// What it listens on.
    pub services: Vec<NodeService>,
    /// Connections open on all its services at the last heartbeat.
    pub sessions: u64,
    /// When the process took the name.
    pub started_us: i64,
    /// Its last heartbeat.
    pub seen_us: i64,
    /// How often it beats.
    pub heartbeat_ms: i64,
    /// How long after its last heartbeat it counts as down, and its name may be taken.
    pub timeout_ms: i64,
    /// When it stopped cleanly; `None` while it runs (or since it died).
    pub stopped_us: Option<i64>,
}

/// What a node is, as seen at some moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Beating.
    Up,
    /// Silent past its timeout without stopping: killed, or cut off from the store.
    Down,
    /// Stopped cleanly.
    Stopped,
}

impl NodeState {
    /// `up`, `down` or `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Down => "down",
            NodeState::Stopped => "stopped",
        }
    }
}

impl NodeRecord {
    /// What the node is at `now_us`.
    pub fn state(&self, now_us: i64) -> NodeState {
        if self.stopped_us.is_some() {
            NodeState::Stopped
        } else if now_us.saturating_sub(self.seen_us) > self.timeout_ms.saturating_mul(1000) {
            NodeState::Down
        } else {
            NodeState::Up
        }
    }
}

/// The answer to [`Store::claim_node`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The name is this process's now; `replaced` is the row it took over (a node stopped,
    /// or silent past its timeout), if any.
    Claimed {
        /// The earlier holder's row.
        replaced: Option<NodeRecord>,
    },
    /// A live node holds the name: its row.
    Live(NodeRecord),
}

fn record(row: &impl Fetch) -> Result<NodeRecord, StoreError> {
    let services = row.text("services")?;
    Ok(NodeRecord {
        name: row.text("name")?,
        incarnation: row.text("incarnation")?,
        version: row.text("version")?,
        host: row.text("host")?,
        pid: u32::try_from(row.int("pid")?).unwrap_or(0),
        services: serde_json::from_str(&services).map_err(|source| StoreError::Corrupt {
            what: "nodes.services",
            source,
        })?,
        sessions: u64::try_from(row.int("sessions")?).unwrap_or(0),
        started_us: row.int("started_us")?,
        seen_us: row.int("seen_us")?,
        heartbeat_ms: row.int("heartbeat_ms")?,
        timeout_ms: row.int("timeout_ms")?,
        stopped_us: row.opt_int("stopped_us")?,
    })
}

impl Store {
    /// Takes `node.name` for the process `node` describes, unless a live node holds it.
    /// `node.seen_us` is now. Decided under the table's write lock, so of two processes
    /// claiming one name at once exactly one gets it.
    pub async fn claim_node(&self, node: &NodeRecord) -> Result<Claim, StoreError> {
        self.claim_node_unless_gone(node, &|_| false).await
    }

    /// As [`Store::claim_node`], and a holder that `gone` says has ended (the caller saw
    /// its process is no longer running) is taken over at once, live as its row looks.
    pub async fn claim_node_unless_gone(
        &self,
        node: &NodeRecord,
        gone: &(dyn Fn(&NodeRecord) -> bool + Send + Sync),
    ) -> Result<Claim, StoreError> {
        let services =
            serde_json::to_string(&node.services).map_err(|source| StoreError::Corrupt {
                what: "nodes.services",
                source,
            })?;
        on_pool!(self, pool => {
            let mut tx = pool.begin_write("nodes").await?;
            let row = sqlx::query("SELECT * FROM nodes WHERE name = $1")
                .bind(&node.name)
                .fetch_optional(&mut *tx)
                .await?;
            let holder = row.as_ref().map(record).transpose()?;
            if let Some(holder) = &holder
                && holder.state(node.seen_us) == NodeState::Up
                && !gone(holder)
            {
                return Ok(Claim::Live(holder.clone()));
            }
            sqlx::query(
                "INSERT INTO nodes (name, incarnation, version, host, pid, services, sessions,
                   started_us, seen_us, heartbeat_ms, timeout_ms, stopped_us)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL)
                 ON CONFLICT (name) DO UPDATE SET incarnation = excluded.incarnation,
                   version = excluded.version, host = excluded.host, pid = excluded.pid,
                   services = excluded.services, sessions = excluded.sessions,
                   started_us = excluded.started_us, seen_us = excluded.seen_us,
                   heartbeat_ms = excluded.heartbeat_ms, timeout_ms = excluded.timeout_ms,
                   stopped_us = NULL",
            )
            .bind(&node.name)
            .bind(&node.incarnation)
            .bind(&node.version)
            .bind(&node.host)
            .bind(i64::from(node.pid))
            .bind(&services)
            .bind(i64::try_from(node.sessions).unwrap_or(i64::MAX))
            .bind(node.started_us)
            .bind(node.seen_us)
            .bind(node.heartbeat_ms)
            .bind(node.timeout_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Claim::Claimed { replaced: holder })
        })
    }

    /// A heartbeat of the process holding `name` as `incarnation`: it was alive at `now_us`
    /// with `sessions` connections open. False when the name is no longer this process's
    /// (another took it over while this one was silent).
    pub async fn node_heartbeat(
        &self,
        name: &str,
        incarnation: &str,
        sessions: u64,
        now_us: i64,
    ) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE nodes SET seen_us = $3, sessions = $4
                 WHERE name = $1 AND incarnation = $2 AND stopped_us IS NULL",
            )
            .bind(name)
            .bind(incarnation)
            .bind(now_us)
            .bind(i64::try_from(sessions).unwrap_or(i64::MAX))
            .execute(pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Records the clean stop of the process holding `name` as `incarnation`, so the name
    /// may be taken again at once. False when the name is no longer this process's.
    pub async fn node_stopped(
        &self,
        name: &str,
        incarnation: &str,
        now_us: i64,
    ) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE nodes SET stopped_us = $3, seen_us = $3, sessions = 0
                 WHERE name = $1 AND incarnation = $2",
            )
            .bind(name)
            .bind(incarnation)
            .bind(now_us)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Fences the process holding `name` as `incarnation` (a standby took over from it):
    /// its next heartbeat finds the name no longer its own, and it stops. False when that
    /// process no longer held the name.
    pub async fn fence_node(
        &self,
        name: &str,
        incarnation: &str,
        now_us: i64,
    ) -> Result<bool, StoreError> {
        self.node_stopped(name, incarnation, now_us).await
    }

    /// Marks every node that was running as stopped (a store restored from a backup: the
    /// processes its rows describe are not this store's). Returns how many were.
    pub async fn stop_every_node(&self, now_us: i64) -> Result<u64, StoreError> {
        on_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE nodes SET stopped_us = $1, sessions = 0 WHERE stopped_us IS NULL",
            )
            .bind(now_us)
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }

    /// Every node that ever registered, by name.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        on_pool!(self, pool => {
            let rows = sqlx::query("SELECT * FROM nodes ORDER BY name")
                .fetch_all(pool)
                .await?;
            rows.iter().map(record).collect()
        })
    }

    /// Forgets a node that no longer runs (decommissioned); false when there was no row.
    /// A live node's row is kept.
    pub async fn forget_node(&self, name: &str, now_us: i64) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin_write("nodes").await?;
            let row = sqlx::query("SELECT * FROM nodes WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else {
                return Ok(false);
            };
            let node = record(&row)?;
            if node.state(now_us) == NodeState::Up {
                return Err(StoreError::Exists(format!("live node {name:?}")));
            }
            sqlx::query("DELETE FROM nodes WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, incarnation: &str, now_us: i64) -> NodeRecord {
        NodeRecord {
            name: name.to_owned(),
            incarnation: incarnation.to_owned(),
            version: "0.0.0".to_owned(),
            host: "host-1".to_owned(),
            pid: 42,
            services: vec![NodeService {
                name: "sftp".to_owned(),
                kind: "ssh".to_owned(),
                addresses: vec!["127.0.0.1:2222".to_owned(), "[::1]:2222".to_owned()],
            }],
            sessions: 0,
            started_us: now_us,
            seen_us: now_us,
            heartbeat_ms: 2_000,
            timeout_ms: 6_000,
            stopped_us: None,
        }
    }

    #[tokio::test]
    async fn a_live_name_is_refused_and_a_silent_or_stopped_one_taken_over() {
        for t in crate::testing::backends().await {
            let s = &t.store;
            let now = 1_000_000_000_000;
            assert_eq!(
                s.claim_node(&node("a", "first", now)).await.unwrap(),
                Claim::Claimed { replaced: None },
                "{}",
                t.name
            );
            assert!(matches!(
                s.claim_node(&node("b", "other", now)).await.unwrap(),
                Claim::Claimed { replaced: None }
            ));
            // Live: refused, naming the holder.
            let second = node("a", "second", now + 5_000_000);
            match s.claim_node(&second).await.unwrap() {
                Claim::Live(holder) => {
                    assert_eq!(holder.incarnation, "first", "{}", t.name);
                    assert_eq!(holder.services[0].addresses.len(), 2);
                }
                other => panic!("{}: {other:?}", t.name),
            }
            // Beats keep it live; the row counts its connections.
            assert!(
                s.node_heartbeat("a", "first", 3, now + 6_000_000)
                    .await
                    .unwrap()
            );
            let rows = s.nodes().await.unwrap();
            assert_eq!(rows.len(), 2, "{}", t.name);
            assert_eq!(rows[0].sessions, 3);
            assert_eq!(rows[0].state(now + 11_000_000), NodeState::Up);
            assert_eq!(rows[0].state(now + 13_000_000), NodeState::Down);
            assert!(matches!(
                s.claim_node(&node("a", "second", now + 11_000_000))
                    .await
                    .unwrap(),
                Claim::Live(_)
            ));
            // Silent past the timeout (killed): taken over; the old process can no longer
            // beat or stop under the name.
            match s
                .claim_node(&node("a", "second", now + 13_000_000))
                .await
                .unwrap()
            {
                Claim::Claimed {
                    replaced: Some(old),
                } => assert_eq!(old.incarnation, "first"),
                other => panic!("{}: {other:?}", t.name),
            }
            assert!(
                !s.node_heartbeat("a", "first", 0, now + 14_000_000)
                    .await
                    .unwrap()
            );
            assert!(
                !s.node_stopped("a", "first", now + 14_000_000)
                    .await
                    .unwrap()
            );
            // A clean stop frees the name at once.
            assert!(
                s.node_stopped("a", "second", now + 14_000_000)
                    .await
                    .unwrap()
            );
            let a = &s.nodes().await.unwrap()[0];
            assert_eq!(a.state(now + 14_000_001), NodeState::Stopped);
            assert!(
                !s.node_heartbeat("a", "second", 0, now + 14_000_001)
                    .await
                    .unwrap()
            );
            assert!(matches!(
                s.claim_node(&node("a", "third", now + 14_000_002))
                    .await
                    .unwrap(),
                Claim::Claimed { replaced: Some(_) }
            ));
            let a = &s.nodes().await.unwrap()[0];
            assert_eq!((a.incarnation.as_str(), a.stopped_us), ("third", None));
            // A live node cannot be forgotten; a stopped one can.
            assert!(s.forget_node("a", now + 14_000_003).await.is_err());
            assert!(
                s.node_stopped("a", "third", now + 14_000_003)
                    .await
                    .unwrap()
            );
            assert!(s.forget_node("a", now + 14_000_004).await.unwrap());
            assert!(!s.forget_node("a", now + 14_000_004).await.unwrap());
        }
    }

    #[tokio::test]
    async fn of_two_processes_claiming_one_name_at_once_one_gets_it() {
        for t in crate::testing::backends().await {
            let now = 2_000_000_000_000;
            let mut tasks = Vec::new();
            for i in 0..8 {
                let store = t.store.clone();
                tasks.push(tokio::spawn(async move {
                    store.claim_node(&node("race", &format!("p{i}"), now)).await
                }));
            }
            let mut won = 0;
            for task in tasks {
                if let Claim::Claimed { .. } = task.await.unwrap().unwrap() {
                    won += 1;
                }
            }
            assert_eq!(won, 1, "{}", t.name);
        }
    }
}
