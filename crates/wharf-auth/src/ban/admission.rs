//! Admission at accept: the one place that decides whether a new connection is served,
//! for every front-end (SSH, FTP control, HTTP). In order: a banned network is refused; a
//! network opening connections faster than `[ban] connection_rate` is refused (and scored,
//! so a flood ends in a ban); then the service's own limits, `max_connections` in all and
//! `max_per_ip` per network (the ban engine's network: one IPv4 address, an IPv6 /64).
//!
//! Every refusal is an audit record (`connection.refused`, `attrs.cause`), thinned out by
//! the ban engine so a flood writes a handful of records that count what they stand for.
//! Front-ends only build the connection's id and, for protocols that say why, the reply.
//!
//! This must never block or touch the network: it runs in the accept loop, before a byte
//! is read, and only takes short locks.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wharf_core::{Event, EventBus, EventKind};
use wharf_net::{AddressSlot, AddressSlots};
use wharf_types::{IpNetwork, Protocol};

use super::{BanEngine, BanPolicy};
use crate::Authenticator;

/// A service's own connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections at once from one network.
    pub max_per_ip: usize,
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnedAway {
    /// The network is banned.
    Banned,
    /// The network opens new connections too fast.
    Rate,
    /// The service serves `max_connections` already.
    Full,
    /// The network holds `max_per_ip` connections to the service already.
    PerAddress,
}

impl TurnedAway {
    /// `attrs.cause` of the refusal record.
    pub fn cause(self) -> &'static str {
        match self {
            TurnedAway::Banned => "banned",
            TurnedAway::Rate => "rate",
            TurnedAway::Full => "max-connections",
            TurnedAway::PerAddress => "max-per-ip",
        }
    }

    /// What a protocol that explains itself before closing (FTP's 421) tells the client.
    pub fn reply(self) -> &'static str {
        match self {
            TurnedAway::Banned => "address banned after too many failures",
            TurnedAway::Rate => "too many new connections from your address; try again later",
            TurnedAway::Full => "too many connections; try again later",
            TurnedAway::PerAddress => "too many connections from your address",
        }
    }
}

/// A connection let in: holds its places in the service's limits until dropped.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    _slot: AddressSlot<IpNetwork>,
}

/// The admission of one service. Cheap to clone.
#[derive(Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

struct Inner {
    bans: Option<Arc<BanEngine>>,
    events: EventBus,
    service: Arc<str>,
    protocol: Protocol,
    open: Arc<Semaphore>,
    per_network: AddressSlots<IpNetwork>,
    /// IPv4 and IPv6 prefix lengths networks are counted by (the ban engine's).
    prefixes: (u8, u8),
}

impl Admission {
    /// The admission of service `service` speaking `protocol`, asking `auth`'s ban engine
    /// (none: only the service's limits apply) and recording refusals on `events`.
    pub fn new(
        auth: &Authenticator,
        events: EventBus,
        service: &str,
        protocol: Protocol,
        limits: Limits,
    ) -> Admission {
        let bans = auth.bans().cloned();
        let policy = bans
            .as_ref()
            .map_or_else(BanPolicy::default, |b| b.policy.clone());
        Admission {
            inner: Arc::new(Inner {
                bans,
                events,
                service: Arc::from(service),
                protocol,
                open: Arc::new(Semaphore::new(limits.max_connections)),
                per_network: AddressSlots::new(limits.max_per_ip),
                prefixes: (policy.ipv4_prefix, policy.ipv6_prefix),
            }),
        }
    }

    /// The network `addr` is counted by.
    pub fn network_of(&self, addr: IpAddr) -> IpNetwork {
        IpNetwork::around(addr, self.inner.prefixes.0, self.inner.prefixes.1)
    }

    /// Decides about a connection from `remote` just accepted (its id `session`), and
    /// records a refusal.
    pub fn admit(&self, remote: SocketAddr, session: &str) -> Result<Admitted, TurnedAway> {
        let inner = &self.inner;
        let network = self.network_of(remote.ip());
        if let Some(bans) = &inner.bans {
            if let Some(refusal) = bans.refuses(remote.ip()) {
                return Err(self.refuse(TurnedAway::Banned, refusal.reason(), remote, session));
            }
            if bans.over_rate(remote.ip()) {
                let why = format!(
                    "too many new connections from {network} (more than {} at once or {} a minute)",
                    bans.policy.connection_burst, bans.policy.connection_rate
                );
                return Err(self.refuse(TurnedAway::Rate, why, remote, session));
            }
        }
        let Ok(permit) = Arc::clone(&inner.open).try_acquire_owned() else {
            return Err(self.refuse(
                TurnedAway::Full,
                "too many connections".into(),
                remote,
                session,
            ));
        };
        let Some(slot) = inner.per_network.take(network) else {
            return Err(self.refuse(
                TurnedAway::PerAddress,
                "too many connections from this address".into(),
                remote,
                session,
            ));
        };
        Ok(Admitted {
            _permit: permit,
            _slot: slot,
        })
    }

    fn refuse(
        &self,
        why: TurnedAway,
        message: String,
        remote: SocketAddr,
        session: &str,
    ) -> TurnedAway {
        let inner = &self.inner;
        let network = self.network_of(remote.ip());
        let mut event = Event::new(EventKind::ConnectionRefused)
            .failed(message)
            .attr("cause", why.cause())
            .attr("network", network.to_string());
        event.service = Some(inner.service.to_string());
        event.protocol = Some(inner.protocol);
        event.session = Some(session.to_owned());
        event.remote = Some(remote);
        let record = match &inner.bans {
            Some(bans) => bans.throttle((Arc::clone(&inner.service), network, why.cause()), event),
            None => Some(event),
        };
        if let Some(record) = record {
            inner.events.emit(record);
        }
        why
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn addr(text: &str) -> SocketAddr {
        SocketAddr::new(text.parse().unwrap(), 40000)
    }

    /// Removes a scratch store's files when the test ends.
    pub(crate) struct Scratch(std::path::PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A store in a fresh folder of the system's temporary folder, removed with the guard.
    pub(crate) async fn scratch_store() -> (wharf_store::Store, Scratch) {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("wharf-ban-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = wharf_store::Store::open_sqlite(&dir.join("w.db"))
            .await
            .unwrap();
        (store, Scratch(dir))
    }

    #[tokio::test]
    async fn the_per_address_limit_counts_the_ban_engines_networks() {
        let (events, _records) = EventBus::new();
        let (store, _scratch) = scratch_store().await;
        let admission = Admission::new(
            &Authenticator::new(store),
            events,
            "ssh",
            Protocol::Ssh,
            Limits {
                max_connections: 100,
                max_per_ip: 2,
            },
        );
        // Two addresses of one /64 share its allowance; the next /64 has its own.
        let first = admission.admit(addr("2001:db8:1:2::10"), "a").unwrap();
        let _second = admission.admit(addr("2001:db8:1:2:ffff::1"), "b").unwrap();
        assert_eq!(
            admission.admit(addr("2001:db8:1:2::99"), "c").err(),
            Some(TurnedAway::PerAddress)
        );
        let _elsewhere = admission.admit(addr("2001:db8:1:3::10"), "d").unwrap();
        // IPv4 addresses are counted one by one, and a dual-stack spelling is the same one.
        let _v4 = admission.admit(addr("192.0.2.1"), "e").unwrap();
        let _v4_mapped = admission.admit(addr("::ffff:192.0.2.1"), "f").unwrap();
        assert_eq!(
            admission.admit(addr("192.0.2.1"), "g").err(),
            Some(TurnedAway::PerAddress)
        );
        let _v4_next = admission.admit(addr("192.0.2.2"), "h").unwrap();
        // A closed connection gives its place back.
        drop(first);
        assert!(admission.admit(addr("2001:db8:1:2::99"), "i").is_ok());
    }
}
