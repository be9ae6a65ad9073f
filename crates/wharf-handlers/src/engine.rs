//! The engine: follow the trail, queue matches, run due jobs, record what happened.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use wharf_core::{Event, EventKind};
use wharf_store::{AuditRecord, EventFilter, HandlerJob, JobState, Store};

use crate::actions::{self, Job, Step};
use crate::spec::{Action, Facts, Handler};
use crate::subject;

/// Events made by handlers may trigger other handlers, up to this many links deep; a
/// handler never acts on an event it made itself.
pub const MAX_DEPTH: u32 = 8;

/// Jobs run at once.
const CONCURRENCY: usize = 8;

/// How long finished jobs stay listed (`wharf handler jobs`); their events stay in the trail.
const KEEP_FINISHED: Duration = Duration::from_secs(30 * 24 * 3600);

/// Longest wait between attempts.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(600);

/// Why events did not reach the trail.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The store did not take them.
    #[error(transparent)]
    Store(#[from] wharf_store::StoreError),
    /// The JSON-lines copy of the trail could not be opened, locked or written.
    #[error(transparent)]
    File(#[from] std::io::Error),
}

/// Where the engine's events go: the audit writer, awaited, so an outcome is in the trail
/// before its job is marked done.
pub trait Recorder: Send + Sync + 'static {
    /// Persists `events`.
    fn record(&self, events: Vec<Event>) -> impl Future<Output = Result<(), RecordError>> + Send;
}

/// The handlers of one node.
pub struct Engine<R: Recorder> {
    store: Store,
    node: String,
    handlers: Arc<Vec<Handler>>,
    recorder: Arc<R>,
    wake: Arc<Notify>,
}

fn now_us() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The UUID fixed for `handler` acting on `record`: the same on every attempt and after
/// a restart, so names made with it do not change when work is done again.
pub fn job_uuid(handler: &str, record: &AuditRecord) -> String {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(handler.as_bytes());
    context.update(b"\n");
    context.update(record.hash.as_bytes());
    let hash = context.finish();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash.as_ref()[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

fn depth(record: &AuditRecord) -> u32 {
    record
        .attrs
        .get("depth")
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}

impl Handler {
    /// Whether this handler acts on `record`.
    pub fn wants(&self, record: &AuditRecord) -> bool {
        if !self.on.contains(&record.id)
            || depth(record) >= MAX_DEPTH
            || record.attrs.get("handler") == Some(&self.name)
        {
            return false;
        }
        let subject = subject::subject(record);
        if self.action.needs_file() && subject.is_none() {
            return false;
        }
        if let (Action::VerifySignature(check), Some(subject)) = (&self.action, &subject)
            && subject.name.ends_with(&check.suffix)
        {
            // A signature arriving is not a file to check; its file's job looks for it.
            return false;
        }
        let path = subject
            .as_ref()
            .map(|s| s.path.as_str())
            .or(record.path.as_deref());
        // An upload the core named uniquely is matched by the name the client gave, too.
        let given = record.attrs.get("uploaded_as").map(String::as_str);
        self.filter
            .matches_facts(&Facts::of_record(record), &[path, given])
    }
}

impl<R: Recorder> Engine<R> {
    /// An engine for `node` running `handlers`. `wake` is notified after new records are
    /// written, so matching starts at once (otherwise the engine looks every second).
    pub fn new(
        store: Store,
        node: String,
        handlers: Vec<Handler>,
        recorder: R,
        wake: Arc<Notify>,
    ) -> Engine<R> {
        Engine {
            store,
            node,
            handlers: Arc::new(handlers),
            recorder: Arc::new(recorder),
            wake,
        }
    }

    /// What tells the core which uploads to commit under a unique name (see
    /// [`crate::naming`]); `None` when no handler asks for it.
    pub fn upload_naming(&self) -> Option<Arc<dyn wharf_core::UploadNaming>> {
        crate::naming::UniqueUploadNames::new(self.handlers.clone())
            .map(|n| Arc::new(n) as Arc<dyn wharf_core::UploadNaming>)
    }

    /// Runs until `stop` turns true. Jobs cut off by the stop are queued again at the next
    /// start.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        if self.handlers.is_empty() {
            return;
        }
        match self.store.requeue_interrupted_jobs(&self.node).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "handler jobs cut off by a stop queued again"),
            Err(e) => tracing::error!(error = %e, "cannot queue interrupted handler jobs"),
        }
        let mut cursor = loop {
            match self.store.handler_cursor(&self.node).await {
                Ok(seq) => break seq,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the handler cursor; trying again");
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        let mut running: JoinSet<()> = JoinSet::new();
        let mut pruned: Option<std::time::Instant> = None;
        loop {
            if *stop.borrow() {
                break;
            }
            if pruned.is_none_or(|at| at.elapsed() >= Duration::from_secs(3600)) {
                pruned = Some(std::time::Instant::now());
                let before = now_us().saturating_sub(micros(KEEP_FINISHED));
                if let Err(e) = self.store.forget_handler_jobs(before).await {
                    tracing::warn!(error = %e, "cannot forget old handler jobs");
                }
            }
            if let Err(e) = self.queue_new(&mut cursor).await {
                tracing::error!(error = %e, "cannot queue handler jobs");
            }
            let free = CONCURRENCY.saturating_sub(running.len());
            if free > 0 {
                match self
                    .store
                    .claim_handler_jobs(&self.node, now_us(), free as i64)
                    .await
                {
                    Ok(jobs) => {
                        for job in jobs {
                            running.spawn(run_job(
                                self.store.clone(),
                                self.handlers.clone(),
                                self.recorder.clone(),
                                job,
                            ));
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot take handler jobs"),
                }
            }
            let pause = match self.store.next_handler_due(&self.node).await {
                Ok(Some(due)) => {
                    Duration::from_micros(u64::try_from(due.saturating_sub(now_us())).unwrap_or(0))
                        .min(Duration::from_secs(1))
                }
                _ => Duration::from_secs(1),
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = stop.changed() => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
        // Give running attempts a moment; whatever is cut off runs again at the next start.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while running.join_next().await.is_some() {}
        })
        .await;
    }

    /// Matches the records after `cursor` and queues the jobs, moving the cursor with them.
    async fn queue_new(&self, cursor: &mut i64) -> Result<(), wharf_store::StoreError> {
        loop {
            let records = self
                .store
                .events(&EventFilter {
                    after_seq: Some(*cursor),
                    // Only one node's records commit in `seq` order: a cursor over all
                    // nodes could pass over another node's record committing late.
                    node: Some(self.node.clone()),
                    limit: 500,
                    ..EventFilter::default()
                })
                .await?;
            let Some(last) = records.last().map(|r| r.seq) else {
                return Ok(());
            };
            let now = now_us();
            let mut jobs = Vec::new();
            for record in records.iter().filter(|r| r.node == self.node) {
                for handler in self.handlers.iter().filter(|h| h.wants(record)) {
                    jobs.push((
                        handler.name.clone(),
                        record.seq,
                        now.saturating_add(micros(handler.delay)),
                    ));
                }
            }
            self.store
                .queue_handler_jobs(&self.node, &jobs, last)
                .await?;
            *cursor = last;
            if records.len() < 500 {
                return Ok(());
            }
        }
    }
}

fn retry_wait(handler: &Handler, attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    handler
        .retry_wait
        .saturating_mul(factor)
        .min(MAX_RETRY_WAIT)
}

async fn run_job<R: Recorder>(
    store: Store,
    handlers: Arc<Vec<Handler>>,
    recorder: Arc<R>,
    job: HandlerJob,
) {
    let record = match store.event(job.event_seq).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            let _ = store
                .finish_handler_job(
                    job.id,
                    JobState::Failed,
                    job.attempts,
                    Some("the audit record is missing"),
                )
                .await;
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, job = job.id, "cannot read a handler job's record");
            let _ = store
                .requeue_handler_job(job.id, now_us() + 1_000_000, job.attempts, None)
                .await;
            return;
        }
    };
    let Some(handler) = handlers.iter().find(|h| h.name == job.handler) else {
        let mut event = Event::new(EventKind::HandlerFailed)
            .failed("the handler is no longer configured")
            .attr("handler", job.handler.as_str())
            .attr("trigger", record.seq.to_string());
        event.account = record.account.clone();
        event.path = record.path.clone();
        let _ = recorder.record(vec![event]).await;
        let _ = store
            .finish_handler_job(
                job.id,
                JobState::Failed,
                job.attempts,
                Some("no longer configured"),
            )
            .await;
        return;
    };
    let context = Job {
        handler,
        record: &record,
        uuid: job_uuid(&handler.name, &record),
    };
    let outcome = actions::attempt(&context).await;
    let attempts = job.attempts + 1;
    let result = match outcome {
        Ok(Step::Done(events)) => match recorder.record(events).await {
            Ok(()) => {
                store
                    .finish_handler_job(job.id, JobState::Done, job.attempts, None)
                    .await
            }
            Err(e) => {
                // The effect happened but is not in the trail yet; the action recognises
                // its finished work, so the next attempt records it.
                tracing::error!(error = %e, "cannot record a handler's outcome; trying again");
                store
                    .requeue_handler_job(
                        job.id,
                        now_us() + micros(handler.retry_wait),
                        job.attempts,
                        Some(&e.to_string()),
                    )
                    .await
            }
        },
        Ok(Step::WaitUntil(due)) => {
            store
                .requeue_handler_job(job.id, due, job.attempts, None)
                .await
        }
        Err(e) if e.permanent || attempts >= handler.attempts => {
            let kind = if e.refused {
                EventKind::HandlerRefused
            } else {
                EventKind::HandlerFailed
            };
            let event = context
                .event(kind)
                .failed(e.message.clone())
                .attr("attempt", attempts.to_string());
            if let Err(why) = recorder.record(vec![event]).await {
                tracing::error!(error = %why, handler = %handler.name, message = %e.message, "handler failed; cannot record it");
            }
            store
                .finish_handler_job(job.id, JobState::Failed, attempts, Some(&e.message))
                .await
        }
        Err(e) => {
            let wait = retry_wait(handler, attempts);
            let next = time::OffsetDateTime::now_utc() + wait;
            let event = context
                .event(EventKind::HandlerRetrying)
                .failed(e.message.clone())
                .attr("attempt", attempts.to_string())
                .attr("next", wharf_types::rfc3339::format_micros(next));
            if let Err(why) = recorder.record(vec![event]).await {
                tracing::error!(error = %why, handler = %handler.name, message = %e.message, "handler retrying; cannot record it");
            }
            store
                .requeue_handler_job(
                    job.id,
                    now_us().saturating_add(micros(wait)),
                    attempts,
                    Some(&e.message),
                )
                .await
        }
    };
    if let Err(e) = result {
        tracing::error!(error = %e, job = job.id, "cannot update a handler job");
    }
}
