//! Copying a whole store between backends: a SQLite store into an empty PostgreSQL one
//! (`wharf store copy`, a restore into PostgreSQL), and any store into a new SQLite file as a
//! consistent snapshot (`wharf backup`).
//!
//! Every table is copied row for row, columns as they are: accounts, groups, administrators
//! and their API tokens, second-factor secrets, bans, handler jobs, WebDAV state and the
//! audit trail with its sequence numbers and hashes, so the copy's chains verify exactly as
//! the source's do. Both stores are migrated by the same binary first, so their tables and
//! columns match; a difference stops the copy before anything is written. Each copy writes in
//! one transaction: a failure leaves the destination as empty as it was.
//!
//! A snapshot reads PostgreSQL in one `REPEATABLE READ` transaction, so every table is seen
//! at the same instant while the cluster goes on writing; a SQLite store is snapshot by
//! `VACUUM INTO`, which reads one consistent state of the file.
//!
//! Table and column names come from the databases' own schema, never from input; they are
//! quoted as identifiers all the same. Values are bound, never spliced.

use std::collections::BTreeMap;
use std::path::Path;

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

/// One column's value in transit.
#[derive(Debug, Clone)]
enum Value {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

type Columns = [(String, Kind)];

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
        let layouts = layouts(from, dest).await?;
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
            let copied = sqlite_to_postgres(from, &mut tx, table, columns).await?;
            counts.push((table.clone(), copied));
        }
        restart_identities(&mut tx).await?;
        tx.commit().await?;
        Ok(counts)
    }

    /// Writes a consistent copy of the whole store, as it is at one instant, into a new
    /// SQLite file at `path` (which must not exist). Safe while nodes keep writing.
    pub async fn snapshot_into(&self, path: &Path) -> Result<(), StoreError> {
        if path.exists() {
            return Err(mismatch(format!(
                "{} exists already: a snapshot goes into a new file",
                path.display()
            )));
        }
        match &self.pool {
            Pool::Sqlite(pool) => {
                let target = path
                    .to_str()
                    .ok_or_else(|| mismatch(format!("{} is not a UTF-8 path", path.display())))?;
                sqlx::query("VACUUM INTO ?1")
                    .bind(target)
                    .execute(pool)
                    .await?;
                Ok(())
            }
            Pool::Postgres(from) => {
                let dest = crate::connect::open_sqlite(path).await?;
                crate::migrate::apply_sqlite(&dest).await?;
                let copied = postgres_to_sqlite(from, &dest).await;
                dest.close().await;
                copied
            }
        }
    }
}

/// Every table of the SQLite side but the migration record, with its columns.
async fn layouts(
    sqlite: &sqlx::SqlitePool,
    postgres: &sqlx::PgPool,
) -> Result<Vec<(String, Vec<(String, Kind)>)>, StoreError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name <> 'wharf_schema' ORDER BY name",
    )
    .fetch_all(sqlite)
    .await?;
    let mut layouts = Vec::with_capacity(tables.len());
    for table in tables {
        let columns = layout(sqlite, postgres, &table).await?;
        layouts.push((table, columns));
    }
    Ok(layouts)
}

/// The table's columns on the SQLite side, typed as PostgreSQL types them.
async fn layout(
    sqlite: &sqlx::SqlitePool,
    postgres: &sqlx::PgPool,
    table: &str,
) -> Result<Vec<(String, Kind)>, StoreError> {
    let sql = format!(
        "SELECT name FROM pragma_table_info({})",
        quote_literal(table)
    );
    let source: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_all(sqlite)
        .await?;
    let rows = sqlx::query(
        "SELECT column_name, data_type FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1",
    )
    .bind(table)
    .fetch_all(postgres)
    .await?;
    let mut types = BTreeMap::new();
    for row in &rows {
        let name: String = row.try_get("column_name")?;
        let data_type: String = row.try_get("data_type")?;
        types.insert(name, data_type);
    }
    if types.is_empty() {
        return Err(mismatch(format!(
            "the PostgreSQL store has no table {table}: are both stores at the same version?"
        )));
    }
    if types.len() != source.len() {
        return Err(mismatch(format!(
            "table {table} has {} columns in SQLite and {} in PostgreSQL",
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
                        "column {table}.{column} has type {other} in PostgreSQL, which a copy does not know"
                    )));
                }
                None => {
                    return Err(mismatch(format!(
                        "column {table}.{column} is missing from the PostgreSQL store"
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

fn column_list(columns: &Columns) -> String {
    columns
        .iter()
        .map(|(c, _)| quoted(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `INSERT INTO table (columns) VALUES (…), (…)` for `rows` rows, each mark made by `mark`
/// from its 1-based position.
fn insert_sql(table: &str, columns: &Columns, rows: usize, mark: fn(usize) -> String) -> String {
    let width = columns.len();
    let tuples = (0..rows)
        .map(|r| {
            let marks = (1..=width)
                .map(|c| mark(r * width + c))
                .collect::<Vec<_>>()
                .join(", ");
            format!("({marks})")
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {} ({}) VALUES {tuples}",
        quoted(table),
        column_list(columns)
    )
}

/// Reads `columns` from `row`, the first at `first`.
fn values<'r, R>(row: &'r R, columns: &Columns, first: usize) -> Result<Vec<Value>, StoreError>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let mut out = Vec::with_capacity(columns.len());
    for (position, (column, kind)) in columns.iter().enumerate() {
        let index = first + position;
        debug_assert_eq!(row.columns()[index].name(), column);
        if row.try_get_raw(index)?.is_null() {
            out.push(Value::Null);
            continue;
        }
        out.push(match kind {
            Kind::Int => Value::Int(row.try_get(index)?),
            Kind::Text => Value::Text(row.try_get(index)?),
            Kind::Bytes => Value::Bytes(row.try_get(index)?),
        });
    }
    Ok(out)
}

/// Binds every value of `rows` to `$query`, in order, typed by `$columns`.
macro_rules! bind_rows {
    ($query:ident, $rows:expr, $columns:expr) => {
        for row in $rows {
            for (value, (_, kind)) in row.into_iter().zip($columns.iter()) {
                $query = match (value, kind) {
                    (Value::Null, Kind::Int) => $query.bind(None::<i64>),
                    (Value::Null, Kind::Text) => $query.bind(None::<String>),
                    (Value::Null, Kind::Bytes) => $query.bind(None::<Vec<u8>>),
                    (Value::Int(v), _) => $query.bind(v),
                    (Value::Text(v), _) => $query.bind(v),
                    (Value::Bytes(v), _) => $query.bind(v),
                };
            }
        }
    };
}

async fn sqlite_to_postgres(
    from: &sqlx::SqlitePool,
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    table: &str,
    columns: &Columns,
) -> Result<u64, StoreError> {
    let mut copied = 0u64;
    let mut after = i64::MIN;
    let select = format!(
        "SELECT rowid, {} FROM {} WHERE rowid > $1 ORDER BY rowid LIMIT {BATCH}",
        column_list(columns),
        quoted(table)
    );
    loop {
        // rowid order is insertion order for every table here (none is WITHOUT ROWID), and
        // paging by it reads each row once however long the table is.
        let rows = sqlx::query(sqlx::AssertSqlSafe(select.clone()))
            .bind(after)
            .fetch_all(from)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(copied);
        };
        after = last.try_get::<i64, _>(0)?;
        let batch = rows
            .iter()
            .map(|row| values(row, columns, 1))
            .collect::<Result<Vec<_>, _>>()?;
        // One statement per batch: BATCH rows of at most a few dozen columns stay far below
        // PostgreSQL's 65,535 parameters.
        let insert = insert_sql(table, columns, batch.len(), |n| format!("${n}"));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(insert));
        bind_rows!(query, batch, columns);
        query.execute(&mut **tx).await?;
        copied += rows.len() as u64;
    }
}

/// Copies every table of `from` into the new, empty SQLite store `dest`, reading one
/// snapshot of PostgreSQL.
async fn postgres_to_sqlite(
    from: &sqlx::PgPool,
    dest: &sqlx::SqlitePool,
) -> Result<(), StoreError> {
    let layouts = layouts(dest, from).await?;
    let mut read = from.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *read)
        .await?;
    let mut write = dest.begin().await?;
    for (number, (table, columns)) in layouts.iter().enumerate() {
        // One cursor name per table, and statements not kept prepared: a FETCH prepared for
        // one table's cursor would describe another's rows with the first one's columns.
        let cursor = format!("wharf_snapshot_{number}");
        let declare = format!(
            "DECLARE {cursor} NO SCROLL CURSOR FOR SELECT {} FROM {}",
            column_list(columns),
            quoted(table)
        );
        sqlx::query(sqlx::AssertSqlSafe(declare))
            .persistent(false)
            .execute(&mut *read)
            .await?;
        let fetch = format!("FETCH {BATCH} FROM {cursor}");
        loop {
            let rows = sqlx::query(sqlx::AssertSqlSafe(fetch.clone()))
                .persistent(false)
                .fetch_all(&mut *read)
                .await?;
            if rows.is_empty() {
                break;
            }
            let batch = rows
                .iter()
                .map(|row| values(row, columns, 0))
                .collect::<Result<Vec<_>, _>>()?;
            // SQLite allows 32,766 parameters a statement: BATCH rows of a few dozen
            // columns stay below.
            let insert = insert_sql(table, columns, batch.len(), |n| format!("?{n}"));
            let mut query = sqlx::query(sqlx::AssertSqlSafe(insert));
            bind_rows!(query, batch, columns);
            query.execute(&mut *write).await?;
        }
        sqlx::query(sqlx::AssertSqlSafe(format!("CLOSE {cursor}")))
            .persistent(false)
            .execute(&mut *read)
            .await?;
    }
    write.commit().await?;
    read.commit().await?;
    Ok(())
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

    /// Fills `source` with one of everything; returns the account made.
    async fn populate(source: &Store) -> AccountRecord {
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
                email: Some("users@example.org".into()),
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
            email: Some("alice@example.org".into()),
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

        account
    }

    #[tokio::test]
    async fn a_sqlite_store_arrives_whole_and_its_chain_verifies() {
        if std::env::var_os("WHARF_TEST_NO_POSTGRES").is_some() {
            eprintln!("WHARF_TEST_NO_POSTGRES is set: the copy test needs PostgreSQL; skipped");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let source = Store::open_sqlite(&dir.path().join("s.db")).await.unwrap();
        let account = populate(&source).await;

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

    #[tokio::test]
    async fn a_snapshot_holds_every_table_and_verifies() {
        for t in crate::testing::backends().await {
            let account = populate(&t.store).await;
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("snapshot.db");
            t.store.snapshot_into(&path).await.unwrap();
            let copy = Store::open_sqlite(&path).await.unwrap();
            assert_eq!(
                copy.account("alice").await.unwrap().unwrap(),
                account,
                "{}",
                t.name
            );
            assert_eq!(copy.active_bans(0).await.unwrap().len(), 1, "{}", t.name);
            assert_eq!(
                copy.handler_jobs(None, 10).await.unwrap().len(),
                1,
                "{}",
                t.name
            );
            assert_eq!(
                copy.verify_chain().await.unwrap(),
                t.store.verify_chain().await.unwrap(),
                "{}",
                t.name
            );
            assert_eq!(
                copy.event_hash(1200).await.unwrap(),
                t.store.event_hash(1200).await.unwrap(),
                "{}",
                t.name
            );
            let again = t.store.snapshot_into(&path).await.unwrap_err();
            assert!(again.to_string().contains("exists already"), "{again}");
        }
    }

    #[tokio::test]
    async fn a_snapshot_taken_while_records_arrive_is_whole() {
        for t in crate::testing::backends().await {
            let writer = {
                let store = t.store.clone();
                tokio::spawn(async move {
                    for i in 0..200 {
                        let events: Vec<Event> = (0..5)
                            .map(|j| Event::new(EventKind::FileDeleted).path(format!("/w{i}-{j}")))
                            .collect();
                        store.append_events("n1", &events).await.unwrap();
                    }
                })
            };
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("snapshot.db");
            t.store.snapshot_into(&path).await.unwrap();
            writer.await.unwrap();
            let copy = Store::open_sqlite(&path).await.unwrap();
            let seen = copy
                .verify_chain()
                .await
                .unwrap()
                .expect("the snapshot's chain verifies");
            // Records arrive five to a transaction: a snapshot holds whole batches only.
            assert_eq!(seen % 5, 0, "{}: {seen} records", t.name);
            assert!(seen <= 1000, "{}", t.name);
        }
    }
}
