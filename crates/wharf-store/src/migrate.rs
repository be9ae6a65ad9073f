//! Schema migrations, embedded in the binary and applied in order at open.
//!
//! Each migration runs once, inside a transaction, and its number is recorded. Migrations
//! are never edited after release; a change is a new migration.

use sqlx::SqlitePool;

use crate::StoreError;

const MIGRATIONS: &[(i64, &str)] = &[
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
];

pub(crate) async fn apply(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS wharf_schema (version INTEGER PRIMARY KEY, applied_us INTEGER NOT NULL)",
    )
    .execute(pool)
    .await?;
    for (version, sql) in MIGRATIONS {
        let mut tx = pool.begin().await?;
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
