//! Wharf's store: identities (accounts, groups, Manager administrators) and runtime state
//! (the numbered, hash-chained audit trail; bans) in SQLite, with PostgreSQL for clusters to come.
//!
//! Queries are runtime-checked sqlx queries with bound parameters only: no SQL is ever built
//! from input text. Lists (keys, groups, rules) are stored as JSON text so the schema stays
//! the same on every backend.
//!
//! This crate must never make policy decisions (who may log in, what a rule allows): it
//! stores and returns records; `wharf-auth` and `wharf-core` decide.

#![forbid(unsafe_code)]

mod audit;
mod bans;
mod dav_state;
mod handler_queue;
mod identities;
mod migrate;

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use audit::{AuditRecord, EventFilter, GENESIS, chain_hash, format_time};
pub use bans::BanRecord;
pub use handler_queue::{HandlerJob, JobState};
pub use identities::{AccountRecord, AdminRecord, GroupRecord};

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database said no.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored JSON column did not parse (the database was edited by hand?).
    #[error("corrupt stored value in {what}: {source}")]
    Corrupt {
        /// Which column.
        what: &'static str,
        /// Why.
        source: serde_json::Error,
    },
    /// The record to create exists already.
    #[error("{0} already exists")]
    Exists(String),
    /// The record to change does not exist.
    #[error("{0} does not exist")]
    Missing(String),
    /// The store URL is not one Wharf knows.
    #[error("unsupported store url {0:?}: use sqlite:PATH")]
    UnsupportedUrl(String),
}

/// The store handle. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and applies migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        let store = Store { pool };
        migrate::apply(&store.pool).await?;
        Ok(store)
    }

    /// Opens the store named by `url` (`sqlite:PATH`), relative paths from `base`.
    pub async fn open_url(url: &str, base: &Path) -> Result<Store, StoreError> {
        let Some(rest) = url.strip_prefix("sqlite:") else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        let rest = rest.trim_start_matches("//");
        let path = base.join(rest);
        Store::open_sqlite(&path).await
    }

    /// Validates a store URL without opening it.
    pub fn check_url(url: &str) -> Result<(), StoreError> {
        if url.starts_with("sqlite:") {
            Ok(())
        } else {
            Err(StoreError::UnsupportedUrl(url.to_owned()))
        }
    }

    /// Answers whether the store is reachable now: one round trip, nothing read.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, flushing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn now_us() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}
