//! The two backends behind one set of store operations.
//!
//! Every operation is written once, as a body that [`on_pool!`] compiles twice: against the
//! SQLite pool and against the PostgreSQL pool. The SQL text is shared: both engines take
//! `$N` placeholders, `ON CONFLICT … DO UPDATE`, `RETURNING` and `substr`/`length`; where
//! they differ (a writer's lock) [`Backing`] does it each backend's way. Every
//! integer column is a 64-bit integer on both (`INTEGER` in SQLite, `BIGINT` in PostgreSQL)
//! so one Rust type reads and writes it.
//!
//! This module must never hold SQL of a store operation: that stays in the module owning
//! the table.

use std::future::Future;

use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Postgres, Row, Sqlite, Transaction};

/// The pool of one backend.
#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the store's pool, whichever backend it is.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::backend::Pool::Sqlite($pool) => $body,
            $crate::backend::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// What differs between the backends, besides the pool's type.
pub(crate) trait Backing {
    /// The database type.
    type Db: sqlx::Database;

    /// Starts a transaction that writes `table`, holding its writer's lock from the start,
    /// so that a read-then-write inside it cannot race with another writer (on another
    /// node, with PostgreSQL). Readers are never blocked.
    fn begin_write(
        &self,
        table: &'static str,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Db>, sqlx::Error>> + Send;

    /// Starts a transaction holding `node`'s audit chain lock: on PostgreSQL an advisory
    /// lock of that chain alone (other nodes append meanwhile), on SQLite the one writer.
    fn begin_chain(
        &self,
        node: &str,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Db>, sqlx::Error>> + Send;
}

impl Backing for SqlitePool {
    type Db = Sqlite;

    async fn begin_write(
        &self,
        _table: &'static str,
    ) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        // IMMEDIATE takes SQLite's one write lock before the first read.
        self.begin_with("BEGIN IMMEDIATE").await
    }

    async fn begin_chain(&self, _node: &str) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.begin_write("events").await
    }
}

impl Backing for PgPool {
    type Db = Postgres;

    async fn begin_write(
        &self,
        table: &'static str,
    ) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut tx = self.begin().await?;
        // SHARE ROW EXCLUSIVE conflicts with itself and with every write, not with reads:
        // one writer of the table at a time, cluster-wide, until the transaction ends.
        let lock = format!("LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE");
        // `table` is one of the store's own table names, a compile-time constant.
        sqlx::query(sqlx::AssertSqlSafe(lock))
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    async fn begin_chain(&self, node: &str) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(crate::audit::chain_lock_key(node))
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}

/// Reading columns the same way from either backend's rows.
pub(crate) trait Fetch {
    fn int(&self, column: &str) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error>;
    fn text(&self, column: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, sqlx::Error>;
}

macro_rules! fetch_for {
    ($row:ty) => {
        impl Fetch for $row {
            fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
                self.try_get(column)
            }
            fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
                self.try_get(column)
            }
            fn text(&self, column: &str) -> Result<String, sqlx::Error> {
                self.try_get(column)
            }
            fn opt_text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
                self.try_get(column)
            }
        }
    };
}
fetch_for!(SqliteRow);
fetch_for!(PgRow);
