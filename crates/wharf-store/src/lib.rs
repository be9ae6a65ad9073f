//! Wharf's store: identities (accounts and groups, `identities.rs`; Manager administrators
//! with their roles, second factor and API tokens, `admins.rs`), the configuration a cluster
//! shares (`cluster_configuration.rs`) and runtime state (the
//! numbered, hash-chained audit trail; bans; handler jobs; WebDAV locks; client transfers'
//! leases, runs and per-file progress) in SQLite on one
//! machine, or in PostgreSQL shared by every node of a cluster: one set of operations over
//! both backends (`backend.rs`).
//!
//! Queries are runtime-checked sqlx queries with bound parameters only: no SQL is ever built
//! from input text. Lists (keys, groups, rules) are stored as JSON text so the schema stays
//! the same on every backend.
//!
//! This crate must never make policy decisions (who may log in, what a rule allows): it
//! stores and returns records; `wharf-auth` and `wharf-core` decide.

#![forbid(unsafe_code)]

mod admins;
mod audit;
mod audit_archive;
mod backend;
mod bans;
mod cluster_configuration;
mod connect;
mod copy;
mod dav_state;
mod handler_queue;
mod identities;
mod migrate;
mod nodes;
#[cfg(test)]
mod testing;
mod transfers;
mod web_sessions;

use std::path::Path;

pub use admins::{AdminRecord, AdminTokenRecord, AdminWrite};
pub use audit::{
    AuditRecord, ChainReport, EventFilter, GENESIS, TimeRange, chain_hash, format_time,
};
pub use audit_archive::{ArchiveRefusal, Checkpoint};
pub use bans::{BanChange, BanClaim, BanRecord};
pub use cluster_configuration::{ClusterRevision, Publish};
pub use connect::{Backend, Connect, check_url, redacted};
pub use handler_queue::{HandlerJob, JobState};
pub use identities::{AccountRecord, GroupRecord};
pub use nodes::{Claim, NodeRecord, NodeService, NodeState};
pub use transfers::{FileState, FileStep, LeaseView, TransferFile, TransferLease, TransferRun};

use backend::{Pool, on_pool};

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
    #[error("unsupported store url {0:?}: use sqlite:PATH or postgres://USER@HOST:PORT/DATABASE")]
    UnsupportedUrl(String),
    /// The store URL names a known backend but cannot be used as written.
    #[error("store url {0}")]
    BadUrl(String),
    /// Two stores do not fit together (a copy between different versions or backends).
    #[error("{0}")]
    Mismatch(String),
    /// The PostgreSQL server could not be reached or refused the connection.
    #[error("cannot reach the PostgreSQL store at {place}: {why}")]
    Unreachable {
        /// `host:port`.
        place: String,
        /// What failed (never the password).
        why: String,
    },
}

impl StoreError {
    /// Whether the failure is the store being out of reach (down, restarting, no connection
    /// in time) rather than an answer it gave: the caller may try again later.
    pub fn is_unreachable(&self) -> bool {
        match self {
            StoreError::Unreachable { .. } => true,
            // PostgreSQL's class 08 (connection exception) and 57P (the server shutting
            // down or restarting under a connection).
            StoreError::Database(sqlx::Error::Database(db)) => db
                .code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
            StoreError::Database(e) => matches!(
                e,
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_)
                    | sqlx::Error::WorkerCrashed
            ),
            _ => false,
        }
    }
}

/// The store handle. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and applies migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        let pool = connect::open_sqlite(path).await?;
        migrate::apply_sqlite(&pool).await?;
        Ok(Store {
            pool: Pool::Sqlite(pool),
        })
    }

    /// Opens the store `connect` names and applies migrations.
    pub async fn open(connect: &Connect) -> Result<Store, StoreError> {
        let pool = connect::open(connect).await?;
        match &pool {
            Pool::Sqlite(p) => migrate::apply_sqlite(p).await?,
            Pool::Postgres(p) => migrate::apply_postgres(p).await?,
        }
        Ok(Store { pool })
    }

    /// Opens the store named by `url` with no password, relative paths from `base`.
    pub async fn open_url(url: &str, base: &Path) -> Result<Store, StoreError> {
        Store::open(&Connect {
            url: url.to_owned(),
            base: base.to_owned(),
            ..Connect::default()
        })
        .await
    }

    /// Which backend this store is.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Answers whether the store is reachable now: one round trip, nothing read.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Closes the pool, flushing SQLite's WAL.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await);
    }
}

fn now_us() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}
