//! Schema migrations, embedded in the binary and applied in order at open.
//!
//! Each backend has its own text of every migration (same numbers, same tables and columns;
//! `migrations/sqlite` and `migrations/postgres`). Each migration runs once, inside a
//! transaction, and its number is recorded. Several nodes starting at once against one
//! PostgreSQL take turns on an advisory lock, so a migration is never applied twice; SQLite
//! writers take turns on its write lock. Migrations are never edited after release; a change
//! is a new migration.

use sqlx::{Connection, PgPool, SqlitePool};

use crate::StoreError;

pub(crate) const SQLITE: &[(i64, &str)] = &[
    (1, include_str!("migrations/sqlite/0001_initial.sql")),
    (2, include_str!("migrations/sqlite/0002_bans.sql")),
    (
        3,
        include_str!("migrations/sqlite/0003_address_rules_expiry.sql"),
    ),
    (4, include_str!("migrations/sqlite/0004_second_factor.sql")),
    (5, include_str!("migrations/sqlite/0005_handler_queue.sql")),
    (6, include_str!("migrations/sqlite/0006_max_file_size.sql")),
    (7, include_str!("migrations/sqlite/0007_dav_state.sql")),
    (8, include_str!("migrations/sqlite/0008_nodes.sql")),
    (9, include_str!("migrations/sqlite/0009_audit_per_node.sql")),
    (10, include_str!("migrations/sqlite/0010_cluster_bans.sql")),
    (11, include_str!("migrations/sqlite/0011_web_sessions.sql")),
    (
        12,
        include_str!("migrations/sqlite/0012_handler_job_leases.sql"),
    ),
    (
        13,
        include_str!("migrations/sqlite/0013_events_by_node.sql"),
    ),
    (
        14,
        include_str!("migrations/sqlite/0014_admin_roles_tokens.sql"),
    ),
    (15, include_str!("migrations/sqlite/0015_event_search.sql")),
    (
        16,
        include_str!("migrations/sqlite/0016_handler_jobs_by_state.sql"),
    ),
    (
        17,
        include_str!("migrations/sqlite/0017_cluster_configuration.sql"),
    ),
    (
        18,
        include_str!("migrations/sqlite/0018_audit_checkpoints.sql"),
    ),
    (19, include_str!("migrations/sqlite/0019_transfers.sql")),
    (20, include_str!("migrations/sqlite/0020_email.sql")),
];

pub(crate) const POSTGRES: &[(i64, &str)] = &[
    (1, include_str!("migrations/postgres/0001_initial.sql")),
    (2, include_str!("migrations/postgres/0002_bans.sql")),
    (
        3,
        include_str!("migrations/postgres/0003_address_rules_expiry.sql"),
    ),
    (
        4,
        include_str!("migrations/postgres/0004_second_factor.sql"),
    ),
    (
        5,
        include_str!("migrations/postgres/0005_handler_queue.sql"),
    ),
    (
        6,
        include_str!("migrations/postgres/0006_max_file_size.sql"),
    ),
    (7, include_str!("migrations/postgres/0007_dav_state.sql")),
    (8, include_str!("migrations/postgres/0008_nodes.sql")),
    (
        9,
        include_str!("migrations/postgres/0009_audit_per_node.sql"),
    ),
    (
        10,
        include_str!("migrations/postgres/0010_cluster_bans.sql"),
    ),
    (
        11,
        include_str!("migrations/postgres/0011_web_sessions.sql"),
    ),
    (
        12,
        include_str!("migrations/postgres/0012_handler_job_leases.sql"),
    ),
    (
        13,
        include_str!("migrations/postgres/0013_events_by_node.sql"),
    ),
    (
        14,
        include_str!("migrations/postgres/0014_admin_roles_tokens.sql"),
    ),
    (
        15,
        include_str!("migrations/postgres/0015_event_search.sql"),
    ),
    (
        16,
        include_str!("migrations/postgres/0016_handler_jobs_by_state.sql"),
    ),
    (
        17,
        include_str!("migrations/postgres/0017_cluster_configuration.sql"),
    ),
    (
        18,
        include_str!("migrations/postgres/0018_audit_checkpoints.sql"),
    ),
    (19, include_str!("migrations/postgres/0019_transfers.sql")),
    (20, include_str!("migrations/postgres/0020_email.sql")),
];

/// The advisory lock key every Wharf node takes while migrating ("wharf" in ASCII).
const MIGRATION_LOCK: i64 = 0x0077_6861_7266;

pub(crate) async fn apply_sqlite(pool: &SqlitePool) -> Result<(), StoreError> {
    // Every step on this one connection. Taking a new one from the pool per migration would
    // open several while the skipped ones' transactions roll back, each reading the schema
    // as it was; one that read a table before a migration added columns to it prepares
    // `SELECT *` with the old columns, and sqlx's SQLite worker panics reading the row once
    // SQLite re-prepares the statement with the new ones. Connections the pool opens after
    // this read the migrated schema.
    let mut conn = pool.acquire().await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS wharf_schema (version INTEGER PRIMARY KEY, applied_us INTEGER NOT NULL)",
    )
    .execute(&mut *conn)
    .await?;
    for (version, sql) in SQLITE {
        // IMMEDIATE: a second process opening the same file waits here, then sees the
        // version recorded and skips it.
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let done: Option<i64> =
            sqlx::query_scalar("SELECT version FROM wharf_schema WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
        if done.is_some() {
            continue;
        }
        // Migration text is compiled into the binary, never built from input.
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO wharf_schema (version, applied_us) VALUES ($1, $2)")
            .bind(version)
            .bind(crate::now_us())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(())
}

pub(crate) async fn apply_postgres(pool: &PgPool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    // A session lock, held on this one connection across every migration's transaction;
    // released below, or by PostgreSQL if this process dies first.
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let applied = apply_postgres_locked(&mut conn).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await;
    applied?;
    unlocked?;
    Ok(())
}

async fn apply_postgres_locked(conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS wharf_schema (version BIGINT PRIMARY KEY, applied_us BIGINT NOT NULL)",
    )
    .execute(&mut *conn)
    .await?;
    for (version, sql) in POSTGRES {
        let mut tx = conn.begin().await?;
        let done: Option<i64> =
            sqlx::query_scalar("SELECT version FROM wharf_schema WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
        if done.is_some() {
            continue;
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO wharf_schema (version, applied_us) VALUES ($1, $2)")
            .bind(version)
            .bind(crate::now_us())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_know_the_same_migrations() {
        let numbers = |list: &[(i64, &str)]| list.iter().map(|(v, _)| *v).collect::<Vec<_>>();
        assert_eq!(numbers(SQLITE), numbers(POSTGRES));
    }

    /// Nodes starting at once against one empty database: each migration applies once and
    /// every node opens the store.
    #[tokio::test]
    async fn nodes_starting_at_once_migrate_once() {
        if std::env::var_os("WHARF_TEST_NO_POSTGRES").is_some() {
            eprintln!("WHARF_TEST_NO_POSTGRES is set: this test needs PostgreSQL; skipped");
            return;
        }
        let url = crate::testing::new_database().await;
        let opens = (0..6).map(|_| {
            let connect = crate::Connect {
                url: url.clone(),
                ..crate::Connect::default()
            };
            tokio::spawn(async move { crate::Store::open(&connect).await.map(|_| ()) })
        });
        for open in opens.collect::<Vec<_>>() {
            open.await.unwrap().unwrap();
        }
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM wharf_schema ORDER BY version")
                .fetch_all(&pool)
                .await
                .unwrap();
        let known: Vec<i64> = POSTGRES.iter().map(|(v, _)| *v).collect();
        assert_eq!(applied, known);
    }
}
