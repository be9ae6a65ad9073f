//! Bans of client networks, shared by every node that uses the store.
//!
//! A row outlives its ban: `strikes` counts how often the network was banned, so a repeat
//! offender's next ban is longer. Rows are forgotten some time after their ban ends
//! ([`Store::forget_bans`]) or when an administrator lifts them ([`Store::remove_ban`]).

use crate::backend::{Fetch, on_pool};
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

impl Store {
    /// Records a ban, replacing the network's earlier row.
    pub async fn put_ban(&self, ban: &BanRecord) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO bans (network, banned_us, until_us, strikes, reason, node)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (network) DO UPDATE SET banned_us = excluded.banned_us,
                   until_us = excluded.until_us, strikes = excluded.strikes,
                   reason = excluded.reason, node = excluded.node",
            )
            .bind(&ban.network)
            .bind(ban.banned_us)
            .bind(ban.until_us)
            .bind(i64::from(ban.strikes))
            .bind(&ban.reason)
            .bind(&ban.node)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The network's row, banned now or not.
    pub async fn ban(&self, network: &str) -> Result<Option<BanRecord>, StoreError> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT * FROM bans WHERE network = $1")
                .bind(network)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(record).transpose()
        })
    }

    /// Bans in force at `now_us`, latest first.
    pub async fn active_bans(&self, now_us: i64) -> Result<Vec<BanRecord>, StoreError> {
        on_pool!(self, pool => {
            let rows = sqlx::query("SELECT * FROM bans WHERE until_us > $1 ORDER BY banned_us DESC")
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
            let rows = sqlx::query("SELECT * FROM bans WHERE until_us > $1")
                .bind(after_us)
                .fetch_all(pool)
                .await?;
            rows.iter().map(record).collect()
        })
    }

    /// Lifts a ban and forgets the network's strikes; false when there was no row.
    pub async fn remove_ban(&self, network: &str) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let done = sqlx::query("DELETE FROM bans WHERE network = $1")
                .bind(network)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Forgets rows whose ban ended before `before_us`; returns how many.
    pub async fn forget_bans(&self, before_us: i64) -> Result<u64, StoreError> {
        on_pool!(self, pool => {
            let done = sqlx::query("DELETE FROM bans WHERE until_us < $1")
                .bind(before_us)
                .execute(pool)
                .await?;
            Ok(done.rows_affected())
        })
    }
}
