//! Client-side transfers' state, shared by every node of a cluster: who runs each transfer
//! (a lease), the runs, and where each source file's copy stands.
//!
//! A transfer runs on one node (or one `wharf transfer run` process) at a time: the holder
//! of its lease. A claim takes a lease that is free, run out, or held by the claimer's own
//! name (a node's name is its own among live nodes, so a lease under it was left by its
//! earlier process), and increments `claims`; every later write of the holder names its
//! claim and changes nothing once another took the lease over, as the handler queue does.
//!
//! Each version of a source file (path, size, modification time) has one row, which moves
//! `seen` → `copying` → `copied` → `delivered` → `done` (or ends `skipped` or `failed`).
//! The row is written before each step's effect is relied on, so a run cut off anywhere
//! resumes from the row: this is what keeps a file from being lost or delivered twice.
//!
//! Times are microseconds since the Unix epoch on the store's clock for leases
//! ([`Store::clock_us`]), this machine's for the rest.
//!
//! This module must never decide what a step does: wharf-transfers does.

use crate::backend::{Backing as _, Fetch, on_pool};
use crate::{Store, StoreError};

/// Where one source file's copy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// Listed at the source; nothing done at the destination yet.
    Seen,
    /// Being written under its temporary name at the destination (its final name chosen).
    Copying,
    /// Complete and verified under its temporary name.
    Copied,
    /// Under its final name at the destination; the source is still to be handled.
    Delivered,
    /// Delivered, and the source kept, deleted or moved as configured.
    Done,
    /// Left alone: its name was taken at the destination (`existing = "skip"`).
    Skipped,
    /// Given up after its attempts, or refused for good.
    Failed,
}

impl FileState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Seen => "seen",
            FileState::Copying => "copying",
            FileState::Copied => "copied",
            FileState::Delivered => "delivered",
            FileState::Done => "done",
            FileState::Skipped => "skipped",
            FileState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> FileState {
        match text {
            "copying" => FileState::Copying,
            "copied" => FileState::Copied,
            "delivered" => FileState::Delivered,
            "done" => FileState::Done,
            "skipped" => FileState::Skipped,
            "failed" => FileState::Failed,
            _ => FileState::Seen,
        }
    }

    /// Whether the file's copy has ended one way or the other.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            FileState::Done | FileState::Skipped | FileState::Failed
        )
    }
}

/// A transfer's lease, as claimed: what every write of its holder names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferLease {
    /// The transfer's name.
    pub transfer: String,
    /// Who holds it (a node's name, or a command's `NODE/cli/PID`).
    pub owner: String,
    /// The claim's number.
    pub claims: i64,
    /// The run asked for when the lease was claimed, if any: who asked.
    pub requested_by: Option<String>,
}

/// Who holds a transfer now, and what is asked of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    /// The transfer.
    pub transfer: String,
    /// The holder, while the lease runs.
    pub owner: Option<String>,
    /// When the lease ends unless renewed (store clock).
    pub lease_until_us: i64,
    /// A run asked for and not started yet: since when, and who asked.
    pub requested: Option<(i64, String)>,
}

/// One run of a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRun {
    /// Run id.
    pub id: i64,
    /// The transfer.
    pub transfer: String,
    /// The node (or command) that ran it.
    pub node: String,
    /// What started it (`schedule`, `cron`, `event`, `hand`...).
    pub trigger: String,
    /// `running`, `success` or `failure`.
    pub state: String,
    /// Start (µs since the epoch).
    pub started_us: i64,
    /// End, once ended.
    pub finished_us: Option<i64>,
    /// Files delivered.
    pub files: i64,
    /// Bytes delivered.
    pub bytes: i64,
    /// Files skipped.
    pub skipped: i64,
    /// Files that failed (for now or for good).
    pub failures: i64,
    /// Why it failed, if it did.
    pub message: Option<String>,
}

/// One version of a source file and where its copy stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferFile {
    /// Row id (also in the temporary name at the destination).
    pub id: i64,
    /// The transfer.
    pub transfer: String,
    /// Path below the source folder (`a.xml`, `sub/b.xml`).
    pub source: String,
    /// Size when listed.
    pub size: i64,
    /// Modification time when listed (µs since the epoch).
    pub mtime_us: i64,
    /// Where it stands.
    pub state: FileState,
    /// Path below the destination folder, once chosen.
    pub destination: Option<String>,
    /// SHA-256 of what was copied, once copied.
    pub sha256: Option<String>,
    /// Attempts that failed so far.
    pub attempts: i64,
    /// When it may be tried next.
    pub due_us: i64,
    /// The run that worked on it last.
    pub run_id: Option<i64>,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it was first listed.
    pub seen_us: i64,
    /// When its row last changed.
    pub updated_us: i64,
}

/// The changes one step makes to a file's row.
#[derive(Debug, Clone)]
pub struct FileStep {
    /// New state.
    pub state: FileState,
    /// Destination path (kept when `None`).
    pub destination: Option<String>,
    /// SHA-256 (kept when `None`).
    pub sha256: Option<String>,
    /// Attempts so far.
    pub attempts: i64,
    /// Next due time.
    pub due_us: i64,
    /// The run making the step.
    pub run_id: i64,
    /// The failure, or none.
    pub last_error: Option<String>,
}

fn run(row: &impl Fetch) -> Result<TransferRun, StoreError> {
    Ok(TransferRun {
        id: row.int("id")?,
        transfer: row.text("transfer")?,
        node: row.text("node")?,
        trigger: row.text("trigger")?,
        state: row.text("state")?,
        started_us: row.int("started_us")?,
        finished_us: row.opt_int("finished_us")?,
        files: row.int("files")?,
        bytes: row.int("bytes")?,
        skipped: row.int("skipped")?,
        failures: row.int("failures")?,
        message: row.opt_text("message")?,
    })
}

fn file(row: &impl Fetch) -> Result<TransferFile, StoreError> {
    Ok(TransferFile {
        id: row.int("id")?,
        transfer: row.text("transfer")?,
        source: row.text("source")?,
        size: row.int("size")?,
        mtime_us: row.int("mtime_us")?,
        state: FileState::parse(&row.text("state")?),
        destination: row.opt_text("destination")?,
        sha256: row.opt_text("sha256")?,
        attempts: row.int("attempts")?,
        due_us: row.int("due_us")?,
        run_id: row.opt_int("run_id")?,
        last_error: row.opt_text("last_error")?,
        seen_us: row.int("seen_us")?,
        updated_us: row.int("updated_us")?,
    })
}

fn lease_view(row: &impl Fetch) -> Result<LeaseView, StoreError> {
    let requested = match (row.opt_int("requested_us")?, row.opt_text("requested_by")?) {
        (Some(at), by) => Some((at, by.unwrap_or_default())),
        _ => None,
    };
    Ok(LeaseView {
        transfer: row.text("transfer")?,
        owner: row.opt_text("owner")?,
        lease_until_us: row.int("lease_until_us")?,
        requested,
    })
}

/// The condition a holder's file writes carry: the lease is still theirs under their claim.
const HELD: &str = "EXISTS (SELECT 1 FROM transfer_leases l WHERE l.transfer = $2 \
                    AND l.owner = $3 AND l.claims = $4)";

/// Most rows one listing call returns.
const MAX_ROWS: i64 = 100_000;

impl Store {
    /// Takes `transfer`'s lease for `owner` until `until_us` when it is free, run out at
    /// `now_us`, or already `owner`'s; `None` when another holds it. A run asked for is
    /// handed to the claimer (and cleared) with the lease.
    pub async fn claim_transfer(
        &self,
        transfer: &str,
        owner: &str,
        now_us: i64,
        until_us: i64,
    ) -> Result<Option<TransferLease>, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin_write("transfer_leases").await?;
            sqlx::query(
                "INSERT INTO transfer_leases (transfer) VALUES ($1) ON CONFLICT (transfer) DO NOTHING",
            )
            .bind(transfer)
            .execute(&mut *tx)
            .await?;
            let asked: Option<(Option<i64>, Option<String>)> = sqlx::query_as(
                "SELECT requested_us, requested_by FROM transfer_leases
                  WHERE transfer = $1 AND (owner IS NULL OR owner = $2 OR lease_until_us < $3)",
            )
            .bind(transfer)
            .bind(owner)
            .bind(now_us)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((asked_us, asked_by)) = asked else {
                tx.commit().await?;
                return Ok(None);
            };
            let claims: i64 = sqlx::query_scalar(
                "UPDATE transfer_leases
                    SET owner = $2, lease_until_us = $3, claims = claims + 1,
                        requested_us = NULL, requested_by = NULL
                  WHERE transfer = $1 RETURNING claims",
            )
            .bind(transfer)
            .bind(owner)
            .bind(until_us)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Some(TransferLease {
                transfer: transfer.to_owned(),
                owner: owner.to_owned(),
                claims,
                requested_by: asked_us.map(|_| asked_by.unwrap_or_default()),
            }))
        })
    }

    /// Extends `lease` to `until_us`; `false` when it is no longer held under that claim.
    pub async fn renew_transfer_lease(
        &self,
        lease: &TransferLease,
        until_us: i64,
    ) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE transfer_leases SET lease_until_us = $1
                  WHERE transfer = $2 AND owner = $3 AND claims = $4",
            )
            .bind(until_us)
            .bind(&lease.transfer)
            .bind(&lease.owner)
            .bind(lease.claims)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Gives `lease` up (its run ended), so any node may claim the transfer at once.
    pub async fn release_transfer(&self, lease: &TransferLease) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE transfer_leases SET owner = NULL, lease_until_us = 0
                  WHERE transfer = $1 AND owner = $2 AND claims = $3",
            )
            .bind(&lease.transfer)
            .bind(&lease.owner)
            .bind(lease.claims)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Asks for a run of `transfer` by `by`; a run already asked for stays as it was.
    pub async fn request_transfer_run(&self, transfer: &str, by: &str) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let now = crate::now_us();
            let mut tx = pool.begin_write("transfer_leases").await?;
            sqlx::query(
                "INSERT INTO transfer_leases (transfer) VALUES ($1) ON CONFLICT (transfer) DO NOTHING",
            )
            .bind(transfer)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE transfer_leases SET requested_us = $2, requested_by = $3
                  WHERE transfer = $1 AND requested_us IS NULL",
            )
            .bind(transfer)
            .bind(now)
            .bind(by)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Every transfer's lease and pending request.
    pub async fn transfer_leases(&self) -> Result<Vec<LeaseView>, StoreError> {
        on_pool!(self, pool => {
            sqlx::query("SELECT * FROM transfer_leases ORDER BY transfer")
                .fetch_all(pool)
                .await?
                .iter()
                .map(lease_view)
                .collect()
        })
    }

    /// Records a run of `lease`'s transfer starting; its id.
    pub async fn start_transfer_run(
        &self,
        lease: &TransferLease,
        node: &str,
        trigger: &str,
    ) -> Result<i64, StoreError> {
        on_pool!(self, pool => {
            Ok(sqlx::query_scalar(
                "INSERT INTO transfer_runs (transfer, node, trigger, state, started_us)
                 VALUES ($1, $2, $3, 'running', $4) RETURNING id",
            )
            .bind(&lease.transfer)
            .bind(node)
            .bind(trigger)
            .bind(crate::now_us())
            .fetch_one(pool)
            .await?)
        })
    }

    /// Records run `id`'s end with its figures.
    pub async fn finish_transfer_run(&self, finished: &TransferRun) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE transfer_runs SET state = $2, finished_us = $3, files = $4, bytes = $5,
                        skipped = $6, failures = $7, message = $8 WHERE id = $1",
            )
            .bind(finished.id)
            .bind(&finished.state)
            .bind(finished.finished_us.unwrap_or_else(crate::now_us))
            .bind(finished.files)
            .bind(finished.bytes)
            .bind(finished.skipped)
            .bind(finished.failures)
            .bind(&finished.message)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Ends runs left `running` by `node`'s earlier process (a node's name is its own among
    /// live nodes: at its start, none of its runs goes on).
    pub async fn end_transfer_runs_of(&self, node: &str) -> Result<u64, StoreError> {
        on_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE transfer_runs SET state = 'failure', finished_us = $2,
                        message = 'cut off: the process running it stopped'
                  WHERE node = $1 AND state = 'running'",
            )
            .bind(node)
            .bind(crate::now_us())
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }

    /// Ends the runs left `running` by a runner that no longer holds its transfer's lease at
    /// `now_us` (store clock): its process was killed, or its node died and another took
    /// the transfer over. A live run renews its lease, so it is never ended here.
    pub async fn end_cut_transfer_runs(&self, now_us: i64) -> Result<u64, StoreError> {
        on_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE transfer_runs SET state = 'failure', finished_us = $2,
                        message = 'cut off: the process running it stopped'
                  WHERE state = 'running' AND NOT EXISTS (
                        SELECT 1 FROM transfer_leases l
                         WHERE l.transfer = transfer_runs.transfer AND l.owner = transfer_runs.node
                           AND l.lease_until_us >= $1)",
            )
            .bind(now_us)
            .bind(crate::now_us())
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }

    /// The newest `limit` runs of `transfer` (all transfers when empty), newest first.
    pub async fn transfer_runs(
        &self,
        transfer: &str,
        limit: i64,
    ) -> Result<Vec<TransferRun>, StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "SELECT * FROM transfer_runs WHERE ($1 = '' OR transfer = $1) ORDER BY id DESC LIMIT $2",
            )
            .bind(transfer)
            .bind(limit.clamp(1, MAX_ROWS))
            .fetch_all(pool)
            .await?
            .iter()
            .map(run)
            .collect()
        })
    }

    /// Records the source files a run listed, under `lease`; versions already known keep
    /// their rows. Returns how many were new.
    pub async fn note_transfer_files(
        &self,
        lease: &TransferLease,
        listed: &[(String, i64, i64)],
    ) -> Result<u64, StoreError> {
        on_pool!(self, pool => {
            let now = crate::now_us();
            let mut added = 0;
            for chunk in listed.chunks(500) {
                let mut tx = pool.begin_write("transfer_files").await?;
                for (source, size, mtime_us) in chunk {
                    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "INSERT INTO transfer_files
                           (transfer, source, size, mtime_us, state, due_us, seen_us, updated_us)
                         SELECT $2, $1, $5, $6, 'seen', $7, $7, $7 WHERE {HELD}
                         ON CONFLICT (transfer, source, size, mtime_us) DO NOTHING"
                    )))
                    .bind(source)
                    .bind(&lease.transfer)
                    .bind(&lease.owner)
                    .bind(lease.claims)
                    .bind(size)
                    .bind(mtime_us)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    added += done.rows_affected();
                }
                tx.commit().await?;
            }
            Ok(added)
        })
    }

    /// `transfer`'s files whose copy has not ended and that are due at `now_us`, oldest
    /// first, at most `limit`.
    pub async fn open_transfer_files(
        &self,
        transfer: &str,
        now_us: i64,
        limit: i64,
    ) -> Result<Vec<TransferFile>, StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "SELECT * FROM transfer_files
                  WHERE transfer = $1 AND state IN ('seen', 'copying', 'copied', 'delivered')
                    AND due_us <= $2
                  ORDER BY id LIMIT $3",
            )
            .bind(transfer)
            .bind(now_us)
            .bind(limit.clamp(1, MAX_ROWS))
            .fetch_all(pool)
            .await?
            .iter()
            .map(file)
            .collect()
        })
    }

    /// When `transfer`'s next open file is due, if any is open.
    pub async fn next_transfer_file_due(&self, transfer: &str) -> Result<Option<i64>, StoreError> {
        on_pool!(self, pool => {
            Ok(sqlx::query_scalar(
                "SELECT MIN(due_us) FROM transfer_files
                  WHERE transfer = $1 AND state IN ('seen', 'copying', 'copied', 'delivered')",
            )
            .bind(transfer)
            .fetch_one(pool)
            .await?)
        })
    }

    /// Writes `step` to file `id` under `lease`; `false` when the lease is no longer held
    /// under that claim (nothing written).
    pub async fn step_transfer_file(
        &self,
        lease: &TransferLease,
        id: i64,
        step: &FileStep,
    ) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let done = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE transfer_files
                    SET state = $5, destination = COALESCE($6, destination),
                        sha256 = COALESCE($7, sha256), attempts = $8, due_us = $9,
                        run_id = $10, last_error = $11, updated_us = $12
                  WHERE id = $1 AND transfer = $2 AND {HELD}"
            )))
            .bind(id)
            .bind(&lease.transfer)
            .bind(&lease.owner)
            .bind(lease.claims)
            .bind(step.state.as_str())
            .bind(&step.destination)
            .bind(&step.sha256)
            .bind(step.attempts)
            .bind(step.due_us)
            .bind(step.run_id)
            .bind(&step.last_error)
            .bind(crate::now_us())
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// `transfer`'s files, newest change first, at most `limit` (all transfers when empty).
    pub async fn transfer_files(
        &self,
        transfer: &str,
        limit: i64,
    ) -> Result<Vec<TransferFile>, StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "SELECT * FROM transfer_files WHERE ($1 = '' OR transfer = $1)
                  ORDER BY updated_us DESC, id DESC LIMIT $2",
            )
            .bind(transfer)
            .bind(limit.clamp(1, MAX_ROWS))
            .fetch_all(pool)
            .await?
            .iter()
            .map(file)
            .collect()
        })
    }

    /// Forgets `transfer`'s ended files whose version a complete listing no longer shows
    /// (the source file was deleted, moved or changed): only a version still at the source
    /// needs remembering, so it is not sent again. Rows of `run_id` are kept (the run that
    /// listed) so its history stays whole until the next run. Returns how many.
    pub async fn forget_transfer_files(
        &self,
        lease: &TransferLease,
        listed: &std::collections::HashSet<(String, i64, i64)>,
        run_id: i64,
    ) -> Result<u64, StoreError> {
        on_pool!(self, pool => {
            let ended: Vec<(i64, String, i64, i64)> = sqlx::query_as(
                "SELECT id, source, size, mtime_us FROM transfer_files
                  WHERE transfer = $1 AND state IN ('done', 'skipped', 'failed')
                    AND (run_id IS NULL OR run_id <> $2)",
            )
            .bind(&lease.transfer)
            .bind(run_id)
            .fetch_all(pool)
            .await?;
            let mut forgotten = 0;
            for chunk in ended
                .iter()
                .filter(|(_, s, z, m)| !listed.contains(&(s.clone(), *z, *m)))
                .map(|(id, ..)| *id)
                .collect::<Vec<_>>()
                .chunks(500)
            {
                let ids = serde_json::Value::from(chunk.to_vec()).to_string();
                let sql = match self.backend() {
                    crate::Backend::Sqlite => format!(
                        "DELETE FROM transfer_files WHERE id IN (SELECT value FROM json_each($1)) AND transfer = $2 AND {HELD}"
                    ),
                    crate::Backend::Postgres => format!(
                        "DELETE FROM transfer_files WHERE id IN (SELECT CAST(jsonb_array_elements_text(CAST($1 AS jsonb)) AS BIGINT)) AND transfer = $2 AND {HELD}"
                    ),
                };
                let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(ids)
                    .bind(&lease.transfer)
                    .bind(&lease.owner)
                    .bind(lease.claims)
                    .execute(pool)
                    .await?;
                forgotten += done.rows_affected();
            }
            Ok(forgotten)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::backends;

    fn step(state: FileState, run_id: i64) -> FileStep {
        FileStep {
            state,
            destination: Some("a.xml".into()),
            sha256: None,
            attempts: 0,
            due_us: 0,
            run_id,
            last_error: None,
        }
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_its_writes_are_fenced() {
        for t in backends().await {
            let s = &t.store;
            let now = s.clock_us().await.unwrap();
            let a = s
                .claim_transfer("pull", "n1", now, now + 30_000_000)
                .await
                .unwrap();
            let a = a.expect(t.name);
            assert!(a.requested_by.is_none(), "{}", t.name);
            // Another node waits for the lease; the same node (restarted) takes it back.
            assert!(
                s.claim_transfer("pull", "n2", now, now + 1)
                    .await
                    .unwrap()
                    .is_none()
            );
            let again = s
                .claim_transfer("pull", "n1", now, now + 30_000_000)
                .await
                .unwrap();
            let again = again.expect(t.name);
            assert_eq!(again.claims, a.claims + 1, "{}", t.name);
            // The earlier claim's writes change nothing now.
            assert!(!s.renew_transfer_lease(&a, now + 60_000_000).await.unwrap());
            let listed = vec![("a.xml".to_owned(), 3, 7)];
            assert_eq!(
                s.note_transfer_files(&a, &listed).await.unwrap(),
                0,
                "{}",
                t.name
            );
            assert_eq!(s.note_transfer_files(&again, &listed).await.unwrap(), 1);
            assert_eq!(s.note_transfer_files(&again, &listed).await.unwrap(), 0);
            let open = s.open_transfer_files("pull", i64::MAX, 10).await.unwrap();
            assert_eq!(open.len(), 1, "{}", t.name);
            assert_eq!(open[0].state, FileState::Seen);
            let run = s.start_transfer_run(&again, "n1", "hand").await.unwrap();
            assert!(
                !s.step_transfer_file(&a, open[0].id, &step(FileState::Copying, run))
                    .await
                    .unwrap()
            );
            assert!(
                s.step_transfer_file(&again, open[0].id, &step(FileState::Done, run))
                    .await
                    .unwrap()
            );
            assert!(
                s.open_transfer_files("pull", i64::MAX, 10)
                    .await
                    .unwrap()
                    .is_empty()
            );
            let files = s.transfer_files("pull", 10).await.unwrap();
            assert_eq!(files[0].destination.as_deref(), Some("a.xml"), "{}", t.name);
            // A lease run out is anyone's.
            s.renew_transfer_lease(&again, now - 1).await.unwrap();
            let b = s
                .claim_transfer("pull", "n2", now, now + 30_000_000)
                .await
                .unwrap();
            assert!(b.is_some(), "{}", t.name);
        }
    }

    #[tokio::test]
    async fn a_request_goes_with_the_next_claim_and_ended_files_are_forgotten_once_gone() {
        for t in backends().await {
            let s = &t.store;
            s.request_transfer_run("push", "admin alice").await.unwrap();
            s.request_transfer_run("push", "someone else")
                .await
                .unwrap();
            let views = s.transfer_leases().await.unwrap();
            assert_eq!(
                views[0].requested.as_ref().map(|r| r.1.as_str()),
                Some("admin alice")
            );
            let now = s.clock_us().await.unwrap();
            let lease = s
                .claim_transfer("push", "n1", now, now + 30_000_000)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                lease.requested_by.as_deref(),
                Some("admin alice"),
                "{}",
                t.name
            );
            assert!(s.transfer_leases().await.unwrap()[0].requested.is_none());
            let listed = vec![("a".to_owned(), 1, 1), ("b".to_owned(), 2, 2)];
            s.note_transfer_files(&lease, &listed).await.unwrap();
            let run = s.start_transfer_run(&lease, "n1", "hand").await.unwrap();
            for f in s.open_transfer_files("push", i64::MAX, 10).await.unwrap() {
                s.step_transfer_file(&lease, f.id, &step(FileState::Done, run))
                    .await
                    .unwrap();
            }
            let later = s.start_transfer_run(&lease, "n1", "hand").await.unwrap();
            let still: std::collections::HashSet<_> =
                [("b".to_owned(), 2, 2)].into_iter().collect();
            assert_eq!(
                s.forget_transfer_files(&lease, &still, later)
                    .await
                    .unwrap(),
                1,
                "{}",
                t.name
            );
            let left = s.transfer_files("push", 10).await.unwrap();
            assert_eq!(left.len(), 1);
            assert_eq!(left[0].source, "b");
            s.finish_transfer_run(&TransferRun {
                id: later,
                transfer: "push".into(),
                node: "n1".into(),
                trigger: "hand".into(),
                state: "success".into(),
                started_us: 0,
                finished_us: None,
                files: 1,
                bytes: 2,
                skipped: 0,
                failures: 0,
                message: None,
            })
            .await
            .unwrap();
            let runs = s.transfer_runs("push", 10).await.unwrap();
            assert_eq!(runs[0].id, later);
            assert_eq!(runs[0].state, "success");
            assert_eq!(runs[1].state, "running");
            // Its runner still holds the lease: not cut off. Once the lease runs out, it is.
            let now = s.clock_us().await.unwrap();
            assert_eq!(s.end_cut_transfer_runs(now).await.unwrap(), 0, "{}", t.name);
            s.renew_transfer_lease(&lease, now - 1).await.unwrap();
            assert_eq!(s.end_cut_transfer_runs(now).await.unwrap(), 1, "{}", t.name);
            s.release_transfer(&lease).await.unwrap();
            assert!(
                s.claim_transfer("push", "n2", now, now + 1)
                    .await
                    .unwrap()
                    .is_some()
            );
        }
    }
}
