//! The event handlers' queue as administrators see it: list the jobs, put a failed one
//! back (retry), give up a queued one (cancel). The engine decides everything else.

use serde_json::{Value, json};
use wharf_core::EventKind;
use wharf_store::{HandlerJob, JobState};

use crate::{Actor, AdminError, Need, Operations};

/// The most jobs one listing returns.
pub const MAX_JOBS: i64 = 1000;

/// A job as the API and the console show it.
pub fn job_view(job: &HandlerJob) -> Value {
    json!({
        "id": job.id,
        "handler": job.handler,
        "node": job.node,
        "event_seq": job.event_seq,
        "state": job.state.as_str(),
        "attempts": job.attempts,
        "due": crate::time_text(job.due_us),
        "created": crate::time_text(job.created_us),
        "last_error": job.last_error,
        "owner": job.owner,
    })
}

/// A state as typed: `queued`, `running`, `done` or `failed`.
pub fn job_state(text: &str) -> Result<JobState, AdminError> {
    [
        JobState::Queued,
        JobState::Running,
        JobState::Done,
        JobState::Failed,
    ]
    .into_iter()
    .find(|s| s.as_str() == text)
    .ok_or_else(|| {
        AdminError::invalid(format!(
            "state {text:?}: use queued, running, done or failed"
        ))
    })
}

impl Operations {
    /// Jobs, newest first: those in `state`, or all; at most `limit` (and [`MAX_JOBS`]).
    pub async fn jobs(
        &self,
        actor: &Actor,
        state: Option<JobState>,
        limit: i64,
    ) -> Result<Vec<HandlerJob>, AdminError> {
        actor.require(Need::Read, "list handler jobs")?;
        let limit = if limit <= 0 { 100 } else { limit.min(MAX_JOBS) };
        Ok(self.store.handler_jobs(state, limit).await?)
    }

    async fn job(&self, id: i64) -> Result<HandlerJob, AdminError> {
        self.store
            .handler_job(id)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("no handler job {id}")))
    }

    /// How many jobs are in `state`, counted up to [`MAX_JOBS`].
    pub async fn count_jobs(&self, actor: &Actor, state: JobState) -> Result<i64, AdminError> {
        actor.require(Need::Read, "count handler jobs")?;
        Ok(self.store.count_handler_jobs(state, MAX_JOBS).await?)
    }

    /// Puts failed job `id` back in the queue.
    pub async fn retry_job(&self, actor: &Actor, id: i64) -> Result<(), AdminError> {
        actor.require(Need::Operate, "retry handler jobs")?;
        let job = self.job(id).await?;
        if !self.store.retry_handler_job(id).await? {
            return Err(AdminError::Conflict(format!(
                "job {id} is {}, not failed: only a failed job is retried",
                job.state.as_str()
            )));
        }
        self.record(
            actor
                .change(
                    EventKind::JobRetried,
                    &id.to_string(),
                    Some(&job_view(&job)),
                    None,
                    format!("handler job {id} ({}) queued again", job.handler),
                )
                .attr("handler", job.handler.clone()),
        )
        .await
    }

    /// Gives up queued job `id`.
    pub async fn cancel_job(&self, actor: &Actor, id: i64) -> Result<(), AdminError> {
        actor.require(Need::Operate, "cancel handler jobs")?;
        let job = self.job(id).await?;
        let who = actor
            .admin_name()
            .map_or_else(|| "a command".to_owned(), |n| format!("administrator {n}"));
        if !self
            .store
            .cancel_handler_job(id, &format!("cancelled by {who}"))
            .await?
        {
            return Err(AdminError::Conflict(format!(
                "job {id} is {}, not queued: only a queued job is cancelled",
                job.state.as_str()
            )));
        }
        self.record(
            actor
                .change(
                    EventKind::JobCancelled,
                    &id.to_string(),
                    Some(&job_view(&job)),
                    None,
                    format!("handler job {id} ({}) cancelled", job.handler),
                )
                .attr("handler", job.handler.clone()),
        )
        .await
    }
}
