//! The audit trail in the store: numbered, hash-chained, append-only.
//!
//! Each record's `hash` is SHA-256 over the previous record's hash and this record's
//! canonical JSON (every field but `hash`, in a fixed order). Editing, deleting, inserting
//! or reordering any record breaks the chain from that point, and [`Store::verify_chain`]
//! names the first broken record. Records are appended by one writer only (the audit task),
//! so numbering has no gaps.

use std::collections::BTreeMap;

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use time::OffsetDateTime;
use wharf_core::Event;

use crate::backend::{Backing as _, Fetch, on_pool};
use crate::{Store, StoreError};

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record, as persisted, written to JSON lines and shown by `wharf events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Gap-free sequence number.
    pub seq: i64,
    /// Stable event id.
    pub id: u32,
    /// Stable event name.
    pub name: String,
    /// UTC time with microseconds, RFC 3339.
    pub time: String,
    /// Node that recorded it.
    pub node: String,
    /// Service name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Remote address and port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Second path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path2: Option<String>,
    /// Bytes moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// SHA-256 of the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Duration in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// success or failure.
    pub outcome: String,
    /// Explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Kind-specific fields.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, String>,
    /// Previous record's hash.
    pub prev: String,
    /// This record's hash.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
}

/// Formats a time as the trail writes it: RFC 3339 UTC with exactly six fractional digits.
pub use wharf_types::rfc3339::format_micros as format_time;

fn time_us(time: OffsetDateTime) -> i64 {
    i64::try_from(time.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// The chain hash of `record` (its `hash` field is ignored).
pub fn chain_hash(record: &AuditRecord) -> String {
    let mut unhashed = record.clone();
    unhashed.hash.clear();
    let canonical = serde_json::to_string(&unhashed).unwrap_or_default();
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(record.prev.as_bytes());
    context.update(b"\n");
    context.update(canonical.as_bytes());
    wharf_types::hex(context.finish().as_ref())
}

/// Which records `wharf events` wants.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only records at or after this time (microseconds since the epoch).
    pub since_us: Option<i64>,
    /// Only this event id.
    pub id: Option<u32>,
    /// Only this account.
    pub account: Option<String>,
    /// Only records after this sequence number.
    pub after_seq: Option<i64>,
    /// At most this many (the most recent ones when no `after_seq` is given).
    pub limit: i64,
}

impl Store {
    /// Numbers, chains and persists `events` in one transaction; returns the records.
    pub async fn append_events(
        &self,
        node: &str,
        events: &[Event],
    ) -> Result<Vec<AuditRecord>, StoreError> {
        on_pool!(self, pool => {
            // IMMEDIATE takes the write lock before reading the chain's head, so a CLI command
            // and the server appending at once cannot both claim the same number.
            let mut tx = pool.begin_write("events").await?;
            let last = sqlx::query("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
            let (mut seq, mut prev) = match last {
                Some(row) => (
                    row.int("seq")?,
                    row.text("hash")?,
                ),
                None => (0, GENESIS.to_owned()),
            };
            let mut records = Vec::with_capacity(events.len());
            for event in events {
                seq += 1;
                let mut record = AuditRecord {
                    seq,
                    id: event.kind.id(),
                    name: event.kind.name().to_owned(),
                    time: format_time(event.time),
                    node: node.to_owned(),
                    service: event.service.clone(),
                    protocol: event.protocol.map(|p| p.as_str().to_owned()),
                    session: event.session.clone(),
                    account: event.account.clone(),
                    remote: event.remote.map(|r| r.to_string()),
                    path: event.path.clone(),
                    path2: event.path2.clone(),
                    bytes: event.bytes,
                    sha256: event.sha256.clone(),
                    duration_ms: event.duration_ms,
                    outcome: event.outcome.as_str().to_owned(),
                    message: event.message.clone(),
                    attrs: event.attrs.clone(),
                    prev: prev.clone(),
                    hash: String::new(),
                };
                record.hash = chain_hash(&record);
                let record_json = serde_json::to_string(&record).unwrap_or_default();
                sqlx::query(
                    "INSERT INTO events (seq, id, name, time_us, account, record_json, prev, hash) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(seq)
                .bind(i64::from(record.id))
                .bind(&record.name)
                .bind(time_us(event.time))
                .bind(&record.account)
                .bind(&record_json)
                .bind(&record.prev)
                .bind(&record.hash)
                .execute(&mut *tx)
                .await?;
                prev = record.hash.clone();
                records.push(record);
            }
            tx.commit().await?;
            Ok(records)
        })
    }

    /// Records matching `filter`, oldest first.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<AuditRecord>, StoreError> {
        on_pool!(self, pool => {
            let limit = if filter.limit <= 0 {
                1000
            } else {
                filter.limit
            };
            let id = filter.id.map(i64::from);
            // With a cursor, read forward from it; without one, the newest `limit` records.
            let sql = if filter.after_seq.is_some() {
                "SELECT record_json FROM events WHERE seq > $1 AND ($2 IS NULL OR time_us >= $2) \
                 AND ($3 IS NULL OR id = $3) AND ($4 IS NULL OR account = $4) ORDER BY seq ASC LIMIT $5"
            } else {
                "SELECT record_json FROM (SELECT seq, record_json FROM events WHERE seq > $1 AND ($2 IS NULL OR time_us >= $2) \
                 AND ($3 IS NULL OR id = $3) AND ($4 IS NULL OR account = $4) ORDER BY seq DESC LIMIT $5) AS recent ORDER BY seq ASC"
            };
            let rows = sqlx::query(sql)
                .bind(filter.after_seq.unwrap_or(0))
                .bind(filter.since_us)
                .bind(id)
                .bind(&filter.account)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|row| {
                    let text: String = row.try_get("record_json")?;
                    serde_json::from_str(&text).map_err(|source| StoreError::Corrupt {
                        what: "events.record_json",
                        source,
                    })
                })
                .collect()
        })
    }

    /// The stored hash of record `seq`, if there is one.
    pub async fn event_hash(&self, seq: i64) -> Result<Option<String>, StoreError> {
        on_pool!(self, pool => {
            Ok(sqlx::query_scalar("SELECT hash FROM events WHERE seq = $1")
                .bind(seq)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// Walks the whole chain. `Ok(n)` when all `n` records hold; `Err((seq, why))` names the
    /// first record that does not.
    pub async fn verify_chain(&self) -> Result<Result<i64, (i64, String)>, StoreError> {
        on_pool!(self, pool => {
            let mut prev = GENESIS.to_owned();
            let mut expected_seq = 1;
            let mut cursor = 0;
            loop {
                let rows = sqlx::query(
                    "SELECT seq, record_json, prev, hash FROM events WHERE seq > $1 ORDER BY seq ASC LIMIT 5000",
                )
                .bind(cursor)
                .fetch_all(pool)
                .await?;
                if rows.is_empty() {
                    return Ok(Ok(expected_seq - 1));
                }
                for row in &rows {
                    let seq: i64 = row.try_get("seq")?;
                    cursor = seq;
                    if seq != expected_seq {
                        return Ok(Err((
                            expected_seq,
                            format!("record {expected_seq} is missing"),
                        )));
                    }
                    let text: String = row.try_get("record_json")?;
                    let stored_hash: String = row.try_get("hash")?;
                    let stored_prev: String = row.try_get("prev")?;
                    let record: AuditRecord = match serde_json::from_str(&text) {
                        Ok(r) => r,
                        Err(e) => return Ok(Err((seq, format!("record does not parse: {e}")))),
                    };
                    if record.seq != seq || stored_prev != prev || record.prev != prev {
                        return Ok(Err((seq, "does not follow the previous record".to_owned())));
                    }
                    if chain_hash(&record) != stored_hash || record.hash != stored_hash {
                        return Ok(Err((seq, "content does not match its hash".to_owned())));
                    }
                    prev = stored_hash;
                    expected_seq += 1;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_core::EventKind;

    #[tokio::test]
    async fn chain_detects_edits() {
        for under_test in crate::testing::backends().await {
            let store = &under_test.store;
            let events: Vec<Event> = (0..5)
                .map(|i| Event::new(EventKind::FileDeleted).path(format!("/f{i}")))
                .collect();
            let records = store.append_events("n1", &events).await.unwrap();
            assert_eq!(
                records.iter().map(|r| r.seq).collect::<Vec<_>>(),
                [1, 2, 3, 4, 5],
                "{}",
                under_test.name
            );
            assert_eq!(
                store.verify_chain().await.unwrap(),
                Ok(5),
                "{}",
                under_test.name
            );

            store
                .execute_raw("UPDATE events SET record_json = replace(record_json, '/f2', '/other') WHERE seq = 3")
                .await;
            assert_eq!(
                store.verify_chain().await.unwrap().unwrap_err().0,
                3,
                "{}",
                under_test.name
            );

            let filtered = store
                .events(&EventFilter {
                    id: Some(30020),
                    limit: 2,
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(
                filtered.iter().map(|r| r.seq).collect::<Vec<_>>(),
                [4, 5],
                "{}",
                under_test.name
            );
        }
    }
}
