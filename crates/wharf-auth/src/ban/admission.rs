//! The admission gate: the one place that decides whether a new connection is served and
//! gives it its connection id, for every listener (SSH, FTP control, HTTP and HTTPS, and any
//! service to come, such as the Manager's admin service: each builds one [`Admission`] with
//! its name, protocol and [`Limits`], and calls [`Admission::admit`] once per accepted TCP
//! connection). In order: a banned network is refused; a network opening connections faster
//! than `[ban] connection_rate` is refused (and scored, so a flood ends in a ban); then the
//! service's own limits, `max_connections` in all and `max_per_ip` per network (the ban
//! engine's network: one IPv4 address, an IPv6 /64). A connection let in gets an
//! [`Admitted`] ticket: its id, the address decided on, and its places in the limits, given
//! back when the ticket is dropped, whatever ends the connection.
//!
//! The address decided on is the caller's argument, not read from the socket: a listener
//! passes the accepted socket's peer, or, on a service with `proxy_protocol = true`, calls
//! [`Admission::admit_proxied`], which first refuses a socket whose peer is not a listed
//! balancer (`proxy_from`), then reads the balancer's PROXY header (`wharf_net::proxied`:
//! exactly the header, within [`ProxyPolicy::wait`], at most a service's `max_connections`
//! headers awaited at once) and decides on the client address it names. Bans, limits,
//! address rules and records then follow the real client. A missing, malformed, oversized or
//! late header is refused and recorded like any other refusal, under the socket's address.
//!
//! Every refusal is an audit record (`connection.refused`, `attrs.cause`, `attrs.network`),
//! thinned out by the ban engine so a flood writes a handful of records that count what they
//! stand for. Front-ends only answer a refused client the way their protocol does (SSH and
//! HTTPS close before any handshake, FTP says 421 first).
//!
//! It lives here, beside the ban engine it asks, rather than in `wharf-net` (which counts and
//! never decides, and sits below the core's events) or `wharf-core` (which knows nothing of
//! bans): it needs the ban engine, the event bus and `wharf-net`'s tables, and `wharf-auth`
//! is the lowest crate that sees all three.
//!
//! [`Admission::admit`] must never block or touch the network: it runs in the accept loop,
//! before a byte is read, and only takes short locks. Only [`Admission::admit_proxied`]
//! reads, on the connection's own task, and never past the header.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;
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
    /// A PROXY-protocol service was reached from an address outside `proxy_from`.
    ProxyUntrusted,
    /// A listed balancer sent no valid PROXY header in time.
    ProxyHeader,
    /// A service open to listed networks only (the Manager's `allow_from`) was reached from
    /// outside them.
    NotListed,
}

impl TurnedAway {
    /// `attrs.cause` of the refusal record.
    pub fn cause(self) -> &'static str {
        match self {
            TurnedAway::Banned => "banned",
            TurnedAway::Rate => "rate",
            TurnedAway::Full => "max-connections",
            TurnedAway::PerAddress => "max-per-ip",
            TurnedAway::ProxyUntrusted => "proxy-untrusted",
            TurnedAway::ProxyHeader => "proxy-header",
            TurnedAway::NotListed => "network-not-allowed",
        }
    }

    /// What a protocol that explains itself before closing (FTP's 421) tells the client.
    pub fn reply(self) -> &'static str {
        match self {
            TurnedAway::Banned => "address banned after too many failures",
            TurnedAway::Rate => "too many new connections from your address; try again later",
            TurnedAway::Full => "too many connections; try again later",
            TurnedAway::PerAddress => "too many connections from your address",
            TurnedAway::ProxyUntrusted => "this service is reached through its load balancer only",
            TurnedAway::ProxyHeader => "no valid PROXY protocol header",
            TurnedAway::NotListed => "this service is not open to your network",
        }
    }
}

/// The ticket of a connection let in: its id and the address it was decided on; holds its
/// places in the service's limits until dropped.
pub struct Admitted {
    id: String,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
    _slot: AddressSlot<IpNetwork>,
    _counted: Counted,
}

/// The connections let in and not yet closed on every service of one authenticator: the
/// node's count, which its heartbeat reports. Cheap to clone.
#[derive(Clone, Default)]
pub struct OpenConnections(Arc<AtomicUsize>);

impl OpenConnections {
    /// How many are open now.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn enter(&self) -> Counted {
        self.0.fetch_add(1, Ordering::Relaxed);
        Counted(Arc::clone(&self.0))
    }
}

/// One connection's place in [`OpenConnections`], given back when dropped.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admitted {
    /// The connection's id (`session` of its records).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The client address the connection was admitted for.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

/// A new connection's id: 16 hex digits, random, so ids never repeat across restarts or
/// the nodes of a cluster.
fn connection_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A service behind load balancers that speak the PROXY protocol (v1 or v2).
#[derive(Debug, Clone)]
pub struct ProxyPolicy {
    /// The balancers: only connections from these networks are served, each with a header.
    pub from: Vec<IpNetwork>,
    /// Time for a whole header to arrive.
    pub wait: Duration,
}

impl ProxyPolicy {
    /// True when `addr` is a listed balancer.
    pub fn trusts(&self, addr: IpAddr) -> bool {
        self.from.iter().any(|n| n.contains(addr))
    }
}

/// The admission of one service. Cheap to clone.
#[derive(Clone)]
pub struct Admission {
    inner: Arc<Inner>,
    proxy: Option<Arc<ProxyPolicy>>,
    /// The networks the service is open to (`None`: every network).
    only_from: Option<Arc<[IpNetwork]>>,
}

struct Inner {
    bans: Option<Arc<BanEngine>>,
    events: EventBus,
    service: Arc<str>,
    protocol: Protocol,
    open: Arc<Semaphore>,
    /// Connections awaiting their PROXY header, as many as `max_connections`.
    awaiting_header: Arc<Semaphore>,
    per_network: AddressSlots<IpNetwork>,
    open_on_node: OpenConnections,
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
            .map_or_else(BanPolicy::default, |b| (*b.policy()).clone());
        Admission {
            inner: Arc::new(Inner {
                bans,
                events,
                service: Arc::from(service),
                protocol,
                open: Arc::new(Semaphore::new(limits.max_connections)),
                awaiting_header: Arc::new(Semaphore::new(limits.max_connections)),
                per_network: AddressSlots::new(limits.max_per_ip),
                open_on_node: auth.connections().clone(),
                prefixes: (policy.ipv4_prefix, policy.ipv6_prefix),
            }),
            proxy: None,
            only_from: None,
        }
    }

    /// The same service, open only to clients in `networks` (all of them when empty).
    pub fn only_from(mut self, networks: Vec<IpNetwork>) -> Admission {
        self.only_from = (!networks.is_empty()).then(|| Arc::from(networks));
        self
    }

    /// The same service, reached only through balancers speaking the PROXY protocol.
    pub fn behind_proxies(mut self, policy: ProxyPolicy) -> Admission {
        self.proxy = Some(Arc::new(policy));
        self
    }

    /// Decides about a connection just accepted on `socket` from `socket_peer`: on a
    /// service behind balancers, refuses a peer that is not one of them, reads the PROXY
    /// header and decides on the client it names; elsewhere the same as [`Admission::admit`].
    /// Runs on the connection's own task: it may wait for the header.
    pub async fn admit_proxied(
        &self,
        socket: &mut TcpStream,
        socket_peer: SocketAddr,
    ) -> Result<Admitted, TurnedAway> {
        let Some(proxy) = &self.proxy else {
            return self.admit(socket_peer);
        };
        if !proxy.trusts(socket_peer.ip()) {
            let why = format!(
                "{} is not a load balancer listed in proxy_from",
                socket_peer.ip()
            );
            return Err(self.refuse(
                TurnedAway::ProxyUntrusted,
                why,
                socket_peer,
                connection_id(),
            ));
        }
        let Ok(_awaiting) = Arc::clone(&self.inner.awaiting_header).try_acquire_owned() else {
            let why = "too many connections awaiting their PROXY protocol header".into();
            return Err(self.refuse(TurnedAway::Full, why, socket_peer, connection_id()));
        };
        match wharf_net::proxied::read_header(socket, socket_peer, proxy.wait).await {
            Ok(header) => self.admit(header.client),
            Err(e) => {
                let why = format!("PROXY protocol header from {}: {e}", socket_peer.ip());
                Err(self.refuse(TurnedAway::ProxyHeader, why, socket_peer, connection_id()))
            }
        }
    }

    /// The network `addr` is counted by.
    pub fn network_of(&self, addr: IpAddr) -> IpNetwork {
        // The ban policy in force (a reload may have changed its prefixes); the one this
        // admission began with when there is no ban engine.
        let (v4, v6) = match &self.inner.bans {
            Some(bans) => {
                let policy = bans.policy();
                (policy.ipv4_prefix, policy.ipv6_prefix)
            }
            None => self.inner.prefixes,
        };
        IpNetwork::around(addr, v4, v6)
    }

    /// Decides about a connection just accepted from the client at `peer` (the socket's
    /// peer, or the address a trusted proxy names), gives it its id, and records a refusal.
    pub fn admit(&self, peer: SocketAddr) -> Result<Admitted, TurnedAway> {
        let inner = &self.inner;
        let id = connection_id();
        let network = self.network_of(peer.ip());
        if let Some(listed) = &self.only_from
            && !listed.iter().any(|n| n.contains(peer.ip()))
        {
            let why = format!(
                "{} is not in the networks this service is open to",
                peer.ip()
            );
            return Err(self.refuse(TurnedAway::NotListed, why, peer, id));
        }
        if let Some(bans) = &inner.bans {
            if let Some(refusal) = bans.refuses(peer.ip()) {
                return Err(self.refuse(TurnedAway::Banned, refusal.reason(), peer, id));
            }
            if bans.over_rate(peer.ip()) {
                let why = format!(
                    "too many new connections from {network} (more than {} at once or {} a minute)",
                    bans.policy().connection_burst,
                    bans.policy().connection_rate
                );
                return Err(self.refuse(TurnedAway::Rate, why, peer, id));
            }
        }
        let Ok(permit) = Arc::clone(&inner.open).try_acquire_owned() else {
            let why = "too many connections".into();
            return Err(self.refuse(TurnedAway::Full, why, peer, id));
        };
        let Some(slot) = inner.per_network.take(network) else {
            let why = "too many connections from this address".into();
            return Err(self.refuse(TurnedAway::PerAddress, why, peer, id));
        };
        Ok(Admitted {
            id,
            peer,
            _permit: permit,
            _slot: slot,
            _counted: inner.open_on_node.enter(),
        })
    }

    fn refuse(
        &self,
        why: TurnedAway,
        message: String,
        remote: SocketAddr,
        session: String,
    ) -> TurnedAway {
        let inner = &self.inner;
        let network = self.network_of(remote.ip());
        let mut event = Event::new(EventKind::ConnectionRefused)
            .failed(message)
            .attr("cause", why.cause())
            .attr("network", network.to_string());
        event.service = Some(inner.service.to_string());
        event.protocol = Some(inner.protocol);
        event.session = Some(session);
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
        let first = admission.admit(addr("2001:db8:1:2::10")).unwrap();
        let _second = admission.admit(addr("2001:db8:1:2:ffff::1")).unwrap();
        assert_eq!(
            admission.admit(addr("2001:db8:1:2::99")).err(),
            Some(TurnedAway::PerAddress)
        );
        let _elsewhere = admission.admit(addr("2001:db8:1:3::10")).unwrap();
        // IPv4 addresses are counted one by one, and a dual-stack spelling is the same one.
        let _v4 = admission.admit(addr("192.0.2.1")).unwrap();
        let _v4_mapped = admission.admit(addr("::ffff:192.0.2.1")).unwrap();
        assert_eq!(
            admission.admit(addr("192.0.2.1")).err(),
            Some(TurnedAway::PerAddress)
        );
        let _v4_next = admission.admit(addr("192.0.2.2")).unwrap();
        // A closed connection gives its place back.
        drop(first);
        assert!(admission.admit(addr("2001:db8:1:2::99")).is_ok());
    }

    #[tokio::test]
    async fn a_service_open_to_listed_networks_refuses_the_others() {
        let (events, mut records) = EventBus::new();
        let (store, _scratch) = scratch_store().await;
        let net = |text: &str| text.parse::<IpNetwork>().unwrap();
        let gate = Admission::new(
            &Authenticator::new(store),
            events,
            "manager",
            Protocol::Admin,
            Limits {
                max_connections: 8,
                max_per_ip: 8,
            },
        )
        .only_from(vec![net("10.0.0.0/8"), net("2001:db8::/32")]);
        assert!(gate.admit(addr("10.1.2.3")).is_ok());
        assert!(gate.admit(addr("::ffff:10.1.2.3")).is_ok());
        assert!(gate.admit(addr("2001:db8:5::1")).is_ok());
        for outside in ["192.0.2.1", "2001:db9::1"] {
            assert_eq!(
                gate.admit(addr(outside)).err(),
                Some(TurnedAway::NotListed),
                "{outside}"
            );
            let refused = records.try_recv().unwrap();
            assert_eq!(refused.attrs["cause"], "network-not-allowed");
        }
        // No list: every network.
        let open = gate.only_from(Vec::new());
        assert!(open.admit(addr("192.0.2.1")).is_ok());
    }

    #[tokio::test]
    async fn tickets_carry_their_own_ids_and_the_address_decided_on() {
        let (events, mut records) = EventBus::new();
        let (store, _scratch) = scratch_store().await;
        let gate = Admission::new(
            &Authenticator::new(store),
            events,
            "manager",
            Protocol::Https,
            Limits {
                max_connections: 2,
                max_per_ip: 2,
            },
        );
        // The address given is the one decided on and recorded, whatever socket it came on
        // (a proxy's, under the PROXY protocol).
        let client = addr("198.51.100.9");
        let first = gate.admit(client).unwrap();
        let second = gate.admit(client).unwrap();
        assert_eq!(first.peer(), client);
        assert_ne!(first.id(), second.id());
        assert!(first.id().len() == 16 && first.id().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            gate.admit(addr("203.0.113.1")).err(),
            Some(TurnedAway::Full)
        );
        let refused = records.try_recv().unwrap();
        assert_eq!(refused.kind, EventKind::ConnectionRefused);
        assert_eq!(refused.remote, Some(addr("203.0.113.1")));
        assert_eq!(refused.service.as_deref(), Some("manager"));
        assert_eq!(refused.attrs["cause"], "max-connections");
        assert_eq!(refused.attrs["network"], "203.0.113.1/32");
        let refused_id = refused.session.unwrap();
        assert!(refused_id != first.id() && refused_id != second.id());
        // Dropping a ticket gives its place back.
        drop(second);
        assert!(gate.admit(addr("203.0.113.1")).is_ok());
    }

    /// A connected pair: the client's end and the accepted end with its peer address.
    async fn pair() -> (tokio::net::TcpStream, TcpStream, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        (client, server, peer)
    }

    #[tokio::test]
    async fn behind_balancers_the_header_names_the_client_and_strangers_are_refused() {
        use tokio::io::AsyncWriteExt;
        let (events, mut records) = EventBus::new();
        let (store, _scratch) = scratch_store().await;
        let limits = Limits {
            max_connections: 10,
            max_per_ip: 10,
        };
        let gate = |from: &str| {
            Admission::new(
                &Authenticator::new(store.clone()),
                events.clone(),
                "sftp",
                Protocol::Ssh,
                limits,
            )
            .behind_proxies(ProxyPolicy {
                from: vec![from.parse().unwrap()],
                wait: Duration::from_secs(2),
            })
        };

        // A listed balancer naming an IPv6 client over IPv4: decided on the client.
        let trusted = gate("127.0.0.0/8");
        let (mut client, mut socket, peer) = pair().await;
        client
            .write_all(b"PROXY TCP6 2001:db8::9 2001:db8::1 5000 22\r\nSSH-2.0-x\r\n")
            .await
            .unwrap();
        let admitted = trusted.admit_proxied(&mut socket, peer).await.unwrap();
        assert_eq!(admitted.peer(), "[2001:db8::9]:5000".parse().unwrap());

        // A balancer that sends something else: refused and recorded under its own address.
        let (mut client, mut socket, peer) = pair().await;
        client.write_all(b"SSH-2.0-x\r\n").await.unwrap();
        assert_eq!(
            trusted.admit_proxied(&mut socket, peer).await.err(),
            Some(TurnedAway::ProxyHeader)
        );
        let refused = records.try_recv().unwrap();
        assert_eq!(refused.kind, EventKind::ConnectionRefused);
        assert_eq!(refused.attrs["cause"], "proxy-header");
        assert_eq!(refused.remote, Some(peer));

        // A peer outside proxy_from: refused before a byte is read.
        let stranger = gate("10.0.0.0/8");
        let (_client, mut socket, peer) = pair().await;
        assert_eq!(
            stranger.admit_proxied(&mut socket, peer).await.err(),
            Some(TurnedAway::ProxyUntrusted)
        );
        let refused = records.try_recv().unwrap();
        assert_eq!(refused.attrs["cause"], "proxy-untrusted");
        assert_eq!(refused.remote, Some(peer));
        drop(admitted);
    }

    #[tokio::test]
    async fn the_node_counts_the_connections_open_on_all_its_services() {
        let (events, _records) = EventBus::new();
        let (store, _scratch) = scratch_store().await;
        let auth = Authenticator::new(store);
        let limits = Limits {
            max_connections: 10,
            max_per_ip: 10,
        };
        let ssh = Admission::new(&auth, events.clone(), "ssh", Protocol::Ssh, limits);
        let ftp = Admission::new(&auth, events, "ftp", Protocol::Ftp, limits);
        let one = ssh.admit(addr("192.0.2.1")).unwrap();
        let two = ftp.admit(addr("192.0.2.2")).unwrap();
        let _three = ftp.admit(addr("192.0.2.3")).unwrap();
        assert_eq!(auth.connections().count(), 3);
        drop(one);
        drop(two);
        assert_eq!(auth.clone().connections().count(), 1);
    }
}
