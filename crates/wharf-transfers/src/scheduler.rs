//! When transfers run, and on which node: every second the scheduler of each node looks at
//! each transfer and, when one is due, claims its lease in the store and runs it.
//!
//! What makes a transfer due is read from the store, so every node of a cluster agrees:
//! an interval counts from the start of the transfer's last run on any node; a cron
//! expression fires at its first time after that start; a run asked for (by hand, by the
//! Manager, by an event through the handler queue) waits in the lease's row; files whose
//! retry is due, or left mid-way by a run that was cut off, are due at once; and a run that
//! could not use a location is tried again after a doubling wait. The lease makes the run
//! one node's at a time; its holder renews it every third of its length, and a node that
//! dies holding it loses it when it runs out, so another node takes the transfer over.
//!
//! This module must never copy a file itself: [`crate::run`] does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use wharf_handlers::Recorder;
use wharf_store::TransferLease;

use crate::run::{self, Context, Quiet, RunError, Summary, Watch};
use crate::spec::{Transfer, Trigger};

/// Longest wait before a run that could not use a location is tried again.
const MAX_RUN_RETRY: Duration = Duration::from_secs(3600);

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Runs `transfer` once under `lease`, renewing it meanwhile and releasing it at the end.
/// The run stops (its rows as they are) when the lease is lost.
pub async fn run_held<R: Recorder>(
    transfer: &Transfer,
    lease: TransferLease,
    ctx: &Context<R>,
    trigger: &str,
    hold: Duration,
    watch: Arc<dyn Watch>,
) -> Result<Summary, RunError> {
    let store = ctx.store.clone();
    let renewing = lease.clone();
    let (lost_tx, lost) = watch::channel(false);
    let renewer = tokio::spawn(async move {
        loop {
            tokio::time::sleep(hold / 3).await;
            let renewed = match store.clock_us().await {
                Ok(now) => store
                    .renew_transfer_lease(&renewing, now.saturating_add(micros(hold)))
                    .await
                    .unwrap_or(true),
                // The store out of reach: the lease runs out on its own if it stays so,
                // and every write of the run fails meanwhile.
                Err(_) => true,
            };
            if !renewed {
                let _ = lost_tx.send(true);
                return;
            }
        }
    });
    // The run sees the loss itself and stops between steps, recording its end; its
    // writes are fenced by the claim meanwhile.
    let outcome = run::run(transfer, &lease, ctx, trigger, watch, lost.clone()).await;
    let outcome = match (outcome, *lost.borrow()) {
        (Ok(_), true) => Err(RunError::LeaseLost),
        (outcome, _) => outcome,
    };
    renewer.abort();
    if let Err(e) = ctx.store.release_transfer(&lease).await {
        tracing::warn!(transfer = %transfer.name, error = %e, "lease not released; it runs out on its own");
    }
    outcome
}

/// A run in progress: its task, and its lease while it holds one.
type Running = (JoinHandle<()>, Arc<std::sync::Mutex<Option<TransferLease>>>);

/// What the scheduler keeps per transfer between ticks.
#[derive(Default)]
struct Seen {
    /// When its cron expressions were first looked at (with no run yet, they fire after).
    since_us: i64,
}

/// The scheduler of one node.
pub struct Scheduler<R: Recorder> {
    ctx: Arc<Context<R>>,
    transfers: watch::Receiver<Arc<Vec<Arc<Transfer>>>>,
    hold: Duration,
}

impl<R: Recorder> Scheduler<R> {
    /// A scheduler for `ctx.node`, following the transfers `transfers` holds (replaced on
    /// reload), holding leases for `hold`.
    pub fn new(
        ctx: Arc<Context<R>>,
        transfers: watch::Receiver<Arc<Vec<Arc<Transfer>>>>,
        hold: Duration,
    ) -> Scheduler<R> {
        Scheduler {
            ctx,
            transfers,
            hold,
        }
    }

    /// Runs until `stop` turns true; runs in progress are then cut off (their files
    /// resume from the store) and their leases released.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        match self.ctx.store.end_transfer_runs_of(&self.ctx.node).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                runs = n,
                "transfer runs cut off by the last stop marked failed"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot mark cut-off transfer runs"),
        }
        let mut running: HashMap<String, Running> = HashMap::new();
        let mut ticks = 0u64;
        let mut seen: HashMap<String, Seen> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            running.retain(|_, (task, _)| !task.is_finished());
            let transfers = self.transfers.borrow_and_update().clone();
            let Ok(now) = self.ctx.store.clock_us().await else {
                continue;
            };
            // Runs whose runner died (a command, another node) are marked as cut off once
            // their lease has run out; every tenth tick is soon enough.
            ticks += 1;
            if ticks.is_multiple_of(10) {
                match self.ctx.store.end_cut_transfer_runs(now).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(runs = n, "transfer runs cut off by a stop marked failed")
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot mark cut-off transfer runs"),
                }
            }
            let requested: HashMap<String, String> = match self.ctx.store.transfer_leases().await {
                Ok(views) => views
                    .into_iter()
                    .filter_map(|v| v.requested.map(|(_, by)| (v.transfer, by)))
                    .collect(),
                Err(_) => continue,
            };
            for transfer in transfers.iter() {
                if running.contains_key(&transfer.name) {
                    continue;
                }
                let since = seen
                    .entry(transfer.name.clone())
                    .or_insert(Seen { since_us: now })
                    .since_us;
                let asked = requested.get(&transfer.name);
                let trigger = match asked {
                    // An administrator's request goes at once, waiting or not.
                    Some(by) if !by.starts_with("event ") => Some(by.clone()),
                    _ => match self.due(transfer, now, since).await {
                        Ok(Due::Now(trigger)) => Some(trigger),
                        // An event's request waits with the rest while a location is
                        // failing (it stays asked for until then).
                        Ok(Due::Waiting) => None,
                        Ok(Due::No) => asked.cloned(),
                        Err(e) => {
                            tracing::warn!(transfer = %transfer.name, error = %e, "cannot tell whether the transfer is due");
                            None
                        }
                    },
                };
                let Some(trigger) = trigger else { continue };
                let lease = match self
                    .ctx
                    .store
                    .claim_transfer(
                        &transfer.name,
                        &self.ctx.node,
                        now,
                        now.saturating_add(micros(self.hold)),
                    )
                    .await
                {
                    Ok(Some(lease)) => lease,
                    // Another node runs it now.
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(transfer = %transfer.name, error = %e, "cannot claim the transfer");
                        continue;
                    }
                };
                let trigger = lease.requested_by.clone().unwrap_or(trigger);
                let held = Arc::new(std::sync::Mutex::new(Some(lease.clone())));
                let task = {
                    let ctx = self.ctx.clone();
                    let transfer = transfer.clone();
                    let hold = self.hold;
                    let held = held.clone();
                    tokio::spawn(async move {
                        let outcome =
                            run_held(&transfer, lease, &ctx, &trigger, hold, Arc::new(Quiet)).await;
                        if let Ok(mut held) = held.lock() {
                            *held = None;
                        }
                        match outcome {
                            Ok(summary) => tracing::info!(
                                transfer = %transfer.name,
                                files = summary.files,
                                failures = summary.failures,
                                "transfer run ended"
                            ),
                            Err(e) => {
                                tracing::warn!(transfer = %transfer.name, error = %e, "transfer run stopped")
                            }
                        }
                    })
                };
                running.insert(transfer.name.clone(), (task, held));
            }
        }
        for (name, (task, held)) in running {
            task.abort();
            let _ = task.await;
            let lease = held.lock().ok().and_then(|mut h| h.take());
            if let Some(lease) = lease
                && let Err(e) = self.ctx.store.release_transfer(&lease).await
            {
                tracing::warn!(transfer = %name, error = %e, "lease not released at stop");
            }
        }
    }

    /// Why `transfer` is due at `now` (store clock), if it is.
    async fn due(
        &self,
        transfer: &Transfer,
        now: i64,
        since: i64,
    ) -> Result<Due, wharf_store::StoreError> {
        // A transfer run by hand only is started by hand only (or the Manager): its files
        // left mid-way resume at its next run.
        if transfer.triggers.is_empty() {
            return Ok(Due::No);
        }
        let store = &self.ctx.store;
        let runs = store.transfer_runs(&transfer.name, 16).await?;
        let last_start = runs.first().map(|r| r.started_us);
        // A run that could not use a location: tried again after a doubling wait.
        let stopped = runs
            .iter()
            .take_while(|r| r.state == "failure" && r.message.is_some())
            .count();
        // While a location cannot be used, nothing but the wait (or a run asked for)
        // starts the transfer again: its open files would otherwise make it due at once,
        // every second, against a server that refuses it.
        let mut resume = true;
        if let (Some(last), true) = (runs.first(), stopped > 0) {
            let wait = transfer
                .retry_wait
                .saturating_mul(1 << (stopped - 1).min(20) as u32)
                .min(MAX_RUN_RETRY);
            let at = last
                .finished_us
                .unwrap_or(last.started_us)
                .saturating_add(micros(wait));
            if now < at {
                return Ok(Due::Waiting);
            }
            if stopped < transfer.attempts as usize {
                return Ok(Due::Now("retry".to_owned()));
            }
            // Its attempts spent: only its schedule starts it again.
            resume = false;
        }
        if resume
            && let Some(due) = store.next_transfer_file_due(&transfer.name).await?
            && due <= now
        {
            return Ok(Due::Now("resume".to_owned()));
        }
        for trigger in &transfer.triggers {
            match trigger {
                Trigger::Interval(every) => {
                    let due = last_start.is_none_or(|l| now >= l.saturating_add(micros(*every)));
                    if due {
                        return Ok(Due::Now("interval".to_owned()));
                    }
                }
                Trigger::Cron(schedule) => {
                    let from = last_start.unwrap_or(since).max(since);
                    let from =
                        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(from) * 1000)
                            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
                    if let Some(next) = schedule.next_after(from)
                        && (next.unix_timestamp_nanos() / 1000) as i64 <= now
                    {
                        return Ok(Due::Now("cron".to_owned()));
                    }
                }
                Trigger::Event => {}
            }
        }
        Ok(Due::No)
    }
}

/// Whether a transfer is due.
enum Due {
    /// Yes, for this reason.
    Now(String),
    /// No: a location failed, and its wait is not over.
    Waiting,
    /// No.
    No,
}
