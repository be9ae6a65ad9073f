//! The engine: match this node's records, run due jobs of the cluster, record what happened.
//!
//! Matching: each node matches the records it wrote itself against its handlers, from its
//! cursor in the store, and queues the jobs for any node to run (a node that was down
//! matches its own records when it is back). Running: a node claims due jobs for a lease
//! ([`Settings::lease`]) and renews it while each attempt runs, so a long program keeps its
//! job; a node that dies holding jobs has them taken over by another node once the lease
//! runs out. An attempt whose lease is lost (the store was out of reach for the lease, or
//! another node took the job) is stopped (a program is killed) and records nothing.
//!
//! What "once" means, per action, when a node dies in the middle of a job (the job then
//! runs again, on whichever node claims it):
//! - An outcome is recorded only while its attempt's claim still holds the job, and the job
//!   is ended under that claim, so a node that lost its job to another never records or
//!   ends it too. (An outcome recorded by a node that then lost the store for longer than
//!   the lease before ending the job is the one case recorded twice.)
//! - Moves, copies, quarantines and UUID renames happen once: an attempt that finds the
//!   source gone and the destination holding the event's file (inode, SHA-256) records
//!   the earlier attempt's work without acting again (see [`crate::files`]).
//! - A program (`exec`) may run twice for one event when its node dies after the program
//!   finished and before the outcome was recorded; it is killed with its node (see
//!   [`crate::exec`]) and when its lease is lost, so two nodes never run it for one event at
//!   once. `WHARF_UUID` is the same on every run of one job, for programs to recognise it.
//! - A webhook may be delivered twice in the same case; every delivery of one job carries
//!   the same `X-Wharf-Delivery` and `Idempotency-Key`, for the receiver to drop repeats.
//!
//! This module must never act on a job it does not hold under its current claim.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use wharf_core::{Event, EventKind};
use wharf_store::{AuditRecord, EventFilter, HandlerJob, JobState, Store};

use crate::actions::{self, Job, Step};
use crate::spec::{Action, Facts, Handler};
use crate::subject;

/// Events made by handlers may trigger other handlers, up to this many links deep; a
/// handler never acts on an event it made itself.
pub const MAX_DEPTH: u32 = 8;

/// How jobs are held and how many run at once, per node (`[handlers]` in the configuration).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long a claim holds a job without being renewed: after a node dies, its jobs wait
    /// this long before another node takes them over. Renewed every third of it.
    pub lease: Duration,
    /// Jobs this node runs at once.
    pub concurrency: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            lease: Duration::from_secs(30),
            concurrency: 8,
        }
    }
}

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
    settings: Settings,
}

/// What every running job of the engine shares.
struct Shared<R: Recorder> {
    store: Store,
    handlers: Arc<Vec<Handler>>,
    recorder: Arc<R>,
    lease: Duration,
}

/// This machine's clock, for what only this node compares (when to forget finished jobs).
fn local_now_us() -> i64 {
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
            settings: Settings::default(),
        }
    }

    /// The same engine holding and running jobs as `settings` say.
    pub fn with_settings(mut self, settings: Settings) -> Engine<R> {
        self.settings = Settings {
            lease: settings.lease.max(Duration::from_secs(1)),
            concurrency: settings.concurrency.max(1),
        };
        self
    }

    /// What tells the core which uploads to commit under a unique name (see
    /// [`crate::naming`]); `None` when no handler asks for it.
    pub fn upload_naming(&self) -> Option<Arc<dyn wharf_core::UploadNaming>> {
        crate::naming::UniqueUploadNames::new(self.handlers.clone())
            .map(|n| Arc::new(n) as Arc<dyn wharf_core::UploadNaming>)
    }

    /// Runs until `stop` turns true. Jobs cut off by the stop are given back to the queue.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        if self.handlers.is_empty() {
            return;
        }
        // What this node held when its earlier process stopped was cut off: a node's name is
        // its own among live nodes, so nobody else is running those jobs.
        match self.store.release_handler_jobs(&self.node).await {
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
        let shared = Arc::new(Shared {
            store: self.store.clone(),
            handlers: self.handlers.clone(),
            recorder: self.recorder.clone(),
            lease: self.settings.lease,
        });
        let known: Vec<String> = self.handlers.iter().map(|h| h.name.clone()).collect();
        let mut running: JoinSet<()> = JoinSet::new();
        let mut pruned: Option<std::time::Instant> = None;
        loop {
            if *stop.borrow() {
                break;
            }
            if pruned.is_none_or(|at| at.elapsed() >= Duration::from_secs(3600)) {
                pruned = Some(std::time::Instant::now());
                let before = local_now_us().saturating_sub(micros(KEEP_FINISHED));
                if let Err(e) = self.store.forget_handler_jobs(before).await {
                    tracing::warn!(error = %e, "cannot forget old handler jobs");
                }
            }
            if let Err(e) = self.queue_new(&mut cursor).await {
                tracing::error!(error = %e, "cannot queue handler jobs");
            }
            let free = self.settings.concurrency.saturating_sub(running.len());
            let mut claimed = 0;
            if free > 0 {
                match self.claim(&known, free).await {
                    Ok((jobs, since)) => {
                        claimed = jobs.len();
                        for job in jobs {
                            running.spawn(run_job(shared.clone(), job, since));
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot take handler jobs"),
                }
            }
            let pause = if running.len() >= self.settings.concurrency {
                // Full: a slot freeing wakes the loop.
                Duration::from_secs(1)
            } else {
                self.pause(claimed > 0).await
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = stop.changed() => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
        // Give running attempts a moment, then stop the rest (their programs are killed) and
        // give their jobs back, so another node need not wait for the lease.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while running.join_next().await.is_some() {}
        })
        .await;
        running.shutdown().await;
        if let Err(e) = self.store.release_handler_jobs(&self.node).await {
            tracing::warn!(error = %e, "cannot give back the handler jobs cut off by the stop; they wait for their lease");
        }
    }

    /// Claims up to `free` due jobs on the store's clock; answers them and when the claim
    /// was asked for (their leases run from no earlier).
    async fn claim(
        &self,
        known: &[String],
        free: usize,
    ) -> Result<(Vec<HandlerJob>, Instant), wharf_store::StoreError> {
        let since = Instant::now();
        let now = self.store.clock_us().await?;
        let jobs = self
            .store
            .claim_handler_jobs(
                &self.node,
                known,
                now,
                now.saturating_add(micros(self.settings.lease)),
                i64::try_from(free).unwrap_or(i64::MAX),
            )
            .await?;
        Ok((jobs, since))
    }

    /// How long to wait before looking for due jobs again: until the next one is due (or a
    /// lease runs out), between a tenth of a second and one second. A job due now that the
    /// last claim did not take is another node's to run (or its handler is not this
    /// node's): it is looked at again in a second, not at once.
    async fn pause(&self, claimed: bool) -> Duration {
        let (due, now) = match (
            self.store.next_handler_due(&self.node).await,
            self.store.clock_us().await,
        ) {
            (Ok(Some(due)), Ok(now)) => (due, now),
            _ => return Duration::from_secs(1),
        };
        if due <= now && !claimed {
            return Duration::from_secs(1);
        }
        Duration::from_micros(u64::try_from(due.saturating_sub(now)).unwrap_or(0))
            .clamp(Duration::from_millis(100), Duration::from_secs(1))
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
            let now = self.store.clock_us().await?;
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

/// Why a node stopped holding a job before its attempt ended.
#[derive(Debug, Clone, Copy)]
enum Lost {
    /// Another node holds it now.
    TakenOver,
    /// The lease could not be renewed in time (the store out of reach): another node may
    /// take the job from now on.
    Expired,
}

/// One node's hold on one claimed job: renews its lease and knows when it runs out.
struct Hold<'a> {
    store: &'a Store,
    job: &'a HandlerJob,
    lease: Duration,
    /// Past this, the job may be another node's: the lease counted from when its last
    /// renewal was asked for, less a margin for stopping the work.
    deadline: Instant,
}

impl<'a> Hold<'a> {
    fn new(store: &'a Store, job: &'a HandlerJob, lease: Duration, since: Instant) -> Hold<'a> {
        Hold {
            store,
            job,
            lease,
            deadline: since + Self::usable(lease),
        }
    }

    fn usable(lease: Duration) -> Duration {
        lease.saturating_sub(lease / 10)
    }

    /// Renews the lease; answers the store's clock when it is still held.
    async fn renew(&mut self) -> Result<Result<i64, Lost>, wharf_store::StoreError> {
        let asked = Instant::now();
        let renewed = tokio::time::timeout_at(self.deadline, async {
            let now = self.store.clock_us().await?;
            let held = self
                .store
                .renew_handler_lease(self.job, now.saturating_add(micros(self.lease)))
                .await?;
            Ok::<_, wharf_store::StoreError>((held, now))
        })
        .await;
        match renewed {
            Err(_) => Ok(Err(Lost::Expired)),
            Ok(Err(e)) => Err(e),
            Ok(Ok((false, _))) => Ok(Err(Lost::TakenOver)),
            Ok(Ok((true, now))) => {
                self.deadline = asked + Self::usable(self.lease);
                Ok(Ok(now))
            }
        }
    }

    /// Renews every third of the lease; returns only when the job is lost.
    async fn keep(&mut self) -> Lost {
        loop {
            let next = (Instant::now() + self.lease / 3).min(self.deadline);
            tokio::time::sleep_until(next).await;
            if Instant::now() >= self.deadline {
                return Lost::Expired;
            }
            match self.renew().await {
                Ok(Ok(_)) => {}
                Ok(Err(lost)) => return lost,
                Err(e) => {
                    tracing::warn!(error = %e, job = self.job.id, "cannot renew a handler job's lease; trying again");
                }
            }
        }
    }

    /// Runs `work` while keeping the lease.
    async fn during<T>(&mut self, work: impl Future<Output = T>) -> Result<T, Lost> {
        let job = self.job.id;
        tokio::select! {
            out = work => Ok(out),
            lost = self.keep() => {
                tracing::warn!(job, ?lost, "a handler job's lease was lost; its attempt is stopped and another node runs it");
                Err(lost)
            }
        }
    }

    /// Makes sure the job is still held, for a lease, before its outcome is recorded;
    /// answers the store's clock. Tries again until the deadline when the store errs.
    async fn confirm(&mut self) -> Option<i64> {
        loop {
            match self.renew().await {
                Ok(Ok(now)) => return Some(now),
                Ok(Err(lost)) => {
                    tracing::warn!(
                        job = self.job.id,
                        ?lost,
                        "a handler job was lost before its outcome was recorded; the node holding it records it"
                    );
                    return None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, job = self.job.id, "cannot confirm a handler job's lease; trying again");
                    if Instant::now() + Duration::from_secs(1) >= self.deadline {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// Logs a write that found the job no longer held by this claim.
fn check_written(written: Result<bool, wharf_store::StoreError>, job: &HandlerJob) {
    match written {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            job = job.id,
            "a handler job was taken over by another node before this node could end it"
        ),
        Err(e) => tracing::error!(error = %e, job = job.id, "cannot update a handler job"),
    }
}

async fn run_job<R: Recorder>(shared: Arc<Shared<R>>, job: HandlerJob, since: Instant) {
    let store = &shared.store;
    let mut hold = Hold::new(store, &job, shared.lease, since);
    let record = match store.event(job.event_seq).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            let written = store
                .finish_handler_job(
                    &job,
                    JobState::Failed,
                    job.attempts,
                    Some("the audit record is missing"),
                )
                .await;
            return check_written(written, &job);
        }
        Err(e) => {
            tracing::error!(error = %e, job = job.id, "cannot read a handler job's record");
            // Soon again (or, if the store stays out of reach, when its lease runs out).
            let now = store.clock_us().await.unwrap_or_else(|_| local_now_us());
            let written = store
                .requeue_handler_job(&job, now.saturating_add(1_000_000), job.attempts, None)
                .await;
            return check_written(written, &job);
        }
    };
    let Some(handler) = shared.handlers.iter().find(|h| h.name == job.handler) else {
        // Only the node that queued a job takes it without having its handler.
        let mut event = Event::new(EventKind::HandlerFailed)
            .failed("the handler is no longer configured")
            .attr("handler", job.handler.as_str())
            .attr("trigger", record.seq.to_string());
        event.account = record.account.clone();
        event.path = record.path.clone();
        if hold.confirm().await.is_none() {
            return;
        }
        let _ = shared.recorder.record(vec![event]).await;
        let written = store
            .finish_handler_job(
                &job,
                JobState::Failed,
                job.attempts,
                Some("no longer configured"),
            )
            .await;
        return check_written(written, &job);
    };
    let context = Job {
        handler,
        store,
        record: &record,
        uuid: job_uuid(&handler.name, &record),
    };
    let Ok(outcome) = hold.during(actions::attempt(&context)).await else {
        return;
    };
    // Recorded only while this claim holds the job, so a node that lost it to another does
    // not record its outcome too.
    let Some(now) = hold.confirm().await else {
        return;
    };
    let recorder = &shared.recorder;
    let attempts = job.attempts + 1;
    let counted = match &outcome {
        Ok(Step::Done(_)) => Some("done"),
        Ok(Step::WaitUntil(_)) => None,
        Err(e) if e.refused && (e.permanent || attempts >= handler.attempts) => Some("refused"),
        Err(e) if e.permanent || attempts >= handler.attempts => Some("failed"),
        Err(_) => Some("retrying"),
    };
    if let Some(outcome) = counted {
        metrics::counter!("wharf_handler_outcomes_total", "action" => handler.action.kind(), "outcome" => outcome)
            .increment(1);
    }
    let written = match outcome {
        Ok(Step::Done(events)) => match recorder.record(events).await {
            Ok(()) => {
                store
                    .finish_handler_job(&job, JobState::Done, job.attempts, None)
                    .await
            }
            Err(e) => {
                // The effect happened but is not in the trail yet; the action recognises
                // its finished work, so the next attempt records it.
                tracing::error!(error = %e, "cannot record a handler's outcome; trying again");
                store
                    .requeue_handler_job(
                        &job,
                        now.saturating_add(micros(handler.retry_wait)),
                        job.attempts,
                        Some(&e.to_string()),
                    )
                    .await
            }
        },
        Ok(Step::WaitUntil(due)) => {
            store
                .requeue_handler_job(&job, due, job.attempts, None)
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
                .finish_handler_job(&job, JobState::Failed, attempts, Some(&e.message))
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
                    &job,
                    now.saturating_add(micros(wait)),
                    attempts,
                    Some(&e.message),
                )
                .await
        }
    };
    check_written(written, &job);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000;

    async fn claimed(store: &Store, node: &str, lease: Duration) -> (HandlerJob, Instant) {
        store.handler_cursor("a").await.unwrap();
        store
            .queue_handler_jobs("a", &[("h".to_owned(), 1, 0)], 1)
            .await
            .unwrap();
        let since = Instant::now();
        let now = store.clock_us().await.unwrap();
        let mut jobs = store
            .claim_handler_jobs(node, &["h".to_owned()], now, now + micros(lease), 1)
            .await
            .unwrap();
        (jobs.remove(0), since)
    }

    #[tokio::test]
    async fn a_hold_keeps_its_job_past_the_lease_and_stops_when_another_node_takes_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("t.db")).await.unwrap();
        let lease = Duration::from_secs(2);
        let (job, since) = claimed(&store, "a", lease).await;
        let mut hold = Hold::new(&store, &job, lease, since);
        // Work longer than the lease keeps the job: nobody can take it meanwhile.
        let out = hold
            .during(tokio::time::sleep(Duration::from_secs(3)))
            .await;
        assert!(out.is_ok());
        let now = store.clock_us().await.unwrap();
        assert!(
            store
                .claim_handler_jobs("b", &["h".to_owned()], now, now + SECOND, 1)
                .await
                .unwrap()
                .is_empty()
        );
        // Taken over once its lease ran out (as after a pause): the work is stopped at the
        // next renewal, and the outcome is not confirmed for recording.
        let later = now + 10 * SECOND;
        let taken = store
            .claim_handler_jobs("b", &["h".to_owned()], later, later + SECOND, 1)
            .await
            .unwrap();
        assert_eq!(taken.len(), 1);
        let started = Instant::now();
        let out = hold.during(std::future::pending::<()>()).await;
        assert!(matches!(out, Err(Lost::TakenOver)), "{out:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(hold.confirm().await.is_none());
        assert!(
            !store
                .finish_handler_job(&job, JobState::Done, 0, None)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_hold_that_cannot_renew_gives_up_before_its_lease_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("t.db")).await.unwrap();
        let lease = Duration::from_secs(2);
        let (job, since) = claimed(&store, "a", lease).await;
        let mut hold = Hold::new(&store, &job, lease, since);
        // The store out of reach: no renewal succeeds, so the attempt is stopped before
        // another node may take the job (90 % of the lease).
        store.close().await;
        let out = hold.during(std::future::pending::<()>()).await;
        assert!(matches!(out, Err(Lost::Expired)), "{out:?}");
        let held_for = since.elapsed();
        assert!(
            held_for >= Duration::from_millis(1700) && held_for < lease,
            "{held_for:?}"
        );
        assert!(hold.confirm().await.is_none());
    }
}
