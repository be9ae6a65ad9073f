//! The event handlers' durable queue.
//!
//! Each node keeps a cursor: the `seq` of the last audit record it has matched against its
//! handlers. Matching a batch inserts one job per (handler, record) and moves the cursor in
//! the same transaction, so a crash either keeps both or neither: no record is skipped and
//! no job is queued twice (a job is unique per handler and record). Jobs then move
//! `queued` → `running` → `done` or `failed`; a job found `running` when its node starts
//! again was cut off by a crash and is queued again.

use crate::backend::{Backing as _, Fetch, on_pool};
use crate::{Store, StoreError};

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for its due time.
    Queued,
    /// Taken by a worker.
    Running,
    /// Finished.
    Done,
    /// Given up.
    Failed,
}

impl JobState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> JobState {
        match text {
            "running" => JobState::Running,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            _ => JobState::Queued,
        }
    }
}

/// One handler run on one audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerJob {
    /// Queue id.
    pub id: i64,
    /// The node that queued it and runs it.
    pub node: String,
    /// The handler's name.
    pub handler: String,
    /// The audit record it acts on.
    pub event_seq: i64,
    /// Where it stands.
    pub state: JobState,
    /// Attempts that failed so far.
    pub attempts: u32,
    /// When it may run next (µs since the Unix epoch).
    pub due_us: i64,
    /// When it was queued.
    pub created_us: i64,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

fn job(row: &impl Fetch) -> Result<HandlerJob, StoreError> {
    Ok(HandlerJob {
        id: row.int("id")?,
        node: row.text("node")?,
        handler: row.text("handler")?,
        event_seq: row.int("event_seq")?,
        state: JobState::parse(&row.text("state")?),
        attempts: u32::try_from(row.int("attempts")?).unwrap_or(u32::MAX),
        due_us: row.int("due_us")?,
        created_us: row.int("created_us")?,
        last_error: row.opt_text("last_error")?,
    })
}

impl Store {
    /// The node's cursor. A node seen for the first time starts at the trail's head: handlers
    /// act on what happens from now on, not on the past.
    pub async fn handler_cursor(&self, node: &str) -> Result<i64, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin_write("handler_cursors").await?;
            let found: Option<i64> =
                sqlx::query_scalar("SELECT seq FROM handler_cursors WHERE node = $1")
                    .bind(node)
                    .fetch_optional(&mut *tx)
                    .await?;
            let seq = match found {
                Some(seq) => seq,
                None => {
                    let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
                        .fetch_one(&mut *tx)
                        .await?;
                    sqlx::query("INSERT INTO handler_cursors (node, seq) VALUES ($1, $2)")
                        .bind(node)
                        .bind(head)
                        .execute(&mut *tx)
                        .await?;
                    head
                }
            };
            tx.commit().await?;
            Ok(seq)
        })
    }

    /// Queues `(handler, event_seq)` jobs due at `due_us` each, and moves the node's cursor
    /// to `cursor`, in one transaction. A job already queued is left as it is.
    pub async fn queue_handler_jobs(
        &self,
        node: &str,
        jobs: &[(String, i64, i64)],
        cursor: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let now = crate::now_us();
            let mut tx = pool.begin_write("handler_jobs").await?;
            for (handler, seq, due_us) in jobs {
                sqlx::query(
                    "INSERT INTO handler_jobs (node, handler, event_seq, state, due_us, created_us)
                     VALUES ($1, $2, $3, 'queued', $4, $5) ON CONFLICT (handler, event_seq) DO NOTHING",
                )
                .bind(node)
                .bind(handler)
                .bind(seq)
                .bind(due_us)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("UPDATE handler_cursors SET seq = CASE WHEN seq > $2 THEN seq ELSE $2 END WHERE node = $1")
                .bind(node)
                .bind(cursor)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Queues again the node's jobs left `running` by a process that stopped; returns how many.
    pub async fn requeue_interrupted_jobs(&self, node: &str) -> Result<u64, StoreError> {
        on_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE handler_jobs SET state = 'queued' WHERE node = $1 AND state = 'running'",
            )
            .bind(node)
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }

    /// Takes up to `limit` of the node's jobs due at `now_us`, oldest due first, marking
    /// them `running`.
    pub async fn claim_handler_jobs(
        &self,
        node: &str,
        now_us: i64,
        limit: i64,
    ) -> Result<Vec<HandlerJob>, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin_write("handler_jobs").await?;
            let rows = sqlx::query(
                "SELECT * FROM handler_jobs WHERE node = $1 AND state = 'queued' AND due_us <= $2
                 ORDER BY due_us, id LIMIT $3",
            )
            .bind(node)
            .bind(now_us)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            let mut jobs = Vec::with_capacity(rows.len());
            for row in &rows {
                let mut claimed = job(row)?;
                sqlx::query("UPDATE handler_jobs SET state = 'running' WHERE id = $1")
                    .bind(claimed.id)
                    .execute(&mut *tx)
                    .await?;
                claimed.state = JobState::Running;
                jobs.push(claimed);
            }
            tx.commit().await?;
            Ok(jobs)
        })
    }

    /// Ends a job as `done` or `failed`.
    pub async fn finish_handler_job(
        &self,
        id: i64,
        state: JobState,
        attempts: u32,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE handler_jobs SET state = $2, attempts = $3, last_error = $4, finished_us = $5
                 WHERE id = $1",
            )
            .bind(id)
            .bind(state.as_str())
            .bind(i64::from(attempts))
            .bind(error)
            .bind(crate::now_us())
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Puts a job back in the queue, due at `due_us`.
    pub async fn requeue_handler_job(
        &self,
        id: i64,
        due_us: i64,
        attempts: u32,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE handler_jobs SET state = 'queued', due_us = $2, attempts = $3,
                   last_error = COALESCE($4, last_error) WHERE id = $1",
            )
            .bind(id)
            .bind(due_us)
            .bind(i64::from(attempts))
            .bind(error)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// When the node's next queued job is due, if it has one.
    pub async fn next_handler_due(&self, node: &str) -> Result<Option<i64>, StoreError> {
        on_pool!(self, pool => {
            Ok(sqlx::query_scalar(
                "SELECT MIN(due_us) FROM handler_jobs WHERE node = $1 AND state = 'queued'",
            )
            .bind(node)
            .fetch_one(pool)
            .await?)
        })
    }

    /// Jobs, newest first: those in `state`, or all of them.
    pub async fn handler_jobs(
        &self,
        state: Option<JobState>,
        limit: i64,
    ) -> Result<Vec<HandlerJob>, StoreError> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT * FROM handler_jobs WHERE ($1 IS NULL OR state = $1) ORDER BY id DESC LIMIT $2",
            )
            .bind(state.map(JobState::as_str))
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter().map(job).collect()
        })
    }

    /// Forgets jobs that ended before `before_us`; returns how many.
    pub async fn forget_handler_jobs(&self, before_us: i64) -> Result<u64, StoreError> {
        on_pool!(self, pool => {
            let done = sqlx::query(
                "DELETE FROM handler_jobs WHERE state IN ('done', 'failed') AND finished_us < $1",
            )
            .bind(before_us)
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }

    /// The audit record `seq`, if there is one.
    pub async fn event(&self, seq: i64) -> Result<Option<crate::AuditRecord>, StoreError> {
        on_pool!(self, pool => {
            let text: Option<String> =
                sqlx::query_scalar("SELECT record_json FROM events WHERE seq = $1")
                    .bind(seq)
                    .fetch_optional(pool)
                    .await?;
            text.map(|t| {
                serde_json::from_str(&t).map_err(|source| StoreError::Corrupt {
                    what: "events.record_json",
                    source,
                })
            })
            .transpose()
        })
    }
}
