//! Retention of the audit trail: a node's oldest records move out of the store into
//! compressed archive files (written by the binary), and the store keeps, per file, a
//! checkpoint of the chain — the records' numbers, the hash the first one follows, the last
//! one's hash, the file's name and digest. The newest checkpoint of a node is where its
//! chain goes on in the store, so [`Store::verify_chains`] checks the store's part alone
//! and `wharf audit verify` walks the archives first, then the store.
//!
//! [`Store::commit_archive`] records a checkpoint and deletes the records it covers in one
//! transaction under the node's chain lock (the lock appends take), and only when the
//! checkpoint follows the previous one and names the records exactly as the store holds
//! them: an archive can never hide a record that was not written to it, nor leave a gap.
//! A node's newest record always stays in the store: appends chain on it.
//!
//! This module must never write or read the files: the binary does, before the commit.

use crate::audit::{AuditRecord, GENESIS};
use crate::backend::{Backing as _, Fetch, on_pool};
use crate::{Store, StoreError};

/// One archive file's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The node whose chain it is.
    pub node: String,
    /// The first record (chain number) in the file.
    pub first_seq: i64,
    /// The last record in the file.
    pub last_seq: i64,
    /// The hash the first record follows (the previous file's `last_hash`, or the genesis).
    pub first_prev: String,
    /// The last record's hash: the store's records of the node follow it.
    pub last_hash: String,
    /// Records in the file (`last_seq - first_seq + 1`).
    pub records: i64,
    /// The file's name, in the archive folder.
    pub file: String,
    /// SHA-256 of the file as written.
    pub sha256: String,
    /// When it was made (µs since the Unix epoch).
    pub made_us: i64,
}

/// Why [`Store::commit_archive`] refused a checkpoint: nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveRefusal {
    /// It does not start where the node's last checkpoint ends.
    NotNext(String),
    /// The store's records differ from the checkpoint (count, last hash, or the head).
    Differs(String),
}

fn checkpoint(row: &impl Fetch) -> Result<Checkpoint, StoreError> {
    Ok(Checkpoint {
        node: row.text("node")?,
        first_seq: row.int("first_seq")?,
        last_seq: row.int("last_seq")?,
        first_prev: row.text("first_prev")?,
        last_hash: row.text("last_hash")?,
        records: row.int("records")?,
        file: row.text("file")?,
        sha256: row.text("sha256")?,
        made_us: row.int("made_us")?,
    })
}

/// Where a node's archived records end: its newest checkpoint's last number and hash.
pub(crate) const LAST_CHECKPOINT: &str = "SELECT last_seq, last_hash FROM audit_checkpoints \
     WHERE node = $1 ORDER BY first_seq DESC LIMIT 1";

const COLUMNS: &str =
    "node, first_seq, last_seq, first_prev, last_hash, records, file, sha256, made_us";

impl Store {
    /// Every checkpoint of `node`'s chain, oldest first.
    pub async fn audit_checkpoints(&self, node: &str) -> Result<Vec<Checkpoint>, StoreError> {
        on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM audit_checkpoints WHERE node = $1 ORDER BY first_seq"
            )))
            .bind(node)
            .fetch_all(pool)
            .await?;
            rows.iter().map(checkpoint).collect()
        })
    }

    /// The newest checkpoint of `node`'s chain: where its records in the store begin.
    pub async fn audit_checkpoint(&self, node: &str) -> Result<Option<Checkpoint>, StoreError> {
        on_pool!(self, pool => {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM audit_checkpoints WHERE node = $1 \
                 ORDER BY first_seq DESC LIMIT 1"
            )))
            .bind(node)
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(checkpoint).transpose()
        })
    }

    /// The nodes with a checkpoint, by name.
    pub async fn checkpointed_nodes(&self) -> Result<Vec<String>, StoreError> {
        on_pool!(self, pool => {
            Ok(sqlx::query_scalar("SELECT DISTINCT node FROM audit_checkpoints ORDER BY node")
                .fetch_all(pool)
                .await?)
        })
    }

    /// Up to `limit` of `node`'s oldest records in the store, in chain order, each written
    /// before `before_us`, without a gap, and never its newest record, nor one the event
    /// handlers still need: past the node's handler cursor (not yet looked at), or the
    /// event of a job queued or running.
    pub async fn archivable_records(
        &self,
        node: &str,
        before_us: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let from = self
            .audit_checkpoint(node)
            .await?
            .map_or(1, |c| c.last_seq + 1);
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT node_seq, time_us, record_json FROM events \
                 WHERE node = $1 AND node_seq >= $2 \
                 AND node_seq < (SELECT MAX(node_seq) FROM events WHERE node = $1) \
                 AND seq <= COALESCE((SELECT seq FROM handler_cursors WHERE node = $1), seq) \
                 AND seq < COALESCE((SELECT MIN(event_seq) FROM handler_jobs \
                     WHERE state IN ('queued', 'running')), seq + 1) \
                 ORDER BY node_seq ASC LIMIT $3",
            )
            .bind(node)
            .bind(from)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            let mut records = Vec::with_capacity(rows.len());
            for (expected, row) in (from..).zip(rows.iter()) {
                // A clock that went back leaves a later record older: the run stops there
                // rather than leave a gap.
                if row.int("node_seq")? != expected || row.int("time_us")? >= before_us {
                    break;
                }
                records.push(crate::audit::parse_stored(&row.text("record_json")?)?);
            }
            Ok(records)
        })
    }

    /// Records `checkpoint` and removes the records it covers from the store, in one
    /// transaction under `node`'s chain lock; or refuses, changing nothing.
    pub async fn commit_archive(
        &self,
        checkpoint: &Checkpoint,
    ) -> Result<Result<(), ArchiveRefusal>, StoreError> {
        let node = checkpoint.node.as_str();
        on_pool!(self, pool => {
            let mut tx = pool.begin_chain(node).await?;
            let last = sqlx::query(LAST_CHECKPOINT)
            .bind(node)
            .fetch_optional(&mut *tx)
            .await?;
            let (end, end_hash) = match &last {
                Some(row) => (row.int("last_seq")?, row.text("last_hash")?),
                None => (0, GENESIS.to_owned()),
            };
            if checkpoint.first_seq != end + 1 || checkpoint.first_prev != end_hash {
                return Ok(Err(ArchiveRefusal::NotNext(format!(
                    "node {node}'s archived records end at {end}; this archive starts at {}",
                    checkpoint.first_seq
                ))));
            }
            let row = sqlx::query(
                "SELECT COUNT(*) AS n, \
                 (SELECT hash FROM events WHERE node = $1 AND node_seq = $3) AS last_hash, \
                 (SELECT prev FROM events WHERE node = $1 AND node_seq = $2) AS first_prev, \
                 (SELECT MAX(node_seq) FROM events WHERE node = $1) AS head, \
                 (SELECT prev FROM events WHERE node = $1 AND node_seq = $3 + 1) AS next_prev \
                 FROM events WHERE node = $1 AND node_seq BETWEEN $2 AND $3",
            )
            .bind(node)
            .bind(checkpoint.first_seq)
            .bind(checkpoint.last_seq)
            .fetch_one(&mut *tx)
            .await?;
            let same = row.int("n")? == checkpoint.records
                && checkpoint.records == checkpoint.last_seq - checkpoint.first_seq + 1
                && row.opt_text("last_hash")?.as_deref() == Some(checkpoint.last_hash.as_str())
                && row.opt_text("first_prev")?.as_deref() == Some(checkpoint.first_prev.as_str())
                && row.opt_int("head")?.is_some_and(|head| head > checkpoint.last_seq)
                // The record after the archive follows it: a break just past the archive
                // would otherwise be sealed in.
                && row.opt_text("next_prev")?.as_deref() == Some(checkpoint.last_hash.as_str());
            if !same {
                return Ok(Err(ArchiveRefusal::Differs(format!(
                    "node {node}'s records {}-{} in the store are not the archive's",
                    checkpoint.first_seq, checkpoint.last_seq
                ))));
            }
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO audit_checkpoints ({COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            )))
            .bind(node)
            .bind(checkpoint.first_seq)
            .bind(checkpoint.last_seq)
            .bind(&checkpoint.first_prev)
            .bind(&checkpoint.last_hash)
            .bind(checkpoint.records)
            .bind(&checkpoint.file)
            .bind(&checkpoint.sha256)
            .bind(checkpoint.made_us)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM events WHERE node = $1 AND node_seq BETWEEN $2 AND $3")
                .bind(node)
                .bind(checkpoint.first_seq)
                .bind(checkpoint.last_seq)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Ok(()))
        })
    }
}

#[cfg(test)]
mod tests {
    use wharf_core::{Event, EventKind};

    use super::{ArchiveRefusal, Checkpoint};
    use crate::audit::GENESIS;

    fn checkpoint(node: &str, records: &[crate::AuditRecord], first_prev: &str) -> Checkpoint {
        let (first, last) = (&records[0], &records[records.len() - 1]);
        Checkpoint {
            node: node.to_owned(),
            first_seq: first.node_seq,
            last_seq: last.node_seq,
            first_prev: first_prev.to_owned(),
            last_hash: last.hash.clone(),
            records: i64::try_from(records.len()).unwrap(),
            file: format!("{node}-{}-{}.jsonl.gz", first.node_seq, last.node_seq),
            sha256: "0".repeat(64),
            made_us: 1,
        }
    }

    #[tokio::test]
    async fn a_checkpoint_moves_the_chain_s_start_and_never_leaves_a_gap() {
        for t in crate::testing::backends().await {
            let s = &t.store;
            let events: Vec<Event> = (0..6)
                .map(|i| Event::new(EventKind::FileDeleted).path(format!("/f{i}")))
                .collect();
            s.append_events("n1", &events).await.unwrap();
            s.append_events("n2", &events[..2]).await.unwrap();
            // Everything is old enough, but the newest record stays: appends chain on it.
            let old = s.archivable_records("n1", i64::MAX, 100).await.unwrap();
            assert_eq!(old.len(), 5, "{}", t.name);
            assert!(s.archivable_records("n1", 0, 100).await.unwrap().is_empty());
            // A checkpoint that does not start at the chain's start is refused.
            let skipping = checkpoint("n1", &old[1..3], &old[0].hash);
            assert!(
                matches!(
                    s.commit_archive(&skipping).await.unwrap(),
                    Err(ArchiveRefusal::NotNext(_))
                ),
                "{}",
                t.name
            );
            // One that misnames the records is refused too.
            let mut wrong = checkpoint("n1", &old[..3], GENESIS);
            wrong.last_hash = old[3].hash.clone();
            assert!(
                matches!(
                    s.commit_archive(&wrong).await.unwrap(),
                    Err(ArchiveRefusal::Differs(_))
                ),
                "{}",
                t.name
            );
            s.commit_archive(&checkpoint("n1", &old[..3], GENESIS))
                .await
                .unwrap()
                .unwrap();
            // The same one again: it no longer follows.
            assert!(
                s.commit_archive(&checkpoint("n1", &old[..3], GENESIS))
                    .await
                    .unwrap()
                    .is_err()
            );
            // The store's part of the chain verifies from the checkpoint; the other node's
            // chain is untouched.
            let reports = s.verify_chains().await.unwrap();
            let n1 = reports.iter().find(|r| r.node == "n1").unwrap();
            assert_eq!((n1.records, n1.broken.clone()), (6, None), "{}", t.name);
            assert_eq!(
                s.archivable_records("n1", i64::MAX, 100)
                    .await
                    .unwrap()
                    .len(),
                2
            );
            // Appends go on after the head as before.
            let more = s.append_events("n1", &events[..1]).await.unwrap();
            assert_eq!(more[0].node_seq, 7, "{}", t.name);
            assert_eq!(s.audit_checkpoints("n1").await.unwrap().len(), 1);
            assert_eq!(s.checkpointed_nodes().await.unwrap(), ["n1"], "{}", t.name);
            // An archived record put back in the store is found, not skipped.
            s.execute_raw(
                "INSERT INTO events (seq, id, name, time_us, account, record_json, prev, hash, node, node_seq, protocol, outcome) \
                 SELECT seq + 1000, id, name, time_us, 'mallory', record_json, prev, hash, node, 2, protocol, outcome \
                 FROM events WHERE node = 'n1' AND node_seq = 4",
            )
            .await;
            let n1 = s
                .verify_chains()
                .await
                .unwrap()
                .into_iter()
                .find(|r| r.node == "n1")
                .unwrap();
            assert_eq!(n1.broken.map(|b| b.0), Some(2), "{}", t.name);
            s.execute_raw("DELETE FROM events WHERE node = 'n1' AND node_seq = 2")
                .await;
            // A record deleted after the checkpoint is still found missing.
            s.execute_raw("DELETE FROM events WHERE node = 'n1' AND node_seq = 5")
                .await;
            let n1 = s
                .verify_chains()
                .await
                .unwrap()
                .into_iter()
                .find(|r| r.node == "n1")
                .unwrap();
            assert_eq!(n1.broken.map(|b| b.0), Some(5), "{}", t.name);
            // Every record of the store's part gone: found, and the next append goes on
            // from the checkpoint rather than from the start.
            s.execute_raw("DELETE FROM events WHERE node = 'n1'").await;
            let n1 = s
                .verify_chains()
                .await
                .unwrap()
                .into_iter()
                .find(|r| r.node == "n1")
                .unwrap();
            assert_eq!(n1.broken.map(|b| b.0), Some(4), "{}", t.name);
            let next = s.append_events("n1", &events[..1]).await.unwrap();
            assert_eq!(
                (next[0].node_seq, next[0].prev.as_str()),
                (4, old[2].hash.as_str()),
                "{}",
                t.name
            );
        }
    }

    #[tokio::test]
    async fn an_archive_never_seals_a_break_just_past_it() {
        for t in crate::testing::backends().await {
            let s = &t.store;
            let events: Vec<Event> = (0..5)
                .map(|i| Event::new(EventKind::FileDeleted).path(format!("/g{i}")))
                .collect();
            s.append_events("n1", &events).await.unwrap();
            let old = s.archivable_records("n1", i64::MAX, 100).await.unwrap();
            // Record 4 given another hash: 1-4 would hold as a file, 5 no longer follows.
            s.execute_raw("UPDATE events SET hash = 'forged' WHERE node = 'n1' AND node_seq = 4")
                .await;
            let mut forged = checkpoint("n1", &old[..4], GENESIS);
            forged.last_hash = "forged".to_owned();
            assert!(
                matches!(
                    s.commit_archive(&forged).await.unwrap(),
                    Err(ArchiveRefusal::Differs(_))
                ),
                "{}",
                t.name
            );
        }
    }

    #[tokio::test]
    async fn records_the_handlers_still_need_stay() {
        for t in crate::testing::backends().await {
            let s = &t.store;
            let events: Vec<Event> = (0..6)
                .map(|i| Event::new(EventKind::FileDeleted).path(format!("/h{i}")))
                .collect();
            let made = s.append_events("n1", &events).await.unwrap();
            // The handlers looked up to record 4, and record 3's job is still queued.
            s.handler_cursor("n1").await.unwrap();
            let sql: &'static str = Box::leak(
                format!(
                    "UPDATE handler_cursors SET seq = {}; \
                     INSERT INTO handler_jobs (node, handler, event_seq, state, due_us, created_us) \
                     VALUES ('n1', 'scan', {}, 'queued', 0, 0)",
                    made[3].seq, made[2].seq
                )
                .into_boxed_str(),
            );
            s.execute_raw(sql).await;
            let old = s.archivable_records("n1", i64::MAX, 100).await.unwrap();
            assert_eq!(old.len(), 2, "{}", t.name);
            s.execute_raw("UPDATE handler_jobs SET state = 'done'")
                .await;
            let old = s.archivable_records("n1", i64::MAX, 100).await.unwrap();
            assert_eq!(old.len(), 4, "{}", t.name);
        }
    }
}
