//! Bans of client networks, shared by every node that uses the store, and the failures
//! that lead to them, scored by every node together.
//!
//! A row outlives its ban: `strikes` counts how often the network was banned, so a repeat
//! offender's next ban is longer. Every change of a row takes the next `version` of the
//! table, under the table's write lock, so versions are committed in order and a node that
//! reads "rows after the version I saw last" ([`Store::bans_changed`]) misses nothing. That
//! is why a lifted ban is not deleted but kept as a tombstone (`lifted`, strikes cleared):
//! a deleted row could not be seen by such a poll. Rows are forgotten some time after their
//! ban ends ([`Store::forget_bans`]), except the newest, which carries the table's version.
//!
//! `ban_failures` holds one row per scored failure (network, time, points, node), so a
//! network's score is one indexed sum over the window whichever node saw each failure; rows
//! older than the window are forgotten ([`Store::forget_ban_failures`]), and a network's
//! rows go when it is banned or its ban is lifted.
//!
//! This module never decides what is scored or how long a ban lasts: that is the ban
//! engine's (wharf-auth); it only keeps the rows consistent across nodes.

use crate::backend::{Backing, Fetch, on_pool};
use crate::{Store, StoreError};

/// One banned network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanRecord {
    /// The network, as `IpNetwork` prints it (`203.0.113.7/32`, `2001:db8::/64`).
    pub network: String,
    /// When the latest ban started (µs since the Unix epoch).
    pub banned_us: i64,
    /// When it ends (µs since the Unix epoch).
    pub until_us: i64,
    /// How many times the network has been banned.
    pub strikes: u32,
    /// What set the latest ban off.
    pub reason: String,
    /// The node that banned it.
    pub node: String,
}

fn record(row: &impl Fetch) -> Result<BanRecord, StoreError> {
    Ok(BanRecord {
        network: row.text("network")?,
        banned_us: row.int("banned_us")?,
        until_us: row.int("until_us")?,
        strikes: u32::try_from(row.int("strikes")?).unwrap_or(u32::MAX),
        reason: row.text("reason")?,
        node: row.text("node")?,
    })
}

/// A row as a poll sees it: a ban, or the tombstone of a lifted one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanChange {
    /// The table's version when the row last changed.
    pub version: i64,
    /// An administrator lifted the ban (the row's strikes are cleared).
    pub lifted: bool,
    /// The row.
    pub ban: BanRecord,
}

/// What [`Store::claim_ban`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanClaim {
    /// The ban is recorded: this caller made it.
    Made,
    /// The network was already banned (by another node, a moment before); its ban as stored.
    Held(BanRecord),
}

/// Inserts or replaces a network's row as a ban, at `version`, and clears its failures.
const UPSERT: &str = "INSERT INTO bans (network, banned_us, until_us, strikes, reason, node,
       version, lifted, end_noted)
     VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0)
     ON CONFLICT (network) DO UPDATE SET banned_us = excluded.banned_us,
       until_us = excluded.until_us, strikes = excluded.strikes,
       reason = excluded.reason, node = excluded.node, version = excluded.version,
       lifted = 0, end_noted = 0";

/// The version the next change of the table takes (run under the table's write lock).
const NEXT_VERSION: &str = "SELECT COALESCE(MAX(version), 0) + 1 FROM bans";

impl Store {
    /// Records a ban, replacing the network's earlier row (an administrator's ban, or a
    /// copy); every node follows it.
    pub async fn put_ban(&self, ban: &BanRecord) -> Result<(), StoreError> {
        self.write_ban(ban, false).await.map(|_| ())
    }

    /// Records a ban unless the network is banned already at `ban.banned_us` (another node
    /// was first): then that ban is returned and nothing is written. One node's ban is the
    /// one in force, so one node records it.
    pub async fn claim_ban(&self, ban: &BanRecord) -> Result<BanClaim, StoreError> {
        self.write_ban(ban, true).await
    }

    /// Writes `ban` with the table's next version and forgets the network's failures; with
    /// `unless_held`, a ban in force at `ban.banned_us` is returned instead.
    async fn write_ban(&self, ban: &BanRecord, unless_held: bool) -> Result<BanClaim, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin_write("bans").await?;
            if unless_held {
                let held = sqlx::query(
                    "SELECT * FROM bans WHERE network = $1 AND lifted = 0 AND until_us > $2",
                )
                .bind(&ban.network)
                .bind(ban.banned_us)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = held {
                    return Ok(BanClaim::Held(record(&row)?));
                }
            }
            let version: i64 = sqlx::query_scalar(NEXT_VERSION).fetch_one(&mut *tx).await?;
            sqlx::query(UPSERT)
                .bind(&ban.network)
                .bind(ban.banned_us)
                .bind(ban.until_us)
                .bind(i64::from(ban.strikes))
                .bind(&ban.reason)
                .bind(&ban.node)
                .bind(version)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM ban_failures WHERE network = $1")
                .bind(&ban.network)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(BanClaim::Made)
        })
    }

    /// Rows changed after `after_version`, oldest change first, at most `limit` of them;
    /// lifted bans come as tombstones.
    pub async fn bans_changed(
        &self,
        after_version: i64,
        limit: i64,
    ) -> Result<Vec<BanChange>, StoreError> {
        on_pool!(self, pool => {
            let rows = sqlx::query("SELECT * FROM bans WHERE version > $1 ORDER BY version LIMIT $2")
                .bind(after_version)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(BanChange {
                        version: row.int("version")?,
                        lifted: row.int("lifted")? != 0,
                        ban: record(row)?,
                    })
                })
                .collect()
        })
    }

    /// Marks the network's ban, ended by `now_us`, as noted; true for the one caller that
    /// did it (so the end of a ban is recorded once in a cluster, whichever node saw it first).
    pub async fn note_ban_ended(&self, network: &str, now_us: i64) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE bans SET end_noted = 1
                 WHERE network = $1 AND until_us <= $2 AND lifted = 0 AND end_noted = 0",
            )
            .bind(network)
            .bind(now_us)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Adds a scored failure of `network` seen by `node` at `at_us`; returns the network's
    /// score: the points of its failures after `since_us`, on every node.
    pub async fn score_failure(
        &self,
        network: &str,
        at_us: i64,
        points: u32,
        node: &str,
        since_us: i64,
    ) -> Result<u64, StoreError> {
        on_pool!(self, pool => {
            sqlx::query("INSERT INTO ban_failures (network, at_us, points, node) VALUES ($1, $2, $3, $4)")
                .bind(network)
                .bind(at_us)
                .bind(i64::from(points))
                .bind(node)
                .execute(pool)
                .await?;
            let score: i64 = sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(points), 0) AS BIGINT) FROM ban_failures
                 WHERE network = $1 AND at_us > $2",
            )
            .bind(network)
            .bind(since_us)
            .fetch_one(pool)
            .await?;
            Ok(u64::try_from(score).unwrap_or(0))
        })
    }

    /// Forgets failures older than `before_us`; returns how many.
    pub async fn forget_ban_failures(&self, before_us: i64) -> Result<u64, StoreError> {
        on_pool!(self, pool => {
            let done = sqlx::query("DELETE FROM ban_failures WHERE at_us < $1")
                .bind(before_us)
                .execute(pool)
                .await?;
            Ok(done.rows_affected())
        })
    }

    /// The network's row, banned now or not.
    pub async fn ban(&self, network: &str) -> Result<Option<BanRecord>, StoreError> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT * FROM bans WHERE network = $1 AND lifted = 0")
                .bind(network)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(record).transpose()
        })
    }

    /// Bans in force at `now_us`, latest first.
    pub async fn active_bans(&self, now_us: i64) -> Result<Vec<BanRecord>, StoreError> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT * FROM bans WHERE until_us > $1 AND lifted = 0 ORDER BY banned_us DESC",
            )
                .bind(now_us)
                .fetch_all(pool)
                .await?;
            rows.iter().map(record).collect()
        })
    }

    /// Rows whose ban ends after `after_us` (in force, or ended recently enough that their
    /// strikes still count).
    pub async fn bans_since(&self, after_us: i64) -> Result<Vec<BanRecord>, StoreError> {
        on_pool!(self, pool => {
            let rows = sqlx::query("SELECT * FROM bans WHERE until_us > $1 AND lifted = 0")
                .bind(after_us)
                .fetch_all(pool)
                .await?;
            rows.iter().map(record).collect()
        })
    }

    /// Lifts a ban at `now_us` and forgets the network's strikes and failures; false when
    /// there was no row. The row stays as a tombstone, so every node's poll sees the lift.
    pub async fn remove_ban(&self, network: &str, now_us: i64) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin_write("bans").await?;
            let version: i64 = sqlx::query_scalar(NEXT_VERSION).fetch_one(&mut *tx).await?;
            let done = sqlx::query(
                "UPDATE bans SET lifted = 1, strikes = 0, until_us = $2, version = $3
                 WHERE network = $1 AND lifted = 0",
            )
            .bind(network)
            .bind(now_us)
            .bind(version)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM ban_failures WHERE network = $1")
                .bind(network)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Forgets rows (bans and tombstones) that ended before `before_us`; returns how many.
    /// The newest row stays whatever its age: it holds the table's version, which must
    /// never go back.
    pub async fn forget_bans(&self, before_us: i64) -> Result<u64, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin_write("bans").await?;
            let done = sqlx::query(
                "DELETE FROM bans WHERE until_us < $1
                   AND version < (SELECT COALESCE(MAX(version), 0) FROM bans)",
            )
            .bind(before_us)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(done.rows_affected())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(network: &str, banned_us: i64, until_us: i64, node: &str) -> BanRecord {
        BanRecord {
            network: network.into(),
            banned_us,
            until_us,
            strikes: 1,
            reason: "score 4 reached 4 within 60 s".into(),
            node: node.into(),
        }
    }

    #[tokio::test]
    async fn failures_from_every_node_add_up_over_the_window() {
        for t in crate::testing::backends().await {
            let s = &t.store;
            let net = "192.0.2.7/32";
            // Two nodes' failures count together; an older one is out of the window.
            assert_eq!(
                s.score_failure(net, 100, 1, "a", 50).await.unwrap(),
                1,
                "{}",
                t.name
            );
            assert_eq!(s.score_failure(net, 200, 2, "b", 50).await.unwrap(), 3);
            assert_eq!(s.score_failure(net, 300, 1, "a", 150).await.unwrap(), 3);
            // Another network is scored apart.
            assert_eq!(
                s.score_failure("2001:db8::/64", 300, 1, "b", 0)
                    .await
                    .unwrap(),
                1
            );
            assert_eq!(s.forget_ban_failures(250).await.unwrap(), 2);
            assert_eq!(s.score_failure(net, 400, 1, "b", 0).await.unwrap(), 2);
            // A ban clears the network's failures: after it the score starts again.
            assert_eq!(
                s.claim_ban(&ban(net, 500, 900, "b")).await.unwrap(),
                BanClaim::Made
            );
            assert_eq!(s.score_failure(net, 1000, 1, "a", 0).await.unwrap(), 1);
        }
    }

    #[tokio::test]
    async fn the_first_node_to_ban_holds_the_ban() {
        for t in crate::testing::backends().await {
            let s = &t.store;
            let net = "198.51.100.9/32";
            assert_eq!(
                s.claim_ban(&ban(net, 1_000, 5_000, "a")).await.unwrap(),
                BanClaim::Made
            );
            // B crossed the threshold a moment later: A's ban is in force, B adopts it.
            match s.claim_ban(&ban(net, 1_100, 6_000, "b")).await.unwrap() {
                BanClaim::Held(held) => {
                    assert_eq!((held.node.as_str(), held.until_us), ("a", 5_000))
                }
                other => panic!("{}: {other:?}", t.name),
            }
            // Once that ban has ended, a new one is made.
            assert_eq!(
                s.claim_ban(&ban(net, 5_000, 9_000, "b")).await.unwrap(),
                BanClaim::Made
            );
            assert_eq!(s.ban(net).await.unwrap().unwrap().node, "b");
            // Its end is noted once, by whichever node asks first, and only once it ended.
            assert!(!s.note_ban_ended(net, 8_999).await.unwrap());
            assert!(s.note_ban_ended(net, 9_000).await.unwrap());
            assert!(!s.note_ban_ended(net, 9_500).await.unwrap());
        }
    }

    /// Nodes crossing the threshold at once: one ban is made, the others hold it.
    #[tokio::test]
    async fn of_nodes_claiming_at_once_one_makes_the_ban() {
        for t in crate::testing::backends().await {
            let net = "203.0.113.5/32";
            let claims = (0..6).map(|i| {
                let store = t.store.clone();
                tokio::spawn(async move {
                    store
                        .claim_ban(&ban(net, 1_000 + i, 9_000, &format!("n{i}")))
                        .await
                })
            });
            let mut made = 0;
            for claim in claims {
                made += usize::from(claim.await.unwrap().unwrap() == BanClaim::Made);
            }
            assert_eq!(made, 1, "{}", t.name);
            let versions: Vec<i64> = t
                .store
                .bans_changed(-1, 10)
                .await
                .unwrap()
                .iter()
                .map(|c| c.version)
                .collect();
            assert_eq!(versions.len(), 1);
        }
    }

    #[tokio::test]
    async fn every_change_and_every_lift_is_seen_after_the_last_version() {
        for t in crate::testing::backends().await {
            let s = &t.store;
            let (one, two) = ("192.0.2.1/32", "192.0.2.2/32");
            s.put_ban(&ban(one, 10, 1_000, "a")).await.unwrap();
            s.claim_ban(&ban(two, 20, 1_000, "b")).await.unwrap();
            let all = s.bans_changed(-1, 100).await.unwrap();
            assert_eq!(all.len(), 2, "{}", t.name);
            assert!(all[0].version < all[1].version && !all[1].lifted);
            let seen = all[1].version;
            assert!(s.bans_changed(seen, 100).await.unwrap().is_empty());

            // A lift is a change too: the tombstone names the network, its strikes cleared.
            assert!(s.remove_ban(one, 500).await.unwrap());
            assert!(!s.remove_ban(one, 600).await.unwrap());
            let changed = s.bans_changed(seen, 100).await.unwrap();
            assert_eq!(changed.len(), 1);
            assert!(
                changed[0].lifted && changed[0].ban.network == one && changed[0].ban.strikes == 0
            );
            assert_eq!(s.ban(one).await.unwrap(), None);
            let active: Vec<String> = s
                .active_bans(400)
                .await
                .unwrap()
                .into_iter()
                .map(|b| b.network)
                .collect();
            assert_eq!(active, [two]);
            assert_eq!(s.bans_since(0).await.unwrap().len(), 1);
            assert_eq!(s.bans_changed(seen, 1).await.unwrap().len(), 1);

            // Forgetting old rows keeps the newest, so versions never go back.
            assert_eq!(s.forget_bans(10_000).await.unwrap(), 1);
            let newest = changed[0].version;
            s.put_ban(&ban("192.0.2.3/32", 20_000, 30_000, "a"))
                .await
                .unwrap();
            let after = s.bans_changed(newest, 100).await.unwrap();
            assert_eq!(after.len(), 1);
            assert!(after[0].version > newest);
        }
    }
}
