//! The ban engine: scores each client network's failures across every protocol and bans
//! the network when its score reaches the threshold within the window.
//!
//! It watches the event bus ([`EventObserver`]), so every front-end feeds it without
//! calling it: a failed password over FTP and an unknown account over SFTP count toward the
//! same ban, and so do connections refused for coming too fast. Front-ends ask an
//! [`Admission`] when a connection is accepted, before any TLS or SSH handshake; it asks
//! this engine whether the network is banned or over its rate of new connections, and
//! passes its refusal records through the engine's throttle, so a flood of refused
//! connections writes a few records that count what they stand for (`attrs.suppressed`).
//! An IPv6 client is scored, rate-limited and banned by its /64 (configurable), so one host
//! cannot escape by rotating through its own range.
//!
//! Failures are scored twice: at once in this node's memory (so a client failing on one
//! node is banned by the failure that crosses the threshold, before its next connection),
//! and in the store by the engine's own task, where every node's failures add up (so a
//! client spreading its attempts over a cluster is banned at the same threshold). Bans are
//! written to the store, and every node follows the store's changes each second
//! (`ban/keeper.rs`), so a ban made on one node, or lifted by `wharf ban remove`, reaches
//! every node within two seconds. Memory is bounded: at most [`MAX_TRACKED`] networks are scored, rate-limited and
//! remembered for their earlier bans at once, and refusal records are held back for at most
//! [`MAX_THROTTLED`] (service, network, cause) triples. Bans in force are not capped: each
//! one costs its network a threshold's worth of audited failures.
//!
//! This engine must never block: `observe`, `refuses` and the admission checks run on the
//! caller's task and only take short locks; the store is read and written by the engine's
//! own task ([`BanEngine::run`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::mpsc;
use wharf_core::{Event, EventKind, EventObserver};
use wharf_net::{Passed, RateLimiter, Throttle};
use wharf_store::{BanRecord, Store};
use wharf_types::{IpNetwork, rfc3339};

mod admission;
mod keeper;

pub use admission::{Admission, Admitted, Limits, OpenConnections, ProxyPolicy, TurnedAway};

/// Networks scored at once; past this, failures from new networks are not scored until
/// old scores age out (the bans already in force still hold). Also the most networks whose
/// rate of new connections, or whose earlier bans, are remembered at once.
pub const MAX_TRACKED: usize = 100_000;

/// (service, network, cause) triples whose refusal records are thinned out at once; past
/// this, refusals of further networks are counted together (`attrs.suppressed_untracked`).
pub const MAX_THROTTLED: usize = 10_000;

/// Failures waiting for the engine's task to score them in the store; past this (the store
/// is slow or away), further failures are scored on their node alone until it catches up.
const MAX_QUEUED_FAILURES: usize = 10_000;

/// A banned network's refusals are recorded at most once in this time.
const BANNED_RECORD_EVERY: Duration = Duration::from_secs(60);

/// Other refusals of one network are recorded at once, then after waits that start here and
/// double up to [`BANNED_RECORD_EVERY`]: a flood is scored (and banned) within seconds while
/// it writes a handful of records.
const REFUSAL_FIRST_WAIT: Duration = Duration::from_secs(1);

/// Key of a refusal record's throttle: the service, the network, the cause.
type RecordKey = (Arc<str>, IpNetwork, &'static str);

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
    /// New connections (SSH, FTP control, HTTP) one network may open a minute, on all
    /// services together; 0: no limit. Applies whether or not `enabled` is set; safelisted
    /// networks are exempt.
    pub connection_rate: u32,
    /// How many of those may come at once.
    pub connection_burst: u32,
    /// Score of each connection refused for coming faster than `connection_rate`.
    pub score_refused_connection: u32,
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
            connection_rate: 600,
            connection_burst: 60,
            score_refused_connection: 1,
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
        let cause = event.attrs.get("cause").map(String::as_str);
        match event.kind {
            EventKind::LoginFailed => match cause {
                Some("unknown-account") => self.score_unknown_account,
                // Offering keys the account does not hold is how SSH clients find theirs.
                _ if event.attrs.get("method").map(String::as_str) == Some("publickey") => 0,
                // The server's own trouble says nothing about the client: its store, an
                // account it cannot serve (a home a directory gives outside home_roots), or
                // an LDAP directory or HTTP authentication service that is down or answers
                // nonsense (the password may well be right).
                // Nor does a kept login that simply has to be made again.
                Some(
                    "misconfigured" | "store" | "service-failed" | "home-outside-roots"
                    | "login-expired",
                ) => 0,
                _ => self.score_failed_login,
            },
            // A Manager login scores as a file service's: an unknown name more than a
            // wrong password, the server's own trouble not at all.
            EventKind::AdminLoginFailed => match cause {
                Some("unknown-admin") => self.score_unknown_account,
                Some("store") => 0,
                _ => self.score_failed_login,
            },
            EventKind::ProtocolError => self.score_protocol_error,
            // A record of refusals stands for itself and the ones it counts.
            EventKind::ConnectionRefused if cause == Some(TurnedAway::Rate.cause()) => {
                let suppressed = event
                    .attrs
                    .get("suppressed")
                    .and_then(|n| n.parse::<u32>().ok())
                    .unwrap_or(0);
                self.score_refused_connection
                    .saturating_mul(suppressed.saturating_add(1))
            }
            _ => 0,
        }
    }

    fn safelisted(&self, addr: IpAddr) -> bool {
        self.safelist.iter().any(|n| n.contains(addr))
    }
}

/// A connection from a banned network: which ban, until when.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The banned network.
    pub network: IpNetwork,
    /// When the ban ends.
    pub until: OffsetDateTime,
}

impl Refusal {
    /// The reason for events and replies.
    pub fn reason(&self) -> String {
        format!(
            "address banned until {}",
            rfc3339::format_seconds(self.until)
        )
    }
}

#[derive(Debug, Clone)]
struct Active {
    until: OffsetDateTime,
    strikes: u32,
    /// The store holds this ban (a ban missing from the store after this was lifted there).
    stored: bool,
}

struct State {
    scores: HashMap<IpNetwork, Vec<(Instant, u32)>>,
    bans: HashMap<IpNetwork, Active>,
    /// Strikes of networks banned before, with when their last ban ended.
    strikes: HashMap<IpNetwork, (u32, OffsetDateTime)>,
    /// The store's bans version this node has followed up to (-1: none read yet).
    version: i64,
}

impl Default for State {
    fn default() -> Self {
        State {
            scores: HashMap::new(),
            bans: HashMap::new(),
            strikes: HashMap::new(),
            version: -1,
        }
    }
}

/// Work for the engine's own task, in the order it arose.
enum Job {
    /// A failure this node alone has not scored enough to ban: scored in the store, with
    /// every node's failures of its network.
    Failure {
        network: IpNetwork,
        points: u32,
        at: OffsetDateTime,
        trigger: Box<Event>,
    },
    /// A ban this node made (and recorded): written to the store, unless another node's
    /// ban of the network is in force there already.
    Ban(BanRecord),
}

/// The ban engine of one node. Create it with [`BanEngine::new`], build the event bus
/// with it as observer, then [`BanEngine::run`] it.
pub struct BanEngine {
    /// The policy in force; a reload replaces it for the next connection or failure.
    policy: std::sync::RwLock<Arc<BanPolicy>>,
    node: String,
    store: Store,
    state: Mutex<State>,
    /// New connections per network (its own lock: admission never waits on scoring).
    rates: std::sync::RwLock<Arc<RateLimiter<IpNetwork>>>,
    /// Refusal records held back from a flood.
    records: Throttle<RecordKey, Event>,
    jobs: mpsc::UnboundedSender<Job>,
    pending: Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
    /// `Job::Failure`s queued and not yet scored (bounded by [`MAX_QUEUED_FAILURES`]).
    queued_failures: AtomicUsize,
    /// The store failed the engine's last call (logged once until it answers again).
    store_trouble: AtomicBool,
}

impl BanEngine {
    /// An engine for `policy`, recording bans in `store` under `node`'s name.
    pub fn new(policy: BanPolicy, store: Store, node: String) -> Arc<BanEngine> {
        let (jobs, pending) = mpsc::unbounded_channel();
        Arc::new(BanEngine {
            rates: std::sync::RwLock::new(Arc::new(RateLimiter::new(
                policy.connection_rate,
                policy.connection_burst,
                MAX_TRACKED,
            ))),
            records: Throttle::new(MAX_THROTTLED, BANNED_RECORD_EVERY),
            policy: std::sync::RwLock::new(Arc::new(policy)),
            node,
            store,
            state: Mutex::new(State::default()),
            jobs,
            pending: Mutex::new(Some(pending)),
            queued_failures: AtomicUsize::new(0),
            store_trouble: AtomicBool::new(false),
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<BanPolicy> {
        Arc::clone(&self.policy.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Follows a reloaded `[ban]`: scoring, thresholds and ban lengths apply from the next
    /// failure, and a changed connection rate from the next connection (the counts so far
    /// start again). Bans in force stay as they are.
    pub fn set_policy(&self, policy: BanPolicy) {
        let old = self.policy();
        if (old.connection_rate, old.connection_burst)
            != (policy.connection_rate, policy.connection_burst)
        {
            *self.rates.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(RateLimiter::new(
                policy.connection_rate,
                policy.connection_burst,
                MAX_TRACKED,
            ));
        }
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
    }

    fn rates(&self) -> Arc<RateLimiter<IpNetwork>> {
        Arc::clone(&self.rates.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way
        // that matters more than refusing to ban, so a poisoned lock is used as it is.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `addr` is in a network banned now: any ban that contains it, whatever its
    /// prefix (an administrator's wider ban, or a ban set before a reload changed the
    /// policy's prefixes). One lookup per prefix length a ban may have, most specific first.
    pub fn refuses(&self, addr: IpAddr) -> Option<Refusal> {
        let now = OffsetDateTime::now_utc();
        let state = self.state();
        let lengths = match addr.to_canonical() {
            IpAddr::V4(_) => 0..=32u8,
            IpAddr::V6(_) => 0..=128u8,
        };
        lengths.rev().find_map(|length| {
            let network = IpNetwork::around(addr, length, length);
            match state.bans.get(&network) {
                Some(ban) if ban.until > now => Some(Refusal {
                    network,
                    until: ban.until,
                }),
                _ => None,
            }
        })
    }

    /// Takes one of the network's new connections; true when it has opened too many
    /// lately (`connection_rate`, `connection_burst`). Safelisted networks never are.
    fn over_rate(&self, addr: IpAddr) -> bool {
        let policy = self.policy();
        if policy.safelisted(addr) {
            return false;
        }
        !self.rates().allow(&policy.network_of(addr))
    }

    /// The refusal record to write now, if any: the first of its service, network and cause
    /// at once, later ones at growing intervals, each counting those held back before it
    /// (`attrs.suppressed`). A banned network's refusals are recorded once a minute.
    fn throttle(&self, key: RecordKey, event: Event) -> Option<Event> {
        let first_wait = if key.2 == TurnedAway::Banned.cause() {
            BANNED_RECORD_EVERY
        } else {
            REFUSAL_FIRST_WAIT
        };
        self.records
            .offer(&key, event, first_wait)
            .map(|passed| counted(passed, false))
    }

    /// Forgets old strikes and scores, prunes the rate table, and returns the refusal
    /// records held back whose wait is over (their count is written now, not only when the
    /// flood comes back).
    fn expire(&self) -> Vec<Event> {
        let now = OffsetDateTime::now_utc();
        let mut state = self.state();
        let forget = self.policy().forget_after;
        state.strikes.retain(|_, (_, ended)| {
            now - *ended < time::Duration::try_from(forget).unwrap_or(time::Duration::MAX)
        });
        cap_strikes(&mut state.strikes);
        let window = self.policy().window;
        state.scores.retain(|_, hits| {
            hits.retain(|(at, _)| at.elapsed() < window);
            !hits.is_empty()
        });
        drop(state);
        self.rates().prune();
        self.records
            .due()
            .into_iter()
            .map(|passed| counted(passed, true))
            .collect()
    }

    /// Bans `network` in this node's memory from now; returns the ban's store record and
    /// its `ban.added` event (made after `trigger`, the failure that crossed the threshold).
    fn ban(
        &self,
        state: &mut State,
        network: IpNetwork,
        score: u64,
        trigger: &Event,
    ) -> (BanRecord, Event) {
        let policy = self.policy();
        let strikes = state.strikes.get(&network).map_or(0, |(s, _)| *s) + 1;
        let now = OffsetDateTime::now_utc();
        let length = policy.ban_length(strikes);
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
            policy.threshold,
            policy.window.as_secs()
        );
        let record = BanRecord {
            network: network.to_string(),
            banned_us: micros(now),
            until_us: micros(until),
            strikes,
            reason: reason.clone(),
            node: self.node.clone(),
        };
        let mut event =
            Event::new(EventKind::BanAdded).failed(format!("{network} banned: {reason}"));
        event.remote = trigger.remote;
        event.service = trigger.service.clone();
        event.protocol = trigger.protocol;
        event.session = trigger.session.clone();
        let event = event
            .attr("network", network.to_string())
            .attr("until", rfc3339::format_seconds(until))
            .attr("strikes", strikes.to_string())
            .attr("score", score.to_string())
            .attr("seconds", length.as_secs().to_string());
        (record, event)
    }
}

impl EventObserver for BanEngine {
    fn observe(&self, event: &Event) -> Vec<Event> {
        // One policy for the whole event, even if a reload replaces it meanwhile.
        let policy = self.policy();
        if !policy.enabled {
            return Vec::new();
        }
        let Some(remote) = event.remote else {
            return Vec::new();
        };
        let points = policy.score(event);
        if points == 0 || policy.safelisted(remote.ip()) {
            return Vec::new();
        }
        let network = policy.network_of(remote.ip());
        let mut state = self.state();
        if state.bans.contains_key(&network) {
            return Vec::new();
        }
        // This node's own score: enough on its own, the ban is made here and now.
        if state.scores.contains_key(&network) || state.scores.len() < MAX_TRACKED {
            let window = policy.window;
            let hits = state.scores.entry(network).or_default();
            hits.retain(|(at, _)| at.elapsed() < window);
            hits.push((Instant::now(), points));
            let score: u64 = hits.iter().map(|(_, p)| u64::from(*p)).sum();
            if score >= u64::from(policy.threshold) {
                let (record, added) = self.ban(&mut state, network, score, event);
                let _ = self.jobs.send(Job::Ban(record));
                return vec![added];
            }
        }
        drop(state);
        // Not enough here: the engine's task adds it to every node's failures in the store.
        if self.queued_failures.fetch_add(1, Ordering::Relaxed) < MAX_QUEUED_FAILURES {
            let job = Job::Failure {
                network,
                points,
                at: OffsetDateTime::now_utc(),
                trigger: Box::new(event.clone()),
            };
            if self.jobs.send(job).is_ok() {
                return Vec::new();
            }
        }
        self.queued_failures.fetch_sub(1, Ordering::Relaxed);
        Vec::new()
    }
}

/// A refusal record let through the throttle, with what it stands for. A record `late`
/// (written when its wait ran out) is stamped now, so the trail's times stay in order.
fn counted(passed: Passed<Event>, late: bool) -> Event {
    let Passed {
        item: mut event,
        suppressed,
        overflow,
    } = passed;
    if late {
        event.time = OffsetDateTime::now_utc();
    }
    if suppressed > 0 {
        // Refusals of other networks (the table was full) must not count toward this one's
        // score, so they are named apart.
        let key = if overflow {
            "suppressed_untracked"
        } else {
            "suppressed"
        };
        event.attrs.insert(key.to_owned(), suppressed.to_string());
    }
    event
}

/// Keeps the most recently ended strikes when there are more than [`MAX_TRACKED`].
fn cap_strikes(strikes: &mut HashMap<IpNetwork, (u32, OffsetDateTime)>) {
    if strikes.len() <= MAX_TRACKED {
        return;
    }
    let mut ended: Vec<OffsetDateTime> = strikes.values().map(|(_, at)| *at).collect();
    ended.sort_unstable();
    let cut = ended[strikes.len() - MAX_TRACKED];
    strikes.retain(|_, (_, at)| *at >= cut);
}

fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

fn from_micros(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_core::EventBus;

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
        let manager = |cause: &str| {
            Event::new(EventKind::AdminLoginFailed)
                .failed("x")
                .attr("cause", cause)
        };
        assert_eq!(policy.score(&manager("unknown-admin")), 2);
        assert_eq!(policy.score(&manager("wrong-code")), 1);
        assert_eq!(policy.score(&manager("store")), 0);
    }

    #[test]
    fn an_authentication_service_outage_is_not_the_clients_fault() {
        let policy = BanPolicy::default();
        let failed = |cause: &str| {
            Event::new(EventKind::LoginFailed)
                .failed("x")
                .attr("cause", cause)
                .attr("method", "password")
        };
        assert_eq!(policy.score(&failed("service-failed")), 0);
        assert_eq!(policy.score(&failed("home-outside-roots")), 0);
        assert_eq!(policy.score(&failed("misconfigured")), 0);
        assert_eq!(policy.score(&failed("login-expired")), 0);
        // What the directory or service itself decided still counts.
        assert_eq!(policy.score(&failed("refused")), 1);
        assert_eq!(policy.score(&failed("wrong-password")), 1);
    }

    #[test]
    fn refused_connections_score_by_cause_and_by_what_they_stand_for() {
        let policy = BanPolicy {
            score_refused_connection: 2,
            ..BanPolicy::default()
        };
        let refused = |cause: &str| {
            Event::new(EventKind::ConnectionRefused)
                .failed("x")
                .attr("cause", cause)
        };
        assert_eq!(policy.score(&refused("rate")), 2);
        assert_eq!(policy.score(&refused("rate").attr("suppressed", "9")), 20);
        assert_eq!(
            policy.score(&refused("rate").attr("suppressed", "4000000000")),
            u32::MAX
        );
        // Counts of other networks' refusals do not land on this one.
        assert_eq!(
            policy.score(&refused("rate").attr("suppressed_untracked", "9")),
            2
        );
        // Holding the per-address allowance, a full server and a ban already in force are
        // not scored.
        assert_eq!(policy.score(&refused("max-per-ip")), 0);
        assert_eq!(policy.score(&refused("max-connections")), 0);
        assert_eq!(policy.score(&refused("banned").attr("suppressed", "9")), 0);
    }

    /// A flood of connections from one address: a few passes, the rest is refused for its
    /// rate; a handful of records count every refusal, the count bans the network, and the
    /// ban's own refusals are thinned out too. Another network is untouched.
    #[tokio::test]
    async fn a_connection_flood_writes_few_records_and_ends_in_a_ban() {
        let policy = BanPolicy {
            threshold: 20,
            connection_rate: 60,
            connection_burst: 5,
            ..BanPolicy::default()
        };
        let (store, _scratch) = admission::tests::scratch_store().await;
        let engine = BanEngine::new(policy, store.clone(), "n1".into());
        let (bus, mut records) = EventBus::with_observer(engine.clone());
        let auth = crate::Authenticator::new(store).with_bans(engine.clone());
        let gate = Admission::new(
            &auth,
            bus.clone(),
            "ssh",
            wharf_types::Protocol::Ssh,
            Limits {
                max_connections: 100,
                max_per_ip: 3,
            },
        );
        let flood = admission::tests::addr("192.0.2.7");
        let mut held = Vec::new();
        let mut refused = Vec::new();
        for _ in 0..1000 {
            match gate.admit(flood) {
                Ok(admitted) => held.push(admitted),
                Err(why) => refused.push(why),
            }
        }
        assert_eq!(held.len(), 3);
        assert_eq!(refused.len(), 997);
        // The burst of 5: three served, two over max_per_ip; then the rate.
        assert_eq!(
            refused
                .iter()
                .filter(|w| **w == TurnedAway::PerAddress)
                .count(),
            2
        );
        let honest = gate.admit(admission::tests::addr("2001:db8::1"));
        assert!(honest.is_ok());
        // One record per cause so far, the rate's not yet counted, so no ban.
        let mut written = Vec::new();
        while let Ok(e) = records.try_recv() {
            written.push(e);
        }
        assert_eq!(written.len(), 2, "{written:?}");
        assert!(engine.refuses(flood.ip()).is_none());
        // Once the first wait is over, the held-back count is written and bans the flood.
        tokio::time::sleep(REFUSAL_FIRST_WAIT + Duration::from_millis(100)).await;
        for event in engine.expire() {
            bus.emit(event);
        }
        while let Ok(e) = records.try_recv() {
            written.push(e);
        }
        let rate: Vec<&Event> = written
            .iter()
            .filter(|e| e.attrs.get("cause").map(String::as_str) == Some("rate"))
            .collect();
        let standing_for: u64 = rate
            .iter()
            .map(|e| {
                1 + e
                    .attrs
                    .get("suppressed")
                    .map_or(0, |n| n.parse::<u64>().unwrap())
            })
            .sum();
        assert_eq!(standing_for, 995);
        let ban = written
            .iter()
            .find(|e| e.kind == EventKind::BanAdded)
            .expect("the flood is banned");
        assert_eq!(ban.attrs["network"], "192.0.2.7/32");
        assert!(engine.refuses(flood.ip()).is_some());
        // The ban's refusals: the first recorded, the next thousand held back for a minute.
        for _ in 0..1000 {
            assert_eq!(gate.admit(flood).err(), Some(TurnedAway::Banned));
        }
        let mut banned = 0;
        while let Ok(e) = records.try_recv() {
            assert_eq!(e.attrs["cause"], "banned");
            banned += 1;
        }
        assert_eq!(banned, 1);
        assert!(engine.records.tracked() <= 3);
    }
}
