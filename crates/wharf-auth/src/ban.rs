//! The ban engine: scores each client network's failures across every protocol and bans
//! the network when its score reaches the threshold within the window.
//!
//! It watches the event bus ([`EventObserver`]), so every front-end feeds it without
//! calling it: a failed password over FTP and an unknown account over SFTP count toward the
//! same ban. Front-ends ask [`BanEngine::refuses`] when a connection is accepted, before any
//! TLS or SSH handshake. An IPv6 client is scored and banned by its /64 (configurable), so
//! one host cannot escape by rotating through its own range.
//!
//! Bans are written to the store, and each node reloads the store's bans every few
//! seconds, so a cluster shares them and `wharf ban remove` reaches running servers.
//! Memory is bounded: at most [`MAX_TRACKED`] networks are scored at once.
//!
//! This engine must never block: `observe` and `refuses` run on the caller's task and only
//! take a short lock; the store is written by the engine's own task.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use wharf_core::{Event, EventBus, EventKind, EventObserver};
use wharf_store::{BanRecord, Store};
use wharf_types::IpNetwork;

/// Networks scored at once; past this, failures from new networks are not scored until
/// old scores age out (the bans already in force still hold).
pub const MAX_TRACKED: usize = 100_000;

/// How often the engine reloads bans from the store.
const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// Refused connections recorded per network at most once in this time.
const REFUSAL_RECORD_EVERY: Duration = Duration::from_secs(60);

/// The policy, from `[ban]` in the configuration.
#[derive(Debug, Clone)]
pub struct BanPolicy {
    /// Off: nothing is scored or banned (bans in the store are still honoured).
    pub enabled: bool,
    /// Score at which a network is banned.
    pub threshold: u32,
    /// Failures older than this no longer count.
    pub window: Duration,
    /// Length of a first ban.
    pub ban_time: Duration,
    /// Each later ban of the same network is this many percent longer than the one before.
    pub growth_percent: u32,
    /// No ban is longer than this.
    pub max_ban_time: Duration,
    /// A network's strikes are forgotten this long after its last ban ended.
    pub forget_after: Duration,
    /// IPv4 clients are scored by this prefix (32: each address on its own).
    pub ipv4_prefix: u8,
    /// IPv6 clients are scored by this prefix (64 by default).
    pub ipv6_prefix: u8,
    /// Networks never scored or banned.
    pub safelist: Vec<IpNetwork>,
    /// Score of a failed login for an existing account (wrong password, bad token).
    pub score_failed_login: u32,
    /// Score of a login for an account that does not exist.
    pub score_unknown_account: u32,
    /// Score of a protocol violation (`protocol.error`).
    pub score_protocol_error: u32,
}

impl Default for BanPolicy {
    fn default() -> Self {
        BanPolicy {
            enabled: true,
            threshold: 15,
            window: Duration::from_secs(30 * 60),
            ban_time: Duration::from_secs(30 * 60),
            growth_percent: 100,
            max_ban_time: Duration::from_secs(7 * 24 * 3600),
            forget_after: Duration::from_secs(7 * 24 * 3600),
            ipv4_prefix: 32,
            ipv6_prefix: 64,
            safelist: Vec::new(),
            score_failed_login: 1,
            score_unknown_account: 2,
            score_protocol_error: 2,
        }
    }
}

impl BanPolicy {
    /// The network a client address is scored and banned by.
    pub fn network_of(&self, addr: IpAddr) -> IpNetwork {
        IpNetwork::around(addr, self.ipv4_prefix, self.ipv6_prefix)
    }

    /// The length of a network's `strikes`-th ban.
    pub fn ban_length(&self, strikes: u32) -> Duration {
        let factor = 1.0 + f64::from(self.growth_percent) / 100.0;
        let exponent = i32::try_from(strikes.saturating_sub(1).min(64)).unwrap_or(64);
        let secs = self.ban_time.as_secs_f64() * factor.powi(exponent);
        Duration::from_secs_f64(secs.min(self.max_ban_time.as_secs_f64()))
    }

    fn score(&self, event: &Event) -> u32 {
        match event.kind {
            EventKind::LoginFailed => match event.attrs.get("cause").map(String::as_str) {
                Some("unknown-account") => self.score_unknown_account,
                // Offering keys the account does not hold is how SSH clients find theirs.
                _ if event.attrs.get("method").map(String::as_str) == Some("publickey") => 0,
                // The server's own trouble says nothing about the client.
                Some("misconfigured" | "store") => 0,
                _ => self.score_failed_login,
            },
            EventKind::ProtocolError => self.score_protocol_error,
            _ => 0,
        }
    }
}

/// A refused connection: which ban, until when, and whether to record it (refusals are
/// recorded once a minute per network, so a flood cannot flood the audit trail).
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The banned network.
    pub network: IpNetwork,
    /// When the ban ends.
    pub until: OffsetDateTime,
    /// Record this refusal as an event.
    pub record: bool,
}

impl Refusal {
    /// The reason for events and replies.
    pub fn reason(&self) -> String {
        format!("address banned until {}", rfc3339(self.until))
    }
}

#[derive(Debug, Clone)]
struct Active {
    until: OffsetDateTime,
    strikes: u32,
    /// The store holds this ban (a ban missing from the store after this was lifted there).
    stored: bool,
}

#[derive(Default)]
struct State {
    scores: HashMap<IpNetwork, Vec<(Instant, u32)>>,
    bans: HashMap<IpNetwork, Active>,
    /// Strikes of networks banned before, with when their last ban ended.
    strikes: HashMap<IpNetwork, (u32, OffsetDateTime)>,
    refusals_recorded: HashMap<IpNetwork, Instant>,
}

/// The ban engine of one node. Create it with [`BanEngine::new`], build the event bus
/// with it as observer, then [`BanEngine::run`] it.
pub struct BanEngine {
    policy: BanPolicy,
    node: String,
    store: Store,
    state: Mutex<State>,
    writes: mpsc::UnboundedSender<BanRecord>,
    pending: Mutex<Option<mpsc::UnboundedReceiver<BanRecord>>>,
}

impl BanEngine {
    /// An engine for `policy`, recording bans in `store` under `node`'s name.
    pub fn new(policy: BanPolicy, store: Store, node: String) -> Arc<BanEngine> {
        let (writes, pending) = mpsc::unbounded_channel();
        Arc::new(BanEngine {
            policy,
            node,
            store,
            state: Mutex::new(State::default()),
            writes,
            pending: Mutex::new(Some(pending)),
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> &BanPolicy {
        &self.policy
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way
        // that matters more than refusing to ban, so a poisoned lock is used as it is.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a connection from `addr` must be refused now.
    pub fn refuses(&self, addr: IpAddr) -> Option<Refusal> {
        let network = self.policy.network_of(addr);
        let now = OffsetDateTime::now_utc();
        let mut state = self.state();
        let until = match state.bans.get(&network) {
            Some(ban) if ban.until > now => ban.until,
            _ => return None,
        };
        let record = match state.refusals_recorded.get(&network) {
            Some(at) if at.elapsed() < REFUSAL_RECORD_EVERY => false,
            _ => {
                state.refusals_recorded.insert(network, Instant::now());
                true
            }
        };
        Some(Refusal {
            network,
            until,
            record,
        })
    }

    /// Keeps the bans current until `shutdown`: writes new
    /// bans, records `ban.lifted` as bans run out, and reloads the store's bans (made by
    /// other nodes, or lifted by an administrator) every few seconds.
    pub async fn run(self: Arc<Self>, events: EventBus, mut shutdown: watch::Receiver<bool>) {
        let Some(mut pending) = self.pending.lock().ok().and_then(|mut p| p.take()) else {
            return;
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last_reload = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(record) = pending.recv() => self.write(record).await,
                _ = tick.tick() => {
                    for event in self.expire() {
                        events.emit(event);
                    }
                    if last_reload.elapsed() >= RELOAD_EVERY {
                        self.reload().await;
                        last_reload = Instant::now();
                    }
                }
            }
        }
        while let Ok(record) = pending.try_recv() {
            self.write(record).await;
        }
    }

    async fn write(&self, record: BanRecord) {
        match self.store.put_ban(&record).await {
            Ok(()) => {
                if let Ok(network) = record.network.parse::<IpNetwork>()
                    && let Some(ban) = self.state().bans.get_mut(&network)
                {
                    ban.stored = true;
                }
            }
            Err(e) => tracing::warn!(error = %e, network = %record.network, "ban not stored"),
        }
    }

    /// Ends bans whose time ran out; returns their `ban.lifted` events.
    fn expire(&self) -> Vec<Event> {
        let now = OffsetDateTime::now_utc();
        let mut state = self.state();
        let ended: Vec<(IpNetwork, Active)> = state
            .bans
            .iter()
            .filter(|(_, ban)| ban.until <= now)
            .map(|(n, b)| (*n, b.clone()))
            .collect();
        let mut events = Vec::new();
        for (network, ban) in ended {
            state.bans.remove(&network);
            state.refusals_recorded.remove(&network);
            state.strikes.insert(network, (ban.strikes, ban.until));
            events.push(
                Event::new(EventKind::BanLifted)
                    .message(format!("ban of {network} ended"))
                    .attr("network", network.to_string())
                    .attr("node", self.node.clone()),
            );
        }
        let forget = self.policy.forget_after;
        state.strikes.retain(|_, (_, ended)| {
            now - *ended < time::Duration::try_from(forget).unwrap_or(time::Duration::MAX)
        });
        state
            .refusals_recorded
            .retain(|_, at| at.elapsed() < REFUSAL_RECORD_EVERY);
        let window = self.policy.window;
        state.scores.retain(|_, hits| {
            hits.retain(|(at, _)| at.elapsed() < window);
            !hits.is_empty()
        });
        events
    }

    /// Takes the store's bans as the truth for everything it has seen. `wharf serve` calls
    /// it once before accepting, so a restarted node refuses banned clients from the start.
    pub async fn reload(&self) {
        let now = OffsetDateTime::now_utc();
        let since = now
            - time::Duration::try_from(self.policy.forget_after).unwrap_or(time::Duration::ZERO);
        let rows = match self.store.bans_since(micros(since)).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "bans not reloaded from the store");
                return;
            }
        };
        let mut state = self.state();
        let mut seen = std::collections::HashSet::new();
        for row in rows {
            let Ok(network) = row.network.parse::<IpNetwork>() else {
                continue;
            };
            let until = from_micros(row.until_us);
            seen.insert(network);
            if until > now {
                let ban = state.bans.entry(network).or_insert(Active {
                    until,
                    strikes: row.strikes,
                    stored: true,
                });
                ban.until = ban.until.max(until);
                ban.strikes = ban.strikes.max(row.strikes);
                ban.stored = true;
            } else {
                let known = state.strikes.entry(network).or_insert((row.strikes, until));
                known.0 = known.0.max(row.strikes);
            }
        }
        // Stored bans that are gone from the store were lifted by an administrator.
        state
            .bans
            .retain(|network, ban| !ban.stored || seen.contains(network));
        state.strikes.retain(|network, _| seen.contains(network));
    }

    fn ban(&self, state: &mut State, network: IpNetwork, score: u32, trigger: &Event) -> Event {
        let strikes = state.strikes.get(&network).map_or(0, |(s, _)| *s) + 1;
        let now = OffsetDateTime::now_utc();
        let length = self.policy.ban_length(strikes);
        let until = now + time::Duration::try_from(length).unwrap_or(time::Duration::ZERO);
        state.bans.insert(
            network,
            Active {
                until,
                strikes,
                stored: false,
            },
        );
        state.scores.remove(&network);
        let reason = format!(
            "score {score} reached {} within {} s",
            self.policy.threshold,
            self.policy.window.as_secs()
        );
        let _ = self.writes.send(BanRecord {
            network: network.to_string(),
            banned_us: micros(now),
            until_us: micros(until),
            strikes,
            reason: reason.clone(),
            node: self.node.clone(),
        });
        let mut event =
            Event::new(EventKind::BanAdded).failed(format!("{network} banned: {reason}"));
        event.remote = trigger.remote;
        event.service = trigger.service.clone();
        event.protocol = trigger.protocol;
        event.session = trigger.session.clone();
        event
            .attr("network", network.to_string())
            .attr("until", rfc3339(until))
            .attr("strikes", strikes.to_string())
            .attr("score", score.to_string())
            .attr("seconds", length.as_secs().to_string())
    }
}

impl EventObserver for BanEngine {
    fn observe(&self, event: &Event) -> Vec<Event> {
        if !self.policy.enabled {
            return Vec::new();
        }
        let Some(remote) = event.remote else {
            return Vec::new();
        };
        let points = self.policy.score(event);
        if points == 0 || self.policy.safelist.iter().any(|n| n.contains(remote.ip())) {
            return Vec::new();
        }
        let network = self.policy.network_of(remote.ip());
        let mut state = self.state();
        if state.bans.contains_key(&network) {
            return Vec::new();
        }
        if !state.scores.contains_key(&network) && state.scores.len() >= MAX_TRACKED {
            return Vec::new();
        }
        let window = self.policy.window;
        let hits = state.scores.entry(network).or_default();
        hits.retain(|(at, _)| at.elapsed() < window);
        hits.push((Instant::now(), points));
        let score: u32 = hits.iter().map(|(_, p)| *p).sum();
        if score < self.policy.threshold {
            return Vec::new();
        }
        vec![self.ban(&mut state, network, score, event)]
    }
}

fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

fn from_micros(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A UTC time as RFC 3339 with seconds.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_grow_for_repeat_offenders_up_to_the_cap() {
        let policy = BanPolicy {
            ban_time: Duration::from_secs(60),
            growth_percent: 100,
            max_ban_time: Duration::from_secs(300),
            ..BanPolicy::default()
        };
        let lengths: Vec<u64> = (1..=5).map(|s| policy.ban_length(s).as_secs()).collect();
        assert_eq!(lengths, [60, 120, 240, 300, 300]);
        let flat = BanPolicy {
            growth_percent: 0,
            ..policy
        };
        assert_eq!(flat.ban_length(9).as_secs(), 60);
    }

    #[test]
    fn scores_follow_the_cause() {
        let policy = BanPolicy::default();
        let failed = |cause: &str, method: &str| {
            Event::new(EventKind::LoginFailed)
                .failed("x")
                .attr("cause", cause)
                .attr("method", method)
        };
        assert_eq!(policy.score(&failed("unknown-account", "password")), 2);
        assert_eq!(policy.score(&failed("wrong-password", "password")), 1);
        assert_eq!(policy.score(&failed("key-not-authorised", "publickey")), 0);
        assert_eq!(policy.score(&failed("store", "password")), 0);
        assert_eq!(policy.score(&Event::new(EventKind::ProtocolError)), 2);
        assert_eq!(policy.score(&Event::new(EventKind::UploadFailed)), 0);
    }
}
