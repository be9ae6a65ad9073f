//! The audit trail in the store: one hash chain per node, merged by a global order.
//!
//! Every record names the node that wrote it and belongs to that node's chain: `node_seq`
//! numbers the chain without gaps, and `hash` is SHA-256 over the previous record of the
//! same chain (its `prev`) and this record's canonical JSON (every field but `hash`, in a
//! fixed order). Editing, deleting, inserting or reordering a node's records breaks that
//! node's chain from that point, and [`Store::verify_chains`] names the node and its first
//! broken record; the other nodes' chains are not involved.
//!
//! Appends take a lock of their own chain only: on PostgreSQL a transaction-scoped advisory
//! lock keyed by the node name, so nodes append at once without waiting for each other; on
//! SQLite the one write lock (a single machine). `seq`, the trail's global order, is drawn
//! under that lock (from the column's identity sequence on PostgreSQL, so it may skip a number an aborted append
//! drew; `MAX + 1` on SQLite). Two nodes' appends may therefore commit in the other order
//! than their `seq`: a reader paging by `seq > cursor` across all nodes could pass over a
//! record that commits just after it read. Within one node that cannot happen (the node's
//! lock is held from drawing `seq` to commit), so a reader that must see every record pages
//! one node at a time ([`EventFilter::node`]), as the handler engine does with its own
//! node's records; readers across nodes (`wharf events --follow`) read again a window
//! behind their cursor.
//!
//! Records written before chains were per node (migration 9) form the chain of the node
//! that wrote last, numbered by their `seq`; their JSON has no `node_seq` and hashes as it
//! always did.

use std::collections::BTreeMap;

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use wharf_core::Event;
use wharf_core::events::Outcome;

use crate::backend::{Backing as _, Fetch, on_pool};
use crate::{Store, StoreError};

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record, as persisted, written to JSON lines and shown by `wharf events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The trail's global order (increasing; may skip numbers on PostgreSQL).
    pub seq: i64,
    /// Gap-free number within the node's own chain (absent, 0, in records written before
    /// chains were per node: their `seq` numbers that chain).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub node_seq: i64,
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

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl AuditRecord {
    /// The record's number within its node's chain.
    pub fn chain_seq(&self) -> i64 {
        if self.node_seq == 0 {
            self.seq
        } else {
            self.node_seq
        }
    }

    /// `event` as `node` records it, before it is numbered and chained.
    pub fn unnumbered(node: &str, event: &Event) -> AuditRecord {
        AuditRecord {
            seq: 0,
            node_seq: 0,
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
            prev: String::new(),
            hash: String::new(),
        }
    }

    /// The same record with its numbers and chain cleared: what its node said, whatever
    /// place it was given in the trail.
    pub fn content(&self) -> AuditRecord {
        AuditRecord {
            seq: 0,
            node_seq: 0,
            prev: String::new(),
            hash: String::new(),
            ..self.clone()
        }
    }
}

/// One node's chain as [`Store::verify_chains`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// The node.
    pub node: String,
    /// Records of its chain that hold (all of them when `broken` is `None`).
    pub records: i64,
    /// The chain's first record that does not hold, and why.
    pub broken: Option<(i64, String)>,
}

/// The advisory lock key of `node`'s chain on PostgreSQL.
pub(crate) fn chain_lock_key(node: &str) -> i64 {
    let digest = digest::digest(
        &digest::SHA256,
        format!("wharf audit chain\n{node}").as_bytes(),
    );
    let mut key = [0u8; 8];
    key.copy_from_slice(&digest.as_ref()[..8]);
    i64::from_be_bytes(key)
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

/// Which records a reader wants. With `after_seq`, records come in `seq` order from the
/// cursor; without it, the newest `limit` come in time order (the cluster's nodes merged).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only records at or after this time (microseconds since the epoch).
    pub since_us: Option<i64>,
    /// Only this event id.
    pub id: Option<u32>,
    /// Only event ids in this range (inclusive), such as 30000 to 30099 for file events.
    pub id_range: Option<(u32, u32)>,
    /// Only this account.
    pub account: Option<String>,
    /// Only this protocol (`sftp`, `ftp`, `webdav`…, as records name it).
    pub protocol: Option<String>,
    /// Only successes, or only failures.
    pub outcome: Option<Outcome>,
    /// Only this node's records (a cursor over one node never passes over a record).
    pub node: Option<String>,
    /// Only records after this sequence number.
    pub after_seq: Option<i64>,
    /// Only records before record `before_seq` in the newest-first order (the next page
    /// back: the oldest `seq` of the page shown).
    pub before_seq: Option<i64>,
    /// At most this many (the most recent ones when no `after_seq` is given).
    pub limit: i64,
}

/// A stretch of time to read records from, oldest first ([`Store::events_in_range`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// Records at or after this time (µs since the epoch).
    pub from_us: i64,
    /// Records before this time.
    pub until_us: i64,
    /// Only records after this position (time in µs, then `seq`): the last record of the
    /// page read before.
    pub after: Option<(i64, i64)>,
}

/// A value an event filter binds.
enum FilterValue {
    Int(i64),
    Text(String),
}

/// The conditions of an event search and the values they bind.
#[derive(Default)]
struct Search {
    conditions: Vec<String>,
    values: Vec<FilterValue>,
}

impl Search {
    /// Binds `value`; its `$N` mark.
    fn bind(&mut self, value: FilterValue) -> String {
        self.values.push(value);
        format!("${}", self.values.len())
    }

    fn add(&mut self, column: &str, op: &str, value: FilterValue) {
        let mark = self.bind(value);
        self.conditions.push(format!("{column} {op} {mark}"));
    }

    /// `WHERE` with every condition, and `extra` (fixed text) too.
    fn where_clause(&self, extra: &str) -> String {
        let mut all: Vec<&str> = self.conditions.iter().map(String::as_str).collect();
        if !extra.is_empty() {
            all.push(extra);
        }
        if all.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", all.join(" AND "))
        }
    }
}

/// Which index a newest-first page is read from.
enum Index {
    Named(&'static str),
    /// One range of `events_id` per catalogue id in the filter's range, merged.
    PerId,
}

impl EventFilter {
    /// The index of the most selective filter given. An account has the fewest records;
    /// failures are few next to successes (and a failure filter with an event id that
    /// never fails would otherwise read that id's whole range); then an event id; then a
    /// protocol; a node's chain is most of the trail. Each index carries the columns the
    /// later filters test.
    fn index_for(&self) -> Index {
        if self.account.is_some() {
            Index::Named("events_account")
        } else if self.outcome == Some(Outcome::Failure) {
            Index::Named("events_failures")
        } else if self.id.is_some() {
            Index::Named("events_id")
        } else if self.id_range.is_some() {
            Index::PerId
        } else if self.protocol.is_some() {
            Index::Named("events_protocol")
        } else if self.node.is_some() {
            Index::Named("events_node_time")
        } else {
            Index::Named("events_time")
        }
    }
}

impl Store {
    /// Numbers, chains and persists `events` as `node`'s, in one transaction; returns the
    /// records.
    pub async fn append_events(
        &self,
        node: &str,
        events: &[Event],
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let records: Vec<AuditRecord> = events
            .iter()
            .map(|event| AuditRecord::unnumbered(node, event))
            .collect();
        self.append_records(node, &records).await
    }

    /// Numbers and chains `records` (as [`AuditRecord::unnumbered`] made them, possibly
    /// long ago: a spilled batch) after `node`'s last record, and persists them in one
    /// transaction; returns them numbered.
    pub async fn append_records(
        &self,
        node: &str,
        records: &[AuditRecord],
    ) -> Result<Vec<AuditRecord>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let postgres = matches!(self.backend(), crate::Backend::Postgres);
        let count = i64::try_from(records.len()).unwrap_or(i64::MAX);
        on_pool!(self, pool => {
            // Only this node's chain is locked: other nodes append meanwhile.
            let mut tx = pool.begin_chain(node).await?;
            let last = sqlx::query(
                "SELECT node_seq, hash FROM events WHERE node = $1 ORDER BY node_seq DESC LIMIT 1",
            )
            .bind(node)
            .fetch_optional(&mut *tx)
            .await?;
            let (mut node_seq, mut prev) = match last {
                Some(row) => (row.int("node_seq")?, row.text("hash")?),
                None => {
                    // A chain whose records were all archived (its newest is kept, so only
                    // after a deletion) goes on from its checkpoint, never from the start.
                    let checkpoint = sqlx::query(crate::audit_archive::LAST_CHECKPOINT)
                    .bind(node)
                    .fetch_optional(&mut *tx)
                    .await?;
                    match checkpoint {
                        Some(row) => (row.int("last_seq")?, row.text("last_hash")?),
                        None => (0, GENESIS.to_owned()),
                    }
                }
            };
            // Drawn under the chain's lock, so one node's `seq` grow in commit order.
            let seqs: Vec<i64> = if postgres {
                sqlx::query_scalar(
                    "SELECT nextval(pg_get_serial_sequence('events', 'seq')) AS seq \
                     FROM generate_series(1, $1) ORDER BY 1",
                )
                .bind(count)
                .fetch_all(&mut *tx)
                .await?
            } else {
                let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
                    .fetch_one(&mut *tx)
                    .await?;
                (1..=count).map(|n| head + n).collect()
            };
            let mut numbered = Vec::with_capacity(records.len());
            for (unnumbered, seq) in records.iter().zip(seqs) {
                node_seq += 1;
                let mut record = AuditRecord {
                    seq,
                    node_seq,
                    node: node.to_owned(),
                    prev: prev.clone(),
                    hash: String::new(),
                    ..unnumbered.clone()
                };
                record.hash = chain_hash(&record);
                let at = wharf_types::rfc3339::parse(&record.time)
                    .map(time_us)
                    .unwrap_or(0);
                let record_json = serde_json::to_string(&record).unwrap_or_default();
                sqlx::query(
                    "INSERT INTO events (seq, id, name, time_us, account, record_json, prev, hash, node, node_seq, protocol, outcome) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(seq)
                .bind(i64::from(record.id))
                .bind(&record.name)
                .bind(at)
                .bind(&record.account)
                .bind(&record_json)
                .bind(&record.prev)
                .bind(&record.hash)
                .bind(node)
                .bind(node_seq)
                .bind(&record.protocol)
                .bind(&record.outcome)
                .execute(&mut *tx)
                .await?;
                prev = record.hash.clone();
                numbered.push(record);
            }
            tx.commit().await?;
            Ok(numbered)
        })
    }

    /// The last record of `node`'s chain, if it has one.
    pub async fn chain_head(&self, node: &str) -> Result<Option<AuditRecord>, StoreError> {
        on_pool!(self, pool => {
            let text: Option<String> = sqlx::query_scalar(
                "SELECT record_json FROM events WHERE node = $1 ORDER BY node_seq DESC LIMIT 1",
            )
            .bind(node)
            .fetch_optional(pool)
            .await?;
            text.map(|text| parse_record(&text)).transpose()
        })
    }

    /// Up to `count` records of `node`'s chain from its record `from`, in chain order.
    pub async fn chain_records(
        &self,
        node: &str,
        from: i64,
        count: i64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT record_json FROM events WHERE node = $1 AND node_seq >= $2 ORDER BY node_seq ASC LIMIT $3",
            )
            .bind(node)
            .bind(from)
            .bind(count)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| parse_record(&row.text("record_json")?))
                .collect()
        })
    }

    /// Records matching `filter` (see [`EventFilter`] for their order).
    ///
    /// Newest-first pages are found in two steps: the `seq` numbers of the page, from the
    /// index of the most selective filter given (each filter's index carries the other
    /// filtered columns, so a combination is tested on index entries, never on records),
    /// then the page's records by `seq`. A range of event ids is read as one index range
    /// per catalogue id in it, merged: the newest `limit` of each, never the whole range.
    /// The statement names only the filters given: a test such as `($4 IS NULL OR
    /// account = $4)` would keep SQLite from using any index.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let limit = if filter.limit <= 0 {
            1000
        } else {
            filter.limit
        };
        let before = match filter.before_seq {
            Some(seq) => Some((self.event_time(seq).await?, seq)),
            None => None,
        };
        let mut search = Search::default();
        if let Some(after) = filter.after_seq {
            search.add("seq", ">", FilterValue::Int(after));
        }
        if let Some(since) = filter.since_us {
            search.add("time_us", ">=", FilterValue::Int(since));
        }
        match before {
            Some((Some(time_us), seq)) => {
                // A bound on the time the index can range over, then the tie on `seq`.
                let t = search.bind(FilterValue::Int(time_us));
                let q = search.bind(FilterValue::Int(seq));
                search
                    .conditions
                    .push(format!("time_us <= {t} AND (time_us < {t} OR seq < {q})"));
            }
            // A cursor naming no record (made up, or moved out of the store): the records
            // numbered before it.
            Some((None, seq)) => search.add("seq", "<", FilterValue::Int(seq)),
            None => {}
        }
        if let Some(id) = filter.id {
            search.add("id", "=", FilterValue::Int(i64::from(id)));
        }
        if let Some((low, high)) = filter.id_range {
            let l = search.bind(FilterValue::Int(i64::from(low)));
            let h = search.bind(FilterValue::Int(i64::from(high)));
            search.conditions.push(format!("id BETWEEN {l} AND {h}"));
        }
        if let Some(account) = &filter.account {
            search.add("account", "=", FilterValue::Text(account.clone()));
        }
        if let Some(protocol) = &filter.protocol {
            search.add("protocol", "=", FilterValue::Text(protocol.clone()));
        }
        if let Some(outcome) = filter.outcome {
            // Written out, not bound: SQLite uses the failures' partial index only when
            // the statement itself says `outcome = 'failure'`.
            search
                .conditions
                .push(format!("outcome = '{}'", outcome.as_str()));
        }
        if let Some(node) = &filter.node {
            search.add("node", "=", FilterValue::Text(node.clone()));
        }
        let limit_mark = search.bind(FilterValue::Int(limit));
        let sql = if filter.after_seq.is_some() {
            // A cursor reads forward from it, in `seq` order (a tail).
            format!(
                "SELECT record_json FROM events {} ORDER BY seq ASC LIMIT {limit_mark}",
                search.where_clause("")
            )
        } else {
            let sqlite = self.backend() == crate::Backend::Sqlite;
            let newest = |index: &str, extra: &str| {
                let index = if sqlite && !index.is_empty() {
                    format!("INDEXED BY {index}")
                } else {
                    String::new()
                };
                format!(
                    "SELECT seq, time_us FROM events {index} {} \
                     ORDER BY time_us DESC, seq DESC LIMIT {limit_mark}",
                    search.where_clause(extra)
                )
            };
            let page = match filter.index_for() {
                Index::PerId => {
                    let (low, high) = filter.id_range.unwrap_or((0, u32::MAX));
                    let ids: Vec<u32> = wharf_core::EventKind::ALL
                        .iter()
                        .map(|k| k.id())
                        .filter(|id| (low..=high).contains(id))
                        .collect();
                    if ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    let parts: Vec<String> = ids
                        .iter()
                        .map(|id| {
                            format!(
                                "SELECT * FROM ({}) AS id_{id}",
                                newest("events_id", &format!("id = {id}"))
                            )
                        })
                        .collect();
                    format!(
                        "SELECT seq, time_us FROM ({}) AS merged ORDER BY time_us DESC, seq DESC LIMIT {limit_mark}",
                        parts.join(" UNION ALL ")
                    )
                }
                Index::Named(index) => newest(index, ""),
            };
            format!(
                "SELECT record_json FROM events WHERE seq IN (SELECT seq FROM ({page}) AS page) \
                 ORDER BY time_us ASC, seq ASC"
            )
        };
        self.records_of(&sql, &search.values).await
    }

    /// Up to `limit` records with one of `ids`, timed in `[range.from_us, range.until_us)`,
    /// oldest first (by time, then `seq`), after the position `range.after` (the time and
    /// `seq` of the last record of the page before) when given.
    ///
    /// Unlike [`Store::events`], whose pages are the newest records, this reads a closed
    /// stretch of time from its start, so a reader can page through all of it. Each id is
    /// read as its own range of the `events_id` index (id, time, seq), merged, so no other
    /// id's records are walked over.
    pub async fn events_in_range(
        &self,
        ids: &[u32],
        range: TimeRange,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let mut ids: Vec<u32> = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let from = match range.after {
            Some((time_us, _)) => range.from_us.max(time_us),
            None => range.from_us,
        };
        if ids.is_empty() || from >= range.until_us {
            return Ok(Vec::new());
        }
        let limit = limit.clamp(1, 10_000);
        let mut search = Search::default();
        let from_mark = search.bind(FilterValue::Int(from));
        let until_mark = search.bind(FilterValue::Int(range.until_us));
        let limit_mark = search.bind(FilterValue::Int(limit));
        let mut conditions = format!("time_us >= {from_mark} AND time_us < {until_mark}");
        if let Some((time_us, seq)) = range.after {
            let t = search.bind(FilterValue::Int(time_us));
            let s = search.bind(FilterValue::Int(seq));
            conditions.push_str(&format!(" AND (time_us > {t} OR seq > {s})"));
        }
        let sqlite = self.backend() == crate::Backend::Sqlite;
        let index = if sqlite { "INDEXED BY events_id" } else { "" };
        let parts: Vec<String> = ids
            .iter()
            .map(|id| {
                format!(
                    "SELECT * FROM (SELECT seq, time_us FROM events {index} \
                     WHERE id = {id} AND {conditions} \
                     ORDER BY time_us ASC, seq ASC LIMIT {limit_mark}) AS id_{id}"
                )
            })
            .collect();
        let sql = format!(
            "SELECT record_json FROM events WHERE seq IN (\
             SELECT seq FROM ({}) AS merged ORDER BY time_us ASC, seq ASC LIMIT {limit_mark}) \
             ORDER BY time_us ASC, seq ASC",
            parts.join(" UNION ALL ")
        );
        self.records_of(&sql, &search.values).await
    }

    /// The records `sql` selects (`record_json` only), `values` bound to its `$N` marks in
    /// order. Only fixed text, catalogue ids and `$N` marks may make up `sql`: every value
    /// from a caller is bound.
    async fn records_of(
        &self,
        sql: &str,
        values: &[FilterValue],
    ) -> Result<Vec<AuditRecord>, StoreError> {
        on_pool!(self, pool => {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
            for value in values {
                query = match value {
                    FilterValue::Int(v) => query.bind(*v),
                    FilterValue::Text(v) => query.bind(v.clone()),
                };
            }
            let rows = query.fetch_all(pool).await?;
            rows.iter()
                .map(|row| parse_record(&row.text("record_json")?))
                .collect()
        })
    }

    /// The time of record `seq`, for a cursor that pages back from it; `None` when no
    /// record has that number.
    async fn event_time(&self, seq: i64) -> Result<Option<i64>, StoreError> {
        on_pool!(self, pool => {
            Ok(sqlx::query_scalar("SELECT time_us FROM events WHERE seq = $1")
                .bind(seq)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// The stored hash of record `seq` (the global number), if there is one.
    pub async fn event_hash(&self, seq: i64) -> Result<Option<String>, StoreError> {
        on_pool!(self, pool => {
            Ok(sqlx::query_scalar("SELECT hash FROM events WHERE seq = $1")
                .bind(seq)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// The stored hash of record `node_seq` of `node`'s chain, if there is one.
    pub async fn chain_hash_at(
        &self,
        node: &str,
        node_seq: i64,
    ) -> Result<Option<String>, StoreError> {
        on_pool!(self, pool => {
            Ok(sqlx::query_scalar("SELECT hash FROM events WHERE node = $1 AND node_seq = $2")
                .bind(node)
                .bind(node_seq)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// The nodes that have a chain, by name.
    pub async fn chain_nodes(&self) -> Result<Vec<String>, StoreError> {
        on_pool!(self, pool => {
            Ok(sqlx::query_scalar(
                "SELECT node FROM events UNION SELECT node FROM audit_checkpoints ORDER BY node",
            )
            .fetch_all(pool)
            .await?)
        })
    }

    /// Walks every node's chain.
    pub async fn verify_chains(&self) -> Result<Vec<ChainReport>, StoreError> {
        let mut reports = Vec::new();
        for node in self.chain_nodes().await? {
            let report = match self.verify_node_chain(&node).await? {
                Ok(records) => ChainReport {
                    node,
                    records,
                    broken: None,
                },
                Err((at, why)) => ChainReport {
                    node,
                    records: at - 1,
                    broken: Some((at, why)),
                },
            };
            reports.push(report);
        }
        Ok(reports)
    }

    /// Walks every chain: `Ok(n)` when all `n` records hold; `Err((node_seq, why))` names
    /// the first record that does not (of the first broken chain, by node name).
    pub async fn verify_chain(&self) -> Result<Result<i64, (i64, String)>, StoreError> {
        let mut total = 0;
        for report in self.verify_chains().await? {
            if let Some(broken) = report.broken {
                return Ok(Err(broken));
            }
            total += report.records;
        }
        Ok(Ok(total))
    }

    /// Walks `node`'s chain. `Ok(n)` when all `n` records hold; `Err((node_seq, why))`
    /// names the first record that does not.
    pub async fn verify_node_chain(
        &self,
        node: &str,
    ) -> Result<Result<i64, (i64, String)>, StoreError> {
        // Archived records are checked against their files by `wharf audit verify`; the
        // store's part of the chain follows the newest checkpoint.
        let (start_prev, start) = match self.audit_checkpoint(node).await? {
            Some(c) => (c.last_hash, c.last_seq + 1),
            None => (GENESIS.to_owned(), 1),
        };
        on_pool!(self, pool => {
            if start > 1 {
                // Archived records have no place in the store: one found there (put back,
                // or never deleted) would be read by searches but checked by nothing.
                let stray: Option<i64> = sqlx::query_scalar(
                    "SELECT MIN(node_seq) FROM events WHERE node = $1 AND node_seq < $2",
                )
                .bind(node)
                .bind(start)
                .fetch_one(pool)
                .await?;
                if let Some(at) = stray {
                    return Ok(Err((
                        at,
                        "record is in the store though its archive holds it".to_owned(),
                    )));
                }
            }
            let mut prev = start_prev.clone();
            let mut expected = start;
            loop {
                let rows = sqlx::query(
                    "SELECT seq, node_seq, record_json, prev, hash FROM events \
                     WHERE node = $1 AND node_seq >= $2 ORDER BY node_seq ASC LIMIT 5000",
                )
                .bind(node)
                .bind(expected)
                .fetch_all(pool)
                .await?;
                if rows.is_empty() {
                    // The newest record always stays in the store after an archive.
                    if expected == start && start > 1 {
                        return Ok(Err((start, format!("record {start} is missing"))));
                    }
                    return Ok(Ok(expected - 1));
                }
                for row in &rows {
                    let seq = row.int("seq")?;
                    let node_seq = row.int("node_seq")?;
                    if node_seq != expected {
                        return Ok(Err((expected, format!("record {expected} is missing"))));
                    }
                    let stored_hash = row.text("hash")?;
                    let stored_prev = row.text("prev")?;
                    let record: AuditRecord = match serde_json::from_str(&row.text("record_json")?) {
                        Ok(r) => r,
                        Err(e) => {
                            return Ok(Err((node_seq, format!("record does not parse: {e}"))));
                        }
                    };
                    // A record from before per-node chains carries no `node_seq` and is
                    // numbered by its `seq`; it may name another node (a renamed one).
                    let placed = if record.node_seq == 0 {
                        record.seq == seq && seq == node_seq
                    } else {
                        record.seq == seq && record.node_seq == node_seq && record.node == node
                    };
                    if !placed || stored_prev != prev || record.prev != prev {
                        return Ok(Err((node_seq, "does not follow the previous record".to_owned())));
                    }
                    if chain_hash(&record) != stored_hash || record.hash != stored_hash {
                        return Ok(Err((node_seq, "content does not match its hash".to_owned())));
                    }
                    prev = stored_hash;
                    expected += 1;
                }
            }
        })
    }
}

/// A stored record's JSON, read back.
pub(crate) fn parse_stored(text: &str) -> Result<AuditRecord, StoreError> {
    parse_record(text)
}

fn parse_record(text: &str) -> Result<AuditRecord, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Corrupt {
        what: "events.record_json",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_core::EventKind;

    fn deleted(n: usize, prefix: &str) -> Vec<Event> {
        (0..n)
            .map(|i| Event::new(EventKind::FileDeleted).path(format!("/{prefix}{i}")))
            .collect()
    }

    /// Every filter of the Manager's search, alone and together, and paging back.
    #[tokio::test]
    async fn search_filters_combine_and_page_back() {
        use wharf_types::Protocol;
        for under_test in crate::testing::backends().await {
            let store = &under_test.store;
            let name = under_test.name;
            let mut events = Vec::new();
            for i in 0..30u32 {
                let (kind, protocol) = match i % 3 {
                    0 => (EventKind::LoginFailed, Protocol::Ftp),
                    1 => (EventKind::UploadFinished, Protocol::Sftp),
                    _ => (EventKind::FileDeleted, Protocol::Webdav),
                };
                let mut event = Event::new(kind).path(format!("/f{i}"));
                event.protocol = Some(protocol);
                event.account = Some(if i % 2 == 0 { "ann" } else { "bob" }.into());
                if kind == EventKind::LoginFailed {
                    event = event.failed("wrong password");
                }
                events.push(event);
            }
            store.append_events("n1", &events).await.unwrap();
            let find = |filter: EventFilter| async move {
                store
                    .events(&filter)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.seq)
                    .collect::<Vec<_>>()
            };
            let every =
                |pick: &dyn Fn(i64) -> bool| (1..=30).filter(|s| pick(*s)).collect::<Vec<i64>>();
            // seq s holds event i = s - 1.
            let failures = every(&|s| (s - 1) % 3 == 0);
            let cases = [
                (
                    EventFilter {
                        outcome: Some(Outcome::Failure),
                        ..Default::default()
                    },
                    failures.clone(),
                ),
                (
                    EventFilter {
                        protocol: Some("ftp".into()),
                        ..Default::default()
                    },
                    failures,
                ),
                (
                    EventFilter {
                        id_range: Some((30000, 30099)),
                        ..Default::default()
                    },
                    every(&|s| (s - 1) % 3 != 0),
                ),
                (
                    EventFilter {
                        id_range: Some((30000, 30099)),
                        account: Some("ann".into()),
                        protocol: Some("webdav".into()),
                        outcome: Some(Outcome::Success),
                        ..Default::default()
                    },
                    every(&|s| (s - 1) % 3 == 2 && (s - 1) % 2 == 0),
                ),
                (
                    EventFilter {
                        id_range: Some((1, 9)),
                        ..Default::default()
                    },
                    Vec::new(),
                ),
                (
                    EventFilter {
                        protocol: Some("ftp".into()),
                        outcome: Some(Outcome::Success),
                        ..Default::default()
                    },
                    Vec::new(),
                ),
            ];
            let cases = cases.into_iter().chain([
                // A cursor naming no record pages back from its number alone.
                (
                    EventFilter {
                        before_seq: Some(0),
                        ..Default::default()
                    },
                    Vec::new(),
                ),
                (
                    EventFilter {
                        before_seq: Some(i64::MAX),
                        ..Default::default()
                    },
                    every(&|_| true),
                ),
                (
                    EventFilter {
                        before_seq: Some(-5),
                        ..Default::default()
                    },
                    Vec::new(),
                ),
            ]);
            for (filter, expected) in cases {
                let shown = format!("{filter:?}");
                assert_eq!(find(filter).await, expected, "{name}: {shown}");
            }
            // Pages of 4, newest first, back to the oldest: each record once.
            let mut seen = Vec::new();
            let mut before = None;
            loop {
                let page = find(EventFilter {
                    before_seq: before,
                    limit: 4,
                    ..Default::default()
                })
                .await;
                if page.is_empty() {
                    break;
                }
                before = page.first().copied();
                seen.splice(0..0, page);
            }
            assert_eq!(seen, every(&|_| true), "{name}");
        }
    }

    /// A closed stretch of time is read oldest first, page after page, each record once,
    /// and only the ids asked for.
    #[tokio::test]
    async fn a_time_range_is_read_oldest_first_by_pages() {
        for under_test in crate::testing::backends().await {
            let store = &under_test.store;
            let name = under_test.name;
            let base = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
            let base_us = time_us(base);
            // Written newest first, so neither `seq` nor insertion order is time order;
            // two records share a time, kept apart by `seq`.
            let mut events = Vec::new();
            for i in (0..13i64).rev() {
                let kind = match i % 3 {
                    0 => EventKind::UploadFinished,
                    1 => EventKind::FileDeleted,
                    _ => EventKind::LoginFailed,
                };
                let mut event = Event::new(kind).path(format!("/f{i}"));
                event.time = base + time::Duration::seconds(i.min(10));
                events.push(event);
            }
            store.append_events("n1", &events).await.unwrap();
            let ids = [EventKind::UploadFinished.id(), EventKind::FileDeleted.id()];
            // [1 s, 11 s): i = 1..=12 but the logins; i = 10 and 12 share 10 s.
            let range = TimeRange {
                from_us: base_us + 1_000_000,
                until_us: base_us + 11_000_000,
                after: None,
            };
            let mut paths = Vec::new();
            let mut after = None;
            loop {
                let page = store
                    .events_in_range(&ids, TimeRange { after, ..range }, 2)
                    .await
                    .unwrap();
                let Some(last) = page.last() else { break };
                let at = wharf_types::rfc3339::parse(&last.time)
                    .map(time_us)
                    .unwrap();
                after = Some((at, last.seq));
                paths.extend(page.iter().filter_map(|r| r.path.clone()));
            }
            // 10 and 12 share a time: 12 was written first, so its `seq` is lower.
            let expected = ["/f1", "/f3", "/f4", "/f6", "/f7", "/f9", "/f12", "/f10"];
            assert_eq!(paths, expected, "{name}");
            let none = store.events_in_range(&[], range, 10).await.unwrap();
            assert!(none.is_empty(), "{name}");
        }
    }

    #[tokio::test]
    async fn chain_detects_edits() {
        for under_test in crate::testing::backends().await {
            let store = &under_test.store;
            let name = under_test.name;
            let records = store.append_events("n1", &deleted(5, "f")).await.unwrap();
            assert_eq!(
                records.iter().map(|r| r.node_seq).collect::<Vec<_>>(),
                [1, 2, 3, 4, 5],
                "{name}"
            );
            assert_eq!(store.verify_chain().await.unwrap(), Ok(5), "{name}");

            store
                .execute_raw("UPDATE events SET record_json = replace(record_json, '/f2', '/other') WHERE node_seq = 3")
                .await;
            assert_eq!(
                store.verify_chain().await.unwrap().unwrap_err().0,
                3,
                "{name}"
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
                filtered.iter().map(|r| r.node_seq).collect::<Vec<_>>(),
                [4, 5],
                "{name}"
            );
        }
    }

    /// Every combination of filters answers exactly the records it names, newest last, on
    /// both backends (the statement is put together from the filters given).
    #[tokio::test]
    async fn every_filter_combination_answers_its_records() {
        for under_test in crate::testing::backends().await {
            let store = &under_test.store;
            let name = under_test.name;
            let mut all = Vec::new();
            for (i, (node, account, kind)) in [
                ("a", "ann", EventKind::FileDeleted),
                ("b", "ann", EventKind::UploadFinished),
                ("a", "bob", EventKind::UploadFinished),
                ("b", "bob", EventKind::FileDeleted),
                ("a", "ann", EventKind::UploadFinished),
                ("b", "cy", EventKind::FileDeleted),
            ]
            .into_iter()
            .enumerate()
            {
                let mut event = Event::new(kind).path(format!("/{i}"));
                event.account = Some(account.to_owned());
                all.extend(store.append_events(node, &[event]).await.unwrap());
            }
            for account in [None, Some("ann"), Some("bob"), Some("nobody")] {
                for id in [None, Some(EventKind::UploadFinished.id())] {
                    for node in [None, Some("a"), Some("b")] {
                        for after_seq in [None, Some(all[1].seq)] {
                            let filter = EventFilter {
                                account: account.map(str::to_owned),
                                id,
                                node: node.map(str::to_owned),
                                after_seq,
                                limit: 100,
                                ..Default::default()
                            };
                            let got: Vec<i64> = store
                                .events(&filter)
                                .await
                                .unwrap()
                                .iter()
                                .map(|r| r.seq)
                                .collect();
                            let want: Vec<i64> = all
                                .iter()
                                .filter(|r| account.is_none_or(|a| r.account.as_deref() == Some(a)))
                                .filter(|r| id.is_none_or(|id| r.id == id))
                                .filter(|r| node.is_none_or(|n| r.node == n))
                                .filter(|r| after_seq.is_none_or(|s| r.seq > s))
                                .map(|r| r.seq)
                                .collect();
                            assert_eq!(got, want, "{name}: {filter:?}");
                        }
                    }
                }
            }
            let newest_two = store
                .events(&EventFilter {
                    account: Some("ann".into()),
                    limit: 2,
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(
                newest_two.iter().map(|r| r.seq).collect::<Vec<_>>(),
                [all[1].seq, all[4].seq],
                "{name}"
            );
        }
    }

    /// Two nodes appending at once each get a gap-free chain of their own; a record changed
    /// in one breaks that node's chain only.
    #[tokio::test]
    async fn every_node_keeps_its_own_chain() {
        for under_test in crate::testing::backends().await {
            let store = &under_test.store;
            let name = under_test.name;
            let mut tasks = Vec::new();
            for node in ["a", "b"] {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    for round in 0..10 {
                        store
                            .append_events(node, &deleted(3, &format!("{node}{round}-")))
                            .await
                            .unwrap();
                    }
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
            let reports = store.verify_chains().await.unwrap();
            assert_eq!(
                reports,
                [
                    ChainReport {
                        node: "a".into(),
                        records: 30,
                        broken: None
                    },
                    ChainReport {
                        node: "b".into(),
                        records: 30,
                        broken: None
                    },
                ],
                "{name}"
            );
            // Within a node, `seq` grows with `node_seq`; across nodes it is unique.
            let mut seqs = Vec::new();
            for node in ["a", "b"] {
                let records = store
                    .events(&EventFilter {
                        after_seq: Some(0),
                        node: Some(node.into()),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                assert_eq!(
                    records.iter().map(|r| r.node_seq).collect::<Vec<_>>(),
                    (1..=30).collect::<Vec<_>>(),
                    "{name}"
                );
                assert!(records.iter().all(|r| r.node == node), "{name}");
                assert!(records.windows(2).all(|w| w[0].seq < w[1].seq), "{name}");
                if let Some(first) = records.first() {
                    assert_eq!(first.prev, GENESIS, "{name}");
                }
                seqs.extend(records.iter().map(|r| r.seq));
            }
            seqs.sort_unstable();
            seqs.dedup();
            assert_eq!(seqs.len(), 60, "{name}");
            // Merged in time order, both nodes named.
            let merged = store.events(&EventFilter::default()).await.unwrap();
            assert_eq!(merged.len(), 60, "{name}");
            assert!(merged.windows(2).all(|w| w[0].time <= w[1].time), "{name}");

            store
                .execute_raw("UPDATE events SET record_json = replace(record_json, '\"outcome\"', '\"outcome \"') WHERE node = 'b' AND node_seq = 7")
                .await;
            let reports = store.verify_chains().await.unwrap();
            assert_eq!(reports[0].broken, None, "{name}");
            assert_eq!(reports[1].node, "b", "{name}");
            assert_eq!(reports[1].broken.as_ref().map(|b| b.0), Some(7), "{name}");
            assert_eq!(reports[1].records, 6, "{name}");

            // A record taken out of b's chain is named as missing.
            store
                .execute_raw("DELETE FROM events WHERE node = 'a' AND node_seq = 12")
                .await;
            let reports = store.verify_chains().await.unwrap();
            assert_eq!(
                reports[0].broken,
                Some((12, "record 12 is missing".to_owned())),
                "{name}"
            );
        }
    }

    /// A batch made long before it is written (spilled while the store was away) keeps its
    /// content and continues the chain.
    #[tokio::test]
    async fn records_made_earlier_continue_the_chain() {
        for under_test in crate::testing::backends().await {
            let store = &under_test.store;
            let name = under_test.name;
            store.append_events("a", &deleted(2, "x")).await.unwrap();
            let waiting: Vec<AuditRecord> = deleted(3, "later")
                .iter()
                .map(|e| AuditRecord::unnumbered("a", e))
                .collect();
            let written = store.append_records("a", &waiting).await.unwrap();
            assert_eq!(
                written.iter().map(|r| r.node_seq).collect::<Vec<_>>(),
                [3, 4, 5],
                "{name}"
            );
            let head = store.chain_head("a").await.unwrap().unwrap();
            assert_eq!(head.content(), waiting[2], "{name}");
            assert_eq!(store.verify_chain().await.unwrap(), Ok(5), "{name}");
        }
    }

    /// A trail written before chains were per node (one chain numbered by `seq`, records
    /// without `node_seq`) still verifies after migration 9, and its node's new records
    /// continue it.
    #[tokio::test]
    async fn a_trail_from_before_migration_9_goes_on() {
        for under_test in crate::testing::backends().await {
            let store = &under_test.store;
            let name = under_test.name;
            // Back to the layout of migration 7: no node columns, one chain.
            let mut undo = "DROP INDEX events_node_seq; DROP INDEX events_node_time; \
                            DROP INDEX events_failures; DROP INDEX events_protocol; DROP INDEX events_id; \
                            DROP INDEX events_account; DROP INDEX events_time; \
                            ALTER TABLE events DROP COLUMN protocol; ALTER TABLE events DROP COLUMN outcome; \
                            ALTER TABLE events DROP COLUMN node_seq; ALTER TABLE events DROP COLUMN node; \
                            CREATE INDEX events_time ON events (time_us); \
                            CREATE INDEX events_id ON events (id, time_us); \
                            CREATE INDEX events_account ON events (account, time_us); \
                            DELETE FROM wharf_schema WHERE version IN (9, 13, 15)"
                .to_owned();
            if store.backend() == crate::Backend::Postgres {
                undo.push_str("; ALTER TABLE events ALTER COLUMN seq DROP IDENTITY");
            }
            on_pool!(store, pool => sqlx::raw_sql(sqlx::AssertSqlSafe(undo)).execute(pool).await.map(|_| ()))
                .unwrap();
            let mut prev = GENESIS.to_owned();
            for seq in 1..=4 {
                let event = Event::new(EventKind::FileDeleted).path(format!("/old{seq}"));
                let mut record = AuditRecord {
                    seq,
                    prev: prev.clone(),
                    ..AuditRecord::unnumbered("solo", &event)
                };
                record.hash = chain_hash(&record);
                let json = serde_json::to_string(&record).unwrap();
                assert!(!json.contains("node_seq"), "{name}");
                on_pool!(store, pool => sqlx::query(
                    "INSERT INTO events (seq, id, name, time_us, account, record_json, prev, hash) \
                     VALUES ($1, 30020, 'file.deleted', $1, NULL, $2, $3, $4)",
                )
                .bind(seq)
                .bind(&json)
                .bind(&record.prev)
                .bind(&record.hash)
                .execute(pool)
                .await
                .map(|_| ()))
                .unwrap();
                prev = record.hash;
            }
            match &store.pool {
                crate::backend::Pool::Sqlite(p) => crate::migrate::apply_sqlite(p).await,
                crate::backend::Pool::Postgres(p) => crate::migrate::apply_postgres(p).await,
            }
            .unwrap();
            let migrated = store;
            assert_eq!(migrated.verify_chain().await.unwrap(), Ok(4), "{name}");
            let next = migrated
                .append_events("solo", &deleted(2, "new"))
                .await
                .unwrap();
            assert_eq!(
                next.iter().map(|r| (r.seq, r.node_seq)).collect::<Vec<_>>(),
                [(5, 5), (6, 6)],
                "{name}"
            );
            migrated
                .append_events("other", &deleted(1, "o"))
                .await
                .unwrap();
            let reports = migrated.verify_chains().await.unwrap();
            assert_eq!(
                reports
                    .iter()
                    .map(|r| (r.node.as_str(), r.records, r.broken.is_none()))
                    .collect::<Vec<_>>(),
                [("other", 1, true), ("solo", 6, true)],
                "{name}"
            );
            assert_eq!(
                migrated.chain_hash_at("solo", 4).await.unwrap(),
                Some(prev),
                "{name}"
            );
        }
    }

    /// A trail copied into PostgreSQL (`wharf store copy`) goes on there: the next `seq`
    /// follows the copied ones and the chain continues.
    #[tokio::test]
    async fn a_copied_trail_goes_on_in_postgres() {
        if std::env::var_os("WHARF_TEST_NO_POSTGRES").is_some() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let source = Store::open_sqlite(&dir.path().join("s.db")).await.unwrap();
        source.append_events("n1", &deleted(3, "f")).await.unwrap();
        let dest = Store::open(&crate::Connect {
            url: crate::testing::new_database().await,
            ..crate::Connect::default()
        })
        .await
        .unwrap();
        source.copy_into(&dest).await.unwrap();
        let next = dest.append_events("n1", &deleted(2, "g")).await.unwrap();
        assert_eq!(
            next.iter().map(|r| (r.seq, r.node_seq)).collect::<Vec<_>>(),
            [(4, 4), (5, 5)]
        );
        assert_eq!(dest.verify_chain().await.unwrap(), Ok(5));
    }
}
