//! The ban engine's own task: everything it does with the store, so that every node of a
//! cluster scores and bans together.
//!
//! - Failures one node has not scored enough to ban on its own are added to the store's
//!   `ban_failures`, and the network's score there (every node's failures within the window)
//!   decides. The node whose failure crossed the threshold makes the ban.
//! - Bans are recorded with [`Store::claim_ban`]: when another node's ban of the network is
//!   in force there already, this node adopts it and records nothing, so a ban has one
//!   `ban.added` record in the cluster, written by the node that made it. (Only when two
//!   nodes cross the threshold within the same few milliseconds, each on its own memory's
//!   count, can both record one; the store still holds a single ban.)
//! - The end of a ban on time is recorded (`ban.lifted`) by the first node to see it, which
//!   marks it in the store ([`Store::note_ban_ended`]); the others stay silent.
//! - Every second the task reads the rows of `bans` changed since the version it saw last
//!   and applies them: bans made on other nodes or by `wharf ban add`, and lifts by `wharf
//!   ban remove` (kept as tombstones for this). A change is therefore in force everywhere
//!   within about a second, well inside the two seconds promised.
//!
//! Why polling rather than PostgreSQL's LISTEN/NOTIFY: one indexed query a second per node
//! (`version > $1`, usually no rows) costs next to nothing, works the same on SQLite and
//! PostgreSQL, needs no connection held apart from the pool, and cannot lose a change: a
//! notification sent while a listener reconnects (PostgreSQL restarting, a network blip) is
//! gone, so NOTIFY would need this poll as its fallback anyway, and the poll alone already
//! meets the bound.
//!
//! This task must never hold the engine's lock across a store call, and never record a ban
//! that another node made.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::watch;
use wharf_core::{Event, EventBus, EventKind};
use wharf_store::{BanChange, BanClaim, BanRecord};
use wharf_types::IpNetwork;

use super::{Active, BanEngine, Job, State, cap_strikes, from_micros, micros};

/// How often the store's changes of bans are read.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Rows read by one query while following the store.
const FOLLOW_BATCH: i64 = 1_000;

/// How often failures older than the window, and bans long ended, are forgotten.
const FORGET_EVERY: Duration = Duration::from_secs(60);

impl BanEngine {
    /// Keeps the bans current until `shutdown`: scores failures with every node's, writes
    /// new bans, records `ban.lifted` as bans run out, and follows the store's changes
    /// (bans made by other nodes, lifted by an administrator) every second.
    pub async fn run(self: Arc<Self>, events: EventBus, mut shutdown: watch::Receiver<bool>) {
        let Some(mut pending) = self.pending.lock().ok().and_then(|mut p| p.take()) else {
            return;
        };
        let mut tick = tokio::time::interval(FOLLOW_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_forget = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(job) = pending.recv() => self.handle(job, &events).await,
                _ = tick.tick() => {
                    self.end_bans(&events).await;
                    for event in self.expire() {
                        events.emit(event);
                    }
                    self.follow().await;
                    if last_forget.elapsed() >= FORGET_EVERY {
                        self.forget().await;
                        last_forget = Instant::now();
                    }
                }
            }
        }
        // Bans made before the stop are kept; failures not yet scored are let go.
        while let Ok(job) = pending.try_recv() {
            if let Job::Ban(record) = job {
                self.record_ban(record).await;
            }
        }
    }

    /// Takes the store's bans as they stand. `wharf serve` calls it once before accepting,
    /// so a restarted node refuses banned clients from the start; the running task then
    /// follows the changes.
    pub async fn reload(&self) {
        self.follow().await;
    }

    async fn handle(&self, job: Job, events: &EventBus) {
        match job {
            Job::Failure {
                network,
                points,
                at,
                trigger,
            } => {
                self.queued_failures.fetch_sub(1, Ordering::Relaxed);
                self.score_everywhere(network, points, at, &trigger, events)
                    .await;
            }
            Job::Ban(record) => self.record_ban(record).await,
        }
    }

    /// Adds a failure to the store's and bans its network when every node's failures
    /// together reach the threshold.
    async fn score_everywhere(
        &self,
        network: IpNetwork,
        points: u32,
        at: OffsetDateTime,
        trigger: &Event,
        events: &EventBus,
    ) {
        if self.state().bans.contains_key(&network) {
            return;
        }
        let since = before(at, self.policy().window);
        let name = network.to_string();
        let score = match self
            .store
            .score_failure(&name, micros(at), points, &self.node, micros(since))
            .await
        {
            Ok(score) => score,
            Err(e) => {
                self.trouble(&e);
                return;
            }
        };
        if score < u64::from(self.policy().threshold) {
            return;
        }
        let (record, added) = {
            let mut state = self.state();
            if state.bans.contains_key(&network) {
                return;
            }
            self.ban(&mut state, network, score, trigger)
        };
        match self.store.claim_ban(&record).await {
            Ok(BanClaim::Made) => {
                self.mark_stored(network);
                events.emit(added);
            }
            Ok(BanClaim::Held(theirs)) => self.adopt(network, &theirs),
            Err(e) => {
                // The ban holds on this node all the same, so it is recorded here.
                tracing::warn!(error = %e, network = %network, "ban not stored");
                events.emit(added);
            }
        }
    }

    /// Writes a ban this node made from its own count (and already recorded).
    async fn record_ban(&self, record: BanRecord) {
        let Ok(network) = record.network.parse::<IpNetwork>() else {
            return;
        };
        match self.store.claim_ban(&record).await {
            Ok(BanClaim::Made) => self.mark_stored(network),
            Ok(BanClaim::Held(theirs)) => self.adopt(network, &theirs),
            Err(e) => tracing::warn!(error = %e, network = %record.network, "ban not stored"),
        }
    }

    fn mark_stored(&self, network: IpNetwork) {
        if let Some(ban) = self.state().bans.get_mut(&network) {
            ban.stored = true;
        }
    }

    /// Another node's ban of the network is in force: it replaces this node's own.
    fn adopt(&self, network: IpNetwork, theirs: &BanRecord) {
        let mut state = self.state();
        state.bans.insert(
            network,
            Active {
                until: from_micros(theirs.until_us),
                strikes: theirs.strikes,
                stored: true,
            },
        );
        state.scores.remove(&network);
    }

    /// Ends bans whose time ran out and records each end once in the cluster.
    async fn end_bans(&self, events: &EventBus) {
        let now = OffsetDateTime::now_utc();
        let ended: Vec<(IpNetwork, Active)> = {
            let mut state = self.state();
            let ended: Vec<(IpNetwork, Active)> = state
                .bans
                .iter()
                .filter(|(_, ban)| ban.until <= now)
                .map(|(n, b)| (*n, b.clone()))
                .collect();
            for (network, ban) in &ended {
                state.bans.remove(network);
                state.strikes.insert(*network, (ban.strikes, ban.until));
            }
            ended
        };
        for (network, ban) in ended {
            let first = if ban.stored {
                match self
                    .store
                    .note_ban_ended(&network.to_string(), micros(now))
                    .await
                {
                    Ok(first) => first,
                    // Better a second record of the end than none.
                    Err(e) => {
                        self.trouble(&e);
                        true
                    }
                }
            } else {
                true
            };
            if first {
                events.emit(
                    Event::new(EventKind::BanLifted)
                        .message(format!("ban of {network} ended"))
                        .attr("network", network.to_string())
                        .attr("node", self.node.clone()),
                );
            }
        }
    }

    /// Applies the store's changes since the version last seen.
    async fn follow(&self) {
        loop {
            let after = self.state().version;
            let changes = match self.store.bans_changed(after, FOLLOW_BATCH).await {
                Ok(changes) => changes,
                Err(e) => {
                    self.trouble(&e);
                    return;
                }
            };
            self.store_trouble.store(false, Ordering::Relaxed);
            let now = OffsetDateTime::now_utc();
            let remembered = before(now, self.policy().forget_after);
            let mut state = self.state();
            for change in &changes {
                apply(&mut state, change, now, remembered);
                state.version = state.version.max(change.version);
            }
            cap_strikes(&mut state.strikes);
            if i64::try_from(changes.len()).unwrap_or(i64::MAX) < FOLLOW_BATCH {
                return;
            }
        }
    }

    /// Forgets failures past the window and rows of bans ended long ago. Every node does
    /// it; the deletes are the same whoever runs them.
    async fn forget(&self) {
        let now = OffsetDateTime::now_utc();
        let failures = before(now, self.policy().window);
        if let Err(e) = self.store.forget_ban_failures(micros(failures)).await {
            self.trouble(&e);
        }
        let bans = before(now, self.policy().forget_after);
        if let Err(e) = self.store.forget_bans(micros(bans)).await {
            self.trouble(&e);
        }
    }

    /// Logs the store's trouble once until it answers again.
    fn trouble(&self, error: &wharf_store::StoreError) {
        if !self.store_trouble.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %error, "ban engine cannot reach the store; this node scores and bans on its own until it can");
        }
    }
}

/// One changed row: the store is the truth, except for a ban this node made and has not
/// yet written (it is newer than anything the store says).
fn apply(state: &mut State, change: &BanChange, now: OffsetDateTime, remembered: OffsetDateTime) {
    let Ok(network) = change.ban.network.parse::<IpNetwork>() else {
        return;
    };
    if state.bans.get(&network).is_some_and(|ban| !ban.stored) {
        return;
    }
    if change.lifted {
        state.bans.remove(&network);
        state.strikes.remove(&network);
        state.scores.remove(&network);
        return;
    }
    let until = from_micros(change.ban.until_us);
    if until > now {
        state.bans.insert(
            network,
            Active {
                until,
                strikes: change.ban.strikes,
                stored: true,
            },
        );
        state.scores.remove(&network);
    } else if !state.bans.contains_key(&network) && until > remembered {
        state.strikes.insert(network, (change.ban.strikes, until));
    }
}

/// `span` before `at`, or the epoch when that is further back than time goes.
fn before(at: OffsetDateTime, span: Duration) -> OffsetDateTime {
    time::Duration::try_from(span)
        .ok()
        .and_then(|span| at.checked_sub(span))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use wharf_core::EventBus;

    use super::super::BanPolicy;
    use super::super::admission::tests::{addr, scratch_store};
    use super::*;

    fn wrong_password(from: SocketAddr) -> Event {
        let mut event = Event::new(EventKind::LoginFailed)
            .failed("wrong password")
            .attr("cause", "wrong-password")
            .attr("method", "password");
        event.remote = Some(from);
        event
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !done() {
            assert!(Instant::now() < deadline, "not within 2 s: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Two nodes on one store: failures spread over both add up to one ban, made and
    /// recorded by the node whose failure crossed the threshold and enforced by both; its
    /// lift in the store reaches both.
    #[tokio::test]
    async fn nodes_on_one_store_score_together_and_follow_each_others_bans() {
        let policy = BanPolicy {
            threshold: 4,
            ..BanPolicy::default()
        };
        let (store, _scratch) = scratch_store().await;
        let (stop, stopped) = watch::channel(false);
        let mut nodes = Vec::new();
        for name in ["a", "b"] {
            let engine = BanEngine::new(policy.clone(), store.clone(), name.into());
            engine.reload().await;
            let (bus, records) = EventBus::with_observer(engine.clone());
            tokio::spawn(engine.clone().run(bus.clone(), stopped.clone()));
            nodes.push((engine, bus, records));
        }
        let attacker = addr("192.0.2.50");
        for i in 0..4 {
            let (engine, bus, _) = &nodes[i % 2];
            bus.emit(wrong_password(attacker));
            if i < 3 {
                // Each failure is in the store before the next one comes.
                tokio::time::sleep(Duration::from_millis(100)).await;
                assert!(
                    engine.refuses(attacker.ip()).is_none(),
                    "banned after {}",
                    i + 1
                );
            }
        }
        until("b bans", || nodes[1].0.refuses(attacker.ip()).is_some()).await;
        until("a follows", || nodes[0].0.refuses(attacker.ip()).is_some()).await;
        assert!(nodes[0].0.refuses(addr("192.0.2.51").ip()).is_none());

        // One ban.added, by b; none on a.
        let mut added = Vec::new();
        for (_, _, records) in &mut nodes {
            let mut mine = Vec::new();
            while let Ok(e) = records.try_recv() {
                if e.kind == EventKind::BanAdded {
                    mine.push(e);
                }
            }
            added.push(mine);
        }
        assert!(added[0].is_empty(), "{:?}", added[0]);
        assert_eq!(added[1].len(), 1);
        assert_eq!(added[1][0].attrs["score"], "4");
        assert_eq!(store.ban("192.0.2.50/32").await.unwrap().unwrap().node, "b");

        assert!(
            store
                .remove_ban("192.0.2.50/32", micros(OffsetDateTime::now_utc()))
                .await
                .unwrap()
        );
        until("a lifts", || nodes[0].0.refuses(attacker.ip()).is_none()).await;
        until("b lifts", || nodes[1].0.refuses(attacker.ip()).is_none()).await;
        let _ = stop.send(true);
    }

    /// A ban's end on time is recorded by one node only.
    #[tokio::test]
    async fn the_end_of_a_ban_is_recorded_once() {
        let policy = BanPolicy {
            threshold: 1,
            ban_time: Duration::from_secs(3),
            ..BanPolicy::default()
        };
        let (store, _scratch) = scratch_store().await;
        let (stop, stopped) = watch::channel(false);
        let mut nodes = Vec::new();
        for name in ["a", "b"] {
            let engine = BanEngine::new(policy.clone(), store.clone(), name.into());
            let (bus, records) = EventBus::with_observer(engine.clone());
            tokio::spawn(engine.clone().run(bus.clone(), stopped.clone()));
            nodes.push((engine, bus, records));
        }
        let attacker = addr("192.0.2.60");
        nodes[0].1.emit(wrong_password(attacker));
        until("b follows", || nodes[1].0.refuses(attacker.ip()).is_some()).await;
        tokio::time::sleep(Duration::from_millis(4_000)).await;
        let mut lifted = 0;
        for (engine, _, records) in &mut nodes {
            assert!(engine.refuses(attacker.ip()).is_none());
            while let Ok(e) = records.try_recv() {
                lifted += usize::from(e.kind == EventKind::BanLifted);
            }
        }
        assert_eq!(lifted, 1);
        let _ = stop.send(true);
    }
}
