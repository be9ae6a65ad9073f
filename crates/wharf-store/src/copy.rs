//! Copying a whole SQLite store into an empty PostgreSQL one (`wharf store copy`).
//!
//! Every table of the source is copied row for row, columns as they are: accounts, groups,
//! administrators, second-factor secrets, bans, handler jobs, WebDAV state and the audit trail
//! with its sequence numbers and hashes, so the copy's chains verify exactly as the source's
//! do. Both stores are migrated by the same binary first, so their tables and columns match;
//! a difference stops the copy before anything is written. The copy is one PostgreSQL
//! transaction: a failure leaves the destination as empty as it was.
//!
//! Table and column names come from the source database's own schema, never from input;
//! they are quoted as identifiers all the same. Values are bound, never spliced.

use std::collections::BTreeMap;

use sqlx::{Column as _, Row, ValueRef as _};

use crate::backend::Pool;
use crate::{Store, StoreError};

/// Rows read and written per statement.
const BATCH: i64 = 500;

/// How one column is read and bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
    Bytes,
}

fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn mismatch(what: String) -> StoreError {
    StoreError::Mismatch(what)
}

impl Store {
    /// Copies every row of this (SQLite) store into `to` (PostgreSQL, empty); returns the
    /// rows copied per table.
    pub async fn copy_into(&self, to: &Store) -> Result<Vec<(String, u64)>, StoreError> {
        let (Pool::Sqlite(from), Pool::Postgres(dest)) = (&self.pool, &to.pool) else {
            return Err(mismatch(
                "a copy goes from a SQLite store into a PostgreSQL one".to_owned(),
            ));
        };
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             AND name <> 'wharf_schema' ORDER BY name",
        )
        .fetch_all(from)
        .await?;
        let mut layouts = Vec::with_capacity(tables.len());
        for table in &tables {
            layouts.push((table.clone(), layout(from, dest, table).await?));
        }
        let mut tx = dest.begin().await?;
        for (table, _) in &layouts {
            let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", quoted(table));
            let any: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut *tx)
                .await?;
            if any {
                return Err(mismatch(format!(
                    "the destination's table {table} is not empty: copy only into a new database"
                )));
            }
        }
        let mut counts = Vec::with_capacity(layouts.len());
        for (table, columns) in &layouts {
            let copied = copy_table(from, &mut tx, table, columns).await?;
            counts.push((table.clone(), copied));
        }
        restart_identities(&mut tx).await?;
        tx.commit().await?;
        Ok(counts)
    }
}

/// The table's columns in the source, with how the destination types them.
async fn layout(
    from: &sqlx::SqlitePool,
    dest: &sqlx::PgPool,
    table: &str,
) -> Result<Vec<(String, Kind)>, StoreError> {
    let sql = format!(
        "SELECT name FROM pragma_table_info({})",
        quote_literal(table)
    );
    let source: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_all(from)
        .await?;
    let rows = sqlx::query(
        "SELECT column_name, data_type FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1",
    )
    .bind(table)
    .fetch_all(dest)
    .await?;
    let mut types = BTreeMap::new();
    for row in &rows {
        let name: String = row.try_get("column_name")?;
        let data_type: String = row.try_get("data_type")?;
        types.insert(name, data_type);
    }
    if types.is_empty() {
        return Err(mismatch(format!(
            "the destination has no table {table}: are both stores at the same version?"
        )));
    }
    if types.len() != source.len() {
        return Err(mismatch(format!(
            "table {table} has {} columns in the source and {} in the destination",
            source.len(),
            types.len()
        )));
    }
    source
        .into_iter()
        .map(|column| {
            let kind = match types.get(&column).map(String::as_str) {
                Some("bigint" | "integer" | "smallint") => Kind::Int,
                Some("text" | "character varying") => Kind::Text,
                Some("bytea") => Kind::Bytes,
                Some(other) => {
                    return Err(mismatch(format!(
                        "column {table}.{column} has type {other} in the destination, which a copy does not know"
                    )));
                }
                None => {
                    return Err(mismatch(format!(
                        "column {table}.{column} is missing from the destination"
                    )));
                }
            };
            Ok((column, kind))
        })
        .collect()
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

async fn copy_table(
    from: &sqlx::SqlitePool,
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    table: &str,
    columns: &[(String, Kind)],
) -> Result<u64, StoreError> {
    let names = columns
        .iter()
        .map(|(c, _)| quoted(c))
        .collect::<Vec<_>>()
        .join(", ");
    let mut copied = 0u64;
    let mut after = i64::MIN;
    let select = format!(
        "SELECT rowid, {names} FROM {} WHERE rowid > $1 ORDER BY rowid LIMIT {BATCH}",
        quoted(table)
    );
    loop {
        // rowid order is insertion order for every table here (none is WITHOUT ROWID), and
        // paging by it reads each row once however long the table is.
        let rows = sqlx::query(sqlx::AssertSqlSafe(select.clone()))
            .bind(after)
            .fetch_all(from)
            .await?;
        if rows.is_empty() {
            return Ok(copied);
        }
        // One statement per batch: BATCH rows of at most a few dozen columns stay far below
        // PostgreSQL's 65,535 parameters.
        let width = columns.len();
        let tuples = (0..rows.len())
            .map(|r| {
                let marks = (1..=width)
                    .map(|c| format!("${}", r * width + c))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("({marks})")
            })
            .collect::<Vec<_>>()
            .join(", ");
        let insert = format!("INSERT INTO {} ({names}) VALUES {tuples}", quoted(table));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(insert));
        for row in &rows {
            after = row.try_get::<i64, _>(0)?;
            for (position, (column, kind)) in columns.iter().enumerate() {
                let index = position + 1;
                debug_assert_eq!(row.columns()[index].name(), column);
                let null = row.try_get_raw(index)?.is_null();
                query = match (kind, null) {
                    (Kind::Int, true) => query.bind(None::<i64>),
                    (Kind::Text, true) => query.bind(None::<String>),
                    (Kind::Bytes, true) => query.bind(None::<Vec<u8>>),
                    (Kind::Int, false) => query.bind(row.try_get::<i64, _>(index)?),
                    (Kind::Text, false) => query.bind(row.try_get::<String, _>(index)?),
                    (Kind::Bytes, false) => query.bind(row.try_get::<Vec<u8>, _>(index)?),
                };
            }
        }
        query.execute(&mut **tx).await?;
        copied += rows.len() as u64;
    }
}

/// Moves every identity column's counter past the copied ids, so the next row made on
/// PostgreSQL does not collide with a copied one.
async fn restart_identities(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
) -> Result<(), StoreError> {
    let rows = sqlx::query(
        "SELECT table_name, column_name FROM information_schema.columns \
         WHERE table_schema = current_schema() AND is_identity = 'YES'",
    )
    .fetch_all(&mut **tx)
    .await?;
    for row in &rows {
        let table: String = row.try_get("table_name")?;
        let column: String = row.try_get("column_name")?;
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence({}, {}), COALESCE(MAX({}), 0) + 1, false) FROM {}",
            quote_literal(&quoted(&table)),
            quote_literal(&column),
            quoted(&column),
            quoted(&table)
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::new_database;
    use crate::{AccountRecord, BanRecord, Connect, GroupRecord};
    use wharf_core::{Event, EventKind};

    #[tokio::test]
    async fn a_sqlite_store_arrives_whole_and_its_chain_verifies() {
        if std::env::var_os("WHARF_TEST_NO_POSTGRES").is_some() {
            eprintln!("WHARF_TEST_NO_POSTGRES is set: the copy test needs PostgreSQL; skipped");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let source = Store::open_sqlite(&dir.path().join("s.db")).await.unwrap();
        source
            .create_group(&GroupRecord {
                name: "users".into(),
                home_template: Some("/srv/${USER}".into()),
                create_home: true,
                rules: Vec::new(),
                protocols: Vec::new(),
                upload_mode: None,
                addresses: Default::default(),
                require_second_factor: false,
                max_file_size: Some(10),
            })
            .await
            .unwrap();
        let account = AccountRecord {
            name: wharf_types::AccountName::new("alice").unwrap(),
            password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
            home: None,
            enabled: true,
            groups: vec!["users".into()],
            keys: Vec::new(),
            rules: Vec::new(),
            addresses: Default::default(),
            expires_us: Some(42),
            second_factor: Some("{\"secret\":\"x\"}".into()),
            require_second_factor: true,
            max_file_size: None,
        };
        source.create_account(&account).await.unwrap();
        source
            .put_ban(&BanRecord {
                network: "192.0.2.7/32".into(),
                banned_us: 1,
                until_us: i64::MAX,
                strikes: 2,
                reason: "failures".into(),
                node: "n1".into(),
            })
            .await
            .unwrap();
        let events: Vec<Event> = (0..1200)
            .map(|i| Event::new(EventKind::FileDeleted).path(format!("/f{i}")))
            .collect();
        source.append_events("n1", &events).await.unwrap();
        source
            .queue_handler_jobs("n1", &[("h".into(), 5, 0)], 5)
            .await
            .unwrap();

        let dest = Store::open(&Connect {
            url: new_database().await,
            ..Connect::default()
        })
        .await
        .unwrap();
        let counts: BTreeMap<String, u64> =
            source.copy_into(&dest).await.unwrap().into_iter().collect();
        assert_eq!(counts["events"], 1200);
        assert_eq!(counts["accounts"], 1);
        assert_eq!(dest.account("alice").await.unwrap().unwrap(), account);
        assert_eq!(dest.active_bans(0).await.unwrap().len(), 1);
        assert_eq!(
            dest.verify_chain().await.unwrap(),
            source.verify_chain().await.unwrap()
        );
        assert_eq!(
            dest.event_hash(1200).await.unwrap(),
            source.event_hash(1200).await.unwrap()
        );
        // Ids made after the copy follow the copied ones.
        dest.queue_handler_jobs("n1", &[("h".into(), 6, 0)], 6)
            .await
            .unwrap();
        let ids: Vec<i64> = dest
            .handler_jobs(None, 10)
            .await
            .unwrap()
            .iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(ids, [2, 1]);
        // A second copy into the same database is refused, and changes nothing.
        let again = source.copy_into(&dest).await.unwrap_err();
        assert!(again.to_string().contains("not empty"), "{again}");
        assert_eq!(dest.handler_jobs(None, 10).await.unwrap().len(), 2);
    }
}
