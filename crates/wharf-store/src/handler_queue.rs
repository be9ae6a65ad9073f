//! The event handlers' durable queue, shared by every node of a cluster.
//!
//! Matching: each node keeps a cursor, the `seq` of the last audit record it has matched
//! against its handlers, and matches only the records it wrote itself. Matching a batch
//! inserts one job per (handler, record) and moves the cursor in the same transaction, so a
//! crash either keeps both or neither: no record is skipped and no job is queued twice (a
//! job is unique per handler and record). A node's records left unmatched when it died are
//! matched when it comes back; the jobs already queued do not wait for it.
//!
//! Running: any node may claim any due job (`queued` → `running`), for a lease: the job
//! records its `owner` and `lease_until_us`, and every claim increments `claims`. On
//! PostgreSQL a claim is one statement over `FOR UPDATE SKIP LOCKED` rows, so nodes claiming
//! at once take different jobs without waiting on each other; on SQLite (one machine) it
//! holds the database's write lock. The holder renews the lease while the job runs; a job
//! whose lease ran out (its node died or lost the store) is claimable again by any node.
//! Every later write of a holder (renew, finish, requeue) names its claim (id, owner,
//! claims) and changes nothing once another node took the job over, so a job's end is
//! written once, by its current holder. A node claims only jobs of handlers it has (and the
//! jobs it queued itself, to fail those whose handler it no longer has), so nodes with
//! different handler lists do not fail each other's jobs.
//!
//! Times are microseconds since the Unix epoch on the store's clock ([`Store::clock_us`]),
//! so the nodes' own clocks need not agree for leases to hold.
//!
//! This module must never decide what a job does or when it is retried: the engine in
//! wharf-handlers does.

use crate::backend::{Backing as _, Fetch, Pool, on_pool};
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
    /// The node that queued it (the node whose record it acts on).
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
    /// The node holding it (running), or that ended it; none while queued.
    pub owner: Option<String>,
    /// When the holder's lease runs out unless renewed (µs, the store's clock).
    pub lease_until_us: Option<i64>,
    /// How many times it was claimed; a holder's writes name the claim they hold.
    pub claims: i64,
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
        owner: row.opt_text("owner")?,
        lease_until_us: row.opt_int("lease_until_us")?,
        claims: row.int("claims")?,
    })
}

/// The claim statement of either backend with its values bound.
fn claim_query<'q, DB: sqlx::Database>(
    sql: &'static str,
    node: &'q str,
    now_us: i64,
    lease_until_us: i64,
    limit: i64,
    known: &'q str,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(sql)
        .bind(node)
        .bind(now_us)
        .bind(lease_until_us)
        .bind(limit)
        .bind(known)
}

/// A claim of up to `$4` due jobs (queued and due, or running with their lease run out) by
/// node `$1` at `$2`, leased until `$3`, limited to handlers in the JSON list `$5` and to
/// the node's own jobs. The inner SELECT differs per backend only by its row locks.
const CLAIM_SQLITE: &str = "UPDATE handler_jobs
       SET state = 'running', owner = $1, lease_until_us = $3, claims = claims + 1
     WHERE id IN (
       SELECT id FROM handler_jobs
        WHERE ((state = 'queued' AND due_us <= $2) OR (state = 'running' AND lease_until_us < $2))
          AND (node = $1 OR handler IN (SELECT value FROM json_each($5)))
        ORDER BY due_us, id LIMIT $4)
     RETURNING *";

const CLAIM_POSTGRES: &str = "WITH picked AS (
       SELECT id FROM handler_jobs
        WHERE ((state = 'queued' AND due_us <= $2) OR (state = 'running' AND lease_until_us < $2))
          AND (node = $1 OR handler IN (SELECT jsonb_array_elements_text(CAST($5 AS jsonb))))
        ORDER BY due_us, id LIMIT $4
        FOR UPDATE SKIP LOCKED)
     UPDATE handler_jobs
        SET state = 'running', owner = $1, lease_until_us = $3, claims = handler_jobs.claims + 1
       FROM picked WHERE handler_jobs.id = picked.id
     RETURNING handler_jobs.*";

/// The condition every write of a holder carries: the job is still running under its claim.
macro_rules! held {
    () => {
        "id = $1 AND owner = $2 AND claims = $3 AND state = 'running'"
    };
}

impl Store {
    /// Now, on the store's clock (PostgreSQL's, shared by every node; this machine's for
    /// SQLite), in µs since the Unix epoch.
    pub async fn clock_us(&self) -> Result<i64, StoreError> {
        match &self.pool {
            Pool::Sqlite(_) => Ok(crate::now_us()),
            Pool::Postgres(pool) => Ok(sqlx::query_scalar(
                "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)",
            )
            .fetch_one(pool)
            .await?),
        }
    }

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

    /// Gives back the jobs `node` holds: at its start (they were cut off when its earlier
    /// process stopped: a node's name is its own among live nodes) and at its stop (the
    /// attempts cut off by it). Returns how many.
    pub async fn release_handler_jobs(&self, node: &str) -> Result<u64, StoreError> {
        on_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE handler_jobs SET state = 'queued', owner = NULL, lease_until_us = NULL
                 WHERE owner = $1 AND state = 'running'",
            )
            .bind(node)
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }

    /// Takes up to `limit` due jobs for `node`, oldest due first: queued jobs due at
    /// `now_us`, and running jobs whose lease ran out before it. Each is marked `running`,
    /// held by `node` until `lease_until_us`. Only jobs of `handlers` are taken, and the
    /// jobs `node` queued itself.
    pub async fn claim_handler_jobs(
        &self,
        node: &str,
        handlers: &[String],
        now_us: i64,
        lease_until_us: i64,
        limit: i64,
    ) -> Result<Vec<HandlerJob>, StoreError> {
        let known = serde_json::Value::from(handlers.to_vec()).to_string();
        let limit = limit.clamp(1, 1000);
        let rows = match &self.pool {
            Pool::Sqlite(pool) => {
                let mut tx = pool.begin_write("handler_jobs").await?;
                let rows = claim_query(CLAIM_SQLITE, node, now_us, lease_until_us, limit, &known)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                rows.iter().map(job).collect::<Result<Vec<_>, _>>()?
            }
            Pool::Postgres(pool) => {
                // No table lock: the rows' locks (skipped when taken) keep claimers apart.
                claim_query(CLAIM_POSTGRES, node, now_us, lease_until_us, limit, &known)
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .map(job)
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        let mut jobs = rows;
        jobs.sort_by_key(|j| (j.due_us, j.id));
        Ok(jobs)
    }

    /// Extends the lease of `job` (as claimed) to `until_us`. `false` when the job is no
    /// longer held by that claim: another node took it over, or it ended.
    pub async fn renew_handler_lease(
        &self,
        job: &HandlerJob,
        until_us: i64,
    ) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let done = sqlx::query(concat!(
                "UPDATE handler_jobs SET lease_until_us = $4 WHERE ",
                held!()
            ))
            .bind(job.id)
            .bind(&job.owner)
            .bind(job.claims)
            .bind(until_us)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Ends `job` (as claimed) as `done` or `failed`. `false`, changing nothing, when the
    /// claim no longer holds it.
    pub async fn finish_handler_job(
        &self,
        job: &HandlerJob,
        state: JobState,
        attempts: u32,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let done = sqlx::query(concat!(
                "UPDATE handler_jobs SET state = $4, attempts = $5, last_error = $6, finished_us = $7,
                   lease_until_us = NULL WHERE ",
                held!()
            ))
            .bind(job.id)
            .bind(&job.owner)
            .bind(job.claims)
            .bind(state.as_str())
            .bind(i64::from(attempts))
            .bind(error)
            .bind(crate::now_us())
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Puts `job` (as claimed) back in the queue, due at `due_us`, for any node. `false`,
    /// changing nothing, when the claim no longer holds it.
    pub async fn requeue_handler_job(
        &self,
        job: &HandlerJob,
        due_us: i64,
        attempts: u32,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let done = sqlx::query(concat!(
                "UPDATE handler_jobs SET state = 'queued', due_us = $4, attempts = $5,
                   last_error = COALESCE($6, last_error), owner = NULL, lease_until_us = NULL
                 WHERE ",
                held!()
            ))
            .bind(job.id)
            .bind(&job.owner)
            .bind(job.claims)
            .bind(due_us)
            .bind(i64::from(attempts))
            .bind(error)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// When `node` may next find a job to claim: the earliest due queued job, or the
    /// earliest end of another node's lease.
    pub async fn next_handler_due(&self, node: &str) -> Result<Option<i64>, StoreError> {
        on_pool!(self, pool => {
            Ok(sqlx::query_scalar(
                "SELECT MIN(CASE WHEN state = 'queued' THEN due_us ELSE lease_until_us END)
                   FROM handler_jobs
                  WHERE state = 'queued' OR (state = 'running' AND owner <> $1)",
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
            // Two statements, not `($1 IS NULL OR state = $1)`: the state's index
            // (`handler_jobs_state`) answers a few failed jobs among millions done.
            let rows = match state {
                Some(state) => sqlx::query(
                    "SELECT * FROM handler_jobs WHERE state = $1 ORDER BY id DESC LIMIT $2",
                )
                .bind(state.as_str())
                .bind(limit)
                .fetch_all(pool)
                .await?,
                None => sqlx::query("SELECT * FROM handler_jobs ORDER BY id DESC LIMIT $1")
                    .bind(limit)
                    .fetch_all(pool)
                    .await?,
            };
            rows.iter().map(job).collect()
        })
    }

    /// Job `id`, whatever its age.
    pub async fn handler_job(&self, id: i64) -> Result<Option<HandlerJob>, StoreError> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT * FROM handler_jobs WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(job).transpose()
        })
    }

    /// The jobs of `handler` on the records `event_seqs` that were queued (and not
    /// forgotten), in no particular order. Read 500 at a time.
    pub async fn handler_jobs_on(
        &self,
        handler: &str,
        event_seqs: &[i64],
    ) -> Result<Vec<HandlerJob>, StoreError> {
        let mut found = Vec::new();
        for part in event_seqs.chunks(500) {
            // Only `$N` marks are put together here; every value is bound.
            let marks: Vec<String> = (2..part.len() + 2).map(|n| format!("${n}")).collect();
            let sql = format!(
                "SELECT * FROM handler_jobs WHERE handler = $1 AND event_seq IN ({})",
                marks.join(", ")
            );
            let rows = on_pool!(self, pool => {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(handler);
                for seq in part {
                    query = query.bind(*seq);
                }
                let rows = query.fetch_all(pool).await?;
                rows.iter().map(job).collect::<Result<Vec<_>, StoreError>>()
            })?;
            found.extend(rows);
        }
        Ok(found)
    }

    /// How many jobs are in `state`, counted up to `cap` (the dashboard's depth).
    pub async fn count_handler_jobs(&self, state: JobState, cap: i64) -> Result<i64, StoreError> {
        on_pool!(self, pool => {
            Ok(sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT 1 FROM handler_jobs WHERE state = $1 LIMIT $2) AS capped",
            )
            .bind(state.as_str())
            .bind(cap)
            .fetch_one(pool)
            .await?)
        })
    }

    /// An administrator's retry: a failed job goes back in the queue, due now, with its
    /// attempts counted from zero. `false` when it is not (or no longer) failed.
    pub async fn retry_handler_job(&self, id: i64) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE handler_jobs SET state = 'queued', due_us = $2, attempts = 0,
                   owner = NULL, lease_until_us = NULL, finished_us = NULL
                 WHERE id = $1 AND state = 'failed'",
            )
            .bind(id)
            .bind(crate::now_us())
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// An administrator's cancel: a queued job is given up (`failed`, with `reason`) before
    /// any node claims it. `false` when it is not (or no longer) queued: a running job
    /// finishes its attempt.
    pub async fn cancel_handler_job(&self, id: i64, reason: &str) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE handler_jobs SET state = 'failed', last_error = $2, finished_us = $3,
                   owner = NULL, lease_until_us = NULL
                 WHERE id = $1 AND state = 'queued'",
            )
            .bind(id)
            .bind(reason)
            .bind(crate::now_us())
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
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

#[cfg(test)]
mod tests;
